"""The simulated broker's path for a plain market copy (`SimBroker._market_copy`) is
the general path made short: for any order it takes, both leave the broker the same
and report the same, and what it does not take goes the general way."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from synctui.brokers.base import OrderRequest
from synctui.brokers.events import BrokerEvent
from synctui.brokers.sim import BrokerSettings, SimBroker
from synctui.domain.clock import SteppingClock
from synctui.domain.instruments import Catalog
from synctui.domain.orders import OrderType, Side
from synctui.domain.prices import PriceBook
from synctui.domain.risk import RiskLimits

D = Decimal
ACCOUNTS = ("a", "b", "poor", "guarded")

# (kind, ...) steps: a submitted order, or a price move. Mostly plain market orders
# of one account and symbol, so that positions build up, reverse and close.
orders = st.tuples(
    st.just("order"), st.sampled_from(("a", "a", "a", "a", *ACCOUNTS[1:], "nobody")),
    st.sampled_from(["MNQ", "MNQ", "MNQ", "BTCUSDT", "NQ", "NOPE"]),
    st.sampled_from([Side.BUY, Side.SELL]),
    st.sampled_from(["1", "2", "3", "1", "2", "0", "0.5", "0.001", "0.0015", "40", "1e20"]),
    st.booleans(), st.sampled_from([OrderType.MARKET] * 5 + [OrderType.LIMIT]),
    st.sampled_from([False] * 5 + [True]))
moves = st.tuples(st.just("move"), st.sampled_from(["MNQ", "BTCUSDT"]),
                  st.sampled_from(["-300", "-40", "-1", "0", "2", "55", "400"]))
steps = st.lists(st.one_of(orders, moves), max_size=40)


class _Run:
    def __init__(self, fast: bool, fee: str, slip: str) -> None:
        catalog = Catalog()
        self.prices = PriceBook(catalog)
        self.prices.set("MNQ", D(21000))
        self.prices.set("BTCUSDT", D(60000))
        self.broker = SimBroker("sim", catalog, self.prices,
                                BrokerSettings(fee_per_contract=D(fee), slippage_ticks=D(slip)),
                                SteppingClock())
        self.taken: list[Any] = []
        if not fast:  # the general path only
            self.broker._market_copy = lambda account, request: False  # type: ignore[method-assign]
        self.events: list[BrokerEvent] = []
        self.broker.subscribe(self.events.append)
        self.broker.track_changes()
        self.broker.open_account("a", D(50_000), RiskLimits())
        self.broker.open_account("b", D(1_000_000), RiskLimits())
        self.broker.open_account("poor", D(150), RiskLimits())
        self.broker.open_account("guarded", D(5_000), RiskLimits(daily_loss_limit=D(200)))
        self.seq = 0

    def step(self, step: tuple[Any, ...]) -> None:
        if step[0] == "move":
            family = self.prices.set(step[1], self.prices.get(step[1]) + D(step[2]))
            self.broker.on_price(family)
        else:
            _kind, account, symbol, side, qty, reduce_only, kind, repeat = step
            self.seq -= 0 if repeat and self.seq else -1  # a repeat re-uses the client id
            request = OrderRequest(symbol=symbol, side=side, qty=D(qty), type=kind,
                                   price=self.prices.get("MNQ") if kind is not
                                   OrderType.MARKET else None, reduce_only=reduce_only,
                                   client_id=f"c{self.seq}")
            try:
                self.broker.submit(account, request)
            except Exception as error:  # both paths must raise alike
                self.events.append(repr(error))  # type: ignore[arg-type]
        changes = self.broker.take_changes()
        self.taken.append((sorted(changes.accounts), sorted(changes.positions),
                           sorted(changes.settings), list(changes.orders.items()),
                           list(changes.fills)))

    def state(self) -> Any:
        broker, book = self.broker, self.broker.book
        return ([broker.view(a) for a in ACCOUNTS], dict(book.status), dict(book.done),
                dict(book.log), dict(book.client_ids), dict(book.rejects), list(book._done),
                broker.counters(), self.events, self.taken)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=steps, fee=st.sampled_from(["0", "1.25"]), slip=st.sampled_from(["0", "2"]))
@example(steps=[  # an account that breached its daily loss limit takes no order
    ("order", "guarded", "MNQ", Side.BUY, "3", False, OrderType.MARKET, False),
    ("move", "MNQ", "-400"),
    ("order", "guarded", "MNQ", Side.BUY, "1", False, OrderType.MARKET, False)],
    fee="0", slip="0")
def test_the_market_copy_path_leaves_the_broker_as_the_general_path_does(
        steps: list[tuple[Any, ...]], fee: str, slip: str) -> None:
    fast, general = _Run(True, fee, slip), _Run(False, fee, slip)
    for step in steps:
        fast.step(step)
        general.step(step)
    assert fast.state() == general.state()


def test_the_market_copy_path_is_taken_for_a_plain_copy_and_its_close() -> None:
    run = _Run(True, "0", "0")
    taken: list[bool] = []
    original = run.broker._market_copy

    def spy(account: str, request: OrderRequest) -> bool:
        taken.append(original(account, request))
        return taken[-1]

    run.broker._market_copy = spy  # type: ignore[method-assign]
    run.step(("order", "a", "MNQ", Side.BUY, "1", False, OrderType.MARKET, False))
    run.step(("order", "a", "MNQ", Side.BUY, "2", False, OrderType.MARKET, False))
    run.step(("order", "a", "MNQ", Side.SELL, "5", True, OrderType.MARKET, False))
    run.step(("order", "a", "MNQ", Side.SELL, "1", True, OrderType.MARKET, False))  # flat
    # the first order of a symbol learns whether the broker trades it, the general way
    assert taken == [False, True, True, False]
    assert run.broker.view("a").positions == ()
