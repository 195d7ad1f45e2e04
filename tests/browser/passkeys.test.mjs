// Passkeys in the demo PWA: offline unlock against the license's signed passkey keys,
// autofill (conditional mediation) sign-in, self-service, and the DPoP-bound premium API.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import * as h from './harness.mjs';


h.suite('passkeys', {}, (s) => {

  test('offline unlock works with the passkey and fails with another authenticator', h.TEST, async () => {
    const device = await h.newDevice(s.browser);
    const { context, page } = device;
    try {
      await h.premiumUser(page, s.server, 'ursula');
      await context.setOffline(true);
      await page.reload();
      await h.expectVerdict(page, 'Premium unlocked');

      const unlockResult = page.getByRole('status', { name: 'Passkey unlock' });
      await h.clickAndSettle(page, 'Unlock with passkey');
      assert.equal(await unlockResult.textContent(), h.sentence('unlock.ok', { username: 'ursula' }));

      // A fresh authenticator holding a credential with the same id but another private key:
      // the s.browser offers it, and the local check against the license's cks key refuses it.
      const [original] = await h.credentialsOn(device.cdp, device.authenticatorId);
      await device.cdp.send('WebAuthn.removeVirtualAuthenticator', { authenticatorId: device.authenticatorId });
      const other = await h.addAuthenticator(context, page);
      const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      await other.cdp.send('WebAuthn.addCredential', {
        authenticatorId: other.authenticatorId,
        credential: {
          credentialId: original.credentialId,
          isResidentCredential: true,
          rpId: 'localhost',
          privateKey: privateKey.export({ format: 'der', type: 'pkcs8' }).toString('base64'),
          userHandle: original.userHandle,
          signCount: 0,
        },
      });
      await h.clickAndSettle(page, 'Unlock with passkey');
      assert.equal(await unlockResult.textContent(), h.sentence('unlock.signature invalid'));

      // An authenticator with an unrelated credential has nothing the license names.
      await other.cdp.send('WebAuthn.clearCredentials', { authenticatorId: other.authenticatorId });
      await other.cdp.send('WebAuthn.addCredential', {
        authenticatorId: other.authenticatorId,
        credential: {
          credentialId: Buffer.from('another-credential-id').toString('base64'),
          isResidentCredential: true,
          rpId: 'localhost',
          privateKey: privateKey.export({ format: 'der', type: 'pkcs8' }).toString('base64'),
          userHandle: original.userHandle,
          signCount: 0,
        },
      });
      const result = await page.evaluate(async () => {
        const { createLatchkey } = await import('/latchkey.js');
        return createLatchkey().unlockWithPasskey({ timeout: 5_000 });
      });
      assert.equal(result.ok, false);
      assert.equal(result.reason, 'cancelled');
    } finally {
      await context.close();
    }
  });

  test('autofill: sign-out and page load start a conditional request that signs the user in', h.TEST, async () => {
    const { context, page } = await h.newDevice(s.browser);
    try {
      await page.addInitScript(() => {
        window.__mediations = [];
        const get = navigator.credentials.get.bind(navigator.credentials);
        navigator.credentials.get = (options) => {
          window.__mediations.push(options?.mediation ?? 'optional');
          return get(options);
        };
      });
      await page.goto(s.server.origin);
      assert.equal(await page.getByRole('textbox', { name: 'Username' }).getAttribute('autocomplete'), 'username webauthn');
      await h.register(page, 'ada');

      // Signing out ends the session and arms autofill again; the virtual authenticator
      // answers a conditional request by itself (a person would pick the passkey).
      const logout = page.waitForResponse((r) => new URL(r.url()).pathname === '/api/logout');
      await page.getByRole('button', { name: 'Sign out', exact: true }).click();
      assert.equal((await logout).status(), 204);
      await h.expectText(page, 'Signed in as ada.');

      // A s.browser whose session cookie is gone but that still holds the passkey: on load.
      await context.clearCookies();
      await page.reload();
      await h.expectText(page, 'Signed in as ada');
      await page.getByRole('heading', { name: 'Your passkeys' }).waitFor();
      assert.deepEqual(await page.evaluate(() => window.__mediations), ['conditional']);
    } finally {
      await context.close();
    }
  });

  test('my passkeys: add, rename and remove, but not the last one', h.TEST, async () => {
    const device = await h.newDevice(s.browser);
    const { context, page } = device;
    try {
      await page.goto(s.server.origin);
      await h.register(page, 'pat');
      const list = page.getByRole('list', { name: 'Your passkeys' });
      await list.getByRole('listitem').first().waitFor();
      // The only passkey is not offered for removal; the page says why.
      assert.equal(await list.getByRole('button', { name: /^Remove passkey/ }).count(), 0);
      await h.expectText(page, h.sentence('last-passkey'));
      const firstName = (await list.getByRole('listitem').first().locator('.passkey-name').textContent()).trim();

      await page.getByRole('textbox', { name: `New name for ${firstName}` }).fill('Work laptop');
      await h.clickAndSettle(page, `Rename passkey ${firstName}`);
      await page.getByRole('button', { name: 'Rename passkey Work laptop' }).waitFor();

      // A second passkey from a second authenticator (the first one would be excluded).
      await device.cdp.send('WebAuthn.removeVirtualAuthenticator', { authenticatorId: device.authenticatorId });
      await h.addAuthenticator(context, page);
      await h.clickAndSettle(page, 'Add a passkey');
      await h.expectText(page, 'Passkey added.');
      assert.equal(await list.getByRole('listitem').count(), 2);

      const second = list.getByRole('listitem').filter({ hasNot: page.getByRole('button', { name: 'Rename passkey Work laptop' }) });
      const secondName = (await second.locator('.passkey-name').textContent()).trim();
      await page.getByRole('button', { name: `Remove passkey ${secondName}` }).click();
      await h.clickAndSettle(page, `Yes, remove passkey ${secondName}`);
      await h.expectText(page, `Removed ${secondName}.`);
      assert.equal(await list.getByRole('listitem').count(), 1);

      // The last passkey stays: Remove is no longer offered, and the page says why.
      assert.equal(await list.getByRole('button', { name: /^Remove passkey/ }).count(), 0);
      await h.expectText(page, h.sentence('last-passkey'));
      assert.equal(await list.getByRole('listitem').count(), 1);
    } finally {
      await context.close();
    }
  });

  test('the premium API answers a DPoP-bound license call', h.TEST, async () => {
    const { context, page } = await h.newDevice(s.browser);
    try {
      await h.premiumUser(page, s.server, 'paula');
      await h.clickAndSettle(page, 'Call premium API');
      const said = await page.getByRole('status', { name: 'Premium API' }).textContent();
      assert.match(said, /^Premium API says: /);
    } finally {
      await context.close();
    }
  });
});

h.suite('step-up', { LATCHKEY_STEP_UP_MINUTES: '0' }, (s) => {
  test('removing a passkey asks for a passkey confirmation first, then goes ahead', h.TEST, async () => {
    const device = await h.newDevice(s.browser);
    const { context, page } = device;
    try {
      await page.goto(s.server.origin);
      await h.register(page, 'stella');
      // Another passkey, on another authenticator: it spends the sign-in's confirmation.
      await device.cdp.send('WebAuthn.removeVirtualAuthenticator', { authenticatorId: device.authenticatorId });
      const second = await h.addAuthenticator(context, page);
      await h.clickAndSettle(page, 'Add a passkey');
      await h.expectText(page, 'Passkey added.');
      const [created] = await h.credentialsOn(second.cdp, second.authenticatorId);
      const list = page.getByRole('list', { name: 'Your passkeys' });
      // Both are named after this browser and may share a creation second, so the list order
      // alone does not say which is new: find the new one by its credential id.
      const newId = h.toB64url(created.credentialId);
      const ids = await page.evaluate(async () => (await (await fetch('/api/me')).json()).passkeys.map((p) => p.id));
      assert.equal(ids.length, 2);
      assert.ok(ids.includes(newId), 'the new passkey is listed');
      const added = list.getByRole('listitem').nth(ids.indexOf(newId));
      const name = (await added.locator('.passkey-name').textContent()).trim();
      await added.getByRole('button', { name: /^Remove passkey/ }).click();
      await added.getByRole('button', { name: /^Yes, remove passkey/ }).click();
      await h.expectText(page, `Removed ${name}.`);
      assert.equal(await list.getByRole('listitem').count(), 1);
      const [after] = await h.credentialsOn(second.cdp, second.authenticatorId);
      assert.ok(after.signCount > created.signCount, 'the authenticator was asked to confirm');
    } finally {
      await context.close();
    }
  });
});
