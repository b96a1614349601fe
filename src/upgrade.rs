//! Upgrades of the data dir. Each store of record carries its schema version (the tenancy
//! database's `user_version`, the event log's `format_version`); opening a store an older release
//! wrote migrates it, and a store a newer release wrote is refused.
//!
//! Architecture invariant: nothing is migrated without a backup. Before the stores open, the holder
//! of the data dir calls [`backup_before_migrating`], which archives the data dir as it is (a
//! normal backup archive, restorable with `openframe restore` by the release that wrote it) to
//! `<backup dir>/pre-upgrade-<UTC>.tar`. If that archive cannot be written, nothing starts and
//! nothing is migrated. Commands that open the tenancy database without holding the data dir
//! (`tenant`, `user`, `apikey`, …) refuse to migrate it: [`refuse_pending_tenancy_migration`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use openframe_storage::{StorageConfig, StoredSchema};

use crate::backup;
use crate::config::Config;

/// Pre-upgrade archives are `pre-upgrade-<UTC>.tar`; retention (`backup.keep`) leaves them alone.
pub const PREFIX: &str = "pre-upgrade-";

/// How long each notice to systemd extends the start timeout while the archive is written.
const EXTEND_START_BY: Duration = Duration::from_secs(60);

/// For the holder of the data dir, before the stores open: when a store's files come from an
/// older release, archives the data dir as it is and returns the archive's path and the stores
/// that will be migrated. `None` when nothing needs migrating (including a new data dir).
pub async fn backup_before_migrating(
    config: &Config,
) -> anyhow::Result<Option<(PathBuf, Vec<StoredSchema>)>> {
    let storage_config = config.storage_config();
    let probe = storage_config.clone();
    let schemas = tokio::task::spawn_blocking(move || openframe_storage::stored_schemas(&probe))
        .await
        .context("the schema check failed to run")?
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    let pending: Vec<StoredSchema> = schemas
        .into_iter()
        .filter(StoredSchema::needs_migration)
        .collect();
    if pending.is_empty() {
        return Ok(None);
    }
    let steps = describe(&pending);
    let data_dir = &config.storage.data_dir;
    let dir = config.backup.directory(data_dir);
    tracing::info!(steps, dir = %dir.display(), "the data dir needs migrating; backing it up first");
    crate::systemd::notify(&format!(
        "STATUS=backing up the data dir before migrating ({steps})"
    ));
    let out = write_archive(&storage_config, &dir)
        .await
        .map_err(|error| {
            anyhow::anyhow!(
                "the data dir {} needs migrating ({steps}), and the backup taken first failed, so nothing was migrated: {error:#}. Free space in {} (or set backup.dir to a disk with room) and start again",
                data_dir.display(),
                dir.display()
            )
        })?;
    tracing::info!(archive = %out.display(), steps, "backed up the data dir; migrating");
    Ok(Some((out, pending)))
}

/// Writes `<dir>/pre-upgrade-<UTC>.tar`, telling systemd meanwhile that starting takes longer.
async fn write_archive(config: &StorageConfig, dir: &Path) -> anyhow::Result<PathBuf> {
    backup::create_private_dir(dir)?;
    let stamp = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second].[subsecond digits:3]Z"
        ))
        .context("formatting the archive's name")?;
    let out = dir.join(format!("{PREFIX}{stamp}.tar"));
    let partial = backup::prepare_out(&out)?;
    let keep_alive = tokio::spawn(async {
        let extend = format!("EXTEND_TIMEOUT_USEC={}", EXTEND_START_BY.as_micros());
        loop {
            crate::systemd::notify(&extend);
            tokio::time::sleep(EXTEND_START_BY / 3).await;
        }
    });
    let written = match backup::ScratchDir::create(&config.data_dir, ".backup-") {
        Ok(work) => {
            backup::create_archive_as_is(config, work.path(), &partial, &mut |step: &str| {
                tracing::info!(step, "pre-upgrade backup")
            })
            .await
            .map(drop)
        }
        Err(error) => Err(error),
    };
    keep_alive.abort();
    let (partial_path, out_path) = (partial.clone(), out.clone());
    tokio::task::spawn_blocking(move || backup::finish_archive(&partial_path, &out_path, written))
        .await
        .context("the backup check failed to run")??;
    Ok(out)
}

/// For commands that open the tenancy database without holding the data dir: refuses when
/// opening it would migrate it, since only the holder backs it up first.
pub fn refuse_pending_tenancy_migration(config: &StorageConfig) -> anyhow::Result<()> {
    let schema = openframe_storage::stored_tenancy_schema(config)
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    if schema.needs_migration() {
        anyhow::bail!(
            "the data dir {} was written by an older release and needs migrating ({}); start `openframe serve` on it once (it backs the data dir up, then migrates it), then run this again",
            config.data_dir.display(),
            describe(std::slice::from_ref(&schema))
        );
    }
    Ok(())
}

/// `tenancy schema 1 → 2, events format …`.
fn describe(pending: &[StoredSchema]) -> String {
    pending
        .iter()
        .map(|schema| {
            format!(
                "{} schema {} → {}",
                schema.role,
                schema.version(),
                schema.supported
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}
