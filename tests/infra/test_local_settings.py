"""scripts/local_settings.py: local.settings.json's Values reach the demo as Core Tools would set
them, the environment wins, and nothing but setting names is ever shown."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scripts import local_settings
from scripts.demo import DEMO_OWNS

ROOT = Path(__file__).resolve().parents[2]
SECRET = "sk-not-a-real-key-0123456789"


def _write(path: Path, values: dict[str, object]) -> Path:
    path.write_text(json.dumps({"IsEncrypted": False, "Values": values}), encoding="utf-8")
    return path


def test_values_fill_the_environment_which_wins(tmp_path: Path) -> None:
    path = _write(tmp_path / "local.settings.json", {
        "AZURE_OPENAI_ENDPOINT": "https://mine.openai.azure.com",
        "AZURE_OPENAI_API_KEY": SECRET,
        "AZURE_OPENAI_DEPLOYMENT": "from-file",
        "ARTIFACTS_LINK_MINUTES": 30,
        "AZURE_OPENAI_WEBHOOK_SECRET": "",
    })
    environ = {"AZURE_OPENAI_DEPLOYMENT": "from-env"}
    taken = local_settings.apply(local_settings.read_values(path), environ)

    assert taken == ["ARTIFACTS_LINK_MINUTES", "AZURE_OPENAI_API_KEY", "AZURE_OPENAI_ENDPOINT"]
    assert environ == {
        "AZURE_OPENAI_DEPLOYMENT": "from-env",  # the environment wins
        "AZURE_OPENAI_ENDPOINT": "https://mine.openai.azure.com",
        "AZURE_OPENAI_API_KEY": SECRET,
        "ARTIFACTS_LINK_MINUTES": "30",  # numbers become text, as environment variables are
    }  # an empty value means "not set", as in the example file


def test_the_demo_keeps_its_own_storage_and_queues(tmp_path: Path) -> None:
    path = _write(tmp_path / "local.settings.json", {
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "AzureWebJobsStorage__blobServiceUri": "https://st.blob.core.windows.net/",
        "ARTIFACTS_QUEUE": "artifact-downloads",
        "ARTIFACTS_CONTAINER": "my-artifacts",
    })
    environ: dict[str, str] = {}
    taken = local_settings.apply(local_settings.read_values(path), environ, skip=DEMO_OWNS)

    assert taken == ["ARTIFACTS_CONTAINER"]
    assert environ == {"ARTIFACTS_CONTAINER": "my-artifacts"}


def test_only_names_are_described() -> None:
    line = local_settings.describe(["AZURE_OPENAI_API_KEY", "AZURE_OPENAI_ENDPOINT"])
    assert "AZURE_OPENAI_API_KEY" in line and "AZURE_OPENAI_ENDPOINT" in line
    assert SECRET not in line and "https://" not in line


def test_missing_file_gives_nothing_and_a_broken_one_is_refused(tmp_path: Path) -> None:
    assert local_settings.read_values(tmp_path / "absent.json") == {}
    broken = tmp_path / "broken.json"
    broken.write_text('{"Values": {"A": ', encoding="utf-8")
    with pytest.raises(local_settings.LocalSettingsError, match="not valid JSON"):
        local_settings.read_values(broken)
    (tmp_path / "no-values.json").write_text("[]", encoding="utf-8")
    with pytest.raises(local_settings.LocalSettingsError, match="Values"):
        local_settings.read_values(tmp_path / "no-values.json")


def test_has_answers_by_exit_status_and_prints_nothing() -> None:
    env = {key: value for key, value in os.environ.items() if key != "ARTIFACTS_TEST_ONLY_SETTING"}

    def has(name: str, extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "scripts.local_settings", "has", name], cwd=ROOT,
                              env={**env, **extra}, capture_output=True, text=True, check=False)

    present = has("ARTIFACTS_TEST_ONLY_SETTING", {"ARTIFACTS_TEST_ONLY_SETTING": SECRET})
    absent = has("ARTIFACTS_TEST_ONLY_SETTING", {})
    assert (present.returncode, absent.returncode) == (0, 1)
    assert SECRET not in present.stdout + present.stderr
    assert present.stdout == absent.stdout == ""
