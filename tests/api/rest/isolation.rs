//! Tenant isolation, swept over every technician REST route the source declares: tenant B's
//! owner is tried on tenant A's objects through each of them. A route that names an object (in
//! its path or its body) answers B exactly as it answers for an id that never existed, of the same
//! shape; every other route shows B nothing of A's; A's objects are unchanged afterwards. The
//! routes are read from the `.route("/api/…")` declarations in `src/`, so a route added without a
//! case here fails the test. (GraphQL has its own sweep in `graphql::isolation`.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use reqwest::Method;
use serde_json::{Value, json};

use super::call;
use crate::gateway::support::{create_key, two_tenants};
use crate::graphql::support::{machine, put_machine};
use crate::helpers::{spawn_with, test_config, with_nats};
use crate::identity::support::PASSWORD;
use crate::stream::support::ready_with_nats_up;

/// `(METHOD, path)` of every `.route("/api/…", …)` in `src/`, GraphQL's excepted.
fn declared_routes() -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    let mut pending = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                routes.extend(routes_in(&std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    routes
}

/// The `.route(path, method(handler).method(handler)…)` calls of one source file.
fn routes_in(source: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for (at, _) in source.match_indices(".route(") {
        let call = &source[at + ".route(".len()..];
        // The call's arguments: up to the parenthesis that closes `.route(`.
        let mut depth = 1;
        let end = call
            .char_indices()
            .find_map(|(i, c)| {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                (depth == 0).then_some(i)
            })
            .unwrap();
        let arguments = &call[..end];
        let Some(path) = arguments.split('"').nth(1) else {
            continue;
        };
        if !path.starts_with("/api/") || path.starts_with("/api/graphql") {
            continue;
        }
        let handlers = &arguments[arguments.find(',').unwrap()..];
        for method in ["get", "post", "put", "patch", "delete"] {
            let called = handlers.match_indices(&format!("{method}(")).any(|(i, _)| {
                !handlers[..i]
                    .chars()
                    .next_back()
                    .is_some_and(|c| c.is_alphanumeric() || c == '_')
            });
            if called {
                found.push((method.to_uppercase(), path.to_owned()));
            }
        }
    }
    found
}

/// The same shape with other characters: digits and the letters a–f move within their range,
/// the rest stays (prefixes, dashes), so the id looks like one the route could have made but names
/// nothing.
fn never_existed(id: &str) -> String {
    id.chars()
        .map(|c| match c {
            '0'..='9' => char::from(b'0' + (c as u8 - b'0' + 7) % 10),
            'a'..='f' => char::from(b'a' + (c as u8 - b'a' + 3) % 6),
            'A'..='F' => char::from(b'A' + (c as u8 - b'A' + 3) % 6),
            other => other,
        })
        .collect()
}

/// A tool agent of the catalogue, which every tenant has.
const TOOL_AGENT: &str = "meshcentral-agent";

/// Tenant A's objects, by the path placeholder that names them.
struct Objects {
    ids: BTreeMap<&'static str, String>,
    /// Texts only A's objects contain.
    markers: Vec<String>,
}

/// What B's request is, for a route: the path with its placeholder filled and the body.
fn request(path: &str, id: &str, machine_id: &str) -> (String, Option<Value>) {
    let id = if path.starts_with("/api/tool-agents/{id}/") {
        TOOL_AGENT
    } else {
        id
    };
    let filled = path
        .split('/')
        .map(|part| if part.starts_with('{') { id } else { part })
        .collect::<Vec<_>>()
        .join("/");
    let body = match path {
        "/api/users/{id}" => json!({"firstName": "B", "lastName": "Was Here", "roles": ["ADMIN"]}),
        "/api/users/{id}/transfer-ownership" => json!({}),
        "/api/organizations/{id}" => json!({"name": "Renamed by B"}),
        "/api/organizations/{id}/status" => json!({"status": "ARCHIVED"}),
        "/api/devices/{machine_id}" => json!({"status": "ARCHIVED"}),
        "/api/api-keys/{key_id}" => json!({"name": "Renamed by B", "enabled": false}),
        "/api/scripts/{id}" => json!({"name": "Renamed by B", "shell": "bash",
            "scriptBody": "echo b", "supportedPlatforms": ["LINUX"], "defaultTimeoutSeconds": 60}),
        "/api/scripts/{id}/run" => json!({"machineIds": [machine_id]}),
        "/api/tool-agents/{id}/install"
        | "/api/tool-agents/{id}/uninstall"
        | "/api/tool-agents/{id}/update" => json!({"machineIds": [machine_id]}),
        // B's own provider, in B's namespace: A's must not change.
        "/api/sso/{provider}" => json!({"clientId": "b-only.apps.googleusercontent.com",
            "clientSecret": "b-only-secret", "allowedDomains": ["globex.example.com"]}),
        "/api/commands/run" => {
            json!({"machineIds": [machine_id], "command": "whoami", "shell": "bash"})
        }
        _ => Value::Null,
    };
    (filled, (!body.is_null()).then_some(body))
}

/// The placeholder of a route that names one of A's objects, or the body field that does.
fn names_an_object(path: &str) -> Option<&'static str> {
    Some(match path {
        p if p.starts_with("/api/users/{id}") => "user",
        p if p.starts_with("/api/organizations/{id}") => "organization",
        "/api/devices/{machine_id}" => "machine",
        p if p.starts_with("/api/api-keys/{key_id}") => "key",
        p if p.starts_with("/api/scripts/{id}") => "script",
        p if p.starts_with("/api/executions/{execution_id}") => "execution",
        p if p.starts_with("/api/invitations/{id}") => "invitation",
        p if p.starts_with("/api/incidents/{id}") => "incident",
        "/api/assistant/incidents/{id}/explain" => "incident",
        "/api/assistant/devices/{machine_id}/summary" => "machine",
        p if p.starts_with("/api/assistant/approvals/{id}/") => "approval",
        "/api/notifications/{id}/read" => "notification",
        // These name a machine in the body (the catalogue's tool agents are everyone's).
        "/api/commands/run" => "machine",
        p if p.starts_with("/api/tool-agents/{id}/") => "machine",
        _ => return None,
    })
}

/// Routes whose placeholder is a name in each tenant's own namespace (a provider, a tool key,
/// a catalogue entry): B reaches its own, so they must show nothing of A's.
fn in_own_namespace(path: &str) -> Option<&'static str> {
    Some(match path {
        p if p.starts_with("/api/sso/{provider}") => "google",
        p if p.starts_with("/api/tools/{id}") => "meshcentral-server",
        "/api/tool-agents/{id}" => TOOL_AGENT,
        _ => return None,
    })
}

/// Replaces `id` in an answer, so answers for two ids compare by everything else.
fn without(answer: &Value, id: &str) -> String {
    answer.to_string().replace(id, "<id>")
}

async fn seed_a(app: &crate::helpers::TestApp, token: &str) -> Objects {
    let mut ids = BTreeMap::new();
    let user = openframe::identity::admin::create_user(
        &app.state.identity,
        "acme",
        "isolated.tech@acme.example.com",
        PASSWORD,
        "ADMIN",
    )
    .await
    .unwrap();
    ids.insert("user", user.id);
    let (status, organization) = call(
        app,
        token,
        Method::POST,
        "/api/organizations",
        Some(json!({"name": "Isolation Clinic A"})),
    )
    .await;
    assert_eq!(status, 201, "{organization}");
    let organization_id = organization["organizationId"].as_str().unwrap().to_owned();
    ids.insert("organization", organization_id.clone());
    put_machine(
        app,
        "acme",
        machine(
            "3f6c1c9e-aaaa-4000-8000-00000000000a",
            "isolated-host-a",
            "ONLINE",
            &organization_id,
        ),
    )
    .await;
    ids.insert("machine", "3f6c1c9e-aaaa-4000-8000-00000000000a".to_owned());
    let (key_id, _, _) = create_key(app, token, json!({"name": "isolation key of A"})).await;
    ids.insert("key", key_id);
    let (status, script) = call(
        app,
        token,
        Method::POST,
        "/api/scripts",
        Some(json!({"name": "Isolation script A", "shell": "bash", "scriptBody": "echo tenant-a-only",
                    "supportedPlatforms": ["LINUX"], "defaultTimeoutSeconds": 60})),
    )
    .await;
    assert_eq!(status, 201, "{script}");
    let script_id = script["id"].as_str().unwrap().to_owned();
    ids.insert("script", script_id.clone());
    let (status, run) = call(
        app,
        token,
        Method::POST,
        &format!("/api/scripts/{script_id}/run"),
        Some(json!({"machineIds": [ids["machine"]]})),
    )
    .await;
    assert_eq!(status, 202, "{run}");
    ids.insert("execution", run["executionId"].as_str().unwrap().to_owned());
    let (status, invitation) = call(
        app,
        token,
        Method::POST,
        "/api/invitations",
        Some(json!({"email": "invited.a@acme.example.com"})),
    )
    .await;
    assert_eq!(status, 201, "{invitation}");
    ids.insert("invitation", invitation["id"].as_str().unwrap().to_owned());
    let (status, sso) = call(
        app,
        token,
        Method::POST,
        "/api/sso/google",
        Some(
            json!({"clientId": "a-only.apps.googleusercontent.com", "clientSecret": "a-only-secret",
                    "allowedDomains": ["acme.example.com"]}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{sso}");
    // An incident about A's machine (as detection opens one, with its notification), and a
    // script the assistant drafted, waiting for approval (with its notification).
    let incident = crate::detection::open_incident(
        app,
        "acme",
        &ids["machine"],
        Some(&organization_id),
        "Isolation wave of A",
    )
    .await;
    ids.insert("incident", incident);
    let (status, drafted) = call(
        app,
        token,
        Method::POST,
        "/api/assistant/scripts/draft",
        Some(json!({"goal": "isolation goal of A", "machineId": ids["machine"]})),
    )
    .await;
    assert_eq!(status, 201, "{drafted}");
    ids.insert(
        "approval",
        drafted["approval"]["id"].as_str().unwrap().to_owned(),
    );
    let (_, notifications) = call(app, token, Method::GET, "/api/notifications", None).await;
    ids.insert(
        "notification",
        notifications["notifications"][0]["id"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    let mut markers: Vec<String> = ids.values().cloned().collect();
    markers.extend(
        [
            "isolated.tech@acme.example.com",
            "Isolation Clinic A",
            "isolated-host-a",
            "isolation key of A",
            "Isolation script A",
            "tenant-a-only",
            "invited.a@acme.example.com",
            "a-only.apps.googleusercontent.com",
            "Isolation wave of A",
            "isolation goal of A",
            "Isolation draft of A",
        ]
        .map(str::to_owned),
    );
    Objects { ids, markers }
}

/// Everything A's owner reads of A's objects.
async fn a_view(app: &crate::helpers::TestApp, token: &str, objects: &Objects) -> Vec<String> {
    let ids = &objects.ids;
    let mut view = Vec::new();
    for path in [
        format!("/api/users/{}", ids["user"]),
        format!("/api/organizations/{}", ids["organization"]),
        format!("/api/api-keys/{}", ids["key"]),
        format!("/api/scripts/{}", ids["script"]),
        format!("/api/executions/{}", ids["execution"]),
        "/api/invitations".to_owned(),
        "/api/sso/google".to_owned(),
        "/api/users".to_owned(),
        format!("/api/tool-agents/{TOOL_AGENT}"),
        "/api/tools".to_owned(),
        format!("/api/incidents/{}", ids["incident"]),
        "/api/assistant/approvals".to_owned(),
        "/api/notifications".to_owned(),
        "/api/detection/settings".to_owned(),
        "/api/notifications/settings".to_owned(),
    ] {
        let (status, answer) = call(app, token, Method::GET, &path, None).await;
        assert_eq!(status, 200, "{path}: {answer}");
        view.push(format!("{path} {answer}"));
    }
    let machine = app
        .state
        .inventory
        .machine(&crate::gateway::support::tenant("acme"), &ids["machine"])
        .await
        .unwrap();
    view.push(format!("{machine:?}"));
    view
}

#[tokio::test]
async fn another_tenants_owner_reaches_nothing_of_this_tenant_through_any_rest_route() {
    // With NATS: running a script needs agent messaging up (the machine need not be connected).
    let dir = tempfile::TempDir::new().unwrap();
    // With the assistant on a FAKE provider (tests/api/assistant.rs), so A has a drafted script.
    let (fake, base_url) = crate::assistant::fake_provider().await;
    fake.set(crate::assistant::Mode::Answer(
        json!({"name": "Isolation draft of A", "description": "d", "shell": "BASH", "body": "echo a"})
            .to_string(),
    ));
    let mut config = with_nats(test_config(&dir.path().join("data")));
    config.assistant.enabled = true;
    config.assistant.provider = "openai".into();
    config.assistant.base_url = format!("{base_url}/v1");
    config.assistant.model = "fake".into();
    let app = spawn_with(config).await;
    ready_with_nats_up(&app).await;
    let tenants = two_tenants(&app).await;
    let (a, b) = (&tenants.admin_a, &tenants.admin_b);
    let objects = seed_a(&app, a).await;
    let before = a_view(&app, a, &objects).await;

    let routes = declared_routes();
    assert!(routes.len() >= 40, "the routes were not found: {routes:?}");
    let machine_id = &objects.ids["machine"];
    let never_machine = never_existed(machine_id);

    eprintln!("{} technician REST operations swept", routes.len());
    // Routes that name nothing first (B's audit trail will hold the ids B tries below).
    let (naming, other): (Vec<_>, Vec<_>) = routes
        .iter()
        .partition(|(_, path)| names_an_object(path).is_some());
    for (method, path) in other {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let placeholder = in_own_namespace(path).unwrap_or("");
        if path.contains('{') {
            assert!(
                !placeholder.is_empty(),
                "no case for {method} {path}: add one to this sweep"
            );
        }
        let (filled, body) = request(path, placeholder, &never_machine);
        let (_, answer) = call(&app, b, method.clone(), &filled, body).await;
        let text = answer.to_string();
        for marker in &objects.markers {
            assert!(
                !text.contains(marker.as_str()),
                "{method} {filled} shows B {marker:?} of A: {text}"
            );
        }
    }
    for (method, path) in naming {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let kind = names_an_object(path).unwrap();
        let id = &objects.ids[kind];
        let never = never_existed(id);
        let (theirs, body) = request(path, id, machine_id);
        let (status, answer) = call(&app, b, method.clone(), &theirs, body).await;
        let (unknown, body) = request(path, &never, &never_machine);
        let (never_status, never_answer) = call(&app, b, method.clone(), &unknown, body).await;
        assert_eq!(
            (status, without(&answer, id)),
            (never_status, without(&never_answer, &never)),
            "{method} {path}: B is answered differently for A's {kind} than for one that never existed"
        );
        // A route naming A's object in its path must refuse; one naming A's machine in its body
        // may answer as it does for an unknown machine (`{"published": 0}`), checked above.
        assert!(
            status >= 400 || !theirs.contains(id.as_str()),
            "{method} {theirs} succeeded for B: {answer}"
        );
    }

    assert_eq!(
        a_view(&app, a, &objects).await,
        before,
        "A's objects changed"
    );
}
