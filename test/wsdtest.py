"""wsdtest - the black-box harness: start the real binary, talk to it raw.

Run with Debian's /usr/bin/python3; standard library only.

    srv = Server("--echo")          # starts ./wsd (or $WSD) on 127.0.0.1:0
    c = srv.ws("/echo")             # raw RFC 6455 client, frames masked
    c.send(OP_TEXT, b"hi"); check("echo", c.recv() == (True, OP_TEXT, b"hi"))
    srv.stop()                      # SIGTERM, waits, checks exit status 0

Every wait has a generous deadline (loaded 2-core CI); nothing asserts on a
fixed sleep.  A test file calls done() last: it prints "N passed, M failed".
"""
import base64
import json
import os
import re
import select
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time

OP_CONT, OP_TEXT, OP_BIN, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10
DEADLINE = 20.0          # seconds; any single wait in a test
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WSD = os.environ.get("WSD", os.path.join(ROOT, "wsd"))

passed = 0
failed = 0


def check(name, cond, detail=""):
    """Count one assertion; print the failing ones with their name."""
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL: %s %s" % (name, detail), file=sys.stderr, flush=True)
    return cond


def done():
    print("%d passed, %d failed" % (passed, failed), flush=True)
    sys.exit(1 if failed else 0)


def wait_for(pred, timeout=DEADLINE, step=0.02):
    """Poll pred() until it is true or the deadline passes; return its value."""
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > end:
            return v
        time.sleep(step)


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def make_cert(d, name, cn, san=None):
    """A self-signed RSA-2048 certificate and key in directory d
    (NAME.pem, NAME.key) for CN cn, with subjectAltName san if given
    (e.g. "IP:127.0.0.1,DNS:localhost"); (cert, key)."""
    cert, key = os.path.join(d, name + ".pem"), os.path.join(d, name + ".key")
    args = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
            "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=" + cn]
    if san:
        args += ["-addext", "subjectAltName=" + san]
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return cert, key


def tls_ctx():
    """A TLS client context offering ALPN http/1.1 that does not check
    the (self-signed) certificate."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def tls_socket(port):
    """A TLS client socket to 127.0.0.1:port (tls_ctx())."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
    return tls_ctx().wrap_socket(raw)


def read_to_end(sock):
    """Everything sock receives until the peer closes."""
    data = b""
    while True:
        d = sock.recv(65536)
        if not d:
            return data
        data += d


def _resp_end(d, i=0):
    """The index after the whole RESP2 value at d[i:], or -1 if more is
    to come."""
    j = d.find(b"\r\n", i)
    if j < 0:
        return -1
    kind, n = d[i:i + 1], d[i + 1:j]
    if kind in (b"+", b"-", b":"):
        return j + 2
    n = int(n)
    if kind == b"$":
        end = j + 2 + n + 2 if n >= 0 else j + 2
        return end if len(d) >= end else -1
    k = j + 2                   # an array: its n values
    for _ in range(max(n, 0)):
        k = _resp_end(d, k)
        if k < 0:
            return -1
    return k


def redis_cmd(port, *args, timeout=5):
    """One command to a redis-server on 127.0.0.1:port over a raw socket
    (RESP2); the text of its whole reply ("" if none came in time)."""
    s = socket.create_connection(("127.0.0.1", port), timeout)
    s.sendall(("*%d\r\n" % len(args) + "".join(
        "$%d\r\n%s\r\n" % (len(a.encode()), a) for a in args)).encode())
    data = b""
    try:
        while _resp_end(data) < 0:
            d = s.recv(65536)
            if not d:
                break
            data += d
    except socket.timeout:
        pass
    s.close()
    return data.decode("latin-1")


def count(srv, pattern):
    """How many of srv's log lines match pattern."""
    with srv.lock:
        return sum(1 for line in srv.log if re.search(pattern, line))


def hup(srv):
    """SIGHUP our wsd (by PID) and wait for the reload's verdict; True if
    applied."""
    done_before = count(srv, r"config reload(ed| refused)")
    ok_before = count(srv, r"config reloaded")
    srv.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: count(srv, r"config reload(ed| refused)") > done_before)
    return count(srv, r"config reloaded") > ok_before


class Server:
    """One wsd process on a free loopback port, found from its log line."""

    def __init__(self, *args, env=None, expect_exit=0):
        self.args = [WSD, "--listen", "127.0.0.1:0"] + list(args)
        e = dict(os.environ)
        e.update(env or {})
        self.expect_exit = expect_exit
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, env=e)
        self.log = []
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        # "listening addr=HOST:PORT", or its --log-format json line.
        m = wait_for(lambda: self.find(
            r'listening(?: addr=|",.*"addr":")[^"\s]*:(\d+)'))
        if not m:
            self.proc.kill()
            raise RuntimeError("wsd did not start: %s" % "".join(self.log))
        self.port = int(m.group(1))

    def _read(self):
        for line in iter(self.proc.stderr.readline, b""):
            with self.lock:
                self.log.append(line.decode("utf-8", "replace"))

    def find(self, pattern):
        """The first log line matching pattern (a re.Match), or None."""
        with self.lock:
            for line in self.log:
                m = re.search(pattern, line)
                if m:
                    return m
        return None

    def ws(self, path="/echo", **kw):
        return WS(self.port, path, **kw)

    def http(self, method, path, body=None, headers=None):
        return http(self.port, method, path, body, headers)

    def pid(self):
        return self.proc.pid

    def rss_kib(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stop(self, sig=signal.SIGTERM):
        """Signal our own process (by PID), wait, return its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.reader.join(timeout=5)
        if self.expect_exit is not None:
            check("wsd exit status %s" % self.args[3:], rc == self.expect_exit,
                  "rc=%s log=%s" % (rc, "".join(self.log[-20:])))
        return rc

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class Closed(Exception):
    """The peer closed the TCP connection."""


class WS:
    """A raw WebSocket client over a blocking socket with deadlines."""

    def __init__(self, port, path="/echo", headers=None, key=None,
                 connect_only=False, sock=None, rcvbuf=None):
        """sock: an already connected socket (e.g. wrapped in TLS).
        rcvbuf: SO_RCVBUF set before connect, so the TCP window stays that
        small (a client that does not keep up)."""
        if sock is None and rcvbuf is not None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.settimeout(DEADLINE)
            sock.connect(("127.0.0.1", port))
        self.sock = sock or socket.create_connection(("127.0.0.1", port),
                                                     timeout=DEADLINE)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.status = None
        self.resp_headers = {}
        if connect_only:
            return
        key = key or base64.b64encode(os.urandom(16)).decode()
        h = {"Host": "127.0.0.1:%d" % port, "Upgrade": "websocket",
             "Connection": "Upgrade", "Sec-WebSocket-Key": key,
             "Sec-WebSocket-Version": "13"}
        h.update(headers or {})
        req = "GET %s HTTP/1.1\r\n" % path
        req += "".join("%s: %s\r\n" % kv for kv in h.items() if kv[1] is not None)
        self.sock.sendall((req + "\r\n").encode())
        head = self.read_until(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                self.resp_headers[k.strip().lower()] = v.strip()
        if self.status == 101:
            import hashlib
            want = base64.b64encode(hashlib.sha1(
                (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()
            ).digest()).decode()
            if self.resp_headers.get("sec-websocket-accept") != want:
                raise RuntimeError("bad Sec-WebSocket-Accept")
            # A hub route's first message is "subscribed" with the stream's
            # position; kept here so tests read the events that follow.
            route = path.split("?")[0]
            self.subscribed = None
            if route.startswith("/ws/") or route.startswith("/api/v1/ws/"):
                m = json.loads(self.recv_message()[1])
                if m.get("type") != "subscribed" or "epoch" not in m:
                    raise RuntimeError("first message is not subscribed: %r"
                                       % m)
                self.subscribed = m
        else:
            n = int(self.resp_headers.get("content-length", "0"))
            self.body = self.read_exact(n)

    def _fill(self):
        try:
            d = self.sock.recv(65536)
        except ConnectionResetError:
            d = b""
        if not d:
            raise Closed()
        self.buf += d

    def read_until(self, sep):
        while sep not in self.buf:
            self._fill()
        i = self.buf.index(sep) + len(sep)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def read_exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def send_raw(self, data):
        self.sock.sendall(data)

    @staticmethod
    def frame(opcode, payload=b"", fin=True, mask=True, rsv=0, length=None):
        """Encode one client frame; length overrides the length field."""
        if isinstance(payload, str):
            payload = payload.encode()
        n = len(payload) if length is None else length
        b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
        mbit = 0x80 if mask else 0
        if n < 126:
            hdr = struct.pack("!BB", b0, mbit | n)
        elif n < 65536:
            hdr = struct.pack("!BBH", b0, mbit | 126, n)
        else:
            hdr = struct.pack("!BBQ", b0, mbit | 127, n)
        if not mask:
            return hdr + payload
        key = os.urandom(4)
        body = bytes(b ^ key[i & 3] for i, b in enumerate(payload)) \
            if len(payload) < 4096 else _xor(payload, key)
        return hdr + key + body

    def send(self, opcode, payload=b"", **kw):
        self.sock.sendall(self.frame(opcode, payload, **kw))

    def send_text(self, s):
        self.send(OP_TEXT, s.encode() if isinstance(s, str) else s)

    def send_json(self, obj):
        self.send(OP_TEXT, json.dumps(obj).encode())

    def recv(self, timeout=DEADLINE):
        """One frame as (fin, opcode, payload); raises Closed on EOF."""
        self.sock.settimeout(timeout)
        hdr = self.read_exact(2)
        fin, op = hdr[0] >> 7, hdr[0] & 15
        if hdr[1] & 0x80:
            raise RuntimeError("server frame is masked")
        n = hdr[1] & 127
        if n == 126:
            n = struct.unpack("!H", self.read_exact(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self.read_exact(8))[0]
        return bool(fin), op, self.read_exact(n)

    def recv_message(self, timeout=DEADLINE):
        """One whole data message (opcode, payload), skipping pings."""
        while True:
            fin, op, data = self.recv(timeout)
            if op == OP_PING:
                continue
            if op in (OP_TEXT, OP_BIN):
                while not fin:
                    fin, op2, more = self.recv(timeout)
                    data += more
                return op, data
            return op, data

    def recv_json(self, timeout=DEADLINE):
        op, data = self.recv_message(timeout)
        if op != OP_TEXT:
            raise RuntimeError("expected text, got opcode %d %r" % (op, data))
        return json.loads(data)

    def recv_until(self, pred, timeout=DEADLINE):
        """Read JSON messages until pred(msg) is true; return that message."""
        end = time.monotonic() + timeout
        while True:
            m = self.recv_json(max(0.1, end - time.monotonic()))
            if pred(m):
                return m

    def recv_close(self, timeout=DEADLINE):
        """Skip data until a close frame; return its code (None if empty),
        or "eof" when TCP closed without a close frame."""
        end = time.monotonic() + timeout
        try:
            while True:
                fin, op, data = self.recv(max(0.1, end - time.monotonic()))
                if op == OP_CLOSE:
                    if len(data) >= 2:
                        return struct.unpack("!H", data[:2])[0]
                    return None
        except (Closed, socket.timeout, OSError):
            return "eof"

    def expect_eof(self, timeout=DEADLINE):
        """True when the server closes TCP within the deadline."""
        self.sock.settimeout(timeout)
        try:
            while True:
                d = self.sock.recv(65536)
                if not d:
                    return True
        except ConnectionResetError:
            return True
        except (socket.timeout, OSError):
            return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def _xor(payload, key):
    k = int.from_bytes(key * 1024, "big")
    out = bytearray()
    for i in range(0, len(payload), 4096):
        chunk = payload[i:i + 4096]
        v = int.from_bytes(chunk, "big") ^ (k >> (8 * (4096 - len(chunk))))
        out += v.to_bytes(len(chunk), "big")
    return bytes(out)


def head_of(port, size=None, nhdr=None, path="/echo"):
    """An upgrade request head padded to exactly size bytes (CRLFCRLF
    included), or carrying exactly nhdr header lines."""
    lines = ["GET %s HTTP/1.1" % path, "Host: 127.0.0.1:%d" % port,
             "Upgrade: websocket", "Connection: Upgrade",
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
             "Sec-WebSocket-Version: 13"]
    if nhdr is not None:
        lines += ["X-H%d: v" % i for i in range(nhdr - (len(lines) - 1))]
    head = "\r\n".join(lines) + "\r\n\r\n"
    if size is not None:
        pad = size - len(head) - len("X-Pad: \r\n")
        assert pad >= 0, "size too small for a head"
        head = "\r\n".join(lines) + "\r\nX-Pad: " + "p" * pad + "\r\n\r\n"
        assert len(head) == size
    return head.encode()


def status_of(port, data):
    """Send raw bytes on a new connection; the response's status code
    (0 if the server just closed or the status line is not one)."""
    c = WS(port, connect_only=True)
    try:
        c.send_raw(data)
        line = c.read_until(b"\r\n")
        return int(line.split()[1])
    except (Closed, OSError, ValueError, IndexError):
        return 0
    finally:
        c.close()


def closed_by_server(sock, timeout=DEADLINE, trickle=None):
    """True when the server closes sock within timeout (what it sends is
    skipped).  With trickle, one more byte of it is sent every 0.1 s
    meanwhile (slowloris)."""
    end = time.monotonic() + timeout
    i = 0
    while time.monotonic() < end:
        r, _, _ = select.select([sock], [], [], 0.1)
        if r:
            try:
                if sock.recv(65536) == b"":
                    return True
            except OSError:         # reset
                return True
            continue
        if trickle is not None:
            try:
                sock.send(trickle[i % len(trickle):i % len(trickle) + 1])
            except OSError:
                return True
            i += 1
    return False


def rst_close(c):
    """Vanish abruptly, RST instead of FIN; c is a socket or a WS."""
    sock = getattr(c, "sock", c)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                        struct.pack("ii", 1, 0))
        sock.close()
    except OSError:
        pass


def http(port, method, path, body=None, headers=None, raw=None):
    """One HTTP/1.1 request on a new connection: (status, headers, body).
    A dict or list body is sent as JSON."""
    s = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
    if raw is None:
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        h = {"Host": "127.0.0.1", "Connection": "close"}
        if body is not None:
            h["Content-Length"] = str(len(body))
            h.setdefault("Content-Type", "application/json")
        h.update(headers or {})
        raw = ("%s %s HTTP/1.1\r\n" % (method, path)).encode()
        raw += "".join("%s: %s\r\n" % kv for kv in h.items()).encode()
        raw += b"\r\n" + (body or b"")
    s.sendall(raw)
    data = b""
    while b"\r\n\r\n" not in data:
        d = s.recv(65536)
        if not d:
            break
        data += d
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines[0] else 0
    hdrs = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            hdrs[k.strip().lower()] = v.strip()
    n = int(hdrs.get("content-length", "0"))
    while len(rest) < n:
        d = s.recv(65536)
        if not d:
            break
        rest += d
    s.close()
    return status, hdrs, rest


def http_json(port, method, path, body=None, headers=None):
    status, hdrs, data = http(port, method, path, body, headers)
    try:
        return status, json.loads(data) if data else None
    except ValueError:
        return status, data
