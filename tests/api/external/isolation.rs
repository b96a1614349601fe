//! Tenant isolation, swept over the external API's own document: tenant B's key, holding every
//! scope, is tried on tenant A's objects through every documented operation. Operations that name
//! an object answer 404 `not_found` exactly as for an id that never existed; lists and facets show
//! nothing of A's; creating with A's identifiers works in B's own namespace. A's objects (every
//! answer A's key gets for them) are unchanged afterwards. An operation added to the document
//! without a case here fails the test.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{Value, json};

use crate::external::with_key;
use crate::gateway::support::{create_key, two_tenants};
use crate::graphql::support::{machine, put_machine, put_org};
use crate::helpers::{TestApp, spawn_with, test_config};
use crate::stream::support::{fixture, ingest, ingest_key, settle};

const V1: &str = "/external-api/api/v1";

/// Strings that only tenant A's objects contain (B's creates below reuse the first, in B's own
/// namespace).
const A_MARKERS: [&str; 5] = [
    "Isolation Clinic A",
    "isolated-host-a",
    "ticket from tenant A",
    "https://10.20.30.40/a-hook",
    "a-private-machine",
];

/// Tenant A's objects, created through A's key.
struct Objects {
    machine_id: String,
    organization_id: String,
    organization_key: String,
    event_id: String,
    webhook_id: String,
    log_details: String,
}

async fn key_with_every_scope(app: &TestApp, admin_token: &str, name: &str) -> String {
    create_key(
        app,
        admin_token,
        json!({"name": name, "scopes": openframe::gateway::api_keys::SCOPES,
               "rateLimits": {"perMinute": 100000, "perHour": 1000000, "perDay": 10000000}}),
    )
    .await
    .1
}

async fn seed_a(app: &TestApp, key: &str, admin_token: &str) -> Objects {
    put_org(app, "acme", "org-a", "Isolation Clinic A").await;
    put_machine(
        app,
        "acme",
        machine("a-private-machine", "isolated-host-a", "ONLINE", "org-a"),
    )
    .await;
    let (status, organization) = with_key(
        app,
        key,
        Method::POST,
        "/organizations",
        Some(json!({"name": "Second Isolation Clinic A"})),
    )
    .await;
    assert_eq!(status, 201, "{organization}");
    let (status, event) = with_key(
        app,
        key,
        Method::POST,
        "/events",
        Some(json!({"type": "ticket.opened", "data": "ticket from tenant A"})),
    )
    .await;
    assert_eq!(status, 201, "{event}");
    let (status, webhook) = with_key(
        app,
        key,
        Method::POST,
        "/webhooks",
        // An event type the fixture does not produce: no delivery is ever attempted.
        Some(json!({"url": "https://10.20.30.40/a-hook", "eventTypes": ["SCRIPT_FAILED"]})),
    )
    .await;
    assert_eq!(status, 201, "{webhook}");
    let ingest_a = ingest_key(app, admin_token).await;
    let (status, _) = ingest(
        app,
        &ingest_a,
        "MESHCENTRAL_EVENT",
        fixture("meshcentral-events.ndjson"),
    )
    .await;
    assert_eq!(status, 200);
    settle(app).await;
    let (status, logs) = with_key(app, key, Method::GET, "/logs?limit=1", None).await;
    assert_eq!(status, 200, "{logs}");
    let entry = &logs["logs"][0];
    let log_details = format!(
        "/logs/details?ingestDay={}&toolType={}&eventType={}&timestamp={}&toolEventId={}",
        entry["ingestDay"].as_str().unwrap(),
        entry["toolType"].as_str().unwrap(),
        entry["eventType"].as_str().unwrap(),
        entry["timestamp"].as_str().unwrap(),
        entry["toolEventId"].as_str().unwrap(),
    );
    Objects {
        machine_id: "a-private-machine".to_owned(),
        organization_id: organization["organizationId"].as_str().unwrap().to_owned(),
        organization_key: "org-a".to_owned(),
        event_id: event["id"].as_str().unwrap().to_owned(),
        webhook_id: webhook["id"].as_str().unwrap().to_owned(),
        log_details,
    }
}

impl Objects {
    /// Every identifier of A's objects that a path or a query carries.
    fn identifiers(&self) -> Vec<String> {
        let tool_event_id = self
            .log_details
            .rsplit("toolEventId=")
            .next()
            .unwrap()
            .to_owned();
        vec![
            self.machine_id.clone(),
            self.organization_id.clone(),
            self.organization_key.clone(),
            self.event_id.clone(),
            self.webhook_id.clone(),
            tool_event_id,
        ]
    }
}

/// An identifier of the same shape that names nothing: its last character changed.
fn ghost(id: &str) -> String {
    let mut ghost: String = id.chars().take(id.chars().count() - 1).collect();
    ghost.push(if id.ends_with('0') { '1' } else { '0' });
    ghost
}

/// What A's key reads of A's objects: compared before and after the sweep.
async fn a_as_seen_by_a(app: &TestApp, key: &str, objects: &Objects) -> Vec<(String, u16, Value)> {
    let mut seen = Vec::new();
    for path in [
        format!("/devices/{}", objects.machine_id),
        format!("/organizations/{}", objects.organization_id),
        format!(
            "/organizations/by-organization-id/{}",
            objects.organization_key
        ),
        format!("/events/{}", objects.event_id),
        format!("/webhooks/{}", objects.webhook_id),
        format!("/webhooks/{}/deliveries", objects.webhook_id),
        objects.log_details.clone(),
        "/organizations?limit=100".to_owned(),
        "/events?limit=100".to_owned(),
    ] {
        let (status, body) = with_key(app, key, Method::GET, &path, None).await;
        assert_eq!(status, 200, "{path}: {body}");
        seen.push((path, status, body));
    }
    seen
}

/// `(method, documented path) -> (the concrete path with A's identifiers, a valid body)` for every
/// operation of the document.
fn cases(objects: &Objects) -> Vec<(Method, &'static str, String, Option<Value>)> {
    let Objects {
        machine_id,
        organization_id,
        organization_key,
        event_id,
        webhook_id,
        log_details,
    } = objects;
    vec![
        (Method::GET, "/devices", "/devices".into(), None),
        (
            Method::GET,
            "/devices/filters",
            "/devices/filters".into(),
            None,
        ),
        (
            Method::GET,
            "/devices/{machineId}",
            format!("/devices/{machine_id}"),
            None,
        ),
        (
            Method::PATCH,
            "/devices/{machineId}",
            format!("/devices/{machine_id}"),
            Some(json!({"status": "MAINTENANCE"})),
        ),
        (
            Method::PATCH,
            "/devices/{machineId}/nickname",
            format!("/devices/{machine_id}/nickname"),
            Some(json!({"nickname": "taken over"})),
        ),
        (Method::GET, "/events", "/events".into(), None),
        (
            Method::POST,
            "/events",
            "/events".into(),
            Some(json!({"type": "ticket.opened", "data": "B's own"})),
        ),
        (
            Method::GET,
            "/events/filters",
            "/events/filters".into(),
            None,
        ),
        (
            Method::GET,
            "/events/{id}",
            format!("/events/{event_id}"),
            None,
        ),
        (
            Method::PUT,
            "/events/{id}",
            format!("/events/{event_id}"),
            Some(json!({"data": "rewritten by B"})),
        ),
        (Method::GET, "/logs", "/logs".into(), None),
        (Method::GET, "/logs/details", log_details.clone(), None),
        (Method::GET, "/logs/filters", "/logs/filters".into(), None),
        (Method::GET, "/me", "/me".into(), None),
        (Method::GET, "/organizations", "/organizations".into(), None),
        (
            Method::POST,
            "/organizations",
            "/organizations".into(),
            Some(json!({"name": "Isolation Clinic A"})),
        ),
        (
            Method::GET,
            "/organizations/by-organization-id/{organizationId}",
            format!("/organizations/by-organization-id/{organization_key}"),
            None,
        ),
        (
            Method::GET,
            "/organizations/{id}",
            format!("/organizations/{organization_id}"),
            None,
        ),
        (
            Method::PUT,
            "/organizations/{id}",
            format!("/organizations/{organization_id}"),
            Some(json!({"name": "Renamed by B"})),
        ),
        (
            Method::GET,
            "/organizations/{id}/can-archive",
            format!("/organizations/{organization_id}/can-archive"),
            None,
        ),
        (
            Method::PATCH,
            "/organizations/{id}/status",
            format!("/organizations/{organization_id}/status"),
            Some(json!({"status": "ARCHIVED"})),
        ),
        (Method::GET, "/tools", "/tools".into(), None),
        (Method::GET, "/tools/filters", "/tools/filters".into(), None),
        (Method::GET, "/webhooks", "/webhooks".into(), None),
        (
            Method::POST,
            "/webhooks",
            "/webhooks".into(),
            Some(json!({"url": "https://10.20.30.41/b-hook", "eventTypes": ["LOGIN"]})),
        ),
        (
            Method::DELETE,
            "/webhooks/{id}",
            format!("/webhooks/{webhook_id}"),
            None,
        ),
        (
            Method::GET,
            "/webhooks/{id}",
            format!("/webhooks/{webhook_id}"),
            None,
        ),
        (
            Method::PATCH,
            "/webhooks/{id}",
            format!("/webhooks/{webhook_id}"),
            Some(json!({"enabled": false})),
        ),
        (
            Method::GET,
            "/webhooks/{id}/deliveries",
            format!("/webhooks/{webhook_id}/deliveries"),
            None,
        ),
        (
            Method::POST,
            "/webhooks/{id}/rotate-secret",
            format!("/webhooks/{webhook_id}/rotate-secret"),
            None,
        ),
        (
            Method::POST,
            "/webhooks/{id}/test",
            format!("/webhooks/{webhook_id}/test"),
            None,
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_bs_key_with_every_scope_reaches_nothing_of_tenant_a_through_any_operation() {
    let dir = tempfile::TempDir::new().unwrap();
    let mut config = test_config(&dir.path().join("data"));
    // A's webhook points at a private address it is never called at.
    config.webhooks.allow_private_targets = true;
    let app = spawn_with(config).await;
    let tenants = two_tenants(&app).await;
    let key_a = key_with_every_scope(&app, &tenants.admin_a, "a").await;
    let key_b = key_with_every_scope(&app, &tenants.admin_b, "b").await;
    let objects = seed_a(&app, &key_a, &tenants.admin_a).await;
    let before = a_as_seen_by_a(&app, &key_a, &objects).await;

    let document = crate::external::api_document(&app).await;
    let documented: BTreeSet<(String, String)> = document["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object().unwrap().keys().map(move |method| {
                (
                    method.to_uppercase(),
                    path.strip_prefix(V1).unwrap().to_owned(),
                )
            })
        })
        .collect();
    let cases = cases(&objects);
    let covered: BTreeSet<(String, String)> = cases
        .iter()
        .map(|(method, path, _, _)| (method.to_string(), (*path).to_owned()))
        .collect();
    assert_eq!(
        covered, documented,
        "every documented operation needs an isolation case"
    );

    let identifiers = objects.identifiers();
    let forbidden: Vec<&str> = A_MARKERS
        .iter()
        .copied()
        .chain(identifiers.iter().map(String::as_str))
        .collect();
    for (method, documented_path, path, body) in cases {
        let named = documented_path.contains('{') || documented_path == "/logs/details";
        let (status, answer) = with_key(&app, &key_b, method.clone(), &path, body.clone()).await;
        if named {
            // Exactly what an object that never existed gets, its identifier aside.
            let mut ghost_path = path.clone();
            let mut answer_text = answer.to_string();
            for id in &identifiers {
                ghost_path = ghost_path.replace(id.as_str(), &ghost(id));
                answer_text = answer_text.replace(id.as_str(), &ghost(id));
            }
            let (ghost_status, ghost_answer) =
                with_key(&app, &key_b, method.clone(), &ghost_path, body).await;
            assert_eq!(
                (status, answer["code"].as_str()),
                (404, Some("not_found")),
                "{method} {path}: {answer}"
            );
            assert_eq!(
                (status, answer_text),
                (ghost_status, ghost_answer.to_string()),
                "{method} {path} must answer as {ghost_path} does"
            );
            continue;
        }
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {answer}"
        );
        // A create answers with B's own object, named as B asked (even as A's is named).
        if method == Method::POST {
            continue;
        }
        let text = answer.to_string();
        for marker in &forbidden {
            assert!(
                !text.contains(marker),
                "{method} {path} shows {marker:?}: {text}"
            );
        }
    }
    // B's /me names B.
    let (_, me) = with_key(&app, &key_b, Method::GET, "/me", None).await;
    assert_eq!(me["tenantId"], "globex", "{me}");

    let after = a_as_seen_by_a(&app, &key_a, &objects).await;
    assert_eq!(after, before, "A's objects are as they were");
}
