"""A desk on the exchanges of a config file (`synctui --config PATH`): each exchange a
`CcxtBroker`, its accounts, and the groups the file names (issue 13).

Kept in memory: the exchanges hold the accounts, positions and orders, and are
read again at every start; the groups come from the file. Group edits made in the
app last until quit (say so in the README); the file is the desk's record.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import ccxt

from synctui.brokers.base import Broker
from synctui.brokers.ccxt_broker import CcxtBroker, ExchangeAccount
from synctui.domain.clock import SystemClock
from synctui.domain.errors import Refused
from synctui.domain.instruments import Catalog
from synctui.domain.prices import PriceBook
from synctui.engine.engine import Engine
from synctui.engine.world import OpenFailed, World
from synctui.exchange.config import DeskConfig, resolve
from synctui.scenario.model import one_line


class ConfigDesk:
    """A live desk (`synctui.tui.desk.LiveDesk`) built from a `DeskConfig`."""

    def __init__(self, config: DeskConfig) -> None:
        self.config = config
        self.brokers: dict[str, CcxtBroker] = {}
        self.world: World | None = None
        self._wake: Callable[[], None] | None = None

    async def open(self, wake: Callable[[], None] | None = None) -> World:
        self._wake = wake
        catalog = Catalog()
        prices = PriceBook(catalog)
        clock = SystemClock()
        try:
            for exchange in self.config.exchanges:
                accounts = [ExchangeAccount(a.id, resolve(a.api_key), resolve(a.secret))
                            for a in exchange.accounts]
                try:
                    broker = CcxtBroker(exchange.name, catalog, prices, exchange.exchange,
                                        accounts, base_url=exchange.base_url,
                                        sandbox=exchange.testnet, clock=clock)
                except ValueError as error:  # an exchange ccxt does not know
                    raise OpenFailed(f"{exchange.name}: {error}") from None
                except ccxt.NotSupported as error:  # no testnet
                    raise OpenFailed(f"{exchange.name}: {one_line(str(error))}") from None
                self.brokers[exchange.name] = broker
                try:
                    await broker.start()
                except ccxt.BaseError as error:
                    raise OpenFailed(f"{exchange.name}: cannot open the exchange "
                                     f"({type(error).__name__}: {one_line(str(error))})"
                                     ) from None
            world = self._world(catalog, prices, clock)
        except BaseException:
            await self.close()
            raise
        self.world = world
        return world

    def _world(self, catalog: Catalog, prices: PriceBook, clock: SystemClock) -> World:
        brokers: dict[str, Broker] = dict(self.brokers)
        engine = Engine(brokers, prices, catalog, clock)
        for exchange in self.config.exchanges:
            for account in exchange.accounts:
                engine.add_account(account.id, exchange.name, Decimal(0))
        for broker in self.brokers.values():
            for symbol, price in broker.take_prices().items():
                engine.set_price(symbol, price)
        for group in self.config.groups:
            try:
                engine.create_group(group.name, group.leader, group.followers)
                leader = self.brokers[engine.state.accounts[group.leader]]
                for follower, ratio in group.ratios.items():
                    for symbol in leader.listed():
                        engine.set_ratio(group.name, follower, symbol, ratio)
            except Refused as refused:
                raise OpenFailed(f"group {group.name!r}: {refused.message}") from None
        for name, broker in self.brokers.items():
            broker.on_news = self._wake
            broker.on_link = (lambda up, name=name:
                              (engine.reconnect if up else engine.disconnect)(name))
        return World(catalog, prices, brokers, engine, clock)

    def tick(self) -> list[str]:
        """The exchanges' answers, reports and prices reach the engine."""
        assert self.world is not None
        engine = self.world.engine
        engine.poll()
        lines = []
        for broker in self.brokers.values():
            for symbol, price in broker.take_prices().items():
                try:
                    engine.set_price(symbol, price)
                except Refused as refused:
                    lines.append(f"{broker.name}: {symbol} {refused.message}")
        return lines

    async def close(self) -> None:
        for broker in self.brokers.values():
            await broker.close()
