"""Order vocabulary shared by brokers, the engine and the UI."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum

from synctui.domain.errors import Refused


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
    COPY_STOP = "copy_stop"  # a Smart Sync copy's total stop loss closes it at the update price
    UNFOLLOW = "unfollow"  # a Smart Sync copy closed when its follower unfollows


class OrderStatus(StrEnum):
    """An order's lifecycle at its broker. The moves allowed are in `TRANSITIONS`, as in
    NautilusTrader's `OrderStatus::transition`: anything else is an error, so a broker
    that reports a filled order cancelled (or a fill after a cancel) is caught where it
    happens instead of corrupting a copy later."""

    SUBMITTED = "submitted"  # sent, not acknowledged yet
    WORKING = "working"  # accepted and resting (a market order: accepted, filling)
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"  # refused, or could not be afforded when it reached its price


TRANSITIONS: dict[OrderStatus | None, frozenset[OrderStatus]] = {
    None: frozenset({OrderStatus.SUBMITTED, OrderStatus.WORKING, OrderStatus.REJECTED}),
    OrderStatus.SUBMITTED: frozenset({
        OrderStatus.WORKING, OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED,
        OrderStatus.CANCELLED, OrderStatus.REJECTED}),
    OrderStatus.WORKING: frozenset({
        OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED, OrderStatus.CANCELLED,
        OrderStatus.REJECTED}),
    OrderStatus.PARTIALLY_FILLED: frozenset({
        OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED, OrderStatus.CANCELLED}),
    OrderStatus.FILLED: frozenset(),
    OrderStatus.CANCELLED: frozenset(),
    OrderStatus.REJECTED: frozenset(),
}


class InvalidTransition(Exception):
    """A move the order lifecycle does not allow: a bug in a broker or the engine."""


def transition(current: OrderStatus | None, new: OrderStatus) -> OrderStatus:
    """`new`, when an order may move there from `current` (None: a new order)."""
    if new not in TRANSITIONS[current]:
        raise InvalidTransition(f"an order cannot go from {current or 'new'} to {new}")
    return new


class CancelReason(StrEnum):
    """Why a broker cancelled an order. The engine mirrors some to followers (the
    leader cancelled, or flattened the symbol) and not others (an OCO sibling, a
    reduce-only order whose position is gone: those happen at each follower's own
    broker), so engine and broker share these codes instead of spelling strings alike."""

    REQUESTED = "cancelled"  # the account asked (or a mirror of the leader's cancel)
    FLATTEN = "flatten"  # Flatten Position cancels the symbol's orders first
    OCO = "oco"  # its bracket sibling filled
    POSITION_CLOSED = "position closed"  # reduce-only, and its position went flat
    NOTHING_TO_REDUCE = "nothing to reduce"  # reduce-only, with nothing to reduce at its fill

    @property
    def mirrored(self) -> bool:
        """Whether a leader's order cancelled for this reason cancels its mirrors."""
        return self in (CancelReason.REQUESTED, CancelReason.FLATTEN)


def check_brackets(side: Side, entry: Decimal, stop_loss: Decimal | None,
                   take_profit: Decimal | None) -> None:
    """A trader's own bracket on the wrong side of the entry would exit at once: refuse it.

    Copies are not checked: a follower mirrors what the leader's broker did,
    where a bracket already through its level simply fills at once.
    """
    below, above = ("below", "above") if side is Side.BUY else ("above", "below")
    if stop_loss is not None and (stop_loss >= entry if side is Side.BUY else stop_loss <= entry):
        raise Refused(f"the stop loss of a {side} must be {below} the entry price {entry}")
    if take_profit is not None and (
            take_profit <= entry if side is Side.BUY else take_profit >= entry):
        raise Refused(f"the take profit of a {side} must be {above} the entry price {entry}")
