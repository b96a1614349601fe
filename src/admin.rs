//! The admin listener (plain HTTP, loopback by default): liveness, readiness and metrics for
//! systemd, load balancers and Prometheus. It serves no tenant data, so it needs no auth, and it
//! must never be exposed beyond the machine.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value, json};

use crate::metrics::StoreLabels;
use crate::startup::AppState;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(state)
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
