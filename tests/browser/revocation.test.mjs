// Admin revocation reaching the browser: a revoked license locks at the next sync, and a
// revoked passkey is reported to the browser with the WebAuthn Signal API.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as h from './harness.mjs';
import { acceptJwks, readStatusList } from '../../static/latchkey.js';


h.suite('revocation', {}, (s) => {

  /** Polls the service's status list (from node) until entry `idx` is no longer valid. */
  async function waitUntilListed(uri, idx) {
    const local = (u) => u.replace('//localhost:', '//127.0.0.1:');
    const jwks = await acceptJwks(await (await fetch(local(`${s.server.origin}/.well-known/jwks.json`))).json());
    const deadline = Date.now() + 15_000;
    for (;;) {
      const token = await (await fetch(local(uri))).text();
      const { status } = await readStatusList(token, jwks, { uri, idx, now: Date.now() });
      if (status !== 0) return;
      if (Date.now() > deadline) throw new Error(`status list entry ${idx} still valid after 15 s`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  test('admin revokes the license: back online, one sync locks it as revoked', h.TEST, async () => {
    const { context, page } = await h.newDevice(s.browser);
    try {
      await h.premiumUser(page, s.server, 'rita');
      await context.setOffline(true);
      await page.reload();
      await h.expectVerdict(page, 'Premium unlocked');

      const { claims } = await h.storedLicense(page);
      await s.server.admin('revoke-license', claims.jti);
      await waitUntilListed(claims.status.status_list.uri, claims.status.status_list.idx);
      // Still offline: the device cannot know yet.
      await page.reload();
      await h.expectVerdict(page, 'Premium unlocked');

      await context.setOffline(false);
      await h.expectLocked(page, 'revoked', 20_000);
      await h.expectText(page, 'Online');
    } finally {
      await context.close();
    }
  });

  test('a revoked passkey signs the user out; the kept license then locks as revoked', h.TEST, async () => {
    const { context, page, cdp, authenticatorId } = await h.newDevice(s.browser);
    try {
      await h.premiumUser(page, s.server, 'paolo');
      const { claims } = await h.storedLicense(page);
      const [credential] = await h.credentialsOn(cdp, authenticatorId);
      await s.server.admin('revoke-passkey', h.toB64url(credential.credentialId));
      await waitUntilListed(claims.status.status_list.uri, claims.status.status_list.idx);
      await page.reload();
      await h.expectLocked(page, 'revoked');
      // The license is still on the device (a 401 does not erase it), and still refused.
      assert.equal((await h.storedLicense(page)).claims.jti, claims.jti);
    } finally {
      await context.close();
    }
  });

  test('a revoked passkey offered at sign-in is reported with signalUnknownCredential', h.TEST, async () => {
    const { context, page, cdp, authenticatorId } = await h.newDevice(s.browser);
    try {
      await page.addInitScript(() => {
        window.__signals = [];
        const original = PublicKeyCredential.signalUnknownCredential?.bind(PublicKeyCredential);
        if (original) {
          PublicKeyCredential.signalUnknownCredential = (options) => {
            window.__signals.push(options);
            return original(options);
          };
        }
      });
      await page.goto(s.server.origin);
      await h.register(page, 'victor');
      const [credential] = await h.credentialsOn(cdp, authenticatorId);
      const credentialId = h.toB64url(credential.credentialId);

      await s.server.admin('revoke-passkey', credentialId);
      // The revocation ended the session: on the next load the page is signed out and arms
      // autofill, a discoverable request, so the authenticator offers the revoked passkey.
      // (With a username the service only lists that user's live passkeys.)
      await page.reload();
      await h.expectText(page, h.sentence('unknown-credential'));

      const signals = await page.evaluate(() => window.__signals);
      assert.deepEqual(signals, [{ rpId: 'localhost', credentialId }]);
      assert.deepEqual(await h.credentialsOn(cdp, authenticatorId), [], 'the s.browser dropped the passkey');
    } finally {
      await context.close();
    }
  });
});
