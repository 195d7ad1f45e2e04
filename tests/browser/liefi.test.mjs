// The PWA on a bad connection: a service that accepts connections and never answers (lie-fi:
// captive portals, one bar of signal), one that answers with server errors, and the words the
// page uses for each. The service sits behind a small TCP relay the test can switch.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import * as h from './harness.mjs';

const skip = h.missingPrerequisite();

/**
 * A TCP relay on a free port in front of `target`: 'pass' relays, 'hang' accepts and never
 * answers (and drops the connections it was relaying), 'refuse' closes every connection at once
 * (a stopped server), 'error' answers every request 503.
 */
async function startRelay() {
  const sockets = new Set();
  let mode = 'pass';
  let target = 0;
  const server = net.createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => {});
    if (mode === 'hang') return; // accepted, never answered
    if (mode === 'refuse') {
      client.destroy(); // as good as a stopped server
      return;
    }
    if (mode === 'error') {
      client.once('data', () =>
        client.end('HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 4\r\nconnection: close\r\n\r\ndown'),
      );
      return;
    }
    const upstream = net.connect(target, '127.0.0.1');
    sockets.add(upstream);
    upstream.on('close', () => sockets.delete(upstream));
    upstream.on('error', () => client.destroy());
    client.pipe(upstream).pipe(client);
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    // Both stacks: Chromium may try ::1 first for localhost.
    server.listen({ port: 0, host: '::', ipv6Only: false }, resolve);
  });
  return {
    port: server.address().port,
    set target(port) {
      target = port;
    },
    /** @param {'pass' | 'hang' | 'refuse' | 'error'} next */
    set(next) {
      mode = next;
      for (const s of sockets) s.destroy();
      sockets.clear();
    },
    stop: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(resolve);
      }),
  };
}

describe('lie-fi', { skip: skip ?? false, timeout: 300_000 }, () => {
  let relay;
  let server;
  let browser;
  before(async () => {
    relay = await startRelay();
    server = await h.startServer({ LATCHKEY_ORIGIN: `http://localhost:${relay.port}` });
    relay.target = server.port;
    browser = await h.launchBrowser();
  });
  after(async () => {
    await browser?.close();
    await relay?.stop();
    await server?.stop();
  });

  test('launch under lie-fi: the cached shell and the verdict within 5 s, and the page says the service is unreachable', h.TEST, async () => {
    relay.set('pass');
    const { context, page } = await h.newDevice(browser);
    try {
      await h.premiumUser(page, server, 'lena');
      // Every file of the shell has been through the service worker at least once.
      await page.reload();
      await h.expectVerdict(page, 'Premium unlocked');

      relay.set('hang');
      // Launch the installed app again: a new window of the same profile.
      const launch = await context.newPage();
      const launched = Date.now();
      const response = await launch.goto(server.origin, { timeout: 5_000 });
      assert.equal(response.fromServiceWorker(), true, 'the shell came from the service worker');
      // The bound: a person sees their verdict within 5 s of launching.
      await h.expectVerdict(launch, 'Premium unlocked', Math.max(0, 5_000 - (Date.now() - launched)));
      await h.expectText(launch, 'Service unreachable');
      await h.expectText(launch, h.sentence('connection.unreachable.sentence'));
      assert.equal(await launch.evaluate(() => navigator.onLine), true, 'the browser itself says online');
      // The request that hangs is really hanging: the client gives up on it by itself.
      const hung = await launch.evaluate(async () => {
        const { createLatchkey } = await import('/latchkey.js');
        try {
          await createLatchkey({ timeout: 300 }).me();
          return 'answered';
        } catch (error) {
          return `${error.code}: ${error.message}`;
        }
      });
      assert.equal(hung, `unreachable: ${h.sentence('unreachable')}`);
      await launch.close();
    } finally {
      relay.set('pass');
      await context.close();
    }
  });

  test('a stopped service: the badge and the sentence both say unreachable, not offline', h.TEST, async () => {
    relay.set('pass');
    const { context, page } = await h.newDevice(browser);
    try {
      await h.premiumUser(page, server, 'stan');
      relay.set('refuse');
      await page.reload();
      await h.expectVerdict(page, 'Premium unlocked');
      await h.expectText(page, 'Service unreachable');
      await h.expectText(page, h.sentence('connection.unreachable.sentence'));
      assert.equal(await page.getByText('Online', { exact: true }).count(), 0);
      assert.equal(await page.getByText('Offline', { exact: true }).count(), 0);
    } finally {
      relay.set('pass');
      await context.close();
    }
  });

  test('a service answering with errors: the page says the service answered with an error', h.TEST, async () => {
    relay.set('pass');
    const { context, page } = await h.newDevice(browser);
    try {
      await h.premiumUser(page, server, 'ezra');
      relay.set('error');
      await page.reload();
      await h.expectVerdict(page, 'Premium unlocked');
      await h.expectText(page, 'Service error');
      await h.expectText(page, h.sentence('connection.error.sentence'));
      // Back to normal: the next sync says so.
      relay.set('pass');
      await page.reload();
      await h.expectText(page, 'Online');
    } finally {
      relay.set('pass');
      await context.close();
    }
  });
});
