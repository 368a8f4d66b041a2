"""The dashboard in a real browser (issue 14): `synctui serve` on 127.0.0.1, driven by
Playwright in the distribution's headless Chromium (no browser download).

`.ci/run` installs Chromium (`apt-get install chromium`) when it is missing. The test
saves its screenshot in its temporary folder (the artefact) and, with
SYNCTUI_UPDATE_SCREENSHOTS=1, as screenshots/browser.png for the README.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import sqlite3
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Route, async_playwright

from synctui.tui.serve import Refused, warning

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
GROUP, FOLLOWER = "NQ Momentum", "APEX-4472"  # sample_data/demo.json


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def ratio(db: Path, group: str, follower: str, symbol: str) -> int | None:
    """The follower's ratio as the served desk saved it (read-only, beside its writer):
    None until the desk is built; a follower with no settings row is at x1."""
    if not db.exists():
        return None
    with closing(sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)) as con:
        try:
            member = con.execute("SELECT 1 FROM group_followers WHERE grp = ? AND "
                                 "account = ?", (group, follower)).fetchone()
            row = con.execute("SELECT ratio FROM follower_settings WHERE grp = ? AND "
                              "follower = ? AND symbol = ?",
                              (group, follower, symbol)).fetchone()
        except sqlite3.OperationalError:  # the desk is still being built
            return None
    if member is None:
        return None
    return int(row[0]) if row else 1


async def until(check: Any, seconds: float, what: str) -> Any:
    for _ in range(int(seconds / 0.2)):
        found = check()
        if found:
            return found
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what}: not within {seconds} s")


@pytest.mark.skipif(CHROMIUM is None and not os.environ.get("SYNCTUI_BROWSER_REQUIRED"),
                    reason="no Chromium here (.ci/run installs it; CI never skips)")
async def test_the_dashboard_in_chromium_takes_a_key_and_changes_the_engine(
        tmp_path: Path) -> None:
    assert CHROMIUM is not None, "CI installs Chromium (.ci/run): it must be there"
    db = tmp_path / "desk.db"
    port = _free_port()
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "synctui.cli", "serve", "--port", str(port), "--db", str(db),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    elsewhere: list[str] = []
    try:
        await until(lambda: _listening(port), 30, "synctui serve listens")
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
            try:
                page = await browser.new_page(viewport={"width": 1600, "height": 900})

                async def local_only(route: Route) -> None:
                    url = route.request.url
                    if url.startswith((f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}",
                                       "data:", "blob:")):
                        await route.continue_()
                    else:
                        elsewhere.append(url)
                        await route.abort()

                await page.route("**/*", local_only)
                await page.goto(f"http://127.0.0.1:{port}/")
                # textual-serve marks the page once the app's first bytes arrive
                await page.wait_for_selector("body.-first-byte", timeout=60_000)
                # the demo desk: NQ Momentum's first follower, on MNQ, at x1
                await until(lambda: ratio(db, GROUP, FOLLOWER, "MNQ"), 60,
                            "the served desk is built")
                assert ratio(db, GROUP, FOLLOWER, "MNQ") == 1
                await asyncio.sleep(2)  # the dashboard is drawn and has focus
                await page.locator(".textual-terminal").click()
                await page.keyboard.press("+")  # the cursor is on the first follower
                await until(lambda: ratio(db, GROUP, FOLLOWER, "MNQ") == 2, 30,
                            "+ raised the ratio")
                await asyncio.sleep(1)  # the repaint reaches the page
                shot = tmp_path / "browser.png"
                await page.screenshot(path=str(shot))
                assert shot.stat().st_size > 10_000
                if os.environ.get("SYNCTUI_UPDATE_SCREENSHOTS") == "1":
                    shutil.copy(shot, ROOT / "screenshots" / "browser.png")
            finally:
                await browser.close()
    finally:
        server.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(server.wait(), 30)
        except TimeoutError:
            server.kill()
            await server.wait()
    assert elsewhere == []  # the page asked 127.0.0.1 and nothing else


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_serving_beyond_this_machine_warns_and_local_does_not() -> None:
    assert warning("127.0.0.1") is None and warning("localhost") is None
    said = warning("0.0.0.0")
    assert said is not None and "no authentication" in said and "\n" not in said


async def test_a_second_tab_on_the_same_database_is_refused_on_its_screen(
        tmp_path: Path) -> None:
    """Each tab is a process of its own; the database's lock refuses the second, and
    under textual-serve's driver the refusal is shown in that tab (`Refused`)."""
    from synctui.store.store import Store

    db = tmp_path / "desk.db"
    store = await Store.open(db)  # the first tab holds the database
    try:
        env = {**os.environ, "TEXTUAL_DRIVER": "textual.drivers.web_driver:WebDriver"}
        run = await asyncio.create_subprocess_exec(
            sys.executable, "-c",
            "import sys; from synctui.tui import serve; "
            "shown = []; serve.Refused.run = lambda self: shown.append(self.why); "
            "from synctui.cli import main; code = main(['--db', sys.argv[1]]); "
            "print('REFUSED:', shown); sys.exit(code)", str(db),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
        out, err = await asyncio.wait_for(run.communicate(), 60)
    finally:
        await store.close()
    assert run.returncode == 2
    assert "in use" in err.decode() or "another synctui" in err.decode()
    assert "REFUSED: ['" in out.decode()
    app = Refused("desk.db is in use by another synctui")
    async with app.run_test() as pilot:
        await pilot.pause()
        text = str(app.query_one("#why").render())
        assert "One synctui per database" in text and "in use" in text
        await pilot.press("q")
