"""Pilot tests of the Accounts screen, by keyboard and by mouse.

The desk is tests/fixtures/desk.json. TOP-21 (topstep, daily loss limit 1,000)
holds 2 NQ long from 21,000 (crossed from the leader's MNQ); NQ moves 20 per
point and per contract, so MNQ at 20,950 costs it 2,000 today and breaches it.
Each test asserts on the engine's state after the UI action.
"""

from __future__ import annotations

from decimal import Decimal

from textual.pilot import Pilot

from synctui.domain.orders import Side
from synctui.tui.app import SyncApp
from synctui.tui.screens.accounts import AccountsScreen, AccountTable
from synctui.tui.screens.confirm import ConfirmModal
from synctui.tui.screens.dashboard import Dashboard
from tests.tui_support import SIZE, desk_app

ACCOUNTS = ["LEAD-1", "APEX-11", "APEX-12", "TOP-21", "TOP-22", "LEAD-2", "FUND-31",
            "SPARE-41"]


def breached(app: SyncApp, account: str) -> bool:
    return app.desk.engine.broker_of(account).is_breached(account)


def cell(app: SyncApp, account: str, column: str) -> str:
    return str(app.screen.query_one(AccountTable).get_cell(account, column)).strip()


async def breach_top_21(app: SyncApp) -> None:
    await app.desk.run(lambda e: e.set_price("MNQ", Decimal("20950")))
    assert breached(app, "TOP-21")


async def open_accounts(pilot: Pilot[None]) -> AccountTable:
    await pilot.press("A")
    await pilot.pause()
    assert isinstance(pilot.app.screen, AccountsScreen)
    return pilot.app.screen.query_one(AccountTable)


async def to_account(pilot: Pilot[None], account: str) -> None:
    table = pilot.app.screen.query_one(AccountTable)
    for _ in range(ACCOUNTS.index(account)):
        await pilot.press("down")
    await pilot.pause()
    assert table.current_account == account


async def test_the_accounts_screen_shows_every_account() -> None:
    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        table = await open_accounts(pilot)
        assert [str(k.value) for k in table.rows] == ACCOUNTS
        assert cell(app, "TOP-21", "broker") == "topstep"
        assert cell(app, "TOP-21", "balance") == "50,000.00"
        assert cell(app, "TOP-21", "equity") == "50,500.00"  # 2 NQ x 12.5 points x 20
        assert cell(app, "TOP-21", "available") == "48,500.00"
        assert cell(app, "TOP-21", "margin") == "2,000.00"
        assert cell(app, "TOP-21", "in_use") == "0.00"
        assert cell(app, "TOP-21", "today") == "+500.00"
        assert cell(app, "TOP-21", "daily") == "1,000.00"
        assert cell(app, "TOP-21", "drawdown") == "none"
        assert cell(app, "TOP-21", "status") == "ok"
        assert cell(app, "LEAD-1", "balance") == "99,999.00"  # a 0.50 fee per contract
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, Dashboard)


async def test_in_use_shows_smart_sync_funds() -> None:
    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        error = await app.desk.run(
            lambda e: e.follow("Alpha", "SPARE-41", "smart_sync", Decimal(5000)))
        assert error is None
        await open_accounts(pilot)
        assert cell(app, "SPARE-41", "balance") == "20,000.00"
        assert cell(app, "SPARE-41", "in_use") == "5,000.00"
        # Unfollowing returns the funds; the screen follows after the action.
        await app.desk.run(lambda e: e.unfollow("Alpha", "SPARE-41"))
        screen = app.screen
        assert isinstance(screen, AccountsScreen)
        screen.refresh_rows()
        await pilot.pause()
        assert cell(app, "SPARE-41", "balance") == "25,000.00"
        assert cell(app, "SPARE-41", "in_use") == "0.00"


async def test_a_breach_shows_and_the_table_follows_the_market() -> None:
    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_accounts(pilot)
        assert cell(app, "TOP-21", "status") == "ok"
        await breach_top_21(app)
        await pilot.pause(0.8)  # the screen's refresh timer, no action by the trader
        assert cell(app, "TOP-21", "status") == "BREACHED daily loss"
        assert cell(app, "TOP-21", "equity") == "48,000.00"  # flattened at 20,950
        assert cell(app, "TOP-21", "today") == "-2,000.00"
        assert cell(app, "TOP-21", "margin") == "0.00"


async def test_reset_breach_by_keyboard() -> None:
    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        await breach_top_21(app)
        await open_accounts(pilot)
        await to_account(pilot, "TOP-21")
        await pilot.press("r")
        await pilot.pause()
        modal = app.screen
        assert isinstance(modal, ConfirmModal)
        assert "current equity (48,000.00)" in modal._consequence
        assert "take orders again" in modal._consequence
        await pilot.press("y")
        await pilot.pause()
        assert not breached(app, "TOP-21")
        assert app.desk.engine.broker_of("TOP-21").today_pnl("TOP-21") == 0
        assert isinstance(app.screen, AccountsScreen)
        assert cell(app, "TOP-21", "status") == "ok"
        assert cell(app, "TOP-21", "today") == "0.00"
        # It takes orders again.
        error = await app.desk.run(
            lambda e: e.place_order("TOP-21", "NQ", Side.BUY, qty=Decimal(1)))
        assert error is None


async def test_reset_breach_by_mouse() -> None:
    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        await breach_top_21(app)
        table = await open_accounts(pilot)
        await pilot.click(AccountTable, offset=(2, ACCOUNTS.index("TOP-21") + 1))
        await pilot.pause()
        assert table.current_account == "TOP-21"
        await pilot.click("#reset-breach")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmModal)
        await pilot.click("#ok")
        await pilot.pause()
        assert not breached(app, "TOP-21")
        assert cell(app, "TOP-21", "status") == "ok"


async def test_cancel_leaves_the_account_breached() -> None:
    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        await breach_top_21(app)
        await open_accounts(pilot)
        await to_account(pilot, "TOP-21")
        await pilot.press("r")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmModal)
        await pilot.press("n")
        await pilot.pause()
        assert breached(app, "TOP-21")
        await pilot.click("#reset-breach")
        await pilot.pause()
        await pilot.click("#cancel")
        await pilot.pause()
        assert breached(app, "TOP-21")
        assert cell(app, "TOP-21", "status") == "BREACHED daily loss"
        error = await app.desk.run(
            lambda e: e.place_order("TOP-21", "NQ", Side.BUY, qty=Decimal(1)))
        assert error is not None  # still refused: account_breached


async def test_resetting_an_account_that_is_not_breached_is_refused() -> None:
    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_accounts(pilot)
        await to_account(pilot, "APEX-11")
        app.clear_notifications()
        await pilot.press("r")
        await pilot.pause()
        assert isinstance(app.screen, AccountsScreen)  # nothing to confirm
        assert not breached(app, "APEX-11")
        refusals = [n for n in app._notifications if n.title == "Refused"]
        assert refusals and "not breached" in refusals[0].message
