"""test_hub - the hub of wsd from outside: groups, events, resume, limits.

Black-box tests of SPEC.md "Groups and routes", "Envelope", "Client ->
server messages", "Delivery guarantees" and the HTTP API, over loopback
against the real binary.  Each topic is one function with its own wsd
(started with the flags it needs) and closes every client it opened before
the server is stopped, so shutdown never waits on a drain.

    WSD=./wsd /usr/bin/python3 test/test_hub.py

Every wait has a deadline (wsdtest.DEADLINE); nothing asserts on a sleep.
"""
import datetime
import json
import os
import re
import resource
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wsdtest import (DEADLINE, OP_BIN, OP_CLOSE, OP_TEXT,  # noqa: E402
                     WS, Closed, Server, check, done, wait_for)

TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
ENVELOPE = {"type", "group", "seq", "timestamp", "data"}


# ---- helpers ----------------------------------------------------------------

def note(name, what):
    """Something worth knowing that is not a failure."""
    print("NOTE: %s: %s" % (name, what), file=sys.stderr, flush=True)


# Every message the server sends must be valid JSON.  One that is not is
# counted (and reported once per topic by main) and salvaged with regular
# expressions, so the checks that follow still see its seq and type.
invalid = {"n": 0, "first": None}


def parse(data):
    try:
        return json.loads(data)
    except ValueError:
        pass
    invalid["n"] += 1
    if invalid["first"] is None:
        invalid["first"] = data[:300]
    m = {"_invalid": data}
    for k in ("type", "group", "code"):
        v = re.search(rb'"%s":"([^"]*)"' % k.encode(), data)
        if v:
            m[k] = v.group(1).decode("utf-8", "replace")
    for k in ("seq", "oldest"):
        v = re.search(rb'"%s":(\d+)' % k.encode(), data)
        if v:
            m[k] = int(v.group(1))
    v = re.search(rb'"timestamp":?"([^"]*)"', data)
    if v:
        m["timestamp"] = v.group(1).decode()
    v = re.search(rb'"data":(.*)}$', data, re.S)
    if v:
        try:
            m["data"] = json.loads(v.group(1))
        except ValueError:
            m["data"] = v.group(1)      # bytes: never equal to what was sent
    return m


def rj(c, timeout=DEADLINE):
    """The next JSON text message on c (pings skipped)."""
    op, data = c.recv_message(timeout)
    if op != OP_TEXT:
        raise RuntimeError("expected text, got opcode %d %r" % (op, data))
    return parse(data)


def ru(c, pred, timeout=DEADLINE):
    """Read messages until pred(msg); return that message."""
    end = time.monotonic() + timeout
    while True:
        m = rj(c, max(0.1, end - time.monotonic()))
        if pred(m):
            return m


class Http:
    """One keep-alive HTTP/1.1 connection: several requests, in order."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port),
                                             timeout=DEADLINE)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def _fill(self):
        d = self.sock.recv(65536)
        if not d:
            raise Closed()
        self.buf += d

    def send(self, method, path, body=None, headers=None):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        h = {"Host": "127.0.0.1"}
        if body is not None:
            h["Content-Length"] = str(len(body))
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        raw = ("%s %s HTTP/1.1\r\n" % (method, path)).encode()
        raw += "".join("%s: %s\r\n" % kv for kv in h.items()).encode()
        self.sock.sendall(raw + b"\r\n" + (body or b""))

    def response(self):
        """(status, headers, body) of the next response."""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        hdrs = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        n = int(hdrs.get("content-length", "0"))
        while len(self.buf) < n:
            self._fill()
        body, self.buf = self.buf[:n], self.buf[n:]
        return int(lines[0].split()[1]), hdrs, body

    def request(self, method, path, body=None, headers=None):
        self.send(method, path, body, headers)
        return self.response()

    def json(self, method, path, body=None, headers=None):
        st, _, data = self.request(method, path, body, headers)
        return st, parse(data) if data else None

    def close(self):
        self.sock.close()


def hjson(srv, method, path, body=None, headers=None):
    """One request on a new connection: (status, parsed JSON or raw)."""
    st, _, data = srv.http(method, path, body, headers)
    return st, parse(data) if data else None


def raw_http(srv, raw):
    """Send raw request bytes, read the whole answer until the server
    closes: (status, headers, body)."""
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=DEADLINE)
    s.sendall(raw)
    data = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
    except (ConnectionResetError, socket.timeout):
        pass
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    st = int(lines[0].split()[1]) if lines[0] else 0
    return st, hdrs, body


def publish(srv, group, typ, data=None, conn=None):
    """POST an event; returns (status, answer)."""
    body = {"type": typ}
    if data is not None:
        body["data"] = data
    path = "/api/groups/%s/events" % group
    if conn is not None:
        return conn.json("POST", path, body)
    return hjson(srv, "POST", path, body)


def is_error_body(b):
    return isinstance(b, dict) and isinstance(b.get("error"), str) and \
        isinstance(b.get("message"), str)


def status_of(c):
    """get_status on c: the data object."""
    c.send_json({"type": "get_status"})
    return ru(c, lambda m: m.get("type") == "status").get("data", {})


def pong_ok(c, name, ident="p"):
    """The connection is alive and has nothing else pending: a ping with
    an id gets a pong with it as the very next message."""
    try:
        c.send_json({"type": "ping", "id": ident})
        m = rj(c)
        return check(name + ": still open, next message is the pong",
                     m.get("type") == "pong" and m.get("id") == ident, repr(m))
    except (Closed, OSError, ValueError, RuntimeError) as e:
        return check(name + ": still open (pong)", False, repr(e))


def envelopes(c, n, group=None, timeout=DEADLINE):
    """The next n envelopes (skipping other messages, and other groups
    when group is given)."""
    out = []
    end = time.monotonic() + timeout
    while len(out) < n:
        m = rj(c, max(0.1, end - time.monotonic()))
        if "seq" in m and "timestamp" in m and m.get("type") not in (
                "subscribed", "published") and \
                (group is None or m.get("group") == group):
            out.append(m)
    return out


def seqs_ok(name, got, first, last):
    """got (a list of seq) is exactly first..last."""
    want = list(range(first, last + 1))
    if got == want:
        return check(name, True)
    dup = sorted({s for s in got if got.count(s) > 1})
    miss = sorted(set(want) - set(got))
    return check(name, False, "len=%d dups=%s missing=%s head=%s tail=%s" % (
        len(got), dup[:10], miss[:10], got[:5], got[-5:]))


def groups_by_name(srv):
    st, b = hjson(srv, "GET", "/api/groups")
    lst = b.get("groups") if isinstance(b, dict) else b
    return st, {g.get("group"): g for g in (lst or []) if isinstance(g, dict)}


def metric(srv, name):
    st, _, body = srv.http("GET", "/metrics")
    m = re.search(r"^%s (\d+)$" % re.escape(name), body.decode(), re.M)
    return int(m.group(1)) if m else None


def close_all(clients):
    for c in clients:
        c.close()


def ts_ok(ts):
    """RFC 3339 UTC with milliseconds, and close to now."""
    if not isinstance(ts, str) or not TS_RE.match(ts):
        return False
    t = datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()
    return abs(t - time.time()) < 300


# ---- groups and routes ------------------------------------------------------

def routes():
    with Server("--tick", "3600", "--session-ttl", "0") as srv:
        p = srv.port
        table = [("/ws/events", "events"), ("/ws/monitor", "monitor"),
                 ("/ws/chat/s1", "chat:s1"), ("/ws/agent/a7", "agent:a7"),
                 ("/ws/sessions/s1", "session:s1"),
                 ("/api/v1/ws/events", "events"),
                 ("/api/v1/ws/chat/s2", "chat:s2"),
                 ("/api/v1/ws/sessions/s3", "session:s3"),
                 ("/ws/" + "n" * 64, "n" * 64),
                 ("/ws/k/" + "i" * 62, "k:" + "i" * 62),
                 ("/ws/A-z_0.9:x", "A-z_0.9:x")]
        open_ = []
        for path, group in table:
            c = WS(p, path)
            open_.append(c)
            if not check("route %s: 101" % path, c.status == 101,
                         "status %s" % c.status):
                continue
            d = status_of(c)
            check("route %s -> %s" % (path, group), d.get("groups") == [group],
                  repr(d))
        # The session routes made sessions s1 and s3.
        st, b = hjson(srv, "GET", "/api/sessions/count")
        check("sessions/count after /ws/sessions/s1 and alias s3",
              st == 200 and b == {"active_sessions": 2}, "%s %r" % (st, b))
        s1 = open_[4]
        d = status_of(s1)
        check("route /ws/sessions/s1: status session_id s1",
              d.get("session_id") == "s1", repr(d))
        st, b = hjson(srv, "GET", "/api/sessions")
        ids = [s.get("id") for s in (b or {}).get("sessions", [])]
        check("GET /api/sessions lists s1", "s1" in ids, repr(b))
        # An event to the group reaches the route's connection.
        st, b = publish(srv, "chat:s1", "chat.message", {"text": "hi"})
        m = envelopes(open_[2], 1)[0]
        check("route chat:s1 receives chat:s1 events",
              m.get("group") == "chat:s1" and m.get("data") == {"text": "hi"},
              repr(m))
        close_all(open_)
        # With --session-ttl 0, the session ends with its last connection.
        check("session s1 ends with its last connection",
              wait_for(lambda: hjson(srv, "GET", "/api/sessions/count")[1] ==
                       {"active_sessions": 0}), "")

        bad = [("/ws/" + "n" * 65, "65-byte name"),
               ("/ws/k/" + "i" * 63, "65-byte KIND:ID"),
               ("/ws/sessions/" + "i" * 57, "65-byte session:ID"),
               ("/ws/a%20b", "%20 in name"),
               ("/ws/bad!", "'!' in name"),
               ("/ws/chat/bad!", "'!' in id"),
               ("/ws/a%2Fb", "%2F in name"),
               ("/ws/chat/", "empty id"),
               ("/ws//x", "empty kind"),
               ("/ws/", "empty name"),
               ("/ws/a/b/c", "three segments"),
               ("/ws/a/b/c/d", "four segments"),
               ("/api/v1/ws/bad!", "alias, '!' in name"),
               ("/api/v1/ws/a/b/c", "alias, three segments"),
               ("/nows/x", "not a ws route"),
               ("/ws/x?since=abc", "since not a number"),
               ("/ws/x?since=-1", "negative since")]
        for path, why in bad:
            c = WS(p, path)
            body = getattr(c, "body", b"")
            try:
                eb = json.loads(body)
            except ValueError:
                eb = None
            check("bad route %s (%s): 400/404 before upgrade" % (path, why),
                  c.status in (400, 404) and is_error_body(eb),
                  "status %s body %r" % (c.status, body))
            c.close()
        st, b = hjson(srv, "GET", "/api/sessions/count")
        check("bad session route made no session",
              b == {"active_sessions": 0}, repr(b))
        for path in ("/ws/x", "/ws/chat/s1", "/api/v1/ws/x"):
            st, b = hjson(srv, "GET", path)
            check("GET %s without upgrade: 426" % path,
                  st == 426 and is_error_body(b), "%s %r" % (st, b))


# ---- isolation --------------------------------------------------------------

def isolation():
    with Server("--tick", "3600") as srv:
        p = srv.port
        a1, a2 = WS(p, "/ws/chat/a"), WS(p, "/ws/chat/a")
        others = {"chat:b": WS(p, "/ws/chat/b"), "events": WS(p, "/ws/events"),
                  "agent:a": WS(p, "/ws/agent/a"), "chat": WS(p, "/ws/chat"),
                  "session:a": WS(p, "/ws/sessions/a")}
        sub = WS(p, "/ws/xsub")                 # joined by subscribe
        sub.send_json({"type": "subscribe", "group": "chat:c"})
        ru(sub, lambda m: m.get("type") == "subscribed")
        others["chat:c"] = sub
        st, b = publish(srv, "chat:a", "secret", {"only": "chat:a"})
        check("isolation: publish 202 delivered 2",
              st == 202 and b.get("delivered") == 2, "%s %r" % (st, b))
        for i, c in enumerate((a1, a2)):
            m = envelopes(c, 1)[0]
            check("isolation: chat:a subscriber %d gets it" % i,
                  m.get("type") == "secret" and m.get("group") == "chat:a", repr(m))
        for g, c in others.items():
            st, b = publish(srv, g, "marker", {"g": g})
            check("isolation: marker to %s delivered 1" % g,
                  st == 202 and b.get("delivered") == 1, "%s %r" % (st, b))
            m = rj(c)
            check("isolation: first thing %s receives is its marker" % g,
                  m.get("type") == "marker" and m.get("group") == g and
                  m.get("data") == {"g": g}, repr(m))
        st, b = publish(srv, "chat:a", "marker", {"g": "chat:a"})
        for i, c in enumerate((a1, a2)):
            m = rj(c)
            check("isolation: chat:a subscriber %d next is its marker" % i,
                  m.get("type") == "marker" and m.get("seq") == 2, repr(m))
        close_all([a1, a2, *others.values()])


# ---- fan-out ----------------------------------------------------------------

def fanout():
    n, events = 1000, 20
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096:             # 1,000 sockets here, as many in wsd
        resource.setrlimit(resource.RLIMIT_NOFILE, (
            4096 if hard == resource.RLIM_INFINITY else min(4096, hard), hard))
    with Server("--max-connections", "2000", "--tick", "3600") as srv:
        subs = []
        try:
            for i in range(n):
                subs.append(WS(srv.port, "/ws/fan"))
            check("fan-out: %d upgrades" % n,
                  all(c.status == 101 for c in subs))
            st, g = groups_by_name(srv)
            check("fan-out: /api/groups shows %d subscribers" % n,
                  g.get("fan", {}).get("subscribers") == n, repr(g.get("fan")))
            conn = Http(srv.port)
            delivered = []
            for i in range(events):
                st, b = publish(srv, "fan", "tick", {"i": i, "pad": "x" * 50},
                                conn=conn)
                delivered.append((st, b.get("seq"), b.get("delivered")))
            conn.close()
            check("fan-out: every publish 202 with seq 1..%d delivered %d" % (
                events, n), delivered == [(202, i + 1, n) for i in range(events)],
                repr(delivered[:3]))
            first, bad_order, bad_bytes = None, 0, 0
            for c in subs:
                got = []
                for _ in range(events):
                    op, data = c.recv_message()
                    got.append(data)
                seqs = [parse(d).get("seq") for d in got]
                if seqs != list(range(1, events + 1)):
                    bad_order += 1
                if first is None:
                    first = got
                elif got != first:
                    bad_bytes += 1
            check("fan-out: all %d got seq 1..%d in order" % (n, events),
                  bad_order == 0, "%d out of order" % bad_order)
            check("fan-out: identical bytes for every subscriber",
                  bad_bytes == 0, "%d differ" % bad_bytes)
            m = [parse(d) for d in first]
            check("fan-out: data intact",
                  [x["data"]["i"] for x in m] == list(range(events)))
            st, b = hjson(srv, "GET", "/api/groups/fan/events?since=0&limit=100")
            check("fan-out: history holds the same objects",
                  st == 200 and b.get("events") == m, "%s" % st)
        finally:
            close_all(subs)


# ---- publish ----------------------------------------------------------------

def publishing():
    with Server("--tick", "3600") as srv:
        p = srv.port
        sub = WS(p, "/ws/pub")
        pubc = WS(p, "/ws/publisher")
        # HTTP
        st, b = publish(srv, "pub", "over.http", {"n": 1})
        check("publish HTTP: 202 {seq:1, delivered:1}",
              st == 202 and b == {"seq": 1, "delivered": 1}, "%s %r" % (st, b))
        st, b = publish(srv, "nobody", "x", {"n": 1})
        check("publish HTTP to an empty group: 202 delivered 0",
              st == 202 and b == {"seq": 1, "delivered": 0}, "%s %r" % (st, b))
        # WebSocket, with an id
        for ident in ("p1", 7, {"k": [1, "two"]}):
            pubc.send_json({"type": "publish", "group": "pub", "event": "over.ws",
                            "data": ident, "id": ident})
            m = rj(pubc)
            check("publish WS id %r: published reply" % (ident,),
                  m.get("type") == "published" and m.get("id") == ident and
                  isinstance(m.get("seq"), int), repr(m))
            extra = set(m) - {"type", "id", "seq"}
        if extra:
            note("published reply", "members %s beyond SPEC.md" % extra)
        # Without an id: no reply (the next answer is the pong).
        pubc.send_json({"type": "publish", "group": "pub", "event": "no.id",
                        "data": None})
        pubc.send_json({"type": "ping", "id": "after"})
        m = rj(pubc)
        check("publish WS without id: no reply", m.get("type") == "pong" and
              m.get("id") == "after", repr(m))
        evs = envelopes(sub, 5)
        check("publish: subscriber sees HTTP and WS events in order",
              [(e["type"], e["seq"]) for e in evs] ==
              [("over.http", 1), ("over.ws", 2), ("over.ws", 3),
               ("over.ws", 4), ("no.id", 5)], repr(evs))
        check("publish: WS data passed through",
              [e.get("data") for e in evs[1:]] ==
              ["p1", 7, {"k": [1, "two"]}, None], repr(evs[1:]))
        check("publish: the publisher (other group) got no event",
              pong_ok(pubc, "publisher", "q"))
        close_all([sub, pubc])


def broadcast():
    with Server("--tick", "3600") as srv:
        p = srv.port
        paths = ["/ws/events", "/ws/chat/a", "/ws/agent/x", "/ws/sessions/s",
                 "/ws/monitor", "/api/v1/ws/events", "/ws/lonely"]
        cs = [WS(p, x) for x in paths]
        lonely = cs[-1]
        lonely.send_json({"type": "unsubscribe", "group": "lonely"})
        ru(lonely, lambda m: m.get("type") == "unsubscribed")
        st, b = publish(srv, "*", "announce", {"all": True})
        check("broadcast: POST /api/groups/*/events 202 delivered to all",
              st == 202 and b.get("delivered") == len(cs) and b.get("seq") == 1,
              "%s %r" % (st, b))
        for path, c in zip(paths, cs):
            m = ru(c, lambda m: m.get("type") == "announce")
            check("broadcast reaches %s" % path,
                  m.get("data") == {"all": True} and m.get("seq") == 1 and
                  set(m) == ENVELOPE, repr(m))
        close_all(cs)


# ---- envelope ---------------------------------------------------------------

def envelope():
    with Server("--tick", "3600") as srv:
        c = WS(srv.port, "/ws/sessions/env")
        payloads = [{"nested": {"a": [1, 2, {"b": None}]}, "t": True},
                    [1, "two", 3.5, 0.1, -7e-9],
                    "text with \"quotes\", \\ and unicode \u00e9\u20ac\U0001F600",
                    12345678901234567890123, None, False, {}]
        for d in payloads:
            publish(srv, "session:env", "agent.activity", d)
        srv.http("POST", "/api/groups/session:env/events", {"type": "no.data"})
        weird = "chat.message \u00e9 \"q\""
        publish(srv, "session:env", weird, {"x": 1})
        evs = envelopes(c, len(payloads) + 2)
        for i, e in enumerate(evs):
            check("envelope %d: exactly type, group, seq, timestamp, data" % i,
                  set(e) == ENVELOPE, repr(sorted(e)))
            check("envelope %d: group session:env" % i,
                  e.get("group") == "session:env", repr(e.get("group")))
            check("envelope %d: seq %d" % (i, i + 1), e.get("seq") == i + 1,
                  repr(e.get("seq")))
            check("envelope %d: timestamp RFC 3339 UTC ms" % i,
                  ts_ok(e.get("timestamp")), repr(e.get("timestamp")))
        for i, d in enumerate(payloads):
            check("envelope %d: data passed through" % i,
                  evs[i].get("data") == d and type(evs[i].get("data")) is type(d),
                  "%r != %r" % (evs[i].get("data"), d))
        check("envelope: type passed through", evs[0]["type"] == "agent.activity")
        check("envelope: no data -> null", evs[-2].get("data") is None and
              evs[-2].get("type") == "no.data", repr(evs[-2]))
        check("envelope: odd type passed through", evs[-1].get("type") == weird,
              repr(evs[-1].get("type")))
        c.close()
        # seq of four digits and more: still a valid envelope.
        big = WS(srv.port, "/ws/big")
        conn = Http(srv.port)
        for i in range(1, 1001):
            conn.send("POST", "/api/groups/big/events", {"type": "n", "data": i})
            if i % 50 == 0 or i == 1000:        # pipelined, 50 at a time
                for _ in range(50):
                    conn.response()
        conn.close()
        raws = [big.recv_message()[1] for _ in range(1000)]
        bad = [r for r in raws if _loads(r) is r]
        check("envelope: seq 1..1000 all valid JSON", not bad,
              "%d invalid, first %r" % (len(bad), bad[:1]))
        e = parse(raws[-1])
        check("envelope: seq 1000 has exactly the five members",
              set(e) == ENVELOPE and e.get("seq") == 1000, repr(raws[-1]))
        st, _, body = srv.http("GET", "/api/groups/big/events?since=998")
        check("history: seq 999, 1000 over HTTP are valid JSON",
              _loads(body) is not body, repr(body[:200]))
        big.close()


# ---- resume -----------------------------------------------------------------

def resume():
    total = 1500
    with Server("--tick", "3600") as srv:
        p = srv.port
        published = [0]
        errors = []

        def publisher():
            conn = Http(p)
            try:
                for i in range(1, total + 1):
                    st, b = publish(srv, "res", "step", {"i": i}, conn=conn)
                    if st != 202 or b.get("seq") != i:
                        errors.append((i, st, b))
                    published[0] = i
                    time.sleep(0.001)   # a stream, not a burst (pacing only)
            finally:
                conn.close()

        got = []
        c = WS(p, "/ws/res")
        t = threading.Thread(target=publisher, daemon=True)
        t.start()
        try:
            # Phase 1: live, then drop the connection mid-stream.
            while not got or got[-1] < 200:
                got += [e["seq"] for e in envelopes(c, 1, "res")]
            c.close()
            last = got[-1]
            wait_for(lambda: published[0] >= last + 50)
            missed1 = published[0] - last
            # Phase 2: ?since=LAST replays what was missed, then live.
            c = WS(p, "/ws/res?since=%d" % last)
            check("resume ?since: 101", c.status == 101, repr(c.status))
            first = envelopes(c, 1, "res")[0]["seq"]
            check("resume ?since: first event is LAST+1 (missed %d)" % missed1,
                  first == last + 1, "first %d last %d" % (first, last))
            got.append(first)
            while got[-1] < 700:
                got += [e["seq"] for e in envelopes(c, 1, "res")]
            c.close()
            last = got[-1]
            wait_for(lambda: published[0] >= last + 50)
            missed2 = published[0] - last
            # Phase 3: subscribe with since on another route's connection.
            c = WS(p, "/ws/elsewhere")
            c.send_json({"type": "subscribe", "group": "res", "since": last})
            m = rj(c)
            check("resume subscribe: subscribed {type, group, seq} first",
                  m.get("type") == "subscribed" and m.get("group") == "res" and
                  set(m) == {"type", "group", "epoch", "seq"} and
                  isinstance(m.get("seq"), int) and m["seq"] >= last, repr(m))
            first = envelopes(c, 1, "res")[0]["seq"]
            check("resume subscribe: first event is SINCE+1 (missed %d)" % missed2,
                  first == last + 1, "first %d last %d" % (first, last))
            got.append(first)
            while got[-1] < total:
                got += [e["seq"] for e in envelopes(c, 1, "res")]
            c.close()
        except (Closed, socket.timeout, OSError) as e:
            check("resume: stream read", False, repr(e))
        t.join(DEADLINE)
        check("resume: publisher 202 with seq 1..%d" % total, not errors,
              repr(errors[:3]))
        seqs_ok("resume: whole sequence 1..%d, no gap, no duplicate" % total,
                got, 1, total)

    # history_gap with --history 5
    with Server("--tick", "3600", "--history", "5") as srv:
        p = srv.port
        for i in range(12):
            publish(srv, "gap", "e", {"i": i + 1})
        c = WS(p, "/ws/gap?since=2")
        m = rj(c)
        check("history_gap ?since=2: error code history_gap oldest 8",
              m.get("type") == "error" and m.get("code") == "history_gap" and
              m.get("oldest") == 8 and isinstance(m.get("message"), str), repr(m))
        evs = envelopes(c, 5)
        check("history_gap ?since: then the kept events 8..12",
              [e["seq"] for e in evs] == [8, 9, 10, 11, 12] and
              [e["data"]["i"] for e in evs] == [8, 9, 10, 11, 12],
              repr([e.get("seq") for e in evs]))
        publish(srv, "gap", "e", {"i": 13})
        check("history_gap ?since: then live 13",
              envelopes(c, 1)[0].get("seq") == 13)
        d = WS(p, "/ws/other")
        d.send_json({"type": "subscribe", "group": "gap", "since": 0})
        m = rj(d)
        check("history_gap subscribe: subscribed seq 13",
              m.get("type") == "subscribed" and m.get("seq") == 13, repr(m))
        m = rj(d)
        check("history_gap subscribe since 0: error oldest 9",
              m.get("code") == "history_gap" and m.get("oldest") == 9, repr(m))
        check("history_gap subscribe: kept events 9..13",
              [e["seq"] for e in envelopes(d, 5)] == [9, 10, 11, 12, 13])
        # since inside the history: no error, exactly the rest.
        e = WS(p, "/ws/gap?since=11")
        check("since inside history: 12, 13, no error",
              [m.get("seq") for m in (rj(e), rj(e))] == [12, 13])
        f = WS(p, "/ws/gap?since=13")
        check("since = last: nothing replayed", pong_ok(f, "since=last"))
        st, b = hjson(srv, "GET", "/api/groups/gap/events?since=0")
        check("history_gap: HTTP refetch returns the kept 9..13",
              st == 200 and [x["seq"] for x in b.get("events", [])] ==
              [9, 10, 11, 12, 13], "%s %r" % (st, b))
        close_all([c, d, e, f])


# ---- history and group listing ----------------------------------------------

def history():
    with Server("--tick", "3600") as srv:
        p = srv.port
        sub = WS(p, "/ws/h")
        sub2 = WS(p, "/ws/h")
        for i in range(7):
            publish(srv, "h", "ev", {"i": i + 1})
        live = envelopes(sub, 7)
        q = WS(p, "/ws/q")
        q.send_json({"type": "get_history", "group": "h", "since": 2,
                     "limit": 3, "id": "g1"})
        m = rj(q)
        check("get_history: {type, group, events, more}",
              m.get("type") == "history" and m.get("group") == "h" and
              {"type", "group", "events", "more"} <= set(m), repr(m))
        check("get_history since 2 limit 3: seq 3..5 more true",
              [e.get("seq") for e in m.get("events", [])] == [3, 4, 5] and
              m.get("more") is True, repr(m))
        check("get_history: events are the envelopes subscribers got",
              m.get("events") == live[2:5])
        q.send_json({"type": "get_history", "group": "h", "since": 5,
                     "limit": 10})
        m = rj(q)
        check("get_history since 5 limit 10: seq 6, 7 more false",
              [e.get("seq") for e in m.get("events", [])] == [6, 7] and
              m.get("more") is False, repr(m))
        q.send_json({"type": "get_history", "group": "h", "since": 7})
        m = rj(q)
        check("get_history since last: empty, more false",
              m.get("events") == [] and m.get("more") is False, repr(m))
        st, b = hjson(srv, "GET", "/api/groups/h/events?since=2&limit=3")
        check("GET events since 2 limit 3: 3..5 more true",
              st == 200 and [e.get("seq") for e in b.get("events", [])] ==
              [3, 4, 5] and b.get("more") is True, "%s %r" % (st, b))
        check("GET events: same objects as the envelope",
              b.get("events") == live[2:5])
        st, b = hjson(srv, "GET", "/api/groups/h/events?since=4&limit=100")
        check("GET events since 4: 5..7 more false",
              st == 200 and [e.get("seq") for e in b.get("events", [])] ==
              [5, 6, 7] and b.get("more") is False, "%s %r" % (st, b))
        st, b = hjson(srv, "GET", "/api/groups/h/events")
        check("GET events without query: all 7",
              st == 200 and len(b.get("events", [])) == 7, "%s %r" % (st, b))
        st, b = hjson(srv, "GET", "/api/groups/h/events?since=x")
        check("GET events since=x: 400", st == 400 and is_error_body(b),
              "%s %r" % (st, b))
        st, g = groups_by_name(srv)
        check("GET /api/groups: 200", st == 200)
        check("GET /api/groups: h has 2 subscribers, seq 7",
              g.get("h", {}).get("subscribers") == 2 and
              g.get("h", {}).get("seq") == 7, repr(g.get("h")))
        check("GET /api/groups: q has 1 subscriber, seq 0",
              g.get("q", {}).get("subscribers") == 1 and
              g.get("q", {}).get("seq") == 0, repr(g.get("q")))
        sub2.close()
        check("GET /api/groups: count drops when a subscriber leaves",
              wait_for(lambda: groups_by_name(srv)[1].get("h", {}).get(
                  "subscribers") == 1), repr(groups_by_name(srv)[1].get("h")))
        close_all([sub, q])


# ---- slow consumer ----------------------------------------------------------

def slow_consumer():
    n, size = 2000, 10000
    with Server("--send-queue", "256K", "--tick", "3600") as srv:
        p = srv.port
        slow = WS(p, "/ws/firehose", rcvbuf=4096)  # never read till the end
        check("slow consumer: 101", slow.status == 101, repr(slow.status))
        reader = WS(p, "/ws/firehose")
        conn = Http(p)
        pad = "x" * size
        got, bad, closes = [], [], None
        slow_frames = None
        t0 = time.monotonic()
        for i in range(1, n + 1):
            st, b = publish(srv, "firehose", "bulk", {"i": i, "pad": pad},
                            conn=conn)
            if st != 202 or b.get("seq") != i:
                bad.append((i, st, b))
            if i % 8 == 0 or i == n:
                for e in envelopes(reader, i - len(got)):
                    got.append(e.get("seq"))
                    d = e.get("data")
                    if not isinstance(d, dict) or d.get("i") != e.get("seq") \
                            or len(d.get("pad", "")) != size:
                        bad.append(("data", e["seq"]))
            if slow_frames is None and i % 100 == 0 and \
                    metric(srv, "wsd_slow_consumer_closes_total") == 1:
                slow_frames = drain(slow)     # read it while the close is fresh
        conn.close()
        note("slow consumer", "20 MB published and read in %.1f s" %
             (time.monotonic() - t0))
        check("slow consumer: publishes answered 202 in order", not bad,
              repr(bad[:3]))
        seqs_ok("slow consumer: reader got every event in order", got, 1, n)
        closes = wait_for(lambda: metric(srv, "wsd_slow_consumer_closes_total")
                          == 1)
        check("slow consumer: wsd_slow_consumer_closes_total is 1", closes,
              repr(metric(srv, "wsd_slow_consumer_closes_total")))
        if slow_frames is None:
            slow_frames = drain(slow)
        seqs, end = slow_frames
        check("slow consumer: what it got is whole frames in order 1..k",
              seqs == list(range(1, len(seqs) + 1)), repr(seqs[-5:]))
        check("slow consumer: it got far less than everything",
              len(seqs) < n, "%d" % len(seqs))
        note("slow consumer", "slow got %d events, then %r" % (len(seqs), end))
        if end == "eof":
            note("slow consumer", "TCP closed without the 1013 close frame "
                 "(after %d events)" % len(seqs))
        check("slow consumer: last frame is close 1013 (or TCP closed)",
              end in (1013, "eof"), repr(end))
        check("slow consumer: reader still open", pong_ok(reader, "reader"))
        reader.close()
        slow.close()


def drain(c):
    """Read c to its end: (seqs of the events, close code or "eof")."""
    seqs = []
    c.sock.settimeout(DEADLINE)
    try:
        while True:
            fin, op, data = c.recv()
            if op == OP_CLOSE:
                return seqs, struct.unpack("!H", data[:2])[0] \
                    if len(data) >= 2 else None
            if op == OP_TEXT:
                seqs.append(parse(data).get("seq"))
    except (Closed, OSError, ValueError):
        return seqs, "eof"


# ---- errors -----------------------------------------------------------------

def ws_errors():
    with Server("--tick", "3600", "--max-conn-groups", "3",
                "--history", "5") as srv:
        c = WS(srv.port, "/ws/e1")

        def expect(name, send, code, ident=None, binary=False):
            if binary:
                c.send(OP_BIN, send)
            elif isinstance(send, (dict, list)):
                c.send_json(send)
            else:
                c.send_text(send)
            m = ru(c, lambda m: m.get("type") in ("error", "pong") or
                             m.get("code") is not None)
            ok = check("error %s: code %s" % (name, code),
                       m.get("type") == "error" and m.get("code") == code and
                       isinstance(m.get("message"), str) and
                       set(m) <= {"type", "code", "message", "id"}, repr(m))
            if ok and ident is not None:
                check("error %s: id echoed" % name, m.get("id") == ident, repr(m))
            pong_ok(c, "after " + name)

        expect("invalid JSON", "{not json", "bad_json")
        expect("truncated JSON", '{"type":"ping"', "bad_json")
        expect("array", "[1,2]", "bad_json")
        expect("string", '"ping"', "bad_json")
        expect("number", "42", "bad_json")
        expect("binary frame", b'{"type":"ping"}', "bad_json", binary=True)
        expect("too deep", '{"type":"ping","d":' + "[" * 200 + "]" * 200 + "}",
               "bad_json")
        expect("unknown type", {"type": "nope", "id": 9}, "unknown_type", 9)
        expect("no type", {"id": "x"}, "unknown_type", "x")
        expect("type not a string", {"type": 5}, "unknown_type")
        for g, why in (("a b", "space"), ("", "empty"), ("x" * 65, "65 bytes"),
                       ("bad!", "'!'"), (5, "number")):
            expect("subscribe bad group (%s)" % why,
                   {"type": "subscribe", "group": g, "id": "s"}, "bad_group", "s")
        expect("subscribe without group", {"type": "subscribe"}, "bad_group")
        expect("publish bad group", {"type": "publish", "group": "a/b",
                                     "event": "x", "data": 1, "id": 3},
               "bad_group", 3)
        expect("unsubscribe bad group", {"type": "unsubscribe", "group": "%"},
               "bad_group")
        expect("get_history bad group", {"type": "get_history", "group": "a b"},
               "bad_group")
        for g in ("e2", "e3"):
            c.send_json({"type": "subscribe", "group": g})
            m = rj(c)
            check("subscribe %s within --max-conn-groups 3" % g,
                  m.get("type") == "subscribed" and m.get("group") == g, repr(m))
        expect("a 4th group over --max-conn-groups 3",
               {"type": "subscribe", "group": "e4", "id": "big"}, "too_large",
               "big")
        d = status_of(c)
        check("too_large: still in exactly e1, e2, e3",
              sorted(d.get("groups", [])) == ["e1", "e2", "e3"], repr(d))
        for i in range(8):
            publish(srv, "hg", "e", {"i": i + 1})
        c.send_json({"type": "unsubscribe", "group": "e3"})
        ru(c, lambda m: m.get("type") == "unsubscribed")
        c.send_json({"type": "subscribe", "group": "hg", "since": 1})
        m = rj(c)
        check("history_gap: subscribed first", m.get("type") == "subscribed",
              repr(m))
        m = rj(c)
        check("error history_gap: code, oldest 4",
              m.get("type") == "error" and m.get("code") == "history_gap" and
              m.get("oldest") == 4, repr(m))
        check("history_gap: kept events follow",
              [e["seq"] for e in envelopes(c, 5)] == [4, 5, 6, 7, 8])
        pong_ok(c, "after history_gap")
        c.close()

    with Server("--tick", "3600", "--publish-rate", "5") as srv:
        c = WS(srv.port, "/ws/r1")
        for i in range(20):                 # far above 5 a second
            c.send_json({"type": "publish", "group": "r2", "event": "e",
                         "data": i, "id": i})
        answers = [rj(c) for _ in range(20)]
        ok = [a for a in answers if a.get("type") == "published"]
        limited = [a for a in answers if a.get("code") == "rate_limited"]
        check("rate_limited: over --publish-rate 5, some published, the rest "
              "error rate_limited with their id", 1 <= len(ok) <= 10 and
              len(ok) + len(limited) == 20 and
              all(a.get("type") == "error" and isinstance(a.get("id"), int)
                  for a in limited), repr(answers))
        st, g = groups_by_name(srv)
        check("rate_limited: refused publishes were not published",
              g.get("r2", {}).get("seq") == len(ok), repr(g.get("r2")))
        pong_ok(c, "after rate_limited")
        c.close()


def http_errors():
    with Server("--tick", "3600", "--max-body", "1024") as srv:
        def expect(name, st_b, status):
            st, b = st_b
            check("HTTP %s: %d {error, message}" % (name, status),
                  st == status and is_error_body(b), "%s %r" % (st, b))

        path = "/api/groups/g/events"
        expect("bad JSON body", hjson(srv, "POST", path, "{bad"), 400)
        expect("array body", hjson(srv, "POST", path, "[1]"), 400)
        expect("no type", hjson(srv, "POST", path, {"data": 1}), 400)
        expect("empty body", hjson(srv, "POST", path, ""), 400)
        expect("bad group name", hjson(srv, "POST", "/api/groups/a%20b/events",
                                       {"type": "x"}), 400)
        expect("unknown path", hjson(srv, "GET", "/nope"), 404)
        expect("unknown api path", hjson(srv, "GET", "/api/groups/g/nope"), 404)
        expect("unknown api root", hjson(srv, "GET", "/api/nothing"), 404)
        expect("PUT /health", hjson(srv, "PUT", "/health"), 405)
        expect("DELETE /api/groups", hjson(srv, "DELETE", "/api/groups"), 405)
        expect("PATCH events", hjson(srv, "PATCH", path, {"type": "x"}), 405)
        expect("POST /api/groups", hjson(srv, "POST", "/api/groups",
                                          {"type": "x"}), 405)
        st, h, body = raw_http(srv, (
            "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            "Content-Length: 2048\r\n\r\n" % path).encode())
        expect("body over --max-body 1024", (st, _loads(body)), 413)
        body = json.dumps({"type": "x", "data": "y" * 1100}).encode()
        st, h, rb = raw_http(srv, (
            "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n"
            % (path, len(body))).encode() + body)
        expect("body of %d bytes over --max-body" % len(body),
               (st, _loads(rb)), 413)
        st, h, body = raw_http(srv, (
            "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n"
            "d\r\n{\"type\":\"x\"}\r\n0\r\n\r\n" % path).encode())
        expect("Transfer-Encoding: chunked", (st, _loads(body)), 501)
        st, g = groups_by_name(srv)
        check("HTTP errors published nothing", "g" not in g, repr(g))
        st, b = hjson(srv, "POST", path, {"type": "ok", "data": "y" * 900})
        check("HTTP body under --max-body accepted", st == 202, "%s %r" % (st, b))

        k = Http(srv.port)
        st1, h1, b1 = k.request("GET", "/health")
        st2, h2, b2 = k.request("POST", path, {"type": "ka"})
        st3, h3, b3 = k.request("GET", "/api/groups/g/events?since=1")
        check("keep-alive: first answered 200, connection kept",
              st1 == 200 and "close" not in h1.get("connection", "").lower(),
              "%s %r" % (st1, h1))
        check("keep-alive: second answered 202 on the same connection",
              st2 == 202 and parse(b2).get("seq") == 2, "%s %r" % (st2, b2))
        check("keep-alive: third answered", st3 == 200 and [
            e.get("type") for e in parse(b3).get("events", [])] == ["ka"],
            repr(b3))
        k.send("GET", "/nope")              # pipelined: two at once
        k.send("GET", "/health")
        st4, _, _ = k.response()
        st5, _, b5 = k.response()
        check("keep-alive: an error keeps the connection, pipelined answers",
              st4 == 404 and st5 == 200 and parse(b5).get("status") == "ok",
              "%s %s" % (st4, st5))
        k.close()


def _loads(b):
    try:
        return json.loads(b)
    except ValueError:
        return b   # an error answer need not be JSON to be counted wrong


# ---- replies to client messages ---------------------------------------------

def replies():
    with Server("--tick", "3600") as srv:
        p = srv.port
        c = WS(p, "/ws/sessions/rs")
        other = WS(p, "/ws/events")
        for ident in ("abc", 42, 0, {"n": [1, {"m": None}]}, None):
            c.send_json({"type": "ping", "id": ident})
            m = rj(c)
            check("pong for id %r: exactly {type, id, timestamp}" % (ident,),
                  m.get("type") == "pong" and set(m) == {"type", "id", "timestamp"}
                  and m.get("id") == ident and ts_ok(m.get("timestamp")), repr(m))
        c.send_json({"type": "ping"})
        m = rj(c)
        check("pong without id: {type, timestamp}",
              m.get("type") == "pong" and set(m) == {"type", "timestamp"} and
              ts_ok(m.get("timestamp")), repr(m))
        c.send_json({"type": "heartbeat"})
        m = rj(c)
        check("heartbeat_ack: exactly {type, timestamp}",
              m.get("type") == "heartbeat_ack" and set(m) == {"type", "timestamp"}
              and ts_ok(m.get("timestamp")), repr(m))
        c.send_json({"type": "get_status"})
        m = rj(c)
        d = m.get("data", {})
        check("status: {type, data}", m.get("type") == "status" and
              set(m) == {"type", "data"}, repr(m))
        check("status data: connection_id, groups, session_id, connections, "
              "sessions", {"connection_id", "groups", "session_id", "connections",
                           "sessions"} <= set(d), repr(d))
        check("status data values", d.get("groups") == ["session:rs"] and
              d.get("session_id") == "rs" and d.get("connections") == 2 and
              d.get("sessions") == 1, repr(d))
        d2 = status_of(other)
        check("status: other connection, other id, no session",
              d2.get("connection_id") != d.get("connection_id") and
              d2.get("session_id") is None and d2.get("groups") == ["events"],
              repr(d2))
        publish(srv, "topic", "before", 1)
        publish(srv, "topic", "before", 2)
        c.send_json({"type": "subscribe", "group": "topic"})
        m = rj(c)
        check("subscribed: exactly {type, group, epoch, seq=LAST}",
              set(m) == {"type", "group", "epoch", "seq"} and
              re.fullmatch(r"[0-9a-f]{8}", m["epoch"]) is not None and
              dict(m, epoch=0) == {"type": "subscribed", "group": "topic",
                                   "epoch": 0, "seq": 2}, repr(m))
        c.send_json({"type": "subscribe", "group": "fresh"})
        m = rj(c)
        check("subscribed to a new group: seq 0",
              dict(m, epoch=0) == {"type": "subscribed", "group": "fresh",
                                   "epoch": 0, "seq": 0}, repr(m))
        publish(srv, "topic", "live", 3)
        m = rj(c)
        check("subscribe without since: live only, seq 3",
              m.get("type") == "live" and m.get("seq") == 3, repr(m))
        check("status lists the subscribed groups",
              sorted(status_of(c).get("groups", [])) ==
              ["fresh", "session:rs", "topic"])
        c.send_json({"type": "unsubscribe", "group": "topic"})
        m = rj(c)
        check("unsubscribed: exactly {type, group}",
              m == {"type": "unsubscribed", "group": "topic"}, repr(m))
        publish(srv, "topic", "after", 4)
        publish(srv, "session:rs", "marker", 5)
        m = rj(c)
        check("after unsubscribe: no more topic events",
              m.get("type") == "marker" and m.get("group") == "session:rs", repr(m))
        c.send_json({"type": "unsubscribe", "group": "never-joined"})
        m = rj(c)
        check("unsubscribe from a group not joined: unsubscribed",
              m == {"type": "unsubscribed", "group": "never-joined"}, repr(m))
        c.send_json({"type": "publish", "group": "events", "event": "e",
                     "data": {"k": 1}, "id": "pid"})
        m = rj(c)
        check("published: {type, id, seq}", m.get("type") == "published" and
              m.get("id") == "pid" and m.get("seq") == 1 and
              set(m) - {"delivered"} == {"type", "id", "seq"}, repr(m))
        m = rj(other)
        check("published event reached events", m.get("data") == {"k": 1},
              repr(m))
        close_all([c, other])


# ---- the seed's agent lifecycle ---------------------------------------------

def agent_lifecycle():
    with Server("--tick", "3600") as srv:
        p = srv.port
        sid = "S-42"
        b1 = WS(p, "/ws/sessions/" + sid)
        b2 = WS(p, "/api/v1/ws/sessions/" + sid)
        agent = WS(p, "/ws/agent/a1")
        st, b = hjson(srv, "GET", "/api/sessions/count")
        check("lifecycle: two browsers, one session",
              b == {"active_sessions": 1}, repr(b))
        steps = [("agent_started", {"agent_id": "a1", "task": "summarize"}),
                 ("agent_thinking", {"agent_id": "a1", "thought": "reading"}),
                 ("tool_executing", {"agent_id": "a1", "tool": "search",
                                     "args": {"q": "wsd"}}),
                 ("tool_completed", {"agent_id": "a1", "tool": "search",
                                     "result": ["r1", "r2"], "ms": 12.5}),
                 ("agent_completed", {"agent_id": "a1", "output": "done \u2713"})]
        for i, (ev, data) in enumerate(steps):
            agent.send_json({"type": "publish", "group": "session:" + sid,
                             "event": ev, "data": data, "id": "m%d" % i})
        acks = [rj(agent) for _ in steps]
        check("lifecycle: agent gets published m0..m4 seq 1..5",
              [(a.get("type"), a.get("id"), a.get("seq")) for a in acks] ==
              [("published", "m%d" % i, i + 1) for i in range(5)], repr(acks))
        for name, c in (("browser 1", b1), ("browser 2", b2)):
            evs = envelopes(c, 5)
            check("lifecycle: %s sees the five events in order" % name,
                  [(e.get("type"), e.get("seq"), e.get("group")) for e in evs] ==
                  [(ev, i + 1, "session:" + sid) for i, (ev, _) in
                   enumerate(steps)], repr(evs))
            check("lifecycle: %s sees their data" % name,
                  [e.get("data") for e in evs] == [d for _, d in steps])
        check("lifecycle: the agent itself got no event", pong_ok(agent, "agent"))
        close_all([b1, b2, agent])


def history_total():
    """--history-total bounds all groups' history together: groups idle
    the longest go first, then the publishing group's oldest events."""
    cap = 64 * 1024
    with Server("--history-total", "64K") as srv:
        live = srv.ws("/ws/live")
        pad = "x" * 2000
        for i in range(10):
            publish(srv, "idle", "e", {"i": i, "pad": pad})
        _, g = groups_by_name(srv)
        check("history-total: an idle group keeps its history at first",
              "idle" in g, repr(list(g)))
        for i in range(60):
            publish(srv, "live", "e", {"i": i, "pad": pad})
        got = [live.recv_json()["data"]["i"] for _ in range(60)]
        check("history-total: subscribers still get everything",
              got == list(range(60)))
        _, g = groups_by_name(srv)
        check("history-total: the idle group went first", "idle" not in g,
              repr(list(g)))
        kept = metric(srv, "wsd_history_bytes")
        check("history-total: at most the bound is kept",
              kept is not None and 0 < kept <= cap, kept)
        st, h = hjson(srv, "GET", "/api/groups/live/events?limit=1000")
        seqs = [e["seq"] for e in h["events"]] if st == 200 else []
        check("history-total: the newest events are kept, contiguous",
              len(seqs) >= 20 and seqs == list(range(61 - len(seqs), 61)),
              seqs)
        live.close()


def same_turn():
    """Messages that arrive in one packet are handled in one loop turn,
    where events are batched per group: each event still reaches exactly
    the members of the moment it was published, once, in seq order."""
    with Server() as srv:
        a = srv.ws("/ws/g")
        # publish then unsubscribe, one packet: the event was A's.
        a.send_raw(WS.frame(OP_TEXT, json.dumps({
            "type": "publish", "group": "g", "event": "e1"})) +
            WS.frame(OP_TEXT, json.dumps({"type": "unsubscribe",
                                          "group": "g"})))
        got = [a.recv_json(), a.recv_json()]
        check("same turn: publish then unsubscribe delivers the event first",
              [m["type"] for m in got] == ["e1", "unsubscribed"], repr(got))

        b = srv.ws("/ws/other")
        # publish then subscribe, one packet: the event is not B's.
        b.send_raw(WS.frame(OP_TEXT, json.dumps({
            "type": "publish", "group": "g", "event": "e2"})) +
            WS.frame(OP_TEXT, json.dumps({"type": "subscribe",
                                          "group": "g"})))
        m = b.recv_json()
        check("same turn: publish then subscribe: subscribed at seq 2",
              dict(m, epoch=0) == {"type": "subscribed", "group": "g",
                                   "epoch": 0, "seq": 2}, repr(m))
        # publish then subscribe with since, one packet: replay, no dup.
        c = srv.ws("/ws/third")
        c.send_raw(WS.frame(OP_TEXT, json.dumps({
            "type": "publish", "group": "g", "event": "e3"})) +
            WS.frame(OP_TEXT, json.dumps({"type": "subscribe",
                                          "group": "g", "since": 2})))
        got = [c.recv_json(), c.recv_json()]
        b_got = b.recv_json()
        publish(srv, "g", "marker")
        nxt = c.recv_json()
        check("same turn: subscribe since replays once",
              [(m["type"], m.get("seq")) for m in got + [nxt]] ==
              [("subscribed", 3), ("e3", 3), ("marker", 4)], repr(got + [nxt]))
        check("same turn: the member before gets it once", b_got["type"] ==
              "e3" and b.recv_json()["type"] == "marker", repr(b_got))

        # A burst in one packet reaches a subscriber whole and in order.
        d = srv.ws("/ws/burst")
        p = srv.ws("/ws/pub")
        p.send_raw(b"".join(WS.frame(OP_TEXT, json.dumps({
            "type": "publish", "group": "burst", "event": "b",
            "data": i})) for i in range(200)))
        got = [d.recv_json() for _ in range(200)]
        check("same turn: a burst of 200 arrives whole, in seq order",
              [(m["seq"], m["data"]) for m in got] ==
              [(i + 1, i) for i in range(200)], repr(got[:3]))
        close_all([a, b, c, d, p])


def main():
    for topic in (routes, isolation, publishing, broadcast, envelope, replies,
                  history, ws_errors, http_errors, agent_lifecycle, resume,
                  fanout, slow_consumer, same_turn, history_total):
        t0 = time.monotonic()
        invalid.update(n=0, first=None)
        try:
            topic()
        except Exception as e:  # a crash in one topic must not hide others
            import traceback
            traceback.print_exc()
            check("%s ran to the end" % topic.__name__, False, repr(e))
        check("%s: every message from the server is valid JSON" %
              topic.__name__, invalid["n"] == 0, "%d invalid, first %r" % (
                  invalid["n"], invalid["first"]))
        print("%s: %.1f s" % (topic.__name__, time.monotonic() - t0),
              file=sys.stderr, flush=True)
    done()


if __name__ == "__main__":
    main()
