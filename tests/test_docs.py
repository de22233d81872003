"""The documentation site: it builds in strict mode, and its quick start and tutorial run.

`make test` runs these; `make docs` builds the same site into site/.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
VIDEO = ROOT / "tests" / "data" / "bigbuckbunny.mp4"

_FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks(page: Path) -> list[str]:
    """The ```python blocks of a Markdown page, in order."""
    return _FENCE.findall(page.read_text(encoding="utf-8"))


def _mkdocs() -> list[str]:
    pytest.importorskip("mkdocs", reason="needs the docs extra: pip install -e '.[docs]' (make install does)")
    pytest.importorskip("mkdocstrings", reason="needs the docs extra: pip install -e '.[docs]' (make install does)")
    return [sys.executable, "-m", "mkdocs"]


def _build(config: Path, site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([*_mkdocs(), "build", "--strict", "--config-file", str(config), "--site-dir", str(site)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_site_builds_in_strict_mode_with_the_api_reference(tmp_path):
    proc = _build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    site = tmp_path / "site"
    for page in ("index.html", "quickstart.html", "tutorial.html", "protocol.html", "architecture.html",
                 "stabn.html", "methods/attention.html", "methods/perturbation.html"):
        assert (site / page).is_file(), page
    # the API reference is generated from the docstrings, not written by hand
    api = (site / "reference" / "index.html").read_text(encoding="utf-8")
    assert "Decode a video file" in api            # read_video's docstring
    # the docstrings' Sphinx roles are links (docs/hooks/sphinx_roles.py), not ":func:" before a code span
    assert ('Decode a video file into a <a class="autorefs autorefs-internal" href="index.html#videoxai.Clip">'
            '<code>Clip</code></a> (see <a class="autorefs autorefs-internal" '
            'href="data.html#videoxai.data.video.read_video"><code>videoxai.data.video.read_video</code></a>)') in api
    roles = [(page.name, m) for page in site.rglob("*.html")
             for m in re.findall(r":(?:func|class|meth|mod|attr|data|exc|obj):<code>", page.read_text(encoding="utf-8"))]
    assert not roles, roles[:5]
    assert not (site / "hooks").exists()
    assert "top_frames" in api                      # a method of Explanation
    methods = (site / "reference" / "methods.html").read_text(encoding="utf-8")
    assert "Selvaraju" in methods                   # Grad-CAM's module docstring
    # every public name and every registered method and metric has an entry (``vx.explain`` named
    # in a members list resolved to the submodule of that name and was silently left out)
    import inspect

    import videoxai as vx
    ids = set(re.findall(r'id="([\w.]+)"', "".join(p.read_text(encoding="utf-8")
                                                  for p in (site / "reference").glob("*.html"))))
    import videoxai.evaluation
    import videoxai.models
    import videoxai.serve                           # create_app, BackgroundServer: docs/protocol.md names them
    import videoxai.viz
    public = [(vx, n) for n in vx.__all__ if n != "__version__"]
    for package in (videoxai.evaluation, videoxai.models, videoxai.serve, videoxai.viz, videoxai.stabn):
        public += [(package, n) for n in package.__all__]
    plugins = [vx.methods.get(n) for n in vx.methods.available()] + [vx.metrics.get(n) for n in vx.metrics.available()]
    public += [(inspect.getmodule(cls), cls.__name__) for cls in plugins]
    missing = [f"{package.__name__}.{n}" for package, n in public
               if (inspect.isclass(obj := getattr(package, n)) or inspect.isfunction(obj))
               and not {f"{obj.__module__}.{obj.__name__}", f"{package.__name__}.{n}"} & ids]
    assert not missing, f"not in the API reference: {missing}"


def test_strict_build_fails_on_a_broken_link_and_a_broken_api_reference(tmp_path):
    """Strict mode is what makes the build a check: a dangling link or ``:::`` target must fail it."""
    docs = tmp_path / "docs"
    shutil.copytree(DOCS, docs)
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8").replace("docs_dir: docs", f"docs_dir: {docs}")
    (tmp_path / "mkdocs.yml").write_text(config, encoding="utf-8")
    page = docs / "quickstart.md"
    original = page.read_text(encoding="utf-8")

    page.write_text(original + "\nSee [nowhere](no_such_page.md).\n", encoding="utf-8")
    proc = _build(tmp_path / "mkdocs.yml", tmp_path / "site1")
    assert proc.returncode != 0 and "no_such_page.md" in proc.stdout + proc.stderr

    page.write_text(original + "\n::: videoxai.no_such_function\n", encoding="utf-8")
    proc = _build(tmp_path / "mkdocs.yml", tmp_path / "site2")
    assert proc.returncode != 0 and "no_such_function" in proc.stdout + proc.stderr


@pytest.mark.parametrize("page", ["index.md", "quickstart.md", "tutorial.md", "architecture.md", "stabn.md",
                                  "methods/index.md"])
def test_page_code_runs(page, tmp_path, monkeypatch, capsys):
    """Every ```python block of the page, in order, in one namespace, as a reader would paste them."""
    blocks = python_blocks(DOCS / page)
    assert len(blocks) >= (1 if page in ("index.md", "stabn.md", "methods/index.md") else 2), f"{page} lost its code"
    (tmp_path / "tests" / "data").mkdir(parents=True)
    (tmp_path / "tests" / "data" / VIDEO.name).symlink_to(VIDEO)
    (tmp_path / "clip.mp4").symlink_to(VIDEO)  # the home page's example names its video clip.mp4
    monkeypatch.chdir(tmp_path)  # the pages write overlays and an evaluation next to the reader
    namespace: dict = {"__name__": "__docs__"}
    for i, code in enumerate(blocks):
        try:
            exec(compile(code, f"{page}, python block {i + 1}", "exec"), namespace)
        except Exception as e:  # name the block that broke
            raise AssertionError(f"{page}, python block {i + 1} failed: {type(e).__name__}: {e}") from e
    out = capsys.readouterr().out
    if page == "tutorial.md":
        # three methods explained, compared on every metric, and a report written
        assert set(namespace["explanations"]) == {"staa", "gradcam", "saliency"}
        s = namespace["s"]
        assert {"staa", "gradcam", "saliency", "random"} <= set(s.methods)
        assert len(s.metrics) == 3 and all(s.cells[m, k].n == 1 for m in s.methods for k in s.metrics)
        assert Path(namespace["summary"].report["html"]).is_file()
        assert (tmp_path / "tutorial_gradcam.gif").stat().st_size > 0
        assert "deletion(unit=frame) (lower is better)" in out
    elif page == "index.md":
        assert namespace["exp"].method == "staa" and (tmp_path / "overlay.mp4").stat().st_size > 0
    elif page == "quickstart.md":
        assert (tmp_path / "overlay.mp4").is_file() and (tmp_path / "staa.npz").is_file()
    elif page == "stabn.md":  # the ST-ABN's own attention: a temporal score per frame
        exp = namespace["exp"]
        assert exp.method == "stabn" and exp.label in namespace["model"].labels
        assert exp.temporal.shape == (8,) and abs(float(exp.temporal.sum()) - 1) < 1e-5
    elif page == "methods/index.md":  # a Monte-Carlo-dropout network: same seed, same map (the block asserts it)
        assert namespace["a"].method == "smoothgrad" and namespace["a"].options["seed"] == 3
    else:  # architecture.md: its recipes assert their own results and unregister what they add
        from videoxai.methods import available
        from videoxai.metrics import available as metrics
        assert "brightness" not in available() and "peak_share" not in metrics()


def test_makefile_builds_the_docs_and_installs_their_extra():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^docs: .*\n\t.*mkdocs build --strict", makefile, re.M)
    install = re.search(r'pip install -q -e "\.\[([a-z,]+)\]"', makefile)
    assert install and "docs" in install.group(1).split(",")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(d.startswith("mkdocstrings") for d in extras["docs"])
    assert "site/" in (ROOT / ".gitignore").read_text().splitlines()


def test_licence_is_an_spdx_expression_without_setuptools_warnings(tmp_path):
    """The licence table form made setuptools print a deprecation warning (three times per install)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == "Apache-2.0"
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", ".venv", "site", "*.egg-info", "__pycache__",
                                                             "tests", "benchmarks", "scripts", "docs"))
    code = ("import warnings; warnings.simplefilter('always'); "
            "from setuptools.build_meta import prepare_metadata_for_build_wheel as p; "
            f"print(p({str(tmp_path / 'meta')!r}))")
    (tmp_path / "meta").mkdir()
    proc = subprocess.run([sys.executable, "-c", code], cwd=src, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Warning" not in proc.stdout + proc.stderr, proc.stderr[-2000:]
    metadata = next((tmp_path / "meta").glob("*.dist-info")) / "METADATA"
    assert "License-Expression: Apache-2.0" in metadata.read_text()


def specs_in(text: str, names: list[str]) -> list[tuple[int, str]]:
    """``(line, spec)`` of every ``name(option=value, …)`` in ``text`` that names one of ``names``
    (placeholders such as ``rise(n_samples=…)`` left out)."""
    pattern = re.compile(r"\b(" + "|".join(sorted(names, key=len, reverse=True)) + r")\(([^()`\n]*)\)")
    return [(text[:m.start()].count("\n") + 1, m.group(0)) for m in pattern.finditer(text)
            if "=" in m.group(2) and "…" not in m.group(2) and "..." not in m.group(2)]


def test_every_method_and_metric_spec_in_the_docs_is_valid():
    """A renamed or removed option leaves examples that fail for the reader: every spec the
    README and the site quote must parse and type-check against today's declarations."""
    from videoxai.errors import VideoXAIError
    from videoxai.methods.base import METHODS
    from videoxai.metrics.base import METRICS
    from videoxai.options import parse_spec

    plugins = {**METHODS.items(), **METRICS.items()}
    plan_options = ("clips", "refine", "working_size")  # evaluate's and vx.explain's own, not the plug-in's
    pages = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
    checked, wrong = 0, []
    for page in pages:
        for line, spec in specs_in(page.read_text(encoding="utf-8"), list(plugins)):
            name, options = parse_spec(spec)
            try:
                plugins[name].parse_options({k: v for k, v in options.items() if k not in plan_options})
            except VideoXAIError as e:
                wrong.append(f"{page.relative_to(ROOT)}:{line}: {spec}: {e}")
            checked += 1
    assert not wrong, "\n".join(wrong)
    assert checked >= 20, f"only {checked} specs found: the pattern no longer matches the docs"
    # the check itself: an option that no longer exists is caught
    assert specs_in("run `rise(n_sample=5)` or rise(n_samples=…)", ["rise"]) == [(1, "rise(n_sample=5)")]


def test_the_shared_options_table_names_methods_that_take_each_option():
    """docs/methods/index.md's table of shared option names says which methods take each one: a
    method named there must declare it (``baseline`` was said of every perturbation method, where
    the extremal ones take ``perturbation``)."""
    from videoxai.methods.base import METHODS

    page = (DOCS / "methods" / "index.md").read_text(encoding="utf-8")
    families, table = page.split("## Options every family names the same way", 1)
    # "perturbation methods", "input-gradient methods": the methods of that row of the families table
    family = {phrase: re.findall(r"`(\w+)`", re.search(rf"^\| \[[^]]+\]\({link}\) \|([^|]*)\|", families, re.M)[1])
              for phrase, link in (("perturbation methods", "perturbation.md"), ("input-gradient methods", "gradients.md"))}
    assert len(family["perturbation methods"]) >= 7 and len(family["input-gradient methods"]) >= 5
    rows = [r for r in table.splitlines() if r.startswith("| `")]
    assert len(rows) >= 10, "the table of shared options was not found"
    checked, wrong = 0, []
    for row in rows:
        option, _, methods = [c.strip() for c in row.strip("|").split("|")]
        option = option.strip("`")
        named = re.findall(r"`(\w+)`", methods)
        named += [m for phrase, ms in family.items() if phrase in methods for m in ms]
        for name in named:
            if name in METHODS.names():
                checked += 1
                if option not in METHODS.get(name).declared_options() and option != "target":
                    wrong.append(f"{option}: {name}")
    assert not wrong, f"methods the table says take an option they do not declare: {wrong}"
    assert checked >= 20


def test_every_registered_method_and_metric_is_in_the_sites_tables():
    """Choosing a method lists every method in its families table, Evaluation every metric in its
    table, and the README's methods table every method: a new plug-in is not left out of them."""
    import videoxai as vx

    def first_table_names(text: str, heading: str | None = None) -> set[str]:
        if heading:
            text = text.split(heading, 1)[1]
        rows = re.search(r"^\|.*\n\|[-| ]+\|\n((?:\|.*\n)+)", text, re.M)[1]
        return {n for row in rows.splitlines() for n in re.findall(r"`(\w+)`", row.split("|")[2])}

    methods, metrics = set(vx.methods.available()), set(vx.metrics.available())
    site_methods = first_table_names((DOCS / "methods" / "index.md").read_text(encoding="utf-8"))
    readme_methods = {n for row in (ROOT / "README.md").read_text(encoding="utf-8").split("## Methods", 1)[1]
                      .split("\n\n")[2].splitlines()[2:] for n in re.findall(r"`(\w+)`", row.split("|")[1])}
    site_metrics = first_table_names((DOCS / "evaluation.md").read_text(encoding="utf-8"), "## Metrics")
    assert methods - site_methods == set(), "missing from docs/methods/index.md"
    assert methods - readme_methods == set(), "missing from the README's methods table"
    assert metrics - site_metrics == set(), "missing from docs/evaluation.md"


def test_a_role_with_an_explicit_title_is_linked_and_shows_its_title(tmp_path):
    # ":meth:`Explanation.save <videoxai.Explanation.save>`" reached the site as ':meth:' and the
    # escaped text "Explanation.save &lt;videoxai.Explanation.save&gt;"
    import importlib.util

    spec = importlib.util.spec_from_file_location("sphinx_roles", ROOT / "docs" / "hooks" / "sphinx_roles.py")
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    page = tmp_path / "reference" / "timeline.html"
    entries = {"videoxai.Explanation.save": tmp_path / "reference" / "index.html"}
    html = ("As :meth:<code>Explanation.save &lt;videoxai.Explanation.save&gt;</code>, and "
            ":func:<code>~videoxai.Explanation.save</code> or :class:<code>nowhere.Thing</code>.")
    assert hook.link_roles(html, page, entries, {"Explanation.save": ["videoxai.Explanation.save"]}) == (
        'As <a class="autorefs autorefs-internal" href="index.html#videoxai.Explanation.save"><code>'
        'Explanation.save</code></a>, and <a class="autorefs autorefs-internal" '
        'href="index.html#videoxai.Explanation.save"><code>save</code></a> or <code>nowhere.Thing</code>.')


_FENCED = re.compile(r"^ *```[^\n]*\n(.*?)^ *```", re.S | re.M)
_CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)
_COMMAND = re.compile(r"(?:videoxai|python3? (?:scripts|benchmarks)/\w+\.py)(?=\s|$)")
_OPTION = re.compile(r"(?<![\w/.:=-])(--?[A-Za-z][\w-]*)")


def command_lines(text: str) -> list[tuple[int, str]]:
    """``(line, command)`` of every ``videoxai …`` and ``python scripts/….py …`` / ``python
    benchmarks/….py …`` the text quotes: lines of fenced blocks (``\\`` continuations joined,
    comments dropped), lines of indented blocks, and code spans (which may wrap lines in prose)."""
    found = []
    for m in _FENCED.finditer(text):
        first = text[:m.start(1)].count("\n") + 1
        lines = m.group(1).split("\n")
        for i, line in enumerate(lines):
            line = line.strip().removeprefix("$ ")
            if _COMMAND.match(line):
                for more in lines[i + 1:]:
                    if not line.endswith("\\"):
                        break
                    line = f"{line[:-1]} {more.strip()}"
                found.append((first + i, line.split(" #")[0]))
    prose = _FENCED.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    for m in re.finditer(r"^ {4,}(videoxai .*)$", prose, re.M):
        found.append((prose[:m.start()].count("\n") + 1, m.group(1).split(" #")[0]))
    for m in _CODE_SPAN.finditer(prose):
        span = " ".join(m.group(2).split())
        if _COMMAND.match(span):
            found.append((prose[:m.start()].count("\n") + 1, span))
    return found


def _cli_options() -> tuple[object, callable]:
    """The ``videoxai`` command tree (Click) and a function giving one command's option names."""
    import typer

    from videoxai.cli import app

    def names(command) -> set[str]:
        return {o for p in command.params for o in [*getattr(p, "opts", ()), *getattr(p, "secondary_opts", ())]
                if o.startswith("-")} | {"--help", "--debug"}   # --debug: main() takes it anywhere
    return typer.main.get_command(app), names


def wrong_options(command: str, cli, names) -> list[str]:
    """The options of a quoted command line that its command does not have (or a subcommand
    that does not exist). Quoted values (``--methods "a,b(x=1)"``) are not read as options."""
    words = command.split()
    if words[0] == "videoxai":
        cmd, i = cli, 1
        while hasattr(cmd, "commands") and i < len(words) and words[i] in cmd.commands:
            cmd, i = cmd.commands[words[i]], i + 1
        if hasattr(cmd, "commands") and i < len(words) and words[i] not in ("...", "…"):
            return [f"no command {' '.join(words[:i + 1])!r}"]
        known, rest = names(cmd), words[i:]
    else:  # a script's argparse options, read from its source (importing it would run a benchmark's imports)
        source = (ROOT / words[1]).read_text(encoding="utf-8")
        known, rest = set(re.findall(r"add_argument\(\s*\"(-[\w-]+)\"", source)) | {"--help", "-h"}, words[2:]
    rest = " ".join(rest).split(" -- ")[0]   # after --, every word is an argument
    rest = re.sub(r"\"[^\"]*\"|'[^']*'", "", rest)
    return [o for o in _OPTION.findall(rest) if o not in known]


def test_every_command_line_option_in_the_docs_exists():
    """Every ``videoxai …`` command and script command line the README and the site quote names
    options its command has: a renamed or removed flag leaves commands that fail for the reader."""
    cli, names = _cli_options()
    pages = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
    commands, options, wrong = 0, 0, []
    for page in pages:
        # the troubleshooting page's examples go wrong on purpose: its own test runs them
        mistakes = {c for c, _ in _CONSOLE.findall(page.read_text(encoding="utf-8"))}
        for line, command in command_lines(page.read_text(encoding="utf-8")):
            if command in mistakes:
                continue
            commands += command.startswith("videoxai")
            options += len(_OPTION.findall(command))
            if bad := wrong_options(command, cli, names):
                wrong.append(f"{page.relative_to(ROOT)}:{line}: {command}: {bad}")
    assert not wrong, "\n".join(wrong)
    assert commands >= 60 and options >= 150, f"only {commands} commands, {options} options found"
    # a backticked option in prose (`--window-stride`) is one of some command's or script's
    known = set()
    stack = [cli]
    while stack:
        cmd = stack.pop()
        known |= names(cmd)
        stack += getattr(cmd, "commands", {}).values()
    for script in [*(ROOT / "scripts").glob("*.py"), *(ROOT / "benchmarks").glob("*.py")]:
        known |= set(re.findall(r"add_argument\(\s*\"(-[\w-]+)\"", script.read_text(encoding="utf-8")))
    for page in pages:
        prose = _FENCED.sub("", page.read_text(encoding="utf-8"))
        for m in _CODE_SPAN.finditer(prose):
            if m.group(2).startswith("-"):
                wrong += [f"{page.relative_to(ROOT)}: `{m.group(2)}`: {o}"
                          for o in _OPTION.findall(re.sub(r"\"[^\"]*\"|'[^']*'", "", m.group(2))) if o not in known]
    assert not wrong, "\n".join(wrong)
    # the check itself: a misspelt option, in a wrapped span, a continued line or a script, is caught
    text = ("Run `videoxai explain clip.mp4\n--window-strides 8`, or\n\n```bash\nvideoxai stabn train --out x \\\n"
            "    --epoch 3   # three\npython benchmarks/staa_overhead.py --repeat 3\nvideoxai stabn trian\n```\n")
    found = command_lines(text)
    assert [line for line, _ in found] == [5, 7, 8, 1]
    assert [wrong_options(c, cli, names) for _, c in found] == [
        ["--epoch"], ["--repeat"], ["no command 'videoxai stabn trian'"], ["--window-strides"]]


_CONSOLE = re.compile(r"^```console\n\$ (videoxai [^\n]*)\n([^\n]*)\n```", re.M)


def test_the_troubleshooting_pages_commands_print_the_errors_it_quotes(tmp_path, monkeypatch, capsys):
    """docs/troubleshooting.md quotes real one-line errors: each ``$ videoxai …`` block, run in a
    folder holding the files the page names, prints its quoted line (``[…]`` a part left out) on
    stderr and exits with status 2. A reworded message leaves the page quoting one nobody sees."""
    import numpy as np
    from PIL import Image

    from videoxai.cli import main

    examples = _CONSOLE.findall((DOCS / "troubleshooting.md").read_text(encoding="utf-8"))
    assert len(examples) >= 15, f"only {len(examples)} examples found: the page or the pattern changed"
    (tmp_path / "clip.mp4").symlink_to(VIDEO)
    (tmp_path / "-take2.mp4").symlink_to(VIDEO)
    (tmp_path / "notes.mp4").write_text("a text file named .mp4\n", encoding="utf-8")
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "frame.png")
    monkeypatch.chdir(tmp_path)
    wrong = []
    for command, quoted in examples:
        with pytest.raises(SystemExit) as exit_:
            main(shlex.split(command)[1:])
        err = capsys.readouterr().err.strip()
        pattern = ".*".join(re.escape(part) for part in quoted.split("[…]"))
        if exit_.value.code != 2 or not re.fullmatch(pattern, err.splitlines()[-1] if err else ""):
            wrong.append(f"{command}: exit {exit_.value.code}, printed {err!r}")
    assert not wrong, "\n".join(wrong)


def test_every_error_code_the_service_answers_is_in_the_protocols_table():
    """docs/protocol.md's table of HTTP errors names each code the server raises under its status
    (``503 storage_unavailable`` was left out of it), and the codes only streams send are in its
    section on stream errors."""
    raised = {(int(status), code) for path in (ROOT / "videoxai" / "serve").glob("*.py")
              for status, code in re.findall(r"ServiceError\(\s*(\d{3}),\s*\"(\w+)\"", path.read_text(encoding="utf-8"))}
    assert len(raised) >= 25, "the pattern no longer finds the server's errors"
    page = (DOCS / "protocol.md").read_text(encoding="utf-8")
    rows = {int(m[1]): m[2] for m in re.finditer(r"^\| (\d{3}) \| ([^|]*)\|", page, re.M)}
    streams = page.split("### 4.5 Errors and closing", 1)[1]
    missing = [f"{status} {code}" for status, code in sorted(raised)
               if f"`{code}`" not in rows.get(status, "") and f"`{code}`" not in streams]
    assert not missing, f"not in docs/protocol.md under their status: {missing}"


def test_the_protocols_limits_table_shows_the_settings_defaults():
    """Each row of docs/protocol.md's limits table gives ``ServeSettings``' default: a limit
    changed in the code leaves operators reading the old one."""
    from videoxai.serve.settings import ServeSettings

    def value(text: str) -> object:
        text = text.strip().replace(" ", "")
        if text == "none":
            return ()
        if m := re.fullmatch(r"(\d+)×(\d+)", text):
            return int(m[1]) * int(m[2])
        if m := re.fullmatch(r"(\d+)KiB", text):
            return int(m[1]) * 1024
        return float(text)

    table = (DOCS / "protocol.md").read_text(encoding="utf-8").split("**Limits**", 1)[1].split("**Running for days.**")[0]
    fields, checked, wrong = ServeSettings.model_fields, 0, []
    for names, defaults in re.findall(r"^\| (`\w+`(?: / `\w+`)?) \| ([^|`]*) \|", table, re.M):
        for name, shown in zip(re.findall(r"`(\w+)`", names), defaults.split("/"), strict=True):
            checked += 1
            if value(shown) != fields[name].default:
                wrong.append(f"{name}: the page says {shown.strip()!r}, the default is {fields[name].default!r}")
    assert not wrong, wrong
    assert checked >= 25, f"only {checked} limits found: the table or the pattern changed"


def test_the_protocols_compact_array_decoding_gives_the_servers_arrays():
    """The few lines docs/protocol.md gives a client to decode a map (without videoxai) give
    ``CompactArray.decode``'s array for both dtypes."""
    import base64

    import numpy as np

    from videoxai.serve.protocol import CompactArray

    snippet = next(b for b in python_blocks(DOCS / "protocol.md") if "b64decode" in b)
    values = np.random.default_rng(0).random((8, 24, 32)).astype(np.float32) * 3
    for dtype in ("uint8", "float16"):
        message = CompactArray.encode(values, dtype).model_dump()
        namespace = {"np": np, "base64": base64, "m": message}
        exec(compile(snippet, "protocol.md, compact arrays", "exec"), namespace)
        assert np.array_equal(namespace["a"], CompactArray.model_validate(message).decode())
        assert np.abs(namespace["a"] - values).max() <= (3 / 510 if dtype == "uint8" else 3e-3)


def test_the_protocols_python_stream_client_runs_against_a_server(tmp_path, monkeypatch, capsys):
    """docs/protocol.md's Python client, run as written against a demo server (its address put in
    place of the page's http://127.0.0.1:8000), prints a line per window."""
    import torch

    import videoxai as vx
    from videoxai.serve import BackgroundServer, create_app

    snippet = next(b for b in python_blocks(DOCS / "protocol.md") if "StreamClient(" in b)
    assert "http://127.0.0.1:8000" in snippet
    (tmp_path / "clip.mp4").symlink_to(VIDEO)
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # as `videoxai serve --threads 1`: with more, the idle threads spun and took 10 x longer
    try:
        with BackgroundServer(create_app(vx.load_model("demo"))) as server:
            exec(compile(snippet.replace("http://127.0.0.1:8000", server.url), "protocol.md, Python client", "exec"), {})
    finally:
        torch.set_num_threads(threads)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 32 and lines[0].split()[0] == "0", lines[:3]   # 132 frames, window 8, stride 4
