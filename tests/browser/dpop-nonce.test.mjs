// A service that requires server-issued DPoP nonces (RFC 9449 §8): the client retries once
// with the nonce for both the license request and the premium API call.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as h from './harness.mjs';


h.suite('DPoP nonce', { LATCHKEY_DPOP_NONCE: 'true' }, (s) => {

  test('license and premium API calls succeed after one use-dpop-nonce answer', h.TEST, async () => {
    const { context, page } = await h.newDevice(s.browser);
    const statuses = [];
    page.on('response', (r) => {
      const path = new URL(r.url()).pathname;
      if (path === '/api/licenses' || path === '/api/premium/example') statuses.push(`${r.request().method()} ${path} ${r.status()}`);
    });
    try {
      await h.premiumUser(page, s.server, 'nina');
      await h.clickAndSettle(page, 'Call premium API');
      assert.match(await page.getByRole('status', { name: 'Premium API' }).textContent(), /^Premium API says: /);
      // The very first proof had no nonce; every later one reuses the last nonce it was given.
      assert.match(statuses[0], /^POST \/api\/licenses (400|401)$/);
      assert.ok(statuses.includes('POST /api/licenses 201'));
      assert.equal(statuses.at(-1), 'GET /api/premium/example 200');
    } finally {
      await context.close();
    }
  });
});
