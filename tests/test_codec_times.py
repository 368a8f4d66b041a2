"""The store's time text (`codec.iso_time`) is `isoformat`'s, whatever came before it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from synctui.store.codec import iso_time

zones = st.sampled_from([None, UTC, timezone(timedelta(hours=2)), timezone(timedelta(0))])
start = datetime(2026, 11, 30, 23, 59, 58, tzinfo=UTC)


@settings(max_examples=300, deadline=None)
@given(times=st.lists(st.datetimes(timezones=zones), max_size=30),
       steps=st.lists(st.integers(-2_000_000, 2_000_000), max_size=60))
def test_a_time_s_text_is_its_isoformat(times: list[datetime], steps: list[int]) -> None:
    # any times at all, then a run of UTC times microseconds to seconds apart, across a
    # second, a minute and a day, going back as well as on
    at = start
    run = []
    for step in steps:
        at += timedelta(microseconds=step)
        run.append(at)
    for when in [*times, *run, *times]:
        assert iso_time(when) == when.isoformat()


def test_the_whole_second_has_no_fraction() -> None:
    assert iso_time(start + timedelta(microseconds=5)) == "2026-11-30T23:59:58.000005+00:00"
    assert iso_time(start) == "2026-11-30T23:59:58+00:00"
    assert iso_time(start + timedelta(seconds=1, microseconds=999_999)) == (
        "2026-11-30T23:59:59.999999+00:00")


def test_a_day_apart_in_the_same_second_of_the_day() -> None:
    for days in (1, -1, 400):
        assert iso_time(start) == "2026-11-30T23:59:58+00:00"
        later = start + timedelta(days=days, microseconds=7)
        assert iso_time(later) == later.isoformat()
