//! The on-disk encoding of one log record (the value stored under its offset).
//!
//! ```text
//! u8  format (1)
//! i64 appended_at, big-endian
//! u32 key length, big-endian (u32::MAX: no key), then the key
//! u16 header count; each header: u16 name length, name (UTF-8), u32 value length, value
//! the rest: the record's value
//! ```
//! Compact and stable; a new layout gets a new format byte, and readers keep decoding the old one.

use crate::log::NewRecord;
use crate::model::UnixMillis;

const FORMAT: u8 = 1;
const NO_KEY: u32 = u32::MAX;

pub(super) fn encode(record: &NewRecord, appended_at: UnixMillis) -> Vec<u8> {
    let mut out = Vec::with_capacity(record.encoded_len() + 16 + record.headers.len() * 6);
    out.push(FORMAT);
    out.extend_from_slice(&appended_at.to_be_bytes());
    match &record.key {
        Some(key) => {
            // Bounded by MAX_RECORD_BYTES, checked before encoding, so the casts cannot truncate.
            out.extend_from_slice(&(key.len() as u32).to_be_bytes());
            out.extend_from_slice(key);
        }
        None => out.extend_from_slice(&NO_KEY.to_be_bytes()),
    }
    out.extend_from_slice(&(record.headers.len() as u16).to_be_bytes());
    for (name, value) in &record.headers {
        out.extend_from_slice(&(name.len() as u16).to_be_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value);
    }
    out.extend_from_slice(&record.value);
    out
}

/// Why stored bytes do not decode: the file was damaged or written by something else.
#[derive(Debug, thiserror::Error)]
#[error("corrupt log record: {0}")]
pub(super) struct Corrupt(&'static str);

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Corrupt> {
        if self.0.len() < n {
            return Err(Corrupt("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Corrupt> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
}

/// Only the append time, for retention, without copying the payload.
pub(super) fn appended_at(bytes: &[u8]) -> Result<UnixMillis, Corrupt> {
    let mut reader = Reader(bytes);
    if reader.array::<1>()?[0] != FORMAT {
        return Err(Corrupt("unknown format byte"));
    }
    Ok(i64::from_be_bytes(reader.array()?))
}

pub(super) fn decode(bytes: &[u8]) -> Result<(NewRecord, UnixMillis), Corrupt> {
    let mut reader = Reader(bytes);
    if reader.array::<1>()?[0] != FORMAT {
        return Err(Corrupt("unknown format byte"));
    }
    let appended_at = i64::from_be_bytes(reader.array()?);
    let key_len = u32::from_be_bytes(reader.array()?);
    let key = match key_len {
        NO_KEY => None,
        len => Some(reader.take(len as usize)?.to_vec()),
    };
    let header_count = u16::from_be_bytes(reader.array()?);
    let mut headers = Vec::with_capacity(usize::from(header_count));
    for _ in 0..header_count {
        let name_len = u16::from_be_bytes(reader.array()?);
        let name = std::str::from_utf8(reader.take(usize::from(name_len))?)
            .map_err(|_| Corrupt("header name is not UTF-8"))?
            .to_owned();
        let value_len = u32::from_be_bytes(reader.array()?);
        headers.push((name, reader.take(value_len as usize)?.to_vec()));
    }
    let value = reader.0.to_vec();
    Ok((
        NewRecord {
            key,
            headers,
            value,
        },
        appended_at,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_with_and_without_keys_and_headers() {
        let cases = [
            NewRecord::default(),
            NewRecord {
                key: Some(b"machine-1".to_vec()),
                headers: vec![
                    ("message-type".into(), b"MESHCENTRAL_EVENT".to_vec()),
                    ("empty".into(), Vec::new()),
                ],
                value: b"{\"after\":\"{}\"}".to_vec(),
            },
            NewRecord {
                key: Some(Vec::new()),
                headers: Vec::new(),
                value: vec![0, 255, 7],
            },
        ];
        for (index, record) in cases.into_iter().enumerate() {
            let at = 1_763_629_200_000 + index as i64;
            let bytes = encode(&record, at);
            assert_eq!(appended_at(&bytes).unwrap(), at);
            assert_eq!(decode(&bytes).unwrap(), (record, at));
        }
    }

    #[test]
    fn damaged_bytes_are_reported_not_misread() {
        let record = NewRecord {
            key: Some(b"k".to_vec()),
            headers: vec![("h".into(), b"v".to_vec())],
            value: b"value".to_vec(),
        };
        let bytes = encode(&record, 1);
        for cut in 0..14 {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut wrong_format = bytes.clone();
        wrong_format[0] = 9;
        assert!(decode(&wrong_format).is_err());
        assert!(appended_at(&wrong_format).is_err());
    }
}
