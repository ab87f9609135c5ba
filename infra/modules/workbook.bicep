// A workbook on Application Insights for "where is run X": every request, dependency and log line
// of one run's traces (spans and logs carry response_id, container_id, file_id, bytes and outcome
// as attributes, which land in customDimensions), each file's last outcome, and the app's metrics.

param location string
param tags object
param appInsightsId string
param displayName string

// Everything in the traces that carried this response_id: one run is one trace per step, linked by
// the traceparent the app puts in each queue message, so the operation ids gather all of them.
var runTimelineQuery = '''
let rid = '{ResponseId}';
let operations = union requests, dependencies, traces, exceptions
    | where tostring(customDimensions['response_id']) == rid
    | distinct operation_Id;
union requests, dependencies, traces, exceptions
| where operation_Id in (operations) or tostring(customDimensions['response_id']) == rid
| extend file_id = tostring(customDimensions['file_id']), container_id = tostring(customDimensions['container_id']),
    bytes = tolong(customDimensions['bytes']), outcome = tostring(customDimensions['outcome'])
| project timestamp, itemType, name = coalesce(name, message, outerMessage), success, resultCode, duration,
    outcome, file_id, container_id, bytes, operation_Id
| order by timestamp asc
'''

var runFilesQuery = '''
let rid = '{ResponseId}';
union requests, dependencies, traces
| where tostring(customDimensions['response_id']) == rid
| extend file_id = tostring(customDimensions['file_id'])
| where isnotempty(file_id)
| extend container_id = tostring(customDimensions['container_id']), outcome = tostring(customDimensions['outcome']),
    bytes = tolong(customDimensions['bytes'])
| where isnotempty(outcome)
| summarize arg_max(timestamp, outcome, bytes, container_id) by file_id
| order by timestamp asc
'''

var filesOverTimeQuery = '''
customMetrics
| where name in ('artifacts.files.persisted', 'artifacts.files.failed')
| extend series = iff(name == 'artifacts.files.persisted', 'persisted', strcat('failed: ', tostring(customDimensions['code'])))
| summarize files = sum(valueSum) by series, bin(timestamp, 5m)
| render timechart
'''

var queuesQuery = '''
customMetrics
| where name in ('artifacts.queue.depth', 'artifacts.queue.oldest_age_seconds')
| extend series = strcat(tostring(customDimensions['queue']), iff(name == 'artifacts.queue.depth', ' depth', ' oldest (s)'))
| summarize value = max(value) by series, bin(timestamp, 5m)
| render timechart
'''

var latencyQuery = '''
customMetrics
| where name in ('artifacts.download.duration', 'artifacts.run.time_to_last_artifact', 'artifacts.run.polls')
| summarize mean = sum(valueSum) / sum(valueCount), worst = max(valueMax), samples = sum(valueCount) by name
'''

var component = 'microsoft.insights/components'
var whenRunGiven = { parameterName: 'ResponseId', comparison: 'isNotEqualTo', value: '' }

var workbook = {
  version: 'Notebook/1.0'
  items: [
    {
      type: 1
      name: 'intro'
      content: {
        json: '## Code interpreter artifacts\nEnter a `response_id` to see where that run is: each step of its trace, and the last outcome of each file. The charts below cover every run in the time range.'
      }
    }
    {
      type: 9
      name: 'parameters'
      content: {
        version: 'KqlParameterItem/1.0'
        style: 'pills'
        queryType: 0
        resourceType: component
        parameters: [
          {
            id: '4d3f1d64-3d0e-4b57-9d1c-2a7e3b1f6a01'
            version: 'KqlParameterItem/1.0'
            name: 'ResponseId'
            label: 'response_id'
            type: 1
            isRequired: false
            value: ''
          }
          {
            id: '9b0c7e2a-61f4-4f0e-8c53-5d2e8a4b7c02'
            version: 'KqlParameterItem/1.0'
            name: 'TimeRange'
            label: 'Time range'
            type: 4
            isRequired: true
            value: { durationMs: 604800000 }
            typeSettings: {
              selectableValues: [
                { durationMs: 3600000 }
                { durationMs: 86400000 }
                { durationMs: 604800000 }
                { durationMs: 2592000000 }
              ]
            }
          }
        ]
      }
    }
    {
      type: 3
      name: 'run-timeline'
      conditionalVisibility: whenRunGiven
      content: {
        version: 'KqlItem/1.0'
        title: 'The run, step by step'
        query: runTimelineQuery
        size: 0
        queryType: 0
        resourceType: component
        timeContextFromParameter: 'TimeRange'
        visualization: 'table'
      }
    }
    {
      type: 3
      name: 'run-files'
      conditionalVisibility: whenRunGiven
      content: {
        version: 'KqlItem/1.0'
        title: 'Its files: last outcome of each'
        query: runFilesQuery
        size: 0
        queryType: 0
        resourceType: component
        timeContextFromParameter: 'TimeRange'
        visualization: 'table'
      }
    }
    {
      type: 3
      name: 'files-over-time'
      content: {
        version: 'KqlItem/1.0'
        title: 'Files persisted and failed (by code)'
        query: filesOverTimeQuery
        size: 0
        queryType: 0
        resourceType: component
        timeContextFromParameter: 'TimeRange'
        visualization: 'timechart'
      }
    }
    {
      type: 3
      name: 'queues'
      content: {
        version: 'KqlItem/1.0'
        title: 'Queue depth and oldest message age, per queue'
        query: queuesQuery
        size: 0
        queryType: 0
        resourceType: component
        timeContextFromParameter: 'TimeRange'
        visualization: 'timechart'
      }
    }
    {
      type: 3
      name: 'latency'
      content: {
        version: 'KqlItem/1.0'
        title: 'Download duration (s), run end to last artifact (s), polls per run'
        query: latencyQuery
        size: 0
        queryType: 0
        resourceType: component
        timeContextFromParameter: 'TimeRange'
        visualization: 'table'
      }
    }
  ]
  fallbackResourceIds: [appInsightsId]
  '$schema': 'https://github.com/Microsoft/Application-Insights-Workbooks/blob/master/schema/workbook.json'
}

resource runWorkbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(appInsightsId, 'where-is-run-x') // a workbook's name must be a GUID
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: displayName
    category: 'workbook'
    sourceId: toLower(appInsightsId) // the gallery matches workbooks to the component case-sensitively
    serializedData: string(workbook)
  }
}

output id string = runWorkbook.id
