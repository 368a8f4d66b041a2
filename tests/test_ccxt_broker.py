"""The ccxt broker against the loopback exchange (issue 13, items 1 and 4): real ccxt,
a real server on 127.0.0.1, the engine copying between them and a simulated broker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import pytest

from synctui.brokers.ccxt_broker import CcxtBroker, ExchangeAccount
from synctui.brokers.ccxt_client import make_client
from synctui.brokers.sim import BrokerSettings, SimBroker
from synctui.domain.clock import SystemClock
from synctui.domain.instruments import Catalog, Market
from synctui.domain.prices import PriceBook
from synctui.engine.engine import Engine
from synctui.exchange.server import LoopbackExchange
from synctui.exchange.venue import ApiAccount, Venue

pytestmark = pytest.mark.usefixtures("loopback_only")

BTC = "BTC/USDT:USDT"
KEYS = {"LEAD": ("k-lead", "s-lead"), "F1": ("k-f1", "s-f1"), "F2": ("k-f2", "s-f2")}


@pytest.fixture
async def exchange() -> AsyncIterator[LoopbackExchange]:
    venue = Venue([ApiAccount(a, k, s, Decimal(50000)) for a, (k, s) in KEYS.items()])
    server = LoopbackExchange(venue)
    await server.start()
    yield server
    await server.stop()


async def desk(exchange: LoopbackExchange) -> tuple[Engine, CcxtBroker, SimBroker]:
    """LEAD and F1 at the loopback exchange, SIM-1 at a simulated perps broker; group G
    copies LEAD to F1 at x2 and to SIM-1 at x1."""
    catalog = Catalog()
    prices = PriceBook(catalog)
    prices.set("BTCUSDT", Decimal(65000))
    clock = SystemClock()
    live = CcxtBroker("loopback", catalog, prices, "binanceusdm",
                      [ExchangeAccount(a, *KEYS[a]) for a in ("LEAD", "F1")],
                      base_url=exchange.url, clock=clock)
    await live.start()
    sim = SimBroker("sim", catalog, prices, BrokerSettings(markets=frozenset({Market.PERPS})),
                    clock)
    engine = Engine({"loopback": live, "sim": sim}, prices, catalog, clock)
    engine.add_account("LEAD", "loopback", Decimal(0))
    engine.add_account("F1", "loopback", Decimal(0))
    engine.add_account("SIM-1", "sim", Decimal(50000))
    engine.create_group("G", "LEAD", ["F1", "SIM-1"])
    engine.set_ratio("G", "F1", "BTCUSDT", 2)
    return engine, live, sim


async def until(engine: Engine, live: CcxtBroker, done: Callable[[], bool],
                seconds: float = 10) -> None:
    """Let the exchange answer and report, and the engine handle it, until `done`."""
    for _ in range(int(seconds / 0.05)):
        engine.poll()
        if done():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the exchange did not get there in time")


def linked(engine: Engine, live: CcxtBroker) -> list[bool]:
    """The link as the desk wires it (SPEC 9); each change is also kept, in order."""
    links: list[bool] = []

    def told(up: bool) -> None:
        links.append(up)
        (engine.reconnect if up else engine.disconnect)(live.name)

    live.on_link = told
    return links


async def leader_trades(exchange: LoopbackExchange, side: str, qty: float,
                        client_id: str) -> None:
    """The leader trades at the exchange itself, as a trader does."""
    trader = make_client("binanceusdm", *KEYS["LEAD"], base_url=exchange.url)
    try:
        await trader.create_order(BTC, "market", side, qty, None, {"clientOrderId": client_id})
    finally:
        await trader.close()


def at_exchange(exchange: LoopbackExchange, account: str) -> Decimal:
    return exchange.venue.broker.position(account, "BTCUSDT")


def orders_at_exchange(exchange: LoopbackExchange, account: str) -> list[Any]:
    return [o for o in exchange.venue.orders.values() if o.account == account]


async def test_a_leader_s_fill_at_the_exchange_is_copied_there_and_to_a_simulated_broker(
        exchange: LoopbackExchange) -> None:
    engine, live, sim = await desk(exchange)
    try:
        await leader_trades(exchange, "buy", 0.01, "lead-1")
        await until(engine, live, lambda: live.position("F1", BTC) != 0
                    and sim.position("SIM-1", "BTCUSDT") != 0)
        assert at_exchange(exchange, "F1") == Decimal("0.02")
        assert sim.position("SIM-1", "BTCUSDT") == Decimal("0.01")
        # the broker's mirror agrees with the exchange, exactly
        assert live.position("F1", BTC) == Decimal("0.02")
        assert live.position("LEAD", BTC) == Decimal("0.01")
        await leader_trades(exchange, "sell", 0.01, "lead-2")
        await until(engine, live, lambda: live.position("F1", BTC) == 0
                    and sim.position("SIM-1", "BTCUSDT") == 0)
        # each leader fill copied exactly once to each follower
        assert len(orders_at_exchange(exchange, "F1")) == 2
        assert all(o.client_id for o in orders_at_exchange(exchange, "F1"))
        assert engine.out_of_sync("G") == []
    finally:
        await live.close()


async def test_a_copy_whose_answer_is_lost_is_found_by_client_id_not_sent_twice(
        exchange: LoopbackExchange) -> None:
    engine, live, _sim = await desk(exchange)
    try:
        exchange.drop_answers = 1  # F1's copy reaches the exchange; its answer is lost
        await leader_trades_unthrottled(exchange)
        await until(engine, live, lambda: at_exchange(exchange, "F1") != 0
                    and not engine.state.intents and not engine.state.inflight)
        assert at_exchange(exchange, "F1") == Decimal("0.02")
        assert len(orders_at_exchange(exchange, "F1")) == 1
        assert exchange.dropped == 1
    finally:
        await live.close()


async def test_a_rate_limited_copy_is_sent_again_and_lands_once(
        exchange: LoopbackExchange) -> None:
    engine, live, _sim = await desk(exchange)
    try:
        await asyncio.sleep(0.2)
        exchange.throttle = 2  # the copy and the first look-up are answered 429
        await leader_trades_unthrottled(exchange)
        await until(engine, live, lambda: at_exchange(exchange, "F1") != 0
                    and not engine.state.intents and not engine.state.inflight)
        assert at_exchange(exchange, "F1") == Decimal("0.02")
        assert len(orders_at_exchange(exchange, "F1")) == 1
    finally:
        await live.close()


async def leader_trades_unthrottled(exchange: LoopbackExchange) -> None:
    """The leader's own order is placed at the venue directly (the throttle is for
    the copier's requests)."""
    exchange.venue.place("LEAD", {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET",
                                  "quantity": "0.01", "newClientOrderId": "lead-1"})


async def test_a_refused_copy_is_a_failure_with_the_exchange_s_reason(
        exchange: LoopbackExchange) -> None:
    engine, live, sim = await desk(exchange)
    failures: list[Any] = []
    engine.subscribe(lambda e: failures.append(e) if type(e).__name__ == "CopyFailed"
                     else None)
    try:
        engine.set_ratio("G", "F1", "BTCUSDT", 10)
        exchange.venue.broker.set_leverage("F1", "BTCUSDT", 1)  # at the exchange, by hand
        await leader_trades(exchange, "buy", 0.1, "lead-big")  # F1 needs 65,000 of margin
        await until(engine, live, lambda: bool(failures) and sim.position(
            "SIM-1", "BTCUSDT") != 0)
        assert at_exchange(exchange, "F1") == 0
        [failure] = [f.failure for f in failures]
        assert failure.account == "F1" and failure.reason == "insufficient_margin"
        assert "Margin is insufficient" in failure.message or "margin" in failure.message
    finally:
        await live.close()


async def test_the_exchange_down_mid_burst_and_back_copies_each_fill_exactly_once(
        exchange: LoopbackExchange) -> None:
    """The server dies while a copy is on its way; the leader trades twice more while it
    is down; it comes back on the same port. Every leader fill is copied once to each
    follower, F1's mirror agrees with the exchange, and nothing is out of sync."""
    engine, live, sim = await desk(exchange)
    links = linked(engine, live)
    venue = exchange.venue
    try:
        await asyncio.sleep(0.3)  # the streams are open
        venue.place("LEAD", {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET",
                             "quantity": "0.01", "newClientOrderId": "burst-1"})
        for _ in range(500):  # until the copy is handed to the exchange, not answered
            engine.poll()
            if engine.state.inflight:
                break
            await asyncio.sleep(0.01)
        assert engine.state.inflight
        await exchange.stop()  # F1's copy is in flight: it may or may not have landed
        for n in (2, 3):  # the leader goes on trading at the exchange meanwhile
            venue.place("LEAD", {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET",
                                 "quantity": "0.01", "newClientOrderId": f"burst-{n}"})
        await until(engine, live, lambda: links == [False], seconds=10)
        assert not live.connected
        await asyncio.sleep(0.5)
        await exchange.start()  # back, same port, same books
        await until(engine, live, lambda: links == [False, True]
                    and live.position("F1", BTC) == Decimal("0.06")
                    and sim.position("SIM-1", "BTCUSDT") == Decimal("0.03")
                    and not engine.state.inflight and not engine.state.intents,
                    seconds=30)
        assert at_exchange(exchange, "LEAD") == Decimal("0.03")
        assert at_exchange(exchange, "F1") == Decimal("0.06")  # 2 x, each fill once
        assert len(orders_at_exchange(exchange, "F1")) == 3
        assert engine.out_of_sync("G") == []
        assert live.positions("F1") == {BTC: Decimal("0.06")}
    finally:
        await live.close()


async def test_the_exchange_demo_copies_the_leader_through_ccxt_and_quits_clean() -> None:
    """`synctui --exchange-demo`, driven by Pilot: the leader trades at the loopback
    exchange, the copies go through ccxt, and every follower holds ratio x the leader."""
    from synctui.exchange.demo import ExchangeDemo
    from synctui.tui.app import make_app

    demo = ExchangeDemo(7)
    app = make_app(live=demo, tick_seconds=0.05)
    async with app.run_test(size=(160, 40)) as pilot:
        venue = None
        for _ in range(200):
            await asyncio.sleep(0.05)
            await pilot.pause()
            if demo.exchange is None:
                continue
            venue = demo.exchange.venue
            if len([o for o in venue.orders.values() if o.account == "LEAD-BTC"]) >= 3:
                break
        assert venue is not None and demo.broker is not None
        demo.trading = False  # the leader stops; the last copies land
        engine = app.desk.engine
        for _ in range(100):
            await asyncio.sleep(0.05)
            # read again each time: a leader order already on its way when trading
            # stopped still fills after it
            lead = venue.broker.position("LEAD-BTC", "BTCUSDT")
            if not engine.state.inflight and not engine.state.intents and \
                    venue.broker.position("FOLLOW-1", "BTCUSDT") == lead and \
                    venue.broker.position("FOLLOW-2", "BTCUSDT") == 2 * lead:
                break
        await pilot.pause()
        copies = [o for o in venue.orders.values() if o.account.startswith("FOLLOW")]
        assert copies and all(len(o.client_id) <= 36 for o in copies)
        assert venue.broker.position("FOLLOW-1", "BTCUSDT") == lead
        assert venue.broker.position("FOLLOW-2", "BTCUSDT") == 2 * lead
        assert engine.brokers["bybit-sim"].position("BYBIT-1", "BTCUSDT") == lead
        assert engine.state.failures == []
        assert demo.broker.requests > len(copies)
        await pilot.press("q")
    assert demo.broker._tasks == set()
    assert demo.exchange is not None and demo.exchange._runner is None


async def test_a_leader_s_resting_order_is_mirrored_and_its_cancel_while_down_too(
        exchange: LoopbackExchange) -> None:
    """A limit the leader rests at the exchange is mirrored to both followers. The
    exchange goes away, the leader cancels it there meanwhile; when it is back, the
    broker finds the order gone (no trade filled it) and the mirrors are cancelled."""
    engine, live, sim = await desk(exchange)
    links = linked(engine, live)
    venue = exchange.venue
    try:
        await asyncio.sleep(0.3)  # the streams are open
        resting = venue.place("LEAD", {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT",
                                       "quantity": "0.01", "price": "60000",
                                       "newClientOrderId": "rest-1"})

        def f1_working() -> list[Any]:
            return venue.open_orders("F1", "BTCUSDT")

        await until(engine, live, lambda: bool(f1_working())
                    and bool(sim.working_orders("SIM-1")), seconds=10)
        [mirror] = f1_working()
        assert mirror.qty == Decimal("0.02") and mirror.price == Decimal(60000)
        await exchange.stop()
        venue.cancel("LEAD", {"orderId": str(resting.order_id)})
        await until(engine, live, lambda: links == [False], seconds=10)
        await exchange.start()
        await until(engine, live, lambda: links == [False, True] and not f1_working()
                    and not sim.working_orders("SIM-1"), seconds=30)
        assert venue.orders[mirror.order_id].status == "CANCELED"
        assert live.working_orders("LEAD") == []
    finally:
        await live.close()


async def test_a_live_broker_s_news_is_polled_at_once_without_a_tick() -> None:
    """No timer at all: the copies land because the broker wakes the desk."""
    from synctui.exchange.demo import ExchangeDemo
    from synctui.tui.app import make_app

    demo = ExchangeDemo(7)
    app = make_app(live=demo, tick_seconds=None)
    async with app.run_test(size=(160, 40)) as pilot:
        await pilot.pause()
        assert demo.exchange is not None
        venue = demo.exchange.venue
        await asyncio.sleep(0.3)  # the streams are open
        venue.place("LEAD-BTC", {"symbol": "BTCUSDT", "side": "SELL", "type": "MARKET",
                                 "quantity": "0.01", "newClientOrderId": "by-hand"})
        for _ in range(200):
            await asyncio.sleep(0.05)
            if venue.broker.position("FOLLOW-2", "BTCUSDT") == Decimal("-0.02") and \
                    venue.broker.position("FOLLOW-1", "BTCUSDT") == Decimal("-0.01"):
                break
        assert venue.broker.position("FOLLOW-1", "BTCUSDT") == Decimal("-0.01")
        assert venue.broker.position("FOLLOW-2", "BTCUSDT") == Decimal("-0.02")
        await pilot.press("q")


async def test_a_trade_the_stream_never_told_is_copied_and_history_is_not(
        exchange: LoopbackExchange) -> None:
    """The leader traded before synctui started (history: in the positions read at
    start, never copied, never counted twice). Then the exchange's websocket is down
    (REST still answers) and the leader trades again: the broker finds that trade by
    REST and it is copied, once."""
    venue = exchange.venue
    venue.place("LEAD", {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET",
                         "quantity": "0.05", "newClientOrderId": "before-start"})
    exchange.refuse_streams = True
    engine, live, sim = await desk(exchange)
    try:
        assert live.position("LEAD", BTC) == Decimal("0.05")
        venue.place("LEAD", {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET",
                             "quantity": "0.01", "newClientOrderId": "unheard"})
        await until(engine, live, lambda: at_exchange(exchange, "F1") == Decimal("0.02")
                    and sim.position("SIM-1", "BTCUSDT") == Decimal("0.01"), seconds=15)
        assert live.position("LEAD", BTC) == Decimal("0.06")  # each trade once
        assert len(orders_at_exchange(exchange, "F1")) == 1
        assert sim.position("SIM-1", "BTCUSDT") == Decimal("0.01")  # history not copied
    finally:
        exchange.refuse_streams = False
        await live.close()


async def test_a_close_waits_for_the_fills_of_copies_still_on_their_way(
        exchange: LoopbackExchange, monkeypatch: pytest.MonkeyPatch) -> None:
    """A leader's close is sized on the follower's position. At an exchange a copy's
    fill comes after its answer, on a stream of its own, so a leader trade can come
    first: sized then, the close would see the follower still flat and send nothing
    (the exchange demo under load left a follower off by one copy). The close waits
    until the follower's copies on their way have reported their fills."""
    engine, live, sim = await desk(exchange)
    held: list[tuple[str, dict[str, Any]]] = []
    report = live._on_trade

    def late(account: str, trade: dict[str, Any]) -> None:
        if account == "F1" and holding:
            held.append((account, trade))
            return
        report(account, trade)

    holding = True
    monkeypatch.setattr(live, "_on_trade", late)
    try:
        await leader_trades(exchange, "sell", 0.02, "lead-1")
        await until(engine, live, lambda: len(orders_at_exchange(exchange, "F1")) == 1
                    and not engine.state.inflight and held != [])
        assert at_exchange(exchange, "F1") == Decimal("-0.04")
        assert live.position("F1", BTC) == 0  # its fill is not reported yet
        await leader_trades(exchange, "buy", 0.01, "lead-2")  # half the leader's position
        await until(engine, live, lambda: sim.position("SIM-1", "BTCUSDT") == Decimal("-0.01"))
        assert len(orders_at_exchange(exchange, "F1")) == 1  # F1's close waits
        holding = False
        for account, trade in held:  # the stream catches up
            report(account, trade)
        await until(engine, live, lambda: at_exchange(exchange, "F1") == Decimal("-0.02")
                    and not engine.state.inflight and not engine.state.waiting)
        await until(engine, live, lambda: live.position("F1", BTC) == Decimal("-0.02"))
        assert engine.out_of_sync("G") == []
    finally:
        await live.close()
