//! `openframe backup` and `openframe restore`: one tar archive holding a manifest and a
//! consistent copy of the stores of record (`tenancy.sqlite`, `events.redb`) with the small files
//! of `keys/` and `tls/`. Analytics (DuckDB) and search (tantivy) are derived from the log details,
//! so they are not archived: a restore rebuilds them, as `openframe reindex` does. `nats/`
//! (JetStream queues in flight) is left out.
//!
//! Architecture invariants:
//! - A backup is written to `FILE.partial`, flushed, read back and checked against its manifest,
//!   and only then renamed to `FILE`: a file named `FILE` is always complete.
//! - A restore unpacks into a sibling `DIR.restoring-<random>`, checks every file's size and
//!   SHA-256, rebuilds the derived stores there, and renames it to `DIR` last: a failure at any
//!   step leaves no data dir at all, never a half-restored one.
//! - The snapshot of a running appliance is taken by that process (redb and DuckDB lock their
//!   files), asked over the admin listener with the token in [`TOKEN_FILE`]. A data dir nothing
//!   serves is archived by the lock's holder as it is on disk, never migrated first
//!   ([`create_archive_as_is`]; `crate::upgrade` relies on this before migrating).

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use aws_lc_rs::digest;
use openframe_storage::details::MAX_SCAN;
use openframe_storage::model::Collection;
use openframe_storage::{
    Clock, DocumentStore, LogDetails, Records, Storage, StorageConfig, TenantStore,
};
use serde::{Deserialize, Serialize};

/// The archive layout this build writes, and the newest it reads.
pub const FORMAT: u64 = 1;
/// The first member of every archive.
pub const MANIFEST: &str = "manifest.json";
/// The admin listener's bearer token for `POST /backup`, written by `serve` at start (0600) and
/// removed at a clean stop: whoever can read the data dir may take a backup.
pub const TOKEN_FILE: &str = "admin.token";
/// The small directories of the data dir that are archived as they are.
const SMALL_DIRS: [&str; 2] = ["keys", "tls"];
/// A manifest larger than this is not one of ours.
const MAX_MANIFEST_BYTES: u64 = 16 * 1024 * 1024;

/// What an archive holds, as `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub format: u64,
    pub appliance_version: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// Each store of record's schema version, by role (`tenancy`, `events`).
    pub schema_versions: std::collections::BTreeMap<String, i64>,
    /// What is in the archive (`tenancy`, `events`, `keys`, `tls`).
    pub stores: Vec<String>,
    /// What a restore rebuilds from the stores of record (`analytics`, `search`).
    pub rebuilt_on_restore: Vec<String>,
    pub files: Vec<FileEntry>,
    pub tenants: Vec<TenantCounts>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Relative to the data dir, `/`-separated.
    pub path: String,
    pub bytes: u64,
    /// Lowercase hex.
    pub sha256: String,
}

/// Per tenant, what the snapshot holds: the restore compares its result with these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantCounts {
    pub id: String,
    pub users: u64,
    pub devices: u64,
    pub organizations: u64,
    pub api_keys: u64,
    pub log_entries: u64,
}

/// Where a backup or a restore reports how it is getting on. A closure taking each line is one.
pub trait Report: Send {
    /// A step begun or done, as one line.
    fn line(&mut self, line: &str);

    /// `done` of the `total` bytes of the file `name` copied so far, reported as they go (about
    /// every 1% and at the end). Ignored unless overridden: the lines name every file anyway.
    fn bytes(&mut self, name: &str, done: u64, total: u64) {
        let _ = (name, done, total);
    }

    /// `done` of the `total` items (documents, records) of a step so far, as they go.
    fn items(&mut self, name: &str, done: u64, total: u64) {
        let _ = (name, done, total);
    }
}

impl<F: FnMut(&str) + Send> Report for F {
    fn line(&mut self, line: &str) {
        self(line);
    }
}

/// A step's progress, for the caller to print or log.
pub type Progress<'a> = &'a mut dyn Report;

/// What a blocking task reports, on its way to the caller's [`Report`].
enum Event {
    Line(String),
    Bytes(String, u64, u64),
}

/// The blocking task's end of the channel.
struct Forward(tokio::sync::mpsc::UnboundedSender<Event>);

impl Report for Forward {
    fn line(&mut self, line: &str) {
        let _ = self.0.send(Event::Line(line.to_owned()));
    }

    fn bytes(&mut self, name: &str, done: u64, total: u64) {
        let _ = self.0.send(Event::Bytes(name.to_owned(), done, total));
    }
}

/// Runs `work` on the blocking pool, passing what it reports on to `progress` as it happens.
async fn run_reporting<T: Send + 'static>(
    progress: Progress<'_>,
    what: &'static str,
    work: impl FnOnce(&mut dyn Report) -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let (events, mut received) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::task::spawn_blocking(move || work(&mut Forward(events)));
    while let Some(event) = received.recv().await {
        match event {
            Event::Line(line) => progress.line(&line),
            Event::Bytes(name, done, total) => progress.bytes(&name, done, total),
        }
    }
    task.await
        .with_context(|| format!("the {what} task failed"))?
}

/// A reader that reports the bytes read through it as the file `name`'s progress.
struct Metered<'a, R> {
    inner: R,
    name: &'a str,
    total: u64,
    done: u64,
    reported: u64,
    report: &'a mut dyn Report,
}

impl<'a, R: Read> Metered<'a, R> {
    fn new(inner: R, name: &'a str, total: u64, report: &'a mut dyn Report) -> Self {
        Metered {
            inner,
            name,
            total,
            done: 0,
            reported: 0,
            report,
        }
    }
}

impl<R: Read> Read for Metered<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.done += read as u64;
        let step = (self.total / 100).max(1024 * 1024);
        if self.done - self.reported >= step || (read == 0 && self.reported < self.done) {
            self.reported = self.done;
            self.report.bytes(self.name, self.done, self.total);
        }
        Ok(read)
    }
}

/// Takes a consistent snapshot of the stores of record (whose data dir is `data_dir`) into `work`
/// (an empty directory this call fills and the caller removes) and writes the archive to `out`,
/// which must not exist. Returns the manifest written.
pub async fn create_archive(
    storage: &Records,
    data_dir: &Path,
    work: &Path,
    out: &Path,
    progress: Progress<'_>,
) -> anyhow::Result<Manifest> {
    let snapshot = work.join("snapshot");
    create_private_dir(&snapshot)?;
    progress.line("snapshotting the stores of record");
    let paths = storage
        .snapshot(&snapshot)
        .await
        .map_err(|failure| anyhow::anyhow!("{failure}"))?;
    progress.line("counting records in the snapshot");
    let tenants = count_snapshot(&snapshot).await?;
    archive_snapshot(
        Snapshot {
            dir: snapshot,
            paths,
            tenants,
            schema_versions: current_schema_versions(),
        },
        data_dir,
        out,
        progress,
    )
    .await
}

/// Archives a data dir nothing serves (the caller holds it) as it is on disk: its stores of
/// record are copied without being opened, so files an older release wrote are archived at their
/// own schema, not migrated. `work` is an empty directory this call fills and the caller removes.
pub async fn create_archive_as_is(
    config: &StorageConfig,
    work: &Path,
    out: &Path,
    progress: Progress<'_>,
) -> anyhow::Result<Manifest> {
    let (storage_config, snapshot) = (config.clone(), work.join("snapshot"));
    create_private_dir(&snapshot)?;
    progress.line("copying the stores of record as they are");
    let into = snapshot.clone();
    let (schemas, paths) = tokio::task::spawn_blocking(move || {
        let schemas = openframe_storage::stored_schemas(&storage_config)?;
        let paths = openframe_storage::copy_stores_as_is(&storage_config, &into)?;
        Ok::<_, openframe_storage::OpenError>((schemas, paths))
    })
    .await
    .context("the copying task failed")?
    .map_err(|error| anyhow::anyhow!("{error}"))?;
    // Counting opens the stores, which migrates them: count a second copy, not the archived one.
    progress.line("counting records");
    let counting = work.join("count");
    create_private_dir(&counting)?;
    for path in &paths {
        std::fs::copy(snapshot.join(path), counting.join(path))
            .with_context(|| format!("cannot copy {path} for counting"))?;
    }
    let tenants = count_snapshot(&counting).await?;
    std::fs::remove_dir_all(&counting)
        .with_context(|| format!("cannot remove {}", counting.display()))?;
    let mut schema_versions = current_schema_versions();
    for schema in &schemas {
        schema_versions.insert(schema.role.to_owned(), schema.version());
    }
    archive_snapshot(
        Snapshot {
            dir: snapshot,
            paths,
            tenants,
            schema_versions,
        },
        &config.data_dir,
        out,
        progress,
    )
    .await
}

/// This build's schema version of each store of record, by role.
fn current_schema_versions() -> std::collections::BTreeMap<String, i64> {
    openframe_storage::schema_versions()
        .iter()
        .map(|(role, version)| ((*role).to_owned(), *version))
        .collect()
}

/// The stores of record copied into `dir` (as `paths`), what they hold and their schemas.
struct Snapshot {
    dir: PathBuf,
    paths: Vec<String>,
    tenants: Vec<TenantCounts>,
    schema_versions: std::collections::BTreeMap<String, i64>,
}

/// Adds the small directories of `data_dir` to the snapshot, hashes every file and writes the
/// archive to `out`.
async fn archive_snapshot(
    snapshot: Snapshot,
    data_dir: &Path,
    out: &Path,
    progress: Progress<'_>,
) -> anyhow::Result<Manifest> {
    let Snapshot {
        dir,
        mut paths,
        tenants,
        schema_versions,
    } = snapshot;
    let mut stores = vec!["tenancy".to_owned(), "events".to_owned()];
    for small in SMALL_DIRS {
        let copied = copy_small_dir(&data_dir.join(small), &dir.join(small), small)?;
        if !copied.is_empty() {
            stores.push(small.to_owned());
        }
        paths.extend(copied);
    }
    let snapshot_dir = dir.clone();
    let manifest = tokio::task::spawn_blocking(move || -> anyhow::Result<Manifest> {
        let mut files = Vec::with_capacity(paths.len());
        for path in paths {
            let (bytes, sha256) = hash_file(&snapshot_dir.join(&path))?;
            files.push(FileEntry {
                path,
                bytes,
                sha256,
            });
        }
        Ok(Manifest {
            format: FORMAT,
            appliance_version: env!("CARGO_PKG_VERSION").to_owned(),
            created_at: now_rfc3339(),
            schema_versions,
            stores,
            rebuilt_on_restore: vec!["analytics".to_owned(), "search".to_owned()],
            files,
            tenants,
        })
    })
    .await
    .context("the hashing task failed")??;
    let out = out.to_owned();
    let written = manifest.clone();
    run_reporting(progress, "archive", move |report| {
        write_archive(&dir, &written, &out, report)
    })
    .await?;
    Ok(manifest)
}

/// Writes `manifest.json` and then every file it lists, read from `from`, as a tar file at `out`
/// (created 0600, must not exist), flushed to disk.
fn write_archive(
    from: &Path,
    manifest: &Manifest,
    out: &Path,
    progress: &mut dyn Report,
) -> anyhow::Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .with_context(|| format!("cannot create {}", out.display()))?;
    let mut builder = tar::Builder::new(BufWriter::new(file));
    let mtime = u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0);
    let manifest_bytes = serde_json::to_vec_pretty(manifest)?;
    let header = |size: u64| {
        let mut header = tar::Header::new_gnu();
        header.set_size(size);
        header.set_mode(0o600);
        header.set_mtime(mtime);
        header.set_entry_type(tar::EntryType::Regular);
        header
    };
    let writing = |path: &str| format!("cannot write {path} into {}", out.display());
    builder
        .append_data(
            &mut header(manifest_bytes.len() as u64),
            MANIFEST,
            manifest_bytes.as_slice(),
        )
        .with_context(|| writing(MANIFEST))?;
    for entry in &manifest.files {
        let source = File::open(from.join(&entry.path))
            .with_context(|| format!("cannot read the snapshot's {}", entry.path))?;
        let metered = Metered::new(source.take(entry.bytes), &entry.path, entry.bytes, progress);
        builder
            .append_data(&mut header(entry.bytes), &entry.path, metered)
            .with_context(|| writing(&entry.path))?;
        progress.line(&format!("{} {} done", entry.path, human_bytes(entry.bytes)));
    }
    let file = builder
        .into_inner()
        .with_context(|| writing("the end of the archive"))?
        .into_inner()
        .map_err(|error| error.into_error())
        .with_context(|| writing("the end of the archive"))?;
    file.sync_all()
        .with_context(|| format!("cannot flush {} to disk", out.display()))?;
    Ok(())
}

/// Copies the regular files of `from` (recursively; absent is empty) into `to`, returning their
/// paths prefixed with `prefix/`.
fn copy_small_dir(from: &Path, to: &Path, prefix: &str) -> anyhow::Result<Vec<String>> {
    let mut copied = Vec::new();
    let entries = match std::fs::read_dir(from) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(copied),
        Err(error) => return Err(error).with_context(|| format!("cannot read {}", from.display())),
    };
    create_private_dir(to)?;
    let mut names: Vec<_> = entries
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("cannot read {}", from.display()))?;
    names.sort_by_key(|entry| entry.file_name());
    for entry in names {
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let kind = entry.file_type()?;
        let relative = format!("{prefix}/{name}");
        if kind.is_dir() {
            copied.extend(copy_small_dir(&entry.path(), &to.join(&name), &relative)?);
        } else if kind.is_file() {
            std::fs::copy(entry.path(), to.join(&name))
                .with_context(|| format!("cannot copy {}", entry.path().display()))?;
            copied.push(relative);
        }
    }
    Ok(copied)
}

/// Counts, per tenant, what the snapshot in `dir` holds.
async fn count_snapshot(dir: &Path) -> anyhow::Result<Vec<TenantCounts>> {
    let clock: Arc<dyn Clock> = Arc::new(openframe_storage::model::SystemClock);
    let records = Storage::open_records(&StorageConfig::embedded(dir), clock)
        .await
        .map_err(|error| anyhow::anyhow!("cannot open the snapshot: {error}"))?;
    let counted = count_tenants(
        records.tenants.as_ref(),
        records.documents.as_ref(),
        records.details.as_ref(),
    )
    .await;
    let closed = records.close().await;
    let counted = counted?;
    closed.map_err(|failure| anyhow::anyhow!("closing the snapshot: {failure}"))?;
    Ok(counted)
}

/// Every tenant's users, devices, organizations, API keys and log entries.
pub async fn count_tenants(
    tenants: &dyn TenantStore,
    documents: &dyn DocumentStore,
    details: &dyn LogDetails,
) -> anyhow::Result<Vec<TenantCounts>> {
    let collection =
        |name: &str| Collection::parse(name).map_err(|error| anyhow::anyhow!("{error}"));
    let (users, machines, organizations, api_keys) = (
        collection("users")?,
        collection("machines")?,
        collection("organizations")?,
        collection("api_keys")?,
    );
    let mut counted = Vec::new();
    for tenant in tenants
        .tenants()
        .await
        .map_err(|error| anyhow::anyhow!("reading tenants: {error}"))?
    {
        let id = tenant.id;
        let count = async |collection: &Collection| {
            documents
                .count(&id, collection)
                .await
                .map_err(|error| anyhow::anyhow!("counting {id}'s {collection:?}: {error}"))
        };
        let mut log_entries = 0u64;
        let mut after = None;
        loop {
            let page = details
                .scan(&id, i64::MIN, i64::MAX, after.as_ref(), MAX_SCAN)
                .await
                .map_err(|error| anyhow::anyhow!("counting {id}'s log entries: {error}"))?;
            log_entries += page.len() as u64;
            match page.into_iter().last() {
                Some((key, _)) => after = Some(key),
                None => break,
            }
        }
        counted.push(TenantCounts {
            users: count(&users).await?,
            devices: count(&machines).await?,
            organizations: count(&organizations).await?,
            api_keys: count(&api_keys).await?,
            log_entries,
            id: id.as_str().to_owned(),
        });
    }
    Ok(counted)
}

/// Refuses an archive this build cannot restore: a newer layout or a newer store schema.
pub fn check_compatible(manifest: &Manifest) -> anyhow::Result<()> {
    if manifest.format > FORMAT {
        anyhow::bail!(
            "the backup has format {} (written by openframe {}), this build reads up to format {FORMAT}; restore it with openframe {} or newer",
            manifest.format,
            manifest.appliance_version,
            manifest.appliance_version
        );
    }
    for (role, supported) in openframe_storage::schema_versions() {
        let Some(found) = manifest.schema_versions.get(role) else {
            anyhow::bail!("the backup's manifest names no schema version for {role}");
        };
        if *found > supported {
            anyhow::bail!(
                "the backup's {role} store has schema {found} (written by openframe {}), this build knows up to {supported}; restore it with openframe {} or newer",
                manifest.appliance_version,
                manifest.appliance_version
            );
        }
    }
    Ok(())
}

/// A member path that stays inside the data dir: relative, with plain components only.
pub fn safe_relative_path(text: &str) -> Result<PathBuf, String> {
    if text.is_empty() || text.contains('\\') || text.contains('\0') {
        return Err(format!("{text:?} is not a plain relative path"));
    }
    let path = Path::new(text);
    if path
        .components()
        .all(|component| matches!(component, Component::Normal(_)))
    {
        Ok(path.to_owned())
    } else {
        Err(format!(
            "{text:?} leaves the data dir (absolute, or with . or ..)"
        ))
    }
}

/// Reads the archive at `archive` through: the manifest, checked for compatibility, then every
/// member, checked against the manifest's size and SHA-256. With `into`, members are written
/// there (dirs 0700, files 0600, flushed). Any problem names the member.
pub fn unpack(
    archive: &Path,
    into: Option<&Path>,
    progress: &mut dyn Report,
) -> anyhow::Result<Manifest> {
    let file = File::open(archive).with_context(|| format!("cannot open {}", archive.display()))?;
    let mut reader = tar::Archive::new(BufReader::new(file));
    let damaged =
        |what: String| anyhow::anyhow!("{} is damaged or truncated: {what}", archive.display());
    let mut entries = reader
        .entries()
        .map_err(|error| damaged(format!("{error}")))?;
    let manifest: Manifest = match entries.next() {
        Some(Ok(entry)) => {
            let path = entry.path().map_err(|error| damaged(format!("{error}")))?;
            if path.as_ref() != Path::new(MANIFEST) {
                return Err(damaged(format!(
                    "it starts with {}, not {MANIFEST}",
                    path.display()
                )));
            }
            let mut text = Vec::new();
            entry
                .take(MAX_MANIFEST_BYTES)
                .read_to_end(&mut text)
                .map_err(|error| damaged(format!("reading {MANIFEST}: {error}")))?;
            serde_json::from_slice(&text)
                .map_err(|error| damaged(format!("{MANIFEST} is not a backup manifest: {error}")))?
        }
        Some(Err(error)) => return Err(damaged(format!("reading {MANIFEST}: {error}"))),
        None => return Err(damaged(format!("it holds no {MANIFEST}"))),
    };
    check_compatible(&manifest)?;
    let mut expected: std::collections::BTreeMap<&str, &FileEntry> =
        std::collections::BTreeMap::new();
    for entry in &manifest.files {
        safe_relative_path(&entry.path)
            .map_err(|problem| damaged(format!("the manifest lists {problem}")))?;
        expected.insert(entry.path.as_str(), entry);
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut after = MANIFEST.to_owned();
    for member in entries {
        let mut member = member.map_err(|error| damaged(format!("after {after}: {error}")))?;
        let name = member
            .path()
            .map_err(|error| damaged(format!("after {after}: {error}")))?
            .to_string_lossy()
            .into_owned();
        let relative = safe_relative_path(&name).map_err(&damaged)?;
        let Some(listed) = expected.get(name.as_str()) else {
            return Err(damaged(format!("{name} is not in the manifest")));
        };
        if !seen.insert(name.clone()) || member.header().entry_type() != tar::EntryType::Regular {
            return Err(damaged(format!("{name} is not one regular file")));
        }
        let mut sink: Box<dyn Write> = match into {
            Some(dir) => {
                let target = dir.join(&relative);
                if let Some(parent) = target.parent() {
                    create_private_dir(parent)?;
                }
                let file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&target)
                    .with_context(|| format!("cannot create {}", target.display()))?;
                Box::new(SyncOnFinish(BufWriter::new(file)))
            }
            None => Box::new(std::io::sink()),
        };
        let mut hashing = HashingWriter::new(&mut sink);
        std::io::copy(
            &mut Metered::new(&mut member, &name, listed.bytes, progress),
            &mut hashing,
        )
        .map_err(|error| damaged(format!("{name}: {error}")))?;
        let (bytes, sha256) = hashing.finish();
        if bytes != listed.bytes {
            return Err(damaged(format!(
                "{name} holds {bytes} bytes, the manifest says {}",
                listed.bytes
            )));
        }
        if sha256 != listed.sha256 {
            return Err(damaged(format!(
                "{name} does not match its checksum (sha256 {sha256}, the manifest says {})",
                listed.sha256
            )));
        }
        sink.flush()
            .with_context(|| format!("cannot write {name}"))?;
        drop(sink);
        progress.line(&format!("{name} {} verified", human_bytes(bytes)));
        after = name;
    }
    if let Some(missing) = expected.keys().find(|path| !seen.contains(**path)) {
        return Err(damaged(format!("{missing} is missing")));
    }
    Ok(manifest)
}

/// `FILE.partial`: where an archive is written until it is complete and checked.
pub fn partial_path(out: &Path) -> PathBuf {
    let mut name = out.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

/// Refuses to overwrite an existing backup; removes a stale `FILE.partial` of an earlier failure.
pub fn prepare_out(out: &Path) -> anyhow::Result<PathBuf> {
    if out.exists() {
        anyhow::bail!(
            "{} exists; choose another --out or remove it first",
            out.display()
        );
    }
    let partial = partial_path(out);
    match std::fs::remove_file(&partial) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => {
            return Err(error).with_context(|| format!("cannot remove {}", partial.display()));
        }
    }
    Ok(partial)
}

/// Reads `partial` back against its manifest, then renames it to `out`. On failure the partial
/// file is removed, so nothing that looks like a backup is left behind.
pub fn finish_archive(
    partial: &Path,
    out: &Path,
    written: anyhow::Result<()>,
) -> anyhow::Result<Manifest> {
    let checked = written.and_then(|()| {
        let manifest =
            unpack(partial, None, &mut |_: &str| {}).context("the archive does not read back")?;
        std::fs::rename(partial, out)
            .with_context(|| format!("cannot rename {} to {}", partial.display(), out.display()))?;
        let parent = match out.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        sync_dir(parent)?;
        Ok(manifest)
    });
    if checked.is_err() {
        let _ = std::fs::remove_file(partial);
    }
    checked
}

/// Backs up a data dir nothing serves: takes its lock and archives its stores as they are on
/// disk (without migrating files an older release wrote).
pub async fn backup_local(
    config: &crate::config::Config,
    partial: &Path,
    progress: Progress<'_>,
) -> anyhow::Result<()> {
    let data_dir = config.storage.data_dir.clone();
    if !data_dir.is_dir() {
        anyhow::bail!(
            "there is no data dir at {}: nothing to back up (give --data-dir)",
            data_dir.display()
        );
    }
    let lock = crate::datadir::DataDirLock::acquire(&data_dir)?;
    remove_stale_scratch(&data_dir);
    let work = ScratchDir::create(&data_dir, ".backup-")?;
    let written =
        create_archive_as_is(&config.storage_config(), work.path(), partial, progress).await;
    drop(work);
    drop(lock);
    written.map(drop)
}

/// Asks the appliance serving at `admin_url` for a backup and writes what it sends to `partial`.
pub async fn backup_remote(
    admin_url: &str,
    token: &str,
    partial: &Path,
    progress: Progress<'_>,
) -> anyhow::Result<()> {
    let url = format!("{}/backup", admin_url.trim_end_matches('/'));
    progress.line(&format!("asking the running appliance at {url}"));
    let response = reqwest::Client::new()
        .post(&url)
        .bearer_auth(token)
        .send()
        .await
        .with_context(|| {
            format!("cannot reach the running appliance at {url} (give --admin-url)")
        })?;
    let status = response.status();
    if !status.is_success() {
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        let message = body["message"]
            .as_str()
            .unwrap_or("no reason given")
            .to_owned();
        anyhow::bail!("the running appliance refused the backup ({status}): {message}");
    }
    let expected = response.content_length();
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    let (mut received, mut reported) = (0u64, 0u64);
    let mut response = response;
    while let Some(chunk) = response
        .chunk()
        .await
        .context("the appliance stopped sending the backup")?
    {
        file.write_all(&chunk)
            .with_context(|| format!("cannot write {}", partial.display()))?;
        received += chunk.len() as u64;
        if let Some(total) = expected
            && received - reported >= (total / 100).max(1024 * 1024)
        {
            reported = received;
            progress.bytes("the archive", received, total);
        }
    }
    if let Some(expected) = expected
        && expected != received
    {
        anyhow::bail!("the appliance sent {received} of {expected} bytes");
    }
    file.sync_all()
        .with_context(|| format!("cannot flush {} to disk", partial.display()))?;
    progress.line(&format!("received {}", human_bytes(received)));
    Ok(())
}

/// Restores `archive` into the configured data dir, which must be absent or empty and not in
/// use; see the module's invariants.
pub async fn restore(
    archive: &Path,
    config: &crate::config::Config,
    progress: Progress<'_>,
) -> anyhow::Result<Manifest> {
    let data_dir = config.storage.data_dir.clone();
    if let Some(holder) = crate::datadir::lock_holder(&data_dir) {
        let holder = if holder.is_empty() {
            String::new()
        } else {
            format!(" (pid {holder})")
        };
        anyhow::bail!(
            "the data dir {} is in use by a running openframe{holder}; stop it before restoring",
            data_dir.display()
        );
    }
    match std::fs::read_dir(&data_dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                anyhow::bail!(
                    "the data dir {} is not empty; restore into an absent or empty directory (move the old one aside first)",
                    data_dir.display()
                );
            }
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => {
            return Err(error).with_context(|| format!("cannot read {}", data_dir.display()));
        }
    }
    let name = data_dir
        .file_name()
        .and_then(|name| name.to_str())
        .ok_or_else(|| anyhow::anyhow!("{} names no directory", data_dir.display()))?
        .to_owned();
    let parent = match data_dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    let scratch = ScratchDir::create(&parent, &format!("{name}.restoring-"))?;

    let (archive_path, into) = (archive.to_owned(), scratch.path().to_owned());
    let manifest = run_reporting(&mut *progress, "unpacking", move |report| {
        unpack(&archive_path, Some(&into), report)
    })
    .await?;

    progress.line("rebuilding analytics and search from the log details");
    let mut storage_config = config.storage_config();
    storage_config.data_dir = scratch.path().to_owned();
    let clock: Arc<dyn Clock> = Arc::new(openframe_storage::model::SystemClock);
    let storage = Storage::open(&storage_config, clock.clone())
        .await
        .map_err(|error| anyhow::anyhow!("the restored stores do not open: {error}"))?;
    let rebuilt = rebuild_and_count(&storage, clock, progress).await;
    let closed = storage.close().await;
    let counted = rebuilt?;
    closed.map_err(|failure| anyhow::anyhow!("closing the restored stores: {failure}"))?;
    let mut expected = manifest.tenants.clone();
    expected.sort_by(|a, b| a.id.cmp(&b.id));
    if counted != expected {
        anyhow::bail!(
            "the restored stores do not hold what the manifest counts (restored {counted:?}, manifest {expected:?})"
        );
    }

    sync_dir(scratch.path())?;
    std::fs::rename(scratch.path(), &data_dir).with_context(|| {
        format!(
            "cannot move the restored data into {} (did something write there meanwhile?)",
            data_dir.display()
        )
    })?;
    scratch.keep();
    sync_dir(&parent)?;
    Ok(manifest)
}

async fn rebuild_and_count(
    storage: &Storage,
    clock: Arc<dyn Clock>,
    progress: Progress<'_>,
) -> anyhow::Result<Vec<TenantCounts>> {
    let inventory = crate::inventory::Inventory::new(
        storage.documents.clone(),
        storage.analytics.clone(),
        clock,
    );
    let tenants: Vec<_> = storage
        .tenants
        .tenants()
        .await
        .map_err(|error| anyhow::anyhow!("reading tenants: {error}"))?
        .into_iter()
        .map(|tenant| tenant.id)
        .collect();
    let rebuilt = crate::stream::reindex::reindex(storage, &inventory, &tenants, |_| {}).await?;
    for tenant in &rebuilt {
        progress.line(&format!(
            "{}: {} log entries and {} devices reindexed",
            tenant.tenant, tenant.entries, tenant.devices
        ));
    }
    let mut counted = count_tenants(
        storage.tenants.as_ref(),
        storage.documents.as_ref(),
        storage.details.as_ref(),
    )
    .await?;
    counted.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(counted)
}

/// Flushes and fsyncs its file when flushed.
struct SyncOnFinish(BufWriter<File>);

impl Write for SyncOnFinish {
    fn write(&mut self, buffer: &[u8]) -> std::io::Result<usize> {
        self.0.write(buffer)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()?;
        self.0.get_ref().sync_all()
    }
}

/// Counts and hashes what passes through.
struct HashingWriter<'a, W: Write> {
    inner: &'a mut W,
    context: digest::Context,
    bytes: u64,
}

impl<'a, W: Write> HashingWriter<'a, W> {
    fn new(inner: &'a mut W) -> Self {
        Self {
            inner,
            context: digest::Context::new(&digest::SHA256),
            bytes: 0,
        }
    }

    fn finish(self) -> (u64, String) {
        (
            self.bytes,
            crate::identity::crypto::hex(self.context.finish().as_ref()),
        )
    }
}

impl<W: Write> Write for HashingWriter<'_, W> {
    fn write(&mut self, buffer: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(buffer)?;
        self.context.update(&buffer[..written]);
        self.bytes += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn hash_file(path: &Path) -> anyhow::Result<(u64, String)> {
    let mut file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut sink = std::io::sink();
    let mut hashing = HashingWriter::new(&mut sink);
    std::io::copy(&mut file, &mut hashing)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(hashing.finish())
}

/// Creates `path` and its missing parents with mode 0700.
pub fn create_private_dir(path: &Path) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .with_context(|| format!("cannot create {}", path.display()))
}

/// A directory removed (with everything in it) when dropped, unless kept.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
    keep: bool,
}

impl ScratchDir {
    /// Creates `parent/<prefix><random>` with mode 0700.
    pub fn create(parent: &Path, prefix: &str) -> anyhow::Result<ScratchDir> {
        let suffix = crate::identity::crypto::random_token()?;
        let path = parent.join(format!("{prefix}{}", &suffix[..12]));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(ScratchDir { path, keep: false })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Keeps the directory (it has been renamed into place).
    pub fn keep(mut self) -> PathBuf {
        self.keep = true;
        self.path.clone()
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Removes the scratch dirs (`.backup-*`) a backup killed half-way left in `data_dir`. Only for
/// the holder of the data dir's lock: nobody else can be taking a backup there then.
pub fn remove_stale_scratch(data_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let is_scratch = entry.file_name().to_string_lossy().starts_with(".backup-")
            && entry.file_type().is_ok_and(|kind| kind.is_dir());
        if is_scratch {
            match std::fs::remove_dir_all(entry.path()) {
                Ok(()) => {
                    tracing::info!(path = %entry.path().display(), "removed the scratch dir of an interrupted backup")
                }
                Err(error) => {
                    tracing::warn!(path = %entry.path().display(), %error, "cannot remove the scratch dir of an interrupted backup")
                }
            }
        }
    }
}

/// Flushes a directory's entries (a rename or a new file in it) to disk.
pub fn sync_dir(path: &Path) -> anyhow::Result<()> {
    File::open(path)
        .and_then(|dir| dir.sync_all())
        .with_context(|| format!("cannot flush {} to disk", path.display()))
}

/// Restricts an existing file to its owner.
pub fn make_private(path: &Path) -> std::io::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// `1.2 MiB`, `340 KiB`, `12 B`.
pub fn human_bytes(bytes: u64) -> String {
    const KIB: f64 = 1024.0;
    let value = bytes as f64;
    if value >= KIB * KIB * KIB {
        format!("{:.1} GiB", value / (KIB * KIB * KIB))
    } else if value >= KIB * KIB {
        format!("{:.1} MiB", value / (KIB * KIB))
    } else if value >= KIB {
        format!("{:.0} KiB", value / KIB)
    } else {
        format!("{bytes} B")
    }
}

// ---- scheduled backups ---------------------------------------------------------------------

/// Scheduled archives are `openframe-<UTC yyyymmddThhmmss.mmmZ>.tar`: their names sort by age.
const SCHEDULED_PREFIX: &str = "openframe-";

/// The scheduled archives in `dir`, oldest first.
fn scheduled_archives(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with(SCHEDULED_PREFIX) && name.ends_with(".tar"))
        })
        .collect();
    found.sort();
    found
}

/// When the newest archive in `dir` was written (Unix seconds), if there is one.
pub fn newest_archive_time(dir: &Path) -> Option<i64> {
    let newest = scheduled_archives(dir).pop()?;
    let written = std::fs::metadata(newest).ok()?.modified().ok()?;
    let seconds = written
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs();
    i64::try_from(seconds).ok()
}

/// Deletes all but the newest `keep` scheduled archives in `dir`; the ones deleted.
pub fn prune(dir: &Path, keep: usize) -> Vec<PathBuf> {
    let archives = scheduled_archives(dir);
    let excess = archives.len().saturating_sub(keep);
    let mut removed = Vec::new();
    for old in archives.into_iter().take(excess) {
        match std::fs::remove_file(&old) {
            Ok(()) => removed.push(old),
            Err(error) => {
                tracing::warn!(path = %old.display(), %error, "cannot delete an old backup");
            }
        }
    }
    removed
}

/// One scheduled backup of the serving appliance into the configured directory, then the
/// retention; the archive written.
pub async fn take_scheduled(state: &crate::startup::AppState) -> anyhow::Result<PathBuf> {
    let config = &state.config;
    let data_dir = config.storage.data_dir.clone();
    let dir = config.backup.directory(&data_dir);
    create_private_dir(&dir)?;
    let stamp = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second].[subsecond digits:3]Z"
        ))
        .context("formatting the archive's name")?;
    let out = dir.join(format!("{SCHEDULED_PREFIX}{stamp}.tar"));
    let partial = prepare_out(&out)?;
    let written = match ScratchDir::create(&data_dir, ".backup-") {
        Ok(work) => create_archive(
            &state.storage.records(),
            &data_dir,
            work.path(),
            &partial,
            &mut |step: &str| tracing::debug!(step, "scheduled backup"),
        )
        .await
        .map(drop),
        Err(error) => Err(error),
    };
    let (partial_path, out_path) = (partial.clone(), out.clone());
    tokio::task::spawn_blocking(move || finish_archive(&partial_path, &out_path, written))
        .await
        .context("the backup check failed to run")??;
    state.metrics.backup_last_success.set(unix_now());
    let keep = usize::try_from(config.backup.keep).unwrap_or(usize::MAX);
    for removed in prune(&dir, keep) {
        tracing::info!(path = %removed.display(), "deleted an old backup (backup.keep)");
    }
    Ok(out)
}

/// Takes a backup every `backup.interval_hours`, the first that long after the newest archive
/// (or after start); `None` when scheduled backups are off. A failed one is logged and tried
/// again an hour later (or at the next interval, if that is sooner).
pub fn spawn_schedule(
    state: crate::startup::AppState,
    stop: tokio_util::sync::CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    let hours = state.config.backup.interval_hours;
    if hours == 0 {
        return None;
    }
    let interval = std::time::Duration::from_secs(hours.saturating_mul(3600));
    let dir = state
        .config
        .backup
        .directory(&state.config.storage.data_dir);
    if let Some(at) = newest_archive_time(&dir) {
        state.metrics.backup_last_success.set(at);
    }
    Some(tokio::spawn(async move {
        let first_wait = match newest_archive_time(&dir) {
            Some(at) => {
                let age = u64::try_from(unix_now().saturating_sub(at)).unwrap_or(0);
                interval.saturating_sub(std::time::Duration::from_secs(age))
            }
            None => interval,
        };
        let mut wait = first_wait;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
            let started = std::time::Instant::now();
            match take_scheduled(&state).await {
                Ok(out) => {
                    tracing::info!(
                        path = %out.display(),
                        elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                        "scheduled backup written"
                    );
                    wait = interval;
                }
                Err(error) => {
                    tracing::error!(error = format!("{error:#}"), "scheduled backup failed");
                    wait = interval.min(std::time::Duration::from_secs(3600));
                }
            }
        }
    }))
}

/// Now, in Unix seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |now| i64::try_from(now.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            format: FORMAT,
            appliance_version: "0.1.0".into(),
            created_at: "2026-11-27T16:00:00Z".into(),
            schema_versions: openframe_storage::schema_versions()
                .iter()
                .map(|(role, version)| ((*role).to_owned(), *version))
                .collect(),
            stores: vec!["tenancy".into()],
            rebuilt_on_restore: vec!["analytics".into(), "search".into()],
            files: vec![FileEntry {
                path: "keys/master.key".into(),
                bytes: 3,
                sha256: "abc".into(),
            }],
            tenants: vec![TenantCounts {
                id: "acme".into(),
                users: 1,
                devices: 2,
                organizations: 3,
                api_keys: 4,
                log_entries: 5,
            }],
        }
    }

    #[test]
    fn the_manifest_round_trips_through_json_with_camel_case_names() {
        let text = serde_json::to_string(&manifest()).unwrap();
        assert!(text.contains("\"applianceVersion\""), "{text}");
        assert!(text.contains("\"schemaVersions\":{\"events\":"), "{text}");
        assert!(text.contains("\"apiKeys\":4"), "{text}");
        assert!(text.contains("\"logEntries\":5"), "{text}");
        assert_eq!(serde_json::from_str::<Manifest>(&text).unwrap(), manifest());
    }

    #[test]
    fn a_newer_format_or_schema_is_refused_with_the_versions() {
        check_compatible(&manifest()).unwrap();
        let mut newer = manifest();
        newer.format = FORMAT + 1;
        newer.appliance_version = "9.0.0".into();
        let error = check_compatible(&newer).unwrap_err().to_string();
        assert!(error.contains("format 2"), "{error}");
        assert!(error.contains("openframe 9.0.0"), "{error}");
        let mut newer = manifest();
        newer.schema_versions.insert("events".into(), 99);
        let error = check_compatible(&newer).unwrap_err().to_string();
        assert!(error.contains("events store has schema 99"), "{error}");
        let mut missing = manifest();
        missing.schema_versions.remove("tenancy");
        assert!(check_compatible(&missing).is_err());
    }

    #[test]
    fn member_paths_must_stay_inside_the_data_dir() {
        for good in ["tenancy.sqlite", "keys/master.key", "tls/cert.pem"] {
            assert_eq!(safe_relative_path(good).unwrap(), Path::new(good), "{good}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../outside",
            "keys/../../outside",
            "./tenancy.sqlite",
            "keys\\master.key",
        ] {
            assert!(safe_relative_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sizes_are_printed_for_people() {
        assert_eq!(human_bytes(12), "12 B");
        assert_eq!(human_bytes(340 * 1024), "340 KiB");
        assert_eq!(human_bytes(1_258_291), "1.2 MiB");
    }
}
