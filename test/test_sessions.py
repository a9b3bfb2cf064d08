"""Sessions over loopback: the session diff, realtime_update, the session
HTTP API and session lifetime through connections.

Every server runs with --tick 0.2; waits are "until a message arrives or
the deadline passes", never a fixed sleep.
"""
import json
import re
import socket
import time

from wsdtest import Server, check, done, http_json, wait_for, DEADLINE

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def session_events(mon, want, timeout=DEADLINE):
    """Collect session_event messages until want(events) is true."""
    got = []
    try:
        while not want(got):
            m = mon.recv_json(timeout)
            if m["type"] == "session_event":
                got.append(m)
    except Exception as e:  # deadline or closed: the caller checks got
        check("session_events wait (%s)" % type(e).__name__, False, repr(got))
    return got


def quiet_ticks(mon, n):
    """Read n realtime_updates; return the session_events seen among them."""
    seen = []
    ticks = 0
    while ticks < n:
        m = mon.recv_json()
        if m["type"] == "realtime_update":
            ticks += 1
        elif m["type"] == "session_event":
            seen.append(m)
    return seen


def test_diff_events():
    with Server("--tick", "0.2") as s:
        mon = s.ws("/ws/monitor")
        st, body = http_json(s.port, "POST", "/api/sessions",
                             {"id": "s1", "metadata": {"user": "ada"}})
        check("create 201", st == 201 and body == {"id": "s1"}, (st, body))
        ev = session_events(mon, lambda g: len(g) >= 1)
        if ev:
            e = ev[0]
            check("created: envelope", e["event_type"] == "session_created"
                  and e["group"] == "monitor" and isinstance(e["seq"], int)
                  and TS.match(e["timestamp"]), e)
            check("created: data", e["data"] == {
                "current_count": 1, "previous_count": 0, "delta": 1,
                "time_since_last_event": None, "sessions": ["s1"]}, e)
        check("no change, no event", quiet_ticks(mon, 4) == [])

        http_json(s.port, "DELETE", "/api/sessions/s1")
        ev = session_events(mon, lambda g: len(g) >= 1)
        if ev:
            d = ev[0]["data"]
            check("destroyed", ev[0]["event_type"] == "session_destroyed" and
                  d["sessions"] == ["s1"] and d["current_count"] == 0 and
                  d["previous_count"] == 1 and d["delta"] == 1, ev[0])
            check("time_since_last_event is a number",
                  isinstance(d["time_since_last_event"], (int, float)) and
                  d["time_since_last_event"] >= 0, d)

        # A session that comes and goes, and one destroyed while another
        # is created: never netted away, whatever ticks they fall in.
        http_json(s.port, "POST", "/api/sessions", {"id": "keep"})
        session_events(mon, lambda g: len(g) >= 1)
        http_json(s.port, "POST", "/api/sessions", {"id": "flash"})
        http_json(s.port, "DELETE", "/api/sessions/flash")
        http_json(s.port, "DELETE", "/api/sessions/keep")
        http_json(s.port, "POST", "/api/sessions", {"id": "next"})
        def complete(g):
            c = {i for e in g if e["event_type"] == "session_created"
                 for i in e["data"]["sessions"]}
            d = {i for e in g if e["event_type"] == "session_destroyed"
                 for i in e["data"]["sessions"]}
            return {"flash", "next"} <= c and {"flash", "keep"} <= d
        ev = session_events(mon, complete)
        counts_ok = True
        live = 1            # "keep" was live before this burst
        for e in ev:
            d = e["data"]
            n = len(d["sessions"])
            sign = 1 if e["event_type"] == "session_created" else -1
            counts_ok &= d["previous_count"] == live
            counts_ok &= d["current_count"] == live + sign * n
            counts_ok &= d["delta"] == n        # a size; the sign is the type
            live = d["current_count"]
        check("burst: every id reported", complete(ev), ev)
        check("burst: counts add up event by event", counts_ok, ev)
        check("burst: final count is the live count", live == 1, ev)
        st, body = http_json(s.port, "GET", "/api/sessions/count")
        check("count endpoint", st == 200 and body == {"active_sessions": 1},
              body)


def test_realtime_update():
    with Server("--tick", "0.2") as s:
        mon = s.ws("/ws/monitor")
        other = s.ws("/ws/events")
        m = mon.recv_until(lambda x: x["type"] == "realtime_update")
        d = m["data"]
        check("realtime_update fields",
              set(d) >= {"connections", "groups", "sessions", "messages_in",
                         "messages_out", "uptime_s"} and
              set(d["sessions"]) == {"active_count", "total_count"}, d)
        check("realtime_update counts connections", d["connections"] == 2, d)
        check("realtime_update envelope", m["group"] == "monitor" and
              TS.match(m["timestamp"]), m)
        other.close()


def test_api():
    with Server("--tick", "0.2", "--max-sessions", "30",
                "--max-metadata", "100") as s:
        for i in range(25):
            st, _ = http_json(s.port, "POST", "/api/sessions",
                              {"id": "p%02d" % i})
            if st != 201:
                check("create p%02d" % i, False, st)
        st, body = http_json(s.port, "GET", "/api/sessions?offset=10&limit=5")
        ids = [x["id"] for x in body["sessions"]] if st == 200 else None
        check("paging in creation order", ids == ["p%02d" % i
              for i in range(10, 15)] and body["total"] == 25, body)
        first = body["sessions"][0] if st == 200 else {}
        check("session fields", TS.match(first.get("created_at", "")) and
              first.get("connections") == 0 and
              first.get("metadata") == {}, first)
        st, body = http_json(s.port, "GET", "/api/sessions?offset=24&limit=10")
        check("last page", st == 200 and len(body["sessions"]) == 1, body)
        st, body = http_json(s.port, "GET", "/api/sessions?offset=x")
        check("bad offset 400", st == 400, (st, body))
        st, body = http_json(s.port, "POST", "/api/sessions", {"id": "p00"})
        check("duplicate 409", st == 409 and body["error"] == "conflict",
              (st, body))
        st, body = http_json(s.port, "POST", "/api/sessions", {})
        check("random id", st == 201 and re.match(r"^[0-9a-f]{16}$",
                                                  body["id"]), body)
        st, body = http_json(s.port, "POST", "/api/sessions", {"id": "a b"})
        check("bad id 400", st == 400, (st, body))
        st, body = http_json(s.port, "POST", "/api/sessions",
                             {"id": "m1", "metadata": {"k": "x" * 80}})
        check("metadata at the limit is taken", st == 201, (st, body))
        st, body = http_json(s.port, "POST", "/api/sessions",
                             {"id": "m2", "metadata": {"k": "x" * 120}})
        check("metadata over the limit 413", st == 413, (st, body))
        st, body = http_json(s.port, "GET", "/api/sessions?offset=26&limit=1")
        check("metadata kept", body["sessions"][0]["metadata"] ==
              {"k": "x" * 80}, body)
        st, _ = http_json(s.port, "DELETE", "/api/sessions/nope")
        check("delete unknown 404", st == 404, st)
        st, _ = http_json(s.port, "DELETE", "/api/sessions/p00")
        check("delete 204", st == 204, st)
        while True:
            st, body = http_json(s.port, "POST", "/api/sessions", {})
            if st != 201:
                break
        st2, body2 = http_json(s.port, "GET", "/api/sessions/count")
        check("max-sessions 503", st == 503 and body2["active_sessions"] == 30,
              (st, body, body2))


def test_connections():
    with Server("--tick", "0.2", "--session-ttl", "0") as s:
        mon = s.ws("/ws/monitor")
        a = s.ws("/ws/sessions/live1")
        b = s.ws("/ws/sessions/live1")
        ev = session_events(mon, lambda g: len(g) >= 1)
        check("first connection creates", ev and
              ev[0]["event_type"] == "session_created" and
              ev[0]["data"]["sessions"] == ["live1"], ev)
        a.send_json({"type": "get_status"})
        st = a.recv_until(lambda m: m["type"] == "status")
        check("status names the session", st["data"]["session_id"] == "live1"
              and "session:live1" in st["data"]["groups"], st)
        a.close()
        check("one left: still alive", quiet_ticks(mon, 3) == [])
        b.close()
        ev = session_events(mon, lambda g: len(g) >= 1)
        check("last one gone (ttl 0): destroyed", ev and
              ev[0]["event_type"] == "session_destroyed" and
              ev[0]["data"]["sessions"] == ["live1"], ev)

    with Server("--tick", "0.2", "--session-ttl", "5") as s:
        mon = s.ws("/ws/monitor")
        a = s.ws("/ws/sessions/t1")
        session_events(mon, lambda g: len(g) >= 1)
        a.close()

        def detached():
            st, body = http_json(s.port, "GET", "/api/sessions")
            return body["sessions"][0]["connections"] == 0
        from wsdtest import wait_for
        wait_for(detached)
        st, body = http_json(s.port, "GET", "/api/sessions/count")
        check("ttl: outlives its last connection", body ==
              {"active_sessions": 1}, body)
        ev = session_events(mon, lambda g: len(g) >= 1)
        check("ttl: then destroyed", ev and
              ev[0]["event_type"] == "session_destroyed" and
              ev[0]["data"]["sessions"] == ["t1"], ev)


def next_tick_events(mon):
    """The session_events one tick publishes: everything up to the
    realtime_update that ends the tick (it goes out after them)."""
    seen = []
    while True:
        m = mon.recv_json()
        if m["type"] == "realtime_update":
            return seen
        if m["type"] == "session_event":
            seen.append(m)


def test_put():
    """PUT /api/sessions/ID: create (201) or replace the metadata (200);
    a change shows as session_updated between created and destroyed."""
    with Server("--tick", "1", "--max-sessions", "3",
                "--max-metadata", "100") as s:
        mon = s.ws("/ws/monitor")
        st, body = http_json(s.port, "PUT", "/api/sessions/u1",
                             {"metadata": {"v": 1}})
        check("PUT new: 201 {id}", st == 201 and body == {"id": "u1"},
              (st, body))
        http_json(s.port, "POST", "/api/sessions", {"id": "d1"})
        ev = session_events(mon, lambda g: {"u1", "d1"} <= {
            i for e in g for i in e["data"]["sessions"]})
        check("PUT new: reported as session_created",
              all(e["event_type"] == "session_created" for e in ev), ev)
        st, body = http_json(s.port, "PUT", "/api/sessions/u1",
                             {"metadata": {"v": 1}})
        check("PUT same metadata: 200", st == 200 and body == {"id": "u1"},
              (st, body))
        check("PUT same metadata: no session_event", quiet_ticks(mon, 2) == [])

        # A create, two changes of u1 and a destroy, pipelined in one
        # write so that wsd reads them in one go and no tick falls between
        # them: one tick reports them in the order created, updated,
        # destroyed.
        def req(method, path, body=None):
            b = json.dumps(body).encode() if body is not None else b""
            return (("%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Content-Length: %d\r\n\r\n" % (method, path, len(b)))
                    .encode() + b)
        raw = (req("POST", "/api/sessions", {"id": "c1"}) +
               req("PUT", "/api/sessions/u1", {"metadata": {"v": 2}}) +
               req("PUT", "/api/sessions/u1", {"metadata": {"v": 3}}) +
               req("DELETE", "/api/sessions/d1"))
        conn = socket.create_connection(("127.0.0.1", s.port),
                                        timeout=DEADLINE)
        conn.sendall(raw)
        got = b""
        while got.count(b"HTTP/1.1 ") < 4 or not got.endswith(b"}") and \
                not got.endswith(b"\r\n\r\n"):
            d = conn.recv(65536)
            if not d:
                break
            got += d
        conn.close()
        codes = re.findall(rb"HTTP/1.1 (\d+)", got)
        check("pipelined: 201, 200, 200, 204",
              codes == [b"201", b"200", b"200", b"204"], codes)
        ev = next_tick_events(mon)
        types = [e.get("event_type") for e in ev]
        check("one tick: created, updated, destroyed", types ==
              ["session_created", "session_updated", "session_destroyed"],
              ev)
        if len(ev) == 3:
            u = ev[1]["data"]
            check("session_updated data", u["current_count"] == 3 and
                  u["previous_count"] == 3 and u["delta"] == 0 and
                  u["sessions"] == ["u1"] and
                  isinstance(u["time_since_last_event"], (int, float)), u)
            c, d = ev[0]["data"], ev[2]["data"]
            check("counts add up around session_updated",
                  (c["previous_count"], c["current_count"], c["delta"]) ==
                  (2, 3, 1) and
                  (d["previous_count"], d["current_count"], d["delta"]) ==
                  (3, 2, 1), ev)
        st, body = http_json(s.port, "GET", "/api/sessions")
        meta = {x["id"]: x["metadata"] for x in body["sessions"]}
        check("PUT replaced the metadata", meta.get("u1") == {"v": 3}, body)

        # The same limits and errors as POST.
        st, _ = http_json(s.port, "PUT", "/api/sessions/m1",
                          {"metadata": {"k": "x" * 120}})
        check("PUT metadata over the limit: 413", st == 413, st)
        st, _ = http_json(s.port, "PUT", "/api/sessions/m1", "{not json")
        check("PUT bad JSON: 400", st == 400, st)
        st, _ = http_json(s.port, "PUT", "/api/sessions/m1",
                          {"metadata": [1]})
        check("PUT metadata not an object: 400", st == 400, st)
        st, _ = http_json(s.port, "PUT", "/api/sessions/a%20b",
                          {"metadata": {}})
        check("PUT bad id: 400", st == 400, st)
        st, _ = http_json(s.port, "POST", "/api/sessions", {"id": "u1"})
        check("POST on an existing id: still 409", st == 409, st)
        st, _ = http_json(s.port, "PUT", "/api/sessions/m2", {})
        check("PUT new, under --max-sessions: 201", st == 201, st)
        st, body = http_json(s.port, "PUT", "/api/sessions/m3",
                             {"metadata": {}})
        check("PUT new at --max-sessions: 503", st == 503 and
              body["error"] == "unavailable", (st, body))
        st, _ = http_json(s.port, "PUT", "/api/sessions/u1",
                          {"metadata": {"v": 4}})
        check("PUT existing at --max-sessions: 200", st == 200, st)

    with Server("--tick", "0.2", "--api-key", "K" * 32) as s:
        st, _ = http_json(s.port, "PUT", "/api/sessions/k1", {})
        check("PUT without the API key: 401", st == 401, st)
        st, _ = http_json(s.port, "PUT", "/api/sessions/k1", {},
                          {"Authorization": "Bearer " + "K" * 32})
        check("PUT with the API key: 201", st == 201, st)


def test_put_adopts():
    """A session made by a connection and then PUT by a backend lives on
    as the backend's: it no longer ends with its last connection."""
    with Server("--tick", "0.2", "--session-ttl", "0") as s:
        mon = s.ws("/ws/monitor")
        a = s.ws("/ws/sessions/tab")
        session_events(mon, lambda g: len(g) >= 1)
        st, _ = http_json(s.port, "PUT", "/api/sessions/tab",
                          {"metadata": {"owner": "backend"}})
        check("PUT on a connection's session: 200", st == 200, st)
        ev = session_events(mon, lambda g: len(g) >= 1)
        check("its metadata change: session_updated", ev and
              ev[0]["event_type"] == "session_updated", ev)
        a.close()

        def detached():
            st, body = http_json(s.port, "GET", "/api/sessions")
            return body["sessions"][0]["connections"] == 0
        check("the connection left", wait_for(detached))
        check("adopted: no session_destroyed when the last connection "
              "leaves", quiet_ticks(mon, 5) == [])
        st, body = http_json(s.port, "GET", "/api/sessions/count")
        check("adopted: still counted", body == {"active_sessions": 1}, body)


def test_reconnect_grace():
    """A reload (close, then reconnect within --session-ttl) is not a new
    session; a connection gone longer than the TTL ends it."""
    ttl = 1.0
    with Server("--tick", "0.1", "--session-ttl", str(ttl)) as s:
        mon = s.ws("/ws/monitor")
        a = s.ws("/ws/sessions/tab-1")
        ev = session_events(mon, lambda g: len(g) >= 1)
        check("first connection creates tab-1", ev and
              ev[0]["data"]["sessions"] == ["tab-1"], ev)

        def conns():
            st, body = http_json(s.port, "GET", "/api/sessions")
            return body["sessions"][0]["connections"] if body["sessions"] \
                else None
        a.close()
        check("reload: the old tab is gone", wait_for(lambda: conns() == 0))
        b = s.ws("/ws/sessions/tab-1")
        check("reload: the new tab joined", wait_for(lambda: conns() == 1))
        # Ticks for twice the TTL: a phantom destroy/create would show.
        seen, t0 = [], time.monotonic()
        while time.monotonic() - t0 < 2 * ttl:
            seen += quiet_ticks(mon, 1)
        check("reload within the TTL: no session_event", seen == [], seen)

        t_close = time.monotonic()
        b.close()
        ev = session_events(mon, lambda g: len(g) >= 1)
        gone = time.monotonic() - t_close
        check("gone longer than the TTL: destroyed", ev and
              ev[0]["event_type"] == "session_destroyed" and
              ev[0]["data"]["sessions"] == ["tab-1"], ev)
        # The server's clock is read once per loop turn, in milliseconds.
        check("not before the TTL ran out", gone >= ttl - 0.05, gone)

    # The default TTL (5 s) covers a reload too.
    with Server("--tick", "0.1") as s:
        mon = s.ws("/ws/monitor")
        a = s.ws("/ws/sessions/tab-2")
        session_events(mon, lambda g: len(g) >= 1)
        a.close()

        def detached():
            st, body = http_json(s.port, "GET", "/api/sessions")
            return body["sessions"][0]["connections"] == 0
        check("default TTL: the old tab is gone", wait_for(detached))
        b = s.ws("/ws/sessions/tab-2")
        check("default TTL: a reload makes no session_event",
              quiet_ticks(mon, 10) == [])
        b.close()


def test_no_session_events():
    with Server("--tick", "0.2", "--no-session-events") as s:
        mon = s.ws("/ws/monitor")
        http_json(s.port, "POST", "/api/sessions", {"id": "quiet"})
        check("--no-session-events: no session_event",
              quiet_ticks(mon, 5) == [])
        m = mon.recv_until(lambda x: x["type"] == "realtime_update")
        check("--no-session-events: realtime_update still counts",
              m["data"]["sessions"]["active_count"] == 1, m)
        st, body = http_json(s.port, "GET", "/api/sessions/count")
        check("--no-session-events: API still works",
              body == {"active_sessions": 1}, body)


if __name__ == "__main__":
    test_diff_events()
    test_realtime_update()
    test_api()
    test_connections()
    test_put()
    test_put_adopts()
    test_reconnect_grace()
    test_no_session_events()
    done()
