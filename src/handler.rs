//! One parsed request → one `Response`, in the order the checks must happen: method, target,
//! path safety, resolution, file headers. No sockets. May use: request, files, response, error.

use std::fs::{File, Metadata};
use std::path::Path;
use std::time::UNIX_EPOCH;

use crate::error::HttpError;
use crate::files::{self, Resolved};
use crate::request::{Method, Request};
use crate::response::{Body, Response};

/// The reply to `request` for the site under `root` (canonical).
pub fn respond(request: &Request, root: &Path) -> Result<Response, HttpError> {
    // RFC 9110 §9.1: GET and HEAD are the methods a static server implements.
    if !matches!(request.method, Method::Get | Method::Head) {
        return Err(HttpError::MethodNotAllowed);
    }
    let target = files::split_target(&request.target)?;
    let path = files::decode_path(target.path)?;
    match files::resolve(root, &path, target.query)? {
        Resolved::Redirect(location) => Ok(redirect(location)),
        Resolved::File {
            file,
            meta,
            content_type,
        } => Ok(file_response(file, &meta, content_type)),
    }
}

fn redirect(location: String) -> Response {
    // The body is fixed: the Location may carry the client's query, which we never echo
    // into HTML.
    let mut response = Response::new(
        301,
        Body::Static(b"<!DOCTYPE html>\n<html><head><title>301 Moved Permanently</title></head>\n<body><h1>301 Moved Permanently</h1><hr>httpd</body></html>\n"),
    );
    response.content_type = Some("text/html");
    response.location = Some(location);
    response
}

fn file_response(file: File, meta: &Metadata, content_type: &'static str) -> Response {
    let len = meta.len();
    let modified = meta.modified().ok();
    let mut response = Response::new(
        200,
        Body::File {
            file,
            offset: 0,
            len,
        },
    );
    response.content_type = Some(content_type);
    response.last_modified = modified;
    response.etag = Some(etag(meta));
    response.accept_ranges = true;
    response
}

/// A strong validator from size and modification time (to the nanosecond): stable across
/// restarts for an unchanged file, different when either changes.
pub fn etag(meta: &Metadata) -> String {
    let nanos = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    format!("\"{nanos:x}-{:x}\"", meta.len())
}
