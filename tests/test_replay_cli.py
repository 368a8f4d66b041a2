"""`synctui replay FILE --json` (SPEC 7): the JSON report, invalid files (exit 2, one
line on stderr naming the bad field), refused steps listed in `errors`, and the shared
example scenarios checked against their `expect` blocks."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from synctui.cli import main

SCENARIOS = Path(__file__).parent / "scenarios"


def write(tmp_path: Path, scenario: dict[str, Any] | str, name: str = "scenario.json") -> Path:
    path = tmp_path / name
    path.write_text(scenario if isinstance(scenario, str) else json.dumps(scenario))
    return path


def replay_json(path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    code = main(["replay", str(path), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.err == ""
    result: dict[str, Any] = json.loads(captured.out)
    return result


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# --- a valid replay ---------------------------------------------------------------------------

MIXED_SCENARIO: dict[str, Any] = {
    "prices": {"MNQ": 21000, "BTCUSDT": 50000},
    "brokers": {"tv": {"naming": "tradovate"}, "px": {"naming": "projectx"}},
    "accounts": [
        {"id": "lead", "broker": "tv", "balance": 50000},
        {"id": "f1", "broker": "px", "balance": 20000},
        {"id": "poor", "broker": "px", "balance": 150},
    ],
    "groups": [{"name": "G", "leader": "lead", "followers": ["f1", "poor"]}],
    "steps": [
        {"op": "order", "account": "lead", "symbol": "MNQ", "side": "buy", "qty": 1},
        {"op": "price", "symbol": "MNQ", "price": 21001},
        {"op": "order", "account": "lead", "symbol": "MNQ", "side": "buy", "qty": 1},
        {"op": "price", "symbol": "MNQ", "price": 21010},
        {"op": "order", "account": "lead", "symbol": "MNQ", "side": "sell", "qty": 1,
         "type": "limit", "price": 21020, "ref": "tp"},
        {"op": "order", "account": "lead", "symbol": "BTCUSDT", "side": "buy", "qty": 0.01,
         "leverage": 5, "margin_mode": "isolated"},
    ],
}


def test_a_valid_replay_prints_the_spec_7_report(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = replay_json(write(tmp_path, MIXED_SCENARIO), capsys)
    assert {"accounts", "copies", "groups", "failures", "errors"} <= set(out)
    assert out["copies"] == {}
    assert out["errors"] == []
    assert out["groups"]["G"]["status"] == "active"
    assert out["groups"]["G"]["reason"] is None
    assert [{k: f[k] for k in ("group", "account", "symbol", "reason")}
            for f in out["failures"]] == [
        # step 2: poor holds 1 MNQ (margin 100); equity 152, available 52 < 100
        {"group": "G", "account": "poor", "symbol": "MNQ", "reason": "insufficient_margin"},
    ]

    accounts = out["accounts"]
    assert set(accounts) == {"lead", "f1", "poor"}
    for account in accounts.values():
        assert {"balance", "equity", "available", "in_use", "breached", "positions",
                "orders"} <= set(account)
        assert account["breached"] is False
        assert account["in_use"] == 0

    # lead: MNQ 2 @ (21000 + 21001) / 2 = 21000.5, up 9.5 x 2 x 2 = 38 at 21010;
    # BTC 0.01 @ 50000 at 5x isolated: margin 100. Used: 200 + 100.
    lead = accounts["lead"]
    assert (lead["balance"], lead["equity"], lead["available"]) == (50000, 50038, 49738)
    assert len(lead["positions"]) == 2
    _pos(lead, "BTCUSDT", qty=0.01, avg_price=50000, leverage=5, margin_mode="isolated",
         margin=100)
    _pos(lead, "MNQ", qty=2, avg_price=21000.5, leverage=None, margin_mode=None, margin=200)
    assert [_order(o) for o in lead["orders"]] == [("MNQ", "sell", "limit", 1, 21020)]

    # f1 (projectx naming) mirrors the leader; its BTC copy uses its own 10x cross: margin 50.
    f1 = accounts["f1"]
    assert (f1["balance"], f1["equity"], f1["available"]) == (20000, 20038, 19788)
    assert len(f1["positions"]) == 2
    _pos(f1, "MNQ", qty=2, avg_price=21000.5, leverage=None, margin_mode=None,
                margin=200)
    _pos(f1, "BTCUSDT", qty=0.01, avg_price=50000, leverage=10, margin_mode="cross",
                margin=50)
    assert [_order(o) for o in f1["orders"]] == [("MNQ", "sell", "limit", 1, 21020)]

    # poor: 1 MNQ @ 21000 (+20 at 21010), BTC margin 50; its mirror closes 1 x 1/2 -> 1.
    poor = accounts["poor"]
    assert (poor["balance"], poor["equity"], poor["available"]) == (150, 170, 20)
    _pos(poor, "MNQ", qty=1, avg_price=21000, leverage=None, margin_mode=None,
                margin=100)
    assert [_order(o) for o in poor["orders"]] == [("MNQ", "sell", "limit", 1, 21020)]


def _pos(account: dict[str, Any], symbol: str, **expected: Any) -> dict[str, Any]:
    """The account's position in `symbol`, checked against the expected fields."""
    found = [p for p in account["positions"] if p["symbol"] == symbol]
    assert len(found) == 1, account["positions"]
    position: dict[str, Any] = found[0]
    assert position["side"] == "long"
    for key, value in expected.items():
        if is_number(value):
            assert is_number(position[key]), (key, position[key])
            assert math.isclose(position[key], value, rel_tol=1e-12), (key, position[key])
        else:
            assert position[key] == value, (key, position[key])
    return position


def _order(order: dict[str, Any]) -> tuple[Any, ...]:
    return (order["symbol"], order["side"], order["type"], order["qty"], order["price"])


def test_every_reported_quantity_and_amount_is_a_json_number(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = replay_json(write(tmp_path, MIXED_SCENARIO), capsys)
    for account in out["accounts"].values():
        for key in ("balance", "equity", "available", "in_use"):
            assert is_number(account[key]), (key, account[key])
        for position in account["positions"]:
            for key in ("qty", "avg_price", "margin"):
                assert is_number(position[key]), (key, position[key])
        for order in account["orders"]:
            for key in ("qty", "price"):
                assert is_number(order[key]), (key, order[key])


def test_symbols_are_catalog_names_on_brokers_with_native_naming(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = replay_json(write(tmp_path, MIXED_SCENARIO), capsys)
    symbols = {p["symbol"] for a in out["accounts"].values() for p in a["positions"]}
    symbols |= {o["symbol"] for a in out["accounts"].values() for o in a["orders"]}
    symbols |= {f["symbol"] for f in out["failures"]}
    assert symbols == {"MNQ", "BTCUSDT"}


def test_without_json_a_summary_is_printed(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(write(tmp_path, MIXED_SCENARIO))]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() != ""
    assert captured.err == ""


# --- invalid files ------------------------------------------------------------------------------


def _valid(**changes: Any) -> dict[str, Any]:
    scenario: dict[str, Any] = {
        "prices": {"MNQ": 21000},
        "accounts": [{"id": "lead", "balance": 50000}, {"id": "f1", "balance": 20000}],
        "groups": [{"name": "G", "leader": "lead", "followers": ["f1"]}],
        "steps": [{"op": "order", "account": "lead", "symbol": "MNQ", "side": "buy", "qty": 1}],
    }
    scenario.update(changes)
    return scenario


INVALID: list[Any] = [
    pytest.param("{ this is not json", ["not valid JSON"], id="not_json"),
    pytest.param("[1, 2]", ["JSON object"], id="not_an_object"),
    pytest.param(_valid(accounts=[{"id": "lead", "balance": 50000},
                                  {"id": "f1", "balance": "lots"}]),
                 ["accounts[1].balance"], id="balance_wrong_type"),
    pytest.param(_valid(accounts=[{"id": "lead", "balance": 50000},
                                  {"id": "f1", "balance": [20000]}]),
                 ["accounts[1].balance"], id="balance_a_list"),
    pytest.param(_valid(steps=[{"op": "price", "symbol": "MNQ", "price": 21000},
                               {"op": "teleport"}]),
                 ["teleport", "1"], id="unknown_op"),
    pytest.param(_valid(groups=[{"name": "G", "leader": "lead", "followers": ["ghost"]}]),
                 ["groups[0]", "ghost"], id="group_unknown_account"),
    pytest.param(_valid(prices={"MNQ": 21000.1}), ["MNQ", "tick"], id="price_off_tick"),
    pytest.param(_valid(prices={"MNQ": 1e30}), ["prices.MNQ"], id="price_absurdly_large"),
    pytest.param(_valid(accounts=[{"id": "lead", "balance": 50000},
                                  {"id": "f1", "broker": "nowhere", "balance": 1}]),
                 ["accounts[1]", "nowhere"], id="unknown_broker"),
]


@pytest.mark.parametrize(("content", "named"), INVALID)
def test_an_invalid_file_exits_2_with_one_line_naming_the_problem(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], content: dict[str, Any] | str,
        named: list[str]) -> None:
    path = write(tmp_path, content)
    assert main(["replay", str(path), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    for fragment in named:
        assert fragment in lines[0], lines[0]


def test_a_missing_file_exits_2_with_one_line(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "absent.json"
    assert main(["replay", str(path), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "absent.json" in lines[0]
    assert "Traceback" not in captured.err


# --- refused steps ----------------------------------------------------------------------------


def test_bad_steps_are_listed_in_errors_and_the_replay_goes_on(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scenario = _valid(steps=[
        {"op": "order", "account": "ghost", "symbol": "MNQ", "side": "buy", "qty": 1},
        {"op": "ratio", "group": "G", "follower": "f1", "symbol": "MNQ", "ratio": 11},
        {"op": "order", "account": "lead", "symbol": "MNQ", "qty": 1},
        {"op": "price", "symbol": "MNQ", "price": 21000.1},
        {"op": "order", "account": "lead", "symbol": "MNQ", "side": "buy", "qty": 1},
        {"op": "ratio", "group": "G", "follower": "f1", "symbol": "MNQ", "ratio": 2},
        {"op": "order", "account": "lead", "symbol": "MNQ", "side": "buy", "qty": 1},
        {"op": "set_leader", "group": "Nope", "account": "lead"},
    ])
    out = replay_json(write(tmp_path, scenario), capsys)
    errors = {e["step"]: e["message"] for e in out["errors"]}
    assert sorted(errors) == [0, 1, 2, 3, 7]
    assert "ghost" in errors[0]
    assert "ratio" in errors[1]
    assert "side" in errors[2]
    assert "tick" in errors[3]
    assert "Nope" in errors[7]
    # Steps 4 and 6 ran: the leader holds 2, f1 got 1 x 1 then 1 x 2 (ratio 11 changed nothing).
    assert out["accounts"]["lead"]["positions"][0]["qty"] == 2
    assert out["accounts"]["f1"]["positions"][0]["qty"] == 3


@pytest.mark.parametrize(
    ("step", "field"),
    [
        ({"op": "price", "symbol": "MNQ"}, "price"),
        ({"op": "ratio", "group": "G", "follower": "f1", "symbol": "MNQ"}, "ratio"),
        ({"op": "order", "account": "lead", "symbol": "MNQ", "side": "buy", "qty": 1,
          "type": "limit", "price": "cheap"}, "price"),
    ],
    ids=["price_step_missing_price", "ratio_step_missing_ratio", "order_bad_price"],
)
def test_a_refused_step_error_names_the_bad_field(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str],
                                                  step: dict[str, Any], field: str) -> None:
    out = replay_json(write(tmp_path, _valid(steps=[step])), capsys)
    assert [e["step"] for e in out["errors"]] == [0]
    assert field in out["errors"][0]["message"], out["errors"][0]["message"]


@pytest.mark.parametrize(
    "step",
    [
        {"op": "order", "account": "lead", "symbol": "MNQ", "side": "buy", "qty": 1e30},
        {"op": "price", "symbol": "MNQ", "price": 1e30},
        {"op": "order", "account": "lead", "symbol": "BTCUSDT", "side": "buy", "margin": 1e30},
    ],
    ids=["huge_qty", "huge_price", "huge_margin"],
)
def test_an_absurdly_large_number_in_a_step_is_a_refused_step_not_a_crash(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], step: dict[str, Any]) -> None:
    scenario = _valid(prices={"MNQ": 21000, "BTCUSDT": 50000}, steps=[
        step,
        {"op": "order", "account": "lead", "symbol": "MNQ", "side": "buy", "qty": 1},
    ])
    out = replay_json(write(tmp_path, scenario), capsys)
    assert [e["step"] for e in out["errors"]] == [0]
    assert out["accounts"]["f1"]["positions"][0]["qty"] == 1


# --- the shared example scenarios ---------------------------------------------------------------


def matches(actual: Any, expected: Any, path: str, problems: list[str]) -> None:
    """Subset matching as the shared check.py does: objects by their expected keys, lists
    of the same length matched in any order, numbers within 1e-6 relative."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            problems.append(f"{path}: expected an object, got {actual!r}")
            return
        for key, value in expected.items():
            if key not in actual:
                problems.append(f"{path}.{key}: missing")
            else:
                matches(actual[key], value, f"{path}.{key}", problems)
    elif isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            problems.append(f"{path}: expected {expected!r}, got {actual!r}")
            return
        free = list(range(len(actual)))
        for index, item in enumerate(expected):
            for candidate in free:
                trial: list[str] = []
                matches(actual[candidate], item, f"{path}[{index}]", trial)
                if not trial:
                    free.remove(candidate)
                    break
            else:
                problems.append(f"{path}: no item matches {item!r}; got {actual!r}")
    elif isinstance(expected, bool) or expected is None or isinstance(expected, str):
        if actual != expected:
            problems.append(f"{path}: expected {expected!r}, got {actual!r}")
    elif is_number(expected):
        if not is_number(actual) or not math.isclose(actual, expected, rel_tol=1e-6,
                                                     abs_tol=1e-9):
            problems.append(f"{path}: expected {expected!r}, got {actual!r}")
    else:
        problems.append(f"{path}: unsupported expectation {expected!r}")


def test_the_matcher_itself_rejects_mismatches() -> None:
    problems: list[str] = []
    matches({"a": [1, 2], "b": "x"}, {"a": [2, 1], "b": "x"}, "$", problems)
    assert problems == []
    for actual, expected in (({"a": [1]}, {"a": [1, 1]}), ({"a": 1.1}, {"a": 1}),
                             ({}, {"a": None}), ({"a": True}, {"a": 1}), ({"a": "1"}, {"a": 1})):
        found: list[str] = []
        matches(actual, expected, "$", found)
        assert found, (actual, expected)


SCENARIO_FILES = sorted(SCENARIOS.glob("*.json"))


def test_the_shared_scenarios_are_present() -> None:
    assert [f.name[:2] for f in SCENARIO_FILES] == ["01", "03", "04", "05", "06"]


@pytest.mark.parametrize("file", SCENARIO_FILES, ids=[f.stem for f in SCENARIO_FILES])
def test_shared_scenario_meets_its_expectations(file: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    scenario = json.loads(file.read_text())
    expect = dict(scenario["expect"])
    errors_at = expect.pop("errors_at", [])
    out = replay_json(file, capsys)
    problems: list[str] = []
    matches(out, expect, "$", problems)
    assert problems == []
    assert sorted(e["step"] for e in out["errors"]) == sorted(errors_at), out["errors"]
