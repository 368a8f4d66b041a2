"""The simulated broker's matching alone: the order registry and the matching rules.

No venue, no money, no events: an `OrderBook` over a price book, driven directly.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from synctui.brokers.matching import OrderBook, SimOrder
from synctui.brokers.naming import NamingScheme, SymbolMap
from synctui.domain.errors import Refused, RejectReason
from synctui.domain.instruments import Catalog
from synctui.domain.orders import InvalidTransition, OrderStatus, OrderType, Side
from synctui.domain.prices import PriceBook

D = Decimal
BUY, SELL = Side.BUY, Side.SELL
LIMIT, STOP, MARKET = OrderType.LIMIT, OrderType.STOP, OrderType.MARKET


def make(slip: str = "0", naming: NamingScheme = NamingScheme.PLAIN) -> OrderBook:
    catalog = Catalog()
    prices = PriceBook(catalog)
    prices.set("MNQ", D("21000"))
    prices.set("BTCUSDT", D("50000"))
    book = OrderBook("sim", catalog, prices, SymbolMap(naming, catalog), D(slip))
    book.open("a")
    book.open("b")
    return book


def order(book: OrderBook, symbol: str, side: Side, kind: OrderType, price: str | None,
          account: str = "a", client_id: str | None = None) -> SimOrder:
    return SimOrder(id=book.new_id(), account=account, symbol=symbol, side=side, type=kind,
                    qty=D("1"), price=None if price is None else D(price),
                    client_id=client_id)


def rest(book: OrderBook, placed: SimOrder) -> SimOrder:
    book.remember(placed)
    book.rest(placed)
    return placed


@pytest.mark.parametrize(("side", "kind", "level", "marketable_at", "not_at"), [
    (BUY, LIMIT, "100", ["100", "99"], ["101"]),
    (SELL, LIMIT, "100", ["100", "101"], ["99"]),
    (BUY, STOP, "100", ["100", "101"], ["99"]),
    (SELL, STOP, "100", ["100", "99"], ["101"]),
])
def test_marketable_limits_and_stops_on_both_sides(side: Side, kind: OrderType, level: str,
                                                   marketable_at: list[str],
                                                   not_at: list[str]) -> None:
    placed = SimOrder("x", "a", "MNQ", side, kind, D("1"), D(level))
    assert all(OrderBook.marketable(placed, D(p)) for p in marketable_at)
    assert not any(OrderBook.marketable(placed, D(p)) for p in not_at)


def test_fill_prices_slip_adversely_and_limits_fill_at_their_own_price_resting() -> None:
    book = make(slip="2")  # MNQ tick 0.25
    buy_stop = SimOrder("1", "a", "MNQ", BUY, STOP, D("1"), D("21000"))
    sell_market = SimOrder("2", "a", "MNQ", SELL, MARKET, D("1"), None)
    sell_limit = SimOrder("3", "a", "MNQ", SELL, LIMIT, D("1"), D("20990"))
    mnq = book.catalog.get("MNQ")
    assert book.fill_price(buy_stop, mnq, D("21002"), resting=True) == D("21002.5")
    assert book.fill_price(sell_market, mnq, D("21000")) == D("20999.5")
    assert book.fill_price(sell_market, mnq, D("0.25")) == D("0.25")  # never below a tick
    assert book.fill_price(sell_limit, mnq, D("21000")) == D("21000")  # placed marketable
    assert book.fill_price(sell_limit, mnq, D("21000"), resting=True) == D("20990")


def test_a_price_update_triggers_the_family_s_orders_in_placement_order() -> None:
    book = make()
    first = rest(book, order(book, "MNQ", SELL, LIMIT, "21000"))
    rest(book, order(book, "BTCUSDT", BUY, LIMIT, "60000"))  # another family
    rest(book, order(book, "MNQ", BUY, LIMIT, "20990"))  # not reached
    second = rest(book, order(book, "NQ", BUY, STOP, "20995", account="b"))  # same family
    third = rest(book, order(book, "MNQ", SELL, LIMIT, "20999"))
    assert [o.id for o in book.triggered("NQ")] == [first.id, second.id, third.id]
    # an order taken off while an earlier one is being filled is not triggered
    triggered = book.triggered("NQ")
    assert next(triggered) is first
    book.take_off(second)
    assert list(triggered) == [third]


def test_statuses_move_only_through_the_lifecycle_table() -> None:
    book = make()
    placed = rest(book, order(book, "MNQ", BUY, LIMIT, "20000", client_id="c1"))
    assert book.status[placed.id] is OrderStatus.WORKING
    book.take_off(placed)
    book.set_status(placed.id, OrderStatus.FILLED)
    with pytest.raises(InvalidTransition):
        book.set_status(placed.id, OrderStatus.WORKING)
    with pytest.raises(InvalidTransition):
        book.set_status(placed.id, OrderStatus.CANCELLED)
    assert book.status[placed.id] is OrderStatus.FILLED
    with pytest.raises(InvalidTransition):  # a new order starts working or rejected
        book.set_status("never-seen", OrderStatus.FILLED)


def test_the_registry_remembers_client_ids_rejects_and_working_orders() -> None:
    book = make(naming=NamingScheme.TRADOVATE)
    placed = rest(book, order(book, "MNQ", BUY, LIMIT, "20000", client_id="c1"))
    refused = order(book, "MNQ", SELL, LIMIT, "22000", client_id="c2")
    book.remember(refused)
    book.reject(refused.id, RejectReason.REJECTED, "no")
    assert [placed.id, refused.id] == ["sim-1", "sim-2"]
    assert book.next_id == 3
    assert list(book.of("a")) == [placed.id]
    assert book.get(refused.id) is None
    found = book.by_client_id("c1")
    assert found is not None and found.id == placed.id
    assert found.symbol != "MNQ"  # reported in the broker's own naming
    assert book.rejects[refused.id] == (RejectReason.REJECTED, "no")
    assert book.status[refused.id] is OrderStatus.REJECTED
    book.take_off(placed)
    assert book.of("a") == {} and book.working == {}
    with pytest.raises(Refused):
        book.working_order(placed.id)


def filled(book: OrderBook, count: int) -> list[SimOrder]:
    """`count` market orders accepted and filled, client ids c0, c1, ..."""
    done = []
    for n in range(count):
        placed = order(book, "MNQ", BUY, MARKET, None, client_id=f"c{n}")
        book.remember(placed)
        book.set_status(placed.id, OrderStatus.FILLED)
        done.append(placed)
    return done


def test_old_done_orders_are_forgotten_and_working_ones_never(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Memory stays flat: past KEEP_DONE done orders the oldest leave the book's registry
    (the database keeps them); a working order stays whatever its age."""
    import synctui.brokers.matching as matching

    monkeypatch.setattr(matching, "KEEP_DONE", 3)
    book = make()
    resting = rest(book, order(book, "MNQ", BUY, LIMIT, "20000", client_id="c-rest"))
    done = filled(book, 5)
    assert [book.known(o.id) for o in done] == [False, False, True, True, True]
    assert book.by_client_id("c3") == book.info(done[3])  # kept whole, as a record
    assert book.by_client_id("c0") is None and book.by_client_id("c4") is not None
    assert book.status.get(done[0].id) is None
    assert book.by_client_id("c-rest") is not None and resting.id in book.working


def test_done_orders_are_kept_as_records_the_collector_does_not_walk() -> None:
    """Issue 11: a garbage collection walked the thousands of done orders each broker
    keeps (50-80 ms inside a fan-out). Done orders are kept as text, which the
    collector never tracks, and read back whole; a working order stays an order."""
    import gc

    from synctui.brokers.matching import SimOrder

    book = make()
    resting = rest(book, order(book, "MNQ", BUY, LIMIT, "20000", client_id="c-rest"))
    placed = [o.id for o in filled(book, 300)]  # no order object is kept here
    # never tracked, not even before a collection: a tuple would wait in the young
    # generation until one looked at it, and a fan-out frees about as much as it makes
    assert not any(gc.is_tracked(book.done[i]) for i in placed)
    gc.collect()
    alive = {o.id for o in gc.get_objects() if isinstance(o, SimOrder) and o.account == "a"}
    assert not alive & set(placed) and resting.id in book.working
    assert book.by_client_id("c7") is not None and book.by_client_id("c7").id == placed[7]


def test_a_done_order_reads_back_as_it_was() -> None:
    """Every field of a done order survives its text record, None and "" apart."""
    from synctui.brokers.matching import _order, _record

    book = make()
    full = SimOrder(book.new_id(), "a", "MNQ", Side.SELL, OrderType.STOP, D("2.5"),
                    D("20000.25"), True, D("19000"), D("21000.5"), "c-9", "X-0",
                    "stop_loss", "X-7")
    bare = order(book, "MNQ", BUY, MARKET, None)
    odd = order(book, "MNQ", BUY, MARKET, None, account="a\x1fb\x02", client_id="\x02c")
    for done in (full, bare, odd):
        assert _order(_record(done)) == done
