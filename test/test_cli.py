"""test_cli - wsd pub, wsd sub and wsd token against the real daemon.

The client is the same binary as the server ($WSD); every test starts its
own wsd on a free loopback port and drives the client as a script would:
arguments, stdin, stdout lines, stderr, exit status, signals (sent by PID
to processes started here).  Checked: publishing one event and a stream of
lines (seqs 1..N in the history), the API key, a bad stdin line, a
connection the server closed while idle, printing two groups, resuming
from a state file across a stop and across a wsd restart (history_gap with
the epoch change), an exact gap range, tokens minted here accepted and
refused by the server's verifier, TLS with certificate verification, and
usage errors.
"""
import base64
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time

from wsdtest import (Server, WS, WSD, DEADLINE, OP_TEXT, OP_CONT, OP_PING,
                     OP_PONG, OP_CLOSE, check, done, http_json, make_cert,
                     wait_for)

SECRET = "s3cret-s3cret-s3cret-s3cret-s3cret!"     # 35 bytes
TMP = tempfile.mkdtemp(prefix="wsd-cli-")           # removed at the end


def tmpdir():
    return tempfile.mkdtemp(dir=TMP)


def cli(*args, stdin=None, env=None):
    """Run wsd CMD ... to completion: (status, stdout, stderr)."""
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.run([WSD] + list(args), input=stdin, capture_output=True,
                       timeout=DEADLINE, env=e)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def url(srv, scheme="http"):
    return "%s://127.0.0.1:%d" % (scheme, srv.port)


def history(srv, group, headers=None):
    st, body = http_json(srv.port, "GET", "/api/groups/%s/events?limit=1000"
                         % group, headers=headers)
    return body.get("events", []) if st == 200 else None


class Sub:
    """wsd sub ... in the background; its stdout lines and stderr text."""

    def __init__(self, *args, env=None):
        e = dict(os.environ)
        e.update(env or {})
        self.proc = subprocess.Popen([WSD, "sub"] + list(args),
                                     stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=e)
        self.lines, self.err = [], []
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._read, args=(self.proc.stdout,
                             self.lines), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr,
                             self.err), daemon=True)]
        for t in self.threads:
            t.start()

    def _read(self, f, out):
        for line in iter(f.readline, b""):
            with self.lock:
                out.append(line.decode("utf-8", "replace"))

    def events(self):
        with self.lock:
            return [json.loads(x) for x in self.lines]

    def wait_events(self, n):
        """At least n lines within the deadline; all lines so far."""
        wait_for(lambda: len(self.lines) >= n)
        return self.events()

    def stderr(self):
        with self.lock:
            return "".join(self.err)

    def wait_stderr(self, pattern):
        return wait_for(lambda: re.search(pattern, self.stderr()))

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        for t in self.threads:
            t.join(timeout=5)
        return rc


def publish(srv, group, values, headers=None):
    for v in values:
        st, _ = http_json(srv.port, "POST", "/api/groups/%s/events" % group,
                          {"type": "e", "data": v}, headers)
        if st != 202:
            return False
    return True


# ---- wsd pub ----------------------------------------------------------

def test_pub():
    with Server("--no-session-events", "--history", "5000") as srv:
        t0 = time.monotonic()
        rc, out, err = cli("pub", "--url", url(srv), "g1", "hello",
                           '{"a":[1,2]}')
        check("pub one event: exit 0, silent", rc == 0 and out == "" and
              err == "", "rc=%d out=%r err=%r" % (rc, out, err))
        ev = history(srv, "g1")
        check("pub one event: in the history as sent",
              [(e["type"], e["seq"], e["data"]) for e in ev] ==
              [("hello", 1, {"a": [1, 2]})], repr(ev))

        # N lines -> N events, seqs 1..N, in order; -v prints each seq.
        n = 2000
        lines = "".join('{"i":%d}\n' % i for i in range(n))
        t1 = time.monotonic()
        rc, out, err = cli("pub", "-v", "--url", url(srv, "ws"), "g2", "t",
                           stdin=lines.encode())
        dt = time.monotonic() - t1
        check("pub stdin: exit 0", rc == 0, err)
        check("pub -v: the seq of each event, one per line",
              out.split() == [str(i) for i in range(1, n + 1)], out[:200])
        ev = []
        while True:
            st, body = http_json(srv.port, "GET", "/api/groups/g2/events?"
                                 "limit=1000&since=%d" % len(ev))
            ev += body["events"]
            if not body["more"]:
                break
        check("pub stdin: N lines are N events, seq 1..N, in order",
              [e["seq"] for e in ev] == list(range(1, n + 1)) and
              [e["data"]["i"] for e in ev] == list(range(n)),
              "%d events" % len(ev))
        print("pub: %d events from stdin in %.2f s (%.0f/s)"
              % (n, dt, n / dt), flush=True)

        # Empty lines and CRLF are accepted; WSD_URL names the server.
        rc, out, err = cli("pub", "g3", "t", stdin=b'1\r\n\n"x"\n',
                           env={"WSD_URL": url(srv)})
        ev = history(srv, "g3")
        check("pub: empty lines skipped, CRLF taken, WSD_URL",
              rc == 0 and [e["data"] for e in ev] == [1, "x"],
              "rc=%d err=%r %r" % (rc, err, ev))

        # A bad line: the lines before it are published, none after it.
        rc, out, err = cli("pub", "--url", url(srv), "g4", "t",
                           stdin=b'1\n2\n{"oops":\n4\n')
        check("pub bad line: exit 1, the message names line 3",
              rc == 1 and "stdin line 3 is not JSON" in err, repr(err))
        ev = history(srv, "g4")
        check("pub bad line: lines 1-2 published, line 4 not",
              [e["data"] for e in ev] == [1, 2], repr(ev))
        rc, out, err = cli("pub", "--url", url(srv), "g4", "t", "{bad")
        check("pub bad DATA argument: exit 2", rc == 2 and
              "not JSON" in err, repr(err))
        print("pub tests: %.2f s" % (time.monotonic() - t0), flush=True)

    # The server closes an idle keep-alive connection (--handshake-timeout);
    # the next line opens a new one.
    with Server("--no-session-events", "--handshake-timeout", "0.3") as srv:
        p = subprocess.Popen([WSD, "pub", "--url", url(srv), "slow", "t"],
                             stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        p.stdin.write(b"1\n")
        p.stdin.flush()
        check("pub slow stdin: the first line published at once",
              wait_for(lambda: len(history(srv, "slow")) == 1))
        time.sleep(1.0)        # past the server's idle timeout (not a check)
        p.stdin.write(b"2\n")
        p.stdin.close()
        rc = p.wait(timeout=DEADLINE)
        err = p.stderr.read().decode()
        check("pub slow stdin: after the server closed the idle "
              "connection, the next line on a new one", rc == 0 and
              [e["data"] for e in history(srv, "slow")] == [1, 2],
              "rc=%d %r" % (rc, err))


def test_api_key():
    key = "k" * 40
    with Server("--no-session-events", "--api-key", key) as srv:
        rc, out, err = cli("pub", "--url", url(srv), "g", "t", "1")
        check("pub without the API key: exit 1, 401 said",
              rc == 1 and "HTTP 401" in err, repr(err))
        rc, out, err = cli("pub", "--url", url(srv), "--api-key", key,
                           "g", "t", "2")
        check("pub --api-key: exit 0", rc == 0, err)
        rc, out, err = cli("pub", "--url", url(srv), "g", "t",
                           stdin=b"3\n4\n", env={"WSD_API_KEY": key})
        check("pub with WSD_API_KEY: exit 0", rc == 0, err)
        check("pub --api-key: exactly the accepted events",
              [e["data"] for e in history(srv, "g")] == [2, 3, 4])
        rc, out, err = cli("pub", "--url", url(srv), "--api-key", "x" * 40,
                           "g", "t", stdin=b"5\n6\n7\n")
        check("pub with a wrong key: line 1 refused with 401, exit 1",
              rc == 1 and "stdin line 1 refused: HTTP 401" in err, repr(err))


# ---- wsd sub ----------------------------------------------------------

def test_sub_two_groups():
    with Server("--no-session-events") as srv:
        s = Sub("--url", url(srv, "ws"), "-v", "a", "b")
        check("sub: subscribed to both groups",
              s.wait_stderr(r"subscribed to a .*\n.*subscribed to b") or
              s.wait_stderr(r"subscribed to b .*\n.*subscribed to a"),
              s.stderr())
        publish(srv, "a", [1, 2])
        publish(srv, "b", ["x"])
        publish(srv, "c", ["not subscribed"])
        publish(srv, "a", [3])
        ev = s.wait_events(4)
        check("sub: every event of a and b, one JSON envelope per line",
              sorted((e["group"], e["seq"], e["data"]) for e in ev) ==
              [("a", 1, 1), ("a", 2, 2), ("a", 3, 3), ("b", 1, "x")],
              repr(ev))
        check("sub: each group in seq order",
              [e["seq"] for e in ev if e["group"] == "a"] == [1, 2, 3])
        # A publisher's body may hold a newline as JSON white space; the
        # output stays one line per event.
        st, _, _ = srv.http("POST", "/api/groups/b/events",
                            b'{"type":"nl","data":{\n"k":\r\n1}}')
        ev = s.wait_events(5)
        check("sub: an event with newlines in its JSON is still one line",
              st == 202 and len(ev) == 5 and ev[4]["data"] == {"k": 1},
              repr(s.lines[-1:]))
        rc = s.stop(signal.SIGINT)
        check("sub: SIGINT -> exit 0", rc == 0, s.stderr())
        check("sub: nothing else printed", len(s.lines) == 5, repr(s.lines))


def test_sub_state():
    d = tmpdir()
    state = os.path.join(d, "state")
    with Server("--no-session-events") as srv:
        publish(srv, "s", [0])          # before the first run: not printed
        s = Sub("--url", url(srv, "ws"), "--state", state, "-v", "s")
        s.wait_stderr("subscribed to s")
        publish(srv, "s", [1, 2, 3])
        ev = s.wait_events(3)
        check("state: first run prints the live events",
              [e["seq"] for e in ev] == [2, 3, 4], repr(ev))
        epoch = history_epoch(srv, "s")
        check("state: saved while running, once the stream pauses",
              wait_for(lambda: os.path.exists(state) and
                       ("s %s:4\n" % epoch) in open(state).read()))
        publish(srv, "s", [3.5])
        ev = s.wait_events(4)
        t0 = time.monotonic()
        rc = s.stop(signal.SIGTERM)
        check("state: SIGTERM -> exit 0", rc == 0, s.stderr())
        print("sub: stopped by SIGTERM in %.3f s"
              % (time.monotonic() - t0), flush=True)
        text = open(state).read()
        check("state: the file holds GROUP EPOCH:SEQ of the last event",
              ("s %s:5\n" % epoch) in text, repr(text))
        check("state: no temporary file left beside it",
              os.listdir(d) == ["state"], repr(os.listdir(d)))

        publish(srv, "s", [4, 5])       # missed while stopped
        s = Sub("--url", url(srv, "ws"), "--state", state, "s")
        ev = s.wait_events(2)
        publish(srv, "s", [6])          # live after the replay
        ev = s.wait_events(3)
        rc = s.stop(signal.SIGINT)
        check("state: the second run prints exactly what it missed, then "
              "live, no duplicate", [e["seq"] for e in s.events()] ==
              [6, 7, 8] and [e["data"] for e in s.events()] == [4, 5, 6],
              repr(s.lines))
        check("state: second run exit 0, no history_gap", rc == 0 and
              "history_gap" not in s.stderr(), s.stderr())
        check("state: saved again", ("s %s:8\n" % epoch) in
              open(state).read())

        # A group not named this time is kept in the file.
        s = Sub("--url", url(srv, "ws"), "--state", state, "-v", "other")
        s.wait_stderr("subscribed to other")
        publish(srv, "other", [1])
        s.wait_events(1)
        s.stop()
        text = open(state).read()
        check("state: groups of other runs kept", ("s %s:8\n" % epoch) in
              text and re.search(r"\nother [0-9a-f]{8}:1\n", text), text)

        # A malformed state file is refused, not overwritten.
        with open(state, "w") as f:
            f.write("s nonsense\n")
        rc, out, err = cli("sub", "--url", url(srv, "ws"), "--state", state,
                           "s")
        check("state: a malformed file -> exit 1 naming the line",
              rc == 1 and "line 1" in err and
              open(state).read() == "s nonsense\n", repr(err))


def history_epoch(srv, group):
    st, body = http_json(srv.port, "GET", "/api/groups/%s/events" % group)
    return body.get("epoch")


def test_sub_restart():
    """wsd restarts under a running sub: it reconnects, reports the epoch
    change as history_gap on stderr, and goes on with the new stream."""
    d = tmpdir()
    state = os.path.join(d, "state")
    a = Server("--no-session-events")
    port = a.port
    s = Sub("--url", "ws://127.0.0.1:%d" % port, "--state", state, "-v", "r")
    once = Sub("--url", "ws://127.0.0.1:%d" % port, "--once", "-v", "r")
    s.wait_stderr("subscribed to r")
    once.wait_stderr("subscribed to r")
    publish(a, "r", [1, 2])
    s.wait_events(2)
    e1 = history_epoch(a, "r")
    a.stop()
    t0 = time.monotonic()
    check("restart: --once exits 1 at the drop",
          once.stop(signal.SIGTERM) == 1 if wait_for(
              lambda: once.proc.poll() is not None) else False,
          once.stderr())
    check("restart: the drop is said, and the reconnect",
          s.wait_stderr(r"closed the connection \(1001: going away\)") and
          s.wait_stderr("reconnecting in"), s.stderr())
    b = Server("--no-session-events", "--listen", "127.0.0.1:%d" % port)
    publish(b, "r", ["new"])
    e2 = history_epoch(b, "r")
    ev = s.wait_events(3)
    check("restart: reconnected; the new stream from its start",
          [(e["seq"], e["data"]) for e in ev] == [(1, 1), (2, 2), (1, "new")],
          repr(ev))
    print("sub: back on the restarted wsd in %.2f s"
          % (time.monotonic() - t0), flush=True)
    check("restart: history_gap on stderr names both epochs and the range",
          re.search(r"history_gap in r: epoch changed from %s to %s .*"
                    r"missed the events after %s:2" % (e1, e2, e1),
                    s.stderr()), s.stderr())
    publish(b, "r", ["live"])
    ev = s.wait_events(4)
    check("restart: then live", [e["data"] for e in ev][3:] == ["live"])
    check("restart: SIGTERM -> exit 0", s.stop() == 0, s.stderr())
    check("restart: state in the new epoch",
          ("r %s:2\n" % e2) in open(state).read())
    b.stop()


def test_sub_gap_range():
    """A position older than the history: the exact range missed."""
    d = tmpdir()
    state = os.path.join(d, "state")
    with Server("--no-session-events", "--history", "3") as srv:
        s = Sub("--url", url(srv, "ws"), "--state", state, "-v", "h")
        s.wait_stderr("subscribed to h")
        publish(srv, "h", [1])
        s.wait_events(1)
        s.stop()
        publish(srv, "h", list(range(2, 11)))     # seq 2..10, 8..10 kept
        e = history_epoch(srv, "h")
        s = Sub("--url", url(srv, "ws"), "--state", state, "h")
        ev = s.wait_events(3)
        check("gap: the exact missing range on stderr",
              s.wait_stderr(r"history_gap in h: missed %s:2\.\.%s:7 "
                            r"\(6 events" % (e, e)), s.stderr())
        check("gap: then what is kept", [x["seq"] for x in ev] == [8, 9, 10],
              repr(ev))
        s.stop()

    # --since for a group without state; a bare SEQ is the current epoch.
    with Server("--no-session-events") as srv:
        publish(srv, "q", [1, 2, 3])
        s = Sub("--url", url(srv, "ws"), "--since", "1", "q")
        ev = s.wait_events(2)
        check("sub --since 1: events 2 and 3", [x["seq"] for x in ev] ==
              [2, 3], repr(ev))
        s.stop()
        s = Sub("--url", url(srv, "ws"), "--since", "0", "q", "empty")
        ev = s.wait_events(3)
        check("sub --since 0: all that is kept", [x["seq"] for x in ev] ==
              [1, 2, 3], repr(ev))
        s.stop()


# ---- the client's frame layer, against a scripted server ---------------

class FakeHub:
    """One scripted WebSocket connection, for what wsd never sends
    (fragments, a ping inside a fragmented message, a masked frame, a
    wrong Sec-WebSocket-Accept): script(conn) runs after the 101."""

    def __init__(self, script, accept_ok=True):
        self.ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(1)
        self.ls.settimeout(DEADLINE)
        self.port = self.ls.getsockname()[1]
        self.head, self.frames, self.error = "", [], None
        self.script, self.accept_ok = script, accept_ok
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        try:
            c, _ = self.ls.accept()
            c.settimeout(DEADLINE)
            self.c, self.buf = c, b""
            while b"\r\n\r\n" not in self.buf:
                self.buf += c.recv(4096)
            head, _, self.buf = self.buf.partition(b"\r\n\r\n")
            self.head = head.decode()
            key = re.search(r"(?i)sec-websocket-key: (\S+)", self.head).group(1)
            acc = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-"
                                   "95CA-C5AB0DC85B11").encode()).digest())
            if not self.accept_ok:
                acc = base64.b64encode(b"x" * 20)
            c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: "
                      b"websocket\r\nConnection: Upgrade\r\n"
                      b"Sec-WebSocket-Accept: " + acc + b"\r\n\r\n")
            self.script(self)
        except Exception as e:          # reported by the test
            self.error = e

    def send(self, op, payload, fin=True, mask=False):
        payload = payload.encode() if isinstance(payload, str) else payload
        hdr = bytes([(0x80 if fin else 0) | op, (0x80 if mask else 0) |
                     len(payload)])
        if mask:
            hdr += b"\0\0\0\0"      # a zero key: the payload as it is
        self.c.sendall(hdr + payload)

    def recv(self):
        """One client frame: (fin, op, masked, unmasked payload)."""
        def need(n):
            while len(self.buf) < n:
                d = self.c.recv(4096)
                if not d:
                    raise EOFError
                self.buf += d
        need(2)
        b0, b1 = self.buf[0], self.buf[1]
        n, h = b1 & 127, 2
        if n == 126:
            need(4)
            n, h = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            need(10)
            n, h = struct.unpack("!Q", self.buf[2:10])[0], 10
        masked = bool(b1 & 0x80)
        need(h + 4 * masked + n)
        key = self.buf[h:h + 4] if masked else b"\0\0\0\0"
        data = self.buf[h + 4 * masked:h + 4 * masked + n]
        self.buf = self.buf[h + 4 * masked + n:]
        data = bytes(x ^ key[i & 3] for i, x in enumerate(data))
        self.frames.append((bool(b0 & 0x80), b0 & 15, masked, data))
        return self.frames[-1]

    def close(self):
        self.c.close()
        self.ls.close()


def test_frames():
    env = json.dumps({"type": "e", "group": "f", "seq": 1,
                      "timestamp": "2026-01-01T00:00:00.000Z",
                      "data": {"k": "fragmented"}})

    def script(h):
        h.send(OP_TEXT, '{"type":"subscribed","group":"f",'
                        '"epoch":"0000000a","seq":0}')
        h.sub2 = h.recv()               # the subscribe for the second group
        h.send(OP_TEXT, env[:20], fin=False)
        h.send(OP_PING, "p1")           # a control frame between fragments
        h.send(OP_CONT, env[20:40], fin=False)
        h.send(OP_CONT, env[40:])
        h.pong = h.recv()
        h.send(OP_CLOSE, struct.pack("!H", 1001))
        h.close_reply = h.recv()

    h = FakeHub(script)
    rc, out, err = cli("sub", "--url", "ws://127.0.0.1:%d" % h.port, "--once",
                       "f", "f2")
    h.t.join(DEADLINE)
    check("frames: the scripted server ran", h.error is None, repr(h.error))
    key = re.search(r"(?i)sec-websocket-key: (\S+)", h.head)
    check("frames: handshake with version 13 and a 16-byte key",
          "Sec-WebSocket-Version: 13" in h.head and key is not None and
          len(base64.b64decode(key.group(1))) == 16, h.head)
    check("frames: every client frame masked",
          h.frames and all(f[2] for f in h.frames), repr(h.frames))
    check("frames: the second group by a subscribe message",
          getattr(h, "sub2", None) is not None and
          json.loads(h.sub2[3]) == {"type": "subscribe", "group": "f2"},
          repr(getattr(h, "sub2", None)))
    check("frames: the ping inside a fragmented message answered",
          getattr(h, "pong", (0, 0, 0, b""))[1:] == (OP_PONG, True, b"p1"))
    check("frames: the fragments assembled into one line",
          out.splitlines() == [env], repr(out))
    check("frames: close 1001 echoed, then --once exits 1",
          getattr(h, "close_reply", (0, 0, 0, b""))[1:] ==
          (OP_CLOSE, True, struct.pack("!H", 1001)) and rc == 1 and
          "1001" in err, repr((rc, err)))
    h.close()

    def masked(h):
        h.send(OP_TEXT, '{"type":"subscribed"}', mask=True)
        h.reply = h.recv()

    h = FakeHub(masked)
    rc, out, err = cli("sub", "--url", "ws://127.0.0.1:%d" % h.port, "--once",
                       "f")
    h.t.join(DEADLINE)
    check("frames: a masked server frame -> close 1002, exit 1",
          getattr(h, "reply", (0, 0, 0, b""))[1:] ==
          (OP_CLOSE, True, struct.pack("!H", 1002)) and rc == 1 and
          "bad frame" in err, repr((rc, err, h.error)))
    h.close()

    h = FakeHub(lambda h: h.c.recv(1), accept_ok=False)
    rc, out, err = cli("sub", "--url", "ws://127.0.0.1:%d" % h.port, "--once",
                       "f")
    h.t.join(DEADLINE)
    check("frames: a wrong Sec-WebSocket-Accept is refused, exit 1",
          rc == 1 and "without a valid WebSocket upgrade" in err, repr(err))
    h.close()


# ---- wsd token --------------------------------------------------------

def claims(tok):
    p = tok.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))


def test_token():
    rc, tok, err = cli("token", "--secret", SECRET, "--sub", "worker",
                       "--groups", "a,chat:*", "--publish", "a",
                       "--ttl", "120")
    tok = tok.strip()
    c = claims(tok) if rc == 0 else {}
    check("token: minted, three base64url parts without padding",
          rc == 0 and re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\."
                                   r"[A-Za-z0-9_-]{43}", tok) is not None,
          "%d %r %r" % (rc, tok, err))
    h = tok.split(".")[0]
    check("token: header is HS256/JWT", json.loads(base64.urlsafe_b64decode(
        h + "=" * (-len(h) % 4))) == {"alg": "HS256", "typ": "JWT"})
    check("token: claims sub, groups, publish, exp = now + ttl",
          c.get("sub") == "worker" and c.get("groups") == ["a", "chat:*"]
          and c.get("publish") == ["a"] and
          abs(c.get("exp", 0) - 120 - time.time()) < 10, repr(c))

    with Server("--no-session-events", "--token-secret", SECRET,
                "--token-require-exp") as srv:
        auth = {"Authorization": "Bearer " + tok}
        check("token: accepted for its group (101)",
              WS(srv.port, "/ws/a", headers=auth).status == 101)
        check("token: accepted for a prefix pattern (101)",
              WS(srv.port, "/ws/chat/x", headers=auth).status == 101)
        check("token: refused for another group (403)",
              WS(srv.port, "/ws/b", headers=auth).status == 403)
        rc, t0, _ = cli("token", "--secret", SECRET, "--groups", "a",
                        "--ttl", "0")
        check("token --ttl 0: no exp", rc == 0 and "exp" not in
              claims(t0.strip()))
        check("token without exp: refused where wsd requires exp (401)",
              WS(srv.port, "/ws/a", headers={
                  "Authorization": "Bearer " + t0.strip()}).status == 401)
        rc, t1, _ = cli("token", "--secret", "x" * 32, "--groups", "a")
        check("token with another secret: 401", rc == 0 and WS(
            srv.port, "/ws/a", headers={
                "Authorization": "Bearer " + t1.strip()}).status == 401)

        # The same token drives sub and pub (over WebSocket).
        s = Sub("--url", url(srv, "ws"), "--token", tok, "-v", "a")
        s.wait_stderr("subscribed to a")
        rc, out, err = cli("pub", "-v", "--url", url(srv), "--token", tok,
                           "a", "t", stdin=b"1\n2\n")
        check("pub --token: published over WebSocket, seqs printed",
              rc == 0 and out.split() == ["1", "2"], repr((rc, out, err)))
        ev = s.wait_events(2)
        check("sub --token: receives them", [e["data"] for e in ev] ==
              [1, 2], repr(ev))
        s.stop()
        rc, out, err = cli("pub", "--url", url(srv), "--token", tok,
                           "chat:x", "t", "1")
        check("pub --token where it may join but not publish: exit 1, "
              "forbidden", rc == 1 and "forbidden" in err, repr(err))
        t0 = time.monotonic()
        rc, out, err = cli("sub", "--url", url(srv, "ws"), "--token", tok, "b")
        check("sub --token for a group not granted: exit 1 at once (403)",
              rc == 1 and "HTTP 403" in err and
              time.monotonic() - t0 < 5, repr(err))

    with tempfile.NamedTemporaryFile("w", suffix=".secret") as f:
        f.write(SECRET + "\n")
        f.flush()
        rc, t2, _ = cli("token", "--secret-file", f.name, "--groups", "a")
        rc3, t3, _ = cli("token", "--groups", "a",
                         env={"WSD_TOKEN_SECRET": SECRET})
        with Server("--no-session-events", "--token-secret-file",
                    f.name) as srv:
            check("token --secret-file and WSD_TOKEN_SECRET: accepted",
                  rc == 0 and rc3 == 0 and all(
                      WS(srv.port, "/ws/a", headers={
                          "Authorization": "Bearer " + t.strip()}).status ==
                      101 for t in (t2, t3)))

    rc, out, err = cli("token", "--secret", "short", "--groups", "a")
    check("token: a secret under 32 bytes is refused (exit 2)",
          rc == 2 and "32 bytes" in err and out == "", repr(err))
    rc, out, err = cli("token", "--secret", SECRET, "--groups", "a*b")
    check("token: a pattern wsd would refuse is refused here (exit 2)",
          rc == 2 and out == "", repr(err))
    rc, out, err = cli("token", "--groups", "a", env={
        "WSD_TOKEN_SECRET": "", "WSD_TOKEN_SECRET_FILE": ""})
    check("token: no secret (exit 2)", rc == 2, repr(err))


# ---- TLS --------------------------------------------------------------

def test_tls():
    d = tmpdir()
    cert, key = make_cert(d, "c", "localhost", "IP:127.0.0.1,DNS:localhost")
    with Server("--no-session-events", "--tls-cert", cert,
                "--tls-key", key) as srv:
        rc, out, err = cli("pub", "--url", url(srv, "https"), "t", "e", "1")
        check("TLS: an untrusted certificate is refused (exit 1)",
              rc == 1 and "certificate" in err, repr(err))
        rc, out, err = cli("pub", "--url", url(srv, "https"), "--cafile",
                           cert, "t", "e", "2")
        check("TLS: verified with --cafile (IP in subjectAltName)", rc == 0,
              err)
        rc, out, err = cli("pub", "--url", "https://localhost:%d" % srv.port,
                           "--cafile", cert, "t", "e", stdin=b"3\n4\n")
        check("TLS: verified by name (SNI, DNS in subjectAltName)", rc == 0,
              err)
        rc, out, err = cli("pub", "--url", url(srv, "wss"),
                           "--insecure-tls", "t", "e", "5")
        check("TLS: --insecure-tls skips verification", rc == 0, err)
        s = Sub("--url", url(srv, "wss"), "--cafile", cert, "--since", "0",
                "t")
        ev = s.wait_events(4)
        check("TLS: sub over wss", [e["data"] for e in ev] == [2, 3, 4, 5],
              repr((ev, s.stderr())))
        check("TLS: sub exit 0", s.stop() == 0)


# ---- usage ------------------------------------------------------------

def test_usage():
    for args, want in [
            (["help"], 0), (["help", "pub"], 0), (["help", "sub"], 0),
            (["help", "token"], 0), (["pub", "--help"], 0),
            (["sub", "-h"], 0), (["token", "--help"], 0),
            (["help", "nope"], 2), (["pub"], 2), (["pub", "g"], 2),
            (["pub", "g", "t", "1", "extra"], 2),
            (["pub", "--bogus", "g", "t", "1"], 2),
            (["pub", "--url", "ftp://x:1", "g", "t", "1"], 2),
            (["pub", "--url", "http://127.0.0.1:99999", "g", "t", "1"], 2),
            (["pub", "bad/group", "t", "1"], 2), (["pub", "g", "", "1"], 2),
            (["pub", "--url"], 2), (["sub"], 2), (["sub", "--since", "x:1",
                                                   "g"], 2),
            (["sub", "*"], 2), (["sub", "--once=1", "g"], 2),
            (["token", "extra"], 2), (["frobnicate"], 2)]:
        rc, out, err = cli(*args)
        check("usage: wsd %s -> exit %d" % (" ".join(args), want),
              rc == want and (want != 0 or out.startswith("usage:")),
              "rc=%d out=%r err=%r" % (rc, out[:80], err[:200]))
    rc, out, err = cli("pub", "--url", "http://127.0.0.1:1", "g", "t", "1")
    check("pub: nothing listening -> exit 1, said", rc == 1 and
          "cannot connect" in err, repr(err))


test_pub()
test_api_key()
test_sub_two_groups()
test_sub_state()
test_sub_restart()
test_sub_gap_range()
test_frames()
test_token()
test_tls()
test_usage()
shutil.rmtree(TMP, ignore_errors=True)
done()
