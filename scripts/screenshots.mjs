#!/usr/bin/env node
// Takes the screenshots in docs/screenshots/: the demo PWA and the admin page, at desktop
// (1280 x 800) and phone (390 x 844) size, against a fresh service with a little data.
// Needs a debug build (cargo build), Chromium and npm ci, as the browser tests do.
// Usage: node scripts/screenshots.mjs
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import * as h from '../tests/browser/harness.mjs';

const OUT = join(h.ROOT, 'docs', 'screenshots');
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };

const missing = h.missingPrerequisite();
if (missing) {
  console.error(`cannot take screenshots: ${missing}`);
  process.exit(1);
}
await mkdir(OUT, { recursive: true });
const server = await h.startServer();
const browser = await h.launchBrowser();
try {
  // A customer with premium, shown on the demo page at both sizes.
  for (const [size, viewport, username] of [['desktop', DESKTOP, 'alice'], ['phone', PHONE, 'bob']]) {
    const context = await browser.newContext({ viewport });
    const page = await context.newPage();
    await h.addAuthenticator(context, page);
    await h.premiumUser(page, server, username);
    await page.screenshot({ path: join(OUT, `demo-${size}.png`), fullPage: true });
    await context.close();
  }

  // An administrator looking at alice.
  for (const [size, viewport, username] of [['desktop', DESKTOP, 'ada'], ['phone', PHONE, 'ike']]) {
    const context = await browser.newContext({ viewport });
    const page = await context.newPage();
    await h.addAuthenticator(context, page);
    await page.goto(server.origin);
    await h.register(page, username);
    await server.admin('promote', username);
    // Signed in by the demo page already: the admin page opens on the console.
    await page.goto(`${server.origin}/admin`);
    await page.getByRole('heading', { name: 'Overview', exact: true }).waitFor({ timeout: 15_000 });
    await page.screenshot({ path: join(OUT, `admin-${size}.png`) });
    await page.getByRole('searchbox', { name: 'Search users' }).fill('alice');
    await page.getByRole('button', { name: 'Search', exact: true }).click();
    await page.getByRole('link', { name: 'alice', exact: true }).click();
    const heading = page.getByRole('heading', { name: 'User alice', exact: true });
    await heading.waitFor({ timeout: 15_000 });
    await heading.scrollIntoViewIfNeeded();
    await page.locator('#detail').screenshot({ path: join(OUT, `admin-user-${size}.png`) });
    await context.close();
  }
  console.log(`screenshots written to ${OUT}`);
} finally {
  await browser.close();
  await server.stop();
}
