"""Number formatting at the UI's edge: Decimals shown as traders read them."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

from rich.text import Text


def qty(value: Decimal) -> str:
    if value == 0:
        return "0"
    text = f"{value.normalize():f}"
    return f"+{text}" if value > 0 else text


# Decimal places a contract's prices are shown with: its tick's (MNQ's 0.25 -> 2), so
# a price and an average of one contract read alike everywhere. The app fills it
# from the catalog when the desk opens (`set_price_places`).
PRICE_PLACES: dict[str, int] = {}


def set_price_places(ticks: dict[str, Decimal]) -> None:
    PRICE_PLACES.clear()
    for symbol, tick in ticks.items():
        exponent = tick.normalize().as_tuple().exponent
        PRICE_PLACES[symbol] = max(-exponent, 0) if isinstance(exponent, int) else 2


def price(value: Decimal | None, symbol: str | None = None) -> str:
    """A price with thousands separators, at its contract's precision when known."""
    if value is None:
        return "-"
    places = PRICE_PLACES.get(symbol or "")
    if places is not None:
        return f"{value.quantize(Decimal(1).scaleb(-places), ROUND_HALF_EVEN):,f}"
    exponent = value.as_tuple().exponent
    long_tail = isinstance(exponent, int) and exponent < -4  # a 28-digit average price
    shown = value.quantize(Decimal("0.0001")) if long_tail else value
    return f"{shown.normalize():,f}"


def money(value: Decimal) -> Text:
    text = f"{value.quantize(Decimal('0.01')):,}"
    style = "green" if value > 0 else "red" if value < 0 else "dim"
    return Text(("+" if value > 0 else "") + text, style=style, justify="right")


def plain(text: Text) -> Text:
    """A money Text without its right-justification, to sit inside a sentence."""
    return Text(text.plain, style=text.style)


def percent(value: Decimal | None) -> Text:
    """A return as a signed percentage to two places ("+4.25%"), coloured like money."""
    if value is None:
        return Text("-", style="dim", justify="right")
    shown = (value * 100).quantize(Decimal("0.01"), ROUND_HALF_EVEN)
    style = "green" if shown > 0 else "red" if shown < 0 else "dim"
    return Text(f"{'+' if shown > 0 else ''}{shown:,}%", style=style, justify="right")
