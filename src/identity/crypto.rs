//! The identity module's cryptographic primitives, all from aws-lc-rs: the data-dir master key,
//! sealing secrets at rest (AES-256-GCM), random tokens, digests and MACs.
//!
//! Secrets a client presents (authorization codes, refresh tokens, client secrets, session ids)
//! are 256-bit random values, so they are stored as SHA-256 digests: a stolen database yields
//! nothing that can be replayed, and a lookup costs one hash instead of a password hash.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Where the master key lives, relative to the data dir.
pub const MASTER_KEY_FILE: &str = "keys/master.key";
const MASTER_KEY_LEN: usize = 32;

/// The data dir's master key: it seals the tenants' signing keys and keys the MACs of cookies.
/// Losing it loses the signing keys (tokens are then re-issued under new keys), not user data.
pub struct MasterKey {
    sealing: LessSafeKey,
    mac_root: hmac::Key,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// Reads `<data_dir>/keys/master.key`, creating it (0600, in a 0700 directory) on first use.
    /// Two processes starting together agree on one key: the file appears atomically, by link.
    pub fn load_or_create(data_dir: &Path) -> anyhow::Result<MasterKey> {
        let path = data_dir.join(MASTER_KEY_FILE);
        let dir = path.parent().unwrap_or(data_dir).to_owned();
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot restrict {}", dir.display()))?;
        if !path.exists() {
            create_key_file(&path, &dir)?;
        }
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            anyhow::bail!(
                "{} is readable by others (mode {mode:o}); run `chmod 600` on it",
                path.display()
            );
        }
        let key: [u8; MASTER_KEY_LEN] = bytes.as_slice().try_into().map_err(|_| {
            anyhow::anyhow!(
                "{} holds {} bytes, not {MASTER_KEY_LEN}: it is damaged; restore it from a backup",
                path.display(),
                bytes.len()
            )
        })?;
        Self::from_bytes(&key)
    }

    fn from_bytes(key: &[u8; MASTER_KEY_LEN]) -> anyhow::Result<MasterKey> {
        // Separate keys per purpose, derived so that no two purposes ever share a key.
        let root = hmac::Key::new(hmac::HMAC_SHA256, key);
        let sealing_bytes = hmac::sign(&root, b"openframe/seal/v1");
        let mac_bytes = hmac::sign(&root, b"openframe/mac/v1");
        let sealing = UnboundKey::new(&AES_256_GCM, sealing_bytes.as_ref())
            .map_err(|_| anyhow::anyhow!("cannot derive the sealing key"))?;
        Ok(MasterKey {
            sealing: LessSafeKey::new(sealing),
            mac_root: hmac::Key::new(hmac::HMAC_SHA256, mac_bytes.as_ref()),
        })
    }

    /// Encrypts `plaintext`, bound to `context` (e.g. the tenant and key id) so a sealed value
    /// copied into another record does not open. Output: nonce || ciphertext || tag.
    pub fn seal(&self, context: &[u8], plaintext: &[u8]) -> anyhow::Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce)?;
        let mut sealed = plaintext.to_vec();
        self.sealing
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context),
                &mut sealed,
            )
            .map_err(|_| anyhow::anyhow!("sealing failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    pub fn open(&self, context: &[u8], sealed: &[u8]) -> anyhow::Result<Vec<u8>> {
        if sealed.len() < NONCE_LEN {
            anyhow::bail!("a sealed value is truncated");
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| anyhow::anyhow!("a sealed value has a bad nonce"))?;
        let mut buffer = ciphertext.to_vec();
        let plaintext = self
            .sealing
            .open_in_place(nonce, Aad::from(context), &mut buffer)
            .map_err(|_| {
                anyhow::anyhow!(
                    "a sealed value does not open with this data dir's master key (wrong key file, or the record was altered)"
                )
            })?;
        Ok(plaintext.to_vec())
    }

    /// A MAC key for one purpose (`csrf`, `oauth-state`, ...).
    pub fn mac_key(&self, purpose: &str) -> hmac::Key {
        let derived = hmac::sign(&self.mac_root, purpose.as_bytes());
        hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref())
    }
}

fn create_key_file(path: &Path, dir: &Path) -> anyhow::Result<()> {
    let mut key = [0u8; MASTER_KEY_LEN];
    fill_random(&mut key)?;
    let temporary: PathBuf = dir.join(format!(".master.key.{}", std::process::id()));
    {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)
            .with_context(|| format!("cannot create {}", temporary.display()))?;
        file.write_all(&key)?;
        file.sync_all()?;
    }
    // A hard link fails if the name exists: whoever links first wins, and the loser reads the
    // winner's key. Readers never see a half-written file.
    let linked = std::fs::hard_link(&temporary, path);
    let _ = std::fs::remove_file(&temporary);
    match linked {
        Ok(()) => {
            std::fs::File::open(dir)?.sync_all()?;
            Ok(())
        }
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(error).with_context(|| format!("cannot create {}", path.display())),
    }
}

pub fn fill_random(buffer: &mut [u8]) -> anyhow::Result<()> {
    SystemRandom::new()
        .fill(buffer)
        .map_err(|_| anyhow::anyhow!("the system random generator failed"))
}

/// A fresh 256-bit secret, base64url without padding (43 characters).
pub fn random_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    fill_random(&mut bytes)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// A random UUID (version 4), for record ids.
pub fn random_uuid() -> anyhow::Result<String> {
    let mut b = [0u8; 16];
    fill_random(&mut b)?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex = hex(&b);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

/// SHA-256 as lowercase hex: how presented secrets are stored and looked up.
pub fn sha256_hex(input: &[u8]) -> String {
    hex(digest(&SHA256, input).as_ref())
}

pub fn sha256(input: &[u8]) -> Vec<u8> {
    digest(&SHA256, input).as_ref().to_vec()
}

/// Compares two secrets without revealing, through timing, where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

/// `value.mac`, where the MAC covers the value: for cookies the server must be able to trust.
pub fn sign_value(key: &hmac::Key, value: &str) -> String {
    let tag = hmac::sign(key, value.as_bytes());
    format!("{value}.{}", b64url(tag.as_ref()))
}

/// The value of a `sign_value` output whose MAC verifies, or `None`.
pub fn verify_signed_value<'a>(key: &hmac::Key, signed: &'a str) -> Option<&'a str> {
    let (value, tag) = signed.rsplit_once('.')?;
    let tag = b64url_decode(tag)?;
    hmac::verify(key, value.as_bytes(), &tag).ok()?;
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_the_same_context() {
        let dir = tempfile::tempdir().unwrap();
        let key = MasterKey::load_or_create(dir.path()).unwrap();
        let sealed = key.seal(b"tenant-a/kid-1", b"secret").unwrap();
        assert_eq!(key.open(b"tenant-a/kid-1", &sealed).unwrap(), b"secret");
        assert!(key.open(b"tenant-b/kid-1", &sealed).is_err());
        let mut altered = sealed.clone();
        let last = altered.len() - 1;
        altered[last] ^= 1;
        assert!(key.open(b"tenant-a/kid-1", &altered).is_err());
    }

    #[test]
    fn the_master_key_file_is_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let first = MasterKey::load_or_create(dir.path()).unwrap();
        let sealed = first.seal(b"c", b"v").unwrap();
        let second = MasterKey::load_or_create(dir.path()).unwrap();
        assert_eq!(second.open(b"c", &sealed).unwrap(), b"v");
        let file = dir.path().join(MASTER_KEY_FILE);
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let refused = MasterKey::load_or_create(dir.path()).unwrap_err();
        assert!(refused.to_string().contains("chmod 600"), "{refused}");
    }

    #[test]
    fn signed_values_reject_a_changed_value_or_tag() {
        let dir = tempfile::tempdir().unwrap();
        let key = MasterKey::load_or_create(dir.path())
            .unwrap()
            .mac_key("test");
        let signed = sign_value(&key, "hello");
        assert_eq!(verify_signed_value(&key, &signed), Some("hello"));
        assert_eq!(
            verify_signed_value(&key, &signed.replacen("hello", "hellp", 1)),
            None
        );
        assert_eq!(verify_signed_value(&key, "hello"), None);
    }

    #[test]
    fn uuids_are_version_4() {
        let id = random_uuid().unwrap();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert_ne!(id, random_uuid().unwrap());
    }
}
