use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::Value;

use crate::dpop::DeviceKey;
use crate::helpers::{spawn_app, Db, TestApp};

/// `(method, path)` of every `.route(...)` in the source, read from the files.
fn routes_in_source() -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    let mut stack = vec![std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src"
    ))];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            // Unit tests build routers of their own.
            let text = text.split("#[cfg(test)]").next().unwrap();
            for chunk in text.split(".route(").skip(1) {
                let chunk = chunk.trim_start();
                let Some(chunk) = chunk.strip_prefix('"') else {
                    continue;
                };
                let (route, rest) = chunk.split_once('"').unwrap();
                let end = rest
                    .find("\n        .")
                    .or_else(|| rest.find(")\n"))
                    .unwrap_or(rest.len());
                let call = &rest[..end];
                for method in ["get", "post", "put", "patch", "delete"] {
                    if [" ", ".", "\n", "(", ":"]
                        .iter()
                        .any(|p| call.contains(&format!("{p}{method}(")))
                    {
                        out.insert((method.to_owned(), route.to_owned()));
                    }
                }
            }
        }
    }
    out
}

async fn document(app: &TestApp) -> Value {
    let reply = app.get("/openapi.json").await;
    assert_eq!(reply.status, StatusCode::OK);
    reply.body
}

#[tokio::test]
async fn every_route_is_in_the_openapi_document_with_problem_responses() {
    let app = spawn_app(Db::Sqlite).await;
    let doc = document(&app).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let mut routes = routes_in_source();
    // Served on its own listener (LATCHKEY_METRICS_LISTEN), not on the API's.
    assert!(routes.remove(&("get".to_owned(), "/metrics".to_owned())));
    assert!(routes.len() >= 28, "{routes:?}");
    for (method, path) in &routes {
        let operation = &doc["paths"][path][method];
        assert!(
            operation.is_object(),
            "{} {path} is missing from /openapi.json",
            method.to_uppercase()
        );
        let responses = operation["responses"].as_object().unwrap();
        let errors: Vec<&String> = responses
            .keys()
            .filter(|k| k.starts_with('4') || k.starts_with('5'))
            .collect();
        if !["/healthz", "/.well-known/jwks.json", "/openapi.json"].contains(&path.as_str()) {
            assert!(!errors.is_empty(), "{method} {path} documents no error");
            for code in errors {
                let content = &responses[code]["content"];
                assert!(
                    content["application/problem+json"].is_object(),
                    "{method} {path} {code} is not a problem: {content}"
                );
            }
        }
    }
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            assert!(
                routes.contains(&(method.clone(), path.clone())),
                "documented but not routed: {method} {path}"
            );
        }
    }
}

/// The top-level members of a schema.
fn properties(doc: &Value, schema: &str) -> BTreeSet<String> {
    doc["components"]["schemas"][schema]["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("no schema {schema}"))
        .keys()
        .cloned()
        .collect()
}

fn keys(value: &Value) -> BTreeSet<String> {
    value.as_object().unwrap().keys().cloned().collect()
}

#[tokio::test]
async fn documented_schemas_match_real_responses() {
    let app = spawn_app(Db::Sqlite).await;
    let doc = document(&app).await;
    let options = app
        .post(
            "/api/register/start",
            &serde_json::json!({"username": "ana"}),
        )
        .await;
    assert_eq!(keys(&options.body), properties(&doc, "WebAuthnOptions"));
    let mut authenticator = crate::authenticator::SoftAuthenticator::new();
    let credential = authenticator
        .create(&options.body, crate::helpers::ORIGIN, &Default::default())
        .unwrap();
    for member in keys(&credential) {
        assert!(
            properties(&doc, "CredentialJson").contains(&member)
                || member == "clientExtensionResults",
            "{member}"
        );
    }
    let registered = app.post("/api/register/finish", &credential).await;
    assert_eq!(keys(&registered.body), properties(&doc, "Registered"));
    app.cli(&["admin", "promote", "ana"]).await.unwrap();
    app.cli(&["admin", "grant", "ana", "premium"])
        .await
        .unwrap();
    assert_eq!(keys(&app.get("/api/me").await.body), properties(&doc, "Me"));
    assert_eq!(
        keys(&app.get("/api/me").await.body["passkeys"][0]),
        properties(&doc, "Passkey")
    );
    let device = DeviceKey::ed25519();
    let minted = app.mint(&app.client, &device).await;
    assert_eq!(keys(&minted.body), properties(&doc, "License"));
    let premium = app
        .premium(minted.body["license"].as_str().unwrap(), &device)
        .await;
    assert_eq!(keys(&premium.body), properties(&doc, "Premium"));
    assert_eq!(
        keys(&app.get("/.well-known/jwks.json").await.body["keys"][0]),
        properties(&doc, "Jwk")
    );
    let mut ana = crate::helpers::Account {
        user_id: registered.body["user_id"].as_str().unwrap().into(),
        username: "ana".into(),
        credential_id: String::new(),
        authenticator,
    };
    let signed_in = app.login(&mut ana).await;
    assert_eq!(keys(&signed_in.body), properties(&doc, "SignedIn"));
    let problem = app
        .post("/api/register/start", &serde_json::json!({"username": ""}))
        .await;
    for member in keys(&problem.body) {
        assert!(properties(&doc, "Problem").contains(&member), "{member}");
    }
    let overview = app.get("/api/admin/overview").await;
    assert_eq!(keys(&overview.body), properties(&doc, "Overview"));
    assert_eq!(keys(&overview.body["counts"]), properties(&doc, "Counts"));
    assert_eq!(keys(&overview.body["daily"][0]), properties(&doc, "Day"));
    let users = app.get("/api/admin/users").await;
    assert_eq!(keys(&users.body), properties(&doc, "UserPage"));
    assert_eq!(
        keys(&users.body["users"][0]),
        properties(&doc, "UserSummary")
    );
    let detail = app.get(&format!("/api/admin/users/{}", ana.user_id)).await;
    assert_eq!(keys(&detail.body), properties(&doc, "UserDetail"));
    assert_eq!(keys(&detail.body["user"]), properties(&doc, "User"));
    assert_eq!(
        keys(&detail.body["passkeys"][0]),
        properties(&doc, "AdminPasskey")
    );
    assert_eq!(
        keys(&detail.body["licenses"][0]),
        properties(&doc, "AdminLicense")
    );
    assert_eq!(
        keys(&detail.body["entitlements"][0]),
        properties(&doc, "AdminEntitlement")
    );
    assert_eq!(
        keys(&detail.body["sessions"][0]),
        properties(&doc, "Session")
    );
    let audit = app.get("/api/admin/audit").await;
    assert_eq!(keys(&audit.body), properties(&doc, "AuditPage"));
    assert_eq!(
        keys(&audit.body["events"][0]),
        properties(&doc, "AuditEvent")
    );
}
