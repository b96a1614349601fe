//! Compact JWS with exactly one algorithm, RS256. Verification is pinned: the header must say
//! `RS256` and name a key (`kid`) the caller supplies; `none`, HMAC and every other algorithm are
//! refused before any key is touched, so algorithm-confusion attacks have nothing to work with.
//! Claims are checked by the caller ([`super::tokens`]), which knows issuer and audience.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256, RsaKeyPair};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::crypto::{b64url, b64url_decode};

/// The longest token we parse: far above any token we issue, small enough to bound the work an
/// attacker can make us do.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("the token is not a compact JWS (three base64url parts)")]
    Malformed,
    #[error("the token is larger than {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
    #[error("the token's algorithm {0:?} is not accepted; only RS256 is")]
    Algorithm(String),
    #[error("the token names no key (kid) or a key this issuer does not publish")]
    UnknownKey,
    #[error("the token's signature does not verify")]
    Signature,
    #[error("the token's claims are malformed: {0}")]
    Claims(String),
}

#[derive(Debug, serde::Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
    /// `crit` names extensions the verifier must understand; we understand none (RFC 7515 §4.1.11).
    crit: Option<serde_json::Value>,
}

/// An RSA public key as published in a JWKS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RsaPublic {
    /// Modulus, big-endian without leading zeros.
    pub n: Vec<u8>,
    /// Exponent, big-endian without leading zeros.
    pub e: Vec<u8>,
}

/// Signs `claims` as an RS256 JWS with `kid` in the header.
pub fn sign<C: Serialize>(key: &RsaKeyPair, kid: &str, claims: &C) -> anyhow::Result<String> {
    let header = serde_json::json!({ "alg": "RS256", "typ": "JWT", "kid": kid });
    let mut token = b64url(&serde_json::to_vec(&header)?);
    token.push('.');
    token.push_str(&b64url(&serde_json::to_vec(claims)?));
    let mut signature = vec![0u8; key.public_modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        token.as_bytes(),
        &mut signature,
    )
    .map_err(|_| anyhow::anyhow!("RSA signing failed"))?;
    token.push('.');
    token.push_str(&b64url(&signature));
    Ok(token)
}

/// The `kid` a token claims, without verifying anything: for choosing the key to verify with.
pub fn peek_kid(token: &str) -> Result<String, JwtError> {
    split(token)?.header.kid.ok_or(JwtError::UnknownKey)
}

/// Verifies the signature with the key `find_key` returns for the token's `kid`, then parses the
/// claims. Does not check any claim.
pub fn verify<C: DeserializeOwned>(
    token: &str,
    find_key: impl FnOnce(&str) -> Option<RsaPublic>,
) -> Result<C, JwtError> {
    let Parts {
        header,
        signing_input,
        payload,
        signature,
    } = split(token)?;
    if header.alg != "RS256" {
        return Err(JwtError::Algorithm(header.alg.chars().take(20).collect()));
    }
    if header.crit.is_some() {
        return Err(JwtError::Malformed);
    }
    let kid = header.kid.ok_or(JwtError::UnknownKey)?;
    let key = find_key(&kid).ok_or(JwtError::UnknownKey)?;
    let signature = b64url_decode(signature).ok_or(JwtError::Malformed)?;
    let components = aws_lc_rs::signature::RsaPublicKeyComponents {
        n: key.n.as_slice(),
        e: key.e.as_slice(),
    };
    components
        .verify(
            &RSA_PKCS1_2048_8192_SHA256,
            signing_input.as_bytes(),
            &signature,
        )
        .map_err(|_| JwtError::Signature)?;
    let payload = b64url_decode(payload).ok_or(JwtError::Malformed)?;
    serde_json::from_slice(&payload).map_err(|error| JwtError::Claims(error.to_string()))
}

/// A token cut into its parts: the parsed header, the signing input, and the three segments.
struct Parts<'a> {
    header: Header,
    signing_input: &'a str,
    payload: &'a str,
    signature: &'a str,
}

fn split(token: &str) -> Result<Parts<'_>, JwtError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(JwtError::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let signing_input = &token[..header.len() + 1 + payload.len()];
    let header_bytes = b64url_decode(header).ok_or(JwtError::Malformed)?;
    let parsed: Header = serde_json::from_slice(&header_bytes).map_err(|_| JwtError::Malformed)?;
    Ok(Parts {
        header: parsed,
        signing_input,
        payload,
        signature,
    })
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::rsa::KeySize;
    use aws_lc_rs::signature::KeyPair;

    use super::*;

    fn key() -> (RsaKeyPair, RsaPublic) {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
        let public = pair.public_key();
        let public = RsaPublic {
            n: public.modulus().big_endian_without_leading_zero().to_vec(),
            e: public.exponent().big_endian_without_leading_zero().to_vec(),
        };
        (pair, public)
    }

    fn forge(header: serde_json::Value, claims: serde_json::Value, signature: &[u8]) -> String {
        format!(
            "{}.{}.{}",
            b64url(&serde_json::to_vec(&header).unwrap()),
            b64url(&serde_json::to_vec(&claims).unwrap()),
            b64url(signature)
        )
    }

    #[test]
    fn a_signed_token_verifies_with_its_key_and_only_its_key() {
        let (pair, public) = key();
        let (_, other) = key();
        let token = sign(&pair, "k1", &serde_json::json!({"sub": "a"})).unwrap();
        let claims: serde_json::Value =
            verify(&token, |kid| (kid == "k1").then(|| public.clone())).unwrap();
        assert_eq!(claims["sub"], "a");
        assert_eq!(
            verify::<serde_json::Value>(&token, |_| Some(other.clone())),
            Err(JwtError::Signature)
        );
        assert_eq!(
            verify::<serde_json::Value>(&token, |_| None),
            Err(JwtError::UnknownKey)
        );
    }

    #[test]
    fn every_algorithm_but_rs256_is_refused_before_any_key_lookup() {
        for alg in ["none", "None", "HS256", "RS384", "PS256", "ES256", ""] {
            let token = forge(
                serde_json::json!({"alg": alg, "kid": "k1"}),
                serde_json::json!({"sub": "a"}),
                b"",
            );
            let result = verify::<serde_json::Value>(&token, |_| panic!("no key may be looked up"));
            assert_eq!(result, Err(JwtError::Algorithm(alg.to_owned())), "{alg}");
        }
    }

    #[test]
    fn a_changed_payload_breaks_the_signature() {
        let (pair, public) = key();
        let token = sign(&pair, "k1", &serde_json::json!({"sub": "a"})).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let changed = format!(
            "{}.{}.{}",
            parts[0],
            b64url(br#"{"sub":"admin"}"#),
            parts[2]
        );
        assert_eq!(
            verify::<serde_json::Value>(&changed, |_| Some(public.clone())),
            Err(JwtError::Signature)
        );
    }

    #[test]
    fn malformed_tokens_are_refused() {
        for token in [
            "",
            "a",
            "a.b",
            "a.b.c.d",
            "!!.b.c",
            &"a".repeat(MAX_TOKEN_BYTES + 1),
        ] {
            assert!(
                verify::<serde_json::Value>(token, |_| None).is_err(),
                "{token:.20}"
            );
        }
        let critical = forge(
            serde_json::json!({"alg": "RS256", "kid": "k1", "crit": ["exp"]}),
            serde_json::json!({}),
            b"x",
        );
        assert_eq!(
            verify::<serde_json::Value>(&critical, |_| None),
            Err(JwtError::Malformed)
        );
    }
}
