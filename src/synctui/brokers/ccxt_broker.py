"""A broker on a real exchange, through ccxt (issue 13): linear USDT-margined perps.

The engine's broker interface is synchronous and reads state at any moment; an
exchange answers over the network, late, or not at all. So this broker keeps a
mirror of each account (wallet balance, positions, working orders, leverage and
margin mode), filled from REST snapshots at start and from the exchange's private
stream after (`watch_my_trades`, `watch_orders`), and does every request in a task
of its own. What the exchange answers or reports waits in an inbox, and `poll`
hands it to the engine in order, as a simulated broker that answers late does
(SPEC 9): a copy's answer (acknowledged or refused) first, then its fills.

Exactly once: a copy is sent with the engine's client order id as the exchange's.
When a request gets no answer (a timeout, the exchange down, a rate limit), the
broker asks the exchange for that client id before sending again: an order that
reached it is taken, never doubled; one that did not is sent again, with the same
id, so the exchange refuses a double itself.

Money stays exact: ccxt reports amounts and prices as floats, which are turned
into Decimals at this edge, rounded to the market's step and tick.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import ccxt

from synctui.brokers.base import AccountView, OrderRequest, PositionView
from synctui.brokers.ccxt_client import (
    INSUFFICIENT_CODES,
    Failure,
    classify,
    exchange_code,
    make_client,
)
from synctui.brokers.events import (
    BrokerEvent,
    Fill,
    OrderAcknowledged,
    OrderCancelled,
    OrderInfo,
    OrderModified,
    OrderPlaced,
    OrderRefused,
)
from synctui.brokers.naming import NamingScheme, SymbolMap
from synctui.domain.clock import Clock, SystemClock
from synctui.domain.errors import Refused, RejectReason
from synctui.domain.instruments import Catalog, Instrument, Market
from synctui.domain.orders import CancelReason, FillCause, MarginMode, OrderStatus, OrderType, Side
from synctui.domain.position import apply_fill, unrealized_pnl
from synctui.domain.prices import PriceBook
from synctui.domain.risk import RiskLimits

ZERO = Decimal(0)
RETRY_SECONDS = (0.2, 0.5, 1.0, 2.0, 4.0)  # then every 4 s, while the exchange is away
LINK_SECONDS = 0.5  # how often the exchange is asked the time, to see the link
TRADES_SECONDS = 10.0  # how often trades are read by REST too, for any the stream lost
PRICE_SECONDS = 1.0  # how often the listed contracts' last prices are read
GIVE_UP_SECONDS = 120.0  # a copy not answered for this long is reported failed
# a copy whose fills have not all come this long after it was sent no longer holds the
# account's closes back (its trades come by REST within TRADES_SECONDS anyway)
SETTLE_SECONDS = 30.0
Listener = Callable[[BrokerEvent], None]


@dataclass(frozen=True, slots=True)
class ExchangeAccount:
    """An account at the exchange and its API key; the secret is never stored."""

    id: str
    api_key: str
    secret: str


@dataclass(slots=True)
class _Sent:
    """A copy on its way: sent, and its fills not all reported yet."""

    account: str
    since: datetime
    filled: Decimal | None = None  # what the answer says it filled (None: no answer yet)
    reported: Decimal = ZERO  # what its trades reported so far


@dataclass(slots=True)
class _Position:
    qty: Decimal = ZERO  # signed, in the catalog's units
    avg: Decimal = ZERO


class CcxtBroker:
    """One exchange (a ccxt id such as "binanceusdm") with one or more accounts."""

    def __init__(self, name: str, catalog: Catalog, prices: PriceBook, exchange: str,
                 accounts: list[ExchangeAccount], *, base_url: str | None = None,
                 sandbox: bool = False, clock: Clock | None = None) -> None:
        self.name = name
        self.catalog = catalog
        self.prices = prices
        self.exchange = exchange
        self.clock: Clock = clock or SystemClock()
        self.symbols = SymbolMap(NamingScheme.PLAIN, catalog)
        self.connected = True
        self._clients = {a.id: make_client(exchange, a.api_key, a.secret, base_url=base_url,
                                           sandbox=sandbox) for a in accounts}
        self._listeners: list[Listener] = []
        self._inbox: list[BrokerEvent] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._listed: dict[str, tuple[str, Decimal]] = {}  # catalog -> (unified, contract size)
        self._balance: dict[str, Decimal] = {}
        self._day_start: dict[str, Decimal] = {}
        self._realized: dict[str, Decimal] = {}
        self._fees: dict[str, Decimal] = {}
        self._positions: dict[str, dict[str, _Position]] = {a.id: {} for a in accounts}
        self._settings: dict[tuple[str, str], tuple[int, MarginMode]] = {}
        self._working: dict[str, OrderInfo] = {}  # exchange order id -> the working order
        self._status: dict[str, OrderStatus] = {}
        self._client_of: dict[str, str] = {}  # exchange order id -> client id
        self._order_of: dict[tuple[str, str], str] = {}  # (account, client id) -> order id
        self._answering: dict[tuple[str, str], list[BrokerEvent]] = {}  # fills before answers
        self._sent: dict[str, _Sent] = {}  # client id -> a copy on its way (`settling`)
        self._trades_seen: set[tuple[str, str]] = set()
        self.requests = 0  # sent to the exchange, retries included (tests and the bench)
        # Told when the link to the exchange drops (False) and comes back (True): the desk
        # turns it into `Engine.disconnect` / `Engine.reconnect` (SPEC 9).
        self.on_link: Callable[[bool], None] | None = None
        # Told when something waits in the inbox: the desk polls at once instead of at
        # its next tick, so a copy at an exchange waits for no timer.
        self.on_news: Callable[[], None] | None = None
        self.link_up = True
        self._last_trade_ms: dict[str, int] = {}  # per account: the newest trade seen
        # Per (account, catalog symbol): when the position read at start last changed.
        # A trade up to then is in that position already: seen, never applied again.
        self._boundary: dict[tuple[str, str], int] = {}
        self._prices_read: dict[str, Decimal] = {}  # catalog symbol -> last price, unread

    # --- life -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Markets, then each account as the exchange has it, then its private stream.
        A start that fails closes what it opened (ccxt's sessions) and raises."""
        try:
            await self._start()
        except BaseException:
            await self.close()
            raise

    async def _start(self) -> None:
        first = next(iter(self._clients.values()))
        markets = await self._call(first.load_markets)
        for client in self._clients.values():
            if client is not first:
                client.markets, client.markets_by_id = first.markets, first.markets_by_id
                client.symbols, client.ids = first.symbols, first.ids
        self._map_markets(markets)
        for account in self._clients:
            await self._snapshot(account)
            for watch in (self._watch_trades, self._watch_orders, self._poll_trades):
                self._spawn(watch(account))
        self._spawn(self._watch_link(first))
        self._spawn(self._watch_prices(first))

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for client in self._clients.values():
            with contextlib.suppress(Exception):
                await client.close()

    def _spawn(self, work: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _map_markets(self, markets: dict[str, Any]) -> None:
        """The catalog's perps the exchange lists as linear swaps settled in USDT, by the
        exchange's market id or by base and quote: BTCUSDT is BTC/USDT:USDT."""
        for inst in self.catalog:
            if inst.market is not Market.PERPS:
                continue
            for unified, market in markets.items():
                if not (market.get("swap") and market.get("linear")
                        and market.get("settle") == "USDT"):
                    continue
                if market.get("id") == inst.symbol or (
                        f"{market.get('base')}{market.get('quote')}" == inst.symbol):
                    size = Decimal(str(market.get("contractSize") or 1))
                    self._listed[inst.symbol] = (unified, size)
                    self.symbols.set(inst.symbol, unified)
                    break

    async def _snapshot(self, account: str, *, initial: bool = True) -> None:
        """The account as the exchange has it now. At start: wallet, positions,
        settings and working orders. Later (`initial=False`, on reconnect) only the
        settings and the working orders: positions and the wallet follow the trades,
        each applied once by its id, because a snapshot read while a trade is on its
        way over the stream would count that trade twice."""
        client = self._clients[account]
        listed = [unified for unified, _size in self._listed.values()]
        if initial:
            balance = await self._call(client.fetch_balance)
            wallet = Decimal(str(balance.get("USDT", {}).get("total") or 0))
            self._balance[account] = wallet
            self._day_start.setdefault(account, wallet)
            self._realized.setdefault(account, ZERO)
            self._fees.setdefault(account, ZERO)
        positions: dict[str, _Position] = {}
        for raw in await self._call(client.fetch_positions, listed):
            symbol = self.symbols.catalog(raw["symbol"])
            inst = self.catalog.get(symbol)
            contracts = _dec(raw.get("contracts"))
            if initial:  # the trades this position holds: up to its last change
                stamp = int(raw.get("timestamp") or 0)
                self._boundary[(account, symbol)] = stamp
                self._last_trade_ms[account] = max(self._last_trade_ms.get(account, 0), stamp)
            if raw.get("leverage"):
                mode = (MarginMode.ISOLATED if raw.get("marginMode") == "isolated"
                        else MarginMode.CROSS)
                self._settings[(account, symbol)] = (int(raw["leverage"]), mode)
            if contracts:
                qty = inst.half_up_qty(contracts * self._listed[symbol][1])
                positions[symbol] = _Position(qty if raw.get("side") == "long" else -qty,
                                              _on_tick(inst, _dec(raw.get("entryPrice"))))
        if initial:
            self._positions[account] = positions
        working: set[str] = set()
        for unified in listed:  # by symbol: without one ccxt's stream login goes astray
            for raw in await self._call(client.fetch_open_orders, unified):
                self._remember_working(account, raw, announce=not initial)
                working.add(str(raw["id"]))
        if not initial:  # gone while the link was down: filled (its trades say so) or not
            for order_id, info in list(self._working.items()):
                if info.account == account and order_id not in working:
                    del self._working[order_id]
                    if self._status.get(order_id) is not OrderStatus.FILLED:
                        self._status[order_id] = OrderStatus.CANCELLED
                        self._report(OrderCancelled(info, CancelReason.REQUESTED))

    # --- the inbox --------------------------------------------------------------------

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def poll(self) -> None:
        """Hand the engine what the exchange answered and reported, in order."""
        if not self.connected or not self._inbox:
            return
        events, self._inbox = self._inbox, []
        for event in events:
            for listener in list(self._listeners):
                listener(event)

    def _report(self, event: BrokerEvent) -> None:
        self._inbox.append(event)
        if self.on_news is not None:
            self.on_news()

    def disconnect(self) -> None:
        self.connected = False

    def reconnect(self) -> None:
        """Back: what was reported meanwhile goes to the engine at the next poll, then
        the accounts are reconciled with the exchange: the trades the stream missed
        while the link was down are reported in time order (a leader's are copied
        then, SPEC 9), and the positions and orders are read again."""
        self.connected = True
        for account in self._clients:
            self._spawn(self._reconcile(account))

    async def _reconcile(self, account: str) -> None:
        for pause in (*RETRY_SECONDS, None):
            try:
                await self._catch_up(account)
                await self._snapshot(account, initial=False)
                return
            except ccxt.BaseError as error:
                if classify(error) is Failure.PERMANENT or pause is None:
                    return
                await asyncio.sleep(pause)

    async def _watch_prices(self, client: Any) -> None:
        """The exchange's last prices, for the desk's marks (`take_prices`)."""
        listed = {unified: symbol for symbol, (unified, _size) in self._listed.items()}
        while True:
            try:
                tickers = await client.fetch_tickers(list(listed))
            except asyncio.CancelledError:
                raise
            except Exception:  # the link probe reports an outage; prices just wait
                tickers = {}
            for unified, ticker in tickers.items():
                symbol = listed.get(unified)
                if symbol is not None and ticker.get("last"):
                    inst = self.catalog.get(symbol)
                    self._prices_read[symbol] = _on_tick(inst, _dec(ticker["last"]))
            await asyncio.sleep(PRICE_SECONDS)

    def listed(self) -> list[str]:
        """The catalog symbols this exchange lists (after `start`)."""
        return list(self._listed)

    def take_prices(self) -> dict[str, Decimal]:
        """The prices read since the last call, by catalog symbol: the desk hands them
        to `Engine.set_price` (marks, stop losses, the dashboard)."""
        prices, self._prices_read = self._prices_read, {}
        return prices

    async def _poll_trades(self, account: str) -> None:
        """The trades by REST too, soon after start (a trade made before the stream
        was open) and every few seconds after (a message the stream lost); each trade
        is applied once, by its id, whichever way it comes first."""
        await asyncio.sleep(1.0)
        while True:
            if self.link_up:
                with contextlib.suppress(ccxt.BaseError):
                    await self._catch_up(account)
            await asyncio.sleep(TRADES_SECONDS)

    async def _catch_up(self, account: str) -> None:
        client = self._clients[account]
        since = self._last_trade_ms.get(account)
        missed: list[dict[str, Any]] = []
        for unified, _size in self._listed.values():
            missed += await self._call(client.fetch_my_trades, unified, since)
        for trade in sorted(missed, key=lambda t: (t.get("timestamp") or 0, str(t.get("id")))):
            self._on_trade(account, trade)

    async def _watch_link(self, client: Any) -> None:
        """Ask the exchange the time: an answer after none is the link back, no answer
        after one is the link down. The streams and requests carry on by themselves."""
        while True:
            try:
                await client.fetch_time()
                up = True
            except asyncio.CancelledError:
                raise
            except Exception:
                up = False
            if up != self.link_up:
                self.link_up = up
                if self.on_link is not None:
                    self.on_link(up)
            await asyncio.sleep(LINK_SECONDS)

    # --- requests ---------------------------------------------------------------------

    async def _call(self, method: Any, *args: Any) -> Any:
        self.requests += 1
        return await method(*args)

    def submit(self, account: str, request: OrderRequest) -> None:
        assert request.client_id is not None, "a submitted order has a client id"
        self._client(account)
        symbol = self.symbols.catalog(request.symbol)
        if symbol not in self._listed:
            raise Refused(f"{self.name} does not list {request.symbol}")
        self._answering[(account, request.client_id)] = []
        self._sent[request.client_id] = _Sent(account, self.clock.now())
        self._spawn(self._send(account, request))

    async def _send(self, account: str, request: OrderRequest) -> None:
        """Send once; on no answer, ask by client id before sending again."""
        assert request.client_id is not None
        client = self._clients[account]
        symbol = self.symbols.catalog(request.symbol)
        unified, size = self._listed[symbol]
        amount = float(request.qty / size)
        price = float(request.price) if request.price is not None else None
        params: dict[str, Any] = {"clientOrderId": request.client_id}
        if request.reduce_only:
            params["reduceOnly"] = True
        kind = "market" if request.type is OrderType.MARKET else "limit"
        waited = 0.0
        attempt = 0
        while True:
            try:
                order = await self._call(client.create_order, unified, kind,
                                         request.side.value, amount, price, params)
                break
            except ccxt.BaseError as error:
                if "-4116" in str(error) or isinstance(error, ccxt.DuplicateOrderId):
                    order = await self._find(client, unified, request.client_id)
                    if order is not None:
                        break
                if classify(error) is Failure.PERMANENT:
                    self._answer(account, request, None, _reason(error), str(error))
                    return
            pause = RETRY_SECONDS[min(attempt, len(RETRY_SECONDS) - 1)]
            attempt += 1
            waited += pause
            if waited > GIVE_UP_SECONDS:
                self._answer(account, request, None, RejectReason.REJECTED,
                             f"{self.name} did not answer for {GIVE_UP_SECONDS:.0f} s")
                return
            await asyncio.sleep(pause)
            with contextlib.suppress(ccxt.BaseError):  # still away: try again later
                found = await self._find(client, unified, request.client_id)
                if found is not None:
                    order = found
                    break
        self._answer(account, request, order, None, "")

    async def _find(self, client: Any, unified: str, client_id: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = await self._call(client.fetch_order, None, unified,
                                                     {"origClientOrderId": client_id})
        except ccxt.OrderNotFound:
            return None
        return found

    def _answer(self, account: str, request: OrderRequest, order: dict[str, Any] | None,
                reason: RejectReason | None, message: str) -> None:
        """The answer, then what the order did while it was awaited."""
        assert request.client_id is not None
        held = self._answering.pop((account, request.client_id), [])
        if order is None:
            self._sent.pop(request.client_id, None)
            self._report(OrderRefused(self.name, account, request.client_id,
                                      reason or RejectReason.REJECTED, message))
            return
        sent = self._sent.get(request.client_id)
        if sent is not None:
            symbol = self.symbols.catalog(request.symbol)
            size = self._listed[symbol][1]
            sent.filled = self.catalog.get(symbol).half_up_qty(
                _dec(order.get("filled") or 0) * size)
            self._settle(request.client_id, sent)
        order_id = str(order["id"])
        self._client_of[order_id] = request.client_id
        self._order_of[(account, request.client_id)] = order_id
        self._report(OrderAcknowledged(self.name, account, request.client_id, order_id))
        if order.get("status") == "open":
            self._remember_working(account, order)
        else:
            self._status[order_id] = (OrderStatus.FILLED if order.get("status") == "closed"
                                      else OrderStatus.CANCELLED)
        for event in held:
            self._report(event)

    def settling(self, account: str) -> bool:
        """Whether copies of the account are on their way: sent and not answered, or
        answered with fills the trades have not all reported. A copy's answer comes by
        REST and its fills on the account's own stream, so the engine holds a close
        back until they are in the position it sizes the close on."""
        if not self._sent:
            return False
        stale = self.clock.now() - timedelta(seconds=SETTLE_SECONDS)
        for client_id, sent in list(self._sent.items()):
            if sent.since < stale:
                del self._sent[client_id]
        return any(sent.account == account for sent in self._sent.values())

    def _settle(self, client_id: str, sent: _Sent) -> None:
        if sent.filled is not None and sent.reported >= sent.filled:
            del self._sent[client_id]

    # --- the private stream -------------------------------------------------------------

    async def _watch_trades(self, account: str) -> None:
        await self._watch(self._clients[account].watch_my_trades,
                          lambda trade: self._on_trade(account, trade))

    async def _watch_orders(self, account: str) -> None:
        await self._watch(self._clients[account].watch_orders,
                          lambda order: self._on_order(account, order))

    @staticmethod
    async def _watch(watch: Any, handle: Callable[[dict[str, Any]], None]) -> None:
        """One private stream, for as long as the broker runs. A broken stream is
        watched again after a pause (ccxt reconnects on the next watch); the link
        probe, not the stream, tells the desk the exchange is away."""
        failures = 0
        while True:
            try:
                updates = await watch()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                await asyncio.sleep(RETRY_SECONDS[min(failures, len(RETRY_SECONDS)) - 1])
                continue
            for update in updates:
                handle(update)

    def _on_order(self, account: str, order: dict[str, Any]) -> None:
        order_id = str(order["id"])
        status = order.get("status")
        if status == "open":
            self._remember_working(account, order)
        elif status == "canceled" and order_id in self._working:
            info = self._working.pop(order_id)
            self._status[order_id] = OrderStatus.CANCELLED
            self._report(OrderCancelled(info, CancelReason.REQUESTED))
        elif status == "closed":
            self._working.pop(order_id, None)
            self._status[order_id] = OrderStatus.FILLED

    def _on_trade(self, account: str, trade: dict[str, Any]) -> None:
        key = (str(trade.get("symbol")), str(trade.get("id")))
        if key in self._trades_seen:
            return
        self._trades_seen.add(key)
        stamp = int(trade.get("timestamp") or 0)
        self._last_trade_ms[account] = max(self._last_trade_ms.get(account, 0), stamp)
        symbol = self.symbols.catalog(trade["symbol"])
        if stamp <= self._boundary.get((account, symbol), -1):
            return  # in the position read at start already
        inst = self.catalog.get(symbol)
        size = self._listed[symbol][1]
        qty = inst.half_up_qty(_dec(trade.get("amount")) * size)
        price = _on_tick(inst, _dec(trade.get("price")))
        side = Side.BUY if trade.get("side") == "buy" else Side.SELL
        fee = _dec((trade.get("fee") or {}).get("cost"))
        position = self._positions[account].setdefault(symbol, _Position())
        before = position.qty
        outcome = apply_fill(before, position.avg, side.signed(qty), price, inst.multiplier)
        position.qty, position.avg = outcome.qty, outcome.avg_price
        if outcome.qty == 0:
            del self._positions[account][symbol]
        self._realized[account] = self._realized.get(account, ZERO) + outcome.realized
        self._fees[account] = self._fees.get(account, ZERO) + fee
        self._balance[account] = self._balance.get(account, ZERO) + outcome.realized - fee
        order_id = str(trade.get("order")) if trade.get("order") is not None else None
        working = self._working.get(order_id or "")
        if working is not None:  # a resting order filled, in part or whole
            if working.qty - qty <= 0:
                del self._working[working.id]
                self._status[working.id] = OrderStatus.FILLED
            else:
                self._working[working.id] = replace(working, qty=working.qty - qty)
        client_id = self._client_of.get(order_id or "") or (
            (trade.get("info") or {}).get("c"))
        sent = self._sent.get(client_id or "")
        if sent is not None:
            sent.reported += qty
            self._settle(client_id or "", sent)
        leverage, mode = self.leverage_of(account, trade["symbol"])
        fill = Fill(
            id=f"{trade['symbol']}#{trade.get('id')}", broker=self.name, account=account,
            symbol=trade["symbol"], side=side, qty=qty, price=price, fee=fee,
            realized=outcome.realized, cause=FillCause.ORDER, position_before=before,
            position_after=outcome.qty, equity_before=self.equity(account),
            leverage=leverage, margin_mode=mode, order_id=order_id, client_id=client_id,
            parent_id=None, role=None, stop_loss=None, take_profit=None, at=self.clock.now())
        if self.prices.maybe(symbol) is None:
            self.prices.set(symbol, price)
        waiting = self._answering.get((account, client_id or ""))
        if waiting is not None:  # its answer has not come back yet: the answer goes first
            waiting.append(fill)
        else:
            self._report(fill)

    def _remember_working(self, account: str, raw: dict[str, Any],
                          announce: bool = True) -> None:
        """A working order as the exchange reports it. A new one is announced
        (OrderPlaced: a leader's resting order is mirrored to its followers), a
        changed price too (OrderModified); an order whose answer is awaited is
        announced after it. Orders found at start are not news."""
        if raw.get("type") != "limit" or not raw.get("price"):
            return  # a market order is never resting: its fills are all there is to it
        symbol = self.symbols.catalog(raw["symbol"])
        inst = self.catalog.get(symbol)
        order_id = str(raw["id"])
        client_id = raw.get("clientOrderId")
        remaining = raw.get("remaining")
        qty = inst.half_up_qty(_dec(remaining if remaining is not None else raw.get("amount"))
                             * self._listed[symbol][1])
        before = self._working.get(order_id)
        info = OrderInfo(
            self.name, order_id, account, raw["symbol"],
            Side.BUY if raw.get("side") == "buy" else Side.SELL,
            OrderType.LIMIT if raw.get("type") == "limit" else OrderType.MARKET, qty,
            _on_tick(inst, _dec(raw.get("price"))) if raw.get("price") else None,
            bool(raw.get("reduceOnly")), None, None, client_id, None, None)
        self._working[order_id] = info
        self._status[order_id] = OrderStatus.WORKING
        if client_id:
            self._client_of[order_id] = client_id
            self._order_of[(account, client_id)] = order_id
        if not announce:
            return
        event: BrokerEvent | None = None
        if before is None:
            event = OrderPlaced(info)
        elif before.price != info.price:
            event = OrderModified(info)
        if event is None:
            return
        waiting = self._answering.get((account, client_id or ""))
        if waiting is not None:
            waiting.append(event)
        else:
            self._report(event)

    # --- the broker interface: accounts and markets ----------------------------------------

    @property
    def markets(self) -> frozenset[Market]:
        return frozenset({Market.PERPS})

    def trades(self, symbol: str) -> bool:
        try:
            return self.symbols.catalog(symbol) in self._listed
        except Refused:
            return False

    def _client(self, account: str) -> Any:
        try:
            return self._clients[account]
        except KeyError:
            raise Refused(f"{account!r} is not an account of {self.name}") from None

    def has_account(self, account: str) -> bool:
        return account in self._clients

    def open_account(self, account: str, balance: Decimal, risk: RiskLimits) -> None:
        """An exchange account is configured with its API key, not opened here; the
        desk names it, and its balance is the exchange's."""
        self._client(account)

    def fund(self, account: str, amount: Decimal) -> None:
        raise Refused(f"{self.name}: move funds at the exchange (Smart Sync sub-accounts "
                      "need a simulated broker)")

    # --- orders the engine places itself -----------------------------------------------

    def place_order(self, account: str, request: OrderRequest) -> str:
        raise Refused(f"{account} trades at {self.name} itself: synctui copies what it does "
                      "there (place the order at the exchange)")

    def modify_order(self, order_id: str, price: Decimal) -> None:
        raise Refused(f"{self.name}: a working copy is changed by cancelling it and "
                      "copying again (modify is not supported yet)")

    def cancel_order(self, order_id: str) -> None:
        info = self._working.get(order_id)
        if info is None:
            raise Refused(f"no working order {order_id!r} at {self.name}")
        self._spawn(self._cancel(info))

    async def _cancel(self, info: OrderInfo) -> None:
        client = self._clients[info.account]
        for pause in (*RETRY_SECONDS, None):
            try:
                await self._call(client.cancel_order, info.id, info.symbol)
                return
            except ccxt.OrderNotFound:
                return  # filled or cancelled meanwhile: the stream says which
            except ccxt.BaseError as error:
                if classify(error) is Failure.PERMANENT or pause is None:
                    return
                await asyncio.sleep(pause)

    def cancel_all(self, account: str, symbol: str | None = None) -> None:
        for info in self.working_orders(account, symbol):
            self._spawn(self._cancel(info))

    def close_position(self, account: str, symbol: str, cause: FillCause) -> None:
        qty = self.position(account, symbol)
        if qty == 0:
            return
        stamp = self.clock.now().strftime("%H%M%S%f")
        self.submit(account, OrderRequest(symbol, Side.SELL if qty > 0 else Side.BUY, abs(qty),
                                          reduce_only=True,
                                          client_id=f"close-{stamp}-{len(self._tasks)}"))

    def close_all(self, account: str, cause: FillCause) -> None:
        self.cancel_all(account)
        for symbol in list(self.positions(account)):
            self.close_position(account, symbol, cause)

    def set_leverage(self, account: str, symbol: str, leverage: Decimal | int) -> None:
        catalog = self.symbols.catalog(symbol)
        _old, mode = self.leverage_of(account, symbol)
        self._settings[(account, catalog)] = (int(leverage), mode)
        client = self._client(account)
        self._spawn(self._quietly(client.set_leverage, int(leverage), symbol))

    def set_margin_mode(self, account: str, symbol: str, mode: MarginMode) -> None:
        catalog = self.symbols.catalog(symbol)
        leverage, old = self.leverage_of(account, symbol)
        if old is mode:
            return
        self._settings[(account, catalog)] = (leverage, mode)
        client = self._client(account)
        wanted = "isolated" if mode is MarginMode.ISOLATED else "cross"
        self._spawn(self._quietly(client.set_margin_mode, wanted, symbol))

    async def _quietly(self, method: Any, *args: Any) -> None:
        with contextlib.suppress(ccxt.BaseError):
            await self._call(method, *args)

    def adjust_margin(self, account: str, symbol: str, amount: Decimal) -> None:
        raise Refused(f"{self.name}: adjusting an isolated margin is not supported yet")

    def leverage_of(self, account: str, symbol: str) -> tuple[int, MarginMode]:
        return self._settings.get((account, self.symbols.catalog(symbol)),
                                  (1, MarginMode.CROSS))

    def reset_breach(self, account: str) -> None:
        return None  # an exchange has no prop-style breach of ours

    def is_breached(self, account: str) -> bool:
        return False

    def on_price(self, family: str) -> None:
        return None  # the exchange matches its own orders

    # --- views ------------------------------------------------------------------------------

    def _position_view(self, account: str, symbol: str, pos: _Position) -> PositionView:
        inst = self.catalog.get(symbol)
        native = self.symbols.native(symbol)
        leverage, mode = self.leverage_of(account, native)
        price = self.prices.maybe(symbol) or pos.avg
        margin = abs(pos.qty) * pos.avg * inst.multiplier / leverage
        return PositionView(native, pos.qty, pos.avg, leverage, mode, margin,
                            unrealized_pnl(pos.qty, pos.avg, price, inst.multiplier))

    def position(self, account: str, symbol: str) -> Decimal:
        pos = self._positions.get(account, {}).get(self.symbols.catalog(symbol))
        return pos.qty if pos else ZERO

    def positions(self, account: str) -> dict[str, Decimal]:
        return {self.symbols.native(s): p.qty for s, p in self._positions.get(account, {}).items()}

    def position_detail(self, account: str, symbol: str) -> PositionView | None:
        catalog = self.symbols.catalog(symbol)
        pos = self._positions.get(account, {}).get(catalog)
        return self._position_view(account, catalog, pos) if pos else None

    def view(self, account: str) -> AccountView:
        self._client(account)
        positions = tuple(self._position_view(account, s, p)
                          for s, p in self._positions.get(account, {}).items())
        balance = self._balance.get(account, ZERO)
        unrealized = sum((p.unrealized for p in positions), ZERO)
        used = sum((p.margin for p in positions), ZERO)
        equity = balance + unrealized
        return AccountView(account, self.name, balance, equity, equity - used, used,
                           self._realized.get(account, ZERO), self._fees.get(account, ZERO),
                           None, RiskLimits(), positions,
                           tuple(self.working_orders(account)))

    def equity(self, account: str) -> Decimal:
        return self.view(account).equity

    def available(self, account: str) -> Decimal:
        return self.view(account).available

    def realized_net(self, account: str) -> Decimal:
        return self._realized.get(account, ZERO) - self._fees.get(account, ZERO)

    def total_pnl(self, account: str) -> Decimal:
        view = self.view(account)
        return self.realized_net(account) + view.equity - view.balance

    def today_pnl(self, account: str) -> Decimal:
        return self.equity(account) - self._day_start.get(account, ZERO)

    def margin_level(self, account: str, symbol: str) -> Decimal | None:
        return None

    def position_margin(self, account: str, symbol: str) -> Decimal:
        detail = self.position_detail(account, symbol)
        return detail.margin if detail else ZERO

    def isolated_floor(self, account: str, symbol: str) -> Decimal:
        return self.position_margin(account, symbol)

    def close_cost(self, symbol: str, qty: Decimal) -> Decimal:
        return ZERO  # the exchange's fee is known only when it fills

    def working_orders(self, account: str, symbol: str | None = None) -> list[OrderInfo]:
        return [o for o in self._working.values()
                if o.account == account and (symbol is None or o.symbol == symbol)]

    def order(self, order_id: str) -> OrderInfo | None:
        return self._working.get(order_id)

    def order_status(self, order_id: str) -> OrderStatus | None:
        return self._status.get(order_id)

    def order_by_client_id(self, client_id: str) -> OrderInfo | None:
        for (account, client), order_id in self._order_of.items():
            if client == client_id:
                return self._working.get(order_id) or OrderInfo(
                    self.name, order_id, account, "", Side.BUY, OrderType.MARKET, ZERO, None,
                    False, None, None, client_id, None, None)
        return None

    def reject_reason(self, order_id: str) -> tuple[RejectReason, str] | None:
        return None


def _dec(value: object) -> Decimal:
    """A number ccxt reported (a float or a string) as a Decimal: its shortest repr."""
    if value is None or value == "":
        return ZERO
    return Decimal(str(value))


def _on_tick(inst: Instrument, price: Decimal) -> Decimal:
    """A reported price on the market's tick (a float's repr may carry noise)."""
    return (price / inst.tick).to_integral_value(rounding=ROUND_HALF_UP) * inst.tick


def _reason(error: BaseException) -> RejectReason:
    if isinstance(error, ccxt.InsufficientFunds) or exchange_code(error) in INSUFFICIENT_CODES:
        return RejectReason.INSUFFICIENT_MARGIN
    if isinstance(error, ccxt.BadSymbol):
        return RejectReason.UNSUPPORTED_INSTRUMENT
    return RejectReason.REJECTED
