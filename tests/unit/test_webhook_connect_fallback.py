"""The webhook forgery guard connects to each vetted address in turn, as urllib3 did before it resolved the
host itself: a receiver's address that does not answer in time (a dead member behind a round-robin name, an
IPv6 route that drops packets) must not fail the attempt while another of its addresses answers."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import pytest
import urllib3.connection

import webhooks.http as http_module
from webhooks.http import WebhookHttp

DEAD = "192.0.2.1"  # TEST-NET-1: the address that never answers


class _Receiver(BaseHTTPRequestHandler):
    hosts: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        _Receiver.hosts.append(self.headers["Host"])
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_an_address_timing_out_falls_back_to_the_next(monkeypatch: pytest.MonkeyPatch) -> None:
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    real_getaddrinfo, real_connect = socket.getaddrinfo, urllib3.connection.connection.create_connection

    def getaddrinfo(host, *args, **kwargs):  # type: ignore[no-untyped-def]
        if host == "receiver.test":
            return [
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", (DEAD, port)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port)),
            ]
        return real_getaddrinfo(host, *args, **kwargs)

    def create_connection(address, *args, **kwargs):  # type: ignore[no-untyped-def]
        if address[0] == DEAD:
            raise TimeoutError("timed out")  # socket.timeout: what a dropped SYN ends in
        return real_connect(address, *args, **kwargs)

    monkeypatch.setattr(http_module.socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(urllib3.connection.connection, "create_connection", create_connection)
    monkeypatch.setattr(http_module, "address_blocked", lambda address: False)  # 127.0.0.1 plays a public one
    try:
        http = WebhookHttp(allow_private=False, per_host=2, deadline_seconds=10, max_body=1000)
        answer = http.post(f"http://receiver.test:{port}/hook", b"{}", {"content-type": "application/json"})
    finally:
        server.shutdown()
    assert answer.error is None and answer.status == 204, answer
    assert _Receiver.hosts == [f"receiver.test:{port}"]  # the name, not the address it connected to
