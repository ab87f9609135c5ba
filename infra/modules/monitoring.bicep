// Log Analytics + workspace-based Application Insights. Local (key) ingestion is disabled, so
// telemetry is accepted only from an Entra identity: the app sends it with its managed identity
// (APPLICATIONINSIGHTS_AUTHENTICATION_STRING) and needs Monitoring Metrics Publisher (access.bicep).

param location string
param tags object
param logAnalyticsName string
param appInsightsName string

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: { name: 'PerGB2018' } // pay per GB ingested; nothing is ingested while the app is idle
    retentionInDays: 30 // within the retention that is included in the ingestion price
    features: { disableLocalAuth: true }
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: appInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    DisableLocalAuth: true // Entra-only ingestion: the connection string alone can't send telemetry
    publicNetworkAccessForIngestion: 'Enabled'
    publicNetworkAccessForQuery: 'Enabled'
  }
}

output appInsightsName string = appInsights.name
output appInsightsId string = appInsights.id
// Not a secret: it identifies the component; with local auth disabled it grants nothing by itself.
output connectionString string = appInsights.properties.ConnectionString
