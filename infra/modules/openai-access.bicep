// Grants Cognitive Services OpenAI User on the Azure OpenAI account the app calls (created by
// openai.bicep, or an existing one), and reports its endpoint. Deployed into the account's own
// resource group, which may belong to another subscription of the same tenant.

param accountName string
param appPrincipalId string
param developerPrincipalId string = ''
param developerPrincipalType string = 'User'

// Inference, including the Responses API and its code interpreter containers; no management rights.
var openAiUserRoleId = '5e0bd9bd-7b93-4f28-af87-19fc36ad61bd'

resource account 'Microsoft.CognitiveServices/accounts@2024-10-01' existing = {
  name: accountName
}

resource appOpenAiUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, appPrincipalId, openAiUserRoleId)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', openAiUserRoleId)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource developerOpenAiUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(developerPrincipalId)) {
  name: guid(account.id, developerPrincipalId, openAiUserRoleId)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', openAiUserRoleId)
    principalId: developerPrincipalId
    principalType: developerPrincipalType
  }
}

// Entra ID authentication needs the account's custom subdomain; the openai.azure.com form of it
// serves the v1 API for both OpenAI and AI Services accounts.
output endpoint string = 'https://${account.properties.customSubDomainName}.openai.azure.com/'
