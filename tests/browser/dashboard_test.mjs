// Real-browser test of the dashboard: Debian's Chromium driven by playwright-core against a
// running local cluster (run_dashboard_test.sh starts it). Plain Node, no test runner.
//   node dashboard_test.mjs --url http://127.0.0.1:P/ --chromium /usr/bin/chromium \
//        --profile DIR --screenshot FILE
import assert from 'node:assert/strict';
import {parseArgs} from 'node:util';
import {chromium} from 'playwright-core';

const {values: opt} = parseArgs({options: {
  url: {type: 'string'}, chromium: {type: 'string', default: '/usr/bin/chromium'},
  profile: {type: 'string'}, screenshot: {type: 'string'},
}});
assert.ok(opt.url && opt.profile && opt.screenshot, 'usage: --url --profile --screenshot');
const base = new URL(opt.url);
const kDeadline = 30000;  // every wait below is on a condition, with this deadline

async function api(method, path, body) {
  const res = await fetch(new URL(path, base), {
    method, headers: body ? {'Content-Type': 'application/json'} : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  const data = await res.json();
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
  // The chart counts completions from the event stream.
  await until(page, () => /[1-9]/.test(document.querySelector('#rates span:last-child b').textContent),
                             null);

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

  step('retry of the cancelled task: a new id with the same type, payload and priority');
  await page.click(`#tasks-body tr[data-task-id="${sleepId}"] button[data-action=retry]`);
  await until(page, (old) => {
    const t = document.getElementById('p-title').textContent;
    return !document.getElementById('panel').hidden && t && t !== old && t !== 'Task';
  }, sleepId);
  const retryId = await page.textContent('#p-title');
  const retried = await api('GET', `/v1/tasks/${retryId}`);
  assert.equal(retried.type, 'sleep');
  assert.deepEqual(retried.payload, {ms: 30000});
  assert.equal(retried.priority, 5);
  step('cancel the retry from its panel');
  await page.click('#p-body button[data-action=cancel]');
  await until(page, () => document.querySelector('#p-body .facts .badge')?.textContent === 'cancelled',
                             null);
  await page.click('#p-close');

  step('some load for the chart, one failure, and the state filter');
  await api('POST', '/v1/tasks', {type: 'fail', payload: {message: 'a failure on purpose'}, max_attempts: 1});
  const batch = Array.from({length: 60}, (_, i) => ({type: i % 3 ? 'echo' : 'noop', payload: {n: i}}));
  await api('POST', '/v1/tasks/batch', {tasks: batch});
  await until(page, () => Number(document.querySelector('#tiles .s-failed b').textContent) >= 1 &&
                                   Number(document.querySelector('#tiles .s-succeeded b').textContent) >= 61,
                             null);
  await page.selectOption('#state-filter', 'failed');
  await until(page, () => {
    const rows = [...document.querySelectorAll('#tasks-body tr')];
    return rows.length === 1 && rows[0].dataset.state === 'failed';
  }, null);
  step('the failed task\'s panel shows its error and offers a retry');
  await page.click('#tasks-body tr[data-state="failed"] td.id');
  await until(page, () => document.querySelector('#p-body pre.err')?.textContent.includes('a failure on purpose') &&
                          document.querySelector('#p-body button[data-action=retry]') !== null);
  await page.screenshot({path: opt.screenshot.replace(/\.png$/, '-task.png')});
  await page.click('#p-close');
  await page.selectOption('#state-filter', '');
  await until(page, () => document.querySelectorAll('#tasks-body tr').length === 25 &&
                                   !document.getElementById('next').disabled, null);

  assert.equal(await page.evaluate(() => window.__noReload), true, 'the page reloaded');
  assert.deepEqual(foreign, [], 'the dashboard fetched something from elsewhere');
  assert.deepEqual(problems, [], 'console errors');

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
  await context.close();
}
process.exit(failed ? 1 : 0);
