// Account recovery in Chromium: an admin makes a recovery link on /admin (shown as a URL and
// as a QR code), the user opens it in a second browser profile and adds a new passkey to the
// same account, and the old passkey and session are revoked when the admin chose so. And the
// user's own recovery codes, made on the PWA, do the same from a second profile.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import jsQR from 'jsqr';
import * as h from './harness.mjs';

h.suite('recovery', {}, (s) => {
  /** Registers `username` on the PWA (which signs it in), promotes it with the CLI and opens /admin. */
  async function adminPage(username) {
    const device = await h.newDevice(s.browser);
    await device.page.goto(s.server.origin);
    await h.register(device.page, username);
    await s.server.admin('promote', username);
    await device.page.goto(`${s.server.origin}/admin`);
    await h.expectText(device.page, `Signed in as ${username} (admin)`);
    return device;
  }

  /** Draws the page's QR code SVG on a canvas and reads it back with jsQR. */
  async function readQr(page) {
    const size = 240;
    const pixels = await page.evaluate(async (size) => {
      const svg = document.getElementById('recovery-qr');
      const text = new XMLSerializer().serializeToString(svg);
      const image = new Image();
      image.src = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(text)}`;
      await image.decode();
      const canvas = document.createElement('canvas');
      canvas.width = canvas.height = size;
      const g = canvas.getContext('2d');
      g.drawImage(image, 0, 0, size, size);
      // The RGBA bytes as base64: one string crosses to Node much faster than a number array.
      const bytes = g.getImageData(0, 0, size, size).data;
      let binary = '';
      for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
      return btoa(binary);
    }, size);
    return jsQR(new Uint8ClampedArray(Buffer.from(pixels, 'base64')), size, size)?.data;
  }

  test('a recovery link from the admin page adds a passkey on a second profile and revokes the old one', h.TEST, async () => {
    const lost = await h.newDevice(s.browser);
    const root = await adminPage('root');
    const found = await h.newDevice(s.browser);
    try {
      await lost.page.goto(s.server.origin);
      await h.register(lost.page, 'nina');

      const admin = root.page;
      await admin.getByRole('searchbox', { name: 'Search users' }).fill('nina');
      await admin.getByRole('button', { name: 'Search', exact: true }).click();
      await admin.getByRole('link', { name: 'nina', exact: true }).click();
      await admin.getByRole('heading', { name: 'User nina', exact: true }).waitFor();
      await admin.getByRole('combobox', { name: 'Works for' }).selectOption('900');
      await admin.getByRole('checkbox', { name: /revoke the other passkeys/ }).check();
      await admin.getByRole('button', { name: 'Make recovery link', exact: true }).click();
      const dialog = admin.getByRole('dialog', { name: 'Make a recovery link for nina?' });
      await dialog.getByText(/nina's other passkeys, sessions and licenses are revoked/).waitFor();
      await dialog.getByRole('button', { name: 'Confirm', exact: true }).click();
      const output = admin.getByRole('status', { name: 'Recovery link' });
      await output.waitFor();
      const url = await output.textContent();
      assert.match(url, new RegExp(`^${s.server.origin}/\\?recover=lke_[A-Za-z0-9_-]{32}$`));
      assert.equal(await readQr(admin), url, 'the QR code carries the same link');

      // Nina, on another browser profile without her passkey, opens the link.
      await found.page.goto(url);
      await found.page.getByRole('heading', { name: 'Recover your account' }).waitFor();
      await found.page.getByRole('button', { name: 'Add a passkey', exact: true }).click();
      await h.expectText(found.page, 'Passkey added. Signed in as nina.');
      await h.expectText(found.page, 'Signed in as nina');
      assert.equal(new URL(found.page.url()).search, '', 'the used code leaves the address bar');
      assert.equal((await h.credentialsOn(found.cdp, found.authenticatorId)).length, 1);

      // The old profile: its session ended, and its passkey no longer signs in (the page's
      // autofill offers it at once, and the service refuses it).
      await lost.page.reload();
      await h.expectSignedOut(lost.page);
      await h.expectText(lost.page, h.sentence('unknown-credential'));
      await lost.page.getByRole('button', { name: 'Sign in with passkey', exact: true }).click();
      await lost.page.getByRole('alert').filter({ hasText: /./ }).waitFor();
      await h.expectSignedOut(lost.page);

      // The new passkey signs in again after signing out (autofill, which the virtual
      // authenticator answers by itself), and the link is spent.
      const signin = found.page.waitForResponse((r) => new URL(r.url()).pathname === '/api/login/finish');
      await h.clickAndSettle(found.page, 'Sign out');
      assert.equal((await signin).status(), 200);
      await h.expectText(found.page, 'Signed in as nina');
      const again = await found.page.evaluate(async (code) => {
        const res = await fetch('/api/register/enroll', {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ enrollment: code }),
        });
        return { status: res.status, type: (await res.json()).type };
      }, new URL(url).searchParams.get('recover'));
      assert.deepEqual(again, { status: 422, type: 'urn:latchkey:problem:enrollment-not-found' });

      // The admin page shows the old passkey revoked and the new one active.
      await admin.reload();
      await admin.getByRole('heading', { name: 'User nina', exact: true }).waitFor();
      const passkeys = admin.getByRole('list', { name: 'Passkeys' });
      await passkeys.getByText('Revoked', { exact: true }).waitFor();
      assert.equal(await passkeys.getByText('Active', { exact: true }).count(), 1);
      assert.equal(await passkeys.getByText('Revoked', { exact: true }).count(), 1);
    } finally {
      await Promise.all([lost.context.close(), root.context.close(), found.context.close()]);
    }
  });

  test('a recovery code made on the PWA adds a passkey to the account on a second profile, once', h.TEST, async () => {
    const first = await h.newDevice(s.browser);
    const second = await h.newDevice(s.browser);
    try {
      await first.page.goto(s.server.origin);
      await h.register(first.page, 'omar');
      await h.clickAndSettle(first.page, 'Make recovery codes');
      const list = first.page.getByRole('list', { name: 'Recovery codes' });
      const codes = await list.getByRole('listitem').allTextContents();
      assert.equal(codes.length, 10);
      assert.ok(codes.every((c) => /^[A-Z0-9]{4}(-[A-Z0-9]{4}){3}$/.test(c)), codes.join(' '));
      await h.expectText(first.page, '10 unused recovery codes. Making new ones replaces them.');

      await second.page.goto(s.server.origin);
      await second.page.getByRole('textbox', { name: 'Username' }).fill('omar');
      await second.page.getByText('Lost your passkey? Use a recovery code').click();
      await second.page.getByRole('textbox', { name: 'Recovery code' }).fill(codes[0].toLowerCase());
      await h.clickAndSettle(second.page, 'Add a passkey with the code');
      await h.expectText(second.page, 'Passkey added. Signed in as omar.');
      await h.expectText(second.page, '9 unused recovery codes. Making new ones replaces them.');
      assert.equal((await h.credentialsOn(second.cdp, second.authenticatorId)).length, 1);

      // The same code again, on a third profile: refused.
      const third = await h.newDevice(s.browser);
      try {
        await third.page.goto(s.server.origin);
        await third.page.getByRole('textbox', { name: 'Username' }).fill('omar');
        await third.page.getByText('Lost your passkey? Use a recovery code').click();
        await third.page.getByRole('textbox', { name: 'Recovery code' }).fill(codes[0]);
        await h.clickAndSettle(third.page, 'Add a passkey with the code');
        await h.expectText(third.page, 'This username and recovery code do not match, or the code was already used.');
        await h.expectSignedOut(third.page);
      } finally {
        await third.context.close();
      }
      // A recovery code revokes nothing: the first profile is still signed in.
      assert.equal(await first.page.evaluate(() => fetch('/api/me').then((r) => r.status)), 200);
    } finally {
      await Promise.all([first.context.close(), second.context.close()]);
    }
  });
});
