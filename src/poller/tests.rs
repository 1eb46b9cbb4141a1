//! The parker's ownership rules over real sockets: eviction order, every event to one
//! worker, the sweep against woken workers, and queued work against parked connections.
use std::io::Read;
use std::net::{TcpListener, TcpStream};

use super::*;
use crate::conn::Slot;

/// A connected pair over loopback: the server side wrapped as a `Conn`, and the client.
fn pair(listener: &TcpListener, open: &Arc<AtomicUsize>) -> (Conn, TcpStream) {
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, peer) = listener.accept().unwrap();
    (Conn::new(server, peer, Slot::take(open)), client)
}

fn closed(client: &mut TcpStream) -> bool {
    client.set_nonblocking(true).unwrap();
    matches!(client.read(&mut [0u8; 16]), Ok(0))
}

#[test]
fn eviction_closes_the_connection_idle_longest_not_the_one_parked_first() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let open = Arc::new(AtomicUsize::new(0));
    let parker = Parker::new(None).unwrap();
    let (older, mut older_client) = pair(&listener, &open);
    std::thread::sleep(Duration::from_millis(2));
    let (newer, mut newer_client) = pair(&listener, &open);
    let later = Instant::now() + Duration::from_secs(60);
    // The newer one is parked first, as when the worker of the older one is slow to
    // park it after its reply went out.
    assert!(parker.park(newer, Wait::Request, later).is_ok());
    assert!(parker.park(older, Wait::Request, later).is_ok());
    assert!(parker.evict_idle());
    std::thread::sleep(Duration::from_millis(20));
    assert!(closed(&mut older_client), "the older connection is closed");
    assert!(!closed(&mut newer_client), "the newer one stays open");
    assert_eq!(open.load(Ordering::SeqCst), 1);
    assert!(parker.evict_idle());
    assert!(!parker.evict_idle(), "nothing idle is left");
    assert_eq!(open.load(Ordering::SeqCst), 0);
}

#[test]
fn a_connection_that_left_is_no_longer_a_candidate() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let open = Arc::new(AtomicUsize::new(0));
    let parker = Parker::new(None).unwrap();
    let (conn, _client) = pair(&listener, &open);
    let later = Instant::now() + Duration::from_secs(60);
    assert!(parker.park(conn, Wait::Request, later).is_ok());
    let key = *parker.state().parked.keys().next().unwrap();
    let taken = take(&mut parker.state(), key);
    assert!(taken.is_some());
    assert!(parker.state().idle.is_empty());
    assert!(!parker.evict_idle());
    drop(taken);
}

/// `workers` threads taking connections from the parker, each handled by `handle` (which
/// may park it again); they end when the parker's stop is over.
fn workers(
    parker: &Parker,
    workers: usize,
    handle: impl Fn(&Parker, Conn) + Send + Sync + Clone + 'static,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..workers)
        .map(|_| {
            let parker = parker.clone();
            let handle = handle.clone();
            std::thread::spawn(move || {
                while let Some(conn) = parker.next(&mut || {}) {
                    handle(&parker, conn);
                }
            })
        })
        .collect()
}

fn wait_for(what: &str, done: impl Fn() -> bool) {
    let give_up = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < give_up, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn stop(parker: &Parker, open: &Arc<AtomicUsize>, threads: Vec<std::thread::JoinHandle<()>>) {
    parker.stop(
        Instant::now() + Duration::from_millis(300),
        Arc::clone(open),
    );
    for thread in threads {
        thread.join().unwrap();
    }
}

/// A listener for client pairs, the open count, and a parker whose sweep thread runs.
fn running() -> (
    TcpListener,
    Arc<AtomicUsize>,
    Parker,
    std::thread::JoinHandle<()>,
) {
    let parker = Parker::new(None).unwrap();
    let sweep = {
        let parker = parker.clone();
        std::thread::spawn(move || parker.sweep())
    };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    (listener, Arc::new(AtomicUsize::new(0)), parker, sweep)
}

#[test]
fn every_event_reaches_one_worker_and_re_armed_connections_keep_coming_back() {
    use std::io::Write;
    let (listener, open, parker, sweep) = running();
    let later = Instant::now() + Duration::from_secs(60);
    let turns = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&turns);
    let mut threads = workers(&parker, 4, move |parker, mut conn| {
        // Read what came (one byte per round), then wait for the next round.
        conn::drain(&mut conn);
        counted.fetch_add(1, Ordering::SeqCst);
        parker.park(conn, Wait::Request, later).unwrap();
    });
    const CONNS: usize = 64;
    let mut clients = Vec::new();
    for _ in 0..CONNS {
        let (conn, client) = pair(&listener, &open);
        parker.park(conn, Wait::Request, later).unwrap();
        clients.push(client);
    }
    for round in 1..=5 {
        for client in &mut clients {
            client.write_all(b"x").unwrap();
        }
        // Exactly one turn per connection and round: no event lost, none served twice.
        wait_for("every connection's turn", || {
            turns.load(Ordering::SeqCst) >= CONNS * round
        });
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(turns.load(Ordering::SeqCst), CONNS * round);
    }
    threads.push(sweep);
    stop(&parker, &open, threads);
    assert_eq!(open.load(Ordering::SeqCst), 0, "every connection closed");
}

#[test]
fn queued_work_without_end_does_not_keep_the_workers_from_the_set() {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    let (listener, open, parker, sweep) = running();
    let later = Instant::now() + Duration::from_secs(60);
    let (busy, _busy_client) = pair(&listener, &open);
    let busy_fd = busy.fd().as_raw_fd();
    let (parked, mut client) = pair(&listener, &open);
    parker.park(parked, Wait::Request, later).unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&served);
    let spins = Arc::new(AtomicUsize::new(0));
    let spun = Arc::clone(&spins);
    // One worker; one connection that always has more to do (it yields after every
    // turn, as one with pipelined requests buffered does), one parked.
    let mut threads = workers(&parker, 1, move |parker, mut conn| {
        if conn.fd().as_raw_fd() == busy_fd {
            spun.fetch_add(1, Ordering::SeqCst);
            let _ = parker.queue(conn);
        } else {
            conn::drain(&mut conn);
            counted.fetch_add(1, Ordering::SeqCst);
            let _ = parker.park(conn, Wait::Request, later);
        }
    });
    parker.queue(busy).unwrap();
    // The worker is going round with the busy connection before the parked one's event
    // comes, so that event cannot arrive in the same wake-up as the queued work.
    wait_for("the busy connection's turns", || {
        spins.load(Ordering::SeqCst) >= 1000
    });
    client.write_all(b"x").unwrap();
    wait_for("the parked connection's turn", || {
        served.load(Ordering::SeqCst) == 1
    });
    threads.push(sweep);
    stop(&parker, &open, threads);
    assert_eq!(open.load(Ordering::SeqCst), 0, "every connection closed");
}

#[test]
fn a_woken_worker_and_the_deadline_sweep_never_both_own_a_connection() {
    use std::io::Write;
    let (listener, open, parker, sweep) = running();
    // A worker that gets a connection says so to its client, then closes it; the sweep
    // closes the ones whose deadline it saw first, without a word.
    let mut threads = workers(&parker, 4, |_, conn| {
        let _ = rustix::io::write(conn.fd(), b"S");
    });
    const CONNS: usize = 200;
    let start = Instant::now() + Duration::from_millis(50);
    let mut clients = Vec::new();
    for i in 0..CONNS {
        let (conn, client) = pair(&listener, &open);
        // Deadlines spread over three sweeps; each client writes right at its deadline,
        // so its event and the sweep race for it.
        let deadline = start + Duration::from_millis(3 * i as u64);
        parker.park(conn, Wait::Request, deadline).unwrap();
        clients.push((client, deadline));
    }
    for (client, deadline) in &mut clients {
        std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
        let _ = client.write_all(b"x");
    }
    wait_for("every connection to close", || {
        open.load(Ordering::SeqCst) == 0
    });
    let mut served = 0;
    for (client, _) in &mut clients {
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut got = Vec::new();
        // Closed by its one owner: a reset (closed with our byte unread) counts as closed.
        let _ = client.read_to_end(&mut got);
        assert!(got.len() <= 1, "served at most once: {got:?}");
        served += got.len();
    }
    assert!(served <= CONNS);
    threads.push(sweep);
    stop(&parker, &open, threads);
}
