"""The temporal-attention editor: a small FastAPI app over an edit set.

``videoxai stabn edit EDITS`` serves it; a person opens the page, picks a collected clip, sees
its frames with the model's current temporal attention (a colour bar and a value above each
frame; optionally the spatial attention over the frame), gives every frame a level (1.0 / 0.5 /
0.0) by clicking, fills gaps between equal levels, previews how the edit changes the prediction,
and saves the edit as ``edits/<key>.json``. ``collection.json`` is read again when it changes
(``videoxai stabn collect`` into the edit set while the editor runs), and the page asks for the
list again, so clips collected meanwhile are listed without a restart.

API (JSON; errors are ``{"error": message}`` with a 4xx status):

* ``GET  /api/collection`` — labels, frames per clip, whether preview is available, the clips;
* ``GET  /api/clips/{key}`` — one clip: label, prediction, temporal attention, saved edit (or
  ``edit_error``: why the saved edit file cannot be read; saving replaces it);
* ``GET  /api/clips/{key}/frames/{t}.png?overlay=spatial`` — a frame (with the spatial map);
* ``PUT  /api/clips/{key}/edit`` ``{"levels": [1.0, 0.5, …], "version": …}`` — save (every frame
  needs a level); ``version``, the clip's ``version`` as read (``null``: no edit then), makes the
  save refused (409) when someone else saved the clip since, instead of overwriting their edit;
* ``DELETE /api/clips/{key}/edit?version=…`` — remove the saved edit; ``version``, the clip's
  ``version`` as read, makes the delete refused (409) when someone else saved the clip since,
  instead of removing their edit (left out: whatever is saved is removed); a body is refused;
* ``POST /api/clips/{key}/fill`` ``{"levels": [1.0, null, null, 1.0, …]}`` — unset frames between
  two frames of the same level get that level (:func:`~videoxai.stabn.knowledge.fill_between`);
* ``POST /api/clips/{key}/preview`` ``{"levels": [1.0, null, …]}`` — prediction with the model's
  temporal attention and with the edit in its place (unset frames keep the model's value).
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
from pathlib import Path
from typing import Literal

import numpy as np
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field, StrictFloat
from starlette.exceptions import HTTPException as StarletteHTTPException

from ...errors import InputError, VideoXAIError
from ...core.hosts import HostCheck
from ...core.page_headers import PageHeaders
from ..knowledge import COLLECTION, LEVELS, EditSet, UnknownClipError, check_collection, fill_between, preview
from ..model import STABNVideoModel

STATIC = Path(__file__).resolve().parent / "static"
#: the largest request body read: an edit of a few thousand frames is tens of kilobytes
MAX_BODY_BYTES = 1 << 20


class ClipSummary(BaseModel):
    key: str
    id: str
    label: int
    label_name: str
    predicted: int
    predicted_name: str
    attention: list[float]
    edited: bool


class ClipDetail(ClipSummary):
    levels: list[float] | None = Field(None, description="the saved edit, if any")
    edit_error: str | None = Field(None, description="why the saved edit cannot be read (saving replaces it)")
    version: str | None = Field(None, description="the saved edit file's version (null: none), for a save to name")
    frame_size: tuple[int, int]


class Collection(BaseModel):
    model: str
    data: str
    split: str
    labels: list[str]
    num_frames: int
    levels: list[float]
    preview: bool
    clips: list[ClipSummary]


class EditBody(BaseModel):
    # strict: JSON true or "1" is not a level (pydantic would coerce both to 1.0)
    levels: list[StrictFloat | None] = Field(..., description="one level per frame: 1.0, 0.5, 0.0 (or null: unset)")


class SaveBody(EditBody):
    version: str | None = Field(None, description="the version of the clip's edit this save replaces, as read "
                                "(null: none was saved); left out, the save replaces whatever is saved")


class SavedEdit(BaseModel):
    key: str
    id: str
    levels: list[float]
    saved: str | None
    version: str


class EditConflictError(InputError):
    """A save or delete that names another version of the clip's edit than the one saved (409)."""

    def __init__(self, key: str, now: str | None, named: str | None, action: str) -> None:
        super().__init__(
            f"clip {key} was saved by someone else since it was opened (its edit is now "
            f"{'version ' + now if now else 'deleted'}, not {(named or 'none')[:16]}): open the clip again to see "
            f"that edit, then {action}")


class Outcome(BaseModel):
    predicted: int
    label: str
    probability: float
    probs: list[float]
    temporal: list[float]


class Preview(BaseModel):
    original: Outcome
    edited: Outcome


def create_app(edit_set: EditSet | str | Path, model: STABNVideoModel | None = None,
               allowed_hosts: tuple[str, ...] = ()) -> FastAPI:
    """The editor for ``edit_set``; ``model`` (the collection's model) enables the preview.

    ``allowed_hosts``: ``Host`` names it answers to besides IP addresses and ``localhost`` (a
    page re-pointed at the editor by DNS rebinding could otherwise rewrite the edits;
    :mod:`videoxai.core.hosts`).
    """
    current = _Reread(edit_set if isinstance(edit_set, EditSet) else EditSet.open(edit_set), model)
    app = FastAPI(title="videoxai ST-ABN temporal-attention editor")
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
    # its errors are {"error": message}, and its name is the one it listens on (--host)
    app.add_middleware(HostCheck, allowed_hosts=allowed_hosts, error_body=lambda message: {"error": message},
                       remedy="start the editor with --host NAME if that is its name")
    app.add_middleware(PageHeaders)  # the page's Content-Security-Policy; nosniff on every answer
    lock = threading.Lock()  # one model forward at a time; edits are written atomically anyway
    saving = threading.Lock()  # a save's version check and its write, as one (in-process; es.writing(): across)

    @app.exception_handler(VideoXAIError)
    async def _user_error(request: Request, exc: VideoXAIError) -> JSONResponse:
        status = 404 if isinstance(exc, UnknownClipError) else 409 if isinstance(exc, EditConflictError) else 422
        return JSONResponse({"error": str(exc)}, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # routing's own answers (no such path, wrong method) in the API's error shape, not {"detail": …}
        detail = exc.detail
        if exc.status_code == 400 and exc.__cause__ is not None:
            # JSON that json.loads gives up on but not as a JSONDecodeError: nested too deeply
            # (RecursionError), not UTF-8, an integer of thousands of digits — "There was an error
            # parsing the body" said none of it
            detail = f"the request body cannot be read as JSON ({type(exc.__cause__).__name__}: {exc.__cause__})"
        return JSONResponse({"error": f"{detail}: {request.method} {request.url.path}"},
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        loc, msg = tuple(first.get("loc", ())), first.get("msg", "invalid request")
        if first.get("type") == "json_invalid":  # loc is ("body", character): "14: JSON decode error"
            error = f"the request body is not JSON: {first.get('ctx', {}).get('error', msg)} at character {loc[-1]}"
        elif loc == ("body",):  # no body, one that is not an object, or not sent as JSON: ": Field required"
            kind = request.headers.get("content-type") or "no Content-Type"
            error = (f"the request body must be a JSON object {{\"levels\": [...]}} sent as application/json "
                     f"(got {kind}): {msg}")
        else:
            error = f"{'.'.join(str(p) for p in loc if p != 'body')}: {msg}"
        return JSONResponse({"error": error}, status_code=422)

    @app.exception_handler(OSError)
    async def _os_error(request: Request, exc: OSError) -> JSONResponse:
        # the edit set's files on a read-only or full disk, an edits/ that is not a directory: a
        # bare "Internal Server Error", which the page showed without its cause
        return JSONResponse({"error": f"{request.method} {request.url.path}: {exc}"}, status_code=500)

    def get(path: str, **kwargs):
        """``app.get`` that answers HEAD too, as the service's pages do (``curl -I`` and uptime
        monitors ask with HEAD; a 405 reads as an editor that is down); HEAD stays out of the schema."""
        def register(fn):
            app.get(path, **kwargs)(fn)  # first: a 405's Allow names the first route of the path
            return app.head(path, **{**kwargs, "include_in_schema": False})(fn)
        return register

    def version(es: EditSet, key: str) -> str | None:
        """A digest of clip ``key``'s edit file (``None``: none saved, or none readable)."""
        try:
            return hashlib.sha256(es.edit_path(key).read_bytes()).hexdigest()[:16]
        except OSError:
            return None

    def summary(es: EditSet, it) -> dict:
        # a label the collection cannot name is a JSON error naming the clip (not an IndexError)
        return dict(key=it.key, id=it.id, label=it.label, label_name=es.class_name(it, "label"),
                    predicted=it.predicted, predicted_name=es.class_name(it, "predicted"),
                    attention=it.attention, edited=es.edit_path(it.key).is_file())

    @get("/api/collection", response_model=Collection)
    def collection() -> dict:
        es = current()
        return dict(model=es.model, data=es.data, split=es.split, labels=es.labels, num_frames=es.num_frames,
                    levels=list(LEVELS), preview=current.preview_error is None, clips=[summary(es, it) for it in es.items])

    @get("/api/clips/{key}", response_model=ClipDetail)
    def clip(key: str) -> dict:
        es = current()
        it = es.item(key)
        frames, _ = es.clip(key)
        # a damaged edit file (cut short, another clip's, the wrong length) is said, and the clip
        # still opens: saving a new edit replaces the file (refusing the clip left no way to)
        for _ in range(3):  # the version of the levels read: not one saved in between
            edit, error, seen = None, None, version(es, key)
            try:
                edit = es.edit(key)
            except InputError as e:
                error = str(e)
            if version(es, key) == seen:
                break
        return dict(**summary(es, it), levels=edit.levels if edit else None, edit_error=error, version=seen,
                    frame_size=frames.shape[1:3])

    @get("/api/clips/{key}/frames/{t}.png")
    def frame(key: str, t: int, overlay: Literal["none", "spatial"] = "none") -> Response:
        frames, spatial = current().clip(key)
        if not 0 <= t < len(frames):
            raise InputError(f"frame {t} out of range: clip {key} has {len(frames)} frames")
        img = frames[t]
        if overlay == "spatial":
            img = _blend(img, spatial[t])
        return Response(_png(img), media_type="image/png", headers={"Cache-Control": "no-store"})

    @app.put("/api/clips/{key}/edit", response_model=SavedEdit)
    def save(key: str, body: SaveBody) -> dict:
        # two people on one clip: the second save overwrote the first one's edit without a word
        # (two editors on the edit set: the threading lock is one process's, es.writing() all's)
        es = current()
        with saving, es.writing():
            if "version" in body.model_fields_set and (now := version(es, key)) != body.version:
                raise EditConflictError(key, now, body.version, "save")
            edit = es.save_edit(key, body.levels)
            return dict(key=key, id=edit.id, levels=edit.levels, saved=edit.saved, version=version(es, key))

    @app.delete("/api/clips/{key}/edit", dependencies=[Depends(_no_body)])
    def delete(key: str, seen: str | None = Query(None, alias="version", description="the version of the "
               "clip's edit this delete removes, as read; left out, whatever is saved is removed")) -> dict:
        # a page opened before another tab saved removed that tab's edit without a word, as a
        # save over it did; an edit gone already is no conflict (nobody's edit is lost)
        es = current()
        with saving, es.writing():
            if seen is not None and (now := version(es, key)) not in (None, seen):
                raise EditConflictError(key, now, seen, "delete")
            return {"key": key, "deleted": es.delete_edit(key)}

    @app.post("/api/clips/{key}/fill")
    def fill(key: str, body: EditBody) -> dict:
        es = current()
        es.item(key)
        if len(body.levels) != es.num_frames:  # as save and preview: one level per frame
            raise InputError(f"clip {key} has {es.num_frames} frames, got {len(body.levels)} levels")
        return {"levels": fill_between(body.levels)}

    @app.post("/api/clips/{key}/preview", response_model=Preview)
    def do_preview(key: str, body: EditBody) -> dict:
        es = current()
        if current.preview_error is not None:
            raise InputError(current.preview_error)
        frames, _ = es.clip(key)
        with lock:
            return preview(model, frames, body.levels)

    @get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


class _Reread:
    """The edit set as its ``collection.json`` is now: read again when that file changes (its
    modification time, size or inode: ``collect`` replaces it by a rename). An editor left open
    while ``videoxai stabn collect`` added clips to its folder served the list it read at start,
    and the new clips could be neither listed nor opened. Edits are files of their own, read on
    every request, so a reread loses none, saved or not (unsaved ones are the page's).

    A collection that cannot be read now is an error on each request (naming the file) until it
    can; one from a model the preview's does not fit turns the preview off, saying why.
    """

    def __init__(self, es: EditSet, model: STABNVideoModel | None) -> None:
        self.es, self.model = es, model
        self.preview_error: str | None = None
        self._lock = threading.Lock()
        self._stamp = self._stat()
        if model is not None:  # else every preview would be refused, one at a time
            check_collection(es, model)
        else:
            self.preview_error = ("preview needs the model: start the editor with --model (or keep the "
                                  "collection's model directory where it was)")

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = (self.es.directory / COLLECTION).stat()
        except OSError:  # an edit set built in memory (never written), or gone: the one we have
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def __call__(self) -> EditSet:
        stamp = self._stat()
        if stamp is None or stamp == self._stamp:
            return self.es
        with self._lock:  # requests run on a thread pool: one reread
            if stamp != self._stamp:
                es = EditSet.open(self.es.directory)  # InputError: a 422 naming the file, stamp kept
                error = None
                if self.model is not None:
                    try:
                        check_collection(es, self.model)
                    except InputError as e:
                        error = f"no preview: {e}"
                    self.preview_error = error
                self.es, self._stamp = es, stamp
        return self.es


async def _no_body(request: Request) -> None:
    """Refuse a DELETE with a body: ``{"version": …}`` sent there, as a save sends it, was ignored —
    an unchecked delete of whatever was saved."""
    if await request.body():
        raise InputError("DELETE takes no request body: send the version of the edit as read as "
                         "?version=… (left out, whatever is saved is removed)")


class BodyLimit:
    """ASGI middleware: answer 413 (``{"error": …}``) to a request whose body exceeds
    ``max_bytes`` — by its ``Content-Length`` before reading it, or once a chunked body passes the
    limit — instead of reading and JSON-parsing any size into memory.

    Plain ASGI, as :class:`~videoxai.core.hosts.HostCheck`: FastAPI's own body limit is not in
    every version the package allows.
    """

    def __init__(self, app, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = next((v for k, v in scope.get("headers", ()) if k == b"content-length"), None)
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            return await self._refuse(send)
        seen, exceeded, started = 0, False, False

        async def limited():
            nonlocal seen, exceeded
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    exceeded = True
                    raise _TooLarge
            return message

        async def guarded_send(message):
            nonlocal started
            if exceeded:  # the app's answer to a body it could not read (FastAPI: 400): ours replaces it
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, guarded_send)
        except _TooLarge:
            pass
        if exceeded and not started:
            await self._refuse(send)

    async def _refuse(self, send) -> None:
        body = json.dumps({"error": f"request body larger than {self.max_bytes} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    """A chunked request body passed :class:`BodyLimit`'s limit."""


def _jet(v: np.ndarray) -> np.ndarray:
    """The JET colour map (as the reference visualisation uses): values in [0, 1] → RGB in [0, 1]."""
    v = np.clip(v, 0.0, 1.0)[..., None]
    return np.clip(1.5 - np.abs(4.0 * v - np.array([3.0, 2.0, 1.0])), 0.0, 1.0)


def _blend(frame: np.ndarray, spatial: np.ndarray) -> np.ndarray:
    """0.6 · frame + 0.4 · JET(spatial map upsampled bilinearly to the frame), as the reference."""
    import torch
    import torch.nn.functional as F

    h, w = frame.shape[:2]
    m = F.interpolate(torch.from_numpy(np.asarray(spatial, np.float32))[None, None], size=(h, w),
                      mode="bilinear", align_corners=False)[0, 0].numpy()
    out = 0.6 * frame.astype(np.float32) + 0.4 * 255.0 * _jet(m)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _png(img: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


__all__ = ["create_app"]
