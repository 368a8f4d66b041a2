"""Reconciliation (SPEC 9): expected against actual, `out_of_sync`, `resync`.

Each scenario is replayed in memory and through a real database; both agree."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.test_trust import base, both, pos


def drifts(result: dict[str, Any]) -> list[tuple[str, str, str, Any, Any]]:
    return [(d["group"], d["account"], d["symbol"], d["expected"], d["actual"])
            for d in result["out_of_sync"]]


def test_a_follower_added_while_the_leader_holds_is_out_of_sync_until_resynced(
        tmp_path: Path) -> None:
    steps: list[dict[str, Any]] = [
        {"op": "order", "account": "lead", "symbol": "MNQ", "side": "sell", "qty": 2},
        {"op": "add_followers", "group": "G", "accounts": ["f2"]},
        {"op": "ratio", "group": "G", "follower": "f2", "symbol": "MNQ", "ratio": 3}]
    desk = base([{"id": "f1", "balance": 100000}], steps=steps)
    desk["accounts"].append({"id": "f2", "balance": 100000})
    assert drifts(both(desk, tmp_path / "a")) == [("G", "f2", "MNQ", -6, 0)]
    steps.append({"op": "resync", "group": "G", "follower": "f2", "symbol": "MNQ"})
    result = both(desk, tmp_path / "b")
    assert result["out_of_sync"] == [] and result["errors"] == []
    assert pos(result, "f2", "MNQ") == -6


def test_a_ratio_change_or_a_manual_trade_makes_a_follower_out_of_sync_at_once(
        tmp_path: Path) -> None:
    desk = base([{"id": "f1", "balance": 100000}, {"id": "f2", "balance": 100000}], steps=[
        {"op": "order", "account": "lead", "symbol": "MNQ", "side": "buy", "qty": 2},
        {"op": "ratio", "group": "G", "follower": "f1", "symbol": "MNQ", "ratio": 2},
        {"op": "order", "account": "f2", "symbol": "MES", "side": "buy", "qty": 1}])
    desk["prices"]["MES"] = 6000
    assert drifts(both(desk, tmp_path)) == [("G", "f1", "MNQ", 4, 2), ("G", "f2", "MES", 0, 1)]


def test_two_contracts_on_one_follower_symbol_expect_their_sum_under_the_first(
        tmp_path: Path) -> None:
    desk = base([{"id": "f1", "balance": 1000000}], steps=[
        {"op": "cross", "group": "G", "follower": "f1", "symbol": "MNQ", "to": "NQ"},
        {"op": "order", "account": "lead", "symbol": "MNQ", "side": "buy", "qty": 2},
        {"op": "order", "account": "lead", "symbol": "NQ", "side": "buy", "qty": 1},
        {"op": "order", "account": "f1", "symbol": "NQ", "side": "sell", "qty": 1}])
    result = both(desk, tmp_path)
    assert drifts(result) == [("G", "f1", "MNQ", 3, 2)]


def test_only_synced_ratio_followers_of_active_groups_are_listed(tmp_path: Path) -> None:
    desk = base([{"id": "f1", "balance": 100000}, {"id": "f2", "balance": 100000}], steps=[
        {"op": "follow", "group": "G", "account": "me", "mode": "smart_sync",
         "investment": 1000},
        {"op": "order", "account": "lead", "symbol": "MNQ", "side": "buy", "qty": 2},
        {"op": "sync", "group": "G", "follower": "f1", "symbol": "MNQ", "on": False},
        {"op": "order", "account": "lead", "symbol": "MNQ", "side": "buy", "qty": 1},
        {"op": "create_group", "name": "P", "leader": "lead2", "followers": ["f3"]},
        {"op": "pause", "group": "P"},
        {"op": "order", "account": "lead2", "symbol": "MNQ", "side": "buy", "qty": 1}])
    desk["accounts"] += [{"id": "me", "balance": 100000}, {"id": "lead2", "balance": 100000},
                         {"id": "f3", "balance": 100000}]
    result = both(desk, tmp_path)
    assert result["groups"]["P"]["status"] == "paused"
    assert drifts(result) == []
    assert pos(result, "f1", "MNQ") == 2 and pos(result, "f2", "MNQ") == 3


def test_resync_on_the_wrong_side_closes_then_opens_without_brackets(tmp_path: Path) -> None:
    desk = base([{"id": "f1", "balance": 100000}], steps=[
        {"op": "order", "account": "lead", "symbol": "MNQ", "side": "buy", "qty": 1,
         "stop_loss": 20900},
        {"op": "order", "account": "f1", "symbol": "MNQ", "side": "sell", "qty": 4},
        {"op": "ratio", "group": "G", "follower": "f1", "symbol": "MNQ", "ratio": 2},
        {"op": "resync", "group": "G", "follower": "f1", "symbol": "MNQ"}])
    result = both(desk, tmp_path)
    assert result["out_of_sync"] == [] and result["failures"] == []
    assert pos(result, "f1", "MNQ") == 2
    assert [o["role"] for o in result["accounts"]["f1"]["orders"]] == []


def test_resync_that_reduces_or_is_in_sync_or_cannot_be_afforded(tmp_path: Path) -> None:
    desk = base([{"id": "f1", "balance": 100000}, {"id": "poor", "balance": 150}], steps=[
        {"op": "order", "account": "lead", "symbol": "MNQ", "side": "buy", "qty": 2},
        {"op": "order", "account": "f1", "symbol": "MNQ", "side": "buy", "qty": 3},
        {"op": "resync", "group": "G", "follower": "f1", "symbol": "MNQ"},
        {"op": "resync", "group": "G", "follower": "f1", "symbol": "MNQ"},
        {"op": "resync", "group": "G", "follower": "poor", "symbol": "MNQ"}])
    result = both(desk, tmp_path)
    assert pos(result, "f1", "MNQ") == 2
    assert [(f["account"], f["reason"]) for f in result["failures"]] == [
        ("poor", "insufficient_margin"), ("poor", "insufficient_margin")]
    assert drifts(result) == [("G", "poor", "MNQ", 2, 0)]


def test_resync_is_refused_for_a_copy_a_follower_not_synced_or_a_paused_group(
        tmp_path: Path) -> None:
    desk = base([{"id": "f1", "balance": 100000}], steps=[
        {"op": "follow", "group": "G", "account": "me", "mode": "smart_sync",
         "investment": 1000},
        {"op": "resync", "group": "G", "follower": "me", "symbol": "MNQ"},
        {"op": "sync", "group": "G", "follower": "f1", "symbol": "MNQ", "on": False},
        {"op": "resync", "group": "G", "follower": "f1", "symbol": "MNQ"},
        {"op": "pause", "group": "G"},
        {"op": "resync", "group": "G", "follower": "f1", "symbol": "ES"}])
    desk["accounts"].append({"id": "me", "balance": 100000})
    result = both(desk, tmp_path)
    assert [e["step"] for e in result["errors"]] == [1, 3, 5]


def test_resyncs_after_a_restart_get_client_ids_of_their_own(tmp_path: Path) -> None:
    desk = base([{"id": "f1", "balance": 100000}], steps=[
        {"op": "order", "account": "lead", "symbol": "MNQ", "side": "buy", "qty": 1},
        {"op": "order", "account": "f1", "symbol": "MNQ", "side": "buy", "qty": 1},
        {"op": "resync", "group": "G", "follower": "f1", "symbol": "MNQ"},
        {"op": "restart"},
        {"op": "order", "account": "f1", "symbol": "MNQ", "side": "buy", "qty": 1},
        {"op": "resync", "group": "G", "follower": "f1", "symbol": "MNQ"}])
    result = both(desk, tmp_path)
    assert result["failures"] == [] and result["out_of_sync"] == []
    assert pos(result, "f1", "MNQ") == 1
