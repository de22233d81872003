"""A held-out task for ST-ABN: which shape flashes? Written as a ``folder:`` dataset with named labels.

    python benchmarks/flashing_shapes.py OUT_DIR --train 800 --test 300

Every clip (8 frames, 64×64, noisy grey background) shows one **persistent** shape, visible in
every frame, and one **flashing** shape, visible in 2–3 consecutive frames only, each in a random
colour at a random place. The class is the flashing shape's name (``circle``, ``cross``,
``square``, ``triangle``); the persistent one is any of the four, so no single frame says which
shape is the class: the model has to see which one comes and goes. Nothing here is the synthetic
benchmark's generator (no textures, no colour classes, a temporal rule), so a model tuned on the
benchmark meets it for the first time.

Then ``videoxai stabn train --data folder:OUT_DIR/train --val-data folder:OUT_DIR/val --out RUN``
(and ``--backbone-only`` for the plain backbone), and score the model on the test clips:

    python benchmarks/flashing_shapes.py OUT_DIR --score RUN/model [RUN2/model …]

prints, per model, the accuracy of both branches, how often the top frame of the temporal
attention lies in the flash (and chance), and how often, in the flash frames, the spatial
attention peaks on the *flashing* shape (and chance: its share of the frame) — the ST-ABN has to
find the shape that comes and goes, not just a shape. ST-ABN + human knowledge, with a simulated
person:

    python benchmarks/flashing_shapes.py OUT_DIR --knowledge RUN/model [--gamma-t 0] [--out-dir HK]

edits the training clips whose prediction or top attention frame is wrong (1.0 inside the true
window, 0.0 outside: ``videoxai.stabn.experiment.edits_from_truth``), fine-tunes the model with
:func:`videoxai.stabn.knowledge.finetune`'s defaults (``--gamma-t 0``: the same fine-tuning
without the edits, the control), saves it (default: beside the model, ``model-hk`` /
``model-ft0``) and prints its row. docs/experiments/stabn.md, "Held-out task", has the results and what they
showed (the stem's resolution, label smoothing, the attention design, the batch, the padding, the edits).

``OUT_DIR/train``, ``OUT_DIR/val`` (for choosing designs and epochs) and ``OUT_DIR/test`` each
hold ``clip_XXXX.mp4``, a ``labels.csv`` with ``video,label,start,end`` (label a class *name*; the
flashing window in frames, end excluded) and ``masks.npz`` (the flashing shape's pixels).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from videoxai.data.synthetic import shape_masks  # noqa: E402
from videoxai.data.video import write_video  # noqa: E402

CLASSES = ("circle", "cross", "square", "triangle")
FRAMES, SIZE = 8, 64
PALETTE = np.array([(230, 60, 60), (60, 90, 230), (240, 220, 40), (40, 190, 70), (220, 70, 220), (250, 250, 250)],
                   dtype=np.uint8)


def clip(rng: np.random.Generator) -> tuple[np.ndarray, int, tuple[int, int], np.ndarray]:
    """One clip: frames ``(T, H, W, 3)`` uint8, its class, its flashing window and the flashing
    shape's mask ``(T, H, W)`` bool (empty outside the window)."""
    label = int(rng.integers(len(CLASSES)))
    frames = np.clip(rng.normal(rng.uniform(90, 150), 12, size=(FRAMES, SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
    length = int(rng.integers(2, 4))
    start = int(rng.integers(0, FRAMES - length + 1))
    sizes = rng.uniform(11, 15, size=2)
    # two places far enough apart that the shapes never touch
    while True:
        centres = rng.uniform(10, SIZE - 10, size=(2, 2))
        if np.hypot(*(centres[0] - centres[1])) > sizes.sum() / 1.4 + 2:
            break
    colours = rng.choice(len(PALETTE), size=2, replace=False)
    persistent = CLASSES[int(rng.integers(len(CLASSES)))]
    m = shape_masks(persistent, np.full(FRAMES, centres[0, 0]), np.full(FRAMES, centres[0, 1]), sizes[0], SIZE, SIZE)
    frames[m] = PALETTE[colours[0]]
    m = shape_masks(CLASSES[label], np.full(length, centres[1, 0]), np.full(length, centres[1, 1]), sizes[1], SIZE, SIZE)
    frames[start:start + length][m] = PALETTE[colours[1]]
    evidence = np.zeros((FRAMES, SIZE, SIZE), dtype=bool)
    evidence[start:start + length] = m
    return frames, label, (start, start + length), evidence


def write(directory: Path, count: int, seed: int) -> Path:
    """``count`` clips, their ``labels.csv`` and ``masks.npz`` (``masks``: ``(count, T, H, W)``
    bool, the flashing shape in its window frames, for scoring spatial attention) in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lines = ["video,label,start,end"]
    masks = np.zeros((count, FRAMES, SIZE, SIZE), dtype=bool)
    for i in range(count):
        frames, label, (a, b), masks[i] = clip(rng)
        name = f"clip_{i:04d}.mp4"
        write_video(frames, directory / name, fps=8)
        lines.append(f"{name},{CLASSES[label]},{a},{b}")
    (directory / "labels.csv").write_text("\n".join(lines) + "\n")
    np.savez_compressed(directory / "masks.npz", masks=masks)
    return directory


def score(model_dir: Path, split_dir: Path) -> dict:
    """Accuracy and attention agreement of the ST-ABN saved in ``model_dir`` on ``split_dir``'s clips."""
    from dataclasses import replace

    from videoxai.stabn.data import open_dataset
    from videoxai.stabn.evaluate import evaluate
    from videoxai.stabn.loader import load_stabn

    model = load_stabn(model_dir)
    data = open_dataset(f"folder:{split_dir}", "test", num_frames=model.num_frames,
                        frame_size=tuple(model.config.input_size), labels=model.config.labels)
    if (split_dir / "masks.npz").exists():  # a folder: dataset has no masks; evaluate scores them if given
        data = replace(data, masks=np.load(split_dir / "masks.npz")["masks"])
    return evaluate(model, data).to_dict()


def with_knowledge(model_dir: Path, data_dir: Path, gamma_t: float, out: Path) -> tuple[int, Path]:
    """Fine-tune the ST-ABN in ``model_dir`` with a simulated person's edits of ``data_dir/train``;
    returns the number of edited clips and where the fine-tuned model was saved."""
    from videoxai.stabn.data import open_dataset
    from videoxai.stabn.experiment import edits_from_truth
    from videoxai.stabn.knowledge import finetune
    from videoxai.stabn.loader import load_stabn, save_stabn

    model = load_stabn(model_dir)
    train = open_dataset(f"folder:{data_dir / 'train'}", "train", num_frames=model.num_frames,
                         frame_size=tuple(model.config.input_size), labels=model.config.labels)
    edits = edits_from_truth(model, train, "attention")
    if edits:
        finetune(model, train, edits, gamma_t=gamma_t)
    save_stabn(model, out)
    return len(edits), out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--train", type=int, default=800)
    ap.add_argument("--val", type=int, default=300, help="validation clips (for choosing; 0: none)")
    ap.add_argument("--test", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0, help="train seed; test uses seed+1, val seed+100")
    ap.add_argument("--score", type=Path, nargs="+", metavar="MODEL_DIR",
                    help="score saved ST-ABNs on OUT/test instead of writing clips")
    ap.add_argument("--split", default="test", help="the split --score reads (test or val)")
    ap.add_argument("--knowledge", type=Path, nargs="+", metavar="MODEL_DIR",
                    help="fine-tune saved ST-ABNs with simulated edits of OUT/train, then score them")
    ap.add_argument("--gamma-t", type=float, default=10.0, help="weight of L_temp for --knowledge (0: control)")
    ap.add_argument("--out-dir", type=Path, help="where --knowledge saves (default: MODEL_DIR-hk or -ft0)")
    args = ap.parse_args(argv)
    if args.knowledge:
        tuned = []
        for model_dir in args.knowledge:
            suffix = "hk" if args.gamma_t > 0 else "ft0"
            out = (args.out_dir / f"{model_dir.parent.name}-{suffix}") if args.out_dir else \
                model_dir.with_name(f"{model_dir.name}-{suffix}")
            n, saved = with_knowledge(model_dir, args.out, args.gamma_t, out)
            print(f"{model_dir}: {n} training clips edited, γ_t {args.gamma_t:g} → {saved}")
            tuned.append(saved)
        args.score = tuned
    if args.score:
        fmt = lambda v: "—" if v is None else f"{v:.3f}"  # noqa: E731
        print("| model | accuracy | attention branch | top frame in the flash (chance) "
              "| spatial peak on the flashing shape (chance) |")
        print("|---|---|---|---|---|")
        for model_dir in args.score:
            r = score(model_dir, args.out / args.split)
            print(f"| {model_dir} | {fmt(r['accuracy'])} | {fmt(r['attention_accuracy'])} "
                  f"| {fmt(r['window_hit'])} ({fmt(r['window_chance'])}) "
                  f"| {fmt(r.get('spatial_hit'))} ({fmt(r.get('spatial_chance'))}) |")
        return
    write(args.out / "train", args.train, args.seed)
    write(args.out / "test", args.test, args.seed + 1)
    if args.val:  # seed + 100: disjoint from train and test for any --seed below 99
        write(args.out / "val", args.val, args.seed + 100)
    print(f"wrote {args.train} training, {args.val} validation and {args.test} test clips to {args.out}")


if __name__ == "__main__":
    main()
