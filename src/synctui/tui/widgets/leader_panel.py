"""The leader of the selected group: positions, PnL, working orders."""

from __future__ import annotations

from decimal import Decimal

from rich.console import Group as RichGroup
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from synctui.engine.views import LeaderView
from synctui.tui.widgets.format import money, plain, price, qty
from synctui.tui.widgets.text import literal

CENTS = Decimal("0.01")


def render_leader(view: LeaderView | None) -> RichGroup | Text:
    if view is None:
        return Text("No leader: assign one to start copying.", style="dim italic")
    # One sentence that wraps at a narrow width (a grid of ten cells truncated each).
    head = Text()
    head.append("Leader ", style="dim")
    head.append(view.account, style="bold")
    head.append(" at ", style="dim")
    if view.connected:
        head.append(view.broker, style="bold")
    else:
        head.append(f"{view.broker} ○ offline", style="bold red")
    for label, value in ((" equity ", Text(f"{view.equity.quantize(CENTS):,}")),
                         ("  unrealized ", plain(money(view.unrealized))),
                         ("  realized ", plain(money(view.realized)))):
        head.append(label, style="dim")
        head.append_text(value)
    if view.breached:
        head.append(f"\nBREACHED ({view.breached.replace('_', ' ')})", style="reverse red")
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
