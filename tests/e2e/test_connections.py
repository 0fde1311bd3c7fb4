"""Half-sent requests cannot starve a real `qgjob server` (issue 20, finding 1): a request head that does not arrive
in time is cut, a client address holds a bounded number of connections, and other clients are served meanwhile.
Loopback only: the other client speaks from 127.0.0.2, another address of the loopback network."""

from __future__ import annotations

import contextlib
import socket
import time
from pathlib import Path

import httpx

from tests.e2e.harness import Server, wait_for

HALF_SENT = b"GET /api/jobs HTTP/1.1\r\nHost: x\r\n"  # and never the blank line that ends the head
BOUND = 40
HEAD_TIMEOUT = 2.0


def _half_sent(port: int, count: int) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        with contextlib.suppress(OSError):  # refused at once: the reset may come before this send
            s.sendall(HALF_SENT)
        sockets.append(s)
    return sockets


def _answer(s: socket.socket, timeout: float) -> bytes:
    """What the server answered before it closed the connection (b"" for a reset or a plain close)."""
    s.settimeout(timeout)
    received = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := s.recv(4096):
            received += chunk
    return received


def test_half_sent_requests_are_bounded_and_cut_while_others_are_served(db_url: str, tmp_path: Path) -> None:
    env = {"QUALGENT_MAX_CONNECTIONS_PER_ADDRESS": str(BOUND), "QUALGENT_HEADER_TIMEOUT_SECONDS": str(HEAD_TIMEOUT)}
    server = Server(tmp_path / "server.log", database_url=db_url, env=env).start()
    try:
        with httpx.Client(
            base_url=server.api_url, transport=httpx.HTTPTransport(local_address="127.0.0.2"), timeout=5
        ) as other:
            assert other.get("/health").status_code == 200  # (the harness waited for health from 127.0.0.1)
            time.sleep(HEAD_TIMEOUT + 0.5)  # the harness's own connections are gone
            opened = time.monotonic()
            sockets = _half_sent(server.port, 300)
            try:
                # Another address is served, promptly, while 300 half-sent requests are open.
                latencies = []
                for _ in range(20):
                    began = time.monotonic()
                    assert other.get("/jobs").status_code == 200
                    latencies.append(time.monotonic() - began)
                assert sorted(latencies)[10] < 0.5, latencies
                answers = [_answer(s, timeout=HEAD_TIMEOUT + 10) for s in sockets]
                took = time.monotonic() - opened
            finally:
                for s in sockets:
                    s.close()
            refused = [a for a in answers if not a.startswith(b"HTTP/1.1 408")]
            timed_out = [a for a in answers if a.startswith(b"HTTP/1.1 408")]
            # No more than the bound were held; the rest were refused at once, with a 429 when it could be read.
            assert len(timed_out) <= BOUND
            assert len(refused) >= 300 - BOUND
            assert all(a == b"" or a.startswith(b"HTTP/1.1 429") for a in refused), {a[:40] for a in refused}
            assert any(a.startswith(b"HTTP/1.1 429") for a in refused)
            assert b'"status_code":408' in timed_out[0]
            assert took < HEAD_TIMEOUT + 10
            # The bound is freed: this address is served again.
            assert httpx.get(f"{server.api_url}/health", timeout=5).status_code == 200
            lines = ["no request head within 2 s (408)", f"over {BOUND} connections from one address (429)"]
            wait_for(lambda: all(line in server.log() for line in lines), 15, what=f"log lines {lines}")
            cut = [line for line in server.log().splitlines() if "connection(s) from 127.0.0.1" in line]
            assert len(cut) <= 4, cut  # counted, not a line per connection
    finally:
        server.stop()


def test_a_keep_alive_connection_dribbling_its_next_head_is_cut(db_url: str, tmp_path: Path) -> None:
    env = {"QUALGENT_HEADER_TIMEOUT_SECONDS": "1"}
    server = Server(tmp_path / "server.log", database_url=db_url, env=env).start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            s.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
            first = b""
            while b"}" not in first:  # the head, then the JSON body
                first += s.recv(65536)
            assert first.startswith(b"HTTP/1.1 200"), first
            began = time.monotonic()
            s.sendall(b"GET /api/health HTTP/1.1\r\n")  # a second request, begun and never finished
            for _ in range(3):  # a byte now and then does not reset the deadline
                time.sleep(0.3)
                s.sendall(b"X")
            answer = _answer(s, timeout=10)
            assert answer.startswith(b"HTTP/1.1 408"), answer
            assert 0.9 < time.monotonic() - began < 5
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as idle:
            began = time.monotonic()
            assert _answer(idle, timeout=10).startswith(b"HTTP/1.1 408")  # nothing sent at all
            assert time.monotonic() - began < 5
    finally:
        server.stop()
