"""A small chart of the last builds' durations, coloured by outcome: server-rendered SVG data
(no JavaScript, no CDN), drawn by `templates/_durations.html` on a repository's page."""

from collections.abc import Sequence
from dataclasses import dataclass

from runner.core.models import Build
from runner.core.statuses import format_duration

BARS = 30
HEIGHT = 40
BAR_WIDTH = 8
GAP = 2


@dataclass(frozen=True)
class Bar:
    x: int
    y: int
    height: int
    state: str
    build_id: int
    label: str  # what hovering says: "#12 success in 3.2 s"


@dataclass(frozen=True)
class DurationChart:
    width: int
    height: int
    bars: list[Bar]
    longest: str


def duration_chart(builds: Sequence[Build]) -> DurationChart | None:
    """The last finished builds (of `builds`, newest first) as bars, oldest on the left; None
    when none has finished yet."""
    finished = [
        (build, build.finished_at - build.started_at)
        for build in builds
        if build.state.is_final and build.started_at is not None and build.finished_at is not None
    ][:BARS]
    if not finished:
        return None
    finished.reverse()
    longest = max(seconds for _, seconds in finished) or 1.0
    bars = []
    for index, (build, seconds) in enumerate(finished):
        height = max(2, round(HEIGHT * seconds / longest))
        bars.append(
            Bar(
                x=index * (BAR_WIDTH + GAP),
                y=HEIGHT - height,
                height=height,
                state=build.state.value,
                build_id=build.id,
                label=f"#{build.id} {build.state.value} in {format_duration(seconds)}",
            )
        )
    width = len(bars) * (BAR_WIDTH + GAP) - GAP
    return DurationChart(width, HEIGHT, bars, format_duration(longest))
