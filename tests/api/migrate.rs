//! `openframe migrate-storage`: a data dir seeded through the appliance itself (tenants, users,
//! API keys, ingested events, consumer offsets) moves to a real MongoDB-wire server and a real
//! Kafka-protocol broker. The test reads both sides back on its own and compares every record,
//! then serves from the external engines with the same API key.

use std::path::Path;
use std::sync::Arc;

use openframe_storage::model::{Offset, SystemClock};
use openframe_storage::peers;
use openframe_storage::{DocumentBackend, Storage, StorageConfig};
use reqwest::StatusCode;

use crate::cli::command;
use crate::gateway::support::two_tenants;
use crate::helpers::{spawn_app_in, spawn_with, test_config};
use crate::stream::support::{fixture, ingest, ingest_key, rows, settle};

fn migrate(data: &Path, to: &str, envs: &[(&str, String)]) -> std::process::Output {
    let mut migrate = command();
    migrate
        .args(["migrate-storage", "--to", to, "--json", "--data-dir"])
        .arg(data);
    for (name, value) in envs {
        migrate.env(name, value);
    }
    migrate.output().unwrap()
}

fn migrated(output: &std::process::Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test]
async fn a_seeded_data_dir_moves_to_mongo_and_kafka_and_serves_from_them() {
    let dir = tempfile::TempDir::new().unwrap();
    let data = dir.path().join("data");
    let mut app = spawn_app_in(&data).await;
    let tenants = two_tenants(&app).await;
    let key = ingest_key(&app, &tenants.admin_a).await;
    let (status, answer) = ingest(
        &app,
        &key,
        "MESHCENTRAL_EVENT",
        fixture("meshcentral-events.ndjson"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    settle(&app).await;
    let logged = rows(&app, "acme").await.len();
    assert!(logged > 0);
    app.stop().await.unwrap();

    let (mongo, kafka) = (peers::mongo(), peers::kafka());
    let envs = [
        (
            "OPENFRAME_STORAGE__MONGO__URI",
            peers::mongo_uri(&mongo, "openframe"),
        ),
        ("OPENFRAME_STORAGE__KAFKA__BROKERS", kafka.host_port()),
    ];

    // While the appliance serves the data dir, nothing is copied.
    let serving = spawn_app_in(&data).await;
    let refused = migrate(&data, "mongo", &envs);
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("stop the appliance"), "{said}");
    let mut serving = serving;
    serving.stop().await.unwrap();

    let to_mongo = migrated(&migrate(&data, "mongo", &envs));
    let to_kafka = migrated(&migrate(&data, "kafka", &envs));

    // Read both sides back independently of the command's own verification.
    let embedded = StorageConfig::embedded(&data);
    let clock = Arc::new(SystemClock);
    let source = Storage::open_records(&embedded, clock.clone())
        .await
        .unwrap();
    let mut external = embedded.clone();
    external.documents = DocumentBackend::Mongo(openframe_storage::MongoSettings::new(
        peers::mongo_uri(&mongo, "openframe"),
    ));
    let target_documents = Storage::open_tenancy(&external, clock.clone())
        .await
        .unwrap();
    let target_events = openframe_storage::open_external_events(
        &openframe_storage::KafkaSettings::new(kafka.host_port()),
        clock,
    )
    .unwrap();

    let source_tenants = source.tenants.tenants().await.unwrap();
    assert_eq!(source_tenants.len(), 2);
    assert_eq!(
        target_documents.tenants.tenants().await.unwrap(),
        source_tenants
    );
    let mut documents = 0;
    for tenant in &source_tenants {
        let collections = source.documents.collections(&tenant.id).await.unwrap();
        assert_eq!(
            target_documents
                .documents
                .collections(&tenant.id)
                .await
                .unwrap(),
            collections
        );
        for collection in &collections {
            let mine = source
                .documents
                .list(&tenant.id, collection, None, 1000)
                .await
                .unwrap();
            let theirs = target_documents
                .documents
                .list(&tenant.id, collection, None, 1000)
                .await
                .unwrap();
            assert_eq!(mine, theirs, "{}/{collection}", tenant.id);
            documents += mine.len();
        }
    }
    assert!(documents > 5, "users, clients, keys...: {documents}");
    assert_eq!(to_mongo["tenants"], 2);
    assert_eq!(to_mongo["documents"], documents);

    let streams = source.events.streams().await.unwrap();
    assert!(!streams.is_empty());
    let mut records = 0;
    for (tenant, topic) in &streams {
        let mine = source
            .events
            .read(tenant, topic, Offset(0), 100_000)
            .await
            .unwrap();
        let theirs = target_events
            .read(tenant, topic, Offset(0), 100_000)
            .await
            .unwrap();
        assert_eq!(mine.len(), theirs.len(), "{tenant}/{topic}");
        for (a, b) in mine.iter().zip(&theirs) {
            assert_eq!(
                (a.offset, &a.record.key, &a.record.value, &a.record.headers),
                (b.offset, &b.record.key, &b.record.value, &b.record.headers),
                "{tenant}/{topic}"
            );
        }
        assert_eq!(
            source
                .events
                .committed_offsets(tenant, topic)
                .await
                .unwrap(),
            target_events
                .committed_offsets(tenant, topic)
                .await
                .unwrap(),
            "{tenant}/{topic}"
        );
        records += mine.len();
    }
    assert_eq!(to_kafka["records"], records);
    assert_eq!(to_kafka["streams"], streams.len());
    assert!(to_kafka["committedOffsets"].as_u64().unwrap() > 0);
    source.close().await.unwrap();
    target_documents.close().await.unwrap();

    // Running it again finds everything in place and changes nothing.
    let again = migrated(&migrate(&data, "kafka", &envs));
    assert_eq!(again["records"], records);

    // The appliance on the external engines: the same API key, the same log.
    let mut config = test_config(&data);
    config.storage.documents = "mongo".into();
    config.storage.mongo.uri = peers::mongo_uri(&mongo, "openframe");
    config.storage.events = "kafka".into();
    config.storage.kafka.brokers = kafka.host_port();
    let app = spawn_with(config).await;
    let (status, ready) = app.ready().await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    assert_eq!(rows(&app, "acme").await.len(), logged);
    let (status, answer) = ingest(
        &app,
        &key,
        "MESHCENTRAL_EVENT",
        fixture("meshcentral-events.ndjson"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    settle(&app).await;
    assert_eq!(
        rows(&app, "acme").await.len(),
        logged,
        "a re-sent fixture changes nothing, through Kafka too"
    );
}
