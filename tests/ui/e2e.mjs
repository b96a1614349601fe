// The admin console, worked through as a technician does, in Debian's Chromium (playwright-core,
// no downloaded browser). Run by tests/api/console.rs, which starts the appliance, seeds it and
// checks the stored state afterwards; this script fails at the first thing that is not as it
// should be, and prints a JSON report as its last line.
//
// Environment: BASE_URL, CHROMIUM, ADMIN_EMAIL, ADMIN_PASSWORD, DEVICE_HOSTNAME,
// OTHER_TENANTS_DEVICE, INCIDENT_TITLE (an open incident, with its unread notification),
// SCREENSHOTS (a folder).
import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';
import path from 'node:path';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const base = env('BASE_URL').replace(/\/$/, '');
const origin = new URL(base).host;
const screenshots = env('SCREENSHOTS');
const report = { external: [], pageErrors: [], unlabelled: [], screenshots: [], weights: {} };
const step = (name) => console.error(`-- ${name}`);

const browser = await chromium.launch({
  executablePath: env('CHROMIUM'),
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
    '--disable-sync', '--no-first-run', '--disable-default-apps'],
});
try {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 860 } });
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: base });
  // Every request the pages make is checked: anything for another host is recorded and refused.
  await context.route('**/*', (route) => {
    const url = new URL(route.request().url());
    if (['data:', 'blob:', 'about:'].includes(url.protocol) || url.host === origin) return route.continue();
    report.external.push(route.request().url());
    return route.abort();
  });
  context.on('websocket', (socket) => {
    if (new URL(socket.url()).host !== origin) report.external.push(socket.url());
  });
  const page = await context.newPage();
  page.on('pageerror', (error) => report.pageErrors.push(`${page.url()}: ${error.message}`));
  page.on('console', (message) => {
    // Chromium logs every answer of 4xx or 5xx as an error, expected ones too (a refused form,
    // an unreachable tool's test): those are checked where they happen; anything else counts.
    const answered = /^Failed to load resource: the server responded with a status of \d{3}/;
    if (message.type() === 'error' && !answered.test(message.text())) report.pageErrors.push(`${page.url()}: ${message.text()}`);
  });
  page.on('dialog', (dialog) => dialog.accept());

  const shot = async (name) => {
    const file = `${name}.png`;
    await page.screenshot({ path: path.join(screenshots, file), fullPage: true });
    report.screenshots.push(file);
  };
  /** The bytes a page's load moved over the wire (document, scripts, styles, API answers). */
  const weigh = async (name) => {
    await unlabelled(name);
    report.weights[name] = await page.evaluate(() => {
      const entries = [...performance.getEntriesByType('navigation'), ...performance.getEntriesByType('resource')];
      return entries.reduce((sum, entry) => sum + (entry.encodedBodySize || 0), 0);
    });
  };
  /** Fields without a label and buttons without a name: what a screen reader could not announce. */
  const unlabelled = async (name) => {
    const found = await page.evaluate(() => [
      ...[...document.querySelectorAll('input, select, textarea')]
        .filter((field) => field.type !== 'hidden' && !field.labels?.length && !field.getAttribute('aria-label'))
        .map((field) => `field ${field.name || field.id}`),
      ...[...document.querySelectorAll('button, a[href]')]
        .filter((control) => !control.textContent.trim() && !control.getAttribute('aria-label'))
        .map((control) => `${control.tagName.toLowerCase()} ${control.outerHTML.slice(0, 80)}`),
    ]);
    for (const what of found) report.unlabelled.push(`${name}: ${what}`);
  };
  const pathOf = () => { const url = new URL(page.url()); return url.pathname + url.search; };

  step('a page without a session leads to sign-in, email first');
  await page.goto(`${base}/devices`);
  await page.waitForURL(/\/login\?next=%2Fdevices$/);
  await page.locator('#login-form').waitFor();
  await shot('login');
  await page.getByLabel('Work email').fill('nobody@nowhere.example');
  await page.getByRole('button', { name: 'Continue' }).click();
  await page.locator('#email-error').filter({ hasText: 'no account uses this email' }).waitFor();
  assert.equal(await page.getByLabel('Work email').getAttribute('aria-invalid'), 'true');
  await page.getByLabel('Work email').fill(env('ADMIN_EMAIL'));
  await page.getByRole('button', { name: 'Continue' }).click();

  step("the tenant's sign-in page has the email filled in, and returns to the page asked for");
  await page.waitForURL(/\/sas\/acme\/login/);
  assert.equal(await page.locator('input[name="username"]').inputValue(), env('ADMIN_EMAIL'));
  await page.locator('input[name="password"]').fill(env('ADMIN_PASSWORD'));
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(`${base}/devices`);

  step("the registered agent's device is listed, and no other tenant's");
  const deviceRow = page.locator('#devices tbody tr', { hasText: env('DEVICE_HOSTNAME') });
  await deviceRow.waitFor();
  await page.locator('#f-status input').first().waitFor();
  report.deviceRows = await page.locator('#devices tbody tr').count();
  report.otherTenantVisible = (await page.content()).includes(env('OTHER_TENANTS_DEVICE'));
  assert.match(await deviceRow.innerText(), /ONLINE/);
  await weigh('devices');
  await shot('devices');

  step('facet filters narrow the list and stay in the address');
  await page.locator('#f-os label', { hasText: 'WINDOWS' }).locator('input').check();
  await page.waitForURL(/os=WINDOWS/);
  await page.waitForFunction(() => document.querySelectorAll('#devices tbody tr').length === 3);
  await page.getByLabel('Search devices').fill('SRV');
  await page.waitForFunction(() => document.querySelectorAll('#devices tbody tr').length === 1);
  assert.match(await page.locator('#devices tbody tr').innerText(), /ACME-SRV-01/);
  await page.getByRole('button', { name: 'Clear filters' }).click();
  await page.waitForFunction(() => document.querySelectorAll('#devices tbody tr').length === 4);

  step('the device page');
  await page.locator('#devices tbody tr', { hasText: env('DEVICE_HOSTNAME') }).getByRole('link').click();
  await page.waitForURL(/\/devices\/[^/?]+$/);
  await page.locator('#overview dt').first().waitFor();
  report.deviceTitle = await page.locator('#device-title').innerText();
  assert.match(await page.locator('#overview').innerText(), /Head office/);
  assert.match(await page.locator('#tags').innerText(), /site/);
  await weigh('device');
  await shot('device');

  step("the nav badge counts the unread notification; it leads to the incident, acknowledged and resolved");
  // The badge as the layout sets it (this page leaves it alone): once the count it asks for
  // has come, the badge shows it, or is hidden at 0.
  const unreadAnswer = page.waitForResponse((response) => {
    const url = new URL(response.url());
    return url.pathname === '/api/notifications' && url.search === '?unread=true'
      && response.request().method() === 'GET' && response.ok();
  });
  await page.goto(`${base}/incidents`);
  const { unread: unreadCount } = await (await unreadAnswer).json();
  await page.waitForFunction((count) => {
    const shown = document.getElementById('unread-badge');
    if (count === 0) return shown.hidden;
    return !shown.hidden && document.getElementById('unread-count').textContent === (count > 99 ? '99+' : String(count));
  }, unreadCount);
  const notificationsLink = page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: /^Notifications\b/ });
  report.badgeUnread = await notificationsLink.locator('#unread-badge').isVisible()
    ? Number(await notificationsLink.locator('#unread-count').textContent()) : 0;

  const incidentTitle = env('INCIDENT_TITLE');
  await notificationsLink.click();
  await page.waitForURL(`${base}/notifications`);
  const notificationLink = page.getByRole('table', { name: 'Notifications, newest first' })
    .getByRole('link', { name: `New incident: ${incidentTitle}`, exact: true });
  await notificationLink.waitFor();
  const incidentId = new URL(await notificationLink.getAttribute('href'), base).searchParams.get('id');
  assert.ok(incidentId, 'the notification links to its incident');
  await notificationLink.click();
  await page.waitForURL((url) => url.pathname === '/incidents' && url.searchParams.get('id') === incidentId);
  // The details drawer, named by the incident's title once it has loaded.
  const incidentDrawer = page.getByRole('dialog', { name: incidentTitle, exact: true });
  await incidentDrawer.waitFor();
  report.incidentOpenedFromNotification = await incidentDrawer.isVisible()
    && (await incidentDrawer.getByRole('heading', { level: 2 }).textContent()) === incidentTitle
    && new URL(page.url()).searchParams.get('id') === incidentId;

  // The status the drawer shows: the "Status" entry of its details.
  const incidentStatus = incidentDrawer.locator('#drawer-props dt', { hasText: /^Status$/ }).locator('xpath=following-sibling::dd[1]');
  await incidentStatus.filter({ hasText: /^OPEN$/ }).waitFor();
  await incidentDrawer.getByRole('button', { name: 'Acknowledge', exact: true }).click();
  await incidentStatus.filter({ hasText: /^ACKNOWLEDGED$/ }).waitFor();
  report.incidentStatusAfterAck = (await incidentStatus.textContent()).trim();

  const resolutionNote = 'power restored at the site';
  await incidentDrawer.getByLabel('Resolution note').fill(resolutionNote);
  await incidentDrawer.getByRole('button', { name: 'Resolve', exact: true }).click();
  await incidentStatus.filter({ hasText: /^RESOLVED$/ }).waitFor();
  report.incidentStatusAfterResolve = (await incidentStatus.textContent()).trim();
  // The resolved incident's timeline comes with it, shown together with its status.
  report.timelineShowsNote = await incidentDrawer.getByRole('region', { name: /^Timeline/ })
    .getByRole('listitem').filter({ hasText: resolutionNote }).count() === 1;
  await shot('incident');

  step('the dashboard: every tile links to the list it counts');
  await page.goto(`${base}/`);
  const online = page.locator('#by-status a', { hasText: /online/i });
  await online.waitFor();
  const counted = Number(await online.locator('strong').innerText());
  await page.locator('#chart svg').waitFor();
  await weigh('dashboard');
  await shot('dashboard');
  await online.click();
  await page.waitForURL(/\/devices\?status=ONLINE$/);
  await page.waitForFunction((n) => document.querySelector('#device-count')?.textContent === `(${n})`, counted);

  step('customers: validation beside the field, a double submit creates one');
  await page.goto(`${base}/customers`);
  await page.locator('#customers tbody tr').first().waitFor();
  await page.getByRole('button', { name: 'New customer' }).click();
  await page.getByRole('button', { name: 'Save' }).click();
  await page.locator('#customer-name-error:not(:empty)').waitFor();
  await page.getByLabel('Name').fill('Head office');
  await page.getByLabel('Category').fill('Retail');
  await page.getByRole('button', { name: 'Save' }).click();
  // The name is taken: the server's answer shows beside the field, and the input stays.
  await page.locator('#customer-name-error:not(:empty)').waitFor();
  assert.equal(await page.getByLabel('Category').inputValue(), 'Retail');
  await page.getByLabel('Name').fill('Northwind Traders');
  await page.getByRole('button', { name: 'Save' }).dblclick();
  await page.locator('#customers tbody tr', { hasText: 'Northwind Traders' }).waitFor();
  await page.waitForTimeout(500);
  assert.equal(await page.locator('#customers tbody tr', { hasText: 'Northwind Traders' }).count(), 1);
  await weigh('customers');
  await shot('customers');

  step('logs: filter, search, details');
  await page.goto(`${base}/logs`);
  await page.locator('#logs tbody tr').first().waitFor();
  await page.locator('#f-tool option[value="MESHCENTRAL"]').waitFor({ state: 'attached' });
  await page.getByLabel('Tool').selectOption('MESHCENTRAL');
  await page.getByLabel('Search').fill('ACME-WS-001');
  await page.getByRole('button', { name: 'Apply' }).click();
  await page.waitForURL(/q=ACME-WS-001/);
  await page.waitForFunction(() => [...document.querySelectorAll('#logs tbody tr')].every((row) => row.innerText.includes('MESHCENTRAL')));
  const rows = page.locator('#logs tbody tr');
  report.filteredLogRows = await rows.count();
  const texts = await rows.allInnerTexts();
  report.filteredLogsMatch = texts.length > 0 && texts.every((text) => text.includes('MESHCENTRAL'));
  await weigh('logs');
  await shot('logs');
  report.firstRowSummary = await rows.first().getByRole('button').innerText();
  await rows.first().getByRole('button').click();
  await page.locator('#drawer-message:not(:empty)').waitFor();
  await page.waitForFunction(() => document.querySelector('#drawer-message').textContent !== '—' || document.querySelector('#drawer-details').textContent.length > 2);
  report.detailsTitle = await page.locator('#drawer-title').innerText();
  report.detailsMessage = await page.locator('#drawer-message').innerText();
  report.detailsProps = await page.locator('#drawer-props').innerText();
  await shot('log-details');
  await page.getByRole('button', { name: 'Close' }).click();

  step('live tail');
  await page.getByRole('button', { name: 'Live tail' }).click();
  await page.locator('#live-state', { hasText: 'Live' }).waitFor();
  await page.getByRole('button', { name: 'Live tail' }).click();

  step('API keys: the full key is shown once, with a copy button');
  await page.goto(`${base}/settings/api-keys`);
  await page.getByLabel('Name').fill('Console key');
  await page.getByLabel('logs:read').check();
  await page.getByRole('button', { name: 'Create key' }).click();
  await page.locator('#new-key:not([hidden])').waitFor();
  report.fullKey = await page.locator('#full-key').innerText();
  assert.match(report.fullKey, /^ak_[0-9a-f]{16}\.sk_[0-9a-f]{32}$/);
  await page.getByRole('button', { name: 'Copy', exact: true }).click();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), report.fullKey);
  await page.locator('#keys tbody tr', { hasText: 'Console key' }).waitFor();
  await shot('api-keys');
  await page.reload();
  await page.locator('#keys tbody tr', { hasText: 'Console key' }).waitFor();
  report.keyShownAfterReload = (await page.content()).includes(report.fullKey.split('.sk_')[1]);
  await weigh('api-keys');

  step('users: an invitation');
  await page.goto(`${base}/settings/users`);
  await page.locator('#users tbody tr').first().waitFor();
  await page.getByLabel('Email').fill('not-an-email');
  await page.getByRole('button', { name: 'Send invitation' }).click();
  await page.locator('#invite-email-error:not(:empty)').waitFor();
  await page.getByLabel('Email').fill('new.tech@acme.example.com');
  await page.getByRole('button', { name: 'Send invitation' }).click();
  await page.locator('#invitations tbody tr', { hasText: 'new.tech@acme.example.com' }).waitFor();
  await weigh('users');
  await shot('users');

  step('scripts: a new script is listed');
  await page.goto(`${base}/scripts`);
  await page.getByRole('button', { name: 'New script' }).click();
  await page.locator('#script-name').fill('Disk report');
  await page.locator('#script-shell').selectOption('BASH');
  await page.locator('#script-scriptBody').fill('df -h');
  await page.locator('#script-form button[type="submit"]').dblclick();
  await page.locator('#scripts tbody tr', { hasText: 'Disk report' }).waitFor();
  report.scriptRows = await page.locator('#scripts tbody tr', { hasText: 'Disk report' }).count();
  await weigh('scripts');
  await shot('scripts');

  step('tools: register one, test it, see its health');
  await page.goto(`${base}/integrations`);
  await page.getByRole('button', { name: 'Register tool' }).click();
  await page.locator('#tool-id').fill('mesh-lab');
  await page.locator('#tool-name').fill('Lab MeshCentral');
  await page.locator('#tool-toolType').selectOption('MESHCENTRAL');
  await page.locator('#tool-apiUrl').fill('https://mesh.invalid');
  await page.locator('#tool-allowedPaths').fill('/api');
  await page.locator('#tool-form button[type="submit"]').click();
  const tool = page.locator('#tools tbody tr', { hasText: 'Lab MeshCentral' });
  await tool.waitFor();
  await tool.getByRole('button', { name: 'Test Lab MeshCentral' }).click();
  await tool.locator('.test-result').waitFor();
  report.toolTest = await tool.locator('.test-result').innerText();
  await weigh('tools');
  await shot('tools');

  step('the audit trail shows the changes made here');
  await page.goto(`${base}/settings/audit`);
  await page.locator('#audit tbody tr').first().waitFor();
  report.auditText = await page.locator('#audit tbody').innerText();
  await weigh('audit');
  await shot('audit');

  step('the other pages load without errors');
  for (const [name, url, ready] of [
    ['agents', '/settings/agents', '#secret:not(:empty)'],
    ['settings', '/settings', '#account dd'],
    ['incidents', '/incidents', '#incidents tbody tr, #no-incidents:not([hidden])'],
    ['notifications', '/notifications', '#notifications tbody tr, #no-notifications:not([hidden])'],
    ['approvals', '/settings/approvals', '#approvals tbody tr, #no-approvals:not([hidden])'],
    ['detection', '/settings/detection', '#d-login_failed_count[placeholder]'],
  ]) {
    await page.goto(`${base}${url}`);
    await page.locator(ready).first().waitFor();
    await page.waitForLoadState('networkidle');
    await weigh(name);
    await shot(name);
  }
  // The install command names the server and carries the registration secret (once loaded).
  await page.goto(`${base}/settings/agents`);
  await page.locator('#install-command', { hasText: '--initial-key ' }).waitFor();
  assert.match(await page.locator('#install-command').innerText(), new RegExp(`--server ${base} `));

  step('dark scheme and a phone-sized screen');
  await page.emulateMedia({ colorScheme: 'dark' });
  await page.setViewportSize({ width: 390, height: 800 });
  await page.goto(`${base}/`);
  await page.locator('#by-status a').first().waitFor();
  await shot('dashboard-dark-mobile');
  await page.getByRole('button', { name: 'Menu' }).click();
  await page.getByRole('link', { name: 'Logs' }).click();
  await page.waitForURL(`${base}/logs`);
  await page.emulateMedia({ colorScheme: 'light' });
  await page.setViewportSize({ width: 1280, height: 860 });

  step('an expired session comes back to the same page');
  await context.clearCookies({ name: 'access_token' });
  await page.goto(`${base}/logs?severity=INFO`);
  await page.waitForURL(`${base}/logs?severity=INFO`);
  await page.locator('#logs tbody tr').first().waitFor();
  report.resumedAfterExpiry = pathOf();

  step('sign out');
  report.refreshToken = (await context.cookies()).find((cookie) => cookie.name === 'refresh_token')?.value;
  assert.ok(report.refreshToken, 'a refresh token cookie while signed in');
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL(/\/login\?signedOut=1$/);
  await page.goto(`${base}/devices`);
  await page.waitForURL(/\/login\?next=%2Fdevices$/);
  await page.locator('#login-status', { hasText: 'Sign in again' }).waitFor();
  report.afterSignOut = new URL(page.url()).pathname;
} catch (error) {
  // What the browser showed when it went wrong, for the failure message.
  const [page] = browser.contexts().flatMap((context) => context.pages());
  if (page) {
    console.error(`at ${page.url()}:\n${(await page.locator('body').innerText().catch(() => '')).slice(0, 2000)}`);
    await page.screenshot({ path: path.join(screenshots, 'failure.png'), fullPage: true }).catch(() => {});
  }
  console.error(`report so far: ${JSON.stringify(report)}`);
  throw error;
} finally {
  await browser.close();
}
console.log(JSON.stringify(report));
