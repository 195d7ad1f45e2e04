// Deployed for real: https on the app's own origin through a TLS reverse proxy (Caddy and
// nginx, with the README's configurations), the app's own files at /, Latchkey under /auth.
// One scenario per proxy: create a passkey, get a license, go offline and reload, sign out,
// checking on the way the cookie's attributes, HSTS, the client address the proxy forwards,
// that DPoP proofs for the public https URL are accepted, that the admin page works under the
// base path, and that the app's own page can use latchkey.js with `base`.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as h from './harness.mjs';
import { CADDY, NGINX, freePort, missingProxy, startCaddy, startNginx, trustingHome } from './proxy.mjs';

const BASE = '/auth';

/** The status of GET `path` through the proxy, sending `cookie`, from outside the browser. */
async function statusWithCookie(proxy, path, cookie) {
  const ca = await readFile(proxy.ca);
  const { port } = new URL(proxy.origin);
  return new Promise((resolve, reject) => {
    const req = https.get(
      {
        host: '::1',
        port,
        servername: 'localhost',
        path,
        ca,
        headers: { host: `localhost:${port}`, cookie: `${cookie.name}=${cookie.value}` },
      },
      (res) => {
        res.resume();
        resolve(res.statusCode);
      },
    );
    req.on('error', reject);
  });
}

/** The app's own static files: a page that uses Latchkey through `createLatchkey({ base })`. */
async function appFiles() {
  const dir = await mkdtemp(join(tmpdir(), 'latchkey-app-'));
  await chmod(dir, 0o755);
  await writeFile(
    join(dir, 'index.html'),
    '<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>The app</title>\n' +
      '<script type="module" src="/app.js"></script></head>\n' +
      '<body><h1>The app\'s own page</h1><p id="verdict">Checking…</p></body></html>\n',
  );
  await writeFile(
    join(dir, 'app.js'),
    `import { createLatchkey } from '${BASE}/latchkey.js';\n` +
      `const latchkey = createLatchkey({ base: '${BASE}' });\n` +
      "const out = document.getElementById('verdict');\n" +
      'try {\n' +
      '  const report = await latchkey.sync();\n' +
      "  const verdict = await latchkey.check('premium');\n" +
      "  out.textContent = verdict.ok ? `premium ok, status list ${report.status}` : `premium locked: ${verdict.reason}`;\n" +
      '} catch (error) {\n' +
      '  out.textContent = `error: ${error.message}`;\n' +
      '}\n',
  );
  return dir;
}

const PROXIES = [
  { name: 'Caddy', program: CADDY, start: startCaddy },
  { name: 'nginx', program: NGINX, start: startNginx },
];

for (const { name, program, start } of PROXIES) {
  const skip = h.missingPrerequisite() ?? missingProxy(program);

  describe(`behind ${name} over https, under ${BASE}`, { skip: skip ?? false, timeout: 120_000 }, () => {
    let server;
    let proxy;
    let browser;
    let home;
    let appDir;
    before(async () => {
      appDir = await appFiles();
      const port = await freePort();
      server = await h.startServer({
        LATCHKEY_ORIGIN: `https://localhost:${port}`,
        LATCHKEY_BASE_PATH: BASE,
        LATCHKEY_TRUST_FORWARDED_FOR: 'true',
      });
      proxy = await start({ port, upstreamPort: server.port, appDir });
      home = await trustingHome(proxy.ca);
      browser = await h.launchBrowser({ home });
    });
    after(async () => {
      await browser?.close();
      await proxy?.stop();
      await server?.stop();
      for (const dir of [home, appDir]) if (dir) await rm(dir, { recursive: true, force: true });
    });

    test('passkey, license, offline reload and sign-out through the proxy', { timeout: 60_000 }, async () => {
      const { context, page, cdp } = await h.newDevice(browser);
      const latchkey = `${proxy.origin}${BASE}`;
      try {
        const response = await page.goto(`${latchkey}/`);
        assert.equal(response.status(), 200);
        assert.match(response.headers()['strict-transport-security'] ?? '', /max-age=\d+/, 'HSTS through the proxy');

        await h.register(page, 'proxied');
        const cookies = await context.cookies(proxy.origin);
        assert.deepEqual(cookies.map((c) => c.name), ['__Host-latchkey']);
        const [cookie] = cookies;
        assert.equal(cookie.secure, true);
        assert.equal(cookie.httpOnly, true);
        assert.equal(cookie.sameSite, 'Strict');
        assert.equal(cookie.path, '/');
        assert.equal(cookie.domain, 'localhost', 'host-only: no Domain attribute');

        await server.admin('grant', 'proxied', 'premium');
        await server.admin('promote', 'proxied');
        // A client that writes its own X-Forwarded-For does not choose its address. Signing
        // out arms autofill, which the virtual authenticator answers at once: a sign-in.
        await context.setExtraHTTPHeaders({ 'x-forwarded-for': '203.0.113.9' });
        const signin = page.waitForResponse(`${latchkey}/api/login/finish`);
        await h.clickAndSettle(page, 'Sign out');
        assert.equal((await signin).status(), 200);
        await h.expectText(page, 'Signed in as proxied.');
        await context.setExtraHTTPHeaders({});

        // The sign-in's sync fetched a license; its DPoP proof names
        // https://localhost:PORT/auth/api/licenses, what the browser sees.
        await h.expectVerdict(page, 'Premium unlocked');
        const { claims } = await h.storedLicense(page);
        assert.equal(claims.iss, proxy.origin);
        assert.ok(claims.status.status_list.uri.startsWith(`${latchkey}/api/status-lists/`), claims.status.status_list.uri);
        await h.clickAndSettle(page, 'Call premium API');
        await page.getByRole('status', { name: 'Premium API' }).getByText(/^Premium API says:/).waitFor();

        // Every request reached Latchkey from the proxy (127.0.0.1); the address recorded is
        // the browser's, which the proxy saw on ::1.
        const audit = await page.evaluate(async (url) => (await fetch(url)).json(), `${latchkey}/api/admin/audit?limit=50`);
        const fromBrowser = audit.events.filter((e) => e.client_addr !== 'cli');
        const addresses = new Set(fromBrowser.map((e) => e.client_addr));
        assert.deepEqual([...addresses], ['::1'], JSON.stringify(audit.events.map((e) => [e.event, e.client_addr])));
        assert.ok(fromBrowser.some((e) => e.event === 'signin.success'));
        assert.ok(fromBrowser.some((e) => e.event === 'license.minted'));

        // The admin page works under the base path too (its API calls follow its own folder).
        const admin = await context.newPage();
        await admin.goto(`${latchkey}/admin`);
        await admin.getByText('Signed in as proxied (admin)', { exact: true }).waitFor({ timeout: 15_000 });
        await admin.getByRole('link', { name: 'proxied', exact: true }).waitFor({ timeout: 15_000 });
        await admin.close();

        // The app's own page at / is the app's, and reads the same license through `base`.
        const app = await context.newPage();
        await app.goto(`${proxy.origin}/`);
        await app.getByRole('heading', { name: "The app's own page" }).waitFor();
        await app.getByText(/^premium ok, status list (updated|unchanged)$/).waitFor({ timeout: 15_000 });
        const theirs = await app.evaluate(async () => (await fetch('/api/me')).status);
        assert.equal(theirs, 404, "the app's own /api is not Latchkey's");
        await app.close();

        await h.waitForServiceWorker(page);
        await context.setOffline(true);
        const offline = await page.reload();
        assert.equal(offline.fromServiceWorker(), true, 'served by the service worker under the base path');
        assert.equal(await page.evaluate((u) => fetch(u).then(() => 'reached', () => 'failed'), `${latchkey}/api/me`), 'failed');
        await h.expectVerdict(page, 'Premium unlocked');
        await h.emulateOffline(cdp);
        await h.expectText(page, 'Offline');

        await h.emulateOffline(cdp, false);
        await context.setOffline(false);
        await page.reload();
        await h.expectText(page, 'Signed in as proxied');
        const [signedIn] = await context.cookies(proxy.origin);
        assert.equal(await statusWithCookie(proxy, `${BASE}/api/me`, signedIn), 200);
        const logout = page.waitForResponse(`${latchkey}/api/logout`);
        await h.clickAndSettle(page, 'Sign out');
        assert.equal((await logout).status(), 204);
        assert.equal((await (await logout).allHeaders())['clear-site-data'], '"cookies"');
        // (The page's autofill may sign the virtual authenticator's passkey in again at once.)
        assert.equal(await statusWithCookie(proxy, `${BASE}/api/me`, signedIn), 401, 'the session ended');
      } finally {
        await context.close();
      }
    });
  });
}
