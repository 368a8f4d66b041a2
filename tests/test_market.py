from decimal import Decimal

from synctui.domain.instruments import Catalog
from synctui.market.simulator import MarketSimulator

START = {"MNQ": Decimal("21000"), "BTCUSDT": Decimal("50000"), "MCL": Decimal("70.25")}


def _run(seed: int, steps: int) -> list[list[tuple[str, Decimal]]]:
    market = MarketSimulator(Catalog(), START, seed)
    return [market.step() for _ in range(steps)]


def test_same_seed_same_prices() -> None:
    assert _run(7, 200) == _run(7, 200)


def test_different_seeds_differ() -> None:
    assert _run(7, 50) != _run(8, 50)


def test_prices_stay_on_the_tick_grid_and_positive() -> None:
    catalog = Catalog()
    for updates in _run(3, 500):
        for symbol, price in updates:
            instrument = catalog.get(symbol)
            assert isinstance(price, Decimal)
            assert price > 0
            assert price % instrument.tick == 0


def test_every_family_moves() -> None:
    runs = _run(11, 100)
    for symbol in ("MNQ", "BTCUSDT", "MCL"):
        seen = {price for updates in runs for s, price in updates if s == symbol}
        assert len(seen) > 10
