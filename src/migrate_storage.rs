//! `openframe migrate-storage --to kafka|mongo`: copies the embedded stores of record of a data
//! dir nothing serves into the configured external engine, then reads both back and compares
//! every record. The embedded files are only read; switching the config over is the operator's
//! step once the verification has passed.
//!
//! - **mongo**: every tenant, then every document of every collection, with its version and time.
//! - **kafka**: every stream of the event log, record by record in order (key, headers, value),
//!   and every consumer group's committed offset. A stream whose oldest records retention has
//!   removed starts at offset 0 in Kafka, so committed offsets are moved down by the same amount.
//!   The log details stay in `events.redb`: they are not part of the event log.
//!
//! The copy can be run again after an interruption: documents are written as they are (a second
//! write replaces the first) and a stream continues after the records the target already holds.

use std::sync::Arc;

use anyhow::{Context, bail};
use openframe_storage::documents::{DocumentStore, MAX_LIST, TenantStore};
use openframe_storage::log::{EventLog, LogRecord, NewRecord};
use openframe_storage::model::{Offset, SystemClock, TenantId, Topic};
use openframe_storage::{DocumentBackend, EventBackend, Records, Storage, StorageConfig};

use crate::backup::Progress;
use crate::config::Config;

/// Which store moves out of the data dir.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Kafka,
    Mongo,
}

impl Target {
    pub fn parse(value: &str) -> anyhow::Result<Target> {
        match value {
            "kafka" => Ok(Target::Kafka),
            "mongo" => Ok(Target::Mongo),
            other => bail!(
                "--to {other:?}: migrate to \"kafka\" (the event log) or \"mongo\" (tenancy and documents)"
            ),
        }
    }
}

/// What was copied and verified.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Migrated {
    pub tenants: u64,
    pub documents: u64,
    pub streams: u64,
    pub records: u64,
    pub committed_offsets: u64,
}

/// The largest batch appended to Kafka while copying: under a broker's default message size.
const COPY_BATCH_BYTES: usize = 512 * 1024;
const COPY_BATCH_RECORDS: usize = 1_000;

pub async fn migrate(
    config: &Config,
    target: Target,
    progress: Progress<'_>,
) -> anyhow::Result<Migrated> {
    let data_dir = config.storage.data_dir.clone();
    if !data_dir.is_dir() {
        bail!(
            "there is no data dir at {}: nothing to migrate (give --data-dir)",
            data_dir.display()
        );
    }
    let _lock = crate::datadir::DataDirLock::acquire(&data_dir).with_context(|| {
        format!(
            "stop the appliance serving {} first: the copy must see every write",
            data_dir.display()
        )
    })?;
    let mut embedded = config.storage_config();
    embedded.documents = DocumentBackend::Sqlite;
    embedded.events = EventBackend::Redb;
    let clock = Arc::new(SystemClock);
    let source = Storage::open_records(&embedded, clock.clone())
        .await
        .context("opening the embedded stores")?;
    let result = match target {
        Target::Mongo => migrate_documents(config, &embedded, &source, clock, progress).await,
        Target::Kafka => migrate_events(config, &source, clock, progress).await,
    };
    source.close().await?;
    result
}

async fn migrate_documents(
    config: &Config,
    embedded: &StorageConfig,
    source: &Records,
    clock: Arc<SystemClock>,
    progress: Progress<'_>,
) -> anyhow::Result<Migrated> {
    if config.storage.mongo.uri.is_empty() {
        bail!(
            "set [storage.mongo] uri (or OPENFRAME_STORAGE__MONGO__URI) to the MongoDB to copy into"
        );
    }
    let mut external = embedded.clone();
    external.documents = match config.mongo_settings() {
        Some(settings) => DocumentBackend::Mongo(settings),
        None => bail!("[storage.mongo] uri is empty"),
    };
    let target = Storage::open_tenancy(&external, clock)
        .await
        .context("opening MongoDB")?;
    target
        .documents
        .check()
        .await
        .context("MongoDB does not answer")?;
    let result = copy_documents(
        &*source.tenants,
        &*source.documents,
        &*target.tenants,
        &*target.documents,
        progress,
    )
    .await;
    target.close().await?;
    result
}

/// Copies every tenant and document, then compares both stores page by page.
pub async fn copy_documents(
    from_tenants: &dyn TenantStore,
    from: &dyn DocumentStore,
    to_tenants: &dyn TenantStore,
    to: &dyn DocumentStore,
    progress: Progress<'_>,
) -> anyhow::Result<Migrated> {
    let tenants = from_tenants.tenants().await?;
    let mut plan = Vec::new();
    let mut total = 0;
    for tenant in &tenants {
        for collection in from.collections(&tenant.id).await? {
            let count = from.count(&tenant.id, &collection).await?;
            total += count;
            plan.push((tenant.id.clone(), collection, count));
        }
    }
    progress.line(&format!(
        "copying {} tenants and {total} documents in {} collections",
        tenants.len(),
        plan.len()
    ));
    for tenant in &tenants {
        match to_tenants.tenant(&tenant.id).await? {
            None => to_tenants.create_tenant(tenant).await?,
            Some(existing) if existing.status != tenant.status => {
                to_tenants
                    .set_tenant_status(&tenant.id, tenant.status)
                    .await?
            }
            Some(_) => {}
        }
    }
    let mut done = 0;
    for (tenant, collection, _) in &plan {
        let mut after = None;
        loop {
            let page = from
                .list(tenant, collection, after.as_ref(), MAX_LIST)
                .await?;
            for document in &page {
                to.import(tenant, collection, document).await?;
            }
            done += page.len() as u64;
            progress.items("documents", done, total);
            match page.last() {
                Some(last) if page.len() == MAX_LIST => after = Some(last.id.clone()),
                _ => break,
            }
        }
    }
    progress.line(&format!("copied {done} documents; verifying"));
    let mut verified = 0;
    for tenant in &tenants {
        let copied = to_tenants.tenant(&tenant.id).await?;
        if copied.as_ref() != Some(tenant) {
            bail!(
                "verification failed: tenant {} reads back as {copied:?}",
                tenant.id
            );
        }
        let (ours, theirs) = (
            from.collections(&tenant.id).await?,
            to.collections(&tenant.id).await?,
        );
        if ours != theirs {
            bail!(
                "verification failed: tenant {} has collections {ours:?} here and {theirs:?} in the target",
                tenant.id
            );
        }
        for collection in &ours {
            let mut after = None;
            loop {
                let mine = from
                    .list(&tenant.id, collection, after.as_ref(), MAX_LIST)
                    .await?;
                let copied = to
                    .list(&tenant.id, collection, after.as_ref(), MAX_LIST)
                    .await?;
                if mine != copied {
                    let differs = mine.iter().zip(&copied).find(|(a, b)| a != b).map_or_else(
                        || format!("{} against {} documents", mine.len(), copied.len()),
                        |(a, _)| format!("document {}", a.id),
                    );
                    bail!(
                        "verification failed in {}/{collection}: {differs} differs",
                        tenant.id
                    );
                }
                verified += mine.len() as u64;
                progress.items("verified", verified, total);
                match mine.last() {
                    Some(last) if mine.len() == MAX_LIST => after = Some(last.id.clone()),
                    _ => break,
                }
            }
        }
    }
    progress.line(&format!("verified {verified} documents"));
    Ok(Migrated {
        tenants: tenants.len() as u64,
        documents: verified,
        ..Migrated::default()
    })
}

async fn migrate_events(
    config: &Config,
    source: &Records,
    clock: Arc<SystemClock>,
    progress: Progress<'_>,
) -> anyhow::Result<Migrated> {
    let Some(settings) = config.kafka_settings() else {
        bail!(
            "set [storage.kafka] brokers (or OPENFRAME_STORAGE__KAFKA__BROKERS) to the Kafka cluster to copy into"
        );
    };
    let target = openframe_storage::open_external_events(&settings, clock)?;
    target
        .check()
        .await
        .context("the Kafka cluster does not answer")?;
    let result = copy_events(&*source.events, &*target, progress).await;
    target.close().await?;
    result
}

/// Copies every stream and its committed offsets, then compares both logs record by record.
pub async fn copy_events(
    from: &dyn EventLog,
    to: &dyn EventLog,
    progress: Progress<'_>,
) -> anyhow::Result<Migrated> {
    let streams = from.streams().await?;
    let mut plan = Vec::new();
    let mut total = 0;
    for (tenant, topic) in &streams {
        let bounds = from.bounds(tenant, topic).await?;
        total += bounds.end.0 - bounds.start.0;
        plan.push((tenant.clone(), topic.clone(), bounds));
    }
    progress.line(&format!(
        "copying {total} records in {} streams",
        streams.len()
    ));
    let mut done = 0;
    let mut offsets = 0;
    for (tenant, topic, bounds) in &plan {
        let there = to.bounds(tenant, topic).await?;
        let held = bounds.end.0 - bounds.start.0;
        if there.start.0 != 0 || there.end.0 > held {
            bail!(
                "the target already holds other records for {tenant}/{topic} (offsets {}..{}, this log has {held}); copy into an empty cluster or another topic prefix",
                there.start.0,
                there.end.0
            );
        }
        let mut next = bounds.start.0 + there.end.0;
        done += there.end.0;
        while next < bounds.end.0 {
            let records = from
                .read(tenant, topic, Offset(next), COPY_BATCH_RECORDS)
                .await?;
            let Some(last) = records.last().map(|record| record.offset.0) else {
                break;
            };
            for batch in batches(records) {
                let count = batch.len() as u64;
                to.append_batch(tenant, topic, batch).await?;
                done += count;
                progress.items("records", done, total);
            }
            next = last + 1;
        }
        for (group, committed) in from.committed_offsets(tenant, topic).await? {
            let moved = Offset(committed.0.saturating_sub(bounds.start.0));
            to.commit_offset(tenant, topic, &group, moved).await?;
            offsets += 1;
        }
    }
    progress.line(&format!("copied {done} records; verifying"));
    let mut verified = 0;
    for (tenant, topic, bounds) in &plan {
        verified += verify_stream(from, to, tenant, topic, bounds.start.0, bounds.end.0).await?;
        progress.items("verified", verified, total);
        let moved: Vec<_> = from
            .committed_offsets(tenant, topic)
            .await?
            .into_iter()
            .map(|(group, next)| (group, Offset(next.0.saturating_sub(bounds.start.0))))
            .collect();
        let copied = to.committed_offsets(tenant, topic).await?;
        if moved != copied {
            bail!(
                "verification failed: committed offsets of {tenant}/{topic} are {moved:?} here and {copied:?} in the target"
            );
        }
    }
    progress.line(&format!(
        "verified {verified} records and {offsets} committed offsets"
    ));
    Ok(Migrated {
        streams: plan.len() as u64,
        records: verified,
        committed_offsets: offsets,
        ..Migrated::default()
    })
}

/// Splits records into append batches under [`COPY_BATCH_BYTES`] (a record larger than that
/// goes alone).
fn batches(records: Vec<LogRecord>) -> Vec<Vec<NewRecord>> {
    let mut batches = Vec::new();
    let mut batch: Vec<NewRecord> = Vec::new();
    let mut bytes = 0;
    for record in records {
        let len = record.record.encoded_len();
        if !batch.is_empty() && bytes + len > COPY_BATCH_BYTES {
            batches.push(std::mem::take(&mut batch));
            bytes = 0;
        }
        bytes += len;
        batch.push(record.record);
    }
    if !batch.is_empty() {
        batches.push(batch);
    }
    batches
}

/// Headers compared as a set of names: Kafka keeps one value per name, in name order.
fn same_record(a: &NewRecord, b: &NewRecord) -> bool {
    let sorted = |record: &NewRecord| {
        let mut headers = record.headers.clone();
        headers.sort();
        headers
    };
    a.key == b.key && a.value == b.value && sorted(a) == sorted(b)
}

async fn verify_stream(
    from: &dyn EventLog,
    to: &dyn EventLog,
    tenant: &TenantId,
    topic: &Topic,
    start: u64,
    end: u64,
) -> anyhow::Result<u64> {
    let copied_bounds = to.bounds(tenant, topic).await?;
    if copied_bounds.end.0 != end - start {
        bail!(
            "verification failed: {tenant}/{topic} holds {} records in the target and {} here",
            copied_bounds.end.0,
            end - start
        );
    }
    let mut next = start;
    let mut verified = 0;
    while next < end {
        let mine = from
            .read(tenant, topic, Offset(next), COPY_BATCH_RECORDS)
            .await?;
        let copied = to
            .read(tenant, topic, Offset(next - start), mine.len().max(1))
            .await?;
        if mine.len() != copied.len() {
            bail!(
                "verification failed: {tenant}/{topic} from offset {next}: {} records here, {} in the target",
                mine.len(),
                copied.len()
            );
        }
        for (a, b) in mine.iter().zip(&copied) {
            if b.offset.0 != a.offset.0 - start || !same_record(&a.record, &b.record) {
                bail!(
                    "verification failed: {tenant}/{topic} record {} differs in the target",
                    a.offset.0
                );
            }
        }
        let Some(last) = mine.last() else { break };
        verified += mine.len() as u64;
        next = last.offset.0 + 1;
    }
    Ok(verified)
}
