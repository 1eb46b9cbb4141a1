//! Byte ranges (RFC 9110 §14): parse a `Range` field, resolve it against a length, coalesce,
//! refuse abusive sets. Pure. May use: std.

/// Most range specs honoured in one request; more is answered with the whole file.
pub const MAX_RANGES: usize = 100;

/// One satisfiable range, `start` to `start + len - 1` inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub len: u64,
}

impl ByteRange {
    pub fn end(&self) -> u64 {
        self.start + self.len - 1
    }

    /// `bytes START-END/COMPLETE`, the `Content-Range` value.
    pub fn content_range(&self, complete: u64) -> String {
        format!("bytes {}-{}/{complete}", self.start, self.end())
    }
}

/// What a `Range` field asks of a representation of `len` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ranges {
    /// No usable range: send the whole representation (200). The answer for a field that is
    /// not `bytes=…` (another unit), and for an abusive set (RFC 9110 §14.2 lets us ignore
    /// either).
    Full,
    /// One or more satisfiable ranges, sorted and coalesced (206).
    Partial(Vec<ByteRange>),
    /// Nothing satisfiable, or a `bytes=` set with an invalid spec (416; RFC 9110 §14.2 lets
    /// a server reject an invalid set, and nginx does).
    Unsatisfiable,
}

enum Spec {
    /// `first-last` or `first-`.
    From(u64, Option<u64>),
    /// `-suffix`.
    Suffix(u64),
}

/// Resolves `field` (the `Range` value) against a representation of `len` bytes.
pub fn resolve(field: &str, len: u64) -> Ranges {
    let specs = match parse(field) {
        Syntax::NotBytes => return Ranges::Full,
        Syntax::Invalid => return Ranges::Unsatisfiable,
        Syntax::Specs(specs) => specs,
    };
    if specs.len() > MAX_RANGES {
        return Ranges::Full;
    }
    let mut ranges: Vec<ByteRange> = specs
        .iter()
        .filter_map(|spec| satisfiable(spec, len))
        .collect();
    if ranges.is_empty() {
        return Ranges::Unsatisfiable;
    }
    // Ranges that add up to more than the file ask for bytes more than once: that is an
    // amplification pattern, not a download manager (Apache applies the same rule).
    let asked: u64 = ranges.iter().map(|r| r.len).fold(0, u64::saturating_add);
    if ranges.len() > 1 && asked > len {
        return Ranges::Full;
    }
    ranges.sort_by_key(|r| r.start);
    let mut merged: Vec<ByteRange> = Vec::with_capacity(ranges.len());
    for range in ranges {
        match merged.last_mut() {
            // Overlapping or adjacent: one part (RFC 9110 §14.3 suggests coalescing).
            Some(last) if range.start <= last.end() + 1 => {
                let end = last.end().max(range.end());
                last.len = end - last.start + 1;
            }
            _ => merged.push(range),
        }
    }
    Ranges::Partial(merged)
}

enum Syntax {
    /// Not `bytes=` followed by at least one spec: ignore the field.
    NotBytes,
    /// `bytes=` with a spec that is not `a-b`, `a-` or `-n` (or has `b < a`).
    Invalid,
    Specs(Vec<Spec>),
}

/// `bytes=spec, spec, ...` (RFC 9110 §14.1.1: no whitespace around `=` or inside a spec;
/// empty list elements are allowed, §5.6.1.2).
fn parse(field: &str) -> Syntax {
    let field = field.trim();
    let Some(set) = field
        .get(..6)
        .filter(|unit| unit.eq_ignore_ascii_case("bytes="))
        .map(|_| &field[6..])
    else {
        return Syntax::NotBytes;
    };
    let mut specs = Vec::new();
    for spec in set.split(',').map(|s| s.trim_matches([' ', '\t'])) {
        if spec.is_empty() {
            continue;
        }
        // Stop early: parsing a megabyte of specs is work for nothing.
        if specs.len() > MAX_RANGES {
            return Syntax::Specs(specs);
        }
        match parse_spec(spec) {
            Some(spec) => specs.push(spec),
            None => return Syntax::Invalid,
        }
    }
    if specs.is_empty() {
        Syntax::NotBytes
    } else {
        Syntax::Specs(specs)
    }
}

fn parse_spec(spec: &str) -> Option<Spec> {
    let (first, last) = spec.split_once('-')?;
    if first.is_empty() {
        return Some(Spec::Suffix(number(last)?));
    }
    let first = number(first)?;
    let last = if last.is_empty() {
        None
    } else {
        Some(number(last)?)
    };
    if last.is_some_and(|last| last < first) {
        return None;
    }
    Some(Spec::From(first, last))
}

/// A run of digits as a number; one too large for a u64 saturates to `u64::MAX`, which
/// means the same thing to every use: a last-byte-pos past the end is "to the end" (RFC 9110
/// §14.1.1), a suffix longer than the file is the whole file, and a first-byte-pos past the
/// end is unsatisfiable. None of them is a syntax error.
fn number(digits: &str) -> Option<u64> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(digits.parse().unwrap_or(u64::MAX))
}

fn satisfiable(spec: &Spec, len: u64) -> Option<ByteRange> {
    match *spec {
        Spec::From(first, _) if first >= len => None,
        Spec::From(first, last) => {
            let end = last.map_or(len - 1, |last| last.min(len - 1));
            Some(ByteRange {
                start: first,
                len: end - first + 1,
            })
        }
        Spec::Suffix(0) => None,
        Spec::Suffix(_) if len == 0 => None,
        Spec::Suffix(suffix) => {
            let take = suffix.min(len);
            Some(ByteRange {
                start: len - take,
                len: take,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u64, end: u64) -> ByteRange {
        ByteRange {
            start,
            len: end - start + 1,
        }
    }

    #[test]
    fn single_ranges() {
        let table = [
            ("bytes=0-0", r(0, 0)),
            ("bytes=0-499", r(0, 499)),
            ("bytes=500-999", r(500, 999)),
            ("bytes=500-", r(500, 999)),
            ("bytes=-500", r(500, 999)),
            ("bytes=-5000", r(0, 999)),
            ("bytes=900-5000", r(900, 999)),
            ("bytes=999-", r(999, 999)),
            ("BYTES=1-2", r(1, 2)),
            ("bytes=,0-1", r(0, 1)),
            ("bytes=0-1 , ", r(0, 1)),
            ("bytes=0-1,", r(0, 1)),
            // A last-byte-pos past the end, however large, means "to the end" (§14.1.1).
            ("bytes=0-99999999999999999999", r(0, 999)),
            ("bytes=10-18446744073709551615", r(10, 999)),
            ("bytes=10-18446744073709551616", r(10, 999)),
            ("bytes=10-000000000000000000000000000000000099", r(10, 99)),
            // A suffix longer than the file is the whole file.
            ("bytes=-99999999999999999999999", r(0, 999)),
            ("bytes=-18446744073709551615", r(0, 999)),
        ];
        for (field, range) in table {
            assert_eq!(
                resolve(field, 1000),
                Ranges::Partial(vec![range]),
                "{field}"
            );
        }
    }

    #[test]
    fn past_four_gib() {
        let len = (5u64 << 30) + 10;
        assert_eq!(
            resolve("bytes=5368709120-", len),
            Ranges::Partial(vec![r(5 << 30, len - 1)])
        );
        assert_eq!(
            resolve("bytes=-10", len),
            Ranges::Partial(vec![r(len - 10, len - 1)])
        );
        assert_eq!(
            r(5 << 30, len - 1).content_range(len),
            "bytes 5368709120-5368709129/5368709130"
        );
    }

    #[test]
    fn unsatisfiable_and_ignored() {
        for field in [
            "bytes=1000-",
            "bytes=1000-2000",
            "bytes=-0",
            "bytes=5000-6000,2000-",
            // A first-byte-pos past the end, however large, is unsatisfiable (§14.1.2).
            "bytes=99999999999999999999999-",
            "bytes=99999999999999999999999-99999999999999999999999",
            "bytes=18446744073709551615-",
        ] {
            assert_eq!(resolve(field, 1000), Ranges::Unsatisfiable, "{field}");
        }
        assert_eq!(resolve("bytes=0-", 0), Ranges::Unsatisfiable);
        assert_eq!(resolve("bytes=-1", 0), Ranges::Unsatisfiable);
        // `bytes=` with an invalid spec: rejected, as nginx does.
        for field in [
            // last < first, however large first is.
            "bytes=99999999999999999999999-5",
            "bytes=5-1",
            "bytes=a-b",
            "bytes=1-2-3",
            "bytes=0-1;x",
            "bytes=+1-2",
            "bytes=0x1-2",
            "bytes=--1",
            "bytes=-",
            "bytes=0 - 1",
            "bytes=0-1,x",
            "bytes=0-1,5-1",
            "bytes=0-1, bytes=2-3",
        ] {
            assert_eq!(resolve(field, 1000), Ranges::Unsatisfiable, "{field}");
        }
        // Not a bytes range set at all: the field is ignored.
        for field in [
            "bytes=",
            "bytes",
            "items=0-1",
            "bytes = 0-1",
            "byte=0-1",
            "",
        ] {
            assert_eq!(resolve(field, 1000), Ranges::Full, "{field}");
        }
    }

    #[test]
    fn several_ranges_are_sorted_and_coalesced() {
        assert_eq!(
            resolve("bytes=500-599,0-99,200-299", 1000),
            Ranges::Partial(vec![r(0, 99), r(200, 299), r(500, 599)])
        );
        assert_eq!(
            resolve("bytes=0-10,5-20,21-30,100-110", 1000),
            Ranges::Partial(vec![r(0, 30), r(100, 110)])
        );
        assert_eq!(
            resolve("bytes=0-1,2-3", 1000),
            Ranges::Partial(vec![r(0, 3)])
        );
        // A huge last-byte-pos in a set is still "to the end".
        assert_eq!(
            resolve("bytes=0-1,5-99999999999999999999", 1000),
            Ranges::Partial(vec![r(0, 1), r(5, 999)])
        );
        // Unsatisfiable specs among satisfiable ones are dropped.
        assert_eq!(
            resolve("bytes=0-1,5000-", 1000),
            Ranges::Partial(vec![r(0, 1)])
        );
    }

    #[test]
    fn abusive_sets_get_the_whole_file() {
        let many = format!("bytes={}", vec!["0-0"; MAX_RANGES + 1].join(","));
        assert_eq!(resolve(&many, 1000), Ranges::Full);
        let at_cap: Vec<String> = (0..MAX_RANGES)
            .map(|i| format!("{}-{}", i * 2, i * 2))
            .collect();
        assert!(
            matches!(resolve(&format!("bytes={}", at_cap.join(",")), 1000), Ranges::Partial(p) if p.len() == MAX_RANGES)
        );
        // The same bytes asked for over and over.
        assert_eq!(resolve("bytes=0-,0-,0-", 1000), Ranges::Full);
        assert_eq!(resolve("bytes=0-999,0-999", 1000), Ranges::Full);
        // A huge list is not parsed to its end.
        let huge = format!("bytes={}", vec!["1-2"; 100_000].join(","));
        assert_eq!(resolve(&huge, 1000), Ranges::Full);
    }
}
