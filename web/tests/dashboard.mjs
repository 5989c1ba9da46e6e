// The dashboard in a real headless Chromium, against a running `serve` on the embedded default
// (SQLite, the simulated market, the demo user): sign in with the demo button, build an alert
// in the form, see a validation error next to its field, dry-run it, save it, see it fire in the
// alert list and on the Live page, see its triggers marked on the chart, and the Bots and
// Deliveries pages with real data. Screenshots go to $BROWSER_ARTIFACTS.
//
//   node web/tests/dashboard.mjs http://127.0.0.1:8080/
//
// Run by `cargo test --workspace --test browser -- --ignored` (which starts `serve` with
// --webhook-allow-private, for the local webhook receiver below). Exits non-zero on failure.

import assert from 'node:assert/strict';
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

const base = process.argv[2] || process.env.DASHBOARD_URL;
if (!base) {
  console.error('usage: node dashboard.mjs <dashboard URL>');
  process.exit(2);
}
const artifacts = process.env.BROWSER_ARTIFACTS || path.resolve('target/browser-artifacts');
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
fs.mkdirSync(artifacts, { recursive: true });

const started = Date.now();
const step = (text) => console.log(`[${((Date.now() - started) / 1000).toFixed(1).padStart(5)} s] ${text}`);

// A webhook receiver: the first request to each delivery fails (500), later ones succeed, so a
// delivery has several attempts to show.
const seen = new Map();
let hits = 0;
const receiver = http.createServer((req, res) => {
  let body = '';
  req.on('data', (c) => { body += c; });
  req.on('end', () => {
    hits += 1;
    const id = req.headers['webhook-id'] || 'none';
    const n = (seen.get(id) || 0) + 1;
    seen.set(id, n);
    res.writeHead(n === 1 ? 500 : 200, { 'Content-Type': 'text/plain' });
    res.end(n === 1 ? 'try again' : 'ok');
  });
});
await new Promise((r) => receiver.listen(0, '127.0.0.1', r));
const hookUrl = `http://127.0.0.1:${receiver.address().port}/hook`;

const browser = await chromium.launch({ executablePath, headless: true, args: ['--no-sandbox'] });
const context = await browser.newContext({ viewport: { width: 1440, height: 960 }, deviceScaleFactor: 1 });
const page = await context.newPage();
const problems = [];
page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
page.on('console', (m) => {
  // CSP violations and uncaught errors are console errors; 4xx answers the test provokes
  // (validation errors, the bad token) are logged by Chromium as failed resources: those are expected.
  if (m.type() === 'error' && !/Failed to load resource: the server responded with a status of (400|401|404)/.test(m.text())) {
    problems.push(`console error: ${m.text()}`);
  }
});

let shot = 0;
async function screenshot(name) {
  shot += 1;
  const file = path.join(artifacts, `${String(shot).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file, fullPage: false });
  step(`screenshot ${file}`);
}

/** An API call from the page, with the signed-in token (as the dashboard makes them). */
function api(method, url, body) {
  return page.evaluate(async ({ method, url, body }) => {
    const token = sessionStorage.getItem('alert-runner.token');
    const res = await fetch(`/v1${url}`, {
      method,
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : null };
  }, { method, url, body });
}

async function run() {
  // ---- sign in -----------------------------------------------------------------------------
  step(`open ${base}`);
  const response = await page.goto(base);
  assert.equal(response.status(), 200);
  assert.match(response.headers()['content-security-policy'] || '', /default-src 'self'/);
  await page.waitForSelector('#sign-in');
  await screenshot('sign-in');

  // A bad token is refused with a message, and the page stays on sign-in.
  await page.fill('#token-input', 'not-a-token');
  await page.click('#token-sign-in');
  await page.waitForSelector('#sign-in-error:not([hidden])');
  assert.match(await page.textContent('#sign-in-error'), /refused/);

  step('sign in with the demo token');
  await page.click('#demo-sign-in');
  await page.waitForSelector('#alerts-table tr.alert-row');
  const demoAlerts = await page.locator('#alerts-table tr.alert-row').count();
  assert.ok(demoAlerts >= 4, `the demo user's example alerts are listed (${demoAlerts})`);
  await page.waitForSelector('#conn[data-connected="true"]', { timeout: 15000 });

  // ---- the form: a validation error next to its field ----------------------------------------
  step('new alert: the form from /v1/catalog');
  await page.click('#new-alert');
  const length = '#alert-form [data-path="conditions[0].settings.length"]';
  await page.waitForSelector(length);
  await page.waitForSelector('#validity.ok');
  await page.fill(length, '0');
  const error = `#alert-form .field-error[data-error-for="conditions[0].settings.length"]`;
  await page.waitForSelector(error, { timeout: 10000 });
  const placement = await page.$eval(length, (input) => ({
    next: input.nextElementSibling && input.nextElementSibling.matches('.field-error'),
    invalid: input.getAttribute('aria-invalid'),
    field: input.closest('.field').dataset.field,
  }));
  assert.deepEqual(placement, { next: true, invalid: 'true', field: 'conditions[0].settings.length' },
    'the error is right after the offending input');
  assert.match(await page.textContent(error), /\S/);
  assert.match(await page.inputValue('#alert-json'), /"length": 0/, 'the JSON editor follows the form');
  await page.locator(error).scrollIntoViewIfNeeded();
  await screenshot('validation-error');
  await page.fill(length, '14');
  await page.waitForSelector(error, { state: 'detached' });
  await page.waitForSelector('#validity.ok');

  // ---- build an alert that fires on every bar: SIMBTC close > 1 --------------------------------
  step('build "SIMBTC above 1" in the form');
  const name = `Browser: SIMBTC above 1 (${Date.now()})`;
  await page.fill('#alert-form [data-path="name"]', name);
  await page.fill('#alert-form [data-path="symbol"]', 'SIMBTC');
  await page.selectOption('#alert-form [data-path="conditions[0].type"]', 'price');
  await page.waitForSelector('#alert-form [data-path="conditions[0].source"]');
  await page.selectOption('#alert-form [data-path="conditions[0].operator"]', '>');
  await page.fill('#alert-form [data-path="conditions[0].compareValue"]', '1');
  await page.fill('#alert-form [data-path="conditions[0].id"]', 'above');
  await page.fill('#alert-form [data-path="message"]', '{{symbol}} above 1 at {{close}}');
  await page.waitForSelector('#validity.ok');
  const json = JSON.parse(await page.inputValue('#alert-json'));
  assert.equal(json.conditions[0].type, 'price');
  assert.equal(json.conditions[0].compareValue, 1);
  assert.equal(json.conditions[0].indicator, undefined, 'switching to price drops the indicator');

  // The JSON editor drives the form too.
  json.debounce_bars = 1;
  await page.fill('#alert-json', JSON.stringify(json, null, 2));
  await page.waitForFunction(() => document.querySelector('#alert-form [data-path="debounce_bars"]').value === '1');

  step('test now: every operand\'s value');
  await page.click('#test-now');
  await page.waitForSelector('#eval-result .evaluation');
  const evaluation = await page.$eval('#eval-result .evaluation', (el) => ({
    holds: el.dataset.holds,
    value: el.querySelector('tr[data-condition="above"] td.value').textContent,
  }));
  assert.equal(evaluation.holds, 'true', 'SIMBTC is above 1');
  assert.ok(Number(evaluation.value.replace(/,/g, '')) > 1, `the close is shown (${evaluation.value})`);
  await screenshot('test-now');

  await page.click('#save-alert');
  const row = page.locator('#alerts-table tr.alert-row', { hasText: name });
  await row.waitFor();
  const alertId = await row.getAttribute('data-alert-id');
  assert.ok(alertId, 'the new alert is listed');
  assert.equal(await page.locator('#editor').count(), 0, 'the editor closed');

  // Edit it: the editor opens on the stored JSON; PUT replaces it.
  step('edit the saved alert');
  await row.locator('button:has-text("Edit")').click();
  await page.waitForSelector('#validity.ok');
  assert.equal(await page.inputValue('#alert-form [data-path="conditions[0].compareValue"]'), '1');
  await page.fill('#alert-form [data-path="name"]', `${name} (edited)`);
  await page.click('#save-alert');
  await page.locator('#alerts-table tr.alert-row', { hasText: `${name} (edited)` }).waitFor();
  assert.equal(await page.locator(`#alerts-table tr[data-alert-id="${alertId}"] td:first-child`).textContent(), `${name} (edited)`);

  // ---- it fires: the list and the Live page update from the event stream --------------------
  step('wait for it to fire (live update of the list)');
  await page.waitForSelector(`#alerts-table tr[data-alert-id="${alertId}"]:not([data-fire-count="0"])`, { timeout: 30000 });
  assert.notEqual(await row.locator('.last-fired').textContent(), 'never');

  await page.click('nav a[data-route="live"]');
  await page.waitForSelector('#live-events');
  const before = await page.locator(`#live-events li[data-type="trigger"][data-alert-id="${alertId}"]`).count();
  await page.waitForSelector(`#live-events li.fresh[data-type="trigger"][data-alert-id="${alertId}"]`, { timeout: 30000 });
  await page.waitForSelector(`#live-others li.fresh[data-type="notification"][data-alert-id="${alertId}"]`, { timeout: 30000 });
  const after = await page.locator(`#live-events li[data-type="trigger"][data-alert-id="${alertId}"]`).count();
  assert.ok(after > before || before > 0, 'a trigger arrived live');
  const snapshot = await page.locator(`#live-events li.fresh[data-type="trigger"][data-alert-id="${alertId}"] .snapshot`).first().textContent();
  assert.match(snapshot, /SIMBTC above 1 at/, 'the trigger shows its snapshot (the rendered message)');
  const ids = await page.$$eval('#live-events li[data-id], #live-others li[data-id]', (els) => els.map((e) => `${e.dataset.type}:${e.dataset.id}`));
  assert.equal(new Set(ids).size, ids.length, 'history and live events are merged without repeats');
  await screenshot('live');

  // ---- the chart: candles, the alert's triggers marked --------------------------------------
  step('chart of the new alert: its triggers marked');
  await page.goto(`${base}#/chart/${alertId}`);
  await page.waitForSelector('#chart[data-ready="true"]');
  await page.waitForFunction(() => Number(document.querySelector('#chart').dataset.markers) >= 1, null, { timeout: 20000 });
  const chart = await page.$eval('#chart', (el) => ({ ...el.dataset }));
  assert.equal(chart.alertId, alertId);
  assert.equal(chart.symbol, 'SIMBTC');
  assert.ok(Number(chart.candles) > 0, `candles drawn (${chart.candles})`);
  assert.ok(Number(chart.markers) >= 1, `triggers marked (${chart.markers})`);
  assert.ok(await page.locator('#chart canvas').count() > 0, 'the chart draws on canvases');

  // ---- bots ---------------------------------------------------------------------------------
  step('bots: a DCA bot, its open deal and orders');
  const bot = await api('POST', '/bots', {
    name: 'Browser DCA', pair: 'SIMETH', timeframe: '1m',
    entry_conditions: [{ type: 'price', operator: '>', compareValue: 0 }],
    base_order: 100, safety_order: 100, max_safety_orders: 3,
    price_deviation_pct: 0.1, step_scale: 1.5, volume_scale: 1.5,
    take_profit_pct: 0.3, quantity_step: 0.0001,
  });
  assert.equal(bot.status, 201, JSON.stringify(bot.body));
  await page.click('nav a[data-route="bots"]');
  await page.waitForSelector(`#bots-table tr[data-bot-id="${bot.body.id}"]`);
  await page.click(`#bots-table tr[data-bot-id="${bot.body.id}"] button:has-text("Orders")`);
  await page.waitForSelector('#orders-table tr.order', { timeout: 30000 });
  await page.waitForSelector('#deals-table tbody tr');
  await screenshot('bots');

  // ---- deliveries ---------------------------------------------------------------------------
  step('deliveries: a webhook alert, its attempts, redeliver');
  const hook = await api('POST', '/alerts', {
    name: 'Browser webhook', symbol: 'SIMSOL', base_timeframe: '1m',
    conditions: [{ id: 'p', type: 'price', operator: '>', compareValue: 0 }],
    trigger: 'once', message: '{{symbol}} at {{close}}',
    action: { type: 'webhook', url: hookUrl },
  });
  assert.equal(hook.status, 201, JSON.stringify(hook.body));
  await page.click('nav a[data-route="deliveries"]');
  const delivered = `#deliveries details.delivery[data-kind="webhook"][data-alert-id="${hook.body.id}"][data-status="delivered"]`;
  await page.waitForSelector(delivered, { timeout: 60000 });
  await page.click(`${delivered} summary`);
  const attempts = await page.locator(`${delivered} tr.attempt`).count();
  assert.ok(attempts >= 2, `the failed attempt and the successful one are listed (${attempts})`);
  await screenshot('deliveries');
  const hitsBefore = hits;
  await page.click(`${delivered} button.redeliver`);
  await page.waitForSelector('#toast:has-text("Queued again")');
  const deadline = Date.now() + 20000;
  while (hits === hitsBefore && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
  assert.ok(hits > hitsBefore, 'the receiver got the redelivery');

  step('chart of the demo EMA alert: the indicator drawn');
  const alerts = (await api('GET', '/alerts?limit=500')).body.items;
  const ema = alerts.find((a) => a.name.includes('EMA(20)'));
  assert.ok(ema, 'the demo EMA alert exists');
  await page.click('nav a[data-route="chart"]');
  await page.waitForSelector('#chart[data-ready="true"]');
  await page.selectOption('#chart-alert', ema.id);
  await page.waitForFunction((id) => document.querySelector('#chart').dataset.alertId === id, ema.id);
  await page.waitForSelector('#chart[data-ready="true"]');
  await page.waitForFunction(() => Number(document.querySelector('#chart').dataset.markers) >= 1, null, { timeout: 60000 });
  const emaChart = await page.$eval('#chart', (el) => ({ ...el.dataset }));
  assert.equal(emaChart.indicators, '1');
  assert.equal(emaChart.indicatorSpecs, 'EMA(20)');
  await page.waitForTimeout(500);
  await screenshot('chart');

  // ---- pause, resume, delete ----------------------------------------------------------------
  step('pause, resume and delete the alert from the list');
  await page.click('nav a[data-route="alerts"]');
  const mine = `#alerts-table tr[data-alert-id="${alertId}"]`;
  await page.click(`${mine} button:has-text("Pause")`);
  await page.waitForSelector(`${mine}[data-status="paused"]`);
  await page.click(`${mine} button:has-text("Resume")`);
  await page.waitForSelector(`${mine}[data-status="active"]`);
  await page.click(`${mine} button:has-text("Delete")`);
  await page.click(`${mine} button:has-text("Really delete?")`);
  await page.waitForSelector(mine, { state: 'detached' });
  const gone = await api('GET', `/alerts/${alertId}`);
  assert.equal(gone.status, 404);

  // ---- sign out; sign in by pasting a token ------------------------------------------------
  step('sign out, sign in with a pasted token');
  const token = await page.evaluate(() => sessionStorage.getItem('alert-runner.token'));
  await page.click('#sign-out');
  await page.waitForSelector('#sign-in');
  assert.equal(await page.evaluate(() => sessionStorage.getItem('alert-runner.token')), null);
  await page.fill('#token-input', token);
  await page.click('#token-sign-in');
  await page.waitForSelector('#alerts-table tr.alert-row');

  assert.deepEqual(problems, [], 'no page errors, console errors or CSP violations');
}

let failed = false;
try {
  await run();
  step('all checks passed');
} catch (e) {
  failed = true;
  console.error(e);
  if (problems.length) console.error(`page problems:\n  ${problems.join('\n  ')}`);
  await screenshot('failure').catch(() => {});
} finally {
  await browser.close();
  receiver.close();
}
process.exit(failed ? 1 : 0);
