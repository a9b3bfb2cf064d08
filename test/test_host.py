"""Host figures and alerts over loopback: realtime_update's "host" member,
system_alert raised and cleared on /ws/monitor (fds, memory, disk), a
threshold changed by SIGHUP, the --alert-* and --disk-path options and
their refusals.

    WSD=./wsd /usr/bin/python3 test/test_host.py

Every server runs with --tick 0.2; waits are "until a message arrives or
the deadline passes", never a fixed sleep.  Only processes started here
are signalled, by PID.
"""
import os
import re
import shutil
import subprocess
import tempfile

from wsdtest import (DEADLINE, WSD, Server, check, count, done, http_json,
                     hup, wait_for)

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
TMP = tempfile.mkdtemp(prefix="wsd-host-")
HOST_KEYS = {"cpu_pct", "rss_bytes", "fds", "load", "mem_total_bytes",
             "mem_available_bytes", "disk_total_bytes", "disk_free_bytes",
             "alerts_active"}
ALERT_KEYS = {"alert", "state", "value", "peak", "threshold", "id", "since"}


def run(args, env=None):
    """wsd with args that make it exit at once: (status, stderr)."""
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.run([WSD] + args, capture_output=True, env=e,
                       timeout=DEADLINE, stdin=subprocess.DEVNULL)
    return p.returncode, p.stderr.decode("utf-8", "replace")


def write(name, text):
    """Replace the file whole (a rename), as an editor or a deploy does."""
    p = os.path.join(TMP, name)
    with open(p + ".new", "w") as f:
        f.write(text)
    os.replace(p + ".new", p)
    return p


def update(mon):
    """The next realtime_update's data."""
    return mon.recv_until(lambda m: m["type"] == "realtime_update")["data"]


def alerts(mon, want, seen=None, timeout=DEADLINE):
    """Read /ws/monitor until want(alerts) is true, alerts being the
    system_alert messages seen so far (seen, if given, keeps them);
    returns them.  A deadline or a close fails the check."""
    got = seen if seen is not None else []
    try:
        while not want(got):
            m = mon.recv_json(timeout)
            if m["type"] == "system_alert":
                got.append(m)
    except Exception as e:          # noqa: BLE001 - deadline or closed
        check("system_alert wait (%s)" % type(e).__name__, False, repr(got))
    return got


def state(got, name, st):
    return [m for m in got if m["data"]["alert"] == name and
            m["data"]["state"] == st]


def meminfo(key):
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return None


def test_figures():
    with Server("--tick", "0.2") as s:
        mon = s.ws("/ws/monitor")
        first = update(mon)
        h = first.get("host", {})
        check("realtime_update has host", set(h) == HOST_KEYS, first)
        d = update(mon)
        h = d["host"]
        check("cpu_pct: a number, 0..100", isinstance(h["cpu_pct"],
              (int, float)) and 0 <= h["cpu_pct"] <= 100, h)
        check("rss_bytes > 0 and near VmRSS",
              isinstance(h["rss_bytes"], int) and h["rss_bytes"] > 0 and
              0.5 < h["rss_bytes"] / (s.rss_kib() * 1024) < 2, h)
        check("fds >= 3", isinstance(h["fds"], int) and h["fds"] >= 3, h)
        check("load: three numbers >= 0", isinstance(h["load"], list) and
              len(h["load"]) == 3 and
              all(isinstance(x, (int, float)) and x >= 0
                  for x in h["load"]), h)
        check("mem_total_bytes is MemTotal",
              h["mem_total_bytes"] == meminfo("MemTotal"), h)
        check("0 < mem_available_bytes <= mem_total_bytes",
              0 < h["mem_available_bytes"] <= h["mem_total_bytes"], h)
        sv = os.statvfs("/")
        check("disk_total_bytes is / 's size",
              h["disk_total_bytes"] == sv.f_blocks * sv.f_frsize, h)
        check("0 <= disk_free_bytes <= disk_total_bytes",
              0 <= h["disk_free_bytes"] <= h["disk_total_bytes"], h)
        check("no alert active", h["alerts_active"] == 0, h)
        check("the other members stay", {"connections", "groups",
              "sessions", "messages_in", "messages_out",
              "uptime_s"} <= set(d), d)

        # The fd count follows /proc/PID/fd (it is read every tick this
        # small); other connections show in it.
        extra = [s.ws("/ws/load") for _ in range(10)]
        want = len(os.listdir("/proc/%d/fd" % s.pid()))
        h = wait_for(lambda: (lambda x: x if abs(x["fds"] - want) <= 1
                              else None)(update(mon)["host"]))
        check("fds is /proc/PID/fd's count", h is not None and
              abs(h["fds"] - want) <= 1, (h, want))
        for c in extra:
            c.close()

        # system_alert is the server's own: nobody else publishes it.
        st, body = http_json(s.port, "POST", "/api/groups/monitor/events",
                             {"type": "system_alert", "data": {}})
        check("POST system_alert: 403", st == 403 and
              body.get("error") == "forbidden", (st, body))
        mon.send_json({"type": "publish", "group": "monitor",
                       "event": "system_alert", "data": {}, "id": 7})
        m = mon.recv_until(lambda x: x["type"] in ("error", "published"))
        check("WebSocket publish of system_alert: forbidden",
              m["type"] == "error" and m["code"] == "forbidden", m)
        mon.close()

    d = tempfile.mkdtemp(prefix="wsd-host-disk-", dir="/dev/shm"
                         if os.path.isdir("/dev/shm") else None)
    with Server("--tick", "0.2", "--disk-path", d) as s:
        mon = s.ws("/ws/monitor")
        h = update(mon)["host"]
        sv = os.statvfs(d)
        check("--disk-path: that file system's size",
              h["disk_total_bytes"] == sv.f_blocks * sv.f_frsize, (h, d))
        mon.close()
    shutil.rmtree(d, ignore_errors=True)


def test_fd_alert():
    with Server("--tick", "0.2", "--alert-fds", "20") as s:
        mon = s.ws("/ws/monitor")
        base = update(mon)["host"]["fds"]
        check("fds start under the threshold's clear level", base <= 18,
              base)
        conns = [s.ws("/ws/load") for _ in range(30)]
        got = alerts(mon, lambda g: state(g, "fds", "raised"))
        up = state(got, "fds", "raised")
        if up:
            a = up[0]
            d = a["data"]
            check("raised: envelope", a["group"] == "monitor" and
                  isinstance(a["seq"], int) and TS.match(a["timestamp"]), a)
            check("raised: data", set(d) == ALERT_KEYS and
                  d["threshold"] == 20 and d["value"] > 20 and
                  d["peak"] == d["value"] and isinstance(d["id"], int) and
                  d["id"] >= 1 and TS.match(d["since"]), d)
            check("raised: logged", wait_for(
                lambda: count(s, r"warn alert raised alert=fds .*id=%d"
                              % d["id"])))
        h = update(mon)["host"]
        check("realtime_update: one alert active", h["alerts_active"] == 1,
              h)
        for c in conns:
            c.close()
        got = alerts(mon, lambda g: state(g, "fds", "cleared"), got)
        down = state(got, "fds", "cleared")
        if up and down:
            u, d = up[0]["data"], down[0]["data"]
            check("cleared: same id and since", d["id"] == u["id"] and
                  d["since"] == u["since"], (u, d))
            check("cleared: back by a tenth (<= 18), peak kept",
                  d["value"] <= 18 and d["threshold"] == 20 and
                  d["peak"] >= u["value"], d)
            check("cleared after raised", down[0]["seq"] > up[0]["seq"])
        # No flapping: exactly one raise and one clear, and nothing more
        # over the next ticks.
        for _ in range(5):
            update(mon)
        check("one raise, one clear", len(got) == 2, got)
        h = update(mon)["host"]
        check("realtime_update: no alert active", h["alerts_active"] == 0,
              h)
        # Kept in monitor's history, so a page that reconnects sees it.
        st, body = http_json(s.port, "GET",
                             "/api/groups/monitor/events?since=0&limit=1000")
        kept = [e for e in body.get("events", [])
                if e["type"] == "system_alert"]
        check("history keeps both", [e["data"]["state"] for e in kept] ==
              ["raised", "cleared"], kept)

        # GET /api/alerts: the thresholds and the alerts, newest first.
        st, body = http_json(s.port, "GET", "/api/alerts")
        check("/api/alerts: 200 and its shape", st == 200 and
              body["active"] == 0 and body["thresholds"]["fds"] == 20
              and body["alerts"][0]["state"] == "cleared" and
              body["alerts"][0]["cleared"] is not None, (st, body))
        # /metrics: the host's gauges and the alert counters.
        st, _, text = s.http("GET", "/metrics")
        m = {}
        for line in text.decode().splitlines():
            if line and not line.startswith("#"):
                k, _, v = line.rpartition(" ")
                m[k] = float(v)
        check("/metrics: host memory and disk, load, alerts",
              m.get("wsd_host_memory_total_bytes", 0) > 0 and
              0 < m.get("wsd_host_memory_available_bytes", 0) <=
              m["wsd_host_memory_total_bytes"] and
              0 <= m.get("wsd_host_disk_free_bytes", -1) <=
              m.get("wsd_host_disk_total_bytes", -1) and
              m.get("wsd_host_load1", -1) >= 0 and
              m.get("wsd_alerts_raised_total") == 1 and
              m.get("wsd_alerts_active") == 0, m)
        mon.close()


def test_other_alerts():
    """Thresholds every host passes: rss over 1K, available memory and
    free disk under 100%.  Each raised once, at the first tick."""
    with Server("--tick", "0.2", "--alert-rss", "1K",
                "--alert-mem-free", "100", "--alert-disk-free", "100") as s:
        mon = s.ws("/ws/monitor")
        got = alerts(mon, lambda g: len(g) >= 3)
        names = sorted(m["data"]["alert"] for m in got)
        check("rss, mem_free, disk_free raised", names ==
              ["disk_free", "mem_free", "rss"], got)
        by = {m["data"]["alert"]: m["data"] for m in got}
        if "rss" in by:
            check("rss: bytes over 1024", by["rss"]["value"] > 1024 and
                  by["rss"]["threshold"] == 1024, by["rss"])
        if "mem_free" in by:
            check("mem_free: a percentage", 0 <= by["mem_free"]["value"] <
                  100 and by["mem_free"]["threshold"] == 100, by["mem_free"])
        ids = sorted(m["data"]["id"] for m in got)
        check("ids are distinct", len(set(ids)) == 3, ids)
        for _ in range(5):
            update(mon)
        h = update(mon)["host"]
        check("three active, no more events", h["alerts_active"] == 3 and
              len(got) == 3, (h, got))
        mon.close()


def test_reload():
    conf = write("reload.conf", "tick = 0.2\nalert-fds = 1000\n")
    with Server("--config", conf) as s:
        mon = s.ws("/ws/monitor")
        update(mon)
        write("reload.conf", "tick = 0.2\nalert-fds = 5\n")
        check("SIGHUP: alert-fds 5 applied", hup(s) and
              count(s, r"config changed option=alert-fds") == 1)
        got = alerts(mon, lambda g: state(g, "fds", "raised"))
        check("a lowered threshold raises at the next tick",
              state(got, "fds", "raised") and
              got[0]["data"]["threshold"] == 5, got)

        # A bad value refuses the whole reload: the alert stays raised.
        write("reload.conf", "tick = 0.2\nalert-fds = 5\nalert-cpu = 200\n")
        check("SIGHUP: --alert-cpu 200 refused", not hup(s) and
              count(s, r"config reload refused.*--alert-cpu must be "
                    r"0\.\.100") == 1)
        for _ in range(3):
            update(mon)
        write("reload.conf", "tick = 0.2\n")
        check("SIGHUP: alert-fds taken out", hup(s))
        got = alerts(mon, lambda g: state(g, "fds", "cleared"), got)
        down = state(got, "fds", "cleared")
        check("turned off: cleared, threshold 0", down and
              down[0]["data"]["threshold"] == 0 and
              down[0]["data"]["id"] == got[0]["data"]["id"], got)
        check("nothing else happened", len(got) == 2, got)
        mon.close()


def test_options():
    ok = ["--alert-cpu", "90.5", "--alert-rss", "1G", "--alert-fds", "5000",
          "--alert-load", "3.5", "--alert-mem-free", "10",
          "--alert-disk-free", "5", "--disk-path", TMP, "--help"]
    rc, err = run(ok)
    check("good values (and 1G) accepted", rc == 0, (rc, err))
    out = subprocess.run([WSD, "--help"], capture_output=True,
                         timeout=DEADLINE).stdout.decode()
    for name in ("alert-cpu", "alert-rss", "alert-fds", "alert-load",
                 "alert-mem-free", "alert-disk-free", "disk-path"):
        check("--help lists --%s" % name, "--" + name + " " in out)
    for args, want in (
            (["--alert-cpu", "101"], "--alert-cpu must be 0..100"),
            (["--alert-cpu", "ninety"], "bad value for --alert-cpu: ninety"),
            (["--alert-cpu", "-1"], "bad value for --alert-cpu"),
            (["--alert-cpu", "nan"], "bad value for --alert-cpu"),
            (["--alert-rss", "1X"], "bad value for --alert-rss: 1X"),
            (["--alert-rss", "-5"], "bad value for --alert-rss"),
            (["--alert-fds", "-1"], "bad value for --alert-fds"),
            (["--alert-fds", "3000000000"], "bad value for --alert-fds"),
            (["--alert-load", "inf"], "bad value for --alert-load"),
            (["--alert-load", "2000000"], "bad value for --alert-load"),
            (["--alert-load", ""], "bad value for --alert-load"),
            (["--alert-mem-free", "100.5"], "--alert-mem-free must be "
             "0..100"),
            (["--alert-disk-free", "250"], "--alert-disk-free must be "
             "0..100"),
            (["--disk-path", "/no/such/dir"], "--disk-path /no/such/dir: "
             "No such file or directory"),
            (["--disk-path", ""], "--disk-path : No such file"),
            (["--disk-path", "/" + "a" * 1100], "--disk-path must be under "
             "1024 bytes"),
            (["--alert-fds"], "--alert-fds needs a value")):
        rc, err = run(args)
        check("%s: exit 2, %r" % (args[:2], want), rc == 2 and
              err.startswith("wsd: ") and want in err, (rc, err))
    rc, err = run([], env={"WSD_ALERT_FDS": "many"})
    check("WSD_ALERT_FDS named whole", rc == 2 and
          "bad value for WSD_ALERT_FDS: many" in err, (rc, err))
    rc, err = run(["--help"], env={"WSD_ALERT_LOAD": "2.5",
                                   "WSD_DISK_PATH": TMP})
    check("WSD_ALERT_LOAD and WSD_DISK_PATH accepted", rc == 0, (rc, err))
    conf = write("bad.conf", "# host\nalert-load = lots\n")
    rc, err = run(["--config", conf])
    check("config file: file, line and name", rc == 2 and
          "%s:2: bad value for alert-load: lots" % conf in err, (rc, err))


if __name__ == "__main__":
    try:
        test_figures()
        test_fd_alert()
        test_other_alerts()
        test_reload()
        test_options()
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
    done()
