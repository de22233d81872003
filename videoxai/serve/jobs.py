"""Uploaded videos explained in the background: a bounded job queue and its worker thread.

An upload becomes a :class:`Job` in its own folder (``<work_dir>/jobs/<id>/``): the video, then
``result.json`` and ``overlay.mp4`` when done. One worker thread takes the jobs in turns by
client address (:meth:`JobQueue._next`), decodes, explains window by window on the model thread
(so live streams interleave with long jobs instead of waiting for them), renders the overlay, and
records progress. At most ``max_queued_jobs`` jobs are queued or running (more are refused with
503 and ``Retry-After``), ``max_queued_jobs_per_client`` of one client address (429); at most
``max_jobs_kept`` finished jobs are kept, the oldest of the client that keeps the most deleted
first; the upload itself is deleted as soon as its job ends.

A job's folder also holds ``job.json`` (:class:`JobRecord`), rewritten at each change of state,
so that a server restarted on the same ``work_dir`` (``videoxai serve --work-dir``) serves its
finished jobs again (:meth:`JobQueue.recover`); a job that was queued or running when the
server stopped is reported as failed (``server_restarted``), not re-run (a job that took the
server down would take it down again) and not forgotten (a 404 for a job the client saw
accepted reads as a bug). The default work directory is temporary, deleted when the server
stops: there a restart loses every job, and a 404 says so.

A job's work is bounded twice: its estimated forward passes are checked against
``max_forward_passes`` before it is accepted (:func:`check_work`), and the explanation runs
inside a :mod:`videoxai.work` scope with the job's budget and cancel event, so ``DELETE`` (or a
shutdown) stops it within one batch and a method that spends more than estimated is stopped.
Nothing depends on the working directory, and no two jobs share a file.
"""

from __future__ import annotations

import logging
import queue
import re
import shutil
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from pydantic import BaseModel, ValidationError

from ..data.container import packet_times, probe
from ..data.video import read_video, write_video
from ..data.video_windows import sliding_windows
from ..errors import VideoReadError
from ..viz.overlay import playback_fps, render_frames
from ..work import WorkBudget
from .engine import Engine, ExplainSpec, fit
from .protocol import (ErrorInfo, JobLinks, JobRequest, JobResult, JobState, JobStatus, Prediction,
                       ServiceError, VideoInfo, WindowResult, to_service_error)
from .settings import ServeSettings

log = logging.getLogger("videoxai.serve")

UPLOAD_NAME = "upload"
RESULT_NAME = "result.json"
OVERLAY_NAME = "overlay.mp4"
RECORD_NAME = "job.json"

#: the names :meth:`JobQueue.new_dir` gives job folders (only these are ever cleaned up)
_JOB_ID = re.compile(r"[0-9a-f]{32}")


class JobRecord(BaseModel):
    """What a job's folder remembers of it (``job.json``): enough to serve it after a restart."""

    id: str
    request: JobRequest
    video: VideoInfo
    state: JobState
    created: float
    started: float | None = None
    finished: float | None = None
    windows_done: int = 0
    windows_total: int | None = None
    error: ErrorInfo | None = None


@dataclass
class Job:
    """One upload and what became of it (fields change under :attr:`JobQueue.lock`)."""

    id: str
    dir: Path
    request: JobRequest
    video: VideoInfo
    state: JobState = "queued"
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    windows_done: int = 0
    windows_total: int | None = None
    error: ErrorInfo | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    budget: WorkBudget | None = None
    client: str | None = None  # the address that uploaded it (max_queued_jobs_per_client); not recorded

    @property
    def upload(self) -> Path:
        return self.dir / UPLOAD_NAME

    @property
    def result_path(self) -> Path:
        return self.dir / RESULT_NAME

    @property
    def overlay_path(self) -> Path:
        return self.dir / OVERLAY_NAME

    @property
    def record_path(self) -> Path:
        return self.dir / RECORD_NAME

    def record(self) -> JobRecord:
        return JobRecord(**{name: getattr(self, name) for name in JobRecord.model_fields})

    def save(self) -> None:
        """Write :meth:`record` to the job's folder, atomically (a crash leaves the old one)."""
        tmp = self.record_path.with_suffix(".part")
        tmp.write_text(self.record().model_dump_json())
        tmp.replace(self.record_path)

    def status(self, prefix: str = "/api/jobs") -> JobStatus:
        total = self.windows_total
        progress = 1.0 if self.state == "done" else (self.windows_done / total if total else 0.0)
        base = f"{prefix}/{self.id}"
        return JobStatus(id=self.id, state=self.state, progress=min(1.0, progress), windows_done=self.windows_done,
                         windows_total=total, error=self.error, created=self.created, started=self.started,
                         finished=self.finished,
                         links=JobLinks(status=base, result=f"{base}/result",
                                        overlay=f"{base}/{OVERLAY_NAME}" if self.request.overlay else None))


def check_video(path: Path, settings: ServeSettings) -> VideoInfo:
    """Probe an upload (no decoding) and enforce the server's limits on it.

    Raises:
        VideoReadError: not a video, no readable video stream, or one frame only (→ 415).
        ServiceError: too many frames or pixels (→ 413).

    An FFmpeg concat playlist is refused by :func:`~videoxai.data.container.probe` before FFmpeg
    opens it (one naming the upload itself exhausted the server's file descriptors).
    """
    try:
        info = probe(path)
    except VideoReadError as e:
        raise VideoReadError(hide_path(str(e), path)) from None
    w, h, n = int(info["width"]), int(info["height"]), int(info["frames"])
    if w < 1 or h < 1:
        raise ServiceError(415, "bad_video", "the video stream reports no frame size")
    if max(w, h) > settings.max_side or w * h > settings.max_pixels:
        raise ServiceError(413, "video_too_large", f"frames of {w}x{h} exceed the server's limit "
                                                   f"({settings.max_pixels} pixels, {settings.max_side} per side)")
    if n > settings.max_frames:
        raise ServiceError(413, "video_too_long", f"the video has {n} frames; the server's limit is "
                                                  f"{settings.max_frames}")
    if n == 1 and len(packet_times(path)) < 2:  # the packets confirm a header's count (demuxing only)
        # a PNG or JPEG (or a one-frame video) was explained as 8 copies of its frame
        raise VideoReadError("the upload has 1 frame (a still picture); a video classifier needs a moving "
                             "clip of 2 frames or more: send a video")
    return VideoInfo(frames=n, fps=info["fps"], width=w, height=h, duration=info["duration"])


def check_work(spec: ExplainSpec, video: VideoInfo, request: JobRequest, window: int,
               settings: ServeSettings) -> None:
    """Refuse (413 ``work_limit``) a job whose estimated forward passes exceed the limit."""
    if spec.passes_per_window is None:
        return  # not known in advance: the budget stops it at run time
    windows = 1 if request.sampling == "uniform" else count_windows(video.frames, window, request.stride or window)
    need = spec.passes_per_window * windows
    if need > settings.max_forward_passes:
        per = f"{spec.passes_per_window} per window × {windows} windows" if windows > 1 else "for the clip"
        raise ServiceError(413, "work_limit", f"{spec.method_name} with these options needs about {need} forward "
                                              f"passes ({per}); the server's limit is "
                                              f"{settings.max_forward_passes} per job")


#: bytes of a result per window besides its maps (predictions, temporal scores, indices)
WINDOW_OVERHEAD_BYTES = 2048


def check_result_size(spec: ExplainSpec, video: VideoInfo, request: JobRequest, window: int,
                      input_size: tuple[int, int], settings: ServeSettings) -> None:
    """Refuse (413 ``result_too_large``) a job whose result would exceed ``max_result_mb``.

    Inputs and work are bounded, but not what a small upload may ask back: sliding windows at
    stride 1 over 1800 frames with 256-pixel float16 maps are 1.5 GB of JSON, held in memory
    (several times over while serialised) and kept on disk.
    """
    windows = 1 if request.sampling == "uniform" else count_windows(video.frames, window, request.stride or window)
    need = windows * result_bytes_per_window(spec, video.height, video.width, window, input_size)
    if need > settings.max_result_bytes:
        raise ServiceError(413, "result_too_large",
                           f"the result would be about {need / 2**20:.0f} MiB ({windows} windows of maps); the "
                           f"server's limit is {settings.max_result_mb:g} MiB: use a larger stride, a smaller "
                           f"map_size, map_dtype=uint8 or fewer maps")


def result_bytes_per_window(spec: ExplainSpec, height: int, width: int, window: int,
                            input_size: tuple[int, int]) -> int:
    """About how many bytes of JSON one window adds to a job's result."""
    cells = 0
    if "spatial" in spec.maps:  # the whole frame, downsampled to map_size
        h, w = fit(height, width, spec.map_size) or (height, width)
        cells += h * w
    if "raw" in spec.maps:  # the method's own grid: at most the model's input
        cells += input_size[0] * input_size[1]
    per_value = 1 if spec.map_dtype == "uint8" else 2
    return window * cells * per_value * 4 // 3 + WINDOW_OVERHEAD_BYTES  # base64: 4 characters per 3 bytes


def _window_bytes(result: WindowResult) -> int:
    maps = (result.maps.spatial, result.maps.raw)
    return sum(len(m.data) for m in maps if m is not None) + WINDOW_OVERHEAD_BYTES


def hide_path(message: str, path: Path) -> str:
    """A library message without the server's file path (clients need not know the layout)."""
    return message.replace(str(path), "the upload")


def count_windows(frames: int, window: int, stride: int) -> int:
    """How many windows :func:`~videoxai.data.video_windows.sliding_windows` yields for ``frames`` frames."""
    if frames <= window:
        return 1
    full = (frames - window) // stride + 1
    last_start = (full - 1) * stride
    # a padded tail window when a frame lies beyond both the last window and the next start
    return full + (1 if frames > last_start + max(stride, window) else 0)


class JobQueue:
    """The jobs of one server and the thread that runs them.

    Args:
        engine: runs the model.
        settings: the server's limits.
        root: folder for the job folders (created).
        durable: whether ``root`` outlives the server (a ``work_dir`` the user chose) rather than
            being a temporary folder deleted when it stops; only changes what a 404 says.
    """

    def __init__(self, engine: Engine, settings: ServeSettings, root: Path, durable: bool = True) -> None:
        self.engine, self.settings, self.durable = engine, settings, durable
        self.root = Path(root) / "jobs"
        self.root.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._queue: queue.Queue[Job | None] = queue.Queue()  # one token per job submitted; None: stop
        self._pending: list[Job] = []      # submitted and not yet taken by the worker, oldest first
        self._turns: dict[str | None, int] = {}  # per client: the worker's count when it last took one of its jobs
        self._taken = 0
        self._thread: threading.Thread | None = None
        self._stopping = False

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Recover the jobs a previous server left in ``root``, then start the worker."""
        self.recover()
        self._thread = threading.Thread(target=self._work, name="videoxai-jobs", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self.lock:
            self._stopping = True  # jobs stopped now stay queued/running on disk: failed at the restart
            for job in self._jobs.values():
                job.cancel.set()
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout=30)

    def recover(self) -> None:
        """Take over the jobs whose folders are in ``root``: finished ones are served again, and
        ones that were queued or running failed with ``server_restarted`` (their uploads are
        deleted). Folders without a readable record (an upload in progress when the server died)
        are deleted; then the oldest finished jobs beyond ``max_jobs_kept`` are evicted."""
        found = []
        for folder in sorted(self.root.iterdir()):
            if not (folder.is_dir() and _JOB_ID.fullmatch(folder.name)):
                continue  # not a folder this queue made: not ours to judge
            job = _load(folder)
            if job is None:
                shutil.rmtree(folder, ignore_errors=True)
                continue
            if job.state in ("queued", "running"):
                job.state, job.finished = "failed", time.time()
                job.error = ErrorInfo(code="server_restarted", message="the server restarted before this job "
                                                                       "finished; upload the video again")
                _save_quietly(job)
            for leftover in (job.upload, job.result_path.with_suffix(".part"), job.record_path.with_suffix(".part")):
                leftover.unlink(missing_ok=True)
            if job.state != "done":
                job.overlay_path.unlink(missing_ok=True)
            found.append(job)
        with self.lock:
            for job in sorted(found, key=lambda j: j.created):
                self._jobs[job.id] = job
        if found:
            log.info("recovered %d jobs from %s", len(found), self.root)
        self._evict()

    # -- API ---------------------------------------------------------------------------------------
    def new_dir(self) -> tuple[str, Path]:
        """A fresh job id and its folder, for an upload in progress."""
        job_id = uuid.uuid4().hex
        path = self.root / job_id
        try:
            path.mkdir()
        except FileNotFoundError:
            # the work folder was removed while the server ran (a /tmp cleaner takes the default
            # one after days unused; an operator's rm): every upload was a 500 from then on
            log.warning("the work folder %s was removed while the server ran; making it again", self.root)
            path.mkdir(parents=True)
        except (NotADirectoryError, PermissionError) as e:
            # replaced by a file, or made unwritable: not the client's fault, nor a bug to trace
            log.error("cannot make a job folder in %s: %s; restore the work folder", self.root, e.strerror or e)
            raise ServiceError(503, "storage_unavailable", "the server cannot store uploads: its work folder "
                                                           "is not a writable folder any more; ask its operator",
                               headers={"Retry-After": "60"}) from None
        return job_id, path

    def check_room(self, client: str | None = None) -> None:
        """503 ``busy`` when the queue is full, 429 ``client_limit`` when ``client`` (an address)
        has ``max_queued_jobs_per_client`` jobs queued or running: asked before an upload is
        received, so that a client whose job would be refused is told so before it sends the whole
        video (and asked again by :meth:`submit`: uploads received meanwhile may have filled the
        queue)."""
        with self.lock:
            self._check_room(client)

    def _check_room(self, client: str | None) -> None:
        """:meth:`check_room`, under :attr:`lock`."""
        active = [j for j in self._jobs.values() if j.state in ("queued", "running")]
        if len(active) >= self.settings.max_queued_jobs:
            raise ServiceError(503, "busy", f"{len(active)} jobs are already queued or running; try again later",
                               headers={"Retry-After": "5"})
        # one address that kept the queue full (a job submitted as each ended) refused every other
        # client's upload with 503 for as long as it liked
        own = sum(j.client == client for j in active)
        if own >= self.settings.max_queued_jobs_per_client:
            raise ServiceError(429, "client_limit", f"this client already has {own} jobs queued or running, the "
                                                    "server's limit per client; wait for one to finish (or DELETE "
                                                    "it)", headers={"Retry-After": "5"})

    def submit(self, job_id: str, path: Path, request: JobRequest, video: VideoInfo,
               client: str | None = None) -> Job:
        """Queue a job whose upload is at ``path / UPLOAD_NAME``, sent from address ``client``; 503
        when the queue is full, 429 when ``client`` has its share of it."""
        job = Job(id=job_id, dir=path, request=request, video=video,
                  budget=WorkBudget(self.settings.max_forward_passes), client=client)
        with self.lock:
            self._check_room(client)
            job.save()
            self._jobs[job_id] = job
            self._pending.append(job)
        self._queue.put(job)
        return job

    def get(self, job_id: str) -> Job:
        with self.lock:
            job = self._jobs.get(job_id)
        if job is None and not _JOB_ID.fullmatch(job_id):
            # an id this server never hands out ('..', a path, 5 000 characters echoed back in full)
            # was told it "was deleted", sending the client to look for who deleted it
            shown = job_id if len(job_id) <= 40 else f"{job_id[:39]}…"
            raise ServiceError(404, "not_found", f"{shown!r} is not a job id: ids are the 32 hexadecimal digits "
                                                 "POST /api/jobs answered with")
        if job is None:
            why = "it was deleted (by a DELETE, or as one of the oldest finished jobs)"
            if not self.durable:
                why += (", or lost when the server restarted: this server keeps jobs in a temporary folder "
                        "(videoxai serve --work-dir keeps them across restarts)")
            raise ServiceError(404, "not_found", f"no job {job_id!r}: {why}")
        return job

    def status(self, job_id: str, prefix: str = "/api/jobs") -> JobStatus:
        """Job ``job_id``'s status, its links below ``prefix`` (the job routes as the client sees them)."""
        job = self.get(job_id)
        with self.lock:
            return job.status(prefix)

    def delete(self, job_id: str) -> None:
        """Cancel a queued or running job and delete its files."""
        job = self.get(job_id)
        job.cancel.set()
        with self.lock:
            self._jobs.pop(job_id, None)
            running = job.state == "running"
            if job.state == "queued":
                job.state = "cancelled"
        if not running:  # the worker deletes a running job's folder when it notices the cancel
            shutil.rmtree(job.dir, ignore_errors=True)

    def discard(self, path: Path) -> None:
        """Remove the folder of an upload that never became a job."""
        shutil.rmtree(path, ignore_errors=True)

    def counts(self) -> dict[str, int]:
        with self.lock:
            out: dict[str, int] = defaultdict(int)
            for j in self._jobs.values():
                out[j.state] += 1
            return dict(out)

    # -- worker ------------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            if self._queue.get() is None:
                return
            job = self._next()
            if job is None:
                continue
            try:
                self._work_on(job)
            except Exception as e:  # a bug, or a disk gone read-only while cleaning up: this job's
                # end, never the worker's (the jobs behind it would stay queued for ever)
                log.exception("the job worker failed on job %s", job.id)
                with self.lock:
                    if job.state in ("queued", "running"):
                        err = to_service_error(e)
                        job.state, job.finished = "failed", time.time()
                        job.error = ErrorInfo(code=err.code, message=hide_path(err.message, job.upload))

    def _next(self) -> Job | None:
        """The job to run next: the oldest of the client whose turn is longest past, so that
        clients take turns (``None``: every waiting job was deleted). First come, first served let
        one client's queued jobs (``max_queued_jobs_per_client`` of them, each up to
        ``max_forward_passes``) run before another client's job, submitted later, could start."""
        with self.lock:
            self._pending = [j for j in self._pending if j.id in self._jobs and not j.cancel.is_set()]
            if not self._pending:
                return None
            job = min(self._pending, key=lambda j: self._turns.get(j.client, -1))  # min: the oldest of equals
            self._pending.remove(job)
            self._taken += 1
            self._turns[job.client] = self._taken
            if len(self._turns) > 4 * self.settings.max_queued_jobs:  # one entry per address ever seen otherwise
                waiting = {j.client for j in self._pending} | {job.client}
                self._turns = {c: t for c, t in self._turns.items() if c in waiting}
            return job

    def _work_on(self, job: Job) -> None:
        """Run one job from the queue and record how it ended."""
        with self.lock:
            if job.cancel.is_set() or job.id not in self._jobs:
                return  # deleted (its folder is gone or going) or the server is stopping
            job.state, job.started = "running", time.time()
            _save_quietly(job)
        try:
            self._run(job)
            state, error = ("cancelled", None) if job.cancel.is_set() else ("done", None)
        except Exception as e:
            err = to_service_error(e)
            if job.cancel.is_set():  # deleted, or the server is stopping: stopped at a checkpoint
                state, error = "cancelled", None
            else:
                if err.status >= 500:
                    log.exception("job %s failed", job.id)
                state, error = "failed", ErrorInfo(code=err.code, message=hide_path(err.message, job.upload))
        if state != "done":  # a failed write (a full disk) leaves part of a file: give the space back
            for partial in (job.overlay_path, job.result_path.with_suffix(".part")):
                partial.unlink(missing_ok=True)
        with self.lock:
            job.state, job.error, job.finished = state, error, time.time()
            deleted = job.id not in self._jobs
            if not deleted and not (self._stopping and state == "cancelled"):
                _save_quietly(job)  # under the lock: a DELETE cannot remove the folder meanwhile
        job.upload.unlink(missing_ok=True)
        if deleted:
            shutil.rmtree(job.dir, ignore_errors=True)
        self._evict()

    def _evict(self) -> None:
        """Delete finished jobs beyond ``max_jobs_kept``: the oldest of the client (address) that
        keeps the most. Oldest first across all clients let one client that submitted
        ``max_jobs_kept`` small jobs in a row delete every other client's results before they
        were downloaded (a 404 for a job just seen done); now it deletes its own first."""
        with self.lock:
            ended = sorted((j for j in self._jobs.values() if j.state in ("done", "failed", "cancelled")),
                           key=lambda j: j.finished or 0.0)
            kept: dict[str | None, list[Job]] = defaultdict(list)  # per client, oldest first
            for j in ended:
                kept[j.client].append(j)
            old = []
            for _ in range(max(0, len(ended) - self.settings.max_jobs_kept)):
                # the client keeping the most; between equals, the one whose oldest finished first
                client = max(kept, key=lambda c: (len(kept[c]), -(kept[c][0].finished or 0.0)))
                old.append(kept[client].pop(0))
                if not kept[client]:
                    del kept[client]
            for j in old:
                del self._jobs[j.id]
        for j in old:
            shutil.rmtree(j.dir, ignore_errors=True)

    def _run(self, job: Job) -> None:
        t0 = time.perf_counter()
        req, engine = job.request, self.engine
        spec = engine.prepare(req.method, req.options, req.target, req.maps,
                              req.map_size or self.settings.map_size, req.map_dtype)
        window = engine.model.num_frames
        limit = self.settings.max_pixels  # every decoded frame, not only the size the header declared
        if req.sampling == "uniform":
            clips = iter([read_video(job.upload, num_frames=window, max_pixels=limit)])
            total = 1
        else:
            stride = req.stride or window
            clips = sliding_windows(job.upload, num_frames=window, stride=stride, max_pixels=limit)
            total = count_windows(job.video.frames, window, stride)
        with self.lock:
            job.windows_total = total

        windows: list[WindowResult] = []
        result_bytes = 0  # a header that under-reports frames escapes the estimate at submission
        prob_sum: np.ndarray | None = None
        writer: OverlayWriter | None = None
        try:
            for k, clip in enumerate(clips):
                if job.cancel.is_set():
                    return
                if int(clip.indices.max()) >= self.settings.max_frames:  # the container under-reported
                    raise ServiceError(413, "video_too_long", f"the video has more than {self.settings.max_frames} "
                                                              "frames, the server's limit")
                exp, result, _ = engine.call_sync(engine.explain_window, clip.frames, clip.indices.tolist(), k,
                                                  spec, None, clip.fps, job.cancel, job.budget)
                result_bytes += _window_bytes(result)
                if result_bytes > self.settings.max_result_bytes:
                    raise ServiceError(413, "result_too_large", f"the result passed the server's limit of "
                                                                f"{self.settings.max_result_mb:g} MiB after "
                                                                f"{k + 1} windows")
                windows.append(result)
                prob_sum = exp.probs.astype(np.float64) if prob_sum is None else prob_sum + exp.probs
                if req.overlay:
                    size = fit(clip.height, clip.width, self.settings.overlay_max_side)
                    if req.sampling == "uniform":
                        write_video(render_frames(exp, clip, size=size), job.overlay_path, fps=playback_fps(clip))
                    else:
                        if writer is None:
                            writer = OverlayWriter(job.overlay_path, fps=playback_fps(clip))
                        # only the frames this window adds: drawing every frame of every window
                        # took twice as long as explaining it at 1080p, stride 1 (7 of 8 thrown away)
                        new = writer.unwritten(clip.indices)
                        if new.size:
                            writer.write_window(render_frames(exp, clip, size=size, positions=new),
                                                clip.indices[new])
                with self.lock:
                    job.windows_done = k + 1
                    job.windows_total = max(job.windows_total or 0, k + 1)
        finally:
            if writer is not None:
                writer.close()
        if not windows:
            raise ServiceError(415, "bad_video", "the video has no decodable frame")

        probs = prob_sum / len(windows)
        top = int(probs.argmax())
        frame_indices, temporal = merge_temporal(windows)
        result = JobResult(id=job.id, model=engine.model.name, method=spec.method_name, options=spec.options,
                           video=job.video,
                           prediction=Prediction(index=top, label=engine.model.labels[top], score=float(probs[top])),
                           frame_indices=frame_indices, temporal=temporal, windows=windows,
                           overlay=job.status().links.overlay,
                           seconds=time.perf_counter() - t0)
        tmp = job.result_path.with_suffix(".part")
        tmp.write_text(result.model_dump_json(exclude_none=True))
        tmp.replace(job.result_path)  # readers never see half a file


def _save_quietly(job: Job) -> None:
    """:meth:`Job.save`, logging rather than failing a job whose record cannot be written (a full
    disk costs that job its survival across a restart, not its result)."""
    try:
        job.save()
    except OSError as e:
        log.warning("cannot write the record of job %s: %s", job.id, e)


def _load(folder: Path) -> Job | None:
    """The job recorded in ``folder``, or ``None`` (no record, or an unreadable one)."""
    path = folder / RECORD_NAME
    try:
        record = JobRecord.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        return None  # an upload that never became a job
    except (OSError, ValidationError) as e:
        log.warning("dropping job folder %s: unreadable %s (%s)", folder.name, RECORD_NAME, e)
        return None
    if record.id != folder.name:
        log.warning("dropping job folder %s: its %s names job %s", folder.name, RECORD_NAME, record.id)
        return None
    return Job(dir=folder, **{name: getattr(record, name) for name in JobRecord.model_fields})


def merge_temporal(windows: list[WindowResult]) -> tuple[list[int], list[float]]:
    """Per source frame: the mean score of the windows that contain it, normalised to sum 1.

    A frame repeated inside one window (padding at the end of a video, or sampling a short video)
    counts once for that window, with the sum of its scores.
    """
    total: dict[int, float] = defaultdict(float)
    seen: dict[int, int] = defaultdict(int)
    for w in windows:
        per_frame: dict[int, float] = defaultdict(float)
        for i, s in zip(w.frame_indices, w.temporal):
            per_frame[i] += s
        for i, s in per_frame.items():
            total[i] += s
            seen[i] += 1
    order = sorted(total)
    mean = np.array([total[i] / seen[i] for i in order], dtype=np.float64)
    mean = mean / mean.sum() if mean.sum() > 0 else np.full(len(order), 1.0 / max(1, len(order)))
    return order, mean.tolist()


class OverlayWriter:
    """Writes an overlay video window by window (H.264 in MP4), never holding the whole video.

    Each source frame is written once, from the first window that contains it; padding repeats
    at the end of the video are skipped.
    """

    def __init__(self, path: Path, fps: float) -> None:
        self.path = path
        self._rate = Fraction(float(fps)).limit_denominator(1001)
        self._out = av.open(str(path), mode="w", options={"movflags": "+faststart"})
        self._stream = None
        self._last = -1
        self._pts = 0

    def unwritten(self, indices) -> np.ndarray:
        """Positions in a window (source ``indices``) of the frames :meth:`write_window` would
        write: each source frame past the last one written, once."""
        last, new = self._last, []
        for position, index in enumerate(indices):
            if index > last:
                last = int(index)
                new.append(position)
        return np.asarray(new, dtype=np.int64)

    def write_window(self, frames: np.ndarray, indices) -> None:
        """``frames``: a window's rendered frames ``(T, H, W, 3)``; ``indices``: their source indices."""
        for rgb, index in zip(frames, indices):
            if index <= self._last:
                continue
            self._last = int(index)
            self._encode(rgb)

    def _encode(self, rgb: np.ndarray) -> None:
        # yuv420p needs even sides: repeat the last row/column rather than crop content
        rgb = np.pad(rgb, ((0, rgb.shape[0] % 2), (0, rgb.shape[1] % 2), (0, 0)), mode="edge")
        if self._stream is None:
            s = self._out.add_stream("libx264", rate=self._rate)
            s.width, s.height, s.pix_fmt = rgb.shape[1], rgb.shape[0], "yuv420p"
            s.time_base = 1 / self._rate
            s.options = {"crf": "20", "preset": "veryfast"}
            self._stream = s
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        # not stream.time_base: the MP4 muxer replaces it (e.g. 1/10240) once the header is written
        frame.pts, frame.time_base = self._pts, 1 / self._rate
        self._pts += 1
        self._out.mux(self._stream.encode(frame))

    def close(self) -> None:
        if self._stream is None:  # nothing was written: leave no empty file behind
            self._out.close()
            self.path.unlink(missing_ok=True)
            return
        self._out.mux(self._stream.encode(None))
        self._out.close()
