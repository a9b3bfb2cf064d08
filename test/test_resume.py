"""test_resume - stream identity: positions are (epoch, seq).

A group's stream gets a random epoch when it starts: at process start, or
when the group is created again after eviction.  Every answer that names a
position carries it (subscribed, history_gap, history, HTTP history, the
group list), and a resume may name it: since=EPOCH:SEQ.  A position from
another epoch is answered with history_gap naming the new epoch, then the
new stream from its start.  Tested across a restart and an eviction, over
WebSocket and HTTP.
"""
import json
import re

from wsdtest import Server, check, done, http_json

EPOCH = re.compile(r"[0-9a-f]{8}")


def publish(srv, group, n, start=0):
    for i in range(n):
        st, body = http_json(srv.port, "POST", "/api/groups/%s/events" % group,
                             {"type": "e", "data": start + i})
        if st != 202:
            return False
    return True


def read_events(c, n):
    """n envelopes (skipping nothing: any other message fails the check)."""
    return [c.recv_json() for _ in range(n)]


def restart():
    """A client resumes against a restarted wsd: the old position is
    from another epoch, so it gets history_gap and the new stream whole."""
    with Server("--no-session-events") as a:
        c = a.ws("/ws/r")
        e1 = c.subscribed["epoch"]
        check("route: subscribed first, with an epoch",
              EPOCH.fullmatch(e1) is not None and c.subscribed["seq"] == 0 and
              c.subscribed["group"] == "r", repr(c.subscribed))
        check("restart: 5 events before", publish(a, "r", 5))
        got = read_events(c, 5)
        check("restart: seq 1..5 in the first life",
              [m.get("seq") for m in got] == [1, 2, 3, 4, 5], repr(got))
        c.close()
    with Server("--no-session-events") as b:
        check("restart: 3 events in the second life", publish(b, "r", 3, 100))
        c = b.ws("/ws/r?since=%s:5" % e1)
        e2 = c.subscribed["epoch"]
        check("restart: a new epoch", EPOCH.fullmatch(e2) is not None and
              e2 != e1, "%s %s" % (e1, e2))
        gap = c.recv_json()
        check("restart: old position -> history_gap naming the new epoch",
              gap.get("type") == "error" and gap.get("code") == "history_gap"
              and gap.get("epoch") == e2 and gap.get("oldest") == 1 and
              gap.get("seq") == 3, repr(gap))
        got = read_events(c, 3)
        check("restart: then the new stream from its start",
              [(m.get("seq"), m.get("data")) for m in got] ==
              [(1, 100), (2, 101), (3, 102)], repr(got))
        # The same position with the current epoch is an exact resume.
        d = b.ws("/ws/r?since=%s:2" % e2)
        m = d.recv_json()
        check("same epoch: events after the position, no gap",
              m.get("seq") == 3 and m.get("data") == 102, repr(m))
        # A bare seq is taken to mean the current epoch.
        f = b.ws("/ws/r?since=1")
        m = f.recv_json()
        check("bare since: the current epoch", m.get("seq") == 2, repr(m))
        # The subscribe message takes the same position, as a string.
        g = b.ws("/ws/other")
        g.send_json({"type": "subscribe", "group": "r",
                     "since": "%s:1" % e1})
        sub = g.recv_json()
        gap = g.recv_json()
        ev = read_events(g, 3)
        check("subscribe since EPOCH:SEQ from another epoch: subscribed, "
              "gap, the stream", sub.get("type") == "subscribed" and
              sub.get("epoch") == e2 and gap.get("code") == "history_gap" and
              [m.get("seq") for m in ev] == [1, 2, 3],
              repr((sub, gap, ev)))
        g.send_json({"type": "subscribe", "group": "r", "since": "zz:1"})
        err = g.recv_json()
        check("subscribe since malformed -> bad_json", err.get("code") ==
              "bad_json", repr(err))
        for cl in (c, d, f, g):
            cl.close()
        bad = b.ws("/ws/r?since=%s:" % e2)
        check("route since EPOCH: without seq -> 400", bad.status == 400,
              bad.status)


def eviction():
    """A group evicted and created again is a new stream."""
    with Server("--max-groups", "2", "--no-session-events") as s:
        check("evict: a has 4 events", publish(s, "a", 4))
        st, h = http_json(s.port, "GET", "/api/groups/a/events")
        ea = h.get("epoch") if st == 200 else None
        check("HTTP history carries the epoch and seq",
              st == 200 and EPOCH.fullmatch(ea or "") is not None and
              h.get("seq") == 4 and len(h.get("events", [])) == 4, repr(h))
        st, gl = http_json(s.port, "GET", "/api/groups")
        ga = [g for g in gl.get("groups", []) if g.get("group") == "a"]
        check("the group list carries the epoch", len(ga) == 1 and
              ga[0].get("epoch") == ea and ga[0].get("seq") == 4, repr(gl))
        check("evict: b and c push a out", publish(s, "b", 1) and
              publish(s, "c", 1))
        st, h = http_json(s.port, "GET", "/api/groups/a/events")
        check("evicted: no such stream any more (epoch null)",
              st == 200 and h.get("epoch") is None and h.get("events") == [],
              repr(h))
        check("recreated: a gets 2 events", publish(s, "a", 2, 50))
        st, h = http_json(s.port, "GET",
                          "/api/groups/a/events?since=%s:3" % ea)
        eb = h.get("epoch")
        check("HTTP since from the old epoch: the new stream from its start",
              st == 200 and eb != ea and EPOCH.fullmatch(eb or "") and
              [e.get("data") for e in h.get("events", [])] == [50, 51],
              repr(h))
        st, h = http_json(s.port, "GET",
                          "/api/groups/a/events?since=%s:1" % eb)
        check("HTTP since in the current epoch: after the position",
              st == 200 and [e.get("seq") for e in h.get("events", [])] ==
              [2], repr(h))
        for q in ("since=x:1", "since=%s:" % eb, "since=abcdef12",
                  "since=1:2:3"):
            st, h = http_json(s.port, "GET", "/api/groups/a/events?" + q)
            check("HTTP since malformed (%s) -> 400" % q, st == 400, st)
        c = s.ws("/ws/watch")
        c.send_json({"type": "get_history", "group": "a",
                     "since": "%s:0" % ea, "id": 1})
        m = c.recv_json()
        check("get_history: old epoch -> current stream, with its epoch",
              m.get("type") == "history" and m.get("epoch") == eb and
              m.get("seq") == 2 and
              [e.get("data") for e in m.get("events", [])] == [50, 51],
              repr(m))
        c.send_json({"type": "get_history", "group": "nosuch", "id": 2})
        m = c.recv_json()
        check("get_history of no group: epoch null, no events",
              m.get("epoch", 0) is None and m.get("events") == [], repr(m))
        c.close()


restart()
eviction()
done()
