// Clock games against the offline license: the device clock is faked with page.clock (which
// survives reloads and works on a service-worker-served page).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as h from './harness.mjs';

const HOUR = 3600 * 1000;

h.suite('device clock', {}, (s) => {

  async function offlinePremiumDevice(username) {
    const device = await h.newDevice(s.browser);
    await device.page.clock.install({ time: new Date() });
    await h.premiumUser(device.page, s.server, username);
    await device.context.setOffline(true);
    await device.page.reload();
    await h.expectVerdict(device.page, 'Premium unlocked');
    return device;
  }

  test('clock moved back past the trusted-time mark: locked', h.TEST, async () => {
    const { context, page } = await offlinePremiumDevice('ben');
    try {
      await page.clock.setFixedTime(new Date(Date.now() - 2 * HOUR));
      await page.reload();
      await h.expectLocked(page, 'clock moved back');
      // Putting the clock right again unlocks.
      await page.clock.setFixedTime(new Date());
      await page.reload();
      await h.expectVerdict(page, 'Premium unlocked');
    } finally {
      await context.close();
    }
  });

  test('clock moved forward past the license expiry: expired', h.TEST, async () => {
    const { context, page } = await offlinePremiumDevice('eve');
    try {
      const { claims } = await h.storedLicense(page);
      await page.clock.setFixedTime(new Date((claims.exp + 120) * 1000));
      await page.reload();
      await h.expectLocked(page, 'expired');
    } finally {
      await context.close();
    }
  });

  test('a blocked status list: the page says so, and the license locks at the check-in limit', h.TEST, async () => {
    const { context, page } = await h.newDevice(s.browser);
    try {
      await page.clock.install({ time: new Date() });
      await h.premiumUser(page, s.server, 'cleo');
      const { claims } = await h.storedLicense(page);
      assert.equal(claims.chk, 7 * 24 * 3600);
      // An ad-block rule: the status list never comes from the network; the service worker
      // still has its old copy, which is no check-in.
      await context.route('**/api/status-lists/**', (route) => route.abort());
      await page.reload();
      await h.expectText(page, 'Online, but the revocation list could not be loaded');
      await h.expectVerdict(page, 'Premium unlocked');
      await page.clock.setFixedTime(new Date((claims.iat + 7 * 24 * 3600 + 3600) * 1000));
      await page.reload();
      await h.expectLocked(page, 'check-in required');
      await h.expectText(page, 'Online, but the revocation list could not be loaded');
    } finally {
      await context.close();
    }
  });
});
