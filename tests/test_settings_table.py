"""The settings table in shared/settings.py is the one source: load_settings reads nothing else,
and the docs' table and the example settings file are what it writes."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import pytest

from scripts import settings_docs
from shared.settings import SETTING_NAMES, SETTINGS, load_settings
from shared.storage.status_records import FAILURE_CODES

pytestmark = pytest.mark.unit


class RecordingEnvironment(Mapping[str, str]):
    """An environment that remembers every name the code looks up."""

    def __init__(self, values: dict[str, str]) -> None:
        self.entries = values
        self.asked: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.asked.add(name)
        return self.entries[name]

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        self.asked.add(name)
        return self.entries.get(name, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)


@pytest.mark.parametrize("values", [
    {"AZURE_OPENAI_ENDPOINT": "https://r.openai.azure.com", "AZURE_OPENAI_DEPLOYMENT": "d",
     "AzureWebJobsStorage": "UseDevelopmentStorage=true"},
    {"AZURE_OPENAI_ENDPOINT": "https://r.openai.azure.com", "AZURE_OPENAI_DEPLOYMENT": "d",
     "AzureWebJobsStorage__accountName": "account"},  # the identity path reads the other storage settings
])
def test_load_settings_reads_exactly_the_settings_the_table_declares(values: dict[str, str]) -> None:
    environment = RecordingEnvironment(values)
    load_settings(environment)
    assert environment.asked <= set(SETTING_NAMES), "read without a row in shared.settings.SETTINGS"


def test_every_app_setting_is_read_by_some_path() -> None:
    asked: set[str] = set()
    for values in ({"AzureWebJobsStorage": "UseDevelopmentStorage=true"}, {"AzureWebJobsStorage__accountName": "a"}):
        environment = RecordingEnvironment({"AZURE_OPENAI_ENDPOINT": "https://r.openai.azure.com",
                                            "AZURE_OPENAI_DEPLOYMENT": "d", **values})
        load_settings(environment)
        asked |= environment.asked
    assert set(SETTING_NAMES) - asked == set(), "declared for load_settings, never read by it"


def test_setting_names_are_unique() -> None:
    names = [setting.name for setting in SETTINGS]
    assert len(names) == len(set(names))


def test_the_docs_table_and_the_example_are_written_from_the_table() -> None:
    assert settings_docs.stale_files() == [], "run: .venv/bin/python -m scripts.settings_docs"


def test_a_changed_row_is_noticed() -> None:
    docs = settings_docs.DOCS.read_text(encoding="utf-8")
    row = "| `ARTIFACTS_POLL_MAX_SECONDS` | no | `30` |"
    edited = docs.replace(row, row.replace("`30`", "`60`"))
    assert edited != docs
    assert settings_docs.docs_with_table(edited) == docs


def test_the_docs_explain_every_failure_code() -> None:
    docs = settings_docs.DOCS.read_text(encoding="utf-8")
    assert [code for code in FAILURE_CODES if f"`{code}`" not in docs] == []
