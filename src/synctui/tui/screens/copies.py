"""Smart Sync: my copies, a copy's details and settings, the Copy dialog.

Every number and rule comes from the engine's read models (synctui.engine.views);
the forms validate as they are typed, with the rule in words, and a refusal from
the engine is shown inside the form that caused it.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.validation import ValidationResult, Validator
from textual.widgets import Button, Checkbox, DataTable, Footer, Input, Label, Select, Static

from synctui.domain.copies import MIN_INVESTMENT, CopyStatus, OnStop
from synctui.domain.groups import Group
from synctui.engine.engine import Engine
from synctui.engine.views import (
    CopyRow,
    CopyTotals,
    copy_detail,
    copy_groups,
    copy_journal,
    copy_row,
    copy_rows,
    copy_totals,
    follow_accounts,
    follow_investment_bounds,
    follow_question,
    group_of,
    investment_bounds,
    investment_problem,
    leader_view,
    parse_amount,
    stop_loss_problem,
    stop_loss_warning,
)
from synctui.tui.messages import DeskChanged
from synctui.tui.screens.access import sync_app as _sync_app
from synctui.tui.screens.confirm import ConfirmModal
from synctui.tui.widgets.columns import SortState
from synctui.tui.widgets.follower_table import OFFLINE
from synctui.tui.widgets.format import money, percent, plain, price, qty
from synctui.tui.widgets.text import literal

if TYPE_CHECKING:
    pass

ON_STOP_CHOICES = [("close positions, funds to balance", OnStop.CLOSE.value),
                   ("keep the positions open", OnStop.KEEP.value)]


def _amount(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.01')):,}"


class Rule(Validator):
    """A Textual validator around a rule of the read models: `problem` says, in words,
    why a value cannot be used (None when it can)."""

    def __init__(self, problem: Callable[[str], str | None]) -> None:
        super().__init__()
        self.problem = problem

    def validate(self, value: str) -> ValidationResult:
        message = self.problem(value)
        return self.success() if message is None else self.failure(message)


def _show_validation(input_: Input, error: Static) -> bool:
    """Validate `input_` now, show the rule it breaks under it; True when valid."""
    result = input_.validate(input_.value)
    problems = result.failure_descriptions if result is not None else []
    error.update(literal(" ".join(problems)))
    error.display = bool(problems)
    return not problems


class FormModal(ModalScreen[bool]):
    """A small form that runs one engine command; a refusal is shown inline."""

    DEFAULT_CSS = """
    FormModal { align: center middle; }
    FormModal .field-label { text-style: bold; }
    FormModal .error { color: $error; }
    FormModal .refusal { color: $error; text-style: bold; margin-top: 1; }
    FormModal .warning { color: $warning; }
    FormModal .form-row { height: auto; }
    FormModal .form-row Vertical { height: auto; width: 1fr; }
    FormModal .form-row Vertical:first-of-type { margin-right: 2; }
    FormModal Input { width: 100%; }
    FormModal Select { width: 100%; }
    FormModal Checkbox { margin-top: 1; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    @property
    def engine(self) -> Engine:
        return _sync_app(self).desk.engine

    def action_cancel(self) -> None:
        self.dismiss(False)

    async def run_command(self, command: Callable[[Engine], object], what: str) -> bool:
        app = _sync_app(self)
        error = await app.desk.run(command, what)
        refusal = self.query_one("#refusal", Static)
        if error is not None:
            refusal.update(literal(f"Refused: {error}"))
            refusal.display = True
            self.notify(error, title="Refused", severity="error", markup=False)
            return False
        app.log_action(None, what)
        self.dismiss(True)
        return True


class CopyDialog(FormModal):
    """Copy a group in Smart Sync mode (SPEC 5)."""

    def __init__(self, group: str | None = None) -> None:
        super().__init__()
        self._group = group
        self._options: list[tuple[str, str]] | None = None  # the accounts as last listed
        self._last_account: str | None = None

    def compose(self) -> ComposeResult:
        groups = copy_groups(self.engine)
        names = [g.name for g in groups]
        chosen = self._group if self._group in names else (names[0] if names else None)
        with Vertical(id="copy-dialog", classes="modal"):
            yield Label("Copy a group (mode: Smart Sync)", classes="modal-title")
            yield from self._form(groups, chosen)
            # outside the scrolling form: Follow stays on screen at 80x24
            with Horizontal(classes="modal-buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Follow", id="follow", variant="primary", disabled=True)

    def _form(self, groups: list[Group], chosen: str | None) -> ComposeResult:
        with VerticalScroll(id="copy-form"):
            with Horizontal(classes="form-row"):
                with Vertical():
                    yield Label("Group (its leader)", classes="field-label")
                    yield Select([(literal(f"{g.name} (leader {g.leader}, "
                                           f"{g.status.value.replace('_', ' ')})"), g.name)
                                  for g in groups],
                                 value=chosen if chosen is not None else Select.NULL,
                                 allow_blank=chosen is None, id="group")
                with Vertical():
                    yield Label("Account", classes="field-label")
                    yield Select([], prompt="Choose the account that copies", id="account")
            yield Label("Investment", classes="field-label")
            yield Input(placeholder=f"at least {MIN_INVESTMENT}", id="investment",
                        validators=[Rule(self._investment_problem)])
            yield Static(id="investment-hint", classes="hint")
            yield Static(id="investment-error", classes="error")
            yield Checkbox("Copy open positions", id="copy-open")
            yield Static(id="leader-positions", classes="hint")
            with Horizontal(classes="form-row"):
                with Vertical():
                    yield Label("Total stop loss (optional)", classes="field-label")
                    yield Input(placeholder="empty: no stop loss", id="stop-loss",
                                validators=[Rule(stop_loss_problem)])
                with Vertical():
                    yield Label("When the stop loss is hit", classes="field-label")
                    yield Select(ON_STOP_CHOICES, value=OnStop.CLOSE.value, allow_blank=False,
                                 id="on-stop")
            yield Static(id="stop-loss-error", classes="error")
            yield Static(id="stop-loss-warning", classes="warning")
            yield Static(id="refusal", classes="refusal")

    def on_mount(self) -> None:
        box = self.query_one("#copy-dialog").styles
        box.width = 110  # wider than the app's .modal: two fields a row
        box.max_width = "100%"
        box.max_height = "100%"
        form = self.query_one("#copy-form").styles
        form.height = "auto"
        form.max_height = "60vh"  # the title and the buttons keep the rest
        for id_ in ("#investment-error", "#stop-loss-error", "#stop-loss-warning", "#refusal"):
            self.query_one(id_, Static).display = False
        self._group_chosen()

    # --- what is chosen ---------------------------------------------------------------

    @property
    def group(self) -> str | None:
        value = self.query_one("#group", Select).value
        return value if isinstance(value, str) else None

    @property
    def account(self) -> str | None:
        value = self.query_one("#account", Select).value
        return value if isinstance(value, str) else None

    def _investment_problem(self, text: str) -> str | None:
        if self.account is None:
            return "Choose an account first."
        low, high = follow_investment_bounds(self.engine, self.account)
        return investment_problem(text, low, high)

    @on(Select.Changed, "#group")
    def _group_changed(self) -> None:
        self._group_chosen()

    def _group_chosen(self) -> None:
        self._show_choices()
        self._account_chosen()

    def on_desk_changed(self, message: DeskChanged) -> None:
        """The desk moves while the dialog is open: the leader's positions and each
        account's available funds are shown as they are now, never as they were
        when the group was picked (a long where the leader is now short)."""
        self._show_choices()
        if self.account is not None:
            self._show_hint()

    def _show_choices(self) -> None:
        engine = self.engine
        name = self.group
        group = group_of(engine, name)
        accounts = follow_accounts(engine, group) if group else []
        select = self.query_one("#account", Select)
        # The available funds are in the hint below, live: one figure, not two.
        options = [
            (f"{a.account} ({a.broker}"
             f"{', copies it already' if a.copies_already else ''}"
             f"{', ' + a.cannot_trade if a.cannot_trade else ''})", a.account)
            for a in accounts]
        if options != self._options:  # unchanged: an open drop-down stays open
            self._options = options
            previous = self.account
            select.set_options([(literal(text), key) for text, key in options])
            if previous in {a.account for a in accounts}:
                select.value = previous
        positions = self.query_one("#leader-positions", Static)
        leader = leader_view(engine, group) if group else None
        if leader is None:
            positions.update("No leader.")
        elif not leader.holdings:
            positions.update(literal(f"{leader.account} holds no open positions: nothing to "
                                     "copy now."))
        else:
            lines = [f"{leader.account}'s open positions, copied at the current price "
                     "when checked:"]
            lines += [f"  \u2022 {h.symbol} {qty(h.qty)} @ {price(h.avg_price, h.symbol)}"
                      for h in leader.holdings]
            positions.update(literal("\n".join(lines)))

    @on(Select.Changed, "#account")
    def _account_changed(self) -> None:
        self._account_chosen()

    def _account_chosen(self) -> None:
        account = self.account
        if account is not None and account != self._last_account:
            # a refusal was about the account chosen before (a relisting of the same
            # accounts blanks the choice for a moment: that is no new choice)
            self.query_one("#refusal", Static).display = False
            self._last_account = account
        self._show_hint()
        investment = self.query_one("#investment", Input)
        if investment.value:
            _show_validation(investment, self.query_one("#investment-error", Static))
        self._update_follow()

    def _show_hint(self) -> None:
        hint = self.query_one("#investment-hint", Static)
        if self.account is None:
            hint.update(f"Minimum {MIN_INVESTMENT}. Choose an account to see its funds.")
        else:
            _low, available = follow_investment_bounds(self.engine, self.account)
            hint.update(literal(f"Minimum {MIN_INVESTMENT}; {self.account} has "
                                f"{_amount(available)} available. It moves into the copy's "
                                "own funds."))

    @on(Input.Changed)
    def _typed(self, event: Input.Changed) -> None:
        error = self.query_one(f"#{event.input.id}-error", Static)
        _show_validation(event.input, error)
        self.query_one("#refusal", Static).display = False
        warning = stop_loss_warning(self.query_one("#stop-loss", Input).value,
                                    self.query_one("#investment", Input).value)
        shown = self.query_one("#stop-loss-warning", Static)
        shown.update(literal(warning or ""))
        shown.display = warning is not None
        self._update_follow()

    def _valid(self) -> bool:
        investment = self.query_one("#investment", Input)
        stop = self.query_one("#stop-loss", Input)
        return (self.group is not None and self.account is not None
                and self._investment_problem(investment.value) is None
                and stop_loss_problem(stop.value) is None)

    def _update_follow(self) -> None:
        self.query_one("#follow", Button).disabled = not self._valid()

    # --- buttons --------------------------------------------------------------------------

    @on(Input.Submitted)
    async def _submitted(self) -> None:
        await self.follow()

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(False)

    @on(Button.Pressed, "#follow")
    async def _follow(self) -> None:
        await self.follow()

    async def follow(self) -> None:
        if not self._valid():
            for id_ in ("investment", "stop-loss"):
                _show_validation(self.query_one(f"#{id_}", Input),
                                 self.query_one(f"#{id_}-error", Static))
            return
        group, account = self.group, self.account
        assert group is not None and account is not None
        investment = parse_amount(self.query_one("#investment", Input).value)
        assert investment is not None
        stop_text = self.query_one("#stop-loss", Input).value
        stop_loss = parse_amount(stop_text) if stop_text.strip() else None
        copy_open = self.query_one("#copy-open", Checkbox).value
        on_stop = OnStop(str(self.query_one("#on-stop", Select).value))
        what = f"Smart Sync: {account} copies {group} with {investment.normalize():f}"
        if copy_open:
            what += ", open positions copied"
        if stop_loss is not None:
            what += f", stop loss {stop_loss.normalize():f} ({on_stop.value})"
        async def run() -> None:
            await self.run_command(
                lambda e: e.follow(group, account, "smart_sync", investment,
                                   copy_open_positions=copy_open, stop_loss=stop_loss,
                                   on_stop=on_stop), what)

        question = follow_question(self.engine, group)
        if question is None:
            await run()
            return

        async def answered(yes: bool | None) -> None:
            if yes:
                await run()

        self.app.push_screen(ConfirmModal(f"Follow {group}, which is paused?", question,
                                          "Follow and activate"), answered)


class _CopySettingModal(FormModal):
    """One setting of an existing copy: a validated field, a refusal line, Save/Cancel."""

    FIELD = ""  # the id of the validated Input; its error line is FIELD-error

    def __init__(self, group: str, account: str) -> None:
        super().__init__()
        self.group = group
        self.account = account

    def on_mount(self) -> None:
        self.query_one(f"#{self.FIELD}-error", Static).display = False
        self.query_one("#refusal", Static).display = False
        self.query_one(f"#{self.FIELD}", Input).focus()

    @on(Input.Changed)
    def _typed(self, event: Input.Changed) -> None:
        ok = _show_validation(event.input, self.query_one(f"#{self.FIELD}-error", Static))
        self.query_one("#refusal", Static).display = False
        self.query_one("#save", Button).disabled = not ok

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(False)

    def _footer(self) -> ComposeResult:
        """The engine's refusal, if any, then Cancel and Save."""
        yield Static(id="refusal", classes="refusal")
        with Horizontal(classes="modal-buttons"):
            yield Button("Cancel", id="cancel")
            yield Button("Save", id="save", variant="primary")

    def _valid_field(self) -> Input | None:
        """The field, if its value passes its rule (the rule is shown otherwise)."""
        field = self.query_one(f"#{self.FIELD}", Input)
        if not _show_validation(field, self.query_one(f"#{self.FIELD}-error", Static)):
            return None
        return field


class InvestmentModal(_CopySettingModal):
    """Raise or lower a copy's investment (SPEC 5)."""

    FIELD = "amount"

    def _problem(self, text: str) -> str | None:
        low, high = investment_bounds(self.engine, self.group, self.account)
        return investment_problem(text, low, high)

    def compose(self) -> ComposeResult:
        copy = copy_row(self.engine, self.group, self.account)
        assert copy is not None
        low, high = investment_bounds(self.engine, self.group, self.account)
        with Vertical(classes="modal"):
            yield Label(literal(f"Investment of {self.account}'s copy of {self.group}"),
                        classes="modal-title")
            yield Static(literal(
                f"Now {_amount(copy.investment)}. Between {_amount(low)} and {_amount(high)}: "
                f"a raise comes from {self.account}'s available funds; a lowering never goes "
                f"below {MIN_INVESTMENT} nor what the copy's margin uses, and returns to the "
                "balance."), classes="hint")
            yield Input(value=f"{copy.investment.normalize():f}", id="amount",
                        validators=[Rule(self._problem)])
            yield Static(id="amount-error", classes="error")
            yield from self._footer()

    @on(Button.Pressed, "#save")
    @on(Input.Submitted)
    async def save(self) -> None:
        input_ = self._valid_field()
        if input_ is None:
            return
        value = parse_amount(input_.value)
        assert value is not None
        group, account = self.group, self.account
        await self.run_command(lambda e: e.set_investment(group, account, value),
                               f"Smart Sync: investment of {account}'s copy of {group} "
                               f"set to {value.normalize():f}")


class StopLossModal(_CopySettingModal):
    """Change a copy's total stop loss and what happens when it is hit."""

    FIELD = "stop-loss"

    def compose(self) -> ComposeResult:
        copy = copy_row(self.engine, self.group, self.account)
        assert copy is not None
        with Vertical(classes="modal"):
            yield Label(literal(f"Stop loss of {self.account}'s copy of {self.group}"),
                        classes="modal-title")
            yield Static("The copy stops when its realized + unrealized PnL reaches minus "
                         "this amount. Empty: no stop loss.", classes="hint")
            yield Input(value=f"{copy.stop_loss.normalize():f}" if copy.stop_loss else "",
                        placeholder="empty: no stop loss", id="stop-loss",
                        validators=[Rule(stop_loss_problem)])
            yield Static(id="stop-loss-error", classes="error")
            yield Label("When the stop loss is hit", classes="field-label")
            yield Select(ON_STOP_CHOICES, value=copy.on_stop.value, allow_blank=False,
                         id="on-stop")
            yield from self._footer()

    @on(Button.Pressed, "#save")
    @on(Input.Submitted)
    async def save(self) -> None:
        input_ = self._valid_field()
        if input_ is None:
            return
        stop_loss = parse_amount(input_.value) if input_.value.strip() else None
        on_stop = OnStop(str(self.query_one("#on-stop", Select).value))
        group, account = self.group, self.account
        shown = f"{stop_loss.normalize():f}" if stop_loss is not None else "none"
        await self.run_command(lambda e: e.smart.set_stop_loss(group, account, stop_loss,
                                                               on_stop),
                               f"Smart Sync: stop loss of {account}'s copy of {group} set to "
                               f"{shown} ({on_stop.value})")


class CopyDetailScreen(Screen[None]):
    """One copy: its numbers, positions, fills, investment changes and failures."""

    DEFAULT_CSS = """
    CopyDetailScreen { padding: 0 1; }
    CopyDetailScreen DataTable { height: auto; max-height: 10; }
    CopyDetailScreen #copy-summary { height: auto; }
    """
    BINDINGS = [Binding("escape", "app.pop_screen", "Back")]

    def __init__(self, group: str, account: str) -> None:
        super().__init__()
        self.group = group
        self.account = account

    def compose(self) -> ComposeResult:
        yield Label(literal(f"Copy of {self.group} by {self.account}"), classes="section")
        yield Static(id="copy-summary")
        yield Label("Positions", classes="section")
        yield DataTable(id="copy-positions", cursor_type="none", zebra_stripes=True)
        yield Label("Fills", classes="section")
        yield DataTable(id="copy-fills", cursor_type="none", zebra_stripes=True)
        yield Label("Investment changes", classes="section")
        yield DataTable(id="copy-investments", cursor_type="none")
        yield Label("Failures", classes="section")
        yield DataTable(id="copy-failures", cursor_type="none")
        yield Footer()

    def on_mount(self) -> None:
        for table, columns in (
                ("#copy-positions", ("Symbol", "Qty", "Avg price", "Leverage", "Mode",
                                     "Margin", "Unrealized")),
                ("#copy-fills", ("Time", "Symbol", "Side", "Qty", "Price", "Realized", "Fee",
                                 "Cause")),
                ("#copy-investments", ("Time", "Change", "Investment")),
                ("#copy-failures", ("Time", "Symbol", "Reason", "Message"))):
            self.query_one(table, DataTable).add_columns(*columns)
        self.render_detail()

    def on_desk_changed(self, message: DeskChanged) -> None:
        self.render_detail()

    def render_detail(self) -> None:
        detail = copy_detail(_sync_app(self).desk.engine, self.group, self.account)
        for table in self.query(DataTable):
            table.clear()
        if detail is None:
            self.query_one("#copy-summary", Static).update("This copy no longer exists.")
            return
        row = detail.row
        stop = (f"{_amount(row.stop_loss)} ({row.on_stop.value})" if row.stop_loss is not None
                else "none")
        summary = Text()
        summary.append(f"Status {row.status.value}   Investment {_amount(row.investment)}   "
                       f"Equity {_amount(row.equity)}   Available {_amount(detail.available)}"
                       f"   Used margin {_amount(detail.used_margin)}\nRealized ")
        realized, unrealized = money(row.realized), money(row.unrealized)
        summary.append(realized.plain, style=realized.style)
        summary.append("   Unrealized ")
        summary.append(unrealized.plain, style=unrealized.style)
        summary.append(f"   Stop loss {stop}   Open positions copied at follow: "
                       f"{'yes' if detail.copy_open_positions else 'no'}\n")
        since = detail.recorded_since.strftime("%Y-%m-%d %H:%M:%S")
        summary.append(f"Fills and investment changes recorded since {since} (this session).",
                       style="dim")
        self.query_one("#copy-summary", Static).update(summary)
        positions = self.query_one("#copy-positions", DataTable)
        for p in detail.positions:
            positions.add_row(literal(p.symbol), qty(p.qty), price(p.avg_price, p.symbol),
                              f"{p.leverage}x" if p.leverage else "-", p.margin_mode or "-",
                              _amount(p.margin), money(p.unrealized))
        if not detail.positions:
            positions.add_row("(none)", "", "", "", "", "", "")
        fills = self.query_one("#copy-fills", DataTable)
        for f in reversed(detail.fills):
            fills.add_row(f.at.strftime("%H:%M:%S"), literal(f.symbol), f.side,
                          qty(f.qty).lstrip("+"),
                          price(f.price, f.symbol), money(f.realized), _amount(f.fee),
                          f.cause.replace("_", " "))
        if not detail.fills:
            fills.add_row("(none)", "", "", "", "", "", "", "")
        changes = self.query_one("#copy-investments", DataTable)
        for c in detail.investment_changes:
            changes.add_row(c.at.strftime("%H:%M:%S"), literal(c.what), _amount(c.investment))
        if not detail.investment_changes:
            changes.add_row("(none)", "", "")
        failures = self.query_one("#copy-failures", DataTable)
        for fail in detail.failures:
            failures.add_row(fail.at.strftime("%H:%M:%S"), literal(fail.symbol),
                             fail.reason.value, literal(fail.message))
        if not detail.failures:
            failures.add_row("(none)", "", "", "")


COLUMNS = [("key", "Copy"), ("status", "Status"), ("investment", "Investment"),
           ("equity", "Equity"), ("realized", "Realized"), ("unrealized", "Unrealized"),
           ("pnl", "P&L"), ("roi", "ROI"), ("positions", "Positions"), ("stop", "Stop loss")]


def _cells(row: CopyRow) -> dict[str, object]:
    stop = (f"{_amount(row.stop_loss)} ({row.on_stop.value})" if row.stop_loss is not None
            else "none")
    key = literal(row.key)
    if not row.connected:  # its broker is disconnected: the copy's orders wait
        key.append(f"  {row.broker} {OFFLINE}", style="bold red")
    return {"key": key, "status": row.status.value,
            "investment": _amount(row.investment),
            "equity": _amount(row.equity), "realized": money(row.realized),
            "unrealized": money(row.unrealized), "pnl": money(row.pnl),
            "roi": percent(row.roi),
            "positions": str(row.positions), "stop": stop}


def totals_text(totals: CopyTotals) -> Text:
    """My Copies' foot: the copies at work, summed."""
    if not totals.copies:
        return Text("No copy at work.", style="dim")
    text = Text(f"{totals.copies} {'copy' if totals.copies == 1 else 'copies'} at work  "
                "invested ", style="dim")
    text.append(_amount(totals.investment))
    text.append("  equity ", style="dim")
    text.append(_amount(totals.equity))
    text.append("  P&L ", style="dim")
    text.append_text(plain(money(totals.pnl)))
    text.append("  ROI ", style="dim")
    text.append_text(plain(percent(totals.roi)))
    return text


class CopiesScreen(Screen[None]):
    """My Copies: every Smart Sync copy, with its settings and its PnL."""

    DEFAULT_CSS = """
    CopiesScreen { padding: 0 1; }
    CopiesScreen #copies { height: 1fr; }
    CopiesScreen #copies-hint { height: auto; color: $text-muted; }
    CopiesScreen #copies-totals { height: 1; }
    """
    BINDINGS = [
        Binding("escape", "app.dashboard", "Back"),
        Binding("n", "new_copy", "New copy"),
        Binding("enter", "details", "Details"),
        Binding("i", "investment", "Investment"),
        Binding("s", "stop_loss", "Stop loss"),
        Binding("u", "unfollow", "Unfollow"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.sorting = SortState()
        self._shown: dict[str, CopyRow] = {}  # the rows on screen, by key

    @property
    def engine(self) -> Engine:
        return _sync_app(self).desk.engine

    def compose(self) -> ComposeResult:
        yield Label("My Copies (Smart Sync)", classes="section")
        yield DataTable(id="copies", cursor_type="row", zebra_stripes=True)
        yield Static(id="copies-totals")
        yield Static("n new copy   enter details   i investment   s stop loss   u unfollow",
                     id="copies-hint")
        yield Footer()

    def on_mount(self) -> None:
        copy_journal(self.engine)  # the copies' history is recorded from now on
        table = self.query_one("#copies", DataTable)
        for key, label in COLUMNS:
            table.add_column(label, key=key)
        self.refresh_rows()
        table.focus()

    def on_desk_changed(self, message: DeskChanged) -> None:
        self.refresh_rows()

    def on_screen_resume(self) -> None:
        self.refresh_rows()

    def refresh_rows(self) -> None:
        """Update the table by row key: add, update, remove; never clear."""
        table = self.query_one("#copies", DataTable)
        rows = copy_rows(self.engine)
        self._shown = {r.key: r for r in rows}
        keys = {r.key for r in rows}
        for key in [k for k in table.rows if k.value not in keys]:
            table.remove_row(key)
        present = {k.value for k in table.rows}
        for row in rows:
            cells = _cells(row)
            if row.key not in present:
                table.add_row(*(cells[c] for c, _ in COLUMNS), key=row.key)
                continue
            for column, value in cells.items():
                if str(table.get_cell(row.key, column)) != str(value):
                    table.update_cell(row.key, column, value, update_width=column == "key")
        self.sorting.apply(table)
        self.query_one("#copies-totals", Static).update(totals_text(copy_totals(rows)))

    @on(DataTable.HeaderSelected, "#copies")
    def _sort(self, event: DataTable.HeaderSelected) -> None:
        self.sorting.header_selected(event)

    def selected(self) -> tuple[str, str] | None:
        table = self.query_one("#copies", DataTable)
        if table.row_count == 0:
            self.notify("No copy yet: n makes one.", severity="warning", markup=False)
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        assert key is not None
        row = self._shown.get(key)
        return (row.group, row.account) if row is not None else None

    def _after(self, changed: bool | None) -> None:
        self.refresh_rows()

    def action_new_copy(self) -> None:
        self.app.push_screen(CopyDialog(), self._after)

    @on(DataTable.RowSelected, "#copies")
    def _row_selected(self) -> None:
        self.action_details()

    def action_details(self) -> None:
        chosen = self.selected()
        if chosen:
            self.app.push_screen(CopyDetailScreen(*chosen))

    def _live(self) -> tuple[str, str] | None:
        chosen = self.selected()
        if chosen is None:
            return None
        copy = copy_row(self.engine, *chosen)
        if copy is None:
            return None
        if copy.status is CopyStatus.ENDED:
            self.notify(f"{copy.key} has ended: n follows again.", severity="warning", markup=False)
            return None
        return chosen

    def action_investment(self) -> None:
        chosen = self._live()
        if chosen is None:
            return
        copy = copy_row(self.engine, *chosen)
        if copy is not None and copy.status is CopyStatus.STOPPED:
            self.notify("A stopped copy's investment cannot be changed: unfollow it.",
                        severity="warning", markup=False)
            return
        self.app.push_screen(InvestmentModal(*chosen), self._after)

    def action_stop_loss(self) -> None:
        chosen = self._live()
        if chosen:
            self.app.push_screen(StopLossModal(*chosen), self._after)

    def action_unfollow(self) -> None:
        chosen = self._live()
        if chosen is None:
            return
        group, account = chosen
        detail = copy_detail(self.engine, group, account)
        assert detail is not None
        copy = detail.row
        held = len(detail.positions)
        positions = (f"its {held} open position{'s' if held != 1 else ''} close at market"
                     if held and not copy.funds_returned else "it holds no open position")
        funds = ("its funds (investment + realized PnL, "
                 f"{_amount(copy.investment + detail.row.realized)} now) return to "
                 f"{account}'s balance" if not copy.funds_returned
                 else "its funds are already back in the balance")
        app = _sync_app(self)

        async def answered(yes: bool | None) -> None:
            if not yes:
                return
            what = f"Smart Sync: {account} unfollows {group}"
            error = await app.desk.run(lambda e: e.unfollow(group, account), what)
            if error is not None:
                self.notify(error, title="Refused", severity="error", markup=False)
            else:
                app.log_action(group, what)
            self.refresh_rows()

        self.app.push_screen(ConfirmModal(
            f"Unfollow {group} with {account}?",
            f"{account}'s copy of {group} ends: {positions}, and {funds}.", "Unfollow"),
            answered)
