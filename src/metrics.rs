//! Live counters for the status page (`--status`): what each worker is doing right now, and
//! totals since start. The hot path only ever does Relaxed atomic stores and `fetch_add`s,
//! never a lock: each worker writes its own cache-line-aligned [`Slot`] (state, request,
//! counters, duration histogram buckets), the accept loop its own, and a scrape sums them.
//! With `--status` off nothing here exists, and each touch point is one `Option` test.
//! Knows nothing of HTTP beyond a status code and the text of a request line.
//! May use: std, sys (a coarse clock).

use std::fmt;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{fence, AtomicBool, AtomicI64, AtomicU64, AtomicU8, AtomicUsize};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Upper bounds of the request-duration histogram's buckets, in seconds (then +Inf): a
/// static file from memory takes tens of microseconds, a large one to a slow client seconds.
pub const BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];
/// The bounds in nanoseconds, for the comparison on the hot path.
const BUCKET_NANOS: [u64; 14] = [
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    5_000_000_000,
];
/// Bytes of a request's text kept for the scoreboard (method and target, cut there).
pub const TEXT: usize = 64;
const WORDS: usize = TEXT / 8;
/// Worker slots beyond `-w`: a worker that panicked claims a new slot before its old state
/// is dropped and frees the old one.
const SPARE: usize = 4;

/// What a worker is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Waiting for a connection to serve.
    Idle,
    /// Reading and parsing what a connection has sent.
    Reading,
    /// Answering a request: making the reply and writing what the socket takes.
    Writing,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::Reading => "reading",
            State::Writing => "writing",
        }
    }

    fn from_u8(v: u8) -> State {
        match v {
            1 => State::Reading,
            2 => State::Writing,
            _ => State::Idle,
        }
    }
}

/// Why a connection waits outside the workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parked {
    /// For (the rest of) a request.
    Read,
    /// For the client to make room for the rest of a reply.
    Write,
}

/// One thread's counters, alone on its cache lines (128 bytes: adjacent-line prefetch).
#[repr(align(128))]
#[derive(Default)]
struct Slot {
    claimed: AtomicBool,
    state: AtomicU8,
    /// When `state` last changed, in nanoseconds since the server started.
    since: AtomicU64,
    /// The request's text under a sequence lock: odd while it is being written.
    seq: AtomicU64,
    len: AtomicUsize,
    text: [AtomicU64; WORDS],
    /// Replies by status class, 1xx to 5xx.
    classes: [AtomicU64; 5],
    /// Bytes written to clients, heads included.
    sent: AtomicU64,
    /// Request durations: a count per bucket (not cumulative), the last one +Inf.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    nanos: AtomicU64,
}

/// Counters of the accept loop, apart from the workers'.
#[repr(align(128))]
#[derive(Default)]
struct Admission {
    accepted: AtomicU64,
    refused: AtomicU64,
    evicted: AtomicU64,
}

/// Gauges of parked connections, changed wherever a connection is parked or unparked.
#[repr(align(128))]
#[derive(Default)]
struct Parking {
    read: AtomicI64,
    write: AtomicI64,
}

/// What only the running server can tell: connections open, and ready ones queued for a
/// worker. Installed once, by the server, when it starts.
struct Probes {
    open: Arc<AtomicUsize>,
    queue: Box<dyn Fn() -> usize + Send + Sync>,
}

/// Every counter; shared (`Arc`) by the threads that count and the status page that reads.
pub struct Metrics {
    start: Instant,
    /// The coarse clock at the start, for the workers' state times ([`Metrics::nanos_now`]).
    coarse_start: u64,
    started_at: SystemTime,
    workers: usize,
    /// `workers + SPARE` worker slots, then the accept loop's.
    slots: Box<[Slot]>,
    admission: Admission,
    parking: Parking,
    probes: OnceLock<Probes>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("workers", &self.workers)
            .finish_non_exhaustive()
    }
}

impl Metrics {
    /// Counters for `workers` worker threads.
    pub fn new(workers: usize) -> Metrics {
        Metrics {
            start: Instant::now(),
            coarse_start: crate::sys::coarse_nanos(),
            started_at: SystemTime::now(),
            workers,
            slots: (0..workers + SPARE + 1).map(|_| Slot::default()).collect(),
            admission: Admission::default(),
            parking: Parking::default(),
            probes: OnceLock::new(),
        }
    }

    /// The server tells how to read the open-connection count and the length of the queue
    /// of connections ready for a worker. Only the first call counts.
    pub fn install_probes(
        &self,
        open: Arc<AtomicUsize>,
        queue: Box<dyn Fn() -> usize + Send + Sync>,
    ) {
        let _ = self.probes.set(Probes { open, queue });
    }

    /// A free worker slot for the calling worker, given back when the board drops; `None`
    /// if every slot is taken.
    pub fn worker_board(self: &Arc<Metrics>) -> Option<Board> {
        let slot = (0..self.workers + SPARE).find(|&i| {
            self.slots[i]
                .claimed
                .compare_exchange(false, true, Relaxed, Relaxed)
                .is_ok()
        })?;
        let board = Board {
            metrics: Arc::clone(self),
            slot,
            worker: true,
        };
        board.set(State::Idle);
        Some(board)
    }

    /// The accept loop's board: its 503s count, it has no state on the scoreboard.
    pub fn acceptor_board(self: &Arc<Metrics>) -> Board {
        Board {
            metrics: Arc::clone(self),
            slot: self.workers + SPARE,
            worker: false,
        }
    }

    pub fn accepted(&self) {
        self.admission.accepted.fetch_add(1, Relaxed);
    }

    /// A newcomer answered 503 (no room for it).
    pub fn refused(&self) {
        self.admission.refused.fetch_add(1, Relaxed);
    }

    /// An idle connection closed to make room for a newcomer.
    pub fn evicted(&self) {
        self.admission.evicted.fetch_add(1, Relaxed);
    }

    /// A connection parked (`delta` 1) or taken out (`-1`).
    pub fn parked(&self, why: Parked, delta: i64) {
        let gauge = match why {
            Parked::Read => &self.parking.read,
            Parked::Write => &self.parking.write,
        };
        gauge.fetch_add(delta, Relaxed);
    }

    /// Everything, read now (each counter exactly; together, not one instant).
    pub fn snapshot(&self) -> Snapshot {
        let now = self.start.elapsed();
        let mut snap = Snapshot {
            uptime: now,
            started_at: self
                .started_at
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
            workers: Vec::new(),
            accepted: self.admission.accepted.load(Relaxed),
            refused: self.admission.refused.load(Relaxed),
            evicted: self.admission.evicted.load(Relaxed),
            open: self.probes.get().map(|p| p.open.load(Relaxed)),
            queued: self.probes.get().map(|p| (p.queue)()),
            parked_read: self.parking.read.load(Relaxed).max(0).unsigned_abs(),
            parked_write: self.parking.write.load(Relaxed).max(0).unsigned_abs(),
            classes: [0; 5],
            sent: 0,
            buckets: [0; BUCKETS.len() + 1],
            duration: Duration::ZERO,
        };
        let mut nanos = 0u64;
        for (i, slot) in self.slots.iter().enumerate() {
            for (total, class) in snap.classes.iter_mut().zip(&slot.classes) {
                *total += class.load(Relaxed);
            }
            snap.sent += slot.sent.load(Relaxed);
            for (total, bucket) in snap.buckets.iter_mut().zip(&slot.buckets) {
                *total += bucket.load(Relaxed);
            }
            nanos = nanos.saturating_add(slot.nanos.load(Relaxed));
            if i < self.workers + SPARE && slot.claimed.load(Relaxed) {
                let since = Duration::from_nanos(slot.since.load(Relaxed));
                let now = Duration::from_nanos(self.nanos_now());
                snap.workers.push(Worker {
                    slot: i,
                    state: State::from_u8(slot.state.load(Relaxed)),
                    for_: now.saturating_sub(since),
                    request: slot.read_text(),
                });
            }
        }
        snap.duration = Duration::from_nanos(nanos);
        snap
    }

    /// Nanoseconds since the start, on the coarse clock (a worker changes state several
    /// times per request: this keeps that cheap; the page shows milliseconds).
    fn nanos_now(&self) -> u64 {
        crate::sys::coarse_nanos().saturating_sub(self.coarse_start)
    }
}

impl Slot {
    /// The request's text, consistent (a sequence lock read; retried while a write is under
    /// way, given up after a few tries).
    fn read_text(&self) -> String {
        for _ in 0..64 {
            let before = self.seq.load(Acquire);
            if before % 2 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let len = self.len.load(Relaxed).min(TEXT);
            let mut bytes = [0u8; TEXT];
            for (chunk, word) in bytes.chunks_mut(8).zip(&self.text) {
                chunk.copy_from_slice(&word.load(Relaxed).to_le_bytes());
            }
            fence(Acquire);
            if self.seq.load(Relaxed) == before {
                return String::from_utf8_lossy(&bytes[..len]).into_owned();
            }
        }
        String::new()
    }

    /// Stores `parts` joined (cut at [`TEXT`] bytes). Only the slot's own thread writes.
    fn write_text(&self, parts: &[&[u8]]) {
        let mut bytes = [0u8; TEXT];
        let mut len = 0;
        for part in parts {
            let take = part.len().min(TEXT - len);
            bytes[len..len + take].copy_from_slice(&part[..take]);
            len += take;
        }
        let seq = self.seq.load(Relaxed);
        self.seq.store(seq.wrapping_add(1), Relaxed);
        fence(Release);
        self.len.store(len, Relaxed);
        for (word, chunk) in self.text.iter().zip(bytes.chunks(8)) {
            let mut le = [0u8; 8];
            le.copy_from_slice(chunk);
            word.store(u64::from_le_bytes(le), Relaxed);
        }
        self.seq.store(seq.wrapping_add(2), Release);
    }
}

/// One thread's handle on its slot.
pub struct Board {
    metrics: Arc<Metrics>,
    slot: usize,
    worker: bool,
}

impl fmt::Debug for Board {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Board").field("slot", &self.slot).finish()
    }
}

impl Board {
    fn slot(&self) -> &Slot {
        &self.metrics.slots[self.slot]
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The worker's state changes to `state` (the request text stays until the next one).
    pub fn set(&self, state: State) {
        if !self.worker {
            return;
        }
        let slot = self.slot();
        slot.state.store(state as u8, Relaxed);
        slot.since.store(self.metrics.nanos_now(), Relaxed);
    }

    /// The worker starts answering the request `parts` (method, target: joined, cut).
    pub fn request(&self, parts: &[&[u8]]) {
        if self.worker {
            self.slot().write_text(parts);
        }
        self.set(State::Writing);
    }

    /// A reply ended (completed or cut off) with `status`, after `sent` bytes, `took` after
    /// its request was read.
    pub fn replied(&self, status: u16, sent: u64, took: Option<Duration>) {
        let slot = self.slot();
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        slot.classes[class].fetch_add(1, Relaxed);
        slot.sent.fetch_add(sent, Relaxed);
        if let Some(took) = took {
            let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
            let bucket = BUCKET_NANOS
                .iter()
                .position(|&bound| nanos <= bound)
                .unwrap_or(BUCKET_NANOS.len());
            slot.buckets[bucket].fetch_add(1, Relaxed);
            slot.nanos.fetch_add(nanos, Relaxed);
        }
    }
}

impl Drop for Board {
    fn drop(&mut self) {
        if self.worker {
            self.set(State::Idle);
            self.slot().write_text(&[]);
            self.slot().claimed.store(false, Relaxed);
        }
    }
}

/// A worker as the scoreboard shows it.
#[derive(Debug, Clone)]
pub struct Worker {
    pub slot: usize,
    pub state: State,
    /// How long it has been in `state`.
    pub for_: Duration,
    /// The request it answers, or answered last (method and target, cut at [`TEXT`]).
    pub request: String,
}

/// Every counter at one scrape.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub uptime: Duration,
    /// Since the Unix epoch.
    pub started_at: Duration,
    pub workers: Vec<Worker>,
    pub accepted: u64,
    pub refused: u64,
    pub evicted: u64,
    /// Connections open (`None` before the server installed its probes).
    pub open: Option<usize>,
    /// Connections ready for a worker and not yet taken.
    pub queued: Option<usize>,
    pub parked_read: u64,
    pub parked_write: u64,
    /// Replies by status class: 1xx, 2xx, 3xx, 4xx, 5xx.
    pub classes: [u64; 5],
    pub sent: u64,
    /// Request durations per bucket of [`BUCKETS`] (not cumulative), then +Inf.
    pub buckets: [u64; BUCKETS.len() + 1],
    /// The durations summed.
    pub duration: Duration,
}

impl Snapshot {
    /// Workers by state: idle, reading, writing.
    pub fn worker_states(&self) -> [usize; 3] {
        let mut counts = [0; 3];
        for worker in &self.workers {
            counts[worker.state as usize] += 1;
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_up_across_slots_and_boards_come_back() {
        let metrics = Arc::new(Metrics::new(2));
        let a = metrics.worker_board().unwrap();
        let b = metrics.worker_board().unwrap();
        a.request(&[b"GET", b" ", b"/index.html"]);
        a.replied(200, 100, Some(Duration::from_micros(50)));
        b.replied(404, 10, Some(Duration::from_secs(20)));
        b.replied(99, 0, None);
        b.replied(700, 0, None);
        metrics.acceptor_board().replied(503, 5, None);
        metrics.accepted();
        metrics.refused();
        metrics.evicted();
        metrics.parked(Parked::Read, 1);
        metrics.parked(Parked::Write, 1);
        metrics.parked(Parked::Write, -1);
        let snap = metrics.snapshot();
        assert_eq!(snap.classes, [1, 1, 0, 1, 2]);
        assert_eq!(snap.sent, 115);
        assert_eq!(snap.buckets[0], 1);
        assert_eq!(snap.buckets[BUCKETS.len()], 1);
        assert_eq!(snap.duration, Duration::from_micros(20_000_050));
        assert_eq!((snap.accepted, snap.refused, snap.evicted), (1, 1, 1));
        assert_eq!((snap.parked_read, snap.parked_write), (1, 0));
        assert_eq!(snap.workers.len(), 2);
        assert_eq!(snap.workers[0].state, State::Writing);
        assert_eq!(snap.workers[0].request, "GET /index.html");
        assert_eq!(snap.worker_states(), [1, 0, 1]);
        assert_eq!(snap.open, None);
        drop(a);
        let snap = metrics.snapshot();
        assert_eq!(snap.workers.len(), 1, "a dropped board frees its slot");
        assert_eq!(snap.classes[1], 1, "its counts stay");
    }

    #[test]
    fn request_text_is_cut_at_its_limit() {
        let metrics = Arc::new(Metrics::new(1));
        let board = metrics.worker_board().unwrap();
        let long = [b'a'; 100];
        board.request(&[b"GET ", &long]);
        let request = metrics.snapshot().workers[0].request.clone();
        assert_eq!(request.len(), TEXT);
        assert!(request.starts_with("GET aaa"));
    }

    #[test]
    fn slots_run_out_gracefully() {
        let metrics = Arc::new(Metrics::new(1));
        let boards: Vec<Board> = (0..1 + SPARE)
            .map(|_| metrics.worker_board().unwrap())
            .collect();
        assert!(metrics.worker_board().is_none());
        drop(boards);
        assert!(metrics.worker_board().is_some());
    }
}
