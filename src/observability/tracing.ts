import { NodeSDK } from '@opentelemetry/sdk-node';
import { ParentBasedSampler, TraceIdRatioBasedSampler, BatchSpanProcessor, SimpleSpanProcessor, type SpanExporter, type SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from '@opentelemetry/semantic-conventions';
import { buildInfo } from '../generated/build-info.js';

// Tracing with the OpenTelemetry Node SDK: W3C trace context in and out,
// parent-based sampling at OBSERVABILITY_SAMPLE_RATE, export over OTLP/HTTP
// when OBSERVABILITY_OTLP_ENDPOINT is set. Spans exist (and trace ids are
// real and propagated) even when nothing is exported or a trace is not
// sampled. One SDK per process: later calls reuse the first.

export interface TracingOptions {
  otlpEndpoint: string | undefined;
  sampleRate: number;
  instanceId: string;
  /** extra exporter (tests: an in-memory exporter) */
  exporter?: SpanExporter;
}

let sdk: NodeSDK | undefined;

/**
 * NodeSDK installs no tracer provider at all without a span processor, and
 * then every span is a no-op that only echoes the caller's context: no trace
 * id of our own, no child spans to propagate. This processor keeps tracing
 * real when nothing is exported.
 */
const keepTracing: SpanProcessor = {
  onStart: () => undefined,
  onEnd: () => undefined,
  forceFlush: () => Promise.resolve(),
  shutdown: () => Promise.resolve(),
};

export function startTracing(o: TracingOptions): void {
  if (sdk) return;
  const processors: SpanProcessor[] = [];
  if (o.otlpEndpoint) {
    const url = o.otlpEndpoint.endsWith('/v1/traces') ? o.otlpEndpoint : `${o.otlpEndpoint.replace(/\/$/, '')}/v1/traces`;
    processors.push(new BatchSpanProcessor(new OTLPTraceExporter({ url })));
  }
  if (o.exporter) processors.push(new SimpleSpanProcessor(o.exporter));
  if (processors.length === 0) processors.push(keepTracing);
  sdk = new NodeSDK({
    resource: resourceFromAttributes({ [ATTR_SERVICE_NAME]: 'waiting-room-gateway', [ATTR_SERVICE_VERSION]: buildInfo.version, 'service.instance.id': o.instanceId }),
    spanProcessors: processors,
    sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(o.sampleRate) }),
    textMapPropagator: new W3CTraceContextPropagator(),
    contextManager: new AsyncLocalStorageContextManager(),
    instrumentations: [],
    // metrics are served by prom-client at /metrics, logs by pino
    metricReader: undefined,
  });
  sdk.start();
}

export async function stopTracing(): Promise<void> {
  const s = sdk;
  sdk = undefined;
  await s?.shutdown().catch(() => undefined);
}
