"""What a schedule's settings may be (`[[projects]] schedule`, `schedule_timezone`): cron
expressions as croniter reads them, and the IANA time zones Python knows. When a schedule builds
is the scheduling stage's (`runner.scheduling.schedules`)."""

import zoneinfo

from croniter import CroniterError, croniter


def is_valid_expression(expression: str) -> bool:
    """Five fields, as cron reads them (minute hour day-of-month month day-of-week), naming a
    time that comes ("0 0 31 2 *", February 31st, never does)."""
    if len(expression.split()) != 5 or not croniter.is_valid(expression):
        return False
    try:
        croniter(expression).get_next()
    except (CroniterError, ValueError):
        return False
    return True


def is_time_zone(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):  # "Europe" is a directory
        return False
    return True
