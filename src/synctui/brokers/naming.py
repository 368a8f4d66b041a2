"""Each broker names contracts its own way; the engine speaks catalog symbols.

A Tradovate-like broker says `MNQZ6`, a ProjectX-like one `CON.F.US.MNQ.Z26`,
an exchange says `BTC-USDT-SWAP`. Translation tables are built once, so the
hot path pays two dict look-ups.
"""

from __future__ import annotations

from enum import StrEnum

from synctui.domain.errors import Refused
from synctui.domain.instruments import Catalog, Instrument


class NamingScheme(StrEnum):
    PLAIN = "plain"
    TRADOVATE = "tradovate"
    PROJECTX = "projectx"


# The front contract month the simulated brokers list (December 2026).
MONTH_CODE = "Z"
YEAR = 2026


def native_symbol(scheme: NamingScheme, instrument: Instrument) -> str:
    symbol = instrument.symbol
    if scheme is NamingScheme.PLAIN:
        return symbol
    if instrument.is_future:
        if scheme is NamingScheme.TRADOVATE:
            return f"{symbol}{MONTH_CODE}{YEAR % 10}"
        return f"CON.F.US.{symbol}.{MONTH_CODE}{YEAR % 100:02d}"
    if scheme is NamingScheme.TRADOVATE:
        return symbol
    quote = "USDT" if symbol.endswith("USDT") else ""
    base = symbol[: -len(quote)] if quote else symbol
    return f"{base}-{quote}-SWAP" if quote else f"{symbol}-SWAP"


class SymbolMap:
    """Catalog symbol <-> a broker's native symbol."""

    def __init__(self, scheme: NamingScheme, catalog: Catalog) -> None:
        self.scheme = scheme
        self._to_native: dict[str, str] = {}
        self._to_catalog: dict[str, str] = {}
        for instrument in catalog:
            self.add(instrument)

    def add(self, instrument: Instrument) -> None:
        native = native_symbol(self.scheme, instrument)
        self._to_native[instrument.symbol] = native
        self._to_catalog[native] = instrument.symbol

    def set(self, symbol: str, native: str) -> None:
        """Name a catalog symbol as a broker lists it (an exchange's markets, at start)."""
        self._to_catalog.pop(self._to_native.get(symbol, ""), None)
        self._to_native[symbol] = native
        self._to_catalog[native] = symbol

    def native(self, symbol: str) -> str:
        try:
            return self._to_native[symbol]
        except KeyError:
            raise Refused(f"unknown symbol {symbol!r}") from None

    def catalog(self, native: str) -> str:
        try:
            return self._to_catalog[native]
        except KeyError:
            raise Refused(f"the broker does not list {native!r}") from None
