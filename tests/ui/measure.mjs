// The console's weight and speed, in Debian's Chromium: signs in, then loads the devices list
// RUNS times and every main page once, all with an empty cache (Chromium keeps nothing from an
// untrusted certificate's origin anyway). Prints JSON: per run the time to first contentful
// paint, the time until the first page of devices is in the table, and the bytes on the wire
// (headers included); per page its bytes. Run by tests/load/console.sh, which seeds 10,000
// devices first.
//
// Environment: BASE_URL, CHROMIUM, ADMIN_EMAIL, ADMIN_PASSWORD, RUNS (5).
import { chromium } from 'playwright-core';

const base = process.env.BASE_URL.replace(/\/$/, '');
const runs = Number(process.env.RUNS || 5);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const median = (values) => { const sorted = [...values].sort((a, b) => a - b); return sorted[Math.floor(sorted.length / 2)]; };
try {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 860 } });
  const page = await context.newPage();
  await page.goto(`${base}/login?next=%2Fdevices`);
  await page.getByLabel('Work email').fill(process.env.ADMIN_EMAIL);
  await page.getByRole('button', { name: 'Continue' }).click();
  await page.locator('input[name="password"]').fill(process.env.ADMIN_PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(`${base}/devices`);

  // Bytes on the wire, headers included, from Chromium's own network accounting.
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.setCacheDisabled', { cacheDisabled: true });
  let wire = 0;
  let requests = 0;
  cdp.on('Network.loadingFinished', (event) => { wire += event.encodedDataLength; requests += 1; });
  const load = async (path, ready) => {
    wire = 0;
    requests = 0;
    await page.goto(`${base}${path}`);
    if (ready) await page.locator(ready).first().waitFor();
    await page.waitForLoadState('networkidle');
    return { bytes: wire, requests };
  };
  const result = { runs: [], pages: {} };
  for (let i = 0; i < runs; i += 1) {
    const { bytes, requests: count } = await load('/devices', '#devices tbody tr');
    result.runs.push(await page.evaluate(() => ({
      firstContentfulPaintMs: Math.round(performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? -1),
      rowsShownMs: Math.round(performance.getEntriesByName('devices-shown')[0]?.startTime ?? -1),
      rows: document.querySelectorAll('#devices tbody tr').length,
      filteredCount: document.querySelector('#device-count')?.textContent,
    })));
    Object.assign(result.runs.at(-1), { bytes, requests: count });
  }
  for (const path of ['/', '/customers', '/devices', '/logs', '/scripts', '/integrations', '/settings/api-keys',
    '/settings/users', '/settings/agents', '/settings/audit', '/settings', '/incidents', '/notifications',
    '/settings/approvals', '/settings/detection']) {
    result.pages[path] = await load(path);
  }
  result.median = Object.fromEntries(['firstContentfulPaintMs', 'rowsShownMs', 'bytes']
    .map((name) => [name, median(result.runs.map((run) => run[name]))]));
  const [heaviest, weight] = Object.entries(result.pages).sort((a, b) => b[1].bytes - a[1].bytes)[0];
  result.heaviestPage = { path: heaviest, ...weight };
  console.log(JSON.stringify(result, null, 2));
} finally {
  await browser.close();
}
