"""The broker interface the engine talks to. Symbols are the broker's own."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from synctui.brokers.events import BrokerEvent, OrderInfo
from synctui.brokers.naming import SymbolMap
from synctui.domain.orders import FillCause, MarginMode, OrderStatus, OrderType, Side
from synctui.domain.risk import RiskLimits


@dataclass(frozen=True, slots=True)
class OrderRequest:
    symbol: str
    side: Side
    qty: Decimal
    type: OrderType = OrderType.MARKET
    price: Decimal | None = None
    reduce_only: bool = False
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    client_id: str | None = None


@dataclass(frozen=True, slots=True)
class PositionView:
    symbol: str
    qty: Decimal  # signed
    avg_price: Decimal
    leverage: int | None
    margin_mode: MarginMode | None
    margin: Decimal
    unrealized: Decimal


@dataclass(frozen=True, slots=True)
class AccountView:
    id: str
    broker: str
    balance: Decimal
    equity: Decimal
    available: Decimal
    used_margin: Decimal
    realized: Decimal
    fees: Decimal
    breached: str | None
    risk: RiskLimits
    positions: tuple[PositionView, ...]
    orders: tuple[OrderInfo, ...]


Listener = Callable[[BrokerEvent], None]


class Broker(Protocol):
    name: str
    symbols: SymbolMap

    def subscribe(self, listener: Listener) -> Callable[[], None]: ...
    def open_account(self, account: str, balance: Decimal, risk: RiskLimits) -> None: ...
    def has_account(self, account: str) -> bool: ...
    def place_order(self, account: str, request: OrderRequest) -> str: ...
    def modify_order(self, order_id: str, price: Decimal) -> None: ...
    def cancel_order(self, order_id: str) -> None: ...
    def cancel_all(self, account: str, symbol: str | None = None) -> None: ...
    def close_position(self, account: str, symbol: str, cause: FillCause) -> None: ...
    def close_all(self, account: str, cause: FillCause) -> None: ...
    def set_leverage(self, account: str, symbol: str, leverage: Decimal | int) -> None: ...
    def set_margin_mode(self, account: str, symbol: str, mode: MarginMode) -> None: ...
    def adjust_margin(self, account: str, symbol: str, amount: Decimal) -> None: ...
    def leverage_of(self, account: str, symbol: str) -> tuple[int, MarginMode]: ...
    def reset_breach(self, account: str) -> None: ...
    def on_price(self, family: str) -> None: ...
    def position(self, account: str, symbol: str) -> Decimal: ...
    def working_orders(self, account: str, symbol: str | None = None) -> list[OrderInfo]: ...
    def order(self, order_id: str) -> OrderInfo | None: ...
    def order_status(self, order_id: str) -> OrderStatus | None: ...
    def order_by_client_id(self, client_id: str) -> OrderInfo | None: ...
    def is_breached(self, account: str) -> bool: ...
    def view(self, account: str) -> AccountView: ...
