#!/usr/bin/env python3
"""Waits until a Kafka cluster really answers a Metadata request listing every broker.

usage: wait_ready.py HOST:PORT EXPECTED_BROKERS TIMEOUT_SECONDS

Speaks the Kafka wire protocol directly (Metadata v4: the oldest version Kafka 4
still accepts), so it needs nothing but Python. Exits 0 when the broker lists
EXPECTED_BROKERS brokers and an active controller, 1 on timeout.
"""
import socket
import struct
import sys
import time


def metadata_v4(host, port):
    client = b"flowcast-wait"
    # Request header v1: api_key=3 (Metadata), api_version=4, correlation_id, client_id.
    header = struct.pack(">hhih", 3, 4, 7, len(client)) + client
    # Body: topics = null (-1: all topics), allow_auto_topic_creation = false.
    body = struct.pack(">i?", -1, False)
    msg = header + body
    with socket.create_connection((host, port), timeout=5) as s:
        s.settimeout(5)
        s.sendall(struct.pack(">i", len(msg)) + msg)
        size = struct.unpack(">i", recv_exact(s, 4))[0]
        data = recv_exact(s, size)
    pos = 4  # correlation id
    pos += 4  # throttle_time_ms
    (n_brokers,) = struct.unpack_from(">i", data, pos)
    pos += 4
    for _ in range(n_brokers):
        pos += 4  # node_id
        (hl,) = struct.unpack_from(">h", data, pos)
        pos += 2 + hl + 4  # host, port
        (rl,) = struct.unpack_from(">h", data, pos)
        pos += 2 + max(rl, 0)  # rack
    (cl,) = struct.unpack_from(">h", data, pos)
    pos += 2 + max(cl, 0)  # cluster id
    (controller,) = struct.unpack_from(">i", data, pos)
    return n_brokers, controller


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    return buf


def main():
    addr, expected, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    host, port = addr.rsplit(":", 1)
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        try:
            n, controller = metadata_v4(host, int(port))
            if n >= expected and controller >= 0:
                print(f"kafka at {addr}: {n} broker(s), controller {controller}")
                return 0
            last = f"{n} of {expected} brokers, controller {controller}"
        except (OSError, struct.error) as e:
            last = str(e)
        time.sleep(0.5)
    print(f"kafka at {addr} not ready after {timeout:.0f}s: {last}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
