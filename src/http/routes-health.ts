import type { Metrics } from '../metrics.js';
import { buildInfo } from '../generated/build-info.js';
import { route, type AnyRoute } from './route.js';
import * as S from './schemas.js';

// Probes, version and metrics: no rate limit on the probes (a load balancer
// polls them) nor on /metrics (the scraper).

export interface Readiness {
  /** reasons this instance should not receive traffic; empty = ready */
  reasons(): string[];
}

export function healthRoutes(readiness: Readiness, metrics: Metrics, instanceId: string): AnyRoute[] {
  const version = { version: buildInfo.version, commit: buildInfo.commit, built_at: buildInfo.builtAt, node: process.version, instance: instanceId };
  return [
    route({
      method: 'GET',
      path: '/healthz',
      operationId: 'healthz',
      summary: 'Liveness: the process is up',
      tags: ['operations'],
      rateLimit: false,
      responses: { 200: { description: 'Alive.', schema: S.Health } },
      handler: () => ({ status: 200, body: '{"status":"ok"}' }),
    }),
    route({
      method: 'GET',
      path: '/readyz',
      operationId: 'readyz',
      summary: 'Readiness: Redis answers and the instance is not draining',
      tags: ['operations'],
      rateLimit: false,
      responses: {
        200: { description: 'Ready.', schema: S.Ready },
        503: { description: 'Not ready (draining, or Redis not connected or not answering).', schema: S.NotReady, headers: ['Retry-After'] },
      },
      handler: () => {
        const reasons = readiness.reasons();
        return reasons.length ? { status: 503, body: { status: 'unavailable', reasons }, headers: { 'Retry-After': '2' } } : { status: 200, body: '{"status":"ready"}' };
      },
    }),
    route({
      method: 'GET',
      path: '/version',
      operationId: 'version',
      summary: 'Version, commit and instance',
      tags: ['operations'],
      responses: { 200: { description: 'The build.', schema: S.Version } },
      handler: () => ({ status: 200, body: version }),
    }),
    route({
      method: 'GET',
      path: '/metrics',
      operationId: 'metrics',
      summary: 'Prometheus metrics',
      tags: ['operations'],
      rateLimit: false,
      responses: { 200: { description: 'Prometheus text exposition format.', contentType: 'text/plain; version=0.0.4; charset=utf-8' } },
      handler: async () => ({ status: 200, body: await metrics.registry.metrics(), contentType: metrics.registry.contentType }),
    }),
  ];
}
