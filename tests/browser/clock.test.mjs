// Clock games against the offline license: the device clock is faked with page.clock (which
// survives reloads and works on a service-worker-served page).

import { test } from 'node:test';
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
});
