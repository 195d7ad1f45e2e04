// The trust anchor is pinned outside IndexedDB: a key and a self-signed license written into
// the page's storage are refused, even with the JWK set unreachable and the service worker's
// cached copy of it gone (a cache is no trust anchor either).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as h from './harness.mjs';

h.suite('pinned keys', {}, (s) => {
  test('a forged key and a self-signed license in IndexedDB are refused after reload', h.TEST, async () => {
    const { context, page } = await h.newDevice(s.browser);
    try {
      await h.premiumUser(page, s.server, 'mallory');
      const genuine = await h.storedLicense(page);

      // What a script in this profile can do: make a key, sign a one-year license for this
      // device with it, and store both where the client keeps its key set and license.
      const forged = await page.evaluate(async ({ sub, claims }) => {
        const lk = await import('/latchkey.js');
        const pair = await crypto.subtle.generateKey({ name: 'Ed25519' }, true, ['sign', 'verify']);
        const { x } = await crypto.subtle.exportKey('jwk', pair.publicKey);
        const kid = await lk.jwkThumbprint({ kty: 'OKP', crv: 'Ed25519', x });
        const jwk = { kty: 'OKP', crv: 'Ed25519', x, kid, alg: 'EdDSA', use: 'sig' };
        const now = Math.floor(Date.now() / 1000);
        const payload = { ...claims, iat: now, nbf: now, exp: now + 365 * 86400, jti: 'forged', ent: ['premium'] };
        const enc = (v) => lk.b64urlEncode(new TextEncoder().encode(JSON.stringify(v)));
        const input = `${enc({ alg: 'EdDSA', typ: 'license+jwt', kid })}.${enc(payload)}`;
        const signature = await crypto.subtle.sign({ name: 'Ed25519' }, pair.privateKey, new TextEncoder().encode(input));
        const token = `${input}.${lk.b64urlEncode(signature)}`;

        // Control: against the forged key set, this license passes every other check here.
        const db = await new Promise((resolve) => {
          const open = indexedDB.open('latchkey', 1);
          open.onsuccess = () => resolve(open.result);
        });
        const device = await new Promise((resolve) => {
          const req = db.transaction('kv').objectStore('kv').get('device');
          req.onsuccess = () => resolve(req.result);
        });
        const status = await new Promise((resolve) => {
          const req = db.transaction('kv').objectStore('kv').get(`status:${claims.status.status_list.uri}`);
          req.onsuccess = () => resolve(req.result);
        });
        db.close();
        const control = await lk.evaluateLicense({
          token,
          jwks: { keys: [jwk] },
          issuer: location.origin,
          audience: location.origin,
          now: Date.now(),
          highWater: 0,
          device,
          statusToken: null,
          staleStatus: 'allow',
          entitlement: 'premium',
        });
        return { sub, token, jwk, control: control.ok, statusCached: Boolean(status) };
      }, genuine);
      assert.equal(forged.control, true, 'the forged license is otherwise a good one');
      assert.equal(forged.statusCached, true);
      await h.writeKv(page, {
        jwks: { keys: [forged.jwk], fetchedAt: Date.now() },
        [`license:${forged.sub}`]: { token: forged.token, storedAt: Date.now() },
        [`newest-iat:${forged.sub}`]: genuine.claims.iat,
      });

      // No network (so no JWK set from the service), and the service worker's copy of the
      // JWK set deleted; the shell, with its pinned-keys manifest, stays.
      await context.setOffline(true);
      const removed = await page.evaluate(async () => {
        let n = 0;
        for (const name of await caches.keys()) {
          const cache = await caches.open(name);
          for (const request of await cache.keys()) {
            if (new URL(request.url).pathname === '/.well-known/jwks.json' && (await cache.delete(request))) n++;
          }
        }
        return n;
      });
      assert.equal(removed, 1, "the service worker's cached JWK set was there and is gone");
      assert.equal(await page.evaluate(() => fetch('/.well-known/jwks.json').then((r) => r.status, () => 'failed')), 'failed');

      const response = await page.reload();
      assert.equal(response.fromServiceWorker(), true);
      await h.expectLocked(page, 'signature invalid');

      // The genuine license, checked the same way (no JWK set anywhere but the pinned
      // manifest), still unlocks: the refusal is the forged key's, not the missing set's.
      await h.writeKv(page, { [`license:${genuine.sub}`]: { token: genuine.token, storedAt: Date.now() } });
      await page.reload();
      await h.expectVerdict(page, 'Premium unlocked');
    } finally {
      await context.close();
    }
  });

  test('trustedKeys: an app that pins thumbprints itself trusts nothing else from storage', h.TEST, async () => {
    const { context, page } = await h.newDevice(s.browser);
    try {
      await h.premiumUser(page, s.server, 'trudy');
      const { kid } = JSON.parse(Buffer.from((await h.storedLicense(page)).token.split('.')[0], 'base64url').toString('utf8'));
      await context.setOffline(true);
      const verdicts = await page.evaluate(async (kid) => {
        const { createLatchkey } = await import('/latchkey.js');
        const pinned = await createLatchkey({ keysUrl: null, trustedKeys: [kid] }).check('premium');
        const other = await createLatchkey({ keysUrl: null, trustedKeys: ['A'.repeat(43)] }).check('premium');
        return [pinned.reason, other.reason];
      }, kid);
      assert.deepEqual(verdicts, [null, 'signature invalid']);
    } finally {
      await context.close();
    }
  });
});
