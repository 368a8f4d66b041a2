"""Pilot tests of the Smart Sync screens: My Copies, the Copy dialog, a copy's
settings and details. Each asserts on the engine's state after the UI action.

The desk is tests/fixtures/desk.json: Alpha (active) led by LEAD-1, long 2 MNQ
(margin 100 per contract, equity 100,000 at 21,000 before, 21,012.5 now);
Bravo (paused) led by LEAD-2 with ratio follower FUND-31; SPARE-41 holds 25,000
and belongs to no group.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from textual.pilot import Pilot
from textual.widgets import Button, Checkbox, DataTable, Input, Select, Static

from synctui.domain.copies import CopyStatus, OnStop
from synctui.domain.errors import Refused
from synctui.engine.views import copy_detail, copy_rows, follow_accounts
from synctui.tui.app import SyncApp
from synctui.tui.screens.confirm import ConfirmModal
from synctui.tui.screens.copies import (
    CopiesScreen,
    CopyDetailScreen,
    CopyDialog,
    InvestmentModal,
    StopLossModal,
)
from tests.tui_support import SIZE, desk_app, desk_world

D = Decimal


def balance(app: SyncApp, account: str) -> Decimal:
    return app.desk.engine.broker_of(account).view(account).balance


def copy_position(app: SyncApp, group: str, account: str, symbol: str = "MNQ") -> Decimal:
    copy = app.desk.engine.state.copies[(group, account)]
    broker = app.desk.engine.broker_of(copy.sub)
    return broker.position(copy.sub, broker.symbols.native(symbol))


async def open_dialog(pilot: Pilot[None]) -> CopyDialog:
    await pilot.press("M")
    assert isinstance(pilot.app.screen, CopiesScreen)
    await pilot.press("n")
    await pilot.pause()
    dialog = pilot.app.screen
    assert isinstance(dialog, CopyDialog)
    return dialog


async def fill_dialog(pilot: Pilot[None], dialog: CopyDialog, *, group: str = "Alpha",
                      account: str = "SPARE-41", investment: str = "1000") -> None:
    dialog.query_one("#group", Select).value = group
    await pilot.pause()
    dialog.query_one("#account", Select).value = account
    await pilot.pause()
    await pilot.click("#investment")
    await pilot.press(*investment)
    await pilot.pause()


async def make_copy(app: SyncApp, investment: str = "1000", **options: object) -> None:
    error = await app.desk.run(lambda e: e.follow("Alpha", "SPARE-41", "smart_sync",
                                                  D(investment), **options))  # type: ignore[arg-type]
    assert error is None


# --- the Copy dialog ------------------------------------------------------------------------


async def test_follow_without_open_positions() -> None:
    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        dialog = await open_dialog(pilot)
        await fill_dialog(pilot, dialog)
        assert "Minimum 100; SPARE-41 has 25,000.00 available" in str(
            dialog.query_one("#investment-hint", Static).render())
        assert "MNQ +2 @ 21,000" in str(dialog.query_one("#leader-positions", Static).render())
        assert not dialog.query_one("#follow", Button).disabled
        await pilot.click("#follow")
        await pilot.pause()
        assert isinstance(app.screen, CopiesScreen)
        copy = app.desk.engine.state.copies[("Alpha", "SPARE-41")]
        assert (copy.status, copy.investment, copy.copy_open_positions) == (
            CopyStatus.ACTIVE, D(1000), False)
        assert (copy.stop_loss, copy.on_stop) == (None, OnStop.CLOSE)
        assert balance(app, "SPARE-41") == D(24000)
        assert copy_position(app, "Alpha", "SPARE-41") == 0
        table = app.screen.query_one("#copies", DataTable)
        assert [k.value for k in table.rows] == ["Alpha/SPARE-41"]
        assert str(table.get_cell("Alpha/SPARE-41", "investment")) == "1,000.00"


async def test_follow_copying_open_positions() -> None:
    """LEAD-1's 2 MNQ use 200 of its equity (100,025 at 21,012.5): u ~ 0.002; a copy
    of 10,000 gets margin ~20, below one contract: the minimum, 1 MNQ (margin 100)."""
    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        dialog = await open_dialog(pilot)
        await fill_dialog(pilot, dialog, investment="10000")
        await pilot.click("#copy-open")
        assert dialog.query_one("#copy-open", Checkbox).value
        await pilot.click("#follow")
        await pilot.pause()
        copy = app.desk.engine.state.copies[("Alpha", "SPARE-41")]
        assert copy.copy_open_positions
        assert copy_position(app, "Alpha", "SPARE-41") == 1


async def test_follow_with_stop_loss_and_keep() -> None:
    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        dialog = await open_dialog(pilot)
        await fill_dialog(pilot, dialog, investment="2,500")
        await pilot.click("#stop-loss")
        await pilot.press(*"300")
        dialog.query_one("#on-stop", Select).value = "keep"
        await pilot.pause()
        await pilot.click("#follow")
        await pilot.pause()
        copy = app.desk.engine.state.copies[("Alpha", "SPARE-41")]
        assert (copy.investment, copy.stop_loss, copy.on_stop) == (D(2500), D(300),
                                                                   OnStop.KEEP)


async def test_investment_above_available_is_blocked_as_typed() -> None:
    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        dialog = await open_dialog(pilot)
        await fill_dialog(pilot, dialog, investment="30000")
        error = dialog.query_one("#investment-error", Static)
        assert error.display
        assert "cannot exceed 25,000, what the account has available" in str(error.render())
        assert dialog.query_one("#investment", Input).has_class("-invalid")
        follow = dialog.query_one("#follow", Button)
        assert follow.disabled
        await pilot.press("enter")  # submitting does not get past the validator either
        await pilot.click("#follow")
        await pilot.pause()
        assert isinstance(app.screen, CopyDialog)
        assert app.desk.engine.state.copies == {}
        assert balance(app, "SPARE-41") == D(25000)
        # fixing it as typed enables Follow
        dialog.query_one("#investment", Input).focus()
        await pilot.press("end", "backspace")
        await pilot.pause()
        assert dialog.query_one("#investment", Input).value == "3000"
        assert not error.display
        assert not follow.disabled


@pytest.mark.parametrize(("investment", "words"), [
    ("50", "at least 100"), ("abc", "must be a number"), ("", "must be a number")])
async def test_investment_rules_in_words(investment: str, words: str) -> None:
    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        dialog = await open_dialog(pilot)
        await fill_dialog(pilot, dialog, investment=investment + "1")
        await pilot.press("backspace")
        await pilot.pause()
        assert words in str(dialog.query_one("#investment-error", Static).render())
        assert dialog.query_one("#follow", Button).disabled


@pytest.mark.parametrize("stop", ["0", "-5", "x"])
async def test_stop_loss_must_be_positive(stop: str) -> None:
    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        dialog = await open_dialog(pilot)
        await fill_dialog(pilot, dialog)
        await pilot.click("#stop-loss")
        await pilot.press(*stop)
        await pilot.pause()
        error = dialog.query_one("#stop-loss-error", Static)
        assert error.display and "stop loss must be" in str(error.render())
        assert dialog.query_one("#follow", Button).disabled
        assert app.desk.engine.state.copies == {}


async def test_the_account_choice_leaves_out_the_leader_and_ratio_followers() -> None:
    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        dialog = await open_dialog(pilot)
        dialog.query_one("#group", Select).value = "Bravo"
        await pilot.pause()
        select = dialog.query_one("#account", Select)
        options = [value for _label, value in select._options if isinstance(value, str)]
        assert "LEAD-2" not in options and "FUND-31" not in options
        assert "SPARE-41" in options and "LEAD-1" in options
        group_values = [v for _l, v in dialog.query_one("#group", Select)._options]
        assert "Charlie" not in group_values  # no leader: nothing to copy


async def test_an_engine_refusal_is_shown_inline() -> None:
    """While the dialog is open SPARE-41 joins Alpha in ratio mode: the engine refuses
    the follow, and the dialog says why."""
    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        dialog = await open_dialog(pilot)
        await fill_dialog(pilot, dialog)
        assert await app.desk.run(lambda e: e.add_followers("Alpha", ["SPARE-41"])) is None
        await pilot.click("#follow")
        await pilot.pause()
        assert app.screen is dialog
        refusal = dialog.query_one("#refusal", Static)
        assert refusal.display
        assert "follows group 'Alpha' in ratio mode" in str(refusal.render())
        assert app.desk.engine.state.copies == {}
        assert balance(app, "SPARE-41") == D(25000)


async def test_following_twice_is_refused_inline() -> None:
    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        await make_copy(app)
        dialog = await open_dialog(pilot)
        await fill_dialog(pilot, dialog, investment="500")
        await pilot.click("#follow")
        await pilot.pause()
        assert "already copies group 'Alpha'" in str(
            dialog.query_one("#refusal", Static).render())
        assert app.desk.engine.state.copies[("Alpha", "SPARE-41")].investment == D(1000)
        await pilot.press("escape")
        assert isinstance(app.screen, CopiesScreen)


# --- settings -----------------------------------------------------------------------------


async def change_investment(pilot: Pilot[None], value: str) -> InvestmentModal:
    await pilot.press("M", "i")
    await pilot.pause()
    modal = pilot.app.screen
    assert isinstance(modal, InvestmentModal)
    modal.query_one("#amount", Input).value = ""
    await pilot.press(*value)
    await pilot.pause()
    return modal


async def test_raise_investment() -> None:
    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        await make_copy(app)
        await change_investment(pilot, "3000")
        await pilot.click("#save")
        await pilot.pause()
        assert isinstance(app.screen, CopiesScreen)
        assert app.desk.engine.state.copies[("Alpha", "SPARE-41")].investment == D(3000)
        assert balance(app, "SPARE-41") == D(22000)
        table = app.screen.query_one("#copies", DataTable)
        assert str(table.get_cell("Alpha/SPARE-41", "investment")) == "3,000.00"


async def test_lower_investment() -> None:
    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        await make_copy(app)
        await change_investment(pilot, "400")
        await pilot.press("enter")
        await pilot.pause()
        assert app.desk.engine.state.copies[("Alpha", "SPARE-41")].investment == D(400)
        assert balance(app, "SPARE-41") == D(24600)


async def test_lowering_below_the_margin_in_use_is_blocked_as_typed() -> None:
    """A copy of 10,000 holding 1 MNQ uses 100 of margin; at most 10,000 - available can
    go; the minimum 100 is the floor here: 99 is refused in words."""
    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        await make_copy(app, "10000", copy_open_positions=True)
        modal = await change_investment(pilot, "99")
        assert "at least 100" in str(modal.query_one("#amount-error", Static).render())
        assert modal.query_one("#save", Button).disabled
        await pilot.press("enter")
        await pilot.pause()
        assert app.desk.engine.state.copies[("Alpha", "SPARE-41")].investment == D(10000)


async def test_raise_above_available_is_blocked_as_typed() -> None:
    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        await make_copy(app)
        modal = await change_investment(pilot, "26001")
        assert "cannot exceed 25,000" in str(modal.query_one("#amount-error", Static).render())
        await pilot.press("enter")
        await pilot.pause()
        assert app.desk.engine.state.copies[("Alpha", "SPARE-41")].investment == D(1000)


async def test_change_stop_loss() -> None:
    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        await make_copy(app)
        await pilot.press("M", "s")
        await pilot.pause()
        modal = app.screen
        assert isinstance(modal, StopLossModal)
        await pilot.press(*"250")
        modal.query_one("#on-stop", Select).value = "keep"
        await pilot.pause()
        await pilot.click("#save")
        await pilot.pause()
        copy = app.desk.engine.state.copies[("Alpha", "SPARE-41")]
        assert (copy.stop_loss, copy.on_stop) == (D(250), OnStop.KEEP)
        assert str(app.screen.query_one("#copies", DataTable).get_cell(
            "Alpha/SPARE-41", "stop")) == "250.00 (keep)"
        # and back to none: an empty field
        await pilot.press("s")
        await pilot.pause()
        app.screen.query_one("#stop-loss", Input).value = ""
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        assert app.desk.engine.state.copies[("Alpha", "SPARE-41")].stop_loss is None


async def test_unfollow_with_confirm() -> None:
    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        await make_copy(app, "10000", copy_open_positions=True)
        assert copy_position(app, "Alpha", "SPARE-41") == 1
        await pilot.press("M", "u")
        await pilot.pause()
        modal = app.screen
        assert isinstance(modal, ConfirmModal)
        text = str(modal.query_one("#consequence", Static).render())
        assert "1 open position close at market" in text
        assert "return to SPARE-41's balance" in text
        await pilot.press("y")
        await pilot.pause()
        copy = app.desk.engine.state.copies[("Alpha", "SPARE-41")]
        assert copy.status is CopyStatus.ENDED
        assert copy_position(app, "Alpha", "SPARE-41") == 0
        # every cent of the copy's funds (less the fee and slippage of 1 MNQ) is back
        assert balance(app, "SPARE-41") == D(25000) + copy_rows(app.desk.engine)[0].realized
        assert str(app.screen.query_one("#copies", DataTable).get_cell(
            "Alpha/SPARE-41", "status")) == "ended"


async def test_unfollow_cancelled_changes_nothing() -> None:
    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        await make_copy(app, "10000", copy_open_positions=True)
        await pilot.press("M", "u")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmModal)
        await pilot.press("n")
        await pilot.pause()
        assert isinstance(app.screen, CopiesScreen)
        copy = app.desk.engine.state.copies[("Alpha", "SPARE-41")]
        assert copy.status is CopyStatus.ACTIVE
        assert copy_position(app, "Alpha", "SPARE-41") == 1
        assert balance(app, "SPARE-41") == D(15000)


# --- details ---------------------------------------------------------------------------


async def test_details_show_positions_fills_investment_and_failures() -> None:
    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("M")  # My Copies is open: the copy's history is recorded
        await make_copy(app, "10000", copy_open_positions=True)
        assert await app.desk.run(lambda e: e.set_investment("Alpha", "SPARE-41", D(12000))) \
            is None
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, CopyDetailScreen)
        positions = screen.query_one("#copy-positions", DataTable)
        assert [str(c) for c in positions.get_row_at(0)[:2]] == ["MNQ", "+1"]
        fills = screen.query_one("#copy-fills", DataTable)
        assert fills.row_count == 1 and str(fills.get_row_at(0)[2]) == "buy"
        changes = screen.query_one("#copy-investments", DataTable)
        assert [(str(r[1]), str(r[2])) for r in (changes.get_row_at(0), changes.get_row_at(1))] \
            == [("followed", "10,000.00"), ("raised", "12,000.00")]
        await pilot.press("escape")
        assert isinstance(app.screen, CopiesScreen)


# --- engine and read models below the UI -------------------------------------------------


def test_set_stop_loss_rules() -> None:
    engine = desk_world().engine
    engine.follow("Alpha", "SPARE-41", "smart_sync", D(1000))
    events: list[object] = []
    engine.subscribe(events.append)
    engine.smart.set_stop_loss("Alpha", "SPARE-41", D(200), OnStop.KEEP)
    copy = engine.state.copies[("Alpha", "SPARE-41")]
    assert (copy.stop_loss, copy.on_stop) == (D(200), OnStop.KEEP)
    assert [getattr(e, "what", None) for e in events] == ["stop loss"]
    for bad in (D(0), D(-1), D("Infinity")):
        with pytest.raises(Refused):
            engine.smart.set_stop_loss("Alpha", "SPARE-41", bad, OnStop.CLOSE)
    engine.smart.set_stop_loss("Alpha", "SPARE-41", None, OnStop.CLOSE)
    assert copy.stop_loss is None
    engine.unfollow("Alpha", "SPARE-41")
    with pytest.raises(Refused, match="no longer copies"):
        engine.smart.set_stop_loss("Alpha", "SPARE-41", D(100), OnStop.CLOSE)


def test_copy_read_models() -> None:
    engine = desk_world().engine
    engine.follow("Alpha", "SPARE-41", "smart_sync", D(10000), copy_open_positions=True)
    [row] = copy_rows(engine)
    assert (row.key, row.status, row.investment, row.positions) == (
        "Alpha/SPARE-41", CopyStatus.ACTIVE, D(10000), 1)
    assert row.equity == row.investment + row.realized + row.unrealized
    detail = copy_detail(engine, "Alpha", "SPARE-41")
    assert detail is not None and detail.positions[0].qty == 1
    assert copy_detail(engine, "Bravo", "SPARE-41") is None
    alpha = engine.group("Alpha")
    [spare] = [a for a in follow_accounts(engine, alpha) if a.account == "SPARE-41"]
    assert spare.copies_already and spare.available == D(15000)


async def test_the_copy_dialog_opens_from_the_dashboard_for_the_selected_group() -> None:
    from synctui.tui.screens.copies import CopyDialog
    from tests.tui_support import SIZE as _SIZE
    from tests.tui_support import desk_app as _desk_app

    app = _desk_app()
    async with app.run_test(size=_SIZE) as pilot:
        await pilot.press("s")
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, CopyDialog)
        assert dialog._group == "Alpha"
