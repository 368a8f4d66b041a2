"""Read models for a UI: frozen snapshots of what the engine holds.

The TUI renders these and nothing else, so every rule (what "in sync" means,
which contracts a group trades) lives here, below the UI, and is tested
without a terminal.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from weakref import WeakKeyDictionary

from synctui.domain.copies import MIN_INVESTMENT, Copy, CopyStatus, OnStop
from synctui.domain.errors import Refused
from synctui.domain.groups import Group, GroupStatus, PauseReason
from synctui.domain.instruments import LIMIT
from synctui.domain.numbers import NumberError, bounded
from synctui.domain.orders import Side
from synctui.engine.engine import Engine
from synctui.engine.events import AccountFilled, CopyChanged, EngineEvent, Failure
from synctui.engine.group_views import cannot_trade

ZERO = Decimal(0)


class FollowerStatus:
    IN_SYNC = "in sync"
    OUT_OF_SYNC = "out of sync"
    FAILED = "failed"
    BREACHED = "breached"
    OFF = "sync off"
    # The group copies nothing (paused, not configured): SPEC 9 expects nothing of it.
    IDLE = "not active"


@dataclass(frozen=True, slots=True)
class BrokerState:
    name: str
    connected: bool


def broker_states(engine: Engine) -> list[BrokerState]:
    """Each broker the desk has accounts on, in the order the desk defines them: the
    header shows which are connected. A broker with no account (the implicit `sim` of
    a world that names its brokers) is left out: nothing of the desk depends on it."""
    used = {engine.broker_of(a).name for a in engine.state.accounts}
    return [BrokerState(name, broker.connected) for name, broker in engine.brokers.items()
            if name in used]


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
    connected: bool = True  # its broker: while disconnected its fills are copied later


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
    # What the follower must still trade to hold what it should (SPEC 9, signed), when
    # it is out of sync for this contract; None when in sync or not reconciled.
    difference: Decimal | None = None
    connected: bool = True  # its broker; while disconnected its copies wait
    latency: tuple[timedelta, timedelta] | None = None  # last, p95 (leader event -> ack)
    pnl: Decimal = ZERO  # the account's: realized net of fees + unrealized, all contracts


@dataclass(frozen=True, slots=True)
class FollowerTotals:
    """The follower table's foot: its contract's unrealized PnL over the followers, and
    what the followers' accounts made in all (each account belongs to one group)."""

    unrealized: Decimal
    realized: Decimal
    pnl: Decimal


def follower_totals(rows: list[FollowerRow]) -> FollowerTotals:
    return FollowerTotals(sum((r.unrealized for r in rows), ZERO),
                          sum((r.realized for r in rows), ZERO),
                          sum((r.pnl for r in rows), ZERO))


def group_summaries(engine: Engine) -> list[GroupSummary]:
    copies = engine.state.copies
    return [
        GroupSummary(g.name, g.status, g.reason, g.leader, len(g.followers),
                     sum(1 for a in g.copies
                         if (c := copies.get((g.name, a))) and c.status is not CopyStatus.ENDED))
        for g in engine.state.groups.groups.values()
    ]


@dataclass(frozen=True, slots=True)
class DeskNames:
    """What a screen offers to pick from: the groups, the accounts (no Smart Sync
    sub-accounts) and the catalog's contracts, each in the desk's own order."""

    groups: tuple[str, ...]
    accounts: tuple[str, ...]
    symbols: tuple[str, ...]


def desk_names(engine: Engine) -> DeskNames:
    return DeskNames(tuple(engine.state.groups.groups), tuple(engine.state.accounts),
                     tuple(i.symbol for i in engine.catalog))


def group_of(engine: Engine, name: str | None) -> Group | None:
    """The group a screen shows, to hand back to the read models that take one; a
    screen reads it and never changes it (commands go through the engine)."""
    return engine.state.groups.groups.get(name) if name is not None else None


def held(engine: Engine, account: str, symbol: str) -> Decimal:
    """The account's signed position in a catalog symbol, at its broker."""
    broker = engine.broker_of(account)
    return broker.position(account, broker.symbols.native(symbol))


def stopped_groups(summaries: list[GroupSummary]) -> list[str]:
    """The groups Emergency Stop paused and nobody has resumed since: while there are
    any, the desk is stopped (the dashboard's banner)."""
    return [s.name for s in summaries if s.status is GroupStatus.PAUSED
            and s.reason is PauseReason.EMERGENCY_STOP]


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
                      view.equity, orders, broker.connected)


def contracts(engine: Engine, group: Group) -> list[str]:
    """The contracts a group trades, in an order that does not move as the leader
    trades: the priced contracts first (the price book's order), then any other the
    leader holds or works or a follower has settings for, by name. Only contracts of
    the markets the leader's broker trades (SPEC 9): a futures desk lists no perps."""
    found: set[str] = set()
    leader = leader_view(engine, group)
    if leader is not None:
        found.update(h.symbol for h in leader.holdings)
        found.update(o.symbol for o in leader.orders)
    found.update(symbol for (_follower, symbol) in group.settings)
    prices = engine.prices
    priced = [prices.symbol_of(f) for f in prices.families()]
    ordered = priced + sorted(found - set(priced))
    if group.leader is None:
        return ordered
    markets = engine.broker_of(group.leader).markets
    return [s for s in ordered if engine.catalog.get(s).market in markets]


def default_contract(engine: Engine, group: Group, listed: list[str]) -> str | None:
    """The contract shown first: the first the leader holds, else the first listed."""
    leader = leader_view(engine, group)
    held = [h.symbol for h in leader.holdings] if leader else []
    return next((s for s in held if s in listed), listed[0] if listed else None)


def follower_rows(engine: Engine, group: Group, symbol: str) -> list[FollowerRow]:
    """One row per follower for one contract. Out of sync is the engine's SPEC 9
    reconciliation (`Engine.out_of_sync`), taken once for the group: one pass over its
    positions per refresh, however many followers it has. A drift is matched on the
    symbol the follower trades, since two contracts crossed to one symbol are listed
    under the first of them."""
    drifts = {(d.account, d.traded): d.difference for d in engine.out_of_sync(group.name)}
    reconciled = group.status is GroupStatus.ACTIVE and group.leader is not None
    rows = []
    for follower in group.followers:
        setting = group.setting(follower, symbol)
        traded = setting.cross or symbol
        broker = engine.broker_of(follower)
        detail = broker.position_detail(follower, broker.symbols.native(traded))
        position = detail.qty if detail else ZERO
        difference = drifts.get((follower, traded)) if setting.sync else None
        if broker.is_breached(follower):
            status = FollowerStatus.BREACHED
        elif not setting.sync:
            status = FollowerStatus.OFF
        elif not reconciled:
            status = FollowerStatus.IDLE
        elif engine.state.last_result.get((group.name, follower, traded)) is False:
            status = FollowerStatus.FAILED
        elif difference is not None:
            status = FollowerStatus.OUT_OF_SYNC
        else:
            status = FollowerStatus.IN_SYNC
        rows.append(FollowerRow(
            account=follower, broker=broker.name, sync=setting.sync, ratio=setting.ratio,
            cross=setting.cross, traded=traded, position=position,
            avg_price=detail.avg_price if detail else None,
            unrealized=detail.unrealized if detail else ZERO,
            realized=broker.realized_net(follower), status=status, difference=difference,
            connected=broker.connected, latency=engine.copy_latency(group.name, follower),
            pnl=broker.total_pnl(follower)))
    return rows


@dataclass(frozen=True, slots=True)
class ResyncPreview:
    """What a resync of one follower for one contract would do, in words, before it is
    confirmed: `orders` is empty when there is nothing to send (in sync) or `refused`
    says why it is not allowed."""

    group: str
    follower: str
    symbol: str  # the leader's contract
    traded: str  # the follower's symbol for it (its cross)
    expected: Decimal | None
    actual: Decimal | None
    orders: str  # "buy 1 MNQ to close, then buy 4 MNQ"; "" when nothing is sent
    refused: str | None
    waits_for: str | None  # the follower's broker, when it is disconnected

    @property
    def in_sync(self) -> bool:
        return self.refused is None and not self.orders


def _signed(value: Decimal) -> str:
    return f"+{value.normalize():f}" if value > 0 else f"{value.normalize():f}"


def describe_orders(orders: tuple[tuple[Side, Decimal, bool], ...], symbol: str) -> str:
    """Market orders in the order they go, in words: a close first, then the open."""
    words = [f"{side.value} {qty.normalize():f} {symbol}" + (" to close" if reduce_only else "")
             for side, qty, reduce_only in orders]
    return ", then ".join(words)


def resync_preview(engine: Engine, group: str, follower: str, symbol: str) -> ResyncPreview:
    try:
        plan = engine.resync_plan(group, follower, symbol)
    except Refused as refused:
        return ResyncPreview(group, follower, symbol, symbol, None, None, "", refused.message,
                             None)
    broker = engine.broker_of(follower)
    return ResyncPreview(group, follower, symbol, plan.traded, plan.expected, plan.actual,
                         describe_orders(plan.orders, plan.traded), None,
                         None if broker.connected else broker.name)


def resync_consequence(preview: ResyncPreview) -> str:
    """The confirmation's text: exactly what is sent, and why."""
    traded = preview.traded
    text = (f"{preview.follower} holds {_signed(preview.actual or ZERO)} {traded} and should "
            f"hold {_signed(preview.expected or ZERO)} (ratio x the leader's {preview.symbol}). "
            f"Sends at market: {preview.orders}. No brackets.")
    if preview.waits_for is not None:
        text += (f" Broker {preview.waits_for} is disconnected: the orders wait and are "
                 "sent when it reconnects.")
    return text


@dataclass(frozen=True, slots=True)
class AccountRow:
    """One account as the Accounts screen shows it (SPEC 2, 3, 5)."""

    account: str
    broker: str
    balance: Decimal
    equity: Decimal
    available: Decimal
    in_use: Decimal  # Smart Sync copies' funds, held apart from `balance`
    used_margin: Decimal
    today: Decimal  # today's PnL, as the daily loss limit measures it
    breached: str | None  # the rule it breached, or None
    daily_loss_limit: Decimal | None
    max_drawdown: Decimal | None
    connected: bool = True  # its broker (SPEC 9)


def in_use(engine: Engine, account: str) -> Decimal:
    """The funds of the account's Smart Sync copies still held apart from its balance:
    each copy's sub-account balance until the copy ends or its funds go back (SPEC 2, 5)."""
    return sum((engine.broker_of(c.sub).view(c.sub).balance
                for c in engine.state.copies.values()
                if c.account == account and not c.funds_returned
                and c.status is not CopyStatus.ENDED), ZERO)


def account_rows(engine: Engine) -> list[AccountRow]:
    rows = []
    for account in engine.state.accounts:
        broker = engine.broker_of(account)
        view = broker.view(account)
        rows.append(AccountRow(
            account=account, broker=view.broker, balance=view.balance, equity=view.equity,
            available=view.available, in_use=in_use(engine, account),
            used_margin=view.used_margin, today=broker.today_pnl(account),
            breached=view.breached, daily_loss_limit=view.risk.daily_loss_limit,
            max_drawdown=view.risk.max_drawdown, connected=broker.connected))
    return rows


# --- Smart Sync (SPEC 5): my copies, a copy's details, the Copy form's rules ----------------


@dataclass(frozen=True, slots=True)
class CopyRow:
    key: str  # "group/account"
    group: str
    account: str
    status: CopyStatus
    investment: Decimal
    equity: Decimal
    realized: Decimal  # fees included (SPEC 8)
    unrealized: Decimal
    stop_loss: Decimal | None
    on_stop: OnStop
    positions: int
    broker: str = ""  # the copy's sub-account's broker
    connected: bool = True  # that broker: while disconnected the copy's orders wait
    funds_returned: bool = False  # its funds went back to the account's balance

    @property
    def pnl(self) -> Decimal:
        return self.realized + self.unrealized

    @property
    def roi(self) -> Decimal | None:
        """The copy's return on its investment: (realized + unrealized) / investment."""
        return self.pnl / self.investment if self.investment else None


@dataclass(frozen=True, slots=True)
class CopyTotals:
    """My Copies' foot: the copies at work (not ended), summed; their ROI is the sum of
    their PnL over the sum of their investments."""

    copies: int
    investment: Decimal
    equity: Decimal
    pnl: Decimal

    @property
    def roi(self) -> Decimal | None:
        return self.pnl / self.investment if self.investment else None


def copy_totals(rows: list[CopyRow]) -> CopyTotals:
    working = [r for r in rows if r.status is not CopyStatus.ENDED]
    return CopyTotals(len(working), sum((r.investment for r in working), ZERO),
                      sum((r.equity for r in working), ZERO),
                      sum((r.pnl for r in working), ZERO))


@dataclass(frozen=True, slots=True)
class CopyPosition:
    symbol: str
    qty: Decimal  # signed
    avg_price: Decimal
    leverage: int | None
    margin_mode: str | None
    margin: Decimal
    unrealized: Decimal


@dataclass(frozen=True, slots=True)
class CopyFillRecord:
    at: datetime
    symbol: str
    side: str
    qty: Decimal
    price: Decimal
    realized: Decimal
    fee: Decimal
    cause: str


@dataclass(frozen=True, slots=True)
class InvestmentChange:
    at: datetime
    what: str  # "followed" | "raised" | "lowered" | "as found"
    investment: Decimal


@dataclass(frozen=True, slots=True)
class CopyDetail:
    row: CopyRow
    sub: str
    available: Decimal
    used_margin: Decimal
    copy_open_positions: bool
    positions: tuple[CopyPosition, ...]
    fills: tuple[CopyFillRecord, ...]
    investment_changes: tuple[InvestmentChange, ...]
    failures: tuple[Failure, ...]
    recorded_since: datetime  # fills and investment changes are kept from then on


class CopyJournal:
    """The history of each copy as observed from the engine's events, in memory.

    The engine keeps no fill or investment history of its own in memory, so this
    records what it publishes from the moment it is attached: Smart Sync fills and
    investment changes, keyed by the copy's sub-account (a new follow after an
    unfollow is a new copy). Copies found when it is attached get one "as found"
    entry with their investment at that moment."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.since = engine.clock.now()
        self.fills: dict[str, list[CopyFillRecord]] = {}
        self.investments: dict[str, list[InvestmentChange]] = {}
        for copy in engine.state.copies.values():
            if copy.status is not CopyStatus.ENDED:
                self.investments[copy.sub] = [
                    InvestmentChange(self.since, "as found", copy.investment)]
        self.unsubscribe = engine.subscribe(self.record)

    def record(self, event: EngineEvent) -> None:
        if isinstance(event, AccountFilled) and event.smart and event.group is not None:
            copy = self.engine.state.copies.get((event.group, event.account))
            if copy is not None:
                self.fills.setdefault(copy.sub, []).append(CopyFillRecord(
                    event.at, event.symbol, event.side.value, event.qty, event.price,
                    event.realized, event.fee, event.cause.value))
        elif isinstance(event, CopyChanged) and event.what in ("followed", "investment"):
            copy = self.engine.state.copies.get((event.group, event.account))
            if copy is None:
                return
            changes = self.investments.setdefault(copy.sub, [])
            if event.what == "followed":
                what = "followed"
            else:
                before = changes[-1].investment if changes else None
                what = "lowered" if before is not None and copy.investment < before else "raised"
            changes.append(InvestmentChange(self.engine.clock.now(), what, copy.investment))


_journals: WeakKeyDictionary[Engine, CopyJournal] = WeakKeyDictionary()


def copy_journal(engine: Engine) -> CopyJournal:
    """The engine's copy journal, attached on first use."""
    journal = _journals.get(engine)
    if journal is None:
        journal = _journals[engine] = CopyJournal(engine)
    return journal


def _copy_row(engine: Engine, copy: Copy) -> CopyRow:
    broker = engine.broker_of(copy.sub)
    view = broker.view(copy.sub)
    realized = view.realized - view.fees
    equity = copy.investment + realized if copy.funds_returned else view.equity
    unrealized = ZERO if copy.funds_returned else view.equity - view.balance
    return CopyRow(copy.key, copy.group, copy.account, copy.status, copy.investment, equity,
                   realized, unrealized, copy.stop_loss, copy.on_stop, len(view.positions),
                   broker.name, broker.connected, copy.funds_returned)


_STATUS_ORDER = {CopyStatus.ACTIVE: 0, CopyStatus.STOPPED: 1, CopyStatus.ENDED: 2}


def copy_rows(engine: Engine) -> list[CopyRow]:
    """Every copy: active ones first, then stopped, then ended; by group and account."""
    copies = sorted(engine.state.copies.values(),
                    key=lambda c: (_STATUS_ORDER[c.status], c.group, c.account))
    return [_copy_row(engine, c) for c in copies]


def copy_row(engine: Engine, group: str, account: str) -> CopyRow | None:
    copy = engine.state.copies.get((group, account))
    return _copy_row(engine, copy) if copy is not None else None


def copy_detail(engine: Engine, group: str, account: str) -> CopyDetail | None:
    copy = engine.state.copies.get((group, account))
    if copy is None:
        return None
    broker = engine.broker_of(copy.sub)
    view = broker.view(copy.sub)
    positions = tuple(
        CopyPosition(broker.symbols.catalog(p.symbol), p.qty, p.avg_price, p.leverage,
                     p.margin_mode.value if p.margin_mode is not None else None, p.margin,
                     p.unrealized)
        for p in view.positions)
    journal = copy_journal(engine)
    failures = tuple(f for f in engine.state.failures
                     if f.group == group and f.account == account)
    available = copy.investment + _copy_row(engine, copy).realized \
        if copy.funds_returned else view.available
    return CopyDetail(_copy_row(engine, copy), copy.sub, available, view.used_margin,
                      copy.copy_open_positions, positions,
                      tuple(journal.fills.get(copy.sub, ())),
                      tuple(journal.investments.get(copy.sub, ())), failures, journal.since)


@dataclass(frozen=True, slots=True)
class FollowAccount:
    account: str
    broker: str
    available: Decimal
    copies_already: bool  # an active or stopped copy of this group: a follow is refused
    cannot_trade: str | None = None  # what of the group its broker cannot trade (SPEC 9)


def copy_groups(engine: Engine) -> list[Group]:
    """The groups a copy can follow: those with a leader."""
    return [g for g in engine.state.groups.groups.values() if g.leader is not None]


def follow_accounts(engine: Engine, group: Group) -> list[FollowAccount]:
    """Accounts that may copy `group`: not its leader, not its ratio followers, not a
    copy's sub-account."""
    found = []
    for account in sorted(engine.state.accounts):
        if account == group.leader or account in group.followers or account in engine.state.subs:
            continue
        broker = engine.broker_of(account)
        existing = engine.state.copies.get((group.name, account))
        found.append(FollowAccount(account, broker.name, broker.available(account),
                                   existing is not None
                                   and existing.status is not CopyStatus.ENDED,
                                   cannot_trade(engine, group, account)))
    return found


def parse_amount(text: str) -> Decimal | None:
    """A typed amount ("1,000" allowed), or None when it is not a number within the
    bounds every number from outside must keep (`domain.numbers`)."""
    try:
        return bounded(text.strip().replace(",", "").replace("_", ""))
    except NumberError:
        return None


def investment_problem(text: str, low: Decimal, high: Decimal) -> str | None:
    """Why a typed investment cannot be used, in words; None when it can."""
    value = parse_amount(text)
    if value is None:
        return "The investment must be a number, like 1000."
    if value < low:
        return f"The investment must be at least {low.normalize():,f}."
    if value > high:
        return (f"The investment cannot exceed {max(high, ZERO).normalize():,f}, "
                "what the account has available.")
    return None


def follow_investment_bounds(engine: Engine, account: str) -> tuple[Decimal, Decimal]:
    """A new copy's investment: at least the minimum, at most the account's available."""
    return MIN_INVESTMENT, engine.broker_of(account).available(account)


def investment_bounds(engine: Engine, group: str, account: str) -> tuple[Decimal, Decimal]:
    """A copy's new investment (SPEC 5, 8): a raise comes from the account's available
    funds; a lowering never goes below the minimum nor what the copy's margin uses, and
    gives back at most what the copy has available."""
    copy = engine.state.copies[(group, account)]
    broker = engine.broker_of(copy.sub)
    spare = max(broker.available(copy.sub), ZERO)
    used = broker.view(copy.sub).used_margin
    low = max(MIN_INVESTMENT, copy.investment - spare, used)
    high = copy.investment + max(broker.available(account), ZERO)
    return low, high


def stop_loss_warning(stop_text: str, investment_text: str) -> str | None:
    """A valid stop loss that can never be hit: a total loss larger than the investment
    (the copy's funds run out first). Allowed, but said."""
    stop, investment = parse_amount(stop_text), parse_amount(investment_text)
    if stop is None or investment is None or stop <= investment:
        return None
    return (f"The stop loss ({stop.normalize():,f}) is above the investment "
            f"({investment.normalize():,f}): the copy's funds run out before it is hit.")


def follow_question(engine: Engine, group: str) -> str | None:
    """What following `group` does beyond the copy, to be confirmed first: following a
    paused group activates it, and with it its ratio followers (SPEC 5)."""
    found = engine.state.groups.groups.get(group)
    if found is None or found.status is not GroupStatus.PAUSED or engine.breached(found.leader):
        return None
    followers = len(found.followers)
    return (f"{group} is paused. Following it activates it: its leader's trades are "
            f"copied again, to this copy and to its {followers} ratio follower"
            f"{'s' if followers != 1 else ''}.")


def cross_exposure(engine: Engine, symbol: str, cross: str) -> Decimal:
    """How many times the exposure of `symbol` one contract of `cross` carries (MNQ to
    NQ: 10): the same quantity, multiplied by the ratio of their multipliers."""
    catalog = engine.catalog
    base = catalog.get(symbol).multiplier
    return catalog.get(cross).multiplier / base if base else Decimal(1)


def stop_loss_problem(text: str) -> str | None:
    """An optional total stop loss: empty for none, else a positive amount."""
    if not text.strip():
        return None
    value = parse_amount(text)
    if value is None:
        return "The stop loss must be a number, like 500, or empty for none."
    if value <= 0:
        return "The stop loss must be a positive amount (a total loss), or empty for none."
    if value >= LIMIT:
        return f"The stop loss must be below {LIMIT:,f}."
    return None
