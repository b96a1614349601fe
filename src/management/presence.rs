//! Which machines are online (OpenFrame's heartbeat handling and offline detection).
//!
//! `machine.{id}.heartbeat`, and an agent opening `/ws/nats`, count as "heard from". The last
//! time each machine was heard from lives in memory; a sweep each second
//! - turns a machine that was heard from but is not `ONLINE` into `ONLINE` (and logs
//!   `DEVICE_ONLINE`),
//! - turns an `ONLINE` machine silent for `agents.offline_after_seconds` into `OFFLINE` (and logs
//!   `DEVICE_OFFLINE`),
//! - writes `lastSeen` of machines heard from at most once a minute each.
//!
//! So a flood of heartbeats costs a map update each and never a store write; the store sees a
//! status change once, when it happens. Time comes from the appliance's clock, so tests pin it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openframe_storage::{Clock, TenantId};
use tokio_util::sync::CancellationToken;

use crate::inventory::Inventory;
use crate::stream::Stream;
use crate::stream::tools::MessageType;

/// Presence changes written per batch.
const CHUNK: usize = 500;
/// How often `lastSeen` of a live machine is written to the store.
const PERSIST_EVERY_MS: i64 = 60_000;

#[derive(Debug, Clone)]
struct Heard {
    tenant: TenantId,
    /// Unix ms.
    last_seen: i64,
    /// What the store says (as far as this process wrote or read it).
    online: bool,
    persisted: i64,
}

#[derive(Debug)]
pub struct Presence {
    inventory: Arc<Inventory>,
    stream: Arc<Stream>,
    clock: Arc<dyn Clock>,
    offline_after_ms: i64,
    machines: Mutex<HashMap<String, Heard>>,
    /// Told of each machine that turns ONLINE (schedules triggered by `DEVICE_ONLINE`).
    turned_online: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<(TenantId, String)>>,
}

/// A change the sweep found, written outside the lock.
#[derive(Debug)]
enum Change {
    Online {
        tenant: TenantId,
        machine: String,
        at: i64,
    },
    Offline {
        tenant: TenantId,
        machine: String,
        last_seen: i64,
        at: i64,
    },
    Seen {
        tenant: TenantId,
        machine: String,
        at: i64,
    },
}

impl Presence {
    pub fn new(
        inventory: Arc<Inventory>,
        stream: Arc<Stream>,
        clock: Arc<dyn Clock>,
        offline_after: Duration,
    ) -> Presence {
        Presence {
            inventory,
            stream,
            clock,
            offline_after_ms: i64::try_from(offline_after.as_millis()).unwrap_or(i64::MAX),
            machines: Mutex::new(HashMap::new()),
            turned_online: std::sync::OnceLock::new(),
        }
    }

    /// Sends `(tenant, machine)` to `listener` each time a machine turns ONLINE (once the
    /// change is stored). Only the first listener is kept.
    pub fn on_online(&self, listener: tokio::sync::mpsc::UnboundedSender<(TenantId, String)>) {
        let _ = self.turned_online.set(listener);
    }

    /// Machines the store holds as ONLINE are watched from the start, so a machine that went
    /// silent while the appliance was down turns OFFLINE after the usual silence.
    pub async fn watch_online(&self, tenants: &[TenantId]) {
        let now = self.clock.now_ms();
        for tenant in tenants {
            let machines = match self.inventory.machines(tenant).await {
                Ok(machines) => machines,
                Err(error) => {
                    tracing::warn!(%tenant, %error, "cannot read machines for presence");
                    continue;
                }
            };
            let mut watched = self.lock();
            for machine in machines.into_iter().filter(|m| m.status == "ONLINE") {
                let last_seen = machine.last_seen.unwrap_or(now);
                watched.entry(machine.machine_id).or_insert(Heard {
                    tenant: tenant.clone(),
                    last_seen,
                    online: true,
                    persisted: last_seen,
                });
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Heard>> {
        self.machines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The machine was heard from now.
    pub fn seen(&self, tenant: &TenantId, machine_id: &str) {
        let now = self.clock.now_ms();
        let mut machines = self.lock();
        match machines.get_mut(machine_id) {
            Some(heard) if &heard.tenant == tenant => heard.last_seen = heard.last_seen.max(now),
            Some(_) => {}
            None => {
                machines.insert(
                    machine_id.to_owned(),
                    Heard {
                        tenant: tenant.clone(),
                        last_seen: now,
                        online: false,
                        persisted: 0,
                    },
                );
            }
        }
    }

    /// Forgets a machine (uninstalled).
    pub fn forget(&self, machine_id: &str) {
        self.lock().remove(machine_id);
    }

    /// How many machines are ONLINE now.
    pub fn online(&self) -> usize {
        self.lock().values().filter(|heard| heard.online).count()
    }

    /// Sweeps every second until `stop`.
    pub fn spawn(self: &Arc<Self>, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        let presence = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = tick.tick() => presence.sweep().await,
                }
            }
        })
    }

    /// One pass: finds the changes under the lock, writes them after.
    pub async fn sweep(&self) {
        let now = self.clock.now_ms();
        let mut changes = Vec::new();
        {
            let mut machines = self.lock();
            for (machine, heard) in machines.iter_mut() {
                let silent = now.saturating_sub(heard.last_seen) > self.offline_after_ms;
                if heard.online && silent {
                    heard.online = false;
                    changes.push(Change::Offline {
                        tenant: heard.tenant.clone(),
                        machine: machine.clone(),
                        last_seen: heard.last_seen,
                        at: now,
                    });
                } else if !heard.online && !silent {
                    heard.online = true;
                    heard.persisted = heard.last_seen;
                    changes.push(Change::Online {
                        tenant: heard.tenant.clone(),
                        machine: machine.clone(),
                        at: heard.last_seen,
                    });
                } else if heard.online && heard.last_seen - heard.persisted >= PERSIST_EVERY_MS {
                    heard.persisted = heard.last_seen;
                    changes.push(Change::Seen {
                        tenant: heard.tenant.clone(),
                        machine: machine.clone(),
                        at: heard.last_seen,
                    });
                }
            }
            // Offline machines need no watching until they are heard from again.
            machines.retain(|_, heard| heard.online);
        }
        // By tenant, in chunks: one analytics write and one log append per chunk, so ten
        // thousand agents reconnecting at once cost a few hundred writes, not tens of thousands.
        let mut by_tenant: HashMap<TenantId, Vec<Change>> = HashMap::new();
        for change in changes {
            let tenant = match &change {
                Change::Online { tenant, .. }
                | Change::Offline { tenant, .. }
                | Change::Seen { tenant, .. } => tenant.clone(),
            };
            by_tenant.entry(tenant).or_default().push(change);
        }
        for (tenant, changes) in by_tenant {
            for chunk in changes.chunks(CHUNK) {
                if let Err(error) = self.apply(&tenant, chunk).await {
                    tracing::warn!(%tenant, %error, changes = chunk.len(), "cannot record presence changes");
                }
            }
        }
    }

    async fn apply(&self, tenant: &TenantId, changes: &[Change]) -> anyhow::Result<()> {
        let updates: Vec<(String, Option<&'static str>, i64)> = changes
            .iter()
            .map(|change| match change {
                Change::Online { machine, at, .. } => (machine.clone(), Some("ONLINE"), *at),
                Change::Offline {
                    machine, last_seen, ..
                } => (machine.clone(), Some("OFFLINE"), *last_seen),
                Change::Seen { machine, at, .. } => (machine.clone(), None, *at),
            })
            .collect();
        let changed: std::collections::HashSet<String> = self
            .inventory
            .set_presence(tenant, &updates)
            .await?
            .into_iter()
            .collect();
        if changed.is_empty() {
            return Ok(());
        }
        let mut events = String::new();
        for change in changes {
            let (machine, status, at, seen) = match change {
                Change::Online { machine, at, .. } => (machine, "ONLINE", *at, *at),
                Change::Offline {
                    machine,
                    last_seen,
                    at,
                    ..
                } => (machine, "OFFLINE", *at, *last_seen),
                Change::Seen { .. } => continue,
            };
            if !changed.contains(machine) {
                continue;
            }
            let event = serde_json::json!({
                "after": {
                    "machineId": machine,
                    "status": status,
                    "lastSeen": seen,
                    "offlineAfterSeconds": self.offline_after_ms / 1000,
                    "eventTimestamp": at,
                }
            });
            events.push_str(&event.to_string());
            events.push('\n');
        }
        self.stream
            .ingest(tenant, MessageType::DevicePresence, events.as_bytes(), true)
            .await
            .map_err(|error| anyhow::anyhow!("logging presence changes: {error}"))?;
        if let Some(listener) = self.turned_online.get() {
            for change in changes {
                if let Change::Online { machine, .. } = change
                    && changed.contains(machine)
                {
                    let _ = listener.send((tenant.clone(), machine.clone()));
                }
            }
        }
        tracing::info!(%tenant, changed = changed.len(), "machine presence changed");
        Ok(())
    }
}
