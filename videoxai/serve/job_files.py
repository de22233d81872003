"""A finished job's files as HTTP answers.

A job's files may be deleted at any moment (``DELETE``, or the eviction of the oldest finished
jobs), so a file is opened when its route returns and sent from the open file; a ``Range`` it
cannot serve is a JSON error like every other; and the result's links are rewritten below the
prefix of a proxy that serves the app under a path.
"""

from __future__ import annotations

import json
import os
import weakref
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import anyio
from fastapi.responses import FileResponse, Response, StreamingResponse
from starlette.datastructures import Headers
from starlette.responses import MalformedRangeHeader, RangeNotSatisfiable
from starlette.types import Receive, Scope, Send

from .http_errors import _error_response
from .jobs import JobQueue
from .protocol import ServiceError


def _finished(jobs: JobQueue, job_id: str):
    job = jobs.get(job_id)
    with jobs.lock:
        state, error = job.state, job.error
    if state == "failed" and error is not None:
        raise ServiceError(409, "job_failed", f"the job failed: {error.code}: {error.message}")
    if state != "done":
        raise ServiceError(409, "not_ready", f"the job is {state}; poll its status until it is done")
    return job


class _OpenedFile(FileResponse):
    """A :class:`FileResponse` of a file opened when the route returns, not when the body is sent.

    A job's files may be deleted at any moment (``DELETE``, or the eviction of the oldest
    finished jobs); a plain FileResponse looks its path up again while sending, so a deletion in
    between turned a 200 into a 500 or a body cut off after its headers. An open file stays
    readable after it is unlinked. (Overrides starlette's private ``_open_file``.)
    """

    def __init__(self, path: Path, **kwargs: Any) -> None:
        fd = os.open(path, os.O_RDONLY)  # FileNotFoundError: deleted already
        weakref.finalize(self, os.close, fd)
        self._fd = fd
        super().__init__(path, stat_result=os.fstat(fd), **kwargs)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Starlette answers a bad ``Range`` in plain text (400, or 416 with no body): here they are
        JSON errors like every other, and a range unit other than ``bytes`` is ignored (the whole
        file, 200), as RFC 9110 §14.2 requires of a server that does not know the unit."""
        scope = _without_foreign_range(scope)
        error = self._range_error(scope)
        if error is not None:
            await _error_response(error)(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    def _range_error(self, scope: Scope) -> ServiceError | None:
        """The error starlette would answer the request's ``Range`` with, if any (its own rules:
        only GETs of a 200 whose ``If-Range``, if any, still matches use the range)."""
        headers = Headers(scope=scope)
        http_range, if_range = headers.get("range"), headers.get("if-range")
        if (http_range is None or self.status_code != 200 or scope["method"].upper() not in ("GET", "HEAD")
                or (if_range is not None and not self._should_use_range(if_range))):
            return None
        size = self.stat_result.st_size
        try:
            self._parse_range_header(http_range, size)
        except MalformedRangeHeader as e:
            return ServiceError(400, "bad_range", f"malformed Range header ({e.content.rstrip('.')}); send "
                                                  f"bytes=FIRST-LAST (FIRST ≤ LAST), bytes=FIRST- or bytes=-SUFFIX")
        except RangeNotSatisfiable:
            return ServiceError(416, "range_not_satisfiable", f"the Range starts beyond the end of the file "
                                                              f"({size} bytes)",
                                headers={"Content-Range": f"bytes */{size}"})
        return None

    @asynccontextmanager
    async def _open_file(self) -> AsyncIterator[anyio.AsyncFile[bytes]]:
        file = anyio.wrap_file(os.fdopen(os.dup(self._fd), "rb"))  # own offset, one per range request
        try:
            yield file
        finally:
            with anyio.CancelScope(shield=True):
                await file.aclose()


def _without_foreign_range(scope: Scope) -> Scope:
    """``scope`` without a ``Range`` header whose unit is not ``bytes`` (``items=0-1``): RFC 9110
    says to ignore it and send the whole representation, where starlette refuses it (400)."""
    ranges = [v for k, v in scope["headers"] if k == b"range"]
    if not ranges:
        return scope
    unit, sep, _ = ranges[0].decode("latin-1").partition("=")
    if not sep or unit.strip().lower() == "bytes":
        return scope  # bytes, or no unit at all (malformed: refused as such)
    return {**scope, "headers": [(k, v) for k, v in scope["headers"] if k != b"range"]}


def _job_file(path: Path, media_type: str, filename: str | None = None) -> FileResponse:
    try:
        return _OpenedFile(path, media_type=media_type, filename=filename)
    except FileNotFoundError:
        raise ServiceError(404, "not_found", _DELETED) from None


_DELETED = "the job was deleted (by a DELETE, or as one of the oldest finished jobs)"


def _result_below(path: Path, root: str) -> Response:
    """A job's ``result.json`` with its ``overlay`` link below ``root``. The file is written once,
    by the worker, which knows no request: its link is stored without a prefix.

    The file is sent as it is stored, the prefix inserted at the link, rather than parsed and
    written again: a result may be hundreds of MiB (``max_result_mb``), and each download of it
    behind a proxy's prefix held it three times over (bytes, objects, the new text), for as
    long as the client took to read it."""
    try:
        file = open(path, "rb")  # kept open: the job may be deleted while the body is sent
    except FileNotFoundError:
        raise ServiceError(404, "not_found", _DELETED) from None
    size = os.fstat(file.fileno()).st_size
    # the link is the last string field but one ("seconds" follows it), after the windows
    file.seek(max(0, size - _TAIL_BYTES))
    tail = file.read()
    found = tail.rfind(_LINK)
    at = size if found < 0 else size - len(tail) + found + len(_LINK)
    prefix = json.dumps(root)[1:-1].encode() if found >= 0 else b""

    def body() -> Iterator[bytes]:
        try:
            file.seek(0)
            for end, extra in ((at, prefix), (size, b"")):
                while file.tell() < end:
                    chunk = file.read(min(1 << 20, end - file.tell()))
                    if not chunk:  # shorter than it was: never the case of a file written once
                        return
                    yield chunk
                yield extra
        finally:
            file.close()

    return StreamingResponse(body(), media_type="application/json",
                             headers={"Content-Length": str(size + len(prefix))})


#: bytes at the end of a ``result.json`` searched for its overlay link
_TAIL_BYTES = 4096
_LINK = b'"overlay":"'
