import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unpack } from 'msgpackr';
import type { Redis } from 'ioredis';
import type { EmbeddedRedis } from '../src/redis/embedded.js';
import type { TickMessage } from '../src/queue/broker.js';
import { call, redisClient, startInProcessGateway, startRedis, waitFor, type InProcessGateway } from './helpers/harness.js';

// Each tick publishes what changed (msgpack) on the event's channel, so other
// instances can update their users without asking Redis per user.

const ADMIN = 'test-admin-token-0123456789';
const auth = { authorization: `Bearer ${ADMIN}` };

let redis: EmbeddedRedis;
let gw: InProcessGateway;
let sub: Redis;

beforeAll(async () => {
  redis = await startRedis();
  gw = await startInProcessGateway(redis.address, { ADMIN_TOKEN: ADMIN, QUEUE_TICK_MS: '50', QUEUE_LEASE_MS: '1000' });
  sub = redisClient(redis.address);
});
afterAll(async () => {
  sub?.disconnect();
  await gw?.stop();
  await redis?.stop();
});

describe('tick messages', () => {
  it('carry promotions by line sequence, exits with reasons, line counts and rates; never tokens', async () => {
    await call(gw.url, 'PUT', '/api/v1/admin/events/pub', { rate: 1000, burst: 2, state: 'paused' }, auth);
    const channel = gw.gateway.store.keys('pub').channel;
    const got: TickMessage[] = [];
    const raw: Buffer[] = [];
    sub.on('messageBuffer', (_ch: Buffer, data: Buffer) => {
      raw.push(data);
      got.push(unpack(data) as TickMessage);
    });
    await sub.subscribe(channel);
    const tokens: string[] = [];
    for (let i = 0; i < 4; i++) tokens.push((await call(gw.url, 'POST', '/api/v1/queue/join', { event_id: 'pub' })).body.waiting_token as string);
    await call(gw.url, 'DELETE', `/api/v1/queue/leave?token=${tokens[3]!}`);
    await call(gw.url, 'PUT', '/api/v1/admin/events/pub', { state: 'open' }, auth);
    await waitFor('promotions published', async () => got.some((m) => m.p.length > 0));
    const all = got.filter((m) => m.e === 'pub');
    expect(all.every((m) => m.v === 1)).toBe(true);
    const promoted = all.flatMap((m) => m.p.map(([seq]) => seq));
    expect(promoted.slice(0, 2)).toEqual([1, 2]); // burst 2: the first two in line, by sequence
    const exits = all.flatMap((m) => m.o);
    expect(exits).toContainEqual([1, 4, 'left']);
    const last = all.at(-1)!;
    expect(last.s).toBe('open');
    expect(last.q).toBe(3);
    expect(last.eta.rate).toBe(1000);
    expect(last.xs).toBeGreaterThanOrEqual(1);
    for (const b of raw) for (const t of tokens) expect(b.includes(Buffer.from(t.split('.')[1]!))).toBe(false);
  });
});
