"""test_ops - operations from outside: the --config file and its
precedence, SIGHUP reloads (API key and token secret rotation, options
that need a restart, a bad file refused), structured JSON logs, and the
process, build and limit figures of /metrics.

    WSD=./wsd /usr/bin/python3 test/test_ops.py

Each topic starts its own wsd; files live in a temporary directory.  A
reload is waited for by its log line ("config reloaded" or "config reload
refused"), never by a sleep; only processes started here are signalled,
by PID.
"""
import base64
import hashlib
import hmac
import json
import os
import re
import resource
import subprocess
import tempfile
import time

from wsdtest import (DEADLINE, OP_TEXT, Server, WSD, check, count, done,
                     head_of, http, hup, rst_close, status_of, wait_for)

S1 = "first-secret-for-wsd-ops-tests-0123456789"     # over 32 bytes
S2 = "second-secret-for-wsd-ops-tests-9876543210"
TMP = tempfile.mkdtemp(prefix="wsd-ops-")


def path(name):
    return os.path.join(TMP, name)


def write(name, text):
    """Replace the file whole (a rename), as an editor or a deploy does."""
    p = path(name)
    with open(p + ".new", "w") as f:
        f.write(text)
    os.replace(p + ".new", p)
    return p


def run(args, env=None):
    """wsd with args that make it exit at once: (status, stderr)."""
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.run([WSD] + args, capture_output=True, env=e,
                       timeout=DEADLINE, stdin=subprocess.DEVNULL)
    return p.returncode, p.stderr.decode("utf-8", "replace")


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def token(secret, groups=("events",)):
    now = int(time.time())
    head = b64u(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64u(json.dumps({"sub": "ops", "groups": list(groups),
                            "exp": now + 600}).encode())
    sig = hmac.new(secret.encode(), (head + "." + body).encode(),
                   hashlib.sha256).digest()
    return head + "." + body + "." + b64u(sig)


def upgrade(srv, tok):
    """Status of an upgrade to /ws/events with tok (101 is closed again)."""
    c = srv.ws("/ws/events?token=" + tok)
    st = c.status
    c.close()
    return st


def alive(c, ident):
    """c still answers: a JSON ping gets its pong."""
    try:
        c.send_json({"type": "ping", "id": ident})
        m = c.recv_until(lambda m: m.get("type") == "pong")
        return m.get("id") == ident
    except Exception:                   # noqa: BLE001 - closed, timeout
        return False


def post(srv, key):
    st, _, _ = http(srv.port, "POST", "/api/groups/g/events",
                    {"type": "t", "data": 1},
                    {"Authorization": "Bearer " + key})
    return st


def metrics(srv, headers=None):
    """{'name{labels}': float} from /metrics."""
    st, _, body = http(srv.port, "GET", "/metrics", headers=headers)
    out = {}
    if st != 200:
        return out
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            k, v = line.rsplit(" ", 1)
            out[k] = float(v)
    return out


# ---- the config file and its precedence ------------------------------------

def test_config_file():
    big = head_of(0, size=700)          # a 700-byte upgrade head to /echo
    cfg = write("basic.conf", "# wsd settings\n\n"
                "   # an indented comment\n"
                "echo\n"
                "max-header = 512\n"
                "allow-origin http://a.example\n"
                "allow-origin = http://b.example\n"
                "max-message=1K\n")
    with Server("--config", cfg) as s:
        c = s.ws("/echo")
        check("config: a switch alone turns it on (echo)", c.status == 101)
        c.close()
        check("config: max-header = 512 applies (431)",
              status_of(s.port, big) == 431)
        for origin, want in (("http://a.example", 101),
                             ("http://b.example", 101),
                             ("http://c.example", 403)):
            c = s.ws("/ws/events", headers={"Origin": origin})
            check("config: list repeated by its key, %s -> %d" %
                  (origin, want), c.status == want, c.status)
            c.close()
    with Server("--config", cfg, env={"WSD_MAX_HEADER": "1K",
                                      "WSD_ALLOW_ORIGIN":
                                      "http://c.example"}) as s:
        check("environment wins over the file (WSD_MAX_HEADER=1K)",
              status_of(s.port, big) == 101)
        c = s.ws("/ws/events", headers={"Origin": "http://b.example"})
        d = s.ws("/ws/events", headers={"Origin": "http://c.example"})
        check("a list in the environment replaces the file's",
              (c.status, d.status) == (403, 101), (c.status, d.status))
        c.close()
        d.close()
    with Server("--config", cfg, "--max-header", "512",
                env={"WSD_MAX_HEADER": "1K"}) as s:
        check("the command line wins over the environment and the file",
              status_of(s.port, big) == 431)
    with Server(env={"WSD_CONFIG": cfg}) as s:
        check("WSD_CONFIG names the file",
              status_of(s.port, big) == 431)


def test_config_errors():
    cases = [
        ("unknown.conf", "echo\n\n# x\nno-such-option = 1\n", 4,
         "unknown option no-such-option"),
        ("badval.conf", "echo\nmax-message = 12X\n", 2,
         "bad value for max-message"),
        ("noval.conf", "max-header\n", 1, "needs a value"),
        ("nested.conf", "# c\nconfig = other.conf\n", 2, "config"),
        ("syntax.conf", "echo\n\n\nmax_header: 9\n", 4, "NAME = VALUE"),
    ]
    for name, text, line, what in cases:
        p = write(name, text)
        rc, err = run(["--config", p, "--listen", "127.0.0.1:0"])
        check("config error (%s): exit 2" % name, rc == 2, (rc, err))
        check("config error (%s): names FILE:%d and says why" % (name, line),
              "%s:%d:" % (p, line) in err and what in err, err)
    rc, err = run(["--config", path("missing.conf")])
    check("a missing config file: exit 2, named", rc == 2 and
          "missing.conf" in err, (rc, err))
    p = write("limits.conf", "max-conn-groups = 5000\n")
    rc, err = run(["--config", p])
    check("limits from the file are checked as flags are", rc == 2 and
          "max-conn-groups" in err, (rc, err))


# ---- SIGHUP ------------------------------------------------------------------

def test_reload_api_key():
    cfg = write("key.conf", "api-key = key-one\n")
    with Server("--config", cfg) as s:
        check("api key from the file", post(s, "key-one") == 202 and
              post(s, "key-two") == 401)
        write("key.conf", "# rotated\napi-key = key-two\n")
        check("SIGHUP: the new file is applied", hup(s))
        check("after the reload the old key is refused",
              post(s, "key-one") == 401)
        check("after the reload the new key is accepted",
              post(s, "key-two") == 202)
        check("the key is never logged",
              count(s, "key-one|key-two") == 0)
        write("key.conf", "# no key\n")
        hup(s)
        check("turning the API key off needs a restart",
              s.find(r"needs a restart: api-key"))
        check("... and the key in use stays", post(s, "key-two") == 202 and
              post(s, "nothing") == 401)


def test_reload_token_secret():
    # The default grace (300 s): a token of the old secret still opens a
    # connection after the rotation, and one open stays open.
    cfg = write("tok.conf", "token-secret = %s\n" % S1)
    with Server("--config", cfg) as s:
        held = s.ws("/ws/events?token=" + token(S1))
        check("token secret from the file", held.status == 101 and
              upgrade(s, token(S2)) == 401)
        write("tok.conf", "token-secret = %s\n" % S2)
        check("SIGHUP: rotation applied", hup(s) and
              s.find(r"token secret rotated"))
        check("new secret's tokens accepted", upgrade(s, token(S2)) == 101)
        check("old secret's tokens accepted within --token-grace",
              upgrade(s, token(S1)) == 101)
        check("a connection open across the rotation stays open",
              alive(held, "across"))
        check("secrets are never logged", count(s, S1 + "|" + S2) == 0)
        held.close()
    # --token-grace 1: past it the old secret's tokens are refused, and
    # the connection opened with one stays open all the same.
    secret = write("secret", S1 + "\n")
    with Server("--token-secret-file", secret, "--token-grace", "1") as s:
        held = s.ws("/ws/events?token=" + token(S1))
        check("--token-secret-file: its token opens", held.status == 101)
        write("secret", S2 + "\n")
        check("SIGHUP re-reads --token-secret-file (no --config)",
              hup(s) and s.find(r"token secret rotated"))
        check("the file's new secret is accepted",
              upgrade(s, token(S2)) == 101)
        t0 = time.monotonic()
        refused = wait_for(lambda: upgrade(s, token(S1)) == 401)
        check("the old secret is refused once --token-grace 1 is over",
              refused and time.monotonic() - t0 < DEADLINE)
        check("the connection opened with the old secret stays open",
              alive(held, "after-grace"))
        write("secret", "short\n")
        check("a secret under 32 bytes refuses the reload", not hup(s))
        check("... and the secret in use stays",
              upgrade(s, token(S2)) == 101)
        held.close()


def test_reload_restart_only():
    cfg = write("rs.conf", "echo\nping-interval = 25\nmax-message = 1K\n")
    with Server("--config", cfg) as s:
        c = s.ws("/echo")
        c.send(OP_TEXT, b"x" * 1000)
        check("max-message 1K from the file: 1000 bytes echoed",
              c.recv_message() == (OP_TEXT, b"x" * 1000))
        write("rs.conf", "ping-interval = 30\nmax-message = 100\n")
        check("reload with a restart-only change is applied", hup(s))
        check("ping-interval: logged as needing a restart",
              s.find(r"needs a restart: ping-interval"))
        check("echo taken out: logged as needing a restart",
              s.find(r"needs a restart: echo"))
        check("the live change is logged", s.find(
            r"config changed option=max-message"))
        c.send(OP_TEXT, b"y" * 200)
        check("... and applied: 200 bytes close 1009 now",
              c.recv_close() == 1009)
        c.close()
        c = s.ws("/echo")
        check("echo, restart-only, stays on", c.status == 101)
        c.close()
        check("no restart line for what did not change",
              not s.find(r"needs a restart: (max-header|listen|config)"))


def test_reload_bad_config():
    big = head_of(0, size=700)
    cfg = write("bad.conf", "echo\nmax-header = 512\n")
    with Server("--config", cfg) as s:
        check("before: 431 at 700 bytes", status_of(s.port, big) == 431)
        write("bad.conf", "echo\nmax-header = 2K\nlog-level = loud\n")
        check("a bad value refuses the whole reload", not hup(s))
        check("the refusal names the check", s.find(
            r"config reload refused.*log-level"))
        check("the old settings stay (still 431)",
              status_of(s.port, big) == 431)
        write("bad.conf", "echo\nmax-header = 2K\n\nbogus = 1\n")
        check("an unknown option refuses it too", not hup(s))
        check("with the file and the line", s.find(
            r"config reload refused.*bad\.conf:4: unknown option bogus"))
        check("still the old settings", status_of(s.port, big) == 431)
        os.unlink(cfg)
        check("a file gone refuses the reload", not hup(s))
        write("bad.conf", "echo\nmax-header = 2K\n")
        check("a good file again is applied", hup(s))
        check("now 700 bytes pass", status_of(s.port, big) == 101)
        c = s.ws("/echo")
        check("still serving", c.status == 101)
        c.close()


# ---- logs ------------------------------------------------------------------

def test_json_logs():
    with Server("--echo", "--log-format", "json", "--log-level", "debug",
                "--max-message", "100") as s:
        c = s.ws("/echo")
        c.send(8, b"\x03\xe8bye")        # close 1000
        check("close answered", c.recv_close() == 1000)
        c.close()
        d = s.ws("/echo")
        d.send(OP_TEXT, b"z" * 200)
        check("1009 sent", d.recv_close() == 1009)
        d.close()
        e = s.ws("/echo")
        e.send_raw(bytes([0x81, 0x02]) + b"hi")     # unmasked: 1002
        check("1002 sent", e.recv_close() == 1002)
        e.close()
        wait_for(lambda: count(s, r'"connection closed"') >= 3)
        with s.lock:
            lines = [x for x in s.log if x.strip()]
    try:
        parsed = [json.loads(x) for x in lines]
    except ValueError as err:
        parsed = []
        check("every log line is JSON", False, "%s %r" % (err, lines[:5]))
    closed = [p for p in parsed if p.get("msg") == "connection closed"]
    opened = [p for p in parsed if p.get("msg") == "connection opened"]
    by_code = {p.get("code"): p for p in closed}
    check("a close line per WebSocket with its fields",
          len(closed) >= 3 and all(isinstance(p.get("conn"), int)
                                   for p in closed), closed)
    check("peer close: code 1000, reason peer closed",
          by_code.get(1000, {}).get("reason") == "peer closed", closed)
    check("1009: reason too large",
          by_code.get(1009, {}).get("reason") == "too large", closed)
    check("1002: reason protocol error",
          by_code.get(1002, {}).get("reason") == "protocol error", closed)
    check("close lines of WebSockets are info",
          all(by_code[k]["level"] == "info" for k in by_code))
    check("open lines at debug: conn, peer, tls",
          opened and all(isinstance(p.get("conn"), int) and
                         p.get("peer", "").startswith("127.0.0.1:") and
                         p.get("tls") is False and p["level"] == "debug"
                         for p in opened), opened[:2])
    listening = [p for p in parsed if p.get("msg") == "listening"]
    check("listening carries addr as a field",
          listening and re.match(r"127\.0\.0\.1:\d+$",
                                 listening[0].get("addr", "")), listening)
    check("no key=value left inside msg",
          not any(re.search(r"\w=", p.get("msg", "")) for p in parsed),
          [p["msg"] for p in parsed if "=" in p.get("msg", "")][:3])

    with Server("--echo") as s:
        c = s.ws("/echo")
        c.send(8, b"\x03\xe8")
        c.recv_close()
        c.close()
        m = wait_for(lambda: s.find(r" info connection closed conn=\d+ "
                                    r'reason="peer closed" code=1000'))
        check("text format: key=value after the message", m)
        check("plain HTTP closes are not at info",
              http(s.port, "GET", "/health")[0] == 200 and
              count(s, r"connection closed") == 1)


# ---- metrics -----------------------------------------------------------------

def test_metrics():
    t0 = time.time()
    with Server("--echo", "--max-message", "100", "--max-header", "512",
                "--max-body", "1K", "--max-connections", "2") as s:
        m = metrics(s)
        ver = subprocess.run([WSD, "--version"], capture_output=True,
                             text=True).stdout.split()[-1]
        check("wsd_build_info with the version",
              m.get('wsd_build_info{version="%s"}' % ver) == 1.0,
              [k for k in m if "build" in k])
        with open("/proc/%d/status" % s.pid()) as f:
            rss = [int(x.split()[1]) * 1024 for x in f
                   if x.startswith("VmRSS:")][0]
        nfd = len(os.listdir("/proc/%d/fd" % s.pid()))
        r = m.get("process_resident_memory_bytes", 0)
        check("process_resident_memory_bytes near VmRSS",
              rss / 2 <= r <= rss * 2, (r, rss))
        check("process_open_fds near /proc/PID/fd",
              abs(m.get("process_open_fds", -100) - nfd) <= 4,
              (m.get("process_open_fds"), nfd))
        check("process_max_fds is the fd limit",
              m.get("process_max_fds") ==
              resource.getrlimit(resource.RLIMIT_NOFILE)[0],
              m.get("process_max_fds"))
        cpu = m.get("process_cpu_seconds_total", -1)
        check("process_cpu_seconds_total plausible", 0 <= cpu < 600, cpu)
        st = m.get("process_start_time_seconds", 0)
        check("process_start_time_seconds is when it started",
              t0 - 5 <= st <= time.time() + 5, (st, t0))
        names = ["max_connections", "max_header", "max_body",
                 "max_body_total", "max_message", "assembly_total",
                 "send_queue", "max_groups", "max_conn_groups",
                 "max_sessions", "max_metadata", "publish_rate",
                 "handshake_timeout", "message_timeout"]
        lim = {n: m.get('wsd_limit_rejections_total{limit="%s"}' % n)
               for n in names}
        check("a rejection counter per limit, all 0 at start",
              all(v == 0 for v in lim.values()), lim)

        c = s.ws("/echo")
        c.send(OP_TEXT, b"q" * 101)
        check("101 bytes: close 1009", c.recv_close() == 1009)
        c.close()
        check("431 past --max-header",
              status_of(s.port, head_of(s.port, size=513)) == 431)
        st, _, _ = http(s.port, "POST", "/api/groups/g/events", "x" * 1025)
        check("413 past --max-body", st == 413, st)
        held = [s.ws("/echo"), s.ws("/echo")]
        wait_for(lambda: status_of(s.port, head_of(s.port)) == 503)
        for h in held:
            rst_close(h)
        got = wait_for(lambda: metrics(s))      # {} while still full
        want = {"max_message": 1, "max_header": 1, "max_body": 1}
        for n, v in want.items():
            check("wsd_limit_rejections_total{limit=%s} is %d" % (n, v),
                  got.get('wsd_limit_rejections_total{limit="%s"}' % n)
                  == v, got.get('wsd_limit_rejections_total{limit="%s"}'
                                % n))
        check("wsd_limit_rejections_total{limit=max_connections} counted",
              got.get('wsd_limit_rejections_total{limit="max_connections"}',
                      0) >= 1)
    with Server("--max-conn-groups", "1") as s:
        c = s.ws("/ws/one")
        c.send_json({"type": "subscribe", "group": "two", "id": 1})
        err = c.recv_until(lambda x: x.get("type") == "error")
        check("past --max-conn-groups: too_large", err.get("code") ==
              "too_large", err)
        got = metrics(s)
        check("... counted as max_conn_groups", got.get(
            'wsd_limit_rejections_total{limit="max_conn_groups"}') == 1)
        c.close()


def main():
    try:
        test_config_file()
        test_config_errors()
        test_reload_api_key()
        test_reload_token_secret()
        test_reload_restart_only()
        test_reload_bad_config()
        test_json_logs()
        test_metrics()
    finally:
        for name in os.listdir(TMP):
            os.unlink(os.path.join(TMP, name))
        os.rmdir(TMP)
    done()


if __name__ == "__main__":
    main()
