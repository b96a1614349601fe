//! The detector against synthetic streams: three days of a 30-device tenant's ordinary traffic,
//! with known anomalies injected (and the same stream without them), and the alerts that must
//! (and must not) fire. Precision and recall on the set are printed and must both be 1.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use super::*;

const DAY0: i64 = 1_795_132_800_000; // 2026-11-20T00:00:00Z
const NORMAL: [&str; 5] = [
    "LOGIN",
    "LOGOUT",
    "SCRIPT_EXECUTED",
    "DEVICE_SYSINFO_UPDATED",
    "POLICY_APPLIED",
];

/// A small deterministic generator (xorshift), so the stream is the same on every run.
struct Random(u64);

impl Random {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[derive(Debug, Clone)]
struct Event {
    at: i64,
    event_type: &'static str,
    device: Option<String>,
    user: Option<String>,
}

fn device(n: u64) -> String {
    format!("d-{n:02}")
}

fn event(at: i64, event_type: &'static str, device: Option<String>) -> Event {
    Event {
        at,
        event_type,
        device,
        user: None,
    }
}

/// 72 hours of ordinary traffic: each device reports each ordinary type in its first hour, then
/// about three events an hour; a few failed sign-ins and policy violations a day spread out; now
/// and then one device goes offline and comes back.
fn ordinary(seed: u64) -> Vec<Event> {
    let mut random = Random(seed);
    let mut events = Vec::new();
    for n in 0..30 {
        for (i, kind) in NORMAL.iter().enumerate() {
            events.push(event(
                DAY0 + n as i64 * 1000 + i as i64,
                kind,
                Some(device(n)),
            ));
        }
    }
    for hour in 1..72 {
        let start = DAY0 + hour * HOUR_MS;
        for n in 0..30 {
            for _ in 0..random.below(6) {
                let kind = NORMAL[random.below(5) as usize];
                let at = start + random.below(HOUR_MS as u64) as i64;
                events.push(event(at, kind, Some(device(n))));
            }
        }
        for _ in 0..random.below(3) {
            let at = start + random.below(HOUR_MS as u64) as i64;
            events.push(event(at, "LOGIN_FAILED", Some(device(random.below(30)))));
        }
        for _ in 0..random.below(4) {
            let at = start + random.below(HOUR_MS as u64) as i64;
            events.push(event(
                at,
                "POLICY_VIOLATION",
                Some(device(random.below(30))),
            ));
        }
        if random.below(5) == 0 {
            let at = start + random.below(HOUR_MS as u64 / 2) as i64;
            let who = device(random.below(30));
            events.push(event(at, "DEVICE_OFFLINE", Some(who.clone())));
            events.push(event(at + 20 * MINUTE_MS, "DEVICE_ONLINE", Some(who)));
        }
    }
    events
}

/// The anomalies, and the key of the alert each must raise.
fn anomalies() -> (Vec<Event>, BTreeSet<String>) {
    let mut events = Vec::new();
    let hour = |h: i64| DAY0 + h * HOUR_MS;
    // A password-guessing burst on one device: 12 failures in 3 minutes.
    for i in 0..12 {
        events.push(event(
            hour(30) + i * 15_000,
            "LOGIN_FAILED",
            Some(device(7)),
        ));
    }
    // A device that never did so wipes itself.
    events.push(event(
        hour(40) + 5 * MINUTE_MS,
        "HOST_WIPED",
        Some(device(12)),
    ));
    // A site loses power: 8 devices offline within 4 minutes, back an hour later.
    for n in 0..8 {
        events.push(event(
            hour(50) + n * 30_000,
            "DEVICE_OFFLINE",
            Some(device(20 + n as u64)),
        ));
        events.push(event(
            hour(51) + n * 30_000,
            "DEVICE_ONLINE",
            Some(device(20 + n as u64)),
        ));
    }
    // A policy breaks across the fleet: 40 violations in one hour.
    for i in 0..40 {
        events.push(event(
            hour(60) + i * 60_000,
            "POLICY_VIOLATION",
            Some(device(i as u64 % 30)),
        ));
    }
    // A long burst: one failure every 20 s for 20 minutes (one alert, not sixty).
    for i in 0..60 {
        events.push(event(
            hour(64) + i * 20_000,
            "LOGIN_FAILED",
            Some(device(3)),
        ));
    }
    // Failures for one user with no device (a web console), 10 in 4 minutes.
    for i in 0..10 {
        events.push(Event {
            user: Some("admin@acme.example".into()),
            ..event(hour(66) + i * 24_000, "LOGIN_FAILED", None)
        });
    }
    let expected = [
        "login_failed_burst:device:d-07",
        "first_seen_event_type:d-12:HOST_WIPED",
        "offline_wave:tenant",
        "policy_violation_spike:POLICY_VIOLATION",
        "login_failed_burst:device:d-03",
        "login_failed_burst:user:admin@acme.example",
    ];
    (
        events,
        expected.iter().map(|key| (*key).to_owned()).collect(),
    )
}

/// Runs a detector over `events` in time order, ticking every minute of stream time.
fn run(detector: &mut Detector, mut events: Vec<Event>) -> Vec<Finding> {
    events.sort_by_key(|event| event.at);
    let mut findings = Vec::new();
    let mut next_tick = DAY0;
    for event in &events {
        while next_tick <= event.at {
            findings.extend(detector.tick(next_tick));
            next_tick += MINUTE_MS;
        }
        findings.extend(detector.observe(Observation {
            at: event.at,
            event_type: event.event_type,
            device: event.device.as_deref(),
            user: event.user.as_deref(),
            organization: Some("org-1"),
        }));
    }
    findings.extend(detector.tick(DAY0 + 80 * HOUR_MS));
    findings
}

fn triggered(findings: &[Finding]) -> Vec<&Alert> {
    findings
        .iter()
        .filter_map(|finding| match finding {
            Finding::Triggered(alert) => Some(alert),
            Finding::Resolved { .. } => None,
        })
        .collect()
}

#[test]
fn known_anomalies_fire_once_each_and_a_clean_stream_fires_nothing() {
    let (injected, truth) = anomalies();
    let mut total = (0usize, 0usize, 0usize); // true positives, alerts, anomalies
    for seed in [7, 42, 1234, 99_999] {
        let clean = run(&mut Detector::new(Thresholds::default()), ordinary(seed));
        assert_eq!(
            triggered(&clean),
            Vec::<&Alert>::new(),
            "seed {seed}: a clean stream"
        );

        let mut stream = ordinary(seed);
        stream.extend(injected.clone());
        let findings = run(&mut Detector::new(Thresholds::default()), stream);
        let alerts = triggered(&findings);
        let keys: BTreeSet<String> = alerts.iter().map(|alert| alert.key.clone()).collect();
        assert_eq!(
            keys.len(),
            alerts.len(),
            "seed {seed}: an alert fired twice: {alerts:#?}"
        );
        let hits = keys.intersection(&truth).count();
        total = (
            total.0 + hits,
            total.1 + alerts.len(),
            total.2 + truth.len(),
        );
        assert_eq!(keys, truth, "seed {seed}");
        // Every alert resolves once, after it went quiet.
        let resolved: Vec<&String> = findings
            .iter()
            .filter_map(|finding| match finding {
                Finding::Resolved { alert, at } => {
                    assert!(*at - alert.at >= Thresholds::default().quiet_ms);
                    Some(&alert.key)
                }
                Finding::Triggered(_) => None,
            })
            .collect();
        assert_eq!(resolved.len(), truth.len(), "seed {seed}: {resolved:?}");
    }
    let precision = total.0 as f64 / total.1 as f64;
    let recall = total.0 as f64 / total.2 as f64;
    eprintln!(
        "synthetic set (4 seeds x 72 h x 30 devices, 6 anomalies each): precision {precision:.2}, recall {recall:.2}"
    );
    assert_eq!((precision, recall), (1.0, 1.0));
}

#[test]
fn alerts_explain_their_evidence() {
    let (injected, _) = anomalies();
    let mut stream = ordinary(7);
    stream.extend(injected);
    let findings = run(&mut Detector::new(Thresholds::default()), stream);
    let alerts = triggered(&findings);
    let by_key = |key: &str| *alerts.iter().find(|alert| alert.key == key).unwrap();

    let burst = by_key("login_failed_burst:device:d-07");
    assert_eq!(
        burst.summary,
        "10 failed sign-ins on device d-07 within 5 minutes"
    );
    assert_eq!(
        (
            burst.evidence["count"].as_u64(),
            burst.evidence["threshold"].as_u64()
        ),
        (Some(10), Some(10))
    );
    assert_eq!(burst.device.as_deref(), Some("d-07"));

    let wave = by_key("offline_wave:tenant");
    assert_eq!(wave.severity, "ERROR");
    assert_eq!(wave.evidence["count"], 5);
    assert_eq!(
        wave.evidence["devices"],
        json!(["d-20", "d-21", "d-22", "d-23", "d-24"])
    );

    let spike = by_key("policy_violation_spike:POLICY_VIOLATION");
    assert!(
        spike.evidence["zScore"].as_f64().unwrap() >= 5.0,
        "{spike:?}"
    );
    assert!(
        spike.evidence["baselineMedian"].as_f64().unwrap() <= 3.0,
        "{spike:?}"
    );
    assert!(
        spike
            .summary
            .starts_with("10 POLICY_VIOLATION events this hour"),
        "{}",
        spike.summary
    );

    let first = by_key("first_seen_event_type:d-12:HOST_WIPED");
    assert_eq!(first.evidence["fleetDevicesWithType"], 0);
    assert_eq!(first.evidence["fleetDevices"], 30);
    assert!(
        first.evidence["knownTypes"].as_u64().unwrap() >= 5,
        "{first:?}"
    );
}

#[test]
fn thresholds_are_the_tenants_own() {
    let (injected, _) = anomalies();
    let mut stream = ordinary(7);
    stream.extend(injected);
    let strict = Thresholds {
        login_failed_count: 15,
        offline_devices: 10,
        ..Thresholds::default()
    };
    let keys: BTreeSet<String> = triggered(&run(&mut Detector::new(strict), stream))
        .iter()
        .map(|alert| alert.key.clone())
        .collect();
    // The 12-failure burst and the 10-failure user burst stay under 15; the long burst does
    // not; 8 devices offline stay under 10.
    assert!(!keys.contains("login_failed_burst:device:d-07"), "{keys:?}");
    assert!(
        !keys.contains("login_failed_burst:user:admin@acme.example"),
        "{keys:?}"
    );
    assert!(!keys.contains("offline_wave:tenant"), "{keys:?}");
    assert!(keys.contains("login_failed_burst:device:d-03"), "{keys:?}");
}

#[test]
fn a_seeded_baseline_is_what_a_spike_is_measured_against() {
    // A tenant whose violations run at 30 an hour: 40 is not a spike.
    let mut detector = Detector::new(Thresholds::default());
    detector.seed_baseline(
        "POLICY_VIOLATION",
        (0..48).map(|h| (DAY0 + h * HOUR_MS, 30)),
    );
    let start = DAY0 + 48 * HOUR_MS;
    let mut found = Vec::new();
    for i in 0..40 {
        found.extend(detector.observe(Observation {
            at: start + i * 60_000,
            event_type: "POLICY_VIOLATION",
            device: None,
            user: None,
            organization: None,
        }));
    }
    assert_eq!(found, Vec::new());
    assert_eq!(robust_scale(&[1, 2, 2, 3, 100]), (2.0, 1.4826));
    assert_eq!(robust_scale(&[5, 5, 5]), (5.0, 5f64.sqrt()));
    assert_eq!(robust_scale(&[0, 0, 0, 1]), (0.0, 1.0));
}
