// A user-assigned identity: the app's (storage, telemetry, Azure OpenAI, Key Vault), or the one the
// platform reads the deployment package with. User-assigned rather than system-assigned so its roles
// can be granted before the Function App exists (the host must never start without them) and
// survive a re-create.

param location string
param tags object
param name string

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output principalId string = identity.properties.principalId
output clientId string = identity.properties.clientId
