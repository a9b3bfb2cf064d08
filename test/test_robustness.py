"""test_robustness - abuse and limits, from outside.

Slow and oversized requests, clients that vanish mid-frame, SIGTERM with
clients connected, the connection limit, the server's pings, /health.
Every limit is tested at N and N+1; every wait has a generous deadline and
nothing asserts on speed.

    WSD=./wsd /usr/bin/python3 test/test_robustness.py
"""
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wsdtest import (DEADLINE, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT,  # noqa: E402
                     WS, Closed, Server, check, closed_by_server, done,
                     head_of, http, rst_close, status_of, wait_for)


# ---- helpers ----------------------------------------------------------------

def still_serving(srv, name):
    c = srv.ws("/echo")
    c.send(OP_TEXT, b"still here")
    check(name + ": server keeps serving",
          c.recv() == (True, OP_TEXT, b"still here"))
    c.close()


# ---- slowloris --------------------------------------------------------------

def slowloris():
    with Server("--echo", "--handshake-timeout", "1") as srv:
        c = WS(srv.port, connect_only=True)
        c.send_raw(b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        check("slowloris: trickled head closed after the timeout",
              closed_by_server(c.sock, trickle=b"X-Slow-Header: abcdef\r\n"))
        check("slowloris: no response sent", c.buf == b"")
        c.close()
        c = WS(srv.port, connect_only=True)
        check("slowloris: silent connection closed after the timeout",
              closed_by_server(c.sock))
        c.close()
        still_serving(srv, "slowloris")


# ---- header limits ----------------------------------------------------------

def header_limits():
    for n in (8192, 1024):
        args = ["--echo"] + (["--max-header", str(n)] if n != 8192 else [])
        with Server(*args) as srv:
            p = srv.port
            check("431: head of exactly %d bytes -> 101" % n,
                  status_of(p, head_of(p, size=n)) == 101)
            c = WS(p, connect_only=True)
            c.send_raw(head_of(p, size=n) + WS.frame(OP_TEXT, b"right behind"))
            c.read_until(b"\r\n\r\n")
            check("431: head of exactly %d bytes + a frame -> echo" % n,
                  c.recv() == (True, OP_TEXT, b"right behind"))
            c.close()
            check("431: head of %d bytes -> 431" % (n + 1),
                  status_of(p, head_of(p, size=n + 1)) == 431)
            # No blank line yet: N+1 bytes already decide it.
            check("431: %d bytes without a blank line -> 431" % (n + 1),
                  status_of(p, b"GET /echo HTTP/1.1\r\nX: " +
                            b"a" * (n + 1 - 23)) == 431)
            check("431: 100 KB head -> 431",
                  status_of(p, head_of(p, size=100000)) == 431)
            still_serving(srv, "431 at %d" % n)

    with Server("--echo") as srv:
        p = srv.port
        check("431: 64 header lines -> 101",
              status_of(p, head_of(p, nhdr=64)) == 101)
        check("431: 65 header lines -> 431",
              status_of(p, head_of(p, nhdr=65)) == 431)
        check("431: 500 header lines -> 431",
              status_of(p, head_of(p, nhdr=500)) == 431)


# ---- abrupt disconnects -----------------------------------------------------

def disconnects():
    with Server("--echo") as srv:
        p = srv.port
        bystander = srv.ws("/echo")
        for how, close in (("FIN", WS.close), ("RST", rst_close)):
            c = WS(p, connect_only=True)
            c.send_raw(b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgr")
            close(c)
            c = srv.ws("/echo")
            c.send_raw(WS.frame(OP_TEXT, b"x" * 1000)[:50])
            close(c)
            c = srv.ws("/echo")
            c.send_raw(WS.frame(OP_TEXT, b"part", fin=False))
            close(c)
            c = srv.ws("/echo")
            c.send_raw(WS.frame(OP_TEXT, b"x" * 1000)[:1])
            close(c)
            # Echo output still queued when the reader vanishes.
            c = srv.ws("/echo")
            for _ in range(4):
                c.send(OP_TEXT, b"y" * 1000000)
            close(c)
            still_serving(srv, "abrupt %s mid-handshake and mid-frame" % how)
            bystander.send(OP_TEXT, how.encode())
            check("disconnects: a client there throughout is served (%s)"
                  % how, bystander.recv() == (True, OP_TEXT, how.encode()))
        check("disconnects: server process alive", srv.proc.poll() is None)
        bystander.close()


# ---- a reader that does not read -------------------------------------------

def slow_reader():
    """SPEC: past --send-queue bytes queued, close 1013; others unharmed."""
    with Server("--echo", "--send-queue", "64K") as srv:
        c = srv.ws("/echo", rcvbuf=4096)
        frame = WS.frame(OP_TEXT, b"z" * 65536)
        try:
            for _ in range(256):    # 16 MiB: past the queue and the kernel's
                c.send_raw(frame)
        except OSError:
            pass                    # closed on us mid-flood: also fine
        code = c.recv_close()
        check("slow reader: closed with 1013", code == 1013, "got %r" % code)
        check("slow reader: TCP closed", c.expect_eof())
        c.close()
        still_serving(srv, "slow reader")


# ---- SIGTERM ----------------------------------------------------------------

def sigterm():
    srv = Server("--echo", "--drain", "2")
    clients = []
    try:
        clients = [srv.ws("/echo") for _ in range(3)]
        clients[2].send(OP_TEXT, b"half a message", fin=False)
        for c in clients[:2]:
            c.send(OP_TEXT, b"ready")
            c.recv()
        srv.proc.send_signal(signal.SIGTERM)
        for i, c in enumerate(clients):
            code = c.recv_close()
            check("SIGTERM: client %d gets close 1001" % i, code == 1001,
                  "got %r" % code)
        # Two answer the close, one stays silent: the drain still ends.
        for c in clients[:2]:
            c.send(OP_CLOSE, struct.pack("!H", 1001))
            check("SIGTERM: TCP closed after the close exchange",
                  c.expect_eof())
        try:
            rc = srv.proc.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            rc = "still running"
        check("SIGTERM: server exits 0 on its own within the drain", rc == 0,
              "rc=%r log=%s" % (rc, "".join(srv.log[-5:])))
        refused = False
        try:
            socket.create_connection(("127.0.0.1", srv.port), timeout=5).close()
        except OSError:
            refused = True
        check("SIGTERM: no longer accepting", refused)
    finally:
        for c in clients:
            c.close()
        srv.stop()


# ---- --max-connections ------------------------------------------------------

def max_connections():
    with Server("--echo", "--max-connections", "3") as srv:
        held = [srv.ws("/echo") for _ in range(3)]
        check("max-connections: 3 open", all(c.status == 101 for c in held))
        c = srv.ws("/echo")
        check("max-connections: the 4th gets 503", c.status == 503,
              "status %s" % c.status)
        c.close()
        check("max-connections: plain HTTP past the limit gets 503",
              http(srv.port, "GET", "/health")[0] == 503)
        held.pop().close()

        def room():
            c = srv.ws("/echo")
            ok = c.status == 101
            if ok:
                held.append(c)
            else:
                c.close()
            return ok
        check("max-connections: room again after one leaves", wait_for(room))
        for c in held:
            c.close()


# ---- server pings -----------------------------------------------------------

def pings():
    with Server("--echo", "--ping-interval", "0.3",
                "--ping-timeout", "1") as srv:
        silent = srv.ws("/echo")
        lively = srv.ws("/echo")
        # The lively client answers every ping for three ping timeouts.
        end = time.monotonic() + 3.0
        npings = 0
        alive = True
        while time.monotonic() < end:
            try:
                fin, op, data = lively.recv(max(0.05, end - time.monotonic()))
            except socket.timeout:
                break
            except (Closed, OSError):
                alive = False
                break
            if op == OP_PING:
                npings += 1
                lively.send(OP_PONG, data)
        check("ping: the server pings an idle client", npings >= 1,
              "%d pings" % npings)
        check("ping: a client answering pings is kept", alive)
        if alive:
            lively.send(OP_TEXT, b"alive")
            check("ping: and still echoes",
                  lively.recv_message() == (OP_TEXT, b"alive"))
        f = silent.recv()
        check("ping: the silent client got a ping", f[1] == OP_PING, repr(f))
        check("ping: the silent client is dropped (TCP closed)",
              silent.expect_eof())
        silent.close()
        lively.close()


# ---- /health ----------------------------------------------------------------

def health():
    with Server("--echo") as srv:
        c = srv.ws("/echo")
        status, hdrs, body = http(srv.port, "GET", "/health")
        check("health: 200", status == 200, "status %s" % status)
        check("health: JSON", hdrs.get("content-type", "").startswith(
            "application/json"), repr(hdrs))
        try:
            doc = json.loads(body)
        except ValueError:
            doc = {}
        check("health: status ok", doc.get("status") == "ok", repr(body))
        for k in ("connections", "sessions", "groups", "uptime_s"):
            check("health: has %s" % k, isinstance(doc.get(k), (int, float)),
                  repr(body))
        check("health: counts our open WebSocket",
              isinstance(doc.get("connections"), int) and
              doc["connections"] >= 1, repr(body))
        c.close()


def main():
    for category in (slowloris, header_limits, disconnects, slow_reader,
                     sigterm, max_connections, pings, health):
        try:
            category()
        except Exception as e:  # noqa: BLE001 - report and go on
            check("%s ran to its end" % category.__name__, False, repr(e))
    done()


if __name__ == "__main__":
    main()
