//! A fixed pool of worker threads draining one bounded channel. Knows nothing of HTTP: a job
//! is any `J`, handled with per-worker state `S`, which may be told when its worker is about
//! to wait for work. A panicking job is caught and logged; the pool never shrinks.
//! May use: panics, crossbeam-channel, std.

use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, unbounded, Receiver, Sender, TryRecvError};

use crate::panics;

/// The pool: the Rust Book's `ThreadPool`, with a bounded queue, per-worker state, caught
/// panics and a shutdown with a deadline.
pub struct Pool<J> {
    sender: Option<Sender<J>>,
    /// STATUS TOUCH POINT: the queue, only to tell its length (`--status`).
    queue: Receiver<J>,
    workers: Vec<JoinHandle<()>>,
    exited: Receiver<()>,
}

/// A handle that queues jobs; held by whoever produces work (the accept loop, the poller).
/// Workers stop once the pool and every submitter are gone.
pub struct Submitter<J>(Sender<J>);

impl<J> Clone for Submitter<J> {
    fn clone(&self) -> Self {
        Submitter(self.0.clone())
    }
}

impl<J> Submitter<J> {
    /// Queues `job`, waiting while the queue is full. Gives the job back if the pool is gone.
    pub fn submit(&self, job: J) -> Result<(), J> {
        self.0.send(job).map_err(|err| err.into_inner())
    }
}

impl<J: Send + 'static> Pool<J> {
    /// [`Pool::with_idle`] with nothing to do when idle: for tests.
    #[cfg(test)]
    pub fn new<S, I, H>(size: usize, queue: usize, init: I, handle: H) -> io::Result<Pool<J>>
    where
        I: Fn() -> S + Send + Sync + 'static,
        H: Fn(&mut S, J) + Send + Sync + 'static,
    {
        Pool::with_idle(size, queue, init, handle, |_: &mut S| {})
    }

    /// Starts `size` workers sharing a queue of `queue` jobs. Each worker builds its own state
    /// with `init` (again after a panic), runs `handle` for every job it takes, and runs
    /// `idle` on its state whenever it finds the queue empty, just before it waits for the next job (and once before it stops, by dropping
    /// the state): the moment to put out what the state has gathered.
    pub fn with_idle<S, I, H, W>(
        size: usize,
        queue: usize,
        init: I,
        handle: H,
        idle: W,
    ) -> io::Result<Pool<J>>
    where
        I: Fn() -> S + Send + Sync + 'static,
        H: Fn(&mut S, J) + Send + Sync + 'static,
        W: Fn(&mut S) + Send + Sync + 'static,
    {
        assert!(size > 0, "a pool needs at least one worker");
        let (sender, receiver) = bounded::<J>(queue);
        let (exit_tx, exited) = unbounded();
        let shared = Arc::new((init, handle, idle));
        let mut workers = Vec::with_capacity(size);
        for id in 0..size {
            let receiver = receiver.clone();
            let shared = Arc::clone(&shared);
            let exit_tx = exit_tx.clone();
            let worker = thread::Builder::new()
                .name(format!("worker-{id}"))
                .spawn(move || {
                    let (init, handle, idle) = &*shared;
                    let mut state = init();
                    while let Some(job) = next_job(&receiver, || {
                        guarded(id, "going idle", &mut state, init, |state| idle(state));
                    }) {
                        guarded(id, "job", &mut state, init, |state| handle(state, job));
                    }
                    // The state goes (and puts out what it holds) before the pool hears that
                    // this worker is done: a finished shutdown leaves nothing behind.
                    drop(state);
                    let _ = exit_tx.send(());
                })?;
            workers.push(worker);
        }
        Ok(Pool {
            queue: receiver,
            sender: Some(sender),
            workers,
            exited,
        })
    }

    /// STATUS TOUCH POINT: how to read the number of jobs queued and not yet taken (a
    /// receiver's view, which never keeps the workers from stopping).
    pub fn queue_len(&self) -> impl Fn() -> usize + Send + Sync + 'static {
        let queue = self.queue.clone();
        move || queue.len()
    }

    /// A handle for producers on other threads.
    pub fn submitter(&self) -> Option<Submitter<J>> {
        self.sender.clone().map(Submitter)
    }

    /// Stops taking jobs, lets the workers finish what is queued, and waits for them until
    /// `grace` has passed. Returns whether they all finished; stragglers are left to the
    /// process exit. Every `Submitter` must be dropped first, or the workers keep waiting.
    pub fn shutdown(mut self, grace: Duration) -> bool {
        self.sender = None;
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

/// The next job: one already queued, or, when none is, `idle()` first and then a wait for
/// one. `None` once the queue is closed and empty.
fn next_job<J>(receiver: &Receiver<J>, idle: impl FnOnce()) -> Option<J> {
    match receiver.try_recv() {
        Ok(job) => Some(job),
        Err(TryRecvError::Disconnected) => None,
        Err(TryRecvError::Empty) => {
            idle();
            receiver.recv().ok()
        }
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

impl<J> Drop for Pool<J> {
    fn drop(&mut self) {
        self.sender = None;
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    #[test]
    fn every_job_runs_and_drop_joins() {
        let count = Arc::new(AtomicUsize::new(0));
        {
            let counted = Arc::clone(&count);
            let pool = Pool::new(
                4,
                8,
                || (),
                move |_: &mut (), n: usize| {
                    counted.fetch_add(n, Ordering::SeqCst);
                },
            )
            .unwrap();
            assert_eq!(pool.workers.len(), 4);
            for _ in 0..1000 {
                pool.submitter().unwrap().submit(1).unwrap();
            }
        } // Drop joins: every queued job has run when it returns.
        assert_eq!(count.load(Ordering::SeqCst), 1000);
    }

    #[test]
    fn a_panicking_job_does_not_kill_its_worker() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        // One worker: if the panic killed it, the later jobs would never run.
        let pool = Pool::new(
            1,
            4,
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
            pool.submitter().unwrap().submit(job).unwrap();
        }
        assert!(pool.shutdown(Duration::from_secs(10)));
        // The state is rebuilt after each panic, so the counter restarts.
        assert_eq!(*seen.lock().unwrap(), vec![(1, 1), (2, 1), (3, 1)]);
    }

    #[test]
    fn shutdown_gives_up_after_the_grace_period() {
        let (release_tx, release_rx) = bounded::<()>(0);
        let (started_tx, started_rx) = bounded::<()>(1);
        let pool = Pool::new(
            1,
            1,
            || (),
            move |_: &mut (), _: ()| {
                let _ = started_tx.send(());
                let _ = release_rx.recv();
            },
        )
        .unwrap();
        pool.submitter().unwrap().submit(()).unwrap();
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
        let pool = Pool::with_idle(
            1,
            8,
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
        let submitter = pool.submitter().unwrap();
        for job in [0, 1, 2, 3] {
            submitter.submit(job).unwrap();
        }
        release_tx.send(()).unwrap();
        // Jobs already queued are taken without going idle in between.
        assert_eq!(next(), vec![0, 1, 2, 3]);
        submitter.submit(4).unwrap();
        // Nothing more comes: the worker goes idle (and reports) without another job.
        assert_eq!(next(), vec![4]);
        submitter.submit(5).unwrap();
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
    fn submitters_keep_the_pool_fed() {
        let count = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&count);
        let pool = Pool::new(
            2,
            2,
            || (),
            move |_: &mut (), _: ()| {
                counted.fetch_add(1, Ordering::SeqCst);
            },
        )
        .unwrap();
        let submitter = pool.submitter().unwrap();
        let producer = thread::spawn(move || {
            for _ in 0..100 {
                submitter.submit(()).unwrap();
            }
        });
        producer.join().unwrap();
        assert!(pool.shutdown(Duration::from_secs(10)));
        assert_eq!(count.load(Ordering::SeqCst), 100);
    }
}
