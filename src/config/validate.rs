//! Start-up checks: every setting is checked before anything is written, and a
//! wrong one stops start-up with one line that names it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::error::{ContextKind, ContextValue, ErrorKind};

use super::{default_static_dir, Common, ServeArgs};

/// A duration such as `30s`, `10m` or `7d`; zero and negative ones are refused
/// (a zero license lifetime or cache interval is always a mistake).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if s.trim_start().starts_with('-') {
        return Err("must be longer than zero (examples: 30s, 10m, 7d)".into());
    }
    match humantime::parse_duration(s) {
        Ok(d) if d.is_zero() => Err("must be longer than zero (examples: 30s, 10m, 7d)".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(format!("{e} (examples: 30s, 10m, 7d)")),
    }
}

/// A path prefix such as `/auth` or `/id/latchkey`: segments of URL-safe
/// characters, no trailing slash; empty or `/` is the root.
pub fn parse_base_path(s: &str) -> Result<String, String> {
    if s.is_empty() || s == "/" {
        return Ok(String::new());
    }
    let Some(rest) = s.strip_prefix('/') else {
        return Err("must start with / (example: /auth)".into());
    };
    if rest.ends_with('/') {
        return Err("must not end with / (example: /auth)".into());
    }
    for segment in rest.split('/') {
        let safe = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~');
        if segment.is_empty() || segment == "." || segment == ".." || !segment.chars().all(safe) {
            return Err(format!(
                "must be /segment[/segment…] of letters, digits, '-', '_', '.' or '~'; got {s:?}"
            ));
        }
    }
    Ok(s.to_owned())
}

/// Clap's error as one line naming the setting (flag and variable), so that a
/// wrong `LATCHKEY_*` value reads the same as every other start-up check.
pub fn one_line_error(err: &clap::Error, command: &clap::Command) -> String {
    let context = |kind| match err.get(kind) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        Some(ContextValue::StyledStr(s)) => Some(s.to_string()),
        Some(ContextValue::Strings(v)) => Some(v.join(", ")),
        _ => None,
    };
    if matches!(
        err.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        if let (Some(arg), Some(value)) = (
            context(ContextKind::InvalidArg),
            context(ContextKind::InvalidValue),
        ) {
            let long = arg
                .trim_start_matches('-')
                .split([' ', '='])
                .next()
                .unwrap_or_default()
                .to_owned();
            let setting = match env_of(command, &long) {
                Some(env) => format!("--{long} ({env})"),
                None => format!("--{long}"),
            };
            let why = std::error::Error::source(err)
                .map(ToString::to_string)
                .or_else(|| {
                    context(ContextKind::ValidValue).map(|v| format!("expected one of {v}"))
                })
                .unwrap_or_else(|| "not accepted".into());
            return format!("invalid value {value:?} for {setting}: {why}");
        }
    }
    let rendered = err.render().to_string();
    let first = rendered.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_owned()
}

/// The environment variable of the flag `--long`, in this command or a subcommand.
fn env_of(command: &clap::Command, long: &str) -> Option<String> {
    command
        .get_arguments()
        .find(|a| a.get_long() == Some(long))
        .and_then(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .or_else(|| command.get_subcommands().find_map(|c| env_of(c, long)))
}

impl ServeArgs {
    /// The directory of static files: the setting, or the `static` folder of the source.
    pub fn static_dir(&self) -> PathBuf {
        self.static_dir.clone().unwrap_or_else(default_static_dir)
    }

    /// Checks the serve settings together with the common ones, before anything
    /// is written. Returns warnings (start-up goes on) or the first error.
    pub fn validate(&self, common: &Common) -> Result<Vec<String>, String> {
        common.validate()?;
        let whole_seconds = [
            (self.session_ttl, "LATCHKEY_SESSION_TTL"),
            (self.ceremony_ttl, "LATCHKEY_CEREMONY_TTL"),
            (common.license_ttl, "LATCHKEY_LICENSE_TTL"),
            (self.status_list_ttl, "LATCHKEY_STATUS_LIST_TTL"),
            (self.status_list_validity, "LATCHKEY_STATUS_LIST_VALIDITY"),
            (self.dpop_window, "LATCHKEY_DPOP_WINDOW"),
        ];
        for (value, name) in whole_seconds {
            if value < Duration::from_secs(1) {
                return Err(format!(
                    "{name} must be at least 1s (it counts whole seconds), got {value:?}"
                ));
            }
        }
        if self.status_list_validity < self.status_list_ttl {
            return Err(format!(
                "LATCHKEY_STATUS_LIST_VALIDITY ({}) must be at least LATCHKEY_STATUS_LIST_TTL ({}): a status list must stay valid as long as clients may cache it",
                humantime::format_duration(self.status_list_validity),
                humantime::format_duration(self.status_list_ttl)
            ));
        }
        if self.body_limit < 1024 {
            return Err(format!(
                "LATCHKEY_BODY_LIMIT must be at least 1024 bytes (a passkey registration is larger), got {}",
                self.body_limit
            ));
        }
        if self.max_connections == 0 {
            return Err("LATCHKEY_MAX_CONNECTIONS must be at least 1".into());
        }
        if self.db_max_connections == 0 {
            return Err("LATCHKEY_DB_MAX_CONNECTIONS must be at least 1".into());
        }
        if self.max_pending_ceremonies < 1 {
            return Err(format!(
                "LATCHKEY_MAX_PENDING_CEREMONIES must be at least 1, got {}",
                self.max_pending_ceremonies
            ));
        }
        self.metrics_addr()?;
        self.business.parse()?;
        let static_dir = self.static_dir();
        if !static_dir.is_dir() {
            return Err(format!(
                "LATCHKEY_STATIC_DIR: {} is not a directory (set it to the folder with index.html and latchkey.js)",
                static_dir.display()
            ));
        }
        if !static_dir.join("latchkey.js").is_file() {
            return Err(format!(
                "LATCHKEY_STATIC_DIR: {} has no latchkey.js (set it to the folder with index.html and latchkey.js)",
                static_dir.display()
            ));
        }
        Ok(self.origin_warnings(common).into_iter().collect())
    }

    /// The metrics listener address, or `None` for `off`.
    pub fn metrics_addr(&self) -> Result<Option<SocketAddr>, String> {
        if self.metrics_listen == "off" {
            return Ok(None);
        }
        self.metrics_listen.parse().map(Some).map_err(|_| {
            format!(
                "LATCHKEY_METRICS_LISTEN must be an address such as 127.0.0.1:9464, or off; got {:?}",
                self.metrics_listen
            )
        })
    }

    /// A plain-http localhost origin whose port is not the loopback port the
    /// service listens on is almost always a forgotten `LATCHKEY_ORIGIN` after
    /// changing `LATCHKEY_LISTEN`: every write would then fail the Origin check.
    /// (Behind a local TLS proxy the origin is https and the ports differ by design.)
    fn origin_warnings(&self, common: &Common) -> Option<String> {
        let host = common.origin.host_str().unwrap_or_default();
        let local = host == "localhost" || host.ends_with(".localhost");
        let port = common.origin.port_or_known_default();
        (common.origin.scheme() == "http"
            && local
            && self.listen.ip().is_loopback()
            && self.listen.port() != 0
            && port != Some(self.listen.port()))
        .then(|| {
            format!(
                "LATCHKEY_ORIGIN is {} but LATCHKEY_LISTEN is {}: browsers at {} will not reach this service, and requests sent with that Origin to port {} are refused; set LATCHKEY_ORIGIN=http://localhost:{}",
                common.origin_str(),
                self.listen,
                common.origin_str(),
                self.listen.port(),
                self.listen.port()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_must_be_positive() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("0s")
            .unwrap_err()
            .contains("longer than zero"));
        assert!(parse_duration("-5m")
            .unwrap_err()
            .contains("longer than zero"));
        assert!(parse_duration("soon").is_err());
    }

    fn warning(origin: &str, listen: &str) -> Option<String> {
        use clap::Parser;
        let cli = crate::config::Cli::try_parse_from([
            "latchkey", "--origin", origin, "serve", "--listen", listen,
        ])
        .unwrap();
        let Some(crate::config::Command::Serve(args)) = cli.command else {
            panic!("serve")
        };
        args.origin_warnings(&cli.common)
    }

    #[test]
    fn a_localhost_origin_on_another_port_than_a_loopback_listener_is_warned_about() {
        let w = warning("http://localhost:8080", "127.0.0.1:9000").unwrap();
        assert!(
            w.contains("LATCHKEY_ORIGIN") && w.contains("LATCHKEY_LISTEN"),
            "{w}"
        );
        assert_eq!(warning("http://localhost:9000", "127.0.0.1:9000"), None);
        assert_eq!(warning("http://localhost", "[::1]:80"), None);
        // Behind a TLS proxy on the same host the ports differ by design.
        assert_eq!(warning("https://localhost:8443", "127.0.0.1:9000"), None);
        // Not on loopback: a container or a proxy elsewhere maps the port.
        assert_eq!(warning("http://localhost:8080", "0.0.0.0:9000"), None);
        assert_eq!(warning("http://localhost:8080", "127.0.0.1:0"), None);
    }

    #[test]
    fn base_paths_are_plain_prefixes() {
        assert_eq!(parse_base_path(""), Ok(String::new()));
        assert_eq!(parse_base_path("/"), Ok(String::new()));
        assert_eq!(parse_base_path("/auth"), Ok("/auth".into()));
        assert_eq!(
            parse_base_path("/id/latch-key_1"),
            Ok("/id/latch-key_1".into())
        );
        for bad in [
            "auth", "/auth/", "//auth", "/a//b", "/..", "/a/./b", "/a b", "/a?b", "/a%2f",
        ] {
            assert!(parse_base_path(bad).is_err(), "{bad}");
        }
    }
}
