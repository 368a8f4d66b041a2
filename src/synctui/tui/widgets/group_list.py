"""Groups with their status badges."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from synctui.domain.groups import REASON_WORDS, GroupStatus
from synctui.engine.views import GroupSummary

BADGE = {
    GroupStatus.ACTIVE: ("Active", "bold green"),
    GroupStatus.PAUSED: ("Paused", "bold yellow"),
    GroupStatus.NOT_CONFIGURED: ("Not Configured", "dim"),
}


def label(summary: GroupSummary) -> Text:
    badge, style = BADGE[summary.status]
    text = Text.assemble((summary.name, "bold"), "\n ")
    text.append(f" {badge} ", style=f"{style} reverse" if summary.status is not
                GroupStatus.NOT_CONFIGURED else style)
    members = summary.followers + summary.copies
    text.append(f" {members} follower{'s' if members != 1 else ''}", style="dim")
    if summary.reason and summary.status is GroupStatus.PAUSED:
        text.append(f"\n  {REASON_WORDS[summary.reason]}", style="dim italic")
    return text


class GroupList(OptionList):
    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._shown: list[tuple[str, Text]] = []

    def show(self, summaries: list[GroupSummary]) -> None:
        wanted = [(s.name, label(s)) for s in summaries]
        if [name for name, _ in wanted] != [name for name, _ in self._shown]:
            highlighted = self.highlighted
            self.clear_options()
            self.add_options([Option(text, id=name) for name, text in wanted])
            if wanted:
                self.highlighted = min(highlighted or 0, len(wanted) - 1)
        else:
            for index, ((_name, text), (_, old)) in enumerate(zip(wanted, self._shown,
                                                                  strict=True)):
                if text != old:
                    self.replace_option_prompt_at_index(index, text)
        self._shown = wanted

    @property
    def current(self) -> str | None:
        if self.highlighted is None or not self._shown:
            return None
        return self._shown[self.highlighted][0]
