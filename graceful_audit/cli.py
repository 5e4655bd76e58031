"""The ``gaudit`` command line: parse, call the library, render, exit.

Exit codes: 0 every gate held (or none set), 1 a gate was breached, 2 the input or the
command line was wrong. Heavy modules (pandas, DuckDB, scipy, faiss) are imported inside
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

from . import __version__
from .errors import GauditError
from .report import Format

app = typer.Typer(
    name="gaudit",
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


@contextlib.contextmanager
def error_boundary(debug: bool = False) -> Iterator[None]:
    """Turn expected failures into one message and exit code 2; never a traceback.

    ``typer.Exit`` passes through (it is a RuntimeError, so it is re-raised first).
    """
    try:
        yield
    except typer.Exit:
        raise
    except GauditError as exc:
        if debug:
            raise
        typer.echo(f"gaudit: error: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    except KeyboardInterrupt:
        typer.echo("gaudit: interrupted", err=True)
        raise typer.Exit(130) from None
    except Exception as exc:  # a bug, not the user's fault: say so, briefly
        if debug:
            raise
        typer.echo(
            f"gaudit: internal error: {type(exc).__name__}: {exc}\n"
            "This is a bug in gaudit; rerun with --debug for the traceback and report it.",
            err=True,
        )
        raise typer.Exit(EXIT_INTERNAL) from None


@contextlib.contextmanager
def status(message: str, quiet: bool) -> Iterator[None]:
    """A spinner on a terminal; silent when stderr is not a terminal or with --quiet."""
    if quiet or not sys.stderr.isatty():
        yield
        return
    with _stderr_console(quiet).status(message):
        yield


def emit(result: Any, fmt: Format, output: str | None, quiet: bool) -> None:
    """Write the report where it belongs and a one-line summary to stderr for files."""
    from .report import render, write_report

    if fmt is Format.TEXT and output in (None, "-"):
        from rich.console import Console

        from .report.text import print_report

        print_report(result, Console(highlight=False))
        return
    text = render(result, fmt)
    write_report(text, output or "-")
    if output not in (None, "-") and not quiet:
        from .report.common import verdict

        console = _stderr_console(quiet)
        console.print(verdict(result), markup=False, soft_wrap=True)
        console.print(f"Wrote {fmt.value} report to {output}", markup=False, soft_wrap=True)


def _exit_for(result: Any) -> None:
    raise typer.Exit(EXIT_OK if result.passed else EXIT_BREACHED)


FormatOpt = Annotated[
    Format, typer.Option("--format", "-f", help="Report format.", case_sensitive=False)
]
OutputOpt = Annotated[
    str | None, typer.Option("--output", "-o", help="Write the report to PATH ('-': stdout).")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or summary lines.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks of errors.")]
IdOpt = Annotated[str | None, typer.Option("--id-col", help="Id column [default: id].")]
LabelOpt = Annotated[
    str | None, typer.Option("--label-col", help="Ground-truth column [default: label].")
]


def _gate(name: str, help_: str) -> Any:
    return typer.Option(f"--{name}", help=help_, rich_help_panel="Gates")


@app.command()
def flips(
    old: Annotated[str, typer.Argument(metavar="OLD", help="Old model's predictions: "
                                       "CSV, Parquet, a directory or a glob.")],
    new: Annotated[str, typer.Argument(metavar="NEW", help="New model's predictions.")],
    labels: Annotated[
        str | None, typer.Option("--labels", help="Ground truth in a separate file (id, label).")
    ] = None,
    id_col: IdOpt = None,
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
        float, typer.Option("--threshold", help="Binary model with one score column: "
                            "predict 1 when score >= threshold.")
    ] = 0.5,
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
    max_nfr: Annotated[float | None, _gate("max-nfr", "Max negative flip rate (0..1).")] = None,
    max_nfi: Annotated[float | None, _gate("max-nfi", "Max negative flip impact (0..1).")] = None,
    max_error_delta: Annotated[
        float | None, _gate("max-error-delta", "Max new - old error rate (-1..1).")
    ] = None,
    min_btc: Annotated[
        float | None, _gate("min-btc", "Min backward trust compatibility (0..1).")
    ] = None,
    max_churn: Annotated[float | None, _gate("max-churn", "Max churn rate (0..1).")] = None,
    max_class_nfr: Annotated[
        float | None, _gate("max-class-nfr", "Max negative flip rate of any class (0..1).")
    ] = None,
    max_slice_nfr: Annotated[
        float | None, _gate("max-slice-nfr", "Max negative flip rate of any slice value.")
    ] = None,
    fmt: FormatOpt = Format.TEXT,
    output: OutputOpt = None,
    memory_limit: Annotated[
        str | None, typer.Option("--memory-limit", help="Engine memory limit, e.g. '4GB'.")
    ] = None,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Negative flips, error deltas and their breakdowns for a classifier update."""
    gates = {
        "max-nfr": max_nfr, "max-nfi": max_nfi, "max-error-delta": max_error_delta,
        "min-btc": min_btc, "max-churn": max_churn, "max-class-nfr": max_class_nfr,
        "max-slice-nfr": max_slice_nfr,
    }
    with error_boundary(debug):
        from .flips import audit_flips

        with status("Reading, joining and counting...", quiet):
            result = audit_flips(
                old, new, labels=labels, id_col=id_col, label_col=label_col,
                pred_col=pred_col, score_cols=score_cols, threshold=threshold,
                slice_by=tuple(slice_by or ()), top=top, confidence=confidence,
                allow_unmatched=allow_unmatched,
                gates={k: v for k, v in gates.items() if v is not None},
                memory_limit=memory_limit,
            )
        emit(result, fmt, output, quiet)
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
                tasks[case] = bar.add_task(f"searching {case}", total=total)
            bar.update(tasks[case], completed=done)

        yield update


class Metric(str, Enum):
    cosine = "cosine"
    ip = "ip"
    l2 = "l2"


class Criterion(str, Enum):
    top1 = "top1"
    map = "map"


@app.command()
def compat(
    old: Annotated[str, typer.Argument(metavar="OLD", help="Old model's embeddings: CSV, "
                                       "Parquet, a directory or a glob.")],
    new: Annotated[str, typer.Argument(metavar="NEW", help="New model's embeddings.")],
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
        Criterion, typer.Option("--criterion", help="Metric of the compatibility criterion "
                                "and the update gain.")
    ] = Criterion.top1,
    top: Annotated[int, typer.Option("--top", help="How many breaking queries to list.")] = 10,
    allow_unmatched: Annotated[
        bool, typer.Option("--allow-unmatched", help="Audit the ids present in both files.")
    ] = False,
    require_compatible: Annotated[
        bool, typer.Option("--require-compatible", help="Fail unless new/old beats old/old.",
                           rich_help_panel="Gates")
    ] = False,
    min_update_gain: Annotated[
        float | None, _gate("min-update-gain", "Min update gain.")
    ] = None,
    max_retrieval_nfr: Annotated[
        float | None, _gate("max-retrieval-nfr", "Max share of queries that break (0..1).")
    ] = None,
    min_cross_top1: Annotated[
        float | None, _gate("min-cross-top1", "Min new/old top-1 accuracy (0..1).")
    ] = None,
    fmt: FormatOpt = Format.TEXT,
    output: OutputOpt = None,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Cross-model retrieval compatibility of an embedding update (no-backfill check)."""
    gates = {"require-compatible": 1.0 if require_compatible else None,
             "min-update-gain": min_update_gain, "max-retrieval-nfr": max_retrieval_nfr,
             "min-cross-top1": min_cross_top1}
    with error_boundary(debug):
        from .compat import audit_compat

        with progress_bar(quiet) as update:
            result = audit_compat(
                old, new, id_col=id_col, label_col=label_col, embedding_col=embedding_col,
                split_col=split_col, metric=metric.value, criterion=criterion.value, top=top,
                allow_unmatched=allow_unmatched,
                gates={k: v for k, v in gates.items() if v is not None}, progress=update,
            )
        emit(result, fmt, output, quiet)
    _exit_for(result)


def main() -> None:
    """Console-script entry point."""
    os.environ.setdefault("PYTHONIOENCODING", "utf-8")
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
