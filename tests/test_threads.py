"""One model shared by threads (a thread pool, FastAPI's sync endpoints): explanations take turns.

Methods hook layers, tap attention and freeze parameters for the length of a call; before the
model's lock, a Grad-CAM in one thread captured another thread's activations (wrong maps) or
its backward found no graph ("appears to not have been used in the graph"), and costs counted
other threads' passes.
"""

from __future__ import annotations

import copy
import pickle
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import videoxai as vx

METHODS = ["gradcam", "gradcam_pp", "saliency", "integrated_gradients(n_steps=8)"]


@pytest.fixture(scope="module")
def model():
    return vx.load_model("demo-cnn")


def test_threads_sharing_a_model_get_the_maps_and_costs_of_serial_calls(model):
    rng = np.random.default_rng(0)
    clips = [rng.random((8, 64, 64, 3), dtype=np.float32) for _ in range(4)]
    jobs = [(i, m) for i in range(len(clips)) for m in METHODS]
    serial = {job: vx.explain(model, clips[job[0]], job[1]) for job in jobs}
    with ThreadPoolExecutor(8) as pool:
        threaded = list(pool.map(lambda job: (job, vx.explain(model, clips[job[0]], job[1])), jobs * 3))
    for job, exp in threaded:
        np.testing.assert_array_equal(exp.spatial, serial[job].spatial)
        assert (exp.cost.forward_passes, exp.cost.backward_passes) == \
            (serial[job].cost.forward_passes, serial[job].cost.backward_passes)
    assert not any(m._forward_hooks or m._backward_hooks for m in model.net.modules())
    assert all(p.requires_grad for p in model.net.parameters())


def test_metrics_in_one_thread_do_not_feed_another_threads_hooks(model):
    from videoxai.metrics.base import evaluate

    rng = np.random.default_rng(1)
    clip = rng.random((8, 64, 64, 3), dtype=np.float32)
    alone = vx.explain(model, clip, "gradcam")
    serial = evaluate("deletion", model, clip, alone).value   # the score with no other thread about
    with ThreadPoolExecutor(4) as pool:
        scores = [pool.submit(evaluate, "deletion", model, clip, alone) for _ in range(4)]
        maps = [pool.submit(vx.explain, model, clip, "gradcam") for _ in range(8)]
        for f in maps:
            np.testing.assert_array_equal(f.result().spatial, alone.spatial)
        for f in scores:
            assert f.result().value == pytest.approx(serial, abs=1e-9)


def test_copies_have_their_own_lock_and_views_share_it(model):
    view = model.at_model_size()
    assert view.exclusive() is model.exclusive()               # the same network: the same turns
    for other in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert other.exclusive() is not model.exclusive()
        with other.exclusive(), model.exclusive():            # neither blocks the other
            pass
        x = np.random.default_rng(2).random((8, 64, 64, 3), dtype=np.float32)
        np.testing.assert_allclose(vx.explain(other, x, "saliency").spatial, vx.explain(model, x, "saliency").spatial)
