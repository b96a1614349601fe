//! Process chaos: the real binary SIGKILLed at every point of a backup, a signing-key rotation
//! and a schema migration. Each test runs the operation again and again, each run killed a little
//! later than the one before, until a run finishes before its kill; after every kill it checks
//! what must hold whenever the power goes, and at the end that the data is whole.
//! (SIGKILL during ingest is `stream::crash` and `faults`.)

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use openframe::backup::Manifest;
use reqwest::Method;
use serde_json::Value;
use tempfile::TempDir;

use crate::cli::{self, backup, openframe};
use crate::external::with_key;
use crate::helpers::spawn_app_in;
use crate::upgrade::{archives, counts, files_named, release_1_counts, unpack_fixture, versions};

/// How much later each run is killed than the one before.
const STEP: Duration = Duration::from_millis(7);
/// A bound on the runs, in case the operation never finishes in time.
const MOST_RUNS: u32 = 400;

/// What happened to one run of a swept command.
#[derive(Debug, PartialEq)]
enum Run {
    /// It was killed after this long.
    Killed(Duration),
    /// It exited by itself, successfully, before its kill.
    Finished,
}

/// Starts `command(n)` for run n = 0, 1, …, SIGKILLs it `n × STEP` after it started and calls
/// `check(n, outcome)` after each, until a run finishes: by itself, or, for a command that never
/// exits, once `done()` says its work is done. Returns the number of runs killed before, which
/// must be enough for the sweep to have cut the operation at several points.
fn sweep(
    mut command: impl FnMut(u32) -> Command,
    mut check: impl FnMut(u32, &Run),
    done: Option<&dyn Fn() -> bool>,
) -> u32 {
    let mut killed = 0;
    for n in 0..MOST_RUNS {
        let mut child = command(n).spawn().unwrap();
        let started = Instant::now();
        let deadline = started + STEP * n;
        let outcome = loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "run {n} failed by itself: {status}");
                break Run::Finished;
            }
            if Instant::now() >= deadline {
                child.kill().unwrap();
                let status = child.wait().unwrap();
                break if status.success() {
                    Run::Finished
                } else {
                    Run::Killed(started.elapsed())
                };
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        let outcome = match outcome {
            Run::Killed(_) if done.is_some_and(|done| done()) => Run::Finished,
            other => other,
        };
        check(n, &outcome);
        match outcome {
            Run::Killed(_) => killed += 1,
            Run::Finished => {
                assert!(
                    killed >= 5,
                    "only {killed} runs were cut before one finished"
                );
                return killed;
            }
        }
    }
    panic!("no run finished within {MOST_RUNS} runs");
}

fn quiet(mut command: Command) -> Command {
    command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    command
}

fn unpacked(archive: &Path) -> Manifest {
    openframe::backup::unpack(archive, None, &mut |_: &str| {})
        .unwrap_or_else(|error| panic!("{} is not a whole archive: {error:#}", archive.display()))
}

fn scratch_dirs(data: &Path) -> Vec<String> {
    std::fs::read_dir(data)
        .unwrap()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".backup-"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_killed_at_any_point_leaves_no_archive_or_a_whole_one_and_the_data_intact() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data");
    let fixture = unpack_fixture(&data);
    // Migrated once, so every run below archives the same thing.
    drop(cli::serve(&data));
    let baseline = dir.path().join("baseline.tar");
    assert_eq!(counts(&backup(&data, &baseline)), release_1_counts());

    let out = |n: u32| dir.path().join(format!("run-{n}.tar"));
    let killed = sweep(
        |n| {
            let mut command = quiet(cli::command());
            command
                .args(["backup", "--data-dir"])
                .arg(&data)
                .arg("--out")
                .arg(out(n));
            command
        },
        |n, outcome| {
            let archive = out(n);
            match outcome {
                Run::Finished => assert!(archive.exists(), "run {n} finished without its archive"),
                // Either nothing is there, or the whole archive (the kill came after the rename).
                Run::Killed(_) if archive.exists() => {
                    assert_eq!(counts(&unpacked(&archive)), release_1_counts(), "run {n}");
                }
                Run::Killed(_) => {}
            }
        },
        None,
    );
    eprintln!("{killed} backups killed part-way");

    // A killed backup may leave its `.partial` and scratch dir; neither blocks anything. A new
    // backup to a path a killed run left a `.partial` for succeeds.
    let reused = files_named(dir.path(), "run-", ".partial")
        .into_iter()
        .next()
        .map(|partial| partial.with_extension(""))
        .unwrap_or_else(|| out(0));
    let _ = std::fs::remove_file(&reused);
    assert_eq!(counts(&backup(&data, &reused)), release_1_counts());

    // The appliance starts, clears the scratch dirs of interrupted backups, and holds everything.
    drop(cli::serve(&data));
    assert_eq!(scratch_dirs(&data), Vec::<String>::new());
    let mut app = spawn_app_in(&data).await;
    let api_key = fixture["apiKey"].as_str().unwrap();
    let (status, devices) = with_key(
        &app,
        api_key,
        Method::GET,
        "/devices?statuses=PENDING",
        None,
    )
    .await;
    assert_eq!(status, 200, "{devices}");
    assert_eq!(
        devices["devices"].as_array().map(Vec::len),
        Some(2),
        "{devices}"
    );
    app.stop().await.unwrap();
    drop(app);

    // And the last archive restores.
    let restored = dir.path().join("restored");
    let restore = openframe(&[
        "restore",
        "--from",
        reused.to_str().unwrap(),
        "--data-dir",
        restored.to_str().unwrap(),
    ]);
    assert!(
        restore.status.success(),
        "{}",
        String::from_utf8_lossy(&restore.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_killed_at_any_point_never_migrates_without_a_whole_backup_and_resumes() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data");
    unpack_fixture(&data);
    let backups = data.join("backups");

    let killed = sweep(
        |_| {
            let mut command = quiet(cli::command());
            command
                .args([
                    "serve",
                    "--listen",
                    "127.0.0.1:0",
                    "--admin-listen",
                    "127.0.0.1:0",
                    "--data-dir",
                ])
                .arg(&data);
            // `serve` never exits by itself: this run "finishes" once the data dir is migrated
            // (see below), and only the kills before that count.
            command
        },
        |n, _| {
            let found = versions(&data);
            assert_eq!(found[1], ("events", Some(1)), "run {n}: {found:?}");
            let tenancy = found[0].1;
            assert!(
                matches!(tenancy, Some(1 | 2)),
                "run {n}: tenancy schema {tenancy:?}"
            );
            let whole: Vec<Manifest> = archives(&backups, openframe::upgrade::PREFIX)
                .iter()
                .map(|archive| unpacked(archive))
                .collect();
            for manifest in &whole {
                assert_eq!(manifest.schema_versions["tenancy"], 1, "run {n}");
                assert_eq!(counts(manifest), release_1_counts(), "run {n}");
            }
            if tenancy == Some(2) {
                assert!(
                    !whole.is_empty(),
                    "run {n}: migrated without a whole pre-upgrade archive"
                );
            }
        },
        Some(&|| versions(&data)[0].1 == Some(2)),
    );
    eprintln!("{killed} starts killed before the migration was done");

    // A start after all that serves everything release 1 held, and archives nothing more.
    let before = archives(&backups, openframe::upgrade::PREFIX).len();
    drop(cli::serve(&data));
    assert_eq!(archives(&backups, openframe::upgrade::PREFIX).len(), before);
    let check = dir.path().join("after.tar");
    let manifest = backup(&data, &check);
    assert_eq!(manifest.schema_versions["tenancy"], 2);
    assert_eq!(counts(&manifest), release_1_counts());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotation_killed_at_any_point_leaves_every_published_key_usable() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data");
    let mut app = spawn_app_in(&data).await;
    let seeded = crate::identity::support::seed(&app, "acme").await;
    let first = crate::identity::support::client_credentials(&app, &seeded)
        .await
        .json::<Value>()
        .await
        .unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    app.stop().await.unwrap();
    drop(app);

    let mut finished = 0;
    let killed = sweep(
        |_| {
            let mut command = quiet(cli::command());
            command
                .args(["tenant", "rotate-keys", "--tenant", "acme", "--data-dir"])
                .arg(&data);
            command
        },
        |_, outcome| {
            if *outcome == Run::Finished {
                finished += 1;
            }
        },
        None,
    );
    eprintln!("{killed} rotations killed part-way");

    // Every key that was stored is whole: the appliance loads (and unseals) the ring, publishes
    // each key once, still accepts the token signed before, and signs new ones.
    let app = spawn_app_in(&data).await;
    let seeded = crate::identity::support::Seeded {
        issuer: app.https_url("/sas/acme"),
        ..seeded
    };
    let jwks: Value = app
        .client
        .get(format!("{}/oauth2/jwks", seeded.issuer))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| key["kid"].as_str().unwrap())
        .collect();
    let published = kids.len();
    kids.sort_unstable();
    kids.dedup();
    assert_eq!(kids.len(), published, "a key is published twice: {jwks}");
    assert!(
        (1 + finished..=1 + finished + killed as usize).contains(&published),
        "{published} keys after {finished} finished and {killed} killed rotations"
    );
    // The token signed before the rotations still verifies against the published set (the issuer
    // in it names the first app's port, so it is checked here rather than by introspection).
    let first_kid = openframe::identity::jwt::peek_kid(&first).unwrap();
    let published = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|key| key["kid"] == first_kid.as_str())
        .expect("the first key is still published");
    let public = openframe::identity::jwt::RsaPublic {
        n: openframe::identity::crypto::b64url_decode(published["n"].as_str().unwrap()).unwrap(),
        e: openframe::identity::crypto::b64url_decode(published["e"].as_str().unwrap()).unwrap(),
    };
    let claims: Value = openframe::identity::jwt::verify(&first, |_| Some(public)).unwrap();
    assert_eq!(claims["sub"], seeded.client_id.as_str(), "{claims}");
    let response = crate::identity::support::client_credentials(&app, &seeded).await;
    assert_eq!(response.status(), 200);
    let token: Value = response.json().await.unwrap();
    let kid = openframe::identity::jwt::peek_kid(token["access_token"].as_str().unwrap()).unwrap();
    assert!(kids.contains(&kid.as_str()), "{kid} is not published");
}
