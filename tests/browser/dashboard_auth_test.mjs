// Real-browser test of the dashboard against a node with API tokens (docs/SECURITY.md): the page
// asks for a token on 401, refuses a wrong one, keeps the right one in sessionStorage only, sends
// it on every call and on the event stream (never in a URL), and shows a 403 as an error.
//   node dashboard_auth_test.mjs --url http://127.0.0.1:P/ --chromium /usr/bin/chromium \
//        --profile DIR --read TOKEN --submit TOKEN
import assert from 'node:assert/strict';
import {parseArgs} from 'node:util';
import {chromium} from 'playwright-core';

const {values: opt} = parseArgs({options: {
  url: {type: 'string'}, chromium: {type: 'string', default: '/usr/bin/chromium'},
  profile: {type: 'string'}, read: {type: 'string'}, submit: {type: 'string'},
}});
assert.ok(opt.url && opt.profile && opt.read && opt.submit, 'usage: --url --profile --read --submit');
const base = new URL(opt.url);
const step = (text) => console.log(`[ step ] ${text}`);

const context = await chromium.launchPersistentContext(opt.profile, {
  executablePath: opt.chromium,
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
let failed = false;
try {
  const page = context.pages()[0] || await context.newPage();
  const urls = [];
  page.on('request', (r) => urls.push(r.url()));
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));

  step('without a token the API answers 401 and the page asks for one');
  assert.equal((await fetch(new URL('/v1/cluster', base))).status, 401);
  await page.goto(base.href);
  await page.waitForSelector('#auth[open]');

  step('a wrong token is refused and asked again, with a reason');
  await page.fill('#auth-token', 'drv_not-a-token-of-this-node');
  await page.click('#auth-form button[type=submit]');
  await page.waitForSelector('#auth[open] #auth-error:not([hidden])');
  assert.match(await page.textContent('#auth-error'), /not valid/);

  step('a read token: the page loads, the event stream is live');
  await page.fill('#auth-token', opt.read);
  await page.click('#auth-form button[type=submit]');
  await page.waitForSelector('#auth:not([open])', {state: 'attached'});
  await page.waitForSelector('#workers-body tr');
  await page.waitForSelector('#live.on');
  assert.equal(await page.evaluate(() => sessionStorage.getItem('drover-token')), opt.read);
  assert.equal(await page.evaluate(() => localStorage.length), 0);
  assert.equal(await page.evaluate(() => document.cookie), '');

  step('submitting with a read token is a 403, shown as an error, not a new prompt');
  await page.fill('#submit-type', 'noop');
  await page.fill('#submit-payload', '');
  await page.click('#submit-form button[type=submit]');
  await page.waitForSelector('#submit-result.err');
  assert.match(await page.textContent('#submit-result'), /needs the submit role/);
  assert.equal(await page.isVisible('#auth'), false);

  step('forget the token: the page asks again; a submit token submits and the row updates live');
  await page.click('#sign-out');
  await page.waitForSelector('#auth[open]');
  await page.fill('#auth-token', opt.submit);
  await page.click('#auth-form button[type=submit]');
  await page.waitForSelector('#live.on');
  await page.fill('#submit-type', 'echo');
  await page.fill('#submit-payload', '{"with": "a token"}');
  await page.click('#submit-form button[type=submit]');
  await page.waitForSelector('#submit-result[data-task-id]');
  const id = await page.getAttribute('#submit-result', 'data-task-id');
  await page.waitForSelector(`#tasks-body tr[data-task-id="${id}"][data-state="succeeded"]`);

  step('no request carried a token in its URL');
  for (const u of urls) {
    assert.ok(!u.includes(opt.read) && !u.includes(opt.submit), `token in a URL: ${u}`);
  }
  assert.deepEqual(errors, []);
  console.log('PASS dashboard with tokens');
} catch (e) {
  failed = true;
  console.error(`FAIL ${e.stack || e}`);
} finally {
  await context.close();
}
process.exit(failed ? 1 : 0);
