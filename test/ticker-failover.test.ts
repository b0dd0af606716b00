import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import type { EmbeddedRedis } from '../src/redis/embedded.js';
import { eventKeys } from '../src/redis/keys.js';
import { call, redisClient, spawnGateway, startRedis, uniquePrefix, waitFor, type SpawnedGateway } from './helpers/harness.js';

// Two real gateway processes on one Redis: exactly one ticks an event; when it
// dies (SIGKILL, no goodbye) the other takes the lease within seconds and the
// line keeps moving; a graceful SIGTERM releases the lease at once.

const ADMIN = 'test-admin-token-0123456789';
const auth = { authorization: `Bearer ${ADMIN}` };

let redis: EmbeddedRedis;
let client: Redis;
const procs: SpawnedGateway[] = [];

beforeAll(async () => {
  redis = await startRedis();
  client = redisClient(redis.address);
});
afterAll(async () => {
  await Promise.all(procs.map((p) => p.stop('SIGKILL')));
  client?.disconnect();
  await redis?.stop();
});

async function pair(prefix: string): Promise<[SpawnedGateway, SpawnedGateway]> {
  const env = { REDIS_ADDRESS: redis.address, REDIS_KEY_PREFIX: prefix, ADMIN_TOKEN: ADMIN, QUEUE_TICK_MS: '100', QUEUE_LEASE_MS: '1500' };
  const a = await spawnGateway({ ...env, INSTANCE_ID: `a-${prefix}` });
  const b = await spawnGateway({ ...env, INSTANCE_ID: `b-${prefix}` });
  procs.push(a, b);
  return [a, b];
}

describe('ticker lease failover', () => {
  it('SIGKILL of the ticking instance: the survivor takes over within seconds and admissions continue', async () => {
    const prefix = uniquePrefix();
    const [a, b] = await pair(prefix);
    await call(a.url, 'PUT', '/api/v1/admin/events/fo', { rate: 20, burst: 1, ready_window_sec: 60 }, auth);
    const lease = eventKeys(prefix, 'fo').lease;
    const holder = await waitFor('a lease holder', async () => (await client.get(lease)) ?? undefined);
    expect([a.instanceId, b.instanceId]).toContain(holder);
    const [dead, survivor] = holder === a.instanceId ? [a, b] : [b, a];

    // admissions work before
    const t1 = (await call(survivor.url, 'POST', '/api/v1/queue/join', { event_id: 'fo' })).body.waiting_token as string;
    await waitFor('t1 ready', async () => (await call(survivor.url, 'GET', `/api/v1/queue/status?token=${t1}`)).body.ready_for_entry === true);

    await dead.stop('SIGKILL');
    const killedAt = Date.now();
    const t2 = (await call(survivor.url, 'POST', '/api/v1/queue/join', { event_id: 'fo' })).body.waiting_token as string;
    const newHolder = await waitFor('lease taken over', async () => {
      const h = await client.get(lease);
      return h === survivor.instanceId ? h : undefined;
    }, 10_000);
    const tookMs = Date.now() - killedAt;
    expect(newHolder).toBe(survivor.instanceId);
    expect(tookMs).toBeLessThan(1500 + 1000 + 1000); // lease ttl + one acquire interval + slack
    await waitFor('t2 ready under the new ticker', async () => (await call(survivor.url, 'GET', `/api/v1/queue/status?token=${t2}`)).body.ready_for_entry === true, 10_000);
    const stats = await call(survivor.url, 'GET', '/api/v1/admin/events/fo/stats', undefined, auth);
    expect(stats.body.ticker_instance).toBe(survivor.instanceId);
    expect(stats.body.promoted_total).toBe(2);
  }, 40_000);

  it('SIGTERM: readiness turns 503 during the drain, the lease is released at once, the process exits 0', async () => {
    const prefix = uniquePrefix();
    const [a, b] = await pair(prefix);
    await call(a.url, 'PUT', '/api/v1/admin/events/drain', { rate: 5, burst: 1 }, auth);
    const lease = eventKeys(prefix, 'drain').lease;
    const holder = await waitFor('a lease holder', async () => (await client.get(lease)) ?? undefined);
    const [leaving, staying] = holder === a.instanceId ? [a, b] : [b, a];
    const exit = await leaving.stop('SIGTERM');
    expect(exit.code).toBe(0);
    expect(leaving.logs.join('\n')).toContain('lease released');
    // released, not expired: the other instance gets it within one acquire interval (<= 500 ms here), far under the 1.5 s TTL
    const started = Date.now();
    await waitFor('staying holds the lease', async () => (await client.get(lease)) === staying.instanceId, 5000, 20);
    expect(Date.now() - started).toBeLessThan(1500);
  }, 40_000);
});
