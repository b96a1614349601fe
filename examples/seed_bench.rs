//! Seeds a stopped appliance's data dir for `tests/load/graphql.sh`: DEVICES machines over 50
//! organizations (with tags, statuses and OS types spread out) through the inventory, and LOGS
//! unified log rows over the 30 days before now in the analytics table and the search index,
//! written through the storage traits the pipeline writes through, oldest first (the order the
//! pipeline appends them in). The tenant must exist
//! (`openframe init`). Prints one JSON line: `{"devices":…,"logs":…,"seconds":…}`.
//!
//!   seed_bench DATA_DIR TENANT DEVICES LOGS

#![allow(clippy::print_stdout, clippy::print_stderr)] // Its output is what the load script reads.

use std::sync::Arc;
use std::time::Instant;

use openframe::config::{CliOverrides, Config};
use openframe::inventory::{Attribution, Inventory, Machine, Organization};
use openframe::stream::pipeline::LogEntry;
use openframe_storage::Storage;
use openframe_storage::model::{Clock, SystemClock, TenantId};

/// A fixed vocabulary, so search terms hit a predictable share of the rows: each summary has
/// one word of WORDS (one row in 500 has any given word) and one of 20 actions.
const ACTIONS: [&str; 20] = [
    "login",
    "logout",
    "patch",
    "reboot",
    "backup",
    "restore",
    "install",
    "uninstall",
    "scan",
    "alert",
    "policy",
    "script",
    "update",
    "sync",
    "disk",
    "memory",
    "network",
    "firewall",
    "session",
    "recording",
];
const WORDS: usize = 500;
const EVENT_TYPES: [&str; 6] = [
    "LOGIN",
    "LOGOUT",
    "SCRIPT_EXECUTED",
    "SOFTWARE_INSTALLED",
    "POLICY_VIOLATION",
    "REMOTE_SESSION_START",
];
const SEVERITIES: [&str; 4] = ["INFO", "INFO", "WARNING", "ERROR"];
const TOOLS: [&str; 3] = ["MESHCENTRAL", "FLEET_MDM", "OPENFRAME_RMM"];
const BATCH: usize = 20_000;

/// A small deterministic generator (splitmix64), so two runs seed the same data.
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).unwrap_or(0)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, data_dir, tenant, devices, logs] = args.as_slice() else {
        anyhow::bail!("usage: seed_bench DATA_DIR TENANT DEVICES LOGS");
    };
    let devices: usize = devices.parse()?;
    let logs: usize = logs.parse()?;
    let started = Instant::now();
    let flags = CliOverrides {
        data_dir: Some(data_dir.into()),
        listen: None,
        admin_listen: None,
        log_format: None,
    };
    let config =
        Config::load(None, Vec::new(), &flags).map_err(|error| anyhow::anyhow!("{error}"))?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let storage = Storage::open(&config.storage_config(), clock.clone())
        .await
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    let tenant = TenantId::parse(tenant).map_err(|error| anyhow::anyhow!("{error}"))?;
    if storage.tenants.tenant(&tenant).await?.is_none() {
        anyhow::bail!("tenant {tenant} does not exist: run `openframe init` first");
    }
    let inventory = Inventory::new(
        storage.documents.clone(),
        storage.analytics.clone(),
        clock.clone(),
    );
    let mut mix = Mix(42);

    let organizations: Vec<Organization> = (0..50)
        .map(|i| Organization::named(format!("org-{i:02}"), format!("Customer {i:02}")))
        .collect();
    for organization in &organizations {
        inventory
            .put_organization(&tenant, organization.clone())
            .await?;
    }
    let statuses = [
        "ONLINE", "ONLINE", "ONLINE", "OFFLINE", "PENDING", "ARCHIVED",
    ];
    let os_types = ["WINDOWS", "WINDOWS", "MAC_OS", "LINUX"];
    let mut hosts = Vec::with_capacity(devices);
    for i in 0..devices {
        let organization = &organizations[mix.below(organizations.len())];
        let machine = Machine {
            machine_id: format!("m-{i:06}"),
            hostname: format!("host-{i:06}"),
            organization_id: Some(organization.organization_id.clone()),
            status: statuses[mix.below(statuses.len())].into(),
            device_type: "DESKTOP".into(),
            os_type: os_types[mix.below(os_types.len())].into(),
            tags: vec![
                format!("site:site-{}", mix.below(20)),
                format!("role:{}", ["desk", "server", "kiosk"][mix.below(3)]),
            ],
            serial_number: Some(format!("SN{:08}", mix.next() % 100_000_000)),
            ..Machine::default()
        };
        hosts.push((
            machine.machine_id.clone(),
            machine.hostname.clone(),
            organization.clone(),
        ));
        inventory.put_machine(&tenant, machine).await?;
        if (i + 1) % 2_000 == 0 {
            eprintln!("  {} devices", i + 1);
        }
    }

    let now = clock.now_ms();
    let span = 30 * 86_400_000_i64;
    let mut written = 0;
    while written < logs {
        let size = BATCH.min(logs - written);
        let mut rows = Vec::with_capacity(size);
        let mut documents = Vec::with_capacity(size);
        for n in written..written + size {
            let (machine_id, hostname, organization) = &hosts[mix.below(hosts.len().max(1))];
            // In arrival order, as the pipeline appends them (tool events come in near real
            // time), a minute of jitter either way.
            let step = span / i64::try_from(logs.max(1)).unwrap_or(1);
            let jitter = i64::try_from(mix.next() % 120_000).unwrap_or(0) - 60_000;
            let at = now - span + i64::try_from(n).unwrap_or(0) * step + jitter;
            let timestamp = at.min(now);
            let day = time::OffsetDateTime::from_unix_timestamp(timestamp / 1000)?.date();
            let action = ACTIONS[mix.below(ACTIONS.len())];
            let word = format!("w{:03}", mix.below(WORDS));
            let entry = LogEntry {
                tool_event_id: format!("evt-{n:08}"),
                timestamp,
                ingest_day: format!(
                    "{:04}-{:02}-{:02}",
                    day.year(),
                    u8::from(day.month()),
                    day.day()
                ),
                tool_type: TOOLS[mix.below(TOOLS.len())],
                event_type: EVENT_TYPES[mix.below(EVENT_TYPES.len())],
                severity: SEVERITIES[mix.below(SEVERITIES.len())],
                summary: format!("{action} {word} on {hostname}"),
                message: format!("{action} finished with code {}", mix.below(4)),
                user: Some(format!("tech{}@msp.example", mix.below(10))),
                attribution: Attribution {
                    machine_id: Some(machine_id.clone()),
                    hostname: Some(hostname.clone()),
                    organization_id: Some(organization.organization_id.clone()),
                    organization_name: Some(organization.name.clone()),
                },
                source_event_type: format!("{action}.done"),
                details: serde_json::json!({}),
                source: serde_json::json!({}),
                unattributed: None,
            };
            rows.push(entry.row());
            documents.push(entry.search_document());
        }
        storage.analytics.append_logs(&tenant, rows).await?;
        storage.search.index(&tenant, documents).await?;
        written += size;
        if written % 200_000 == 0 || written == logs {
            storage.search.refresh().await?;
            eprintln!("  {written} log rows");
        }
    }
    storage.search.refresh().await?;
    storage.close().await?;
    println!(
        "{{\"devices\":{devices},\"logs\":{logs},\"seconds\":{:.1}}}",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
