//! The shape of the code, checked: the pure license core depends on no web or
//! database crate, the ground floor imports no feature, no feature imports the
//! router, and SQL lives in `store/` only.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `(file relative to src/, text)` of every source file of the service.
fn service_sources() -> Vec<(String, String)> {
    let src = root().join("src");
    rust_files(&src)
        .into_iter()
        .map(|p| {
            let name = p.strip_prefix(&src).unwrap().display().to_string();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

#[test]
fn the_license_core_imports_no_web_framework_database_or_app_code() {
    let manifest = std::fs::read_to_string(root().join("core/Cargo.toml")).unwrap();
    let deps = manifest
        .split("[dependencies]")
        .nth(1)
        .unwrap()
        .split("\n[")
        .next()
        .unwrap();
    let forbidden = [
        "axum",
        "sqlx",
        "tower",
        "hyper",
        "tokio",
        "latchkey ",
        "webauthn",
    ];
    for line in deps.lines() {
        let name = line.split('=').next().unwrap().trim();
        for bad in forbidden {
            assert!(
                !name.starts_with(bad.trim()),
                "latchkey-core depends on {name}"
            );
        }
    }
    for file in rust_files(&root().join("core/src")) {
        let text = std::fs::read_to_string(&file).unwrap();
        for bad in [
            "axum",
            "sqlx",
            "tower",
            "hyper",
            "tokio",
            "latchkey::",
            "webauthn",
        ] {
            assert!(
                !text.contains(&format!("{bad}::")) && !text.contains(&format!("use {bad}")),
                "{} uses {bad}",
                file.display()
            );
        }
    }
}

const FEATURES: [&str; 9] = [
    "passkey",
    "devices",
    "license",
    "revocation",
    "admin",
    "health",
    "apikeys",
    "billing",
    "webhooks",
];

#[test]
fn the_ground_floor_imports_no_feature_and_no_feature_imports_the_router() {
    for (name, text) in service_sources() {
        let feature = FEATURES
            .iter()
            .find(|f| name.starts_with(&format!("{f}/")) || name == format!("{f}.rs"));
        let code = text.split("#[cfg(test)]").next().unwrap();
        if feature.is_some() {
            assert!(!code.contains("crate::app"), "{name} imports the router");
        } else if !matches!(
            name.as_str(),
            "app.rs" | "lib.rs" | "main.rs" | "openapi.rs"
        ) && !name.starts_with("cli/")
        {
            for f in FEATURES {
                assert!(
                    !code.contains(&format!("crate::{f}")),
                    "{name} is on the ground floor but imports the {f} feature"
                );
            }
        }
    }
}

#[test]
fn sql_lives_in_the_store_only() {
    for (name, text) in service_sources() {
        if name.starts_with("store/") {
            assert!(
                !text.contains("crate::http") && !text.contains("crate::state"),
                "{name}"
            );
            continue;
        }
        for sql in [
            "sqlx::query",
            "SELECT ",
            "INSERT INTO",
            "UPDATE ",
            "DELETE FROM",
        ] {
            assert!(!text.contains(sql), "{name} contains SQL ({sql})");
        }
        assert!(!text.contains("sqlx::Error"), "{name} sees sqlx errors");
    }
}
