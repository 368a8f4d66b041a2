"""The one way a screen learns that the desk changed."""

from __future__ import annotations

from textual.message import Message


class DeskChanged(Message):
    """Something on the desk changed (an engine event, a market tick, a command).

    The app posts it from its one engine observer and hands it to the screens on
    show; each renders from it. A burst of changes is one repaint: a pending
    DeskChanged is replaced by the next (`can_replace`), and the app posts at
    most one until it is handled.
    """

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, DeskChanged)
