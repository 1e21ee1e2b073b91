#!/usr/bin/python3
"""Host ends of the network tests' TCP transfers (runs inside the L1 test host).

  netcheck.py recv PORT          accept one connection on PORT, read to the end; prints
                                 HOST-RECV-BYTES-PORT, HOST-RECV-SUM-PORT (md5) and
                                 HOST-RECV-BPS-PORT (bytes per second, first byte to end)
  netcheck.py send IP PORT KB    send KB KiB of random bytes to IP:PORT (retrying the
                                 connection for a minute); prints HOST-SEND-SUM-PORT,
                                 HOST-SEND-EXIT-PORT (0: all sent and the peer closed) and
                                 HOST-SEND-BPS-PORT
"""
import hashlib
import os
import socket
import sys
import time

TIMEOUT = 180


def out(key, value):
    print(f"{key}={value}", flush=True)


def recv(port):
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", port))
    srv.listen(1)
    srv.settimeout(TIMEOUT)
    out(f"HOST-LISTENING-{port}", 1)
    conn, _ = srv.accept()
    conn.settimeout(TIMEOUT)
    md5, n, first = hashlib.md5(), 0, None
    while True:
        b = conn.recv(1 << 16)
        if not b:
            break
        if first is None:
            first = time.monotonic()
        md5.update(b)
        n += len(b)
    secs = time.monotonic() - (first or time.monotonic())
    out(f"HOST-RECV-BYTES-{port}", n)
    out(f"HOST-RECV-SUM-{port}", md5.hexdigest())
    out(f"HOST-RECV-BPS-{port}", int(n / secs) if secs > 0 else 0)


def send(ip, port, kb):
    data = os.urandom(kb * 1024)
    out(f"HOST-SEND-SUM-{port}", hashlib.md5(data).hexdigest())
    deadline = time.monotonic() + 60
    while True:
        try:
            s = socket.create_connection((ip, port), timeout=TIMEOUT)
            break
        except OSError:
            if time.monotonic() > deadline:
                out(f"HOST-SEND-EXIT-{port}", "no connection")
                return
            time.sleep(0.5)
    start = time.monotonic()
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    # The peer closes once it has read everything.
    while s.recv(1 << 16):
        pass
    secs = time.monotonic() - start
    out(f"HOST-SEND-EXIT-{port}", 0)
    out(f"HOST-SEND-BPS-{port}", int(len(data) / secs) if secs > 0 else 0)


def main():
    try:
        if sys.argv[1] == "recv":
            recv(int(sys.argv[2]))
        elif sys.argv[1] == "send":
            send(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        else:
            sys.exit(f"netcheck.py: unknown command {sys.argv[1]}")
    except (OSError, IndexError, ValueError) as e:
        print(f"NETCHECK-ERROR={e}", flush=True)
        sys.exit(1)


main()
