//! Upgrades: a data dir written by release 1 (tenancy schema 1, kept as a fixture made by
//! `tests/fixtures/make-datadir.sh`) is backed up as it is, then migrated when the appliance
//! starts on it, and everything it held is still there; a data dir from a newer release is refused.

use std::path::{Path, PathBuf};
use std::process::Command;

use openframe_storage::StorageConfig;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tempfile::TempDir;

use crate::cli::openframe;
use crate::external::with_key;
use crate::helpers::spawn_app_in;
use crate::identity::support::Browser;

const FIXTURE: &str = "tests/fixtures/datadir-tenancy-v1";

/// Unpacks the release-1 data dir into `data` (the fixture itself is never written to).
pub(crate) fn unpack_fixture(data: &Path) -> Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir(data).unwrap();
    let unpacked = Command::new("tar")
        .arg("-xzf")
        .arg(root.join(format!("{FIXTURE}.tar.gz")))
        .arg("-C")
        .arg(data)
        .status()
        .unwrap();
    assert!(unpacked.success());
    serde_json::from_slice(&std::fs::read(root.join(format!("{FIXTURE}.json"))).unwrap()).unwrap()
}

/// `(role, version found)` of each store of record in `data`.
pub(crate) fn versions(data: &Path) -> Vec<(&'static str, Option<i64>)> {
    openframe_storage::stored_schemas(&StorageConfig::embedded(data))
        .unwrap()
        .into_iter()
        .map(|schema| (schema.role, schema.found))
        .collect()
}

pub(crate) fn archives(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    files_named(dir, prefix, ".tar")
}

/// The files in `dir` whose names start with `prefix` and end with `suffix`.
pub(crate) fn files_named(dir: &Path, prefix: &str, suffix: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|entry| entry.path()).collect())
        .unwrap_or_default();
    found.retain(|path| {
        path.file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| name.starts_with(prefix) && name.ends_with(suffix))
    });
    found
}

/// What the manifest counts per tenant: (id, users, devices, organizations, keys, log entries).
pub(crate) fn counts(
    manifest: &openframe::backup::Manifest,
) -> Vec<(String, u64, u64, u64, u64, u64)> {
    manifest
        .tenants
        .iter()
        .map(|tenant| {
            (
                tenant.id.clone(),
                tenant.users,
                tenant.devices,
                tenant.organizations,
                tenant.api_keys,
                tenant.log_entries,
            )
        })
        .collect()
}

pub(crate) fn release_1_counts() -> Vec<(String, u64, u64, u64, u64, u64)> {
    vec![
        ("acme".to_owned(), 2, 2, 1, 1, 17),
        ("globex".to_owned(), 1, 0, 0, 0, 0),
    ]
}

#[tokio::test]
async fn a_release_1_data_dir_is_backed_up_then_migrated_and_keeps_everything() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data");
    let fixture = unpack_fixture(&data);
    let api_key = fixture["apiKey"].as_str().unwrap();
    assert_eq!(versions(&data), [("tenancy", Some(1)), ("events", Some(1))]);

    // Commands that do not hold the data dir refuse to migrate it, and change nothing.
    let refused = openframe(&[
        "user",
        "create",
        "--data-dir",
        data.to_str().unwrap(),
        "--tenant",
        "acme",
        "--email",
        "late@acme.example",
        "--password",
        "Late-pass-123!",
    ]);
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("needs migrating (tenancy schema 1 → 2)")
            && said.contains("start `openframe serve` on it once"),
        "{said}"
    );
    // An offline backup archives the stores as they are, without migrating them.
    let manifest = crate::cli::backup(&data, &dir.path().join("offline.tar"));
    assert_eq!(manifest.schema_versions["tenancy"], 1);
    assert_eq!(counts(&manifest), release_1_counts());
    assert_eq!(versions(&data), [("tenancy", Some(1)), ("events", Some(1))]);

    // The appliance starts on it: a pre-upgrade archive first, then the migration.
    let mut app = spawn_app_in(&data).await;
    let backups = data.join("backups");
    let pre_upgrade = archives(&backups, openframe::upgrade::PREFIX);
    assert_eq!(pre_upgrade.len(), 1, "{pre_upgrade:?}");
    assert!(
        archives(&backups, "openframe-").is_empty(),
        "not one of the scheduled ones, which retention deletes"
    );
    let unpacked = dir.path().join("pre-upgrade");
    let manifest =
        openframe::backup::unpack(&pre_upgrade[0], Some(&unpacked), &mut |_: &str| {}).unwrap();
    assert_eq!(manifest.schema_versions["tenancy"], 1);
    assert_eq!(counts(&manifest), release_1_counts());
    assert_eq!(
        versions(&unpacked),
        [("tenancy", Some(1)), ("events", Some(1))],
        "the archive holds the files as release 1 wrote them"
    );
    let tenancy =
        openframe_storage::stored_tenancy_schema(&StorageConfig::embedded(&data)).unwrap();
    assert_eq!(tenancy.found, Some(2), "migrated");

    // Everything release 1 held answers as before: keys, devices, logs, people.
    let (status, devices) = with_key(
        &app,
        api_key,
        Method::GET,
        "/devices?statuses=PENDING",
        None,
    )
    .await;
    assert_eq!(status, 200, "{devices}");
    let mut hostnames: Vec<(&str, &str)> = devices["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|device| {
            (
                device["hostname"].as_str().unwrap(),
                device["organization"]["name"].as_str().unwrap(),
            )
        })
        .collect();
    hostnames.sort_unstable();
    assert_eq!(
        hostnames,
        [
            ("fixture-ws-1", "Contoso Dental"),
            ("fixture-ws-2", "Contoso Dental")
        ]
    );
    let (status, logs) = with_key(&app, api_key, Method::GET, "/logs?limit=100", None).await;
    assert_eq!(status, 200, "{logs}");
    assert_eq!(logs["logs"].as_array().unwrap().len(), 17, "{logs}");
    let (status, failed) = with_key(
        &app,
        api_key,
        Method::GET,
        "/logs?eventTypes=LOGIN_FAILED",
        None,
    )
    .await;
    assert_eq!(status, 200, "{failed}");
    assert!(
        failed["logs"][0]["summary"]
            .as_str()
            .unwrap()
            .contains("mallory@evil.example"),
        "{failed}"
    );
    for (tenant, email, password, expected) in [
        (
            "acme",
            "owner@acme.example",
            "Upgrade-fixture-1!",
            StatusCode::OK,
        ),
        (
            "acme",
            "tech@acme.example",
            "Upgrade-fixture-3!",
            StatusCode::OK,
        ),
        (
            "globex",
            "owner@globex.example",
            "Upgrade-fixture-2!",
            StatusCode::OK,
        ),
        (
            "acme",
            "owner@acme.example",
            "Upgrade-fixture-2!",
            StatusCode::UNAUTHORIZED,
        ),
    ] {
        let mut browser = Browser::new(&app);
        let signed_in = browser
            .submit_login(&format!("/sas/{tenant}/login"), email, password)
            .await;
        assert_eq!(signed_in.status(), expected, "{tenant} {email}");
    }
    app.stop().await.unwrap();

    // Started again: nothing left to migrate, so no second archive.
    let mut again = spawn_app_in(&data).await;
    assert_eq!(archives(&backups, openframe::upgrade::PREFIX), pre_upgrade);
    again.stop().await.unwrap();

    // The pre-upgrade archive restores (and is migrated when this build opens it).
    let restored = dir.path().join("restored");
    let restore = openframe(&[
        "restore",
        "--from",
        pre_upgrade[0].to_str().unwrap(),
        "--data-dir",
        restored.to_str().unwrap(),
    ]);
    assert!(
        restore.status.success(),
        "{}",
        String::from_utf8_lossy(&restore.stderr)
    );
    assert_eq!(
        versions(&restored),
        [("tenancy", Some(2)), ("events", Some(1))]
    );
}

#[tokio::test]
async fn a_data_dir_from_a_newer_release_is_refused_unchanged_and_not_backed_up() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data");
    unpack_fixture(&data);
    let tenancy = data.join("tenancy.sqlite");
    // `PRAGMA user_version` is the big-endian u32 at offset 60 of the header.
    let mut before = std::fs::read(&tenancy).unwrap();
    before[60..64].copy_from_slice(&99u32.to_be_bytes());
    std::fs::write(&tenancy, &before).unwrap();

    let config = crate::helpers::test_config(&data);
    let clock = std::sync::Arc::new(openframe_storage::model::SystemClock);
    let error = openframe::startup::Application::build(config, clock)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("tenancy.sqlite: written by a newer OpenFrame (schema 99, this build knows up to 2); upgrade openframe"),
        "{error}"
    );
    assert!(std::fs::read(&tenancy).unwrap() == before, "left untouched");
    assert!(
        !data.join("backups").exists(),
        "{:?}",
        archives(&data.join("backups"), "")
    );
}

#[test]
fn when_the_pre_upgrade_backup_cannot_be_written_nothing_starts_and_nothing_is_migrated() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data");
    unpack_fixture(&data);
    let tenancy = std::fs::read(data.join("tenancy.sqlite")).unwrap();

    // events.redb (148 KiB) cannot be copied under a 64 KiB cap.
    let failed = crate::cli::openframe_with_file_limit(
        64,
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
        ],
    );
    assert!(!failed.status.success());
    let said = String::from_utf8_lossy(&failed.stderr);
    assert!(
        said.contains("needs migrating (tenancy schema 1 → 2), and the backup taken first failed, so nothing was migrated")
            && said.contains("File too large"),
        "{said}"
    );
    assert_eq!(versions(&data), [("tenancy", Some(1)), ("events", Some(1))]);
    assert!(
        std::fs::read(data.join("tenancy.sqlite")).unwrap() == tenancy,
        "the tenancy database is byte for byte as it was"
    );
    let mut left: Vec<String> = std::fs::read_dir(&data)
        .unwrap()
        .chain(std::fs::read_dir(data.join("backups")).unwrap())
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| {
            name.starts_with(".backup-") || name.ends_with(".partial") || name.ends_with(".tar")
        })
        .collect();
    left.sort();
    assert!(
        left.is_empty(),
        "no scratch dir, partial or archive is left: {left:?}"
    );

    // With room, the same start backs up, migrates and serves.
    let served = crate::cli::serve(&data);
    assert_eq!(
        archives(&data.join("backups"), openframe::upgrade::PREFIX).len(),
        1
    );
    drop(served);
}
