"""Every build contained: its own cgroup (limits, and an end nothing escapes), another user.

Real processes and the host's real cgroups (v1 here and in CI: memory, pids, freezer; v2 where
the host has it). The fork and memory tests are bounded by the build itself: with a broken limit
they finish with the wrong answer instead of taking the machine.
"""

import dataclasses
import os
import pwd
import random
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import runner.executor.host
from runner.core.setting_checks import BuildUser
from runner.core.settings import Settings
from runner.executor.cgroup_v2 import UnifiedTree
from runner.executor.cgroups import CgroupTree, find_cgroup_tree
from tests.conftest import PUBLIC_URL, DaemonFactory, SettingsFactory
from tests.support.fake_github import FakeGitHub
from tests.support.gitrepo import Remote, make_remote, makefile
from tests.support.privileges import in_ci, require_root
from tests.support.webhooks import push_payload
from tests.test_core_loop import PASSING

BUILD_USER = "hobotnica-test-build"
MIB = 1024 * 1024


def require_cgroup_limits() -> None:
    require_root("makes cgroups")
    tree, where = find_cgroup_tree(PUBLIC_URL, make=False)
    if tree is None or not tree.limits:
        message = f"no cgroup with memory and pids controllers here: {where}"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)


def alive_with_argument(argument: str) -> list[int]:
    """Live processes with `argument` in their command line (zombies are dead)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            if argument.encode() in (entry / "cmdline").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def unified_tree(tmp_name: str) -> Iterator[UnifiedTree]:
    """A cgroup v2 tree on the host's unified hierarchy (no controllers needed)."""
    mount = next(
        (
            Path(line.split()[4])
            for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if line.split(" - ")[1].startswith("cgroup2 ")
        ),
        None,
    )
    if mount is None or not os.access(mount, os.W_OK):
        message = "no writable cgroup v2 hierarchy here"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    base = mount / tmp_name
    base.mkdir()
    try:
        yield UnifiedTree(base, limits=False)
    finally:
        if base.is_dir():  # the daemon removes it at shutdown; a failed test may not
            for child in base.iterdir():
                if child.is_dir():
                    child.rmdir()
            base.rmdir()


@pytest.fixture(params=["host", "cgroup v2"])
def cgroup_tree(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The daemon on the host's own tree (what production gets here), and on cgroup v2."""
    require_root("makes cgroups")
    if request.param == "host":
        require_cgroup_limits()
        yield "host"
        return
    name = f"hobotnica-test-{os.getpid()}-{random.randrange(10**6)}"
    trees = unified_tree(name)
    tree = next(trees)

    def on_v2(_public_url: str, **_: object) -> tuple[CgroupTree, str]:
        return tree, tree.describe()

    monkeypatch.setattr(runner.executor.host, "find_cgroup_tree", on_v2)
    yield "cgroup v2"
    next(trees, None)


async def test_a_process_that_leaves_its_group_and_drops_its_marker_ends_with_the_build(
    cgroup_tree: str,
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    fake_github: FakeGitHub,
    remote: Remote,
) -> None:
    # setsid leaves the process group; env -i drops the HOBOTNICA_BUILD_URL marker. Only the
    # cgroup still knows it belongs to the build.
    seconds = str(random.randrange(40_000, 50_000))
    escape = f"@setsid env -i /bin/sleep {seconds} > /dev/null 2>&1 &\n@echo started"
    sha = remote.commit({"Makefile": makefile(test=escape)}, branch="escape")
    d = await daemon(make_settings(builds={"kill_grace": 1}))

    _, answer = await d.deliver("push", push_payload("octo/app", sha, branch="escape"))
    final = await fake_github.wait_final(sha)

    assert final.state == "success"
    assert alive_with_argument(seconds) == []
    log = await d.log(answer["builds"][0])
    # Named as it was when ended: setsid, env or sleep, as far as it had come.
    assert "ended processes the build left running" in log


async def test_a_build_over_its_memory_ends_error_and_the_others_carry_on(
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    fake_github: FakeGitHub,
    remote_root: Path,
    remote: Remote,
) -> None:
    require_cgroup_limits()
    # Touches up to 512 MiB, 8 MiB at a time; with a working limit of 64 MiB it is ended first.
    hog = "\n".join(
        [
            "held = []",
            "for n in range(64):",
            '    held.append(bytearray(8 << 20)); print(f"{len(held) * 8} MiB", flush=True)',
            'print("touched 512 MiB without a limit")',
        ]
    )
    sha = remote.commit({"Makefile": makefile(test="@python3 hog.py"), "hog.py": hog}, branch="hog")
    other = make_remote(remote_root, "octo/lib")
    other_sha = other.commit({"Makefile": PASSING})
    projects = [{"repository": "octo/app"}, {"repository": "octo/lib"}]
    d = await daemon(make_settings(projects, builds={"memory_max": 64 * MIB}))

    _, answer = await d.deliver("push", push_payload("octo/app", sha, branch="hog"))
    await d.deliver("push", push_payload("octo/lib", other_sha))

    final = await fake_github.wait_final(sha)
    assert (final.state, final.description) == ("error", "Out of memory (limit 64 MiB)")
    assert (await fake_github.wait_final(other_sha)).state == "success"
    log = await d.log(answer["builds"][0])
    assert "MiB" in log and "touched 512 MiB" not in log
    assert d.client is not None and (await d.client.get("/health")).status == 200


async def test_a_fork_bomb_stops_at_tasks_max_and_leaves_nothing(
    daemon: DaemonFactory, make_settings: SettingsFactory, fake_github: FakeGitHub, remote: Remote
) -> None:
    require_cgroup_limits()
    seconds = str(random.randrange(50_000, 60_000))
    # Starts up to 200 sleepers and says how many it got: bounded even without a limit.
    bomb = "\n".join(
        [
            "import subprocess",
            "started = 0",
            "for n in range(200):",
            "    try:",
            f'        subprocess.Popen(["sleep", "{seconds}"]); started += 1',
            "    except OSError:",
            "        break",
            'print(f"started {started}", flush=True)',
        ]
    )
    sha = remote.commit(
        {"Makefile": makefile(test="@python3 bomb.py"), "bomb.py": bomb}, branch="bomb"
    )
    d = await daemon(make_settings(builds={"tasks_max": 32, "kill_grace": 1}))

    _, answer = await d.deliver("push", push_payload("octo/app", sha, branch="bomb"))
    await fake_github.wait_final(sha)

    log = await d.log(answer["builds"][0])
    started = int(log.split("started ", 1)[1].split()[0])
    assert 0 < started < 32  # make, sh and python count too
    assert alive_with_argument(seconds) == []
    assert d.client is not None and (await d.client.get("/health")).status == 200


# -- another user ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def build_user() -> BuildUser:
    require_root("creates a user for builds")
    try:
        entry = pwd.getpwnam(BUILD_USER)
    except KeyError:
        home = f"/var/lib/{BUILD_USER}"
        subprocess.run(
            ["useradd", "--system", "--create-home", "--home-dir", home, "--shell", "/bin/sh",
             BUILD_USER],
            check=True,
        )  # fmt: skip
        entry = pwd.getpwnam(BUILD_USER)
    return BuildUser(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir)


@pytest.fixture
def open_data_dir() -> Iterator[Path]:
    """A data directory the build user can reach (pytest's own tmp is private to root)."""
    parent = Path(tempfile.mkdtemp(prefix="hobotnica-build-user-"))
    os.chmod(parent, 0o711)  # noqa: S103 - others pass through, as to the real data dir
    yield parent / "var"
    subprocess.run(["rm", "-rf", str(parent)], check=False)


async def test_builds_run_as_builds_user_and_see_nothing_of_the_daemon(
    build_user: BuildUser,
    open_data_dir: Path,
    tmp_path: Path,
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    fake_github: FakeGitHub,
    remote_root: Path,
    remote: Remote,
) -> None:
    other = make_remote(remote_root, "octo/lib")
    other_sha = other.commit({"Makefile": makefile(test="@echo lib-private > private.txt")})
    config = open_data_dir.parent / "hobotnica.toml"
    config.write_text('token = "config-file-content"\n')
    os.chmod(config, 0o600)
    data = open_data_dir
    probe = "\n".join(
        [
            "@echo uid=$$(id -u) home=$$HOME",
            f"@cat /proc/{os.getpid()}/environ > /dev/null 2>&1 || echo daemon-environment-hidden",
            f"@cat {config} > /dev/null 2>&1 || echo config-hidden",
            f"@cat {data}/hobotnica.sqlite3 > /dev/null 2>&1 || echo database-hidden",
            f"@cat {data}/session.key > /dev/null 2>&1 || echo session-key-hidden",
            f"@ls {data}/logs > /dev/null 2>&1 || echo logs-hidden",
            f"@cat {data}/workspaces/octo/lib/private.txt > /dev/null 2>&1 || echo lib-hidden",
            f"@ls {data}/mirrors/octo/lib.git > /dev/null 2>&1 || echo lib-mirror-hidden",
            "@touch written-here && echo workspace-writable",
            "@echo head=$$(git rev-parse HEAD) && git describe --always > /dev/null && echo git-ok",
        ]
    )
    sha = remote.commit({"Makefile": makefile(test=probe)}, branch="feature")
    settings: Settings = make_settings([{"repository": "octo/app"}, {"repository": "octo/lib"}])
    settings = dataclasses.replace(
        settings,
        data_dir=data,
        config_path=config,
        builds=dataclasses.replace(settings.builds, user=build_user),
    )
    d = await daemon(settings)

    await d.deliver("push", push_payload("octo/lib", other_sha))
    await fake_github.wait_final(other_sha)
    # Its deploy too: while a build runs, its workspace and mirror are lent to the build user,
    # whom every build without a sandbox shares (the bubblewrap sandbox hides them).
    await fake_github.wait_final(other_sha, "hobotnica/deploy")
    _, answer = await d.deliver("push", push_payload("octo/app", sha, branch="feature"))
    final = await fake_github.wait_final(sha)

    log = await d.log(answer["builds"][0])
    assert final.state == "success", log
    assert f"uid={build_user.uid} home={build_user.home}" in log
    for line in (
        "daemon-environment-hidden",
        "config-hidden",
        "database-hidden",
        "session-key-hidden",
        "logs-hidden",
        "lib-hidden",
        "lib-mirror-hidden",
        "workspace-writable",
        f"head={sha}",
        "git-ok",
    ):
        assert line in log, line
    # Between builds the workspace and the mirror are the daemon's again, and closed.
    workspace = data / "workspaces" / "octo" / "app"
    assert (workspace / "written-here").stat().st_uid == os.getuid()
    assert workspace.stat().st_mode & 0o777 == 0o700
    assert (data / "mirrors" / "octo" / "app.git").stat().st_mode & 0o777 == 0o700
