// One storage account for the Functions host (AzureWebJobsStorage), the deployment package, the
// app's queues and the artifacts themselves. Only Entra identities can reach its data: shared
// keys (and so connection strings and account SAS) are disabled, and each identity holds data
// roles only on the containers and queues it uses (access.bicep).

param location string
param tags object
@minLength(3)
@maxLength(24)
param name string
param deploymentContainerName string
param artifactsContainerName string
param statusContainerName string
@description('The input container (input_blobs): created here, read-only for the app (access.bicep).')
param inputContainerName string
@description('ARTIFACTS_QUEUE: one message per file, from the run watcher to persist_artifact.')
param artifactsQueueName string
@description('ARTIFACTS_RUNS_QUEUE: delayed messages from the run watcher to itself.')
param runsQueueName string
@description('ARTIFACTS_EVENTS_QUEUE: one completion event per run, for downstream systems.')
param eventsQueueName string
@allowed(['Standard_LRS', 'Standard_ZRS', 'Standard_GRS', 'Standard_GZRS'])
param skuName string = 'Standard_LRS'

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35:Default action Allow on purpose. Flex Consumption reaches storage over its public endpoint unless the app is put in a virtual network with private endpoints, which cost money at rest. Shared keys are disabled, so every request still needs an Entra token and a data role.
  // checkov:skip=CKV_AZURE_59:Same reason as CKV_AZURE_35: the public endpoint stays reachable for the serverless host; anonymous and key-based access are both disabled.
  // checkov:skip=CKV_AZURE_206:Locally redundant by default to keep the at-rest price lowest; set storageSkuName (main.bicep, AZURE_STORAGE_SKU) to Standard_ZRS or Standard_GZRS where artifacts need zone or geo redundancy.
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: { name: skuName }
  properties: {
    accessTier: 'Hot'
    allowSharedKeyAccess: false // no keys: every caller, the host included, uses Entra ID
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: { enabled: true, keyType: 'Account' }
        file: { enabled: true, keyType: 'Account' }
        queue: { enabled: true, keyType: 'Account' }
        table: { enabled: true, keyType: 'Account' }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    // A deleted artifact (or the whole container) can be restored for a week.
    deleteRetentionPolicy: { enabled: true, days: 7 }
    containerDeleteRetentionPolicy: { enabled: true, days: 7 }
  }
}

// The Functions host's own containers with identity-based AzureWebJobsStorage: azure-webjobs-hosts
// (host locks, the timer's schedule and singleton leases, the host id) and azure-webjobs-secrets
// (the function keys). The host creates them when missing; creating them here lets the app's
// identity be granted a role on each (a role assignment needs its scope to exist) instead of on the
// whole account.
var hostContainerNames = ['azure-webjobs-hosts', 'azure-webjobs-secrets']
// Every container the app's identity reads and writes: the artifacts, the status records and the
// host's own. Not the deployment package container, which only the deployment identity can reach.
var appContainerNames = concat([artifactsContainerName, statusContainerName], hostContainerNames)

// The app creates its containers on first use too; creating them here makes them visible (and
// grantable) before the first run, and keeps their names in one place with the app settings.
resource containers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [
  for container in concat([deploymentContainerName, inputContainerName], appContainerNames): {
    parent: blobService
    name: container
    properties: { publicAccess: 'None' }
  }
]

// Records in the status container that matter only for a while are deleted by Storage itself, so
// nothing there grows for ever (the policy runs about once a day; a deleted blob is then kept by
// soft delete for a week like any other). Each rule's prefix is '<container>/<prefix>':
// - _webhooks/: one record per signed delivery handled, so that a retried delivery (same
//   webhook-id) is not acted on twice. Deliveries are retried for up to 72 hours (OpenAI's webhook
//   guide; Azure's webhook page gives no window); 7 days is more than twice that, and a delivery's
//   signature is refused 5 minutes after its timestamp anyway.
// - _idempotency/: Idempotency-Key claims and their pending markers, which lapse after 24 hours
//   (KEY_LIFETIME_SECONDS in shared/storage/idempotency.py); deleted a day after that at the earliest.
// - _invalid/: queue messages no step could use, kept 30 days for an operator to look at.
// Run records and failure records are not touched: they live as long as the artifacts do.
resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'status-webhook-deliveries'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: ['blockBlob']
              prefixMatch: ['${statusContainerName}/_webhooks/']
            }
            actions: {
              baseBlob: {
                delete: { daysAfterModificationGreaterThan: 7 }
              }
            }
          }
        }
        {
          name: 'status-idempotency-claims'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: ['blockBlob']
              prefixMatch: ['${statusContainerName}/_idempotency/']
            }
            actions: {
              baseBlob: {
                delete: { daysAfterModificationGreaterThan: 2 }
              }
            }
          }
        }
        {
          name: 'status-invalid-messages'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: ['blockBlob']
              prefixMatch: ['${statusContainerName}/_invalid/']
            }
            actions: {
              baseBlob: {
                delete: { daysAfterModificationGreaterThan: 30 }
              }
            }
          }
        }
      ]
    }
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: account
  name: 'default'
}

// Every queue the app uses, created up front so each role can be scoped to exactly the queues
// that need it. The app's functions trigger on the first four: the runs and artifacts queues and
// the poison queues the host moves a message to after maxDequeueCount failed deliveries (a trigger
// on a "-poison" queue gets no poison queue of its own). The events queue is only written to by
// the app; downstream systems read it.
var poisonSuffix = '-poison'
var triggerQueueNames = [
  runsQueueName
  artifactsQueueName
  '${runsQueueName}${poisonSuffix}'
  '${artifactsQueueName}${poisonSuffix}'
]
var sendOnlyQueueNames = [eventsQueueName]

resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [
  for queue in concat(triggerQueueNames, sendOnlyQueueNames): {
    parent: queueService
    name: queue
  }
]

output name string = account.name
output blobEndpoint string = account.properties.primaryEndpoints.blob
output queueEndpoint string = account.properties.primaryEndpoints.queue
output deploymentContainerName string = deploymentContainerName
// The container the app's identity only reads (Storage Blob Data Reader): the POST's input_blobs.
output inputContainerName string = inputContainerName
// Containers the app's identity gets Storage Blob Data Contributor on, one assignment each.
output appContainerNames array = appContainerNames
// Queues the app's functions trigger on (the host reads, deletes, re-times and poisons messages;
// the app also sends to the runs and artifacts queues), and queues the app only sends to.
output triggerQueueNames array = triggerQueueNames
output sendOnlyQueueNames array = sendOnlyQueueNames
