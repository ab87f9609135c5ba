// Data-plane role assignments on storage and Application Insights: the least that works for the
// Functions host, the queue triggers, the app's own queue sends, the artifact writer and the
// download links. (Azure OpenAI access is granted in openai-access.bicep, in the account's own
// resource group.)
//
// Blob roles are granted container by container, never on the account: a user delegation SAS
// reaches only what its signer's own roles reach when the link is used, so the app's links can
// reach its own containers and nothing else, the deployment package least of all.

param storageAccountName string
@description('Blob containers the app reads and writes (artifacts, status records, the Functions host\'s own): Storage Blob Data Contributor on each.')
param appContainerNames array
@description('The Flex Consumption deployment package container: Storage Blob Data Contributor for the deployment identity, nothing for the app\'s.')
param deploymentContainerName string
@description('The input container (input_blobs): Storage Blob Data Reader for the app, and nothing else on it.')
param inputContainerName string
@description('Queues the functions trigger on (the app also sends to some): Queue Data Contributor on each.')
param triggerQueueNames array
@description('Queues the app only sends to: Queue Data Message Sender on each, and Queue Data Reader for its queue monitor.')
param sendOnlyQueueNames array
param appInsightsName string
param appPrincipalId string
@description('The identity the platform reads the deployment package with (functionAppConfig.deployment.storage).')
param deploymentPrincipalId string
@description('Optional: a developer (or CI principal) given the app\'s roles, and more (see below). Empty: none.')
param developerPrincipalId string = ''
param developerPrincipalType string = 'User'

// Built-in role definition IDs (the same in every tenant).
var roles = {
  // Blobs in one container: read, write, delete, list, leases; and creating that container when it
  // is missing. The app's artifacts and status records, and the Functions host's own containers
  // (its locks, timer schedule and keys), each by its own assignment. The host's documented role
  // is Storage Blob Data Owner on the account; what Owner adds over Contributor (ACLs and
  // ownership on hierarchical-namespace accounts, blob tags) is nothing the host uses here.
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  // Read and list the blobs of one container: the input container, whose blobs a POST names in
  // input_blobs. The app never writes or deletes there.
  storageBlobDataReader: '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'
  // generateUserDelegationKey and nothing else, which Azure authorizes only on the account (or
  // above): the key that signs the download links. A link still needs the signer's data role on
  // the blob's container when it is used, which the app holds only on its own containers.
  storageBlobDelegator: 'db58b8e5-c6ad-4a2a-8342-4190687cbf4a'
  // Every blob right on the account: for the optional developer principal only (see below).
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  // The queue triggers, scoped to the queues they listen to: the host reads and deletes messages,
  // updates a failed message's visibility and moves poison messages (creating the poison queue
  // if missing), which needs Contributor; Message Processor + Message Sender lack the update
  // right. The app's own sends to the runs and artifacts queues are covered by the same role.
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  // A queue the app only writes to (the events queue): adding messages and nothing else. The
  // app creates a queue only when it is missing, which cannot happen to one created here.
  storageQueueDataMessageSender: 'c6a89b2d-59bc-44d0-9896-0f6e12d7b80a'
  // The app's queue monitor (a timer) reads each queue's depth and peeks at its oldest message
  // for the metrics the alerts use; on a send-only queue that needs this, and cannot consume.
  storageQueueDataReader: '19e7f393-937e-4f77-808e-94535e297925'
  // Entra-authenticated telemetry ingestion into Application Insights.
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

var withDeveloper = !empty(developerPrincipalId)

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: account
  name: 'default'
}

resource appContainers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = [
  for container in appContainerNames: {
    parent: blobService
    name: container
  }
]

resource inputContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: inputContainerName
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: deploymentContainerName
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' existing = {
  parent: account
  name: 'default'
}

resource triggerQueues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' existing = [
  for queue in triggerQueueNames: {
    parent: queueService
    name: queue
  }
]

resource sendOnlyQueues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' existing = [
  for queue in sendOnlyQueueNames: {
    parent: queueService
    name: queue
  }
]

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

// --- the app's identity ---

// The only role the app holds on the whole account: it can get a user delegation key, not read a blob.
resource appBlobDelegator 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, appPrincipalId, roles.storageBlobDelegator)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDelegator)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// One assignment per container: artifacts, status records, azure-webjobs-hosts, azure-webjobs-secrets.
resource appBlobContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (container, i) in appContainerNames: {
    name: guid(appContainers[i].id, appPrincipalId, roles.storageBlobDataContributor)
    scope: appContainers[i]
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
      principalId: appPrincipalId
      principalType: 'ServicePrincipal'
    }
  }
]

// The input container: read only (input_blobs are streamed from it into Azure OpenAI).
resource appInputReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(inputContainer.id, appPrincipalId, roles.storageBlobDataReader)
  scope: inputContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataReader)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// One assignment per queue: each role reaches its own queues and nothing else in the account.
resource appQueueContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (queue, i) in triggerQueueNames: {
    name: guid(triggerQueues[i].id, appPrincipalId, roles.storageQueueDataContributor)
    scope: triggerQueues[i]
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataContributor)
      principalId: appPrincipalId
      principalType: 'ServicePrincipal'
    }
  }
]

resource appQueueSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (queue, i) in sendOnlyQueueNames: {
    name: guid(sendOnlyQueues[i].id, appPrincipalId, roles.storageQueueDataMessageSender)
    scope: sendOnlyQueues[i]
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataMessageSender)
      principalId: appPrincipalId
      principalType: 'ServicePrincipal'
    }
  }
]

resource appQueueReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (queue, i) in sendOnlyQueueNames: {
    name: guid(sendOnlyQueues[i].id, appPrincipalId, roles.storageQueueDataReader)
    scope: sendOnlyQueues[i]
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataReader)
      principalId: appPrincipalId
      principalType: 'ServicePrincipal'
    }
  }
]

resource appMetricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, appPrincipalId, roles.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// --- the deployment identity: the package container and nothing else ---

// The platform reads the package with this identity when an instance starts, and writes it there
// when azd deploys (read and write, as the Flex Consumption docs grant it, but on the container only).
resource deploymentBlobContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(deploymentContainer.id, deploymentPrincipalId, roles.storageBlobDataContributor)
  scope: deploymentContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: deploymentPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// --- optionally, a developer: the app's queue roles, so `func start` can run against these resources ---
//
// On blobs the developer keeps Storage Blob Data Owner on the whole account, wider than the app:
// this principal is meant to be whoever runs `azd up`, who already needs the right to create role
// assignments in the resource group (and so could grant itself any data role); the account-wide
// role spares them doing so by hand to read the deployment package, the host's containers or the
// artifacts during an incident, and lets a local `func start` use every container. A link they
// sign can reach what they can, which is no more than they can read directly.

resource developerBlobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (withDeveloper) {
  name: guid(account.id, developerPrincipalId, roles.storageBlobDataOwner)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
    principalId: developerPrincipalId
    principalType: developerPrincipalType
  }
}

resource developerQueueContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (queue, i) in triggerQueueNames: if (withDeveloper) {
    name: guid(triggerQueues[i].id, developerPrincipalId, roles.storageQueueDataContributor)
    scope: triggerQueues[i]
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataContributor)
      principalId: developerPrincipalId
      principalType: developerPrincipalType
    }
  }
]

resource developerQueueSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (queue, i) in sendOnlyQueueNames: if (withDeveloper) {
    name: guid(sendOnlyQueues[i].id, developerPrincipalId, roles.storageQueueDataMessageSender)
    scope: sendOnlyQueues[i]
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataMessageSender)
      principalId: developerPrincipalId
      principalType: developerPrincipalType
    }
  }
]

resource developerQueueReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (queue, i) in sendOnlyQueueNames: if (withDeveloper) {
    name: guid(sendOnlyQueues[i].id, developerPrincipalId, roles.storageQueueDataReader)
    scope: sendOnlyQueues[i]
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataReader)
      principalId: developerPrincipalId
      principalType: developerPrincipalType
    }
  }
]
