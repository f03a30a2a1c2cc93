"""What is alive on the host, read from /proc the way the daemon's reaper reads it."""

from pathlib import Path


def processes_with_marker(build_url: str, *, prefix: bool = False) -> list[int]:
    """Live processes whose HOBOTNICA_BUILD_URL is `build_url` (or starts with it)."""
    marker = f"HOBOTNICA_BUILD_URL={build_url}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            entries = (entry / "environ").read_bytes().split(b"\0")
            if any(e.startswith(marker) if prefix else e == marker for e in entries):
                found.append(int(entry.name))
        except OSError:
            continue
    return found
