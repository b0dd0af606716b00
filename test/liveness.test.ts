import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EmbeddedRedis } from '../src/redis/embedded.js';
import { startEmbeddedRedis } from '../src/redis/embedded.js';
import { call, sleep, startInProcessGateway, startRedis, waitFor, type InProcessGateway } from './helpers/harness.js';

// Liveness is swept by the server: a user who stops polling is removed within
// QUEUE_POLL_TIMEOUT_SEC plus one tick without anyone polling for them, and a
// user who keeps polling never times out however long they wait.

const ADMIN = 'test-admin-token-0123456789';
const auth = { authorization: `Bearer ${ADMIN}` };

let redis: EmbeddedRedis;
let gw: InProcessGateway;

beforeAll(async () => {
  redis = await startRedis();
  gw = await startInProcessGateway(redis.address, { ADMIN_TOKEN: ADMIN, QUEUE_POLL_TIMEOUT_SEC: '5', QUEUE_TICK_MS: '100', QUEUE_LEASE_MS: '1000' });
});
afterAll(async () => {
  // a gateway that fails to stop must not leave its redis-server behind
  try {
    await gw?.stop();
  } finally {
    await redis?.stop();
  }
});

describe('liveness', () => {
  it('removes a user who stopped polling within the timeout plus a tick; a polling user stays, far past the timeout', async () => {
    // paused: nobody is promoted, so only liveness can change the line
    await call(gw.url, 'PUT', '/api/v1/admin/events/live', { state: 'paused' }, auth);
    const silent = (await call(gw.url, 'POST', '/api/v1/queue/join', { event_id: 'live' })).body.waiting_token as string;
    const poller = (await call(gw.url, 'POST', '/api/v1/queue/join', { event_id: 'live' })).body.waiting_token as string;
    const joinedAt = Date.now();
    const s0 = await call(gw.url, 'GET', `/api/v1/queue/status?token=${poller}`);
    expect(s0.body.position).toBe(2);
    expect(s0.body.poll_after_ms as number).toBeLessThanOrEqual(5000 / 3);

    let removedAt = 0;
    // poll only the poller, every second, for 9 s (almost twice the timeout)
    while (Date.now() - joinedAt < 9000) {
      const s = await call(gw.url, 'GET', `/api/v1/queue/status?token=${poller}`);
      expect(s.status).toBe(200);
      if (!removedAt && s.body.position === 1) removedAt = Date.now();
      await sleep(1000);
    }
    expect(removedAt).toBeGreaterThan(0);
    const elapsed = removedAt - joinedAt;
    expect(elapsed).toBeGreaterThanOrEqual(4900); // not before the timeout
    expect(elapsed).toBeLessThanOrEqual(5000 + 100 + 1500); // timeout + a tick + one poll interval of observation slack
    const gone = await call(gw.url, 'GET', `/api/v1/queue/status?token=${silent}`);
    expect(gone.status).toBe(404);
    expect(gone.body.error).toMatchObject({ code: 'TOKEN_EXPIRED', reason: 'liveness' });
    const stats = await call(gw.url, 'GET', '/api/v1/admin/events/live/stats', undefined, auth);
    expect(stats.body).toMatchObject({ in_line: 1, expired_liveness_total: 1 });
  }, 30_000);
});

describe('Redis going away', () => {
  it('answers 503 REDIS_UNAVAILABLE with Retry-After and readiness 503, then recovers by itself', async () => {
    const own = await startEmbeddedRedis();
    const g = await startInProcessGateway(own.address, { QUEUE_AUTO_CREATE_EVENTS: 'true' });
    try {
      const j = await call(g.url, 'POST', '/api/v1/queue/join', { event_id: 'outage' });
      expect(j.status).toBe(202);
      const port = own.port;
      await own.stop();
      const r = await waitFor('503', async () => {
        const x = await call(g.url, 'POST', '/api/v1/queue/join', { event_id: 'outage' });
        return x.status === 503 ? x : undefined;
      });
      expect(r.body.error).toMatchObject({ code: 'REDIS_UNAVAILABLE' });
      expect(r.headers.get('retry-after')).toBe('2');
      const ready = await call(g.url, 'GET', '/readyz');
      expect(ready.status).toBe(503);
      expect((ready.body.reasons as string[]).join()).toMatch(/redis/);
      expect((await call(g.url, 'GET', '/healthz')).status).toBe(200);
      // Redis comes back on the same port (empty: it kept nothing); the gateway reconnects by itself.
      const back = await startEmbeddedRedis({ port });
      try {
        await waitFor('ready again', async () => (await call(g.url, 'GET', '/readyz')).status === 200, 15_000, 200);
        expect((await call(g.url, 'POST', '/api/v1/queue/join', { event_id: 'outage' })).status).toBe(202);
      } finally {
        await g.stop();
        await back.stop();
      }
    } finally {
      await g.stop();
      await own.stop();
    }
  }, 40_000);
});
