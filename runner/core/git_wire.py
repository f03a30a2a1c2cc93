"""A pushed commit fetched into its mirror by the daemon itself, in git's wire protocol v2.

`git fetch` of one new commit starts five processes here: git fetch; the shell that starts
git-upload-pack over file:// (git-remote-https over HTTPS); unpack-objects; rev-list for its
connectivity check; and the server's own. That was 14 ms of a 34 ms push → `make`. The daemon
already knows which commit it wants and which ref moved, so it asks the server itself
(https://git-scm.com/docs/gitprotocol-v2): `want` the commit, `have` the mirror's branch tips
(only the push's new objects come), `done` (one round, no negotiation), and hands the pack to
`git unpack-objects` — or `git index-pack` for 100 objects or more, as git's fetch.unpackLimit —
started while the server starts. Then the ref is written as git writes a loose ref, so it points
at the commit only once the commit's objects are in. Git still checks every object's hash and
every delta's base; the walk of rev-list is what is left out (a ref tip's history is complete
in a mirror by construction, and the server sends what the commit needs beyond those tips).

Narrow on purpose. A server that does not speak v2, an answer other than a pack, a ref git is
writing, any error: `WireFetchFailed`, and the caller runs `git fetch` as before. Transports:
`file://` (git-upload-pack started directly, never through a shell) and smart HTTP(S) over the
daemon's aiohttp session (https://git-scm.com/docs/gitprotocol-http), the token in an
`Authorization` header only.
"""

import base64
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

import aiohttp

from runner.core.git_files import branch_tips, is_readable_ref, write_ref
from runner.core.spawn import Child, spawn

UNPACK_LIMIT = 100  # git's fetch.unpackLimit: fewer objects are stored loose, more as a pack
HAVES_LIMIT = 32  # branch tips offered; the push's old tip is almost always among the first
FLUSH = b"0000"
DELIM = b"0001"
PACK_HEADER_SIZE = 12  # "PACK", version, object count
SIDEBAND_DATA, SIDEBAND_PROGRESS, SIDEBAND_ERROR = 1, 2, 3
USER_AGENT = "git/hobotnica"
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60)
OUTPUT_LIMIT = 2000


class WireFetchFailed(Exception):
    """The server or the mirror did what this fetch does not handle: `git fetch` will."""


class CredentialsRefused(WireFetchFailed):
    """The HTTP server refused the token: a 401, a 403, or GitHub's 404 for a private repository
    out of the token's reach."""


def pkt_line(text: str) -> bytes:
    data = text.encode()
    return b"%04x" % (len(data) + 4) + data


class PacketReader:
    """pkt-lines from a stream read in chunks (a child's pipe, an HTTP body)."""

    def __init__(self, read: Callable[[], Awaitable[bytes]]) -> None:
        self._read = read
        self._buffer = bytearray()

    @classmethod
    def of(cls, data: bytes) -> "PacketReader":
        """pkt-lines from bytes already read."""
        reader = cls(_nothing_more)
        reader._buffer += data
        return reader

    async def packet(self) -> bytes | None:
        """The next pkt-line's payload; None for a flush, delimiter or response-end."""
        header = await self._exactly(4)
        try:
            length = int(header, 16)
        except ValueError:
            raise WireFetchFailed(f"not a pkt-line: {header!r}") from None
        if length < 4:
            return None
        return await self._exactly(length - 4)

    async def _exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            chunk = await self._read()
            if not chunk:
                raise WireFetchFailed("the server's answer ended early")
            self._buffer += chunk
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data


async def _nothing_more() -> bytes:
    return b""


async def read_section(reader: PacketReader) -> list[bytes]:
    """pkt-lines up to the next flush or delimiter."""
    lines = []
    while (line := await reader.packet()) is not None:
        lines.append(line)
    return lines


class UploadPack(Protocol):
    """A conversation with the server's upload-pack."""

    async def capabilities(self) -> list[bytes]: ...

    async def command(self, request: bytes) -> PacketReader: ...

    async def close(self) -> None:
        """The end of the conversation: a pack not read to its end is abandoned."""
        ...


class LocalUploadPack:
    """`git upload-pack` on a repository of this machine (a `file://` URL), in protocol v2."""

    def __init__(self, path: Path, env: Mapping[str, str]) -> None:
        self._path = path
        self._env = dict(env, GIT_PROTOCOL="version=2")
        self._child: Child | None = None
        self._reader: PacketReader | None = None

    async def start(self) -> None:
        self._child = await spawn(
            ("git", "upload-pack", str(self._path)), env=self._env, stdin_pipe=True
        )
        self._reader = PacketReader(self._child.stdout.read)

    async def capabilities(self) -> list[bytes]:
        assert self._reader is not None
        return await read_section(self._reader)

    async def command(self, request: bytes) -> PacketReader:
        assert self._child is not None and self._child.stdin is not None and self._reader
        await self._child.stdin.write(request)
        return self._reader

    async def close(self) -> None:
        # Once the pack is in, upload-pack waits for another command; otherwise it may be
        # stuck writing a pack nobody reads. It goes either way, and its exit is reaped by
        # `Child`'s watcher without keeping the build waiting.
        if self._child is not None:
            self._child.kill()
            self._child.close_pipes()
            self._child = None


class HttpUploadPack:
    """upload-pack over smart HTTP(S): the capabilities from `GET info/refs`, the command by
    `POST git-upload-pack`, both with `Git-Protocol: version=2`."""

    def __init__(self, session: aiohttp.ClientSession, url: str, token: str | None) -> None:
        self._session = session
        self._url = url.rstrip("/")
        self._headers = {"Git-Protocol": "version=2", "User-Agent": USER_AGENT}
        if token:
            basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
            self._headers["Authorization"] = f"Basic {basic}"
        self._response: aiohttp.ClientResponse | None = None

    async def start(self) -> None:
        return None

    async def capabilities(self) -> list[bytes]:
        async with self._session.get(
            f"{self._url}/info/refs",
            params={"service": "git-upload-pack"},
            headers=self._headers,
            allow_redirects=False,  # a redirect elsewhere must not take the token along
            timeout=HTTP_TIMEOUT,
        ) as response:
            _expect(response, "application/x-git-upload-pack-advertisement")
            body = await response.read()
        return await read_section(PacketReader.of(body))

    async def command(self, request: bytes) -> PacketReader:
        self._response = await self._session.post(
            f"{self._url}/git-upload-pack",
            data=request,
            headers={
                **self._headers,
                "Content-Type": "application/x-git-upload-pack-request",
                "Accept": "application/x-git-upload-pack-result",
            },
            allow_redirects=False,
            timeout=HTTP_TIMEOUT,
        )
        _expect(self._response, "application/x-git-upload-pack-result")
        return PacketReader(self._response.content.readany)

    async def close(self) -> None:
        if self._response is not None:
            self._response.close()
            self._response = None


def _expect(response: aiohttp.ClientResponse, content_type: str) -> None:
    if response.status in (401, 403, 404):
        raise CredentialsRefused(f"the server answered {response.status}")
    if response.status != 200 or response.content_type != content_type:
        raise WireFetchFailed(f"the server answered {response.status} {response.content_type}")


def upload_pack_for(
    clone_url: str,
    env: Mapping[str, str],
    session: aiohttp.ClientSession | None,
    token: str | None,
) -> LocalUploadPack | HttpUploadPack | None:
    """The server's upload-pack at `clone_url`, or None for a transport `git fetch` alone does."""
    parts = urlsplit(clone_url)
    if parts.scheme == "file" and parts.netloc in ("", "localhost") and parts.path:
        return LocalUploadPack(Path(unquote(parts.path)), env)
    if parts.scheme in ("https", "http") and session is not None and not parts.query:
        return HttpUploadPack(session, clone_url, token)
    return None


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
    mirror: Path,
    server: LocalUploadPack | HttpUploadPack,
    sha: str,
    ref: str,
    env: Mapping[str, str],
) -> None:
    """Fetch commit `sha` from `server` into `mirror` and point `ref` at it; WireFetchFailed
    when anything is not as expected (the mirror may then hold more objects, never a wrong ref)."""
    if not is_readable_ref(ref):
        raise WireFetchFailed(f"not a ref this fetch writes: {ref}")
    haves = branch_tips(mirror, HAVES_LIMIT)  # small files, as `write_ref`: no thread's hop
    if not haves:
        raise WireFetchFailed("the mirror has no branches to start from")
    sink = PackSink(mirror, env)
    try:
        await server.start()
        await sink.start()
        capabilities = await server.capabilities()
        _check_capabilities(capabilities)
        request = b"".join(
            [
                pkt_line("command=fetch\n"),
                DELIM,
                pkt_line("thin-pack\n"),
                pkt_line("ofs-delta\n"),
                pkt_line("no-progress\n"),
                pkt_line(f"want {sha}\n"),
                *(pkt_line(f"have {have}\n") for have in haves),
                pkt_line("done\n"),
                FLUSH,
            ]
        )
        reader = await server.command(request)
        section = await reader.packet()
        if section != b"packfile\n":
            raise WireFetchFailed(f"the server answered {_shown(section)}")
        while (packet := await reader.packet()) is not None:
            band, data = packet[:1], packet[1:]
            if band == bytes([SIDEBAND_DATA]):
                await sink.write(data)
            elif band == bytes([SIDEBAND_ERROR]):
                raise WireFetchFailed(f"the server failed: {_shown(data)}")
        await sink.finish()
    except BaseException:
        sink.abort()
        raise
    finally:
        await server.close()
    if not write_ref(mirror, ref, sha):
        raise WireFetchFailed(f"{ref} is being written by git")
    sink.release()


def _check_capabilities(capabilities: list[bytes]) -> None:
    if not capabilities or capabilities[0] != b"version 2\n":
        raise WireFetchFailed("the server does not speak git's protocol v2")
    lines = [line.rstrip(b"\n") for line in capabilities[1:]]
    if not any(line == b"fetch" or line.startswith(b"fetch=") for line in lines):
        raise WireFetchFailed("the server offers no fetch command")
    for line in lines:
        if line.startswith(b"object-format=") and line != b"object-format=sha1":
            raise WireFetchFailed(f"the server's {_shown(line)}")


def _shown(data: bytes | None) -> str:
    if data is None:
        return "nothing"
    return repr(data[:200].decode(errors="replace").strip())
