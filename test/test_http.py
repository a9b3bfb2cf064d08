"""HTTP/1.1 framing over loopback: pipelining, bodies followed by more
requests in the same packet, and the bound on answers a client does not
read.
"""
import json
import socket

from wsdtest import Server, check, done, http_json, wait_for, DEADLINE


def read_responses(s, n):
    """Read n whole responses (Content-Length bodies) from socket s."""
    data, out = b"", []
    s.settimeout(DEADLINE)
    while len(out) < n:
        while b"\r\n\r\n" not in data:
            d = s.recv(65536)
            if not d:
                return out
            data += d
        head, _, rest = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v)
        while len(rest) < length:
            d = s.recv(65536)
            if not d:
                return out
            rest += d
        out.append((int(head.split()[1]), rest[:length]))
        data = rest[length:]
    return out


def post(group, body):
    return (b"POST /api/groups/%s/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (group, len(body), body))


def test_body_then_pipelined():
    """A body of nearly --max-body, then 300 more requests (more than the
    head limit's worth), all in one write: nothing after the body may be
    lost."""
    with Server("--max-body", "1M") as s:
        big = json.dumps({"type": "t", "data": "x" * (1024 * 1024 - 100)})
        big = big.encode()
        raw = post(b"g", big) + b"".join(post(b"g", b'{"type":"u%d"}' % i)
                                         for i in range(300))
        raw += b"GET /api/groups/g/events?since=1&limit=1000 HTTP/1.1\r\n"
        raw += b"Host: 127.0.0.1\r\n\r\n"
        c = socket.create_connection(("127.0.0.1", s.port), timeout=DEADLINE)
        c.sendall(raw)
        got = read_responses(c, 302)
        c.close()
        check("302 answers", [g[0] for g in got] == [202] * 301 + [200],
              [g[0] for g in got][-5:])
        if len(got) == 302:
            ev = json.loads(got[-1][1])["events"]
            check("every later event kept", [e["type"] for e in ev] ==
                  ["u%d" % i for i in range(300)], len(ev))


def test_pipelined_in_pieces():
    """Ten requests in one write, then the same split at odd places."""
    with Server() as s:
        raw = b"".join(post(b"p", b'{"type":"e%d"}' % i) for i in range(10))
        for step in (len(raw), 7, 1):
            c = socket.create_connection(("127.0.0.1", s.port),
                                         timeout=DEADLINE)
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for i in range(0, len(raw), step):
                c.sendall(raw[i:i + step])
            got = read_responses(c, 10)
            c.close()
            check("pipelined in pieces of %d" % step, len(got) == 10 and
                  all(g[0] == 202 for g in got), got[-1:])
        st, body = http_json(s.port, "GET", "/api/groups")
        seq = [g["seq"] for g in body["groups"] if g["group"] == "p"]
        check("all thirty published", seq == [30], body)


def test_unread_answers():
    """A client that pipelines without reading is cut off once its
    answers pass --send-queue; the server serves others meanwhile."""
    with Server("--send-queue", "64K") as s:
        c = socket.create_connection(("127.0.0.1", s.port), timeout=DEADLINE)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        req = b"GET /api/groups HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        cut = False
        try:
            for _ in range(20000):
                c.sendall(req * 50)
        except OSError:
            cut = True
        check("unread answers: connection cut", cut or
              wait_for(lambda: s.find("does not read its responses")))
        check("logged", wait_for(
            lambda: s.find("does not read its responses")))
        c.close()
        st, body = http_json(s.port, "GET", "/health")
        check("others still served", st == 200, st)


def test_dashboard_headers():
    """GET / serves the page with a CSP that allows exactly its own inline
    script and style, by hash, and nothing inline besides."""
    import base64
    import hashlib
    import re
    from wsdtest import http
    with Server() as s:
        st, h, body = http(s.port, "GET", "/")
        csp = h.get("content-security-policy", "")

        def digest(tag):
            m = re.search(rb"<%s>(.*?)</%s>" % (tag, tag), body, re.S)
            return "'sha256-%s'" % base64.b64encode(
                hashlib.sha256(m.group(1)).digest()).decode() if m else None
        check("dashboard: 200 text/html", st == 200 and
              h.get("content-type", "").startswith("text/html"), (st, h))
        check("dashboard: no-cache", h.get("cache-control") == "no-cache", h)
        check("dashboard: CSP has the script's hash, and its own origin "
              "for /wsd.js", "script-src 'self' %s;" % digest(b"script")
              in csp, csp)
        check("dashboard: CSP has the style's hash",
              "style-src %s;" % digest(b"style") in csp, csp)
        check("dashboard: nothing unsafe in the CSP", "unsafe" not in csp and
              "default-src 'none'" in csp and "connect-src 'self'" in csp,
              csp)
        check("dashboard: no external resources", not re.search(
            rb"(src|href)=\"(https?:)?//", body), body[:200])


if __name__ == "__main__":
    test_body_then_pipelined()
    test_pipelined_in_pieces()
    test_unread_answers()
    test_dashboard_headers()
    done()
