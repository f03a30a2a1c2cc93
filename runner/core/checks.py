"""Check runs as data: what GitHub's Checks API is sent for a build's state (`[github] report =
"checks"`). Pure functions; `runner.reporting.checks` posts them.

A status state maps to a check run's life: pending "Queued" → `queued`, pending "Running…" →
`in_progress`, a final state → `completed` with the conclusion that says the same thing
(`success`, `failure`, `cancelled`, `timed_out`, `skipped` for a superseded build). The final
update's `output` has a title, a summary (the result, how long it took, where it ran) and the last
lines of the (masked) log in a code block; compiler-style lines of the log
(`path:line[:col]: error|warning: message`, as gcc, mypy, ruff, flake8 and go vet print them)
become annotations, 50 per request as GitHub allows.
https://docs.github.com/en/rest/checks/runs
"""

import re
from dataclasses import dataclass
from typing import Any

from runner.core.statuses import Status, StatusState, truncate

MAX_ANNOTATIONS_PER_REQUEST = 50
MAX_ANNOTATIONS = 500  # GitHub shows 50 per request; a build with thousands helps nobody
MAX_OUTPUT_BYTES = 65535  # GitHub's limit for `summary` and `text` each, in UTF-8 bytes
LOG_TAIL_LINES = 60
MAX_MESSAGE_CHARS = 1000
MAX_PATH_CHARS = 1000
MAX_LINE = 2**31 - 1

_COMPILER_LINE = re.compile(
    r"^(?P<path>[^\s:][^:\n]*?):(?P<line>\d+)(?::(?P<column>\d+))?:\s*"
    r"(?:(?P<level>fatal error|error|warning|note)(?:\[[^\]]*\])?:\s*)?(?P<message>.+)$"
)
_LEVELS = {"fatal error": "failure", "error": "failure", "warning": "warning", "note": "notice"}
# ruff and flake8 print a rule code where gcc and mypy print a level: `x.py:3:1: F401 message`.
_RULE_CODE = re.compile(r"^[A-Z]+\d+\b")


@dataclass(frozen=True)
class BuildFacts:
    """What a final check run's summary tells besides the state: plain data from the store."""

    job: str
    duration_s: float | None
    node: str | None
    log_tail: str  # masked, without terminal escapes


def conclusion(status: Status) -> str:
    """The check run conclusion that says what the final commit status says."""
    if status.state is StatusState.SUCCESS:
        return "success"
    if status.state is StatusState.FAILURE:
        return "failure"
    text = status.description
    if text.startswith("Superseded by"):
        return "skipped"
    # Not "skipped" for "Not built: [skip ci]…": GitHub lets a skipped required check pass, and
    # anyone who can open a pull request could turn the check green without running it.
    if text.startswith("Timed out"):
        return "timed_out"
    if text.startswith(("Cancelled", "Stopped")):
        return "cancelled"
    return "failure"  # the build could not run (checkout failed, out of memory, interrupted)


def check_run_update(status: Status, facts: BuildFacts | None, *, now_iso: str) -> dict[str, Any]:
    """The body of the create or update request for `status`, without name, sha or ids."""
    if status.state is StatusState.PENDING:
        if status.description.startswith("Running"):
            return {"status": "in_progress", "started_at": now_iso}
        if status.description == "Queued":
            return {"status": "queued"}
        # "Waiting for approval", "Approved by …": reviewers read why it has not started.
        said = truncate(status.description)
        return {"status": "queued", "output": {"title": said, "summary": said}}
    body: dict[str, Any] = {
        "status": "completed",
        "conclusion": conclusion(status),
        "completed_at": now_iso,
        "output": output(status, facts),
    }
    return body


def output(status: Status, facts: BuildFacts | None) -> dict[str, Any]:
    title = truncate(status.description)
    lines = [f"**{title}**", ""]
    if facts is not None:
        if facts.duration_s is not None:
            lines.append(
                f"- the build took {facts.duration_s:.1f} s (checkout and `make {facts.job}`)"
            )
        if facts.node:
            lines.append(f"- ran on {facts.node}")
    summary = "\n".join(lines)
    result: dict[str, Any] = {"title": title, "summary": _within_bytes(summary, MAX_OUTPUT_BYTES)}
    if facts is not None and facts.log_tail.strip():
        result["text"] = log_block(facts.log_tail)
    return result


def log_block(log_tail: str) -> str:
    """The last lines of the log as an indented code block: nothing in the log can end it
    (a fenced block ends at the log's own backticks), and it stays within GitHub's limit."""
    tail = _last_bytes(log_tail.rstrip("\n"), MAX_OUTPUT_BYTES // 2)
    lines = tail.split("\n")[-LOG_TAIL_LINES:]
    body = "\n".join(f"    {line}" for line in lines)
    return f"Last {len(lines)} lines of the log:\n\n{body}"


def annotations(log: str, workspace: str) -> list[dict[str, Any]]:
    """Compiler-style lines of the log as annotations, for paths in the repository: relative
    ones that stay inside it, or absolute ones under its workspace (made relative)."""
    found: list[dict[str, Any]] = []
    prefix = workspace.rstrip("/") + "/"
    for raw in log.splitlines():
        match = _COMPILER_LINE.match(raw.strip())
        if match is None:
            continue
        path = match["path"].removeprefix(prefix).removeprefix("./")
        if not _inside_repository(path) or len(path) > MAX_PATH_CHARS:
            continue
        level = match["level"]
        message = match["message"].strip()
        if level is None:
            if not _RULE_CODE.match(message):
                continue  # `file:12: something` without a level or a rule: not a diagnostic
            level = "warning"
        line = int(match["line"])
        if not 1 <= line <= MAX_LINE:
            continue
        annotation: dict[str, Any] = {
            "path": path,
            "start_line": line,
            "end_line": line,
            "annotation_level": _LEVELS[level],
            "message": message[:MAX_MESSAGE_CHARS],
        }
        if match["column"] and 1 <= int(match["column"]) <= MAX_LINE:
            annotation["start_column"] = annotation["end_column"] = int(match["column"])
        if annotation not in found:
            found.append(annotation)
        if len(found) >= MAX_ANNOTATIONS:
            break
    return found


def annotation_batches(found: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    size = MAX_ANNOTATIONS_PER_REQUEST
    return [found[start : start + size] for start in range(0, len(found), size)]


def _inside_repository(path: str) -> bool:
    parts = path.split("/")
    return bool(path) and not path.startswith("/") and ".." not in parts and "" not in parts


def _within_bytes(text: str, limit: int) -> str:
    """The start of `text` that fits in `limit` UTF-8 bytes."""
    return text.encode()[:limit].decode("utf-8", "ignore")


def _last_bytes(text: str, limit: int) -> str:
    """The end of `text` that fits in `limit` UTF-8 bytes."""
    data = text.encode()
    return data[-limit:].decode("utf-8", "ignore") if len(data) > limit else text
