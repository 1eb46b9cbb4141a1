//! The poller's other half: the stop, and the sweep thread that keeps the deadlines (closes
//! idle connections past theirs, hands back half heads for a 408 and stalled replies to be
//! logged) and ends the stop.
//! May use: crossbeam-channel, conn, sys, metrics (through the parent).

use super::*;

impl Parker {
    /// Starts the shutdown. Idle keep-alive connections close after a last call of
    /// [`LAST_CALL`] (a request that arrives meanwhile is answered with `Connection: close`);
    /// [`Parker::sweep`] returns once every connection counted in `open` is done (replies in
    /// flight at a worker or parked, new connections, heads in progress, lingering closes),
    /// or at `stop_by`, closing whatever is left. Returns how many idle connections got the
    /// last call.
    pub fn stop(&self, stop_by: Instant, open: Arc<AtomicUsize>) -> usize {
        let mut state = self.state();
        let last_call = Instant::now() + LAST_CALL;
        state.stopping = Some(Stopping {
            by: stop_by,
            last_call,
            open,
        });
        let mut idle = 0;
        for parked in state.parked.values_mut() {
            if parked.closable(true) {
                parked.deadline = parked.deadline.min(last_call);
                idle += 1;
            }
        }
        drop(state);
        self.shared.nudge.notify_all();
        idle
    }

    /// The sweep thread: closes or hands back connections past their deadlines until the
    /// stop is over.
    pub fn sweep(&self) {
        // Reused across sweeps: a sweep allocates nothing when nothing expires.
        let mut late = Vec::new();
        let mut expired = Vec::new();
        let mut state = self.state();
        loop {
            let pause = if state.stopping.is_some() {
                STOP_CHECK
            } else {
                SWEEP
            };
            state = match self.shared.nudge.wait_timeout(state, pause) {
                Ok((state, _)) => state,
                Err(poisoned) => poisoned.into_inner().0,
            };
            if self.stop_is_over(&mut state) {
                return;
            }
            let now = Instant::now();
            for (&key, parked) in state.parked.iter_mut() {
                // A client that takes bytes the kernel had queued is reading.
                if parked.wait == Wait::Write {
                    if let Some(deadline) = parked.conn.sample_send_queue(now) {
                        parked.deadline = deadline;
                    }
                }
                if parked.deadline <= now {
                    late.push(key);
                }
            }
            expired.extend(late.drain(..).filter_map(|key| self.take(&mut state, key)));
            if expired.is_empty() {
                continue;
            }
            drop(state);
            for Parked { mut conn, wait, .. } in expired.drain(..) {
                // An idle keep-alive connection just closes (as nginx does); half a head
                // gets its 408 from a worker; a reply the client stopped taking is closed by
                // a worker, which logs the bytes that went out.
                let handed_back = match wait {
                    Wait::Request => conn.has_partial_request(),
                    Wait::Write => true,
                    Wait::Drain => false,
                };
                if handed_back {
                    conn.expire();
                    // Closed if the stop is over (it is not: only this thread ends it).
                    let _ = self.queue(conn);
                }
            }
            state = self.state();
        }
    }

    /// During a stop: whether it is over (every connection done, or the grace period
    /// spent). If it is, whatever is still parked or queued is closed, except replies cut
    /// off, which are queued for a worker to log; then workers are told to finish.
    fn stop_is_over(&self, state: &mut State) -> bool {
        let Some(stopping) = &state.stopping else {
            return false;
        };
        let (_, queue) = &self.shared.queue;
        // A connection at a worker is in neither the map nor the queue, so the count decides.
        let done = state.parked.is_empty()
            && queue.is_empty()
            && stopping.open.load(Ordering::SeqCst) == 0;
        if !done && Instant::now() < stopping.by {
            return false;
        }
        for parked in state.parked.values() {
            self.count(parked.wait, -1);
        }
        let mut left: Vec<Conn> = std::mem::take(&mut state.parked)
            .into_values()
            .filter(|parked| parked.wait == Wait::Write)
            .map(|parked| parked.conn)
            .collect();
        left.extend(queue.try_iter().filter(Conn::is_writing));
        if !done {
            log::warn!(
                "grace period over: closing the waiting connections ({} replies cut off)",
                left.len()
            );
        }
        state.idle.clear();
        // Replies cut off by the end of the grace period still get their log line: a
        // worker closes them.
        for mut conn in left {
            conn.expire();
            let _ = self.shared.queue.0.send(conn);
        }
        state.closed = true;
        self.shared.closed.store(true, Ordering::SeqCst);
        self.shared.set.stop();
        true
    }
}
