// Latchkey client: passkey sign-in and device-bound offline licenses for a PWA.
//
//   import { createLatchkey } from 'https://latchkey.example/latchkey.js';
//   const latchkey = createLatchkey();
//   latchkey.startAutoSync();
//   const verdict = await latchkey.check('premium'); // {ok, reason, expiresAt, offline}
//
// Storage: one IndexedDB database (`dbName`), object store `kv`:
//   device              {alg, privateKey, publicKey, publicJwk, jkt}  (private key NON-extractable)
//   jwks                {keys, fetchedAt}                          (pinned on first sync)
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

export * from './latchkey-core.js';

/** Problem type for a passkey the service does not know (or no longer accepts). */
export const UNKNOWN_CREDENTIAL = 'urn:latchkey:problem:unknown-credential';
/** Problem type: the change needs a fresh passkey confirmation (step-up). */
export const STEP_UP_REQUIRED = 'urn:latchkey:problem:step-up-required';
const USE_DPOP_NONCE = 'urn:latchkey:problem:use-dpop-nonce';
const CACHE_MARK = 'x-latchkey-cache'; // set by sw.js on responses served from its cache

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
    /** 'offline' | 'cancelled' | 'storage' | 'older license' | null */
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
 *
 * @typedef {object} CheckResult
 * @property {boolean} ok
 * @property {string | null} reason null when ok; otherwise one of
 *   "no license", "signature invalid", "expired", "not yet valid", "clock moved back",
 *   "revoked", "bound to another device", "older license", "missing entitlement",
 *   "status unknown" (and, for licenses made for something else, "wrong issuer",
 *   "wrong audience", "invalid license")
 * @property {string | null} detail the rule that failed, for developers
 * @property {Date | null} expiresAt license expiry (when the signature verified)
 * @property {boolean} offline whether the last contact with the service failed
 * @property {string | null} username the license's `name`
 * @property {string[]} entitlements the license's `ent`
 *
 * @typedef {object} SyncReport
 * @property {boolean} online
 * @property {any | null} me the /api/me document when signed in
 * @property {'refreshed' | 'unchanged' | 'signed-out' | 'failed'} license
 * @property {'updated' | 'unchanged' | 'none' | 'failed'} status
 * @property {Error | null} error
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

  /** @type {'online' | 'offline' | 'unknown'} */
  let network = 'unknown';
  let dpopNonce = null;
  /** @type {AbortController | null} */
  let conditional = null;

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
        throw new LatchkeyError('Cancelled: nothing was changed.', { code: 'cancelled', status: e.status, type: e.type });
      }
      await api.stepUp({ signal });
      return change();
    }
  }

  async function request(path, init = {}) {
    const url = path.startsWith('http') ? path : origin + base + path;
    let res;
    try {
      res = await http(url, { credentials: 'include', ...init });
    } catch (e) {
      if (e?.name === 'AbortError') throw e;
      network = 'offline';
      throw new LatchkeyError("You're offline. Connect to the internet and try again.", { code: 'offline', cause: e });
    }
    if (res.headers.get(CACHE_MARK)) {
      network = 'offline';
    } else {
      network = 'online';
      await noteServerDate(res);
    }
    return res;
  }

  async function postJson(path, body, { signal } = {}) {
    const init = { method: 'POST', headers: { accept: 'application/json' }, signal };
    if (body !== undefined) {
      init.headers['content-type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const res = await request(path, init);
    if (!res.ok) throw await problemError(res);
    return res.status === 204 ? null : res.json();
  }

  // A fresh (not cached) server Date is the best time we can know: it resets the trusted-time
  // mark, so a device clock that once ran fast does not lock the user out for ever.
  async function noteServerDate(res) {
    const date = Date.parse(res.headers.get('date') ?? '');
    if (!Number.isNaN(date)) await setHighWater(date / 1000).catch(() => {});
  }

  async function dpopRequest(method, url, device, { accessToken } = {}) {
    let nonce = dpopNonce;
    for (let attempt = 0; ; attempt++) {
      const proof = await createDpopProof({ device, htm: method, htu: url, nonce, accessToken });
      const headers = { DPoP: proof, accept: 'application/json' };
      if (accessToken) headers.authorization = `DPoP ${accessToken}`;
      const res = await request(url, { method, headers });
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

  function evaluate(state, entitlement, now) {
    return evaluateLicense({
      token: typeof state.license?.token === 'string' ? state.license.token : null,
      jwks: state.jwks,
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
    let jwks = (await kv.get(['jwks'])).jwks;
    let parsed;
    try {
      if (!jwks) throw new Error('no keys yet');
      parsed = await verifyJws(token, jwks, 'license+jwt');
    } catch {
      jwks = await syncJwks(); // first license, or a rotated signing key
      try {
        parsed = await verifyJws(token, jwks, 'license+jwt');
      } catch (e) {
        throw new LatchkeyError(`The service sent a license that does not verify (${e.message}).`);
      }
    }
    const claims = parsed.payload;
    const problem = claimTypeProblem(claims);
    if (problem) throw new LatchkeyError(`The service sent a malformed license (${problem}).`);
    if (claims.cnf.jkt !== (await jwkThumbprint(device.publicJwk))) {
      throw new LatchkeyError('The service bound the license to another key.');
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
    if (!stored.ok) throw new LatchkeyError('A newer license is already on this device.', { code: 'older license' });
    return claims;
  }

  async function syncJwks() {
    const res = await request('/.well-known/jwks.json', { headers: { accept: 'application/json' }, cache: 'no-store' });
    if (!res.ok) throw await problemError(res);
    const jwks = await acceptJwks(await res.json());
    // Keys only ever come from the service origin; a token never names its own key.
    await kv.put({ jwks: { keys: jwks.keys, fetchedAt: Date.now() } });
    return jwks;
  }

  /**
   * Sends a sign-out made offline, before anything else reaches the service. True when none
   * is pending (any more); false while still offline.
   */
  async function flushSignOut() {
    // Without storage (no IndexedDB) nothing can be pending.
    const { pendingSignOut } = await kv.get(['pendingSignOut']).catch(() => ({}));
    if (!pendingSignOut) return true;
    try {
      if (pendingSignOut === 'everywhere') {
        try {
          await postJson('/api/logout/everywhere');
        } catch (e) {
          // Nobody is there to confirm with a passkey now: end this session at least.
          if (!(e instanceof LatchkeyError && e.type === STEP_UP_REQUIRED)) throw e;
          await postJson('/api/logout');
        }
      } else {
        await postJson('/api/logout');
      }
    } catch (e) {
      if (e?.code === 'offline') return false;
      if (e?.status !== 401) throw e; // 401: that session had ended anyway
    }
    await kv.del(['pendingSignOut']);
    return true;
  }

  /** Signs out here at once; offline, the service is told at the next sync (before anything else). */
  async function signOutHere(kind, send) {
    abortAutofill();
    let failure = null;
    try {
      await send();
    } catch (e) {
      failure = e;
      // A refused or cancelled "everywhere" changes nothing; plain sign-out forgets anyway.
      if (e?.code !== 'offline' && kind === 'everywhere') throw e;
      if (e?.code === 'offline') await kv.put({ pendingSignOut: kind });
    }
    await forgetCurrentLicense();
    await kv.del(['account']);
    if (failure) throw failure;
  }

  async function syncStatusList() {
    const state = await readCheckState();
    const uri = state.license && peekPayload(state.license.token)?.status?.status_list?.uri;
    if (typeof uri !== 'string') return 'none';
    const res = await request(uri, { headers: { accept: 'application/statuslist+jwt' }, cache: 'no-store' });
    if (res.headers.get(CACHE_MARK)) {
      // The service worker's old copy: no news about revocations, and no check-in.
      throw new LatchkeyError('The revocation list could not be loaded (blocked or unreachable).', { code: 'status-unavailable' });
    }
    if (!res.ok) throw await problemError(res);
    const token = (await res.text()).trim();
    const { payload } = await verifyJws(token, state.jwks, 'statuslist+jwt');
    if (payload.sub !== uri || typeof payload.iat !== 'number') {
      throw new LatchkeyError('The service sent a status list for another license list.');
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
  }

  // ----------------------------------------------------------------------------- ceremonies

  // A pending conditional (autofill) request blocks every other WebAuthn call, so each
  // button-driven ceremony ends it first.
  function abortAutofill() {
    if (conditional) {
      conditional.abort();
      conditional = null;
    }
  }

  async function finishSignIn(credential) {
    const res = await request('/api/login/finish', {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify(credentialToJson(credential)),
    });
    if (!res.ok) {
      const error = await problemError(res);
      if (error.type === UNKNOWN_CREDENTIAL) {
        const id = typeof error.problem?.credential_id === 'string' ? error.problem.credential_id : credential.id;
        await api.signalUnknownCredential(id);
        error.message = 'This passkey no longer works here. It was removed or revoked; use another one.';
      }
      throw error;
    }
    const body = await res.json();
    await kv.put({ account: { user_id: body.user_id, username: body.username } });
    return body;
  }

  const api = {
    origin,
    base,
    rpId,

    /**
     * Creates a user and their first passkey; the browser is signed in afterwards.
     * @param {string} username
     * @param {{displayName?: string, signal?: AbortSignal}} [opts]
     * @returns {Promise<{user_id: string, credential_id: string, username: string}>}
     */
    async register(username, { displayName, signal } = {}) {
      abortAutofill();
      const body = { username };
      if (displayName) body.display_name = displayName;
      const options = await postJson('/api/register/start', body, { signal });
      const credential = await webauthn(() =>
        navigator.credentials.create({ publicKey: creationOptions(options.publicKey), signal }),
      );
      const result = await postJson('/api/register/finish', credentialToJson(credential), { signal });
      await kv.put({ account: { user_id: result.user_id, username: result.username ?? username } });
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
      abortAutofill();
      const options = await postJson('/api/register/enroll', { enrollment: code }, { signal });
      const credential = await webauthn(() =>
        navigator.credentials.create({ publicKey: creationOptions(options.publicKey), signal }),
      );
      const result = await postJson('/api/register/finish', credentialToJson(credential), { signal });
      await kv.put({ account: { user_id: result.user_id, username: result.username } });
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
      abortAutofill();
      const { username, code } = request ?? {};
      const options = await postJson('/api/register/recover', { username, code }, { signal });
      const credential = await webauthn(() =>
        navigator.credentials.create({ publicKey: creationOptions(options.publicKey), signal }),
      );
      const result = await postJson('/api/register/finish', credentialToJson(credential), { signal });
      await kv.put({ account: { user_id: result.user_id, username: result.username } });
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
      abortAutofill();
      let own = null;
      if (autofill) {
        own = new AbortController();
        conditional = own;
        signal = signal ? anySignal([signal, own.signal]) : own.signal;
      }
      try {
        const options = await postJson('/api/login/start', username && !autofill ? { username } : {}, { signal });
        const publicKey = requestOptions(options.publicKey);
        const credential = await webauthn(() =>
          navigator.credentials.get(autofill ? { publicKey, mediation: 'conditional', signal } : { publicKey, signal }),
        );
        if (own && conditional === own) conditional = null; // answered: nothing left to abort
        return await finishSignIn(credential);
      } finally {
        if (own && conditional === own) conditional = null;
      }
    },

    /** Ends this browser's session and forgets this user's license on this device. */
    async signOut() {
      await signOutHere('this', () => postJson('/api/logout'));
    },

    /**
     * Ends every session of this user (after a passkey confirmation if needed), then forgets
     * the license here. Offline, this device is signed out at once and the service is told at
     * the next sync (then, without a passkey at hand, at least this session ends).
     */
    async signOutEverywhere() {
      await signOutHere('everywhere', () => withStepUp(() => postJson('/api/logout/everywhere')));
    },

    /**
     * Confirms one of the signed-in user's passkeys (step-up). Adding or removing a passkey
     * and signing out everywhere need a recent confirmation; the methods that make those
     * changes ask for it by themselves.
     */
    async stepUp({ signal } = {}) {
      abortAutofill();
      const options = await postJson('/api/me/step-up/start', undefined, { signal });
      const credential = await webauthn(() =>
        navigator.credentials.get({ publicKey: requestOptions(options.publicKey), signal }),
      );
      return postJson('/api/me/step-up/finish', credentialToJson(credential), { signal });
    },

    /**
     * The signed-in user (GET /api/me), or null when signed out.
     * @returns {Promise<any | null>}
     */
    async me() {
      if (!(await flushSignOut())) return null;
      const res = await request('/api/me', { headers: { accept: 'application/json' }, cache: 'no-store' });
      if (res.status === 401) {
        await kv.del(['account']);
        return null;
      }
      if (!res.ok) throw await problemError(res);
      const me = await res.json();
      await kv.put({ account: { user_id: me.user_id, username: me.username } });
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
      abortAutofill();
      return withStepUp(async () => {
        const options = await postJson('/api/me/passkeys/start', undefined, { signal });
        const credential = await webauthn(() =>
          navigator.credentials.create({ publicKey: creationOptions(options.publicKey), signal }),
        );
        return postJson('/api/me/passkeys/finish', credentialToJson(credential), { signal });
      }, { signal });
    },

    /** @param {string} id @param {string} name */
    async renamePasskey(id, name) {
      const res = await request(`/api/me/passkeys/${encodeURIComponent(id)}`, {
        method: 'PATCH',
        headers: { 'content-type': 'application/json', accept: 'application/json' },
        body: JSON.stringify({ name }),
      });
      if (!res.ok) throw await problemError(res);
      return res.json();
    },

    /** Renames one of the user's devices. @param {string} id @param {string} name */
    async renameDevice(id, name) {
      const res = await request(`/api/me/devices/${encodeURIComponent(id)}`, {
        method: 'PATCH',
        headers: { 'content-type': 'application/json', accept: 'application/json' },
        body: JSON.stringify({ name }),
      });
      if (!res.ok) throw await problemError(res);
    },

    /**
     * Removes one of the user's devices: its licenses are revoked and the sign-ins that minted
     * them end, so it locks at its next sync. @param {string} id the device key's thumbprint
     */
    async removeDevice(id) {
      const res = await request(`/api/me/devices/${encodeURIComponent(id)}`, { method: 'DELETE' });
      if (!res.ok) throw await problemError(res);
    },

    /**
     * Makes a new set of one-time recovery codes for the signed-in user, replacing the old
     * set (after a passkey confirmation if needed). Show them once; they are not kept.
     * @returns {Promise<{codes: string[], created_at: string}>}
     */
    async recoveryCodes() {
      return withStepUp(() => postJson('/api/me/recovery-codes'));
    },

    /** The same as `recoveryCodes()`. */
    async makeRecoveryCodes() {
      return api.recoveryCodes();
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
    async removePasskey(id) {
      await withStepUp(async () => {
        const res = await request(`/api/me/passkeys/${encodeURIComponent(id)}`, { method: 'DELETE' });
        if (!res.ok) throw await problemError(res);
      });
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
    async fetchLicense() {
      const device = await api.ensureDeviceKey();
      const res = await dpopRequest('POST', `${origin}${base}/api/licenses`, device);
      if (res.status === 401) {
        await kv.del(['account']);
        throw await problemError(res, 'Sign in to get an offline license.');
      }
      if (!res.ok) throw await problemError(res);
      const body = await res.json();
      if (typeof body?.license !== 'string') throw new LatchkeyError('The service sent no license.');
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
      let state;
      try {
        state = await readCheckState();
      } catch (e) {
        return { ok: false, reason: REASONS.noLicense, detail: `storage: ${e.message}`, expiresAt: null, offline, username: null, entitlements: [] };
      }
      const v = await evaluate(state, entitlement, now);
      if (!(typeof state.hwm === 'number' && state.hwm + 1 >= now / 1000)) {
        await raiseHighWater(now / 1000).catch(() => {});
      }
      return {
        ok: v.ok,
        reason: v.reason,
        detail: v.detail,
        expiresAt: v.expiresAt,
        offline,
        username: v.claims?.name ?? null,
        entitlements: v.claims?.ent ?? [],
      };
    },

    /** Whether the last contact with the service failed (or the browser says it is offline). */
    isOffline() {
      return globalThis.navigator?.onLine === false || network === 'offline';
    },

    /**
     * When online: fetch the JWK set, refresh the license when signed in and it is due (none,
     * older than `refreshAfter`, bound to a key this device no longer has, or other
     * entitlements than the account has), then fetch the status list named in the license. A 401 keeps the stored license: it is still checked
     * against the status list.
     * @returns {Promise<SyncReport>}
     */
    async sync() {
      /** @type {SyncReport} */
      const report = { online: false, me: null, license: 'unchanged', status: 'unchanged', error: null };
      try {
        // A sign-out made offline goes first, before this browser's cookie is used for anything.
        if (!(await flushSignOut())) return report;
        await syncJwks();
      } catch (e) {
        report.error = e;
        return report;
      }
      if (network === 'offline') return report;
      report.online = true;
      try {
        report.me = await api.me();
        if (!report.me) report.license = 'signed-out';
        else if (await licenseDue(report.me)) {
          await api.fetchLicense();
          report.license = 'refreshed';
        }
      } catch (e) {
        report.license = e?.status === 401 ? 'signed-out' : 'failed';
        report.error = e;
      }
      try {
        report.status = await syncStatusList();
      } catch (e) {
        report.status = 'failed';
        report.error ??= e;
        // The service answered this sync; only the status list did not come (an ad blocker,
        // a proxy rule): that is not being offline, and the page should say so.
        network = 'online';
      }
      return report;
    },

    /**
     * Runs sync() now, whenever the browser comes back online or the page becomes visible,
     * and on a timer (every `retryMs` while offline). Returns a function that stops it.
     * @param {{intervalMs?: number, retryMs?: number, onSync?: (report: SyncReport) => void}} [opts]
     */
    startAutoSync({ intervalMs = 5 * 60_000, retryMs = 5_000, onSync } = {}) {
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
      globalThis.addEventListener?.('online', run);
      globalThis.document?.addEventListener('visibilitychange', onVisible);
      run();
      return () => {
        stopped = true;
        clearTimeout(timer);
        globalThis.removeEventListener?.('online', run);
        globalThis.document?.removeEventListener('visibilitychange', onVisible);
      };
    },

    /**
     * Offline proof that the passkey holder is here: a passkey assertion over a challenge
     * made on this device, verified against the passkey keys signed into the license (`cks`).
     * The license itself must pass check() first.
     * @param {{signal?: AbortSignal, timeout?: number}} [opts]
     * @returns {Promise<{ok: boolean, reason: string | null, detail?: string | null, username?: string | null}>}
     */
    async unlockWithPasskey({ signal, timeout = 60_000 } = {}) {
      abortAutofill();
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
    async callPremium(path = '/api/premium/example') {
      const state = await readCheckState();
      if (!state.license?.token) throw new LatchkeyError('Get an offline license first.');
      const device = await api.ensureDeviceKey();
      const res = await dpopRequest('GET', origin + base + path, device, { accessToken: state.license.token });
      if (!res.ok) throw await problemError(res);
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
  return new LatchkeyError(
    `This browser cannot keep a device key, so offline licenses cannot work here (${cause?.message ?? cause}). ` +
      'Private browsing windows often block this.',
    { code: 'storage', cause },
  );
}

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
    `The service answered ${res.status} ${res.statusText}.`.replace(/ \.$/, '.');
  return new LatchkeyError(message, {
    status: res.status,
    type: typeof problem?.type === 'string' ? problem.type : null,
    title: typeof problem?.title === 'string' ? problem.title : null,
    problem,
  });
}

/** Runs a WebAuthn call and turns its DOMExceptions into plain language (AbortError passes). */
async function webauthn(call) {
  if (!globalThis.PublicKeyCredential || !navigator.credentials) {
    throw new LatchkeyError('This browser does not support passkeys.');
  }
  let credential;
  try {
    credential = await call();
  } catch (e) {
    if (e?.name === 'AbortError') throw e;
    const messages = {
      NotAllowedError: 'The passkey request was cancelled or timed out.',
      InvalidStateError: 'This device already has a passkey for this account.',
      SecurityError: 'Passkeys are not allowed on this address.',
      NotSupportedError: 'This device cannot make a passkey of a kind the service accepts.',
    };
    throw new LatchkeyError(messages[e?.name] ?? `The passkey request failed (${e?.message ?? e}).`, {
      code: e?.name === 'NotAllowedError' ? 'cancelled' : null,
      cause: e,
    });
  }
  if (!credential) throw new LatchkeyError('The passkey request was cancelled.', { code: 'cancelled' });
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
