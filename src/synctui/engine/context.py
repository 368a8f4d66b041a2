"""What a copy mode may use of the engine: the seam between the engine and the
rules of each copy mode (SPEC 4 ratio copying, SPEC 5 Smart Sync).

NautilusTrader's `OrderManager` receives its submit, cancel and modify
handlers instead of reaching into a host; a copy mode here likewise gets a
`CopyContext` and nothing else. import-linter forbids `engine.ratio` and
`engine.smart_sync` importing `engine.engine`, so a mode that needs more
than this says so here, in the open.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from synctui.brokers.base import Broker, OrderRequest
from synctui.brokers.events import Fill, OrderInfo
from synctui.domain.clock import Clock
from synctui.domain.errors import RejectReason
from synctui.domain.instruments import Catalog
from synctui.domain.prices import PriceBook
from synctui.engine.events import EngineEvent
from synctui.engine.state import EngineState


class CopyContext(Protocol):
    """State, catalog, prices and clock to read; intents to send; failures to record;
    events to publish. The engine is one; a test may bring another."""

    @property
    def state(self) -> EngineState: ...
    @property
    def catalog(self) -> Catalog: ...
    @property
    def prices(self) -> PriceBook: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def brokers(self) -> Mapping[str, Broker]: ...

    def broker_of(self, account: str) -> Broker:
        """The broker of an account, or of a Smart Sync copy's sub-account."""
    def owner(self, account: str) -> str:
        """The account a sub-account belongs to (itself for an account)."""
    def native(self, broker: Broker, symbol: str) -> str:
        """A catalog symbol in the broker's own naming."""
    def key(self, *parts: str) -> str:
        """A deterministic client order id for these parts."""
    def breached(self, account: str | None) -> bool: ...

    def command(self, cause: str | None = None) -> AbstractContextManager[None]:
        """Run a command: afterwards the brokers' reports are handled and group status
        changes published, with `cause`."""
    def send(self, group: str, follower: str, symbol: str, request: OrderRequest,
             mirror_of: str | None = None, bracket_of: str | None = None,
             at: datetime | None = None) -> None:
        """Queue a follower (or copy) order as an intent, decided `at` (now unless
        told): the outbox sends it."""
    def fail(self, group: str, account: str, symbol: str, reason: RejectReason,
             message: str, bracket_of: str | None = None) -> None:
        """Record a copy's failure (and, for a bracketed entry, that its exits are not
        copied to that follower either)."""
    def unsupported(self, group: str, follower: str, broker: Broker, symbol: str,
                    bracket_of: str | None = None) -> None:
        """A copy for a market the follower's broker does not trade: not sent."""
    def publish(self, event: EngineEvent) -> None: ...

    def behind(self, account: str) -> bool:
        """Something is kept for the account (`wait`): what comes after it waits too."""
    def connected(self, account: str) -> bool:
        """Whether the account's broker is reachable now (SPEC 9)."""
    def wait(self, group: str, account: str, action: str, fill: Fill | None = None,
             order_id: str | None = None, price: Decimal | None = None,
             order: OrderInfo | None = None, held: Decimal | None = None) -> None:
        """Keep something for a follower at a disconnected broker (for its reconnect),
        or behind its copies still on their way."""
    def waiting_mirrors(self, order_id: str) -> set[str]:
        """The followers whose mirror of the leader order is kept (`wait`, "mirror")."""

    def close_basis(self, broker: Broker, account: str, native: str) -> tuple[Decimal, Decimal]:
        """An account's position now, and the one a proportional close is sized on."""
    def leader_base(self, fill: Fill) -> Decimal:
        """The leader's Q for a proportional close of `fill`."""
