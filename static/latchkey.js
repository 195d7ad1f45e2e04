// Latchkey client: passkey sign-in and device-bound offline licenses for a PWA.
//
//   import { createLatchkey } from 'https://latchkey.example/latchkey.js';
//   const latchkey = createLatchkey();
//   latchkey.startAutoSync();
//   const verdict = await latchkey.check('premium'); // {ok, reason, message, expiresAt, connection}
//
// Trust: the signing keys come from the pinned-keys manifest (`latchkey-keys.json`, kept by the
// service worker with the app's code) and from `trustedKeys`; a JWK set read from storage is
// used only for keys pinned there, and a set fetched from the service origin is trusted for
// this page's life. Every request has a timeout and takes an AbortSignal; check() never waits
// for the network.
//
// Storage: one IndexedDB database (`dbName`), object store `kv`:
//   device              {alg, privateKey, publicKey, publicJwk, jkt}  (private key NON-extractable)
//   jwks                {keys, fetchedAt}       (last set fetched; trusted only for pinned keys)
//   current             user id whose license is checked
//   account             {user_id, username}                        (for display only)
//   license:<sub>       {token, storedAt}                          (newest license only)
//   newest-iat:<sub>    newest iat ever stored for that user       (older licenses are refused)
//   status:<uri>        {token, iat, fetchedAt}                    (status list per URI)
//   hwm                 trusted-time high-water mark, seconds
//
// Nothing stored is trusted: `check()` verifies every piece again on every call.

import {
  REASONS,
  acceptJwks,
  b64urlDecode,
  b64urlEncode,
  claimTypeProblem,
  createDpopProof,
  evaluateLicense,
  generateDeviceKey,
  jwkThumbprint,
  peekPayload,
  randomBytes,
  verifyAssertion,
  verifyJws,
} from './latchkey-core.js';
import { renderMessage } from './latchkey-messages.js';

export * from './latchkey-core.js';
export { MESSAGES, renderMessage } from './latchkey-messages.js';

/** Problem type for a passkey the service does not know (or no longer accepts). */
export const UNKNOWN_CREDENTIAL = 'urn:latchkey:problem:unknown-credential';
/** Problem type: the change needs a fresh passkey confirmation (step-up). */
export const STEP_UP_REQUIRED = 'urn:latchkey:problem:step-up-required';
const USE_DPOP_NONCE = 'urn:latchkey:problem:use-dpop-nonce';
const CACHE_MARK = 'x-latchkey-cache'; // set by sw.js on responses served from its cache
/** Default time a request may take before the service counts as unreachable, ms. */
export const REQUEST_TIMEOUT_MS = 10_000;
/** Default time the pinned-keys manifest may take (check() waits at most this once), ms. */
export const PINS_TIMEOUT_MS = 3_000;

/**
 * An error worth showing to a person: `message` is plain language (the problem's `detail`
 * or `title` when the service sent one).
 */
export class LatchkeyError extends Error {
  /**
   * @param {string} message
   * @param {{status?: number, type?: string, title?: string, code?: string, problem?: any, cause?: unknown}} [info]
   */
  constructor(message, info = {}) {
    super(message, info.cause === undefined ? undefined : { cause: info.cause });
    this.name = 'LatchkeyError';
    /** HTTP status, when the service answered */
    this.status = info.status ?? null;
    /** problem `type` URI, when the service sent one */
    this.type = info.type ?? null;
    this.title = info.title ?? null;
    /**
     * 'offline' | 'unreachable' | 'service-error' | 'cancelled' | 'no-passkey' | 'storage' |
     * 'older license' | null
     */
    this.code = info.code ?? null;
    /** the whole problem document */
    this.problem = info.problem ?? null;
  }
}

/**
 * @typedef {object} LatchkeyOptions
 * @property {string} [origin] the Latchkey service origin (default: this page's origin)
 * @property {string} [base] the path Latchkey is served under on that origin, e.g. '/auth'
 *   (LATCHKEY_BASE_PATH; default '': the root)
 * @property {string} [audience] expected license `aud` (default: origin)
 * @property {string} [issuer] expected license `iss` (default: origin)
 * @property {string} [rpId] WebAuthn RP ID (default: this page's hostname)
 * @property {'allow' | 'lock'} [staleStatus] when the cached status list is stale or missing:
 *   'allow' honours the license, 'lock' refuses with "status unknown". Either way a license
 *   with a `chk` claim locks with "check-in required" once the newest status list held (by
 *   its signed `iat`, never the time it was read or a cache served it) is older than `chk`
 * @property {string} [dbName] IndexedDB database name (default 'latchkey')
 * @property {typeof fetch} [fetch]
 * @property {number} [refreshAfter] seconds after which sync() replaces the license (default 3600)
 * @property {() => boolean | Promise<boolean>} [onStepUp] called before the passkey prompt
 *   when a change (adding or removing a passkey, signing out everywhere) needs a fresh
 *   confirmation; return false to cancel the change
 * @property {number} [timeout] ms a request may take (default REQUEST_TIMEOUT_MS); then the
 *   service counts as unreachable
 * @property {Array<string | {kid?: string, x: string}>} [trustedKeys] signing keys to trust
 *   whatever is stored: RFC 7638 thumbprints (the `kid`s of /.well-known/jwks.json) or public JWKs
 * @property {string | null} [keysUrl] the pinned-keys manifest (default
 *   origin + base + '/latchkey-keys.json'; keep it in the service worker's shell cache);
 *   null: trust only `trustedKeys` and what arrives from the service in this page's life
 * @property {import('./latchkey-messages.js').Messages} [messages] replaces any of MESSAGES
 *
 * @typedef {object} CheckResult
 * @property {boolean} ok
 * @property {string} message a sentence for a person: what happened and what to do next
 * @property {'online' | 'offline' | 'unreachable' | 'error' | 'unknown'} connection the last
 *   contact with the service: none yet, it answered, the browser is offline, it did not
 *   answer (timeout or connection failure while online), or it answered with an error
 * @property {boolean} signedIn whether an account is remembered on this device
 * @property {string | null} reason null when ok; otherwise one of
 *   "no license", "signature invalid", "expired", "not yet valid", "clock moved back",
 *   "revoked", "bound to another device", "older license", "missing entitlement",
 *   "status unknown" (and, for licenses made for something else, "wrong issuer",
 *   "wrong audience", "invalid license")
 * @property {string | null} detail the rule that failed, for developers
 * @property {Date | null} expiresAt license expiry (when the signature verified)
 * @property {boolean} offline whether the last contact with the service failed (offline or unreachable)
 * @property {string | null} username the license's `name`
 * @property {string[]} entitlements the license's `ent`
 *
 * @typedef {object} SyncReport
 * @property {boolean} online
 * @property {'online' | 'offline' | 'unreachable' | 'error' | 'unknown'} connection
 * @property {any | null} me the /api/me document when signed in
 * @property {'refreshed' | 'unchanged' | 'signed-out' | 'failed'} license
 * @property {'updated' | 'unchanged' | 'none' | 'failed'} status
 * @property {Error | null} error
 * @property {number} startedAt when the sync began (ms since the epoch): `me` is as of then
 * @property {boolean} [statusUnavailable] the service answered, the status list did not come
 */

/**
 * A base path as the service spells it: '' or '/segment[/segment…]', no trailing slash.
 * @param {string | undefined} value
 */
export function basePath(value) {
  if (value === undefined || value === null || value === '' || value === '/') return '';
  const text = String(value).replace(/\/+$/, '');
  if (!/^(\/[A-Za-z0-9._~-]+)+$/.test(text) || /\/\.{1,2}(\/|$)/.test(text)) {
    throw new TypeError(`base must be a path such as '/auth', got ${JSON.stringify(value)}`);
  }
  return text;
}

/**
 * Creates a Latchkey client bound to one service origin.
 * @param {LatchkeyOptions} [options]
 */
export function createLatchkey(options = {}) {
  const origin = new URL(options.origin ?? globalThis.location.origin).origin;
  const base = basePath(options.base);
  const audience = options.audience ?? origin;
  const issuer = options.issuer ?? origin;
  const rpId = options.rpId ?? globalThis.location.hostname;
  const staleStatus = options.staleStatus === 'lock' ? 'lock' : 'allow';
  const refreshAfter = options.refreshAfter ?? 3600;
  const fetchImpl = options.fetch ?? globalThis.fetch;
  const http = (url, init) => fetchImpl.call(globalThis, url, init);
  const kv = openStore(options.dbName ?? 'latchkey');
  const requestTimeout = options.timeout ?? REQUEST_TIMEOUT_MS;
  const keysUrl = options.keysUrl === null ? null : (options.keysUrl ?? `${origin}${base}/latchkey-keys.json`);
  const messages = options.messages;
  /** A sentence for a person, from `options.messages` or the defaults. */
  const say = (key, context, fallback) => renderMessage(messages, key, context, fallback);
  /** Tells components and the app what changed: 'sync', 'account', 'license', 'connection'. */
  const events = new EventTarget();
  const emit = (type, detail) => events.dispatchEvent(new CustomEvent(type, { detail }));

  /** @type {'online' | 'offline' | 'unreachable' | 'error' | 'unknown'} */
  let network = 'unknown';
  const setNetwork = (next) => {
    if (next === network) return;
    network = next;
    emit('connection', next);
  };
  /** Signing keys fetched from the service origin in this page's life (not from a cache). */
  let networkKeys = [];
  /** @type {Promise<{kids: Set<string>, keys: any[]}> | null} */
  let pinsLoading = null;
  let pinsLoaded = null;
  let dpopNonce = null;
  /** @type {AbortController | null} */
  let conditional = null;
  /** @type {Promise<void> | null} the autofill's start request, while it is under way */
  let autofillStarting = null;

  // ----------------------------------------------------------------------------- network

  /**
   * Runs a change that may need a fresh passkey confirmation: when the service asks for
   * one, `options.onStepUp` is told first (return false to cancel), the user confirms
   * with a passkey, and the change is tried once more.
   */
  async function withStepUp(change, { signal } = {}) {
    try {
      return await change();
    } catch (e) {
      if (!(e instanceof LatchkeyError && e.type === STEP_UP_REQUIRED)) throw e;
      if (options.onStepUp && (await options.onStepUp()) === false) {
        throw new LatchkeyError(say('step-up-cancelled'), { code: 'cancelled', status: e.status, type: e.type });
      }
      await api.stepUp({ signal });
      return change();
    }
  }

  /**
   * One request to the service, never longer than `timeout` ms. The caller's `signal` aborts
   * it (AbortError passes through); a timeout or a connection failure becomes a LatchkeyError
   * 'offline' (the browser says so) or 'unreachable' (it says online, nothing answered).
   * The response's `fromCache` says the service worker answered from its cache instead.
   */
  async function request(path, init = {}, { timeout = requestTimeout } = {}) {
    const url = path.startsWith('http') ? path : origin + base + path;
    const timer = new AbortController();
    const clock = setTimeout(() => timer.abort(new DOMException('The service did not answer in time.', 'TimeoutError')), timeout);
    const signal = init.signal ? anySignal([init.signal, timer.signal]) : timer.signal;
    // A sign-out made offline reaches the service before anything else uses the session.
    // Until it has, nothing that uses the session is sent.
    if (sessionApi(url) && !url.startsWith(`${origin}${base}/api/logout`) && !(await flushFirst(signal))) {
      clearTimeout(clock);
      const code = globalThis.navigator?.onLine === false ? 'offline' : 'unreachable';
      throw new LatchkeyError(say(code), { code });
    }
    // Requests that use the session go one at a time: the service saves the whole session
    // after each, so two at once could lose what the other wrote (a ceremony, say).
    const release = sessionApi(url) ? await takeTurn(signal) : () => {};
    let res;
    try {
      res = await (signal.aborted ? Promise.reject(signal.reason) : http(url, { credentials: 'include', ...init, signal }));
      release();
    } catch (e) {
      release();
      clearTimeout(clock);
      if (init.signal?.aborted) throw init.signal.reason ?? e;
      const offline = globalThis.navigator?.onLine === false;
      setNetwork(offline ? 'offline' : 'unreachable');
      const code = offline ? 'offline' : 'unreachable';
      throw new LatchkeyError(say(code), { code, cause: e });
    }
    // The body may still stall on a bad connection: the same timer ends it.
    const done = () => clearTimeout(clock);
    for (const read of ['json', 'text', 'arrayBuffer']) {
      const original = res[read].bind(res);
      res[read] = () => original().finally(done);
    }
    if (res.status === 204 || res.status === 304) done();
    const mark = res.headers.get(CACHE_MARK);
    Object.defineProperty(res, 'fromCache', { value: Boolean(mark) });
    if (mark) {
      setNetwork(mark === 'error' ? 'error' : mark === 'offline' || globalThis.navigator?.onLine === false ? 'offline' : 'unreachable');
    } else {
      setNetwork(res.status >= 500 ? 'error' : 'online');
      await noteServerDate(res);
    }
    return res;
  }

  let flushing = null;
  /**
   * Sends a pending offline sign-out first (once, shared by concurrent callers); true when
   * none is pending any more.
   */
  async function flushFirst(signal) {
    flushing ??= flushSignOut({ signal })
      .catch(() => false)
      .finally(() => {
        flushing = null;
      });
    return flushing;
  }

  let turn = Promise.resolve();
  const sessionApi = (url) => url.startsWith(`${origin}${base}/api/`) && !url.startsWith(`${origin}${base}/api/status-lists/`);

  /** Waits for the session requests before this one (or for `signal`); returns the release. */
  async function takeTurn(signal) {
    const before = turn;
    let release;
    turn = new Promise((resolve) => (release = resolve));
    if (!signal.aborted) {
      await new Promise((resolve) => {
        before.then(resolve);
        signal.addEventListener('abort', resolve, { once: true });
      });
    }
    // Released in order even when this one gave up early.
    return () => before.then(release);
  }

  /** A problem answer as a LatchkeyError; 5xx answers get code 'service-error'. */
  async function problem(res, fallback) {
    const error = await problemError(res, fallback);
    if (res.status >= 500) {
      error.code = 'service-error';
      if (!error.problem?.detail) error.message = say('service-error', { status: res.status });
    }
    return error;
  }

  async function postJson(path, body, { signal } = {}) {
    const init = { method: 'POST', headers: { accept: 'application/json' }, signal };
    if (body !== undefined) {
      init.headers['content-type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const res = await request(path, init);
    if (!res.ok) throw await problem(res);
    return res.status === 204 ? null : res.json();
  }

  /** Runs a WebAuthn prompt; its errors become sentences from `messages`. */
  function prompt(call, context = {}) {
    return webauthn(call, say, context);
  }

  // ----------------------------------------------------------------------------- trusted keys

  /** A JWK (or a thumbprint) of `trustedKeys` as its thumbprint. */
  async function thumbprintOf(k) {
    if (typeof k === 'string') return k;
    return jwkThumbprint({ kty: 'OKP', crv: 'Ed25519', ...k });
  }

  /**
   * The pinned keys: `trustedKeys` and the manifest the service worker keeps with the app's
   * code. Loaded once per page (and again by sync() after a key change); check() waits for it
   * at most PINS_TIMEOUT_MS.
   */
  function loadPins({ refresh = false } = {}) {
    if (pinsLoading && !refresh) return pinsLoading;
    const loading = (async () => {
      const kids = new Set();
      const keys = [];
      for (const k of options.trustedKeys ?? []) {
        try {
          kids.add(await thumbprintOf(k));
          if (typeof k === 'object' && k) keys.push(k);
        } catch {
          // not a key: ignored
        }
      }
      let manifestRead = false;
      if (keysUrl) {
        try {
          const res = await request(keysUrl, { headers: { accept: 'application/json' }, cache: refresh ? 'no-store' : 'no-cache' }, { timeout: PINS_TIMEOUT_MS });
          if (res.ok) {
            const body = await res.json();
            manifestRead = true;
            for (const list of [body?.keys, body?.next]) {
              if (!Array.isArray(list) || list.length === 0) continue;
              const accepted = await acceptJwks({ keys: list }).catch(() => ({ keys: [] }));
              for (const k of accepted.keys) {
                kids.add(k.kid);
                keys.push(k);
              }
            }
          }
        } catch {
          // unreachable and not cached: only trustedKeys and this page's network keys count
        }
      }
      const pins = { kids, keys: (await acceptJwks({ keys }).catch(() => ({ keys: [] }))).keys };
      if (keysUrl && !manifestRead) {
        // Not reachable and not cached: the next check asks again.
        if (pinsLoading === loading) pinsLoading = null;
        return pinsLoaded && !refresh ? pinsLoaded : pins;
      }
      pinsLoaded = pins;
      return pins;
    })();
    // A refresh that fails keeps what was loaded before.
    if (refresh && pinsLoaded) {
      const before = pinsLoaded;
      pinsLoading = loading.then((p) => (p.kids.size ? p : before));
    } else {
      pinsLoading = loading;
    }
    return pinsLoading;
  }

  /**
   * The keys check() trusts: pinned ones, those fetched from the service in this page's
   * life, and stored ones only when their thumbprint is pinned.
   */
  async function trustedJwks(stored) {
    const pins = await Promise.race([loadPins(), delay(PINS_TIMEOUT_MS).then(() => pinsLoaded ?? { kids: new Set(), keys: [] })]);
    const keys = new Map();
    for (const k of pins.keys) keys.set(k.kid, k);
    for (const k of networkKeys) keys.set(k.kid, k);
    const candidates = Array.isArray(stored?.keys) ? stored.keys : [];
    const pinnedStored = candidates.filter((k) => k && typeof k.kid === 'string' && pins.kids.has(k.kid) && !keys.has(k.kid));
    if (pinnedStored.length) {
      // acceptJwks keeps a stored key only when its kid is really its thumbprint.
      const accepted = await acceptJwks({ keys: pinnedStored }).catch(() => ({ keys: [] }));
      for (const k of accepted.keys) keys.set(k.kid, k);
    }
    return { keys: [...keys.values()] };
  }

  // A fresh (not cached) server Date is the best time we can know: it resets the trusted-time
  // mark, so a device clock that once ran fast does not lock the user out for ever.
  async function noteServerDate(res) {
    const date = Date.parse(res.headers.get('date') ?? '');
    if (!Number.isNaN(date)) await setHighWater(date / 1000).catch(() => {});
  }

  async function dpopRequest(method, url, device, { accessToken, signal } = {}) {
    let nonce = dpopNonce;
    for (let attempt = 0; ; attempt++) {
      const proof = await createDpopProof({ device, htm: method, htu: url, nonce, accessToken });
      const headers = { DPoP: proof, accept: 'application/json' };
      if (accessToken) headers.authorization = `DPoP ${accessToken}`;
      const res = await request(url, { method, headers, signal });
      const fresh = res.headers.get('dpop-nonce');
      if (fresh) dpopNonce = fresh;
      if (attempt === 0 && fresh && fresh !== nonce && (res.status === 400 || res.status === 401)) {
        if (await asksForNonce(res.clone())) {
          nonce = fresh;
          continue;
        }
      }
      return res;
    }
  }

  // ----------------------------------------------------------------------------- storage

  async function setHighWater(seconds) {
    await kv.update('hwm', () => seconds);
  }

  async function raiseHighWater(seconds) {
    await kv.update('hwm', (old) => (typeof old === 'number' && old >= seconds ? undefined : seconds));
  }

  function readCheckState() {
    return kv.run('readonly', (store) => {
      const out = {};
      const get = (key, then) => {
        const req = store.get(key);
        req.onsuccess = () => then(req.result);
      };
      get('device', (v) => (out.device = v));
      get('jwks', (v) => (out.jwks = v));
      get('hwm', (v) => (out.hwm = v));
      get('current', (sub) => {
        if (typeof sub !== 'string') return;
        out.sub = sub;
        get(`newest-iat:${sub}`, (v) => (out.newestIat = v));
        get(`license:${sub}`, (rec) => {
          out.license = rec;
          // Unverified read, only to find the cached list; check() compares it to the signed claim.
          const uri = rec && peekPayload(rec.token)?.status?.status_list?.uri;
          if (typeof uri === 'string') get(`status:${uri}`, (v) => (out.status = v));
        });
      });
      return out;
    });
  }

  async function evaluate(state, entitlement, now) {
    return evaluateLicense({
      token: typeof state.license?.token === 'string' ? state.license.token : null,
      jwks: await trustedJwks(state.jwks),
      issuer,
      audience,
      now,
      highWater: typeof state.hwm === 'number' ? state.hwm : 0,
      newestIat: typeof state.newestIat === 'number' ? state.newestIat : undefined,
      device: state.device,
      statusToken: typeof state.status?.token === 'string' ? state.status.token : null,
      staleStatus,
      entitlement,
    });
  }

  async function storeLicense(token, device) {
    let jwks = await trustedJwks((await kv.get(['jwks'])).jwks);
    let parsed;
    try {
      if (!jwks) throw new Error('no keys yet');
      parsed = await verifyJws(token, jwks, 'license+jwt');
    } catch {
      jwks = await syncJwks(); // first license, or a rotated signing key
      try {
        parsed = await verifyJws(token, jwks, 'license+jwt');
      } catch (e) {
        throw new LatchkeyError(`The service sent a license that does not verify (${e.message}). Try again later.`);
      }
    }
    const claims = parsed.payload;
    const problem = claimTypeProblem(claims);
    if (problem) throw new LatchkeyError(`The service sent a malformed license (${problem}). Try again later.`);
    if (claims.cnf.jkt !== (await jwkThumbprint(device.publicJwk))) {
      throw new LatchkeyError('The service bound the license to another key. Try again.');
    }
    const stored = await kv.run('readwrite', (store) => {
      const out = { ok: false };
      const req = store.get(`newest-iat:${claims.sub}`);
      req.onsuccess = () => {
        const newest = req.result;
        if (typeof newest === 'number' && newest > claims.iat) return;
        out.ok = true;
        store.put({ token, storedAt: Date.now() }, `license:${claims.sub}`);
        store.put(claims.iat, `newest-iat:${claims.sub}`);
        store.put(claims.sub, 'current');
        const hwm = store.get('hwm');
        hwm.onsuccess = () => {
          if (!(typeof hwm.result === 'number' && hwm.result >= claims.iat)) store.put(claims.iat, 'hwm');
        };
      };
      return out;
    });
    if (!stored.ok) throw new LatchkeyError(say('older license'), { code: 'older license' });
    emit('license', { sub: claims.sub });
    return claims;
  }

  async function syncJwks({ signal } = {}) {
    const res = await request('/.well-known/jwks.json', { headers: { accept: 'application/json' }, cache: 'no-store', signal });
    if (!res.ok) throw await problem(res);
    const jwks = await acceptJwks(await res.json());
    // Keys only ever come from the service origin; a token never names its own key. A copy
    // from a cache is no trust anchor: only keys that came over the network count as such.
    if (!res.fromCache) {
      networkKeys = jwks.keys;
      await kv.put({ jwks: { keys: jwks.keys, fetchedAt: Date.now() } });
      const pins = await loadPins();
      // Keys changed: fetch the manifest again so the service worker keeps the new one.
      if (keysUrl && jwks.keys.some((k) => !pins.kids.has(k.kid))) await loadPins({ refresh: true });
    }
    return trustedJwks(jwks);
  }

  /**
   * Sends a sign-out made offline, before anything else reaches the service. True when none
   * is pending (any more); false while still offline or unreachable.
   */
  async function flushSignOut({ signal } = {}) {
    // Without storage (no IndexedDB) nothing can be pending.
    const { pendingSignOut } = await kv.get(['pendingSignOut']).catch(() => ({}));
    if (!pendingSignOut) return true;
    try {
      if (pendingSignOut === 'everywhere') {
        try {
          await postJson('/api/logout/everywhere', undefined, { signal });
        } catch (e) {
          // Nobody is there to confirm with a passkey now: end this session at least.
          if (!(e instanceof LatchkeyError && e.type === STEP_UP_REQUIRED)) throw e;
          await postJson('/api/logout', undefined, { signal });
        }
      } else {
        await postJson('/api/logout', undefined, { signal });
      }
    } catch (e) {
      if (e?.code === 'offline' || e?.code === 'unreachable') return false;
      if (e?.status !== 401) throw e; // 401: that session had ended anyway
    }
    await kv.del(['pendingSignOut']);
    return true;
  }

  /** Signs out here at once; offline, the service is told at the next sync (before anything else). */
  async function signOutHere(kind, send) {
    await endAutofill();
    let failure = null;
    try {
      await send();
    } catch (e) {
      failure = e;
      const noContact = e?.code === 'offline' || e?.code === 'unreachable';
      // A refused or cancelled "everywhere" changes nothing; plain sign-out forgets anyway.
      if (!noContact && kind === 'everywhere') throw e;
      if (noContact) await kv.put({ pendingSignOut: kind });
    }
    await forgetCurrentLicense();
    await kv.del(['account']);
    if (failure) throw failure;
  }

  async function syncStatusList({ signal } = {}) {
    const state = await readCheckState();
    const uri = state.license && peekPayload(state.license.token)?.status?.status_list?.uri;
    if (typeof uri !== 'string') return 'none';
    const res = await request(uri, { headers: { accept: 'application/statuslist+jwt' }, cache: 'no-store', signal });
    if (res.fromCache) {
      // The service worker's old copy: no news about revocations, and no check-in.
      throw new LatchkeyError('The revocation list could not be loaded (blocked or unreachable).', { code: 'status-unavailable' });
    }
    if (!res.ok) throw await problem(res);
    const token = (await res.text()).trim();
    const { payload } = await verifyJws(token, await trustedJwks(state.jwks), 'statuslist+jwt');
    if (payload.sub !== uri || typeof payload.iat !== 'number') {
      throw new LatchkeyError('The service sent a status list for another license list. Try again later.');
    }
    const updated = await kv.update(`status:${uri}`, (old) =>
      old && typeof old.iat === 'number' && old.iat > payload.iat ? undefined : { token, iat: payload.iat, fetchedAt: Date.now() },
    );
    await raiseHighWater(payload.iat);
    return updated ? 'updated' : 'unchanged';
  }

  async function forgetCurrentLicense() {
    await kv.run('readwrite', (store) => {
      const req = store.get('current');
      req.onsuccess = () => {
        if (typeof req.result === 'string') store.delete(`license:${req.result}`);
        store.delete('current');
        store.delete('account');
      };
    });
    emit('license', null);
    emit('account', null);
  }

  // ----------------------------------------------------------------------------- ceremonies

  // A pending conditional (autofill) request blocks every other WebAuthn call, so each
  // button-driven ceremony ends it first.
  /**
   * Ends a pending autofill request and waits until its start request has been answered: the
   * service writes the ceremony into the session, and that write must not land after the next
   * ceremony's own.
   */
  async function endAutofill() {
    abortAutofill();
    if (autofillStarting) await autofillStarting;
  }

  function abortAutofill() {
    if (conditional) {
      conditional.abort();
      conditional = null;
    }
  }

  async function finishSignIn(credential, { signal } = {}) {
    const res = await request('/api/login/finish', {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify(credentialToJson(credential)),
      signal,
    });
    if (!res.ok) {
      const error = await problem(res);
      if (error.type === UNKNOWN_CREDENTIAL) {
        const id = typeof error.problem?.credential_id === 'string' ? error.problem.credential_id : credential.id;
        await api.signalUnknownCredential(id);
        error.message = say('unknown-credential');
        error.code = 'unknown-credential';
      }
      throw error;
    }
    const body = await res.json();
    await rememberAccount({ user_id: body.user_id, username: body.username });
    return body;
  }

  async function rememberAccount(account) {
    const before = (await kv.get(['account'])).account;
    await kv.put({ account });
    if (before?.user_id !== account.user_id || before?.username !== account.username) emit('account', account);
  }

  async function forgetAccount() {
    const before = (await kv.get(['account'])).account;
    await kv.del(['account']);
    if (before) emit('account', null);
  }

  const api = {
    origin,
    base,
    rpId,
    /** Events: 'sync' (a SyncReport), 'account' (signed in or out), 'license', 'connection'. */
    events,
    /**
     * The sentence for a message key (a reason code, an error code, or another MESSAGES key),
     * from `options.messages` or the defaults.
     * @param {string} key @param {Record<string, any>} [context] @param {string} [fallback]
     */
    message: say,
    /**
     * The sentence a person should read for an error thrown by this client.
     * @param {unknown} error
     */
    describe(error) {
      if (error?.name === 'AbortError') return say('done.cancelled');
      if (error instanceof LatchkeyError) return error.message;
      return say('passkey-failed', { message: error?.message ?? String(error) });
    },
    /** The last contact with the service: 'online' | 'offline' | 'unreachable' | 'error' | 'unknown'. */
    connection() {
      if (globalThis.navigator?.onLine === false) return 'offline';
      return network;
    },

    /**
     * Creates a user and their first passkey; the browser is signed in afterwards.
     * @param {string} username
     * @param {{displayName?: string, signal?: AbortSignal}} [opts]
     * @returns {Promise<{user_id: string, credential_id: string, username: string}>}
     */
    async register(username, { displayName, signal } = {}) {
      await endAutofill();
      const body = { username };
      if (displayName) body.display_name = displayName;
      const options = await postJson('/api/register/start', body, { signal });
      const credential = await prompt(() =>
        navigator.credentials.create({ publicKey: creationOptions(options.publicKey), signal }),
      );
      const result = await postJson('/api/register/finish', credentialToJson(credential), { signal });
      await rememberAccount({ user_id: result.user_id, username: result.username ?? username });
      return result;
    },

    /**
     * Adds the first passkey of a user an administrator made (`POST /api/admin/users`), with
     * the one-time enrollment code that call returned, or a new passkey to an existing account
     * with the code of a recovery link (`POST /api/admin/users/{id}/recovery`); the browser is
     * signed in afterwards.
     * @param {string} code `lke_…`
     * @param {{signal?: AbortSignal}} [opts]
     * @returns {Promise<{user_id: string, credential_id: string, username: string}>}
     */
    async enroll(code, { signal } = {}) {
      await endAutofill();
      const options = await postJson('/api/register/enroll', { enrollment: code }, { signal });
      const credential = await prompt(() =>
        navigator.credentials.create({ publicKey: creationOptions(options.publicKey), signal }),
      );
      const result = await postJson('/api/register/finish', credentialToJson(credential), { signal });
      await rememberAccount({ user_id: result.user_id, username: result.username });
      return result;
    },

    /**
     * Adds a new passkey to an existing account and signs the browser in:
     * `recover({ token })` with a recovery link's code (`/?recover=lke_…`, from an
     * administrator), or `recover({ username, code })` with one of the recovery codes the user
     * made earlier (`recoveryCodes()`). Each works once. `recover(username, code)` is the same
     * as the second form.
     * @param {{token: string} | {username: string, code: string} | string} request
     * @param {string | {signal?: AbortSignal}} [codeOrOpts]
     * @param {{signal?: AbortSignal}} [opts]
     * @returns {Promise<{user_id: string, credential_id: string, username: string}>}
     */
    async recover(request, codeOrOpts, opts) {
      if (typeof request === 'string') return api.recover({ username: request, code: String(codeOrOpts) }, opts);
      const { signal } = (typeof codeOrOpts === 'object' && codeOrOpts) || {};
      if (request?.token) return api.enroll(request.token, { signal });
      await endAutofill();
      const { username, code } = request ?? {};
      const options = await postJson('/api/register/recover', { username, code }, { signal });
      const credential = await prompt(() =>
        navigator.credentials.create({ publicKey: creationOptions(options.publicKey), signal }),
      );
      const result = await postJson('/api/register/finish', credentialToJson(credential), { signal });
      await rememberAccount({ user_id: result.user_id, username: result.username });
      return result;
    },

    /**
     * Signs in with a passkey.
     *
     * `autofill: true` starts a conditional-mediation request that the browser answers from
     * an `<input autocomplete="username webauthn">`. It stays pending until the person picks
     * a passkey, so abort it (with `signal`) before any other ceremony; this client also ends
     * its own pending autofill request before register/signIn/addPasskey/unlockWithPasskey.
     * Without autofill, `username` (optional) limits the request to that user's passkeys.
     *
     * A passkey the service does not know any more is reported to the browser through
     * `PublicKeyCredential.signalUnknownCredential`, where it exists.
     * @param {{autofill?: boolean, username?: string, signal?: AbortSignal}} [opts]
     * @returns {Promise<{user_id: string, username: string, entitlements: any[]}>}
     */
    async signIn({ autofill = false, username, signal } = {}) {
      let own = null;
      if (autofill) {
        // Registered at once, so that a ceremony started from now on ends this one first.
        abortAutofill();
        own = new AbortController();
        conditional = own;
        signal = signal ? anySignal([signal, own.signal]) : own.signal;
      } else {
        await endAutofill();
      }
      try {
        let options;
        if (autofill) {
          if (autofillStarting) await autofillStarting;
          if (signal.aborted) throw signal.reason ?? new DOMException('The autofill request was ended.', 'AbortError');
          // Not aborted half-way (see endAutofill); the request timeout still bounds it.
          const starting = postJson('/api/login/start', {});
          const settled = starting.then(
            () => {},
            () => {},
          );
          autofillStarting = settled;
          try {
            options = await starting;
          } finally {
            if (autofillStarting === settled) autofillStarting = null;
          }
          if (signal.aborted) throw signal.reason ?? new DOMException('The autofill request was ended.', 'AbortError');
        } else {
          options = await postJson('/api/login/start', username ? { username } : {}, { signal });
        }
        const publicKey = requestOptions(options.publicKey);
        const named = username && !autofill ? username : null;
        const credential = await prompt(
          () => navigator.credentials.get(autofill ? { publicKey, mediation: 'conditional', signal } : { publicKey, signal }),
          { signIn: true, username: named },
        );
        if (own && conditional === own) conditional = null; // answered: nothing left to abort
        return await finishSignIn(credential, { signal });
      } finally {
        if (own && conditional === own) conditional = null;
      }
    },

    /** Ends this browser's session and forgets this user's license on this device. */
    async signOut({ signal } = {}) {
      await signOutHere('this', () => postJson('/api/logout', undefined, { signal }));
    },

    /**
     * Ends every session of this user (after a passkey confirmation if needed), then forgets
     * the license here. Offline, this device is signed out at once and the service is told at
     * the next sync (then, without a passkey at hand, at least this session ends).
     */
    async signOutEverywhere({ signal } = {}) {
      await signOutHere('everywhere', () => withStepUp(() => postJson('/api/logout/everywhere', undefined, { signal }), { signal }));
    },

    /**
     * Confirms one of the signed-in user's passkeys (step-up). Adding or removing a passkey
     * and signing out everywhere need a recent confirmation; the methods that make those
     * changes ask for it by themselves.
     */
    async stepUp({ signal } = {}) {
      await endAutofill();
      const options = await postJson('/api/me/step-up/start', undefined, { signal });
      const credential = await prompt(() => navigator.credentials.get({ publicKey: requestOptions(options.publicKey), signal }));
      return postJson('/api/me/step-up/finish', credentialToJson(credential), { signal });
    },

    /**
     * The signed-in user (GET /api/me), or null when signed out.
     * @returns {Promise<any | null>}
     */
    async me({ signal } = {}) {
      if (!(await flushSignOut({ signal }))) return null;
      const res = await request('/api/me', { headers: { accept: 'application/json' }, cache: 'no-store', signal });
      if (res.status === 401) {
        await forgetAccount();
        return null;
      }
      if (!res.ok) throw await problem(res);
      const me = await res.json();
      await rememberAccount({ user_id: me.user_id, username: me.username });
      return me;
    },

    /**
     * The account last seen on this device, for display while offline.
     * @returns {Promise<{user_id: string, username: string} | null>}
     */
    async account() {
      return (await kv.get(['account'])).account ?? null;
    },

    /** Adds another passkey to the signed-in user (after a passkey confirmation if needed). */
    async addPasskey({ signal } = {}) {
      await endAutofill();
      return withStepUp(async () => {
        const options = await postJson('/api/me/passkeys/start', undefined, { signal });
        const credential = await prompt(() =>
          navigator.credentials.create({ publicKey: creationOptions(options.publicKey), signal }),
        );
        return postJson('/api/me/passkeys/finish', credentialToJson(credential), { signal });
      }, { signal });
    },

    /** @param {string} id @param {string} name @param {{signal?: AbortSignal}} [opts] */
    async renamePasskey(id, name, { signal } = {}) {
      const res = await request(`/api/me/passkeys/${encodeURIComponent(id)}`, {
        method: 'PATCH',
        headers: { 'content-type': 'application/json', accept: 'application/json' },
        body: JSON.stringify({ name }),
        signal,
      });
      if (!res.ok) throw await problem(res);
      return res.json();
    },

    /** Renames one of the user's devices. @param {string} id @param {string} name @param {{signal?: AbortSignal}} [opts] */
    async renameDevice(id, name, { signal } = {}) {
      const res = await request(`/api/me/devices/${encodeURIComponent(id)}`, {
        method: 'PATCH',
        headers: { 'content-type': 'application/json', accept: 'application/json' },
        body: JSON.stringify({ name }),
        signal,
      });
      if (!res.ok) throw await problem(res);
    },

    /**
     * Removes one of the user's devices (after a passkey confirmation if needed): its licenses
     * are revoked and the sign-ins that minted them end, so it locks at its next sync. @param {string} id the device key's thumbprint
     */
    async removeDevice(id, { signal } = {}) {
      await withStepUp(async () => {
        const res = await request(`/api/me/devices/${encodeURIComponent(id)}`, { method: 'DELETE', signal });
        if (!res.ok) throw await problem(res);
      }, { signal });
    },

    /**
     * Makes a new set of one-time recovery codes for the signed-in user, replacing the old
     * set (after a passkey confirmation if needed). Show them once; they are not kept.
     * @returns {Promise<{codes: string[], created_at: string}>}
     */
    async recoveryCodes({ signal } = {}) {
      return withStepUp(() => postJson('/api/me/recovery-codes', undefined, { signal }), { signal });
    },

    /** The same as `recoveryCodes()`. */
    async makeRecoveryCodes(opts) {
      return api.recoveryCodes(opts);
    },

    /**
     * The signed-in user's devices (each device key that got a license): `{id, name,
     * first_seen, last_sync, active_licenses}`, oldest first; null when not signed in.
     * @returns {Promise<Array<{id: string, name: string, first_seen: string, last_sync: string, active_licenses: number}> | null>}
     */
    async devices() {
      const me = await api.me();
      return me ? me.devices ?? [] : null;
    },

    /** Whether a sign-out made offline is still waiting to be sent (at the next sync). */
    async signOutPending() {
      const { pendingSignOut } = await kv.get(['pendingSignOut']).catch(() => ({}));
      return Boolean(pendingSignOut);
    },

    /** Removes one of the user's passkeys (after a passkey confirmation if needed). @param {string} id */
    async removePasskey(id, { signal } = {}) {
      await withStepUp(async () => {
        const res = await request(`/api/me/passkeys/${encodeURIComponent(id)}`, { method: 'DELETE', signal });
        if (!res.ok) throw await problem(res);
      }, { signal });
    },

    /**
     * This device's key pair, made on first use: Ed25519 where WebCrypto has it, P-256
     * otherwise, NON-extractable, kept as a CryptoKey in IndexedDB. Throws a LatchkeyError
     * when the browser cannot store it; there is no weaker fallback.
     * @returns {Promise<import('./latchkey-core.js').DeviceKey>}
     */
    async ensureDeviceKey() {
      const usable = (r) => r?.privateKey?.type === 'private' && r.privateKey.extractable === false && r.publicJwk;
      let existing;
      try {
        existing = (await kv.get(['device'])).device;
      } catch (e) {
        throw storageError(e);
      }
      if (usable(existing)) return existing;
      const fresh = await generateDeviceKey();
      try {
        // add(), not put(): when two tabs race, the first key stored wins and both use it.
        await kv.run('readwrite', (store) => {
          if (existing) store.delete('device');
          store.add(fresh, 'device');
        });
      } catch (e) {
        if (e?.name !== 'ConstraintError') throw storageError(e);
      }
      let stored;
      try {
        stored = (await kv.get(['device'])).device;
      } catch (e) {
        throw storageError(e);
      }
      if (!usable(stored)) throw storageError(new Error('the key did not survive storage'));
      globalThis.navigator?.storage?.persist?.().catch(() => {});
      return stored;
    },

    /**
     * Gets a license bound to this device (DPoP proof with the device key) and stores it as
     * this user's newest license.
     * @returns {Promise<{license: string, expiresAt: Date, claims: any}>}
     */
    async fetchLicense({ signal } = {}) {
      const device = await api.ensureDeviceKey();
      const res = await dpopRequest('POST', `${origin}${base}/api/licenses`, device, { signal });
      if (res.status === 401) {
        await forgetAccount();
        throw await problem(res, 'Sign in to get an offline license.');
      }
      if (!res.ok) throw await problem(res);
      const body = await res.json();
      if (typeof body?.license !== 'string') throw new LatchkeyError('The service sent no license. Try again later.');
      const claims = await storeLicense(body.license, device);
      return { license: body.license, expiresAt: new Date(claims.exp * 1000), claims };
    },

    /**
     * Decides, offline, whether this device may use `entitlement` now. Verifies everything
     * on every call: signature against the pinned keys, header, claims, clock, device key,
     * newest license, status list and entitlement.
     * @param {string} [entitlement]
     * @returns {Promise<CheckResult>}
     */
    async check(entitlement) {
      const now = Date.now();
      const offline = api.isOffline();
      const connection = api.connection();
      let state;
      let account = null;
      try {
        state = await readCheckState();
        account = (await kv.get(['account'])).account ?? null;
      } catch (e) {
        return {
          ok: false,
          reason: REASONS.noLicense,
          message: say('storage', { message: e.message }),
          detail: `storage: ${e.message}`,
          expiresAt: null,
          offline,
          connection,
          signedIn: false,
          username: null,
          entitlements: [],
        };
      }
      const v = await evaluate(state, entitlement, now);
      if (!(typeof state.hwm === 'number' && state.hwm + 1 >= now / 1000)) {
        await raiseHighWater(now / 1000).catch(() => {});
      }
      // With no license and no account, the next step is to sign in, not a lock.
      const key = v.ok ? 'ok' : v.reason === REASONS.noLicense && !account ? 'signed out' : v.reason;
      return {
        ok: v.ok,
        reason: v.reason,
        message: say(key, { entitlement, expiresAt: v.expiresAt, username: account?.username ?? null }),
        detail: v.detail,
        expiresAt: v.expiresAt,
        offline,
        connection,
        signedIn: Boolean(account),
        username: v.claims?.name ?? account?.username ?? null,
        entitlements: v.claims?.ent ?? [],
      };
    },

    /** Whether the last contact with the service failed (or the browser says it is offline). */
    isOffline() {
      const c = api.connection();
      return c === 'offline' || c === 'unreachable';
    },

    /**
     * When online: fetch the JWK set, refresh the license when signed in and it is due (none,
     * older than `refreshAfter`, bound to a key this device no longer has, or other
     * entitlements than the account has), then fetch the status list named in the license. A 401 keeps the stored license: it is still checked
     * against the status list.
     * @returns {Promise<SyncReport>}
     */
    async sync({ signal } = {}) {
      const report = await syncOnce({ signal });
      emit('sync', report);
      return report;
    },

    /**
     * Runs sync() now, whenever the browser comes back online or the page becomes visible,
     * and on a timer (every `retryMs` while offline). Returns a function that stops it.
     * @param {{intervalMs?: number, retryMs?: number, onSync?: (report: SyncReport) => void}} [opts]
     */
    startAutoSync({ intervalMs = 5 * 60_000, retryMs = 5_000, onSync } = {}) {
      if (autoSyncStop) return autoSyncStop;
      let running = null;
      let timer = null;
      let stopped = false;
      const run = () => {
        if (running || stopped) return running;
        clearTimeout(timer);
        running = api
          .sync()
          .then((report) => {
            onSync?.(report);
            return report;
          })
          .finally(() => {
            running = null;
            if (!stopped) timer = setTimeout(run, api.isOffline() ? retryMs : intervalMs);
          });
        return running;
      };
      const onVisible = () => document.visibilityState === 'visible' && run();
      const onOffline = () => setNetwork('offline');
      globalThis.addEventListener?.('online', run);
      globalThis.addEventListener?.('offline', onOffline);
      globalThis.document?.addEventListener('visibilitychange', onVisible);
      run();
      autoSyncStop = () => {
        stopped = true;
        autoSyncStop = null;
        clearTimeout(timer);
        globalThis.removeEventListener?.('online', run);
        globalThis.removeEventListener?.('offline', onOffline);
        globalThis.document?.removeEventListener('visibilitychange', onVisible);
      };
      return autoSyncStop;
    },

    /**
     * Offline proof that the passkey holder is here: a passkey assertion over a challenge
     * made on this device, verified against the passkey keys signed into the license (`cks`).
     * The license itself must pass check() first.
     * @param {{signal?: AbortSignal, timeout?: number}} [opts]
     * @returns {Promise<{ok: boolean, reason: string | null, detail?: string | null, username?: string | null}>}
     */
    async unlockWithPasskey({ signal, timeout = 60_000 } = {}) {
      // (Offline by design: no request to the service, only the local passkey prompt.)
      await endAutofill();
      const state = await readCheckState();
      const verdict = await evaluate(state, undefined, Date.now());
      if (!verdict.ok) return { ok: false, reason: verdict.reason, detail: verdict.detail };
      const keys = Array.isArray(verdict.claims.cks) ? verdict.claims.cks : [];
      const allow = [];
      for (const k of keys) {
        try {
          allow.push({ type: 'public-key', id: b64urlDecode(k.kid) });
        } catch {
          // a kid that is not base64url cannot be a credential id
        }
      }
      if (allow.length === 0) return { ok: false, reason: 'passkey not recognised', detail: 'the license lists no passkeys' };
      const challenge = randomBytes(32);
      let credential;
      try {
        credential = await navigator.credentials.get({
          publicKey: { challenge, rpId, allowCredentials: allow, userVerification: 'required', timeout },
          signal,
        });
      } catch (e) {
        if (e?.name === 'AbortError') throw e;
        return { ok: false, reason: 'cancelled', detail: e?.message ?? String(e) };
      }
      if (!credential) return { ok: false, reason: 'cancelled', detail: 'no credential' };
      const r = credential.response;
      const result = await verifyAssertion({
        credentialId: b64urlEncode(credential.rawId),
        clientDataJSON: new Uint8Array(r.clientDataJSON),
        authenticatorData: new Uint8Array(r.authenticatorData),
        signature: new Uint8Array(r.signature),
        challenge,
        origin: globalThis.location.origin,
        rpId,
        keys,
      });
      return { ...result, username: result.ok ? verdict.claims.name ?? null : null };
    },

    /**
     * Calls a premium API with the license as a DPoP-bound token.
     * @param {string} [path]
     */
    async callPremium(path = '/api/premium/example', { signal } = {}) {
      const state = await readCheckState();
      if (!state.license?.token) throw new LatchkeyError('Get an offline license first: sign in while online.');
      const device = await api.ensureDeviceKey();
      const res = await dpopRequest('GET', origin + base + path, device, { accessToken: state.license.token, signal });
      if (!res.ok) throw await problem(res);
      return res.json();
    },

    /**
     * Tells the browser that the service does not know this passkey (Signal API), so it can
     * stop offering it. Returns whether the browser was told.
     * @param {string} credentialId base64url
     */
    async signalUnknownCredential(credentialId) {
      const PKC = globalThis.PublicKeyCredential;
      if (typeof PKC?.signalUnknownCredential !== 'function') return false;
      try {
        await PKC.signalUnknownCredential({ rpId, credentialId });
        return true;
      } catch {
        return false;
      }
    },
  };

  /** One sync; each step has the request timeout, so a hung service never holds it for long. */
  async function syncOnce({ signal } = {}) {
    /** @type {SyncReport} */
    const report = { online: false, connection: network, me: null, license: 'unchanged', status: 'unchanged', error: null, startedAt: Date.now() };
    const finish = () => {
      report.connection = api.connection();
      return report;
    };
    try {
      // A sign-out made offline goes first, before this browser's cookie is used for anything.
      if (!(await flushSignOut({ signal }))) return finish();
      await syncJwks({ signal });
    } catch (e) {
      report.error = e;
      return finish();
    }
    if (api.isOffline()) return finish();
    report.online = true;
    try {
      report.me = await api.me({ signal });
      if (!report.me) report.license = 'signed-out';
      else if (await licenseDue(report.me)) {
        await api.fetchLicense({ signal });
        report.license = 'refreshed';
        // The account as it is now: a new license may have made this a new device.
        report.me = (await api.me({ signal }).catch(() => null)) ?? report.me;
      }
    } catch (e) {
      report.license = e?.status === 401 ? 'signed-out' : 'failed';
      report.error = e;
    }
    const answered = api.connection() === 'online';
    try {
      report.status = await syncStatusList({ signal });
    } catch (e) {
      report.status = 'failed';
      report.error ??= e;
      // The service answered this sync; only the status list did not come (an ad blocker,
      // a proxy rule): that is not being offline, and the page should say so.
      if (answered && e?.code === 'status-unavailable') {
        report.statusUnavailable = true;
        setNetwork('online');
      }
    }
    report.online = !api.isOffline();
    return finish();
  }

  let autoSyncStop = null;

  async function licenseDue(me) {
    const state = await readCheckState();
    const claims = state.sub === me.user_id && state.license ? peekPayload(state.license.token) : null;
    if (!claims || typeof claims.iat !== 'number' || !Array.isArray(claims.ent)) return true;
    if (Date.now() / 1000 - claims.iat > refreshAfter) return true;
    // A license for a device key that is gone (storage cleared, key replaced) is useless here.
    const jkt = state.device?.publicJwk ? await jwkThumbprint(state.device.publicJwk).catch(() => null) : null;
    if (claims.cnf?.jkt !== jkt) return true;
    const names = new Set((me.entitlements ?? []).map((e) => (typeof e === 'string' ? e : e?.name)));
    return names.size !== claims.ent.length || claims.ent.some((n) => !names.has(n));
  }

  return api;
}

// ------------------------------------------------------------------------------- helpers

function storageError(cause) {
  return new LatchkeyError(renderMessage(undefined, 'storage', { message: cause?.message ?? String(cause) }), { code: 'storage', cause });
}

const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function asksForNonce(res) {
  if (/use_dpop_nonce/.test(res.headers.get('www-authenticate') ?? '')) return true;
  try {
    return (await res.json())?.type === USE_DPOP_NONCE;
  } catch {
    return false;
  }
}

/**
 * Turns a problem+json answer into a LatchkeyError whose message is the problem's detail.
 * @param {Response} res
 * @param {string} [fallback]
 */
async function problemError(res, fallback) {
  let problem = null;
  try {
    problem = await res.json();
  } catch {
    problem = null;
  }
  const message =
    (typeof problem?.detail === 'string' && problem.detail) ||
    (typeof problem?.title === 'string' && problem.title) ||
    fallback ||
    `The service answered ${res.status} ${res.statusText}.`.replace(/ \.$/, '.') + ' Try again in a moment.';
  return new LatchkeyError(message, {
    status: res.status,
    type: typeof problem?.type === 'string' ? problem.type : null,
    title: typeof problem?.title === 'string' ? problem.title : null,
    problem,
  });
}

/**
 * Runs a WebAuthn call and turns its DOMExceptions into sentences (AbortError passes).
 * A sign-in that names a user and gets NotAllowedError most often means that this device has
 * no passkey for that name (the browser does not say which), so it says that, not "cancelled".
 * @param {() => Promise<any>} call
 * @param {(key: string, context?: Record<string, any>) => string} say
 * @param {{signIn?: boolean, username?: string | null}} [context]
 */
async function webauthn(call, say, context = {}) {
  if (!globalThis.PublicKeyCredential || !navigator.credentials) {
    throw new LatchkeyError(say('no-webauthn'), { code: 'no-webauthn' });
  }
  let credential;
  try {
    credential = await call();
  } catch (e) {
    if (e?.name === 'AbortError') throw e;
    let code = null;
    if (e?.name === 'NotAllowedError') code = context.signIn ? 'no-passkey' : 'cancelled';
    else if (e?.name === 'InvalidStateError') code = 'passkey-exists';
    else if (e?.name === 'SecurityError') code = 'passkey-blocked';
    else if (e?.name === 'NotSupportedError') code = 'passkey-unsupported';
    const key = code === 'no-passkey' && !context.username ? 'no-passkey-any' : (code ?? 'passkey-failed');
    throw new LatchkeyError(say(key, { username: context.username, message: e?.message ?? String(e) }), { code, cause: e });
  }
  if (!credential) throw new LatchkeyError(say('cancelled'), { code: 'cancelled' });
  return credential;
}

const buffer = (b64url) => b64urlDecode(b64url).buffer;

function creationOptions(json) {
  if (typeof PublicKeyCredential.parseCreationOptionsFromJSON === 'function') {
    return PublicKeyCredential.parseCreationOptionsFromJSON(json);
  }
  return {
    ...json,
    challenge: buffer(json.challenge),
    user: { ...json.user, id: buffer(json.user.id) },
    excludeCredentials: json.excludeCredentials?.map((c) => ({ ...c, id: buffer(c.id) })),
  };
}

function requestOptions(json) {
  if (typeof PublicKeyCredential.parseRequestOptionsFromJSON === 'function') {
    return PublicKeyCredential.parseRequestOptionsFromJSON(json);
  }
  return {
    ...json,
    challenge: buffer(json.challenge),
    allowCredentials: json.allowCredentials?.map((c) => ({ ...c, id: buffer(c.id) })),
  };
}

function credentialToJson(credential) {
  if (typeof credential.toJSON === 'function') return credential.toJSON();
  const r = credential.response;
  const enc = (b) => (b ? b64urlEncode(b) : undefined);
  const response = { clientDataJSON: enc(r.clientDataJSON) };
  if (r.attestationObject) {
    response.attestationObject = enc(r.attestationObject);
    response.transports = r.getTransports?.() ?? [];
  } else {
    response.authenticatorData = enc(r.authenticatorData);
    response.signature = enc(r.signature);
    response.userHandle = r.userHandle ? enc(r.userHandle) : null;
  }
  return {
    id: credential.id,
    rawId: enc(credential.rawId),
    type: credential.type,
    authenticatorAttachment: credential.authenticatorAttachment ?? null,
    clientExtensionResults: credential.getClientExtensionResults?.() ?? {},
    response,
  };
}

function anySignal(signals) {
  if (typeof AbortSignal.any === 'function') return AbortSignal.any(signals);
  const controller = new AbortController();
  for (const s of signals) {
    if (s.aborted) controller.abort(s.reason);
    else s.addEventListener('abort', () => controller.abort(s.reason), { once: true });
  }
  return controller.signal;
}

/** A tiny promise wrapper over one object store, `kv`, with out-of-line keys. */
function openStore(dbName) {
  let opening = null;
  function open() {
    if (!opening) {
      opening = new Promise((resolve, reject) => {
        if (typeof indexedDB === 'undefined') {
          reject(new Error('IndexedDB is not available'));
          return;
        }
        const req = indexedDB.open(dbName, 1);
        req.onupgradeneeded = () => req.result.createObjectStore('kv');
        req.onsuccess = () => {
          const db = req.result;
          db.onversionchange = () => {
            db.close();
            opening = null;
          };
          db.onclose = () => {
            opening = null;
          };
          resolve(db);
        };
        req.onerror = () => reject(req.error);
      }).catch((e) => {
        opening = null;
        throw e;
      });
    }
    return opening;
  }
  /** Runs `body(store)` in one transaction; resolves with its return value once committed. */
  async function run(mode, body) {
    const db = await open();
    return new Promise((resolve, reject) => {
      const tx = db.transaction('kv', mode);
      const value = body(tx.objectStore('kv'));
      tx.oncomplete = () => resolve(value);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error ?? new Error('IndexedDB transaction aborted'));
    });
  }
  return {
    run,
    /** @param {string[]} keys */
    get: (keys) =>
      run('readonly', (store) => {
        const out = {};
        for (const k of keys) {
          const req = store.get(k);
          req.onsuccess = () => (out[k] = req.result);
        }
        return out;
      }),
    /** @param {Record<string, any>} entries */
    put: (entries) =>
      run('readwrite', (store) => {
        for (const [k, v] of Object.entries(entries)) store.put(v, k);
      }),
    /** @param {string[]} keys */
    del: (keys) =>
      run('readwrite', (store) => {
        for (const k of keys) store.delete(k);
      }),
    /** Atomic read-modify-write; `fn` returns the new value or undefined for no change. Resolves whether it wrote. */
    update: (key, fn) =>
      run('readwrite', (store) => {
        const out = { wrote: false };
        const req = store.get(key);
        req.onsuccess = () => {
          const next = fn(req.result);
          if (next !== undefined) {
            store.put(next, key);
            out.wrote = true;
          }
        };
        return out;
      }).then((out) => out.wrote),
  };
}
