//! The tenancy database's schema history. Migrations are append-only: a released one never changes,
//! so a database is always at exactly one known version (`PRAGMA user_version`).

/// `PRAGMA application_id` of our files ("OFRA"), so a foreign SQLite file is recognised.
pub(crate) const APPLICATION_ID: i64 = 0x4F46_5241;

/// `(version, SQL)`; applied in order, each in its own transaction with `user_version` bumped.
pub(crate) const MIGRATIONS: &[(i64, &str)] = &[(
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
)];

pub(crate) fn latest() -> i64 {
    MIGRATIONS.last().map_or(0, |(version, _)| *version)
}
