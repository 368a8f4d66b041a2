"""Expected against actual follower positions (SPEC 9, reconciliation).

A ratio follower synced for a contract of an active group with a leader is
expected to hold ratio x the leader's position in it, through its cross,
signed (long positive). Positions come in as plain numbers, so the rule is
pure; the engine reads them from the brokers and acts on the differences.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from synctui.domain.groups import Group
from synctui.domain.instruments import Catalog

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Drift:
    """A follower that does not hold what it should for a contract."""

    group: str
    account: str
    symbol: str  # the leader's contract (the first in catalog order when several map)
    traded: str  # the symbol the follower trades for it
    expected: Decimal  # signed
    actual: Decimal  # signed

    @property
    def difference(self) -> Decimal:
        """What the follower must trade to be in sync (signed)."""
        return self.expected - self.actual


def expectations(group: Group, follower: str, leader: Mapping[str, Decimal],
                 held: Mapping[str, Decimal], catalog: Catalog
                 ) -> dict[str, tuple[str, Decimal]]:
    """traded symbol -> (the first leader contract mapping to it, expected position).

    `leader` and `held` are signed positions by catalog symbol (the leader's, and
    the follower's own). A traded symbol that two synced contracts map to expects
    their sum. Contracts are every one the leader holds, and every one whose
    traded symbol the follower holds (expecting 0 when the leader holds none)."""
    order = {inst.symbol: index for index, inst in enumerate(catalog)}
    contracts = set(leader)
    for symbol in held:
        contracts.update(c for c in _mapping_to(group, follower, symbol, catalog))
    result: dict[str, tuple[str, Decimal]] = {}
    for contract in sorted(contracts, key=lambda s: (order.get(s, len(order)), s)):
        setting = group.setting(follower, contract)
        if not setting.sync:
            continue
        traded = setting.cross or contract
        want = setting.ratio * leader.get(contract, ZERO)
        first, total = result.get(traded, (contract, ZERO))
        result[traded] = (first, total + want)
    return result


def _mapping_to(group: Group, follower: str, traded: str, catalog: Catalog) -> list[str]:
    """The leader contracts whose traded symbol (for this follower) is `traded`."""
    family = catalog.get(traded).family
    return [inst.symbol for inst in catalog.family(family)
            if group.traded_symbol(follower, inst.symbol) == traded]


def drifts_of(group: Group, follower: str, leader: Mapping[str, Decimal],
              held: Mapping[str, Decimal], catalog: Catalog) -> list[Drift]:
    """The follower's contracts out of sync, in catalog order."""
    return [Drift(group.name, follower, contract, traded, want, held.get(traded, ZERO))
            for traded, (contract, want) in expectations(group, follower, leader, held,
                                                         catalog).items()
            if held.get(traded, ZERO) != want]
