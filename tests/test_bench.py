"""`synctui bench` at a tiny size: a smoke run of every measure (no timing asserts)."""

from __future__ import annotations

import json

import pytest

from synctui.cli import main


def test_bench_quick_runs_every_measure_and_prints_json(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--quick", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    modes = {(row["mode"], row["followers"]) for row in result["fan_out"]}
    assert modes == {("ratio", 1), ("ratio", 5), ("smart_sync", 1)}
    for row in result["fan_out"]:
        assert row["fills"] == 10 and 0 < row["p50_ms"] <= row["p99_ms"] <= row["max_ms"]
        assert row["follower_orders_per_s"] > 0
    assert all(row["floor_ms"] > 0 for row in result["fan_out"] if row["mode"] == "ratio")
    assert result["burst_follower_orders_per_s"] > 0
    assert result["burst_smart_sync_orders_per_s"] > 0
    assert result["startup_s"] > 0
    assert result["startup_checked_s"] > 0
    assert result["memory"]["follower_orders"] == 50
    assert result["memory"]["drift"] > 0
    assert result["tui_tick_ms"]["followers"] == 20


def test_bench_prints_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--quick"]) == 0
    out = capsys.readouterr().out
    assert "fan-out" in out and "x floor" in out and "start-up" in out and "drift" in out
