"""upload-pack, the server side of a git fetch, spoken to in git's wire protocol v2: its framing
(pkt-lines, https://git-scm.com/docs/protocol-common) and its two transports here, a local
repository's `git upload-pack` (a `file://` URL, started directly, never through a shell) and
smart HTTP(S) over the daemon's aiohttp session (https://git-scm.com/docs/gitprotocol-http),
the token in an `Authorization` header only. What is asked is `runner.core.git_wire`'s.
"""

import asyncio
import base64
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

import aiohttp

from runner.core.spawn import Child, spawn

FLUSH = b"0000"
DELIM = b"0001"
USER_AGENT = "git/hobotnica"
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60)
READ_TIMEOUT = 60.0  # no byte from the server for this long: it is not coming


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
            try:
                chunk = await asyncio.wait_for(self._read(), READ_TIMEOUT)
            except TimeoutError:
                raise WireFetchFailed(f"the server sent nothing for {READ_TIMEOUT:.0f} s") from None
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

    async def start(self) -> None: ...

    async def capabilities(self) -> list[bytes]: ...

    async def commands(self, *requests: bytes) -> list[PacketReader]:
        """Send every request before any answer is read (no round trip waits for another);
        their answers, to be read in the order asked, after the capabilities."""
        ...

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

    async def commands(self, *requests: bytes) -> list[PacketReader]:
        # upload-pack answers them one after another on its one output.
        assert self._child is not None and self._child.stdin is not None and self._reader
        await self._child.stdin.write(b"".join(requests))
        return [self._reader] * len(requests)

    async def close(self) -> None:
        # Once the pack is in, upload-pack waits for another command; otherwise it may be
        # stuck writing a pack nobody reads. It goes either way, and its exit is reaped by
        # `Child`'s watcher without keeping the build waiting.
        if self._child is not None:
            self._child.kill()
            self._child.close_pipes()
            self._child = None


class HttpUploadPack:
    """upload-pack over smart HTTP(S): the capabilities from `GET info/refs` first (a refused
    token is refused once), then each command by a `POST git-upload-pack` of its own, all under
    way at once (over the Internet each is a round trip), all with `Git-Protocol: version=2`."""

    def __init__(self, session: aiohttp.ClientSession, url: str, token: str | None) -> None:
        self._session = session
        self._url = url.rstrip("/")
        self._headers = {"Git-Protocol": "version=2", "User-Agent": USER_AGENT}
        if token:
            basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
            self._headers["Authorization"] = f"Basic {basic}"
        self._advertisement = b""
        self._responses: list[aiohttp.ClientResponse] = []

    async def start(self) -> None:
        async with self._session.get(
            f"{self._url}/info/refs",
            params={"service": "git-upload-pack"},
            headers=self._headers,
            allow_redirects=False,  # a redirect elsewhere must not take the token along
            timeout=HTTP_TIMEOUT,
        ) as response:
            _expect(response, "application/x-git-upload-pack-advertisement")
            self._advertisement = await response.read()

    async def capabilities(self) -> list[bytes]:
        reader = PacketReader.of(self._advertisement)
        first = await read_section(reader)
        if first and first[0].startswith(b"# service="):  # what a v0 server says first, too
            return await read_section(reader)
        return first

    async def commands(self, *requests: bytes) -> list[PacketReader]:
        posted = await asyncio.gather(*(self._post(r) for r in requests), return_exceptions=True)
        responses = [p for p in posted if isinstance(p, aiohttp.ClientResponse)]
        self._responses += responses  # closed by `close`, whatever else failed
        failed = [p for p in posted if isinstance(p, BaseException)]
        if failed:
            raise failed[0]
        return [PacketReader(response.content.readany) for response in responses]

    async def close(self) -> None:
        for response in self._responses:
            response.close()
        self._responses = []

    async def _post(self, request: bytes) -> aiohttp.ClientResponse:
        response = await self._session.post(
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
        try:
            _expect(response, "application/x-git-upload-pack-result")
        except WireFetchFailed:
            response.close()
            raise
        return response


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
