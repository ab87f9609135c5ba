// The Key Vault holding the Azure OpenAI webhook signing secret (only when webhooks are on).
// scripts/register_webhook.py writes the secret (the endpoint's whsec_ value is shown once, at
// registration); the app reads it through a Key Vault reference, so provisioning again never
// touches it. Access is by Entra role only: the app may read secrets, the developer may write them.

param location string
param tags object
@minLength(3)
@maxLength(24)
param name string
param appPrincipalId string
@description('Object ID of the user or service principal running the registration script. Empty: none.')
param developerPrincipalId string = ''
param developerPrincipalType string = 'User'

// Built-in role definition IDs (the same in every tenant).
var roles = {
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6' // read secret values
  keyVaultSecretsOfficer: 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7' // create, update and delete secrets
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109:Default action Allow on purpose: Flex Consumption resolves Key Vault references only from a vault that is not network-restricted (a documented limit of the plan), and the app runs without a virtual network. Every request still needs an Entra token and an RBAC role; no access policies exist.
  // checkov:skip=CKV_AZURE_189:Same reason as CKV_AZURE_109: public network access stays on so the platform can resolve the app's Key Vault reference; RBAC authorization gates every read and write.
  // checkov:skip=CKV2_AZURE_32:A private endpoint would need a virtual network for the Flex Consumption app (billed at rest), and Key Vault references on Flex Consumption do not resolve through one. RBAC authorization gates every request.
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: { family: 'A', name: 'standard' }
    enableRbacAuthorization: true // roles only, no access policies
    enableSoftDelete: true
    softDeleteRetentionInDays: 7 // the shortest: a deleted environment's name is free again after a week
    enablePurgeProtection: true // a deleted secret can't be purged before its retention ends
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource appSecretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, appPrincipalId, roles.keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource developerSecretsOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(developerPrincipalId)) {
  name: guid(vault.id, developerPrincipalId, roles.keyVaultSecretsOfficer)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsOfficer)
    principalId: developerPrincipalId
    principalType: developerPrincipalType
  }
}

output name string = vault.name
output endpoint string = vault.properties.vaultUri
