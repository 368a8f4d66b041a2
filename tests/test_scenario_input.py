"""Hostile scenario files (issue 9): each one is refused with exit 2 and exactly one
line on stderr, changes nothing, never hangs and never shows a traceback. A bad
number inside `steps` is a refused step instead (listed in `errors`, the replay
goes on), as SPEC 7 asks for any bad step input.

Each test here failed on the code before the fix (a RecursionError, a ValueError,
a TypeError, an OverflowError, a hang, a two-line message, or an accepted price
of about 0). Files that hung in C code (where no Python signal can interrupt) run
in a subprocess with a timeout, so a regression fails the test instead of CI.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from synctui.cli import main
from synctui.domain.numbers import MAX_DIGITS, MAX_EXPONENT, NumberError, bounded
from synctui.engine.views import parse_amount
from synctui.scenario.model import parse_scenario
from tests.test_replay_cli import replay_json

ROOT = Path(__file__).parent.parent
CAP = 16 * 2**20  # the size cap on a scenario file, 16 MiB

BASE: dict[str, Any] = {
    "prices": {"MNQ": 21000},
    "accounts": [{"id": "lead", "balance": 50000}, {"id": "f1", "balance": 20000}],
    "groups": [{"name": "G", "leader": "lead", "followers": ["f1"]}],
    "steps": [{"op": "order", "account": "lead", "symbol": "MNQ", "side": "buy", "qty": 1}],
}


class Hung(Exception):
    """A replay ran past its time: a hang, turned into a failure."""


def _hung(signum: int, frame: FrameType | None) -> None:
    raise Hung("the replay did not finish in time")


@pytest.fixture(autouse=True)
def no_hang() -> Iterator[None]:
    """Each test here must finish in seconds; a hang in Python code fails it."""
    previous = signal.signal(signal.SIGALRM, _hung)
    signal.setitimer(signal.ITIMER_REAL, 20)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def write(tmp_path: Path, text: str, name: str = "scenario.json") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def with_literal(scenario: dict[str, Any], placeholder: str, literal: str) -> str:
    """The scenario as JSON text with the string `placeholder` replaced by raw JSON."""
    text = json.dumps(scenario)
    assert f'"{placeholder}"' in text
    return text.replace(f'"{placeholder}"', literal)


def refused(path: Path | str, capsys: pytest.CaptureFixture[str]) -> str:
    """Replay `path`: exit 2, nothing on stdout, one line on stderr (returned)."""
    code = main(["replay", str(path), "--json"])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert code == 2, captured.err
    assert captured.out == ""
    assert captured.err.endswith("\n") and captured.err.count("\n") == 1, captured.err
    assert captured.err.startswith("synctui: ")
    assert captured.err.isprintable() or captured.err[:-1].isprintable()
    return captured.err


replayed = replay_json  # exit 0, nothing on stderr, the JSON report


def _small_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (2 * 2**30, 2 * 2**30))


def run_cli(path: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """`synctui replay PATH --json` in its own process, killed after `timeout` and
    held to 2 GiB of memory (reading /dev/zero must not eat the machine)."""
    return subprocess.run(
        [sys.executable, "-m", "synctui.cli", "replay", str(path), "--json"],
        capture_output=True, text=True, timeout=timeout, check=False,
        preexec_fn=_small_memory)


# --- structure ---------------------------------------------------------------------------


def test_json_nested_100000_deep_is_refused(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    err = refused(write(tmp_path, "[" * 100_000 + "]" * 100_000), capsys)
    assert "nested" in err


def test_an_object_nested_100000_deep_inside_a_field_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    deep = '{"a":' * 100_000 + "1" + "}" * 100_000
    err = refused(write(tmp_path, with_literal({**BASE, "expect": "DEEP"}, "DEEP", deep)), capsys)
    assert "nested" in err


def test_json_nested_a_little_too_deep_for_the_limit_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Below Python's recursion limit, still deeper than any scenario needs."""
    text = json.dumps({**BASE, "expect": "X"}).replace('"X"', "[" * 500 + "]" * 500)
    assert "nested" in refused(write(tmp_path, text), capsys)


def test_an_integer_of_5000_digits_is_refused_naming_its_field(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = with_literal({**BASE, "accounts": [{"id": "lead", "balance": "N"}]}, "N", "9" * 5000)
    err = refused(write(tmp_path, text), capsys)
    assert "accounts[0].balance" in err
    assert len(err) < 300


def test_an_integer_of_5000_digits_in_a_step_refuses_that_step(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scenario = {**BASE, "steps": [{"op": "price", "symbol": "MNQ", "price": "N"}]}
    out = replayed(write(tmp_path, with_literal(scenario, "N", "9" * 5000)), capsys)
    assert [e["step"] for e in out["errors"]] == [0]
    assert "price" in out["errors"][0]["message"]


@pytest.mark.parametrize("op", [["order"], {"op": "order"}, 7, None, True])
def test_an_op_that_is_not_a_string_is_refused(op: object, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    scenario = {**BASE, "steps": [{"op": op, "account": "lead"}]}
    err = refused(write(tmp_path, json.dumps(scenario)), capsys)
    assert "steps[0].op" in err


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_json_constants_are_refused(constant: str, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    scenario = {**BASE, "steps": [{"op": "price", "symbol": "MNQ", "price": "N"}]}
    err = refused(write(tmp_path, with_literal(scenario, "N", constant)), capsys)
    assert constant.lstrip("-") in err


# --- numbers in the starting world -------------------------------------------------------

PERP: dict[str, Any] = {"symbol": "XX", "family": "XX", "tick": 1, "max_leverage": 10}


@pytest.mark.parametrize("tick", ["1e-28", "1e-400", "1e-999999999", "0E-1000000"])
def test_an_instrument_tick_far_too_small_is_refused(tick: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    scenario = {**BASE, "instruments": [{**PERP, "tick": "T"}]}
    err = refused(write(tmp_path, with_literal(scenario, "T", tick)), capsys)
    assert "instruments[0].tick" in err


def test_an_instrument_defined_twice_is_refused(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Found by the fuzz: the store's one row per symbol raised an IntegrityError."""
    scenario = {**BASE, "instruments": [PERP, {**PERP, "tick": 2}]}
    err = refused(write(tmp_path, json.dumps(scenario)), capsys)
    assert "instruments[1].symbol" in err and "twice" in err


def test_a_price_too_fine_for_its_tick_in_28_digits_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Each number is in bounds, but price / tick needs 30 digits: DivisionImpossible."""
    scenario = {**BASE, "prices": {"XX": 999999999999999},
                "instruments": [{**PERP, "tick": "T"}], "steps": []}
    err = refused(write(tmp_path, with_literal(scenario, "T", "1e-15")), capsys)
    assert "28-digit" in err


@pytest.mark.parametrize("leverage", [str(2**63), "1e999999999", "12345678901234567890"])
def test_a_max_leverage_far_too_large_is_refused(leverage: str, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    scenario = {**BASE, "instruments": [{**PERP, "max_leverage": "L"}]}
    err = refused(write(tmp_path, with_literal(scenario, "L", leverage)), capsys)
    assert "instruments[0].max_leverage" in err


def test_a_max_leverage_with_a_huge_negative_exponent_is_refused_at_once(
        tmp_path: Path) -> None:
    """`1e-999999999` hung in the int conversion (C code, deaf to Ctrl-C): a
    subprocess, so a regression fails here instead of freezing the suite."""
    scenario = {**BASE, "instruments": [{**PERP, "max_leverage": "L"}]}
    path = write(tmp_path, with_literal(scenario, "L", "1e-999999999"))
    done = run_cli(path, timeout=20)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "instruments[0].max_leverage" in done.stderr


@pytest.mark.parametrize("price", ["1e-1000030", "1e-16", "1e16", "1." + "0" * 28 + "1"])
def test_a_starting_price_out_of_bounds_makes_the_file_invalid(
        price: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = refused(write(tmp_path, with_literal({**BASE, "prices": {"MNQ": "P"}}, "P", price)),
                  capsys)
    assert "prices.MNQ" in err


def test_a_step_price_of_1e_minus_1000030_is_a_refused_step(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """It was accepted, then the long filled at about 0 and the book showed a profit."""
    scenario = {**BASE, "steps": [
        *BASE["steps"],
        {"op": "price", "symbol": "MNQ", "price": "P"},
        {"op": "order", "account": "lead", "symbol": "MNQ", "side": "sell", "qty": 1},
    ]}
    out = replayed(write(tmp_path, with_literal(scenario, "P", "1e-1000030")), capsys)
    assert [e["step"] for e in out["errors"]] == [1]
    assert "too small" in out["errors"][0]["message"]
    lead = out["accounts"]["lead"]
    assert lead["positions"] == []
    assert Decimal(str(lead["balance"])) <= Decimal(50000)


@pytest.mark.parametrize("field, literal", [
    ("qty", "1e-999999999"), ("qty", "1e999999999"), ("leverage", "1e-999999999"),
    ("stop_loss", "1e-1000030"), ("price", "NaN-placeholder"),
])
def test_a_bad_number_in_an_order_step_refuses_that_step(
        field: str, literal: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    literal = '"NaN"' if literal == "NaN-placeholder" else literal
    step = {**BASE["steps"][0], field: "V"}
    out = replayed(write(tmp_path, with_literal({**BASE, "steps": [step]}, "V", literal)),
                   capsys)
    assert [e["step"] for e in out["errors"]] == [0]
    assert field in out["errors"][0]["message"]
    assert out["accounts"]["lead"]["positions"] == []


# --- strings -----------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["account", "group", "step", "key"])
def test_a_lone_surrogate_is_refused(where: str, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    bad = "\ud800"
    scenario = json.loads(json.dumps(BASE))
    if where == "account":
        scenario["accounts"][1]["id"] = bad
    elif where == "group":
        scenario["groups"][0]["name"] = "G" + bad
    elif where == "step":
        scenario["steps"][0]["account"] = bad
    else:
        scenario["prices"][bad] = 1
    err = refused(write(tmp_path, json.dumps(scenario)), capsys)
    assert "surrogate" in err
    assert "\\ud800" in err


def test_raw_bytes_that_are_not_utf8_are_refused(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "scenario.json"
    path.write_bytes(json.dumps(BASE).encode().replace(b'"f1"', b'"f\xed\xa0\x80"'))
    assert "UTF-8" in refused(path, capsys)


@pytest.mark.parametrize("key", ["MN\nQ", "MN\rQ", "MN\x1b[2JQ", "MN\u2028Q", "MN\x00Q"])
def test_a_control_character_in_a_key_is_echoed_escaped_on_one_line(
        key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = refused(write(tmp_path, json.dumps({**BASE, "prices": {key: 1}})), capsys)
    assert err[:-1].isprintable()
    assert "MN" in err


def test_a_control_character_in_an_unknown_op_is_echoed_escaped(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = refused(write(tmp_path, json.dumps({**BASE, "steps": [{"op": "or\nder"}]})), capsys)
    assert "or\\nder" in err


def test_a_control_character_in_the_file_name_is_echoed_escaped(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = refused(write(tmp_path, "{", name="bad\nname.json"), capsys)
    assert "bad\\nname.json" in err


def test_a_huge_unknown_op_is_not_echoed_whole(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    err = refused(write(tmp_path, json.dumps({**BASE, "steps": [{"op": "x" * 100_000}]})),
                  capsys)
    assert len(err) < 500


# --- the file itself ---------------------------------------------------------------------


def test_dev_zero_is_refused_as_not_a_regular_file(tmp_path: Path) -> None:
    """It was read forever (C code, deaf to signals): a subprocess with a timeout."""
    done = run_cli(Path("/dev/zero"), timeout=20)
    assert done.returncode == 2, done.stderr[-500:]
    assert done.stderr.count("\n") == 1 and "not a regular file" in done.stderr


def test_a_fifo_is_refused_without_waiting_for_a_writer(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fifo = tmp_path / "scenario.json"
    os.mkfifo(fifo)
    assert "not a regular file" in refused(fifo, capsys)


def test_a_directory_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "not a regular file" in refused(tmp_path, capsys)


def test_a_missing_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "No such file" in refused(tmp_path / "absent.json", capsys)


def test_a_file_over_the_size_cap_is_refused_saying_the_cap(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "big.json"
    with path.open("wb") as big:
        big.truncate(CAP + 1)  # sparse: costs no disk
    err = refused(path, capsys)
    assert "16 MiB" in err


def test_a_file_at_the_size_cap_is_read(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    text = json.dumps(BASE)
    path = write(tmp_path, text + " " * (CAP - len(text)))
    assert replayed(path, capsys)["errors"] == []


# --- the output side ---------------------------------------------------------------------

ODD = {**BASE,
       "accounts": [{"id": "l\x1b[31mead\u00e9\U0001f600", "balance": 50000},
                    {"id": "f1\u2028", "balance": 20000}],
       "groups": [{"name": "G\t\u00fc", "leader": "l\x1b[31mead\u00e9\U0001f600",
                   "followers": ["f1\u2028"]}],
       "steps": [{"op": "order", "account": "l\x1b[31mead\u00e9\U0001f600", "symbol": "MNQ",
                  "side": "buy", "qty": 1}]}


@pytest.mark.parametrize("as_json", [True, False])
def test_odd_characters_in_names_never_crash_stdout(as_json: bool, tmp_path: Path) -> None:
    """An ASCII-only stdout (LANG=C) must not turn a name into a UnicodeEncodeError."""
    path = write(tmp_path, json.dumps(ODD))
    done = subprocess.run(
        [sys.executable, "-m", "synctui.cli", "replay", str(path), *(["--json"] * as_json)],
        capture_output=True, timeout=60, check=False,
        env={**os.environ, "PYTHONIOENCODING": "ascii", "LC_ALL": "C"})
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert done.stderr == b""
    if as_json:
        assert json.loads(done.stdout)["accounts"].keys() == {a["id"] for a in ODD["accounts"]}
    else:
        assert b"\x1b" not in done.stdout


# --- the helper and the TUI --------------------------------------------------------------


def scenario_numbers() -> list[Decimal]:
    found: list[Decimal] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)
        elif isinstance(node, int | Decimal) and not isinstance(node, bool):
            found.append(Decimal(node))

    files = [*ROOT.glob("sample_data/*.json"), *ROOT.glob("tests/scenarios/*.json"),
             *ROOT.glob("tests/fixtures/**/*.json"),
             *Path("/work/shared/scenarios").glob("*.json")]
    for file in files:
        walk(json.loads(file.read_text(encoding="utf-8"), parse_float=Decimal))
    return found


def test_the_bounds_admit_every_number_in_the_shipped_scenarios() -> None:
    numbers = scenario_numbers()
    assert len(numbers) > 100
    for number in numbers:
        assert bounded(number) == number


@pytest.mark.parametrize("value", [
    "0", "0.000", "-0", "1e-15", "-1e-15", "9999999999999999", "0.005", "21000.25",
    "1." + "0" * (MAX_DIGITS - 1), 10**15, -(10**15),
])
def test_bounded_accepts(value: str | int) -> None:
    assert bounded(value) == Decimal(value)


@pytest.mark.parametrize("value", [
    "NaN", "sNaN", "Infinity", "-Infinity", "1e-16", "1e16", "-1e16", "0E-1000000",
    "0E+100", "1." + "0" * MAX_DIGITS, "1e-999999999", "1e999999999", 10**16, 2**63,
    "abc", "", True,
])
def test_bounded_refuses(value: str | int | bool) -> None:
    with pytest.raises(NumberError):
        bounded(value)
    assert MAX_EXPONENT == 15


@pytest.mark.parametrize("text", ["1e-400", "1e-999999999", "9" * 5000, "1e999999999", "NaN"],
                         ids=["tiny", "tinier", "5000-digits", "huge", "nan"])
def test_a_typed_amount_out_of_bounds_is_not_a_number(text: str) -> None:
    assert parse_amount(text) is None


def test_a_typed_amount_in_bounds_is_read() -> None:
    assert parse_amount(" 1,000.50 ") == Decimal("1000.50")


def test_parse_scenario_reports_the_first_bad_field_on_one_line() -> None:
    from synctui.scenario.model import ScenarioError

    with pytest.raises(ScenarioError) as caught:
        parse_scenario(json.dumps({**BASE, "prices": {"MNQ": "1e-400"}}))
    assert "\n" not in str(caught.value)


def test_the_size_cap_is_16_mib() -> None:
    from synctui.scenario import model

    assert getattr(model, "MAX_FILE_BYTES", None) == CAP


def _unbounded(annotation: object, bounded_here: bool = False) -> bool:
    """Whether a bare Decimal or int hides in `annotation` (outside `Number`/`WholeNumber`)."""
    from typing import Annotated, get_args, get_origin

    from pydantic import BeforeValidator

    from synctui.scenario import model

    if get_origin(annotation) is Annotated:
        base, *extras = get_args(annotation)
        ours = any(isinstance(extra, BeforeValidator)
                   and extra.func in (model._bounded_number, model._bounded_whole)
                   for extra in extras)
        return _unbounded(base, bounded_here or ours)
    if annotation in (Decimal, int):
        return not bounded_here
    return any(_unbounded(arg) for arg in get_args(annotation))


def test_every_number_field_of_a_scenario_is_bounded() -> None:
    """Fields added later (new ops, new broker keys) must use `Number` or
    `WholeNumber`, or a hostile number reaches the engine unchecked."""
    from typing import get_type_hints

    from pydantic import BaseModel

    from synctui.scenario import model

    models = [value for value in vars(model).values()
              if isinstance(value, type) and issubclass(value, BaseModel)
              and value.__module__ == model.__name__]
    assert model.OrderStep in models and model.InstrumentSpec in models
    bare = [f"{cls.__name__}.{name}"
            for cls in models
            for name, hint in get_type_hints(cls, vars(model), include_extras=True).items()
            if name in cls.model_fields and _unbounded(hint)]
    assert bare == []
