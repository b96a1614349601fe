//! Devices and organizations: paging both ways, facets, search, lookups and the nickname.

use serde_json::{Value, json};

use super::support::{data, error, machine, put_machine, put_org};
use crate::gateway::support::{tenant, two_tenants};
use crate::helpers::spawn_app;

const DEVICES: &str = "query($first: Int, $after: String, $last: Int, $before: String, $filter: DeviceFilterInput, $search: String, $sort: SortInput) {
  devices(first: $first, after: $after, last: $last, before: $before, filter: $filter, search: $search, sort: $sort) {
    filteredCount
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { cursor node { id machineId hostname status organization { organizationId name } } }
  }
}";

fn hostnames(page: &Value) -> Vec<String> {
    page["devices"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|edge| edge["node"]["hostname"].as_str().unwrap().to_owned())
        .collect()
}

/// 25 online machines (host-00 … host-24, over two organizations), 2 pending, 1 deleted.
async fn seed(app: &crate::helpers::TestApp, tenant_id: &str) {
    put_org(app, tenant_id, "org-east", "East Clinic").await;
    put_org(app, tenant_id, "org-west", "West Dental").await;
    for i in 0..25 {
        let org = if i % 5 == 0 { "org-west" } else { "org-east" };
        let mut machine = machine(&format!("m-{i:02}"), &format!("host-{i:02}"), "ONLINE", org);
        if i % 2 == 1 {
            machine.tags = vec!["site:chicago".into()];
            machine.os_type = "LINUX".into();
        }
        machine.serial_number = Some(format!("SN-{:04}", i * 7));
        put_machine(app, tenant_id, machine).await;
    }
    for (id, status) in [("p-1", "PENDING"), ("p-2", "PENDING"), ("d-1", "DELETED")] {
        put_machine(
            app,
            tenant_id,
            machine(id, &format!("x-{id}"), status, "org-east"),
        )
        .await;
    }
}

#[tokio::test]
async fn devices_page_forward_and_backward_and_facets_match_the_list() {
    let app = spawn_app().await;
    let tenants = two_tenants(&app).await;
    let token = &tenants.admin_a;
    seed(&app, "acme").await;

    // Forward, 10 at a time: every visible device once, in hostname order.
    let mut seen = Vec::new();
    let mut after = Value::Null;
    let mut pages = 0;
    loop {
        let page = data(&app, token, DEVICES, json!({"first": 10, "after": after})).await;
        let connection = &page["devices"];
        assert_eq!(
            connection["filteredCount"], 25,
            "PENDING and DELETED are hidden by default"
        );
        assert_eq!(connection["pageInfo"]["hasPreviousPage"], pages > 0);
        seen.extend(hostnames(&page));
        pages += 1;
        if connection["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = connection["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..25).map(|i| format!("host-{i:02}")).collect();
    assert_eq!(seen, expected);

    // Backward from the end, 10 at a time, gives the same list.
    let mut back: Vec<String> = Vec::new();
    let mut before = Value::Null;
    loop {
        let page = data(&app, token, DEVICES, json!({"last": 10, "before": before})).await;
        let mut chunk = hostnames(&page);
        chunk.extend(back);
        back = chunk;
        if page["devices"]["pageInfo"]["hasPreviousPage"] == false {
            break;
        }
        before = page["devices"]["pageInfo"]["startCursor"].clone();
    }
    assert_eq!(back, expected);

    // Descending order pages in its own order; each edge's organization is resolved.
    let page = data(
        &app,
        token,
        DEVICES,
        json!({"first": 2, "sort": {"field": "hostname", "direction": "DESC"}}),
    )
    .await;
    assert_eq!(hostnames(&page), ["host-24", "host-23"]);
    assert_eq!(
        page["devices"]["edges"][0]["node"]["organization"],
        json!({"organizationId": "org-east", "name": "East Clinic"})
    );

    // Filters, search and facets agree with the list.
    let filters = "query($filter: DeviceFilterInput, $search: String) { deviceFilters(filter: $filter, search: $search) {
        filteredCount statuses { value count } osTypes { value count } organizationIds { value label count }
        tagKeys { key value count } } }";
    let all = data(&app, token, filters, json!({})).await["deviceFilters"].clone();
    assert_eq!(all["filteredCount"], 25);
    assert_eq!(all["statuses"], json!([{"value": "ONLINE", "count": 25}]));
    assert_eq!(
        all["osTypes"],
        json!([{"value": "LINUX", "count": 12}, {"value": "WINDOWS", "count": 13}])
    );
    assert_eq!(
        all["organizationIds"],
        json!([{"value": "org-east", "label": "East Clinic", "count": 20}, {"value": "org-west", "label": "West Dental", "count": 5}])
    );
    assert_eq!(
        all["tagKeys"],
        json!([{"key": "site", "value": "chicago", "count": 12}])
    );
    for (filter, count) in [
        (json!({"osTypes": ["LINUX"]}), 12),
        (json!({"organizationIds": ["org-west"]}), 5),
        (json!({"tagKeys": ["site"]}), 12),
        (json!({"tagValues": ["chicago"]}), 12),
        (json!({"statuses": ["PENDING", "DELETED"]}), 3),
        (json!({"statuses": ["PENDING"], "osTypes": ["WINDOWS"]}), 2),
    ] {
        let facets = data(&app, token, filters, json!({"filter": filter})).await;
        let list = data(
            &app,
            token,
            DEVICES,
            json!({"filter": filter, "first": 100}),
        )
        .await;
        assert_eq!(facets["deviceFilters"]["filteredCount"], count, "{filter}");
        assert_eq!(list["devices"]["filteredCount"], count, "{filter}");
        assert_eq!(
            list["devices"]["edges"].as_array().unwrap().len(),
            count,
            "{filter}"
        );
    }
    // Search covers the serial number, case-insensitively; facets follow the search.
    let found = data(&app, token, DEVICES, json!({"search": "sn-0007"})).await;
    assert_eq!(hostnames(&found), ["host-01"]);
    let facets = data(&app, token, filters, json!({"search": "HOST-2"})).await;
    assert_eq!(facets["deviceFilters"]["filteredCount"], 5);

    // An empty result is an empty connection, not an error.
    let empty = data(&app, token, DEVICES, json!({"search": "no-such-device"})).await;
    assert_eq!(
        empty["devices"],
        json!({"filteredCount": 0, "edges": [], "pageInfo": {"hasNextPage": false, "hasPreviousPage": false, "startCursor": null, "endCursor": null}})
    );
}

#[tokio::test]
async fn devices_are_found_by_id_and_nicknamed() {
    let app = spawn_app().await;
    let tenants = two_tenants(&app).await;
    let token = &tenants.admin_a;
    seed(&app, "acme").await;

    let by_machine = data(
        &app,
        token,
        "{ device(machineId: \"m-03\") { id hostname organizationId } }",
        json!({}),
    )
    .await;
    let id = by_machine["device"]["id"].as_str().unwrap().to_owned();
    assert_eq!(by_machine["device"]["hostname"], "host-03");
    let by_id = data(&app, token, "query($id: ID!) { deviceById(id: $id) { machineId } node(id: $id) { __typename id ... on Machine { hostname } } }", json!({"id": id})).await;
    assert_eq!(by_id["deviceById"]["machineId"], "m-03");
    assert_eq!(
        by_id["node"],
        json!({"__typename": "Machine", "id": id, "hostname": "host-03"})
    );
    let missing = data(
        &app,
        token,
        "{ device(machineId: \"nope\") { id } }",
        json!({}),
    )
    .await;
    assert_eq!(missing["device"], Value::Null);

    let rename = "mutation($id: String!, $name: String) { updateDeviceNickname(machineId: $id, nickname: $name) { machineId nickname } }";
    let renamed = data(
        &app,
        token,
        rename,
        json!({"id": "m-03", "name": "  Front desk PC "}),
    )
    .await;
    assert_eq!(
        renamed["updateDeviceNickname"],
        json!({"machineId": "m-03", "nickname": "Front desk PC"})
    );
    let stored = app
        .state
        .inventory
        .machine(&tenant("acme"), "m-03")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.nickname.as_deref(),
        Some("Front desk PC"),
        "the nickname is stored"
    );
    let found = data(&app, token, DEVICES, json!({"search": "front desk"})).await;
    assert_eq!(hostnames(&found), ["host-03"], "search covers nicknames");

    let (code, message) = error(
        &app,
        token,
        rename,
        json!({"id": "m-03", "name": "x".repeat(101)}),
    )
    .await;
    assert_eq!(
        (code.as_str(), message.starts_with("nickname")),
        ("invalid_input", true),
        "{message}"
    );
    let (code, message) = error(&app, token, rename, json!({"id": "m-99", "name": "x"})).await;
    assert_eq!(code, "not_found", "{message}");
    let cleared = data(&app, token, rename, json!({"id": "m-03", "name": null})).await;
    assert_eq!(cleared["updateDeviceNickname"]["nickname"], Value::Null);
    let stored = app
        .state
        .inventory
        .machine(&tenant("acme"), "m-03")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.nickname, None);
}

#[tokio::test]
async fn organizations_page_search_and_resolve() {
    let app = spawn_app().await;
    let tenants = two_tenants(&app).await;
    let token = &tenants.admin_a;
    for i in 0..7 {
        put_org(&app, "acme", &format!("org-{i}"), &format!("Customer {i}")).await;
    }
    let mut m = machine("m-1", "h-1", "ONLINE", "org-2");
    m.last_seen = Some(5_000);
    put_machine(&app, "acme", m).await;
    let query = "query($first: Int, $after: String, $search: String, $orderBy: OrganizationSortInput) {
        organizations(first: $first, after: $after, search: $search, orderBy: $orderBy) {
          filteredCount pageInfo { hasNextPage endCursor } edges { node { id organizationId name status } } } }";
    let first = data(&app, token, query, json!({"first": 4})).await;
    assert_eq!(first["organizations"]["filteredCount"], 7);
    assert_eq!(first["organizations"]["edges"].as_array().unwrap().len(), 4);
    let rest = data(
        &app,
        token,
        query,
        json!({"first": 4, "after": first["organizations"]["pageInfo"]["endCursor"]}),
    )
    .await;
    let names: Vec<&str> = first["organizations"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .chain(rest["organizations"]["edges"].as_array().unwrap())
        .map(|edge| edge["node"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        (0..7).map(|i| format!("Customer {i}")).collect::<Vec<_>>()
    );
    assert_eq!(rest["organizations"]["pageInfo"]["hasNextPage"], false);

    let active = data(
        &app,
        token,
        query,
        json!({"orderBy": {"field": "LAST_ACTIVITY", "direction": "DESC"}, "first": 1}),
    )
    .await;
    assert_eq!(
        active["organizations"]["edges"][0]["node"]["organizationId"], "org-2",
        "the one with a device seen lately"
    );
    let searched = data(&app, token, query, json!({"search": "customer 5"})).await;
    assert_eq!(searched["organizations"]["filteredCount"], 1);

    let id = searched["organizations"]["edges"][0]["node"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let lookups = data(&app, token, "query($id: ID!) { organization(id: $id) { name } organizationByOrganizationId(organizationId: \"org-5\") { id } nodes(ids: [$id]) { __typename } }", json!({"id": id})).await;
    assert_eq!(lookups["organization"]["name"], "Customer 5");
    assert_eq!(lookups["organizationByOrganizationId"]["id"], id);
    assert_eq!(lookups["nodes"], json!([{"__typename": "Organization"}]));
}
