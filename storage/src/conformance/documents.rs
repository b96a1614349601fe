//! Conformance cases for [`TenantStore`] and [`DocumentStore`]. The factory yields one engine
//! implementing both, as `(Arc<E>, guard)`.

use serde_json::json;

use crate::documents::{MAX_DOCUMENT_BYTES, Tenant, TenantStatus};
use crate::error::DocumentError;
use crate::model::{Collection, DocumentId, TenantId};

use super::tenant;

/// Both capabilities, as the document engines provide them.
pub use crate::documents::DocumentEngine as Documents;

async fn seeded(store: &dyn Documents, case: &str) -> TenantId {
    let id = tenant(case);
    store
        .create_tenant(&Tenant {
            id: id.clone(),
            name: format!("Tenant {case}"),
            status: TenantStatus::Active,
            created_at: 1,
        })
        .await
        .unwrap();
    id
}

fn collection(name: &str) -> Collection {
    Collection::parse(name).unwrap()
}

fn doc_id(id: &str) -> DocumentId {
    DocumentId::parse(id).unwrap()
}

pub async fn tenants_are_created_once_listed_and_suspended(store: &dyn Documents) {
    let id = seeded(store, "tenants-lifecycle").await;
    let again = store
        .create_tenant(&Tenant {
            id: id.clone(),
            name: "other".into(),
            status: TenantStatus::Active,
            created_at: 2,
        })
        .await;
    assert!(
        matches!(again, Err(DocumentError::AlreadyExists { ref what }) if what.contains(id.as_str())),
        "{again:?}"
    );

    let stored = store.tenant(&id).await.unwrap().unwrap();
    assert_eq!(
        stored.name, "Tenant tenants-lifecycle",
        "a refused create changes nothing"
    );
    assert_eq!(
        (stored.status, stored.created_at),
        (TenantStatus::Active, 1)
    );
    assert!(
        store
            .tenants()
            .await
            .unwrap()
            .iter()
            .any(|tenant| tenant.id == id)
    );

    store
        .set_tenant_status(&id, TenantStatus::Suspended)
        .await
        .unwrap();
    assert_eq!(
        store.tenant(&id).await.unwrap().unwrap().status,
        TenantStatus::Suspended
    );
    let missing = tenant("tenants-missing");
    assert_eq!(store.tenant(&missing).await.unwrap(), None);
    assert!(matches!(
        store
            .set_tenant_status(&missing, TenantStatus::Active)
            .await,
        Err(DocumentError::NotFound { .. })
    ));
}

pub async fn inserted_documents_start_at_version_one(store: &dyn Documents) {
    let tenant = seeded(store, "docs-insert").await;
    let machines = collection("machines");
    let body = json!({"hostname": "ws-01", "status": "ONLINE", "tags": ["a", "b"]});
    let inserted = store
        .insert(&tenant, &machines, &doc_id("m-1"), &body)
        .await
        .unwrap();
    assert_eq!((inserted.version, &inserted.body), (1, &body));

    let read = store
        .get(&tenant, &machines, &doc_id("m-1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read, inserted);

    let duplicate = store
        .insert(
            &tenant,
            &machines,
            &doc_id("m-1"),
            &json!({"hostname": "other"}),
        )
        .await;
    assert!(
        matches!(duplicate, Err(DocumentError::AlreadyExists { .. })),
        "{duplicate:?}"
    );
    assert_eq!(
        store
            .get(&tenant, &machines, &doc_id("m-1"))
            .await
            .unwrap()
            .unwrap()
            .body,
        body
    );
    assert_eq!(store.count(&tenant, &machines).await.unwrap(), 1);
}

pub async fn documents_need_an_existing_tenant(store: &dyn Documents) {
    let unknown = tenant("docs-no-tenant");
    let refused = store
        .insert(&unknown, &collection("machines"), &doc_id("m"), &json!({}))
        .await;
    assert!(
        matches!(refused, Err(DocumentError::NotFound { ref what }) if what.contains("tenant")),
        "{refused:?}"
    );
}

pub async fn replace_checks_the_version_the_caller_read(store: &dyn Documents) {
    let tenant = seeded(store, "docs-replace").await;
    let orgs = collection("organizations");
    let id = doc_id("org-1");
    let created = store
        .replace(&tenant, &orgs, &id, &json!({"name": "Acme"}), None)
        .await
        .unwrap();
    assert_eq!(created.version, 1, "replace without a version creates");

    let updated = store
        .replace(&tenant, &orgs, &id, &json!({"name": "Acme Ltd"}), Some(1))
        .await
        .unwrap();
    assert_eq!(updated.version, 2);

    let stale = store
        .replace(
            &tenant,
            &orgs,
            &id,
            &json!({"name": "Lost update"}),
            Some(1),
        )
        .await;
    assert!(
        matches!(
            stale,
            Err(DocumentError::VersionConflict {
                expected: 1,
                found: 2,
                ..
            })
        ),
        "{stale:?}"
    );
    let stored = store.get(&tenant, &orgs, &id).await.unwrap().unwrap();
    assert_eq!(
        (stored.version, stored.body),
        (2, json!({"name": "Acme Ltd"}))
    );

    let missing = store
        .replace(&tenant, &orgs, &doc_id("org-2"), &json!({}), Some(1))
        .await;
    assert!(
        matches!(missing, Err(DocumentError::NotFound { .. })),
        "{missing:?}"
    );
    let blind = store
        .replace(&tenant, &orgs, &id, &json!({"name": "Blind"}), None)
        .await
        .unwrap();
    assert_eq!(blind.version, 3);
}

pub async fn invalid_bodies_are_refused(store: &dyn Documents) {
    let tenant = seeded(store, "docs-invalid").await;
    let things = collection("things");
    for body in [json!([1, 2]), json!("text"), json!(null)] {
        let refused = store.insert(&tenant, &things, &doc_id("x"), &body).await;
        assert!(
            matches!(refused, Err(DocumentError::Invalid(ref why)) if why.contains("object")),
            "{refused:?}"
        );
    }
    let huge = json!({"blob": "x".repeat(MAX_DOCUMENT_BYTES)});
    let refused = store.insert(&tenant, &things, &doc_id("x"), &huge).await;
    assert!(
        matches!(refused, Err(DocumentError::Invalid(ref why)) if why.contains("limit")),
        "{refused:?}"
    );
    assert_eq!(store.count(&tenant, &things).await.unwrap(), 0);
}

pub async fn lists_page_by_id(store: &dyn Documents) {
    let tenant = seeded(store, "docs-list").await;
    let tags = collection("tags");
    for id in ["d", "a", "c", "b", "e"] {
        store
            .insert(&tenant, &tags, &doc_id(id), &json!({"key": id}))
            .await
            .unwrap();
    }
    let first = store.list(&tenant, &tags, None, 2).await.unwrap();
    assert_eq!(
        first.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    let second = store
        .list(&tenant, &tags, Some(&first[1].id), 2)
        .await
        .unwrap();
    assert_eq!(
        second.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        ["c", "d"]
    );
    let last = store
        .list(&tenant, &tags, Some(&second[1].id), 2)
        .await
        .unwrap();
    assert_eq!(
        last.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        ["e"]
    );
    assert!(
        store
            .list(&tenant, &tags, Some(&last[0].id), 2)
            .await
            .unwrap()
            .is_empty()
    );
    for limit in [0, 1001] {
        assert!(matches!(
            store.list(&tenant, &tags, None, limit).await,
            Err(DocumentError::Invalid(_))
        ));
    }
}

pub async fn find_by_field_matches_strings_numbers_and_booleans(store: &dyn Documents) {
    let tenant = seeded(store, "docs-find").await;
    let connections = collection("tool_connections");
    let rows = [
        (
            "c1",
            json!({"agentToolId": "node//abc", "port": 443, "active": true}),
        ),
        (
            "c2",
            json!({"agentToolId": "node//def", "port": 80, "active": false}),
        ),
        (
            "c3",
            json!({"agentToolId": "node//abc", "port": 80, "active": true}),
        ),
    ];
    for (id, body) in rows {
        store
            .insert(&tenant, &connections, &doc_id(id), &body)
            .await
            .unwrap();
    }
    let ids = |docs: Vec<crate::documents::Document>| {
        docs.into_iter()
            .map(|d| d.id.to_string())
            .collect::<Vec<_>>()
    };
    let by_agent = store
        .find_by_field(
            &tenant,
            &connections,
            "agentToolId",
            &json!("node//abc"),
            10,
        )
        .await;
    assert_eq!(ids(by_agent.unwrap()), ["c1", "c3"]);
    let by_port = store
        .find_by_field(&tenant, &connections, "port", &json!(80), 10)
        .await;
    assert_eq!(ids(by_port.unwrap()), ["c2", "c3"]);
    let inactive = store
        .find_by_field(&tenant, &connections, "active", &json!(false), 10)
        .await;
    assert_eq!(ids(inactive.unwrap()), ["c2"]);
    let limited = store
        .find_by_field(&tenant, &connections, "active", &json!(true), 1)
        .await;
    assert_eq!(ids(limited.unwrap()), ["c1"]);

    for field in ["", "a.b", "x') OR 1=1 --", "$"] {
        let refused = store
            .find_by_field(&tenant, &connections, field, &json!("x"), 10)
            .await;
        assert!(
            matches!(refused, Err(DocumentError::Invalid(ref why)) if why.contains("field")),
            "{field}: {refused:?}"
        );
    }
    let refused = store
        .find_by_field(&tenant, &connections, "port", &json!({"$gt": 1}), 10)
        .await;
    assert!(
        matches!(refused, Err(DocumentError::Invalid(_))),
        "{refused:?}"
    );
}

pub async fn delete_checks_the_version_and_reports_absence(store: &dyn Documents) {
    let tenant = seeded(store, "docs-delete").await;
    let scripts = collection("scripts");
    let id = doc_id("s-1");
    store
        .insert(&tenant, &scripts, &id, &json!({"name": "cleanup"}))
        .await
        .unwrap();
    let stale = store.delete(&tenant, &scripts, &id, Some(9)).await;
    assert!(
        matches!(
            stale,
            Err(DocumentError::VersionConflict {
                expected: 9,
                found: 1,
                ..
            })
        ),
        "{stale:?}"
    );
    assert!(store.get(&tenant, &scripts, &id).await.unwrap().is_some());
    assert!(store.delete(&tenant, &scripts, &id, Some(1)).await.unwrap());
    assert!(!store.delete(&tenant, &scripts, &id, None).await.unwrap());
    assert_eq!(store.get(&tenant, &scripts, &id).await.unwrap(), None);
}

pub async fn tenants_never_see_each_others_documents(store: &dyn Documents) {
    let acme = seeded(store, "docs-acme").await;
    let globex = seeded(store, "docs-globex").await;
    let machines = collection("machines");
    let id = doc_id("shared-id");
    store
        .insert(&acme, &machines, &id, &json!({"owner": "acme"}))
        .await
        .unwrap();
    store
        .insert(&globex, &machines, &id, &json!({"owner": "globex"}))
        .await
        .unwrap();

    assert_eq!(
        store
            .get(&acme, &machines, &id)
            .await
            .unwrap()
            .unwrap()
            .body,
        json!({"owner": "acme"})
    );
    assert_eq!(
        store
            .list(&globex, &machines, None, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    let found = store
        .find_by_field(&acme, &machines, "owner", &json!("globex"), 10)
        .await
        .unwrap();
    assert!(found.is_empty(), "{found:?}");

    store
        .replace(
            &acme,
            &machines,
            &id,
            &json!({"owner": "acme", "v": 2}),
            Some(1),
        )
        .await
        .unwrap();
    assert!(store.delete(&acme, &machines, &id, None).await.unwrap());
    let globex_copy = store.get(&globex, &machines, &id).await.unwrap().unwrap();
    assert_eq!(
        (globex_copy.version, globex_copy.body),
        (1, json!({"owner": "globex"}))
    );
    assert_eq!(store.count(&acme, &machines).await.unwrap(), 0);
    assert_eq!(store.count(&globex, &machines).await.unwrap(), 1);
}

pub async fn imports_keep_versions_and_times_and_collections_are_listed(store: &dyn Documents) {
    let acme = seeded(store, "docs-import").await;
    let globex = seeded(store, "docs-import-other").await;
    let (machines, tags) = (collection("machines"), collection("tags"));
    let copied = crate::documents::Document {
        id: doc_id("m-1"),
        version: 7,
        body: json!({"hostname": "ws-1", "n": 1.5}),
        updated_at: 1_700_000_000_123,
    };
    store.import(&acme, &machines, &copied).await.unwrap();
    assert_eq!(
        store.get(&acme, &machines, &copied.id).await.unwrap(),
        Some(copied.clone())
    );
    let again = crate::documents::Document {
        version: 9,
        body: json!({"hostname": "ws-1b"}),
        ..copied.clone()
    };
    store.import(&acme, &machines, &again).await.unwrap();
    assert_eq!(
        store.get(&acme, &machines, &copied.id).await.unwrap(),
        Some(again),
        "an import replaces"
    );
    assert_eq!(store.count(&acme, &machines).await.unwrap(), 1);
    let next = store
        .replace(&acme, &machines, &copied.id, &json!({"x": 1}), Some(9))
        .await
        .unwrap();
    assert_eq!(next.version, 10, "versions go on from the imported one");
    store
        .insert(&acme, &tags, &doc_id("t-1"), &json!({"key": "a"}))
        .await
        .unwrap();
    store
        .insert(&globex, &collection("scripts"), &doc_id("s-1"), &json!({}))
        .await
        .unwrap();
    assert_eq!(store.collections(&acme).await.unwrap(), [machines, tags]);
    assert_eq!(
        store.collections(&globex).await.unwrap(),
        [collection("scripts")]
    );
    let unknown = store
        .import(&tenant("docs-import-nobody"), &collection("tags"), &copied)
        .await;
    assert!(
        matches!(unknown, Err(DocumentError::NotFound { .. })),
        "{unknown:?}"
    );
}

/// Instantiates every document conformance case as a test; `$factory` is a future of
/// `(Arc<E>, guard)` where `E` implements both [`TenantStore`] and [`DocumentStore`].
#[macro_export]
macro_rules! documents_conformance {
    ($factory:expr) => {
        $crate::documents_conformance!(@cases $factory;
            tenants_are_created_once_listed_and_suspended,
            inserted_documents_start_at_version_one,
            documents_need_an_existing_tenant,
            replace_checks_the_version_the_caller_read,
            invalid_bodies_are_refused,
            lists_page_by_id,
            find_by_field_matches_strings_numbers_and_booleans,
            delete_checks_the_version_and_reports_absence,
            tenants_never_see_each_others_documents,
            imports_keep_versions_and_times_and_collections_are_listed,
        );
    };
    (@cases $factory:expr; $($case:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $case() {
            let (store, _guard) = $factory.await;
            $crate::conformance::documents::$case(&*store).await;
        }
    )*};
}
