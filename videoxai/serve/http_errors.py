"""Every HTTP error as data: ``{"error": {"code", "message"}}`` with a fitting status, whatever
raised it (a :class:`~.protocol.ServiceError`, a library error, starlette, request validation,
the operating system or a bug), so that a client never has to parse an HTML page or a traceback.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from ..errors import VideoXAIError
from .protocol import ErrorInfo, ErrorResponse, ServiceError, to_service_error

log = logging.getLogger("videoxai.serve")


def _error_response(err: ServiceError) -> JSONResponse:
    body = ErrorResponse(error=ErrorInfo(code=err.code, message=err.message))
    return JSONResponse(body.model_dump(), status_code=err.status, headers=err.headers)


_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 413: "too_large", 415: "unsupported_media_type", 422: "bad_request"}


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app takes on the request's path, sorted (RFC 9110 §15.5.6:
    a 405 lists them all in ``Allow``); empty where no route on the path lists its methods."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        if getattr(route, "methods", None) and route.matches(request.scope)[0] is not Match.NONE:
            methods |= route.methods
    return sorted(methods)


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
        allowed = _allowed_methods(request) if exc.status_code == 405 else []
        if allowed:
            # starlette's Allow named the methods of the first route on the path only: GET and HEAD
            # are two routes here (and DELETE a third), so PUT /api/jobs/ID was told "Allow: HEAD"
            message = f"{request.method} is not allowed here; this address takes {', '.join(allowed)}"
            return _error_response(ServiceError(405, code, message, headers={"Allow": ", ".join(allowed)}))
        if exc.status_code == 404 and exc.detail == "Not Found":  # no route: starlette's words only
            path = request.scope.get("path", "")  # with a proxy's prefix, as the client asked for it
            shown = path if len(path) <= 80 else f"{path[:79]}…"
            message = f"no such address: {shown!r} (the service's addresses are listed at /docs)"
            return _error_response(ServiceError(404, code, message))
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
