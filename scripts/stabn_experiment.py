"""Does human knowledge through temporal attention help? The confound experiment of
:mod:`videoxai.stabn.experiment`, on the synthetic benchmark.

    python scripts/stabn_experiment.py --choose                  # pick the fine-tuning settings on validation clips
    python scripts/stabn_experiment.py --seeds 0,1,2 --record    # the README numbers (the chosen settings are the defaults)

For each seed: an ST-ABN of ``--design`` (default ``localising``, the bundled demo's) trained on
a training split in which confounds (a green diamond, a magenta ring; outside the evidence
window) co-occur with one class each; the training clips whose temporal attention misses the
true window (``--select``) edited by a simulated person from their true windows (1.0 inside,
0.0 outside); fine-tuning with ``γ_t · L_temp`` and, as the control, without (``γ_t = 0``, same
clips, steps and seed); all three scored on test clips where each confound appears in half the
clips of every class. ``--confounds 1`` is the one-confound experiment.

``--choose`` runs the fine-tuning grid on the **validation** split (never the test split) with
the seed-0 model and prints the best settings; pass them with ``--gamma-t``, ``--lr``,
``--epochs``. ``--record`` writes the result to ``videoxai/assets/demo_stabn/experiment.json``,
which ``benchmarks/reproduce_stabn.py --quick`` quotes.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from videoxai.errors import InputError  # noqa: E402
from videoxai.stabn.experiment import (CONFOUNDS, Settings, base_model, choose_settings, make_splits,  # noqa: E402
                                       run, settings_dict, summary)
from videoxai.stabn.designs import DESIGNS  # noqa: E402
from videoxai.stabn.train import TrainConfig  # noqa: E402

RECORD = ROOT / "videoxai" / "assets" / "demo_stabn" / "experiment.json"
#: where trained start models are kept by default: in the checkout (git ignores runs/), whatever
#: the current folder, so that every run (and --choose, --bases-only) finds the same models
CACHE = ROOT / "runs" / "stabn_experiment"


def _seeds(text: str) -> tuple[int, ...]:
    """``--seeds 0,1,2`` → ``(0, 1, 2)``; refused before the clips are made (a typo was a traceback
    after them)."""
    try:
        seeds = tuple(int(s) for s in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: whole numbers separated by commas, e.g. 0,1,2") from None
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"{text!r}: a seed twice")
    return seeds


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: at least 1")
    return n


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=_seeds, default=(0, 1, 2), help="seeds, comma-separated (mean ± sd over them)")
    ap.add_argument("--train-clips", type=_positive, default=4000,
                    help="training clips (4000: as the bundled demo-stabn)")
    ap.add_argument("--test-clips", type=_positive, default=1000)
    ap.add_argument("--val-clips", type=_positive, default=400)
    ap.add_argument("--train-epochs", type=int, default=3, help="start models' epochs (after the design's warm start)")
    ap.add_argument("--design", choices=sorted(DESIGNS), default="localising",
                    help="start models' ST-ABN design (localising: the bundled demo-stabn's; layer3: round 2's)")
    ap.add_argument("--gamma-t", type=float, default=None, help="weight of L_temp (default: the Settings default)")
    ap.add_argument("--lr", type=float, default=None, help="fine-tuning learning rate")
    ap.add_argument("--epochs", type=int, default=None, help="fine-tuning epochs")
    ap.add_argument("--choose", action="store_true", help="choose γ_t, lr and epochs on the validation split")
    ap.add_argument("--threads", type=_positive, default=2)
    ap.add_argument("--record", action="store_true", help=f"write the result to {RECORD.relative_to(ROOT)}")
    ap.add_argument("--out", type=Path, default=None, help="write the result as JSON here")
    ap.add_argument("--cache", type=Path, default=CACHE,
                    help=f"trained start models are kept here and reused (default: {CACHE}, whatever the "
                         "current folder)")
    ap.add_argument("--seed", type=int, default=0, help="with --choose: the start model's seed")
    ap.add_argument("--select", choices=("misclassified", "attention"), default="attention",
                    help="clips the simulated person edits: the misclassified ones, or also those whose "
                         "temporal attention misses the window")
    ap.add_argument("--max-edits", type=int, default=1000, help="with --select attention: at most this many edited clips")
    ap.add_argument("--temporal-loss", choices=("auto", "mse", "kl"), default="auto",
                    help="L_temp's form: the paper's MSE, the KL (for a softmax attention), or auto (by the design)")
    ap.add_argument("--confounds", type=int, choices=(1, 2), default=2,
                    help="how many confounds (videoxai.stabn.experiment.CONFOUNDS): 2 (default) or only the first")
    ap.add_argument("--bases-only", action="store_true", help="only train (and cache) the start models of --seeds")
    args = ap.parse_args(argv)
    if args.gamma_t is not None and not args.gamma_t >= 0:  # a negative weight rewards missing the window
        ap.error(f"argument --gamma-t: {args.gamma_t:g}: at least 0")
    # the settings (TrainConfig checks lr and epochs) before the clips: a bad value was a traceback after them
    try:
        settings = Settings(design=args.design,
                            train=TrainConfig.recipe("demo", epochs=args.train_epochs, batch_size=16),
                            select=args.select, max_edits=args.max_edits, temporal_loss=args.temporal_loss)
        ft = settings.finetune.to_dict()
        if args.lr is not None:
            ft["lr"] = args.lr
        if args.epochs is not None:
            ft["epochs"] = args.epochs
        settings.finetune = TrainConfig(**ft)
    except InputError as e:
        ap.error(str(e))
    if args.gamma_t is not None:
        settings.gamma_t = args.gamma_t
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()

    splits = make_splits(train=args.train_clips, val=args.val_clips, test=args.test_clips,
                         confounds=CONFOUNDS[:args.confounds])
    shown = {k: f"{v.mean():.2f}" for k, v in splits.shown.items()}
    names = ", ".join(f"{c.colour} {c.shape} with {splits.train.label_names[c.label]!r}" for c in splits.confounds)
    print(f"confounds ({names} in training) shown in: {shown}", flush=True)

    if args.choose:
        start = base_model(splits, settings, seed=args.seed, cache=args.cache)
        grid = {"gamma_t": [1.0, 10.0], "lr": [5e-4, 2e-3], "epochs": [3, 5]}
        best, tried = choose_settings(splits, settings, start, grid)
        for t in tried:
            print(json.dumps(t), flush=True)
        print(f"best on validation: γ_t {best.gamma_t}, lr {best.finetune.lr}, epochs {best.finetune.epochs}")
        return {"tried": tried, "best": settings_dict(best)}

    seeds = args.seeds
    if args.bases_only:
        for seed in seeds:
            base_model(splits, settings, seed, cache=args.cache)
        return {}
    records = run(splits, settings, seeds, cache=args.cache, on_result=lambda r: print(json.dumps(r), flush=True))
    s = summary(records)
    lines = ["| model | accuracy | edited classes | other classes | window hit |", "| --- | --- | --- | --- | --- |"]
    for key, label in (("start", "ST-ABN (confounded training)"), ("control", "fine-tuned without L_temp"),
                       ("human_knowledge", f"fine-tuned with L_temp (γ_t = {settings.gamma_t:g})")):
        m = s[key]
        lines.append(f"| {label} | " + " | ".join(
            f"{m[k][0]:.3f} ± {m[k][1]:.3f}" if k in m else "— (no seed had edits)" for k in ("accuracy", "edited_classes", "other_classes", "window_hit")) + " |")
    table = "\n".join(lines)
    print("\n" + table + f"\n\n{len(seeds)} seeds, {time.perf_counter() - t0:.0f}s")
    result = {"records": records, "summary": s, "table": table, "settings": settings_dict(settings),
              "command": shlex.join(["python", "scripts/stabn_experiment.py", *(sys.argv[1:] if argv is None else argv)]),
              "machine": f"{platform.machine()}, python {platform.python_version()}, torch {torch.__version__}",
              "seconds": round(time.perf_counter() - t0)}
    for path in ([RECORD] if args.record else []) + ([args.out] if args.out else []):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
