"""What an explanation must never do to the user's model and process, for every registered method.

A user's network in the middle of fine-tuning: some layers frozen, in training mode with one
batch-norm layer held in eval mode, a gradient from their last step still on a parameter, a hook
of their own. After an explanation — and after one that fails on the k-th forward pass or is
interrupted — its weights, gradients, ``requires_grad`` flags, modes and hooks are exactly as
before, its lock is free, and the global random generators (torch, numpy, ``random``) have not
been consumed or reseeded. The cost an explanation reports is the passes the network really ran,
counted here with a hook of our own.
"""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch
from torch import nn

import videoxai as vx
from videoxai.methods import available as method_names
from videoxai.methods import get as get_method

#: conventional option names → a cheap value (as in test_contract)
FAST = {"n_samples": 3, "iterations": 2, "n_steps": 2, "levels": 2, "steps": 3, "stages": 1,
        "max_exact_players": 4, "n_segments": 4, "segments": 16, "grid": 4, "strides": 1000,
        "shares": [0.3, 0.6], "areas": [0.1]}


def fast_options(cls) -> dict:
    return {k: v for k, v in FAST.items() if k in cls.declared_options()}


class _TrainingNet(nn.Module):
    """A user's 3D CNN: conv, batch norm, dropout, global pooling, a linear head."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv = nn.Conv3d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm3d(6)
        self.act = nn.ReLU()
        self.drop = nn.Dropout(0.3)
        self.head = nn.Linear(6, 3)
        with torch.no_grad():  # seeded weights, without touching the global generator
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)

    def forward(self, x):  # (B, C, T, H, W)
        return self.head(self.drop(self.act(self.bn(self.conv(x))).mean((2, 3, 4))))


def _user_model(cam_layer: str | None = "act") -> vx.VideoModel:
    return _in_training(vx.wrap(_TrainingNet(), num_frames=8, input_size=16, cam_layer=cam_layer,
                                labels=["a", "b", "c"]))


def _in_training(model: vx.VideoModel) -> vx.VideoModel:
    """``model`` as a user fine-tuning it leaves it: its first parameter frozen, in training mode
    but for its first batch-norm layer, a gradient on its last parameter, a hook of their own."""
    params = list(model.net.parameters())
    params[0].requires_grad_(False)
    model.train()
    norms = [m for m in model.net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if norms:
        norms[0].eval()
    params[-1].grad = torch.full_like(params[-1], 0.25)
    model.net.register_forward_hook(lambda m, i, o: None)
    return model


#: tiny clips: one intra-op thread (conftest.one_thread)
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def clip():
    return vx.Clip.from_array(np.random.default_rng(0).random((8, 16, 16, 3), dtype=np.float32))


def _state(model) -> dict:
    """Everything of ``model`` an explanation may touch (for ``==``, tensors as bytes)."""
    hook_dicts = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    return {
        "weights": {k: v.detach().clone().numpy().tobytes() for k, v in model.state_dict().items()},
        "grads": {n: None if p.grad is None else p.grad.clone().numpy().tobytes() for n, p in model.named_parameters()},
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "modes": {n: m.training for n, m in model.named_modules()},
        "hooks": {n: [len(getattr(m, d)) for d in hook_dicts] + [m._is_full_backward_hook, "forward" in m.__dict__]
                  for n, m in model.named_modules()},
    }


def _global_rngs() -> tuple:
    return torch.random.get_rng_state().numpy().tobytes(), repr(np.random.get_state()), random.getstate()


def _lock_is_free(model) -> bool:
    """Whether another thread can take the model's lock (an explanation that kept it would
    deadlock every later call from another thread)."""
    got = []

    def take():
        lock = model.exclusive()
        if lock.acquire(timeout=5):
            lock.release()
            got.append(True)

    t = threading.Thread(target=take)
    t.start()
    t.join()
    return bool(got)


class _Injected(Exception):
    pass


def _failing_on(model, k: int, exc: type[BaseException] = _Injected):
    """A hook of the network that raises ``exc`` on its ``k``-th forward (the handle to remove)."""
    calls = [0]

    def hook(_module, _inputs, _out):
        calls[0] += 1
        if calls[0] == k:
            raise exc(f"forward {k}")

    return model.net.register_forward_hook(hook)


def _counting(model):
    """A hook counting the clips that go forward through the network and its calls
    (``[clips, calls]``), and its handle."""
    count = [0, 0]

    def hook(_module, args, kwargs):
        pixels = args[0] if args else kwargs["pixel_values"]  # Hugging Face networks take keywords
        count[0] += pixels.shape[0]
        count[1] += 1

    return count, model.net.register_forward_pre_hook(hook, with_kwargs=True)


@pytest.fixture(scope="module")
def bundled():
    return {name: _in_training(vx.load_model(name)) for name in ("demo", "demo-stabn")}


@pytest.mark.parametrize("name", method_names())
def test_a_user_model_is_left_as_it_was_after_a_call_a_failure_and_an_interrupt(clip, bundled, name):
    # a method the user's CNN cannot run (attention, ST-ABN) runs on a bundled model in training
    cls = get_method(name)
    model = next((m for m in [_user_model(), *bundled.values()] if cls.supports(m)), None)
    assert model is not None, f"no model here that {name} supports"
    options = fast_options(cls)
    before, rngs = _state(model), _global_rngs()

    count, handle = _counting(model)
    exp = vx.explain(model, clip, name, **options)
    handle.remove()
    assert _state(model) == before
    assert _global_rngs() == rngs, "the explanation consumed or reseeded a global random generator"
    assert exp.cost.forward_passes == count[0]
    again = vx.explain(model, clip, name, **options)  # same input and seed: the same bits
    assert np.array_equal(again.spatial, exp.spatial) and np.array_equal(again.temporal, exp.temporal)

    calls = count[1]  # a failure in the first, the middle and the last forward; an interrupt
    for k, exc in [(1, _Injected), (calls // 2 + 1, _Injected), (calls, _Injected), (2, KeyboardInterrupt)]:
        if k > calls:
            continue
        handle = _failing_on(model, k, exc)
        try:
            with pytest.raises(exc, match=f"forward {k}"):
                vx.explain(model, clip, name, **options)
        finally:
            handle.remove()
        assert _state(model) == before, f"model changed by a failure in forward {k} ({exc.__name__})"
        assert _lock_is_free(model)
    assert _global_rngs() == rngs
    assert np.array_equal(vx.explain(model, clip, name, **options).spatial, exp.spatial)


def test_asking_whether_a_method_applies_and_building_it_leave_a_training_model_as_it_was():
    # saliency_tubes answers supports() by running the network, and a CAM method built without
    # a layer runs it to find one: on a model in training mode both ran it as it was, moving its
    # batch-norm statistics (and saliency_tubes answered from a dropout draw), outside vx.explain
    for name in method_names():
        cls = get_method(name)
        model = _user_model(cam_layer=None)
        model.net.bn.train()
        before = _state(model)
        if cls.supports(model):
            cls(model, **fast_options(cls))
        assert _state(model) == before, f"{name} changed the model"
        assert model.net.bn.training and model.net.drop.training
    model = _user_model()
    model.net.bn.train()
    assert get_method("saliency_tubes").supports(model)  # in eval mode the head is a linear map of the layer's mean


@pytest.mark.parametrize("name", ["gradcam", "saliency_tubes"])
def test_the_cost_counts_the_passes_that_building_the_method_runs(clip, name):
    # building a CAM method without a layer runs the network once to find one, and
    # saliency_tubes runs it once more to check its head: both ran during vx.explain (one
    # forward more than the one the map needs) and neither was in exp.cost
    model = _user_model(cam_layer=None)
    model.eval()
    count, handle = _counting(model)
    try:
        first = vx.explain(model, clip, name)
        assert first.cost.forward_passes == count[0] > 1
        count[:] = [0, 0]
        second = vx.explain(model, clip, name)  # the layer is known now: only the probes left
        assert second.cost.forward_passes == count[0]
    finally:
        handle.remove()


_FRESH_PROCESS = """
import hashlib, sys
import numpy as np, torch
torch.set_num_threads(1)
sys.path.insert(0, {tests!r})
import videoxai as vx
from test_model_invariants import _user_model
clip = vx.Clip.from_array(np.random.default_rng(0).random((8, 16, 16, 3), dtype=np.float32))
for name, options in {cases!r}:
    exp = vx.explain(_user_model(), clip, name, **options)
    print(hashlib.sha256(exp.spatial.tobytes() + exp.temporal.tobytes()).hexdigest())
"""


def test_the_same_seed_gives_the_same_bits_in_a_fresh_process(clip):
    cases = [("rise", {"n_samples": 6, "seed": 3}), ("lime", {"n_samples": 6, "seed": 3}),
             ("smoothgrad", {"n_samples": 3, "seed": 3})]
    here = [hashlib.sha256(e.spatial.tobytes() + e.temporal.tobytes()).hexdigest()
            for e in (vx.explain(_user_model(), clip, n, **o) for n, o in cases)]
    code = _FRESH_PROCESS.format(tests=os.path.dirname(__file__), cases=cases)
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == here
    other = vx.explain(_user_model(), clip, "rise", n_samples=6, seed=4)
    assert hashlib.sha256(other.spatial.tobytes() + other.temporal.tobytes()).hexdigest() != here[0]


def test_a_method_shared_by_threads_explaining_two_models_runs_each_on_its_own(clip):
    # vx.explain set a constructed method's model to the one it explains and put it back after:
    # a second thread explaining another model with the same method object swapped it under the
    # first, whose remaining passes then ran on the other network (a wrong map, silently)
    first, second = _user_model(), _user_model()
    with torch.no_grad():
        second.net.head.weight.mul_(-1)
    method = get_method("rise")(first, n_samples=6, batch_size=2)
    alone = {id(first): vx.explain(first, clip, method), id(second): vx.explain(second, clip, method)}
    paused, entered, first_done = threading.Event(), threading.Event(), threading.Event()
    calls = {id(first): 0, id(second): 0}

    def pause_first(_module, _inputs, _out):  # mid-run: wait until the other thread has begun
        calls[id(first)] += 1
        if calls[id(first)] == 2:
            paused.set()
            entered.wait(5)

    def hold_second(_module, _inputs, _out):  # the other thread stays inside its call meanwhile
        calls[id(second)] += 1
        if calls[id(second)] == 1:
            entered.set()
            first_done.wait(5)

    results = {}

    def run(model, done=None):
        try:
            results[id(model)] = vx.explain(model, clip, method)
        finally:
            if done is not None:
                done.set()

    handles = [first.net.register_forward_hook(pause_first), second.net.register_forward_hook(hold_second)]
    try:
        a = threading.Thread(target=run, args=(first, first_done))
        a.start()
        assert paused.wait(5)
        b = threading.Thread(target=run, args=(second,))
        b.start()
        a.join(10)
        b.join(10)
    finally:
        for h in handles:
            h.remove()
    for model in (first, second):
        assert np.array_equal(results[id(model)].spatial, alone[id(model)].spatial)
        assert results[id(model)].cost.forward_passes == alone[id(model)].cost.forward_passes == 7
    assert calls == {id(first): 4, id(second): 4}  # the clean clip and 3 batches each, on its own network
    assert method.model is first


def test_the_cost_inside_a_forward_cache_counts_only_the_clips_the_model_ran(clip):
    from videoxai.models.forward_cache import sharing

    model = _user_model()
    count, handle = _counting(model)
    try:
        with sharing(model):
            first = vx.explain(model, clip, "rise", n_samples=6)
            assert first.cost.forward_passes == count[0] == 7
            count[:] = [0, 0]
            again = vx.explain(model, clip, "rise", n_samples=6, target=(first.target + 1) % 3)  # its clips looked up
            assert again.cost.forward_passes == count[0] == 1  # the clean clip only
    finally:
        handle.remove()
    assert np.array_equal(again.spatial, vx.explain(model, clip, "rise", n_samples=6, target=(first.target + 1) % 3).spatial)


@pytest.mark.parametrize("training", [False, True])
def test_a_mode_set_while_another_thread_explains_waits_for_it(clip, training):
    # a training loop's model.train() / model.eval() while another thread explained: from
    # training mode, the explanation's end put the modes back and undid the call (the epoch ran
    # in eval mode); from eval mode, the rest of the explanation ran in training mode (dropout
    # drawing its map, its passes moving batch-norm statistics). train() and eval() now wait for
    # the explanation, as a forward pass does
    model = _user_model()
    model.train(training)
    weights = _state(model)["weights"]
    alone = vx.explain(model, clip, "rise", n_samples=4, batch_size=1)
    paused, resume = threading.Event(), threading.Event()
    calls, results = [0], []

    def pause(_module, _inputs, _out):
        calls[0] += 1
        if calls[0] == 2:
            paused.set()
            resume.wait(5)

    handle = model.net.register_forward_hook(pause)
    explaining = threading.Thread(target=lambda: results.append(vx.explain(model, clip, "rise", n_samples=4, batch_size=1)))
    switching = threading.Thread(target=model.train, args=(not training,))
    try:
        explaining.start()
        assert paused.wait(5)
        switching.start()
        switching.join(0.2)
        resume.set()
        explaining.join(10)
        switching.join(10)
    finally:
        handle.remove()
    assert all(m.training is not training for m in model.modules())
    assert _state(model)["weights"] == weights
    assert np.array_equal(results[0].spatial, alone.spatial)
