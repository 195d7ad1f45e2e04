//! Command line and environment configuration: every setting is a flag and a
//! `LATCHKEY_*` variable.

mod validate;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use url::Url;

pub use validate::{one_line_error, parse_base_path, parse_duration};

#[derive(Debug, Parser)]
#[command(
    name = "latchkey",
    version,
    about = "Passkey sign-in and offline licenses for PWAs"
)]
pub struct Cli {
    #[command(flatten)]
    pub common: Common,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service (the default when no command is given).
    Serve(Box<ServeArgs>),
    /// Apply database migrations and exit.
    Migrate,
    /// Manage users, roles and entitlements.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Manage the license signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Work with licenses.
    #[command(subcommand)]
    License(LicenseCommand),
    /// Copy the live SQLite database to FILE, consistently, while the service runs.
    Backup {
        /// Where to write the copy; must not exist yet.
        file: PathBuf,
    },
    /// Put a backup made by `latchkey backup` in place of the database (service stopped).
    Restore {
        /// The backup to restore.
        file: PathBuf,
        /// Replace an existing database.
        #[arg(long)]
        force: bool,
    },
    /// Manage API keys for machines.
    #[command(subcommand)]
    Apikey(ApikeyCommand),
}

#[derive(Debug, Subcommand)]
pub enum ApikeyCommand {
    /// Make a key; its secret is printed once.
    Create {
        name: String,
        /// users:read, users:write, entitlements:write, licenses:revoke, audit:read (comma-separated).
        #[arg(long, value_delimiter = ',', required = true)]
        scope: Vec<String>,
        /// A lifetime (90d) or an expiry date or RFC 3339 time; default: no expiry.
        #[arg(long)]
        expires: Option<String>,
    },
    /// List keys (never their secrets).
    List,
    /// Revoke a key by its id (key_…).
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Grant an entitlement to a user (USER is a username or a user id).
    Grant {
        user: String,
        entitlement: String,
        /// Expiry: an RFC 3339 time or a date (YYYY-MM-DD, end of that day UTC).
        #[arg(long)]
        until: Option<String>,
        /// Devices it allows at once (default: LATCHKEY_MAX_DEVICES of the service).
        #[arg(long, value_parser = clap::value_parser!(i64).range(1..=10_000))]
        max_devices: Option<i64>,
    },
    /// Remove an entitlement from a user and revoke the licenses that carry it.
    RevokeEntitlement { user: String, entitlement: String },
    /// Make a user an admin.
    Promote { user: String },
    /// Make an admin a plain user.
    Demote { user: String },
    /// Revoke one license by its `jti`.
    RevokeLicense {
        #[arg(allow_hyphen_values = true)]
        jti: String,
    },
    /// Revoke one passkey by its credential id (base64url).
    RevokePasskey {
        #[arg(allow_hyphen_values = true)]
        credential_id: String,
    },
    /// Disable a user: sessions end, licenses are revoked, sign-in is refused.
    Disable { user: String },
    /// Re-enable a disabled user.
    Enable { user: String },
    /// Print a one-time recovery link with which USER adds a new passkey to their account.
    RecoveryLink {
        user: String,
        /// How long the link works: 1m to 24h.
        #[arg(long, default_value = "1h", value_parser = parse_duration)]
        ttl: Duration,
        /// When the link is used, revoke the user's other passkeys, sessions and licenses.
        #[arg(long)]
        revoke_others: bool,
        /// The service's base path, for the printed URL.
        #[arg(long, env = "LATCHKEY_BASE_PATH", default_value = "", value_parser = parse_base_path)]
        base_path: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List signing keys with their state.
    List,
    /// Create a new signing key: published (JWK set and pinned-keys manifest) at once,
    /// signing new licenses only after `--after`, so installed apps learn it first.
    Rotate {
        /// How long the new key is announced before it signs (examples: 7d, 12h).
        #[arg(long, default_value = "7d", value_parser = parse_duration, conflicts_with = "now")]
        after: std::time::Duration,
        /// Sign with the new key at once (for a compromised key; apps that have not seen it
        /// yet accept its licenses after their next sync).
        #[arg(long)]
        now: bool,
    },
    /// Stop publishing a key (licenses signed with it stop verifying).
    Retire {
        #[arg(allow_hyphen_values = true)]
        kid: String,
    },
    /// Re-encrypt every signing key under a new key-encryption key, in one transaction.
    Rekey {
        /// File holding the new KEK; created (mode 0600) when it does not exist.
        #[arg(long)]
        new_kek_file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum LicenseCommand {
    /// Verify a license against a JWK set (a file path or an http(s) URL).
    Verify {
        token: String,
        #[arg(long)]
        jwks: String,
        /// Expected issuer (default: the configured origin).
        #[arg(long)]
        issuer: Option<String>,
        /// Expected audience (default: the configured license audience).
        #[arg(long)]
        audience: Option<String>,
    },
}

/// Settings shared by every command (where the data lives, what the service is called).
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// Public origin of the service, e.g. https://app.example.com.
    #[arg(
        long,
        env = "LATCHKEY_ORIGIN",
        default_value = "http://localhost:8080",
        global = true
    )]
    pub origin: Url,
    /// WebAuthn relying party id: the origin's host or a registrable suffix of it.
    /// Changing it later orphans every registered passkey.
    #[arg(
        long,
        env = "LATCHKEY_RP_ID",
        default_value = "localhost",
        global = true
    )]
    pub rp_id: String,
    /// Relying party name shown by authenticators.
    #[arg(
        long,
        env = "LATCHKEY_RP_NAME",
        default_value = "Latchkey",
        global = true
    )]
    pub rp_name: String,
    /// `sqlite:PATH` or `postgres://…`; default: a SQLite file in the data directory.
    #[arg(long, env = "LATCHKEY_DATABASE_URL", global = true)]
    pub database_url: Option<String>,
    /// Where the default database and key file live.
    #[arg(
        long,
        env = "LATCHKEY_DATA_DIR",
        default_value = "./latchkey-data",
        global = true
    )]
    pub data_dir: PathBuf,
    /// Key-encryption key for the signing keys (32 bytes, base64url). Overrides the key file.
    #[arg(long, env = "LATCHKEY_KEK", hide_env_values = true, global = true)]
    pub kek: Option<Secret>,
    /// File holding the key-encryption key; default `<data dir>/kek`, created on first start.
    #[arg(long, env = "LATCHKEY_KEK_FILE", global = true)]
    pub kek_file: Option<PathBuf>,
    /// Audience (`aud`) of licenses: the app's origin. Default: the service origin.
    #[arg(long, env = "LATCHKEY_LICENSE_AUDIENCE", global = true)]
    pub license_audience: Option<String>,
    /// Offline lifetime of a license.
    #[arg(long, env = "LATCHKEY_LICENSE_TTL", default_value = "30d", value_parser = parse_duration, global = true)]
    pub license_ttl: Duration,
    /// Log filter (tracing EnvFilter syntax).
    #[arg(long, env = "LATCHKEY_LOG", default_value = "info", global = true)]
    pub log: String,
    /// Log format: `text` or `json`.
    #[arg(
        long,
        env = "LATCHKEY_LOG_FORMAT",
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Settings of `latchkey serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "LATCHKEY_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Path prefix under which everything is served, e.g. `/auth` (empty: the root).
    #[arg(long, env = "LATCHKEY_BASE_PATH", default_value = "", value_parser = parse_base_path)]
    pub base_path: String,
    /// Lifetime of a signed-in session; a new passkey sign-in starts a new one.
    #[arg(long, env = "LATCHKEY_SESSION_TTL", default_value = "7d", value_parser = parse_duration)]
    pub session_ttl: Duration,
    /// How long a started ceremony may take before it must be started again.
    #[arg(long, env = "LATCHKEY_CEREMONY_TTL", default_value = "5m", value_parser = parse_duration)]
    pub ceremony_ttl: Duration,
    /// Directory of static files (the PWA); default: the `static` folder shipped with the binary.
    #[arg(long, env = "LATCHKEY_STATIC_DIR")]
    pub static_dir: Option<PathBuf>,
    /// How often each instance re-reads shared state (signing keys, revocations) changed by others.
    #[arg(long, env = "LATCHKEY_CACHE_REFRESH", default_value = "5s", value_parser = parse_duration)]
    pub cache_refresh: Duration,
    /// `ttl` of the status list: how long clients may cache it.
    #[arg(long, env = "LATCHKEY_STATUS_LIST_TTL", default_value = "5m", value_parser = parse_duration)]
    pub status_list_ttl: Duration,
    /// Validity (`exp - iat`) of a status list token.
    #[arg(long, env = "LATCHKEY_STATUS_LIST_VALIDITY", default_value = "7d", value_parser = parse_duration)]
    pub status_list_validity: Duration,
    /// Require a server-issued DPoP nonce in proofs (RFC 9449 §8).
    #[arg(long, env = "LATCHKEY_DPOP_NONCE", default_value_t = false)]
    pub dpop_nonce: bool,
    /// Accepted age of a DPoP proof's `iat` (either direction).
    #[arg(long, env = "LATCHKEY_DPOP_WINDOW", default_value = "60s", value_parser = parse_duration)]
    pub dpop_window: Duration,
    /// Adding or removing a passkey and signing out everywhere need a passkey
    /// confirmation this recent (0: a confirmation of their own every time).
    #[arg(long, env = "LATCHKEY_STEP_UP_MINUTES", default_value_t = 5)]
    pub step_up_minutes: u64,
    /// Check-in (`chk` in licenses): the longest a device may go without a status list issued
    /// more recently; past it, `check()` locks whatever `staleStatus` says.
    #[arg(long, env = "LATCHKEY_CHECK_IN", default_value = "7d", value_parser = parse_duration)]
    pub check_in: Duration,
    /// Devices an entitlement allows at once unless its grant says otherwise; unset: unlimited.
    #[arg(long, env = "LATCHKEY_MAX_DEVICES", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_devices: Option<u32>,
    /// Devices a user may remove themselves within 30 days (each removal frees a place).
    #[arg(long, env = "LATCHKEY_DEVICE_REMOVALS_PER_30D", default_value_t = 3)]
    pub device_removals_per_30d: u32,
    /// Destructive admin actions need a passkey sign-in this recent (0: every time).
    #[arg(long, env = "LATCHKEY_ADMIN_REAUTH_MINUTES", default_value_t = 10)]
    pub admin_reauth_minutes: u64,
    /// How long audit rows are kept (at least 30 days); older rows are deleted daily.
    #[arg(long, env = "LATCHKEY_AUDIT_RETENTION", default_value = "400d", value_parser = parse_retention)]
    pub audit_retention: Duration,
    /// Largest accepted request body in bytes.
    #[arg(long, env = "LATCHKEY_BODY_LIMIT", default_value_t = 64 * 1024)]
    pub body_limit: usize,
    /// Address of the Prometheus `/metrics` listener, or `off`.
    #[arg(
        long,
        env = "LATCHKEY_METRICS_LISTEN",
        default_value = "127.0.0.1:9464"
    )]
    pub metrics_listen: String,
    /// A connection that has not sent a whole request head within this is closed.
    #[arg(long, env = "LATCHKEY_HEADER_READ_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,
    /// Most connections served at once; more wait in the listen backlog.
    #[arg(long, env = "LATCHKEY_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,
    /// Longest time a request may take before it is answered with 503.
    #[arg(long, env = "LATCHKEY_REQUEST_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Ceremony requests (register, sign in, add passkey) per client address per minute; 0: no limit.
    #[arg(long, env = "LATCHKEY_RATE_LIMIT_CEREMONIES", default_value_t = 120)]
    pub rate_limit_ceremonies: u32,
    /// License requests per client address per minute; 0: no limit.
    #[arg(long, env = "LATCHKEY_RATE_LIMIT_LICENSES", default_value_t = 60)]
    pub rate_limit_licenses: u32,
    /// Admin API requests per client address per minute; 0: no limit.
    #[arg(long, env = "LATCHKEY_RATE_LIMIT_ADMIN", default_value_t = 600)]
    pub rate_limit_admin: u32,
    /// Premium-resource requests per client address per minute; 0: no limit.
    #[arg(long, env = "LATCHKEY_RATE_LIMIT_PREMIUM", default_value_t = 600)]
    pub rate_limit_premium: u32,
    /// Take the client address from the last `X-Forwarded-For` hop (only behind a trusted proxy).
    #[arg(long, env = "LATCHKEY_TRUST_FORWARDED_FOR", default_value_t = false)]
    pub trust_forwarded_for: bool,
    /// Most ceremonies in progress at once; new ones get 503 beyond it.
    #[arg(
        long,
        env = "LATCHKEY_MAX_PENDING_CEREMONIES",
        default_value_t = 100_000
    )]
    pub max_pending_ceremonies: i64,
    /// Largest number of database connections.
    #[arg(long, env = "LATCHKEY_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,
    #[command(flatten)]
    pub business: BusinessArgs,
}

/// Payment webhooks in, event webhooks out.
#[derive(Debug, Clone, Args)]
pub struct BusinessArgs {
    /// Stripe webhook signing secrets (`whsec_…`), comma-separated: several during a rotation.
    #[arg(long, env = "LATCHKEY_STRIPE_WEBHOOK_SECRET", hide_env_values = true)]
    pub stripe_webhook_secret: Option<Secret>,
    /// Stripe price or product ids to entitlement names: `price_123=premium,prod_456=pro`;
    /// `price_123=premium@3` also limits it to 3 devices at once.
    #[arg(long, env = "LATCHKEY_STRIPE_ENTITLEMENTS", default_value = "")]
    pub stripe_entitlements: String,
    /// Paddle notification secret keys, comma-separated: several during a rotation.
    #[arg(long, env = "LATCHKEY_PADDLE_WEBHOOK_SECRET", hide_env_values = true)]
    pub paddle_webhook_secret: Option<Secret>,
    /// Paddle price or product ids to entitlement names: `pri_01…=premium,pro_01…=pro`;
    /// `pri_01…=premium@3` also limits it to 3 devices at once.
    #[arg(long, env = "LATCHKEY_PADDLE_ENTITLEMENTS", default_value = "")]
    pub paddle_entitlements: String,
    /// How long a paid entitlement outlasts the end of the period it was paid for.
    #[arg(long, env = "LATCHKEY_BILLING_GRACE", default_value = "3d", value_parser = parse_duration)]
    pub billing_grace: Duration,
    /// Receivers of event webhooks (Standard Webhooks), comma-separated.
    #[arg(long, env = "LATCHKEY_WEBHOOK_URL", default_value = "")]
    pub webhook_url: String,
    /// One `whsec_…` secret per URL in LATCHKEY_WEBHOOK_URL, in the same order, comma-separated.
    #[arg(long, env = "LATCHKEY_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<Secret>,
    /// Waits before each retry of a failed delivery; after the last one the message is given up.
    #[arg(
        long,
        env = "LATCHKEY_WEBHOOK_RETRY_SCHEDULE",
        default_value = "5s,5m,30m,2h,5h,10h,14h,20h,24h",
        value_parser = parse_schedule
    )]
    pub webhook_retry_schedule: Schedule,
    /// How often each instance looks for webhook messages to send.
    #[arg(long, env = "LATCHKEY_WEBHOOK_POLL", default_value = "1s", value_parser = parse_duration)]
    pub webhook_poll: Duration,
    /// Longest wait for a receiver's answer.
    #[arg(long, env = "LATCHKEY_WEBHOOK_TIMEOUT", default_value = "15s", value_parser = parse_duration)]
    pub webhook_timeout: Duration,
    /// How long delivered and given-up messages stay in the delivery log.
    #[arg(long, env = "LATCHKEY_WEBHOOK_LOG_RETENTION", default_value = "30d", value_parser = parse_duration)]
    pub webhook_log_retention: Duration,
}

/// Retry delays, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule(pub Vec<Duration>);

fn parse_schedule(s: &str) -> Result<Schedule, String> {
    let delays = s
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(parse_duration)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Schedule(delays))
}

/// `id=name,id=name` pairs: provider price or product ids to entitlement names.
pub fn parse_entitlement_map(
    variable: &str,
    text: &str,
) -> Result<std::collections::HashMap<String, String>, String> {
    let mut map = std::collections::HashMap::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((id, name)) = pair.split_once('=') else {
            return Err(format!(
                "{variable} takes id=entitlement pairs such as price_123=premium, got {pair:?}"
            ));
        };
        map.insert(id.trim().to_owned(), name.trim().to_owned());
    }
    Ok(map)
}

/// Comma-separated secrets; none when unset or empty.
pub fn secrets(value: Option<&Secret>) -> Vec<Secret> {
    value
        .map(|s| {
            s.expose()
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| Secret(p.to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

impl ServeArgs {
    /// The connection limits these settings ask for.
    pub fn connection_limits(&self) -> ConnectionLimits {
        ConnectionLimits {
            header_read_timeout: self.header_read_timeout,
            max_connections: self.max_connections,
        }
    }

    /// The serve settings from the environment alone (when no command is given).
    /// Every field has a default, so only a malformed `LATCHKEY_*` variable can fail here.
    pub fn try_parse_from_env() -> Result<Self, clap::Error> {
        #[derive(Parser)]
        #[command(name = "latchkey")]
        struct Only {
            #[command(flatten)]
            serve: ServeArgs,
        }
        Only::try_parse_from(["latchkey"]).map(|only| only.serve)
    }
}

/// Limits on connections, against clients that hold them open.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// A connection that has not sent a whole request head by then is closed.
    pub header_read_timeout: Duration,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(30),
            max_connections: 4096,
        }
    }
}

/// A string that never shows up in `Debug` output or logs.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

fn parse_retention(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_secs(30 * 86_400) {
        return Err("the audit log keeps rows at least 30 days (e.g. 400d)".into());
    }
    Ok(d)
}

/// The `static` folder shipped with the source, where the PWA lives.
pub fn default_static_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("static")
}

impl Common {
    /// The database URL, defaulting to a SQLite file in the data directory.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("latchkey.db").display()),
        }
    }

    /// The public origin as an ASCII string without a trailing slash.
    pub fn origin_str(&self) -> String {
        self.origin.origin().ascii_serialization()
    }

    pub fn audience(&self) -> String {
        self.license_audience
            .clone()
            .unwrap_or_else(|| self.origin_str())
    }

    /// Checks that the settings make sense together, in one line per problem.
    pub fn validate(&self) -> Result<(), String> {
        if !matches!(self.origin.scheme(), "http" | "https") {
            return Err(format!(
                "LATCHKEY_ORIGIN must be an http(s) origin, got {}",
                self.origin
            ));
        }
        if self.origin.path() != "/"
            || self.origin.query().is_some()
            || self.origin.fragment().is_some()
        {
            return Err(format!(
                "LATCHKEY_ORIGIN must be a bare origin such as https://app.example.com, got {}",
                self.origin
            ));
        }
        let host = self.origin.host_str().unwrap_or_default();
        let rp = self.rp_id.as_str();
        let suffix_ok = host == rp || host.ends_with(&format!(".{rp}"));
        if !suffix_ok || rp.is_empty() {
            return Err(format!(
                "LATCHKEY_RP_ID ({rp}) must equal the host of LATCHKEY_ORIGIN ({host}) or be a parent domain of it"
            ));
        }
        if self.origin.scheme() == "http" && host != "localhost" && !host.ends_with(".localhost") {
            return Err(format!(
                "LATCHKEY_ORIGIN uses http:// on {host}; passkeys need https:// except on localhost"
            ));
        }
        if let Some(audience) = &self.license_audience {
            check_audience(audience)?;
        }
        Ok(())
    }

    pub fn is_https(&self) -> bool {
        self.origin.scheme() == "https"
    }
}

/// One payment provider's webhook settings.
#[derive(Debug, Clone, Default)]
pub struct ProviderSettings {
    /// Signing secrets; empty when the provider is not set up.
    pub secrets: Vec<Secret>,
    /// Price or product id to entitlement name.
    pub entitlements: std::collections::HashMap<String, String>,
    /// Entitlement name to the devices it allows at once (`name@N` in the mapping).
    pub max_devices: std::collections::HashMap<String, i64>,
}

/// One receiver of event webhooks.
#[derive(Debug, Clone)]
pub struct WebhookEndpoint {
    pub url: Url,
    /// The `whsec_…` secret, as configured.
    pub secret: Secret,
}

/// The business settings, checked.
#[derive(Debug, Clone, Default)]
pub struct Business {
    pub stripe: ProviderSettings,
    pub paddle: ProviderSettings,
    pub grace_secs: i64,
    pub endpoints: Vec<WebhookEndpoint>,
    pub retry_schedule: Vec<Duration>,
    pub poll: Duration,
    pub timeout: Duration,
    /// Seconds a delivered or given-up message stays in the delivery log.
    pub log_retention_secs: i64,
}

/// The license audience is compared byte for byte by every verifier: an app's origin
/// (`https://app.example.com`, no path or trailing slash) or a plain identifier.
fn check_audience(audience: &str) -> Result<(), String> {
    let plain = !audience.is_empty()
        && audience.len() <= 255
        && !audience
            .chars()
            .any(|c| c.is_whitespace() || c.is_control());
    if !plain {
        return Err(format!(
            "LATCHKEY_LICENSE_AUDIENCE must be an origin or identifier of 1 to 255 characters without spaces, got {audience:?}"
        ));
    }
    if audience.contains("://") {
        let bare = Url::parse(audience).is_ok_and(|url| {
            matches!(url.scheme(), "http" | "https")
                && url.origin().ascii_serialization() == audience
        });
        if !bare {
            return Err(format!(
                "LATCHKEY_LICENSE_AUDIENCE must be a bare origin such as https://app.example.com (no path or trailing slash), got {audience}"
            ));
        }
    }
    Ok(())
}

fn entitlement_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.:".contains(&b))
}

impl BusinessArgs {
    /// Checks the settings together, one line per problem.
    pub fn parse(&self) -> Result<Business, String> {
        let provider = |variable: &str, secret: Option<&Secret>, map: &str| {
            let mut entitlements = parse_entitlement_map(variable, map)?;
            let mut max_devices = std::collections::HashMap::new();
            for name in entitlements.values_mut() {
                let Some((plain, n)) = name.split_once('@') else {
                    continue;
                };
                let limit = n
                    .trim()
                    .parse::<i64>()
                    .ok()
                    .filter(|n| (1..=10_000).contains(n))
                    .ok_or_else(|| {
                        format!("{variable}: {name:?} needs a device limit from 1 to 10000 after @, such as premium@3")
                    })?;
                let plain = plain.trim().to_owned();
                if max_devices
                    .insert(plain.clone(), limit)
                    .is_some_and(|l| l != limit)
                {
                    return Err(format!(
                        "{variable}: {plain} has two different device limits"
                    ));
                }
                *name = plain;
            }
            if let Some((_, bad)) = entitlements.iter().find(|(_, n)| !entitlement_name_ok(n)) {
                return Err(format!(
                    "{variable}: {bad:?} is not an entitlement name (a-z, 0-9, - _ . :)"
                ));
            }
            Ok::<_, String>(ProviderSettings {
                secrets: secrets(secret),
                entitlements,
                max_devices,
            })
        };
        let stripe = provider(
            "LATCHKEY_STRIPE_ENTITLEMENTS",
            self.stripe_webhook_secret.as_ref(),
            &self.stripe_entitlements,
        )?;
        let paddle = provider(
            "LATCHKEY_PADDLE_ENTITLEMENTS",
            self.paddle_webhook_secret.as_ref(),
            &self.paddle_entitlements,
        )?;
        let urls: Vec<&str> = self
            .webhook_url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .collect();
        let keys = secrets(self.webhook_secret.as_ref());
        if urls.len() != keys.len() {
            return Err(format!(
                "LATCHKEY_WEBHOOK_SECRET needs one whsec_ secret per URL in LATCHKEY_WEBHOOK_URL ({} URLs, {} secrets)",
                urls.len(),
                keys.len()
            ));
        }
        let mut endpoints = Vec::new();
        for (url, secret) in urls.into_iter().zip(keys) {
            let parsed = Url::parse(url)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https"))
                .ok_or_else(|| format!("LATCHKEY_WEBHOOK_URL: {url:?} is not an http(s) URL"))?;
            let ok = secret
                .expose()
                .strip_prefix("whsec_")
                .and_then(|b| {
                    use base64::Engine;
                    base64::engine::general_purpose::STANDARD.decode(b).ok()
                })
                .is_some_and(|k| (24..=64).contains(&k.len()));
            if !ok {
                return Err("LATCHKEY_WEBHOOK_SECRET: each secret is whsec_ and 24 to 64 bytes in base64 (Standard Webhooks)".into());
            }
            endpoints.push(WebhookEndpoint {
                url: parsed,
                secret,
            });
        }
        Ok(Business {
            stripe,
            paddle,
            grace_secs: i64::try_from(self.billing_grace.as_secs()).unwrap_or(i64::MAX / 4),
            endpoints,
            retry_schedule: self.webhook_retry_schedule.0.clone(),
            poll: self.webhook_poll.max(Duration::from_millis(50)),
            timeout: self.webhook_timeout.max(Duration::from_millis(100)),
            log_retention_secs: i64::try_from(self.webhook_log_retention.as_secs())
                .unwrap_or(i64::MAX / 4),
        })
    }
}
