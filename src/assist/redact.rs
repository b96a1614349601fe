//! What never goes into a prompt: credentials and tokens, whatever text they hide in. Prompts
//! are built from log summaries, details and inventory, which tools fill with whatever they
//! saw (a command line with a password, a URL with credentials, a token in an error), so every
//! piece of material passes through [`redact`] on its way to a provider.
//!
//! It errs on the side of removing: a long opaque string is taken for a secret even when it is
//! a hash. Device and customer ids (UUIDs) and ordinary words stay.

use std::sync::LazyLock;

use regex::{Captures, Regex};

/// What replaces a removed value.
pub const REDACTED: &str = "[redacted]";

struct Rules {
    private_key: Regex,
    jwt: Regex,
    api_key: Regex,
    scheme: Regex,
    userinfo: Regex,
    assignment: Regex,
    flag: Regex,
    opaque: Regex,
}

#[allow(clippy::expect_used)] // The patterns are constants; a unit test compiles them all.
static RULES: LazyLock<Rules> = LazyLock::new(|| {
    let compile = |pattern: &str| Regex::new(pattern).expect("a redaction pattern compiles");
    Rules {
        private_key: compile(
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(-----END [A-Z ]*PRIVATE KEY-----|$)",
        ),
        jwt: compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.?[A-Za-z0-9_-]*"),
        // OpenFrame's API keys: `ak_<id>.sk_<secret>`, or either half alone.
        api_key: compile(r"\b(?:ak|sk)_[A-Za-z0-9]{8,}(?:\.sk_[A-Za-z0-9]{8,})?"),
        scheme: compile(r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9._~+/=-]{6,}"),
        userinfo: compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@"),
        // `password=…`, `"apiKey": "…"`, `DB_SECRET: …`.
        assignment: compile(
            r#"(?i)([A-Za-z0-9_.-]*(?:passw(?:or)?d|pwd|secret|token|api[_-]?key|credential|private[_-]?key|authorization|cookie|session)[A-Za-z0-9_.-]*["']?)(\s*[:=]\s*)(["']?)([^\s"',;&]+)"#,
        ),
        // `--password …`, `/token …`: a flag and the word after it.
        flag: compile(
            r#"(?i)((?:^|\s)(?:--?|/)[A-Za-z0-9_-]*(?:passw(?:or)?d|pwd|secret|token|api[_-]?key|credential)[A-Za-z0-9_-]*)(\s+)(["']?)([^\s"',;&]+)"#,
        ),
        opaque: compile(r"[A-Za-z0-9+_=-]{32,}"),
    }
});

/// `text` with every credential-looking value replaced by [`REDACTED`].
pub fn redact(text: &str) -> String {
    let rules = &*RULES;
    let text = rules
        .private_key
        .replace_all(text, "[redacted private key]");
    let text = rules.jwt.replace_all(&text, REDACTED);
    let text = rules.api_key.replace_all(&text, REDACTED);
    let text = rules.scheme.replace_all(&text, |captures: &Captures<'_>| {
        format!("{} {REDACTED}", &captures[1])
    });
    let text = rules
        .userinfo
        .replace_all(&text, |captures: &Captures<'_>| {
            format!("{}{REDACTED}@", &captures[1])
        });
    let value = |captures: &Captures<'_>| {
        if captures[4].starts_with("[redacted") {
            return captures[0].to_owned();
        }
        format!("{}{}{}{REDACTED}", &captures[1], &captures[2], &captures[3])
    };
    let text = rules.assignment.replace_all(&text, value);
    let text = rules.flag.replace_all(&text, value);
    rules
        .opaque
        .replace_all(&text, |captures: &Captures<'_>| {
            let run = &captures[0];
            if is_uuid_like(run) || !run.chars().any(|c| c.is_ascii_digit()) {
                run.to_owned()
            } else {
                REDACTED.to_owned()
            }
        })
        .into_owned()
}

/// UUIDs and other hyphenated ids: groups of hex digits.
fn is_uuid_like(run: &str) -> bool {
    run.split('-').count() >= 4
        && run
            .split('-')
            .all(|group| !group.is_empty() && group.chars().all(|c| c.is_ascii_hexdigit()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_every_shape_are_removed() {
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhZG1pbiJ9.c2lnbmF0dXJlLWJ5dGVz";
        let cases = [
            (format!("refresh failed for {jwt} at noon"), jwt),
            (
                "X-API-Key: ak_1a2b3c4d5e6f7a8b.sk_00112233445566778899aabbccddeeff".to_owned(),
                "sk_00112233445566778899aabbccddeeff",
            ),
            (
                "Authorization: Bearer abc.DEF-123_xyz".to_owned(),
                "abc.DEF-123_xyz",
            ),
            (
                "mysql -u root --password=Hunter2! db".to_owned(),
                "Hunter2!",
            ),
            ("runas /user:bob --password s3cr3t cmd".to_owned(), "s3cr3t"),
            (
                r#"{"apiKey": "k-live-42", "name": "x"}"#.to_owned(),
                "k-live-42",
            ),
            ("DB_SECRET=opensesame".to_owned(), "opensesame"),
            (
                "fetch https://admin:pa55@10.0.0.5/backup".to_owned(),
                "pa55",
            ),
            (
                "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----".to_owned(),
                "MIIEow",
            ),
            (
                "token 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".to_owned(),
                "9f86d081884c7d659a2feaa0c55ad015",
            ),
        ];
        for (text, secret) in cases {
            let redacted = redact(&text);
            assert!(
                !redacted.contains(secret),
                "{secret:?} survived in {redacted:?}"
            );
            assert!(redacted.contains("[redacted"), "{redacted:?}");
        }
    }

    #[test]
    fn ordinary_text_and_ids_stay() {
        for text in [
            "Device 7c9e6679-7425-40de-944b-e07fc1f90ae7 went OFFLINE",
            "User alice@example.com logged in from 10.0.0.7",
            "Script 'Clear temp files' finished with exit code 0",
            "Password policy changed for organisation Acme",
        ] {
            assert_eq!(redact(text), text);
        }
    }
}
