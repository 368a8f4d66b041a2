"""How a screen reaches the app's desk: one place, so every screen does it alike."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.dom import DOMNode

if TYPE_CHECKING:
    from synctui.tui.app import SyncApp


def sync_app(node: DOMNode) -> SyncApp:
    from synctui.tui.app import SyncApp

    app = node.app
    assert isinstance(app, SyncApp)
    return app
