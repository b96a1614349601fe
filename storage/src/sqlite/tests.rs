use std::sync::Arc;

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
                supported: 1,
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
        (0x4F46_5241, 1, "wal")
    );
}
