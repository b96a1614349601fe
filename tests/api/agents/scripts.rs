//! Remote scripts with a real `nats-server`: test agents on `/ws/nats` run what they are sent
//! and answer as OpenFrame's agent does; executions, the unified log, the search index, the
//! watchdog (clock pinned), cancellation and bad results.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use openframe_storage::Clock;
use openframe_storage::model::{ManualClock, SystemClock};
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::support::{Machine, connect, enroll, registration_secret};
use crate::gateway::support::{error_of, two_tenants};
use crate::helpers::{TestApp, spawn_with_clock, test_config, with_nats};
use crate::stream::support::{ready_with_nats_up, rows, search, settle};

/// A test agent that runs nothing: it answers each script it is sent with `answer(message)`.
pub(crate) async fn agent_answering(
    app: &TestApp,
    machine: &Machine,
    answer: impl Fn(&Value) -> Value + Send + 'static,
) -> tokio::sync::mpsc::UnboundedReceiver<Value> {
    let (client, _errors) = connect(app, &machine.access_token).await;
    let id = machine.machine_id.clone();
    let mut scripts = client
        .subscribe(format!("machine.{id}.script-execution"))
        .await
        .unwrap();
    let mut commands = client
        .subscribe(format!("machine.{id}.command-execution"))
        .await
        .unwrap();
    let mut cancels = client
        .subscribe(format!("machine.{id}.command-cancel"))
        .await
        .unwrap();
    super::support::synced(&client, &id).await;
    let (seen, received) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (message, kind) = tokio::select! {
                Some(message) = scripts.next() => (message, "script-execution"),
                Some(message) = commands.next() => (message, "command-execution"),
                Some(message) = cancels.next() => (message, "command-cancel"),
                else => break,
            };
            let body: Value = serde_json::from_slice(&message.payload).unwrap();
            let _ = seen.send(json!({"kind": kind, "body": body}));
            if kind == "command-cancel" {
                continue;
            }
            let result = answer(&body);
            if result.is_null() {
                continue;
            }
            client
                .publish(
                    format!("machine.{id}.{kind}.result"),
                    result.to_string().into(),
                )
                .await
                .unwrap();
            client.flush().await.unwrap();
        }
    });
    received
}

async fn admin_post(app: &TestApp, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
    let response = app
        .client
        .post(app.https_url(path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn admin_get(app: &TestApp, token: &str, path: &str) -> (StatusCode, Value) {
    let response = app
        .client
        .get(app.https_url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

/// Polls the run until no execution is PENDING or DISPATCHED; fails after 15 s.
async fn finished(app: &TestApp, token: &str, execution_id: &str) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) =
            admin_get(app, token, &format!("/api/executions/{execution_id}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let executions = body["executions"].as_array().unwrap().clone();
        if executions
            .iter()
            .all(|e| !matches!(e["status"].as_str(), Some("PENDING" | "DISPATCHED")))
        {
            return executions;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not finished: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn on<'a>(executions: &'a [Value], machine: &Machine) -> &'a Value {
    executions
        .iter()
        .find(|e| e["machineId"] == machine.machine_id.as_str())
        .unwrap()
}

#[tokio::test]
async fn a_script_dispatched_to_two_machines_produces_two_executions_with_their_results() {
    let dir = tempfile::TempDir::new().unwrap();
    let clock = ManualClock::starting_at(SystemClock.now_ms());
    let mut app = spawn_with_clock(
        with_nats(test_config(&dir.path().join("data"))),
        Arc::new(clock.clone()),
    )
    .await;
    ready_with_nats_up(&app).await;
    let tenants = two_tenants(&app).await;
    let admin = tenants.admin_a.clone();
    let key = registration_secret(&app, "acme", &admin).await;
    let a = enroll(&app, &key, "ws-alpha").await;
    let b = enroll(&app, &key, "ws-bravo").await;
    let mut seen_a = agent_answering(&app, &a, |message| {
        json!({"execution_id": message["executionId"], "machine_id": message["machineId"],
               "stdout": "disk cleaned on alpha", "stderr": "", "exit_code": 0,
               "execution_time_ms": 812, "timed_out": false, "error": null,
               "script_id": message["scriptId"]})
    })
    .await;
    let mut seen_b = agent_answering(&app, &b, |message| {
        if message.get("scriptId").is_none() {
            return Value::Null; // commands: bravo never answers
        }
        json!({"execution_id": message["executionId"], "machine_id": message["machineId"],
               "stdout": "", "stderr": "permission denied on bravo", "exit_code": 2,
               "execution_time_ms": 40, "timed_out": false})
    })
    .await;

    // The library: a secret variable is sealed and never shown again.
    let (status, script) = admin_post(
        &app,
        &admin,
        "/api/scripts",
        json!({"name": "Clean temp", "shell": "bash", "scriptBody": "rm -rf /tmp/cache/*",
               "supportedPlatforms": ["LINUX"], "defaultTimeoutSeconds": 60,
               "envVars": [{"name": "TOKEN", "value": "s3cr3t-value", "secret": true},
                           {"name": "MODE", "value": "fast"}]}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{script}");
    assert_eq!(script["shell"], "BASH");
    assert_eq!(script["status"], "ACTIVE");
    assert_eq!(
        script["envVars"][0],
        json!({"name": "TOKEN", "value": null, "secret": true})
    );
    assert!(!script.to_string().contains("s3cr3t-value"));
    let script_id = script["id"].as_str().unwrap().to_owned();
    // Other tenants see nothing of it.
    let (status, _) = admin_get(&app, &tenants.admin_b, &format!("/api/scripts/{script_id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, run) = admin_post(
        &app,
        &admin,
        &format!("/api/scripts/{script_id}/run"),
        json!({"machineIds": [a.machine_id, b.machine_id], "args": ["--all"]}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{run}");
    let execution_id = run["executionId"].as_str().unwrap().to_owned();

    // Each agent got OpenFrame's ScriptMessage for itself, the secret included.
    for (seen, machine) in [(&mut seen_a, &a), (&mut seen_b, &b)] {
        let got = tokio::time::timeout(Duration::from_secs(5), seen.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got["kind"], "script-execution");
        let message = &got["body"];
        assert_eq!(message["executionId"], execution_id);
        assert_eq!(message["machineId"], machine.machine_id);
        assert_eq!(message["code"], "rm -rf /tmp/cache/*");
        assert_eq!(message["shell"], "BASH");
        assert_eq!(message["args"], json!(["--all"]));
        assert_eq!(message["timeoutSeconds"], 60);
        assert_eq!(
            message["envVars"][0],
            json!({"name": "TOKEN", "value": "s3cr3t-value", "secret": true})
        );
    }

    let executions = finished(&app, &admin, &execution_id).await;
    assert_eq!(executions.len(), 2);
    let alpha = on(&executions, &a);
    assert_eq!(alpha["status"], "SUCCESS");
    assert_eq!(alpha["exitCode"], 0);
    assert_eq!(alpha["stdout"], "disk cleaned on alpha");
    assert_eq!(alpha["executionTimeMs"], 812);
    assert_eq!(alpha["scriptId"], script_id);
    let bravo = on(&executions, &b);
    assert_eq!(bravo["status"], "FAILED");
    assert_eq!(bravo["exitCode"], 2);
    assert_eq!(bravo["stderr"], "permission denied on bravo");
    let (_, listed) = admin_get(
        &app,
        &admin,
        &format!("/api/scripts/{script_id}/executions"),
    )
    .await;
    assert_eq!(listed["executions"].as_array().unwrap().len(), 2);

    // In the unified log, attributed to each machine, and the output is searchable.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let logged = loop {
        settle(&app).await;
        let logged: Vec<(String, String)> = rows(&app, "acme")
            .await
            .into_iter()
            .filter(|row| row.event_type.starts_with("SCRIPT_"))
            .map(|row| (row.event_type, row.hostname.unwrap_or_default()))
            .collect();
        if logged.len() >= 2 || tokio::time::Instant::now() > deadline {
            break logged;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut logged = logged;
    logged.sort();
    assert_eq!(
        logged,
        vec![
            ("SCRIPT_EXECUTED".to_owned(), "ws-alpha".to_owned()),
            ("SCRIPT_FAILED".to_owned(), "ws-bravo".to_owned()),
        ]
    );
    assert_eq!(search(&app, "acme", "permission denied").await.len(), 1);
    assert!(search(&app, "globex", "permission denied").await.is_empty());

    // A command bravo never answers fails once its timeout and the grace period pass.
    let (status, run) = admin_post(
        &app,
        &admin,
        "/api/commands/run",
        json!({"machineIds": [b.machine_id], "shell": "SHELL", "command": "uptime", "timeoutSeconds": 5}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{run}");
    let silent = run["executionId"].as_str().unwrap().to_owned();
    let got = tokio::time::timeout(Duration::from_secs(5), seen_b.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got["body"]["code"], "uptime");
    assert_eq!(got["body"]["timeout"], 5);
    clock.advance_ms(36_000);
    let executions = finished(&app, &admin, &silent).await;
    assert_eq!(executions[0]["status"], "FAILED");
    assert_eq!(executions[0]["timedOut"], true);
    assert!(
        executions[0]["error"]
            .as_str()
            .unwrap()
            .contains("did not answer"),
        "{}",
        executions[0]
    );
    assert_eq!(executions[0]["command"], "uptime");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn bad_results_and_bad_runs_are_refused_and_change_nothing() {
    let dir = tempfile::TempDir::new().unwrap();
    let mut app = spawn_with_clock(
        with_nats(test_config(&dir.path().join("data"))),
        Arc::new(SystemClock),
    )
    .await;
    ready_with_nats_up(&app).await;
    let tenants = two_tenants(&app).await;
    let admin = tenants.admin_a.clone();
    let key = registration_secret(&app, "acme", &admin).await;
    let a = enroll(&app, &key, "ws-alpha").await;
    let b = enroll(&app, &key, "ws-bravo").await;
    // Alpha answers commands with far too much output.
    // (OpenFrame's CommandMessage names no machine: the agent answers with its own id, or none.)
    let mut seen_a = agent_answering(&app, &a, |message| {
        json!({"execution_id": message["executionId"], "stdout": "x".repeat(100 * 1024), "exit_code": 0})
    })
    .await;
    // Bravo answers nothing by itself; the test speaks for it.
    let mut seen_b = agent_answering(&app, &b, |_| Value::Null).await;
    let (bravo, mut bravo_errors) = connect(&app, &b.access_token).await;

    let (status, run) = admin_post(
        &app,
        &admin,
        "/api/commands/run",
        json!({"machineIds": [a.machine_id], "shell": "bash", "command": "cat big.log"}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let big = run["executionId"].as_str().unwrap().to_owned();
    seen_a.recv().await.unwrap();
    let executions = finished(&app, &admin, &big).await;
    assert_eq!(executions[0]["stdout"].as_str().unwrap().len(), 64 * 1024);
    assert_eq!(executions[0]["stdoutTruncated"], true);

    let (status, run) = admin_post(
        &app,
        &admin,
        "/api/commands/run",
        json!({"machineIds": [b.machine_id], "shell": "bash", "command": "sleep 100", "timeoutSeconds": 600}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let pending = run["executionId"].as_str().unwrap().to_owned();
    seen_b.recv().await.unwrap();
    // Results that are not bravo's to give: an unknown execution, alpha's execution, one that
    // names alpha as its machine, and garbage. None changes anything.
    for (subject_machine, payload) in [
        (
            &b.machine_id,
            json!({"execution_id": "00000000-0000-4000-8000-000000000000", "machine_id": b.machine_id, "exit_code": 0}),
        ),
        (
            &b.machine_id,
            json!({"execution_id": big, "machine_id": b.machine_id, "exit_code": 1}),
        ),
        (
            &b.machine_id,
            json!({"execution_id": pending, "machine_id": a.machine_id, "exit_code": 0}),
        ),
        (&b.machine_id, json!("not a result")),
    ] {
        bravo
            .publish(
                format!("machine.{subject_machine}.command-execution.result"),
                payload.to_string().into(),
            )
            .await
            .unwrap();
    }
    // Nor can bravo answer on alpha's subject.
    bravo
        .publish(
            format!("machine.{}.command-execution.result", a.machine_id),
            json!({"execution_id": big, "machine_id": a.machine_id, "exit_code": 9})
                .to_string()
                .into(),
        )
        .await
        .unwrap();
    bravo.flush().await.unwrap();
    let error = tokio::time::timeout(Duration::from_secs(5), bravo_errors.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        error.contains("Permissions Violation for Publish"),
        "{error}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, still) = admin_get(&app, &admin, &format!("/api/executions/{pending}")).await;
    assert_eq!(still["executions"][0]["status"], "DISPATCHED", "{still}");
    let (_, alpha_run) = admin_get(&app, &admin, &format!("/api/executions/{big}")).await;
    assert_eq!(alpha_run["executions"][0]["exitCode"], 0);

    // Cancelling tells the agent and closes the execution; a late result is refused.
    let (status, cancelled) = admin_post(
        &app,
        &admin,
        &format!("/api/executions/{pending}/cancel"),
        json!({"machineId": b.machine_id}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["status"], "CANCELLED");
    let got = tokio::time::timeout(Duration::from_secs(5), seen_b.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        got,
        json!({"kind": "command-cancel", "body": {"executionId": pending}})
    );
    bravo
        .publish(
            format!("machine.{}.command-execution.result", b.machine_id),
            json!({"execution_id": pending, "machine_id": b.machine_id, "exit_code": 0})
                .to_string()
                .into(),
        )
        .await
        .unwrap();
    bravo.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, after) = admin_get(&app, &admin, &format!("/api/executions/{pending}")).await;
    assert_eq!(after["executions"][0]["status"], "CANCELLED");
    let (status, again) = admin_post(
        &app,
        &admin,
        &format!("/api/executions/{pending}/cancel"),
        json!({"machineId": b.machine_id}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");

    // Bad runs: each names what to fix.
    for (path, body, field) in [
        (
            "/api/commands/run",
            json!({"machineIds": [], "shell": "bash", "command": "x"}),
            "machineIds",
        ),
        (
            "/api/commands/run",
            json!({"machineIds": ["nope"], "shell": "bash", "command": "x"}),
            "machineIds",
        ),
        (
            "/api/commands/run",
            json!({"machineIds": [a.machine_id], "shell": "zsh", "command": "x"}),
            "shell",
        ),
        (
            "/api/commands/run",
            json!({"machineIds": [a.machine_id], "shell": "bash", "command": "x", "timeoutSeconds": 0}),
            "timeoutSeconds",
        ),
        (
            "/api/commands/run",
            json!({"machineIds": [a.machine_id], "shell": "bash", "command": "x", "colour": 1}),
            "colour",
        ),
        (
            "/api/scripts",
            json!({"name": "", "shell": "bash", "scriptBody": "x"}),
            "name",
        ),
        (
            "/api/scripts",
            json!({"name": "n", "shell": "bash", "scriptBody": "x", "envVars": [{"name": "1BAD"}]}),
            "envVars",
        ),
        (
            "/api/scripts",
            json!({"name": "n", "shell": "bash", "scriptBody": "x", "envVars": [{"name": "K", "secret": true}]}),
            "envVars",
        ),
    ] {
        let (status, answer) = admin_post(&app, &admin, path, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert!(
            answer["message"].as_str().unwrap().contains(field),
            "{field}: {answer}"
        );
    }
    // Another tenant's machine is not a target.
    let key_b = registration_secret(&app, "globex", &tenants.admin_b).await;
    let globex = enroll(&app, &key_b, "gx-1").await;
    let (status, _) = admin_post(
        &app,
        &admin,
        "/api/commands/run",
        json!({"machineIds": [globex.machine_id], "shell": "bash", "command": "id"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Agents cannot reach the library.
    let denied = app
        .client
        .get(app.https_url("/api/scripts"))
        .bearer_auth(&a.access_token)
        .send()
        .await
        .unwrap();
    let (status, _, _) = error_of(denied).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    app.stop().await.unwrap();
}
