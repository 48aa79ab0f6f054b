"""RawReplyServer: raw HTTP replies no framework sends (for ``downloader.testing``)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field


@dataclass
class RawReplyServer:
    """Answers every request with the same raw bytes: replies no framework sends.

    For the server bugs that matter to a downloader (a length it never
    reaches, a chunked body cut short, codings nobody asked for, HTTP/1.0
    without a length). ``pause_at`` splits the reply in two sends, so the
    client sees the first part before the rest. After ``reply`` the
    connection is closed, or, with
    ``hold_open``, left open until the client goes (a body that never ends).
    ``heads`` keeps each request head as received.
    """

    reply: bytes
    hold_open: bool = False
    pause_at: int | None = None  # send this many bytes, pause 0.1 s, send the rest
    heads: list[bytes] = field(default_factory=list)
    base_url: str = ""
    _server: asyncio.Server | None = None

    async def start(self, host: str = "127.0.0.1") -> str:
        self._server = await asyncio.start_server(self._handle, host, 0)
        port = self._server.sockets[0].getsockname()[1]
        self.base_url = f"http://{host}:{port}"
        return self.base_url

    def url(self, name: str) -> str:
        return f"{self.base_url}/{name}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    async def _handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.heads.append(head)
            at = len(self.reply) if self.pause_at is None else self.pause_at
            writer.write(self.reply[:at])
            await writer.drain()
            if at < len(self.reply):
                await asyncio.sleep(0.1)  # so the client reads what came first
                writer.write(self.reply[at:])
                await writer.drain()
            if self.hold_open:
                await reader.read()  # until the client hangs up
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass
        finally:
            writer.close()
