// The drop-in components on the demo page: keyboard-only use, progress and cancel of a pending
// passkey prompt, words for a wrong username, and replaced (translated) messages.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as h from './harness.mjs';

/** The focused element, looking through shadow roots: its label, aria-label or text. */
function focused(page) {
  return page.evaluate(() => {
    let el = document.activeElement;
    while (el?.shadowRoot?.activeElement) el = el.shadowRoot.activeElement;
    if (!el || el === document.body) return null;
    return el.getAttribute('aria-label') || el.labels?.[0]?.textContent.trim() || el.textContent.trim();
  });
}

/** Presses Tab until the element named `name` has focus (fails after `max` presses). */
async function tabTo(page, name, max = 30) {
  const seen = [];
  for (let i = 0; i < max; i++) {
    await page.keyboard.press('Tab');
    const now = await focused(page);
    if (now === name) return;
    seen.push(now);
  }
  throw new Error(`Tab never reached "${name}"; it went through: ${seen.join(' → ')}`);
}

async function settled(page) {
  await page.locator('main[aria-busy="false"]').waitFor({ timeout: 30_000 });
}

h.suite('components', {}, (s) => {
  test('keyboard only: create a passkey, rename it, unlock premium and sign out', h.TEST, async () => {
    const { context, page } = await h.newDevice(s.browser);
    try {
      await page.goto(s.server.origin);
      await h.expectSignInPrompt(page);

      await tabTo(page, 'Username');
      await page.keyboard.type('kira');
      await tabTo(page, 'Create passkey');
      await page.keyboard.press('Enter');
      await h.expectText(page, 'Signed in as kira');
      await settled(page);
      // Focus lands on the result, which a screen reader reads out.
      assert.equal(await focused(page), h.sentence('done.register', { username: 'kira' }));
      // Signed in: nothing offers to create an account or sign in again.
      assert.equal(await page.getByRole('button', { name: 'Create passkey' }).count(), 0);
      assert.equal(await page.getByRole('button', { name: 'Sign in with passkey' }).count(), 0);

      const list = page.getByRole('list', { name: 'Your passkeys' });
      const name = (await list.getByRole('listitem').first().locator('.passkey-name').textContent()).trim();
      await tabTo(page, `New name for ${name}`);
      await page.keyboard.press('ControlOrMeta+A');
      await page.keyboard.type('Kira laptop');
      await page.keyboard.press('Enter');
      await h.expectText(page, 'Renamed to Kira laptop.');
      await list.getByText('Kira laptop', { exact: true }).waitFor();

      await h.expectLocked(page, 'missing entitlement');
      await s.server.admin('grant', 'kira', 'premium');
      await tabTo(page, 'Check again');
      await page.keyboard.press('Space');
      await h.expectVerdict(page, 'Premium unlocked');

      const logout = page.waitForResponse((r) => new URL(r.url()).pathname === '/api/logout');
      await tabTo(page, 'Sign out');
      await page.keyboard.press('Enter');
      assert.equal((await logout).status(), 204);
    } finally {
      await context.close();
    }
  });

  test('a pending passkey prompt shows progress and Cancel ends it, changing nothing', h.TEST, async () => {
    // An authenticator that waits for a touch that never comes (a security key left in a
    // drawer, a phone that never answers): the prompt stays pending until cancelled. (With no
    // authenticator at all, headless Chromium puts up its own prompt, which takes the page's
    // input as a real browser's dialog would; there the browser's Cancel is the way out.)
    const context = await s.browser.newContext();
    const page = await context.newPage();
    const cdp = await context.newCDPSession(page);
    await cdp.send('WebAuthn.enable');
    await cdp.send('WebAuthn.addVirtualAuthenticator', {
      options: {
        protocol: 'ctap2',
        transport: 'usb',
        hasResidentKey: true,
        hasUserVerification: true,
        isUserVerified: true,
        automaticPresenceSimulation: false,
      },
    });
    try {
      await page.goto(s.server.origin);
      await page.getByRole('textbox', { name: 'Username' }).fill('nora');
      const started = page.waitForResponse((r) => new URL(r.url()).pathname === '/api/register/start');
      await page.getByRole('button', { name: 'Create passkey' }).click();
      assert.equal((await started).status(), 200);
      // The browser's prompt is up now (create() is pending).
      await page.evaluate(() => new Promise((r) => setTimeout(r, 100)));
      await h.expectText(page, `${h.sentence('progress.register')} ${h.sentence('progress.hint')}`);
      assert.equal(await page.locator('main').getAttribute('aria-busy'), 'true');
      assert.equal(await focused(page), 'Cancel', 'the one thing to do now has focus');
      await page.keyboard.press('Enter');
      await h.expectText(page, h.sentence('done.cancelled'));
      await settled(page);
      assert.equal(await page.getByRole('button', { name: 'Create passkey' }).isEnabled(), true);
      assert.equal(await page.getByRole('button', { name: 'Cancel' }).count(), 0, 'no Cancel once nothing is pending');
      assert.equal(await page.evaluate(async () => (await fetch('/api/me')).status), 401, 'no account was made');
    } finally {
      await context.close();
    }
  });

  test('a wrong username at sign-in says no passkey answered, not "cancelled"', h.TEST, async () => {
    const { context, page } = await h.newDevice(s.browser);
    try {
      await page.goto(s.server.origin);
      await page.getByRole('textbox', { name: 'Username' }).fill('nobody');
      await page.getByRole('button', { name: 'Sign in with passkey' }).click();
      await settled(page);
      const alert = page.getByRole('alert');
      await alert.getByText(h.sentence('no-passkey', { username: 'nobody' }), { exact: true }).waitFor();
      assert.doesNotMatch(await alert.textContent(), /cancelled|timed out/);
    } finally {
      await context.close();
    }
  });

  test('messages: an app replaces the sentences (to translate them), reason codes stay', h.TEST, async () => {
    const { context, page } = await h.newDevice(s.browser);
    try {
      await page.goto(s.server.origin);
      await h.expectSignInPrompt(page);
      await page.evaluate(async () => {
        const { configure } = await import('/latchkey-elements.js');
        configure({ messages: { 'signed out': 'Melde dich mit einem Passkey an.', 'connection.online': 'Verbunden' } });
      });
      await h.premiumArea(page).getByText('Melde dich mit einem Passkey an.', { exact: true }).waitFor();
      await h.premiumArea(page).getByText('Verbunden', { exact: true }).waitFor();
      assert.equal(await page.locator('latchkey-gate').getAttribute('state'), 'signed-out');
    } finally {
      await context.close();
    }
  });
});
