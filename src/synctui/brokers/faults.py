"""The simulated broker's fault model (SPEC 9): seeded rejects, timeouts that did
or did not reach the broker, and fills that arrive in pieces.

It only decides; the broker acts on its decisions. Probabilities are not money,
so the draws compare plain floats; the seed and the number of draws so far are
the whole of its state, so a restart resumes the same sequence.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import Decimal

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class FaultSettings:
    seed: int = 0
    reject: Decimal = ZERO  # a follower order is rejected (permanent)
    timeout: Decimal = ZERO  # a request gets no answer (transient) ...
    timeout_reached: Decimal = ZERO  # ... and the broker did act on it
    partial: Decimal = ZERO  # a follower fill arrives as 2..4 parts (transient)

    @property
    def any(self) -> bool:
        return any(p > 0 for p in (self.reject, self.timeout, self.partial))


class BrokerTimeout(Exception):
    """A request got no answer. `reached`: the broker acted on it all the same (the
    order exists under its client id), which only asking the broker can tell."""

    def __init__(self, reached: bool) -> None:
        super().__init__("the broker did not answer in time")
        self.reached = reached


class FaultModel:
    def __init__(self, settings: FaultSettings | None = None, draws: int = 0) -> None:
        self.settings = settings or FaultSettings()
        self.active = self.settings.any  # asked on every order: answered once
        self._random = random.Random(self.settings.seed)  # noqa: S311 - a simulation
        self.draws = 0
        for _ in range(draws):
            self._draw()

    def _draw(self) -> float:
        self.draws += 1
        return self._random.random()

    def _chance(self, probability: Decimal) -> bool:
        if probability <= 0:
            return False
        return probability >= 1 or self._draw() < float(probability)

    def rejects(self) -> bool:
        return self._chance(self.settings.reject)

    def times_out(self) -> BrokerTimeout | None:
        """A timeout for this request, or None when it is answered."""
        if not self._chance(self.settings.timeout):
            return None
        return BrokerTimeout(self._chance(self.settings.timeout_reached))

    def parts(self, steps: int) -> int:
        """How many fills an order of `steps` qty steps arrives in: 1, or (partial)
        min(a draw in 2..4, steps)."""
        if steps < 2 or not self._chance(self.settings.partial):
            return 1
        return min(2 + int(self._draw() * 3), steps)
