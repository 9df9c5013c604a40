// Drover dashboard: plain JavaScript over the REST API (docs/API.md). Live updates come from the
// event stream (GET /v1/events); cluster, workers and counts are re-read every 2 s.
'use strict';

const STATES = ['pending', 'assigned', 'running', 'succeeded', 'failed', 'cancelled'];
const TERMINAL = new Set(['succeeded', 'failed', 'cancelled']);
const PAGE_SIZE = 25;
const CHART_SECONDS = 300;
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

// fetch + JSON; errors (problem+json or network) become an Error whose message is the detail.
// A 401 asks for a token and tries again; a 403 (the token's role is too weak) is an error.
async function api(method, path, body) {
  const init = {method, headers: authHeaders()};
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new Error(`cannot reach this node (${location.host})`);
  }
  if (res.status === 401) {
    await askToken(token() ? 'That token is not valid on this node.' : '');
    return api(method, path, body);
  }
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch (e) {
    data = null;
  }
  if (!res.ok) {
    const detail = data && data.detail ? data.detail : `${res.status} ${res.statusText}`;
    throw new Error(detail);
  }
  return data;
}

// ---- cluster, workers, counts (polled) ----

const view = {filter: '', cursors: [''], next: null, tasks: new Map(), open: null};

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
             h('td', {}, (x.labels || []).length ? x.labels.map((l) => h('span', {class: 'chip'}, l))
                                                 : h('span', {class: 'empty-cell'}, '—')),
             h('td', {}, x.http ? h('a', {href: `http://${x.http}/`, class: 'mono'}, x.http) : '—'),
             h('td', {}, x.started_at ? ago(x.started_at).replace(' ago', '') : '—'));
  }));
}

let reachable = true;
async function poll() {
  try {
    const [c, w] = await Promise.all([api('GET', '/v1/cluster'), api('GET', '/v1/workers')]);
    renderCluster(c);
    renderWorkers(w);
    if (!reachable) loadTasks();
    reachable = true;
    $('banner').hidden = true;
  } catch (e) {
    reachable = false;
    $('banner').textContent = `${e.message}: retrying every 2 s.`;
    $('banner').hidden = false;
  }
}

// ---- task table ----

function setFilter(state) {
  view.filter = state;
  $('state-filter').value = state;
  view.cursors = [''];
  document.querySelectorAll('.tile').forEach((t) => t.classList.toggle('selected', t.dataset.state === state));
  loadTasks();
}

let loading = null;
let reloadTimer = 0;
async function loadTasks() {
  const cursor = view.cursors[view.cursors.length - 1];
  const q = new URLSearchParams({limit: PAGE_SIZE});
  if (view.filter) q.set('state', view.filter);
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
           h('td', {title: t.submitted_at ? new Date(t.submitted_at).toLocaleString() : ''}, ago(t.submitted_at)),
           h('td', {class: 'actions'}, actions));
}

function renderTasks(tasks) {
  view.tasks = new Map(tasks.map((t) => [t.id, t]));
  $('tasks-body').replaceChildren(...tasks.map(taskRow));
  const empty = $('tasks-empty');
  empty.hidden = tasks.length > 0;
  if (!tasks.length) {
    empty.replaceChildren(view.filter
        ? `No ${view.filter} tasks${view.cursors.length > 1 ? ' on this page' : ''}.`
        : h('span', {}, 'No tasks yet: submit one with the form, or from a shell: ',
            h('code', {}, 'drover submit -- echo hello')));
  }
  const page = view.cursors.length;
  $('page-info').textContent = tasks.length ? `page ${page} · ${tasks.length} shown` : '';
  $('prev').disabled = page <= 1;
  $('next').disabled = !view.next;
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
    await api('DELETE', `/v1/tasks/${encodeURIComponent(id)}`);
    toast(`Cancelled ${id}`);
    scheduleReload();
    if (view.open === id) openTask(id);
  } catch (e) {
    toast(`Cancel failed: ${e.message}`, true);
  }
}

// A retry is a new task: same type, payload, priority and max attempts, fresh id.
async function retryTask(t) {
  try {
    const r = await api('POST', '/v1/tasks', {type: t.type, payload: t.payload ?? null,
                                              priority: t.priority, max_attempts: t.max_attempts});
    toast(`Retry submitted as ${r.id}`);
    scheduleReload();
    openTask(r.id);
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
                 h('span', {class: 'note'}, 'Retry submits a new task with the same type, payload, priority and max attempts, under a fresh id.'));
  }

  $('p-body').replaceChildren(...[
      h('dl', {class: 'facts'}, facts.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])),
      h('div', {class: 'actions'}, actions),
      h('h3', {}, 'Payload'), h('pre', {}, JSON.stringify(t.payload ?? null, null, 2)),
      t.error ? [h('h3', {}, 'Error'), h('pre', {class: 'err'}, typeof t.error === 'string' ? t.error : JSON.stringify(t.error, null, 2))] : null,
      t.state === 'succeeded' ? [h('h3', {}, 'Result'), h('pre', {}, JSON.stringify(t.result ?? null, null, 2))] : null,
      h('h3', {}, 'Timeline'),
      h('ol', {class: 'timeline'}, timeline.map((x) =>
      h('li', {class: `s-${x.state}`}, h('time', {}, clock(x.at)), x.text))),
      h('p', {class: 'note'}, 'The timeline shows the record\'s times and the events this page has seen since it opened.'),
  ].flat().filter((x) => x));
}

function closePanel() {
  view.open = null;
  $('panel').hidden = true;
}

// ---- throughput chart ----

const buckets = new Map();  // second -> {succeeded, failed, cancelled}

function countCompletion(ev) {
  const sec = Math.floor(Date.now() / 1000);
  const b = buckets.get(sec) || {succeeded: 0, failed: 0, cancelled: 0};
  b[ev.state] += 1;
  buckets.set(sec, b);
}

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

  const now = Math.floor(Date.now() / 1000);
  for (const k of buckets.keys()) if (k <= now - CHART_SECONDS) buckets.delete(k);
  const series = [];
  for (let s = now - CHART_SECONDS + 1; s <= now; s++) series.push(buckets.get(s) || {succeeded: 0, failed: 0, cancelled: 0});
  const totals = series.map((b) => b.succeeded + b.failed + b.cancelled);
  const peak = Math.max(...totals);
  // Rates over complete seconds (the current one is still filling).
  const last = (n) => totals.slice(-1 - n, -1).reduce((a, b) => a + b, 0) / n;
  $('rates').replaceChildren(
      h('span', {}, h('b', {}, last(5).toFixed(1)), '/s last 5 s'),
      h('span', {}, h('b', {}, last(60).toFixed(1)), '/s last minute'),
      h('span', {}, h('b', {}, peak), 'peak /s'),
      h('span', {}, h('b', {}, totals.reduce((a, b) => a + b, 0)), 'finished in 5 min'));

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
  for (const m of [5, 4, 3, 2, 1]) g.fillText(`-${m}m`, left + plotW * (1 - (m * 60) / CHART_SECONDS), hgt - 4);
  g.fillText('now', w - 14, hgt - 4);

  const bw = plotW / CHART_SECONDS;
  series.forEach((b, i) => {
    let y = bottom;
    for (const s of ['succeeded', 'failed', 'cancelled']) {
      if (!b[s]) continue;
      const bh = ((bottom - top) * b[s]) / max;
      g.fillStyle = css.getPropertyValue(`--${s}`);
      g.fillRect(left + i * bw, y - bh, Math.max(1, bw - 0.5), bh);
      y -= bh;
    }
  });
  if (peak === 0) {
    g.fillStyle = css.getPropertyValue('--muted');
    g.font = '13px system-ui, sans-serif';
    g.fillText('No task has finished since this page opened: submit one below.', left + plotW / 2, (top + bottom) / 2);
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

  if (TERMINAL.has(ev.state)) countCompletion(ev);
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

function setLive(state, text) {
  $('live').className = `live ${state}`;
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
    return reconnectEvents(3000, 'off', 'disconnected: retrying');
  }
  if (res.status === 401) {
    setLive('off', 'needs a token');
    await askToken(token() ? 'That token is not valid on this node.' : '');
    return connectEvents();
  }
  if (!res.ok || !res.body) {
    // Refused (403: the token may not read; 503: too many streams, or the node is going away).
    return reconnectEvents(3000, 'off', res.status === 403 ? 'token may not read events'
                                                           : 'disconnected: retrying');
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
  setupSubmit();
  connectEvents();
  poll();
  loadTasks();
  drawChart();
  setInterval(poll, 2000);
  setInterval(drawChart, 1000);
  window.addEventListener('resize', drawChart);
}

document.addEventListener('DOMContentLoaded', start);
