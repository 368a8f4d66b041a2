"""Read models for managing groups: the list, eligibility, a staged preview."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from synctui.domain.copies import CopyStatus
from synctui.domain.errors import Refused
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
    # What the group's followers made: each ratio follower's account and each Smart
    # Sync copy at work (its sub-account), realized net of fees plus unrealized.
    followers_pnl: Decimal = ZERO


def group_rows(engine: Engine) -> list[GroupRow]:
    rows = []
    for group in engine.state.groups.groups.values():
        today = ZERO
        if group.leader is not None:
            today = engine.broker_of(group.leader).today_pnl(group.leader)
        working = [c for a in group.copies
                   if (c := engine.state.copies.get((group.name, a)))
                   and c.status is not CopyStatus.ENDED]
        pnl = sum((engine.broker_of(f).total_pnl(f) for f in group.followers), ZERO)
        pnl += sum((engine.broker_of(c.sub).total_pnl(c.sub) for c in working), ZERO)
        rows.append(GroupRow(group.name, group.status,
                             REASON_WORDS[group.reason] if group.reason else None,
                             group.leader, len(group.followers), len(working), today, pnl))
    return rows


@dataclass(frozen=True, slots=True)
class GroupTotals:
    today: Decimal  # the leaders' PnL today
    followers_pnl: Decimal


def group_totals(rows: list[GroupRow]) -> GroupTotals:
    return GroupTotals(sum((r.today for r in rows), ZERO),
                       sum((r.followers_pnl for r in rows), ZERO))


def unassigned_accounts(engine: Engine) -> list[str]:
    """Accounts with no role in any group: a new group may take them."""
    book = engine.state.groups
    return [a for a in engine.state.accounts if book.role_of(a) is None]


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


def group_contracts(engine: Engine, group: Group) -> list[str]:
    """The contracts a group copies: those its followers' settings name and those its
    leader holds or works, in catalog order."""
    named = {symbol for (_follower, symbol) in group.settings}
    if group.leader is not None:
        broker = engine.broker_of(group.leader)
        view = broker.view(group.leader)
        named.update(broker.symbols.catalog(p.symbol) for p in view.positions)
        named.update(broker.symbols.catalog(o.symbol) for o in view.orders)
    return [inst.symbol for inst in engine.catalog if inst.symbol in named]


def cannot_trade(engine: Engine, group: Group, account: str) -> str | None:
    """What of the group the account's broker cannot trade, in words (SPEC 9: its copies
    of those would fail `unsupported_instrument`); None when it can trade it all. With
    no contract known yet, the markets the leader's broker trades and its own does not."""
    broker = engine.broker_of(account)
    missing = [s for s in group_contracts(engine, group)
               if not broker.trades(broker.symbols.native(s))]
    if missing:
        return "cannot trade " + ", ".join(missing)
    if group.leader is None or group_contracts(engine, group):
        return None
    markets = sorted(engine.broker_of(group.leader).markets - broker.markets)
    return "cannot trade " + " or ".join(markets) if markets else None


def describe_status(group: Group) -> str:
    words = {GroupStatus.ACTIVE: "Active", GroupStatus.PAUSED: "Paused",
             GroupStatus.NOT_CONFIGURED: "Not Configured"}[group.status]
    if group.reason is not None:
        words += f" ({REASON_WORDS[group.reason]})"
    return words


def disconnected_broker(engine: Engine, account: str) -> str | None:
    """The account's broker when it is disconnected (SPEC 9: nothing reaches it, its
    copies wait); None when connected or the account is unknown."""
    try:
        broker = engine.broker_of(account)
    except Refused:
        return None
    return None if broker.connected else broker.name
