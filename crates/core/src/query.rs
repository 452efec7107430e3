//! Query strings (PROTOCOL.md §0, §4.1): strict parameters, page cursors and pages.

use crate::error::Error;

/// Parses a decimal `u64`: ASCII digits only, no sign, no overflow.
pub fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Splits a query into `name=value` pairs, refusing unknown and repeated names.
/// Values are taken as sent (nothing is percent-decoded).
pub fn parse_params<'q>(query: &'q str, allowed: &[&str]) -> Result<Vec<(&'q str, &'q str)>, Error> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    if query.is_empty() {
        return Ok(out);
    }
    for pair in query.split('&') {
        let (name, value) =
            pair.split_once('=').ok_or_else(|| Error::malformed(format!("query parameter {pair:?} has no value")))?;
        if !allowed.contains(&name) {
            return Err(Error::malformed(format!("unknown query parameter {name:?}")));
        }
        if out.iter().any(|(n, _)| *n == name) {
            return Err(Error::malformed(format!("query parameter {name:?} is repeated")));
        }
        out.push((name, value));
    }
    Ok(out)
}

fn ranged(name: &str, value: &str, min: u64, max: u64) -> Result<u64, Error> {
    parse_u64(value)
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| Error::malformed(format!("{name} must be an integer from {min} to {max}, got {value:?}")))
}

/// Where a page starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cursor {
    /// Messages with `seq > n`.
    After(u64),
    /// Messages with `received_at >= ms`.
    Since(u64),
}

/// The most messages one page may hold.
pub const MAX_PAGE_LIMIT: u64 = 500;
/// The longest a long-poll may wait, in seconds.
pub const MAX_WAIT_SECS: u64 = 30;

/// A page request: `after` or `since`, `limit`, `wait`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageQuery {
    pub cursor: Cursor,
    pub limit: u64,
    pub wait_secs: u64,
}

impl PageQuery {
    pub fn parse(query: &str) -> Result<PageQuery, Error> {
        let mut q = PageQuery { cursor: Cursor::After(0), limit: 100, wait_secs: 0 };
        let params = parse_params(query, &["after", "since", "limit", "wait"])?;
        if params.iter().any(|(n, _)| *n == "after") && params.iter().any(|(n, _)| *n == "since") {
            return Err(Error::malformed("give after or since, not both"));
        }
        for (name, value) in params {
            match name {
                "after" => q.cursor = Cursor::After(ranged(name, value, 0, i64::MAX as u64)?),
                "since" => q.cursor = Cursor::Since(ranged(name, value, 0, i64::MAX as u64)?),
                "limit" => q.limit = ranged(name, value, 1, MAX_PAGE_LIMIT)?,
                _ => q.wait_secs = ranged(name, value, 0, MAX_WAIT_SECS)?,
            }
        }
        Ok(q)
    }
}

/// The query of a WebSocket route: an optional `after`.
pub fn parse_socket_query(query: &str) -> Result<Option<u64>, Error> {
    let params = parse_params(query, &["after"])?;
    params.first().map(|(n, v)| ranged(n, v, 0, i64::MAX as u64)).transpose()
}

/// The JSON a page adds around its messages, at most:
/// `{"messages":[],"next":18446744073709551615,"more":false}`, plus slack.
pub const PAGE_OVERHEAD_BYTES: u64 = 64;

/// How a page is bounded: at most `limit` messages, and JSON of at most
/// `max_bytes` (`MAX_PAGE_BYTES`), but never fewer than one message when one exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageBounds {
    pub limit: u64,
    pub max_bytes: u64,
}

/// Cuts a page from up to `limit + 1` rows read in ascending seq order: returns
/// the rows to send, `next` and `more` (§4.1). `empty_next` is the cursor to
/// answer when no row is returned; `size_of` is a row's JSON length. A page cut
/// short by its size says `more: true`.
pub fn cut_page<T>(
    mut rows: Vec<T>,
    bounds: PageBounds,
    empty_next: u64,
    seq_of: impl Fn(&T) -> u64,
    size_of: impl Fn(&T) -> u64,
) -> (Vec<T>, u64, bool) {
    let mut more = rows.len() as u64 > bounds.limit;
    rows.truncate(bounds.limit as usize);
    let mut total = PAGE_OVERHEAD_BYTES;
    let fits = rows
        .iter()
        .position(|row| {
            total = total.saturating_add(size_of(row) + 1);
            total > bounds.max_bytes
        })
        .unwrap_or(rows.len())
        .max(1);
    if fits < rows.len() {
        rows.truncate(fits);
        more = true;
    }
    let next = rows.last().map(&seq_of).unwrap_or(empty_next);
    (rows, next, more)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    #[test]
    fn defaults() {
        let q = PageQuery::parse("").unwrap();
        assert_eq!(q, PageQuery { cursor: Cursor::After(0), limit: 100, wait_secs: 0 });
    }

    #[test]
    fn values_in_range_are_taken() {
        let q = PageQuery::parse("since=5&limit=500&wait=30").unwrap();
        assert_eq!(q, PageQuery { cursor: Cursor::Since(5), limit: 500, wait_secs: 30 });
    }

    #[test]
    fn out_of_range_unknown_repeated_and_mixed_are_malformed() {
        for bad in [
            "limit=0",
            "limit=501",
            "wait=31",
            "after=-1",
            "after=1.5",
            "after=",
            "after",
            "after=99999999999999999999999",
            "after=+1",
            "x=1",
            "after=1&after=2",
            "after=1&since=2",
            "after=1&",
            "&",
        ] {
            assert_eq!(PageQuery::parse(bad).unwrap_err().code, ErrorCode::Malformed, "{bad}");
        }
    }

    #[test]
    fn socket_query() {
        assert_eq!(parse_socket_query("").unwrap(), None);
        assert_eq!(parse_socket_query("after=7").unwrap(), Some(7));
        assert!(parse_socket_query("limit=7").is_err());
    }

    #[test]
    fn pages_report_next_and_more() {
        let b = PageBounds { limit: 2, max_bytes: u64::MAX };
        assert_eq!(cut_page(vec![1, 2, 3], b, 0, |s| *s, |_| 1), (vec![1, 2], 2, true));
        assert_eq!(cut_page(vec![1, 2], b, 0, |s| *s, |_| 1), (vec![1, 2], 2, false));
        assert_eq!(cut_page(Vec::<u64>::new(), b, 9, |s| *s, |_| 1), (vec![], 9, false));
    }

    #[test]
    fn a_page_ends_before_its_json_passes_max_page_bytes() {
        let b = PageBounds { limit: 100, max_bytes: PAGE_OVERHEAD_BYTES + 2 * 101 };
        // Rows of 100 bytes (+1 for the comma): two fit, the third would pass.
        assert_eq!(cut_page(vec![1, 2, 3, 4], b, 0, |s| *s, |_| 100), (vec![1, 2], 2, true));
        // Exactly fitting rows and nothing after: no more.
        assert_eq!(cut_page(vec![1, 2], b, 0, |s| *s, |_| 100), (vec![1, 2], 2, false));
        // One row larger than the whole budget still goes out alone.
        assert_eq!(cut_page(vec![7, 8], b, 0, |s| *s, |_| 10_000), (vec![7], 7, true));
        assert_eq!(cut_page(vec![7], b, 0, |s| *s, |_| 10_000), (vec![7], 7, false));
    }
}
