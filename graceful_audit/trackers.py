"""Recording an audit in an experiment tracker: ``--log-to mlflow`` (DESIGN.md, "Experiment
trackers").

Everything logged is read from the result's JSON document (``result.to_dict()``), so the
tracker holds exactly the numbers of the JSON report:

- metrics ``gaudit.<name>``: every number of the headline metrics (flips: ``metrics``;
  compat: the top-level numbers, ``compatible`` as 1/0, and per case ``gaudit.<case>.<name>``
  with ``new/old`` written ``new_old``); ``gaudit.gate.<name>``: each gate's value. Nulls
  are not logged (MLflow has no null metric).
- params ``gaudit.<kind>.<name>``: the inputs (paths), the options and each gate's threshold
  (``gaudit.<kind>.gate.<name>``). The kind in the key lets a flips and a compat audit log
  into one training run: MLflow params cannot change once logged.
- tags ``gaudit.kind``, ``gaudit.passed``, ``gaudit.version`` and ``gaudit.<kind>.passed``.
  When audits of both kinds are logged into one run, ``gaudit.kind`` lists both
  (``compat,flips``) and ``gaudit.passed`` is ``true`` only when every one passed.
- artifacts ``gaudit/<kind>.json`` and ``gaudit/<kind>.html``.

The run: ``$MLFLOW_RUN_ID`` when set (the training pipeline's run), else a new run in
experiment ``--mlflow-experiment`` (else ``$MLFLOW_EXPERIMENT_NAME``, else
``$MLFLOW_EXPERIMENT_ID``, else ``gaudit``), at ``$MLFLOW_TRACKING_URI`` (MLflow's
own default otherwise). MLflow is imported here only, when logging was asked for; its
messages (and its "View run" lines on standard output) never reach gaudit's output.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import sys
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import GauditError, InputError, UsageError

TRACKERS = ("mlflow", "none")
DEFAULT_EXPERIMENT = "gaudit"
INSTALL_HINT = "pip install 'graceful-audit[mlflow]'"

#: MLflow's HTTP client retries a failed request 7 times with exponential backoff and waits
#: 120 s for an answer: minutes before a dead server is reported. Used for the call only,
#: unless the user set the variable.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}

#: MLflow's limits on keys and param values (mlflow.utils.validation).
MAX_KEY_LENGTH, MAX_PARAM_LENGTH = 250, 6000
_TRUNCATED = " ... (truncated)"


@dataclass(frozen=True)
class Tracking:
    """Where to record the audit: ``log_to`` is ``"mlflow"`` or None (nothing is logged);
    ``experiment`` the ``--mlflow-experiment`` given (None: the default)."""

    log_to: str | None = None
    experiment: str | None = None


def tracking_options(log_to: Any, experiment: str | None, *,
                     experiment_in_config: bool = False) -> Tracking:
    """Check ``--log-to`` and ``--mlflow-experiment`` (flags or config values) before any
    work: an unknown tracker, an experiment for nothing, MLflow not installed: UsageError.

    ``--log-to none`` logs nothing whatever the config file says (an experiment named there
    included: ``experiment_in_config``)."""
    name = getattr(log_to, "value", log_to)
    if isinstance(name, str) and name.lower() in TRACKERS:  # as the flag: any case
        name = name.lower()
    if name is not None and name not in TRACKERS:
        raise UsageError(f"--log-to {name!r}: not a tracker gaudit can log to; use "
                         f"{' or '.join(TRACKERS)}.")
    if name == "none":
        if experiment_in_config:
            return Tracking()
        name = None
    if experiment is not None:
        if name != "mlflow":
            raise UsageError(f"--mlflow-experiment {experiment!r}: nothing is logged to "
                             "MLflow without --log-to mlflow; add --log-to mlflow, or "
                             "remove the experiment.")
        if not experiment.strip():
            raise UsageError("--mlflow-experiment: the name is empty; give an experiment "
                             f"name (default: {DEFAULT_EXPERIMENT}).")
    if name == "mlflow" and not mlflow_installed():
        raise UsageError(f"--log-to mlflow: MLflow is not installed; install it with "
                         f"{INSTALL_HINT}.")
    return Tracking(name, experiment)


def mlflow_installed() -> bool:
    """Whether ``import mlflow`` can find the package (without importing it)."""
    import importlib.util

    try:
        return importlib.util.find_spec("mlflow") is not None
    except (ImportError, ValueError):  # a module hidden as sys.modules["mlflow"] = None
        return False


# --------------------------------------------------------------------------- what is logged


@dataclass(frozen=True)
class Record:
    """What one audit writes into a run, derived from its JSON document."""

    kind: str
    passed: bool
    version: str
    metrics: dict[str, float]
    params: dict[str, str]


def _key(name: str) -> str:
    """A metric/param/tag key MLflow accepts: letters, digits, ``_ - . space``; ``/`` (as
    in ``new/old``) and anything else become ``_``."""
    return re.sub(r"[^A-Za-z0-9_.\- ]", "_", name)[:MAX_KEY_LENGTH]


def _number(value: Any) -> float | None:
    """A metric value: numbers as they are, booleans as 1/0, anything else None."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    return None


def _param(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    if len(text) > MAX_PARAM_LENGTH:
        text = text[:MAX_PARAM_LENGTH - len(_TRUNCATED)] + _TRUNCATED
    return text


def headline_metrics(doc: dict[str, Any]) -> dict[str, float]:
    """``gaudit.<name>`` for every number of the headline metrics, ``gaudit.gate.<name>`` for
    every gate value; nulls left out. ``doc`` is a result's JSON document."""
    out: dict[str, float] = {}
    if doc["kind"] == "flips":
        items = list((doc.get("metrics") or {}).items())
    else:
        items = [(k, v) for k, v in doc.items()
                 if k not in ("schema_version", "passed") and not isinstance(v, dict | list)]
        for case, values in (doc.get("cases") or {}).items():
            items += [(f"{case}.{k}", v) for k, v in values.items()
                      if not isinstance(v, bool | dict | list)]
    for name, value in items:
        number = _number(value)
        if number is not None:
            out[_key(f"gaudit.{name}")] = number
    for gate in doc.get("gates") or ():
        number = _number(gate.get("value"))
        if number is not None:
            out[_key(f"gaudit.gate.{gate['name']}")] = number
    return out


def run_params(doc: dict[str, Any]) -> dict[str, str]:
    """``gaudit.<kind>.<name>``: input paths, what the audit was configured with, each gate's
    threshold. ``doc`` is a result's JSON document."""
    kind = doc["kind"]
    inputs = doc.get("inputs") or {}
    found: dict[str, Any] = {}
    for role in ("old", "new", "labels"):
        side = inputs.get(role)
        if isinstance(side, dict) and side.get("path") is not None:
            found[role] = side["path"]
    if doc.get("versions") is not None:
        found["versions"] = doc["versions"]
    for name in ("task", "engine", "metric", "criterion"):
        if isinstance(doc.get(name), str):
            found[name] = doc[name]
    if isinstance(inputs.get("mode"), str):
        found["mode"] = inputs["mode"]
    confidence = (doc.get("intervals") or {}).get("confidence")
    if confidence is not None:
        found["confidence"] = confidence
    for name, value in (doc.get("options") or {}).items():
        if value is not None:
            found.setdefault(name, value)
    for gate in doc.get("gates") or ():
        found[f"gate.{gate['name']}"] = gate["threshold"]
    return {_key(f"gaudit.{kind}.{name}"): _param(value) for name, value in found.items()}


def record(doc: dict[str, Any]) -> Record:
    """Everything an audit logs, from its JSON document."""
    return Record(kind=str(doc["kind"]), passed=bool(doc["passed"]),
                  version=str((doc.get("tool") or {}).get("version", "")),
                  metrics=headline_metrics(doc), params=run_params(doc))


def run_tags(rec: Record, existing: dict[str, str]) -> dict[str, str]:
    """The tags to set, given the run's ``existing`` tags: another kind's audit logged into
    the same run before stays counted in ``gaudit.kind`` and ``gaudit.passed``."""
    kinds = {k for k in (existing.get("gaudit.kind") or "").split(",") if k}
    kinds.add(rec.kind)
    passed = {kind: existing.get(f"gaudit.{kind}.passed") == "true" for kind in kinds}
    passed[rec.kind] = rec.passed
    return {
        "gaudit.kind": ",".join(sorted(kinds)),
        "gaudit.passed": "true" if all(passed.values()) else "false",
        "gaudit.version": rec.version,
        f"gaudit.{rec.kind}.passed": "true" if rec.passed else "false",
    }


# --------------------------------------------------------------------------- logging


@dataclass(frozen=True)
class Logged:
    """Where the audit went."""

    run_id: str
    experiment_id: str
    uri: str
    created: bool


def redact(uri: str) -> str:
    """The tracking URI as messages show it: a password in it (``https://user:pw@host``)
    does not belong in a CI log."""
    return re.sub(r"(//)[^/@\s]*@", r"\1***@", uri)


def _reason(exc: BaseException) -> str:
    """The gist of MLflow's (often very long) error: ``Connection refused``, the HTTP error."""
    text = str(exc)
    if "MLFLOW_ALLOW_FILE_STORE" in text:  # MLflow 3 refuses ./mlruns unless told otherwise
        return ("MLflow no longer writes to a file store such as ./mlruns by default: use a "
                "database, e.g. MLFLOW_TRACKING_URI=sqlite:///mlflow.db, or set "
                "MLFLOW_ALLOW_FILE_STORE=true")
    errno = re.search(r"\[Errno -?\d+\] ([^\"'()\\]+)", text)
    if errno:
        return errno.group(1).strip()
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return first if len(first) <= 300 else first[:297] + "..."


@contextlib.contextmanager
def _http_defaults() -> Iterator[None]:
    """Short timeouts and few retries for the call (unless the user chose their own)."""
    added = [k for k in HTTP_DEFAULTS if k not in os.environ]
    for k in added:
        os.environ[k] = HTTP_DEFAULTS[k]
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


@contextlib.contextmanager
def _quiet(debug: bool) -> Iterator[None]:
    """MLflow's output (log lines, warnings, the "View run at" lines it writes to standard
    output) is kept from gaudit's streams: standard output may be a JSON report. Shown on
    stderr with ``--debug``."""
    import logging

    captured = io.StringIO()
    loggers = [logging.getLogger(n) for n in ("mlflow", "alembic", "sqlalchemy")]
    levels = [lg.level for lg in loggers]
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(captured), \
                contextlib.redirect_stderr(captured):
            warnings.simplefilter("ignore")
            if not debug:
                for lg in loggers:
                    lg.setLevel(logging.ERROR)
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
        if debug and captured.getvalue():
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.write(captured.getvalue())


def _import_mlflow() -> Any:
    try:
        import mlflow
    except Exception as exc:  # not installed, or broken: its own dependencies missing
        raise UsageError(f"--log-to mlflow: MLflow cannot be imported ({_reason(exc)}); "
                         f"install it with {INSTALL_HINT}.") from exc
    return mlflow


def log_to_mlflow(result: Any, tracking: Tracking, *, debug: bool = False,
                  rendered: Mapping[Any, str] | None = None) -> Logged:
    """Record ``result`` in MLflow (see the module's docstring). A tracker that cannot be
    reached or refuses the write is an :class:`InputError` naming its URI. ``rendered``:
    reports of ``result`` already rendered, by :class:`~graceful_audit.report.Format`
    (not rendered again).

    The run is found (or made) first, the reports rendered after: a dead server is reported
    without waiting for the HTML report's plots."""
    from .report import Format, render

    rec = record(result.to_dict())
    with _quiet(debug), _http_defaults():
        mlflow = _import_mlflow()
        uri = redact(os.environ.get("MLFLOW_TRACKING_URI", "") or "MLflow's default")
        with _tracker_errors(lambda: uri):
            uri = redact(str(mlflow.get_tracking_uri()))
            from mlflow.entities import Metric, Param, RunTag
            from mlflow.tracking import MlflowClient

            client = MlflowClient()
            run, created = _select_run(client, tracking, uri, f"gaudit-{rec.kind}")
        run_id = run.info.run_id
        try:
            _check_params(run, rec.params, run_id, uri)
            done = rendered or {}
            artifacts = {f"gaudit/{rec.kind}.{f.value}": done.get(f) or render(result, f)
                         for f in (Format.JSON, Format.HTML)}
            now = int(time.time() * 1000)
            with _tracker_errors(lambda: uri):
                client.log_batch(
                    run_id,
                    metrics=[Metric(k, v, now, 0) for k, v in rec.metrics.items()],
                    params=[Param(k, v) for k, v in rec.params.items()],
                    tags=[RunTag(k, v) for k, v in run_tags(rec, run.data.tags).items()],
                )
                for path, text in artifacts.items():
                    client.log_text(run_id, text, path)
        except Exception:  # (not on Ctrl-C: no more waiting on the server then)
            if created:  # best effort: the new run is not left "running"
                with contextlib.suppress(Exception):
                    client.set_terminated(run_id, "FAILED")
            raise
        if created:
            with _tracker_errors(lambda: uri):
                client.set_terminated(run_id, "FINISHED")
    return Logged(run_id, run.info.experiment_id, uri, created)


@contextlib.contextmanager
def _tracker_errors(uri: Any) -> Iterator[None]:
    """What MLflow raises (connection errors, HTTP errors, a store it cannot open) as one
    InputError naming the tracking URI (``uri()``); gaudit's own errors pass through."""
    try:
        yield
    except GauditError:
        raise
    except Exception as exc:
        raise InputError(
            f"--log-to mlflow: the MLflow tracking store at {uri()} cannot be reached or "
            f"refused the write ({_reason(exc)}). The reports were written; check "
            "MLFLOW_TRACKING_URI and the server, or drop --log-to mlflow."
        ) from exc


def _select_run(client: Any, tracking: Tracking, uri: str,
                run_name: str) -> tuple[Any, bool]:
    """``$MLFLOW_RUN_ID``'s run, or a new run in the experiment (created when missing)."""
    run_id = os.environ.get("MLFLOW_RUN_ID", "").strip()
    if run_id:
        try:
            run = client.get_run(run_id)
        except Exception as exc:
            if getattr(exc, "error_code", "") != "RESOURCE_DOES_NOT_EXIST":
                raise
            raise InputError(f"MLFLOW_RUN_ID {run_id!r}: no such run at {uri}; set it to the "
                             "run to log into, or unset it for a new run.") from exc
        if run.info.lifecycle_stage == "deleted":
            raise InputError(f"MLFLOW_RUN_ID {run_id!r}: the run is deleted at {uri}; restore "
                             "it, or unset MLFLOW_RUN_ID for a new run.")
        if tracking.experiment is not None:
            exp = client.get_experiment(run.info.experiment_id)
            if exp.name != tracking.experiment:
                raise UsageError(
                    f"--mlflow-experiment {tracking.experiment!r}: MLFLOW_RUN_ID {run_id!r} "
                    f"is a run of experiment {exp.name!r}, where the audit is logged; drop "
                    "--mlflow-experiment, or unset MLFLOW_RUN_ID for a new run.")
        return run, False
    name, source = tracking.experiment, "--mlflow-experiment"
    if name is None:
        name, source = _experiment_from_environment()
    if source == "MLFLOW_EXPERIMENT_ID":
        try:
            exp = client.get_experiment(name)
        except Exception as exc:
            if getattr(exc, "error_code", "") not in ("RESOURCE_DOES_NOT_EXIST",
                                                      "INVALID_PARAMETER_VALUE"):
                raise
            raise InputError(f"MLFLOW_EXPERIMENT_ID {name!r}: no such experiment at {uri}; "
                             "set it to an existing experiment's id, or unset it (and use "
                             "--mlflow-experiment NAME).") from exc
        if exp.lifecycle_stage == "deleted":
            raise InputError(f"MLFLOW_EXPERIMENT_ID {name!r}: the experiment is deleted at "
                             f"{uri}; restore it (mlflow experiments restore) or set "
                             "another one.")
        return client.create_run(exp.experiment_id, run_name=run_name), True
    exp = client.get_experiment_by_name(name)
    if exp is None:
        try:
            exp_id = client.create_experiment(name)
        except Exception as exc:  # created meanwhile by a parallel job
            if getattr(exc, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
                raise
            exp_id = client.get_experiment_by_name(name).experiment_id
    elif exp.lifecycle_stage == "deleted":
        raise InputError(f"{source} {name!r}: the experiment is deleted at {uri}; "
                         "restore it (mlflow experiments restore) or name another one.")
    else:
        exp_id = exp.experiment_id
    return client.create_run(exp_id, run_name=run_name), True


def _experiment_from_environment() -> tuple[str, str]:
    """The experiment when ``--mlflow-experiment`` is not given, as MLflow itself resolves
    it: ``$MLFLOW_EXPERIMENT_NAME``, else ``$MLFLOW_EXPERIMENT_ID``, else ``gaudit``.
    Returns the name (or id) and where it came from."""
    for var in ("MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID"):
        value = os.environ.get(var, "").strip()
        if value:
            return value, var
    return DEFAULT_EXPERIMENT, "--mlflow-experiment"


def _check_params(run: Any, params: dict[str, str], run_id: str, uri: str) -> None:
    """MLflow params cannot change once logged: name the first that would, before any write
    (a second audit of the same kind with other inputs or options into one run)."""
    for key, value in params.items():
        old = run.data.params.get(key)
        if old is not None and old != value:
            raise InputError(
                f"--log-to mlflow: run {run_id} at {uri} already has param {key} = {old!r}, "
                f"this audit's is {value!r}; MLflow params cannot change. Log into another "
                "run (unset MLFLOW_RUN_ID for a new one).")
