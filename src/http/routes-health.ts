import type { Metrics } from '../metrics.js';
import type { HttpServer } from './server.js';
import { buildInfo } from '../generated/build-info.js';

export interface Readiness {
  /** reasons this instance should not receive traffic; empty = ready */
  reasons(): string[];
}

export function registerHealthRoutes(http: HttpServer, readiness: Readiness, metrics: Metrics, instanceId: string): void {
  const version = JSON.stringify({ version: buildInfo.version, commit: buildInfo.commit, built_at: buildInfo.builtAt, node: process.version, instance: instanceId });
  const probe = { rateLimit: false };
  http.route('GET', '/healthz', () => ({ status: 200, body: '{"status":"ok"}' }), probe);
  http.route('GET', '/readyz', () => {
    const reasons = readiness.reasons();
    return reasons.length
      ? { status: 503, body: { status: 'unavailable', reasons }, headers: { 'Retry-After': '2' } }
      : { status: 200, body: '{"status":"ready"}' };
  }, probe);
  http.route('GET', '/version', () => ({ status: 200, body: version }));
  http.route('GET', '/metrics', async () => ({ status: 200, body: await metrics.registry.metrics(), contentType: metrics.registry.contentType }), probe);
}
