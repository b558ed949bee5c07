"""The tiny asyncio HTTP endpoint over real loopback sockets: routes, errors, garbage input."""

from __future__ import annotations

import asyncio

from edge_agent.observability.http import HttpEndpoint, Response, json_response


async def _request(port: int, raw: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    writer.write_eof()
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return data


def test_routes_and_errors() -> None:
    async def main() -> None:
        ep = HttpEndpoint("127.0.0.1", 0, {
            "/metrics": lambda: Response(200, b"m 1\n", "text/plain"),
            "/healthz": lambda: json_response(False, {"status": "stalled"}),
        })  # fmt: skip
        await ep.start()
        assert ep.port != 0
        server = asyncio.create_task(ep.serve_forever())
        try:
            ok = await _request(ep.port, b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n")
            assert ok.startswith(b"HTTP/1.1 200 OK\r\n") and ok.endswith(b"\r\n\r\nm 1\n")
            assert b"Content-Length: 4\r\n" in ok
            bad = await _request(ep.port, b"GET /healthz HTTP/1.1\r\n\r\n")
            assert bad.startswith(b"HTTP/1.1 503 ") and bad.endswith(b'{"status": "stalled"}\n')
            assert (await _request(ep.port, b"GET /x HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 404")
            post = await _request(ep.port, b"POST /metrics HTTP/1.1\r\n\r\n")
            assert post.startswith(b"HTTP/1.1 405")
            assert (await _request(ep.port, b"nonsense\r\n\r\n")).startswith(b"HTTP/1.1 400")
            # A client that sends half a request and goes away gets nothing and harms nothing.
            assert await _request(ep.port, b"GET /metr") == b""
            assert await _request(ep.port, b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\n\r\n") == b""
            # The port is taken while the endpoint runs.
            other = HttpEndpoint("127.0.0.1", ep.port, {})
            try:
                await other.start()
            except OSError:
                pass
            else:
                raise AssertionError("a second endpoint bound the same port")
        finally:
            server.cancel()
            await asyncio.gather(server, return_exceptions=True)

    asyncio.run(main())
