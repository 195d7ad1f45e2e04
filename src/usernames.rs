//! Usernames as identifiers: what may be one, the key under which two names
//! are the same (PRECIS UsernameCaseMapped, RFC 8265), and the confusable
//! skeleton (Unicode TS #39) under which two names merely look the same.
//! Pure functions; display names are free text and do not come here.

use precis_core::profile::Profile;
use precis_profiles::{UsernameCaseMapped, UsernameCasePreserved};
use unicode_security::confusable_detection::skeleton;

/// A username in its three forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username {
    /// As shown: case preserved, width-mapped and NFC-normalised.
    pub display: String,
    /// Unique: two names with the same key are the same name.
    pub key: String,
    /// Unique too: two names with the same skeleton look alike (`аlice`, `alice`).
    pub skeleton: String,
}

/// Why a string cannot be a username; each says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsernameError {
    #[error("A username must be 1 to 64 characters long.")]
    Length,
    #[error("A username cannot contain invisible or direction-changing characters (such as zero-width spaces or right-to-left marks).")]
    Invisible,
    #[error("A username cannot start or end with a space, or have two spaces in a row.")]
    Spaces,
    #[error("A username can use letters, digits and punctuation, with single spaces between words; {0:?} is not allowed.")]
    Disallowed(char),
}

/// Characters that change how text is shown without being seen: bidi controls
/// and zero-width characters. Refused outright, with their own message.
fn invisible(c: char) -> bool {
    matches!(c,
        '\u{200B}'..='\u{200F}'   // zero-width space, ZWNJ, ZWJ, LRM, RLM
        | '\u{202A}'..='\u{202E}' // bidi embeddings and overrides
        | '\u{2060}'..='\u{2064}' // word joiner and invisible operators
        | '\u{2066}'..='\u{2069}' // bidi isolates
        | '\u{061C}'              // Arabic letter mark
        | '\u{FEFF}'              // zero-width no-break space
        | '\u{180E}'              // Mongolian vowel separator
    )
}

/// Checks a username and returns its forms. Words (userparts, RFC 8265 §3.1)
/// are separated by single spaces; each must be a PRECIS identifier.
pub fn parse(raw: &str) -> Result<Username, UsernameError> {
    if raw.chars().any(invisible) {
        return Err(UsernameError::Invisible);
    }
    if raw.is_empty() || raw.chars().count() > 64 {
        return Err(UsernameError::Length);
    }
    if raw.chars().any(char::is_control) {
        return Err(UsernameError::Disallowed(
            raw.chars().find(|c| c.is_control()).unwrap_or('?'),
        ));
    }
    let mut display = Vec::new();
    let mut key = Vec::new();
    for part in raw.split(' ') {
        if part.is_empty() {
            return Err(UsernameError::Spaces);
        }
        let refused = |err: precis_core::Error| match err {
            precis_core::Error::BadCodepoint(info) => {
                UsernameError::Disallowed(char::from_u32(info.cp).unwrap_or('?'))
            }
            _ => UsernameError::Disallowed(part.chars().next().unwrap_or('?')),
        };
        display.push(
            UsernameCasePreserved::new()
                .enforce(part)
                .map_err(refused)?
                .into_owned(),
        );
        key.push(
            UsernameCaseMapped::new()
                .enforce(part)
                .map_err(refused)?
                .into_owned(),
        );
    }
    let key = key.join(" ");
    Ok(Username {
        display: display.join(" "),
        skeleton: skeleton(&key).collect(),
        key,
    })
}

/// The key of a name given to look a user up: the parsed key, or for a name
/// that could never have been registered, the name itself lower-cased (it
/// matches nobody, so lookups answer "no such user" rather than an error).
pub fn lookup_key(raw: &str) -> String {
    parse(raw.trim())
        .map(|u| u.key)
        .unwrap_or_else(|_| raw.trim().to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_and_width_do_not_make_a_new_name() {
        let a = parse("Alice").unwrap();
        assert_eq!(a.display, "Alice");
        assert_eq!(a.key, "alice");
        assert_eq!(parse("ALICE").unwrap().key, "alice");
        // Fullwidth Latin letters map to their ordinary forms.
        assert_eq!(parse("\u{FF21}lice").unwrap().key, "alice");
    }

    #[test]
    fn nfc_and_nfd_spellings_are_one_name() {
        let nfc = parse("jos\u{E9}").unwrap();
        let nfd = parse("jose\u{301}").unwrap();
        assert_eq!(nfc.key, nfd.key);
        assert_eq!(nfc.display, nfd.display);
    }

    #[test]
    fn look_alikes_share_a_skeleton() {
        let latin = parse("alice").unwrap();
        let cyrillic = parse("\u{430}lice").unwrap();
        assert_ne!(latin.key, cyrillic.key);
        assert_eq!(latin.skeleton, cyrillic.skeleton);
        assert_eq!(
            parse("paypal").unwrap().skeleton,
            parse("paypa\u{04CF}").unwrap().skeleton
        );
    }

    #[test]
    fn invisible_and_direction_characters_are_refused() {
        for raw in [
            "ali\u{200B}ce",
            "alice\u{202E}",
            "\u{200F}alice",
            "al\u{2066}ice",
            "a\u{FEFF}lice",
        ] {
            assert_eq!(parse(raw), Err(UsernameError::Invisible), "{raw:?}");
        }
    }

    #[test]
    fn words_are_separated_by_single_spaces() {
        assert_eq!(
            parse("Guybrush Threepwood").unwrap().key,
            "guybrush threepwood"
        );
        assert_eq!(parse("two  spaces"), Err(UsernameError::Spaces));
        assert_eq!(parse(" leading"), Err(UsernameError::Spaces));
        assert!(matches!(
            parse("tab\there"),
            Err(UsernameError::Disallowed('\t'))
        ));
        assert!(matches!(
            parse("smile\u{1F600}"),
            Err(UsernameError::Disallowed(_))
        ));
        assert_eq!(parse(""), Err(UsernameError::Length));
        assert_eq!(parse(&"x".repeat(65)), Err(UsernameError::Length));
        assert!(parse("alice@example.com").is_ok());
        assert!(parse("bob-2_x.y").is_ok());
    }
}
