//! Releases and running it: `latchkey --version` is the package version, the
//! CHANGELOG has an entry for it, and the systemd units in `docs/systemd/` pass
//! `systemd-analyze verify` with no warning.

use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn version_is_the_package_version_and_the_changelog_describes_it() {
    let out = Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .arg("--version")
        .env_clear()
        .output()
        .unwrap();
    assert!(out.status.success());
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("latchkey {version}")
    );
    let changelog = std::fs::read_to_string(root().join("CHANGELOG.md")).unwrap();
    assert!(
        changelog
            .lines()
            .any(|l| l.starts_with(&format!("## [{version}]"))),
        "CHANGELOG.md has no \"## [{version}]\" section"
    );
    assert!(changelog.contains("## [Unreleased]"));
}

#[test]
fn the_systemd_units_verify_without_warnings() {
    let Ok(probe) = Command::new("systemd-analyze").arg("--version").output() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "systemd-analyze is missing"
        );
        eprintln!("systemd-analyze is not installed: units not checked");
        return;
    };
    assert!(probe.status.success());
    let dir = tempfile::TempDir::new().unwrap();
    let binary = env!("CARGO_BIN_EXE_latchkey");
    let mut units = Vec::new();
    for name in [
        "latchkey.service",
        "latchkey-backup.service",
        "latchkey-backup.timer",
    ] {
        let text = std::fs::read_to_string(root().join("docs/systemd").join(name)).unwrap();
        assert!(
            text.contains("/usr/local/bin/latchkey") || name.ends_with(".timer"),
            "{name}"
        );
        // verify checks that the program exists: point it at the one just built.
        std::fs::write(
            dir.path().join(name),
            text.replace("/usr/local/bin/latchkey", binary),
        )
        .unwrap();
        units.push(dir.path().join(name));
    }
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&units)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.trim().is_empty(), "warnings:\n{stderr}");
}
