import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace-base';
import type { EmbeddedRedis } from '../src/redis/embedded.js';
import { startTracing, stopTracing } from '../src/observability/tracing.js';
import { call, startInProcessGateway, startRedis, type InProcessGateway } from './helpers/harness.js';

// Tracing with an exporter configured (here an in-memory one, as OTLP would
// be): a sampled request gets a server span continuing the caller's
// traceparent and a child span for its Redis call; an unsampled one gets
// none, yet carries a real trace id in X-Trace-ID and error bodies. This file
// runs in its own process (vitest forks), so the SDK it starts is its own.

const exporter = new InMemorySpanExporter();
let redis: EmbeddedRedis;
let gw: InProcessGateway;

beforeAll(async () => {
  // sample nothing by ratio: only callers that ask (traceparent flag 01) are recorded
  startTracing({ otlpEndpoint: undefined, sampleRate: 0, instanceId: 'tracing-test', exporter });
  redis = await startRedis();
  gw = await startInProcessGateway(redis.address, { QUEUE_AUTO_CREATE_EVENTS: 'true', OBSERVABILITY_SAMPLE_RATE: '0' });
});
afterAll(async () => {
  // a gateway that fails to stop must not leave its redis-server behind
  try {
    await gw?.stop();
  } finally {
    await redis?.stop();
  }
  await stopTracing();
});

describe('tracing with an exporter', () => {
  it('records a sampled request (server span, Redis child span) and nothing for an unsampled one', async () => {
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    exporter.reset();
    const sampled = await call(gw.url, 'POST', '/api/v1/queue/join', { event_id: 'traced' }, { traceparent: `00-${traceId}-00f067aa0ba902b7-01` });
    expect(sampled.status).toBe(202);
    expect(sampled.headers.get('x-trace-id')).toBe(traceId);
    const spans = exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId);
    const server = spans.find((s) => s.name === 'POST /api/v1/queue/join');
    expect(server, JSON.stringify(spans.map((s) => s.name))).toBeDefined();
    expect(server!.parentSpanContext?.spanId).toBe('00f067aa0ba902b7');
    expect(server!.attributes['http.response.status_code']).toBe(202);
    const redisSpan = spans.find((s) => s.name.startsWith('redis '));
    expect(redisSpan, JSON.stringify(spans.map((s) => s.name))).toBeDefined();
    expect(redisSpan!.parentSpanContext?.spanId).toBe(server!.spanContext().spanId);

    exporter.reset();
    const unsampled = await call(gw.url, 'POST', '/api/v1/queue/join', { event_id: 'traced' });
    expect(unsampled.status).toBe(202);
    expect(unsampled.headers.get('x-trace-id')).toMatch(/^[0-9a-f]{32}$/);
    const notSampledCaller = await call(gw.url, 'GET', '/api/v1/queue/status?token=traced.AAAAAAAAAAAAAAAAAAAAAA', undefined, { traceparent: `00-${'1'.repeat(32)}-${'2'.repeat(16)}-00` });
    expect(notSampledCaller.status).toBe(404);
    // the error body names the caller's trace, although nothing was recorded
    expect((notSampledCaller.body.error as { trace_id: string }).trace_id).toBe('1'.repeat(32));
    await new Promise((r) => setTimeout(r, 100));
    expect(exporter.getFinishedSpans()).toEqual([]);
  });
});
