// The admin page (/admin): an admin signs in with a passkey, finds a user, revokes her passkey
// through the confirmation dialog, and the revocation reaches sign-in, the premium API and the
// status list. Also: non-admins are turned away, a stale sign-in is re-confirmed with a passkey,
// and the page works under a strict CSP at phone width with every control named.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { inflateSync } from 'node:zlib';
import * as h from './harness.mjs';


// The service's metrics listener has a fixed default port; two servers at once would collide.
const QUIET = { LATCHKEY_METRICS_LISTEN: 'off' };

// What the service is meant to send for its pages: no inline script or style anywhere.
const STRICT_CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
  "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

h.suite('admin page', QUIET, (s) => {

  /** Node's fetch goes to 127.0.0.1: `localhost` may resolve to ::1, where nothing listens. */
  const local = (url) => url.replace('//localhost:', '//127.0.0.1:');

  /**
   * A device on /admin with the document served under STRICT_CSP; CSP violations and page
   * errors are collected for `assertClean`.
   */
  async function adminDevice(viewport, on = s.server) {
    const context = await s.browser.newContext(viewport ? { viewport } : {});
    const page = await context.newPage();
    const authenticator = await h.addAuthenticator(context, page);
    await page.route(`${on.origin}/admin`, async (route) => {
      const response = await route.fetch();
      await route.fulfill({ response, headers: { ...response.headers(), 'content-security-policy': STRICT_CSP } });
    });
    await page.addInitScript(() => {
      window.__violations = [];
      document.addEventListener('securitypolicyviolation', (e) => window.__violations.push(`${e.violatedDirective} ${e.blockedURI}`));
    });
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${on.origin}/admin`);
    await page.getByRole('button', { name: 'Sign in with passkey', exact: true }).waitFor({ timeout: 15_000 });
    return {
      context,
      page,
      ...authenticator,
      async assertClean() {
        assert.deepEqual(await page.evaluate(() => window.__violations), [], 'CSP violations');
        assert.deepEqual(errors, [], 'page errors');
      },
    };
  }

  /** Creates an account with a passkey through the API from the page, then signs out again. */
  async function registerViaApi(page, username) {
    const result = await page.evaluate(async (username) => {
      const post = (path, body) =>
        fetch(path, {
          method: 'POST',
          headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
          body: body === undefined ? undefined : JSON.stringify(body),
        });
      const start = await post('/api/register/start', { username });
      if (!start.ok) return `register/start ${start.status} ${await start.text()}`;
      const { publicKey } = await start.json();
      const credential = await navigator.credentials.create({
        publicKey: PublicKeyCredential.parseCreationOptionsFromJSON({ ...publicKey, timeout: 10_000 }),
      });
      const finish = await post('/api/register/finish', credential.toJSON());
      if (finish.status !== 201) return `register/finish ${finish.status} ${await finish.text()}`;
      const logout = await post('/api/logout');
      if (!logout.ok) return `logout ${logout.status}`;
      return 'ok';
    }, username);
    assert.equal(result, 'ok');
  }

  /** Signs in on /admin through the page, naming the user (or not: a discoverable sign-in). */
  async function signIn(page, username, expected) {
    await page.getByRole('textbox', { name: 'Username' }).fill(username ?? '');
    await page.getByRole('button', { name: 'Sign in with passkey', exact: true }).click();
    await h.expectText(page, expected);
  }

  /** Registers `username` on the device's page, promotes it with the CLI and signs in. */
  async function signedInAdmin(device, username, on = s.server) {
    await registerViaApi(device.page, username);
    await on.admin('promote', username);
    await signIn(device.page, username, `Signed in as ${username} (admin)`);
    await device.page.getByRole('heading', { name: 'Overview', exact: true }).waitFor();
  }

  /** One number of the overview, by its label. */
  const count = (page, label) =>
    page
      .getByRole('region', { name: 'Overview', exact: true })
      .locator('div')
      .filter({ has: page.getByRole('term').getByText(label, { exact: true }) })
      .getByRole('definition');

  async function openUser(page, username) {
    await page.getByRole('searchbox', { name: 'Search users' }).fill(username);
    await page.getByRole('button', { name: 'Search', exact: true }).click();
    await page.getByRole('link', { name: username, exact: true }).click();
    await page.getByRole('heading', { name: `User ${username}`, exact: true }).waitFor({ timeout: 15_000 });
  }

  /** Reads entry `idx` of the status list at `uri` (base64url, zlib, LSB-first bits). */
  async function statusBit(uri, idx) {
    const res = await fetch(local(uri), { cache: 'no-store' });
    assert.equal(res.status, 200, `GET ${uri}`);
    const token = await res.text();
    const payload = JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8'));
    const { bits = 1, lst } = payload.status_list;
    const bytes = inflateSync(Buffer.from(lst, 'base64url'));
    const bit = idx * bits;
    return (bytes[Math.floor(bit / 8)] >> (bit % 8)) & ((1 << bits) - 1);
  }

  async function waitForStatus(uri, idx, wanted, timeout = 15_000) {
    const deadline = Date.now() + timeout;
    for (;;) {
      const value = await statusBit(uri, idx);
      if (value === wanted) return;
      if (Date.now() > deadline) throw new Error(`status list entry ${idx} is ${value}, not ${wanted}, after ${timeout} ms`);
      await new Promise((r) => setTimeout(r, 100)); // polling the service, not waiting for time to pass
    }
  }

  /** A discoverable passkey sign-in run by hand in the page: the HTTP status of login/finish. */
  function rawSignIn(page) {
    return page.evaluate(async () => {
      const post = (path, body) =>
        fetch(path, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
      const { publicKey } = await (await post('/api/login/start', {})).json();
      const credential = await navigator.credentials.get({
        publicKey: PublicKeyCredential.parseRequestOptionsFromJSON({ ...publicKey, timeout: 10_000 }),
      });
      const finish = await post('/api/login/finish', credential.toJSON());
      const body = await finish.json().catch(() => null);
      return { status: finish.status, type: body?.type ?? null };
    });
  }

  /** Calls the premium API with the device's license and DPoP key (the client module does the proof). */
  function callPremium(page) {
    return page.evaluate(async () => {
      const { createLatchkey } = await import('/latchkey.js');
      try {
        await createLatchkey().callPremium();
        return 200;
      } catch (error) {
        return error.status ?? String(error);
      }
    });
  }

  test('an admin revokes a user\'s passkey; sign-in, the premium API and the status list all refuse it', h.TEST, async () => {
    // Ana: a passkey, premium, and an offline license, through the demo PWA.
    const ana = await h.newDevice(s.browser);
    const root = await adminDevice();
    try {
      await h.premiumUser(ana.page, s.server, 'ana');
      const { claims } = await h.storedLicense(ana.page);
      const { uri, idx } = claims.status.status_list;
      const [passkey] = await h.credentialsOn(ana.cdp, ana.authenticatorId);
      assert.ok(passkey, 'ana has a passkey on her authenticator');
      // Leave the PWA (its background sync would react to the revocation on its own); the
      // authenticator stays with the page.
      await ana.page.goto(`${s.server.origin}/healthz`);
      assert.equal(await callPremium(ana.page), 200, 'the license works before the revocation');
      assert.equal(await statusBit(uri, idx), 0);

      // Root: registered, promoted with the CLI, signed in on /admin.
      await signedInAdmin(root, 'root');
      assert.ok(Number(await count(root.page, 'Users').textContent()) >= 2, 'the overview counts the users');

      await openUser(root.page, 'ana');
      const passkeys = root.page.getByRole('list', { name: 'Passkeys' });
      const item = passkeys.getByRole('listitem');
      await item.getByText('Active', { exact: true }).waitFor();
      const licenseRow = root.page.getByRole('row').filter({ hasText: claims.jti.slice(-8) });
      await licenseRow.getByText('active', { exact: true }).waitFor();

      const revocations = [];
      root.page.on('request', (r) => {
        if (r.method() === 'DELETE' && r.url().includes('/api/admin/credentials/')) revocations.push(r.url());
      });
      const revoke = root.page.getByRole('button', { name: /^Revoke passkey / });
      const dialog = root.page.getByRole('dialog', { name: /^Revoke passkey .+\?$/ });

      // Cancel changes nothing.
      await revoke.click();
      await dialog.waitFor();
      await dialog.getByRole('button', { name: 'Cancel', exact: true }).click();
      await dialog.waitFor({ state: 'hidden' });
      await h.expectText(root.page, 'Cancelled: nothing was changed.');
      assert.deepEqual(revocations, []);

      // Confirm revokes it.
      await revoke.click();
      await dialog.waitFor();
      await dialog.getByRole('button', { name: 'Confirm', exact: true }).click();
      await item.getByText('Revoked', { exact: true }).waitFor({ timeout: 15_000 });
      assert.equal(revocations.length, 1);
      assert.ok(revocations[0].endsWith(`/api/admin/credentials/${h.toB64url(passkey.credentialId)}`), revocations[0]);
      assert.equal(await revoke.count(), 0, 'a revoked passkey has no revoke button');
      // The license minted in a session that passkey opened is revoked with it.
      await licenseRow.getByText('revoked', { exact: true }).waitFor({ timeout: 15_000 });

      // Effects, checked against the service itself.
      assert.deepEqual(await rawSignIn(ana.page), { status: 401, type: 'urn:latchkey:problem:unknown-credential' });
      assert.equal(await callPremium(ana.page), 401, 'the premium API refuses the license');
      await waitForStatus(uri, idx, 1);

      // The audit log shows it.
      await root.page.getByRole('combobox', { name: 'Event' }).selectOption('passkey.revoked');
      const event = root.page.getByRole('row').filter({ has: root.page.getByRole('cell', { name: 'passkey.revoked', exact: true }) });
      await event.waitFor({ timeout: 15_000 });
      assert.equal(await event.count(), 1);
      assert.deepEqual((await event.getByRole('cell').allTextContents()).slice(1, 3), ['root', 'ana'], 'by root, about ana');

      // The same view, licenses and sessions included, fits a phone: wide tables scroll inside their box.
      await root.page.setViewportSize({ width: 360, height: 740 });
      await root.page.waitForFunction(() => document.querySelector('.chart-svg')?.getAttribute('width') <= 360);
      const overflow = await root.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 0, `the detail view is ${overflow}px wider than a 360px phone`);
      await root.assertClean();
    } finally {
      await ana.context.close();
      await root.context.close();
    }
  });

  test('a non-admin who signs in is told so, and the admin API answers 403', h.TEST, async () => {
    const device = await adminDevice();
    try {
      await registerViaApi(device.page, 'nina');
      await signIn(device.page, null, 'This account is not an administrator');
      assert.equal(await device.page.getByRole('heading', { name: 'Overview' }).count(), 0);
      assert.equal(await device.page.getByRole('searchbox', { name: 'Search users' }).isVisible(), false);
      const answer = await device.page.evaluate(async () => {
        const res = await fetch('/api/admin/users');
        return { status: res.status, type: (await res.json().catch(() => null))?.type ?? null };
      });
      assert.deepEqual(answer, { status: 403, type: 'urn:latchkey:problem:not-admin' });
      // A reload keeps the verdict (the session is still there).
      await device.page.reload();
      await h.expectText(device.page, 'This account is not an administrator');
      await device.assertClean();
      // Control: the strict policy is really in force on this page (an inline style is reported).
      await device.page.evaluate(() => document.body.insertAdjacentHTML('beforeend', '<p style="color:red">x</p>'));
      await device.page.waitForFunction(() => window.__violations.length > 0, null, { timeout: 5_000 });
    } finally {
      await device.context.close();
    }
  });

  test('a stale sign-in is confirmed with a passkey and the action retried once; a 409 shows its detail', h.TEST, async () => {
    // With a window of 0 every destructive action spends one fresh passkey sign-in.
    const strict = await h.startServer({ ...QUIET, LATCHKEY_ADMIN_REAUTH_MINUTES: '0' });
    const device = await adminDevice(undefined, strict);
    const { page } = device;
    try {
      await signedInAdmin(device, 'ada', strict);
      await openUser(page, 'ada');
      const requests = [];
      page.on('response', (r) => {
        const path = new URL(r.url()).pathname;
        if (path.startsWith('/api/admin/users/') && r.request().method() !== 'GET') requests.push(`${r.request().method()} ${r.status()}`);
        if (path === '/api/login/finish') requests.push(`sign-in ${r.status()}`);
      });
      const entitlements = page.getByRole('list', { name: 'Entitlements' });
      const name = page.getByRole('textbox', { name: 'Entitlement name' });

      // Keyboard only: Enter submits the form; Confirm has focus for a grant.
      await name.fill('beta');
      await name.press('Enter');
      await page.getByRole('dialog', { name: 'Grant entitlement beta to ada?' }).waitFor();
      await page.keyboard.press('Enter');
      const removeBeta = page.getByRole('button', { name: 'Remove entitlement beta', exact: true });
      await removeBeta.waitFor({ timeout: 15_000 });

      // The first destructive action spends the sign-in. Cancel has focus first in its dialog.
      await removeBeta.focus();
      await page.keyboard.press('Enter');
      const removal = page.getByRole('dialog', { name: 'Remove entitlement beta?' });
      await removal.waitFor();
      assert.equal(await removal.getByRole('button', { name: 'Cancel' }).evaluate((b) => b === document.activeElement), true);
      await page.keyboard.press('Shift+Tab');
      await page.keyboard.press('Enter');
      await h.expectText(page, 'Entitlement beta removed.');
      await entitlements.getByText('No entitlements.', { exact: true }).waitFor();

      // The next one is refused once, confirmed with the passkey, and retried once.
      await name.fill('gamma');
      await page.getByRole('button', { name: 'Grant entitlement', exact: true }).click();
      await page.getByRole('dialog', { name: 'Grant entitlement gamma to ada?' }).getByRole('button', { name: 'Confirm' }).click();
      await page.getByRole('button', { name: 'Remove entitlement gamma', exact: true }).click();
      await page.getByRole('dialog', { name: 'Remove entitlement gamma?' }).getByRole('button', { name: 'Confirm' }).click();
      const reauth = page.getByRole('dialog', { name: "Confirm it's you" });
      await reauth.getByRole('button', { name: 'Use passkey', exact: true }).click();
      await h.expectText(page, 'Entitlement gamma removed.');
      await entitlements.getByText('No entitlements.', { exact: true }).waitFor();
      assert.deepEqual(requests, ['POST 201', 'DELETE 204', 'POST 201', 'DELETE 401', 'sign-in 200', 'DELETE 204']);

      // ada is the only admin: demoting her is a 409 whose detail the page shows.
      await page.getByRole('button', { name: 'Make user', exact: true }).click();
      await page.getByRole('dialog', { name: 'Make ada a plain user?' }).getByRole('button', { name: 'Confirm' }).click();
      await reauth.getByRole('button', { name: 'Use passkey', exact: true }).click();
      await page.getByRole('alert').getByText('the last administrator cannot be demoted').waitFor({ timeout: 15_000 });
      await page.getByRole('button', { name: 'Make user', exact: true }).waitFor();
      await device.assertClean();
    } finally {
      await device.context.close();
      await strict.stop();
    }
  });

  test('an admin revokes a license, changes a role and disables and re-enables a user', h.TEST, async () => {
    const lee = await h.newDevice(s.browser);
    const max = await adminDevice();
    const { page } = max;
    try {
      await h.premiumUser(lee.page, s.server, 'lee');
      const { claims } = await h.storedLicense(lee.page);
      const { uri, idx } = claims.status.status_list;
      await lee.context.close();

      await signedInAdmin(max, 'max');
      await openUser(page, 'lee');
      const confirmIn = (name) => page.getByRole('dialog', { name }).getByRole('button', { name: 'Confirm', exact: true }).click();

      const id = claims.jti.slice(-8);
      await page.getByRole('button', { name: `Revoke license ${id}`, exact: true }).click();
      await confirmIn(`Revoke license ${id}?`);
      await page.getByRole('row').filter({ hasText: id }).getByText('revoked', { exact: true }).waitFor({ timeout: 15_000 });
      assert.equal(await page.getByRole('button', { name: `Revoke license ${id}` }).count(), 0);
      await waitForStatus(uri, idx, 1);

      // After an action the same control has focus again (under its new name).
      await page.getByRole('button', { name: 'Make admin', exact: true }).click();
      await confirmIn('Make lee an admin?');
      await h.expectText(page, 'lee is now an admin.');
      const makeUser = page.getByRole('button', { name: 'Make user', exact: true });
      assert.equal(await makeUser.evaluate((b) => b === document.activeElement), true, 'focus stays on the role button');
      await makeUser.click();
      await confirmIn('Make lee a plain user?');
      await h.expectText(page, 'lee is now a plain user.');
      await page.getByRole('button', { name: 'Make admin', exact: true }).waitFor();

      const disabledCount = count(page, 'Disabled users');
      assert.equal(await disabledCount.textContent(), '0');
      await page.getByRole('button', { name: 'Disable user', exact: true }).click();
      await confirmIn('Disable user lee?');
      await h.expectText(page, 'lee is disabled.');
      await page.getByRole('button', { name: 'Enable user', exact: true }).waitFor();
      await page.getByRole('row').filter({ has: page.getByRole('link', { name: 'lee', exact: true }) }).getByText('Disabled', { exact: true }).waitFor();
      assert.equal(await disabledCount.textContent(), '1', 'the overview counts the disabled user');
      await page.getByRole('button', { name: 'Enable user', exact: true }).click();
      await confirmIn('Enable user lee?');
      await h.expectText(page, 'lee is enabled.');
      await page.getByRole('button', { name: 'Disable user', exact: true }).waitFor();
      assert.equal(await disabledCount.textContent(), '0');
      await max.assertClean();
    } finally {
      await lee.context.close().catch(() => {});
      await max.context.close();
    }
  });

  test('an admin makes an API key shown once; its calls are audited as the key; the delivery log shows failed sends', h.TEST, async () => {
    // A server whose webhook receiver is not listening: every delivery fails and is logged.
    const hooked = await h.startServer({
      ...QUIET,
      LATCHKEY_WEBHOOK_URL: 'http://127.0.0.1:9/hooks',
      LATCHKEY_WEBHOOK_SECRET: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
      LATCHKEY_WEBHOOK_RETRY_SCHEDULE: '1h',
      LATCHKEY_WEBHOOK_POLL: '100ms',
    });
    const device = await adminDevice(null, hooked);
    const { page } = device;
    try {
      await signedInAdmin(device, 'kim', hooked);
      const keys = page.getByRole('region', { name: 'API keys' });
      await page.getByRole('textbox', { name: 'Key name' }).fill('crm-sync');
      await page.getByRole('checkbox', { name: 'users:read: Read users' }).check();
      await page.getByRole('checkbox', { name: 'users:write: Disable, enable users; set external ids' }).check();
      await page.getByRole('button', { name: 'Make API key', exact: true }).click();
      await page.getByRole('dialog', { name: 'Make API key crm-sync?' }).getByRole('button', { name: 'Confirm', exact: true }).click();
      await h.expectText(page, 'API key crm-sync made. Copy it now: it is shown only once.');
      const secret = await page.getByRole('status', { name: 'New API key' }).or(page.locator('#apikey-secret-value')).first().textContent();
      assert.match(secret, /^lk_[0-9A-Za-z]{36}$/);
      const row = page.getByRole('row').filter({ hasText: 'crm-sync' });
      await row.getByText('never', { exact: true }).first().waitFor();
      const list = page.getByRole('region', { name: 'API key list' });
      assert.ok(!(await list.innerText()).includes(secret.slice(8)), 'the list shows only the start of the key');

      // A server calls with the key: no cookie, no Origin.
      const call = (method, path, body) =>
        fetch(local(`${hooked.origin}${path}`), {
          method,
          headers: { Authorization: `Bearer ${secret}`, ...(body ? { 'Content-Type': 'application/json' } : {}) },
          body: body ? JSON.stringify(body) : undefined,
        });
      const found = await (await call('GET', '/api/admin/users?q=kim')).json();
      const kim = found.users.find((u) => u.username === 'kim');
      assert.equal((await call('PATCH', `/api/admin/users/${kim.id}`, { external_id: 'crm-42' })).status, 200);
      assert.equal((await call('POST', `/api/admin/users/${kim.id}/entitlements`, { name: 'premium' })).status, 403, 'no entitlements:write');

      await openUser(page, 'kim');
      await page.getByRole('definition').filter({ hasText: 'crm-42' }).waitFor();
      await page.getByRole('button', { name: 'Show events', exact: true }).click();
      await page.getByRole('row').filter({ hasText: 'user.external_id_set' }).getByText('key crm-sync', { exact: true }).waitFor();

      // Deliveries to the dead receiver: pending, with the reason.
      const log = page.getByRole('region', { name: 'Webhook delivery log' });
      for (let i = 0; ; i++) {
        await page.getByRole('button', { name: 'Refresh deliveries', exact: true }).click();
        if ((await log.innerText()).includes('could not connect')) break;
        assert.ok(i < 100, 'no failed delivery shown');
        await page.waitForTimeout(100); // polling the service for the sender's first attempt
      }
      assert.match(await log.innerText(), /user\.registered/);

      await keys.getByRole('button', { name: 'Revoke crm-sync', exact: true }).click();
      await page.getByRole('dialog', { name: 'Revoke API key crm-sync?' }).getByRole('button', { name: 'Confirm', exact: true }).click();
      await h.expectText(page, 'API key crm-sync revoked.');
      await row.getByText('Revoked', { exact: true }).waitFor();
      assert.equal((await call('GET', '/api/admin/users')).status, 401);
      await device.assertClean();
    } finally {
      await device.context.close();
      await hooked.stop();
    }
  });

  test('while the first answer is awaited the page says it is loading, not signed out', h.TEST, async () => {
    const context = await s.browser.newContext();
    const page = await context.newPage();
    try {
      let release;
      const held = new Promise((resolve) => { release = resolve; });
      await page.route(`${s.server.origin}/api/me`, async (route) => {
        await held;
        await route.continue();
      });
      await page.goto(`${s.server.origin}/admin`);
      const loading = page.getByText('Loading the admin console…');
      await loading.waitFor();
      assert.equal(await page.getByText('Not signed in').count(), 0, 'no verdict before the answer');
      assert.equal(await page.getByRole('button', { name: 'Sign in with passkey', exact: true }).isVisible(), false);
      release();
      await page.getByRole('button', { name: 'Sign in with passkey', exact: true }).waitFor();
      assert.equal(await loading.isVisible(), false);
      assert.equal(await page.locator('#who').textContent(), 'Not signed in');
    } finally {
      await context.close();
    }
  });

  test('at phone width tables are cards with every action on screen, every control is named and the chart has a text alternative', h.TEST, async () => {
    const quinn = await h.newDevice(s.browser);
    await h.premiumUser(quinn.page, s.server, 'quinn');
    const { claims } = await h.storedLicense(quinn.page);
    await quinn.context.close();
    const device = await adminDevice({ width: 390, height: 844 });
    const { page } = device;
    try {
      await signedInAdmin(device, 'pia');
      await openUser(page, 'quinn');
      await page.getByRole('heading', { name: 'Audit log' }).waitFor();

      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 0, `page is ${overflow}px wider than a 390px phone`);
      // No table box scrolls sideways: each row is a card, each cell labelled with its column.
      const sideways = await page.evaluate(() =>
        [...document.querySelectorAll('.scroll')]
          .filter((box) => box.offsetParent && box.scrollWidth > box.clientWidth + 1)
          .map((box) => box.querySelector('table')?.id || box.id),
      );
      assert.deepEqual(sideways, []);
      const licenseCard = page.locator(`tr[data-license="${claims.jti}"]`);
      assert.match(await licenseCard.locator('[data-label="Status"]').innerText(), /active/i);
      assert.equal(await licenseCard.evaluate((row) => getComputedStyle(row).display), 'block', 'a card, not a table row');
      // Every action button the console shows lies within the screen's width, unscrolled.
      const offscreen = await page.evaluate(() =>
        [...document.querySelectorAll('#console button')]
          .filter((b) => b.offsetParent)
          .map((b) => ({ name: b.getAttribute('aria-label') || b.textContent.trim(), box: b.getBoundingClientRect() }))
          .filter(({ box }) => box.left < 0 || box.right > window.innerWidth)
          .map(({ name, box }) => `${name} ${Math.round(box.left)}..${Math.round(box.right)}`),
      );
      assert.deepEqual(offscreen, []);
      const revoke = page.getByRole('button', { name: `Revoke license ${claims.jti.slice(-8)}`, exact: true });
      await revoke.click();
      await page.getByRole('dialog', { name: `Revoke license ${claims.jti.slice(-8)}?` }).getByRole('button', { name: 'Confirm', exact: true }).click();
      await licenseCard.getByText('revoked', { exact: true }).waitFor({ timeout: 15_000 });

      const chart = page.getByRole('img', { name: 'Sign-ins, licenses minted and revocations per day' });
      await chart.waitFor();
      assert.match(await chart.evaluate((svg) => svg.querySelector('desc').textContent), /^From .+ to .+: \d+ sign-ins/);
      await page.getByText('Show the daily numbers as a table').click();
      const days = page.getByRole('region', { name: 'Daily activity table' }).getByRole('row');
      assert.equal(await days.count(), 31, 'a header and 30 days');

      // Every focusable control in the accessibility tree has a name.
      const { nodes } = await device.cdp.send('Accessibility.getFullAXTree');
      const controls = new Set(['button', 'link', 'textbox', 'searchbox', 'combobox', 'checkbox', 'dialog']);
      const unnamed = nodes
        .filter((n) => !n.ignored && controls.has(n.role?.value) && !n.name?.value?.trim())
        .map((n) => n.role.value);
      assert.deepEqual(unnamed, []);
      await device.assertClean();
    } finally {
      await device.context.close();
    }
  });
});
