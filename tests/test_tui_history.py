"""The History screen: the blotter from a real database file, driven by Pilot."""

from __future__ import annotations

import asyncio
import csv
from decimal import Decimal
from pathlib import Path

from textual.pilot import Pilot
from textual.widgets import DataTable, Select, Static

from synctui.domain.clock import SteppingClock
from synctui.domain.orders import Side
from synctui.tui.app import SyncApp, make_app
from synctui.tui.screens.history import HistoryScreen
from tests.tui_support import DESK, SIZE, desk_app


def db_app(db: Path) -> SyncApp:
    """The fixture desk, built into a database file; no timers."""
    return make_app(db=db, scenario=DESK, clock=SteppingClock(), demo=False,
                    tick_seconds=None)


async def shown(pilot: Pilot[None]) -> list[tuple[str, ...]]:
    """The blotter's rows as text, once its read on the thread has landed."""
    for _ in range(50):
        await asyncio.sleep(0.05)
        await pilot.pause()
        screen = pilot.app.screen
        assert isinstance(screen, HistoryScreen)
        if not screen._reading:
            break
    table = pilot.app.screen.query_one("#history-table", DataTable)
    return [tuple(str(c) for c in table.get_row_at(i)) for i in range(table.row_count)]


def column(pilot: Pilot[None], key: str) -> int:
    table = pilot.app.screen.query_one("#history-table", DataTable)
    return [c.value for c in table.columns].index(key)


async def test_history_lists_the_database_s_orders_and_fills_newest_first(
        tmp_path: Path) -> None:
    app = db_app(tmp_path / "desk.db")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("H")
        rows = await shown(pilot)
        history = app.desk.history
        assert history is not None
        from synctui.store.history import HistoryQuery

        stored = await history.rows(HistoryQuery())
        assert len(rows) == len(stored) > 0
        ids = [r[column(pilot, "id")] for r in rows]
        assert ids == [r.id for r in stored]
        assert "rows" in str(app.screen.query_one("#history-status", Static).render())


async def test_history_updates_while_open_and_survives_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "desk.db"
    app = db_app(db)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("H")
        before = await shown(pilot)
        await app.desk.run(lambda e: e.place_order("LEAD-1", "MNQ", Side.SELL,
                                                   qty=Decimal(1)))
        after = await shown(pilot)
        # the leader's sell and its four copies, each an order and a fill
        assert len(after) == len(before) + 10
        assert after[0][column(pilot, "side")] == "sell"
    again = db_app(db)
    async with again.run_test(size=SIZE) as pilot:
        await pilot.press("H")
        assert await shown(pilot) == after


async def test_history_filters_by_account_and_kind_and_searches(tmp_path: Path) -> None:
    app = db_app(tmp_path / "desk.db")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("H")
        everything = await shown(pilot)
        account = column(pilot, "account")
        app.screen.query_one("#history-account", Select).value = "APEX-12"
        rows = await shown(pilot)
        assert rows and {r[account] for r in rows} == {"APEX-12"}
        app.screen.query_one("#history-kind", Select).value = "fill"
        fills = await shown(pilot)
        assert fills and {r[column(pilot, "kind")] for r in fills} == {"fill"}
        assert len(fills) < len(rows)
        app.screen.query_one("#history-account", Select).value = "__all__"
        app.screen.query_one("#history-kind", Select).value = "__all__"
        await pilot.press("slash")
        await pilot.press(*"working")
        working = await shown(pilot)
        assert working and all("working" in r[column(pilot, "what")] for r in working)
        assert len(working) < len(everything)


async def test_e_exports_every_match_to_a_csv_beside_the_database(tmp_path: Path) -> None:
    db = tmp_path / "desk.db"
    app = db_app(db)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("H")
        app.screen.query_one("#history-group", Select).value = "Alpha"
        rows = await shown(pilot)
        await pilot.press("e")
        for _ in range(50):
            await asyncio.sleep(0.05)
            if list((tmp_path / "exports").glob("*.csv")):
                break
        await pilot.pause()
    [export] = list((tmp_path / "exports").glob("blotter-*.csv"))
    with export.open(newline="", encoding="utf-8") as f:
        lines = list(csv.reader(f))
    assert len(lines) == len(rows) + 1
    assert {line[2] for line in lines[1:]} == {"Alpha"}


async def test_history_in_memory_says_it_needs_a_database() -> None:
    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("H")
        await shown(pilot)
        status = str(app.screen.query_one("#history-status", Static).render())
        assert "needs a database" in status
        await pilot.press("e")
        await pilot.pause()
        assert isinstance(app.screen, HistoryScreen)


async def test_history_fits_80_columns_keeping_time_account_and_price(tmp_path: Path) -> None:
    app = db_app(tmp_path / "desk.db")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("H")
        await shown(pilot)
        table = app.screen.query_one("#history-table", DataTable)
        keys = [c.value for c in table.columns]
        assert {"time", "account", "symbol", "side", "qty", "price"} <= set(keys)
        assert table.virtual_size.width <= 80


async def test_a_price_tick_reads_no_history_and_a_fill_does(tmp_path: Path) -> None:
    app = db_app(tmp_path / "desk.db")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("H")
        await shown(pilot)
        history = app.desk.history
        assert history is not None
        reads: list[object] = []
        real_rows = history.rows

        async def rows(*args: object, **kwargs: object) -> object:
            reads.append(args)
            return await real_rows(*args, **kwargs)  # type: ignore[arg-type]

        history.rows = rows  # type: ignore[method-assign]
        for price in (21010, 21020, 21030):
            await app.desk.run(lambda e, p=price: e.set_price("MNQ", Decimal(p)))
            await asyncio.sleep(0.15)
            await shown(pilot)
        assert reads == []
        await app.desk.run(lambda e: e.place_order("LEAD-1", "MNQ", Side.SELL,
                                                   qty=Decimal(1)))
        await asyncio.sleep(0.15)
        await shown(pilot)
        assert len(reads) == 1
