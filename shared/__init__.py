"""Persist the files that Azure OpenAI's code interpreter makes into Blob Storage.

The map of the code. ``function_app.py`` holds the bindings only; everything else lives here,
one job per module, in layers. A module imports from its own layer or from those below it,
never from above, and no import cycle exists (both checked by tests/test_layers.py)::

    function_app.py        the bindings: each function hands its trigger to a layer below
    ─────────────────────────────────────────────────────────────────────────────────────────
    api/                   what a caller touches
      answers                JSON answers, errors included, and the HTTP handler wrapper
      callers                who is calling (Easy Auth), and who may see which run
      run_request            the POST body, checked field by field
      start                  POST /api/responses: start a run, record it, queue its watcher
      inputs                 input_blobs: checked, then streamed into the Azure OpenAI files API
      status                 GET /api/responses/{id}: where the run and each file stand
      import_cancel          POST .../import and .../cancel
      webhooks               POST /api/webhooks/azure-openai: a run ended, react at once
    pipeline/              the queue and timer steps, in the order a run meets them
      watcher                follows one run to its end by delayed self-messages
      discovery              every file a response made: citations, results, container listings
      fan_out                one artifact message per file not yet persisted
      persist                the download step: one file, streamed, into a blob
      progress               where each file of a run stands, in a fixed number of reads
      events                 the one completion event per run (a CloudEvent), and its Event Grid publish
      input_cleanup          the run's uploaded inputs, deleted once it has ended (at least once)
      queue_monitor          the queues' depth and age, once a minute
    runtime.py             the process's clients, built once from the settings
    storage/               everything written to Storage, and its formats
      containers             what every container writer shares: made once, JSON documents
      artifact_blobs         an artifact streamed into a blob, visible only when whole
      run_records            the run record: the watcher's state, conditional writes
      status_records         the status container: failures, events, webhooks, settle logs
      idempotency            Idempotency-Key claims
      input_blobs            the input container: blobs a POST names, read a piece at a time
      messages               the queue messages between the steps (schema version 1)
      queues                 sending them, encoded as the host's triggers read them
      naming                 blob names, content types, safe metadata
      links                  read-only download links (SAS)
    ─────────────────────────────────────────────────────────────────────────────────────────
    the foundation         used by every layer; imports nothing above it
      settings               the app settings: one table, read and checked once
      limits                 the platform's limits and the numbers derived from them
      errors                 every error the app raises, in one tree
      host_settings          host.json as the host reads it
      openai_client          the Azure OpenAI endpoints this app calls
      json_values            integers and numbers read out of untrusted JSON (never booleans)
      retry, telemetry, ids, clock

A name that starts with ``_`` is its module's own; any other name is used outside its module
(or is a tunable the docs name), and is imported from the module that defines it, never through
another that imported it.

The contracts other systems rely on are documented in docs/contracts.md; the rest of the docs
are in docs/ by reader, starting from README.md.
"""

# The layers, lowest first, as tests/test_layers.py enforces them: the foundation is every module
# directly in ``shared`` except those named here.
LAYERS = ("shared", "shared.storage", "shared.runtime", "shared.pipeline", "shared.api", "function_app")
