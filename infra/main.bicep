// Everything `azd up` provisions: one resource group holding the Function App (Flex Consumption),
// its storage, monitoring and identity, and (unless an existing one is named) an Azure OpenAI
// account with a model deployment that can run the code_interpreter tool.
//
// No secret is created by the templates: every connection authenticates with the app's
// user-assigned managed identity, and key-based access is disabled where a resource allows it.
// The one secret the app needs when webhooks are on (the signing secret Azure OpenAI shows once)
// is written to Key Vault by scripts/register_webhook.py and read through a Key Vault reference.

targetScope = 'subscription'

// ---------------------------------------------------------------------------------------------
// azd inputs
// ---------------------------------------------------------------------------------------------

@minLength(1)
@maxLength(48)
@description('azd environment name; names the resource group and seeds every resource name.')
param environmentName string

@minLength(1)
@description('Region for every resource (Flex Consumption is not offered in every region).')
@metadata({ azd: { type: 'location' } })
param location string

@description('Resource group to create or reuse; default rg-<environmentName>.')
param resourceGroupName string = ''

// ---------------------------------------------------------------------------------------------
// Scale: what Flex Consumption lets an app set, pinned so docs/deploy.md's in-flight numbers hold
// ---------------------------------------------------------------------------------------------

@minValue(1)
@maxValue(1000)
@description('Upper bound on instances the platform may add; raising it needs no code change.')
param maximumInstanceCount int = 100

// 512 MB is left out: an instance runs up to 24 downloads at once (host.json batchSize +
// newBatchThreshold), each holding up to ~20 MiB of blocks, beside the host and the worker.
@allowed([2048, 4096])
@description('Memory per instance in MB; CPU and network are allocated in proportion.')
param instanceMemoryMB int = 2048

@minValue(1)
@maxValue(1000)
@description('HTTP requests one instance serves at once; without it a Python app gets 1 per instance.')
param httpPerInstanceConcurrency int = 16

@allowed(['Standard_LRS', 'Standard_ZRS', 'Standard_GRS', 'Standard_GZRS'])
@description('Redundancy of the storage account holding the artifacts (ZRS/GZRS are not offered in every region).')
param storageSkuName string = 'Standard_LRS'

// ---------------------------------------------------------------------------------------------
// App settings (each one the code reads; defaults match shared/settings.py)
// ---------------------------------------------------------------------------------------------

@minLength(3)
@maxLength(56) // the poison queue appends "-poison" (7) and must stay within 63 characters
@description('ARTIFACTS_QUEUE: one message per file, from the run watcher to persist_artifact; <name>-poison feeds record_failed_artifact.')
param artifactsQueueName string = 'artifact-downloads'

@minLength(3)
@maxLength(56) // the poison queue appends "-poison" (7) and must stay within 63 characters
@description('ARTIFACTS_RUNS_QUEUE: delayed messages from the run watcher to itself (watch_run); <name>-poison feeds give_up_run.')
param runsQueueName string = 'artifact-runs'

@minLength(3)
@maxLength(56) // the code holds every queue name to the same limit
@description('ARTIFACTS_EVENTS_QUEUE: one completion event per run, for downstream systems (the app only sends to it).')
param eventsQueueName string = 'artifact-events'

@minLength(3)
@maxLength(63)
@description('ARTIFACTS_CONTAINER: where the files land.')
param artifactsContainerName string = 'artifacts'

@minLength(3)
@maxLength(63)
@description('ARTIFACTS_STATUS_CONTAINER: durable records of files that failed for good.')
param statusContainerName string = 'artifact-status'

@minLength(3)
@maxLength(63)
@description('ARTIFACTS_INPUT_CONTAINER: the blobs a POST may name in input_blobs (under the caller\'s own {owner}/ prefix with Easy Auth); the app\'s identity only reads it (Storage Blob Data Reader).')
param inputContainerName string = 'artifact-inputs'

@minValue(1)
@maxValue(220)
@description('AZURE_OPENAI_TIMEOUT_SECONDS: per call; stays under the 230 s an HTTP request may be held.')
param openAiTimeoutSeconds int = 200

@description('AZURE_OPENAI_TOKEN_SCOPE: the scope of the app\'s Entra ID tokens for Azure OpenAI; https://ai.azure.com/.default for a Foundry resource\'s endpoint.')
param openAiTokenScope string = 'https://cognitiveservices.azure.com/.default'

@description('AZURE_OPENAI_CONTAINER_API_VERSION: the api-version on the container file routes (preview is the one they accept).')
param openAiContainerApiVersion string = 'preview'

@minValue(1)
@description('ARTIFACTS_MAX_FILE_BYTES: larger files are recorded as failed instead of stored (default 4 GiB).')
param artifactsMaxFileBytes int = 4294967296

@minValue(1)
@maxValue(20)
@description('ARTIFACTS_DOWNLOAD_ATTEMPTS: download attempts within one queue delivery.')
param downloadAttempts int = 4

@minValue(1)
@description('ARTIFACTS_MAX_FILES_PER_RUN: files persisted per run at most; more are left out with a warning.')
param maxFilesPerRun int = 1000

@description('AZURE_OPENAI_BACKGROUND: create runs with background: true, so they outlive the HTTP request.')
param openAiBackground bool = true

@minValue(1)
@description('ARTIFACTS_RUN_MAX_HOURS: a run (or its files) still unfinished after this many hours is given up.')
param runMaxHours int = 6

@minValue(1) // 0 would poll in a hot loop (0 times any growth stays 0)
@maxValue(604800) // a queue message can be delayed by at most 7 days
@description('ARTIFACTS_POLL_MIN_SECONDS: the first delay of the run watcher; it doubles up to pollMaxSeconds.')
param pollMinSeconds int = 2

@minValue(1)
@maxValue(604800) // a queue message can be delayed by at most 7 days
@description('ARTIFACTS_POLL_MAX_SECONDS: the longest delay between two looks at a run; not less than pollMinSeconds.')
param pollMaxSeconds int = 30

@minValue(1)
@maxValue(10080) // a user delegation key, and so every link signed with it, lives at most 7 days
@description('ARTIFACTS_LINK_MINUTES: lifetime of the read-only download links in the status API and the event.')
param linkMinutes int = 60

// ---------------------------------------------------------------------------------------------
// The completion event (a CloudEvent): its source, and optional delivery to an Event Grid topic
// ---------------------------------------------------------------------------------------------

@description('ARTIFACTS_EVENT_SOURCE: the CloudEvents source of the completion event, a URI-reference naming this deployment (e.g. /contoso/artifacts/prod).')
param eventSource string = '/code-interpreter-artifacts'

@description('Create an Event Grid topic (CloudEvents 1.0 schema, local auth off), grant the app EventGrid Data Sender on it and publish each completion event there too (ARTIFACTS_EVENT_GRID_ENDPOINT).')
param eventGridEnabled bool = false

// ---------------------------------------------------------------------------------------------
// Webhooks: Azure OpenAI calls the app when a response ends
// ---------------------------------------------------------------------------------------------

@description('Create a Key Vault for the webhook signing secret and have the postdeploy hook register the webhook.')
param webhookEnabled bool = false

@allowed(['started', 'all'])
@description('ARTIFACTS_WEBHOOK_CAPTURE: started = only runs the app started or imported; all = every ended response on the resource.')
param webhookCapture string = 'started'

// ---------------------------------------------------------------------------------------------
// Caller identity: App Service Authentication (Easy Auth) with Microsoft Entra ID
// ---------------------------------------------------------------------------------------------

@description('Require an Entra token on every route but the webhook (401 without one); the app then scopes runs to their owner.')
param easyAuthEnabled bool = false

@description('Application (client) ID of the Entra app registration representing this API; required when easyAuthEnabled.')
param easyAuthClientId string = ''

@description('Comma-separated audiences a token may carry. Empty: api://<easyAuthClientId> and <easyAuthClientId>.')
param easyAuthAllowedAudiences string = ''

@description('Comma-separated client application IDs allowed to call. Empty: any application in the tenant.')
param easyAuthAllowedClientApplications string = ''

@description('Comma-separated object IDs of Entra groups whose members alone may call; Easy Auth reads the token\'s groups claim (users only: app-only tokens carry none). Empty: no group restriction (the caller app role is required either way).')
param easyAuthAllowedGroups string = ''

@description('Tenant issuing the tokens. Empty: the tenant of the deployment.')
param easyAuthTenantId string = ''

@description('ARTIFACTS_CALLER_ROLE: with Easy Auth, the app role a token must carry to call at all (403 otherwise).')
param callerRole string = 'Artifacts.Caller'

@description('ARTIFACTS_IMPORT_ROLE: with Easy Auth, the app role that may import responses the app did not start for the caller.')
param importRole string = 'Artifacts.Import'

@description('ARTIFACTS_ALLOWED_MODELS: comma-separated deployments a POST may name besides the configured one. Empty: only that one.')
param allowedModels string = ''

@description('AZURE_OPENAI_IMAGE_DEPLOYMENT: an existing image model deployment (e.g. gpt-image-1) in the account for the image_generation tool. Empty: runs asking for the tool are refused.')
param openAiImageDeploymentName string = ''

// ---------------------------------------------------------------------------------------------
// Alerts: off unless someone is told
// ---------------------------------------------------------------------------------------------

@description('Email address for the alerts (an action group is created for it). Empty: none.')
param alertEmail string = ''

@description('Resource ID of an existing action group for the alerts. Empty: none.')
param alertActionGroupId string = ''

@minValue(0)
@description('Alert when more artifacts than this fail for good within 15 minutes.')
param alertFailedArtifactsThreshold int = 5

// ---------------------------------------------------------------------------------------------
// Azure OpenAI: reuse one, or create one
// ---------------------------------------------------------------------------------------------

@description('Resource ID of an existing Azure OpenAI (or AI Services) account to use. Empty: create one.')
param existingOpenAiResourceId string = ''

@description('Deployment the app calls (AZURE_OPENAI_DEPLOYMENT): an existing one when reusing an account, else the one created.')
param openAiDeploymentName string = 'gpt-5.6-terra'

@description('Region of a created Azure OpenAI account; model availability differs by region. Default: location.')
param openAiLocation string = ''

// gpt-5.6-terra (2026-07-09): GA, Responses API with tools, GlobalStandard; retirement not before
// 2028-01-11 (Foundry model retirement schedule). gpt-4.1 2025-04-14 is Legacy, retiring 2027-04-14.
@description('Model of a created deployment; it must support the code_interpreter tool in the Responses API.')
param openAiModelName string = 'gpt-5.6-terra'

@description('Model version of a created deployment.')
param openAiModelVersion string = '2026-07-09'

@allowed(['GlobalStandard', 'DataZoneStandard', 'Standard'])
@description('Deployment type of a created deployment; all three are billed per token, nothing at rest.')
param openAiDeploymentSku string = 'GlobalStandard'

@minValue(1)
@description('Capacity of a created deployment, in thousands of tokens per minute (needs that much quota).')
param openAiDeploymentCapacity int = 30

// ---------------------------------------------------------------------------------------------
// Optional: the developer running azd, for local runs against the cloud resources
// ---------------------------------------------------------------------------------------------

@description('Object ID of a user or service principal (whoever runs azd up) to grant the app\'s data roles, with blob rights on the whole account. Empty: none.')
param developerPrincipalId string = ''

@allowed(['User', 'ServicePrincipal', 'Group'])
param developerPrincipalType string = 'User'

// ---------------------------------------------------------------------------------------------

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = { 'azd-env-name': environmentName }
var createOpenAi = empty(existingOpenAiResourceId)
var rgName = !empty(resourceGroupName) ? resourceGroupName : 'rg-${environmentName}'
// Where the account lives. An existing one is named by its resource ID:
// /subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.CognitiveServices/accounts/{name}
var openAiAccountName = createOpenAi ? 'oai-${resourceToken}' : last(split(existingOpenAiResourceId, '/'))
var openAiSubscriptionId = createOpenAi ? subscription().subscriptionId : split(existingOpenAiResourceId, '/')[2]
var openAiResourceGroup = createOpenAi ? rgName : split(existingOpenAiResourceId, '/')[4]
var keyVaultName = 'kv-${resourceToken}'
var webhookSecretName = 'azure-openai-webhook-secret' // scripts/register_webhook.py writes it here
var webhookSecretReference = webhookEnabled ? '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=${webhookSecretName})' : ''
// During a rotation, the secret being replaced (scripts/register_webhook.py --rotate keeps it here); unresolved, it is ignored.
var webhookPreviousSecretName = '${webhookSecretName}-previous'
var webhookPreviousSecretReference = webhookEnabled ? '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=${webhookPreviousSecretName})' : ''
// Azure OpenAI signs its webhook calls instead of sending a token: Easy Auth must let this route by.
var webhookPath = '/api/webhooks/azure-openai'
var alertsEnabled = !(empty(alertEmail) && empty(alertActionGroupId))

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: rgName
  location: location
  tags: tags
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    location: location
    tags: tags
    logAnalyticsName: 'log-${resourceToken}'
    appInsightsName: 'appi-${resourceToken}'
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    location: location
    tags: tags
    name: 'st${resourceToken}'
    skuName: storageSkuName
    deploymentContainerName: 'app-package'
    artifactsContainerName: artifactsContainerName
    statusContainerName: statusContainerName
    inputContainerName: inputContainerName
    artifactsQueueName: artifactsQueueName
    runsQueueName: runsQueueName
    eventsQueueName: eventsQueueName
  }
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    location: location
    tags: tags
    name: 'id-${resourceToken}'
  }
}

// The identity the platform reads the deployment package with (functionAppConfig.deployment.storage).
// Its own, not the app's: the app's identity then holds no role on the package container, so no
// link it signs can reach the package, and the code running in the app never uses this one.
module deploymentIdentity 'modules/identity.bicep' = {
  name: 'deployment-identity'
  scope: rg
  params: {
    location: location
    tags: tags
    name: 'id-deploy-${resourceToken}'
  }
}

// Data-plane roles on storage and monitoring, container by container and queue by queue, for the
// app, the deployment identity and optionally the developer.
module access 'modules/access.bicep' = {
  name: 'access'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    appContainerNames: storage.outputs.appContainerNames
    deploymentContainerName: storage.outputs.deploymentContainerName
    inputContainerName: storage.outputs.inputContainerName
    triggerQueueNames: storage.outputs.triggerQueueNames
    sendOnlyQueueNames: storage.outputs.sendOnlyQueueNames
    appInsightsName: monitoring.outputs.appInsightsName
    appPrincipalId: identity.outputs.principalId
    deploymentPrincipalId: deploymentIdentity.outputs.principalId
    developerPrincipalId: developerPrincipalId
    developerPrincipalType: developerPrincipalType
  }
}

module keyVault 'modules/keyvault.bicep' = if (webhookEnabled) {
  name: 'keyvault'
  scope: rg
  params: {
    location: location
    tags: tags
    name: keyVaultName
    appPrincipalId: identity.outputs.principalId
    developerPrincipalId: developerPrincipalId
    developerPrincipalType: developerPrincipalType
  }
}

module eventGrid 'modules/eventgrid.bicep' = if (eventGridEnabled) {
  name: 'eventgrid'
  scope: rg
  params: {
    location: location
    tags: tags
    name: 'evgt-${resourceToken}'
    appPrincipalId: identity.outputs.principalId
  }
}

module newOpenAi 'modules/openai.bicep' = if (createOpenAi) {
  name: 'openai'
  scope: rg
  params: {
    location: !empty(openAiLocation) ? openAiLocation : location
    tags: tags
    name: openAiAccountName
    deploymentName: openAiDeploymentName
    modelName: openAiModelName
    modelVersion: openAiModelVersion
    deploymentSku: openAiDeploymentSku
    deploymentCapacity: openAiDeploymentCapacity
  }
}

// Cognitive Services OpenAI User on whichever account the app calls; deployed into that
// account's resource group (and subscription), which may differ from this deployment's.
module openAiAccess 'modules/openai-access.bicep' = {
  name: 'openai-access'
  scope: resourceGroup(openAiSubscriptionId, openAiResourceGroup)
  params: {
    accountName: openAiAccountName
    appPrincipalId: identity.outputs.principalId
    developerPrincipalId: developerPrincipalId
    developerPrincipalType: developerPrincipalType
  }
  dependsOn: [rg, newOpenAi] // the account (and its deployment) must exist before roles are granted on it
}

module app 'modules/functionapp.bicep' = {
  name: 'functionapp'
  scope: rg
  params: {
    location: location
    tags: tags
    serviceName: 'api' // matches services.api in azure.yaml; azd finds the app by this tag
    planName: 'plan-${resourceToken}'
    appName: 'func-${resourceToken}'
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    deploymentIdentityId: deploymentIdentity.outputs.id
    storageBlobEndpoint: storage.outputs.blobEndpoint
    storageQueueEndpoint: storage.outputs.queueEndpoint
    deploymentContainerName: storage.outputs.deploymentContainerName
    appInsightsConnectionString: monitoring.outputs.connectionString
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    httpPerInstanceConcurrency: httpPerInstanceConcurrency
    openAiEndpoint: openAiAccess.outputs.endpoint
    openAiDeploymentName: openAiDeploymentName
    openAiTimeoutSeconds: openAiTimeoutSeconds
    openAiTokenScope: openAiTokenScope
    openAiContainerApiVersion: openAiContainerApiVersion
    artifactsMaxFileBytes: artifactsMaxFileBytes
    downloadAttempts: downloadAttempts
    maxFilesPerRun: maxFilesPerRun
    openAiBackground: openAiBackground
    runMaxHours: runMaxHours
    pollMinSeconds: pollMinSeconds
    pollMaxSeconds: pollMaxSeconds
    artifactsQueueName: artifactsQueueName
    runsQueueName: runsQueueName
    eventsQueueName: eventsQueueName
    artifactsContainerName: artifactsContainerName
    statusContainerName: statusContainerName
    inputContainerName: inputContainerName
    linkMinutes: linkMinutes
    webhookCapture: webhookCapture
    webhookSecretReference: webhookSecretReference
    webhookPreviousSecretReference: webhookPreviousSecretReference
    requireEasyAuth: easyAuthEnabled
    callerRole: callerRole
    importRole: importRole
    allowedModels: allowedModels
    openAiImageDeploymentName: openAiImageDeploymentName
    eventSource: eventSource
    eventGridEndpoint: eventGridEnabled ? eventGrid.outputs.endpoint : ''
  }
  // The host starts as soon as the app exists: grant its roles first so it never starts unauthorised
  // (and the Key Vault role, so the webhook secret's reference resolves from the start).
  dependsOn: [access, keyVault, eventGrid] // eventGrid: the app's Data Sender role before its first publish
}

module easyAuth 'modules/easyauth.bicep' = if (easyAuthEnabled) {
  name: 'easyauth'
  scope: rg
  params: {
    appName: app.outputs.name
    clientId: easyAuthClientId
    tenantId: empty(easyAuthTenantId) ? tenant().tenantId : easyAuthTenantId
    allowedAudiences: empty(easyAuthAllowedAudiences) ? [] : split(easyAuthAllowedAudiences, ',')
    allowedClientApplications: empty(easyAuthAllowedClientApplications) ? [] : split(easyAuthAllowedClientApplications, ',')
    allowedGroups: empty(easyAuthAllowedGroups) ? [] : split(easyAuthAllowedGroups, ',')
    excludedPaths: [webhookPath]
  }
}

module alerts 'modules/alerts.bicep' = if (alertsEnabled) {
  name: 'alerts'
  scope: rg
  params: {
    location: location
    tags: tags
    appInsightsId: monitoring.outputs.appInsightsId
    alertEmail: alertEmail
    alertActionGroupId: alertActionGroupId
    failedArtifactsThreshold: alertFailedArtifactsThreshold
    namePrefix: 'alert-${resourceToken}'
  }
}

module workbook 'modules/workbook.bicep' = {
  name: 'workbook'
  scope: rg
  params: {
    location: location
    tags: tags
    appInsightsId: monitoring.outputs.appInsightsId
    displayName: 'Code interpreter artifacts: where is run X (${environmentName})'
  }
}

// azd stores these in .azure/<env>/.env (read them with `azd env get-value NAME`).
output AZURE_LOCATION string = location
output AZURE_SUBSCRIPTION_ID string = subscription().subscriptionId
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = app.outputs.name
output FUNCTION_APP_URL string = app.outputs.url
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_STORAGE_BLOB_ENDPOINT string = storage.outputs.blobEndpoint
output ARTIFACTS_QUEUE string = artifactsQueueName
output ARTIFACTS_RUNS_QUEUE string = runsQueueName
output ARTIFACTS_EVENTS_QUEUE string = eventsQueueName
output ARTIFACTS_CONTAINER string = artifactsContainerName
output ARTIFACTS_STATUS_CONTAINER string = statusContainerName
output ARTIFACTS_INPUT_CONTAINER string = inputContainerName
output AZURE_OPENAI_ENDPOINT string = openAiAccess.outputs.endpoint
output AZURE_OPENAI_DEPLOYMENT string = openAiDeploymentName
output AZURE_FUNCTION_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output AZURE_APPLICATION_INSIGHTS_NAME string = monitoring.outputs.appInsightsName
// For the azd postdeploy hook (scripts/register_webhook.py): whether to register the webhook,
// and where to store its secret.
output ARTIFACTS_REGISTER_WEBHOOK bool = webhookEnabled
output AZURE_KEY_VAULT_NAME string = webhookEnabled ? keyVaultName : ''
output AZURE_KEY_VAULT_ENDPOINT string = webhookEnabled ? 'https://${keyVaultName}${environment().suffixes.keyvaultDns}/' : ''
