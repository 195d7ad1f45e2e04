// Devices in Chromium: two browsers signed in to one account (the passkey synced to both). With
// premium for one device, the second browser's license is refused (409, device limit); it lists
// the devices, removes the first, then gets its license; the first locks at its next sync.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as h from './harness.mjs';

h.suite('devices', {}, (s) => {
  test('at the device limit a new device is refused until another is removed, which then locks at its next sync', h.TEST, async () => {
    const phone = await h.newDevice(s.browser);
    const laptop = await h.newDevice(s.browser);
    try {
      await h.premiumUser(phone.page, s.server, 'dana', { serviceWorker: false });
      await s.server.admin('grant', 'dana', 'premium', '--max-devices', '1');
      // The same passkey on the laptop, as a synced passkey would be.
      const [credential] = await h.credentialsOn(phone.cdp, phone.authenticatorId);
      await laptop.cdp.send('WebAuthn.addCredential', { authenticatorId: laptop.authenticatorId, credential });
      // The page's autofill signs the laptop in (the virtual authenticator answers it), and
      // the sync after it asks for a license.
      await laptop.page.goto(s.server.origin);
      await h.expectText(laptop.page, 'Signed in as dana');
      await h.expectText(laptop.page, 'This account already has as many devices as it may use (1); remove one of them to use this one.');
      await h.expectLocked(laptop.page, 'no license');

      const items = laptop.page.getByRole('list', { name: 'Your devices' }).getByRole('listitem');
      await items.first().waitFor();
      assert.equal(await items.count(), 1, 'the laptop is no device yet');
      const other = items.filter({ hasNotText: '(this device)' });
      await other.getByText(/ · [1-9][0-9]* active licenses?$/).waitFor();
      await other.getByRole('button', { name: 'Remove device Chrome on Linux', exact: true }).click();
      await other.getByRole('button', { name: 'Yes, remove device Chrome on Linux', exact: true }).click();
      await h.expectText(laptop.page, 'Removed Chrome on Linux. Its licenses are revoked.');
      await h.expectText(laptop.page, 'No devices yet: a device appears here when it gets an offline license.');
      await h.clickAndSettle(laptop.page, 'Check again');
      await h.expectVerdict(laptop.page, 'Premium unlocked');
      await items.getByText('Chrome on Linux (this device)', { exact: true }).waitFor();
      assert.equal(await items.count(), 1);

      // The phone's sign-in ended (before its page could sign in again by autofill), and at
      // its next sync its license is revoked.
      assert.equal(await phone.page.evaluate(() => fetch('/api/me').then((r) => r.status)), 401);
      await phone.page.reload();
      await h.expectLocked(phone.page, 'revoked');
    } finally {
      await Promise.all([phone.context.close(), laptop.context.close()]);
    }
  });
});
