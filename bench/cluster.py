#!/usr/bin/python3
"""bench/cluster.py - fan-out through Redis (--redis) next to one wsd alone.

    bench/cluster.py [--subs 1000] [--events 200] [--runs 3]

Three set-ups, each from fresh processes, each run --runs times (medians):

  alone     one wsd without --redis: publisher and every subscriber on it
  1 node    one wsd with --redis: the same, every event through Redis
  3 nodes   three wsd on one Redis: the publisher on the first, the
            subscribers spread over the three

A publisher on a WebSocket sends --events events (200 bytes of data) to
one group as fast as its answers come back (a window of 64 unanswered);
the run ends when every subscriber has every event.  Printed: deliveries
per second (subscribers x events / time from the first publish to the
last delivery), and the Redis commands per published event, from
redis-server's INFO commandstats (the script's own commands are counted
by Redis under their names: evalsha, hget, hincrby, xadd, xlen, hset,
publish, and xrange and xdel once a stream is full):
evals/ev is what wsd sends per event (round trips), cmds/ev everything
Redis ran per event, the scripts' commands and the nodes' reads included.

The generator is this one Python process; with 1,000 subscribers it, not
wsd, is the limit, so read the ratios between set-ups, not the figures.
Needs /usr/bin/redis-server.  Every process it starts is stopped by PID.
"""
import argparse
import os
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "test"))
from wsdtest import WS, free_port, redis_cmd  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WSD = os.environ.get("WSD", os.path.join(ROOT, "build", "wsd"))
REDIS = "/usr/bin/redis-server"


def wait_port(port, timeout=20):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def commandstats(port):
    out = {}
    for line in redis_cmd(port, "INFO", "commandstats").split("\r\n"):
        if line.startswith("cmdstat_"):
            name, rest = line[8:].split(":", 1)
            out[name] = int(rest.split(",")[0].split("=")[1])
    return out


def start_wsd(redis_port=None):
    port = free_port()
    args = [WSD, "--listen", "127.0.0.1:%d" % port, "--no-session-events",
            "--log-level", "warn", "--max-connections", "20000"]
    if redis_port:
        args += ["--redis", "redis://127.0.0.1:%d" % redis_port]
    p = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not wait_port(port):
        raise RuntimeError("wsd did not start")
    if redis_port:
        end = time.monotonic() + 20
        while time.monotonic() < end:
            s = socket.create_connection(("127.0.0.1", port), 5)
            s.sendall(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      b"Connection: close\r\n\r\n")
            if s.recv(100).startswith(b"HTTP/1.1 200"):
                s.close()
                break
            s.close()
            time.sleep(0.05)
    return p, port


def frames(buf):
    """Whole server frames in buf: (count of text frames, bytes used)."""
    n = used = 0
    while len(buf) - used >= 2:
        b1 = buf[used + 1] & 127
        h = 2
        if b1 == 126:
            if len(buf) - used < 4:
                break
            b1 = int.from_bytes(buf[used + 2:used + 4], "big")
            h = 4
        elif b1 == 127:
            if len(buf) - used < 10:
                break
            b1 = int.from_bytes(buf[used + 2:used + 10], "big")
            h = 10
        if len(buf) - used < h + b1:
            break
        if buf[used] & 15 == 1:
            n += 1
        used += h + b1
    return n, used


def run_once(ports, pub_port, nsubs, nevents):
    subs = []
    for i in range(nsubs):
        c = WS(ports[i % len(ports)], "/ws/fan")
        c.sock.setblocking(False)
        subs.append(c)
    pub = WS(pub_port, "/ws/pubber")
    data = "x" * 200
    sel = selectors.DefaultSelector()
    left = {}
    for c in subs:
        sel.register(c.sock, selectors.EVENT_READ, c)
        c.rb = bytearray(c.buf)
        left[c] = nevents
    sent = answered = 0
    window = 64
    t0 = time.monotonic()
    pub_buf = b""
    deadline = t0 + 300
    while left and time.monotonic() < deadline:
        while sent < nevents and sent - answered < window:
            pub.send_json({"type": "publish", "group": "fan", "event": "b",
                           "data": data, "id": sent})
            sent += 1
        pub.sock.setblocking(False)
        try:
            d = pub.sock.recv(65536)
            pub_buf += d
        except BlockingIOError:
            pass
        pub.sock.setblocking(True)
        k, used = frames(pub_buf)
        answered += k
        pub_buf = pub_buf[used:]
        for key, _ in sel.select(timeout=0.01):
            c = key.data
            try:
                d = c.sock.recv(1 << 20)
            except BlockingIOError:
                continue
            if not d:
                raise RuntimeError("a subscriber was closed")
            c.rb += d
            k, used = frames(c.rb)
            del c.rb[:used]
            left[c] -= k
            if left[c] <= 0:
                sel.unregister(c.sock)
                del left[c]
    t = time.monotonic() - t0
    complete = not left
    for c in subs:
        c.close()
    pub.close()
    return nsubs * nevents / t, complete


def setup(name, nodes, use_redis, nsubs, nevents, runs):
    rates, per_event, complete = [], [], True
    for _ in range(runs):
        procs, rport, tmp = [], None, None
        try:
            if use_redis:
                tmp = tempfile.mkdtemp(prefix="wsd-bench-")
                rport = free_port()
                procs.append(subprocess.Popen(
                    [REDIS, "--port", str(rport), "--bind", "127.0.0.1",
                     "--save", "", "--appendonly", "no", "--dir", tmp],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                wait_port(rport)
            ports = []
            for _ in range(nodes):
                p, port = start_wsd(rport)
                procs.append(p)
                ports.append(port)
            before = commandstats(rport) if use_redis else {}
            rate, ok = run_once(ports, ports[0], nsubs, nevents)
            rates.append(rate)
            complete = complete and ok
            if use_redis:
                after = commandstats(rport)
                calls = sum(after.get(k, 0) - before.get(k, 0)
                            for k in after)
                sent = sum(after.get(k, 0) - before.get(k, 0)
                           for k in ("evalsha", "eval"))
                per_event.append((sent / nevents, calls / nevents))
                top = {k: after.get(k, 0) - before.get(k, 0) for k in after
                       if after.get(k, 0) != before.get(k, 0)}
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
            if tmp:
                subprocess.call(["rm", "-rf", tmp])
    line = "%-8s %8d %12.0f %9s" % (name, nodes, statistics.median(rates),
                                    "yes" if complete else "NO")
    if per_event:
        line += " %9.2f %9.2f" % (
            statistics.median(x[0] for x in per_event),
            statistics.median(x[1] for x in per_event))
        line += "   " + " ".join("%s=%d" % kv for kv in sorted(top.items()))
    print(line, flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--subs", type=int, default=1000)
    ap.add_argument("--events", type=int, default=200)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    print("%d subscribers, %d events of 200 bytes, median of %d runs" %
          (a.subs, a.events, a.runs))
    print("%-8s %8s %12s %9s %9s %9s   %s" % (
        "setup", "nodes", "deliveries/s", "complete", "evals/ev", "cmds/ev",
        "every Redis command of the last run"))
    setup("alone", 1, False, a.subs, a.events, a.runs)
    setup("1 node", 1, True, a.subs, a.events, a.runs)
    setup("3 nodes", 3, True, a.subs, a.events, a.runs)


main()
