//! Registration secrets, registration, the agent token endpoint, refresh rotation with reuse
//! detection, reinstall and uninstall: OpenFrame's wire format, and every wrong credential
//! refused without touching anything else.

use openframe::identity::crypto::b64url_decode;
use openframe_storage::model::{Collection, DocumentId, TenantId};
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::support::{ORG, enroll, register, registration, registration_secret, token};
use crate::gateway::support::{error_of, two_tenants};
use crate::helpers::{TestApp, spawn_app};

fn claims(token: &str) -> Value {
    serde_json::from_slice(&b64url_decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap()
}

/// `GET /internal/authz/probe` with the token: (status, body).
async fn probe(app: &TestApp, token: &str) -> (StatusCode, Value) {
    let response = app
        .client
        .get(app.https_url("/internal/authz/probe"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn an_agent_registers_with_the_initial_key_and_authenticates_as_openframes_agent_does() {
    let app = spawn_app().await;
    let tenants = two_tenants(&app).await;
    let key = registration_secret(&app, "acme", &tenants.admin_a).await;
    // The secret is stable until rotated, and each tenant has its own.
    assert_eq!(
        registration_secret(&app, "acme", &tenants.admin_a).await,
        key
    );
    let key_b = registration_secret(&app, "globex", &tenants.admin_b).await;
    assert_ne!(key, key_b);

    let (status, enrolled) = register(&app, &key, &registration("ws-chicago-01")).await;
    assert_eq!(status, StatusCode::OK, "{enrolled}");
    let machine_id = enrolled["machineId"].as_str().unwrap();
    assert_eq!(machine_id.len(), 36, "a UUID: {machine_id}");
    assert_eq!(enrolled["clientId"], format!("agent_{machine_id}"));
    let secret = enrolled["clientSecret"].as_str().unwrap();
    assert_eq!(b64url_decode(secret).unwrap().len(), 32, "32 random bytes");

    // Stored: a PENDING machine with what the agent reported, in the key's tenant only.
    let stored = super::support::machine(&app, "acme", machine_id)
        .await
        .unwrap();
    assert_eq!(stored.status, "PENDING");
    assert_eq!(stored.hostname, "ws-chicago-01");
    assert_eq!(stored.os_type, "LINUX");
    assert_eq!(stored.device_type, "DESKTOP");
    assert_eq!(stored.organization_id.as_deref(), Some(ORG));
    assert_eq!(stored.tags, vec!["site:CHICAGO".to_owned()]);
    assert_eq!(stored.serial_number.as_deref(), Some("SN-0042"));
    // The key the agent brought is defined, for technicians to describe and colour.
    let defined = app
        .state
        .tags
        .list(&crate::gateway::support::tenant("acme"), Some("DEVICE"))
        .await
        .unwrap();
    assert_eq!(
        defined
            .iter()
            .map(|tag| (tag.key.as_str(), tag.created_by.as_str()))
            .collect::<Vec<_>>(),
        [("site", "agent")]
    );
    assert!(
        super::support::machine(&app, "globex", machine_id)
            .await
            .is_none()
    );
    // The credential keeps a digest of the secret, never the secret.
    let credential = app
        .state
        .storage
        .documents
        .get(
            &TenantId::parse("acme").unwrap(),
            &Collection::parse("agent_credentials").unwrap(),
            &DocumentId::parse(machine_id).unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(!credential.body.to_string().contains(secret));
    assert_eq!(credential.body["epoch"], 1);

    // client_credentials, form-encoded, answered in camelCase.
    let (status, tokens) = token(
        &app,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &format!("agent_{machine_id}")),
            ("client_secret", secret),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["tokenType"], "Bearer");
    assert!(tokens["expiresIn"].as_u64().unwrap() > 0);
    let access = tokens["accessToken"].as_str().unwrap();
    let jwt = claims(access);
    assert_eq!(jwt["machine_id"], machine_id);
    assert_eq!(jwt["roles"], json!(["AGENT"]));
    assert_eq!(jwt["tenant_id"], "acme");
    assert_eq!(jwt["sub"], format!("agent_{machine_id}"));
    let (status, who) = probe(&app, access).await;
    assert_eq!(status, StatusCode::OK, "{who}");
    assert_eq!(who["roles"], json!(["AGENT"]));
    assert_eq!(who["tenantId"], "acme");

    // Wrong secrets, unknown clients and wrong shapes are refused with a reason.
    for form in [
        vec![
            ("grant_type", "client_credentials"),
            ("client_id", &*format!("agent_{machine_id}")),
            ("client_secret", "wrong"),
        ],
        vec![
            ("grant_type", "client_credentials"),
            ("client_id", "agent_00000000-0000-4000-8000-000000000000"),
            ("client_secret", secret),
        ],
        vec![
            ("grant_type", "client_credentials"),
            ("client_id", machine_id),
            ("client_secret", secret),
        ],
    ] {
        let (status, body) = token(&app, &form).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{form:?}: {body}");
        assert_eq!(body["code"], "unauthorized");
        assert!(
            body["message"].as_str().unwrap().contains("credentials"),
            "{body}"
        );
    }
    let (status, body) = token(&app, &[("grant_type", "password")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["message"].as_str().unwrap().contains("grant_type"),
        "{body}"
    );
    let as_json = app
        .client
        .post(app.https_url("/clients/oauth/token"))
        .json(&json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap();
    let (status, code, message) = error_of(as_json).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_input")
    );
    assert!(message.contains("form-encoded"), "{message}");
}

#[tokio::test]
async fn bad_registrations_are_refused_with_the_field_named_and_store_nothing() {
    let app = spawn_app().await;
    let tenants = two_tenants(&app).await;
    let key = registration_secret(&app, "acme", &tenants.admin_a).await;
    let before = app
        .state
        .inventory
        .machines(&TenantId::parse("acme").unwrap())
        .await
        .unwrap()
        .len();

    for (wrong_key, why) in [("", "X-Initial-Key"), ("not-the-secret", "initial key")] {
        let (status, body) = register(&app, wrong_key, &registration("h")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert!(body["message"].as_str().unwrap().contains(why), "{body}");
    }
    let mut cases = Vec::new();
    for (field, value, named) in [
        ("hostname", Value::Null, "hostname"),
        ("organizationId", json!("org-nowhere"), "organizationId"),
        ("osType", json!("BEOS"), "osType"),
        ("agentVersion", json!("  "), "agentVersion"),
        ("type", json!("TOASTER"), "type"),
        (
            "tags",
            json!([{"key": "bad key", "values": []}]),
            "tags.key",
        ),
        (
            "tags",
            json!([{"key": "site", "values": ["a:b"]}]),
            "tags.values",
        ),
        ("hostname", json!("x".repeat(300)), "hostname"),
    ] {
        let mut body = registration("h");
        body[field] = value;
        cases.push((body, named));
    }
    for (body, named) in cases {
        let (status, answer) = register(&app, &key, &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert_eq!(answer["code"], "invalid_input");
        assert!(
            answer["message"].as_str().unwrap().starts_with(named),
            "{named}: {answer}"
        );
    }
    let not_json = app
        .client
        .post(app.https_url("/clients/api/agents/register"))
        .header("X-Initial-Key", &key)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let (status, _, message) = error_of(not_json).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message.contains("JSON body is not valid"), "{message}");
    // Globex's key registers into Globex, never into Acme.
    let key_b = registration_secret(&app, "globex", &tenants.admin_b).await;
    let globex = enroll(&app, &key_b, "globex-01").await;
    assert!(
        super::support::machine(&app, "acme", &globex.machine_id)
            .await
            .is_none()
    );
    let after = app
        .state
        .inventory
        .machines(&TenantId::parse("acme").unwrap())
        .await
        .unwrap()
        .len();
    assert_eq!(
        before, after,
        "nothing was stored for refused registrations"
    );
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_reused_one_revokes_the_machines_tokens() {
    let app = spawn_app().await;
    let tenants = two_tenants(&app).await;
    let key = registration_secret(&app, "acme", &tenants.admin_a).await;
    let machine = enroll(&app, &key, "ws-01").await;

    let (status, refreshed) = token(
        &app,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &machine.refresh_token),
            ("client_id", &machine.client_id),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");
    let new_refresh = refreshed["refreshToken"].as_str().unwrap();
    assert_ne!(new_refresh, machine.refresh_token);
    let new_access = refreshed["accessToken"].as_str().unwrap();
    assert_eq!(claims(new_access)["grant_type"], "refresh_token");
    assert_eq!(probe(&app, new_access).await.0, StatusCode::OK);
    // Another machine's client id cannot use this refresh token.
    let (status, _) = token(
        &app,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", new_refresh),
            ("client_id", "agent_someone-else"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // The first refresh token again: a copy exists somewhere. Every token of the machine stops.
    let (status, body) = token(
        &app,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &machine.refresh_token),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        body["message"].as_str().unwrap().contains("already used"),
        "{body}"
    );
    let (status, body) = probe(&app, new_access).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(
        probe(&app, &machine.access_token).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, _) = token(
        &app,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", new_refresh),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The client secret still works: the real agent recovers by authenticating again.
    let (status, again) = token(
        &app,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &machine.client_id),
            ("client_secret", &machine.client_secret),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        probe(&app, again["accessToken"].as_str().unwrap()).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn rotation_reinstall_and_uninstall_retire_old_credentials_at_once() {
    let app = spawn_app().await;
    let tenants = two_tenants(&app).await;
    let key = registration_secret(&app, "acme", &tenants.admin_a).await;
    let machine = enroll(&app, &key, "ws-01").await;

    // Rotating refuses the old key for new machines; registered machines keep working.
    let rotated = app
        .client
        .post(app.https_url("/api/agents/registration-secret/rotate"))
        .bearer_auth(&tenants.admin_a)
        .send()
        .await
        .unwrap();
    assert_eq!(rotated.status(), StatusCode::OK);
    let new_key = rotated.json::<Value>().await.unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(new_key, key);
    let (status, _) = register(&app, &key, &registration("late")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(probe(&app, &machine.access_token).await.0, StatusCode::OK);
    // An agent token cannot manage secrets.
    let denied = app
        .client
        .get(app.https_url("/api/agents/registration-secret"))
        .bearer_auth(&machine.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);

    // Reinstall keeps the machine id, issues a new secret and retires the old one and its tokens.
    let mut body = registration("ws-01-rebuilt");
    body["osType"] = json!("WINDOWS");
    let reinstall = |initial: String, secret: String, body: Value| {
        let request = app
            .client
            .post(app.https_url("/clients/api/agents/reinstall"))
            .header("X-Initial-Key", initial)
            .header("X-Machine-Id", &machine.machine_id)
            .header("X-Client-Secret", secret)
            .json(&body);
        async move { request.send().await.unwrap() }
    };
    let refused = reinstall(new_key.clone(), "wrong".into(), body.clone()).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let refused = reinstall(key.clone(), machine.client_secret.clone(), body.clone()).await;
    assert_eq!(
        refused.status(),
        StatusCode::UNAUTHORIZED,
        "the rotated key"
    );
    let answer = reinstall(new_key.clone(), machine.client_secret.clone(), body).await;
    assert_eq!(answer.status(), StatusCode::OK);
    let reinstalled: Value = answer.json().await.unwrap();
    assert_eq!(reinstalled["machineId"], machine.machine_id);
    let new_secret = reinstalled["clientSecret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, machine.client_secret);
    let stored = super::support::machine(&app, "acme", &machine.machine_id)
        .await
        .unwrap();
    assert_eq!(
        (stored.hostname.as_str(), stored.os_type.as_str()),
        ("ws-01-rebuilt", "WINDOWS")
    );
    assert_eq!(
        probe(&app, &machine.access_token).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, _) = token(
        &app,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &machine.client_id),
            ("client_secret", &machine.client_secret),
        ],
    )
    .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the old secret is retired"
    );
    let (status, fresh) = token(
        &app,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &machine.client_id),
            ("client_secret", &new_secret),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let fresh_access = fresh["accessToken"].as_str().unwrap().to_owned();

    // Uninstall: 204, the machine is DELETED, its credentials and tokens are gone.
    let uninstall = |secret: String| {
        let request = app
            .client
            .post(app.https_url("/clients/api/agents/uninstall"))
            .header("X-Machine-Id", &machine.machine_id)
            .header("X-Client-Secret", secret);
        async move { request.send().await.unwrap() }
    };
    assert_eq!(
        uninstall(machine.client_secret.clone()).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let done = uninstall(new_secret.clone()).await;
    assert_eq!(done.status(), StatusCode::NO_CONTENT);
    let stored = super::support::machine(&app, "acme", &machine.machine_id)
        .await
        .unwrap();
    assert_eq!(stored.status, "DELETED");
    assert_eq!(probe(&app, &fresh_access).await.0, StatusCode::UNAUTHORIZED);
    let (status, _) = token(
        &app,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &machine.client_id),
            ("client_secret", &new_secret),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
