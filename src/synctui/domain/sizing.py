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


def proportional_close(current: Decimal, base: Decimal, leader_base: Decimal,
                       leader_closed: Decimal, leader_closes_all: bool,
                       follower: Instrument) -> Decimal:
    """How much a follower (or a copy) closes for a leader exit: the one rule behind
    copied closes, mirrored reduce-only orders and Smart Sync closes (SPEC 4, 8).

    Positions are signed. `current` is the follower's position now; `base` and
    `leader_base` are the positions the share is sized on: both taken before the
    price update's first fill when the exit happened in one (SPEC 8), else as they
    are. A follower that holds nothing on the leader's side closes nothing (a leader
    exit never opens or flips a follower); one whose leader closes all closes all.
    Returns an unsigned quantity, capped at the follower's position.
    """
    if current == 0 or leader_base == 0 or (current > 0) != (leader_base > 0):
        return ZERO
    if leader_closes_all:
        return abs(current)
    if base == 0 or (base > 0) != (current > 0):
        base = current
    return min(closing_qty(abs(base), abs(leader_base), leader_closed, follower), abs(current))


# --- Smart Sync (SPEC 5) ------------------------------------------------------

def fund_usage(leader_margin: Decimal, leader_equity: Decimal) -> Decimal:
    """The share of the leader's equity an entry commits: margin / equity before the fill."""
    if leader_equity <= 0:
        return ZERO
    return leader_margin / leader_equity


def smart_qty(copy_equity: Decimal, usage: Decimal, instrument: Instrument, price: Decimal,
              leverage: int) -> Decimal:
    """Copy margin `m = copy equity x u`; perps `m x leverage / price`, futures
    `m / margin per contract`; rounded down to the step (SPEC 5)."""
    margin = copy_equity * usage
    if margin <= 0:
        return ZERO
    if instrument.is_future:
        return instrument.floor_qty(margin / instrument.margin_per_contract)
    return instrument.floor_qty(margin * leverage / price)


def margin_sync_delta(copy_margin: Decimal, leader_delta: Decimal,
                      leader_margin_before: Decimal) -> Decimal:
    """The copy's share of a leader's isolated margin change: `copy margin x delta / M`."""
    if leader_margin_before <= 0:
        return ZERO
    return copy_margin * leader_delta / leader_margin_before
