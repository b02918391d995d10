"""A lean HTTP/1.1 client for load generation.

On a small machine the load generator shares the CPUs with the server. A general-purpose
client (httpx) spends milliseconds per request on multipart encoding and protocol objects;
at a few dozen requests/s that starved the generator's own event loop by seconds, which showed
up as server latency. This client sends requests encoded once per image and parses only the
status line, the headers and a Content-Length body.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..images import Blob


def encode_detect(host: str, image: Blob, path: str = "/detect", headers: dict[str, str] | None = None) -> bytes:
    """A complete ``POST /detect`` (multipart, one ``file`` field) as bytes, ready to write to a socket."""
    name, data = image
    boundary = "dif-load-" + "0123456789abcdef" * 2
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", f"Content-Type: multipart/form-data; boundary={boundary}",
             f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


@dataclass
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    idle_since: float = 0.0


class LeanClient:
    """Keep-alive connections to one ``http://host:port``; as many open at once as requests in flight."""

    # Idle connections are dropped before uvicorn's 5 s keep-alive timeout: reusing one the server
    # is closing at that instant loses the request (a client-side race, not a server fault).
    IDLE_EXPIRY_S = 2.0

    def __init__(self, url: str, timeout_s: float):
        parsed = urlsplit(url)
        if parsed.scheme != "http" or parsed.hostname is None:
            raise ValueError(f"the load client speaks plain http:// only, not {url}")
        self.host, self.port = parsed.hostname, parsed.port or 80
        self.netloc = parsed.netloc
        self.timeout_s = timeout_s
        self._idle: list[_Connection] = []

    async def send(self, request: bytes) -> Response:
        """One request/response within ``timeout_s``; retried once on a fresh connection if a reused
        one turns out closed before any answer (the server never saw the request)."""
        return await asyncio.wait_for(self._send(request), self.timeout_s)

    async def _send(self, request: bytes) -> Response:
        reused = self._take_idle()
        if reused is not None:
            try:
                return await self._exchange(reused, request)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
        conn = _Connection(*await asyncio.open_connection(self.host, self.port))
        return await self._exchange(conn, request)

    def _take_idle(self) -> _Connection | None:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if now - conn.idle_since < self.IDLE_EXPIRY_S and not conn.reader.at_eof():
                return conn
            conn.writer.close()
        return None

    async def _exchange(self, conn: _Connection, request: bytes) -> Response:
        try:
            conn.writer.write(request)
            await conn.writer.drain()
            status_line, *lines = (await conn.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            headers = {}
            for line in lines:
                if ":" in line:
                    key, value = line.split(":", 1)
                    headers[key.strip().lower()] = value.strip()
            body = await conn.reader.readexactly(int(headers.get("content-length", "0")))
        except BaseException:  # cancelled by the timeout included: never reuse a half-read connection
            conn.writer.close()
            raise
        if headers.get("connection", "").lower() == "close":
            conn.writer.close()
        else:
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
        return Response(int(status_line.split()[1]), headers, body)

    async def close(self) -> None:
        for conn in self._idle:
            conn.writer.close()
        self._idle.clear()

