"""Asking which methods a model supports, and building them, never waits for an explanation
running on the model (the server answers ``/api/info`` and validates uploads meanwhile)."""

from __future__ import annotations

import threading

import torch
from torch import nn

import videoxai as vx

T, S, K = 4, 16, 3


class Net(nn.Module):
    """``(B, 3, T, H, W)`` → ``(B, K)``: a 3D convolution block, global average pool, linear head
    (saliency_tubes' textbook network)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv3d(3, 6, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(6, K)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean((2, 3, 4)))


def _while_the_model_is_busy(model, work) -> dict:
    """Runs ``work()`` on a thread while another thread holds the model's lock (an explanation
    running); returns what ``work`` put in its dict, or fails if it waited for the lock."""
    busy, done, out = threading.Event(), threading.Event(), {}

    def explaining() -> None:
        with model.inference():
            busy.set()
            done.wait(60)

    holder = threading.Thread(target=explaining)
    holder.start()
    try:
        assert busy.wait(30)
        asker = threading.Thread(target=lambda: out.update(work()))
        asker.start()
        asker.join(20)
        assert not asker.is_alive(), "waited for the explanation running on the model"
    finally:
        done.set()
        holder.join()
    return out


def test_a_gradient_method_is_built_while_another_thread_explains_with_the_model():
    # the quantized-layer check was an override of unsupported(), which runs holding the model's
    # lock (an override may run the network): the server building a saliency job waited for the
    # job running before it to finish, and the upload's reply with it
    model = vx.wrap(Net(), num_frames=T, input_size=S)
    names = ("saliency", "integrated_gradients", "ep3d")
    built = _while_the_model_is_busy(model, lambda: {name: vx.methods.get(name)(model) for name in names})
    assert sorted(built) == sorted(names)


def test_supports_of_every_method_and_building_cam_methods_do_not_wait_for_a_running_explanation():
    # CAM methods and saliency_tubes overrode `unsupported`, which then ran holding the model's
    # lock: once their layer search and head probe were done (remembered by the model), every
    # `supports()` still waited for the explanation running on the model
    model = vx.wrap(Net(), num_frames=T, input_size=S)
    expected = {name: vx.methods.get(name).supports(model) for name in vx.methods.available()}
    assert expected["gradcam"] and expected["saliency_tubes"] and not expected["stabn"]
    passes = model.passes.forward

    def ask() -> dict:
        answers = {name: vx.methods.get(name).supports(model) for name in vx.methods.available()}
        built = [type(vx.methods.get(name)(model)).__name__ for name in ("gradcam", "gradcam_pp", "saliency_tubes")]
        return {"answers": answers, "built": built}

    out = _while_the_model_is_busy(model, ask)
    assert out["answers"] == expected
    assert len(out["built"]) == 3
    assert model.passes.forward == passes  # the remembered answers: no network run


def test_the_stabn_method_is_built_while_an_explanation_runs_on_its_model():
    model = vx.load_model("demo-stabn")
    out = _while_the_model_is_busy(model, lambda: {"m": vx.methods.get("stabn")(model)})
    assert out["m"].model is model


def test_the_head_probe_still_runs_the_network_in_eval_mode_holding_the_lock():
    # saliency_tubes' probe now takes the lock itself: a network left in training mode must not
    # move its batch-norm statistics when asked
    class WithNorm(Net):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(nn.Conv3d(3, 6, 3, padding=1), nn.BatchNorm3d(6), nn.ReLU())

    net = WithNorm().train()
    model = vx.wrap(net, num_frames=T, input_size=S)
    net.train()
    before = net.features[1].running_mean.clone()
    assert vx.methods.get("saliency_tubes").supports(model)
    assert torch.equal(net.features[1].running_mean, before) and net.training
