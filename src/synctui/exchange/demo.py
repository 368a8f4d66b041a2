"""`synctui --exchange-demo`: the BTC perps group through the real ccxt path.

The loopback exchange runs in-process on a free port of 127.0.0.1. A ccxt broker
(`CcxtBroker`, ccxt unmodified, its URLs pointed there) holds the leader and two
followers; a third follower sits at a simulated perps broker. The leader trades
at the exchange itself, as a trader does on the exchange's own screen: the copier
learns of it from the exchange's private stream, as it would at a real exchange,
and copies through REST with its client order ids. The market is a seeded walk,
shown to the exchange and to the simulated broker alike.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from decimal import Decimal

from synctui.brokers.base import Broker
from synctui.brokers.ccxt_broker import CcxtBroker, ExchangeAccount
from synctui.brokers.sim import BrokerSettings, SimBroker
from synctui.domain.clock import SystemClock
from synctui.domain.errors import Refused
from synctui.domain.instruments import Catalog, Market
from synctui.domain.prices import PriceBook
from synctui.engine.engine import Engine
from synctui.engine.world import World
from synctui.exchange.server import LoopbackExchange
from synctui.exchange.venue import ApiAccount, ApiError, Venue
from synctui.market.simulator import MarketSimulator

EXCHANGE = "binance-loopback"
SIM = "bybit-sim"
GROUP = "BTC perps"
SYMBOL = "BTCUSDT"
# Keys of the demo's own accounts at its own loopback exchange: they open nothing
# anywhere else. A real exchange's keys never appear in code (see the README).
ACCOUNTS = (("LEAD-BTC", 50_000), ("FOLLOW-1", 20_000), ("FOLLOW-2", 20_000))
DECIDE_EVERY = 8  # ticks between the leader's decisions
STEPS = (Decimal("0.010"), Decimal("0.020"), Decimal("0.005"))


class ExchangeDemo:
    """A live desk (`synctui.tui.desk.LiveDesk`): opened on the app's loop, ticked by
    its timer, closed at quit."""

    def __init__(self, seed: int = 7) -> None:
        self.seed = seed
        self.ticks = 0
        self._rng = random.Random(seed)  # noqa: S311 - a simulation, not a secret
        self.exchange: LoopbackExchange | None = None
        self.broker: CcxtBroker | None = None
        self.world: World | None = None
        self.market: MarketSimulator | None = None
        self._orders = 0  # the leader's orders so far: their client ids
        self.trading = True  # the leader decides (a test stops it to see the copies land)

    async def open(self, wake: Callable[[], None] | None = None) -> World:
        keys = {name: (f"demo-key-{name.lower()}", f"demo-secret-{name.lower()}")
                for name, _ in ACCOUNTS}
        venue = Venue([ApiAccount(name, *keys[name], Decimal(balance))
                       for name, balance in ACCOUNTS])
        self.exchange = LoopbackExchange(venue)
        await self.exchange.start()
        catalog = Catalog()
        prices = PriceBook(catalog)
        start = venue.prices.get(SYMBOL)
        prices.set(SYMBOL, start)
        clock = SystemClock()
        self.broker = CcxtBroker(EXCHANGE, catalog, prices, "binanceusdm",
                                 [ExchangeAccount(name, *keys[name]) for name, _ in ACCOUNTS],
                                 base_url=self.exchange.url, clock=clock)
        try:
            await self.broker.start()
        except BaseException:
            await self.exchange.stop()
            raise
        sim = SimBroker(SIM, catalog, prices,
                        BrokerSettings(markets=frozenset({Market.PERPS})), clock)
        brokers: dict[str, Broker] = {EXCHANGE: self.broker, SIM: sim}
        engine = Engine(brokers, prices, catalog, clock)
        for name, _ in ACCOUNTS:
            engine.add_account(name, EXCHANGE, Decimal(0))
        engine.add_account("BYBIT-1", SIM, Decimal(20_000))
        engine.create_group(GROUP, "LEAD-BTC", ["FOLLOW-1", "FOLLOW-2", "BYBIT-1"])
        engine.set_ratio(GROUP, "FOLLOW-2", SYMBOL, 2)
        broker = self.broker

        def linked(up: bool) -> None:
            (engine.reconnect if up else engine.disconnect)(broker.name)

        broker.on_link = linked
        broker.on_news = wake
        self.market = MarketSimulator(catalog, {SYMBOL: start}, self.seed)
        self.world = World(catalog, prices, brokers, engine, clock)
        return self.world

    def tick(self) -> list[str]:
        """The market moves (at the exchange and the simulated broker alike); every few
        ticks the leader decides, at the exchange; the brokers' answers and reports
        reach the engine."""
        assert self.world is not None and self.exchange is not None
        assert self.market is not None
        self.ticks += 1
        lines: list[str] = []
        engine = self.world.engine
        engine.poll()
        venue = self.exchange.venue
        for symbol, price in self.market.step():
            venue.set_price(symbol, price)
            try:
                engine.set_price(symbol, price)
            except Refused as refused:
                lines.append(f"market: {symbol} refused: {refused.message}")
        if self.trading and self.ticks % DECIDE_EVERY == 1:
            lines.extend(self._leader(venue))
        return lines

    def _leader(self, venue: Venue) -> list[str]:
        """Open, add, cut or close at random; never more than 0.05 BTC."""
        held = venue.broker.position("LEAD-BTC", SYMBOL)
        qty = self._rng.choice(STEPS)
        if held == 0 or (abs(held) < Decimal("0.05") and self._rng.random() < 0.5):
            side = "BUY" if (held > 0 or (held == 0 and self._rng.random() < 0.5)) else "SELL"
        else:
            side = "SELL" if held > 0 else "BUY"
            qty = min(qty, abs(held))
        self._orders += 1
        try:
            venue.place("LEAD-BTC", {"symbol": SYMBOL, "side": side, "type": "MARKET",
                                     "quantity": str(qty),
                                     "newClientOrderId": f"lead-{self.seed}-{self._orders}"})
        except ApiError as error:
            return [f"leader: {side.lower()} {qty} refused at the exchange: {error.msg}"]
        return [f"leader: {side.lower()} {qty} {SYMBOL} at the exchange"]

    async def close(self) -> None:
        if self.broker is not None:
            await self.broker.close()
        if self.exchange is not None:
            await self.exchange.stop()
