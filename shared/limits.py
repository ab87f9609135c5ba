"""The platform's limits, each stated once, and the app's numbers derived from them.

Every figure here comes from the Azure documentation for the service named beside it. The
numbers below the platform's are computed from them, so a limit that changes moves everything
that depends on it. Standard library only: the settings check loads it outside the app.
"""

from __future__ import annotations

from datetime import timedelta

# --- The platform -----------------------------------------------------------------------------

# Azure Functions: the front end (Azure Load Balancer) ends an HTTP-triggered request after 230 s,
# whatever functionTimeout allows.
HTTP_REQUEST_LIMIT_SECONDS = 230
# Storage queues: a message is at most 64 KiB as stored; the app's are base64, 4 bytes per 3.
QUEUE_MESSAGE_MAX_BYTES = 64 * 1024
# Storage queues: a message's visibility delay is at most 7 days.
QUEUE_MAX_VISIBILITY_SECONDS = 7 * 24 * 3600
# Blob Storage: a user delegation key, and so any link signed with it, is valid at most 7 days.
USER_DELEGATION_KEY_MAX_VALIDITY = timedelta(days=7)
# Blob Storage: all of one blob's metadata, names and values, is at most 8 KiB.
BLOB_METADATA_MAX_BYTES = 8 * 1024

# --- Derived from the HTTP limit ---------------------------------------------------------------

# What an HTTP handler may spend before it must answer, with room to write the answer.
HTTP_BUDGET_SECONDS = HTTP_REQUEST_LIMIT_SECONDS - 5
# One Azure OpenAI call made inside a request: the longest AZURE_OPENAI_TIMEOUT_SECONDS accepted,
# and its default (room left for the Storage writes around the call).
MAX_UPSTREAM_CALL_SECONDS = HTTP_REQUEST_LIMIT_SECONDS - 10
DEFAULT_UPSTREAM_CALL_SECONDS = HTTP_REQUEST_LIMIT_SECONDS - 30
# The longest ``wait`` a POST may ask for, with room for the rest of the request.
MAX_WAIT_SECONDS = HTTP_REQUEST_LIMIT_SECONDS - 30
# An idempotency claim still pending after this was held by a request that can no longer be running.
CLAIM_ABANDONED_SECONDS = HTTP_REQUEST_LIMIT_SECONDS + 10

# --- Derived from the Storage limits -----------------------------------------------------------

# The longest JSON message the app sends: 48 KiB, which is 64 KiB once base64-encoded.
MAX_MESSAGE_BYTES = QUEUE_MESSAGE_MAX_BYTES * 3 // 4
# The longest download link: no longer than the key that signs it.
MAX_LINK_MINUTES = int(USER_DELEGATION_KEY_MAX_VALIDITY.total_seconds()) // 60

# --- The app's own bounds ----------------------------------------------------------------------

# The start of an unusable queue message kept in its failure record: enough to recognise it.
EXCERPT_BYTES = 512

# --- Files in from Blob (``input_blobs``) --------------------------------------------------------

# Azure OpenAI's files API: one file is at most 512 MB (the assistants purpose).
OPENAI_FILE_MAX_BYTES = 512 * 1024 * 1024
# At most this many input blobs per run; the bytes each and together are settings
# (ARTIFACTS_INPUT_MAX_BYTES, ARTIFACTS_INPUT_MAX_TOTAL_BYTES) with these defaults: one POST
# uploads them all within its HTTP budget.
MAX_INPUT_BLOBS = 10
DEFAULT_INPUT_BLOB_BYTES = 100 * 1024 * 1024
DEFAULT_INPUT_TOTAL_BYTES = 200 * 1024 * 1024
# A blob name (Blob Storage allows 1024 characters; the owner's prefix comes on top).
MAX_INPUT_BLOB_NAME_CHARS = 512
# The piece of a blob read from Storage and sent on at once: the upload's memory bound per blob.
INPUT_CHUNK_BYTES = 1024 * 1024
