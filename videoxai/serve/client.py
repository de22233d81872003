"""Stream a video to a videoxai server and receive its explanations window by window.

>>> from videoxai.serve.client import StreamClient, video_frames
>>> client = StreamClient("ws://127.0.0.1:8000", stride=4)
>>> for event in client.stream(video_frames("clip.mp4")):
...     if event["type"] == "window":
...         print(event["frame_indices"][0], event["prediction"]["label"])

Frames are sent from a background thread while results are read in the caller's thread, so a
file stream runs at the server's pace (``live=False``: the server stops reading when it is
behind) and a live stream at the source's (``live=True``: the server drops stale windows and
says so). :class:`OverlaySaver` turns the results back into an overlay video.
"""

from __future__ import annotations

import io
import os
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlencode, urlsplit, urlunsplit

import numpy as np

from pydantic import BaseModel, ValidationError

from ..errors import InputError, VideoXAIError
from ..version import __version__
from .protocol import (CompactArray, DroppedMessage, EndAck, ErrorMessage, FrameHeader, ReadyMessage, WindowMessage,
                       pack_frame)

#: the server's messages this client reads, by ``type`` (others, from a newer server, are passed on)
SERVER_MESSAGES: dict[str, type[BaseModel]] = {"ready": ReadyMessage, "window": WindowMessage,
                                               "dropped": DroppedMessage, "error": ErrorMessage, "end": EndAck}


#: the largest server message this client takes where it knows nothing better: before the
#: server's 'ready' (which holds the model's class names: 16 MiB is some 300 000 of them), and
#: the least it takes after it. websockets' own default (1 MiB) is less than a long window's
#: maps, and ``None`` (no limit) let a broken or hostile server fill this process's memory with one
#: message, announced in a frame header and buffered whole before it was looked at.
DEFAULT_MAX_MESSAGE_BYTES = 16 * 2**20
#: the most :func:`message_limit` derives from what a server announces: past it (a 'ready'
#: announcing windows of millions of frames, broken or hostile) ``max_message_bytes`` says how
#: much to take. A job's whole result is 256 MiB at most by the server's default limits.
MAX_DERIVED_MESSAGE_BYTES = 2**30


def message_limit(ready: dict) -> int:
    """The largest message a server that sent this ``ready`` may send afterwards, in bytes.

    A ``window`` message is the largest: ``window`` frames of each map asked for (the spatial
    map's longer side at most ``map_size``; the raw map the method's own grid, at most the
    model's input per frame, as the server's result estimate takes it), one or two bytes a value
    (``map_dtype``) in base64 (4 characters per 3 bytes), plus the predictions (class names:
    the model's, all of them at most) and a few numbers per frame. Twice that, for what this
    estimate does not know (a newer server's fields), and at least
    :data:`DEFAULT_MAX_MESSAGE_BYTES`; at most :data:`MAX_DERIVED_MESSAGE_BYTES`.
    """
    window = max(int(ready.get("window") or 0), 0)
    map_size = max(int(ready.get("map_size") or 0), 0)
    model = ready.get("model") or {}
    size = [int(v) for v in (model.get("input_size") or []) if isinstance(v, int) and v > 0][-2:]
    spatial = map_size ** 2
    raw = size[0] * size[1] if len(size) == 2 else spatial
    cells = 0
    for name in ready.get("maps") or []:
        # the spatial map is map_size on its longer side, the raw one the method's grid (at most the
        # model's input); a map a newer server adds, whichever is larger
        cells += spatial if name == "spatial" else raw if name == "raw" else max(spatial, raw)
    per_value = 2 if ready.get("map_dtype") == "float16" else 1
    maps = -(-window * cells * per_value // 3) * 4
    labels = [str(label) for label in model.get("labels") or []]
    longest = max((len(json.dumps(label)) for label in labels), default=0)
    predictions = (len(labels) + 2) * (longest + 64)  # 'top', 'prediction' and 'smoothed'
    estimate = maps + predictions + 64 * window + 64 * 1024  # frame indices and temporal scores, the rest
    return min(max(2 * estimate, DEFAULT_MAX_MESSAGE_BYTES), MAX_DERIVED_MESSAGE_BYTES)


class StreamError(VideoXAIError):
    """The server refused the stream or ended it with a fatal error."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


def stream_url(server: str, api_key: str | None = None) -> str:
    """``http://host:port`` / ``ws://host:port`` / ``host:port`` → the stream endpoint's URL.

    ``api_key`` puts the key in the query string, for old servers only: URLs end up in logs,
    so :class:`StreamClient` sends it in the ``X-API-Key`` header instead.
    """
    given = server
    if "://" not in server:
        server = "ws://" + server
    try:
        parts = urlsplit(server)
    except ValueError:  # 'ws://[::1' (an IPv6 address without its ']'): a ValueError the CLI took for a bug
        raise InputError(f"server {given!r} is not an address such as http://127.0.0.1:8000 or http://[::1]:8000"
                         ) from None
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None:
        raise InputError(f"server must be an http(s):// or ws(s):// address, got {server!r}")
    try:  # '' or 'http://' named no host, 'host:80x' no port: websockets' InvalidURI, a bare type name
        port = parts.port
    except ValueError:
        port = -1
    if not parts.hostname or port == -1:
        raise InputError(f"server {given!r} is not an address such as http://127.0.0.1:8000 (a host, and a port "
                         "from 0 to 65535 if any)")
    path = parts.path.rstrip("/")
    if not path.endswith("/api/stream"):
        path += "/api/stream"
    query = urlencode({"api_key": api_key}) if api_key else ""
    return urlunsplit((scheme, parts.netloc, path, query, ""))


def encode_frame(frame: np.ndarray, fmt: Literal["jpeg", "png", "rgb"] = "jpeg", quality: int = 85,
                 ts: float | None = None) -> bytes:
    """A ``(H, W, 3)`` frame (uint8, or float in [0, 1] as the library takes frames; numpy or
    torch) as a binary frame message."""
    frame = stream_frame(frame)
    h, w = frame.shape[:2]
    if fmt == "rgb":
        payload = frame.tobytes()
    else:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(frame).save(buf, format="JPEG" if fmt == "jpeg" else "PNG",
                                    **({"quality": quality} if fmt == "jpeg" else {}))
        payload = buf.getvalue()
    return pack_frame(FrameHeader(format=fmt, width=w, height=h, ts=ts), payload)


def stream_frame(frame) -> np.ndarray:
    """One frame to send, as contiguous ``(H, W, 3)`` uint8: float frames in [0, 1] are scaled as
    :class:`~videoxai.Clip` scales them (a cast made 0.7 a black 0), anything else is refused.

    Raises:
        InputError: another shape, dtype or range, naming it.
    """
    from ..clip import Clip

    shape = tuple(np.shape(frame))
    if len(shape) != 3 or shape[-1] != 3:
        hint = ("; channels first? frame.transpose(1, 2, 0)" if len(shape) == 3 and shape[0] == 3 else
                "; grey? np.repeat(frame[..., None], 3, axis=-1)" if len(shape) == 2 else
                "; RGBA? frame[..., :3]" if len(shape) == 3 and shape[-1] == 4 else "")
        raise InputError(f"a frame to stream must have shape (H, W, 3), got {shape}{hint}")
    return np.ascontiguousarray(Clip.from_array(frame[None]).uint8()[0])


def video_frames(source: str | Path, max_side: int | None = None,
                 max_pixels: int | None = None) -> Iterator[np.ndarray]:
    """Decode a file or a stream URL (rtsp://, http://, …) frame by frame: ``(H, W, 3)`` uint8.

    A file, or a ``file:`` URL, is read as :func:`~videoxai.data.video.read_video` reads it
    (:func:`~videoxai.data.container.local_file`): a file cut short fails saying so.
    ``max_pixels`` (default :data:`~videoxai.data.video.MAX_PIXELS`) holds the frames at the size
    they come out at, as ``read_video`` does (:class:`~videoxai.data.video.FrameTooLargeError`)."""
    from ..data.container import MAX_PIXELS, local_file

    max_pixels = MAX_PIXELS if max_pixels is None else max_pixels
    path = local_file(source)
    if path is not None:
        from ..data.video_windows import sliding_windows

        for clip in sliding_windows(path, num_frames=1, stride=1, max_side=max_side, max_pixels=max_pixels):
            yield clip.frames[0]
        return
    import av

    from ..data.decoder import shown_picture
    from ..data.deinterlace import progressive
    from ..data.packets import decode
    from ..data.video import sample_aspect, video_stream

    try:
        container = av.open(str(source), mode="r", timeout=10.0)
    except (av.FFmpegError, OSError) as e:
        raise InputError(f"cannot open {source}: not a file, and not a readable stream URL ({e})") from None
    with container:
        stream = video_stream(container)  # never a cover picture
        if stream is None:
            raise InputError(f"{source} has no video stream")
        # as files are read: FFmpeg refuses a frame stored over the limit before it costs memory
        stream.codec_context.options = {**stream.codec_context.options, "max_pixels": str(int(max_pixels))}
        picture = None
        # as files are read: on one clock, without a frame the source was cut inside (an http://
        # download stopped partway decodes that frame concealed, without an error)
        for frame in progressive(decode(container, stream), stream):  # interlaced made whole
            if picture is None:  # as files are read: upright, square pixels, 10-bit without darkening,
                # and no larger than max_pixels at the size the frames come out at
                picture = shown_picture(source, frame, sample_aspect(stream), max_side, max_pixels)
            yield picture(frame)


def source_fps(source: str | Path) -> float | None:
    """The frame rate of the video stream :func:`video_frames` reads (a file's as
    :func:`~videoxai.data.container.probe` gives it; a URL's average rate), if any."""
    import av

    from ..data.container import local_file
    from ..data.streams import video_stream

    path = local_file(source)
    if path is not None:
        from ..data.container import probe

        try:
            return probe(path)["fps"]
        except VideoXAIError:  # unreadable: video_frames says why
            return None
    try:
        with av.open(str(source), mode="r", timeout=10.0) as c:
            stream = video_stream(c)  # the stream video_frames reads: never a cover picture
            rate = stream.average_rate if stream is not None else None
            return float(rate) if rate else None
    except (av.FFmpegError, OSError):
        return None


class StreamClient:
    """A WebSocket stream to a videoxai server.

    Args:
        server: ``http://host:port`` (or ``ws://…``).
        api_key: the server's API key, if it has one.
        window, stride, method, options, target, live, smoothing, maps, map_size, map_dtype: the
            ``start`` message (``docs/protocol.md``); ``None`` leaves the choice to the server.
        frame_format: ``"jpeg"`` (small), ``"png"`` (lossless) or ``"rgb"`` (raw, no encoding cost).
        quality: JPEG quality.
        fps: if set, frames are sent at this rate (a live source); otherwise as fast as the
            server takes them.
        timeout: seconds to wait for the server's next message before giving up.
        max_message_bytes: the largest message taken from the server; a larger one ends the
            stream with a :class:`StreamError` (``message_too_large``) as soon as its frame
            header announces it, before any of it is buffered. ``None``:
            :data:`DEFAULT_MAX_MESSAGE_BYTES` up to the server's ``ready``, then what its
            windows may hold (:func:`message_limit`).

    Raises:
        InputError: ``max_message_bytes`` is not a positive whole number of bytes.
    """

    def __init__(self, server: str, *, api_key: str | None = None, window: int | None = None,
                 stride: int | None = None, method: str | None = None, options: dict[str, Any] | None = None,
                 target: int | str | None = None, live: bool = False, smoothing: float | None = None,
                 maps: tuple[str, ...] = ("spatial",), map_size: int | None = None,
                 map_dtype: Literal["uint8", "float16"] = "uint8",
                 frame_format: Literal["jpeg", "png", "rgb"] = "jpeg", quality: int = 85,
                 fps: float | None = None, timeout: float = 60.0, max_message_bytes: int | None = None) -> None:
        if max_message_bytes is not None and (isinstance(max_message_bytes, bool) or not isinstance(
                max_message_bytes, int) or max_message_bytes < 1):
            raise InputError(f"max_message_bytes must be a positive whole number of bytes, got {max_message_bytes!r}")
        self.url = stream_url(server)
        self.headers = {"X-API-Key": api_key} if api_key else {}
        start = {"type": "start", "window": window, "stride": stride, "method": method,
                 "options": options or {}, "target": target, "live": live, "smoothing": smoothing,
                 "maps": list(maps), "map_size": map_size, "map_dtype": map_dtype}
        self.start = {k: v for k, v in start.items() if v is not None}
        self.frame_format, self.quality, self.fps, self.timeout = frame_format, quality, fps, timeout
        self.ready: dict | None = None
        self.max_message_bytes = max_message_bytes
        self._limit, self._limit_from = self._first_bound()
        self.frames_sent = 0
        self._covered = 0  # frames [0, covered) lie in windows already received
        self._progress = threading.Condition()

    def stream(self, frames: Iterable[np.ndarray]) -> Iterator[dict]:
        """Send ``frames`` and yield the server's messages (``ready``, ``window``, ``dropped``,
        non-fatal ``error``) up to and including ``end``.

        Raises:
            StreamError: the server refused the stream or closed it with a fatal error.
        """
        from websockets.exceptions import ConnectionClosed, InvalidHandshake
        from websockets.sync.client import connect

        self._limit, self._limit_from = self._first_bound()  # (a stream before may have raised it)
        # no compression (frames are JPEG already) and no proxy (the server is addressed directly)
        try:
            ws = connect(self.url, compression=None, proxy=None, max_size=self._limit, open_timeout=self.timeout,
                         additional_headers=self.headers)
        except (OSError, TimeoutError, InvalidHandshake) as e:  # refused, unreachable, no answer, not a server
            reason = getattr(e, "strerror", None) or str(e) or type(e).__name__
            raise StreamError("unreachable", f"cannot connect to {self.url}: {reason}") from None
        with ws:
            try:
                ws.send(json.dumps(self.start))
            except ConnectionClosed:
                pass  # refused at once (busy, bad key): the reason is the message already received
            first = self._recv(ws)
            if first["type"] == "error":
                self._raise(first)
            if first["type"] != "ready":
                raise self._foreign(f"its first message is {first['type']!r}, not 'ready'")
            self.ready = first
            if self.max_message_bytes is None:
                self._bound(ws, message_limit(first), "derived from its 'ready': twice the largest window it "
                                                      "announces")
            yield first
            failure: list[BaseException] = []
            stop = threading.Event()
            sender = threading.Thread(target=self._send_all, args=(ws, frames, stop, failure), daemon=True,
                                      name="videoxai-stream-client")
            sender.start()
            try:
                while True:
                    try:
                        msg = self._recv(ws)
                    except StreamError:
                        if failure:
                            raise failure[0] from None
                        raise
                    if msg.get("type") == "error" and msg.get("fatal"):
                        self._raise(msg)
                    # a window explained, or failed on the server: the frames up to its end are consumed
                    done = (msg["frame_indices"][-1] if msg.get("type") == "window"
                            else (msg.get("frame_range") or [-1])[-1] if msg.get("type") == "error" else -1)
                    if done >= 0:
                        with self._progress:
                            self._covered = max(self._covered, done + 1)
                            self._progress.notify_all()
                    yield msg
                    if msg.get("type") == "end":
                        return
            finally:
                stop.set()
                with self._progress:
                    self._progress.notify_all()
                sender.join(timeout=self.timeout)

    def _send_all(self, ws, frames: Iterable[np.ndarray], stop: threading.Event,
                  failure: list[BaseException]) -> None:
        from websockets.exceptions import ConnectionClosed

        t0 = time.monotonic()
        # A file stream (no fps) keeps at most this many frames beyond the last result: enough to
        # keep the model busy (a window in flight, the next one waiting), while frames never pile
        # up in TCP buffers, where they would delay keep-alive pings and inflate latency.
        ahead = self.ready["window"] + 2 * self.ready["stride"]
        try:
            for i, frame in enumerate(frames):
                if stop.is_set():
                    return
                if not self.fps:
                    with self._progress:
                        self._progress.wait_for(lambda: i < self._covered + ahead or stop.is_set())
                    if stop.is_set():
                        return
                if self.fps:
                    delay = t0 + i / self.fps - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                ws.send(encode_frame(frame, self.frame_format, self.quality, ts=time.time()))
                self.frames_sent += 1
            ws.send(json.dumps({"type": "end"}))
        except ConnectionClosed:
            return  # the reader reports why
        except BaseException as e:  # a decoding error in the source: report it, close the stream
            failure.append(e)
            ws.close()

    def _first_bound(self) -> tuple[int, str]:
        """The bound on the server's messages up to its 'ready', and where it comes from (for the
        error that names it)."""
        if self.max_message_bytes is not None:
            return self.max_message_bytes, "max_message_bytes"
        return DEFAULT_MAX_MESSAGE_BYTES, "the default before its 'ready'"

    def _bound(self, ws, limit: int, why: str) -> None:
        """Take messages of at most ``limit`` bytes from now on (``why``: for the error's words).

        websockets checks each frame's announced length against its protocol's bound before it
        reads the frame; the bound is read when a frame's first bytes arrive, and a server sends
        windows only for frames this client sends after the 'ready' (a message it sends unasked
        before then meets the bound before the 'ready'). websockets 14 split ``max_size`` into
        ``max_message_size`` and ``max_fragment_size``; 12 and 13 have ``max_size`` alone."""
        protocol = ws.protocol
        with ws.protocol_mutex:  # the thread that reads the socket parses under it
            setattr(protocol, "max_message_size" if hasattr(protocol, "max_message_size") else "max_size", limit)
        self._limit, self._limit_from = limit, why

    def _recv(self, ws) -> dict:
        from websockets.exceptions import ConnectionClosed

        try:
            text = ws.recv(timeout=self.timeout)
        except TimeoutError:
            raise StreamError("timeout", f"no message from the server for {self.timeout:g} s (a window of a slow "
                                         "method can take longer: a larger timeout, videoxai stream --timeout, "
                                         "waits for it)") from None
        except ConnectionClosed as e:
            if e.sent is not None and e.sent.code == 1009 and (e.rcvd is None or e.rcvd_then_sent is False):
                # this client closed it (1009: message too big): a frame header announced more
                # than the bound, and websockets refused it before reading it
                raise self._too_large(e) from None
            if e.rcvd is None:  # no close frame: the server's process or the network went away, or the
                # server aborted a client that read nothing (its messages waited unread in this process)
                idle = ((self.ready or {}).get("limits") or {}).get("stream_idle_timeout_s")
                unread = (f", or this program took no message from the stream for the server's {idle:g} s "
                          "(stream_idle_timeout_s)" if isinstance(idle, (int, float)) else "")
                raise StreamError("closed", "the connection to the server was lost before the stream's 'end' (the "
                                            f"server stopped, or the network failed{unread})") from None
            # the reason says why (client_limit, busy, idle …) where the fatal message before it was lost
            why = f": {e.rcvd.reason}" if e.rcvd.reason else ""
            raise StreamError("closed", f"the server closed the stream (code {e.rcvd.code}{why}) before its "
                                        "'end'") from None
        if not isinstance(text, str):
            raise self._foreign("it sent a binary message")
        try:
            msg = json.loads(text)
        except ValueError:
            raise self._foreign(f"it sent {text[:40]!r}, which is not JSON") from None
        except RecursionError:  # json's recursion: a RecursionError from deep inside, as "error: RecursionError: …"
            raise self._foreign(f"it sent {text[:40]!r}…, JSON nested too deep to read") from None
        kind = msg.get("type") if isinstance(msg, dict) else None
        if not isinstance(kind, str):
            raise self._foreign(f"it sent {text[:40]!r}, not a JSON object with a 'type'")
        if kind in SERVER_MESSAGES:  # the fields this client reads, checked once here
            try:
                SERVER_MESSAGES[kind].model_validate(msg)
            except ValidationError as e:
                err = e.errors()[0]
                where = ".".join(str(p) for p in err["loc"]) or "message"
                raise self._foreign(f"its {kind!r} message has {where}: {err['msg'].lower()}") from None
        return msg

    def _too_large(self, closed) -> StreamError:
        """The error for a message over the bound, naming its size (``closed``: websockets'
        ConnectionClosed, caused by its PayloadTooBig, which knows the size from websockets 14)."""
        cause = closed.__cause__
        size, before = getattr(cause, "size", None), getattr(cause, "current_size", None) or 0
        if size is None:  # websockets 12, 13: the size is in the reason's words only
            said = f" ({closed.sent.reason})" if closed.sent.reason else ""
            what = f"a message over {self._limit} bytes{said}"
        else:  # a message in several frames: its first frames' bytes, and the frame over the bound
            what = f"a message of {'at least ' if before else ''}{before + size} bytes"
        advice = ("give a larger max_message_bytes if the server's windows are this large"
                  if self.max_message_bytes else "a videoxai server sends no such message: is it broken, or not "
                  "a videoxai server? (StreamClient's max_message_bytes takes more)")
        return StreamError("message_too_large", f"the server sent {what}, over this client's limit of {self._limit} "
                                                f"bytes ({self._limit_from}); {advice}")

    def _foreign(self, what: str) -> StreamError:
        """The error for a server that does not speak this client's protocol."""
        return StreamError("protocol", f"{self.url} does not speak the videoxai stream protocol of this client "
                                       f"(version {__version__}): {what}. Is it a videoxai server, and of this "
                                       "version?")

    @staticmethod
    def _raise(msg: dict) -> None:
        err = msg.get("error") or {}
        raise StreamError(err.get("code", "protocol"), err.get("message", f"unexpected message {msg}"))


class OverlaySaver:
    """Builds an overlay video from the frames sent and the windows received.

    Each frame is written once, with the map of the first window that contains it; frames of
    dropped windows (live streams) are not written. At most ``keep`` unsent-to-disk frames are
    held, the oldest discarded first.

    The video is written beside ``path`` under a hidden partial name and put in its place by
    :meth:`close` only when the stream is complete: a file at ``path`` was truncated when the
    saver was made, and deleted when the stream then failed (the video being streamed, with
    ``--save`` naming it too), and a stream cut short left an overlay that looked whole.

    Raises:
        InputError: ``path`` is a directory, lies in a folder that does not exist, or has an
            extension FFmpeg writes no video for.
    """

    def __init__(self, path: str | Path, fps: float, keep: int = 512, alpha: float = 0.5, cmap: str = "jet") -> None:
        from .jobs import OverlayWriter

        self.path = Path(path)
        if self.path.is_dir():
            raise InputError(f"{self.path} is a directory; give a video file name such as overlay.mp4")
        if not self.path.parent.is_dir():
            raise InputError(f"{self.path}: no such folder {self.path.parent}")
        self.partial = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        try:
            self._writer = OverlayWriter(self.partial, fps=fps)
        except ValueError:  # av: "Could not determine output format"
            kind = f"named *{self.path.suffix}" if self.path.suffix else "without an extension"
            raise InputError(f"{self.path}: FFmpeg writes no video file {kind}; give a name such as "
                             "overlay.mp4") from None
        except OSError as e:
            raise InputError(f"{self.path}: cannot write there ({e.strerror or e})") from None
        self._frames: OrderedDict[int, np.ndarray] = OrderedDict()
        self.keep, self.alpha, self.cmap = keep, alpha, cmap
        self._lock = threading.Lock()
        self._count = 0

    def tap(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Pass frames through, keeping each until its window arrives."""
        for frame in frames:
            with self._lock:
                self._frames[self._count] = frame
                self._count += 1
                while len(self._frames) > self.keep:
                    self._frames.popitem(last=False)
            yield frame

    def add(self, window: dict) -> None:
        """Overlay one ``window`` message on its frames and write the ones not written yet."""
        import torch
        import torch.nn.functional as F

        from ..viz.overlay import overlay_frames

        indices = window["frame_indices"]
        with self._lock:
            for old in [i for i in self._frames if i < indices[0]]:
                del self._frames[old]
            frames = [self._frames.get(i) for i in indices]
        if any(f is None for f in frames) or window.get("maps", {}).get("spatial") is None:
            return
        new = self._writer.unwritten(indices)   # windows overlap: draw only the frames this one adds
        if not new.size:
            return
        clip = np.stack([frames[k] for k in new])
        maps = CompactArray.model_validate(window["maps"]["spatial"]).decode()[new]
        # bilinear, not nearest: a map of a few dozen cells should not look like a mosaic
        maps = F.interpolate(torch.from_numpy(maps)[:, None], size=clip.shape[1:3], mode="bilinear",
                             align_corners=False)[:, 0].clamp(0, 1).numpy()
        self._writer.write_window(overlay_frames(clip, maps, alpha=self.alpha, cmap=self.cmap),
                                  [indices[k] for k in new])

    def close(self, complete: bool = True) -> bool:
        """Finish the video and put it at ``path`` (``complete=False``, a stream cut short: remove
        it, leaving whatever was at ``path``). Whether a video was saved (none when no window came)."""
        try:
            self._writer.close()
        except BaseException:
            self.partial.unlink(missing_ok=True)
            raise
        if complete and self.partial.is_file():
            os.replace(self.partial, self.path)
            return True
        self.partial.unlink(missing_ok=True)
        return False
