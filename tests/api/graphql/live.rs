//! Live logs over WebSocket (graphql-transport-ws, spoken by hand here; the independent client
//! test speaks it through graphql-python's gql): per tenant, filtered, and refused clearly
//! without a protocol or a token.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{self, Message};

use crate::gateway::support::{tls_connect, two_tenants};
use crate::helpers::TestApp;
use crate::helpers::spawn_app;
use crate::stream::support::{fixture, ingest, ingest_key, seed_inventory};

pub(crate) type Socket =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

pub(crate) async fn connect(
    app: &TestApp,
    token: Option<&str>,
    protocol: Option<&str>,
) -> Result<Socket, tungstenite::Error> {
    use tungstenite::client::IntoClientRequest;
    let url = format!("wss://localhost:{}/api/graphql", app.https_addr.port());
    let mut request = url.into_client_request().unwrap();
    if let Some(token) = token {
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    if let Some(protocol) = protocol {
        request
            .headers_mut()
            .insert("sec-websocket-protocol", protocol.parse().unwrap());
    }
    tokio_tungstenite::client_async(request, tls_connect(app).await)
        .await
        .map(|(socket, _)| socket)
}

pub(crate) async fn send(socket: &mut Socket, message: Value) {
    socket
        .send(Message::text(message.to_string()))
        .await
        .unwrap();
}

/// The next protocol message (pings answered), or `None` after `wait`.
pub(crate) async fn next(socket: &mut Socket, wait: Duration) -> Option<Value> {
    loop {
        let message = tokio::time::timeout(wait, socket.next())
            .await
            .ok()??
            .ok()?;
        match message {
            Message::Text(text) => {
                let value: Value = serde_json::from_str(text.as_str()).unwrap();
                if value["type"] == "ping" {
                    send(socket, json!({"type": "pong"})).await;
                    continue;
                }
                return Some(value);
            }
            Message::Close(frame) => {
                return Some(json!({"type": "closed", "frame": frame.map(|f| f.code.to_string())}));
            }
            _ => {}
        }
    }
}

/// A socket with one `logStream` subscription (id "1") of `filter`.
async fn subscribe(app: &TestApp, token: &str, filter: Value) -> Socket {
    let mut socket = connect(app, Some(token), Some("graphql-transport-ws"))
        .await
        .unwrap();
    send(&mut socket, json!({"type": "connection_init"})).await;
    let ack = next(&mut socket, Duration::from_secs(5)).await.unwrap();
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    send(
        &mut socket,
        json!({"id": "1", "type": "subscribe", "payload": {
            "query": "subscription($filter: LogStreamFilter) { logStream(filter: $filter) { toolEventId toolType hostname organizationId } }",
            "variables": {"filter": filter},
        }}),
    )
    .await;
    socket
}

#[tokio::test]
async fn live_logs_reach_their_tenant_only_and_follow_the_filter() {
    let app = spawn_app().await;
    let tenants = two_tenants(&app).await;
    seed_inventory(&app, "acme").await;
    let key = ingest_key(&app, &tenants.admin_a).await;

    let mut theirs = subscribe(&app, &tenants.admin_b, json!(null)).await;
    let mut fleet_only =
        subscribe(&app, &tenants.admin_a, json!({"toolTypes": ["FLEET_MDM"]})).await;
    let mut mine = subscribe(
        &app,
        &tenants.admin_a,
        json!({"organizationIds": ["org-acme"]}),
    )
    .await;

    // Feed until this tenant's subscription has an entry (whenever the server started it),
    // then once more, so the others have had every chance to receive something.
    let mut received = None;
    for _ in 0..20 {
        let (status, _) = ingest(
            &app,
            &key,
            "MESHCENTRAL_EVENT",
            fixture("meshcentral-events.ndjson"),
        )
        .await;
        assert_eq!(status, 200);
        if let Some(message) = next(&mut mine, Duration::from_secs(2)).await {
            received = Some(message);
            break;
        }
    }
    let received = received.expect("the tenant's own subscription receives its logs");
    assert_eq!(received["type"], "next", "{received}");
    assert_eq!(received["id"], "1");
    let entry = &received["payload"]["data"]["logStream"];
    assert_eq!(entry["toolType"], "MESHCENTRAL");
    assert_eq!(entry["organizationId"], "org-acme");
    ingest(
        &app,
        &key,
        "MESHCENTRAL_EVENT",
        fixture("meshcentral-events.ndjson"),
    )
    .await;
    assert!(next(&mut mine, Duration::from_secs(5)).await.is_some());

    assert_eq!(
        next(&mut theirs, Duration::from_millis(500)).await,
        None,
        "another tenant's subscription receives nothing"
    );
    assert_eq!(
        next(&mut fleet_only, Duration::from_millis(200)).await,
        None,
        "a filter on another tool receives nothing"
    );
}

#[tokio::test]
async fn sockets_without_a_protocol_or_a_token_and_bad_filters_are_refused_clearly() {
    let app = spawn_app().await;
    let tenants = two_tenants(&app).await;

    match connect(&app, Some(&tenants.admin_a), None).await {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 400);
            let body: Value = serde_json::from_slice(response.body().as_deref().unwrap()).unwrap();
            assert_eq!(body["code"], "invalid_input");
            assert!(
                body["message"]
                    .as_str()
                    .unwrap()
                    .contains("graphql-transport-ws"),
                "{body}"
            );
        }
        other => panic!("expected a 400, got {other:?}"),
    }
    match connect(&app, None, Some("graphql-transport-ws")).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!("expected a 401, got {other:?}"),
    }

    let too_many: Vec<String> = (0..101).map(|i| format!("T{i}")).collect();
    let mut socket = subscribe(&app, &tenants.admin_a, json!({"eventTypes": too_many})).await;
    let refused = next(&mut socket, Duration::from_secs(5)).await.unwrap();
    // An execution error: a result with `errors` and no data (graphql-transport-ws `next`).
    assert_eq!(refused["type"], "next", "{refused}");
    assert_eq!(refused["payload"]["data"], Value::Null);
    let error = &refused["payload"]["errors"][0];
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .starts_with("filter.eventTypes:"),
        "{error}"
    );
    assert_eq!(error["extensions"]["code"], "invalid_input");
}
