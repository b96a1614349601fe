use openframe_storage::documents::{Tenant, TenantStatus};
use openframe_storage::log::NewRecord;
use openframe_storage::model::{Offset, TenantId, Topic};
use tempfile::TempDir;

use crate::helpers::spawn_app_in;

#[tokio::test]
async fn graceful_shutdown_closes_every_store_and_a_restart_finds_the_data() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data");
    let tenant = TenantId::parse("acme").unwrap();
    let topic = Topic::parse("logs.events").unwrap();
    {
        let mut app = spawn_app_in(&data).await;
        let storage = app.state.storage.clone();
        storage
            .tenants
            .create_tenant(&Tenant {
                id: tenant.clone(),
                name: "Acme".into(),
                status: TenantStatus::Active,
                created_at: 1,
            })
            .await
            .unwrap();
        storage
            .events
            .append_batch(
                &tenant,
                &topic,
                vec![NewRecord {
                    value: b"kept".to_vec(),
                    ..NewRecord::default()
                }],
            )
            .await
            .unwrap();
        // A keep-alive connection that has finished its request must not hold shutdown up.
        let response = app.client.get(app.https_url("/")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        app.stop().await.unwrap();
        assert!(
            storage
                .health()
                .await
                .iter()
                .all(|engine| engine.problem.is_some()),
            "every store is closed"
        );
        let refused = app.client.get(app.https_url("/")).send().await;
        assert!(refused.is_err(), "no new connections after shutdown");
    }
    let mut app = spawn_app_in(&data).await;
    assert_eq!(app.ready().await.0, 200);
    let storage = &app.state.storage;
    assert_eq!(
        storage.tenants.tenant(&tenant).await.unwrap().unwrap().name,
        "Acme"
    );
    let read = storage
        .events
        .read(&tenant, &topic, Offset(0), 10)
        .await
        .unwrap();
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].record.value, b"kept");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_request_in_flight_when_shutdown_begins_gets_its_full_answer() {
    let dir = TempDir::new().unwrap();
    let mut app = spawn_app_in(&dir.path().join("data")).await;
    let client = app.client.clone();
    let url = app.https_url("/");
    // Start many requests, then stop while they run: each either completes in full or was never
    // accepted; none is cut off halfway.
    let requests: Vec<_> = (0..20)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                match client.get(&url).send().await {
                    Ok(response) => Some((response.status(), response.text().await)),
                    Err(_) => None,
                }
            })
        })
        .collect();
    tokio::task::yield_now().await;
    app.stop().await.unwrap();
    for request in requests {
        if let Some((status, body)) = request.await.unwrap() {
            assert_eq!(status, 200);
            let body = body.expect("a response that started must arrive whole");
            assert!(body.ends_with("</html>"), "{body}");
        }
    }
}
