// Browser-test harness: runs the real `latchkey` binary on a free port with a fresh data
// directory, drives Chromium (playwright-core, system /usr/bin/chromium) with a virtual
// WebAuthn authenticator per page, and offers the few helpers the tests share.

import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe } from 'node:test';
import { chromium } from 'playwright-core';
import { MESSAGES } from '../../static/latchkey-messages.js';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const BIN = process.env.LATCHKEY_BIN ?? join(ROOT, 'target/debug/latchkey');
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** Per-test timeout for node:test. */
export const TEST = { timeout: 90_000 };

/**
 * Why the suite cannot run here, or null. On CI a missing prerequisite is an error, not a skip.
 * @returns {string | null}
 */
export function missingPrerequisite() {
  let why = null;
  if (!existsSync(BIN)) why = `${BIN} is not built (cargo build first)`;
  else if (!existsSync(CHROMIUM)) why = `${CHROMIUM} is missing (apt-get install chromium)`;
  if (why && process.env.CI) throw new Error(why);
  return why;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/**
 * Starts `latchkey serve` and waits until /readyz answers.
 * @returns {Promise<Server>}
 *
 * @typedef {object} Server
 * @property {string} origin LATCHKEY_ORIGIN: http://localhost:PORT unless given (an IP address
 *   is not a valid RP ID)
 * @property {number} port where it listens on 127.0.0.1
 * @property {string} base LATCHKEY_BASE_PATH ('' unless given)
 * @property {(...args: string[]) => Promise<string>} admin runs `latchkey admin ARGS` on the same data
 * @property {() => string} logs what the server printed so far
 * @property {() => Promise<void>} stop
 */
export async function startServer(extraEnv = {}) {
  const port = await freePort();
  const dataDir = await mkdtemp(join(tmpdir(), 'latchkey-e2e-'));
  const env = {
    ...process.env,
    LATCHKEY_LISTEN: `127.0.0.1:${port}`,
    LATCHKEY_ORIGIN: `http://localhost:${port}`,
    LATCHKEY_DATA_DIR: dataDir,
    LATCHKEY_STATIC_DIR: join(ROOT, 'static'),
    LATCHKEY_CACHE_REFRESH: '1s',
    LATCHKEY_LOG: 'warn',
    LATCHKEY_METRICS_LISTEN: 'off',
    ...extraEnv,
  };
  let output = '';
  const child = spawn(BIN, ['serve'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  const exited = once(child, 'exit');
  const base = env.LATCHKEY_BASE_PATH ?? '';

  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`latchkey serve exited with ${child.exitCode}:\n${output}`);
    try {
      const res = await fetch(`http://127.0.0.1:${port}${base}/readyz`);
      if (res.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`latchkey serve was not ready within 30 s:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }

  return {
    origin: env.LATCHKEY_ORIGIN,
    port,
    base,
    env,
    logs: () => output,
    admin: (...args) =>
      new Promise((resolve, reject) => {
        execFile(BIN, ['admin', ...args], { env, timeout: 30_000 }, (error, stdout, stderr) => {
          if (error) reject(new Error(`latchkey admin ${args.join(' ')} failed: ${stderr || error.message}`));
          else resolve(stdout);
        });
      }),
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
        await exited;
        clearTimeout(timer);
      }
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** Chromium; `home` gives it another HOME (where it reads its NSS certificate store). */
export function launchBrowser({ home } = {}) {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    env: home ? { ...process.env, HOME: home } : undefined,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/**
 * A fresh browser context (its own IndexedDB, cookies and service worker: a "device") with
 * one page and a virtual platform authenticator on it.
 * @param {import('playwright-core').Browser} browser
 */
export async function newDevice(browser) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const authenticator = await addAuthenticator(context, page);
  return { context, page, ...authenticator };
}

/** Adds a virtual authenticator to one page (it belongs to that page and survives reloads). */
export async function addAuthenticator(context, page) {
  const cdp = await context.newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2',
      transport: 'internal',
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified: true,
      automaticPresenceSimulation: true,
    },
  });
  return { cdp, authenticatorId };
}

/** CDP's standard base64 to base64url. */
export const toB64url = (b64) => b64.replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');

export async function credentialsOn(cdp, authenticatorId) {
  return (await cdp.send('WebAuthn.getCredentials', { authenticatorId })).credentials;
}

// ------------------------------------------------------------------------------ page helpers

/** The premium gate's summary (a live region named after the entitlement). */
export const premiumArea = (page) => page.getByRole('status', { name: 'Premium', exact: true });

/** The sentence a person reads for a reason code (the default English messages). */
export const sentence = (key, context = {}) => {
  const m = MESSAGES[key];
  return typeof m === 'function' ? m(context) : m;
};

/** What the page shows in its alerts and status lines, for failure messages. */
async function shownMessages(page) {
  return page
    .locator('[role="alert"]:not([hidden]), [role="status"]')
    .allTextContents()
    .then((all) => all.map((t) => t.trim()).filter(Boolean).join(' | '))
    .catch(() => '(no page)');
}

/** Waits until the premium verdict reads exactly `text`. */
export async function expectVerdict(page, text, timeout = 15_000) {
  try {
    await premiumArea(page).getByText(text, { exact: true }).waitFor({ timeout });
  } catch (error) {
    throw new Error(`expected verdict "${text}", page shows: ${await shownMessages(page)}`, { cause: error });
  }
}

/**
 * Waits until the premium gate is locked for `reason` (its reason code) and shows that
 * reason's sentence, with its content hidden.
 */
export async function expectLocked(page, reason, timeout = 15_000) {
  try {
    await page.locator(`latchkey-gate[state="locked"][reason="${reason}"]`).waitFor({ state: 'attached', timeout });
    await premiumArea(page).getByText(sentence(reason), { exact: true }).waitFor({ timeout: 2_000 });
    await premiumArea(page).getByText('Premium locked', { exact: true }).waitFor({ timeout: 2_000 });
  } catch (error) {
    throw new Error(`expected a lock for "${reason}", page shows: ${await shownMessages(page)}`, { cause: error });
  }
  if (await page.locator('latchkey-gate .premium-content').isVisible()) throw new Error('premium content is visible while locked');
}

/** A first visit (no account, no license): a next step, not a lock. */
export async function expectSignInPrompt(page, timeout = 15_000) {
  try {
    await page.locator('latchkey-gate[state="signed-out"]').waitFor({ state: 'attached', timeout });
    await premiumArea(page).getByText('Sign in to use Premium', { exact: true }).waitFor({ timeout: 2_000 });
    await premiumArea(page).getByText(sentence('signed out'), { exact: true }).waitFor({ timeout: 2_000 });
  } catch (error) {
    throw new Error(`expected the sign-in prompt, page shows: ${await shownMessages(page)}`, { cause: error });
  }
}

/**
 * Nobody is signed in on the page: the sign-in form is offered (the Username field), and no
 * "Signed in as …" nor "Sign out" is shown.
 */
export async function expectSignedOut(page, timeout = 15_000) {
  try {
    await page.getByRole('textbox', { name: 'Username' }).waitFor({ timeout });
    await page.getByText(/^Signed in as /).first().waitFor({ state: 'hidden', timeout });
    await page.getByRole('button', { name: 'Sign out', exact: true }).first().waitFor({ state: 'hidden', timeout });
  } catch (error) {
    throw new Error(`expected nobody signed in, page shows: ${await shownMessages(page)}`, { cause: error });
  }
}

/** Fetches a new license now, through the page's shared client (what a sync does when one is due). */
export async function fetchLicenseNow(page) {
  await page.evaluate(async () => {
    const { client } = await import('/latchkey-elements.js');
    await client().fetchLicense();
  });
}

/** Waits for any text on the page, failing with what the page shows instead. */
export async function expectText(page, text, timeout = 15_000) {
  try {
    await page.getByText(text, { exact: true }).first().waitFor({ timeout });
  } catch (error) {
    throw new Error(`expected "${text}"; page shows: ${await shownMessages(page)}`, { cause: error });
  }
}

/**
 * Playwright's offline emulation does not reach a document loaded while offline: its
 * navigator.onLine reads true (BROWSER-TESTS.md). Saying it again over the page's own CDP
 * session does, as a real offline browser would (an 'offline' event, navigator.onLine false).
 * `offline: false` undoes it (call it before context.setOffline(false)).
 */
export async function emulateOffline(cdp, offline = true) {
  await cdp.send('Network.emulateNetworkConditions', { offline, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
}

export async function waitForServiceWorker(page) {
  await page.evaluate(async () => {
    await navigator.serviceWorker.ready;
    if (!navigator.serviceWorker.controller) {
      await new Promise((resolve) => navigator.serviceWorker.addEventListener('controllerchange', resolve, { once: true }));
    }
  });
}

/** Clicks a button and waits until the action it started has finished. */
export async function clickAndSettle(page, name) {
  await page.getByRole('button', { name, exact: true }).click();
  await page.locator('main[aria-busy="false"]').waitFor({ timeout: 30_000 });
}

/** Creates a passkey for `username` through the page and waits until signed in. */
export async function register(page, username) {
  await page.getByRole('textbox', { name: 'Username' }).fill(username);
  await page.getByRole('button', { name: 'Create passkey' }).click();
  await expectText(page, `Signed in as ${username}`);
}

/**
 * The main path: create a passkey (which signs in and fetches a license without
 * premium), grant premium with the CLI, press "Check again" (one sync: the license is
 * replaced by one with premium), and wait for "Premium unlocked" and for the service worker to
 * control the page (so that the page can go offline right after).
 */
export async function premiumUser(page, server, username, { serviceWorker = true } = {}) {
  await page.goto(server.origin);
  await register(page, username);
  await expectLocked(page, 'missing entitlement');
  await server.admin('grant', username, 'premium');
  await clickAndSettle(page, 'Check again');
  await expectVerdict(page, 'Premium unlocked');
  if (serviceWorker) await waitForServiceWorker(page);
}

/** Reads one value of the client's IndexedDB `kv` store (a copy: CryptoKeys do not cross over). */
export function readKv(page, key) {
  return page.evaluate(
    (key) =>
      new Promise((resolve, reject) => {
        const open = indexedDB.open('latchkey', 1);
        open.onupgradeneeded = () => open.result.createObjectStore('kv');
        open.onerror = () => reject(open.error);
        open.onsuccess = () => {
          const req = open.result.transaction('kv').objectStore('kv').get(key);
          req.onsuccess = () => {
            open.result.close();
            const v = req.result;
            // CryptoKeys cannot leave the page; keep the rest of the record.
            if (v && typeof v === 'object' && 'privateKey' in v) resolve({ ...v, privateKey: null, publicKey: null });
            else resolve(v);
          };
          req.onerror = () => reject(req.error);
        };
      }),
    key,
  );
}

/** Writes (or, with null, deletes) values of the client's IndexedDB `kv` store. */
export function writeKv(page, entries) {
  return page.evaluate(
    (entries) =>
      new Promise((resolve, reject) => {
        const open = indexedDB.open('latchkey', 1);
        open.onupgradeneeded = () => open.result.createObjectStore('kv');
        open.onerror = () => reject(open.error);
        open.onsuccess = () => {
          const tx = open.result.transaction('kv', 'readwrite');
          for (const [k, v] of Object.entries(entries)) {
            if (v === null) tx.objectStore('kv').delete(k);
            else tx.objectStore('kv').put(v, k);
          }
          tx.oncomplete = () => {
            open.result.close();
            resolve();
          };
          tx.onerror = () => reject(tx.error);
        };
      }),
    entries,
  );
}

/** The stored license of the current user: `{sub, token, claims}`. */
export async function storedLicense(page) {
  const sub = await readKv(page, 'current');
  const record = sub ? await readKv(page, `license:${sub}`) : null;
  if (!record) return null;
  const payload = record.token.split('.')[1];
  const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
  return { sub, token: record.token, claims };
}

/**
 * A suite of browser tests sharing one server (started with `env`) and one browser,
 * both closed after its last test; skipped, or on CI failed, when a prerequisite is
 * missing. `body` registers the tests and reads `s.server` and `s.browser` in them.
 * @param {string} name
 * @param {Record<string, string>} env
 * @param {(s: {server: Server, browser: import('playwright-core').Browser}) => void} body
 */
export function suite(name, env, body) {
  const skip = missingPrerequisite();
  describe(name, { skip: skip ?? false, timeout: 300_000 }, () => {
    const s = /** @type {any} */ ({});
    before(async () => {
      s.server = await startServer(env);
      s.browser = await launchBrowser();
    });
    after(async () => {
      await s.browser?.close();
      await s.server?.stop();
    });
    body(s);
  });
}
