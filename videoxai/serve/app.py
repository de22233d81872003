"""The ASGI app: HTTP jobs for uploads, a WebSocket stream and the browser viewer.

>>> import videoxai as vx
>>> from videoxai.serve import create_app, ServeSettings
>>> app = create_app(vx.load_model("demo"), ServeSettings(max_streams=4))
>>> # uvicorn.run(app, host="127.0.0.1", port=8000)  (or: videoxai serve --model demo)

Routes (all ``/api/*`` routes but ``/api/health`` need the API key when one is set):

=======================================  =====================================================
``GET /``                                the viewer (upload a file or stream the camera)
``GET /api/health``                      liveness
``GET /api/info``                        model, methods, limits
``POST /api/jobs``                       upload a video (raw body or multipart ``file``) → 202 job
``GET /api/jobs/{id}``                   job status and progress
``GET /api/jobs/{id}/result``            prediction, temporal scores, compact maps (JSON)
``GET /api/jobs/{id}/overlay.mp4``       the overlay video
``DELETE /api/jobs/{id}``                cancel / delete
``WS /api/stream``                       frames in, explained windows out (``docs/protocol.md``)
=======================================  =====================================================

Every error is ``{"error": {"code", "message"}}`` with a fitting HTTP status.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import weakref
from contextlib import asynccontextmanager, contextmanager, nullcontext
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterator, TypeVar

import anyio
from fastapi import Depends, FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect
from starlette.responses import MalformedRangeHeader, RangeNotSatisfiable
from starlette.types import Receive, Scope, Send

from ..version import __version__
from ..core.folder_lock import FolderLock
from ..core.hosts import HostCheck
from ..core.page_headers import PageHeaders
from ..errors import InputError, VideoXAIError
from ..models.base import VideoModel
from .engine import Engine, check_batch
from .jobs import OVERLAY_NAME, UPLOAD_NAME, JobQueue, check_result_size, check_video, check_work
from .protocol import (ErrorInfo, ErrorResponse, JobRequest, JobResult, JobStatus, ServerInfo, ServiceError,
                       loads_json, to_service_error)
from .settings import ServeSettings
from .stream import AuthWaiters, StreamSession, StreamSlots, authorised, origin_allowed

log = logging.getLogger("videoxai.serve")

STATIC = Path(__file__).resolve().parent / "static"

F = TypeVar("F", bound=Callable[..., Any])

# documents the error body in the OpenAPI schema (/docs)
_RESPONSES: dict[int | str, dict[str, Any]] = {code: {"model": ErrorResponse}
                                               for code in (400, 401, 403, 404, 409, 413, 415, 416, 422, 503,
                                                                            507)}


def create_app(model: VideoModel, settings: ServeSettings | None = None) -> FastAPI:
    """Build the service around a loaded model.

    Args:
        model: the model every request uses (``vx.load_model`` / ``vx.wrap``).
        settings: limits, API key, default method (:class:`ServeSettings`).
    """
    settings = settings or ServeSettings()
    engine = Engine(model, settings.default_method)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own_dir = settings.work_dir is None
        root = Path(tempfile.mkdtemp(prefix="videoxai-serve-")) if own_dir else Path(settings.work_dir)
        # a second server on a work dir would take this one's running jobs for ones a crash left
        # behind (failing them, deleting their uploads): one server per work dir
        with nullcontext() if own_dir else work_dir_lock(root):
            engine.start()  # the model thread, again if a previous server of this app closed it
            jobs = JobQueue(engine, settings, root, durable=not own_dir)
            jobs.start()
            app.state.jobs = jobs
            try:
                yield
            finally:
                await asyncio.to_thread(jobs.stop)
                engine.close()
                if own_dir:
                    shutil.rmtree(root, ignore_errors=True)

    app = FastAPI(title="videoxai", version=__version__, lifespan=lifespan,
                  summary="Explanations of a video classifier for uploads and live streams.")
    app.state.engine, app.state.settings = engine, settings
    app.state.slots = StreamSlots(settings.max_streams)
    app.state.auth_waiters = AuthWaiters(settings.max_pending_connections)
    app.state.uploads = 0  # uploads being received (max_uploads)
    _install_error_handlers(app)
    app.add_middleware(HostCheck, allowed_hosts=settings.allowed_hosts)
    app.add_middleware(PageHeaders)  # the viewer's Content-Security-Policy; nosniff on every answer

    def require_key(request: Request) -> None:
        if not authorised(settings, request.headers.get("x-api-key"), request.headers.get("authorization")):
            # the query form (?api_key=) is the WebSocket's legacy one only: say so, rather than
            # "missing or wrong" to a client that sent the right key in the wrong place
            where = (" (the api_key query parameter is read on the WebSocket only: URLs end up in logs)"
                     if "api_key" in request.query_params else "")
            raise ServiceError(401, "unauthorized", f"missing or wrong API key (header X-API-Key or Authorization: "
                                                    f"Bearer){where}", headers={"WWW-Authenticate": "Bearer"})

    def require_origin(request: Request) -> None:
        # a page of another site may POST a multipart form here without asking first (a "simple"
        # cross-origin request): the browser only hides the answer, the upload is explained all
        # the same. Streams check their Origin the same way.
        if not origin_allowed(settings, request.headers.get("origin"), request.headers.get("host")):
            raise ServiceError(403, "forbidden_origin", "this server does not accept requests that change its "
                                                        "state from pages of other sites (Origin not allowed)")

    def jobs_of(request: Request) -> JobQueue:
        return request.app.state.jobs

    get = _get_and_head(app)

    @get("/", include_in_schema=False)
    async def viewer() -> FileResponse:
        return FileResponse(STATIC / "viewer.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @get("/api/health")
    async def health() -> dict:
        return {"status": "ok"}

    @get("/api/info", response_model=ServerInfo, dependencies=[Depends(require_key)], responses=_RESPONSES)
    async def info() -> ServerInfo:
        return ServerInfo(model=engine.info(), methods=engine.methods(), default_method=engine.default_method,
                          limits=settings.public(), version=__version__)

    @app.post("/api/jobs", status_code=202, response_model=JobStatus,
              dependencies=[Depends(require_key), Depends(require_origin)],
              responses=_RESPONSES)
    async def create_job(request: Request) -> JobStatus | Response:
        """Upload a video: the raw body (options as query parameters) or a multipart form with a
        ``file`` field (options as form fields or query parameters)."""
        jobs = jobs_of(request)
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > settings.max_upload_bytes:
            raise _too_big(settings)
        if app.state.uploads >= settings.max_uploads:
            raise ServiceError(503, "busy", f"{app.state.uploads} uploads are in progress, the server's limit; try "
                                            "again later", headers={"Retry-After": "5"})
        job_id, folder = jobs.new_dir()
        app.state.uploads += 1  # the event loop's only: no lock
        try:
            params = await _receive_upload(request, folder / UPLOAD_NAME, settings)
            job_request = _job_request(params)
            # unknown methods, unusable options and targets fail now, not minutes later in the queue
            spec = await asyncio.to_thread(engine.prepare, job_request.method, job_request.options,
                                           job_request.target, job_request.maps,
                                           job_request.map_size or settings.map_size, job_request.map_dtype)
            check_batch(spec, settings.max_batch_size)
            video = await asyncio.to_thread(check_video, folder / UPLOAD_NAME, settings)
            check_work(spec, video, job_request, engine.model.num_frames, settings)
            check_result_size(spec, video, job_request, engine.model.num_frames, engine.model.input_size, settings)
            job = jobs.submit(job_id, folder, job_request, video)
        except ClientDisconnect:  # the client left mid-upload: nobody to answer
            jobs.discard(folder)
            return Response(status_code=400)
        except BaseException:
            jobs.discard(folder)
            raise
        finally:
            app.state.uploads -= 1
        return job.status(_jobs_path(request))

    @get("/api/jobs/{job_id}", response_model=JobStatus, dependencies=[Depends(require_key)],
             responses=_RESPONSES)
    async def job_status(job_id: str, request: Request) -> JobStatus:
        return jobs_of(request).status(job_id, _jobs_path(request))

    # players and download tools ask for a file's size and type with HEAD before fetching it
    @get("/api/jobs/{job_id}/result", response_model=JobResult,
                   dependencies=[Depends(require_key)], responses=_RESPONSES)
    async def job_result(job_id: str, request: Request) -> Response:
        job = _finished(jobs_of(request), job_id)
        if _root_path(request):
            return await asyncio.to_thread(_result_below, job.result_path, _root_path(request))
        return _job_file(job.result_path, media_type="application/json")

    @get(f"/api/jobs/{{job_id}}/{OVERLAY_NAME}", dependencies=[Depends(require_key)],
                   responses=_RESPONSES, response_class=FileResponse)
    async def job_overlay(job_id: str, request: Request) -> FileResponse:
        job = _finished(jobs_of(request), job_id)
        if not job.overlay_path.is_file():
            raise ServiceError(404, "not_found", "this job has no overlay video (it was submitted with overlay=false)")
        return _job_file(job.overlay_path, media_type="video/mp4", filename=f"{job_id}-overlay.mp4")

    @app.delete("/api/jobs/{job_id}", status_code=204, dependencies=[Depends(require_key), Depends(require_origin)],
                responses=_RESPONSES)
    async def delete_job(job_id: str, request: Request) -> Response:
        jobs_of(request).delete(job_id)
        return Response(status_code=204)

    @get("/api/stream", include_in_schema=False)
    async def stream_over_http(request: Request) -> None:
        # a plain GET of the stream (curl, a browser's address bar) was a bare 404 'Not Found'; behind
        # a proxy's prefix the address it names has the prefix too (/api/stream alone is not this app)
        path = f"{_root_path(request)}/api/stream"
        raise ServiceError(426, "websocket_required", f"{path} is a WebSocket endpoint: connect to "
                                                      f"ws://HOST:PORT{path} (wss:// behind TLS; docs/protocol.md, "
                                                      "section 4)", headers={"Upgrade": "websocket"})

    @app.websocket("/api/stream")
    async def stream(ws: WebSocket) -> None:
        await StreamSession(ws, engine, settings, app.state.slots, app.state.auth_waiters).run()

    return app


def _get_and_head(app: FastAPI) -> Callable[..., Callable[[F], F]]:
    """``app.get`` that also routes HEAD to the function (RFC 9110 §9.1: uptime monitors and
    ``curl -I`` ask with HEAD, and a 405 reads as a server that is down). The HEAD route stays out
    of the OpenAPI schema, where it would repeat the GET's operation id."""
    def route(path: str, **kwargs: Any) -> Callable[[F], F]:
        def register(fn: F) -> F:
            app.head(path, **{**kwargs, "include_in_schema": False})(fn)
            return app.get(path, **kwargs)(fn)
        return register
    return route


# -- uploads -------------------------------------------------------------------------------------


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


def _too_big(settings: ServeSettings) -> ServiceError:
    return ServiceError(413, "upload_too_large", f"the upload exceeds the server's limit of "
                                                 f"{settings.max_upload_mb:g} MiB")


async def _receive_upload(request: Request, dest: Path, settings: ServeSettings) -> dict[str, str]:
    """Write the uploaded video to ``dest``; return the job's parameters (query + form fields)."""
    params = dict(request.query_params)
    body = _limited(request, settings)
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        try:
            form = await MultiPartParser(request.headers, body, max_files=1, max_fields=32,
                                         max_part_size=64 * 1024).parse()
        except MultiPartException as e:
            raise ServiceError(400, "bad_upload", f"malformed multipart upload: {e.message}") from None
        try:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise ServiceError(400, "bad_upload", "the multipart upload has no 'file' field")
            with dest.open("wb") as out:
                await asyncio.to_thread(shutil.copyfileobj, upload.file, out, 1 << 20)
            params.update({k: v for k, v in form.multi_items() if isinstance(v, str)})
        finally:
            await form.close()
    else:
        with dest.open("wb") as out:
            async for chunk in body:
                out.write(chunk)
    if dest.stat().st_size == 0:
        raise ServiceError(400, "bad_upload", "the upload is empty")
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


@contextmanager
def work_dir_lock(work_dir: str | Path) -> Iterator[None]:
    """The lock one server holds on its ``work_dir`` while it runs (the folder is created).

    Raises:
        InputError: another server holds it, or its file system has no locks (Lustre mounted
            without ``-o flock`` answers ENOSYS: an OSError traceback at startup before).
    """
    Path(work_dir).mkdir(parents=True, exist_ok=True)
    lock = FolderLock(work_dir, "another videoxai server", "stop it, or give this one another --work-dir")
    try:
        lock.__enter__()
    except OSError as e:
        raise InputError(f"cannot lock the work dir {work_dir} ({e.strerror or e}): one server per work dir "
                         "cannot be ensured there; give a --work-dir on a local disk") from None
    try:
        yield
    finally:
        lock.__exit__(None, None, None)


def _job_file(path: Path, media_type: str, filename: str | None = None) -> FileResponse:
    try:
        return _OpenedFile(path, media_type=media_type, filename=filename)
    except FileNotFoundError:
        raise ServiceError(404, "not_found", _DELETED) from None


_DELETED = "the job was deleted (by a DELETE, or as one of the oldest finished jobs)"


def _root_path(request: Request) -> str:
    """The path prefix the app is served under (ASGI ``root_path``: uvicorn ``--root-path /vx``
    behind a reverse proxy), ``""`` when none."""
    return str(request.scope.get("root_path") or "").rstrip("/")


def _jobs_path(request: Request) -> str:
    """Where the job routes are as the client sees them. Links without the prefix sent a client
    behind a proxy that serves the app under ``/vx`` to ``/api/jobs/…`` — another site, or a 404."""
    return f"{_root_path(request)}/api/jobs"


def _result_below(path: Path, root: str) -> Response:
    """A job's ``result.json`` with its ``overlay`` link below ``root``. The file is written once,
    by the worker, which knows no request: its link is stored without a prefix."""
    try:
        result = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise ServiceError(404, "not_found", _DELETED) from None
    if result.get("overlay"):
        result["overlay"] = root + result["overlay"]
    return Response(json.dumps(result, separators=(",", ":")), media_type="application/json")


# -- errors as data --------------------------------------------------------------------------------


def _error_response(err: ServiceError) -> JSONResponse:
    body = ErrorResponse(error=ErrorInfo(code=err.code, message=err.message))
    return JSONResponse(body.model_dump(), status_code=err.status, headers=err.headers)


_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 413: "too_large", 415: "unsupported_media_type", 422: "bad_request"}


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return _error_response(exc)

    @app.exception_handler(VideoXAIError)
    async def library_error(request: Request, exc: VideoXAIError) -> JSONResponse:
        return _error_response(to_service_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return _error_response(ServiceError(exc.status_code, code, str(exc.detail), headers=exc.headers))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3]]
        return _error_response(ServiceError(422, "bad_request", "; ".join(parts)))

    @app.exception_handler(OSError)
    async def os_error(request: Request, exc: OSError) -> JSONResponse:
        # here rather than in the catch-all below, which answers and then re-raises: uvicorn logs
        # that as a crash and drops the connection under a client about to reuse it
        err = to_service_error(exc)
        if err.code == "disk_full":
            log.error("%s %s: the disk is full (%s)", request.method, request.url.path, exc)
        else:
            log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return _error_response(err)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return _error_response(to_service_error(exc))


# -- running ---------------------------------------------------------------------------------------


def uvicorn_config(app: FastAPI, host: str = "127.0.0.1", port: int = 8000, **kwargs):
    """A :class:`uvicorn.Config` whose transport limits match the app's settings.

    The WebSocket message limit is one raw frame at the pixel limit (uvicorn closes a stream
    that sends more with code 1009), and uvicorn queues few messages per connection, so a client
    that sends faster than the server reads is slowed by TCP, not buffered in memory.
    """
    import uvicorn

    from .transport import install_log_redaction, protocol_classes

    settings: ServeSettings = app.state.settings
    http, ws = protocol_classes(settings)
    # limit_concurrency counts open connections: room for those still sending headers (bounded by
    # the HTTP protocol), the streams still to authenticate (bounded by AuthWaiters), every stream
    # and a margin of requests
    options = dict(ws_max_size=settings.max_message_bytes, ws_max_queue=4, http=http, ws=ws,
                   limit_concurrency=2 * settings.max_pending_connections + 4 * settings.max_streams + 64,
                   timeout_keep_alive=5, h11_max_incomplete_event_size=settings.max_header_bytes,
                   timeout_graceful_shutdown=settings.shutdown_timeout_s, log_level="warning")
    options.update(kwargs)
    config = uvicorn.Config(app, host=host, port=port, **options)
    install_log_redaction()  # after Config, which (re)configures uvicorn's loggers
    return config


class BackgroundServer:
    """Run the app with uvicorn on a background thread (notebooks, tests, benchmarks).

    >>> with BackgroundServer(create_app(model)) as server:
    ...     print(server.url)          # http://127.0.0.1:<free port>

    Args:
        app: the app from :func:`create_app`.
        host: interface (loopback by default).
        port: 0 picks a free port.
        **kwargs: more :class:`uvicorn.Config` options.
    """

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0, **kwargs) -> None:
        import uvicorn

        # uvicorn installs signal handlers only on the main thread, so a background one is safe
        self.server = uvicorn.Server(uvicorn_config(app, host=host, port=port, **kwargs))
        self._thread: threading.Thread | None = None
        self.url = ""

    def __enter__(self) -> "BackgroundServer":
        self._thread = threading.Thread(target=self.server.run, name="videoxai-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start (is the port free?)")
            time.sleep(0.02)
        sock = self.server.servers[0].sockets[0]
        host, port = sock.getsockname()[:2]
        self.url = f"http://{host if ':' not in host else f'[{host}]'}:{port}"
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=30)
