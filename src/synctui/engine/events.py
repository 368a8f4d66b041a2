"""What the engine tells its observers (the TUI, logs, tests). Catalog symbols only."""

from __future__ import annotations

import typing
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from synctui.domain.copies import CopyStatus
from synctui.domain.errors import RejectReason
from synctui.domain.frozen import quick_init
from synctui.domain.groups import GroupStatus, PauseReason
from synctui.domain.orders import FillCause, OrderType, Side


@dataclass(frozen=True, slots=True)
class Failure:
    """A follower order that could not be placed or filled (SPEC 4)."""

    group: str
    account: str
    symbol: str  # the symbol the follower trades (the cross when crossed)
    reason: RejectReason
    message: str
    at: datetime


@quick_init  # built by the thousand per fan-out
@dataclass(frozen=True, slots=True)
class AccountFilled:
    account: str
    symbol: str
    side: Side
    qty: Decimal
    price: Decimal
    realized: Decimal
    fee: Decimal
    cause: FillCause
    group: str | None  # the group this fill belongs to, if any
    copy: bool  # True for a follower's copy of a leader fill or order
    at: datetime
    smart: bool = False  # a Smart Sync copy's fill (account is the copy's owner)


@dataclass(frozen=True, slots=True)
class CopyFailed:
    failure: Failure


@dataclass(frozen=True, slots=True)
class GroupChanged:
    group: str
    status: GroupStatus
    reason: PauseReason | None
    previous: GroupStatus | None  # None when the group was just created
    cause: str | None = None  # what the command was, when a command caused it


@dataclass(frozen=True, slots=True)
class AccountBreachedEvent:
    account: str
    rule: str


@dataclass(frozen=True, slots=True)
class OrderChanged:
    """A working order placed, modified or gone (filled, cancelled, failed)."""

    account: str
    order_id: str
    symbol: str
    side: Side
    type: OrderType
    qty: Decimal
    price: Decimal | None
    change: str  # "placed" | "modified" | "cancelled" | "failed"


@dataclass(frozen=True, slots=True)
class CopyChanged:
    """A Smart Sync copy followed, changed, stopped or ended (UI notifications)."""

    group: str
    account: str
    status: CopyStatus
    what: str  # "followed" | "investment" | "stop loss" | "stopped" | "unfollowed"


@dataclass(frozen=True, slots=True)
class PriceMoved:
    family: str
    price: Decimal


EngineEvent = (
    AccountFilled | CopyFailed | GroupChanged | AccountBreachedEvent | OrderChanged | PriceMoved
    | CopyChanged
)
EVENT_TYPES: tuple[type, ...] = typing.get_args(EngineEvent)  # each kind, once
