"""The price book: one price per family, shared by every broker (SPEC 1)."""

from __future__ import annotations

from decimal import Decimal

from synctui.domain.errors import Refused
from synctui.domain.instruments import Catalog


class PriceBook:
    """Current price per family. Brokers read it; only the market writes it."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._by_family: dict[str, Decimal] = {}
        self._symbol: dict[str, str] = {}  # family -> the symbol its price was last set by
        self._changed: set[str] = set()

    def set(self, symbol: str, price: Decimal) -> str:
        """Validate and store a price; return the family it moved."""
        instrument = self.catalog.get(symbol)
        instrument.check_price(price)
        self._by_family[instrument.family] = price
        self._symbol[instrument.family] = symbol
        self._changed.add(instrument.family)
        return instrument.family

    def get(self, symbol: str) -> Decimal:
        family = self.catalog.get(symbol).family
        try:
            return self._by_family[family]
        except KeyError:
            raise Refused(f"there is no price for {symbol} yet") from None

    def maybe(self, symbol: str) -> Decimal | None:
        return self._by_family.get(self.catalog.get(symbol).family)

    def families(self) -> dict[str, Decimal]:
        return dict(self._by_family)

    def symbol_of(self, family: str) -> str:
        return self._symbol[family]

    def take_changed(self) -> dict[str, Decimal]:
        """Families whose price moved since the last call (for a store)."""
        changed = {family: self._by_family[family] for family in sorted(self._changed)}
        self._changed = set()
        return changed
