"""The loopback exchange (issue 13, item 3), driven by ccxt itself, unmodified, with its
API URLs pointed at 127.0.0.1. Nothing here reaches beyond 127.0.0.1."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import ccxt
import pytest

from synctui.brokers.ccxt_client import Failure, classify, make_client, point_at
from synctui.exchange.server import LoopbackExchange
from synctui.exchange.venue import ApiAccount, Venue, load_accounts

pytestmark = pytest.mark.usefixtures("loopback_only")

BTC = "BTC/USDT:USDT"
ACCOUNTS = [ApiAccount("A", "key-a", "secret-a", Decimal(10000)),
            ApiAccount("B", "key-b", "secret-b", Decimal(5000))]


@pytest.fixture
async def exchange() -> AsyncIterator[LoopbackExchange]:
    server = LoopbackExchange(Venue(list(ACCOUNTS)))
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def client(exchange: LoopbackExchange) -> AsyncIterator[Any]:
    made = make_client("binanceusdm", "key-a", "secret-a", base_url=exchange.url)
    yield made
    await made.close()


def test_point_at_moves_every_address_and_keeps_paths() -> None:
    urls = {"a": "https://fapi.binance.com/fapi/v1", "ws": {"linear": "wss://fstream.binance.com/ws"},
            "doc": "not a url"}
    point_at(urls, "http://127.0.0.1:9000")
    assert urls == {"a": "http://127.0.0.1:9000/fapi/v1",
                    "ws": {"linear": "ws://127.0.0.1:9000/ws"}, "doc": "not a url"}


async def test_ccxt_loads_the_markets_with_the_catalog_s_steps(client: Any) -> None:
    markets = await client.load_markets()
    assert {BTC, "ETH/USDT:USDT", "SOL/USDT:USDT"} <= set(markets)
    btc = markets[BTC]
    assert btc["id"] == "BTCUSDT" and btc["swap"] and btc["linear"] and btc["settle"] == "USDT"
    assert btc["contractSize"] == 1
    assert btc["precision"]["amount"] == 0.001 and btc["precision"]["price"] == 0.1
    assert btc["limits"]["amount"]["min"] == 0.001


async def test_balance_positions_leverage_and_margin_mode(client: Any) -> None:
    await client.load_markets()
    balance = await client.fetch_balance()
    assert balance["USDT"]["total"] == 10000 and balance["USDT"]["free"] == 10000
    await client.set_leverage(10, BTC)
    await client.set_margin_mode("isolated", BTC)
    with pytest.raises(ccxt.BaseError):  # Binance answers -4046: nothing to change
        await client.set_margin_mode("isolated", BTC)
    await client.create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": "c-1"})
    [position] = [p for p in await client.fetch_positions([BTC]) if p["contracts"]]
    assert position["side"] == "long" and position["contracts"] == 0.01
    assert position["leverage"] == 10 and position["marginMode"] == "isolated"
    assert position["entryPrice"] == 65000
    after = await client.fetch_balance()
    assert after["USDT"]["used"] == pytest.approx(65.0)  # 0.01 x 65,000 / 10


async def test_orders_by_client_id_place_query_cancel_and_refuse_a_duplicate(
        client: Any) -> None:
    await client.load_markets()
    placed = await client.create_order(BTC, "market", "buy", 0.01, None,
                                       {"clientOrderId": "copy-1"})
    assert placed["status"] == "closed" and placed["filled"] == 0.01
    found = await client.fetch_order(None, BTC, {"origClientOrderId": "copy-1"})
    assert found["id"] == placed["id"] and found["clientOrderId"] == "copy-1"
    with pytest.raises(ccxt.BaseError, match="-4116"):
        await client.create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": "copy-1"})
    resting = await client.create_order(BTC, "limit", "buy", 0.01, 60000,
                                        {"clientOrderId": "copy-2"})
    assert resting["status"] == "open"
    assert [o["id"] for o in await client.fetch_open_orders(BTC)] == [resting["id"]]
    cancelled = await client.cancel_order(resting["id"], BTC)
    assert cancelled["status"] == "canceled"
    assert await client.fetch_open_orders(BTC) == []
    with pytest.raises(ccxt.OrderNotFound):
        await client.fetch_order(None, BTC, {"origClientOrderId": "never-sent"})


async def test_another_account_sees_none_of_its_orders(exchange: LoopbackExchange,
                                                       client: Any) -> None:
    await client.load_markets()
    await client.create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": "same"})
    other = make_client("binanceusdm", "key-b", "secret-b", base_url=exchange.url)
    try:
        await other.load_markets()
        with pytest.raises(ccxt.OrderNotFound):
            await other.fetch_order(None, BTC, {"origClientOrderId": "same"})
        # client ids are unique per account: B may use the same one
        mine = await other.create_order(BTC, "market", "sell", 0.01, None,
                                        {"clientOrderId": "same"})
        assert mine["clientOrderId"] == "same"
        balance = await other.fetch_balance()
        assert balance["USDT"]["total"] == 5000
    finally:
        await other.close()


async def test_order_and_trade_updates_arrive_on_the_private_stream(
        exchange: LoopbackExchange, client: Any) -> None:
    await client.load_markets()
    resting = await client.create_order(BTC, "limit", "sell", 0.02, 66000,
                                        {"clientOrderId": "rest-1"})
    orders = asyncio.ensure_future(client.watch_orders(BTC))
    trades = asyncio.ensure_future(client.watch_my_trades(BTC))
    await asyncio.sleep(0.3)  # the stream is open
    async with aiohttp.ClientSession() as session:  # the market reaches the limit
        answer = await session.post(f"{exchange.url}/loopback/price",
                                    json={"symbol": "BTCUSDT", "price": "66000"})
        assert answer.status == 200
    [update] = await asyncio.wait_for(orders, 5)
    assert update["id"] == resting["id"] and update["clientOrderId"] == "rest-1"
    assert update["status"] == "closed" and update["filled"] == 0.02
    [trade] = await asyncio.wait_for(trades, 5)
    assert trade["order"] == resting["id"] and trade["price"] == 66000
    assert trade["side"] == "sell" and trade["amount"] == 0.02


async def test_a_wrong_signature_or_key_is_refused_and_permanent(
        exchange: LoopbackExchange) -> None:
    for key, secret in (("key-a", "not-the-secret"), ("no-such-key", "secret-a")):
        bad = make_client("binanceusdm", key, secret, base_url=exchange.url)
        try:
            with pytest.raises(ccxt.AuthenticationError) as refused:
                await bad.fetch_balance({"type": "future"})
            assert classify(refused.value) is Failure.PERMANENT
        finally:
            await bad.close()


async def test_a_rate_limit_is_answered_429_and_classified_transient(
        exchange: LoopbackExchange, client: Any) -> None:
    await client.load_markets()
    exchange.throttle = 1
    with pytest.raises(ccxt.DDoSProtection) as limited:
        await client.fetch_balance()
    assert classify(limited.value) is Failure.TRANSIENT
    balance = await client.fetch_balance()  # the next request passes
    assert balance["USDT"]["total"] == 10000


async def test_a_stale_timestamp_is_refused_with_binance_s_code(
        exchange: LoopbackExchange) -> None:
    stamp = int(time.time() * 1000) - 120_000
    query = f"timestamp={stamp}&recvWindow=5000"
    signature = hmac.new(b"secret-a", query.encode(), hashlib.sha256).hexdigest()
    async with aiohttp.ClientSession() as session:
        answer = await session.get(f"{exchange.url}/fapi/v2/balance?{query}&signature="
                                   f"{signature}", headers={"X-MBX-APIKEY": "key-a"})
        assert answer.status == 400
        assert (await answer.json())["code"] == -1021


async def test_the_server_listens_on_127_0_0_1_only(exchange: LoopbackExchange) -> None:
    assert exchange.url.startswith("http://127.0.0.1:")
    assert exchange._runner is not None
    assert [address[0] for address in exchange._runner.addresses] == ["127.0.0.1"]


def test_a_bad_accounts_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "accounts.json"
    for content, words in (("{", "cannot read"), ('{"accounts": []}', "at least one"),
                           ('{"accounts": [{"id": "A", "api_key": "k", "secret": "s", '
                            '"balance": -1}]}', "balance"),
                           ('{"accounts": [{"id": "A", "api_key": "k", "secret": "s"}, '
                            '{"id": "B", "api_key": "k", "secret": "t"}]}', "same api_key")):
        bad.write_text(content)
        with pytest.raises(ValueError, match=words):
            load_accounts(bad)
        run = subprocess.run([sys.executable, "-m", "synctui.cli", "exchange", "serve",
                              "--port", "0", "--accounts", str(bad)],
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 2 and run.stdout == ""
        assert run.stderr.count("\n") == 1 and words in run.stderr


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_synctui_exchange_serve_answers_ccxt_until_interrupted(tmp_path: Path) -> None:
    accounts = tmp_path / "accounts.json"
    accounts.write_text(json.dumps({"accounts": [
        {"id": "A", "api_key": "key-a", "secret": "secret-a", "balance": 2500}]}))
    port = _free_port()
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "synctui.cli", "exchange", "serve", "--port", str(port),
        "--accounts", str(accounts), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert server.stdout is not None
        line = (await asyncio.wait_for(server.stdout.readline(), 30)).decode()
        assert f"127.0.0.1:{port}" in line
        client = make_client("binanceusdm", "key-a", "secret-a",
                             base_url=f"http://127.0.0.1:{port}")
        try:
            balance = await client.fetch_balance()
            assert balance["USDT"]["total"] == 2500
        finally:
            await client.close()
    finally:
        server.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(server.wait(), 30) == 0


async def test_the_loopback_guard_lets_127_0_0_1_through_and_nothing_else(
        loopback_only: list[str], client: Any) -> None:
    await client.load_markets()
    assert loopback_only and set(loopback_only) <= {"127.0.0.1"}
    with pytest.raises(AssertionError, match=r"beyond 127\.0\.0\.1"):
        socket.getaddrinfo("fapi.binance.com", 443)
    real = make_client("binanceusdm", "k", "s")  # not pointed: the real host
    try:
        with pytest.raises(AssertionError, match=r"beyond 127\.0\.0\.1"):
            await real.fetch_time()
    finally:
        await real.close()
