"""Read models for managing groups: the list, eligibility, a staged preview."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from synctui.domain.copies import CopyStatus
from synctui.domain.groups import REASON_WORDS, Group, GroupStatus
from synctui.engine.engine import Engine

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class GroupRow:
    name: str
    status: GroupStatus
    reason: str | None  # in words
    leader: str | None
    followers: int
    copies: int
    today: Decimal  # the leader's PnL today (equity minus the day's start)


def group_rows(engine: Engine) -> list[GroupRow]:
    rows = []
    for group in engine.state.groups.groups.values():
        today = ZERO
        if group.leader is not None:
            today = engine.broker_of(group.leader).today_pnl(group.leader)
        copies = sum(1 for a in group.copies
                     if (c := engine.state.copies.get((group.name, a)))
                     and c.status is not CopyStatus.ENDED)
        rows.append(GroupRow(group.name, group.status,
                             REASON_WORDS[group.reason] if group.reason else None,
                             group.leader, len(group.followers), copies, today))
    return rows


def free_accounts(engine: Engine, group: Group) -> list[str]:
    """Accounts that may join `group` (as leader or follower): no role in any other
    group, not already in it, not copying it."""
    book = engine.state.groups
    members = {group.leader, *group.followers, *group.copies}
    free = []
    for account in engine.state.accounts:
        role = book.role_of(account)
        if account in members or (role is not None and role[0] != group.name):
            continue
        free.append(account)
    return free


def describe_status(group: Group) -> str:
    words = {GroupStatus.ACTIVE: "Active", GroupStatus.PAUSED: "Paused",
             GroupStatus.NOT_CONFIGURED: "Not Configured"}[group.status]
    if group.reason is not None:
        words += f" ({REASON_WORDS[group.reason]})"
    return words
