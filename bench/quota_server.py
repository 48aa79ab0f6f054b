"""S8q's origin: the project's test server with a RateLimit request quota.

nginx cannot send a quota, so bench/run.py starts this script for S8q: a
``downloader.testing.FileServer`` holding every file under ROOT in memory
(served at ``/<path relative to ROOT>``), with ``QuotaWindow(limit, seconds)``:
each window allows ``limit`` requests, later ones are answered 429, and every
answer carries ``RateLimit-Limit/-Remaining/-Reset``. Each request is logged
to --log as nginx's timing log is (``$msec $request_time $status
$bytes_sent``), so the harness counts the 429s the same way.

  python bench/quota_server.py ROOT --port 8080 --limit 20 --log quota.log
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from downloader.testing import FileServer, QuotaWindow

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def load(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


async def serve(args: argparse.Namespace, files: dict[str, bytes]) -> None:
    quota = QuotaWindow(args.limit, args.seconds)
    server = FileServer(files=files, quota=quota)
    log = args.log.open("a", buffering=1)  # O_APPEND: the harness truncates it

    @web.middleware
    async def timing(request: web.Request, handler: Handler) -> web.StreamResponse:
        began, status, sent = time.time(), 500, 0
        try:
            response = await handler(request)
            status = response.status
            sent = response.body_length
            return response
        finally:
            end = time.time()
            log.write(f"{end:.3f} {end - began:.3f} {status} {sent}\n")

    app = server.app()
    app.middlewares.append(timing)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args.port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"serving {len(files)} files on 127.0.0.1:{args.port}", flush=True)
    await stop.wait()
    await runner.cleanup()
    log.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("root", type=Path)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--limit", type=int, default=20, help="requests per window")
    ap.add_argument("--seconds", type=float, default=1.0, help="window length")
    ap.add_argument("--log", type=Path, required=True)
    args = ap.parse_args()
    asyncio.run(serve(args, load(args.root)))


if __name__ == "__main__":
    main()
