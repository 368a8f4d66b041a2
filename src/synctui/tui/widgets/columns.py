"""Which of a table's columns fit its width: the rest collapse by priority."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from textual.widgets import DataTable

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


def sort_key(value: object) -> tuple[int, Decimal, str]:
    """Order a cell by its number when it reads as one ("+1,234.50", "12.5%", "x3"),
    else by its text; numbers first."""
    text = str(value).strip()
    number = text.replace(",", "").replace("%", "").lstrip("x+")
    try:
        return (0, Decimal(number), "")
    except InvalidOperation:
        return (1, Decimal(0), text.casefold())


class SortState:
    """The column a table is sorted by, and which way: a header click sorts by it,
    a second click on it reverses, and a table rebuilt by a refresh is sorted again."""

    def __init__(self) -> None:
        self.column: str | None = None
        self.reverse = False

    def clicked(self, column: str) -> None:
        self.reverse = not self.reverse if column == self.column else False
        self.column = column

    def header_selected(self, event: DataTable.HeaderSelected) -> None:
        """A header click: sort by its column, or reverse a second time."""
        if event.column_key.value is not None:
            self.clicked(event.column_key.value)
            self.apply(event.data_table)

    def apply(self, table: DataTable[Any]) -> None:
        if self.column is not None and self.column in {c.value for c in table.columns}:
            table.sort(self.column, key=sort_key, reverse=self.reverse)
