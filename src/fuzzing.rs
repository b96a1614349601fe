//! Entry points for the fuzz targets in `fuzz/` (cargo fuzz, libFuzzer): one function per parser
//! that faces the network or the disk. Each takes arbitrary bytes, must never panic or hang, and
//! asserts what must hold of whatever the parser accepts (a round trip, a bound, a permission).
//! A failed assertion is a finding, as a crash is.
//!
//! They live in the library, not in `fuzz/`, so that they reach crate-private parsers, are
//! checked by clippy with everything else, and run over the committed seeds and every past
//! finding in `cargo test` (see the tests below), which needs no nightly compiler.

// A fuzz target reports a finding by panicking: here `expect`, `panic!` and failed assertions
// are the point, not a shortcut.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use std::sync::LazyLock;

use aws_lc_rs::hmac;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{KeyPair, RsaKeyPair};
use serde_json::Value;

use crate::identity::crypto::{sign_value, verify_signed_value};
use crate::identity::jwt::{self, RsaPublic};
use crate::stream::envelope::{BodyItem, Envelope, split_body};
use crate::stream::tools::{MessageType, Parsed, integration_for};

/// A fuzz target's entry point: arbitrary bytes in, a panic for a finding.
pub type Target = fn(&[u8]);

/// The targets, by name: `fuzz/fuzz_targets/<name>.rs` calls the function of the same name, and
/// `fuzz/seeds/<name>/` holds its seeds.
pub const TARGETS: [(&str, Target); 9] = [
    ("ingest_body", ingest_body),
    ("credentials", credentials),
    ("relay_ids", relay_ids),
    ("graphql_filters", graphql_filters),
    ("nats_client", nats_client),
    ("nats_permissions", nats_permissions),
    ("agent_reports", agent_reports),
    ("config_file", config_file),
    ("backup_archive", backup_archive),
];

/// The largest event the fuzzed ingest accepts (the default of `stream.max_event_bytes` is
/// larger; a smaller bound reaches the size check with smaller inputs).
const MAX_EVENT_BYTES: usize = 4096;

/// A request body to `/api/v1/ingest` (read as JSON and as NDJSON), each envelope through every
/// tool integration. Accepted events must carry an id, a known mapping or none, and an envelope
/// must survive its own stored form.
pub fn ingest_body(data: &[u8]) {
    for ndjson in [false, true] {
        let Ok(items) = split_body(data, ndjson, MAX_EVENT_BYTES) else {
            continue;
        };
        for item in items {
            let BodyItem::Event { value, .. } = item else {
                continue;
            };
            let Ok(envelope) = Envelope::parse(value) else {
                continue;
            };
            let stored = envelope.to_bytes();
            let again = serde_json::from_slice(&stored)
                .ok()
                .and_then(|value| Envelope::parse(value).ok())
                .expect("an envelope's stored form must parse again");
            assert_eq!(
                again.payload, envelope.payload,
                "the stored form changed it"
            );
            for message_type in MessageType::ALL {
                let Some(integration) = integration_for(message_type) else {
                    continue;
                };
                if let Ok(Parsed::Event(event)) = integration.parse(message_type, &envelope) {
                    assert!(
                        !event.tool_event_id.is_empty(),
                        "{message_type:?}: an event without a tool event id"
                    );
                    // A mapped type must be one the unified taxonomy knows.
                    if let Some(unified) = integration.map(&event.source_event_type) {
                        assert!(
                            crate::stream::taxonomy::event_type(unified).is_some(),
                            "{message_type:?} maps to {unified:?}, which is not in the taxonomy"
                        );
                    }
                }
            }
        }
    }
}

/// One RSA key for the process: generating one costs a few hundred milliseconds.
static SIGNING: LazyLock<(RsaKeyPair, RsaPublic)> = LazyLock::new(|| {
    let pair = RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA key generation");
    let public = pair.public_key();
    let public = RsaPublic {
        n: public.modulus().big_endian_without_leading_zero().to_vec(),
        e: public.exponent().big_endian_without_leading_zero().to_vec(),
    };
    (pair, public)
});

static COOKIE_KEY: LazyLock<hmac::Key> =
    LazyLock::new(|| hmac::Key::new(hmac::HMAC_SHA256, b"fuzzing: a fixed key is fine here"));

/// Bearer tokens, API keys and signed cookie values. The key is made at run time, so no input
/// can carry a valid signature: any token that verifies is a forgery. Tokens and values this
/// code signs itself must verify to exactly what was signed.
pub fn credentials(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (pair, public) = &*SIGNING;
    let _ = jwt::peek_kid(&text);
    assert!(
        jwt::verify::<Value>(&text, |_| Some(public.clone())).is_err(),
        "a token nobody signed verified: {text:?}"
    );
    assert!(
        verify_signed_value(&COOKIE_KEY, &text).is_none(),
        "a value nobody signed verified: {text:?}"
    );
    let claims = serde_json::json!({ "sub": text, "scope": text.len() });
    let token = jwt::sign(pair, &text, &claims).expect("signing");
    assert_eq!(jwt::peek_kid(&token).ok().as_deref(), Some(&*text));
    let verified: Value = jwt::verify(&token, |kid| (kid == text).then(|| public.clone()))
        .expect("a token this code signed must verify");
    assert_eq!(verified, claims);
    let signed = sign_value(&COOKIE_KEY, &text);
    assert_eq!(verify_signed_value(&COOKIE_KEY, &signed), Some(&*text));

    if let Ok((id, secret)) = crate::gateway::api_keys::parse_key(&text) {
        assert_eq!(
            format!("{id}.{secret}"),
            text,
            "parse_key lost or added characters"
        );
        assert!(id.starts_with("ak_") && secret.starts_with("sk_"));
        assert!(
            text.bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || b"_.".contains(&byte)),
            "an accepted key holds characters the format does not allow: {text:?}"
        );
    }
}

/// Relay global ids, list cursors and log cursors: what they accept decodes to what they encode.
pub fn relay_ids(data: &[u8]) {
    use crate::graphql::relay::{decode_cursor, encode_cursor, global_id, parse_global_id};
    let text = String::from_utf8_lossy(data);
    if let Ok((kind, local)) = parse_global_id("id", &text) {
        assert!(!kind.is_empty() && !local.is_empty() && !kind.contains(':'));
        let again = global_id(&kind, &local);
        assert_eq!(parse_global_id("id", &again.0).ok(), Some((kind, local)));
    }
    if let Ok(key) = decode_cursor("after", &text) {
        assert_eq!(decode_cursor("after", &encode_cursor(&key)).ok(), Some(key));
    }
    assert_eq!(
        decode_cursor("after", &encode_cursor(&text))
            .ok()
            .as_deref(),
        Some(&*text)
    );
    if let Ok(cursor) = crate::graphql::logs::decode_cursor("after", &text) {
        let key = format!("{}_{}", cursor.event_timestamp, cursor.tool_event_id);
        let again = crate::graphql::logs::decode_cursor("after", &encode_cursor(&key))
            .expect("a log cursor re-encoded must decode");
        assert_eq!(again.event_timestamp, cursor.event_timestamp);
        assert_eq!(again.tool_event_id, cursor.tool_event_id);
    }
}

/// GraphQL variables: a JSON object whose `logs`, `devices`, `events` and `audit` members are
/// read as those lists' filter inputs, and whose `page` holds `first/after/last/before` for a
/// page of a sorted list. A page holds only rows of the list, in order, within its size.
pub fn graphql_filters(data: &[u8]) {
    use crate::graphql::{audit, devices, events, logs, relay};
    use async_graphql::InputType;

    let Ok(Value::Object(variables)) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let input = |name: &str| {
        variables
            .get(name)
            .cloned()
            .and_then(|value| async_graphql::Value::from_json(value).ok())
    };
    if let Ok(filter) = logs::LogFilterInput::parse(input("logs"))
        && let Ok(storage) = logs::filter_fields(Some(filter))
    {
        assert!(
            storage.tool_event_ids.is_none(),
            "no search, no id restriction"
        );
    }
    let _ = devices::DeviceFilterInput::parse(input("devices"));
    let _ = events::EventFilterInput::parse(input("events"));
    let _ = audit::AuditFilterInput::parse(input("audit"));

    let Some(page) = variables.get("page") else {
        return;
    };
    let number = |name: &str| {
        page.get(name)
            .and_then(Value::as_i64)
            .map(|value| i32::try_from(value).unwrap_or(i32::MAX))
    };
    let text = |name: &str| page.get(name).and_then(Value::as_str).map(str::to_owned);
    let Ok(args) = relay::PageArgs::new(
        number("first"),
        text("after"),
        number("last"),
        text("before"),
    ) else {
        return;
    };
    let mut keys: Vec<String> = page
        .get("keys")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|key| key.as_str().map(str::to_owned))
        .collect();
    keys.sort();
    keys.dedup();
    let ascending = page
        .get("ascending")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    if !ascending {
        keys.reverse();
    }
    let sorted: Vec<(String, usize)> = keys.iter().cloned().zip(0..).collect();
    let Ok(found) = relay::paginate(sorted, ascending, &args) else {
        return;
    };
    let size =
        usize::try_from(args.first.or(args.last).unwrap_or(relay::DEFAULT_PAGE)).unwrap_or(0);
    assert!(found.rows.len() <= size, "a page larger than asked for");
    assert_eq!(
        found.filtered_count,
        i32::try_from(keys.len()).unwrap_or(i32::MAX)
    );
    for pair in found.rows.windows(2) {
        assert_eq!(pair[0].1 + 1, pair[1].1, "a page skipped or repeated a row");
    }
    for (cursor, index) in &found.rows {
        assert_eq!(
            relay::decode_cursor("after", cursor).ok().as_ref(),
            Some(&keys[*index]),
            "a row's cursor is not its key"
        );
    }
}

/// The client half of the NATS protocol as agents speak it over `/ws/nats`. The first byte
/// chooses how the rest is cut into WebSocket frames; however it is cut, it must mean the same
/// as when it arrives whole.
pub fn nats_client(data: &[u8]) {
    use crate::management::nats_proxy::parse_pieces;
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    let whole = parse_pieces(stream, stream.len().max(1));
    let cut = parse_pieces(stream, usize::from(cut).max(1));
    assert_eq!(
        whole, cut,
        "frame boundaries changed the meaning of the stream"
    );
}

/// The machine the NATS permission target speaks for, and another one (ids are UUIDs, as
/// registration makes them).
pub const MACHINE: &str = "3f6c1c9e-0000-4000-8000-000000000001";
const OTHER_MACHINE: &str = "3f6c1c9e-0000-4000-8000-000000000002";

/// What a machine may do on NATS. Input: a subject, a newline, a payload. Whatever is allowed
/// to [`MACHINE`] must stay inside its own subjects (`machine.<id>.…`, broadcasts to read,
/// literal inboxes) and its own consumers, and consumers it creates must filter to them too.
pub fn nats_permissions(data: &[u8]) {
    use crate::management::nats_rules::MachineScope;
    let text = String::from_utf8_lossy(data);
    let (subject, payload) = text.split_once('\n').unwrap_or((&text, ""));
    let scope = MachineScope::new(MACHINE);
    let wildcard = |pattern: &str| pattern.split('.').any(|token| token == "*" || token == ">");
    let readable = |pattern: &str| {
        let tokens: Vec<&str> = pattern.split('.').collect();
        match tokens.as_slice() {
            ["machine", id, _, ..] => *id == MACHINE || *id == "all",
            ["_INBOX", inbox, ..] => *inbox != "*" && *inbox != ">",
            _ => false,
        }
    };
    if scope.may_subscribe(subject) {
        assert!(readable(subject), "it may subscribe to {subject:?}");
    }
    if scope.may_publish(subject) {
        assert!(
            !wildcard(subject),
            "it may publish to the wildcard {subject:?}"
        );
        let tokens: Vec<&str> = subject.split('.').collect();
        match tokens.as_slice() {
            ["machine", id, ..] => assert_eq!(*id, MACHINE, "it may publish to {subject:?}"),
            ["_INBOX", ..] => {}
            ["$JS", ..] => assert!(
                !subject.contains(OTHER_MACHINE)
                    && tokens
                        .iter()
                        .filter(|token| token.starts_with("machine_"))
                        .all(|consumer| consumer.starts_with(&format!("machine_{MACHINE}_"))),
                "it may call {subject:?}"
            ),
            _ => panic!("it may publish to {subject:?}"),
        }
    }
    let creates = [
        "$JS.API.CONSUMER.CREATE.",
        "$JS.API.CONSUMER.DURABLE.CREATE.",
    ]
    .iter()
    .any(|prefix| subject.starts_with(prefix));
    if creates && scope.may_send(subject, payload.as_bytes()) {
        let request: Value =
            serde_json::from_str(payload).expect("an allowed consumer request is JSON");
        let config = &request["config"];
        let mut filters: Vec<&str> = config["filter_subjects"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        filters.extend(config["filter_subject"].as_str());
        assert!(
            !filters.is_empty()
                && filters
                    .iter()
                    .all(|filter| readable(filter) && !filter.starts_with("_INBOX.")),
            "it may create a consumer over {filters:?}"
        );
        if let Some(deliver) = config["deliver_subject"].as_str() {
            assert!(
                readable(deliver) && !wildcard(deliver),
                "it may have {deliver:?} delivered to"
            );
        }
    }
}

/// What agents report: the inventory (hostname, OS, hardware, network) and script and command
/// results. An accepted inventory applied to a machine must store and load as it was.
pub fn agent_reports(data: &[u8]) {
    use crate::inventory::{InventoryReport, Machine};
    if let Ok(report) = serde_json::from_slice::<InventoryReport>(data)
        && report.validate().is_ok()
    {
        let mut machine = Machine::default();
        report.apply(&mut machine, 1_700_000_000_000);
        let stored = serde_json::to_vec(&machine).expect("a machine serialises");
        let loaded: Machine = serde_json::from_slice(&stored).expect("a stored machine loads");
        assert_eq!(
            loaded, machine,
            "the machine changed through its stored form"
        );
    }
    if let Ok(result) = serde_json::from_slice::<crate::management::rmm::AgentResult>(data) {
        for output in [result.stdout, result.stderr, result.error] {
            let length = output.as_ref().map_or(0, String::len);
            let (kept, truncated) = crate::management::rmm::capped(output.clone());
            let kept_length = kept.as_ref().map_or(0, String::len);
            assert!(kept_length <= crate::management::rmm::MAX_OUTPUT);
            assert_eq!(truncated, length > crate::management::rmm::MAX_OUTPUT);
            if let (Some(kept), Some(output)) = (&kept, &output) {
                assert!(
                    output.starts_with(kept.as_str()),
                    "capping changed the text"
                );
            }
        }
    }
}

/// A config file. One that loads must load again, unchanged, from its own TOML form, and its
/// errors must be one line.
pub fn config_file(data: &[u8]) {
    use crate::config::Config;
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_file_text(text, "config file fuzz.toml") {
        Ok(config) => {
            let printed = toml::to_string(&config).expect("a loaded config prints as TOML");
            let again = Config::from_file_text(&printed, "printed")
                .unwrap_or_else(|error| panic!("the printed config does not load: {error}"));
            assert_eq!(again, config, "the config changed through its printed form");
        }
        Err(error) => assert!(
            !error.message.contains('\n'),
            "a multi-line error: {:?}",
            error.message
        ),
    }
}

/// A backup archive given to `openframe restore`: checked, then unpacked into a fresh directory.
/// Whatever it holds, nothing may be written outside that directory, and an archive that is
/// accepted must have had every member checked against its manifest.
pub fn backup_archive(data: &[u8]) {
    let scratch = Scratch::new();
    let archive = scratch.path().join("archive.tar");
    let into = scratch.path().join("data");
    std::fs::write(&archive, data).expect("writing the archive to the scratch dir");
    std::fs::create_dir(&into).expect("making the data dir in the scratch dir");
    let mut quiet = |_: &str| {};
    let checked = crate::backup::unpack(&archive, None, &mut quiet);
    let unpacked = crate::backup::unpack(&archive, Some(&into), &mut quiet);
    assert_eq!(
        checked.is_ok(),
        unpacked.is_ok(),
        "checking and unpacking disagree: {checked:?} / {unpacked:?}"
    );
    let mut outside: Vec<_> = std::fs::read_dir(scratch.path())
        .expect("the scratch dir")
        .filter_map(Result::ok)
        .map(|entry| entry.file_name())
        .collect();
    outside.sort();
    assert_eq!(
        outside,
        ["archive.tar", "data"],
        "unpacking wrote outside the data dir"
    );
    if let Ok(manifest) = unpacked {
        for file in &manifest.files {
            let path = into.join(&file.path);
            let bytes = std::fs::metadata(&path)
                .unwrap_or_else(|error| {
                    panic!("{} was accepted but not unpacked: {error}", file.path)
                })
                .len();
            assert_eq!(
                bytes, file.bytes,
                "{} has another size than its manifest says",
                file.path
            );
        }
    }
}

/// A directory of its own under the system's temporary dir, removed when dropped.
#[derive(Debug)]
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new() -> Scratch {
        static MADE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let made = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("openframe-fuzz-{}-{made}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("making a scratch dir");
        Scratch(path)
    }

    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    fn fuzz_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
    }

    /// Every file under `fuzz/seeds/<target>/` and `fuzz/regressions/<target>/`.
    fn inputs(target: &str) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for folder in ["seeds", "regressions"] {
            let Ok(entries) = std::fs::read_dir(fuzz_dir().join(folder).join(target)) else {
                continue;
            };
            files.extend(entries.filter_map(Result::ok).map(|entry| entry.path()));
        }
        files.sort();
        files
    }

    #[test]
    fn every_target_has_a_fuzz_binary_and_seeds() {
        for (name, _) in TARGETS {
            let binary = fuzz_dir().join("fuzz_targets").join(format!("{name}.rs"));
            let source = std::fs::read_to_string(&binary)
                .unwrap_or_else(|error| panic!("{}: {error}", binary.display()));
            assert!(
                source.contains(&format!("openframe::fuzzing::{name}(")),
                "{} does not call fuzzing::{name}",
                binary.display()
            );
            assert!(!inputs(name).is_empty(), "fuzz/seeds/{name}/ holds no seed");
        }
    }

    /// The seeds and every input a fuzzer once failed on, run as a plain test on every push.
    #[test]
    fn every_seed_and_past_finding_passes() {
        for (name, target) in TARGETS {
            for input in inputs(name) {
                let data = std::fs::read(&input).unwrap();
                let outcome = std::panic::catch_unwind(|| target(&data));
                assert!(outcome.is_ok(), "{name} fails on {}", input.display());
            }
        }
    }

    #[test]
    fn the_shared_fixtures_are_ingest_seeds() {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures");
        let mut seen = 0;
        for entry in std::fs::read_dir(&fixtures).unwrap().filter_map(Result::ok) {
            if entry.path().extension().is_some_and(|ext| ext != "md") {
                ingest_body(&std::fs::read(entry.path()).unwrap());
                seen += 1;
            }
        }
        assert!(seen >= 4, "only {seen} fixtures in {}", fixtures.display());
    }
}
