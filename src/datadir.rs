//! The data directory: created with owner-only permissions and locked for the life of the process,
//! so a second `openframe serve` on the same directory fails at once instead of corrupting it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The lock file's name inside the data directory.
pub const LOCK_FILE: &str = ".lock";

/// Why the data directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error(
        "cannot create the data dir {path}: {source}; choose another with --data-dir or fix its parent's permissions"
    )]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the data dir {path} is not writable: {source}; fix its permissions or choose another with --data-dir"
    )]
    NotWritable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a directory; point --data-dir at a directory")]
    NotADirectory { path: PathBuf },
    #[error(
        "the data dir {path} is in use by another openframe process{holder}; stop it first or choose another --data-dir"
    )]
    Locked { path: PathBuf, holder: String },
}

/// Holds the data directory's lock; dropping it releases the lock.
#[derive(Debug)]
pub struct DataDirLock {
    path: PathBuf,
    /// The locked file. The OS releases the lock when it is closed, also if the process dies.
    _file: File,
}

impl DataDirLock {
    /// Creates the directory if needed (mode 0700) and takes its exclusive lock.
    pub fn acquire(path: &Path) -> Result<DataDirLock, DataDirError> {
        if path.exists() && !path.is_dir() {
            return Err(DataDirError::NotADirectory {
                path: path.to_owned(),
            });
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(|source| DataDirError::Create {
                path: path.to_owned(),
                source,
            })?;
        let lock_path = path.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|source| DataDirError::NotWritable {
                path: path.to_owned(),
                source,
            })?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = match holder.trim() {
                    "" => String::new(),
                    pid => format!(" (pid {pid})"),
                };
                return Err(DataDirError::Locked {
                    path: path.to_owned(),
                    holder,
                });
            }
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(DataDirError::NotWritable {
                    path: path.to_owned(),
                    source,
                });
            }
        }
        // Record who holds the lock, for the message the next process prints.
        let pid = std::process::id().to_string();
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(pid.as_bytes()))
            .map_err(|source| DataDirError::NotWritable {
                path: path.to_owned(),
                source,
            })?;
        Ok(DataDirLock {
            path: path.to_owned(),
            _file: file,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Who holds the lock of `path` right now, without taking it: `Some(pid text)` when held.
pub fn lock_holder(path: &Path) -> Option<String> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path.join(LOCK_FILE))
        .ok()?;
    match file.try_lock() {
        Ok(()) => None,
        Err(_) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            Some(holder.trim().to_owned())
        }
    }
}

/// True when group or others may read the directory: a warning for `doctor`.
pub fn is_shared(path: &Path) -> std::io::Result<bool> {
    Ok(std::fs::metadata(path)?.permissions().mode() & 0o077 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_is_exclusive_and_released_on_drop() {
        let dir = tempfile::TempDir::new().unwrap();
        let data = dir.path().join("data");
        let first = DataDirLock::acquire(&data).unwrap();
        assert_eq!(
            std::fs::metadata(&data).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let error = DataDirLock::acquire(&data).unwrap_err().to_string();
        assert!(
            error.contains("in use by another openframe process"),
            "{error}"
        );
        assert!(
            error.contains(&format!("pid {}", std::process::id())),
            "{error}"
        );
        assert_eq!(lock_holder(&data), Some(std::process::id().to_string()));
        drop(first);
        assert_eq!(lock_holder(&data), None);
        DataDirLock::acquire(&data).unwrap();
    }

    #[test]
    fn a_file_in_place_of_the_directory_is_refused() {
        let dir = tempfile::TempDir::new().unwrap();
        let not_a_dir = dir.path().join("data");
        std::fs::write(&not_a_dir, "x").unwrap();
        let error = DataDirLock::acquire(&not_a_dir).unwrap_err().to_string();
        assert!(error.contains("is not a directory"), "{error}");
    }
}
