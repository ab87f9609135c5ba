"""Check that the app settings infra/ writes are exactly the ones the code reads, in the form it accepts.

Parses the Bicep templates (``bicep_model``: pycep, the parser checkov uses), follows each app
setting of the Function App back to a parameter of ``infra/main.bicep`` (its default) or to a
module output (a sample of what Azure returns), in two scenarios (the defaults, and every option
on: webhooks, Easy Auth, alerts), and then:

- every setting ``shared/settings.py`` reads is written, or deliberately left out (listed below);
- every setting written is read by the code, the Functions host or the Python worker;
- no secret is written (the webhook secret only as a Key Vault reference);
- ``load_settings`` accepts them and takes the identity-based path (no key, no connection string);
- infra/ creates exactly the queues the app uses (the ones ``function_app.py`` triggers on and
  ``shared/`` sends to) and gives the app's identity, queue by queue, the role each one needs;
- the defaults in main.bicep are the code's defaults, and main.parameters.json falls back to the
  same; main.parameters.json and docs/deploy.md name only (and, for the docs, all) parameters
  main.bicep declares;
- and the operability checks in ``operability.py`` (host.json telemetry, concurrency, Easy Auth,
  the webhook's Key Vault, download links, alerts).

Runs in the checkov environment (``.venv-checkov``; ``shared/settings.py`` and what it imports need
only the standard library), from the repository root:

    .venv-checkov/bin/python -m tests.infra.settings_check [--write-env settings.json]

``--write-env`` saves the settings as resolved, for ``tests/worker/index_check.py --cloud-env``.
The last line is ``N passed, N failed``; the exit status is non-zero on any failure.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from shared.errors import ConfigError
from tests.infra.bicep_model import (
    CLIENT_ID,
    PRINCIPALS,
    QUEUE_DATA_CONTRIBUTOR,
    QUEUE_DATA_MESSAGE_SENDER,
    QUEUE_DATA_READER,
    QUEUE_ROLES,
    ROOT,
    SAMPLE_OUTPUTS,
    Infra,
    bicep_text,
)
from tests.infra.operability import SCENARIOS, operability_checks

# Settings the code can read that the cloud deployment leaves out on purpose.
NOT_WRITTEN = {
    "AZURE_OPENAI_API_KEY": "keys are disabled on the account: the app uses Entra ID",
    "AzureWebJobsStorage": "a connection string; the identity-based __blobServiceUri/__queueServiceUri form is used",
    "AzureWebJobsStorage__accountName": "the shorthand for __blobServiceUri, which is written instead",
    "ARTIFACTS_STORAGE_CONNECTION": "a connection string to a separate account; artifacts share the host's account",
    "ARTIFACTS_INPUT_MAX_BYTES": "the code's default (100 MiB) fits the POST's time; set it by hand to change it",
    "ARTIFACTS_INPUT_MAX_TOTAL_BYTES": "the code's default (200 MiB) fits the POST's time; set it by hand to change it",
    "WEBSITE_AUTH_ENABLED": "the platform sets it when Easy Auth is on; written as an app setting it would make the "
                            "app trust X-MS-CLIENT-PRINCIPAL-* headers that nothing strips",
}
# Settings whose value is a secret, written only as a Key Vault reference the platform resolves.
KEY_VAULT_REFERENCE = re.compile(r"^@Microsoft\.KeyVault\(VaultName=[a-z0-9-]{3,24};SecretName=[A-Za-z0-9-]{1,127}\)$")
# A queue send in shared/: ``<...>.queues.send(<...>.queues.<field>, ...)`` or ``send_many``.
QUEUE_SEND = re.compile(r"\.send(?:_many)?\(\s*[\w.]*?\bqueues\.(\w+)\b")
# A queue read in shared/ that a send-only role does not allow.
QUEUE_READ = re.compile(r"\.(?:get_queue_properties|peek_messages)\(")
AZD_PARAMETERS = {"environmentName", "location"}  # supplied by azd itself
INFRA = ROOT / "infra"


def load_config() -> ModuleType:
    """shared/settings.py, which (like the limits and errors it imports) needs only the standard library."""
    return importlib.import_module("shared.settings")


def _queue_expression(node: ast.expr, queues: Any) -> str:
    """A queue name in function_app.py: a literal, ``QUEUES.<field>`` or ``QUEUES.poison(...)``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.attr != "poison":
        return str(getattr(queues, node.attr))
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "poison"
            and len(node.args) == 1 and not node.keywords):
        return str(queues.poison(_queue_expression(node.args[0], queues)))
    raise ValueError(f"cannot tell which queue {ast.unparse(node)!r} names in function_app.py")


def app_queue_bindings(queues: Any) -> tuple[dict[str, str], dict[str, str]]:
    """The queues function_app.py binds to, as (function -> trigger queue, function -> output queue)."""
    tree = ast.parse((ROOT / "function_app.py").read_text(encoding="utf-8"))
    triggers: dict[str, str] = {}
    outputs: dict[str, str] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef):
            continue
        function = node.name
        for decorator in node.decorator_list:
            if not (isinstance(decorator, ast.Call) and isinstance(decorator.func, ast.Attribute)):
                continue
            keywords = {keyword.arg: keyword.value for keyword in decorator.keywords}
            if decorator.func.attr == "function_name" and decorator.args:
                function = ast.literal_eval(decorator.args[0])
            elif decorator.func.attr in ("queue_trigger", "queue_output"):
                found = triggers if decorator.func.attr == "queue_trigger" else outputs
                found[function] = _queue_expression(keywords["queue_name"], queues)
    return triggers, outputs


def app_queue_sends(queues: Any) -> set[str]:
    """The queues the code in shared/ sends to itself (not through a binding)."""
    fields = set()
    for path in sorted((ROOT / "shared").rglob("*.py")):
        fields |= set(QUEUE_SEND.findall(path.read_text(encoding="utf-8")))
    return {str(getattr(queues, field)) for field in fields}


def app_reads_queue_depth() -> bool:
    """Whether shared/ reads queue properties or peeks at messages (the queue monitor does)."""
    return any(QUEUE_READ.search(path.read_text(encoding="utf-8")) for path in (ROOT / "shared").rglob("*.py"))


def checks(scenarios: dict[str, Infra], config: ModuleType) -> list[tuple[str, Callable[[], list[str]]]]:
    """The checks, over every scenario (``defaults`` first: what a plain ``azd up`` writes)."""
    infra = scenarios["defaults"]
    settings = infra.settings
    every_setting = {name for scenario in scenarios.values() for name in scenario.settings}
    read = set(config.SETTING_NAMES)
    # The table's own: every setting the host, the worker or the telemetry reads rather than load_settings;
    # "local" ones (func start's) must never be written in Azure.
    host_settings = {setting.name for setting in config.SETTINGS if setting.read_by in ("host", "telemetry")}
    local_only = {setting.name for setting in config.SETTINGS if setting.read_by == "local"}
    # Settings with a default of the code's (not required, not left to the platform): main.bicep's must equal it.
    defaults = {setting.name: setting.default for setting in config.SETTINGS
                if setting.read_by == "app" and not setting.missing and setting.default is not None}

    def per_scenario(check: Callable[[dict[str, str]], list[str]]) -> Callable[[], list[str]]:
        def run() -> list[str]:
            return [f"{scenario}: {problem}"
                    for scenario, each in scenarios.items() for problem in check(each.settings)]
        return run

    def every_read_setting_is_written() -> list[str]:
        return [f"{name} is read by shared/settings.py but not written by infra/ (nor listed in NOT_WRITTEN)"
                for name in sorted(read - every_setting - set(NOT_WRITTEN))]

    def every_written_setting_is_read() -> list[str]:
        problems = [f"{name} is written by infra/ but only func start reads it (Flex Consumption refuses it)"
                    for name in sorted(every_setting & local_only)]
        return problems + [f"{name} is written by infra/ but read by neither the code, the host nor the worker"
                           for name in sorted(every_setting - read - host_settings - local_only)]

    def nothing_secret(settings: dict[str, str]) -> list[str]:
        problems = [f"{name} is written, but must stay out of the cloud: {why}"
                    for name, why in NOT_WRITTEN.items() if name in settings]
        secret = re.compile(r"AccountKey=|SharedAccessSignature=|sig=|api[-_]?key|password|secret", re.I)
        problems += [f"{name} looks like a secret" for name, value in settings.items()
                     if (secret.search(name) or secret.search(value)) and not KEY_VAULT_REFERENCE.match(value)]
        return problems

    def code_takes_the_identity_path(settings: dict[str, str]) -> list[str]:
        try:
            loaded = config.load_settings(settings)
        except ConfigError as error:
            return [f"load_settings refused infra's settings: {error}"]
        problems = []
        storage = loaded.storage
        if storage.connection_string is not None:
            problems.append("the artifact store would use a connection string")
        if storage.account_url != settings["AzureWebJobsStorage__blobServiceUri"].rstrip("/"):
            problems.append(f"artifact store URL {storage.account_url!r} is not the host's blob service")
        if storage.client_id != CLIENT_ID or loaded.client_id != CLIENT_ID:
            problems.append(f"client ids {storage.client_id!r} / {loaded.client_id!r} are not the app's identity")
        if not loaded.uses_entra_id:
            problems.append("Azure OpenAI would be called with a key")
        if loaded.endpoint != SAMPLE_OUTPUTS["openAiAccess.endpoint"].rstrip("/"):
            problems.append(f"endpoint {loaded.endpoint!r}")
        queue_storage = loaded.queue_storage
        if queue_storage.connection_string is not None:
            problems.append("the app's queue sender would use a connection string")
        if queue_storage.account_url != settings["AzureWebJobsStorage__queueServiceUri"].rstrip("/"):
            problems.append(f"queue sender URL {queue_storage.account_url!r} is not the host's queue service")
        if queue_storage.client_id != CLIENT_ID:
            problems.append(f"queue sender client id {queue_storage.client_id!r} is not the app's identity")
        for setting, queue in (("ARTIFACTS_QUEUE", loaded.queues.artifacts),
                               ("ARTIFACTS_RUNS_QUEUE", loaded.queues.runs),
                               ("ARTIFACTS_EVENTS_QUEUE", loaded.queues.events)):
            if queue != settings.get(setting):
                problems.append(f"queue {queue!r} != {setting} {settings.get(setting)!r}")
        return problems

    def queues_and_their_roles() -> list[str]:
        queues = config.queue_names(settings)
        triggers, outputs = app_queue_bindings(queues)
        sends = app_queue_sends(queues)
        if not triggers or not sends:
            return [f"found no queue triggers ({triggers}) or no queue sends ({sorted(sends)}) in the code; "
                    "update app_queue_bindings / QUEUE_SEND"]
        # The host's trigger reads, deletes and re-times messages and moves poison ones: Contributor.
        # A queue the app only writes to (a send or an output binding) needs only Message Sender,
        # and Reader too when the app reads the depth of its queues (the queue monitor).
        sender = {QUEUE_DATA_MESSAGE_SENDER} | ({QUEUE_DATA_READER} if app_reads_queue_depth() else set())
        needed = {queue: set(sender) for queue in sends | set(outputs.values())}
        needed |= {queue: {QUEUE_DATA_CONTRIBUTOR} for queue in triggers.values()}
        created, grants, problems = infra.queue_access()
        problems += [f"queue {queue} is created more than once" for queue in sorted(set(created))
                     if created.count(queue) > 1]
        problems += [f"the app uses queue {queue}, which infra/ does not create"
                     for queue in sorted(set(needed) - set(created))]
        problems += [f"infra/ creates queue {queue}, which the app does not use"
                     for queue in sorted(set(created) - set(needed))]

        def names(roles: set[str]) -> str:
            return ", ".join(sorted(QUEUE_ROLES.get(role, role) for role in roles)) or "no role"

        for principal in PRINCIPALS:
            granted = grants.get(principal, {})
            for queue in sorted(set(needed) | set(granted)):
                want, got = needed.get(queue, set()), granted.get(queue, set())
                if got != want:
                    problems.append(f"{principal} holds {names(got)} on queue {queue}; it needs exactly {names(want)}")
        return problems

    def host_connections_use_the_identity() -> list[str]:
        expected = {
            "AzureWebJobsStorage__blobServiceUri": SAMPLE_OUTPUTS["storage.blobEndpoint"],
            "AzureWebJobsStorage__queueServiceUri": SAMPLE_OUTPUTS["storage.queueEndpoint"],
            "AzureWebJobsStorage__credential": "managedidentity",
            "AzureWebJobsStorage__clientId": CLIENT_ID,
            "AZURE_CLIENT_ID": CLIENT_ID,
            "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": f"ClientId={CLIENT_ID};Authorization=AAD",
        }
        return [f"{name} = {settings.get(name)!r}, expected {value!r}"
                for name, value in expected.items() if settings.get(name) != value]

    def defaults_match_the_code() -> list[str]:
        problems = []
        for setting, default in defaults.items():
            if setting not in settings:
                continue  # reported by every_written_setting_is_read / every_read_setting_is_written
            param = infra.setting_source.get(setting)
            if param is None:
                problems.append(f"{setting} is not set from a main.bicep parameter")
            elif bicep_text(infra.main_defaults[param]) != bicep_text(default):
                problems.append(f"{param} defaults to {bicep_text(infra.main_defaults[param])}, "
                                f"the code to {bicep_text(default)}")
        return problems

    def parameters_file_matches() -> list[str]:
        mapped = json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
        declared = set(infra.main["parameters"])
        problems = [f"main.parameters.json maps {name}, which main.bicep does not declare"
                    for name in sorted(set(mapped) - declared)]
        problems += [f"main.bicep parameter {name} has no default and is not mapped by main.parameters.json"
                     for name, p in infra.main["parameters"].items() if "default" not in p and name not in mapped]
        # "${AZD_VARIABLE=fallback}": azd always passes the value, so its fallback is the real default.
        for name, entry in mapped.items():
            fallback = re.fullmatch(r"\$\{\w+=(.*)\}", str(entry.get("value", "")))
            if fallback is None or name not in declared or "default" not in infra.main["parameters"][name]:
                continue
            if fallback.group(1) != bicep_text(infra.main_defaults[name]):
                problems.append(f"main.parameters.json falls back to {fallback.group(1)!r} for {name}, "
                                f"main.bicep defaults to {bicep_text(infra.main_defaults[name])!r}")
        return problems

    def docs_name_every_parameter() -> list[str]:
        docs = ROOT / "docs" / "deploy.md"
        if not docs.exists():
            return ["docs/deploy.md is missing"]
        text = docs.read_text(encoding="utf-8")
        return [f"docs/deploy.md does not mention the parameter {name}"
                for name in sorted(set(infra.main["parameters"]) - AZD_PARAMETERS) if f"`{name}`" not in text]

    return [
        ("infra/ writes every setting shared/settings.py reads", every_read_setting_is_written),
        ("every setting infra/ writes is read by the code or the host", every_written_setting_is_read),
        ("no key, connection string or other secret in the app settings (secrets only as Key Vault references)",
         per_scenario(nothing_secret)),
        ("load_settings accepts them and takes the managed-identity path", per_scenario(code_takes_the_identity_path)),
        ("host storage and telemetry connect with the user-assigned identity", host_connections_use_the_identity),
        ("infra/ creates exactly the app's queues; its identity holds the role each needs, queue by queue",
         queues_and_their_roles),
        ("main.bicep defaults equal the code's defaults", defaults_match_the_code),
        ("main.parameters.json maps only declared parameters, all required ones, with main.bicep's defaults",
         parameters_file_matches),
        ("docs/deploy.md names every main.bicep parameter", docs_name_every_parameter),
        *operability_checks(scenarios, config),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write-env", type=Path, help="write the resolved app settings here, as a JSON object")
    args = parser.parse_args()

    scenarios = {name: Infra(overrides) for name, overrides in SCENARIOS.items()}
    config = load_config()
    if args.write_env:
        args.write_env.parent.mkdir(parents=True, exist_ok=True)
        args.write_env.write_text(json.dumps(scenarios["defaults"].settings, indent=2) + "\n", encoding="utf-8")
    passed = failed = 0
    for name, check in checks(scenarios, config):
        try:
            problems = check()
        except Exception as error:  # a broken check is a failed check, with its reason
            problems = [f"{type(error).__name__}: {error}"]
        if problems:
            failed += 1
            print(f"FAIL {name}")
            for problem in problems:
                print(f"     {problem}")
        else:
            passed += 1
            print(f"ok   {name}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
