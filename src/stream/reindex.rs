//! `openframe reindex`: rebuilds the derived stores, the analytics tables (`logs`, `devices`) and
//! the search index, from the records of truth: the log details (every unified entry, kept for
//! the retention period, unlike the raw topics) and the inventory's machines.
//!
//! Per tenant, the tenant's rows and documents are removed first, then written again page by
//! page, so a damaged or deleted `analytics.duckdb` or `search/` comes back whole. It runs with
//! the appliance stopped (the caller holds the data-dir lock).

use openframe_storage::details::{LogKey, MAX_SCAN};
use openframe_storage::search::DocumentKind;
use openframe_storage::{Storage, TenantId};

use super::pipeline::LogEntry;
use crate::inventory::Inventory;

/// Log-details entries read and written per step.
const PAGE: usize = 5_000;

/// How far one tenant has got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress<'a> {
    pub tenant: &'a TenantId,
    pub done: u64,
    /// The tenant's row count before the rebuild: an estimate of the total (the analytics store
    /// may be what was damaged).
    pub expected: u64,
}

/// What was rebuilt for one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rebuilt {
    pub tenant: TenantId,
    pub entries: u64,
    pub devices: usize,
    /// Details records that could not be read back (named in the log); they stay in the details.
    pub unreadable: u64,
}

/// Rebuilds `tenants` one after the other, reporting progress after every page.
pub async fn reindex(
    storage: &Storage,
    inventory: &Inventory,
    tenants: &[TenantId],
    mut progress: impl FnMut(Progress<'_>),
) -> anyhow::Result<Vec<Rebuilt>> {
    let mut rebuilt = Vec::with_capacity(tenants.len());
    for tenant in tenants {
        let expected = storage
            .analytics
            .count_logs(tenant, &Default::default())
            .await
            .unwrap_or(0);
        storage
            .analytics
            .delete_logs_before(tenant, i64::MAX)
            .await?;
        storage
            .search
            .delete_before(tenant, DocumentKind::Log, i64::MAX)
            .await?;
        let mut after: Option<LogKey> = None;
        let (mut entries, mut unreadable) = (0_u64, 0_u64);
        loop {
            let page = storage
                .details
                .scan(
                    tenant,
                    i64::MIN,
                    i64::MAX,
                    after.as_ref(),
                    PAGE.min(MAX_SCAN),
                )
                .await?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            let mut read = Vec::with_capacity(page.len());
            for (key, bytes) in &page {
                let entry = serde_json::from_slice(bytes)
                    .ok()
                    .and_then(|value| LogEntry::from_details_json(&value));
                match entry {
                    Some(entry) => read.push(entry),
                    None => {
                        unreadable += 1;
                        tracing::warn!(%tenant, tool_event_id = %key.tool_event_id, "a log-details record could not be read; it is left out of the rebuilt stores");
                    }
                }
            }
            entries += u64::try_from(read.len()).unwrap_or(0);
            storage
                .analytics
                .append_logs(tenant, read.iter().map(LogEntry::row).collect())
                .await?;
            storage
                .search
                .index(tenant, read.iter().map(LogEntry::search_document).collect())
                .await?;
            progress(Progress {
                tenant,
                done: entries,
                expected,
            });
        }
        storage.search.refresh().await?;
        let devices = inventory.republish_devices(tenant).await?;
        rebuilt.push(Rebuilt {
            tenant: tenant.clone(),
            entries,
            devices,
            unreadable,
        });
    }
    Ok(rebuilt)
}
