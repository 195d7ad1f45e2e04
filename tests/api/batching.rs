//! Group commit: writes that fail inside a batch fail alone; their neighbours
//! in the same transaction commit.

use reqwest::StatusCode;

use crate::dpop::DeviceKey;
use crate::helpers::{TestApp, ORIGIN};
use crate::on_both_databases;
use latchkey::store::audit::{AuditEvent, Event};
use latchkey::store::batch::{Outcome, Write};
use latchkey::store::licenses::NewLicense;

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn mint<'a>(
    proof_id: &'a str,
    jti: &'a str,
    idx: i64,
    (user_id, login_id, credential_id, kid): (&'a str, &'a str, &'a str, &'a str),
) -> Write<'a> {
    let at = now();
    Write::Mint {
        proof_id,
        proof_expires_at: at + 600,
        slot: (1, idx),
        license: NewLicense {
            jti,
            user_id,
            kid,
            device_jkt: "jkt",
            login_id,
            credential_id,
            entitlements: "[\"premium\"]",
            issued_at: at,
            expires_at: at + 3600,
            device_name: "test device",
            device_limit: None,
        },
        audit: AuditEvent {
            actor_user_id: Some(user_id),
            target: Some(jti),
            ..AuditEvent::new(Event::LicenseMinted)
        },
    }
}

/// The signed-in user of a test app after one real mint (which opens status
/// list 1 and names the signing key): what a queued mint needs to name.
struct Minter {
    user_id: String,
    login_id: String,
    credential_id: String,
    kid: String,
}

impl Minter {
    async fn signed_in(app: &TestApp, username: &str) -> Self {
        let reply = app.mint(&app.client, &DeviceKey::ed25519()).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        let store = &app.state.store;
        let row = store
            .license(&first_jti(&reply.body["license"]))
            .await
            .unwrap()
            .unwrap();
        let (user_id, kid) = (row.user_id, row.kid);
        let session = store.open_sessions(&user_id, now()).await.unwrap();
        assert_eq!(session.len(), 1, "{username} has one session");
        Self {
            login_id: session[0].login_id.clone().expect("a signed-in session"),
            credential_id: session[0]
                .credential_id
                .clone()
                .expect("signed in with a passkey"),
            user_id,
            kid,
        }
    }

    /// This sign-in, as a mint names it.
    fn now(&self) -> (&str, &str, &str, &str) {
        (
            &self.user_id,
            &self.login_id,
            &self.credential_id,
            &self.kid,
        )
    }

    /// A sign-in of the same user that has ended.
    fn ended(&self) -> (&str, &str, &str, &str) {
        (
            &self.user_id,
            "a-sign-in-that-ended",
            &self.credential_id,
            &self.kid,
        )
    }
}

async fn count_where(app: &TestApp, table: &str, cond: &str) -> i64 {
    app.scalar(&format!("SELECT COUNT(*) FROM {table} WHERE {cond}"))
        .await
}

on_both_databases! {
    async fn requests_that_fail_in_a_batch_fail_alone(app) {
        app.register("batcher").await;
        app.cli(&["admin", "grant", "batcher", "premium"]).await.unwrap();
        let minter = Minter::signed_in(&app, "batcher").await;
        let (who, revoked) = (minter.now(), minter.ended());
        let store = &app.state.store;
        assert!(store.use_dpop_proof("spent-earlier", now() + 600).await.unwrap());

        let outcomes = store
            .commit_together(vec![
                Write::Proof("fresh-1", now() + 600),
                Write::Proof("fresh-1", now() + 600),
                Write::Proof("spent-earlier", now() + 600),
                mint("mint-proof-ok", "jti-ok", 1_000_001, who),
                mint("mint-proof-revoked", "jti-revoked", 1_000_002, revoked),
                mint("fresh-1", "jti-replayed", 1_000_003, who),
                Write::Proof("fresh-2", now() + 600),
                Write::Audit(AuditEvent { target: Some("batch-audit"), ..AuditEvent::new(Event::SigninSuccess) }, now()),
            ])
            .await
            .expect("the batch commits");
        let outcomes: Vec<Outcome> = outcomes.into_iter().map(|o| o.expect("no item errs")).collect();
        assert_eq!(
            outcomes,
            [
                Outcome::Done,
                Outcome::Replay,
                Outcome::Replay,
                Outcome::Done,
                Outcome::Revoked,
                Outcome::Replay,
                Outcome::Done,
                Outcome::Done,
            ]
        );
        // What succeeded is committed; what failed left nothing behind.
        assert_eq!(count_where(&app, "dpop_proofs", "id IN ('fresh-1', 'fresh-2', 'mint-proof-ok', 'spent-earlier')").await, 4);
        assert_eq!(count_where(&app, "dpop_proofs", "id = 'mint-proof-revoked'").await, 0);
        assert_eq!(count_where(&app, "licenses", "jti = 'jti-ok'").await, 1);
        assert_eq!(count_where(&app, "licenses", "jti IN ('jti-revoked', 'jti-replayed')").await, 0);
        assert_eq!(count_where(&app, "audit_log", "target = 'jti-ok'").await, 1);
        assert_eq!(count_where(&app, "audit_log", "target IN ('jti-revoked', 'jti-replayed')").await, 0);
        assert_eq!(count_where(&app, "audit_log", "target = 'batch-audit'").await, 1);
    }

    async fn mints_sharing_a_proof_or_a_device_in_one_batch_mint_once_and_sync_once(app) {
        app.register("twins").await;
        let minter = Minter::signed_in(&app, "twins").await;
        let (who, ended) = (minter.now(), minter.ended());
        let store = &app.state.store;
        assert!(store.use_dpop_proof("spent-before", now() + 600).await.unwrap());

        let outcomes = store
            .commit_together(vec![
                mint("shared", "jti-first", 2_000_001, who),
                mint("shared", "jti-second", 2_000_002, who),
                // Spent and from an ended sign-in: a replay is what it is told.
                mint("spent-before", "jti-spent", 2_000_003, ended),
                // Another mint from the same device key ("jkt") in the same batch.
                mint("other", "jti-other", 2_000_004, who),
            ])
            .await
            .expect("the batch commits");
        let outcomes: Vec<Outcome> = outcomes.into_iter().map(|o| o.expect("no item errs")).collect();
        assert_eq!(outcomes, [Outcome::Done, Outcome::Replay, Outcome::Replay, Outcome::Done]);
        assert_eq!(count_where(&app, "licenses", "jti IN ('jti-first', 'jti-other')").await, 2);
        assert_eq!(count_where(&app, "licenses", "jti IN ('jti-second', 'jti-spent')").await, 0);
        assert_eq!(count_where(&app, "audit_log", "target IN ('jti-first', 'jti-other')").await, 2);
        assert_eq!(count_where(&app, "audit_log", "target IN ('jti-second', 'jti-spent')").await, 0);
        assert_eq!(
            count_where(&app, "devices", &format!("user_id = '{}' AND jkt = 'jkt'", minter.user_id)).await,
            1,
            "one device row for the two mints of one device"
        );
    }

    async fn concurrent_premium_calls_with_one_replayed_proof_fail_only_the_replays(app) {
        app.register("caller").await;
        app.cli(&["admin", "grant", "caller", "premium"]).await.unwrap();
        let device = DeviceKey::ed25519();
        let reply = app.mint(&app.client, &device).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        let license = reply.body["license"].as_str().unwrap().to_owned();
        // Ten fresh proofs and the same proof sent five times, all at once.
        let fresh: Vec<String> = (0..10).map(|_| premium_proof(&app, &device, &license)).collect();
        let replayed = premium_proof(&app, &device, &license);
        let send = |proof: String| {
            let app = &app;
            let license = license.clone();
            async move {
                app.client
                    .get(app.url("/api/premium/example"))
                    .header("authorization", format!("DPoP {license}"))
                    .header("dpop", proof)
                    .send()
                    .await
                    .unwrap()
                    .status()
            }
        };
        let (fresh_answers, replay_answers) = tokio::join!(
            futures::future::join_all(fresh.into_iter().map(send)),
            futures::future::join_all((0..5).map(|_| send(replayed.clone()))),
        );
        assert!(fresh_answers.iter().all(|s| *s == StatusCode::OK), "{fresh_answers:?}");
        assert_eq!(replay_answers.iter().filter(|s| **s == StatusCode::OK).count(), 1, "{replay_answers:?}");
        assert_eq!(replay_answers.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count(), 4, "{replay_answers:?}");
    }
}

fn first_jti(license: &serde_json::Value) -> String {
    let payload = license.as_str().unwrap().split('.').nth(1).unwrap();
    let claims: serde_json::Value =
        serde_json::from_slice(&crate::helpers::unb64(payload)).unwrap();
    claims["jti"].as_str().unwrap().to_owned()
}

fn premium_proof(app: &TestApp, device: &DeviceKey, license: &str) -> String {
    device.proof(
        "GET",
        &format!("{ORIGIN}{}/api/premium/example", app.base),
        Some(license),
        None,
    )
}

on_both_databases! {
    async fn writes_outside_the_group_commit_are_not_starved_by_a_stream_of_batches(app) {
        app.register("busy").await;
        let minter = Minter::signed_in(&app, "busy").await;
        let store = app.state.store.clone();
        // Eight tasks keep the group-commit writer busy, batch after batch.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flood: Vec<_> = (0..8)
            .map(|t| {
                let (store, stop) = (store.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut n = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        assert!(store.use_dpop_proof(&format!("flood-{t}-{n}"), now() + 600).await.unwrap());
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        // Meanwhile, writes through the pool (a status-list block, a passkey
        // rename) each get their turn and succeed. The bound only turns a
        // writer that never gives the turn back into a failure, not a hang.
        let turn = std::time::Duration::from_secs(10);
        for i in 0..20 {
            tokio::time::timeout(turn, store.reserve_status_block(16, now()))
                .await
                .expect("a pool write gets its turn")
                .expect("a pool write succeeds");
            let renamed = tokio::time::timeout(
                turn,
                store.rename_credential(&minter.user_id, &minter.credential_id, &format!("key {i}")),
            )
            .await
            .expect("a pool write gets its turn")
            .expect("a pool write succeeds");
            assert!(renamed);
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut flooded = 0;
        for task in flood {
            flooded += task.await.unwrap();
        }
        assert!(flooded > 0);
        assert_eq!(count_where(&app, "dpop_proofs", "id LIKE 'flood-%'").await, i64::try_from(flooded).unwrap());
    }
}

/// Mints through `Store::mint_license`, alone (on PostgreSQL one statement on
/// the pool, on SQLite a batch of its own): `Ok` or the refusal.
async fn mint_alone(
    app: &TestApp,
    proof_id: &str,
    jti: &str,
    idx: i64,
    who: (&str, &str, &str, &str),
) -> Result<(), latchkey::store::licenses::MintError> {
    let Write::Mint {
        proof_id,
        proof_expires_at,
        slot,
        license,
        audit,
    } = mint(proof_id, jti, idx, who)
    else {
        unreachable!("mint() makes a mint");
    };
    app.state
        .store
        .mint_license(proof_id, proof_expires_at, slot, license, &audit)
        .await
}

on_both_databases! {
    async fn a_mint_alone_commits_or_is_refused_as_a_replay_or_a_revocation_and_a_refusal_writes_nothing(app) {
        use latchkey::store::licenses::MintError;
        app.register("alone").await;
        let minter = Minter::signed_in(&app, "alone").await;
        let (who, ended) = (minter.now(), minter.ended());
        let store = &app.state.store;
        assert!(store.use_dpop_proof("alone-spent", now() + 600).await.unwrap());

        mint_alone(&app, "alone-ok", "jti-alone-ok", 3_000_001, who).await.expect("a mint that stands commits");
        let replayed = mint_alone(&app, "alone-ok", "jti-alone-again", 3_000_002, who).await;
        assert!(matches!(replayed, Err(MintError::Replay)), "{replayed:?}");
        let revoked = mint_alone(&app, "alone-ended", "jti-alone-ended", 3_000_003, ended).await;
        assert!(matches!(revoked, Err(MintError::Revoked)), "{revoked:?}");
        // Spent before and from an ended sign-in: told it is a replay, as in a batch.
        let both = mint_alone(&app, "alone-spent", "jti-alone-both", 3_000_004, ended).await;
        assert!(matches!(both, Err(MintError::Replay)), "{both:?}");

        assert_eq!(count_where(&app, "licenses", "jti = 'jti-alone-ok'").await, 1);
        assert_eq!(count_where(&app, "licenses", "jti IN ('jti-alone-again', 'jti-alone-ended', 'jti-alone-both')").await, 0);
        assert_eq!(count_where(&app, "audit_log", "target = 'jti-alone-ok'").await, 1);
        assert_eq!(count_where(&app, "audit_log", "target IN ('jti-alone-again', 'jti-alone-ended', 'jti-alone-both')").await, 0);
        // A refused mint does not spend its proof: the sign-in that ended spent nothing.
        assert_eq!(count_where(&app, "dpop_proofs", "id = 'alone-ended'").await, 0);
        assert_eq!(
            count_where(&app, "devices", &format!("user_id = '{}' AND jkt = 'jkt'", minter.user_id)).await,
            1,
            "the device of the one license minted"
        );
    }
}
