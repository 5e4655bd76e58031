"""The ``gaudit`` command line: parse, call the library, render, exit.

Exit codes: 0 every gate held (or none set), 1 a gate was breached, 2 the input or the
command line was wrong. Heavy modules (pandas, DuckDB, scipy, numpy) are imported inside
the commands, never at ``gaudit --help`` time.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from enum import Enum
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from . import __version__
from .errors import GauditError
from .report import Format
from .textsafe import message as safe_message
from .textsafe import shown


class _Group(TyperGroup):
    """Reports a usage error (``--max-nfr abc``) as one ``gaudit: error:`` line, like every
    other error, instead of click's usage block."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        from . import interrupt

        repeated = _repeated_option(self, kwargs.get("args", args[0] if args else None))
        if repeated:
            if not standalone_mode:
                from .errors import UsageError

                raise UsageError(repeated)
            say_error(repeated)
            sys.exit(EXIT_USAGE)
        try:
            rv = super().main(*args, standalone_mode=False, **kwargs)
        except typer.TyperException as exc:
            if not standalone_mode:
                raise
            if type(exc).__name__ == "NoArgsIsHelpError":
                exc.show()
                sys.exit(0)
            ctx = getattr(exc, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            message = exc.format_message()
            given = _given_value(exc, kwargs.get("args", args[0] if args else None), message)
            say_error(f"{message}{given}{hint}")
            sys.exit(getattr(exc, "exit_code", EXIT_USAGE))
        except (typer.Abort, KeyboardInterrupt):
            if not standalone_mode:
                raise
            rv = interrupt.exit_code()
        if interrupt.received() is not None or rv == interrupt.exit_code():
            # a signal (or Ctrl-C while typer parsed the options) stopped the run
            if interrupt.announce():
                _say(interrupt.message())
            rv = interrupt.exit_code()
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)


def _repeated_option(group: Any, args: Any) -> str | None:
    """A message when an option that takes one value is given twice with different values
    (``--max-nfr 0.01 ... --max-nfr 0.5``): the last would silently win, maybe the looser
    gate. Repeatable options (``--slice-by``, ``--report``) may repeat."""
    argv = [str(a) for a in (sys.argv[1:] if args is None else args)]
    name = next((a for a in argv if not a.startswith("-")), None)
    command = group.commands.get(name) if name else None
    if command is None:
        return None
    takes_one = {opt: param for param in command.params
                 if getattr(param, "opts", None) and not getattr(param, "is_flag", False)
                 and not getattr(param, "multiple", False) and param.param_type_name == "option"
                 for opt in param.opts}
    seen: dict[str, tuple[str, str]] = {}
    i = argv.index(name) + 1
    while i < len(argv) and argv[i] != "--":
        opt, eq, value = argv[i].partition("=")
        if not eq and not opt.startswith("--") and len(opt) > 2 and opt[:2] in takes_one:
            opt, eq, value = opt[:2], "=", opt[2:]  # a short option with its value: -fjson
        param = takes_one.get(opt)
        if param is not None:
            if not eq:
                if i + 1 >= len(argv):
                    break
                value, i = argv[i + 1], i + 1
            first = seen.setdefault(param.name, (opt, value))
            if not _same_value(first[1], value):
                return (f"{opt} is given twice, as {first[1]!r} and {value!r}; give it once "
                        "(a repeated option is not combined, and the last one would win).")
        i += 1
    return None


def _same_value(a: str, b: str) -> bool:
    """``0.01`` and ``0.010`` are the same threshold; other values compare as written."""
    if a == b:
        return True
    try:
        return float(a) == float(b)
    except ValueError:
        return False


def _given_value(exc: Any, args: Any, message: str) -> str:
    """``, got 'abc'``: the value the user typed for the parameter a usage error names,
    unless ``message`` already quotes it."""
    opts = getattr(getattr(exc, "param", None), "opts", None) or []
    argv = list(sys.argv[1:] if args is None else args)
    for i, arg in enumerate(argv):
        name, eq, value = str(arg).partition("=")
        if name in opts and (eq or i + 1 < len(argv)):
            given = repr(value if eq else argv[i + 1])
            return "" if given in message else f", got {given}"
    return ""


app = typer.Typer(
    name="gaudit",
    cls=_Group,
    help="Audit a model update before it ships: negative flips, error deltas and "
    "cross-model retrieval compatibility, gated for CI.\n\n"
    "Exit codes: 0 gates held, 1 a gate was breached, 2 wrong input or usage.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

EXIT_OK, EXIT_BREACHED, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3


class EngineName(str, Enum):
    duckdb = "duckdb"
    spark = "spark"


class Task(str, Enum):
    auto = "auto"
    classification = "classification"
    regression = "regression"


class Metric(str, Enum):
    cosine = "cosine"
    ip = "ip"
    l2 = "l2"


class Criterion(str, Enum):
    top1 = "top1"
    map = "map"
    ndcg10 = "ndcg10"
    recall10 = "recall10"
    recall100 = "recall100"
    mrr10 = "mrr10"


class Tracker(str, Enum):
    mlflow = "mlflow"
    none = "none"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gaudit (graceful-audit) {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", "-V", callback=_version, is_eager=True,
                           help="Show the version and exit.")
    ] = False,
) -> None:
    """Audit a model update before it ships."""


def _stderr_console(quiet: bool) -> Any:
    from rich.console import Console

    return Console(stderr=True, quiet=quiet, highlight=False)


def _say(message: str, *, command: bool = False) -> None:
    """A message on stderr, no line of which a CI runner could take for a workflow command
    (unless it is one we mean: ``command``); a closed stderr (``2>&1 | head``) does not
    change the exit code."""
    with closed_pipe_ok("stderr"):
        typer.echo(message if command else safe_message(message), err=True)


def annotation_escape(message: str) -> str:
    """The data of a GitHub workflow command, escaped as the runner requires."""
    return message.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def say_error(message: str) -> None:
    """``gaudit: error: ...`` on stderr and, on GitHub Actions, one ``::error`` annotation."""
    _say(f"gaudit: error: {shown(message)}")  # one line: data cannot start a line of its own
    if os.environ.get("GITHUB_ACTIONS") == "true":
        _say(f"::error title=gaudit::{annotation_escape(shown(message))}", command=True)


def from_config(message: str, sources: dict[str, str]) -> str:
    """A message about an option whose value came from a config file names that file and
    key (``gaudit.toml: memory-limit 'x': ...``) instead of a flag the user never typed."""
    import re

    for key, source in sources.items():
        flag = f"--{key}"
        if message.startswith(flag) and message[len(flag):len(flag) + 1] in (":", " ", ""):
            return f"{source}: {key}{message[len(flag):]}"
        message = re.sub(rf"--{re.escape(key)}(?![\w-])", f"{key} (from {source})", message)
    return message


class Run:
    """What the error boundary needs to know about the run: where config values came from."""

    def __init__(self) -> None:
        self.sources: dict[str, str] = {}


@contextlib.contextmanager
def error_boundary(debug: bool = False) -> Iterator[Run]:
    """Turn expected failures into one message and exit code 2; never a traceback (unless
    ``--debug``, which adds it and keeps the exit code). Ctrl-C and SIGTERM exit 130 / 143
    whatever exception they surface as (DuckDB turns them into its own errors).

    ``typer.Exit`` passes through (it is a RuntimeError, so it is re-raised first).
    """
    from . import interrupt

    run = Run()
    try:
        yield run
    except typer.Exit:
        raise
    except (Exception, KeyboardInterrupt) as exc:
        sig = interrupt.received()
        if sig is not None or isinstance(exc, KeyboardInterrupt):
            if debug:
                _traceback()
            if interrupt.announce():
                _say(interrupt.message(sig))
            raise typer.Exit(interrupt.exit_code(sig)) from None
        if debug:
            _traceback()
        if isinstance(exc, GauditError):
            say_error(from_config(str(exc), run.sources))
            raise typer.Exit(EXIT_USAGE) from None
        # a bug, not the user's fault: say so, briefly
        _say(f"gaudit: internal error: {type(exc).__name__}: {shown(exc)}\n"
             "This is a bug in gaudit; rerun with --debug for the traceback and report it.")
        raise typer.Exit(EXIT_INTERNAL) from None


def _traceback() -> None:
    import traceback

    with closed_pipe_ok("stderr"):
        traceback.print_exc(file=sys.stderr)


@contextlib.contextmanager
def closed_pipe_ok(stream: str) -> Iterator[None]:
    """``gaudit ... | head``: a reader that stops early is not an error of ours. What is left
    to write to that stream goes nowhere; the exit code stays the gates' verdict."""
    try:
        yield
    except BrokenPipeError:
        target = getattr(sys, stream)
        with contextlib.suppress(OSError, ValueError, AttributeError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, target.fileno())
            os.close(devnull)


@contextlib.contextmanager
def status(message: str, quiet: bool) -> Iterator[None]:
    """A spinner on a terminal; silent when stderr is not a terminal or with --quiet."""
    if quiet or not sys.stderr.isatty():
        yield
        return
    with _stderr_console(quiet).status(message):
        yield


def parse_reports(values: list[str] | None) -> list[tuple[Format, str]]:
    """``--report html:review.html`` -> ``(Format.HTML, "review.html")``, checked up front."""
    from .errors import UsageError

    out = []
    for value in values or ():
        fmt, sep, path = value.partition(":")
        try:
            parsed = Format(fmt.lower())
        except ValueError:
            parsed = None
        if not sep or not path or parsed is None:
            raise UsageError(
                f"--report {value!r}: expected FORMAT:PATH with FORMAT one of "
                f"{', '.join(f.value for f in Format)} (e.g. html:review.html)."
            )
        out.append((parsed, path))
    return out


def destinations(fmt: Format, output: str | None,
                 reports: list[tuple[Format, str]]) -> list[tuple[str, str]]:
    """Every report of the run as ``(how it was named, path)``; the main one first."""
    main = (f"--output {output}", output) if output not in (None, "-") else (
        f"the {fmt.value} report (standard output)", "-")
    return [main, *((f"--report {f.value}:{path}", path) for f, path in reports)]


def check_outputs(fmt: Format, output: str | None, reports: list[tuple[Format, str]],
                  inputs: list[tuple[str, Any]]) -> str | None:
    """Before any work: no report onto an input, another report, or a folder (exit 2).

    Returns why ``$GITHUB_STEP_SUMMARY`` must not be appended to (it is an input, a report
    of this run or standard output), or None: the summary is then left out with a warning,
    and the gates still decide the exit code."""
    from .report import check_destinations

    return check_destinations(destinations(fmt, output, reports),
                              [(role, path) for role, path in inputs if isinstance(path, str)],
                              os.environ.get("GITHUB_STEP_SUMMARY"))


def publish(result: Any, fmt: Format, output: str | None, reports: list[tuple[Format, str]],
            quiet: bool, summary_conflict: str | None = None) -> dict[Format, str]:
    """Write the main report, every extra ``--report``, and the CI platform's summary;
    return the reports rendered to text, by format (the tracker reuses them).

    The main report goes to stdout (or ``--output``); summaries and "Wrote ..." lines go to
    stderr so that ``--format json`` can be piped. A reader that closes either stream early
    (``| head``) stops nothing else: every file is still written, the exit code is the
    gates' verdict.
    """
    from .report import render, write_report
    from .report.common import verdict

    def note(message: str) -> None:
        if not quiet:
            _say(shown(message))  # one line, paths escaped

    rendered: dict[Format, str] = {}

    def text(f: Format) -> str:
        if f not in rendered:
            rendered[f] = render(result, f)
        return rendered[f]

    with closed_pipe_ok("stdout"):
        if fmt is Format.TEXT and output in (None, "-"):
            from rich.console import Console

            from .report.text import print_report

            class PipeConsole(Console):
                def on_broken_pipe(self) -> None:  # rich's own exits 1: "gate breached"
                    self.quiet = True
                    raise BrokenPipeError

            print_report(result, PipeConsole(highlight=False))
            sys.stdout.flush()
        else:
            write_report(text(fmt), output or "-")
    if output not in (None, "-"):
        note(verdict(result))
        note(f"Wrote {fmt.value} report to {output}")
    for extra_fmt, path in reports:
        with closed_pipe_ok("stdout"):
            write_report(text(extra_fmt), path, f"--report {extra_fmt.value}:{path}")
        if path != "-":
            note(f"Wrote {extra_fmt.value} report to {path}")
    github(result, summary_conflict)


def github(result: Any, summary_conflict: str | None = None) -> None:
    """On GitHub Actions: the Markdown report into the job summary, one annotation per gate.

    ``summary_conflict`` (from :func:`check_outputs`) says why the summary file must not be
    written to: then it is left alone, with a warning."""
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary and summary_conflict:
        _say(f"gaudit: warning: GITHUB_STEP_SUMMARY {shown(summary)} not written: "
             f"{shown(summary_conflict)}.")
    elif summary:
        from .report import render

        try:
            with open(summary, "a", encoding="utf-8") as fh:
                fh.write(render(result, Format.MARKDOWN) + "\n")
        except OSError as exc:
            _say(f"gaudit: warning: cannot append to GITHUB_STEP_SUMMARY ({exc})")
    if os.environ.get("GITHUB_ACTIONS") == "true":
        from .report.common import gate_value, gate_where

        for g in result.gates:
            kind = "error" if not g.passed else "notice"
            state = "breached" if not g.passed else "held" if g.status == "pass" else "n/a"
            # gate_value: the digits that show the breach; gate_where: data, escaped
            message = f"{g.condition}: value {gate_value(g)}{gate_where(g)}"
            _say(f"::{kind} title=gaudit gate {g.name} {state}::{annotation_escape(message)}",
                 command=True)


def parse_conf(values: list[str] | None) -> dict[str, str]:
    """``--spark-conf key=value`` pairs."""
    from .errors import UsageError

    out = {}
    for item in values or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--spark-conf {item!r}: expected KEY=VALUE.")
        out[key.strip()] = value
    return out


def settings(ctx: typer.Context, command: str,
             config: str | None) -> tuple[dict[str, Any], dict[str, str], str | None]:
    """Command-line parameters with config-file values filled in where no flag was given.

    Returns the parameters (by Python name), per config key used the file it came from, and
    the config file read (if any).
    """
    from .config import find_config

    cfg = find_config(config, command)
    params = dict(ctx.params)
    sources: dict[str, str] = {}
    for key, value in cfg.values.items():
        name = key.replace("-", "_")
        given = ctx.get_parameter_source(name)
        if given is None or given.name == "DEFAULT":
            params[name] = value
            sources[key] = cfg.source
    return params, sources, None if cfg.path is None else str(cfg.path)


def specs_from(params: dict[str, Any], keys: tuple[str, ...], sources: dict[str, str]) -> list:
    """Gate specs for every gate option that has a value, with where it came from."""
    from .gates import GateSpec

    specs = []
    for key in keys:
        value = params.get(key.replace("-", "_"))
        if value is None or value is False:
            continue
        threshold = 1.0 if value is True else value
        specs.append(GateSpec(key, threshold, sources.get(key, "command line")))
    return specs


def warn(result: Any) -> None:
    """Each warning of the result as one ``gaudit: warning:`` line on stderr (even with
    --quiet: a warning is not a progress line), and as an annotation on GitHub Actions."""
    for w in getattr(result, "warnings", ()):
        _say(f"gaudit: warning: {shown(w)}")
        if os.environ.get("GITHUB_ACTIONS") == "true":
            _say(f"::warning title=gaudit::{annotation_escape(shown(w))}", command=True)


def track(result: Any, tracking: Any, quiet: bool, debug: bool,
          rendered: dict[Format, str]) -> None:
    """Record the result in the tracker ``--log-to`` names (after the reports are written:
    a tracker that cannot be reached leaves them in place and exits 2); ``rendered``: the
    reports :func:`publish` rendered already."""
    if tracking.log_to != "mlflow":
        return
    from .trackers import log_to_mlflow

    logged = log_to_mlflow(result, tracking, debug=debug, rendered=rendered)
    if not quiet:
        run = f"new run {logged.run_id}" if logged.created else f"run {logged.run_id}"
        _say(shown(f"Logged the audit to MLflow: {run} of experiment {logged.experiment_id} "
                   f"at {logged.uri}"))


def _exit_for(result: Any) -> None:
    raise typer.Exit(EXIT_OK if result.passed else EXIT_BREACHED)


FormatOpt = Annotated[
    Format, typer.Option("--format", "-f", help="Report format.", case_sensitive=False)
]
OutputOpt = Annotated[
    str | None, typer.Option("--output", "-o", help="Write the report to PATH ('-': stdout).")
]
SparkRemoteOpt = Annotated[
    str | None, typer.Option("--spark-remote", help="Spark Connect URL, e.g. sc://host:15002 "
                             "[default: $SPARK_REMOTE, else a local session].",
                             rich_help_panel="Engine")
]
SparkConfOpt = Annotated[
    list[str] | None, typer.Option("--spark-conf", help="A Spark setting KEY=VALUE "
                                   "(repeatable).", rich_help_panel="Engine")
]
VerboseOpt = Annotated[
    bool, typer.Option("--verbose", help="Show the engine's own warnings on stderr.")
]
MemoryLimitOpt = Annotated[
    str | None, typer.Option("--memory-limit", help="Engine memory limit, e.g. '4GB' "
                             "(DuckDB spills to disk beyond it; compat streams the gallery "
                             "in shards when the embeddings would not fit) [default: 80% of "
                             "RAM].", rich_help_panel="Engine")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or summary lines.")]
ReportOpt = Annotated[
    list[str] | None,
    typer.Option("--report", help="Also write FORMAT:PATH, e.g. html:review.html (repeatable).")
]
ConfigOpt = Annotated[
    str | None, typer.Option("--config", help="Options from this gaudit.toml or pyproject.toml "
                             "[default: the nearest one, searching upward].")
]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks of errors.")]
LogToOpt = Annotated[
    Tracker | None,
    typer.Option("--log-to", help="Record the audit in MLflow: metrics, params, tags, the JSON "
                 "and HTML reports; in $MLFLOW_RUN_ID's run, else a new run, at "
                 "$MLFLOW_TRACKING_URI ('none': nothing, whatever the config says).",
                 case_sensitive=False, rich_help_panel="Tracking")
]
MlflowExperimentOpt = Annotated[
    str | None,
    typer.Option("--mlflow-experiment", metavar="NAME", help="Experiment of the new run when "
                 "MLFLOW_RUN_ID is not set [default: gaudit].", rich_help_panel="Tracking")
]
IdOpt = Annotated[str | None, typer.Option("--id-col", help="Id column [default: id].")]
LabelOpt = Annotated[
    str | None, typer.Option("--label-col", help="Ground-truth column [default: label].")
]


def _gate(name: str, help_: str) -> Any:
    return typer.Option(f"--{name}", help=help_, rich_help_panel="Gates")


MaxNfr = Annotated[float | None, _gate("max-nfr", "Max negative flip rate (0..1).")]
MaxNfi = Annotated[float | None, _gate("max-nfi", "Max negative flip impact (0..1).")]
MaxErrorDelta = Annotated[
    float | None, _gate("max-error-delta", "Max new - old error rate (-1..1).")
]
MinBtc = Annotated[float | None, _gate("min-btc", "Min backward trust compatibility (0..1).")]
MaxChurn = Annotated[float | None, _gate("max-churn", "Max churn rate (0..1).")]
MaxClassNfr = Annotated[
    float | None, _gate("max-class-nfr", "Max negative flip rate of any class (0..1).")
]
MaxSliceNfr = Annotated[
    float | None, _gate("max-slice-nfr", "Max negative flip rate of any slice value (0..1).")
]
MaxMaeDelta = Annotated[
    float | None, _gate("max-mae-delta", "Regression: max new - old MAE (may be negative).")
]
MaxRmseDelta = Annotated[
    float | None, _gate("max-rmse-delta", "Regression: max new - old RMSE (may be negative).")
]
MaxAucDrop = Annotated[
    float | None, _gate("max-auc-drop", "Max old - new ROC-AUC (-1..1; needs --score-cols).")
]
MaxF1Drop = Annotated[float | None, _gate("max-f1-drop", "Max old - new macro F1 (-1..1).")]
RequireCompatible = Annotated[
    bool, typer.Option("--require-compatible", help="Fail unless new/old beats old/old.",
                       rich_help_panel="Gates")
]
MinUpdateGain = Annotated[float | None, _gate("min-update-gain", "Min update gain.")]
MaxRetrievalNfr = Annotated[
    float | None, _gate("max-retrieval-nfr", "Max share of queries that break (0..1).")
]
MinCrossTop1 = Annotated[
    float | None, _gate("min-cross-top1", "Min new/old top-1 accuracy (0..1).")
]
MaxCrossDrop = Annotated[
    float | None, _gate("max-cross-drop", "Max M(old/old) - M(new/old), M the criterion "
                        "(-1..1; negative demands an improvement).")
]


@app.command()
def flips(
    ctx: typer.Context,
    old: Annotated[str, typer.Argument(metavar="OLD", help="Old model's predictions: "
                                       "CSV, Parquet, a directory or a glob.")],
    new: Annotated[str, typer.Argument(metavar="NEW", help="New model's predictions.")],
    labels: Annotated[
        str | None, typer.Option("--labels", help="Ground truth in a separate file (id, label).")
    ] = None,
    id_col: Annotated[
        list[str] | None, typer.Option("--id-col", help="Id column [default: id]; repeat it "
                                       "for a composite id (--id-col task --id-col doc_id).")
    ] = None,
    label_col: LabelOpt = None,
    pred_col: Annotated[
        str | None, typer.Option("--pred-col", help="Prediction column [default: pred].")
    ] = None,
    score_cols: Annotated[
        str | None,
        typer.Option("--score-cols", help="Per-class score columns, a glob such as 'prob_*', "
                     "or one list column. Prediction = argmax when no prediction column."),
    ] = None,
    threshold: Annotated[
        float | None, typer.Option("--threshold", help="Binary model with one score column: "
                                   "predict 1 when score >= threshold [default: 0.5].")
    ] = None,
    slice_by: Annotated[
        list[str] | None, typer.Option("--slice-by", help="Break down by this column "
                                       "(repeatable).")
    ] = None,
    top: Annotated[int, typer.Option("--top", help="How many worst negative flips to list.")] = 10,
    confidence: Annotated[
        float, typer.Option("--confidence", help="Level of the Wilson intervals.")
    ] = 0.95,
    allow_unmatched: Annotated[
        bool, typer.Option("--allow-unmatched", help="Audit the ids present in both files "
                           "instead of stopping on unmatched ids (counts are reported).")
    ] = False,
    max_nfr: MaxNfr = None,
    max_nfi: MaxNfi = None,
    max_error_delta: MaxErrorDelta = None,
    min_btc: MinBtc = None,
    max_churn: MaxChurn = None,
    max_class_nfr: MaxClassNfr = None,
    max_slice_nfr: MaxSliceNfr = None,
    max_mae_delta: MaxMaeDelta = None,
    max_rmse_delta: MaxRmseDelta = None,
    min_score_delta: Annotated[
        float | None, _gate("min-score-delta", "Graded outcomes: min mean(new score - old "
                            "score) (may be negative).")
    ] = None,
    outcome_col: Annotated[
        str | None, typer.Option("--outcome-col", help="Audit evaluation outcomes: a pass/fail "
                                 "(boolean, 0/1) or score column; no labels or predictions "
                                 "needed. Dotted paths reach nested JSON fields.",
                                 rich_help_panel="Evaluation outcomes")
    ] = None,
    pass_threshold: Annotated[
        float | None, typer.Option("--pass-threshold", help="A graded --outcome-col passes "
                                   "when score >= T; adds the paired score delta.",
                                   rich_help_panel="Evaluation outcomes")
    ] = None,
    max_auc_drop: MaxAucDrop = None,
    max_f1_drop: MaxF1Drop = None,
    task: Annotated[
        Task, typer.Option("--task", help="auto: regression when a prediction column holds "
                           "non-integral floats.", rich_help_panel="Regression")
    ] = Task.auto,
    atol: Annotated[
        float | None, typer.Option("--atol", help="Regression: right when |pred - y| <= "
                                   "atol + rtol * |y|.", rich_help_panel="Regression")
    ] = None,
    rtol: Annotated[
        float | None, typer.Option("--rtol", help="Regression: relative tolerance.",
                                   rich_help_panel="Regression")
    ] = None,
    what_if: Annotated[
        bool, typer.Option("--what-if", help="Also show the mitigation without retraining: "
                           "the flips of the blended scores (1 - alpha) * new + alpha * old "
                           "for alpha from 0 to 1 (needs --score-cols in both files).",
                           rich_help_panel="What-if")
    ] = False,
    what_if_steps: Annotated[
        int | None, typer.Option("--what-if-steps", help="How many alphas: 0, 1/(K-1), ..., "
                                 "1 (2 to 1001) [default: 21].", rich_help_panel="What-if")
    ] = None,
    fmt: FormatOpt = Format.TEXT,
    output: OutputOpt = None,
    report: ReportOpt = None,
    config: ConfigOpt = None,
    memory_limit: MemoryLimitOpt = None,
    engine: Annotated[
        EngineName, typer.Option("--engine", help="Where reading, joining and counting run.",
                                 rich_help_panel="Engine")
    ] = EngineName.duckdb,
    spark_remote: SparkRemoteOpt = None,
    spark_conf: SparkConfOpt = None,
    verbose: VerboseOpt = False,
    log_to: LogToOpt = None,
    mlflow_experiment: MlflowExperimentOpt = None,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Negative flips, error deltas and their breakdowns for a model update."""
    with error_boundary(debug) as run:
        from .config import GATE_KEYS_FLIPS
        from .flips import audit_flips
        from .trackers import tracking_options

        p, sources, cfg_path = settings(ctx, "flips", config)
        run.sources = sources
        reports = parse_reports(report)
        tracking = tracking_options(p["log_to"], p["mlflow_experiment"],
                                    experiment_in_config="mlflow-experiment" in sources)
        summary = check_outputs(fmt, output, reports, [("OLD", old), ("NEW", new),
                                                       ("LABELS", p["labels"]),
                                                       ("config", cfg_path)])
        with status("Reading, joining and counting...", quiet):
            result = audit_flips(
                old, new, labels=p["labels"], id_col=p["id_col"] or None,
                label_col=p["label_col"], outcome_col=p["outcome_col"],
                pass_threshold=p["pass_threshold"],
                pred_col=p["pred_col"], score_cols=p["score_cols"], threshold=p["threshold"],
                slice_by=tuple(p["slice_by"] or ()), top=p["top"], confidence=p["confidence"],
                allow_unmatched=p["allow_unmatched"],
                gates=specs_from(p, GATE_KEYS_FLIPS, sources), memory_limit=p["memory_limit"],
                task=str(getattr(p["task"], "value", p["task"])), atol=p["atol"], rtol=p["rtol"],
                engine=str(getattr(p["engine"], "value", p["engine"])),
                spark_remote=p["spark_remote"], spark_conf=parse_conf(p["spark_conf"]),
                verbose=verbose, what_if=p["what_if"], what_if_steps=p["what_if_steps"],
            )
        warn(result)
        rendered = publish(result, fmt, output, reports, quiet, summary)
        track(result, tracking, quiet, debug, rendered)
    _exit_for(result)


@contextlib.contextmanager
def progress_bar(quiet: bool) -> Iterator[Any]:
    """A rich progress bar for the four retrieval cases on a terminal; else no callback."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), console=_stderr_console(quiet),
                  transient=True) as bar:
        tasks: dict[str, Any] = {}

        def update(case: str, done: int, total: int) -> None:
            if case not in tasks:
                label = ("streaming the gallery in shards (all cases)"
                         if case == "gallery shards" else f"searching {case}")
                tasks[case] = bar.add_task(label, total=total)
            bar.update(tasks[case], completed=done)

        yield update


@app.command()
def compat(
    ctx: typer.Context,
    old: Annotated[str, typer.Argument(metavar="OLD", help="Old model's embeddings: CSV, "
                                       "Parquet, a directory or a glob.")],
    new: Annotated[str, typer.Argument(metavar="NEW", help="New model's embeddings.")],
    later: Annotated[
        list[str] | None, typer.Argument(metavar="[LATER]...", show_default=False,
                                         help="Later versions, oldest first: with three or "
                                         "more files every later version is checked against "
                                         "every earlier gallery (n x n searches).")
    ] = None,
    id_col: IdOpt = None,
    label_col: Annotated[
        str | None, typer.Option("--label-col", help="Identity label column [default: label].")
    ] = None,
    embedding_col: Annotated[
        str | None, typer.Option("--embedding-col", help="List column with the embedding, or "
                                 "the prefix of NAME_0 .. NAME_{d-1} [default: embedding, emb].")
    ] = None,
    split_col: Annotated[
        str | None, typer.Option("--split-col", help="Column with 'query' / 'gallery' "
                                 "[default: split; without it, leave-one-out].")
    ] = None,
    metric: Annotated[
        Metric, typer.Option("--metric", help="Similarity: cosine, inner product or L2.")
    ] = Metric.cosine,
    criterion: Annotated[
        Criterion | None, typer.Option("--criterion", help="Metric of the compatibility criterion "
                                "and the update gain.")
    ] = None,
    top: Annotated[int, typer.Option("--top", help="How many breaking queries to list.")] = 10,
    confidence: Annotated[
        float, typer.Option("--confidence", help="Level of the Wilson intervals of the "
                            "top-k accuracies and of the paired test of the criterion.")
    ] = 0.95,
    allow_unmatched: Annotated[
        bool, typer.Option("--allow-unmatched", help="Audit the ids present in both files "
                           "(with --qrels: drop judgments naming other ids; counted).")
    ] = False,
    qrels: Annotated[
        str | None, typer.Option("--qrels", help="Relevance judgments (BEIR TSV 'query-id "
                                 "corpus-id score' or TREC 'qid 0 docid rel') instead of "
                                 "identity labels; needs the split column.")
    ] = None,
    require_compatible: RequireCompatible = False,
    min_update_gain: MinUpdateGain = None,
    max_retrieval_nfr: MaxRetrievalNfr = None,
    min_cross_top1: MinCrossTop1 = None,
    max_cross_drop: MaxCrossDrop = None,
    fmt: FormatOpt = Format.TEXT,
    output: OutputOpt = None,
    report: ReportOpt = None,
    config: ConfigOpt = None,
    log_to: LogToOpt = None,
    mlflow_experiment: MlflowExperimentOpt = None,
    memory_limit: MemoryLimitOpt = None,
    sample_queries: Annotated[
        int | None, typer.Option("--sample-queries", metavar="N", help="Audit a uniform "
                                 "sample of N queries (all when there are no more).")
    ] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Seed of --sample-queries [default: 0].")
    ] = None,
    engine: Annotated[
        EngineName, typer.Option("--engine", help="Where reading, joining and the search "
                                 "run (spark: the gallery stays on the cluster).",
                                 rich_help_panel="Engine")
    ] = EngineName.duckdb,
    spark_remote: SparkRemoteOpt = None,
    spark_conf: SparkConfOpt = None,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Cross-model retrieval compatibility of an embedding update (no-backfill check)."""
    with error_boundary(debug) as run:
        from .compat import audit_compat
        from .config import GATE_KEYS_COMPAT
        from .trackers import tracking_options

        p, sources, cfg_path = settings(ctx, "compat", config)
        run.sources = sources
        reports = parse_reports(report)
        tracking = tracking_options(p["log_to"], p["mlflow_experiment"],
                                    experiment_in_config="mlflow-experiment" in sources)
        files = [old, new, *(later or ())]
        roles = ["OLD", "NEW"] if len(files) == 2 else [f"V{k + 1}" for k in range(len(files))]
        summary = check_outputs(fmt, output, reports,
                                [*zip(roles, files, strict=True), ("QRELS", p["qrels"]),
                                 ("config", cfg_path)])
        with progress_bar(quiet) as update:
            result = audit_compat(
                *files, id_col=p["id_col"], label_col=p["label_col"],
                embedding_col=p["embedding_col"], split_col=p["split_col"],
                metric=str(getattr(p["metric"], "value", p["metric"])),
                criterion=(None if p["criterion"] is None else
                           str(getattr(p["criterion"], "value", p["criterion"]))),
                top=p["top"], confidence=p["confidence"],
                allow_unmatched=p["allow_unmatched"], qrels=p["qrels"],
                gates=specs_from(p, GATE_KEYS_COMPAT, sources), progress=update,
                memory_limit=p["memory_limit"], sample_queries=p["sample_queries"],
                seed=p["seed"], engine=str(getattr(p["engine"], "value", p["engine"])),
                spark_remote=p["spark_remote"], spark_conf=parse_conf(p["spark_conf"]),
                verbose=verbose,
            )
        rendered = publish(result, fmt, output, reports, quiet, summary)
        track(result, tracking, quiet, debug, rendered)
    _exit_for(result)


@app.command()
def render(
    ctx: typer.Context,
    result_file: Annotated[str, typer.Argument(metavar="RESULT_JSON",
                                               help="A result saved with --format json.")],
    fmt: FormatOpt = Format.TEXT,
    output: OutputOpt = None,
    report: ReportOpt = None,
    max_nfr: MaxNfr = None,
    max_nfi: MaxNfi = None,
    max_error_delta: MaxErrorDelta = None,
    min_btc: MinBtc = None,
    max_churn: MaxChurn = None,
    max_class_nfr: MaxClassNfr = None,
    max_slice_nfr: MaxSliceNfr = None,
    max_mae_delta: MaxMaeDelta = None,
    max_rmse_delta: MaxRmseDelta = None,
    max_auc_drop: MaxAucDrop = None,
    max_f1_drop: MaxF1Drop = None,
    require_compatible: RequireCompatible = False,
    min_update_gain: MinUpdateGain = None,
    max_retrieval_nfr: MaxRetrievalNfr = None,
    min_cross_top1: MinCrossTop1 = None,
    max_cross_drop: MaxCrossDrop = None,
    log_to: LogToOpt = None,
    mlflow_experiment: MlflowExperimentOpt = None,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Render a saved JSON result in any format; gates given here replace the saved ones."""
    with error_boundary(debug):
        from .config import GATE_KEYS_COMPAT, GATE_KEYS_FLIPS
        from .rerender import load_result, regate
        from .trackers import tracking_options

        reports = parse_reports(report)
        tracking = tracking_options(log_to, mlflow_experiment)
        summary = check_outputs(fmt, output, reports, [("RESULT_JSON", result_file)])
        result = load_result(result_file)
        specs = specs_from(ctx.params, GATE_KEYS_FLIPS + GATE_KEYS_COMPAT, {})
        if specs:
            result = regate(result, specs)
        warn(result)
        try:
            rendered = publish(result, fmt, output, reports, quiet, summary)
            track(result, tracking, quiet, debug, rendered)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            # the document passed the schema, yet a renderer cannot use one of its values
            from .errors import InputError

            raise InputError(f"{result_file}: cannot be rendered ({type(exc).__name__}: "
                             f"{exc}). Was it edited? Save the result again with --format "
                             "json.") from exc
    _exit_for(result)


def main() -> None:
    """Console-script entry point."""
    from . import interrupt

    try:
        interrupt.install()
        app()
    except KeyboardInterrupt:  # a signal between the command's end and the exit
        if interrupt.announce():
            _say(interrupt.message())
        sys.exit(interrupt.exit_code())
    finally:
        interrupt.uninstall()  # the exit code is decided: a late signal changes nothing


if __name__ == "__main__":  # pragma: no cover
    main()
