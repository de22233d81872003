"""What a map that survives the model-randomisation check still ranks: the object, or position.

The cascading randomisation check (``videoxai.metrics.sanity``) scores Spearman's ρ between the
map on the trained model and on progressively randomised copies, over *every* voxel. A map that
is near zero at the frame's margin and higher inside it on any model (a perturbation that changes
nothing at the border gives masks no reason to go there) shares that ranking with the trained map
whatever the copy answers to. For one clip of the synthetic benchmark and one method this prints,
after each stage of the check (seed 0, as ``evaluate("randomisation", …, seeds=1)``):

* **ρ**: the check's value (a blank re-run map: 0);
* **ρ top 5 %**: ρ over the voxels in the trained map's top 5 % only (does the copy rank the
  evidence as the trained model did?);
* **ρ position**: ρ between the trained map and the copy's map averaged over time and repeated in
  every frame (a map of *where in the frame* only: near the check's ρ, the ρ is positional);
* **on / off object**: the copy's map on the object's pixels and elsewhere, in the window frames;
* **object drop**: how far the target's logit falls when the object (and 4 px around it) is
  replaced by the clip's mean colour, on that copy (does the copy still answer to the object?);
* **peer ρ**: the check's ρ of a peer method (default RISE) on the same copy.

    python benchmarks/randomisation_positional.py --model demo --method ep3d --split test --clip 4
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

import videoxai as vx
from videoxai.core.baselines import mean_colour
from videoxai.data.synthetic import SyntheticVideos
from videoxai.metrics.sanity import cascade, rank_similarity, spearman


def object_drop(model, x: torch.Tensor, masks: np.ndarray, target: int) -> float:
    """The target's logit on the clip ``x`` ``(1, T, 3, H, W)`` minus its logit with the object
    ``masks`` ``(T, H, W)`` (grown by 4 px) filled with the clip's mean colour."""
    grown = torch.nn.functional.max_pool2d(torch.as_tensor(masks, dtype=torch.float32)[:, None], 9, 1, 4)
    grown = grown[None].to(x)                                      # (1, T, 1, H, W)
    with torch.no_grad():
        both = model.predict(torch.cat([x, x * (1 - grown) + mean_colour(x) * grown]))
    return float(both[0, target] - both[1, target])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="demo", help="model spec for vx.load_model (default: demo)")
    ap.add_argument("--method", default="ep3d", help="the method whose check is looked into (default ep3d)")
    ap.add_argument("--peer", default="rise", help="the method run beside it on every copy (default rise)")
    ap.add_argument("--split", default="test", help="split of the synthetic benchmark (default test)")
    ap.add_argument("--clip", type=int, default=0, help="index of the clip in the split (default 0)")
    ap.add_argument("--stages", type=int, default=4, help="stages of the cascade (default 4, the metric's)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args(argv)
    if args.clip < 0 or args.stages < 1:
        ap.error("--clip must be ≥ 0 and --stages ≥ 1")
    if args.threads:
        torch.set_num_threads(args.threads)

    model = vx.load_model(args.model)
    sample = SyntheticVideos(args.clip + 1, split=args.split, num_frames=model.num_frames)[args.clip]
    clip, target = sample.clip, sample.label
    x = clip.to_tensor(model.device)
    obj = sample.masks.astype(bool)
    window = np.zeros(obj.shape[0], bool)
    window[slice(*sample.window)] = True
    trained = np.asarray(vx.explain(model, clip, method=args.method, target=target).spatial)
    peer = np.asarray(vx.explain(model, clip, method=args.peer, target=target).spatial)
    top = trained >= np.quantile(trained, 0.95)
    print(f"{args.model}, {args.split} clip {args.clip} (class {target}, evidence in frames "
          f"{sample.window[0]}–{sample.window[1] - 1}), {args.method} beside {args.peer}")
    print(f"trained: object drop {object_drop(model, x, sample.masks, target):+.3f}, map on / off object "
          f"{trained[obj].mean():.3f} / {trained[window][~obj[window]].mean():.3f}")
    print("| stage | first module | ρ | ρ top 5 % | ρ position | on / off object | object drop | peer ρ |")
    print("|---|---|---:|---:|---:|---|---:|---:|")
    for stage, names, copy in cascade(model, args.stages, 0, x):
        again = np.asarray(vx.explain(copy, clip, method=args.method, target=target).spatial)
        positional = np.broadcast_to(again.mean(0), again.shape)
        peer_again = np.asarray(vx.explain(copy, clip, method=args.peer, target=target).spatial)
        cells = (rank_similarity(trained, again), spearman(trained[top], again[top]),
                 spearman(trained, positional))
        print(f"| {stage + 1} | {names[0]} | " + " | ".join(f"{c:.2f}" for c in cells)
              + f" | {again[obj].mean():.3f} / {again[window][~obj[window]].mean():.3f}"
              f" | {object_drop(copy, x, sample.masks, target):+.3f} | {rank_similarity(peer, peer_again):.2f} |")


if __name__ == "__main__":
    main()
