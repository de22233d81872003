"""``videoxai serve`` (the service) and ``videoxai stream`` (its command-line client)."""

from __future__ import annotations

import errno
import itertools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

from . import DEVICE_HELP, EXIT_ERROR, check_device, check_target, check_threads, given_path, printable

console = Console(soft_wrap=True)  # one line per message, whatever the terminal width
err_console = Console(stderr=True, soft_wrap=True)


def serve_cmd(
    model: str = typer.Option("demo", "--model", "-m",
                              help="Model spec: demo, hf:<id|dir>, torchvision:<name>[,weights=download], or a directory."),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (loopback by default; put a TLS proxy "
                                               "in front for anything else)."),
    port: int = typer.Option(8000, min=0, max=65535, help="TCP port (0: any free port)."),
    device: str = typer.Option("cpu", help=DEVICE_HELP, callback=check_device),
    threads: Optional[int] = typer.Option(None, help="Torch CPU threads for the model (default: torch's choice, "
                                                     "one per core). On a shared or small machine 1 is often "
                                                     "faster: idle threads spin.", callback=check_threads),
    method: str = typer.Option("staa", help="Default method for requests that name none."),
    api_key: Optional[str] = typer.Option(None, envvar="VIDEOXAI_API_KEY", show_default=False,
                                          help="Require this key (X-API-Key header; for WebSockets also the "
                                               "api_key field of the first message). Never logged."),
    max_upload_mb: float = typer.Option(200.0, help="Largest upload."),
    max_frames: int = typer.Option(1800, help="Most frames decoded from one upload."),
    max_pixels: int = typer.Option(1920 * 1080, help="Most pixels per frame (uploads and streams)."),
    max_streams: int = typer.Option(8, help="Concurrent WebSocket streams."),
    max_streams_per_client: int = typer.Option(4, "--streams-per-client", min=1,
                                               help="Concurrent streams from one client address (more are "
                                                    "refused: one address cannot hold every slot). Behind a "
                                                    "reverse proxy every client has the proxy's address, "
                                                    "unless --forwarded-allow-ips names it."),
    max_queued_jobs: int = typer.Option(8, help="Uploads queued or running at once."),
    max_queued_jobs_per_client: int = typer.Option(4, "--jobs-per-client", min=1,
                                                   help="Uploads queued or running at once from one client "
                                                        "address (more get 429)."),
    max_forward_passes: int = typer.Option(10_000, help="Most forward passes one job (or one stream window) may "
                                                        "cost; larger requests are refused when submitted."),
    shutdown_timeout: float = typer.Option(10.0, help="On SIGTERM/Ctrl-C, seconds running work may finish "
                                                      "before it is cancelled."),
    work_dir: Optional[Path] = typer.Option(None, parser=given_path, metavar="<path>", help="Folder for uploads and results; jobs kept there "
                                                       "survive a restart (default: a temporary folder removed "
                                                       "at exit)."),
    allowed_host: list[str] = typer.Option([], "--allowed-host",
                                           help="A name clients reach the server by, besides IP addresses, "
                                                "localhost and --host (repeatable; .example.com: the domain and "
                                                "its subdomains; *: any). Other Host headers are refused, "
                                                "against DNS rebinding."),
    forwarded_allow_ips: str = typer.Option("", "--forwarded-allow-ips", envvar="FORWARDED_ALLOW_IPS",
                                            show_default=False,
                                            help="Comma-separated addresses or networks of reverse proxies whose "
                                                 "X-Forwarded-For names the client (e.g. 127.0.0.1 or "
                                                 "10.0.0.0/24; *: any). Default: none, so every per-client limit "
                                                 "goes by the address a connection comes from, and a client "
                                                 "cannot name itself another one."),
    root_path: str = typer.Option("", "--root-path",
                                  help="The path prefix a reverse proxy serves the app under, e.g. /vx "
                                       "(JupyterHub, a shared host): job links and the viewer then point "
                                       "below it."),
) -> None:
    """Serve explanations over HTTP (uploads) and WebSocket (live streams), with a browser viewer."""
    import uvicorn
    from pydantic import ValidationError

    from ..errors import InputError
    from ..models import load_model
    from ..serve import ServeSettings, create_app, uvicorn_config

    _check_host(host)
    if root_path and (not root_path.startswith("/") or any(c in root_path for c in "?#\\ ")):
        raise InputError(f"--root-path {root_path!r}: a URL path starting with '/', e.g. /vx")
    root_path = root_path.rstrip("/")  # '/vx/' and '/' as a proxy's configuration writes them
    if work_dir is not None and work_dir.exists() and not work_dir.is_dir():
        raise InputError(f"--work-dir {work_dir} is a file, not a folder")
    try:
        settings = ServeSettings(api_key=api_key, max_upload_mb=max_upload_mb, max_frames=max_frames,
                                 max_pixels=max_pixels, max_streams=max_streams, max_queued_jobs=max_queued_jobs,
                                 max_streams_per_client=max_streams_per_client,
                                 max_queued_jobs_per_client=max_queued_jobs_per_client,
                                 max_forward_passes=max_forward_passes, shutdown_timeout_s=shutdown_timeout,
                                 default_method=method, work_dir=str(work_dir) if work_dir else None,
                                 allowed_hosts=(*allowed_host, host),  # the name it listens on is its own
                                 forwarded_allow_ips=tuple(a for a in forwarded_allow_ips.split(",") if a.strip()))
    except ValidationError as e:
        err = e.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else "option"
        option = {"allowed_hosts": "--allowed-host"}.get(field) or \
            "--" + (field[:-2] if field.endswith("_s") else field).replace("_", "-")
        msg = err["msg"].removeprefix("Value error, ")  # a validator's own message names the value
        raise InputError(f"{option}: {msg}" + ("" if msg != err["msg"] else f", got {err.get('input')!r}")) from None
    if work_dir is not None:  # a second server on the folder: one line now, not a failed startup later
        from ..serve.server import work_dir_lock

        try:
            with work_dir_lock(work_dir):
                pass
        except OSError as e:  # below a file, no permission: "Not a directory: DIR" named no option
            raise InputError(f"--work-dir {work_dir}: cannot create the folder ({e.strerror or e})") from None
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    # the port is taken before the model is loaded: a port in use is one line and exit 2 at once,
    # not a 'serving on …' line, uvicorn's log and exit 3 after the load; and --port 0 is told
    # the port it got, not ':0'
    sock = _listen_socket(host, port)
    shown = host if ":" not in host else f"[{host}]"
    with console.status(f"loading {model}…"):
        vm = load_model(model, device=device)
    app = create_app(vm, settings)
    config = uvicorn_config(app, host=host, port=sock.getsockname()[1], log_level="info", root_path=root_path)
    server = uvicorn.Server(config)
    console.print(f"serving [bold]{escape(printable(vm.name))}[/] ({vm.family}, {vm.num_frames} frames) with {escape(method)} "
                  f"on http://{shown}:{sock.getsockname()[1]}  (viewer: /, API: /docs"
                  + (f"; behind the proxy under {escape(root_path)}/" if root_path else "") + ")")
    server.run(sockets=[sock])


def _check_host(host: str) -> None:
    """``--host`` is an address or a name to listen on: an empty one, a URL or one with a port was
    refused naming ``--allowed-host`` (the server answers to the name it listens on, so it is
    added to those), an option the command line did not give."""
    import ipaddress

    from ..errors import InputError

    bad = not host.strip() or host != host.strip() or "/" in host or " " in host
    if not bad and ":" in host:  # an IPv6 address, or a name or IPv4 address with a port
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            bad = True
    if bad:
        raise InputError(f"--host {host!r}: give the address or name to listen on, such as 127.0.0.1, 0.0.0.0, ::1 "
                         "or myhost.lan (no scheme, port or path: the port is --port)")


def _listen_socket(host: str, port: int):
    """A TCP socket bound to ``host:port`` (``port`` 0: a free one), as uvicorn binds its own."""
    import socket

    from ..errors import InputError

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        hint = " (another server on it? --port 0 picks a free one)" if e.errno == errno.EADDRINUSE else ""
        raise InputError(f"cannot listen on {host}:{port}: {e.strerror or e}{hint}") from None
    sock.set_inheritable(True)
    return sock


def stream_cmd(
    source: str = typer.Argument(..., help="Video file or stream URL (rtsp://, http://, …)."),
    server: str = typer.Option("http://127.0.0.1:8000", "--server", "-s", help="The videoxai server."),
    api_key: Optional[str] = typer.Option(None, envvar="VIDEOXAI_API_KEY", help="The server's API key."),
    method: Optional[str] = typer.Option(None, help="Method (default: the server's)."),
    stride: Optional[int] = typer.Option(None, help="Frames between windows (default: half a window)."),
    window: Optional[int] = typer.Option(None, help="Frames per window (default: the model's)."),
    target: Optional[str] = typer.Option(None, help="Class to explain, by index or name, e.g. 3 or 'blue square' "
                                                    "(default: each window's prediction).", callback=check_target),
    live: Optional[bool] = typer.Option(None, "--live/--file",
                                        help="Live: send at the source's rate and let the server drop stale "
                                             "windows. File: lossless, at the server's pace. Default: live for "
                                             "URLs, file for files."),
    fps: Optional[float] = typer.Option(None, help="Send rate for --live (default: the source's)."),
    max_side: Optional[int] = typer.Option(320, help="Shrink frames to this longer side before sending (0: never)."),
    frame_format: str = typer.Option("jpeg", "--format", help="jpeg, png or rgb."),
    save: Optional[Path] = typer.Option(None, parser=given_path, metavar="<path>", help="Write the overlay video here (.mp4), once the stream has "
                                                   "ended (a stream cut short saves none)."),
    as_json: bool = typer.Option(False, "--json", help="Print each server message as one JSON line."),
    option: list[str] = typer.Option([], "--option", "-O", help="Method option KEY=VALUE (repeatable)."),
    timeout: float = typer.Option(60.0, help="Seconds to wait for the server's next message (a method that "
                                             "costs many forward passes per window needs more)."),
) -> None:
    """Stream a video to a videoxai server; print each window's prediction and temporal peak."""
    from ..errors import InputError
    from ..serve.client import OverlaySaver, StreamClient, source_fps, video_frames
    from .explain import _parse_options

    if frame_format not in ("jpeg", "png", "rgb"):
        raise InputError(f"--format must be jpeg, png or rgb, got {frame_format!r}")
    from ..data.container import local_file

    local = local_file(source)
    is_file = local is not None  # a file: URL too (read as a file, with its checks)
    if not is_file and "://" not in source:
        raise InputError(f"{source}: no such file (give a video file, or a stream URL such as rtsp://…)")
    live = (not is_file) if live is None else live
    if not 0 < timeout < float("inf"):  # inf: an OverflowError from the socket's deadline
        raise InputError(f"--timeout must be a positive, finite number of seconds, got {timeout:g}")
    if fps is not None and not 0 < fps < float("inf"):  # negative, zero or inf: every frame at once, silently
        raise InputError(f"--fps must be a positive, finite number of frames per second, got {fps:g}")
    # checked here, before the source is read and the server asked: the server's refusal named its
    # protocol's field ("invalid 'start' message: window: …"), and --max-side -1 named the video
    for name, count in (("--window", window), ("--stride", stride)):
        if count is not None and count < 1:
            raise InputError(f"{name} must be 1 frame or more, got {count}")
    if max_side is not None and max_side < 0:
        raise InputError(f"--max-side must be a number of pixels, or 0 to send frames at their size; got {max_side}")
    if fps is not None and not live:  # a file streams at the server's pace: the rate would be ignored
        raise InputError(f"--fps sets the rate of a live stream, and {source} streams as a file (at the server's "
                         "pace): add --live, or drop --fps")
    options = _parse_options(option)
    if save is not None and local is not None and save.is_file() and local.is_file() and save.samefile(local):
        # the overlay would replace the video it is drawn on
        raise InputError(f"--save {save} is the video being streamed; give another file name")
    # the source's first frame is read before the server is asked for a stream: a file that is not
    # a video, or a URL that does not answer, fails here with its own message, not mid-protocol
    frames = video_frames(source, max_side=max_side or None)
    first = next(frames, None)
    if first is None:
        raise InputError(f"{source}: no video frames")
    frames = itertools.chain([first], frames)
    src_fps = source_fps(source)
    send_fps = (fps or src_fps or 30.0) if live else None
    client = StreamClient(server, api_key=api_key, window=window, stride=stride, method=method,
                          options=options, target=target, live=live, frame_format=frame_format,
                          fps=send_fps, timeout=timeout)
    try:
        saver = OverlaySaver(save, fps=src_fps or 25.0) if save else None
    except InputError as e:
        raise InputError(f"--save {e}") from None
    if saver is not None:
        frames = saver.tap(frames)
    tally = StreamTally()
    ended, saved = False, False
    try:
        for msg in client.stream(frames):
            tally.add(msg)
            if as_json:
                print(json.dumps(msg), flush=True)
            else:
                _print(msg)
            if saver is not None and msg["type"] == "window":
                saver.add(msg)
        ended = True
    finally:
        if saver is not None:  # a stream cut short (an error, Ctrl-C) leaves no overlay that looks whole
            saved = saver.close(complete=ended)
    if not as_json:
        console.print(tally.summary())
    if tally.windows == 0 and tally.errors:  # nothing explained, and the error said why (too few frames,
        raise typer.Exit(EXIT_ERROR)         # every window failed): not a success for a script to build on
    if saved and not as_json:
        console.print(f"overlay: [bold]{escape(printable(str(save)))}[/]")


@dataclass
class StreamTally:
    """What a stream did, for the summary line: frames per second over the whole stream (first
    message to last), windows, dropped windows and the windows' latency percentiles."""

    start: float = field(default_factory=time.perf_counter)
    last: float | None = None
    frames: int = 0
    windows: int = 0
    dropped: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)

    def add(self, msg: dict) -> None:
        self.last = time.perf_counter()
        if msg["type"] == "window":
            self.windows += 1
            self.latencies_ms.append(float(msg["latency_ms"]))
            self.frames = max(self.frames, int(msg["frame_indices"][-1]) + 1)
        elif msg["type"] == "dropped":
            self.dropped = int(msg["total"])
        elif msg["type"] == "error":
            self.errors += 1
        elif msg["type"] == "end":   # the server's own count is the authority
            self.frames, self.windows, self.dropped = int(msg["frames"]), int(msg["windows"]), int(msg["dropped"])

    def summary(self) -> str:
        import numpy as np

        seconds = (self.last or self.start) - self.start
        rate = f"{self.frames / seconds:.1f} frames/s" if seconds > 0 else "– frames/s"
        line = (f"summary: {self.frames} frames in {seconds:.2f} s ({rate}), {self.windows} windows, "
                f"{self.dropped} dropped")
        if self.latencies_ms:
            p50, p95 = np.percentile(self.latencies_ms, [50, 95])
            line += f", latency p50 {p50:.0f} ms, p95 {p95:.0f} ms"
        return line


def _print(msg: dict) -> None:
    """One line per server message. Every string from the server is text (no Rich markup) with its
    control characters escaped (:func:`~videoxai.cli.printable`): a foreign server's ``dropped``
    reason ``[/x]`` raised Rich's MarkupError and ended the stream, and a label holding ``ESC [2J``
    cleared the terminal."""
    kind = msg["type"]

    def text(value) -> str:
        return escape(printable(str(value)))

    if kind == "ready":
        console.print(f"[bold]{text(msg['model']['name'])}[/] · {text(msg['method'])} · window {msg['window']}, "
                      f"stride {msg['stride']} · {'live' if msg['live'] else 'file'}")
    elif kind == "window":
        f = msg["frame_indices"]
        p, s = msg["prediction"], msg["smoothed"]
        peak = f[max(range(len(f)), key=lambda i: msg["temporal"][i])]
        console.print(f"window {msg['index']:>4}  frames {f[0]:>5}-{f[-1]:<5}  {text(p['label'])} {p['score']:.2f}  "
                      f"(smoothed {text(s['label'])} {s['score']:.2f})  peak frame {peak}  "
                      f"{msg['latency_ms']:.0f} ms")
    elif kind == "dropped":
        err_console.print(f"[yellow]dropped[/] frames {msg['first_frame']}-{msg['last_frame']} "
                          f"({msg['total']} windows so far): {text(msg['reason'])}")
    elif kind == "error":
        err_console.print(f"[red]error[/] {text(msg['error']['code'])}: {text(msg['error']['message'])}")
    elif kind == "end":
        console.print(f"end: {msg['frames']} frames, {msg['windows']} windows, {msg['dropped']} dropped", markup=False)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_cmd)
    app.command("stream")(stream_cmd)
