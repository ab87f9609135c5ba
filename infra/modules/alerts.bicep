// Log alerts on the app's OpenTelemetry metrics in Application Insights (customMetrics; metric
// attributes are in customDimensions). Created only when someone is told: an email address (an
// action group is made for it) or an existing action group. Storage's own QueueMessageCount metric
// has no per-queue dimension, so queue depth comes from the app's artifacts.queue.depth gauge.

param location string
param tags object
param appInsightsId string
@description('Email address to notify. Empty: none.')
param alertEmail string = ''
@description('Resource ID of an existing action group to notify. Empty: none.')
param alertActionGroupId string = ''
@description('Alert when more artifacts than this fail for good within the window.')
@minValue(0)
param failedArtifactsThreshold int
param namePrefix string

var window = 'PT15M' // long enough for the metric export interval (60 s) and ingestion delay
var frequency = 'PT5M'
var withEmail = !empty(alertEmail)
var actionGroups = concat(withEmail ? [emailGroup.id] : [], empty(alertActionGroupId) ? [] : [alertActionGroupId])

resource emailGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (withEmail) {
  name: '${namePrefix}-email'
  location: 'Global'
  tags: tags
  properties: {
    groupShortName: 'artifacts' // at most 12 characters; shown in the email
    enabled: true
    emailReceivers: [
      { name: 'operator', emailAddress: alertEmail, useCommonAlertSchema: true }
    ]
  }
}

// A message in a poison queue is a file or a run the host gave up on; the poison triggers record
// it and delete it, so a depth that stays above zero also means those triggers are failing.
var poisonDepthQuery = '''
customMetrics
| where name == 'artifacts.queue.depth'
| extend queue = tostring(customDimensions['queue'])
| where queue endswith '-poison'
| summarize depth = max(value) by queue
'''

// artifacts.files.failed counts each file that failed for good (attribute code: file_gone, too_large, ...).
var failedArtifactsQuery = '''
customMetrics
| where name == 'artifacts.files.failed'
| summarize failed = sum(valueSum)
'''

// artifacts.runs.given_up counts runs the watcher stopped following (too old, gone, or poisoned).
var givenUpQuery = '''
customMetrics
| where name == 'artifacts.runs.given_up'
| summarize given_up = sum(valueSum)
'''

var rules = [
  {
    name: 'poison-queue'
    displayName: 'Artifacts: poison queue not empty'
    description: 'A message reached a -poison queue: a file or run failed for good. Open the workbook, or read the failure records in the status container.'
    severity: 1
    query: poisonDepthQuery
    measure: 'depth'
    aggregation: 'Maximum'
    dimensions: [{ name: 'queue', operator: 'Include', values: ['*'] }]
    threshold: 0
  }
  {
    name: 'failed-artifacts'
    displayName: 'Artifacts: files failing'
    description: 'More artifacts than the threshold failed for good in 15 minutes (artifacts.files.failed, by code).'
    severity: 2
    query: failedArtifactsQuery
    measure: 'failed'
    aggregation: 'Total'
    dimensions: []
    threshold: failedArtifactsThreshold
  }
  {
    name: 'runs-given-up'
    displayName: 'Artifacts: runs given up'
    description: 'The run watcher gave up on at least one run (artifacts.runs.given_up): its files may be missing.'
    severity: 2
    query: givenUpQuery
    measure: 'given_up'
    aggregation: 'Total'
    dimensions: []
    threshold: 0
  }
]

resource alerts 'Microsoft.Insights/scheduledQueryRules@2022-06-15' = [
  for rule in rules: {
    name: '${namePrefix}-${rule.name}'
    location: location
    tags: tags
    properties: {
      displayName: rule.displayName
      description: rule.description
      severity: rule.severity
      enabled: true
      scopes: [appInsightsId]
      evaluationFrequency: frequency
      windowSize: window
      criteria: {
        allOf: [
          {
            query: rule.query
            timeAggregation: rule.aggregation
            metricMeasureColumn: rule.measure
            dimensions: rule.dimensions
            operator: 'GreaterThan'
            threshold: rule.threshold
            failingPeriods: { numberOfEvaluationPeriods: 1, minFailingPeriodsToAlert: 1 }
          }
        ]
      }
      autoMitigate: true
      actions: { actionGroups: actionGroups }
    }
  }
]

output ruleNames array = [for (rule, i) in rules: alerts[i].name]
