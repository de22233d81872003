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
import logging
import shutil
import tempfile
from contextlib import asynccontextmanager, nullcontext
from pathlib import Path
from typing import Any, AsyncIterator, Callable, TypeVar

from fastapi import Depends, FastAPI, Request, WebSocket
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.requests import ClientDisconnect

from ..version import __version__
from ..errors import VideoReadError
from ..core.hosts import HostCheck
from ..core.page_headers import PageHeaders
from ..models.base import VideoModel
from .access import AuthWaiters, StreamSlots, authorised, client_key, origin_allowed
from .client_requests import ClientRequests
from .engine import Engine, check_batch
from .http_errors import _install_error_handlers
from .job_files import _finished, _job_file, _result_below
from .jobs import OVERLAY_NAME, UPLOAD_NAME, JobQueue, check_result_size, check_video, check_work
from .protocol import ErrorResponse, JobResult, JobStatus, ServerInfo, ServiceError
from .server import work_dir_lock
from .settings import ServeSettings
from .stream import StreamSession
from .uploads import _as_form_hint, _job_request, _receive_upload, _too_big

log = logging.getLogger("videoxai.serve")

STATIC = Path(__file__).resolve().parent / "static"

F = TypeVar("F", bound=Callable[..., Any])

# documents the error body in the OpenAPI schema (/docs)
_RESPONSES: dict[int | str, dict[str, Any]] = {code: {"model": ErrorResponse}
                                               for code in (400, 401, 403, 404, 409, 413, 415, 416, 422, 429, 503,
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
    app.state.slots = StreamSlots(settings.max_streams, settings.max_streams_per_client)
    app.state.auth_waiters = AuthWaiters(settings.max_pending_connections)
    app.state.uploads = 0  # uploads being received (max_uploads)
    app.state.uploads_by_client: dict[str | None, int] = {}  # the same per client (access.client_key)
    _install_error_handlers(app)
    app.add_middleware(ClientRequests, limit=settings.max_requests_per_client)
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
        coding = request.headers.get("content-encoding", "identity").strip().lower()
        if coding not in ("", "identity"):
            # a gzip-compressed video was taken as it came, and refused as "not a readable video
            # file" (RFC 9110 §15.5.16: 415, naming the codings taken)
            raise ServiceError(415, "unsupported_encoding", f"the upload is sent with Content-Encoding: {coding}; "
                                                            "send the video file as it is (no content coding)",
                               headers={"Accept-Encoding": "identity"})
        if app.state.uploads >= settings.max_uploads:
            raise ServiceError(503, "busy", f"{app.state.uploads} uploads are in progress, the server's limit; try "
                                            "again later", headers={"Retry-After": "5"})
        client = client_key(request.client.host if request.client else None)
        by_client = app.state.uploads_by_client
        if by_client.get(client, 0) >= settings.max_uploads_per_client:
            # one client's slow uploads took every upload slot for as long as they kept the minimum rate
            raise ServiceError(429, "client_limit", f"this client is already sending {by_client[client]} uploads, "
                                                    "the server's limit per client; wait for one to finish",
                               headers={"Retry-After": "5"})
        jobs.check_room(client)
        job_id, folder = jobs.new_dir()
        app.state.uploads += 1  # the event loop's only: no lock
        by_client[client] = by_client.get(client, 0) + 1
        try:
            params = await _receive_upload(request, folder / UPLOAD_NAME, settings)
            job_request = _job_request(params)
            # unknown methods, unusable options and targets fail now, not minutes later in the queue
            spec = await asyncio.to_thread(engine.prepare, job_request.method, job_request.options,
                                           job_request.target, job_request.maps,
                                           job_request.map_size or settings.map_size, job_request.map_dtype)
            check_batch(spec, settings.max_batch_size)
            try:
                video = await asyncio.to_thread(check_video, folder / UPLOAD_NAME, settings)
            except VideoReadError as e:
                raise VideoReadError(f"{e}{_as_form_hint(request.headers.get('content-type'))}") from None
            check_work(spec, video, job_request, engine.model.num_frames, settings)
            check_result_size(spec, video, job_request, engine.model.num_frames, engine.model.input_size, settings)
            job = jobs.submit(job_id, folder, job_request, video, client)
        except ClientDisconnect:  # the client left mid-upload: nobody to answer
            jobs.discard(folder)
            return Response(status_code=400)
        except BaseException:
            jobs.discard(folder)
            raise
        finally:
            app.state.uploads -= 1
            by_client[client] -= 1
            if not by_client[client]:
                del by_client[client]
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


def _root_path(request: Request) -> str:
    """The path prefix the app is served under (ASGI ``root_path``: uvicorn ``--root-path /vx``
    behind a reverse proxy), ``""`` when none."""
    return str(request.scope.get("root_path") or "").rstrip("/")


def _jobs_path(request: Request) -> str:
    """Where the job routes are as the client sees them. Links without the prefix sent a client
    behind a proxy that serves the app under ``/vx`` to ``/api/jobs/…`` — another site, or a 404."""
    return f"{_root_path(request)}/api/jobs"
