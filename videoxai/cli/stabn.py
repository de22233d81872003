"""``videoxai stabn train / collect / edit / finetune``: an ST-ABN and human knowledge."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator, Optional

import typer
from rich.console import Console
from rich.markup import escape

from . import DEVICE_HELP, check_device, check_threads, given_path

console = Console(soft_wrap=True)  # one line per message: a path broken across lines cannot be copied

stabn_app = typer.Typer(name="stabn", no_args_is_help=True,
                        help="Train an ST-ABN (a video model that explains itself) and correct its "
                             "temporal attention with human knowledge: collect → edit → finetune.")

_DATA_HELP = ("Dataset spec: synthetic[:N,seed=S,val=M] (default; train/val are disjoint streams), "
              "folder:DIR (videos + labels.csv), ssv2:…, ucf24:….")


def _threads(threads: Optional[int]) -> None:
    if threads:
        import torch
        torch.set_num_threads(threads)


def _command(ctx: typer.Context) -> str:
    """The running command with every setting spelt out (defaults included), to store with what
    it makes: running it again makes the same thing."""
    import shlex

    words: list[str] = []
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if param.param_type_name == "argument":
            words.append(str(value))
        elif value is None:
            continue
        elif getattr(param, "is_flag", False):
            if value:
                words.append(param.opts[0])
            elif param.secondary_opts:
                words.append(param.secondary_opts[0])
        else:
            words += [param.opts[0], str(value)]
    return f"videoxai {' '.join(ctx.command_path.split()[1:])} {shlex.join(words)}"


def _print_epoch(record) -> None:
    console.print(str(record), markup=False)


def _say_if_nothing_ran(result, printed: list, out: Path) -> None:
    """A finished run resumed trains nothing: say so, rather than print its model as if just made."""
    if not printed and result.history:
        n = len(result.history)
        console.print(f"{out} holds a finished run ({n} epoch{'s' if n != 1 else ''}): nothing left to train "
                      "(--no-resume starts over; more --epochs continue it)", markup=False)


@contextlib.contextmanager
def _saying_what_is_kept(out: Path, printed: list, resume: bool) -> Iterator[None]:
    """Ctrl-C during a run: say what the output directory holds and how to go on, then stop as
    any Ctrl-C does. Only "aborted" was said, leaving the user to guess whether the epochs that
    ran were lost and whether running again would start over."""
    from ..stabn.run_directory import CHECKPOINT, WARM_START_DIR

    try:
        yield
    except KeyboardInterrupt:
        if printed:  # each printed epoch was checkpointed before it was printed
            last = printed[-1]
            kept = f"{last.stage + ' ' if last.stage else ''}epoch {last.epoch}/{last.epochs}"
            said = (f"stopped: {out} keeps the run up to {kept}; the same command "
                    f"{'' if resume else 'without --no-resume '}continues it from there")
        elif resume and ((out / CHECKPOINT).is_file() or (out / WARM_START_DIR / CHECKPOINT).is_file()):
            said = f"stopped: {out} keeps the run as its last checkpoint left it; the same command continues it"
        else:
            said = f"stopped before an epoch ended: nothing of this run is kept in {out}"
        typer.echo(said, err=True)
        raise


def _load(model: str, device: str):
    from ..errors import UnsupportedModelError
    from ..models import load_model
    from ..stabn.model import STABNVideoModel

    vm = load_model(model, device=device)
    if not isinstance(vm, STABNVideoModel):
        raise UnsupportedModelError(f"{model} is a {vm.family} model, not an ST-ABN")
    return vm


@stabn_app.command("train")
def train_cmd(
    ctx: typer.Context,
    out: Path = typer.Option(..., "--out", "-o", parser=given_path, metavar="<path>", help="Output directory: checkpoint.pt, history.json, model/ "
                             "(and warm-start/: the plain backbone's warm start)."),
    data: str = typer.Option("synthetic", "--data", "-d", help=_DATA_HELP),
    val_data: Optional[str] = typer.Option(None, "--val-data", help="Validation spec (default: the synthetic val split; none for other data); "
                                            "'none': no validation."),
    design: str = typer.Option("mil", "--design", help="A named design setting the backbone, warm start and "
                                "branch options below (flags given explicitly win): mil (the default: the "
                                "branch classifies through its own attention), reference (the paper's branch), "
                                "localising (the bundled demo-stabn's), layer3 (round 2's)."),
    backbone: Optional[str] = typer.Option(None, help="Backbone (default: the design's, tiny-hires for mil): "
                                           "tiny-hires (a full-resolution stem: small shapes at 64 px), "
                                           "tiny-hires-3d (and time in every layer), tiny, tiny-fine, small, r18, "
                                           "r34, r50 (ResNet stems)."),
    frames: int = typer.Option(8, help="Frames per clip (T)."),
    size: int = typer.Option(64, help="Input size (pixels a side)."),
    epochs: int = typer.Option(12, help="Epochs of the ST-ABN (after the warm start's)."),
    batch_size: Optional[int] = typer.Option(None, help="Clips per step (default: the recipe's, 8 — the "
                                             "reference's per GPU; demo: 16, the bundled models')."),
    lr: Optional[float] = typer.Option(None, help="Peak learning rate (default: the recipe's, 0.002 / 0.01)."),
    recipe: str = typer.Option("small", help="small (AdamW, warm-up + cosine), demo (small with label smoothing "
                               "0.1 and batch 16: the bundled models') or reference (the paper code's SGD, ×0.1 at 1/2 and "
                               "5/6 of the epochs)."),
    label_smoothing: Optional[float] = typer.Option(None, "--label-smoothing",
                                                    help="Label smoothing of both cross-entropies (default: the recipe's)."),
    temporal_attention: Optional[str] = typer.Option(None, help="residual: F·(1+M_t) (every design's); gate: F·M_t "
                                                     "(the reference)."),
    temporal_norm: Optional[str] = typer.Option(None, help="sigmoid (the reference) or softmax: frames compete "
                                                "for M_t (default: the design's)."),
    spatial_norm: Optional[str] = typer.Option(None, help="sigmoid (the reference) or softmax: cells compete for "
                                               "M_s (default: the design's)."),
    branch_input: Optional[str] = typer.Option(None, help="Features the attention branch reads: layer3 (the "
                                               "reference) or layer2 (per-frame features; tiny, tiny-fine, small)."),
    branch_temporal_kernel: Optional[int] = typer.Option(None, "--branch-kt", help="Temporal kernel of the "
                                                         "attention branch: 3 (the reference) or 1."),
    branch_spatial_kernel: Optional[int] = typer.Option(None, "--branch-ks", help="Spatial kernel of the attention "
                                                        "branch: 3 (the reference) or 1."),
    attention_readout: Optional[str] = typer.Option(None, "--readout", help="How the attention branch classifies: "
                                                    "fc (the reference: a linear layer over every frame's pooled "
                                                    "class maps) or attention (mil's: its class maps averaged where "
                                                    "its own attention looks, so its loss trains the attention)."),
    pool: Optional[str] = typer.Option(None, "--pool", help="Perception branch pooling: attention (weights M_t·M_s), "
                                       "max (mil's) or avg (the reference); default: the design's, else the "
                                       "backbone's."),
    padding: Optional[str] = typer.Option(None, "--padding", help="How every convolution pads: replicate (mil's: "
                                          "no cell has a position of its own) or zeros (ResNet's); default: the "
                                          "design's, also for --backbone-only."),
    backbone_only: bool = typer.Option(False, "--backbone-only", help="Train the plain backbone (no attention branch): the baseline."),
    warm_start: Optional[int] = typer.Option(None, "--warm-start",
                                             help="Epochs of plain-backbone training to start the shared layers from "
                                                  "(default: the design's, 3; 0: from scratch — joint training from "
                                                  "scratch can stall, README \"ST-ABN\")."),
    seed: int = typer.Option(0, help="Seed of the initial weights, the clip order and dropout."),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Continue from OUT/checkpoint.pt if it exists "
                                "(without repeating the warm start), else from the warm start's checkpoint."),
    threads: Optional[int] = typer.Option(None, help="CPU threads for torch.", callback=check_threads),
    device: str = typer.Option("cpu", help=DEVICE_HELP, callback=check_device),
) -> None:
    """Train an ST-ABN; validation accuracy of both branches after every epoch."""
    from ..stabn.designs import design as named_design
    from ..stabn.recipe import TrainConfig
    from ..stabn.run_directory import CHECKPOINT, WARM_START_DIR
    from ..stabn.train import train

    from ..errors import InputError

    _threads(threads)
    if warm_start is not None and warm_start < 0:  # train() said so only after the data was made (seconds)
        raise InputError(f"--warm-start must be 0 or more epochs, got {warm_start}")
    given = {"temporal_attention": temporal_attention, "temporal_norm": temporal_norm,
             "spatial_norm": spatial_norm, "branch_input": branch_input,
             "branch_temporal_kernel": branch_temporal_kernel, "branch_spatial_kernel": branch_spatial_kernel,
             "attention_readout": attention_readout, "pool": pool}
    branch = {k: v for k, v in given.items() if v is not None}  # the rest: the design's
    # padding is the whole network's, not the branch's: the plain baseline takes the design's too
    padding = padding or named_design(design).options.get("padding")
    if padding is not None:
        branch["padding"] = padding
    config = TrainConfig.recipe(recipe, epochs=epochs, seed=seed,
                                **({"batch_size": batch_size} if batch_size is not None else {}),
                                **({"lr": lr} if lr is not None else {}),
                                **({"label_smoothing": label_smoothing} if label_smoothing is not None else {}))
    backbone = backbone or named_design(design).backbone
    what = "the plain backbone" if backbone_only else f"an ST-ABN (design {design})"
    console.print(f"training {what} ({backbone}) on {data} for {epochs} epochs → {out}", markup=False)
    if resume and (out / CHECKPOINT).is_file():
        console.print(f"resuming from {out / CHECKPOINT}" + ("" if backbone_only else " (the warm start is not repeated)"),
                      markup=False)
    elif resume and not backbone_only and (out / WARM_START_DIR / CHECKPOINT).is_file():
        console.print(f"resuming the warm start from {out / WARM_START_DIR / CHECKPOINT}", markup=False)
    # the plain backbone takes the design's backbone and padding only: a branch's options would be unused
    printed: list = []
    with _saying_what_is_kept(out, printed, resume):
        result = train(data, out, val_data=val_data, design=None if backbone_only else design, backbone=backbone,
                       num_frames=frames, input_size=size, config=config, resume=resume, device=device,
                       on_epoch=lambda r: (printed.append(r), _print_epoch(r)), command=_command(ctx),
                       attention_branch=not backbone_only, warm_start=warm_start, **branch)
    _say_if_nothing_ran(result, printed, out)
    if result.evaluation is not None:
        console.print(f"validation: {result.evaluation}", markup=False)
    console.print(f"model: [bold]{escape(str(result.model_dir))}[/]  (vx.load_model('{escape(str(result.model_dir))}'))")


@stabn_app.command("collect")
def collect_cmd(
    out: Path = typer.Option(..., "--out", "-o", parser=given_path, metavar="<path>", help="Edit-set directory to create."),
    model: str = typer.Option("demo-stabn", "--model", "-m", help="ST-ABN model: a directory or demo-stabn."),
    data: Optional[str] = typer.Option(None, "--data", "-d", help="Dataset spec (synthetic[:N,seed=S], folder:DIR, "
                                       "ssv2:…, ucf24:…) of the data the model was trained on; default: what its "
                                       "videoxai.json records (a model that records none needs --data). Its "
                                       "training split is used; its classes must be the model's."),
    all_clips: bool = typer.Option(False, "--all", help="Collect every clip, not only the misclassified ones."),
    limit: Optional[int] = typer.Option(None, help="Collect at most this many clips."),
    threads: Optional[int] = typer.Option(None, help="CPU threads for torch.", callback=check_threads),
    device: str = typer.Option("cpu", help=DEVICE_HELP, callback=check_device),
) -> None:
    """Step 1: store the temporal attention of the misclassified training clips."""
    from ..errors import InputError
    from ..stabn.data import open_dataset
    from ..stabn.knowledge import collect, training_data
    from ..stabn.run_directory import check_out_dir

    _threads(threads)
    if limit is not None and limit < 1:  # collect() said so only after the data was decoded
        raise InputError(f"--limit must be 1 clip or more, got {limit}")
    check_out_dir(out)  # before the data is decoded
    vm = _load(model, device)
    h, w = vm.input_size
    recorded = training_data(vm)
    if data is None:
        # the clips to correct are the model's own training clips: never another set by default
        if recorded is None:
            raise InputError(f"{model} does not record the data it was trained on (no training data in its "
                             "videoxai.json); give --data, the spec it was trained on")
        data = recorded
        console.print(f"collecting from the data {model} was trained on: {data} (recorded in its videoxai.json)", markup=False)
    with console.status(f"loading {data}…"):
        try:
            train_set = open_dataset(data, "train", num_frames=vm.num_frames, frame_size=(h, w), labels=vm.labels,
                                     view=vm.preprocess)  # as vx.explain shows the model a video
        except InputError as e:
            if data != recorded:
                raise
            # e.g. a relative folder: path read from another directory than the one it was trained in
            raise InputError(f"{e} (the training data recorded with {model}; give --data to read it "
                             "from elsewhere)") from None
    # recorded absolutely (edit and finetune load it from wherever they run), "stabn:DIR" too
    prefix, _, rest = model.partition(":") if model.startswith("stabn:") else ("", "", model)
    spec = (f"{prefix}:" if prefix else "") + (str(Path(rest).resolve()) if Path(rest).is_dir() else rest)
    es = collect(vm, train_set, out, model_spec=spec, misclassified_only=not all_clips, limit=limit)
    what = "clips" if all_clips else "misclassified clips"
    if not es.items:  # not "edit them with …": an empty editor, and finetune would find no edits
        console.print(f"the model classifies all {len(train_set)} clips of {data} correctly: nothing to edit "
                      f"(--all collects every clip)", markup=False)
        return
    console.print(f"collected {len(es.items)} {what} of {len(train_set)} into [bold]{escape(str(out))}[/]; "
                  f"edit them with: videoxai stabn edit {escape(str(out))}")


@stabn_app.command("edit")
def edit_cmd(
    edits: Path = typer.Argument(..., help="Edit-set directory (from `videoxai stabn collect`)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model for the preview (default: the collection's)."),
    no_preview: bool = typer.Option(False, "--no-preview", help="Do not load a model (no preview)."),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8001, min=1, max=65535, help="TCP port."),
    device: str = typer.Option("cpu", help=DEVICE_HELP + " (for the preview)", callback=check_device),
) -> None:
    """Step 2: serve the editor page: give every frame a level (1.0 / 0.5 / 0.0) and save."""
    import uvicorn

    from ..errors import InputError, UnknownModelError
    from ..stabn.editor import create_app
    from ..stabn.knowledge import EditSet

    es = EditSet.open(edits)
    vm = None
    if not no_preview:
        with console.status(f"loading {model or es.model}…"):
            try:
                vm = _load(model or es.model, device)
            except UnknownModelError as e:
                if model is not None:
                    raise
                # the collection's model directory moved or is on another machine: editing needs no model
                raise InputError(f"{e}. The collection's model is gone from where it was collected; give "
                                 "--model, or --no-preview to edit without the preview") from None
    app = create_app(es, vm, allowed_hosts=(host,))  # the name it listens on is its own
    _check_port(host, port)
    shown = f"[{host}]" if ":" in host else host  # an IPv6 address is bracketed in a URL
    console.print(f"editing {len(es.items)} clips of {edits} on http://{shown}:{port}  (Ctrl-C to stop)", markup=False)
    uvicorn.run(app, host=host, port=port, log_level="warning")


def _check_port(host: str, port: int) -> None:
    """Fail before announcing the address when it cannot be listened on (a second editor on the
    same port): uvicorn would print its own error after our 'editing … on http://…' line."""
    import socket

    from ..errors import InputError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            s.bind((host, port))
        except OSError as e:
            raise InputError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


@stabn_app.command("finetune")
def finetune_cmd(
    ctx: typer.Context,
    edits: Path = typer.Argument(..., help="Edit-set directory with saved edits."),
    out: Path = typer.Option(..., "--out", "-o", parser=given_path, metavar="<path>", help="Output directory: checkpoint.pt, history.json, model/."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model to fine-tune (default: the collection's)."),
    data: Optional[str] = typer.Option(None, "--data", "-d", help="Training data (default: the collection's)."),
    val_data: Optional[str] = typer.Option(None, "--val-data", help="Validation spec (default: the val split of the training data when it is synthetic; none for other "
                                            "data); 'none': no validation."),
    gamma_t: float = typer.Option(10.0, "--gamma-t", help="Weight γ_t of L_temp (0: no human knowledge)."),
    temporal_loss: str = typer.Option("auto", "--temporal-loss", help="L_temp's form: mse (the paper's), kl, "
                                      "or auto (kl for a softmax temporal attention, mse for a sigmoid one)."),
    epochs: int = typer.Option(5, help="Epochs (5, with lr 2e-3 and γ_t 10: chosen on the confound experiment's validation split)."),
    batch_size: int = typer.Option(16, help="Clips per step (finetune_config's)."),
    lr: Optional[float] = typer.Option(None, help="Learning rate (default: finetune_config's, 2e-3)."),
    freeze: str = typer.Option("feature_extractor", help="Frozen module groups, comma-separated "
                               "(feature_extractor, attention_branch, perception_branch), or 'none'."),
    unfreeze_at: Optional[int] = typer.Option(None, help="Epoch from which every group trains."),
    edited_only: bool = typer.Option(False, "--edited-only", help="Train on the edited clips only."),
    seed: int = typer.Option(0, help="Seed of the clip order and dropout."),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Continue from OUT/checkpoint.pt if it exists."),
    threads: Optional[int] = typer.Option(None, help="CPU threads for torch.", callback=check_threads),
    device: str = typer.Option("cpu", help=DEVICE_HELP, callback=check_device),
) -> None:
    """Step 3: fine-tune with L_att + L_per + γ_t · L_temp(edited, predicted temporal attention)."""
    from ..stabn.data import check_dataset, open_dataset
    from ..errors import InputError
    from ..stabn.knowledge import COLLECTION, EditSet, check_collection, finetune, finetune_config
    from ..stabn.run_directory import check_no_model_without_checkpoint, check_out_dir

    import math

    from ..stabn.losses import temporal_loss_kind
    from ..stabn.recipe import FreezeSchedule

    _threads(threads)
    # the settings first, as finetune() checks them: it did so only after the clips were decoded
    if not (math.isfinite(gamma_t) and gamma_t >= 0):
        raise InputError(f"--gamma-t must be a finite number ≥ 0, got {gamma_t:g}")
    temporal_loss_kind(temporal_loss, "sigmoid")
    frozen = () if freeze.strip().lower() == "none" else tuple(g.strip() for g in freeze.split(",") if g.strip())
    FreezeSchedule(frozen, unfreeze_at)
    config = finetune_config(epochs=epochs, batch_size=batch_size, seed=seed, **({"lr": lr} if lr is not None else {}))
    check_out_dir(out)  # before the data is decoded
    if resume:  # as fine-tuning would refuse it, once every clip was decoded
        check_no_model_without_checkpoint(Path(out))
    es = EditSet.open(edits)
    vm = _load(model or es.model, device)
    # before the data is decoded: what finetune would refuse after it
    check_collection(es, vm)
    if not es.edits():
        raise InputError(f"no saved edits in {edits}: edit some clips first (`videoxai stabn edit {edits}`)")
    spec = data or es.data
    size = vm.input_size
    val_spec = val_data or (spec if spec.startswith("synthetic") else None)
    if val_spec is not None and val_spec.strip().lower() == "none":  # asked for no validation
        val_spec = None
    if val_spec is not None:  # opened (no clip decoded) before the training clips are decoded
        check_dataset(val_spec, num_frames=vm.num_frames, labels=vm.labels)
    with console.status(f"loading {spec}…"):
        try:
            train_set = open_dataset(spec, es.split, num_frames=vm.num_frames, frame_size=size, labels=vm.labels,
                                     view=vm.preprocess)
        except InputError as e:
            if data is not None:
                raise
            # the data moved since the clips were collected (or the edit set was copied to another
            # machine): "folder: /x is not a directory" did not say where /x came from
            raise InputError(f"{e} (the data the clips were collected from, recorded in {edits / COLLECTION}; "
                             "give --data to read it from elsewhere)") from None
        val_set = (open_dataset(val_spec, "val", num_frames=vm.num_frames, frame_size=size, labels=vm.labels,
                                view=vm.preprocess)
                   if val_spec else None)
    printed: list = []
    with _saying_what_is_kept(out, printed, resume):
        result = finetune(vm, train_set, es, out, gamma_t=gamma_t, config=config, frozen=frozen,
                          unfreeze_at=unfreeze_at, edited_only=edited_only, val=val_set, resume=resume,
                          on_epoch=lambda r: (printed.append(r), _print_epoch(r)), command=_command(ctx),
                          temporal_loss=temporal_loss)
    _say_if_nothing_ran(result, printed, out)
    if result.evaluation is not None:
        console.print(f"validation: {result.evaluation}", markup=False)
    console.print(f"model: [bold]{escape(str(result.model_dir))}[/]")


def register(app: typer.Typer) -> None:
    app.add_typer(stabn_app, name="stabn")
