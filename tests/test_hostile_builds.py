"""Hostile builds: every build ends, nothing escapes the sandbox, output is capped, secrets hold.

Real processes throughout: Makefiles that fork into new sessions, ignore SIGTERM, flood their
output or print secrets in disguise; the checks read /proc and the files on disk.
"""

import asyncio
import base64
import dataclasses
import html
import re
import resource
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web

from runner.core.settings import Settings
from runner.executor.reaper import end_tree, marker_for
from tests.conftest import PUBLIC_URL, SECRET, TOKEN, DaemonFactory, SettingsFactory
from tests.support.bubblewrap import require_bubblewrap
from tests.support.fake_github import FakeGitHub
from tests.support.gitrepo import Remote, make_remote, makefile
from tests.support.processes import processes_with_marker
from tests.support.webhooks import push_payload
from tests.test_core_loop import PASSING, wait_for_file

SANDBOXES = ["none", "bubblewrap"]  # tests with "bubblewrap" call require_bubblewrap()

# Leaves three kinds of process behind: one in a new session, one double-forked, and one that
# ignores SIGTERM, so the grace period and SIGKILL are needed too.
ESCAPING = "\n".join(
    [
        "@setsid sleep 300 > /dev/null 2>&1 &",
        "@(sh -c 'sleep 301 > /dev/null 2>&1 &' &)",
        "@setsid sh -c 'trap \"\" TERM; while true; do sleep 1; done' > /dev/null 2>&1 &",
        "@echo started",
        "@sleep 300",
    ]
)


URL_ENCODE = 'import os, urllib.parse as u; print(u.{}(os.environ["KEY"]))'


@pytest.mark.parametrize("sandbox", SANDBOXES)
async def test_timeout_ends_every_process_the_build_started(
    sandbox: str,
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    fake_github: FakeGitHub,
    remote: Remote,
) -> None:
    if sandbox == "bubblewrap":
        require_bubblewrap()
    sha = remote.commit({"Makefile": makefile(test=ESCAPING)}, branch="feature")
    d = await daemon(make_settings(builds={"timeout": 2, "kill_grace": 1, "sandbox": sandbox}))

    _, answer = await d.deliver("push", push_payload("octo/app", sha, branch="feature"))
    build_id = answer["builds"][0]
    await fake_github.wait_running(sha)
    running_at = time.monotonic()
    final = await fake_github.wait_final(sha)
    kill_time = time.monotonic() - running_at - 2

    assert (final.state, final.description) == ("error", "Timed out after 2 s")
    assert processes_with_marker(f"{PUBLIC_URL}/builds/{build_id}") == []
    log = await d.log(build_id)
    assert "started" in log and "Timed out after 2 s" in log
    if sandbox == "none":  # in the sandbox the namespace's end takes them all at once
        assert "ended processes the build left running" in log and "sleep" in log
    print(f"\nsandbox={sandbox}: status final {kill_time:.2f} s after the timeout")


async def test_the_sandbox_hides_the_daemon_and_other_repositories(
    tmp_path: Path,
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    fake_github: FakeGitHub,
    remote_root: Path,
    remote: Remote,
) -> None:
    require_bubblewrap()
    other = make_remote(remote_root, "octo/lib")
    # Not on the default branch: a deploy after it would empty the workspace again.
    other_sha = other.commit(
        {"Makefile": makefile(test="@echo lib-private > private.txt")}, branch="feature"
    )
    config = tmp_path / "hobotnica.toml"
    config.write_text('token = "config-file-content"\n')
    settings: Settings = make_settings(
        [{"repository": "octo/app"}, {"repository": "octo/lib"}], builds={"sandbox": "bubblewrap"}
    )
    settings = dataclasses.replace(settings, config_path=config)
    data = settings.data_dir
    probe = "\n".join(
        [
            f"@test ! -e {data}/hobotnica.sqlite3 && echo database-hidden",
            f"@test ! -e {data}/workspaces/octo/lib/private.txt && echo other-workspace-hidden",
            f"@test ! -e {data}/logs && echo logs-hidden",
            f"@test ! -s {config} && echo config-hidden",
            "@touch written-here && echo workspace-writable",
            "@touch /tmp/scratch && echo tmp-writable",
            "@touch /usr/hobotnica-probe 2>/dev/null || echo system-read-only",
            "@echo pid=$$$$",
            "@echo head=$$(git rev-parse HEAD)",
        ]
    )
    sha = remote.commit({"Makefile": makefile(test=probe)}, branch="feature")
    d = await daemon(settings)

    await d.deliver("push", push_payload("octo/lib", other_sha, branch="feature"))
    await fake_github.wait_final(other_sha)
    assert (data / "workspaces" / "octo" / "lib" / "private.txt").exists()
    _, answer = await d.deliver("push", push_payload("octo/app", sha, branch="feature"))

    assert (await fake_github.wait_final(sha)).state == "success"
    log = await d.log(answer["builds"][0])
    for line in (
        "database-hidden",
        "other-workspace-hidden",
        "logs-hidden",
        "config-hidden",
        "workspace-writable",
        "tmp-writable",
        "system-read-only",
        f"head={sha}",
    ):
        assert line in log
    pid = int(log.split("pid=", 1)[1].split()[0])
    assert pid < 20  # a fresh PID namespace
    assert not Path("/usr/hobotnica-probe").exists()


async def test_a_flood_of_output_is_capped_head_and_tail_with_flat_memory(
    daemon: DaemonFactory, make_settings: SettingsFactory, fake_github: FakeGitHub, remote: Remote
) -> None:
    flood = (
        "@echo first line\n@yes 'flood line of a noisy build' | head -c 300000000\n@echo THE END"
    )
    sha = remote.commit({"Makefile": makefile(test=flood)}, branch="feature")
    project = {"repository": "octo/app", "secrets": {"API_KEY": "flood-secret-value"}}
    d = await daemon(make_settings([project], builds={"max_log_bytes": 1024 * 1024}))
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    _, answer = await d.deliver("push", push_payload("octo/app", sha, branch="feature"))
    started = time.monotonic()
    assert (await fake_github.wait_final(sha, timeout=240)).state == "success"
    took = time.monotonic() - started

    growth_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    log = await d.log(answer["builds"][0])
    print(f"\n300 MB of output in {took:.1f} s; the daemon's peak RSS grew {growth_mib:.1f} MiB")
    assert len(log.encode()) < 1024 * 1024 + 4096
    assert log.index("first line") < log.index("bytes of output cut") < log.index("THE END")
    assert growth_mib < 64  # holding the output would cost 300 MB
    assert (await d.client.get(f"/builds/{answer['builds'][0]}")).status == 200


async def test_long_lines_and_binary_output_do_not_break_the_page(
    daemon: DaemonFactory, make_settings: SettingsFactory, fake_github: FakeGitHub, remote: Remote
) -> None:
    noisy = "@head -c 2000000 /dev/zero | tr '\\0' 'a'; echo\n@head -c 65536 /dev/urandom; echo"
    sha = remote.commit({"Makefile": makefile(test=noisy)}, branch="feature")
    d = await daemon(make_settings())

    _, answer = await d.deliver("push", push_payload("octo/app", sha, branch="feature"))
    await fake_github.wait_final(sha)

    page = await d.page(answer["builds"][0])
    assert "a" * 10000 in page
    assert "make test exited 0" in page
    response = await d.client.get(f"/api/builds/{answer['builds'][0]}/log")
    assert response.status == 200
    assert len(await response.read()) > 2000000


async def test_secrets_are_masked_in_every_disguise(
    daemon: DaemonFactory, make_settings: SettingsFactory, fake_github: FakeGitHub, remote: Remote
) -> None:
    key = "s3cr3t-Value/with+odd=chars"
    certificate = "-----BEGIN KEY-----\nfirst-secret-line\nsecond-secret-line\n-----END KEY-----"
    recipe = "\n".join(
        [
            "@echo plain: $$KEY",
            # Two writes with a pause between them: the pipe is read in two pieces.
            "@printf 'split: %s' \"$$(printf '%s' \"$$KEY\" | head -c 6)\"; sleep 0.2;"
            " printf '%s\\n' \"$$(printf '%s' \"$$KEY\" | tail -c +7)\"",
            '@echo "multi: $$CERT"',
            "@printf '%s' \"$$KEY\" | base64",
            f"@python3 -c '{URL_ENCODE.format('quote')}'",
            f"@python3 -c '{URL_ENCODE.format('quote_plus')}'",
        ]
    )
    sha = remote.commit({"Makefile": makefile(test=recipe)}, branch="feature")
    project = {"repository": "octo/app", "secrets": {"KEY": key, "CERT": certificate}}
    d = await daemon(make_settings([project]))

    _, answer = await d.deliver("push", push_payload("octo/app", sha, branch="feature"))
    await fake_github.wait_final(sha)

    build_id = answer["builds"][0]
    log = await d.log(build_id)
    shown = [
        log,
        await d.page(build_id),
        await (await d.client.get(f"/api/builds/{build_id}")).text(),
    ]
    forbidden = [
        key,
        "first-secret-line",
        "second-secret-line",
        base64.b64encode(key.encode()).decode(),
        quote(key),
        quote(key, safe=""),
    ]
    for text in shown:
        for value in forbidden:
            assert value not in text
    assert "plain: ***" in log and "split: ***" in log and "multi: ***" in log


async def test_a_newer_push_stops_the_running_test_build_of_its_branch(
    tmp_path: Path,
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    fake_github: FakeGitHub,
    remote: Remote,
) -> None:
    never = tmp_path / "never-created"
    older = remote.commit({"Makefile": makefile(test=wait_for_file(never))}, branch="feature")
    newer = remote.commit({"Makefile": PASSING}, branch="feature")
    d = await daemon(make_settings())

    _, first = await d.deliver("push", push_payload("octo/app", older, branch="feature"))
    await fake_github.wait_running(older)
    await d.deliver("push", push_payload("octo/app", newer, branch="feature"))

    stopped = await fake_github.wait_final(older)
    assert (stopped.state, stopped.description) == ("error", f"Superseded by {newer[:7]}")
    assert (await fake_github.wait_final(newer)).state == "success"
    assert processes_with_marker(f"{PUBLIC_URL}/builds/{first['builds'][0]}") == []


async def test_with_cancel_running_off_the_running_build_finishes(
    tmp_path: Path,
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    fake_github: FakeGitHub,
    remote: Remote,
) -> None:
    release = tmp_path / "release"
    older = remote.commit({"Makefile": makefile(test=wait_for_file(release))}, branch="feature")
    newer = remote.commit({"Makefile": PASSING}, branch="feature")
    d = await daemon(make_settings(builds={"cancel_running": False}))

    await d.deliver("push", push_payload("octo/app", older, branch="feature"))
    await fake_github.wait_running(older)
    await d.deliver("push", push_payload("octo/app", newer, branch="feature"))
    release.touch()

    assert (await fake_github.wait_final(older)).state == "success"
    assert (await fake_github.wait_final(newer)).state == "success"


async def test_a_running_deploy_is_never_stopped_and_deploys_stay_in_order(
    tmp_path: Path,
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    fake_github: FakeGitHub,
    remote: Remote,
) -> None:
    release = tmp_path / "release"
    slow_deploy = makefile(test="@echo ok", deploy=wait_for_file(release))
    first = remote.commit({"Makefile": slow_deploy}, branch="main")
    second = remote.commit({"Makefile": PASSING}, branch="main")
    d = await daemon(make_settings())

    await d.deliver("push", push_payload("octo/app", first, branch="main"))
    await fake_github.wait_running(first, "hobotnica/deploy")
    await d.deliver("push", push_payload("octo/app", second, branch="main"))
    release.touch()

    assert (await fake_github.wait_final(first, "hobotnica/deploy")).state == "success"
    assert (await fake_github.wait_final(second, "hobotnica/deploy")).state == "success"
    finals = [
        s.sha
        for s in fake_github.statuses
        if s.context == "hobotnica/deploy" and s.state != "pending"
    ]
    assert finals == [first, second]


async def test_a_background_process_holding_the_output_does_not_keep_the_build_running(
    daemon: DaemonFactory, make_settings: SettingsFactory, fake_github: FakeGitHub, remote: Remote
) -> None:
    # `sleep 300 &` keeps make's stdout open: the build must end when make does, not at the
    # timeout, and the sleep must be ended with it.
    sha = remote.commit({"Makefile": makefile(test="@sleep 300 &\n@echo tests pass")}, branch="bg")
    d = await daemon(make_settings(builds={"timeout": 60}))

    _, answer = await d.deliver("push", push_payload("octo/app", sha, branch="bg"))
    final = await fake_github.wait_final(sha, timeout=30)

    assert (final.state, final.description.split(" in ")[0]) == ("success", "make test passed")
    assert processes_with_marker(f"{PUBLIC_URL}/builds/{answer['builds'][0]}") == []
    assert "tests pass" in await d.log(answer["builds"][0])


async def test_a_git_server_that_never_answers_cannot_hang_a_build(
    aiohttp_server: Any,
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    fake_github: FakeGitHub,
) -> None:
    done = asyncio.Event()

    async def never_answers(request: web.Request) -> web.Response:
        await done.wait()  # not before the test is over
        return web.Response(status=503)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", never_answers)
    stalled = await aiohttp_server(app)
    settings: Settings = make_settings(builds={"timeout": 2})
    settings = dataclasses.replace(
        settings,
        github=dataclasses.replace(settings.github, git_url=str(stalled.make_url("")).rstrip("/")),
    )
    d = await daemon(settings)
    sha = "1234567890abcdef1234567890abcdef12345678"

    await d.deliver("push", push_payload("octo/app", sha, branch="stalled"))

    final = await fake_github.wait_final(sha, timeout=60)
    assert (final.state, final.description) == ("error", "Checkout failed: timed out after 2 s")
    done.set()


async def test_ending_one_attempt_spares_the_next_attempt_of_the_same_build() -> None:
    # With two daemons, attempt 1 of a build may be cleaned up while attempt 2 already runs.
    url = f"{PUBLIC_URL}/builds/4242"
    attempts = {
        n: subprocess.Popen(
            ["sleep", "300"],
            env={"PATH": "/usr/bin:/bin", "HOBOTNICA_BUILD_URL": url, "HOBOTNICA_ATTEMPT": str(n)},
            start_new_session=True,
        )
        for n in (1, 2)
    }
    try:
        ended = await end_tree(None, marker_for(url, 1), grace=1)

        assert [p.pid for p in ended] == [attempts[1].pid]
        assert attempts[1].wait(timeout=10) is not None
        assert attempts[2].poll() is None  # still running
    finally:
        for process in attempts.values():
            process.kill()
            process.wait()


# Prints each secret the way an accident would: with terminal noise inside it, inside JSON and
# TOML, and the daemon's own credentials, which a build without the sandbox can read (its
# daemon's environment in /proc, the session key under the data directory).
LEAKER = r"""
import base64, json, os, re, sys
key = os.environ["KEY"]
print("bel:", key[:6] + "\a" + key[6:])
print("nul:", key[:6] + "\0" + key[6:])
print("ansi:", key[:4] + "\x1b[31m" + key[4:9] + "\x1b[0m" + key[9:])
print("noisy:", key[:5] + "\x1b[1m\x1b[2m\x1b[3m\x1b[4m\x1b[5m\x1b[6m" + key[5:])
print("json:", json.dumps({"key": key}))
print("json-utf8:", json.dumps({"key": key}, ensure_ascii=False))
print("toml: key =", re.sub(r"\\u([0-9a-f]{4})", lambda m: "\\u" + m[1].upper(), json.dumps(key)))
print("token:", sys.argv[1])
print("webhook secret:", sys.argv[2])
session_key = open(sys.argv[3], "rb").read()
print("session key:", session_key.hex(), base64.b64encode(session_key).decode())
"""
QUOTED_SECRET = 'pa"ss\\wörd-Ünïcode-42'
ANSI_OR_CONTROL = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|[\x00-\x08\x0b-\x1f\x7f]")


def as_seen(text: str) -> str:
    """What a person sees of `text` on a terminal or a page: no escapes, no control characters,
    no tags, entities decoded."""
    return html.unescape(re.sub(r"<[^>]*>", "", ANSI_OR_CONTROL.sub("", text)))


async def test_no_surface_shows_a_secret_whatever_disguise_it_prints_in(
    daemon: DaemonFactory, make_settings: SettingsFactory, fake_github: FakeGitHub, remote: Remote
) -> None:
    settings = make_settings([{"repository": "octo/app", "secrets": {"KEY": QUOTED_SECRET}}])
    session_key = settings.data_dir / "session.key"
    recipe = f"@python3 leak.py '{TOKEN}' \"$$WEBHOOK\" {session_key}"
    sha = remote.commit(
        {
            "Makefile": f"WEBHOOK := {SECRET}\nexport WEBHOOK\n" + makefile(test=recipe),
            "leak.py": LEAKER,
        },
        branch="feature",
    )
    d = await daemon(settings)

    _, answer = await d.deliver("push", push_payload("octo/app", sha, branch="feature"))
    assert (await fake_github.wait_final(sha)).state == "success"

    build_id = answer["builds"][0]
    raw = await d.log(build_id)
    key = session_key.read_bytes()
    record = await (await d.client.get(f"/api/builds/{build_id}")).text()
    surfaces = {"raw log": raw, "page": await d.page(build_id), "API": record}
    secrets = {
        "secret": QUOTED_SECRET,
        "token": TOKEN,
        "webhook secret": SECRET,
        "session key (hex)": key.hex(),
        "session key (base64)": base64.b64encode(key).decode()[:40],
    }
    for surface, text in surfaces.items():
        seen = as_seen(text)
        for name, value in secrets.items():
            assert value not in seen, f"{name} shown in the {surface}"
    for label in ("bel", "nul", "ansi", "noisy", "token", "webhook secret"):
        assert f"{label}: ***" in as_seen(surfaces["page"]), label
    assert 'json: {"key": "***"}' in as_seen(raw)
    assert 'toml: key = "***"' in as_seen(raw)


# -- whether the sandbox tests run ---------------------------------------------------------

UNUSABLE_BWRAP = """#!/bin/sh
echo 'bwrap: No permissions to create a new namespace, likely because the kernel does not' \
  'allow non-privileged user namespaces.' >&2
exit 1
"""


@pytest.mark.parametrize(
    ("installed", "ci", "outcome"),
    [
        (True, "true", pytest.fail.Exception),
        (False, "true", pytest.fail.Exception),
        (True, None, pytest.skip.Exception),
        (False, None, pytest.skip.Exception),
    ],
)
def test_the_sandbox_tests_fail_in_ci_when_bubblewrap_cannot_run_and_skip_elsewhere(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    installed: bool,
    ci: str | None,
    outcome: type[BaseException],
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if installed:  # installed, but this machine gives it no namespaces (as in many containers)
        (bin_dir / "bwrap").write_text(UNUSABLE_BWRAP)
        (bin_dir / "bwrap").chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)

    with pytest.raises(outcome) as raised:
        require_bubblewrap()

    reason = str(raised.value)
    if installed:
        assert "bwrap cannot create a sandbox here: bwrap: No permissions" in reason
    else:
        assert "bwrap is not installed" in reason
