"""The order lifecycle as a table (issue 10, item 1): every move it allows, and every
other move an error; cancel reasons as codes the broker and the engine share."""

from __future__ import annotations

from decimal import Decimal

import pytest

from synctui.brokers.events import OrderCancelled
from synctui.domain.orders import (
    TRANSITIONS,
    CancelReason,
    InvalidTransition,
    OrderStatus,
    Side,
    transition,
)
from synctui.engine.events import EngineEvent
from tests.test_trust import base, both, pos

S = OrderStatus
ALLOWED = {
    (None, S.SUBMITTED), (None, S.WORKING), (None, S.REJECTED),
    (S.SUBMITTED, S.WORKING), (S.SUBMITTED, S.PARTIALLY_FILLED), (S.SUBMITTED, S.FILLED),
    (S.SUBMITTED, S.CANCELLED), (S.SUBMITTED, S.REJECTED),
    (S.WORKING, S.PARTIALLY_FILLED), (S.WORKING, S.FILLED), (S.WORKING, S.CANCELLED),
    (S.WORKING, S.REJECTED),
    (S.PARTIALLY_FILLED, S.PARTIALLY_FILLED), (S.PARTIALLY_FILLED, S.FILLED),
    (S.PARTIALLY_FILLED, S.CANCELLED),
}


@pytest.mark.parametrize("current", [None, *OrderStatus])
@pytest.mark.parametrize("new", list(OrderStatus))
def test_every_move_is_allowed_by_the_table_or_an_error(current: OrderStatus | None,
                                                        new: OrderStatus) -> None:
    if (current, new) in ALLOWED:
        assert transition(current, new) is new
    else:
        with pytest.raises(InvalidTransition):
            transition(current, new)


def test_done_orders_never_move_again() -> None:
    for done in (S.FILLED, S.CANCELLED, S.REJECTED):
        assert TRANSITIONS[done] == frozenset()


def test_only_a_requested_cancel_or_a_flatten_reaches_the_mirrors() -> None:
    assert {r for r in CancelReason if r.mirrored} == {CancelReason.REQUESTED,
                                                       CancelReason.FLATTEN}


def test_the_broker_reports_cancels_with_their_reason(tmp_path: object) -> None:
    """A leader's bracketed entry: its take profit fills, so the stop loss is cancelled
    as its OCO sibling; the follower's own legs do the same at its broker."""
    import json

    from synctui.scenario.model import parse_scenario
    from synctui.scenario.runner import build_world

    world = build_world(parse_scenario(json.dumps(base([{"id": "f1", "balance": 100000}]))))
    seen: list[EngineEvent | OrderCancelled] = []
    for broker in world.brokers.values():
        broker.subscribe(seen.append)
    world.engine.place_order("lead", "MNQ", Side.BUY, qty=Decimal(1),
                             stop_loss=Decimal(20900), take_profit=Decimal(21010))
    world.engine.set_price("MNQ", Decimal(21010))
    reasons = [(e.order.account, e.reason) for e in seen if isinstance(e, OrderCancelled)]
    assert reasons == [("lead", CancelReason.OCO), ("f1", CancelReason.OCO)]


def test_a_sim_broker_never_moves_an_order_outside_the_table(tmp_path: object) -> None:
    """A busy scenario (brackets, OCO, reduce-only, mirrors, flatten, cancels) runs with
    every status change checked by the table: none raised."""
    from pathlib import Path
    result = both(base([{"id": "f1", "balance": 100000}], steps=[
        {"op": "order", "account": "lead", "symbol": "MNQ", "side": "buy", "qty": 2,
         "stop_loss": 20900, "take_profit": 21020},
        {"op": "order", "account": "lead", "symbol": "MNQ", "side": "sell", "qty": 1,
         "type": "limit", "price": 21010, "ref": "s"},
        {"op": "order", "account": "lead", "symbol": "MNQ", "side": "buy", "qty": 1,
         "type": "stop", "price": 21030, "ref": "b"},
        {"op": "cancel", "ref": "b"},
        {"op": "price", "symbol": "MNQ", "price": 21010},
        {"op": "flatten_position", "account": "lead", "symbol": "MNQ"},
        {"op": "price", "symbol": "MNQ", "price": 21020}]), Path(str(tmp_path)))
    assert result["errors"] == [] and result["failures"] == []
    assert pos(result, "lead", "MNQ") == 0 and pos(result, "f1", "MNQ") == 0
