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
        // Absolute, so commands run in its subdirectories find their files.
        let root = &std::path::absolute(root)
            .with_context(|| format!("{} is not a usable path", root.display()))?;
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

const SHARED_SECRET: &str = "shared_secret";
const SHARED_TOKEN: &str = "shared_token.enc";

impl StateDir {
    /// The root of the state dir.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Deletes what the agent keeps (and the dir itself when nothing else is in it).
    pub fn remove(&self) -> anyhow::Result<()> {
        for dir in ["outbox", "work", "tools"] {
            match std::fs::remove_dir_all(self.root.join(dir)) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(error).with_context(|| format!("cannot remove {dir}")),
            }
        }
        for file in [CREDENTIALS, SHARED_SECRET, SHARED_TOKEN] {
            match std::fs::remove_file(self.root.join(file)) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(error).with_context(|| format!("cannot remove {file}")),
            }
        }
        let _ = std::fs::remove_dir(&self.root);
        Ok(())
    }

    /// The key tool agents in "OpenFrame mode" are given (`${client.openframeSecret}`, hex) to
    /// read the agent's current token from [`Self::shared_token_path`]; made on first use.
    pub fn shared_secret(&self) -> anyhow::Result<String> {
        let path = self.root.join(SHARED_SECRET);
        match std::fs::read_to_string(&path) {
            Ok(hex) if hex.trim().len() == 64 => return Ok(hex.trim().to_owned()),
            Ok(_) => anyhow::bail!(
                "{} is damaged: delete it and reinstall the tools",
                path.display()
            ),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(error).with_context(|| format!("cannot read {}", path.display()));
            }
        }
        let mut key = [0u8; 32];
        aws_lc_rs::rand::fill(&mut key).map_err(|_| anyhow::anyhow!("no randomness for a key"))?;
        let hex: String = key.iter().map(|byte| format!("{byte:02x}")).collect();
        write_atomically(&path, hex.as_bytes())?;
        Ok(hex)
    }

    /// Where tool agents read the token (`${client.openframeTokenPath}`).
    pub fn shared_token_path(&self) -> PathBuf {
        self.root.join(SHARED_TOKEN)
    }

    /// Writes the current access token for tool agents, AES-256-GCM under the shared secret:
    /// a 12-byte nonce, then the sealed token. Only once tools use it (the secret exists).
    pub fn share_token(&self, token: &str) -> anyhow::Result<()> {
        if !self.root.join(SHARED_SECRET).exists() {
            return Ok(());
        }
        let hex = self.shared_secret()?;
        let key: Vec<u8> = (0..hex.len())
            .step_by(2)
            .filter_map(|at| u8::from_str_radix(hex.get(at..at + 2)?, 16).ok())
            .collect();
        let sealing = aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_256_GCM, &key)
            .map_err(|_| anyhow::anyhow!("the shared secret is not a 256-bit key"))?;
        let sealing = aws_lc_rs::aead::LessSafeKey::new(sealing);
        let mut nonce = [0u8; 12];
        aws_lc_rs::rand::fill(&mut nonce)
            .map_err(|_| anyhow::anyhow!("no randomness for a nonce"))?;
        let mut sealed = token.as_bytes().to_vec();
        sealing
            .seal_in_place_append_tag(
                aws_lc_rs::aead::Nonce::assume_unique_for_key(nonce),
                aws_lc_rs::aead::Aad::empty(),
                &mut sealed,
            )
            .map_err(|_| anyhow::anyhow!("sealing the shared token failed"))?;
        let mut file = nonce.to_vec();
        file.extend_from_slice(&sealed);
        write_atomically(&self.shared_token_path(), &file)
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
