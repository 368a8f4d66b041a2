"""Margin and liquidation formulas (SPEC 2)."""

from __future__ import annotations

from decimal import Decimal

from synctui.domain.instruments import Instrument
from synctui.domain.position import unrealized_pnl


def order_margin(instrument: Instrument, qty: Decimal, price: Decimal, leverage: int) -> Decimal:
    """Margin that opening `qty` at `price` needs: futures per contract, perps notional/leverage."""
    if instrument.is_future:
        return qty * instrument.margin_per_contract
    return qty * price / leverage


def qty_for_margin(instrument: Instrument, margin: Decimal, price: Decimal,
                   leverage: int) -> Decimal:
    """Quantity a margin buys, rounded down to the step (SPEC 7, orders by margin)."""
    if instrument.is_future:
        raw = margin / instrument.margin_per_contract
    else:
        raw = margin * leverage / price
    return instrument.floor_qty(raw)


def maintenance_margin(instrument: Instrument, qty: Decimal, price: Decimal) -> Decimal:
    return abs(qty) * price * instrument.mmr


def isolated_liquidated(instrument: Instrument, qty: Decimal, avg: Decimal, margin: Decimal,
                        price: Decimal) -> bool:
    """An isolated perp position is liquidated when margin + uPnL <= maintenance margin."""
    upnl = unrealized_pnl(qty, avg, price, instrument.multiplier)
    return margin + upnl <= maintenance_margin(instrument, qty, price)


def liquidation_price(qty: Decimal, avg: Decimal, leverage: int, mmr: Decimal) -> Decimal:
    """Isolated liquidation price without added margin (SPEC 2, closed form)."""
    one = Decimal(1)
    if qty > 0:
        return avg * (one - one / leverage) / (one - mmr)
    return avg * (one + one / leverage) / (one + mmr)
