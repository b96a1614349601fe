//! What the agent reports about its machine, read from `/proc`, `/sys` and `/etc` (no
//! external commands, nothing that needs root beyond what the machine lets its user read):
//! OS, kernel, CPU, memory, disks, network interfaces with their addresses and MACs, and the
//! DMI serial, manufacturer and model. Sent on `machine.{id}.inventory` when the agent connects
//! and whenever it changes.
//!
//! The parsers are pure functions over the files' text, so they are tested on samples.

use std::collections::BTreeMap;
use std::path::Path;

use crate::inventory::{Disk, Hardware, InventoryReport, NetworkInterface};

/// Linux first; other platforms get their own collector producing the same report.
pub const OS_TYPE: &str = "LINUX";

fn read(path: impl AsRef<Path>) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|text| text.trim().to_owned())
        .filter(|text| !text.is_empty())
}

/// Collects the inventory now. Files that cannot be read leave their fields empty.
pub fn collect(hostname: String) -> InventoryReport {
    let cpuinfo = read("/proc/cpuinfo").unwrap_or_default();
    let (cpu_model, cpu_cores) = cpu(&cpuinfo);
    let network_interfaces = interfaces(
        &read("/proc/net/fib_trie").unwrap_or_default(),
        &read("/proc/net/route").unwrap_or_default(),
        &read("/proc/net/if_inet6").unwrap_or_default(),
        &network_names(),
        |name| read(format!("/sys/class/net/{name}/address")),
    );
    let (ip, mac_address) = primary(&network_interfaces);
    let disks = mounted(&read("/proc/mounts").unwrap_or_default())
        .into_iter()
        .filter_map(|(device, mount_point, filesystem)| {
            let stats = rustix::fs::statvfs(mount_point.as_str()).ok()?;
            let block = stats.f_frsize.max(1);
            Some(Disk {
                total_bytes: stats.f_blocks.saturating_mul(block),
                free_bytes: stats.f_bavail.saturating_mul(block),
                mount_point,
                device,
                filesystem,
            })
        })
        .collect();
    // One-line fields the appliance stores as they are: at most 255 characters, no control
    // characters (firmware strings are not always either).
    let line = |value: Option<String>| {
        value.filter(|value| value.chars().count() <= 255 && !value.chars().any(char::is_control))
    };
    let dmi = |field: &str| {
        line(read(format!("/sys/class/dmi/id/{field}"))).filter(|value| meaningful_dmi(value))
    };
    InventoryReport {
        hostname,
        os_type: OS_TYPE.to_owned(),
        os_version: line(read("/etc/os-release").and_then(|text| pretty_name(&text))),
        hardware: Hardware {
            kernel: read("/proc/sys/kernel/osrelease"),
            architecture: Some(std::env::consts::ARCH.to_owned()),
            cpu_model,
            cpu_cores: Some(cpu_cores),
            memory_bytes: read("/proc/meminfo").and_then(|text| memory(&text)),
            disks,
            network_interfaces,
        },
        ip,
        mac_address,
        serial_number: dmi("product_serial"),
        manufacturer: dmi("sys_vendor"),
        model: dmi("product_name"),
        os_uuid: dmi("product_uuid").or_else(|| line(read("/etc/machine-id"))),
        timezone: line(timezone()),
    }
}

/// `PRETTY_NAME="Debian GNU/Linux 13 (trixie)"` → the pretty name.
pub fn pretty_name(os_release: &str) -> Option<String> {
    os_release.lines().find_map(|line| {
        line.strip_prefix("PRETTY_NAME=")
            .map(|value| value.trim_matches('"').to_owned())
    })
}

/// The CPU model and the number of logical processors, from `/proc/cpuinfo`.
fn cpu(cpuinfo: &str) -> (Option<String>, u32) {
    let mut model = None;
    let mut processors = 0u32;
    for line in cpuinfo.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        match key.trim() {
            "processor" => processors += 1,
            // x86 says "model name"; arm64 kernels may say "Model" or nothing.
            "model name" | "Model" if model.is_none() => model = Some(value.trim().to_owned()),
            _ => {}
        }
    }
    let cores = if processors == 0 {
        std::thread::available_parallelism()
            .map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX))
    } else {
        processors
    };
    (model.filter(|model| !model.is_empty()), cores)
}

/// `MemTotal:  16314740 kB` → bytes.
fn memory(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|line| line.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Filesystems that hold data (not `proc`, `tmpfs`, `overlay` layers and the like).
const DISK_FILESYSTEMS: [&str; 12] = [
    "ext2", "ext3", "ext4", "xfs", "btrfs", "zfs", "vfat", "exfat", "ntfs", "ntfs3", "f2fs", "jfs",
];

/// `(device, mount point, filesystem)` of each disk mount, one per device (its first mount).
fn mounted(mounts: &str) -> Vec<(String, String, String)> {
    let mut seen = std::collections::BTreeSet::new();
    let mut disks = Vec::new();
    for line in mounts.lines() {
        let mut fields = line.split_whitespace();
        let (Some(device), Some(mount_point), Some(filesystem)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if !DISK_FILESYSTEMS.contains(&filesystem) || !seen.insert(device.to_owned()) {
            continue;
        }
        // /proc/mounts escapes spaces and the like as octal (`\040`).
        disks.push((
            unescape(device),
            unescape(mount_point),
            filesystem.to_owned(),
        ));
    }
    disks
}

fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'\\'
            && let Some(code) = field
                .get(index + 1..index + 4)
                .and_then(|digits| u8::from_str_radix(digits, 8).ok())
        {
            out.push(code);
            index += 4;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn network_names() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/sys/class/net") else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}

/// The machine's interfaces (loopback left out) with their addresses: IPv4 from the kernel's
/// local routing table (`fib_trie`), placed on the interface whose route covers it
/// (`/proc/net/route`); IPv6 from `if_inet6`; MACs from `/sys/class/net/<name>/address`.
fn interfaces(
    fib_trie: &str,
    routes: &str,
    if_inet6: &str,
    names: &[String],
    mac_of: impl Fn(&str) -> Option<String>,
) -> Vec<NetworkInterface> {
    let mut addresses: BTreeMap<String, Vec<String>> = names
        .iter()
        .filter(|name| name.as_str() != "lo")
        .map(|name| (name.clone(), Vec::new()))
        .collect();
    let routes = ipv4_routes(routes);
    for address in local_ipv4(fib_trie) {
        let value = u32::from(address);
        // The most specific route that covers the address names its interface.
        let interface = routes
            .iter()
            .filter(|(_, network, mask)| value & mask == *network && *mask != 0)
            .max_by_key(|(_, _, mask)| mask.count_ones())
            .map(|(name, _, _)| name.clone());
        if let Some(list) = interface.and_then(|name| addresses.get_mut(&name)) {
            list.push(address.to_string());
        }
    }
    for line in if_inet6.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [hex, _, _, _, _, name] = fields.as_slice() else {
            continue;
        };
        let Ok(value) = u128::from_str_radix(hex, 16) else {
            continue;
        };
        if let Some(list) = addresses.get_mut(*name) {
            list.push(std::net::Ipv6Addr::from(value).to_string());
        }
    }
    addresses
        .into_iter()
        .map(|(name, addresses)| NetworkInterface {
            mac_address: mac_of(&name).filter(|mac| mac != "00:00:00:00:00:00"),
            name,
            addresses,
        })
        .collect()
}

/// `(interface, network, mask)` of each IPv4 route (the file's numbers are little-endian hex).
fn ipv4_routes(routes: &str) -> Vec<(String, u32, u32)> {
    routes
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let name = fields.first()?;
            let network = u32::from_str_radix(fields.get(1)?, 16).ok()?.swap_bytes();
            let mask = u32::from_str_radix(fields.get(7)?, 16).ok()?.swap_bytes();
            Some(((*name).to_owned(), network, mask))
        })
        .collect()
}

/// The host's own IPv4 addresses (`/32 host LOCAL` entries), loopback left out.
fn local_ipv4(fib_trie: &str) -> Vec<std::net::Ipv4Addr> {
    let mut found = Vec::new();
    let mut last: Option<std::net::Ipv4Addr> = None;
    for line in fib_trie.lines() {
        let line = line.trim();
        if let Some(address) = line.strip_prefix("|-- ") {
            last = address.parse().ok();
        } else if line.starts_with("/32 host LOCAL")
            && let Some(address) = last
            && !address.is_loopback()
            && !found.contains(&address)
        {
            found.push(address);
        }
    }
    found
}

/// The first IPv4 address and its interface's MAC.
fn primary(interfaces: &[NetworkInterface]) -> (Option<String>, Option<String>) {
    interfaces
        .iter()
        .find_map(|interface| {
            let ip = interface
                .addresses
                .iter()
                .find(|address| address.parse::<std::net::Ipv4Addr>().is_ok())?;
            Some((Some(ip.clone()), interface.mac_address.clone()))
        })
        .unwrap_or((None, None))
}

/// Firmware fills unset DMI fields with placeholders; those say nothing.
fn meaningful_dmi(value: &str) -> bool {
    let lower = value.to_ascii_lowercase();
    ![
        "to be filled by o.e.m.",
        "default string",
        "system serial number",
        "not specified",
        "none",
        "0",
    ]
    .contains(&lower.as_str())
}

/// `Europe/Berlin` from `/etc/timezone`, else from where `/etc/localtime` points.
fn timezone() -> Option<String> {
    read("/etc/timezone").or_else(|| {
        let target = std::fs::read_link("/etc/localtime").ok()?;
        let text = target.to_string_lossy().into_owned();
        text.split_once("zoneinfo/")
            .map(|(_, zone)| zone.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIB_TRIE: &str = "Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
           |-- 127.0.0.1
              /32 host LOCAL
     +-- 192.0.2.0/24 2 0 2
           |-- 192.0.2.0
              /24 link UNICAST
           |-- 192.0.2.2
              /32 host LOCAL
        |-- 192.0.2.255
           /32 link BROADCAST
     +-- 10.8.0.0/16 2 0 2
           |-- 10.8.3.7
              /32 host LOCAL
Local:
     +-- 192.0.2.0/24 2 0 2
           |-- 192.0.2.2
              /32 host LOCAL
";

    const ROUTES: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
wg0\t0000080A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
";

    const IF_INET6: &str = "fe8000000000000000fc00fffe000001 04 40 20 80     eth0
00000000000000000000000000000001 01 80 10 80       lo
";

    #[test]
    fn addresses_land_on_the_interface_whose_route_covers_them() {
        let names = ["eth0", "lo", "wg0"].map(str::to_owned);
        let found = interfaces(FIB_TRIE, ROUTES, IF_INET6, &names, |name| match name {
            "eth0" => Some("02:fc:00:00:00:01".into()),
            _ => Some("00:00:00:00:00:00".into()),
        });
        assert_eq!(
            found,
            vec![
                NetworkInterface {
                    name: "eth0".into(),
                    mac_address: Some("02:fc:00:00:00:01".into()),
                    addresses: vec!["192.0.2.2".into(), "fe80::fc:ff:fe00:1".into()],
                },
                NetworkInterface {
                    name: "wg0".into(),
                    mac_address: None,
                    addresses: vec!["10.8.3.7".into()],
                },
            ]
        );
        assert_eq!(
            primary(&found),
            (
                Some("192.0.2.2".to_owned()),
                Some("02:fc:00:00:00:01".to_owned())
            )
        );
    }

    #[test]
    fn disks_are_data_filesystems_once_per_device_with_escapes_undone() {
        let mounts = "proc /proc proc rw 0 0
/dev/vda / ext4 rw 0 0
tmpfs /dev/shm tmpfs rw 0 0
/dev/vda /var/lib/docker ext4 rw 0 0
/dev/sdb1 /mnt/backup\\040disk xfs rw 0 0
overlay /merged overlay rw 0 0
";
        assert_eq!(
            mounted(mounts),
            vec![
                ("/dev/vda".into(), "/".into(), "ext4".into()),
                ("/dev/sdb1".into(), "/mnt/backup disk".into(), "xfs".into()),
            ]
        );
    }

    #[test]
    fn cpu_memory_and_os_come_from_their_files() {
        let cpuinfo = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nprocessor\t: 1\nmodel name\t: AMD EPYC 7B13\n";
        assert_eq!(cpu(cpuinfo), (Some("AMD EPYC 7B13".into()), 2));
        assert_eq!(
            memory("MemTotal:       16314740 kB\nMemFree: 1 kB\n"),
            Some(16_314_740 * 1024)
        );
        assert_eq!(memory("MemFree: 1 kB\n"), None);
        assert_eq!(
            pretty_name(
                "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 13 (trixie)\"\n"
            ),
            Some("Debian GNU/Linux 13 (trixie)".into())
        );
        assert!(!meaningful_dmi("To Be Filled By O.E.M."));
        assert!(meaningful_dmi("ThinkPad T14"));
    }

    #[test]
    fn this_machine_has_a_kernel_a_cpu_and_memory() {
        let found = collect("here".into());
        assert!(found.hardware.kernel.is_some(), "{found:?}");
        assert!(found.hardware.cpu_cores >= Some(1));
        assert!(found.hardware.memory_bytes.unwrap_or(0) > 0, "{found:?}");
        assert_eq!(found.os_type, "LINUX");
    }
}
