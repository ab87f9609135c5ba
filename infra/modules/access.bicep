// Data-plane role assignments on storage and Application Insights: the least that works for the
// Functions host, the queue triggers, the app's own queue sends, and the artifact writer.
// (Azure OpenAI access is granted in openai-access.bicep, in the account's own resource group.)

param storageAccountName string
@description('Queues the functions trigger on (the app also sends to some): Queue Data Contributor on each.')
param triggerQueueNames array
@description('Queues the app only sends to: Queue Data Message Sender on each, and Queue Data Reader for its queue monitor.')
param sendOnlyQueueNames array
param appInsightsName string
param appPrincipalId string
@description('Optional: a developer (or CI principal) given the same roles as the app. Empty: none.')
param developerPrincipalId string = ''
param developerPrincipalType string = 'User'

// Built-in role definition IDs (the same in every tenant).
var roles = {
  // Host storage with an identity requires Owner on blobs (the host manages its own containers:
  // keys, leases, the deployment package). It also covers writing artifacts and failure records.
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

resource appBlobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, appPrincipalId, roles.storageBlobDataOwner)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
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

// --- optionally, a developer: the same data roles, so `func start` can run against these resources ---

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
