"""User-given strings on screen, shown exactly as typed.

Account ids, broker, group and copy names, and every message built from them
(a refusal, a validation rule, a modal's title) are data, not markup: a name
such as `[/x]` would crash the app and `[bold]B` would show as a bold "B".
Textual parses a plain `str` as markup almost everywhere (Static, Label,
DataTable cells, Select, OptionList and SelectionList prompts), so synctui
never hands a widget a `str` it did not write itself: it hands it `literal(...)`
(a Rich `Text`, which is never parsed), `choices(...)` for a Select or
SelectionList, and calls `notify(..., markup=False)` (tests/test_tui_trust.py
checks that last rule).
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text


def literal(text: str, style: str = "") -> Text:
    """`text` as it is, never parsed as markup."""
    return Text(text, style=style, end="")


def choices(values: Iterable[str]) -> list[tuple[Text, str]]:
    """Options for a Select or SelectionList whose labels are the values themselves."""
    return [(literal(value), value) for value in values]
