// A user made by the business's server with an API key (POST /api/admin/users) adds their
// first passkey in the browser with `latchkey.enroll(code)`, and the code works only once.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as h from './harness.mjs';

const skip = h.missingPrerequisite();

describe('enrollment', { skip: skip ?? false, timeout: 300_000 }, () => {
  let server;
  let browser;
  before(async () => {
    server = await h.startServer();
    browser = await h.launchBrowser();
  });
  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  test('latchkey.enroll adds the first passkey of a user made with an API key, once', h.TEST, async () => {
    const key = await new Promise((resolve, reject) =>
      execFile(h.BIN, ['apikey', 'create', 'crm', '--scope', 'users:write'], { env: server.env }, (error, stdout, stderr) =>
        error ? reject(new Error(stderr)) : resolve(stdout.split('\n').find((l) => l.startsWith('lk_'))),
      ),
    );
    const base = server.origin.replace('//localhost:', '//127.0.0.1:');
    const made = await fetch(`${base}/api/admin/users`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ username: 'quinn', external_id: 'crm-quinn' }),
    });
    assert.equal(made.status, 201);
    const { user, enrollment } = await made.json();

    const { context, page } = await h.newDevice(browser);
    try {
      await page.goto(`${server.origin}/healthz`);
      const result = await page.evaluate(async (code) => {
        const { createLatchkey } = await import('/latchkey.js');
        const latchkey = createLatchkey();
        const first = await latchkey.enroll(code);
        const me = await (await fetch('/api/me')).json();
        let again = null;
        try {
          await latchkey.enroll(code);
        } catch (error) {
          again = error.message;
        }
        return { first, me, again };
      }, enrollment.code);
      assert.equal(result.first.user_id, user.id);
      assert.equal(result.me.username, 'quinn');
      assert.equal(result.me.passkeys.length, 1);
      assert.match(result.again, /enrollment code is unknown, already used or expired/);
    } finally {
      await context.close();
    }
  });
});
