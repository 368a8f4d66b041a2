"""The scenario file format (SPEC 7), validated with pydantic.

Two levels of wrong: the starting world (prices, instruments, brokers,
accounts, groups) and the shape of `steps` must be right, or the file is not
a scenario at all and is refused whole. A single step with bad input is
refused on its own when it runs, so the replay lists it in `errors` and goes
on, as SPEC 7 asks.

Every number is bounded where it enters (`Number`, `WholeNumber`, see
`synctui.domain.numbers`), and the file itself must be a regular file of at
most 16 MiB of UTF-8 JSON, nested at most 100 levels, with no lone surrogate:
anything else is refused with one line, before it can hang or crash a replay.
"""

from __future__ import annotations

import json
import os
import stat
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from synctui.domain.numbers import bounded


class ScenarioError(Exception):
    """The file is not a valid scenario. The message names the bad field."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _bounded_number(value: Any) -> Any:
    """Bound a number before pydantic converts it: converting `1e-999999999` to an
    int, or comparing far-apart exponents, is where a hostile file hung. Anything
    that is not a number passes through for pydantic to refuse in its own words."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
        return value
    if isinstance(value, str):
        try:
            Decimal(value.strip())
        except InvalidOperation:
            return value
    return bounded(str(value) if isinstance(value, float) else value)


def _bounded_whole(value: Any) -> Any:
    """As `_bounded_number`, then a whole Decimal becomes an int (cheap once bounded)."""
    number = _bounded_number(value)
    if isinstance(number, Decimal) and number == number.to_integral_value():
        return int(number)
    return number


# Every Decimal in a scenario, top level and in steps: finite and bounded.
Number = Annotated[Decimal, BeforeValidator(_bounded_number), Field(allow_inf_nan=False)]
# Every int (a max leverage): bounded the same way before it is converted.
WholeNumber = Annotated[int, BeforeValidator(_bounded_whole)]
# Far beyond any real amount, and small enough for exact 28-digit arithmetic.
Money = Annotated[Number, Field(lt=Decimal("1e15"), gt=Decimal("-1e15"))]


class InstrumentSpec(_Model):
    symbol: str = Field(min_length=1)
    family: str = Field(min_length=1)
    kind: Literal["future", "perp"] | None = Field(
        default=None, validation_alias=AliasChoices("kind", "type"))
    name: str = ""
    multiplier: Number = Decimal(1)
    tick: Number = Field(gt=0)
    qty_step: Number | None = Field(default=None, gt=0,
                                    validation_alias=AliasChoices("qty_step", "step"))
    min_qty: Number | None = Field(default=None, gt=0)
    margin_per_contract: Number | None = Field(
        default=None, gt=0, validation_alias=AliasChoices("margin_per_contract", "margin"))
    max_leverage: WholeNumber | None = Field(default=None, ge=1)
    maintenance_margin_rate: Number | None = Field(
        default=None, ge=0, lt=1, validation_alias=AliasChoices("maintenance_margin_rate", "mmr"))
    market: Literal["futures", "perps"] | None = None  # SPEC 9: another way to say the kind


MarketName = Literal["futures", "perps"]
MARKETS: tuple[MarketName, ...] = ("futures", "perps")


class FaultSpec(_Model):
    """SPEC 9's seeded faults of a simulated broker; probabilities from 0 to 1."""

    seed: WholeNumber = Field(default=0, ge=0)
    reject: Number = Field(default=Decimal(0), ge=0, le=1)
    timeout: Number = Field(default=Decimal(0), ge=0, le=1)
    timeout_reached: Number = Field(default=Decimal(0), ge=0, le=1)
    partial: Number = Field(default=Decimal(0), ge=0, le=1)


class BrokerSpec(_Model):
    fee_per_contract: Money = Field(default=Decimal(0), ge=0)
    slippage_ticks: Money = Field(default=Decimal(0), ge=0)
    naming: Literal["plain", "tradovate", "projectx"] = "plain"
    markets: list[MarketName] = Field(default_factory=lambda: list(MARKETS),
                                      min_length=1)  # SPEC 9: what it trades
    faults: FaultSpec = Field(default_factory=lambda: FaultSpec())  # SPEC 9
    # seconds before the broker answers an order (the demo's late broker); a replay's
    # broker answers late orders at its `wait` steps
    ack_delay: Number = Field(default=Decimal(0), ge=0, le=60)



class RiskSpec(_Model):
    daily_loss_limit: Money | None = Field(default=None, gt=0)
    max_drawdown: Money | None = Field(default=None, gt=0)


class AccountSpec(_Model):
    id: str = Field(min_length=1)
    broker: str = "sim"
    balance: Money = Field(ge=0)
    risk: RiskSpec | None = None
    name: str = ""


class GroupSpec(_Model):
    name: str
    leader: str | None = None
    followers: list[str] = Field(default_factory=list)
    signal_expiry: Number | None = Field(default=None, gt=0)  # seconds (SPEC 9)


class Scenario(BaseModel):
    """The whole file. Unknown top-level keys (`description`, `expect`) are allowed."""

    model_config = ConfigDict(extra="allow", frozen=True)

    prices: dict[str, Money] = Field(default_factory=dict)
    instruments: list[InstrumentSpec] = Field(default_factory=list)
    brokers: dict[str, BrokerSpec] = Field(default_factory=lambda: {"sim": BrokerSpec()})
    accounts: list[AccountSpec] = Field(default_factory=list)
    groups: list[GroupSpec] = Field(default_factory=list)
    steps: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator("instruments")
    @classmethod
    def _one_definition_each(cls, instruments: list[InstrumentSpec]) -> list[InstrumentSpec]:
        """A symbol defined twice is ambiguous (and the store keeps one row per symbol)."""
        seen: set[str] = set()
        for index, spec in enumerate(instruments):
            if spec.symbol in seen:
                raise ScenarioError(
                    f"instruments[{index}].symbol: {shown(spec.symbol)} is defined twice")
            seen.add(spec.symbol)
        return instruments

    @field_validator("steps")
    @classmethod
    def _known_ops(cls, steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for index, step in enumerate(steps):
            check_op(index, step)
        return steps


def check_op(index: int, step: Any) -> None:
    """A step must be an object with a known op, or the file is not a scenario."""
    if not isinstance(step, dict):
        raise ScenarioError(f"steps[{index}]: must be an object with an op")
    op = step.get("op")
    if not isinstance(op, str) or op not in STEP_MODELS:
        known = ", ".join(sorted(STEP_MODELS))
        what = f"unknown op {shown(op)}" if isinstance(op, str) else "must be a string"
        raise ScenarioError(f"steps[{index}].op: {what} (known: {known})")


def one_line(text: str, limit: int = 400) -> str:
    """`text` safe to print as one line: control and other unprintable characters
    (newlines, escapes, lone surrogates) written as Python escapes, and at most
    `limit` characters, so a message can neither span lines nor flood a terminal."""
    if len(text) > limit:
        text = text[:limit] + "..."
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in text)


def shown(value: object, limit: int = 40) -> str:
    """A value from the file echoed back in a message: its repr, one line, short."""
    if isinstance(value, str) and len(value) > limit:
        value = value[:limit]
    return one_line(repr(value), limit)


# --- steps ----------------------------------------------------------------------

Side = Literal["buy", "sell"]


class _Step(_Model):
    """A step. `comment` and friends are allowed anywhere, for people reading the file."""

    comment: str | None = None
    description: str | None = None
    note: str | None = None


class PriceStep(_Step):
    op: Literal["price"]
    symbol: str
    price: Number


class OrderStep(_Step):
    op: Literal["order"]
    account: str
    symbol: str
    side: Side
    qty: Number | None = None
    margin: Number | None = None
    type: Literal["market", "limit", "stop"] = "market"
    price: Number | None = None
    stop_loss: Number | None = None
    take_profit: Number | None = None
    leverage: Number | None = None
    margin_mode: Literal["cross", "isolated"] | None = None
    ref: str | None = None


class ModifyStep(_Step):
    op: Literal["modify"]
    ref: str
    price: Number


class CancelStep(_Step):
    op: Literal["cancel"]
    ref: str


class SetLeverageStep(_Step):
    op: Literal["set_leverage"]
    account: str
    symbol: str
    leverage: Number


class AdjustMarginStep(_Step):
    op: Literal["adjust_margin"]
    account: str
    symbol: str
    amount: Number


class CreateGroupStep(_Step):
    op: Literal["create_group"]
    name: str
    leader: str | None = None
    followers: list[str] = Field(default_factory=list)
    signal_expiry: Number | None = Field(default=None, gt=0)  # seconds (SPEC 9)


class SetLeaderStep(_Step):
    op: Literal["set_leader"]
    group: str
    account: str


class RemoveLeaderStep(_Step):
    op: Literal["remove_leader"]
    group: str
    account: str | None = None


class FollowersStep(_Step):
    op: Literal["add_followers", "remove_followers"]
    group: str
    accounts: list[str]


class GroupStep(_Step):
    op: Literal["activate", "pause", "flatten_all", "cancel_orders"]
    group: str


class RatioStep(_Step):
    op: Literal["ratio"]
    group: str
    follower: str
    symbol: str
    ratio: Number


class SyncStep(_Step):
    op: Literal["sync"]
    group: str
    follower: str | None = None
    symbol: str
    on: StrictBool


class CrossStep(_Step):
    op: Literal["cross"]
    group: str
    follower: str
    symbol: str
    to: str | None


class FollowStep(_Step):
    op: Literal["follow"]
    group: str
    account: str
    mode: str
    investment: Number
    copy_open_positions: StrictBool = False
    stop_loss: Number | None = None
    on_stop: Literal["close", "keep"] = "close"


class SetInvestmentStep(_Step):
    op: Literal["set_investment"]
    group: str
    account: str
    investment: Number


class UnfollowStep(_Step):
    op: Literal["unfollow"]
    group: str
    account: str


class FlattenPositionStep(_Step):
    op: Literal["flatten_position"]
    account: str
    symbol: str


class BareStep(_Step):
    op: Literal["emergency_stop", "restart"]


class ResetBreachStep(_Step):
    op: Literal["reset_breach"]
    account: str


class BrokerStep(_Step):
    op: Literal["disconnect", "reconnect"]
    broker: str


class WaitStep(_Step):
    op: Literal["wait"]
    seconds: Number = Field(ge=0, le=Decimal(10**9))


class ResyncStep(_Step):
    op: Literal["resync"]
    group: str
    follower: str
    symbol: str


Step = Annotated[
    PriceStep | OrderStep | ModifyStep | CancelStep | SetLeverageStep | AdjustMarginStep
    | CreateGroupStep | SetLeaderStep | RemoveLeaderStep | FollowersStep | GroupStep
    | RatioStep | SyncStep | CrossStep | FollowStep | SetInvestmentStep | UnfollowStep
    | FlattenPositionStep | BareStep | ResetBreachStep | ResyncStep | BrokerStep | WaitStep,
    Field(discriminator="op"),
]

STEP_MODELS: dict[str, type[_Step]] = {
    "price": PriceStep, "order": OrderStep, "modify": ModifyStep, "cancel": CancelStep,
    "set_leverage": SetLeverageStep, "adjust_margin": AdjustMarginStep,
    "create_group": CreateGroupStep, "set_leader": SetLeaderStep,
    "remove_leader": RemoveLeaderStep, "add_followers": FollowersStep,
    "remove_followers": FollowersStep, "activate": GroupStep, "pause": GroupStep,
    "flatten_all": GroupStep, "cancel_orders": GroupStep, "ratio": RatioStep,
    "sync": SyncStep, "cross": CrossStep, "follow": FollowStep,
    "set_investment": SetInvestmentStep, "unfollow": UnfollowStep,
    "flatten_position": FlattenPositionStep, "emergency_stop": BareStep, "restart": BareStep,
    "reset_breach": ResetBreachStep, "resync": ResyncStep,
    "disconnect": BrokerStep, "reconnect": BrokerStep, "wait": WaitStep,
}

_STEP = TypeAdapter[Step](Step)


def describe(error: ValidationError, skip: int = 0) -> str:
    """One line naming the first bad field, e.g. `accounts[1].balance: ...`.

    `skip` drops leading path parts that are not fields (a step's op tag).
    """
    first = error.errors()[0]
    path = _spell(tuple(p if isinstance(p, int) else str(p) for p in first["loc"][skip:]))
    message = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "is not a field here"
    elif first["type"] == "missing":
        message = "is required"
    message = one_line(message)
    return f"{path}: {message}" if first["loc"][skip:] else message


def parse_step(raw: dict[str, Any]) -> Step:
    """Validate one step; a `ValueError` carries a message naming the bad field."""
    try:
        return _STEP.validate_python(raw)
    except ValidationError as error:
        raise ValueError(describe(error, skip=1)) from None


# Generous: the demo desk is 6 KiB. Reading stops here, so /dev/zero-like input
# (or a file still growing) cannot eat the machine's memory.
MAX_FILE_BYTES = 16 * 2**20
# Scenarios nest 4 levels (steps, a step, its followers); `expect` blocks a few more.
MAX_DEPTH = 100


def load_scenario(path: Path) -> Scenario:
    """Read and validate a scenario file. Numbers become `Decimal` as written,
    never binary floats: 0.002 stays 0.002."""
    data = _read(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ScenarioError(f"{path} is not UTF-8 text (a bad byte at offset {error.start})"
                            ) from None
    return parse_scenario(text, str(path))


def _read(path: Path) -> bytes:
    """The bytes of a regular file of at most MAX_FILE_BYTES. A FIFO would block the
    open until a writer came, a device like /dev/zero never ends: both are refused
    before they are read (opened non-blocking, checked again on the open file)."""
    too_big = (f"{path} is larger than {MAX_FILE_BYTES // 2**20} MiB, "
               "the most a scenario file may hold")
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise ScenarioError(f"{path} is not a regular file")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as file:
            info = os.fstat(file.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise ScenarioError(f"{path} is not a regular file")
            if info.st_size > MAX_FILE_BYTES:
                raise ScenarioError(too_big)
            data = file.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        raise ScenarioError(f"cannot read {path}: {error.strerror or error}") from None
    except ValueError as error:  # a NUL in the path
        raise ScenarioError(f"cannot read {path}: {error}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ScenarioError(too_big)
    return data


class _NotJson(ValueError):
    """A JSON text Python would accept but JSON does not (NaN, Infinity)."""


def _no_constant(name: str) -> Any:
    raise _NotJson(f"{name} is not a JSON number")


def _whole(text: str) -> int | Decimal:
    """A JSON integer. A long one becomes a Decimal: `int()` refuses more than 4300
    digits with a ValueError; as a Decimal it reaches the field, whose bound names it."""
    return int(text) if len(text) <= 30 else Decimal(text)


def _check_tree(raw: object) -> None:
    """Refuse nesting deeper than MAX_DEPTH and lone surrogates (`"\\ud800"`: valid
    JSON escapes, but not text; SQLite and a terminal cannot take them), naming where.
    Iterative, so no depth of input can overflow the stack here; a path is kept as
    its parts and spelled out only for the message."""
    todo: list[tuple[object, tuple[str | int, ...]]] = [(raw, ())]
    while todo:
        node, path = todo.pop()
        if len(path) > MAX_DEPTH:
            raise ScenarioError(f"{_spell(path)}: nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, dict):
            for key, child in node.items():
                _check_text(key, path)
                todo.append((child, (*path, key)))
        elif isinstance(node, list):
            todo.extend((child, (*path, i)) for i, child in enumerate(node))
        elif isinstance(node, str):
            _check_text(node, path)


def _spell(path: tuple[str | int, ...]) -> str:
    """`steps[3].account`, each key one line and short; the first ten parts at most."""
    text = ""
    for part in path[:10]:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            name = one_line(part, 40)
            text += f".{name}" if text else name
    return (text + ("..." if len(path) > 10 else "")) or "the file"


def _check_text(text: str, path: tuple[str | int, ...]) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        bad = one_line(text[error.start])
        raise ScenarioError(f"{_spell(path)}: a lone surrogate ({bad}) is not text") from None


def parse_scenario(text: str, origin: str = "scenario") -> Scenario:
    try:
        raw = json.loads(text, parse_float=Decimal, parse_int=_whole,
                         parse_constant=_no_constant)
    except json.JSONDecodeError as error:
        raise ScenarioError(
            f"{origin} is not valid JSON: {error.msg} at line {error.lineno} "
            f"column {error.colno}") from None
    except _NotJson as error:
        raise ScenarioError(f"{origin} is not valid JSON: {error}") from None
    except RecursionError:
        raise ScenarioError(
            f"{origin} is nested too deeply (at most {MAX_DEPTH} levels)") from None
    _check_tree(raw)
    if not isinstance(raw, dict):
        raise ScenarioError(f"{origin} must hold a JSON object with prices, accounts and steps")
    steps = raw.get("steps")
    if isinstance(steps, list):
        for index, step in enumerate(steps):
            check_op(index, step)
    try:
        return Scenario.model_validate(raw)
    except ValidationError as error:
        raise ScenarioError(describe(error)) from None
