"""Evaluation runs that meet each other or die (issue 12, item 11): one run per output folder,
reports written all or nothing, worker processes that end with their parent."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
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
    assert not list(out.glob("*.part")) and not list(out.glob(".*.tmp"))

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed while rendering the report")

    monkeypatch.setattr(report_module, "_html", killed)
    with pytest.raises(KeyboardInterrupt):
        report_module.write_report(out / DATABASE, out)
    # nothing was replaced: the previous report is whole
    assert {name: (out / name).read_bytes() for name in before} == before
    monkeypatch.undo()
    paths = report_module.write_report(out / DATABASE, out)
    assert paths["html"].is_file() and paths["markdown"].is_file() and not list(out.glob(".*.tmp"))


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


def test_two_report_writers_at_once_publish_only_whole_files(evaluated, monkeypatch):
    """Two ``--report-only`` writers on one folder shared ``report.md.part``: writer A had written
    its file in full and was about to rename it when writer B opened the same name and had written
    half of its own; A's rename published B's half file. Played here in that order with two
    threads: each writer now has temporary files of its own, and report.md is whole."""
    import pathlib
    import threading

    from videoxai.stabn.atomic import TEMPORARY

    out = evaluated
    dead = out / f".report.md.{'0' * 32}.tmp"   # a writer killed before its rename, an hour ago
    dead.write_bytes(b"half")
    os.utime(dead, (time.time() - 3600, time.time() - 3600))
    whole = report_module.write_report(out / DATABASE, out)["markdown"].read_bytes()
    assert not dead.exists()
    a_written, b_half, a_done = threading.Event(), threading.Event(), threading.Event()
    write_bytes = pathlib.Path.write_bytes

    def interleaved(self, data):
        who = threading.current_thread().name
        if "report.md" not in self.name or who not in ("writer-a", "writer-b"):
            return write_bytes(self, data)
        if who == "writer-a":
            n = write_bytes(self, data)
            a_written.set()
            assert b_half.wait(10)     # B is in the middle of its write as A renames
            return n
        assert a_written.wait(10)
        write_bytes(self, data[: len(data) // 2])
        b_half.set()
        assert a_done.wait(10)
        return write_bytes(self, data)

    monkeypatch.setattr(pathlib.Path, "write_bytes", interleaved)
    errors = []

    def writer(done=None):
        try:
            report_module.write_report(out / DATABASE, out)
        except BaseException as e:  # noqa: BLE001 (reported below)
            errors.append(e)
        finally:
            if done is not None:
                done.set()

    a = threading.Thread(target=writer, args=(a_done,), name="writer-a")
    b = threading.Thread(target=writer, name="writer-b")
    a.start()
    b.start()
    a.join(30)
    published = (out / "report.md").read_bytes()   # A has renamed; B has not finished
    b.join(30)
    assert published == whole and not errors
    assert (out / "report.md").read_bytes() == whole
    assert not [p.name for p in out.iterdir() if TEMPORARY.fullmatch(p.name) or p.name.endswith(".part")]


def test_a_results_file_damaged_inside_names_itself_on_resume_and_in_the_report(tmp_path):
    """SQLite finds a damaged page only when it reads it: a results file whose results table was
    overwritten (a disk error, a copy cut short) opened, and the resumed run or --report-only
    ended on 'DatabaseError: database disk image is malformed', naming neither the file nor what
    to do. Now it is one line naming both; a file that is no SQLite database at all is still
    'not a videoxai results database'."""
    import sqlite3

    from videoxai.evaluation.store import ResultStore

    out = tmp_path / "eval"
    run = dict(methods="random", metrics="sparseness", out=out, backend="inline", progress=False, report=False)
    assert evaluate("demo", "synthetic:2", **run).computed == 2
    db = out / DATABASE
    with sqlite3.connect(db) as c:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = c.execute("PRAGMA page_size").fetchone()[0]
        root = c.execute("SELECT rootpage FROM sqlite_master WHERE name = 'results'").fetchone()[0]
    with open(db, "r+b") as f:   # the results table's page, all but its first bytes
        f.seek((root - 1) * page_size + 8)
        f.write(np.random.default_rng(0).bytes(page_size - 8))
    said = (f"{db} is damaged (database disk image is malformed): move it aside and run again to start over "
            f"(`sqlite3 {db} .recover` may save its rows)")
    with pytest.raises(InputError) as e:
        evaluate("demo", "synthetic:2", **run)
    assert str(e.value) == said
    with pytest.raises(InputError) as e:
        report_module.write_report(db, out)
    assert str(e.value) == said
    db.write_bytes(b"not a database at all" * 100)
    with pytest.raises(InputError, match=re.escape(f"{db} is not a videoxai results database: file is not a database")):
        ResultStore(db)


def test_a_dataset_where_every_clip_fails_on_more_workers_than_clips_is_reported_and_retried(tmp_path):
    """Held out: every video of the folder is unreadable and -j is larger than the clip count. The
    run ends normally with one error row per result (none twice) and a report that says why; once
    one video is fixed, a resume computes every error again: the fixed clip's results, and the
    other's errors once more, each key still once."""
    from videoxai.data.video import write_video
    from videoxai.evaluation.store import ResultStore

    data = tmp_path / "data"
    data.mkdir()
    (data / "a.mp4").write_bytes(b"")
    (data / "b.mp4").write_bytes(b"not a video" * 50)
    run = dict(methods="random", metrics="sparseness,energy", out=tmp_path / "out", backend="local",
               workers=4, progress=False)
    s = evaluate("demo", f"folder:{data}", **run)
    assert (s.computed, s.errors, s.skipped) == (4, 4, 0)
    md = (tmp_path / "out" / "report.md").read_text()
    assert "2 clips; results: 0 ok, 0 n/a, 4 errors." in md
    assert "a.mp4: the file is empty — a.mp4 / random" in md
    write_video(np.zeros((8, 24, 32, 3), np.uint8), data / "b.mp4", fps=8)
    with pytest.warns(UserWarning, match=r"1 clip \(e.g. 'b.mp4'\) has other content"):
        s = evaluate("demo", f"folder:{data}", **run)
    assert (s.computed, s.errors, s.skipped) == (4, 2, 0)
    with ResultStore(s.database) as store:
        rows = store.rows()
    assert len(rows) == len({r.key for r in rows}) == 4
    assert {(r.video, r.metric, r.status) for r in rows} == {
        ("a.mp4", "sparseness", "error"), ("a.mp4", "energy", "error"), ("b.mp4", "sparseness", "ok"),
        ("b.mp4", "energy", "n/a")}
