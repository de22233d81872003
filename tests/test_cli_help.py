"""Help and listings in an 80-column terminal: nothing cut, one method or metric in full."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from videoxai.cli import app
from videoxai.errors import UnknownMethodError, VideoXAIError

_BOX = re.compile(r"[\s│┃║╭╮╰╯─━┏┓┗┛┡┩┣┫╇╋┳┻┯┷┠┨]+")


def squash(text: str) -> str:
    """Text without whitespace and box drawing: a wrapped or folded cell reads as one string again."""
    return _BOX.sub("", text)


@pytest.fixture
def run(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("TERMINAL_WIDTH", "80")
    runner = CliRunner()

    def invoke(*args: str):
        result = runner.invoke(app, list(args))
        assert all(len(line) <= 80 for line in result.output.splitlines()), result.output
        return result

    return invoke


def _commands(group, prefix: tuple[str, ...] = ()):
    """Every command and subcommand (Typer's own copy of click: no isinstance against click's)."""
    for name, cmd in group.commands.items():
        yield (*prefix, name), cmd
        if hasattr(cmd, "commands"):
            yield from _commands(cmd, (*prefix, name))


def help_cell(output: str, param) -> str:
    """The text of ``param``'s help cell in a Typer help panel: from the row naming the option, the
    help column down to the next option's row, continuation lines included."""
    lines = output.splitlines()
    name = max(param.opts, key=len) if param.param_type_name == "option" else param.name
    # in the first column (a "*" marks a required one), not where another option's help names it
    row = next(i for i, line in enumerate(lines) if re.match(rf"│ \*?\s{{0,6}}{re.escape(name)}(\s|$)", line))
    first = param.help.split()[0]
    x0 = lines[row].index(first, lines[row].index(name) + len(name))
    cell = []
    for i, line in enumerate(lines[row:], start=row):
        if i > row and (line.lstrip().startswith("╰") or re.search(r"(^|\s)-{1,2}\w|^│\s+\*?\s*[a-z]", line[:x0])):
            break
        cell.append(line[x0:].rstrip().rstrip("│"))
    return " ".join(cell)


def test_every_option_help_is_shown_whole_at_80_columns(run):
    """Typer's help table used to cut a word longer than its column: `ucf24:ROOT[,annotations=FILE.j…`."""
    checked = 0
    for path, cmd in _commands(typer.main.get_command(app)):
        result = run(*path, "--help")
        assert result.exit_code == 0, (path, result.output)
        for param in cmd.params:
            if getattr(param, "help", None):
                cell = help_cell(result.output, param)
                assert squash(param.help) in squash(cell), (
                    f"videoxai {' '.join(path)} --help cuts the help of {param.name}: {cell!r}")
                checked += 1
    assert checked > 60   # every command's options, the stabn subcommands' included


def test_evaluate_help_names_every_dataset_kind(run):
    out = squash(run("evaluate", "--help").output)
    for kind in ("synthetic:N", "folder:DIR", "ucf24:ROOT", "ssv2:VIDEOS"):
        assert kind in out


def test_methods_name_prints_summary_paper_options_and_models(run):
    result = run("methods", "gradcam")
    assert result.exit_code == 0, result.output
    out = squash(result.output)
    assert "Grad-CAM" in out and squash("Selvaraju et al., Grad-CAM: Visual Explanations") in out  # summary, paper
    # every option: name, type, default and the docstring's help
    assert squash("per_frame_weights │ true or false │ false │ one weight per channel and feature frame") in out
    assert squash("layer │ a string or a Module") in out and squash("dotted module name") in out
    # "models: any model" was listed for a method that refuses every network without a (T', H', W') grid
    assert "anymodel" not in out
    assert squash("models: 3D CNNs and video transformers: networks with a layer on a (T', H', W') grid") in out


def test_methods_name_for_a_transformer_only_method_says_so(run):
    out = squash(run("methods", "staa").output)
    assert squash("models with attention and a token grid (video transformers)") in out
    assert "arXiv2411.00630" in out


def test_methods_name_with_a_model_says_whether_it_applies(run):
    # --model was silently ignored when a method was named
    out = squash(run("methods", "staa", "--model", "demo-cnn").output)
    assert squash("demo-cnn (tiny3d): not applicable: method 'staa' reads the attention") in out
    assert squash("demo (timesformer): applicable") in squash(run("methods", "staa", "--model", "demo").output)


def test_cam_methods_say_which_networks_they_read_and_refuse_one_without_a_grid(run):
    import torch

    import videoxai as vx
    from videoxai.cli.catalogue import models_text
    from videoxai.methods import get

    for name in ("gradcam", "gradcam_pp"):
        assert squash("layer on a (T', H', W') grid") in squash(run("methods", name).output)
        assert models_text(get(name)).startswith("3D CNNs and video transformers")  # the listing's column
    # what it says is what it checks: an MLP over the flattened clip is refused, a 3D CNN is not
    mlp = vx.wrap(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 8 * 8, 2)), num_frames=4,
                  input_size=8, layout="BCTHW")
    assert "(T', H', W') grid" in get("gradcam").unsupported(mlp)
    assert get("gradcam").unsupported(vx.load_model("demo-cnn")) is None


def test_methods_name_with_an_unknown_model_is_the_error_alone(run):
    # the whole description of gradcam was printed before "unknown model 'nosuch'"
    from videoxai.errors import UnknownModelError

    result = run("methods", "gradcam", "--model", "nosuch")
    assert isinstance(result.exception, UnknownModelError) and "nosuch" in str(result.exception)
    assert "Grad-CAM" not in result.output and "options" not in result.output


def test_every_method_has_a_paper_and_documented_options():
    """What `videoxai methods NAME` prints comes from the classes: no method may leave it blank."""
    from videoxai.cli.catalogue import options
    from videoxai.methods import available, get

    for name in available():
        cls = get(name)
        assert re.search(r"(19|20)\d\d", cls.paper), f"{name}: no paper with a year"
        undocumented = [o.name for o in options(cls) if not o.help]
        assert not undocumented, f"{name}: options without help: {undocumented}"


def test_methods_table_wraps_and_no_longer_points_at_the_source(run):
    from videoxai.methods import available

    out = run("methods").output
    assert "…" not in out and "module docstring" not in out
    for name in available():
        assert name in squash(out)


def test_metrics_name_prints_options_with_help_also_when_documented_on_a_sibling(run):
    out = squash(run("metrics", "insertion").output)
    assert squash("Insertion curve AUC") in out and "better:higher(order=morf)" in out
    # Insertion documents its options as "as Deletion": the help comes from Deletion's docstring
    assert squash("segments │ an integer ≥ 1 │ 256 │ SLIC supervoxels") in out
    out = squash(run("metrics", "pointing_game").output)
    assert squash("needs: clips with annotated masks or boxes") in out


def test_metrics_listing_fits_80_columns(run):
    result = run("metrics")
    assert result.exit_code == 0 and "…" not in result.output.replace("option=value, …", "").replace("value…", "")


def test_unknown_method_or_metric_name_is_one_clear_error(run):
    result = run("methods", "gradcm")
    assert isinstance(result.exception, UnknownMethodError)
    assert "unknown method 'gradcm'" in str(result.exception) and "gradcam" in str(result.exception)
    result = run("metrics", "delition")
    assert isinstance(result.exception, VideoXAIError) and "deletion" in str(result.exception)


def test_methods_with_their_own_model_rule_say_which_models_not_any(run):
    # stabn and saliency_tubes read "models: any model" while refusing every bundled model but one
    assert squash("models: ST-ABN models only") in squash(run("methods", "stabn").output)
    out = squash(run("methods", "saliency_tubes").output)
    assert "anymodel" not in out and squash("3D CNNs whose logits are a linear classifier") in out
    listing = squash(run("methods").output)
    assert squash("│ stabn │") in listing and squash("ST-ABN models only") in listing


def test_descriptions_show_no_restructuredtext_markup(run):
    from videoxai.methods import available as methods
    from videoxai.metrics import available as metrics

    for kind, names in (("methods", methods()), ("metrics", metrics())):
        for name in names:
            out = run(kind, name).output
            assert "``" not in out and not re.search(r":(class|mod|func|meth|attr):", out), (name, out)
    assert run("methods", "stabn").output.startswith("stabn — The explanation an ST-ABN gives of itself")
    assert squash("options as SmoothGrad.") in squash(run("methods", "smoothgrad_sq").output)


def test_every_option_of_every_command_says_what_it_does():
    """`videoxai stabn train --help` listed --epochs, --seed and --device with no text, and
    `stabn finetune` its --seed, --resume, --threads and --device."""
    bare = [f"videoxai {' '.join(path)} {param.name}"
            for path, cmd in _commands(typer.main.get_command(app)) for param in cmd.params
            if param.name != "help" and not getattr(param, "help", None)]
    assert not bare, bare


def test_finetune_val_data_help_says_what_the_code_defaults_to(run):
    # "default: the synthetic val split" while non-synthetic data got no validation set at all
    out = squash(run("stabn", "finetune", "--help").output)
    assert squash("the val split of the training data when it is synthetic; none for other data") in out


def test_the_command_listing_gives_each_command_one_unbroken_summary(monkeypatch):
    # evaluate's summary broke after "as they are computed," wherever the terminal was wide
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setenv("TERMINAL_WIDTH", "250")
    out = CliRunner().invoke(app, ["--help"]).output
    panel = out[out.index("Commands"):]
    rows = [line for line in panel.splitlines()[1:] if line.startswith("│")]
    assert rows and all(re.match(r"│ [a-z]+\s{2,}\S", row) for row in rows), panel


def test_option_help_does_not_send_the_reader_to_the_source(run):
    # staa's `layers` said '"auto" (see the module docstring)', which no command shows
    from videoxai.methods import available

    for name in available():
        out = run("methods", name).output
        assert "docstring" not in out, (name, out)


def test_metric_descriptions_point_at_nothing_the_package_lacks_and_say_nothing_twice(run):
    # `videoxai metrics deletion` sent the reader to "research/perturbation.md §4" (not shipped)
    # and printed its one-sentence summary twice, as the summary and as "about:"
    from rich.text import Text

    from videoxai.cli.catalogue import summary
    from videoxai.metrics import available, get

    for name in available():
        out = run("metrics", name).output
        assert "research/" not in out, (name, out)
        assert squash(out).count(squash(Text.from_markup(summary(get(name))).plain)) == 1, (name, out)


def test_a_model_directory_named_like_rich_markup_is_named_as_it_is(run, tmp_path):
    import shutil
    from pathlib import Path

    import videoxai as vx

    model_dir = tmp_path / "mdl[red]x"
    shutil.copytree(Path(vx.__file__).parent / "assets" / "demo_cnn3d", model_dir)
    out = squash(run("methods", "staa", "--model", str(model_dir)).output)
    assert "mdl[red]x(tiny3d):notapplicable" in out
    out = squash(run("methods", "--model", str(model_dir)).output)
    assert "mdl[red]x(tiny3d)namewhatmodels" in out   # the table's title
    assert "mdl[red]x(tiny3d)isnotone" in out         # stabn's reason, printed below the table
