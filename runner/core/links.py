"""Where a build lives, for every stage that points at it: its page and its log file.

The build page's URL is also the build's process marker (`HOBOTNICA_BUILD_URL`), unique on the
host because it holds the installation's public URL.
"""

import re
from pathlib import Path

_SKIP_MARKER = re.compile(r"\[(skip ci|ci skip)\]", re.IGNORECASE)


def build_url(public_url: str, build_id: int) -> str:
    return f"{public_url}/builds/{build_id}"


def on_github(git_url: str, repository: str, path: str) -> str | None:
    """A page of the repository on GitHub (or GitHub Enterprise: `github.git_url`), e.g.
    `commit/{sha}`; None when the repositories are not served over HTTP(S), or it is local."""
    if not git_url.startswith(("https://", "http://")) or repository.startswith("local/"):
        return None
    return f"{git_url.rstrip('/')}/{repository}/{path}"


def log_path(data_dir: Path, build_id: int) -> Path:
    return data_dir / "logs" / f"{build_id}.log"


def log_copies(data_dir: Path) -> Path:
    """Where a node keeps its copies of logs shipped by the nodes that ran the builds."""
    return data_dir / "log-copies"


def ring_path(log: Path) -> Path:
    """The ring of the tail while a build's output is over the cap (gone once it ends)."""
    return log.with_suffix(".tail")


def has_skip_marker(message: str) -> bool:
    """`[skip ci]` or `[ci skip]` in a commit message: the commit is not built."""
    return bool(_SKIP_MARKER.search(message))
