"""Which changes alert the trader, and how often: each problem once, not on every fill.

A breached follower fails every leader fill's copy; a toast per fill teaches the
trader to ignore toasts. So an alert is raised when a problem starts and not
again until it ended: a copy failure for (group, account, reason) until a copy
to that account succeeds; an out-of-sync follower until it is in sync; a breach
and a Smart Sync copy's stop loss once each (the engine reports them once). Plain Python, no
Textual: the app shows what `Alerts` returns (a notification, and the terminal
bell when switched on).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Alert:
    title: str
    text: str
    severity: str  # "error" | "warning"


class Alerts:
    def __init__(self) -> None:
        self._failing: set[tuple[str, str, str]] = set()  # (group, account, reason)
        self._drifting: set[tuple[str, str, str]] = set()  # (group, account, traded)

    def copy_failed(self, group: str, account: str, reason: str, text: str) -> Alert | None:
        key = (group, account, reason)
        if key in self._failing:
            return None
        self._failing.add(key)
        return Alert("Copy failed", f"{group}: {text}", "error")

    def copied(self, group: str | None, account: str) -> None:
        """A copy to `account` succeeded: its failures may alert again."""
        self._failing = {k for k in self._failing if (k[0], k[1]) != (group, account)
                         and not (group is None and k[1] == account)}

    @staticmethod
    def breached(text: str) -> Alert:
        """The engine reports a breach once (an account stays breached until reset)."""
        return Alert("Breach", text, "error")

    def stop_loss_hit(self, group: str, account: str) -> Alert:
        return Alert("Stop loss", f"the Smart Sync copy of {group} by {account} hit its "
                     "stop loss", "warning")

    def out_of_sync(self, now: Iterable[tuple[str, str, str]]) -> list[Alert]:
        """The followers out of sync now ((group, account, traded)): an alert for each
        that was not before; one back in sync may alert again later."""
        current = set(now)
        fresh = sorted(current - self._drifting)
        self._drifting = current
        return [Alert("Out of sync", f"{g}: {a} is out of sync on {t} (r on the dashboard "
                      "resyncs it)", "warning") for g, a, t in fresh]
