"""A world: the instrument catalog, prices, brokers and the engine driving them.

Scenarios, the TUI and the tests all build one of these and talk to
`world.engine`; a store loads and saves one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from synctui.brokers.base import Broker
from synctui.domain.clock import Clock
from synctui.domain.instruments import Catalog
from synctui.domain.prices import PriceBook
from synctui.engine.engine import Engine


class OpenFailed(Exception):
    """A world could not be opened (a config, a broker that cannot be reached); the
    message says why in one line, for the trader."""


@dataclass
class World:
    catalog: Catalog
    prices: PriceBook
    brokers: dict[str, Broker]
    engine: Engine
    clock: Clock
    custom: list[str] = field(default_factory=list)  # symbols added by the scenario

    def restart(self) -> None:
        """Rebuild the engine from a copy of its state; the brokers keep theirs."""
        saved = self.engine.state.snapshot()
        self.engine.close()
        self.engine = Engine(self.brokers, self.prices, self.catalog, self.clock, state=saved)
