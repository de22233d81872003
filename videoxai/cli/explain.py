"""``videoxai explain``, ``demo`` and ``models`` (``methods`` is in :mod:`.catalogue`)."""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ..core.output_folder import make_directory, remove_if_empty
from . import DEVICE_HELP, check_device, check_option_digits, check_position, check_target, given_path, printable

console = Console()


def _parse_options(pairs: list[str]) -> dict:
    """``["n_steps=32", "baseline=blur"]`` → ``{"n_steps": "32", "baseline": "blur"}``: text values,
    typed by the method's declarations (:mod:`videoxai.options`)."""
    from ..options import parse_assignments

    return check_option_digits(parse_assignments(pairs, where="-O"), "-O ")


def _scoped_options(pairs: list[str]) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """``-O`` values → ``(unscoped, {method: scoped})``: ``n_steps=32`` applies to every method,
    ``rise.n_samples=20`` to ``rise`` only. Values stay text, typed by the method's declarations
    (:mod:`videoxai.options`)."""
    from ..options import parse_assignments

    unscoped: list[str] = []
    scoped: dict[str, list[str]] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        method, dot, name = key.partition(".")
        if eq and dot:
            scoped.setdefault(method.strip(), []).append(f"{name}={value}")
        else:
            unscoped.append(pair)
    return (check_option_digits(parse_assignments(unscoped, where="-O"), "-O "),
            {m: check_option_digits(parse_assignments(p, where=f"-O {m}."), f"-O {m}.") for m, p in scoped.items()})


def _method_options(method: str, pairs: list[str]) -> tuple[list[str], dict[str, dict[str, str]], str | None]:
    """``--method`` (names or specs, comma-separated, as ``evaluate --methods`` takes them) and the
    ``-O`` values → ``(specs, {spec: its -O options}, working_size or None)``, every option
    checked against its method's declaration, so that mistakes fail before a model or a video
    is loaded."""
    from ..errors import InputError
    from ..explain import EXPLAIN_OPTIONS, _split_spec
    from ..methods import get as get_method
    from ..options import parse_spec, split_top_level

    specs = split_top_level(method, ",")
    if not specs:
        raise InputError(f"--method {method!r} names no method; give one or several, e.g. staa or "
                         "rise(n_samples=500),gradcam")
    repeated = next((spec for k, spec in enumerate(specs) if spec in specs[:k]), None)
    if repeated is not None:
        # the second run would only overwrite the first one's files
        raise InputError(f"--method names {repeated!r} twice; give each method (or spec) once")
    unscoped, scoped = _scoped_options(pairs)
    working_size = unscoped.pop("working_size", None)  # explain()'s own option, for every method
    # explain()'s other options are not the methods': the generic "has no option" error sent the
    # user to -O METHOD.refine, which no method has either
    if "refine" in unscoped:
        raise InputError("-O refine=…: refinement is set with --refine/--no-refine, or per method in its "
                         "spec, e.g. --method 'rise(refine=true)'")
    for scope, given in scoped.items():
        own = sorted(set(given) & set(EXPLAIN_OPTIONS))
        if own:
            raise InputError(f"-O {scope}.{own[0]}=…: {own[0]} is not an option of the method; give it in "
                             f"its spec, e.g. --method '{scope}({own[0]}=…)'")
    for spec in specs:
        check_option_digits(parse_spec(spec)[1], f"--method {spec!r}: ")
        _split_spec(spec)  # unknown methods and bad option values in a spec fail here
    parsed = {spec: parse_spec(spec) for spec in specs}   # the options each spec gives itself
    names = [name for name, _ in parsed.values()]
    for scope in scoped:
        if scope not in names:
            raise InputError(f"-O {scope}.…: {scope!r} is not one of the methods ({', '.join(dict.fromkeys(names))})")
    out = {}
    for spec, (name, in_spec) in parsed.items():
        cls = get_method(name)
        given = {**unscoped, **scoped.get(name, {})}
        declared = cls.declared_options()
        aliases = {a for o in declared.values() for a in o.aliases}
        for key in unscoped:
            if key not in declared and key not in aliases and len(specs) > 1:
                raise InputError(f"-O {key}=…: method {name!r} has no option {key}; give it to the methods "
                                 f"that have it as -O METHOD.{key}=VALUE")
        both = sorted(set(cls.canonical_names(in_spec)) & set(cls.canonical_names(given)))
        if both:
            raise InputError(f"method {name!r}: option {both[0]} given both in --method {spec!r} and with -O")
        cls.parse_options(given)
        # under the options' own names: an alias passed on as it is reached vx.explain as a keyword
        # (IG's `-O method=riemann_left` collided with explain's own `method`: a TypeError)
        out[spec] = cls.canonical_names(given)
    return specs, out, working_size


def explain_cmd(
    video: Path = typer.Argument(..., help="Video file: any format FFmpeg reads (mp4, mov, avi, webm, mkv, gif, …); or a folder of numbered frames (img_00001.jpg, …), or a glob naming one series in it ('frames/img_*.jpg')."),
    model: str = typer.Option("demo", "--model", "-m", help="Model spec: demo, hf:<id|dir>, torchvision:<name> (add ,weights=download to fetch its weights), or a directory."),
    method: str = typer.Option("staa", "--method", help="Method name or spec, or several separated by commas, e.g. staa or 'rise(n_samples=500), gradcam' (as evaluate --methods takes them)."),
    out: Path = typer.Option(Path("videoxai_out"), "--out", "-o", parser=given_path, metavar="<path>", help="Output directory. The files an earlier explain run wrote there and this one does not write again are removed (they are listed in its videoxai_files.json). A run stopped partway changes nothing there."),
    target: Optional[str] = typer.Option(None, help="Class to explain, by index or name, e.g. 3 or 'blue square' (default: the prediction).", callback=check_target),
    full_resolution: bool = typer.Option(False, "--full-resolution", help="Perturb and differentiate the original frames instead of the model's view of them (its crop box at its input size; slower, finer gradient maps)."),
    refine: Optional[bool] = typer.Option(None, "--refine/--no-refine", help="Threshold/focus/smooth the maps (default: per method)."),
    start: Optional[str] = typer.Option(None, help="Where to start: seconds ('2.5s'), a player's time ('1:30') or a frame number ('60').", callback=check_position),
    end: Optional[str] = typer.Option(None, help="Where to stop (excluded): seconds ('7s'), a player's time ('1:45') or a frame number ('120').", callback=check_position),
    window_stride: Optional[int] = typer.Option(None, "--window-stride", help="Explain sliding windows of the model's clip length over the whole video (or --start/--end), this many frames apart; the report gets a timeline, and each method's windows are saved as METHOD.npz (vx.VideoExplanation.load)."),
    frame_step: int = typer.Option(1, "--frame-step", help="With --window-stride: use every N-th frame of the video."),
    fps: Optional[float] = typer.Option(None, "--fps", help="Frame rate of a folder of frames (pictures carry none; without it --start/--end are frame numbers and the timeline counts frames)."),
    device: str = typer.Option("cpu", help=DEVICE_HELP, callback=check_device),
    option: list[str] = typer.Option([], "--option", "-O", help="Method option KEY=VALUE (repeatable), e.g. -O n_steps=32; METHOD.KEY=VALUE gives it to one of several methods, e.g. -O rise.n_samples=500."),
) -> None:
    """Explain a video: overlay videos, temporal curves and an HTML report."""
    from ..models import load_model
    from ..workflows import explain_video

    from ..data.container import probe
    from ..data.frame_folder import names_frame_series
    from ..errors import InputError, VideoReadError

    # the cheap checks first: methods and options, then the file, then (slow) the model
    methods, options, working_size = _method_options(method, option)
    if full_resolution and working_size not in (None, "full"):
        # two answers to one question: neither silently wins
        raise InputError(f"--full-resolution and -O working_size={working_size} contradict each other; give one")
    working_size = working_size or ("full" if full_resolution else "model")  # -O working_size=full too
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; give a directory for the report and overlays")
    if frame_step != 1 and window_stride is None:
        # without windows the clip is model.num_frames frames sampled over the video: no step to apply
        raise InputError(f"--frame-step {frame_step} applies to sliding windows; give --window-stride too")
    # named as the options they are, before the model loads (the reader's message named the video)
    if window_stride is not None and window_stride < 1:
        raise InputError(f"--window-stride must be at least 1 frame, got {window_stride}")
    if frame_step < 1:
        raise InputError(f"--frame-step must be at least 1 (every frame), got {frame_step}")
    if fps is not None and not (fps > 0 and math.isfinite(fps)):
        raise InputError(f"--fps must be a number of frames per second > 0, got {fps:g}")
    folder = names_frame_series(video)
    if not folder:
        if fps is not None:
            raise InputError(f"--fps applies to a folder of frames; {video} is a video file with its own frame rate")
        if video.exists() and not video.is_file():  # /dev/zero, a named pipe: it was 'no such video file'
            raise VideoReadError(f"{video} is not a regular file (a device, a pipe or a socket); give a video file")
        if not video.is_file():
            raise VideoReadError(f"no such video file: {video}")
    probe(video)  # not a video (or no series of pictures), or no readable header: say so before loading a model
    if not folder:  # a run writes no picture: only a file can be one of its outputs
        _check_video_is_not_an_output(video, out, methods)
    try:  # and an --out that cannot be made (below a file, no permission): before the work, not after
        created = make_directory(out)
    except OSError as e:
        raise InputError(f"--out {out}: cannot create the directory ({e.strerror or e})") from None
    try:
        with console.status(f"loading {escape(model)}…"):
            vm = load_model(model, device=device)
        target_index = None if target is None else vm.class_from_text(target)
        with _staging(out) as staging, console.status("explaining…") as status:
            result = explain_video(video, vm, methods, staging, target=target_index, refine=refine,
                                   working_size=working_size,
                                   start=start, end=end, window_stride=window_stride, frame_step=frame_step, fps=fps,
                                   options=options,
                                   on_method=lambda m: status.update(f"explaining with {escape(m)}…"),
                                   on_window=lambda m, k: status.update(
                                       f"explaining with {escape(printable(m))}: window {k + 1}…"))
            _publish(staging, out)
    except BaseException:
        # a bad model, --target, --start/--end or option value left an empty folder behind
        # under the name the user chose: the run never wrote anything
        remove_if_empty(created)
        raise
    _replace_earlier_run(out, [result.report, *(f for files in result.files.values() for f in files)],
                        keep=None if folder else video)
    if result.videos:
        _window_summary(result.videos)
    else:
        _summary(result.explanations)
    console.print(f"report: [bold]{escape(printable(str(out / result.report.name)))}[/]")


@contextlib.contextmanager
def _staging(out: Path) -> Iterator[Path]:
    """A hidden folder in ``out`` that a run writes its files into, removed when the run ends
    (:func:`_publish` moves them into ``out`` first, once all are written).

    Written straight into ``out``, a run stopped partway (Ctrl-C, a method failing after another
    had written its files) left its first files beside the report and files of the earlier run
    in that folder: a folder that looked complete, and whose overlay and explanation were not the
    ones its report showed.
    """
    from ..errors import InputError

    try:
        staging = Path(tempfile.mkdtemp(prefix=".videoxai-partial-", dir=out))
    except OSError as e:
        raise InputError(f"--out {out}: cannot write there ({e.strerror or e})") from None
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _publish(staging: Path, out: Path) -> None:
    """Move every file a finished run wrote in ``staging`` into ``out`` (a rename each: the same
    file system), replacing the earlier run's files of the same names."""
    for f in sorted(staging.iterdir()):
        if f.is_file():
            os.replace(f, out / f.name)


def _check_video_is_not_an_output(video: Path, out: Path, methods: list[str]) -> None:
    """Refuse a video that this run would write over (``explain out/gradcam.mp4 --method gradcam
    -o out`` replaced the user's video with its overlay)."""
    from ..errors import InputError
    from ..workflows import _file_stems

    names = {"report.html", MANIFEST}
    for stem in _file_stems(methods).values():
        names |= {f"{stem}.npz", f"{stem}.mp4", f"{stem}_curve.png"}
    for name in sorted(names):
        if (out / name).exists() and (out / name).samefile(video):
            raise InputError(f"--out {out}: the run would write over the video it explains, {out / name}; "
                             "give another --out (or move the video)")


#: the list of files an explain run wrote in its --out, read by the next run into the same folder
MANIFEST = "videoxai_files.json"


def _earlier_files(out: Path) -> list[str]:
    """The names of the files an earlier run listed in ``out/MANIFEST`` (none without one).
    Names only, no paths: a listing edited to name ``../x`` or ``/etc/x`` names nothing."""
    import json

    try:
        names = json.loads((out / MANIFEST).read_text(encoding="utf-8")).get("files", [])
    except (OSError, ValueError, AttributeError, RecursionError):  # unreadable, not JSON, too deep to read
        return []
    return [n for n in names if isinstance(n, str) and n not in ("", ".", "..") and Path(n).name == n] \
        if isinstance(names, list) else []


def _replace_earlier_run(out: Path, written: list[Path], keep: Path | None = None) -> None:
    """Remove the files an earlier ``explain`` into ``out`` wrote and this run did not write again,
    then list this run's files in ``out/MANIFEST``.

    Without this, ``--method gradcam`` after ``--method staa`` into the same folder (``videoxai_out``
    by default) left staa's overlay and explanation beside a report that shows gradcam alone, and a
    ``--window-stride`` run left the earlier clip run's ``METHOD_curve.png`` beside its windows.
    Only the names the earlier run listed are removed, and only files directly in ``out``: a file
    the user put there is never touched, nor ``keep``, the video this run explained (the demo's
    ``sample.mp4``, explained again into the demo's folder)."""
    import json

    names = sorted({Path(f).name for f in written})
    for name in _earlier_files(out):
        stale = out / name
        if name not in names and name != MANIFEST and stale.is_file() and not stale.is_symlink() \
                and not (keep is not None and stale.samefile(keep)):
            stale.unlink()
    listing = json.dumps({"written_by": "videoxai explain", "files": names}, indent=1)
    (out / MANIFEST).write_text(listing + "\n", encoding="utf-8")


def demo_cmd(
    out: Path = typer.Option(Path("demo_out"), "--out", "-o", parser=given_path, metavar="<path>", help="Output directory."),
    clips: int = typer.Option(100, min=1, help="Held-out synthetic clips to score localisation on."),
    method: str = typer.Option("staa", "--method", help="Method(s) to show in the report, comma-separated."),
) -> None:
    """Run the bundled model on held-out synthetic clips; write a report with localisation rates."""
    from rich.progress import track

    from ..errors import InputError
    from ..models import load_model
    from ..workflows import _check_methods_apply, run_demo

    # split and checked as explain's --method, before the clips are scored: a spec's commas
    # ('rise(n_samples=500,seed=1)') were cut apart, and an unknown method, one the demo model
    # cannot serve or none at all failed only after every clip was scored
    methods, _, _ = _method_options(method, [])
    _check_methods_apply(load_model("demo"), methods, {})
    # as explain's --out: "File exists: demo_out" said neither which option nor what to give
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; give a directory for the report and overlays")
    try:
        created = make_directory(out)
    except OSError as e:
        raise InputError(f"--out {out}: cannot create the directory ({e.strerror or e})") from None
    try:
        # staged as explain's: an interrupted demo leaves the earlier one's folder as it was
        with _staging(out) as staging, console.status("explaining the sample clip…") as status:
            result, rates = run_demo(staging, clips=clips, methods=methods,
                                     progress=lambda xs: track(xs, description="scoring STAA localisation",
                                                               console=console, transient=True),
                                     on_method=lambda m: status.update(f"explaining with {m}…"))
            _publish(staging, out)
    except BaseException:
        remove_if_empty(created)   # as explain's: an interrupted demo leaves no empty folder
        raise
    # as explain's: a demo run after one with other methods left their files beside this report
    _replace_earlier_run(out, [result.report, out / "sample.mp4",
                               *(f for files in result.files.values() for f in files)])
    table = Table(title=f"STAA on {rates.clips} held-out synthetic clips")
    for col in ("", "rate", "chance"):
        table.add_column(col, overflow="fold")
    table.add_row("model accuracy", f"{rates.accuracy:.1%}", "")
    table.add_row("top frame inside the evidence window", f"{rates.temporal:.1%}", f"{rates.temporal_chance:.1%}")
    table.add_row("per-frame peak on the object", f"{rates.spatial:.1%}", f"{rates.spatial_chance:.1%}")
    table.add_row("time per explanation", f"{rates.seconds_per_clip * 1000:.1f} ms", "")
    console.print(table)
    _summary(result.explanations)
    console.print(f"report: [bold]{escape(printable(str((out / result.report.name).resolve())))}[/]")


def models_cmd() -> None:
    """List bundled models and model spec prefixes."""
    from ..models import available

    table = Table(title="models")
    table.add_column("spec", overflow="fold")
    table.add_column("what", overflow="fold")
    for name, help in available().items():
        table.add_row(name, help)
    console.print(table)


def _summary(exps) -> None:
    from ..viz.report import top_source_frames
    from ..viz.report_sections import unique_names

    table = Table()
    for col in ("method", "prediction", "score", "top frames", "seconds", "fwd", "bwd", "peak MiB"):
        table.add_column(col, overflow="fold")
    for e, name in zip(exps, unique_names(exps)):   # as the report names them: two specs of one method
        # a class name is text, not Rich markup: '[/x]' raised MarkupError, '[red]' vanished; and
        # its control characters are escapes (printable): a label holding ESC [2J cleared the screen
        table.add_row(Text(printable(name)), Text(printable(e.label)), f"{e.score:.3f}", ", ".join(str(int(e.frame_indices[i])) for i, _ in top_source_frames(e, 3)),
                      f"{e.cost.seconds:.3f}", str(e.cost.forward_passes), str(e.cost.backward_passes),
                      f"{e.cost.peak_memory_mb:.0f}")
    console.print(table)
    _score_note(e.meta for e in exps)
    _print_warnings(w for e in exps for w in e.meta.get("warnings") or [])


def _score_note(metas) -> None:
    """Say what the scores are when they are not softmax shares (``meta["activation"]``), as the reports do."""
    from ..viz.report_sections import SCORES

    activation = {m.get("activation") for m in metas} - {None}
    if activation:
        console.print("score: " + ", ".join(SCORES[a] for a in sorted(activation)), highlight=False)


def _print_warnings(warnings) -> None:
    """Each distinct ``meta["warnings"]`` line once (random weights, a constant map), as the report shows them."""
    for w in dict.fromkeys(str(w) for w in warnings):
        console.print(f"[yellow]warning:[/] {escape(printable(w))}", highlight=False)


_ENDS = 10  # windows listed from each end of a long video in the terminal


def _window_summary(videos) -> None:
    from ..viz.report_sections import unique_names

    for v, name in zip(videos, unique_names(videos)):   # as the report names them: two specs of one method
        table = Table(title=f"{escape(printable(name))}: {len(v.windows)} windows")
        for col in ("window", "time", "frames", "prediction", "p", "explained", "seconds"):
            table.add_column(col)
        # the first and last windows of a long video: every window of a 10-minute one was
        # thousands of lines of terminal; the report lists them all
        shown = v.windows if len(v.windows) <= 2 * _ENDS + 1 else [*v.windows[:_ENDS], None, *v.windows[-_ENDS:]]
        for w in shown:
            if w is None:
                table.add_row("…", f"{len(v.windows) - 2 * _ENDS} more (all in the report)", "", "", "", "", "")
                continue
            when = f"{w.start_s:.2f}–{w.end_s:.2f} s" if w.start_s is not None else ""
            table.add_row(str(w.index), when, f"#{w.frame_indices[0]}–#{w.frame_indices[-1]}", Text(printable(w.predicted_label)),
                          f"{w.predicted_score:.3f}", Text(printable(w.label)), f"{w.cost.seconds:.2f}")
        console.print(table)
        _score_note([v.meta])
        _print_warnings(v.meta.get("warnings") or [])


def register(app: typer.Typer) -> None:
    app.command("explain")(explain_cmd)
    app.command("demo")(demo_cmd)
    app.command("models")(models_cmd)
