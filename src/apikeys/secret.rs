//! The `lk_…` secret format: a recognisable prefix, 30 random base62
//! characters and a 6-character CRC32 checksum (the GitHub token layout), so
//! secret scanners can find a leaked key and tell a real one from a typo
//! without asking the server. Only a SHA-256 hash of a secret is stored.

use rand::Rng;
use sha2::{Digest, Sha256};

/// What every key starts with.
pub const PREFIX: &str = "lk_";
const RANDOM_LEN: usize = 30;
const CHECKSUM_LEN: usize = 6;
/// The length of a whole secret.
pub const SECRET_LEN: usize = PREFIX.len() + RANDOM_LEN + CHECKSUM_LEN;
const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// A regular expression matching a key, for secret-scanning rules.
pub const PATTERN: &str = "lk_[0-9A-Za-z]{36}";

/// Six base62 digits of the CRC32 of the prefix and random part.
fn checksum(body: &str) -> String {
    let mut n = crc32fast::hash(body.as_bytes());
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    out.iter().map(|&b| char::from(b)).collect()
}

/// A new secret: 30 base62 characters is about 178 bits of randomness.
pub fn generate() -> String {
    let mut rng = rand::rngs::OsRng;
    let random: String = (0..RANDOM_LEN)
        .map(|_| char::from(BASE62[rng.gen_range(0..BASE62.len())]))
        .collect();
    let body = format!("{PREFIX}{random}");
    let sum = checksum(&body);
    format!("{body}{sum}")
}

/// Whether `text` has the shape of a key and its checksum holds: a cheap
/// filter before any database work.
pub fn well_formed(text: &str) -> bool {
    text.len() == SECRET_LEN
        && text.starts_with(PREFIX)
        && text[PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric())
        && {
            let (body, sum) = text.split_at(PREFIX.len() + RANDOM_LEN);
            // Not secret: a checksum only catches typos and fakes.
            checksum(body) == sum
        }
}

/// The stored form: hex SHA-256. The secret has ~178 random bits, so a
/// fast hash is enough; no password-style stretching is needed.
pub fn hash(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The first characters of a secret, shown in lists to recognise a key.
pub fn hint(secret: &str) -> String {
    secret.chars().take(PREFIX.len() + 4).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_have_the_scannable_shape_and_a_valid_checksum() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        for key in [&a, &b] {
            assert_eq!(key.len(), SECRET_LEN);
            assert!(key.starts_with("lk_"));
            assert!(well_formed(key), "{key}");
        }
    }

    #[test]
    fn one_changed_character_breaks_the_checksum() {
        let key = generate();
        let mut bytes = key.clone().into_bytes();
        bytes[10] = if bytes[10] == b'A' { b'B' } else { b'A' };
        let typo = String::from_utf8(bytes).unwrap();
        assert!(!well_formed(&typo));
        assert!(!well_formed(&key[..key.len() - 1]));
        assert!(!well_formed(&format!("xx_{}", &key[3..])));
    }

    #[test]
    fn the_checksum_is_crc32_in_six_base62_digits() {
        // CRC32("lk_") = 0x1b5f2a1e-ish values are not worth hard-coding; check the
        // arithmetic on a known CRC instead: CRC32("123456789") = 0xCBF43926.
        let n: u32 = 0xCBF4_3926;
        let mut digits = Vec::new();
        let mut m = n;
        for _ in 0..6 {
            digits.push(m % 62);
            m /= 62;
        }
        let expected: String = digits
            .iter()
            .rev()
            .map(|&d| char::from(BASE62[d as usize]))
            .collect();
        assert_eq!(checksum("123456789"), expected);
        assert_eq!(hash("lk_x").len(), 64);
    }
}
