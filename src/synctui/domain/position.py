"""Net positions (SPEC 2): signed quantity, average price kept on reduces,
a fill crossing zero split into a close and an open at the fill price."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from synctui.domain.frozen import quick_init
from synctui.domain.money import money

ZERO = Decimal(0)


@quick_init  # built by the thousand per fan-out
@dataclass(frozen=True, slots=True)
class FillOutcome:
    qty: Decimal  # signed position after the fill
    avg_price: Decimal  # average after the fill (0 when flat)
    closed: Decimal  # quantity closed (>= 0)
    opened: Decimal  # quantity opened or added (>= 0)
    realized: Decimal  # PnL of the closed part, before fees


def split_fill(position: Decimal, fill: Decimal) -> tuple[Decimal, Decimal]:
    """Split a signed fill against a signed position into (closed, opened) sizes.

    A reversal is a full close and an open of the remainder (SPEC 4).
    """
    if position == 0 or (position > 0) == (fill > 0):
        return ZERO, abs(fill)
    closed = min(abs(fill), abs(position))
    return closed, abs(fill) - closed


def realized_pnl(position: Decimal, avg: Decimal, exit_price: Decimal, qty: Decimal,
                 multiplier: Decimal) -> Decimal:
    """PnL of closing `qty` of a signed position at `exit_price`, to the money quantum."""
    if position > 0:
        return money((exit_price - avg) * qty * multiplier)
    return money((avg - exit_price) * qty * multiplier)


def unrealized_pnl(position: Decimal, avg: Decimal, price: Decimal,
                   multiplier: Decimal) -> Decimal:
    if position == 0:
        return ZERO
    return realized_pnl(position, avg, price, abs(position), multiplier)


def apply_fill(position: Decimal, avg: Decimal, fill: Decimal, price: Decimal,
               multiplier: Decimal) -> FillOutcome:
    """The new net position after a signed fill at `price`."""
    closed, opened = split_fill(position, fill)
    realized = realized_pnl(position, avg, price, closed, multiplier) if closed else ZERO
    new_qty = position + fill
    if new_qty == 0:
        new_avg = ZERO
    elif closed and opened:
        new_avg = price  # reversed: the rest opens at the fill price
    elif opened:
        held = abs(position)
        new_avg = (avg * held + price * opened) / (held + opened)
    else:
        new_avg = avg  # reducing keeps the average
    return FillOutcome(new_qty, new_avg, closed, opened, realized)
