"""Read models for a UI: frozen snapshots of what the engine holds.

The TUI renders these and nothing else, so every rule (what "in sync" means,
which contracts a group trades) lives here, below the UI, and is tested
without a terminal.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from synctui.domain.copies import CopyStatus
from synctui.domain.groups import Group, GroupStatus, PauseReason
from synctui.engine.engine import Engine

ZERO = Decimal(0)


class FollowerStatus:
    IN_SYNC = "in sync"
    OUT_OF_SYNC = "out of sync"
    FAILED = "failed"
    BREACHED = "breached"
    OFF = "sync off"


@dataclass(frozen=True, slots=True)
class GroupSummary:
    name: str
    status: GroupStatus
    reason: PauseReason | None
    leader: str | None
    followers: int
    copies: int


@dataclass(frozen=True, slots=True)
class Holding:
    symbol: str
    qty: Decimal  # signed
    avg_price: Decimal
    unrealized: Decimal


@dataclass(frozen=True, slots=True)
class WorkingOrder:
    id: str
    symbol: str
    side: str
    type: str
    qty: Decimal
    price: Decimal | None
    role: str | None


@dataclass(frozen=True, slots=True)
class LeaderView:
    account: str
    broker: str
    breached: str | None
    holdings: tuple[Holding, ...]
    unrealized: Decimal
    realized: Decimal
    equity: Decimal
    orders: tuple[WorkingOrder, ...]


@dataclass(frozen=True, slots=True)
class FollowerRow:
    account: str
    broker: str
    sync: bool
    ratio: int
    cross: str | None
    traded: str
    position: Decimal  # signed, in the traded symbol
    avg_price: Decimal | None
    unrealized: Decimal
    realized: Decimal
    status: str


def group_summaries(engine: Engine) -> list[GroupSummary]:
    copies = engine.state.copies
    return [
        GroupSummary(g.name, g.status, g.reason, g.leader, len(g.followers),
                     sum(1 for a in g.copies
                         if (c := copies.get((g.name, a))) and c.status is not CopyStatus.ENDED))
        for g in engine.state.groups.groups.values()
    ]


def leader_view(engine: Engine, group: Group) -> LeaderView | None:
    if group.leader is None:
        return None
    broker = engine.broker_of(group.leader)
    view = broker.view(group.leader)
    symbols = broker.symbols
    holdings = tuple(Holding(symbols.catalog(p.symbol), p.qty, p.avg_price, p.unrealized)
                     for p in view.positions)
    orders = tuple(WorkingOrder(o.id, symbols.catalog(o.symbol), o.side.value, o.type.value,
                                o.qty, o.price, o.role) for o in view.orders)
    return LeaderView(group.leader, view.broker, view.breached, holdings,
                      sum((h.unrealized for h in holdings), ZERO), view.realized - view.fees,
                      view.equity, orders)


def contracts(engine: Engine, group: Group) -> list[str]:
    """The contracts a group trades: the leader's positions and orders, the contracts
    its followers have settings for, and otherwise every priced contract."""
    found: list[str] = []
    leader = leader_view(engine, group)
    if leader is not None:
        found += [h.symbol for h in leader.holdings] + [o.symbol for o in leader.orders]
    found += [symbol for (_follower, symbol) in group.settings]
    prices = engine.prices
    priced = [prices.symbol_of(f) for f in prices.families()]
    ordered = list(dict.fromkeys(found))
    return ordered + [s for s in priced if s not in ordered]


def follower_rows(engine: Engine, group: Group, symbol: str) -> list[FollowerRow]:
    leader_qty = ZERO
    if group.leader is not None:
        leader_broker = engine.broker_of(group.leader)
        leader_qty = leader_broker.position(group.leader, leader_broker.symbols.native(symbol))
    rows = []
    for follower in group.followers:
        setting = group.setting(follower, symbol)
        traded = setting.cross or symbol
        broker = engine.broker_of(follower)
        detail = broker.position_detail(follower, broker.symbols.native(traded))
        position = detail.qty if detail else ZERO
        if broker.is_breached(follower):
            status = FollowerStatus.BREACHED
        elif not setting.sync:
            status = FollowerStatus.OFF
        elif engine.state.last_result.get((group.name, follower, traded)) is False:
            status = FollowerStatus.FAILED
        elif position == leader_qty * setting.ratio:
            status = FollowerStatus.IN_SYNC
        else:
            status = FollowerStatus.OUT_OF_SYNC
        rows.append(FollowerRow(
            account=follower, broker=broker.name, sync=setting.sync, ratio=setting.ratio,
            cross=setting.cross, traded=traded, position=position,
            avg_price=detail.avg_price if detail else None,
            unrealized=detail.unrealized if detail else ZERO,
            realized=broker.realized_net(follower), status=status))
    return rows
