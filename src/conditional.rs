//! Preconditions (RFC 9110 §13): If-Match, If-Unmodified-Since, If-None-Match and
//! If-Modified-Since, evaluated against a representation's validators in the order of
//! §13.2.2, and the entity-tag comparisons they need. Pure. May use: request, httpdate.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::request::Fields;

/// The validators of the representation a request selected.
#[derive(Debug, Clone, Copy)]
pub struct Validators<'a> {
    /// A strong entity-tag, quotes included (`"abc"`).
    pub etag: &'a str,
    /// The modification time, possibly before 1970. One in the future should already be
    /// replaced by now, as the Last-Modified we send is (RFC 9110 §8.8.2.1).
    pub last_modified: SystemTime,
}

/// What the preconditions say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Go on (to ranges and the full reply).
    Proceed,
    /// 304: the client's copy is current (GET and HEAD only).
    NotModified,
    /// 412: a precondition failed.
    Failed,
}

/// Evaluates the preconditions in RFC 9110 §13.2.2 order, for GET and HEAD (the only methods
/// that get this far: others are 405 first). `now` is the server's clock (an
/// If-Modified-Since later than it is invalid).
pub fn evaluate(fields: &Fields, validators: &Validators<'_>, now: SystemTime) -> Outcome {
    // 1. If-Match (strong comparison); 2. otherwise If-Unmodified-Since.
    if let Some(if_match) = &fields.if_match {
        if !matches_any(if_match, validators.etag, Comparison::Strong) {
            return Outcome::Failed;
        }
    } else if let Some(date) = fields.if_unmodified_since.as_deref().and_then(parse_date) {
        if seconds(validators.last_modified) > date {
            return Outcome::Failed;
        }
    }
    // 3. If-None-Match (weak comparison): 304 for GET and HEAD; 4. otherwise
    // If-Modified-Since.
    if let Some(if_none_match) = &fields.if_none_match {
        if matches_any(if_none_match, validators.etag, Comparison::Weak) {
            return Outcome::NotModified;
        }
    } else {
        // RFC 9110 §13.1.3 reads the date by the origin server's clock, and RFC 2616 §14.25
        // said outright that a date later than the server's current time is invalid.
        // Honouring it would let a client with a wrong clock pin a stale copy for good.
        let valid = |date: &i64| *date <= seconds(now);
        let since = fields.if_modified_since.as_deref().and_then(parse_date);
        if let Some(date) = since.filter(valid) {
            if seconds(validators.last_modified) <= date {
                return Outcome::NotModified;
            }
        }
    }
    Outcome::Proceed
}

/// Whether an `If-Range` value allows the range (RFC 9110 §13.1.5): a strong entity-tag equal
/// to ours, or a date exactly equal to our Last-Modified when that date is a strong
/// validator. A weak tag never matches.
///
/// A modification date is strong only if the file has not changed for at least a second
/// at `now` (RFC 9110 §8.8.2.2): a file rewritten within the second it was fetched keeps
/// its Last-Modified, and a range of the new bytes would be spliced onto the old ones.
/// A date before 1970 is never matched: we send it as the epoch, which many such times share.
pub fn if_range_matches(value: &str, validators: &Validators<'_>, now: SystemTime) -> bool {
    let value = value.trim();
    if value.starts_with('"') || value.starts_with("W/") {
        let mut tags = EntityTags::new(value);
        match (tags.next(), tags.next()) {
            (Some(tag), None) => tag.matches(validators.etag, Comparison::Strong),
            _ => false,
        }
    } else {
        let settled = now
            .duration_since(validators.last_modified)
            .is_ok_and(|age| age >= Duration::from_secs(1));
        settled && parse_date(value) == Some(seconds(validators.last_modified))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Comparison {
    Strong,
    Weak,
}

/// `*` or a list of entity-tags: does any match `ours` (a strong tag, quotes included)?
fn matches_any(list: &str, ours: &str, comparison: Comparison) -> bool {
    if list.trim() == "*" {
        return true;
    }
    EntityTags::new(list).any(|tag| tag.matches(ours, comparison))
}

struct EntityTag<'a> {
    weak: bool,
    /// With its quotes.
    quoted: &'a str,
}

impl EntityTag<'_> {
    /// RFC 9110 §8.8.3.2: strong comparison needs both strong and identical; weak comparison
    /// needs only the opaque tags identical. `ours` is always strong.
    fn matches(&self, ours: &str, comparison: Comparison) -> bool {
        (comparison == Comparison::Weak || !self.weak) && self.quoted == ours
    }
}

/// The entity-tags of a list, in order; stops at the first syntax error. A comma is a legal
/// character inside a tag, so this cannot be a split on commas.
struct EntityTags<'a> {
    rest: &'a str,
}

impl<'a> EntityTags<'a> {
    fn new(list: &'a str) -> Self {
        EntityTags { rest: list }
    }
}

impl<'a> Iterator for EntityTags<'a> {
    type Item = EntityTag<'a>;

    fn next(&mut self) -> Option<EntityTag<'a>> {
        let rest = self.rest.trim_start_matches([' ', '\t', ',']);
        let (weak, rest) = match rest.strip_prefix("W/") {
            Some(after) => (true, after),
            None => (false, rest),
        };
        let body = rest.strip_prefix('"')?;
        let end = body.find('"')?;
        let quoted = &rest[..end + 2];
        self.rest = &rest[end + 2..];
        // After a tag: optional whitespace, then a comma or the end.
        let after = self.rest.trim_start_matches([' ', '\t']);
        if !(after.is_empty() || after.starts_with(',')) {
            self.rest = "";
            return None;
        }
        Some(EntityTag { weak, quoted })
    }
}

/// An HTTP-date (any of the three formats) as seconds since the epoch; `None` if invalid,
/// which makes the field be ignored (RFC 9110 §13.1.3, §13.1.4).
fn parse_date(value: &str) -> Option<i64> {
    httpdate::parse_http_date(value.trim()).ok().map(seconds)
}

/// Whole seconds since the epoch, rounded down: HTTP dates have no finer resolution. Signed,
/// so a file dated before 1970 compares as older than every date a client can send, and
/// never panics or wraps.
fn seconds(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => {
            let before = before.duration();
            let whole = i64::try_from(before.as_secs()).unwrap_or(i64::MAX);
            // 0.5 s before the epoch is in second -1.
            (-whole).saturating_sub(i64::from(before.subsec_nanos() > 0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const ETAG: &str = "\"5f-a\"";
    const DATE: &str = "Sun, 06 Nov 1994 08:49:37 GMT";
    const EARLIER: &str = "Sun, 06 Nov 1994 08:49:36 GMT";
    const LATER: &str = "Sun, 06 Nov 1994 08:49:38 GMT";

    fn validators() -> Validators<'static> {
        Validators {
            etag: ETAG,
            // Sub-second part: comparisons must be at second resolution.
            last_modified: UNIX_EPOCH + Duration::from_millis(784_111_777_500),
        }
    }

    fn outcome(headers: &[(&str, &str)]) -> Outcome {
        let mut fields = Fields::default();
        for (name, value) in headers {
            let slot = match *name {
                "If-Match" => &mut fields.if_match,
                "If-None-Match" => &mut fields.if_none_match,
                "If-Modified-Since" => &mut fields.if_modified_since,
                "If-Unmodified-Since" => &mut fields.if_unmodified_since,
                other => panic!("{other}"),
            };
            *slot = Some((*value).into());
        }
        // "Now" is 2000-01-01: after every date below but the one in 2100.
        let now = UNIX_EPOCH + Duration::from_secs(946_684_800);
        evaluate(&fields, &validators(), now)
    }

    /// (request fields of a GET or HEAD, expected outcome)
    type Case<'a> = (&'a [(&'a str, &'a str)], Outcome);

    #[test]
    fn precedence_and_comparisons() {
        use Outcome::*;
        let table: &[Case<'_>] = &[
            (&[], Proceed),
            (&[("If-None-Match", ETAG)], NotModified),
            (&[("If-None-Match", "W/\"5f-a\"")], NotModified),
            (&[("If-None-Match", "\"x\", \"5f-a\"")], NotModified),
            (&[("If-None-Match", "\"x\",\"y\"")], Proceed),
            (&[("If-None-Match", "*")], NotModified),
            (&[("If-None-Match", "\"a,b\", \"5f-a\"")], NotModified),
            (&[("If-Modified-Since", DATE)], NotModified),
            (&[("If-Modified-Since", LATER)], NotModified),
            // A date in the future is invalid and ignored.
            (
                &[("If-Modified-Since", "Fri, 01 Jan 2100 00:00:00 GMT")],
                Proceed,
            ),
            (&[("If-Modified-Since", EARLIER)], Proceed),
            (&[("If-Modified-Since", "not a date")], Proceed),
            // If-None-Match present: If-Modified-Since is ignored.
            (
                &[("If-None-Match", "\"other\""), ("If-Modified-Since", DATE)],
                Proceed,
            ),
            (&[("If-Match", ETAG)], Proceed),
            (&[("If-Match", "*")], Proceed),
            (&[("If-Match", "\"other\"")], Failed),
            // If-Match uses strong comparison: a weak tag never matches.
            (&[("If-Match", "W/\"5f-a\"")], Failed),
            (&[("If-Unmodified-Since", DATE)], Proceed),
            (&[("If-Unmodified-Since", EARLIER)], Failed),
            (&[("If-Unmodified-Since", "garbage")], Proceed),
            // If-Match present: If-Unmodified-Since is ignored.
            (
                &[("If-Match", ETAG), ("If-Unmodified-Since", EARLIER)],
                Proceed,
            ),
            // A failed If-Match wins over a matching If-None-Match.
            (
                &[("If-Match", "\"other\""), ("If-None-Match", ETAG)],
                Failed,
            ),
            (&[("If-Match", ETAG), ("If-None-Match", ETAG)], NotModified),
        ];
        for (headers, expected) in table {
            assert_eq!(outcome(headers), *expected, "{headers:?}");
        }
    }

    #[test]
    fn if_range() {
        let v = validators();
        let now = UNIX_EPOCH + Duration::from_secs(946_684_800);
        assert!(if_range_matches(ETAG, &v, now));
        assert!(!if_range_matches("W/\"5f-a\"", &v, now));
        assert!(!if_range_matches("\"other\"", &v, now));
        assert!(!if_range_matches("\"5f-a\", \"x\"", &v, now));
        assert!(if_range_matches(DATE, &v, now));
        assert!(!if_range_matches(LATER, &v, now));
        assert!(!if_range_matches(EARLIER, &v, now));
        assert!(!if_range_matches("garbage", &v, now));
        // What a repeated If-Range becomes (request::Fields): never a match.
        assert!(!if_range_matches("", &v, now));
    }

    /// RFC 9110 §8.8.2.2: a date is a strong validator only once the file is a second old;
    /// an entity-tag is strong at any age.
    #[test]
    fn if_range_date_needs_a_settled_file() {
        let v = validators(); // modified at 08:49:37.5
        let at = |millis: u64| UNIX_EPOCH + Duration::from_millis(millis);
        let table = [
            (784_111_777_500, false), // the same instant
            (784_111_777_900, false), // rewritten within the second: same date, new bytes
            (784_111_778_400, false), // 0.9 s
            (784_111_778_500, true),  // exactly 1 s
            (784_111_790_000, true),
            (784_111_777_000, false), // a clock behind the file
        ];
        for (now, matches) in table {
            assert_eq!(if_range_matches(DATE, &v, at(now)), matches, "{now}");
            assert!(if_range_matches(ETAG, &v, at(now)), "{now}");
        }
    }

    #[test]
    fn before_1970_and_far_future() {
        let day = Duration::from_secs(86_400);
        assert_eq!(seconds(UNIX_EPOCH), 0);
        assert_eq!(seconds(UNIX_EPOCH - Duration::from_millis(500)), -1);
        assert_eq!(seconds(UNIX_EPOCH - Duration::from_secs(1)), -1);
        assert_eq!(seconds(UNIX_EPOCH - 3653 * day), -315_619_200);
        let now = UNIX_EPOCH + Duration::from_secs(946_684_800);
        let epoch_date = "Thu, 01 Jan 1970 00:00:00 GMT";
        for modified in [
            UNIX_EPOCH - 3653 * day,
            UNIX_EPOCH - Duration::from_nanos(1),
        ] {
            let v = Validators {
                etag: ETAG,
                last_modified: modified,
            };
            let fields = |name: &str, value: &'static str| {
                let mut fields = Fields::default();
                match name {
                    "If-Modified-Since" => fields.if_modified_since = Some(value.into()),
                    _ => fields.if_unmodified_since = Some(value.into()),
                }
                fields
            };
            // We send the epoch as its Last-Modified: revalidating with it is a 304, and
            // it has not changed since then.
            let ims = fields("If-Modified-Since", epoch_date);
            assert_eq!(evaluate(&ims, &v, now), Outcome::NotModified);
            let ius = fields("If-Unmodified-Since", epoch_date);
            assert_eq!(evaluate(&ius, &v, now), Outcome::Proceed);
            // A date that stands for many times is no strong validator.
            assert!(!if_range_matches(epoch_date, &v, now));
            assert!(if_range_matches(ETAG, &v, now));
        }
    }

    #[test]
    fn malformed_tag_lists_match_nothing() {
        for list in ["5f-a", "\"5f-a", "W/5f-a", "\"x\" junk \"5f-a\""] {
            assert!(!matches_any(list, ETAG, Comparison::Weak), "{list}");
        }
    }
}
