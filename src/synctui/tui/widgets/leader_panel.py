"""The leader of the selected group: positions, PnL, working orders."""

from __future__ import annotations

from decimal import Decimal

from rich.console import Group as RichGroup
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from synctui.engine.views import LeaderView
from synctui.tui.widgets.format import money, price, qty
from synctui.tui.widgets.text import literal

CENTS = Decimal("0.01")


def _plain(text: Text) -> Text:
    """A money Text without its right-justification, to sit inside a sentence."""
    return Text(text.plain, style=text.style)


def render_leader(view: LeaderView | None) -> RichGroup | Text:
    if view is None:
        return Text("No leader: assign one to start copying.", style="dim italic")
    head = Table.grid(padding=(0, 1))
    for _ in range(10):
        head.add_column()
    head.add_row(
        Text("Leader", style="dim"), Text(view.account, style="bold"),
        Text("at", style="dim"),
        Text(view.broker, style="bold") if view.connected
        else Text(f"{view.broker} ○ offline", style="bold red"),
        Text(" equity", style="dim"), Text(f"{view.equity.quantize(CENTS):,}"),
        Text(" unrealized", style="dim"), _plain(money(view.unrealized)),
        Text(" realized", style="dim"), _plain(money(view.realized)),
    )
    if view.breached:
        head.add_row(Text(f"BREACHED ({view.breached.replace('_', ' ')})",
                          style="reverse red"))
    table = Table(box=None, pad_edge=False, expand=False, show_edge=False)
    for name in ("Contract", "Position", "Avg price", "Unrealized", "Working orders"):
        table.add_column(name, style="bold" if name == "Contract" else None,
                         justify="right" if name in ("Position", "Avg price", "Unrealized")
                         else "left")
    symbols = list(dict.fromkeys([h.symbol for h in view.holdings]
                                 + [o.symbol for o in view.orders]))
    for symbol in symbols:
        holding = next((h for h in view.holdings if h.symbol == symbol), None)
        orders = [o for o in view.orders if o.symbol == symbol]
        working = ", ".join(
            f"{o.role or o.type} {o.side} {qty(o.qty).lstrip('+')} @ {price(o.price, o.symbol)}"
            for o in orders) or "-"
        table.add_row(literal(symbol), qty(holding.qty) if holding else "0",
                      price(holding.avg_price, symbol) if holding else "-",
                      money(holding.unrealized) if holding else Text("-", justify="right"),
                      literal(working))
    if not symbols:
        return RichGroup(head, Text("Flat, no working orders.", style="dim"))
    return RichGroup(head, table)


class LeaderPanel(Static):
    _shown: LeaderView | bool | None = False  # nothing shown yet

    def show(self, view: LeaderView | None) -> None:
        """Repaint only when the view changed: a new renderable re-lays the screen out."""
        if view == self._shown:
            return
        self._shown = view
        self.update(render_leader(view))
