"""The scenario file format (SPEC 7), validated with pydantic.

Two levels of wrong: the starting world (prices, instruments, brokers,
accounts, groups) and the shape of `steps` must be right, or the file is not
a scenario at all and is refused whole. A single step with bad input is
refused on its own when it runs, so the replay lists it in `errors` and goes
on, as SPEC 7 asks.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    TypeAdapter,
    ValidationError,
    field_validator,
)


class ScenarioError(Exception):
    """The file is not a valid scenario. The message names the bad field."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Far beyond any real amount, and small enough for exact 28-digit arithmetic.
Money = Annotated[Decimal, Field(allow_inf_nan=False, lt=Decimal("1e15"), gt=Decimal("-1e15"))]


class InstrumentSpec(_Model):
    symbol: str = Field(min_length=1)
    family: str = Field(min_length=1)
    kind: Literal["future", "perp"] | None = Field(
        default=None, validation_alias=AliasChoices("kind", "type"))
    name: str = ""
    multiplier: Decimal = Decimal(1)
    tick: Decimal = Field(gt=0)
    qty_step: Decimal | None = Field(default=None, gt=0,
                                     validation_alias=AliasChoices("qty_step", "step"))
    min_qty: Decimal | None = Field(default=None, gt=0)
    margin_per_contract: Decimal | None = Field(
        default=None, gt=0, validation_alias=AliasChoices("margin_per_contract", "margin"))
    max_leverage: int | None = Field(default=None, ge=1)
    maintenance_margin_rate: Decimal | None = Field(
        default=None, ge=0, lt=1, validation_alias=AliasChoices("maintenance_margin_rate", "mmr"))
    market: Literal["futures", "perps"] | None = None  # SPEC 9: another way to say the kind


MarketName = Literal["futures", "perps"]
MARKETS: tuple[MarketName, ...] = ("futures", "perps")


class BrokerSpec(_Model):
    fee_per_contract: Money = Field(default=Decimal(0), ge=0)
    slippage_ticks: Money = Field(default=Decimal(0), ge=0)
    naming: Literal["plain", "tradovate", "projectx"] = "plain"
    markets: list[MarketName] = Field(default_factory=lambda: list(MARKETS),
                                      min_length=1)  # SPEC 9: what it trades


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


class Scenario(BaseModel):
    """The whole file. Unknown top-level keys (`description`, `expect`) are allowed."""

    model_config = ConfigDict(extra="allow", frozen=True)

    prices: dict[str, Money] = Field(default_factory=dict)
    instruments: list[InstrumentSpec] = Field(default_factory=list)
    brokers: dict[str, BrokerSpec] = Field(default_factory=lambda: {"sim": BrokerSpec()})
    accounts: list[AccountSpec] = Field(default_factory=list)
    groups: list[GroupSpec] = Field(default_factory=list)
    steps: list[dict[str, Any]] = Field(default_factory=list)

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
    if op not in STEP_MODELS:
        known = ", ".join(sorted(STEP_MODELS))
        raise ScenarioError(f"steps[{index}].op: unknown op {op!r} (known: {known})")


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
    price: Decimal


class OrderStep(_Step):
    op: Literal["order"]
    account: str
    symbol: str
    side: Side
    qty: Decimal | None = None
    margin: Decimal | None = None
    type: Literal["market", "limit", "stop"] = "market"
    price: Decimal | None = None
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    leverage: Decimal | None = None
    margin_mode: Literal["cross", "isolated"] | None = None
    ref: str | None = None


class ModifyStep(_Step):
    op: Literal["modify"]
    ref: str
    price: Decimal


class CancelStep(_Step):
    op: Literal["cancel"]
    ref: str


class SetLeverageStep(_Step):
    op: Literal["set_leverage"]
    account: str
    symbol: str
    leverage: Decimal


class AdjustMarginStep(_Step):
    op: Literal["adjust_margin"]
    account: str
    symbol: str
    amount: Decimal


class CreateGroupStep(_Step):
    op: Literal["create_group"]
    name: str
    leader: str | None = None
    followers: list[str] = Field(default_factory=list)


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
    ratio: Decimal


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
    investment: Decimal
    copy_open_positions: StrictBool = False
    stop_loss: Decimal | None = None
    on_stop: Literal["close", "keep"] = "close"


class SetInvestmentStep(_Step):
    op: Literal["set_investment"]
    group: str
    account: str
    investment: Decimal


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


class ResyncStep(_Step):
    op: Literal["resync"]
    group: str
    follower: str
    symbol: str


Step = Annotated[
    PriceStep | OrderStep | ModifyStep | CancelStep | SetLeverageStep | AdjustMarginStep
    | CreateGroupStep | SetLeaderStep | RemoveLeaderStep | FollowersStep | GroupStep
    | RatioStep | SyncStep | CrossStep | FollowStep | SetInvestmentStep | UnfollowStep
    | FlattenPositionStep | BareStep | ResetBreachStep | ResyncStep,
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
}

_STEP = TypeAdapter[Step](Step)


def describe(error: ValidationError, skip: int = 0) -> str:
    """One line naming the first bad field, e.g. `accounts[1].balance: ...`.

    `skip` drops leading path parts that are not fields (a step's op tag).
    """
    first = error.errors()[0]
    path = ""
    for part in first["loc"][skip:]:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    message = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "is not a field here"
    elif first["type"] == "missing":
        message = "is required"
    return f"{path}: {message}" if path else message


def parse_step(raw: dict[str, Any]) -> Step:
    """Validate one step; a `ValueError` carries a message naming the bad field."""
    try:
        return _STEP.validate_python(raw)
    except ValidationError as error:
        raise ValueError(describe(error, skip=1)) from None


def load_scenario(path: Path) -> Scenario:
    """Read and validate a scenario file. Numbers become `Decimal` as written,
    never binary floats: 0.002 stays 0.002."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ScenarioError(f"cannot read {path}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise ScenarioError(f"{path} is not a text file") from None
    return parse_scenario(text, str(path))


def parse_scenario(text: str, origin: str = "scenario") -> Scenario:
    try:
        raw = json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as error:
        raise ScenarioError(
            f"{origin} is not valid JSON: {error.msg} at line {error.lineno} "
            f"column {error.colno}") from None
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
