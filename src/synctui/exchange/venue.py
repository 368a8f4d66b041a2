"""The loopback exchange's venue: Binance USDⓈ-M futures semantics over synctui's
own simulated matching (issue 13).

One `SimBroker` holds every account and matches every order; this module speaks
Binance's language around it: integer order and trade ids, client order ids
that are unique per account, BUY/SELL and NEW/FILLED/CANCELED, decimal strings,
and the error codes Binance answers with. The HTTP and websocket layer
(`synctui.exchange.server`) only parses requests and serialises what this
returns, so the venue is tested without a socket.

Why Binance USDⓈ-M: it is the best documented of the exchanges ccxt speaks to,
its private API is one HMAC scheme, and its user data stream carries orders,
trades and positions in two event kinds.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from synctui.brokers.base import OrderRequest
from synctui.brokers.events import BrokerEvent, Fill, OrderCancelled, OrderFailed, OrderPlaced
from synctui.brokers.sim import BrokerSettings, SimBroker
from synctui.domain.clock import Clock, SystemClock
from synctui.domain.errors import OrderRejected, Refused, RejectReason
from synctui.domain.instruments import Catalog, Instrument, Market
from synctui.domain.orders import MarginMode, OrderType, Side
from synctui.domain.prices import PriceBook
from synctui.domain.risk import RiskLimits

ZERO = Decimal(0)
# Starting prices of the perps the venue lists (a test or the demo moves them).
START_PRICES = {"BTCUSDT": Decimal(65000), "ETHUSDT": Decimal(3500), "SOLUSDT": Decimal(150)}


class ApiError(Exception):
    """An answer in Binance's error shape: HTTP status, code and message."""

    def __init__(self, status: int, code: int, msg: str) -> None:
        super().__init__(msg)
        self.status = status
        self.code = code
        self.msg = msg

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "msg": self.msg}


def bad_param(msg: str) -> ApiError:
    return ApiError(400, -1102, msg)


@dataclass(frozen=True, slots=True)
class ApiAccount:
    id: str
    api_key: str
    secret: str
    balance: Decimal


def load_accounts(path: Path) -> list[ApiAccount]:
    """`{"accounts": [{"id": "A", "api_key": "...", "secret": "...", "balance": 10000}]}`;
    a bad file raises ValueError with one line saying what is wrong."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: cannot read the accounts file ({error})") from None
    entries = raw.get("accounts") if isinstance(raw, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path}: expected {{\"accounts\": [...]}} with at least one account")
    accounts: list[ApiAccount] = []
    for index, entry in enumerate(entries):
        where = f"{path}: accounts[{index}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{where} is not an object")
        for key in ("id", "api_key", "secret"):
            if not isinstance(entry.get(key), str) or not entry[key]:
                raise ValueError(f"{where}.{key} must be a non-empty string")
        try:
            balance = Decimal(str(entry.get("balance", 0)))
        except InvalidOperation:
            raise ValueError(f"{where}.balance is not a number") from None
        if not balance.is_finite() or balance < 0:
            raise ValueError(f"{where}.balance must be a number of at least 0")
        accounts.append(ApiAccount(entry["id"], entry["api_key"], entry["secret"], balance))
    for what in ("id", "api_key"):
        values = [getattr(a, what) for a in accounts]
        if len(set(values)) != len(values):
            raise ValueError(f"{path}: two accounts have the same {what}")
    return accounts


def text(value: Decimal | None) -> str:
    """A decimal as Binance writes one: plain, never in exponent form."""
    return "0" if value is None else f"{value.normalize():f}"


@dataclass(slots=True)
class VenueOrder:
    """An order as Binance reports it; the broker's order behind it is `sim_id`."""

    order_id: int
    sim_id: str
    account: str
    client_id: str
    symbol: str
    side: Side
    type: OrderType
    qty: Decimal
    price: Decimal | None
    reduce_only: bool
    status: str = "NEW"
    executed: Decimal = ZERO
    quote: Decimal = ZERO  # the sum of price x qty of its fills
    time: int = 0
    update_time: int = 0

    @property
    def avg_price(self) -> Decimal:
        return self.quote / self.executed if self.executed else ZERO


Push = Callable[[str, dict[str, Any]], None]  # (account, user-stream event)


@dataclass
class Venue:
    accounts: list[ApiAccount]
    clock: Clock = field(default_factory=SystemClock)
    catalog: Catalog = field(default_factory=Catalog)

    def __post_init__(self) -> None:
        self.prices = PriceBook(self.catalog)
        for symbol, price in START_PRICES.items():
            self.prices.set(symbol, price)
        self.broker = SimBroker("loopback", self.catalog, self.prices,
                                BrokerSettings(markets=frozenset({Market.PERPS})), self.clock)
        self.by_key = {a.api_key: a for a in self.accounts}
        for account in self.accounts:
            self.broker.open_account(account.id, account.balance, RiskLimits())
        self.orders: dict[int, VenueOrder] = {}
        self._by_sim: dict[str, VenueOrder] = {}
        self._by_client: dict[tuple[str, str], VenueOrder] = {}
        self._next_order = 1_000_001
        self._next_trade = 5_000_001
        self._pending: VenueOrder | None = None  # being placed: the broker's reports are its
        self.listeners: list[Push] = []
        self.trades: dict[str, list[dict[str, Any]]] = {a.id: [] for a in self.accounts}
        # When each account's position in each symbol last changed (positionRisk's
        # updateTime): 0 for one never traded.
        self.position_time: dict[tuple[str, str], int] = {}
        self.broker.subscribe(self._on_broker)

    # --- the listed markets -------------------------------------------------------------

    def perps(self) -> list[Instrument]:
        return [i for i in self.catalog if i.market is Market.PERPS
                and self.prices.maybe(i.symbol) is not None]

    def instrument(self, symbol: str) -> Instrument:
        for inst in self.perps():
            if inst.symbol == symbol:
                return inst
        raise ApiError(400, -1121, "Invalid symbol.")

    def set_price(self, symbol: str, price: Decimal) -> None:
        """The market moves: resting orders that reach the price fill."""
        inst = self.instrument(symbol)
        self.prices.set(inst.symbol, price)
        self.broker.on_price(inst.family)

    def now_ms(self) -> int:
        return int(self.clock.now().timestamp() * 1000)

    # --- orders -------------------------------------------------------------------------

    def place(self, account: str, params: dict[str, str]) -> VenueOrder:
        symbol = params.get("symbol", "")
        inst = self.instrument(symbol)
        side_text = params.get("side", "").upper()
        if side_text not in ("BUY", "SELL"):
            raise bad_param("Parameter 'side' is invalid.")
        kind = params.get("type", "").upper()
        if kind not in ("MARKET", "LIMIT"):
            raise ApiError(400, -1116, "Invalid orderType.")
        qty = _decimal(params, "quantity")
        price = _decimal(params, "price") if kind == "LIMIT" else None
        client = params.get("newClientOrderId") or f"loopback-{self._next_order}"
        if not _client_id_ok(client):
            raise bad_param("Parameter 'newClientOrderId' is invalid.")
        if (account, client) in self._by_client:
            raise ApiError(400, -4116, "ClientOrderId is duplicated.")
        reduce_only = params.get("reduceOnly", "false").lower() == "true"
        request = OrderRequest(inst.symbol, Side.BUY if side_text == "BUY" else Side.SELL, qty,
                               OrderType.MARKET if kind == "MARKET" else OrderType.LIMIT, price,
                               reduce_only, client_id=f"{account}\x1f{client}")
        now = self.now_ms()
        order = VenueOrder(self._next_order, "", account, client, inst.symbol, request.side,
                           request.type, qty, price, reduce_only, time=now, update_time=now)
        self._next_order += 1
        self._pending = order  # the broker's reports during place() belong to it
        try:
            order.sim_id = self.broker.place_order(account, request)
        except OrderRejected as rejected:
            if rejected.reason is RejectReason.INSUFFICIENT_MARGIN:
                raise ApiError(400, -2019, "Margin is insufficient.") from None
            raise ApiError(400, -2010, rejected.message) from None
        except Refused as refused:
            raise ApiError(400, -4003 if "quantity" in refused.message else -1102,
                           refused.message) from None
        finally:
            self._pending = None
        self._keep(order)
        return order

    def _keep(self, order: VenueOrder) -> None:
        self.orders[order.order_id] = order
        self._by_sim[order.sim_id] = order
        self._by_client[(order.account, order.client_id)] = order

    def find(self, account: str, params: dict[str, str]) -> VenueOrder:
        order: VenueOrder | None = None
        if "orderId" in params:
            try:
                order = self.orders.get(int(params["orderId"]))
            except ValueError:
                raise bad_param("Parameter 'orderId' is invalid.") from None
        elif "origClientOrderId" in params:
            order = self._by_client.get((account, params["origClientOrderId"]))
        else:
            raise bad_param("Either orderId or origClientOrderId must be sent.")
        if order is None or order.account != account or (
                "symbol" in params and params["symbol"] != order.symbol):
            raise ApiError(400, -2013, "Order does not exist.")
        return order

    def cancel(self, account: str, params: dict[str, str]) -> VenueOrder:
        try:
            order = self.find(account, params)
        except ApiError:
            raise ApiError(400, -2011, "Unknown order sent.") from None
        if order.status not in ("NEW", "PARTIALLY_FILLED"):
            raise ApiError(400, -2011, "Unknown order sent.")
        self.broker.cancel_order(order.sim_id)
        return order

    def user_trades(self, account: str, params: dict[str, str]) -> list[dict[str, Any]]:
        """An account's trades in a symbol, oldest first: from `fromId`, or from
        `startTime`, at most `limit` (Binance's default 500)."""
        symbol = self.instrument(params.get("symbol", "")).symbol
        try:
            limit = min(int(params.get("limit", "500")), 1000)
            start = int(params.get("startTime", "0"))
            first = int(params.get("fromId", "0"))
        except ValueError:
            raise bad_param("Parameter 'limit', 'startTime' or 'fromId' is invalid.") from None
        rows = [t for t in self.trades.get(account, []) if t["symbol"] == symbol
                and t["time"] >= start and t["id"] >= first]
        return rows[:limit]

    def open_orders(self, account: str, symbol: str | None) -> list[VenueOrder]:
        return [o for o in self.orders.values() if o.account == account
                and o.status in ("NEW", "PARTIALLY_FILLED")
                and (symbol is None or o.symbol == symbol)]

    # --- settings -----------------------------------------------------------------------

    def set_leverage(self, account: str, params: dict[str, str]) -> dict[str, Any]:
        inst = self.instrument(params.get("symbol", ""))
        try:
            leverage = int(params.get("leverage", ""))
        except ValueError:
            raise bad_param("Parameter 'leverage' is invalid.") from None
        if not 1 <= leverage <= inst.max_leverage:
            raise ApiError(400, -4028, f"Leverage {leverage} is not valid")
        try:
            self.broker.set_leverage(account, inst.symbol, leverage)
        except Refused as refused:
            raise ApiError(400, -4161, refused.message) from None
        return {"leverage": leverage, "maxNotionalValue": "1000000", "symbol": inst.symbol}

    def set_margin_type(self, account: str, params: dict[str, str]) -> dict[str, Any]:
        inst = self.instrument(params.get("symbol", ""))
        wanted = params.get("marginType", "").upper()
        modes = {"ISOLATED": MarginMode.ISOLATED, "CROSSED": MarginMode.CROSS,
                 "CROSS": MarginMode.CROSS}
        if wanted not in modes:
            raise bad_param("Parameter 'marginType' is invalid.")
        _leverage, mode = self.broker.leverage_of(account, inst.symbol)
        if mode is modes[wanted]:
            raise ApiError(400, -4046, "No need to change margin type.")
        try:
            self.broker.set_margin_mode(account, inst.symbol, modes[wanted])
        except Refused as refused:
            raise ApiError(400, -4048, refused.message) from None
        return {"code": 200, "msg": "success"}

    # --- what the broker reports --------------------------------------------------------

    def _order_of(self, sim_id: str | None) -> VenueOrder | None:
        if sim_id is None:
            return None
        order = self._by_sim.get(sim_id)
        pending = self._pending
        if order is None and pending is not None and pending.sim_id == "":
            # the order being placed, first seen: accepted (Binance says NEW first)
            pending.sim_id = sim_id
            self._order_event(pending, "NEW", None)
            return pending
        if order is None and pending is not None and pending.sim_id == sim_id:
            return pending
        return order

    def _on_broker(self, event: BrokerEvent) -> None:
        if isinstance(event, Fill):
            order = self._order_of(event.order_id)
            if order is None:  # a liquidation or risk close: an order of its own
                order = self._house_order(event)
            order.executed += event.qty
            order.quote += event.qty * event.price
            order.status = "FILLED" if order.executed >= order.qty else "PARTIALLY_FILLED"
            order.update_time = self.now_ms()
            trade = self._next_trade
            self._next_trade += 1
            now = self.now_ms()
            self.position_time[(event.account, order.symbol)] = now
            self.trades.setdefault(event.account, []).append({
                "symbol": order.symbol, "id": trade, "orderId": order.order_id,
                "side": order.side.value.upper(), "price": text(event.price),
                "qty": text(event.qty), "realizedPnl": text(event.realized),
                "marginAsset": "USDT", "quoteQty": text(event.qty * event.price),
                "commission": text(event.fee), "commissionAsset": "USDT", "time": now,
                "positionSide": "BOTH", "buyer": order.side is Side.BUY, "maker": False})
            self._order_event(order, "TRADE", (event, trade))
            self._account_event(event.account, "ORDER")
        elif isinstance(event, OrderCancelled | OrderFailed):
            order = self._by_sim.get(event.order.id)
            if order is not None:
                order.status = "CANCELED" if isinstance(event, OrderCancelled) else "EXPIRED"
                order.update_time = self.now_ms()
                self._order_event(order, order.status, None)
        elif isinstance(event, OrderPlaced):
            self._order_of(event.order.id)

    def _house_order(self, fill: Fill) -> VenueOrder:
        order = VenueOrder(self._next_order, fill.order_id or f"house-{fill.id}", fill.account,
                           f"autoclose-{self._next_order}", fill.symbol, fill.side,
                           OrderType.MARKET, fill.qty, None, True, time=self.now_ms())
        self._next_order += 1
        self._keep(order)
        return order

    def _order_event(self, order: VenueOrder, execution: str,
                     trade: tuple[Fill, int] | None) -> None:
        now = self.now_ms()
        fill, trade_id = trade if trade is not None else (None, 0)
        body = {
            "s": order.symbol, "c": order.client_id, "S": order.side.value.upper(),
            "o": order.type.value.upper(), "f": "GTC", "q": text(order.qty),
            "p": text(order.price), "ap": text(order.avg_price), "sp": "0",
            "x": execution, "X": order.status, "i": order.order_id,
            "l": text(fill.qty if fill else ZERO), "z": text(order.executed),
            "L": text(fill.price if fill else ZERO), "N": "USDT",
            "n": text(fill.fee if fill else ZERO), "T": now, "t": trade_id, "b": "0", "a": "0",
            "m": False, "R": order.reduce_only, "wt": "CONTRACT_PRICE",
            "ot": order.type.value.upper(), "ps": "BOTH", "cp": False,
            "rp": text(fill.realized if fill else ZERO), "pP": False, "si": 0, "ss": 0,
            "V": "NONE", "pm": "NONE", "gtd": 0,
        }
        self._push(order.account, {"e": "ORDER_TRADE_UPDATE", "E": now, "T": now, "o": body})

    def _account_event(self, account: str, reason: str) -> None:
        now = self.now_ms()
        view = self.broker.view(account)
        positions = [{"s": p.symbol, "pa": text(p.qty), "ep": text(p.avg_price),
                      "bep": text(p.avg_price), "cr": "0", "up": text(p.unrealized),
                      "mt": "isolated" if p.margin_mode is MarginMode.ISOLATED else "cross",
                      "iw": text(p.margin if p.margin_mode is MarginMode.ISOLATED else ZERO),
                      "ps": "BOTH"} for p in view.positions]
        self._push(account, {"e": "ACCOUNT_UPDATE", "E": now, "T": now, "a": {
            "m": reason,
            "B": [{"a": "USDT", "wb": text(view.balance), "cw": text(view.balance),
                   "bc": "0"}],
            "P": positions}})

    def _push(self, account: str, event: dict[str, Any]) -> None:
        for listener in list(self.listeners):
            listener(account, event)

    # --- reports ------------------------------------------------------------------------

    def order_json(self, order: VenueOrder) -> dict[str, Any]:
        return {
            "orderId": order.order_id, "symbol": order.symbol, "status": order.status,
            "clientOrderId": order.client_id, "price": text(order.price),
            "avgPrice": text(order.avg_price), "origQty": text(order.qty),
            "executedQty": text(order.executed), "cumQty": text(order.executed),
            "cumQuote": text(order.quote), "timeInForce": "GTC",
            "type": order.type.value.upper(), "reduceOnly": order.reduce_only,
            "closePosition": False, "side": order.side.value.upper(), "positionSide": "BOTH",
            "stopPrice": "0", "workingType": "CONTRACT_PRICE", "priceProtect": False,
            "origType": order.type.value.upper(), "priceMatch": "NONE",
            "selfTradePreventionMode": "NONE", "goodTillDate": 0, "time": order.time,
            "updateTime": order.update_time,
        }

    def account_json(self, account: str) -> dict[str, Any]:
        view = self.broker.view(account)
        unrealized = view.equity - view.balance
        asset = {
            "asset": "USDT", "walletBalance": text(view.balance),
            "unrealizedProfit": text(unrealized), "marginBalance": text(view.equity),
            "maintMargin": "0", "initialMargin": text(view.used_margin),
            "positionInitialMargin": text(view.used_margin), "openOrderInitialMargin": "0",
            "crossWalletBalance": text(view.balance), "crossUnPnl": text(unrealized),
            "availableBalance": text(view.available), "maxWithdrawAmount": text(view.available),
            "marginAvailable": True, "updateTime": self.now_ms(),
        }
        return {
            "feeTier": 0, "canTrade": True, "canDeposit": True, "canWithdraw": True,
            "updateTime": 0, "multiAssetsMargin": False,
            "totalInitialMargin": text(view.used_margin), "totalMaintMargin": "0",
            "totalWalletBalance": text(view.balance), "totalUnrealizedProfit": text(unrealized),
            "totalMarginBalance": text(view.equity),
            "totalPositionInitialMargin": text(view.used_margin),
            "totalOpenOrderInitialMargin": "0", "totalCrossWalletBalance": text(view.balance),
            "totalCrossUnPnl": text(unrealized), "availableBalance": text(view.available),
            "maxWithdrawAmount": text(view.available), "assets": [asset],
            "positions": [self._position_json(account, p.symbol)
                          for p in view.positions],
        }

    def _position_json(self, account: str, symbol: str) -> dict[str, Any]:
        detail = self.broker.position_detail(account, symbol)
        leverage, mode = self.broker.leverage_of(account, symbol)
        qty = detail.qty if detail else ZERO
        entry = detail.avg_price if detail else ZERO
        mark = self.prices.get(symbol)
        isolated = mode is MarginMode.ISOLATED
        margin = detail.margin if detail else ZERO
        return {
            "symbol": symbol, "positionSide": "BOTH", "positionAmt": text(qty),
            "entryPrice": text(entry), "breakEvenPrice": text(entry), "markPrice": text(mark),
            "unRealizedProfit": text(detail.unrealized if detail else ZERO),
            "unrealizedProfit": text(detail.unrealized if detail else ZERO),
            "liquidationPrice": "0", "leverage": str(leverage),
            "maxNotionalValue": "1000000", "marginType": "isolated" if isolated else "cross",
            "isolated": isolated, "isolatedMargin": text(margin if isolated else ZERO),
            "isAutoAddMargin": "false", "notional": text(qty * mark),
            "isolatedWallet": text(margin if isolated else ZERO),
            "initialMargin": text(margin), "positionInitialMargin": text(margin),
            "maintMargin": "0", "openOrderInitialMargin": "0", "adl": 0, "bidNotional": "0",
            "askNotional": "0", "marginAsset": "USDT",
            "updateTime": self.position_time.get((account, symbol), 0),
        }

    def positions_json(self, account: str, symbol: str | None) -> list[dict[str, Any]]:
        symbols = [symbol] if symbol else [i.symbol for i in self.perps()]
        return [self._position_json(account, s) for s in symbols]

    def exchange_info(self) -> dict[str, Any]:
        now = self.now_ms()
        symbols = []
        for inst in self.perps():
            base = inst.symbol.removesuffix("USDT")
            symbols.append({
                "symbol": inst.symbol, "pair": inst.symbol, "contractType": "PERPETUAL",
                "deliveryDate": 4133404800000, "onboardDate": 1569398400000,
                "status": "TRADING", "maintMarginPercent": "2.5000",
                "requiredMarginPercent": "5.0000", "baseAsset": base, "quoteAsset": "USDT",
                "marginAsset": "USDT", "pricePrecision": _places(inst.tick),
                "quantityPrecision": _places(inst.qty_step), "baseAssetPrecision": 8,
                "quotePrecision": 8, "underlyingType": "COIN", "underlyingSubType": [],
                "settlePlan": 0, "triggerProtect": "0.0500", "liquidationFee": "0.012500",
                "marketTakeBound": "0.05", "maxMoveOrderLimit": 10000,
                "filters": [
                    {"filterType": "PRICE_FILTER", "minPrice": text(inst.tick),
                     "maxPrice": "10000000", "tickSize": text(inst.tick)},
                    {"filterType": "LOT_SIZE", "minQty": text(inst.min_qty),
                     "maxQty": "100000", "stepSize": text(inst.qty_step)},
                    {"filterType": "MARKET_LOT_SIZE", "minQty": text(inst.min_qty),
                     "maxQty": "100000", "stepSize": text(inst.qty_step)},
                    {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                    {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
                    {"filterType": "MIN_NOTIONAL", "notional": "5"},
                    {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500",
                     "multiplierDown": "0.9500", "multiplierDecimal": "4"},
                ],
                "orderTypes": ["LIMIT", "MARKET"], "timeInForce": ["GTC"],
            })
        return {"timezone": "UTC", "serverTime": now, "futuresType": "U_MARGINED",
                "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE",
                                "intervalNum": 1, "limit": 2400}],
                "exchangeFilters": [],
                "assets": [{"asset": "USDT", "marginAvailable": True,
                            "autoAssetExchange": "-10000"}],
                "symbols": symbols}


def _decimal(params: dict[str, str], name: str) -> Decimal:
    try:
        value = Decimal(params[name])
    except KeyError:
        raise ApiError(400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, "
                                   "or malformed.") from None
    except InvalidOperation:
        raise bad_param(f"Parameter '{name}' is invalid.") from None
    if not value.is_finite() or value <= 0:
        raise bad_param(f"Parameter '{name}' is invalid.")
    return value


def _client_id_ok(client: str) -> bool:
    """Binance's rule: 1 to 36 of letters, digits and .:/_-"""
    return 0 < len(client) <= 36 and all(c.isascii() and (c.isalnum() or c in ".:/_-")
                                         for c in client)


def _places(step: Decimal) -> int:
    exponent = step.normalize().as_tuple().exponent
    return max(-exponent, 0) if isinstance(exponent, int) else 0
