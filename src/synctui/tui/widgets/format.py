"""Number formatting at the UI's edge: Decimals shown as traders read them."""

from __future__ import annotations

from decimal import Decimal

from rich.text import Text


def qty(value: Decimal) -> str:
    if value == 0:
        return "0"
    text = f"{value.normalize():f}"
    return f"+{text}" if value > 0 else text


def price(value: Decimal | None) -> str:
    if value is None:
        return "-"
    exponent = value.as_tuple().exponent
    long_tail = isinstance(exponent, int) and exponent < -4  # a 28-digit average price
    shown = value.quantize(Decimal("0.0001")) if long_tail else value
    return f"{shown.normalize():,f}"


def money(value: Decimal) -> Text:
    text = f"{value.quantize(Decimal('0.01')):,}"
    style = "green" if value > 0 else "red" if value < 0 else "dim"
    return Text(("+" if value > 0 else "") + text, style=style, justify="right")
