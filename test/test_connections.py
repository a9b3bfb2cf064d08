"""test_connections - GET /api/connections: who is connected, from where.

Each WebSocket and event stream open now, newest first, paged: its id,
kind, TLS, peer address, token subject, session, groups, bytes queued, age
and the round trip of the last ping it answered (null before one).  /echo
connections have no hub state and are not listed.  Who may ask: the API
key when set; else, with tokens on, a token granting every group; with
neither, anyone who passes the Host check.
"""
import base64
import hashlib
import hmac
import json
import time

from wsdtest import (OP_PING, OP_PONG, Server, check, done, http_json,
                     wait_for)

SECRET = "s" * 32
KEY = "k" * 32


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def token(groups, sub="alice"):
    now = int(time.time())
    claims = {"sub": sub, "iat": now, "exp": now + 600, "groups": groups}
    signing = b64u(json.dumps({"alg": "HS256"}).encode()) + "." + \
        b64u(json.dumps(claims).encode())
    sig = hmac.new(SECRET.encode(), signing.encode(), hashlib.sha256).digest()
    return signing + "." + b64u(sig)


def listing(srv, query="", headers=None):
    return http_json(srv.port, "GET", "/api/connections" + query,
                     headers=headers)


def sse_open(port, query):
    import socket
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    s.sendall(("GET /sse?%s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % query)
              .encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(4096)
    return s


def listed():
    with Server("--no-session-events", "--echo",
                "--ping-interval", "0.3") as srv:
        st, b = listing(srv)
        check("nobody connected: an empty list", st == 200 and
              b == {"connections": [], "total": 0}, repr(b))
        echo = srv.ws("/echo")
        w = srv.ws("/ws/sessions/s1")
        w.send_json({"type": "subscribe", "group": "extra", "id": 1})
        w.recv_until(lambda m: m.get("id") == 1 or m.get("group") == "extra")
        s = sse_open(srv.port, "groups=a,b")
        st, b = listing(srv)
        conns = b.get("connections", []) if st == 200 else []
        check("a WebSocket and a stream, newest first; /echo not listed",
              b.get("total") == 2 and [c["kind"] for c in conns] ==
              ["sse", "websocket"], repr(b))
        if len(conns) == 2:
            e, ws = conns
            check("the stream's groups", e["groups"] == ["a", "b"] and
                  e["session"] is None, repr(e))
            check("the WebSocket's groups and session",
                  ws["groups"] == ["session:s1", "extra"] and
                  ws["session"] == "s1", repr(ws))
            check("peer is 127.0.0.1:PORT",
                  all(c["peer"].startswith("127.0.0.1:") for c in conns),
                  repr(conns))
            check("no token: subject null; plain TCP",
                  all(c["subject"] is None and c["tls"] is False
                      for c in conns), repr(conns))
            check("queued, age_s and ids are numbers",
                  all(isinstance(c[k], int) for c in conns
                      for k in ("queued", "age_s", "id")) and
                  e["id"] > ws["id"], repr(conns))
            check("no ping answered yet: rtt_ms null",
                  ws["rtt_ms"] is None, repr(ws))
        # A silent client is pinged; answering gives a round trip.
        fin, op, data = w.recv(timeout=20)
        while op != OP_PING:
            fin, op, data = w.recv(timeout=20)
        w.send(OP_PONG, data)
        ok = wait_for(lambda: any(
            c["kind"] == "websocket" and isinstance(c["rtt_ms"], int)
            for c in listing(srv)[1]["connections"]))
        check("after a pong: rtt_ms is a number", ok,
              repr(listing(srv)[1]))
        st, b = listing(srv, "?offset=1&limit=1")
        check("paging: offset 1, limit 1 is the older one, total 2",
              st == 200 and b["total"] == 2 and
              [c["kind"] for c in b["connections"]] == ["websocket"],
              repr(b))
        st, b = listing(srv, "?limit=x")
        check("a bad limit -> 400", st == 400, repr(b))
        s.close()
        w.close()
        echo.close()
        check("closed ones leave the list", wait_for(
            lambda: listing(srv)[1].get("total") == 0))


def rights():
    with Server("--no-session-events", "--api-key", KEY) as srv:
        st, b = listing(srv)
        check("with --api-key, no key -> 401", st == 401, repr(b))
        st, b = listing(srv, headers={"Authorization": "Bearer " + KEY})
        check("... with it -> 200", st == 200, repr(b))
    with Server("--no-session-events", "--token-secret", SECRET) as srv:
        w = srv.ws("/ws/a?token=" + token(["a"], sub="bob"))
        st, b = listing(srv)
        check("tokens on, no token -> 401", st == 401, repr(b))
        st, b = listing(srv, headers={"Authorization": "Bearer " +
                                      token(["a"])})
        check("a token not granting * -> 403", st == 403, repr(b))
        st, b = listing(srv, headers={"Authorization": "Bearer " +
                                      token(["*"])})
        check("a token granting * -> 200, with each token's subject",
              st == 200 and [c["subject"] for c in b["connections"]] ==
              ["bob"], repr(b))
        w.close()


for t in (listed, rights):
    t0 = time.monotonic()
    try:
        t()
    except Exception as e:
        import traceback
        traceback.print_exc()
        check("%s ran to its end" % t.__name__, False, repr(e))
    print("%s: %.1f s" % (t.__name__, time.monotonic() - t0), flush=True)
done()
