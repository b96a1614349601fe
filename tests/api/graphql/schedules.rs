//! Script schedules through GraphQL with a real `nats-server`, test agents on `/ws/nats` and
//! the clock pinned: machines assigned by id and by a device search, a firing on the 30-minute
//! grid with per-script arguments, runs and their derived status, `runScheduleJobNow`, a
//! `DEVICE_ONLINE` schedule that runs once on a machine coming online, archive, bad input, and
//! the other tenant.

use std::sync::Arc;
use std::time::Duration;

use openframe_storage::Clock;
use openframe_storage::model::{ManualClock, SystemClock};
use serde_json::{Value, json};

use super::support::{data, error};
use crate::agents::scripts::agent_answering;
use crate::agents::support::{enroll, registration_secret, wait_for_status};
use crate::gateway::support::two_tenants;
use crate::helpers::{TestApp, spawn_with_clock, test_config, with_nats};
use crate::identity::support::owner_token;
use crate::stream::support::ready_with_nats_up;

const GRID_MS: i64 = 30 * 60 * 1000;

fn iso(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

const RUNS: &str = "query($id: ID!) { scheduleRuns(scheduleId: $id) { filteredCount edges { node {
    runId trigger status totalMachineCount executionCount finishedCount failedCount executionIds error
    dispatchedAt finishedAt } } } }";

/// Polls the schedule's runs until there are `count` and none is RUNNING; fails after 15 s.
async fn runs_settled(app: &TestApp, token: &str, schedule: &str, count: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let found = data(app, token, RUNS, json!({"id": schedule})).await;
        let runs: Vec<Value> = found["scheduleRuns"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|edge| edge["node"].clone())
            .collect();
        if runs.len() == count && runs.iter().all(|run| run["status"] != "RUNNING") {
            return runs;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "expected {count} settled runs: {found}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn next_message(seen: &mut tokio::sync::mpsc::UnboundedReceiver<Value>) -> Value {
    tokio::time::timeout(Duration::from_secs(10), seen.recv())
        .await
        .expect("the agent got a message in time")
        .expect("the agent is running")
}

#[tokio::test]
async fn schedules_fire_on_the_grid_and_on_first_online_and_their_runs_show_in_graphql() {
    let dir = tempfile::TempDir::new().unwrap();
    let now = SystemClock.now_ms();
    // Two minutes before a grid time (access tokens live 15 minutes).
    let start = now - now % GRID_MS + GRID_MS;
    let clock = ManualClock::starting_at(start - 2 * 60 * 1000);
    let mut app = spawn_with_clock(
        with_nats(test_config(&dir.path().join("data"))),
        Arc::new(clock.clone()),
    )
    .await;
    ready_with_nats_up(&app).await;
    let tenants = two_tenants(&app).await;
    let admin = tenants.admin_a.clone();
    let key = registration_secret(&app, "acme", &admin).await;
    let alpha = enroll(&app, &key, "sched-alpha").await;
    let bravo = enroll(&app, &key, "sched-bravo").await;
    let mut seen_alpha = agent_answering(
        &app,
        &alpha,
        |message| json!({"execution_id": message["executionId"], "stdout": "ok", "exit_code": 0}),
    )
    .await;
    let mut seen_bravo = agent_answering(&app, &bravo, |message| {
        json!({"execution_id": message["executionId"], "stderr": "disk full", "exit_code": 1})
    })
    .await;
    wait_for_status(&app, "acme", &alpha.machine_id, "ONLINE").await;
    wait_for_status(&app, "acme", &bravo.machine_id, "ONLINE").await;
    let script = data(
        &app,
        &admin,
        "mutation { createScript(input: {name: \"Rotate logs\", shell: BASH, scriptBody: \"logrotate -f\"}) { id scriptId } }",
        json!({}),
    )
    .await;
    let script_gid = script["createScript"]["id"].as_str().unwrap().to_owned();
    let script_id = script["createScript"]["scriptId"]
        .as_str()
        .unwrap()
        .to_owned();

    // Bad settings are refused with the field named, and store nothing.
    let create =
        "mutation($input: ScriptScheduleInput!) { createScriptSchedule(input: $input) { id } }";
    let base = json!({"name": "Nightly", "scriptIds": [script_gid], "trigger": "DATE_TIME",
                      "startAt": iso(start), "repeat": 1800});
    let with = |patch: Value| {
        let mut input = base.clone();
        for (key, value) in patch.as_object().unwrap() {
            input[key] = value.clone();
        }
        json!({ "input": input })
    };
    for (patch, field) in [
        (json!({"startAt": iso(start + 60_000)}), "startAt"),
        (json!({"repeat": 1000}), "repeat"),
        (
            json!({"startAt": iso(start - GRID_MS), "repeat": null}),
            "startAt",
        ),
        (json!({"trigger": "DEVICE_ONLINE"}), "startAt"),
        (
            json!({"scriptIds": ["d6c3d1f0-0000-4000-8000-000000000000"]}),
            "scriptIds",
        ),
        (json!({"scriptIds": []}), "scriptIds"),
        (
            json!({"scriptCustomParams": [{"scriptId": script_id, "envVars": [{"name": "PW", "value": "x", "secret": true}]}]}),
            "scriptCustomParams",
        ),
        (
            json!({"deviceCriteria": {"osTypes": ["BEOS"]}}),
            "deviceCriteria.osTypes",
        ),
        (json!({"startAt": "tomorrow"}), "input.startAt"),
    ] {
        let (code, message) = error(&app, &admin, create, with(patch.clone())).await;
        assert_eq!(code, "invalid_input", "{patch}: {message}");
        assert!(message.starts_with(field), "{patch}: {message}");
    }
    let none = data(
        &app,
        &admin,
        "{ scriptSchedules { filteredCount } }",
        json!({}),
    )
    .await;
    assert_eq!(none["scriptSchedules"]["filteredCount"], 0);

    let created = data(
        &app,
        &admin,
        "mutation($input: ScriptScheduleInput!) { createScriptSchedule(input: $input) {
            id scheduleId name trigger selectionMode startAt repeat nextRunAt lastRunAt status deviceCount
            scriptIds scripts { name } scriptCustomParams { scriptId args envVars { name value } } } }",
        with(json!({"scriptCustomParams": [{"scriptId": script_gid, "args": ["--deep"],
                                           "envVars": [{"name": "LEVEL", "value": "2"}]}]})),
    )
    .await;
    let schedule = &created["createScriptSchedule"];
    assert_eq!(schedule["trigger"], "DATE_TIME");
    assert_eq!(schedule["selectionMode"], "SPECIFIC");
    assert_eq!(schedule["startAt"], iso(start));
    assert_eq!(schedule["nextRunAt"], iso(start));
    assert_eq!(schedule["lastRunAt"], Value::Null);
    assert_eq!(schedule["repeat"], 1800);
    assert_eq!(schedule["deviceCount"], 0);
    assert_eq!(schedule["scriptIds"], json!([script_id]));
    assert_eq!(schedule["scripts"], json!([{"name": "Rotate logs"}]));
    assert_eq!(
        schedule["scriptCustomParams"],
        json!([{"scriptId": script_id, "args": ["--deep"], "envVars": [{"name": "LEVEL", "value": "2"}]}])
    );
    let schedule_gid = schedule["id"].as_str().unwrap().to_owned();

    // Machines: by id, by a device search, removed and added back.
    let devices = "mutation($id: ID!, $alpha: String!, $bravo: String!) {
        set: setScriptScheduleDevices(scheduleId: $id, machineIds: [$alpha]) { deviceCount }
        all: addAllDevicesToSchedule(scheduleId: $id, filter: {statuses: [ONLINE, OFFLINE, PENDING]}, search: \"sched-bravo\") { deviceCount }
        removed: removeDevicesFromSchedule(scheduleId: $id, machineIds: [$bravo]) { deviceCount }
        added: addDevicesToSchedule(scheduleId: $id, machineIds: [$bravo]) {
            deviceCount assignedDevices { filteredCount edges { assigned node { hostname } } }
            availableDevices(search: \"sched\") { edges { assigned node { hostname } } } } }";
    let assigned = data(
        &app,
        &admin,
        devices,
        json!({"id": schedule_gid, "alpha": alpha.machine_id, "bravo": bravo.machine_id}),
    )
    .await;
    assert_eq!(assigned["set"]["deviceCount"], 1);
    assert_eq!(assigned["all"]["deviceCount"], 2);
    assert_eq!(assigned["removed"]["deviceCount"], 1);
    assert_eq!(assigned["added"]["deviceCount"], 2);
    assert_eq!(
        assigned["added"]["assignedDevices"],
        json!({"filteredCount": 2, "edges": [
            {"assigned": true, "node": {"hostname": "sched-alpha"}},
            {"assigned": true, "node": {"hostname": "sched-bravo"}}]})
    );
    let (code, message) = error(
        &app,
        &admin,
        "mutation($id: ID!) { addDevicesToSchedule(scheduleId: $id, machineIds: [\"nope\"]) { deviceCount } }",
        json!({"id": schedule_gid}),
    )
    .await;
    assert_eq!(code, "invalid_input");
    assert!(message.starts_with("machineIds"), "{message}");

    // Nothing runs before the start; at the start both machines get the script, in one run.
    let runs = data(&app, &admin, RUNS, json!({"id": schedule_gid})).await;
    assert_eq!(runs["scheduleRuns"]["filteredCount"], 0);
    clock.advance_ms(2 * 60 * 1000);
    for (seen, machine) in [(&mut seen_alpha, &alpha), (&mut seen_bravo, &bravo)] {
        let got = next_message(seen).await;
        assert_eq!(got["kind"], "script-execution");
        let body = &got["body"];
        assert_eq!(body["machineId"], machine.machine_id);
        assert_eq!(body["scriptId"], script_id);
        assert_eq!(body["scheduleId"], schedule["scheduleId"]);
        assert_eq!(body["args"], json!(["--deep"]));
        assert_eq!(
            body["envVars"],
            json!([{"name": "LEVEL", "value": "2", "secret": false}])
        );
    }
    let runs = runs_settled(&app, &admin, &schedule_gid, 1).await;
    assert_eq!(runs[0]["trigger"], "DATE_TIME");
    assert_eq!(runs[0]["totalMachineCount"], 2);
    assert_eq!(runs[0]["status"], "FAILED", "bravo failed: {}", runs[0]);
    assert_eq!(
        (
            runs[0]["executionCount"].clone(),
            runs[0]["finishedCount"].clone(),
            runs[0]["failedCount"].clone()
        ),
        (json!(2), json!(2), json!(1))
    );
    assert_eq!(runs[0]["executionIds"].as_array().unwrap().len(), 1);
    assert_eq!(runs[0]["dispatchedAt"], iso(start));
    let after_run = data(
        &app,
        &admin,
        "query($id: ID!) { scriptSchedule(id: $id) { nextRunAt lastRunAt }
          scheduleExecutions(scheduleId: $id) { filteredCount edges { node { source status machine { hostname } } } }
          scheduleExecutionFilters(scheduleId: $id) { statuses { value count } } }",
        json!({"id": schedule_gid}),
    )
    .await;
    assert_eq!(
        after_run["scriptSchedule"],
        json!({"nextRunAt": iso(start + GRID_MS), "lastRunAt": iso(start)})
    );
    assert_eq!(after_run["scheduleExecutions"]["filteredCount"], 2);
    for edge in after_run["scheduleExecutions"]["edges"].as_array().unwrap() {
        assert_eq!(edge["node"]["source"], "SCHEDULED");
    }
    assert_eq!(
        after_run["scheduleExecutionFilters"]["statuses"],
        json!([{"value": "FAILED", "count": 1}, {"value": "SUCCESS", "count": 1}])
    );

    // By hand, now: a second run, MANUAL, started by the technician.
    let now_run = data(
        &app,
        &admin,
        "mutation($id: ID!) { runScheduleJobNow(scheduleId: $id) { executionId runId } }",
        json!({"id": schedule_gid}),
    )
    .await;
    assert!(now_run["runScheduleJobNow"]["runId"].is_string());
    next_message(&mut seen_alpha).await;
    next_message(&mut seen_bravo).await;
    let runs = runs_settled(&app, &admin, &schedule_gid, 2).await;
    assert_eq!(runs[0]["trigger"], "MANUAL", "newest first: {runs:?}");
    assert_eq!(runs[0]["runId"], now_run["runScheduleJobNow"]["runId"]);
    let filters = data(
        &app,
        &admin,
        "query($id: ID!) { scheduleRunFilters(scheduleId: $id) { filteredCount triggers { value count } }
          failed: scheduleRuns(scheduleId: $id, filter: {statuses: [FAILED]}) { filteredCount } }",
        json!({"id": schedule_gid}),
    )
    .await;
    assert_eq!(
        filters["scheduleRunFilters"],
        json!({"filteredCount": 2, "triggers": [{"value": "DATE_TIME", "count": 1}, {"value": "MANUAL", "count": 1}]})
    );
    assert_eq!(filters["failed"]["filteredCount"], 2);
    let run_gid = data(
        &app,
        &admin,
        "query($id: ID!) { scheduleRuns(scheduleId: $id, first: 1) { edges { node { id } } } }",
        json!({"id": schedule_gid}),
    )
    .await["scheduleRuns"]["edges"][0]["node"]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Archived, the schedule does not fire; unarchived, it resumes on the grid after now.
    data(
        &app,
        &admin,
        "mutation($id: ID!) { archiveScriptSchedule(id: $id) { status } }",
        json!({"id": schedule_gid}),
    )
    .await;
    clock.advance_ms(GRID_MS);
    // Half an hour on, the technicians sign in again.
    let admin = owner_token(&app, &tenants.a).await;
    let other = owner_token(&app, &tenants.b).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let still = data(&app, &admin, RUNS, json!({"id": schedule_gid})).await;
    assert_eq!(
        still["scheduleRuns"]["filteredCount"], 2,
        "an archived schedule fired"
    );
    let resumed = data(
        &app,
        &admin,
        "mutation($id: ID!) { unarchiveScriptSchedule(id: $id) { status nextRunAt } }",
        json!({"id": schedule_gid}),
    )
    .await;
    assert_eq!(
        resumed["unarchiveScriptSchedule"],
        json!({"status": "ACTIVE", "nextRunAt": iso(start + 2 * GRID_MS)})
    );

    // DEVICE_ONLINE: once per machine, the first time it comes online; those online already
    // are not touched.
    let online = data(
        &app,
        &admin,
        "mutation($script: ID!) { createScriptSchedule(input: {name: \"Onboarding\", scriptIds: [$script],
            trigger: DEVICE_ONLINE, selectionMode: CRITERIA, deviceCriteria: {osTypes: [\"LINUX\"]}}) { id scheduleId deviceCount } }",
        json!({"script": script_gid}),
    )
    .await;
    let online_gid = online["createScriptSchedule"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(online["createScriptSchedule"]["deviceCount"], 2);
    let charlie = enroll(&app, &key, "sched-charlie").await;
    let mut seen_charlie = agent_answering(&app, &charlie, |message| {
        json!({"execution_id": message["executionId"], "stdout": "welcome", "exit_code": 0})
    })
    .await;
    let got = next_message(&mut seen_charlie).await;
    assert_eq!(
        got["body"]["scheduleId"],
        online["createScriptSchedule"]["scheduleId"]
    );
    let runs = runs_settled(&app, &admin, &online_gid, 1).await;
    assert_eq!(runs[0]["trigger"], "DEVICE_ONLINE");
    assert_eq!(runs[0]["totalMachineCount"], 1);
    assert_eq!(runs[0]["status"], "SUCCESS");
    assert!(
        seen_alpha.try_recv().is_err() && seen_bravo.try_recv().is_err(),
        "machines online before the schedule got nothing"
    );

    // The other tenant sees none of it.
    let other = &other;
    for query in [
        "query($id: ID!) { scriptSchedule(id: $id) { name } }",
        "query($id: ID!) { scheduleRuns(scheduleId: $id) { filteredCount } }",
        "query($id: ID!) { scheduleExecutions(scheduleId: $id) { filteredCount } }",
        "mutation($id: ID!) { runScheduleJobNow(scheduleId: $id) { runId } }",
        "mutation($id: ID!) { deleteScriptSchedule(id: $id) }",
    ] {
        let (code, _) = error(&app, other, query, json!({"id": schedule_gid})).await;
        assert_eq!(code, "not_found", "{query}");
    }
    let seen_by_other = data(
        &app,
        other,
        "query($run: ID!, $schedule: ID!) { run: node(id: $run) { id } schedule: node(id: $schedule) { id } scriptSchedules { filteredCount } }",
        json!({"run": run_gid, "schedule": schedule_gid}),
    )
    .await;
    assert_eq!(
        seen_by_other,
        json!({"run": null, "schedule": null, "scriptSchedules": {"filteredCount": 0}})
    );
    let mine = data(
        &app,
        &admin,
        "query($run: ID!) { node(id: $run) { ... on ScheduleRun { trigger } } }",
        json!({"run": run_gid}),
    )
    .await;
    assert_eq!(mine["node"]["trigger"], "MANUAL");

    // Deleted, it is gone.
    data(
        &app,
        &admin,
        "mutation($id: ID!) { deleteScriptSchedule(id: $id) }",
        json!({"id": schedule_gid}),
    )
    .await;
    let (code, _) = error(
        &app,
        &admin,
        "query($id: ID!) { scriptSchedule(id: $id) { name } }",
        json!({"id": schedule_gid}),
    )
    .await;
    assert_eq!(code, "not_found");
    let listed = data(
        &app,
        &admin,
        "{ scriptSchedules { edges { node { name trigger } } } scriptScheduleFilters { filteredCount triggers { value count } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        listed,
        json!({"scriptSchedules": {"edges": [{"node": {"name": "Onboarding", "trigger": "DEVICE_ONLINE"}}]},
               "scriptScheduleFilters": {"filteredCount": 1, "triggers": [{"value": "DEVICE_ONLINE", "count": 1}]}})
    );
    app.stop().await.unwrap();
}
