"""A loopback web server for test pages and the pinned npm builds they load."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.harness.synapse import free_port


@asynccontextmanager
async def static_site(
    files: Mapping[str, Path], directories: Mapping[str, Path] | None = None
) -> AsyncIterator[str]:
    """Serve each file at its path (``{"/": page}``) and each directory under its prefix,
    uncached, on 127.0.0.1; yields the base URL (``http://127.0.0.1:<port>``)."""
    headers = {"Cache-Control": "no-store"}

    def serve(path: Path) -> Any:
        async def handler(_: web.Request) -> web.FileResponse:
            return web.FileResponse(path, headers=headers)

        return handler

    app = web.Application()
    for route, path in files.items():
        app.router.add_get(route, serve(path))
    for prefix, directory in (directories or {}).items():
        app.router.add_static(prefix, directory)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
