"""Order vocabulary shared by brokers, the engine and the UI."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"

    @property
    def sign(self) -> int:
        return 1 if self is Side.BUY else -1

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY

    def signed(self, qty: Decimal) -> Decimal:
        return qty if self is Side.BUY else -qty

    @staticmethod
    def closing(position_qty: Decimal) -> Side:
        """The side that reduces a signed position."""
        return Side.SELL if position_qty > 0 else Side.BUY


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"


class MarginMode(StrEnum):
    CROSS = "cross"
    ISOLATED = "isolated"


class FillCause(StrEnum):
    """Why a fill happened: the engine copies some causes and not others."""

    ORDER = "order"  # a market order, or a working order reaching its price
    BRACKET = "bracket"  # a stop loss / take profit exit of a filled order
    LIQUIDATION = "liquidation"
    RISK = "risk"  # a breach flattens the account
    FLATTEN = "flatten"  # Flatten Position on one account and symbol
    GROUP_FLATTEN = "group_flatten"  # Flatten All / Emergency Stop: never copied
