//! The audit trail: REST and GraphQL changes recorded with actor, target, before and after;
//! paged and filtered in REST and GraphQL; exported as NDJSON; forwarded to a real UDP syslog
//! socket as RFC 5424; and per tenant.

use reqwest::Method;
use serde_json::{Value, json};

use super::call;
use crate::gateway::support::two_tenants;
use crate::graphql::support::{data, machine, put_machine};
use crate::helpers::{spawn_app, spawn_with, test_config};

#[tokio::test]
async fn every_change_is_recorded_paged_exported_and_kept_per_tenant() {
    let app = spawn_app().await;
    let tenants = two_tenants(&app).await;
    let token = &tenants.admin_a;
    put_machine(&app, "acme", machine("m-1", "desk-1", "ONLINE", "org-1")).await;

    let (_, created) = call(
        &app,
        token,
        Method::POST,
        "/api/organizations",
        Some(json!({"name": "Clinic"})),
    )
    .await;
    let org = created["organizationId"].as_str().unwrap().to_owned();
    call(
        &app,
        token,
        Method::PATCH,
        "/api/devices/m-1",
        Some(json!({"status": "MAINTENANCE"})),
    )
    .await;
    data(
        &app,
        token,
        "mutation { updateDeviceNickname(machineId: \"m-1\", nickname: \"front desk\") { id } }",
        json!({}),
    )
    .await;
    data(
        &app,
        token,
        "mutation { createTag(key: \"site\", entityType: \"DEVICE\") { id } }",
        json!({}),
    )
    .await;
    // A refused change is not a change.
    let (status, _) = call(
        &app,
        token,
        Method::PATCH,
        "/api/devices/m-1",
        Some(json!({"status": "NOPE"})),
    )
    .await;
    assert_eq!(status, 400);
    // Reads are not recorded.
    call(&app, token, Method::GET, "/api/users", None).await;

    let (status, trail) = call(&app, token, Method::GET, "/api/audit", None).await;
    assert_eq!(status, 200, "{trail}");
    let items = trail["items"].as_array().unwrap();
    let actions: Vec<&str> = items
        .iter()
        .map(|item| item["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "createTag",
            "updateDeviceNickname",
            "PATCH /api/devices/{machine_id}",
            "POST /api/organizations",
        ],
        "newest first"
    );
    let status_change = &items[2];
    assert_eq!(status_change["actorEmail"], "owner@acme.example.com");
    assert_eq!(status_change["targetType"], "Machine");
    assert_eq!(status_change["targetId"], "m-1");
    assert_eq!(status_change["before"], json!({"status": "ONLINE"}));
    assert_eq!(status_change["after"], json!({"status": "MAINTENANCE"}));
    assert_eq!(items[1]["after"], json!({"nickname": "front desk"}));
    assert_eq!(items[3]["targetId"], org.as_str());
    assert_eq!(items[3]["after"]["name"], "Clinic");

    // Paged two at a time, and filtered.
    let (_, page) = call(&app, token, Method::GET, "/api/audit?limit=2", None).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let cursor = page["nextCursor"].as_str().unwrap();
    let (_, rest) = call(
        &app,
        token,
        Method::GET,
        &format!("/api/audit?limit=2&cursor={cursor}"),
        None,
    )
    .await;
    let rest_actions: Vec<&str> = rest["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        rest_actions,
        ["PATCH /api/devices/{machine_id}", "POST /api/organizations"]
    );
    let (_, machines) = call(
        &app,
        token,
        Method::GET,
        "/api/audit?targetType=Machine&targetId=m-1",
        None,
    )
    .await;
    assert_eq!(machines["items"].as_array().unwrap().len(), 2);
    assert_eq!(machines["nextCursor"], Value::Null);
    for query in ["limit=0", "limit=501", "cursor=zzz", "colour=red"] {
        let (status, body) = call(
            &app,
            token,
            Method::GET,
            &format!("/api/audit?{query}"),
            None,
        )
        .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("invalid_input")),
            "{query}: {body}"
        );
    }

    // The same in GraphQL.
    let answer = data(
        &app,
        token,
        "{ auditEvents(first: 3, filter: {actorId: null}) { edges { node { action targetType before after } } pageInfo { hasNextPage endCursor } } }",
        json!({}),
    )
    .await;
    assert_eq!(answer["auditEvents"]["edges"].as_array().unwrap().len(), 3);
    assert_eq!(answer["auditEvents"]["pageInfo"]["hasNextPage"], true);
    let after = answer["auditEvents"]["pageInfo"]["endCursor"].clone();
    let next = data(
        &app,
        token,
        "query($after: String) { auditEvents(first: 3, after: $after) { edges { node { action } } } }",
        json!({"after": after}),
    )
    .await;
    assert_eq!(
        next["auditEvents"]["edges"],
        json!([{"node": {"action": "POST /api/organizations"}}])
    );

    // The NDJSON export holds every record, one per line.
    let response = app
        .client
        .get(app.https_url("/api/audit/export"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let text = response.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0]["action"], "createTag");

    // The other tenant's trail holds none of it.
    let (_, theirs) = call(&app, &tenants.admin_b, Method::GET, "/api/audit", None).await;
    assert_eq!(theirs["items"], json!([]));
    let theirs = app
        .client
        .get(app.https_url("/api/audit/export"))
        .bearer_auth(&tenants.admin_b)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(theirs, "");
}

/// The next message the collector receives, within 10 s.
async fn next_datagram(collector: &tokio::net::UdpSocket) -> String {
    let mut buffer = vec![0u8; 65_536];
    let (length, _) = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        collector.recv_from(&mut buffer),
    )
    .await
    .expect("a syslog datagram arrives")
    .unwrap();
    String::from_utf8(buffer[..length].to_vec()).unwrap()
}

#[tokio::test]
async fn records_are_forwarded_to_syslog_as_rfc_5424() {
    let collector = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let dir = tempfile::TempDir::new().unwrap();
    let mut config = test_config(&dir.path().join("data"));
    config.audit.syslog = format!("udp://{}", collector.local_addr().unwrap());
    let app = spawn_with(config).await;
    let tenants = two_tenants(&app).await;
    call(
        &app,
        &tenants.admin_a,
        Method::POST,
        "/api/organizations",
        Some(json!({"name": "Syslog \"Clinic\""})),
    )
    .await;

    let message = next_datagram(&collector).await;
    let message = message.as_str();
    assert!(message.starts_with("<109>1 "), "{message}");
    assert!(
        message.contains(" openframe - audit [audit@32473 tenant=\"acme\" actor=\"owner@acme.example.com\" action=\"POST /api/organizations\" targetType=\"Organization\""),
        "{message}"
    );
    let json = &message[message.find("] {").unwrap() + 2..];
    let record: Value = serde_json::from_str(json).unwrap();
    assert_eq!(record["after"]["name"], "Syslog \"Clinic\"");
}

#[tokio::test]
async fn security_events_go_to_the_same_collector_as_authpriv_warnings() {
    let collector = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let dir = tempfile::TempDir::new().unwrap();
    let mut config = test_config(&dir.path().join("data"));
    config.audit.syslog = format!("udp://{}", collector.local_addr().unwrap());
    let app = spawn_with(config).await;
    let refused = app
        .client
        .get(app.https_url("/external-api/api/v1/me"))
        .header(
            "x-api-key",
            "ak_0000000000000000.sk_00000000000000000000000000000000",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);

    let message = next_datagram(&collector).await;
    let message = message.as_str();
    assert!(message.starts_with("<84>1 "), "{message}");
    assert!(
        message.ends_with(" openframe - api_key_rejected [security@32473 event=\"api_key_rejected\" reason=\"the API key is not valid\"] security event api_key_rejected"),
        "{message}"
    );
}

#[tokio::test]
async fn a_bad_syslog_target_stops_the_start_with_a_clear_message() {
    let dir = tempfile::TempDir::new().unwrap();
    let mut config = test_config(&dir.path().join("data"));
    config.audit.syslog = "syslog.example:514".into();
    let refused = config.validate().unwrap_err();
    assert_eq!(refused.source_name, "setting audit.syslog");
    assert!(
        refused.message.contains("udp://host:port"),
        "{}",
        refused.message
    );
}
