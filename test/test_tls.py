"""TLS over loopback: wss and https with Python's ssl module as an
independent client, the TLS 1.3 suite order and session tickets,
certificate reload on SIGHUP, a refused bad certificate, and a stalled
handshake closed by the handshake timeout.

Certificates are made at test time by the openssl command.
"""
import asyncio
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile

from wsdtest import (Server, WS, check, done, make_cert, read_to_end,
                     tls_ctx, tls_socket, wait_for, OP_TEXT, OP_BIN, DEADLINE)


def peer_cn(tls_sock):
    der = tls_sock.getpeercert(binary_form=True)
    pem = ssl.DER_cert_to_PEM_cert(der)
    out = subprocess.run(["openssl", "x509", "-noout", "-subject"],
                         input=pem.encode(), capture_output=True).stdout
    return out.decode().strip()


class TLSWS(WS):
    """The harness's raw client over a TLS socket."""

    def __init__(self, port, path="/echo"):
        super().__init__(port, path, sock=tls_socket(port))


def https_get(port, path):
    t = tls_socket(port)
    t.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close"
               "\r\n\r\n" % path).encode())
    data = read_to_end(t)
    proto, alpn, cn = t.version(), t.selected_alpn_protocol(), peer_cn(t)
    t.close()
    return data, proto, alpn, cn


def test_https_and_wss(cert, key):
    with Server("--echo", "--tls-cert", cert, "--tls-key", key) as s:
        data, proto, alpn, _ = https_get(s.port, "/health")
        check("https /health", data.startswith(b"HTTP/1.1 200") and
              b'"status":"ok"' in data, data[:200])
        check("TLS 1.2 or later", proto in ("TLSv1.2", "TLSv1.3"), proto)
        check("ALPN http/1.1", alpn == "http/1.1", alpn)

        # TLS 1.1 is refused by the server: s_client, told to allow it,
        # must get the server's protocol_version alert (70), not fail on
        # its own side.
        p = subprocess.run(["openssl", "s_client", "-connect",
                            "127.0.0.1:%d" % s.port, "-tls1_1", "-cipher",
                            "DEFAULT:@SECLEVEL=0"], stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=DEADLINE)
        out = (p.stdout + p.stderr).decode("latin-1")
        check("TLS 1.1 refused by the server", "alert protocol version" in out
              or "alert number 70" in out, out[-400:])

        import websockets

        async def wss():
            async with websockets.connect(
                    "wss://127.0.0.1:%d/echo" % s.port, ssl=tls_ctx(),
                    max_size=None) as w:
                await w.send("hello")
                ok = await w.recv() == "hello"
                big = os.urandom(900 * 1024)
                await w.send(big)
                ok &= await w.recv() == big
                await w.send((b"x" * 1000 for _ in range(100)))
                ok &= await w.recv() == b"x" * 100000
                for i in range(300):
                    await w.send("m%d" % i)
                for i in range(300):
                    ok &= await w.recv() == "m%d" % i
                return ok
        check("wss echo with python websockets", asyncio.run(
            asyncio.wait_for(wss(), DEADLINE)))


def test_reload(d, cert, key):
    live_cert, live_key = os.path.join(d, "live.pem"), os.path.join(d, "live.key")
    shutil.copy(cert, live_cert)
    shutil.copy(key, live_key)
    new_cert, new_key = make_cert(d, "new", "reloaded.example")
    with Server("--echo", "--tls-cert", live_cert, "--tls-key",
                live_key) as s:
        _, _, _, cn = https_get(s.port, "/health")
        check("first certificate", "first.example" in cn, cn)
        stay = TLSWS(s.port)
        stay.send(OP_TEXT, b"before")
        check("client before reload", stay.recv()[2] == b"before")

        shutil.copy(new_cert, live_cert)
        shutil.copy(new_key, live_key)
        s.proc.send_signal(signal.SIGHUP)
        check("reload logged", wait_for(
            lambda: s.find("tls certificate reloaded")))
        _, _, _, cn = https_get(s.port, "/health")
        check("new certificate served after SIGHUP", "reloaded.example" in cn,
              cn)
        stay.send(OP_BIN, b"after")
        check("connection survives the reload", stay.recv()[2] == b"after")

        # A bad certificate is refused and the one in use stays.
        with open(live_cert, "w") as f:
            f.write("not a certificate\n")
        s.proc.send_signal(signal.SIGHUP)
        check("bad certificate refused", wait_for(
            lambda: s.find("tls reload refused")))
        _, _, _, cn = https_get(s.port, "/health")
        check("old certificate kept", "reloaded.example" in cn, cn)
        stay.send(OP_TEXT, b"still")
        check("connection survives a refused reload",
              stay.recv()[2] == b"still")
        stay.close()


def test_stalled_handshake(cert, key):
    with Server("--tls-cert", cert, "--tls-key", key,
                "--handshake-timeout", "1") as s:
        # TCP connects, TLS never starts: the server must hang up.
        raw = socket.create_connection(("127.0.0.1", s.port), timeout=DEADLINE)
        raw.sendall(b"\x16\x03\x01")       # a third of a record header
        raw.settimeout(DEADLINE)
        try:
            closed = raw.recv(100) == b""
        except ConnectionResetError:
            closed = True
        except socket.timeout:
            closed = False
        check("stalled TLS handshake closed", closed)
        raw.close()
        data, _, _, _ = https_get(s.port, "/livez")
        check("server still serves", data.startswith(b"HTTP/1.1 200"))


def s_client(port, *args):
    """One HTTP request through openssl s_client; its whole output."""
    req = (b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n"
           b"Connection: close\r\n\r\n")
    p = subprocess.run(["openssl", "s_client", "-connect",
                        "127.0.0.1:%d" % port, "-ign_eof"] + list(args),
                       input=req, capture_output=True, timeout=DEADLINE)
    return (p.stdout + p.stderr).decode("latin-1")


def test_suites_and_tickets(d, cert, key):
    """TLS 1.3: AES-128-GCM is preferred (cheaper records and key
    schedule), except for a client that puts ChaCha20 first; one session
    ticket after a full handshake, and it resumes."""
    with Server("--tls-cert", cert, "--tls-key", key) as s:
        t = tls_socket(s.port)
        suite = t.cipher()[0]
        t.close()
        check("python's default client gets TLS_AES_128_GCM_SHA256",
              suite == "TLS_AES_128_GCM_SHA256", suite)
        out = s_client(s.port, "-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256:"
                       "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384")
        check("a ChaCha20-first client gets ChaCha20",
              "Cipher is TLS_CHACHA20_POLY1305_SHA256" in out, out[-600:])
        sess = os.path.join(d, "sess.pem")
        out = s_client(s.port, "-sess_out", sess)
        check("one ticket after a full handshake",
              out.count("New Session Ticket arrived") == 1 and
              "HTTP/1.1 200" in out, out[-600:])
        out = s_client(s.port, "-sess_in", sess)
        check("the ticket resumes", "Reused, TLSv1.3" in out and
              "HTTP/1.1 200" in out, out[-600:])


def test_bad_files(d):
    bad = os.path.join(d, "missing.pem")
    p = subprocess.run([os.environ.get("WSD", "./wsd"), "--listen",
                        "127.0.0.1:0", "--tls-cert", bad, "--tls-key", bad],
                       capture_output=True, timeout=DEADLINE)
    check("missing certificate: exit 1 with a reason", p.returncode == 1 and
          b"cannot load certificate" in p.stderr, p.stderr)
    p = subprocess.run([os.environ.get("WSD", "./wsd"), "--listen",
                        "127.0.0.1:0", "--tls-cert", bad], capture_output=True,
                       timeout=DEADLINE)
    check("cert without key: exit 2", p.returncode == 2, p.stderr)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as d:
        cert, key = make_cert(d, "first", "first.example")
        test_https_and_wss(cert, key)
        test_suites_and_tickets(d, cert, key)
        test_reload(d, cert, key)
        test_stalled_handshake(cert, key)
        test_bad_files(d)
    done()
