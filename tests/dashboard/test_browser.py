"""The dashboard in a real browser against a real one-node cluster: the page follows a
service being scaled without a reload."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.dashboard.cdp import chromium
from tests.harness import ROOT, free_port, new_cluster, shoal

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium"),
]


def _wait_up(url: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"the dashboard did not answer on {url}") from None
            time.sleep(0.1)


async def _services_text(page: object, want: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = str(await page.evaluate("document.getElementById('services').innerText"))  # type: ignore[attr-defined]
        if want in text:
            return text
        await asyncio.sleep(0.1)
    raise AssertionError(f"the page never showed {want!r}; it showed {text!r}")


async def test_the_page_follows_a_service_scaled_to_3_without_a_reload(tmp_path: Path) -> None:
    with new_cluster(tmp_path, "--driver", "process") as (cluster, _):
        port = free_port()
        dash = subprocess.Popen(  # noqa: ASYNC220 (it starts at once)
            [sys.executable, "-m", "agent.cli", "--data-dir", str(cluster.manager),
             "dashboard", "--listen", f"127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            await asyncio.to_thread(_wait_up, f"http://127.0.0.1:{port}/api/state")
            async with chromium() as page:
                await page.call("Page.navigate", url=f"http://127.0.0.1:{port}/")
                await asyncio.to_thread(
                    shoal, "service", "create", "--name", "web", "/bin/sleep", "3600",
                    data=cluster.manager,
                )  # fmt: skip
                await _services_text(page, "1/1", 20)
                await asyncio.to_thread(shoal, "service", "scale", "web=3", data=cluster.manager)
                await _services_text(page, "3/3", 20)
                shot = await page.screenshot()
            artifacts = ROOT / "tests" / "artifacts"
            artifacts.mkdir(exist_ok=True)
            (artifacts / "dashboard.png").write_bytes(shot)
        finally:
            dash.terminate()
            dash.wait(10)
