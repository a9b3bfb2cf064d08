"""test_interop - an independent client, Debian's python3-websockets, on /echo.

Text and binary, small and 1 MiB, fragmented (websockets sends an iterable
as fragments), ping/pong and a clean close.  A missing websockets module
is a failure, not a pass: apt-get install -y python3-websockets.

    WSD=./wsd /usr/bin/python3 test/test_interop.py
"""
import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wsdtest import DEADLINE, Server, check, done  # noqa: E402

try:
    import websockets
except ImportError:
    websockets = None


async def roundtrip(ws, msg, name):
    await ws.send(msg)
    got = await asyncio.wait_for(ws.recv(), DEADLINE)
    check(name, type(got) is type(msg) and got == msg,
          "sent %s of %d, got %s of %d" % (type(msg).__name__, len(msg),
                                           type(got).__name__, len(got)))


async def fragmented(ws, parts, name):
    await ws.send(parts)        # an iterable goes out as one fragmented message
    got = await asyncio.wait_for(ws.recv(), DEADLINE)
    want = parts[0][:0].join(parts)
    check(name, got == want, "got %d, want %d" % (len(got), len(want)))


async def client(port):
    uri = "ws://127.0.0.1:%d/echo" % port
    async with websockets.connect(uri, max_size=4 << 20,
                                  open_timeout=DEADLINE,
                                  close_timeout=DEADLINE) as ws:
        check("websockets: no extension negotiated",
              ws.response_headers.get("Sec-WebSocket-Extensions") is None,
              repr(ws.response_headers.get("Sec-WebSocket-Extensions")))
        await roundtrip(ws, "hello from python-websockets", "websockets: text")
        await roundtrip(ws, "\u00b5\u20ac\U0001f600 \u03ba\u1f79\u03c3\u03bc\u03b5",
                        "websockets: multi-byte text")
        await roundtrip(ws, "", "websockets: empty text")
        await roundtrip(ws, bytes(range(256)), "websockets: binary")
        await roundtrip(ws, "t" * (1 << 20), "websockets: 1 MiB text")
        await roundtrip(ws, os.urandom(1 << 20), "websockets: 1 MiB binary")
        await fragmented(ws, ["frag1 ", "\u00e9\u20ac ", "frag3"],
                         "websockets: fragmented text")
        await fragmented(ws, [b"\x00\x01", b"", b"\x02" * 70000],
                         "websockets: fragmented binary")
        await fragmented(ws, [os.urandom(65536) for _ in range(16)],
                         "websockets: 1 MiB binary in 16 fragments")
        waiter = await ws.ping(b"interop-ping")
        try:
            await asyncio.wait_for(waiter, DEADLINE)
            ponged = True
        except asyncio.TimeoutError:
            ponged = False
        check("websockets: ping answered", ponged)
        await ws.close(code=1000, reason="bye")
        check("websockets: close code echoed", ws.close_code == 1000,
              "close_code %r" % ws.close_code)


def main():
    if not check("python3-websockets importable", websockets is not None,
                 "apt-get install -y python3-websockets"):
        done()
    with Server("--echo") as srv:
        try:
            asyncio.run(asyncio.wait_for(client(srv.port), 120))
        except Exception as e:      # a dropped connection, a timeout
            check("websockets: the session ran to its end", False, repr(e))
    done()


if __name__ == "__main__":
    main()
