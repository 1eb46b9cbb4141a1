//! One parsed request → one `Response`, in the order RFC 9110 wants the checks: method,
//! health check, target, path safety, resolution, content negotiation, preconditions,
//! range, reply headers. No sockets. May use: request, url, files, negotiate, conditional,
//! range, listing, response, error, status, filecache, scoreboard.

use std::collections::hash_map::RandomState;
use std::fs::{File, Metadata};
use std::hash::{BuildHasher, Hash, Hasher};
use std::io::Write as _;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::conditional::{self, Outcome, Validators};
use crate::error::{ErrorPages, HttpError};
use crate::filecache::{self, FileCache, Found, Lookup};
use crate::files::{self, RelPath, Resolved, Root};
use crate::listing;
use crate::negotiate;
use crate::range::{self, ByteRange, Ranges};
use crate::request::{Method, Request};
use crate::response::{Body, Charset, Part, Response, Text};
use crate::scoreboard::StatusPage;
use crate::status;
use crate::url::{self, SafePath};

/// What the handler needs to know about the site, fixed at start-up.
#[derive(Debug, Clone)]
pub struct Site {
    /// The document root, opened once: every path is resolved beneath its descriptor.
    pub root: Root,
    /// `--list`: list directories that have no index file (else 404).
    pub list: bool,
    /// `--health PATH`: answered with 200 `ok` without touching the disk.
    pub health: Option<String>,
    /// `--cache-control VALUE`: sent on 200, 206 and 304 file responses.
    pub cache_control: Option<String>,
    pub pages: ErrorPages,
    /// `--file-cache SIZE`: what lookups found, kept exact by inotify (`None`: off).
    pub cache: Option<Arc<FileCache>>,
    /// `--charset VALUE`: the charset parameter of textual `Content-Type`s (none by default).
    pub charset: Charset,
    /// `--status PATH`: the status page and the counters it shows (`None`: off).
    pub status: Option<StatusPage>,
}

/// The reply to `request` from a client whose address is not known (so the status page is
/// not for it).
pub fn respond(request: &Request, site: &Site) -> Result<Response, HttpError> {
    respond_to(request, site, None)
}

/// The reply to `request` from `client`.
pub fn respond_to(
    request: &Request,
    site: &Site,
    client: Option<IpAddr>,
) -> Result<Response, HttpError> {
    #[cfg(feature = "fault-injection")]
    fault_injection(request);
    // RFC 9110 §9.1: GET and HEAD are the methods a static server implements.
    if !matches!(request.method, Method::Get | Method::Head) {
        return Err(HttpError::MethodNotAllowed);
    }
    let target = url::split_target(request.target)?;
    if site.health.as_deref() == Some(target.path) {
        return Ok(health(site));
    }
    if let Some(status) = site.status.as_ref().filter(|s| s.path == target.path) {
        return status.respond(request, target.query, client, site.cache.as_deref());
    }
    let path = url::decode_path(target.path)?;
    let cache = site.cache.as_deref();
    let resolved =
        match filecache::resolve(cache, (&site.root, &site.charset), &path, target.query)? {
            Lookup::File(found) => return file_reply(request, site, &found),
            Lookup::Other(resolved) => resolved,
        };
    match *resolved {
        Resolved::Redirect(location) => Ok(redirect(site, location)),
        Resolved::Directory { dir, meta, rel } if site.list => {
            listing(request, site, &path, (&dir, &meta, &rel), target.query)
        }
        // Without a listing, a directory with no index is not there, as far as a client can
        // tell (GitHub Pages and Caddy answer 404 too): it does not reveal which directories
        // exist.
        Resolved::Directory { .. } => Err(HttpError::NotFound),
        // filecache::resolve hands every file over as `Lookup::File`.
        Resolved::File { .. } => Err(HttpError::Internal),
    }
}

/// Only with the `fault-injection` feature (tests/fault.rs), never in a normal build: a
/// request for the path named by `HTTPD_DEBUG_PANIC_PATH` panics, so tests can prove a bug
/// costs one request, not a worker.
#[cfg(feature = "fault-injection")]
fn fault_injection(request: &Request) {
    if let Some(path) = std::env::var_os("HTTPD_DEBUG_PANIC_PATH") {
        if request.target.as_bytes() == path.as_encoded_bytes() {
            panic!("fault injected for {}", request.target);
        }
    }
}

fn health(site: &Site) -> Response {
    let mut response = Response::new(200, Body::Static(b"ok"));
    response.content_type = Some(site.charset.content_type("text/plain"));
    response.extra.push(("Cache-Control", "no-store".into()));
    response
}

fn redirect(site: &Site, location: String) -> Response {
    // The body is fixed: the Location may carry the client's query, which we never echo
    // into HTML.
    let mut response = Response::new(301, Body::Static(status::page(301)));
    response.content_type = Some(site.charset.content_type("text/html"));
    response.location = Some(location);
    response
}

/// A file, after negotiation (RFC 9110 §12.5.3), preconditions (§13.2.2) and ranges (§14).
fn file_reply(request: &Request, site: &Site, found: &Found) -> Result<Response, HttpError> {
    let available = &found.available;
    // Every reply for a resource that has variants says the choice depended on the field.
    let vary = |mut response: Response| {
        if !available.is_empty() {
            response.extra.push(("Vary", "Accept-Encoding".into()));
        }
        response
    };
    let fields = &request.fields;
    let Some(coding) = negotiate::choose(fields.accept_encoding.as_deref(), available) else {
        return Ok(vary(site.pages.render(HttpError::NotAcceptable)));
    };
    // choose() picks only from `available` (or the identity, always first).
    let Some(rep) = found.reps.iter().find(|rep| rep.coding == coding) else {
        return Err(HttpError::Internal);
    };
    // The validators and the type were rendered when the file was resolved (once per cache
    // entry): a reply copies them.
    let (file, meta, content_type) = (&rep.file, &rep.meta, &found.content_type);
    let modified = meta.modified().unwrap_or(UNIX_EPOCH);
    let now = SystemTime::now();
    // RFC 9110 §8.8.2.1: a modification time in the future is replaced by now; compare what
    // we send. (The head shows it as exactly the Date; see `Response::encode_head`.)
    let validators = Validators {
        etag: &rep.etag,
        last_modified: modified.min(now),
    };
    let len = meta.len();

    let mut response = match conditional::evaluate(fields, &validators, now) {
        Outcome::Failed => return Ok(vary(site.pages.render(HttpError::PreconditionFailed))),
        Outcome::NotModified => Response::new(304, Body::Empty),
        Outcome::Proceed => {
            let ranges = match (&fields.range, &fields.if_range) {
                (None, _) => Ranges::Full,
                // RFC 9110 §13.1.5: a stale If-Range turns the range request into a full one.
                (Some(_), Some(if_range))
                    if !conditional::if_range_matches(if_range, &validators, now) =>
                {
                    Ranges::Full
                }
                (Some(field), _) => range::resolve(field, len),
            };
            match ranges {
                Ranges::Full => {
                    // A body the cache holds in memory (its length is the fstat's).
                    let body = match &rep.body {
                        Some(body) => Body::Shared(Arc::clone(body)),
                        None => Body::File {
                            file: Arc::clone(file),
                            offset: 0,
                            len,
                        },
                    };
                    let mut response = Response::new(200, body);
                    response.content_type = Some(content_type.clone());
                    response
                }
                Ranges::Partial(ranges) if ranges.len() == 1 => {
                    let range = ranges[0];
                    let mut response = Response::new(
                        206,
                        Body::File {
                            file: Arc::clone(file),
                            offset: range.start,
                            len: range.len,
                        },
                    );
                    response.content_type = Some(content_type.clone());
                    response
                        .extra
                        .push(("Content-Range", range.content_range(len)));
                    response
                }
                Ranges::Partial(ranges) => {
                    let (body, multipart_type) =
                        multipart(Arc::clone(file), &ranges, content_type, len);
                    let mut response = Response::new(206, body);
                    response.content_type = Some(Text::Owned(multipart_type));
                    response
                }
                Ranges::Unsatisfiable => {
                    let mut response = site.pages.render(HttpError::RangeNotSatisfiable);
                    response
                        .extra
                        .push(("Content-Range", format!("bytes */{len}")));
                    response.accept_ranges = true;
                    return Ok(vary(response));
                }
            }
        }
    };
    // 200, 206 and 304 carry the validators and the caching policy; a 304 carries no other
    // representation metadata (RFC 9110 §15.4.5).
    let not_modified = response.status == 304;
    response.last_modified = Some(rep.modified.clone());
    response.etag = Some(Text::Shared(Arc::clone(&rep.etag)));
    response.accept_ranges = !not_modified;
    if let Some(name) = coding.name().filter(|_| !not_modified) {
        response.extra.push(("Content-Encoding", name.into()));
    }
    if let Some(cache_control) = &site.cache_control {
        response
            .extra
            .push(("Cache-Control", cache_control.clone()));
    }
    Ok(vary(response))
}

/// A `multipart/byteranges` body (RFC 9110 §14.6) over `ranges` of `file`, and its type.
fn multipart(
    file: Arc<File>,
    ranges: &[ByteRange],
    content_type: &str,
    complete: u64,
) -> (Body, String) {
    let boundary = boundary();
    let parts = ranges
        .iter()
        .enumerate()
        .map(|(i, range)| {
            let mut head = Vec::with_capacity(128);
            if i > 0 {
                head.extend_from_slice(b"\r\n");
            }
            let _ = write!(
                head,
                "--{boundary}\r\nContent-Type: {content_type}\r\nContent-Range: {}\r\n\r\n",
                range.content_range(complete)
            );
            Part {
                head,
                offset: range.start,
                len: range.len,
            }
        })
        .collect();
    let closing = format!("\r\n--{boundary}--\r\n").into_bytes();
    (
        Body::Multipart {
            file,
            parts,
            closing,
        },
        format!("multipart/byteranges; boundary={boundary}"),
    )
}

/// A boundary nobody can predict (so no file can be crafted to contain it): 128 bits from
/// std's randomly keyed SipHash over a counter and the time.
fn boundary() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut first = RandomState::new().build_hasher();
    first.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    first.write_u128(nanos);
    let a = first.finish();
    let mut second = RandomState::new().build_hasher();
    second.write_u64(a);
    format!("{a:016x}{:016x}", second.finish())
}

/// A directory without an index, listed (`--list`): HTML, or JSON for `?format=json` or
/// `Accept: application/json`, sorted as `?sort=name|size|date&order=asc|desc` asks.
fn listing(
    request: &Request,
    site: &Site,
    path: &SafePath,
    (dir, meta, rel): (&File, &Metadata, &RelPath),
    query: Option<&str>,
) -> Result<Response, HttpError> {
    let (mut entries, truncated) = files::read_dir(&site.root, dir, rel)?;
    let now = SystemTime::now();
    // Before the sort and the hash, so both follow the times the page shows.
    listing::clamp_times(&mut entries, now);
    // `?sort=…&order=…`; anything else in the query is the default order, never an error.
    let order = listing::Order::from_query(query);
    order.sort(&mut entries);
    let json = query.is_some_and(|q| q.split('&').any(|pair| pair == "format=json"))
        || negotiate::wants_json(request.fields.accept.as_deref());
    // The page is a function of the format, the order (its header links show it even where
    // the entries come out the same), the path and the entries, so a hash of them is a strong
    // validator: revalidation costs a directory read, never a page.
    let mut hasher = std::hash::DefaultHasher::new();
    (json, order, &path.segments, &entries, truncated).hash(&mut hasher);
    let etag = format!("\"{:016x}\"", hasher.finish());
    let validators = Validators {
        etag: &etag,
        // RFC 9110 §8.8.2.1: never later than now.
        last_modified: meta.modified().unwrap_or(UNIX_EPOCH).min(now),
    };
    let listed = |mut response: Response| {
        response.etag = Some(Text::Owned(etag.clone()));
        response.extra.push(("Vary", "Accept".into()));
        // Generated from the directory as it is now: caches must revalidate it rather than
        // guess a freshness lifetime (RFC 9111 §4.2.2).
        response.extra.push(("Cache-Control", "no-cache".into()));
        response
    };
    match conditional::evaluate(&request.fields, &validators, now) {
        Outcome::NotModified => return Ok(listed(Response::new(304, Body::Empty))),
        Outcome::Failed => return Ok(listed(site.pages.render(HttpError::PreconditionFailed))),
        Outcome::Proceed => {}
    }
    // A listing is written in UTF-8 whatever `--charset` says the files are: the HTML page
    // always says so, and with `--charset` the JSON says so too, as every JSON reply then
    // names its charset.
    let (body, content_type) = if json {
        let media = match site.charset.value() {
            Some(_) => "application/json; charset=utf-8",
            None => "application/json",
        };
        (listing::json(&entries), media)
    } else {
        (
            listing::html(&path.segments, &entries, order, truncated),
            "text/html; charset=utf-8",
        )
    };
    let mut response = Response::new(200, Body::Bytes(body));
    response.content_type = Some(Text::Static(content_type));
    Ok(listed(response))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries_differ() {
        let a = boundary();
        let b = boundary();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    }
}
