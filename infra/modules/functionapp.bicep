// The Function App on a Flex Consumption plan (Linux, Python 3.13), running as the user-assigned
// identity. No app setting holds a secret: storage, telemetry and Azure OpenAI all use the identity,
// and the webhook secret (when webhooks are on) is a Key Vault reference the platform resolves.

param location string
param tags object
@description('azd service name (azure.yaml); azd deploys to the app carrying this tag.')
param serviceName string
param planName string
param appName string
param identityId string
param identityClientId string
@description('The identity the platform reads the deployment package with; not the app\'s (see main.bicep).')
param deploymentIdentityId string
param storageBlobEndpoint string
param storageQueueEndpoint string
param deploymentContainerName string
param appInsightsConnectionString string
param maximumInstanceCount int
param instanceMemoryMB int
@description('HTTP invocations one instance runs at once (the HTTP scale group).')
param httpPerInstanceConcurrency int
param openAiEndpoint string
param openAiDeploymentName string
param openAiTimeoutSeconds int
param openAiTokenScope string
param openAiContainerApiVersion string
param artifactsMaxFileBytes int
param downloadAttempts int
param maxFilesPerRun int
param openAiBackground bool
param runMaxHours int
param pollMinSeconds int
param pollMaxSeconds int
param artifactsQueueName string
param runsQueueName string
param eventsQueueName string
param artifactsContainerName string
param statusContainerName string
param inputContainerName string
param linkMinutes int
@allowed(['started', 'all'])
param webhookCapture string
@description('AZURE_OPENAI_WEBHOOK_SECRET as a Key Vault reference; empty when webhooks are off.')
param webhookSecretReference string = ''
@description('AZURE_OPENAI_WEBHOOK_SECRET_PREVIOUS as a Key Vault reference (the secret being rotated out); empty when webhooks are off.')
param webhookPreviousSecretReference string = ''
param callerRole string
@description('ARTIFACTS_REQUIRE_EASY_AUTH: Easy Auth is deployed, so the app refuses callers if it is ever off.')
param requireEasyAuth bool
param importRole string
param allowedModels string
@description('AZURE_OPENAI_IMAGE_DEPLOYMENT: the image model deployment the image_generation tool uses; empty: the tool is refused.')
param openAiImageDeploymentName string = ''
@description('ARTIFACTS_EVENT_SOURCE: the completion event\'s CloudEvents source.')
param eventSource string
@description('ARTIFACTS_EVENT_GRID_ENDPOINT: the Event Grid topic the completion events are also published to; empty: none.')
param eventGridEndpoint string = ''

// Per-function scaling: the HTTP functions share instances, and each queue-triggered function runs
// on instances of its own, so one instance runs either the HTTP group or one queue function.
// host.json is the one place the queue concurrency is set; it is read here rather than repeated.
var hostJson = loadJsonContent('../../host.json')
var queueSettings = hostJson.extensions.queues
var queueBatchSize = queueSettings.batchSize
var queueNewBatchThreshold = queueSettings.newBatchThreshold
// A queue function fetches a new batch once fewer than newBatchThreshold messages are in flight.
var queueConcurrency = queueBatchSize + queueNewBatchThreshold
// Sync handlers run on the Python worker's thread pool: one thread per invocation the instance can
// run at once, or invocations wait inside the worker (its default is min(32, CPUs + 4)).
var workerThreads = max(httpPerInstanceConcurrency, queueConcurrency)

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  // checkov:skip=CKV_AZURE_225:Zone redundancy on Flex Consumption is offered only in some regions; left off so the template deploys in every region that has the plan. Set zoneRedundant: true where it is available.
  properties: {
    reserved: true // Linux
  }
}

// Every setting the app reads (shared/settings.py) plus what the host needs; nothing secret.
// AZURE_OPENAI_API_KEY and AzureWebJobsStorage (a connection string) are deliberately absent:
// without them the app and the host authenticate with the managed identity.
var appSettings = {
  // Host storage (queue triggers, keys, leases) by identity. The app sends its own queue messages
  // (to the runs, artifacts and events queues) through __queueServiceUri + __clientId too.
  AzureWebJobsStorage__blobServiceUri: storageBlobEndpoint
  AzureWebJobsStorage__queueServiceUri: storageQueueEndpoint
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  // Telemetry, authenticated with the same identity (local auth is disabled on the component).
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
  // Azure OpenAI by Entra ID: DefaultAzureCredential picks this user-assigned identity.
  AZURE_OPENAI_ENDPOINT: openAiEndpoint
  AZURE_OPENAI_DEPLOYMENT: openAiDeploymentName
  AZURE_OPENAI_TIMEOUT_SECONDS: string(openAiTimeoutSeconds)
  AZURE_OPENAI_TOKEN_SCOPE: openAiTokenScope
  AZURE_OPENAI_CONTAINER_API_VERSION: openAiContainerApiVersion
  AZURE_OPENAI_BACKGROUND: openAiBackground ? 'true' : 'false' // string() would write True/False
  AZURE_CLIENT_ID: identityClientId
  // The queues (read when the app loads: the triggers bind to them) and the run watcher's pace.
  ARTIFACTS_QUEUE: artifactsQueueName
  ARTIFACTS_RUNS_QUEUE: runsQueueName
  ARTIFACTS_EVENTS_QUEUE: eventsQueueName
  ARTIFACTS_RUN_MAX_HOURS: string(runMaxHours)
  ARTIFACTS_POLL_MIN_SECONDS: string(pollMinSeconds)
  ARTIFACTS_POLL_MAX_SECONDS: string(pollMaxSeconds)
  // Where artifacts go; the artifact writer uses AzureWebJobsStorage__blobServiceUri + __clientId.
  ARTIFACTS_CONTAINER: artifactsContainerName
  ARTIFACTS_STATUS_CONTAINER: statusContainerName
  // input_blobs are read from here with the app's identity (Storage Blob Data Reader on it only).
  ARTIFACTS_INPUT_CONTAINER: inputContainerName
  ARTIFACTS_MAX_FILE_BYTES: string(artifactsMaxFileBytes)
  ARTIFACTS_DOWNLOAD_ATTEMPTS: string(downloadAttempts)
  ARTIFACTS_MAX_FILES_PER_RUN: string(maxFilesPerRun)
  // Download links: user delegation SAS signed with the identity (Storage Blob Delegator on the
  // account gives it the key; its Contributor role on the artifacts container lets the links read).
  ARTIFACTS_LINK_MINUTES: string(linkMinutes)
  ARTIFACTS_WEBHOOK_CAPTURE: webhookCapture
  // The completion event's CloudEvents source (with its type and id, it identifies an event).
  ARTIFACTS_EVENT_SOURCE: eventSource
  // Who may call (with Easy Auth): app roles in the token, and the deployments a POST may name.
  ARTIFACTS_REQUIRE_EASY_AUTH: string(requireEasyAuth)
  ARTIFACTS_CALLER_ROLE: callerRole
  ARTIFACTS_IMPORT_ROLE: importRole
  ARTIFACTS_ALLOWED_MODELS: allowedModels
  // The image_generation tool's deployment, sent as x-ms-oai-image-generation-deployment (empty: refused).
  AZURE_OPENAI_IMAGE_DEPLOYMENT: openAiImageDeploymentName
  // host.json telemetryMode OpenTelemetry: the worker streams its own OpenTelemetry logs and continues
  // the host's trace context; the app configures the exporters (APPLICATIONINSIGHTS_* above, and
  // OTEL_EXPORTER_OTLP_ENDPOINT when one is set by hand).
  PYTHON_ENABLE_OPENTELEMETRY: 'true'
  PYTHON_THREADPOOL_THREAD_COUNT: string(workerThreads)
}

// The webhook signing secret lives in Key Vault, written by scripts/register_webhook.py; a reference
// (not a value) keeps provisioning again from wiping it.
var webhookSettings = empty(webhookSecretReference) ? {} : {
  AZURE_OPENAI_WEBHOOK_SECRET: webhookSecretReference
  AZURE_OPENAI_WEBHOOK_SECRET_PREVIOUS: webhookPreviousSecretReference
}
// The Event Grid topic (eventGridEnabled): published to with the identity (AZURE_CLIENT_ID), never a key.
var eventGridSettings = empty(eventGridEndpoint) ? {} : {
  ARTIFACTS_EVENT_GRID_ENDPOINT: eventGridEndpoint
}
var allSettings = union(appSettings, webhookSettings, eventGridSettings)

resource app 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222:Public network access is how callers reach the HTTP API (POST /api/responses, GET /api/responses/{id}, POST .../{id}/import and .../{id}/cancel) and how Azure OpenAI delivers webhooks (POST /api/webhooks/azure-openai); every route needs a function key (authLevel FUNCTION), and Easy Auth (easyAuthEnabled) can require an Entra token too.
  // checkov:skip=CKV_AZURE_17:Callers authenticate with the function key; requiring client certificates would lock out every ordinary HTTP client.
  // checkov:skip=CKV_AZURE_212:Scaling to zero is the point of Flex Consumption: a standing minimum instance would be billed around the clock. The platform starts instances on demand (up to maximumInstanceCount) and replaces failed ones.
  // checkov:skip=CKV_AZURE_213:Health check pings a path on standing instances; this app scales to zero and has no anonymous health endpoint (every route needs a function key). The platform replaces failed instances itself.
  name: appName
  location: location
  tags: union(tags, { 'azd-service-name': serviceName })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {} // the app's: storage, telemetry, Azure OpenAI, Key Vault references
      '${deploymentIdentityId}': {} // the platform's, for the deployment package only
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    publicNetworkAccess: 'Enabled'
    clientCertEnabled: false
    keyVaultReferenceIdentity: identityId // Key Vault references resolve with the app's identity
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: [for setting in items(allSettings): { name: setting.key, value: setting.value }]
    }
    functionAppConfig: {
      // azd deploys the package through the platform, which writes it here and reads it when an
      // instance starts, with the deployment identity (no keys). The app's identity has no role on
      // this container, so no link it signs can read the package. (The platform attaches this identity to
      // the site, so code running in the app could still ask for its token: see docs/deploy.md.)
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storageBlobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: deploymentIdentityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
        triggers: {
          http: {
            perInstanceConcurrency: httpPerInstanceConcurrency // Python apps would otherwise get 1
          }
        }
      }
      // Python 3.13, the interpreter of the project's environments and tests (scripts/python.sh);
      // requirements.txt pins the worker library the host runs it with (docs/deploy.md, "Python 3.13").
      runtime: {
        name: 'python'
        version: '3.13'
      }
    }
  }
}

// Publishing with a user name and password is off, for FTP and for the SCM (Kudu) site alike: no
// publish profile can deploy or read the app. azd deploys with an Entra token, which these leave alone.
resource ftpPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: app
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: app
  name: 'scm'
  properties: {
    allow: false
  }
}

output name string = app.name
output url string = 'https://${app.properties.defaultHostName}'
output queueConcurrency int = queueConcurrency
output workerThreads int = workerThreads
