"""When a schedule builds (`runner.scheduling.schedules`): pure, over times and time zones."""

import datetime
import zoneinfo

import pytest

from runner.core.cron import is_time_zone, is_valid_expression
from runner.scheduling.schedules import due_slot, latest_slot, next_slot

NIGHTLY = "0 3 * * *"


def at(text: str, zone: str = "UTC") -> float:
    moment = datetime.datetime.fromisoformat(text).replace(tzinfo=zoneinfo.ZoneInfo(zone))
    return moment.timestamp()


def test_a_slot_is_due_from_its_minute_on_and_once() -> None:
    since = at("2026-12-01T12:00")
    assert due_slot(NIGHTLY, "UTC", since=since, built=None, now=at("2026-12-02T02:59:59")) is None
    slot = due_slot(NIGHTLY, "UTC", since=since, built=None, now=at("2026-12-02T03:00"))
    assert slot == at("2026-12-02T03:00")
    assert due_slot(NIGHTLY, "UTC", since=since, built=slot, now=at("2026-12-02T03:00:14")) is None


def test_after_downtime_only_the_latest_missed_slot_is_due() -> None:
    built = at("2026-12-01T03:00")
    now = at("2026-12-04T10:00")  # three slots missed
    slot = due_slot(NIGHTLY, "UTC", since=at("2026-11-01T00:00"), built=built, now=now)
    assert slot == at("2026-12-04T03:00")
    assert due_slot(NIGHTLY, "UTC", since=at("2026-11-01T00:00"), built=slot, now=now) is None


def test_a_new_schedule_does_not_build_a_slot_from_before_it_existed() -> None:
    since = at("2026-12-04T10:00")
    assert due_slot(NIGHTLY, "UTC", since=since, built=None, now=at("2026-12-04T10:00:30")) is None
    tomorrow = due_slot(NIGHTLY, "UTC", since=since, built=None, now=at("2026-12-05T03:00:05"))
    assert tomorrow == at("2026-12-05T03:00")


def test_slots_follow_the_schedules_time_zone_across_daylight_saving() -> None:
    zone = "Europe/Ljubljana"
    winter = latest_slot(NIGHTLY, zone, at("2026-12-04T12:00", zone))
    summer = latest_slot(NIGHTLY, zone, at("2026-07-04T12:00", zone))
    assert winter == at("2026-12-04T02:00")  # 03:00 in Ljubljana, UTC+1
    assert summer == at("2026-07-04T01:00")  # and UTC+2 in summer
    # The night the clocks go forward, 03:00 still comes (02:00 does not exist that night).
    assert next_slot(NIGHTLY, zone, at("2027-03-28T00:30", zone)) == at("2027-03-28T03:00", zone)


def test_the_night_the_clocks_go_back_builds_its_slot_once() -> None:
    zone, expression = "Europe/Ljubljana", "30 2 * * *"
    first = at("2026-10-25T00:30")  # 02:30 summer time; an hour later it is 02:30 again
    since = at("2026-10-01T00:00")
    assert due_slot(expression, zone, since=since, built=None, now=first + 1) == first
    assert due_slot(expression, zone, since=since, built=first, now=at("2026-10-25T01:31")) is None
    tomorrow = at("2026-10-26T01:30")  # 02:30 winter time
    assert due_slot(expression, zone, since=since, built=first, now=tomorrow + 1) == tomorrow


@pytest.mark.parametrize(
    ("expression", "valid"),
    [
        ("0 3 * * *", True),
        ("*/15 * * * 1-5", True),
        ("0 25 * * *", False),  # no hour 25
        ("0 3 * *", False),  # four fields
        ("0 3 * * * 2026", False),  # cron has five; a year or seconds field is not cron
        ("@nightly", False),
        ("0 0 31 2 *", False),  # February 31st never comes
    ],
)
def test_only_five_field_cron_expressions_are_schedules(expression: str, valid: bool) -> None:
    assert is_valid_expression(expression) is valid


@pytest.mark.parametrize(
    ("zone", "valid"),
    [
        ("UTC", True),
        ("Europe/Ljubljana", True),
        ("Europe", False),
        ("../etc/passwd", False),
        ("Mars/Olympus", False),
        ("x" * 300, False),
    ],
)
def test_a_schedules_time_zone_is_one_python_knows(zone: str, valid: bool) -> None:
    assert is_time_zone(zone) is valid
