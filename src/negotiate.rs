//! Proactive negotiation (RFC 9110 §12): which precompressed variant an `Accept-Encoding`
//! field allows, and whether an `Accept` field asks for JSON. Pure. May use: std.

/// A content coding we can serve from a file on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Br,
    Gzip,
    Identity,
}

impl Coding {
    /// The file-name suffix of the precompressed variant.
    pub fn suffix(self) -> &'static str {
        match self {
            Coding::Br => ".br",
            Coding::Gzip => ".gz",
            Coding::Identity => "",
        }
    }

    /// The `Content-Encoding` value; `None` for identity.
    pub fn name(self) -> Option<&'static str> {
        match self {
            Coding::Br => Some("br"),
            Coding::Gzip => Some("gzip"),
            Coding::Identity => None,
        }
    }
}

/// Picks the coding to send among `available` (identity is always available), or `None` if
/// the client accepts none of them (406). Highest q-value wins; ties prefer br, then gzip,
/// then identity. Without the field we send identity (a client that did not ask for a
/// coding gets the plain file).
pub fn choose(accept_encoding: Option<&str>, available: &[Coding]) -> Option<Coding> {
    let Some(field) = accept_encoding else {
        return Some(Coding::Identity);
    };
    let weights = Weights::parse(field);
    [Coding::Br, Coding::Gzip, Coding::Identity]
        .into_iter()
        .filter(|coding| *coding == Coding::Identity || available.contains(coding))
        .map(|coding| (coding, weights.of(coding)))
        .filter(|&(_, q)| q > 0)
        // max_by_key keeps the last of equals; iterate in reverse preference to keep the first.
        .rev()
        .max_by_key(|&(_, q)| q)
        .map(|(coding, _)| coding)
}

/// q-values in thousandths (RFC 9110 §12.4.2: at most three decimals).
struct Weights {
    br: Option<u16>,
    gzip: Option<u16>,
    identity: Option<u16>,
    any: Option<u16>,
}

impl Weights {
    fn parse(field: &str) -> Weights {
        let mut weights = Weights {
            br: None,
            gzip: None,
            identity: None,
            any: None,
        };
        for element in field.split(',') {
            let mut parts = element.split(';');
            let coding = parts.next().unwrap_or("").trim();
            if coding.is_empty() {
                continue;
            }
            let mut q = Some(1000);
            for param in parts {
                if let Some((name, value)) = param.split_once('=') {
                    if name.trim().eq_ignore_ascii_case("q") {
                        q = qvalue(value.trim());
                    }
                }
            }
            // An element with an unreadable weight is ignored.
            let Some(q) = q else { continue };
            let slot = if coding.eq_ignore_ascii_case("br") {
                &mut weights.br
            } else if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
                &mut weights.gzip
            } else if coding.eq_ignore_ascii_case("identity") {
                &mut weights.identity
            } else if coding == "*" {
                &mut weights.any
            } else {
                continue;
            };
            *slot = Some(q);
        }
        weights
    }

    fn of(&self, coding: Coding) -> u16 {
        match coding {
            Coding::Br => self.br.or(self.any).unwrap_or(0),
            Coding::Gzip => self.gzip.or(self.any).unwrap_or(0),
            // Identity is acceptable unless excluded by name or by `*;q=0` (§12.5.3).
            Coding::Identity => self.identity.or(self.any).unwrap_or(1),
        }
    }
}

/// `0`, `0.5`, `1`, `1.000` → thousandths; anything else → `None`.
fn qvalue(text: &str) -> Option<u16> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths: u16 = format!("{fraction:0<3}").parse().ok()?;
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// Whether an `Accept` field asks for `application/json` (with a non-zero weight).
pub fn wants_json(accept: Option<&str>) -> bool {
    accept.is_some_and(|field| {
        field.split(',').any(|element| {
            let mut parts = element.split(';');
            let media = parts.next().unwrap_or("").trim();
            let q = parts
                .filter_map(|p| p.split_once('='))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case("q"))
                .map_or(Some(1000), |(_, value)| qvalue(value.trim()));
            media.eq_ignore_ascii_case("application/json") && q.is_some_and(|q| q > 0)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use Coding::*;

    #[test]
    fn choices() {
        let both = &[Br, Gzip][..];
        let table: &[(Option<&str>, &[Coding], Option<Coding>)] = &[
            (None, both, Some(Identity)),
            (Some(""), both, Some(Identity)),
            (Some("gzip, deflate, br, zstd"), both, Some(Br)),
            (Some("gzip, deflate, br"), &[Gzip], Some(Gzip)),
            (Some("gzip, deflate, br"), &[], Some(Identity)),
            (Some("gzip"), both, Some(Gzip)),
            (Some("x-gzip"), both, Some(Gzip)),
            (Some("br;q=0.5, gzip;q=0.8"), both, Some(Gzip)),
            (Some("br;q=0, gzip;q=0"), both, Some(Identity)),
            (Some("br;q=0, gzip;q=0, identity;q=0"), both, None),
            (Some("identity;q=0"), both, None),
            (Some("br, identity;q=0"), both, Some(Br)),
            (Some("gzip, identity;q=0"), &[Br], None),
            (Some("*"), both, Some(Br)),
            (Some("*;q=0.5, gzip"), both, Some(Gzip)),
            (Some("*;q=0"), both, None),
            (Some("*;q=0, identity"), both, Some(Identity)),
            (Some("deflate"), both, Some(Identity)),
            (Some("BR;Q=1.0"), both, Some(Br)),
            (Some("br;q=2"), both, Some(Identity)),
            (Some("br;q=0.0001"), both, Some(Identity)),
            (Some("gzip;q=1, br;q=1"), both, Some(Br)),
            (Some("identity;q=1, br;q=0.9"), both, Some(Identity)),
        ];
        for (field, available, expected) in table {
            assert_eq!(
                choose(*field, available),
                *expected,
                "{field:?} {available:?}"
            );
        }
    }

    #[test]
    fn json_accept() {
        assert!(wants_json(Some("application/json")));
        assert!(wants_json(Some("text/html;q=0.9, Application/JSON")));
        assert!(!wants_json(Some("application/json;q=0")));
        assert!(!wants_json(Some("text/html,*/*")));
        assert!(!wants_json(None));
    }
}
