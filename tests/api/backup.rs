//! `openframe backup` and `openframe restore`: a backup taken while `serve` takes writes restores
//! every record it holds, rebuilds analytics and search, and keeps the keys; damaged, newer or
//! misplaced restores are refused without leaving a data dir behind.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use openframe::backup::Manifest;
use openframe_storage::model::{Collection, Offset, SystemClock, Topic};
use openframe_storage::{Records, Storage, StorageConfig, TenantId};
use reqwest::Method;
use serde_json::json;
use tempfile::TempDir;

use crate::cli::{openframe, serve};
use crate::external::with_key;
use crate::gateway::support::{create_key, two_tenants};
use crate::helpers::spawn_app_in;
use crate::identity::support::PASSWORD;
use crate::stream::support::{fixture, ingest, ingest_key, rows, search, seed_inventory, settle};

/// What the seeding left behind, to check the restore against.
struct Seeded {
    ingest_keys: [String; 2],
    read_key: String,
    acme_rows: Vec<openframe_storage::analytics::LogRow>,
    acme_hits: Vec<String>,
}

/// Two tenants with owners, an extra user, organizations, machines, ingested logs and API keys,
/// written by an appliance that is then stopped.
async fn seed(data: &Path) -> Seeded {
    let mut app = spawn_app_in(data).await;
    let tenants = two_tenants(&app).await;
    openframe::identity::admin::create_user(
        &app.state.identity,
        "acme",
        "tech@acme.example.com",
        PASSWORD,
        "ADMIN",
    )
    .await
    .unwrap();
    let mut ingest_keys = Vec::new();
    for (tenant, admin) in [("acme", &tenants.admin_a), ("globex", &tenants.admin_b)] {
        seed_inventory(&app, tenant).await;
        let key = ingest_key(&app, admin).await;
        let (status, _) = ingest(
            &app,
            &key,
            "MESHCENTRAL_EVENT",
            fixture("meshcentral-events.ndjson"),
        )
        .await;
        assert_eq!(status, 200);
        ingest_keys.push(key);
    }
    let (_, read_key, _) = create_key(&app, &tenants.admin_a, json!({"name": "siem"})).await;
    settle(&app).await;
    let acme_rows = rows(&app, "acme").await;
    assert_eq!(acme_rows.len(), 9);
    let acme_hits = search(&app, "acme", "desktop session").await;
    assert!(!acme_hits.is_empty());
    app.stop().await.unwrap();
    Seeded {
        ingest_keys: ingest_keys.try_into().unwrap(),
        read_key,
        acme_rows,
        acme_hits,
    }
}

/// The MeshCentral fixture with fresh event ids, so every round adds entries.
fn unique_events(round: u64) -> Vec<u8> {
    let text = String::from_utf8(fixture("meshcentral-events.ndjson")).unwrap();
    text.replace(
        "673dc1a0e4b0a1b2c3d4e5",
        &format!("{:022x}", 0xbac_0000 + round),
    )
    .into_bytes()
}

/// The archive's manifest, checked against its members by reading the tar independently.
fn manifest_checked_by_hand(archive: &Path) -> Manifest {
    let mut reader = tar::Archive::new(std::fs::File::open(archive).unwrap());
    let mut members = Vec::new();
    let mut manifest: Option<Manifest> = None;
    for entry in reader.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
        if manifest.is_none() {
            assert_eq!(path, "manifest.json", "the manifest comes first");
            manifest = Some(serde_json::from_slice(&bytes).unwrap());
            continue;
        }
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes);
        let hex: String = digest
            .as_ref()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        members.push(openframe::backup::FileEntry {
            path,
            bytes: bytes.len() as u64,
            sha256: hex,
        });
    }
    let manifest = manifest.unwrap();
    assert_eq!(members, manifest.files, "every member matches its checksum");
    manifest
}

async fn open_records(data: &Path) -> Records {
    Storage::open_records(&StorageConfig::embedded(data), Arc::new(SystemClock))
        .await
        .unwrap()
}

/// Every document of `collection`, in id order.
async fn documents(
    records: &Records,
    tenant: &TenantId,
    collection: &str,
) -> Vec<(String, u64, serde_json::Value)> {
    let collection = Collection::parse(collection).unwrap();
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = records
            .documents
            .list(tenant, &collection, after.as_ref(), 1000)
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        all.extend(page.into_iter().map(|document| {
            (
                document.id.as_str().to_owned(),
                document.version,
                document.body,
            )
        }));
    }
    all
}

/// The restored stores hold exactly the original's records up to the snapshot: every document
/// seeded before the load, and of each stream and the log details a prefix of what the original
/// holds (the load went on writing after the snapshot).
async fn compare_records(original: &Path, restored: &Path, manifest: &Manifest) {
    let (original, restored) = (open_records(original).await, open_records(restored).await);
    let tenants = restored.tenants.tenants().await.unwrap();
    assert_eq!(tenants, original.tenants.tenants().await.unwrap());
    assert_eq!(tenants.len(), 2);
    for tenant in &tenants {
        let id = &tenant.id;
        for collection in [
            "users",
            "user_emails",
            "oauth_clients",
            "tenant_keys",
            "organizations",
            "machines",
            "api_keys",
        ] {
            let restored_documents = documents(&restored, id, collection).await;
            assert_eq!(
                restored_documents,
                documents(&original, id, collection).await,
                "{id} {collection}"
            );
        }
        for topic in [
            "meshcentral.mongodb.events",
            "unified.events",
            "logs.events",
            "dead-letter.events",
        ] {
            let topic = Topic::parse(topic).unwrap();
            let kept = restored
                .events
                .read(id, &topic, Offset(0), 100_000)
                .await
                .unwrap();
            let all = original
                .events
                .read(id, &topic, Offset(0), 100_000)
                .await
                .unwrap();
            assert!(kept.len() <= all.len(), "{id} {topic:?}");
            assert_eq!(kept, all[..kept.len()], "{id} {topic:?} is a prefix");
        }
        let kept = restored
            .details
            .scan(id, i64::MIN, i64::MAX, None, 10_000)
            .await
            .unwrap();
        let all = original
            .details
            .scan(id, i64::MIN, i64::MAX, None, 10_000)
            .await
            .unwrap();
        for entry in &kept {
            assert!(
                all.contains(entry),
                "{id}: {:?} is not in the original",
                entry.0
            );
        }
        let counted = manifest
            .tenants
            .iter()
            .find(|counts| counts.id == id.as_str())
            .unwrap();
        assert_eq!(kept.len() as u64, counted.log_entries, "{id}");
        assert!(counted.log_entries >= 9, "{id}: the seeded entries");
    }
    original.close().await.unwrap();
    restored.close().await.unwrap();
}

fn mode(path: &Path) -> u32 {
    std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(path).unwrap().permissions()) & 0o777
}

/// Names in `dir` that start with `prefix`.
fn leftovers(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(prefix)
        })
        .collect()
}

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_serving_under_load_restores_every_record_key_log_and_search() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data");
    let seeded = seed(&data).await;

    // What a backup killed half-way would have left: the next start removes it.
    std::fs::create_dir(data.join(".backup-interrupted")).unwrap();
    std::fs::write(data.join(".backup-interrupted/backup.tar"), b"half").unwrap();
    let mut served = serve(&data);
    assert!(leftovers(&data, ".backup-").is_empty());
    let https_port = served.https.rsplit(':').next().unwrap().to_owned();
    let client = crate::helpers::trusting_client(&data.join("tls/cert.pem"));
    let rounds = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (rounds, stop, client) = (rounds.clone(), stop.clone(), client.clone());
        let (keys, read_key) = (seeded.ingest_keys.clone(), seeded.read_key.clone());
        let base = format!("https://localhost:{https_port}");
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let round = rounds.load(Ordering::SeqCst);
                let key = &keys[usize::try_from(round % 2).unwrap()];
                let ingested = client
                    .post(format!("{base}/ingest/v1/debezium"))
                    .header("x-api-key", key)
                    .header("message-type", "MESHCENTRAL_EVENT")
                    .header("content-type", "application/x-ndjson")
                    .body(unique_events(round))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(ingested.status(), 200);
                let listed = client
                    .get(format!("{base}/external-api/api/v1/logs?limit=5"))
                    .header("x-api-key", &read_key)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(listed.status(), 200);
                rounds.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    while rounds.load(Ordering::SeqCst) < 3 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The admin endpoint wants the token of the data dir.
    let admin_backup = format!("http://{}/backup", served.admin);
    let refused = reqwest::Client::new()
        .post(&admin_backup)
        .bearer_auth("not-the-token")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let refused: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(refused["code"], "unauthorized", "{refused}");
    assert!(
        refused["message"].as_str().unwrap().contains("admin.token"),
        "{refused}"
    );
    assert_eq!(mode(&data.join("admin.token")), 0o600);

    let archive = dir.path().join("backup.tar");
    let args: Vec<String> = vec![
        "backup".into(),
        "--data-dir".into(),
        data.to_str().unwrap().into(),
        "--out".into(),
        archive.to_str().unwrap().into(),
        "--admin-url".into(),
        format!("http://{}", served.admin),
    ];
    let started = std::time::Instant::now();
    let backed_up = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        openframe(&args)
    })
    .await
    .unwrap();
    let took = started.elapsed();
    assert!(backed_up.status.success(), "{}", stderr_of(&backed_up));
    let said = stderr_of(&backed_up);
    assert!(
        said.contains("backup: asking the running appliance"),
        "{said}"
    );
    assert!(said.contains("backup: received"), "{said}");
    let printed = String::from_utf8_lossy(&backed_up.stdout).into_owned();
    assert!(printed.starts_with("backup written to"), "{printed}");
    eprintln!(
        "measured: {printed} (wall {} ms, archive {} bytes)",
        took.as_millis(),
        std::fs::metadata(&archive).unwrap().len()
    );
    let during = rounds.load(Ordering::SeqCst);
    while rounds.load(Ordering::SeqCst) < during + 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::SeqCst);
    load.await.unwrap();
    served.signal("TERM");
    let (status, log) = served.wait();
    assert_eq!(status.code(), Some(0), "{log:?}");
    assert!(
        !data.join("admin.token").exists(),
        "removed at a clean stop"
    );
    assert!(leftovers(&data, ".backup-").is_empty());
    assert!(!openframe::backup::partial_path(&archive).exists());

    let manifest = manifest_checked_by_hand(&archive);
    assert_eq!(manifest.format, openframe::backup::FORMAT);
    assert_eq!(manifest.appliance_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(manifest.stores, ["tenancy", "events", "keys", "tls"]);
    assert_eq!(manifest.rebuilt_on_restore, ["analytics", "search"]);
    let paths: Vec<&str> = manifest
        .files
        .iter()
        .map(|file| file.path.as_str())
        .collect();
    for expected in [
        "tenancy.sqlite",
        "events.redb",
        "keys/master.key",
        "tls/cert.pem",
        "tls/key.pem",
    ] {
        assert!(paths.contains(&expected), "{paths:?}");
    }
    let counts: Vec<_> = manifest
        .tenants
        .iter()
        .map(|tenant| {
            (
                tenant.id.as_str(),
                tenant.users,
                tenant.devices,
                tenant.organizations,
                tenant.api_keys,
            )
        })
        .collect();
    assert_eq!(counts, [("acme", 2, 3, 1, 2), ("globex", 1, 3, 1, 1)]);

    // Wipe: the data dir goes (moved aside, to compare with), the backup brings it back.
    let original = dir.path().join("original");
    std::fs::rename(&data, &original).unwrap();
    let restored = openframe(&[
        "restore",
        "--from",
        archive.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert!(restored.status.success(), "{}", stderr_of(&restored));
    let said = stderr_of(&restored);
    assert!(said.contains("restore: tenancy.sqlite"), "{said}");
    assert!(
        said.contains("restore: rebuilding analytics and search"),
        "{said}"
    );
    assert!(leftovers(dir.path(), "data.restoring-").is_empty());
    assert_eq!(mode(&data), 0o700);
    for file in [
        "tenancy.sqlite",
        "events.redb",
        "keys/master.key",
        "tls/key.pem",
    ] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
    for file in ["keys/master.key", "tls/cert.pem", "tls/key.pem"] {
        assert_eq!(
            std::fs::read(data.join(file)).unwrap(),
            std::fs::read(original.join(file)).unwrap(),
            "{file}"
        );
    }
    compare_records(&original, &data, &manifest).await;

    // The restored appliance serves it: the same key works, logs and search are rebuilt.
    let app = spawn_app_in(&data).await;
    let acme = manifest
        .tenants
        .iter()
        .find(|tenant| tenant.id == "acme")
        .unwrap();
    // The archive can hold raw events the pipeline had not processed when it was taken; the
    // restored pipeline processes them, so the log may grow past the archive's count, and must then
    // agree with the restored log details.
    settle(&app).await;
    let restored_rows = rows(&app, "acme").await;
    assert!(
        restored_rows.len() as u64 >= acme.log_entries,
        "{} rows, the archive counted {}",
        restored_rows.len(),
        acme.log_entries
    );
    let details = app
        .state
        .storage
        .details
        .scan(
            &TenantId::parse("acme").unwrap(),
            i64::MIN,
            i64::MAX,
            None,
            openframe_storage::details::MAX_SCAN,
        )
        .await
        .unwrap();
    assert_eq!(
        restored_rows.len(),
        details.len(),
        "analytics agree with the log details"
    );
    for row in &seeded.acme_rows {
        assert!(restored_rows.contains(row), "{row:?}");
    }
    let hits = search(&app, "acme", "desktop session").await;
    for hit in &seeded.acme_hits {
        assert!(hits.contains(hit), "{hit} in {hits:?}");
    }
    let (status, listed) =
        with_key(&app, &seeded.read_key, Method::GET, "/logs?limit=5", None).await;
    assert_eq!(status, 200, "{listed}");
}

/// The last line of a failed command's stderr: its one-line error (progress lines may come first).
fn error_line(output: &std::process::Output) -> String {
    let said = stderr_of(output);
    assert_eq!(output.status.code(), Some(1), "{said}");
    let error = said
        .trim_end()
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned();
    assert!(error.starts_with("openframe: error: "), "{said}");
    error
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_the_backup_and_the_restore_without_leaving_anything_behind() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data");
    let mut app = spawn_app_in(&data).await;
    crate::identity::support::seed(&app, "acme").await;
    app.stop().await.unwrap();
    drop(app);
    let good = dir.path().join("good.tar");
    let backed_up = openframe(&[
        "backup",
        "--data-dir",
        data.to_str().unwrap(),
        "--out",
        good.to_str().unwrap(),
    ]);
    assert!(backed_up.status.success(), "{}", stderr_of(&backed_up));
    // Files may grow to half the largest store: neither the archive nor the restore fits.
    let manifest = manifest_checked_by_hand(&good);
    let largest = manifest.files.iter().map(|file| file.bytes).max().unwrap();
    let cap_kib = largest / 2 / 1024;
    assert!(
        cap_kib > 8,
        "the stores are large enough to cut: {largest} bytes"
    );

    let out = dir.path().join("full.tar");
    let failed = crate::cli::openframe_with_file_limit(
        cap_kib,
        &[
            "backup",
            "--data-dir",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
    );
    let error = error_line(&failed);
    // SQLite reports the failed write as an I/O error, a plain copy as EFBIG.
    assert!(
        error.contains("cannot copy ")
            && (error.contains("disk I/O error") || error.contains("File too large")),
        "{error}"
    );
    assert!(!out.exists());
    assert!(
        leftovers(dir.path(), "full.tar").is_empty(),
        "no .partial left"
    );
    assert!(
        leftovers(&data, ".backup-").is_empty(),
        "no scratch dir left"
    );

    let target = dir.path().join("restored");
    let failed = crate::cli::openframe_with_file_limit(
        cap_kib,
        &[
            "restore",
            "--from",
            good.to_str().unwrap(),
            "--data-dir",
            target.to_str().unwrap(),
        ],
    );
    let error = error_line(&failed);
    assert!(error.contains("File too large"), "{error}");
    assert!(!target.exists(), "no half-restored data dir");
    assert!(
        leftovers(dir.path(), "restored").is_empty(),
        "no .restoring- dir left"
    );

    // With room, the same archive restores.
    let restored = openframe(&[
        "restore",
        "--from",
        good.to_str().unwrap(),
        "--data-dir",
        target.to_str().unwrap(),
    ]);
    assert!(restored.status.success(), "{}", stderr_of(&restored));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_refuses_a_running_instance_a_non_empty_dir_damaged_or_newer_archives() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap().to_owned();
    let mut app = spawn_app_in(&data).await;
    crate::identity::support::seed(&app, "acme").await;
    app.stop().await.unwrap();
    drop(app);

    // With nothing serving, the backup reads the stores itself.
    let good = dir.path().join("good.tar");
    let good_arg = good.to_str().unwrap().to_owned();
    let backed_up = openframe(&["backup", "--data-dir", &data_arg, "--out", &good_arg]);
    assert!(backed_up.status.success(), "{}", stderr_of(&backed_up));
    assert!(stderr_of(&backed_up).contains("nothing serves the data dir"));
    assert!(stderr_of(&backed_up).contains("backup: tenancy.sqlite"));
    let manifest = manifest_checked_by_hand(&good);
    assert_eq!(manifest.tenants.len(), 1);
    assert!(leftovers(&data, ".backup-").is_empty());
    let again = openframe(&["backup", "--data-dir", &data_arg, "--out", &good_arg]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr_of(&again).contains("exists; choose another --out"),
        "{}",
        stderr_of(&again)
    );

    let refuses = |archive: &Path, target: &Path, says: &[&str]| {
        let output = openframe(&[
            "restore",
            "--from",
            archive.to_str().unwrap(),
            "--data-dir",
            target.to_str().unwrap(),
        ]);
        let error = error_line(&output);
        for words in says {
            assert!(error.contains(words), "{words:?} in {error}");
        }
        let name = target.file_name().unwrap().to_string_lossy().into_owned();
        assert!(leftovers(target.parent().unwrap(), &format!("{name}.restoring-")).is_empty());
    };

    // Over a running instance: it names the process.
    let served = serve(&data);
    let pid = std::fs::read_to_string(data.join(".lock")).unwrap();
    refuses(
        &good,
        &data,
        &["in use by a running openframe", &format!("(pid {pid})")],
    );
    // The running one writes no backup without the token.
    let unauthenticated = reqwest::Client::new()
        .post(format!("http://{}/backup", served.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);
    assert_eq!(unauthenticated.headers()["www-authenticate"], "Bearer");
    drop(served);

    // Into a non-empty dir.
    refuses(&good, &data, &["is not empty"]);

    // Where each member's data starts, to damage one.
    let bytes = std::fs::read(&good).unwrap();
    let mut offsets = std::collections::HashMap::new();
    let mut reader = tar::Archive::new(bytes.as_slice());
    for entry in reader.entries().unwrap() {
        let entry = entry.unwrap();
        offsets.insert(
            entry.path().unwrap().to_string_lossy().into_owned(),
            (entry.raw_file_position() as usize, entry.size() as usize),
        );
    }

    // Truncated in the middle of the event log.
    let target = dir.path().join("restored");
    let (events_at, events_len) = offsets["events.redb"];
    let truncated = dir.path().join("truncated.tar");
    std::fs::write(&truncated, &bytes[..events_at + events_len / 2]).unwrap();
    refuses(
        &truncated,
        &target,
        &["damaged or truncated", "events.redb"],
    );
    assert!(!target.exists());

    // Truncated at a member boundary: the missing member is named.
    let (tenancy_at, tenancy_len) = offsets["tenancy.sqlite"];
    let (keys_at, _) = offsets["keys/master.key"];
    let cut = dir.path().join("cut.tar");
    std::fs::write(&cut, &bytes[..keys_at - 512]).unwrap();
    refuses(&cut, &target, &["keys/master.key is missing"]);
    assert!(!target.exists());

    // One flipped byte in the tenancy store.
    let mut flipped = bytes.clone();
    flipped[tenancy_at + tenancy_len / 2] ^= 0x01;
    let flipped_path = dir.path().join("flipped.tar");
    std::fs::write(&flipped_path, &flipped).unwrap();
    refuses(
        &flipped_path,
        &target,
        &["tenancy.sqlite does not match its checksum"],
    );
    assert!(!target.exists());

    // Written by a newer release: a newer archive format, or a newer store schema.
    let rewritten = |change: &dyn Fn(&mut serde_json::Value), name: &str| -> PathBuf {
        let path = dir.path().join(name);
        let mut builder = tar::Builder::new(std::fs::File::create(&path).unwrap());
        let mut reader = tar::Archive::new(bytes.as_slice());
        for entry in reader.entries().unwrap() {
            let mut entry = entry.unwrap();
            let member = entry.path().unwrap().to_string_lossy().into_owned();
            let mut content = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut content).unwrap();
            if member == "manifest.json" {
                let mut manifest: serde_json::Value = serde_json::from_slice(&content).unwrap();
                change(&mut manifest);
                content = serde_json::to_vec(&manifest).unwrap();
            }
            let mut header = tar::Header::new_gnu();
            header.set_size(content.len() as u64);
            header.set_mode(0o600);
            builder
                .append_data(&mut header, &member, content.as_slice())
                .unwrap();
        }
        builder.finish().unwrap();
        path
    };
    let newer = rewritten(
        &|manifest| {
            manifest["format"] = json!(2);
            manifest["applianceVersion"] = json!("9.0.0");
        },
        "newer.tar",
    );
    refuses(
        &newer,
        &target,
        &["format 2", "reads up to format 1", "openframe 9.0.0"],
    );
    let newer_schema = rewritten(
        &|manifest| manifest["schemaVersions"]["events"] = json!(99),
        "schema.tar",
    );
    refuses(&newer_schema, &target, &["events store has schema 99"]);
    assert!(!target.exists());

    // A good archive restores into an empty directory that exists.
    std::fs::create_dir(&target).unwrap();
    let restored = openframe(&[
        "restore",
        "--from",
        &good_arg,
        "--data-dir",
        target.to_str().unwrap(),
    ]);
    assert!(restored.status.success(), "{}", stderr_of(&restored));
    let app = spawn_app_in(&target).await;
    let tenants = app.state.storage.tenants.tenants().await.unwrap();
    assert_eq!(tenants.len(), 1);
    assert_eq!(tenants[0].id.as_str(), "acme");
}

/// The `openframe_backup_*` gauge `name` on `/metrics`.
async fn backup_gauge(app: &crate::helpers::TestApp, name: &str) -> i64 {
    let text = app
        .plain
        .get(app.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let prefix = format!("openframe_backup_{name} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix}in {text}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn scheduled_backups_keep_the_newest_archives_and_report_their_age() {
    let dir = TempDir::new().unwrap();
    let archives = dir.path().join("archives");
    let mut config = crate::helpers::test_config(&dir.path().join("data"));
    config.backup.keep = 2;
    config.backup.dir = archives.display().to_string();
    let app = crate::helpers::spawn_with(config).await;
    two_tenants(&app).await;
    assert_eq!(backup_gauge(&app, "age_seconds").await, -1, "none yet");
    assert_eq!(
        backup_gauge(&app, "last_success_timestamp_seconds").await,
        0
    );

    let mut written = Vec::new();
    for _ in 0..3 {
        written.push(openframe::backup::take_scheduled(&app.state).await.unwrap());
    }
    // The two newest are kept, named so that they sort by age; each reads back whole.
    let mut kept: Vec<PathBuf> = std::fs::read_dir(&archives)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    kept.sort();
    assert_eq!(kept, written[1..]);
    for archive in &kept {
        let name = archive.file_name().unwrap().to_str().unwrap();
        assert!(
            name.starts_with("openframe-") && name.ends_with("Z.tar"),
            "{name}"
        );
        assert_eq!(mode(archive), 0o600, "{name}");
        let manifest: Manifest =
            openframe::backup::unpack(archive, None, &mut |_: &str| {}).unwrap();
        let ids: Vec<&str> = manifest.tenants.iter().map(|t| t.id.as_str()).collect();
        assert!(ids.contains(&"acme") && ids.contains(&"globex"), "{ids:?}");
    }
    assert_eq!(mode(&archives), 0o700);
    let age = backup_gauge(&app, "age_seconds").await;
    assert!((0..60).contains(&age), "{age}");
}
