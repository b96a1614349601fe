use std::sync::Arc;

use rusqlite::params;
use serde_json::json;
use tempfile::TempDir;

use super::SqliteStore;
use crate::Engine;
use crate::documents::{DocumentStore, Tenant, TenantStatus, TenantStore};
use crate::error::OpenError;
use crate::model::{Collection, DocumentId, SystemClock, TenantId};

async fn fresh() -> (Arc<SqliteStore>, TempDir) {
    let dir = TempDir::new().unwrap();
    let store =
        SqliteStore::open(&dir.path().join("tenancy.sqlite"), Arc::new(SystemClock)).unwrap();
    (Arc::new(store), dir)
}

crate::documents_conformance!(fresh());

#[tokio::test]
async fn committed_documents_survive_close_and_reopen() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("tenancy.sqlite");
    let tenant = TenantId::parse("acme").unwrap();
    let machines = Collection::parse("machines").unwrap();
    let id = DocumentId::parse("m-1").unwrap();
    {
        let store = SqliteStore::open(&path, Arc::new(SystemClock)).unwrap();
        store
            .create_tenant(&Tenant {
                id: tenant.clone(),
                name: "Acme".into(),
                status: TenantStatus::Active,
                created_at: 7,
            })
            .await
            .unwrap();
        store
            .insert(&tenant, &machines, &id, &json!({"hostname": "ws-01"}))
            .await
            .unwrap();
        store.close().await.unwrap();
        store.close().await.unwrap();
        let after_close = store.get(&tenant, &machines, &id).await;
        assert!(after_close.unwrap_err().to_string().contains("closed"));
    }
    let reopened = SqliteStore::open(&path, Arc::new(SystemClock)).unwrap();
    assert_eq!(
        reopened.tenant(&tenant).await.unwrap().unwrap().created_at,
        7
    );
    let document = reopened
        .get(&tenant, &machines, &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (document.version, document.body),
        (1, json!({"hostname": "ws-01"}))
    );
    reopened.check().await.unwrap();
}

#[test]
fn a_foreign_file_is_refused_and_left_untouched() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("tenancy.sqlite");
    let garbage = b"these are somebody's notes, not a database".repeat(100);
    std::fs::write(&path, &garbage).unwrap();
    let error = SqliteStore::open(&path, Arc::new(SystemClock)).unwrap_err();
    assert!(matches!(error, OpenError::Foreign { .. }), "{error:?}");
    assert!(error.to_string().contains("tenancy.sqlite"), "{error}");
    assert!(
        std::fs::read(&path).unwrap() == garbage,
        "the file must be left untouched"
    );
}

#[test]
fn another_applications_sqlite_database_is_refused_and_left_untouched() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("tenancy.sqlite");
    {
        let other = rusqlite::Connection::open(&path).unwrap();
        other
            .execute_batch(
                "CREATE TABLE photos (id INTEGER PRIMARY KEY); INSERT INTO photos VALUES (1);",
            )
            .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let error = SqliteStore::open(&path, Arc::new(SystemClock)).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("not an OpenFrame tenancy database"),
        "{error}"
    );
    assert!(
        std::fs::read(&path).unwrap() == before,
        "the file must be left untouched"
    );
}

#[test]
fn a_database_from_a_newer_release_is_refused() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("tenancy.sqlite");
    drop(SqliteStore::open(&path, Arc::new(SystemClock)).unwrap());
    {
        let connection = rusqlite::Connection::open(&path).unwrap();
        connection
            .execute_batch("PRAGMA user_version = 99;")
            .unwrap();
    }
    let error = SqliteStore::open(&path, Arc::new(SystemClock)).unwrap_err();
    assert!(
        matches!(
            error,
            OpenError::NewerSchema {
                found: 99,
                supported: 2,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("upgrade openframe"), "{error}");
}

#[test]
fn migrations_set_the_application_id_and_version() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("tenancy.sqlite");
    drop(SqliteStore::open(&path, Arc::new(SystemClock)).unwrap());
    let connection = rusqlite::Connection::open(&path).unwrap();
    let application_id: i64 = connection
        .query_row("PRAGMA application_id", [], |row| row.get(0))
        .unwrap();
    let version: i64 = connection
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap();
    let journal: String = connection
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .unwrap();
    assert_eq!(
        (application_id, version, journal.as_str()),
        (0x4F46_5241, 2, "wal")
    );
}

/// A tenancy database as release 1 left it: migration 1 only, with documents in it.
fn write_version_1(path: &std::path::Path) {
    let connection = rusqlite::Connection::open(path).unwrap();
    connection
        .execute_batch(&format!(
            "BEGIN; {} PRAGMA application_id = {}; PRAGMA user_version = 1; COMMIT;",
            super::migrations::MIGRATIONS[0].1,
            super::migrations::APPLICATION_ID
        ))
        .unwrap();
    connection
        .execute_batch(
            "INSERT INTO tenants VALUES ('acme', 'Acme', 'ACTIVE', 1);
             INSERT INTO documents VALUES
                 ('acme', 'runs', 'r1', 3, '{\"status\":\"PENDING\",\"n\":1}', 10),
                 ('acme', 'runs', 'r2', 1, '{\"status\":\"DONE\",\"n\":2}', 11),
                 ('acme', 'runs', 'r3', 1, '{\"status\":\"PENDING\",\"n\":3}', 12);",
        )
        .unwrap();
}

#[tokio::test]
async fn a_release_1_database_is_migrated_with_its_documents_kept() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("tenancy.sqlite");
    write_version_1(&path);
    assert_eq!(super::stored_schema_version(&path).unwrap(), Some(1));

    let store = SqliteStore::open(&path, Arc::new(SystemClock)).unwrap();
    let (acme, runs) = (
        TenantId::parse("acme").unwrap(),
        Collection::parse("runs").unwrap(),
    );
    let pending = store
        .find_by_field(&acme, &runs, "status", &json!("PENDING"), 10)
        .await
        .unwrap();
    let found: Vec<_> = pending
        .iter()
        .map(|document| {
            (
                document.id.as_str().to_owned(),
                document.version,
                document.body["n"].clone(),
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            ("r1".to_owned(), 3, json!(1)),
            ("r3".to_owned(), 1, json!(3))
        ]
    );
    assert_eq!(store.count(&acme, &runs).await.unwrap(), 3);
    store.close().await.unwrap();
    assert_eq!(super::stored_schema_version(&path).unwrap(), Some(2));
}

#[test]
fn lookups_by_the_indexed_fields_use_their_index_without_sorting() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("tenancy.sqlite");
    drop(SqliteStore::open(&path, Arc::new(SystemClock)).unwrap());
    let connection = rusqlite::Connection::open(&path).unwrap();
    let plan = |field: &str| -> String {
        let mut statement = connection
            .prepare(&format!(
                "EXPLAIN QUERY PLAN {}",
                super::find_by_field_sql(field)
            ))
            .unwrap();
        let rows = statement
            .query_map(params!["acme", "runs", "x", 5], |row| {
                row.get::<_, String>(3)
            })
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        rows.join("; ")
    };
    for (field, index) in super::migrations::INDEXED_FIELDS {
        let plan = plan(field);
        assert!(
            plan.contains(&format!(
                "USING INDEX {index} (tenant_id=? AND collection=? AND <expr>=?)"
            )),
            "{field}: {plan}"
        );
        assert!(!plan.contains("TEMP B-TREE"), "{field}: {plan}");
    }
    let plain = plan("hostname");
    assert!(plain.contains("USING PRIMARY KEY"), "{plain}");
}

#[test]
fn reading_the_version_and_copying_as_is_leave_a_release_1_file_unmigrated() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("tenancy.sqlite");
    assert_eq!(super::stored_schema_version(&path).unwrap(), None);
    write_version_1(&path);
    let before = std::fs::read(&path).unwrap();
    let copy = dir.path().join("copy.sqlite");
    super::copy_as_is(&path, &copy).unwrap();
    assert!(
        std::fs::read(&path).unwrap() == before,
        "the source is untouched"
    );
    assert_eq!(super::stored_schema_version(&copy).unwrap(), Some(1));
    let connection = rusqlite::Connection::open(&copy).unwrap();
    let rows: i64 = connection
        .query_row("SELECT count(*) FROM documents", [], |row| row.get(0))
        .unwrap();
    assert_eq!(rows, 3);
    let error = super::copy_as_is(&path, &copy).unwrap_err();
    assert!(
        error.to_string().starts_with("cannot copy ") && error.to_string().contains("copy.sqlite"),
        "{error}"
    );
}
