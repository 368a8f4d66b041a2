"""Copy groups and their rules (SPEC 4): statuses, the one-role rule and
per-follower, per-contract settings. Pure: the engine applies these."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from synctui.domain.errors import Refused
from synctui.domain.instruments import Catalog

MIN_RATIO = 1
MAX_RATIO = 10


class GroupStatus(StrEnum):
    NOT_CONFIGURED = "not_configured"
    ACTIVE = "active"
    PAUSED = "paused"


class PauseReason(StrEnum):
    PAUSED = "paused"
    NO_FOLLOWERS = "no_followers"
    LEADER_ASSIGNED = "leader_assigned"
    EMERGENCY_STOP = "emergency_stop"
    LEADER_BREACHED = "leader_breached"


REASON_WORDS: dict[PauseReason, str] = {
    PauseReason.PAUSED: "paused by hand",
    PauseReason.NO_FOLLOWERS: "its last follower left",
    PauseReason.LEADER_ASSIGNED: "a leader was assigned: activate to copy",
    PauseReason.EMERGENCY_STOP: "emergency stop",
    PauseReason.LEADER_BREACHED: "the leader breached a risk limit",
}


@dataclass(slots=True)
class ContractSetting:
    """A follower's setting for one of the leader's contracts."""

    ratio: int = 1
    sync: bool = True
    cross: str | None = None


DEFAULT_SETTING = ContractSetting()


@dataclass(slots=True)
class Group:
    name: str
    leader: str | None = None
    followers: list[str] = field(default_factory=list)
    status: GroupStatus = GroupStatus.NOT_CONFIGURED
    reason: PauseReason | None = None
    # seconds a copy may wait for a disconnected broker before it fails `expired` (SPEC 9)
    signal_expiry: Decimal | None = None
    # (follower, leader symbol) -> setting; absent means the default.
    settings: dict[tuple[str, str], ContractSetting] = field(default_factory=dict)
    # Smart Sync copies that have not ended count as followers (SPEC 4).
    copies: set[str] = field(default_factory=set)

    def setting(self, follower: str, symbol: str) -> ContractSetting:
        return self.settings.get((follower, symbol), DEFAULT_SETTING)

    def traded_symbol(self, follower: str, symbol: str) -> str:
        """The symbol a follower trades for a leader contract (its cross, or the same)."""
        return self.setting(follower, symbol).cross or symbol

    @property
    def follower_count(self) -> int:
        return len(self.followers) + len(self.copies)

    def _set_status(self, status: GroupStatus, reason: PauseReason | None = None) -> None:
        self.status = status
        self.reason = reason if status is GroupStatus.PAUSED else None


def whole_number(value: Decimal | int, what: str, low: int, high: int) -> int:
    """Ratios and leverages are whole numbers in a range (SPEC 8)."""
    number = Decimal(value)
    if number != number.to_integral_value() or not low <= number <= high:
        raise Refused(f"{what} must be a whole number from {low} to {high}")
    return int(number)


class GroupBook:
    """Every group, and the index that enforces one role per account."""

    def __init__(self) -> None:
        self.groups: dict[str, Group] = {}

    def get(self, name: str) -> Group:
        try:
            return self.groups[name]
        except KeyError:
            raise Refused(f"there is no group named {name!r}") from None

    def role_of(self, account: str) -> tuple[str, str] | None:
        """(group, "leader" | "follower") for a ratio-mode role, if the account has one."""
        for group in self.groups.values():
            if group.leader == account:
                return group.name, "leader"
            if account in group.followers:
                return group.name, "follower"
        return None

    def group_led_by(self, account: str) -> Group | None:
        for group in self.groups.values():
            if group.leader == account:
                return group
        return None

    def _check_free(self, account: str, allow_group: str | None = None) -> None:
        role = self.role_of(account)
        if role is not None and role[0] != allow_group:
            raise Refused(
                f"account {account!r} is already the {role[1]} of group {role[0]!r}; "
                "an account holds one role in one group"
            )

    # --- lifecycle ---------------------------------------------------------

    def create(self, name: str, leader: str | None, followers: Iterable[str],
               leader_breached: bool) -> Group:
        if not name or not name.strip():
            raise Refused("a group needs a name")
        if name in self.groups:
            raise Refused(f"a group named {name!r} already exists")
        followers = list(followers)
        self._check_accounts(leader, followers)
        group = Group(name=name)
        if leader is not None:
            group.leader = leader
            group.followers = followers
            if leader_breached:
                group._set_status(GroupStatus.PAUSED, PauseReason.LEADER_BREACHED)
            else:
                group._set_status(GroupStatus.ACTIVE)
        else:
            group.followers = followers
        self.groups[name] = group
        return group

    def _check_accounts(self, leader: str | None, followers: list[str],
                        group: str | None = None) -> None:
        if len(set(followers)) != len(followers):
            raise Refused("an account is listed twice among the followers")
        if leader is not None:
            if leader in followers:
                raise Refused(f"account {leader!r} cannot lead and follow the same group")
            self._check_free(leader, group)
        for account in followers:
            self._check_free(account, group)

    def set_leader(self, name: str, account: str, leader_breached: bool) -> None:
        group = self.get(name)
        if group.leader == account:
            return  # assigning the same leader again is a no-op (SPEC 8)
        if account in group.followers:
            raise Refused(f"account {account!r} follows group {name!r} and cannot lead it")
        if account in group.copies:
            raise Refused(f"account {account!r} copies group {name!r} and cannot lead it")
        self._check_free(account)
        was = group.status
        group.leader = account
        if leader_breached:
            group._set_status(GroupStatus.PAUSED, PauseReason.LEADER_BREACHED)
        elif was is GroupStatus.NOT_CONFIGURED or group.reason is PauseReason.LEADER_BREACHED:
            group._set_status(GroupStatus.PAUSED, PauseReason.LEADER_ASSIGNED)
        # an active group stays active; a paused one stays paused

    def remove_leader(self, name: str) -> None:
        group = self.get(name)
        if group.leader is None:
            raise Refused(f"group {name!r} has no leader")
        group.leader = None
        group._set_status(GroupStatus.NOT_CONFIGURED)

    def add_followers(self, name: str, accounts: list[str], leader_breached: bool) -> None:
        group = self.get(name)
        if not accounts:
            raise Refused("no accounts to add")
        for account in accounts:
            if account in group.followers:
                raise Refused(f"account {account!r} already follows group {name!r}")
            if account in group.copies:
                raise Refused(f"account {account!r} already copies group {name!r} in Smart Sync")
        self._check_accounts(group.leader, accounts, group=name)
        group.followers.extend(accounts)
        self.on_follower_added(group, leader_breached)

    def on_follower_added(self, group: Group, leader_breached: bool) -> None:
        """A new follower re-activates a paused group, whatever paused it (SPEC 4)."""
        if group.status is GroupStatus.PAUSED and not leader_breached:
            group._set_status(GroupStatus.ACTIVE)

    def remove_followers(self, name: str, accounts: list[str]) -> None:
        group = self.get(name)
        if not accounts:
            raise Refused("no accounts to remove")
        if len(set(accounts)) != len(accounts):
            raise Refused("an account is listed twice")
        for account in accounts:
            if account not in group.followers:
                raise Refused(f"account {account!r} does not follow group {name!r}")
        for account in accounts:
            group.followers.remove(account)
            for key in [k for k in group.settings if k[0] == account]:
                del group.settings[key]
        self.on_follower_removed(group)

    def on_follower_removed(self, group: Group) -> None:
        """Removing the last follower of an active group pauses it (SPEC 4)."""
        if group.status is GroupStatus.ACTIVE and group.follower_count == 0:
            group._set_status(GroupStatus.PAUSED, PauseReason.NO_FOLLOWERS)

    def activate(self, name: str, leader_breached: bool) -> None:
        group = self.get(name)
        if group.leader is None:
            raise Refused(f"group {name!r} has no leader: assign one before activating")
        if group.status is GroupStatus.ACTIVE:
            return
        if leader_breached:
            raise Refused(
                f"the leader of group {name!r} has breached a risk limit: "
                "reset the breach or change the leader first"
            )
        group._set_status(GroupStatus.ACTIVE)

    def pause(self, name: str, reason: PauseReason = PauseReason.PAUSED) -> None:
        group = self.get(name)
        if group.leader is None:
            raise Refused(f"group {name!r} has no leader, so there is nothing to pause")
        if group.status is GroupStatus.PAUSED:
            if reason is PauseReason.LEADER_BREACHED:
                group.reason = reason
            return
        group._set_status(GroupStatus.PAUSED, reason)

    # --- per-follower, per-contract settings -------------------------------

    def _follower(self, name: str, follower: str, symbol: str, catalog: Catalog) -> Group:
        group = self.get(name)
        catalog.get(symbol)
        if follower not in group.followers:
            raise Refused(f"account {follower!r} does not follow group {name!r}")
        return group

    def _edit(self, group: Group, follower: str, symbol: str) -> ContractSetting:
        current = group.settings.get((follower, symbol))
        if current is None:
            current = group.settings[(follower, symbol)] = ContractSetting()
        return current

    def set_ratio(self, name: str, follower: str, symbol: str, ratio: Decimal | int,
                  catalog: Catalog) -> None:
        group = self._follower(name, follower, symbol, catalog)
        value = whole_number(ratio, "ratio", MIN_RATIO, MAX_RATIO)
        self._edit(group, follower, symbol).ratio = value

    def set_sync(self, name: str, follower: str | None, symbol: str, on: bool,
                 catalog: Catalog) -> None:
        """One follower's toggle, or the master toggle writing into every follower."""
        if follower is None:
            group = self.get(name)
            catalog.get(symbol)
            for account in group.followers:
                self._edit(group, account, symbol).sync = on
            return
        group = self._follower(name, follower, symbol, catalog)
        self._edit(group, follower, symbol).sync = on

    def set_cross(self, name: str, follower: str, symbol: str, to: str | None,
                  catalog: Catalog, holds_traded: bool) -> None:
        """Cross within a family only, and never while the traded symbol is held (SPEC 4, 8)."""
        group = self._follower(name, follower, symbol, catalog)
        leader_instrument = catalog.get(symbol)
        target = None if to is None or to == symbol else to
        if target is not None:
            instrument = catalog.get(target)
            if instrument.family != leader_instrument.family:
                raise Refused(
                    f"cannot cross {symbol} to {target}: a cross must stay in the "
                    f"{leader_instrument.family} family"
                )
        if group.setting(follower, symbol).cross == target:
            return
        if holds_traded:
            traded = group.traded_symbol(follower, symbol)
            raise Refused(
                f"account {follower!r} holds a position or working order in {traded}: "
                "flatten it before changing the cross"
            )
        self._edit(group, follower, symbol).cross = target


# --- staged edits (SPEC 4: group edits in the UI are staged until Save) -------------


@dataclass(frozen=True, slots=True)
class SetLeader:
    account: str

    def describe(self) -> str:
        return f"leader -> {self.account}"


@dataclass(frozen=True, slots=True)
class RemoveLeader:
    def describe(self) -> str:
        return "remove the leader"


@dataclass(frozen=True, slots=True)
class AddFollowers:
    accounts: tuple[str, ...]

    def describe(self) -> str:
        return f"add {', '.join(self.accounts)}"


@dataclass(frozen=True, slots=True)
class RemoveFollowers:
    accounts: tuple[str, ...]

    def describe(self) -> str:
        return f"remove {', '.join(self.accounts)}"


@dataclass(frozen=True, slots=True)
class SetActive:
    active: bool

    def describe(self) -> str:
        return "activate" if self.active else "pause"


GroupEdit = SetLeader | RemoveLeader | AddFollowers | RemoveFollowers | SetActive
