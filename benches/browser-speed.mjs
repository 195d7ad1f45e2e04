// Benchmark, not a test (no timed assertions): `node --test benches/browser-speed.mjs`.
// How long the offline decision takes in Chromium: one check() (p50 over 1,000 calls, real
// clock: page.clock would fake performance.now) and an offline page load up to the verdict.

import { test } from 'node:test';
import * as h from '../tests/browser/harness.mjs';


h.suite('speed', {}, (s) => {

  test('offline check() and offline load to verdict', h.TEST, async (t) => {
    const { context, page } = await h.newDevice(s.browser);
    try {
      await h.premiumUser(page, s.server, 'quentin');
      await context.setOffline(true);
      await page.reload();
      await h.expectVerdict(page, 'Premium unlocked');

      const timings = await page.evaluate(async () => {
        const { createLatchkey } = await import('/latchkey.js');
        const latchkey = createLatchkey();
        for (let i = 0; i < 50; i++) await latchkey.check('premium');
        const samples = [];
        for (let i = 0; i < 1000; i++) {
          const t0 = performance.now();
          const verdict = await latchkey.check('premium');
          samples.push(performance.now() - t0);
          if (!verdict.ok) throw new Error(`check failed: ${verdict.reason}`);
        }
        samples.sort((a, b) => a - b);
        return { p50: samples[499], p95: samples[949], max: samples[999] };
      });

      const loads = [];
      for (let i = 0; i < 5; i++) {
        const t0 = Date.now();
        await page.reload();
        await h.expectVerdict(page, 'Premium unlocked');
        const wall = Date.now() - t0;
        const mark = await page.evaluate(() => performance.getEntriesByName('latchkey:verdict')[0]?.startTime ?? null);
        loads.push({ wall, mark });
      }
      const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
      const report = {
        checkP50ms: +timings.p50.toFixed(3),
        checkP95ms: +timings.p95.toFixed(3),
        checkMaxMs: +timings.max.toFixed(3),
        offlineLoadToVerdictMs: +median(loads.map((l) => l.mark)).toFixed(1),
        offlineReloadWallMs: median(loads.map((l) => l.wall)),
      };
      t.diagnostic(JSON.stringify(report));
      console.log('latchkey speed', report);
    } finally {
      await context.close();
    }
  });
});
