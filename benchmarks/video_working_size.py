"""Working size: IG, RISE and LIME on the 720p sample at full resolution and at the model's view.

``vx.explain(..., working_size="model")`` (the default) hands a method the model's crop box
resampled to its input size — the very pixels the network sees — and pastes the map back onto
the original frames; ``working_size="full"`` (the CLI's ``--full-resolution``) makes it perturb and
differentiate the original 1280×720 frames. This script explains the bundled Big Buck Bunny clip
(``tests/data/bigbuckbunny.mp4``, 8 frames sampled uniformly) with each method both ways and
prints, side by side, the CPU time (all threads) and the peak rise of resident memory of the whole
``vx.explain`` call (a :class:`~videoxai.cost.CostMeter` around it, so the conversion of the
frames to float counts too; memory sampled every 5–50 ms). Every (method, size) pair
runs in a fresh process after a warm-up call on a small clip, so one run's allocations do not hide
another's peak.

Localisation: the synthetic benchmark's clips are 64×64, exactly the demo models' input, so the
working size changes nothing on them (the script checks that the maps are identical). To see
whether working at the model's size costs localisation on *large* frames, the second table
upscales held-out synthetic clips 4× (256×256, nearest neighbour, ground-truth masks upscaled the
same way) and scores both sizes: the share of clips whose top frame lies in the evidence window,
and of evidence frames whose peak pixel lies on the object.

    nice python benchmarks/video_working_size.py                        # demo model, defaults
    nice python benchmarks/video_working_size.py --ig-steps 20 --rise-samples 300 --lime-samples 250
    git worktree add /tmp/before f21a1ff   # the code before the working size existed
    nice python benchmarks/video_working_size.py --before /tmp/before   # adds a "before" column
    nice python benchmarks/video_working_size.py --upscale 3 --methods gradcam,saliency --loc-clips 0 \
        --before /tmp/before                                            # the same video as 4K

``--before DIR`` runs the same call with the package found in ``DIR`` (no ``working_size``
argument: the code as it was), measured by this tree's meter, so "before" is what a user of that
version paid, not this version's ``--full-resolution``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "tests" / "data" / "bigbuckbunny.mp4"


def one_run(model_spec: str, method: str, options: dict, working_size: str | None, upscale: int = 1) -> dict:
    """Explain the sample once (in this process) and return the measured cost.

    ``working_size=None`` calls ``explain`` without the argument (an older version of the package);
    ``upscale`` repeats every pixel that many times each way (3: the 720p sample as 4K).
    """
    import importlib.util

    import videoxai as vx

    # this tree's meter, whichever package is explaining (an older one's measured growth, not peak)
    spec = importlib.util.spec_from_file_location("_meter", ROOT / "videoxai" / "cost.py")
    meter_module = importlib.util.module_from_spec(spec)
    sys.modules["_meter"] = meter_module  # its dataclasses look their module up
    spec.loader.exec_module(meter_module)
    size = {} if working_size is None else {"working_size": working_size}
    model = vx.load_model(model_spec)
    clip = vx.read_video(SAMPLE, num_frames=model.num_frames)
    if upscale > 1:
        clip = vx.Clip(np.ascontiguousarray(clip.frames.repeat(upscale, 1).repeat(upscale, 2)))
    warm = vx.Clip(clip.frames[:, :96, :160])
    vx.explain(model, warm, method, **size, **_small(method))  # warm-up
    cpu = time.process_time()
    with meter_module.CostMeter(model) as meter:  # the whole call, the clip's conversion to float included
        exp = vx.explain(model, clip, method, **size, **options)
    cpu = time.process_time() - cpu  # all threads: steadier than wall time on a shared machine
    return {"seconds": meter.cost.seconds, "cpu_seconds": cpu, "peak_mb": meter.cost.peak_memory_mb,
            "label": exp.label, "score": exp.score, "frame": exp.meta.get("working_frame")}


def _small(method: str) -> dict:
    return {"integrated_gradients": {"n_steps": 2}, "rise": {"n_samples": 4}, "lime": {"n_samples": 4}}.get(method, {})


def in_child(model_spec: str, method: str, options: dict, working_size: str | None,
             package_root: Path = ROOT, upscale: int = 1) -> dict:
    """:func:`one_run` in a fresh process, importing ``videoxai`` from ``package_root``."""
    code = ("import json, sys; sys.path.insert(0, %r); sys.path.insert(0, %r); "
            "from video_working_size import one_run; "
            "print('RESULT', json.dumps(one_run(%r, %r, %r, %r, %r)))"
            % (str(ROOT / "benchmarks"), str(package_root), model_spec, method, options, working_size, upscale))
    env = {**os.environ, "VIDEOXAI_PROGRESS": "0", "PYTHONPATH": str(package_root)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def localisation(model_spec: str, clips: int, scale: int, options: dict[str, dict]) -> dict:
    """Temporal / spatial hit rates of each method at both working sizes on upscaled synthetic clips."""
    import videoxai as vx
    from videoxai.data.synthetic import SyntheticVideos

    model = vx.load_model(model_spec)
    test = SyntheticVideos(clips, split="test", seed=0)
    rates: dict = {}
    same_on_native = True
    for method, opts in options.items():
        for size in ("full", "model"):
            t_hits, s_hits, s_total = 0, 0, 0
            for sample in test:
                big = vx.Clip(sample.frames.repeat(scale, 1).repeat(scale, 2))
                exp = vx.explain(model, big, method, target=sample.label, working_size=size, **opts)
                start, end = sample.window
                t_hits += int(start <= int(np.argmax(exp.temporal)) < end)
                for t in range(start, end):
                    peak = np.unravel_index(int(np.argmax(exp.spatial[t])), exp.spatial[t].shape)
                    s_hits += int(sample.masks[t][peak[0] // scale, peak[1] // scale])
                    s_total += 1
            rates[(method, size)] = (t_hits / len(test), s_hits / max(1, s_total))
        # on the clips as they are (64x64 = the model input) both sizes must give the same map
        a = vx.explain(model, test[0].clip, method, working_size="model", **opts)
        b = vx.explain(model, test[0].clip, method, working_size="full", **opts)
        same_on_native &= bool(np.array_equal(a.spatial, b.spatial))
    return {"rates": rates, "same_on_native": same_on_native, "native": list(test[0].frames.shape[1:3])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="demo")
    ap.add_argument("--ig-steps", type=int, default=50, help="integrated_gradients n_steps (default 50)")
    ap.add_argument("--rise-samples", type=int, default=1000, help="rise n_samples (default 1000)")
    ap.add_argument("--lime-samples", type=int, default=500, help="lime n_samples (default 500)")
    ap.add_argument("--loc-clips", type=int, default=8, help="upscaled synthetic clips for localisation (0: skip)")
    ap.add_argument("--methods", default="integrated_gradients,rise,lime",
                    help="methods to time (default integrated_gradients,rise,lime; others at their defaults)")
    ap.add_argument("--upscale", type=int, default=1,
                    help="repeat every pixel N times each way (3: the sample as 3840x2160)")
    ap.add_argument("--before", type=Path, default=None,
                    help="a checkout of an older version (e.g. `git worktree add DIR f21a1ff`): adds its column")
    args = ap.parse_args()

    import videoxai as vx

    model = vx.load_model(args.model)
    probe = vx.read_video(SAMPLE, num_frames=1)
    print(f"model {args.model}: input {model.input_size[0]}x{model.input_size[1]}, {model.num_frames} frames; "
          f"clip {SAMPLE.name} {probe.width * args.upscale}x{probe.height * args.upscale}"
          f"{f' (upscaled {args.upscale}x)' if args.upscale > 1 else ''}; torch threads {os.environ.get('OMP_NUM_THREADS', 'default')}")
    known = {"integrated_gradients": {"n_steps": args.ig_steps}, "rise": {"n_samples": args.rise_samples},
             "lime": {"n_samples": args.lime_samples}}
    runs = {m: known.get(m, {}) for m in (m.strip() for m in args.methods.split(",")) if m}
    if args.before is not None and not (args.before / "videoxai" / "__init__.py").is_file():
        ap.error(f"--before {args.before}: no videoxai package there")
    # "ratio" is the default (model size) over the reference: the older version when given, else full
    ref = "before" if args.before is not None else "full"
    print(f"on the CPU ({os.cpu_count()} cores); time: CPU seconds of the call (all threads; steadier than wall "
          f"time on a shared machine); memory: peak rise of resident memory during the call; "
          f"ratio = model / {ref}")
    print(f"{'method':<22}{'options':<18}" + (f"{'before s':>10}" if args.before else "")
          + f"{'full s':>9}{'model s':>9}{'ratio':>7}" + (f"{'before MiB':>11}" if args.before else "")
          + f"{'full MiB':>10}{'model MiB':>10}{'ratio':>7}  prediction (full / model)")
    for method, opts in runs.items():
        res = {"full": in_child(args.model, method, opts, "full", upscale=args.upscale),
               "model": in_child(args.model, method, opts, "model", upscale=args.upscale)}
        if args.before is not None:
            res["before"] = in_child(args.model, method, opts, None, package_root=args.before.resolve(),
                                     upscale=args.upscale)
        full, small = res["full"], res["model"]
        opt = ",".join(f"{k}={v}" for k, v in opts.items())
        print(f"{method:<22}{opt:<18}" + (f"{res['before']['cpu_seconds']:>10.2f}" if args.before else "")
              + f"{full['cpu_seconds']:>9.2f}{small['cpu_seconds']:>9.2f}"
              + f"{small['cpu_seconds'] / res[ref]['cpu_seconds']:>7.2f}"
              + (f"{res['before']['peak_mb']:>11.0f}" if args.before else "")
              + f"{full['peak_mb']:>10.0f}{small['peak_mb']:>10.0f}"
              f"{small['peak_mb'] / max(res[ref]['peak_mb'], 1e-9):>7.2f}  "
              f"{full['label']} {full['score']:.3f} / {small['label']} {small['score']:.3f}", flush=True)

    if args.loc_clips <= 0:
        return
    loc_opts = {"integrated_gradients": {"n_steps": 8}, "rise": {"n_samples": 200}}
    loc = localisation(args.model, args.loc_clips, 4, loc_opts)
    print(f"\nlocalisation on {args.loc_clips} held-out synthetic clips upscaled 4x "
          f"({loc['native'][0] * 4}x{loc['native'][1] * 4}); top frame in window / peak on object")
    for method, opts in loc_opts.items():
        f, m = loc["rates"][(method, "full")], loc["rates"][(method, "model")]
        opt = ",".join(f"{k}={v}" for k, v in opts.items())
        print(f"{method:<22}{opt:<18} full {f[0]:.2f} / {f[1]:.2f}   model {m[0]:.2f} / {m[1]:.2f}")
    print(f"on the clips as they are ({loc['native'][0]}x{loc['native'][1]} = the model input) both working "
          f"sizes give identical maps: {loc['same_on_native']}")


if __name__ == "__main__":
    main()
