"""The loopback exchange's HTTP and websocket server: Binance USDⓈ-M futures' REST
and user data stream, on 127.0.0.1 only (issue 13).

Requests are checked as Binance checks them: the API key header, the HMAC-SHA256
signature over the query string and body, the timestamp within `recvWindow`.
Answers and errors have Binance's JSON shapes, so ccxt, unmodified, with its API
URLs pointed here, loads markets, trades, and receives order and trade updates.
`/loopback/*` is the test harness's: move a price, answer the next requests with
a rate limit. It is unauthenticated, which is why the server binds 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
from collections.abc import Awaitable, Callable
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import WSMsgType, web

from synctui.exchange.venue import ApiAccount, ApiError, Venue, text

HOST = "127.0.0.1"  # never anything else: the harness endpoints have no authentication
MAX_RECV_WINDOW = 60_000
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class LoopbackExchange:
    """One venue behind one server. The venue outlives the server: `stop` and `start`
    again is an exchange that was unreachable for a while and kept its books."""

    def __init__(self, venue: Venue, port: int = 0) -> None:
        self.venue = venue
        self.port = port
        self.throttle = 0  # the next private requests answered 429, as a rate limit
        self.drop_answers = 0  # the next orders placed whose answers are lost (503)
        self.refuse_streams = False  # the websocket is down (REST still answers)
        self.dropped = 0
        self.requests = 0
        self._runner: web.AppRunner | None = None
        self._keys: dict[str, str] = {}  # listen key -> account
        # each stream's outbox, by account: events go out in the order they happened
        self._sockets: dict[str, dict[web.WebSocketResponse, asyncio.Queue[str]]] = {}
        venue.listeners.append(self._push)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    # --- life -----------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(middlewares=[self._errors])
        routes = [
            ("GET", "/fapi/v1/ping", self._ping), ("GET", "/fapi/v1/time", self._time),
            ("GET", "/fapi/v1/exchangeInfo", self._exchange_info),
            ("GET", "/fapi/v1/ticker/price", self._ticker),
            ("GET", "/fapi/v1/premiumIndex", self._premium),
            ("GET", "/fapi/v1/ticker/24hr", self._ticker_24hr),
            ("GET", "/sapi/v1/capital/config/getall", self._signed(self._nothing)),
            ("GET", "/sapi/v1/margin/allPairs", self._signed(self._nothing)),
            ("POST", "/fapi/v1/order", self._signed(self._place)),
            ("GET", "/fapi/v1/order", self._signed(self._query)),
            ("DELETE", "/fapi/v1/order", self._signed(self._cancel)),
            ("GET", "/fapi/v1/openOrders", self._signed(self._open_orders)),
            ("GET", "/fapi/v1/userTrades", self._signed(self._user_trades)),
            ("GET", "/fapi/v2/account", self._signed(self._account)),
            ("GET", "/fapi/v3/account", self._signed(self._account)),
            ("GET", "/fapi/v2/balance", self._signed(self._balance)),
            ("GET", "/fapi/v3/balance", self._signed(self._balance)),
            ("GET", "/fapi/v2/positionRisk", self._signed(self._positions)),
            ("GET", "/fapi/v3/positionRisk", self._signed(self._positions)),
            ("POST", "/fapi/v1/leverage", self._signed(self._leverage)),
            ("POST", "/fapi/v1/marginType", self._signed(self._margin_type)),
            ("POST", "/fapi/v1/listenKey", self._keyed(self._listen_key)),
            ("PUT", "/fapi/v1/listenKey", self._keyed(self._listen_key)),
            ("DELETE", "/fapi/v1/listenKey", self._keyed(self._close_key)),
            ("GET", "/fapi/v1/leverageBracket", self._signed(self._brackets)),
            ("GET", "/ws/{key}", self._stream),
            ("GET", "/private/ws", self._stream),
            ("POST", "/loopback/price", self._set_price),
            ("POST", "/loopback/throttle", self._set_throttle),
        ]
        for method, path, handler in routes:
            app.router.add_route(method, path, handler)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, HOST, self.port)
        await site.start()
        if self.port == 0:  # the port the system chose
            self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        """Down, as a server that crashed: every connection and stream drops. The books
        and the listen keys stay (Binance keeps a listen key for an hour): `start`
        again on the same port is the exchange back."""
        for sockets in list(self._sockets.values()):
            for socket in list(sockets):
                await socket.close()
        self._sockets.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- checks ---------------------------------------------------------------------------

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.requests += 1
        try:
            answer = await handler(request)
        except ApiError as error:
            return web.json_response(error.body(), status=error.status)
        if (self.drop_answers > 0 and request.method == "POST"
                and request.path == "/fapi/v1/order" and answer.status == 200):
            # the order was placed; the client never learns it (a lost answer)
            self.drop_answers -= 1
            self.dropped += 1
            return web.json_response({"code": -1001, "msg": "Internal error; unable to "
                                      "process your request. Please try again."}, status=503)
        return answer

    def _account_of_key(self, request: web.Request) -> ApiAccount:
        key = request.headers.get("X-MBX-APIKEY", "")
        account = self.venue.by_key.get(key)
        if account is None:
            raise ApiError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        return account

    def _keyed(self, handler: Callable[[web.Request, ApiAccount, dict[str, str]],
                                       Awaitable[Any]]) -> Handler:
        async def run(request: web.Request) -> web.StreamResponse:
            account = self._account_of_key(request)
            self._throttled()
            params = dict(parse_qsl(request.query_string)) | dict(
                parse_qsl(await request.text()))
            return web.json_response(await handler(request, account, params))
        return run

    def _signed(self, handler: Callable[[ApiAccount, dict[str, str]], Awaitable[Any]]
                ) -> Handler:
        async def run(request: web.Request) -> web.StreamResponse:
            account = self._account_of_key(request)
            self._throttled()
            query, body = request.query_string, await request.text()
            params = dict(parse_qsl(query, keep_blank_values=True)) | dict(
                parse_qsl(body, keep_blank_values=True))
            signature = params.pop("signature", "")
            signed = _unsigned(query) + _unsigned(body)
            expected = hmac.new(account.secret.encode(), signed.encode(),
                                hashlib.sha256).hexdigest()
            if not hmac.compare_digest(signature.lower(), expected):
                raise ApiError(400, -1022, "Signature for this request is not valid.")
            self._check_time(params)
            return web.json_response(await handler(account, params))
        return run

    def _throttled(self) -> None:
        if self.throttle > 0:
            self.throttle -= 1
            raise ApiError(429, -1003, "Too many requests; current limit is 2400 requests "
                                       "per minute.")

    def _check_time(self, params: dict[str, str]) -> None:
        try:
            stamp = int(params["timestamp"])
            window = int(params.get("recvWindow", "5000"))
        except (KeyError, ValueError):
            raise ApiError(400, -1102, "Mandatory parameter 'timestamp' was not sent, was "
                                       "empty/null, or malformed.") from None
        if not 0 < window <= MAX_RECV_WINDOW:
            raise ApiError(400, -1131, "recvWindow must be less than 60000")
        now = self.venue.now_ms()
        if stamp > now + 1000 or now - stamp > window:
            raise ApiError(400, -1021, "Timestamp for this request is outside of the "
                                       "recvWindow.")

    # --- public ---------------------------------------------------------------------------

    async def _ping(self, request: web.Request) -> web.Response:
        return web.json_response({})

    async def _time(self, request: web.Request) -> web.Response:
        return web.json_response({"serverTime": self.venue.now_ms()})

    async def _exchange_info(self, request: web.Request) -> web.Response:
        return web.json_response(self.venue.exchange_info())

    def _prices(self, request: web.Request) -> list[tuple[str, Decimal]]:
        wanted = request.query.get("symbol")
        listed = [(i.symbol, self.venue.prices.get(i.symbol)) for i in self.venue.perps()]
        if wanted is None:
            return listed
        found = [p for p in listed if p[0] == wanted]
        if not found:
            raise ApiError(400, -1121, "Invalid symbol.")
        return found

    async def _ticker(self, request: web.Request) -> web.Response:
        now = self.venue.now_ms()
        rows = [{"symbol": s, "price": text(p), "time": now} for s, p in self._prices(request)]
        return web.json_response(rows[0] if "symbol" in request.query else rows)

    async def _ticker_24hr(self, request: web.Request) -> web.Response:
        """The day's statistics: the venue keeps none, so the last price stands for all."""
        now = self.venue.now_ms()
        rows = [{"symbol": s, "priceChange": "0", "priceChangePercent": "0",
                 "weightedAvgPrice": text(p), "lastPrice": text(p), "lastQty": "0",
                 "openPrice": text(p), "highPrice": text(p), "lowPrice": text(p),
                 "volume": "0", "quoteVolume": "0", "openTime": now - 86_400_000,
                 "closeTime": now, "firstId": 0, "lastId": 0, "count": 0}
                for s, p in self._prices(request)]
        return web.json_response(rows[0] if "symbol" in request.query else rows)

    async def _premium(self, request: web.Request) -> web.Response:
        now = self.venue.now_ms()
        rows = [{"symbol": s, "markPrice": text(p), "indexPrice": text(p),
                 "estimatedSettlePrice": text(p), "lastFundingRate": "0.00010000",
                 "interestRate": "0.00010000", "nextFundingTime": now + 3_600_000,
                 "time": now} for s, p in self._prices(request)]
        return web.json_response(rows[0] if "symbol" in request.query else rows)

    # --- private --------------------------------------------------------------------------

    async def _nothing(self, account: ApiAccount, params: dict[str, str]) -> Any:
        return []  # spot and margin endpoints ccxt asks on load: this venue has none

    async def _place(self, account: ApiAccount, params: dict[str, str]) -> Any:
        return self.venue.order_json(self.venue.place(account.id, params))

    async def _query(self, account: ApiAccount, params: dict[str, str]) -> Any:
        return self.venue.order_json(self.venue.find(account.id, params))

    async def _cancel(self, account: ApiAccount, params: dict[str, str]) -> Any:
        return self.venue.order_json(self.venue.cancel(account.id, params))

    async def _open_orders(self, account: ApiAccount, params: dict[str, str]) -> Any:
        return [self.venue.order_json(o)
                for o in self.venue.open_orders(account.id, params.get("symbol"))]

    async def _user_trades(self, account: ApiAccount, params: dict[str, str]) -> Any:
        return self.venue.user_trades(account.id, params)

    async def _account(self, account: ApiAccount, params: dict[str, str]) -> Any:
        return self.venue.account_json(account.id)

    async def _balance(self, account: ApiAccount, params: dict[str, str]) -> Any:
        asset = self.venue.account_json(account.id)["assets"][0]
        return [{"accountAlias": account.id, "asset": "USDT",
                 "balance": asset["walletBalance"],
                 "crossWalletBalance": asset["crossWalletBalance"],
                 "crossUnPnl": asset["crossUnPnl"],
                 "availableBalance": asset["availableBalance"],
                 "maxWithdrawAmount": asset["maxWithdrawAmount"], "marginAvailable": True,
                 "updateTime": asset["updateTime"]}]

    async def _positions(self, account: ApiAccount, params: dict[str, str]) -> Any:
        return self.venue.positions_json(account.id, params.get("symbol"))

    async def _brackets(self, account: ApiAccount, params: dict[str, str]) -> Any:
        """One bracket per symbol: the venue has no notional tiers."""
        return [{"symbol": i.symbol, "notionalCoef": 1.0, "brackets": [{
            "bracket": 1, "initialLeverage": i.max_leverage, "notionalCap": 100_000_000,
            "notionalFloor": 0, "maintMarginRatio": float(i.mmr), "cum": 0.0}]}
            for i in self.venue.perps()
            if params.get("symbol") in (None, i.symbol)]

    async def _leverage(self, account: ApiAccount, params: dict[str, str]) -> Any:
        return self.venue.set_leverage(account.id, params)

    async def _margin_type(self, account: ApiAccount, params: dict[str, str]) -> Any:
        return self.venue.set_margin_type(account.id, params)

    async def _listen_key(self, request: web.Request, account: ApiAccount,
                          params: dict[str, str]) -> Any:
        """One listen key per account (Binance's rule): asked again, the same one."""
        for key, owner in self._keys.items():
            if owner == account.id:
                return {"listenKey": key}
        key = secrets.token_hex(32)
        self._keys[key] = account.id
        return {"listenKey": key}

    async def _close_key(self, request: web.Request, account: ApiAccount,
                         params: dict[str, str]) -> Any:
        for key in [k for k, owner in self._keys.items() if owner == account.id]:
            del self._keys[key]
        return {}

    # --- the user data stream -------------------------------------------------------------

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        """/ws/<listenKey>, or /private/ws?listenKey=<key> as newer ccxt connects."""
        if self.refuse_streams:
            raise ApiError(503, -1001, "Internal error; unable to process your request.")
        key = request.match_info.get("key") or request.query.get("listenKey", "")
        account = self._keys.get(key)
        if account is None:
            raise ApiError(400, -1125, "This listenKey does not exist.")
        socket = web.WebSocketResponse(heartbeat=30)
        await socket.prepare(request)
        outbox: asyncio.Queue[str] = asyncio.Queue()
        self._sockets.setdefault(account, {})[socket] = outbox
        sender = asyncio.create_task(self._send(socket, outbox))
        try:
            async for message in socket:
                if message.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                    break
        finally:
            self._sockets.get(account, {}).pop(socket, None)
            sender.cancel()
        return socket

    @staticmethod
    async def _send(socket: web.WebSocketResponse, outbox: asyncio.Queue[str]) -> None:
        while not socket.closed:
            data = await outbox.get()
            try:
                await socket.send_str(data)
            except ConnectionError:
                return

    def _push(self, account: str, event: dict[str, Any]) -> None:
        data = json.dumps(event)
        for outbox in list(self._sockets.get(account, {}).values()):
            outbox.put_nowait(data)

    # --- the harness ----------------------------------------------------------------------

    async def _set_price(self, request: web.Request) -> web.Response:
        body = await request.json()
        try:
            price = Decimal(str(body["price"]))
        except (KeyError, InvalidOperation, TypeError):
            raise ApiError(400, -1102, "price is required") from None
        self.venue.set_price(str(body.get("symbol", "")), price)
        return web.json_response({"symbol": body.get("symbol"), "price": text(price)})

    async def _set_throttle(self, request: web.Request) -> web.Response:
        """{"requests": n}: the next n private requests are answered 429; {"drop": n}: the
        answers of the next n orders placed are lost (503, the order stands)."""
        body = await request.json()
        self.throttle = int(body.get("requests", 0))
        self.drop_answers = int(body.get("drop", 0))
        return web.json_response({"throttle": self.throttle, "drop": self.drop_answers})


def _unsigned(raw: str) -> str:
    """The raw parameters without the signature, as the client signed them."""
    parts = [p for p in raw.split("&") if p and not p.startswith("signature=")]
    return "&".join(parts)


async def serve_forever(accounts: list[ApiAccount], port: int) -> None:
    """`synctui exchange serve`: one venue, served until interrupted."""
    exchange = LoopbackExchange(Venue(accounts), port)
    await exchange.start()
    print(f"loopback exchange (Binance USD-M futures API) on {exchange.url} "
          f"for {len(accounts)} account{'s' if len(accounts) != 1 else ''}; Ctrl+C stops it",
          flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await exchange.stop()
