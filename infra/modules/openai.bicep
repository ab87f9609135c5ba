// A new Azure OpenAI account with one model deployment, used only when no existing account is
// given. Keys are disabled: the app (and an optional developer) call it with Entra tokens.

param location string
param tags object
param name string
param deploymentName string
param modelName string
param modelVersion string
param deploymentSku string
param deploymentCapacity int

resource account 'Microsoft.CognitiveServices/accounts@2024-10-01' = {
  // checkov:skip=CKV_AZURE_134:Public network access stays enabled: the Flex Consumption app calls it without a virtual network (private endpoints would cost money at rest). Keys are disabled, so every call needs an Entra token and the Cognitive Services OpenAI User role.
  name: name
  location: location
  tags: tags
  kind: 'OpenAI'
  sku: { name: 'S0' }
  identity: { type: 'SystemAssigned' } // unused by this app; free, and lets the account reach other resources by identity later
  properties: {
    customSubDomainName: name // required for Entra ID authentication
    disableLocalAuth: true // no API keys: tokens only
    publicNetworkAccess: 'Enabled'
    networkAcls: { defaultAction: 'Allow' }
  }
}

// Standard, DataZoneStandard and GlobalStandard deployments are billed per token: nothing at rest.
resource deployment 'Microsoft.CognitiveServices/accounts/deployments@2024-10-01' = {
  parent: account
  name: deploymentName
  sku: {
    name: deploymentSku
    capacity: deploymentCapacity
  }
  properties: {
    model: {
      format: 'OpenAI'
      name: modelName
      version: modelVersion
    }
    versionUpgradeOption: 'OnceNewDefaultVersionAvailable'
  }
}

output name string = account.name
output deploymentName string = deployment.name
