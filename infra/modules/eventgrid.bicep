// The Event Grid topic the completion events are also published to (only when eventGridEnabled).
// CloudEvents 1.0 input schema: the app publishes the same CloudEvent it sends on the events queue.
// Local auth (access keys, SAS) is disabled: the app publishes with its managed identity, which
// holds EventGrid Data Sender on this topic and nothing wider.

param location string
param tags object
@minLength(3)
@maxLength(50)
param name string
param appPrincipalId string

// Built-in role definition IDs (the same in every tenant).
var roles = {
  eventGridDataSender: 'd5a91429-5739-47e2-a06b-3470a27159e7' // publish events to a topic
}

resource topic 'Microsoft.EventGrid/topics@2025-02-15' = {
  // checkov:skip=CKV_AZURE_193:Public network access stays on: the Flex Consumption app runs without a virtual network, and subscribers' event handlers are reached by Event Grid itself. Publishing needs an Entra token with EventGrid Data Sender (local auth is disabled).
  name: name
  location: location
  tags: tags
  identity: { type: 'None' }
  properties: {
    inputSchema: 'CloudEventSchemaV1_0'
    disableLocalAuth: true // no keys or SAS: Entra tokens only
    publicNetworkAccess: 'Enabled'
    minimumTlsVersionAllowed: '1.2'
  }
}

resource appDataSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(topic.id, appPrincipalId, roles.eventGridDataSender)
  scope: topic
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.eventGridDataSender)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output endpoint string = topic.properties.endpoint
output name string = topic.name
