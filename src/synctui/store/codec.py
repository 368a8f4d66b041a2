"""JSON for the dataclasses a store keeps whole (queued broker events, intents).

Typed both ways from the dataclass annotations: a Decimal goes out as a
string and comes back a Decimal, so nothing passes through a binary float.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from datetime import datetime
from decimal import Decimal
from enum import Enum
from json.encoder import encode_basestring_ascii
from typing import Any

from synctui.brokers.base import OrderRequest
from synctui.brokers.events import (
    AccountBreached,
    BrokerEvent,
    Fill,
    LeverageChanged,
    MarginAdjusted,
    OrderAcknowledged,
    OrderCancelled,
    OrderFailed,
    OrderInfo,
    OrderModified,
    OrderPlaced,
    OrderRefused,
    PriceUpdated,
)
from synctui.engine.state import Intent, Waiting

EVENT_TYPES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (Fill, OrderPlaced, OrderModified, OrderCancelled, OrderFailed, AccountBreached,
                LeverageChanged, MarginAdjusted, PriceUpdated, OrderAcknowledged, OrderRefused)
}


def _out(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _out(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _in(kind: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = [k for k in typing.get_args(kind) if k is not type(None)]
        return _in(options[0], value)
    if isinstance(kind, type):
        if dataclasses.is_dataclass(kind):
            hints = typing.get_type_hints(kind)
            return kind(**{f.name: _in(hints[f.name], value[f.name])
                           for f in dataclasses.fields(kind)})
        if issubclass(kind, Decimal):
            return Decimal(value)
        if issubclass(kind, Enum):
            return kind(value)
        if issubclass(kind, datetime):
            return datetime.fromisoformat(value)
    return value


def dump_event(event: BrokerEvent) -> str:
    return json.dumps({"type": type(event).__name__, "data": _out(event)})


def load_event(text: str) -> BrokerEvent:
    raw = json.loads(text)
    event: BrokerEvent = _in(EVENT_TYPES[raw["type"]], raw["data"])
    return event


def dump_request(request: OrderRequest) -> dict[str, Any]:
    """By hand, not by reflection: one of these is written per follower order (the hot
    path), and the shape is the reflective one's, so `load_request` reads both."""
    return {"symbol": request.symbol, "side": request.side.value, "qty": str(request.qty),
            "type": request.type.value, "price": _text(request.price),
            "reduce_only": request.reduce_only, "stop_loss": _text(request.stop_loss),
            "take_profit": _text(request.take_profit), "client_id": request.client_id}


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _js(value: str | None) -> str:
    """A JSON string as `json.dumps` writes it (its own escaping, in C), or null."""
    return "null" if value is None else encode_basestring_ascii(value)


def _jd(value: Decimal | None) -> str:
    return "null" if value is None else f'"{value!s}"'


_last_time: list[Any] = [None, "null"]  # the last time written, and its text


def _jt(value: datetime | None) -> str:
    """A time as JSON. A fan-out's thousand intents share one decision time: its text
    is made once (the same object as the last one, not just an equal one)."""
    if value is None:
        return "null"
    if value is not _last_time[0]:
        _last_time[0], _last_time[1] = value, encode_basestring_ascii(value.isoformat())
    text: str = _last_time[1]
    return text


def dump_intent(intent: Intent) -> str:
    """An intent's stored body, the exact text `json.dumps` gives for its dict (a test
    holds them equal), written out directly: one of these is made per follower order
    and building the dict for `json.dumps` was most of the cost of storing an intent."""
    r = intent.request
    esc = encode_basestring_ascii
    return (
        f'{{"group": {esc(intent.group)}, "follower": {esc(intent.follower)}, '
        f'"symbol": {esc(intent.symbol)}, "request": {{"symbol": {esc(r.symbol)}, '
        f'"side": {esc(r.side._value_)}, "qty": "{r.qty!s}", "type": {esc(r.type._value_)}, '
        f'"price": {_jd(r.price)}, "reduce_only": {"true" if r.reduce_only else "false"}, '
        f'"stop_loss": {_jd(r.stop_loss)}, "take_profit": {_jd(r.take_profit)}, '
        f'"client_id": {_js(r.client_id)}}}, "mirror_of": {_js(intent.mirror_of)}, '
        f'"bracket_of": {_js(intent.bracket_of)}, '
        f'"at": {_jt(intent.at)}, '
        f'"since": {"null" if intent.since is None else esc(intent.since.isoformat())}}}')


def load_request(data: dict[str, Any]) -> OrderRequest:
    request: OrderRequest = _in(OrderRequest, data)
    return request


def dump_waiting(item: Waiting) -> str:
    return json.dumps(_out(item))


def load_waiting(text: str) -> Waiting:
    item: Waiting = _in(Waiting, json.loads(text))
    return item


__all__ = ["OrderInfo", "dump_event", "dump_intent", "dump_request", "dump_waiting", "load_event",
           "load_request", "load_waiting"]
