//! The optional assistant against local fakes of its two providers' wire formats (FAKES: the
//! real Anthropic and OpenAI-compatible services cannot be reached from here). Each fake is a
//! plain HTTP server on loopback that speaks the provider's request and reply shapes, records
//! what it was sent, and can answer badly, slowly or not at all.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use reqwest::Method;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::gateway::support::{Tenants, two_tenants};
use crate::helpers::{TestApp, spawn_with, test_config};
use crate::rest::call;
use crate::stream::support::{MESH_WS_001, fixture, ingest, ingest_key, seed_inventory, settle};

/// What the fake does with the next requests.
#[derive(Debug, Clone)]
pub(crate) enum Mode {
    /// Answers with this text in the provider's reply shape.
    Answer(String),
    /// Answers exactly this status and body.
    Raw(u16, String),
    /// Never answers (within any timeout a test uses).
    Hang,
}

/// One request as the fake received it.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    headers: HeaderMap,
    body: Value,
}

pub(crate) struct Fake {
    mode: Mutex<Mode>,
    seen: Mutex<Vec<Seen>>,
}

impl Fake {
    pub(crate) fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn last(&self) -> Seen {
        self.seen().pop().expect("the fake was called")
    }
}

/// FAKE Anthropic Messages API (`POST /v1/messages`) and FAKE OpenAI-compatible chat
/// completions (`POST /v1/chat/completions`) on one loopback port: `http://127.0.0.1:PORT`.
pub(crate) async fn fake_provider() -> (Arc<Fake>, String) {
    async fn answer(
        State(fake): State<Arc<Fake>>,
        uri: axum::http::Uri,
        headers: HeaderMap,
        body: String,
    ) -> axum::response::Response {
        let path = uri.path().to_owned();
        fake.seen.lock().unwrap().push(Seen {
            path: path.clone(),
            headers,
            body: serde_json::from_str(&body).unwrap_or(Value::Null),
        });
        let mode = fake.mode.lock().unwrap().clone();
        let json = [("content-type", "application/json")];
        match mode {
            Mode::Answer(text) if path == "/v1/messages" => (
                json,
                json!({"id": "msg_fake", "type": "message", "role": "assistant",
                       "model": "claude-fake", "stop_reason": "end_turn",
                       "content": [{"type": "text", "text": text}],
                       "usage": {"input_tokens": 10, "output_tokens": 20}})
                .to_string(),
            )
                .into_response(),
            Mode::Answer(text) => (
                json,
                json!({"id": "chatcmpl-fake", "object": "chat.completion", "model": "local-fake",
                       "choices": [{"index": 0, "finish_reason": "stop",
                                    "message": {"role": "assistant", "content": text}}]})
                .to_string(),
            )
                .into_response(),
            Mode::Raw(status, body) => {
                (StatusCode::from_u16(status).unwrap(), json, body).into_response()
            }
            Mode::Hang => {
                tokio::time::sleep(Duration::from_secs(60)).await;
                StatusCode::OK.into_response()
            }
        }
    }
    let fake = Arc::new(Fake {
        mode: Mutex::new(Mode::Answer("ok".into())),
        seen: Mutex::new(Vec::new()),
    });
    let router = axum::Router::new()
        .route("/v1/messages", post(answer))
        .route("/v1/chat/completions", post(answer))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    (fake, format!("http://{address}"))
}

const API_KEY: &str = "sk-ant-fake-0123456789abcdef";

/// An appliance whose assistant uses `provider` at `base_url`: its two tenants, and Acme's
/// inventory.
async fn appliance(
    dir: &TempDir,
    provider: &str,
    base_url: &str,
    with_key: bool,
) -> (TestApp, Tenants) {
    let mut config = test_config(&dir.path().join("data"));
    config.assistant.enabled = true;
    config.assistant.provider = provider.into();
    config.assistant.base_url = base_url.into();
    config.assistant.model = format!("{provider}-model");
    config.assistant.timeout_seconds = 2;
    if with_key {
        let key_file = dir.path().join("assistant.key");
        std::fs::write(&key_file, format!("{API_KEY}\n")).unwrap();
        config.assistant.api_key_file = key_file.to_string_lossy().into_owned();
    }
    let app = spawn_with(config).await;
    let tenants = two_tenants(&app).await;
    seed_inventory(&app, "acme").await;
    (app, tenants)
}

/// A MeshCentral event on ACME-WS-001 whose message carries a password, a token and an API key.
fn leaky_event() -> Vec<u8> {
    let after = json!({
        "_id": {"$oid": "673dc1a0e4b0a1b2c3d4e5ff"}, "etype": "node", "action": "addnode",
        "nodeid": MESH_WS_001, "userid": "user//admin", "username": "admin", "domain": "",
        "msg": "Ran backup.cmd --password Hunter2! with Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl and key ak_1a2b3c4d5e6f7a8b.sk_00112233445566778899aabbccddeeff",
        "time": {"$date": 1_763_629_300_000_i64}, "ids": [MESH_WS_001]});
    let line = json!({"before": null, "after": after.to_string(), "updateDescription": null,
        "source": {"connector": "mongodb", "name": "meshcentral", "db": "meshcentral",
                   "collection": "events", "ts_ms": 1_763_629_300_030_i64},
        "op": "c", "ts_ms": 1_763_629_300_037_i64});
    format!("{line}\n").into_bytes()
}

const SECRETS: [&str; 3] = [
    "Hunter2!",
    "eyJhbGciOiJSUzI1NiJ9",
    "sk_00112233445566778899aabbccddeeff",
];

fn error(body: &Value) -> (&str, &str) {
    (
        body["code"].as_str().unwrap_or_default(),
        body["message"].as_str().unwrap_or_default(),
    )
}

#[tokio::test]
async fn the_assistant_is_off_by_default_and_says_how_to_turn_it_on() {
    let dir = TempDir::new().unwrap();
    let app = spawn_with(test_config(&dir.path().join("data"))).await;
    let tenants = two_tenants(&app).await;
    seed_inventory(&app, "acme").await;
    let token = &tenants.admin_a;

    let (status, body) = call(&app, token, Method::GET, "/api/assistant", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"enabled": false, "provider": null, "model": null})
    );
    for (path, request) in [
        ("/api/assistant/devices/m-ws-001/summary", None),
        ("/api/assistant/incidents/inc-1/explain", None),
        (
            "/api/assistant/scripts/draft",
            Some(json!({"goal": "clear the temp folder"})),
        ),
    ] {
        let (status, body) = call(&app, token, Method::POST, path, request).await;
        assert_eq!(status, 409, "{path}: {body}");
        let (code, message) = error(&body);
        assert_eq!(code, "assistant_disabled");
        assert!(message.contains("[assistant] enabled = true"), "{message}");
    }
    let (status, body) = call(&app, token, Method::GET, "/api/assistant/approvals", None).await;
    assert_eq!((status, body), (200, json!({"approvals": []})));
}

#[tokio::test]
async fn anthropic_gets_the_devices_log_and_an_incident_without_secrets_and_its_errors_are_clear() {
    let dir = TempDir::new().unwrap();
    let (fake, base_url) = fake_provider().await;
    let (app, tenants) = appliance(&dir, "anthropic", &base_url, true).await;
    let token = &tenants.admin_a;
    let key = ingest_key(&app, token).await;
    ingest(
        &app,
        &key,
        "MESHCENTRAL_EVENT",
        fixture("meshcentral-events.ndjson"),
    )
    .await;
    let (status, _) = ingest(&app, &key, "MESHCENTRAL_EVENT", leaky_event()).await;
    assert_eq!(status, 200);
    settle(&app).await;

    fake.set(Mode::Answer(
        "ACME-WS-001 was added and ran a backup.".into(),
    ));
    let (status, body) = call(
        &app,
        token,
        Method::POST,
        "/api/assistant/devices/m-ws-001/summary",
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"text": "ACME-WS-001 was added and ran a backup.", "provider": "anthropic",
               "model": "anthropic-model"})
    );
    let seen = fake.last();
    assert_eq!(seen.path, "/v1/messages");
    assert_eq!(seen.headers["x-api-key"], API_KEY);
    assert_eq!(seen.headers["anthropic-version"], "2023-06-01");
    assert_eq!(seen.body["model"], "anthropic-model");
    assert_eq!(seen.body["max_tokens"], 1024);
    assert!(
        seen.body["system"]
            .as_str()
            .unwrap()
            .contains("Summarise what happened on this device")
    );
    assert_eq!(seen.body["messages"][0]["role"], "user");
    let prompt = seen.body["messages"][0]["content"].as_str().unwrap();
    assert!(prompt.contains("hostname: ACME-WS-001"), "{prompt}");
    assert!(prompt.contains("Added device ACME-WS-001"), "{prompt}");
    assert!(
        prompt.contains("Ran backup.cmd --password [redacted]"),
        "{prompt}"
    );
    for secret in SECRETS {
        assert!(
            !prompt.contains(secret),
            "{secret} reached the provider: {prompt}"
        );
    }

    // An incident, explained with its evidence.
    let incident_id = crate::detection::open_incident(
        &app,
        "acme",
        "m-ws-001",
        Some("org-acme"),
        // A secret where a tool's text could carry one.
        "5 devices went offline within 10 minutes; api_key=tok-9f86d081884c7d659a2f",
    )
    .await;
    fake.set(Mode::Answer("A site lost power.".into()));
    let (status, body) = call(
        &app,
        token,
        Method::POST,
        &format!("/api/assistant/incidents/{incident_id}/explain"),
        None,
    )
    .await;
    assert_eq!(
        (status, body["text"].as_str()),
        (200, Some("A site lost power."))
    );
    let prompt = fake.last().body["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        prompt.contains("5 devices went offline within 10 minutes"),
        "{prompt}"
    );
    assert!(prompt.contains("\"windowMinutes\":10"), "{prompt}");
    assert!(prompt.contains("api_key=[redacted]"), "{prompt}");
    assert!(!prompt.contains("tok-9f86d081884c7d659a2f"), "{prompt}");

    // Another tenant's device and incident are not found, and the provider is not asked.
    let calls = fake.seen().len();
    for path in [
        "/api/assistant/devices/m-ws-001/summary".to_owned(),
        format!("/api/assistant/incidents/{incident_id}/explain"),
    ] {
        let (status, body) = call(&app, &tenants.admin_b, Method::POST, &path, None).await;
        assert_eq!(
            (status, error(&body).0),
            (404, "not_found"),
            "{path}: {body}"
        );
    }
    assert_eq!(fake.seen().len(), calls);

    // The provider's own error shape, and replies that are not what the API promises.
    for (mode, code, says) in [
        (
            Mode::Raw(
                529,
                json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
                    .to_string(),
            ),
            "upstream_unavailable",
            "refused the request (HTTP 529): Overloaded",
        ),
        (
            Mode::Raw(200, json!({"type": "message", "content": "text"}).to_string()),
            "upstream_unavailable",
            "the reply has no \"content\" list",
        ),
        (
            Mode::Raw(200, json!({"type": "message", "content": [{"type": "tool_use"}]}).to_string()),
            "upstream_unavailable",
            "the reply holds no text",
        ),
        (Mode::Hang, "upstream_timeout", "did not answer within 2 s"),
    ] {
        fake.set(mode);
        let (status, body) = call(
            &app,
            token,
            Method::POST,
            "/api/assistant/devices/m-ws-001/summary",
            None,
        )
        .await;
        let expected = if code == "upstream_timeout" { 504 } else { 502 };
        assert_eq!((status, error(&body).0), (expected, code), "{body}");
        assert!(error(&body).1.contains(says), "{body}");
    }
}

#[tokio::test]
async fn an_openai_compatible_draft_waits_for_a_technician_and_the_decision_is_audited() {
    let dir = TempDir::new().unwrap();
    let (fake, base_url) = fake_provider().await;
    let (app, tenants) = appliance(&dir, "openai", &format!("{base_url}/v1"), false).await;
    let token = &tenants.admin_a;

    let draft = json!({"name": "Clear temp files", "description": "Deletes files in %TEMP% older than 7 days",
                       "shell": "powershell", "body": "Get-ChildItem $env:TEMP | Remove-Item -Recurse"});
    fake.set(Mode::Answer(format!(
        "Here you are:\n```json\n{draft}\n```"
    )));
    let (status, body) = call(
        &app,
        token,
        Method::POST,
        "/api/assistant/scripts/draft",
        Some(json!({"goal": "free disk space on ACME-WS-001", "machineId": "m-ws-001"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let approval = &body["approval"];
    assert_eq!(approval["status"], "PENDING");
    assert_eq!(approval["kind"], "CREATE_SCRIPT");
    assert_eq!(approval["machineId"], "m-ws-001");
    assert_eq!(approval["draft"]["shell"], "POWERSHELL");
    assert_eq!(approval["draft"]["body"], draft["body"]);
    assert_eq!(approval["requestedBy"], "owner@acme.example.com");
    let first = approval["id"].as_str().unwrap().to_owned();
    // The wire format: a system message, then the goal and the device; no key configured, so
    // no Authorization header.
    let seen = fake.last();
    assert_eq!(seen.path, "/v1/chat/completions");
    assert!(seen.headers.get("authorization").is_none());
    assert_eq!(seen.body["model"], "openai-model");
    assert_eq!(seen.body["messages"][0]["role"], "system");
    assert!(
        seen.body["messages"][0]["content"]
            .as_str()
            .unwrap()
            .contains("Answer with one JSON object")
    );
    let prompt = seen.body["messages"][1]["content"].as_str().unwrap();
    assert!(
        prompt.contains("Goal: free disk space on ACME-WS-001"),
        "{prompt}"
    );
    assert!(prompt.contains("operating system: WINDOWS"), "{prompt}");

    // Nothing is in the script library until a technician accepts; they were notified.
    let (_, scripts) = call(&app, token, Method::GET, "/api/scripts", None).await;
    assert!(
        !scripts.to_string().contains("Clear temp files"),
        "{scripts}"
    );
    let (_, notifications) = call(&app, token, Method::GET, "/api/notifications", None).await;
    assert_eq!(notifications["unread"], 1, "{notifications}");
    assert_eq!(notifications["notifications"][0]["category"], "APPROVAL");
    assert_eq!(
        notifications["notifications"][0]["link"],
        "/settings/approvals"
    );

    // Another tenant neither sees nor decides it.
    let (_, theirs) = call(
        &app,
        &tenants.admin_b,
        Method::GET,
        "/api/assistant/approvals",
        None,
    )
    .await;
    assert_eq!(theirs, json!({"approvals": []}));
    let (status, _) = call(
        &app,
        &tenants.admin_b,
        Method::POST,
        &format!("/api/assistant/approvals/{first}/accept"),
        None,
    )
    .await;
    assert_eq!(status, 404);

    // Accepted: stored as a script, once.
    let (status, accepted) = call(
        &app,
        token,
        Method::POST,
        &format!("/api/assistant/approvals/{first}/accept"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{accepted}");
    assert_eq!(accepted["status"], "ACCEPTED");
    assert_eq!(accepted["decidedBy"], "owner@acme.example.com");
    let script_id = accepted["scriptId"].as_str().unwrap();
    let (status, script) = call(
        &app,
        token,
        Method::GET,
        &format!("/api/scripts/{script_id}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(script["name"], "Clear temp files");
    assert_eq!(script["shell"], "POWERSHELL");
    assert_eq!(script["scriptBody"], draft["body"]);
    let (status, again) = call(
        &app,
        token,
        Method::POST,
        &format!("/api/assistant/approvals/{first}/accept"),
        None,
    )
    .await;
    assert_eq!((status, error(&again).0), (409, "conflict"));
    assert!(
        error(&again)
            .1
            .contains("already accepted by owner@acme.example.com")
    );

    // A second draft, declined with a reason: nothing is created.
    let (_, second) = call(
        &app,
        token,
        Method::POST,
        "/api/assistant/scripts/draft",
        Some(json!({"goal": "free disk space"})),
    )
    .await;
    let second = second["approval"]["id"].as_str().unwrap().to_owned();
    let (status, declined) = call(
        &app,
        token,
        Method::POST,
        &format!("/api/assistant/approvals/{second}/decline"),
        Some(json!({"reason": "we use Storage Sense"})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            declined["status"].as_str(),
            declined["reason"].as_str(),
            &declined["scriptId"]
        ),
        (Some("DECLINED"), Some("we use Storage Sense"), &Value::Null)
    );
    let (_, scripts) = call(&app, token, Method::GET, "/api/scripts", None).await;
    assert_eq!(
        scripts.to_string().matches("Clear temp files").count(),
        1,
        "{scripts}"
    );
    let (_, pending) = call(
        &app,
        token,
        Method::GET,
        "/api/assistant/approvals?status=PENDING",
        None,
    )
    .await;
    assert_eq!(pending, json!({"approvals": []}));

    // Both decisions are in the audit trail, with the request before and after.
    let (_, audit) = call(
        &app,
        token,
        Method::GET,
        "/api/audit?targetType=AssistantApproval",
        None,
    )
    .await;
    let records = audit["items"].as_array().cloned().unwrap_or_default();
    let decision = |action: &str, id: &str| {
        records
            .iter()
            .find(|record| record["action"] == action && record["targetId"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no {action} record for {id}: {audit}"))
    };
    let accept = decision("POST /api/assistant/approvals/{id}/accept", &first);
    assert_eq!(accept["actorEmail"], "owner@acme.example.com");
    assert_eq!(accept["before"]["status"], "PENDING");
    assert_eq!(accept["after"]["status"], "ACCEPTED");
    assert_eq!(accept["after"]["draft"]["body"], draft["body"]);
    let decline = decision("POST /api/assistant/approvals/{id}/decline", &second);
    assert_eq!(decline["after"]["status"], "DECLINED");

    // A reply that is not a draft: a clear error, and no request stored.
    fake.set(Mode::Answer("Sorry, I cannot help with that.".into()));
    let (status, body) = call(
        &app,
        token,
        Method::POST,
        "/api/assistant/scripts/draft",
        Some(json!({"goal": "free disk space"})),
    )
    .await;
    assert_eq!((status, error(&body).0), (502, "upstream_unavailable"));
    assert!(
        error(&body)
            .1
            .contains("the drafted script is not a JSON object"),
        "{body}"
    );
    for (request, says) in [
        (json!({"goal": "  "}), "goal: say what the script should do"),
        (
            json!({"goal": "x", "machineId": "m-nope"}),
            "machineId: no device",
        ),
        (json!({"goal": "x", "runNow": true}), "runNow"),
    ] {
        let (status, body) = call(
            &app,
            token,
            Method::POST,
            "/api/assistant/scripts/draft",
            Some(request),
        )
        .await;
        assert!(status == 400 || status == 404, "{body}");
        assert!(error(&body).1.contains(says), "{body}");
    }
    let (_, all) = call(&app, token, Method::GET, "/api/assistant/approvals", None).await;
    assert_eq!(all["approvals"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn a_provider_that_fails_hangs_or_is_gone_gets_a_clear_error_and_blocks_nothing_else() {
    let dir = TempDir::new().unwrap();
    let (fake, base_url) = fake_provider().await;
    let (app, tenants) = appliance(&dir, "openai", &format!("{base_url}/v1"), true).await;
    let token = tenants.admin_a.clone();
    let summary = "/api/assistant/devices/m-ws-001/summary";

    for (mode, code, says) in [
        (
            Mode::Raw(200, "<html>gateway</html>".into()),
            "upstream_unavailable",
            "the reply is not JSON",
        ),
        (
            Mode::Raw(200, json!({"choices": []}).to_string()),
            "upstream_unavailable",
            "no \"choices[0].message.content\" text",
        ),
        (
            Mode::Raw(
                429,
                json!({"error": {"message": "Rate limit reached", "type": "requests"}}).to_string(),
            ),
            "upstream_unavailable",
            "refused the request (HTTP 429): Rate limit reached",
        ),
        (
            Mode::Raw(401, String::new()),
            "upstream_unavailable",
            "(HTTP 401): Unauthorized",
        ),
        (
            Mode::Answer("   ".into()),
            "upstream_unavailable",
            "holds no text",
        ),
    ] {
        fake.set(mode);
        let (status, body) = call(&app, &token, Method::POST, summary, None).await;
        assert_eq!((status, error(&body).0), (502, code), "{body}");
        assert!(error(&body).1.contains(says), "{body}");
    }
    assert_eq!(
        fake.last().headers["authorization"],
        format!("Bearer {API_KEY}")
    );

    // A provider that hangs: the technician's request ends at the timeout; meanwhile ingest
    // and the rest of the API answer as usual.
    fake.set(Mode::Hang);
    let calls = fake.seen().len();
    let waiting = {
        let (app_client, url, token) = (app.client.clone(), app.https_url(summary), token.clone());
        tokio::spawn(async move {
            let response = app_client
                .post(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap(),
            )
        })
    };
    while fake.seen().len() == calls {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let key = ingest_key(&app, &token).await;
    let (status, ingested) = ingest(
        &app,
        &key,
        "MESHCENTRAL_EVENT",
        fixture("meshcentral-events.ndjson"),
    )
    .await;
    assert_eq!(status, 200, "{ingested}");
    let (status, me) = call(&app, &token, Method::GET, "/api/me", None).await;
    assert_eq!(
        (status, me["user"]["email"].as_str()),
        (200, Some("owner@acme.example.com"))
    );
    let (status, body) = waiting.await.unwrap();
    assert_eq!(
        (status, error(&body).0),
        (504, "upstream_timeout"),
        "{body}"
    );
    assert!(
        error(&body).1.contains("raise [assistant] timeout_seconds"),
        "{body}"
    );

    // A provider that is gone.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let other = TempDir::new().unwrap();
    let (app, tenants) = appliance(&other, "openai", &format!("http://{closed}/v1"), false).await;
    let (status, body) = call(&app, &tenants.admin_a, Method::POST, summary, None).await;
    assert_eq!(
        (status, error(&body).0),
        (502, "upstream_unavailable"),
        "{body}"
    );
    assert!(error(&body).1.contains("cannot be reached"), "{body}");
    assert!(!error(&body).1.contains(&closed.to_string()), "{body}");
}
