"""Prop-firm style risk rules (SPEC 3): daily loss limit and trailing drawdown."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class RiskLimits:
    daily_loss_limit: Decimal | None = None
    max_drawdown: Decimal | None = None

    @property
    def any(self) -> bool:
        return self.daily_loss_limit is not None or self.max_drawdown is not None


@dataclass(slots=True)
class RiskState:
    """Today's starting equity and the trailing peak.

    Today's PnL is measured as equity minus the day's start, so realized,
    unrealized and fees all count, which is how prop firms measure it.
    """

    day_start: Decimal
    peak: Decimal

    def observe(self, equity: Decimal, limits: RiskLimits) -> str | None:
        """Update the peak with `equity` and return the rule it breaches, if any."""
        if equity > self.peak:
            self.peak = equity
        daily = limits.daily_loss_limit
        if daily is not None and equity - self.day_start <= -daily:
            return "daily_loss_limit"
        drawdown = limits.max_drawdown
        if drawdown is not None and equity <= self.peak - drawdown:
            return "max_drawdown"
        return None

    def shift(self, amount: Decimal) -> None:
        """Funds moved in or out (Smart Sync) are not profit or loss (SPEC 8)."""
        self.day_start += amount
        self.peak += amount

    def reset(self, equity: Decimal) -> None:
        """A reset starts a new trading day from the current equity (SPEC 3)."""
        self.day_start = equity
        self.peak = equity
