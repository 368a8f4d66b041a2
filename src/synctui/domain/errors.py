"""Refusals and rejection codes shared by every layer."""

from __future__ import annotations

from enum import StrEnum


class Refused(Exception):
    """A command that the rules forbid. It changed nothing (SPEC section 6).

    The message is meant for a trader: it says what was wrong in words.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RejectReason(StrEnum):
    """Failure reason codes of SPEC section 7."""

    INSUFFICIENT_MARGIN = "insufficient_margin"
    ACCOUNT_BREACHED = "account_breached"
    LEVERAGE_SYNC_FAILED = "leverage_sync_failed"
    MARGIN_SYNC_FAILED = "margin_sync_failed"
    REJECTED = "rejected"
    UNSUPPORTED_INSTRUMENT = "unsupported_instrument"
    EXPIRED = "expired"


REASON_TEXT: dict[RejectReason, str] = {
    RejectReason.INSUFFICIENT_MARGIN: "not enough available margin",
    RejectReason.ACCOUNT_BREACHED: "the account has breached a risk limit",
    RejectReason.LEVERAGE_SYNC_FAILED: "the leverage change could not be copied",
    RejectReason.MARGIN_SYNC_FAILED: "the margin change could not be copied",
    RejectReason.REJECTED: "the broker rejected the order",
    RejectReason.UNSUPPORTED_INSTRUMENT: "the broker does not trade this contract",
    RejectReason.EXPIRED: "the copy waited for its broker longer than the signal expiry",
}


class OrderRejected(Refused):
    """A broker's refusal of an order, with its reason code."""

    def __init__(self, reason: RejectReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
