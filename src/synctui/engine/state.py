"""Everything the engine itself knows, in one object.

Brokers keep their own state (money, positions, orders); the engine keeps
groups, which account is at which broker, the links between leader orders and
their mirrors, and the failure log. Every change to it goes through the
methods here, each of which notes what changed in `dirty`, so a store can
persist changes through one place.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from synctui.domain.groups import GroupBook
from synctui.engine.events import Failure


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
    dirty: set[str] = field(default_factory=set)

    def touch(self, what: str) -> None:
        self.dirty.add(what)

    def link_mirror(self, leader_order: str, follower: str, order_ids: list[str]) -> None:
        self.mirrors.setdefault(leader_order, {})[follower] = order_ids
        self.touch("mirrors")

    def link_copy(self, order_id: str, group: str) -> None:
        self.copy_group[order_id] = group
        self.touch("copy_group")

    def mark_bracketed(self, leader_order: str, follower: str, order_id: str) -> None:
        self.bracketed.setdefault(leader_order, {}).setdefault(follower, []).append(order_id)
        self.touch("bracketed")

    def add_failure(self, failure: Failure) -> None:
        self.failures.append(failure)
        self.touch("failures")

    def snapshot(self) -> EngineState:
        """A deep copy: what a restart rebuilds from until the store lands."""
        clone = copy.deepcopy(self)
        clone.dirty = set()
        return clone
