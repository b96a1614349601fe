//! Signing-key rotation on a controlled clock: the new key is published before it signs, and
//! the old one stays published, and its tokens valid, until they expire.

use openframe::identity::admin;
use openframe_storage::model::ManualClock;
use serde_json::Value;

use super::support::{Seeded, client_credentials, introspect, seed};
use crate::helpers::{TestApp, spawn_at};

async fn jwks_kids(app: &TestApp, seeded: &Seeded) -> Vec<String> {
    let jwks: Value = app
        .client
        .get(format!("{}/oauth2/jwks", seeded.issuer))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut kids: Vec<String> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| {
            assert_eq!(
                (
                    key["kty"].as_str(),
                    key["alg"].as_str(),
                    key["use"].as_str()
                ),
                (Some("RSA"), Some("RS256"), Some("sig"))
            );
            key["kid"].as_str().unwrap().to_owned()
        })
        .collect();
    kids.sort();
    kids
}

async fn client_token(app: &TestApp, seeded: &Seeded) -> (String, String) {
    let body: Value = client_credentials(app, seeded).await.json().await.unwrap();
    let token = body["access_token"].as_str().unwrap().to_owned();
    let kid = openframe::identity::jwt::peek_kid(&token).unwrap();
    (token, kid)
}

async fn active(app: &TestApp, seeded: &Seeded, token: &str) -> bool {
    introspect(app, seeded, token).await["active"]
        .as_bool()
        .unwrap()
}

fn sorted(mut kids: Vec<String>) -> Vec<String> {
    kids.sort();
    kids
}

#[tokio::test]
async fn rotation_publishes_first_and_keeps_old_tokens_valid_until_they_expire() {
    let clock = ManualClock::starting_at(1_800_000_000_000);
    let app = spawn_at(&clock).await;
    let seeded = seed(&app, "acme").await;
    let (first_token, old_kid) = client_token(&app, &seeded).await;
    assert_eq!(jwks_kids(&app, &seeded).await, vec![old_kid.clone()]);

    // Rotate: the new key is in the JWKS at once, but the old one still signs (lead: 1 h).
    let rotation = admin::rotate_keys(&app.state.identity, "acme")
        .await
        .unwrap();
    assert_eq!(rotation.previous_kid.as_deref(), Some(old_kid.as_str()));
    assert_eq!(rotation.signs_from, 1_800_000_000_000 + 3_600_000);
    let new_kid = rotation.new_kid.clone();
    assert_eq!(
        jwks_kids(&app, &seeded).await,
        sorted(vec![old_kid.clone(), new_kid.clone()])
    );
    assert_eq!(client_token(&app, &seeded).await.1, old_kid);

    // A token the old key signs just before the switch...
    clock.advance_ms(3_600_000 - 60_000);
    let (late_token, late_kid) = client_token(&app, &seeded).await;
    assert_eq!(late_kid, old_kid);
    assert!(
        !active(&app, &seeded, &first_token).await,
        "the first token has expired by now"
    );

    // ...stays valid after it: the new key signs, both are published.
    clock.advance_ms(120_000);
    assert_eq!(client_token(&app, &seeded).await.1, new_kid);
    assert!(active(&app, &seeded, &late_token).await);
    assert_eq!(
        jwks_kids(&app, &seeded).await,
        sorted(vec![old_kid.clone(), new_kid.clone()])
    );

    // Once every token of the old key has expired, the old key leaves the JWKS.
    clock.advance_ms(900_000);
    assert_eq!(jwks_kids(&app, &seeded).await, vec![new_kid.clone()]);
    assert!(!active(&app, &seeded, &late_token).await);
}

#[tokio::test]
async fn signing_keys_are_stored_sealed_not_in_the_clear() {
    let clock = ManualClock::starting_at(1_800_000_000_000);
    let app = spawn_at(&clock).await;
    let seeded = seed(&app, "acme").await;
    let _ = client_token(&app, &seeded).await;
    let tenant = openframe_storage::TenantId::parse("acme").unwrap();
    let keys = app.state.identity.store.keys(&tenant).await.unwrap();
    assert_eq!(keys.len(), 1);
    let sealed = base64::Engine::decode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        &keys[0].private_sealed,
    )
    .unwrap();
    // Sealed bytes are a 12-byte nonce, the ciphertext of the PKCS#8 DER (which in the clear
    // would start with a SEQUENCE, 0x30 0x82) and a 16-byte tag.
    assert_ne!(&sealed[12..14], &[0x30, 0x82]);
    assert!(
        (12 + 1100 + 16..12 + 1300 + 16).contains(&sealed.len()),
        "{}",
        sealed.len()
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(app.data_dir.join("keys/master.key"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test]
async fn expired_codes_and_sessions_are_swept_and_live_ones_kept() {
    let clock = ManualClock::starting_at(1_800_000_000_000);
    let app = spawn_at(&clock).await;
    let seeded = seed(&app, "acme").await;
    let identity = &app.state.identity;
    let tenant = openframe_storage::TenantId::parse("acme").unwrap();
    let request = |user_id: &str| openframe::identity::tokens::CodeRequest {
        client_id: seeded.client_id.clone(),
        user_id: user_id.to_owned(),
        redirect_uri: super::support::REDIRECT_URI.to_owned(),
        scope: vec!["openid".into()],
        nonce: None,
        code_challenge: None,
        auth_time: 1_800_000_000_000,
    };
    let old_code = identity.issue_code(&tenant, request("u1")).await.unwrap();
    let mut browser = super::support::Browser::new(&app);
    let signed_in = browser
        .submit_login("/sas/acme/login", &seeded.email, super::support::PASSWORD)
        .await;
    assert_eq!(signed_in.status(), reqwest::StatusCode::OK);

    clock.advance_ms(121_000);
    let fresh_code = identity.issue_code(&tenant, request("u1")).await.unwrap();
    assert_eq!(
        identity.sweep_expired().await.unwrap(),
        1,
        "only the expired code goes"
    );
    let hash = |code: &str| openframe::identity::crypto::sha256_hex(code.as_bytes());
    assert!(
        identity
            .store
            .code(&tenant, &hash(&old_code))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        identity
            .store
            .code(&tenant, &hash(&fresh_code))
            .await
            .unwrap()
            .is_some()
    );

    // Past the 8 h session lifetime the sign-in session goes too.
    clock.advance_ms(8 * 3600 * 1000);
    assert_eq!(
        identity.sweep_expired().await.unwrap(),
        2,
        "the second code and the session"
    );
}
