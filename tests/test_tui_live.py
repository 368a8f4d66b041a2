"""Issue 12, item 1: one way for the screens to learn of change.

The app's one engine observer posts a coalescing `DeskChanged`; every screen
renders from it. The top-level sections are Textual modes. Each test here
changes the desk from outside the screen (as the market or the demo would)
and waits for the screen to show it, without leaving or refreshing it.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from decimal import Decimal

from textual.pilot import Pilot
from textual.widgets import DataTable

from synctui.domain.orders import Side
from synctui.engine.group_views import group_rows
from synctui.tui.app import SyncApp
from synctui.tui.screens.accounts import AccountsScreen
from synctui.tui.screens.confirm import ConfirmModal
from synctui.tui.screens.copies import CopiesScreen, CopyDetailScreen
from synctui.tui.screens.dashboard import Dashboard
from synctui.tui.screens.groups import GroupSettingsScreen, GroupsScreen
from synctui.tui.screens.history import HistoryScreen
from synctui.tui.screens.log import LogScreen
from synctui.tui.widgets.activity_log import LogPanel
from synctui.tui.widgets.format import money, percent
from tests.tui_support import SIZE, desk_app


async def settle(pilot: Pilot[None]) -> None:
    """Past the repaint interval, so a change the screen did not ask for is shown."""
    await asyncio.sleep(0.3)  # past the app's REPAINT_SECONDS
    await pilot.pause()


async def from_outside(app: SyncApp, command: object) -> None:
    """A change no screen asked for: through the desk, with no repaint requested."""
    await app.desk.run(command)  # type: ignore[arg-type]


async def test_sections_are_modes_and_switching_never_stacks_screens() -> None:
    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        observers = len(app.desk.engine._observers)
        expected = {"G": GroupsScreen, "A": AccountsScreen, "M": CopiesScreen,
                    "l": LogScreen, "H": HistoryScreen}
        for key in "GAMGAMlGAMHGH":
            await pilot.press(key)
            await pilot.pause()
            assert isinstance(app.screen, expected[key])
            assert len(app.screen_stack) == 1
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, Dashboard)
        assert len(app.screen_stack) == 1
        # the screens hold no engine observers of their own: none leaked
        assert len(app.desk.engine._observers) == observers


async def test_groups_today_pnl_follows_the_market_while_shown() -> None:
    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("G")
        await pilot.pause()
        table = app.screen.query_one(DataTable)
        before = {r.name: r.today for r in group_rows(app.desk.engine)}
        await from_outside(app, lambda e: e.set_price("MNQ", Decimal(21500)))
        await settle(pilot)
        after = {r.name: r.today for r in group_rows(app.desk.engine)}
        moved = [name for name in after if after[name] != before[name]]
        assert moved, "the move should change some group's today's PnL"
        for name in moved:
            assert str(table.get_cell(name, "today")) == money(after[name]).plain


async def test_accounts_follow_the_market_while_shown() -> None:
    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("A")
        await pilot.pause()
        shown = app.screen
        assert isinstance(shown, AccountsScreen)
        rendered = [str(shown.query_one(DataTable).get_row_at(0))]
        await from_outside(app, lambda e: e.set_price("MNQ", Decimal(21500)))
        await settle(pilot)
        assert str(shown.query_one(DataTable).get_row_at(0)) != rendered[0]


async def test_copy_details_and_the_full_log_update_while_open() -> None:
    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        await from_outside(app, lambda e: e.follow("Alpha", "SPARE-41", "smart_sync",
                                                   Decimal(2000)))
        app.push_screen(CopyDetailScreen("Alpha", "SPARE-41"))
        await pilot.pause()
        fills = app.screen.query_one("#copy-fills", DataTable)
        assert str(fills.get_row_at(0)[0]) == "(none)"
        await from_outside(app, lambda e: e.place_order("LEAD-1", "MNQ", Side.BUY,
                                                        qty=Decimal(1)))
        await settle(pilot)
        assert str(fills.get_row_at(0)[0]) != "(none)"
        await pilot.press("escape")
        await pilot.press("l")
        await pilot.pause()
        panel = app.screen.query_one(LogPanel)
        before = panel.entries
        await from_outside(app, lambda e: e.place_order("LEAD-1", "MNQ", Side.SELL,
                                                        qty=Decimal(1)))
        await settle(pilot)
        assert panel.entries != before
        assert any("LEAD-1 sell 1 MNQ" in e.text for e in panel.entries)


async def test_leaving_group_settings_by_its_section_key_asks_about_unsaved_edits() -> None:
    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("G")
        await pilot.pause()
        app.screen.query_one(DataTable).move_cursor(row=0)
        await pilot.press("enter")
        await pilot.pause()
        settings = app.screen
        assert isinstance(settings, GroupSettingsScreen)
        await pilot.press("space")  # stage an edit
        await pilot.pause()
        assert settings.pending
        await pilot.press("G")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmModal)
        await pilot.press("n")  # stay
        await pilot.pause()
        assert app.screen is settings and settings.pending
        # another section keeps the settings (and their edits) where they are
        await pilot.press("A")
        await pilot.press("G")
        await pilot.pause()
        assert app.screen is settings and settings.pending


# --- item 4: the activity log's group filter ---------------------------------------------


async def test_a_group_s_log_holds_its_own_fills_and_the_desk_wide_entries_only() -> None:
    """A follower's own fill (an exit, a liquidation) belongs to its group; a fill of an
    account in no group belongs to none; Emergency Stop is desk-wide, whichever group
    is selected."""
    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        await from_outside(app, lambda e: e.place_order("FUND-31", "MNQ", Side.BUY,
                                                        qty=Decimal(1)))
        await from_outside(app, lambda e: e.place_order("SPARE-41", "MNQ", Side.BUY,
                                                        qty=Decimal(1)))
        alpha = [e.text for e in app.activity.filtered("Alpha", 100)]
        bravo = [e.text for e in app.activity.filtered("Bravo", 100)]
        assert any("FUND-31 buy 1 MNQ" in t for t in bravo)
        assert not any("FUND-31" in t or "SPARE-41" in t for t in alpha)
        assert not any("SPARE-41" in t for t in bravo)
        await pilot.press("E")
        await pilot.pause()
        await pilot.click("#ok")
        await pilot.pause()
        stop = [e for e in app.activity.entries if e.text == "EMERGENCY STOP"]
        assert len(stop) == 1 and stop[0].group is None
        assert any(e.text == "EMERGENCY STOP" for e in app.activity.filtered("Bravo", 100))


# --- item 6: help and the palette ----------------------------------------------------------


def _key_names(binding_key: str, display: str | None) -> set[str]:
    names = {display} if display else set()
    aliases = {"plus": "+", "minus": "-", "equals_sign": "=", "question_mark": "?",
               "left_square_bracket": "[", "right_square_bracket": "]"}
    for key in binding_key.split(","):
        names.add(aliases.get(key, key))
    return names


def test_help_lists_every_key_of_the_dashboard_and_the_app() -> None:
    from textual.binding import Binding

    from synctui.tui.screens.help import KEYS

    listed = " / ".join(key for key, _what in KEYS).replace(" ", "/").split("/")
    listed_keys = {k for k in listed if k}
    for binding in (*Dashboard.BINDINGS, *SyncApp.BINDINGS):
        assert isinstance(binding, Binding)
        assert _key_names(binding.key, binding.key_display) & listed_keys, binding


async def test_the_palette_has_every_action_by_name_on_each_screen_and_one_keys() -> None:
    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()

        def titles() -> list[str]:
            return [c.title for c in app.get_system_commands(app.screen)]

        dashboard = titles()
        for name in ("Copy (Smart Sync)", "Next contract", "Prev contract", "Resync",
                     "EMERGENCY", "Resume all", "Pause/Resume group", "Groups", "My Copies"):
            assert name in dashboard, name
        assert [t.casefold() for t in dashboard].count("keys") == 1
        assert len(dashboard) == len(set(t.casefold() for t in dashboard))
        await pilot.press("G")
        await pilot.pause()
        assert "New Group" in titles()
        await pilot.press("M")
        await pilot.pause()
        assert {"New copy", "Unfollow", "Investment", "Stop loss"} <= set(titles())


# --- item 9: after Emergency Stop ---------------------------------------------------------


async def test_emergency_stop_leaves_a_banner_until_every_group_is_resumed() -> None:
    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        banner = app.screen.query_one("#banner")
        assert not banner.display
        await pilot.press("E")
        await pilot.pause()
        await pilot.click("#ok")
        await pilot.pause()
        assert banner.display
        text = str(app.screen.query_one("#banner-text").render())
        assert "EMERGENCY STOP" in text and "Alpha" in text
        await pilot.press("R")  # Resume all
        await pilot.pause()
        assert not banner.display
        engine = app.desk.engine
        assert engine.group("Alpha").status.value == "active"
        # p pauses and resumes the selected group
        await pilot.press("p")
        await pilot.pause()
        assert engine.group("Alpha").status.value == "paused"
        assert not banner.display  # paused by hand is not a stop
        await pilot.press("p")
        await pilot.pause()
        assert engine.group("Alpha").status.value == "active"


# --- item 12: alerts, each once ---------------------------------------------------------------


def _toasts(app: SyncApp, title: str) -> list[str]:
    return [n.message for n in app._notifications if n.title == title]


async def test_a_failing_follower_alerts_once_not_on_every_leader_fill() -> None:
    app = desk_app()
    bells: list[int] = []
    app.bell = lambda: bells.append(1)  # type: ignore[method-assign]
    async with app.run_test(size=SIZE) as pilot:
        for _ in range(3):  # TOP-22 cannot afford ten contracts: each copy of it fails
            await from_outside(app, lambda e: e.place_order("LEAD-1", "MNQ", Side.BUY,
                                                            qty=Decimal(10)))
            await settle(pilot)
        failures = [e for e in app.activity.entries if e.kind == "failure"
                    and "TOP-22" in e.text]
        assert len(failures) >= 2  # the log keeps every one
        assert len([t for t in _toasts(app, "Copy failed") if "TOP-22" in t]) == 1
        assert bells  # the bell rang with it
        drifted = _toasts(app, "Out of sync")
        assert len(drifted) == len(set(drifted))  # each drift once


async def test_alerts_ring_no_bell_when_it_is_switched_off() -> None:
    from synctui.tui.app import make_app
    from tests.tui_support import desk_world

    app = make_app(world=desk_world(), demo=False, tick_seconds=None, bell=False)
    bells: list[int] = []
    app.bell = lambda: bells.append(1)  # type: ignore[method-assign]
    async with app.run_test(size=SIZE) as pilot:
        await from_outside(app, lambda e: e.place_order("LEAD-1", "MNQ", Side.BUY,
                                                        qty=Decimal(10)))
        await settle(pilot)
        assert _toasts(app, "Copy failed")
        assert bells == []


# --- item 5: the contract bar ------------------------------------------------------------------


async def test_the_contract_bar_keeps_its_order_and_lists_only_the_leader_s_markets() -> None:
    from synctui.brokers.sim import SimBroker
    from synctui.domain.instruments import Market

    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        dashboard = app.screen
        assert isinstance(dashboard, Dashboard)
        before = list(dashboard.contracts)
        assert "BTCUSDT" in before  # the fixture's brokers trade every market
        await from_outside(app, lambda e: e.place_order("LEAD-1", "ES", Side.BUY,
                                                        qty=Decimal(1)))
        app.refresh_dashboard()
        await pilot.pause()
        assert dashboard.contracts == before  # the leader's new trade moves nothing
        broker = app.desk.engine.brokers["tradovate"]
        assert isinstance(broker, SimBroker)
        broker.settings = replace(broker.settings, markets=frozenset({Market.FUTURES}))
        app.refresh_dashboard()
        await pilot.pause()
        assert "BTCUSDT" not in dashboard.contracts
        assert [s for s in before if s != "BTCUSDT"] == dashboard.contracts


# --- item 7: one number format ------------------------------------------------------------------


async def test_prices_read_alike_in_the_log_and_the_tables() -> None:
    """Thousands separators everywhere, and every price of a contract at its tick's
    precision (MNQ: 0.25, so two places): a fill in the log, an average in a table."""
    from synctui.tui.widgets.follower_table import FollowerTable

    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        await from_outside(app, lambda e: e.place_order("LEAD-1", "MNQ", Side.BUY,
                                                        qty=Decimal(1)))
        app.refresh_dashboard()
        await pilot.pause()
        fill = next(e.text for e in app.activity.entries if e.text.startswith("LEAD-1 buy"))
        assert fill.endswith("@ 21,012.50"), fill
        table = app.screen.query_one(FollowerTable)
        averages = [str(table.get_cell(row, "avg")) for row in table.rows]
        assert averages and all(a == "-" or (a.count(".") == 1 and len(a.split(".")[1]) == 2
                                             and "," in a) for a in averages), averages


# --- item 10: what a trader is told before it happens ------------------------------------------


async def test_following_a_paused_group_asks_first_and_a_stop_loss_above_the_investment_warns(
        ) -> None:
    from textual.widgets import Input, Static

    from synctui.tui.screens.copies import CopyDialog
    from tests.test_copies_screen import fill_dialog, open_dialog

    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        dialog = await open_dialog(pilot)
        assert isinstance(dialog, CopyDialog)
        await fill_dialog(pilot, dialog, group="Bravo", account="SPARE-41", investment="1000")
        await pilot.click("#stop-loss")
        await pilot.press(*"5000")
        await pilot.pause()
        warning = dialog.query_one("#stop-loss-warning", Static)
        assert warning.display and "above the investment" in str(warning.render())
        stop = dialog.query_one("#stop-loss", Input)
        stop.value = "500"
        await pilot.pause()
        assert not warning.display
        await pilot.click("#follow")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmModal)  # Bravo is paused: asked first
        assert app.desk.engine.state.copies.get(("Bravo", "SPARE-41")) is None
        await pilot.click("#ok")
        await pilot.pause()
        copy = app.desk.engine.state.copies.get(("Bravo", "SPARE-41"))
        assert copy is not None
        assert app.desk.engine.group("Bravo").status.value == "active"


async def test_the_cross_picker_shows_each_choice_s_exposure() -> None:
    from textual.widgets import OptionList

    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("down", "down", "c")
        await pilot.pause()
        options = app.screen.query_one(OptionList)
        texts = [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]
        assert any("NQ" in t and "10x the exposure of MNQ" in t for t in texts), texts


async def test_a_refusal_in_the_copy_dialog_goes_when_the_account_changes() -> None:
    from textual.widgets import Select, Static

    from tests.test_copies_screen import fill_dialog, open_dialog

    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        dialog = await open_dialog(pilot)
        await fill_dialog(pilot, dialog, group="Alpha", account="SPARE-41", investment="1000")
        await from_outside(app, lambda e: e.follow("Alpha", "SPARE-41", "smart_sync",
                                                   Decimal(1000)))
        await pilot.click("#follow")  # refused: it copies Alpha already
        await pilot.pause()
        refusal = dialog.query_one("#refusal", Static)
        assert refusal.display
        dialog.query_one("#account", Select).value = "LEAD-2"
        await pilot.pause()
        assert not refusal.display


# --- item 3: the Copy dialog as the desk moves ----------------------------------------------


async def test_the_copy_dialog_shows_the_leader_s_positions_and_funds_as_they_are_now() -> None:
    from textual.widgets import Static

    from tests.test_copies_screen import fill_dialog, open_dialog

    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        dialog = await open_dialog(pilot)
        await fill_dialog(pilot, dialog, group="Alpha", account="SPARE-41", investment="1000")
        positions = dialog.query_one("#leader-positions", Static)
        assert "MNQ +2" in str(positions.render())
        await from_outside(app, lambda e: e.place_order("LEAD-1", "MNQ", Side.SELL,
                                                        qty=Decimal(5)))
        await settle(pilot)
        assert "MNQ -3" in str(positions.render())  # the leader is short now
        hint = str(dialog.query_one("#investment-hint", Static).render())
        assert "available" in hint
        # one figure for the account's available funds: the hint's, not the list's too
        assert not any("available" in text for text, _key in dialog._options or [])


# --- item 11 (part): sortable tables, a copy's ROI -----------------------------------------------


async def test_a_header_click_sorts_and_the_sort_survives_a_refresh() -> None:
    from synctui.tui.widgets.columns import sort_key

    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("A")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, AccountsScreen)
        table = screen.query_one(DataTable)

        def equities() -> list[object]:  # in the order shown
            return [sort_key(cell) for cell in table.get_column("equity")]

        screen.sorting.clicked("equity")
        screen.sorting.apply(table)
        await pilot.pause()
        assert equities() == sorted(equities())
        screen.sorting.clicked("equity")  # again: the other way
        screen.sorting.apply(table)
        assert equities() == sorted(equities(), reverse=True)
        await from_outside(app, lambda e: e.set_price("MNQ", Decimal(19000)))
        await settle(pilot)
        assert equities() == sorted(equities(), reverse=True)
        await pilot.press("G")
        await pilot.pause()
        groups = app.screen
        assert isinstance(groups, GroupsScreen)
        groups.sorting.clicked("name")
        groups.sorting.clicked("name")
        groups.refresh_rows()  # a refresh rebuilds the table: it stays sorted
        names = [str(cell) for cell in groups.query_one(DataTable).get_column("name")]
        assert names == sorted(names, reverse=True)


async def test_my_copies_shows_each_copy_s_return_on_its_investment() -> None:
    from synctui.engine.views import copy_rows
    from synctui.tui.widgets.format import percent

    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        await copy_a_trade_and_move(app)
        await pilot.press("M")
        await settle(pilot)
        row = copy_rows(app.desk.engine)[0]
        assert row.roi == (row.realized + row.unrealized) / row.investment
        assert row.roi is not None and row.roi != 0
        table = app.screen.query_one("#copies", DataTable)
        assert str(table.get_cell(row.key, "roi")) == percent(row.roi).plain


# --- item 11: P&L totals per follower, group and copy ------------------------------------


def account_pnl(app: SyncApp, account: str) -> Decimal:
    """What an account made, from its broker's view: realized net of fees, plus the
    unrealized PnL of every position it holds."""
    view = app.desk.engine.broker_of(account).view(account)
    return view.realized - view.fees + sum((p.unrealized for p in view.positions), Decimal(0))


async def test_each_follower_s_pnl_counts_every_contract_and_the_foot_sums_them() -> None:
    app = desk_app()
    async with app.run_test(size=(200, 50)) as pilot:
        await pilot.pause()
        # APEX-11 trades ES by hand too: its P&L is both contracts', shown on MNQ's row
        await from_outside(app, lambda e: e.place_order("APEX-11", "ES", Side.BUY,
                                                        qty=Decimal(1)))
        await from_outside(app, lambda e: e.set_price("ES", Decimal(5010)))
        await settle(pilot)
        table = app.screen.query_one("#followers", DataTable)
        followers = [str(table.get_row_at(i)[0]) for i in range(table.row_count)]
        broker = app.desk.engine.broker_of("APEX-11")
        es = broker.position_detail("APEX-11", broker.symbols.native("ES"))
        assert es is not None and es.unrealized != 0  # so the row's P&L holds ES's too
        for account in followers:
            assert str(table.get_cell(account, "pnl")) == money(account_pnl(app, account)).plain
        total = sum((account_pnl(app, a) for a in followers), Decimal(0))
        foot = str(app.screen.query_one("#follower-totals").render())
        assert f"P&L {money(total).plain}" in foot
        await from_outside(app, lambda e: e.set_price("MNQ", Decimal(21500)))
        await settle(pilot)
        moved = sum((account_pnl(app, a) for a in followers), Decimal(0))
        assert moved != total
        foot = str(app.screen.query_one("#follower-totals").render())
        assert f"P&L {money(moved).plain}" in foot


async def copy_a_trade_and_move(app: SyncApp) -> None:
    """SPARE-41 copies Alpha with Smart Sync, the leader buys, and the price moves:
    every kind of follower holds a position with a P&L."""
    await from_outside(app, lambda e: e.follow("Alpha", "SPARE-41", "smart_sync",
                                               Decimal(2000)))
    await from_outside(app, lambda e: e.place_order("LEAD-1", "MNQ", Side.BUY,
                                                    qty=Decimal(1)))
    await from_outside(app, lambda e: e.set_price("MNQ", Decimal(21100)))


async def test_groups_show_each_group_s_followers_pnl_and_the_desk_total() -> None:
    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        await copy_a_trade_and_move(app)
        await pilot.press("G")
        await settle(pilot)
        engine = app.desk.engine
        table = app.screen.query_one(DataTable)
        grand = Decimal(0)
        for name, group in engine.state.groups.groups.items():
            subs = [c.sub for c in engine.state.copies.values() if c.group == name]
            expected = sum((account_pnl(app, a) for a in [*group.followers, *subs]),
                           Decimal(0))
            grand += expected
            assert str(table.get_cell(name, "pnl")) == money(expected).plain
        assert subs or any(c.group == "Alpha" for c in engine.state.copies.values())
        foot = str(app.screen.query_one("#groups-totals").render())
        assert f"followers' P&L {money(grand).plain}" in foot


async def test_my_copies_show_each_copy_s_pnl_and_the_total_with_its_roi() -> None:
    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        await copy_a_trade_and_move(app)
        await pilot.press("M")
        await settle(pilot)
        engine = app.desk.engine
        copies = list(engine.state.copies.values())
        pnl = sum((account_pnl(app, c.sub) for c in copies), Decimal(0))
        assert pnl != 0
        foot = str(app.screen.query_one("#copies-totals").render())
        assert foot.startswith("1 copy at work")
        assert "invested 2,000.00" in foot
        assert f"P&L {money(pnl).plain}" in foot
        assert f"ROI {percent(pnl / Decimal(2000)).plain}" in foot
        table = app.screen.query_one("#copies", DataTable)
        assert str(table.get_cell("Alpha/SPARE-41", "pnl")) == money(pnl).plain


def test_screens_read_the_engine_through_read_models_only() -> None:
    """Item 1: no screen or widget reaches into the engine's state or its brokers; they
    call the read models of synctui.engine.views and group_views."""
    from pathlib import Path

    import synctui.tui

    root = Path(synctui.tui.__file__).parent
    reaching = [f"{path.relative_to(root)}:{number}"
                for path in sorted(root.rglob("*.py"))
                for number, line in enumerate(path.read_text().splitlines(), 1)
                if ".state." in line or ".broker_of(" in line or ".brokers[" in line]
    assert reaching == []
