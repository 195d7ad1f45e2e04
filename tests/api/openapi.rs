//! The OpenAPI document tells the truth: every route is in it, it is a valid
//! OpenAPI 3.1 document, real answers fit its schemas, and a schema-driven
//! fuzzer (schemathesis, `--checks all`) finds no mismatch.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::dpop::DeviceKey;
use crate::helpers::{spawn_app, spawn_app_with, Db, TestApp, ORIGIN};

async fn document(app: &TestApp) -> Value {
    let reply = app.get("/openapi.json").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers["content-type"], "application/json");
    reply.body
}

fn source_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(source_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// A tool the test command installs (`scripts/test`), named by an environment
/// variable; on CI a missing tool is a failure, elsewhere the test says so and stops.
fn tool(variable: &str) -> Option<PathBuf> {
    match std::env::var_os(variable) {
        Some(path) => Some(PathBuf::from(path)),
        None if std::env::var_os("CI").is_some() => {
            panic!("{variable} is not set: run the suite with scripts/test")
        }
        None => {
            eprintln!("{variable} is not set (scripts/test sets it): not run");
            None
        }
    }
}

#[test]
fn every_api_route_is_registered_with_its_documentation() {
    // Features register routes with `routes!(handler)`, which adds the path to
    // the document from the handler's annotation; a bare `.route(` would not.
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for file in source_files(&src) {
        let text = std::fs::read_to_string(&file).unwrap();
        let text = text.split("#[cfg(test)]").next().unwrap();
        let name = file.strip_prefix(&src).unwrap().display().to_string();
        let allowed: &[&str] = match name.as_str() {
            // The catch-all 404 for /api/ and the document itself.
            "app.rs" => &["\"/api/{*rest}\"", "\"/openapi.json\""],
            // Served on its own listener (LATCHKEY_METRICS_LISTEN), not on the API's.
            "metrics.rs" => &["\"/metrics\""],
            _ => &[],
        };
        for call in text.split(".route(").skip(1) {
            assert!(
                allowed.iter().any(|a| call.trim_start().starts_with(a)),
                "{name}: .route({}… bypasses the OpenAPI document; use .routes(routes!(…))",
                &call[..call.len().min(40)]
            );
        }
    }
}

#[tokio::test]
async fn the_document_is_complete_and_every_documented_route_is_served() {
    let app = spawn_app(Db::Sqlite).await;
    let doc = document(&app).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let schemes = keys(&doc["components"]["securitySchemes"]);
    assert_eq!(
        schemes,
        ["apikey", "dpop", "session"].map(String::from).into()
    );
    let mut ids = BTreeSet::new();
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            operations += 1;
            let id = operation["operationId"].as_str().unwrap();
            assert!(ids.insert(id.to_owned()), "operation id {id} is not unique");
            let responses = operation["responses"].as_object().unwrap();
            for (code, response) in responses {
                if code.starts_with('4') || code.starts_with('5') {
                    assert!(
                        response["content"]["application/problem+json"].is_object(),
                        "{method} {path} {code} is not a problem"
                    );
                }
            }
            if operation["requestBody"].is_object() {
                for code in ["400", "415", "422"] {
                    assert!(responses.contains_key(code), "{method} {path} lacks {code}");
                }
            }
            // Served: whatever it answers, it is not the catch-all's 404 or a 405.
            let concrete = path
                .replace("{id}", "x")
                .replace("{jti}", "x")
                .replace("{name}", "x");
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let reply = app
                .send(&app.client, method.clone(), &concrete, None, &[])
                .await;
            assert_ne!(
                reply.status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}"
            );
            if reply.status == StatusCode::NOT_FOUND {
                assert_ne!(
                    reply.problem(),
                    "not-found",
                    "{method} {path} is not routed"
                );
            }
        }
    }
    assert!(operations >= 29, "{operations} operations");
}

#[tokio::test]
async fn every_api_error_is_a_problem_even_unknown_routes_and_methods() {
    let app = spawn_app(Db::Sqlite).await;
    let unknown = app.get("/api/definitely-not-a-route").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.problem(), "not-found");
    let unknown_post = app.post("/api/definitely/not/a/route", &json!({})).await;
    assert_eq!(unknown_post.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown_post.problem(), "not-found");
    let wrong_method = app.get("/api/login/start").await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong_method.problem(), "method-not-allowed");
    assert_eq!(wrong_method.headers["allow"], "POST");
    let put = app
        .send(&app.client, Method::PUT, "/openapi.json", None, &[])
        .await;
    assert_eq!(put.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(put.problem(), "method-not-allowed");
    let bad_query = app.get("/api/admin/audit?limit=abc").await;
    // Not signed in comes first; signed in, the query is checked (see the admin tests).
    assert_eq!(bad_query.status, StatusCode::UNAUTHORIZED);
    bad_query.problem();
    let not_json = app
        .send(
            &app.client,
            Method::POST,
            "/api/login/start",
            None,
            &[("content-type", "text/plain")],
        )
        .await;
    assert_eq!(not_json.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(not_json.problem(), "json-required");
    let page = app.get("/no-such-page").await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert!(
        page.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"),
        "pages keep their HTML 404"
    );
}

/// The top-level members of a schema, following `$ref` and `allOf`.
fn properties(doc: &Value, schema: &Value) -> BTreeSet<String> {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.rsplit('/').next().unwrap();
        return properties(doc, &doc["components"]["schemas"][name]);
    }
    let mut out: BTreeSet<String> = schema["properties"]
        .as_object()
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    for part in schema["allOf"].as_array().into_iter().flatten() {
        out.extend(properties(doc, part));
    }
    out
}

fn named(doc: &Value, name: &str) -> BTreeSet<String> {
    let found = properties(
        doc,
        &json!({"$ref": format!("#/components/schemas/{name}")}),
    );
    assert!(!found.is_empty(), "no schema {name}");
    found
}

fn keys(value: &Value) -> BTreeSet<String> {
    value.as_object().unwrap().keys().cloned().collect()
}

#[tokio::test]
async fn documented_schemas_match_real_responses() {
    let app = spawn_app(Db::Sqlite).await;
    let doc = document(&app).await;
    let options = app
        .post("/api/register/start", &json!({"username": "ana"}))
        .await;
    assert_eq!(keys(&options.body), named(&doc, "PasskeyOptions"));
    let mut authenticator = crate::authenticator::SoftAuthenticator::new();
    let credential = authenticator
        .create(&options.body, ORIGIN, &Default::default())
        .unwrap();
    let documented = named(&doc, "RegistrationCredential");
    for member in keys(&credential) {
        assert!(documented.contains(&member), "{member}");
    }
    let registered = app.post("/api/register/finish", &credential).await;
    assert_eq!(keys(&registered.body), named(&doc, "Registered"));
    app.cli(&["admin", "promote", "ana"]).await.unwrap();
    app.cli(&["admin", "grant", "ana", "premium"])
        .await
        .unwrap();
    let me = app.get("/api/me").await;
    assert_eq!(keys(&me.body), named(&doc, "Me"));
    assert_eq!(keys(&me.body["passkeys"][0]), named(&doc, "PasskeyInfo"));
    assert_eq!(
        keys(&me.body["entitlements"][0]),
        named(&doc, "EntitlementInfo")
    );
    let device = DeviceKey::ed25519();
    let minted = app.mint(&app.client, &device).await;
    assert_eq!(keys(&minted.body), named(&doc, "License"));
    let premium = app
        .premium(minted.body["license"].as_str().unwrap(), &device)
        .await;
    assert_eq!(keys(&premium.body), named(&doc, "Premium"));
    let jwks = app.get("/.well-known/jwks.json").await;
    assert_eq!(jwks.headers["content-type"], "application/jwk-set+json");
    assert_eq!(keys(&jwks.body["keys"][0]), named(&doc, "PublishedJwk"));
    let mut ana = crate::helpers::Account {
        user_id: registered.body["user_id"].as_str().unwrap().into(),
        username: "ana".into(),
        credential_id: String::new(),
        authenticator,
    };
    let signed_in = app.login(&mut ana).await;
    assert_eq!(keys(&signed_in.body), named(&doc, "SignedInUser"));
    let problem = app
        .post("/api/register/start", &json!({"username": ""}))
        .await;
    let documented = named(&doc, "Problem");
    for member in keys(&problem.body) {
        assert!(documented.contains(&member), "{member}");
    }
    let overview = app.get("/api/admin/overview").await;
    assert_eq!(keys(&overview.body), named(&doc, "Overview"));
    assert_eq!(keys(&overview.body["counts"]), named(&doc, "Counts"));
    assert_eq!(keys(&overview.body["daily"][0]), named(&doc, "Day"));
    let users = app.get("/api/admin/users").await;
    assert_eq!(keys(&users.body), named(&doc, "UserPage"));
    assert_eq!(keys(&users.body["users"][0]), named(&doc, "UserSummary"));
    let detail = app.get(&format!("/api/admin/users/{}", ana.user_id)).await;
    assert_eq!(keys(&detail.body), named(&doc, "UserDetail"));
    assert_eq!(keys(&detail.body["user"]), named(&doc, "UserInfo"));
    for (member, schema) in [
        ("passkeys", "AdminPasskey"),
        ("licenses", "AdminLicense"),
        ("entitlements", "AdminEntitlement"),
        ("sessions", "SessionInfo"),
    ] {
        assert_eq!(
            keys(&detail.body[member][0]),
            named(&doc, schema),
            "{member}"
        );
    }
    let audit = app.get("/api/admin/audit").await;
    assert_eq!(keys(&audit.body), named(&doc, "AuditPage"));
    assert_eq!(keys(&audit.body["events"][0]), named(&doc, "AuditEntry"));
}

#[tokio::test]
async fn openapi_spec_validator_accepts_the_document() {
    let Some(validator) = tool("LATCHKEY_OPENAPI_SPEC_VALIDATOR") else {
        return;
    };
    let app = spawn_app(Db::Sqlite).await;
    let file = app.data_dir.path().join("openapi.json");
    std::fs::write(&file, app.get("/openapi.json").await.text).unwrap();
    let out = Command::new(validator).arg(&file).output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Schemathesis with every check, signed in as an admin, against a service
/// whose rate limits are off (429s would hide the logic behind them). The
/// logout routes are excluded: they would end the session it tests with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_failures() {
    let Some(schemathesis) = tool("LATCHKEY_SCHEMATHESIS") else {
        return;
    };
    let app = spawn_app_with(
        Db::Sqlite,
        &[
            "--rate-limit-ceremonies",
            "0",
            "--rate-limit-licenses",
            "0",
            "--rate-limit-admin",
            "0",
            "--rate-limit-premium",
            "0",
            // The payment webhooks check signatures (a fuzzer cannot make one).
            "--stripe-webhook-secret",
            "whsec_fuzz",
            "--paddle-webhook-secret",
            "pdl_ntfset_fuzz",
        ],
    )
    .await;
    // A key with every scope, for the operations only keys may call.
    let key = latchkey::apikeys::ops::create(
        &app.state.store,
        &latchkey::admin::ops::Actor::Cli,
        "fuzz",
        latchkey::apikeys::Scope::ALL,
        None,
    )
    .await
    .unwrap()
    .secret;
    // What the fuzzer then does with these accounts (promote, disable, revoke
    // passkeys it finds through the links it infers) is real API use.
    let mut admin = app.register("fuzz-admin").await;
    app.cli(&["admin", "promote", "fuzz-admin"]).await.unwrap();
    let signed_in = app.login(&mut admin).await;
    assert_eq!(signed_in.status, StatusCode::OK, "{}", signed_in.text);
    let cookie = signed_in.headers["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .and_then(|c| c.strip_prefix("latchkey="))
        .unwrap()
        .to_owned();
    app.register_with(&crate::helpers::new_client(), "member", Default::default())
        .await;
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis.toml");
    let report = app.data_dir.path().join("schemathesis");
    // A fixed seed keeps CI repeatable; set these for a longer, different run.
    let seed = std::env::var("LATCHKEY_FUZZ_SEED").unwrap_or_else(|_| "7361".into());
    let examples = std::env::var("LATCHKEY_FUZZ_EXAMPLES").unwrap_or_else(|_| "25".into());
    let out = tokio::task::spawn_blocking({
        let url = app.url("/openapi.json");
        let base = app.url("");
        move || {
            Command::new(schemathesis)
                .arg("--config-file")
                .arg(&config)
                .args(["run", &url, "--url", &base, "--checks", "all"])
                .args(["--exclude-path-regex", "^/api/logout"])
                .args(["--max-examples", &examples, "--seed", &seed, "--no-color"])
                .arg("--report-dir")
                .arg(&report)
                .env("LATCHKEY_SESSION", &cookie)
                .env("LATCHKEY_FUZZ_KEY", &key)
                .env("LATCHKEY_FUZZ_ORIGIN", ORIGIN)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found failures:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The admin session stayed good throughout, so the admin routes were
    // exercised; only the premium example, which needs a fresh DPoP proof per
    // request, cannot be reached by a fuzzer.
    let warnings = stdout
        .split("WARNINGS")
        .nth(1)
        .and_then(|w| w.split("SUMMARY").next())
        .unwrap_or_default();
    for line in warnings
        .lines()
        .filter(|l| l.trim_start().starts_with("- "))
    {
        let op = line.trim_start().trim_start_matches("- ");
        assert!(
            !op.starts_with("GET /api/admin") && !op.starts_with("GET /api/me"),
            "{op} could not be reached:\n{stdout}"
        );
    }
}
