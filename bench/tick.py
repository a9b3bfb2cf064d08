#!/usr/bin/python3
"""bench/tick.py - the loop time of one session tick at scale.

Starts wsd with --log-level debug, creates N sessions over keep-alive HTTP
(default 100,000), waits for the tick that reports them, then makes C
changes (default 1,000: half deleted, half created) and reads the "tick ... us="
log line of the tick that carries them.  Prints one key=value line.

    bench/tick.py [N] [C]

The binary is ./wsd, or $WSD.
"""
import os
import re
import socket
import queue
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
C = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
WSD = os.environ.get("WSD", os.path.join(ROOT, "wsd"))


def pipeline(port, reqs):
    """Send requests on one keep-alive connection, 500 at a time."""
    s = socket.create_connection(("127.0.0.1", port))
    for i in range(0, len(reqs), 500):
        batch = reqs[i:i + 500]
        s.sendall(b"".join(batch))
        got = 0
        data = b""
        while got < len(batch):
            chunk = s.recv(1 << 20)
            if not chunk:
                sys.exit("tick: wsd closed the connection: %r" % data[-200:])
            data += chunk
            got = data.count(b"HTTP/1.1 ")
    s.close()


def post(i):
    body = b'{"id":"s%d"}' % i
    return (b"POST /api/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d"
            b"\r\n\r\n%s" % (len(body), body))


def delete(i):
    return b"DELETE /api/sessions/s%d HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % i


def lines(p, timeout=120):
    """wsd's log lines, read by a thread so its stderr never fills up."""
    q = queue.Queue()
    threading.Thread(target=lambda: [q.put(x) for x in p.stderr],
                     daemon=True).start()
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            yield q.get(timeout=1)
        except queue.Empty:
            pass


def main():
    p = subprocess.Popen([WSD, "--listen",
                          "127.0.0.1:0", "--log-level", "debug", "--tick",
                          "1", "--max-sessions", str(N + C)],
                         stderr=subprocess.PIPE, text=True)
    log = lines(p)
    try:
        port = None
        for line in log:
            m = re.search(r"listening addr=\S+:(\d+)", line)
            if m:
                port = int(m.group(1))
                break
        pipeline(port, [post(i) for i in range(N)])
        ticks = []
        for line in log:
            m = re.search(r"tick sessions=(\d+) created=(\d+) "
                          r"destroyed=(\d+) us=(\d+)", line)
            if m:
                ticks.append(tuple(int(x) for x in m.groups()))
                if sum(t[1] for t in ticks) >= N:
                    break
        first = max(t[3] for t in ticks)
        changes = [delete(i) for i in range(C // 2)]
        changes += [post(N + i) for i in range(C - C // 2)]
        pipeline(port, changes)
        seen = 0
        worst = 0
        for line in log:
            m = re.search(r"tick sessions=(\d+) created=(\d+) "
                          r"destroyed=(\d+) us=(\d+)", line)
            if m:
                seen += int(m.group(2)) + int(m.group(3))
                worst = max(worst, int(m.group(4)))
                if seen >= C:
                    break
        print("mode=tick sessions=%d changes=%d tick_us=%d "
              "first_tick_us=%d" % (N, C, worst, first))
    finally:
        p.terminate()
        p.wait(timeout=20)


if __name__ == "__main__":
    main()
