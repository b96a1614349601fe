//! Relay conventions shared by every list: global ids (`base64("Type:id")`, as graphql-java's
//! `Relay.toGlobalId`), opaque cursors, and `first/after/last/before` paging over a sorted list.

use async_graphql::{ID, SimpleObject};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::{GqlResult, invalid};

/// The page size when neither `first` nor `last` is given, and the largest allowed.
pub const DEFAULT_PAGE: i32 = 20;
pub const MAX_PAGE: i32 = 100;

/// OpenFrame's `PageInfo`.
#[derive(Debug, Clone, SimpleObject, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PageInfo {
    pub has_next_page: bool,
    pub has_previous_page: bool,
    pub start_cursor: Option<String>,
    pub end_cursor: Option<String>,
}

pub fn global_id(kind: &str, id: &str) -> ID {
    ID(STANDARD.encode(format!("{kind}:{id}")))
}

/// The `(type, id)` a global id names; `argument` names the argument in the error.
pub fn parse_global_id(argument: &str, id: &str) -> GqlResult<(String, String)> {
    let bad = || {
        invalid(format!(
            "{argument}: {id:?} is not a global id (base64 of \"Type:id\", as the API returns them)"
        ))
    };
    let decoded = STANDARD.decode(id.as_bytes()).map_err(|_| bad())?;
    let text = String::from_utf8(decoded).map_err(|_| bad())?;
    let (kind, local) = text.split_once(':').ok_or_else(bad)?;
    if kind.is_empty() || local.is_empty() {
        return Err(bad());
    }
    Ok((kind.to_owned(), local.to_owned()))
}

/// A global id that must name a `kind`; `None` when it names another type.
pub fn local_id(argument: &str, id: &str, kind: &str) -> GqlResult<Option<String>> {
    let (found, local) = parse_global_id(argument, id)?;
    Ok((found == kind).then_some(local))
}

pub fn encode_cursor(key: &str) -> String {
    STANDARD.encode(key)
}

pub fn decode_cursor(argument: &str, cursor: &str) -> GqlResult<String> {
    STANDARD
        .decode(cursor.as_bytes())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| {
            invalid(format!(
                "{argument}: {cursor:?} is not a cursor this list returned"
            ))
        })
}

/// The paging arguments of a connection, as the client sent them.
#[derive(Debug, Clone, Default)]
pub struct PageArgs {
    pub first: Option<i32>,
    pub after: Option<String>,
    pub last: Option<i32>,
    pub before: Option<String>,
}

impl PageArgs {
    /// A connection's arguments, checked (see [`PageArgs::checked`]).
    pub fn new(
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> GqlResult<PageArgs> {
        PageArgs {
            first,
            after,
            last,
            before,
        }
        .checked()
    }

    /// Checks the sizes (1–100; not both `first` and `last`).
    pub fn checked(self) -> GqlResult<PageArgs> {
        for (name, value) in [("first", self.first), ("last", self.last)] {
            if let Some(value) = value
                && !(1..=MAX_PAGE).contains(&value)
            {
                return Err(invalid(format!(
                    "{name}: must be between 1 and {MAX_PAGE}, got {value}"
                )));
            }
        }
        if self.first.is_some() && self.last.is_some() {
            return Err(invalid(
                "first, last: give one of them (first pages forward, last backward)",
            ));
        }
        Ok(self)
    }

    /// The most rows the connection may return (for the complexity estimate).
    pub fn size(first: Option<i32>, last: Option<i32>) -> usize {
        usize::try_from(first.or(last).unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE)).unwrap_or(1)
    }
}

/// One page of a sorted list.
#[derive(Debug)]
pub struct Page<T> {
    /// The rows with their cursors.
    pub rows: Vec<(String, T)>,
    pub info: PageInfo,
    /// The whole filtered list's length.
    pub filtered_count: i32,
}

/// Pages `sorted` (in the order the client asked for, each row with a key unique in the list
/// and increasing in that order when `ascending`, decreasing otherwise). Cursors are the keys,
/// so a page stays where it was when rows are added or removed elsewhere in the list.
pub fn paginate<T>(
    sorted: Vec<(String, T)>,
    ascending: bool,
    args: &PageArgs,
) -> GqlResult<Page<T>> {
    let filtered_count = i32::try_from(sorted.len()).unwrap_or(i32::MAX);
    // `before(a, b)`: a comes before b in the list's order.
    let before = |a: &str, b: &str| if ascending { a < b } else { a > b };
    let mut start = 0;
    let mut end = sorted.len();
    if let Some(after) = &args.after {
        let key = decode_cursor("after", after)?;
        start = sorted.partition_point(|(row, _)| !before(&key, row));
    }
    if let Some(before_cursor) = &args.before {
        let key = decode_cursor("before", before_cursor)?;
        end = sorted
            .partition_point(|(row, _)| before(row, &key))
            .max(start);
    }
    if let Some(last) = args.last {
        start = end
            .saturating_sub(usize::try_from(last).unwrap_or(0))
            .max(start);
    } else {
        let first = usize::try_from(args.first.unwrap_or(DEFAULT_PAGE)).unwrap_or(0);
        end = end.min(start + first);
    }
    let has_previous_page = start > 0;
    let has_next_page = end < sorted.len();
    let rows: Vec<(String, T)> = sorted
        .into_iter()
        .skip(start)
        .take(end - start)
        .map(|(key, row)| (encode_cursor(&key), row))
        .collect();
    let info = PageInfo {
        has_next_page,
        has_previous_page,
        start_cursor: rows.first().map(|(cursor, _)| cursor.clone()),
        end_cursor: rows.last().map(|(cursor, _)| cursor.clone()),
    };
    Ok(Page {
        rows,
        info,
        filtered_count,
    })
}

/// The most a search text may be.
pub const MAX_SEARCH: usize = 200;

/// A list's `search` argument: trimmed and lower-cased (lists match case-insensitively); `None`
/// when empty.
pub fn search_text(search: Option<String>) -> GqlResult<Option<String>> {
    let search = search
        .map(|text| text.trim().to_lowercase())
        .filter(|text| !text.is_empty());
    if search
        .as_ref()
        .is_some_and(|text| text.chars().count() > MAX_SEARCH)
    {
        return Err(invalid(format!("search: at most {MAX_SEARCH} characters")));
    }
    Ok(search)
}

/// A sort key for text: case-insensitive, then the exact text, then the row's id (unique).
pub fn text_key(value: &str, id: &str) -> String {
    format!("{}\u{1}{value}\u{1}{id}", value.to_lowercase())
}

/// A sort key for a number that orders like the number (non-negative values; absent first).
pub fn number_key(value: Option<i64>, id: &str) -> String {
    match value {
        Some(value) => format!("1{:020}\u{1}{id}", value.max(0)),
        None => format!("0\u{1}{id}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(n: usize) -> Vec<(String, usize)> {
        (0..n).map(|i| (format!("{i:03}"), i)).collect()
    }

    fn values(page: &Page<usize>) -> Vec<usize> {
        page.rows.iter().map(|(_, value)| *value).collect()
    }

    #[test]
    fn pages_forward_and_back_cover_the_list_once() {
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let args = PageArgs {
                first: Some(3),
                after: after.clone(),
                ..PageArgs::default()
            };
            let page = paginate(list(8), true, &args).unwrap();
            assert_eq!(page.filtered_count, 8);
            seen.extend(values(&page));
            assert_eq!(page.info.has_previous_page, after.is_some());
            if !page.info.has_next_page {
                break;
            }
            after = page.info.end_cursor.clone();
        }
        assert_eq!(seen, (0..8).collect::<Vec<_>>());

        let mut back = Vec::new();
        let mut before = None;
        loop {
            let args = PageArgs {
                last: Some(3),
                before: before.clone(),
                ..PageArgs::default()
            };
            let page = paginate(list(8), true, &args).unwrap();
            let mut chunk = values(&page);
            chunk.extend(back);
            back = chunk;
            if !page.info.has_previous_page {
                break;
            }
            before = page.info.start_cursor.clone();
        }
        assert_eq!(back, (0..8).collect::<Vec<_>>());
    }

    #[test]
    fn descending_lists_page_in_their_own_order() {
        let sorted: Vec<(String, usize)> = list(5).into_iter().rev().collect();
        let first = paginate(
            sorted.clone(),
            false,
            &PageArgs {
                first: Some(2),
                ..PageArgs::default()
            },
        )
        .unwrap();
        assert_eq!(values(&first), vec![4, 3]);
        let next = PageArgs {
            first: Some(2),
            after: first.info.end_cursor.clone(),
            ..PageArgs::default()
        };
        assert_eq!(values(&paginate(sorted, false, &next).unwrap()), vec![2, 1]);
    }

    #[test]
    fn bad_arguments_name_themselves() {
        for (args, name) in [
            (
                PageArgs {
                    first: Some(0),
                    ..PageArgs::default()
                },
                "first",
            ),
            (
                PageArgs {
                    first: Some(101),
                    ..PageArgs::default()
                },
                "first",
            ),
            (
                PageArgs {
                    last: Some(-1),
                    ..PageArgs::default()
                },
                "last",
            ),
        ] {
            let message = args.checked().unwrap_err().message;
            assert!(message.starts_with(name), "{message}");
        }
        let bad = PageArgs {
            after: Some("%%%".into()),
            ..PageArgs::default()
        };
        assert!(
            paginate(list(2), true, &bad)
                .unwrap_err()
                .message
                .starts_with("after")
        );
        assert!(parse_global_id("id", "bm9jb2xvbg==").is_err()); // "nocolon"
        assert_eq!(
            parse_global_id("id", global_id("Machine", "m-1").as_str()).unwrap(),
            ("Machine".to_owned(), "m-1".to_owned())
        );
    }
}
