"""Smart Sync copies (SPEC 5): a follow with its own isolated funds and positions."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

MIN_INVESTMENT = Decimal(100)
# An increase of margin is not copied while the copy is this safe (1,000%).
SAFE_MARGIN_LEVEL = Decimal(10)


class CopyStatus(StrEnum):
    ACTIVE = "active"
    STOPPED = "stopped"  # its total stop loss was hit
    ENDED = "ended"  # unfollowed


class OnStop(StrEnum):
    CLOSE = "close"
    KEEP = "keep"


@dataclass(slots=True)
class Copy:
    """One follow in Smart Sync mode.

    Its funds live in `sub`, a sub-account at the follower's broker: the
    sub-account's balance is the copy's funds (investment + realized PnL,
    fees included), and its positions are the copy's, never mixed with the
    account's own.
    """

    group: str
    account: str
    sub: str
    investment: Decimal
    copy_open_positions: bool = False
    stop_loss: Decimal | None = None
    on_stop: OnStop = OnStop.CLOSE
    status: CopyStatus = CopyStatus.ACTIVE
    funds_returned: bool = False  # funds went back to the account's balance
    # leader leverage changes the copy could not afford yet: retried on a raise
    pending_leverage: dict[str, int] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.group}/{self.account}"

    @property
    def mirrors(self) -> bool:
        return self.status is CopyStatus.ACTIVE
