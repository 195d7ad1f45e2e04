//! Load generator for a running `latchkey serve` on this machine.
//!
//! ```text
//! cargo run --release --example loadgen -- --url http://127.0.0.1:8080 \
//!     --origin http://localhost:8080 --users 64 --concurrency 32 --duration 10s \
//!     --scenario signin|mint-ed25519|mint-es256|premium|jwks|status-list|all \
//!     [--server-pid PID] [--cli target/release/latchkey]
//! cargo run --release --example loadgen -- --scenario startup --server-bin target/release/latchkey
//! ```
//!
//! Set-up registers `--users` users with software passkeys (synced, so the
//! signature counter stays 0 and sign-ins can repeat), grants them `premium`
//! with the CLI given by `--cli` (run with this process's environment, so give
//! it the server's `LATCHKEY_DATABASE_URL` / `LATCHKEY_DATA_DIR`), then signs
//! workers in and mints the licenses a scenario needs. Each scenario then runs
//! closed-loop at `--concurrency` (one keep-alive HTTP/1.1 connection per
//! worker) for `--warmup` unrecorded and `--duration` recorded, with a fresh
//! DPoP proof per request, and reports throughput, p50/p99/max latency, errors
//! by status, the server's CPU and peak RSS (with `--server-pid`) and the
//! generator's own CPU.
//!
//! Only loopback addresses are accepted, and every run is bounded by
//! `--duration` (at most 10 minutes) and `--max-requests`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/api/authenticator.rs"]
mod authenticator;
#[path = "../tests/api/dpop.rs"]
mod dpop;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use clap::{Parser, ValueEnum};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpStream;

use authenticator::{SoftAuthenticator, Tweaks};
use dpop::DeviceKey;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// POST /api/login/start + POST /api/login/finish, one sign-in per operation.
    Signin,
    /// POST /api/licenses with a DPoP proof from an Ed25519 device key.
    MintEd25519,
    /// POST /api/licenses with a DPoP proof from an ES256 (P-256) device key.
    MintEs256,
    /// GET /api/premium/example with `Authorization: DPoP <license>` and a proof with `ath`.
    Premium,
    /// GET /.well-known/jwks.json.
    Jwks,
    /// GET the status list a license points to.
    StatusList,
    /// Every scenario above, one after the other, after one set-up.
    All,
    /// Not load: start `--server-bin serve` `--repeat` times on its existing
    /// database, time exec → /readyz 200, and read its idle RSS.
    Startup,
}

const ALL: [Scenario; 6] = [
    Scenario::Signin,
    Scenario::MintEd25519,
    Scenario::MintEs256,
    Scenario::Premium,
    Scenario::Jwks,
    Scenario::StatusList,
];

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Self::Signin => "signin",
            Self::MintEd25519 => "mint-ed25519",
            Self::MintEs256 => "mint-es256",
            Self::Premium => "premium",
            Self::Jwks => "jwks",
            Self::StatusList => "status-list",
            Self::All => "all",
            Self::Startup => "startup",
        }
    }
}

#[derive(Debug, Parser)]
#[command(about = "Load generator for a latchkey server on this machine")]
struct Args {
    /// Where the server listens (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The server's configured origin (LATCHKEY_ORIGIN): sent as `Origin`, used in `htu`.
    #[arg(long, default_value = "http://localhost:8080")]
    origin: String,
    /// Users registered during set-up.
    #[arg(long, default_value_t = 64)]
    users: usize,
    /// Concurrent clients (each with its own connection).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Recorded time per scenario (at most 10 minutes).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Unrecorded time per scenario before recording starts.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    warmup: Duration,
    #[arg(long, value_enum, default_value = "all")]
    scenario: Scenario,
    /// The server's process id: its CPU time and RSS are sampled from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// The `latchkey` binary, to grant `premium` to the users (`admin grant`).
    /// Without it the operator grants it, or the premium scenario is skipped.
    #[arg(long)]
    cli: Option<PathBuf>,
    /// Upper bound on operations per scenario (warm-up included).
    #[arg(long, default_value_t = 3_000_000)]
    max_requests: u64,
    /// Threads of the generator's runtime.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// DPoP proofs per worker signed before the clock starts (0: sign each one
    /// just before its request). Lets the server's capacity be measured without
    /// the generator's signing on the same cores; proofs are good for the
    /// server's DPoP window (60 s by default).
    #[arg(long, default_value_t = 0)]
    presign: usize,
    /// A label for the results (e.g. the database), echoed in the RESULT lines.
    #[arg(long, default_value = "")]
    label: String,
    /// `startup`: the server binary to start (`BIN serve --listen <url's address>`).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// `startup`: how many starts.
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    /// `startup`: idle time after ready before RSS is read.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    idle: Duration,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| e.to_string())
}

fn main() -> Result<(), String> {
    let args = Args::parse();
    if args.duration > Duration::from_secs(600) || args.warmup > Duration::from_secs(60) {
        return Err("--duration is at most 10m and --warmup at most 60s".into());
    }
    if args.concurrency == 0 || args.users == 0 || args.concurrency > 1024 || args.users > 10_000 {
        return Err("--concurrency must be 1..=1024 and --users 1..=10000".into());
    }
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    }
    .map_err(|e| e.to_string())?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> Result<(), String> {
    let target = Target::resolve(&args.url).await?;
    if args.scenario == Scenario::Startup {
        return startup(&args, &target).await;
    }
    let scenarios: Vec<Scenario> = if args.scenario == Scenario::All {
        ALL.to_vec()
    } else {
        vec![args.scenario]
    };
    let origin = args.origin.trim_end_matches('/').to_owned();
    let ctx = Arc::new(Ctx {
        target,
        origin,
        warmup: args.warmup,
        duration: args.duration,
        max_requests: args.max_requests,
        presign: args.presign,
    });

    let set_up = Instant::now();
    let users = register_users(&ctx, &args).await?;
    let granted = match &args.cli {
        Some(cli) => {
            grant_premium(cli, &users).await?;
            true
        }
        None => false,
    };
    eprintln!(
        "set-up: {} users registered{} in {:.1} s",
        users.len(),
        if granted { " and granted premium" } else { "" },
        set_up.elapsed().as_secs_f64()
    );
    let mut workers: Vec<Worker> = (0..args.concurrency)
        .map(|id| Worker {
            id,
            conn: Conn::new(ctx.target.clone()),
            jar: Jar::default(),
            users: users
                .iter()
                .enumerate()
                .filter(|(i, _)| i % args.concurrency == id % users.len().min(args.concurrency))
                .map(|(_, u)| u.clone())
                .collect(),
            next_user: 0,
            device: None,
            license: None,
            presigned: Vec::new(),
        })
        .collect();

    let clk_tck = clock_ticks_per_second();
    let mut reports = Vec::new();
    for scenario in scenarios {
        let (back, prepared) = prepare(&ctx, scenario, workers).await;
        workers = back;
        if let Err(err) = prepared {
            eprintln!("{}: skipped: {err}", scenario.name());
            continue;
        }
        let (back, report) = drive(
            &ctx,
            scenario,
            workers,
            args.server_pid,
            clk_tck,
            &args.label,
        )
        .await;
        workers = back;
        print_report(&report);
        reports.push(report);
    }
    if reports.len() > 1 {
        println!();
        print_table(&reports);
    }
    Ok(())
}

// ---------------------------------------------------------------- HTTP

/// The server's address (checked to be loopback) and the Host header to send.
#[derive(Clone)]
struct Target {
    addr: SocketAddr,
    host: HeaderValue,
}

impl Target {
    async fn resolve(url: &str) -> Result<Self, String> {
        let url = url::Url::parse(url).map_err(|e| format!("--url: {e}"))?;
        if url.scheme() != "http" {
            return Err("--url must be http:// (the generator speaks plain HTTP/1.1)".into());
        }
        let host = url.host_str().ok_or("--url has no host")?.to_owned();
        let port = url.port_or_known_default().unwrap_or(80);
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| format!("--url: {e}"))?
            .collect();
        if addrs.is_empty() || addrs.iter().any(|a| !a.ip().is_loopback()) {
            return Err(format!(
                "--url must name a loopback address (127.0.0.0/8 or ::1); {host} resolves to {addrs:?}"
            ));
        }
        let authority = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host,
        };
        Ok(Self {
            addr: addrs[0],
            host: HeaderValue::from_str(&authority).map_err(|e| e.to_string())?,
        })
    }
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

/// One keep-alive HTTP/1.1 connection, re-opened after an error.
struct Conn {
    target: Target,
    sender: Option<http1::SendRequest<Full<Bytes>>>,
}

impl Conn {
    fn new(target: Target) -> Self {
        Self {
            target,
            sender: None,
        }
    }

    async fn connect(&mut self) -> Result<(), String> {
        let stream = TcpStream::connect(self.target.addr)
            .await
            .map_err(|e| format!("connect: {}", e.kind()))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        self.sender = Some(sender);
        Ok(())
    }

    async fn send(&mut self, mut request: Request<Full<Bytes>>) -> Result<Reply, String> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            self.connect().await?;
        }
        request
            .headers_mut()
            .insert(header::HOST, self.target.host.clone());
        let Some(sender) = self.sender.as_mut() else {
            return Err("not connected".into());
        };
        let result = async {
            sender.ready().await.map_err(|_| "connection closed")?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|_| "request failed")?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await.map_err(|_| "body failed")?.to_bytes();
            Ok::<_, &str>(Reply {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        }
        .await;
        if result.is_err() {
            self.sender = None;
        }
        result.map_err(str::to_owned)
    }
}

/// The cookies a browser would send back (name=value pairs, no attributes).
#[derive(Default)]
struct Jar(Vec<(String, String)>);

impl Jar {
    fn absorb(&mut self, headers: &HeaderMap) {
        for value in headers.get_all(header::SET_COOKIE) {
            let Ok(text) = value.to_str() else { continue };
            let pair = text.split(';').next().unwrap_or_default();
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            let (name, value) = (name.trim().to_owned(), value.trim().to_owned());
            let gone = value.is_empty()
                || text
                    .to_ascii_lowercase()
                    .split(';')
                    .any(|a| a.trim() == "max-age=0");
            self.0.retain(|(n, _)| *n != name);
            if !gone {
                self.0.push((name, value));
            }
        }
    }

    fn header(&self) -> Option<HeaderValue> {
        if self.0.is_empty() {
            return None;
        }
        let text: Vec<String> = self.0.iter().map(|(n, v)| format!("{n}={v}")).collect();
        HeaderValue::from_str(&text.join("; ")).ok()
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

fn request(
    method: Method,
    path: &str,
    headers: &[(header::HeaderName, HeaderValue)],
    body: Option<Vec<u8>>,
) -> Request<Full<Bytes>> {
    let mut builder = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        builder = builder.header(name, value);
    }
    if body.is_some() {
        builder = builder.header(header::CONTENT_TYPE, "application/json");
    }
    builder
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .expect("a valid request")
}

// ---------------------------------------------------------------- set-up

struct Ctx {
    target: Target,
    origin: String,
    warmup: Duration,
    duration: Duration,
    max_requests: u64,
    presign: usize,
}

impl Ctx {
    fn origin_header(&self) -> HeaderValue {
        HeaderValue::from_str(&self.origin).expect("origin is a valid header")
    }
}

struct User {
    username: String,
    soft: SoftAuthenticator,
}

type SharedUser = Arc<Mutex<User>>;

/// Registers the users concurrently, one connection per registering task.
async fn register_users(ctx: &Arc<Ctx>, args: &Args) -> Result<Vec<SharedUser>, String> {
    let run_id = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let lanes = args.concurrency.min(args.users).min(16);
    let mut tasks = Vec::new();
    for lane in 0..lanes {
        let ctx = ctx.clone();
        let names: Vec<String> = (0..args.users)
            .filter(|i| i % lanes == lane)
            .map(|i| format!("lg-{run_id}-{i}"))
            .collect();
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::new(ctx.target.clone());
            let mut out = Vec::new();
            for username in names {
                let mut soft = SoftAuthenticator::new();
                soft.set_synced(true);
                let mut jar = Jar::default();
                let options = call(
                    &ctx,
                    &mut conn,
                    &mut jar,
                    Method::POST,
                    "/api/register/start",
                    &[],
                    Some(json!({ "username": username })),
                    StatusCode::OK,
                )
                .await?;
                let options: Value = serde_json::from_slice(&options).map_err(|e| e.to_string())?;
                let credential = soft.create(&options, &ctx.origin, &Tweaks::default())?;
                call(
                    &ctx,
                    &mut conn,
                    &mut jar,
                    Method::POST,
                    "/api/register/finish",
                    &[],
                    Some(credential),
                    StatusCode::CREATED,
                )
                .await?;
                out.push(Arc::new(Mutex::new(User { username, soft })));
            }
            Ok::<_, String>(out)
        }));
    }
    let mut users = Vec::new();
    for task in tasks {
        users.extend(task.await.map_err(|e| e.to_string())??);
    }
    Ok(users)
}

/// One request in set-up, where anything but `expect` is fatal.
#[allow(clippy::too_many_arguments)]
async fn call(
    ctx: &Ctx,
    conn: &mut Conn,
    jar: &mut Jar,
    method: Method,
    path: &str,
    extra: &[(header::HeaderName, HeaderValue)],
    body: Option<Value>,
    expect: StatusCode,
) -> Result<Bytes, String> {
    let mut headers = vec![(header::ORIGIN, ctx.origin_header())];
    if let Some(cookie) = jar.header() {
        headers.push((header::COOKIE, cookie));
    }
    headers.extend_from_slice(extra);
    let body = body.map(|b| serde_json::to_vec(&b).expect("JSON"));
    let reply = conn.send(request(method, path, &headers, body)).await?;
    jar.absorb(&reply.headers);
    if reply.status != expect {
        return Err(format!(
            "{path}: expected {expect}, got {}: {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        ));
    }
    Ok(reply.body)
}

/// Grants `premium` with `CLI admin grant USER premium`, four at a time.
async fn grant_premium(cli: &std::path::Path, users: &[SharedUser]) -> Result<(), String> {
    let names: Vec<String> = users
        .iter()
        .map(|u| u.lock().expect("user").username.clone())
        .collect();
    let cli = cli.to_owned();
    tokio::task::spawn_blocking(move || {
        for chunk in names.chunks(4) {
            let children: Vec<_> = chunk
                .iter()
                .map(|name| {
                    std::process::Command::new(&cli)
                        .args(["admin", "grant", name, "premium"])
                        .stdout(std::process::Stdio::null())
                        .stderr(std::process::Stdio::piped())
                        .spawn()
                        .map_err(|e| format!("cannot run {}: {e}", cli.display()))
                })
                .collect::<Result<_, _>>()?;
            for child in children {
                let out = child.wait_with_output().map_err(|e| e.to_string())?;
                if !out.status.success() {
                    return Err(format!(
                        "`{} admin grant … premium` failed (does it see the server's LATCHKEY_DATABASE_URL / LATCHKEY_DATA_DIR?): {}",
                        cli.display(),
                        String::from_utf8_lossy(&out.stderr).trim()
                    ));
                }
            }
        }
        Ok(())
    })
    .await
    .map_err(|e| e.to_string())?
}

// ---------------------------------------------------------------- workers

struct Worker {
    id: usize,
    conn: Conn,
    jar: Jar,
    users: Vec<SharedUser>,
    next_user: usize,
    device: Option<DeviceKey>,
    license: Option<String>,
    presigned: Vec<String>,
}

/// What one operation ended as.
enum Outcome {
    Ok,
    /// A label such as `POST /api/licenses 401` or `io: request failed`.
    Failed(String),
}

impl Worker {
    fn user(&mut self) -> SharedUser {
        let user = self.users[self.next_user % self.users.len()].clone();
        self.next_user += 1;
        user
    }

    /// A passkey sign-in with a username; returns the time spent in the two
    /// HTTP round trips (the authenticator's signing is not counted).
    async fn sign_in(&mut self, ctx: &Ctx) -> (Duration, Outcome) {
        let user = self.user();
        let username = user.lock().expect("user").username.clone();
        self.jar.clear();
        let origin = ctx.origin_header();
        let started = Instant::now();
        let reply = self
            .conn
            .send(request(
                Method::POST,
                "/api/login/start",
                &[(header::ORIGIN, origin.clone())],
                Some(serde_json::to_vec(&json!({ "username": username })).expect("JSON")),
            ))
            .await;
        let mut spent = started.elapsed();
        let reply = match reply {
            Ok(r) if r.status == StatusCode::OK => r,
            Ok(r) => return (spent, failed("POST /api/login/start", r.status)),
            Err(e) => return (spent, Outcome::Failed(format!("io: {e}"))),
        };
        self.jar.absorb(&reply.headers);
        let assertion = serde_json::from_slice::<Value>(&reply.body)
            .map_err(|e| e.to_string())
            .and_then(|options| {
                user.lock()
                    .expect("user")
                    .soft
                    .get(&options, &ctx.origin, &Tweaks::default())
            });
        let assertion = match assertion {
            Ok(a) => serde_json::to_vec(&a).expect("JSON"),
            Err(e) => return (spent, Outcome::Failed(format!("authenticator: {e}"))),
        };
        let mut headers = vec![(header::ORIGIN, origin)];
        if let Some(cookie) = self.jar.header() {
            headers.push((header::COOKIE, cookie));
        }
        let started = Instant::now();
        let reply = self
            .conn
            .send(request(
                Method::POST,
                "/api/login/finish",
                &headers,
                Some(assertion),
            ))
            .await;
        spent += started.elapsed();
        match reply {
            Ok(r) if r.status == StatusCode::OK => {
                self.jar.absorb(&r.headers);
                (spent, Outcome::Ok)
            }
            Ok(r) => (spent, failed("POST /api/login/finish", r.status)),
            Err(e) => (spent, Outcome::Failed(format!("io: {e}"))),
        }
    }

    fn next_proof(&mut self, ctx: &Ctx, htm: &str, path: &str) -> String {
        if let Some(proof) = self.presigned.pop() {
            return proof;
        }
        let htu = format!("{}{path}", ctx.origin);
        let device = self.device.as_ref().expect("device key set in prepare");
        device.proof(htm, &htu, self.license.as_deref(), None)
    }

    /// `POST /api/licenses`; on success returns the license.
    async fn mint(&mut self, ctx: &Ctx) -> (Duration, Outcome, Option<String>) {
        let proof = self.next_proof(ctx, "POST", "/api/licenses");
        let mut headers = vec![
            (header::ORIGIN, ctx.origin_header()),
            (
                header::HeaderName::from_static("dpop"),
                HeaderValue::from_str(&proof).expect("proof is ASCII"),
            ),
        ];
        if let Some(cookie) = self.jar.header() {
            headers.push((header::COOKIE, cookie));
        }
        let started = Instant::now();
        let reply = self
            .conn
            .send(request(Method::POST, "/api/licenses", &headers, None))
            .await;
        let spent = started.elapsed();
        match reply {
            Ok(r) if r.status == StatusCode::CREATED => {
                let license = serde_json::from_slice::<Value>(&r.body)
                    .ok()
                    .and_then(|v| v["license"].as_str().map(str::to_owned));
                (spent, Outcome::Ok, license)
            }
            Ok(r) => (spent, failed("POST /api/licenses", r.status), None),
            Err(e) => (spent, Outcome::Failed(format!("io: {e}")), None),
        }
    }

    async fn premium(&mut self, ctx: &Ctx) -> (Duration, Outcome) {
        let proof = self.next_proof(ctx, "GET", "/api/premium/example");
        let license = self.license.as_deref().expect("license set in prepare");
        let headers = [
            (
                header::AUTHORIZATION,
                HeaderValue::from_str(&format!("DPoP {license}")).expect("ASCII"),
            ),
            (
                header::HeaderName::from_static("dpop"),
                HeaderValue::from_str(&proof).expect("ASCII"),
            ),
        ];
        self.get("/api/premium/example", &headers).await
    }

    async fn get(
        &mut self,
        path: &str,
        headers: &[(header::HeaderName, HeaderValue)],
    ) -> (Duration, Outcome) {
        let started = Instant::now();
        let reply = self
            .conn
            .send(request(Method::GET, path, headers, None))
            .await;
        let spent = started.elapsed();
        match reply {
            Ok(r) if r.status == StatusCode::OK => (spent, Outcome::Ok),
            Ok(r) => (spent, failed(&format!("GET {path}"), r.status)),
            Err(e) => (spent, Outcome::Failed(format!("io: {e}"))),
        }
    }

    async fn op(
        &mut self,
        ctx: &Ctx,
        scenario: Scenario,
        status_path: &str,
    ) -> (Duration, Outcome) {
        match scenario {
            Scenario::Signin => self.sign_in(ctx).await,
            Scenario::MintEd25519 | Scenario::MintEs256 => {
                let (spent, outcome, _) = self.mint(ctx).await;
                (spent, outcome)
            }
            Scenario::Premium => self.premium(ctx).await,
            Scenario::Jwks => self.get("/.well-known/jwks.json", &[]).await,
            Scenario::StatusList => self.get(status_path, &[]).await,
            Scenario::All | Scenario::Startup => unreachable!("not a load scenario"),
        }
    }
}

fn failed(what: &str, status: StatusCode) -> Outcome {
    Outcome::Failed(format!("{what} {}", status.as_u16()))
}

/// The `status.status_list.uri` of a license, as a path on the server.
fn status_path(license: &str, origin: &str) -> Option<String> {
    let payload = URL_SAFE_NO_PAD.decode(license.split('.').nth(1)?).ok()?;
    let claims: Value = serde_json::from_slice(&payload).ok()?;
    let uri = claims.pointer("/status/status_list/uri")?.as_str()?;
    Some(uri.strip_prefix(origin).unwrap_or(uri).to_owned())
}

fn entitlements(license: &str) -> Vec<String> {
    URL_SAFE_NO_PAD
        .decode(license.split('.').nth(1).unwrap_or_default())
        .ok()
        .and_then(|p| serde_json::from_slice::<Value>(&p).ok())
        .and_then(|c| c["ent"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|e| e.as_str().map(str::to_owned))
        .collect()
}

/// Signs workers in and mints what the scenario needs; all workers in parallel.
async fn prepare(
    ctx: &Arc<Ctx>,
    scenario: Scenario,
    workers: Vec<Worker>,
) -> (Vec<Worker>, Result<(), String>) {
    let needs_session = matches!(
        scenario,
        Scenario::MintEd25519 | Scenario::MintEs256 | Scenario::Premium | Scenario::StatusList
    );
    let mut tasks = Vec::new();
    for mut worker in workers {
        let ctx = ctx.clone();
        tasks.push(tokio::spawn(async move {
            let result = async {
                worker.presigned.clear();
                worker.license = None;
                worker.device = match scenario {
                    Scenario::MintEs256 => Some(DeviceKey::es256()),
                    Scenario::MintEd25519 | Scenario::Premium => Some(DeviceKey::ed25519()),
                    Scenario::StatusList if worker.id == 0 => Some(DeviceKey::ed25519()),
                    _ => None,
                };
                if needs_session && (scenario != Scenario::StatusList || worker.id == 0) {
                    let (_, outcome) = worker.sign_in(&ctx).await;
                    if let Outcome::Failed(e) = outcome {
                        return Err(format!("sign-in failed: {e}"));
                    }
                }
                // Premium calls need a license; the status list needs one license's URI.
                if scenario == Scenario::Premium
                    || (scenario == Scenario::StatusList && worker.id == 0)
                {
                    let (_, outcome, license) = worker.mint(&ctx).await;
                    if let Outcome::Failed(e) = outcome {
                        return Err(format!("minting the worker's license failed: {e}"));
                    }
                    worker.license = license;
                }
                if scenario == Scenario::Premium {
                    let license = worker.license.clone().unwrap_or_default();
                    if !entitlements(&license).iter().any(|e| e == "premium") {
                        return Err(
                            "the license has no `premium` entitlement: pass --cli PATH-TO-latchkey \
                             (with the server's environment) or run `latchkey admin grant USER premium`"
                                .into(),
                        );
                    }
                }
                let path = match scenario {
                    Scenario::MintEd25519 | Scenario::MintEs256 => Some(("POST", "/api/licenses")),
                    Scenario::Premium => Some(("GET", "/api/premium/example")),
                    _ => None,
                };
                if let Some((htm, path)) = path {
                    let mut proofs = Vec::with_capacity(ctx.presign);
                    for _ in 0..ctx.presign {
                        proofs.push(worker.next_proof(&ctx, htm, path));
                    }
                    worker.presigned = proofs;
                }
                Ok(())
            }
            .await;
            (worker, result)
        }));
    }
    let mut back = Vec::new();
    let mut result = Ok(());
    for task in tasks {
        match task.await {
            Ok((worker, r)) => {
                back.push(worker);
                if result.is_ok() {
                    result = r;
                }
            }
            Err(e) => result = Err(e.to_string()),
        }
    }
    (back, result)
}

// ---------------------------------------------------------------- measuring

#[derive(Default)]
struct Stats {
    /// Latency of each successful operation, in nanoseconds.
    latencies: Vec<u64>,
    errors: BTreeMap<String, u64>,
}

/// Runs every worker closed-loop until `deadline` (or the request budget is spent).
async fn phase(
    ctx: &Arc<Ctx>,
    scenario: Scenario,
    workers: Vec<Worker>,
    deadline: Instant,
    issued: &Arc<AtomicU64>,
    status_path: &Arc<str>,
) -> (Vec<Worker>, Stats) {
    let mut tasks = Vec::new();
    for mut worker in workers {
        let (ctx, issued, status_path) = (ctx.clone(), issued.clone(), status_path.clone());
        tasks.push(tokio::spawn(async move {
            let mut stats = Stats::default();
            while Instant::now() < deadline
                && issued.fetch_add(1, Ordering::Relaxed) < ctx.max_requests
            {
                let (spent, outcome) = worker.op(&ctx, scenario, &status_path).await;
                match outcome {
                    Outcome::Ok => stats
                        .latencies
                        .push(u64::try_from(spent.as_nanos()).unwrap_or(u64::MAX)),
                    Outcome::Failed(label) => *stats.errors.entry(label).or_default() += 1,
                }
            }
            (worker, stats)
        }));
    }
    let mut back = Vec::new();
    let mut total = Stats::default();
    for task in tasks {
        match task.await {
            Ok((worker, stats)) => {
                back.push(worker);
                total.latencies.extend(stats.latencies);
                for (label, n) in stats.errors {
                    *total.errors.entry(label).or_default() += n;
                }
            }
            Err(e) => *total.errors.entry(format!("worker: {e}")).or_default() += 1,
        }
    }
    (back, total)
}

struct Report {
    label: String,
    scenario: &'static str,
    ok: u64,
    wall: Duration,
    p50: Duration,
    p99: Duration,
    max: Duration,
    errors: BTreeMap<String, u64>,
    /// CPU time over wall time, in cores (2.0 = both cores busy).
    server_cpu: Option<f64>,
    server_peak_rss_kib: Option<u64>,
    server_hwm_kib: Option<u64>,
    loadgen_cpu: Option<f64>,
    /// Busy CPU of the whole machine: what is neither server nor generator
    /// is other work that disturbed the measurement.
    machine_cpu: Option<f64>,
    concurrency: usize,
    presign: usize,
}

impl Report {
    fn rps(&self) -> f64 {
        self.ok as f64 / self.wall.as_secs_f64().max(1e-9)
    }
    fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// The `permille`-th latency (nearest rank).
fn percentile(sorted: &[u64], permille: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (sorted.len() * permille).div_ceil(1000).max(1);
    Duration::from_nanos(sorted[rank.min(sorted.len()) - 1])
}

async fn drive(
    ctx: &Arc<Ctx>,
    scenario: Scenario,
    workers: Vec<Worker>,
    server_pid: Option<u32>,
    clk_tck: u64,
    label: &str,
) -> (Vec<Worker>, Report) {
    let status_path: Arc<str> = workers
        .iter()
        .find_map(|w| {
            w.license
                .as_deref()
                .and_then(|l| status_path(l, &ctx.origin))
        })
        .unwrap_or_else(|| "/api/status-lists/1".to_owned())
        .into();
    let issued = Arc::new(AtomicU64::new(0));
    let concurrency = workers.len();
    let warm_until = Instant::now() + ctx.warmup;
    let (workers, _) = phase(ctx, scenario, workers, warm_until, &issued, &status_path).await;

    let server_ticks = |pid: Option<u32>| pid.and_then(|p| cpu_ticks(&p.to_string()));
    let (server_before, self_before) = (server_ticks(server_pid), cpu_ticks("self"));
    let machine_before = machine_busy_ticks();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = server_pid.map(|pid| {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut peak = 0;
            loop {
                peak = peak.max(proc_status_kib(pid, "VmRSS:").unwrap_or(0));
                if stop.load(Ordering::Relaxed) {
                    return peak;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    });
    let started = Instant::now();
    let (workers, mut stats) = phase(
        ctx,
        scenario,
        workers,
        started + ctx.duration,
        &issued,
        &status_path,
    )
    .await;
    let wall = started.elapsed();
    let (server_after, self_after) = (server_ticks(server_pid), cpu_ticks("self"));
    let machine_after = machine_busy_ticks();
    stop.store(true, Ordering::Relaxed);
    let server_peak_rss_kib = match sampler {
        Some(task) => task.await.ok(),
        None => None,
    };
    let cores = |before: Option<u64>, after: Option<u64>| {
        let ticks = after?.checked_sub(before?)?;
        Some(ticks as f64 / clk_tck as f64 / wall.as_secs_f64().max(1e-9))
    };
    stats.latencies.sort_unstable();
    let report = Report {
        label: label.to_owned(),
        scenario: scenario.name(),
        ok: u64::try_from(stats.latencies.len()).unwrap_or(u64::MAX),
        wall,
        p50: percentile(&stats.latencies, 500),
        p99: percentile(&stats.latencies, 990),
        max: percentile(&stats.latencies, 1000),
        errors: stats.errors,
        server_cpu: cores(server_before, server_after),
        server_peak_rss_kib,
        server_hwm_kib: server_pid.and_then(|p| proc_status_kib(p, "VmHWM:")),
        loadgen_cpu: cores(self_before, self_after),
        machine_cpu: cores(machine_before, machine_after),
        concurrency,
        presign: ctx.presign,
    };
    (workers, report)
}

/// utime + stime of a process, in clock ticks, from /proc/PID/stat.
fn cpu_ticks(pid: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name start at field 3 (state);
    // utime and stime are fields 14 and 15.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Busy time of all CPUs (everything but idle and iowait), in clock ticks, from /proc/stat.
fn machine_busy_ticks() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = text
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let total: u64 = fields.iter().take(8).sum();
    Some(total - fields.get(3)? - fields.get(4)?)
}

/// A `kB` line of /proc/PID/status, such as `VmRSS:`.
fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(100)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn mib(kib: Option<u64>) -> Option<f64> {
    kib.map(|k| k as f64 / 1024.0)
}

fn print_report(report: &Report) {
    let opt = |v: Option<f64>, unit: &str| {
        v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.2}{unit}"))
    };
    println!(
        "{}{}: {} ok in {:.2} s = {:.0} req/s | latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms | \
         errors {} {:?} | server CPU {} cores, peak RSS {} (VmHWM {}) | loadgen CPU {} cores | \
         machine busy {} cores",
        if report.label.is_empty() { String::new() } else { format!("[{}] ", report.label) },
        report.scenario,
        report.ok,
        report.wall.as_secs_f64(),
        report.rps(),
        ms(report.p50),
        ms(report.p99),
        ms(report.max),
        report.error_count(),
        report.errors,
        opt(report.server_cpu, ""),
        opt(mib(report.server_peak_rss_kib), " MiB"),
        opt(mib(report.server_hwm_kib), " MiB"),
        opt(report.loadgen_cpu, ""),
        opt(report.machine_cpu, ""),
    );
    let line = json!({
        "label": report.label,
        "scenario": report.scenario,
        "concurrency": report.concurrency,
        "presign": report.presign,
        "ok": report.ok,
        "seconds": report.wall.as_secs_f64(),
        "rps": report.rps(),
        "p50_ms": ms(report.p50),
        "p99_ms": ms(report.p99),
        "max_ms": ms(report.max),
        "errors": report.error_count(),
        "errors_by_status": report.errors,
        "server_cpu_cores": report.server_cpu,
        "server_peak_rss_mib": mib(report.server_peak_rss_kib),
        "server_hwm_mib": mib(report.server_hwm_kib),
        "loadgen_cpu_cores": report.loadgen_cpu,
        "machine_busy_cores": report.machine_cpu,
    });
    println!("RESULT {line}");
}

fn print_table(reports: &[Report]) {
    println!(
        "| scenario | req/s | p50 ms | p99 ms | max ms | errors | server CPU (cores) | server peak RSS MiB | loadgen CPU (cores) |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let opt = |v: Option<f64>| v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.2}"));
    for r in reports {
        println!(
            "| {} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {} |",
            r.scenario,
            r.rps(),
            ms(r.p50),
            ms(r.p99),
            ms(r.max),
            r.error_count(),
            opt(r.server_cpu),
            opt(mib(r.server_peak_rss_kib)),
            opt(r.loadgen_cpu),
        );
    }
}

// ---------------------------------------------------------------- start-up

/// Starts the server `--repeat` times on its existing database: time from
/// spawning the process to the first `/readyz` 200, then the RSS after `--idle`.
async fn startup(args: &Args, target: &Target) -> Result<(), String> {
    let bin = args
        .server_bin
        .as_ref()
        .ok_or("--scenario startup needs --server-bin PATH")?;
    let mut ready_ms = Vec::new();
    let mut idle_rss_mib = Vec::new();
    for _ in 0..args.repeat.clamp(1, 50) {
        let started = Instant::now();
        let mut child = std::process::Command::new(bin)
            .args(["serve", "--listen", &target.addr.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let pid = child.id();
        let ready = loop {
            let mut conn = Conn::new(target.clone());
            if let Ok(reply) = conn.send(request(Method::GET, "/readyz", &[], None)).await {
                if reply.status == StatusCode::OK {
                    break Ok(started.elapsed());
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                break Err(format!(
                    "the server exited ({status}) before it was ready; run it by hand to see why"
                ));
            }
            if started.elapsed() > Duration::from_secs(30) {
                break Err("the server was not ready within 30 s".to_owned());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        let ready = match ready {
            Ok(ready) => ready,
            Err(e) => {
                stop_child(&mut child);
                return Err(e);
            }
        };
        tokio::time::sleep(args.idle).await;
        let rss = proc_status_kib(pid, "VmRSS:");
        stop_child(&mut child);
        println!(
            "start-up: ready in {:.1} ms; RSS after {} idle: {}",
            ms(ready),
            humantime::format_duration(args.idle),
            mib(rss).map_or_else(|| "n/a".to_owned(), |m| format!("{m:.1} MiB"))
        );
        ready_ms.push(ms(ready));
        if let Some(m) = mib(rss) {
            idle_rss_mib.push(m);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied()
    };
    let line = json!({
        "label": args.label,
        "scenario": "startup",
        "ready_ms": ready_ms,
        "idle_rss_mib": idle_rss_mib,
        "median_ready_ms": median(&mut ready_ms.clone()),
        "median_idle_rss_mib": median(&mut idle_rss_mib.clone()),
    });
    println!("RESULT {line}");
    Ok(())
}

/// SIGTERM (graceful shutdown) to the child we started, then reap it.
fn stop_child(child: &mut std::process::Child) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}
