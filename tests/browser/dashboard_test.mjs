// Real-browser test of the dashboard: Debian's Chromium driven by playwright-core against a
// running local cluster (run_dashboard_test.sh starts it). Plain Node, no test runner.
//   node dashboard_test.mjs --url http://127.0.0.1:P/ --chromium /usr/bin/chromium \
//        --profile DIR --screenshot FILE --zk-pid PID
// --zk-pid is the ZooKeeper the runner's cluster uses: the test pauses it (SIGSTOP) to see the
// header leave "live", and resumes it (SIGCONT) on every path out.
import assert from 'node:assert/strict';
import {parseArgs} from 'node:util';
import {chromium} from 'playwright-core';

const {values: opt} = parseArgs({options: {
  url: {type: 'string'}, chromium: {type: 'string', default: '/usr/bin/chromium'},
  profile: {type: 'string'}, screenshot: {type: 'string'}, 'zk-pid': {type: 'string'},
}});
assert.ok(opt.url && opt.profile && opt.screenshot && opt['zk-pid'],
          'usage: --url --profile --screenshot --zk-pid');
const zkPid = Number(opt['zk-pid']);
let zkPaused = false;
const resumeZk = () => {
  if (zkPaused) process.kill(zkPid, 'SIGCONT');
  zkPaused = false;
};
process.on('exit', resumeZk);
const base = new URL(opt.url);
const kDeadline = 30000;  // every wait below is on a condition, with this deadline

async function api(method, path, body) {
  const res = await fetch(new URL(path, base), {
    method, headers: body ? {'Content-Type': 'application/json'} : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  const data = res.headers.get('content-type')?.includes('json') ? await res.json() : await res.text();
  assert.ok(res.ok, `${method} ${path}: ${res.status} ${JSON.stringify(data)}`);
  return data;
}

const step = (text) => console.log(`[ step ] ${text}`);

// Waits until fn(arg), evaluated in the page, is truthy; fails after the deadline. (Playwright's
// waitForFunction evaluates a string, which the dashboard's Content-Security-Policy forbids.)
async function until(page, fn, arg, what = fn.toString()) {
  const end = Date.now() + kDeadline;
  for (;;) {
    if (await page.evaluate(fn, arg)) return;
    if (Date.now() > end) throw new Error(`timed out after ${kDeadline} ms waiting for: ${what}`);
    await new Promise((ok) => setTimeout(ok, 100));
  }
}

const context = await chromium.launchPersistentContext(opt.profile, {
  executablePath: opt.chromium,
  headless: true,
  viewport: {width: 1440, height: 1000},
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
let failed = false;
try {
  const page = context.pages()[0] || await context.newPage();
  const problems = [];
  page.on('console', (m) => m.type() === 'error' && problems.push(`console: ${m.text()}`));
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  // The dashboard must work offline: anything but this node is refused and recorded.
  const foreign = [];
  await page.route('**/*', (route) => {
    const u = new URL(route.request().url());
    if (u.origin === base.origin) return route.continue();
    foreign.push(u.href);
    return route.abort();
  });

  step(`open ${base.href}`);
  await page.goto(base.href);
  await page.evaluate(() => { window.__noReload = true; });  // gone if the page ever reloads
  assert.equal(await page.title(), 'Drover dashboard');

  step('the two live workers are listed, one of them leads');
  await until(page, () => document.querySelectorAll('#workers-body tr').length === 2,
                             null);
  const workers = await api('GET', '/v1/workers');
  const shown = await page.$$eval('#workers-body tr', (rows) => rows.map((r) => r.dataset.workerId));
  assert.deepEqual(shown, workers.workers.map((w) => w.id));
  await until(page, () => document.querySelectorAll('#workers-body .s-leader').length === 1,
                             null);
  assert.equal(await page.isHidden('#workers-empty'), true);
  await until(page, () => document.getElementById('c-zk').textContent.includes('connected'),
                             null);
  await page.waitForSelector('#live.on');

  step('a task submitted from the page runs and its row turns succeeded');
  await page.fill('#submit-type', 'echo');
  await page.fill('#submit-payload', '{"from": "the browser test"}');
  await page.click('#submit-form button[type=submit]');
  await page.waitForSelector('#submit-result[data-task-id]');
  const echoId = await page.getAttribute('#submit-result', 'data-task-id');
  await page.waitForSelector(`#tasks-body tr[data-task-id="${echoId}"][data-state="succeeded"]`);
  assert.equal(await page.textContent(`#tasks-body tr[data-task-id="${echoId}"] td.state`),
               'succeeded');
  assert.deepEqual((await api('GET', `/v1/tasks/${echoId}`)).result, {from: 'the browser test'});
  // The chart reads the nodes' counters (GET /v1/stats/history), re-read every 5 s.
  await until(page, () => Number(document.querySelector('#rates [data-finished]')?.dataset.finished) >= 1,
                             null);

  step('newest first: three tasks submitted one after another head the list in reverse order');
  const order = [];
  for (let i = 0; i < 3; i++) order.push((await api('POST', '/v1/tasks', {type: 'noop', payload: {i}})).id);
  await until(page, (ids) => {
    const rows = [...document.querySelectorAll('#tasks-body tr')].map((r) => r.dataset.taskId);
    return rows.join() === ids.join();
  }, [...order].reverse().concat(echoId));
  // Every task has a queue now (docs/ROUTING.md): the filter offers the served ones.
  assert.equal(await page.isHidden('#queue-filter-wrap'), false, 'the queue filter is shown');
  assert.ok((await page.$$eval('#queue-filter option', (os) => os.map((o) => o.value))).includes('default'));
  assert.match(await page.textContent('#page-info'), /^showing 1–4 of \d+$/);

  step('the task panel shows the payload, the result and a timeline');
  await page.click(`#tasks-body tr[data-task-id="${echoId}"] td.id`);
  await until(page, (id) => document.getElementById('p-title').textContent === id &&
                                     document.querySelectorAll('#p-body .timeline li').length >= 2,
                             echoId);
  const panel = await page.textContent('#p-body');
  assert.match(panel, /the browser test/);
  assert.match(panel, /succeeded/);
  await page.click('#p-close');

  step('cancel: a 30 s sleep submitted from the page, cancelled with its row button');
  await page.fill('#submit-type', 'sleep');
  await page.fill('#submit-payload', '{"ms": 30000}');
  await page.evaluate(() => document.getElementById('submit-result').removeAttribute('data-task-id'));
  await page.click('#submit-form button[type=submit]');
  await page.waitForSelector('#submit-result[data-task-id]');
  const sleepId = await page.getAttribute('#submit-result', 'data-task-id');
  assert.notEqual(sleepId, echoId);
  await page.waitForSelector(`#tasks-body tr[data-task-id="${sleepId}"][data-state="running"]`);
  await page.click(`#tasks-body tr[data-task-id="${sleepId}"] button[data-action=cancel]`);
  await page.waitForSelector(`#tasks-body tr[data-task-id="${sleepId}"][data-state="cancelled"]`);
  assert.equal((await api('GET', `/v1/tasks/${sleepId}`)).state, 'cancelled');

  step('retry of the cancelled task: the same id runs again, its history in the panel');
  await page.click(`#tasks-body tr[data-task-id="${sleepId}"] td.id`);
  await until(page, (id) => document.getElementById('p-title').textContent === id &&
                            document.querySelector('#p-body button[data-action=retry]') !== null, sleepId);
  await page.click('#p-body button[data-action=retry]');
  await until(page, () => {
    const rows = document.querySelectorAll('#p-body table.history tbody tr');
    return rows.length === 2 && rows[1].textContent.includes('retried by hand') &&
           document.querySelector('#p-body .facts .badge')?.textContent !== 'cancelled';
  }, null);
  const retried = await api('GET', `/v1/tasks/${sleepId}`);
  assert.notEqual(retried.state, 'cancelled');
  assert.deepEqual(retried.history.map((a) => a.state), ['cancelled', 'pending']);
  await page.screenshot({path: opt.screenshot.replace(/\.png$/, '-history.png')});
  step('cancel the retried task from its panel');
  await page.click('#p-body button[data-action=cancel]');
  await until(page, () => document.querySelector('#p-body .facts .badge')?.textContent === 'cancelled' &&
                          document.querySelectorAll('#p-body table.history tbody tr').length === 3, null);
  await page.click('#p-close');

  step('search by id: the exact id shows that task alone; an unknown id says so');
  await page.fill('#search-id', sleepId);
  await page.press('#search-id', 'Enter');
  await until(page, (id) => {
    const rows = [...document.querySelectorAll('#tasks-body tr')];
    return rows.length === 1 && rows[0].dataset.taskId === id;
  }, sleepId);
  await page.fill('#search-id', 'no-such-task');
  await page.press('#search-id', 'Enter');
  await until(page, () => document.querySelectorAll('#tasks-body tr').length === 0 &&
                          /No task has the id no-such-task/.test(document.getElementById('tasks-empty').textContent));
  await page.fill('#search-id', '');
  await until(page, () => document.querySelectorAll('#tasks-body tr').length >= 5);

  step('a failing exec task: its error in the row, its stderr (escaped) in the panel');
  const execId = (await api('POST', '/v1/tasks', {
    type: 'exec', max_attempts: 1,
    payload: {argv: ['sh', '-c', 'echo "went <b>wrong</b> & died" >&2; exit 3']},
  })).id;
  await page.waitForSelector(`#tasks-body tr[data-task-id="${execId}"][data-state="failed"]`);
  // The event turns the row failed at once; its error comes with the list reload that follows.
  await until(page, (id) => {
    const cell = document.querySelector(`#tasks-body tr[data-task-id="${id}"] td.error`);
    return cell !== null && cell.textContent.trim() === 'exited with code 3';
  }, execId);
  await page.click(`#tasks-body tr[data-task-id="${execId}"] td.id`);
  await until(page, () => document.querySelector('#p-body pre[data-stream=stderr]') !== null);
  assert.equal(await page.textContent('#p-body pre[data-stream=stderr]'), 'went <b>wrong</b> & died\n');
  assert.equal(await page.$$eval('#p-body b', (b) => b.length), 0, 'stderr markup was rendered');
  assert.match(await page.textContent('#p-body'), /"exit_code": 3/);
  await page.screenshot({path: opt.screenshot.replace(/\.png$/, '-stderr.png')});
  await page.click('#p-close');

  step('type filter: only exec tasks, as many as the API lists');
  await page.fill('#type-filter', 'exec');
  await page.dispatchEvent('#type-filter', 'change');
  await until(page, (id) => {
    const rows = [...document.querySelectorAll('#tasks-body tr')];
    return rows.length === 1 && rows[0].dataset.taskId === id;
  }, execId);
  assert.equal((await api('GET', '/v1/tasks?type=exec')).tasks.length, 1);

  step('queues: pause from the card holds a task of that queue; resume releases it; the queue filter');
  await page.fill('#type-filter', '');
  await page.dispatchEvent('#type-filter', 'change');
  await api('PUT', '/v1/queues/reports', {max_running: 1});
  await until(page, () => !!document.querySelector('#queues-body tr[data-queue="reports"] button'), null);
  await page.click('#queues-body tr[data-queue="reports"] button[data-queue-action="pause"]');
  await until(page, () => document.querySelector('#queues-body tr[data-queue="reports"]')?.textContent.includes('paused'), null);
  assert.equal((await api('GET', '/v1/queues')).queues.find((q) => q.name === 'reports').paused, true);
  const held = (await api('POST', '/v1/tasks', {type: 'noop', queue: 'reports'})).id;
  // Nobody serves 'reports' on this cluster, and it is paused: the plain GET says the first reason.
  assert.equal((await api('GET', `/v1/tasks/${held}`)).waiting_for, "queue 'reports' is paused");
  await page.selectOption('#queue-filter', 'reports');
  await until(page, (id) => {
    const rows = [...document.querySelectorAll('#tasks-body tr')];
    return rows.length === 1 && rows[0].dataset.taskId === id;
  }, held);
  await page.click('#queues-body tr[data-queue="reports"] button[data-queue-action="resume"]');
  await until(page, () => document.querySelector('#queues-body tr[data-queue="reports"]')?.textContent.includes('open'), null);
  assert.equal((await api('GET', '/v1/queues')).queues.find((q) => q.name === 'reports').paused, false);
  await page.selectOption('#queue-filter', '');
  await api('DELETE', `/v1/tasks/${held}`);

  step('bulk cancel of a filtered set: five long sleeps, by the type filter');
  const sleeps = (await api('POST', '/v1/tasks/batch', {
    tasks: Array.from({length: 5}, (_, i) => ({type: 'sleep', payload: {ms: 60000 + i}})),
  })).ids;
  const quick = (await api('POST', '/v1/tasks', {type: 'noop'})).id;  // not a sleep: untouched
  await page.fill('#type-filter', 'sleep');
  await page.dispatchEvent('#type-filter', 'change');
  await until(page, (ids) => ids.every((id) => document.querySelector(`#tasks-body tr[data-task-id="${id}"]`)), sleeps);
  await page.click('#bulk-cancel');
  await until(page, () => /^Cancel 5 unfinished sleep tasks\?/.test(document.getElementById('bulk-text').textContent));
  assert.equal(await page.textContent('#bulk-title'), 'Cancel tasks');
  await page.screenshot({path: opt.screenshot.replace(/\.png$/, '-bulk.png')});
  await page.click('#bulk-go');
  await until(page, () => document.getElementById('bulk-progress').dataset.cancelled !== undefined);
  const tally = await page.$eval('#bulk-progress', (p) => ({...p.dataset}));
  assert.equal(Number(tally.cancelled) + Number(tally.finished), 5, JSON.stringify(tally));
  assert.equal(Number(tally.failed), 0);
  for (const id of sleeps) assert.equal((await api('GET', `/v1/tasks/${id}`)).state, 'cancelled', id);
  assert.notEqual((await api('GET', `/v1/tasks/${quick}`)).state, 'cancelled');
  await page.click('#bulk-close');

  step('bulk retry of the same filtered set: the five cancelled sleeps run again under their ids');
  await page.selectOption('#state-filter', 'cancelled');
  await until(page, (ids) => ids.every((id) => document.querySelector(`#tasks-body tr[data-task-id="${id}"]`)), sleeps);
  await page.click('#bulk-retry');
  // The five, and the sleep retried and cancelled again from its panel above.
  await until(page, () => /^Retry 6 cancelled sleep tasks\?/.test(document.getElementById('bulk-text').textContent));
  assert.equal(await page.textContent('#bulk-title'), 'Retry tasks');  // the dialog's own title
  await page.screenshot({path: opt.screenshot.replace(/\.png$/, '-bulk-retry.png')});
  await page.click('#bulk-go');
  await until(page, () => document.getElementById('bulk-progress').dataset.retried !== undefined);
  const retriedTally = await page.$eval('#bulk-progress', (p) => ({...p.dataset}));
  assert.equal(Number(retriedTally.retried), 6, JSON.stringify(retriedTally));
  assert.equal(Number(retriedTally.failed), 0);
  for (const id of sleeps) {
    const t = await api('GET', `/v1/tasks/${id}`);
    assert.notEqual(t.state, 'cancelled', id);
    assert.equal(t.history.at(-1).error, 're-opened by a retry', id);
  }
  await page.click('#bulk-close');
  for (const id of [...sleeps, sleepId]) await api('DELETE', `/v1/tasks/${id}`);  // the long sleeps go again
  await page.selectOption('#state-filter', '');
  await page.fill('#type-filter', '');
  await page.dispatchEvent('#type-filter', 'change');

  step('a delayed task is counted in the waiting tile and listed by the waiting filter');
  const laterId = (await api('POST', '/v1/tasks', {type: 'noop', delay_s: 3600})).id;
  await until(page, () => Number(document.querySelector('#tiles .s-waiting b').textContent) >= 1,
              null);
  await page.selectOption('#state-filter', 'waiting');
  await until(page, (id) => {
    const rows = [...document.querySelectorAll('#tasks-body tr')];
    return rows.length === 1 && rows[0].dataset.taskId === id && rows[0].dataset.state === 'waiting';
  }, laterId);
  await api('DELETE', `/v1/tasks/${laterId}`);
  await page.selectOption('#state-filter', '');

  step('some load for the chart, one failure, and the state filter');
  const failId = (await api('POST', '/v1/tasks', {type: 'fail', payload: {message: 'a failure on purpose'}, max_attempts: 1})).id;
  const batch = Array.from({length: 60}, (_, i) => ({type: i % 3 ? 'echo' : 'noop', payload: {n: i}}));
  await api('POST', '/v1/tasks/batch', {tasks: batch});
  await until(page, () => Number(document.querySelector('#tiles .s-failed b').textContent) >= 2 &&
                                   Number(document.querySelector('#tiles .s-succeeded b').textContent) >= 61,
                             null);
  await page.selectOption('#state-filter', 'failed');
  await until(page, (ids) => {  // the fail task and the exec one, newest first
    const rows = [...document.querySelectorAll('#tasks-body tr')];
    return rows.map((r) => r.dataset.taskId).join() === ids.join() &&
           rows.every((r) => r.dataset.state === 'failed');
  }, [failId, execId]);
  step('the failed task\'s panel shows its error and offers a retry');
  await page.click(`#tasks-body tr[data-task-id="${failId}"] td.id`);
  await until(page, () => document.querySelector('#p-body pre.err')?.textContent.includes('a failure on purpose') &&
                          document.querySelector('#p-body button[data-action=retry]') !== null);
  await page.screenshot({path: opt.screenshot.replace(/\.png$/, '-task.png')});
  await page.click('#p-close');
  await page.selectOption('#state-filter', '');
  await until(page, () => document.querySelectorAll('#tasks-body tr').length === 25 &&
                                   !document.getElementById('next').disabled, null);

  assert.equal(await page.evaluate(() => window.__noReload), true, 'the page reloaded');

  step('the throughput history is drawn right after a reload');
  await until(page, () => Number(document.querySelector('#rates [data-finished]')?.dataset.finished) >= 62);
  const before = await page.$eval('#rates [data-finished]', (e) => Number(e.dataset.finished));
  await page.reload();
  const loaded = Date.now();
  await until(page, (n) => Number(document.querySelector('#rates [data-finished]')?.dataset.finished) >= n, before);
  const fillMs = Date.now() - loaded;
  // The node the page talks to summed both nodes: its answer is the sum of their own histories.
  const finishedIn = (hist) => hist.buckets.reduce((a, b) => a + b.succeeded + b.failed + b.retried, 0);
  // (A sample taken between the two reads can make them differ once: compared until a deadline.)
  for (const end = Date.now() + kDeadline; ;) {
    const cluster = await api('GET', '/v1/stats/history');
    assert.equal(cluster.complete, true, JSON.stringify(cluster.nodes));
    assert.equal(cluster.nodes.length, 2);
    let perNode = 0;
    for (const w of workers.workers) {
      perNode += finishedIn(await (await fetch(`http://${w.http}/v1/stats/history?scope=node`)).json());
    }
    if (finishedIn(cluster) === perNode && perNode >= before) break;
    assert.ok(Date.now() < end, `cluster ${finishedIn(cluster)} != sum of nodes ${perNode}`);
    await new Promise((ok) => setTimeout(ok, 500));
  }
  assert.ok(fillMs < 3000, `the chart took ${fillMs} ms to fill after the reload`);
  console.log(`[ figure ] chart filled ${fillMs} ms after the reload (${before} attempts in the hour)`);
  await page.waitForSelector('#live.on');

  step('connection state: ZooKeeper paused (SIGSTOP) -> "ZooKeeper unreachable", resumed -> live');
  process.kill(zkPid, 'SIGSTOP');
  zkPaused = true;
  const paused = Date.now();
  await until(page, () => document.getElementById('live').dataset.state === 'no-zk' &&
                          document.getElementById('live-text').textContent === 'ZooKeeper unreachable');
  console.log(`[ figure ] header left "live" ${Date.now() - paused} ms after ZooKeeper paused`);
  assert.equal(await page.isVisible('#banner'), true);
  await page.screenshot({path: opt.screenshot.replace(/\.png$/, '-nozk.png')});
  // A submit now fails; what the page says is a sentence, no ZooKeeper return codes.
  await page.fill('#submit-type', 'noop');
  await page.fill('#submit-payload', '{}');
  await page.click('#submit-form button[type=submit]');
  await until(page, () => document.getElementById('submit-result').classList.contains('err'));
  const said = await page.textContent('#submit-result');
  assert.doesNotMatch(said, /rc -?\d|zk rc/i, said);
  console.log(`[ note ] submit while ZooKeeper was paused said: ${said}`);
  resumeZk();
  const resumed = Date.now();
  await until(page, () => document.getElementById('live').dataset.state === 'live' &&
                          document.getElementById('live-text').textContent === 'live');
  console.log(`[ figure ] header back to "live" ${Date.now() - resumed} ms after ZooKeeper resumed`);
  await until(page, () => document.getElementById('banner').hidden);
  // The submit's "cannot reach ZooKeeper" no longer holds: the form says nothing stale.
  await until(page, () => !document.getElementById('submit-result').classList.contains('err') &&
                          document.getElementById('submit-result').textContent === '');

  assert.deepEqual(foreign, [], 'the dashboard fetched something from elsewhere');
  // Chromium logs every non-2xx answer as a console error: the lookups of the unknown id (404)
  // and the calls made while ZooKeeper was paused (50x) are expected; nothing else may appear.
  const notFound = problems.filter((p) => /status of 404/.test(p)).length;
  assert.ok(notFound <= 3, `${notFound} answers 404: more than the unknown-id search explains`);
  assert.deepEqual(problems.filter((p) => !/status of (404|50[0-9])/.test(p)), [], 'console errors');

  await page.screenshot({path: opt.screenshot, fullPage: true});
  console.log(`[ artifact ] dashboard screenshot: ${opt.screenshot}`);
  console.log('PASS dashboard browser test');
} catch (e) {
  failed = true;
  console.error(`FAIL: ${e.stack || e}`);
  try {
    const page = context.pages()[0];
    if (page) {
      await page.screenshot({path: opt.screenshot, fullPage: true});
      console.error(`[ artifact ] screenshot at the failure: ${opt.screenshot}`);
    }
  } catch (ignored) {
    // the browser itself failed; nothing to capture
  }
} finally {
  resumeZk();
  await context.close();
}
process.exit(failed ? 1 : 0);
