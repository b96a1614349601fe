//! The whole pipeline with `[storage] events = "kafka"`, against a real Kafka-protocol broker
//! (tansu, keeping its data in an S3 server so that it survives a restart): ingest is durable in
//! the broker, the broker going away turns ingest into 503s and readiness into a report of the
//! outage, and once it is back everything acknowledged reaches the log, exactly once.

use std::time::Duration;

use openframe::stream::tools::tool_event_id;
use openframe_storage::analytics::LogFilter;
use openframe_storage::model::{Offset, Topic};
use openframe_storage::peers;
use reqwest::StatusCode;

use super::crash::{BATCH, batch, oid};
use super::support::{ingest, ingest_key, settle};
use crate::gateway::support::{tenant, two_tenants};
use crate::helpers::{spawn_with, test_config};

#[tokio::test]
async fn ingest_through_kafka_survives_a_broker_restart_with_nothing_lost() {
    let s3 = peers::s3("e2e");
    let mut broker = peers::durable_kafka(&s3, "e2e");
    let dir = tempfile::TempDir::new().unwrap();
    let mut config = test_config(&dir.path().join("data"));
    config.storage.events = "kafka".into();
    config.storage.kafka.brokers = broker.host_port();
    config.storage.kafka.timeout_ms = 1_500;
    let app = spawn_with(config).await;
    let tenants = two_tenants(&app).await;
    let key = ingest_key(&app, &tenants.admin_a).await;
    let (status, ready) = app.ready().await;
    assert_eq!(status, StatusCode::OK, "{ready}");

    let mut acknowledged = Vec::new();
    for round in 0..4 {
        let first = round * BATCH;
        let (status, answer) = ingest(&app, &key, "MESHCENTRAL_EVENT", batch(first).into()).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["accepted"], BATCH, "{answer}");
        acknowledged.extend(first..first + BATCH);
    }

    broker.kill();
    let (status, answer) = ingest(&app, &key, "MESHCENTRAL_EVENT", batch(4 * BATCH).into()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert_eq!(answer["code"], "store_unavailable", "{answer}");
    let (status, ready) = app.ready().await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{ready}");
    let described = ready.to_string();
    assert!(
        described.contains("kafka") && described.contains(&broker.host_port()),
        "readiness names the broker: {ready}"
    );

    broker.restart();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut round = 5;
    while round < 9 {
        let first = round * BATCH;
        let (status, answer) = ingest(&app, &key, "MESHCENTRAL_EVENT", batch(first).into()).await;
        if status == StatusCode::OK {
            assert_eq!(answer["accepted"], BATCH, "{answer}");
            acknowledged.extend(first..first + BATCH);
            round += 1;
        } else {
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
            assert!(
                tokio::time::Instant::now() < deadline,
                "the broker never came back"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    let (status, ready) = app.ready().await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    settle(&app).await;

    let acme = tenant("acme");
    let storage = &app.state.storage;
    let raw = Topic::parse("meshcentral.mongodb.events").unwrap();
    let bounds = storage.events.bounds(&acme, &raw).await.unwrap();
    assert_eq!(
        (bounds.start, bounds.end),
        (Offset(0), Offset(acknowledged.len() as u64)),
        "the broker holds exactly the acknowledged events"
    );
    let ids: Vec<String> = acknowledged
        .iter()
        .map(|n| tool_event_id("meshcentral", "events", &oid(*n)))
        .collect();
    let filter = LogFilter {
        tool_event_ids: Some(ids.clone()),
        ..LogFilter::default()
    };
    assert_eq!(
        storage.analytics.count_logs(&acme, &filter).await.unwrap(),
        ids.len() as u64,
        "every acknowledged event is in the unified log"
    );
    assert_eq!(
        storage
            .analytics
            .count_logs(&acme, &LogFilter::default())
            .await
            .unwrap(),
        ids.len() as u64,
        "and nothing else, nor anything twice"
    );
    let globex = tenant("globex");
    assert_eq!(
        storage
            .analytics
            .count_logs(&globex, &LogFilter::default())
            .await
            .unwrap(),
        0
    );
}
