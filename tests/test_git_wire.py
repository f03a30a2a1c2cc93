"""A pushed commit fetched by the daemon itself in git's protocol v2 (`runner.core.git_wire`), over
file:// and over smart HTTP from a real `git http-backend`: the mirror ends as `git fetch` would
leave it for that commit, with only the push's objects, and anything unexpected leaves the
mirror's refs alone and the fetch to `git fetch`."""

import hashlib
import os
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from runner.core.git import Repositories
from runner.core.git_upload_pack import (
    HttpUploadPack,
    LocalUploadPack,
    WireFetchFailed,
    pkt_line,
    upload_pack_for,
)
from runner.core.git_wire import fetch_commit
from runner.core.models import BuildRequest
from runner.core.spawn import spawn
from tests.support.fake_github import FakeGitHub
from tests.support.gitrepo import Remote, git

ENV = {"PATH": os.defpath, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}


def mirror_of(remote: Remote, tmp_path: Path) -> Path:
    mirror = tmp_path / "mirror.git"
    git(tmp_path, "clone", "--quiet", "--mirror", str(remote.bare), str(mirror))
    git(mirror, "repack", "-a", "-d", "-q")  # what it holds now is packed: new objects are loose
    return mirror


def loose_objects(mirror: Path) -> set[str]:
    objects = mirror / "objects"
    return {
        f"{folder.name}{path.name}"
        for folder in objects.iterdir()
        if len(folder.name) == 2
        for path in folder.iterdir()
    }


def assert_complete(mirror: Path, sha: str) -> None:
    """git finds every object the commit needs (what a checkout reads), and nothing is broken."""
    git(mirror, "rev-list", "--objects", sha)
    git(mirror, "fsck", "--no-dangling", "--no-progress")


def request_for(sha: str, branch: str = "main") -> BuildRequest:
    return BuildRequest(repository="octo/app", sha=sha, ref=f"refs/heads/{branch}", branch=branch)


async def test_a_pushed_commit_comes_over_file_with_only_its_own_objects(
    remote: Remote, tmp_path: Path
) -> None:
    remote.commit({f"file-{n}.txt": f"{n}\n" for n in range(120)})
    remote.commit({"c.txt": "3"}, branch="other")
    mirror = mirror_of(remote, tmp_path)
    packs = set((mirror / "objects" / "pack").glob("*.pack"))
    pushed = remote.commit({"file-1.txt": "changed"})
    server = upload_pack_for(f"file://{remote.bare}", ENV, None, None)
    assert isinstance(server, LocalUploadPack)

    await fetch_commit(mirror, server, pushed, "refs/heads/main", ENV)

    assert git(mirror, "rev-parse", "refs/heads/main") == pushed
    assert_complete(mirror, pushed)
    # The commit, its tree and the changed file, loose: the mirror said which tips it had (the
    # whole history, 120 files and more, would have come as a pack).
    own = git(mirror, "rev-parse", f"{pushed}^{{tree}}", f"{pushed}:file-1.txt").split()
    assert loose_objects(mirror) == {pushed, *own}
    assert set((mirror / "objects" / "pack").glob("*.pack")) == packs


async def test_a_large_push_is_stored_as_a_pack_and_left_to_gc(
    remote: Remote, tmp_path: Path
) -> None:
    remote.commit({"start": "0"})
    mirror = mirror_of(remote, tmp_path)
    packs_before = set((mirror / "objects" / "pack").glob("*.pack"))
    files = {f"file-{n}.txt": f"content {n}\n" for n in range(150)}
    pushed = remote.commit(files)
    server = upload_pack_for(f"file://{remote.bare}", ENV, None, None)
    assert server is not None

    await fetch_commit(mirror, server, pushed, "refs/heads/main", ENV)

    assert git(mirror, "rev-parse", "refs/heads/main") == pushed
    assert_complete(mirror, pushed)
    assert not loose_objects(mirror)  # over 100 objects: a pack, as git fetch keeps them
    assert len(set((mirror / "objects" / "pack").glob("*.pack")) - packs_before) == 1
    assert not list((mirror / "objects" / "pack").glob("*.keep"))  # gc may repack it


async def test_a_commit_behind_the_branch_tip_is_fetched_too(
    remote: Remote, tmp_path: Path
) -> None:
    remote.commit({"a": "1"})
    mirror = mirror_of(remote, tmp_path)
    older = remote.commit({"a": "2"})
    remote.commit({"a": "3"})  # pushed right after: the build of `older` asks for a non-tip
    server = upload_pack_for(f"file://{remote.bare}", ENV, None, None)
    assert server is not None

    await fetch_commit(mirror, server, older, "refs/heads/main", ENV)

    assert_complete(mirror, older)


async def test_over_smart_http_the_token_goes_in_the_authorization_header(
    remote: Remote, tmp_path: Path, fake_github: FakeGitHub, remote_root: Path
) -> None:
    fake_github.git_root = remote_root
    fake_github.git_token = "git-token-123"
    remote.commit({"a": "1"})
    mirror = mirror_of(remote, tmp_path)
    pushed = remote.commit({"a": "2"})
    url = f"{fake_github.url}/octo/app.git"
    async with aiohttp.ClientSession() as session:
        refused = upload_pack_for(url, ENV, session, "wrong-token")
        assert isinstance(refused, HttpUploadPack)
        with pytest.raises(WireFetchFailed, match="401"):
            await fetch_commit(mirror, refused, pushed, "refs/heads/main", ENV)
        assert git(mirror, "rev-parse", "refs/heads/main") != pushed

        server = upload_pack_for(url, ENV, session, "git-token-123")
        assert server is not None
        await fetch_commit(mirror, server, pushed, "refs/heads/main", ENV)

    assert git(mirror, "rev-parse", "refs/heads/main") == pushed
    assert_complete(mirror, pushed)
    assert fake_github.git_authorizations[-1] == "git-token-123"


async def serve(aiohttp_server: Any, upload_pack_answer: bytes, advertisement: bytes) -> str:
    """A smart HTTP server that advertises `advertisement`, lists no tags, and answers a fetch
    with `upload_pack_answer`; its repository's URL."""

    async def info_refs(request: web.Request) -> web.Response:
        return web.Response(
            body=advertisement, content_type="application/x-git-upload-pack-advertisement"
        )

    async def upload_pack(request: web.Request) -> web.Response:
        listing = b"command=ls-refs" in await request.read()
        return web.Response(
            body=FLUSH if listing else upload_pack_answer,
            content_type="application/x-git-upload-pack-result",
        )

    app = web.Application()
    app.router.add_get("/octo/app.git/info/refs", info_refs)
    app.router.add_post("/octo/app.git/git-upload-pack", upload_pack)
    server = await aiohttp_server(app)
    return str(server.make_url("/octo/app.git"))


FLUSH = b"0000"
V2 = pkt_line("version 2\n") + pkt_line("ls-refs=unborn\n") + pkt_line("fetch=shallow\n") + FLUSH
SERVICE = pkt_line("# service=git-upload-pack\n") + FLUSH  # what smart HTTP may say first
V0 = SERVICE + pkt_line(f"{'1' * 40} HEAD\0multi_ack\n") + FLUSH
EMPTY_PACK = b"PACK\x00\x00\x00\x02\x00\x00\x00\x00"
EMPTY_PACK += hashlib.sha1(EMPTY_PACK, usedforsecurity=False).digest()  # its checksum


def packfile(*bands: bytes) -> bytes:
    return (
        pkt_line("packfile\n")
        + b"".join(b"%04x" % (len(band) + 4) + band for band in bands)
        + FLUSH
    )


@pytest.mark.parametrize(
    ("advertisement", "answer", "reason"),
    [
        (V0, b"", "protocol v2"),
        (V2, pkt_line("ERR upload-pack: not our ref\n"), "not our ref"),
        (SERVICE + V2, pkt_line("ERR upload-pack: not our ref\n"), "not our ref"),
        (V2, packfile(b"\x03disk full\n"), "disk full"),
        (V2, packfile(b"\x07what"), "unknown band"),
        (V2, packfile(b"\x01PACK\x00\x00"), "no pack"),
        (
            V2,
            pkt_line("packfile\n") + pkt_line("\x01PACK\x00\x00\x00\x02\x00\x00\x00\x01"),
            "early",
        ),
        (V2, packfile(b"\x01" + EMPTY_PACK), "did not hold"),
    ],
    ids=[
        "protocol-v0",
        "refused",
        "refused-after-service-line",
        "server-error",
        "unknown-band",
        "cut-header",
        "cut-pack",
        "empty-pack",
    ],
)
async def test_an_unexpected_answer_moves_no_ref(
    remote: Remote,
    tmp_path: Path,
    aiohttp_server: Any,
    advertisement: bytes,
    answer: bytes,
    reason: str,
) -> None:
    before = remote.commit({"a": "1"})
    mirror = mirror_of(remote, tmp_path)
    pushed = remote.commit({"a": "2"})
    url = await serve(aiohttp_server, answer, advertisement)
    async with aiohttp.ClientSession() as session:
        server = upload_pack_for(url, ENV, session, None)
        assert server is not None
        with pytest.raises(WireFetchFailed, match=reason):
            await fetch_commit(mirror, server, pushed, "refs/heads/main", ENV)
    assert git(mirror, "rev-parse", "refs/heads/main") == before
    assert not list(mirror.rglob("*.lock"))
    assert not list(mirror.rglob("*.keep"))


async def test_a_tag_pushed_with_the_commit_comes_with_it(remote: Remote, tmp_path: Path) -> None:
    """`git describe` in the branch's build names the tag pushed with it (`git push --follow-tags`
    sends the branch's webhook and the tag's, in either order)."""
    other = remote.commit({"o": "1"}, branch="other")
    remote.commit({"a": "1"})
    git(remote.work, "tag", "-a", "-m", "first", "v0.1")
    git(remote.work, "push", "-q", "origin", "v0.1")
    repositories = Repositories(tmp_path / "data", inherited_env=ENV)
    clone_url = f"file://{remote.bare}"
    await repositories.clone("octo/app", clone_url, None)
    remote.commit({"o": "2"}, branch="other")
    pushed = remote.commit({"a": "2"})
    git(remote.work, "tag", "-a", "-m", "second", "v0.2", pushed)
    git(remote.work, "push", "-q", "origin", "v0.2")

    workspace = await repositories.checkout(request_for(pushed), clone_url)

    assert git(workspace, "describe", "--tags") == "v0.2"
    mirror = repositories.mirror_path("octo/app")
    assert git(mirror, "rev-parse", "refs/heads/other") == other  # over the wire: branch alone
    await repositories.close()


async def test_a_new_tag_of_an_older_commit_comes_in_a_second_round(
    remote: Remote, tmp_path: Path
) -> None:
    """The pack for the pushed commit carries the tags of what it holds (`include-tag`); an
    annotated tag made meanwhile of a commit the mirror already had is fetched after it, and a
    lightweight one needs nothing fetched."""
    old = remote.commit({"a": "1"})
    mirror = mirror_of(remote, tmp_path)
    git(remote.work, "tag", "-a", "-m", "late", "v0.9", old)
    git(remote.work, "tag", "light", old)
    git(remote.work, "push", "-q", "origin", "v0.9", "light")
    pushed = remote.commit({"a": "2"})

    server = upload_pack_for(f"file://{remote.bare}", ENV, None, None)
    assert server is not None
    await fetch_commit(mirror, server, pushed, "refs/heads/main", ENV)

    assert git(mirror, "rev-parse", "refs/heads/main") == pushed
    assert git(mirror, "cat-file", "-t", "refs/tags/v0.9") == "tag"
    assert git(mirror, "rev-parse", "refs/tags/v0.9^{commit}") == old
    assert git(mirror, "rev-parse", "refs/tags/light") == old
    assert_complete(mirror, pushed)


async def test_a_checkout_fetches_the_pushed_commit_alone(remote: Remote, tmp_path: Path) -> None:
    """Through `Repositories`: the pushed branch moves; the other branch, which `git fetch`'s
    refspecs would have moved too, stays where it was."""
    other_before = remote.commit({"o": "1"}, branch="other")
    remote.commit({"a": "1"})
    repositories = Repositories(tmp_path / "data", inherited_env=ENV)
    clone_url = f"file://{remote.bare}"
    await repositories.clone("octo/app", clone_url, None)
    remote.commit({"o": "2"}, branch="other")
    pushed = remote.commit({"a": "2"})

    workspace = await repositories.checkout(request_for(pushed), clone_url)

    assert (workspace / "a").read_text() == "2"
    mirror = repositories.mirror_path("octo/app")
    assert git(mirror, "rev-parse", "refs/heads/main") == pushed
    assert git(mirror, "rev-parse", "refs/heads/other") == other_before


async def test_a_mirror_without_branches_is_fetched_by_git(remote: Remote, tmp_path: Path) -> None:
    """The first push to a repository registered while empty: nothing to start from, so git."""
    repositories = Repositories(tmp_path / "data", inherited_env=ENV)
    clone_url = f"file://{remote.bare}"
    await repositories.clone("octo/app", clone_url, None)
    pushed = remote.commit({"a": "first"})
    remote.commit({"o": "1"}, branch="other")

    workspace = await repositories.checkout(request_for(pushed), clone_url)

    assert (workspace / "a").read_text() == "first"
    mirror = repositories.mirror_path("octo/app")
    assert git(mirror, "rev-parse", "refs/heads/other")  # git fetch took every branch


async def test_a_child_takes_input_larger_than_a_pipe_holds() -> None:
    child = await spawn(("wc", "-c"), env=ENV, stdin_pipe=True)
    assert child.stdin is not None
    await child.stdin.write(b"x" * (1 << 20))  # 16 pipe buffers: the writer must wait
    child.stdin.close()
    out, _ = await child.communicate()
    assert out.split() == [b"1048576"]


async def test_a_commit_left_without_its_tree_is_completed_by_git_fetch(
    remote: Remote, tmp_path: Path
) -> None:
    """A fetch cut short (a stopped build, a daemon's shutdown) can leave the commit object
    without its tree: the mirror then has the commit, by its files, and checking it out fails
    until a whole `git fetch` brings the rest."""
    remote.commit({"a": "1"})
    repositories = Repositories(tmp_path / "data", inherited_env=ENV)
    clone_url = f"file://{remote.bare}"
    await repositories.clone("octo/app", clone_url, None)
    pushed = remote.commit({"a": "2"})
    mirror = repositories.mirror_path("octo/app")
    commit = subprocess.run(
        ["git", "--git-dir", str(remote.bare), "cat-file", "commit", pushed],
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(
        ["git", "--git-dir", str(mirror), "hash-object", "-t", "commit", "-w", "--stdin"],
        input=commit,
        check=True,
        capture_output=True,
    )

    workspace = await repositories.checkout(request_for(pushed), clone_url)

    assert (workspace / "a").read_text() == "2"
    await repositories.close()
