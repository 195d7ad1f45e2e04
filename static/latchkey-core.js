// Latchkey core: the pure checks behind offline licenses.
//
// Nothing here touches the DOM, IndexedDB or the network; every function works the same in
// a browser, a service worker and node >= 20 (WebCrypto with Ed25519, DecompressionStream).
// `latchkey.js` re-exports all of it, so most code should import that module instead.

/** Seconds of clock skew tolerated on `nbf`, `exp` and the trusted-time high-water mark. */
export const LEEWAY_SECONDS = 60;

/**
 * The reasons `check()` can give for refusing a license. The first ten are the ones a person
 * sees most; the last three cover licenses that were not made for this app at all.
 */
export const REASONS = Object.freeze({
  noLicense: 'no license',
  signature: 'signature invalid',
  expired: 'expired',
  notYetValid: 'not yet valid',
  clockBack: 'clock moved back',
  revoked: 'revoked',
  otherDevice: 'bound to another device',
  older: 'older license',
  entitlement: 'missing entitlement',
  statusUnknown: 'status unknown',
  issuer: 'wrong issuer',
  audience: 'wrong audience',
  malformed: 'invalid license',
  checkIn: 'check-in required',
});

/** Header members that would let a token choose its own verification key, or that we cannot honour. */
const FORBIDDEN_HEADER_MEMBERS = ['jwk', 'jku', 'x5u', 'x5c', 'x5t', 'x5t#S256', 'crit', 'b64'];

const encoder = new TextEncoder();
const strictDecoder = new TextDecoder('utf-8', { fatal: true });

/** A JOSE-level failure (bad token, bad key, bad signature); `message` says which rule failed. */
export class JoseError extends Error {
  constructor(message) {
    super(message);
    this.name = 'JoseError';
  }
}

// ---------------------------------------------------------------------------------------------
// base64url (RFC 4648 §5, no padding), strict: one encoding per byte string.

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const LOOKUP = new Int8Array(128).fill(-1);
for (let i = 0; i < ALPHABET.length; i++) LOOKUP[ALPHABET.charCodeAt(i)] = i;

/**
 * @param {ArrayBuffer | ArrayBufferView} data
 * @returns {string}
 */
export function b64urlEncode(data) {
  const bytes = toBytes(data);
  let out = '';
  let i = 0;
  for (; i + 2 < bytes.length; i += 3) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
    out += ALPHABET[n >> 18] + ALPHABET[(n >> 12) & 63] + ALPHABET[(n >> 6) & 63] + ALPHABET[n & 63];
  }
  const rest = bytes.length - i;
  if (rest === 1) {
    const n = bytes[i] << 16;
    out += ALPHABET[n >> 18] + ALPHABET[(n >> 12) & 63];
  } else if (rest === 2) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8);
    out += ALPHABET[n >> 18] + ALPHABET[(n >> 12) & 63] + ALPHABET[(n >> 6) & 63];
  }
  return out;
}

/**
 * Decodes unpadded base64url. Rejects padding, other alphabets, impossible lengths and
 * non-zero trailing bits, so that a token has exactly one spelling.
 * @param {string} text
 * @returns {Uint8Array}
 */
export function b64urlDecode(text) {
  if (typeof text !== 'string') throw new JoseError('base64url value is not a string');
  if (text.length % 4 === 1) throw new JoseError('base64url value has an impossible length');
  const out = new Uint8Array(Math.floor((text.length * 3) / 4));
  let acc = 0;
  let bits = 0;
  let j = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    const v = code < 128 ? LOOKUP[code] : -1;
    if (v < 0) throw new JoseError('base64url value has a character outside the alphabet');
    acc = ((acc << 6) | v) & 0xffffff;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[j++] = (acc >> bits) & 0xff;
    }
  }
  if (bits > 0 && (acc & ((1 << bits) - 1)) !== 0) {
    throw new JoseError('base64url value is not canonical');
  }
  return out;
}

function toBytes(data) {
  if (data instanceof Uint8Array) return data;
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  throw new TypeError('expected bytes');
}

/** @param {number} n @returns {Uint8Array} */
export function randomBytes(n) {
  return crypto.getRandomValues(new Uint8Array(n));
}

/** @param {ArrayBuffer | ArrayBufferView} data @returns {Promise<Uint8Array>} */
export async function sha256(data) {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', toBytes(data)));
}

function bytesEqual(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

function concatBytes(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// JSON with duplicate members refused (JSON.parse silently keeps the last one, which lets two
// parsers disagree about what a token says).

const WHITESPACE = ' \t\n\r';

/** @param {string} text valid JSON @returns {boolean} */
export function hasDuplicateMembers(text) {
  const stack = []; // a Set of member names per open object, null per open array
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      let end = i + 1;
      while (text[end] !== '"') end += text[end] === '\\' ? 2 : 1;
      const names = stack[stack.length - 1];
      if (names) {
        let k = end + 1;
        while (WHITESPACE.includes(text[k])) k++;
        if (text[k] === ':') {
          const name = JSON.parse(text.slice(i, end + 1));
          if (names.has(name)) return true;
          names.add(name);
        }
      }
      i = end;
    } else if (c === '{') stack.push(new Set());
    else if (c === '[') stack.push(null);
    else if (c === '}' || c === ']') stack.pop();
  }
  return false;
}

function parseJsonObject(bytes, what) {
  let text;
  let value;
  try {
    text = strictDecoder.decode(bytes);
    value = JSON.parse(text);
  } catch {
    throw new JoseError(`${what} is not valid JSON`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new JoseError(`${what} is not a JSON object`);
  }
  if (hasDuplicateMembers(text)) throw new JoseError(`${what} has a duplicate member`);
  return value;
}

// ---------------------------------------------------------------------------------------------
// Compact JWS

/**
 * @typedef {object} ParsedJws
 * @property {Record<string, any>} header
 * @property {Record<string, any>} payload
 * @property {Uint8Array} signature
 * @property {Uint8Array} signingInput ASCII of `header.payload`
 */

/**
 * Splits and decodes a compact JWS without verifying anything.
 * @param {string} token
 * @returns {ParsedJws}
 */
export function parseCompactJws(token) {
  if (typeof token !== 'string') throw new JoseError('token is not a string');
  const parts = token.split('.');
  if (parts.length !== 3) throw new JoseError('token does not have three parts');
  const [h, p, s] = parts;
  const header = parseJsonObject(b64urlDecode(h), 'header');
  const payload = parseJsonObject(b64urlDecode(p), 'payload');
  const signature = b64urlDecode(s);
  return { header, payload, signature, signingInput: encoder.encode(`${h}.${p}`) };
}

/**
 * Reads the payload of a compact JWS WITHOUT verifying it. Only for finding where things are
 * stored; never decide anything on its result.
 * @param {string} token
 * @returns {Record<string, any> | null}
 */
export function peekPayload(token) {
  try {
    return parseCompactJws(token).payload;
  } catch {
    return null;
  }
}

/**
 * @typedef {{kty: 'OKP', crv: 'Ed25519', x: string, kid: string, alg?: string, use?: string}} SigningJwk
 * @typedef {{keys: SigningJwk[]}} Jwks
 */

function isUsableSigningKey(k) {
  return (
    k !== null &&
    typeof k === 'object' &&
    k.kty === 'OKP' &&
    k.crv === 'Ed25519' &&
    typeof k.x === 'string' &&
    typeof k.kid === 'string' &&
    k.d === undefined &&
    (k.use === undefined || k.use === 'sig') &&
    (k.alg === undefined || k.alg === 'EdDSA')
  );
}

/**
 * Keeps the Ed25519 signing keys of a fetched JWK set whose `kid` is their RFC 7638
 * thumbprint (as the service publishes them). Throws when none is left.
 * @param {unknown} json
 * @returns {Promise<Jwks>}
 */
export async function acceptJwks(json) {
  if (!json || typeof json !== 'object' || !Array.isArray(json.keys)) {
    throw new JoseError('JWK set has no keys array');
  }
  const keys = [];
  for (const k of json.keys) {
    if (!isUsableSigningKey(k)) continue;
    try {
      if (b64urlDecode(k.x).length !== 32) continue;
      if ((await jwkThumbprint(k)) !== k.kid) continue;
    } catch {
      continue;
    }
    keys.push({ kty: 'OKP', crv: 'Ed25519', x: k.x, kid: k.kid, alg: 'EdDSA', use: 'sig' });
  }
  if (keys.length === 0) throw new JoseError('JWK set has no usable Ed25519 signing key');
  return { keys };
}

const importedVerifyKeys = new Map(); // x (the key material itself) -> CryptoKey

async function ed25519VerifyKey(x) {
  let key = importedVerifyKeys.get(x);
  if (!key) {
    const raw = b64urlDecode(x);
    if (raw.length !== 32) throw new JoseError('Ed25519 key has the wrong length');
    key = await crypto.subtle.importKey('raw', raw, { name: 'Ed25519' }, false, ['verify']);
    if (importedVerifyKeys.size > 64) importedVerifyKeys.clear();
    importedVerifyKeys.set(x, key);
  }
  return key;
}

/**
 * Verifies an EdDSA compact JWS of the given `typ` against a JWK set: header exactly `alg`
 * EdDSA and `typ`, a `kid` found once in the set, none of jwk/jku/x5u/x5c/crit, and a valid
 * 64-byte Ed25519 signature. Returns the parsed token; throws JoseError otherwise.
 * @param {string} token
 * @param {Jwks | null | undefined} jwks
 * @param {string} typ
 * @returns {Promise<ParsedJws>}
 */
export async function verifyJws(token, jwks, typ) {
  const parsed = parseCompactJws(token);
  const { header } = parsed;
  if (header.alg !== 'EdDSA') throw new JoseError(`header alg is ${JSON.stringify(header.alg)}, not EdDSA`);
  if (header.typ !== typ) throw new JoseError(`header typ is ${JSON.stringify(header.typ)}, not ${typ}`);
  for (const name of FORBIDDEN_HEADER_MEMBERS) {
    if (Object.hasOwn(header, name)) throw new JoseError(`header member ${name} is not allowed`);
  }
  if (typeof header.kid !== 'string') throw new JoseError('header kid is missing');
  const candidates = (jwks?.keys ?? []).filter((k) => isUsableSigningKey(k) && k.kid === header.kid);
  if (candidates.length !== 1) throw new JoseError(`signing key ${header.kid} is not known`);
  if (parsed.signature.length !== 64) throw new JoseError('signature has the wrong length');
  const key = await ed25519VerifyKey(candidates[0].x);
  const ok = await crypto.subtle.verify({ name: 'Ed25519' }, key, parsed.signature, parsed.signingInput);
  if (!ok) throw new JoseError('signature does not verify');
  return parsed;
}

// ---------------------------------------------------------------------------------------------
// JWK thumbprints (RFC 7638) and device keys

const THUMBPRINT_MEMBERS = {
  EC: ['crv', 'kty', 'x', 'y'],
  OKP: ['crv', 'kty', 'x'],
  RSA: ['e', 'kty', 'n'],
  oct: ['k', 'kty'],
};

/**
 * RFC 7638 SHA-256 thumbprint, base64url: the required members in lexicographic order.
 * @param {JsonWebKey} jwk
 * @returns {Promise<string>}
 */
export async function jwkThumbprint(jwk) {
  const members = THUMBPRINT_MEMBERS[jwk?.kty];
  if (!members) throw new JoseError('JWK kty is not supported');
  const canonical = {};
  for (const m of members) {
    if (typeof jwk[m] !== 'string') throw new JoseError(`JWK member ${m} is missing`);
    canonical[m] = jwk[m];
  }
  return b64urlEncode(await sha256(encoder.encode(JSON.stringify(canonical))));
}

/**
 * The public members of an OKP/Ed25519 or EC/P-256 JWK, nothing else.
 * @param {JsonWebKey} jwk
 * @returns {JsonWebKey}
 */
export function publicJwkOf(jwk) {
  if (jwk?.kty === 'OKP' && jwk.crv === 'Ed25519') return { kty: 'OKP', crv: 'Ed25519', x: jwk.x };
  if (jwk?.kty === 'EC' && jwk.crv === 'P-256') return { kty: 'EC', crv: 'P-256', x: jwk.x, y: jwk.y };
  throw new JoseError('only Ed25519 and P-256 keys are supported');
}

/** @param {JsonWebKey} jwk */
function algorithmsFor(jwk) {
  if (jwk?.kty === 'OKP' && jwk.crv === 'Ed25519') {
    return { jws: 'EdDSA', importAlg: { name: 'Ed25519' }, signAlg: { name: 'Ed25519' } };
  }
  if (jwk?.kty === 'EC' && jwk.crv === 'P-256') {
    return {
      jws: 'ES256',
      importAlg: { name: 'ECDSA', namedCurve: 'P-256' },
      signAlg: { name: 'ECDSA', hash: 'SHA-256' },
    };
  }
  throw new JoseError('only Ed25519 and P-256 keys are supported');
}

/** @param {JsonWebKey} jwk @returns {Promise<CryptoKey>} */
export async function importPublicJwk(jwk) {
  const { importAlg } = algorithmsFor(jwk);
  return crypto.subtle.importKey('jwk', publicJwkOf(jwk), importAlg, false, ['verify']);
}

/**
 * @typedef {object} DeviceKey
 * @property {'EdDSA' | 'ES256'} alg
 * @property {CryptoKey} privateKey non-extractable
 * @property {CryptoKey} publicKey
 * @property {JsonWebKey} publicJwk public members only
 * @property {string} jkt RFC 7638 thumbprint of publicJwk
 */

/**
 * Makes a NON-extractable signing key pair: Ed25519 where WebCrypto has it, P-256 otherwise.
 * @param {{prefer?: 'EdDSA' | 'ES256'}} [options]
 * @returns {Promise<DeviceKey>}
 */
export async function generateDeviceKey({ prefer = 'EdDSA' } = {}) {
  let pair = null;
  if (prefer === 'EdDSA') {
    try {
      pair = await crypto.subtle.generateKey({ name: 'Ed25519' }, false, ['sign', 'verify']);
    } catch {
      pair = null; // no Ed25519 in this browser: P-256 below
    }
  }
  if (!pair) pair = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign', 'verify']);
  if (pair.privateKey.extractable) throw new Error('device private key came out extractable');
  const publicJwk = publicJwkOf(await crypto.subtle.exportKey('jwk', pair.publicKey));
  return {
    alg: algorithmsFor(publicJwk).jws,
    privateKey: pair.privateKey,
    publicKey: pair.publicKey,
    publicJwk,
    jkt: await jwkThumbprint(publicJwk),
  };
}

/**
 * Proves the private key is really here and belongs to `publicJwk`: signs a fresh random
 * challenge with it and verifies the result with the public JWK. Never throws.
 * @param {{privateKey?: CryptoKey, publicJwk?: JsonWebKey} | null | undefined} device
 * @returns {Promise<boolean>}
 */
export async function provePossession(device) {
  try {
    if (!device?.privateKey || device.privateKey.type !== 'private') return false;
    const { signAlg } = algorithmsFor(device.publicJwk);
    const challenge = randomBytes(32);
    const signature = await crypto.subtle.sign(signAlg, device.privateKey, challenge);
    const publicKey = await importPublicJwk(device.publicJwk);
    return await crypto.subtle.verify(signAlg, publicKey, signature, challenge);
  } catch {
    return false;
  }
}

/**
 * Signs a compact JWS with a device key (EdDSA or ES256; ES256 output is raw r||s already).
 * @param {Record<string, any>} header
 * @param {Record<string, any>} payload
 * @param {{privateKey: CryptoKey, publicJwk: JsonWebKey}} device
 * @returns {Promise<string>}
 */
export async function signCompactJws(header, payload, device) {
  const { signAlg } = algorithmsFor(device.publicJwk);
  const input = `${b64urlEncode(encoder.encode(JSON.stringify(header)))}.${b64urlEncode(encoder.encode(JSON.stringify(payload)))}`;
  const signature = await crypto.subtle.sign(signAlg, device.privateKey, encoder.encode(input));
  return `${input}.${b64urlEncode(signature)}`;
}

/**
 * A DPoP proof (RFC 9449 §4) signed with the device key.
 * @param {object} options
 * @param {{privateKey: CryptoKey, publicJwk: JsonWebKey}} options.device
 * @param {string} options.htm HTTP method
 * @param {string} options.htu target URI without query and fragment
 * @param {string} [options.nonce] server-provided DPoP-Nonce
 * @param {string} [options.accessToken] sent as `Authorization: DPoP`; adds `ath`
 * @param {number} [options.now] ms since the epoch
 * @returns {Promise<string>}
 */
export async function createDpopProof({ device, htm, htu, nonce, accessToken, now = Date.now() }) {
  const url = new URL(htu);
  url.search = '';
  url.hash = '';
  const header = { typ: 'dpop+jwt', alg: algorithmsFor(device.publicJwk).jws, jwk: publicJwkOf(device.publicJwk) };
  const payload = { jti: b64urlEncode(randomBytes(16)), htm, htu: url.href, iat: Math.floor(now / 1000) };
  if (nonce) payload.nonce = nonce;
  if (accessToken) payload.ath = b64urlEncode(await sha256(encoder.encode(accessToken)));
  return signCompactJws(header, payload, device);
}

// ---------------------------------------------------------------------------------------------
// Token Status List (draft-ietf-oauth-status-list)

/**
 * Inflates zlib (RFC 1950) data, which is what `DecompressionStream('deflate')` reads.
 * @param {Uint8Array} bytes
 * @returns {Promise<Uint8Array>}
 */
export async function inflate(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('deflate'));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

// Inflating through a stream costs about 2 ms, far more than the checks around it, so the
// result is remembered per exact `lst` text. That is a pure function of its input, not a
// cached verdict: the list's signature, subject and times are still checked on every call.
const inflatedLists = new Map();

async function inflateList(lst) {
  let bytes = inflatedLists.get(lst);
  if (!bytes) {
    try {
      bytes = await inflate(b64urlDecode(lst));
    } catch {
      throw new JoseError('status list does not inflate');
    }
    if (inflatedLists.size >= 4) inflatedLists.delete(inflatedLists.keys().next().value);
    inflatedLists.set(lst, bytes);
  }
  return bytes;
}

/**
 * The status of entry `idx`: byte floor(idx*bits/8), counted from the least significant bit.
 * Throws when the index is beyond the list (that is not "valid", it is unknown).
 * @param {Uint8Array} bytes inflated list
 * @param {number} idx
 * @param {number} [bits] 1, 2, 4 or 8
 * @returns {number} 0 = valid
 */
export function statusAt(bytes, idx, bits = 1) {
  if (![1, 2, 4, 8].includes(bits)) throw new JoseError('status list bits must be 1, 2, 4 or 8');
  if (!Number.isSafeInteger(idx) || idx < 0) throw new JoseError('status index is not a non-negative integer');
  const perByte = 8 / bits;
  const byte = Math.floor(idx / perByte);
  if (byte >= bytes.length) throw new JoseError(`status index ${idx} is beyond the list`);
  const shift = (idx % perByte) * bits;
  return (bytes[byte] >> shift) & ((1 << bits) - 1);
}

/**
 * @typedef {object} StatusResult
 * @property {number} status 0 = valid, anything else = not valid
 * @property {boolean} stale past `exp` or past `iat + ttl`
 * @property {number} iat
 */

/**
 * Verifies a status list token for one license and reads its entry.
 * @param {string} token
 * @param {Jwks | null | undefined} jwks
 * @param {{uri: string, idx: number, now: number}} where `now` in ms
 * @returns {Promise<StatusResult>}
 */
export async function readStatusList(token, jwks, { uri, idx, now }) {
  const { payload } = await verifyJws(token, jwks, 'statuslist+jwt');
  if (payload.sub !== uri) throw new JoseError('status list is for another URI');
  if (!isNumericDate(payload.iat)) throw new JoseError('status list iat is not a number');
  if (payload.exp !== undefined && !isNumericDate(payload.exp)) throw new JoseError('status list exp is not a number');
  if (payload.ttl !== undefined && !(Number.isFinite(payload.ttl) && payload.ttl >= 0)) {
    throw new JoseError('status list ttl is not a positive number');
  }
  const list = payload.status_list;
  if (!list || typeof list !== 'object' || typeof list.lst !== 'string') throw new JoseError('status list has no lst');
  const bytes = await inflateList(list.lst);
  const status = statusAt(bytes, idx, list.bits);
  const nowSeconds = now / 1000;
  const stale =
    (payload.exp !== undefined && nowSeconds >= payload.exp) ||
    (payload.ttl !== undefined && nowSeconds > payload.iat + payload.ttl);
  return { status, stale, iat: payload.iat };
}

// ---------------------------------------------------------------------------------------------
// License claims

function isNumericDate(v) {
  return typeof v === 'number' && Number.isFinite(v) && v >= 0;
}

function isStringArray(v) {
  return Array.isArray(v) && v.every((s) => typeof s === 'string');
}

/**
 * Returns what is wrong with the shape of license claims, or null when every claim has its type.
 * @param {Record<string, any>} c
 * @returns {string | null}
 */
export function claimTypeProblem(c) {
  if (typeof c.iss !== 'string') return 'iss is not a string';
  if (!(typeof c.aud === 'string' || (isStringArray(c.aud) && c.aud.length > 0))) return 'aud is not a string';
  if (typeof c.sub !== 'string' || c.sub === '') return 'sub is not a string';
  if (!isNumericDate(c.iat)) return 'iat is not a NumericDate';
  if (!isNumericDate(c.exp)) return 'exp is not a NumericDate';
  if (c.nbf !== undefined && !isNumericDate(c.nbf)) return 'nbf is not a NumericDate';
  if (typeof c.jti !== 'string' || c.jti === '') return 'jti is not a string';
  if (!isStringArray(c.ent)) return 'ent is not an array of strings';
  if (!c.cnf || typeof c.cnf !== 'object' || typeof c.cnf.jkt !== 'string') return 'cnf.jkt is missing';
  const sl = c.status?.status_list;
  if (!sl || typeof sl !== 'object' || typeof sl.uri !== 'string' || !Number.isSafeInteger(sl.idx) || sl.idx < 0) {
    return 'status.status_list is malformed';
  }
  if (c.cks !== undefined) {
    if (!Array.isArray(c.cks)) return 'cks is not an array';
    for (const k of c.cks) {
      if (!k || typeof k !== 'object' || typeof k.kid !== 'string' || typeof k.kty !== 'string') {
        return 'cks has a malformed key';
      }
    }
  }
  if (c.name !== undefined && typeof c.name !== 'string') return 'name is not a string';
  if (c.chk !== undefined && !(Number.isSafeInteger(c.chk) && c.chk > 0)) return 'chk is not a positive integer';
  return null;
}

/**
 * @typedef {object} Verdict
 * @property {boolean} ok
 * @property {string | null} reason one of REASONS' values, null when ok
 * @property {string | null} detail which rule failed, for developers
 * @property {Record<string, any> | null} claims verified claims (null when the signature failed)
 * @property {Date | null} expiresAt the license's exp
 * @property {boolean | null} statusFresh whether a fresh status list was used
 */

/**
 * The whole offline decision for one license, from stored state. Pure apart from WebCrypto:
 * the caller loads the state and records the new high-water mark.
 *
 * Order: signature, claim types, issuer/audience, clock, validity window, newest license,
 * device binding, revocation status, entitlement.
 *
 * @param {object} input
 * @param {string | null | undefined} input.token the license
 * @param {Jwks | null | undefined} input.jwks pinned key set
 * @param {string} input.issuer expected `iss`
 * @param {string} input.audience expected in `aud`
 * @param {number} input.now device time, ms
 * @param {number} [input.highWater] trusted time high-water mark, seconds
 * @param {number} [input.newestIat] newest `iat` seen for this user
 * @param {{privateKey?: CryptoKey, publicJwk?: JsonWebKey} | null} [input.device]
 * @param {string | null} [input.statusToken] cached status list for the license's URI
 * @param {'allow' | 'lock'} [input.staleStatus]
 * @param {string} [input.entitlement]
 * @param {number} [input.leeway] seconds
 * @returns {Promise<Verdict>}
 */
export async function evaluateLicense(input) {
  const { token, jwks, issuer, audience, now, entitlement } = input;
  const leeway = input.leeway ?? LEEWAY_SECONDS;
  const nowSeconds = now / 1000;
  let claims = null;
  let statusFresh = null;
  const verdict = (reason, detail = null) => ({
    ok: reason === null,
    reason,
    detail,
    claims,
    expiresAt: claims ? new Date(claims.exp * 1000) : null,
    statusFresh,
  });

  if (!token) return verdict(REASONS.noLicense, 'no license is stored on this device');
  try {
    claims = (await verifyJws(token, jwks, 'license+jwt')).payload;
  } catch (e) {
    return verdict(REASONS.signature, e.message);
  }
  const typeProblem = claimTypeProblem(claims);
  if (typeProblem) {
    const detail = typeProblem;
    claims = null;
    return verdict(REASONS.malformed, detail);
  }
  if (claims.iss !== issuer) return verdict(REASONS.issuer, `iss is ${claims.iss}`);
  const audiences = typeof claims.aud === 'string' ? [claims.aud] : claims.aud;
  if (!audiences.includes(audience)) return verdict(REASONS.audience, `aud is ${audiences.join(' ')}`);

  const highWater = Math.max(input.highWater ?? 0, claims.iat);
  if (nowSeconds < highWater - leeway) {
    return verdict(REASONS.clockBack, `device time is ${Math.round(highWater - nowSeconds)} s behind trusted time`);
  }
  if (claims.nbf !== undefined && nowSeconds < claims.nbf - leeway) return verdict(REASONS.notYetValid, 'before nbf');
  if (nowSeconds < claims.iat - leeway) return verdict(REASONS.notYetValid, 'before iat');
  if (nowSeconds >= claims.exp + leeway) return verdict(REASONS.expired, 'past exp');
  if (input.newestIat !== undefined && input.newestIat !== null && claims.iat < input.newestIat) {
    return verdict(REASONS.older, 'a newer license was seen for this user');
  }

  const device = input.device;
  if (!device?.publicJwk) return verdict(REASONS.otherDevice, 'this device has no key');
  let deviceJkt;
  try {
    deviceJkt = await jwkThumbprint(device.publicJwk);
  } catch {
    return verdict(REASONS.otherDevice, 'this device key is unreadable');
  }
  if (deviceJkt !== claims.cnf.jkt) return verdict(REASONS.otherDevice, 'cnf.jkt is another key');
  if (!(await provePossession(device))) return verdict(REASONS.otherDevice, 'the private key is not on this device');

  const { uri, idx } = claims.status.status_list;
  // The newest time the service vouched for this license: its own iat, or the signed iat of
  // the status list held. A copy read from a cache keeps its old iat, so it is no check-in.
  let checkedIn = claims.iat;
  if (input.statusToken) {
    let result;
    try {
      result = await readStatusList(input.statusToken, jwks, { uri, idx, now });
    } catch (e) {
      return verdict(REASONS.statusUnknown, e.message);
    }
    if (result.status !== 0) return verdict(REASONS.revoked, `status ${result.status} at index ${idx}`);
    statusFresh = !result.stale;
    checkedIn = Math.max(checkedIn, result.iat);
  } else {
    statusFresh = false;
  }
  if (claims.chk !== undefined && nowSeconds - checkedIn > claims.chk + leeway) {
    const days = ((nowSeconds - checkedIn) / 86400).toFixed(1);
    return verdict(REASONS.checkIn, `the newest status list held was issued ${days} days ago; chk is ${claims.chk} s`);
  }
  if (!statusFresh && input.staleStatus === 'lock') {
    return verdict(REASONS.statusUnknown, 'no fresh status list');
  }

  if (entitlement !== undefined && entitlement !== null && !claims.ent.includes(entitlement)) {
    return verdict(REASONS.entitlement, `${entitlement} is not in ent`);
  }
  return verdict(null);
}

// ---------------------------------------------------------------------------------------------
// WebAuthn assertions, checked offline against the license's `cks` keys

/**
 * Converts a DER ECDSA signature (SEQUENCE of two INTEGERs) to raw r||s.
 * @param {Uint8Array} der
 * @param {number} [size] bytes per integer (32 for P-256)
 * @returns {Uint8Array}
 */
export function derToRawSignature(der, size = 32) {
  const fail = (why) => {
    throw new JoseError(`DER signature: ${why}`);
  };
  let i = 0;
  if (der[i++] !== 0x30) fail('not a SEQUENCE');
  let len = der[i++];
  if (len === 0x81) len = der[i++];
  else if (len & 0x80) fail('bad length');
  if (i + len !== der.length) fail('length mismatch');
  const out = new Uint8Array(size * 2);
  for (let part = 0; part < 2; part++) {
    if (der[i++] !== 0x02) fail('not an INTEGER');
    const l = der[i++];
    if (!l || l > size + 1 || i + l > der.length) fail('bad INTEGER length');
    let v = der.subarray(i, i + l);
    i += l;
    if (v[0] & 0x80) fail('negative INTEGER');
    if (v.length > 1 && v[0] === 0 && !(v[1] & 0x80)) fail('INTEGER not minimal');
    if (v[0] === 0 && v.length > 1) v = v.subarray(1);
    if (v.length > size) fail('INTEGER too large');
    out.set(v, part * size + size - v.length);
  }
  if (i !== der.length) fail('trailing bytes');
  return out;
}

const FLAG_UP = 0x01;
const FLAG_UV = 0x04;

/**
 * @typedef {object} AssertionInput
 * @property {string} credentialId base64url raw id
 * @property {Uint8Array} clientDataJSON
 * @property {Uint8Array} authenticatorData
 * @property {Uint8Array} signature as the authenticator returned it (DER for ES256)
 * @property {Uint8Array} challenge the challenge this page made
 * @property {string} origin expected origin
 * @property {string} rpId
 * @property {Array<JsonWebKey & {kid: string, alg?: string}>} keys the license's `cks`
 * @property {boolean} [requireUserVerification] default true
 */

/**
 * Verifies a WebAuthn assertion locally. Returns `{ok, reason, detail}`; reasons:
 * "passkey not recognised", "passkey check failed", "user not verified", "signature invalid".
 * @param {AssertionInput} a
 * @returns {Promise<{ok: boolean, reason: string | null, detail: string | null}>}
 */
export async function verifyAssertion(a) {
  const result = (reason, detail = null) => ({ ok: reason === null, reason, detail });
  const key = (a.keys ?? []).find((k) => k && k.kid === a.credentialId);
  if (!key) return result('passkey not recognised', 'credential id is not in cks');

  let client;
  try {
    client = JSON.parse(strictDecoder.decode(a.clientDataJSON));
  } catch {
    return result('passkey check failed', 'clientDataJSON is not JSON');
  }
  if (client?.type !== 'webauthn.get') return result('passkey check failed', 'clientData type is not webauthn.get');
  if (client.challenge !== b64urlEncode(a.challenge)) return result('passkey check failed', 'challenge does not match');
  if (client.origin !== a.origin) return result('passkey check failed', `origin is ${client.origin}`);
  if (client.crossOrigin === true) return result('passkey check failed', 'assertion was made in a cross-origin frame');

  const authData = a.authenticatorData;
  if (!authData || authData.length < 37) return result('passkey check failed', 'authenticatorData too short');
  const rpIdHash = await sha256(encoder.encode(a.rpId));
  if (!bytesEqual(authData.subarray(0, 32), rpIdHash)) return result('passkey check failed', 'rpIdHash does not match');
  const flags = authData[32];
  if (!(flags & FLAG_UP)) return result('passkey check failed', 'user was not present');
  if ((a.requireUserVerification ?? true) && !(flags & FLAG_UV)) return result('user not verified');

  const signed = concatBytes(authData, await sha256(a.clientDataJSON));
  try {
    let ok;
    if (key.kty === 'EC' && key.crv === 'P-256' && (key.alg === undefined || key.alg === 'ES256')) {
      const publicKey = await crypto.subtle.importKey(
        'jwk',
        { kty: 'EC', crv: 'P-256', x: key.x, y: key.y },
        { name: 'ECDSA', namedCurve: 'P-256' },
        false,
        ['verify'],
      );
      const raw = derToRawSignature(a.signature, 32);
      ok = await crypto.subtle.verify({ name: 'ECDSA', hash: 'SHA-256' }, publicKey, raw, signed);
    } else if (key.kty === 'OKP' && key.crv === 'Ed25519' && (key.alg === undefined || key.alg === 'EdDSA')) {
      const publicKey = await ed25519VerifyKey(key.x);
      ok = await crypto.subtle.verify({ name: 'Ed25519' }, publicKey, a.signature, signed);
    } else {
      return result('passkey not recognised', `key type ${key.kty}/${key.alg} is not supported offline`);
    }
    return ok ? result(null) : result('signature invalid', 'assertion signature does not verify');
  } catch (e) {
    return result('signature invalid', e.message);
  }
}
