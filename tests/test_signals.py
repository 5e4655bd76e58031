"""Real signals and real pipes against a real ``python -m graceful_audit`` process (issue 13).

Ctrl-C (SIGINT) at any moment prints "gaudit: interrupted" and exits 130; SIGTERM (what a
cancelled CI job sends) prints "gaudit: terminated" and exits 143; both remove DuckDB's
private spill folder and any temporary report file. A reader that closes the pipe early
(``| head``) does not turn a held gate into exit 1.

No test waits for a time to pass: each waits for an event (the spill folder appears, the
child says it is about to rename its report, the child blocks on a FIFO) and then signals.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OLD = str(ROOT / "sample_data" / "digits_old.csv")
NEW = str(ROOT / "sample_data" / "digits_new.parquet")

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def env(tmp: Path) -> dict[str, str]:
    """The child's environment: this tree first on the path, its own TMPDIR (where DuckDB's
    spill folder goes), no CI platform, no config file from the repository."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")}
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT), e.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    e["TMPDIR"] = str(tmp)
    return e


def spawn(args: list[str], tmp: Path, *, code: str | None = None, **kw) -> subprocess.Popen:
    spill = tmp / "spill"
    spill.mkdir(exist_ok=True)
    prefix = [sys.executable, "-c", code] if code else [
        sys.executable, "-m", "graceful_audit"]
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen([*prefix, *args], env=env(spill), cwd=tmp, **kw)


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen, what: str) -> None:
    """Until ``condition()`` holds; fails (not hangs) if the child exits first."""
    deadline = time.monotonic() + 120
    while not condition():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the child ended ({proc.returncode}) before {what}: {err!r}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"never saw {what}")
        time.sleep(0.01)


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=120)
    return proc.returncode, (out or b"").decode(), (err or b"").decode()


@pytest.fixture(scope="module")
def big_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """Two CSV files large enough that reading and counting them takes a while."""
    import duckdb

    folder = tmp_path_factory.mktemp("big")
    old, new = str(folder / "old.csv"), str(folder / "new.csv")
    con = duckdb.connect()
    for path, shift in ((old, 1), (new, 2)):
        con.execute(f"COPY (SELECT 'id' || i AS id, i % 10 AS label, CASE WHEN i % 11 = 0 "
                    f"THEN (i + {shift}) % 10 ELSE i % 10 END AS pred, i % 7 AS seg "
                    f"FROM range(3000000) t(i)) TO '{path}' (HEADER)")
    con.close()
    return old, new


EXPECTED = {signal.SIGINT: (130, "gaudit: interrupted"),
            signal.SIGTERM: (143, "gaudit: terminated")}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_while_the_engine_works_removes_the_spill_folder(tmp_path, big_pair, sig):
    out = tmp_path / "r.json"
    proc = spawn(["flips", *big_pair, "--slice-by", "seg", "--memory-limit", "64MB",
                  "-f", "json", "-o", str(out)], tmp_path)
    spill = tmp_path / "spill"
    wait_for(lambda: any(spill.glob("gaudit-*")), proc, "the spill folder")
    proc.send_signal(sig)
    code, stdout, stderr = finish(proc)
    assert (code, stderr.strip().splitlines()[-1]) == EXPECTED[sig], stderr
    assert "internal error" not in stderr and "cannot be read" not in stderr
    assert list(spill.iterdir()) == []
    assert list(tmp_path.glob("*.json")) == [] and not list(tmp_path.glob(".gaudit-*"))


def hooked(ready: Path, module: str, owner: str, method: str) -> str:
    """Child code: ``python -m graceful_audit`` whose ``owner.method`` first creates
    ``ready`` (so the test knows the child is entering that phase), then runs as usual."""
    return (
        f"import {module} as m\n"
        f"real = m.{owner}.{method}\n"
        "def hook(*args, **kwargs):\n"
        f"    open({str(ready)!r}, 'w').close()\n"
        "    return real(*args, **kwargs)\n"
        f"m.{owner}.{method} = hook\n"
        "from graceful_audit.__main__ import run\n"
        "run()\n"
    )


PHASES = {"reading": ("graceful_audit.engine", "DuckDBEngine", "open"),
          "counting": ("graceful_audit.engine", "DuckDBEngine", "rows")}


@pytest.mark.parametrize("phase", list(PHASES))
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_while_duckdb_reads_or_counts(tmp_path, big_pair, sig, phase):
    """DuckDB turns the interrupt into its own error ("cannot be read as CSV (Query
    interrupted)" or an internal error before issue 13); it is an interruption all the same."""
    ready = tmp_path / "ready"
    proc = spawn(["flips", *big_pair, "--slice-by", "seg"], tmp_path,
                 code=hooked(ready, *PHASES[phase]))
    wait_for(ready.exists, proc, f"the {phase}")
    proc.send_signal(sig)
    code, stdout, stderr = finish(proc)
    assert (code, stderr.strip()) == EXPECTED[sig], stderr
    assert stdout == ""
    assert list((tmp_path / "spill").iterdir()) == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_while_writing_a_report_leaves_no_temporary_file(tmp_path, sig):
    """The child stops right before renaming its finished temporary file into place."""
    ready = tmp_path / "ready"
    code = (
        "import os, sys, time\n"
        "import graceful_audit.report as report\n"
        "real = os.replace\n"
        "def replace(src, dst):\n"
        f"    open({str(ready)!r}, 'w').close()\n"
        "    time.sleep(120)\n"
        "    real(src, dst)\n"
        "report.os.replace = replace\n"
        "from graceful_audit.__main__ import run\n"
        "run()\n"
    )
    reports = tmp_path / "reports"
    proc = spawn(["flips", OLD, NEW, "-f", "html", "-o", str(reports / "r.html")], tmp_path,
                 code=code)
    wait_for(ready.exists, proc, "the report's rename")
    assert [p.name[:8] for p in reports.iterdir()] == [".gaudit-"]
    proc.send_signal(sig)
    rc, stdout, stderr = finish(proc)
    assert (rc, stderr.strip()) == EXPECTED[sig], stderr
    assert list(reports.iterdir()) == []
    assert list((tmp_path / "spill").iterdir()) == []


def test_sigint_during_startup_is_an_interruption(tmp_path):
    """Before the command line is even imported (the signal handlers come first)."""
    ready = tmp_path / "ready"
    code = (
        "import sys, time\n"
        "import graceful_audit.interrupt as interrupt\n"
        "real = interrupt.install\n"
        "def install():\n"
        "    real()\n"
        f"    open({str(ready)!r}, 'w').close()\n"
        "    time.sleep(120)\n"
        "interrupt.install = install\n"
        "from graceful_audit.__main__ import run\n"
        "run()\n"
    )
    proc = spawn(["flips", OLD, NEW], tmp_path, code=code)
    wait_for(ready.exists, proc, "the handlers")
    proc.send_signal(signal.SIGINT)
    rc, stdout, stderr = finish(proc)
    assert (rc, stderr.strip()) == (130, "gaudit: interrupted")


def closed_pipe() -> int:
    """The write end of a pipe whose reader has already gone (``| head`` after it quit)."""
    r, w = os.pipe()
    os.close(r)
    return w


@pytest.mark.parametrize("fmt", ["text", "json", "markdown", "html", "junit"])
@pytest.mark.parametrize("gate,expected", [("0.05", 0), ("0.005", 1)], ids=["held", "breached"])
def test_a_closed_stdout_keeps_the_gates_exit_code(tmp_path, fmt, gate, expected):
    w = closed_pipe()
    saved = tmp_path / "r.json"
    proc = spawn(["flips", OLD, NEW, "--slice-by", "ink", "-f", fmt, "--max-nfr", gate,
                  "--report", f"json:{saved}"], tmp_path, stdout=w)
    os.close(w)
    rc, _, stderr = finish(proc)
    assert rc == expected, stderr
    assert "error" not in stderr and "Exception ignored" not in stderr
    assert saved.exists()  # the reports after the broken one are still written


@pytest.mark.parametrize("gate,expected", [("0.05", 0), ("0.005", 1)], ids=["held", "breached"])
def test_a_closed_stderr_keeps_the_gates_exit_code(tmp_path, gate, expected):
    w = closed_pipe()
    proc = spawn(["flips", OLD, NEW, "-f", "json", "--max-nfr", gate,
                  "-o", str(tmp_path / "r.json"), "--report", "markdown:-"], tmp_path, stderr=w)
    os.close(w)
    rc, stdout, _ = finish(proc)
    assert rc == expected
    assert stdout.strip()
    assert (tmp_path / "r.json").exists()


def test_head_on_the_text_report(tmp_path):
    """The shell's own pipeline: ``gaudit flips ... | head -1`` with a held gate."""
    script = (f"{sys.executable} -m graceful_audit flips {OLD} {NEW} --slice-by ink "
              "--max-nfr 0.05 --top 700 | head -1; exit ${PIPESTATUS[0]}")
    done = subprocess.run(["bash", "-c", script], env=env(tmp_path), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("PASSED")


def test_dev_stdout_redirected_to_a_file_is_appended_to_not_replaced(tmp_path):
    """``gaudit ... -o /dev/stdout >> log``: written through the stream (no truncation, no
    rename over /dev/stdout, which as root in a container would replace the device)."""
    log = tmp_path / "log.txt"
    log.write_text("previous step\n")
    with open(log, "a") as fh:
        proc = spawn(["flips", OLD, NEW, "-f", "json", "-o", "/dev/stdout"], tmp_path,
                     stdout=fh)
        rc, _, stderr = finish(proc)
    assert rc == 0, stderr
    text = log.read_text()
    assert text.startswith("previous step\n{\n") and '"kind": "flips"' in text
    assert os.path.islink("/dev/stdout") or not os.path.isfile("/dev/stdout")
