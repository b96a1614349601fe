//! Tool agents with a real `nats-server`: the seeded definitions, an edit with a sealed
//! server-side secret, the install a new machine gets over JetStream (its placeholder filled
//! in), a reinstall that disconnects the machine's tools and queues a reinstall, uninstall and
//! update pushes, bad input, and the other tenant.

use std::sync::Arc;

use openframe::inventory::ToolConnection;
use openframe_storage::model::SystemClock;
use reqwest::Method;
use serde_json::{Value, json};

use super::support::{enroll, registration, registration_secret};
use crate::gateway::support::{tenant, two_tenants};
use crate::helpers::{TestApp, spawn_with_clock, test_config, with_nats};
use crate::rest::call;
use crate::stream::support::ready_with_nats_up;

const ENROLL_SECRET: &str = "fleet-enroll-s3cret";

/// The last message JetStream stored on `subject` in `stream`.
async fn stored(app: &TestApp, stream: &str, subject: &str) -> Value {
    let client = app.state.management.client.get().unwrap().clone();
    let jetstream = async_nats::jetstream::new(client);
    let message = jetstream
        .get_stream(stream)
        .await
        .unwrap()
        .get_last_raw_message_by_subject(subject)
        .await
        .unwrap_or_else(|error| panic!("nothing stored on {subject}: {error}"));
    serde_json::from_slice(&message.payload).unwrap()
}

#[tokio::test]
async fn new_machines_get_their_tenants_tool_agents_over_jetstream_and_reinstalls_disconnect_tools()
{
    let dir = tempfile::TempDir::new().unwrap();
    let mut app = spawn_with_clock(
        with_nats(test_config(&dir.path().join("data"))),
        Arc::new(SystemClock),
    )
    .await;
    ready_with_nats_up(&app).await;
    let tenants = two_tenants(&app).await;
    let admin = tenants.admin_a.clone();
    let key = registration_secret(&app, "acme", &admin).await;

    // The seeds: OpenFrame's two definitions, no secret yet.
    let (status, listed) = call(&app, &admin, Method::GET, "/api/tool-agents", None).await;
    assert_eq!(status, 200, "{listed}");
    let ids: Vec<&str> = listed["toolAgents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|agent| agent["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["fleetmdm-agent", "meshcentral-agent"]);
    let fleet = listed["toolAgents"][0].clone();
    assert_eq!(fleet["hasRegistrationSecret"], false);
    assert!(
        fleet["runCommandArgs"]
            .to_string()
            .contains("${server.registrationSecret}")
    );

    // Edited: a Linux download with its checksum, and the enroll secret (sealed, never shown).
    let mut edited = fleet.clone();
    let object = edited.as_object_mut().unwrap();
    for field in ["id", "hasRegistrationSecret", "updatedAt"] {
        object.remove(field);
    }
    edited["version"] = json!("1.2.0");
    edited["downloadConfigurations"]
        .as_array_mut()
        .unwrap()
        .push(json!({"os": "LINUX", "linkTemplate": "https://downloads.example/orbit-{version}-linux.tar.gz",
                     "fileName": "orbit-linux.tar.gz", "targetFileName": "orbit", "installationType": "SERVICE",
                     "sha256": "a".repeat(64)}));
    edited["registrationSecret"] = json!(ENROLL_SECRET);
    let path = "/api/tool-agents/fleetmdm-agent";
    for (patch, field) in [
        (json!({"version": "1 0"}), "version"),
        (json!({"sessionType": "DAEMON"}), "sessionType"),
        (
            json!({"downloadConfigurations": [{"os": "LINUX", "linkTemplate": "ftp://x/{version}", "fileName": "x"}]}),
            "linkTemplate",
        ),
        (
            json!({"downloadConfigurations": [{"os": "LINUX", "linkTemplate": "https://x/{version}", "fileName": "x", "sha256": "abc"}]}),
            "sha256",
        ),
    ] {
        let mut bad = edited.clone();
        for (key, value) in patch.as_object().unwrap() {
            bad[key] = value.clone();
        }
        let (status, error) = call(&app, &admin, Method::PUT, path, Some(bad)).await;
        assert_eq!(status, 400, "{patch}: {error}");
        assert!(
            error["message"].as_str().unwrap().contains(field),
            "{patch}: {error}"
        );
    }
    let (status, saved) = call(&app, &admin, Method::PUT, path, Some(edited)).await;
    assert_eq!(status, 200, "{saved}");
    assert_eq!(saved["hasRegistrationSecret"], true);
    assert_eq!(saved["version"], "1.2.0");
    assert!(!saved.to_string().contains(ENROLL_SECRET), "{saved}");

    // A machine registered while the tenant has Fleet (and no MeshCentral) gets Fleet's agent.
    let (status, tool) = call(
        &app,
        &admin,
        Method::PUT,
        "/api/tools/fleetmdm-server",
        Some(
            json!({"name": "Fleet", "toolType": "FLEET_MDM", "apiUrl": "http://127.0.0.1:9",
                    "allowedPaths": ["/api"], "healthCheckSeconds": 0,
                    "credential": {"kind": "BEARER_TOKEN", "secret": "t0ken"}}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{tool}");
    let machine = enroll(&app, &key, "tools-01").await;
    let id = &machine.machine_id;
    let install = stored(
        &app,
        "TOOL_INSTALLATION",
        &format!("machine.{id}.tool-installation"),
    )
    .await;
    assert_eq!(install["toolAgentId"], "fleetmdm-agent");
    assert_eq!(install["toolId"], "fleetmdm-server");
    assert_eq!(install["version"], "1.2.0");
    assert_eq!(install["reinstall"], false);
    let args: Vec<&str> = install["runCommandArgs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|arg| arg.as_str().unwrap())
        .collect();
    assert!(
        args.contains(&ENROLL_SECRET),
        "the server filled in its placeholder: {args:?}"
    );
    assert!(
        args.contains(&"${client.openframeSecret}"),
        "the agent fills in its own: {args:?}"
    );
    let linux = install["downloadConfigurations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|download| download["os"] == "LINUX")
        .unwrap();
    assert_eq!(
        linux["link"],
        "https://downloads.example/orbit-1.2.0-linux.tar.gz"
    );
    assert_eq!(linux["sha256"], "a".repeat(64));

    // Reinstalled: its tool connections turn DISCONNECTED and the agent is queued again.
    app.state
        .inventory
        .connect_tool(
            &tenant("acme"),
            ToolConnection {
                machine_id: id.clone(),
                tool_type: "FLEET_MDM".into(),
                agent_tool_id: "42".into(),
                status: "CONNECTED".into(),
                connected_at: 1,
            },
        )
        .await
        .unwrap();
    let response = app
        .client
        .post(app.https_url("/clients/api/agents/reinstall"))
        .header("X-Initial-Key", &key)
        .header("X-Machine-Id", id)
        .header("X-Client-Secret", &machine.client_secret)
        .json(&registration("tools-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let connections = app
        .state
        .inventory
        .tool_connections(&tenant("acme"), id)
        .await
        .unwrap();
    assert_eq!(connections.len(), 1);
    assert_eq!(connections[0].status, "DISCONNECTED");
    let again = stored(
        &app,
        "TOOL_INSTALLATION",
        &format!("machine.{id}.tool-installation"),
    )
    .await;
    assert_eq!(again["reinstall"], true);

    // Uninstall and update, pushed on demand.
    let (status, answer) = call(
        &app,
        &admin,
        Method::POST,
        "/api/tool-agents/fleetmdm-agent/uninstall",
        Some(json!({"machineIds": [id]})),
    )
    .await;
    assert_eq!((status, answer), (202, json!({"published": 1})));
    let removal = stored(
        &app,
        "TOOL_INSTALLATION",
        &format!("machine.{id}.tool-uninstall"),
    )
    .await;
    assert_eq!(removal["toolAgentId"], "fleetmdm-agent");
    let (status, answer) = call(
        &app,
        &admin,
        Method::POST,
        "/api/tool-agents/fleetmdm-agent/update",
        None,
    )
    .await;
    assert_eq!((status, answer), (202, json!({"published": 1})));
    let update = stored(
        &app,
        "TOOL_UPDATE",
        &format!("machine.{id}.tool.fleetmdm-agent.update"),
    )
    .await;
    assert_eq!(update["version"], "1.2.0");
    assert_eq!(update["toolAgentId"], "fleetmdm-agent");

    // The other tenant: its own seeds, no secret of ours, and our machine is not its to touch.
    let other = &tenants.admin_b;
    let (_, theirs) = call(&app, other, Method::GET, path, None).await;
    assert_eq!(theirs["hasRegistrationSecret"], false);
    assert_eq!(theirs["version"], "1.0.0");
    let (status, error) = call(
        &app,
        other,
        Method::POST,
        "/api/tool-agents/fleetmdm-agent/install",
        Some(json!({"machineIds": [id]})),
    )
    .await;
    assert_eq!(status, 400, "{error}");
    assert!(
        error["message"].as_str().unwrap().starts_with("machineIds"),
        "{error}"
    );
    // Our enroll secret is ours: its Fleet agent cannot be pushed until it sets its own.
    let (status, error) = call(
        &app,
        other,
        Method::POST,
        "/api/tool-agents/fleetmdm-agent/update",
        None,
    )
    .await;
    assert_eq!(status, 409, "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("registrationSecret"),
        "{error}"
    );
    // An install names its machines; a disabled agent is not installed.
    let (status, _) = call(
        &app,
        &admin,
        Method::POST,
        "/api/tool-agents/meshcentral-agent/install",
        Some(json!({"machineIds": []})),
    )
    .await;
    assert_eq!(status, 400);
    let mut disabled = fleet.clone();
    let object = disabled.as_object_mut().unwrap();
    for field in ["id", "hasRegistrationSecret", "updatedAt"] {
        object.remove(field);
    }
    disabled["status"] = json!("DISABLED");
    let (status, _) = call(
        &app,
        &admin,
        Method::PUT,
        "/api/tool-agents/meshcentral-agent",
        Some(disabled),
    )
    .await;
    assert_eq!(status, 200);
    let (status, error) = call(
        &app,
        &admin,
        Method::POST,
        "/api/tool-agents/meshcentral-agent/install",
        Some(json!({"machineIds": [id]})),
    )
    .await;
    assert_eq!(status, 409, "{error}");
    let last = stored(
        &app,
        "TOOL_INSTALLATION",
        &format!("machine.{id}.tool-installation"),
    )
    .await;
    assert_eq!(
        (last["toolAgentId"].clone(), last["reinstall"].clone()),
        (json!("fleetmdm-agent"), json!(true)),
        "MeshCentral's agent was never queued: the tenant has no MeshCentral, and it is disabled"
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn tool_assets_are_served_from_the_data_dir_by_os_and_nothing_else_is() {
    let app = crate::helpers::spawn_app().await;
    let root = app.state.config.storage.data_dir.join("tool-assets");
    std::fs::create_dir_all(root.join("WINDOWS")).unwrap();
    std::fs::write(root.join("osqueryd"), b"osqueryd for any system").unwrap();
    std::fs::write(root.join("WINDOWS").join("osqueryd"), b"osqueryd.exe").unwrap();
    std::fs::write(
        app.state.config.storage.data_dir.join("secret.txt"),
        b"not an asset",
    )
    .unwrap();
    let get = |path: &str| {
        let request = app.client.get(app.https_url(path));
        async move { request.send().await.unwrap() }
    };

    // No token needed, as OpenFrame's; the machine's OS picks its build, falling back to the
    // generic one.
    for (path, expected) in [
        ("/clients/tool-agent/osqueryd", "osqueryd for any system"),
        ("/clients/tool-agent/osqueryd?os=WINDOWS", "osqueryd.exe"),
        (
            "/clients/tool-agent/osqueryd?os=linux",
            "osqueryd for any system",
        ),
    ] {
        let response = get(path).await;
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(
            response.headers()["content-type"],
            "application/octet-stream"
        );
        assert_eq!(
            response.headers()["content-length"],
            expected.len().to_string().as_str()
        );
        assert_eq!(response.text().await.unwrap(), expected, "{path}");
    }
    let missing = get("/clients/tool-agent/meshagent").await;
    assert_eq!(missing.status(), 404);
    assert!(missing.text().await.unwrap().contains("tool-assets"));
    for path in [
        "/clients/tool-agent/osqueryd?os=BEOS",
        "/clients/tool-agent/.hidden",
        "/clients/tool-agent/secret.txt%00",
    ] {
        let response = get(path).await;
        assert_eq!(response.status(), 400, "{path}");
    }
    // Nothing outside the folder is reachable, however the path is spelled.
    for path in [
        "/clients/tool-agent/..%2Fsecret.txt",
        "/clients/tool-agent/../secret.txt",
        "/clients/tool-agent/%2e%2e/secret.txt",
    ] {
        let response = get(path).await;
        assert!(
            response.status().is_client_error(),
            "{path}: {}",
            response.status()
        );
        assert!(
            !response.text().await.unwrap().contains("not an asset"),
            "{path}"
        );
    }
}
