//! Pure OAuth rules, unit-tested here: PKCE, redirect URI matching, scopes, parameter sizes and
//! where a sign-in may send the browser next.

use super::crypto::{b64url, sha256};

/// The scopes a tenant's clients may ask for.
pub const SUPPORTED_SCOPES: &[&str] = &["openid", "profile", "email", "offline_access"];

/// Any single OAuth parameter longer than this is refused: real values are far shorter, and the
/// limit keeps attacker-sized strings out of stores, logs and tokens.
pub const MAX_PARAMETER_CHARS: usize = 2048;

/// RFC 7636 §4.1: a verifier is 43 to 128 unreserved characters.
pub fn is_valid_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~'))
}

/// An S256 challenge is the base64url SHA-256 of a verifier: exactly 43 characters.
pub fn is_valid_s256_challenge(challenge: &str) -> bool {
    challenge.len() == 43
        && challenge
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_'))
}

pub fn s256_challenge(verifier: &str) -> String {
    b64url(&sha256(verifier.as_bytes()))
}

pub fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    is_valid_verifier(verifier)
        && super::crypto::constant_time_eq(
            s256_challenge(verifier).as_bytes(),
            challenge.as_bytes(),
        )
}

/// Redirect URIs match by simple string comparison, as OAuth 2.1 and RFC 9700 require: no
/// prefixes, no wildcards, no normalisation an attacker could exploit.
pub fn redirect_uri_registered(registered: &[String], requested: &str) -> bool {
    registered.iter().any(|uri| uri == requested)
}

/// Whether a URI may be registered as a redirect target: absolute, no fragment, and https
/// except for loopback (RFC 8252 native apps).
pub fn check_redirect_uri(uri: &str) -> Result<(), String> {
    let parsed = url::Url::parse(uri).map_err(|error| format!("{uri:?} is not a URL: {error}"))?;
    if parsed.fragment().is_some() {
        return Err(format!("{uri:?} must not have a fragment"));
    }
    let loopback = matches!(parsed.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(format!(
            "{uri:?} must use https (http is allowed only for localhost)"
        )),
    }
}

/// Parses a space-separated scope and checks every entry is supported and allowed.
pub fn parse_scope(requested: &str, allowed: &[String]) -> Result<Vec<String>, String> {
    let mut scopes: Vec<String> = Vec::new();
    for scope in requested.split(' ').filter(|scope| !scope.is_empty()) {
        if !SUPPORTED_SCOPES.contains(&scope) || !allowed.iter().any(|a| a == scope) {
            return Err(format!("scope {scope:?} is not allowed for this client"));
        }
        if !scopes.iter().any(|known| known == scope) {
            scopes.push(scope.to_owned());
        }
    }
    Ok(scopes)
}

/// Where a finished sign-in may continue: only this tenant's own authorize endpoint, as a
/// path. Anything else (another host, `//evil`, `/\evil`, another tenant) is refused, so the
/// login page cannot be turned into an open redirector.
pub fn is_safe_continuation(tenant_prefix: &str, target: &str) -> bool {
    let authorize = format!("{tenant_prefix}/oauth2/authorize?");
    target.starts_with(&authorize)
        && !target.contains(['\\', '\r', '\n', '#'])
        && !target.contains("//")
}

/// Appends query parameters to a redirect URI that may already have a query.
pub fn with_query(base: &str, parameters: &[(&str, &str)]) -> Result<String, String> {
    let mut url = url::Url::parse(base).map_err(|error| error.to_string())?;
    {
        let mut query = url.query_pairs_mut();
        for (name, value) in parameters {
            query.append_pair(name, value);
        }
    }
    Ok(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_follows_rfc_7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert_eq!(s256_challenge(verifier), challenge);
        assert!(pkce_matches(verifier, challenge));
        assert!(!pkce_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXK",
            challenge
        ));
        assert!(!pkce_matches("short", &s256_challenge("short")));
        assert!(is_valid_s256_challenge(challenge));
        assert!(!is_valid_s256_challenge("plain-text-challenge"));
        assert!(!is_valid_verifier(&"a".repeat(129)));
    }

    #[test]
    fn redirect_uris_match_exactly() {
        let registered = vec!["https://rp.example.com/cb".to_owned()];
        for requested in [
            "https://rp.example.com/cb/",
            "https://rp.example.com/cb?x=1",
            "https://rp.example.com/CB",
            "https://rp.example.com.evil.com/cb",
            "https://rp.example.com/cb#frag",
            "http://rp.example.com/cb",
        ] {
            assert!(
                !redirect_uri_registered(&registered, requested),
                "{requested}"
            );
        }
        assert!(redirect_uri_registered(
            &registered,
            "https://rp.example.com/cb"
        ));
    }

    #[test]
    fn registrable_redirect_uris_are_https_or_loopback() {
        assert!(check_redirect_uri("https://rp.example.com/cb").is_ok());
        assert!(check_redirect_uri("http://localhost:8080/cb").is_ok());
        assert!(check_redirect_uri("http://127.0.0.1/cb").is_ok());
        assert!(check_redirect_uri("http://rp.example.com/cb").is_err());
        assert!(check_redirect_uri("https://rp.example.com/cb#x").is_err());
        assert!(check_redirect_uri("javascript:alert(1)").is_err());
        assert!(check_redirect_uri("/relative").is_err());
    }

    #[test]
    fn scopes_are_checked_and_deduplicated() {
        let allowed: Vec<String> = ["openid", "email"].map(String::from).to_vec();
        assert_eq!(
            parse_scope("openid email openid", &allowed).unwrap(),
            ["openid", "email"]
        );
        assert!(parse_scope("openid profile", &allowed).is_err());
        assert!(parse_scope("admin", &allowed).is_err());
        assert!(parse_scope("", &allowed).unwrap().is_empty());
    }

    #[test]
    fn sign_in_continues_only_to_this_tenants_authorize_endpoint() {
        let prefix = "/sas/acme";
        assert!(is_safe_continuation(
            prefix,
            "/sas/acme/oauth2/authorize?client_id=x"
        ));
        for target in [
            "https://evil.example/sas/acme/oauth2/authorize?",
            "//evil.example/",
            "/sas/other/oauth2/authorize?client_id=x",
            "/sas/acme/oauth2/authorize?x=//evil",
            "/sas/acme/oauth2/authorize?x=\\evil",
            "/sas/acme/login",
            "",
        ] {
            assert!(!is_safe_continuation(prefix, target), "{target}");
        }
    }

    #[test]
    fn query_parameters_are_appended_and_encoded() {
        assert_eq!(
            with_query(
                "https://rp.example.com/cb?a=1",
                &[("code", "x y"), ("state", "s&t")]
            )
            .unwrap(),
            "https://rp.example.com/cb?a=1&code=x+y&state=s%26t"
        );
    }
}
