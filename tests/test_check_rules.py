"""The check-run rules (`runner.core.checks`), pure: conclusions, output and annotations."""

import subprocess
from pathlib import Path

from runner.core.checks import (
    BuildFacts,
    annotation_batches,
    annotations,
    check_run_update,
    conclusion,
    log_block,
)
from runner.core.models import Job
from runner.core.statuses import Status, StatusState, errored, failed, queued, running, succeeded

NOW = "2026-12-03T20:00:00Z"


def test_each_state_of_a_build_is_a_step_of_its_check_run() -> None:
    assert check_run_update(queued(Job.TEST), None, now_iso=NOW) == {"status": "queued"}
    assert check_run_update(running(Job.TEST), None, now_iso=NOW) == {
        "status": "in_progress",
        "started_at": NOW,
    }
    done = check_run_update(succeeded(Job.TEST, 1.5), None, now_iso=NOW)
    assert (done["status"], done["conclusion"], done["completed_at"]) == (
        "completed",
        "success",
        NOW,
    )
    assert done["output"]["title"] == "make test passed in 1.50 s"


def test_a_final_status_has_the_conclusion_that_says_the_same() -> None:
    cases = {
        succeeded(Job.TEST, 2): "success",
        failed(Job.TEST, 2, 3): "failure",
        errored("Timed out after 3600 s"): "timed_out",
        errored("Cancelled by alice"): "cancelled",
        errored("Stopped: the merge group was dequeued"): "cancelled",
        errored("Superseded by abc1234"): "skipped",
        errored("Not built: [skip ci] in the head commit"): "failure",  # never a green check
        errored("Checkout failed: commit abc1234 not found"): "failure",
        errored("Interrupted: daemon restarted"): "failure",
    }
    assert {status.description: conclusion(status) for status in cases} == {
        status.description: expected for status, expected in cases.items()
    }


def test_the_summary_tells_the_result_duration_and_node_and_the_text_the_last_lines() -> None:
    log = "".join(f"line {n}\n" for n in range(1, 101))
    facts = BuildFacts(job="test", duration_s=12.34, node="ci-2", log_tail=log)

    output = check_run_update(failed(Job.TEST, 2, 12.3), facts, now_iso=NOW)["output"]

    assert output["title"] == "make test failed (exit 2) after 12.3 s"
    assert "the build took 12.3 s" in output["summary"] and "ran on ci-2" in output["summary"]
    assert "line 100" in output["text"] and "line 41\n" in output["text"]
    assert "line 40\n" not in output["text"]  # the last 60 lines only


def test_nothing_in_the_log_can_end_its_code_block() -> None:
    block = log_block("a ``` b\n```\n# heading\nplain")
    assert block.splitlines()[2:] == ["    a ``` b", "    ```", "    # heading", "    plain"]


def test_output_stays_within_githubs_limit_in_bytes() -> None:
    for log in ("x" * 200_000, "é✓" * 100_000 + "\n" * 59, "`" * 70_000, "\ufffd" * 80_000):
        assert len(log_block(log).encode()) <= 65535


def test_line_numbers_github_cannot_take_are_not_annotations() -> None:
    log = "a.c:99999999999999999999:1: error: huge\nb.c:3:99999999999: error: wide column"
    found = annotations(log, "/ws")
    assert [(a["path"], "start_column" in a) for a in found] == [("b.c", False)]


def test_compiler_lines_become_annotations_for_paths_in_the_repository() -> None:
    log = "\n".join(
        [
            "src/app.c:3:24: error: 'x' undeclared (first use in this function)",
            "app/models.py:12: error: Incompatible return value type  [return-value]",
            "tools/lint.py:7:1: F401 [*] `os` imported but unused",
            "/work/var/workspaces/octo/app/pkg/main.go:9:2: warning: unused variable",
            "/usr/include/stdio.h:1:1: error: outside the repository",
            "../elsewhere.c:1:1: error: outside too",
            "Makefile:2: recipe for target 'test' failed",
            "make: *** [Makefile:2: test] Error 1",
        ]
    )

    found = annotations(log, "/work/var/workspaces/octo/app")

    assert [(a["path"], a["start_line"], a["annotation_level"]) for a in found] == [
        ("src/app.c", 3, "failure"),
        ("app/models.py", 12, "failure"),
        ("tools/lint.py", 7, "warning"),
        ("pkg/main.go", 9, "warning"),
    ]
    assert found[0]["start_column"] == found[0]["end_column"] == 24
    assert "start_column" not in found[1]
    assert found[1]["message"] == "Incompatible return value type  [return-value]"


def test_annotations_go_fifty_a_request() -> None:
    log = "\n".join(f"a.c:{n}:1: warning: w{n}" for n in range(1, 121))
    batches = annotation_batches(annotations(log, "/ws"))
    assert [len(batch) for batch in batches] == [50, 50, 20]


def test_real_gcc_output_becomes_annotations(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "broken.c").write_text("int main(void) {\n  return missing;\n}\n")
    compiled = subprocess.run(
        ["gcc", "-c", "src/broken.c", "-o", "/dev/null"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert compiled.returncode != 0

    found = annotations(compiled.stderr, str(tmp_path))

    assert found and found[0]["path"] == "src/broken.c" and found[0]["start_line"] == 2
    assert found[0]["annotation_level"] == "failure" and "missing" in found[0]["message"]


def test_a_pending_state_has_no_output() -> None:
    assert "output" not in check_run_update(
        Status(StatusState.PENDING, "Queued"), None, now_iso=NOW
    )
