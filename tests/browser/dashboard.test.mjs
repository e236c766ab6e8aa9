// Headless-browser tests of the Haskap city dashboard.
//
// Starts the real broker (`HASKAP_BIN serve --demo`) on a free port with a fresh data directory,
// drives Debian's Chromium through playwright-core, and checks the dashboard through the page
// (and the NGSI-LD API where a result must match it). Screenshots go to ./artifacts/.
//
// Environment:
//   HASKAP_BIN            the broker binary (default ../../target/debug/haskap)
//   HASKAP_DASHBOARD_DIR  serve the dashboard files from this directory (--dashboard-dir)
//   CHROMIUM              the browser (default /usr/bin/chromium)

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, existsSync, createWriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const BIN = path.resolve(here, process.env.HASKAP_BIN || '../../target/debug/haskap');
const DASHBOARD_DIR = process.env.HASKAP_DASHBOARD_DIR ? path.resolve(here, process.env.HASKAP_DASHBOARD_DIR) : null;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = path.join(here, 'artifacts');
const CONTEXT = 'https://w3id.org/haskap/context/city/v1.jsonld';
const LINK = `<${CONTEXT}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"`;

let broker;
let brokerLog;
let dataDir;
let base;
let browser;

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitForHealth(url, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    if (broker.exitCode !== null) throw new Error(`the broker exited with ${broker.exitCode}; see ${path.join(ARTIFACTS, 'broker.log')}`);
    try {
      const res = await fetch(`${url}/health`);
      if (res.ok) return;
      last = `HTTP ${res.status}`;
    } catch (e) {
      last = e.message;
    }
    await sleep(200);
  }
  throw new Error(`the broker did not answer /health within ${timeoutMs} ms (${last})`);
}

/** GET an NGSI-LD resource with the city context. */
async function api(pathAndQuery, init = {}) {
  const res = await fetch(`${base}${pathAndQuery}`, {
    ...init,
    headers: { Accept: 'application/json', Link: LINK, ...(init.headers || {}) },
  });
  return res;
}

/** Opens the dashboard in a new page, recording console errors and failed requests. */
async function openDashboard(options = {}) {
  const context = await browser.newContext({
    viewport: options.viewport || { width: 1280, height: 900 },
    deviceScaleFactor: options.deviceScaleFactor || 1,
    isMobile: !!options.isMobile,
    hasTouch: !!options.isMobile,
    locale: 'ja-JP',
    timezoneId: 'Asia/Tokyo',
  });
  const page = await context.newPage();
  const problems = { console: [], failed: [], external: [] };
  page.on('console', (m) => {
    if (m.type() === 'error') problems.console.push(m.text());
  });
  page.on('pageerror', (e) => problems.console.push(`pageerror: ${e.message}`));
  page.on('request', (r) => {
    const u = r.url();
    if (!u.startsWith(base) && !u.startsWith('data:')) problems.external.push(u);
  });
  page.on('requestfailed', (r) => {
    // The page closes the live stream itself when it switches tenants (and the stream is cut
    // when the page closes): an aborted stream is not a failure.
    if (r.url().includes('/haskap/v1/stream') && (page.isClosed() || r.failure()?.errorText === 'net::ERR_ABORTED')) return;
    problems.failed.push(`${r.method()} ${r.url()}: ${r.failure()?.errorText}`);
  });
  page.on('response', (r) => {
    if (r.status() >= 400) problems.failed.push(`${r.request().method()} ${r.url()}: HTTP ${r.status()}`);
  });
  await page.goto(`${base}/${options.query || ''}`, { waitUntil: 'domcontentloaded' });
  return { context, page, problems };
}

/** Waits until every panel has rendered the demo data. */
async function waitForDashboard(page) {
  await page.locator('#map-svg .marker[data-type="EvacuationSite"]').first().waitFor({ timeout: 30000 });
  await page.locator('[data-testid="kpi-card"]').first().waitFor({ timeout: 30000 });
  await page.locator('[data-testid="emission-chart"]').waitFor({ timeout: 30000 });
  await page.locator('[data-testid="alert-item"]').first().waitFor({ timeout: 30000 });
}

/** Waits until the live stream of alerts is connected. */
async function waitForLive(page) {
  const panel = page.locator('[data-testid="alerts-panel"]');
  try {
    await page.waitForFunction(() => document.querySelector('[data-testid="alerts-panel"]')?.dataset.live === 'open', null, { timeout: 15000 });
  } catch {
    assert.fail(`the live stream (/haskap/v1/stream) did not open: data-live=${await panel.getAttribute('data-live')}`);
  }
}

/** A point inside the map where a click lands on the background, not on a marker. */
async function backgroundPoint(page) {
  return page.evaluate(() => {
    const svgEl = document.getElementById('map-svg');
    const r = svgEl.getBoundingClientRect();
    const candidates = [];
    for (const fy of [0.5, 0.45, 0.55, 0.4, 0.6, 0.35, 0.65]) {
      for (const fx of [0.5, 0.45, 0.55, 0.4, 0.6, 0.35, 0.65, 0.3, 0.7]) candidates.push([r.left + r.width * fx, r.top + r.height * fy]);
    }
    for (const [x, y] of candidates) {
      const hit = document.elementFromPoint(x, y);
      if (hit && svgEl.contains(hit) && !hit.closest('.marker') && !hit.closest('.map-controls')) return { x, y };
    }
    return null;
  });
}

before(async () => {
  assert.ok(existsSync(BIN), `broker binary not found: ${BIN} (set HASKAP_BIN)`);
  assert.ok(existsSync(CHROMIUM), `Chromium not found: ${CHROMIUM}`);
  mkdirSync(ARTIFACTS, { recursive: true });
  dataDir = mkdtempSync(path.join(tmpdir(), 'haskap-browser-'));
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  const args = ['serve', '--demo', '--listen', `127.0.0.1:${port}`, '--data-dir', dataDir];
  if (DASHBOARD_DIR) args.push('--dashboard-dir', DASHBOARD_DIR);
  brokerLog = createWriteStream(path.join(ARTIFACTS, 'broker.log'));
  broker = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  // Never leave the broker behind, even if the test process dies.
  process.once('exit', () => {
    if (broker.exitCode === null) broker.kill('SIGKILL');
  });
  broker.stdout.pipe(brokerLog);
  broker.stderr.pipe(brokerLog);
  await waitForHealth(base, 60000);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
});

after(async () => {
  if (browser) await browser.close().catch(() => {});
  if (broker && broker.exitCode === null) {
    broker.kill('SIGTERM');
    const exited = await Promise.race([new Promise((r) => broker.once('exit', () => r(true))), sleep(5000).then(() => false)]);
    if (!exited) broker.kill('SIGKILL');
  }
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

test('the page loads with the demo data, without console errors or failed requests', async () => {
  const { context, page, problems } = await openDashboard();
  try {
    await waitForDashboard(page);
    const sites = await page.locator('#map-svg .marker[data-type="EvacuationSite"]').count();
    assert.ok(sites > 0, 'evacuation-site markers are drawn');
    assert.ok(await page.locator('#layer-area path.area').count() > 0, 'the city outline is drawn');
    assert.equal(await page.locator('html').getAttribute('lang'), 'ja');
    assert.match(await page.title(), /苫小牧市 都市データダッシュボード/);
    assert.ok(await page.locator('[data-testid="sample-banner"]').isVisible(), 'the sample-data banner is shown');
    // Let late requests settle before judging.
    await page.waitForLoadState('networkidle').catch(() => {});
    await sleep(500);
    assert.deepEqual(problems.console, [], 'no console errors');
    assert.deepEqual(problems.failed, [], 'no failed requests');
    assert.deepEqual(problems.external, [], 'no external requests');
  } finally {
    await context.close();
  }
});

test('clicking the map lists the nearest sites in the order the API gives', async () => {
  const { context, page, problems } = await openDashboard();
  try {
    await waitForDashboard(page);
    const pt = await backgroundPoint(page);
    assert.ok(pt, 'found a point of the map without a marker');
    await page.mouse.click(pt.x, pt.y);
    const list = page.locator('[data-testid="nearest-list"]');
    await page.waitForFunction(() => ['ready', 'empty', 'error'].includes(document.querySelector('[data-testid="nearest-list"]').dataset.state), null, {
      timeout: 15000,
    });
    assert.equal(await list.getAttribute('data-state'), 'ready');
    const lon = await list.getAttribute('data-lon');
    const lat = await list.getAttribute('data-lat');
    const maxDistance = await list.getAttribute('data-max-distance');
    const limit = await list.getAttribute('data-limit');
    assert.ok(lon && lat && maxDistance && limit, 'the list exposes the point and the query');
    const shown = await page.locator('[data-testid="nearest-item"]').evaluateAll((items) => items.map((li) => li.dataset.id));
    assert.ok(shown.length > 0, 'some sites are listed');

    const q = new URLSearchParams({
      type: 'EvacuationSite',
      georel: `near;maxDistance==${maxDistance}`,
      geometry: 'Point',
      coordinates: `[${lon},${lat}]`,
      options: 'keyValues',
      limit,
    });
    const res = await api(`/ngsi-ld/v1/entities?${q}`);
    assert.equal(res.status, 200);
    const expected = (await res.json()).map((e) => e.id);
    assert.deepEqual(shown, expected, 'the page lists exactly the API answer, in its order');

    // The list shows distance and capacity.
    const first = page.locator('[data-testid="nearest-item"]').first();
    assert.match(await first.innerText(), /(k?m)/);
    assert.match(await first.innerText(), /収容/);
    // The map shows the chosen point.
    assert.equal(await page.locator('[data-testid="map-point"]').count(), 1);
    assert.deepEqual(problems.console, []);
  } finally {
    await context.close();
  }
});

test('without a mouse: choosing a site from the list, or Enter on the map, lists the nearest sites', async () => {
  const { context, page, problems } = await openDashboard();
  try {
    await waitForDashboard(page);
    const select = page.locator('[data-testid="site-select"]');
    const siteId = await select.locator('option[value^="urn:"]').first().getAttribute('value');
    await select.focus();
    await select.selectOption(siteId);
    await page.waitForFunction(() => document.querySelector('[data-testid="nearest-list"]').dataset.state === 'ready', null, { timeout: 15000 });
    assert.equal(await page.locator('[data-testid="nearest-item"]').first().getAttribute('data-id'), siteId, 'the chosen site comes first');
    assert.equal(await page.locator('[data-testid="details"]').getAttribute('data-id'), siteId, 'its details are shown');

    await page.locator('[data-testid="map"]').focus();
    await page.keyboard.press('ArrowLeft');
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => document.querySelector('[data-testid="nearest-list"]').dataset.state === 'ready', null, { timeout: 15000 });
    assert.match(await page.locator('#nearest-status').innerText(), /地図の中心/);
    assert.deepEqual(problems.console, []);
  } finally {
    await context.close();
  }
});

test('an alert created through the API appears within 2 s, and goes when deleted', async (t) => {
  const { context, page, problems } = await openDashboard();
  try {
    await waitForDashboard(page);
    await waitForLive(page);
    const id = `urn:ngsi-ld:Alert:test-${Math.random().toString(36).slice(2, 10)}`;
    const body = {
      id,
      type: 'Alert',
      category: { type: 'Property', value: 'tsunami' },
      severity: { type: 'Property', value: 'critical' },
      name: { type: 'Property', value: '津波警報（テスト）' },
      dateIssued: { type: 'Property', value: { '@type': 'DateTime', '@value': '2026-11-24T10:00:00Z' } },
    };
    const res = await api('/ngsi-ld/v1/entities', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    const created = Date.now();
    assert.equal(res.status, 201, await res.text());
    const item = page.locator(`[data-testid="alert-item"][data-id="${id}"]`);
    await item.waitFor({ state: 'visible', timeout: 2000 });
    const elapsed = Date.now() - created;
    assert.ok(elapsed <= 2000, `visible after ${elapsed} ms`);
    t.diagnostic(`the new alert was visible ${elapsed} ms after the 201`);
    assert.match(await item.innerText(), /津波警報（テスト）/);
    assert.match(await item.innerText(), /緊急/, 'the severity is given in words');
    // New alerts go to the top.
    assert.equal(await page.locator('[data-testid="alert-item"]').first().getAttribute('data-id'), id);

    const del = await api(`/ngsi-ld/v1/entities/${encodeURIComponent(id)}`, { method: 'DELETE' });
    assert.equal(del.status, 204);
    await item.waitFor({ state: 'detached', timeout: 2000 });
    assert.deepEqual(problems.console, []);
  } finally {
    await context.close();
  }
});

test('the zero-carbon chart shows the five sectors and the target path', async () => {
  const { context, page } = await openDashboard();
  try {
    await waitForDashboard(page);
    const chart = page.locator('[data-testid="emission-chart"]');
    for (const sector of ['industry', 'commercial', 'household', 'transport', 'waste']) {
      const n = await chart.locator(`[data-sector="${sector}"]`).count();
      assert.ok(n > 0, `bar segments of ${sector}`);
      assert.equal(await page.locator(`[data-testid="emission-legend"] [data-sector="${sector}"]`).count(), 1, `legend of ${sector}`);
    }
    const line = chart.locator('[data-testid="target-line"]');
    assert.equal(await line.count(), 1, 'the target line is drawn');
    const points = (await line.getAttribute('points')).trim().split(/\s+/);
    assert.ok(points.length >= 2, 'the target line has at least two points');
    assert.ok(await page.locator('[data-testid="sample-note"]').isVisible(), 'the sample-data note is visible');
    assert.match(await page.locator('[data-testid="sample-note"]').innerText(), /サンプルデータ/);
  } finally {
    await context.close();
  }
});

test('the KPI board shows exactly five goals', async () => {
  const { context, page } = await openDashboard();
  try {
    await waitForDashboard(page);
    const cards = page.locator('[data-testid="kpi-card"]');
    assert.equal(await cards.count(), 5);
    const goals = await cards.evaluateAll((cs) => cs.map((c) => c.dataset.goal));
    assert.deepEqual(goals, ['1', '2', '3', '4', '5']);
    for (let i = 0; i < 5; i++) {
      const card = cards.nth(i);
      assert.ok((await card.locator('.kpi-goal').innerText()).length > 0, 'policy goal name');
      assert.ok((await card.locator('.kpi-indicator').innerText()).length > 0, 'indicator name');
      assert.equal(await card.locator('svg.sparkline polyline').count(), 1, 'trend line');
    }
  } finally {
    await context.close();
  }
});

test('the English switch changes the UI text and the language', async () => {
  const { context, page, problems } = await openDashboard();
  try {
    await waitForDashboard(page);
    const heading = page.locator('#map-h');
    assert.equal(await heading.innerText(), '避難場所・施設マップ');
    await page.locator('[data-testid="lang-toggle"]').click();
    assert.equal(await page.locator('html').getAttribute('lang'), 'en');
    assert.equal(await heading.innerText(), 'Evacuation sites and facilities');
    assert.match(await page.locator('h1').innerText(), /Tomakomai City Data Dashboard/);
    assert.match(await page.title(), /Tomakomai City Data Dashboard/);
    assert.match(await page.locator('[data-testid="kpi-card"]').first().innerText(), /Goal 1/);
    assert.equal(await page.locator('[data-testid="lang-toggle"]').innerText(), '日本語');
    // And back.
    await page.locator('[data-testid="lang-toggle"]').click();
    assert.equal(await page.locator('html').getAttribute('lang'), 'ja');
    assert.equal(await heading.innerText(), '避難場所・施設マップ');
    assert.deepEqual(problems.console, []);
  } finally {
    await context.close();
  }
});

test('switching the tenant reloads the panels for that town', async () => {
  const { context, page, problems } = await openDashboard();
  try {
    await waitForDashboard(page);
    await page.locator('[data-testid="tenant-select"]').selectOption('shiraoi');
    await page.waitForFunction(
      () => {
        const names = [...document.querySelectorAll('#map-svg .marker[data-type="EvacuationSite"]')].map((m) => m.dataset.id);
        return names.length > 0 && names.every((id) => id.includes(':015784-'));
      },
      null,
      { timeout: 15000 },
    );
    assert.equal(await page.locator('[data-testid="kpi-card"]').count(), 0);
    assert.match(await page.locator('[data-testid="area-chip"]').innerText(), /白老町/);
    assert.equal(await page.locator('[data-testid="tenant-select"]').inputValue(), 'shiraoi');
    assert.deepEqual(problems.console, []);
    assert.deepEqual(problems.failed, []);
  } finally {
    await context.close();
  }
});

test('screenshots: desktop and phone', async () => {
  {
    const { context, page } = await openDashboard({ viewport: { width: 1280, height: 900 } });
    try {
      await waitForDashboard(page);
      const pt = await backgroundPoint(page);
      if (pt) {
        await page.mouse.click(pt.x, pt.y);
        await page.locator('[data-testid="nearest-item"]').first().waitFor({ timeout: 15000 });
      }
      await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-desktop.png'), fullPage: true });
      await page.locator('[data-testid="lang-toggle"]').click();
      await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-desktop-en.png'), fullPage: true });
    } finally {
      await context.close();
    }
  }
  {
    const { context, page } = await openDashboard({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true });
    try {
      await waitForDashboard(page);
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 1, `no horizontal scrolling on a phone (overflow ${overflow}px)`);
      const columns = await page.evaluate(() => getComputedStyle(document.querySelector('main')).gridTemplateColumns.split(' ').length);
      assert.equal(columns, 1, 'single column on a phone');
      await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-phone.png'), fullPage: true });
    } finally {
      await context.close();
    }
  }
  for (const f of ['dashboard-desktop.png', 'dashboard-desktop-en.png', 'dashboard-phone.png']) {
    assert.ok(existsSync(path.join(ARTIFACTS, f)), `${f} saved`);
  }
});
