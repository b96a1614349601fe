use std::sync::Arc;

use openframe::startup::Application;
use openframe_storage::model::SystemClock;
use tempfile::TempDir;

use crate::helpers::{spawn_app_in, test_config};

async fn build_error(config: openframe::config::Config) -> String {
    match Application::build(config, Arc::new(SystemClock)).await {
        Ok(_) => panic!("build must fail"),
        Err(error) => format!("{error:#}"),
    }
}

#[tokio::test]
async fn a_second_appliance_on_the_same_data_dir_is_refused_and_the_first_keeps_serving() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data");
    let app = spawn_app_in(&data).await;
    let error = build_error(test_config(&data)).await;
    assert!(
        error.contains("is in use by another openframe process"),
        "{error}"
    );
    assert!(error.contains(&data.display().to_string()), "{error}");
    assert!(!error.contains('\n'), "one line: {error}");
    let (status, body) = app.ready().await;
    assert_eq!(
        (status.as_u16(), body["status"].as_str()),
        (200, Some("ready"))
    );
}

#[tokio::test]
async fn foreign_files_in_the_data_dir_are_named_and_left_untouched() {
    // In the order the stores open, so the later cases prove that stores opened before the
    // failing one were closed again (a second open of a still-open file would fail).
    let cases = [
        ("tenancy.sqlite", "not an OpenFrame tenancy database"),
        ("events.redb", "not an OpenFrame event log"),
        ("analytics.duckdb", "not an OpenFrame analytics database"),
        ("search/meta.json", "not an OpenFrame search index"),
    ];
    for (file, expected) in cases {
        let dir = TempDir::new().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(data.join("search")).unwrap();
        let garbage = b"\x00\x01 this is not what you think it is ".repeat(64);
        std::fs::write(data.join(file), &garbage).unwrap();
        let error = build_error(test_config(&data)).await;
        let named = file.split('/').next().unwrap();
        assert!(
            error.contains(named) && error.contains(expected),
            "{file}: {error}"
        );
        assert!(
            std::fs::read(data.join(file)).unwrap() == garbage,
            "{file} must be untouched"
        );
        // The failed start released the data dir: fixing the problem is enough to start.
        std::fs::remove_file(data.join(file)).unwrap();
        let mut app = spawn_app_in(&data).await;
        assert_eq!(app.ready().await.0, 200);
        app.stop().await.unwrap();
    }
}

#[tokio::test]
async fn a_data_dir_that_cannot_be_created_is_reported_with_its_path() {
    let dir = TempDir::new().unwrap();
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, "x").unwrap();
    let error = build_error(test_config(&blocker.join("data"))).await;
    assert!(error.contains("cannot create the data dir"), "{error}");
    assert!(error.contains("a-file/data"), "{error}");
}

#[tokio::test]
async fn a_port_in_use_is_reported_with_the_setting_to_change() {
    let occupied = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = TempDir::new().unwrap();
    let mut config = test_config(&dir.path().join("data"));
    config.server.listen = occupied.local_addr().unwrap();
    let error = build_error(config).await;
    assert!(
        error.contains(&format!(
            "cannot listen on {}",
            occupied.local_addr().unwrap()
        )),
        "{error}"
    );
    assert!(error.contains("--listen"), "{error}");
    // Nothing was left locked: the same data dir starts at once.
    let mut app = spawn_app_in(&dir.path().join("data")).await;
    app.stop().await.unwrap();
}
