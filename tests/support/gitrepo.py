"""Real git repositories for tests: a bare "remote" per repository, served as `file://`."""

import subprocess
from dataclasses import dataclass
from pathlib import Path

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Octo Cat",
    "GIT_AUTHOR_EMAIL": "octocat@example.com",
    "GIT_COMMITTER_NAME": "Octo Cat",
    "GIT_COMMITTER_EMAIL": "octocat@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "PATH": "/usr/local/bin:/usr/bin:/bin",
}


def git(cwd: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", *args], cwd=cwd, env=GIT_ENV, check=True, capture_output=True, text=True
    )
    return result.stdout.strip()


@dataclass
class Remote:
    """`{root}/{owner}/{name}.git` plus a working clone to commit from."""

    repository: str
    bare: Path
    work: Path

    def commit(self, files: dict[str, str], message: str = "Update", branch: str = "main") -> str:
        """Commit `files` on `branch`, push it, and return the new commit's sha."""
        existing = git(self.work, "branch", "--list", branch)
        if existing or not git(self.work, "branch", "--list"):
            git(self.work, "checkout", "-q", "-B", branch)
        else:
            git(self.work, "checkout", "-q", "-b", branch)
        for name, content in files.items():
            path = self.work / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
        git(self.work, "add", "-A")
        git(self.work, "commit", "-q", "--allow-empty", "-m", message)
        git(self.work, "push", "-q", "--force", "origin", f"HEAD:refs/heads/{branch}")
        return git(self.work, "rev-parse", "HEAD")

    def push_pull_ref(self, number: int, sha: str) -> None:
        """What GitHub does for a pull request: `refs/pull/N/head` points at its head."""
        git(self.work, "push", "-q", "--force", "origin", f"{sha}:refs/pull/{number}/head")


def make_remote(root: Path, repository: str) -> Remote:
    bare = root / f"{repository}.git"
    bare.parent.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q", "--bare", "-b", "main", str(bare))
    work = root / "_work" / repository
    work.parent.mkdir(parents=True, exist_ok=True)
    git(root, "clone", "-q", str(bare), str(work))
    return Remote(repository=repository, bare=bare, work=work)


def wait_for_file(path: Path) -> str:
    """A recipe that blocks the build until the test creates `path` (no timing involved)."""
    return f"@while [ ! -e {path} ]; do sleep 0.02; done"


def makefile(**targets: str) -> str:
    """A Makefile whose targets run the given recipes (one line each; `\n` separates lines)."""
    lines = [".PHONY: " + " ".join(targets)]
    for target, recipe in targets.items():
        lines.append(f"{target}:")
        lines += [f"\t{line}" for line in recipe.split("\n")]
    return "\n".join(lines) + "\n"


# A recipe: make prints the environment it was started with, the build's, before make or a shell
# add anything of their own (MAKELEVEL, PWD, SHLVL, ...).
PRINT_MAKES_ENVIRONMENT = "@echo ENV-BEGIN\n@tr '\\0' '\\n' < /proc/$$PPID/environ\n@echo ENV-END"


def environment_in_log(log: str) -> dict[str, str]:
    """The variables `PRINT_MAKES_ENVIRONMENT` printed into a build's log."""
    printed = log.split("ENV-BEGIN\n", 1)[1].split("ENV-END", 1)[0]
    return dict(line.split("=", 1) for line in printed.splitlines())


@dataclass(frozen=True)
class NewCommit:
    """One commit for `commit_many`: on top of `branch`'s previous one (a new branch starts
    with a root commit), changing `files`; `also` are more refs to point at it (a pull
    request's `refs/pull/N/head`)."""

    branch: str
    files: dict[str, str]
    message: str
    also: tuple[str, ...] = ()


def commit_many(
    remote: Remote, commits: list[NewCommit], *, base_time: int = 1700000000
) -> list[str]:
    """Many commits at once, straight into the bare repository (one `git fast-import`, some
    hundred times quicker than a commit and a push each); their shas, in order."""
    stream: list[bytes] = []

    def data(text: str) -> None:
        encoded = text.encode()
        stream.append(b"data %d\n%s\n" % (len(encoded), encoded))

    last: dict[str, int] = {}
    for mark, commit in enumerate(commits, start=1):
        stream.append(f"commit refs/heads/{commit.branch}\nmark :{mark}\n".encode())
        stream.append(
            f"committer {GIT_ENV['GIT_COMMITTER_NAME']} <{GIT_ENV['GIT_COMMITTER_EMAIL']}>"
            f" {base_time + mark} +0000\n".encode()
        )
        data(commit.message)
        if commit.branch in last:
            stream.append(f"from :{last[commit.branch]}\n".encode())
        last[commit.branch] = mark
        for name, content in commit.files.items():
            stream.append(f"M 100644 inline {name}\n".encode())
            data(content)
        stream.append(b"\n")
        for ref in commit.also:
            stream.append(f"reset {ref}\nfrom :{mark}\n\n".encode())
    marks = remote.bare / "hobotnica-test-marks"
    subprocess.run(
        ["git", "--git-dir", str(remote.bare), "fast-import", "--quiet",
         f"--export-marks={marks}"],
        input=b"".join(stream), env=GIT_ENV, check=True, capture_output=True,
    )  # fmt: skip
    shas = dict(line.split() for line in marks.read_text().splitlines())
    marks.unlink()
    return [shas[f":{mark}"] for mark in range(1, len(commits) + 1)]
