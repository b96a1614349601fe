//! Password hashing: argon2id with OWASP's parameters (19 MiB, 2 passes, 1 lane), on the
//! blocking pool because one hash takes tens of milliseconds of CPU.

use anyhow::Context;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};

use super::crypto::fill_random;

fn hasher() -> anyhow::Result<Argon2<'static>> {
    let params = Params::new(
        Params::DEFAULT_M_COST,
        Params::DEFAULT_T_COST,
        Params::DEFAULT_P_COST,
        None,
    )
    .map_err(|error| anyhow::anyhow!("argon2 parameters: {error}"))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`).
pub async fn hash(password: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || {
        let mut salt = [0u8; 16];
        fill_random(&mut salt)?;
        let hashed = hasher()?
            .hash_password_with_salt(password.as_bytes(), &salt)
            .map_err(|error| anyhow::anyhow!("argon2 hashing failed: {error}"))?;
        Ok(hashed.to_string())
    })
    .await
    .context("the hashing task failed")?
}

/// Whether `password` matches `stored`. With no stored hash (no such user, or an SSO-only user),
/// a dummy hash is checked anyway, so the answer takes as long as for a real user and timing
/// does not reveal which emails have accounts.
pub async fn verify(password: String, stored: Option<String>) -> anyhow::Result<bool> {
    tokio::task::spawn_blocking(move || {
        let hasher = hasher()?;
        match stored {
            Some(stored) => Ok(hasher
                .verify_password(password.as_bytes(), stored.as_str())
                .is_ok()),
            None => {
                let _ = hasher.verify_password(password.as_bytes(), DUMMY_HASH);
                Ok(false)
            }
        }
    })
    .await
    .context("the verification task failed")?
}

/// The hash of a random password nobody knows, with the production parameters.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$WsRfYRIyOBoYo1Jb58kiAydYfHk9SHKf0YXD2LrZUD4";

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let stored = hash("Corr3ct!horse".into()).await.unwrap();
        assert!(
            stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{stored}"
        );
        assert!(
            verify("Corr3ct!horse".into(), Some(stored.clone()))
                .await
                .unwrap()
        );
        assert!(!verify("corr3ct!horse".into(), Some(stored)).await.unwrap());
        assert!(!verify("anything".into(), None).await.unwrap());
    }

    #[test]
    fn the_dummy_hash_parses_with_production_parameters() {
        let parsed = argon2::password_hash::phc::PasswordHash::new(DUMMY_HASH).unwrap();
        assert_eq!(parsed.algorithm.as_str(), "argon2id");
    }
}
