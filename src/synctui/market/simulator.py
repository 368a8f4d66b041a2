"""A seeded random walk per family, on the tick grid.

Determinism matters more than realism here: the demo, the benchmarks and the
snapshot tests all need the same prices for the same seed. Moves are whole
ticks (integers), so prices never leave the grid and never pass through a
binary float.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from synctui.domain.instruments import Catalog, Instrument

# Typical move per update, as a fraction of price (about 2 basis points).
DEFAULT_VOLATILITY = Decimal("0.0002")


@dataclass(slots=True)
class _Walk:
    instrument: Instrument  # the family member whose tick the walk uses
    price: Decimal
    scale: int  # ticks per unit of randomness


class MarketSimulator:
    """`step()` moves every family once and returns the (symbol, price) updates."""

    def __init__(self, catalog: Catalog, prices: dict[str, Decimal], seed: int,
                 volatility: Decimal = DEFAULT_VOLATILITY) -> None:
        self._rng = random.Random(seed)
        self._walks: dict[str, _Walk] = {}
        for symbol, price in sorted(prices.items()):
            instrument = catalog.get(symbol)
            coarsest = max(catalog.family(instrument.family), key=lambda i: i.tick)
            ticks = (price * volatility / coarsest.tick).to_integral_value(ROUND_HALF_UP)
            self._walks[instrument.family] = _Walk(
                coarsest, coarsest.round_price(price), max(int(ticks), 1))

    def step(self) -> list[tuple[str, Decimal]]:
        updates = []
        for walk in self._walks.values():
            move = round(self._rng.gauss(0, 1) * walk.scale)
            walk.price = max(walk.price + move * walk.instrument.tick, walk.instrument.tick)
            updates.append((walk.instrument.symbol, walk.price))
        return updates

    def price(self, family: str) -> Decimal:
        return self._walks[family].price
