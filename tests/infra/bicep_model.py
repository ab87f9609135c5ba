"""The Bicep templates in infra/, parsed (with pycep, checkov's parser) and resolved to what Azure sees.

``Infra(overrides)`` resolves ``main.bicep`` with its defaults, or with some parameters set (a
scenario such as "webhooks on"), follows the values into the Function App module, and exposes the
app settings, the site's properties, the queues created and the roles granted. Module outputs that
only Azure knows (an identity's client id, an endpoint) are replaced by the samples below.
"""

from __future__ import annotations

import copy
import functools
import importlib
import json
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
MODULES = INFRA / "modules"

# What Azure returns for the module outputs main.bicep hands to the modules (samples).
CLIENT_ID = "6b1f3c52-0c2e-4f4e-9d53-4a0d8d1e7c21"
RESOURCE_GROUP_ID = "/subscriptions/0000/resourceGroups/rg-demo"
IDENTITIES = f"{RESOURCE_GROUP_ID}/providers/Microsoft.ManagedIdentity/userAssignedIdentities"
IDENTITY_ID = f"{IDENTITIES}/id-demo"
DEPLOYMENT_IDENTITY_ID = f"{IDENTITIES}/id-deploy-demo"
SAMPLE_OUTPUTS = {
    "identity.clientId": CLIENT_ID,
    "identity.id": IDENTITY_ID,
    "identity.principalId": "0d7c5b8e-2f5a-4c1e-9b0e-7a3d6f2c1b90",
    "deploymentIdentity.clientId": "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f",
    "deploymentIdentity.id": DEPLOYMENT_IDENTITY_ID,
    "deploymentIdentity.principalId": "2e3f4a5b-6c7d-4e8f-9a0b-1c2d3e4f5a6b",
    "storage.name": "stdemo",
    "storage.blobEndpoint": "https://stdemo.blob.core.windows.net/",
    "storage.queueEndpoint": "https://stdemo.queue.core.windows.net/",
    "storage.deploymentContainerName": "app-package",
    "monitoring.connectionString": "InstrumentationKey=00000000-0000-0000-0000-000000000000;"
                                   "IngestionEndpoint=https://demo.in.applicationinsights.azure.com/",
    "monitoring.appInsightsName": "appi-demo",
    "monitoring.appInsightsId": f"{RESOURCE_GROUP_ID}/providers/Microsoft.Insights/components/appi-demo",
    "openAiAccess.endpoint": "https://oai-demo.openai.azure.com/",
    "app.name": "func-demo",
    "eventGrid.endpoint": "https://evgt-demo.westeurope-1.eventgrid.azure.net/api/events",
}
SAMPLE_FUNCTIONS = {  # what ARM's own functions return, as far as the templates use them
    "tenant": {"tenantId": "11111111-2222-4333-8444-555555555555"},
    "subscription": {"subscriptionId": "00000000-0000-0000-0000-000000000000", "id": "/subscriptions/0000"},
    "environment": {"authentication": {"loginEndpoint": "https://login.microsoftonline.com/"},
                    "suffixes": {"keyvaultDns": ".vault.azure.net"}},
}

# Built-in role definition IDs (the same in every tenant).
QUEUE_DATA_CONTRIBUTOR = "974c5e8b-45b9-4653-ba55-5f855dd0fb88"
QUEUE_DATA_MESSAGE_SENDER = "c6a89b2d-59bc-44d0-9896-0f6e12d7b80a"
QUEUE_DATA_READER = "19e7f393-937e-4f77-808e-94535e297925"
QUEUE_ROLES = {
    QUEUE_DATA_CONTRIBUTOR: "Storage Queue Data Contributor",
    QUEUE_DATA_MESSAGE_SENDER: "Storage Queue Data Message Sender",
    QUEUE_DATA_READER: "Storage Queue Data Reader",
    "8a0f0c08-91a1-4084-bc3d-661d67233fed": "Storage Queue Data Message Processor",
}
# The principals access.bicep grants queue roles to: the app's identity, and optionally a developer
# (given the same queue roles, for local runs against the cloud resources).
PRINCIPALS = ("appPrincipalId", "developerPrincipalId")
# The identity the platform reads the deployment package with (access.bicep's parameter).
DEPLOYMENT_PRINCIPAL = "deploymentPrincipalId"

BLOB_DATA_OWNER = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
BLOB_DATA_READER = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"
BLOB_DELEGATOR = "db58b8e5-c6ad-4a2a-8342-4190687cbf4a"
BLOB_ROLES = {
    BLOB_DATA_OWNER: "Storage Blob Data Owner",
    BLOB_DATA_CONTRIBUTOR: "Storage Blob Data Contributor",
    BLOB_DATA_READER: "Storage Blob Data Reader",
    BLOB_DELEGATOR: "Storage Blob Delegator",
}
# The scope ``Infra.blob_grants`` names for a role on the whole storage account.
ACCOUNT = "(the storage account)"


def parse_bicep(path: Path) -> dict[str, Any]:
    """The template, parsed once per text (parsing is slow, and the checks resolve many scenarios);
    each caller gets its own copy."""
    return copy.deepcopy(_parsed(path.read_text(encoding="utf-8")))


@functools.lru_cache(maxsize=64)
def _parsed(text: str) -> dict[str, Any]:
    parser: Any = importlib.import_module("pycep").BicepParser()
    template: dict[str, Any] = parser.parse(text=text)
    return template


def bicep_text(value: Any) -> str:
    """A parameter value as text, as main.parameters.json and the app settings write it: true, 6."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def is_call(expression: Any) -> bool:
    return (isinstance(expression, dict) and len(expression) == 1
            and isinstance(expression.get("function"), dict) and "type" in expression["function"])


def is_operator(expression: Any, kind: str | None = None) -> bool:
    """``{"operator": {"type", "operands"}}``; an object literal may have a key named operator too."""
    if not (isinstance(expression, dict) and len(expression) == 1 and isinstance(expression.get("operator"), dict)
            and {"type", "operands"} <= set(expression["operator"])):
        return False
    return kind is None or expression["operator"]["type"] == kind


def is_object(expression: Any) -> bool:
    """An object literal (pycep writes calls and operators as dicts too, under these keys)."""
    return isinstance(expression, dict) and not is_call(expression) and not is_operator(expression)


class Resolver:
    """Turns a Bicep expression into the value Azure would see, where this check can know it."""

    def __init__(self, scope: Mapping[str, Any], outputs: Mapping[str, Any] | None = None,
                 base: Path = INFRA) -> None:
        self.scope = scope  # identifier -> value
        self.outputs = SAMPLE_OUTPUTS if outputs is None else outputs  # "module.output" -> value
        self.base = base  # the template's folder: loadJsonContent() paths are relative to it

    def __call__(self, expression: Any) -> Any:
        if isinstance(expression, str):
            return self._identifier_or_text(expression)
        if expression is None or isinstance(expression, (int, bool)):
            return expression
        if isinstance(expression, list):
            return [self(item) for item in expression]
        if is_call(expression):
            return self._call(expression)
        if is_operator(expression):
            return self._operator(expression)
        return {self._key(key): self(value) for key, value in expression.items()}

    def _key(self, key: str) -> str:
        """An object literal's key: quotes dropped, ``${name}`` interpolated."""
        key = key.strip("'")
        return str(self._identifier_or_text(key)) if "${" in key else key

    def _identifier_or_text(self, expression: str) -> Any:
        """A name in scope, else a string with ``${name}`` interpolations."""
        if expression in self.scope:
            return self.scope[expression]
        return re.sub(r"\$\{(\w+)\}", lambda m: bicep_text(self.scope[m.group(1)]), expression)

    def _operator(self, expression: dict[str, Any]) -> Any:
        operator = expression["operator"]
        operands = operator["operands"]
        kind = operator["type"]
        if kind == "conditional":
            return self(operands["true_value"] if self(operands["condition"]) else operands["false_value"])
        if kind == "add":
            return self(operands["operand_1"]) + self(operands["operand_2"])
        if kind == "not":
            return not self(operands["bool_value"])
        if kind in ("and", "or"):
            first, second = bool(self(operands["operand_1"])), bool(self(operands["operand_2"]))
            return (first and second) if kind == "and" else (first or second)
        if kind == "property_accessor":
            return self._property(_accessor_path(expression))
        raise ValueError(f"cannot resolve the Bicep operator {kind}")

    def _property(self, path: list[str]) -> Any:
        """``object.a.b`` on a known value, or ``module.outputs.name`` (a sample of what Azure returns)."""
        head, *rest = path
        if head in self.scope and isinstance(self.scope[head], dict):
            value = self.scope[head]
            for key in rest:
                value = value[key]
            return value
        dotted = ".".join(path)
        module, _, output = dotted.partition(".outputs.")
        key = f"{module}.{output}"
        if key in self.outputs:
            return self.outputs[key]
        raise KeyError(f"no sample value for {dotted}; add one to SAMPLE_OUTPUTS")

    def _call(self, expression: dict[str, Any]) -> Any:
        """The Bicep functions the templates use, on values this check knows."""
        function = expression["function"]
        kind = function["type"]
        parameters = function.get("parameters") or {}
        if kind == "load_json_content":
            return json.loads((self.base / parameters["file_path"]).read_text(encoding="utf-8"))
        if kind in SAMPLE_FUNCTIONS and not parameters:
            value: Any = SAMPLE_FUNCTIONS[kind]
            # pycep keeps ``tenant().tenantId`` as the call plus "[Token('STRING', 'tenantId')]"
            for name in re.findall(r"'(\w+)'\)", str(function.get("property_name") or "")):
                value = value[name]
            return value
        arguments = [self(argument) for argument in parameters.values() if argument is not None]
        if kind not in FUNCTIONS:
            raise ValueError(f"cannot resolve the Bicep expression {json.dumps(expression)[:200]}")
        return FUNCTIONS[kind](arguments)


def _string(arguments: list[Any]) -> str:
    (value,) = arguments
    return str(value) if isinstance(value, bool) else bicep_text(value)  # ARM's string(true) is "True"


# Bicep's functions the templates use, on resolved arguments.
FUNCTIONS: dict[str, Callable[[list[Any]], Any]] = {
    "string": _string,
    "concat": lambda arguments: [item for argument in arguments for item in argument],
    "union": lambda arguments: {key: value for argument in arguments for key, value in argument.items()},
    "max": max,
    "empty": lambda arguments: not arguments[0],
    "split": lambda arguments: str(arguments[0]).split(str(arguments[1])),
    "to_lower": lambda arguments: str(arguments[0]).lower(),
}


def resolve_variables(template: dict[str, Any], scope: dict[str, Any], resolve: Resolver) -> None:
    """Adds the template's variables to ``scope``, in order, where they resolve (the rest are left out)."""
    for name, variable in template.get("variables", {}).items():
        if name in scope:
            continue  # a sample set beforehand (resourceToken) stands
        try:
            scope[name] = resolve(variable["value"])
        except (KeyError, ValueError, TypeError):
            continue


def passed_through(expression: Any) -> str | None:
    """The identifier a value is set from, through a string() conversion or a condition on it."""
    if is_call(expression) and expression["function"]["type"] == "string":
        (expression,) = expression["function"]["parameters"].values()
    if is_operator(expression, "conditional"):
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


def object_entries(expression: Any, variables: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """Every ``key: expression`` of the object literals an object-valued expression can be built
    from: through union(), both branches of a condition, and variables."""
    if isinstance(expression, str) and expression in variables:
        yield from object_entries(variables[expression]["value"], variables)
    elif is_call(expression) and expression["function"]["type"] == "union":
        for argument in expression["function"]["parameters"].values():
            yield from object_entries(argument, variables)
    elif is_operator(expression, "conditional"):
        operands = expression["operator"]["operands"]
        yield from object_entries(operands["true_value"], variables)
        yield from object_entries(operands["false_value"], variables)
    elif is_object(expression):
        yield from expression.items()


def loop_and_body(resource: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """A parsed resource's ``for`` loop (None if it has none) and its body, under any ``if``."""
    config: dict[str, Any] = resource["config"]
    if "loop_type" in config or "condition" in config:
        return config.get("loop_type"), config["config"]
    return None, config


def role_assignments(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any] | None]]:
    """(role id, assignment body, loop) of every role assignment a template makes; the role is read
    from its ``roles`` variable (``roles.<name>``)."""
    roles = template["variables"]["roles"]["value"]
    for resource in template["resources"].values():
        if resource["type"] != "Microsoft.Authorization/roleAssignments":
            continue
        loop, body = loop_and_body(resource)
        role_name = body["properties"]["roleDefinitionId"]["function"]["parameters"]["resource_name_1"]
        yield roles[_accessor_path(role_name)[-1]], body, loop


class Infra:
    """The Function App's app settings and site, resolved, and where each setting came from, with
    main.bicep's defaults overridden by ``overrides``; on demand, the queues and the roles."""

    def __init__(self, overrides: Mapping[str, Any] | None = None) -> None:
        self.main = parse_bicep(INFRA / "main.bicep")
        self.app = parse_bicep(MODULES / "functionapp.bicep")
        self.storage = parse_bicep(MODULES / "storage.bicep")
        self.access = parse_bicep(MODULES / "access.bicep")
        self.main_defaults = {name: p.get("default") for name, p in self.main["parameters"].items()}
        self.main_scope: dict[str, Any] = {**self.main_defaults, **(overrides or {}), "resourceToken": "demo"}
        resolve_variables(self.main, self.main_scope, Resolver(self.main_scope))
        module_params = self._module_body("app")["params"]
        self.app_scope = self._module_scope("app", Resolver(self.main_scope))
        # Which main.bicep parameter feeds each module parameter (when it is passed straight through).
        self.main_param_of = {
            name: value for name, value in module_params.items()
            if isinstance(value, str) and value in self.main_defaults
        }
        to_app = Resolver(self.app_scope, base=MODULES)
        resolve_variables(self.app, self.app_scope, to_app)
        site = self.app["resources"]["app"]["config"]
        self._site, self._to_app = site, to_app
        raw_settings = dict(object_entries(_app_settings_expression(site), self.app["variables"]))
        self.settings = {name: str(value) for name, value in self.app_scope[_app_settings_variable(site)].items()}
        self.setting_source = {
            name: self.main_param_of.get(passed_through(value) or "") for name, value in raw_settings.items()
        }

    def site(self, path: str) -> Any:
        """A property of the Function App (``properties.functionAppConfig...``), resolved."""
        node: Any = self._site
        for key in path.split("."):
            node = node[key]
        return self._to_app(node)

    def module_params(self, module: str) -> dict[str, Any]:
        """A module's parameters as main.bicep passes them (those that resolve)."""
        return self._module_scope(module, Resolver(self.main_scope))

    def module_resource(self, module: str, resource: str, path: str) -> Any:
        """A property of a resource inside one of main.bicep's modules, resolved with the parameters
        main.bicep passes it (and the module's own defaults and variables)."""
        template = parse_bicep(INFRA / self.main["modules"][module]["detail"]["path"])
        scope = self.module_params(module)
        for name, parameter in template["parameters"].items():
            if name not in scope and isinstance(parameter.get("default"), (str, int, bool, list)):
                scope[name] = parameter["default"]
        resolve = Resolver(scope, base=MODULES)
        resolve_variables(template, scope, resolve)
        node: Any = loop_and_body(template["resources"][resource])[1]
        for key in path.split("."):
            node = node[key]
        return resolve(node)

    def module_enabled(self, module: str) -> bool:
        """Whether main.bicep deploys the module in this scenario (its ``if``, when it has one)."""
        config = self.main["modules"][module]["config"]
        return "condition" not in config or bool(Resolver(self.main_scope)(config["condition"]))

    def queue_access(self) -> tuple[list[str], dict[str, dict[str, set[str]]], list[str]]:
        """The queues storage.bicep creates; principal -> queue -> queue roles access.bicep grants
        there; and every queue role granted wider than one queue."""
        storage_scope = self._module_scope("storage", Resolver(self.main_scope))
        created = self._storage_queues(storage_scope)
        grants, problems = self._queue_grants(self._to_access(storage_scope))
        return created, grants, problems

    def blob_grants(self) -> dict[str, dict[str, set[str]]]:
        """principal parameter -> scope -> blob roles access.bicep grants there; the scope is
        ``ACCOUNT`` or a container's name, or says what this model cannot tell."""
        storage_scope = self._module_scope("storage", Resolver(self.main_scope))
        self._storage_queues(storage_scope)
        to_main = self._to_access(storage_scope)
        access_params = self._module_body("access")["params"]
        resources = self.access["resources"]
        grants: dict[str, dict[str, set[str]]] = {}
        for role, body, loop in role_assignments(self.access):
            if role not in BLOB_ROLES:
                continue
            principal = str(body["properties"]["principalId"])
            for scope in _blob_scopes(resources, loop, body["scope"], access_params, to_main):
                grants.setdefault(principal, {}).setdefault(scope, set()).add(role)
        return grants

    def storage_containers(self) -> list[str]:
        """The blob containers storage.bicep creates."""
        storage_scope = self._module_scope("storage", Resolver(self.main_scope))
        self._storage_queues(storage_scope)
        to_storage = Resolver(storage_scope, base=MODULES)
        containers: list[str] = []
        for resource in self.storage["resources"].values():
            if resource["type"] != "Microsoft.Storage/storageAccounts/blobServices/containers":
                continue
            loop, body = loop_and_body(resource)
            containers += [to_storage(body["name"])] if loop is None else to_storage(loop["detail"]["array_name"])
        return containers

    def storage_resource(self, resource_type: str) -> tuple[dict[str, Any], Resolver] | None:
        """The body of the one resource of this type storage.bicep declares, and a resolver for it."""
        storage_scope = self._module_scope("storage", Resolver(self.main_scope))
        self._storage_queues(storage_scope)
        for resource in self.storage["resources"].values():
            if resource["type"] == resource_type:
                return loop_and_body(resource)[1], Resolver(storage_scope, base=MODULES)
        return None

    def _to_access(self, storage_scope: dict[str, Any]) -> Resolver:
        """Resolves what main.bicep hands access.bicep, the storage module's outputs included."""
        storage_outputs = {
            f"storage.{name}": storage_scope[output["value"]]
            for name, output in self.storage["outputs"].items()
            if isinstance(output["value"], str) and output["value"] in storage_scope
        }
        return Resolver(self.main_scope, {**SAMPLE_OUTPUTS, **storage_outputs})

    def account_roles(self) -> dict[str, set[str]]:
        """principal parameter -> roles access.bicep grants it on the whole storage account."""
        granted: dict[str, set[str]] = {}
        for role, body, loop in role_assignments(self.access):
            if loop is None and body["scope"] == "account":
                granted.setdefault(str(body["properties"]["principalId"]), set()).add(role)
        return granted

    def _module_body(self, module: str) -> dict[str, Any]:
        config: dict[str, Any] = self.main["modules"][module]["config"]
        return config["config"] if "condition" in config else config

    def _module_scope(self, module: str, to_main: Resolver) -> dict[str, Any]:
        scope = {}
        for name, value in self._module_body(module)["params"].items():
            try:
                scope[name] = to_main(value)
            except (KeyError, ValueError, TypeError):
                continue
        return scope

    def _storage_queues(self, scope: dict[str, Any]) -> list[str]:
        """The queue names storage.bicep creates; ``scope`` gains its variables, in order."""
        to_storage = Resolver(scope, base=MODULES)
        for name, variable in self.storage["variables"].items():
            scope[name] = to_storage(variable["value"])
        queues: list[str] = []
        for resource in self.storage["resources"].values():
            if resource["type"] != "Microsoft.Storage/storageAccounts/queueServices/queues":
                continue
            loop, body = loop_and_body(resource)
            if loop is None:
                queues.append(to_storage(body["name"]))
            else:
                queues += to_storage(loop["detail"]["array_name"])
        return queues

    def _queue_grants(self, to_main: Resolver) -> tuple[dict[str, dict[str, set[str]]], list[str]]:
        """principal -> queue -> queue roles granted by access.bicep, and any grant scoped wider than
        one queue."""
        resources = self.access["resources"]
        access_params = self._module_body("access")["params"]
        grants: dict[str, dict[str, set[str]]] = {principal: {} for principal in PRINCIPALS}
        problems = []
        for role, body, loop in role_assignments(self.access):
            principal = body["properties"]["principalId"]
            queue_list = _queue_list_of(resources, loop, body["scope"])
            if queue_list is None:
                if role in QUEUE_ROLES:
                    problems.append(f"{principal} is granted {QUEUE_ROLES[role]} wider than one queue "
                                    f"(scope {body['scope']!r})")
                continue
            for queue in to_main(access_params[queue_list]):
                grants.setdefault(principal, {}).setdefault(queue, set()).add(role)
        return grants, problems


def _app_settings_expression(site: dict[str, Any]) -> Any:
    """The object whose items() the site's appSettings loop runs over."""
    loop = site["properties"]["siteConfig"]["appSettings"]["loop_type"]
    if loop["type"] != "object":
        raise ValueError("siteConfig.appSettings should loop over items(<object of settings>)")
    return loop["detail"]["object_name"]


def _app_settings_variable(site: dict[str, Any]) -> str:
    settings = _app_settings_expression(site)
    if not isinstance(settings, str):
        raise ValueError("siteConfig.appSettings should loop over items(<a variable>)")
    return settings


QUEUE_TYPE = "Microsoft.Storage/storageAccounts/queueServices/queues"
CONTAINER_TYPE = "Microsoft.Storage/storageAccounts/blobServices/containers"
ACCOUNT_TYPE = "Microsoft.Storage/storageAccounts"


def _queue_list_of(resources: dict[str, Any], loop: dict[str, Any] | None, scope: Any) -> str | None:
    """For a role assignment looping over a list of queue names and scoped to the matching queue,
    each in turn (``scope: queues[i]``, ``queues`` an existing queue looped over the same list): the
    name of that list. None for any other scope."""
    return _scope_list_of(resources, loop, scope, QUEUE_TYPE)


def _scope_list_of(resources: dict[str, Any], loop: dict[str, Any] | None, scope: Any, kind: str) -> str | None:
    """The same for any existing resource of type ``kind`` looped over a list of names."""
    if loop is None or not is_operator(scope, "index_accessor"):
        return None
    operands = scope["operator"]["operands"]
    target = resources.get(operands["operand_1"])
    if operands["operand_2"] != loop["detail"].get("index_name") or not isinstance(target, dict):
        return None
    target_loop, _ = loop_and_body(target)
    name_list: str = loop["detail"]["array_name"]
    if (target["type"] != kind or target.get("existing") is not True
            or target_loop is None or target_loop["detail"]["array_name"] != name_list):
        return None
    return name_list


def _blob_scopes(resources: dict[str, Any], loop: dict[str, Any] | None, scope: Any,
                 access_params: dict[str, Any], to_main: Resolver) -> list[str]:
    """What a blob role assignment of access.bicep reaches: ``ACCOUNT``, or container names (a
    container looped over a list of names, or one existing container whose name is a parameter)."""
    container_list = _scope_list_of(resources, loop, scope, CONTAINER_TYPE)
    if container_list is not None:
        return [str(name) for name in to_main(access_params[container_list])]
    target = resources.get(scope) if isinstance(scope, str) else None
    if isinstance(target, dict) and target.get("existing") is True and loop is None:
        if target["type"] == ACCOUNT_TYPE:
            return [ACCOUNT]
        name = target["config"].get("name")
        if target["type"] == CONTAINER_TYPE and isinstance(name, str):
            return [str(to_main(access_params[name]) if name in access_params else name)]
    return [f"(a scope this check cannot name: {json.dumps(scope)[:80]})"]
