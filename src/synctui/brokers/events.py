"""What a broker reports. Symbols here are the broker's native ones."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from synctui.domain.errors import RejectReason
from synctui.domain.frozen import quick_init
from synctui.domain.orders import CancelReason, FillCause, MarginMode, OrderType, Side


@quick_init  # built by the thousand per fan-out
@dataclass(frozen=True, slots=True)
class OrderInfo:
    """A working order as the broker holds it."""

    broker: str
    id: str
    account: str
    symbol: str
    side: Side
    type: OrderType
    qty: Decimal
    price: Decimal | None
    reduce_only: bool
    stop_loss: Decimal | None
    take_profit: Decimal | None
    client_id: str | None
    parent_id: str | None  # the order whose bracket this is
    role: str | None  # "stop_loss" | "take_profit" for brackets


@quick_init  # built by the thousand per fan-out
@dataclass(frozen=True, slots=True)
class Fill:
    id: str  # unique per broker: the key of everything copied from it
    broker: str
    account: str
    symbol: str
    side: Side
    qty: Decimal
    price: Decimal
    fee: Decimal
    realized: Decimal
    cause: FillCause
    position_before: Decimal  # signed
    position_after: Decimal  # signed
    equity_before: Decimal  # the leader's equity before it (Smart Sync); 0 for a copy's fill
    leverage: int | None
    margin_mode: MarginMode | None
    order_id: str | None
    client_id: str | None
    parent_id: str | None
    role: str | None
    stop_loss: Decimal | None
    take_profit: Decimal | None
    at: datetime


@dataclass(frozen=True, slots=True)
class OrderPlaced:
    order: OrderInfo


@dataclass(frozen=True, slots=True)
class OrderModified:
    order: OrderInfo


@dataclass(frozen=True, slots=True)
class OrderCancelled:
    order: OrderInfo
    reason: CancelReason


@dataclass(frozen=True, slots=True)
class OrderFailed:
    """A working order that reached its price but could not fill (e.g. margin)."""

    order: OrderInfo
    reason: RejectReason
    message: str


@quick_init  # built by the thousand per fan-out
@dataclass(frozen=True, slots=True)
class OrderAcknowledged:
    """The broker has a submitted order (SPEC 9: answers come after the request)."""

    broker: str
    account: str
    client_id: str
    order_id: str


@dataclass(frozen=True, slots=True)
class OrderRefused:
    """The broker refused a submitted order, with its reason code."""

    broker: str
    account: str
    client_id: str
    reason: RejectReason
    message: str


@dataclass(frozen=True, slots=True)
class AccountBreached:
    broker: str
    account: str
    rule: str


@dataclass(frozen=True, slots=True)
class LeverageChanged:
    """An account's leverage for a symbol changed (Smart Sync copies follow it)."""

    broker: str
    account: str
    symbol: str
    leverage: int
    had_position: bool


@dataclass(frozen=True, slots=True)
class MarginAdjusted:
    """Margin added (+) or removed (-) on an isolated position."""

    broker: str
    account: str
    symbol: str
    delta: Decimal
    margin_before: Decimal


@dataclass(frozen=True, slots=True)
class PriceUpdated:
    """Queued by the engine after every broker saw a new price: stop losses are
    checked once the update's fills were handled."""

    family: str


BrokerEvent = (
    Fill | OrderPlaced | OrderModified | OrderCancelled | OrderFailed | AccountBreached
    | OrderAcknowledged | OrderRefused
    | LeverageChanged | MarginAdjusted | PriceUpdated
)
