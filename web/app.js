// Drover dashboard: plain JavaScript over the REST API (docs/API.md). Live updates come from the
// event stream (GET /v1/events); cluster, workers and counts are re-read every 2 s.
'use strict';

const STATES = ['waiting', 'pending', 'assigned', 'running', 'succeeded', 'failed', 'cancelled'];
const TERMINAL = new Set(['succeeded', 'failed', 'cancelled']);
const PAGE_SIZE = 25;
const EXAMPLES = {
  noop: '{}',
  echo: '{"hello": "world"}',
  sleep: '{"ms": 2000}',
  fail: '{"message": "boom"}',
  exec: '{"argv": ["echo", "hello"]}',
};

const $ = (id) => document.getElementById(id);

// h('td', {class: 'id'}, 'text', childNode): builds DOM without innerHTML (no injection).
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const badge = (state) => h('span', {class: `badge s-${state}`}, state);

function ago(ms) {
  if (!ms) return '—';
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

function duration(ms) {
  if (ms < 1000) return `${ms} ms`;
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${(ms / 1000).toFixed(1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}

const clock = (ms) => new Date(ms).toLocaleTimeString([], {hour12: false});

let toastTimer = 0;
function toast(text, isError) {
  const t = $('toast');
  t.textContent = text;
  t.className = isError ? 'toast err' : 'toast';
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (t.hidden = true), 4000);
}

// ---- API token (docs/SECURITY.md) ----
// A node with tokens answers 401 without one. The page then asks for a token, keeps it in
// sessionStorage (this tab only, gone when it closes; never in localStorage or a cookie) and sends
// it as Authorization: Bearer on every call, the event stream included (read with fetch, so the
// token never goes into a URL).

const TOKEN_KEY = 'drover-token';
function token() {
  return sessionStorage.getItem(TOKEN_KEY) || '';
}
function authHeaders() {
  const t = token();
  return t ? {Authorization: `Bearer ${t}`} : {};
}

let asking = null;  // one prompt at a time: every 401 waits for the same answer
function askToken(reason) {
  if (asking) return asking;
  const dialog = $('auth');
  const err = $('auth-error');
  err.textContent = reason || '';
  err.hidden = !reason;
  $('auth-token').value = '';
  asking = new Promise((resolve) => {
    $('auth-form').onsubmit = (e) => {
      e.preventDefault();
      const value = $('auth-token').value.trim();
      if (!value) return;
      sessionStorage.setItem(TOKEN_KEY, value);
      $('sign-out').hidden = false;
      dialog.close();
      asking = null;
      resolve();
    };
  });
  // Esc would close the dialog and leave every waiting call hanging: a token is needed to go on.
  dialog.oncancel = (e) => e.preventDefault();
  if (!dialog.open) dialog.showModal();
  return asking;
}

// A problem detail as a sentence for people: ZooKeeper's internal codes ("(zk rc -7)") say
// nothing to a reader, so they are cut, and the common causes are named.
function humanDetail(status, detail) {
  const text = String(detail || '').replace(/\s*\(?zk rc -?\d+\)?/gi, '').replace(/:\s*$/, '').trim();
  if (status === 503 && /zookeeper|quorum|connection|session/i.test(text + detail)) {
    return 'the node cannot reach ZooKeeper right now; try again in a moment';
  }
  if (status === 503) return text ? `the node is unavailable: ${text}` : 'the node is unavailable';
  if (status === 403) return text || 'this token is not allowed to do that';
  if (status === 404) return text || 'not found';
  if (status >= 500) return text ? `the node failed: ${text}` : 'the node failed';
  return text || `the node answered ${status}`;
}

// fetch + JSON; errors (problem+json or network) become an Error whose message is a sentence.
// A 401 asks for a token and tries again; a 403 (the token's role is too weak) is an error.
async function api(method, path, body, withHeaders = false) {
  const init = {method, headers: authHeaders()};
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    const err = new Error(`cannot reach this node (${location.host})`);
    err.unreachable = true;
    throw err;
  }
  if (res.status === 401) {
    await askToken(token() ? 'That token is not valid on this node.' : '');
    return api(method, path, body, withHeaders);
  }
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch (e) {
    data = null;
  }
  if (!res.ok) {
    const err = new Error(humanDetail(res.status, data && data.detail));
    err.status = res.status;
    err.unreachable = res.status === 503;  // the node or its ZooKeeper: passes once they are back
    throw err;
  }
  return withHeaders ? {data, headers: res.headers} : data;
}

// ---- cluster, workers, counts (polled) ----

// filter: state; type and queue: the other filters; search: an exact id being shown alone.
const view = {filter: '', type: '', queue: '', search: '', cursors: [''], next: null,
              tasks: new Map(), open: null, counts: {}};

function renderCluster(c) {
  $('c-leader').replaceChildren(c.leader ? h('span', {class: 'mono'}, c.leader)
                                         : h('span', {class: 'badge s-warn'}, 'none: electing'));
  $('c-epoch').textContent = c.epoch ?? '—';
  const zk = c.zookeeper || {};
  $('c-zk').replaceChildren(h('span', {class: `badge ${zk.connected ? 's-ok' : 's-bad'}`},
                              zk.state || (zk.connected ? 'connected' : 'disconnected')));
  $('c-session').replaceChildren(
      zk.session_id ? h('span', {class: 'mono'}, zk.session_id) : '—',
      zk.session_timeout_ms ? ` · timeout ${duration(zk.session_timeout_ms)}` : '');
  $('c-workers').textContent = c.workers ?? '—';
  const counts = c.tasks || {};
  view.counts = counts;
  renderPageInfo();
  $('tiles').replaceChildren(...STATES.map((s) => h('button', {
    class: `tile s-${s}${view.filter === s ? ' selected' : ''}`,
    'data-state': s,
    title: `Show only ${s} tasks`,
    onclick: () => setFilter(view.filter === s ? '' : s),
  }, h('b', {}, counts[s] ?? 0), h('span', {}, s))));
}

function renderWorkers(w) {
  const workers = w.workers || [];
  $('workers-empty').hidden = workers.length > 0;
  $('workers-body').replaceChildren(...workers.map((x) => {
    const fill = h('b');
    fill.style.width = `${Math.min(100, (100 * x.running) / Math.max(1, x.slots))}%`;
    return h('tr', {'data-worker-id': x.id},
             h('td', {}, h('span', {class: 'mono'}, x.id), ' ',
               x.id === w.leader ? h('span', {class: 'badge s-leader', title: 'This node leads: it assigns tasks'}, 'leader') : null),
             h('td', {}, h('span', {class: 'meter'}, h('i', {}, fill), `${x.running} / ${x.slots}`)),
             h('td', {}, (x.queues || []).map((q) => h('span', {class: 'chip'}, q))),
             h('td', {}, (x.labels || []).length ? x.labels.map((l) => h('span', {class: 'chip'}, l))
                                                 : h('span', {class: 'empty-cell'}, '—')),
             h('td', {}, x.http ? h('a', {href: `http://${x.http}/`, class: 'mono'}, x.http) : '—'),
             h('td', {}, x.started_at ? ago(x.started_at).replace(' ago', '') : '—'),
             h('td', {}, h('button', {class: 'small', 'data-drain': x.id,
                                      title: 'It takes nothing new, finishes what it holds, then leaves (admin)'},
                           'Drain')));
  }));
}

// The schedules (GET /v1/schedules): id, spec, next and last firing. Text only (h() sets text),
// so a schedule's fields cannot inject markup.
function renderSchedules(body) {
  const list = body.schedules || [];
  const when = (f) => (f && f.at ? new Date(f.at).toLocaleString([], {hour12: false}) : '—');
  $('schedules-body').replaceChildren(...(list.length ? list.map((x) => h('tr', {'data-schedule': x.id},
    h('td', {}, h('span', {class: 'mono'}, x.id)),
    h('td', {}, h('span', {class: 'mono'}, x.every_s ? `every ${x.every_s} s` : `${x.cron} (${x.timezone})`)),
    h('td', {}, when(x.next_firing)),
    h('td', {}, x.last_firing ? `${when(x.last_firing)} · ${x.last_firing.task}` : '—')))
    : [h('tr', {}, h('td', {colspan: '4', class: 'empty-cell'}, 'No schedules.'))]));
}

// The queues (GET /v1/queues): each with pause/resume; the task filter offers them all.
function renderQueues(q) {
  const queues = q.queues || [];
  $('queues-body').replaceChildren(...queues.map((x) => h('tr', {'data-queue': x.name},
    h('td', {}, h('span', {class: 'mono'}, x.name)),
    h('td', {}, x.paused ? h('span', {class: 'badge s-bad'}, 'paused') : h('span', {class: 'badge s-succeeded'}, 'open')),
    h('td', {}, x.max_running > 0 ? String(x.max_running) : h('span', {class: 'empty-cell'}, 'no limit')),
    h('td', {}, String((x.workers || []).length)),
    h('td', {}, h('button', {class: 'small', 'data-queue-action': x.paused ? 'resume' : 'pause', 'data-name': x.name},
                  x.paused ? 'Resume' : 'Pause')))));
  if (queues.length) $('queue-filter-wrap').hidden = false;
  const sel = $('queue-filter');
  for (const x of queues) {
    if (![...sel.options].some((o) => o.value === x.name)) sel.append(h('option', {value: x.name}, x.name));
  }
}

async function queueAction(name, action) {
  try {
    await api('POST', `/v1/queues/${encodeURIComponent(name)}/${action}`);
    toast(`queue ${name} ${action === 'pause' ? 'paused' : 'resumed'}`);
    renderQueues(await api('GET', '/v1/queues'));
  } catch (e) {
    toast(`${action === 'pause' ? 'Pausing' : 'Resuming'} queue ${name} failed: ${e.message}`, true);
  }
}

async function drainWorker(id) {
  if (!confirm(`Drain ${id}? It takes no new task, finishes what it holds, then leaves the cluster.`)) return;
  try {
    await api('POST', `/v1/workers/${encodeURIComponent(id)}/drain`);
    toast(`${id} is draining`);
  } catch (e) {
    toast(`Draining ${id} failed: ${e.message}`, true);
  }
}

// The node's health as the header shows it: 'ready', 'no-zk' (the node answers but /readyz says it
// has no ZooKeeper session) or 'unreachable'. "live" needs this to be 'ready' AND the event stream
// to be connected (renderLive).
let health = 'ready';
async function readiness() {
  let res;
  try {
    res = await fetch('/readyz', {cache: 'no-store'});
  } catch (e) {
    return 'unreachable';
  }
  return res.ok ? 'ready' : 'no-zk';
}

async function poll() {
  const was = health;
  health = await readiness();
  renderLive();
  if (health === 'unreachable') {
    showBanner(`This node (${location.host}) does not answer: it may be stopped or the network is down. Retrying every 2 s.`);
    return;
  }
  if (health === 'no-zk') {
    // The cluster card's last answer said "connected"; what this node says now wins.
    $('c-zk').replaceChildren(h('span', {class: 'badge s-bad'}, 'unreachable from this node'));
    showBanner('This node cannot reach ZooKeeper: task lists and counts may be stale, and submits and cancels fail until it reconnects. Retrying every 2 s.');
  }
  try {
    const [c, w, q] = await Promise.all([api('GET', '/v1/cluster'), api('GET', '/v1/workers'),
                                         api('GET', '/v1/queues')]);
    renderCluster(c);
    renderWorkers(w);
    renderQueues(q);
    api('GET', '/v1/schedules').then(renderSchedules, () => {});  // a reader without schedules
    if (was !== 'ready' && health === 'ready') {
      clearTransientSubmitError();
      loadTasks();
      loadHistory();
    }
    if (health === 'ready') $('banner').hidden = true;
  } catch (e) {
    if (health === 'ready') showBanner(`Reading the cluster failed: ${e.message}. Retrying every 2 s.`);
  }
}

// The submit form's "cannot reach" error, once the node answers again: it no longer holds.
function clearTransientSubmitError() {
  const out = $('submit-result');
  if (out.dataset.transient !== '1') return;
  delete out.dataset.transient;
  out.className = 'result';
  out.textContent = '';
}

function showBanner(text) {
  $('banner').textContent = text;
  $('banner').hidden = false;
}

// ---- task table ----

function setFilter(state) {
  view.filter = state;
  view.search = '';
  $('search-id').value = '';
  $('state-filter').value = state;
  view.cursors = [''];
  document.querySelectorAll('.tile').forEach((t) => t.classList.toggle('selected', t.dataset.state === state));
  loadTasks();
}

let loading = null;
let reloadTimer = 0;
// The query of the filtered list (newest first), without paging.
function listQuery() {
  const q = new URLSearchParams({order: 'newest'});
  if (view.filter) q.set('state', view.filter);
  if (view.type) q.set('type', view.type);
  if (view.queue) q.set('queue', view.queue);
  return q;
}

async function loadTasks() {
  if (view.search) return searchTask(view.search);
  const cursor = view.cursors[view.cursors.length - 1];
  const q = listQuery();
  q.set('limit', PAGE_SIZE);
  if (cursor) q.set('cursor', cursor);
  const mine = (loading = `${q}`);
  try {
    const data = await api('GET', `/v1/tasks?${q}`);
    if (loading !== mine) return;  // a newer request superseded this one
    view.next = data.next;
    renderTasks(data.tasks || []);
  } catch (e) {
    if (loading === mine) toast(`Listing tasks failed: ${e.message}`, true);
  }
}

// An exact id: the one task (GET /v1/tasks/{id}) or a "no such task" line; filters are ignored.
async function searchTask(id) {
  const mine = (loading = `search:${id}`);
  try {
    const t = await api('GET', `/v1/tasks/${encodeURIComponent(id)}`);
    if (loading !== mine) return;
    view.next = null;
    renderTasks([t]);
  } catch (e) {
    if (loading !== mine) return;
    view.next = null;
    renderTasks([], e.status === 404 ? `No task has the id ${id}.` : `Looking up ${id} failed: ${e.message}`);
  }
}

// Events may arrive by the hundred per second: re-read the page at most once a second.
function scheduleReload() {
  if (reloadTimer) return;
  reloadTimer = setTimeout(() => {
    reloadTimer = 0;
    loadTasks();
  }, 700);
}

function taskRow(t) {
  const actions = [];
  if (!TERMINAL.has(t.state)) {
    actions.push(h('button', {class: 'small danger', 'data-action': 'cancel', title: 'Cancel this task',
                              onclick: (e) => { e.stopPropagation(); cancelTask(t.id); }}, 'Cancel'));
  }
  if (t.state === 'failed' || t.state === 'cancelled') {
    actions.push(h('button', {class: 'small', 'data-action': 'retry',
                              title: 'Submit a copy of this task under a new id',
                              onclick: (e) => { e.stopPropagation(); retryTask(t); }}, 'Retry'));
  }
  return h('tr', {'data-task-id': t.id, 'data-state': t.state, onclick: () => openTask(t.id)},
           h('td', {class: 'id', title: t.id}, t.id),
           h('td', {}, t.type),
           h('td', {class: 'state'}, badge(t.state)),
           h('td', {}, t.priority),
           h('td', {}, `${t.attempts} / ${t.max_attempts}`),
           h('td', {class: 'mono'}, t.worker || '—'),
           h('td', {class: 'error', title: errorText(t)}, errorText(t) || ''),
           h('td', {title: t.submitted_at ? new Date(t.submitted_at).toLocaleString() : ''}, ago(t.submitted_at)),
           h('td', {class: 'actions'}, actions));
}

// The error of a row: a string, or an object's message (kept to one line by CSS).
function errorText(t) {
  if (!t.error) return '';
  return typeof t.error === 'string' ? t.error : (t.error.message || JSON.stringify(t.error));
}

function renderTasks(tasks, emptyText) {
  view.tasks = new Map(tasks.map((t) => [t.id, t]));
  view.shown = tasks.length;
  $('tasks-body').replaceChildren(...tasks.map(taskRow));
  const empty = $('tasks-empty');
  empty.hidden = tasks.length > 0;
  const filtered = view.filter || view.type || view.queue;
  if (!tasks.length) {
    empty.replaceChildren(emptyText ? emptyText
        : filtered ? `No ${[view.filter, view.type].filter((x) => x).join(' ')} tasks${view.queue ? ` in queue ${view.queue}` : ''}${view.cursors.length > 1 ? ' on this page' : ''}.`
        : h('span', {}, 'No tasks yet: submit one with the form, or from a shell: ',
            h('code', {}, 'drover submit -- echo hello')));
  }
  // The queue filter lists the queues of GET /v1/queues (renderQueues) and any seen here.
  const queues = new Set(tasks.map((t) => t.queue).filter((q) => typeof q === 'string' && q));
  if (queues.size || view.queue) {
    $('queue-filter-wrap').hidden = false;
    const sel = $('queue-filter');
    for (const q of queues) {
      if (![...sel.options].some((o) => o.value === q)) sel.append(h('option', {value: q}, q));
    }
  }
  renderPageInfo();
  $('prev').disabled = view.search || view.cursors.length <= 1;
  $('next').disabled = !view.next;
}

// "showing 26-50 of 812": the total comes from the cluster's counts (by state), so it is known
// when no type or queue filter is set; else the line says how many this page shows.
function renderPageInfo() {
  const n = view.shown || 0;
  let text = '';
  if (view.search) {
    text = n ? 'the task with that id' : '';
  } else if (n) {
    const first = (view.cursors.length - 1) * PAGE_SIZE + 1;
    const range = `${first}–${first + n - 1}`;
    const counts = view.counts || {};
    const total = view.filter ? counts[view.filter]
        : STATES.reduce((a, s) => a + (counts[s] || 0), 0);
    text = !view.type && !view.queue && total !== undefined && Object.keys(counts).length
        ? `showing ${range} of ${Math.max(total, first + n - 1)}`
        : `showing ${range}${view.next ? ' (more on the next page)' : ''}`;
  }
  $('page-info').textContent = text;
}

// Applies one event to the visible row at once (the page re-read follows).
function updateRow(ev) {
  const t = view.tasks.get(ev.id);
  if (!t) return;
  Object.assign(t, {state: ev.state, attempts: Math.max(t.attempts, ev.attempt || 0)});
  if (ev.worker) t.worker = ev.worker;
  const old = document.querySelector(`#tasks-body tr[data-task-id="${CSS.escape(ev.id)}"]`);
  if (!old) return;
  const row = taskRow(t);
  row.classList.add('flash');
  old.replaceWith(row);
}

// ---- actions ----

async function cancelTask(id) {
  try {
    const r = await api('DELETE', `/v1/tasks/${encodeURIComponent(id)}`, undefined, true);
    toast(r.headers.get('Drover-Cancel') === 'already-finished' ? `${id} had already finished`
                                                                : `Cancelled ${id}`);
    scheduleReload();
    if (view.open === id) openTask(id);
  } catch (e) {
    toast(`Cancel failed: ${e.message}`, true);
  }
}

// Bulk cancel of the filtered set: every unfinished task the filters match (all pages), after a
// dialog that names the count; DELETEs go BULK_PARALLEL at a time; the outcome counts the ones
// cancelled, the ones that had finished meanwhile and the failures. Bulk retry does the same for
// the failed and cancelled tasks the filters match (POST /v1/tasks/{id}/retry).
const BULK_PARALLEL = 8;

async function matchingIds(want = (t) => !TERMINAL.has(t.state)) {
  const ids = [];
  let cursor = '';
  for (;;) {
    const q = listQuery();
    q.set('limit', 1000);
    if (cursor) q.set('cursor', cursor);
    const page = await api('GET', `/v1/tasks?${q}`);
    for (const t of page.tasks || []) if (want(t)) ids.push(t.id);
    if (!page.next) return ids;
    cursor = page.next;
  }
}

function describeFilters() {
  const parts = [view.filter || 'unfinished', view.type ? `${view.type}` : '', 'tasks'].filter((x) => x);
  return parts.join(' ') + (view.queue ? ` in queue ${view.queue}` : '');
}

async function bulkCancel() {
  const dialog = $('bulk');
  $('bulk-title').textContent = 'Cancel tasks';
  const text = $('bulk-text');
  const progress = $('bulk-progress');
  const go = $('bulk-go');
  progress.textContent = '';
  progress.className = 'result';
  if (view.filter && TERMINAL.has(view.filter)) {
    text.textContent = `${view.filter} tasks have finished: there is nothing to cancel.`;
    go.hidden = true;
    dialog.showModal();
    return;
  }
  text.textContent = 'Counting the matching tasks…';
  go.hidden = true;
  dialog.showModal();
  let ids;
  try {
    ids = await matchingIds();
  } catch (e) {
    text.textContent = `Listing the matching tasks failed: ${e.message}`;
    return;
  }
  dialog.dataset.count = ids.length;
  if (!ids.length) {
    text.textContent = `No ${describeFilters()} to cancel.`;
    return;
  }
  text.textContent = `Cancel ${ids.length} ${describeFilters()}? Running ones are stopped; this cannot be undone.`;
  go.textContent = `Cancel ${ids.length} tasks`;
  go.hidden = false;
  go.disabled = false;
  go.onclick = async () => {
    go.disabled = true;
    const tally = {cancelled: 0, finished: 0, failed: 0};
    let next = 0;
    let lastError = '';
    const worker = async () => {
      while (next < ids.length) {
        const id = ids[next++];
        try {
          const r = await api('DELETE', `/v1/tasks/${encodeURIComponent(id)}`, undefined, true);
          if (r.headers.get('Drover-Cancel') === 'already-finished') tally.finished++;
          else tally.cancelled++;
        } catch (e) {
          tally.failed++;
          lastError = e.message;
        }
        progress.textContent = `${tally.cancelled + tally.finished + tally.failed} of ${ids.length} done…`;
      }
    };
    await Promise.all(Array.from({length: Math.min(BULK_PARALLEL, ids.length)}, worker));
    const summary = `${tally.cancelled} cancelled, ${tally.finished} had already finished` +
        (tally.failed ? `, ${tally.failed} failed (${lastError})` : '') + '.';
    progress.textContent = summary;
    progress.className = tally.failed ? 'result err' : 'result';
    progress.dataset.cancelled = tally.cancelled;
    progress.dataset.finished = tally.finished;
    progress.dataset.failed = tally.failed;
    go.hidden = true;
    toast(`Bulk cancel: ${summary}`, tally.failed > 0);
    scheduleReload();
  };
}

const RETRYABLE = new Set(['failed', 'cancelled']);

async function bulkRetry() {
  const dialog = $('bulk');
  $('bulk-title').textContent = 'Retry tasks';
  const text = $('bulk-text');
  const progress = $('bulk-progress');
  const go = $('bulk-go');
  progress.textContent = '';
  progress.className = 'result';
  go.hidden = true;
  const what = view.filter && RETRYABLE.has(view.filter) ? describeFilters()
      : [view.type, 'failed or cancelled tasks'].filter((x) => x).join(' ') + (view.queue ? ` in queue ${view.queue}` : '');
  if (view.filter && !RETRYABLE.has(view.filter)) {
    text.textContent = `${view.filter} tasks cannot be retried: only failed or cancelled ones.`;
    dialog.showModal();
    return;
  }
  text.textContent = 'Counting the matching tasks…';
  dialog.showModal();
  let ids;
  try {
    ids = await matchingIds((t) => RETRYABLE.has(t.state));
  } catch (e) {
    text.textContent = `Listing the matching tasks failed: ${e.message}`;
    return;
  }
  dialog.dataset.count = ids.length;
  if (!ids.length) {
    text.textContent = `No ${what} to retry.`;
    return;
  }
  text.textContent = `Retry ${ids.length} ${what}? Each runs again under its id, its history kept.`;
  go.textContent = `Retry ${ids.length} tasks`;
  go.hidden = false;
  go.disabled = false;
  go.onclick = async () => {
    go.disabled = true;
    const tally = {retried: 0, failed: 0};
    let next = 0;
    let lastError = '';
    const worker = async () => {
      while (next < ids.length) {
        const id = ids[next++];
        try {
          await api('POST', `/v1/tasks/${encodeURIComponent(id)}/retry`);
          tally.retried++;
        } catch (e) {
          tally.failed++;  // 409: retried meanwhile (by someone else), or no longer retryable
          lastError = e.message;
        }
        progress.textContent = `${tally.retried + tally.failed} of ${ids.length} done…`;
      }
    };
    await Promise.all(Array.from({length: Math.min(BULK_PARALLEL, ids.length)}, worker));
    const summary = `${tally.retried} retried` + (tally.failed ? `, ${tally.failed} failed (${lastError})` : '') + '.';
    progress.textContent = summary;
    progress.className = tally.failed ? 'result err' : 'result';
    progress.dataset.retried = tally.retried;
    progress.dataset.failed = tally.failed;
    go.hidden = true;
    toast(`Bulk retry: ${summary}`, tally.failed > 0);
    scheduleReload();
  };
}

// A retry puts a failed or cancelled task back under its id (POST /v1/tasks/{id}/retry,
// protocol 2); its history is kept and shown in the panel.
async function retryTask(t) {
  try {
    const r = await api('POST', `/v1/tasks/${encodeURIComponent(t.id)}/retry`);
    toast(`Retrying ${r.id}: ${r.state}`);
    scheduleReload();
    if (view.open === t.id) openTask(t.id);
  } catch (e) {
    toast(`Retry failed: ${e.message}`, true);
  }
}

function setupSubmit() {
  const type = $('submit-type');
  const payload = $('submit-payload');
  let touched = false;
  payload.addEventListener('input', () => (touched = true));
  type.addEventListener('input', () => {
    if (!touched && EXAMPLES[type.value]) payload.value = EXAMPLES[type.value];
  });
  $('submit-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const out = $('submit-result');
    out.className = 'result';
    delete out.dataset.transient;
    const body = {type: type.value.trim(), priority: Number($('submit-priority').value),
                  max_attempts: Number($('submit-attempts').value)};
    try {
      if (payload.value.trim()) body.payload = JSON.parse(payload.value);
    } catch (err) {
      out.className = 'result err';
      out.textContent = `Payload is not valid JSON: ${err.message}`;
      return;
    }
    try {
      const r = await api('POST', '/v1/tasks', body);
      out.dataset.taskId = r.id;
      out.replaceChildren('Submitted ', h('a', {onclick: () => openTask(r.id)}, r.id), ` (${r.state}).`);
      scheduleReload();
    } catch (err) {
      out.className = 'result err';
      out.textContent = err.message;
      // A connection error says nothing once the node is back (cleared by refresh()).
      if (err.unreachable) out.dataset.transient = '1';
    }
  });
}

// ---- task panel ----

const seen = new Map();  // task id -> events observed since the page opened (for timelines)

async function openTask(id) {
  view.open = id;
  const panel = $('panel');
  panel.hidden = false;
  $('p-title').textContent = id;
  let t;
  try {
    t = await api('GET', `/v1/tasks/${encodeURIComponent(id)}`);
  } catch (e) {
    $('p-body').replaceChildren(h('p', {class: 'result err'}, e.message));
    return;
  }
  if (view.open !== id) return;
  const facts = [
    ['State', badge(t.state)], ['Type', t.type], ['Priority', t.priority],
    ['Attempts', `${t.attempts} of at most ${t.max_attempts}`], ['Worker', t.worker || '—'],
  ];
  if (t.timeout_s) facts.push(['Timeout', `${t.timeout_s} s`]);
  if (t.started_at && t.finished_at) facts.push(['Ran for', duration(t.finished_at - t.started_at)]);

  const timeline = [];
  if (t.submitted_at) timeline.push({at: t.submitted_at, state: 'pending', text: 'submitted'});
  for (const ev of seen.get(id) || []) {
    if (ev.state === 'pending' && ev.attempt <= 1) continue;
    timeline.push({at: ev.at, state: ev.state,
                   text: `${ev.state}${ev.attempt ? ` · attempt ${ev.attempt}` : ''}${ev.worker ? ` · ${ev.worker}` : ''}`});
  }
  if (!timeline.some((x) => x.state === 'running') && t.started_at) {
    timeline.push({at: t.started_at, state: 'running', text: `started (attempt ${t.attempts})`});
  }
  if (TERMINAL.has(t.state) && !timeline.some((x) => x.state === t.state) && t.finished_at) {
    timeline.push({at: t.finished_at, state: t.state, text: t.state});
  }
  timeline.sort((a, b) => a.at - b.at);

  const actions = [];
  if (!TERMINAL.has(t.state)) {
    actions.push(h('button', {class: 'danger', 'data-action': 'cancel', onclick: () => cancelTask(id)}, 'Cancel task'));
  }
  if (t.state === 'failed' || t.state === 'cancelled') {
    actions.push(h('button', {'data-action': 'retry', onclick: () => retryTask(t)}, 'Retry'),
                 h('span', {class: 'note'}, 'Retry runs it again under the same id, at attempt ' +
                   `${t.attempts + 1}; its history is kept.`));
  }

  $('p-body').replaceChildren(...[
      h('dl', {class: 'facts'}, facts.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])),
      h('div', {class: 'actions'}, actions),
      h('h3', {}, 'Payload'), h('pre', {}, JSON.stringify(t.payload ?? null, null, 2)),
      t.error ? [h('h3', {}, 'Error'), h('pre', {class: 'err'}, typeof t.error === 'string' ? t.error : JSON.stringify(t.error, null, 2))] : null,
      outputSections(t),
      t.state === 'succeeded' || (t.state === 'failed' && t.result != null)
        ? [h('h3', {}, 'Result'), h('pre', {class: 'result-json'}, bounded(JSON.stringify(t.result ?? null, null, 2)))] : null,
      historySection(t),
      h('h3', {}, 'Timeline'),
      h('ol', {class: 'timeline'}, timeline.map((x) =>
      h('li', {class: `s-${x.state}`}, h('time', {}, clock(x.at)), x.text))),
      h('p', {class: 'note'}, 'The timeline shows the record\'s times and the events this page has seen since it opened.'),
  ].flat().filter((x) => x));
}

// Output kept in the result by exec and container tasks: shown as text (textContent, so markup in
// it is inert), cut at PANEL_TEXT_MAX characters.
const PANEL_TEXT_MAX = 20000;
function bounded(text) {
  text = String(text ?? '');
  return text.length > PANEL_TEXT_MAX ? `${text.slice(0, PANEL_TEXT_MAX)}\n… (${text.length - PANEL_TEXT_MAX} more characters not shown)` : text;
}

// The task's per-attempt history (protocol 2: the last 10 attempts' ends, oldest first). A
// `pending` end is an attempt put back for another one, or a re-open by a retry.
function historySection(t) {
  const rows = t.history || [];
  if (!rows.length) return null;
  const label = (a) => a.state !== 'pending' ? a.state
      : (a.error === 're-opened by a retry' ? 'retried by hand' : 'failed, retried');
  return [h('h3', {}, `History (${rows.length} attempt end${rows.length > 1 ? 's' : ''})`),
    h('table', {class: 'history', 'data-rows': rows.length},
      h('thead', {}, h('tr', {}, ['#', 'Outcome', 'Worker', 'Started', 'Ended', 'Error'].map((c) => h('th', {}, c)))),
      h('tbody', {}, rows.map((a) => h('tr', {class: `s-${a.state}`},
        h('td', {}, String(a.attempt)), h('td', {}, label(a)), h('td', {}, a.worker || '—'),
        h('td', {}, a.started_at ? clock(a.started_at) : '—'),
        h('td', {}, a.finished_at ? clock(a.finished_at) : '—'),
        h('td', {class: a.error === 're-opened by a retry' ? '' : 'err'}, a.error || '')))))];
}

function outputSections(t) {
  const r = t.result;
  if (!r || typeof r !== 'object' || Array.isArray(r)) return null;
  const out = [];
  for (const stream of ['stderr', 'stdout']) {
    if (typeof r[stream] !== 'string') continue;
    const cut = r[`${stream}_truncated`] ? ' (cut by the worker)' : '';
    out.push(h('h3', {}, stream, cut ? h('small', {}, cut) : null),
             r[stream] ? h('pre', {class: stream === 'stderr' ? `stream ${t.state === 'failed' ? 'err' : ''}` : 'stream', 'data-stream': stream}, bounded(r[stream]))
                       : h('p', {class: 'note'}, `(no ${stream})`));
  }
  return out;
}

function closePanel() {
  view.open = null;
  $('panel').hidden = true;
}

// ---- throughput chart ----
// From GET /v1/stats/history: every node's counters in 10 s buckets over the last hour, summed by
// the node that answers (docs/API.md), so the chart is full as soon as the page loads.

let history = null;  // the last answer
async function loadHistory() {
  try {
    history = await api('GET', '/v1/stats/history');
  } catch (e) {
    history = null;
    $('history-note').textContent = `No throughput history: ${e.message}.`;
    $('history-note').hidden = false;
  }
  drawChart();
}

const SERIES = ['succeeded', 'failed', 'retried'];

function drawChart() {
  const canvas = $('chart');
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth;
  const hgt = canvas.clientHeight;
  if (canvas.width !== Math.round(w * dpr)) canvas.width = Math.round(w * dpr);
  if (canvas.height !== Math.round(hgt * dpr)) canvas.height = Math.round(hgt * dpr);
  const g = canvas.getContext('2d');
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, hgt);

  const buckets = (history && history.buckets) || [];
  const step = ((history && history.step_ms) || 10000) / 1000;
  const done = (b) => SERIES.reduce((a, s) => a + (b[s] || 0), 0);
  const totals = buckets.map(done);
  const peak = Math.max(0, ...totals);
  // Rates over complete buckets (the newest is still filling).
  const lastN = (n) => totals.slice(-1 - n, -1).reduce((a, b) => a + b, 0);
  const finished = totals.reduce((a, b) => a + b, 0);
  const submitted = buckets.reduce((a, b) => a + (b.submitted || 0), 0);
  const failed = buckets.reduce((a, b) => a + (b.failed || 0), 0);
  $('rates').replaceChildren(
      h('span', {}, h('b', {}, (lastN(6) / (6 * step)).toFixed(1)), '/s last minute'),
      h('span', {}, h('b', {}, (peak / step).toFixed(1)), 'peak /s'),
      h('span', {}, h('b', {}, submitted), 'submitted'),
      h('span', {}, h('b', {}, failed), 'failed'),
      h('span', {'data-finished': finished}, h('b', {}, finished), 'finished in the last hour'));
  const nodes = (history && history.nodes) || [];
  const missing = nodes.filter((n) => !n.ok);
  const note = $('history-note');
  if (history) {
    note.hidden = !missing.length && history.complete !== false;
    note.textContent = missing.length
        ? `Counts of ${missing.length} of ${nodes.length} nodes are missing (${missing.map((n) => `${n.http}: ${n.error}`).join('; ')}).`
        : history.error ? `Only this node is counted: ${humanDetail(503, history.error)}.` : '';
  }

  const css = getComputedStyle(document.documentElement);
  const left = 34;
  const bottom = hgt - 18;
  const top = 8;
  const max = niceMax(peak);
  g.font = '11px system-ui, sans-serif';
  g.fillStyle = css.getPropertyValue('--muted');
  g.strokeStyle = '#eef2f7';
  g.lineWidth = 1;
  g.textAlign = 'right';
  g.textBaseline = 'middle';
  for (let i = 0; i <= 4; i++) {
    const y = Math.round(bottom - ((bottom - top) * i) / 4) + 0.5;
    g.beginPath();
    g.moveTo(left, y);
    g.lineTo(w, y);
    g.stroke();
    g.fillText(String(Math.round((max * i) / 4 * 10) / 10), left - 6, y);
  }
  g.textAlign = 'center';
  g.textBaseline = 'alphabetic';
  const plotW = w - left;
  const span = Math.max(1, buckets.length) * step;  // seconds the chart covers
  for (const m of [60, 50, 40, 30, 20, 10]) {
    if (m * 60 <= span) g.fillText(`-${m}m`, left + plotW * (1 - (m * 60) / span), hgt - 4);
  }
  g.fillText('now', w - 14, hgt - 4);

  const bw = plotW / Math.max(1, buckets.length);
  buckets.forEach((b, i) => {
    let y = bottom;
    for (const s of SERIES) {
      if (!b[s]) continue;
      const bh = ((bottom - top) * b[s]) / max;
      g.fillStyle = css.getPropertyValue(s === 'retried' ? '--assigned' : `--${s}`);
      g.fillRect(left + i * bw, y - bh, Math.max(1, bw - 0.5), bh);
      y -= bh;
    }
  });
  if (peak === 0) {
    g.fillStyle = css.getPropertyValue('--muted');
    g.font = '13px system-ui, sans-serif';
    g.fillText(history ? 'No task has finished in the last hour: submit one below.'
                       : 'Loading the last hour…', left + plotW / 2, (top + bottom) / 2);
  }
}

function niceMax(v) {
  if (v <= 4) return 4;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

// ---- live events ----

const delivered = new Set();  // (id, state, attempt): events are at-least-once
function onTaskEvent(ev) {
  const key = `${ev.id}|${ev.state}|${ev.attempt}`;
  if (delivered.has(key)) return;
  delivered.add(key);
  if (delivered.size > 20000) delivered.clear();

  const list = seen.get(ev.id) || [];
  list.push(ev);
  seen.set(ev.id, list.slice(-50));
  if (seen.size > 5000) seen.delete(seen.keys().next().value);

  addActivity(ev);
  updateRow(ev);
  scheduleReload();
  if (view.open === ev.id) openTask(ev.id);
}

function addActivity(ev) {
  $('activity-empty').hidden = true;
  const list = $('activity-list');
  list.prepend(h('li', {}, h('time', {}, clock(ev.at || Date.now())),
                 h('a', {title: ev.id, onclick: () => openTask(ev.id)}, ev.id), badge(ev.state)));
  while (list.children.length > 40) list.lastChild.remove();
}

// The header's word: "live" only while the event stream is connected AND the node is ready
// (/readyz); otherwise what is wrong, the node's health first (a stream can stay open on a node
// that has lost ZooKeeper and will deliver nothing).
let streamState = {state: '', text: 'connecting…'};
function setLive(state, text) {
  streamState = {state, text};
  renderLive();
}

function renderLive() {
  let cls = streamState.state;
  let text = streamState.text;
  if (health === 'unreachable') {
    cls = 'off';
    text = 'node unreachable';
  } else if (health === 'no-zk') {
    cls = 'warn';
    text = 'ZooKeeper unreachable';
  }
  $('live').className = `live ${cls}`;
  $('live').dataset.state = cls === 'on' ? 'live' : health !== 'ready' ? health : 'stream';
  $('live-text').textContent = text;
}

// The event stream, read with fetch rather than EventSource: EventSource cannot send an
// Authorization header. Frames are parsed here (event, data, id lines; a blank line ends one), and
// a reconnect sends Last-Event-ID so nothing is missed within the node's retention.
let stream = null;  // the AbortController of the open stream
let lastEventId = '';
let retryTimer = 0;

function dispatchFrame(frame) {
  let event = 'message';
  const data = [];
  for (const line of frame.split('\n')) {
    if (line.startsWith(':') || !line) continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
    if (field === 'event') event = value;
    if (field === 'data') data.push(value);
    if (field === 'id') lastEventId = value;
  }
  if (event === 'task') {
    try {
      onTaskEvent(JSON.parse(data.join('\n')));
    } catch (e) {
      console.warn('bad event', data);
    }
  }
  return event;
}

function reconnectEvents(delay, state, text) {
  setLive(state, text);
  clearTimeout(retryTimer);
  retryTimer = setTimeout(connectEvents, delay);
}

async function connectEvents() {
  if (stream) stream.abort();
  const ctl = new AbortController();
  stream = ctl;
  const headers = authHeaders();
  if (lastEventId) headers['Last-Event-ID'] = lastEventId;
  let res;
  try {
    res = await fetch('/v1/events', {headers, signal: ctl.signal, cache: 'no-store'});
  } catch (e) {
    if (ctl.signal.aborted) return;
    return reconnectEvents(3000, 'off', 'reconnecting…');
  }
  if (res.status === 401) {
    setLive('off', 'needs a token');
    await askToken(token() ? 'That token is not valid on this node.' : '');
    return connectEvents();
  }
  if (!res.ok || !res.body) {
    // Refused (403: the token may not read; 503: too many streams, or the node is going away).
    return reconnectEvents(3000, 'off', res.status === 403 ? 'token may not read events'
                                                           : 'reconnecting…');
  }
  setLive('on', 'live');
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  try {
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, {stream: true}).replace(/\r\n?/g, '\n');
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        if (dispatchFrame(frame) === 'dropped') {
          // Fell too far behind: the server ends the stream. Reconnect and re-read.
          loadTasks();
          return reconnectEvents(500, '', 'catching up…');
        }
      }
    }
  } catch (e) {
    if (ctl.signal.aborted) return;
  }
  if (stream === ctl) reconnectEvents(1000, '', 'reconnecting…');
}

// ---- start ----

function start() {
  $('served-by').textContent = location.host;
  $('state-filter').addEventListener('change', (e) => setFilter(e.target.value));
  $('prev').addEventListener('click', () => {
    if (view.cursors.length > 1) view.cursors.pop();
    loadTasks();
  });
  $('next').addEventListener('click', () => {
    if (!view.next) return;
    view.cursors.push(view.next);
    loadTasks();
  });
  $('p-close').addEventListener('click', closePanel);
  document.addEventListener('keydown', (e) => e.key === 'Escape' && closePanel());
  $('sign-out').hidden = !token();
  $('sign-out').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    location.reload();
  });
  $('search-form').addEventListener('submit', (e) => {
    e.preventDefault();
    view.search = $('search-id').value.trim();
    view.cursors = [''];
    loadTasks();
  });
  $('search-id').addEventListener('input', (e) => {
    if (!e.target.value.trim() && view.search) {
      view.search = '';
      loadTasks();
    }
  });
  $('type-filter').addEventListener('change', (e) => {
    view.type = e.target.value.trim();
    view.search = '';
    $('search-id').value = '';
    view.cursors = [''];
    loadTasks();
  });
  $('queues-body').addEventListener('click', (e) => {
    const b = e.target.closest('button[data-queue-action]');
    if (b) queueAction(b.dataset.name, b.dataset.queueAction);
  });
  $('workers-body').addEventListener('click', (e) => {
    const b = e.target.closest('button[data-drain]');
    if (b) drainWorker(b.dataset.drain);
  });
  $('queue-filter').addEventListener('change', (e) => {
    view.queue = e.target.value;
    view.cursors = [''];
    loadTasks();
  });
  $('bulk-cancel').addEventListener('click', bulkCancel);
  $('bulk-retry').addEventListener('click', bulkRetry);
  // Dead letters: the failed tasks, newest first (they stay until retention).
  $('dead-letters').addEventListener('click', () => setFilter(view.filter === 'failed' ? '' : 'failed'));
  $('bulk-close').addEventListener('click', () => $('bulk').close());
  setupSubmit();
  connectEvents();
  poll();
  loadTasks();
  loadHistory();
  setInterval(poll, 2000);
  setInterval(loadHistory, 5000);
  window.addEventListener('resize', drawChart);
}

document.addEventListener('DOMContentLoaded', start);
