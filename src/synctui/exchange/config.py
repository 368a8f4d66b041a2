"""The desk's exchanges and accounts, from a TOML file a trader writes (issue 13).

    # ~/.config/synctui/config.toml (chmod 600), or `synctui --config PATH`
    [[exchanges]]
    name = "binance"            # the broker's name on the desk
    exchange = "binanceusdm"    # a ccxt exchange id
    testnet = true              # ccxt's sandbox mode: the exchange's own test host
    # base_url = "http://127.0.0.1:8765"   # or any host with the same paths

    [[exchanges.accounts]]
    id = "LEAD-BTC"
    api_key = { env = "BINANCE_LEAD_KEY" }
    secret = { keyring = "synctui/binance-lead" }   # service/username in the OS keyring

    [[groups]]
    name = "BTC perps"
    leader = "LEAD-BTC"
    followers = ["FOLLOW-1"]
    ratios = { FOLLOW-1 = 2 }   # every contract; 1 when not named

Keys and secrets are never in the file: each is named, and read from the
environment or the OS keyring when the desk opens. They are held only by the
ccxt client; nothing of synctui writes them (no database, log or screen). A file
others may read or write is refused, as ssh refuses a key that others can read.
"""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path
from typing import Annotated, Any

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from synctui.engine.world import OpenFailed
from synctui.scenario.model import describe, one_line


class ConfigError(OpenFailed):
    """The config cannot be used; the message says why in one line."""


def default_config_path() -> Path:
    return Path(platformdirs.user_config_dir("synctui", appauthor=False)) / "config.toml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Name = Annotated[str, Field(min_length=1, max_length=64)]


class SecretRef(_Strict):
    """Where a key or secret is: an environment variable, or the OS keyring as
    "service/username"."""

    env: Name | None = None
    keyring: Name | None = None

    @model_validator(mode="after")
    def _one(self) -> SecretRef:
        if (self.env is None) == (self.keyring is None):
            raise ValueError("name exactly one of env or keyring")
        if self.keyring is not None and "/" not in self.keyring:
            raise ValueError('keyring is "service/username"')
        return self

    def where(self) -> str:
        return f"environment variable {self.env}" if self.env else f"keyring {self.keyring}"


class AccountConfig(_Strict):
    id: Name
    api_key: SecretRef
    secret: SecretRef


class ExchangeConfig(_Strict):
    name: Name
    exchange: Name  # a ccxt id
    testnet: bool = False
    base_url: Annotated[str, Field(pattern=r"^https?://[^\s/]+(/\S*)?$")] | None = None
    accounts: Annotated[list[AccountConfig], Field(min_length=1)]


class GroupConfig(_Strict):
    name: Name
    leader: Name
    followers: list[Name] = []
    ratios: dict[str, Annotated[int, Field(ge=1, le=10)]] = {}


class DeskConfig(_Strict):
    exchanges: Annotated[list[ExchangeConfig], Field(min_length=1)]
    groups: list[GroupConfig] = []

    @model_validator(mode="after")
    def _names(self) -> DeskConfig:
        brokers = [e.name for e in self.exchanges]
        accounts = [a.id for e in self.exchanges for a in e.accounts]
        for what, names in (("exchange name", brokers), ("account id", accounts),
                            ("group name", [g.name for g in self.groups])):
            doubled = sorted({n for n in names if names.count(n) > 1})
            if doubled:
                raise ValueError(f"the {what} {doubled[0]!r} is used twice")
        for group in self.groups:
            for account in (group.leader, *group.followers, *group.ratios):
                if account not in accounts:
                    raise ValueError(f"group {group.name!r} names {account!r}, which is "
                                     "no account of an exchange here")
        return self


def _literal_secrets(raw: Any) -> str | None:
    """The first key or secret written into the file itself, by its place."""
    for e, exchange in enumerate(raw.get("exchanges", []) if isinstance(raw, dict) else []):
        for a, account in enumerate(exchange.get("accounts", [])
                                    if isinstance(exchange, dict) else []):
            for field in ("api_key", "secret"):
                if isinstance(account, dict) and isinstance(account.get(field), str):
                    return f"exchanges[{e}].accounts[{a}].{field}"
    return None


def load_config(path: Path) -> DeskConfig:
    """Read and check the file: private to its owner, TOML, every field known, no key
    or secret written in it. Raises ConfigError with one line."""
    shown = one_line(str(path))
    try:
        info = path.stat()
    except OSError as error:
        raise ConfigError(f"{shown}: cannot read the config ({error.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{shown}: the config is not a regular file")
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{shown}: others may read or change this config (mode "
                          f"{stat.S_IMODE(info.st_mode):o}); run chmod 600 {shown}")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{shown}: cannot read the config ({one_line(str(error))})") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{shown}: not TOML ({one_line(str(error))})") from None
    literal = _literal_secrets(raw)
    if literal is not None:
        raise ConfigError(f"{shown}: {literal} is written in the file: put it in an "
                          'environment variable or the OS keyring and name it, e.g. '
                          '{ env = "BINANCE_KEY" }')
    try:
        return DeskConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(f"{shown}: {describe(error)}") from None


def resolve(ref: SecretRef) -> str:
    """The key or secret itself, from where the config names it."""
    if ref.env is not None:
        value = os.environ.get(ref.env)
        if not value:
            raise ConfigError(f"the environment variable {ref.env} is not set")
        return value
    assert ref.keyring is not None
    import keyring
    from keyring.errors import KeyringError

    service, username = ref.keyring.split("/", 1)
    try:
        value = keyring.get_password(service, username)
    except KeyringError as error:
        raise ConfigError(f"the OS keyring cannot be read ({one_line(str(error))})") from None
    if not value:
        raise ConfigError(f"the OS keyring has nothing under {ref.keyring}")
    return value
