"""test_conformance - RFC 6455 conformance of /echo, from outside.

Our own suite over loopback covering the ground of the Autobahn testsuite's
categories 1-7, 9 and 10, with the exact close codes RFC 6455 asks for,
plus the opening handshake (RFC 6455 §4).  One function per category; each
protocol violation gets a fresh connection and must end in the right close
frame followed by the server closing TCP.

    WSD=./wsd /usr/bin/python3 test/test_conformance.py
"""
import base64
import hashlib
import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wsdtest import (DEADLINE, OP_BIN, OP_CLOSE, OP_CONT, OP_PING,  # noqa: E402
                     OP_PONG, OP_TEXT, WS, Closed, Server, check, done)

MAX_MESSAGE = 1 << 20           # the default --max-message
TIMEOUT = "timeout"
RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


# ---- helpers ----------------------------------------------------------------

def next_frame(c, timeout=DEADLINE):
    """The next frame (fin, opcode, payload); None on EOF, TIMEOUT when
    nothing came before the deadline."""
    try:
        return c.recv(timeout)
    except socket.timeout:
        return TIMEOUT
    except (Closed, OSError):
        return None


def n_frames(c, n):
    """Up to n frames; fewer if the stream ends or goes quiet."""
    out = []
    while len(out) < n:
        f = next_frame(c)
        if f is None or f is TIMEOUT:
            break
        out.append(f)
    return out


def run(category, *args):
    """One category; an exception (a dropped connection, a deadline) is
    one failure, and the next category still runs."""
    try:
        category(*args)
    except Exception as e:      # noqa: BLE001 - report and go on
        check("%s ran to its end" % category.__name__, False, repr(e))


def close_code(data):
    return struct.unpack("!H", data[:2])[0] if len(data) >= 2 else None


def expect_fail(c, code, name):
    """The very next frame must be a close with code, then TCP EOF."""
    f = next_frame(c)
    if f is None or f is TIMEOUT:
        check(name + ": close %s" % code, False, "got %s, no close" %
              ("EOF" if f is None else "nothing within %ds" % DEADLINE))
    elif f[1] != OP_CLOSE:
        check(name + ": close %s" % code, False,
              "got opcode %d %r first" % (f[1], f[2][:40]))
    else:
        check(name + ": close %s" % code, close_code(f[2]) == code,
              "got close %r" % f[2][:40])
    # After a silent deadline, waiting again would only double the time.
    rest = None if f is TIMEOUT else rest_until_eof(c)
    check(name + ": then nothing but TCP EOF", rest == b"",
          "no EOF" if rest is None else "%d more bytes %r" % (len(rest),
                                                             rest[:20]))
    c.close()


def rest_until_eof(c, timeout=DEADLINE):
    """The bytes the server still sends before closing TCP (None: it did
    not close within the deadline).  After a close frame there must be
    none: RFC 6455 §5.5.1."""
    c.sock.settimeout(timeout)
    rest, c.buf = c.buf, b""
    try:
        while True:
            d = c.sock.recv(65536)
            if not d:
                return rest
            rest += d
    except ConnectionResetError:
        return rest
    except (socket.timeout, OSError):
        return None


def expect_echo(c, op, payload, name):
    """The next message is exactly (op, payload) in one final frame."""
    f = next_frame(c)
    ok = f not in (None, TIMEOUT) and f[0] and f[1] == op and f[2] == payload
    got = "EOF" if f is None else "timeout" if f is TIMEOUT else \
        "fin=%d op=%d len=%d %r" % (f[0], f[1], len(f[2]), f[2][:40])
    return check(name, ok, "want op=%d len=%d, got %s" % (op, len(payload), got))


def echo(c, op, payload, name):
    c.send(op, payload)
    return expect_echo(c, OP_PONG if op == OP_PING else op, payload, name)


def note(name, what):
    """An informational outcome (Autobahn's NON-STRICT): said, not counted."""
    print("NOTE: %s: %s" % (name, what), file=sys.stderr, flush=True)


def frames_until_close(c):
    """Frames before the close: (list of (op, payload), close code or "eof")."""
    seen = []
    while True:
        f = next_frame(c)
        if f is None or f is TIMEOUT:
            return seen, f or "eof"
        if f[1] == OP_CLOSE:
            return seen, close_code(f[2])
        seen.append((f[1], f[2]))


def fragments(op, payload, size):
    """payload as a fragmented message of size-byte frames (bytes)."""
    parts = [payload[i:i + size] for i in range(0, len(payload), size)] or [b""]
    out = b""
    for i, part in enumerate(parts):
        out += WS.frame(op if i == 0 else OP_CONT, part,
                        fin=i == len(parts) - 1)
    return out


def send_chunked(c, data, size):
    for i in range(0, len(data), size):
        c.send_raw(data[i:i + size])


def recv_big(c, timeout=DEADLINE):
    """One large frame without the harness's quadratic buffer growth."""
    c.sock.settimeout(timeout)
    hdr = c.read_exact(2)
    n = hdr[1] & 127
    if n == 126:
        n = struct.unpack("!H", c.read_exact(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", c.read_exact(8))[0]
    out = bytearray(c.buf[:n])
    c.buf = c.buf[len(out):]
    view = memoryview(bytearray(n - len(out)))
    got = 0
    while got < len(view):
        k = c.sock.recv_into(view[got:])
        if k == 0:
            raise Closed()
        got += k
    out += view
    return bool(hdr[0] >> 7), hdr[0] & 15, bytes(out)


def raw_request(port, head, chunk=None):
    """Send a hand-written request head; return (conn, status, headers)."""
    c = WS(port, connect_only=True)
    if chunk:
        send_chunked(c, head, chunk)
    else:
        c.send_raw(head)
    resp = c.read_until(b"\r\n\r\n").decode("latin-1").split("\r\n")
    hdrs = {}
    for line in resp[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            hdrs[k.strip().lower()] = v.strip()
    if int(resp[0].split()[1]) != 101:
        c.read_exact(int(hdrs.get("content-length", "0")))
    return c, int(resp[0].split()[1]), hdrs


def upgrade_head(port, key=RFC_KEY, method="GET", version="HTTP/1.1",
                 extra=None, drop=()):
    h = {"Host": "127.0.0.1:%d" % port, "Upgrade": "websocket",
         "Connection": "Upgrade", "Sec-WebSocket-Key": key,
         "Sec-WebSocket-Version": "13"}
    h.update(extra or {})
    lines = ["%s /echo %s" % (method, version)]
    lines += ["%s: %s" % kv for kv in h.items() if kv[0] not in drop]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def accept_of(key):
    return base64.b64encode(hashlib.sha1(
        (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()


def is_utf8(b):
    try:
        b.decode("utf-8")       # Python's decoder is strict RFC 3629
        return True
    except UnicodeDecodeError:
        return False


# ---- handshake (RFC 6455 §4) ------------------------------------------------

def handshake(srv):
    p = srv.port
    c, st, h = raw_request(p, upgrade_head(p))
    check("hs: RFC vector 101", st == 101, "status %s" % st)
    check("hs: RFC accept key", h.get("sec-websocket-accept") == RFC_ACCEPT,
          "got %r" % h.get("sec-websocket-accept"))
    check("hs: Upgrade: websocket", h.get("upgrade", "").lower() == "websocket")
    check("hs: Connection: Upgrade", "upgrade" in h.get("connection", "").lower())
    echo(c, OP_TEXT, b"after handshake", "hs: echo after handshake")
    c.close()

    def status(name, head, want, header=None):
        c, st, h = raw_request(p, head)
        check("hs: %s -> %d" % (name, want), st == want, "status %s" % st)
        if header:
            check("hs: %s has %s" % (name, header[0]),
                  h.get(header[0].lower()) == header[1], "headers %r" % h)
        c.close()
        return h

    status("missing key", upgrade_head(p, drop=("Sec-WebSocket-Key",)), 400)
    status("key of 15 bytes", upgrade_head(
        p, key=base64.b64encode(b"x" * 15).decode()), 400)
    status("key of 17 bytes", upgrade_head(
        p, key=base64.b64encode(b"x" * 17).decode()), 400)
    status("key not base64", upgrade_head(p, key="!" * 22 + "=="), 400)
    status("version 8", upgrade_head(p, extra={"Sec-WebSocket-Version": "8"}),
           426, ("Sec-WebSocket-Version", "13"))
    status("POST", upgrade_head(p, method="POST"), 400)
    status("HTTP/1.0", upgrade_head(p, version="HTTP/1.0"), 400)
    status("Connection: keep-alive, Upgrade", upgrade_head(
        p, extra={"Connection": "keep-alive, Upgrade"}), 101)
    status("Upgrade: WebSocket", upgrade_head(
        p, extra={"Upgrade": "WebSocket"}), 101)
    status("Connection without Upgrade", upgrade_head(
        p, extra={"Connection": "keep-alive"}), 400)
    status("no Host", upgrade_head(p, drop=("Host",)), 400)
    status("query string on /echo?x=1", upgrade_head(p).replace(
        b"/echo ", b"/echo?x=1 ", 1), 101)
    h = status("subprotocol offered", upgrade_head(
        p, extra={"Sec-WebSocket-Protocol": "chat, superchat"}), 101)
    check("hs: no subprotocol chosen unless configured",
          "sec-websocket-protocol" not in h, "headers %r" % h)
    h = status("permessage-deflate offered", upgrade_head(p, extra={
        "Sec-WebSocket-Extensions":
        "permessage-deflate; client_max_window_bits"}), 101)
    check("hs: permessage-deflate declined",
          "sec-websocket-extensions" not in h, "headers %r" % h)

    # The first frame in the same packet as the request is not lost.
    key = base64.b64encode(os.urandom(16)).decode()
    c = WS(p, connect_only=True)
    c.send_raw(upgrade_head(p, key=key) + WS.frame(OP_TEXT, b"early bird"))
    head = c.read_until(b"\r\n\r\n").decode("latin-1")
    check("hs: request+frame in one packet: 101",
          head.startswith("HTTP/1.1 101") and accept_of(key) in head, head)
    expect_echo(c, OP_TEXT, b"early bird", "hs: frame sent with request echoed")
    c.close()

    # The request written one byte at a time.
    c, st, h = raw_request(p, upgrade_head(p), chunk=1)
    check("hs: 1-byte writes of the request -> 101", st == 101, "status %s" % st)
    echo(c, OP_TEXT, b"slow start", "hs: echo after 1-byte request")

    # Frames written one byte at a time: text, ping, binary, close.
    send_chunked(c, WS.frame(OP_TEXT, "byte by byte \u00e9\u20ac".encode()), 1)
    expect_echo(c, OP_TEXT, "byte by byte \u00e9\u20ac".encode(),
                "hs: 1-byte writes of a text frame")
    send_chunked(c, WS.frame(OP_PING, b"p1"), 1)
    expect_echo(c, OP_PONG, b"p1", "hs: 1-byte writes of a ping")
    send_chunked(c, WS.frame(OP_BIN, bytes(range(200))), 1)
    expect_echo(c, OP_BIN, bytes(range(200)), "hs: 1-byte writes of a binary frame")
    send_chunked(c, WS.frame(OP_CLOSE, struct.pack("!H", 1000)), 1)
    expect_fail(c, 1000, "hs: 1-byte writes of a close")


# ---- 1 framing --------------------------------------------------------------

def recv_header(c):
    """The raw header bytes and payload of the next server frame."""
    c.sock.settimeout(DEADLINE)
    hdr = c.read_exact(2)
    n = hdr[1] & 127
    if n == 126:
        hdr += c.read_exact(2)
        n = struct.unpack("!H", hdr[2:4])[0]
    elif n == 127:
        hdr += c.read_exact(8)
        n = struct.unpack("!Q", hdr[2:10])[0]
    return hdr, c.read_exact(n)


def cat1_framing(srv):
    c = srv.ws("/echo")
    for op in (OP_TEXT, OP_BIN):
        for n in (0, 125, 126, 127, 128, 65535, 65536):
            payload = b"*" * n if op == OP_TEXT else os.urandom(n)
            c.send(op, payload)
            hdr, got = recv_header(c)
            name = "1: %s length %d" % ("text" if op == OP_TEXT else "binary", n)
            check(name + " echoed", hdr[0] == 0x80 | op and got == payload,
                  "hdr %r len %d" % (hdr, len(got)))
            # §5.2: the server uses the shortest length encoding.
            want = 2 if n < 126 else 4 if n < 65536 else 10
            check(name + " minimal length field", len(hdr) == want,
                  "header %d bytes" % len(hdr))
    for op in (OP_TEXT, OP_BIN):
        payload = b"x" * 65536
        send_chunked(c, WS.frame(op, payload), 997)
        expect_echo(c, op, payload, "1: 64 KiB frame in 997-byte writes")
    for n in (126, 65536):
        f = WS.frame(OP_BIN, b"h" * n)
        hl = 8 if n < 65536 else 14
        send_chunked(c, f[:hl], 1)
        c.send_raw(f[hl:])
        expect_echo(c, OP_BIN, b"h" * n,
                    "1: %d-byte frame, header in 1-byte writes" % n)
    c.close()

    # A stream of frames cut at every point into two writes.
    stream = (WS.frame(OP_TEXT, b"abc") + WS.frame(OP_PING, b"pp") +
              WS.frame(OP_BIN, b"b" * 130) +
              WS.frame(OP_TEXT, "\u20ac".encode()[:2], fin=False) +
              WS.frame(OP_PING, b"") + WS.frame(OP_CONT, "\u20ac".encode()[2:]))
    want = [(True, OP_TEXT, b"abc"), (True, OP_PONG, b"pp"),
            (True, OP_BIN, b"b" * 130), (True, OP_PONG, b""),
            (True, OP_TEXT, "\u20ac".encode())]
    bad = []
    for k in range(1, len(stream)):
        c = srv.ws("/echo")
        c.send_raw(stream[:k])
        time.sleep(0.002)       # shapes the input into two reads; asserts nothing
        c.send_raw(stream[k:])
        got = n_frames(c, len(want))
        # Pongs may overtake echoes (control frames jump the queue), so
        # data and control are each compared in order.
        if [f for f in got if f[1] != OP_PONG] != \
                [f for f in want if f[1] != OP_PONG] or \
                [f for f in got if f[1] == OP_PONG] != \
                [f for f in want if f[1] == OP_PONG]:
            bad.append((k, got))
        c.close()
    check("1: frame stream split at each of %d points" % (len(stream) - 1),
          not bad, repr(bad[:2]))


# ---- 2 ping/pong ------------------------------------------------------------

def cat2_pings(srv):
    c = srv.ws("/echo")
    echo(c, OP_PING, b"", "2: empty ping -> empty pong")
    echo(c, OP_PING, b"Hello, world!", "2: ping text payload echoed")
    echo(c, OP_PING, bytes([0, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0, 0xff]),
         "2: ping binary payload echoed")
    echo(c, OP_PING, b"\xfe" * 125, "2: ping with 125 bytes")
    send_chunked(c, WS.frame(OP_PING, b"\xfe" * 125), 1)
    expect_echo(c, OP_PONG, b"\xfe" * 125, "2: 125-byte ping in 1-byte writes")

    c.send(OP_PONG, b"")
    c.send(OP_PONG, b"unsolicited")
    echo(c, OP_TEXT, b"after pongs", "2: unsolicited pongs ignored")
    c.send(OP_PONG, b"unsolicited")
    echo(c, OP_PING, b"answer me", "2: unsolicited pong then ping -> pong")

    c.send_raw(b"".join(WS.frame(OP_PING, b"ping %d" % i) for i in range(10)))
    got = n_frames(c, 10)
    check("2: 10 pings -> 10 pongs in order",
          got == [(True, OP_PONG, b"ping %d" % i) for i in range(10)], repr(got))
    send_chunked(c, b"".join(WS.frame(OP_PING, b"chunk %d" % i)
                             for i in range(10)), 1)
    got = n_frames(c, 10)
    check("2: 10 pings in 1-byte writes -> 10 pongs in order",
          got == [(True, OP_PONG, b"chunk %d" % i) for i in range(10)], repr(got))
    c.close()

    c = srv.ws("/echo")
    c.send(OP_PING, b"\xfe" * 126)
    expect_fail(c, 1002, "2: ping with 126 bytes")
    c = srv.ws("/echo")
    c.send(OP_PING, b"frag", fin=False)
    expect_fail(c, 1002, "2: fragmented ping (FIN=0)")
    c = srv.ws("/echo")
    c.send(OP_PONG, b"frag", fin=False)
    expect_fail(c, 1002, "2: fragmented pong (FIN=0)")


# ---- 3 reserved bits --------------------------------------------------------

def cat3_rsv(srv):
    cases = [  # (name, rsv, opcode, echo first)
        ("RSV1 text", 4, OP_TEXT, False), ("RSV2 text", 2, OP_TEXT, True),
        ("RSV3 text", 1, OP_TEXT, True), ("RSV1+2 text", 6, OP_TEXT, True),
        ("RSV1+3 binary", 5, OP_BIN, False), ("RSV2+3 ping", 3, OP_PING, False),
        ("RSV1+2+3 close", 7, OP_CLOSE, False), ("RSV1 binary", 4, OP_BIN, True),
    ]
    for name, rsv, op, first in cases:
        c = srv.ws("/echo")
        if first:
            echo(c, OP_TEXT, b"valid", "3: echo before %s" % name)
        c.send_raw(WS.frame(op, b"Hello" if op != OP_CLOSE else b"", rsv=rsv) +
                   WS.frame(OP_PING, b"must not be answered"))
        expect_fail(c, 1002, "3: %s" % name)


# ---- 4 opcodes --------------------------------------------------------------

def cat4_opcodes(srv):
    for op in list(range(3, 8)) + list(range(11, 16)):
        c = srv.ws("/echo")
        c.send(op, b"")
        expect_fail(c, 1002, "4: reserved opcode %d" % op)
    for op in (5, 13):
        c = srv.ws("/echo")
        echo(c, OP_TEXT, b"Hello, world!", "4: echo before opcode %d" % op)
        c.send_raw(WS.frame(op, b"reserved with payload") +
                   WS.frame(OP_PING, b""))
        expect_fail(c, 1002, "4: reserved opcode %d after echo" % op)


# ---- 5 fragmentation --------------------------------------------------------

def cat5_fragments(srv):
    c = srv.ws("/echo")
    c.send(OP_TEXT, b"fragment1", fin=False)
    c.send(OP_CONT, b"fragment2")
    expect_echo(c, OP_TEXT, b"fragment1fragment2", "5: text in 2 fragments")
    c.send(OP_BIN, b"\x00\x01", fin=False)
    c.send(OP_CONT, b"\x02", fin=False)
    c.send(OP_CONT, b"\x03")
    expect_echo(c, OP_BIN, b"\x00\x01\x02\x03", "5: binary in 3 fragments")

    c.send(OP_TEXT, b"frag1 ", fin=False)
    c.send(OP_PING, b"inside")
    c.send(OP_CONT, b"frag2 ", fin=False)
    c.send(OP_PONG, b"unsolicited inside")
    c.send(OP_CONT, b"frag3")
    expect_echo(c, OP_PONG, b"inside", "5: pong for a ping between fragments")
    expect_echo(c, OP_TEXT, b"frag1 frag2 frag3",
                "5: text with control frames between")

    text = "1-byte fragments: \u00b5\u00df\u20ac\U0001f600".encode()
    c.send_raw(fragments(OP_TEXT, text, 1))
    expect_echo(c, OP_TEXT, text, "5: text in 1-byte fragments (UTF-8 split)")
    c.send_raw(fragments(OP_BIN, bytes(range(50)), 1))
    expect_echo(c, OP_BIN, bytes(range(50)), "5: binary in 1-byte fragments")
    c.send(OP_TEXT, b"", fin=False)
    c.send(OP_CONT, b"", fin=False)
    c.send(OP_CONT, b"")
    expect_echo(c, OP_TEXT, b"", "5: empty fragments")
    c.close()

    bad = [
        ("continuation without start (FIN=1)", [WS.frame(OP_CONT, b"orphan")]),
        ("continuation without start (FIN=0)",
         [WS.frame(OP_CONT, b"orphan", fin=False)]),
        ("text inside fragmented text", [WS.frame(OP_TEXT, b"a", fin=False),
                                         WS.frame(OP_TEXT, b"b")]),
        ("binary inside fragmented text", [WS.frame(OP_TEXT, b"a", fin=False),
                                           WS.frame(OP_BIN, b"b", fin=False)]),
    ]
    for name, frames in bad:
        c = srv.ws("/echo")
        c.send_raw(b"".join(frames))
        expect_fail(c, 1002, "5: %s" % name)

    # Autobahn 5.15: a whole message, then an orphan continuation, in one
    # write.  Strict: "ab" is echoed before the close; dropping it is
    # allowed (NON-STRICT), so it is noted rather than counted.
    c = srv.ws("/echo")
    c.send_raw(WS.frame(OP_TEXT, b"a", fin=False) + WS.frame(OP_CONT, b"b") +
               WS.frame(OP_CONT, b"c"))
    seen, code = frames_until_close(c)
    check("5: orphan continuation after a whole message: close 1002",
          code == 1002, "got %r" % code)
    check("5: orphan continuation: then nothing but TCP EOF",
          rest_until_eof(c) == b"")
    if seen != [(OP_TEXT, b"ab")]:
        note("5: orphan continuation after a whole message (NON-STRICT)",
             "echo of the whole message before it was dropped; got %r" % seen)
    c.close()


# ---- 6 UTF-8 ----------------------------------------------------------------

VALID_UTF8 = [
    b"", b"Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc\xc3\xa0\xc3\xa1-UTF-8!!",
    "\u03ba\u1f79\u03c3\u03bc\u03b5".encode(),
    b"\x00", b"\xc2\x80", b"\xe0\xa0\x80", b"\xf0\x90\x80\x80",     # first
    b"\x7f", b"\xdf\xbf", b"\xef\xbf\xbf", b"\xf4\x8f\xbf\xbf",     # last
    b"\xed\x9f\xbf", b"\xee\x80\x80", b"\xef\xbf\xbd", b"\xf3\xbf\xbf\xbf",
    b"\xef\xbf\xbe", b"\xf0\x9f\xbf\xbe", b"\xf4\x8f\xbf\xbe",     # nonchars
]

INVALID_UTF8 = [
    b"\xc0\xaf", b"\xe0\x80\xaf", b"\xf0\x80\x80\xaf", b"\xc1\xbf",  # overlong
    b"\xe0\x9f\xbf", b"\xf0\x8f\xbf\xbf", b"\xc0\x80", b"\xe0\x80\x80",
    b"\xed\xa0\x80", b"\xed\xad\xbf", b"\xed\xaf\xbf", b"\xed\xb0\x80",  # UTF-16
    b"\xed\xbf\xbf", b"\xed\xa0\x80\xed\xb0\x80",
    b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80", b"\xf7\xbf\xbf\xbf",   # > 10FFFF
    b"\xf8\x88\x80\x80\x80", b"\xfc\x84\x80\x80\x80\x80",
    b"\x80", b"\xbf", b"\x80\xbf\x80", b"\xc0 ", b"\xe0 ", b"\xf0 ",  # strays
    b"\xc2", b"\xe0\xa0", b"\xf0\x90\x80", b"\xdf", b"\xef\xbf",      # truncated
    b"\xf4\x8f\xbf", b"\xe2\x82", b"\xfe", b"\xff", b"\xfe\xfe\xff\xff",
    "\u03ba\u1f79\u03c3\u03bc\u03b5".encode() + b"\xed\xa0\x80edited",
]


def boundary_sweep():
    """Lead byte x second byte around every range edge; verdict by Python."""
    out = []
    for lead in (0xc1, 0xc2, 0xdf, 0xe0, 0xe1, 0xec, 0xed, 0xee, 0xef, 0xf0,
                 0xf1, 0xf3, 0xf4, 0xf5):
        need = 1 if lead < 0xe0 else 2 if lead < 0xf0 else 3
        for second in (0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0):
            out.append(b"a" + bytes([lead, second]) + b"\x80" * (need - 1) + b"z")
    return out


def cat6_utf8(srv):
    samples = VALID_UTF8 + INVALID_UTF8 + boundary_sweep()
    good = [s for s in samples if is_utf8(s)]
    bad = [s for s in samples if not is_utf8(s)]
    check("6: self-test of the sample lists",
          all(is_utf8(s) for s in VALID_UTF8) and
          not any(is_utf8(s) for s in INVALID_UTF8))

    c = srv.ws("/echo")
    for s in good:
        echo(c, OP_TEXT, s, "6: valid %r in one frame" % s)
        c.send_raw(fragments(OP_TEXT, s, 1))
        expect_echo(c, OP_TEXT, s, "6: valid %r in 1-byte fragments" % s)
    c.close()
    for s in bad:
        c = srv.ws("/echo")
        c.send(OP_TEXT, s)
        expect_fail(c, 1007, "6: invalid %r in one frame" % s)
        c = srv.ws("/echo")
        c.send_raw(fragments(OP_TEXT, s, 1))
        expect_fail(c, 1007, "6: invalid %r in 1-byte fragments" % s)

    # Fail fast (RFC 6455 §8.1): the rest of the message never comes.
    c = srv.ws("/echo")
    c.send(OP_TEXT, "\u03ba\u1f79\u03c3\u03bc\u03b5".encode() +
           b"\xf4\x90\x80\x80", fin=False)
    expect_fail(c, 1007, "6: fail fast on an invalid first fragment")
    c = srv.ws("/echo")
    c.send(OP_TEXT, "\u03ba\u1f79\u03c3\u03bc\u03b5".encode(), fin=False)
    c.send(OP_CONT, b"\xed\xa0\x80edited", fin=False)
    expect_fail(c, 1007, "6: fail fast on an invalid second fragment")
    c = srv.ws("/echo")
    c.send(OP_TEXT, b"abc\xed", fin=False)
    c.send(OP_CONT, b"\xa0\x80", fin=False)
    expect_fail(c, 1007, "6: fail fast on a surrogate split across fragments")
    c = srv.ws("/echo")
    # One frame announcing 100 bytes; only the invalid first 10 are sent.
    f = WS.frame(OP_TEXT, b"abcd\xf4\x90\x80\x80ef" + b"g" * 90)
    c.send_raw(f[:6 + 10])
    expect_fail(c, 1007, "6: fail fast inside a frame still arriving")
    c = srv.ws("/echo")
    c.send(OP_TEXT, b"truncated \xe2\x82", fin=False)
    c.send(OP_CONT, b"")
    expect_fail(c, 1007, "6: message ending inside a sequence")


# ---- 7 close handling -------------------------------------------------------

def close_with(srv, payload, want, name):
    c = srv.ws("/echo")
    c.send(OP_CLOSE, payload)
    expect_fail(c, want, "7: " + name)


def cat7_close(srv):
    c = srv.ws("/echo")
    echo(c, OP_TEXT, b"Hello", "7: echo before close")
    c.send(OP_CLOSE, b"")
    f = next_frame(c)
    check("7: empty close -> empty close", f == (True, OP_CLOSE, b""), repr(f))
    check("7: empty close: then nothing but TCP EOF",
          rest_until_eof(c) == b"")
    c.close()

    close_with(srv, struct.pack("!H", 1000) + b"bye", 1000,
               "code 1000 with reason")
    close_with(srv, struct.pack("!H", 1000) + b"r" * 123, 1000,
               "code 1000 with a 123-byte reason")
    close_with(srv, b"\x03", 1002, "1-byte close payload")
    close_with(srv, struct.pack("!H", 1000) + b"r" * 124, 1002,
               "close payload of 126 bytes")
    for code in (0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999,
                 5000, 65535):
        close_with(srv, struct.pack("!H", code), 1002, "invalid code %d" % code)
    for code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012,
                 1013, 1014, 3000, 3999, 4000, 4999):
        close_with(srv, struct.pack("!H", code), code, "valid code %d" % code)
    close_with(srv, struct.pack("!H", 1000) + b"\xce\xba\xed\xa0\x80", 1007,
               "close reason with invalid UTF-8")
    close_with(srv, struct.pack("!H", 1000) + b"\xe2\x82", 1007,
               "close reason with truncated UTF-8")
    close_with(srv, struct.pack("!H", 1000) + "\u00b5\u20ac".encode(), 1000,
               "close reason with valid UTF-8")

    c = srv.ws("/echo")
    c.send(OP_CLOSE, struct.pack("!H", 1000), fin=False)
    expect_fail(c, 1002, "7: fragmented close (FIN=0)")

    # Nothing after our close frame is answered: not text, not ping.
    c = srv.ws("/echo")
    c.send_raw(WS.frame(OP_CLOSE, struct.pack("!H", 1000)) +
               WS.frame(OP_TEXT, b"after close") + WS.frame(OP_PING, b"x"))
    expect_fail(c, 1000, "7: data and ping after close ignored")
    c = srv.ws("/echo")
    c.send(OP_TEXT, b"frag", fin=False)
    c.send(OP_CLOSE, struct.pack("!H", 1000))
    c.send(OP_CONT, b"ment")
    expect_fail(c, 1000, "7: close inside a fragmented message")
    c = srv.ws("/echo")
    c.send(OP_CLOSE, struct.pack("!H", 1000))
    c.send(OP_CLOSE, struct.pack("!H", 1000))
    expect_fail(c, 1000, "7: two closes get one reply")

    # Autobahn 7.1.6 (informational): a message and a close in one write.
    c = srv.ws("/echo")
    c.send_raw(WS.frame(OP_TEXT, b"m" * 262144) +
               WS.frame(OP_CLOSE, struct.pack("!H", 1000)) +
               WS.frame(OP_PING, b""))
    seen, code = frames_until_close(c)
    check("7: message then close in one write: close 1000", code == 1000,
          "got %r" % code)
    check("7: message then close: no pong after close",
          all(op != OP_PONG for op, _ in seen), repr(seen)[:80])
    if [op for op, _ in seen] != [OP_TEXT]:
        note("7: message then close in one write (INFORMATIONAL)",
             "the echo queued before the close was dropped; frames seen %r"
             % [(op, len(p)) for op, p in seen])
    c.close()


# ---- 9 large messages -------------------------------------------------------

def big_echo(c, op, payload, name, frag=None):
    if frag:
        c.send_raw(fragments(op, payload, frag))
    else:
        c.send(op, payload)
    try:
        f = recv_big(c, timeout=60)
    except (Closed, socket.timeout, OSError) as e:
        f = None
        err = repr(e)
    if f is None:
        check(name, False, "no echo: %s" % err)
        return
    got = "fin=%d op=%d len=%d" % (f[0], f[1], len(f[2]))
    if f[1] == OP_CLOSE:
        got += " close %r" % f[2][:40]
    check(name, f[0] and f[1] == op and f[2] == payload, got)


def cat9_large(srv):
    c = srv.ws("/echo")
    text = (b"0123456789abcdef" * 65536)[:MAX_MESSAGE]
    big_echo(c, OP_TEXT, text, "9: 1 MiB text in one frame")
    data = os.urandom(MAX_MESSAGE)
    big_echo(c, OP_BIN, data, "9: 1 MiB binary in one frame")
    big_echo(c, OP_TEXT, text, "9: 1 MiB text in 64 KiB fragments", 65536)
    big_echo(c, OP_BIN, data, "9: 1 MiB binary in 1000-byte fragments", 1000)
    c.close()
    with Server("--echo", "--max-message", "16M") as big:
        c = big.ws("/echo")
        data = os.urandom(16 << 20)
        big_echo(c, OP_BIN, data, "9: 16 MiB binary in one frame "
                 "(--max-message 16M)")
        c.close()
        c = big.ws("/echo")
        big_echo(c, OP_BIN, data, "9: 16 MiB binary in 64 KiB fragments "
                 "(--max-message 16M)", 65536)
        c.close()


# ---- 10 limits --------------------------------------------------------------

def header_only(op, length, fin=True, mask=True):
    """A frame header announcing length bytes, without its payload."""
    return WS.frame(op, b"", fin=fin, mask=mask, length=length)


def cat10_limits(srv):
    c = srv.ws("/echo")
    c.send_raw(header_only(OP_BIN, MAX_MESSAGE + 1))
    expect_fail(c, 1009, "10: header announcing max+1 bytes")
    c = srv.ws("/echo")
    c.send_raw(header_only(OP_TEXT, 1 << 40))
    expect_fail(c, 1009, "10: header announcing 1 TiB")
    c = srv.ws("/echo")
    c.send(OP_BIN, b"\0" * (MAX_MESSAGE - 10), fin=False)
    c.send_raw(header_only(OP_CONT, 11))
    expect_fail(c, 1009, "10: fragmented message over max by one byte")
    c = srv.ws("/echo")
    c.send(OP_BIN, b"\0" * (MAX_MESSAGE - 10), fin=False)
    c.send(OP_PING, b"in between")
    c.send(OP_CONT, b"\0" * 10)
    expect_echo(c, OP_PONG, b"in between", "10: ping inside a max-size message")
    f = recv_big(c)
    check("10: fragmented message of exactly max echoed",
          f[1] == OP_BIN and len(f[2]) == MAX_MESSAGE,
          "op %d len %d" % (f[1], len(f[2])))
    c.close()

    c = srv.ws("/echo")
    c.send(OP_TEXT, b"not masked", mask=False)
    expect_fail(c, 1002, "10: unmasked client frame")
    c = srv.ws("/echo")
    echo(c, OP_TEXT, b"masked", "10: echo before an unmasked ping")
    c.send(OP_PING, b"", mask=False)
    expect_fail(c, 1002, "10: unmasked client ping")
    c = srv.ws("/echo")
    c.send_raw(bytes([0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1]) + os.urandom(4))
    expect_fail(c, 1002, "10: 64-bit length with the high bit set")


# ---- strict order: replies before the close ---------------------------------

def strict_order(srv):
    """The Autobahn cases graded NON-STRICT when a failure drops the
    replies already queued: the valid message and the bad frame arrive in
    one packet, and the echo must still come before the close."""
    hello = WS.frame(OP_TEXT, b"Hello, world!")
    cases = [  # (Autobahn case, bytes after the valid message, close code)
        ("3.2 RSV2 text", WS.frame(OP_TEXT, b"Hello", rsv=2), 1002),
        ("3.3 RSV1+2 text", WS.frame(OP_TEXT, b"Hello", rsv=6), 1002),
        ("4.1.3 opcode 5", WS.frame(5, b""), 1002),
        ("4.1.4 opcode 6 with payload", WS.frame(6, b"reserved"), 1002),
        ("4.2.3 opcode 13", WS.frame(13, b""), 1002),
        ("4.2.4 opcode 14 with payload", WS.frame(14, b"reserved"), 1002),
        ("5.15 continuation of nothing", WS.frame(OP_TEXT, b"frag1",
         fin=False) + WS.frame(OP_CONT, b"frag2") +
         WS.frame(OP_CONT, b"frag3", fin=False) + WS.frame(OP_CONT, b"x"),
         1002),
        ("7.1.6 message then close", WS.frame(OP_CLOSE, b"\x03\xe8"), 1000),
    ]
    for name, bad, code in cases:
        c = srv.ws("/echo")
        c.send_raw(hello + bad + WS.frame(OP_PING, b"after"))
        seen, got = frames_until_close(c)
        want = [(OP_TEXT, b"Hello, world!")]
        if name.startswith("5.15"):
            want.append((OP_TEXT, b"frag1frag2"))
        check("strict %s: replies, then close %d" % (name, code),
              seen == want and got == code, "%r %r" % (seen, got))
        c.close()
    # 7.1.6 at size: a 256 KiB message, then close, then ping.
    c = srv.ws("/echo")
    big = os.urandom(1 << 18)
    c.send_raw(WS.frame(OP_BIN, big) + WS.frame(OP_CLOSE, b"\x03\xe8") +
               WS.frame(OP_PING, b"after"))
    seen, got = frames_until_close(c)
    check("strict 7.1.6 256 KiB: the echo, then close 1000",
          seen == [(OP_BIN, big)] and got == 1000,
          "%d frames, close %r" % (len(seen), got))
    c.close()


def main():
    with Server("--echo") as srv:
        run(handshake, srv)
        run(cat1_framing, srv)
        run(cat2_pings, srv)
        run(cat3_rsv, srv)
        run(cat4_opcodes, srv)
        run(cat5_fragments, srv)
        run(cat6_utf8, srv)
        run(cat7_close, srv)
        run(cat9_large, srv)
        run(cat10_limits, srv)
        run(strict_order, srv)
        check("server still alive after the suite", srv.proc.poll() is None)
    done()


if __name__ == "__main__":
    main()
