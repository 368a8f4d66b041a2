"""JSON for the dataclasses a store keeps whole (queued broker events, intents).

Typed both ways from the dataclass annotations: a Decimal goes out as a
string and comes back a Decimal, so nothing passes through a binary float.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from datetime import UTC, datetime, timedelta
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
from synctui.domain.numbers import decimal_or_none
from synctui.domain.orders import OrderType, Side
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
            # a field added since the value was written takes its default
            return kind(**{f.name: _in(hints[f.name], value[f.name])
                           for f in dataclasses.fields(kind) if f.name in value})
        if issubclass(kind, Decimal):
            return Decimal(value)
        if issubclass(kind, Enum):
            return kind(value)
        if issubclass(kind, datetime):
            return datetime.fromisoformat(value)
    return value


def dump_event(event: BrokerEvent) -> str:
    if type(event) is Fill:
        return _dump_fill(event)
    return json.dumps({"type": type(event).__name__, "data": _out(event)})


def _dump_fill(f: Fill) -> str:
    """A fill as `dump_event` writes any event, written out directly (a test holds
    them equal): a Smart Sync fan-out queues a fill per copy, and the reflective walk
    over its 22 fields was most of the cost of keeping it."""
    esc = encode_basestring_ascii
    mode = f.margin_mode
    return (
        f'{{"type": "Fill", "data": {{"id": {esc(f.id)}, "broker": {esc(f.broker)}, '
        f'"account": {esc(f.account)}, "symbol": {esc(f.symbol)}, '
        f'"side": {esc(f.side._value_)}, "qty": "{f.qty!s}", "price": "{f.price!s}", '
        f'"fee": "{f.fee!s}", "realized": "{f.realized!s}", '
        f'"cause": {esc(f.cause._value_)}, "position_before": "{f.position_before!s}", '
        f'"position_after": "{f.position_after!s}", '
        f'"equity_before": "{f.equity_before!s}", '
        f'"leverage": {"null" if f.leverage is None else int(f.leverage)}, '
        f'"margin_mode": {"null" if mode is None else esc(mode._value_)}, '
        f'"order_id": {_js(f.order_id)}, "client_id": {_js(f.client_id)}, '
        f'"parent_id": {_js(f.parent_id)}, "role": {_js(f.role)}, '
        f'"stop_loss": {_jd(f.stop_loss)}, "take_profit": {_jd(f.take_profit)}, '
        f'"at": {esc(iso_time(f.at))}}}}}')


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


_second: list[Any] = [None, ""]  # a UTC time on a whole second, and its text to there


def iso_time(at: datetime) -> str:
    """`at.isoformat()`, made from the text of its second when that is the last one
    asked: every follower fill of a fan-out is written with its time, within the same
    second, and `isoformat` (0.9 µs) was the costliest step of its row. Other times
    (not UTC, or naive) go to `isoformat` itself; a test holds them equal."""
    base = _second[0]
    if base is not None and at.tzinfo is UTC:
        delta = at - base
        if not delta.days and not delta.seconds:  # in [base, base + 1 s)
            micro = delta.microseconds
            return f"{_second[1]}.{micro:06d}+00:00" if micro else f"{_second[1]}+00:00"
    text = at.isoformat()
    if at.tzinfo is UTC:
        _second[0] = at - timedelta(microseconds=at.microsecond)
        _second[1] = text[:19]
    return text


_last_time: list[Any] = [None, "null"]  # the last time written, and its text


def _jt(value: datetime | None) -> str:
    """A time as JSON. A fan-out's thousand intents share one decision time: its text
    is made once (the same object as the last one, not just an equal one)."""
    if value is None:
        return "null"
    if value is not _last_time[0]:
        _last_time[0], _last_time[1] = value, encode_basestring_ascii(iso_time(value))
    text: str = _last_time[1]
    return text


INTENT_BODY = 2  # the version of the intent body below, its first element


def dump_intent(intent: Intent) -> str:
    """An intent's stored body: a JSON array, version first, written out directly.

    `[2, group, follower, symbol, native symbol, side, qty, type, price, reduce_only,
    stop_loss, take_profit, mirror_of, bracket_of, at, since]`. The client id is the
    row's key, so it is not written again. One of these is written per follower order
    and rewritten when its outcome is recorded: the object with its field names (the
    body before version 2, still read) was three times the bytes, and the bytes are
    what a commit writes. The exact text `json.dumps` gives for that list (a test
    holds them equal)."""
    r = intent.request
    esc = encode_basestring_ascii
    return (
        f'[2, {esc(intent.group)}, {esc(intent.follower)}, {esc(intent.symbol)}, '
        f'{esc(r.symbol)}, {esc(r.side._value_)}, "{r.qty!s}", {esc(r.type._value_)}, '
        f'{_jd(r.price)}, {"true" if r.reduce_only else "false"}, {_jd(r.stop_loss)}, '
        f'{_jd(r.take_profit)}, {_js(intent.mirror_of)}, {_js(intent.bracket_of)}, '
        f'{_jt(intent.at)}, {_jt(intent.since)}]')


def load_intent(key: str, body: str) -> Intent:
    """An intent from its key and stored body: version 2, or the object written before."""
    data = json.loads(body)
    if isinstance(data, dict):  # before version 2
        return Intent(key, data["group"], data["follower"], data["symbol"],
                      load_request(data["request"]), data["mirror_of"], data["bracket_of"],
                      _time(data.get("at")), _time(data.get("since")))
    (version, group, follower, symbol, native, side, qty, kind, price, reduce_only,
     stop_loss, take_profit, mirror_of, bracket_of, at, since) = data
    if version != INTENT_BODY:
        raise ValueError(f"intent {key!r}: unknown body version {version!r}")
    request = OrderRequest(native, Side(side), Decimal(qty), OrderType(kind),
                           decimal_or_none(price), bool(reduce_only),
                           decimal_or_none(stop_loss), decimal_or_none(take_profit), key)
    return Intent(key, group, follower, symbol, request, mirror_of, bracket_of, _time(at),
                  _time(since))


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def load_request(data: dict[str, Any]) -> OrderRequest:
    request: OrderRequest = _in(OrderRequest, data)
    return request


def dump_waiting(item: Waiting) -> str:
    return json.dumps(_out(item))


def load_waiting(text: str) -> Waiting:
    item: Waiting = _in(Waiting, json.loads(text))
    return item


__all__ = ["OrderInfo", "dump_event", "dump_intent", "dump_request", "dump_waiting", "iso_time",
           "load_event", "load_intent", "load_request", "load_waiting"]
