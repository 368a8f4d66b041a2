"""The UI's handle on the engine: opens the store, runs commands, ticks the demo.

Every command from a widget goes through `run`, which turns a refusal into a
message for the trader (never a traceback) and settles the store after it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from synctui.domain.clock import Clock, SystemClock
from synctui.domain.errors import Refused
from synctui.engine.engine import Engine
from synctui.engine.world import World
from synctui.scenario.model import Scenario
from synctui.scenario.runner import build_world, play_steps
from synctui.store.database import default_path
from synctui.store.history import History
from synctui.store.session import Session
from synctui.store.store import Store


class Driver(Protocol):
    """What moves a desk between a trader's commands: `tick` is one step (a market
    move, a leader's decision, a broker's answers), lines for the log."""

    def tick(self) -> list[str]: ...


class LiveDesk(Driver, Protocol):
    """A desk on live brokers (the exchange demo): it opens its world on the app's
    event loop (a broker's streams run there) and closes it at quit. Kept in memory:
    the exchange holds the accounts, and the groups are the desk's own. `open` takes
    `wake`, to call when a broker has news: the desk then polls at once."""

    async def open(self, wake: Callable[[], None]) -> World: ...
    async def close(self) -> None: ...


class Desk:
    def __init__(self, world: World | None = None, *, db: Path | None = None,
                 scenario: Path | None = None, seed: int = 7, clock: Clock | None = None,
                 demo: bool = True, live: LiveDesk | None = None) -> None:
        self._given = world
        self.live = live
        self.db = db or default_path()
        self.scenario = scenario
        self.seed = seed
        self.clock: Clock = clock or (world.clock if world else SystemClock())
        self.demo = demo
        self.session: Session | None = None
        self.driver: Driver | None = None  # the demo's market and leaders
        self.world: World = world  # type: ignore[assignment]  # set in open() otherwise
        self._lock = asyncio.Lock()
        # Steps of the scenario built into a new database that were refused, as replay
        # lists them ({"step": index, "message": ...}); shown by the app at start.
        self.refusals: list[dict[str, Any]] = []
        self._closing = False  # close() has begun: no tick starts any more
        self._ticks: set[asyncio.Task[list[str]]] = set()  # in flight, held until done
        self._woken = False  # a poll for a live broker's news is on its way
        self._polls: set[asyncio.Task[None]] = set()  # held until done

    @property
    def engine(self) -> Engine:
        return self.world.engine

    @property
    def history(self) -> History | None:
        """The database's order and fill history; None for a desk kept in memory."""
        return self.session.store.history if self.session is not None else None

    def export_path(self) -> Path:
        """A new CSV file beside the database, named by the desk's time."""
        stamp = self.clock.now().strftime("%Y%m%d-%H%M%S")
        folder = self.db.parent / "exports"
        path = folder / f"blotter-{stamp}.csv"
        count = 1
        while path.exists():
            count += 1
            path = folder / f"blotter-{stamp}-{count}.csv"
        return path

    async def open(self) -> None:
        """In memory when a world was given (tests); otherwise from the database,
        building the demo desk (or `--scenario`) into it on first start: the world
        first, then its steps through the engine with the store attached, so that
        whatever a step makes (copies, their funds, mirrors, failures) is journaled
        and saved like any later change. Refused steps are kept in `refusals`."""
        if self.live is not None:
            self.world = self._given = await self.live.open(self.wake)
            self.clock = self.world.clock
            self.driver = self.live
            return
        if self._given is None:
            store = await Store.open(self.db)
            try:
                scenario = self._scenario() if store.fresh else None

                def build() -> World:  # called for a new database only
                    assert scenario is not None
                    return build_world(scenario, self.clock)

                self.session = await Session.start(store, self.clock, build)
                if scenario is not None:
                    self.refusals = (await play_steps(self.session, scenario.steps)).errors
            except BaseException:
                self.session = None
                await store.close()  # its worker thread would keep the process alive
                raise
            self.world = self.session.world
        if self.demo:
            from synctui.scenario.demo import DemoDriver

            self.driver = DemoDriver(self.world, self.seed)

    def _scenario(self) -> Scenario:
        from synctui.scenario.demo import DEFAULT_DEMO, load_demo

        return load_demo(self.scenario or DEFAULT_DEMO)

    async def run(self, command: Callable[[Engine], object], what: str = "") -> str | None:
        """Run one engine command; a refusal comes back as its message. One at a time:
        a command never starts while another (or a demo tick) is settling. The event
        log records what the trader did, refused or not."""
        async with self._lock:
            try:
                command(self.engine)
            except Refused as refused:
                self._note(f"refused: {what}: {refused.message}" if what else "")
                return refused.message
            else:
                self._note(what)
            finally:
                if self.session is not None:
                    await self.session.settle()
        return None

    def _note(self, what: str) -> None:
        if what and self.session is not None:
            self.session.store.note("user", "command", what)

    async def tick(self) -> list[str]:
        """One demo market step, saved. The step runs in a task of its own, shielded:
        when the caller is cancelled mid-commit (the app's timer, stopped at quit) it
        returns at once and the step finishes; close() waits for it. A cancellation
        must never reach the store's transaction: a COMMIT already on its way to the
        database thread still lands, the ROLLBACK that follows fails, and that error
        replaces the cancellation, so the timer that was being stopped runs on and
        quit waits for it forever."""
        if self.driver is None or self._closing:
            return []
        step = asyncio.ensure_future(self._step())
        self._ticks.add(step)
        step.add_done_callback(self._ticks.discard)
        return await asyncio.shield(step)

    def wake(self) -> None:
        """A live broker has news: the engine polls it now (once, however many events
        arrived meanwhile), not at the next tick."""
        if self._woken or self._closing:
            return
        self._woken = True
        task = asyncio.ensure_future(self._poll())
        self._polls.add(task)
        task.add_done_callback(self._polls.discard)

    async def _poll(self) -> None:
        async with self._lock:
            self._woken = False
            if not self._closing:
                self.engine.poll()

    async def _step(self) -> list[str]:
        async with self._lock:
            if self.driver is None or self._closing:
                return []
            lines = list(self.driver.tick())
            if self.session is not None:
                await self.session.settle()
        return lines

    async def close(self) -> None:
        """No tick starts from now on; one in flight finishes first (it holds the
        lock), then what is left is saved and the store closed: closed even when that
        save fails (a full disk), or its worker thread would keep the process alive."""
        self._closing = True
        async with self._lock:
            if self.live is not None:
                await self.live.close()
            if self.session is not None:
                session, self.session = self.session, None
                try:
                    if session.store.failed is None:
                        await session.settle()
                finally:
                    await session.store.close()
