"""Reading a mirror's ref without a git process (`runner.core.git._ref_points_at`): the way a
checkout learns a pushed commit is there. It must agree with git, and read nothing but refs."""

from pathlib import Path

from runner.core.git import _ref_points_at
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

    assert _ref_points_at(mirror, "refs/heads/main", main)
    assert _ref_points_at(mirror, "refs/heads/feature", feature)
    assert _ref_points_at(mirror, "refs/pull/7/head", feature)
    assert not _ref_points_at(mirror, "refs/heads/main", feature)
    assert not _ref_points_at(mirror, "refs/heads/gone", main)


def test_a_loose_ref_wins_over_its_packed_line_as_in_git(tmp_path: Path) -> None:
    mirror, main, feature = mirror_of(tmp_path)
    git(mirror, "pack-refs", "--all")
    git(mirror, "update-ref", "refs/heads/main", feature)  # a loose file now; packed says main

    assert git(mirror, "rev-parse", "refs/heads/main") == feature
    assert _ref_points_at(mirror, "refs/heads/main", feature)
    assert not _ref_points_at(mirror, "refs/heads/main", main)


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
        assert not _ref_points_at(mirror, ref, main), ref
