//! The tenancy database's schema history. Migrations are append-only: a released one never changes,
//! so a database is always at exactly one known version (`PRAGMA user_version`).

/// `PRAGMA application_id` of our files ("OFRA"), so a foreign SQLite file is recognised.
pub(crate) const APPLICATION_ID: i64 = 0x4F46_5241;

/// `(version, SQL)`; applied in order, each in its own transaction with `user_version` bumped.
pub(crate) const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "CREATE TABLE tenants (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL,
        status      TEXT NOT NULL CHECK (status IN ('ACTIVE', 'SUSPENDED')),
        created_at  INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE documents (
        tenant_id   TEXT NOT NULL REFERENCES tenants (id),
        collection  TEXT NOT NULL,
        id          TEXT NOT NULL,
        version     INTEGER NOT NULL,
        body        TEXT NOT NULL CHECK (json_valid(body)),
        updated_at  INTEGER NOT NULL,
        PRIMARY KEY (tenant_id, collection, id)
    ) STRICT, WITHOUT ROWID;",
    ),
    (
        2,
        // `find_by_field` looked through a whole collection; these are the fields the appliance
        // looks documents up by (sessions and token families by user, invitations by token hash,
        // devices by machine id, runs by execution and status, webhook deliveries). The query
        // names the same expression, so SQLite uses the index. Other fields still work, scanned.
        // The indexes are partial: a document without the field costs its writes nothing.
        "CREATE INDEX documents_by_user_id
            ON documents (tenant_id, collection, json_extract(body, '$.\"userId\"'))
            WHERE json_extract(body, '$.\"userId\"') IS NOT NULL;
        CREATE INDEX documents_by_status
            ON documents (tenant_id, collection, json_extract(body, '$.\"status\"'))
            WHERE json_extract(body, '$.\"status\"') IS NOT NULL;
        CREATE INDEX documents_by_machine_id
            ON documents (tenant_id, collection, json_extract(body, '$.\"machineId\"'))
            WHERE json_extract(body, '$.\"machineId\"') IS NOT NULL;
        CREATE INDEX documents_by_execution_id
            ON documents (tenant_id, collection, json_extract(body, '$.\"executionId\"'))
            WHERE json_extract(body, '$.\"executionId\"') IS NOT NULL;
        CREATE INDEX documents_by_token_hash
            ON documents (tenant_id, collection, json_extract(body, '$.\"tokenHash\"'))
            WHERE json_extract(body, '$.\"tokenHash\"') IS NOT NULL;
        CREATE INDEX documents_by_subscription_id
            ON documents (tenant_id, collection, json_extract(body, '$.\"subscriptionId\"'))
            WHERE json_extract(body, '$.\"subscriptionId\"') IS NOT NULL;",
    ),
];

/// The fields migration 2 indexes, with their index. A lookup names its index (`INDEXED BY`):
/// without statistics SQLite prefers walking the primary key in id order to avoid a sort, which
/// reads the whole collection; the index is already in id order within one value.
pub(crate) const INDEXED_FIELDS: &[(&str, &str)] = &[
    ("userId", "documents_by_user_id"),
    ("status", "documents_by_status"),
    ("machineId", "documents_by_machine_id"),
    ("executionId", "documents_by_execution_id"),
    ("tokenHash", "documents_by_token_hash"),
    ("subscriptionId", "documents_by_subscription_id"),
];

pub(crate) fn latest() -> i64 {
    MIGRATIONS.last().map_or(0, |(version, _)| *version)
}
