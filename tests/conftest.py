"""Shared test configuration.

Hypothesis profiles: `ci` (the default) keeps the whole suite within CI's
budget on the 2-core machine and draws the same examples every run; `long`
(`SYNCTUI_LONG=1`) runs the fuzz, crash and property tests at their long
profile. A test that wants more
examples under `long` reads `LONG` (and `scaled`) from here.
"""

from __future__ import annotations

import os

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
