"""Check that the app settings infra/ writes are exactly the ones the code reads, in the form it accepts.

Parses the Bicep templates (with pycep, the parser checkov uses), follows each app setting of the
Function App back to a parameter of ``infra/main.bicep`` (its default) or to a module output (a
sample of what Azure returns), and then:

- every setting ``shared/config.py`` reads is written, or deliberately left out (listed below);
- every setting written is read by the code or by the Functions host;
- ``load_settings`` accepts them and takes the identity-based path (no key, no connection string);
- the defaults in main.bicep are the code's defaults; main.parameters.json and README.md name
  only (and, for the docs, all) parameters main.bicep declares.

Runs in the checkov environment (``.venv-checkov``; ``shared/config.py`` needs only the standard
library):

    .venv-checkov/bin/python tests/infra/settings_check.py [--write-env settings.json]

``--write-env`` saves the settings as resolved, for ``tests/worker/index_check.py --cloud-env``.
The last line is ``N passed, N failed``; the exit status is non-zero on any failure.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"

# Settings the code can read that the cloud deployment leaves out on purpose.
NOT_WRITTEN = {
    "AZURE_OPENAI_API_KEY": "keys are disabled on the account: the app uses Entra ID",
    "AzureWebJobsStorage": "a connection string; the identity-based __blobServiceUri/__queueServiceUri form is used",
    "AzureWebJobsStorage__accountName": "the shorthand for __blobServiceUri, which is written instead",
    "ARTIFACTS_STORAGE_CONNECTION": "a connection string to a separate account; artifacts share the host's account",
}
# Settings written for the Functions host rather than the app's code.
HOST_SETTINGS = {
    "AzureWebJobsStorage__queueServiceUri",
    "AzureWebJobsStorage__credential",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
}
# App setting -> the constant in shared/config.py that main.bicep's default must equal.
DEFAULTS = {
    "ARTIFACTS_QUEUE": "DEFAULT_QUEUE",
    "ARTIFACTS_CONTAINER": "DEFAULT_CONTAINER",
    "ARTIFACTS_STATUS_CONTAINER": "DEFAULT_STATUS_CONTAINER",
    "AZURE_OPENAI_TIMEOUT_SECONDS": "DEFAULT_TIMEOUT_SECONDS",
    "ARTIFACTS_MAX_FILE_BYTES": "DEFAULT_MAX_FILE_BYTES",
    "ARTIFACTS_DOWNLOAD_ATTEMPTS": "DEFAULT_DOWNLOAD_ATTEMPTS",
}
# What Azure returns for the module outputs main.bicep hands to the Function App (samples).
CLIENT_ID = "6b1f3c52-0c2e-4f4e-9d53-4a0d8d1e7c21"
SAMPLE_OUTPUTS = {
    "identity.clientId": CLIENT_ID,
    "identity.id": "/subscriptions/0000/resourceGroups/rg-demo/providers/"
                   "Microsoft.ManagedIdentity/userAssignedIdentities/id-demo",
    "storage.blobEndpoint": "https://stdemo.blob.core.windows.net/",
    "storage.queueEndpoint": "https://stdemo.queue.core.windows.net/",
    "storage.deploymentContainerName": "app-package",
    "monitoring.connectionString": "InstrumentationKey=00000000-0000-0000-0000-000000000000;"
                                   "IngestionEndpoint=https://demo.in.applicationinsights.azure.com/",
    "openAiAccess.endpoint": "https://oai-demo.openai.azure.com/",
}
AZD_PARAMETERS = {"environmentName", "location"}  # supplied by azd itself


def parse_bicep(path: Path) -> dict[str, Any]:
    parser: Any = importlib.import_module("pycep").BicepParser()
    template: dict[str, Any] = parser.parse(text=path.read_text(encoding="utf-8"))
    return template


def load_config() -> ModuleType:
    """shared/config.py on its own (standard library only), without the rest of the app."""
    spec = importlib.util.spec_from_file_location("app_config", ROOT / "shared" / "config.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


class Resolver:
    """Turns a Bicep expression into the value Azure would see, where this check can know it."""

    def __init__(self, scope: dict[str, Any]) -> None:
        self.scope = scope  # identifier -> value

    def __call__(self, expression: Any) -> Any:
        if isinstance(expression, str):
            if expression in self.scope:
                return self.scope[expression]
            return re.sub(r"\$\{(\w+)\}", lambda m: str(self.scope[m.group(1)]), expression)
        if isinstance(expression, (int, bool)):
            return expression
        if isinstance(expression, dict) and "function" in expression:
            function = expression["function"]
            if function["type"] == "string":
                (argument,) = function["parameters"].values()
                return str(self(argument))
        if isinstance(expression, dict) and "operator" in expression:
            dotted = ".".join(_accessor_path(expression))
            module, _, output = dotted.partition(".outputs.")
            key = f"{module}.{output}"
            if key in SAMPLE_OUTPUTS:
                return SAMPLE_OUTPUTS[key]
            raise KeyError(f"no sample value for {dotted}; add one to SAMPLE_OUTPUTS")
        raise ValueError(f"cannot resolve the Bicep expression {json.dumps(expression)[:200]}")


def _passed_through(expression: Any) -> str | None:
    """The identifier an app setting is set from, through a string() conversion if any."""
    if isinstance(expression, dict) and expression.get("function", {}).get("type") == "string":
        (expression,) = expression["function"]["parameters"].values()
    return expression if isinstance(expression, str) else None


def _accessor_path(expression: Any) -> list[str]:
    if isinstance(expression, str):
        return [expression]
    operator = expression["operator"]
    if operator["type"] != "property_accessor":
        raise ValueError(f"unexpected operator {operator['type']}")
    operands = operator["operands"]
    return _accessor_path(operands["operand_1"]) + _accessor_path(operands["operand_2"])


class Infra:
    """The Function App's app settings, resolved, and where each came from."""

    def __init__(self) -> None:
        self.main = parse_bicep(INFRA / "main.bicep")
        self.app = parse_bicep(INFRA / "modules" / "functionapp.bicep")
        main_defaults = {name: p.get("default") for name, p in self.main["parameters"].items()}
        main_scope = {**main_defaults, "resourceToken": "demo"}
        to_main = Resolver(main_scope)
        module_params = self.main["modules"]["app"]["config"]["params"]
        app_scope = {name: to_main(value) for name, value in module_params.items()}
        # Which main.bicep parameter feeds each module parameter (when it is passed straight through).
        self.main_param_of = {
            name: value for name, value in module_params.items() if isinstance(value, str) and value in main_defaults
        }
        to_app = Resolver(app_scope)
        raw_settings = self.app["variables"]["appSettings"]["value"]
        self.settings = {name: str(to_app(value)) for name, value in raw_settings.items()}
        self.setting_source = {
            name: self.main_param_of.get(_passed_through(value)) for name, value in raw_settings.items()
        }
        self.main_defaults = main_defaults


def checks(infra: Infra, config: ModuleType) -> list[tuple[str, Callable[[], list[str]]]]:
    settings = infra.settings
    read = set(config.SETTING_NAMES)

    def every_read_setting_is_written() -> list[str]:
        return [f"{name} is read by shared/config.py but not written by infra/ (nor listed in NOT_WRITTEN)"
                for name in sorted(read - set(settings) - set(NOT_WRITTEN))]

    def every_written_setting_is_read() -> list[str]:
        return [f"{name} is written by infra/ but read by neither the code nor the host"
                for name in sorted(set(settings) - read - HOST_SETTINGS)]

    def nothing_secret() -> list[str]:
        problems = [f"{name} is written, but must stay out of the cloud: {why}"
                    for name, why in NOT_WRITTEN.items() if name in settings]
        secret = re.compile(r"AccountKey=|SharedAccessSignature=|sig=|api[-_]?key|password|secret", re.I)
        problems += [f"{name} looks like a secret" for name, value in settings.items()
                     if secret.search(name) or secret.search(value)]
        return problems

    def code_takes_the_identity_path() -> list[str]:
        try:
            loaded = config.load_settings(settings)
        except config.ConfigError as error:
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
        if loaded.queue_name != settings["ARTIFACTS_QUEUE"]:
            problems.append(f"queue {loaded.queue_name!r} != ARTIFACTS_QUEUE {settings['ARTIFACTS_QUEUE']!r}")
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
        for setting, constant in DEFAULTS.items():
            if setting not in settings:
                continue  # reported by every_written_setting_is_read / every_read_setting_is_written
            param = infra.setting_source.get(setting)
            if param is None:
                problems.append(f"{setting} is not set from a main.bicep parameter")
                continue
            code_default = getattr(config, constant, None)
            if code_default is None:
                problems.append(f"shared/config.py has no {constant} (the default of {setting})")
            elif str(infra.main_defaults[param]) != str(code_default).removesuffix(".0"):
                problems.append(f"{param} defaults to {infra.main_defaults[param]!r}, the code to {code_default!r}")
        return problems

    def parameters_file_matches() -> list[str]:
        mapped = json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
        declared = set(infra.main["parameters"])
        problems = [f"main.parameters.json maps {name}, which main.bicep does not declare"
                    for name in sorted(set(mapped) - declared)]
        problems += [f"main.bicep parameter {name} has no default and is not mapped by main.parameters.json"
                     for name, p in infra.main["parameters"].items() if "default" not in p and name not in mapped]
        return problems

    def docs_name_every_parameter() -> list[str]:
        docs = ROOT / "README.md"
        if not docs.exists():
            return ["README.md is missing"]
        text = docs.read_text(encoding="utf-8")
        return [f"README.md does not mention the parameter {name}"
                for name in sorted(set(infra.main["parameters"]) - AZD_PARAMETERS) if f"`{name}`" not in text]

    return [
        ("infra/ writes every setting shared/config.py reads", every_read_setting_is_written),
        ("every setting infra/ writes is read by the code or the host", every_written_setting_is_read),
        ("no key, connection string or other secret in the app settings", nothing_secret),
        ("load_settings accepts them and takes the managed-identity path", code_takes_the_identity_path),
        ("host storage and telemetry connect with the user-assigned identity", host_connections_use_the_identity),
        ("main.bicep defaults equal the code's defaults", defaults_match_the_code),
        ("main.parameters.json maps only declared parameters, and all required ones", parameters_file_matches),
        ("README.md names every main.bicep parameter", docs_name_every_parameter),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write-env", type=Path, help="write the resolved app settings here, as a JSON object")
    args = parser.parse_args()

    infra = Infra()
    config = load_config()
    if args.write_env:
        args.write_env.parent.mkdir(parents=True, exist_ok=True)
        args.write_env.write_text(json.dumps(infra.settings, indent=2) + "\n", encoding="utf-8")
    passed = failed = 0
    for name, check in checks(infra, config):
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
