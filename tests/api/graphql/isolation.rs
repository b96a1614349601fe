//! Tenant isolation over every operation: the test reads the schema's operations by
//! introspection and fails for any it has no case for, so a new operation cannot skip it.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::support::{data, gql, machine, put_machine, put_org};
use crate::gateway::support::{tenant, two_tenants};
use crate::helpers::spawn_app;

/// (kind, operation, query, what the answer must be).
type Case = (&'static str, &'static str, String, Box<dyn Fn(&Value)>);

/// Each operation, run by the second tenant against the first tenant's ids, and what it must
/// answer: nothing of the first tenant.
fn cases(ids: &Ids) -> Vec<Case> {
    let Ids {
        machine: machine_gid,
        org: org_gid,
        tag: tag_gid,
        event: event_gid,
        tool: tool_gid,
        script: script_gid,
        schedule: schedule_gid,
        incident,
    } = ids;
    let null = |field: &'static str| -> Box<dyn Fn(&Value)> {
        Box::new(move |answer: &Value| {
            assert_eq!(answer["data"][field], Value::Null, "{field}: {answer}")
        })
    };
    vec![
        ("query", "node", format!("{{ node(id: \"{machine_gid}\") {{ id }} }}"), null("node")),
        ("query", "nodes", format!("{{ nodes(ids: [\"{machine_gid}\", \"{org_gid}\"]) {{ id }} }}"),
            Box::new(|answer: &Value| assert_eq!(answer["data"]["nodes"], json!([null, null]), "{answer}"))),
        ("query", "me", "{ me { tenantId email } }".into(),
            Box::new(|answer: &Value| assert_eq!(answer["data"]["me"]["tenantId"], "globex", "{answer}"))),
        ("query", "devices", "{ devices(filter: {statuses: [ONLINE, PENDING, DELETED]}, first: 100) { filteredCount edges { node { machineId } } } }".into(),
            Box::new(|answer: &Value| assert_eq!(answer["data"]["devices"]["filteredCount"], 0, "{answer}"))),
        ("query", "deviceFilters", "{ deviceFilters(filter: {statuses: [ONLINE]}) { filteredCount organizationIds { value } } }".into(),
            Box::new(|answer: &Value| assert_eq!(answer["data"]["deviceFilters"], json!({"filteredCount": 0, "organizationIds": []}), "{answer}"))),
        ("query", "device", "{ device(machineId: \"secret-machine\") { id } }".into(), null("device")),
        ("query", "deviceById", format!("{{ deviceById(id: \"{machine_gid}\") {{ id }} }}"), null("deviceById")),
        ("query", "organizations", "{ organizations(first: 100) { filteredCount edges { node { name } } } }".into(),
            Box::new(|answer: &Value| assert_eq!(answer["data"]["organizations"]["filteredCount"], 0, "{answer}"))),
        ("query", "organization", format!("{{ organization(id: \"{org_gid}\") {{ id }} }}"), null("organization")),
        ("query", "organizationByOrganizationId", "{ organizationByOrganizationId(organizationId: \"org-secret\") { id } }".into(),
            null("organizationByOrganizationId")),
        ("query", "logs", "{ logs(first: 100) { filteredCount edges { node { summary } } } }".into(),
            Box::new(|answer: &Value| assert_eq!(answer["data"]["logs"]["filteredCount"], 0, "{answer}"))),
        ("query", "logFilters", "{ logFilters { filteredCount toolTypes organizations { id } } }".into(),
            Box::new(|answer: &Value| assert_eq!(answer["data"]["logFilters"], json!({"filteredCount": 0, "toolTypes": [], "organizations": []}), "{answer}"))),
        ("query", "logTimeline", "{ logTimeline(bucketMinutes: 1440) { start count } }".into(),
            Box::new(|answer: &Value| assert_eq!(answer["data"]["logTimeline"], json!([]), "{answer}"))),
        ("query", "logDetails",
            "{ logDetails(ingestDay: \"2026-11-20\", toolType: \"MESHCENTRAL\", eventType: \"LOGIN\", timestamp: \"2026-11-20T10:00:00Z\", toolEventId: \"secret-event\") { message } }".into(),
            null("logDetails")),
        ("mutation", "updateDeviceNickname",
            "mutation { updateDeviceNickname(machineId: \"secret-machine\", nickname: \"pwned\") { machineId } }".into(),
            Box::new(|answer: &Value| assert_eq!(answer["errors"][0]["extensions"]["code"], "not_found", "{answer}"))),
        ("query", "tags", "{ tags { key values } }".into(),
            Box::new(|answer: &Value| assert_eq!(answer["data"]["tags"], json!([]), "{answer}"))),
        ("query", "tagValueOptions", "{ tagValueOptions(tagKey: \"secret-tag\") { value count } }".into(),
            Box::new(|answer: &Value| assert_eq!(answer["data"]["tagValueOptions"], json!([]), "{answer}"))),
        ("query", "tagKeySuggestions", "{ tagKeySuggestions(search: \"secret\") { key } }".into(),
            Box::new(|answer: &Value| assert_eq!(answer["data"]["tagKeySuggestions"], json!([]), "{answer}"))),
        ("query", "tagValueSuggestions", "{ tagValueSuggestions(tagKey: \"secret-tag\") }".into(),
            Box::new(|answer: &Value| assert_eq!(answer["data"]["tagValueSuggestions"], json!([]), "{answer}"))),
        // The same key in another tenant is no conflict: it is that tenant's own tag.
        ("mutation", "createTag", "mutation { createTag(key: \"secret-tag\", entityType: \"DEVICE\") { key values } }".into(),
            Box::new(|answer: &Value| assert_eq!(answer["data"]["createTag"], json!({"key": "secret-tag", "values": []}), "{answer}"))),
        ("mutation", "updateTag", format!("mutation {{ updateTag(id: \"{tag_gid}\", key: \"pwned\") {{ key }} }}"),
            Box::new(|answer: &Value| assert_eq!(answer["errors"][0]["extensions"]["code"], "not_found", "{answer}"))),
        ("mutation", "deleteTag", format!("mutation {{ deleteTag(id: \"{tag_gid}\") }}"),
            Box::new(|answer: &Value| assert_eq!(answer["data"]["deleteTag"], false, "{answer}"))),
        ("query", "events", "{ events(first: 100) { filteredCount edges { node { data } } } }".into(),
            Box::new(|answer: &Value| assert_eq!(answer["data"]["events"]["filteredCount"], 0, "{answer}"))),
        ("query", "eventById", format!("{{ eventById(id: \"{event_gid}\") {{ data }} }}"), null("eventById")),
        ("query", "eventFilters", "{ eventFilters { filteredCount userIds { value } eventTypes { value } } }".into(),
            Box::new(|answer: &Value| assert_eq!(answer["data"]["eventFilters"], json!({"filteredCount": 0, "userIds": [], "eventTypes": []}), "{answer}"))),
        ("mutation", "createEvent", "mutation { createEvent(input: {type: \"OWN\", data: \"globex's own\"}) { type } }".into(),
            Box::new(|answer: &Value| assert_eq!(answer["data"]["createEvent"]["type"], "OWN", "{answer}"))),
        ("mutation", "updateEvent", format!("mutation {{ updateEvent(id: \"{event_gid}\", input: {{data: \"pwned\"}}) {{ data }} }}"),
            Box::new(|answer: &Value| assert_eq!(answer["errors"][0]["extensions"]["code"], "not_found", "{answer}"))),
        ("query", "auditEvents", "{ auditEvents(first: 100) { edges { node { actorEmail action after } } } }".into(),
            Box::new(|answer: &Value| {
                let edges = answer["data"]["auditEvents"]["edges"].as_array().expect("a list");
                assert!(
                    edges.iter().all(|edge| edge["node"]["actorEmail"] != "owner@acme.example.com"),
                    "{answer}"
                );
            })),
        ("query", "integratedTools", "{ integratedTools { tools { key } } }".into(),
            Box::new(|answer: &Value| assert_eq!(answer["data"]["integratedTools"]["tools"], json!([]), "{answer}"))),
        ("query", "toolFilters", "{ toolFilters { types categories } }".into(),
            Box::new(|answer: &Value| assert_eq!(answer["data"]["toolFilters"], json!({"types": [], "categories": []}), "{answer}"))),
        ("query", "node", format!("{{ tag: node(id: \"{tag_gid}\") {{ id }} event: node(id: \"{event_gid}\") {{ id }} tool: node(id: \"{tool_gid}\") {{ id }} }}"),
            Box::new(|answer: &Value| assert_eq!(answer["data"], json!({"tag": null, "event": null, "tool": null}), "{answer}"))),
        ("query", "node", format!("{{ script: node(id: \"{script_gid}\") {{ id }} }}"), null("script")),
        ("query", "script", format!("{{ script(id: \"{script_gid}\") {{ name }} }}"),
            Box::new(|answer: &Value| assert_eq!(answer["errors"][0]["extensions"]["code"], "not_found", "{answer}"))),
        ("query", "scripts", "{ scripts(filter: {statuses: [ACTIVE, ARCHIVED, DELETED]}, first: 100) { filteredCount edges { node { name } } } }".into(),
            Box::new(|answer: &Value| assert_eq!(answer["data"]["scripts"]["filteredCount"], 0, "{answer}"))),
        ("query", "scriptFilters", "{ scriptFilters { filteredCount shells { value } authors { value } } }".into(),
            Box::new(|answer: &Value| assert_eq!(answer["data"]["scriptFilters"], json!({"filteredCount": 0, "shells": [], "authors": []}), "{answer}"))),
        ("query", "scriptExecutions", format!("{{ scriptExecutions(scriptId: \"{script_gid}\") {{ filteredCount }} }}"),
            Box::new(|answer: &Value| assert_eq!(answer["errors"][0]["extensions"]["code"], "not_found", "{answer}"))),
        ("query", "scriptExecutionFilters", format!("{{ scriptExecutionFilters(scriptId: \"{script_gid}\") {{ filteredCount }} }}"),
            Box::new(|answer: &Value| assert_eq!(answer["errors"][0]["extensions"]["code"], "not_found", "{answer}"))),
        // Runs with real executions are tried across tenants in `scripts.rs` (they need NATS).
        ("query", "runExecutions", "{ runExecutions(executionId: \"d6c3d1f0-0000-4000-8000-000000000000\") { status } }".into(),
            Box::new(|answer: &Value| assert_eq!(answer["data"]["runExecutions"], json!([]), "{answer}"))),
        ("mutation", "createScript", "mutation { createScript(input: {name: \"globex's own\", shell: BASH, scriptBody: \"true\"}) { name status } }".into(),
            Box::new(|answer: &Value| assert_eq!(answer["data"]["createScript"], json!({"name": "globex's own", "status": "ACTIVE"}), "{answer}"))),
        ("mutation", "updateScript", format!("mutation {{ updateScript(input: {{id: \"{script_gid}\", name: \"pwned\", shell: BASH, scriptBody: \"true\"}}) {{ name }} }}"),
            Box::new(|answer: &Value| assert_eq!(answer["errors"][0]["extensions"]["code"], "not_found", "{answer}"))),
        ("mutation", "deleteScript", format!("mutation {{ deleteScript(id: \"{script_gid}\") }}"),
            Box::new(|answer: &Value| assert_eq!(answer["errors"][0]["extensions"]["code"], "not_found", "{answer}"))),
        ("mutation", "archiveScript", format!("mutation {{ archiveScript(id: \"{script_gid}\") {{ status }} }}"),
            Box::new(|answer: &Value| assert_eq!(answer["errors"][0]["extensions"]["code"], "not_found", "{answer}"))),
        ("mutation", "unarchiveScript", format!("mutation {{ unarchiveScript(id: \"{script_gid}\") {{ status }} }}"),
            Box::new(|answer: &Value| assert_eq!(answer["errors"][0]["extensions"]["code"], "not_found", "{answer}"))),
        ("mutation", "runScript", format!("mutation {{ runScript(input: {{machineId: \"secret-machine\", scriptId: \"{script_gid}\"}}) {{ executionId }} }}"),
            Box::new(|answer: &Value| assert_eq!(answer["errors"][0]["extensions"]["code"], "not_found", "{answer}"))),
        ("mutation", "batchRunScript", format!("mutation {{ batchRunScript(input: {{machineIds: [\"secret-machine\"], scriptId: \"{script_gid}\"}}) {{ executionId }} }}"),
            Box::new(|answer: &Value| assert_eq!(answer["errors"][0]["extensions"]["code"], "not_found", "{answer}"))),
        // The first tenant's machine is unknown to the second: refused before anything is sent.
        ("mutation", "runCommand", "mutation { runCommand(input: {machineId: \"secret-machine\", shell: SHELL, command: \"id\"}) { executionId } }".into(),
            Box::new(|answer: &Value| assert_eq!(answer["errors"][0]["extensions"]["code"], "invalid_input", "{answer}"))),
        ("mutation", "batchRunCommand", "mutation { batchRunCommand(input: {machineIds: [\"secret-machine\"], shell: SHELL, command: \"id\"}) { executionId } }".into(),
            Box::new(|answer: &Value| assert_eq!(answer["errors"][0]["extensions"]["code"], "invalid_input", "{answer}"))),
        ("query", "scriptSchedule", format!("{{ scriptSchedule(id: \"{schedule_gid}\") {{ name }} }}"),
            Box::new(|answer: &Value| assert_eq!(answer["errors"][0]["extensions"]["code"], "not_found", "{answer}"))),
        ("query", "scheduleRuns", format!("{{ scheduleRuns(scheduleId: \"{schedule_gid}\") {{ filteredCount }} }}"),
            Box::new(|answer: &Value| assert_eq!(answer["errors"][0]["extensions"]["code"], "not_found", "{answer}"))),
        ("query", "scheduleRunFilters", format!("{{ scheduleRunFilters(scheduleId: \"{schedule_gid}\") {{ filteredCount }} }}"),
            Box::new(|answer: &Value| assert_eq!(answer["errors"][0]["extensions"]["code"], "not_found", "{answer}"))),
        ("query", "scheduleExecutions", format!("{{ scheduleExecutions(scheduleId: \"{schedule_gid}\") {{ filteredCount }} }}"),
            Box::new(|answer: &Value| assert_eq!(answer["errors"][0]["extensions"]["code"], "not_found", "{answer}"))),
        ("query", "scheduleExecutionFilters", format!("{{ scheduleExecutionFilters(scheduleId: \"{schedule_gid}\") {{ filteredCount }} }}"),
            Box::new(|answer: &Value| assert_eq!(answer["errors"][0]["extensions"]["code"], "not_found", "{answer}"))),
        ("mutation", "updateScriptSchedule", format!("mutation {{ updateScriptSchedule(input: {{id: \"{schedule_gid}\", name: \"pwned\", scriptIds: [\"{script_gid}\"], trigger: DEVICE_ONLINE}}) {{ name }} }}"),
            Box::new(|answer: &Value| assert_eq!(answer["errors"][0]["extensions"]["code"], "not_found", "{answer}"))),
        ("mutation", "deleteScriptSchedule", format!("mutation {{ deleteScriptSchedule(id: \"{schedule_gid}\") }}"),
            Box::new(|answer: &Value| assert_eq!(answer["errors"][0]["extensions"]["code"], "not_found", "{answer}"))),
        ("mutation", "archiveScriptSchedule", format!("mutation {{ archiveScriptSchedule(id: \"{schedule_gid}\") {{ status }} }}"),
            Box::new(|answer: &Value| assert_eq!(answer["errors"][0]["extensions"]["code"], "not_found", "{answer}"))),
        ("mutation", "unarchiveScriptSchedule", format!("mutation {{ unarchiveScriptSchedule(id: \"{schedule_gid}\") {{ status }} }}"),
            Box::new(|answer: &Value| assert_eq!(answer["errors"][0]["extensions"]["code"], "not_found", "{answer}"))),
        ("mutation", "setScriptScheduleDevices", format!("mutation {{ setScriptScheduleDevices(scheduleId: \"{schedule_gid}\", machineIds: []) {{ deviceCount }} }}"),
            Box::new(|answer: &Value| assert_eq!(answer["errors"][0]["extensions"]["code"], "not_found", "{answer}"))),
        ("mutation", "addDevicesToSchedule", format!("mutation {{ addDevicesToSchedule(scheduleId: \"{schedule_gid}\", machineIds: []) {{ deviceCount }} }}"),
            Box::new(|answer: &Value| assert_eq!(answer["errors"][0]["extensions"]["code"], "not_found", "{answer}"))),
        ("mutation", "removeDevicesFromSchedule", format!("mutation {{ removeDevicesFromSchedule(scheduleId: \"{schedule_gid}\", machineIds: [\"secret-machine\"]) {{ deviceCount }} }}"),
            Box::new(|answer: &Value| assert_eq!(answer["errors"][0]["extensions"]["code"], "not_found", "{answer}"))),
        ("mutation", "addAllDevicesToSchedule", format!("mutation {{ addAllDevicesToSchedule(scheduleId: \"{schedule_gid}\") {{ deviceCount }} }}"),
            Box::new(|answer: &Value| assert_eq!(answer["errors"][0]["extensions"]["code"], "not_found", "{answer}"))),
        ("mutation", "removeAllDevicesFromSchedule", format!("mutation {{ removeAllDevicesFromSchedule(scheduleId: \"{schedule_gid}\") {{ deviceCount }} }}"),
            Box::new(|answer: &Value| assert_eq!(answer["errors"][0]["extensions"]["code"], "not_found", "{answer}"))),
        ("mutation", "setScheduleDeviceCriteria", format!("mutation {{ setScheduleDeviceCriteria(scheduleId: \"{schedule_gid}\", criteria: {{osTypes: [\"LINUX\"]}}) {{ deviceCount }} }}"),
            Box::new(|answer: &Value| assert_eq!(answer["errors"][0]["extensions"]["code"], "not_found", "{answer}"))),
        ("mutation", "runScheduleJobNow", format!("mutation {{ runScheduleJobNow(scheduleId: \"{schedule_gid}\") {{ runId }} }}"),
            Box::new(|answer: &Value| assert_eq!(answer["errors"][0]["extensions"]["code"], "not_found", "{answer}"))),
        ("query", "scriptSchedules", "{ scriptSchedules(filter: {statuses: [ACTIVE, ARCHIVED, DELETED]}) { filteredCount edges { node { name } } } }".into(),
            Box::new(|answer: &Value| assert_eq!(answer["data"]["scriptSchedules"]["filteredCount"], 0, "{answer}"))),
        ("query", "scriptScheduleFilters", "{ scriptScheduleFilters { filteredCount authors { value } } }".into(),
            Box::new(|answer: &Value| assert_eq!(answer["data"]["scriptScheduleFilters"], json!({"filteredCount": 0, "authors": []}), "{answer}"))),
        ("query", "node", format!("{{ schedule: node(id: \"{schedule_gid}\") {{ id }} }}"), null("schedule")),
        // A schedule of its own may use only its own scripts.
        ("mutation", "createScriptSchedule", format!("mutation {{ createScriptSchedule(input: {{name: \"x\", scriptIds: [\"{script_gid}\"], trigger: DEVICE_ONLINE}}) {{ name }} }}"),
            Box::new(|answer: &Value| assert_eq!(answer["errors"][0]["extensions"]["code"], "invalid_input", "{answer}"))),
        ("query", "incidents", "{ incidents { id title } }".into(),
            Box::new(|answer: &Value| assert_eq!(answer["data"]["incidents"], json!([]), "{answer}"))),
        ("query", "incident", format!("{{ incident(id: \"{incident}\") {{ id }} }}"), null("incident")),
        ("mutation", "acknowledgeIncident", format!("mutation {{ acknowledgeIncident(id: \"{incident}\") {{ status }} }}"),
            Box::new(|answer: &Value| assert_eq!(answer["errors"][0]["extensions"]["code"], "not_found", "{answer}"))),
        ("mutation", "resolveIncident", format!("mutation {{ resolveIncident(id: \"{incident}\", note: \"pwned\") {{ status }} }}"),
            Box::new(|answer: &Value| assert_eq!(answer["errors"][0]["extensions"]["code"], "not_found", "{answer}"))),
        ("mutation", "cancelExecution", "mutation { cancelExecution(input: {machineId: \"secret-machine\", executionId: \"d6c3d1f0-0000-4000-8000-000000000000\"}) { executionId } }".into(),
            Box::new(|answer: &Value| assert_eq!(answer["errors"][0]["extensions"]["code"], "not_found", "{answer}"))),
    ]
}

/// The first tenant's objects, by global id.
struct Ids {
    machine: String,
    org: String,
    tag: String,
    event: String,
    tool: String,
    script: String,
    schedule: String,
    incident: String,
}

#[tokio::test]
async fn a_second_tenant_sees_and_changes_nothing_of_the_first_through_any_operation() {
    let app = spawn_app().await;
    let tenants = two_tenants(&app).await;
    put_org(&app, "acme", "org-secret", "Secret Customer").await;
    let mut secret = machine("secret-machine", "secret-host", "ONLINE", "org-secret");
    secret.tags = vec!["secret-tag:hq".into()];
    put_machine(&app, "acme", secret).await;
    super::logs::put_log(
        &app,
        "acme",
        super::logs::entry("secret-event", 1_795_168_800_000, "secret-host login"),
    )
    .await;
    let ids = data(
        &app,
        &tenants.admin_a,
        "{ device(machineId: \"secret-machine\") { id organization { id } } }",
        json!({}),
    )
    .await;
    let secrets = data(
        &app,
        &tenants.admin_a,
        "mutation { createTag(key: \"secret-tag\", entityType: \"DEVICE\", description: \"Secret Customer\") { id } createEvent(input: {type: \"SECRET\", data: \"secret-host\"}) { id } createScript(input: {name: \"Secret Customer cleanup\", shell: BASH, scriptBody: \"true\"}) { id } }",
        json!({}),
    )
    .await;
    let upstream = crate::gateway::support::upstream().await;
    crate::gateway::support::register_tool(&app, "acme", &upstream).await;
    let ids = Ids {
        machine: ids["device"]["id"].as_str().unwrap().to_owned(),
        org: ids["device"]["organization"]["id"]
            .as_str()
            .unwrap()
            .to_owned(),
        tag: secrets["createTag"]["id"].as_str().unwrap().to_owned(),
        event: secrets["createEvent"]["id"].as_str().unwrap().to_owned(),
        tool: "SW50ZWdyYXRlZFRvb2w6ZmxlZXQ=".to_owned(),
        script: secrets["createScript"]["id"].as_str().unwrap().to_owned(),
        schedule: String::new(),
        incident: String::new(),
    };
    let schedule = data(
        &app,
        &tenants.admin_a,
        "mutation($script: ID!) { createScriptSchedule(input: {name: \"Secret Customer nightly\", scriptIds: [$script], trigger: DEVICE_ONLINE}) { id } }",
        json!({"script": ids.script}),
    )
    .await;
    // An incident about the secret machine, as detection opens one.
    let incident = crate::detection::open_incident(
        &app,
        "acme",
        "secret-machine",
        None,
        "secret-host and 4 more went offline",
    )
    .await;
    let ids = Ids {
        schedule: schedule["createScriptSchedule"]["id"]
            .as_str()
            .unwrap()
            .to_owned(),
        incident: incident.clone(),
        ..ids
    };

    // Every operation the schema offers.
    let schema = data(
        &app,
        &tenants.admin_b,
        "{ __schema { queryType { fields { name } } mutationType { fields { name } } subscriptionType { fields { name } } } }",
        json!({}),
    )
    .await;
    let mut operations = BTreeSet::new();
    for (kind, root) in [("query", "queryType"), ("mutation", "mutationType")] {
        for field in schema["__schema"][root]["fields"].as_array().unwrap() {
            operations.insert((kind, field["name"].as_str().unwrap().to_owned()));
        }
    }
    // Subscriptions run over WebSocket; their isolation tests are listed here so a new
    // subscription cannot skip one either: `logStream` in `live.rs`, `notificationStream` in
    // `notifications.rs` and `detection.rs` (another tenant's socket receives nothing).
    let subscriptions: BTreeSet<String> = schema["__schema"]["subscriptionType"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|field| field["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        subscriptions,
        BTreeSet::from(["logStream".to_owned(), "notificationStream".to_owned()]),
        "a subscription without an isolation test in live.rs"
    );
    let cases = cases(&ids);
    let covered: BTreeSet<(&str, String)> = cases
        .iter()
        .map(|(kind, name, _, _)| (*kind, (*name).to_owned()))
        .collect();
    let uncovered: Vec<_> = operations.difference(&covered).collect();
    assert!(
        uncovered.is_empty(),
        "operations without an isolation case: {uncovered:?}"
    );
    assert_eq!(
        covered, operations,
        "cases for operations the schema no longer has"
    );

    for (_, name, query, check) in &cases {
        let answer = gql(&app, &tenants.admin_b, query, json!({})).await;
        check(&answer);
        // The first tenant's names never appear in the second tenant's answers.
        let text = answer.to_string();
        assert!(
            !text.contains("secret-host") && !text.contains("Secret Customer"),
            "{name}: {text}"
        );
    }
    let stored = app
        .state
        .inventory
        .machine(&tenant("acme"), "secret-machine")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.nickname, None,
        "the other tenant's mutation changed nothing"
    );
    let kept = app
        .state
        .incidents
        .get(&tenant("acme"), &incident)
        .await
        .unwrap();
    assert_eq!(
        (kept.status.as_str(), kept.timeline.len()),
        ("OPEN", 1),
        "the other tenant's mutations left the incident alone"
    );
    let acme = data(
        &app,
        &tenants.admin_a,
        "{ tags { key } events { edges { node { data } } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        acme,
        json!({"tags": [{"key": "secret-tag"}], "events": {"edges": [{"node": {"data": "secret-host"}}]}}),
        "the first tenant's tags and events are as they were"
    );
}
