"""test_cluster - several wsd nodes on one Redis behave as one hub (--redis).

Starts its own redis-server (Debian's /usr/bin/redis-server) on 127.0.0.1
and a free port, in a fresh temporary directory, and three wsd nodes with
--redis; every redis-server is killed by its PID at the end.

- cross-node delivery and one order per group: publishers on every node at
  once (HTTP and WebSocket), every subscriber on every node sees the same
  seq order, and exactly the acknowledged events;
- history from any node (HTTP, get_history), with the epoch rules;
- resume on another node after SIGKILL of a node: no gap, no duplicate;
- Redis restarted mid-stream: local connections stay up, publishes answer
  503 `unavailable` meanwhile, no acknowledged event is lost (AOF with
  fsync always), what a subscriber missed comes from the stream; a Redis
  that lost everything gives an explicit history_gap with the new epoch;
- Redis with a password (--requirepass), and rediss:// (a certificate made
  with the openssl command, redis-server --tls-port);
- 1,000 subscribers over the nodes receive a burst completely;
- /readyz 503 while Redis is unreachable at start, then 200;
- one session registry: changes on any node seen on all, each announced
  once (changes racing on three nodes, the lease holder killed),
  connections on several nodes holding one session, a killed node's
  connections ending, --max-sessions counted over the cluster, holds
  made again after Redis lost everything; realtime_update and /health
  with the cluster's figures;
- the shared registry's faults, from an attack run: a node stalled past
  the lease, a node killed before its first tick, a node without session
  events, a commit held in the network past its reply timeout.
"""
import json
import os
import re
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time

from wsdtest import (DEADLINE, Server, check, count, done, free_port, http,
                     http_json, make_cert, read_to_end, redis_cmd, tls_socket,
                     wait_for)

REDIS = "/usr/bin/redis-server"
TMP = tempfile.mkdtemp(prefix="wsd-cluster-")
redises = []
servers = []        # every wsd started, stopped at the end whatever happens


def port_open(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


class Redis:
    """One redis-server of our own, in its own directory, by PID."""

    def __init__(self, port=None, extra=(), aof=False, tls=None):
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(dir=TMP)
        self.extra = list(extra)
        self.aof = aof
        self.tls = tls
        self.proc = None
        self.start()
        redises.append(self)

    def start(self):
        args = [REDIS, "--bind", "127.0.0.1", "--dir", self.dir,
                "--save", "", "--daemonize", "no", "--logfile",
                os.path.join(self.dir, "log")]
        if self.aof:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        if self.tls:
            args += ["--port", "0", "--tls-port", str(self.port),
                     "--tls-cert-file", self.tls[0], "--tls-key-file",
                     self.tls[1], "--tls-ca-cert-file", self.tls[0],
                     "--tls-auth-clients", "no"]
        else:
            args += ["--port", str(self.port)]
        self.proc = subprocess.Popen(args + self.extra,
                                     stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        if not wait_for(lambda: port_open(self.port)):
            raise RuntimeError("redis-server did not start")

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def url(self, auth=""):
        return "redis://%s127.0.0.1:%d" % (auth, self.port)

    def cli(self, *args):
        """One command, its reply's text."""
        return redis_cmd(self.port, *args)

def node(r, *args, url=None):
    srv = Server("--no-session-events", "--redis", url or r.url(), *args)
    servers.append(srv)
    return srv


def ready(srv, timeout=DEADLINE):
    return wait_for(lambda: http(srv.port, "GET", "/readyz")[0] == 200,
                    timeout)


def publish(srv, group, data, typ="e"):
    """(status, body) of one HTTP publish."""
    return http_json(srv.port, "POST", "/api/groups/%s/events" % group,
                     {"type": typ, "data": data})


def events_of(c, n, timeout=DEADLINE):
    """The next n envelopes on c (other messages kept aside)."""
    out = []
    end = time.monotonic() + timeout
    while len(out) < n:
        m = c.recv_json(max(0.1, end - time.monotonic()))
        if "seq" in m and m.get("type") not in ("subscribed", "error",
                                                "published", "history"):
            out.append(m)
    return out


def one_order(r):
    """Publishers on three nodes at once; every subscriber on every node
    sees the same events, in one seq order, exactly the acknowledged."""
    nodes = [node(r) for _ in range(3)]
    check("order: every node ready", all(ready(n) for n in nodes))
    subs = [n.ws("/ws/o") for n in nodes for _ in range(2)]
    check("order: subscribed at seq 0 everywhere, one epoch",
          len({(c.subscribed["epoch"], c.subscribed["seq"]) for c in subs})
          == 1 and subs[0].subscribed["seq"] == 0,
          repr([c.subscribed for c in subs]))
    acked = []
    lock = threading.Lock()
    per = 60

    def http_pub(i):
        for k in range(per):
            st, body = publish(nodes[i], "o", {"n": i, "k": k})
            if st == 202:
                with lock:
                    acked.append((body["seq"], i, k))

    def ws_pub():
        c = nodes[1].ws("/ws/pubonly")
        for k in range(per):
            c.send_json({"type": "publish", "group": "o", "event": "w",
                         "data": {"n": 9, "k": k}, "id": k})
        got = 0
        while got < per:
            m = c.recv_json()
            if m.get("type") == "published":
                with lock:
                    acked.append((m["seq"], 9, m["id"]))
                got += 1
        c.close()

    ts = [threading.Thread(target=http_pub, args=(i,)) for i in range(3)]
    ts.append(threading.Thread(target=ws_pub))
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    total = 4 * per
    check("order: every publish acknowledged", len(acked) == total,
          "%d of %d" % (len(acked), total))
    want = sorted((s, n, k) for s, n, k in acked)
    check("order: seqs 1..N, one per event",
          [s for s, _, _ in want] == list(range(1, total + 1)))
    ok = True
    for c in subs:
        got = events_of(c, total)
        seen = [(m["seq"], m["data"]["n"], m["data"]["k"]) for m in got]
        ok = ok and seen == want
    check("order: every subscriber on every node saw the same order",
          ok)
    # History from any node, with the same epoch.
    epoch = subs[0].subscribed["epoch"]
    st, h = http_json(nodes[2].port, "GET",
                      "/api/groups/o/events?since=%s:%d&limit=5" %
                      (epoch, total - 3))
    check("history: the last 3 from another node",
          st == 200 and h["epoch"] == epoch and h["seq"] == total and
          [e["seq"] for e in h["events"]] == [total - 2, total - 1, total]
          and h["more"] is False and "gap" not in h, repr(h)[:300])
    st, h = http_json(nodes[0].port, "GET",
                      "/api/groups/o/events?since=00000000:5&limit=2")
    check("history: another epoch is a gap from the oldest",
          st == 200 and h.get("gap") is True and h["oldest"] == 1 and
          [e["seq"] for e in h["events"]] == [1, 2] and h["more"] is True,
          repr(h)[:300])
    st, h = http_json(nodes[0].port, "GET", "/api/groups/none/events")
    check("history: a group without events has epoch null",
          st == 200 and h["epoch"] is None and h["events"] == [] and
          h["seq"] == 0, repr(h))
    subs[0].send_json({"type": "get_history", "group": "o",
                       "since": "%s:%d" % (epoch, total - 1), "id": "h"})
    m = subs[0].recv_until(lambda m: m.get("type") == "history")
    check("get_history over WebSocket from Redis",
          m.get("id") == "h" and [e["seq"] for e in m["events"]] == [total],
          repr(m)[:300])
    # A late subscriber on a node that did not follow the group replays.
    c = nodes[2].ws("/ws/o?since=%s:%d" % (epoch, total - 2))
    got = events_of(c, 2)
    check("resume on a node: the stream's kept events, then live",
          c.subscribed["seq"] == total and
          [m["seq"] for m in got] == [total - 1, total], repr(got))
    st, _ = publish(nodes[0], "o", "live")
    m = events_of(c, 1)[0]
    check("resume: then live", m["seq"] == total + 1, repr(m))
    for x in subs + [c]:
        x.close()
    return nodes


def resume_after_kill(r, nodes):
    """A node dies (SIGKILL); its client resumes on another node with no
    gap and no duplicate."""
    a, b, c3 = nodes
    c = a.ws("/ws/k")
    epoch = c.subscribed["epoch"]
    for i in range(5):
        publish(b, "k", i)
    got = events_of(c, 5)
    last = got[-1]["seq"]
    a.expect_exit = None        # killed on purpose
    a.stop(signal.SIGKILL)
    acked = []
    for i in range(5, 12):
        st, body = publish(b, "k", i)
        if st == 202:
            acked.append(body["seq"])
    c2 = c3.ws("/ws/k?since=%s:%d" % (epoch, last))
    got2 = events_of(c2, len(acked))
    check("kill: resumed on another node, no gap, no duplicate",
          c2.subscribed["epoch"] == epoch and
          [m["seq"] for m in got2] == acked and
          [m["data"] for m in got2] == list(range(5, 12)),
          "%r %r" % (acked, [m["seq"] for m in got2]))
    publish(b, "k", "after")
    m = events_of(c2, 1)[0]
    check("kill: then live", m["data"] == "after" and
          m["seq"] == acked[-1] + 1, repr(m))
    c2.close()
    c.close()


def redis_restart():
    """Redis dies and comes back (AOF, fsync always): connections stay,
    publishes meanwhile answer 503 unavailable, and every acknowledged
    event reaches the subscriber exactly once, in order."""
    r = Redis(aof=True)
    a, b = node(r), node(r)
    check("restart: ready", ready(a) and ready(b))
    c = b.ws("/ws/x")
    w = a.ws("/ws/wpub")
    acked = []
    for i in range(20):
        st, body = publish(a, "x", i)
        if st == 202:
            acked.append(body["seq"])
    got = events_of(c, len(acked))
    r.kill()
    check("restart: /readyz 503 while Redis is down",
          wait_for(lambda: http(a.port, "GET", "/readyz")[0] == 503))
    st, body = publish(a, "x", "down")
    check("restart: HTTP publish 503 unavailable while down",
          st == 503 and body.get("error") == "unavailable", repr(body))
    w.send_json({"type": "publish", "group": "x", "event": "e",
                 "data": "down", "id": 1})
    m = w.recv_until(lambda m: m.get("id") == 1)
    check("restart: WebSocket publish error unavailable while down",
          m.get("type") == "error" and m.get("code") == "unavailable",
          repr(m))
    st, body = http_json(a.port, "GET", "/api/groups/x/events")
    check("restart: history 503 while down", st == 503, repr(body))
    r.start()
    check("restart: ready again", ready(a) and ready(b))
    for i in range(20, 40):
        st, body = publish(a, "x", i)
        if st == 202:
            acked.append(body["seq"])
    got += events_of(c, len(acked) - len(got))
    seqs = [m["seq"] for m in got]
    check("restart: the subscriber stayed connected and got every "
          "acknowledged event once, in order",
          seqs == sorted(set(seqs)) and set(acked) <= set(seqs) and
          seqs == list(range(1, seqs[-1] + 1)),
          "acked %r got %r" % (acked, seqs))
    # Redis loses everything: a new epoch, said explicitly.
    epoch = c.subscribed["epoch"]
    r.kill()
    shutil.rmtree(r.dir)
    os.mkdir(r.dir)
    r.start()
    check("lost: ready again", ready(a) and ready(b))
    st, body = publish(a, "x", "new")
    m = c.recv_until(lambda m: m.get("code") == "history_gap" or
                     m.get("data") == "new")
    check("lost: history_gap with the new epoch before the new stream",
          m.get("code") == "history_gap" and m.get("epoch") != epoch,
          repr(m))
    m = events_of(c, 1)[0]
    check("lost: then the new stream from seq 1",
          st == 202 and m["seq"] == 1 and m["data"] == "new", repr(m))
    for x in (c, w):
        x.close()
    for n in (a, b):
        n.stop()
    r.kill()


def trimmed_gap():
    """A node stopped while Redis drops its subscriber connection (past
    its output limit) and the stream moves on past --history: once back,
    its subscriber gets what the node had heard, then history_gap naming
    exactly what the stream no longer holds, then what it holds, then
    live events; no event twice, none silently missing."""
    r = Redis()
    a = node(r, "--history", "5")
    b = node(r, "--history", "5", "--send-queue", "64M")
    check("trimmed: ready", ready(a) and ready(b))
    c = b.ws("/ws/tg")
    publish(a, "tg", 0)
    check("trimmed: the first event", events_of(c, 1)[0]["seq"] == 1)
    r.cli("CONFIG", "SET", "client-output-buffer-limit", "pubsub 65536 0 0")
    os.kill(b.pid(), signal.SIGSTOP)
    w = a.ws("/ws/tgpub")
    big = "y" * 2048
    n = 6000
    for i in range(n):
        w.send_json({"type": "publish", "group": "tg", "event": "e",
                     "data": {"i": i + 1, "pad": big}, "id": i})
    acked = 0
    while acked < n:
        if w.recv_json().get("type") == "published":
            acked += 1
    os.kill(b.pid(), signal.SIGCONT)
    check("trimmed: the stopped node is ready again", ready(b))
    st, body = publish(a, "tg", "end")
    seqs, gaps = [], []
    while True:
        m = c.recv_json()
        if m.get("code") == "history_gap":
            gaps.append(m)
        elif m.get("group") == "tg" and "seq" in m:
            seqs.append(m["seq"])
            if m["data"] == "end":
                break
    g = gaps[0] if gaps else {}
    before = [x for x in seqs if x < g.get("oldest", 0)]
    after = [x for x in seqs if x >= g.get("oldest", 0)]
    check("trimmed: one history_gap, the stream's oldest kept in it",
          len(gaps) == 1 and g.get("oldest", 0) > 2, repr(gaps))
    check("trimmed: before the gap, what the node heard, in order",
          before == list(range(2, len(before) + 2)),
          repr([(x, y) for x, y in zip(before, before[1:]) if y != x + 1]) +
          " n=%d gap=%r" % (len(before), g))
    check("trimmed: after it, the kept events to the last, in order",
          after == list(range(g.get("oldest", 0), body["seq"] + 1)) and
          len(after) >= 5, "%r %r" % (after, body))
    check("trimmed: the missed range is exactly the gap's",
          len(before) + 1 < g.get("oldest", 0) and
          g.get("seq") == g.get("oldest", 0) - 1, repr(g))
    # A node whose --history is shorter than the stream reads its tail.
    d = node(r)
    check("tail: ready", ready(d))
    for i in range(10):
        publish(d, "tail", i)
    st, h = http_json(a.port, "GET", "/api/groups/tail/events?since=0")
    t = a.ws("/ws/tail?since=%s:6" % h["epoch"])
    got = events_of(t, 4)
    check("tail: a node with a shorter history resumes from the stream's "
          "last events", [m["seq"] for m in got] == [7, 8, 9, 10] and
          t.subscribed["seq"] == 10, repr(got))
    t.close()
    for x in (c, w):
        x.close()
    for x in (a, b, d):
        x.stop()
    r.kill()


def password_and_tls():
    r = Redis(extra=["--requirepass", "s3cret"])
    bad = node(r, url=r.url(":wrong@"))
    good = node(r, "--allow-origin", "http://page.example",
                url=r.url(":s3cret@"))
    check("password: the right one is ready", ready(good))
    st, body = publish(good, "p", 1)
    check("password: publish", st == 202 and body["seq"] == 1, repr(body))
    st, h, body = http(good.port, "POST", "/api/groups/p/events",
                       {"type": "e"}, {"Origin": "http://page.example"})
    check("cors: an answer Redis brought later has its request's CORS "
          "headers", st == 202 and h.get("access-control-allow-origin") ==
          "http://page.example", repr(h))
    check("password: a wrong one is not ready, and says why",
          http(bad.port, "GET", "/readyz")[0] == 503 and
          wait_for(lambda: bad.find("WRONGPASS|invalid"), 10) is not None)
    for n in (bad, good):
        n.stop()
    r.kill()
    try:
        crt, key = make_cert(TMP, "r", "localhost",
                             "IP:127.0.0.1,DNS:localhost")
        made = True
    except subprocess.CalledProcessError:
        made = False
    check("tls: certificate made", made)
    r = Redis(tls=(crt, key))
    a = node(r, "--redis-ca", crt, url="rediss://127.0.0.1:%d" % r.port)
    b = node(r, "--redis-ca", crt, url="rediss://localhost:%d" % r.port)
    check("tls: ready over rediss://", ready(a) and ready(b))
    c = b.ws("/ws/t")
    st, body = publish(a, "t", "secret")
    m = events_of(c, 1)[0]
    check("tls: delivered across nodes", st == 202 and
          m["data"] == "secret", repr(m))
    c.close()
    nocert = node(r, url="rediss://127.0.0.1:%d" % r.port)
    time.sleep(0.5)
    check("tls: an unknown certificate is refused (not ready)",
          http(nocert.port, "GET", "/readyz")[0] == 503)
    for n in (a, b, nocert):
        n.stop()
    r.kill()


def pipelined_sse_star(r, nodes):
    """Pipelined HTTP publishes on one connection are answered in order
    (each waits for Redis); an event stream on another node gets them,
    with ids that resume on a third; "*" reaches every node."""
    a, b, c = nodes
    s = socket.create_connection(("127.0.0.1", b.port), timeout=DEADLINE)
    s.sendall(b"GET /sse?groups=pl HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    buf = b""

    def records(n):
        nonlocal buf
        out = []
        while len(out) < n:
            while b"\n\n" not in buf:
                d = s.recv(65536)
                if not d:
                    return out
                buf += d
            rec, buf = buf.split(b"\n\n", 1)
            out.append(rec.decode())
        return out

    while b"\r\n\r\n" not in buf:
        buf += s.recv(65536)
    head, buf = buf.split(b"\r\n\r\n", 1)
    head = head.decode()
    first = records(3)      # retry, subscribed, the mark
    check("sse: 200, subscribed, then the mark",
          "200 OK" in head and '"subscribed"' in "".join(first) and
          first[-1].startswith("id: pl="), repr(first))
    body = json.dumps({"type": "p", "data": 0})
    req = ""
    for i in range(5):
        body = json.dumps({"type": "p", "data": i})
        req += ("POST /api/groups/pl/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Content-Length: %d\r\n\r\n%s" % (len(body), body))
    req += "GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    p = socket.create_connection(("127.0.0.1", a.port), timeout=DEADLINE)
    p.sendall(req.encode())
    data = b""
    while True:
        d = p.recv(65536)
        if not d:
            break
        data += d
    p.close()
    seqs = [int(x) for x in
            re.findall(rb'"seq":(\d+)', data)]
    check("pipelined: five 202s in order, then /livez",
          data.count(b"HTTP/1.1 202") == 5 and seqs == [1, 2, 3, 4, 5] and
          data.rstrip().endswith(b'{"status":"ok"}'), repr(data[-300:]))
    recs = records(5)
    ids = [l[4:] for r in recs for l in r.split("\n") if l.startswith("id: ")]
    check("sse: the five events with their ids",
          len(ids) == 5 and ids[-1].endswith(":5"), repr(recs))
    s.close()
    st, _ = publish(a, "pl", 5)
    s = socket.create_connection(("127.0.0.1", c.port), timeout=DEADLINE)
    s.sendall(("GET /sse?groups=pl HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               "Last-Event-ID: %s\r\n\r\n" % ids[2]).encode())
    buf = s.recv(65536)
    while b"\r\n\r\n" not in buf:
        buf += s.recv(65536)
    buf = buf.split(b"\r\n\r\n", 1)[1]
    recs = records(6)
    data = [json.loads(l[6:]) for r in recs for l in r.split("\n")
            if l.startswith("data: ")]
    ev = [m["data"] for m in data if m.get("type") in ("p", "e")]
    check("sse: resumed on a third node from the id, no gap, no duplicate",
          ev == [3, 4, 5], repr(recs))
    s.close()
    ws = [n.ws("/ws/any") for n in nodes]
    st, body = publish(a, "*", "all")
    got = [x.recv_until(lambda m: m.get("group") == "*") for x in ws]
    check("*: one broadcast reaches every node's connections",
          st == 202 and all(m["data"] == "all" for m in got), repr(got))
    for x in ws:
        x.close()


def connections_cut(r, nodes):
    """Redis drops the nodes' connections (CLIENT KILL) while events keep
    coming: the subscribers' nodes resubscribe and read what they missed
    from the stream; every subscriber sees one gapless order holding
    every acknowledged event, with no history_gap."""
    a, b, c = nodes
    subs = [b.ws("/ws/cut"), c.ws("/ws/cut")]
    acked, stop = [], threading.Event()

    def pub():
        i = 0
        while not stop.is_set():
            st, body = publish(a, "cut", i)
            if st == 202:
                acked.append(body["seq"])
            i += 1
            time.sleep(0.002)

    t = threading.Thread(target=pub)
    t.start()
    time.sleep(0.3)
    for kind in ("pubsub", "normal", "pubsub"):
        r.cli("CLIENT", "KILL", "TYPE", kind)
        time.sleep(0.4)
    stop.set()
    t.join()
    check("cut: events acknowledged around the cuts", len(acked) > 20,
          repr(len(acked)))
    check("cut: every node ready again",
          all(ready(n) for n in (a, b, c)))
    m = http(b.port, "GET", "/metrics")[2].decode()
    check("cut: the subscriber connection was cut and made again",
          re.search(r'wsd_redis_reconnects_total\{conn="subscriber"\} '
                    r'[1-9]', m) is not None, m[-1500:])
    st, body = publish(a, "cut", "last")
    last = body["seq"] if st == 202 else None
    for k, x in enumerate(subs):
        got, gaps = [], 0
        while True:
            m = x.recv_json()
            if m.get("code") == "history_gap":
                gaps += 1
            elif m.get("group") == "cut" and "seq" in m:
                got.append(m["seq"])
                if m["data"] == "last":
                    break
        check("cut: subscriber %d saw 1..%s once, in order, every "
              "acknowledged one, no gap" % (k, last),
              got == list(range(1, last + 1)) and set(acked) <= set(got)
              and gaps == 0, "gaps=%d got=%r acked=%r" % (gaps, got, acked))
        x.close()


def fanout_1000(r, nodes):
    """1,000 subscribers over the nodes get a burst of 50 completely."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    subs = []
    for i in range(1000):
        subs.append(nodes[i % len(nodes)].ws("/ws/big"))
    burst = 50
    for i in range(burst):
        st, _ = publish(nodes[0], "big", i)
        if st != 202:
            break
    complete = 0
    for c in subs:
        try:
            got = events_of(c, burst)
            if [m["data"] for m in got] == list(range(burst)):
                complete += 1
        except Exception:
            pass
        c.close()
    check("fanout: 1,000 subscribers over %d nodes got all %d" %
          (len(nodes), burst), complete == 1000, "%d complete" % complete)


def tls_get(port, path):
    """(status, answer) of one GET over TLS; (None, why) when it fails."""
    try:
        t = tls_socket(port)
        t.sendall(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  b"Connection: close\r\n\r\n" % path.encode())
        data = read_to_end(t)
        t.close()
    except (OSError, ssl.SSLError) as e:
        return None, repr(e)
    m = re.match(rb"HTTP/1\.1 (\d+)", data)
    return (int(m.group(1)) if m else None), data


def ready_tls(srv):
    return wait_for(lambda: tls_get(srv.port, "/readyz")[0] == 200)


def tls_deferred_pipeline():
    """Over TLS with small request limits, requests pipelined in one
    record behind a publish that waits for Redis: the request buffer
    fills while OpenSSL still holds the rest of the record, where epoll
    cannot see it.  Every request is answered, in order, and the loop
    turns meanwhile.  (wsd used to spin for ever there when 32 requests
    had been answered first, and to close the connection as too big
    when fewer had.)"""
    r = Redis()
    crt, key = make_cert(TMP, "dp", "dp.example")
    srv = node(r, "--tls-cert", crt, "--tls-key", key, "--max-header",
               "1536", "--max-body", "512")
    check("tls pipeline: ready", ready_tls(srv))
    get = b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    body = b'{"type":"e","data":1}'
    post = (b"POST /api/groups/dp/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n"
            b"\r\n%s" % (len(body), body))
    for before in (40, 10):
        blob = get * before + post + get * 100
        statuses, buf = [], b""
        try:
            t = tls_socket(srv.port)
            t.sendall(blob)     # one SSL_write: one record of 5-6 KB
            while len(statuses) < before + 101:
                d = t.recv(65536)
                if not d:
                    break
                buf += d
                statuses = re.findall(rb"HTTP/1\.1 (\d+)", buf)
            t.close()
        except (OSError, ssl.SSLError):
            pass
        want = [b"200"] * before + [b"202"] + [b"200"] * 100
        check("tls pipeline: %d requests before a deferred publish, 100 "
              "after, all answered in order" % before, statuses == want,
              "%d answers" % len(statuses))
        st, _ = tls_get(srv.port, "/livez")
        check("tls pipeline: the loop still turns (%d before)" % before,
              st == 200, st)
    srv.stop()
    r.kill()


def history_bytes():
    """--history-bytes bounds a group's stream in Redis as it bounds a
    node's history: the oldest envelopes go first, one larger than the
    bound is not kept (and empties it), and the count bound still holds."""
    r = Redis()
    a = node(r, "--history-bytes", "1000", "--history", "5")
    b = node(r, "--history-bytes", "1000", "--history", "5")
    check("history-bytes: nodes ready", ready(a) and ready(b))

    def kept():
        st, body = http_json(b.port, "GET", "/api/groups/hb/events?since=0")
        return st, body

    for i in range(10):
        publish(a, "hb", "x" * 200 + str(i))
    st, body = kept()
    sizes = [len(json.dumps(e, separators=(",", ":"))) for e in
             body.get("events", [])]
    check("history-bytes: the stream holds at most the bound's bytes",
          st == 200 and 1 <= len(sizes) <= 3 and sum(sizes) <= 1000 and
          body["events"][-1]["data"] == "x" * 200 + "9" and
          body["oldest"] == body["seq"] - len(sizes) + 1 and body["gap"],
          "%s %r %r" % (st, sizes, {k: body.get(k) for k in
                                    ("seq", "oldest", "gap")}))
    for i in range(8):
        publish(a, "hb", i)
    st, body = kept()
    check("history-bytes: --history still bounds the count",
          st == 200 and [e["data"] for e in body["events"]] ==
          [3, 4, 5, 6, 7], repr(body.get("events")))
    st, _ = publish(a, "hb", "y" * 1200)
    st2, body = kept()
    check("history-bytes: an event over the bound is sent, not kept",
          st == 202 and st2 == 200 and body["events"] == [] and
          body["oldest"] == body["seq"] + 1, repr(body))
    publish(a, "hb", "z")
    st, body = kept()
    check("history-bytes: then kept again",
          [e["data"] for e in body["events"]] == ["z"], repr(body))
    xlen = r.cli("XLEN", "wsd:{hb}:log")
    check("history-bytes: Redis holds one entry", xlen == ":1\r\n",
          repr(xlen))
    a.stop()
    b.stop()
    r.kill()


def session_events_of(c, pred, timeout=DEADLINE):
    """session_event envelopes on c until pred(list) holds (or timeout)."""
    got = []
    end = time.monotonic() + timeout
    while not pred(got) and time.monotonic() < end:
        try:
            m = c.recv_json(max(0.1, end - time.monotonic()))
        except Exception:
            break
        if m.get("type") == "session_event":
            got.append(m)
    return got


def announced(evs, kind):
    """Every id announced by events of kind, in order, repeats kept."""
    return [i for m in evs if m["event_type"] == kind
            for i in m["data"]["sessions"]]


def chained(evs):
    """Each event's previous_count is the last one's current_count."""
    return all(a["data"]["current_count"] == b["data"]["previous_count"]
               for a, b in zip(evs, evs[1:]))


def conns(srv, sid):
    """Session sid's connections as srv lists them, or None: not listed."""
    st, body = http_json(srv.port, "GET", "/api/sessions?limit=1000")
    for row in body.get("sessions", []) if st == 200 else []:
        if row["id"] == sid:
            return row["connections"]
    return None


def monitor_events(srv):
    """Every session_event kept in Redis, as srv reads the stream."""
    st, body = http_json(srv.port, "GET",
                         "/api/groups/monitor/events?since=0&limit=1000")
    return [m for m in (body or {}).get("events", [])
            if m.get("type") == "session_event"] if st == 200 else []


class Proxy:
    """A TCP proxy in front of Redis for one fault at a time.

    hold=[d1, d2, ...]: the next client bytes carrying a session commit
    are held d1 seconds (then d2 for the next...), then passed on, even
    after the client went away.  cut=True: once armed, the connection
    carrying the next session attach is cut after Redis got it, before
    its reply, and new connections are refused for 4 s."""

    def __init__(self, port, hold=()):
        self.port_to = port
        self.delays = list(hold)
        self.armed = False
        self.refuse_until = 0
        self.lock = threading.Lock()
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(16)
        self.port = self.ls.getsockname()[1]
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            if time.monotonic() < self.refuse_until:
                c.close()
                continue
            s = socket.create_connection(("127.0.0.1", self.port_to))
            threading.Thread(target=self.pipe, args=(c, s, True),
                             daemon=True).start()
            threading.Thread(target=self.pipe, args=(s, c, False),
                             daemon=True).start()

    def pipe(self, src, dst, up):
        try:
            while True:
                d = src.recv(65536)
                if not d:
                    break
                if up and b"$6\r\ncommit\r\n" in d:
                    with self.lock:
                        delay = self.delays.pop(0) if self.delays else 0
                    time.sleep(delay)
                cut = up and self.armed and b"$6\r\nattach\r\n" in d
                dst.sendall(d)
                if cut:
                    self.armed = False
                    self.refuse_until = time.monotonic() + 4
                    time.sleep(0.2)     # Redis runs it; its reply is lost
                    break
        except OSError:
            pass
        for x in (src, dst):
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self.ls.close()


def leader_of(r, nodes):
    """The node that holds the session tick's lease."""
    holder = re.search(r"\$16\r\n([0-9a-f]{16})",
                       r.cli("GET", "wsd:{monitor}:s:lease"))
    for n in nodes:
        st, body = http_json(n.port, "GET", "/health")
        if holder and st == 200 and body.get("node") == holder.group(1):
            return n
    return None


def shared_sessions():
    """One session registry for every node: changes made on any node are
    seen on all, each announced exactly once by the node holding the
    lease, which another node takes over when it dies; connections on
    every node count, and a killed node's stop counting."""
    r = Redis()
    ns = [Server("--redis", r.url(), "--tick", "0.2", "--session-ttl", "1")
          for _ in range(3)]
    servers.extend(ns)
    a, b, c = ns
    check("sessions: every node ready", all(ready(n) for n in ns))
    wa, wc = a.ws("/ws/monitor"), c.ws("/ws/monitor")

    st, body = http_json(a.port, "POST", "/api/sessions",
                         {"id": "s1", "metadata": {"v": 1}})
    check("sessions: POST on one node 201", st == 201 and
          body == {"id": "s1"}, "%s %r" % (st, body))
    st, body = http_json(b.port, "POST", "/api/sessions", {"id": "s1"})
    check("sessions: the same id on another node 409", st == 409 and
          body.get("error") == "conflict", "%s %r" % (st, body))
    st, body = http_json(c.port, "PUT", "/api/sessions/s1",
                         {"metadata": {"v": 2}})
    st2, lst = http_json(b.port, "GET", "/api/sessions")
    check("sessions: PUT on a third node 200, listed from the second",
          st == 200 and st2 == 200 and lst["total"] == 1 and
          lst["sessions"][0]["id"] == "s1" and
          lst["sessions"][0]["metadata"] == {"v": 2} and
          lst["sessions"][0]["connections"] == 0, "%s %r" % (st, lst))
    st, body = http_json(a.port, "POST", "/api/sessions", {})
    rid = body.get("id", "")
    st2, cnt = http_json(c.port, "GET", "/api/sessions/count")
    check("sessions: a random id, counted from another node",
          st == 201 and re.fullmatch(r"[0-9a-f]{16}", rid) and
          cnt == {"active_sessions": 2}, "%r %r" % (body, cnt))

    # Changes racing on three nodes while the tick runs: each announced
    # once, with counts that chain, the same events on every node.
    ids = ["x%d" % i for i in range(30)]

    def make(i):
        http_json(ns[i % 3].port, "POST", "/api/sessions", {"id": ids[i]})

    ts = [threading.Thread(target=make, args=(i,)) for i in range(30)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    gone = [ids[i] for i in range(0, 30, 3)]
    codes = [http(ns[(i + 1) % 3].port, "DELETE", "/api/sessions/" +
                  x)[0] for i, x in enumerate(gone)]
    codes.append(http(a.port, "DELETE", "/api/sessions/" + rid)[0])
    check("sessions: DELETE from other nodes 204, again 404",
          codes == [204] * 11 and
          http(b.port, "DELETE", "/api/sessions/" + rid)[0] == 404,
          repr(codes))
    want = set(ids + [rid, "s1"])

    def complete(evs):
        return (set(announced(evs, "session_destroyed")) >=
                set(gone + [rid]) and
                set(announced(evs, "session_created")) >= want)

    ea = session_events_of(wa, complete)
    ec = session_events_of(wc, complete)
    created, destroyed = (announced(ec, "session_created"),
                          announced(ec, "session_destroyed"))
    check("sessions: every change announced exactly once",
          sorted(created) == sorted(want) and
          sorted(destroyed) == sorted(gone + [rid]) and
          announced(ec, "session_updated") == ["s1"],
          "%r %r" % (created, destroyed))
    check("sessions: counts chain from 0 to the live count",
          chained(ec) and ec[0]["data"]["previous_count"] == 0 and
          ec[-1]["data"]["current_count"] == 21,
          repr([(m["data"]["previous_count"], m["data"]["current_count"])
                for m in ec]))
    check("sessions: the same events, same seqs, on two nodes",
          [(m["seq"], m["data"]) for m in ea] ==
          [(m["seq"], m["data"]) for m in ec], "%d %d" % (len(ea), len(ec)))

    # Connections on two nodes hold one session; it ends --session-ttl
    # after the last leaves, announced once.
    s_a = a.ws("/ws/sessions/w1")
    s_b = b.ws("/ws/sessions/w1")

    check("sessions: two nodes' connections counted on a third",
          wait_for(lambda: conns(c, "w1") == 2), repr(conns(c, "w1")))
    s_a.close()
    check("sessions: one left, one counts",
          wait_for(lambda: conns(c, "w1") == 1))
    s_b.close()
    ev = session_events_of(wc, lambda e: "w1" in announced(
        e, "session_destroyed"))
    check("sessions: ended after its last connection, once",
          announced(ev, "session_created") == ["w1"] and
          announced(ev, "session_destroyed") == ["w1"] and
          conns(a, "w1") is None,
          repr([(m["event_type"], m["data"]["sessions"]) for m in ev]))

    # realtime_update: the cluster's sums and every node's figures.
    def update():
        while True:
            m = wc.recv_json()
            if m.get("type") == "realtime_update":
                return m["data"]
    upd = update()
    check("sessions: realtime_update has every node and their sums",
          len(upd.get("nodes", [])) == 3 and upd["connections"] ==
          sum(n["connections"] for n in upd["nodes"]) and
          upd["connections"] >= 2 and
          upd["sessions"]["active_count"] == 21, repr(upd))
    # /health's cluster figures are as of this node's last tick.
    wait_for(lambda: http_json(b.port, "GET", "/health")[1]["sessions"]
             == 21)
    st, h = http_json(b.port, "GET", "/health")
    check("sessions: /health has this node and the cluster",
          st == 200 and h["cluster"]["nodes"] == 3 and
          h["sessions"] == 21 and h["cluster"]["connections"] >= 2 and
          re.fullmatch(r"[0-9a-f]{16}", h["node"]), repr(h))

    # --max-sessions counts the cluster's sessions: at 21, a node whose
    # limit is 21 refuses a new one (503), and still replaces metadata.
    m = Server("--redis", r.url(), "--max-sessions", "21")
    servers.append(m)
    ready(m)
    st, body = http_json(m.port, "POST", "/api/sessions", {"id": "y1"})
    st2, _ = http_json(m.port, "PUT", "/api/sessions/y1", {})
    st3, _ = http_json(m.port, "PUT", "/api/sessions/s1",
                       {"metadata": {"v": 3}})
    check("sessions: --max-sessions N counts every node's (503 at N)",
          st == 503 and body.get("error") == "unavailable" and
          st2 == 503 and st3 == 200, "%s %r %s %s" % (st, body, st2, st3))
    m.stop()

    # A node killed with a session's only connection: it stops counting
    # once its report lapses, and the session ends --session-ttl later.
    victim = [n for n in ns if n is not leader_of(r, ns)][0]
    k1 = victim.ws("/ws/sessions/k1")
    check("sessions: k1 held", wait_for(lambda: conns(c if victim is not c
                                                       else a, "k1") == 1))
    victim.expect_exit = None
    victim.stop(signal.SIGKILL)
    k1.close()
    live = [n for n in ns if n is not victim]
    watcher = wc if victim is not c else wa
    ev = session_events_of(watcher, lambda e: "k1" in announced(
        e, "session_destroyed"))
    check("sessions: a killed node's session ends",
          "k1" in announced(ev, "session_destroyed"),
          repr([(m["event_type"], m["data"]["sessions"]) for m in ev]))

    # The lease holder killed: another node takes the tick over, and a
    # change made after is announced once.
    lead = leader_of(r, live)
    check("sessions: one node holds the lease", lead is not None)
    other = [n for n in live if n is not lead][0]
    lead.expect_exit = None
    lead.stop(signal.SIGKILL)
    w2 = other.ws("/ws/monitor")
    st, _ = http_json(other.port, "POST", "/api/sessions", {"id": "z1"})
    http_json(other.port, "POST", "/api/sessions", {"id": "z2"})
    # z2 is announced after any repeat of z1 would have been.
    ev = session_events_of(w2, lambda e: "z2" in announced(
        e, "session_created"))
    check("sessions: after the leader died, announced once by another",
          st == 201 and announced(ev, "session_created").count("z1") == 1
          and leader_of(r, [other]) is other,
          repr([(m["event_type"], m["data"]["sessions"]) for m in ev]))

    # A session deleted while a connection holds it stays deleted when
    # Redis cuts the nodes' connections and they hold theirs again.
    d1 = other.ws("/ws/sessions/d1")
    check("sessions: d1 held", wait_for(lambda: conns(other, "d1") == 1))
    st = http(other.port, "DELETE", "/api/sessions/d1")[0]
    ups = count(other, r"cluster up")
    r.cli("CLIENT", "KILL", "TYPE", "normal")
    r.cli("CLIENT", "KILL", "TYPE", "pubsub")
    back = wait_for(lambda: count(other, r"cluster up") > ups)
    d2 = other.ws("/ws/sessions/d2")    # a hold made after the cut
    wait_for(lambda: conns(other, "d2") == 1)
    check("sessions: deleted while held, not made again after a cut",
          st == 204 and back and conns(other, "d1") is None and
          conns(other, "d2") == 1, "%s %s %r" % (st, back,
                                                 conns(other, "d1")))
    d1.close()
    d2.close()

    # Redis restarted empty: the node holds its sessions again.
    h1 = other.ws("/ws/sessions/h1")
    check("sessions: h1 held", wait_for(lambda: conns(other, "h1") == 1))
    r.kill()
    r.start()
    check("sessions: after Redis lost everything, h1 is held again",
          wait_for(lambda: conns(other, "h1") == 1), repr(conns(other,
                                                                 "h1")))
    h1.close()
    for w in (wa, wc, w2):
        w.close()
    other.stop()
    r.kill()


def shared_session_faults():
    """The attack run's findings on the shared registry, each of which
    failed before its fix: a node stalled past the lease holds its
    sessions again; a node killed before its first tick is forgotten; a
    node without session events cannot make the counts wrap; a commit
    that arrives after its take was announced changes nothing."""
    r = Redis()
    a = Server("--redis", r.url(), "--tick", "0.2", "--session-ttl", "1")
    b = Server("--redis", r.url(), "--tick", "0.2", "--session-ttl", "1")
    servers.extend([a, b])
    check("faults: nodes ready", ready(a) and ready(b))

    # SIGSTOP past the lease: forgotten, its session ends; once it runs
    # again it is told, and holds its open connection's session again.
    p1 = a.ws("/ws/sessions/p1")
    check("faults: p1 held", wait_for(lambda: conns(b, "p1") == 1))
    os.kill(a.pid(), signal.SIGSTOP)
    gone = wait_for(lambda: conns(b, "p1") is None)
    os.kill(a.pid(), signal.SIGCONT)
    check("faults: a stalled node's session ended, then held again",
          gone and wait_for(lambda: conns(b, "p1") == 1),
          repr(conns(b, "p1")))
    p1.close()
    check("faults: and ends when its connection leaves",
          wait_for(lambda: conns(b, "p1") is None))

    # Killed before its first report (--tick 3): its hold still ends.
    e = Server("--redis", r.url(), "--tick", "3", "--session-ttl", "1")
    servers.append(e)
    ready(e)
    e1 = e.ws("/ws/sessions/e1")
    check("faults: e1 held", wait_for(lambda: conns(b, "e1") == 1))
    e.expect_exit = None
    e.stop(signal.SIGKILL)
    e1.close()
    check("faults: a node killed before its first tick is forgotten",
          wait_for(lambda: conns(b, "e1") is None), repr(conns(b, "e1")))

    for n in (a, b):
        n.stop()
    r.kill()

    # A node with --no-session-events makes a session another deletes:
    # the counts announced stay the registry's, and announcing goes on.
    r = Redis()
    b = Server("--redis", r.url(), "--tick", "0.2")
    x = Server("--redis", r.url(), "--tick", "0.2", "--no-session-events")
    servers.extend([b, x])
    ready(b)
    ready(x)
    st1 = http_json(x.port, "POST", "/api/sessions", {"id": "m1"})[0]
    wait_for(lambda: conns(b, "m1") == 0)
    st2 = http(b.port, "DELETE", "/api/sessions/m1")[0]
    http_json(b.port, "POST", "/api/sessions", {"id": "n1"})
    wait_for(lambda: "n1" in announced(monitor_events(b),
                                       "session_created"))
    evs = monitor_events(b)
    check("faults: a node without events cannot make counts wrap",
          st1 == 201 and st2 == 204 and
          announced(evs, "session_created").count("n1") == 1 and
          evs[-1]["data"]["current_count"] == 1 and
          all(m["data"]["current_count"] < 1000 for m in evs),
          repr([(m["event_type"], m["data"]["previous_count"],
                 m["data"]["current_count"]) for m in evs]))
    x.stop()
    b.stop()
    r.kill()

    # A commit held in the network past the node's 5 s reply timeout
    # lands after the node reconnected, announced that take again and
    # took the next one: it must change nothing.
    r = Redis()
    px = Proxy(r.port, hold=[8.5, 0, 3.0])
    n = Server("--redis", "redis://127.0.0.1:%d" % px.port, "--tick", "1",
               "--session-ttl", "1")
    servers.append(n)
    ready(n)
    http_json(n.port, "POST", "/api/sessions", {"id": "late1"})
    first = wait_for(lambda: "late1" in announced(monitor_events(n),
                                                  "session_created"))
    http_json(n.port, "POST", "/api/sessions", {"id": "late2"})
    both = wait_for(lambda: "late2" in announced(monitor_events(n),
                                                 "session_created"))
    time.sleep(4)   # the held commit lands meanwhile (8.5 s after it left)
    evs = monitor_events(n)
    st, lst = http_json(n.port, "GET", "/api/sessions")
    check("faults: a late commit changes nothing",
          first and both and
          announced(evs, "session_created") == ["late1", "late2"] and
          chained(evs) and [x["id"] for x in lst["sessions"]] ==
          ["late1", "late2"] and not px.delays,
          repr([(m["seq"], m["data"]["sessions"]) for m in evs]))
    n.stop()
    px.close()
    r.kill()

    # Second attack run.  A DELETE made while the holding node is
    # forgotten (stalled) stays made when it comes back; so does one made
    # while an attach's reply was lost with the connection.  With
    # --session-ttl 0, a cut connection or Redis stalled past the lease
    # ends no session that is held.
    r = Redis()
    px = Proxy(r.port)
    a = Server("--redis", "redis://127.0.0.1:%d" % px.port, "--tick", "0.2",
               "--session-ttl", "0")
    b = Server("--redis", r.url(), "--tick", "0.2", "--session-ttl", "0")
    servers.extend([a, b])
    ready(a)
    ready(b)
    http_json(b.port, "POST", "/api/sessions", {"id": "dx"})
    dx = a.ws("/ws/sessions/dx")
    t0 = a.ws("/ws/sessions/t0")
    check("faults: dx and t0 held", wait_for(
        lambda: conns(b, "dx") == 1 and conns(b, "t0") == 1))
    os.kill(a.pid(), signal.SIGSTOP)
    forgotten = wait_for(lambda: conns(b, "dx") == 0)
    st = http(b.port, "DELETE", "/api/sessions/dx")[0]
    os.kill(a.pid(), signal.SIGCONT)
    back = wait_for(lambda: conns(b, "t0") == 1)
    check("faults: deleted while its holder was forgotten: stays deleted",
          forgotten and st == 204 and back and conns(b, "dx") is None,
          "%s %s %s %r" % (forgotten, st, back, conns(b, "dx")))

    http_json(b.port, "POST", "/api/sessions", {"id": "lx"})
    l1 = a.ws("/ws/sessions/lx")
    wait_for(lambda: conns(b, "lx") == 1)
    px.armed = True
    l2 = a.ws("/ws/sessions/lx")        # its attach runs; the reply is lost
    counted = wait_for(lambda: conns(b, "lx") == 2)
    st = http(b.port, "DELETE", "/api/sessions/lx")[0]
    ups = count(a, r"cluster up")
    again = wait_for(lambda: count(a, r"cluster up") > ups)
    # A hold made after the reconnection: once Redis counts it, the
    # node's holds made again before it have been answered too.
    lm = a.ws("/ws/sessions/lmark")
    wait_for(lambda: conns(b, "lmark") == 1)
    check("faults: deleted while an attach reply was lost: stays deleted",
          counted and st == 204 and again and conns(b, "lx") is None,
          "%s %s %s %r" % (counted, st, again, conns(b, "lx")))

    # (The SIGSTOP above outlasted the lease and its grace: t0 ended and
    # was made again; from here on it must not.)
    http_json(b.port, "POST", "/api/sessions", {"id": "mark0"})
    wait_for(lambda: "mark0" in announced(monitor_events(b),
                                          "session_created"))
    seq0 = monitor_events(b)[-1]["seq"]
    r.cli("CLIENT", "KILL", "TYPE", "normal")
    wait_for(lambda: conns(b, "t0") == 1)
    r.proc.send_signal(signal.SIGSTOP)
    time.sleep(2)           # Redis stalled past the 1 s lease
    r.proc.send_signal(signal.SIGCONT)
    http_json(b.port, "POST", "/api/sessions", {"id": "mark"})
    wait_for(lambda: "mark" in announced(monitor_events(b),
                                         "session_created"))
    evs = [m for m in monitor_events(b) if m["seq"] > seq0]
    check("faults: --session-ttl 0, connections cut, Redis stalled: a "
          "held session does not end",
          "t0" not in announced(evs, "session_created") and
          "t0" not in announced(evs, "session_destroyed") and
          conns(b, "t0") == 1,
          repr([(m["event_type"], m["data"]["sessions"]) for m in evs]))
    for w in (dx, t0, l1, l2, lm):
        w.close()
    a.stop()
    b.stop()
    px.close()
    r.kill()


def unreachable_at_start():
    port = free_port()
    n = Server("--no-session-events", "--redis",
               "redis://127.0.0.1:%d" % port)
    servers.append(n)
    check("unreachable: /readyz 503",
          http(n.port, "GET", "/readyz")[0] == 503)
    check("unreachable: /livez 200", http(n.port, "GET", "/livez")[0] == 200)
    check("unreachable: said so in the log",
          wait_for(lambda: n.find("redis down"), 10) is not None)
    st, body = publish(n, "u", 1)
    check("unreachable: publish 503 unavailable",
          st == 503 and body.get("error") == "unavailable", repr(body))
    st, _, m = http(n.port, "GET", "/metrics")
    check("unreachable: /metrics has wsd_redis_up 0",
          'wsd_redis_up{conn="command"} 0' in m.decode(), m[-400:])
    r = Redis(port=port)
    check("unreachable: ready once Redis is", ready(n, 30))
    st, body = publish(n, "u", 1)
    check("unreachable: then publish works", st == 202, repr(body))
    n.stop()
    r.kill()


def main():
    if not os.access(REDIS, os.X_OK):
        check("redis-server installed (apt-get install redis-server)", False)
        done()
    try:
        unreachable_at_start()
        r = Redis()
        nodes = one_order(r)
        pipelined_sse_star(r, nodes)
        connections_cut(r, nodes)
        resume_after_kill(r, nodes)
        fanout_1000(r, [nodes[1], nodes[2]])
        for n in nodes[1:]:
            n.stop()
        r.kill()
        redis_restart()
        trimmed_gap()
        password_and_tls()
        tls_deferred_pipeline()
        history_bytes()
        shared_sessions()
        shared_session_faults()
    finally:
        for srv in servers:
            if srv.proc.poll() is None:
                srv.proc.kill()     # only after a failure: else stopped
                srv.proc.wait()
        for r in redises:
            r.kill()
        shutil.rmtree(TMP, ignore_errors=True)
    done()


main()
