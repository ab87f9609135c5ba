"""Deployment checks for running the app in production: telemetry, concurrency, identity, secrets.

Each check reads the facts from where they are set (host.json, the Bicep templates, function_app.py,
shared/, the docs in docs/) and fails when two of them disagree:

- host.json keeps OpenTelemetry mode and complete request telemetry (no ``Host.Results`` filter, no
  sampling of requests), and infra/ and local.settings.json.example give the Python worker what it
  needs for OpenTelemetry;
- the in-flight numbers in docs/deploy.md are what host.json and infra/ set, the worker has a thread for
  each of them, and the downloads they allow fit every instance size infra/ offers;
- Easy Auth, when on, requires a token everywhere but on the webhook route function_app.py serves,
  and admits only members of the groups easyAuthAllowedGroups names (when it names any);
- the webhook secret is only a Key Vault reference resolved with the app's identity, in a vault with
  RBAC, soft delete and purge protection; the postprovision hook gets the outputs it reads;
- the app's identity can sign user delegation keys (download links) with shared keys still off;
- the app's identity holds blob data roles only on the containers it uses (never the account or the
  deployment package), and the platform reads the package with an identity of its own;
- basic (user name and password) publishing credentials are off for FTP and SCM;
- the app runs on Python 3.13 in Azure, the version of the project's environments, ruff and mypy,
  with the azure-functions 2.x and the pinned worker library (azure-functions-runtime) that
  requirements.txt lists, as the Functions documentation for 3.13 asks;
- Storage deletes the status container's short-lived records (webhook deliveries, idempotency
  claims, unusable messages) once they can no longer matter, and docs/deploy.md says when;
- the alerts and the workbook query only the metrics the app emits, and only when asked to alert.
"""

from __future__ import annotations

import ast
import json
import re
import tomllib
from collections.abc import Callable, Mapping
from typing import Any

from shared.limits import MAX_LINK_MINUTES
from tests.infra.bicep_model import (
    ACCOUNT,
    BLOB_DATA_CONTRIBUTOR,
    BLOB_DATA_READER,
    BLOB_DELEGATOR,
    BLOB_ROLES,
    DEPLOYMENT_PRINCIPAL,
    IDENTITY_ID,
    MODULES,
    ROOT,
    SAMPLE_OUTPUTS,
    Infra,
    Resolver,
    parse_bicep,
    role_assignments,
)

Check = tuple[str, Callable[[], list[str]]]

# The scenarios every check runs over: a plain ``azd up``, and every option turned on.
SCENARIOS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "every option on": {
        "webhookEnabled": True,
        "easyAuthEnabled": True,
        "easyAuthClientId": "3f0c6a52-7d1e-4b8a-9c2f-5e6d7a8b9c0d",
        "alertEmail": "operator@example.com",
        "developerPrincipalId": "8e2b1c4d-5f6a-4b7c-8d9e-0f1a2b3c4d5e",
        "eventGridEnabled": True,
    },
}

# The OpenTelemetry metrics the app emits (the contract with shared/; docs/operations.md "Metrics").
METRICS = {
    "artifacts.files.persisted",
    "artifacts.files.failed",
    "artifacts.bytes.persisted",
    "artifacts.download.duration",
    "artifacts.run.time_to_last_artifact",
    "artifacts.run.polls",
    "artifacts.runs.given_up",
    "artifacts.queue.depth",
    "artifacts.queue.oldest_age_seconds",
}
METRIC_NAME = re.compile(r"'(artifacts\.[a-z_.]+)'")

# The host's log levels, lowest first.
LOG_LEVELS = ["trace", "debug", "information", "warning", "error", "critical", "none"]

# What the host and the Python worker hold beside the downloads, per instance (MiB): the .NET host,
# the worker with its SDKs, OpenTelemetry's buffers. Measured idle RSS is well below this.
INSTANCE_BASELINE_MIB = 512

# Built-in storage data roles whose actions include blobServices/generateUserDelegationKey/action.
DELEGATION_ROLES = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",
    "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1": "Storage Blob Data Reader",
    "db58b8e5-c6ad-4a2a-8342-4190687cbf4a": "Storage Blob Delegator",
}
# The Functions host's own blob containers with identity-based AzureWebJobsStorage: locks, timer
# schedules and the host id in azure-webjobs-hosts, function keys in azure-webjobs-secrets (the
# host's ScriptConstants.AzureWebJobsHostsContainerName and BlobStorageSecretsRepository).
HOST_CONTAINERS = {"azure-webjobs-hosts", "azure-webjobs-secrets"}
EVENT_GRID_DATA_SENDER = "d5a91429-5739-47e2-a06b-3470a27159e7"
KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
KEY_VAULT_SECRETS_OFFICER = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"

# What the azd postprovision hook (scripts/register_webhook.py) reads from the azd environment;
# azd stores main.bicep's outputs there.
HOOK_OUTPUTS = {
    "ARTIFACTS_REGISTER_WEBHOOK", "AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP", "AZURE_FUNCTION_APP_NAME",
    "FUNCTION_APP_URL", "AZURE_OPENAI_ENDPOINT", "AZURE_KEY_VAULT_ENDPOINT", "AZURE_KEY_VAULT_NAME",
}

# Azure OpenAI retries a webhook delivery for up to 72 hours (OpenAI's webhook guide,
# https://developers.openai.com/api/docs/guides/webhooks; Azure's page states no window). A handled
# delivery's record must outlive that, with room to spare: at least twice as long.
WEBHOOK_RETRY_HOURS = 72
# A record of a queue message no step could use stays at least this long, for an operator to read.
INVALID_RECORD_MIN_DAYS = 7
# docs/deploy.md's table of the status container's records that expire: first cell -> prefix.
LIFETIMES_HEADER = "| records in the status container |"

# The Python the app runs on in Azure (functionAppConfig.runtime) and everywhere else: the project's
# environments (scripts/python.sh), ruff and mypy (pyproject.toml).
PYTHON_VERSION = "3.13"
# A requirements.txt line pinning one distribution exactly: name==version.
PINNED = re.compile(r"^([A-Za-z0-9_.-]+)==([0-9][^\s#;]*)")

# docs/deploy.md's table of what runs at once on one instance: first cell -> which figure it states.
CONCURRENCY_DOC = ROOT / "docs" / "deploy.md"
CONCURRENCY_HEADER = "| on one instance of"
CONCURRENCY_ROWS = {
    "the HTTP functions": "http",
    "one queue function": "queue",
    "the Python worker": "threads",
}


def get_ci(node: Any, *path: str) -> Any:
    """A value of a JSON object by path, keys matched case-insensitively (as the host reads host.json)."""
    for key in path:
        if not isinstance(node, dict):
            return None
        node = next((value for name, value in node.items() if name.lower() == key.lower()), None)
    return node


def host_json() -> dict[str, Any]:
    document: dict[str, Any] = json.loads((ROOT / "host.json").read_text(encoding="utf-8"))
    return document


def log_level(levels: Mapping[str, str], category: str) -> str:
    """The level the host applies to a category: the longest configured prefix, else ``default``."""
    best, level = -1, str(levels.get("default", "Information"))
    for name, value in levels.items():
        if (category == name or category.startswith(name + ".")) and len(name) > best:
            best, level = len(name), str(value)
    return level.lower()


def int_constant(module: str, name: str) -> int:
    """An integer constant of a module in shared/, read without importing it (``4 * 1024 * 1024``)."""
    tree = ast.parse((ROOT / "shared" / f"{module}.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return _int_expression(node.value)
    raise KeyError(f"shared/{module}.py has no constant {name}")


def _int_expression(node: ast.expr) -> int:
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return node.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mult, ast.Add, ast.Pow)):
        left, right = _int_expression(node.left), _int_expression(node.right)
        if isinstance(node.op, ast.Mult):
            return left * right
        return left + right if isinstance(node.op, ast.Add) else int(left**right)
    raise ValueError(f"not an integer expression: {ast.unparse(node)}")


def webhook_paths() -> list[str]:
    """The URL paths of function_app.py's webhook routes (``webhooks/...``), under host.json's prefix."""
    prefix = str(get_ci(host_json(), "extensions", "http", "routePrefix") or "api").strip("/")
    tree = ast.parse((ROOT / "function_app.py").read_text(encoding="utf-8"))
    paths = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "route":
            for keyword in node.keywords:
                route = keyword.value.value if isinstance(keyword.value, ast.Constant) else None
                if keyword.arg == "route" and isinstance(route, str) and route.startswith("webhooks/"):
                    paths.append(f"/{prefix}/{route}")
    return sorted(paths)


def documented_concurrency() -> dict[str, int]:
    """The figures in docs/deploy.md's table of what runs at once on one instance."""
    lines = CONCURRENCY_DOC.read_text(encoding="utf-8").splitlines() if CONCURRENCY_DOC.exists() else []
    start = next((i for i, line in enumerate(lines) if line.startswith(CONCURRENCY_HEADER)), None)
    if start is None:
        return {}
    figures = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        for prefix, key in CONCURRENCY_ROWS.items():
            if cells[0].startswith(prefix) and re.fullmatch(r"\d+", cells[1]):
                figures[key] = int(cells[1])
    return figures


def documented_lifetimes() -> dict[str, int]:
    """docs/deploy.md's table of the status container's records that expire: prefix -> days."""
    lines = CONCURRENCY_DOC.read_text(encoding="utf-8").splitlines() if CONCURRENCY_DOC.exists() else []
    start = next((i for i, line in enumerate(lines) if line.startswith(LIFETIMES_HEADER)), None)
    if start is None:
        return {}
    stated = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        prefix, days = re.fullmatch(r"`([^`]+)`", cells[0]), re.fullmatch(r"(\d+) days?", cells[1])
        if prefix and days:
            stated[prefix.group(1)] = int(days.group(1))
    return stated


def pinned_requirements() -> dict[str, str]:
    """requirements.txt's exact pins, name (lower case) -> version."""
    pins = {}
    for line in (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines():
        match = PINNED.match(line.strip())
        if match:
            pins[match.group(1).lower()] = match.group(2)
    return pins


def lifecycle_rules(infra: Infra) -> tuple[dict[str, int], list[str]]:
    """The prefixes storage.bicep's lifecycle policy deletes blobs under, with their days; and what is
    wrong with the policy's shape."""
    found = infra.storage_resource("Microsoft.Storage/storageAccounts/managementPolicies")
    if found is None:
        return {}, ["storage.bicep declares no lifecycle management policy (Microsoft.Storage/storageAccounts/"
                    "managementPolicies)"]
    body, resolve = found
    problems = []
    if body.get("name") != "default" or body.get("parent") != "account":
        problems.append("the lifecycle management policy must be the account's 'default' policy")
    expiring: dict[str, int] = {}
    for rule in resolve(body["properties"])["policy"]["rules"]:
        definition = rule.get("definition", {})
        prefixes = definition.get("filters", {}).get("prefixMatch") or []
        days = definition.get("actions", {}).get("baseBlob", {}).get("delete", {}).get(
            "daysAfterModificationGreaterThan")
        if rule.get("enabled") is not True or rule.get("type") != "Lifecycle":
            problems.append(f"lifecycle rule {rule.get('name')} is not an enabled Lifecycle rule")
        if "blockBlob" not in (definition.get("filters", {}).get("blobTypes") or []):
            problems.append(f"lifecycle rule {rule.get('name')} does not apply to block blobs (every record is one)")
        if not prefixes or not isinstance(days, int):
            problems.append(f"lifecycle rule {rule.get('name')} must delete by daysAfterModificationGreaterThan "
                            "under a prefix (without one it would reach the whole account)")
            continue
        expiring.update({str(prefix): days for prefix in prefixes})
    return expiring, problems


def operability_checks(scenarios: dict[str, Infra], config: Any) -> list[Check]:
    infra, full = scenarios["defaults"], scenarios["every option on"]
    settings = infra.settings
    host = host_json()

    def telemetry_is_complete() -> list[str]:
        problems = []
        if str(get_ci(host, "telemetryMode")) != "OpenTelemetry":
            problems.append('host.json must keep "telemetryMode": "OpenTelemetry" (one trace from host to worker)')
        levels = get_ci(host, "logging", "logLevel") or {}
        for category in ("Host.Results", "Function"):
            level = log_level(levels, category)
            if LOG_LEVELS.index(level) > LOG_LEVELS.index("information"):
                problems.append(f"host.json logs {category} only at {level}: successful invocations would be "
                                "missing from the request telemetry")
        sampling = get_ci(host, "logging", "applicationInsights", "samplingSettings") or {}
        excluded = {kind.strip().lower() for kind in str(sampling.get("excludedTypes", "")).split(";")}
        if sampling.get("isEnabled", True) and "request" not in excluded:
            problems.append("host.json samples requests: turn sampling off or exclude Request from it")
        for name, value in (("PYTHON_ENABLE_OPENTELEMETRY", "true"),):
            if settings.get(name) != value:
                problems.append(f"infra/ must set {name}={value} for the Python worker (OpenTelemetry mode)")
        if not settings.get("APPLICATIONINSIGHTS_CONNECTION_STRING"):
            problems.append("infra/ must set APPLICATIONINSIGHTS_CONNECTION_STRING")
        overrides = [name for name in settings if name.lower().startswith(("azurefunctionsjobhost__logging",
                                                                           "azurefunctionsjobhost__telemetrymode"))]
        problems += [f"{name} overrides host.json's telemetry settings" for name in overrides]
        example = json.loads((ROOT / "local.settings.json.example").read_text(encoding="utf-8"))["Values"]
        if example.get("PYTHON_ENABLE_OPENTELEMETRY") != "true":
            problems.append("local.settings.json.example must set PYTHON_ENABLE_OPENTELEMETRY=true, as in Azure")
        return problems

    def concurrency_is_pinned() -> list[str]:
        batch = get_ci(host, "extensions", "queues", "batchSize")
        threshold = get_ci(host, "extensions", "queues", "newBatchThreshold")
        if not isinstance(batch, int) or not isinstance(threshold, int):
            return ["host.json must set extensions.queues.batchSize and newBatchThreshold (the queue concurrency)"]
        queue = batch + threshold
        http = infra.site("properties.functionAppConfig.scaleAndConcurrency.triggers.http.perInstanceConcurrency")
        threads = int(settings.get("PYTHON_THREADPOOL_THREAD_COUNT", "0"))
        problems = []
        if not isinstance(http, int):
            problems.append("infra/ must set the HTTP perInstanceConcurrency (functionAppConfig.scaleAndConcurrency)")
            http = 1  # Flex Consumption's default for Python apps
        # Per-function scaling: an instance runs the HTTP group or one queue function, never both.
        if threads < max(http, queue):
            problems.append(f"PYTHON_THREADPOOL_THREAD_COUNT={threads} is below what one instance runs at once "
                            f"(HTTP {http}, a queue function {queue}): invocations would wait inside the worker")
        problems += [f"{name} overrides host.json's queue concurrency" for name in settings
                     if name.lower().startswith("azurefunctionsjobhost__extensions__queues__")
                     and name.lower().endswith(("batchsize", "newbatchthreshold"))]
        stated = documented_concurrency()
        actual = {"http": http, "queue": queue, "threads": threads}
        for key, value in actual.items():
            if stated.get(key) != value:
                problems.append(f"docs/deploy.md's concurrency table says {key} = {stated.get(key)}, infra/host.json "
                                f"set {value} (table header {CONCURRENCY_HEADER!r})")
        download_mib = (int_constant("storage/artifact_blobs", "DEFAULT_BLOCK_CONCURRENCY") + 1) \
            * int_constant("storage/artifact_blobs", "DEFAULT_BLOCK_SIZE") // 2**20
        allowed: list[int] = next((d["argument"] for d in infra.main["parameters"]["instanceMemoryMB"]["decorators"]
                                   if d["type"] == "allowed"), [])
        need = queue * download_mib + INSTANCE_BASELINE_MIB
        problems += [f"instanceMemoryMB {size} is allowed, but {queue} downloads of ~{download_mib} MiB plus "
                     f"{INSTANCE_BASELINE_MIB} MiB for host and worker need {need} MiB"
                     for size in allowed if size < need]
        return problems

    def easy_auth_spares_only_the_webhook() -> list[str]:
        problems = []
        if infra.module_enabled("easyAuth"):
            problems.append("Easy Auth must be off by default (easyAuthEnabled)")
        if not full.module_enabled("easyAuth"):
            return [*problems, "easyAuthEnabled=true does not deploy the easyAuth module"]
        # With Easy Auth deployed, the app must refuse callers if it is ever switched off.
        for scenario, wanted in ((infra, "false"), (full, "true")):
            required = scenario.settings.get("ARTIFACTS_REQUIRE_EASY_AUTH")
            if str(required).lower() != wanted:  # Bicep's string(bool) is lowercase; the parser's may not be
                problems.append(f"ARTIFACTS_REQUIRE_EASY_AUTH is {required!r} where Easy Auth is "
                                f"{'on' if wanted == 'true' else 'off'}; expected {wanted!r}")
        paths = webhook_paths()
        if not paths:
            problems.append("found no webhooks/ route in function_app.py")
        excluded = full.module_params("easyAuth").get("excludedPaths")
        if excluded != paths:
            problems.append(f"Easy Auth excludes {excluded}; function_app.py's webhook routes are {paths}")
        auth = parse_bicep(MODULES / "easyauth.bicep")["resources"]["auth"]["config"]
        validation = auth["properties"]["globalValidation"]
        expected = {"requireAuthentication": True, "unauthenticatedClientAction": "Return401",
                    "excludedPaths": "excludedPaths"}
        problems += [f"authsettingsV2 globalValidation.{key} is {validation.get(key)!r}, expected {value!r}"
                     for key, value in expected.items() if validation.get(key) != value]
        if auth["name"] != "authsettingsV2" or auth["properties"]["platform"].get("enabled") is not True:
            problems.append("the Easy Auth module must enable authsettingsV2 (platform.enabled)")
        if not auth["properties"]["identityProviders"]["azureActiveDirectory"].get("enabled"):
            problems.append("the Easy Auth module must enable the Microsoft Entra ID provider")
        return problems

    def easy_auth_groups_follow_the_parameter() -> list[str]:
        if "easyAuthAllowedGroups" not in infra.main["parameters"]:
            return ["main.bicep has no parameter easyAuthAllowedGroups (the groups whose members Easy Auth admits)"]
        problems = []
        if infra.main_defaults["easyAuthAllowedGroups"] != "":
            problems.append("easyAuthAllowedGroups must default to empty: no group restriction unless asked for")
        mapped = json.loads((ROOT / "infra" / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
        if "easyAuthAllowedGroups" not in mapped:
            problems.append("main.parameters.json does not map easyAuthAllowedGroups to an azd variable")
        validation = "properties.identityProviders.azureActiveDirectory.validation"
        for groups, applications in (("", ""), ("group-1,group-2", ""), ("group-1", "client-app-1")):
            overrides = {**SCENARIOS["every option on"], "easyAuthAllowedGroups": groups,
                         "easyAuthAllowedClientApplications": applications}
            resolved = Infra(overrides).module_resource("easyAuth", "auth", validation)
            policy = resolved.get("defaultAuthorizationPolicy", {})
            wanted = groups.split(",") if groups else None
            got = policy.get("allowedPrincipals", {}).get("groups")
            if got != wanted or (not groups and "allowedPrincipals" in policy):
                problems.append(f"easyAuthAllowedGroups={groups!r} gives allowedPrincipals "
                                f"{policy.get('allowedPrincipals')}, expected groups {wanted}")
            if policy.get("allowedApplications") != (applications.split(",") if applications else None):
                problems.append(f"with easyAuthAllowedGroups={groups!r}, allowedApplications is "
                                f"{policy.get('allowedApplications')}, expected {applications or None}")
        return problems

    def webhook_secret_stays_in_key_vault() -> list[str]:
        problems = []
        if {"AZURE_OPENAI_WEBHOOK_SECRET", "AZURE_OPENAI_WEBHOOK_SECRET_PREVIOUS"} & set(settings) \
                or infra.module_enabled("keyVault"):
            problems.append("with webhooks off (the default) there must be no Key Vault and no webhook secret setting")
        vault = full.module_params("keyVault").get("name")
        # The Key Vault secrets scripts/register_webhook.py writes: the secret, and the one a rotation replaced.
        script = (ROOT / "scripts" / "register_webhook.py").read_text(encoding="utf-8")
        entry = re.search(r'^VAULT_ENTRY = "([^"]+)"', script, re.M)
        if entry is None or 'PREVIOUS_VAULT_ENTRY = f"{VAULT_ENTRY}-previous"' not in script:
            problems.append("scripts/register_webhook.py names its Key Vault secrets unlike this check reads them")
        name = entry.group(1) if entry else "azure-openai-webhook-secret"
        for setting, secret in (("AZURE_OPENAI_WEBHOOK_SECRET", name),
                                ("AZURE_OPENAI_WEBHOOK_SECRET_PREVIOUS", f"{name}-previous")):
            expected = f"@Microsoft.KeyVault(VaultName={vault};SecretName={secret})"
            if full.settings.get(setting) != expected:
                problems.append(f"{setting} is {full.settings.get(setting)!r}, expected the Key Vault reference "
                                f"{expected!r} (the secret scripts/register_webhook.py writes)")
        try:
            reference_identity = full.site("properties.keyVaultReferenceIdentity")
        except KeyError:
            reference_identity = None
        if reference_identity != IDENTITY_ID:
            problems.append("keyVaultReferenceIdentity must be the app's user-assigned identity")
        template = parse_bicep(MODULES / "keyvault.bicep")
        properties = template["resources"]["vault"]["config"]["properties"]
        for key in ("enableRbacAuthorization", "enableSoftDelete", "enablePurgeProtection"):
            if properties.get(key) is not True:
                problems.append(f"the Key Vault must set {key}: true")
        granted: dict[str, set[str]] = {}
        for role, body, _ in role_assignments(template):
            granted.setdefault(str(body["properties"]["principalId"]), set()).add(role)
        wanted = {"appPrincipalId": {KEY_VAULT_SECRETS_USER}, "developerPrincipalId": {KEY_VAULT_SECRETS_OFFICER}}
        if granted != wanted:
            problems.append(f"Key Vault roles are {granted}; expected the app Secrets User and the developer "
                            "Secrets Officer, nothing else")
        missing = HOOK_OUTPUTS - set(infra.main["outputs"])
        problems += [f"main.bicep has no output {name} (the postprovision hook reads it)" for name in sorted(missing)]
        return problems

    def links_are_signed_by_identity() -> list[str]:
        problems = []
        account = parse_bicep(MODULES / "storage.bicep")["resources"]["account"]["config"]["properties"]
        if account.get("allowSharedKeyAccess") is not False:
            problems.append("the storage account must keep shared keys off (links are user delegation SAS)")
        roles = infra.account_roles().get("appPrincipalId", set())
        if not roles & set(DELEGATION_ROLES):
            problems.append("the app's identity holds no role on the storage account that allows "
                            "generateUserDelegationKey (e.g. Storage Blob Delegator)")
        limit = next((d["argument"] for d in infra.main["parameters"]["linkMinutes"]["decorators"]
                      if d["type"] == "max_value"), None)
        if limit != MAX_LINK_MINUTES:
            problems.append(f"linkMinutes allows up to {limit}, the code {MAX_LINK_MINUTES}")
        return problems

    def blob_roles_are_container_scoped() -> list[str]:
        def names(roles: set[str]) -> str:
            return ", ".join(sorted(BLOB_ROLES.get(role, role) for role in roles)) or "no role"

        problems = []
        grants = infra.blob_grants()
        app = grants.get("appPrincipalId", {})
        if app.get(ACCOUNT, set()) != {BLOB_DELEGATOR}:
            problems.append(f"the app's identity holds {names(app.get(ACCOUNT, set()))} on the whole storage "
                            "account; it needs Storage Blob Delegator there and nothing else (its data roles go "
                            "on its containers, so no link it signs reaches another)")
        storage = infra.site("properties.functionAppConfig.deployment.storage")
        package = str(storage["value"]).rstrip("/").rsplit("/", 1)[-1]
        wanted = {settings["ARTIFACTS_CONTAINER"], settings["ARTIFACTS_STATUS_CONTAINER"]} | HOST_CONTAINERS
        read_only = {settings["ARTIFACTS_INPUT_CONTAINER"]}  # input_blobs: read, never written
        for container in sorted(wanted | read_only | set(app) - {ACCOUNT}):
            got = app.get(container, set())
            want = {BLOB_DATA_CONTRIBUTOR} if container in wanted else {BLOB_DATA_READER} if container in read_only \
                else set()
            if container == package and got:
                problems.append(f"the app's identity holds {names(got)} on the deployment package container "
                                f"{package}: a link it signs, or its code, could read or replace the package")
            elif got != want:
                problems.append(f"the app's identity holds {names(got)} on container {container}; "
                                f"it needs exactly {names(want)}")
        created = infra.storage_containers()
        problems += [f"the app needs container {name}, which storage.bicep does not create (a role needs its scope)"
                     for name in sorted((wanted | read_only) - set(created))]
        # The package: read (and written, on deploy) by the platform with an identity that is not the app's.
        identity = storage["authentication"].get("userAssignedIdentityResourceId")
        if storage["authentication"].get("type") != "UserAssignedIdentity" or identity == IDENTITY_ID:
            problems.append("functionAppConfig.deployment.storage must name a user-assigned identity of its own, "
                            "not the app's (whose delegation key signs the download links)")
        module = next((key.split(".")[0] for key, value in SAMPLE_OUTPUTS.items()
                       if key.endswith(".id") and value == identity), None)
        deployer = infra.module_params("access").get(DEPLOYMENT_PRINCIPAL)
        if module is None or deployer != SAMPLE_OUTPUTS.get(f"{module}.principalId"):
            problems.append(f"access.bicep's {DEPLOYMENT_PRINCIPAL} is not the identity that "
                            "functionAppConfig.deployment.storage names")
        if grants.get(DEPLOYMENT_PRINCIPAL) != {package: {BLOB_DATA_CONTRIBUTOR}}:
            problems.append(f"the deployment identity holds {grants.get(DEPLOYMENT_PRINCIPAL)}; it needs Storage "
                            f"Blob Data Contributor on {package} and nothing else")
        if identity not in (infra.site("identity").get("userAssignedIdentities") or {}):
            problems.append("the deployment identity is not one of the Function App's identities")
        return problems

    def basic_publishing_is_off() -> list[str]:
        policies = {}
        for resource in parse_bicep(MODULES / "functionapp.bicep")["resources"].values():
            if resource["type"] != "Microsoft.Web/sites/basicPublishingCredentialsPolicies":
                continue
            config = resource["config"]
            if "condition" in config or "loop_type" in config or config.get("parent") != "app":
                return [f"basic publishing policy {config.get('name')!r} must be unconditional, on the site itself"]
            policies[str(config.get("name"))] = config.get("properties", {}).get("allow")
        return [f"basic publishing credentials for {kind} are on: declare "
                f"Microsoft.Web/sites/basicPublishingCredentialsPolicies '{kind}' with allow: false"
                for kind in ("ftp", "scm") if policies.get(kind) is not False]

    def runs_on_python_313() -> list[str]:
        problems = []
        runtime = infra.site("properties.functionAppConfig.runtime")
        if runtime != {"name": "python", "version": PYTHON_VERSION}:
            problems.append(f"functionAppConfig.runtime is {runtime}; the app runs on "
                            f"{{'name': 'python', 'version': '{PYTHON_VERSION}'}}")
        project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
        targets = {
            "mypy python_version": str(project["tool"]["mypy"]["python_version"]),
            "ruff target-version": str(project["tool"]["ruff"]["target-version"]).replace("py3", "3."),
        }
        found = re.search(r"^PROJECT_PYTHON=(\S+)$", (ROOT / "scripts" / "python.sh").read_text(encoding="utf-8"),
                          re.MULTILINE)
        targets["scripts/python.sh PROJECT_PYTHON"] = found.group(1) if found else "(not set)"
        problems += [f"{what} is {value}, not {PYTHON_VERSION}" for what, value in targets.items()
                     if value != PYTHON_VERSION]
        pins = pinned_requirements()
        if not pins.get("azure-functions", "").startswith("2."):
            problems.append(f"requirements.txt must pin azure-functions 2.x (1.x stops at Python 3.12), "
                            f"not {pins.get('azure-functions', 'nothing')}")
        if "azure-functions-runtime" not in pins:
            problems.append("requirements.txt must pin azure-functions-runtime (==): on Python 3.13 the app chooses "
                            "the worker library the host runs it with, else it gets a default that changes")
        return problems

    def status_records_expire() -> list[str]:
        renamed = Infra({"statusContainerName": "records-renamed"})
        problems = []
        for scenario in (infra, renamed):
            status = scenario.settings["ARTIFACTS_STATUS_CONTAINER"]
            expiring, shape = lifecycle_rules(scenario)
            problems += [problem for problem in shape if problem not in problems]
            claim_days = -(-int_constant("storage/idempotency", "KEY_LIFETIME_SECONDS") // 86400)
            minimum = {"_webhooks/": -(-2 * WEBHOOK_RETRY_HOURS // 24), "_idempotency/": claim_days + 1,
                       "_invalid/": INVALID_RECORD_MIN_DAYS}
            for prefix, least in minimum.items():
                days = expiring.get(f"{status}/{prefix}")
                if days is None:
                    problems.append(f"no lifecycle rule deletes {status}/{prefix} (the status container's name "
                                    "comes from statusContainerName)")
                elif days < least:
                    problems.append(f"{status}/{prefix} is deleted after {days} days; it must live at least {least}")
            problems += [f"a lifecycle rule deletes under {prefix}, which holds records that must stay"
                         for prefix in sorted(set(expiring) - {f"{status}/{prefix}" for prefix in minimum})]
            if scenario is infra:
                stated = documented_lifetimes()
                actual = {prefix.removeprefix(f"{status}/"): days for prefix, days in expiring.items()}
                if stated != actual:
                    problems.append(f"docs/deploy.md's table ({LIFETIMES_HEADER!r}) says {stated}, "
                                    f"storage.bicep deletes {actual}")
        return problems

    def alerts_watch_the_app_metrics() -> list[str]:
        problems = []
        if infra.module_enabled("alerts"):
            problems.append("alerts must be off unless an email or an action group is given")
        if not full.module_enabled("alerts"):
            problems.append("alertEmail does not turn the alerts on")
        queried = set()
        for module in ("alerts.bicep", "workbook.bicep"):
            queried |= set(METRIC_NAME.findall((MODULES / module).read_text(encoding="utf-8")))
        problems += [f"{name} is queried by infra/ but is not a metric the app emits"
                     for name in sorted(queried - METRICS)]
        rules_expression = parse_bicep(MODULES / "alerts.bicep")["variables"]["rules"]["value"]
        rules = {rule["name"] for rule in Resolver({"failedArtifactsThreshold": 5})(rules_expression)}
        for rule in ("poison-queue", "failed-artifacts", "runs-given-up"):
            if rule not in rules:
                problems.append(f"no alert rule {rule}")
        return problems

    def event_grid_goes_together() -> list[str]:
        """Off by default: no topic, no setting. On: the topic (CloudEvents 1.0, local auth off), the app's
        Data Sender role on it alone, and ARTIFACTS_EVENT_GRID_ENDPOINT its endpoint; never a key setting."""
        problems = []
        if infra.module_enabled("eventGrid") or "ARTIFACTS_EVENT_GRID_ENDPOINT" in settings:
            problems.append("with eventGridEnabled off (the default) there must be no topic and no "
                            "ARTIFACTS_EVENT_GRID_ENDPOINT")
        if not full.module_enabled("eventGrid"):
            return [*problems, "eventGridEnabled does not deploy the Event Grid topic module"]
        if full.settings.get("ARTIFACTS_EVENT_GRID_ENDPOINT") != SAMPLE_OUTPUTS["eventGrid.endpoint"]:
            problems.append(f"ARTIFACTS_EVENT_GRID_ENDPOINT is {full.settings.get('ARTIFACTS_EVENT_GRID_ENDPOINT')!r}, "
                            "expected the topic's endpoint (the eventGrid module's output)")
        if any("EVENT_GRID" in name and name != "ARTIFACTS_EVENT_GRID_ENDPOINT" for name in full.settings):
            problems.append("only ARTIFACTS_EVENT_GRID_ENDPOINT is written for the topic: no key setting")
        template = parse_bicep(MODULES / "eventgrid.bicep")
        topic = template["resources"]["topic"]
        if topic["type"] != "Microsoft.EventGrid/topics":
            problems.append(f"the eventgrid module's topic is a {topic['type']}")
        properties = full.module_resource("eventGrid", "topic", "properties")
        if properties.get("inputSchema") != "CloudEventSchemaV1_0":
            problems.append(f"the topic's inputSchema is {properties.get('inputSchema')!r}, not CloudEventSchemaV1_0 "
                            "(the app publishes CloudEvents)")
        if properties.get("disableLocalAuth") is not True:
            problems.append("the topic must set disableLocalAuth: true (the app publishes with its identity)")
        granted: dict[str, set[str]] = {}
        for role, body, _ in role_assignments(template):
            granted.setdefault(str(body["properties"]["principalId"]), set()).add(role)
        if granted != {"appPrincipalId": {EVENT_GRID_DATA_SENDER}}:
            problems.append(f"the topic's roles are {granted}; expected the app's EventGrid Data Sender alone")
        if full.module_params("eventGrid").get("appPrincipalId") != SAMPLE_OUTPUTS["identity.principalId"]:
            problems.append("the topic's Data Sender role must go to the app's identity")
        return problems

    return [
        ("the Event Grid topic (off by default) has the CloudEvents 1.0 schema, local auth off, the app's EventGrid "
         "Data Sender role, and ARTIFACTS_EVENT_GRID_ENDPOINT names it", event_grid_goes_together),
        ("host.json keeps OpenTelemetry mode and complete request telemetry; the worker is set up for it",
         telemetry_is_complete),
        ("docs/deploy.md's in-flight numbers are what host.json and infra/ set; threads and memory cover them",
         concurrency_is_pinned),
        ("Easy Auth (off by default) requires a token everywhere but on the webhook route",
         easy_auth_spares_only_the_webhook),
        ("Easy Auth's allowedPrincipals.groups follows easyAuthAllowedGroups (none when empty), beside allowed apps",
         easy_auth_groups_follow_the_parameter),
        ("the webhook secrets (current, previous) are the Key Vault references the script writes, resolved by "
         "the app's identity; the hook gets its outputs",
         webhook_secret_stays_in_key_vault),
        ("download links: the app's identity can sign user delegation keys, shared keys stay off",
         links_are_signed_by_identity),
        ("the app's identity has blob roles only on its containers (read only on the input container), none on "
         "the account or app-package; the package has an identity of its own", blob_roles_are_container_scoped),
        ("basic publishing credentials are off (FTP and SCM)", basic_publishing_is_off),
        (f"the app runs on Python {PYTHON_VERSION} (functionAppConfig.runtime, the environments, ruff, mypy), "
         "with azure-functions 2.x and a pinned azure-functions-runtime", runs_on_python_313),
        ("lifecycle rules expire _webhooks/, _idempotency/ and _invalid/ in the status container, nothing else, "
         "after their use (as docs/deploy.md says)", status_records_expire),
        ("alerts are off unless asked for, and query only the metrics the app emits", alerts_watch_the_app_metrics),
    ]

