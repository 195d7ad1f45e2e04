// Offline licenses in the demo PWA: premium keeps working with no network, and the stored
// license cannot be edited, rolled back or carried to another device. A sign-out made offline
// sticks: the service is told first thing on reconnect.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as h from './harness.mjs';


h.suite('offline license', {}, (s) => {

  test('premium stays unlocked offline on a reload served by the service worker', h.TEST, async () => {
    const { context, page, cdp } = await h.newDevice(s.browser);
    try {
      await h.premiumUser(page, s.server, 'olivia');
      await context.setOffline(true);
      const response = await page.reload();
      assert.equal(response.fromServiceWorker(), true, 'the offline page comes from the service worker');
      assert.equal(await page.evaluate(() => fetch('/api/me').then(() => 'reached', () => 'failed')), 'failed');
      await h.expectVerdict(page, 'Premium unlocked');
      await h.emulateOffline(cdp);
      await h.expectText(page, 'Offline');
      await h.expectText(page, h.sentence('connection.offline.sentence'));
      const area = await h.premiumArea(page).textContent();
      assert.match(area, /License valid until /);
    } finally {
      await context.close();
    }
  });

  test('a license edited in IndexedDB is refused: signature invalid', h.TEST, async () => {
    const { context, page } = await h.newDevice(s.browser);
    try {
      await h.premiumUser(page, s.server, 'edith');
      const { sub, token, claims } = await h.storedLicense(page);
      // Push the expiry out by a year and keep the old signature.
      const [header, , signature] = token.split('.');
      const edited = Buffer.from(JSON.stringify({ ...claims, exp: claims.exp + 365 * 86400 })).toString('base64url');
      await h.writeKv(page, { [`license:${sub}`]: { token: `${header}.${edited}.${signature}`, storedAt: Date.now() } });
      await context.setOffline(true);
      await page.reload();
      await h.expectLocked(page, 'signature invalid');
    } finally {
      await context.close();
    }
  });

  test('an older license swapped back in is refused', h.TEST, async () => {
    const { context, page } = await h.newDevice(s.browser);
    try {
      await h.premiumUser(page, s.server, 'oscar');
      const older = await h.storedLicense(page);
      // iat has one-second resolution: wait for the service's next second (same machine clock).
      const nextSecond = (older.claims.iat + 1) * 1000 - Date.now();
      if (nextSecond > 0) await new Promise((r) => setTimeout(r, nextSecond + 20));
      await h.fetchLicenseNow(page);
      const newer = await h.storedLicense(page);
      assert.ok(newer.claims.iat > older.claims.iat, 'a newer license was stored');
      await h.expectVerdict(page, 'Premium unlocked');
      await h.writeKv(page, { [`license:${older.sub}`]: { token: older.token, storedAt: Date.now() } });
      await context.setOffline(true);
      await page.reload();
      await h.expectLocked(page, 'older license');
    } finally {
      await context.close();
    }
  });

  test('license and key records copied into another s.browser profile: bound to another device', h.TEST, async () => {
    const first = await h.newDevice(s.browser);
    const second = await h.newDevice(s.browser);
    try {
      await h.premiumUser(first.page, s.server, 'carla');
      const sub = await h.readKv(first.page, 'current');
      const device = await h.readKv(first.page, 'device');
      const copied = { current: sub };
      for (const key of ['jwks', 'hwm', `license:${sub}`, `newest-iat:${sub}`]) copied[key] = await h.readKv(first.page, key);
      const { claims } = await h.storedLicense(first.page);
      const statusKey = `status:${claims.status.status_list.uri}`;
      copied[statusKey] = await h.readKv(first.page, statusKey);

      // 1. The records alone: this profile has no device key.
      await second.page.goto(s.server.origin);
      await h.expectSignInPrompt(second.page);
      await h.writeKv(second.page, copied);
      await second.page.reload();
      await h.expectLocked(second.page, 'bound to another device');

      // 2. This profile's own device key: another thumbprint.
      await second.page.evaluate(async () => {
        const { createLatchkey } = await import('/latchkey.js');
        await createLatchkey().ensureDeviceKey();
      });
      await second.page.reload();
      await h.expectLocked(second.page, 'bound to another device');

      // 3. The first device's public key record spliced in: the thumbprint matches, but the
      //    private key here cannot sign for it.
      await second.page.evaluate(async (publicJwk) => {
        const open = indexedDB.open('latchkey', 1);
        await new Promise((r) => (open.onsuccess = r));
        const store = open.result.transaction('kv', 'readwrite').objectStore('kv');
        const req = store.get('device');
        await new Promise((r) => (req.onsuccess = r));
        store.put({ ...req.result, publicJwk }, 'device');
        await new Promise((r) => (store.transaction.oncomplete = r));
        open.result.close();
      }, device.publicJwk);
      await second.page.reload();
      await h.expectLocked(second.page, 'bound to another device');

      // The original device still has premium.
      await first.page.reload();
      await h.expectVerdict(first.page, 'Premium unlocked');
    } finally {
      await first.context.close();
      await second.context.close();
    }
  });

  test('an offline sign-out is sent on reconnect before anything else; nobody is signed in meanwhile', h.TEST, async () => {
    const { context, page, cdp, authenticatorId } = await h.newDevice(s.browser);
    try {
      await h.premiumUser(page, s.server, 'sasha');
      await context.setOffline(true);
      await page.reload();
      await h.expectText(page, 'Signed in as sasha (offline)');
      await h.clickAndSettle(page, 'Sign out');
      await h.expectText(page, "Signed out on this device. You're offline: the service is told as soon as you're back online.");
      await h.expectSignedOut(page);
      await h.expectSignInPrompt(page);
      await page.reload();
      await h.expectSignedOut(page);

      // A shared tablet: the next person has no passkey here (the virtual authenticator would
      // otherwise answer the page's autofill request by itself).
      await cdp.send('WebAuthn.clearCredentials', { authenticatorId });
      // Back online: the pending sign-out goes out first, so the old cookie never signs in again.
      const calls = [];
      page.on('request', (r) => {
        if (r.url().includes('/api/')) calls.push(`${r.method()} ${new URL(r.url()).pathname}`);
      });
      await context.setOffline(false);
      await page.reload();
      await h.expectText(page, 'Online');
      await h.expectSignedOut(page);
      assert.equal(calls[0], 'POST /api/logout', calls.join(', '));
      assert.equal(await page.evaluate(() => fetch('/api/me').then((r) => r.status)), 401);
      assert.equal(await h.readKv(page, 'pendingSignOut'), undefined, 'nothing left to send');
    } finally {
      await context.close();
    }
  });
});
