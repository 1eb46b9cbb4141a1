//! A connection's marks on the status page's scoreboard (`--status`): each worker's slot,
//! its state as a turn begins and ends, the request it answers, and every reply counted as
//! it ends. With `--status` off, each is one `Option` test. Part of the connection module.
//! May use: metrics.

use std::time::Instant;

use super::write::Outgoing;
use super::{Context, Recorder, Scratch};
use crate::metrics::{Metrics, State};

impl Scratch {
    /// A worker's buffers, with its own slot on the scoreboard.
    pub fn for_worker(ctx: &Context) -> Scratch {
        let mut scratch = Scratch::new(&ctx.log);
        scratch.rec.board = ctx.metrics.as_ref().and_then(Metrics::worker_board);
        scratch
    }

    /// The accept loop's buffers: its 503s count too.
    pub fn for_acceptor(ctx: &Context) -> Scratch {
        let mut scratch = Scratch::new(&ctx.log);
        scratch.rec.board = ctx.metrics.as_ref().map(Metrics::acceptor_board);
        scratch
    }
}

impl Recorder {
    /// The worker is now `state`.
    pub(super) fn mark(&self, state: State) {
        if let Some(board) = &self.board {
            board.set(state);
        }
    }

    /// When a request's reply starts being made (a clock read only if it is counted).
    pub(super) fn started(&self) -> Option<Instant> {
        self.board.as_ref().map(|_| Instant::now())
    }

    /// `at`, if the request's duration is counted.
    pub(super) fn counted(&self, at: Instant) -> Option<Instant> {
        self.board.as_ref().map(|_| at)
    }

    /// The worker answers the request `parts` (method, space, target).
    pub(super) fn answering(&self, parts: &[&[u8]]) {
        if let Some(board) = &self.board {
            board.request(parts);
        }
    }

    /// The worker takes up the parked reply `out` again.
    pub(super) fn show(&self, out: &Outgoing) {
        if let Some(board) = &self.board {
            out.show(board);
        }
    }

    /// Counts the reply `out`, ended; the worker goes back to reading.
    pub(super) fn count(&self, out: &Outgoing) {
        if let Some(board) = &self.board {
            out.count(board);
            board.set(State::Reading);
        }
    }
}
