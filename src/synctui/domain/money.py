"""Money that moves between balances is kept to a fixed quantum.

Average prices keep 28 significant digits (SPEC 8), so the PnL of closing
part of a position can carry a non-terminating tail. Added to a large
balance, that tail would be rounded by the Decimal context and the books
would stop adding up. Realized amounts are therefore quantized to 1e-10 (the
JSON output's precision, far below any currency's smallest unit) once, where
they are made; every sum of them is then exact.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

MONEY_QUANTUM = Decimal("1e-10")


def money(amount: Decimal) -> Decimal:
    quantized = amount.quantize(MONEY_QUANTUM, rounding=ROUND_HALF_EVEN)
    return quantized if quantized else Decimal(0)
