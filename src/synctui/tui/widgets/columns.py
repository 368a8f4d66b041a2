"""Which of a table's columns fit its width: the rest collapse by priority."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

Column = tuple[str, str, int | None]  # key, label, fixed width (None: sized to content)


def fitting(columns: Sequence[Column], drop_order: Sequence[str], guessed: Mapping[str, int],
            width: int) -> tuple[str, ...]:
    """The keys of the columns that fit `width` cells, in table order, dropping them in
    `drop_order` until the rest fit. A column sized to its content counts as `guessed`
    (or its label), each with DataTable's cell padding of one on either side."""
    def need(keys: set[str]) -> int:
        return sum((w or guessed.get(k, len(label))) + 2 for k, label, w in columns if k in keys)

    keys = {k for k, _, _ in columns}
    for key in drop_order:
        if need(keys) <= width:
            break
        keys.discard(key)
    return tuple(k for k, _, _ in columns if k in keys)
