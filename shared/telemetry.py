"""Traces and metrics: one trace per run, from the POST through every queue message to the event.

Exported to Application Insights when APPLICATIONINSIGHTS_CONNECTION_STRING is set (the Azure
Monitor OpenTelemetry distro, as the Functions Python docs set it up, with host.json's
``telemetryMode: OpenTelemetry``), and to an OTLP collector when OTEL_EXPORTER_OTLP_ENDPOINT is.
With neither, the OpenTelemetry API is a no-op and costs next to nothing.

Storage queue triggers carry no trace context, so the app carries it: every message it sends
holds the W3C ``traceparent``/``tracestate`` of the span that sent it, and the function that
takes the message continues from it. The run record keeps the run's own context, so a wake-up
from a webhook, an import or a cancel continues the run's trace too.

Attributes are ids, sizes, counts and outcomes only: never a secret, prompt text or file content.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

log = logging.getLogger(__name__)

INSTRUMENTATION_NAME = "aoai-artifact-persister"
TRACE_FIELDS = ("traceparent", "tracestate")  # W3C Trace Context, as message and record fields
_propagator = TraceContextTextMapPropagator()
_tracer = trace.get_tracer(INSTRUMENTATION_NAME)
_meter = metrics.get_meter(INSTRUMENTATION_NAME)

# The metric names the alerts and workbook in infra/ query (customMetrics in Application Insights).
files_persisted = _meter.create_counter("artifacts.files.persisted", unit="{file}",
                                        description="Artifacts written whole to Blob Storage")
files_failed = _meter.create_counter("artifacts.files.failed", unit="{file}",
                                     description="Artifacts recorded as failed for good, by failure code")
bytes_persisted = _meter.create_counter("artifacts.bytes.persisted", unit="By",
                                        description="Bytes of artifacts written")
download_duration = _meter.create_histogram("artifacts.download.duration", unit="s",
                                            description="From a delivery's start to its blob committed")
time_to_last_artifact = _meter.create_histogram("artifacts.run.time_to_last_artifact", unit="s",
                                                description="From a run's end to its last artifact ended")
run_polls = _meter.create_histogram("artifacts.run.polls", unit="{request}",
                                    description="GETs of the response per run")
runs_given_up = _meter.create_counter("artifacts.runs.given_up", unit="{run}",
                                      description="Runs the app stopped following before they ended")
queue_depth = _meter.create_gauge("artifacts.queue.depth", unit="{message}",
                                  description="Approximate messages per queue, poison queues included")
queue_oldest_age = _meter.create_gauge("artifacts.queue.oldest_age_seconds", unit="s",
                                       description="Age of the oldest visible message per queue")


@functools.cache  # once per process: the app module may be loaded again, the providers may not
def configure_from_environment() -> None:
    """Set up the exporters the environment asks for, never failing the app."""
    try:
        if os.environ.get("APPLICATIONINSIGHTS_CONNECTION_STRING"):
            from azure.monitor.opentelemetry import configure_azure_monitor  # noqa: PLC0415 - heavy

            configure_azure_monitor()
        if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
            _configure_otlp()
    except Exception as error:  # telemetry must never stop the app
        log.error("telemetry could not be set up: %s", type(error).__name__)


def _configure_otlp() -> None:
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter  # noqa: PLC0415
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: PLC0415
    from opentelemetry.sdk.metrics import MeterProvider  # noqa: PLC0415
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader  # noqa: PLC0415
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415

    provider = trace.get_tracer_provider()
    if not hasattr(provider, "add_span_processor"):  # no SDK provider yet (no Azure Monitor): make one
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
        metrics.set_meter_provider(MeterProvider(metric_readers=[PeriodicExportingMetricReader(OTLPMetricExporter())]))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))


def current_trace_fields() -> dict[str, str]:
    """The current span's W3C context, to put into a message or a record (empty when not tracing)."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier


def context_from(carrier: Mapping[str, Any] | None) -> Context | None:
    """The context a message or record carries; None if it carries none (or a malformed one)."""
    if not carrier:
        return None
    fields = {key: value for key in TRACE_FIELDS if isinstance(value := carrier.get(key), str)}
    if "traceparent" not in fields:
        return None
    context = _propagator.extract(fields)
    return context if trace.get_current_span(context).get_span_context().is_valid else None


@contextmanager
def step_span(
    name: str,
    *,
    parent: Context | None = None,
    link_to: Iterable[Context | None] = (),
    kind: SpanKind = SpanKind.CONSUMER,
    **attributes: str | int | None,
) -> Iterator[Span]:
    """A span for one step of the pipeline, under ``parent`` (the run's or the message's context;
    None: the current one), linked to ``link_to`` (what else led here: the message that woke it,
    the host's invocation); an exception marks it failed and goes on."""
    if parent is not None:
        link_to = [*link_to, context_api.get_current()]  # the host's invocation span, when there is one
    links: list[Link] = []
    for context in link_to:
        linked = trace.get_current_span(context).get_span_context() if context is not None else None
        if linked is not None and linked.is_valid and linked not in [link.context for link in links]:
            links.append(Link(linked))
    with _tracer.start_as_current_span(
        name, context=parent, kind=kind, links=links, attributes=_clean(attributes),
        record_exception=True, set_status_on_exception=True,
    ) as span:
        yield span


def annotate(span: Span, **attributes: str | int | None) -> None:
    span.set_attributes(_clean(attributes))


def fail(span: Span, outcome: str) -> None:
    span.set_attribute("outcome", outcome)
    span.set_status(Status(StatusCode.ERROR, outcome))


def _clean(attributes: Mapping[str, str | int | None]) -> dict[str, str | int]:
    return {key: value for key, value in attributes.items() if value is not None}
