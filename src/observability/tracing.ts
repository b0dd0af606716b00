import { randomFillSync } from 'node:crypto';
import { NodeSDK } from '@opentelemetry/sdk-node';
import { AlwaysOnSampler, ParentBasedSampler, BatchSpanProcessor, SimpleSpanProcessor, type SpanExporter, type SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from '@opentelemetry/semantic-conventions';
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, TraceFlags, context, trace, type Context, type Span } from '@opentelemetry/api';
import { buildInfo } from '../generated/build-info.js';

// Tracing that costs almost nothing when a request is not sampled.
//
// Every request gets a real W3C trace id (continuing an incoming traceparent,
// else a fresh one from a pooled CSPRNG buffer) and a span id of its own, and
// the traceparent it passes to backends carries both: traces stay connected
// across processes whether or not this process records anything. Only a
// sampled request on a process with an exporter (OBSERVABILITY_OTLP_ENDPOINT,
// or a test exporter) gets OpenTelemetry spans: a server span, and child
// spans for its Redis and gRPC calls through the SDK's context manager. With
// no exporter the SDK is not started at all: no span objects, no
// AsyncLocalStorage, no async hooks on the hot path.
//
// Sampling: an incoming traceparent's sampled flag is followed; otherwise
// OBSERVABILITY_SAMPLE_RATE decides per trace.

export interface TracingOptions {
  otlpEndpoint: string | undefined;
  sampleRate: number;
  instanceId: string;
  /** extra exporter (tests: an in-memory exporter) */
  exporter?: SpanExporter;
}

/** One request's trace: ids always, an OpenTelemetry span only when recorded. */
export interface RequestTrace {
  readonly traceId: string;
  /** this request's span id (the recorded span's, or one of its own) */
  readonly spanId: string;
  readonly sampled: boolean;
  /** present only when this request is recorded */
  readonly span: Span | undefined;
  readonly ctx: Context | undefined;
  /** W3C traceparent for calls this request makes */
  readonly traceparent: string;
}

// ---- ids from a pooled CSPRNG buffer: one randomFillSync per 4096 ids, not one call per request
const POOL = Buffer.allocUnsafe(65_536);
let poolAt = POOL.length;
function randomHex(bytes: number): string {
  if (poolAt + bytes > POOL.length) {
    randomFillSync(POOL);
    poolAt = 0;
  }
  const s = POOL.toString('hex', poolAt, poolAt + bytes);
  poolAt += bytes;
  return s;
}
const ZERO_TRACE = '00000000000000000000000000000000';
const ZERO_SPAN = '0000000000000000';

/** A fresh random trace id, as a UUID (the request id when the client sent none) and as 32 hex digits. */
export function newIds(): { traceId: string; uuid: string } {
  const h = randomHex(16);
  // RFC 9562 version 4 layout for the UUID form
  const v = ((parseInt(h[16]!, 16) & 0x3) | 0x8).toString(16);
  return { traceId: h, uuid: `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-${v}${h.slice(17, 20)}-${h.slice(20, 32)}` };
}

/** traceparent → [traceId, parentSpanId, sampled], or undefined when malformed (W3C trace-context, version 00). */
export function parseTraceparent(tp: string | undefined): [string, string, boolean] | undefined {
  if (!tp || tp.length < 55) return undefined;
  const m = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})/.exec(tp.trim());
  if (!m || m[1] === 'ff' || m[2] === ZERO_TRACE || m[3] === ZERO_SPAN) return undefined;
  return [m[2]!, m[3]!, (parseInt(m[4]!, 16) & 1) === 1];
}

let sdk: NodeSDK | undefined;
let recording = false;
let ratio = 1;
const tracer = trace.getTracer('waiting-room-gateway');

export function startTracing(o: TracingOptions): void {
  ratio = o.sampleRate;
  if (sdk) return;
  const processors: SpanProcessor[] = [];
  if (o.otlpEndpoint) {
    const url = o.otlpEndpoint.endsWith('/v1/traces') ? o.otlpEndpoint : `${o.otlpEndpoint.replace(/\/$/, '')}/v1/traces`;
    processors.push(new BatchSpanProcessor(new OTLPTraceExporter({ url })));
  }
  if (o.exporter) processors.push(new SimpleSpanProcessor(o.exporter));
  // nothing to export: nothing to record (see the header)
  if (processors.length === 0) return;
  sdk = new NodeSDK({
    resource: resourceFromAttributes({ [ATTR_SERVICE_NAME]: 'waiting-room-gateway', [ATTR_SERVICE_VERSION]: buildInfo.version, 'service.instance.id': o.instanceId }),
    spanProcessors: processors,
    // the edge decides sampling (beginRequest) and starts only sampled spans; children follow their parent
    sampler: new ParentBasedSampler({ root: new AlwaysOnSampler() }),
    textMapPropagator: new W3CTraceContextPropagator(),
    contextManager: new AsyncLocalStorageContextManager(),
    instrumentations: [],
    // metrics are served by prom-client at /metrics, logs by pino
    metricReader: undefined,
  });
  sdk.start();
  recording = true;
}

export async function stopTracing(): Promise<void> {
  const s = sdk;
  sdk = undefined;
  recording = false;
  // the exporter's last flush may fail when the collector is gone: nothing to do about it at shutdown
  await s?.shutdown().catch(() => undefined);
}

/** true when this process records spans (an exporter is configured) */
export const isRecording = (): boolean => recording;

/**
 * The trace of one request, and a request id for it (a UUID: used when the
 * client sent no X-Request-ID). A valid incoming traceparent gives the trace
 * id; otherwise one random value serves as both.
 */
export function beginRequest(name: string, traceparent: string | undefined, route: string): RequestTrace & { requestId: string } {
  const fresh = newIds();
  const parent = parseTraceparent(traceparent);
  const traceId = parent ? parent[0] : fresh.traceId;
  const sampled = parent ? parent[2] : Math.random() < ratio;
  if (recording && sampled) {
    const parentCtx = parent ? trace.setSpanContext(ROOT_CONTEXT, { traceId, spanId: parent[1], traceFlags: TraceFlags.SAMPLED, isRemote: true }) : ROOT_CONTEXT;
    const span = tracer.startSpan(name, { kind: SpanKind.SERVER, attributes: { 'http.route': route, 'request.id': fresh.uuid } }, parentCtx);
    const sc = span.spanContext();
    return { traceId: sc.traceId, spanId: sc.spanId, sampled: true, span, ctx: trace.setSpan(parentCtx, span), traceparent: `00-${sc.traceId}-${sc.spanId}-01`, requestId: fresh.uuid };
  }
  const spanId = randomHex(8);
  return { traceId, spanId, sampled, span: undefined, ctx: undefined, traceparent: `00-${traceId}-${spanId}-${sampled ? '01' : '00'}`, requestId: fresh.uuid };
}

/** Ids for an answer outside any route (404, 405, preflight): no span. */
export function requestIds(traceparent: string | undefined): { traceId: string; requestId: string } {
  const fresh = newIds();
  return { traceId: parseTraceparent(traceparent)?.[0] ?? fresh.traceId, requestId: fresh.uuid };
}

/** Runs fn inside the request's span context (recorded requests only: child spans attach to it). */
export function withRequest<T>(t: RequestTrace, fn: () => T): T {
  return t.ctx ? context.with(t.ctx, fn) : fn();
}

export function endRequest(t: RequestTrace, status: number, err?: unknown): void {
  const span = t.span;
  if (!span) return;
  span.setAttribute('http.response.status_code', status);
  if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
  if (err instanceof Error) span.recordException(err);
  span.end();
}

/** A child span for a call to another process, when the current request is recorded (else undefined: nothing to do). */
export function startClientSpan(name: string, attributes: Record<string, string>): Span | undefined {
  if (!recording) return undefined;
  const parent = trace.getSpan(context.active());
  if (!parent || !parent.isRecording()) return undefined;
  return tracer.startSpan(name, { kind: SpanKind.CLIENT, attributes });
}
