"""Everything the engine itself knows, in one object.

Brokers keep their own state (money, positions, orders); the engine keeps
groups, which account is at which broker, the links between leader orders and
their mirrors, the failure log and the outbox of follower orders to send.
Every change goes through the methods here, which append it to `journal`
when a store listens, so a store persists every change through one place.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from synctui.brokers.base import OrderRequest
from synctui.brokers.events import Fill, OrderInfo
from synctui.domain.copies import Copy
from synctui.domain.frozen import quick_init
from synctui.domain.groups import GroupBook
from synctui.engine.events import Failure


@quick_init  # built by the thousand per fan-out
@dataclass(frozen=True, slots=True)
class Intent:
    """A follower order the engine decided to send (the outbox).

    `key` is the deterministic client order id; a retry reuses it, and the
    broker refuses a key it has seen, so a copy can never be sent twice.
    """

    key: str
    group: str
    follower: str
    symbol: str  # catalog symbol the follower trades
    request: OrderRequest
    mirror_of: str | None = None  # the leader working order it mirrors
    bracket_of: str | None = None  # the leader order whose brackets it carries
    at: datetime | None = None  # when the engine decided it: a waiting copy expires
    # when the leader event it copies happened, if earlier (it waited for a reconnect):
    # the copy's latency counts from there
    since: datetime | None = None


@dataclass(frozen=True, slots=True)
class Waiting:
    """Something for a follower at a disconnected broker (SPEC 9), done on reconnect,
    or behind its copies still on their way, done once they are in; in order: a leader
    fill to copy (`fill`, sized then, against the follower's position then), a leader
    order to mirror (`order`, sized then against the leader's position at its placement,
    `held`), or a group action or a mirror's modify or cancel that could not reach the
    broker. A fill or mirror older than its group's signal expiry fails `expired`."""

    key: str
    broker: str
    group: str
    account: str  # the follower, or a Smart Sync copy's sub-account
    action: str  # "fill" | "mirror" | "close_all" | "cancel_all" | "modify" | "cancel"
    at: datetime
    fill: Fill | None = None
    order_id: str | None = None
    price: Decimal | None = None
    # a mirror: the leader's order as placed, and the leader's position then
    order: OrderInfo | None = None
    held: Decimal | None = None


@dataclass(slots=True)
class EngineState:
    groups: GroupBook = field(default_factory=GroupBook)
    accounts: dict[str, str] = field(default_factory=dict)  # account -> broker name
    # leader order id -> follower -> the follower order ids mirroring it ([] = tried, failed)
    mirrors: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    # leader order id -> follower -> its orders copying it with the same brackets
    bracketed: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    # follower order id -> group name, for failures reported after placement
    copy_group: dict[str, str] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    intents: dict[str, Intent] = field(default_factory=dict)  # pending, in order
    inflight: dict[str, Intent] = field(default_factory=dict)  # submitted, not answered
    waiting: dict[str, Waiting] = field(default_factory=dict)  # for disconnected brokers
    # account -> how many of `waiting` are its: a leader fill asks for every follower
    # whether something waits for it, and a scan of them all per follower was quadratic
    # while a broker was down (a thousand followers, a thousand more kept per fill)
    waiting_for: dict[str, int] = field(default_factory=dict)
    copies: dict[tuple[str, str], Copy] = field(default_factory=dict)  # (group, account)
    subs: dict[str, tuple[str, str]] = field(default_factory=dict)  # sub-account -> copy key
    next_copy: int = 1
    resyncs: int = 0  # resyncs sent so far: each one's client ids are its own
    # (group, follower, traded symbol) -> did its latest copy go through? A UI hint only.
    last_result: dict[tuple[str, str, str], bool] = field(default_factory=dict)
    # Changes since the store last took them, in order, when a store listens.
    journal: list[tuple[str, Any]] | None = None

    def _log(self, kind: str, data: Any) -> None:
        if self.journal is not None:
            self.journal.append((kind, data))

    def touch(self, what: str) -> None:
        """Groups, accounts and copies are few: a store rewrites them whole when touched."""
        self._log(what, None)

    def start_mirror(self, leader_order: str, follower: str) -> None:
        """A mirror was tried: even if every order fails, that was its outcome."""
        self.mirrors.setdefault(leader_order, {}).setdefault(follower, [])
        self._log("mirror", (leader_order, follower, None))

    def link_mirror(self, leader_order: str, follower: str, order_id: str) -> None:
        self.mirrors.setdefault(leader_order, {}).setdefault(follower, []).append(order_id)
        self._log("mirror", (leader_order, follower, order_id))

    def link_copy(self, order_id: str, group: str) -> None:
        """Nothing to journal: the link is the intent's row in the database (its group,
        and the order id its outcome writes)."""
        self.copy_group[order_id] = group

    def mark_bracketed(self, leader_order: str, follower: str, order_id: str | None) -> None:
        """The follower's copy of a bracketed leader entry: its order, or (None) a copy
        that failed. Either way the leader's exits of that entry are not copied to it
        again (SPEC 8: a bracket leg belongs to its entry)."""
        ids = self.bracketed.setdefault(leader_order, {}).setdefault(follower, [])
        if order_id is not None:
            ids.append(order_id)
        self._log("bracketed", (leader_order, follower, order_id))

    def add_failure(self, failure: Failure) -> None:
        self.failures.append(failure)
        self.last_result[(failure.group, failure.account, failure.symbol)] = False
        self._log("failure", failure)

    def add_intent(self, intent: Intent) -> None:
        self.intents[intent.key] = intent
        self._log("intent", intent)

    def submit_intent(self, intent: Intent) -> None:
        """Handed to its broker, not answered yet: never sent again, only asked about."""
        self.intents.pop(intent.key, None)
        self.inflight[intent.key] = intent
        self._log("intent_submitted", intent.key)

    def finish_intent(self, key: str, order_id: str | None) -> None:
        self.intents.pop(key, None)
        self.inflight.pop(key, None)
        self._log("intent_done", (key, order_id))

    def add_waiting(self, item: Waiting) -> None:
        """Keep `item`, after what is kept already (`waiting` is in order)."""
        if item.key not in self.waiting:
            self.waiting_for[item.account] = self.waiting_for.get(item.account, 0) + 1
        self.waiting[item.key] = item
        self._log("waiting", item)

    def finish_waiting(self, key: str) -> None:
        item = self.waiting.pop(key, None)
        if item is not None:
            left = self.waiting_for[item.account] - 1
            if left:
                self.waiting_for[item.account] = left
            else:
                del self.waiting_for[item.account]
        self._log("waiting_done", key)

    def put_copy(self, copy: Copy) -> None:
        self.copies[(copy.group, copy.account)] = copy
        self.subs[copy.sub] = (copy.group, copy.account)
        self._log("copies", None)

    def copy_of_sub(self, sub: str) -> Copy | None:
        key = self.subs.get(sub)
        return self.copies.get(key) if key else None

    def take_journal(self) -> list[tuple[str, Any]]:
        taken = self.journal or []
        self.journal = [] if self.journal is not None else None
        return taken

    def snapshot(self) -> EngineState:
        """A deep copy: what a restart rebuilds from until the store lands."""
        clone = copy.deepcopy(self)
        clone.journal = None
        return clone
