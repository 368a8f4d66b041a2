"""Reaching a real exchange through ccxt (issue 13): making the client, pointing it at
another base URL (an exchange's own test host, or synctui's loopback exchange), and
what its errors mean for a copy.

ccxt is used unmodified: a base URL replaces the scheme and host of every REST and
websocket address in the exchange's `urls["api"]`, which is what ccxt itself
documents for proxies and testnets whose paths match production's.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

import ccxt
import ccxt.pro

_HOST = re.compile(r"^(https?|wss?)://[^/]+")


def point_at(urls: dict[str, Any], base_url: str) -> None:
    """Every address of `urls` (nested) on `base_url`'s host: https to its http(s),
    wss to the matching ws(s)."""
    secure = base_url.startswith("https://")
    host = _HOST.sub("", base_url).rstrip("/")
    authority = base_url.split("://", 1)[1].split("/", 1)[0] if "://" in base_url else host
    for key, value in urls.items():
        if isinstance(value, dict):
            point_at(value, base_url)
        elif isinstance(value, str) and _HOST.match(value):
            scheme = value.split("://", 1)[0]
            websocket = scheme.startswith("ws")
            new = ("wss" if secure else "ws") if websocket else ("https" if secure else "http")
            urls[key] = _HOST.sub(f"{new}://{authority}", value)


def make_client(exchange: str, api_key: str, secret: str, *, base_url: str | None = None,
                sandbox: bool = False) -> Any:
    """A ccxt.pro client (REST and websockets) for `exchange` (a ccxt id such as
    "binanceusdm"), on its testnet when `sandbox`, or on `base_url`."""
    try:
        cls = getattr(ccxt.pro, exchange)
    except AttributeError:
        raise ValueError(f"ccxt has no exchange {exchange!r} with websockets") from None
    client = cls({"apiKey": api_key, "secret": secret, "enableRateLimit": True,
                  "options": {"defaultType": "swap"}})
    if sandbox:
        client.set_sandbox_mode(True)
    if base_url is not None:
        point_at(client.urls["api"], base_url)
    return client


class Failure(StrEnum):
    """What a failed request means for the order it carried."""

    PERMANENT = "permanent"  # the exchange said no: report the copy failed
    TRANSIENT = "transient"  # no answer, or not now: ask again with the same client id


# ccxt's error classes that mean "not now": a RateLimitExceeded is also a NetworkError.
_TRANSIENT = (ccxt.NetworkError,)
# ccxt maps an exchange's codes to its classes differently from one API section to the
# next (Binance's -2019 "Margin is insufficient" is InsufficientFunds in one and
# OperationFailed in another), so where the answer carries the exchange's own code,
# that code decides. Binance's: unknown or internal error, too many requests, backend
# timeout, server busy, timestamp out of the window.
_TRANSIENT_CODES = frozenset({-1000, -1001, -1003, -1007, -1008, -1021})
INSUFFICIENT_CODES = frozenset({-2018, -2019})
_CODE = re.compile(r'"code"\s*:\s*(-?\d+)')


def exchange_code(error: BaseException) -> int | None:
    """The exchange's own error code in a ccxt error's message, when it has one."""
    found = _CODE.search(str(error))
    return int(found.group(1)) if found else None


def classify(error: BaseException) -> Failure:
    """Transient: rate limits, timeouts, an exchange down or unreachable, an internal
    error it asks to retry, a clock out of the receive window (re-signed, it passes).
    Everything else the exchange answered (a bad signature, too little margin, an
    invalid order) is permanent."""
    code = exchange_code(error)
    if code is not None:
        return Failure.TRANSIENT if code in _TRANSIENT_CODES else Failure.PERMANENT
    return Failure.TRANSIENT if isinstance(error, _TRANSIENT) else Failure.PERMANENT
