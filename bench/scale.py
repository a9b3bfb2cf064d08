#!/usr/bin/python3
"""bench/scale.py - the cost of state: does wsd stay as fast as it fills up?

For each size N (default 1,000 / 10,000 / 100,000 groups) and each of R
runs (default 5), a fresh wsd is started on a free 127.0.0.1 port with
--max-groups N and --history-total exactly the bytes of the fill, and
filled over pipelined keep-alive HTTP until it holds N groups and its
history is full:

    bench-ctl          the route group of the WebSocket clients below
    f0000000 ...       N-2 groups with 2 events each (filled first: the
                       least recently used, the first to be evicted)
    r0000000           one group with 1,000 events (filled last)

Then, with the history full and the group count at --max-groups:

  publish  P publishes (default 300), one at a time on a keep-alive
           connection, each a POST /api/groups/nXXXXXXX/events into a new
           group, so each one evicts an idle group; each is sent as soon
           as the last is answered (--pace MS: one every MS ms at most; a
           client that sleeps between requests wakes cold and measures
           more of its own wake-up).  Latency = send of the request ->
           whole answer read, client side; per run its median and p99.
  stall    a second client (its own process) sends {"type":"ping","id":N}
           over a WebSocket, waits for the pong and sends the next one,
           continuously; the longest time between two pongs while the
           publishes run is the longest loop stall the publishes caused,
           plus this client's own scheduling noise.  The same is measured
           for an equal time with nothing else going on right after
           ("idle"): the noise floor.
  replay   K times (default 5) a fresh WebSocket sends
           {"type":"subscribe","group":"r0000000","since":0}; time until
           the 1,000th event arrives; per run the median.

The session tick is bench/tick.py's (called, not copied): the loop time
of the tick that carries 1,000 session changes, at 1,000 / 10,000 /
100,000 sessions, from wsd's "tick ... us=" debug line, R runs each.

Every figure in the table is the median over the R runs (each from a
fresh process) of the per-run figure; nothing is best-of.  wsd is pinned
to CPU 0 and the clients to the other CPUs, as bench/run does.  With two
--wsd, their runs alternate (run 1 of each, then run 2, ...), so both
meet the same load on a shared machine, and each gets its own table.

    bench/scale.py [--wsd PATH [--wsd PATH2]] [--runs R] [--groups 1000,10000,100000]
                   [--sessions 1000,10000,100000] [--publishes P]
                   [--pace MS] [--replays K] [--quick] [--out FILE]
"""
import argparse
import base64
import os
import re
import selectors
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)

FILL_EVENTS = 2         # events in each filler group
REPLAY_EVENTS = 1000    # events in the replay group (wsd's --history default)
CTL = "bench-ctl"
REPLAY = "r0000000"

ALL_CPUS = set(range(os.cpu_count() or 1))
PIN = len(ALL_CPUS) >= 2


# ==== wsd ================================================================

class Wsd:
    """A fresh wsd on 127.0.0.1:0; the port comes from its log line."""

    def __init__(self, path, *args):
        self.p = subprocess.Popen(
            [path, "--listen", "127.0.0.1:0", "--log-level", "info"]
            + [str(a) for a in args],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True)
        if PIN:
            os.sched_setaffinity(self.p.pid, {0})
        self.log = []
        self.port = None
        ready = threading.Event()

        def read():
            for line in self.p.stderr:
                self.log.append(line)
                m = re.search(r"listening addr=\S+:(\d+)", line)
                if m and self.port is None:
                    self.port = int(m.group(1))
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(20) or self.port is None:
            self.stop()
            raise RuntimeError("wsd did not start: %s" % "".join(self.log))

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


# ==== HTTP ===============================================================

def post_event(group, data):
    body = b'{"type":"ev","data":"%s"}' % data
    return (b"POST /api/groups/%s/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (group.encode(), len(body),
                                               body))


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def pipeline(port, reqs, batch=1000):
    """Send requests on one keep-alive connection, `batch` per send; every
    answer must be a 2xx."""
    s = connect(port)
    for i in range(0, len(reqs), batch):
        part = reqs[i:i + batch]
        s.sendall(b"".join(part))
        data = b""
        while data.count(b"HTTP/1.1 ") < len(part):
            chunk = s.recv(1 << 20)
            if not chunk:
                raise RuntimeError("wsd closed a pipelined connection")
            data += chunk
        codes = re.findall(rb"HTTP/1\.1 (\d+)", data)
        bad = [c for c in codes if not c.startswith(b"2")]
        if bad:
            raise RuntimeError("pipelined answers not 2xx: %r" % bad[:5])
    s.close()


def read_answer(s, buf):
    """One HTTP answer from s (Content-Length framed); returns the rest."""
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", buf[:end])
            total = end + 4 + (int(m.group(1)) if m else 0)
            if len(buf) >= total:
                return buf[:total], buf[total:]
        chunk = s.recv(65536)
        if not chunk:
            raise RuntimeError("wsd closed the connection")
        buf += chunk


def metrics(port):
    s = connect(port)
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    ans, _ = read_answer(s, b"")
    s.close()
    return {k.decode(): int(float(v)) for k, v in
            re.findall(rb"(?m)^(wsd_\w+) (\S+)$", ans)}


# ==== WebSocket ==========================================================

def ws_open(port, path):
    s = connect(port)
    key = base64.b64encode(os.urandom(16))
    s.sendall(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
              b"Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
              b"Sec-WebSocket-Version: 13\r\n\r\n" % (path.encode(), key))
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            raise RuntimeError("upgrade refused")
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError("upgrade refused: %r" % head[:40])
    return s, rest


def ws_text(payload):
    """A masked client text frame."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x81, 0x80 | n)
    else:
        head = struct.pack("!BBH", 0x81, 0x80 | 126, n)
    body = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
    return head + mask + body


def ws_frames(buf):
    """Split complete server frames off buf: ([(opcode, payload)], rest)."""
    out = []
    i = 0
    while len(buf) - i >= 2:
        op = buf[i] & 0x0F
        n = buf[i + 1] & 0x7F
        h = 2
        if n == 126:
            if len(buf) - i < 4:
                break
            n = struct.unpack_from("!H", buf, i + 2)[0]
            h = 4
        elif n == 127:
            if len(buf) - i < 10:
                break
            n = struct.unpack_from("!Q", buf, i + 2)[0]
            h = 10
        if len(buf) - i < h + n:
            break
        out.append((op, buf[i + h:i + h + n]))
        i += h + n
    return out, buf[i:]


def pinger(port):
    """The stall probe, run as its own process (--_pinger PORT).  Pings
    continuously; each line "mark" on stdin prints the longest time
    between two pongs (us) and the pong count since the last mark; EOF
    ends it."""
    s, buf = ws_open(port, "/ws/" + CTL)
    sel = selectors.DefaultSelector()
    sel.register(s, selectors.EVENT_READ, "ws")
    sel.register(sys.stdin, selectors.EVENT_READ, "in")
    n = 0
    s.sendall(ws_text(b'{"type":"ping","id":%d}' % n))
    last = time.perf_counter()
    worst = 0.0
    count = 0
    print("ready", flush=True)
    while True:
        for key, _ in sel.select():
            if key.data == "in":
                line = sys.stdin.readline()
                if not line:
                    return
                print("%d %d" % (worst * 1e6, count), flush=True)
                worst, count = 0.0, 0
                last = time.perf_counter()
                continue
            chunk = s.recv(65536)
            if not chunk:
                raise RuntimeError("wsd closed the pinger")
            frames, buf = ws_frames(buf + chunk)
            for op, payload in frames:
                if op == 9:     # a server ping: answer it (masked pong)
                    s.sendall(b"\x8a" + bytes([0x80 | len(payload)]) +
                              b"\0\0\0\0" + payload)
                if op != 1 or b'"pong"' not in payload:
                    continue
                now = time.perf_counter()
                worst = max(worst, now - last)
                last = now
                count += 1
                n += 1
                s.sendall(ws_text(b'{"type":"ping","id":%d}' % n))


def replay_once(port):
    """Subscribe with since=0 to the replay group on a fresh WebSocket;
    seconds from the subscribe until event 1,000 is read."""
    s, buf = ws_open(port, "/ws/" + CTL)
    msg = b'{"type":"subscribe","group":"%s","since":0}' % REPLAY.encode()
    last = b'"seq":%d,' % REPLAY_EVENTS
    got = 0
    t0 = time.perf_counter()
    s.sendall(ws_text(msg))
    while True:
        chunk = s.recv(1 << 20)
        if not chunk:
            raise RuntimeError("wsd closed the replay client")
        frames, buf = ws_frames(buf + chunk)
        for _, p in frames:
            if p.startswith(b'{"type":"ev"'):
                got += 1
                if last in p:
                    t = time.perf_counter() - t0
                    s.close()
                    if got != REPLAY_EVENTS:
                        raise RuntimeError("replay: %d events" % got)
                    return t


# ==== One run ============================================================

def filler_data():
    return b"x" * 16


def replay_data(seq):
    return b"y%d" % seq


def calibrate(path):
    """Bytes of history the fill keeps, from a throwaway wsd: the replay
    group's 1,000 events, and one filler group's events (all fillers have
    names of one length, so their frames are of one size)."""
    w = Wsd(path)
    try:
        pipeline(w.port, [post_event(REPLAY, replay_data(i + 1))
                          for i in range(REPLAY_EVENTS)])
        rbytes = metrics(w.port)["wsd_history_bytes"]
        pipeline(w.port, [post_event("f0000000", filler_data())
                          for _ in range(FILL_EVENTS)])
        fbytes = metrics(w.port)["wsd_history_bytes"] - rbytes
        return rbytes, fbytes
    finally:
        w.stop()


def pctl(xs, p):
    """Nearest-rank percentile."""
    xs = sorted(xs)
    return xs[max(0, min(len(xs) - 1, int(round(p / 100.0 * len(xs))) - 1))]


def run_groups(path, n, cal, args):
    rbytes, fbytes = cal
    fillers = n - 2
    total = rbytes + fillers * fbytes
    w = Wsd(path, "--max-groups", n, "--history-total", total)
    pg = None
    try:
        pg = subprocess.Popen([sys.executable, os.path.abspath(__file__),
                               "--_pinger", str(w.port)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
        if pg.stdout.readline().strip() != "ready":
            raise RuntimeError("pinger did not start")
        d = filler_data()
        reqs = [post_event("f%07d" % i, d)
                for i in range(fillers) for _ in range(FILL_EVENTS)]
        pipeline(w.port, reqs)
        pipeline(w.port, [post_event(REPLAY, replay_data(i + 1))
                          for i in range(REPLAY_EVENTS)])
        m = metrics(w.port)
        note = ""
        if m.get("wsd_groups") != n or m.get("wsd_history_bytes") != total:
            note = "fill: groups=%s history=%s (wanted %d, %d)" % (
                m.get("wsd_groups"), m.get("wsd_history_bytes"), n, total)

        def mark():
            pg.stdin.write("mark\n")
            pg.stdin.flush()
            worst, count = pg.stdout.readline().split()
            return int(worst), int(count)

        # The publishes, one at a time, each into a new group.
        reqs = [post_event("n%07d" % i, d) for i in range(args.publishes)]
        s = connect(w.port)
        buf = b""
        lat = []
        mark()
        t0 = time.perf_counter()
        for i, r in enumerate(reqs):
            wait = t0 + i * args.pace / 1e3 - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            t1 = time.perf_counter()
            s.sendall(r)
            ans, buf = read_answer(s, buf)
            lat.append(time.perf_counter() - t1)
            if not ans.startswith(b"HTTP/1.1 202"):
                raise RuntimeError("publish: %r" % ans[:60])
        took = time.perf_counter() - t0
        stall_us, pongs = mark()
        s.close()
        # The noise floor: the pinger alone, for as long again.
        time.sleep(took)
        idle_us, _ = mark()
        m2 = metrics(w.port)
        if m2.get("wsd_groups") != n:
            note += " after: groups=%s" % m2.get("wsd_groups")
        reps = [replay_once(w.port) for _ in range(args.replays)]
        lat_us = [x * 1e6 for x in lat]
        return {
            "pub_p50_us": statistics.median(lat_us),
            "pub_p99_us": pctl(lat_us, 99),
            "stall_us": stall_us,
            "idle_stall_us": idle_us,
            "pongs": pongs,
            "replay_ms": statistics.median(reps) * 1e3,
            "note": note.strip(),
        }
    finally:
        if pg is not None:
            pg.stdin.close()
            try:
                pg.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pg.kill()
                pg.wait()
        w.stop()


def run_tick(path, n):
    """bench/tick.py N: the tick that carries 1,000 changes, in us."""
    env = dict(os.environ, WSD=path)
    out = subprocess.run(
        [sys.executable, os.path.join(BENCH, "tick.py"), str(n)],
        env=env, stdout=subprocess.PIPE, text=True, timeout=300,
        preexec_fn=(lambda: os.sched_setaffinity(0, ALL_CPUS))
        if PIN else None)
    m = re.search(r"tick_us=(\d+)", out.stdout)
    if out.returncode != 0 or not m:
        raise RuntimeError("tick.py %d failed: %s" % (n, out.stdout))
    return int(m.group(1))


# ==== Main ===============================================================

def machine(path):
    """nproc, CPU model, and the commit of the tree the binary sits in."""
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    tree = os.path.dirname(path)

    def git(*a):
        return subprocess.run(["git", "-C", tree] + list(a),
                              stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL,
                              text=True).stdout.strip()
    commit = git("rev-parse", "--short", "HEAD") or "?"
    if git("status", "--porcelain", "--untracked-files=no", "--",
           ":(top,glob)*.[ch]", ":(top,glob)Makefile"):
        commit += " + uncommitted changes to the sources"
    return os.cpu_count(), model, commit


def sizes(s):
    return [int(x) for x in s.split(",") if x]


def us(x):
    return "%d" % round(x)


def ms(x):
    return "%.2f" % x


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--wsd", action="append",
                    help="the binary (./wsd or $WSD); give it twice to "
                    "compare two, run by run in turn")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--groups", type=sizes, default=[1000, 10000, 100000])
    ap.add_argument("--sessions", type=sizes, default=[1000, 10000, 100000])
    ap.add_argument("--publishes", type=int, default=300)
    ap.add_argument("--pace", type=float, default=0.0,
                    help="ms from one publish's start to the next, at "
                    "least (0: back to back)")
    ap.add_argument("--replays", type=int, default=5)
    ap.add_argument("--quick", action="store_true",
                    help="one run, 1,000 and 10,000 only")
    ap.add_argument("--out", help="also write the table to this file")
    ap.add_argument("--_pinger", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._pinger:
        pinger(args._pinger)
        return
    if args.quick:
        args.runs = 1
        args.groups = [g for g in args.groups if g <= 10000]
        args.sessions = [g for g in args.sessions if g <= 10000]
    paths = [os.path.abspath(p) for p in args.wsd or
             [os.environ.get("WSD", os.path.join(ROOT, "wsd"))]]
    for path in paths:
        if not os.access(path, os.X_OK):
            sys.exit("scale: no wsd at %s (make, or --wsd PATH)" % path)
    if min(args.groups) < 1000:
        sys.exit("scale: --groups: at least 1000 (the replay group must "
                 "outlive the publishes' evictions)")
    if PIN:
        os.sched_setaffinity(0, ALL_CPUS - {0})
    started = time.time()
    cal = {path: calibrate(path) for path in paths}

    # Run r of every binary, then run r + 1: two binaries meet the same
    # weather on a shared machine.
    notes = []
    res = {(path, n): [] for path in paths for n in args.groups}
    for n in args.groups:
        for r in range(args.runs):
            for path in paths:
                x = run_groups(path, n, cal[path], args)
                if x["note"]:
                    notes.append("%s groups=%d run %d: %s" % (
                        path, n, r + 1, x["note"]))
                res[path, n].append(x)
                print("# %s groups=%d run=%d %s" % (path, n, r + 1, " ".join(
                    "%s=%s" % (k, ms(v) if k == "replay_ms" else us(v))
                    for k, v in x.items() if k != "note")),
                    file=sys.stderr, flush=True)
    ticks = {(path, n): [] for path in paths for n in args.sessions}
    for n in args.sessions:
        for r in range(args.runs):
            for path in paths:
                ticks[path, n].append(run_tick(path, n))
                print("# %s sessions=%d run=%d tick_us=%d" % (
                    path, n, r + 1, ticks[path, n][-1]),
                    file=sys.stderr, flush=True)

    cpus, model, _ = machine(paths[0])
    out = [
        "wsd scale, %s; nproc=%d, %s" % (
            time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
            cpus, model),
        "figures: medians of %d run%s, each from a fresh wsd process%s" % (
            args.runs, "" if args.runs == 1 else "s",
            "; wsd on CPU 0, clients on the others" if PIN else ""),
        "state: --max-groups N; N groups = %s, %s (%d events) and N-2 "
        "of %d events;" % (CTL, REPLAY, REPLAY_EVENTS, FILL_EVENTS),
        "       --history-total = exactly their bytes (history full)",
    ]
    for path in paths:
        out += [
            "",
            "%s (commit %s)" % (path, machine(path)[2]),
            "%-9s %11s %11s %10s %10s %10s" % (
                "groups", "pub p50 us", "pub p99 us", "stall us", "idle us",
                "replay ms"),
        ]
        for n in args.groups:
            x = {k: statistics.median(y[k] for y in res[path, n])
                 for k in res[path, n][0] if k != "note"}
            out.append("%-9d %11s %11s %10s %10s %10s" % (
                n, us(x["pub_p50_us"]), us(x["pub_p99_us"]),
                us(x["stall_us"]), us(x["idle_stall_us"]),
                ms(x["replay_ms"])))
        out.append("%-9s %11s" % ("sessions", "tick us"))
        out += ["%-9d %11s" % (n, us(statistics.median(ticks[path, n])))
                for n in args.sessions]
    out += [
        "",
        "pub      POST /api/groups/NEW/events into a new group, so one "
        "eviction each;",
        "         %d per run, one at a time%s, latency at the client" % (
            args.publishes, ", one every %g ms at most" % args.pace
            if args.pace else " back to back"),
        "stall    longest gap between pongs of a client pinging "
        "continuously, while",
        "         the publishes run; idle: the same for as long right "
        "after, alone",
        "replay   subscribe since=0 -> event %d arrives, median of "
        "%d per run" % (REPLAY_EVENTS, args.replays),
        "tick     bench/tick.py N: loop time of the tick carrying 1,000 "
        "session changes",
    ]
    out += ["note: " + line for line in notes]
    out.append("took %.0f s" % (time.time() - started))
    text = "\n".join(out) + "\n"
    sys.stdout.write(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)

if __name__ == "__main__":
    main()
