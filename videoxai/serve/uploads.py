"""An upload received into a job's folder, and its query and form fields read as a job request.

The body is checked while it arrives: past the size limit it is refused at once, and a client
that stalls or trickles (holding a connection for as long as it likes) is cut off, rather than
any of it being buffered in memory first.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any, AsyncIterator, Iterable

from fastapi import Request
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from .protocol import MAX_JSON_BYTES, JobRequest, ServiceError, loads_json
from .settings import ServeSettings


async def _limited(request: Request, settings: ServeSettings) -> AsyncIterator[bytes]:
    """The request body, failing with 413 as soon as it exceeds the upload limit, and with 408
    when the client sends nothing for ``body_timeout_s`` or, after that long, averages less than
    ``min_upload_rate`` (a stalled or trickling upload holds a connection)."""
    size = 0
    chunks = request.stream().__aiter__()
    loop = asyncio.get_running_loop()
    began, grace, rate = loop.time(), settings.body_timeout_s, settings.min_upload_rate

    def too_slow() -> ServiceError:
        return ServiceError(408, "timeout", f"the upload is too slow: {size} bytes in {loop.time() - began:.0f} s; "
                                            f"the server takes uploads of at least {rate:g} bytes/s",
                            headers={"Connection": "close"})

    while True:
        # the next byte is due within body_timeout_s, and by the time the average rate needs it (a
        # moment at least, to take what has arrived already)
        due = max(0.05, began + grace + size / rate - loop.time()) if rate > 0 else grace
        try:
            chunk = await asyncio.wait_for(chunks.__anext__(), timeout=min(grace, due))
        except StopAsyncIteration:
            return
        except asyncio.TimeoutError:
            if due < grace:
                raise too_slow() from None
            raise ServiceError(408, "timeout", f"the upload stalled: no data for {settings.body_timeout_s:g} s",
                               headers={"Connection": "close"}) from None
        size += len(chunk)
        if rate > 0 and size < rate * (loop.time() - began - grace):  # bytes that come, but too few
            raise too_slow()
        if size > settings.max_upload_bytes:
            raise _too_big(settings)
        yield chunk


def _as_form_hint(content_type: str | None) -> str:
    """What to add to "not a readable video file" for an upload sent as a URL-encoded form: what
    ``curl -d @clip.mp4`` sends, having dropped every line-break byte of the file (``""`` for other
    uploads, whose bytes are as the client sent them)."""
    if (content_type or "").split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        return ""
    return (" (it came as a URL-encoded form, as curl -d sends one after dropping the file's line-break "
            "bytes: send it with curl --data-binary @clip.mp4 or -F file=@clip.mp4)")


def _too_big(settings: ServeSettings) -> ServiceError:
    return ServiceError(413, "upload_too_large", f"the upload exceeds the server's limit of "
                                                 f"{settings.max_upload_mb:g} MiB")


async def _receive_upload(request: Request, dest: Path, settings: ServeSettings) -> dict[str, str]:
    """Write the uploaded video to ``dest``; return the job's parameters (query + form fields)."""
    params = _once_each(request.query_params.multi_items())  # before the body: refused at once
    body = _limited(request, settings)
    # media types are case-insensitive (RFC 9110 §8.3.1): Multipart/Form-Data was taken for a raw
    # body, and the whole form, boundaries and all, for the video
    if request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        parser = _WholeMultiPartParser(request.headers, body, max_files=1, max_fields=32, max_part_size=64 * 1024)
        try:
            form = await parser.parse()
        except MultiPartException as e:
            # a part without a filename is a form field, and fields are small: such a part is
            # most likely the video sent without one
            hint = f" ({_NO_FILENAME})" if e.message.startswith("Part exceeded maximum size") else ""
            field = getattr(getattr(parser, "_current_part", None), "field_name", "")
            if hint and field in JobRequest.model_fields:
                # options of 70 KB were told to send "the video as a file, with a filename"
                hint = (f" (the form field {field!r} is over {parser.max_part_size // 1024} KiB; the job's fields "
                        f"are short text, its options at most {MAX_JSON_BYTES // 1024} KiB of JSON)")
            if e.message.startswith("Too many files"):  # curl -F options=@opts.json: a second file part
                hint = (" (the form takes one file, the video as 'file'; send the other fields as text: "
                        "curl -F 'options=<opts.json' reads a file into a text field, -F options=@opts.json "
                        "sends it as a file)")
            raise ServiceError(400, "bad_upload", f"malformed multipart upload: {e.message}{hint}") from None
        try:
            if not parser.ended:
                raise ServiceError(400, "bad_upload", "malformed multipart upload: the body ends before its closing "
                                                      "boundary (was the upload cut short?)")
            upload = form.get("file")
            if isinstance(upload, str):
                raise ServiceError(400, "bad_upload", f"the multipart upload's 'file' field is not a file: "
                                                      f"{_NO_FILENAME}")
            if not isinstance(upload, UploadFile):
                raise ServiceError(400, "bad_upload", "the multipart upload has no 'file' field")
            params = _once_each([*params.items(), *((k, v) for k, v in form.multi_items() if isinstance(v, str))])
            with dest.open("wb") as out:
                await asyncio.to_thread(shutil.copyfileobj, upload.file, out, 1 << 20)
        finally:
            await form.close()
    else:
        with dest.open("wb") as out:
            async for chunk in body:
                out.write(chunk)
    if dest.stat().st_size == 0:
        raise ServiceError(400, "bad_upload", "the upload is empty")
    return params


_NO_FILENAME = ("a part without a filename is read as a form field: send the video as a file, with a filename "
                "(curl -F file=@clip.mp4)")


class _WholeMultiPartParser(MultiPartParser):
    """starlette's multipart parser, noting whether the body reached its closing boundary.

    starlette returns the parts complete so far from a body cut short (it does not check), so
    such an upload was refused as having "no 'file' field", or, cut after the file, explained
    without the form fields that followed it.
    """

    ended = False

    def on_end(self) -> None:  # python-multipart calls it at the closing boundary only
        self.ended = True


def _once_each(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Parameters as a dict, refusing (422) one given twice: the last one was taken silently, so
    ``maps=spatial&maps=raw`` asked for both maps and got the raw one, and a form field overrode
    the query's."""
    params: dict[str, str] = {}
    for key, value in items:
        if key in params:
            several = " (several maps: maps=spatial,raw)" if key == "maps" else ""
            raise ServiceError(422, "bad_request", f"{key}: given more than once (in the query string or the form); "
                                                   f"give each parameter once{several}")
        params[key] = value
    return params


def _job_request(params: dict[str, str]) -> JobRequest:
    """Query/form strings → a validated :class:`JobRequest`."""
    data: dict[str, Any] = {k: v for k, v in params.items() if k != "api_key"}
    if "options" in data:
        data["options"] = loads_json(data["options"], "options")
        if not isinstance(data["options"], dict):
            raise ServiceError(400, "bad_request", "options must be a JSON object, e.g. {\"n_samples\": 500}")
    if "maps" in data:
        data["maps"] = [m.strip() for m in data["maps"].split(",") if m.strip()]
    try:
        req = JobRequest.model_validate(data)
    except ValidationError as e:
        parts = [f"{'.'.join(map(str, err['loc'])) or 'request'}: {err['msg']}" for err in e.errors()[:3]]
        raise ServiceError(422, "bad_request", "; ".join(parts)) from None
    if req.stride is not None and req.sampling != "windows":
        # one window sampled over the whole video has no stride: it would be ignored silently
        raise ServiceError(422, "bad_request", f"stride applies to sampling=windows (sliding windows), not "
                                               f"sampling={req.sampling}; drop it or add sampling=windows")
    return req
