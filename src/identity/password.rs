//! Password hashing: argon2id with OWASP's parameters (19 MiB, 2 passes, 1 lane), on the
//! blocking pool because one hash takes tens of milliseconds of CPU.
//!
//! Each hash needs 19 MiB of work memory. Allocating it per sign-in made the process grow to
//! gigabytes under load (the allocator keeps the freed blocks fragmented), so at most one hash
//! per core runs at a time and each reuses a block buffer from a small pool: memory stays at
//! cores × 19 MiB whatever the load, and queued sign-ins wait their turn instead of thrashing.

use std::sync::{Arc, Mutex};

use anyhow::Context;
use argon2::password_hash::PasswordVerifier;
use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};

use super::crypto::{constant_time_eq, fill_random};

const OUTPUT_LEN: usize = 32;

fn params() -> anyhow::Result<Params> {
    Params::new(
        Params::DEFAULT_M_COST,
        Params::DEFAULT_T_COST,
        Params::DEFAULT_P_COST,
        Some(OUTPUT_LEN),
    )
    .map_err(|error| anyhow::anyhow!("argon2 parameters: {error}"))
}

/// The hasher: a permit per core and a pool of work buffers.
pub struct Passwords {
    permits: tokio::sync::Semaphore,
    buffers: Arc<Mutex<Vec<Vec<Block>>>>,
    params: Params,
}

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passwords")
            .field("parallel", &self.permits.available_permits())
            .finish_non_exhaustive()
    }
}

impl Passwords {
    /// At most `parallel` hashes at once (use the number of cores).
    pub fn new(parallel: usize) -> anyhow::Result<Passwords> {
        Ok(Passwords {
            permits: tokio::sync::Semaphore::new(parallel.max(1)),
            buffers: Arc::new(Mutex::new(Vec::new())),
            params: params()?,
        })
    }

    /// Runs `work` on the blocking pool with a work buffer, once a permit is free.
    async fn with_buffer<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Vec<Block>) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let _permit = self
            .permits
            .acquire()
            .await
            .context("the hasher is closed")?;
        let blocks = self.params.block_count();
        let mut buffer = {
            let mut pool = self
                .buffers
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            pool.pop()
        }
        .unwrap_or_else(|| vec![Block::default(); blocks]);
        let (result, buffer) = tokio::task::spawn_blocking(move || {
            let result = work(&mut buffer);
            (result, buffer)
        })
        .await
        .context("the hashing task failed")?;
        if buffer.len() == blocks {
            let mut pool = self
                .buffers
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            pool.push(buffer);
        }
        result
    }

    /// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`).
    pub async fn hash(&self, password: String) -> anyhow::Result<String> {
        let params = self.params.clone();
        self.with_buffer(move |buffer| {
            let mut salt = [0u8; 16];
            fill_random(&mut salt)?;
            let mut out = [0u8; OUTPUT_LEN];
            Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
                .hash_password_into_with_memory(
                    password.as_bytes(),
                    &salt,
                    &mut out,
                    buffer.as_mut_slice(),
                )
                .map_err(|error| anyhow::anyhow!("argon2 hashing failed: {error}"))?;
            let encoded = PasswordHash {
                algorithm: Algorithm::Argon2id.ident(),
                version: Some(Version::V0x13.into()),
                params: ParamsString::try_from(&params)
                    .map_err(|error| anyhow::anyhow!("argon2 parameters: {error}"))?,
                salt: Some(Salt::new(&salt).map_err(|error| anyhow::anyhow!("salt: {error}"))?),
                hash: Some(Output::new(&out).map_err(|error| anyhow::anyhow!("output: {error}"))?),
            };
            Ok(encoded.to_string())
        })
        .await
    }

    /// Whether `password` matches `stored`. With no stored hash (no such user, or an SSO-only
    /// user), a dummy hash is checked anyway, so the answer takes as long as for a real user
    /// and timing does not reveal which emails have accounts.
    pub async fn verify(&self, password: String, stored: Option<String>) -> anyhow::Result<bool> {
        let params = self.params.clone();
        let known = stored.is_some();
        let stored = stored.unwrap_or_else(|| DUMMY_HASH.to_owned());
        let matches = self
            .with_buffer(move |buffer| {
                let parsed = PasswordHash::new(&stored).map_err(|error| {
                    anyhow::anyhow!("a stored password hash does not parse: {error}")
                })?;
                let ours = parsed.algorithm == Algorithm::Argon2id.ident()
                    && Params::try_from(&parsed).is_ok_and(|found| found == params);
                if !ours {
                    // A hash with other parameters (an older release): the library's own path.
                    return Ok(Argon2::default()
                        .verify_password(password.as_bytes(), &parsed)
                        .is_ok());
                }
                let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
                    anyhow::bail!("a stored password hash has no salt or output");
                };
                let mut out = vec![0u8; expected.len()];
                let hasher = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
                if hasher
                    .hash_password_into_with_memory(
                        password.as_bytes(),
                        salt.as_ref(),
                        &mut out,
                        buffer.as_mut_slice(),
                    )
                    .is_err()
                {
                    return Ok(false);
                }
                Ok(constant_time_eq(&out, expected.as_ref()))
            })
            .await?;
        Ok(known && matches)
    }
}

/// The hash of a random password nobody knows, with the production parameters.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$WsRfYRIyOBoYo1Jb58kiAydYfHk9SHKf0YXD2LrZUD4";

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let passwords = Passwords::new(2).unwrap();
        let stored = passwords.hash("Corr3ct!horse".into()).await.unwrap();
        assert!(
            stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{stored}"
        );
        assert!(
            passwords
                .verify("Corr3ct!horse".into(), Some(stored.clone()))
                .await
                .unwrap()
        );
        assert!(
            !passwords
                .verify("corr3ct!horse".into(), Some(stored.clone()))
                .await
                .unwrap()
        );
        assert!(!passwords.verify("anything".into(), None).await.unwrap());
        // The library's own encoder and verifier agree with ours.
        let parsed = PasswordHash::new(&stored).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"Corr3ct!horse", &parsed)
                .is_ok()
        );
    }

    #[tokio::test]
    async fn hashes_from_other_parameters_still_verify() {
        let passwords = Passwords::new(1).unwrap();
        let light = Params::new(8192, 1, 1, None).unwrap();
        let stored = argon2::password_hash::PasswordHasher::hash_password_with_salt(
            &Argon2::new(Algorithm::Argon2id, Version::V0x13, light),
            b"Old-pass1!",
            b"saltsaltsaltsalt",
        )
        .unwrap()
        .to_string();
        assert!(
            passwords
                .verify("Old-pass1!".into(), Some(stored.clone()))
                .await
                .unwrap()
        );
        assert!(
            !passwords
                .verify("Old-pass2!".into(), Some(stored))
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn buffers_are_reused_not_reallocated() {
        let passwords = Passwords::new(2).unwrap();
        for _ in 0..4 {
            passwords.hash("Corr3ct!horse".into()).await.unwrap();
        }
        let pooled = passwords.buffers.lock().unwrap().len();
        assert_eq!(pooled, 1, "sequential hashes share one buffer");
    }

    #[test]
    fn the_dummy_hash_parses_with_production_parameters() {
        let parsed = PasswordHash::new(DUMMY_HASH).unwrap();
        assert_eq!(Params::try_from(&parsed).unwrap(), params().unwrap());
    }
}
