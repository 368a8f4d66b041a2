"""The simulated broker's ledger alone: money, margin, fills, liquidation, risk.

No venue, no orders, no events: a `Ledger` over a price book, driven directly.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from synctui.brokers.ledger import Ledger, SimAccount
from synctui.domain.errors import OrderRejected, Refused, RejectReason
from synctui.domain.instruments import Catalog
from synctui.domain.orders import MarginMode, Side
from synctui.domain.prices import PriceBook
from synctui.domain.risk import RiskLimits

D = Decimal
BUY, SELL = Side.BUY, Side.SELL


class Books:
    def __init__(self, fee: str = "0", **prices: str) -> None:
        self.catalog = Catalog()
        self.prices = PriceBook(self.catalog)
        for symbol, price in (prices or {"MNQ": "21000", "BTCUSDT": "50000"}).items():
            self.prices.set(symbol, D(price))
        self.ledger = Ledger(self.catalog, self.prices, D(fee))

    def open(self, balance: str = "50000", risk: RiskLimits | None = None) -> SimAccount:
        return self.ledger.open("a", D(balance), risk or RiskLimits())

    def fill(self, acct: SimAccount, symbol: str, side: Side, qty: str, price: str,
             seq: int = 1) -> None:
        inst = self.catalog.get(symbol)
        self.ledger.apply_fill(acct, inst, side, D(qty), D(price),
                               self.ledger.fee(D(qty)), seq)

    def move(self, symbol: str, price: str) -> None:
        self.prices.set(symbol, D(price))

    def affordable(self, acct: SimAccount, symbol: str, side: Side, qty: str) -> bool:
        try:
            self.ledger.check_affordable(acct, self.catalog.get(symbol), side, D(qty),
                                         self.prices.get(symbol))
        except OrderRejected as rejected:
            assert rejected.reason is RejectReason.INSUFFICIENT_MARGIN
            return False
        return True


def test_a_future_takes_margin_per_contract_and_equity_follows_the_price() -> None:
    books = Books(fee="1.25")
    acct = books.open()
    books.fill(acct, "MNQ", BUY, "2", "21000")
    ledger = books.ledger
    assert acct.balance == D("49997.5")  # the fee only
    assert acct.fees == D("2.5")
    books.move("MNQ", "21010")
    assert ledger.equity(acct) == D("50037.5")  # 10 points x 2 x 2
    assert ledger.used_margin(acct) == D("200")
    assert ledger.available(acct) == D("49837.5")


def test_cross_perp_margin_moves_with_the_price_isolated_stays_set_aside() -> None:
    books = Books()
    ledger = books.ledger
    acct = books.open()
    eth = books.catalog.get("ETHUSDT")
    books.move("ETHUSDT", "2000")
    assert ledger.set_margin_mode(acct, eth, MarginMode.ISOLATED)
    assert not ledger.set_margin_mode(acct, eth, MarginMode.ISOLATED)  # no change
    books.fill(acct, "BTCUSDT", BUY, "1", "50000")  # cross, 10x by default
    books.fill(acct, "ETHUSDT", BUY, "10", "2000")  # isolated, 10x
    assert ledger.used_margin(acct) == D("5000") + D("2000")
    books.move("BTCUSDT", "51000")
    books.move("ETHUSDT", "2100")
    assert ledger.used_margin(acct) == D("5100") + D("2000")
    assert ledger.equity(acct) == D("50000") + D("1000") + D("1000")
    assert ledger.available(acct) == D("52000") - D("7100")


def test_affordability_counts_what_a_full_close_frees() -> None:
    books = Books()
    acct = books.open(balance="250")
    assert books.affordable(acct, "MNQ", BUY, "2")
    assert not books.affordable(acct, "MNQ", BUY, "3")  # 300 > 250
    books.fill(acct, "MNQ", BUY, "2", "21000")  # 200 used, 50 available
    assert not books.affordable(acct, "MNQ", BUY, "1")
    assert books.affordable(acct, "MNQ", SELL, "2")  # closing opens nothing
    assert books.affordable(acct, "MNQ", SELL, "4")  # frees 200, opens 2 for 200
    assert not books.affordable(acct, "MNQ", SELL, "5")  # 300 > 250


def test_perp_affordability_is_notional_over_leverage() -> None:
    books = Books()
    acct = books.open(balance="1000")
    btc = books.catalog.get("BTCUSDT")
    assert books.affordable(acct, "BTCUSDT", BUY, "0.2")  # 10000 / 10
    assert not books.affordable(acct, "BTCUSDT", BUY, "0.201")
    assert books.ledger.set_leverage(acct, btc, 20) == 20
    assert books.affordable(acct, "BTCUSDT", SELL, "0.4")
    assert books.ledger.set_leverage(acct, btc, 20) is None  # unchanged


def test_a_reversal_realizes_the_close_and_opens_the_rest_at_the_fill_price() -> None:
    books = Books(fee="1")
    ledger = books.ledger
    acct = books.open()
    btc = books.catalog.get("BTCUSDT")
    ledger.set_margin_mode(acct, btc, MarginMode.ISOLATED)
    books.fill(acct, "BTCUSDT", BUY, "1", "50000", seq=7)
    assert acct.positions["BTCUSDT"].margin == D("5000")
    outcome = ledger.apply_fill(acct, btc, SELL, D("3"), D("51000"), ledger.fee(D("3")), 8)
    assert (outcome.closed, outcome.opened, outcome.realized) == (D("1"), D("2"), D("1000"))
    pos = acct.positions["BTCUSDT"]
    assert (pos.qty, pos.avg, pos.margin, pos.seq) == (D("-2"), D("51000"), D("10200"), 7)
    assert acct.balance == D("50000") - 1 + 1000 - 3
    assert acct.realized == D("1000") and acct.fees == D("4")
    # a reduce keeps the average and scales the isolated margin
    books.fill(acct, "BTCUSDT", BUY, "1", "50000")
    assert (pos.qty, pos.avg, pos.margin) == (D("-1"), D("51000"), D("5100"))
    books.fill(acct, "BTCUSDT", BUY, "1", "50000")
    assert "BTCUSDT" not in acct.positions
    assert acct.realized == D("3000")


def test_which_positions_a_price_liquidates() -> None:
    books = Books()
    ledger = books.ledger
    isolated = books.open()
    btc = books.catalog.get("BTCUSDT")
    ledger.set_margin_mode(isolated, btc, MarginMode.ISOLATED)
    books.fill(isolated, "BTCUSDT", BUY, "1", "50000")  # margin 5000, mmr 0.4%
    cross = ledger.open("c", D("1000"), RiskLimits())
    books.fill(cross, "BTCUSDT", BUY, "0.2", "50000")
    books.fill(cross, "MNQ", BUY, "1", "21000")  # a future is never liquidated
    books.move("BTCUSDT", "46000")
    assert ledger.isolated_liquidations(isolated, "BTC") == []
    assert list(ledger.cross_liquidation(cross)) == []  # equity 200 > 36.8
    books.move("BTCUSDT", "45100")
    assert ledger.isolated_liquidations(isolated, "BTC") == ["BTCUSDT"]
    assert ledger.isolated_liquidations(isolated, "ETH") == []  # another family
    assert list(ledger.cross_liquidation(cross)) == ["BTCUSDT"]  # equity 20 <= 36.08
    assert [a.id for a in ledger.holders("BTC")] == ["a", "c"]
    assert [a.id for a in ledger.holders("NQ")] == ["c"]


def test_the_risk_rules_observe_equity_until_a_breach_and_a_reset() -> None:
    books = Books()
    ledger = books.ledger
    acct = books.open(risk=RiskLimits(daily_loss_limit=D("500")))
    books.fill(acct, "MNQ", BUY, "10", "21000")
    assert ledger.watched(acct)
    books.move("MNQ", "20980")  # -400
    assert ledger.observe_risk(acct) is None
    books.move("MNQ", "20975")  # -500
    assert ledger.observe_risk(acct) == "daily_loss_limit"
    assert acct.breached == "daily_loss_limit"
    assert not ledger.watched(acct)
    ledger.reset_breach(acct)
    assert ledger.watched(acct) and acct.risk_state.day_start == D("49500")
    with pytest.raises(Refused):
        ledger.reset_breach(acct)


def test_leverage_and_margin_rules() -> None:
    books = Books()
    ledger = books.ledger
    acct = books.open(balance="6000")
    btc, mnq = books.catalog.get("BTCUSDT"), books.catalog.get("MNQ")
    with pytest.raises(Refused):
        ledger.set_leverage(acct, mnq, 5)
    books.fill(acct, "BTCUSDT", BUY, "1", "50000")  # 5000 at 10x, 1000 available
    with pytest.raises(OrderRejected):
        ledger.set_leverage(acct, btc, 5)  # would need 5000 more
    assert ledger.setting(acct, "BTCUSDT") == (10, MarginMode.CROSS)
    with pytest.raises(Refused):  # not while a position is open
        ledger.set_margin_mode(acct, btc, MarginMode.ISOLATED)
    with pytest.raises(Refused):  # only an isolated position's margin moves
        ledger.adjust_margin(acct, btc, D("100"))
