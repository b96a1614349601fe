//! Webhooks through the external API, against real receivers on loopback: a subscription gets a
//! signed delivery of the event types it named and nothing else (the test checks the HMAC
//! itself), a failing receiver is retried with growing waits until it answers or the attempts
//! run out, internal targets, unknown types and keys without the scope are refused, another
//! tenant sees nothing, and the secret never reaches the data dir in the clear.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lc_rs::hmac;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use openframe_storage::model::{GroupId, Topic};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use super::{V1, refuses_naming, with_key};
use crate::gateway::support::{create_key, tenant, two_tenants};
use crate::helpers::{TestApp, spawn_app, spawn_with, test_config};
use crate::stream::support::{fixture, ingest, ingest_key, settle};

/// One request as a receiver saw it.
struct Received {
    at: Instant,
    path: String,
    query: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Clone)]
struct Inbox {
    seen: Arc<Mutex<Vec<Received>>>,
    /// The first this many requests are answered 500.
    fail_first: usize,
    /// When set, a request that will succeed waits for a permit first, so the test can look at
    /// the delivery between the last failure and the success.
    gate: Option<Arc<Semaphore>>,
}

impl Inbox {
    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

async fn receive(State(inbox): State<Inbox>, request: Request) -> StatusCode {
    let at = Instant::now();
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap().to_vec();
    let number = {
        let mut seen = inbox.seen.lock().unwrap();
        seen.push(Received {
            at,
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().unwrap_or_default().to_owned(),
            headers: parts.headers,
            body,
        });
        seen.len()
    };
    if number <= inbox.fail_first {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    if let Some(gate) = &inbox.gate {
        gate.acquire().await.unwrap().forget();
    }
    StatusCode::NO_CONTENT
}

/// A plain-HTTP receiver on loopback; returns its base URL and what it receives.
async fn receiver(fail_first: usize, gate: Option<Arc<Semaphore>>) -> (String, Inbox) {
    let inbox = Inbox {
        seen: Arc::default(),
        fail_first,
        gate,
    };
    let router = axum::Router::new()
        .fallback(receive)
        .with_state(inbox.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (format!("http://{address}"), inbox)
}

/// Polls `probe` until it yields a value; fails the test after 20 s.
async fn eventually<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Computed here with aws-lc-rs directly, not with the appliance's code.
fn expected_signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mut message = format!("{timestamp}.").into_bytes();
    message.extend_from_slice(body);
    let tag = hmac::sign(&key, &message);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

fn check_signed(received: &Received, secret: &str) {
    let timestamp = received.header("x-openframe-timestamp");
    let seconds: i64 = timestamp.parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (now - seconds).abs() < 300,
        "timestamp {seconds}, now {now}"
    );
    assert_eq!(
        received.header("x-openframe-signature"),
        expected_signature(secret, timestamp, &received.body)
    );
    assert_ne!(
        received.header("x-openframe-signature"),
        expected_signature("whsec_wrong", timestamp, &received.body)
    );
    assert_eq!(received.header("content-type"), "application/json");
    let body = received.json();
    assert_eq!(received.header("x-openframe-delivery"), body["id"]);
    assert_eq!(received.header("x-openframe-event"), body["eventType"]);
}

/// `POST /webhooks`; asserts 201 and `Cache-Control: no-store`; returns the answer.
async fn subscribe(app: &TestApp, key: &str, body: Value) -> Value {
    let response = app
        .client
        .post(app.https_url(&format!("{V1}/webhooks")))
        .header("x-api-key", key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let cache = response.headers().get("cache-control").cloned();
    let answer: Value = response.json().await.unwrap();
    assert_eq!(status, 201, "{answer}");
    assert_eq!(cache.unwrap(), "no-store");
    assert!(
        answer["secret"].as_str().unwrap().starts_with("whsec_"),
        "{answer}"
    );
    answer
}

async fn deliveries(app: &TestApp, key: &str, webhook: &str, query: &str) -> Vec<Value> {
    let (status, answer) = with_key(
        app,
        key,
        Method::GET,
        &format!("/webhooks/{webhook}/deliveries{query}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    answer["deliveries"].as_array().unwrap().clone()
}

/// The single delivery of `webhook`, once `done` says it is where the test wants it.
async fn delivery_when(
    app: &TestApp,
    key: &str,
    webhook: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    eventually("the delivery's state", async || {
        let listed = deliveries(app, key, webhook, "").await;
        match listed.as_slice() {
            [only] if done(only) => Some(only.clone()),
            _ => None,
        }
    })
    .await
}

fn private_targets_allowed() -> (tempfile::TempDir, openframe::config::Config) {
    let dir = tempfile::TempDir::new().unwrap();
    let mut config = test_config(&dir.path().join("data"));
    config.webhooks.allow_private_targets = true;
    (dir, config)
}

async fn webhook_key(app: &TestApp, admin_token: &str) -> String {
    let scopes = json!(["webhooks:read", "webhooks:write"]);
    create_key(app, admin_token, json!({"name": "hooks", "scopes": scopes}))
        .await
        .1
}

/// Waits until every unified log record of the tenant has been through the dispatcher.
async fn dispatched(app: &TestApp, tenant_id: &str) {
    let tenant = tenant(tenant_id);
    let topic = Topic::parse(openframe::stream::UNIFIED_TOPIC).unwrap();
    let group = GroupId::parse(openframe::webhooks::GROUP).unwrap();
    let events = &app.state.storage.events;
    eventually("the dispatcher to reach the end", async || {
        let end = events.bounds(&tenant, &topic).await.unwrap().end;
        let committed = events
            .committed_offset(&tenant, &topic, &group)
            .await
            .unwrap();
        (end.0 > 0 && committed == Some(end)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_subscription_receives_signed_deliveries_of_its_event_types_only() {
    let (_dir, config) = private_targets_allowed();
    let app = spawn_with(config).await;
    let tenants = two_tenants(&app).await;
    let key = webhook_key(&app, &tenants.admin_a).await;
    let theirs = webhook_key(&app, &tenants.admin_b).await;
    let (base, inbox) = receiver(0, None).await;

    let created = subscribe(
        &app,
        &key,
        json!({"url": format!("{base}/hooks/acme?token=t1"), "eventTypes": ["login"], "description": "SIEM"}),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert_eq!(created["eventTypes"], json!(["LOGIN"]));
    assert_eq!(
        (created["enabled"].clone(), created["description"].clone()),
        (json!(true), json!("SIEM"))
    );
    let (status, listed) = with_key(&app, &key, Method::GET, "/webhooks", None).await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["webhooks"].as_array().unwrap().len(), 1);
    assert!(listed["webhooks"][0].get("secret").is_none(), "{listed}");
    let (_, one) = with_key(&app, &key, Method::GET, &format!("/webhooks/{id}"), None).await;
    assert!(one.get("secret").is_none(), "{one}");
    assert_eq!(one["url"], format!("{base}/hooks/acme?token=t1"));

    // A login and a device registration: only the login is subscribed to.
    let ingest_with = ingest_key(&app, &tenants.admin_a).await;
    let two_events: Vec<u8> = String::from_utf8(fixture("meshcentral-events.ndjson"))
        .unwrap()
        .lines()
        .take(2)
        .collect::<Vec<_>>()
        .join("\n")
        .into_bytes();
    let (status, answer) = ingest(&app, &ingest_with, "MESHCENTRAL_EVENT", two_events).await;
    assert_eq!(
        (status.as_u16(), answer["accepted"].clone()),
        (200, json!(2))
    );
    settle(&app).await;
    dispatched(&app, "acme").await;
    let delivered = delivery_when(&app, &key, &id, |d| d["status"] == "delivered").await;

    let received = inbox.seen.lock().unwrap().drain(..).collect::<Vec<_>>();
    assert_eq!(received.len(), 1, "only the LOGIN is delivered");
    let login = &received[0];
    check_signed(login, &secret);
    assert_eq!(
        (login.path.as_str(), login.query.as_str()),
        ("/hooks/acme", "token=t1")
    );
    let body = login.json();
    assert_eq!(body["eventType"], "LOGIN");
    assert_eq!(body["subscriptionId"], id);
    assert_eq!(body["tenantId"], "acme");
    assert_eq!(body["occurredAt"], "2025-11-20T09:00:01Z");
    assert_eq!(body["data"]["eventType"], "LOGIN");
    assert_eq!(body["data"]["toolType"], "MESHCENTRAL");
    assert_eq!(body["data"]["summary"], "Account login");

    assert_eq!(delivered["id"], body["id"]);
    assert_eq!(delivered["attempts"], 1);
    assert_eq!(delivered["lastStatusCode"], 204);
    assert_eq!(delivered["lastError"], Value::Null);
    assert_eq!(delivered["nextAttemptAt"], Value::Null);
    assert!(delivered["deliveredAt"].is_string(), "{delivered}");
    assert_eq!(
        deliveries(&app, &key, &id, "?status=delivered").await.len(),
        1
    );
    assert!(
        deliveries(&app, &key, &id, "?status=pending")
            .await
            .is_empty()
    );
    let bad: Vec<(String, &str)> = [
        ("status=lost", "status"),
        ("limit=0", "limit"),
        ("since=1", "since"),
    ]
    .into_iter()
    .map(|(query, parameter)| (format!("/webhooks/{id}/deliveries?{query}"), parameter))
    .collect();
    let bad: Vec<(&str, &str)> = bad
        .iter()
        .map(|(path, parameter)| (path.as_str(), *parameter))
        .collect();
    refuses_naming(&app, &key, &bad).await;

    // The other tenant sees none of it.
    let (_, their_list) = with_key(&app, &theirs, Method::GET, "/webhooks", None).await;
    assert_eq!(their_list, json!({"webhooks": []}));
    for (method, path, body) in [
        (Method::GET, format!("/webhooks/{id}"), None),
        (Method::GET, format!("/webhooks/{id}/deliveries"), None),
        (
            Method::PATCH,
            format!("/webhooks/{id}"),
            Some(json!({"enabled": false})),
        ),
        (Method::POST, format!("/webhooks/{id}/test"), None),
        (Method::DELETE, format!("/webhooks/{id}"), None),
    ] {
        let (status, error) = with_key(&app, &theirs, method.clone(), &path, body).await;
        assert_eq!(
            (status, error["code"].clone()),
            (404, json!("not_found")),
            "{method} {path}"
        );
    }

    // A test delivery, signed the same way.
    let (status, queued) = with_key(
        &app,
        &key,
        Method::POST,
        &format!("/webhooks/{id}/test"),
        None,
    )
    .await;
    assert_eq!(status, 202, "{queued}");
    assert_eq!(queued["eventType"], "WEBHOOK_TEST");
    eventually("the test delivery", async || {
        (inbox.count() == 1).then_some(())
    })
    .await;
    let ping = inbox.seen.lock().unwrap().remove(0);
    check_signed(&ping, &secret);
    assert_eq!(ping.json()["id"], queued["id"]);

    // Disabled, it gets nothing; deleted, it is gone with its deliveries.
    let (status, changed) = with_key(
        &app,
        &key,
        Method::PATCH,
        &format!("/webhooks/{id}"),
        Some(json!({"enabled": false, "eventTypes": ["LOGIN", "DEVICE_REGISTERED"]})),
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(
        (changed["enabled"].clone(), changed["eventTypes"].clone()),
        (json!(false), json!(["LOGIN", "DEVICE_REGISTERED"]))
    );
    let (status, _) = with_key(
        &app,
        &key,
        Method::POST,
        &format!("/webhooks/{id}/test"),
        None,
    )
    .await;
    assert_eq!(status, 409);
    let (status, _) = with_key(&app, &key, Method::DELETE, &format!("/webhooks/{id}"), None).await;
    assert_eq!(status, 204);
    let (status, _) = with_key(&app, &key, Method::GET, &format!("/webhooks/{id}"), None).await;
    assert_eq!(status, 404);
    let (status, _) = with_key(
        &app,
        &key,
        Method::GET,
        &format!("/webhooks/{id}/deliveries"),
        None,
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_failing_receiver_is_retried_with_doubling_waits_until_it_answers_or_attempts_run_out() {
    let (_dir, mut config) = private_targets_allowed();
    config.webhooks.backoff_base_ms = 200;
    config.webhooks.backoff_max_ms = 10_000;
    config.webhooks.max_attempts = 4;
    let app = spawn_with(config).await;
    let tenants = two_tenants(&app).await;
    let key = webhook_key(&app, &tenants.admin_a).await;
    let gate = Arc::new(Semaphore::new(0));
    let (flaky_base, flaky) = receiver(2, Some(gate.clone())).await;
    let (dead_base, dead) = receiver(usize::MAX, None).await;

    let mut ids = Vec::new();
    for base in [&flaky_base, &dead_base] {
        let created = subscribe(
            &app,
            &key,
            json!({"url": format!("{base}/hook"), "eventTypes": ["LOGIN"]}),
        )
        .await;
        let id = created["id"].as_str().unwrap().to_owned();
        let (status, queued) = with_key(
            &app,
            &key,
            Method::POST,
            &format!("/webhooks/{id}/test"),
            None,
        )
        .await;
        assert_eq!(status, 202, "{queued}");
        ids.push(id);
    }
    let (flaky_id, dead_id) = (&ids[0], &ids[1]);

    // Two failures, then the third attempt is held at the receiver: the delivery shows the
    // last failure and waits.
    eventually("the third attempt", async || {
        (flaky.count() == 3).then_some(())
    })
    .await;
    let waiting = delivery_when(&app, &key, flaky_id, |d| d["attempts"] == 2).await;
    assert_eq!(waiting["status"], "pending", "{waiting}");
    assert_eq!(waiting["lastStatusCode"], 500);
    assert!(
        waiting["lastError"].as_str().unwrap().contains("500"),
        "{waiting}"
    );
    assert!(waiting["nextAttemptAt"].is_string(), "{waiting}");
    gate.add_permits(1);
    let delivered = delivery_when(&app, &key, flaky_id, |d| d["status"] == "delivered").await;
    assert_eq!(delivered["attempts"], 3);
    assert_eq!(delivered["lastStatusCode"], 204);
    assert_eq!(delivered["lastError"], Value::Null);

    let failed = delivery_when(&app, &key, dead_id, |d| d["status"] == "failed").await;
    assert_eq!(failed["attempts"], 4);
    assert_eq!(failed["lastStatusCode"], 500);
    assert_eq!(failed["nextAttemptAt"], Value::Null);
    assert_eq!(dead.count(), 4, "no attempt after the last");
    assert_eq!(
        deliveries(&app, &key, dead_id, "?status=failed")
            .await
            .len(),
        1
    );

    // Each wait is at least the base doubled per earlier failure.
    for (inbox, attempts) in [(&flaky, 3), (&dead, 4)] {
        let seen = inbox.seen.lock().unwrap();
        assert_eq!(seen.len(), attempts);
        let signature = seen[0].header("x-openframe-signature").to_owned();
        for (n, pair) in seen.windows(2).enumerate() {
            let gap = pair[1].at - pair[0].at;
            let least = Duration::from_millis(200 << n);
            assert!(gap >= least, "wait {n}: {gap:?} < {least:?}");
            // The same delivery each time.
            assert_eq!(
                pair[1].header("x-openframe-delivery"),
                pair[0].header("x-openframe-delivery")
            );
        }
        assert!(signature.starts_with("sha256="));
    }
}

#[tokio::test]
async fn webhooks_refuse_internal_targets_unknown_types_and_keys_without_the_scope() {
    let app = spawn_app().await;
    let tenants = two_tenants(&app).await;
    let key = webhook_key(&app, &tenants.admin_a).await;
    // The default scopes read, and nothing more.
    let (_, reader, _) = create_key(&app, &tenants.admin_a, json!({"name": "reader"})).await;

    for (body, field) in [
        (
            json!({"url": "http://hooks.example.com/in", "eventTypes": ["LOGIN"]}),
            "url",
        ),
        (
            json!({"url": "https://127.0.0.1/in", "eventTypes": ["LOGIN"]}),
            "url",
        ),
        (
            json!({"url": "https://localhost:9/in", "eventTypes": ["LOGIN"]}),
            "url",
        ),
        (
            json!({"url": "https://[::1]/in", "eventTypes": ["LOGIN"]}),
            "url",
        ),
        (
            json!({"url": "https://169.254.169.254/latest/meta-data", "eventTypes": ["LOGIN"]}),
            "url",
        ),
        (
            json!({"url": "https://10.0.0.8/in", "eventTypes": ["LOGIN"]}),
            "url",
        ),
        (
            json!({"url": "https://hooks.example.com/in", "eventTypes": ["NOT_A_TYPE"]}),
            "eventTypes",
        ),
        (
            json!({"url": "https://hooks.example.com/in", "eventTypes": []}),
            "eventTypes",
        ),
    ] {
        let (status, error) =
            with_key(&app, &key, Method::POST, "/webhooks", Some(body.clone())).await;
        assert_eq!(
            (status, error["code"].clone()),
            (400, json!("invalid_input")),
            "{body}: {error}"
        );
        assert!(
            error["message"].as_str().unwrap().starts_with(field),
            "{body}: {error}"
        );
    }
    let (status, error) = with_key(
        &app,
        &key,
        Method::POST,
        "/webhooks",
        Some(json!({"url": "https://127.0.0.1/in", "eventTypes": ["LOGIN"], "secret": "mine"})),
    )
    .await;
    assert_eq!(status, 400, "unknown fields are refused: {error}");

    let (status, denied) = with_key(
        &app,
        &reader,
        Method::POST,
        "/webhooks",
        Some(json!({"url": "https://hooks.example.com/in", "eventTypes": ["LOGIN"]})),
    )
    .await;
    assert_eq!(status, 403, "{denied}");
    assert!(
        denied["message"]
            .as_str()
            .unwrap()
            .contains("webhooks:write"),
        "{denied}"
    );
    // The default scopes do not read webhooks: their URLs are often credentials themselves.
    let (status, denied) = with_key(&app, &reader, Method::GET, "/webhooks", None).await;
    assert_eq!(status, 403, "{denied}");
    assert!(
        denied["message"]
            .as_str()
            .unwrap()
            .contains("webhooks:read"),
        "{denied}"
    );
    let (_, lister, _) = create_key(
        &app,
        &tenants.admin_a,
        json!({"name": "lister", "scopes": ["webhooks:read"]}),
    )
    .await;
    let (status, listed) = with_key(&app, &lister, Method::GET, "/webhooks", None).await;
    assert_eq!((status, listed), (200, json!({"webhooks": []})));
    let (status, error) = with_key(
        &app,
        &lister,
        Method::GET,
        "/webhooks/wh_0000000000000000",
        None,
    )
    .await;
    assert_eq!((status, error["code"].clone()), (404, json!("not_found")));
    refuses_naming(&app, &lister, &[("/webhooks?limit=5", "limit")]).await;
}

#[tokio::test]
async fn a_webhook_secret_is_kept_only_sealed_in_the_data_dir() {
    let (_dir, config) = private_targets_allowed();
    let app = spawn_with(config).await;
    let tenants = two_tenants(&app).await;
    let key = webhook_key(&app, &tenants.admin_a).await;
    let created = subscribe(
        &app,
        &key,
        json!({"url": "http://127.0.0.1:9/hook", "eventTypes": ["LOGIN"]}),
    )
    .await;
    let id = created["id"].as_str().unwrap();
    let (status, rotated) = with_key(
        &app,
        &key,
        Method::POST,
        &format!("/webhooks/{id}/rotate-secret"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{rotated}");
    let secrets = [
        created["secret"].as_str().unwrap().to_owned(),
        rotated["secret"].as_str().unwrap().to_owned(),
    ];
    assert_ne!(secrets[0], secrets[1]);

    // Every byte the appliance wrote, including write-ahead logs and the audit trail.
    let mut pending = vec![app.data_dir.clone()];
    let mut files = 0;
    while let Some(path) = pending.pop() {
        for entry in std::fs::read_dir(&path).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                pending.push(entry.path());
                continue;
            }
            let Ok(bytes) = std::fs::read(entry.path()) else {
                continue;
            };
            files += 1;
            for secret in &secrets {
                assert!(
                    !bytes
                        .windows(secret.len())
                        .any(|window| window == secret.as_bytes()),
                    "{} holds a webhook secret",
                    entry.path().display()
                );
            }
        }
    }
    assert!(files > 3, "the data dir was read");
}
