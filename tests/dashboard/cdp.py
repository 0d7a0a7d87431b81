"""A little of Chrome's DevTools protocol over aiohttp's websocket client: enough to load a
page, evaluate JavaScript in it and take a screenshot, with headless Chromium."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from tests.harness import free_port


class Page:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.n = 0

    async def call(self, method: str, timeout: float = 10, **params: Any) -> dict[str, Any]:
        self.n += 1
        await self.ws.send_json({"id": self.n, "method": method, "params": params})
        async with asyncio.timeout(timeout):
            async for m in self.ws:
                doc = m.json()
                if doc.get("id") == self.n:
                    if "error" in doc:
                        raise AssertionError(f"{method}: {doc['error']}")
                    return dict(doc.get("result", {}))
        raise AssertionError(f"{method}: the browser went away")

    async def evaluate(self, expression: str) -> Any:
        r = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return r.get("result", {}).get("value")

    async def screenshot(self) -> bytes:
        return base64.b64decode((await self.call("Page.captureScreenshot", format="png"))["data"])


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Page]:
    port = free_port()
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        proc = subprocess.Popen(  # noqa: ASYNC220 (it starts at once)
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--no-first-run", f"--user-data-dir={profile}", f"--remote-debugging-port={port}",
             "--window-size=1200,700", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        try:
            async with aiohttp.ClientSession() as http:
                targets: list[dict[str, Any]] = []
                async with asyncio.timeout(15):
                    while not targets:
                        try:
                            r = await http.get(f"http://127.0.0.1:{port}/json")
                            targets = [t for t in await r.json() if t["type"] == "page"]
                        except aiohttp.ClientError:
                            await asyncio.sleep(0.1)
                url = targets[0]["webSocketDebuggerUrl"]
                async with http.ws_connect(url, max_msg_size=0) as ws:
                    page = Page(ws)
                    await page.call("Page.enable")
                    yield page
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # chromium and its helpers
            proc.wait()
