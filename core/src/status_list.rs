//! Token Status List encoding (IETF OAuth Token Status List draft): a
//! zlib-deflated bitstring, one bit per license, signed as a `statuslist+jwt`.
//! Pure functions: no HTTP, no database.

use std::io::{Read, Write};

use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;
use flate2::Compression;

use crate::claims::StatusRef;
pub use crate::claims::{StatusListBits, StatusListClaims, STATUS_LIST_TYP};
use crate::jose::{b64, unb64};
use crate::jws::{verify_jws, JwkSet};
use crate::verify::{typed_claims, LEEWAY_SECS};

/// Largest decoded list accepted from a token (a guard against zip bombs).
const MAX_DECODED_BYTES: u64 = 16 * 1024 * 1024;

/// The bitstring for `size` entries with the `revoked` indexes set. Bit `i` is
/// bit `i % 8` (least significant first) of byte `i / 8`.
pub fn bitstring(size: u64, revoked: impl IntoIterator<Item = u64>) -> Vec<u8> {
    let mut bytes = vec![0u8; usize::try_from(size.div_ceil(8)).unwrap_or(0)];
    for idx in revoked {
        if let Some(byte) = usize::try_from(idx / 8).ok().and_then(|i| bytes.get_mut(i)) {
            *byte |= 1 << (idx % 8);
        }
    }
    bytes
}

/// zlib-deflates a bitstring and encodes it as base64url: the `lst` member.
pub fn encode_lst(bits: &[u8]) -> std::io::Result<String> {
    let mut encoder = ZlibEncoder::new(Vec::with_capacity(bits.len() / 16), Compression::best());
    encoder.write_all(bits)?;
    Ok(b64(encoder.finish()?))
}

/// Decodes an `lst` member back to the bitstring.
pub fn decode_lst(lst: &str) -> Option<Vec<u8>> {
    let compressed = unb64(lst)?;
    let mut out = Vec::new();
    ZlibDecoder::new(compressed.as_slice())
        .take(MAX_DECODED_BYTES + 1)
        .read_to_end(&mut out)
        .ok()?;
    (out.len() as u64 <= MAX_DECODED_BYTES).then_some(out)
}

/// The claims of a status list token.
pub fn claims(uri: &str, iat: i64, exp: i64, ttl: i64, lst: String) -> StatusListClaims {
    StatusListClaims {
        sub: uri.to_owned(),
        iat,
        exp,
        ttl,
        status_list: StatusListBits { bits: 1, lst },
    }
}

/// What a verifier can say about a license's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Valid,
    Revoked,
    /// The status cannot be known from this token; the reason says why.
    Unknown(&'static str),
}

/// Checks a license's status reference against a status list token at `now`.
/// A stale list, another list's token, a bad signature or an index beyond the
/// list give `Unknown`, never `Valid`.
pub fn check(status: &StatusRef, token: &str, jwks: &JwkSet, now: i64) -> Status {
    let Ok(claims) = verify_jws(token, STATUS_LIST_TYP, jwks) else {
        return Status::Unknown("status list signature invalid");
    };
    let Ok(claims) = typed_claims::<StatusListClaims>(claims) else {
        return Status::Unknown("status list claims are malformed");
    };
    if claims.sub != status.uri {
        return Status::Unknown("status list is not the one the license names");
    }
    if now > claims.exp || claims.iat > now + LEEWAY_SECS {
        return Status::Unknown("status list is stale");
    }
    if claims.status_list.bits != 1 {
        return Status::Unknown("status list has an unsupported bits size");
    }
    let Some(bits) = decode_lst(&claims.status_list.lst) else {
        return Status::Unknown("status list content is malformed");
    };
    let Some(byte) = usize::try_from(status.idx / 8)
        .ok()
        .and_then(|i| bits.get(i))
    else {
        return Status::Unknown("index beyond the status list");
    };
    if byte >> (status.idx % 8) & 1 == 1 {
        Status::Revoked
    } else {
        Status::Valid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_sets_exactly_the_revoked_bits() {
        let bits = bitstring(100, [0, 9, 99]);
        let decoded = decode_lst(&encode_lst(&bits).unwrap()).unwrap();
        assert_eq!(decoded, bits);
        assert_eq!(decoded[0], 0b0000_0001);
        assert_eq!(decoded[1], 0b0000_0010);
        assert_eq!(decoded[12], 0b0000_1000);
        assert_eq!(decoded.len(), 13);
    }

    #[test]
    fn draft_example_is_decoded() {
        // The status list draft's 1-bit example: indexes 0, 3, 5, 6, 8, 9, 12, 13 set (bytes b9 a3).
        let bits = decode_lst("eNrbuRgAAhcBXQ").unwrap();
        assert_eq!(bits, vec![0xb9, 0xa3]);
    }

    #[test]
    fn garbage_does_not_decode() {
        assert!(decode_lst("not base64!").is_none());
        assert!(decode_lst("AAAA").is_none());
    }
}
