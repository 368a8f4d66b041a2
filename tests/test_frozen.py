"""`quick_init`: the faster constructor of the hot frozen dataclasses builds the same
objects the dataclass's own would, and they stay frozen."""

from __future__ import annotations

import dataclasses
from dataclasses import FrozenInstanceError, dataclass, field
from decimal import Decimal

import pytest

from synctui.brokers.base import OrderRequest
from synctui.domain.frozen import quick_init
from synctui.domain.orders import OrderType, Side


@dataclass(frozen=True, slots=True)
class Plain:
    a: str
    b: int = 3
    c: Decimal | None = None


@quick_init
@dataclass(frozen=True, slots=True)
class Quick:
    a: str
    b: int = 3
    c: Decimal | None = None


def test_it_builds_what_the_dataclass_builds_and_stays_frozen() -> None:
    for args, kwargs in ((("x",), {}), (("x", 5), {}), (("x",), {"c": Decimal("1.5")}),
                         ((), {"a": "y", "b": 0, "c": None})):
        plain, quick = Plain(*args, **kwargs), Quick(*args, **kwargs)
        assert dataclasses.astuple(plain) == dataclasses.astuple(quick)
    quick = Quick("x")
    with pytest.raises(FrozenInstanceError):
        quick.a = "y"  # type: ignore[misc]
    with pytest.raises(TypeError):
        Quick()  # a field without a default is required
    with pytest.raises(TypeError):
        Quick("x", 1, None, 2)


def test_the_hot_classes_keep_equality_hashing_and_replace() -> None:
    request = OrderRequest("MNQ", Side.BUY, Decimal(2), client_id="k")
    same = OrderRequest(symbol="MNQ", side=Side.BUY, qty=Decimal(2), type=OrderType.MARKET,
                        client_id="k")
    assert request == same and hash(request) == hash(same)
    assert dataclasses.replace(request, qty=Decimal(3)).qty == Decimal(3)
    with pytest.raises(FrozenInstanceError):
        request.qty = Decimal(1)  # type: ignore[misc]


def test_it_refuses_what_it_cannot_build() -> None:
    @dataclass(frozen=True, slots=True)
    class WithFactory:
        items: list[int] = field(default_factory=list)

    @dataclass(frozen=True)
    class NoSlots:
        a: int

    for cls in (WithFactory, NoSlots):
        with pytest.raises(TypeError):
            quick_init(cls)
