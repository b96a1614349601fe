//! Debezium change events as they arrive: splitting a request body into envelopes, unwrapping the
//! JSON converter's `{schema, payload}`, and reading the fields every connector shares.
//!
//! Debezium's `after` is an object for relational connectors (MySQL, Postgres) and an extended-JSON
//! *string* for MongoDB; [`Envelope::after`] hides the difference.

use serde_json::Value;

/// Why one event was refused. `code` is stable (clients branch on it); `reason` is for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: &'static str,
    pub reason: String,
}

impl Rejection {
    pub fn new(code: &'static str, reason: impl Into<String>) -> Rejection {
        Rejection {
            code,
            reason: reason.into(),
        }
    }
}

/// One item of a request body: an envelope's JSON, or why it could not even be read.
#[derive(Debug)]
pub enum BodyItem<'a> {
    Event {
        raw: &'a [u8],
        value: Value,
    },
    /// `raw` is the refused bytes (empty for an array element), kept as a dead letter.
    Invalid {
        raw: &'a [u8],
        rejection: Rejection,
    },
}

/// Splits a body into events: one envelope, a JSON array of them, or NDJSON (one per line; blank
/// lines are ignored). A line that is an array counts as its elements. `ndjson` is true when the
/// client said so (`Content-Type: application/x-ndjson`); otherwise the body is tried as one JSON
/// document first. Fails only when the body as a whole is unusable.
pub fn split_body(
    body: &[u8],
    ndjson: bool,
    max_event_bytes: usize,
) -> Result<Vec<BodyItem<'_>>, String> {
    let trimmed = body.trim_ascii();
    if trimmed.is_empty() {
        return Err(
            "the body is empty: send one Debezium envelope, a JSON array of them, or NDJSON".into(),
        );
    }
    if !ndjson {
        match serde_json::from_slice::<Value>(trimmed) {
            Ok(Value::Array(items)) => {
                if items.is_empty() {
                    return Err("the body is an empty array: send at least one envelope".into());
                }
                return Ok(items
                    .into_iter()
                    .map(|value| element(value, max_event_bytes))
                    .collect());
            }
            Ok(value @ Value::Object(_)) => {
                return Ok(vec![sized(trimmed, value, max_event_bytes)]);
            }
            Ok(Value::Null) => return Ok(Vec::new()),
            Ok(_) => {
                return Err("the body must be a JSON object (one envelope), an array of envelopes, or NDJSON".into());
            }
            Err(error) if !has_several_lines(trimmed) => {
                return Err(format!("the body is not valid JSON: {error}"));
            }
            Err(_) => {}
        }
    }
    let mut items = Vec::new();
    for line in trimmed.split(|byte| *byte == b'\n') {
        let line = line.trim_ascii();
        if line.is_empty() {
            continue;
        }
        if line.len() > max_event_bytes {
            items.push(BodyItem::Invalid {
                raw: line,
                rejection: too_large(line.len(), max_event_bytes),
            });
            continue;
        }
        match serde_json::from_slice::<Value>(line) {
            Ok(Value::Array(elements)) if elements.is_empty() => items.push(BodyItem::Invalid {
                raw: line,
                rejection: Rejection::new("empty_array", "an empty array holds no event"),
            }),
            Ok(Value::Array(elements)) => items.extend(
                elements
                    .into_iter()
                    .map(|value| element(value, max_event_bytes)),
            ),
            Ok(Value::Null) => {}
            Ok(value) => items.push(BodyItem::Event { raw: line, value }),
            Err(error) => items.push(BodyItem::Invalid {
                raw: line,
                rejection: Rejection::new("malformed_json", format!("not valid JSON: {error}")),
            }),
        }
    }
    Ok(items)
}

fn has_several_lines(body: &[u8]) -> bool {
    body.split(|byte| *byte == b'\n')
        .filter(|line| !line.trim_ascii().is_empty())
        .nth(1)
        .is_some()
}

fn sized<'a>(raw: &'a [u8], value: Value, max_event_bytes: usize) -> BodyItem<'a> {
    if raw.len() > max_event_bytes {
        BodyItem::Invalid {
            raw,
            rejection: too_large(raw.len(), max_event_bytes),
        }
    } else {
        BodyItem::Event { raw, value }
    }
}

/// An array element has no bytes of its own in the body; its size is measured re-serialised.
fn element(value: Value, max_event_bytes: usize) -> BodyItem<'static> {
    let size = serde_json::to_vec(&value).map_or(usize::MAX, |bytes| bytes.len());
    if size > max_event_bytes {
        BodyItem::Invalid {
            raw: &[],
            rejection: too_large(size, max_event_bytes),
        }
    } else {
        BodyItem::Event { raw: &[], value }
    }
}

fn too_large(size: usize, limit: usize) -> Rejection {
    Rejection::new(
        "event_too_large",
        format!("the event is {size} bytes; the limit is {limit} (stream.max_event_bytes)"),
    )
}

/// A Debezium change event, unwrapped from `{schema, payload}` when needed.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// The payload object: `before`, `after`, `source`, `op`, `ts_ms`.
    pub payload: serde_json::Map<String, Value>,
    /// True when the sender wrapped it (`schemas.enable=true`); the stored form is unwrapped.
    pub was_wrapped: bool,
}

impl Envelope {
    pub fn parse(value: Value) -> Result<Envelope, Rejection> {
        let Value::Object(mut object) = value else {
            return Err(Rejection::new(
                "not_an_envelope",
                "an event must be a JSON object (a Debezium change event)",
            ));
        };
        let mut was_wrapped = false;
        if object.contains_key("schema") && object.contains_key("payload") {
            match object.remove("payload") {
                Some(Value::Object(payload)) => {
                    object = payload;
                    was_wrapped = true;
                }
                _ => {
                    return Err(Rejection::new(
                        "not_an_envelope",
                        "`payload` of a {schema, payload} message must be an object",
                    ));
                }
            }
        }
        Ok(Envelope {
            payload: object,
            was_wrapped,
        })
    }

    /// The row or document after the change, as an object. MongoDB's connector sends it as an
    /// extended-JSON string, which is parsed here.
    pub fn after(&self) -> Result<serde_json::Map<String, Value>, Rejection> {
        match self.payload.get("after") {
            None | Some(Value::Null) => Err(Rejection::new(
                "missing_after",
                "the envelope has no `after` (deletes and tombstones carry no event)",
            )),
            Some(Value::Object(after)) => Ok(after.clone()),
            Some(Value::String(text)) => match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(after)) => Ok(after),
                Ok(_) => Err(Rejection::new(
                    "invalid_after",
                    "`after` is a string that does not hold a JSON object",
                )),
                Err(error) => Err(Rejection::new(
                    "invalid_after",
                    format!("`after` is a string that is not JSON: {error}"),
                )),
            },
            Some(_) => Err(Rejection::new(
                "invalid_after",
                "`after` must be an object or a JSON string",
            )),
        }
    }

    /// The connector (`mongodb`, `mysql`, `postgresql`) from `source.connector`.
    pub fn connector(&self) -> Option<&str> {
        self.source_field("connector")
    }

    /// The table (relational) or collection (MongoDB) the change comes from.
    pub fn table(&self) -> Option<&str> {
        self.source_field("table")
            .or_else(|| self.source_field("collection"))
    }

    fn source_field(&self, field: &str) -> Option<&str> {
        self.payload
            .get("source")
            .and_then(|source| source.get(field))
            .and_then(Value::as_str)
    }

    /// The payload, serialised: what the raw topic stores.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.payload).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(items: &[BodyItem<'_>]) -> Vec<&'static str> {
        items
            .iter()
            .map(|item| match item {
                BodyItem::Event { .. } => "event",
                BodyItem::Invalid { rejection, .. } => rejection.code,
            })
            .collect()
    }

    #[test]
    fn a_body_is_one_envelope_an_array_or_ndjson() {
        let one = br#"{"after": {"id": 1}}"#;
        assert_eq!(codes(&split_body(one, false, 1000).unwrap()), ["event"]);
        let array = br#"[{"after": {"id": 1}}, {"after": {"id": 2}}]"#;
        assert_eq!(
            codes(&split_body(array, false, 1000).unwrap()),
            ["event", "event"]
        );
        let lines = b"{\"after\": {\"id\": 1}}\n\n{\"after\": {\"id\": 2}}\n";
        assert_eq!(
            codes(&split_body(lines, false, 1000).unwrap()),
            ["event", "event"]
        );
        assert_eq!(
            codes(&split_body(lines, true, 1000).unwrap()),
            ["event", "event"]
        );
    }

    #[test]
    fn bad_lines_are_refused_one_by_one() {
        let body = b"{\"after\": {\"id\": 1}\n[]\n{\"after\": {\"id\": 2}}\n\"text\"\n";
        let items = split_body(body, false, 1000).unwrap();
        assert_eq!(
            codes(&items),
            ["malformed_json", "empty_array", "event", "event"]
        );
        let big = format!(
            "{{\"after\": \"{}\"}}\n{{\"after\": {{}}}}",
            "A".repeat(2000)
        );
        assert_eq!(
            codes(&split_body(big.as_bytes(), false, 1000).unwrap()),
            ["event_too_large", "event"]
        );
    }

    #[test]
    fn unusable_bodies_are_refused_whole() {
        for body in [&b""[..], b"  ", b"[]", b"42", b"{\"after\": "] {
            assert!(split_body(body, false, 1000).is_err(), "{body:?}");
        }
    }

    #[test]
    fn the_schema_wrapper_is_removed_and_string_afters_are_parsed() {
        let wrapped = serde_json::json!({
            "schema": {"type": "struct"},
            "payload": {"after": "{\"_id\": {\"$oid\": \"a1\"}}", "source": {"collection": "events", "connector": "mongodb"}}
        });
        let envelope = Envelope::parse(wrapped).unwrap();
        assert!(envelope.was_wrapped);
        assert_eq!(envelope.table(), Some("events"));
        assert_eq!(envelope.connector(), Some("mongodb"));
        assert_eq!(envelope.after().unwrap()["_id"]["$oid"], "a1");
        assert!(!envelope.to_bytes().windows(6).any(|w| w == b"schema"));

        let missing = Envelope::parse(serde_json::json!({"op": "d", "after": null})).unwrap();
        assert_eq!(missing.after().unwrap_err().code, "missing_after");
        let text = Envelope::parse(serde_json::json!({"after": "not json"})).unwrap();
        assert_eq!(text.after().unwrap_err().code, "invalid_after");
        assert_eq!(
            Envelope::parse(serde_json::json!([1])).unwrap_err().code,
            "not_an_envelope"
        );
    }
}
