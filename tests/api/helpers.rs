//! `spawn_app()`: the real service on a random port with a fresh database, and
//! a client with one helper per endpoint.

use std::sync::Arc;

use clap::Parser;
use latchkey::app::{build_router, serve};
use latchkey::config::default_static_dir;
use latchkey::config::{Cli, Command};
use latchkey::state::AppState;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::authenticator::{SoftAuthenticator, Tweaks};
use crate::dpop::DeviceKey;

pub const ORIGIN: &str = "http://localhost:8080";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// Runs each test body once per database, as `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! on_both_databases {
    ($(async fn $name:ident($app:ident) $body:block)*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            async fn run($app: $crate::helpers::TestApp) $body
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                run($crate::helpers::spawn_app($crate::helpers::Db::Sqlite).await).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                run($crate::helpers::spawn_app($crate::helpers::Db::Postgres).await).await
            }
        }
    )*};
}

/// Like `on_both_databases!`, with extra `serve` settings for every test.
#[macro_export]
macro_rules! on_both_databases_with {
    ($args:expr; $(async fn $name:ident($app:ident) $body:block)*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            async fn run($app: $crate::helpers::TestApp) $body
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                run($crate::helpers::spawn_app_with($crate::helpers::Db::Sqlite, $args).await).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                run($crate::helpers::spawn_app_with($crate::helpers::Db::Postgres, $args).await).await
            }
        }
    )*};
}

/// A response: status, headers and the body as JSON (Null when empty or not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    /// The problem `type` slug, asserting the body is a problem document.
    pub fn problem(&self) -> &str {
        assert_eq!(
            self.headers
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/problem+json"),
            "not a problem document: {} {}",
            self.status,
            self.text
        );
        assert_eq!(
            self.body["status"].as_u64(),
            Some(u64::from(self.status.as_u16())),
            "{}",
            self.text
        );
        self.body["type"]
            .as_str()
            .and_then(|t| t.strip_prefix("urn:latchkey:problem:"))
            .unwrap_or_else(|| panic!("problem without a latchkey type: {}", self.text))
    }
}

pub struct TestApp {
    pub addr: std::net::SocketAddr,
    /// `--base-path`, put before every path given to [`TestApp::url`].
    pub base: String,
    pub state: AppState,
    pub client: reqwest::Client,
    pub db: Db,
    pub database_url: String,
    pub data_dir: Arc<TempDir>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    /// Background tasks (the webhook senders), stopped with the app.
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.tasks.iter().for_each(tokio::task::JoinHandle::abort);
    }
}

pub async fn create_pg_database() -> String {
    let base = std::env::var("LATCHKEY_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let name = format!("latchkey_test_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx::PgPool::connect(&format!("{base}/postgres"))
        .await
        .expect("PostgreSQL must be running (see README)");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .expect("create test database");
    admin.close().await;
    format!("{base}/{name}")
}

/// Starts the service with extra command-line settings.
pub async fn spawn_app_with(db: Db, extra: &[&str]) -> TestApp {
    let data_dir = Arc::new(TempDir::new().expect("temp dir"));
    let database_url = match db {
        Db::Sqlite => format!("sqlite://{}", data_dir.path().join("latchkey.db").display()),
        Db::Postgres => create_pg_database().await,
    };
    spawn_app_at(db, &database_url, data_dir, extra).await
}

pub async fn spawn_app(db: Db) -> TestApp {
    spawn_app_with(db, &[]).await
}

/// Starts an instance on an existing database and data directory.
pub async fn spawn_app_at(
    db: Db,
    database_url: &str,
    data_dir: Arc<TempDir>,
    extra: &[&str],
) -> TestApp {
    let dir = data_dir.path().display().to_string();
    let mut args = vec![
        "latchkey",
        "--origin",
        ORIGIN,
        "--rp-id",
        "localhost",
        "--data-dir",
        &dir,
        "--database-url",
        database_url,
        "--log",
        "warn",
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--db-max-connections",
        "4",
    ];
    args.extend_from_slice(extra);
    let cli = Cli::try_parse_from(args).expect("test arguments parse");
    let Some(Command::Serve(serve_args)) = cli.command else {
        panic!("serve expected")
    };
    let state = AppState::build(&cli.common, &serve_args)
        .await
        .expect("app state");
    let router = build_router(state.clone(), default_static_dir(), serve_args.body_limit);
    let tasks = latchkey::webhooks::start(&state)
        .await
        .expect("webhook senders");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(
        listener,
        router,
        serve_args.connection_limits(),
        async {
            let _ = rx.await;
        },
    ));
    TestApp {
        addr,
        base: serve_args.base_path.clone(),
        state,
        client: new_client(),
        db,
        database_url: database_url.to_owned(),
        data_dir,
        shutdown: Some(tx),
        tasks,
    }
}

pub fn new_client() -> reqwest::Client {
    let mut headers = HeaderMap::new();
    headers.insert("origin", HeaderValue::from_static(ORIGIN));
    reqwest::Client::builder()
        .cookie_store(true)
        .default_headers(headers)
        .build()
        .expect("client")
}

/// A registered user and the authenticator holding their passkey.
pub struct Account {
    pub user_id: String,
    pub username: String,
    pub credential_id: String,
    pub authenticator: SoftAuthenticator,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}{path}", self.addr, self.base)
    }

    pub async fn send(
        &self,
        client: &reqwest::Client,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = client.request(method, self.url(path));
        if let Some(body) = body {
            request = request.json(body);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            text,
        }
    }

    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.send(&self.client, Method::POST, path, Some(body), &[])
            .await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(&self.client, Method::GET, path, None, &[]).await
    }

    /// Registers `username` with a fresh authenticator; asserts success.
    pub async fn register(&self, username: &str) -> Account {
        self.register_with(&self.client, username, SoftAuthenticator::new())
            .await
    }

    pub async fn register_with(
        &self,
        client: &reqwest::Client,
        username: &str,
        mut authenticator: SoftAuthenticator,
    ) -> Account {
        let options = self
            .send(
                client,
                Method::POST,
                "/api/register/start",
                Some(&json!({"username": username})),
                &[],
            )
            .await;
        assert_eq!(options.status, StatusCode::OK, "{}", options.text);
        let credential = authenticator
            .create(&options.body, ORIGIN, &Tweaks::default())
            .expect("create");
        let done = self
            .send(
                client,
                Method::POST,
                "/api/register/finish",
                Some(&credential),
                &[],
            )
            .await;
        assert_eq!(done.status, StatusCode::CREATED, "{}", done.text);
        Account {
            user_id: done.body["user_id"].as_str().expect("user_id").to_owned(),
            username: username.to_owned(),
            credential_id: done.body["credential_id"]
                .as_str()
                .expect("credential_id")
                .to_owned(),
            authenticator,
        }
    }

    /// Starts a sign-in (optionally naming the user) and answers it with the authenticator.
    pub async fn login_with(
        &self,
        client: &reqwest::Client,
        username: Option<&str>,
        authenticator: &mut SoftAuthenticator,
        tweaks: &Tweaks,
    ) -> Reply {
        let body = match username {
            Some(name) => json!({"username": name}),
            None => json!({}),
        };
        let options = self
            .send(client, Method::POST, "/api/login/start", Some(&body), &[])
            .await;
        assert_eq!(options.status, StatusCode::OK, "{}", options.text);
        let assertion = authenticator
            .get(&options.body, ORIGIN, tweaks)
            .expect("get");
        self.send(
            client,
            Method::POST,
            "/api/login/finish",
            Some(&assertion),
            &[],
        )
        .await
    }

    pub async fn login(&self, account: &mut Account) -> Reply {
        let client = self.client.clone();
        self.login_with(
            &client,
            Some(&account.username.clone()),
            &mut account.authenticator,
            &Tweaks::default(),
        )
        .await
    }

    /// Confirms a passkey in `client`'s session (step-up) with `authenticator`.
    pub async fn step_up(
        &self,
        client: &reqwest::Client,
        authenticator: &mut SoftAuthenticator,
    ) -> Reply {
        let options = self
            .send(client, Method::POST, "/api/me/step-up/start", None, &[])
            .await;
        assert_eq!(options.status, StatusCode::OK, "{}", options.text);
        let assertion = authenticator
            .get(&options.body, ORIGIN, &Tweaks::default())
            .expect("get");
        self.send(
            client,
            Method::POST,
            "/api/me/step-up/finish",
            Some(&assertion),
            &[],
        )
        .await
    }

    /// Adds a passkey held by `authenticator` to `client`'s user; the reply of the finish.
    pub async fn add_passkey(
        &self,
        client: &reqwest::Client,
        authenticator: &mut SoftAuthenticator,
    ) -> Reply {
        let options = self
            .send(client, Method::POST, "/api/me/passkeys/start", None, &[])
            .await;
        if options.status != StatusCode::OK {
            return options;
        }
        let credential = authenticator
            .create(&options.body, ORIGIN, &Tweaks::default())
            .expect("create");
        self.send(
            client,
            Method::POST,
            "/api/me/passkeys/finish",
            Some(&credential),
            &[],
        )
        .await
    }

    /// Asks for a license with a DPoP proof from `device`.
    pub async fn mint(&self, client: &reqwest::Client, device: &DeviceKey) -> Reply {
        let proof = device.proof(
            "POST",
            &format!("{ORIGIN}{}/api/licenses", self.base),
            None,
            None,
        );
        self.send(
            client,
            Method::POST,
            "/api/licenses",
            None,
            &[("dpop", &proof)],
        )
        .await
    }

    pub async fn premium(&self, license: &str, device: &DeviceKey) -> Reply {
        let proof = device.proof(
            "GET",
            &format!("{ORIGIN}{}/api/premium/example", self.base),
            Some(license),
            None,
        );
        let auth = format!("DPoP {license}");
        self.send(
            &self.client,
            Method::GET,
            "/api/premium/example",
            None,
            &[("authorization", &auth), ("dpop", &proof)],
        )
        .await
    }

    /// Runs a CLI command against this instance's database.
    pub async fn cli(&self, args: &[&str]) -> anyhow::Result<()> {
        let dir = self.data_dir.path().display().to_string();
        let mut all = vec![
            "latchkey",
            "--origin",
            ORIGIN,
            "--data-dir",
            &dir,
            "--database-url",
            &self.database_url,
        ];
        all.extend_from_slice(args);
        let cli = Cli::try_parse_from(all)?;
        match cli.command {
            Some(Command::Serve(_)) | None => anyhow::bail!("not a CLI command"),
            Some(command) => latchkey::cli::run(&cli.common, command).await,
        }
    }

    /// Counts rows of a table (for "nothing was created" checks).
    pub async fn count(&self, table: &str) -> i64 {
        self.scalar(&format!("SELECT COUNT(*) FROM {table}")).await
    }

    /// Runs one statement directly on the database (to age rows, say).
    pub async fn execute(&self, sql: &str) {
        match self.db {
            Db::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&self.database_url)
                    .await
                    .expect("sqlite");
                sqlx::query(sql).execute(&pool).await.expect("statement");
                pool.close().await;
            }
            Db::Postgres => {
                let pool = sqlx::PgPool::connect(&self.database_url).await.expect("pg");
                sqlx::query(sql).execute(&pool).await.expect("statement");
                pool.close().await;
            }
        }
    }

    /// The first column of the first row of `sql`, as text.
    pub async fn text(&self, sql: &str) -> String {
        self.first_column(sql).await
    }

    pub async fn scalar(&self, sql: &str) -> i64 {
        self.first_column(sql).await
    }

    async fn first_column<T>(&self, sql: &str) -> T
    where
        T: Send + Unpin,
        T: for<'r> sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
        T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
    {
        match self.db {
            Db::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&self.database_url)
                    .await
                    .expect("sqlite");
                let v = sqlx::query_scalar(sql)
                    .fetch_one(&pool)
                    .await
                    .expect("query");
                pool.close().await;
                v
            }
            Db::Postgres => {
                let pool = sqlx::PgPool::connect(&self.database_url).await.expect("pg");
                let v = sqlx::query_scalar(sql)
                    .fetch_one(&pool)
                    .await
                    .expect("query");
                pool.close().await;
                v
            }
        }
    }
}

pub fn unb64(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .expect("base64url")
}
