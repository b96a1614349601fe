//! Pure types and rules, no IO: validated values and role logic. Parsing happens once, at the
//! edge; past it, an `Email` is known to be well formed and lower-cased.

use std::fmt;

/// Why a value was refused, phrased so the caller knows what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct Invalid {
    pub field: &'static str,
    pub problem: String,
}

impl Invalid {
    pub fn new(field: &'static str, problem: impl Into<String>) -> Self {
        Self {
            field,
            problem: problem.into(),
        }
    }
}

/// OpenFrame's tag rule: at most 64 characters of `^[a-zA-Z0-9][a-zA-Z0-9_-]*$`.
pub fn check_tag_part(value: &str, field: &'static str) -> Result<(), Invalid> {
    let mut chars = value.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if !first_ok
        || value.len() > 64
        || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(Invalid::new(
            field,
            format!(
                "{value:?} must be 1 to 64 letters, digits, '_' or '-', starting with a letter or digit"
            ),
        ));
    }
    Ok(())
}

/// An email address, trimmed and lower-cased (OpenFrame stores them lower-cased too).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Email(String);

impl Email {
    pub fn parse(value: &str) -> Result<Email, Invalid> {
        let value = value.trim().to_lowercase();
        let refuse = |problem: &str| Err(Invalid::new("email", problem.to_owned()));
        if value.is_empty() || value.len() > 254 {
            return refuse("must be 1 to 254 characters");
        }
        if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return refuse("must not contain spaces or control characters");
        }
        let Some((local, domain)) = value.rsplit_once('@') else {
            return refuse("must look like name@example.com");
        };
        if local.is_empty() || local.len() > 64 || local.contains('@') {
            return refuse("the part before '@' must be 1 to 64 characters");
        }
        let labels_ok = domain.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        });
        if !domain.contains('.') || !labels_ok {
            return refuse("the part after '@' must be a domain such as example.com");
        }
        Ok(Email(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map_or("", |(_, domain)| domain)
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Email({})", self.0)
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A user's role. OpenFrame has exactly these for people; machines are `AGENT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Owner,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "OWNER",
            Role::Admin => "ADMIN",
        }
    }

    pub fn parse(value: &str) -> Result<Role, Invalid> {
        match value.to_ascii_uppercase().as_str() {
            "OWNER" => Ok(Role::Owner),
            "ADMIN" => Ok(Role::Admin),
            _ => Err(Invalid::new("role", "must be OWNER or ADMIN")),
        }
    }

    /// The roles a token carries: OWNER implies ADMIN, as in OpenFrame's `UserRole.effective`.
    pub fn effective(roles: &[Role]) -> Vec<Role> {
        let mut effective: Vec<Role> = roles.to_vec();
        if effective.contains(&Role::Owner) && !effective.contains(&Role::Admin) {
            effective.push(Role::Admin);
        }
        effective.sort();
        effective.dedup();
        effective
    }
}

/// The longest password we hash: long enough for any passphrase, short enough that nobody can
/// make us hash megabytes.
pub const MAX_PASSWORD_CHARS: usize = 128;

/// OpenFrame's password policy: at least 8 characters with upper- and lower-case letters, a digit
/// and a symbol.
pub fn check_password_policy(password: &str) -> Result<(), Invalid> {
    let length = password.chars().count();
    if length < 8 {
        return Err(Invalid::new("password", "must be at least 8 characters"));
    }
    if length > MAX_PASSWORD_CHARS {
        return Err(Invalid::new(
            "password",
            format!("must be at most {MAX_PASSWORD_CHARS} characters"),
        ));
    }
    let has = |test: fn(char) -> bool| password.chars().any(test);
    if !(has(char::is_uppercase)
        && has(char::is_lowercase)
        && has(|c| c.is_ascii_digit())
        && has(|c| !c.is_alphanumeric()))
    {
        return Err(Invalid::new(
            "password",
            "must contain an upper-case letter, a lower-case letter, a digit and a symbol",
        ));
    }
    Ok(())
}

/// A person's display name: letters first, then letters, marks, apostrophes, spaces and hyphens.
pub fn check_display_name(field: &'static str, value: &str) -> Result<(), Invalid> {
    let mut chars = value.chars();
    let first_ok = chars.next().is_some_and(char::is_alphabetic);
    let rest_ok = value.chars().count() <= 100
        && value
            .chars()
            .all(|c| c.is_alphabetic() || matches!(c, '\'' | ' ' | '-' | '.'));
    if first_ok && rest_ok {
        Ok(())
    } else {
        Err(Invalid::new(
            field,
            "must start with a letter and hold at most 100 letters, spaces, apostrophes, dots and hyphens",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        let cases: &[(&str, Option<&str>)] = &[
            ("  Alice@Example.COM ", Some("alice@example.com")),
            (
                "a.b+tag@mail.example.co.uk",
                Some("a.b+tag@mail.example.co.uk"),
            ),
            ("no-at-sign", None),
            ("@example.com", None),
            ("a@localhost", None),
            ("a@exa mple.com", None),
            ("a@-bad.com", None),
            ("a@b@example.com", None),
            ("", None),
        ];
        for (input, expected) in cases {
            let parsed = Email::parse(input).ok();
            assert_eq!(parsed.as_ref().map(Email::as_str), *expected, "{input:?}");
        }
        assert_eq!(
            Email::parse("x@Example.com").unwrap().domain(),
            "example.com"
        );
    }

    #[test]
    fn owner_implies_admin() {
        assert_eq!(
            Role::effective(&[Role::Owner]),
            vec![Role::Owner, Role::Admin]
        );
        assert_eq!(Role::effective(&[Role::Admin]), vec![Role::Admin]);
        assert_eq!(Role::parse("admin"), Ok(Role::Admin));
        assert!(Role::parse("AGENT").is_err());
    }

    #[test]
    fn password_policy_follows_openframe() {
        assert!(check_password_policy("Str0ng!pass").is_ok());
        for weak in [
            "Sh0rt!",
            "alllower1!",
            "ALLUPPER1!",
            "NoDigits!!",
            "NoSymbol11",
            &format!("Aa1!{}", "x".repeat(125)),
        ] {
            assert!(check_password_policy(weak).is_err(), "{weak}");
        }
    }
}
