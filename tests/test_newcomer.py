"""What a newcomer meets on a fresh clone, each friction point held by a test (issue 20):

- ``make test`` without Python 3.13 (the one interpreter, the worker's too): one line; with a
  ``.venv`` but no Python 3.13 left for the checks' own environment: one line per skipped check,
  and pytest still runs (failing in CI); its temporary files stay where ``make clean`` removes them,
  and no telemetry exporter is set;
- ``make start`` with a broken local.settings.json, with the fake's port taken, and Ctrl-C;
- ``make demo`` with bad settings; ``make help``;
- the docs: no table split by a blank line, the Node.js version Azurite needs, the settings the
  host reads documented, Azurite's telemetry off wherever it is started.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts import local_settings, settings_docs
from tests.support.azurite import Azurite, free_port, port_open

ROOT = Path(__file__).resolve().parent.parent
# bash and make from PATH, as a person runs them.
BASH = shutil.which("bash") or "/bin/bash"
MAKE = shutil.which("make") or "make"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Settings this file's processes get from the test; the same names in the test's own environment are dropped.
_APP_SETTINGS_PREFIXES = ("AZURE_OPENAI_", "ARTIFACTS_", "AzureWebJobs", "AzureFunctionsJobHost__",
                          "WEBSITE_AUTH_ENABLED", "APPLICATIONINSIGHTS_", "OTEL_", "LOCAL_SETTINGS", "CI",
                          "DEV_HOST", "APP_PORT", "FAKE_")


def clean_env(**extra: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith(_APP_SETTINGS_PREFIXES)}
    return {**env, **extra}


# --- make test ------------------------------------------------------------------------------------------

_STUB_PYTHON = """#!/usr/bin/env bash
# The sandbox's .venv/bin/python: a 3.13 (asked for its version, it says so); records that pytest
# ran, and the environment it ran in.
if [ "$1" = "-c" ]; then echo 3.13; exit 0; fi
if [ "$1 $2" = "-m pytest" ]; then
  {
    echo "PYTEST RAN"
    echo "TMPDIR=${TMPDIR:-}"
    env | grep -E '^(APPLICATIONINSIGHTS_|OTEL_EXPORTER_OTLP)' || true
  } >> "$(dirname "$0")/../../pytest.log"
fi
exit 0
"""


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    """The scripts `make test` runs, in a copy of the project whose .venv and Azurite are stubs: the
    deployment checks are the real script, the tools it calls are not."""
    for name in ("test.sh", "setup.sh", "checks.sh", "python.sh"):
        (tmp_path / "scripts").mkdir(exist_ok=True)
        shutil.copy(ROOT / "scripts" / name, tmp_path / "scripts" / name)
    for name in ("requirements.txt", "requirements-dev.txt", "Makefile"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / "node_modules" / ".bin").mkdir(parents=True)
    for tool in (".venv/bin/python", ".venv/bin/ruff", ".venv/bin/mypy", "node_modules/.bin/azurite"):
        (tmp_path / tool).write_text(_STUB_PYTHON if tool.endswith("python") else "#!/usr/bin/env bash\nexit 0\n")
        (tmp_path / tool).chmod(0o755)
    (tmp_path / ".venv" / ".requirements-installed").touch()  # not older than the requirements: nothing installed
    return tmp_path


def make_test(sandbox: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BASH, "scripts/test.sh", "-q"], cwd=sandbox, capture_output=True, text=True, timeout=120, check=False,
        env=clean_env(PYTHON="/nowhere/python3.13",
                      APPLICATIONINSIGHTS_CONNECTION_STRING="InstrumentationKey=00000000-0000-0000-0000-000000000000",
                      OTEL_EXPORTER_OTLP_ENDPOINT="http://collector.invalid:4318", **env),
    )


def test_make_test_without_python_313_says_so_in_one_line(sandbox: Path) -> None:
    shutil.rmtree(sandbox / ".venv")  # a fresh clone: nothing made yet
    run = make_test(sandbox)
    output = (run.stdout + run.stderr).strip()
    assert run.returncode != 0
    assert output.splitlines() == [
        "Python 3.13 not found (/nowhere/python3.13): install it (README: Prerequisites) "
        "or set PYTHON=/path/to/python3.13"], output


def test_make_test_without_python_313_for_the_checks_says_so_in_one_line_and_still_runs_pytest(
    sandbox: Path,
) -> None:
    """A .venv made earlier, and no Python 3.13 left to make the checks' own environment with."""
    local = make_test(sandbox)
    output = local.stdout + local.stderr
    assert "command not found" not in output
    skipped = [line for line in output.splitlines() if line.startswith("!!! skipped")]
    assert len(skipped) == 2, skipped  # checkov with the settings check, then the worker check needing its output
    assert "checkov" in skipped[0] and "/nowhere/python3.13" in skipped[0] and "PYTHON=" in skipped[0]
    assert "the worker index check" in skipped[1]
    log = (sandbox / "pytest.log").read_text()
    assert "PYTEST RAN" in log
    assert local.returncode == 0, output  # locally: said, and not a failure
    assert "some deployment checks were skipped" in local.stdout.splitlines()[-1]
    # Temporary files in the project, where make clean removes them; no exporter reaches the tests.
    assert f"TMPDIR={sandbox / '.tmp'}" in log
    assert "APPLICATIONINSIGHTS_" not in log and "OTEL_EXPORTER_OTLP" not in log
    clean = subprocess.run([MAKE, "-n", "clean"], cwd=sandbox, capture_output=True, text=True, check=True)
    assert ".tmp" in clean.stdout.split()

    (sandbox / "pytest.log").unlink()
    in_ci = make_test(sandbox, CI="true")
    assert in_ci.returncode != 0  # in CI every check must run
    assert "PYTEST RAN" in (sandbox / "pytest.log").read_text()  # and the suite ran all the same
    assert "in CI every check must run" in in_ci.stdout


def test_make_help_lists_every_target_with_what_it_does() -> None:
    makefile = (ROOT / "Makefile").read_text()
    phony = re.search(r"^\.PHONY:(.*)$", makefile, re.MULTILINE)
    assert phony is not None
    targets = phony.group(1).split()
    for command in ([MAKE, "-s", "help"], [MAKE, "-s"]):  # help is also what plain `make` does
        listed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True, timeout=30).stdout
        lines = {line.split()[1]: line for line in listed.splitlines() if line.strip().startswith("make ")}
        assert set(lines) == set(targets), listed
        assert all(len(line.split()) > 3 for line in lines.values()), listed  # each says what it does


# --- make start -----------------------------------------------------------------------------------------


def start_env(azurite: Azurite, settings: Path, **extra: str) -> dict[str, str]:
    """make start's environment: this session's Azurite as the storage (so it starts none), free ports."""
    suffix = uuid.uuid4().hex[:10]
    return clean_env(LOCAL_SETTINGS=str(settings), AzureWebJobsStorage=azurite.connection_string, DEV_HOST="1",
                     APP_PORT=str(free_port()), FAKE_OPENAI_PORT=str(free_port()), ARTIFACTS_QUEUE=f"dl-{suffix}",
                     ARTIFACTS_RUNS_QUEUE=f"runs-{suffix}", ARTIFACTS_EVENTS_QUEUE=f"events-{suffix}", **extra)


def run_start(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``bash scripts/start.sh`` in a process group of its own, every process of which is ended if it
    does not end by itself (so a failing test leaves no fake or host behind)."""
    process = subprocess.Popen([BASH, "scripts/start.sh"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:  # the script is alive, so its group id is still its own
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
    finally:  # whatever the script left behind in its group (a fake, a host) goes too
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def settings_file(path: Path) -> Path:
    path.write_text(json.dumps({"IsEncrypted": False, "Values": {
        "FUNCTIONS_WORKER_RUNTIME": "python", "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "AZURE_OPENAI_ENDPOINT": "", "AZURE_OPENAI_DEPLOYMENT": "gpt-test"}}, indent=2))
    return path


def test_make_start_with_a_broken_settings_file_stops_with_one_line_naming_file_and_line(
    azurite: Azurite, tmp_path: Path
) -> None:
    broken = tmp_path / "local.settings.json"
    broken.write_text('{\n  "IsEncrypted": false,\n  "Values": {\n    "A": "b"\n    "C": "d"\n  }\n}\n')
    started = run_start(start_env(azurite, broken))
    assert started.returncode == 1
    assert started.stderr.strip().splitlines() == [f"{broken} line 5: not valid JSON (Expecting ',' delimiter, "
                                                   "column 5)"]
    assert "Traceback" not in started.stdout and "starting" not in started.stdout  # nothing started after it


def test_make_start_says_so_when_the_fakes_port_is_taken(azurite: Azurite, tmp_path: Path) -> None:
    env = start_env(azurite, settings_file(tmp_path / "local.settings.json"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", int(env["FAKE_OPENAI_PORT"])))
        taken.listen()
        started = run_start(env)
    assert started.returncode == 1
    (line,) = started.stderr.strip().splitlines()
    assert f"port {env['FAKE_OPENAI_PORT']}" in line and "already in use" in line
    assert "FAKE_OPENAI_PORT" in line
    assert not port_open(int(env["APP_PORT"]))  # the app was not started against a fake that is not there


@pytest.fixture
def terminal() -> Iterator[tuple[int, int]]:
    """A pseudo-terminal: (the side a person types into, the side the program gets)."""
    main_side, program_side = os.openpty()
    yield main_side, program_side
    for side in (main_side, program_side):
        with contextlib.suppress(OSError):  # already closed
            os.close(side)


def read_until(fd: int, wanted: str, seconds: float, seen: bytearray) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the program side closed: everything has ended
                return wanted in seen.decode(errors="replace")
            if not chunk:
                break
            seen += chunk
            if wanted in seen.decode(errors="replace"):
                return True
    return wanted in seen.decode(errors="replace")


def test_ctrl_c_ends_make_start_quietly_with_exit_status_0(
    azurite: Azurite, tmp_path: Path, terminal: tuple[int, int]
) -> None:
    """`make start` in a terminal, Ctrl-C typed into it: make, the script, the fake and the development
    host all end, nothing but their own lines is printed, and make's exit status is 0."""
    env = start_env(azurite, settings_file(tmp_path / "local.settings.json"))
    typed, program = terminal
    # A session of its own whose controlling terminal is the pseudo-terminal, as a shell would give it.
    attach = "import os, sys, fcntl, termios; os.setsid(); fcntl.ioctl(0, termios.TIOCSCTTY, 0); " \
             "os.execvp(sys.argv[1], sys.argv[1:])"
    make = subprocess.Popen([sys.executable, "-c", attach, MAKE, "-s", "start"], cwd=ROOT, env=env,
                            stdin=program, stdout=program, stderr=program, close_fds=True)
    os.close(program)
    seen = bytearray()
    try:
        assert read_until(typed, "the app answers at", 120, seen), seen.decode(errors="replace")
        read_until(typed, "Ctrl-C stops\r\n", 10, seen)
        os.write(typed, b"\x03")
        read_until(typed, "==> stopped", 60, seen)
        status = make.wait(timeout=60)
    finally:
        # The whole session goes, whether make still runs or left something behind (the regression
        # this test guards); make's group id stays its own as long as anything in it lives.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(make.pid, signal.SIGKILL)
        make.wait()
    output = seen.decode(errors="replace")
    assert status == 0, output
    tail = output[output.index("^C"):]
    assert "Traceback" not in output and "Interrupt" not in tail and "Error" not in tail, tail
    assert not port_open(int(env["FAKE_OPENAI_PORT"])) and not port_open(int(env["APP_PORT"]))


# --- make demo ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("problem", ["endpoint", "file"])
def test_make_demo_with_bad_settings_is_one_line(azurite: Azurite, tmp_path: Path, problem: str) -> None:
    settings = tmp_path / "local.settings.json"
    if problem == "file":
        settings.write_text('{"Values": {"AZURE_OPENAI_DEPLOYMENT": "gpt-test",}}')
        extra = {}
    else:
        extra = {"AZURE_OPENAI_ENDPOINT": "http://my-resource.openai.azure.com"}  # http:// off loopback
    demo = subprocess.run([sys.executable, "-m", "scripts.demo", "--in-process"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False,
                          env=clean_env(LOCAL_SETTINGS=str(settings), AzureWebJobsStorage=azurite.connection_string,
                                        **extra))
    assert demo.returncode == 2
    (line,) = demo.stderr.strip().splitlines()
    assert "Traceback" not in demo.stdout
    assert ("AZURE_OPENAI_ENDPOINT must be https://" in line) if problem == "endpoint" else (
        f"{settings} line 1: not valid JSON" in line)


def test_make_demo_shows_a_chart_a_generated_image_and_an_input_blob(azurite: Azurite, tmp_path: Path) -> None:
    """Issue 22's "done when": one demo run with every kind of file, and its CloudEvent."""
    demo = subprocess.run([sys.executable, "-m", "scripts.demo", "--in-process"], cwd=ROOT, capture_output=True,
                          text=True, timeout=180, check=False,
                          env=clean_env(LOCAL_SETTINGS=str(tmp_path / "none.json"),
                                        AzureWebJobsStorage=azurite.connection_string))
    assert demo.returncode == 0, demo.stdout + demo.stderr
    out = demo.stdout
    assert "sales chart.png" in out and "image/png" in out  # the code interpreter's chart
    assert re.search(r"/ig_\w+/ig_\w+\.png\n\s+\d+ bytes, image/png, sha256 \w+\.\.\. verified", out), out
    assert "input sales.csv: uploaded as file-" in out and "deleted after the run" in out
    assert "CloudEvent com.code-interpreter-artifacts.completed" in out
    assert "MISMATCH" not in out


# --- local.settings.json, read by the scripts --------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    # Python 3.13 says "Illegal trailing comma before end of object"; earlier ones "Expecting property name".
    ('{"Values": {"A": 1,}}', "line 1: not valid JSON ("),
    ('{\n\n  "Values": [\n', "line 4: not valid JSON (Expecting value"),
    ('["no values"]', 'has no "Values" object'),
])
def test_the_settings_commands_answer_a_broken_file_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    broken = tmp_path / "local.settings.json"
    broken.write_text(text)
    monkeypatch.setattr(local_settings, "LOCAL_SETTINGS", broken)
    assert local_settings.main(["check"]) == 1
    assert local_settings.main(["has", "AZURE_OPENAI_ENDPOINT"]) == 2  # not "unset": the file is broken
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith(str(broken)) and expected in line for line in lines)


def test_development_storage_is_recognised_as_azurite() -> None:
    assert local_settings.is_development_storage("UseDevelopmentStorage=true")
    assert local_settings.is_development_storage(" usedevelopmentstorage = true; ")
    assert not local_settings.is_development_storage("DefaultEndpointsProtocol=https;AccountName=x")
    assert not local_settings.is_development_storage(None)


# --- the docs -----------------------------------------------------------------------------------------------


def split_tables(text: str) -> list[int]:
    """Line numbers of table rows cut off from the table above them by a blank line."""
    lines = text.splitlines()
    row = re.compile(r"^\s*\|.*\|\s*$")
    separator = re.compile(r"^\s*\|(\s*:?-{3,}:?\s*\|)+\s*$")
    return [number + 1 for number in range(2, len(lines))
            if row.match(lines[number]) and not lines[number - 1].strip() and row.match(lines[number - 2])
            and not (number + 1 < len(lines) and separator.match(lines[number + 1]))]


def test_no_table_in_the_docs_is_split_by_a_blank_line() -> None:
    assert split_tables("| a | b |\n|---|---|\n| 1 | 2 |\n\n| 3 | 4 |\n") == [5]  # the check sees a split
    assert split_tables("| a |\n|---|\n| 1 |\n\n| b |\n|---|\n") == []  # and tells a new table apart
    assert {page.name: split_tables(page.read_text(encoding="utf-8")) for page in PAGES} == {
        page.name: [] for page in PAGES}


def azurite_package() -> dict[str, object]:
    installed = ROOT / "node_modules" / "azurite" / "package.json"
    if installed.exists():
        document: dict[str, object] = json.loads(installed.read_text())
        return document
    lock = ROOT / "package-lock.json"
    if not lock.exists():
        pytest.skip("Azurite is not installed (make setup): its declared Node.js version is unknown")
    package: dict[str, object] = json.loads(lock.read_text())["packages"]["node_modules/azurite"]
    return package


def test_the_nodejs_version_the_readme_asks_for_is_the_one_azurite_declares() -> None:
    package = azurite_package()
    engines = package.get("engines")
    assert isinstance(engines, dict)
    needed = re.match(r"^>=\s*(\d+)", str(engines["node"]))
    assert needed is not None, engines
    major = needed.group(1)
    readme = (ROOT / "README.md").read_text()
    asked = re.findall(r"Node\.js (\d+)", readme)
    assert asked and set(asked) == {major}, f"README asks for Node.js {asked}, Azurite declares {engines['node']}"
    assert f"nvm install {major}" in readme and f"Node {major} or later" in readme
    declared = json.loads((ROOT / "package.json").read_text())["devDependencies"]["azurite"]
    assert f"Azurite {'.'.join(str(declared).split('.')[:2])} declares" in readme
    assert f"Node.js {major}" in (ROOT / "scripts" / "setup.sh").read_text()


def test_the_settings_the_host_reads_are_documented_from_the_settings_table() -> None:
    table = settings_docs.settings_table()
    for name in ("AzureWebJobsStorage__accountName", "PYTHON_ENABLE_OPENTELEMETRY", "AzureWebJobsFeatureFlags",
                 "AZURE_OPENAI_TOKEN_SCOPE", "AZURE_OPENAI_CONTAINER_API_VERSION"):
        assert f"| `{name}` |" in table
    assert settings_docs.stale_files() == [], "run: .venv/bin/python -m scripts.settings_docs"


def test_azurite_is_started_with_its_telemetry_off_everywhere() -> None:
    starters = [path for path in [*ROOT.glob("scripts/*.sh"), *ROOT.glob("tests/**/*.py"), *ROOT.glob("bench/*.py")]
                if re.search(r"node_modules/\.bin/azurite\s+--|azurite_command\(\),", path.read_text(encoding="utf-8"))]
    assert {p.relative_to(ROOT).as_posix() for p in starters} >= {"scripts/start.sh", "tests/support/azurite.py"}
    assert [p.name for p in starters if "--disableTelemetry" not in p.read_text(encoding="utf-8")] == []
