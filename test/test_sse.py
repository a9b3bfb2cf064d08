"""test_sse - the browser half on the server: GET /sse, CORS, /wsd.js.

An event stream (text/event-stream) carries the same envelopes as a
WebSocket for several groups; every event's id names where the stream
stands in each of its groups, so Last-Event-ID (or ?since=) resumes all of
them exactly, with the epoch rules of since.  Tested: the head and the
records, resume after a cut, after a restart and past the history, line
breaks inside an event, the broadcast, refusals (groups, positions, token,
Origin), a stream that does not read, heartbeats, shutdown, the gauge in
/metrics.  CORS: which answers carry Access-Control-Allow-Origin, and
preflight.  /wsd.js with its ETag.  With tokens on, who may publish and
change sessions over HTTP.
"""
import hashlib
import hmac
import base64
import json
import os
import signal
import socket
import time

from wsdtest import (DEADLINE, ROOT, Server, check, done, http, http_json,
                     wait_for)

SECRET = "s" * 32
ORIGIN = "http://page.example:8080"


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def token(groups, publish=None, exp_in=600):
    now = int(time.time())
    claims = {"sub": "sse", "iat": now, "exp": now + exp_in, "groups": groups}
    if publish is not None:
        claims["publish"] = publish
    signing = b64u(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + \
        "." + b64u(json.dumps(claims).encode())
    sig = hmac.new(SECRET.encode(), signing.encode(), hashlib.sha256).digest()
    return signing + "." + b64u(sig)


def publish(srv, group, typ, data=None, headers=None, raw=None):
    if raw is not None:
        return http_json(srv.port, "POST", "/api/groups/%s/events" % group,
                         raw, dict({"Content-Type": "application/json"},
                                   **(headers or {})))
    return http_json(srv.port, "POST", "/api/groups/%s/events" % group,
                     {"type": typ, "data": data}, headers)


class Stream:
    """A raw SSE reader: the head, then records parsed by the WHATWG
    rules (lines end at CR LF, CR or LF; data lines joined with LF)."""

    def __init__(self, port, query, headers=None):
        self.s = socket.create_connection(("127.0.0.1", port),
                                          timeout=DEADLINE)
        h = {"Host": "127.0.0.1", "Accept": "text/event-stream"}
        h.update(headers or {})
        req = "GET /sse?%s HTTP/1.1\r\n" % query
        req += "".join("%s: %s\r\n" % kv for kv in h.items()) + "\r\n"
        self.s.sendall(req.encode())
        self.buf = b""
        self.eof = False
        while b"\r\n\r\n" not in self.buf and self._fill():
            pass
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1]) if lines[0] else 0
        self.headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            self.headers[k.strip().lower()] = v.strip()
        self.raw = b""          # every body byte read, for the wire checks
        self.last_id = None
        self.retry = None
        self.comments = 0
        if self.status != 200:
            n = int(self.headers.get("content-length", "0"))
            while len(self.buf) < n and self._fill():
                pass
            self.body = json.loads(self.buf[:n] or b"null")

    def _fill(self, timeout=DEADLINE):
        self.s.settimeout(timeout)
        try:
            d = self.s.recv(65536)
        except socket.timeout:
            return False
        except OSError:
            d = b""
        if not d:
            self.eof = True
            return False
        self.buf += d
        return True

    def _line(self, timeout):
        end = time.monotonic() + timeout
        while True:
            for i, ch in enumerate(self.buf):
                if ch in (10, 13):
                    n = 2 if self.buf[i:i + 2] == b"\r\n" else 1
                    if ch == 13 and i + 1 == len(self.buf):
                        break   # CR at the end: LF may follow
                    line = self.buf[:i]
                    self.raw += self.buf[:i + n]
                    self.buf = self.buf[i + n:]
                    return line.decode()
            left = end - time.monotonic()
            if left <= 0 or not self._fill(left):
                return None

    def record(self, timeout=DEADLINE):
        """The next record as (id or None, data or None); None at the end
        or the deadline.  Comments are counted, retry kept."""
        rid, data = None, []
        while True:
            line = self._line(timeout)
            if line is None:
                return None
            if line == "":
                if rid is None and not data:
                    continue
                if rid is not None:
                    self.last_id = rid
                return rid, "\n".join(data) if data else None
            if line.startswith(":"):
                self.comments += 1
                continue
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "data":
                data.append(value)
            elif field == "id":
                rid = value
            elif field == "retry":
                self.retry = int(value)

    def message(self, timeout=DEADLINE):
        """The next record with data, as (id, parsed JSON); None at the end."""
        while True:
            r = self.record(timeout)
            if r is None:
                return None
            if r[1] is not None:
                return r[0], json.loads(r[1])

    def events(self, n, timeout=DEADLINE):
        out = []
        for _ in range(n):
            m = self.message(timeout)
            if m is None:
                break
            out.append(m)
        return out

    def ended(self, timeout=DEADLINE):
        """1 once the server has closed the stream."""
        end = time.monotonic() + timeout
        while not self.eof and time.monotonic() < end:
            self.buf = b""
            self._fill(end - time.monotonic())
        return self.eof

    def close(self):
        self.s.close()


def positions(rid):
    return dict(item.split("=", 1) for item in rid.split(","))


def metric(srv, name):
    st, _, body = http(srv.port, "GET", "/metrics")
    for line in body.decode().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


# ---- the stream ------------------------------------------------------------

def basics():
    with Server("--no-session-events") as srv:
        s = Stream(srv.port, "groups=a,b,a")
        check("200 text/event-stream", s.status == 200 and
              s.headers.get("content-type") == "text/event-stream",
              repr(s.headers))
        check("no Content-Length, not cached, not buffered by a proxy",
              "content-length" not in s.headers and
              s.headers.get("cache-control") == "no-store" and
              s.headers.get("x-accel-buffering") == "no", repr(s.headers))
        subs = s.events(2)
        check("a subscribed record per group, in order, once (a,b,a)",
              [m["type"] for _, m in subs] == ["subscribed"] * 2 and
              [m["group"] for _, m in subs] == ["a", "b"], repr(subs))
        check("subscribed records carry no id",
              all(rid is None for rid, _ in subs), repr(subs))
        check("a retry hint first", s.retry == 2000, repr(s.raw[:80]))
        ea, eb = subs[0][1]["epoch"], subs[1][1]["epoch"]
        r = s.record()
        check("then a mark: an id with every position, no data",
              r is not None and r[1] is None and
              positions(r[0]) == {"a": ea + ":0", "b": eb + ":0"}, repr(r))
        check("/metrics wsd_sse_streams counts it",
              wait_for(lambda: metric(srv, "wsd_sse_streams") == 1))

        ws = srv.ws("/ws/a")
        publish(srv, "a", "one", {"n": 1})
        publish(srv, "b", "two", {"n": 2})
        publish(srv, "a", "three", {"n": 3})
        evs = s.events(3)
        check("events of both groups, in publish order",
              [m.get("type") for _, m in evs] == ["one", "two", "three"],
              repr(evs))
        check("each id names every group's position after the event",
              [positions(rid) for rid, _ in evs] == [
                  {"a": ea + ":1", "b": eb + ":0"},
                  {"a": ea + ":1", "b": eb + ":1"},
                  {"a": ea + ":2", "b": eb + ":1"}], repr(evs))
        w = ws.recv_json()
        check("the same envelope as over WebSocket", evs[0][1] == w,
              "%r %r" % (evs[0][1], w))
        ws.close()

        # Raw JSON with line breaks in its white space: several data lines,
        # read back as the same JSON.
        raw = b'{"type":"multi",\r\n"data":{\n  "k": [1,\r 2]\n}\n}'
        st, _ = publish(srv, "a", None, raw=raw)
        rid, m = s.message()
        check("an event with CR, LF and CR LF inside travels whole",
              st == 202 and m.get("type") == "multi" and
              m.get("data") == {"k": [1, 2]}, repr(m))
        check("as several data lines", s.raw.count(b"data: ") >= 5,
              repr(s.raw[-200:]))

        # The broadcast reaches the stream; it has no position, no id.
        publish(srv, "*", "all", 1)
        r = s.record()
        check("a * broadcast arrives, without an id",
              r is not None and r[0] is None and
              json.loads(r[1]).get("type") == "all", repr(r))
        s.close()
        check("a closed stream leaves the gauge",
              wait_for(lambda: metric(srv, "wsd_sse_streams") == 0))


def resume():
    with Server("--no-session-events", "--history", "5") as srv:
        s = Stream(srv.port, "groups=a,b")
        s.events(2)
        s.record()              # the mark
        for i in range(2):
            publish(srv, "a", "a%d" % i, i)
            publish(srv, "b", "b%d" % i, i)
        got = s.events(4)
        last = got[-1][0]
        s.close()
        for i in range(2, 4):
            publish(srv, "a", "a%d" % i, i)
            publish(srv, "b", "b%d" % i, i)
        s = Stream(srv.port, "groups=a,b", {"Last-Event-ID": last})
        evs = s.events(6)
        kinds = [m["type"] for _, m in evs]
        check("Last-Event-ID: subscribed, then exactly the missed events of "
              "each group, no duplicate",
              kinds[:2] == ["subscribed"] * 2 and
              sorted(kinds[2:]) == ["a2", "a3", "b2", "b3"] and
              [k for k in kinds if k[0] == "a"] == ["a2", "a3"], repr(kinds))
        check("and the ids go on from there",
              positions(evs[-1][0])["a"].endswith(":4") and
              positions(evs[-1][0])["b"].endswith(":4"), repr(evs[-1]))
        s.close()

        # The same position as ?since= (what a client that builds its own
        # URL sends); Last-Event-ID wins over it.
        s = Stream(srv.port, "groups=a,b&since=" + last)
        kinds = [m["type"] for _, m in s.events(6)]
        check("?since= resumes the same way",
              sorted(kinds[2:]) == ["a2", "a3", "b2", "b3"], repr(kinds))
        s.close()
        s = Stream(srv.port, "groups=a&since=a=" + last.split(",")[0]
                   .split("=")[1].split(":")[0] + ":0",
                   {"Last-Event-ID": "a=" + positions(last)["a"]})
        kinds = [m["type"] for _, m in s.events(3)]
        check("Last-Event-ID wins over ?since=",
              kinds == ["subscribed", "a2", "a3"], repr(kinds))
        s.close()

        # Past the history (5 kept): history_gap with oldest, then what
        # is kept.
        for i in range(4, 10):
            publish(srv, "a", "a%d" % i, i)
        s = Stream(srv.port, "groups=a", {"Last-Event-ID": "a=" +
                                          positions(last)["a"]})
        evs = s.events(7)
        gap = evs[1][1] if len(evs) > 1 else {}
        check("an outrun position: history_gap with the oldest kept",
              gap.get("type") == "error" and
              gap.get("code") == "history_gap" and gap.get("oldest") == 6,
              repr(evs[:2]))
        check("then the kept events 6-10",
              [m.get("seq") for _, m in evs[2:]] == [6, 7, 8, 9, 10],
              repr(evs[2:]))
        s.close()
        # Resuming two groups: while the first replays, the ids name the
        # second where the reader stands, not where the group is (a cut
        # then would skip its missed events).
        for i in range(3):
            publish(srv, "b", "b%d" % (i + 10), i)
        ea = positions(last)["a"].split(":")[0]
        eb = positions(last)["b"].split(":")[0]
        s = Stream(srv.port, "groups=a,b&since=a=%s:7,b=%s:2" % (ea, eb))
        evs = [m for m in s.events(10) if "timestamp" in m[1]]
        first_b = next((i for i, (_, m) in enumerate(evs)
                        if m["group"] == "b"), len(evs))
        check("ids during a's replay name b at the reader's position",
              first_b > 0 and all(positions(rid)["b"] == eb + ":2"
                                  for rid, _ in evs[:first_b]),
              [rid for rid, _ in evs[:4]])
        check("then b's replay moves it",
              first_b < len(evs) and
              positions(evs[first_b][0])["b"] == eb + ":3", repr(evs[-1:]))
        s.close()

        # A cut before any event resumes from where the stream started:
        # the mark moved Last-Event-ID.  (A WebSocket member keeps c: a
        # group left with nothing is gone, and its next stream is new.)
        keep = srv.ws("/ws/c")
        s = Stream(srv.port, "groups=c")
        s.events(1)
        mark = s.record()
        s.close()
        publish(srv, "c", "while_away", 1)
        s = Stream(srv.port, "groups=c", {"Last-Event-ID": mark[0]})
        kinds = [m["type"] for _, m in s.events(2)]
        check("resume from the mark gets what came after it",
              kinds == ["subscribed", "while_away"], repr(kinds))
        s.close()
        keep.close()


def restart():
    srv = Server("--no-session-events")
    s = Stream(srv.port, "groups=a")
    s.events(1)
    publish(srv, "a", "old", 1)
    rid, _ = s.message()
    srv.stop(signal.SIGTERM)
    check("SIGTERM ends the stream", s.ended())
    s.close()
    srv = Server("--no-session-events")
    publish(srv, "a", "new", 1)
    s = Stream(srv.port, "groups=a", {"Last-Event-ID": rid})
    evs = s.events(3)
    kinds = [(m["type"], m.get("code")) for _, m in evs]
    check("after a restart: subscribed, history_gap (another epoch), the "
          "new stream from its start",
          kinds == [("subscribed", None), ("error", "history_gap"),
                    ("new", None)] and
          evs[1][1]["epoch"] != rid.split("=")[1].split(":")[0], repr(evs))
    s.close()
    srv.stop()


def refusals():
    with Server("--no-session-events", "--max-conn-groups", "3") as srv:
        cases = [
            ("", 400, "no groups"),
            ("groups=", 400, "empty groups"),
            ("groups=a,,b", 400, "an empty name"),
            ("groups=a%20b", 400, "a bad name"),
            ("groups=*", 400, "the broadcast is not a group"),
            ("groups=a,b,c,d", 400, "more groups than --max-conn-groups"),
            ("groups=a,b!", 400, "a bad name after a good one"),
            ("groups=a&since=a", 400, "a position without ="),
            ("groups=a&since=a=x", 400, "a malformed position"),
            ("groups=a&since=a=1,", 400, "a trailing comma"),
        ]
        for q, want, what in cases:
            s = Stream(srv.port, q)
            check("%s -> %d" % (what, want), s.status == want and
                  s.body.get("error") == "bad_request", "%s %r" % (
                      s.status, getattr(s, "body", None)))
            s.close()
        s = Stream(srv.port, "groups=a,b!")
        check("its message names the bad name, not the count",
              "1-64 bytes" in s.body.get("message", ""), repr(s.body))
        s.close()
        s = Stream(srv.port, "groups=a", {"Last-Event-ID": "a=zz:1"})
        check("a malformed Last-Event-ID -> 400", s.status == 400)
        s.close()
        s = Stream(srv.port, "groups=a,b,c&since=zz=1")
        check("a position of a group not asked for is passed over",
              s.status == 200)
        s.close()
        s = Stream(srv.port, "groups=a", {"Origin": ORIGIN})
        check("a foreign Origin without --allow-origin -> 403",
              s.status == 403)
        s.close()
    with Server("--no-session-events", "--max-conn-groups", "64") as srv:
        names = ["g%02d" % i for i in range(17)]
        s = Stream(srv.port, "groups=" + ",".join(names[:16]))
        check("16 groups in one stream", s.status == 200)
        s.close()
        s = Stream(srv.port, "groups=" + ",".join(names))
        check("17 -> 400, whatever --max-conn-groups allows", s.status ==
              400 and "too many" in s.body.get("message", ""), repr(s.body))
        s.close()
        long = ["%s%s" % (chr(97 + i), "x" * 63) for i in range(16)]
        s = Stream(srv.port, "groups=" + ",".join(long))
        s.events(16)
        mark = s.record()
        s.close()
        s = Stream(srv.port, "groups=" + ",".join(long),
                   {"Last-Event-ID": mark[0]})
        check("16 names of 64 bytes: the id fits a resume's head (8K)",
              s.status == 200, repr(s.status))
        s.close()
    with Server("--no-session-events", "--max-groups", "2") as srv:
        s1 = Stream(srv.port, "groups=a,b")
        s = Stream(srv.port, "groups=c")
        check("no room for a group (--max-groups, none idle) -> 503",
              s.status == 503, repr(s.status))
        s.close()
        s1.close()
    with Server("--no-session-events", "--token-secret", SECRET) as srv:
        s = Stream(srv.port, "groups=a")
        check("tokens on, no token -> 401", s.status == 401)
        s.close()
        s = Stream(srv.port, "groups=a,b&token=" + token(["a"]))
        check("a token that does not grant every group -> 403",
              s.status == 403)
        s.close()
        s = Stream(srv.port, "groups=a,b&token=" + token(["*"]),
                   {"Origin": ORIGIN})
        check("?token= granting both -> 200 (a foreign page cannot send "
              "the token: Origin passes)", s.status == 200)
        publish(srv, "a", "x", 1, {"Authorization": "Bearer " +
                                   token(["*"], publish=True)})
        kinds = [m["type"] for _, m in s.events(3)]
        check("and it receives", kinds == ["subscribed", "subscribed", "x"],
              repr(kinds))
        s.close()
        s = Stream(srv.port, "groups=a",
                   {"Authorization": "Bearer " + token(["a"])})
        check("a Bearer token works too", s.status == 200)
        s.close()


def slow_reader():
    with Server("--no-session-events", "--send-queue", "65536") as srv:
        s = Stream(srv.port, "groups=big")
        s.events(1)
        s.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        other = Stream(srv.port, "groups=big")
        other.events(1)
        before = metric(srv, 'wsd_limit_rejections_total{limit="send_queue"}')
        # Publish until the unread stream is over its queue and ended.
        blob = "x" * 8000
        n = 0
        while n < 2000 and metric(srv, "wsd_sse_streams") == 2:
            publish(srv, "big", "blob", blob)
            n += 1
            m = other.message()     # the reading stream keeps up
            if m is None:
                break
        check("a stream that does not read is ended past --send-queue",
              metric(srv, "wsd_sse_streams") == 1, "after %d events" % n)
        after = metric(srv, 'wsd_limit_rejections_total{limit="send_queue"}')
        check("counted as a send_queue refusal", before is not None and
              after is not None and after > before, "%r %r" % (before, after))
        check("the other stream is untouched", not other.eof)
        publish(srv, "big", "after", 1)
        m = other.message()
        while m is not None and m[1].get("type") != "after":
            m = other.message()
        check("and still receives", m is not None)
        s.close()
        other.close()


def heartbeat():
    with Server("--no-session-events", "--ping-interval", "0.5") as srv:
        s = Stream(srv.port, "groups=a")
        s.events(1)
        s.record(timeout=0.2)
        ok = wait_for(lambda: s.record(timeout=0.3) is None and
                      s.comments >= 2, timeout=DEADLINE, step=0)
        check("an idle stream gets a comment every --ping-interval", ok,
              repr(s.raw[-60:]))
        s.close()


# ---- CORS ------------------------------------------------------------------

def cors():
    with Server("--no-session-events", "--allow-origin", ORIGIN) as srv:
        st, h, _ = http(srv.port, "GET", "/health", headers={"Origin": ORIGIN})
        check("a listed origin: its exact Access-Control-Allow-Origin",
              st == 200 and h.get("access-control-allow-origin") == ORIGIN,
              repr(h))
        check("with Vary: Origin", h.get("vary") == "Origin", repr(h))
        check("never credentials",
              "access-control-allow-credentials" not in h, repr(h))
        st, h, _ = http(srv.port, "GET", "/health",
                        headers={"Origin": "http://other.example"})
        check("an unlisted origin: no CORS header, Vary still",
              st == 200 and "access-control-allow-origin" not in h and
              h.get("vary") == "Origin", repr(h))
        st, h, _ = http(srv.port, "GET", "/api/groups/x/events",
                        headers={"Origin": ORIGIN})
        check("history for a listed origin is readable",
              st == 200 and h.get("access-control-allow-origin") == ORIGIN)
        st, h, _ = http(srv.port, "OPTIONS", "/api/groups/x/events",
                        headers={"Origin": ORIGIN,
                                 "Access-Control-Request-Method": "POST",
                                 "Access-Control-Request-Headers":
                                 "authorization,content-type"})
        methods = [m.strip() for m in
                   h.get("access-control-allow-methods", "").split(",")]
        allowed = [m.strip().lower() for m in
                   h.get("access-control-allow-headers", "").split(",")]
        check("preflight: 204 for the listed origin", st == 204 and
              h.get("access-control-allow-origin") == ORIGIN, repr(h))
        check("preflight: the path's methods", "POST" in methods and
              "GET" in methods and "DELETE" not in methods, repr(methods))
        check("preflight: Authorization and Content-Type may be sent",
              "authorization" in allowed and "content-type" in allowed,
              repr(allowed))
        check("preflight: a max-age, no Content-Length on the 204",
              int(h.get("access-control-max-age", "0")) > 0 and
              "content-length" not in h, repr(h))
        st, h, _ = http(srv.port, "OPTIONS", "/sse",
                        headers={"Origin": ORIGIN,
                                 "Access-Control-Request-Method": "GET"})
        check("preflight of /sse allows Last-Event-ID", st == 204 and
              "last-event-id" in h.get("access-control-allow-headers", "")
              .lower(), repr(h))
        st, h, _ = http(srv.port, "OPTIONS", "/api/groups/x/events",
                        headers={"Origin": "http://other.example",
                                 "Access-Control-Request-Method": "POST"})
        check("preflight for an unlisted origin: no CORS headers",
              st == 204 and "access-control-allow-origin" not in h and
              "access-control-allow-methods" not in h, repr(h))
        st, h, _ = http(srv.port, "OPTIONS", "/nowhere",
                        headers={"Origin": ORIGIN})
        check("preflight of an unknown path -> 404", st == 404)
        st, h, _ = http(srv.port, "PATCH", "/api/sessions",
                        headers={"Origin": ORIGIN})
        check("405 names OPTIONS among the methods",
              st == 405 and "OPTIONS" in h.get("allow", ""), repr(h))
        s = Stream(srv.port, "groups=a", {"Origin": ORIGIN})
        check("an event stream for a listed origin carries the header",
              s.status == 200 and
              s.headers.get("access-control-allow-origin") == ORIGIN)
        s.close()
        st, h, _ = http(srv.port, "POST", "/api/groups/x/events",
                        {"type": "t", "data": 1}, {"Origin": ORIGIN})
        check("a cross-origin publish from a listed origin -> 202, readable",
              st == 202 and h.get("access-control-allow-origin") == ORIGIN,
              repr((st, h)))
    with Server("--no-session-events", "--allow-origin", ORIGIN,
                "--api-key", "k" * 32) as srv:
        st, h, _ = http(srv.port, "OPTIONS", "/api/groups/x/events",
                        headers={"Origin": ORIGIN,
                                 "Access-Control-Request-Method": "POST"})
        check("with --api-key a preflight (no credentials) is still 204",
              st == 204 and h.get("access-control-allow-origin") == ORIGIN)
        st, h, _ = http(srv.port, "POST", "/api/groups/x/events",
                        {"type": "t"}, {"Origin": ORIGIN})
        check("a refused cross-origin call is readable (401 with the header)",
              st == 401 and h.get("access-control-allow-origin") == ORIGIN,
              repr((st, h)))
        st, h, _ = http(srv.port, "POST", "/api/groups/x/events",
                        {"type": "t"}, {"Origin": ORIGIN,
                                        "Authorization": "Bearer " + "k" * 32})
        check("with the key: 202", st == 202)
    with Server("--no-session-events") as srv:
        st, h, _ = http(srv.port, "GET", "/health", headers={"Origin": ORIGIN})
        check("without --allow-origin: no CORS headers at all",
              "access-control-allow-origin" not in h and "vary" not in h,
              repr(h))
        st, h, _ = http(srv.port, "DELETE", "/api/sessions/nope")
        st2, h2, _ = http(srv.port, "POST", "/api/sessions", {"id": "s1"})
        st, h, _ = http(srv.port, "DELETE", "/api/sessions/s1")
        check("a 204 has no Content-Length (RFC 9110 8.6)",
              st2 == 201 and st == 204 and "content-length" not in h,
              repr((st2, st, h)))


# ---- /wsd.js ---------------------------------------------------------------

def client_js():
    with open(os.path.join(ROOT, "wsd.js"), "rb") as f:
        src = f.read()
    with Server("--no-session-events") as srv:
        st, h, body = http(srv.port, "GET", "/wsd.js")
        check("/wsd.js: 200, JavaScript, the file as it is in the tree",
              st == 200 and h.get("content-type", "").startswith(
                  "text/javascript") and body == src,
              "%s %r %d/%d" % (st, h.get("content-type"), len(body),
                               len(src)))
        etag = h.get("etag", "")
        check("with an ETag and no-cache (revalidate)",
              etag.startswith('"') and len(etag) > 4 and
              h.get("cache-control") == "no-cache", repr(h))
        st, h, body = http(srv.port, "GET", "/wsd.js",
                           headers={"If-None-Match": etag})
        check("If-None-Match with it: 304, no body", st == 304 and
              body == b"" and h.get("etag") == etag, repr((st, h)))
        st, h, body = http(srv.port, "GET", "/wsd.js",
                           headers={"If-None-Match": '"other", ' + etag})
        check("in a list: 304", st == 304)
        st, h, body = http(srv.port, "GET", "/wsd.js",
                           headers={"If-None-Match": '"other"'})
        check("another tag: 200 and the body", st == 200 and body == src)
        st, h, _ = http(srv.port, "GET", "/")
        csp = h.get("content-security-policy", "")
        check("the dashboard may load /wsd.js: script-src 'self'",
              "script-src 'self'" in csp, csp)


# ---- who may change things over HTTP with tokens on --------------------------

def http_rights():
    auth = lambda t: {"Authorization": "Bearer " + t}
    with Server("--no-session-events", "--token-secret", SECRET) as srv:
        st, b = publish(srv, "chat:b", "e", 1)
        check("tokens on: HTTP publish without credentials -> 401",
              st == 401 and b.get("error") == "unauthorized", repr(b))
        st, b = publish(srv, "chat:b", "e", 1, auth(token(["chat:*"])))
        check("a token without publish -> 403", st == 403, repr(b))
        st, b = publish(srv, "chat:b", "e", 1,
                        auth(token(["x"], publish=["chat:*"])))
        check("a token that may publish chat:* -> 202 on chat:b", st == 202,
              repr(b))
        st, b = publish(srv, "other", "e", 1,
                        auth(token(["x"], publish=["chat:*"])))
        check("... and 403 on another group", st == 403, repr(b))
        st, b = publish(srv, "chat:b", "e", 1, auth("not.a.token"))
        check("a bad token -> 401", st == 401, repr(b))
        st, b = publish(srv, "*", "e", 1,
                        auth(token(["x"], publish=["chat:*"])))
        check("a broadcast needs a token that may publish everywhere -> 403",
              st == 403, repr(b))
        st, b = publish(srv, "*", "e", 1, auth(token(["*"], publish=True)))
        check("... which may -> 202", st == 202, repr(b))
        st, b = http_json(srv.port, "POST", "/api/sessions", {"id": "s1"})
        check("tokens on, no key: a session call without credentials -> 401",
              st == 401, repr(b))
        st, b = http_json(srv.port, "POST", "/api/sessions", {"id": "s1"},
                          auth(token(["chat:*"], publish=True)))
        check("... with a token that may not publish everywhere -> 403",
              st == 403, repr(b))
        st, b = http_json(srv.port, "POST", "/api/sessions", {"id": "s1"},
                          auth(token(["*"], publish=True)))
        check("... with one that may -> 201", st == 201, repr(b))
    key = "k" * 32
    with Server("--no-session-events", "--token-secret", SECRET,
                "--api-key", key) as srv:
        st, b = publish(srv, "chat:b", "e", 1, auth(key))
        check("with both: the API key publishes", st == 202, repr(b))
        st, b = publish(srv, "chat:b", "e", 1,
                        auth(token(["x"], publish=["chat:*"])))
        check("with both: so does a token that may", st == 202, repr(b))
        st, b = http_json(srv.port, "POST", "/api/sessions", {"id": "s2"},
                          auth(token(["*"], publish=True)))
        check("with both: a session call takes the key, not a token",
              st == 401, repr(b))
        st, b = http_json(srv.port, "POST", "/api/sessions", {"id": "s2"},
                          auth(key))
        check("... the key -> 201", st == 201, repr(b))
    with Server("--no-session-events") as srv:
        st, b = publish(srv, "chat:b", "e", 1)
        check("no secrets: HTTP publish is open", st == 202, repr(b))
        st = head_only(srv, "GET", "/health")
        check("a GET announcing a body is refused on its head (413), the "
              "body never awaited", st == 413, st)
        st = head_only(srv, "OPTIONS", "/api/groups/x/events")
        check("so is an OPTIONS", st == 413, st)
    with Server("--no-session-events", "--token-secret", SECRET) as srv:
        st = head_only(srv, "POST", "/api/groups/x/events")
        check("tokens on, no key: a POST without credentials is refused on "
              "its head (401), its body never awaited", st == 401, st)
        st = head_only(srv, "POST", "/api/sessions")
        check("... a session call too", st == 401, st)


def head_only(srv, method, path):
    """Send a head announcing a 100,000-byte body and none of it: the
    status if wsd answers without waiting for the body, else None."""
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=DEADLINE)
    s.sendall(("%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: "
               "100000\r\nContent-Type: application/json\r\n\r\n" %
               (method, path)).encode())
    s.settimeout(5)
    try:
        data = s.recv(4096)
    except socket.timeout:
        data = b""
    s.close()
    return int(data.split()[1]) if data.startswith(b"HTTP/1.1") else None


for t in (basics, resume, restart, refusals, slow_reader, heartbeat, cors,
          client_js, http_rights):
    t0 = time.monotonic()
    try:
        t()
    except Exception as e:          # a crash is a failure, not a skip
        import traceback
        traceback.print_exc()
        check("%s ran to its end" % t.__name__, False, repr(e))
    print("%s: %.1f s" % (t.__name__, time.monotonic() - t0), flush=True)
done()
