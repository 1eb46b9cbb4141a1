//! Request-head parsing on arbitrary bytes: never panics, never reads past its input, and a
//! complete head is never longer than the input or the head limit.
#![no_main]

use httpd::internals::request::{self, Parsed, MAX_HEAD, MAX_TARGET};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match request::parse(data) {
        Ok(Parsed::Complete(req, used)) => {
            assert!(used <= data.len() && used <= MAX_HEAD);
            assert!(req.target.len() <= MAX_TARGET);
            assert!(req.minor_version <= 1);
        }
        Ok(Parsed::Partial) => assert!(data.len() < MAX_HEAD),
        Err(err) => assert!((400..600).contains(&err.status())),
    }
    let _ = request::request_line(data);
});
