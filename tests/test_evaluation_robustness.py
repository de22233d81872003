"""Evaluation runs that meet each other or die (issue 12, item 11): one run per output folder,
reports written all or nothing, worker processes that end with their parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from videoxai.errors import InputError
from videoxai.evaluation import evaluate
from videoxai.evaluation import report as report_module
from videoxai.core.folder_lock import FolderLock
from videoxai.evaluation.runner import DATABASE

from test_evaluation import model_dir  # noqa: F401  (the fixture: a tiny checkpoint on disk)

ROOT = Path(__file__).resolve().parents[1]


def test_a_second_run_on_the_same_folder_is_refused_naming_the_first(tmp_path):
    with FolderLock(tmp_path):
        with pytest.raises(InputError, match=rf"in use by another evaluation \(pid {os.getpid()} on "):
            with FolderLock(tmp_path):
                pass
    with FolderLock(tmp_path):  # released on exit
        pass


def test_the_lock_of_a_killed_run_is_released(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from videoxai.core.folder_lock import FolderLock
        with FolderLock({str(tmp_path)!r}):
            print("locked", flush=True)
            time.sleep(60)
        """)], stdout=subprocess.PIPE, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        assert holder.stdout.readline().strip() == b"locked"
        with pytest.raises(InputError, match=f"pid {holder.pid}"):
            with FolderLock(tmp_path):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with FolderLock(tmp_path):  # kill -9 leaves the file, not the lock
        pass


@pytest.fixture(scope="module")
def evaluated(model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    evaluate(model_dir, "synthetic:2", "staa,random", "energy", out, backend="inline", progress=False)
    return out


def test_report_files_are_replaced_all_or_nothing(evaluated, monkeypatch):
    out = evaluated
    before = {name: (out / name).read_bytes() for name in ("report.md", "report.html", "summary.csv")}
    assert not list(out.glob("*.part"))

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed while rendering the report")

    monkeypatch.setattr(report_module, "_html", killed)
    with pytest.raises(KeyboardInterrupt):
        report_module.write_report(out / DATABASE, out)
    # nothing was replaced: the previous report is whole
    assert {name: (out / name).read_bytes() for name in before} == before
    monkeypatch.undo()
    paths = report_module.write_report(out / DATABASE, out)
    assert paths["html"].is_file() and paths["markdown"].is_file() and not list(out.glob("*.part"))


def test_a_worker_ends_with_its_parent_even_mid_task(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent("""
        import multiprocessing as mp, os, sys, time
        from videoxai.evaluation.backends import _exit_with_parent

        def busy(ready):
            _exit_with_parent()
            open(ready, "w").close()
            time.sleep(120)  # a long task: the pipe's end-of-file would not be seen

        if __name__ == "__main__":
            p = mp.get_context("spawn").Process(target=busy, args=(sys.argv[1],), daemon=True)
            p.start()
            print(p.pid, flush=True)
            time.sleep(120)
        """))
    ready = tmp_path / "ready"
    parent = subprocess.Popen([sys.executable, str(script), str(ready)], stdout=subprocess.PIPE,
                              env=dict(os.environ, PYTHONPATH=str(ROOT)))
    child = int(parent.stdout.readline())
    deadline = time.monotonic() + 120
    while not ready.exists():  # the child is inside its task
        assert time.monotonic() < deadline and parent.poll() is None, "the worker did not start"
        time.sleep(0.1)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 20
    while _alive(child):
        assert time.monotonic() < deadline, "the worker outlived its parent"
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie waiting for init to reap it is gone for our purpose
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False
