//! Recognising our files by their first bytes before an engine opens (and possibly rewrites) them.

use std::io::Read;
use std::path::Path;

use crate::error::OpenError;

/// Up to `len` leading bytes of `path`, or `None` when the file does not exist.
pub(crate) fn leading_bytes(path: &Path, len: usize) -> Result<Option<Vec<u8>>, OpenError> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(OpenError::engine(path, error)),
    };
    let mut bytes = Vec::with_capacity(len);
    file.take(len as u64)
        .read_to_end(&mut bytes)
        .map_err(|error| OpenError::engine(path, error))?;
    Ok(Some(bytes))
}

/// Refuses a file that exists, is not empty, and does not start with `magic`. An empty file is
/// what a crash during the very first create leaves behind, so the engine may initialise it.
pub(crate) fn refuse_unless_starts_with(
    path: &Path,
    magic: &[u8],
    what: &'static str,
    expected: &str,
) -> Result<(), OpenError> {
    match leading_bytes(path, magic.len())? {
        None => Ok(()),
        Some(bytes) if bytes.is_empty() || bytes == magic => Ok(()),
        Some(_) => Err(OpenError::Foreign {
            path: path.to_owned(),
            what,
            detail: format!("it does not start with {expected}"),
        }),
    }
}
