//! The admin listener (plain HTTP, loopback by default): liveness, readiness and metrics for
//! systemd, load balancers and Prometheus, which serve no tenant data and need no auth; and
//! `POST /backup` for `openframe backup`, which streams every store and so requires the bearer
//! token `serve` writes to `<data_dir>/admin.token` (readable only by the data dir's owner).
//! The listener must never be exposed beyond the machine.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::metrics::StoreLabels;
use crate::startup::AppState;

pub fn router(state: AppState, token: &BackupToken) -> Router {
    let backups = Router::new()
        .route("/backup", post(backup))
        .with_state(BackupEndpoint {
            state: state.clone(),
            secret: token.secret.clone(),
        });
    Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(state)
        .merge(backups)
}

/// The secret `POST /backup` requires, and the file that hands it to `openframe backup`.
#[derive(Debug)]
pub struct BackupToken {
    secret: Arc<str>,
    path: PathBuf,
}

impl BackupToken {
    /// A fresh token in `<data_dir>/admin.token` (0600), replacing one a crashed run left, whose
    /// interrupted backups' scratch dirs go too. The caller holds the data dir's lock.
    pub fn create(data_dir: &Path) -> anyhow::Result<BackupToken> {
        use anyhow::Context;
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        crate::backup::remove_stale_scratch(data_dir);
        let secret = crate::identity::crypto::random_token()?;
        let path = data_dir.join(crate::backup::TOKEN_FILE);
        let staging = data_dir.join(format!("{}.new", crate::backup::TOKEN_FILE));
        let _ = std::fs::remove_file(&staging);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&staging)
            .with_context(|| format!("cannot create {}", staging.display()))?;
        file.write_all(secret.as_bytes())
            .and_then(|()| file.sync_all())
            .and_then(|()| std::fs::rename(&staging, &path))
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(BackupToken {
            secret: secret.into(),
            path,
        })
    }

    /// Removes the file at a clean stop: the token dies with the process that accepts it.
    pub fn remove(&self) {
        if let Err(error) = std::fs::remove_file(&self.path)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), %error, "cannot remove the admin token");
        }
    }
}

#[derive(Debug, Clone)]
struct BackupEndpoint {
    state: AppState,
    secret: Arc<str>,
}

/// An error as every other answer has it: `{code, message}`.
fn backup_error(status: StatusCode, message: String) -> Response {
    let code = match status {
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::SERVICE_UNAVAILABLE => "stopping",
        _ => "backup_failed",
    };
    let mut response = (
        status,
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Json(json!({ "code": code, "message": message })),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

/// A consistent snapshot of every store of record, as a tar archive (see [`crate::backup`]).
/// Built in a scratch dir inside the data dir, then streamed from an unlinked file, so nothing
/// is left behind whether the client reads it all or not.
async fn backup(
    State(endpoint): State<BackupEndpoint>,
    headers: axum::http::HeaderMap,
) -> Response {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    let authorized = presented.is_some_and(|presented| {
        crate::identity::crypto::constant_time_eq(presented.as_bytes(), endpoint.secret.as_bytes())
    });
    if !authorized {
        return backup_error(
            StatusCode::UNAUTHORIZED,
            format!(
                "a backup needs the token in {} of the data dir",
                crate::backup::TOKEN_FILE
            ),
        );
    }
    let state = &endpoint.state;
    if state.stopping.load(Ordering::SeqCst) {
        return backup_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the appliance is stopping".to_owned(),
        );
    }
    let data_dir = state.config.storage.data_dir.clone();
    let started = std::time::Instant::now();
    let built = async {
        let work = crate::backup::ScratchDir::create(&data_dir, ".backup-")?;
        let archive = work.path().join("backup.tar");
        let manifest = crate::backup::create_archive(
            &state.storage.records(),
            &data_dir,
            work.path(),
            &archive,
            &mut |step: &str| tracing::info!(step, "backup"),
        )
        .await?;
        // Open, then remove the scratch dir: the open file stays readable until it is sent.
        let file = tokio::fs::File::open(&archive).await?;
        let bytes = file.metadata().await?.len();
        drop(work);
        anyhow::Ok((manifest, file, bytes))
    }
    .await;
    match built {
        Ok((manifest, file, bytes)) => {
            state
                .metrics
                .backup_last_success
                .set(crate::backup::unix_now());
            tracing::info!(
                bytes,
                files = manifest.files.len(),
                tenants = manifest.tenants.len(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "backup taken; sending it"
            );
            let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(file));
            (
                [
                    (
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/x-tar"),
                    ),
                    (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
                    (header::CONTENT_LENGTH, HeaderValue::from(bytes)),
                ],
                body,
            )
                .into_response()
        }
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "backup failed");
            backup_error(StatusCode::INTERNAL_SERVER_ERROR, format!("{error:#}"))
        }
    }
}

/// The process is up and its runtime answers.
async fn live() -> Json<Value> {
    Json(json!({ "status": "live" }))
}

/// Every store answers a probe and the appliance is not shutting down: 200, else 503.
async fn ready(State(state): State<AppState>) -> Response {
    let report = state.storage.health().await;
    let mut stores = Map::new();
    let mut all_up = true;
    for engine in &report {
        let up = engine.problem.is_none();
        all_up &= up;
        let mut entry =
            json!({ "engine": engine.engine, "status": if up { "up" } else { "down" } });
        if let Some(problem) = &engine.problem {
            entry["problem"] = Value::String(problem.clone());
        }
        stores.insert(engine.role.to_owned(), entry);
        state
            .metrics
            .store_up
            .get_or_create(&StoreLabels {
                role: engine.role.into(),
                engine: engine.engine.into(),
            })
            .set(i64::from(up));
    }
    if let Some(nats) = &state.nats {
        use crate::management::nats::NatsState;
        let (status, problem, counts) = match nats.state() {
            NatsState::Up { .. } | NatsState::External => ("up", None, true),
            // Its first milliseconds; a server that does not come up turns Down.
            NatsState::Starting => ("starting", None, false),
            NatsState::Down { problem } => ("down", Some(problem), true),
            // Agents and CDC over NATS are unavailable, but nothing else is: not a reason to
            // take the appliance out of rotation.
            NatsState::NotInstalled { problem } => ("not installed", Some(problem), false),
        };
        if counts && status != "up" {
            all_up = false;
        }
        let mut entry = json!({
            "engine": if nats.state() == NatsState::External { "nats (external)" } else { "nats-server" },
            "status": status,
            "restarts": nats.restarts(),
        });
        if let Some(problem) = problem {
            entry["problem"] = Value::String(problem);
        }
        stores.insert("nats".to_owned(), entry);
    }
    let stopping = state.stopping.load(Ordering::SeqCst);
    let status = match (stopping, all_up) {
        (true, _) => "stopping",
        (false, true) => "ready",
        (false, false) => "unavailable",
    };
    let code = if status == "ready" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({ "status": status, "version": env!("CARGO_PKG_VERSION"), "stores": stores });
    (
        code,
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Json(body),
    )
        .into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    let management = &state.management;
    let gauge = |count: usize| i64::try_from(count).unwrap_or(i64::MAX);
    state
        .metrics
        .agent_sessions
        .set(gauge(management.sessions.open()));
    state
        .metrics
        .agents_online
        .set(gauge(management.presence.online()));
    if let Some(nats) = &state.nats {
        use crate::management::nats::NatsState;
        let up = matches!(nats.state(), NatsState::Up { .. } | NatsState::External);
        state.metrics.nats_up.set(i64::from(up));
        state.metrics.nats_restarts.set(i64::from(nats.restarts()));
    }
    let last_backup = state.metrics.backup_last_success.get();
    let age = if last_backup > 0 {
        crate::backup::unix_now().saturating_sub(last_backup)
    } else {
        -1
    };
    state.metrics.backup_age.set(age);
    let data_dir = state.config.storage.data_dir.clone();
    if let Ok(sizes) = tokio::task::spawn_blocking(move || store_sizes(&data_dir)).await {
        for (store, bytes) in sizes {
            state
                .metrics
                .store_bytes
                .get_or_create(&crate::metrics::StoreFileLabels { store })
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
    }
    match state.metrics.render() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            )],
            text,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Each store's bytes on disk: its file with the engine's side files (`-wal`, `.wal`), or its
/// directory's files.
fn store_sizes(data_dir: &std::path::Path) -> Vec<(&'static str, u64)> {
    use openframe_storage::files;
    fn size_of(path: &std::path::Path) -> u64 {
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.is_dir() => std::fs::read_dir(path)
                .into_iter()
                .flatten()
                .flatten()
                .map(|entry| size_of(&entry.path()))
                .sum(),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        }
    }
    let with_side_files = |name: &str| -> u64 {
        std::fs::read_dir(data_dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|entry| entry.file_name().to_string_lossy().starts_with(name))
            .map(|entry| size_of(&entry.path()))
            .sum()
    };
    vec![
        ("tenancy", with_side_files(files::TENANCY)),
        ("events", with_side_files(files::EVENTS)),
        ("analytics", with_side_files(files::ANALYTICS)),
        ("search", size_of(&data_dir.join(files::SEARCH))),
        ("nats", size_of(&data_dir.join("nats"))),
    ]
}
