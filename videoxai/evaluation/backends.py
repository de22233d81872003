"""Where tasks run: in this process, on local worker processes, or on a Ray cluster.

Every backend takes the tasks (each with its sample already loaded by the parent) and calls
``emit(row)`` in the parent for every row a worker computes, as soon as it arrives; the parent is
the only writer of the results file.

* ``inline``: this process, one task after another (``workers=0``; also takes a model object).
* ``local`` (default): ``workers`` spawned processes, each loading the model once and running
  with ``threads`` torch threads; one task per (video, method) at a time per worker, its rows
  streamed back one by one over the worker's own pipe. Workers stop when the parent goes away,
  also when it is killed. A worker killed in the middle of a task (out of memory on one clip) is
  replaced; what its task had not sent becomes error rows.
* ``ray``: ``ray.init(address=...)`` (a running cluster) or a local Ray instance with ``workers``
  CPUs; one remote task per video, a streaming generator whose rows the parent stores as they
  come. Ray is optional (``pip install 'videoxai[ray]'``); cluster nodes need videoxai installed
  and the model by the same spec. A task that Ray runs again after its node died sends its rows
  again; the runner stores each key once (``tests/test_ray_cluster.py`` kills a node mid-run).
  A clip whose worker dies on every one of Ray's tries (:data:`RAY_RETRIES`) costs what the
  method it was running had not sent, as on the local backend: error rows, computed again on
  resume; the clip's later methods go on in a new task (a method that ends its process on every
  clip costs its own results, not the others' or the run). On both backends, deaths before any
  method was done on a clip (a model that kills every worker) end the run after a few
  (:data:`DEATHS_BEFORE_PROGRESS`); after that, each costs only its own results. Every death is
  stored (error rows marked :data:`WORKER_DIED`), the last one too, and a resumed run computes
  those clips after the others; a run whose model has already explained a clip in this folder
  (``proven``) never stops on deaths.
  A local instance stops with the run (``ray.shutdown()``; Ray's own handler on SIGTERM). A
  driver killed with SIGKILL takes the raylet, the GCS and the workers down with it (Ray
  fate-shares them), but Ray's dashboard and runtime-env agents stay about 60 s, a timeout fixed
  in Ray, before they exit by themselves (``ray stop`` ends them sooner, and every other Ray
  process on the machine): see docs/evaluation.md, and the test that kills a driver.

Only a few tasks per worker are in flight, so samples are loaded (decoded) only shortly before
they are needed.
"""

from __future__ import annotations

import multiprocessing as mp
import numbers
import os
import re
import signal
import socket
import sys
import threading
import time
import traceback
from multiprocessing.connection import Connection, wait
from typing import Callable, Iterable, Iterator

from ..errors import InputError
from ..models.base import VideoModel
from .store import ExplanationRow, ResultRow
from .tasks import RunSettings, Task, WorkerContext, run_task

Emit = Callable[[ResultRow | ExplanationRow], None]

BACKENDS = ("inline", "local", "ray")


class WorkerFailed(RuntimeError):
    """A worker process died or could not start (rows computed before are kept)."""


#: exit status of a worker process that found the main script calling evaluate() as it imported it
EXIT_SCRIPT_RECURSES = 75

_UNGUARDED = ("put the call under `if __name__ == \"__main__\":` (the local backend's workers are new "
              "processes that import the main script first), or use backend='inline'")


def refuse_in_a_starting_worker() -> None:
    """End a spawned process that runs :func:`evaluate` while it imports the main script.

    A worker of the ``local`` backend is a new Python process that imports the script which
    started the run (multiprocessing's ``spawn``): a script calling ``evaluate()`` outside
    ``if __name__ == "__main__":`` would start an evaluation of its own in every worker. Without
    this check each worker died on the results folder's lock, and the run on "worker exited with
    code 1" and two tracebacks about a folder in use.
    """
    if getattr(mp.current_process(), "_inheriting", False):   # multiprocessing's bootstrap phase
        script = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "the main script"
        print(f"error: {script} calls videoxai's evaluate() as a worker process imports it: "
              f"{_UNGUARDED}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_SCRIPT_RECURSES)


def _failed(proc) -> WorkerFailed:
    """The error for a worker that is gone: its exit status, or why it could not start."""
    proc.join(timeout=5)
    if proc.exitcode == EXIT_SCRIPT_RECURSES:
        script = getattr(sys.modules.get("__main__"), "__file__", None) or "the main script"
        return WorkerFailed(f"worker {proc.name} could not start: {os.path.basename(script)} calls evaluate() "
                            f"again when the worker imports it; {_UNGUARDED}")
    return WorkerFailed(f"worker {proc.name} exited with code {proc.exitcode}")


def run(backend: str, tasks: Iterable[Task], settings: RunSettings, emit: Emit, *,
        workers: int, model: VideoModel | None = None, address: str | None = None, proven: bool = False) -> None:
    """Run ``tasks`` on ``backend`` (see the module docs). ``proven``: the model is known to work
    (an earlier run of this evaluation explained a clip with it), so worker deaths never end the
    run (:data:`DEATHS_BEFORE_PROGRESS`)."""
    if backend not in BACKENDS:
        raise InputError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "inline":
        _run_inline(tasks, settings, emit, model)
    elif backend == "local":
        _run_local(tasks, settings, emit, workers, proven)
    else:
        _run_ray(tasks, settings, emit, workers, address, proven)


# -- inline ----------------------------------------------------------------------------------------
def _run_inline(tasks, settings, emit, model) -> None:
    ctx = WorkerContext.create(settings, model)
    for task in tasks:
        for row in run_task(ctx, task):
            emit(row)


# -- local processes -------------------------------------------------------------------------------
def _worker_main(settings: RunSettings, conn: Connection) -> None:
    """A local worker: load the model once, then run the tasks the parent sends over ``conn``.

    ``conn`` is this worker's private end of a pipe whose other end only the parent holds, so a
    parent that dies (even by SIGKILL, even in the middle of sending a task) is an end-of-file
    here, and the worker exits instead of waiting forever.
    """
    _exit_with_parent()
    try:
        ctx = WorkerContext.create(settings)
    except BaseException as e:
        _send(conn, ("fatal", f"worker could not start: {type(e).__name__}: {e}"))
        return
    _send(conn, ("ready", None))   # from here on, a death is the task's (out of memory on one clip)
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone: nobody would store our rows
        if task is None:
            return
        try:
            for row in run_task(ctx, task):
                conn.send(("row", row))
            conn.send(("done", task.id))
        except (EOFError, OSError):
            return
        except BaseException:
            _send(conn, ("fatal", traceback.format_exc()))
            return


def _exit_with_parent() -> None:
    """End this worker as soon as its parent dies, even in the middle of a task.

    The pipe's end-of-file is seen only between tasks, and one task can take a minute: on Linux
    the kernel kills the worker with its parent (``PR_SET_PDEATHSIG``); elsewhere a watchdog
    thread notices that the parent changed within half a second.
    """
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before the kernel was told
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True, name="videoxai-parent-watch").start()


def _send(conn: Connection, message) -> None:
    try:
        conn.send(message)
    except OSError:
        pass


#: workers that may die in the middle of a task before any task of the run is done (beyond the
#: worker count), before the run stops: a model that kills every worker ends the run instead of
#: dying once per clip. Once a task is done the model works, and each death costs only what its
#: task had not sent: clips that need more memory than the machine has, one after another (one
#: long clip with several methods), ended the run, and every resume, at the same clips. A resumed
#: run starts with the clips whose workers died before (the others are done), so it counts no
#: deaths where the model already explained a clip (``proven``): four such clips stopped every
#: resume at the same place
DEATHS_BEFORE_PROGRESS = 2


def _run_local(tasks: Iterable[Task], settings, emit, workers: int, proven: bool = False) -> None:
    if workers < 1:
        raise InputError(f"the local backend needs workers >= 1, got {workers}")
    ctx = mp.get_context("spawn")  # fork after torch has started its thread pools can deadlock
    # a worker starts when there is a task for it: tasks come from the parent's loads, and a run
    # whose clips all failed to load (a folder of broken files, or only those left on resume)
    # started every worker, and waited for each to load the model and stop (48 s for 2 clips)
    conns: list[Connection | None] = [None] * workers
    procs: list = [None] * workers

    def start(i: int) -> None:
        mine, theirs = ctx.Pipe(duplex=True)
        p = ctx.Process(target=_worker_main, args=(settings, theirs), daemon=True, name=f"videoxai-eval-{i}")
        p.start()
        theirs.close()  # only the worker holds its end, so its death is our EOF and ours is its
        if conns[i] is not None:
            conns[i].close()
        conns[i], procs[i] = mine, p

    source = _split_per_method(tasks)
    busy: dict[int, Task] = {}           # worker -> the task it runs (one at a time, so a send never waits)
    ready: set[int] = set()              # workers that have loaded the model
    arrived: dict[int, set] = {}         # worker -> the rows of its task received so far
    deaths = None if proven else 0       # workers dead in a task, while no task is done (then None)
    exhausted = False
    try:
        while True:
            for i in range(workers):
                if i in busy or exhausted:
                    continue
                task = next(source, None)
                if task is None:
                    exhausted = True
                    break
                if procs[i] is None:
                    start(i)
                try:
                    conns[i].send(task)
                except OSError:
                    raise _failed(procs[i]) from None
                busy[i], arrived[i] = task, set()
            if exhausted and not busy:
                break
            for conn in wait([conns[i] for i in busy], timeout=1.0):
                i = conns.index(conn)
                try:
                    kind, payload = conn.recv()
                except (EOFError, OSError):
                    if i not in ready:
                        raise _failed(procs[i]) from None   # it never ran a task: the model, not a clip
                    # killed in the middle of a task (the kernel's out-of-memory killer, a crash in
                    # native code): the rest of that task are errors, and a new worker goes on
                    _emit_died(busy.pop(i), arrived.pop(i),
                               f"worker {procs[i].name} {_exit_reason(procs[i])} while computing this", emit)
                    if deaths is not None:
                        deaths += 1
                        if deaths > workers + DEATHS_BEFORE_PROGRESS:
                            raise WorkerFailed(f"{deaths} workers died in the middle of a task before any task was "
                                               f"done, the last one {_exit_reason(procs[i])}") from None
                    ready.discard(i)
                    conns[i].close()
                    conns[i] = procs[i] = None   # replaced when the next task comes
                    continue
                if kind == "row":
                    arrived[i].add(payload.key if isinstance(payload, ResultRow) else payload.method)
                    emit(payload)
                elif kind == "ready":
                    ready.add(i)
                elif kind == "done":
                    busy.pop(i)
                    deaths = None
                else:
                    raise WorkerFailed(payload)
    finally:
        for conn in conns:
            if conn is not None:
                _send(conn, None)
        for p in procs:
            if p is None:
                continue
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
        for conn in conns:
            if conn is not None:
                conn.close()


def _exit_reason(proc) -> str:
    """``killed by SIGKILL (the kernel's out-of-memory killer sends it)``, ``exited with code 1``."""
    proc.join(timeout=5)
    code = proc.exitcode
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}" + (" (the kernel's out-of-memory killer sends it)" if -code == signal.SIGKILL else "")
    return f"exited with code {code}"


#: the mark in an error row's details of a result lost with its worker: a resumed run computes
#: those clips after the others (:meth:`~videoxai.evaluation.store.ResultStore.died_clips`)
WORKER_DIED = "worker_died"


def _emit_died(task: Task, arrived: set, error: str, emit: Emit) -> None:
    """Error rows for what ``task`` had not sent when its worker died (computed again on resume,
    after the other clips); ``error`` says which worker and how it ended."""
    for method, specs in task.work.items():
        if method not in arrived:
            emit(ExplanationRow(task.key, method, status="error", error=error))
        for spec in specs:
            if (task.key, method, spec) not in arrived:
                emit(ResultRow(task.key, method, spec, None, "error", details={"error": error, WORKER_DIED: True}))


def _split_per_method(tasks: Iterable[Task]) -> Iterator[Task]:
    for task in tasks:
        yield from task.split()


# -- ray -------------------------------------------------------------------------------------------
_RAY_CONTEXT: dict[RunSettings, WorkerContext] = {}


def _ray_task(settings: RunSettings, task: Task):
    """A Ray remote generator: the rows of one video, as they are computed.

    Ray keeps worker processes alive between tasks, so the model is loaded once per process.
    """
    ctx = _RAY_CONTEXT.get(settings)
    if ctx is None:
        try:
            ctx = _RAY_CONTEXT[settings] = WorkerContext.create(settings)
        except Exception as e:   # the model, not a clip: the driver ends the run with this line
            raise WorkerFailed(f"a Ray worker could not start: {type(e).__name__}: {e}") from None
    yield from run_task(ctx, task)


#: times Ray runs a task again whose worker died (Ray's own default): a node lost in the middle of a
#: clip costs nothing; a clip that kills its worker every time (more memory than a node has) costs
#: its own results after the last try, as on the local backend, not the run
RAY_RETRIES = 3


def _run_ray(tasks: Iterable[Task], settings, emit, workers: int, address: str | None, proven: bool = False) -> None:
    try:
        import ray
    except ImportError:
        raise InputError("the ray backend needs Ray: pip install 'videoxai[ray]'") from None
    # the task's worker process (or its node) is gone: the kernel's or Ray's out-of-memory killer,
    # a crash in native code, a lost node; any other error is the model's or ours, and ends the run
    died = (ray.exceptions.WorkerCrashedError, ray.exceptions.OutOfMemoryError, ray.exceptions.NodeDiedError)
    started = False
    if not ray.is_initialized():
        kwargs = dict(include_dashboard=False, logging_level="WARNING", configure_logging=True)
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=max(1, workers), **kwargs)
        started = True
    try:
        remote = ray.remote(num_cpus=settings.threads, max_retries=RAY_RETRIES)(_ray_task)
        capacity = max(1, int(ray.cluster_resources().get("CPU", 1) // max(1, settings.threads)))
        pending: dict = {}          # generator -> task
        arrived: dict = {}          # generator -> the rows of its task received so far
        deaths = None if proven else 0   # tasks whose worker died (on every try), while no method is done (then None)
        source = iter(tasks)
        exhausted = False
        while True:
            while not exhausted and len(pending) < 2 * capacity:
                task = next(source, None)
                if task is None:
                    exhausted = True
                    break
                gen = remote.remote(settings, task)
                pending[gen], arrived[gen] = task, set()
            if exhausted and not pending:
                break
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for gen in ready:
                try:
                    ref = next(gen)
                except StopIteration:
                    pending.pop(gen)
                    arrived.pop(gen)
                    deaths = None
                    continue
                try:
                    row = ray.get(ref)
                except died as e:
                    # it ended 'a Ray task failed: The worker died unexpectedly', and every resume
                    # on the same clip: the missing results of the method it was running are errors
                    # (computed again on resume); the clip's later methods run in a new task, so a
                    # method that kills its worker on every clip costs its own results, not the run
                    why = f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0]}"
                    tries = f"on each of its {RAY_RETRIES + 1} tries" if RAY_RETRIES else "on its only try"
                    task, got = pending.pop(gen), arrived.pop(gen)
                    running, rest = _running_and_rest(task, got)
                    _emit_died(running, got, f"the Ray worker died while computing this, {tries} ({why})", emit)
                    if deaths is not None:
                        deaths += 1
                        if deaths > capacity + DEATHS_BEFORE_PROGRESS:
                            raise WorkerFailed(f"{deaths} Ray tasks lost their worker on every try ({RAY_RETRIES + 1} "
                                               f"each) before any method was done on a clip; the last: {why}") from None
                    if rest is not None:
                        gen = remote.remote(settings, rest)
                        pending[gen], arrived[gen] = rest, set()
                    continue
                except ray.exceptions.RayError as e:
                    # a RayTaskError's text is the worker's whole traceback flattened into the
                    # command's one error line ('ray::_ray_task() (pid=…) ctx = … ^^^^ File …'):
                    # the exception the task raised says what is wrong
                    cause = getattr(e, "cause", None)
                    if isinstance(cause, WorkerFailed):
                        raise WorkerFailed(str(cause)) from None
                    what = f"{type(cause).__name__}: {cause}" if isinstance(cause, BaseException) else \
                        f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0]}"
                    raise WorkerFailed(f"a Ray task failed: {what}") from None
                key = row.key if isinstance(row, ResultRow) else row.method
                if key not in arrived[gen]:   # not a retry's copy
                    arrived[gen].add(key)
                    if _done(pending[gen], row.method, arrived[gen]):
                        deaths = None   # a method was done on a clip: the model works (DEATHS_BEFORE_PROGRESS)
                emit(row)
    finally:
        if started:
            ray.shutdown()


def _done(task: Task, method: str, arrived: set) -> bool:
    """Whether every row of ``method`` in ``task`` is in ``arrived``."""
    return method in arrived and all((task.key, method, spec) in arrived for spec in task.work[method])


def _running_and_rest(task: Task, arrived: set) -> tuple[Task, Task | None]:
    """The method of ``task`` its worker was running when it died (the first one not done: a task
    runs its methods in order), as a task of its own, and the methods after it (``None``: none)."""
    methods = list(task.work)
    i = next((i for i, m in enumerate(methods) if not _done(task, m, arrived)), len(methods) - 1)
    running = Task(task.id, task.index, task.key, {methods[i]: task.work[methods[i]]}, task.sample)
    rest = {m: task.work[m] for m in methods[i + 1:]}
    return running, Task(task.id, task.index, task.key, rest, task.sample) if rest else None


def check_address(address: str | None, given_as: str = "") -> None:
    """Fail at once, in one line, where a cluster address (``HOST:PORT``, ``ray://HOST:PORT``)
    names a port nobody listens on: ``ray.init`` kept trying for minutes (a typo in the port, a
    head node not started), printing Ray's own connection warnings every few seconds. ``auto``
    and other forms are left to Ray. ``given_as``: where the address came from, for the message."""
    m = re.fullmatch(r"(?:ray://)?\[?([^\s/\[\]]+?)\]?:(\d{1,5})", (address or "").strip())
    if m is None:
        return
    try:
        socket.create_connection((m.group(1), int(m.group(2))), timeout=5).close()
    except (OSError, OverflowError) as e:
        why = getattr(e, "strerror", None) or str(e) or type(e).__name__
        where = f" ({given_as})" if given_as else ""
        raise InputError(f"cannot reach the Ray cluster at {address}{where}: {why}; is it running (ray start --head) "
                         "and is the address right?") from None


def default_workers() -> int:
    """Worker processes for this machine (its CPUs, at most 8)."""
    return max(1, min(8, os.cpu_count() or 1))


#: workers (local processes, or CPUs of a local Ray instance) per CPU of the machine, at most
WORKERS_PER_CPU = 4


def check_workers(workers) -> int:
    """``workers`` for the ``local`` backend or a local Ray instance: an integer from 1 to
    :data:`WORKERS_PER_CPU` × the machine's CPUs. Each worker is a process that loads its own
    copy of the model, so ``-j 1000000000`` would fork until the machine gives out; more workers
    than that only share the same CPUs."""
    cpus = os.cpu_count() or 1
    most = WORKERS_PER_CPU * cpus
    if isinstance(workers, bool) or not isinstance(workers, numbers.Integral) or not 1 <= workers <= most:
        raise InputError(f"workers (--workers/-j) must be an integer from 1 to {most} ({WORKERS_PER_CPU} × this "
                         f"machine's {cpus} CPUs), got {workers!r}")
    return int(workers)
