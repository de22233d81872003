"""The report of an evaluation: a table with confidence intervals, a ranking, plots and a page.

Read from the results file alone (so a report can be redone at any time, also while a run is
still writing):

* per method × metric: the mean over clips and its 95 % confidence interval (Student's t:
  ``mean ± t₀.₉₇₅,ₙ₋₁ · s / √n``, cut at the metric's :attr:`~videoxai.metrics.base.Metric.bounds`
  where it declares them; undefined values and ``n/a`` rows left out, ``n`` reported);
* per metric: methods ranked by the mean in the metric's direction (1 = best), and, with three
  methods or more, the metric's reliability α over the clips on which every method has a value
  (:func:`~videoxai.metrics.reliability.reliability_alpha`, weighted by the ``random`` reference
  when it was run), leaving out methods evaluated on fewer than half of the metric's clips
  (``clips=N``) so that they do not shrink the clip set;
* overall: methods ordered by their mean rank over the faithfulness, localisation and
  randomisation metrics (complexity and cost are shown, not ranked on);
* ``report.md`` and ``summary.csv``; ``curves.png`` (mean deletion/insertion curves per method),
  ``randomisation.png`` (rank correlation per randomisation stage), ``methods_metrics.png``
  (each metric's means, coloured from worst to best); and ``report.html``, one self-contained
  page (images inlined).
"""

from __future__ import annotations

import csv
import html
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..metrics.reliability import reliability_alpha
from ..stabn.atomic import remove_stale_temporaries, write_atomically
from ..viz.page import data_uri, figure_png, page, plain
from .store import ResultStore
from .tasks import RANDOM

RANKED_FAMILIES = ("faithfulness", "localisation", "randomisation")
_GRID = np.linspace(0.0, 1.0, 101)


@dataclass
class Cell:
    """One method × metric: ``n`` values, their mean and 95 % interval."""

    n: int
    mean: float
    low: float
    high: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    @property
    def symmetric(self) -> bool:
        """Whether the interval is ``mean ± half_width`` (not cut at a bound of the metric)."""
        return math.isclose(self.mean - self.low, self.high - self.mean, rel_tol=1e-9, abs_tol=1e-12)


@dataclass
class Summary:
    """Everything the report shows, computed from the results file."""

    methods: list[str]                          # ordered best first
    metrics: list[str]                          # in the order they were registered
    info: dict[str, dict]                       # metric -> name, family, higher_is_better
    cells: dict[tuple[str, str], Cell]
    ranks: dict[tuple[str, str], float]         # (method, metric) -> rank within the metric
    overall: dict[str, float]                   # method -> mean rank over the ranked families
    alpha: dict[str, float]                     # metric -> reliability α
    curves: dict[str, dict[str, np.ndarray]]    # metric -> method -> mean curve
    videos: int
    accuracy: float | None
    counts: dict[str, int] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    inapplicable: dict[str, str] = field(default_factory=dict)   # method -> why it has no values
    unavailable: dict[str, str] = field(default_factory=dict)    # metric -> why it has no values
    warnings: list[str] = field(default_factory=list)            # about the model (random weights)
    errors: dict[str, list[str]] = field(default_factory=dict)   # error message -> "video / method"s
    empty: dict[tuple[str, str], str] = field(default_factory=dict)  # (method, metric) shown as "–" -> why
    ranked_on: list[str] | None = None  # the metrics the overall rank averages (None: the ranked families')
    gone: tuple[int, int] = (0, 0)      # results left out, of how many clips no longer in the data


def metric_bounds(name: str) -> tuple[float, float] | None:
    """The values the metric registered as ``name`` can take (:attr:`Metric.bounds`), or ``None``
    (unknown, or a metric no longer registered)."""
    from ..errors import UnknownNameError
    from ..metrics import get

    try:
        return get(name).bounds
    except UnknownNameError:
        return None


def confidence_interval(values: np.ndarray, level: float = 0.95,
                        bounds: tuple[float, float] | None = None) -> tuple[float, float, float]:
    """Mean and Student-t interval of ``values`` (``nan`` bounds for fewer than 2 values), cut at
    ``bounds``, the values the metric can take: over a few clips the t interval of a rate in
    [0, 1] reaches past 1 (0.889 of 3 clips: [0.41, 1.37]), which no value could be."""
    from scipy.stats import t as student_t

    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(v.mean())
    if v.size < 2:
        return mean, math.nan, math.nan
    half = float(student_t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    lo, hi = mean - half, mean + half
    if bounds is not None:
        lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
    return mean, lo, hi


def summarise(store: ResultStore) -> Summary:
    """Aggregate a results file (see the module docs)."""
    info = store.metric_info()
    table: dict[tuple[str, str], dict[str, float]] = {}
    # (metric, method) -> the sum of its curves on _GRID and how many: a list of every curve held
    # every row of a large evaluation in memory at once (the rows are read one at a time)
    curve_sums: dict[tuple[str, str], list] = {}
    methods: dict[str, None] = {}                # in order of first appearance
    videos: set[str] = set()
    counts = {"ok": 0, "n/a": 0, "error": 0}
    no_value: dict[tuple[str, str], set[str]] = {}   # (method, metric) -> why rows have no value
    places: dict[str, dict[str, None]] = {}          # error message -> "video / method"s
    gone, left_out = store.gone(), 0   # clips no longer in the data: kept in the file, not shown
    for r in store.iter_rows():
        if r.video in gone:
            left_out += 1
            continue
        counts[r.status] = counts.get(r.status, 0) + 1
        methods.setdefault(r.method)
        videos.add(r.video)
        if r.status == "error":
            message = str(r.details.get("error") or "unknown error").strip().splitlines()[-1][:300]
            places.setdefault(message, {}).setdefault(f"{r.video} / {r.method}")
        if r.metric not in info:
            continue
        if not (r.status == "ok" and math.isfinite(r.value)):
            no_value.setdefault((r.method, r.metric), set()).add(_why_no_value(r))
        if r.status != "ok":
            continue
        table.setdefault((r.method, r.metric), {})[r.video] = r.value
        if r.curve and len(r.curve) > 1:
            total = curve_sums.setdefault((r.metric, r.method), [0.0, 0])
            total[0] = total[0] + np.interp(_GRID, np.linspace(0, 1, len(r.curve)), np.asarray(r.curve, dtype=np.float64))
            total[1] += 1
    methods = list(methods)
    # a value is a finite one: a metric undefined on a clip (a constant map's rank correlation)
    # stores NULL with the reason in details['undefined']
    valued = {k for k, by_video in table.items() if any(math.isfinite(v) for v in by_video.values())}
    metrics = [m for m in info if any((meth, m) in valued for meth in methods)]
    # metrics asked for that gave no value at all (e.g. localisation on data without masks, or
    # undefined on every clip, which was a column of dashes with no word why): say why
    reasons: dict[str, set[str]] = {}
    for (method, metric), why in no_value.items():
        if metric not in metrics:
            reasons.setdefault(metric, set()).update(why)
    unavailable = {m: _reasons(why) for m, why in reasons.items()}
    errors = {message: list(where) for message, where in places.items()}
    # methods that produced no value at all (not applicable to the model) are listed, not ranked
    inapplicable = {m: "" for m in methods if not any((m, k) in valued for k in metrics)}
    expl = [e for e in store.explanations() if e.video not in gone]
    for e in expl:
        if e.method in inapplicable and e.error and not inapplicable[e.method]:
            inapplicable[e.method] = e.error
    methods = [m for m in methods if m not in inapplicable]

    cells = {}
    for key, by_video in table.items():
        mean, lo, hi = confidence_interval(np.fromiter(by_video.values(), dtype=np.float64),
                                           bounds=metric_bounds(info[key[1]]["name"]))
        n = int(np.isfinite(np.fromiter(by_video.values(), dtype=np.float64)).sum())
        cells[key] = Cell(n, mean, lo, hi)

    ranks: dict[tuple[str, str], float] = {}
    alpha: dict[str, float] = {}
    for metric in metrics:
        hib = info[metric]["higher_is_better"]
        present = [m for m in methods if (m, metric) in cells and math.isfinite(cells[(m, metric)].mean)]
        if present:
            from scipy.stats import rankdata
            means = np.array([cells[(m, metric)].mean for m in present])
            for m, r in zip(present, rankdata(-means if hib else means)):
                ranks[(m, metric)] = float(r)
        # methods run on a subset of the clips (clips=N) would shrink α's clip set to that subset:
        # α is taken over the methods with values on at least half of the metric's clips. Values,
        # not rows: a method whose metric is undefined on every clip (the extremal methods' blank
        # maps for another class) emptied the clip set, and α was '–' for every method
        finite = {m: sum(math.isfinite(v) for v in table[(m, metric)].values())
                  for m in methods if (m, metric) in table}
        most = max(finite.values(), default=0)
        cols = [m for m, n in finite.items() if n > 0 and 2 * n >= most]
        if len(cols) >= 3:  # two methods can only agree (ρ = 1) or disagree (ρ = −1): α says nothing
            common = sorted(set.intersection(*(set(table[(m, metric)]) for m in cols)))
            d = np.array([[table[(m, metric)][v] for m in cols] for v in common], dtype=np.float64)
            d = d.reshape(len(common), len(cols))
            alpha[metric] = reliability_alpha(d, hib, cols.index(RANDOM) if RANDOM in cols else None)

    # a cell of a shown method and metric without a value was a bare "–": the metric undefined for
    # that method's maps on every clip (ep2d's blank maps for another class), or an error or n/a
    # on each of them, looked like a value lost. Each one is named with why, under the table
    empty = {}
    for m in methods:
        for metric in metrics:
            c = cells.get((m, metric))
            if c is None or not math.isfinite(c.mean):
                empty[(m, metric)] = _reasons(no_value.get((m, metric), ())) or "not computed yet"

    ranked = [m for m in metrics if info[m]["family"] in RANKED_FAMILIES] or metrics
    overall = {}
    for m in methods:
        rs = [ranks[(m, metric)] for metric in ranked if (m, metric) in ranks]
        overall[m] = float(np.mean(rs)) if rs else math.nan
    methods = sorted(methods, key=lambda m: (math.isnan(overall[m]), overall[m], m))

    curves: dict[str, dict[str, np.ndarray]] = {}
    for (metric, method), (total, n) in curve_sums.items():
        curves.setdefault(metric, {})[method] = total / n

    labelled = [e for e in expl if e.status == "ok" and e.label is not None and e.predicted is not None]
    per_video = {e.video: e.predicted == e.label for e in labelled}
    accuracy = float(np.mean(list(per_video.values()))) if per_video else None
    empty = {(m, metric): empty[(m, metric)] for m in methods for metric in metrics if (m, metric) in empty}
    return Summary(methods, metrics, info, cells, ranks, overall, alpha, curves, len(videos), accuracy,
                   counts, store.meta(), inapplicable, unavailable, store.model_warnings(), errors, ranked_on=ranked, empty=empty,
                   gone=(left_out, len(gone)))


def _reasons(why, most: int = 5) -> str:
    """Distinct reasons, sorted, joined with "; ": the first ``most``, and how many more (one per
    unreadable video of a large folder would make the line as long as the folder's listing)."""
    why = sorted(why)
    return "; ".join(why[:most]) + (f"; and {len(why) - most} more" if len(why) > most else "")


def _why_no_value(r) -> str:
    """Why a result row has no value: its n/a reason, its error, or why the metric is undefined."""
    why = (r.details.get("reason") or r.details.get("error") or r.status if r.status != "ok"
           else f"undefined: {r.details.get('undefined') or 'no finite value'}")
    return str(why).splitlines()[0][:200]


# -- files -----------------------------------------------------------------------------------------
def write_report(database: str | Path, out_dir: str | Path, title: str | None = None) -> dict[str, Path]:
    """Write ``report.md``, ``summary.csv``, the plots and ``report.html`` into ``out_dir``.

    Atomically, as far as files go: everything is rendered in memory first, then each file is
    written to a temporary file of this writer's own and renamed into place
    (:func:`~videoxai.stabn.atomic.write_atomically`), ``report.md`` last, so a run killed while
    writing leaves the previous report or the new one, and never a ``report.md`` without its
    ``report.html``. Two writers at once (two ``--report-only``, or one beside a finishing run)
    each publish whole files of their own: a shared ``report.md.part`` let one rename the other's
    half-written file into place. Temporary files a killed writer left are removed once stale.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out)
    with ResultStore(database) as store:
        s = summarise(store)
    title = title or f"Evaluation of {s.meta.get('model', 'a model')} on {s.meta.get('data', 'a dataset')}"
    paths = {"markdown": out / "report.md", "csv": out / "summary.csv", "html": out / "report.html"}
    contents: dict[str, bytes] = {"csv": _csv_text(s).encode()}
    images = {}
    for name, fn in (("curves", _plot_curves), ("randomisation", _plot_randomisation),
                     ("methods_metrics", _plot_matrix)):
        fig = fn(s)
        if fig is not None:
            paths[name] = out / f"{name}.png"
            contents[name] = figure_png(fig, dpi=110, bbox_inches="tight")
            images[name] = data_uri(contents[name], "image/png")
    contents["html"] = _html(s, title, images).encode()
    contents["markdown"] = markdown(s, title).encode()  # last: its presence means the rest is there
    for key, data in contents.items():
        write_atomically(paths[key], data)
    return paths


def _arrow(s: Summary, metric: str) -> str:
    return "↑" if s.info[metric]["higher_is_better"] else "↓"


def _fmt(x: float, digits: int = 3) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _cell_text(s: Summary, method: str, metric: str) -> str:
    c = s.cells.get((method, metric))
    if c is None or not math.isfinite(c.mean):
        return "–"
    digits = 3
    if s.info[metric]["family"] == "cost":
        # seconds to 2 decimals, but a cost below 0.1 to 2 significant digits: a method of 4 ms was
        # "0.00 ± 0.00", a cost of nothing
        digits = 2 if not 0 < abs(c.mean) < 0.1 else 1 - math.floor(math.log10(abs(c.mean)))
    text = f"{c.mean:.{digits}f}"
    if math.isfinite(c.half_width):
        text += (f" ± {c.half_width:.{digits}f}" if c.symmetric else
                 f" [{c.low:.{digits}f}, {c.high:.{digits}f}]")  # cut at the metric's bounds
    return text if c.n >= s.videos else f"{text} (n={c.n})"  # a method or metric run on fewer clips


def table_rows(s: Summary) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the method × metric table (shared by Markdown and HTML)."""
    header = ["rank", "method"] + [f"{m} {_arrow(s, m)}" for m in s.metrics]
    rows = []
    for i, method in enumerate(s.methods, start=1):
        name = f"{method} (reference)" if method == RANDOM else method
        rank = f"{i} ({_fmt(s.overall[method], 2)})" if math.isfinite(s.overall[method]) else "–"
        rows.append([rank, name] + [_cell_text(s, method, m) for m in s.metrics])
    rows.append(["", "α (reliability)"] + [_fmt(s.alpha.get(m, math.nan), 2) for m in s.metrics])
    return header, rows


def markdown(s: Summary, title: str) -> str:
    header, rows = table_rows(s)
    t = _md_text
    lines = [f"# {t(title)}", ""]
    lines.append(f"{_clips(s.videos)}; results: {s.counts.get('ok', 0)} ok, {s.counts.get('n/a', 0)} n/a, "
                 f"{s.counts.get('error', 0)} errors."
                 + (f" Model accuracy on these clips: {s.accuracy:.1%}." if s.accuracy is not None else ""))
    lines += [f"**Warning:** {t(w)}" for w in s.warnings]
    if s.gone[0]:
        lines += ["", _gone_text(s)]
    # a '|' in a cell (a method spec's text option) would end the cell: escaped as GFM does
    cells = lambda r: " | ".join(t(c).replace("|", "\\|") for c in r)  # noqa: E731
    lines += ["", "| " + cells(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + cells(r) + " |" for r in rows]
    lines += ["", _legend(s)]
    if s.inapplicable:
        lines += ["", "Without any value (not applicable to this model, or failed on every clip): "
                  + "; ".join(t(f"{m} ({why})" if why else m) for m, why in s.inapplicable.items()) + "."]
    if s.unavailable:
        lines += ["", "Metrics without any value: "
                  + "; ".join(t(f"{m} ({why})") for m, why in s.unavailable.items()) + "."]
    if s.empty:
        lines += ["", "Cells without a value (– in the table): "
                  + "; ".join(t(f"{m} × {metric} ({why})") for (m, metric), why in s.empty.items()) + "."]
    if s.errors:
        lines += ["", "Errors (running the same command again computes these results again):", ""]
        lines += [f"- {t(message)} — {t(_places(where))}" for message, where in _top_errors(s)]
    return "\n".join(lines) + "\n"


def _gone_text(s: Summary) -> str:
    """The note on results left out because their clips are no longer in the data."""
    n, clips = s.gone
    return (f"{n} stored result{'s' if n != 1 else ''} of {_clips(clips)} no longer in the data "
            f"{'are' if n != 1 else 'is'} left out (kept in the results file).")


def _md_text(text: str) -> str:
    """Text of the data (file names, error messages) as Markdown shows it: on one line (a line
    break would end a list item or a table row) and with ``<`` as ``&lt;``, so that
    a file named ``<img src=x onerror=…>.mp4`` is text, not HTML that a viewer renders (a
    backslash does not escape it in Python-Markdown, which MkDocs uses)."""
    return " ".join(str(text).split()).replace("<", "&lt;")


def _clips(n: int) -> str:
    return f"{n} clip{'' if n == 1 else 's'}"


def _top_errors(s: Summary, most: int = 10) -> list[tuple[str, list[str]]]:
    return sorted(s.errors.items(), key=lambda kv: -len(kv[1]))[:most]


def _places(where: list[str], most: int = 3) -> str:
    """``a.mp4 / saliency, b.mp4 / rise and 4 more``."""
    shown = ", ".join(where[:most])
    return shown + (f" and {len(where) - most} more" if len(where) > most else "")


def _legend(s: Summary) -> str:
    over = f"the {', '.join(RANKED_FAMILIES)} metrics"
    if s.ranked_on is not None and not any(s.info[m]["family"] in RANKED_FAMILIES for m in s.ranked_on):
        # none of those families has a value: the rank falls back to every metric (complexity, cost);
        # one that was run but failed or was n/a everywhere is named below the table, not 'not run'
        ran = any(i["family"] in RANKED_FAMILIES for i in s.info.values())
        over = f"every metric shown (no {' or '.join(RANKED_FAMILIES)} metric {'has a value' if ran else 'was run'})"
    return (f"Mean ± half-width of the 95 % Student-t interval over clips, or [low, high] where the "
            "interval is cut at the values the metric can take ([0, 1] for rates and probability "
            "areas, [−1, 1] for correlations, ≥ 0 for distances and costs); ↑ higher is better, ↓ lower "
            f"is better. Methods are ordered by their mean rank (in parentheses) over {over}. "
            "α is each metric's reliability (agreement of the per-clip method rankings, "
            "weighted by how clearly each clip puts the random map last; 1 = every clip ranks the "
            "methods alike)." + (_ALPHA_UNDEFINED if any(not math.isfinite(s.alpha.get(m, math.nan))
                                                         for m in s.metrics) else ""))


#: why an α is "–" (it was a dash without a word: one clip, two methods, or the random map judged best)
_ALPHA_UNDEFINED = (" An α of \"–\" is undefined: fewer than 3 methods with values, fewer than 2 clips on which "
                    "each has one and they differ, or fewer than 2 such clips on which the random map is not "
                    "judged best (its weight is then 0).")


def _csv_text(s: Summary) -> str:
    """``summary.csv``: one row per (method, metric) cell."""
    f = io.StringIO(newline="")
    w = csv.writer(f)
    w.writerow(["method", "metric", "family", "higher_is_better", "n", "mean", "ci_low", "ci_high",
                "rank", "overall_rank", "alpha"])
    for method in s.methods:
        for metric in s.metrics:
            c = s.cells.get((method, metric))
            if c is None:
                continue
            w.writerow([method, metric, s.info[metric]["family"], int(s.info[metric]["higher_is_better"]),
                        c.n, *map(_csv_number, (c.mean, c.low, c.high, s.ranks.get((method, metric)),
                                                s.overall[method], s.alpha.get(metric)))])
    return f.getvalue()


def _csv_number(x: float | None) -> float | str:
    """A number, or an empty field where there is none (one clip has no interval, two methods no
    α): 'nan' read as a value by a spreadsheet or ``csv`` where the rank column was already empty."""
    return x if x is not None and math.isfinite(x) else ""


# -- plots -----------------------------------------------------------------------------------------
# Method and metric names are specs the user wrote ("gradcam(layer=...)"): every one is drawn as
# written (viz.page.plain), never as mathtext.
def _figure(w: float, h: float):
    from matplotlib.figure import Figure
    return Figure(figsize=(w, h), layout="constrained")


def _style_lines(ax, n: int) -> None:
    """Distinct colours for up to 20 methods (the default cycle repeats after 10)."""
    if n > 10:
        from cycler import cycler
        from matplotlib import colormaps
        ax.set_prop_cycle(cycler(color=[colormaps["tab20"](i % 20) for i in range(n)]))


def _place_legend(ax, n: int) -> None:
    """Inside the axes for a few methods; beside them for many, where it would hide the curves.

    Every line is a method's: handles and labels are given, not collected, so that a line whose
    label starts with "_" keeps its entry."""
    lines = ax.get_lines()
    labels = [line.get_label() for line in lines]
    if n > 8:
        ax.legend(lines, labels, fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    else:
        ax.legend(lines, labels, fontsize=7)


def _plot_curves(s: Summary):
    metrics = [m for m in s.metrics if s.info[m]["name"] in ("deletion", "insertion") and m in s.curves]
    if not metrics:
        return None
    cols = min(2, len(metrics))
    rows = math.ceil(len(metrics) / cols)
    many = len(s.methods) > 8
    fig = _figure((7.4 if many else 5.2) * cols, 3.6 * rows)
    for i, metric in enumerate(metrics):
        ax = fig.add_subplot(rows, cols, i + 1)
        _style_lines(ax, len(s.methods))
        for method in s.methods:
            if method in s.curves[metric]:
                c = s.cells.get((method, metric))
                ax.plot(_GRID, s.curves[metric][method], label=plain(f"{method} ({_fmt(c.mean if c else math.nan)})"),
                        linestyle="--" if method == RANDOM else "-")
        ax.set_title(plain(f"{metric} {_arrow(s, metric)}"), fontsize=10)
        ax.set_xlabel("fraction of units switched")
        ax.set_ylabel("target probability")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)        # probabilities: one scale, so curves of two metrics compare
        ax.grid(alpha=0.3)
        _place_legend(ax, len(s.curves[metric]))
    return fig


def _plot_randomisation(s: Summary):
    metrics = [m for m in s.metrics if s.info[m]["name"] == "randomisation" and m in s.curves]
    if not metrics:
        return None
    metric = metrics[0]
    fig = _figure(7.4 if len(s.curves[metric]) > 8 else 5.2, 3.6)
    ax = fig.add_subplot(1, 1, 1)
    _style_lines(ax, len(s.methods))
    for method in s.methods:
        if method in s.curves[metric]:
            ax.plot(_GRID, s.curves[metric][method], label=plain(method), linestyle="--" if method == RANDOM else "-")
    ax.set_title(plain(f"{metric}: rank correlation to the original map ↓"), fontsize=10)
    ax.set_xlabel("randomisation stage, first (output end) → last (input end)")
    ax.set_ylabel("Spearman ρ")
    ax.grid(alpha=0.3)
    _place_legend(ax, len(s.curves[metric]))
    return fig


def _plot_matrix(s: Summary):
    if not s.methods or not s.metrics:
        return None
    goodness = np.full((len(s.methods), len(s.metrics)), np.nan)
    for j, metric in enumerate(s.metrics):
        col = np.array([s.cells[(m, metric)].mean if (m, metric) in s.cells else np.nan for m in s.methods])
        lo, hi = np.nanmin(col) if np.isfinite(col).any() else 0, np.nanmax(col) if np.isfinite(col).any() else 0
        g = (col - lo) / (hi - lo) if hi > lo else np.where(np.isfinite(col), 0.5, np.nan)
        goodness[:, j] = g if s.info[metric]["higher_is_better"] else 1 - g
    # room for the text around the cells, not just the cells: with one metric spelt as a long spec
    # (40° tick labels) and one method, cells-only sizing (2 × 1.3 in) left constrained layout no
    # room for the axes, and matplotlib warned that it was not applied
    xlabel = max(len(f"{m} {_arrow(s, m)}") for m in s.metrics) * 0.075    # inches at 8 pt
    ylabel = max(len(m) for m in s.methods) * 0.075
    fig = _figure(max(4.8, 1.0 + 1.05 * len(s.metrics) + ylabel),
                  0.9 + 0.42 * len(s.methods) + 0.65 * xlabel)
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(np.ma.masked_invalid(goodness), cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(s.metrics)), [plain(f"{m} {_arrow(s, m)}") for m in s.metrics], rotation=40,
                  ha="right", fontsize=8)
    ax.set_yticks(range(len(s.methods)), [plain(m) for m in s.methods], fontsize=8)
    for i, method in enumerate(s.methods):
        for j, metric in enumerate(s.metrics):
            c = s.cells.get((method, metric))
            if c is not None and math.isfinite(c.mean):
                ax.text(j, i, f"{c.mean:.2f}", ha="center", va="center", fontsize=7)
    ax.set_title("methods × metrics (green: best of the column)", fontsize=10)
    return fig


# -- html ------------------------------------------------------------------------------------------
# The page shell, palette, type and cards are the explanation report's (videoxai.viz.page); only the
# results table has rules of its own. It scrolls inside its card instead of running off the page:
# with every method and metric it is wider than any screen (the cells keep their "mean ±
# half-width" on one line; the long metric names in the header wrap).
_RESULTS_CSS = """
:root { --best: #e3f2e1; }
.scroll { overflow-x: auto; max-width: 100%; }
.warning { color: #8a1c1c; background: #fdecea; padding: 6px 10px; border-radius: 4px; max-width: 960px; }
#results table { width: auto; }
#results th, #results td { text-align: right; }
#results td { white-space: nowrap; font-family: var(--mono); font-size: 12px; }
#results th { min-width: 6em; white-space: normal; }
#results td:nth-child(2), #results th:nth-child(2) { text-align: left; font-family: inherit;
  position: sticky; left: 0; background: var(--card); }
#results tr:last-child td { font-style: italic; }
td.best { font-weight: bold; background: var(--best); }
.plot img { max-width: 100%; margin: 0 auto; display: block; }
.note { color: var(--muted); font-size: 13px; max-width: 960px; }
code { font-family: var(--mono); font-size: 12px; background: #eef0f4; padding: 1px 4px; border-radius: 3px; }
"""


def _html(s: Summary, title: str, images: dict[str, str]) -> str:
    header, rows = table_rows(s)
    best = {metric: min((m for m in s.methods if (m, metric) in s.ranks), key=lambda m: s.ranks[(m, metric)],
                        default=None) for metric in s.metrics}
    body = ["<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"]
    for i, row in enumerate(rows):
        method = s.methods[i] if i < len(s.methods) else None
        tds = []
        for j, text in enumerate(row):
            cls = ' class="best"' if j >= 2 and method is not None and best.get(s.metrics[j - 2]) == method else ""
            tds.append(f"<td{cls}>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(tds) + "</tr>")
    meta = "".join(f"<li><code>{html.escape(str(k))}</code>: {html.escape(str(v))}</li>" for k, v in s.meta.items())
    imgs = "".join(f'<h2>{html.escape(name.replace("_", " × " if name == "methods_metrics" else " "))}</h2>'
                   f'<div class="card plot"><img alt="{name}" src="{uri}"></div>'
                   for name, uri in images.items())
    acc = f" Model accuracy on these clips: {s.accuracy:.1%}." if s.accuracy is not None else ""
    return page(title, f"""<h1>{html.escape(title)}</h1>
<p>{_clips(s.videos)}; results: {s.counts.get('ok', 0)} ok, {s.counts.get('n/a', 0)} n/a,
{s.counts.get('error', 0)} errors.{acc}</p>
{''.join(f'<p class="warning"><strong>Warning:</strong> {html.escape(w)}</p>' for w in s.warnings)}
{f'<p>{html.escape(_gone_text(s))}</p>' if s.gone[0] else ''}
<div class="card"><div class="scroll" id="results"><table>{''.join(body)}</table></div>
<p class="note">{html.escape(_legend(s))}</p></div>
{_inapplicable_html(s)}
{_unavailable_html(s)}
{_empty_html(s)}
{_errors_html(s)}
{imgs}
<h2>Run</h2><ul>{meta}</ul>""", css=_RESULTS_CSS)


def _inapplicable_html(s: Summary) -> str:
    if not s.inapplicable:
        return ""
    items = "".join(f"<li><code>{html.escape(m)}</code>{': ' + html.escape(why) if why else ''}</li>"
                    for m, why in s.inapplicable.items())
    return f"<p>Without any value (not applicable to this model, or failed on every clip):</p><ul>{items}</ul>"


def _errors_html(s: Summary) -> str:
    if not s.errors:
        return ""
    items = "".join(f"<li>{html.escape(message)} — {html.escape(_places(where))}</li>"
                    for message, where in _top_errors(s))
    return f"<p>Errors (running the same command again computes these results again):</p><ul>{items}</ul>"


def _empty_html(s: Summary) -> str:
    if not s.empty:
        return ""
    items = "".join(f"<li><code>{html.escape(m)}</code> × <code>{html.escape(metric)}</code>: {html.escape(why)}</li>"
                    for (m, metric), why in s.empty.items())
    return f"<p>Cells without a value (– in the table):</p><ul>{items}</ul>"


def _unavailable_html(s: Summary) -> str:
    if not s.unavailable:
        return ""
    items = "".join(f"<li><code>{html.escape(m)}</code>: {html.escape(why)}</li>" for m, why in s.unavailable.items())
    return f"<p>Metrics without any value:</p><ul>{items}</ul>"
