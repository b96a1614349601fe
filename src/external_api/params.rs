//! Query parameters of the external API, checked strictly: an unknown parameter, a repeated
//! single-valued one, an out-of-range limit, a malformed cursor or an unknown enum value is a
//! 400 whose message starts with the parameter's name. Lists may be repeated
//! (`statuses=A&statuses=B`) or comma-separated (`statuses=A,B`), as Spring accepts them.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// The most rows a page may have, and the default.
pub(super) const MAX_LIMIT: i32 = 100;
pub(super) const DEFAULT_LIMIT: i32 = 20;

#[derive(Debug, Default)]
pub(super) struct Params(BTreeMap<String, Vec<String>>);

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::InvalidInput(message.into())
}

impl Params {
    /// Parses a query string, refusing parameters not in `known`.
    pub(super) fn parse(query: Option<&str>, known: &[&str]) -> Result<Params, ApiError> {
        let mut params = BTreeMap::<String, Vec<String>>::new();
        for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            if !known.contains(&name.as_ref()) {
                return Err(invalid(format!(
                    "{name}: not a parameter of this endpoint (known: {})",
                    known.join(", ")
                )));
            }
            params
                .entry(name.into_owned())
                .or_default()
                .push(value.into_owned());
        }
        Ok(Params(params))
    }

    /// A single-valued parameter.
    pub(super) fn one(&self, name: &str) -> Result<Option<String>, ApiError> {
        match self.0.get(name).map(Vec::as_slice) {
            None | Some([]) => Ok(None),
            Some([value]) => Ok(Some(value.clone())),
            Some(_) => Err(invalid(format!("{name}: give it once"))),
        }
    }

    /// A list parameter (repeated or comma-separated); `None` when absent. An empty item
    /// (`statuses=` or `statuses=A,,B`) is refused: it is a mistake, not a filter.
    pub(super) fn list(&self, name: &str) -> Result<Option<Vec<String>>, ApiError> {
        let Some(given) = self.0.get(name) else {
            return Ok(None);
        };
        let values: Vec<String> = given
            .iter()
            .flat_map(|value| value.split(','))
            .map(|value| value.trim().to_owned())
            .collect();
        if values.iter().any(String::is_empty) {
            return Err(invalid(format!(
                "{name}: an empty value; give values, or leave the parameter out"
            )));
        }
        Ok(Some(values))
    }

    /// A list of enum values, each checked.
    pub(super) fn enums<T: DeserializeOwned>(
        &self,
        name: &str,
        allowed: &[&str],
    ) -> Result<Option<Vec<T>>, ApiError> {
        let Some(values) = self.list(name)? else {
            return Ok(None);
        };
        values
            .iter()
            .map(|value| {
                serde_json::from_value(serde_json::Value::String(value.to_ascii_uppercase()))
                    .map_err(|_| {
                        invalid(format!(
                            "{name}: {value:?} is not one of {}",
                            allowed.join(", ")
                        ))
                    })
            })
            .collect::<Result<Vec<T>, ApiError>>()
            .map(Some)
    }

    /// `limit`: 1 to [`MAX_LIMIT`], default [`DEFAULT_LIMIT`].
    pub(super) fn limit(&self) -> Result<i32, ApiError> {
        let Some(text) = self.one("limit")? else {
            return Ok(DEFAULT_LIMIT);
        };
        match text.trim().parse::<i32>() {
            Ok(limit) if (1..=MAX_LIMIT).contains(&limit) => Ok(limit),
            _ => Err(invalid(format!(
                "limit: must be a whole number from 1 to {MAX_LIMIT}, got {text:?}"
            ))),
        }
    }

    /// `cursor`: one this list returned (checked here so the error names the parameter).
    pub(super) fn cursor(&self) -> Result<Option<String>, ApiError> {
        let Some(cursor) = self.one("cursor")? else {
            return Ok(None);
        };
        crate::graphql::relay::decode_cursor("cursor", &cursor)
            .map_err(|error| invalid(error.message))?;
        Ok(Some(cursor))
    }

    /// `true` / `false` (default `false`).
    pub(super) fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self
            .one(name)?
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(other) => Err(invalid(format!("{name}: {other:?} must be true or false"))),
        }
    }

    /// `sortDirection`: `ASC` or `DESC`; whether it is ascending.
    pub(super) fn ascending(&self, default_ascending: bool) -> Result<bool, ApiError> {
        match self
            .one("sortDirection")?
            .map(|text| text.to_ascii_uppercase())
            .as_deref()
        {
            None => Ok(default_ascending),
            Some("ASC") => Ok(true),
            Some("DESC") => Ok(false),
            Some(other) => Err(invalid(format!(
                "sortDirection: {other:?} must be ASC or DESC"
            ))),
        }
    }
}

/// An error of the technician API's shared checks, with GraphQL's argument path
/// (`filter.startDate: …`) turned into the external API's parameter name (`startDate: …`).
pub(super) fn as_parameter(error: ApiError) -> ApiError {
    match error {
        ApiError::InvalidInput(message) => {
            ApiError::InvalidInput(message.replacen("filter.", "", 1))
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_checked_and_named_in_errors() {
        let known = [
            "statuses",
            "limit",
            "cursor",
            "includeTags",
            "sortDirection",
        ];
        let params = Params::parse(
            Some("statuses=ONLINE,offline&statuses=PENDING&limit=5"),
            &known,
        )
        .unwrap();
        assert_eq!(
            params.list("statuses").unwrap().unwrap(),
            vec!["ONLINE", "offline", "PENDING"]
        );
        assert_eq!(params.limit().unwrap(), 5);
        let error = |query: &str| match Params::parse(Some(query), &known).and_then(|params| {
            params.limit()?;
            params.cursor()?;
            params.flag("includeTags")?;
            params.ascending(false)?;
            Ok(())
        }) {
            Err(ApiError::InvalidInput(message)) => message,
            other => panic!("{query}: {other:?}"),
        };
        assert!(error("limit=0").starts_with("limit:"));
        assert!(error("limit=101").starts_with("limit:"));
        assert!(error("limit=ten").starts_with("limit:"));
        assert!(error("limit=1&limit=2").starts_with("limit:"));
        assert!(error("cursor=%%%").starts_with("cursor:"));
        assert!(error("includeTags=maybe").starts_with("includeTags:"));
        assert!(error("sortDirection=UP").starts_with("sortDirection:"));
        assert!(error("page=2").starts_with("page:"));
        let empty = |query: &str| match Params::parse(Some(query), &known)
            .and_then(|params| params.list("statuses"))
        {
            Err(ApiError::InvalidInput(message)) => message,
            other => panic!("{query}: {other:?}"),
        };
        assert!(empty("statuses=").starts_with("statuses:"));
        assert!(empty("statuses=ONLINE,,OFFLINE").starts_with("statuses:"));
    }
}
