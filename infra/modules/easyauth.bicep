// App Service Authentication (Easy Auth) with Microsoft Entra ID in front of the Function App.
// Every request needs a valid Entra token for one of the allowed audiences (401 otherwise), except
// the webhook route: Azure OpenAI calls it with a Standard Webhooks signature, not a token, and the
// app verifies that signature itself. When this is on, the platform sets WEBSITE_AUTH_ENABLED and
// injects X-MS-CLIENT-PRINCIPAL-* headers (stripping any a caller sends), which the app then trusts.

param appName string
@description('Application (client) ID of the Entra app registration that represents this API.')
@minLength(36) // a GUID: turning Easy Auth on without an app registration fails here, not silently
param clientId string
@description('Tenant that issues the tokens.')
param tenantId string
@description('Audiences a token may be issued for. Empty: api://<clientId> and <clientId>.')
param allowedAudiences array = []
@description('Client application IDs allowed to call the API. Empty: any application in the tenant.')
param allowedClientApplications array = []
@description('Object IDs of the groups a caller must belong to (any one of them), read from the token\'s groups claim. Empty: no group restriction.')
param allowedGroups array = []
@description('Paths that need no token, e.g. the webhook route (it is signed instead).')
param excludedPaths array

resource app 'Microsoft.Web/sites@2024-04-01' existing = {
  name: appName
}

var audiences = empty(allowedAudiences) ? ['api://${clientId}', clientId] : allowedAudiences
// The built-in authorization policy: allowedApplications (the token's client) and allowedPrincipals
// (the caller's identity or groups) must both hold when both are set. Each is left out when empty:
// an empty list would not mean "anyone".
var applicationsPolicy = empty(allowedClientApplications) ? {} : { allowedApplications: allowedClientApplications }
var principalsPolicy = empty(allowedGroups) ? {} : { allowedPrincipals: { groups: allowedGroups } }
var authorizationPolicy = union(applicationsPolicy, principalsPolicy)

// checkov applies its App Service "web" configuration checks to every Microsoft.Web/sites/config
// resource; this one is authsettingsV2, which has none of those settings (CKV_AZURE_56, the check
// written for authsettingsV2, passes).
resource auth 'Microsoft.Web/sites/config@2024-04-01' = {
  // checkov:skip=CKV_AZURE_13:That check reads the v1 authsettings shape (properties.enabled). This is authsettingsV2: authentication is on at properties.platform.enabled, as CKV_AZURE_56 verifies.
  // checkov:skip=CKV_AZURE_63:HTTP logging is a property of the site's web configuration, not of authsettingsV2; Flex Consumption sends the app's logs and requests to Application Insights.
  // checkov:skip=CKV_AZURE_65:Detailed error pages are a property of the site's web configuration, not of authsettingsV2; the app answers every error as JSON itself.
  // checkov:skip=CKV_AZURE_66:Failed request tracing is a property of the site's web configuration, not of authsettingsV2; requests are traced in Application Insights (OpenTelemetry).
  // checkov:skip=CKV_AZURE_80:.NET Framework version is a property of the site's web configuration, not of authsettingsV2; the app is Python.
  // checkov:skip=CKV_AZURE_88:Azure Files is a property of the site's web configuration, not of authsettingsV2; Flex Consumption runs from a deployment package in Blob Storage.
  // checkov:skip=CKV_AZURE_222:Public network access is a property of the site, not of authsettingsV2; see the skip on the site itself (callers and Azure OpenAI's webhooks reach the app over the internet).
  parent: app
  name: 'authsettingsV2'
  properties: {
    platform: { enabled: true }
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: 'Return401' // an API: no login redirects
      excludedPaths: excludedPaths
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: clientId
          openIdIssuer: '${environment().authentication.loginEndpoint}${tenantId}/v2.0'
        }
        validation: union({ allowedAudiences: audiences }, empty(authorizationPolicy) ? {} : { defaultAuthorizationPolicy: authorizationPolicy })
      }
    }
    login: {
      tokenStore: { enabled: false } // bearer tokens only: nothing to store
    }
    httpSettings: {
      requireHttps: true
    }
  }
}
