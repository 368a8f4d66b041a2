"""A simulated broker's ledger: the money of its accounts (SPEC 2, 3, 8).

Balance, positions, leverage and margin-mode settings, margin, equity, what is
available, whether an order is affordable, the bookkeeping of a fill, the
leverage and margin rules, which positions a price liquidates and what the risk
rules observe.

It is apart from the venue (`sim.SimBroker`: events, connection, the Broker API)
and from the matching (`matching.OrderBook`: working orders), as a backtester's
account is apart from its matching engine (STYLE.md, "Matching apart from the
venue"): the money rules can be tested without orders, events or a connection,
and the venue decides what to report about what the ledger did. So the ledger
emits nothing, keeps no orders and knows no broker naming: it speaks catalog
symbols and answers questions; it raises `Refused`/`OrderRejected` where a rule
refuses.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

from synctui.domain.errors import OrderRejected, Refused, RejectReason
from synctui.domain.groups import whole_number
from synctui.domain.instruments import Catalog, Instrument
from synctui.domain.margin import isolated_liquidated, maintenance_margin, order_margin
from synctui.domain.orders import MarginMode, Side
from synctui.domain.position import FillOutcome, apply_fill, split_fill, unrealized_pnl
from synctui.domain.prices import PriceBook
from synctui.domain.risk import RiskLimits, RiskState

if TYPE_CHECKING:
    from synctui.brokers.matching import SimOrder

ZERO = Decimal(0)
DEFAULT_LEVERAGE = 10
DEFAULT_SETTING = (DEFAULT_LEVERAGE, MarginMode.CROSS)
NOTHING: Sequence[str] = ()


@dataclass(slots=True)
class SimPosition:
    symbol: str
    qty: Decimal  # signed
    avg: Decimal
    margin: Decimal = ZERO  # isolated perps only: the margin set aside for it
    seq: int = 0  # opening order, so a restored account lists positions as before


@dataclass(slots=True)
class SimAccount:
    id: str
    balance: Decimal
    risk: RiskLimits
    risk_state: RiskState
    positions: dict[str, SimPosition] = field(default_factory=dict)
    settings: dict[str, tuple[int, MarginMode]] = field(default_factory=dict)
    # its working orders: the matching book's own index of them (`OrderBook.of`), kept
    # here so that an account's state reads whole; the ledger never looks at them
    orders: dict[str, SimOrder] = field(default_factory=dict)
    breached: str | None = None
    realized: Decimal = ZERO
    fees: Decimal = ZERO


class Ledger:
    """The accounts of one broker and the rules of their money. Prices come from a
    shared `PriceBook`; every fill costs `fee_per_contract` per contract."""

    def __init__(self, catalog: Catalog, prices: PriceBook,
                 fee_per_contract: Decimal = ZERO) -> None:
        self.catalog = catalog
        self.prices = prices
        self.fee_per_contract = fee_per_contract
        self.accounts: dict[str, SimAccount] = {}

    # --- accounts -------------------------------------------------------------

    def open(self, account: str, balance: Decimal, risk: RiskLimits) -> SimAccount:
        acct = self.accounts[account] = SimAccount(
            id=account, balance=balance, risk=risk, risk_state=RiskState(balance, balance))
        return acct

    @staticmethod
    def fund(acct: SimAccount, amount: Decimal) -> None:
        """Move funds in (+) or out (-) of the balance; not profit, so risk shifts too."""
        acct.balance += amount
        acct.risk_state.shift(amount)

    # --- what an account has ----------------------------------------------------

    @staticmethod
    def setting(acct: SimAccount, symbol: str) -> tuple[int, MarginMode]:
        """The leverage and margin mode of a (catalog) symbol: 10x cross unless set."""
        return acct.settings.get(symbol, DEFAULT_SETTING)

    def position_margin(self, acct: SimAccount, pos: SimPosition, inst: Instrument,
                        price: Decimal) -> Decimal:
        if inst.is_future:
            return abs(pos.qty) * inst.margin_per_contract
        leverage, mode = self.setting(acct, pos.symbol)
        if mode is MarginMode.ISOLATED:
            return pos.margin
        return abs(pos.qty) * price / leverage

    def equity(self, acct: SimAccount) -> Decimal:
        equity = acct.balance
        for pos in acct.positions.values():
            inst = self.catalog.get(pos.symbol)
            equity += unrealized_pnl(pos.qty, pos.avg, self.prices.get(pos.symbol), inst.multiplier)
        return equity

    def used_margin(self, acct: SimAccount) -> Decimal:
        used = ZERO
        for pos in acct.positions.values():
            inst = self.catalog.get(pos.symbol)
            used += self.position_margin(acct, pos, inst, self.prices.get(pos.symbol))
        return used

    def available(self, acct: SimAccount) -> Decimal:
        """Equity minus used margin, in one pass over the positions (every order's margin
        check asks): the same sums, in the same order, as `equity` and `used_margin`."""
        equity, used = acct.balance, ZERO
        for pos in acct.positions.values():
            inst = self.catalog.get(pos.symbol)
            price = self.prices.get(pos.symbol)
            equity += unrealized_pnl(pos.qty, pos.avg, price, inst.multiplier)
            used += self.position_margin(acct, pos, inst, price)
        return equity - used

    def today_pnl(self, acct: SimAccount) -> Decimal:
        """Today's PnL as the daily loss limit measures it (SPEC 3): equity minus the
        day's starting equity, which a breach reset restarts and funding moves shift."""
        return self.equity(acct) - acct.risk_state.day_start

    def margin_level(self, acct: SimAccount, inst: Instrument) -> Decimal | None:
        """(position margin + uPnL) / maintenance margin of a perp position."""
        pos = acct.positions.get(inst.symbol)
        if pos is None or inst.is_future or inst.mmr == 0:
            return None
        price = self.prices.get(inst.symbol)
        maintenance = maintenance_margin(inst, pos.qty, price)
        upnl = unrealized_pnl(pos.qty, pos.avg, price, inst.multiplier)
        return (self.position_margin(acct, pos, inst, price) + upnl) / maintenance

    def isolated_floor(self, acct: SimAccount, inst: Instrument) -> Decimal:
        """The least margin an isolated position may keep: qty x avg / leverage (SPEC 8)."""
        pos = acct.positions.get(inst.symbol)
        if pos is None:
            return ZERO
        return abs(pos.qty) * pos.avg / self.setting(acct, inst.symbol)[0]

    @staticmethod
    def reducible(acct: SimAccount, symbol: str, side: Side) -> Decimal:
        """How much of the position a `side` order can reduce: zero when there is none
        or it is on the same side."""
        pos = acct.positions.get(symbol)
        if pos is None or (pos.qty > 0) == (side is Side.BUY):
            return ZERO
        return abs(pos.qty)

    # --- fills ------------------------------------------------------------------

    def check_affordable(self, acct: SimAccount, inst: Instrument, side: Side, qty: Decimal,
                         price: Decimal) -> None:
        """Refuse (`INSUFFICIENT_MARGIN`) a fill of `qty` at `price` whose opened part
        needs more margin than is available, counting the margin a full close frees."""
        pos = acct.positions.get(inst.symbol)
        held = pos.qty if pos else ZERO
        closed, opened = split_fill(held, side.signed(qty))
        if not opened:
            return
        leverage, _mode = self.setting(acct, inst.symbol)
        need = order_margin(inst, opened, price, leverage)
        freed = ZERO
        if pos is not None and closed >= abs(held):
            freed = self.position_margin(acct, pos, inst, self.prices.get(inst.symbol))
        available = self.available(acct) + freed
        if need > available:
            raise OrderRejected(
                RejectReason.INSUFFICIENT_MARGIN,
                f"{opened} {inst.symbol} needs {need.normalize():f} margin; "
                f"account {acct.id!r} has {available.normalize():f} available",
            )

    def fee(self, qty: Decimal) -> Decimal:
        return qty * self.fee_per_contract

    def apply_fill(self, acct: SimAccount, inst: Instrument, side: Side, qty: Decimal,
                   price: Decimal, fee: Decimal, seq: int) -> FillOutcome:
        """Book a fill (margin already checked): balance, realized PnL and fees, and
        the position with its isolated margin (`seq` orders a new position). Returns
        the outcome the venue reports; position before, equity before and the
        setting are read by the venue beforehand."""
        symbol = inst.symbol
        pos = acct.positions.get(symbol)
        held = pos.qty if pos else ZERO
        avg = pos.avg if pos else ZERO
        outcome = apply_fill(held, avg, side.signed(qty), price, inst.multiplier)
        acct.balance += outcome.realized - fee
        acct.realized += outcome.realized
        acct.fees += fee
        if outcome.qty == 0:
            acct.positions.pop(symbol, None)
        else:
            margin = ZERO
            if not inst.is_future:
                leverage, mode = acct.settings.get(symbol, DEFAULT_SETTING)
                if mode is MarginMode.ISOLATED:
                    if pos is None or outcome.closed >= abs(held):
                        margin = outcome.opened * price / leverage
                    elif outcome.opened:
                        margin = pos.margin + outcome.opened * price / leverage
                    else:
                        margin = pos.margin * abs(outcome.qty) / abs(held)
            if pos is None:
                acct.positions[symbol] = SimPosition(symbol, outcome.qty, outcome.avg_price,
                                                     margin, seq=seq)
            else:
                pos.qty, pos.avg, pos.margin = outcome.qty, outcome.avg_price, margin
        return outcome

    # --- leverage and margin ------------------------------------------------------

    def set_leverage(self, acct: SimAccount, inst: Instrument,
                     leverage: Decimal | int) -> int | None:
        """Set a perp's leverage; an open position's margin follows (refused when the
        account cannot afford more). Returns the new leverage when it changed."""
        if inst.is_future:
            raise Refused(f"{inst.symbol} is a future: futures have no leverage setting")
        value = whole_number(leverage, "leverage", 1, inst.max_leverage)
        current, mode = self.setting(acct, inst.symbol)
        pos = acct.positions.get(inst.symbol)
        if pos is not None and value != current:
            price = self.prices.get(inst.symbol)
            if mode is MarginMode.ISOLATED:
                old, new = pos.margin, abs(pos.qty) * pos.avg / value
            else:
                old = abs(pos.qty) * price / current
                new = abs(pos.qty) * price / value
            if new - old > self.available(acct):
                raise OrderRejected(
                    RejectReason.INSUFFICIENT_MARGIN,
                    f"leverage {value} needs {(new - old).normalize():f} more margin than "
                    f"account {acct.id!r} has available")
            if mode is MarginMode.ISOLATED:
                pos.margin = new
        acct.settings[inst.symbol] = (value, mode)
        return value if value != current else None

    def set_margin_mode(self, acct: SimAccount, inst: Instrument, mode: MarginMode) -> bool:
        """Set a perp's margin mode, refused while a position is open. Whether it changed."""
        if inst.is_future:
            raise Refused(f"{inst.symbol} is a future: futures have no margin mode")
        leverage, current = self.setting(acct, inst.symbol)
        if current is mode:
            return False
        if inst.symbol in acct.positions:
            raise Refused(f"close the {inst.symbol} position before changing its margin mode")
        acct.settings[inst.symbol] = (leverage, mode)
        return True

    def adjust_margin(self, acct: SimAccount, inst: Instrument, amount: Decimal) -> Decimal:
        """Add to (+) or take from (-) an isolated position's margin, never below its
        floor. Returns the margin before."""
        pos = acct.positions.get(inst.symbol)
        leverage, mode = self.setting(acct, inst.symbol)
        if inst.is_future or pos is None or mode is not MarginMode.ISOLATED:
            raise Refused(f"margin can only be adjusted on an open isolated {inst.symbol} position")
        if amount == 0:
            raise Refused("the margin adjustment must not be zero")
        if amount > 0 and amount > self.available(acct):
            raise OrderRejected(RejectReason.INSUFFICIENT_MARGIN,
                                f"account {acct.id!r} has less than {amount} available")
        floor = abs(pos.qty) * pos.avg / leverage
        if amount < 0 and pos.margin + amount < floor:
            raise Refused(f"margin cannot go below {floor.normalize():f} "
                          f"(quantity x average price / leverage)")
        before = pos.margin
        pos.margin += amount
        return before

    # --- liquidation and risk ---------------------------------------------------------

    def _in_family(self, symbol: str, family: str) -> bool:
        return self.catalog.get(symbol).family == family

    def holders(self, family: str) -> Iterator[SimAccount]:
        """The accounts holding a position in the family, asked one at a time (what was
        done to one account before the next is asked about counts)."""
        for acct in list(self.accounts.values()):
            if any(self._in_family(s, family) for s in acct.positions):
                yield acct

    def isolated_liquidations(self, acct: SimAccount, family: str) -> list[str]:
        """The family's isolated perp positions whose margin + uPnL no longer covers
        their maintenance margin at the current price."""
        liquidated = []
        for pos in acct.positions.values():
            inst = self.catalog.get(pos.symbol)
            if inst.is_future or inst.family != family:
                continue
            _lev, mode = self.setting(acct, pos.symbol)
            if mode is MarginMode.ISOLATED and isolated_liquidated(
                    inst, pos.qty, pos.avg, pos.margin, self.prices.get(pos.symbol)):
                liquidated.append(pos.symbol)
        return liquidated

    def cross_liquidation(self, acct: SimAccount) -> Sequence[str]:
        """Every cross perp position, when the account's equity no longer covers their
        maintenance margin; nothing otherwise."""
        cross = [p for p in acct.positions.values()
                 if not self.catalog.get(p.symbol).is_future
                 and self.setting(acct, p.symbol)[1] is MarginMode.CROSS]
        if not cross:
            return NOTHING
        maintenance = sum(
            (maintenance_margin(self.catalog.get(p.symbol), p.qty, self.prices.get(p.symbol))
             for p in cross), ZERO)
        if self.equity(acct) <= maintenance:
            return [p.symbol for p in cross]
        return NOTHING

    @staticmethod
    def watched(acct: SimAccount) -> bool:
        """Whether the risk rules still watch the account: it has some, not yet breached."""
        return acct.risk.any and not acct.breached

    def observe_risk(self, acct: SimAccount) -> str | None:
        """Let the risk rules observe the account's equity (the trailing peak moves);
        the rule breached, if any, is recorded on the account and returned."""
        rule = acct.risk_state.observe(self.equity(acct), acct.risk)
        if rule is not None:
            acct.breached = rule
        return rule

    def reset_breach(self, acct: SimAccount) -> None:
        """A new trading day from the current equity (SPEC 3)."""
        if acct.breached is None:
            raise Refused(f"account {acct.id!r} is not breached")
        acct.breached = None
        acct.risk_state.reset(self.equity(acct))
