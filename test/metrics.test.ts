import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import { SignJWT } from 'jose';
import type { EmbeddedRedis } from '../src/redis/embedded.js';
import { call, startInProcessGateway, startRedis, waitFor, type InProcessGateway } from './helpers/harness.js';
import { connect } from './helpers/ws-client.js';

// After a scripted flow, every metric the dashboards expect (CONTRACT.md) is
// present with non-zero samples, with the listed labels.

const SECRET = 'metrics-test-secret-0123456789-0123456789';
const secret = new TextEncoder().encode(SECRET);
const jwt = (sub: string) => new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject(sub).setExpirationTime('5m').sign(secret);

let redis: EmbeddedRedis;
let gw: InProcessGateway;

beforeAll(async () => {
  redis = await startRedis();
  gw = await startInProcessGateway(redis.address, {
    NODE_ENV: 'test',
    JWT_SECRET: SECRET,
    ADMIN_TOKEN: 'metrics-admin-token-0123456789',
    QUEUE_TICK_MS: '50',
    WS_MESSAGE_RPS: '1',
    WS_MESSAGE_BURST: '2',
  });
});
afterAll(async () => {
  // a gateway that fails to stop must not leave its redis-server behind
  try {
    await gw?.stop();
  } finally {
    await redis?.stop();
  }
});

/** Sum of all samples of a metric family line prefix (counter/gauge value or histogram _count). */
function samples(text: string, name: string): { labels: string; value: number }[] {
  const re = new RegExp(`^${name}(\\{[^}]*\\})? ([0-9.e+-]+)$`, 'gm');
  return [...text.matchAll(re)].map((m) => ({ labels: m[1] ?? '', value: Number(m[2]) }));
}

describe('/metrics', () => {
  it('records every contract metric with its labels after a flow', async () => {
    await call(gw.url, 'PUT', '/api/v1/admin/events/m1', { rate: 20, burst: 1, state: 'paused' }, { authorization: 'Bearer metrics-admin-token-0123456789' });
    const auth = { authorization: `Bearer ${await jwt('mo')}` };
    const ahead = (await call(gw.url, 'POST', '/api/v1/queue/join', { event_id: 'm1' }, auth)).body.waiting_token as string;
    const me = (await call(gw.url, 'POST', '/api/v1/queue/join', { event_id: 'm1' }, { authorization: `Bearer ${await jwt('mi')}` })).body.waiting_token as string;
    const sock = await connect(gw.url, me); // an attached user: the ETA shown at attach is scored when promoted
    await sock.next((m) => m.type === 'welcome');
    for (let i = 0; i < 4; i++) sock.ws.send('{"type":"ping"}'); // over the socket message limit: ratelimit_dropped_total
    await call(gw.url, 'PUT', '/api/v1/admin/events/m1', { state: 'open' }, { authorization: 'Bearer metrics-admin-token-0123456789' });
    await sock.next((m) => m.type === 'ready', 10_000);
    await waitFor('ahead ready', async () => (await call(gw.url, 'GET', `/api/v1/queue/status?token=${ahead}`)).body.ready_for_entry === true);
    const e = await call(gw.url, 'POST', '/api/v1/queue/enter', { waiting_token: ahead }, auth);
    const key = randomUUID();
    const body = { event_id: 'm1', seat_ids: ['M-1'], quantity: 1, reservation_token: e.body.reservation_token };
    await call(gw.url, 'POST', '/api/v1/reservations', body, { ...auth, 'idempotency-key': key });
    await call(gw.url, 'POST', '/api/v1/reservations', body, { ...auth, 'idempotency-key': key }); // replay: idempotency_hits_total
    await sock.close();

    const text = (await call(gw.url, 'GET', '/metrics')).text;
    const nonZero = (name: string, labelsMustInclude: string[] = []) => {
      const s = samples(text, name).filter((x) => x.value > 0);
      expect(s.length, `${name} has non-zero samples`).toBeGreaterThan(0);
      for (const l of labelsMustInclude) expect(s.some((x) => x.labels.includes(`${l}=`)), `${name} has label ${l}`).toBe(true);
    };
    nonZero('http_server_requests_total', ['method', 'route', 'status_code']);
    nonZero('http_server_requests_duration_seconds_count', ['method', 'route', 'status_code']);
    nonZero('backend_call_duration_seconds_count', ['service', 'method', 'status_code']);
    nonZero('ratelimit_dropped_total');
    nonZero('idempotency_hits_total');
    nonZero('queue_operations_total', ['operation', 'status']);
    nonZero('queue_wait_time_seconds_count');
    nonZero('gateway_sliding_window_rate', ['window', 'event_id']);
    nonZero('gateway_eta_confidence', ['event_id']);
    nonZero('gateway_eta_accuracy_seconds_count', ['event_id']);
    // and the operational ones
    for (const n of ['queue_admissions_total', 'queue_ticks_total', 'queue_tick_duration_seconds_count', 'ws_connections_opened_total', 'ws_messages_sent_total', 'redis_command_duration_seconds_count']) nonZero(n);
    // routes are templates, never raw paths (bounded label sets)
    expect(text).not.toMatch(/route="\/api\/v1\/reservations\/[0-9a-f]/);
    expect(text).toMatch(/route="\/api\/v1\/queue\/status"/);
  });
});
