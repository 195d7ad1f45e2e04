// Unit tests of the offline verifier in static/latchkey.js (node >= 20: WebCrypto Ed25519,
// DecompressionStream). No browser, no IndexedDB: only the exported pure functions.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { deflateSync } from 'node:zlib';
import * as nodeCrypto from 'node:crypto';
import * as lk from '../../static/latchkey.js';

const T = { timeout: 10_000 };
const enc = new TextEncoder();
const b64 = (v) => lk.b64urlEncode(typeof v === 'string' ? enc.encode(v) : v);

const ORIGIN = 'https://latchkey.test';
const STATUS_URI = `${ORIGIN}/api/status-lists/1`;
const NOW = Date.UTC(2025, 0, 15, 12, 0, 0);
const NOW_S = NOW / 1000;

async function makeSigner() {
  const pair = await crypto.subtle.generateKey({ name: 'Ed25519' }, true, ['sign', 'verify']);
  const { x } = await crypto.subtle.exportKey('jwk', pair.publicKey);
  const kid = await lk.jwkThumbprint({ kty: 'OKP', crv: 'Ed25519', x });
  return { privateKey: pair.privateKey, kid, jwk: { kty: 'OKP', crv: 'Ed25519', x, kid, alg: 'EdDSA', use: 'sig' } };
}

async function signRaw(headerJson, payloadJson, privateKey) {
  const input = `${b64(headerJson)}.${b64(payloadJson)}`;
  const signature = await crypto.subtle.sign({ name: 'Ed25519' }, privateKey, enc.encode(input));
  return `${input}.${lk.b64urlEncode(signature)}`;
}

const sign = (header, payload, privateKey) => signRaw(JSON.stringify(header), JSON.stringify(payload), privateKey);

/** A service key, a device, a license and a status list, all valid at NOW. */
async function world() {
  const signer = await makeSigner();
  const jwks = { keys: [signer.jwk] };
  const device = await lk.generateDeviceKey();
  const claims = {
    iss: ORIGIN,
    aud: ORIGIN,
    sub: 'user-1',
    iat: NOW_S - 600,
    nbf: NOW_S - 600,
    exp: NOW_S + 30 * 86400,
    jti: 'license-1',
    ent: ['premium'],
    cnf: { jkt: device.jkt },
    status: { status_list: { idx: 5, uri: STATUS_URI } },
    cks: [],
    name: 'alice',
  };
  const header = { alg: 'EdDSA', typ: 'license+jwt', kid: signer.kid };
  const license = (c = {}, h = {}, key = signer.privateKey) => sign({ ...header, ...h }, { ...claims, ...c }, key);
  const statusList = ({ revoked = [], size = 4, sub = STATUS_URI, iat = NOW_S - 60, exp = NOW_S + 3600, ttl = 300, h = {} } = {}) => {
    const bytes = new Uint8Array(size);
    for (const i of revoked) bytes[i >> 3] |= 1 << (i & 7);
    const payload = { sub, iat, exp, ttl, status_list: { bits: 1, lst: lk.b64urlEncode(deflateSync(bytes)) } };
    return sign({ alg: 'EdDSA', typ: 'statuslist+jwt', kid: signer.kid, ...h }, payload, signer.privateKey);
  };
  const input = async (over = {}) => ({
    token: await license(),
    jwks,
    issuer: ORIGIN,
    audience: ORIGIN,
    now: NOW,
    highWater: 0,
    device,
    statusToken: await statusList(),
    staleStatus: 'allow',
    entitlement: 'premium',
    ...over,
  });
  return { signer, jwks, device, claims, header, license, statusList, input };
}

async function reasonFor(over) {
  const w = await world();
  const verdict = await lk.evaluateLicense(await w.input(typeof over === 'function' ? await over(w) : over));
  return verdict.reason;
}

describe('base64url', T, () => {
  test('round-trips every length', T, () => {
    for (let n = 0; n < 40; n++) {
      const bytes = lk.randomBytes(n);
      assert.deepEqual(lk.b64urlDecode(lk.b64urlEncode(bytes)), bytes);
    }
    assert.equal(lk.b64urlEncode(new Uint8Array([0xfb, 0xff])), '-_8');
  });

  test('refuses padding, other alphabets, impossible lengths and non-zero trailing bits', T, () => {
    for (const bad of ['QQ==', 'a+b/', 'abcde', 'QR', 'ab c', 'é']) {
      assert.throws(() => lk.b64urlDecode(bad), lk.JoseError, bad);
    }
    assert.deepEqual(lk.b64urlDecode('QQ'), new Uint8Array([0x41]));
  });
});

describe('JWK thumbprints (RFC 7638)', T, () => {
  test('RFC 7638 §3.1 RSA example', T, async () => {
    const jwk = {
      kty: 'RSA',
      n:
        '0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMs' +
        'tn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn' +
        '1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw',
      e: 'AQAB',
      alg: 'RS256',
      kid: '2011-04-29',
    };
    assert.equal(await lk.jwkThumbprint(jwk), 'NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs');
  });

  test('RFC 8037 A.3 Ed25519 example', T, async () => {
    const jwk = { kty: 'OKP', crv: 'Ed25519', x: '11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo' };
    assert.equal(await lk.jwkThumbprint(jwk), 'kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k');
  });

  test('ignores members outside the required set and refuses unknown key types', T, async () => {
    const jwk = { kty: 'OKP', crv: 'Ed25519', x: '11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo' };
    assert.equal(await lk.jwkThumbprint({ ...jwk, kid: 'x', use: 'sig' }), await lk.jwkThumbprint(jwk));
    await assert.rejects(lk.jwkThumbprint({ kty: 'XYZ' }), lk.JoseError);
    await assert.rejects(lk.jwkThumbprint({ kty: 'EC', crv: 'P-256', x: 'AA' }), lk.JoseError);
  });
});

describe('compact JWS', T, () => {
  test('RFC 8037 A.4 token verifies as a signature but is refused without typ and kid', T, async () => {
    const token =
      'eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg';
    const x = '11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo';
    const x0 = '11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo';
    const [h, p, s] = token.split('.');
    const rfcKey = await lk.importPublicJwk({ kty: 'OKP', crv: 'Ed25519', x: x0 });
    assert.equal(await crypto.subtle.verify({ name: 'Ed25519' }, rfcKey, lk.b64urlDecode(s), enc.encode(`${h}.${p}`)), true);
    // ...but a license must be a JSON object with a typ and a kid.
    assert.throws(() => lk.parseCompactJws(token), /payload is not valid JSON/);
    const kid = await lk.jwkThumbprint({ kty: 'OKP', crv: 'Ed25519', x });
    const jwks = await lk.acceptJwks({ keys: [{ kty: 'OKP', crv: 'Ed25519', x, kid }] });
    assert.equal(jwks.keys[0].kid, 'kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k');
    await assert.rejects(lk.verifyJws(token, jwks, 'license+jwt'), lk.JoseError);
  });

  test('duplicate members are found at any depth, however they are spelled', T, () => {
    assert.equal(lk.hasDuplicateMembers('{"a":1,"b":{"a":2}}'), false);
    assert.equal(lk.hasDuplicateMembers('{"a":1,"a":2}'), true);
    assert.equal(lk.hasDuplicateMembers('{"a":1,"\\u0061":2}'), true);
    assert.equal(lk.hasDuplicateMembers('{"x":[{"a":1},{"a":2}]}'), false);
    assert.equal(lk.hasDuplicateMembers('{"x":{"k":"a:\\"","k":1}}'), true);
    assert.equal(lk.hasDuplicateMembers('{"s":"{\\"a\\":1,\\"a\\":2}"}'), false);
  });
});

describe('license checks', T, () => {
  test('a valid license for this device unlocks the entitlement', T, async () => {
    const w = await world();
    const verdict = await lk.evaluateLicense(await w.input());
    assert.equal(verdict.ok, true, verdict.detail);
    assert.equal(verdict.reason, null);
    assert.equal(verdict.expiresAt.getTime(), (NOW_S + 30 * 86400) * 1000);
    assert.equal(verdict.statusFresh, true);
  });

  test('no license', T, async () => {
    assert.equal(await reasonFor({ token: null }), 'no license');
  });

  // [what the detail must say, how to spoil the token]
  const refused = {
    'alg none': [/alg/, async (w) => ({ token: `${b64(JSON.stringify({ ...w.header, alg: 'none' }))}.${b64(JSON.stringify(w.claims))}.` })],
    'alg HS256': [/alg/, async (w) => ({ token: await w.license({}, { alg: 'HS256' }) })],
    'wrong typ': [/typ/, async (w) => ({ token: await w.license({}, { typ: 'JWT' }) })],
    'missing typ': [/typ/, async (w) => ({ token: await w.license({}, { typ: undefined }) })],
    'unknown kid': [/not known/, async (w) => ({ token: await w.license({}, { kid: 'not-a-known-key' }) })],
    'crit present': [/crit/, async (w) => ({ token: await w.license({}, { crit: ['exp'] }) })],
    'jku present': [/jku/, async (w) => ({ token: await w.license({}, { jku: 'https://evil.test/jwks.json' }) })],
    'x5u present': [/x5u/, async (w) => ({ token: await w.license({}, { x5u: 'https://evil.test/cert.pem' }) })],
    'x5c present': [/x5c/, async (w) => ({ token: await w.license({}, { x5c: ['MIIB'] }) })],
    'header jwk naming an attacker key': [
      /jwk/,
      async (w) => {
        const evil = await makeSigner();
        return { token: await w.license({}, { jwk: evil.jwk, kid: evil.kid }, evil.privateKey) };
      },
    ],
    'header jwk with the real kid': [
      /jwk/,
      async (w) => {
        const evil = await makeSigner();
        return { token: await w.license({}, { jwk: evil.jwk }, evil.privateKey) };
      },
    ],
    'signed by another Ed25519 key': [/does not verify/, async (w) => ({ token: await w.license({}, {}, (await makeSigner()).privateKey) })],
    'bit flipped in the signature': [
      /does not verify/,
      async (w) => {
        const [h, p, s] = (await w.license()).split('.');
        const sig = lk.b64urlDecode(s);
        sig[10] ^= 1;
        return { token: `${h}.${p}.${lk.b64urlEncode(sig)}` };
      },
    ],
    'payload edited after signing': [
      /does not verify/,
      async (w) => {
        const [h, , s] = (await w.license()).split('.');
        return { token: `${h}.${b64(JSON.stringify({ ...w.claims, ent: ['premium', 'gold'] }))}.${s}` };
      },
    ],
    'signature truncated': [/wrong length/, async (w) => ({ token: (await w.license()).slice(0, -2) })],
    'signature with non-canonical base64url': [
      /not canonical/,
      async (w) => {
        // 64 bytes take 86 characters; the last one carries 2 bits of data and 4 unused bits,
        // so it is one of A, Q, g, w and the next letter of the alphabet spells the same bytes.
        const token = await w.license();
        const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
        return { token: token.slice(0, -1) + alphabet[alphabet.indexOf(token.at(-1)) + 1] };
      },
    ],
    'duplicate header member': [
      /header has a duplicate/,
      async (w) => {
        const header = `{"alg":"EdDSA","typ":"license+jwt","kid":"${w.signer.kid}","alg":"EdDSA"}`;
        return { token: await signRaw(header, JSON.stringify(w.claims), w.signer.privateKey) };
      },
    ],
    'duplicate claim': [
      /payload has a duplicate/,
      async (w) => {
        const payload = JSON.stringify(w.claims).replace(/}$/, ',"ent":["premium","gold"]}');
        return { token: await signRaw(JSON.stringify(w.header), payload, w.signer.privateKey) };
      },
    ],
    'four segments': [/three parts/, async (w) => ({ token: `${await w.license()}.e30` })],
    'not JSON inside': [/not valid JSON/, async () => ({ token: `${b64('nope')}.${b64('{}')}.${b64('x')}` })],
    'empty key set': [/not known/, async () => ({ jwks: { keys: [] } })],
    'no key set at all': [/not known/, async () => ({ jwks: null })],
  };
  for (const [name, [detail, spoil]] of Object.entries(refused)) {
    test(`signature invalid: ${name}`, T, async () => {
      const w = await world();
      const verdict = await lk.evaluateLicense(await w.input(await spoil(w)));
      assert.equal(verdict.reason, 'signature invalid');
      assert.match(verdict.detail, detail);
      assert.equal(verdict.claims, null);
    });
  }

  const claimCases = {
    'wrong iss': [{ iss: 'https://evil.test' }, 'wrong issuer'],
    'wrong aud': [{ aud: 'https://other-app.test' }, 'wrong audience'],
    'iat as a string': [{ iat: String(NOW_S) }, 'invalid license'],
    'exp missing': [{ exp: undefined }, 'invalid license'],
    'ent not an array': [{ ent: 'premium' }, 'invalid license'],
    'cnf missing': [{ cnf: undefined }, 'invalid license'],
    'status idx negative': [{ status: { status_list: { idx: -1, uri: STATUS_URI } } }, 'invalid license'],
    'sub a number': [{ sub: 42 }, 'invalid license'],
    expired: [{ exp: NOW_S - 61 }, 'expired'],
    'not yet valid (nbf)': [{ nbf: NOW_S + 120 }, 'not yet valid'],
    'missing entitlement': [{ ent: ['basic'] }, 'missing entitlement'],
  };
  for (const [name, [claims, reason]] of Object.entries(claimCases)) {
    test(`${reason}: ${name}`, T, async () => {
      assert.equal(await reasonFor(async (w) => ({ token: await w.license(claims) })), reason);
    });
  }

  test('exp and nbf have a 60 s leeway, and aud may be an array', T, async () => {
    assert.equal(await reasonFor(async (w) => ({ token: await w.license({ exp: NOW_S - 30 }) })), null);
    assert.equal(await reasonFor(async (w) => ({ token: await w.license({ nbf: NOW_S + 30 }) })), null);
    assert.equal(await reasonFor(async (w) => ({ token: await w.license({ aud: ['https://x.test', ORIGIN] }) })), null);
  });

  test('clock moved back: device time behind the trusted high-water mark', T, async () => {
    assert.equal(await reasonFor({ highWater: NOW_S + 3600 }), 'clock moved back');
    assert.equal(await reasonFor({ highWater: NOW_S + 30 }), null);
    // The license's own iat counts as trusted time too.
    assert.equal(await reasonFor(async (w) => ({ token: await w.license({ iat: NOW_S + 7200, nbf: NOW_S + 7200 }) })), 'clock moved back');
  });

  test('older license: a newer iat was already seen for this user', T, async () => {
    assert.equal(await reasonFor(async (w) => ({ newestIat: w.claims.iat + 1 })), 'older license');
    assert.equal(await reasonFor(async (w) => ({ newestIat: w.claims.iat })), null);
  });

  test('bound to another device: another key thumbprint', T, async () => {
    assert.equal(await reasonFor({ device: await lk.generateDeviceKey() }), 'bound to another device');
  });

  test('bound to another device: the right public key but not its private key', T, async () => {
    const reason = await reasonFor(async (w) => ({
      device: { publicJwk: w.device.publicJwk, privateKey: (await lk.generateDeviceKey()).privateKey },
    }));
    assert.equal(reason, 'bound to another device');
  });

  test('bound to another device: no device key at all', T, async () => {
    assert.equal(await reasonFor({ device: null }), 'bound to another device');
  });

  test('a P-256 (ES256) device key works too', T, async () => {
    const w = await world();
    const device = await lk.generateDeviceKey({ prefer: 'ES256' });
    assert.equal(device.alg, 'ES256');
    const verdict = await lk.evaluateLicense(await w.input({ device, token: await w.license({ cnf: { jkt: device.jkt } }) }));
    assert.equal(verdict.ok, true, verdict.detail);
  });
});

describe('status lists', T, () => {
  test('revoked: the license index bit is set', T, async () => {
    assert.equal(await reasonFor(async (w) => ({ statusToken: await w.statusList({ revoked: [5] }) })), 'revoked');
  });

  test('neighbouring bits do not matter', T, async () => {
    assert.equal(await reasonFor(async (w) => ({ statusToken: await w.statusList({ revoked: [4, 6, 13] }) })), null);
  });

  test('status unknown: the list is for another URI', T, async () => {
    const reason = await reasonFor(async (w) => ({ statusToken: await w.statusList({ sub: `${ORIGIN}/api/status-lists/2` }) }));
    assert.equal(reason, 'status unknown');
  });

  test('status unknown: the index is beyond the list', T, async () => {
    const reason = await reasonFor(async (w) => ({ token: await w.license({ status: { status_list: { idx: 40, uri: STATUS_URI } } }) }));
    assert.equal(reason, 'status unknown');
  });

  test('status unknown: list signed by an unknown key, or with the wrong typ', T, async () => {
    const evil = await makeSigner();
    assert.equal(await reasonFor(async (w) => ({ statusToken: await w.statusList({ h: { kid: evil.kid } }) })), 'status unknown');
    assert.equal(await reasonFor(async (w) => ({ statusToken: await w.statusList({ h: { typ: 'JWT' } }) })), 'status unknown');
    const forged = await sign({ alg: 'EdDSA', typ: 'statuslist+jwt', kid: evil.kid }, { sub: STATUS_URI, iat: NOW_S, status_list: { bits: 1, lst: '' } }, evil.privateKey);
    assert.equal(await reasonFor({ statusToken: forged }), 'status unknown');
  });

  test('stale list (past iat + ttl, or past exp): allowed by default, locked on request', T, async () => {
    const staleTtl = async (w) => w.statusList({ iat: NOW_S - 600, ttl: 300 });
    const staleExp = async (w) => w.statusList({ exp: NOW_S - 1, ttl: undefined });
    assert.equal(await reasonFor(async (w) => ({ statusToken: await staleTtl(w) })), null);
    assert.equal(await reasonFor(async (w) => ({ statusToken: await staleTtl(w), staleStatus: 'lock' })), 'status unknown');
    assert.equal(await reasonFor(async (w) => ({ statusToken: await staleExp(w), staleStatus: 'lock' })), 'status unknown');
    assert.equal(await reasonFor({ statusToken: null }), null);
    assert.equal(await reasonFor({ statusToken: null, staleStatus: 'lock' }), 'status unknown');
  });

  test('a stale list that says revoked still revokes', T, async () => {
    const reason = await reasonFor(async (w) => ({ statusToken: await w.statusList({ revoked: [5], iat: NOW_S - 9000 }) }));
    assert.equal(reason, 'revoked');
  });

  test('bit order: index i is bit i % 8 of byte floor(i / 8), least significant first', T, () => {
    const bytes = new Uint8Array([0b0000_0010, 0b1000_0000]);
    assert.equal(lk.statusAt(bytes, 0), 0);
    assert.equal(lk.statusAt(bytes, 1), 1);
    assert.equal(lk.statusAt(bytes, 15), 1);
    assert.equal(lk.statusAt(bytes, 14), 0);
    assert.equal(lk.statusAt(new Uint8Array([0b1110_0100]), 1, 2), 1);
    assert.equal(lk.statusAt(new Uint8Array([0b1110_0100]), 3, 2), 3);
    assert.throws(() => lk.statusAt(bytes, 16), /beyond the list/);
  });

  test('the zlib format (RFC 1950) is what inflate reads', T, async () => {
    const bytes = lk.randomBytes(1000);
    assert.deepEqual(await lk.inflate(deflateSync(bytes)), bytes);
  });
});

describe('JWK sets', T, () => {
  test('keeps Ed25519 signing keys whose kid is their thumbprint, drops the rest', T, async () => {
    const good = await makeSigner();
    const other = await makeSigner();
    const jwks = await lk.acceptJwks({
      keys: [
        good.jwk,
        { ...other.jwk, kid: 'chosen-by-hand' },
        { ...other.jwk, use: 'enc' },
        { kty: 'EC', crv: 'P-256', x: 'a', y: 'b', kid: 'ec' },
        { ...other.jwk, d: 'private-part' },
      ],
    });
    assert.deepEqual(jwks.keys.map((k) => k.kid), [good.kid]);
    await assert.rejects(lk.acceptJwks({ keys: [{ ...other.jwk, kid: 'x' }] }), lk.JoseError);
    await assert.rejects(lk.acceptJwks({}), lk.JoseError);
  });
});

describe('device keys and DPoP proofs', T, () => {
  test('the device private key is not extractable and proves possession', T, async () => {
    const device = await lk.generateDeviceKey();
    assert.equal(device.alg, 'EdDSA');
    assert.equal(device.privateKey.extractable, false);
    await assert.rejects(crypto.subtle.exportKey('jwk', device.privateKey));
    assert.equal(await lk.provePossession(device), true);
    assert.equal(device.jkt, await lk.jwkThumbprint(device.publicJwk));
  });

  for (const prefer of ['EdDSA', 'ES256']) {
    test(`a ${prefer} DPoP proof has the RFC 9449 shape and verifies with its own jwk`, T, async () => {
      const device = await lk.generateDeviceKey({ prefer });
      const proof = await lk.createDpopProof({
        device,
        htm: 'GET',
        htu: `${ORIGIN}/api/premium/example?x=1#f`,
        nonce: 'n-1',
        accessToken: 'license.token.here',
        now: NOW,
      });
      const { header, payload, signature, signingInput } = lk.parseCompactJws(proof);
      assert.deepEqual(Object.keys(header).sort(), ['alg', 'jwk', 'typ']);
      assert.equal(header.typ, 'dpop+jwt');
      assert.equal(header.alg, prefer);
      assert.equal(header.jwk.d, undefined);
      assert.equal(await lk.jwkThumbprint(header.jwk), device.jkt);
      assert.equal(payload.htm, 'GET');
      assert.equal(payload.htu, `${ORIGIN}/api/premium/example`);
      assert.equal(payload.iat, NOW_S);
      assert.equal(payload.nonce, 'n-1');
      assert.match(payload.jti, /^[A-Za-z0-9_-]{22}$/);
      const ath = lk.b64urlEncode(nodeCrypto.createHash('sha256').update('license.token.here').digest());
      assert.equal(payload.ath, ath);
      assert.equal(signature.length, 64);
      const key = await lk.importPublicJwk(header.jwk);
      const params = prefer === 'EdDSA' ? { name: 'Ed25519' } : { name: 'ECDSA', hash: 'SHA-256' };
      assert.equal(await crypto.subtle.verify(params, key, signature, signingInput), true);
    });
  }
});

describe('offline passkey assertions', T, () => {
  const RP_ID = 'latchkey.test';

  async function authenticator(kind = 'ES256') {
    const { publicKey, privateKey } =
      kind === 'ES256' ? nodeCrypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }) : nodeCrypto.generateKeyPairSync('ed25519');
    const credentialId = lk.b64urlEncode(lk.randomBytes(16));
    const jwk = publicKey.export({ format: 'jwk' });
    const cks = [{ ...jwk, kid: credentialId, alg: kind }];
    const assert_ = async ({ challenge, origin = ORIGIN, rpId = RP_ID, flags = 0x05, type = 'webauthn.get', key = privateKey } = {}) => {
      const clientDataJSON = enc.encode(JSON.stringify({ type, challenge: lk.b64urlEncode(challenge), origin, crossOrigin: false }));
      const authenticatorData = new Uint8Array([...(await lk.sha256(enc.encode(rpId))), flags, 0, 0, 0, 7]);
      const signed = Buffer.concat([authenticatorData, await lk.sha256(clientDataJSON)]);
      const signature = new Uint8Array(kind === 'ES256' ? nodeCrypto.sign('sha256', signed, key) : nodeCrypto.sign(null, signed, key));
      return { credentialId, clientDataJSON, authenticatorData, signature };
    };
    return { cks, assert: assert_, credentialId };
  }

  for (const kind of ['ES256', 'EdDSA']) {
    test(`a ${kind} passkey assertion over our challenge verifies against cks`, T, async () => {
      const a = await authenticator(kind);
      const challenge = lk.randomBytes(32);
      const result = await lk.verifyAssertion({ ...(await a.assert({ challenge })), challenge, origin: ORIGIN, rpId: RP_ID, keys: a.cks });
      assert.deepEqual(result, { ok: true, reason: null, detail: null });
    });
  }

  test('refuses other challenges, origins, RP IDs, types, missing UV and foreign keys', T, async () => {
    const a = await authenticator();
    const challenge = lk.randomBytes(32);
    const check = async (over, keys = a.cks) =>
      (await lk.verifyAssertion({ ...(await a.assert({ challenge, ...over })), challenge, origin: ORIGIN, rpId: RP_ID, keys })).reason;
    assert.equal(await check({ challenge: lk.randomBytes(32) }), 'passkey check failed');
    assert.equal(await check({ origin: 'https://evil.test' }), 'passkey check failed');
    assert.equal(await check({ rpId: 'evil.test' }), 'passkey check failed');
    assert.equal(await check({ type: 'webauthn.create' }), 'passkey check failed');
    assert.equal(await check({ flags: 0x01 }), 'user not verified');
    assert.equal(await check({ flags: 0x04 }), 'passkey check failed');
    const stranger = nodeCrypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    assert.equal(await check({ key: stranger }), 'signature invalid');
    assert.equal(await check({}, [{ ...a.cks[0], kid: 'another-credential' }]), 'passkey not recognised');
  });

  test('DER ECDSA signatures convert to raw r||s, strictly', T, () => {
    const r = new Uint8Array(32).fill(0x11);
    const s = new Uint8Array(32).fill(0x22);
    s[0] = 0x80; // needs a leading zero in DER
    const der = new Uint8Array([0x30, 0x45, 0x02, 0x20, ...r, 0x02, 0x21, 0x00, ...s]);
    assert.deepEqual(lk.derToRawSignature(der), new Uint8Array([...r, ...s]));
    const short = new Uint8Array([0x30, 0x06, 0x02, 0x01, 0x05, 0x02, 0x01, 0x07]);
    const raw = lk.derToRawSignature(short);
    assert.equal(raw[31], 5);
    assert.equal(raw[63], 7);
    assert.throws(() => lk.derToRawSignature(new Uint8Array([0x30, 0x06, 0x02, 0x01, 0x85, 0x02, 0x01, 0x07])), /negative/);
    assert.throws(() => lk.derToRawSignature(new Uint8Array([0x30, 0x07, 0x02, 0x02, 0x00, 0x05, 0x02, 0x01, 0x07])), /not minimal/);
    assert.throws(() => lk.derToRawSignature(new Uint8Array([...short, 0])), /length/);
  });
});

describe('base path (LATCHKEY_BASE_PATH)', T, () => {
  test('is spelled as the service spells it, or refused', () => {
    assert.equal(lk.basePath(undefined), '');
    assert.equal(lk.basePath('/'), '');
    assert.equal(lk.basePath('/auth'), '/auth');
    assert.equal(lk.basePath('/auth/'), '/auth');
    assert.equal(lk.basePath('/id/latch-key_1'), '/id/latch-key_1');
    for (const bad of ['auth', '//auth', '/a//b', '/..', '/a/./b', '/a b', 'https://x/auth']) {
      assert.throws(() => lk.basePath(bad), TypeError, bad);
    }
  });

  test('every request goes to origin + base + path', async () => {
    const seen = [];
    const fetch = async (url) => {
      seen.push(url);
      return new Response(JSON.stringify({ type: 'urn:latchkey:problem:unavailable', status: 503, detail: 'Down.' }), {
        status: 503,
        headers: { 'content-type': 'application/problem+json' },
      });
    };
    const client = lk.createLatchkey({ origin: 'https://app.test', base: '/auth/', rpId: 'app.test', fetch });
    assert.equal(client.base, '/auth');
    await assert.rejects(client.me(), /Down\./);
    assert.deepEqual(seen, ['https://app.test/auth/api/me']);
    assert.throws(() => lk.createLatchkey({ origin: 'https://app.test', base: 'auth', rpId: 'app.test', fetch }), TypeError);
  });
});

describe('messages', () => {
  test('every reason check() can give has a full sentence, and so does every connection state', () => {
    for (const reason of [...Object.values(lk.REASONS), 'signed out']) {
      const text = lk.renderMessage(undefined, reason);
      assert.notEqual(text, reason, `${reason} has a message`);
      assert.match(text, /^[A-Z].*[.…]$/, `${reason}: "${text}" is a sentence`);
    }
    for (const state of ['online', 'offline', 'unreachable', 'error', 'unknown']) {
      assert.match(lk.renderMessage(undefined, `connection.${state}.sentence`), /^[A-Z].*[.…]$/);
    }
  });

  test('an app replaces a message with a string or a function; the rest stay', () => {
    const messages = { expired: 'Abgelaufen.', 'no-passkey': ({ username }) => `Kein Passkey für ${username}.` };
    assert.equal(lk.renderMessage(messages, 'expired'), 'Abgelaufen.');
    assert.equal(lk.renderMessage(messages, 'no-passkey', { username: 'ada' }), 'Kein Passkey für ada.');
    assert.equal(lk.renderMessage(messages, 'revoked'), lk.MESSAGES.revoked);
    assert.equal(lk.renderMessage(messages, 'no such key', {}, 'Fallback.'), 'Fallback.');
  });
});

describe('requests', () => {
  test('a request that never answers gives up after the timeout: unreachable, while the browser says online', async () => {
    const hanging = (_url, init) =>
      new Promise((_resolve, reject) => init.signal.addEventListener('abort', () => reject(init.signal.reason), { once: true }));
    const client = lk.createLatchkey({ origin: 'https://id.example', rpId: 'id.example', fetch: hanging, timeout: 50, keysUrl: null, dbName: 'unused' });
    await assert.rejects(client.me(), (e) => e instanceof lk.LatchkeyError && e.code === 'unreachable' && e.message === lk.MESSAGES.unreachable);
    assert.equal(client.connection(), 'unreachable');
  });

  test("the caller's AbortSignal ends a request as an AbortError", async () => {
    const hanging = (_url, init) =>
      new Promise((_resolve, reject) => init.signal.addEventListener('abort', () => reject(init.signal.reason), { once: true }));
    const client = lk.createLatchkey({ origin: 'https://id.example', rpId: 'id.example', fetch: hanging, keysUrl: null, dbName: 'unused' });
    const controller = new AbortController();
    const pending = client.me({ signal: controller.signal });
    controller.abort();
    await assert.rejects(pending, (e) => e.name === 'AbortError');
  });

  test('a 5xx answer is "the service answered with an error"', async () => {
    const failing = async () => new Response('down', { status: 503, headers: { date: new Date().toUTCString() } });
    const client = lk.createLatchkey({ origin: 'https://id.example', rpId: 'id.example', fetch: failing, keysUrl: null, dbName: 'unused' });
    await assert.rejects(client.me(), (e) => e.code === 'service-error' && /answered with an error \(503\)/.test(e.message));
    assert.equal(client.connection(), 'error');
  });
});

describe('check-in (chk)', T, () => {
  const DAY = 86400;

  test('a license locks once the newest status list held is older than chk, whatever staleStatus says', T, async () => {
    const chk = 7 * DAY;
    const at = (w, listAge, licenseAge = 8 * DAY) =>
      w.input({ token: null, statusToken: null }).then(async (base) => ({
        ...base,
        token: await w.license({ chk, iat: NOW_S - licenseAge, nbf: NOW_S - licenseAge }),
        statusToken: await w.statusList({ iat: NOW_S - listAge, exp: NOW_S + DAY }),
        staleStatus: 'allow',
      }));
    const w = await world();
    assert.equal((await lk.evaluateLicense(await at(w, 6 * DAY))).reason, null, 'a list issued 6 days ago is a check-in');
    const late = await lk.evaluateLicense(await at(w, 7 * DAY + 120));
    assert.equal(late.reason, 'check-in required');
    assert.match(late.detail, /issued 7\.0 days ago/);
    // A recent license counts as a check-in too; without any list the license's own iat does.
    assert.equal((await lk.evaluateLicense(await at(w, 9 * DAY, DAY))).reason, null);
    const noList = { ...(await at(w, 0, 8 * DAY)), statusToken: null };
    assert.equal((await lk.evaluateLicense(noList)).reason, 'check-in required');
    // Revoked wins over check-in.
    const revoked = { ...(await at(w, 8 * DAY)), statusToken: await w.statusList({ iat: NOW_S - 8 * DAY, exp: NOW_S + DAY, revoked: [5] }) };
    assert.equal((await lk.evaluateLicense(revoked)).reason, 'revoked');
    // Licenses without chk (older services) are not affected.
    const old = { ...(await at(w, 30 * DAY)), token: await w.license({ iat: NOW_S - 8 * DAY, nbf: NOW_S - 8 * DAY }) };
    assert.equal((await lk.evaluateLicense(old)).reason, null);
  });

  test('a chk that is not a positive integer makes the license invalid', T, async () => {
    for (const chk of [0, -5, 1.5, '7d', null]) {
      assert.equal(await reasonFor(async (w) => ({ token: await w.license({ chk }) })), 'invalid license', String(chk));
    }
  });
});
