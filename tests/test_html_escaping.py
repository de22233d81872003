"""Every HTML page the project writes or serves, fed hostile *content*: class names (a user's
model names its classes: an HF config's ``id2label``, a folder dataset's ``labels.csv``,
``vx.wrap(labels=...)``), video file names (``<img src=x onerror=...>.mp4`` is a legal name on
Linux), model names, method specs, error messages that echo them, and the JSON the service hands
its viewer.

Each page is checked twice: in the HTML text (the strings appear escaped) and in a real headless
Chromium, where no payload may run (the globals the payloads set stay undefined) and every string
still *shows* as it was written ("a < b" reads "a < b", not "a &lt; b" and not nothing).

The figures the pages embed are matplotlib drawings of the same strings: there a ``$`` starts
mathtext, so a class called ``$\\frac$`` took the whole report down (a parse error) and ``a $x$``
was typeset as math; and a legend drops an entry whose label starts with ``_``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import videoxai as vx
from conftest import headless_chrome
from videoxai.data.video import write_video

# Every payload sets a global of its own when it runs; none may ever be set.
PAYLOAD_GLOBALS = ("__vx_label", "__vx_attr", "__vx_img", "__vx_file", "__vx_model", "__vx_spec", "__vx_note",
                   "__vx_method", "__vx_error", "__vx_data")

LABELS = [
    "<script>window.__vx_label=1</script>",
    'a" onmouseover="window.__vx_attr=1" x="',
    "</textarea></title><img src=x onerror=window.__vx_img=1>",
    # template syntaxes (string.Template, JS, Jinja, printf); already-escaped text, shown as written
    "${x} {{x}} %s $title &amp; &lt;b&gt; a < b",
    "_$\\frac$ costs 5 $x$",            # matplotlib: a leading "_" (legend) and "$…$" (mathtext)
]
MATH = 4                                 # the class the tiny model predicts: its label reaches the figures
MODEL_NAME = '<img src=x onerror=window.__vx_model=1>"model'
FILE_NAME = "<img src=x onerror=\"window.__vx_file=1\">'<b>clip&amp;.mp4"  # no "/": one file name


class _Net(nn.Module):
    """A tiny 3D CNN whose prediction is class ``top`` whatever the input (a large output bias)."""

    def __init__(self, top: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv3d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, len(LABELS))
        with torch.no_grad():
            self.fc.bias.zero_()
            self.fc.bias[top] = 5.0

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3, 4)))


def hostile_model(top: int = MATH) -> vx.VideoModel:
    return vx.wrap(_Net(top).eval(), num_frames=4, input_size=16, labels=LABELS, cam_layer="conv",
                   name=MODEL_NAME)


@pytest.fixture(scope="module")
def hostile_video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("videos") / FILE_NAME
    frames = np.random.default_rng(0).integers(0, 256, (12, 32, 40, 3), dtype=np.uint8)
    return write_video(frames, path, fps=8)


@pytest.fixture(scope="module")
def browser():
    b = headless_chrome()
    yield b
    b.quit()


def _load(browser, path: Path) -> None:
    browser.get(path.as_uri())  # returns once the page has loaded


def _no_payload_ran(browser) -> None:
    ran = browser.execute_script(
        "return arguments[0].filter(function (k) { return window[k] !== undefined; });", list(PAYLOAD_GLOBALS))
    assert ran == [], f"payloads ran in the page: {ran}"
    # nothing that the payloads would have made: no element from a class name or file name
    assert browser.execute_script("return document.querySelectorAll('img[src=\"x\"], script:not(:last-of-type), "
                                  "textarea, [onmouseover], [onerror]').length") == 0


def _texts(browser, selector: str) -> list[str]:
    return browser.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0])).map(function (e) { return e.textContent; });",
        selector)


def _literal_texts(fig) -> list[str]:
    """What matplotlib draws for each text of ``fig``, as drawn: a string that it would typeset as
    mathtext comes back as ``"$math: ..."`` (Text._preprocess_math is what the renderer calls)."""
    from matplotlib.text import Text

    out = []
    for t in fig.findobj(Text):
        s, math = t._preprocess_math(t.get_text())
        out.append(f"$math: {s}" if math else s)
    return out


# ----------------------------------------------------------------------------------------------
# the explanation report (videoxai explain ... --out DIR, vx.viz.write_report)


@pytest.fixture(scope="module")
def explain_report(tmp_path_factory, hostile_video):
    from videoxai.workflows import explain_video

    out = tmp_path_factory.mktemp("explain")
    return explain_video(hostile_video, hostile_model(), ["gradcam(layer=conv)", "saliency"], out,
                         notes={"<b>note</b><script>window.__vx_note=1</script>": "a < b"})


def test_explain_report_escapes_every_string(explain_report):
    html = explain_report.report.read_text()
    body = re.sub(r"data:[^\"]+", "DATA", html)
    for raw in LABELS[:3] + [MODEL_NAME, FILE_NAME]:
        assert raw not in body
    assert "<script>" not in body.replace("<script>\n/* Keep the clips in step", "")
    assert "&lt;script&gt;window.__vx_label=1&lt;/script&gt;" in body
    assert 'title="a&quot; onmouseover=&quot;window.__vx_attr=1&quot; x=&quot;"' in body
    assert "${x} {{x}} %s $title &amp;amp; &amp;lt;b&amp;gt; a &lt; b" in body  # escaped once, untemplated


def test_explain_report_in_chromium_runs_nothing_and_shows_every_string(explain_report, browser):
    _load(browser, explain_report.report)
    _no_payload_ran(browser)
    assert browser.title == f"{MODEL_NAME}: {FILE_NAME}"
    assert _texts(browser, "h1") == [f"{MODEL_NAME}: {FILE_NAME}"]
    chips = _texts(browser, ".chip b")
    assert FILE_NAME in chips and MODEL_NAME in chips and LABELS[MATH] in chips
    assert _texts(browser, ".grid:not(.methods) .sub")[0] == FILE_NAME
    # every class is listed under each method, text and tooltip as written
    names = _texts(browser, ".probs .name")
    assert sorted(names) == sorted(LABELS * 2)   # two methods, five classes each
    titles = browser.execute_script("return Array.from(document.querySelectorAll('.probs .name'))"
                                    ".map(function (e) { return e.title; });")
    assert titles == names
    assert "<b>note</b><script>window.__vx_note=1</script>" in _texts(browser, ".notes th")
    assert "a < b" in _texts(browser, ".notes td")
    assert "gradcam(layer=conv)" in _texts(browser, "code")


def test_the_explained_class_in_the_curves_is_drawn_literally(hostile_video, tmp_path):
    # "$\frac$" failed to parse as mathtext and took `videoxai explain` down before any report
    from videoxai.viz import temporal_curve

    model = hostile_model()
    exp = vx.explain(model, vx.read_video(hostile_video, num_frames=4), "saliency")
    assert exp.label == LABELS[MATH]
    assert temporal_curve(exp, tmp_path / "one.png").stat().st_size > 0
    fig = temporal_curve([exp, exp], names=["$a$", "_b"])
    texts = _literal_texts(fig)
    assert f"temporal importance — {LABELS[MATH]}" in texts
    assert "$a$" in texts and "_b" in texts                 # legend names, literally
    assert not any(t.startswith("$math: ") for t in texts)
    fig = temporal_curve(exp)
    assert f"saliency — {LABELS[MATH]} ({exp.score:.0%})" in _literal_texts(fig)


# ----------------------------------------------------------------------------------------------
# the timeline report (videoxai explain --window-stride, write_timeline_report)


@pytest.fixture(scope="module")
def timeline_report(tmp_path_factory, hostile_video):
    from videoxai.workflows import explain_video

    out = tmp_path_factory.mktemp("timeline")
    return explain_video(hostile_video, hostile_model(), ["saliency"], out, window_stride=4,
                         notes={"<script>window.__vx_note=1</script>": "a < b"})


def test_timeline_report_in_chromium_runs_nothing_and_shows_every_string(timeline_report, browser):
    html = timeline_report.report.read_text()
    for raw in (MODEL_NAME, FILE_NAME, LABELS[0]):
        assert raw not in html
    _load(browser, timeline_report.report)
    _no_payload_ran(browser)
    assert _texts(browser, "h1") == [f"{MODEL_NAME}: {FILE_NAME}"]
    chips = _texts(browser, ".chip b")
    assert FILE_NAME in chips and MODEL_NAME in chips
    cells = _texts(browser, ".window-list td")
    assert cells.count(LABELS[MATH]) == 2 * len(timeline_report.videos[0].windows)  # predicted, explained


def test_timeline_figure_draws_class_and_method_names_literally(timeline_report):
    from videoxai.viz.timeline_report import _timeline_figure

    import matplotlib.pyplot as plt

    fig = _timeline_figure(timeline_report.videos)
    try:
        legends = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
        assert [t.replace("\\$", "$") for t in legends] == [LABELS[MATH], "saliency"]  # "_…" not dropped
        assert not any(t.startswith("$math: ") for t in _literal_texts(fig))
        assert LABELS[MATH] in _literal_texts(fig)
    finally:
        plt.close(fig)


# ----------------------------------------------------------------------------------------------
# the evaluation report (videoxai evaluate ... --out DIR)


EVAL_METHODS = ["<script>window.__vx_method=1</script>", 'a" onmouseover="window.__vx_attr=1', "random",
                "gradcam(layer=$\\frac$)", "_x $y$"]


@pytest.fixture(scope="module")
def evaluation_report(tmp_path_factory):
    from videoxai.evaluation import ResultRow, ResultStore, write_report
    from videoxai.metrics import build

    d = tmp_path_factory.mktemp("evaluation")
    db = d / "results.sqlite"
    with ResultStore(db) as store:
        store.bind({"model": MODEL_NAME, "data": "folder:/d/<img src=x onerror=window.__vx_data=1>",
                    "target": "label", "refine": None, "seed": 0})
        store.register_metrics([build("insertion"), build("deletion"), build("randomisation")])
        store.start_run({})
        for v in range(3):
            for i, m in enumerate(EVAL_METHODS):
                video = f"{FILE_NAME[:-4]}{v}.mp4"
                for metric in ("insertion", "randomisation"):
                    store.write(ResultRow(video, m, metric, 0.1 * i + 0.05 * v, curve=[0.5, 0.1 * i, 0.0]))
                store.write(ResultRow(video, m, "deletion", None, status="error",
                                      details={"error": "cannot read '<svg onload=window.__vx_error=1>'"}))
    return write_report(db, d / "report")


def test_evaluation_report_in_chromium_runs_nothing_and_shows_every_string(evaluation_report, browser):
    html = evaluation_report["html"].read_text()
    for raw in EVAL_METHODS[:2] + [MODEL_NAME, "<svg onload"]:
        assert raw not in html
    _load(browser, evaluation_report["html"])
    _no_payload_ran(browser)
    assert browser.title.startswith(f"Evaluation of {MODEL_NAME} on folder:/d/<img")
    from videoxai.evaluation import ResultStore, summarise

    with ResultStore(evaluation_report["html"].parent.parent / "results.sqlite") as store:
        stored = summarise(store).methods      # as the store spells them (gradcam's layer quoted)
    methods = _texts(browser, "#results td:nth-child(2)")
    assert sorted(methods[:-1]) == sorted(m + " (reference)" if m == "random" else m for m in stored)
    errors = _texts(browser, "li")
    assert any(e.startswith("cannot read '<svg onload=window.__vx_error=1>' — " + FILE_NAME[:-4]) for e in errors)
    assert f"model: {MODEL_NAME}" in errors
    for name in ("curves", "randomisation", "methods_metrics"):  # "$\frac$" in a method spec drew them all
        assert name in evaluation_report


def test_evaluation_plots_draw_method_and_metric_names_literally(evaluation_report):
    from videoxai.evaluation import ResultStore, summarise
    from videoxai.evaluation.report import _plot_curves, _plot_matrix, _plot_randomisation

    with ResultStore(evaluation_report["html"].parent.parent / "results.sqlite") as store:
        s = summarise(store)
    gradcam = next(m for m in s.methods if m.startswith("gradcam"))
    assert gradcam.count("$") == 2            # a pair: mathtext to matplotlib
    for plot in (_plot_curves, _plot_randomisation, _plot_matrix):
        fig = plot(s)
        texts = _literal_texts(fig)
        assert not any(t.startswith("$math: ") for t in texts), plot.__name__
        assert any(t.startswith(gradcam) for t in texts), plot.__name__
        if plot is not _plot_matrix:   # a legend: the "_x $y$" line is listed
            assert any(t.startswith("_x $y$") for t in texts), plot.__name__


# ----------------------------------------------------------------------------------------------
# the service's viewer (videoxai serve: videoxai/serve/static)


@pytest.fixture(scope="module")
def served():
    pytest.importorskip("fastapi")
    from videoxai.serve import BackgroundServer, ServeSettings, create_app

    app = create_app(hostile_model(top=2), ServeSettings(default_method="saliency"))
    with BackgroundServer(app) as server:
        yield server


def test_viewer_runs_nothing_and_shows_the_services_strings(served, browser, hostile_video):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(served.url + "/")
    wait = WebDriverWait(browser, 60, poll_frequency=0.2)
    wait.until(lambda b: b.execute_script("return window.videoxaiViewer && window.videoxaiViewer.info !== null"))
    assert browser.execute_script("return document.getElementById('model-info').textContent").startswith(MODEL_NAME)
    browser.execute_script("document.getElementById('tab-upload').click()")
    browser.find_element(By.ID, "upload-file").send_keys(str(hostile_video))
    browser.execute_script("document.getElementById('upload-start').click()")
    wait.until(lambda b: b.execute_script("return window.videoxaiViewer.job && "
                                          "['done', 'failed'].includes(window.videoxaiViewer.job.state)"))
    job = browser.execute_script("return window.videoxaiViewer.job")
    assert job["state"] == "done", job
    assert job["result"]["prediction"]["label"] == LABELS[2]
    pred = browser.execute_script("return document.getElementById('job-pred').textContent")
    assert pred.startswith(LABELS[2] + " ")
    _no_payload_ran(browser)
    # a refused request: the error the server echoes (the method named) shows as text
    browser.execute_script("""var o = new Option('<img src=x onerror=window.__vx_spec=1>', '<img src=x onerror=window.__vx_spec=1>');
        document.getElementById('method').add(o); o.selected = true;
        document.getElementById('upload-start').click();""")
    wait.until(lambda b: b.execute_script("return window.videoxaiViewer.job.state === 'failed'"))
    banner = browser.execute_script("return document.getElementById('banner').textContent")
    assert "<img src=x onerror=window.__vx_spec=1>" in banner
    _no_payload_ran(browser)


# ----------------------------------------------------------------------------------------------
# a file name that is not UTF-8


@pytest.mark.parametrize("window_stride", [None, 4])
def test_a_file_name_that_is_not_utf8_is_shown_not_a_failed_report(tmp_path, browser, window_stride):
    # "café<b>.mp4" saved in Latin-1: legal on Linux; Python reads the odd byte as a lone surrogate,
    # which a UTF-8 page cannot hold: the report failed after every explanation had been computed
    from videoxai.workflows import explain_video

    name = "caf\udce9<b>.mp4"   # os.fsdecode(b"caf\xe9<b>.mp4")
    video = write_video(np.random.default_rng(0).integers(0, 256, (12, 32, 40, 3), dtype=np.uint8),
                        tmp_path / name, fps=8)
    report = explain_video(video, hostile_model(), ["saliency"], tmp_path / "out", window_stride=window_stride).report
    _load(browser, report)
    _no_payload_ran(browser)
    assert _texts(browser, "h1") == [f"{MODEL_NAME}: caf\ufffd<b>.mp4"]
    assert "caf\ufffd<b>.mp4" in _texts(browser, ".chip b")


# ----------------------------------------------------------------------------------------------
# the reports' Content-Security-Policy: a second line of defence


def test_the_report_policy_runs_only_the_pages_own_script(tmp_path, browser, explain_report):
    # should a string ever reach the page unescaped (a future section forgetting html.escape),
    # the page's policy runs none of it; the shell's own script still runs
    from videoxai.viz.page import page

    leak = ("<img src=x onerror=window.__vx_img=1><script>window.__vx_label=1</script>"
            "<svg><script>window.__vx_spec=1</script></svg><a href='javascript:window.__vx_attr=1' id=a>a</a>"
            "<img src='http://127.0.0.1:9/beacon.png'><video><source src='https://example.com/v.mp4'></video>")
    path = tmp_path / "leak.html"
    path.write_text(page("leak", leak + '<video muted loop src="data:video/mp4;base64,AAAA"></video>'
                         '<div class="controls"><button id="vx-play" type="button">?</button></div>'))
    _load(browser, path)
    browser.execute_script("document.getElementById('a').click()")
    ran = browser.execute_script("return ['__vx_img', '__vx_label', '__vx_spec', '__vx_attr']"
                                 ".filter(function (k) { return window[k] !== undefined; });")
    assert ran == []
    browser.execute_script("document.getElementById('vx-play').click()")  # the synchroniser's button
    assert browser.execute_script("return document.getElementById('vx-play').textContent") in ("play", "pause")
    # a real report: its videos, figures and key frames load under the policy
    _load(browser, explain_report.report)
    broken = browser.execute_script("return Array.from(document.images).filter(function (i) {"
                                    " return !(i.complete && i.naturalWidth > 0); }).length")
    assert broken == 0
    assert "Content-Security-Policy" in explain_report.report.read_text()


@pytest.mark.parametrize("window_stride", [None, 4])
def test_a_class_name_with_a_lone_surrogate_is_drawn_not_a_failed_report(tmp_path, browser, hostile_video,
                                                                         window_stride):
    # json.loads('"x\\ud800y"') is a str that matplotlib's font code refuses (a TypeError from the
    # first figure) and that UTF-8 cannot hold
    from videoxai.workflows import explain_video

    labels = LABELS[:MATH] + ["x\ud800y"]
    model = vx.wrap(_Net(MATH).eval(), num_frames=4, input_size=16, labels=labels, name="m")
    report = explain_video(hostile_video, model, ["saliency"], tmp_path, window_stride=window_stride).report
    _load(browser, report)
    shown = _texts(browser, ".probs .name" if window_stride is None else ".window-list td")
    assert "x\ufffdy" in shown
