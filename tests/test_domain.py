"""Pure domain rules: SPEC sections 1, 2, 3 (risk) and the sizing of section 4."""

from __future__ import annotations

from decimal import Decimal

import pytest

from synctui.domain.errors import Refused
from synctui.domain.instruments import Catalog, Instrument, Kind
from synctui.domain.margin import (
    isolated_liquidated,
    liquidation_price,
    maintenance_margin,
    order_margin,
    qty_for_margin,
)
from synctui.domain.position import apply_fill, realized_pnl, split_fill, unrealized_pnl
from synctui.domain.prices import PriceBook
from synctui.domain.risk import RiskLimits, RiskState
from synctui.domain.sizing import closing_qty, opening_qty

D = Decimal
CATALOG = Catalog()


def inst(symbol: str) -> Instrument:
    return CATALOG.get(symbol)


# --- 1. instruments -----------------------------------------------------------

FUTURES = [
    # symbol, family, multiplier, tick, margin per contract (SPEC 1 table)
    ("MNQ", "NQ", "2", "0.25", "100"),
    ("NQ", "NQ", "20", "0.25", "1000"),
    ("MES", "ES", "5", "0.25", "50"),
    ("ES", "ES", "50", "0.25", "500"),
    ("M2K", "RTY", "5", "0.10", "50"),
    ("RTY", "RTY", "50", "0.10", "500"),
    ("MYM", "YM", "0.5", "1", "50"),
    ("YM", "YM", "5", "1", "500"),
    ("MGC", "GC", "10", "0.10", "100"),
    ("GC", "GC", "100", "0.10", "1000"),
    ("MCL", "CL", "100", "0.01", "100"),
    ("CL", "CL", "1000", "0.01", "1000"),
]

PERPS = [
    # symbol, family, qty step, min qty, tick, max leverage, mmr (SPEC 1 table)
    ("BTCUSDT", "BTC", "0.001", "0.001", "0.1", 125, "0.004"),
    ("ETHUSDT", "ETH", "0.001", "0.001", "0.01", 100, "0.005"),
    ("SOLUSDT", "SOL", "0.1", "0.1", "0.01", 50, "0.01"),
]


@pytest.mark.parametrize(("symbol", "family", "multiplier", "tick", "margin"), FUTURES)
def test_builtin_futures_match_the_spec_table(
    symbol: str, family: str, multiplier: str, tick: str, margin: str
) -> None:
    future = inst(symbol)
    assert future.kind is Kind.FUTURE
    assert future.is_future
    assert future.family == family
    assert future.multiplier == D(multiplier)
    assert future.tick == D(tick)
    assert future.margin_per_contract == D(margin)
    assert future.qty_step == D("1")
    assert future.min_qty == D("1")


@pytest.mark.parametrize(("symbol", "family", "step", "min_qty", "tick", "lev", "mmr"), PERPS)
def test_builtin_perps_match_the_spec_table(
    symbol: str, family: str, step: str, min_qty: str, tick: str, lev: int, mmr: str
) -> None:
    perp = inst(symbol)
    assert perp.kind is Kind.PERP
    assert not perp.is_future
    assert perp.family == family
    assert perp.multiplier == D("1")
    assert perp.qty_step == D(step)
    assert perp.min_qty == D(min_qty)
    assert perp.tick == D(tick)
    assert perp.max_leverage == lev
    assert perp.mmr == D(mmr)


def test_catalog_holds_exactly_the_builtin_symbols() -> None:
    symbols = {i.symbol for i in CATALOG}
    assert symbols == {row[0] for row in FUTURES} | {row[0] for row in PERPS}


def test_families_group_micro_and_full_size() -> None:
    assert {i.symbol for i in CATALOG.family("NQ")} == {"MNQ", "NQ"}
    assert {i.symbol for i in CATALOG.family("CL")} == {"MCL", "CL"}
    assert {i.symbol for i in CATALOG.family("BTC")} == {"BTCUSDT"}


def test_unknown_symbol_is_refused() -> None:
    assert "XYZ" not in CATALOG
    with pytest.raises(Refused):
        CATALOG.get("XYZ")


def test_catalog_accepts_custom_instruments() -> None:
    catalog = Catalog()
    custom = Instrument(symbol="DOGEUSDT", family="DOGE", kind=Kind.PERP, multiplier=D("1"),
                        tick=D("0.00001"), qty_step=D("1"), min_qty=D("10"),
                        max_leverage=20, mmr=D("0.02"))
    catalog.add(custom)
    assert catalog.get("DOGEUSDT") is custom
    assert "DOGEUSDT" not in CATALOG  # the shared default catalog is untouched


@pytest.mark.parametrize(
    ("symbol", "price", "ok"),
    [
        ("MNQ", "21000", True),
        ("MNQ", "21000.25", True),
        ("MNQ", "21000.75", True),
        ("MNQ", "21000.1", False),
        ("MNQ", "0", False),
        ("MNQ", "-0.25", False),
        ("MCL", "70.25", True),
        ("MCL", "70.255", False),
        ("MYM", "42000", True),
        ("MYM", "42000.5", False),
        ("BTCUSDT", "50000.3", True),
        ("BTCUSDT", "50000.35", False),
        ("M2K", "2050.3", True),
        ("M2K", "2050.35", False),
    ],
)
def test_price_must_be_positive_multiple_of_tick(symbol: str, price: str, ok: bool) -> None:
    instrument = inst(symbol)
    assert instrument.on_tick(D(price)) is ok
    if ok:
        instrument.check_price(D(price))
    else:
        with pytest.raises(Refused):
            instrument.check_price(D(price))


@pytest.mark.parametrize(
    ("symbol", "qty", "ok"),
    [
        ("MNQ", "1", True),
        ("MNQ", "3", True),
        ("MNQ", "1.5", False),
        ("MNQ", "0", False),
        ("MNQ", "-1", False),
        ("BTCUSDT", "0.2", True),  # 0.2 is an exact multiple of 0.001 in Decimal
        ("BTCUSDT", "0.001", True),
        ("BTCUSDT", "0.0015", False),
        ("BTCUSDT", "0.0005", False),  # below the minimum and off the step
        ("SOLUSDT", "0.3", True),
        ("SOLUSDT", "0.35", False),
        ("SOLUSDT", "0.05", False),
    ],
)
def test_qty_must_be_positive_multiple_of_step_and_at_least_min(
    symbol: str, qty: str, ok: bool
) -> None:
    instrument = inst(symbol)
    if ok:
        instrument.check_qty(D(qty))
        assert instrument.on_step(D(qty))
    else:
        with pytest.raises(Refused):
            instrument.check_qty(D(qty))


def test_qty_below_minimum_is_refused_even_on_step() -> None:
    coarse = Instrument(symbol="XRPUSDT", family="XRP", kind=Kind.PERP, multiplier=D("1"),
                        tick=D("0.0001"), qty_step=D("1"), min_qty=D("10"),
                        max_leverage=20, mmr=D("0.01"))
    assert coarse.on_step(D("5"))
    with pytest.raises(Refused):
        coarse.check_qty(D("5"))
    coarse.check_qty(D("10"))


@pytest.mark.parametrize(
    ("symbol", "raw", "floored"),
    [
        ("BTCUSDT", "0.2", "0.2"),
        ("BTCUSDT", "0.0019999", "0.001"),
        ("BTCUSDT", "0.0009", "0"),
        ("SOLUSDT", "0.29", "0.2"),
        ("MNQ", "2.99", "2"),
        ("MNQ", "3", "3"),
    ],
)
def test_floor_qty_rounds_down_to_the_step(symbol: str, raw: str, floored: str) -> None:
    assert inst(symbol).floor_qty(D(raw)) == D(floored)


@pytest.mark.parametrize(
    ("symbol", "raw", "rounded"),
    [
        ("BTCUSDT", "0.0015", "0.002"),  # exactly half goes up
        ("BTCUSDT", "0.0025", "0.003"),  # half-up, not banker's (which gives 0.002)
        ("BTCUSDT", "0.00149", "0.001"),
        ("SOLUSDT", "0.25", "0.3"),
        ("SOLUSDT", "0.24", "0.2"),
        ("MNQ", "2.5", "3"),
        ("MNQ", "1.5", "2"),
        ("MNQ", "1.49", "1"),
    ],
)
def test_half_up_qty_rounds_halves_up(symbol: str, raw: str, rounded: str) -> None:
    assert inst(symbol).half_up_qty(D(raw)) == D(rounded)


def test_round_price_is_nearest_tick_half_up_and_never_below_one_tick() -> None:
    mnq = inst("MNQ")
    assert mnq.round_price(D("21000.125")) == D("21000.25")
    assert mnq.round_price(D("21000.12")) == D("21000")
    assert mnq.round_price(D("21000.375")) == D("21000.5")
    assert mnq.round_price(D("0.01")) == D("0.25")


def test_price_book_shares_one_price_per_family() -> None:
    book = PriceBook(Catalog())
    assert book.set("MNQ", D("21000.25")) == "NQ"
    assert book.get("NQ") == D("21000.25")
    assert book.get("MNQ") == D("21000.25")
    assert book.maybe("ES") is None
    with pytest.raises(Refused):
        book.get("ES")


@pytest.mark.parametrize("price", ["21000.1", "0", "-1"])
def test_price_book_refuses_bad_prices_and_keeps_the_old_one(price: str) -> None:
    book = PriceBook(Catalog())
    book.set("MNQ", D("21000"))
    with pytest.raises(Refused):
        book.set("NQ", D(price))
    assert book.get("MNQ") == D("21000")


# --- 2. positions and PnL -------------------------------------------------------


def test_open_from_flat() -> None:
    out = apply_fill(D("0"), D("0"), D("2"), D("21000"), D("2"))
    assert (out.qty, out.avg_price, out.closed, out.opened, out.realized) == (
        D("2"), D("21000"), D("0"), D("2"), D("0"))


def test_adding_averages_the_price() -> None:
    # avg = (21000*2 + 21030*1) / 3 = 21010
    out = apply_fill(D("2"), D("21000"), D("1"), D("21030"), D("2"))
    assert out.qty == D("3")
    assert out.avg_price == D("21010")
    assert out.opened == D("1")
    assert out.realized == D("0")


def test_adding_to_a_short_averages_the_price() -> None:
    out = apply_fill(D("-0.1"), D("50000"), D("-0.3"), D("52000"), D("1"))
    assert out.qty == D("-0.4")
    assert out.avg_price == D("51500")  # (5000 + 15600) / 0.4


def test_non_terminating_average_keeps_28_significant_digits() -> None:
    out = apply_fill(D("1"), D("100"), D("2"), D("101"), D("1"))
    assert out.avg_price == D("302") / D("3")
    assert out.avg_price == D("100.6666666666666666666666667")


def test_reducing_keeps_the_average_and_realizes_long() -> None:
    out = apply_fill(D("3"), D("21010"), D("-1"), D("21050"), D("2"))
    assert out.qty == D("2")
    assert out.avg_price == D("21010")
    assert out.closed == D("1")
    assert out.opened == D("0")
    assert out.realized == D("80")  # (21050 - 21010) * 1 * 2


def test_reducing_a_short_realizes_avg_minus_exit() -> None:
    out = apply_fill(D("-4"), D("5000"), D("3"), D("4990.5"), D("50"))
    assert out.qty == D("-1")
    assert out.avg_price == D("5000")
    assert out.realized == D("1425")  # (5000 - 4990.5) * 3 * 50


def test_closing_fully_leaves_flat() -> None:
    out = apply_fill(D("2"), D("21000"), D("-2"), D("20990"), D("2"))
    assert out.qty == D("0")
    assert out.avg_price == D("0")
    assert out.realized == D("-40")


def test_reversal_closes_then_opens_the_rest_at_the_fill_price() -> None:
    out = apply_fill(D("2"), D("21000"), D("-5"), D("20990"), D("2"))
    assert out.qty == D("-3")
    assert out.avg_price == D("20990")
    assert out.closed == D("2")
    assert out.opened == D("3")
    assert out.realized == D("-40")  # (20990 - 21000) * 2 * 2


def test_reversal_from_short_to_long() -> None:
    out = apply_fill(D("-0.5"), D("3000"), D("0.8"), D("2900"), D("1"))
    assert out.qty == D("0.3")
    assert out.avg_price == D("2900")
    assert out.realized == D("50")  # (3000 - 2900) * 0.5


@pytest.mark.parametrize(
    ("position", "fill", "closed", "opened"),
    [
        ("0", "2", "0", "2"),
        ("0", "-2", "0", "2"),
        ("2", "3", "0", "3"),
        ("-2", "-1", "0", "1"),
        ("5", "-2", "2", "0"),
        ("5", "-5", "5", "0"),
        ("2", "-5", "2", "3"),
        ("-0.3", "0.5", "0.3", "0.2"),
    ],
)
def test_split_fill(position: str, fill: str, closed: str, opened: str) -> None:
    assert split_fill(D(position), D(fill)) == (D(closed), D(opened))


def test_realized_pnl_uses_the_multiplier() -> None:
    assert realized_pnl(D("2"), D("5000"), D("5010.25"), D("2"), D("50")) == D("1025")
    assert realized_pnl(D("-2"), D("5000"), D("5010.25"), D("2"), D("50")) == D("-1025")
    assert realized_pnl(D("1"), D("42000"), D("41990"), D("1"), D("0.5")) == D("-5")


def test_unrealized_pnl_long_short_and_flat() -> None:
    assert unrealized_pnl(D("3"), D("70.25"), D("70.5"), D("100")) == D("75")
    assert unrealized_pnl(D("-0.5"), D("50000"), D("51000"), D("1")) == D("-500")
    assert unrealized_pnl(D("-2"), D("21000"), D("20990"), D("20")) == D("400")
    assert unrealized_pnl(D("0"), D("0"), D("21000"), D("2")) == D("0")


# --- 2. margin ------------------------------------------------------------------


def test_futures_margin_is_per_contract_whatever_the_price_or_leverage() -> None:
    assert order_margin(inst("MNQ"), D("3"), D("21000"), 10) == D("300")
    assert order_margin(inst("NQ"), D("2"), D("99999"), 1) == D("2000")
    assert order_margin(inst("MES"), D("4"), D("5000"), 50) == D("200")


def test_perp_margin_is_notional_over_leverage() -> None:
    assert order_margin(inst("BTCUSDT"), D("0.1"), D("50000"), 5) == D("1000")
    assert order_margin(inst("SOLUSDT"), D("2.5"), D("150.2"), 10) == D("37.55")


def test_qty_for_margin_rounds_down_to_the_step() -> None:
    btc = inst("BTCUSDT")
    assert qty_for_margin(btc, D("100"), D("50000"), 5) == D("0.01")
    assert qty_for_margin(btc, D("99.99"), D("50000"), 5) == D("0.009")
    assert qty_for_margin(btc, D("1000"), D("50000"), 10) == D("0.2")
    assert qty_for_margin(inst("SOLUSDT"), D("29"), D("100"), 1) == D("0.2")
    assert qty_for_margin(inst("MNQ"), D("250"), D("21000"), 10) == D("2")
    assert qty_for_margin(inst("MNQ"), D("99"), D("21000"), 10) == D("0")


def test_maintenance_margin_is_qty_times_price_times_mmr() -> None:
    assert maintenance_margin(inst("BTCUSDT"), D("-0.5"), D("40000")) == D("80")
    assert maintenance_margin(inst("SOLUSDT"), D("10"), D("100")) == D("10")


@pytest.mark.parametrize(
    ("symbol", "qty", "avg", "lev", "liq", "better"),
    [
        # long: avg * (1 - 1/lev) / (1 - mmr); SOL 10x: 110 * 0.9 / 0.99 = 100
        ("SOLUSDT", "10", "110", 10, "100", "100.01"),
        # short: avg * (1 + 1/lev) / (1 + mmr); SOL 10x: 101 * 1.1 / 1.01 = 110
        ("SOLUSDT", "-10", "101", 10, "110", "109.99"),
        # ETH 20x long: 199 * 0.95 / 0.995 = 190
        ("ETHUSDT", "2", "199", 20, "190", "190.01"),
        # ETH 4x short: 2010 * 1.25 / 1.005 = 2500
        ("ETHUSDT", "-0.5", "2010", 4, "2500", "2499.99"),
    ],
)
def test_liquidation_price_formula_agrees_with_isolated_liquidated(
    symbol: str, qty: str, avg: str, lev: int, liq: str, better: str
) -> None:
    instrument = inst(symbol)
    mmr = instrument.mmr
    price = liquidation_price(D(qty), D(avg), lev, mmr)
    assert price == D(liq)
    margin = abs(D(qty)) * D(avg) / lev  # isolated margin at open, nothing added
    assert isolated_liquidated(instrument, D(qty), D(avg), margin, price)
    assert not isolated_liquidated(instrument, D(qty), D(avg), margin, D(better))


def test_added_margin_moves_the_liquidation_point() -> None:
    sol = inst("SOLUSDT")
    margin = D("10") * D("110") / 10
    assert isolated_liquidated(sol, D("10"), D("110"), margin, D("100"))
    assert not isolated_liquidated(sol, D("10"), D("110"), margin + D("1"), D("100"))


# --- 3. risk --------------------------------------------------------------------


def test_risk_limits_any() -> None:
    assert not RiskLimits().any
    assert RiskLimits(daily_loss_limit=D("1")).any
    assert RiskLimits(max_drawdown=D("1")).any


def test_daily_loss_breaches_at_exactly_minus_limit() -> None:
    limits = RiskLimits(daily_loss_limit=D("500"))
    state = RiskState(day_start=D("10000"), peak=D("10000"))
    assert state.observe(D("9500.01"), limits) is None
    assert state.observe(D("9500"), limits) == "daily_loss_limit"


def test_daily_loss_counts_from_day_start_not_from_peak() -> None:
    limits = RiskLimits(daily_loss_limit=D("500"))
    state = RiskState(day_start=D("10000"), peak=D("10000"))
    assert state.observe(D("11000"), limits) is None
    # 600 below the peak but only 100 below the day's start
    assert state.observe(D("10400"), limits) is None


def test_trailing_drawdown_follows_the_peak() -> None:
    limits = RiskLimits(max_drawdown=D("500"))
    state = RiskState(day_start=D("10000"), peak=D("10000"))
    assert state.observe(D("10400"), limits) is None
    assert state.peak == D("10400")
    assert state.observe(D("10000"), limits) is None  # 400 below the peak
    assert state.peak == D("10400")  # the peak never falls
    assert state.observe(D("9900.01"), limits) is None
    assert state.observe(D("9900"), limits) == "max_drawdown"  # only -100 on the day


def test_no_limits_never_breach() -> None:
    state = RiskState(day_start=D("10000"), peak=D("10000"))
    assert state.observe(D("-5000"), RiskLimits()) is None


def test_shift_moves_day_start_and_peak_by_the_same_amount() -> None:
    limits = RiskLimits(daily_loss_limit=D("100"), max_drawdown=D("200"))
    state = RiskState(day_start=D("1000"), peak=D("1200"))
    state.shift(D("-500"))
    assert (state.day_start, state.peak) == (D("500"), D("700"))
    # moving 500 of funds out is not a loss
    assert state.observe(D("520"), limits) is None
    assert state.peak == D("700")
    state.shift(D("300"))
    assert (state.day_start, state.peak) == (D("800"), D("1000"))


def test_reset_restarts_the_day_and_the_peak_from_current_equity() -> None:
    limits = RiskLimits(daily_loss_limit=D("100"), max_drawdown=D("150"))
    state = RiskState(day_start=D("1000"), peak=D("1300"))
    state.reset(D("850"))
    assert (state.day_start, state.peak) == (D("850"), D("850"))
    assert state.observe(D("760"), limits) is None
    assert state.observe(D("750"), limits) == "daily_loss_limit"


# --- 4. sizing ------------------------------------------------------------------


def test_opening_qty_is_leader_qty_times_ratio() -> None:
    assert opening_qty(D("2"), 3, inst("MNQ")) == D("6")
    assert opening_qty(D("0.003"), 3, inst("BTCUSDT")) == D("0.009")
    assert opening_qty(D("0.15"), 1, inst("SOLUSDT")) == D("0.1")  # cross onto a coarser step


def test_closing_qty_is_the_proportional_share_half_up() -> None:
    mnq = inst("MNQ")
    # leader 2 -> 1 (f = 1/2), follower holds 5: 2.5 rounds half-up to 3
    assert closing_qty(D("5"), D("2"), D("1"), mnq) == D("3")
    # leader 3 -> 2 (f = 1/3), follower holds 4: 1.33 -> 1
    assert closing_qty(D("4"), D("3"), D("1"), mnq) == D("1")
    # SOL: 0.5 * 1/2 = 0.25 -> 0.3 (half-up)
    assert closing_qty(D("0.5"), D("2"), D("1"), inst("SOLUSDT")) == D("0.3")
    # BTC: 0.007 * 3/4 = 0.00525 -> 0.005
    assert closing_qty(D("0.007"), D("4"), D("3"), inst("BTCUSDT")) == D("0.005")


def test_closing_qty_may_round_to_nothing() -> None:
    # leader 10 -> 9, follower holds 1: 0.1 rounds to 0
    assert closing_qty(D("1"), D("10"), D("1"), inst("MNQ")) == D("0")


def test_closing_qty_is_capped_at_the_follower_position() -> None:
    # 0.26 * 0.99 = 0.2574 rounds half-up to 0.3, more than held: capped
    assert closing_qty(D("0.26"), D("100"), D("99"), inst("SOLUSDT")) == D("0.26")


def test_leader_flat_closes_the_whole_follower_position() -> None:
    assert closing_qty(D("7"), D("3"), D("3"), inst("MNQ")) == D("7")
    assert closing_qty(D("0.123"), D("1"), D("1"), inst("BTCUSDT")) == D("0.123")


def test_flat_follower_closes_nothing() -> None:
    assert closing_qty(D("0"), D("3"), D("1"), inst("MNQ")) == D("0")
    assert closing_qty(D("0"), D("3"), D("3"), inst("MNQ")) == D("0")
