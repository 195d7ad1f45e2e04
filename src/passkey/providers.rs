//! Passkey providers named by their AAGUID ("Google Password Manager",
//! "Apple Passwords", "1Password"), from the community-maintained list kept in
//! `providers.json` with its source and date (`scripts/refresh-passkey-providers`
//! refreshes it). A name for people only: never a security decision.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::Deserialize;

#[derive(Deserialize)]
struct Listing {
    providers: HashMap<String, String>,
}

fn providers() -> &'static HashMap<String, String> {
    static PROVIDERS: OnceLock<HashMap<String, String>> = OnceLock::new();
    PROVIDERS.get_or_init(|| {
        serde_json::from_str::<Listing>(include_str!("providers.json"))
            .map(|listing| listing.providers)
            .unwrap_or_default()
    })
}

/// The provider's name for an AAGUID in its hyphenated form, if the list knows it.
pub fn provider_name(aaguid: &str) -> Option<&'static str> {
    providers()
        .get(&aaguid.to_ascii_lowercase())
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_parses_and_names_known_providers() {
        assert!(
            providers().len() >= 10,
            "the bundled list is empty or malformed"
        );
        assert_eq!(
            provider_name("EA9B8D66-4D01-1D21-3CE4-B6B48CB575D4"),
            Some("Google Password Manager")
        );
        assert_eq!(
            provider_name("bada5566-a7aa-401f-bd96-45619a55120d"),
            Some("1Password")
        );
        assert_eq!(provider_name("00000000-0000-0000-0000-000000000000"), None);
    }
}
