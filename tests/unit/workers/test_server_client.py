"""The worker's HTTP client: keep-alive, reconnects, retries, and how answers map to errors."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from workers.client import LeaseLost, RequestRejected, ServerClient, ServerUnreachable


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive unless told otherwise
    server: _Server

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.seen.append((self.path, body, self.headers.get("Authorization")))
        status, answer, close = self.server.answers.pop(0)
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *_args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: list[tuple[str, bytes, str | None]] = []
        self.answers: list[tuple[int, object, bool]] = []
        self.connections = 0

    def get_request(self):  # type: ignore[no-untyped-def]
        self.connections += 1
        return super().get_request()


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _client(server: _Server, **kwargs: object) -> ServerClient:
    host, port = server.server_address[:2]
    return ServerClient(f"http://{host}:{port}", "tok", **kwargs)  # type: ignore[arg-type]


def test_requests_share_one_connection_and_carry_the_token(server: _Server) -> None:
    server.answers = [(200, {"should_prune": False}, False)] * 3
    client = _client(server)
    for step in range(1, 4):
        assert client.report(7, 1, step, 0.5) is False
    client.close()
    assert server.connections == 1
    path, body, auth = server.seen[0]
    assert path == "/api/v1/trials/7/report"
    assert json.loads(body) == {"worker_id": 1, "step": 1, "value": 0.5}
    assert auth == "Bearer tok"


def test_a_closed_connection_is_reopened_without_waiting(server: _Server) -> None:
    server.answers = [(200, {"should_prune": False}, True), (200, {"should_prune": True}, False)]
    client = _client(server, unreachable_timeout=0.01)  # no time for a backoff retry
    assert client.report(7, 1, 1, 0.5) is False
    assert client.report(7, 1, 2, 0.5) is True
    assert server.connections == 2


def test_server_errors_are_retried_then_reported(server: _Server) -> None:
    server.answers = [(503, {"detail": "busy"}, False), (200, {"should_prune": True}, False)]
    client = _client(server, unreachable_timeout=30)
    assert client.report(7, 1, 1, 0.5) is True
    assert len(server.seen) == 2
    server.answers = [(503, {"detail": "busy"}, False)] * 5
    with pytest.raises(ServerUnreachable):
        _client(server, unreachable_timeout=0.1).report(7, 1, 1, 0.5)


def test_answers_map_to_errors(server: _Server) -> None:
    server.answers = [
        (409, {"code": "lease_lost", "detail": "held by worker 2"}, False),
        (422, {"code": "invalid_request", "detail": "values: wrong"}, False),
    ]
    client = _client(server)
    with pytest.raises(LeaseLost, match="held by worker 2"):
        client.report(7, 1, 1, 0.5)
    with pytest.raises(RequestRejected) as caught:
        client.complete(7, 1, [1.0], {})
    assert caught.value.status == 422 and caught.value.detail == "values: wrong"


def test_nan_is_refused_before_sending(server: _Server) -> None:
    with pytest.raises(ValueError):
        _client(server).complete(7, 1, [float("nan")], {})
    assert server.seen == []


def test_threads_do_not_share_a_connection(server: _Server) -> None:
    server.answers = [(200, {"should_prune": False}, False)] * 40
    client = _client(server)

    def beat() -> None:
        for step in range(20):
            client.report(7, 1, step + 1, 0.5)

    threads = [threading.Thread(target=beat) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(server.seen) == 40
    assert server.connections == 2


def test_an_unreachable_server_gives_up_after_the_patience() -> None:
    client = ServerClient("http://127.0.0.1:9", unreachable_timeout=0.3)
    with pytest.raises(ServerUnreachable):
        client.heartbeat(1)


def test_url_must_be_http() -> None:
    with pytest.raises(ValueError, match="http"):
        ServerClient("ftp://example")
