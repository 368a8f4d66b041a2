"""The exchange config (issue 13, item 2): a TOML file, keys from the environment or the
OS keyring, never stored; and a desk opened from it against the loopback exchange."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path

import keyring
import pytest
from keyring.backend import KeyringBackend

from synctui.exchange.config import ConfigError, load_config, resolve
from synctui.exchange.live import ConfigDesk
from synctui.exchange.server import LoopbackExchange
from synctui.exchange.venue import ApiAccount, Venue
from synctui.tui.app import make_app

pytestmark = pytest.mark.usefixtures("loopback_only")

SECRETS = {"LEAD": ("key-lead-7f3a", "secret-lead-9c1e"),
           "F1": ("key-f1-2b8d", "secret-f1-5e0a")}


class MemoryKeyring(KeyringBackend):
    """A keyring backend holding passwords in memory: the keyring library's own API,
    with no OS service behind it (the CI machine has none)."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.store: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.store.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.store[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.store.pop((service, username), None)


@pytest.fixture
def memory_keyring() -> Iterator[MemoryKeyring]:
    before = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(before)


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


CONFIG = """
[[exchanges]]
name = "binance"
exchange = "binanceusdm"
base_url = "{url}"

[[exchanges.accounts]]
id = "LEAD"
api_key = {{ env = "SYNCTUI_TEST_LEAD_KEY" }}
secret = {{ keyring = "synctui-test/lead" }}

[[exchanges.accounts]]
id = "F1"
api_key = {{ env = "SYNCTUI_TEST_F1_KEY" }}
secret = {{ env = "SYNCTUI_TEST_F1_SECRET" }}

[[groups]]
name = "BTC perps"
leader = "LEAD"
followers = ["F1"]
ratios = {{ F1 = 3 }}
"""


def test_a_valid_config_names_its_secrets_and_holds_none(tmp_path: Path) -> None:
    config = load_config(write(tmp_path / "c.toml", CONFIG.format(url="http://127.0.0.1:1")))
    [exchange] = config.exchanges
    assert exchange.exchange == "binanceusdm" and not exchange.testnet
    assert exchange.accounts[0].api_key.env == "SYNCTUI_TEST_LEAD_KEY"
    assert exchange.accounts[0].secret.keyring == "synctui-test/lead"
    assert config.groups[0].ratios == {"F1": 3}


@pytest.mark.parametrize(("text", "mode", "words"), [
    (CONFIG.format(url="http://x"), 0o644, "chmod 600"),
    (CONFIG.format(url="http://x"), 0o660, "others may read or change"),
    (CONFIG.format(url="http://x").replace('{ env = "SYNCTUI_TEST_F1_SECRET" }',
                                           '"abc123"'),
     0o600, "exchanges[0].accounts[1].secret is written in the file"),
    (CONFIG.format(url="http://x").replace('name = "binance"', 'name = "binance"\nx = 1'),
     0o600, "exchanges[0].x: is not a field here"),
    (CONFIG.format(url="http://x").replace('followers = ["F1"]', 'followers = ["F9"]'),
     0o600, "names 'F9', which is no account"),
    ("[[exchanges]\n", 0o600, "not TOML"),
    (CONFIG.format(url="ftp://x"), 0o600, "base_url"),
    (CONFIG.format(url="http://x").replace('{ keyring = "synctui-test/lead" }',
                                           '{ env = "A", keyring = "b/c" }'),
     0o600, "exactly one of env or keyring"),
])
def test_a_bad_config_is_refused_in_one_line(tmp_path: Path, text: str, mode: int,
                                             words: str) -> None:
    path = write(tmp_path / "c.toml", text, mode)
    with pytest.raises(ConfigError, match=None) as refused:
        load_config(path)
    assert words in str(refused.value) and "\n" not in str(refused.value)
    run = subprocess.run([sys.executable, "-m", "synctui.cli", "--config", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.count("\n") == 1 and words in run.stderr


def test_secrets_come_from_the_environment_or_the_keyring(
        memory_keyring: MemoryKeyring, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = load_config(write(tmp_path / "c.toml", CONFIG.format(url="http://x")))
    lead = config.exchanges[0].accounts[0]
    monkeypatch.delenv("SYNCTUI_TEST_LEAD_KEY", raising=False)
    with pytest.raises(ConfigError, match="SYNCTUI_TEST_LEAD_KEY is not set"):
        resolve(lead.api_key)
    with pytest.raises(ConfigError, match="nothing under synctui-test/lead"):
        resolve(lead.secret)
    monkeypatch.setenv("SYNCTUI_TEST_LEAD_KEY", "k")
    memory_keyring.set_password("synctui-test", "lead", "s")
    assert (resolve(lead.api_key), resolve(lead.secret)) == ("k", "s")


@pytest.fixture
async def exchange() -> AsyncIterator[LoopbackExchange]:
    venue = Venue([ApiAccount(a, k, s, Decimal(20000)) for a, (k, s) in SECRETS.items()])
    server = LoopbackExchange(venue)
    await server.start()
    yield server
    await server.stop()


async def test_a_desk_from_the_config_copies_and_shows_no_secret(
        exchange: LoopbackExchange, memory_keyring: MemoryKeyring,
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SYNCTUI_TEST_LEAD_KEY", SECRETS["LEAD"][0])
    monkeypatch.setenv("SYNCTUI_TEST_F1_KEY", SECRETS["F1"][0])
    monkeypatch.setenv("SYNCTUI_TEST_F1_SECRET", SECRETS["F1"][1])
    memory_keyring.set_password("synctui-test", "lead", SECRETS["LEAD"][1])
    path = write(tmp_path / "c.toml", CONFIG.format(url=exchange.url))
    before = path.read_bytes()
    desk = ConfigDesk(load_config(path))
    app = make_app(live=desk, tick_seconds=0.05, db=tmp_path / "never.db")
    async with app.run_test(size=(160, 40)) as pilot:
        await pilot.pause()
        exchange.venue.place("LEAD", {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET",
                                      "quantity": "0.01", "newClientOrderId": "by-hand"})
        broker = exchange.venue.broker
        for _ in range(200):
            await asyncio.sleep(0.05)
            if broker.position("F1", "BTCUSDT") != 0:
                break
        await asyncio.sleep(0.3)
        await pilot.pause()
        assert broker.position("F1", "BTCUSDT") == Decimal("0.03")  # ratio x3
        screen = app.export_screenshot()
        log = " ".join(entry.text for entry in app.activity.filtered(None, 500))
        assert "F1 buy 0.03 BTCUSDT" in log
        for key, secret in SECRETS.values():
            for text in (screen, log):
                assert key not in text and secret not in text
        await pilot.press("q")
    assert path.read_bytes() == before  # nothing written back into the file
    assert not (tmp_path / "never.db").exists()  # a live desk keeps nothing on disk
    assert holding(tmp_path, [s for pair in SECRETS.values() for s in pair]) == []


def holding(folder: Path, secrets: list[str]) -> list[Path]:
    """Files under `folder` that hold any of `secrets` (the config names, holds none)."""
    return [f for f in folder.rglob("*") if f.is_file()
            and any(secret.encode() in f.read_bytes() for secret in secrets)]


def test_a_missing_secret_ends_the_app_with_one_line(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", CONFIG.format(url="http://127.0.0.1:9"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCTUI_TEST_")}
    run = subprocess.run([sys.executable, "-m", "synctui.cli", "--config", str(path)],
                         capture_output=True, text=True, timeout=60, env=env)
    assert run.returncode == 2
    assert "SYNCTUI_TEST_LEAD_KEY is not set" in run.stderr
    assert run.stderr.count("\n") == 1
