"""Operation: options and their WSD_* variables, logs, IPv6, subprotocols,
and running out of file descriptors.
"""
import json
import os
import re
import resource
import signal
import socket
import subprocess
import tempfile
import time

from wsdtest import (Server, WS, WSD, check, done, http, http_json,
                     wait_for, DEADLINE)


def run(args, env=None):
    """wsd with args that make it exit at once: (status, stdout, stderr)."""
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.run([WSD] + args, capture_output=True, env=e,
                       timeout=DEADLINE, stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def test_command_line():
    rc, out, _ = run(["--help"])
    names = re.findall(r"^  --([a-z-]+)", out, re.M)
    check("--help exits 0 and lists options", rc == 0 and len(names) >= 30,
          (rc, names))
    for opt in ("listen", "echo", "max-message", "send-queue", "tick",
                "token-secret", "api-key", "allow-origin", "tls-cert",
                "drain", "ping-interval", "log-format", "session-ttl"):
        check("--help lists --%s" % opt, opt in names)
    rc, out, _ = run(["--version"])
    check("--version", rc == 0 and re.match(r"^wsd \d+\.\d+\.\d+\n$", out),
          out)
    rc, _, err = run(["--no-such-option"])
    check("unknown option: exit 2, named", rc == 2 and
          "no-such-option" in err, (rc, err))
    for bad in (["--max-message", "lots"], ["--tick", "-1"],
                ["--max-connections", "0"], ["--log-format", "xml"],
                ["--max-header", "10"], ["--listen"]):
        rc, _, err = run(bad)
        check("bad value %s: exit 2 with a reason" % bad, rc == 2 and
              err.startswith("wsd: "), (rc, err))
    rc, _, err = run([], env={"WSD_MAX_MESSAGE": "huge"})
    check("bad WSD_ value: exit 2, the variable named whole", rc == 2 and
          "WSD_MAX_MESSAGE" in err, (rc, err))
    rc, _, err = run([], env={"WSD_TICK": "soon"})
    check("bad WSD_TICK: named WSD_TICK, not 'WSD_ tick'", rc == 2 and
          "WSD_TICK" in err and "WSD_ " not in err, (rc, err))
    rc, out_h, _ = run(["-h"])
    rc2, out_help, _ = run(["--help"])
    check("-h is --help", rc == 0 and rc2 == 0 and out_h == out_help and
          "--listen" in out_h, (rc, out_h[:80]))
    check("--help lists --token-require-exp", "token-require-exp" in names)
    check("--help gives the session-ttl default of 5",
          re.search(r"--session-ttl .*\(5\)", out_help), out_help)


def test_listen_values():
    """--listen is HOST:PORT with a port of 0-65535, checked while the
    options are read: a bad one exits 2 whatever else is given, never
    starts on a wrapped port, and is not mistaken for protected mode."""
    for bad in ("127.0.0.1:99999", "127.0.0.1:65536", "127.0.0.1:abc",
                "127.0.0.1:", "127.0.0.1:-1", "127.0.0.1:+80",
                "127.0.0.1:000001", "nonsense"):
        for extra in ([], ["--insecure"]):
            rc, _, err = run(["--listen", bad] + extra)
            check("--listen %s %s: exit 2, expected HOST:PORT" % (bad, extra),
                  rc == 2 and "expected HOST:PORT" in err and
                  "protected mode" not in err and "listening" not in err,
                  (rc, err))
    rc, _, err = run([], env={"WSD_LISTEN": "127.0.0.1:0,127.0.0.1:70000"})
    check("WSD_LISTEN with port 70000: exit 2, the variable named",
          rc == 2 and "WSD_LISTEN" in err and "expected HOST:PORT" in err,
          (rc, err))
    # Port 65535 (N) passes the parser: the error is the later option's.
    rc, _, err = run(["--listen", "127.0.0.1:65535", "--listen",
                      "[::1]:65535", "--max-message", "lots"])
    check("port 65535 is a port", rc == 2 and "max-message" in err and
          "HOST:PORT" not in err, (rc, err))


def test_protected_by_address():
    """Protected mode looks at the addresses a listener resolves to, every
    one of them, not at how the host is spelled."""
    for extra in ([], ["--api-key", "k" * 32]):
        rc, _, err = run(["--listen", "127.evil.example:0"] + extra)
        check("127.evil.example %s (a name, not 127/8): exit 2" % extra,
              rc == 2 and "127.evil.example" in err and
              "listening" not in err, (rc, err))
    # 127.0.0.1 spelled as one number, and a name for it: loopback.
    for spelled in ("2130706433:0", "localhost:0"):
        with Server("--listen", spelled) as s:
            # localhost may resolve to ::1 first (a standard Debian
            # /etc/hosts): any loopback address will do.
            two = wait_for(lambda: len([x for x in s.log if re.search(
                r"listening addr=(127\.\d+\.\d+\.\d+|\[::1\]):\d+", x)])
                == 2)
            check("--listen %s is loopback: starts, binds loopback" %
                  spelled, two, "".join(s.log))
    rc, _, err = run(["--listen", "0.0.0.0:0", "--listen", "127.0.0.1:0"])
    check("one listener beyond loopback is enough to refuse", rc == 2 and
          "protected mode" in err and "0.0.0.0" in err, (rc, err))


def _jwt(claims, secret):
    import base64
    import hashlib
    import hmac

    def b64u(b):
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    signing = b64u(b'{"alg":"HS256","typ":"JWT"}') + "." + \
        b64u(json.dumps(claims).encode())
    return signing + "." + b64u(hmac.new(secret.encode(), signing.encode(),
                                         hashlib.sha256).digest())


def test_token_require_exp():
    """A token without exp never expires, unless --token-require-exp (or
    WSD_TOKEN_REQUIRE_EXP) makes it invalid: 401 at the upgrade and for
    the history API."""
    secret = "t" * 32
    noexp = _jwt({"sub": "a", "groups": ["events"]}, secret)
    withexp = _jwt({"sub": "a", "groups": ["events"],
                    "exp": int(time.time()) + 600}, secret)

    def upgrade(s, tok):
        c = s.ws("/ws/events?token=" + tok)
        c.close()
        return c.status

    def history(s, tok):
        return s.http("GET", "/api/groups/events/events",
                      headers={"Authorization": "Bearer " + tok})[0]
    with Server("--token-secret", secret) as s:
        check("default: a token without exp is taken",
              upgrade(s, noexp) == 101)
    for how, args, env in (("--token-require-exp", ["--token-require-exp"],
                            None),
                           ("WSD_TOKEN_REQUIRE_EXP=1", [],
                            {"WSD_TOKEN_REQUIRE_EXP": "1"})):
        with Server("--token-secret", secret, *args, env=env) as s:
            check("%s: no exp -> 401 at the upgrade" % how,
                  upgrade(s, noexp) == 401)
            check("%s: with exp -> 101" % how, upgrade(s, withexp) == 101)
            check("%s: no exp -> 401 for the history API" % how,
                  history(s, noexp) == 401)
            check("%s: with exp -> 200 for the history API" % how,
                  history(s, withexp) == 200)


def test_secret_file_limit():
    """--token-secret-file holds at most 4,095 bytes; a longer file is
    refused, never cut short."""
    with tempfile.TemporaryDirectory() as d:
        for n, ok in ((4095, True), (4096, False)):
            path = os.path.join(d, "s%d" % n)
            with open(path, "w") as f:
                f.write("k" * n)
            if ok:
                with Server("--token-secret-file", path) as s:
                    check("secret file of %d bytes: starts" % n, s.port > 0)
            else:
                rc, _, err = run(["--listen", "127.0.0.1:0",
                                  "--token-secret-file", path])
                check("secret file of %d bytes: exit 2" % n, rc == 2 and
                      "secret over" in err, (rc, err))


def test_env_and_precedence():
    # WSD_MAX_HEADER applies; the flag wins over the variable.
    big = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: %s\r\n\r\n" % ("a" * 600)
    with Server(env={"WSD_MAX_HEADER": "512"}) as s:
        st = http(s.port, None, None, raw=big.encode())[0]
        check("WSD_MAX_HEADER=512 applies", st == 431, st)
    with Server("--max-header", "1K", env={"WSD_MAX_HEADER": "512"}) as s:
        st = http(s.port, None, None, raw=big.encode())[0]
        check("the flag wins over WSD_MAX_HEADER", st == 200, st)
    with Server(env={"WSD_ECHO": "1"}) as s:
        c = s.ws("/echo")
        check("WSD_ECHO=1 turns on /echo", c.status == 101, c.status)
        c.close()


def test_logs():
    with Server("--log-format", "json") as s:
        http_json(s.port, "GET", "/health")
    lines = [x for x in s.log if x.strip()]
    try:
        parsed = [json.loads(x) for x in lines]
        ok = all({"ts", "level", "msg"} <= set(p) for p in parsed)
    except ValueError:
        ok = False
    check("--log-format json: every line is a JSON object", ok and
          len(lines) >= 2, lines[:3])

    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "wsd.log")
        p = subprocess.Popen([WSD, "--listen", "127.0.0.1:0", "--echo",
                              "--log-file", path], stdin=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)

        def logged(what, f=path):
            return os.path.exists(f) and re.search(what, open(f).read())
        try:
            m = wait_for(lambda: logged(r"listening addr=\S+:(\d+)"))
            check("--log-file gets the lines", m)
            os.rename(path, path + ".1")
            p.send_signal(signal.SIGHUP)
            check("SIGHUP reopens the log file", wait_for(
                lambda: logged("SIGHUP")))
            if m:
                c = WS(int(m.group(1)), "/echo")
                check("still serving after SIGHUP", c.status == 101)
                c.close()
        finally:
            p.send_signal(signal.SIGTERM)
            rc = p.wait(timeout=DEADLINE)
        check("--log-file: exit 0, nothing on stderr", rc == 0 and
              p.stderr.read() == b"", rc)
        check("the old file kept its lines", logged("listening",
                                                   path + ".1"))


def _has_ipv6_loopback():
    try:
        t = socket.socket(socket.AF_INET6)
        t.bind(("::1", 0))
        t.close()
        return True
    except OSError:
        return False


def test_ipv6_and_two_listeners():
    if not _has_ipv6_loopback():
        print("SKIP: no IPv6 loopback here (not counted)", flush=True)
        return
    p = subprocess.Popen([WSD, "--listen", "[::1]:0", "--listen",
                          "127.0.0.1:0", "--echo"], stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL)
    ports = {}
    try:
        end = time.monotonic() + DEADLINE
        while len(ports) < 2 and time.monotonic() < end:
            line = p.stderr.readline().decode()
            m = re.search(r"listening addr=(\S+):(\d+)", line)
            if m:
                ports[m.group(1)] = int(m.group(2))
        check("two listeners, IPv6 and IPv4", set(ports) ==
              {"[::1]", "127.0.0.1"}, ports)
        if "[::1]" in ports:
            s6 = socket.create_connection(("::1", ports["[::1]"]),
                                          timeout=DEADLINE)
            c = WS(ports["[::1]"], "/echo", sock=s6)
            c.send(1, b"over v6")
            check("echo over IPv6", c.recv()[2] == b"over v6")
            c.close()
    finally:
        p.send_signal(signal.SIGTERM)
        check("exit 0", p.wait(timeout=DEADLINE) == 0)


def test_subprotocol():
    with Server("--echo", "--subprotocol", "wsd.v1") as s:
        c = s.ws("/echo", headers={"Sec-WebSocket-Protocol": "x, wsd.v1"})
        check("configured subprotocol echoed when offered",
              c.resp_headers.get("sec-websocket-protocol") == "wsd.v1",
              c.resp_headers)
        c.close()
        c = s.ws("/echo", headers={"Sec-WebSocket-Protocol": "other"})
        check("not echoed when not offered", c.status == 101 and
              "sec-websocket-protocol" not in c.resp_headers, c.resp_headers)
        c.close()


def _cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_out_of_fds():
    """With its fd limit reached, wsd drops what it cannot take instead of
    spinning on a readable listener, and serves again once fds are free."""
    limit = 64

    def low_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    p = subprocess.Popen([WSD, "--listen", "127.0.0.1:0", "--echo"],
                         stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                         preexec_fn=low_limit)
    try:
        port = None
        while port is None:
            m = re.search(r"listening addr=\S+:(\d+)",
                          p.stderr.readline().decode())
            port = int(m.group(1)) if m else None
        held = []
        for _ in range(limit + 20):
            try:
                held.append(socket.create_connection(("127.0.0.1", port),
                                                     timeout=DEADLINE))
            except OSError:
                break
        # Connections past the limit sit in the backlog; a busy loop
        # would burn a core while they wait.  Watch the CPU it uses over
        # a stretch of wall time (measured, not slept on for an event).
        cpu0, t0 = _cpu_seconds(p.pid), time.monotonic()
        time.sleep(2)
        used = _cpu_seconds(p.pid) - cpu0
        wall = time.monotonic() - t0
        check("out of fds: no busy loop", used < wall * 0.2,
              "cpu %.2fs in %.2fs" % (used, wall))
        for h in held:
            h.close()
        ok = wait_for(lambda: _echo_ok(port))
        check("serves again once fds are free", ok)
    finally:
        p.send_signal(signal.SIGTERM)
        check("exit 0 after running out of fds",
              p.wait(timeout=DEADLINE) == 0)
    check("the shortage was logged", b"out of file descriptors" in
          p.stderr.read())


def _echo_ok(port):
    try:
        c = WS(port, "/echo")
        c.send(1, b"back")
        ok = c.recv(5)[2] == b"back"
        c.close()
        return ok
    except Exception:
        return False


def test_systemd_notify():
    """Type=notify without libsystemd: READY=1 once listening, WATCHDOG=1
    from the loop at half of WATCHDOG_USEC, STOPPING=1 when the drain
    starts; nothing is sent without NOTIFY_SOCKET."""
    d = tempfile.mkdtemp()
    path = os.path.join(d, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(DEADLINE)
    got = []

    def until(state):
        while state not in got:
            try:
                got.append(sock.recv(4096).decode())
            except socket.timeout:
                return False
        return True
    srv = Server(env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})
    check("notify: READY=1 once listening", until("READY=1"), got)
    check("notify: the listener answers by then",
          http_json(srv.port, "GET", "/livez")[0] == 200)
    got.clear()
    check("notify: WATCHDOG=1 from the loop", until("WATCHDOG=1"), got)
    srv.stop()
    check("notify: STOPPING=1 on SIGTERM", until("STOPPING=1"), got)
    sock.close()
    os.unlink(path)
    os.rmdir(d)


if __name__ == "__main__":
    test_systemd_notify()
    test_command_line()
    test_listen_values()
    test_protected_by_address()
    test_token_require_exp()
    test_secret_file_limit()
    test_env_and_precedence()
    test_logs()
    test_ipv6_and_two_listeners()
    test_subprotocol()
    test_out_of_fds()
    done()
