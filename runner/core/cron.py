"""What a schedule's settings may be (`[[projects]] schedule`, `schedule_timezone`): cron
expressions as croniter reads them, and the IANA time zones Python knows. When a schedule builds
is the scheduling stage's (`runner.scheduling.schedules`)."""

import zoneinfo

from croniter import croniter


def is_valid_expression(expression: str) -> bool:
    """Five fields, as cron reads them (minute hour day-of-month month day-of-week)."""
    return len(expression.split()) == 5 and bool(croniter.is_valid(expression))


def is_time_zone(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):  # "Europe" is a directory
        return False
    return True
