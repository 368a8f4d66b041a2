"""Building the TUI on a fixed, in-memory desk for Pilot and snapshot tests."""

from __future__ import annotations

from pathlib import Path

from synctui.domain.clock import SteppingClock
from synctui.engine.world import World
from synctui.scenario.model import Scenario, load_scenario
from synctui.scenario.runner import Replay, build_world, run_step
from synctui.tui.app import SyncApp, make_app

DESK = Path(__file__).parent / "fixtures" / "desk.json"
SIZE = (150, 42)


def desk_world() -> World:
    return played(load_scenario(DESK))


def played(scenario: Scenario) -> World:
    """A scenario's world with its steps played, in memory; none may be refused."""
    world = build_world(scenario, SteppingClock())
    run = Replay(world)
    for index, raw in enumerate(scenario.steps):
        run_step(run, index, raw)
    assert not run.errors, run.errors
    return world


def desk_app() -> SyncApp:
    """No timers, no demo: the screen changes only when a test acts."""
    return make_app(world=desk_world(), demo=False, tick_seconds=None)
