"""``--log-to mlflow``: against a real local MLflow tracking store (SQLite in a temporary
folder), read back through ``MlflowClient``; a refused connection and a refusing server on
127.0.0.1. Without MLflow installed these tests skip, except on CI (``CI=true``), where the
``[mlflow]`` extra must be installed (``.ci/run``)."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import shutil
import socket
import sys
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from graceful_audit import trackers
from graceful_audit.cli import app

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"
OLD, NEW = str(SAMPLE / "digits_old.csv"), str(SAMPLE / "digits_new.parquet")
EMB_OLD, EMB_NEW = str(SAMPLE / "emb_old.parquet"), str(SAMPLE / "emb_new_compatible.parquet")
runner = CliRunner()


def _need_mlflow() -> None:
    if not trackers.mlflow_installed():
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail("mlflow is not installed; on CI it must be (.ci/run installs "
                        "'.[test,spark,mlflow]')")
        pytest.skip("mlflow is not installed (pip install 'graceful-audit[mlflow]')")


@pytest.fixture
def needs_mlflow(tmp_path, monkeypatch) -> None:
    """MLflow, and a working folder of the test's own (MLflow's default store and artifact
    folder are relative to it)."""
    _need_mlflow()
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def template_db(tmp_path_factory) -> Path:
    """An initialised MLflow SQLite store, made once (its migrations take seconds); every
    test works on a copy."""
    _need_mlflow()
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow_template") / "mlflow.db"
    with trackers._quiet(False):
        MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def store(template_db, tmp_path, monkeypatch):
    """A fresh tracking store for the test: ``MLFLOW_TRACKING_URI`` set, the working folder
    (where new experiments keep their artifacts) in ``tmp_path``; returns a client."""
    from mlflow.tracking import MlflowClient

    db = tmp_path / "mlflow.db"
    shutil.copy(template_db, db)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    for var in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    return MlflowClient(f"sqlite:///{db}")


def run(*args: str):
    return runner.invoke(app, list(args))


def only_run(client, experiment: str = "gaudit"):
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    return runs[0]


def artifact_text(client, run_id: str, path: str, dst: Path) -> str:
    return Path(client.download_artifacts(run_id, path, str(dst))).read_text(encoding="utf-8")


def expected_flips_metrics(doc: dict) -> dict[str, float]:
    """Written out independently of trackers.py: the JSON's ``metrics`` and gate values."""
    out = {f"gaudit.{k}": float(v) for k, v in doc["metrics"].items() if v is not None}
    out.update({f"gaudit.gate.{g['name']}": float(g["value"]) for g in doc["gates"]
                if g["value"] is not None})
    return out


def test_flips_logs_the_json_numbers_params_tags_and_reports(store, tmp_path):
    r = run("flips", OLD, NEW, "--score-cols", "prob_*", "--slice-by", "ink",
            "--max-nfr", "0.01", "--min-btc", "0.9", "-f", "json", "--log-to", "mlflow")
    assert r.exit_code == 1, r.stderr  # the audit's verdict, unchanged by the logging
    doc = json.loads(r.stdout)  # MLflow wrote nothing onto the JSON report
    logged = only_run(store)
    assert logged.data.metrics == expected_flips_metrics(doc)
    assert logged.data.metrics["gaudit.negative_flip_rate"] == doc["metrics"][
        "negative_flip_rate"]
    assert logged.data.metrics["gaudit.gate.max-nfr"] == doc["gates"][0]["value"]
    assert logged.data.tags["gaudit.kind"] == "flips"
    assert logged.data.tags["gaudit.passed"] == "false"
    assert logged.data.tags["gaudit.flips.passed"] == "false"
    assert logged.data.tags["gaudit.version"] == doc["tool"]["version"]
    params = logged.data.params
    assert params["gaudit.flips.old"] == OLD and params["gaudit.flips.new"] == NEW
    assert params["gaudit.flips.gate.max-nfr"] == "0.01"
    assert params["gaudit.flips.gate.min-btc"] == "0.9"
    assert params["gaudit.flips.slice_by"] == '["ink"]'
    assert params["gaudit.flips.confidence"] == "0.95"
    assert logged.info.status == "FINISHED"
    names = {a.path for a in store.list_artifacts(logged.info.run_id, "gaudit")}
    assert names == {"gaudit/flips.json", "gaudit/flips.html"}
    assert artifact_text(store, logged.info.run_id, "gaudit/flips.json",
                         tmp_path / "dl") == r.stdout
    assert "<html" in artifact_text(store, logged.info.run_id, "gaudit/flips.html",
                                    tmp_path / "dl2").lower()
    assert f"Logged the audit to MLflow: new run {logged.info.run_id}" in r.stderr


def test_compat_logs_headline_numbers_and_every_case(store):
    r = run("compat", EMB_OLD, EMB_NEW, "--require-compatible", "--min-cross-top1", "0.5",
            "-f", "json", "--log-to", "mlflow", "--mlflow-experiment", "retrieval")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    logged = only_run(store, "retrieval")
    expected = {f"gaudit.{k}": float(v) for k, v in doc.items()
                if isinstance(v, int | float) and v is not None
                and k not in ("schema_version", "passed")}
    for case, values in doc["cases"].items():
        for k, v in values.items():
            if isinstance(v, int | float) and not isinstance(v, bool) and v is not None:
                expected[f"gaudit.{case.replace('/', '_')}.{k}"] = float(v)
    expected.update({f"gaudit.gate.{g['name']}": float(g["value"]) for g in doc["gates"]})
    assert logged.data.metrics == expected
    assert logged.data.metrics["gaudit.compatible"] == 1.0
    assert logged.data.metrics["gaudit.new_old.top1"] == doc["cases"]["new/old"]["top1"]
    assert logged.data.tags["gaudit.kind"] == "compat"
    assert logged.data.tags["gaudit.passed"] == "true"
    assert logged.data.params["gaudit.compat.criterion"] == "top1"
    assert logged.data.params["gaudit.compat.gate.min-cross-top1"] == "0.5"
    names = {a.path for a in store.list_artifacts(logged.info.run_id, "gaudit")}
    assert names == {"gaudit/compat.json", "gaudit/compat.html"}


def test_mlflow_run_id_is_honoured_and_two_audits_share_the_training_run(store, monkeypatch):
    exp_id = store.create_experiment("train")
    training = store.create_run(exp_id)
    run_id = training.info.run_id
    store.log_param(run_id, "lr", "0.1")
    monkeypatch.setenv("MLFLOW_RUN_ID", run_id)
    flips = run("flips", OLD, NEW, "--max-nfr", "0.01", "-f", "json", "--log-to", "mlflow",
                "--quiet")
    assert flips.exit_code == 1, flips.stderr
    assert flips.stderr == ""  # --quiet: not a line from gaudit or MLflow
    compat = run("compat", EMB_OLD, EMB_NEW, "--require-compatible", "-f", "json",
                 "--log-to", "mlflow", "--mlflow-experiment", "train")
    assert compat.exit_code == 0, compat.stderr
    assert f"run {run_id} of experiment {exp_id}" in compat.stderr
    assert store.get_experiment_by_name("gaudit") is None  # no run of its own
    logged = store.get_run(run_id)
    assert logged.info.status == "RUNNING"  # the pipeline's run: gaudit does not end it
    metrics = logged.data.metrics
    assert metrics["gaudit.negative_flip_rate"] == json.loads(flips.stdout)["metrics"][
        "negative_flip_rate"]
    assert metrics["gaudit.update_gain"] == json.loads(compat.stdout)["update_gain"]
    assert logged.data.params["lr"] == "0.1"
    assert logged.data.params["gaudit.flips.gate.max-nfr"] == "0.01"
    assert logged.data.params["gaudit.compat.gate.require-compatible"] == "1.0"
    # flips breached, compat held: the run did not pass gaudit
    assert logged.data.tags["gaudit.kind"] == "compat,flips"
    assert logged.data.tags["gaudit.passed"] == "false"
    assert logged.data.tags["gaudit.flips.passed"] == "false"
    assert logged.data.tags["gaudit.compat.passed"] == "true"
    names = {a.path for a in store.list_artifacts(run_id, "gaudit")}
    assert names == {"gaudit/flips.json", "gaudit/flips.html", "gaudit/compat.json",
                     "gaudit/compat.html"}
    # the same audit again (a retried CI job) logs the same params: fine
    again = run("flips", OLD, NEW, "--max-nfr", "0.01", "--log-to", "mlflow", "-q")
    assert again.exit_code == 1, again.stderr


def test_changing_a_param_of_the_run_is_exit_2_naming_it(store, monkeypatch, tmp_path):
    run_id = store.create_run(store.create_experiment("train")).info.run_id
    monkeypatch.setenv("MLFLOW_RUN_ID", run_id)
    assert run("flips", OLD, NEW, "--max-nfr", "0.01", "--log-to", "mlflow").exit_code == 1
    out = tmp_path / "second.json"
    r = run("flips", OLD, NEW, "--max-nfr", "0.02", "--log-to", "mlflow", "-f", "json",
            "-o", str(out))
    assert r.exit_code == 2
    assert "already has param gaudit.flips.gate.max-nfr = '0.01'" in r.stderr
    assert "'0.02'" in r.stderr and "Traceback" not in r.stderr
    assert json.loads(out.read_text())["gates"][0]["threshold"] == 0.02  # written before
    assert store.get_run(run_id).data.metrics["gaudit.gate.max-nfr"] == json.loads(
        out.read_text())["gates"][0]["value"]  # nothing of the refused audit was logged...
    assert len(store.get_metric_history(run_id, "gaudit.gate.max-nfr")) == 1  # ...at all


def test_render_logs_a_saved_result(store, tmp_path):
    saved = tmp_path / "r.json"
    assert run("flips", OLD, NEW, "-f", "json", "-o", str(saved)).exit_code == 0
    r = run("render", str(saved), "--max-nfr", "0.5", "--log-to", "mlflow", "-f", "json")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    logged = only_run(store)
    assert logged.data.metrics == expected_flips_metrics(doc)
    assert logged.data.params["gaudit.flips.gate.max-nfr"] == "0.5"
    assert logged.data.tags["gaudit.passed"] == "true"


def test_run_id_of_no_run_is_exit_2(store, monkeypatch):
    monkeypatch.setenv("MLFLOW_RUN_ID", "0123456789abcdef0123456789abcdef")
    r = run("flips", OLD, NEW, "--log-to", "mlflow", "-q")
    assert r.exit_code == 2
    assert "MLFLOW_RUN_ID '0123456789abcdef0123456789abcdef': no such run at sqlite:///" \
        in r.stderr


def test_experiment_other_than_the_run_ids_is_a_usage_error(store, monkeypatch):
    run_id = store.create_run(store.create_experiment("train")).info.run_id
    monkeypatch.setenv("MLFLOW_RUN_ID", run_id)
    r = run("flips", OLD, NEW, "--log-to", "mlflow", "--mlflow-experiment", "other", "-q")
    assert r.exit_code == 2
    assert "is a run of experiment 'train'" in r.stderr
    assert "gaudit.negative_flip_rate" not in store.get_run(run_id).data.metrics


def test_deleted_experiment_is_exit_2(store):
    store.delete_experiment(store.create_experiment("gaudit"))
    r = run("flips", OLD, NEW, "--log-to", "mlflow", "-q")
    assert r.exit_code == 2
    assert "experiment is deleted" in r.stderr


def free_port() -> int:
    """A port on 127.0.0.1 that nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_refused_connection_is_exit_2_naming_the_uri_and_keeps_the_reports(
        needs_mlflow, tmp_path, monkeypatch, fmt):
    uri = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    for var in trackers.HTTP_DEFAULTS:
        monkeypatch.delenv(var, raising=False)
    out, html = tmp_path / "r.out", tmp_path / "r.html"
    r = run("flips", OLD, NEW, "--max-nfr", "0.01", "-f", fmt, "-o", str(out),
            "--report", f"html:{html}", "--log-to", "mlflow")
    assert r.exit_code == 2  # not 1: the audit was not recorded where it was asked to be
    assert f"the MLflow tracking store at {uri} cannot be reached" in r.stderr
    assert "Connection refused" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 4  # verdict, 2 x "Wrote ...", the error
    assert out.stat().st_size > 0 and html.stat().st_size > 0
    assert not any(var in os.environ for var in trackers.HTTP_DEFAULTS)  # for the call only


class _Refusing(http.server.BaseHTTPRequestHandler):
    def _refuse(self) -> None:
        body = b'{"error_code": "PERMISSION_DENIED", "message": "no writes for you"}'
        self.send_response(403)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _refuse

    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def refusing_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_server_refusing_the_write_is_exit_2(needs_mlflow, tmp_path, monkeypatch):
    with refusing_server() as uri:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        r = run("flips", OLD, NEW, "--log-to", "mlflow", "-q")
    assert r.exit_code == 2
    assert r.stderr.startswith("gaudit: error: --log-to mlflow: the MLflow tracking store "
                               f"at {uri} cannot be reached or refused the write")
    assert r.stderr.count("\n") == 1  # one message (--quiet: nothing else)
    assert "PERMISSION_DENIED: no writes for you" in r.stderr  # the server's own reason


def test_unwritable_store_is_exit_2(needs_mlflow, tmp_path, monkeypatch):
    (tmp_path / "a_file").write_text("")
    uri = f"sqlite:///{tmp_path}/a_file/mlflow.db"  # a folder that cannot be made
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    r = run("flips", OLD, NEW, "--log-to", "mlflow", "-q")
    assert r.exit_code == 2, r.stderr
    assert f"tracking store at {uri} cannot be reached" in r.stderr


def test_file_store_refused_by_mlflow_says_what_to_do(needs_mlflow, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    r = run("flips", OLD, NEW, "--log-to", "mlflow", "-q")
    assert r.exit_code == 2
    assert "MLFLOW_TRACKING_URI=sqlite:///mlflow.db, or set MLFLOW_ALLOW_FILE_STORE=true" \
        in r.stderr


def test_password_in_the_uri_is_not_shown(needs_mlflow, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://ci:s3cret@127.0.0.1:{free_port()}")
    r = run("flips", OLD, NEW, "--log-to", "mlflow", "-q")
    assert r.exit_code == 2
    assert "s3cret" not in r.stderr and "http://***@127.0.0.1:" in r.stderr


@pytest.mark.parametrize(("args", "needle"), [
    (["--log-to", "wandb"], "'wandb' is not one of 'mlflow', 'none'"),
    (["--mlflow-experiment", "x"], "--mlflow-experiment 'x': nothing is logged to MLflow "
     "without --log-to mlflow"),
    (["--log-to", "none", "--mlflow-experiment", "x"], "without --log-to mlflow"),
    (["--log-to", "mlflow", "--mlflow-experiment", " "], "--mlflow-experiment: the name is "
     "empty"),
])
def test_tracking_usage_errors(args, needle, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for cmd in (["flips", OLD, NEW], ["compat", EMB_OLD, EMB_NEW]):
        r = run(*cmd, *args)
        assert r.exit_code == 2, r.output
        assert needle in r.stderr and "Traceback" not in r.stderr


def test_config_log_to(store, tmp_path):
    (tmp_path / "gaudit.toml").write_text('[flips]\nlog-to = "MLflow"\n'
                                          'mlflow-experiment = "from-config"\n')
    r = run("flips", OLD, NEW, "-q")
    assert r.exit_code == 0, r.stderr
    assert only_run(store, "from-config").data.tags["gaudit.kind"] == "flips"
    r = run("flips", OLD, NEW, "-q", "--log-to", "none", "--max-nfr", "0.5")
    assert r.exit_code == 0, r.stderr  # the flag wins: nothing logged
    assert len(store.search_runs([store.get_experiment_by_name("from-config")
                                  .experiment_id])) == 1
    assert store.get_experiment_by_name("gaudit") is None
    (tmp_path / "gaudit.toml").write_text('[flips]\nmlflow-experiment = "from-config"\n')
    r = run("flips", OLD, NEW, "-q")
    assert r.exit_code == 2  # the config's experiment would apply to nothing
    assert r.stderr.startswith("gaudit: error: gaudit.toml: mlflow-experiment 'from-config': "
                               "nothing is logged to MLflow without --log-to mlflow")


def test_config_unknown_tracker_names_the_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gaudit.toml").write_text('[compat]\nlog-to = "wandb"\n')
    r = run("compat", EMB_OLD, EMB_NEW)
    assert r.exit_code == 2
    assert "gaudit.toml: log-to 'wandb': not a tracker gaudit can log to" in r.stderr


def test_without_mlflow_installed_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow -> ImportError
    out = tmp_path / "r.json"
    r = run("flips", OLD, NEW, "--log-to", "mlflow", "-f", "json", "-o", str(out))
    assert r.exit_code == 2
    assert "MLflow is not installed; install it with pip install 'graceful-audit[mlflow]'" \
        in r.stderr
    assert not out.exists()  # checked before the audit: nothing ran
    r = run("render", str(SAMPLE / "nope.json"), "--log-to", "mlflow")
    assert r.exit_code == 2 and "graceful-audit[mlflow]" in r.stderr


def test_mlflow_that_cannot_be_imported_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)
    monkeypatch.setattr(trackers, "mlflow_installed", lambda: True)  # found, yet broken
    r = run("flips", OLD, NEW, "--log-to", "mlflow", "-q")
    assert r.exit_code == 2
    assert "MLflow cannot be imported" in r.stderr and "graceful-audit[mlflow]" in r.stderr


def test_mlflow_output_never_reaches_gaudits_streams(capsys):
    """MLflow writes "View run at" lines to standard output, log lines and warnings to
    stderr: none of it may land in a JSON report piped from stdout."""
    import logging
    import warnings

    with trackers._quiet(debug=False):
        sys.stdout.write("\N{RUNNER} View run at: http://x\n")
        logging.getLogger("mlflow.tracking").warning("a warning")
        warnings.warn("deprecated", FutureWarning, stacklevel=1)
        print("to stderr", file=sys.stderr)
    assert capsys.readouterr() == ("", "")
    with trackers._quiet(debug=True):
        print("shown with --debug")
    captured = capsys.readouterr()
    assert captured.out == "" and "shown with --debug" in captured.err


@pytest.mark.parametrize(("user", "expected"), [
    ({}, trackers.HTTP_DEFAULTS),
    ({"MLFLOW_HTTP_REQUEST_TIMEOUT": "300"},
     {**trackers.HTTP_DEFAULTS, "MLFLOW_HTTP_REQUEST_TIMEOUT": "300"}),
])
def test_short_http_retries_for_the_call_unless_the_user_chose(monkeypatch, user, expected):
    for var in trackers.HTTP_DEFAULTS:
        monkeypatch.delenv(var, raising=False)
    for var, value in user.items():
        monkeypatch.setenv(var, value)
    with trackers._http_defaults():
        assert {v: os.environ[v] for v in trackers.HTTP_DEFAULTS} == expected
    assert {v: os.environ[v] for v in trackers.HTTP_DEFAULTS if v in os.environ} == user


@pytest.mark.parametrize(("existing", "kind", "passed", "kinds", "all_passed"), [
    ({}, "flips", True, "flips", "true"),
    ({}, "flips", False, "flips", "false"),
    ({"gaudit.kind": "compat", "gaudit.compat.passed": "false"}, "flips", True,
     "compat,flips", "false"),
    ({"gaudit.kind": "compat", "gaudit.compat.passed": "true"}, "flips", True,
     "compat,flips", "true"),
    # the same kind again replaces its own verdict
    ({"gaudit.kind": "flips", "gaudit.flips.passed": "false"}, "flips", True, "flips", "true"),
    # a kind listed without its verdict (tag edited away) does not count as passed
    ({"gaudit.kind": "compat"}, "flips", True, "compat,flips", "false"),
])
def test_run_tags_combine_the_audits_of_one_run(existing, kind, passed, kinds, all_passed):
    rec = trackers.Record(kind, passed, "1.2.3", {}, {})
    tags = trackers.run_tags(rec, existing)
    assert tags["gaudit.kind"] == kinds and tags["gaudit.passed"] == all_passed
    assert tags[f"gaudit.{kind}.passed"] == ("true" if passed else "false")
    assert tags["gaudit.version"] == "1.2.3"


def test_keys_and_values_within_mlflows_limits():
    doc = {"kind": "flips", "passed": True, "metrics": {"a/b c:d": 0.5, "none": None},
           "inputs": {"old": {"path": "x" * 7000}, "new": {"path": "n.csv"}},
           "options": {"slice_by": ["é"], "flag": True}, "gates": []}
    assert trackers.headline_metrics(doc) == {"gaudit.a_b c_d": 0.5}
    params = trackers.run_params(doc)
    assert len(params["gaudit.flips.old"]) == trackers.MAX_PARAM_LENGTH
    assert params["gaudit.flips.old"].endswith("(truncated)")
    assert params["gaudit.flips.slice_by"] == '["é"]' and params["gaudit.flips.flag"] == "true"
    assert len(trackers._key("m" * 400)) == trackers.MAX_KEY_LENGTH


@pytest.mark.parametrize(("uri", "shown"), [
    ("http://user:pw@host:5000/x", "http://***@host:5000/x"),
    ("https://token@host", "https://***@host"),
    ("http://host:5000", "http://host:5000"),
    ("sqlite:///tmp/a@b.db", "sqlite:///tmp/a@b.db"),
    ("databricks", "databricks"),
])
def test_redact(uri, shown):
    assert trackers.redact(uri) == shown


def test_experiment_from_mlflow_environment_variables(store, monkeypatch):
    """Without --mlflow-experiment, MLflow's own variables choose the experiment (name, then
    id); the flag wins over both."""
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "from-env")
    assert run("flips", OLD, NEW, "--log-to", "mlflow", "-q").exit_code == 0
    only_run(store, "from-env")
    assert store.get_experiment_by_name("gaudit") is None

    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME")
    exp_id = store.create_experiment("by-id")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", exp_id)
    assert run("flips", OLD, NEW, "--log-to", "mlflow", "-q").exit_code == 0
    only_run(store, "by-id")

    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "from-env")
    r = run("flips", OLD, NEW, "--log-to", "mlflow", "--mlflow-experiment", "flag", "-q")
    assert r.exit_code == 0
    only_run(store, "flag")
    assert len(store.search_runs([store.get_experiment_by_name("from-env").experiment_id])) == 1


def test_unknown_or_deleted_experiment_id_is_exit_2(store, monkeypatch):
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", "987654")
    r = run("flips", OLD, NEW, "--log-to", "mlflow", "-q")
    assert r.exit_code == 2
    assert "MLFLOW_EXPERIMENT_ID '987654': no such experiment" in r.stderr
    exp_id = store.create_experiment("gone")
    store.delete_experiment(exp_id)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", exp_id)
    r = run("flips", OLD, NEW, "--log-to", "mlflow", "-q")
    assert r.exit_code == 2
    assert "the experiment is deleted" in r.stderr and "Traceback" not in r.output
