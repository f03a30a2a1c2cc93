"""aioresponses on aiohttp 3.14: a response class that supplies what aiohttp now requires.

aioresponses 0.7.9 builds its fake `ClientResponse` without the `stream_writer` argument that
aiohttp 3.14 made mandatory, so every mocked request fails with
`TypeError: ClientResponse.__init__() missing 1 required keyword-only argument: 'stream_writer'`
(upstream: https://github.com/pnuckowski/aioresponses/issues/289). Until a release fixes it,
`aioresponses` here defaults every mocked answer to `CompatClientResponse`, which passes a
stand-in writer whose `output_size` is 0 (the request was "sent" with no bytes). Drop this
module once aioresponses supports aiohttp 3.14 itself.
"""

from typing import Any

from aiohttp import ClientResponse
from aioresponses import aioresponses as _aioresponses


class _SentWriter:
    """All aiohttp reads from the writer of an already-sent request: how much was written."""

    output_size = 0


class CompatClientResponse(ClientResponse):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", _SentWriter())
        super().__init__(*args, **kwargs)


class aioresponses(_aioresponses):
    def add(self, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("response_class") is None:
            kwargs["response_class"] = CompatClientResponse
        super().add(*args, **kwargs)
