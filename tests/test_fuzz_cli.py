"""Fuzz of the scenario loader and `synctui replay` (issue 9, item 12).

Valid scenario files (tests/scenarios, sample_data, tests/fixtures/fuzz_seed_perps.json
and, when present, the shared scenarios) are mutated: values replaced by hostile ones
(huge and tiny exponents, 5000-digit integers, NaN, lone surrogates, control
characters, deep nesting) or by random JSON, keys deleted, duplicated or renamed,
types changed, steps duplicated, dropped or shuffled, the text truncated. Whatever
the file, the answer must be exit 0 with a JSON report on stdout, or exit 2 with
exactly one printable line on stderr; never a traceback, never a hang.

The bulk runs in-process through `synctui.cli.main` (fast): a per-case interval
timer turns a hang in Python code into a failure, and a faulthandler watchdog
kills the run with a traceback if a hang sits in C code that no signal reaches,
so CI fails instead of freezing. A few cases go through a real `synctui replay`
process with a timeout. `SYNCTUI_LONG=1` runs ten times as many of each.
"""

from __future__ import annotations

import contextlib
import faulthandler
import io
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from synctui.cli import main
from tests.conftest import scaled

ROOT = Path(__file__).parent.parent
SEED_FILES = sorted([
    *ROOT.glob("tests/scenarios/*.json"),
    *ROOT.glob("sample_data/*.json"),
    ROOT / "tests" / "fixtures" / "fuzz_seed_perps.json",
    *Path("/work/shared/scenarios").glob("*.json"),  # more seeds where they exist
])
SEEDS: list[Any] = [json.loads(path.read_text(encoding="utf-8")) for path in SEED_FILES]

CASE_SECONDS = 10      # a case normally takes milliseconds
WATCHDOG_SECONDS = 60  # a hang in C code: dump the stacks and end the run


class Raw:
    """JSON text written as is (what `json.dumps` cannot produce: NaN, 5000 digits)."""

    def __init__(self, text: str) -> None:
        self.text = text


class Pairs(list[tuple[str, Any]]):
    """A JSON object as key-value pairs, so a key can appear twice."""


HOSTILE_NUMBERS = [
    "1e-999999999", "1e999999999", "-1e999999999", "1e-1000030", "1e-400", "1e-28",
    "1e-16", "1e16", "0E-1000000", "0e+99", "-0", "0", "0.0", str(2**63), str(2**64),
    "9" * 5000, "-" + "9" * 5000, "1." + "0" * 40 + "1", "12345678901234567890123456789",
    "NaN", "Infinity", "-Infinity", "1e15", "999999999999999", "-1", "0.5", "11", "1e-15",
]
HOSTILE_STRINGS = [
    "\ud800", "\udfff", "a\ud800b", "MN\nQ", "MN\rQ", "\x1b[2J", "\x00", "", " ", "\u2028",
    "\u202e", "\ufeff", "x" * 10_000, "\U0001f600", "Ñ", "\\", '"', "buy", "sell", "MNQ",
    "BTCUSDT", "lead", "f1", "sim", "G", "order", "price", "restart", "__proto__", "1e5",
    "NaN", "null", "true",
]
DEPTHS = [2, 50, 99, 100, 101, 500, 1_000, 5_000, 100_000]


def nested(depth: int, inner: str, kind: str) -> Raw:
    if kind == "list":
        return Raw("[" * depth + inner + "]" * depth)
    return Raw('{"a":' * depth + inner + "}" * depth)


json_leaves = st.one_of(
    st.none(), st.booleans(), st.integers(), st.text(max_size=20),
    st.sampled_from(HOSTILE_STRINGS),
    st.sampled_from(HOSTILE_NUMBERS).map(Raw),
    st.decimals(allow_nan=False, allow_infinity=False).map(lambda d: Raw(str(d))),
)
random_json = st.recursive(
    json_leaves,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)
hostile_value = st.one_of(
    st.sampled_from(HOSTILE_NUMBERS).map(Raw),
    st.sampled_from(HOSTILE_STRINGS),
    st.builds(nested, st.sampled_from(DEPTHS), st.sampled_from(["1", "[]", '"x"']),
              st.sampled_from(["list", "object"])),
    random_json,
)


def dump(node: Any) -> str:
    """JSON text of the mutated tree (ASCII, so a lone surrogate is a valid escape)."""
    if isinstance(node, Raw):
        return node.text
    if isinstance(node, Pairs):
        return "{" + ",".join(f"{json.dumps(k)}:{dump(v)}" for k, v in node) + "}"
    if isinstance(node, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{dump(v)}" for k, v in node.items()) + "}"
    if isinstance(node, list | tuple):
        return "[" + ",".join(dump(v) for v in node) + "]"
    return json.dumps(node)


def containers(node: Any) -> Iterator[Any]:
    """Every dict and list in the tree, the root first (a duplicated key's pairs are
    left as they are)."""
    todo = [node]
    while todo:
        current = todo.pop()
        if isinstance(current, dict | list) and not isinstance(current, Pairs):
            yield current
            todo.extend(current.values() if isinstance(current, dict) else current)


def mutate(draw: st.DrawFn, tree: Any) -> None:
    """One mutation, in place, somewhere in the tree."""
    places = list(containers(tree))
    place = draw(st.sampled_from(places), label="container")
    keys: list[Any] = list(place) if isinstance(place, dict) else list(range(len(place)))
    action = draw(st.sampled_from(
        ["hostile", "hostile", "hostile", "random", "delete", "duplicate", "retype",
         "rename", "insert"]), label="action")
    if not keys or action == "insert":
        key: Any = draw(st.sampled_from([*HOSTILE_STRINGS, "op", "qty", "steps"]))
        value = draw(hostile_value, label="value")
        if isinstance(place, dict):
            place[key] = value
        else:
            place.insert(draw(st.integers(0, len(place))), value)
        return
    key = draw(st.sampled_from(keys), label="key")
    if action == "hostile":
        place[key] = draw(hostile_value, label="value")
    elif action == "random":
        place[key] = draw(random_json, label="value")
    elif action == "delete":
        del place[key]
    elif action == "duplicate":
        if isinstance(place, list):
            place.insert(key, place[key])
        else:
            other = draw(hostile_value, label="first value")
            pairs = Pairs([(k, v) for k, v in place.items() if k != key])
            pairs[0:0] = [(key, other), (key, place[key])]  # the last one counts
            place.clear()
            place["__pairs__"] = pairs
    elif action == "retype":
        current = place[key]
        place[key] = draw(st.sampled_from(
            [[current], {"value": current}, dump(current)[:100], None, True, 0, []]),
            label="retyped")
    else:  # rename
        if isinstance(place, dict):
            place[draw(st.sampled_from(HOSTILE_STRINGS), label="new key")] = place.pop(key)
        else:
            place[:] = draw(st.permutations(place), label="shuffled")


def unpair(node: Any) -> Any:
    """Turn the `__pairs__` marker of a duplicated key into a `Pairs` object."""
    if isinstance(node, Pairs):
        return Pairs([(k, unpair(v)) for k, v in node])
    if isinstance(node, dict):
        if set(node) == {"__pairs__"} and isinstance(node["__pairs__"], Pairs):
            return Pairs([(k, unpair(v)) for k, v in node["__pairs__"]])
        return {k: unpair(v) for k, v in node.items()}
    if isinstance(node, list):
        return [unpair(v) for v in node]
    return node


@st.composite
def hostile_files(draw: st.DrawFn) -> bytes:
    """A valid scenario with one to three mutations; now and then broken as text."""
    tree = json.loads(json.dumps(draw(st.sampled_from(SEEDS), label="seed")))
    for _ in range(draw(st.integers(1, 3), label="mutations")):
        mutate(draw, tree)
    text = dump(unpair(tree)).encode("ascii")
    damage = draw(st.sampled_from(["none"] * 12 + ["truncate", "bytes", "bom", "empty"]))
    if damage == "truncate":
        return text[:draw(st.integers(0, len(text)))]
    if damage == "bytes":
        at = draw(st.integers(0, len(text)))
        return text[:at] + draw(st.sampled_from([b"\xff", b"\xed\xa0\x80", b"\x00", b"\xc3"])) \
            + text[at:]
    if damage == "bom":
        return b"\xef\xbb\xbf" + text
    if damage == "empty":
        return b""
    return text


def check_answer(code: int, out: str, err: str) -> None:
    """Exit 0 with a JSON report, or exit 2 with one printable line on stderr."""
    assert "Traceback" not in err, err
    if code == 0:
        assert err == "", err
        report = json.loads(out)
        assert isinstance(report, dict) and isinstance(report["errors"], list)
        for error in report["errors"]:
            assert isinstance(error["message"], str)
        return
    assert code == 2, (code, err[-2000:])
    assert out == "", out[:2000]
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith("synctui: "), err
    assert err[:-1].isprintable(), err


class Hung(Exception):
    """A case ran past CASE_SECONDS: a hang, turned into a failure."""


def _hung(signum: int, frame: FrameType | None) -> None:
    raise Hung(f"a case ran longer than {CASE_SECONDS} s")


@contextlib.contextmanager
def time_limit() -> Iterator[None]:
    previous = signal.signal(signal.SIGALRM, _hung)
    signal.setitimer(signal.ITIMER_REAL, CASE_SECONDS)
    faulthandler.dump_traceback_later(WATCHDOG_SECONDS, exit=True)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        faulthandler.cancel_dump_traceback_later()


def replay_in_process(path: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with time_limit(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["replay", str(path), "--json"])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def test_every_seed_replays_cleanly(scratch: Path) -> None:
    """The corpus itself is valid: a mutation, not the seed, makes a file bad."""
    assert len(SEEDS) >= 7
    for seed in SEED_FILES:
        code, out, err = replay_in_process(seed)
        assert code == 0, (seed, err)
        check_answer(code, out, err)


@settings(max_examples=scaled(2000, 20000), deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.large_base_example,
                                 HealthCheck.function_scoped_fixture])
@given(content=hostile_files())
def test_a_mutated_scenario_is_replayed_or_refused_in_one_line(scratch: Path,
                                                                content: bytes) -> None:
    path = scratch / "case.json"
    path.write_bytes(content)
    code, out, err = replay_in_process(path)
    event(f"exit {code}" + (" with refused steps" if code == 0 and '"step"' in out else ""))
    check_answer(code, out, err)


def _synctui() -> list[str]:
    script = Path(sys.executable).parent / "synctui"
    return [str(script)] if script.exists() else [sys.executable, "-m", "synctui.cli"]


@settings(max_examples=scaled(20, 200), deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.large_base_example,
                                 HealthCheck.function_scoped_fixture])
@given(content=hostile_files())
def test_a_mutated_scenario_through_a_real_process(scratch: Path, content: bytes) -> None:
    path = scratch / "process-case.json"
    path.write_bytes(content)
    done = subprocess.run([*_synctui(), "replay", str(path), "--json"],
                          capture_output=True, timeout=60, check=False)
    check_answer(done.returncode, done.stdout.decode("utf-8"), done.stderr.decode("utf-8"))
