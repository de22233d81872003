"""Overlays, overlay videos, temporal curves and the HTML report."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

import videoxai as vx
from conftest import headless_chrome
from videoxai.data.video import probe, read_video
from videoxai.errors import InputError
from videoxai.viz import overlay_frames, temporal_curve, write_report
from videoxai.viz.curve import _TOP
from videoxai.viz.overlay import colormap_lut, playback_fps, render_frames

T, H, W = 6, 24, 32


@pytest.fixture(scope="module")
def clip() -> vx.Clip:
    frames = np.random.default_rng(0).integers(0, 256, (T, H, W, 3), dtype=np.uint8)
    return vx.Clip(frames, fps=25.0, indices=np.arange(0, 5 * T, 5), source="/data/walk.mp4")


def make_exp(clip: vx.Clip, method: str = "staa", peak: int = 2, seed: int = 0) -> vx.Explanation:
    """A hand-made explanation: a square of evidence moving right, temporal mass peaked at ``peak``."""
    spatial = np.zeros((T, H, W), np.float32)
    for t in range(T):
        spatial[t, 6:14, 2 + 4 * t:10 + 4 * t] = np.linspace(0.2, 1.0, 8)
    temporal = np.exp(-0.5 * (np.arange(T) - peak) ** 2)
    probs = np.random.default_rng(seed).dirichlet(np.ones(7)).astype(np.float32)
    target = int(np.argmax(probs))
    return vx.Explanation(spatial=spatial, temporal=temporal / temporal.sum(), target=target,
                          label=f"class<{target}>", score=float(probs[target]), probs=probs,
                          method=method, options={"layer": -1, "refine": {"threshold": 0.5}},
                          cost=vx.Cost(seconds=0.0123, forward_passes=3, backward_passes=1,
                                       peak_memory_mb=42.0),
                          frame_indices=clip.indices, meta={"model": "tiny-timesformer"})


# ----------------------------------------------------------------------------------------------
# overlay_frames


def test_overlay_changes_only_the_evidence_square(clip):
    spatial = np.zeros((T, H, W), np.float32)
    spatial[:, 4:12, 8:20] = 1.0
    out = overlay_frames(clip.frames, spatial, alpha=0.5)
    assert out.dtype == np.uint8 and out.shape == clip.frames.shape
    outside = np.ones((H, W), bool)
    outside[4:12, 8:20] = False
    np.testing.assert_array_equal(out[:, outside], clip.frames[:, outside])
    # inside: half frame, half the colormap's top colour (jet's dark red)
    top = colormap_lut("jet")[255]
    expected = np.rint(0.5 * clip.frames[:, 4:12, 8:20].astype(np.float32) + 0.5 * top)
    np.testing.assert_array_equal(out[:, 4:12, 8:20], expected.astype(np.uint8))


def test_overlay_blends_through_the_map(clip):
    spatial = np.full((T, H, W), 0.25, np.float32)
    lut = colormap_lut("inferno")
    out = overlay_frames(clip.frames, spatial, alpha=0.8, cmap="inferno")
    a = 0.8 * 0.25
    expected = np.rint((1 - a) * clip.frames.astype(np.float32) + a * lut[64])
    assert np.abs(out.astype(int) - expected).max() <= 1


def test_overlay_alpha_zero_returns_frames(clip):
    spatial = np.random.default_rng(1).random((T, H, W)).astype(np.float32)
    np.testing.assert_array_equal(overlay_frames(clip.frames, spatial, alpha=0.0), clip.frames)


def test_overlay_accepts_float_frames(clip):
    spatial = np.random.default_rng(1).random((T, H, W)).astype(np.float32)
    a = overlay_frames(clip.frames, spatial)
    b = overlay_frames(clip.frames.astype(np.float32) / 255.0, spatial)
    np.testing.assert_array_equal(a, b)


def test_overlay_matches_pytorch_grad_cam_show_cam_on_image(clip):
    """``image_weight`` reproduces pytorch-grad-cam's blend (on one frame, with OpenCV's jet)."""
    cv2 = pytest.importorskip("cv2")
    gc = pytest.importorskip("pytorch_grad_cam.utils.image")
    rng = np.random.default_rng(3)
    img = rng.random((H, W, 3)).astype(np.float32)
    img[0, 0] = 1.0  # a white pixel: the blend's maximum is reached, so both rescale alike
    # map values k/255 + a quarter step: OpenCV's truncation and our rounding pick the same entry
    mask = ((rng.integers(0, 255, (H, W)) + 0.25) / 255).astype(np.float32)
    mask[0, 0] = (191 + 0.25) / 255  # jet's red channel is 255 there
    lut = cv2.cvtColor(cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], cv2.COLORMAP_JET),
                       cv2.COLOR_BGR2RGB)[:, 0]
    ours = overlay_frames(img[None], mask[None], cmap=lut, image_weight=0.6)[0]
    theirs = gc.show_cam_on_image(img, mask, use_rgb=True, image_weight=0.6)
    # ours rounds where theirs truncates: at most one level apart
    assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1


@pytest.mark.parametrize("spatial,match", [
    (np.zeros((T, H, W + 1)), "does not match"),
    (np.full((T, H, W), 1.5), r"\[0, 1\]"),
    (np.full((T, H, W), np.nan), "NaN"),
])
def test_overlay_bad_maps(clip, spatial, match):
    with pytest.raises(InputError, match=match):
        overlay_frames(clip.frames, spatial)


def test_overlay_bad_options(clip):
    spatial = np.zeros((T, H, W))
    with pytest.raises(InputError, match="colormap"):
        overlay_frames(clip.frames, spatial, cmap="no-such-map")
    with pytest.raises(InputError, match="alpha"):
        overlay_frames(clip.frames, spatial, alpha=2.0)


# ----------------------------------------------------------------------------------------------
# render


@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_render_writes_a_readable_video(tmp_path, clip, suffix):
    exp = make_exp(clip)
    path = vx.render(exp, clip, tmp_path / f"overlay{suffix}", fps=10)
    assert path.is_file()
    back = read_video(path)
    assert back.num_frames == T
    assert back.width == W and back.height > H  # the caption band sits under the frame
    assert back.fps == pytest.approx(10.0, rel=1e-3)


def test_render_without_label_is_the_overlay(tmp_path, clip):
    exp = make_exp(clip)
    back = read_video(vx.render(exp, clip, tmp_path / "plain.gif", label=False))
    assert back.frames.shape == clip.frames.shape
    expected = overlay_frames(clip.frames, exp.spatial)
    # GIF quantises random noise to 256 colours: close, not equal
    assert np.abs(back.frames.astype(int) - expected).mean() < 12


def test_render_caption_highlights_the_current_frame(clip):
    exp = make_exp(clip)
    out = render_frames(exp, clip)
    bands = out[:, H:]
    assert bands.shape[1] > 0
    # every frame's band differs (the highlighted bar and the counter move)
    assert all(not np.array_equal(bands[i], bands[i + 1]) for i in range(T - 1))
    # the overlay part is untouched by the caption
    np.testing.assert_array_equal(out[:, :H], overlay_frames(clip.frames, exp.spatial))


def test_render_rejects_another_clip(tmp_path, clip):
    exp = make_exp(clip)
    other = vx.Clip(clip.frames[:, :20])
    with pytest.raises(InputError, match="render the clip that was explained"):
        vx.render(exp, other, tmp_path / "x.mp4")


def test_playback_fps_spans_the_source_duration(clip):
    assert playback_fps(clip) == pytest.approx(25.0 / 5)     # every 5th frame of a 25 fps video
    assert playback_fps(vx.Clip(clip.frames)) == 8.0           # unknown source rate
    sparse = vx.Clip(clip.frames, fps=25.0, indices=np.arange(0, 100 * T, 100))
    assert playback_fps(sparse) == 1.0                          # never slower than 1 frame/s


def test_render_default_fps_from_clip(tmp_path, clip):
    path = vx.render(make_exp(clip), clip, tmp_path / "o.mp4")
    assert probe(path)["fps"] == pytest.approx(5.0)


# ----------------------------------------------------------------------------------------------
# temporal curve


def test_curve_png(tmp_path, clip):
    path = temporal_curve(make_exp(clip), tmp_path / "curve.png", window=(10, 20))
    assert path == tmp_path / "curve.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    with Image.open(path) as im:
        assert im.width > 600 and im.height > 200


def test_curve_highlights_top_frames_and_window(clip):
    from matplotlib.colors import to_hex
    from matplotlib.patches import Rectangle

    exp = make_exp(clip, peak=4)
    fig = temporal_curve(exp, window=(10, 20), top_k=2)
    ax = fig.axes[0]
    bars = [p for p in ax.patches if isinstance(p, Rectangle) and p.get_width() < 10]
    assert len(bars) == T
    # bars stand at the source frame indices and have the temporal scores as heights
    np.testing.assert_allclose([b.get_x() + b.get_width() / 2 for b in bars], clip.indices)
    np.testing.assert_allclose([b.get_height() for b in bars], exp.temporal, rtol=1e-6)
    hot = [i for i, b in enumerate(bars) if to_hex(b.get_facecolor()) == to_hex(_TOP)]
    assert sorted(hot) == sorted(exp.top_frames(2).tolist()) == [3, 4]
    # the ground-truth window [10, 20) is shaded over frames 10..19
    spans = [(p.get_x(), p.get_x() + p.get_width()) for p in ax.patches if p not in bars]
    assert any(np.isclose(a, 9.5) and np.isclose(b, 19.5) for a, b in spans)


def test_curve_several_methods_and_given_axes(clip):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure()
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    exps = [make_exp(clip, "staa", 1), make_exp(clip, "gradcam", 4)]
    assert temporal_curve(exps, ax=ax) is fig
    lines = [ln for ln in ax.lines if ln.get_label() in ("staa", "gradcam")]
    assert len(lines) == 2
    np.testing.assert_allclose(lines[1].get_ydata(), exps[1].temporal)
    with pytest.raises(InputError):
        temporal_curve([])


# ----------------------------------------------------------------------------------------------
# report


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []  # (tag, attribute, value)

    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if k in ("src", "href", "poster", "data") and v is not None:
                self.refs.append((tag, k, v))


def _refs(html: str) -> list[tuple[str, str, str]]:
    p = _Refs()
    p.feed(html)
    return p.refs


@pytest.fixture(scope="module")
def report(tmp_path_factory, clip) -> tuple[Path, list[vx.Explanation]]:
    exps = [make_exp(clip, "staa", 1), make_exp(clip, "gradcam", 4), make_exp(clip, "staa", 2, seed=5)]
    exps[1].meta["spec"] = "gradcam(layer=<last>)"  # what explain() records: the call that remakes it
    notes = {"temporal localisation rate": "0.93", "pointing game": 0.714}
    out = tmp_path_factory.mktemp("report") / "sub" / "report.html"
    return write_report(out, clip, exps, notes=notes, window=(10, 20), title="Walk <test>"), exps


def test_report_is_self_contained(report):
    path, _ = report
    html = path.read_text()
    refs = _refs(html)
    assert refs, "the report embeds its media"
    for tag, attr, value in refs:
        assert value.startswith("data:"), f"<{tag} {attr}> points outside the file: {value[:60]}"
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html)
    assert "@import" not in html and "url(http" not in html


def test_report_contents(report, clip):
    path, exps = report
    html = path.read_text()
    for name in ("staa", "gradcam", "staa (2)"):
        assert f">{name}<" in html
    assert "temporal localisation rate" in html and "0.93" in html and "0.714" in html
    assert "Walk &lt;test&gt;" in html and "Walk <test>" not in html  # escaped
    assert "class&lt;" in html  # labels escaped too
    assert html.count(">Spec<") == 1 and "<code>gradcam(layer=&lt;last&gt;)</code>" in html
    assert "42.0 MiB" in html and "12.3 ms" in html  # cost
    assert ">3<" in html and ">1<" in html  # forward / backward passes
    # one original and one overlay video per explanation, each as WebM and MP4
    videos = re.findall(r"<video\b", html)
    assert len(videos) == 1 + len(exps)
    kinds = [t for t, a, v in _refs(html) if t == "source"]
    assert len(kinds) == 2 * len(videos)


def test_report_videos_decode(report, tmp_path):
    """The embedded videos are real: decode each data URI and count its frames."""
    path, exps = report
    html = path.read_text()
    uris = re.findall(r'src="data:(video/(?:webm|mp4));base64,([^"]+)"', html)
    assert len(uris) == 2 * (1 + len(exps))
    for i, (mime, data) in enumerate(uris):
        f = tmp_path / f"v{i}.{mime.split('/')[1]}"
        f.write_bytes(base64.b64decode(data))
        v = read_video(f)
        assert v.num_frames == T
        assert v.width >= 320  # tiny clips are enlarged for display


def test_report_notes_matrix_and_single_explanation(tmp_path, clip):
    exp = make_exp(clip)
    notes = {"staa": {"deletion AUC": 0.12, "insertion AUC": 0.55}, "gradcam": {"deletion AUC": 0.2}}
    html = write_report(tmp_path / "one.html", clip, exp, notes=notes).read_text()
    assert "deletion AUC" in html and "insertion AUC" in html and "0.55" in html
    assert "walk.mp4" in html  # default title from the clip's source


def test_report_rejects_mismatched_explanation(tmp_path, clip):
    exp = make_exp(clip)
    with pytest.raises(InputError):
        write_report(tmp_path / "x.html", vx.Clip(clip.frames[:3]), exp)
    with pytest.raises(InputError):
        write_report(tmp_path / "x.html", clip, [])


def test_report_plays_in_headless_chromium(report):
    """Every video of the report reaches a playable state in a real browser.

    Waits in real time (not Chromium's virtual time, which runs ahead of the media decoder on a busy
    machine) until each video has a decoded frame or an error."""
    from selenium.webdriver.support.ui import WebDriverWait

    path, exps = report
    states_js = ("return Array.from(document.querySelectorAll('video'))"
                 ".map(v => v.readyState + ':' + (v.error ? 'E' + v.error.code : 'ok'));")
    browser = headless_chrome()
    try:
        browser.get(path.as_uri())
        settled = lambda b: all(s.endswith(":ok") and int(s[0]) >= 2 or ":E" in s  # noqa: E731
                                for s in b.execute_script(states_js))
        try:
            WebDriverWait(browser, 90, poll_frequency=0.2).until(settled)
        except Exception:  # report what the browser saw rather than a bare timeout
            pass
        states = browser.execute_script(states_js)
    finally:
        browser.quit()
    assert len(states) == 1 + len(exps)
    for s in states:
        ready, err = s.split(":")
        assert err == "ok" and int(ready) >= 2, states  # HAVE_CURRENT_DATA or better


def test_report_falls_back_to_gif_without_video_encoders(tmp_path, clip, monkeypatch):
    from videoxai.data import video_writer

    monkeypatch.setattr(video_writer, "_has_encoder", lambda name: False)  # an FFmpeg without x264/libvpx
    html = write_report(tmp_path / "gif.html", clip, make_exp(clip)).read_text()
    assert "<video" not in html
    gifs = re.findall(r'src="data:image/gif;base64,([^"]+)"', html)
    assert len(gifs) == 2
    f = tmp_path / "a.gif"
    f.write_bytes(base64.b64decode(gifs[1]))
    assert read_video(f).num_frames == T


@pytest.mark.parametrize("frames", [1, 2, 3])
def test_curve_of_a_short_clip_ticks_whole_frames(frames):
    """A one-frame clip's curve was ticked -0.6, -0.4, …, 0.6 ('frame -0.4')."""
    exp = vx.Explanation(spatial=np.ones((frames, 4, 4), np.float32), temporal=np.full(frames, 1 / frames),
                         target=0, label="a", score=0.9, probs=np.array([0.9, 0.1]), method="saliency",
                         frame_indices=np.arange(frames))
    fig = temporal_curve(exp)
    ax = fig.axes[0]
    fig.canvas.draw()
    lo, hi = ax.get_xlim()
    ticks = [x for x in ax.get_xticks() if lo <= x <= hi]
    assert ticks and all(float(x).is_integer() for x in ticks), ticks
    assert set(range(frames)) <= set(int(x) for x in ticks)


@pytest.mark.parametrize("activation, says", [("sigmoid", "sigmoid of each class&#x27;s logit"),
                                              ("none", "the model&#x27;s own output"), ("softmax", None)])
def test_reports_say_when_the_score_is_not_a_softmax_share(tmp_path, activation, says):
    """The clip report named a sigmoid or a model's own probabilities; the timeline report
    (--window-stride) showed them as 'p' of a softmax without a word."""
    import torch

    from videoxai.data.video import write_video
    from videoxai.workflows import explain_video

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv3d(3, 2, 3, padding=1), torch.nn.AdaptiveAvgPool3d(1),
                              torch.nn.Flatten(), torch.nn.Sigmoid() if activation == "none" else torch.nn.Identity())
    model = vx.wrap(net, num_frames=2, input_size=16, layout="BCTHW", labels=["no", "yes"], activation=activation)
    frames = np.random.default_rng(0).integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    video = write_video(frames, tmp_path / "v.mp4", fps=5)
    for stride in (None, 2):
        result = explain_video(video, model, ["saliency"], tmp_path / f"out{stride}", window_stride=stride)
        chips = re.findall(r'<span class="chip">scores <b>([^<]*)</b>', result.report.read_text())
        if says is None:
            assert chips == [], (stride, chips)
        else:
            assert len(chips) == 1 and chips[0].startswith(says), (stride, chips)


def test_key_frames_of_a_video_shorter_than_the_clip_name_each_frame_once(tmp_path):
    """A one-frame video fills the model's 8 places with frame #0: the report's key frames were
    'frame #0' three times at 12.5 % each, and the CLI's top frames '0, 0, 0'."""
    from videoxai.viz.report import top_source_frames

    indices = np.array([0, 0, 0, 0, 5, 5])          # 6 places, 2 frames of the video
    temporal = np.array([0.1, 0.1, 0.1, 0.1, 0.35, 0.25])
    frames = np.random.default_rng(1).integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
    clip = vx.Clip(frames, fps=5.0, indices=indices, source="short.mp4")
    exp = vx.Explanation(spatial=np.ones((6, 8, 8), np.float32), temporal=temporal, target=0, label="a",
                         score=0.9, probs=np.array([0.9, 0.1]), method="saliency", frame_indices=indices)
    top = top_source_frames(exp, 3)
    assert [int(indices[k]) for k, _ in top] == [5, 0]       # by summed share: 0.6 then 0.4
    np.testing.assert_allclose([s for _, s in top], [0.6, 0.4])
    assert top[0][0] == 4                                     # shown at its most important place
    html = write_report(tmp_path / "r.html", clip, exp).read_text()
    captions = re.findall(r"<figcaption><b>top (\d)</b> · frame #(\d+)<br>([\d.]+)%", html)
    assert captions == [("1", "5", "60.0"), ("2", "0", "40.0")]


def test_caption_draws_accented_and_non_latin_class_names():
    """Pillow's default font has ASCII only: 'Küche' and 'Kïche' were both captioned with the same
    missing-glyph box, as were 'ж' and 'Ω'."""
    from videoxai.viz.overlay import caption_bands

    def band(text: str) -> np.ndarray:
        return caption_bands(320, text, np.arange(2), text_size=20)[0]

    for a, b in [("Küche", "Kïche"), ("ж", "Ω"), ("Küche", "K che")]:
        assert not np.array_equal(band(a), band(b)), (a, b)


def test_caption_draws_characters_the_primary_font_lacks_in_an_installed_font_that_has_them(recwarn):
    """DejaVu Sans has no CJK: a class named '跳绳' was captioned with two empty boxes, whatever
    fonts the machine had. Each character is now drawn in the first installed font with a glyph
    for it. Checked with circled letters, which DejaVu Sans lacks and matplotlib's own STIX font
    has (so the check runs on any machine): as boxes 'Ⓐ' and 'Ⓑ' were drawn the same."""
    from PIL import Image, ImageDraw

    from videoxai.viz import fonts
    from videoxai.viz.overlay import caption_bands

    def band(text: str) -> np.ndarray:
        return caption_bands(320, text, np.arange(2), text_size=20)[0]

    assert ord("Ⓐ") not in fonts._coverage(fonts._primary_path())
    assert not np.array_equal(band("Ⓐ"), band("Ⓑ"))
    assert not np.array_equal(band("x Ⓐ"), band("x \U0010FFFD"))       # a glyph, not the box
    font = fonts.CaptionFont(20)
    assert [part for part, _ in font.runs("score Ⓐ 1%")] == ["score ", "Ⓐ", " 1%"]
    # Latin text is drawn exactly as one Pillow call draws it, and a fallback glyph sits on the line.
    plain, runs = Image.new("RGB", (300, 40)), Image.new("RGB", (300, 40))
    ImageDraw.Draw(plain).text((5, 5), "Küche 97.1%", font=font.font, fill="white")
    font.draw(ImageDraw.Draw(runs), (5, 5), "Küche 97.1%", fill="white")
    np.testing.assert_array_equal(np.asarray(plain), np.asarray(runs))
    mixed = Image.new("L", (300, 40))
    font.draw(ImageDraw.Draw(mixed), (5, 5), "AⒶA", fill=255)
    rows = np.nonzero(np.asarray(mixed).max(axis=1))[0]
    assert rows[0] >= 5 and rows[-1] <= 5 + sum(font.font.getmetrics())
    assert not [w for w in recwarn.list if "Ⓐ" in str(w.message) or "Ⓑ" in str(w.message)]


def test_caption_warns_once_naming_characters_no_installed_font_has(monkeypatch):
    from videoxai.viz import fonts
    from videoxai.viz.overlay import caption_bands

    monkeypatch.setattr(fonts, "_warned", set())
    with pytest.warns(UserWarning, match="no installed font has glyphs for '\\\\U0010fffd'"):
        caption_bands(320, "x \U0010FFFD", np.arange(2), text_size=20)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        caption_bands(320, "y \U0010FFFD", np.arange(2), text_size=20)   # said once is enough


def test_curve_of_a_video_shorter_than_the_clip_draws_each_frame_once_with_its_summed_score():
    from matplotlib.patches import Rectangle

    indices = np.array([0, 0, 0, 0, 5, 5])
    temporal = np.array([0.1, 0.1, 0.1, 0.1, 0.35, 0.25])
    exp = vx.Explanation(spatial=np.ones((6, 8, 8), np.float32), temporal=temporal, target=0, label="a",
                         score=0.9, probs=np.array([0.9, 0.1]), method="saliency", frame_indices=indices)
    ax = temporal_curve(exp).axes[0]
    bars = [p for p in ax.patches if isinstance(p, Rectangle) and p.get_width() < 10]
    assert sorted((round(b.get_x() + b.get_width() / 2), round(b.get_height(), 6)) for b in bars) == [(0, 0.4), (5, 0.6)]
    uniform = [ln for ln in ax.lines if ln.get_label() == "uniform"]
    assert uniform[0].get_ydata()[0] == pytest.approx(0.5)   # two frames of the video, not six places
    fig = temporal_curve([exp, exp])
    line = [ln for ln in fig.axes[0].lines if ln.get_label() == "saliency"][0]
    np.testing.assert_allclose(line.get_xdata(), [0, 5])
    np.testing.assert_allclose(line.get_ydata(), [0.4, 0.6])


def test_report_of_a_one_frame_clip_shows_its_frames_as_images(tmp_path):
    """Chromium never decodes the frame of a one-frame video (readyState stays 1): the report's
    original and overlay boxes were empty. They are still images of the frame."""
    import io

    from PIL import Image

    frames = np.zeros((1, 24, 32, 3), np.uint8)
    frames[..., 0] = 200                                   # a red frame
    clip = vx.Clip(frames, fps=5.0)
    exp = vx.Explanation(spatial=np.zeros((1, 24, 32), np.float32), temporal=np.ones(1), target=0, label="a",
                         score=0.9, probs=np.array([0.9, 0.1]), method="saliency", frame_indices=np.arange(1))
    html = write_report(tmp_path / "r.html", clip, exp).read_text()
    assert "<video" not in html
    media = re.findall(r'<div class="media"><img alt="frame" src="data:image/jpeg;base64,([^"]+)"', html)
    assert len(media) == 2                                 # the original and the overlay
    for b64 in media:
        rgb = np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"))
        assert rgb.shape[1] >= 32 and rgb.shape[0] > 24    # the frame, with its caption band below
        assert rgb[rgb.shape[0] // 4, rgb.shape[1] // 2, 0] > 150   # the red frame is in it


def test_caption_of_a_clip_with_more_frames_than_pixels_highlights_every_frame():
    """With bars narrower than a pixel (a timeline of 1 200 frames on a 320-pixel band) the bars
    drawn after the current one covered it: most bands showed no highlighted bar at all."""
    from videoxai.viz.overlay import _BAR_NOW, caption_bands

    t = 1200
    bands = caption_bands(320, "a", np.arange(t), np.linspace(0.5, 1.0, t))
    now = (bands == np.array(_BAR_NOW, np.uint8)).all(-1)          # (T, band, W): the highlight's pixels
    columns = [np.flatnonzero(now[k].any(0)) for k in range(t)]
    assert all(c.size for c in columns)                            # every frame shows where it is
    centres = np.array([c.mean() for c in columns])
    assert (np.diff(centres) >= 0).all() and centres[-1] - centres[0] > 250   # and it moves left to right


@pytest.mark.parametrize("field,value,match", [
    ("spatial", -1.0, r"maps must lie in \[0, 1\], got values in \[-1, -1\]"),
    ("spatial", 1e30, r"maps must lie in \[0, 1\], got values in \[1e\+30, 1e\+30\]"),
    ("spatial", np.nan, "maps contain NaN"),
    ("temporal", np.nan, "temporal scores must be finite and non-negative; frame 0's is nan"),
    ("temporal", -0.5, "temporal scores must be finite and non-negative; frame 0's is -0.5"),
])
def test_report_render_and_curve_refuse_maps_and_scores_outside_the_contract(tmp_path, clip, field, value, match):
    """The report resized the maps with a clamp to [0, 1]: a map of -1 showed no evidence and
    one of 1e30 showed all pixels as evidence (render refused both); a NaN score failed in
    matplotlib ('Axis limits cannot be NaN or Inf') after the videos were encoded."""
    exp = make_exp(clip)
    if field == "spatial":
        exp.spatial[:] = value
    else:
        exp.temporal[0] = value
    with pytest.raises(InputError, match=match):
        write_report(tmp_path / "r.html", clip, exp)
    assert not (tmp_path / "r.html").exists()
    with pytest.raises(InputError, match=match):
        vx.render(exp, clip, tmp_path / "o.mp4")
    if field == "temporal":
        with pytest.raises(InputError, match=match):
            temporal_curve(exp)


def test_reports_say_where_they_cannot_be_written_before_drawing(tmp_path, clip, monkeypatch):
    """A folder named like the report, or a file where a folder of its path should be, failed with
    IsADirectoryError or mkdir's 'File exists' after every video had been encoded."""
    from videoxai.errors import VideoXAIError
    from videoxai.timeline import VideoExplanation
    from videoxai.viz import report, timeline_report
    from videoxai.viz.timeline_report import write_timeline_report

    def no_video(*args, **kwargs):
        raise AssertionError("encoded a video before checking where the report goes")

    for module in (report, timeline_report):   # where each report looks video_html up
        monkeypatch.setattr(module, "video_html", no_video)
    exp = make_exp(clip)
    video = VideoExplanation(method="staa", model="m", windows=[], frames=clip.frames, frame_indices=clip.indices,
                             times=clip.indices / 25.0, spatial=exp.spatial, temporal=np.ones(T, np.float32),
                             fps=25.0, source=None)
    (tmp_path / "report.html").mkdir()
    (tmp_path / "notes").write_text("")
    for write, arg in ((write_report, (clip, exp)), (write_timeline_report, (video,))):
        with pytest.raises(InputError, match=r"cannot write the report to .*report.html: it is a folder; "
                                             r"give a file such as .*report.html/report.html"):
            write(tmp_path / "report.html", *arg)
        with pytest.raises(VideoXAIError, match=r"cannot write the report to .*notes/r.html: .*notes is a file, "
                                                "not a folder"):
            write(tmp_path / "notes" / "r.html", *arg)


@pytest.mark.parametrize("call,kwargs,match", [
    ("curve", dict(window=(float("nan"), 5)), r"window must be \(start, end\), two finite frame indices"),
    ("curve", dict(window=(0, float("inf"))), "two finite frame indices"),   # shaded nothing
    ("curve", dict(window=(3,)), r"with start < end, got \(3,\)"),
    ("report", dict(window=5), "two finite frame indices with start < end, got 5"),
    ("report", dict(window=("a", "b")), "two finite frame indices"),
    ("curve", dict(top_k=-1), "top_k must be a whole number of at least 0, got -1"),   # highlighted T-1 frames
    ("report", dict(top_k=1.5), "top_k must be a whole number of at least 1, got 1.5"),
    ("report", dict(max_side=0), "max_side must be a whole number of at least 1, got 0"),   # 1x1 videos
    ("curve", dict(dpi=0), "dpi must be a positive number, got 0"),
    ("overlay", dict(cmap=np.full((256, 3), np.nan)), r"cmap lookup table of float64 must lie in \[0, 1\]"),
    ("overlay", dict(cmap=np.full((256, 3), 300)), r"must lie in \[0, 255\] .* got values in \[300, 300\]"),
])
def test_drawing_options_are_checked_in_one_line(tmp_path, clip, call, kwargs, match):
    exp = make_exp(clip)
    with pytest.raises(InputError, match=match):
        if call == "curve":
            temporal_curve(exp, tmp_path / "c.png", **kwargs)
        elif call == "report":
            write_report(tmp_path / "r.html", clip, exp, **kwargs)
        else:
            overlay_frames(clip.frames, exp.spatial, **kwargs)


def test_report_videos_never_exceed_max_side(tmp_path, clip):
    """min_side enlarged a 32-pixel-wide clip to 320 whatever max_side said (max_side=100 gave
    videos 320 wide); max_side wins, by a whole factor (96 = 3 × 32)."""
    import io

    from PIL import Image

    from videoxai.viz.page import display_size

    assert display_size(H, W, 100, 320) == (3 * H, 3 * W)
    assert display_size(H, W, 640, 320) == (10 * H, 10 * W)        # as before
    assert display_size(H, W, 20, 320) == (15, 20)                  # shrunk, as before
    html = write_report(tmp_path / "r.html", clip, make_exp(clip), max_side=100).read_text()
    frame = re.search(r'<figure><img alt="frame #\d+" src="data:image/jpeg;base64,([^"]+)"', html).group(1)
    assert Image.open(io.BytesIO(base64.b64decode(frame))).size == (3 * W, 3 * H)


def test_timeline_report_of_a_long_video_shows_at_most_its_frame_budget_over_the_whole_duration(tmp_path, monkeypatch):
    """Every frame of the video was embedded (twice a card, WebM and MP4): a 10-minute video made
    a page of hundreds of MB after many minutes of encoding. The videos show frames spread evenly
    over the whole stretch, played over its duration, and the header says so."""
    from videoxai.timeline import VideoExplanation, WindowResult
    from videoxai.viz import timeline_report
    from videoxai.viz.timeline_report import write_timeline_report

    monkeypatch.setattr(timeline_report, "_MAX_SHOWN", 5)
    n = 21                                                   # source frames #0..#40 (every 2nd) at 10 fps
    frames = np.random.default_rng(0).integers(0, 256, (n, 24, 32, 3), dtype=np.uint8)
    index = np.arange(0, 2 * n, 2)
    windows = [WindowResult(index=k, frame_indices=index[k:k + 7], start_s=index[k] / 10, end_s=index[k + 6] / 10,
                            target=0, label="a", score=0.5, predicted=0, predicted_label="a", predicted_score=0.5,
                            temporal=np.full(7, 1 / 7), cost=vx.Cost()) for k in (0, 7, 14)]
    video = VideoExplanation(method="staa", model="m", windows=windows, frames=frames, frame_indices=index,
                             times=index / 10, spatial=np.zeros((n, 24, 32), np.float32),
                             temporal=np.ones(n, np.float32), fps=10.0, source=None,
                             meta={"num_frames": 7, "window_stride": 7, "frame_step": 2})
    html = write_timeline_report(tmp_path / "t.html", video).read_text()
    assert "videos show <b>5 of the 21 frames, evenly spread</b>" in html
    uris = re.findall(r'src="data:(video/(?:webm|mp4));base64,([^"]+)"', html)
    assert len(uris) == 4                                    # the original and the overlay, WebM and MP4
    for i, (mime, data) in enumerate(uris):
        f = tmp_path / f"v{i}.{mime.split('/')[1]}"
        f.write_bytes(base64.b64decode(data))
        back = read_video(f)
        assert back.num_frames == 5                          # #0, #10, #20, #30, #40
        assert back.num_frames / back.fps == pytest.approx(5 * 10 / 10)   # 10 source frames = 1 s apart


def test_render_frames_of_a_long_clip_hold_the_clip_about_once_more(monkeypatch):
    """The overlay, its copy with the crop box and np.concatenate with the captions each held the
    whole clip: rendering peaked at twice the output on top of the clip. The frames are drawn a
    few at a time into the output (traced peak: the output, the captions and a chunk's temporaries)."""
    import tracemalloc

    from videoxai.viz import overlay

    t, h, w = 100, 96, 128
    monkeypatch.setattr(overlay, "_CHUNK_PIXELS", 2 * h * w)        # two frames a step
    rng = np.random.default_rng(0)
    clip = vx.Clip(rng.integers(0, 256, (t, h, w, 3), dtype=np.uint8), fps=25.0)
    exp = vx.Explanation(spatial=rng.random((t, h, w), dtype=np.float32), temporal=np.full(t, 1 / t), target=0,
                         label="a", score=0.5, probs=np.array([0.5, 0.5]), method="m",
                         meta={"crop_box": (8, 16, 80, 96)})
    render_frames(exp, clip)                                         # fonts and colour tables loaded
    tracemalloc.start()
    try:
        out = render_frames(exp, clip)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1.7 * out.nbytes, peak / out.nbytes
    # the same frames as drawing the whole clip at once
    from videoxai.viz.overlay import caption_bands, outline_crop_box

    whole = outline_crop_box(overlay_frames(clip.frames, exp.spatial), exp, (h, w))
    np.testing.assert_array_equal(out[:, :h], whole)
    np.testing.assert_array_equal(out[:, h:], caption_bands(w, "a  50%", clip.indices, exp.temporal))


def test_caption_cuts_a_long_class_name_by_bisection_on_one_line():
    """The heading was cut one character at a time, measuring the text after each cut: a
    3 000-character class name took 0.5 s a frame. A name with a line break was drawn as two
    lines, the second over the strip of bars."""
    from PIL import Image, ImageDraw

    from videoxai.viz.fonts import CaptionFont
    from videoxai.viz.overlay import _fit

    font, draw = CaptionFont(14), ImageDraw.Draw(Image.new("RGB", (8, 8)))
    measured = []

    class Counting:
        def textlength(self, text, font):
            measured.append(text)
            return draw.textlength(text, font=font)

    def one_by_one(text, width):   # the old rule, as the reference
        if draw.textlength(text, font=font.font) <= width:
            return text
        while text and draw.textlength(text + "…", font=font.font) > width:
            text = text[:-1]
        return text + "…" if text else ""

    for text, width in (("Küche " * 500, 200), ("playing guitar", 60), ("playing guitar", 500), ("WWW", 5)):
        measured.clear()
        assert _fit(Counting(), text, font, width) == one_by_one(text, width)
        assert len(measured) <= 2 + np.log2(len(text) + 1)
    assert _fit(draw, "cut\nwood\tnow", font, 500) == "cut wood now"


def test_figures_keep_their_layout_with_long_class_and_method_names(clip):
    """A class name of a few hundred characters in the title, or eight long method names in the
    one row of keys, left the plot no room: matplotlib gave up its layout ('axes sizes collapsed
    to zero') and cut the axis labels off. Names are cut with an ellipsis and keys wrap to rows."""
    import warnings

    from videoxai.timeline import VideoExplanation, WindowResult
    from videoxai.viz.timeline_report import _timeline_figure

    long = "very long class name " * 300
    exp = make_exp(clip)
    exp.label = long
    with warnings.catch_warnings():
        warnings.simplefilter("error")                     # a layout that gives up warns
        for exps, names in (([exp], None), ([exp] * 8, [f"method {i} " + "x" * 40 for i in range(8)])):
            fig = temporal_curve(exps if len(exps) > 1 else exps[0], names=names)
            fig.canvas.draw()
            title = fig.axes[0].get_title(loc="left")
            assert len(title) < 150 and "…" in title
        assert title.startswith("temporal importance — very long class name")
        window = WindowResult(index=0, frame_indices=clip.indices, start_s=0.0, end_s=1.0, target=0, label=long,
                              score=0.5, predicted=0, predicted_label=long, predicted_score=0.5,
                              temporal=np.full(T, 1 / T), cost=vx.Cost())
        video = VideoExplanation(method=long, model="m", windows=[window], frames=clip.frames,
                                 frame_indices=clip.indices, times=clip.indices / 25.0, spatial=exp.spatial,
                                 temporal=np.ones(T, np.float32), fps=25.0, source=None)
        _timeline_figure([video]).canvas.draw()


def test_timeline_report_leaves_matplotlibs_backend_and_pyplot_alone(tmp_path, clip):
    """The timeline figure called matplotlib.use("Agg") and drew through pyplot: a notebook's
    backend was switched (its plots stopped showing) by writing a report."""
    import matplotlib
    import matplotlib.pyplot as plt

    from videoxai.timeline import VideoExplanation, WindowResult
    from videoxai.viz.timeline_report import _timeline_figure

    window = WindowResult(index=0, frame_indices=clip.indices, start_s=0.0, end_s=1.0, target=0, label="a",
                          score=0.5, predicted=0, predicted_label="a", predicted_score=0.5,
                          temporal=np.full(T, 1 / T), cost=vx.Cost())
    video = VideoExplanation(method="staa", model="m", windows=[window], frames=clip.frames,
                             frame_indices=clip.indices, times=clip.indices / 25.0,
                             spatial=make_exp(clip).spatial, temporal=np.ones(T, np.float32), fps=25.0, source=None)
    before = matplotlib.get_backend()
    matplotlib.use("svg")                                   # the user's choice
    try:
        figures = plt.get_fignums()
        fig = _timeline_figure([video])
        assert matplotlib.get_backend() == "svg" and plt.get_fignums() == figures
        assert len(fig.axes) == 2 and fig.axes[1].get_xlabel() == "video time (s)"
    finally:
        matplotlib.use(before)


def test_report_of_a_high_speed_clip_plays_slowly_enough_to_be_shown(tmp_path):
    """Two frames of a 120 fps video played in 0.017 s: Chromium never showed a frame of either
    video (readyState stayed HAVE_METADATA), the boxes were empty. Embedded videos last 0.25 s
    at least."""
    clip = vx.Clip(np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8), fps=120.0)
    exp = vx.Explanation(spatial=np.zeros((2, 16, 16), np.float32), temporal=np.full(2, 0.5), target=0, label="a",
                         score=0.5, probs=np.array([0.5, 0.5]), method="m")
    path = write_report(tmp_path / "r.html", clip, exp)
    uris = re.findall(r'src="data:video/(webm|mp4);base64,([^"]+)"', path.read_text())
    assert len(uris) == 4
    for i, (kind, data) in enumerate(uris):
        (tmp_path / f"v{i}.{kind}").write_bytes(base64.b64decode(data))
        back = read_video(tmp_path / f"v{i}.{kind}")
        assert back.num_frames == 2 and back.num_frames / back.fps == pytest.approx(0.25)
    js = "return Array.from(document.querySelectorAll('video')).map(v => v.readyState);"
    browser = headless_chrome()                            # skips where Chromium is missing
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        browser.get(path.as_uri())
        try:
            WebDriverWait(browser, 60, poll_frequency=0.2).until(lambda b: all(s >= 2 for s in b.execute_script(js)))
        except Exception:  # report what the browser saw rather than a bare timeout
            pass
        states = browser.execute_script(js)
    finally:
        browser.quit()
    assert len(states) == 2 and all(s >= 2 for s in states), states   # HAVE_CURRENT_DATA or better


@pytest.mark.parametrize("kwargs,match", [
    (dict(explanations=None), "write_report needs at least one explanation: one Explanation or a non-empty list "
                              "of them, got NoneType"),
    (dict(explanations=[]), "needs at least one explanation"),
    (dict(notes=[("AUC", 0.5)]), r"notes must be a mapping \{name: value\}.*got list"),
    (dict(labels="abc"), "labels must be a list of class names, got the string 'abc'"),  # a, b, c were classes
])
def test_report_arguments_of_the_wrong_kind_are_named(tmp_path, clip, kwargs, match):
    """None, a list for notes: TypeError / AttributeError ('list' object has no attribute 'values')."""
    kwargs = {"explanations": make_exp(clip), **kwargs}
    with pytest.raises(InputError, match=match):
        write_report(tmp_path / "r.html", clip, kwargs.pop("explanations"), **kwargs)
    from videoxai.viz.report import write_timeline_report

    with pytest.raises(InputError, match="write_timeline_report: every video explanation must be a "
                                         "VideoExplanation, got Explanation"):
        write_timeline_report(tmp_path / "t.html", [make_exp(clip)])


@pytest.mark.parametrize("name,fps,match", [
    ("o.txt", None, r"cannot write .*o.txt: unknown video suffix '.txt'; use one of .avi, .gif"),
    ("o", None, "unknown video suffix ''"),
    ("o.mp4", 0, "fps must be a positive number, got 0"),
    ("o.mp4", float("nan"), "fps must be a positive number, got nan"),
    ("folder.mp4", None, r"cannot write .*folder.mp4: it is a folder; give a file such as .*folder.mp4/overlay.mp4"),
])
def test_render_refuses_a_suffix_or_fps_before_drawing(tmp_path, clip, name, fps, match, monkeypatch):
    from videoxai.viz import overlay

    (tmp_path / "folder.mp4").mkdir()

    def drawn(*args, **kwargs):
        raise AssertionError("drew every frame before checking the output")

    monkeypatch.setattr(overlay, "render_frames", drawn)
    with pytest.raises(InputError, match=match):
        vx.render(make_exp(clip), clip, tmp_path / name, fps=fps)


def test_curve_of_more_methods_than_colours_draws_each_line_its_own_way(clip):
    """Past the palette's eight colours the ninth method was drawn exactly as the first."""
    exps = [make_exp(clip, method=f"m{i}", peak=i % T) for i in range(10)]
    lines = {ln.get_label(): ln for ln in temporal_curve(exps).axes[0].lines if ln.get_label().startswith("m")}
    looks = [(ln.get_color(), ln.get_linestyle(), ln.get_marker()) for ln in lines.values()]
    assert len(lines) == 10 and len(set(looks)) == 10


def test_timeline_of_many_predicted_classes_keys_the_most_frequent_and_greys_the_rest(clip):
    """A long video predicts dozens of classes: the palette's eight colours went round (the first
    and ninth class drew the same) and one key a class ran off the figure."""
    from matplotlib.colors import to_hex

    from videoxai.timeline import VideoExplanation, WindowResult
    from videoxai.viz.timeline_report import _OTHER, _timeline_figure

    # class c0 in 12 windows, c1 in 11, ..., c11 in 1: 78 windows
    predicted = [f"c{k}" for k in range(12) for _ in range(12 - k)]
    windows = [WindowResult(index=i, frame_indices=np.array([i]), start_s=i / 25, end_s=i / 25, target=0, label="a",
                            score=0.5, predicted=0, predicted_label=lb, predicted_score=0.5,
                            temporal=np.ones(1), cost=vx.Cost()) for i, lb in enumerate(predicted)]
    n = len(windows)
    video = VideoExplanation(method="staa", model="m", windows=windows, frames=np.zeros((n, 2, 2, 3), np.uint8),
                             frame_indices=np.arange(n), times=np.arange(n) / 25, spatial=np.zeros((n, 2, 2), np.float32),
                             temporal=np.ones(n, np.float32), fps=25.0, source=None)
    top = _timeline_figure([video]).axes[0]
    legend = top.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == [f"c{k}" for k in range(7)] + ["5 other classes"]
    colours = [to_hex(h.get_color()) for h in legend.legend_handles]
    assert len(set(colours)) == 8 and colours[-1] == _OTHER.lower()
    spans = {to_hex(c.get_colors()[0]): len(c.get_segments()) for c in top.collections}
    assert spans[_OTHER.lower()] == 5 + 4 + 3 + 2 + 1 and spans[colours[0]] == 12   # every window drawn


@pytest.mark.parametrize("spatial,temporal,match", [
    (2.0, 1.0, r"maps must lie in \[0, 1\], got values in \[2, 2\]"),     # drawn clamped to 1
    (0.5, np.nan, "temporal scores must be finite and non-negative; frame 0's is nan"),
])
def test_timeline_report_refuses_maps_and_scores_outside_the_contract(tmp_path, spatial, temporal, match):
    from videoxai.timeline import VideoExplanation, WindowResult
    from videoxai.viz.report import write_timeline_report

    n = 4
    window = WindowResult(index=0, frame_indices=np.arange(n), start_s=0.0, end_s=0.1, target=0, label="a", score=0.5,
                          predicted=0, predicted_label="a", predicted_score=0.5, temporal=np.full(n, 1 / n),
                          cost=vx.Cost())
    scores = np.ones(n, np.float32)
    scores[0] = temporal
    video = VideoExplanation(method="m", model="m", windows=[window], frames=np.zeros((n, 8, 8, 3), np.uint8),
                             frame_indices=np.arange(n), times=np.arange(n) / 25, spatial=np.full((n, 8, 8), spatial,
                             np.float32), temporal=scores, fps=25.0, source=None)
    with pytest.raises(InputError, match=match):
        write_timeline_report(tmp_path / "t.html", video)


def test_timeline_of_a_one_frame_video_draws_its_point(clip):
    """A line through one point draws nothing: the timeline of a still or a one-frame GIF was empty."""
    from videoxai.timeline import VideoExplanation, WindowResult
    from videoxai.viz.timeline_report import _timeline_figure

    window = WindowResult(index=0, frame_indices=np.zeros(8, np.int64), start_s=0.0, end_s=0.0, target=0, label="a",
                          score=0.5, predicted=0, predicted_label="a", predicted_score=0.5,
                          temporal=np.full(8, 1 / 8), cost=vx.Cost())
    video = VideoExplanation(method="staa", model="m", windows=[window], frames=clip.frames[:1],
                             frame_indices=np.zeros(1, np.int64), times=np.zeros(1), spatial=np.zeros((1, H, W), np.float32),
                             temporal=np.ones(1, np.float32), fps=25.0, source=None)
    (line,) = [ln for ln in _timeline_figure([video]).axes[1].lines if len(ln.get_xdata()) == 1]   # not the 1.0 rule
    assert line.get_marker() not in (None, "None", "") and line.get_ydata()[0] == 1.0


def test_timeline_report_tells_two_specs_of_one_method_apart(tmp_path, clip):
    """`--method 'saliency(channel_reduce=l2),saliency(channel_reduce=abs)' --window-stride` gave
    two cards, two timeline lines and two window tables all named "saliency"; the clip report
    numbers the second one, as this one now does."""
    import dataclasses

    from videoxai.timeline import VideoExplanation, WindowResult
    from videoxai.viz.timeline_report import _timeline_figure, write_timeline_report

    window = WindowResult(index=0, frame_indices=clip.indices, start_s=0.0, end_s=1.0, target=0, label="a",
                          score=0.5, predicted=0, predicted_label="a", predicted_score=0.5,
                          temporal=np.full(T, 1 / T), cost=vx.Cost())
    first = VideoExplanation(method="saliency", model="m", windows=[window], frames=clip.frames,
                             frame_indices=clip.indices, times=clip.indices / 25.0, spatial=make_exp(clip).spatial,
                             temporal=np.ones(T, np.float32), fps=25.0, source=None, options={"channel_reduce": "l2"})
    second = dataclasses.replace(first, options={"channel_reduce": "abs"})
    html = write_timeline_report(tmp_path / "t.html", [first, second]).read_text()
    headings = re.findall(r'<h3><span class="swatch"></span>(.*?)</h3>', html)
    assert headings == ["saliency", "saliency (2)", "saliency", "saliency (2)"]   # the cards, then the tables
    legend = _timeline_figure([first, second]).axes[1].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["saliency", "saliency (2)"]


@pytest.mark.parametrize("targets, predicted, says", [
    ((2, 2), (0, 1), "blue square"),                       # --target 'blue square'
    ((0, 1), (0, 1), "each window's prediction"),          # no --target
])
def test_timeline_report_names_the_explained_class(tmp_path, clip, targets, predicted, says):
    """The clip report's header names the explained class; the timeline report's did not, so a
    page of `--target 'blue square'` read as one of the predictions."""
    from videoxai.timeline import VideoExplanation, WindowResult
    from videoxai.viz.timeline_report import write_timeline_report

    labels = ["red square", "red triangle", "blue square"]
    windows = [WindowResult(index=k, frame_indices=clip.indices, start_s=0.0, end_s=1.0, target=t, label=labels[t],
                            score=0.5, predicted=p, predicted_label=labels[p], predicted_score=0.5,
                            temporal=np.full(T, 1 / T), cost=vx.Cost())
               for k, (t, p) in enumerate(zip(targets, predicted))]
    video = VideoExplanation(method="saliency", model="m", windows=windows, frames=clip.frames,
                             frame_indices=clip.indices, times=clip.indices / 25.0, spatial=make_exp(clip).spatial,
                             temporal=np.ones(T, np.float32), fps=25.0, source=None)
    html = write_timeline_report(tmp_path / "t.html", video).read_text()
    assert f'<span class="chip">explained class <b>{says}</b></span>' in html.replace("&#x27;", "'")


def test_timeline_report_refuses_video_explanations_of_other_windows(tmp_path, clip):
    """Two explanations of the same frames with windows 4 and 6 frames apart: the header said
    "windows 4", "stride 4" and the timeline showed the first's predictions for both."""
    from videoxai.timeline import VideoExplanation, WindowResult
    from videoxai.viz.timeline_report import write_timeline_report

    def video(starts):
        windows = [WindowResult(index=k, frame_indices=clip.indices[a:a + 2], start_s=0.0, end_s=1.0, target=0,
                                label="a", score=0.5, predicted=0, predicted_label="a", predicted_score=0.5,
                                temporal=np.full(2, 0.5), cost=vx.Cost()) for k, a in enumerate(starts)]
        return VideoExplanation(method="saliency", model="m", windows=windows, frames=clip.frames,
                                frame_indices=clip.indices, times=clip.indices / 25.0,
                                spatial=make_exp(clip).spatial, temporal=np.ones(T, np.float32), fps=25.0,
                                source=None)

    assert write_timeline_report(tmp_path / "same.html", [video([0, 2]), video([0, 2])]).exists()
    with pytest.raises(InputError, match="must have the same windows"):
        write_timeline_report(tmp_path / "t.html", [video([0, 2]), video([0, 1])])
    assert not (tmp_path / "t.html").exists()


def test_temporal_curve_writes_the_format_its_suffix_names(tmp_path, clip):
    """Every curve was PNG: curve.svg and curve.pdf were PNG files under those names, curve.txt
    was written without a word, and a folder failed as IsADirectoryError after the drawing."""
    from videoxai.viz.curve import temporal_curve

    exp = make_exp(clip)
    heads = {"png": b"\x89PNG", "svg": b"<?xml", "pdf": b"%PDF"}
    for suffix, head in heads.items():
        assert temporal_curve(exp, tmp_path / f"c.{suffix}").read_bytes().startswith(head), suffix
    assert temporal_curve(exp, tmp_path / "c").read_bytes().startswith(heads["png"])   # no suffix: PNG
    with pytest.raises(InputError, match=r"unknown image suffix '\.txt'; use one of .*\.png.*\.svg"):
        temporal_curve(exp, tmp_path / "c.txt")
    for folder in (tmp_path, f"{tmp_path / 'new'}/"):
        with pytest.raises(InputError, match="it is a folder; give a file such as"):
            temporal_curve(exp, folder)
    assert not (tmp_path / "c.txt").exists() and not (tmp_path / "new").exists()


def test_report_shows_when_its_frames_are_shown_at_a_variable_frame_rate(tmp_path):
    """The page named source frames (#3–#18) but no time, and ``index / fps`` is not a frame's time
    at a variable rate: the header and key-frame captions give the file's own times."""
    from fractions import Fraction

    import av

    from videoxai.data.video import frame_times

    path = tmp_path / "phone.mkv"
    ms = np.cumsum([0] + [33, 34, 33, 100, 20] * 3 + [33] * 4)          # 20 frames, 30 fps and slower
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        s.time_base = s.codec_context.time_base = Fraction(1, 1000)
        for k, rgb in enumerate(np.random.default_rng(1).integers(0, 256, (20, H, W, 3), dtype=np.uint8)):
            f = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            f.pts, f.time_base = int(ms[k]), Fraction(1, 1000)
            out.mux(s.encode(f))
        out.mux(s.encode())
    clip = read_video(path, T, start="3")
    exp = make_exp(clip, peak=4)
    html = write_report(tmp_path / "r.html", clip, exp, top_k=T).read_text()
    when = frame_times(path)[clip.indices]                # demuxed independently of the clip
    assert f'time <b>{when[0]:.2f} s–{when[-1]:.2f} s</b>' in html and when[0] == pytest.approx(0.1)
    captions = re.findall(r"<figcaption><b>top \d+</b> · frame #(\d+) · ([\d.]+) s<br>", html)
    assert len(captions) == T
    for frame, seconds in captions:
        assert float(seconds) == pytest.approx(ms[int(frame)] / 1000, abs=0.005)
    assert any(abs(int(f) / clip.fps - float(s)) > 0.01 for f, s in captions)   # not index / fps
    # frames without timestamps (arrays) keep the captions they had
    html = write_report(tmp_path / "a.html", vx.Clip(clip.frames), make_exp(vx.Clip(clip.frames))).read_text()
    assert "time <b>" not in html and re.search(r"frame #\d+<br>", html)


def test_figures_draw_class_and_method_names_in_fonts_that_have_their_glyphs():
    """Curve titles and keys were drawn in DejaVu Sans only: matplotlib drew boxes for every
    character it lacks ('Glyph … missing from font(s) DejaVu Sans'). Now the text's font family is
    DejaVu Sans followed by installed fonts that have the glyphs (here matplotlib's own STIX)."""
    import io
    import warnings

    def drawn(label: str, names: list[str]) -> list[str]:
        exp = vx.Explanation(spatial=np.ones((4, 8, 8), np.float32), temporal=np.full(4, 0.25), target=0,
                             label=label, score=0.9, probs=np.array([0.9, 0.1]), method="saliency",
                             frame_indices=np.arange(4))
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            temporal_curve([exp, exp], names=names).savefig(io.BytesIO(), format="png")
            temporal_curve(exp).savefig(io.BytesIO(), format="png")
        return [str(w.message) for w in seen if "missing from font" in str(w.message)]

    assert drawn("Ⓐ ball", ["Ⓑ rise", "saliency"]) == []
    assert drawn("ball \U0010FFFD", ["rise", "saliency"])    # no font has it: matplotlib still says so


def test_render_frames_draws_only_the_frames_asked_for_each_as_in_the_whole_rendering(clip):
    """A sliding window's overlay needs only the frames it adds to the video."""
    from videoxai.viz.overlay import render_frames

    exp = vx.Explanation(spatial=np.random.default_rng(0).random((clip.num_frames, clip.height, clip.width)),
                         temporal=np.linspace(1, 2, clip.num_frames), target=0, label="a", score=0.5,
                         probs=np.array([0.5, 0.5]), method="m", frame_indices=clip.indices)
    for size in (None, (40, 56)):
        whole = render_frames(exp, clip, size=size)
        for positions in ([clip.num_frames - 1], [1, 3], []):
            np.testing.assert_array_equal(render_frames(exp, clip, size=size, positions=positions), whole[positions])
    with pytest.raises(InputError, match="positions must lie in 0"):
        render_frames(exp, clip, positions=[clip.num_frames])
