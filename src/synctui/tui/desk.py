"""The UI's handle on the engine: opens the store, runs commands, ticks the demo.

Every command from a widget goes through `run`, which turns a refusal into a
message for the trader (never a traceback) and settles the store after it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from synctui.domain.clock import Clock, SystemClock
from synctui.domain.errors import Refused
from synctui.engine.engine import Engine
from synctui.engine.world import World
from synctui.scenario.model import parse_step
from synctui.scenario.runner import Replay, apply_step, build_world
from synctui.store.database import default_path
from synctui.store.session import Session
from synctui.store.store import Store

if TYPE_CHECKING:
    from synctui.scenario.demo import DemoDriver


class Desk:
    def __init__(self, world: World | None = None, *, db: Path | None = None,
                 scenario: Path | None = None, seed: int = 7, clock: Clock | None = None,
                 demo: bool = True) -> None:
        self._given = world
        self.db = db or default_path()
        self.scenario = scenario
        self.seed = seed
        self.clock: Clock = clock or (world.clock if world else SystemClock())
        self.demo = demo
        self.session: Session | None = None
        self.driver: DemoDriver | None = None  # the demo's market and leaders
        self.world: World = world  # type: ignore[assignment]  # set in open() otherwise
        self._lock = asyncio.Lock()

    @property
    def engine(self) -> Engine:
        return self.world.engine

    async def open(self) -> None:
        """In memory when a world was given (tests); otherwise from the database,
        building the demo desk into it on first start."""
        if self._given is None:
            store = await Store.open(self.db)
            try:
                self.session = await Session.start(store, self.clock, self._build)
            except BaseException:
                await store.close()  # its worker thread would keep the process alive
                raise
            self.world = self.session.world
        if self.demo:
            from synctui.scenario.demo import DemoDriver

            self.driver = DemoDriver(self.world, self.seed)

    def _build(self) -> World:
        from synctui.scenario.demo import DEFAULT_DEMO, load_demo

        scenario = load_demo(self.scenario or DEFAULT_DEMO)
        world = build_world(scenario, self.clock)
        run = Replay(world)
        for raw in scenario.steps:
            apply_step(run, parse_step(raw))
        return world

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
        if self.driver is None:
            return []
        async with self._lock:
            lines = list(self.driver.tick())
            if self.session is not None:
                await self.session.settle()
        return lines

    async def close(self) -> None:
        """Save what is left, then close; the store is closed even when that save
        fails (a full disk), or its worker thread would keep the process alive."""
        if self.session is not None:
            session, self.session = self.session, None
            try:
                if session.store.failed is None:
                    await session.settle()
            finally:
                await session.store.close()
