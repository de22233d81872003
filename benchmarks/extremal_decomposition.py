"""Per-clip decomposition of an extremal method's localisation against RISE (docs/experiments/extremal-perturbation.md,
"Round 11").

``run`` explains each object clip (the fully blurred copy loses the class) of a synthetic split
with one method at its defaults (or ``--option``), capturing the extremal masks the map is built
from, and saves one ``.npz`` per clip under ``--out``. ``causes`` compares the saved extremal
maps with the saved RISE maps of the same clips: the top-k IoU miss split into voxels in the
wrong frames and misplaced within frames; the object's 8-px patches whose part alone keeps the
class (key tokens); kept masks that hold the object in at most one window frame; kept masks
whose delete half is won off the object (their on-object part removed alone keeps ≥ ½ of the
intact probability) or by their soft fringe (their ≥ ½ region removed alone keeps ≥ ½). ``rules``
replays other ways of summing the saved masks into a map (docs/experiments/extremal-perturbation.md, "Round 14"): the
masks stay those of ``run``, only the map's rule changes, so no optimisation is run again.

    python benchmarks/extremal_decomposition.py run --model demo --split holdout --method rise
    python benchmarks/extremal_decomposition.py run --model demo --split holdout --method ep3d
    python benchmarks/extremal_decomposition.py causes --model demo --split holdout --method ep3d
    python benchmarks/extremal_decomposition.py rules --model demo --split val --method ep3d
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import os
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent
sys.path[:0] = [str(ROOT.parent), str(ROOT)]

import videoxai as vx  # noqa: E402
from perturbation_quality import blurred_class, localisation  # noqa: E402
from videoxai.core.refine import gaussian_blur_2d  # noqa: E402
from videoxai.data.synthetic import SyntheticVideos  # noqa: E402
from videoxai.methods.extremal.base import ExtremalPerturbation  # noqa: E402
from videoxai.methods.extremal.masks import BlurPyramid  # noqa: E402
from videoxai.metrics.base import evaluate  # noqa: E402


def path(args, method: str, i: int) -> Path:
    return Path(args.out) / f"{args.model}_{args.split}_{method}_{i}.npz"


def run(args, model, ds) -> None:
    captured: dict = {}
    combine = ExtremalPerturbation.combine

    def capture(self, masks, areas, chosen, scores=None):
        captured.update(masks=masks.detach().cpu().numpy(), areas=areas.cpu().numpy(), chosen=chosen,
                        scores=np.zeros(0) if scores is None else scores.cpu().numpy())
        return combine(self, masks, areas, chosen, scores)

    ExtremalPerturbation.combine = capture
    rows = []
    for i in range(args.clips):
        s = ds[i]
        if blurred_class(model, s.clip) == s.label:
            continue
        captured.clear()
        exp = vx.explain(model, s.clip, method=args.method, target=s.label, **args.options)
        temporal, spatial, _ = localisation(exp, s)
        iou = float(evaluate("iou", model, s.clip, exp, sample=s))
        pg = float(evaluate("pointing_game", model, s.clip, exp, sample=s))
        np.savez_compressed(path(args, args.method, i), spatial=exp.spatial, peak=np.array(spatial), iou=iou,
                            **{f"cap_{k}": v for k, v in captured.items()})
        rows.append((temporal, iou, pg, spatial))
        print(f"clip {i}: top frame in window {temporal}, peak on object {sum(spatial)}/{len(spatial)}, "
              f"pointing {pg:.2f}, IoU {iou:.3f}", flush=True)
    peaks = [p for r in rows for p in r[3]]
    print(f"{args.method} on {len(rows)} object clips: temporal {np.mean([r[0] for r in rows]):.2f} / peak "
          f"{np.mean(peaks):.2f} / pointing {np.mean([r[2] for r in rows]):.2f} / IoU {np.mean([r[1] for r in rows]):.3f}")


def top_voxels(spatial: np.ndarray, k: int) -> np.ndarray:
    top = np.zeros(spatial.size, bool)
    top[np.argsort(-spatial.reshape(-1), kind="stable")[:k]] = True
    return top.reshape(spatial.shape)


def causes(args, model, ds) -> None:
    patch = model.token_grid.patch[0] if model.token_grid is not None else 8
    sigma = vx.methods.get(args.method)(model).size("max_blur", min(model.input_size))
    counts: dict[str, int] = {}
    for i in range(args.clips):
        mine, rise = path(args, args.method, i), path(args, "rise", i)
        if not (mine.exists() and rise.exists()):
            continue
        e, r, s = dict(np.load(mine)), dict(np.load(rise)), ds[i]
        truth = np.asarray(s.masks, bool)
        k, (w0, w1) = int(truth.sum()), s.window
        pyramid = BlurPyramid(s.clip.to_tensor()[0], 8, sigma)
        obj = torch.from_numpy(truth.astype(np.float32))
        near = torch.nn.functional.max_pool2d(obj[:, None], 5, 1, 2)[:, 0]     # 2-px margin

        def p(keep: torch.Tensor) -> np.ndarray:
            with torch.no_grad():
                return model.probabilities(model(pyramid.apply(keep)))[:, s.label].numpy()

        intact = float(p(torch.ones_like(near)[None])[0])
        cells = sorted({(int(y) // patch, int(x) // patch) for _, y, x in np.argwhere(truth)})
        parts = []
        for py, px in cells:
            c = torch.zeros_like(near)
            c[:, py * patch:(py + 1) * patch, px * patch:(px + 1) * patch] = 1
            parts.append(near * c)
        key = np.zeros_like(truth)
        for (py, px), kept in zip(cells, p(torch.stack(parts))):
            if kept >= intact / 2:
                key[:, py * patch:(py + 1) * patch, px * patch:(px + 1) * patch] = True
        key &= truth
        stats = {}
        for name, d in (("m", e), ("r", r)):
            top = top_voxels(d["spatial"], k)
            n_top, n_obj = top.reshape(len(top), -1).sum(1), truth.reshape(len(truth), -1).sum(1)
            inter = int((top & truth).sum())
            frames = int(np.maximum(0, n_top - n_obj).sum())
            offsets = [np.hypot(*(np.argwhere(top[t]).mean(0) - np.argwhere(truth[t]).mean(0)))
                       for t in range(w0, w1) if top[t].any()]
            stats[name] = dict(iou=float(d["iou"]), frames=frames, within=k - inter - frames,
                               key=(top & key).sum() / max(1, key.sum()),
                               other=(top & truth & ~key).sum() / max(1, (truth & ~key).sum()),
                               offset=float(np.mean(offsets)) if offsets else float("nan"))
        m, rr = stats["m"], stats["r"]
        one_frame = off_object = fringe = 0
        if "cap_masks" in e:
            kept = torch.from_numpy(e["cap_masks"][int(e["cap_chosen"]):]).float()
            whole, on_object, hard = p(1 - kept), p(1 - kept * near), p(1 - (kept >= 0.5).float())
            for a in range(len(kept)):
                covered = sum(float(kept[a, t][obj[t] > 0].mean()) >= 0.5 for t in range(w0, w1))
                one_frame += int(covered <= 1 < w1 - w0)
                off_object += int(whole[a] < intact / 2 <= on_object[a])
                fringe += int(whole[a] < intact / 2 <= hard[a])
        found = []
        if m["iou"] < rr["iou"] - 0.02:
            found += [c for c, hit in (("wrong frames", m["frames"] - rr["frames"] > 0.1 * k),
                                       ("within frames", m["within"] - rr["within"] > 0.1 * k),
                                       ("one-frame masks", one_frame > 0),
                                       ("delete won off the object", off_object > 0),
                                       ("delete won by the fringe", fringe > 0),
                                       ("key token only", m["key"] >= 0.8 and m["other"] < rr["other"] - 0.15),
                                       ("centre offset", m["offset"] - rr["offset"] >= 1.5)) if hit]
        for c in found:
            counts[c] = counts.get(c, 0) + 1
        print(f"clip {i}: IoU {m['iou']:.3f} (RISE {rr['iou']:.3f}); misplaced of {k}: wrong frames {m['frames']} "
              f"({rr['frames']}), within frames {m['within']} ({rr['within']}); recall of the key-token part "
              f"{m['key']:.2f} ({rr['key']:.2f}), of the rest {m['other']:.2f} ({rr['other']:.2f}); centre offset "
              f"{m['offset']:.1f} px ({rr['offset']:.1f}); patches {len(cells)}; kept masks: one-frame {one_frame}, "
              f"delete won off the object {off_object}, by the fringe {fringe}; causes: {', '.join(found) or '-'}",
              flush=True)
    print(f"{args.method}: causes counted over the clips it loses (IoU 0.02 below RISE's): {counts}")


#: the shipped rule's row: the method's own :meth:`ExtremalPerturbation.combine`
SHIPPED = "shipped (score / area)"
#: other ways of weighting the kept masks ``(A,)`` from their target areas ``a`` and their game
#: scores relative to the best ``rel``
RULES = {
    "density (1 / area)": lambda a, rel: 1 / a,
    "score² / area": lambda a, rel: rel ** 2 / a,
    "score / √area": lambda a, rel: rel / np.sqrt(a),
    "score": lambda a, rel: rel,
    "as they are (the recipe's sum)": lambda a, rel: np.ones_like(a),
    "lost games dropped (score < ½ best)": lambda a, rel: np.where(rel >= 0.5, rel, 0) / a,
}


def rules(args, model, ds) -> None:
    method = vx.methods.get(args.method)(model, **args.options)
    sigma = method.size("final_sigma", min(model.input_size))
    rows: dict[str, list] = {}
    for i in range(args.clips):
        f = path(args, args.method, i)
        if not f.exists():
            continue
        z, s = np.load(f), ds[i]
        # the explanation the metrics read, with its maps replaced (a cheap method's, same clip and target)
        base = vx.explain(model, s.clip, method="saliency", target=s.label)
        start = int(z["cap_chosen"])
        kept, areas = z["cap_masks"][start:], z["cap_areas"][start:].astype(np.float64)
        scores = z["cap_scores"][start:].astype(np.float64)
        rel = scores / scores.max() if scores.max() > 0 else np.ones_like(scores)
        maps = {SHIPPED: method.combine(torch.from_numpy(z["cap_masks"]), torch.from_numpy(z["cap_areas"]),
                                        start, torch.from_numpy(z["cap_scores"]))}
        rungs = {f"rung {a:.4g} alone": np.eye(len(areas))[j] for j, a in enumerate(areas)}
        for name, weights in {**{k: rule(areas, rel) for k, rule in RULES.items()}, **rungs}.items():
            maps[name] = torch.from_numpy(np.einsum("a,athw->thw", weights, kept)).float()
        for name, raw in maps.items():
            raw = gaussian_blur_2d(raw[None].float(), sigma)[0].numpy()
            raw = raw / max(float(raw.max()), 1e-12)
            low, high = float(raw.min()), float(raw.max())
            spatial = (raw - low) / (high - low) if high > low else raw
            temporal = raw.reshape(len(raw), -1).sum(1)
            exp = dataclasses.replace(base, spatial=spatial.astype(np.float32), raw=raw[None].astype(np.float32),
                                      temporal=(temporal / max(float(temporal.sum()), 1e-12)).astype(np.float32))
            top, peaks, _ = localisation(exp, s)
            iou = float(evaluate("iou", model, s.clip, exp, sample=s))
            rows.setdefault(name, []).append((top, peaks, float(evaluate("pointing_game", model, s.clip, exp,
                                                                          sample=s)), iou))
            if name == SHIPPED and abs(iou - float(z["iou"])) > 1e-6:
                print(f"clip {i}: the shipped rule replays IoU {iou:.3f}, the run saved {float(z['iou']):.3f}")
    print(f"{args.method} on {len(next(iter(rows.values()), []))} object clips, temporal / peak on object / "
          "pointing / IoU, and the IoU per clip:")
    for name, r in rows.items():
        peaks = [p for row in r for p in row[1]]
        print(f"  {name:36s} {np.mean([x[0] for x in r]):.2f} / {np.mean(peaks):.2f} / "
              f"{np.mean([x[2] for x in r]):.2f} / {np.mean([x[3] for x in r]):.3f}   "
              + " ".join(f"{x[3]:.2f}" for x in r))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("action", choices=("run", "causes", "rules"))
    ap.add_argument("--model", default="demo")
    ap.add_argument("--split", default="val")
    ap.add_argument("--method", default="ep3d")
    ap.add_argument("--clips", type=int, default=10)
    ap.add_argument("--out", default="extremal_decomposition", help="folder of the per-clip .npz files")
    ap.add_argument("--option", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    args.options = {}
    for item in args.option:
        key, _, value = item.partition("=")
        try:
            args.options[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            args.options[key] = value
    torch.set_num_threads(1)
    os.environ.setdefault("VIDEOXAI_PROGRESS", "0")
    os.makedirs(args.out, exist_ok=True)
    model = vx.load_model(args.model)
    ds = SyntheticVideos(args.clips, split=args.split, seed=0, num_frames=model.num_frames)
    {"run": run, "causes": causes, "rules": rules}[args.action](args, model, ds)


if __name__ == "__main__":
    main()
