"""The instrument catalog (SPEC section 1) and the rounding that belongs to it.

Rounding lives on the instrument, as NautilusTrader's `make_qty`/`make_price`
do, so no other module invents its own precision.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from enum import StrEnum

from synctui.domain.errors import Refused

ONE = Decimal(1)
ZERO = Decimal(0)


class Kind(StrEnum):
    FUTURE = "future"
    PERP = "perp"


class Market(StrEnum):
    """What a broker trades (SPEC 9): an account holds only instruments of its
    broker's markets, so a copy to a broker that does not trade the contract is
    a failure, not an order."""

    FUTURES = "futures"
    PERPS = "perps"


ALL_MARKETS: frozenset[Market] = frozenset(Market)


@dataclass(frozen=True, slots=True)
class Instrument:
    """One tradable contract. Futures trade whole contracts; perps trade coin."""

    symbol: str
    family: str
    kind: Kind
    multiplier: Decimal
    tick: Decimal
    qty_step: Decimal
    min_qty: Decimal
    margin_per_contract: Decimal = ZERO
    max_leverage: int = 1
    mmr: Decimal = ZERO
    name: str = ""

    @property
    def is_future(self) -> bool:
        return self.kind is Kind.FUTURE

    @property
    def market(self) -> Market:
        return Market.FUTURES if self.kind is Kind.FUTURE else Market.PERPS

    def on_tick(self, price: Decimal) -> bool:
        return price > 0 and price % self.tick == 0

    def on_step(self, qty: Decimal) -> bool:
        return qty > 0 and qty % self.qty_step == 0

    def floor_qty(self, qty: Decimal) -> Decimal:
        """Round down to the qty step (sizing never buys more than asked)."""
        steps = (qty / self.qty_step).to_integral_value(rounding=ROUND_FLOOR)
        return steps * self.qty_step

    def half_up_qty(self, qty: Decimal) -> Decimal:
        """Round half-up to the qty step: the rule for proportional closes (SPEC 4)."""
        steps = (qty / self.qty_step).to_integral_value(rounding=ROUND_HALF_UP)
        return steps * self.qty_step

    def round_price(self, price: Decimal) -> Decimal:
        """Nearest tick, never below one tick (for the market simulator)."""
        ticks = (price / self.tick).to_integral_value(rounding=ROUND_HALF_UP)
        return max(ticks, ONE) * self.tick

    def check_qty(self, qty: Decimal) -> None:
        _in_range(qty, "quantity")
        if qty <= 0:
            raise Refused(f"quantity must be positive, got {qty}")
        if qty % self.qty_step != 0:
            raise Refused(f"{self.symbol} quantity must be a multiple of {self.qty_step}")
        if qty < self.min_qty:
            raise Refused(f"{self.symbol} quantity must be at least {self.min_qty}")

    def check_price(self, price: Decimal, what: str = "price") -> None:
        _in_range(price, what)
        if price <= 0:
            raise Refused(f"{what} must be positive, got {price}")
        if price % self.tick != 0:
            raise Refused(f"{self.symbol} {what} must be a multiple of the tick {self.tick}")


# Far beyond any real price or size, and small enough that tick and step
# arithmetic stays exact in the 28-digit Decimal context.
LIMIT = Decimal("1e15")


def _in_range(value: Decimal, what: str) -> None:
    if not value.is_finite() or abs(value) >= LIMIT:
        raise Refused(f"{what} {value} is out of range")


def _future(
    symbol: str, name: str, family: str, multiplier: str, tick: str, margin: str
) -> Instrument:
    return Instrument(
        symbol=symbol,
        family=family,
        kind=Kind.FUTURE,
        multiplier=Decimal(multiplier),
        tick=Decimal(tick),
        qty_step=ONE,
        min_qty=ONE,
        margin_per_contract=Decimal(margin),
        name=name,
    )


def _perp(symbol: str, family: str, step: str, tick: str, lev: int, mmr: str) -> Instrument:
    return Instrument(
        symbol=symbol,
        family=family,
        kind=Kind.PERP,
        multiplier=ONE,
        tick=Decimal(tick),
        qty_step=Decimal(step),
        min_qty=Decimal(step),
        max_leverage=lev,
        mmr=Decimal(mmr),
        name=f"{family} perpetual",
    )


BUILTIN: tuple[Instrument, ...] = (
    _future("MNQ", "Micro E-mini Nasdaq-100", "NQ", "2", "0.25", "100"),
    _future("NQ", "E-mini Nasdaq-100", "NQ", "20", "0.25", "1000"),
    _future("MES", "Micro E-mini S&P 500", "ES", "5", "0.25", "50"),
    _future("ES", "E-mini S&P 500", "ES", "50", "0.25", "500"),
    _future("M2K", "Micro E-mini Russell 2000", "RTY", "5", "0.10", "50"),
    _future("RTY", "E-mini Russell 2000", "RTY", "50", "0.10", "500"),
    _future("MYM", "Micro E-mini Dow", "YM", "0.5", "1", "50"),
    _future("YM", "E-mini Dow", "YM", "5", "1", "500"),
    _future("MGC", "Micro Gold", "GC", "10", "0.10", "100"),
    _future("GC", "Gold", "GC", "100", "0.10", "1000"),
    _future("MCL", "Micro WTI Crude Oil", "CL", "100", "0.01", "100"),
    _future("CL", "WTI Crude Oil", "CL", "1000", "0.01", "1000"),
    _perp("BTCUSDT", "BTC", "0.001", "0.1", 125, "0.004"),
    _perp("ETHUSDT", "ETH", "0.001", "0.01", 100, "0.005"),
    _perp("SOLUSDT", "SOL", "0.1", "0.01", 50, "0.01"),
)


class Catalog:
    """Symbol -> instrument, with families (SPEC 1: a family shares one price)."""

    def __init__(self, instruments: Iterable[Instrument] = BUILTIN) -> None:
        self._by_symbol: dict[str, Instrument] = {}
        for instrument in instruments:
            self.add(instrument)

    def add(self, instrument: Instrument) -> None:
        self._by_symbol[instrument.symbol] = instrument

    def get(self, symbol: str) -> Instrument:
        try:
            return self._by_symbol[symbol]
        except KeyError:
            raise Refused(f"unknown symbol {symbol!r}") from None

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._by_symbol

    def __iter__(self) -> Iterator[Instrument]:
        return iter(self._by_symbol.values())

    def family(self, family: str) -> list[Instrument]:
        return [i for i in self._by_symbol.values() if i.family == family]
