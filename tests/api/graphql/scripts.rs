//! Remote scripts through GraphQL, with a real `nats-server` and test agents on `/ws/nats`:
//! the library (secret variables sealed and kept), a batch run on two machines whose results
//! show in `scriptExecutions`, `runExecutions`, `node` and the unified log, commands,
//! cancellation, archive and delete, bad input, the audit trail, and the other tenant.

use std::sync::Arc;
use std::time::Duration;

use openframe_storage::model::SystemClock;
use serde_json::{Value, json};

use super::support::{data, error, gql};
use crate::agents::scripts::agent_answering;
use crate::agents::support::{enroll, registration_secret};
use crate::gateway::support::two_tenants;
use crate::helpers::{TestApp, spawn_with_clock, test_config, with_nats};
use crate::stream::support::{ready_with_nats_up, settle};

const EXECUTION: &str = "executionId machineId machine { hostname } scriptId command status exitCode stdout stderr executionTimeMs timedOut error initiatedBy source";

/// Polls `runExecutions` until none is PENDING or DISPATCHED; fails after 15 s.
async fn finished(app: &TestApp, token: &str, execution_id: &str) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let found = data(
            app,
            token,
            &format!("query($id: String!) {{ runExecutions(executionId: $id) {{ {EXECUTION} }} }}"),
            json!({"id": execution_id}),
        )
        .await;
        let executions = found["runExecutions"].as_array().unwrap().clone();
        if !executions.is_empty()
            && executions
                .iter()
                .all(|e| !matches!(e["status"].as_str(), Some("PENDING" | "DISPATCHED")))
        {
            return executions;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not finished: {found}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn next_message(seen: &mut tokio::sync::mpsc::UnboundedReceiver<Value>) -> Value {
    tokio::time::timeout(Duration::from_secs(5), seen.recv())
        .await
        .expect("the agent got a message in time")
        .expect("the agent is running")
}

#[tokio::test]
async fn a_batch_run_on_two_machines_shows_both_executions_in_graphql_and_the_log() {
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
    let alpha = enroll(&app, &key, "gql-alpha").await;
    let bravo = enroll(&app, &key, "gql-bravo").await;
    let mut seen_alpha = agent_answering(&app, &alpha, |message| {
        json!({"execution_id": message["executionId"], "stdout": "cleaned 3 files on alpha",
               "stderr": "", "exit_code": 0, "execution_time_ms": 120, "timed_out": false})
    })
    .await;
    let mut seen_bravo = agent_answering(&app, &bravo, |message| {
        if message.get("scriptId").is_none() {
            return Value::Null; // commands: bravo never answers
        }
        json!({"execution_id": message["executionId"], "stdout": "",
               "stderr": "quota exceeded on bravo", "exit_code": 3, "execution_time_ms": 40,
               "timed_out": false})
    })
    .await;

    // The library. The secret is sealed: never in an answer, and kept by a PUT without it.
    let created = data(
        &app,
        &admin,
        "mutation($input: CreateScriptInput!) { createScript(input: $input) {
            id scriptId name shell privilegeLevel supportedPlatforms defaultTimeoutSeconds
            defaultArgs envVars { name value secret } tagIds status createdBy } }",
        json!({"input": {"name": "Clean temp", "shell": "BASH", "scriptBody": "rm -rf /tmp/cache/*",
                         "supportedPlatforms": ["LINUX"], "defaultTimeoutSeconds": 60,
                         "defaultArgs": ["--all"], "tagIds": ["maintenance"],
                         "envVars": [{"name": "TOKEN", "value": "s3cr3t-value", "secret": true},
                                     {"name": "MODE", "value": "fast"}]}}),
    )
    .await;
    let script = &created["createScript"];
    assert!(!created.to_string().contains("s3cr3t-value"), "{created}");
    assert_eq!(script["shell"], "BASH");
    assert_eq!(script["privilegeLevel"], "USER");
    assert_eq!(script["supportedPlatforms"], json!(["LINUX"]));
    assert_eq!(script["status"], "ACTIVE");
    assert_eq!(
        script["envVars"],
        json!([{"name": "TOKEN", "value": null, "secret": true},
               {"name": "MODE", "value": "fast", "secret": false}])
    );
    let script_gid = script["id"].as_str().unwrap().to_owned();
    let script_id = script["scriptId"].as_str().unwrap().to_owned();
    let updated = data(
        &app,
        &admin,
        "mutation($input: UpdateScriptInput!) { updateScript(input: $input) { name defaultArgs envVars { name value secret } } }",
        json!({"input": {"id": script_gid, "name": "Clean temp files", "shell": "BASH",
                         "scriptBody": "rm -rf /tmp/cache/*", "supportedPlatforms": ["LINUX"],
                         "defaultTimeoutSeconds": 60, "defaultArgs": ["--all"],
                         "tagIds": ["maintenance"],
                         "envVars": [{"name": "TOKEN", "secret": true}, {"name": "MODE", "value": "fast"}]}}),
    )
    .await;
    assert_eq!(updated["updateScript"]["name"], "Clean temp files");
    assert_eq!(
        updated["updateScript"]["envVars"][0],
        json!({"name": "TOKEN", "value": null, "secret": true})
    );

    let listed = data(
        &app,
        &admin,
        "{ scripts(filter: {shells: [BASH], supportedPlatforms: [LINUX]}, search: \"temp\") {
             filteredCount edges { node { scriptId name } } }
           none: scripts(filter: {shells: [POWERSHELL]}) { filteredCount }
           scriptFilters { filteredCount shells { value count } platforms { value count } statuses { value count } } }",
        json!({}),
    )
    .await;
    assert_eq!(listed["scripts"]["filteredCount"], 1, "{listed}");
    assert_eq!(
        listed["scripts"]["edges"][0]["node"],
        json!({"scriptId": script_id, "name": "Clean temp files"})
    );
    assert_eq!(listed["none"]["filteredCount"], 0);
    assert_eq!(
        listed["scriptFilters"],
        json!({"filteredCount": 1, "shells": [{"value": "BASH", "count": 1}],
               "platforms": [{"value": "LINUX", "count": 1}],
               "statuses": [{"value": "ACTIVE", "count": 1}]})
    );

    // One run, two machines.
    let run = data(
        &app,
        &admin,
        "mutation($input: BatchRunScriptInput!) { batchRunScript(input: $input) { executionId } }",
        json!({"input": {"machineIds": [alpha.machine_id, bravo.machine_id], "scriptId": script_id,
                         "timeoutSeconds": 30}}),
    )
    .await;
    let execution_id = run["batchRunScript"]["executionId"]
        .as_str()
        .unwrap()
        .to_owned();
    for (seen, machine) in [(&mut seen_alpha, &alpha), (&mut seen_bravo, &bravo)] {
        let got = next_message(seen).await;
        assert_eq!(got["kind"], "script-execution");
        assert_eq!(got["body"]["executionId"], execution_id);
        assert_eq!(got["body"]["machineId"], machine.machine_id);
        assert_eq!(got["body"]["args"], json!(["--all"]));
        assert_eq!(got["body"]["timeoutSeconds"], 30);
        // The PUT without the secret's value kept it: the agent receives it.
        assert_eq!(
            got["body"]["envVars"][0],
            json!({"name": "TOKEN", "value": "s3cr3t-value", "secret": true})
        );
    }
    let executions = finished(&app, &admin, &execution_id).await;
    assert_eq!(executions.len(), 2, "{executions:?}");
    let by_host = |host: &str| {
        executions
            .iter()
            .find(|e| e["machine"]["hostname"] == host)
            .unwrap_or_else(|| panic!("no execution on {host}: {executions:?}"))
            .clone()
    };
    let on_alpha = by_host("gql-alpha");
    assert_eq!(on_alpha["status"], "SUCCESS");
    assert_eq!(on_alpha["exitCode"], 0);
    assert_eq!(on_alpha["stdout"], "cleaned 3 files on alpha");
    assert_eq!(on_alpha["executionTimeMs"], 120);
    assert_eq!(on_alpha["scriptId"], script_id);
    assert_eq!(on_alpha["source"], "MANUAL");
    let on_bravo = by_host("gql-bravo");
    assert_eq!(on_bravo["status"], "FAILED");
    assert_eq!(on_bravo["exitCode"], 3);
    assert_eq!(on_bravo["stderr"], "quota exceeded on bravo");

    // The script's executions: paged, filtered, searched, with facets labelled by hostname.
    let history = data(
        &app,
        &admin,
        &format!(
            "query($script: ID!) {{
               all: scriptExecutions(scriptId: $script, first: 1) {{ filteredCount pageInfo {{ hasNextPage }} edges {{ node {{ id machineId }} }} }}
               failed: scriptExecutions(scriptId: $script, filter: {{statuses: [FAILED]}}) {{ edges {{ node {{ {EXECUTION} }} }} }}
               searched: scriptExecutions(scriptId: $script, search: \"CLEANED 3\") {{ edges {{ node {{ machineId }} }} }}
               scriptExecutionFilters(scriptId: $script) {{ filteredCount statuses {{ value count }} machines {{ value label count }} }} }}"
        ),
        json!({"script": script_gid}),
    )
    .await;
    assert_eq!(history["all"]["filteredCount"], 2, "{history}");
    assert_eq!(history["all"]["pageInfo"]["hasNextPage"], true);
    assert_eq!(history["failed"]["edges"][0]["node"], on_bravo);
    assert_eq!(
        history["searched"]["edges"],
        json!([{"node": {"machineId": alpha.machine_id}}])
    );
    let filters = &history["scriptExecutionFilters"];
    assert_eq!(filters["filteredCount"], 2);
    assert_eq!(
        filters["statuses"],
        json!([{"value": "FAILED", "count": 1}, {"value": "SUCCESS", "count": 1}])
    );
    let mut labels: Vec<&str> = filters["machines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|option| option["label"].as_str().unwrap())
        .collect();
    labels.sort_unstable();
    assert_eq!(labels, ["gql-alpha", "gql-bravo"]);
    // An execution is a Relay node.
    let execution_gid = history["all"]["edges"][0]["node"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let node = data(
        &app,
        &admin,
        "query($id: ID!) { node(id: $id) { id ... on ScriptExecution { executionId status } } }",
        json!({"id": execution_gid}),
    )
    .await;
    assert_eq!(node["node"]["id"], execution_gid);
    assert_eq!(node["node"]["executionId"], execution_id);

    // Both results are in the unified log, attributed to their machines, output searchable.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let logged = loop {
        settle(&app).await;
        let logs = data(
            &app,
            &admin,
            "{ logs(filter: {eventTypes: [\"SCRIPT_EXECUTED\", \"SCRIPT_FAILED\"]}, first: 10) { edges { node { eventType hostname } } }
               searched: logs(search: \"quota exceeded\", first: 10) { edges { node { hostname } } } }",
            json!({}),
        )
        .await;
        if logs["logs"]["edges"].as_array().unwrap().len() >= 2
            || tokio::time::Instant::now() > deadline
        {
            break logs;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut events: Vec<(String, String)> = logged["logs"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|edge| {
            (
                edge["node"]["eventType"].as_str().unwrap().to_owned(),
                edge["node"]["hostname"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    events.sort();
    assert_eq!(
        events,
        [
            ("SCRIPT_EXECUTED".to_owned(), "gql-alpha".to_owned()),
            ("SCRIPT_FAILED".to_owned(), "gql-bravo".to_owned())
        ]
    );
    assert_eq!(
        logged["searched"]["edges"],
        json!([{"node": {"hostname": "gql-bravo"}}])
    );

    // A command bravo never answers, cancelled: the agent is told, the execution is CANCELLED.
    let run = data(
        &app,
        &admin,
        "mutation($input: RunCommandInput!) { runCommand(input: $input) { executionId } }",
        json!({"input": {"machineId": bravo.machine_id, "shell": "SHELL", "command": "sleep 600",
                         "timeoutSeconds": 900}}),
    )
    .await;
    let command_id = run["runCommand"]["executionId"]
        .as_str()
        .unwrap()
        .to_owned();
    let got = next_message(&mut seen_bravo).await;
    assert_eq!(got["kind"], "command-execution");
    assert_eq!(got["body"]["code"], "sleep 600");
    data(
        &app,
        &admin,
        "mutation($input: CancelExecutionInput!) { cancelExecution(input: $input) { executionId } }",
        json!({"input": {"machineId": bravo.machine_id, "executionId": command_id}}),
    )
    .await;
    let got = next_message(&mut seen_bravo).await;
    assert_eq!(got["kind"], "command-cancel");
    assert_eq!(got["body"]["executionId"], command_id);
    let cancelled = finished(&app, &admin, &command_id).await;
    assert_eq!(cancelled[0]["status"], "CANCELLED");
    assert_eq!(cancelled[0]["command"], "sleep 600");
    assert_eq!(cancelled[0]["scriptId"], Value::Null);
    let (code, message) = error(
        &app,
        &admin,
        "mutation($input: CancelExecutionInput!) { cancelExecution(input: $input) { executionId } }",
        json!({"input": {"machineId": bravo.machine_id, "executionId": command_id}}),
    )
    .await;
    assert_eq!(code, "conflict", "{message}");
    assert!(message.contains("already finished"), "{message}");

    // The other tenant sees none of it and changes nothing.
    let other = &tenants.admin_b;
    let (code, _) = error(
        &app,
        other,
        "query($id: ID!) { scriptExecutions(scriptId: $id) { filteredCount } }",
        json!({"id": script_gid}),
    )
    .await;
    assert_eq!(code, "not_found");
    let seen_by_other = data(
        &app,
        other,
        "query($run: String!, $node: ID!) { runExecutions(executionId: $run) { status } node(id: $node) { id } scripts { filteredCount } }",
        json!({"run": execution_id, "node": execution_gid}),
    )
    .await;
    assert_eq!(
        seen_by_other,
        json!({"runExecutions": [], "node": null, "scripts": {"filteredCount": 0}})
    );
    let (code, _) = error(
        &app,
        other,
        "mutation($input: BatchRunScriptInput!) { batchRunScript(input: $input) { executionId } }",
        json!({"input": {"machineIds": [alpha.machine_id], "scriptId": script_id}}),
    )
    .await;
    assert_eq!(code, "not_found");

    // Archived scripts do not run; deleted ones are gone from the library.
    let archived = data(
        &app,
        &admin,
        "mutation($id: ID!) { archiveScript(id: $id) { status } }",
        json!({"id": script_gid}),
    )
    .await;
    assert_eq!(archived["archiveScript"]["status"], "ARCHIVED");
    let (code, message) = error(
        &app,
        &admin,
        "mutation($input: RunScriptInput!) { runScript(input: $input) { executionId } }",
        json!({"input": {"machineId": alpha.machine_id, "scriptId": script_id}}),
    )
    .await;
    assert_eq!(code, "conflict", "{message}");
    assert!(message.contains("ARCHIVED"), "{message}");
    data(
        &app,
        &admin,
        "mutation($id: ID!) { unarchiveScript(id: $id) { status } deleteScript(id: $id) }",
        json!({"id": script_gid}),
    )
    .await;
    let (code, _) = error(
        &app,
        &admin,
        "query($id: ID!) { script(id: $id) { name } }",
        json!({"id": script_gid}),
    )
    .await;
    assert_eq!(code, "not_found");
    let after_delete = data(
        &app,
        &admin,
        "{ scripts { filteredCount } deleted: scripts(filter: {statuses: [DELETED]}) { edges { node { status } } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        after_delete,
        json!({"scripts": {"filteredCount": 0}, "deleted": {"edges": [{"node": {"status": "DELETED"}}]}})
    );

    // Every change is in the audit trail, and no secret is.
    let audit = gql(
        &app,
        &admin,
        "{ auditEvents(first: 100) { edges { node { action targetType before after } } } }",
        json!({}),
    )
    .await;
    let actions: Vec<&str> = audit["data"]["auditEvents"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|edge| edge["node"]["action"].as_str().unwrap())
        .collect();
    for action in [
        "createScript",
        "updateScript",
        "batchRunScript",
        "runCommand",
        "cancelExecution",
        "archiveScript",
        "unarchiveScript",
        "deleteScript",
    ] {
        assert!(actions.contains(&action), "{action} not in {actions:?}");
    }
    assert!(!audit.to_string().contains("s3cr3t-value"), "{audit}");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn bad_script_input_gets_codes_that_name_the_field_and_stores_nothing() {
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
    let machine = enroll(&app, &key, "gql-bad").await;
    let create = "mutation($input: CreateScriptInput!) { createScript(input: $input) { id } }";
    for (input, field) in [
        (
            json!({"name": " ", "shell": "BASH", "scriptBody": "true"}),
            "name",
        ),
        (
            json!({"name": "x", "shell": "BASH", "scriptBody": ""}),
            "scriptBody",
        ),
        (
            json!({"name": "x", "shell": "BASH", "scriptBody": "true", "defaultTimeoutSeconds": -5}),
            "input.defaultTimeoutSeconds",
        ),
        (
            json!({"name": "x", "shell": "BASH", "scriptBody": "true", "envVars": [{"name": "1BAD", "value": "v"}]}),
            "envVars",
        ),
        (
            json!({"name": "x", "shell": "BASH", "scriptBody": "true", "envVars": [{"name": "KEY", "secret": true}]}),
            "envVars",
        ),
    ] {
        let (code, message) = error(&app, &admin, create, json!({ "input": input })).await;
        assert_eq!(code, "invalid_input", "{input}: {message}");
        assert!(message.starts_with(field), "{input}: {message}");
    }
    // An enum value GraphQL does not know never reaches the resolver.
    let answer = gql(
        &app,
        &admin,
        create,
        json!({"input": {"name": "x", "shell": "ZSH", "scriptBody": "true"}}),
    )
    .await;
    assert!(
        answer["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("ZSH"),
        "{answer}"
    );
    let listed = data(&app, &admin, "{ scripts { filteredCount } }", json!({})).await;
    assert_eq!(listed["scripts"]["filteredCount"], 0, "nothing was stored");

    let script = data(
        &app,
        &admin,
        "mutation { createScript(input: {name: \"ok\", shell: SHELL, scriptBody: \"uptime\"}) { id scriptId } }",
        json!({}),
    )
    .await;
    let script_id = script["createScript"]["scriptId"].as_str().unwrap();
    let run =
        "mutation($input: BatchRunScriptInput!) { batchRunScript(input: $input) { executionId } }";
    for (input, code, field) in [
        (
            json!({"machineIds": [], "scriptId": script_id}),
            "invalid_input",
            "machineIds",
        ),
        (
            json!({"machineIds": ["no-such-machine"], "scriptId": script_id}),
            "invalid_input",
            "machineIds",
        ),
        (
            json!({"machineIds": [machine.machine_id], "scriptId": script_id, "timeoutSeconds": -1}),
            "invalid_input",
            "input.timeoutSeconds",
        ),
        (
            json!({"machineIds": [machine.machine_id], "scriptId": "TWFjaGluZTpmb28="}),
            "invalid_input",
            "input.scriptId",
        ),
        (
            json!({"machineIds": [machine.machine_id], "scriptId": "d6c3d1f0-0000-4000-8000-000000000000"}),
            "not_found",
            "no script",
        ),
    ] {
        let (found, message) = error(&app, &admin, run, json!({ "input": input })).await;
        assert_eq!(found, code, "{input}: {message}");
        assert!(message.starts_with(field), "{input}: {message}");
    }
    let (code, message) = error(
        &app,
        &admin,
        "{ scriptExecutions(scriptId: \"d6c3d1f0-0000-4000-8000-000000000000\", sort: {field: \"exitCode\"}) { filteredCount } }",
        json!({}),
    )
    .await;
    assert_eq!(code, "invalid_input");
    assert!(message.starts_with("sort.field"), "{message}");
    let (code, message) = error(
        &app,
        &admin,
        &format!("{{ scriptExecutions(scriptId: \"{script_id}\", filter: {{dispatchedAtFrom: \"yesterday\"}}) {{ filteredCount }} }}"),
        json!({}),
    )
    .await;
    assert_eq!(code, "invalid_input");
    assert!(message.starts_with("filter.dispatchedAtFrom"), "{message}");
    // No run was recorded by any of the refused dispatches.
    let history = data(
        &app,
        &admin,
        &format!("{{ scriptExecutions(scriptId: \"{script_id}\") {{ filteredCount }} }}"),
        json!({}),
    )
    .await;
    assert_eq!(history["scriptExecutions"]["filteredCount"], 0);
    app.stop().await.unwrap();
}
