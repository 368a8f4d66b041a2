"""The simulated broker (SPEC sections 2, 3 and 8), driven directly."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import TypeVar

import pytest

from synctui.brokers.base import OrderRequest, PositionView
from synctui.brokers.events import (
    AccountBreached,
    BrokerEvent,
    Fill,
    OrderCancelled,
    OrderFailed,
    OrderInfo,
    OrderPlaced,
)
from synctui.brokers.naming import NamingScheme
from synctui.brokers.sim import BrokerSettings, SimBroker
from synctui.domain.clock import SteppingClock
from synctui.domain.errors import OrderRejected, Refused, RejectReason
from synctui.domain.instruments import Catalog, Instrument, Kind
from synctui.domain.orders import FillCause, MarginMode, OrderType, Side
from synctui.domain.prices import PriceBook
from synctui.domain.risk import RiskLimits

D = Decimal
E = TypeVar("E")

BUY, SELL = Side.BUY, Side.SELL
LIMIT, STOP = OrderType.LIMIT, OrderType.STOP


@dataclass
class Sim:
    """A broker, its price book and everything it reported."""

    broker: SimBroker
    book: PriceBook
    events: list[BrokerEvent] = field(default_factory=list)

    def move(self, symbol: str, price: str) -> None:
        family = self.book.set(symbol, D(price))
        self.broker.on_price(family)

    def open(self, account: str = "a", balance: str = "50000",
             risk: RiskLimits | None = None) -> None:
        self.broker.open_account(account, D(balance), risk or RiskLimits())

    def order(self, symbol: str, side: Side, qty: str, *, account: str = "a",
              kind: OrderType = OrderType.MARKET, price: str | None = None,
              stop_loss: str | None = None, take_profit: str | None = None,
              reduce_only: bool = False, client_id: str | None = None) -> str:
        return self.broker.place_order(account, OrderRequest(
            symbol=symbol, side=side, qty=D(qty), type=kind,
            price=None if price is None else D(price), reduce_only=reduce_only,
            stop_loss=None if stop_loss is None else D(stop_loss),
            take_profit=None if take_profit is None else D(take_profit),
            client_id=client_id))

    def of(self, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind)]

    def fills(self) -> list[Fill]:
        return self.of(Fill)

    def clear(self) -> None:
        self.events.clear()

    def pos(self, symbol: str, account: str = "a") -> PositionView:
        view = self.broker.view(account)
        matches = [p for p in view.positions if p.symbol == symbol]
        assert len(matches) == 1, f"expected one {symbol} position, got {view.positions}"
        return matches[0]

    def working(self, account: str = "a") -> list[OrderInfo]:
        return self.broker.working_orders(account)


def make(prices: dict[str, str], *, fee: str = "0", slip: str = "0",
         naming: NamingScheme = NamingScheme.PLAIN,
         catalog: Catalog | None = None) -> Sim:
    catalog = catalog or Catalog()
    book = PriceBook(catalog)
    for symbol, price in prices.items():
        book.set(symbol, D(price))
    broker = SimBroker("sim", catalog, book,
                       BrokerSettings(fee_per_contract=D(fee), slippage_ticks=D(slip),
                                      naming=naming),
                       SteppingClock())
    sim = Sim(broker, book)
    broker.subscribe(sim.events.append)
    return sim


# --- fills, fees and slippage -----------------------------------------------------


def test_market_orders_fill_with_adverse_slippage_and_fees_on_every_fill() -> None:
    sim = make({"MNQ": "21000"}, fee="1.25", slip="2")
    sim.open(balance="50000")
    sim.order("MNQ", BUY, "2")
    (buy,) = sim.fills()
    assert buy.price == D("21000.5")  # 2 ticks of 0.25 above
    assert buy.fee == D("2.5")
    assert buy.cause is FillCause.ORDER
    view = sim.broker.view("a")
    assert view.balance == D("49997.5")  # only the fee; margin is not taken out
    assert view.used_margin == D("200")  # 2 x 100
    # at 21000 the position is 2 x 0.5 x 2 = 2 under water
    assert view.equity == D("49995.5")
    assert view.available == D("49795.5")

    sim.move("MNQ", "21010")
    sim.order("MNQ", SELL, "2")
    sell = sim.fills()[-1]
    assert sell.price == D("21009.5")  # 2 ticks below
    assert sell.realized == D("36")  # (21009.5 - 21000.5) * 2 * 2
    assert sell.fee == D("2.5")
    view = sim.broker.view("a")
    assert view.balance == D("50031")  # 50000 - 2.5 + 36 - 2.5
    assert view.positions == ()
    assert view.realized == D("36")
    assert view.fees == D("5")


def test_perp_fees_are_fill_qty_times_fee() -> None:
    sim = make({"BTCUSDT": "50000"}, fee="2")
    sim.open(balance="10000")
    sim.order("BTCUSDT", BUY, "0.05")
    (fill,) = sim.fills()
    assert fill.fee == D("0.1")
    assert sim.broker.view("a").balance == D("9999.9")


def test_sell_slippage_never_goes_below_one_tick() -> None:
    sim = make({"SOLUSDT": "0.02"}, slip="5")
    sim.open(balance="1000")
    sim.order("SOLUSDT", SELL, "1")
    assert sim.fills()[0].price == D("0.01")


def test_limit_buy_fills_at_its_limit_when_price_reaches_it() -> None:
    sim = make({"MNQ": "21000"}, slip="2")
    sim.open()
    order_id = sim.order("MNQ", BUY, "1", kind=LIMIT, price="20990")
    assert [p.order.id for p in sim.of(OrderPlaced)] == [order_id]
    sim.move("MNQ", "20995")
    assert sim.fills() == []
    sim.move("MNQ", "20980")  # gapped through: still the limit, no slippage
    (fill,) = sim.fills()
    assert fill.price == D("20990")
    assert fill.order_id == order_id
    assert sim.working() == []
    assert sim.pos("MNQ").avg_price == D("20990")


def test_limit_sell_fills_at_its_limit() -> None:
    sim = make({"MNQ": "21000"})
    sim.open()
    sim.order("MNQ", SELL, "1", kind=LIMIT, price="21010")
    sim.move("MNQ", "21005")
    assert sim.fills() == []
    sim.move("MNQ", "21020")
    (fill,) = sim.fills()
    assert fill.price == D("21010")
    assert fill.side is SELL
    assert sim.pos("MNQ").qty == D("-1")


def test_marketable_limit_fills_at_once_at_the_current_price() -> None:
    sim = make({"MNQ": "21000"}, slip="2")
    sim.open()
    sim.order("MNQ", BUY, "1", kind=LIMIT, price="21010")
    (fill,) = sim.fills()
    assert fill.price == D("21000")
    assert sim.working() == []
    assert sim.of(OrderPlaced) == []


def test_stop_buy_fills_at_the_update_price_plus_slippage() -> None:
    sim = make({"MNQ": "21000"}, slip="2")
    sim.open()
    sim.order("MNQ", BUY, "1", kind=STOP, price="21010")
    sim.move("MNQ", "21005")
    assert sim.fills() == []
    sim.move("MNQ", "21015")
    (fill,) = sim.fills()
    assert fill.price == D("21015.5")  # not the stop price 21010
    assert sim.pos("MNQ").qty == D("1")


def test_stop_sell_fills_at_the_update_price_minus_slippage() -> None:
    sim = make({"ES": "5000"}, slip="1")
    sim.open()
    sim.order("ES", SELL, "1", kind=STOP, price="4990")
    sim.move("ES", "4995")
    assert sim.fills() == []
    sim.move("ES", "4985")
    (fill,) = sim.fills()
    assert fill.price == D("4984.75")
    assert fill.side is SELL


def test_a_price_update_of_one_symbol_triggers_orders_of_its_family() -> None:
    sim = make({"MNQ": "21000"})
    sim.open()
    sim.order("NQ", BUY, "1", kind=LIMIT, price="20990")
    sim.move("MNQ", "20985")
    (fill,) = sim.fills()
    assert fill.symbol == "NQ"
    assert fill.price == D("20990")


# --- validation -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("symbol", "qty", "kind", "price"),
    [
        ("MNQ", "1", LIMIT, "20990.1"),  # off the 0.25 tick
        ("MNQ", "1", STOP, "0"),
        ("MNQ", "1", LIMIT, "-20990"),
        ("MNQ", "1", LIMIT, None),  # a limit needs a price
        ("MNQ", "1.5", OrderType.MARKET, None),  # futures trade whole contracts
        ("MNQ", "0", OrderType.MARKET, None),
        ("BTCUSDT", "0.0015", OrderType.MARKET, None),  # off the 0.001 step
        ("BTCUSDT", "0.0005", OrderType.MARKET, None),  # below the 0.001 minimum
        ("SOLUSDT", "0.05", OrderType.MARKET, None),
        ("BTCUSDT", "0.01", LIMIT, "49000.05"),
    ],
)
def test_bad_price_or_qty_is_refused_and_changes_nothing(
    symbol: str, qty: str, kind: OrderType, price: str | None
) -> None:
    sim = make({"MNQ": "21000", "BTCUSDT": "50000", "SOLUSDT": "100"})
    sim.open()
    with pytest.raises(Refused):
        sim.order(symbol, BUY, qty, kind=kind, price=price)
    assert sim.events == []
    assert sim.working() == []
    assert sim.broker.view("a").positions == ()


def test_below_minimum_qty_is_refused_even_on_step() -> None:
    catalog = Catalog()
    catalog.add(Instrument(symbol="XRPUSDT", family="XRP", kind=Kind.PERP, multiplier=D("1"),
                           tick=D("0.0001"), qty_step=D("1"), min_qty=D("10"),
                           max_leverage=20, mmr=D("0.01")))
    sim = make({"XRPUSDT": "0.5"}, catalog=catalog)
    sim.open()
    with pytest.raises(Refused):
        sim.order("XRPUSDT", BUY, "5")
    assert sim.events == []
    sim.order("XRPUSDT", BUY, "10")
    assert sim.pos("XRPUSDT").qty == D("10")


def test_off_tick_bracket_prices_are_refused() -> None:
    sim = make({"MNQ": "21000"})
    sim.open()
    with pytest.raises(Refused):
        sim.order("MNQ", BUY, "1", stop_loss="20950.1")
    with pytest.raises(Refused):
        sim.order("MNQ", BUY, "1", take_profit="21050.3")
    assert sim.events == []


def test_modify_to_an_off_tick_price_is_refused() -> None:
    sim = make({"MNQ": "21000"})
    sim.open()
    order_id = sim.order("MNQ", BUY, "1", kind=LIMIT, price="20990")
    with pytest.raises(Refused):
        sim.broker.modify_order(order_id, D("20990.1"))
    order = sim.broker.order(order_id)
    assert order is not None
    assert order.price == D("20990")


# --- margin -----------------------------------------------------------------------


def test_futures_order_beyond_available_margin_is_rejected() -> None:
    sim = make({"MNQ": "21000"})
    sim.open(balance="1000")
    with pytest.raises(OrderRejected) as info:
        sim.order("MNQ", BUY, "11")  # 11 x 100 > 1000
    assert info.value.reason is RejectReason.INSUFFICIENT_MARGIN
    assert sim.events == []
    assert sim.broker.view("a").positions == ()
    sim.order("MNQ", BUY, "10")  # exactly 1000: fits
    view = sim.broker.view("a")
    assert view.used_margin == D("1000")
    assert view.available == D("0")
    assert view.balance == D("1000")


def test_perp_order_beyond_available_margin_is_rejected() -> None:
    sim = make({"BTCUSDT": "50000"})
    sim.open(balance="1000")
    assert sim.broker.leverage_of("a", "BTCUSDT") == (10, MarginMode.CROSS)  # defaults
    with pytest.raises(OrderRejected) as info:
        sim.order("BTCUSDT", BUY, "0.201")  # 0.201 x 50000 / 10 = 1005
    assert info.value.reason is RejectReason.INSUFFICIENT_MARGIN
    sim.order("BTCUSDT", BUY, "0.2")  # 1000
    assert sim.pos("BTCUSDT").margin == D("1000")


def test_cross_perp_margin_follows_the_current_price() -> None:
    sim = make({"BTCUSDT": "50000"})
    sim.open(balance="10000")
    sim.broker.set_leverage("a", "BTCUSDT", 5)
    sim.order("BTCUSDT", BUY, "0.1")
    assert sim.pos("BTCUSDT").margin == D("1000")
    sim.move("BTCUSDT", "52000")
    assert sim.pos("BTCUSDT").margin == D("1040")  # 0.1 x 52000 / 5
    view = sim.broker.view("a")
    assert view.equity == D("10200")
    assert view.available == D("9160")


def test_reversal_may_use_the_margin_its_close_frees() -> None:
    sim = make({"MNQ": "21000"})
    sim.open(balance="1000")
    sim.order("MNQ", BUY, "10")
    assert sim.broker.view("a").available == D("0")
    with pytest.raises(OrderRejected) as info:
        sim.order("MNQ", SELL, "21")  # the 11 opened need 1100; 1000 is freed
    assert info.value.reason is RejectReason.INSUFFICIENT_MARGIN
    assert sim.pos("MNQ").qty == D("10")
    sim.order("MNQ", SELL, "20")
    position = sim.pos("MNQ")
    assert position.qty == D("-10")
    assert position.avg_price == D("21000")


def test_working_orders_reserve_no_margin_and_fail_when_unaffordable() -> None:
    sim = make({"MNQ": "21000"})
    sim.open(balance="1000")
    first = sim.order("MNQ", BUY, "10", kind=LIMIT, price="20990")
    second = sim.order("MNQ", BUY, "10", kind=LIMIT, price="20980")
    view = sim.broker.view("a")
    assert view.available == D("1000")
    assert view.used_margin == D("0")
    assert {o.id for o in sim.working()} == {first, second}

    sim.move("MNQ", "20985")
    assert [f.order_id for f in sim.fills()] == [first]
    sim.move("MNQ", "20975")  # equity 700, used 1000: the second cannot be afforded
    (failed,) = sim.of(OrderFailed)
    assert failed.order.id == second
    assert failed.reason is RejectReason.INSUFFICIENT_MARGIN
    assert len(sim.fills()) == 1
    assert sim.working() == []
    assert sim.pos("MNQ").qty == D("10")


def test_modify_that_makes_an_unaffordable_order_marketable_is_refused() -> None:
    sim = make({"MNQ": "21000"})
    sim.open(balance="500")
    order_id = sim.order("MNQ", BUY, "6", kind=LIMIT, price="20990")
    with pytest.raises(OrderRejected) as info:
        sim.broker.modify_order(order_id, D("21000"))
    assert info.value.reason is RejectReason.INSUFFICIENT_MARGIN
    assert sim.fills() == []
    order = sim.broker.order(order_id)
    assert order is not None
    assert order.price == D("20990")


def test_modify_into_the_market_fills_a_limit_at_the_current_price() -> None:
    sim = make({"MNQ": "21000"}, slip="2")
    sim.open()
    order_id = sim.order("MNQ", BUY, "1", kind=LIMIT, price="20990")
    sim.broker.modify_order(order_id, D("21005"))
    (fill,) = sim.fills()
    assert fill.order_id == order_id
    assert fill.price == D("21000")
    assert sim.working() == []


# --- brackets ---------------------------------------------------------------------


def _bracket_legs(sim: Sim) -> tuple[OrderInfo, OrderInfo]:
    legs = {o.role: o for o in sim.working()}
    assert set(legs) == {"take_profit", "stop_loss"}
    return legs["take_profit"], legs["stop_loss"]


def test_brackets_become_reduce_only_exits_for_the_filled_qty() -> None:
    sim = make({"MNQ": "21000"})
    sim.open()
    parent = sim.order("MNQ", BUY, "2", stop_loss="20950", take_profit="21050")
    tp, sl = _bracket_legs(sim)
    assert (tp.type, tp.side, tp.qty, tp.price, tp.reduce_only) == (
        LIMIT, SELL, D("2"), D("21050"), True)
    assert (sl.type, sl.side, sl.qty, sl.price, sl.reduce_only) == (
        STOP, SELL, D("2"), D("20950"), True)
    assert tp.parent_id == parent
    assert sl.parent_id == parent


def test_take_profit_fill_cancels_the_stop_loss() -> None:
    sim = make({"MNQ": "21000"}, fee="1")
    sim.open(balance="50000")
    sim.order("MNQ", BUY, "2", stop_loss="20950", take_profit="21050")
    tp, sl = _bracket_legs(sim)
    sim.move("MNQ", "21060")
    exit_fill = sim.fills()[-1]
    assert exit_fill.order_id == tp.id
    assert exit_fill.cause is FillCause.BRACKET
    assert exit_fill.price == D("21050")
    assert exit_fill.fee == D("2")
    assert [c.order.id for c in sim.of(OrderCancelled)] == [sl.id]
    assert sim.working() == []
    view = sim.broker.view("a")
    assert view.positions == ()
    assert view.balance == D("50196")  # + 50 x 2 x 2 - 2 - 2


def test_stop_loss_fill_cancels_the_take_profit() -> None:
    sim = make({"MNQ": "21000"}, slip="1")
    sim.open()
    sim.order("MNQ", SELL, "1", stop_loss="21040", take_profit="20900")
    tp, sl = _bracket_legs(sim)
    assert sl.side is BUY
    sim.move("MNQ", "21045")
    exit_fill = sim.fills()[-1]
    assert exit_fill.order_id == sl.id
    assert exit_fill.price == D("21045.25")  # the update price plus slippage
    assert [c.order.id for c in sim.of(OrderCancelled)] == [tp.id]
    assert sim.broker.view("a").positions == ()


def test_flat_position_cancels_both_brackets() -> None:
    sim = make({"MNQ": "21000"})
    sim.open()
    sim.order("MNQ", BUY, "2", stop_loss="20950", take_profit="21050")
    tp, sl = _bracket_legs(sim)
    sim.order("MNQ", SELL, "2")
    assert {c.order.id for c in sim.of(OrderCancelled)} == {tp.id, sl.id}
    assert sim.working() == []


def test_bracket_qty_is_what_the_order_opened() -> None:
    sim = make({"MNQ": "21000"})
    sim.open()
    sim.order("MNQ", SELL, "1")
    sim.order("MNQ", BUY, "3", stop_loss="20950", take_profit="21050")  # closes 1, opens 2
    assert sim.pos("MNQ").qty == D("2")
    tp, sl = _bracket_legs(sim)
    assert tp.qty == D("2")
    assert sl.qty == D("2")


def test_bracket_qty_on_an_add_is_the_added_qty() -> None:
    sim = make({"MNQ": "21000"})
    sim.open()
    sim.order("MNQ", BUY, "1")
    sim.order("MNQ", BUY, "2", stop_loss="20950")
    (sl,) = sim.working()
    assert sl.role == "stop_loss"
    assert sl.qty == D("2")


def test_working_order_brackets_are_placed_when_it_fills() -> None:
    sim = make({"MNQ": "21000"})
    sim.open()
    sim.order("MNQ", BUY, "1", kind=LIMIT, price="20990", take_profit="21020")
    assert [o.role for o in sim.working()] == [None]
    sim.move("MNQ", "20990")
    (tp,) = sim.working()
    assert tp.role == "take_profit"
    assert tp.qty == D("1")
    assert tp.price == D("21020")


def test_bracket_already_through_its_trigger_fills_at_once() -> None:
    sim = make({"MNQ": "21000"}, slip="1")
    sim.open()
    sim.order("MNQ", BUY, "1", kind=LIMIT, price="20990", stop_loss="20980")
    sim.move("MNQ", "20970")  # the entry fills at its limit; its stop is already through
    entry, exit_fill = sim.fills()
    assert (entry.cause, entry.price) == (FillCause.ORDER, D("20990"))
    assert (exit_fill.cause, exit_fill.price) == (FillCause.BRACKET, D("20969.75"))
    assert sim.broker.view("a").positions == ()
    assert sim.working() == []


def test_bracket_exit_closes_no_more_than_the_position() -> None:
    sim = make({"MNQ": "21000"})
    sim.open()
    sim.order("MNQ", BUY, "2", take_profit="21050")
    sim.order("MNQ", SELL, "1")
    sim.move("MNQ", "21050")
    exit_fill = sim.fills()[-1]
    assert exit_fill.cause is FillCause.BRACKET
    assert exit_fill.qty == D("1")
    assert sim.broker.view("a").positions == ()


def test_reduce_only_orders_are_cancelled_when_the_position_goes_flat() -> None:
    sim = make({"MNQ": "21000"})
    sim.open()
    sim.order("MNQ", BUY, "2")
    exit_id = sim.order("MNQ", SELL, "2", kind=LIMIT, price="21100", reduce_only=True)
    entry_id = sim.order("MNQ", BUY, "1", kind=LIMIT, price="20900")
    sim.order("MNQ", SELL, "2")
    assert [c.order.id for c in sim.of(OrderCancelled)] == [exit_id]
    assert [o.id for o in sim.working()] == [entry_id]


def test_reduce_only_without_a_position_is_rejected() -> None:
    sim = make({"MNQ": "21000"})
    sim.open()
    with pytest.raises(Refused):
        sim.order("MNQ", SELL, "1", kind=LIMIT, price="21100", reduce_only=True)
    assert sim.working() == []


# --- isolated margin, leverage, margin mode -----------------------------------------


def _isolated(sim: Sim, symbol: str, leverage: int, account: str = "a") -> None:
    sim.broker.set_margin_mode(account, symbol, MarginMode.ISOLATED)
    sim.broker.set_leverage(account, symbol, leverage)


def test_isolated_margin_is_qty_times_avg_over_leverage() -> None:
    sim = make({"BTCUSDT": "50000"})
    sim.open(balance="10000")
    _isolated(sim, "BTCUSDT", 5)
    sim.order("BTCUSDT", BUY, "0.1")
    position = sim.pos("BTCUSDT")
    assert position.margin_mode is MarginMode.ISOLATED
    assert position.leverage == 5
    assert position.margin == D("1000")
    sim.move("BTCUSDT", "51000")
    assert sim.pos("BTCUSDT").margin == D("1000")  # isolated: not re-priced
    sim.order("BTCUSDT", BUY, "0.1")
    position = sim.pos("BTCUSDT")
    assert position.avg_price == D("50500")
    assert position.margin == D("2020")  # 0.2 x 50500 / 5
    view = sim.broker.view("a")
    assert view.equity == D("10100")  # 0.2 x (51000 - 50500)
    assert view.available == D("8080")


def test_partial_close_releases_isolated_margin_in_proportion() -> None:
    sim = make({"BTCUSDT": "50000"})
    sim.open(balance="10000")
    _isolated(sim, "BTCUSDT", 5)
    sim.order("BTCUSDT", BUY, "0.2")
    sim.broker.adjust_margin("a", "BTCUSDT", D("400"))  # 2000 + 400
    sim.order("BTCUSDT", SELL, "0.05")
    assert sim.pos("BTCUSDT").margin == D("1800")  # 2400 x 0.15 / 0.2


def test_isolated_reversal_opens_fresh_margin_at_the_fill_price() -> None:
    sim = make({"BTCUSDT": "50000"})
    sim.open(balance="10000")
    _isolated(sim, "BTCUSDT", 5)
    sim.order("BTCUSDT", BUY, "0.1")
    sim.broker.adjust_margin("a", "BTCUSDT", D("300"))
    sim.move("BTCUSDT", "48000")
    sim.order("BTCUSDT", SELL, "0.3")
    position = sim.pos("BTCUSDT")
    assert position.qty == D("-0.2")
    assert position.avg_price == D("48000")
    assert position.margin == D("1920")  # 0.2 x 48000 / 5; the added 300 went with the close
    view = sim.broker.view("a")
    assert view.balance == D("9800")  # (48000 - 50000) x 0.1
    assert view.available == D("7880")


def test_leverage_change_sets_isolated_margin_and_is_refused_beyond_available() -> None:
    sim = make({"BTCUSDT": "50000"})
    sim.open(balance="3000")
    _isolated(sim, "BTCUSDT", 5)
    sim.order("BTCUSDT", BUY, "0.2")  # margin 2000, available 1000
    sim.broker.set_leverage("a", "BTCUSDT", 4)  # 2500: +500 fits
    assert sim.pos("BTCUSDT").margin == D("2500")
    assert sim.broker.view("a").available == D("500")
    with pytest.raises(Refused):
        sim.broker.set_leverage("a", "BTCUSDT", 2)  # 5000: +2500 > 500
    assert sim.pos("BTCUSDT").margin == D("2500")
    assert sim.broker.leverage_of("a", "BTCUSDT") == (4, MarginMode.ISOLATED)
    sim.broker.set_leverage("a", "BTCUSDT", 20)  # lowering the margin always fits
    assert sim.pos("BTCUSDT").margin == D("500")


def test_leverage_change_uses_the_average_price_not_the_current_one() -> None:
    sim = make({"ETHUSDT": "2000"})
    sim.open(balance="10000")
    _isolated(sim, "ETHUSDT", 10)
    sim.order("ETHUSDT", BUY, "1")
    sim.move("ETHUSDT", "2500")
    sim.broker.set_leverage("a", "ETHUSDT", 8)
    assert sim.pos("ETHUSDT").margin == D("250")  # 1 x 2000 / 8


def test_cross_leverage_increase_beyond_available_is_refused() -> None:
    sim = make({"BTCUSDT": "50000"})
    sim.open(balance="1500")
    sim.order("BTCUSDT", BUY, "0.2")  # cross 10x: 1000 used, 500 available
    with pytest.raises(Refused):
        sim.broker.set_leverage("a", "BTCUSDT", 5)  # needs 2000
    assert sim.broker.leverage_of("a", "BTCUSDT") == (10, MarginMode.CROSS)
    assert sim.pos("BTCUSDT").margin == D("1000")


@pytest.mark.parametrize("leverage", [0, 126, D("2.5")])
def test_leverage_must_be_a_whole_number_up_to_the_maximum(leverage: int | Decimal) -> None:
    sim = make({"BTCUSDT": "50000"})
    sim.open()
    with pytest.raises(Refused):
        sim.broker.set_leverage("a", "BTCUSDT", leverage)
    assert sim.broker.leverage_of("a", "BTCUSDT") == (10, MarginMode.CROSS)


def test_futures_have_no_leverage_or_margin_mode() -> None:
    sim = make({"MNQ": "21000"})
    sim.open()
    with pytest.raises(Refused):
        sim.broker.set_leverage("a", "MNQ", 5)
    with pytest.raises(Refused):
        sim.broker.set_margin_mode("a", "MNQ", MarginMode.ISOLATED)


def test_adjust_margin_adds_and_removes_down_to_the_floor() -> None:
    sim = make({"BTCUSDT": "50000"})
    sim.open(balance="1000")
    _isolated(sim, "BTCUSDT", 10)
    sim.order("BTCUSDT", BUY, "0.1")  # margin 500
    sim.broker.adjust_margin("a", "BTCUSDT", D("200"))
    assert sim.pos("BTCUSDT").margin == D("700")
    view = sim.broker.view("a")
    assert view.available == D("300")
    assert view.balance == D("1000")  # margin is set aside, not taken from balance
    with pytest.raises(Refused):
        sim.broker.adjust_margin("a", "BTCUSDT", D("300.01"))  # more than available
    sim.broker.adjust_margin("a", "BTCUSDT", D("-150"))
    assert sim.pos("BTCUSDT").margin == D("550")
    with pytest.raises(Refused):
        sim.broker.adjust_margin("a", "BTCUSDT", D("-50.01"))  # below 0.1 x 50000 / 10
    assert sim.pos("BTCUSDT").margin == D("550")
    sim.broker.adjust_margin("a", "BTCUSDT", D("-50"))
    assert sim.pos("BTCUSDT").margin == D("500")


def test_adjust_margin_needs_an_isolated_position() -> None:
    sim = make({"BTCUSDT": "50000"})
    sim.open()
    sim.order("BTCUSDT", BUY, "0.1")  # cross
    with pytest.raises(Refused):
        sim.broker.adjust_margin("a", "BTCUSDT", D("100"))
    with pytest.raises(Refused):
        sim.broker.adjust_margin("a", "ETHUSDT", D("100"))  # no position


def test_margin_mode_cannot_change_with_an_open_position() -> None:
    sim = make({"BTCUSDT": "50000"})
    sim.open()
    sim.order("BTCUSDT", BUY, "0.1")
    with pytest.raises(Refused):
        sim.broker.set_margin_mode("a", "BTCUSDT", MarginMode.ISOLATED)
    assert sim.broker.leverage_of("a", "BTCUSDT") == (10, MarginMode.CROSS)
    sim.order("BTCUSDT", SELL, "0.1")
    sim.broker.set_margin_mode("a", "BTCUSDT", MarginMode.ISOLATED)
    assert sim.broker.leverage_of("a", "BTCUSDT") == (10, MarginMode.ISOLATED)


def test_leverage_and_margin_mode_are_per_account_and_symbol() -> None:
    sim = make({"BTCUSDT": "50000"})
    sim.open("a")
    sim.open("b")
    _isolated(sim, "BTCUSDT", 3, account="a")
    assert sim.broker.leverage_of("a", "BTCUSDT") == (3, MarginMode.ISOLATED)
    assert sim.broker.leverage_of("a", "ETHUSDT") == (10, MarginMode.CROSS)
    assert sim.broker.leverage_of("b", "BTCUSDT") == (10, MarginMode.CROSS)


# --- liquidation ------------------------------------------------------------------


def test_isolated_long_liquidates_at_the_formula_price() -> None:
    # 10 SOL at 110, 10x, mmr 0.01: liquidation at 110 x 0.9 / 0.99 = 100
    sim = make({"SOLUSDT": "110"})
    sim.open(balance="1000")
    _isolated(sim, "SOLUSDT", 10)
    sim.order("SOLUSDT", BUY, "10")
    assert sim.pos("SOLUSDT").margin == D("110")
    sim.move("SOLUSDT", "100.01")  # one tick better
    assert len(sim.fills()) == 1
    sim.move("SOLUSDT", "100")
    liq = sim.fills()[-1]
    assert (liq.cause, liq.price, liq.qty) == (FillCause.LIQUIDATION, D("100"), D("10"))
    view = sim.broker.view("a")
    assert view.positions == ()
    assert view.balance == D("900")


def test_isolated_liquidation_closes_at_the_update_price_with_fees() -> None:
    sim = make({"SOLUSDT": "110"}, slip="3", fee="0.5")
    sim.open(balance="1000")
    _isolated(sim, "SOLUSDT", 10)
    sim.order("SOLUSDT", BUY, "10")
    entry = sim.fills()[0]
    assert entry.price == D("110.03")
    sim.clear()
    sim.move("SOLUSDT", "100.1")
    assert sim.fills() == []
    # avg 110.03: margin 110.03, liquidation at 110.03 x 0.9 / 0.99 = 100.0272...
    sim.move("SOLUSDT", "100.03")
    assert sim.fills() == []
    sim.move("SOLUSDT", "100.02")
    (liq,) = sim.fills()
    assert liq.cause is FillCause.LIQUIDATION
    assert liq.price == D("100.02")  # the update price, no slippage
    assert liq.qty == D("10")
    assert liq.realized == D("-100.1")  # (100.02 - 110.03) x 10
    assert liq.fee == D("5")
    view = sim.broker.view("a")
    assert view.positions == ()
    assert view.balance == D("889.9")  # 1000 - 5 - 100.1 - 5


def test_isolated_short_liquidates_and_added_margin_postpones_it() -> None:
    # 10 SOL short at 101, 10x: liquidation at 101 x 1.1 / 1.01 = 110
    sim = make({"SOLUSDT": "101"})
    sim.open("a", balance="1000")
    sim.open("b", balance="1000")
    for account in ("a", "b"):
        _isolated(sim, "SOLUSDT", 10, account=account)
        sim.order("SOLUSDT", SELL, "10", account=account)
    sim.broker.adjust_margin("b", "SOLUSDT", D("5"))
    sim.move("SOLUSDT", "109.99")
    assert sim.fills()[2:] == []
    sim.move("SOLUSDT", "110")
    liquidations = [f for f in sim.fills() if f.cause is FillCause.LIQUIDATION]
    assert [(f.account, f.price) for f in liquidations] == [("a", D("110"))]
    assert sim.broker.position("b", "SOLUSDT") == D("-10")


def test_cross_liquidation_closes_every_cross_position_at_the_update_price() -> None:
    sim = make({"SOLUSDT": "100", "ETHUSDT": "1000", "MNQ": "21000"}, slip="2")
    sim.open(balance="400")
    sim.order("SOLUSDT", BUY, "10")  # at 100.02, margin 100.02
    sim.order("ETHUSDT", BUY, "1")  # at 1000.02, margin 100.002
    sim.order("MNQ", BUY, "1")  # at 21000.5; futures are never liquidated
    sim.move("MNQ", "21100")  # +199
    fills_before = len(sim.fills())
    sim.move("SOLUSDT", "40")
    # equity = 400 + 10 x (40 - 100.02) - 0.02 + 199 = -1.22
    # maintenance = 10 x 40 x 0.01 + 1000 x 0.005 = 9
    new = sim.fills()[fills_before:]
    assert {(f.symbol, f.cause, f.price) for f in new} == {
        ("SOLUSDT", FillCause.LIQUIDATION, D("40")),  # no slippage
        ("ETHUSDT", FillCause.LIQUIDATION, D("1000")),
    }
    assert [p.symbol for p in sim.broker.view("a").positions] == ["MNQ"]


def test_cross_liquidation_uses_the_sum_of_maintenance_margins() -> None:
    # equity = 200 + 10 x (P - 100) ; maintenance = 10 x P x 0.01 + 1 x 1000 x 0.005
    # liquidation when 9.9 P <= 805, i.e. P <= 81.3131...
    sim = make({"SOLUSDT": "100", "ETHUSDT": "1000"})
    sim.open(balance="200")
    sim.order("SOLUSDT", BUY, "10")
    sim.order("ETHUSDT", BUY, "1")
    sim.move("SOLUSDT", "81.32")  # equity 13.2 > 13.132
    assert len(sim.fills()) == 2
    sim.move("SOLUSDT", "81.31")  # equity 13.1 <= 13.131 (SOL's own 8.131 alone would not)
    liquidations = sim.fills()[2:]
    assert {(f.symbol, f.price) for f in liquidations} == {
        ("SOLUSDT", D("81.31")), ("ETHUSDT", D("1000"))}
    assert all(f.cause is FillCause.LIQUIDATION for f in liquidations)
    view = sim.broker.view("a")
    assert view.positions == ()
    assert view.balance == D("13.1")


def test_cross_liquidation_with_risk_rules_still_closes_every_position_at_the_update_price(
) -> None:
    # SPEC 2: cross liquidation closes all cross positions at the update price; SPEC 8:
    # only a risk flatten slips. The loss also breaches the daily limit, which may be
    # reported afterwards, but must not turn the rest of the liquidation into a slipped
    # risk flatten.
    sim = make({"SOLUSDT": "100", "ETHUSDT": "1000"}, slip="2")
    sim.open(balance="300", risk=RiskLimits(daily_loss_limit=D("150")))
    sim.order("SOLUSDT", BUY, "10")  # at 100.02
    sim.order("ETHUSDT", BUY, "1")  # at 1000.02
    sim.move("SOLUSDT", "40")  # equity -300.22 <= maintenance 9
    closes = sim.fills()[2:]
    assert {(f.symbol, f.cause, f.price) for f in closes} == {
        ("SOLUSDT", FillCause.LIQUIDATION, D("40")),
        ("ETHUSDT", FillCause.LIQUIDATION, D("1000")),
    }
    assert sim.broker.view("a").positions == ()


def test_isolated_positions_are_not_part_of_cross_liquidation() -> None:
    sim = make({"SOLUSDT": "100", "ETHUSDT": "1000"})
    sim.open(balance="200")
    sim.order("SOLUSDT", BUY, "10")  # cross
    _isolated(sim, "ETHUSDT", 10)
    sim.order("ETHUSDT", BUY, "1")  # isolated, margin 100
    # cross maintenance is SOL's only: 0.1 P; equity = 200 + 10 (P - 100) = 10 P - 800
    sim.move("SOLUSDT", "81.31")  # 13.1 > 8.131: no liquidation
    assert len(sim.fills()) == 2
    sim.move("SOLUSDT", "80.81")  # 8.1 > 8.081
    assert len(sim.fills()) == 2
    sim.move("SOLUSDT", "80.8")  # 8 <= 8.08
    (liq,) = sim.fills()[2:]
    assert (liq.symbol, liq.cause, liq.price) == ("SOLUSDT", FillCause.LIQUIDATION, D("80.8"))
    assert sim.broker.position("a", "ETHUSDT") == D("1")


# --- risk -------------------------------------------------------------------------


def test_daily_loss_breach_flattens_cancels_and_reports_after_the_fills() -> None:
    sim = make({"MNQ": "21000"}, slip="1")
    sim.open(balance="50000", risk=RiskLimits(daily_loss_limit=D("1000")))
    sim.order("MNQ", BUY, "5")  # 21000.25
    resting = sim.order("MNQ", BUY, "1", kind=LIMIT, price="20000")
    sim.clear()
    # today's PnL = (P - 21000.25) x 5 x 2
    sim.move("MNQ", "20900.5")  # -997.5
    assert sim.events == []
    sim.move("MNQ", "20900.25")  # -1000
    kinds = [type(e) for e in sim.events]
    assert kinds == [OrderCancelled, Fill, AccountBreached]
    cancelled, flatten, breached = sim.events
    assert isinstance(cancelled, OrderCancelled)
    assert cancelled.order.id == resting
    assert isinstance(flatten, Fill)
    assert flatten.cause is FillCause.RISK
    assert flatten.price == D("20900")  # at market, with one tick of slippage
    assert flatten.qty == D("5")
    assert isinstance(breached, AccountBreached)
    assert (breached.account, breached.rule) == ("a", "daily_loss_limit")
    view = sim.broker.view("a")
    assert view.breached == "daily_loss_limit"
    assert view.positions == ()
    assert view.orders == ()
    assert view.balance == D("48997.5")  # (20900 - 21000.25) x 5 x 2 = -1002.5
    assert sim.broker.is_breached("a")


def test_breached_account_rejects_orders_until_reset() -> None:
    sim = make({"MNQ": "21000"})
    sim.open(balance="10000", risk=RiskLimits(daily_loss_limit=D("100")))
    sim.order("MNQ", BUY, "1")
    sim.move("MNQ", "20950")  # -100
    assert sim.broker.is_breached("a")
    sim.clear()
    for kind, price in ((OrderType.MARKET, None), (LIMIT, "20900")):
        with pytest.raises(OrderRejected) as info:
            sim.order("MNQ", BUY, "1", kind=kind, price=price)
        assert info.value.reason is RejectReason.ACCOUNT_BREACHED
    assert sim.events == []
    sim.broker.reset_breach("a")
    assert not sim.broker.is_breached("a")
    sim.order("MNQ", BUY, "1")
    assert sim.pos("MNQ").qty == D("1")


def test_reset_breach_is_refused_when_not_breached() -> None:
    sim = make({"MNQ": "21000"})
    sim.open(risk=RiskLimits(daily_loss_limit=D("100")))
    with pytest.raises(Refused):
        sim.broker.reset_breach("a")


def test_reset_starts_the_day_from_current_equity() -> None:
    sim = make({"MNQ": "21000"})
    sim.open(balance="10000", risk=RiskLimits(daily_loss_limit=D("100")))
    sim.order("MNQ", BUY, "1")
    sim.move("MNQ", "20950")  # -100: breached, flattened at 20950
    assert sim.broker.view("a").balance == D("9900")
    sim.broker.reset_breach("a")
    sim.order("MNQ", BUY, "1")
    sim.move("MNQ", "20900.25")  # -99.5 today (-199.5 since the start)
    assert not sim.broker.is_breached("a")
    sim.move("MNQ", "20900")  # -100 today
    assert sim.broker.is_breached("a")
    assert sim.broker.view("a").balance == D("9800")


def test_trailing_drawdown_counts_unrealized_peaks() -> None:
    sim = make({"MNQ": "21000"}, slip="2")
    sim.open(balance="10000", risk=RiskLimits(max_drawdown=D("500")))
    sim.order("MNQ", BUY, "1")  # 21000.5; equity 9999 at 21000
    sim.move("MNQ", "21200.5")  # equity 10400: the new peak, never realized
    sim.move("MNQ", "21000.5")  # 10000: 400 below the peak
    assert not sim.broker.is_breached("a")
    sim.move("MNQ", "20950.75")  # 9900.5
    assert not sim.broker.is_breached("a")
    sim.move("MNQ", "20950.5")  # 9900 = 10400 - 500, though only -100 on the day
    assert sim.broker.view("a").breached == "max_drawdown"
    flatten = sim.fills()[-1]
    assert flatten.cause is FillCause.RISK
    assert flatten.price == D("20950")  # two ticks of slippage
    assert isinstance(sim.events[-1], AccountBreached)


def test_reset_restarts_the_trailing_peak() -> None:
    sim = make({"MNQ": "21000"})
    sim.open(balance="10000", risk=RiskLimits(max_drawdown=D("500")))
    sim.order("MNQ", BUY, "1")
    sim.move("MNQ", "21250")  # peak 10500
    sim.move("MNQ", "21000")  # 10000: breach, flattened at 21000
    assert sim.broker.is_breached("a")
    sim.broker.reset_breach("a")
    sim.order("MNQ", BUY, "1")
    sim.move("MNQ", "20750.25")  # 9500.5: -499.5 from the new peak (10000)
    assert not sim.broker.is_breached("a")
    sim.move("MNQ", "20750")
    assert sim.broker.is_breached("a")


def test_risk_is_checked_on_fills() -> None:
    # slippage makes a fresh position 20 under water: that breaches at the fill
    sim = make({"MNQ": "21000"}, slip="4")
    sim.open(balance="10000", risk=RiskLimits(daily_loss_limit=D("20")))
    sim.order("MNQ", BUY, "10")  # 21001; at 21000: -20
    fills = sim.fills()
    assert [(f.cause, f.price) for f in fills] == [
        (FillCause.ORDER, D("21001")), (FillCause.RISK, D("20999"))]
    assert isinstance(sim.events[-1], AccountBreached)
    assert sim.broker.view("a").balance == D("9960")


def test_accounts_without_risk_rules_never_breach() -> None:
    sim = make({"MNQ": "21000"})
    sim.open(balance="1000")
    sim.order("MNQ", BUY, "1")
    sim.move("MNQ", "20000")
    assert not sim.broker.is_breached("a")
    assert sim.broker.view("a").balance == D("1000")


# --- naming and client ids ----------------------------------------------------------


def test_tradovate_broker_speaks_tradovate_symbols() -> None:
    sim = make({"MNQ": "21000", "BTCUSDT": "50000"}, naming=NamingScheme.TRADOVATE)
    sim.open()
    sim.order("MNQZ6", BUY, "1", stop_loss="20950")
    (fill,) = sim.fills()
    assert fill.symbol == "MNQZ6"
    assert [o.symbol for o in sim.working()] == ["MNQZ6"]
    assert sim.broker.position("a", "MNQZ6") == D("1")
    assert [p.symbol for p in sim.broker.view("a").positions] == ["MNQZ6"]
    with pytest.raises(Refused):
        sim.order("MNQ", BUY, "1")
    with pytest.raises(Refused):
        sim.order("CON.F.US.MNQ.Z26", BUY, "1")


def test_projectx_broker_speaks_projectx_symbols() -> None:
    sim = make({"MNQ": "21000", "BTCUSDT": "50000"}, naming=NamingScheme.PROJECTX)
    sim.open()
    sim.order("CON.F.US.MNQ.Z26", BUY, "1")
    sim.order("BTC-USDT-SWAP", SELL, "0.01", kind=LIMIT, price="51000")
    assert sim.fills()[0].symbol == "CON.F.US.MNQ.Z26"
    (placed,) = sim.of(OrderPlaced)
    assert placed.order.symbol == "BTC-USDT-SWAP"
    sim.move("BTCUSDT", "51000")
    assert sim.fills()[-1].symbol == "BTC-USDT-SWAP"
    assert sim.broker.position("a", "BTC-USDT-SWAP") == D("-0.01")
    assert sim.broker.leverage_of("a", "BTC-USDT-SWAP") == (10, MarginMode.CROSS)
    with pytest.raises(Refused):
        sim.order("MNQZ6", BUY, "1")
    with pytest.raises(Refused):
        sim.order("BTCUSDT", BUY, "0.01")


def test_plain_broker_speaks_catalog_symbols() -> None:
    sim = make({"MNQ": "21000"})
    sim.open()
    sim.order("MNQ", BUY, "1")
    assert sim.fills()[0].symbol == "MNQ"
    with pytest.raises(Refused):
        sim.order("MNQZ6", BUY, "1")


def test_duplicate_client_id_is_rejected() -> None:
    sim = make({"MNQ": "21000"})
    sim.open()
    first = sim.order("MNQ", BUY, "1", kind=LIMIT, price="20990", client_id="copy-1")
    with pytest.raises(OrderRejected) as info:
        sim.order("MNQ", BUY, "1", client_id="copy-1")
    assert info.value.reason is RejectReason.REJECTED
    assert sim.fills() == []
    assert len(sim.working()) == 1
    known = sim.broker.order_by_client_id("copy-1")
    assert known is not None
    assert known.id == first
    sim.broker.cancel_order(first)
    with pytest.raises(OrderRejected):  # still a duplicate once the first is gone
        sim.order("MNQ", BUY, "1", client_id="copy-1")


def test_fill_reports_client_id_and_positions_before_and_after() -> None:
    sim = make({"MNQ": "21000"})
    sim.open()
    sim.order("MNQ", BUY, "2")
    sim.order("MNQ", SELL, "5", client_id="rev")
    fill = sim.fills()[-1]
    assert fill.client_id == "rev"
    assert (fill.position_before, fill.position_after) == (D("2"), D("-3"))
    assert fill.leverage is None
    assert fill.margin_mode is None


def test_unknown_account_is_refused() -> None:
    sim = make({"MNQ": "21000"})
    with pytest.raises(Refused):
        sim.order("MNQ", BUY, "1", account="ghost")
