"""Shared test configuration.

Hypothesis profiles: `ci` (the default) keeps the whole suite within CI's
budget on the 2-core machine and draws the same examples every run; `long`
(`SYNCTUI_LONG=1`) runs the fuzz, crash and property tests at their long
profile. A test that wants more
examples under `long` reads `LONG` (and `scaled`) from here.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

LONG = os.environ.get("SYNCTUI_LONG", "") not in ("", "0")

# CI draws the same examples every run (derandomize): a red CI is a real regression,
# never an unlucky draw (a property's operation-rate floors are statistical). The long
# profile draws new ones each run, to explore.
settings.register_profile("ci", deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("long" if LONG else "ci")


def scaled(ci: int, long: int) -> int:
    """How many examples (or rounds) a test runs: `ci` by default, `long` under SYNCTUI_LONG."""
    return long if LONG else ci


def pytest_configure(config: object) -> None:
    """The long profiles run for many minutes per test (500 kills of the crash test take
    about 20): under SYNCTUI_LONG=1 a test's time limit is two hours, not ten minutes."""
    if LONG:
        config.option.timeout = 7200  # type: ignore[attr-defined]


LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def _loopback(host: str) -> bool:
    return host in LOOPBACK or host.startswith("127.")


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Nothing reaches beyond 127.0.0.1: a name lookup (aiohttp's, ccxt's, the
    websockets') of any other host, or a connection to any other address, fails the
    test. The hosts looked up and connected to are returned, so a test sees them."""
    real_lookup = socket.getaddrinfo
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    asked: list[str] = []

    def check(host: Any) -> None:
        name = host.decode() if isinstance(host, bytes) else str(host)
        asked.append(name)
        if not _loopback(name):
            raise AssertionError(f"a test tried to reach {name!r}, beyond 127.0.0.1")

    def lookup(host: Any, *args: Any, **kwargs: Any) -> Any:
        check(host)
        return real_lookup(host, *args, **kwargs)

    def connect(self: socket.socket, address: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            check(address[0])
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            check(address[0])
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", lookup)
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    return asked
