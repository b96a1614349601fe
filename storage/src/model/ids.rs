//! Validated identifiers. Each has a `parse` constructor that says what is wrong with bad input;
//! once constructed, a value is known to be well formed, so engines may embed it in keys.

use std::fmt;

/// Why a string is not a valid identifier of some kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {value:?}: {rule}")]
pub struct IdError {
    /// Which identifier was being parsed (`tenant id`, `topic`, ...).
    pub kind: &'static str,
    /// The rejected input, truncated so an attacker cannot make error messages huge.
    pub value: String,
    /// The rule the input broke, phrased so the caller knows how to fix it.
    pub rule: &'static str,
}

impl IdError {
    fn new(kind: &'static str, value: &str, rule: &'static str) -> Self {
        let value: String = value.chars().take(80).collect();
        Self { kind, value, rule }
    }
}

fn is_slug_char(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-'
}

/// A tenant (one MSP) identifier: a slug matching `^[a-z0-9][a-z0-9-]{1,62}$`, as in OpenFrame.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(String);

impl TenantId {
    pub const RULE: &'static str =
        "2 to 63 characters of a-z, 0-9 and '-', starting with a letter or digit";

    pub fn parse(value: &str) -> Result<Self, IdError> {
        let bytes = value.as_bytes();
        let well_formed = (2..=63).contains(&bytes.len())
            && bytes[0] != b'-'
            && bytes.iter().all(|&c| is_slug_char(c));
        if well_formed {
            Ok(Self(value.to_owned()))
        } else {
            Err(IdError::new("tenant id", value, Self::RULE))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The name of an event-log topic, with Kafka's rules so names carry over to a real cluster:
/// 1 to 249 characters of `[A-Za-z0-9._-]`, and not `.` or `..`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Topic(String);

impl Topic {
    pub const RULE: &'static str =
        "1 to 249 characters of A-Z, a-z, 0-9, '.', '_' and '-', and not '.' or '..'";

    pub fn parse(value: &str) -> Result<Self, IdError> {
        if is_kafka_name(value) {
            Ok(Self(value.to_owned()))
        } else {
            Err(IdError::new("topic", value, Self::RULE))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A consumer group: the name under which a reader commits how far it has got. Same rules as
/// [`Topic`].
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupId(String);

impl GroupId {
    pub fn parse(value: &str) -> Result<Self, IdError> {
        if is_kafka_name(value) {
            Ok(Self(value.to_owned()))
        } else {
            Err(IdError::new("consumer group", value, Topic::RULE))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_kafka_name(value: &str) -> bool {
    (1..=249).contains(&value.len())
        && value != "."
        && value != ".."
        && value
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// A named set of documents within a tenant (Mongo's collection): `^[a-z][a-z0-9_]{0,63}$`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Collection(String);

impl Collection {
    pub const RULE: &'static str = "1 to 64 characters of a-z, 0-9 and '_', starting with a letter";

    pub fn parse(value: &str) -> Result<Self, IdError> {
        let bytes = value.as_bytes();
        let well_formed = (1..=64).contains(&bytes.len())
            && bytes[0].is_ascii_lowercase()
            && bytes
                .iter()
                .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_');
        if well_formed {
            Ok(Self(value.to_owned()))
        } else {
            Err(IdError::new("collection", value, Self::RULE))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A document's id within its collection: 1 to 128 printable ASCII characters, no spaces.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DocumentId(String);

impl DocumentId {
    pub const RULE: &'static str = "1 to 128 printable ASCII characters without spaces";

    pub fn parse(value: &str) -> Result<Self, IdError> {
        let well_formed =
            (1..=128).contains(&value.len()) && value.bytes().all(|c| c.is_ascii_graphic());
        if well_formed {
            Ok(Self(value.to_owned()))
        } else {
            Err(IdError::new("document id", value, Self::RULE))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! string_id_impls {
    ($($name:ident),*) => {$(
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }
        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    )*};
}
string_id_impls!(TenantId, Topic, GroupId, Collection, DocumentId);

/// A record's position in one stream (one tenant's partition of a topic). Offsets start at 0,
/// increase by one per record and are never reused, even after retention deletes records.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Offset(pub u64);

impl Offset {
    pub fn next(self) -> Offset {
        Offset(self.0 + 1)
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Offset({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_follow_openframes_slug_rule() {
        let cases = [
            ("acme", true),
            ("a1", true),
            ("msp-42", true),
            ("a", false),
            ("-acme", false),
            ("Acme", false),
            ("acme_1", false),
            ("acme corp", false),
            ("", false),
        ];
        for (input, valid) in cases {
            assert_eq!(TenantId::parse(input).is_ok(), valid, "{input:?}");
        }
        assert!(TenantId::parse(&"a".repeat(63)).is_ok());
        assert!(TenantId::parse(&"a".repeat(64)).is_err());
    }

    #[test]
    fn topic_names_follow_kafkas_rules() {
        for good in [
            "meshcentral.mongodb.events",
            "logs.events",
            "devices-topic",
            "a_b",
        ] {
            assert!(Topic::parse(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "a b", "a/b", "ä"] {
            assert!(Topic::parse(bad).is_err(), "{bad}");
        }
        assert!(Topic::parse(&"t".repeat(250)).is_err());
    }

    #[test]
    fn id_errors_name_the_rule_and_truncate_the_input() {
        let error = TenantId::parse(&"X".repeat(10_000)).unwrap_err();
        assert_eq!(error.value.len(), 80);
        assert!(error.to_string().contains("tenant id"));
        assert!(error.to_string().contains("2 to 63 characters"));
    }

    #[test]
    fn collections_and_document_ids_reject_what_would_break_keys() {
        assert!(Collection::parse("machines").is_ok());
        assert!(Collection::parse("tool_connections").is_ok());
        assert!(Collection::parse("1machines").is_err());
        assert!(Collection::parse("Machines").is_err());
        assert!(DocumentId::parse("64f0c2-abc:1").is_ok());
        assert!(DocumentId::parse("has space").is_err());
        assert!(DocumentId::parse("").is_err());
        assert!(DocumentId::parse(&"x".repeat(129)).is_err());
    }
}
