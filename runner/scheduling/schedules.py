"""When a project's schedule (`[[projects]] schedule = "0 3 * * *"`) builds: pure, over times.

A slot is a moment the cron expression names, in the schedule's time zone (so "3 in the morning"
stays 3 in the morning across daylight saving). A schedule builds its latest slot that has come
and has not been built: after downtime that is one build, not one per slot missed; and only slots
from when the schedule was first seen (`since`) on, so a new schedule does not build at once for
a slot before it existed.
"""

import datetime
import zoneinfo

from croniter import croniter


def latest_slot(expression: str, time_zone: str, now: float) -> float:
    """The latest slot at or before `now` (epoch seconds)."""
    at = _moment(now, time_zone) + datetime.timedelta(microseconds=1)  # `now` itself counts
    slot: datetime.datetime = croniter(expression, at).get_prev(datetime.datetime)
    return slot.timestamp()


def next_slot(expression: str, time_zone: str, now: float) -> float:
    """The first slot after `now`."""
    slot: datetime.datetime = croniter(expression, _moment(now, time_zone)).get_next(
        datetime.datetime
    )
    return slot.timestamp()


def due_slot(
    expression: str, time_zone: str, *, since: float, built: float | None, now: float
) -> float | None:
    """The slot to build now, if any: the latest one that has come, not before `since`, and
    later than the slot built last (`built`)."""
    slot = latest_slot(expression, time_zone, now)
    if slot < since or (built is not None and slot <= built):
        return None
    if built is not None and _wall_clock(slot, time_zone) <= _wall_clock(built, time_zone):
        return None  # the hour the clocks go back brings 02:30 twice; cron builds it once
    return slot


def _wall_clock(epoch: float, time_zone: str) -> datetime.datetime:
    return _moment(epoch, time_zone).replace(tzinfo=None)


def _moment(epoch: float, time_zone: str) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(epoch, zoneinfo.ZoneInfo(time_zone))
