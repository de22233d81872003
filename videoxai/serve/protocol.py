"""The service's wire format: typed messages of the HTTP API and of the WebSocket stream.

Everything that crosses the network is JSON described by a pydantic model below, or a frame
(JPEG, PNG or raw RGB bytes) behind a small JSON header; nothing is ever unpickled. The
human-readable specification, with examples, is ``docs/protocol.md``; this module is the
authoritative one (the server validates every message against it).

Stream messages, in order::

    client                                       server
    {"type": "start", window, stride, …}  ──▶
                                          ◀──  {"type": "ready", window, stride, model, limits, …}
    binary frame  (header + pixels)       ──▶
    …                                     ◀──  {"type": "window", prediction, temporal, maps, …}
                                          ◀──  {"type": "dropped", …}       (live streams only)
    {"type": "end"}                       ──▶
                                          ◀──  {"type": "end", frames, windows, dropped}

Every field that may be null defaults to ``None``: the server leaves null fields out of what it
sends, and clients validate what they receive with these same models.

A binary frame message is ``uint32 big-endian n | n bytes of FrameHeader JSON | payload``.
Errors anywhere are ``{"error": {"code", "message"}}`` (HTTP bodies) or
``{"type": "error", "fatal": bool, "error": {"code", "message"}}`` (stream messages).
"""

from __future__ import annotations

import base64
import errno
import json
import struct
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from ..data.decoder import FrameTooLargeError
from ..errors import (InputError, UnknownMethodError, UnknownModelError, UnsupportedModelError, VideoReadError,
                      VideoXAIError)
from ..work import Cancelled, WorkLimitExceeded

# -- errors ------------------------------------------------------------------------------------


class ErrorInfo(BaseModel):
    """What went wrong: a stable machine-readable ``code`` and a sentence for people."""

    code: str
    message: str


class ErrorResponse(BaseModel):
    """The body of every HTTP error response."""

    error: ErrorInfo


#: longest error message a client is sent (characters; longer ones are cut, saying so)
MAX_MESSAGE_CHARS = 1000


class ServiceError(Exception):
    """An error the server reports to a client as JSON, with its HTTP status."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        if len(message) > MAX_MESSAGE_CHARS:
            # messages quote what the client sent: a start with a 4 000-digit window was answered
            # with all of them, an option name of 3 000 characters with itself
            message = f"{message[:MAX_MESSAGE_CHARS]}… ({len(message) - MAX_MESSAGE_CHARS} more characters cut)"
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers

    def info(self) -> ErrorInfo:
        return ErrorInfo(code=self.code, message=self.message)


#: library error class → (HTTP status, error code); the first matching class wins
_LIBRARY_ERRORS: tuple[tuple[type[Exception], int, str], ...] = (
    (FrameTooLargeError, 413, "video_too_large"),
    (VideoReadError, 415, "bad_video"),
    (WorkLimitExceeded, 413, "work_limit"),
    (Cancelled, 409, "cancelled"),
    (UnknownMethodError, 400, "unknown_method"),
    (UnknownModelError, 400, "unknown_model"),
    (UnsupportedModelError, 400, "unsupported_method"),
    (InputError, 400, "bad_input"),
    (VideoXAIError, 400, "bad_input"),
)


#: errno values of a write that failed for want of space (a full disk, or the user's quota)
_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


def to_service_error(exc: BaseException) -> ServiceError:
    """Map any exception to the :class:`ServiceError` a client sees.

    Library errors keep their message (it names what is wrong); anything else is an internal
    error whose details stay in the server log.
    """
    if isinstance(exc, ServiceError):
        return exc
    if isinstance(exc, OSError) and exc.errno in _DISK_FULL:
        # the server's state, not a bug and not the client's fault: say so, and that it may pass
        return ServiceError(507, "disk_full", "the server's disk is full; try again later or ask its operator "
                                              "to free space", headers={"Retry-After": "60"})
    for cls, status, code in _LIBRARY_ERRORS:
        if isinstance(exc, cls):
            return ServiceError(status, code, str(exc))
    return ServiceError(500, "internal", f"internal error ({type(exc).__name__}); see the server log")


# -- JSON from clients ---------------------------------------------------------------------------

#: largest JSON document a client may send as a text message or an ``options`` field, in bytes
MAX_JSON_BYTES = 64 * 1024
#: deepest nesting of arrays and objects in it (a method's options need three or four levels)
MAX_JSON_DEPTH = 32


def loads_json(text: str | bytes, what: str, code: str = "bad_request") -> Any:
    """Parse a client's JSON with limits checked *before* parsing: size, nesting depth (30 000
    nested ``[`` would exhaust the parser's recursion), finite numbers only (``NaN``,
    ``Infinity`` and ``1e400`` are refused, not turned into floats no option accepts), and each
    key of an object once.

    Raises:
        ServiceError: 400 with ``code``, naming ``what`` and the problem.
    """
    if len(text) > MAX_JSON_BYTES:
        raise ServiceError(400, code, f"{what} is {len(text)} bytes; the limit is {MAX_JSON_BYTES}")
    depth = _nesting_depth(text if isinstance(text, str) else text.decode("utf-8", "replace"))
    if depth > MAX_JSON_DEPTH:
        raise ServiceError(400, code, f"{what} nests {depth} levels deep; the limit is {MAX_JSON_DEPTH}")

    def finite(token: str) -> float:
        value = float(token)
        if value in (float("inf"), float("-inf")):
            raise ValueError(f"number {token} is out of range")
        return value

    def constant(token: str) -> float:
        raise ValueError(f"{token} is not a number JSON allows")

    try:
        return json.loads(text, parse_float=finite, parse_constant=constant, object_pairs_hook=_each_key_once)
    except (ValueError, RecursionError) as e:  # JSONDecodeError is a ValueError
        raise ServiceError(400, code, f"{what} must be valid JSON: {e}") from None


def _each_key_once(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` refusing a key given twice. json keeps the last: {"n_samples": 100,
    "n_samples": 5000} was explained with 5000 and not a word (as a query parameter given twice is
    refused)."""
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise ValueError(f"key {key!r} is given more than once")
        data[key] = value
    return data


def _nesting_depth(text: str) -> int:
    """Deepest ``[``/``{`` nesting outside strings (a linear scan, no recursion)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


# -- compact arrays ----------------------------------------------------------------------------


class CompactArray(BaseModel):
    """A small float array in [0, ``scale``], quantised and base64-encoded.

    Decode: ``np.frombuffer(base64.b64decode(data), dtype).reshape(shape)``, then multiply by
    ``scale / 255`` for ``uint8`` or by ``scale`` for ``float16``. Values are C-ordered,
    little-endian.
    """

    model_config = ConfigDict(frozen=True)

    dtype: Literal["uint8", "float16"]
    shape: list[int]
    scale: float = 1.0
    data: str

    @classmethod
    def encode(cls, array: np.ndarray, dtype: Literal["uint8", "float16"] = "uint8") -> "CompactArray":
        """Quantise a non-negative array; ``scale`` is its maximum (1 for an all-zero array)."""
        a = np.nan_to_num(np.asarray(array, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        a = np.clip(a, 0.0, None)
        peak = float(a.max()) if a.size else 0.0
        scale = peak if peak > 0 else 1.0
        unit = a / scale
        if dtype == "uint8":
            payload = np.rint(unit * 255.0).astype(np.uint8)
        elif dtype == "float16":
            payload = unit.astype("<f2")
        else:
            raise InputError(f"map dtype must be 'uint8' or 'float16', got {dtype!r}")
        return cls(dtype=dtype, shape=list(a.shape), scale=scale,
                   data=base64.b64encode(payload.tobytes()).decode("ascii"))

    def decode(self) -> np.ndarray:
        """The float32 array (quantisation error ≤ scale/510 for uint8)."""
        raw = np.frombuffer(base64.b64decode(self.data), dtype=np.uint8 if self.dtype == "uint8" else "<f2")
        a = raw.astype(np.float32).reshape(self.shape)
        return a * (self.scale / 255.0) if self.dtype == "uint8" else a * self.scale


# -- results -----------------------------------------------------------------------------------


class Prediction(BaseModel):
    """A class and its probability."""

    index: int
    label: str
    score: float


class WindowMaps(BaseModel):
    """The maps of one window in compact form.

    Attributes:
        spatial: ``(T, h, w)`` in [0, 1]: the explanation's map over the *whole* frame (zero
            outside the model's crop box), area-downsampled so that the longer side is at most
            ``map_size``; stretch it over the frame to overlay it. Smoothed across the windows of
            a stream.
        raw: ``(T', h', w')``: the method's own map before refinement and alignment (for
            STAA the token grid over the model's crop box), when asked for.
    """

    spatial: CompactArray | None = None
    raw: CompactArray | None = None


class WindowResult(BaseModel):
    """One explained window of consecutive (or uniformly sampled) frames."""

    index: int = Field(description="window number, from 0")
    frame_indices: list[int] = Field(description="index of each of the window's frames in the video/stream")
    prediction: Prediction = Field(description="the explained class on this window")
    top: list[Prediction] = Field(description="the most probable classes of this window, best first")
    temporal: list[float] = Field(description="one score per frame of the window, summing to 1")
    maps: WindowMaps
    compute_ms: float = Field(description="server time spent explaining this window")


class ModelInfo(BaseModel):
    name: str
    family: str
    num_frames: int
    input_size: list[int]
    fixed_num_frames: bool
    labels: list[str]


class ServerInfo(BaseModel):
    """``GET /api/info``."""

    model: ModelInfo
    methods: list[str]
    default_method: str
    limits: dict[str, Any]
    version: str


# -- jobs --------------------------------------------------------------------------------------

JobState = Literal["queued", "running", "done", "failed", "cancelled"]


#: longest class name (or index spelled out) a request may give as its target
MAX_TARGET_CHARS = 1000


def _short_target(value: Any) -> Any:
    # Python refuses to read an integer of over 4300 digits: such a target was a ValueError deep
    # in the model, answered as an internal error (500) with a traceback in the server's log
    if isinstance(value, str) and len(value) > MAX_TARGET_CHARS:
        raise ValueError(f"a class name or index of at most {MAX_TARGET_CHARS} characters, got {len(value)}")
    # an index written in another script ('٣', '３') was read as class 3, as `videoxai explain
    # --target` refuses it (videoxai.cli.check_target); a name with such a digit among letters stays a name
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit() and not value.isascii():
        raise ValueError(f"{value!r} is a class index written with digits other than 0-9; write it with 0-9")
    return value


#: a class by index, or by name as the library and the CLI take it (exact, then case-insensitive;
#: a query string's ``"3"`` is class 3 unless a class is called ``"3"``), resolved by
#: :meth:`~videoxai.serve.engine.Engine.prepare`
ClassTarget = Annotated[Annotated[int, Field(ge=0)] | str | None, BeforeValidator(_short_target)]


#: a method's name; omitted (or ``null``) means the server's default. An empty string is refused,
#: not taken for the default: it is what a form with nothing chosen sends, and a client that
#: meant a method but sent none should hear so rather than get another method's explanation
MethodName = Annotated[str, Field(min_length=1)] | None


class JobRequest(BaseModel):
    """How to explain an uploaded video (query parameters or multipart form fields).

    Attributes:
        method: a registered method (server default: STAA).
        options: the method's options as a JSON object.
        target: class to explain, by index or name (``"blue square"``: exact, then
            case-insensitive); ``None`` explains each window's prediction.
        sampling: ``"uniform"``: one window of the model's frame count sampled over the whole
            video (what ``videoxai explain`` does); ``"windows"``: sliding windows over every
            frame.
        stride: frames between window starts for ``"windows"`` (default: the window size).
        overlay: also render the overlay video.
        maps: which maps the result carries.
        map_size: longest side of the downsampled spatial maps.
        map_dtype: their quantisation.
    """

    model_config = ConfigDict(extra="forbid")

    method: MethodName = None
    options: dict[str, Any] = Field(default_factory=dict)
    target: ClassTarget = None
    sampling: Literal["uniform", "windows"] = "uniform"
    stride: int | None = Field(None, ge=1)
    overlay: bool = True
    maps: list[Literal["spatial", "raw"]] = Field(default_factory=lambda: ["spatial"])
    map_size: int | None = Field(None, ge=4, le=256)
    map_dtype: Literal["uint8", "float16"] = "uint8"


class JobLinks(BaseModel):
    status: str
    result: str
    overlay: str | None = Field(None, description="URL of the overlay video; absent when the job renders "
                                                  "none (overlay=false)")


class JobStatus(BaseModel):
    """``POST /api/jobs`` (202) and ``GET /api/jobs/{id}``."""

    id: str
    state: JobState
    progress: float = Field(description="fraction of windows done, in [0, 1]")
    windows_done: int
    windows_total: int | None = None
    error: ErrorInfo | None = None
    created: float
    started: float | None = None
    finished: float | None = None
    links: JobLinks


class VideoInfo(BaseModel):
    frames: int
    fps: float | None = None
    width: int
    height: int
    duration: float | None = None


class JobResult(BaseModel):
    """``GET /api/jobs/{id}/result``.

    ``prediction`` is the class with the highest mean probability over the windows;
    ``temporal`` gives one score per video frame that any window covered (``frame_indices``):
    the mean of the windows' scores for that frame, normalised to sum to 1.
    """

    id: str
    model: str
    method: str
    options: dict[str, Any]
    video: VideoInfo
    prediction: Prediction
    frame_indices: list[int]
    temporal: list[float]
    windows: list[WindowResult]
    overlay: str | None = Field(None, description="URL of the overlay video, when rendered")
    seconds: float = Field(description="wall time of the job")


# -- stream ------------------------------------------------------------------------------------


class StartMessage(BaseModel):
    """Client → server, first message: what to compute and how.

    Attributes:
        window: frames per window; a model with a fixed frame count accepts only that
            (``null`` = the model's).
        stride: frames between window starts, 1 … window (``null`` = half the window).
        method, options, target: as for jobs.
        live: ``true`` for a live source: when the model is slower than the frames arrive, stale
            windows are dropped (and reported) so results stay current. ``false`` for a file:
            every window is explained and the server stops reading (TCP back-pressure) until
            the model catches up.
        smoothing: weight of the newest window in the moving average of the spatial maps and
            the probabilities (1 = no smoothing; ``null`` = server default).
        maps, map_size, map_dtype: as for jobs.
        api_key: the server's API key, for clients that cannot send the ``X-API-Key`` header
            (browsers); never echoed.
    """

    # strict: JSON types as sent (``"target": true`` is not class 1, ``"live": "yes"`` is not a boolean)
    model_config = ConfigDict(extra="forbid", strict=True)

    type: Literal["start"]
    api_key: str | None = Field(None, exclude=True, repr=False)
    window: int | None = Field(None, ge=1)
    stride: int | None = Field(None, ge=1)
    method: MethodName = None
    options: dict[str, Any] = Field(default_factory=dict)
    target: ClassTarget = None
    live: bool = True
    smoothing: float | None = Field(None, gt=0, le=1)
    maps: list[Literal["spatial", "raw"]] = Field(default_factory=lambda: ["spatial"])
    map_size: int | None = Field(None, ge=4, le=256)
    map_dtype: Literal["uint8", "float16"] = "uint8"


class EndMessage(BaseModel):
    """Client → server: no more frames; the server explains what is left and answers ``end``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    type: Literal["end"]


class FrameHeader(BaseModel):
    """The JSON header of a binary frame message.

    Attributes:
        format: ``"jpeg"`` / ``"png"`` (encoded image) or ``"rgb"`` (raw ``height × width × 3``
            bytes, row-major, no padding).
        width, height: required for ``"rgb"``; checked against the image for the others.
        ts: any number the client wants echoed in the result of the window this frame closes
            (e.g. its send time, to measure latency).
    """

    model_config = ConfigDict(extra="forbid", strict=True)  # as StartMessage

    format: Literal["jpeg", "png", "rgb"]
    width: int | None = Field(None, ge=1)
    height: int | None = Field(None, ge=1)
    ts: float | None = Field(None, allow_inf_nan=False)  # echoed in JSON, which has no NaN or Infinity


class ReadyMessage(BaseModel):
    """Server → client: the negotiated settings."""

    type: Literal["ready"] = "ready"
    window: int
    stride: int
    method: str
    options: dict[str, Any]
    target: int | None = None
    live: bool
    smoothing: float
    maps: list[str]
    map_size: int
    map_dtype: str
    model: ModelInfo
    limits: dict[str, Any]


class WindowMessage(WindowResult):
    """Server → client: one explained window of the stream.

    ``prediction`` / ``top`` are this window's; ``smoothed`` is the class with the highest
    moving-average probability; ``maps.spatial`` is smoothed across windows. ``ts`` echoes the
    header ``ts`` of the window's last frame; ``latency_ms`` is the server time from that
    frame's arrival to this message.
    """

    type: Literal["window"] = "window"
    smoothed: Prediction
    ts: float | None = None
    latency_ms: float
    dropped_total: int


class DroppedMessage(BaseModel):
    """Server → client (live streams): windows skipped because the model was busy."""

    type: Literal["dropped"] = "dropped"
    windows: int
    first_frame: int
    last_frame: int
    total: int
    reason: str = "the model was still busy with an earlier window; a live stream keeps only the newest"


class ErrorMessage(BaseModel):
    """Server → client. ``fatal``: the server closes the stream after it. ``frame_range``: the
    first and last frame of the window that failed, for an error of one window."""

    type: Literal["error"] = "error"
    fatal: bool
    error: ErrorInfo
    frame_range: list[int] | None = None


class EndAck(BaseModel):
    """Server → client, last message of a stream that the client ended."""

    type: Literal["end"] = "end"
    frames: int
    windows: int
    dropped: int


_CLIENT_MESSAGES: dict[str, type[BaseModel]] = {"start": StartMessage, "end": EndMessage}


def parse_client_text(text: str) -> StartMessage | EndMessage:
    """Validate a client's text message; raise :class:`ServiceError` naming what is wrong."""
    data = loads_json(text, "a text message", code="bad_message")
    if not isinstance(data, dict):
        raise ServiceError(400, "bad_message", "text messages must be JSON objects")
    kind = data.get("type")
    cls = _CLIENT_MESSAGES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ServiceError(400, "bad_message",
                           f"unknown message type {kind!r}; expected one of {', '.join(_CLIENT_MESSAGES)}")
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        raise ServiceError(400, "bad_message", f"invalid {kind!r} message: {_first_errors(e)}") from None


#: longest accepted frame header, in bytes
MAX_HEADER_BYTES = 4096


def pack_frame(header: FrameHeader | dict, payload: bytes) -> bytes:
    """Build a binary frame message (what clients send)."""
    if isinstance(header, FrameHeader):
        header = header.model_dump(exclude_none=True)
    head = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack(">I", len(head)) + head + payload


def unpack_frame(message: bytes) -> tuple[FrameHeader, memoryview]:
    """Split a binary frame message into its validated header and its payload."""
    if len(message) < 4:
        raise ServiceError(400, "bad_frame", "a frame message starts with a 4-byte header length")
    (n,) = struct.unpack_from(">I", message)
    if n == 0 or n > MAX_HEADER_BYTES or 4 + n > len(message):
        raise ServiceError(400, "bad_frame", f"frame header length {n} is invalid for a message of "
                                             f"{len(message)} bytes (at most {MAX_HEADER_BYTES})")
    # each key once, as in every other JSON of a client's: pydantic's own reader kept the last of a
    # key given twice ({"width": 640, …, "width": 64} was a 64-pixel-wide frame, silently). NaN and
    # Infinity are read, for the model to refuse naming the field (ts)
    try:
        data = json.loads(bytes(message[4:4 + n]), object_pairs_hook=_each_key_once)
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ServiceError(400, "bad_frame", f"the frame header must be valid JSON: {e}") from None
    try:
        header = FrameHeader.model_validate(data)
    except ValidationError as e:
        raise ServiceError(400, "bad_frame", f"invalid frame header: {_first_errors(e)}") from None
    return header, memoryview(message)[4 + n:]


def _first_errors(e: ValidationError, n: int = 3) -> str:
    parts = []
    for err in e.errors()[:n]:
        where = ".".join(str(p) for p in err.get("loc", ())) or "message"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)
