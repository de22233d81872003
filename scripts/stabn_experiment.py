"""What human knowledge through temporal attention does to an ST-ABN, on the synthetic benchmark.

    python scripts/stabn_experiment.py                      # the bundled tiny ST-ABN, ~4 minutes on 2 cores
    python scripts/stabn_experiment.py --seeds 0,1,2        # the README numbers (mean ± sd over 3 seeds)
    python scripts/stabn_experiment.py --model runs/stabn/model --gamma-t 5 --seeds 0,1,2

The three steps of Noguchi et al., with the person simulated from the ground truth:

1. **collect** — the model runs over its training clips; the misclassified ones are kept (topped
   up with other training clips, chosen at random, when fewer than ``--min-edits`` are wrong);
2. **edit** — each kept clip's temporal attention is set to 1.0 on the frames of the true evidence
   window and 0.0 elsewhere (``--border``: 0.5 on the frame on either side of the window);
3. **fine-tune** — twice from the same model, with the same seed, data, freezing schedule and
   number of steps: once with ``L_att + L_per + γ_t · L_temp`` and once without ``L_temp``
   (``γ_t = 0``), so the difference is the human knowledge alone.

Both fine-tuned models and the starting model are scored on held-out ``"test"`` clips (a random
stream disjoint from training): accuracy of the perception and attention branches and the
agreement of the temporal attention with the true window (:mod:`videoxai.stabn.evaluate`:
``hit`` = top frame inside the window, ``corr`` = Pearson correlation with the window indicator,
``mass`` = share of attention inside the window; chance for hit and mass is the mean window
share). The table is printed as Markdown and everything goes to ``--out`` as JSON.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

import videoxai as vx  # noqa: E402
from videoxai.stabn.data import ClipSet, open_dataset  # noqa: E402
from videoxai.stabn.evaluate import Evaluation, evaluate, predict  # noqa: E402
from videoxai.stabn.knowledge import TemporalEdit, finetune, finetune_config  # noqa: E402
from videoxai.stabn.model import STABNVideoModel  # noqa: E402


def simulated_levels(window: tuple[int, int], num_frames: int, border: bool) -> list[float]:
    """1.0 inside ``[start, end)``, 0.0 outside; with ``border``, 0.5 on the frame either side."""
    start, end = int(window[0]), int(window[1])
    levels = [1.0 if start <= t < end else 0.0 for t in range(num_frames)]
    if border:
        for t in (start - 1, end):
            if 0 <= t < num_frames:
                levels[t] = 0.5
    return levels


def choose_clips(model: STABNVideoModel, train: ClipSet, min_edits: int, seed: int) -> tuple[np.ndarray, int]:
    """Indices of the clips to edit: every misclassified one, topped up at random to ``min_edits``."""
    pred = predict(model, train, description="collect").logits.argmax(1)
    wrong = np.flatnonzero(pred != train.labels)
    chosen = wrong
    if len(wrong) < min_edits:
        right = np.flatnonzero(pred == train.labels)
        extra = np.random.default_rng(seed).choice(right, size=min(len(right), min_edits - len(wrong)), replace=False)
        chosen = np.sort(np.concatenate([wrong, extra]))
    return chosen, len(wrong)


def row(name: str, ev: Evaluation) -> str:
    return (f"| {name} | {ev.accuracy:.3f} | {ev.attention_accuracy:.3f} | {ev.window_hit:.3f} | "
            f"{ev.window_corr:.3f} | {ev.window_mass:.3f} |")


def mean_row(name: str, evs: list[Evaluation]) -> str:
    keys = ("accuracy", "attention_accuracy", "window_hit", "window_corr", "window_mass")
    cells = []
    for k in keys:
        v = np.array([getattr(e, k) for e in evs])
        cells.append(f"{v.mean():.3f}" + (f" ± {v.std(ddof=1):.3f}" if len(v) > 1 else ""))
    return f"| {name} | " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="demo-stabn", help="the trained ST-ABN to start from")
    ap.add_argument("--data", default=None, help="its training data (default: from the model's videoxai.json)")
    ap.add_argument("--test", type=int, default=1000, help="held-out test clips")
    ap.add_argument("--gamma-t", type=float, default=10.0, help="weight of L_temp")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--freeze", default="feature_extractor", help="frozen groups, comma-separated, or 'none'")
    ap.add_argument("--edited-only", action="store_true", help="fine-tune on the edited clips only")
    ap.add_argument("--min-edits", type=int, default=200, help="edit at least this many clips")
    ap.add_argument("--border", action="store_true", help="0.5 on the frame either side of the window")
    ap.add_argument("--seeds", default="0", help="fine-tuning seeds, comma-separated (several: mean ± sd)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()

    base = vx.load_model(args.model)
    if not isinstance(base, STABNVideoModel):
        raise SystemExit(f"{args.model} is not an ST-ABN")
    data = args.data or base.metadata.get("training", {}).get("data") or "synthetic"
    spec = data
    if data.startswith("synthetic") and "test=" not in data:
        spec = f"{data}{',' if ':' in data else ':'}test={args.test}"
    size = base.input_size
    train = open_dataset(spec, "train", num_frames=base.num_frames, frame_size=size)
    test = open_dataset(spec, "test", num_frames=base.num_frames, frame_size=size)
    print(f"model {args.model}: {base.config.backbone}, {base.num_frames} frames, {base.num_classes} classes; "
          f"train {len(train)} clips ({data}), test {len(test)} clips")

    chosen, n_wrong = choose_clips(base, train, args.min_edits, seed=0)
    edits = {train.ids[i]: TemporalEdit(train.ids[i], simulated_levels(train.windows[i], base.num_frames, args.border),
                                        label=int(train.labels[i])) for i in chosen}
    print(f"edited {len(edits)} training clips ({n_wrong} misclassified"
          + (f", {len(edits) - n_wrong} others at random" if len(edits) > n_wrong else "") + ")")

    results = {"base": evaluate(base, test).to_dict(), "runs": []}
    frozen = () if args.freeze == "none" else tuple(g for g in args.freeze.split(",") if g)
    seeds = [int(s) for s in args.seeds.split(",")]
    by_gamma: dict[float, list[Evaluation]] = {args.gamma_t: [], 0.0: []}
    for seed in seeds:
        for gamma in (args.gamma_t, 0.0):
            model = copy.deepcopy(base)
            t = time.perf_counter()
            config = finetune_config(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, seed=seed)
            finetune(model, train, edits, gamma_t=gamma, config=config, frozen=frozen, edited_only=args.edited_only)
            ev = evaluate(model, test)
            by_gamma[gamma].append(ev)
            results["runs"].append({"seed": seed, "gamma_t": gamma, "seconds": time.perf_counter() - t, **ev.to_dict()})
            print(f"seed {seed}, γ_t = {gamma:g}: {ev}  [{time.perf_counter() - t:.0f}s]")

    base_ev = Evaluation(**results["base"])
    lines = ["| model | accuracy | attention-branch accuracy | window hit | window corr | window mass |",
             "| --- | --- | --- | --- | --- | --- |",
             row("trained ST-ABN (start)", base_ev),
             mean_row("fine-tuned without L_temp (γ_t = 0)", by_gamma[0.0]),
             mean_row(f"fine-tuned with L_temp (γ_t = {args.gamma_t:g})", by_gamma[args.gamma_t])]
    table = "\n".join(lines)
    print()
    print(table)
    print(f"\nchance for window hit / mass: {base_ev.window_chance:.3f}; {len(test)} held-out clips; "
          f"{len(seeds)} seed(s); {time.perf_counter() - t0:.0f}s on {args.threads} thread(s)")
    results.update({"table": table, "edits": len(edits), "misclassified": int(n_wrong), "args": {
        k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "command": shlex.join(["python", "scripts/stabn_experiment.py", *(sys.argv[1:] if argv is None else argv)]),
        "machine": f"{platform.machine()}, {platform.python_version()}, torch {torch.__version__}",
        "seconds": time.perf_counter() - t0})
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    return results


if __name__ == "__main__":
    main()
