//! What the agent keeps on disk, in its state dir (OpenFrame's `agent_config.json`):
//! `agent_config.json` with the machine's credential and tokens, and `outbox/` with results not
//! yet delivered. Every file is written to a temporary name, synced, and renamed over the old
//! one, with mode 0600 in a 0700 directory: a crash leaves the old file or the new one, never a
//! torn one, and no other local user reads the secret.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// The machine's credential and current tokens.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    /// The server the machine registered with; another server means registering again.
    pub server: String,
    pub machine_id: String,
    pub client_id: String,
    pub client_secret: String,
    #[serde(default)]
    pub access_token: String,
    #[serde(default)]
    pub refresh_token: String,
    /// When the access token expires (Unix ms).
    #[serde(default)]
    pub expires_at_ms: i64,
}

/// Secrets stay out of debug output and logs.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("server", &self.server)
            .field("machine_id", &self.machine_id)
            .field("client_id", &self.client_id)
            .field("expires_at_ms", &self.expires_at_ms)
            .finish_non_exhaustive()
    }
}

/// The state dir.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

const CREDENTIALS: &str = "agent_config.json";

impl StateDir {
    /// Opens (creating, mode 0700) the state dir and its outbox.
    pub fn open(root: &Path) -> anyhow::Result<StateDir> {
        for dir in [root.to_path_buf(), root.join("outbox"), root.join("work")] {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("cannot restrict {}", dir.display()))?;
        }
        Ok(StateDir {
            root: root.to_path_buf(),
        })
    }

    pub fn work_dir(&self) -> PathBuf {
        self.root.join("work")
    }

    pub fn credentials(&self) -> anyhow::Result<Option<Credentials>> {
        let path = self.root.join(CREDENTIALS);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
                format!("{} is not the agent's credential file", path.display())
            })?)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    pub fn save_credentials(&self, credentials: &Credentials) -> anyhow::Result<()> {
        write_atomically(
            &self.root.join(CREDENTIALS),
            &serde_json::to_vec_pretty(credentials)?,
        )
    }

    pub fn forget_credentials(&self) -> anyhow::Result<()> {
        match std::fs::remove_file(self.root.join(CREDENTIALS)) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Keeps a result until it is delivered.
    pub fn outbox_put(&self, execution_key: &str, entry: &OutboxEntry) -> anyhow::Result<()> {
        write_atomically(
            &self.outbox_path(execution_key),
            &serde_json::to_vec(entry)?,
        )
    }

    pub fn outbox_remove(&self, execution_key: &str) -> anyhow::Result<()> {
        match std::fs::remove_file(self.outbox_path(execution_key)) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Every undelivered result, oldest first; unreadable entries are skipped (and kept for
    /// a person to look at).
    pub fn outbox(&self) -> Vec<(String, OutboxEntry)> {
        let Ok(entries) = std::fs::read_dir(self.root.join("outbox")) else {
            return Vec::new();
        };
        let mut found: Vec<(std::time::SystemTime, String, OutboxEntry)> = entries
            .flatten()
            .filter_map(|entry| {
                let name = entry
                    .file_name()
                    .to_str()?
                    .strip_suffix(".json")?
                    .to_owned();
                let modified = entry.metadata().ok()?.modified().ok()?;
                let parsed = serde_json::from_slice(&std::fs::read(entry.path()).ok()?).ok()?;
                Some((modified, name, parsed))
            })
            .collect();
        found.sort_by_key(|entry| entry.0);
        found
            .into_iter()
            .map(|(_, name, entry)| (name, entry))
            .collect()
    }

    fn outbox_path(&self, execution_key: &str) -> PathBuf {
        let safe: String = execution_key
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.root.join("outbox").join(format!("{safe}.json"))
    }
}

/// A result waiting to be delivered: where it goes and what it says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub subject: String,
    pub payload: String,
}

/// Writes `bytes` to `path` so that a crash leaves the old or the new content, mode 0600.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let temporary = path.with_extension("tmp");
    {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)
            .with_context(|| format!("cannot write {}", temporary.display()))?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&temporary, path)
        .with_context(|| format!("cannot replace {}", path.display()))?;
    if let Some(parent) = path.parent()
        && let Ok(dir) = std::fs::File::open(parent)
    {
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_private_and_survive_a_rewrite() {
        let dir = tempfile::TempDir::new().unwrap();
        let state = StateDir::open(&dir.path().join("agent")).unwrap();
        assert_eq!(state.credentials().unwrap(), None);
        let credentials = Credentials {
            server: "https://appliance.example:8443".into(),
            machine_id: "m-1".into(),
            client_id: "agent_m-1".into(),
            client_secret: "s3cret".into(),
            access_token: "a".into(),
            refresh_token: "r".into(),
            expires_at_ms: 1,
        };
        state.save_credentials(&credentials).unwrap();
        state.save_credentials(&credentials).unwrap();
        assert_eq!(state.credentials().unwrap(), Some(credentials.clone()));
        let mode = std::fs::metadata(dir.path().join("agent").join(CREDENTIALS))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!format!("{credentials:?}").contains("s3cret"));
        let entry = OutboxEntry {
            subject: "machine.m-1.script-execution.result".into(),
            payload: "{}".into(),
        };
        state.outbox_put("e-1:m-1", &entry).unwrap();
        assert_eq!(state.outbox(), vec![("e-1_m-1".to_owned(), entry)]);
        state.outbox_remove("e-1:m-1").unwrap();
        assert!(state.outbox().is_empty());
    }
}
