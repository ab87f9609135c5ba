"""Check that the app settings infra/ writes are exactly the ones the code reads, in the form it accepts.

Parses the Bicep templates (with pycep, the parser checkov uses), follows each app setting of the
Function App back to a parameter of ``infra/main.bicep`` (its default) or to a module output (a
sample of what Azure returns), and then:

- every setting ``shared/config.py`` reads is written, or deliberately left out (listed below);
- every setting written is read by the code or by the Functions host;
- ``load_settings`` accepts them and takes the identity-based path (no key, no connection string);
- infra/ creates exactly the queues the app uses (the ones ``function_app.py`` triggers on and
  ``shared/`` sends to) and gives the app's identity, queue by queue, the role each one needs;
- the defaults in main.bicep are the code's defaults, and main.parameters.json falls back to the
  same; main.parameters.json and README.md name only (and, for the docs, all) parameters
  main.bicep declares.

Runs in the checkov environment (``.venv-checkov``; ``shared/config.py`` needs only the standard
library):

    .venv-checkov/bin/python tests/infra/settings_check.py [--write-env settings.json]

``--write-env`` saves the settings as resolved, for ``tests/worker/index_check.py --cloud-env``.
The last line is ``N passed, N failed``; the exit status is non-zero on any failure.
"""

from __future__ import annotations

import argparse
import ast
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
MODULES = INFRA / "modules"

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
    "ARTIFACTS_MAX_FILES_PER_RUN": "DEFAULT_MAX_FILES_PER_RUN",
    "ARTIFACTS_RUNS_QUEUE": "DEFAULT_RUNS_QUEUE",
    "ARTIFACTS_EVENTS_QUEUE": "DEFAULT_EVENTS_QUEUE",
    "ARTIFACTS_RUN_MAX_HOURS": "DEFAULT_RUN_MAX_HOURS",
    "ARTIFACTS_POLL_MIN_SECONDS": "DEFAULT_POLL_MIN_SECONDS",
    "ARTIFACTS_POLL_MAX_SECONDS": "DEFAULT_POLL_MAX_SECONDS",
}
# App setting -> the Settings field holding it, for defaults the code has no constant for: the
# code's default is what load_settings yields when the setting is absent.
FALLBACK_FIELDS = {
    "AZURE_OPENAI_BACKGROUND": "background",
}
# Built-in role definition IDs (the same in every tenant) of the data roles on queues.
QUEUE_DATA_CONTRIBUTOR = "974c5e8b-45b9-4653-ba55-5f855dd0fb88"
QUEUE_DATA_MESSAGE_SENDER = "c6a89b2d-59bc-44d0-9896-0f6e12d7b80a"
QUEUE_ROLES = {
    QUEUE_DATA_CONTRIBUTOR: "Storage Queue Data Contributor",
    QUEUE_DATA_MESSAGE_SENDER: "Storage Queue Data Message Sender",
    "19e7f393-937e-4f77-808e-94535e297925": "Storage Queue Data Reader",
    "8a0f0c08-91a1-4084-bc3d-661d67233fed": "Storage Queue Data Message Processor",
}
# The principals access.bicep grants roles to: the app's identity, and optionally a developer
# (given the same data roles, for local runs against the cloud resources).
PRINCIPALS = ("appPrincipalId", "developerPrincipalId")
# A queue send in shared/: ``<...>.queues.send(<...>.queues.<field>, ...)`` or ``send_many``.
QUEUE_SEND = re.compile(r"\.send(?:_many)?\(\s*[\w.]*?\bqueues\.(\w+)\b")
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


def bicep_text(value: Any) -> str:
    """A parameter value as text, as main.parameters.json and the app settings write it: true, 6."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class Resolver:
    """Turns a Bicep expression into the value Azure would see, where this check can know it."""

    def __init__(self, scope: dict[str, Any], outputs: dict[str, Any] | None = None) -> None:
        self.scope = scope  # identifier -> value
        self.outputs = SAMPLE_OUTPUTS if outputs is None else outputs  # "module.output" -> value

    def __call__(self, expression: Any) -> Any:
        if isinstance(expression, str):
            if expression in self.scope:
                return self.scope[expression]
            return re.sub(r"\$\{(\w+)\}", lambda m: bicep_text(self.scope[m.group(1)]), expression)
        if isinstance(expression, (int, bool)):
            return expression
        if isinstance(expression, list):
            return [self(item) for item in expression]
        if isinstance(expression, dict) and "function" in expression:
            return self._call(expression)
        if isinstance(expression, dict) and "operator" in expression:
            return self._operator(expression)
        raise ValueError(f"cannot resolve the Bicep expression {json.dumps(expression)[:200]}")

    def _operator(self, expression: dict[str, Any]) -> Any:
        """``condition ? a : b``, or ``module.outputs.name`` (a sample of what Azure returns)."""
        operator = expression["operator"]
        if operator["type"] == "conditional":
            operands = operator["operands"]
            return self(operands["true_value"] if self(operands["condition"]) else operands["false_value"])
        dotted = ".".join(_accessor_path(expression))
        module, _, output = dotted.partition(".outputs.")
        key = f"{module}.{output}"
        if key in self.outputs:
            return self.outputs[key]
        raise KeyError(f"no sample value for {dotted}; add one to SAMPLE_OUTPUTS")

    def _call(self, expression: dict[str, Any]) -> Any:
        """The Bicep functions the templates use on values this check knows: string() and concat()."""
        function = expression["function"]
        arguments = [self(argument) for argument in function["parameters"].values()]
        if function["type"] == "string" and len(arguments) == 1:
            if isinstance(arguments[0], bool):
                return str(arguments[0])  # ARM's string(true) is "True"
            return bicep_text(arguments[0])
        if function["type"] == "concat" and all(isinstance(argument, list) for argument in arguments):
            return [item for argument in arguments for item in argument]
        raise ValueError(f"cannot resolve the Bicep expression {json.dumps(expression)[:200]}")


def _passed_through(expression: Any) -> str | None:
    """The identifier an app setting is set from, through a string() conversion or a condition on it."""
    if isinstance(expression, dict) and expression.get("function", {}).get("type") == "string":
        (expression,) = expression["function"]["parameters"].values()
    if isinstance(expression, dict) and expression.get("operator", {}).get("type") == "conditional":
        expression = expression["operator"]["operands"]["condition"]
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
    """The Function App's app settings, resolved, and where each came from, with main.bicep's
    defaults; on demand, the queues created and the queue roles granted."""

    def __init__(self) -> None:
        self.main = parse_bicep(INFRA / "main.bicep")
        self.app = parse_bicep(MODULES / "functionapp.bicep")
        self.storage = parse_bicep(MODULES / "storage.bicep")
        self.access = parse_bicep(MODULES / "access.bicep")
        main_defaults = {name: p.get("default") for name, p in self.main["parameters"].items()}
        self.main_scope = {**main_defaults, "resourceToken": "demo"}
        to_main = Resolver(self.main_scope)
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

    def queue_access(self) -> tuple[list[str], dict[str, dict[str, set[str]]], list[str]]:
        """The queues storage.bicep creates; principal -> queue -> queue roles access.bicep grants
        there; and every queue role granted wider than one queue."""
        storage_scope = self._module_scope("storage", Resolver(self.main_scope))
        created = self._storage_queues(storage_scope)
        # The queue-name lists the storage module hands on (to access.bicep, through main.bicep).
        storage_outputs = {
            f"storage.{name}": storage_scope[output["value"]]
            for name, output in self.storage["outputs"].items()
            if isinstance(output["value"], str) and output["value"] in storage_scope
        }
        grants, problems = self._queue_grants(Resolver(self.main_scope, {**SAMPLE_OUTPUTS, **storage_outputs}))
        return created, grants, problems

    def _module_scope(self, module: str, to_main: Resolver) -> dict[str, Any]:
        """A module's parameters as main.bicep passes them (those that resolve; the rest left out)."""
        scope = {}
        for name, value in self.main["modules"][module]["config"]["params"].items():
            try:
                scope[name] = to_main(value)
            except (KeyError, ValueError):
                continue
        return scope

    def _storage_queues(self, scope: dict[str, Any]) -> list[str]:
        """The queue names storage.bicep creates; ``scope`` gains its variables, in order."""
        to_storage = Resolver(scope)
        for name, variable in self.storage["variables"].items():
            scope[name] = to_storage(variable["value"])
        queues: list[str] = []
        for resource in self.storage["resources"].values():
            if resource["type"] != "Microsoft.Storage/storageAccounts/queueServices/queues":
                continue
            loop, body = _loop_and_body(resource)
            if loop is None:
                queues.append(to_storage(body["name"]))
            else:
                queues += to_storage(loop["detail"]["array_name"])
        return queues

    def _queue_grants(self, to_main: Resolver) -> tuple[dict[str, dict[str, set[str]]], list[str]]:
        """principal -> queue -> queue roles granted by access.bicep, and any grant scoped wider than
        one queue."""
        roles = self.access["variables"]["roles"]["value"]
        resources = self.access["resources"]
        access_params = self.main["modules"]["access"]["config"]["params"]
        grants: dict[str, dict[str, set[str]]] = {principal: {} for principal in PRINCIPALS}
        problems = []
        for name, resource in resources.items():
            if resource["type"] != "Microsoft.Authorization/roleAssignments":
                continue
            loop, body = _loop_and_body(resource)
            role_name = body["properties"]["roleDefinitionId"]["function"]["parameters"]["resource_name_1"]
            role = roles[_accessor_path(role_name)[-1]]
            principal = body["properties"]["principalId"]
            queue_list = _queue_list_of(resources, loop, body["scope"])
            if queue_list is None:
                if role in QUEUE_ROLES:
                    problems.append(f"{name} grants {QUEUE_ROLES[role]} wider than one queue (scope {body['scope']!r})")
                continue
            for queue in to_main(access_params[queue_list]):
                grants.setdefault(principal, {}).setdefault(queue, set()).add(role)
        return grants, problems


def _loop_and_body(resource: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """A parsed resource's ``for`` loop (None if it has none) and its body, under any ``if``."""
    config: dict[str, Any] = resource["config"]
    if "loop_type" in config or "condition" in config:
        return config.get("loop_type"), config["config"]
    return None, config


def _queue_list_of(resources: dict[str, Any], loop: dict[str, Any] | None, scope: Any) -> str | None:
    """For a role assignment looping over a list of queue names and scoped to the matching queue,
    each in turn (``scope: queues[i]``, ``queues`` an existing queue looped over the same list): the
    name of that list. None for any other scope."""
    if loop is None or not isinstance(scope, dict) or scope.get("operator", {}).get("type") != "index_accessor":
        return None
    operands = scope["operator"]["operands"]
    target = resources.get(operands["operand_1"])
    if operands["operand_2"] != loop["detail"].get("index_name") or not isinstance(target, dict):
        return None
    target_loop, _ = _loop_and_body(target)
    queue_list: str = loop["detail"]["array_name"]
    if (target["type"] != "Microsoft.Storage/storageAccounts/queueServices/queues" or target.get("existing") is not True
            or target_loop is None or target_loop["detail"]["array_name"] != queue_list):
        return None
    return queue_list


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
    for path in sorted((ROOT / "shared").glob("*.py")):
        fields |= set(QUEUE_SEND.findall(path.read_text(encoding="utf-8")))
    return {str(getattr(queues, field)) for field in fields}


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
        # A queue the app only writes to (a send or an output binding) needs only Message Sender.
        needed = {queue: {QUEUE_DATA_MESSAGE_SENDER} for queue in sends | set(outputs.values())}
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

    def code_default(setting: str) -> Any:
        if setting in FALLBACK_FIELDS:
            without = {name: value for name, value in settings.items() if name != setting}
            return getattr(config.load_settings(without), FALLBACK_FIELDS[setting])
        return getattr(config, DEFAULTS[setting], None)

    def defaults_match_the_code() -> list[str]:
        problems = []
        for setting in [*DEFAULTS, *FALLBACK_FIELDS]:
            if setting not in settings:
                continue  # reported by every_written_setting_is_read / every_read_setting_is_written
            param = infra.setting_source.get(setting)
            if param is None:
                problems.append(f"{setting} is not set from a main.bicep parameter")
                continue
            default = code_default(setting)
            if default is None:
                problems.append(f"shared/config.py has no {DEFAULTS[setting]} (the default of {setting})")
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
        ("infra/ creates exactly the app's queues; its identity holds the role each needs, queue by queue",
         queues_and_their_roles),
        ("main.bicep defaults equal the code's defaults", defaults_match_the_code),
        ("main.parameters.json maps only declared parameters, all required ones, with main.bicep's defaults",
         parameters_file_matches),
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
