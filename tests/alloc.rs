//! What one keep-alive GET of a small file allocates, counted by a global allocator: the
//! in-process path a worker runs for it (`request::parse` → `handler::respond` → the head
//! encoded into a reused buffer → the body read in after it → the response dropped), driven
//! 1000 times after warm-up. Socket reads and writes are not in it (they allocate nothing:
//! the connection's input and output buffers are reused), nor the access log (off in the
//! measurement runs, `-l off`; when on, it formats into the worker's buffer).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::TempDir;
use httpd::internals::handler::{self, Site};
use httpd::internals::request::{self, Parsed};
use httpd::internals::response::{Body, Clock};
use httpd::Config;

/// Counts the allocations (and reallocations) of the thread that asked for counting.
struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
/// The sizes of the first allocations counted, to name them when the bound is crossed.
static SIZES: [AtomicUsize; 16] = [const { AtomicUsize::new(0) }; 16];

thread_local! {
    // Const-initialised and without a destructor, so reading it never allocates.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn count(size: usize) {
    if COUNTING.with(Cell::get) {
        let n = ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        if let Some(slot) = SIZES.get(n) {
            slot.store(size, Ordering::Relaxed);
        }
    }
}

// SAFETY: every call is passed on to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// ApacheBench's `-k` request, as `ab -k` sends it for the measurement runs.
const AB_KEEPALIVE: &[u8] = b"GET /small.txt HTTP/1.0\r\nConnection: Keep-Alive\r\nHost: 127.0.0.1:8080\r\nUser-Agent: ApacheBench/2.3\r\nAccept: */*\r\n\r\n";

/// One request as a worker serves it, into the worker's reused `output`.
fn serve(site: &Site, clock: &mut Clock, output: &mut Vec<u8>) -> u16 {
    let Ok(Parsed::Complete(request, _)) = request::parse(AB_KEEPALIVE) else {
        panic!("a complete request");
    };
    let response = handler::respond(&request, site).unwrap_or_else(|err| site.pages.render(err));
    response.encode_head(clock.now(), request.keep_alive, output);
    if let Body::File { file, offset, len } = &response.body {
        let head = output.len();
        output.resize(head + *len as usize, 0);
        file.read_exact_at(&mut output[head..], *offset)
            .expect("read the body");
    }
    response.status
}

/// Allocations per request of the path above, after warm-up, with the file cache on (the
/// default): 2. Each one that remains, and why:
/// 1. `url::decode_path`: the `SafePath`'s segment list and its one segment (`small.txt`)
///    — 2 (the decoding itself is on the stack; so is the cache key built from it).
///
/// Parsing allocates nothing (the request borrows from the input), nor does a cache hit (a
/// shared entry), nor the rest of the handler for a plain file (no `extra` headers without
/// variants or `--cache-control`; the `ETag`, `Last-Modified` and `Content-Type` values were
/// rendered into the entry when it was filled, and the reply shares them), nor encoding the
/// head (written into the reused buffer; the `Date` is the clock's, re-rendered in place once
/// a second and never parsed back, and a future Last-Modified is clamped to it by comparing
/// seconds), nor the body (in the entry, copied into the same buffer).
const BOUND_CACHED: usize = 2;

/// The same with `--file-cache 0`: 13. Path resolution then also allocates the `RelPath` for
/// `openat2`, joined into a `Vec` that `CString::new` grows by one for the NUL (2), the
/// `.br` and `.gz` probe names, the same way (4), the list of variants found (1), and the
/// lookup's result as the cache would keep it: the shared `Found` and its representations
/// (2), and the representation's `ETag` and `Last-Modified` values, each rendered on the
/// stack and shared (2): the same values, made the same way, as a cached entry holds, so the
/// two paths send the same head (tests/cache_heads.rs).
///
/// The whole server, counted by valgrind's DHAT under `ab -k -c 1` (ab_results/borrow.sh
/// has the memcheck and callgrind counts): these, plus what valgrind itself causes (it lacks
/// openat2(2), so the server falls back to the component walk, which allocates per
/// component). The connection's own code (read, parse, reply, write, log) and the poller's
/// wake-ups allocate nothing.
const BOUND_UNCACHED: usize = 13;

/// Allocations for `N` requests of the path above, after warm-up, with `flags`.
fn allocations(flags: &[&str], n: usize) -> (usize, Vec<usize>) {
    let root = TempDir::new("alloc");
    root.write("small.txt", vec![b'x'; 1024]);
    let mut args = vec!["-r", root.path().to_str().expect("UTF-8 path")];
    args.extend_from_slice(flags);
    let site = Config::from_command_line(&args).expect("settings").site;
    let mut clock = Clock::default();
    let mut output = Vec::new();
    // Warm-up: the buffers grow to their size, the clock renders its strings, the cache fills.
    for _ in 0..10 {
        assert_eq!(serve(&site, &mut clock, &mut output), 200);
    }
    ALLOCATIONS.store(0, Ordering::Relaxed);
    COUNTING.with(|counting| counting.set(true));
    for _ in 0..n {
        serve(&site, &mut clock, &mut output);
    }
    COUNTING.with(|counting| counting.set(false));
    let total = ALLOCATIONS.load(Ordering::Relaxed);
    let first = SIZES.iter().map(|s| s.load(Ordering::Relaxed)).collect();
    (total, first)
}

// One test, both measurements in turn: the counter is shared by the whole binary.
#[test]
fn a_keep_alive_get_allocates_only_what_path_resolution_needs() {
    const N: usize = 1000;
    for (flags, bound) in [
        (&[][..], BOUND_CACHED),
        (&["--file-cache", "0"][..], BOUND_UNCACHED),
    ] {
        let (total, first) = allocations(flags, N);
        println!(
            "{flags:?}: {total} allocations in {N} requests ({} per request); sizes of the \
             first: {first:?}",
            total as f64 / N as f64
        );
        assert!(
            total <= bound * N,
            "{flags:?}: {total} allocations in {N} requests, more than {bound} per request; \
             sizes of the first: {first:?}"
        );
    }
}
