"""A deliberately tiny HTTP/1.1 server on asyncio streams for three GET endpoints: /metrics
(Prometheus text format), /healthz (alive and making progress) and /readyz (started and
connected). One request per connection, bounded reads and timeouts, no thread: a scrape is
answered by the agent's own event loop, so a hung loop also shows as a failed scrape."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 5.0
MAX_HEADER_BYTES = 8192  # a longer request head is dropped unanswered


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"


Handler = Callable[[], Response]

_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 400: "Bad Request",
            503: "Service Unavailable"}  # fmt: skip


def json_response(ok: bool, body: dict[str, object]) -> Response:
    return Response(200 if ok else 503, (json.dumps(body, sort_keys=True) + "\n").encode())


class HttpEndpoint:
    def __init__(self, host: str, port: int, routes: dict[str, Handler]) -> None:
        self.host = host
        self.port = port  # the bound port once started (port 0 picks one)
        self._routes = routes
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Bind; raises OSError (e.g. address in use) for the caller to report."""
        self._server = await asyncio.start_server(
            self._serve, self.host, self.port, limit=MAX_HEADER_BYTES
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def serve_forever(self) -> None:
        assert self._server is not None, "start() first"
        async with self._server:
            await self._server.serve_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
            response = self._dispatch(head)
            writer.write(
                f"HTTP/1.1 {response.status} {_REASONS.get(response.status, '')}\r\n"
                f"Content-Type: {response.content_type}\r\n"
                f"Content-Length: {len(response.body)}\r\n"
                "Connection: close\r\n\r\n".encode()
                + response.body
            )
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass  # a client that went away or sent garbage gets nothing more
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    def _dispatch(self, head: bytes) -> Response:
        try:
            method, target, _version = head.split(b"\r\n", 1)[0].decode("ascii").split(" ")
        except ValueError:
            return Response(400, b"bad request\n", "text/plain")
        handler = self._routes.get(target.split("?", 1)[0])
        if handler is None:
            return Response(404, b"not found\n", "text/plain")
        if method != "GET":
            return Response(405, b"method not allowed\n", "text/plain")
        return handler()
