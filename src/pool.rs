//! A fixed pool of worker threads, each taking its jobs from a shared [`Source`] (the epoll
//! set they all wait on, in the server; a channel, in tests). Knows nothing of HTTP: a job is
//! any `J`, handled with per-worker state `S`, which is told when its worker is about to wait
//! for work. Workers give way to each other between jobs; a panicking job is caught and
//! logged; the pool never shrinks.
//! May use: panics, crossbeam-channel, std.

use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, TryRecvError};

use crate::panics;

/// Where workers take their jobs from.
pub trait Source<J>: Send + Sync + 'static {
    /// The next job: one ready at once, or else, after `idle()` (the worker is about to
    /// sleep), the next to come. `None` when the pool is to stop.
    fn next(&self, idle: &mut dyn FnMut()) -> Option<J>;
}

/// A channel as a source: what is queued, in order; `None` once every sender is gone and the
/// queue is empty.
impl<J: Send + 'static> Source<J> for Receiver<J> {
    fn next(&self, idle: &mut dyn FnMut()) -> Option<J> {
        match self.try_recv() {
            Ok(job) => Some(job),
            Err(TryRecvError::Disconnected) => None,
            Err(TryRecvError::Empty) => {
                idle();
                self.recv().ok()
            }
        }
    }
}

/// The pool: the Rust Book's `ThreadPool`, with per-worker state, a shared source of jobs,
/// caught panics and a shutdown with a deadline.
pub struct Pool {
    workers: Vec<JoinHandle<()>>,
    exited: Receiver<()>,
}

impl Pool {
    /// [`Pool::with_idle`] with nothing to do when idle: for tests.
    #[cfg(test)]
    pub fn new<J, S, I, H>(
        size: usize,
        source: impl Source<J>,
        init: I,
        handle: H,
    ) -> io::Result<Pool>
    where
        J: 'static,
        I: Fn() -> S + Send + Sync + 'static,
        H: Fn(&mut S, J) + Send + Sync + 'static,
    {
        Pool::with_idle(size, source, init, handle, |_: &mut S| {})
    }

    /// Starts `size` workers taking jobs from `source`. Each worker builds its own state with
    /// `init` (again after a panic), runs `handle` for every job it takes, and runs `idle` on
    /// its state whenever it is about to sleep for want of work (and once before it stops,
    /// by dropping the state): the moment to put out what the state has gathered.
    pub fn with_idle<J, S, I, H, W>(
        size: usize,
        source: impl Source<J>,
        init: I,
        handle: H,
        idle: W,
    ) -> io::Result<Pool>
    where
        J: 'static,
        I: Fn() -> S + Send + Sync + 'static,
        H: Fn(&mut S, J) + Send + Sync + 'static,
        W: Fn(&mut S) + Send + Sync + 'static,
    {
        assert!(size > 0, "a pool needs at least one worker");
        let (exit_tx, exited) = unbounded();
        let shared = Arc::new((source, init, handle, idle));
        let mut workers = Vec::with_capacity(size);
        for id in 0..size {
            let shared = Arc::clone(&shared);
            let exit_tx = exit_tx.clone();
            let worker = thread::Builder::new()
                .name(format!("worker-{id}"))
                .spawn(move || {
                    let (source, init, handle, idle) = &*shared;
                    let mut state = init();
                    let mut running_since = Instant::now();
                    loop {
                        let mut go_idle = || {
                            guarded(id, "going idle", &mut state, init, |state| idle(state));
                            running_since = Instant::now();
                        };
                        let Some(job) = source.next(&mut go_idle) else {
                            break;
                        };
                        guarded(id, "job", &mut state, init, |state| handle(state, job));
                        give_way(&mut running_since);
                    }
                    // The state goes (and puts out what it holds) before the pool hears that
                    // this worker is done: a finished shutdown leaves nothing behind.
                    drop(state);
                    let _ = exit_tx.send(());
                })?;
            workers.push(worker);
        }
        Ok(Pool { workers, exited })
    }

    /// Waits for the workers to end (their source has said stop) until `grace` has passed.
    /// Returns whether they all ended; stragglers are left to the process exit.
    pub fn shutdown(mut self, grace: Duration) -> bool {
        let deadline = Instant::now() + grace;
        let all = (0..self.workers.len()).all(|_| self.exited.recv_deadline(deadline).is_ok());
        if all {
            for worker in self.workers.drain(..) {
                let _ = worker.join();
            }
        } else {
            // Detach: Drop must not wait for a worker stuck past the grace period.
            self.workers.clear();
        }
        all
    }
}

/// How long a worker runs jobs back to back before it gives way to the others.
const YIELD_EVERY: Duration = Duration::from_micros(500);

/// Between two jobs, with none in hand: after [`YIELD_EVERY`] of running, lets the other
/// runnable workers have the core. Under a full load every worker is runnable, and the
/// scheduler would otherwise preempt one at a timer tick in the middle of a job, which then
/// waits for all the others' time slices (for the server on one core, the p99 grew with the
/// worker count: 25 ms at `-w 8`). Giving way here, the job in hand is never the one that
/// waits.
fn give_way(running_since: &mut Instant) {
    if running_since.elapsed() >= YIELD_EVERY {
        thread::yield_now();
        *running_since = Instant::now();
    }
}

/// Runs `work` on the worker's state; a panic is logged and the state rebuilt, so the worker
/// lives on.
fn guarded<S>(
    id: usize,
    what: &str,
    state: &mut S,
    init: &dyn Fn() -> S,
    work: impl FnOnce(&mut S),
) {
    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| work(state))) {
        log::error!("worker {id}: {what} panicked: {}", panics::message(&*panic));
        *state = init();
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::{bounded, Sender};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    #[test]
    fn every_job_runs_and_drop_joins() {
        let count = Arc::new(AtomicUsize::new(0));
        {
            let counted = Arc::clone(&count);
            let (jobs, queue) = bounded(8);
            let pool = Pool::new(
                4,
                queue,
                || (),
                move |_: &mut (), n: usize| {
                    counted.fetch_add(n, Ordering::SeqCst);
                },
            )
            .unwrap();
            assert_eq!(pool.workers.len(), 4);
            for _ in 0..1000 {
                jobs.send(1).unwrap();
            }
            drop(jobs);
        } // Drop joins: every queued job has run when it returns.
        assert_eq!(count.load(Ordering::SeqCst), 1000);
    }

    #[test]
    fn a_panicking_job_does_not_kill_its_worker() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        // One worker: if the panic killed it, the later jobs would never run.
        let (jobs, queue) = bounded(4);
        let pool = Pool::new(
            1,
            queue,
            || 0usize,
            move |handled: &mut usize, job: i32| {
                if job < 0 {
                    panic!("job {job} fails on purpose");
                }
                *handled += 1;
                record.lock().unwrap().push((job, *handled));
            },
        )
        .unwrap();
        for job in [1, -1, 2, -2, 3] {
            jobs.send(job).unwrap();
        }
        drop(jobs);
        assert!(pool.shutdown(Duration::from_secs(10)));
        // The state is rebuilt after each panic, so the counter restarts.
        assert_eq!(*seen.lock().unwrap(), vec![(1, 1), (2, 1), (3, 1)]);
    }

    #[test]
    fn shutdown_gives_up_after_the_grace_period() {
        let (release_tx, release_rx) = bounded::<()>(0);
        let (started_tx, started_rx) = bounded::<()>(1);
        let (jobs, queue) = bounded(1);
        let pool = Pool::new(
            1,
            queue,
            || (),
            move |_: &mut (), _: ()| {
                let _ = started_tx.send(());
                let _ = release_rx.recv();
            },
        )
        .unwrap();
        jobs.send(()).unwrap();
        drop(jobs);
        started_rx.recv().unwrap();
        let begun = Instant::now();
        assert!(!pool.shutdown(Duration::from_millis(200)));
        assert!(begun.elapsed() < Duration::from_secs(5));
        drop(release_tx);
    }

    #[test]
    fn a_worker_runs_idle_before_it_waits_and_drops_its_state_when_it_stops() {
        // The state gathers the jobs it handled; `idle` hands them over, and so does Drop.
        struct Gathered(Vec<u32>, Sender<Vec<u32>>);
        impl Drop for Gathered {
            fn drop(&mut self) {
                let _ = self.1.send(std::mem::take(&mut self.0));
            }
        }
        let (out_tx, out_rx) = unbounded();
        let (release_tx, release_rx) = bounded::<()>(0);
        let (submitter, queue): (Sender<u32>, _) = bounded(8);
        let pool = Pool::with_idle(
            1,
            queue,
            move || Gathered(Vec::new(), out_tx.clone()),
            move |state: &mut Gathered, job: u32| {
                if job == 0 {
                    // Hold the worker while more jobs queue behind this one.
                    let _ = release_rx.recv();
                }
                state.0.push(job);
            },
            |state: &mut Gathered| {
                let _ = state.1.send(std::mem::take(&mut state.0));
            },
        )
        .unwrap();
        let next = || {
            out_rx
                .recv_timeout(Duration::from_secs(10))
                .expect("the worker reports")
        };
        assert_eq!(next(), Vec::<u32>::new(), "idle before the first wait");
        for job in [0, 1, 2, 3] {
            submitter.send(job).unwrap();
        }
        release_tx.send(()).unwrap();
        // Jobs already queued are taken without going idle in between.
        assert_eq!(next(), vec![0, 1, 2, 3]);
        submitter.send(4).unwrap();
        // Nothing more comes: the worker goes idle (and reports) without another job.
        assert_eq!(next(), vec![4]);
        submitter.send(5).unwrap();
        drop(submitter);
        assert!(pool.shutdown(Duration::from_secs(10)));
        let mut rest: Vec<u32> = out_rx.try_iter().flatten().collect();
        rest.sort_unstable();
        assert_eq!(
            rest,
            vec![5],
            "handled before the stop, reported by idle or by drop"
        );
    }

    #[test]
    fn producers_on_other_threads_keep_the_pool_fed() {
        let count = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&count);
        let (submitter, queue) = bounded(2);
        let pool = Pool::new(
            2,
            queue,
            || (),
            move |_: &mut (), _: ()| {
                counted.fetch_add(1, Ordering::SeqCst);
            },
        )
        .unwrap();
        let producer = thread::spawn(move || {
            for _ in 0..100 {
                submitter.send(()).unwrap();
            }
        });
        producer.join().unwrap();
        assert!(pool.shutdown(Duration::from_secs(10)));
        assert_eq!(count.load(Ordering::SeqCst), 100);
    }
}
