"""Shared fixtures: tiny Hugging Face video transformers built from configs (no downloads)."""

from __future__ import annotations

import os
import shutil
import tempfile

import numpy as np
import pytest
import torch

os.environ.setdefault("VIDEOXAI_PROGRESS", "0")
# one share of the cores per pytest-xdist worker (`make test` runs two): two workers of two
# threads each on 2 cores spend their time waiting for each other
torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))))

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, num_labels=5)


def tiny_hf(family: str, seed: int = 0, **overrides):
    """A tiny random HF video classifier of ``family`` (timesformer | videomae | vivit | vjepa2 | videoprism)."""
    from transformers import (TimesformerConfig, TimesformerForVideoClassification, VideoMAEConfig,
                              VideoMAEForVideoClassification, VivitConfig, VivitForVideoClassification)

    torch.manual_seed(seed)
    kw = {**TINY, **overrides}
    if family == "timesformer":
        net = TimesformerForVideoClassification(TimesformerConfig(num_frames=8, image_size=32, patch_size=8, **kw))
    elif family == "videomae":
        net = VideoMAEForVideoClassification(VideoMAEConfig(num_frames=8, image_size=32, patch_size=8,
                                                            tubelet_size=2, **kw))
    elif family == "vivit":
        net = VivitForVideoClassification(VivitConfig(num_frames=8, image_size=32, tubelet_size=[2, 8, 8], **kw))
    elif family == "vjepa2":  # its own names: frames_per_clip, crop_size, in_chans, mlp_ratio
        from transformers import VJEPA2Config, VJEPA2ForVideoClassification

        kw["in_chans"] = kw.pop("num_channels", 3)
        kw["mlp_ratio"] = kw.pop("intermediate_size") / kw["hidden_size"]
        net = VJEPA2ForVideoClassification(VJEPA2Config(frames_per_clip=8, crop_size=32, patch_size=8, tubelet_size=2,
                                                        num_pooler_layers=1, pred_hidden_size=16,
                                                        pred_num_hidden_layers=1, pred_num_attention_heads=2, **kw))
    elif family == "videoprism":  # a factorised encoder: spatial layers, then temporal ones
        from transformers import VideoPrismForVideoClassification, VideoPrismVisionConfig

        layers = kw.pop("num_hidden_layers")
        kw.setdefault("num_spatial_layers", layers)
        kw.setdefault("num_temporal_layers", layers)
        net = VideoPrismForVideoClassification(VideoPrismVisionConfig(num_frames=8, image_size=32, tubelet_size=[1, 8, 8],
                                                                      **kw))
    else:
        raise ValueError(family)
    # Random init gives near-uniform attention; sharpen it so attention maps carry structure.
    with torch.no_grad():
        for name, p in net.named_parameters():
            if any(k in name for k in ("qkv", "query", "key", "q_proj", "k_proj")) and p.ndim == 2:
                p.mul_(25.0)
    return net.eval()


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module (``pytestmark = pytest.mark.usefixtures("one_thread")``):
    its clips are tiny, so a second thread only adds synchronisation on every small op (the
    optimisation loops of ep2d/ep3d ran 10-100x slower with two threads on a busy 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(params=["timesformer", "videomae", "vivit", "vjepa2", "videoprism"])
def hf_family(request):
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(0)


_CHROMIUM_TMP = tempfile.TemporaryDirectory(prefix="videoxai-tests-chromium-")


def headless_chrome():
    """A Selenium-driven headless Chromium; skips the test where Chromium, chromedriver or Selenium is
    missing (Debian: apt-get install chromium chromium-driver; `make test` installs them)."""
    chromium = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.skip("needs Chromium and chromedriver (Debian: apt-get install chromium chromium-driver; "
                    "`make test` installs them)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (pip install selenium)")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--autoplay-policy=no-user-gesture-required", "--window-size=1400,1000"):
        opts.add_argument(arg)
    # Chromium leaves a directory with its singleton socket in $TMPDIR when it is shut down: keep
    # them in one directory of the test run, removed when the run ends, not in the user's /tmp
    env = {**os.environ, "TMPDIR": _CHROMIUM_TMP.name}
    return webdriver.Chrome(service=Service(driver, env=env), options=opts)


def wide_pixels_video(path):
    """A ~2 KB H.264 file of three 256×256 frames whose pixels claim to be 100 times as wide as tall
    (sample aspect ratio 100:1): shown at 25600×256, an "aspect-ratio bomb" for ``max_pixels``."""
    from fractions import Fraction

    import av

    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=10)
        s.width = s.height = 256
        s.pix_fmt = "yuv420p"
        s.codec_context.sample_aspect_ratio = Fraction(100, 1)
        for k in range(3):
            out.mux(s.encode(av.VideoFrame.from_ndarray(np.full((256, 256, 3), 60 * k, np.uint8), format="rgb24")))
        out.mux(s.encode())
    return path
