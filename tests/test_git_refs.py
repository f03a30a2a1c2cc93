"""Reading a mirror without a git process: a ref (`runner.core.git.ref_points_at`) and the
object store (`stored_object`), the ways a checkout learns a pushed commit is there. They must
agree with git, and read nothing but refs and objects."""

import hashlib
from pathlib import Path

from runner.core.git_files import ref_points_at, stored_object
from tests.support.gitrepo import git, make_remote


def mirror_of(tmp_path: Path) -> tuple[Path, str, str]:
    """A bare mirror with branches main and feature; their shas."""
    remote = make_remote(tmp_path / "remotes", "octo/app")
    main = remote.commit({"n": "1"})
    feature = remote.commit({"n": "2"}, branch="feature")
    mirror = tmp_path / "mirror.git"
    git(tmp_path, "clone", "--quiet", "--mirror", str(remote.bare), str(mirror))
    return mirror, main, feature


def test_a_ref_names_its_commit_loose_or_packed(tmp_path: Path) -> None:
    mirror, main, feature = mirror_of(tmp_path)
    git(mirror, "pack-refs", "--all")
    git(mirror, "update-ref", "refs/pull/7/head", feature)  # loose, beside the packed ones

    assert ref_points_at(mirror, "refs/heads/main", main)
    assert ref_points_at(mirror, "refs/heads/feature", feature)
    assert ref_points_at(mirror, "refs/pull/7/head", feature)
    assert not ref_points_at(mirror, "refs/heads/main", feature)
    assert not ref_points_at(mirror, "refs/heads/gone", main)


def test_a_loose_ref_wins_over_its_packed_line_as_in_git(tmp_path: Path) -> None:
    mirror, main, feature = mirror_of(tmp_path)
    git(mirror, "pack-refs", "--all")
    git(mirror, "update-ref", "refs/heads/main", feature)  # a loose file now; packed says main

    assert git(mirror, "rev-parse", "refs/heads/main") == feature
    assert ref_points_at(mirror, "refs/heads/main", feature)
    assert not ref_points_at(mirror, "refs/heads/main", main)


def test_only_branch_and_pull_request_refs_with_safe_names_are_read(tmp_path: Path) -> None:
    mirror, main, _ = mirror_of(tmp_path)
    (tmp_path / "outside").write_text(f"{main}\n")
    (mirror / "refs" / "heads" / "main.lock").write_text(f"{main}\n")

    for ref in (
        "refs/heads/../../../outside",
        "refs/heads/main.lock",
        "refs/tags/../../../outside",
        "refs/pull/7/../../../../outside",
        "HEAD",
        "/etc/passwd",
    ):
        assert not ref_points_at(mirror, ref, main), ref


def every_object(git_dir: Path) -> list[str]:
    listed = git(git_dir, "cat-file", "--batch-all-objects", "--batch-check=%(objectname)")
    return listed.split()


def absent(n: int) -> str:
    return hashlib.sha1(f"not an object {n}".encode()).hexdigest()  # noqa: S324 - an id


def test_the_object_store_agrees_with_git_loose_and_packed(tmp_path: Path) -> None:
    mirror, main, feature = mirror_of(tmp_path)
    many = make_remote(tmp_path / "many", "octo/many")  # several ids per first byte: a search
    many.commit({f"file-{n}": f"{n}\n" for n in range(1500)})
    git(mirror, "fetch", "-q", str(many.bare), "main:refs/heads/many")
    git(mirror, "repack", "-a", "-d", "-q")  # everything packed, nothing loose
    remote = make_remote(tmp_path / "more", "octo/more")
    loose = remote.commit({"n": "3"})
    git(mirror, "fetch", "-q", str(remote.bare), "main:refs/heads/more")  # a few loose objects
    assert list((mirror / "objects" / "pack").glob("pack-*.idx"))
    assert (mirror / "objects" / loose[:2] / loose[2:]).is_file()

    objects = every_object(mirror)
    assert {main, feature, loose} <= set(objects)
    assert all(stored_object(mirror, sha) for sha in objects)
    assert not any(stored_object(mirror, absent(n)) for n in range(200))


def test_the_object_store_says_it_cannot_tell_rather_than_guess(tmp_path: Path) -> None:
    mirror, main, _ = mirror_of(tmp_path)
    assert stored_object(mirror, main.upper()) is None  # not an id git wrote
    assert stored_object(mirror, "../../etc/passwd") is None
    (mirror / "objects" / "info").mkdir(exist_ok=True)
    (mirror / "objects" / "info" / "alternates").write_text("/elsewhere/objects\n")
    assert stored_object(mirror, absent(0)) is None  # it may be borrowed: git knows
