"""The ``videoxai`` command line (Typer + Rich).

Each module of this package adds its commands with a ``register(app)`` function, so a capability
(explain, evaluate, serve, stabn, …) brings its own commands without touching this file.

Errors: :func:`main` is the one place where failures become output. Anything a user can cause
(a bad option value, a missing or unwritable path, an unknown device, a server that does not
answer) ends the command with **one line on stderr and exit code 2**; ``--debug`` anywhere on the
command line shows the traceback instead.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import warnings
from pathlib import Path
from typing import Iterator

import typer

try:  # recent Typer vendors Click as typer._click; older ones use Click itself
    from typer._click.exceptions import ClickException, NoSuchOption, UsageError
except ImportError:  # pragma: no cover
    from click import ClickException, NoSuchOption, UsageError

from ..errors import VideoXAIError
from ..options.digits import digit_message, foreign_digit
from ..registry import import_submodules

app = typer.Typer(name="videoxai", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Explain video classifiers: where and when the evidence for a prediction lies. "
                       "Add --debug to any command to see the traceback of an error.")


def _fold_long_words_in_help() -> None:
    """Typer puts option help in table cells whose default overflow cuts a word longer than the
    column ("ucf24:ROOT[,annotations=FILE.j…" at 80 columns): fold such words onto the next line."""
    from rich.text import Text
    from typer import rich_utils

    make = getattr(rich_utils, "_make_rich_text", None)
    if make is None or getattr(make, "folds", False):  # another Typer, or already done
        return

    def folding(*args, **kwargs):
        out = make(*args, **kwargs)
        if isinstance(out, Text):
            out.overflow = "fold"
        return out

    folding.folds = True
    rich_utils._make_rich_text = folding


_fold_long_words_in_help()

#: exit status of every error a user can cause
EXIT_ERROR = 2


#: the help line of every command's --device option (checked by check_device)
DEVICE_HELP = "cpu, cuda, cuda:1, …"


def check_device(device: str) -> str:
    """Typer callback for ``--device``: an unknown or unavailable device is a one-line error
    before any model is loaded (torch would raise deep inside ``.to()``)."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise typer.BadParameter(f"{device!r} is not a device; use cpu, cuda, cuda:1, mps, …") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise typer.BadParameter(f"{device!r}: no CUDA GPU is available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise typer.BadParameter(f"{device!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    elif dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise typer.BadParameter(f"{device!r}: MPS is not available on this machine")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise typer.BadParameter(f"{device!r}: videoxai runs on cpu, cuda or mps")
    return device


def check_threads(threads: int | None) -> int | None:
    """Typer callback for ``--threads``: at least 1 (torch's ``set_num_threads(-1)`` is a
    RuntimeError deep inside). A callback rather than ``min=1``, whose ``<int range> [x>=1]``
    metavar widened the help table's column until option names were cut at 80 columns."""
    if threads is not None and threads < 1:
        raise typer.BadParameter(f"{threads} is not a thread count; give 1 or more")
    return threads


# one check for every reader of numbers as text (method options, positions in a video, these options)
_non_ascii_digit, _digit_message = foreign_digit, digit_message


def _refuse_digit(value: str, digit: str) -> None:
    raise typer.BadParameter(_digit_message(value, digit))


def check_option_digits(options: dict, where: str) -> dict:
    """Method options as text (``-O``, a ``--method`` spec): a value that Python reads as a number
    but writes with digits other than 0-9 (``n_samples=٣٠``, which the options' types took for 30)
    is refused as :func:`check_position` refuses one, naming ``where`` and the option."""
    from ..errors import InputError

    for key, value in options.items():
        digit = _non_ascii_digit(value) if isinstance(value, str) else None
        if digit is None:
            continue
        try:
            float(value)
        except ValueError:  # not a number in any script: a name, for the option's type to judge
            continue
        raise InputError(f"{where}{key}={_digit_message(value, digit)}")
    return options


def check_position(value: str | None) -> str | None:
    """Typer callback for ``--start``/``--end`` (seconds, a clock time or a frame number, as text):
    a digit other than 0-9 is refused in one line, as ``--window-stride`` and every other numeric
    option refuse one. Python reads '٣' as 3, so ``--start ٣`` started at frame 3 while
    ``--end 1:٣٠`` was "not a time": a number in another script is more likely a keyboard layout's
    accident than meant, and is one nobody can check by reading the command."""
    digit = None if value is None else _non_ascii_digit(value)
    if digit is not None:
        _refuse_digit(value, digit)
    return value


def check_target(value: str | None) -> str | None:
    """Typer callback for ``--target`` (a class index or name): an index written with digits other
    than 0-9 ('٣' was class 3) is refused as :func:`check_position` refuses them; a name that holds
    such a digit among letters ('x²') is a name, and stays one."""
    digit = None if value is None else _non_ascii_digit(value)
    if digit is not None and value.strip().lstrip("+-").isdigit():
        _refuse_digit(value, digit)
    return value


def given_path(value: str | Path) -> Path:
    """Typer parser of a path option (``parser=given_path, metavar="<path>"``): an empty value is
    refused. ``--out "$DIR"`` with ``DIR`` unset is ``--out ''``, which ``Path`` reads as ``.``:
    ``explain`` wrote its report, overlays and maps into the current folder, and ``serve
    --work-dir`` kept its jobs there, without a word."""
    if isinstance(value, str) and not value.strip():
        raise typer.BadParameter("the path is empty (a variable set to nothing?); give a file or folder name, "
                                 "or . for the current folder")
    return Path(value)


def _given_value(param, args: list[str]) -> str | None:
    """The text ``args`` gave the option ``param`` (``--port 80`` or ``--port=80``), if any."""
    opts = getattr(param, "opts", None) or []
    for i, arg in enumerate(args):
        if arg in opts and i + 1 < len(args):
            return args[i + 1]
        for opt in opts:
            if opt.startswith("--") and arg.startswith(opt + "="):
                return arg[len(opt) + 1:]
    return None


def _digit_reason(exc: Exception, args: list[str]) -> Exception:
    """``exc`` worded as :func:`check_position` words it where the value refused holds a digit
    other than 0-9: an int or float option (``--port ٨٠٠٠``) was refused with "Input should be a
    valid integer, unable to parse string as an integer", which did not say what was wrong."""
    if not isinstance(exc, typer.BadParameter) or getattr(exc, "param", None) is None:
        return exc
    value = _given_value(exc.param, args)
    digit = None if value is None else _non_ascii_digit(value)
    if digit is None:
        return exc
    return typer.BadParameter(_digit_message(value, digit), ctx=exc.ctx, param=exc.param)


def _file_taken_for_options(exc: Exception, args: list[str]) -> Exception:
    """``exc`` with the way out where an argument refused as options is a file whose name starts
    with '-' (``videoxai explain -take2.mp4`` was "No such option: -t")."""
    if not isinstance(exc, NoSuchOption):
        return exc
    named = next((a for a in args if a.startswith("-") and a != "-" and Path(a).exists()), None)
    if named is None:
        return exc
    return UsageError(f"{exc.format_message()}: {named!r} is a file whose name starts with '-'; "
                      f"name it ./{named} (or put -- before it, after the options)", ctx=exc.ctx)


def _check_options_given_once(args: list[str]) -> None:
    """Refuse (UsageError) an option of one value given more than once, or a flag given with its
    opposite: Click keeps the last silently, so ``explain --method staa --method rise`` explained
    with RISE alone and ``--refine --no-refine`` did not refine, where ``-O`` given twice, and a
    service parameter given twice, are refused. Options Click takes many times (``-O``) are not
    checked; nothing after ``--`` is an option."""
    from typer.main import get_command

    command = get_command(app)
    i = 0
    while hasattr(command, "commands"):  # down to the command the arguments name
        while i < len(args) and args[i].startswith("-"):
            i += 1
        if i >= len(args) or args[i] not in command.commands:
            return  # no command, or an unknown one: Click says so
        command, i = command.commands[args[i]], i + 1
    options = {opt: param for param in command.params if getattr(param, "param_type_name", "") == "option"
               for opt in (*param.opts, *param.secondary_opts)}
    seen: dict[str, tuple[str, str | None]] = {}
    while i < len(args) and args[i] != "--":
        name, eq, value = args[i].partition("=") if args[i].startswith("--") else (args[i], "", "")
        param = options.get(name)
        i += 1
        if param is None:
            continue
        if not param.is_flag and not eq:  # its value is the next argument
            value, i = (args[i] if i < len(args) else None), i + 1
        if param.multiple or param.count or param.name == "help":
            continue
        if param.name in seen:
            first, first_value = seen[param.name]
            if param.is_flag:
                said = f"{first} and {name} both given" if first != name else f"{name} given twice"
                raise UsageError(f"{said}; give one of {' / '.join(param.opts + param.secondary_opts)} once")
            several = f" (several: {name} {first_value},{value})" if param.name in ("method", "methods", "metrics") \
                else ""
            raise UsageError(f"{name} given more than once ({first_value!r}, then {value!r}); give it once{several}")
        seen[param.name] = (name, value if not param.is_flag else None)


def printable(text: str) -> str:
    """``text`` with its control characters written as escapes (``\\x1b``), for a terminal: a name or
    message from a server, a file or a model (a class label, an error) that held ``ESC [2J`` cleared
    the user's screen, and other sequences retitle the window or write the clipboard (OSC 52)."""
    import unicodedata

    return "".join(c if unicodedata.category(c) != "Cc" or c in "\n\t" else repr(c)[1:-1] for c in text)


def describe(exc: BaseException) -> str:
    """One line saying what went wrong, for people (no traceback, no repr noise)."""
    if isinstance(exc, ClickException):
        text = exc.format_message()
        ctx = getattr(exc, "ctx", None)
        if isinstance(exc, UsageError) and ctx is not None:
            text += f" (see '{ctx.command_path} --help')"
    elif isinstance(exc, OSError) and exc.strerror:
        text = f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    elif isinstance(exc, VideoXAIError):
        text = str(exc)
    else:  # not raised on purpose: name the kind of failure
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return printable(" ".join(text.split()))  # one line, whatever the message held, and no terminal sequence


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as one line on stderr, ``warning: …``, as the commands' errors are: Python's format
    added the library's source line that called ``warn()`` (``videoxai/stabn/train.py:194:
    UserWarning: …``), which means nothing to a user. (``warnings.showwarning`` for a command.)"""
    from rich.console import Console
    from rich.text import Text

    # the message as text: a folder named 'clips [2024]' is not Rich markup; and its control characters
    # escaped: matplotlib's "Glyph 27 (\x1b) missing" of a label holding ESC [2J cleared the screen
    Console(stderr=True).print(Text.assemble(("warning:", "yellow"), f" {printable(str(message))}"), highlight=False,
                               soft_wrap=True)


# the commands (after the helpers above, which they use)
for _mod in import_submodules(__name__):
    if hasattr(_mod, "register"):
        _mod.register(app)


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[list[int]]:
    """SIGTERM (``kill``, a scheduler's or ``docker stop``'s stop) handled as Ctrl-C is, through
    each command's own interruption path: ``evaluate`` says its results are stored and how to
    resume, ``explain`` removes its half-written folder, ``stabn train`` says which epoch it keeps.
    The process ended at once with -15, saying nothing. Yields the signals received (exit 143).
    Left alone off the main thread, or where the process was given another handler (a server's
    own: uvicorn installs and restores its handlers itself)."""
    got: list[int] = []
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield got
        return

    def interrupt(signum: int, _frame) -> None:
        got.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield got
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> None:
    """Entry point: every error is one line on stderr and exit code 2 (``--debug``: traceback);
    Ctrl-C is "aborted" and exit code 130, SIGTERM "terminated" and 143."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]
    with _terminate_as_interrupt() as terminated:
        _run(args, debug, terminated)


def _run(args: list[str], debug: bool, terminated: list[int]) -> None:
    try:
        with warnings.catch_warnings():
            if not debug:  # --debug: Python's own format, with the line that warned
                warnings.showwarning = show_warning
            _check_options_given_once(args)
            code = app(args=args, prog_name="videoxai", standalone_mode=False)
        # Typer turns Ctrl-C into Exit(130) and, outside standalone mode, returns that code
        # instead of raising it: without this check an interrupted run would exit 0
        if code == 130:
            raise KeyboardInterrupt
        if isinstance(code, int) and code:
            sys.exit(code)
    except typer.Exit as e:
        sys.exit(143 if terminated and e.exit_code == 130 else e.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        print("terminated" if terminated else "aborted", file=sys.stderr)
        sys.exit(143 if terminated else 130)
    except Exception as e:
        if debug:
            raise
        hint = "" if isinstance(e, (ClickException, VideoXAIError, OSError)) else \
            " (run again with --debug for the traceback)"
        print(f"error: {describe(_file_taken_for_options(_digit_reason(e, args), args))}{hint}", file=sys.stderr,
              flush=True)
        sys.exit(EXIT_ERROR)


__all__ = ["app", "main", "check_device", "check_option_digits", "check_position", "check_target", "describe",
           "given_path", "printable", "show_warning", "EXIT_ERROR"]
