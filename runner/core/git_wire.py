"""A pushed commit fetched into its mirror by the daemon itself, in git's wire protocol v2.

`git fetch` of one new commit starts five processes here: git fetch; the shell that starts
git-upload-pack over file:// (git-remote-https over HTTPS); unpack-objects; rev-list for its
connectivity check; and the server's own. That was 14 ms of a 34 ms push → `make`. The daemon
already knows which commit it wants and which ref moved, so it asks upload-pack itself
(`runner.core.git_upload_pack`, https://git-scm.com/docs/gitprotocol-v2), both questions at
once, before its first answer: `ls-refs` for the tags (a tag pushed with the commit is the
build's `git describe`) and `fetch`: `want` the commit with `include-tag` (the annotated tags of
what the pack holds), `have` the mirror's branch tips (only the push's new objects come), `done`
(one round, no negotiation). A new tag of a commit the pack did not carry comes in a second
fetch, only then. The pack goes to `git unpack-objects` — or `git index-pack` for 100 objects or
more, as git's fetch.unpackLimit — started while the server packs. Then the refs are written as
git writes loose refs, so they point at the commit only once its objects are in. Git still
checks every object's hash and every delta's base; the walk of rev-list is what is left out (a
ref tip's history is complete in a mirror by construction, and the server sends what the commit
needs beyond those tips).

Narrow on purpose. A server that does not speak v2, an answer other than a pack, a ref git is
writing, any error: `WireFetchFailed`, and the caller runs `git fetch` as before. Unlike
`git fetch --prune`, it deletes no ref the server deleted, and it moves the pushed ref to the
pushed commit even if the server has moved it on since (the next `git fetch` sets both right).
"""

import contextlib
from collections.abc import Mapping
from pathlib import Path

from runner.core.git_files import branch_tips, is_readable_ref, stored_object, tag_refs, write_ref
from runner.core.git_upload_pack import (
    DELIM,
    FLUSH,
    PacketReader,
    UploadPack,
    WireFetchFailed,
    pkt_line,
    read_section,
)
from runner.core.spawn import Child, spawn

UNPACK_LIMIT = 100  # git's fetch.unpackLimit: fewer objects are stored loose, more as a pack
HAVES_LIMIT = 32  # branch tips offered; the push's old tip is almost always among the first
PACK_HEADER_SIZE = 12  # "PACK", version, object count
SIDEBAND_DATA, SIDEBAND_PROGRESS, SIDEBAND_ERROR = 1, 2, 3
OUTPUT_LIMIT = 2000


class PackSink:
    """Where the pack goes: `git unpack-objects`, started before the pack's first byte arrives,
    or `git index-pack` (kept from gc until the ref points into it) for a pack of
    UNPACK_LIMIT objects or more."""

    def __init__(self, mirror: Path, env: Mapping[str, str]) -> None:
        self._mirror = mirror
        self._env = env
        self._child: Child | None = None
        self._header = b""
        self._keep: Path | None = None

    async def start(self) -> None:
        self._child = await self._git("unpack-objects", "-q")

    async def write(self, data: bytes) -> None:
        if len(self._header) < PACK_HEADER_SIZE:
            missing = PACK_HEADER_SIZE - len(self._header)
            self._header += data[:missing]
            data = data[missing:]
            if len(self._header) < PACK_HEADER_SIZE:
                return
            await self._choose()
            data = self._header + data
        assert self._child is not None and self._child.stdin is not None
        await self._child.stdin.write(data)

    async def finish(self) -> None:
        """Wait until git has stored every object; WireFetchFailed if it has not."""
        if len(self._header) < PACK_HEADER_SIZE:
            raise WireFetchFailed("the server sent no pack")
        child = self._child
        assert child is not None and child.stdin is not None
        child.stdin.close()
        out, err = await child.communicate()
        self._child = None
        if child.returncode != 0:
            message = err.decode(errors="replace").strip()[-OUTPUT_LIMIT:]
            raise WireFetchFailed(f"git could not store the pack: {message}")
        if out.startswith(b"keep\t"):
            name = out.decode().split()[1]
            self._keep = self._mirror / "objects" / "pack" / f"pack-{name}.keep"

    def release(self) -> None:
        """The ref points into the new pack: gc may repack it from now on."""
        if self._keep is not None:
            with contextlib.suppress(OSError):
                self._keep.unlink()

    def abort(self) -> None:
        if self._child is not None:
            self._child.kill()
            self._child.close_pipes()
            self._child = None

    async def _choose(self) -> None:
        if self._header[:4] != b"PACK":
            raise WireFetchFailed("the server's pack does not start with PACK")
        if int.from_bytes(self._header[8:12], "big") >= UNPACK_LIMIT:
            self.abort()
            self._child = await self._git("index-pack", "--stdin", "--fix-thin", "--keep=hobotnica")

    async def _git(self, *args: str) -> Child:
        return await spawn(
            ("git", f"--git-dir={self._mirror}", *args), env=self._env, stdin_pipe=True
        )


async def fetch_commit(
    mirror: Path, server: UploadPack, sha: str, ref: str, env: Mapping[str, str]
) -> None:
    """Fetch commit `sha` and the server's new tags from `server` into `mirror`, and point `ref`
    at the commit; WireFetchFailed when anything is not as expected (the mirror may then hold
    more objects, never a ref to a commit it does not have)."""
    if not is_readable_ref(ref):
        raise WireFetchFailed(f"not a ref this fetch writes: {ref}")
    haves = branch_tips(mirror, HAVES_LIMIT)  # small files, as `write_ref`: no thread's hop
    if not haves:
        raise WireFetchFailed("the mirror has no branches to start from")
    sinks = [PackSink(mirror, env)]
    try:
        await server.start()
        # Both asked at once: the server lists and packs while the sink starts, and no answer
        # waits for the daemon's loop (busy starting the build) to ask the next question.
        listing, packed = await server.commands(LS_TAGS, _fetch_request([sha], haves))
        await sinks[0].start()
        _check_capabilities(await server.capabilities())
        known = tag_refs(mirror)
        new_tags = {
            name: oid
            for name, oid in _tags(await read_section(listing)).items()
            if known.get(name) != oid and is_readable_ref(name)
        }
        await _store_pack(packed, sinks[0])
        # `include-tag` brought the tags of what the pack holds; a new tag of an older commit
        # (or of another branch's new commit) is asked for in a second round.
        missing = [
            o for o in dict.fromkeys(new_tags.values()) if stored_object(mirror, o) is not True
        ]
        if missing:
            sinks.append(PackSink(mirror, env))
            [packed] = await server.commands(_fetch_request(missing, [sha, *haves]))
            await sinks[1].start()
            await _store_pack(packed, sinks[1])
    except BaseException:
        for sink in sinks:
            sink.abort()
        raise
    finally:
        await server.close()
    try:
        if stored_object(mirror, sha) is not True:  # an empty pack, say, from a broken proxy
            raise WireFetchFailed(f"the server's pack did not hold {sha}")
        for name, target in [(ref, sha), *new_tags.items()]:
            if not write_ref(mirror, name, target):
                raise WireFetchFailed(f"{name} is being written by git")
    finally:
        for sink in sinks:
            sink.release()


LS_TAGS = pkt_line("command=ls-refs\n") + DELIM + pkt_line("ref-prefix refs/tags/\n") + FLUSH


def _tags(listing: list[bytes]) -> dict[str, str]:
    """The server's tags from its `ls-refs` answer: name → the object each names."""
    tags = {}
    for line in listing:
        oid, _, rest = line.rstrip(b"\n").decode(errors="replace").partition(" ")
        name = rest.split(" ", 1)[0]
        if name.startswith("refs/tags/") and len(oid) == 40:
            tags[name] = oid
    return tags


def _fetch_request(wants: list[str], haves: list[str]) -> bytes:
    arguments = ["thin-pack", "ofs-delta", "include-tag", "no-progress"]
    arguments += [f"want {oid}" for oid in wants] + [f"have {oid}" for oid in haves] + ["done"]
    return (
        pkt_line("command=fetch\n")
        + DELIM
        + b"".join(pkt_line(f"{a}\n") for a in arguments)
        + FLUSH
    )


async def _store_pack(reader: PacketReader, sink: PackSink) -> None:
    """The `packfile` section, its pack (sideband 1) into `sink` until git has stored it; an
    error (sideband 3), a band this does not know or any other answer raises."""
    section = await reader.packet()
    if section is None or section.rstrip(b"\n") != b"packfile":
        raise WireFetchFailed(f"the server answered {_shown(section)}")
    while (packet := await reader.packet()) is not None:
        band, data = packet[:1], packet[1:]
        if band == bytes([SIDEBAND_DATA]):
            await sink.write(data)
        elif band == bytes([SIDEBAND_ERROR]):
            raise WireFetchFailed(f"the server failed: {_shown(data)}")
        elif band != bytes([SIDEBAND_PROGRESS]):
            raise WireFetchFailed(f"the server sent on an unknown band: {_shown(packet)}")
    await sink.finish()


def _check_capabilities(capabilities: list[bytes]) -> None:
    lines = [line.rstrip(b"\n") for line in capabilities]
    if not lines or lines[0] != b"version 2":
        raise WireFetchFailed("the server does not speak git's protocol v2")
    if not any(line == b"fetch" or line.startswith(b"fetch=") for line in lines[1:]):
        raise WireFetchFailed("the server offers no fetch command")
    if not any(line == b"ls-refs" or line.startswith(b"ls-refs=") for line in lines[1:]):
        raise WireFetchFailed("the server offers no ls-refs command")
    for line in lines[1:]:
        if line.startswith(b"object-format=") and line != b"object-format=sha1":
            raise WireFetchFailed(f"the server's {_shown(line)}")


def _shown(data: bytes | None) -> str:
    if data is None:
        return "nothing"
    return repr(data[:200].decode(errors="replace").strip())
