// The demo page itself: it runs under a strict Content-Security-Policy (no inline script or
// style), works at phone width, and is installable (manifest, icons, service worker).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as h from './harness.mjs';


const CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
  "worker-src 'self'; manifest-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

h.suite('demo page', {}, (s) => {

  test('runs under a CSP without unsafe-inline, at phone width, and is installable', h.TEST, async () => {
    const context = await s.browser.newContext({ viewport: { width: 360, height: 740 } });
    const page = await context.newPage();
    await h.addAuthenticator(context, page);
    try {
      // Serve the document with a strict policy, whatever the service sends today.
      await page.route(`${s.server.origin}/`, async (route) => {
        const response = await route.fetch();
        await route.fulfill({ response, headers: { ...response.headers(), 'content-security-policy': CSP } });
      });
      await page.addInitScript(() => {
        window.__violations = [];
        document.addEventListener('securitypolicyviolation', (e) => window.__violations.push(`${e.violatedDirective} ${e.blockedURI}`));
      });
      const errors = [];
      page.on('pageerror', (e) => errors.push(e.message));

      await page.goto(s.server.origin);
      // (Playwright routing keeps service workers out of this page; the next test checks them.)
      await h.premiumUser(page, s.server, 'cecile', { serviceWorker: false });
      assert.deepEqual(await page.evaluate(() => window.__violations), []);
      assert.deepEqual(errors, []);
      // Control: the policy is really in force (an inline style attribute is reported).
      await page.evaluate(() => document.body.insertAdjacentHTML('beforeend', '<p style="color:red">x</p>'));
      await page.waitForFunction(() => window.__violations.length > 0);

      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 0, `page is ${overflow}px wider than a 360px phone`);

      const { manifest, href } = await page.evaluate(async () => {
        const href = document.querySelector('link[rel="manifest"]').href;
        return { manifest: await (await fetch(href)).json(), href };
      });
      assert.equal(manifest.display, 'standalone');
      // Manifest URLs are relative to the manifest (so they follow LATCHKEY_BASE_PATH).
      assert.equal(new URL(manifest.start_url, href).href, `${s.server.origin}/`);
      assert.equal(new URL(manifest.scope, href).href, `${s.server.origin}/`);
      for (const size of ['192x192', '512x512']) {
        const icon = manifest.icons.find((i) => i.sizes === size && i.type === 'image/png');
        assert.ok(icon, `a ${size} PNG icon`);
        const src = new URL(icon.src, href).href;
        const bytes = await page.evaluate(async (src) => [...new Uint8Array(await (await fetch(src)).arrayBuffer()).slice(0, 24)], src);
        assert.deepEqual(bytes.slice(1, 4), [0x50, 0x4e, 0x47]);
        const width = (bytes[16] << 24) | (bytes[17] << 16) | (bytes[18] << 8) | bytes[19];
        assert.equal(`${width}x${width}`, size);
      }
    } finally {
      await context.close();
    }
  });

  test('a service worker takes control and keeps the shell and signed public data, never tokens', h.TEST, async () => {
    const { context, page } = await h.newDevice(s.browser);
    try {
      await h.premiumUser(page, s.server, 'sam');
      assert.equal(await page.evaluate(() => navigator.serviceWorker.controller?.scriptURL), `${s.server.origin}/sw.js`);
      const cached = await page.evaluate(async () => {
        const urls = [];
        for (const name of await caches.keys()) {
          for (const request of await (await caches.open(name)).keys()) urls.push(new URL(request.url).pathname);
        }
        return urls.sort();
      });
      for (const path of ['/', '/app.js', '/app.css', '/latchkey.js', '/latchkey-core.js', '/manifest.webmanifest', '/.well-known/jwks.json']) {
        assert.ok(cached.includes(path), `${path} is cached`);
      }
      assert.ok(cached.some((p) => p.startsWith('/api/status-lists/')), 'the status list is cached');
      const leaked = cached.filter((p) => /^\/api\/(licenses|me|login|register|premium|logout)/.test(p));
      assert.deepEqual(leaked, []);
    } finally {
      await context.close();
    }
  });
});
