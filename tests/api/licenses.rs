use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::dpop::DeviceKey;
use crate::helpers::{new_client, spawn_app_at, spawn_app_with, Account, TestApp, ORIGIN};
use crate::on_both_databases;

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&crate::helpers::unb64(payload)).unwrap()
}

fn header(token: &str) -> Value {
    serde_json::from_slice(&crate::helpers::unb64(token.split('.').next().unwrap())).unwrap()
}

async fn premium_user(app: &TestApp, name: &str) -> Account {
    let account = app.register(name).await;
    app.cli(&["admin", "grant", name, "premium"]).await.unwrap();
    account
}

async fn verifier(app: &TestApp) -> latchkey_core::Verifier {
    let jwks = app.get("/.well-known/jwks.json").await;
    latchkey_core::Verifier {
        jwks: latchkey_core::JwkSet::from_json(jwks.text.as_bytes()).unwrap(),
        issuer: ORIGIN.into(),
        audience: ORIGIN.into(),
    }
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

on_both_databases! {
    async fn a_signed_in_user_gets_a_license_bound_to_the_device_key(app) {
        let account = premium_user(&app, "alice").await;
        for device in [DeviceKey::ed25519(), DeviceKey::es256()] {
            let reply = app.mint(&app.client, &device).await;
            assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
            assert_eq!(reply.headers["cache-control"], "no-store");
            let token = reply.body["license"].as_str().unwrap();
            let h = header(token);
            assert_eq!(h["alg"], "EdDSA");
            assert_eq!(h["typ"], "license+jwt");
            let c = claims(token);
            assert_eq!(c["cnf"]["jkt"], device.thumbprint().as_str());
            assert_eq!(c["ent"], json!(["premium"]));
            assert_eq!(c["sub"], account.user_id.as_str());
            assert_eq!(c["iss"], ORIGIN);
            assert_eq!(c["aud"], ORIGIN);
            assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 30 * 24 * 3600);
            assert!(c["status"]["status_list"]["uri"].as_str().unwrap().starts_with(&format!("{ORIGIN}/api/status-lists/")));
            assert_eq!(c["cks"][0]["kid"], account.credential_id.as_str());
            assert_eq!(c["cks"][0]["kty"], "EC");
            let verified = verifier(&app).await.verify(token, now()).unwrap();
            assert_eq!(verified.jkt(), device.thumbprint());
            let row = app.scalar(&format!("SELECT COUNT(*) FROM licenses WHERE jti = '{}' AND device_jkt = '{}' AND credential_id = '{}'", verified.jti, device.thumbprint(), account.credential_id)).await;
            assert_eq!(row, 1, "the license is recorded before it is returned");
        }
        let (a, b) = (app.mint(&app.client, &DeviceKey::ed25519()).await, app.mint(&app.client, &DeviceKey::ed25519()).await);
        assert_ne!(claims(a.body["license"].as_str().unwrap())["status"], claims(b.body["license"].as_str().unwrap())["status"], "each license has its own status slot");
    }

    async fn a_license_carries_only_the_entitlements_and_passkeys_in_force(app) {
        let account = premium_user(&app, "cara").await;
        // A second passkey (added right after registering, inside the step-up window), then revoked.
        let added = app.add_passkey(&app.client, &mut crate::authenticator::SoftAuthenticator::new()).await;
        assert_eq!(added.status, StatusCode::CREATED, "{}", added.text);
        let third = app.add_passkey(&app.client, &mut crate::authenticator::SoftAuthenticator::new()).await;
        assert_eq!(third.status, StatusCode::CREATED, "{}", third.text);
        let revoked = added.body["credential_id"].as_str().unwrap().to_owned();
        let kept = third.body["credential_id"].as_str().unwrap().to_owned();
        app.cli(&["admin", "revoke-passkey", &revoked]).await.unwrap();
        for name in ["beta", "gone"] {
            app.cli(&["admin", "grant", "cara", name]).await.unwrap();
        }
        crate::status::execute(&app, "UPDATE entitlements SET expires_at = 1 WHERE name = 'gone'").await;
        let reply = app.mint(&app.client, &DeviceKey::ed25519()).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        let c = claims(reply.body["license"].as_str().unwrap());
        assert_eq!(c["ent"], json!(["beta", "premium"]), "in force only, by name");
        let mut kids: Vec<&str> = c["cks"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
        kids.sort_unstable();
        let mut active = [account.credential_id.as_str(), kept.as_str()];
        active.sort_unstable();
        assert_eq!(kids, active, "the active passkeys, not the revoked one");
        assert_eq!(c["name"], "cara");
        // A disabled user mints nothing (disabling also ends the session: made sure here by SQL).
        crate::status::execute(&app, &format!("UPDATE users SET disabled_at = 1 WHERE id = '{}'", account.user_id)).await;
        let refused = app.mint(&app.client, &DeviceKey::ed25519()).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.text);
    }

    async fn the_same_device_key_gets_a_fresh_license_each_time(app) {
        premium_user(&app, "bob").await;
        let device = DeviceKey::ed25519();
        let first = claims(app.mint(&app.client, &device).await.body["license"].as_str().unwrap());
        let second = claims(app.mint(&app.client, &device).await.body["license"].as_str().unwrap());
        assert_ne!(first["jti"], second["jti"]);
        assert_eq!(first["cnf"], second["cnf"]);
    }

    async fn a_license_never_outlives_the_entitlements_it_carries(app) {
        app.register("carl").await;
        app.cli(&["admin", "grant", "carl", "premium", "--until", "2099-01-01"]).await.unwrap();
        let until = time::OffsetDateTime::now_utc() + time::Duration::days(3);
        app.cli(&["admin", "grant", "carl", "extras", "--until", &until.format(&time::format_description::well_known::Rfc3339).unwrap()]).await.unwrap();
        let reply = app.mint(&app.client, &DeviceKey::ed25519()).await;
        let c = claims(reply.body["license"].as_str().unwrap());
        assert_eq!(c["exp"].as_i64().unwrap(), until.unix_timestamp());
        assert_eq!(c["ent"], json!(["extras", "premium"]));
    }

    async fn minting_requires_a_signed_in_session(app) {
        let reply = app.mint(&new_client(), &DeviceKey::ed25519()).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert_eq!(reply.problem(), "not-signed-in");
        assert_eq!(app.count("licenses").await, 0);
    }

    async fn bad_dpop_proofs_are_refused_and_nothing_is_minted(app) {
        premium_user(&app, "dora").await;
        let device = DeviceKey::ed25519();
        let other = DeviceKey::es256();
        let htu = format!("{ORIGIN}/api/licenses");
        let mut cases: Vec<(&str, String)> = Vec::new();
        cases.push(("wrong htm", device.proof("GET", &htu, None, None)));
        cases.push(("wrong htu", device.proof("POST", &format!("{ORIGIN}/api/premium/example"), None, None)));
        cases.push(("another origin", device.proof("POST", "https://localhost:8080/api/licenses", None, None)));
        let mut stale = device.claims("POST", &htu, None, None);
        stale["iat"] = json!(now() - 600);
        cases.push(("stale iat", device.jws(&device.header(), &stale)));
        let mut future = device.claims("POST", &htu, None, None);
        future["iat"] = json!(now() + 600);
        cases.push(("future iat", device.jws(&device.header(), &future)));
        let mut wrong_key = device.header();
        wrong_key["jwk"] = other.jwk();
        cases.push(("signed by another key", device.jws(&wrong_key, &device.claims("POST", &htu, None, None))));
        let mut private = device.header();
        private["jwk"]["d"] = json!("AAAA");
        cases.push(("private key in jwk", device.jws(&private, &device.claims("POST", &htu, None, None))));
        let mut typ = device.header();
        typ["typ"] = json!("JWT");
        cases.push(("wrong typ", device.jws(&typ, &device.claims("POST", &htu, None, None))));
        let mut alg = device.header();
        alg["alg"] = json!("ES256");
        cases.push(("alg not matching the key", device.jws(&alg, &device.claims("POST", &htu, None, None))));
        let mut none = device.header();
        none["alg"] = json!("none");
        let unsigned = device.jws(&none, &device.claims("POST", &htu, None, None));
        cases.push(("alg none", format!("{}.", unsigned.rsplit_once('.').unwrap().0)));
        let mut no_jti = device.claims("POST", &htu, None, None);
        no_jti.as_object_mut().unwrap().remove("jti");
        cases.push(("no jti", device.jws(&device.header(), &no_jti)));
        cases.push(("garbage", "not.a.jwt".into()));
        for (case, proof) in cases {
            let reply = app.send(&app.client, Method::POST, "/api/licenses", None, &[("dpop", &proof)]).await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{case}: {}", reply.text);
            assert_eq!(reply.problem(), "invalid-dpop-proof", "{case}");
        }
        let missing = app.send(&app.client, Method::POST, "/api/licenses", None, &[]).await;
        assert_eq!(missing.status, StatusCode::BAD_REQUEST);
        let p1 = device.proof("POST", &htu, None, None);
        let p2 = device.proof("POST", &htu, None, None);
        let request = app.client.post(app.url("/api/licenses")).header("dpop", p1).header("dpop", p2).send().await.unwrap();
        assert_eq!(request.status(), StatusCode::BAD_REQUEST, "two DPoP headers");
        assert_eq!(app.count("licenses").await, 0);
        assert_eq!(app.count("dpop_proofs").await, 0);
    }

    async fn a_dpop_proof_is_single_use(app) {
        premium_user(&app, "earl").await;
        let device = DeviceKey::ed25519();
        let proof = device.proof("POST", &format!("{ORIGIN}/api/licenses?x=1#f"), None, None);
        let first = app.send(&app.client, Method::POST, "/api/licenses", None, &[("dpop", &proof)]).await;
        assert_eq!(first.status, StatusCode::CREATED, "query and fragment of htu are ignored: {}", first.text);
        let again = app.send(&app.client, Method::POST, "/api/licenses", None, &[("dpop", &proof)]).await;
        assert_eq!(again.status, StatusCode::BAD_REQUEST);
        assert_eq!(again.problem(), "invalid-dpop-proof");
        assert_eq!(app.count("licenses").await, 1);
    }

    async fn premium_opens_only_with_the_bound_key_and_a_proof(app) {
        premium_user(&app, "fay").await;
        let device = DeviceKey::ed25519();
        let license = app.mint(&app.client, &device).await.body["license"].as_str().unwrap().to_owned();
        let ok = app.premium(&license, &device).await;
        assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
        assert_eq!(ok.headers["cache-control"], "no-store");

        let url = format!("{ORIGIN}/api/premium/example");
        let bearer = app.send(&new_client(), Method::GET, "/api/premium/example", None, &[("authorization", &format!("Bearer {license}"))]).await;
        let no_proof = app.send(&new_client(), Method::GET, "/api/premium/example", None, &[("authorization", &format!("DPoP {license}"))]).await;
        let thief = DeviceKey::ed25519();
        let wrong_key = app.send(&new_client(), Method::GET, "/api/premium/example", None,
            &[("authorization", &format!("DPoP {license}")), ("dpop", &thief.proof("GET", &url, Some(&license), None))]).await;
        let no_ath = app.send(&new_client(), Method::GET, "/api/premium/example", None,
            &[("authorization", &format!("DPoP {license}")), ("dpop", &device.proof("GET", &url, None, None))]).await;
        let proof = device.proof("GET", &url, Some(&license), None);
        let once = app.send(&new_client(), Method::GET, "/api/premium/example", None, &[("authorization", &format!("DPoP {license}")), ("dpop", &proof)]).await;
        let replay = app.send(&new_client(), Method::GET, "/api/premium/example", None, &[("authorization", &format!("DPoP {license}")), ("dpop", &proof)]).await;
        assert_eq!(once.status, StatusCode::OK);
        for (case, reply) in [("bearer", bearer), ("no proof", no_proof), ("another key", wrong_key), ("no ath", no_ath), ("replayed proof", replay)] {
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{case}: {}", reply.text);
            let challenge = reply.headers["www-authenticate"].to_str().unwrap();
            assert!(challenge.starts_with("DPoP "), "{case}: {challenge}");
            reply.problem();
        }
    }

    async fn premium_needs_the_premium_entitlement(app) {
        app.register("gil").await;
        let device = DeviceKey::ed25519();
        let license = app.mint(&app.client, &device).await.body["license"].as_str().unwrap().to_owned();
        let reply = app.premium(&license, &device).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN);
        assert_eq!(reply.problem(), "missing-entitlement");
    }

    async fn a_revoked_license_is_refused_online_at_once(app) {
        premium_user(&app, "hal").await;
        let device = DeviceKey::es256();
        let license = app.mint(&app.client, &device).await.body["license"].as_str().unwrap().to_owned();
        let jti = claims(&license)["jti"].as_str().unwrap().to_owned();
        app.cli(&["admin", "revoke-license", &jti]).await.unwrap();
        let reply = app.premium(&license, &device).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        // The session it was minted under has ended too: a fresh sign-in is needed.
        assert_eq!(app.mint(&app.client, &device).await.status, StatusCode::UNAUTHORIZED);
    }

    async fn removing_an_entitlement_revokes_licenses_carrying_it_and_refresh_drops_it(app) {
        premium_user(&app, "ida").await;
        let device = DeviceKey::ed25519();
        let license = app.mint(&app.client, &device).await.body["license"].as_str().unwrap().to_owned();
        app.cli(&["admin", "revoke-entitlement", "ida", "premium"]).await.unwrap();
        assert_eq!(app.premium(&license, &device).await.status, StatusCode::UNAUTHORIZED);
        let refreshed = app.mint(&app.client, &device).await;
        assert_eq!(refreshed.status, StatusCode::CREATED);
        assert_eq!(claims(refreshed.body["license"].as_str().unwrap())["ent"], json!([]));
    }

    async fn an_independent_jose_library_verifies_our_licenses(app) {
        premium_user(&app, "jan").await;
        let license = app.mint(&app.client, &DeviceKey::ed25519()).await.body["license"].as_str().unwrap().to_owned();
        let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&app.get("/.well-known/jwks.json").await.text).unwrap();
        let kid = jsonwebtoken::decode_header(&license).unwrap().kid.unwrap();
        let jwk = jwks.find(&kid).unwrap();
        let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
        validation.set_issuer(&[ORIGIN]);
        validation.set_audience(&[ORIGIN]);
        let data = jsonwebtoken::decode::<Value>(&license, &key, &validation).unwrap();
        assert_eq!(data.claims["ent"], json!(["premium"]));
        let mut tampered = license.clone();
        tampered.replace_range(tampered.len() - 5.., "AAAAA");
        assert!(jsonwebtoken::decode::<Value>(&tampered, &key, &validation).is_err());
    }

    async fn the_jwks_is_cacheable_and_names_keys_by_thumbprint(app) {
        let reply = app.get("/.well-known/jwks.json").await;
        assert_eq!(reply.status, StatusCode::OK);
        assert!(reply.headers["cache-control"].to_str().unwrap().contains("max-age="));
        let key = &reply.body["keys"][0];
        assert_eq!(key["kty"], "OKP");
        assert_eq!(key["crv"], "Ed25519");
        assert_eq!(key["alg"], "EdDSA");
        assert_eq!(key["use"], "sig");
        assert!(key.get("d").is_none());
        let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, key["x"].as_str().unwrap());
        let thumbprint = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, <sha2::Sha256 as sha2::Digest>::digest(canonical.as_bytes()));
        assert_eq!(key["kid"], thumbprint.as_str());
    }

    async fn rotation_keeps_old_licenses_verifying_and_retirement_stops_them(app) {
        premium_user(&app, "kai").await;
        let device = DeviceKey::ed25519();
        let old = app.mint(&app.client, &device).await.body["license"].as_str().unwrap().to_owned();
        let old_kid = header(&old)["kid"].as_str().unwrap().to_owned();
        let list_path = claims(&old)["status"]["status_list"]["uri"].as_str().unwrap().strip_prefix(ORIGIN).unwrap().to_owned();
        assert_eq!(header(&app.get(&list_path).await.text)["kid"], old_kid.as_str());
        app.cli(&["keys", "rotate", "--now"]).await.unwrap();
        app.state.refresh_shared().await.unwrap();
        let new = app.mint(&app.client, &device).await.body["license"].as_str().unwrap().to_owned();
        let new_kid = header(&new)["kid"].as_str().unwrap().to_owned();
        assert_ne!(old_kid, new_kid);
        let kids: Vec<String> = app.get("/.well-known/jwks.json").await.body["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect();
        assert!(kids.contains(&old_kid) && kids.contains(&new_kid), "{kids:?}");
        assert_eq!(header(&app.get(&list_path).await.text)["kid"], new_kid.as_str(), "status lists are re-signed with the new key");
        assert_eq!(app.premium(&old, &device).await.status, StatusCode::OK);
        assert!(app.cli(&["keys", "retire", &new_kid]).await.is_err(), "the active key cannot be retired");
        app.cli(&["keys", "retire", &old_kid]).await.unwrap();
        app.state.refresh_shared().await.unwrap();
        let kids: Vec<String> = app.get("/.well-known/jwks.json").await.body["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect();
        assert_eq!(kids, vec![new_kid]);
        assert_eq!(app.premium(&old, &device).await.status, StatusCode::UNAUTHORIZED);
        assert_eq!(app.premium(&new, &device).await.status, StatusCode::OK);
    }

    async fn a_rotated_key_is_announced_and_pinned_before_it_signs(app) {
        premium_user(&app, "ann").await;
        let device = DeviceKey::ed25519();
        let kid_of = |reply: &crate::helpers::Reply| header(reply.body["license"].as_str().unwrap())["kid"].as_str().unwrap().to_owned();
        let kids = |v: &Value| -> Vec<String> { v.as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect() };
        let old_kid = kid_of(&app.mint(&app.client, &device).await);
        let before = app.get("/latchkey-keys.json").await;
        assert_eq!(before.status, StatusCode::OK);
        assert_eq!(before.headers["cache-control"], "no-cache");
        assert_eq!(kids(&before.body["keys"]), vec![old_kid.clone()]);
        assert_eq!(kids(&before.body["next"]), Vec::<String>::new());

        // Default rotation: published and pinned now, signing only later.
        app.cli(&["keys", "rotate"]).await.unwrap();
        app.state.refresh_shared().await.unwrap();
        let pins = app.get("/latchkey-keys.json").await;
        assert_eq!(kids(&pins.body["keys"]), vec![old_kid.clone()]);
        let next = kids(&pins.body["next"]);
        assert_eq!(next.len(), 1);
        let new_kid = next[0].clone();
        assert_ne!(new_kid, old_kid);
        assert_ne!(pins.body["version"], before.body["version"], "the manifest version follows its keys");
        let published = kids(&app.get("/.well-known/jwks.json").await.body["keys"]);
        assert_eq!(published, vec![old_kid.clone(), new_kid.clone()], "the signing key first, the announced one published too");
        assert_eq!(kid_of(&app.mint(&app.client, &device).await), old_kid, "an announced key does not sign yet");

        // Its time comes (moved forward here rather than waited for).
        let sql = format!("UPDATE signing_keys SET signs_from = 1 WHERE kid = '{new_kid}' RETURNING CAST(1 AS BIGINT)");
        assert_eq!(app.scalar(&sql).await, 1);
        app.state.refresh_shared().await.unwrap();
        assert_eq!(kid_of(&app.mint(&app.client, &device).await), new_kid);
        let pins = app.get("/latchkey-keys.json").await;
        assert_eq!(kids(&pins.body["keys"]), vec![new_kid.clone(), old_kid.clone()]);
        assert_eq!(kids(&pins.body["next"]), Vec::<String>::new());
    }

    async fn the_cli_verifies_a_license_against_a_jwks_file(app) {
        premium_user(&app, "lou").await;
        let license = app.mint(&app.client, &DeviceKey::ed25519()).await.body["license"].as_str().unwrap().to_owned();
        let file = app.data_dir.path().join("jwks.json");
        std::fs::write(&file, app.get("/.well-known/jwks.json").await.text).unwrap();
        let path = file.display().to_string();
        app.cli(&["license", "verify", &license, "--jwks", &path]).await.unwrap();
        let url = app.url("/.well-known/jwks.json");
        app.cli(&["license", "verify", &license, "--jwks", &url]).await.unwrap();
        assert!(app.cli(&["license", "verify", &license, "--jwks", &path, "--audience", "https://other.example"]).await.is_err());
        assert!(app.cli(&["license", "verify", &format!("{license}x"), "--jwks", &path]).await.is_err());
    }
}

mod server_nonce {
    use super::*;

    async fn run(app: TestApp) {
        premium_user(&app, "nina").await;
        let device = DeviceKey::ed25519();
        let first = app.mint(&app.client, &device).await;
        assert_eq!(first.status, StatusCode::BAD_REQUEST);
        assert_eq!(first.problem(), "use-dpop-nonce");
        let nonce = first.headers["dpop-nonce"].to_str().unwrap().to_owned();
        let proof = device.proof(
            "POST",
            &format!("{ORIGIN}/api/licenses"),
            None,
            Some(&nonce),
        );
        let second = app
            .send(
                &app.client,
                Method::POST,
                "/api/licenses",
                None,
                &[("dpop", &proof)],
            )
            .await;
        assert_eq!(second.status, StatusCode::CREATED, "{}", second.text);
        let forged = device.proof(
            "POST",
            &format!("{ORIGIN}/api/licenses"),
            None,
            Some("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        );
        let third = app
            .send(
                &app.client,
                Method::POST,
                "/api/licenses",
                None,
                &[("dpop", &forged)],
            )
            .await;
        assert_eq!(third.problem(), "use-dpop-nonce");
    }

    #[tokio::test]
    async fn sqlite() {
        run(spawn_app_with(crate::helpers::Db::Sqlite, &["--dpop-nonce"]).await).await
    }

    #[tokio::test]
    async fn postgres() {
        run(spawn_app_with(crate::helpers::Db::Postgres, &["--dpop-nonce"]).await).await
    }
}

mod wrong_kek {
    use super::*;

    async fn run(db: crate::helpers::Db) {
        let app = spawn_app_with(db, &[]).await;
        let url = app.database_url.clone();
        let dir = app.data_dir.clone();
        drop(app);
        std::fs::remove_file(dir.path().join("kek")).unwrap();
        let other =
            base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, [9u8; 32]);
        let cli = <latchkey::config::Cli as clap::Parser>::try_parse_from([
            "latchkey",
            "--origin",
            ORIGIN,
            "--data-dir",
            &dir.path().display().to_string(),
            "--database-url",
            &url,
            "--kek",
            &other,
            "serve",
        ])
        .unwrap();
        let Some(latchkey::config::Command::Serve(args)) = cli.command else {
            panic!()
        };
        let err = latchkey::state::AppState::build(&cli.common, &args)
            .await
            .err()
            .expect("refuses to start");
        assert!(
            format!("{err:#}").contains("cannot be decrypted"),
            "{err:#}"
        );
        // No new key was made behind the operator's back.
        let keys: i64 = match db {
            crate::helpers::Db::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
                sqlx::query_scalar("SELECT COUNT(*) FROM signing_keys")
                    .fetch_one(&pool)
                    .await
                    .unwrap()
            }
            crate::helpers::Db::Postgres => {
                let pool = sqlx::PgPool::connect(&url).await.unwrap();
                sqlx::query_scalar("SELECT COUNT(*) FROM signing_keys")
                    .fetch_one(&pool)
                    .await
                    .unwrap()
            }
        };
        assert_eq!(keys, 1);
        // With the right KEK back in place it starts again.
        let _ = spawn_app_at;
    }

    #[tokio::test]
    async fn sqlite_refuses_to_start() {
        run(crate::helpers::Db::Sqlite).await
    }

    #[tokio::test]
    async fn postgres_refuses_to_start() {
        run(crate::helpers::Db::Postgres).await
    }
}
