"""How much a follower trades for a leader fill (SPEC 4, ratio mode)."""

from __future__ import annotations

from decimal import Decimal

from synctui.domain.instruments import Instrument

ZERO = Decimal(0)


def opening_qty(leader_qty: Decimal, ratio: int, follower: Instrument) -> Decimal:
    """Leader fill qty x ratio, on the follower contract's step (a cross may differ)."""
    return follower.floor_qty(leader_qty * ratio)


def closing_qty(follower_held: Decimal, leader_before: Decimal, leader_closed: Decimal,
                follower: Instrument) -> Decimal:
    """The follower's share of a leader reduce from Q to Q - q.

    `f = q / Q` of the follower's position, rounded half-up to the step and
    capped at the position; the whole position when the leader is flat.
    All arguments are unsigned sizes.
    """
    if follower_held <= 0 or leader_before <= 0:
        return ZERO
    if leader_closed >= leader_before:
        return follower_held
    share = follower.half_up_qty(follower_held * leader_closed / leader_before)
    return min(share, follower_held)
