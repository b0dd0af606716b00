import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pack, unpack } from 'msgpackr';
import type { Redis } from 'ioredis';
import type { EmbeddedRedis } from '../src/redis/embedded.js';
import { decodeTick, type TickWire } from '../src/queue/broker.js';
import { call, redisClient, startInProcessGateway, startRedis, waitFor, type InProcessGateway } from './helpers/harness.js';
import { connect } from './helpers/ws-client.js';

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
  // a gateway that fails to stop must not leave its redis-server behind
  try {
    await gw?.stop();
  } finally {
    await redis?.stop();
  }
});

describe('tick messages', () => {
  it('carry promotions by line sequence, exits with reasons, line counts and rates; never tokens', async () => {
    await call(gw.url, 'PUT', '/api/v1/admin/events/pub', { rate: 1000, burst: 2, state: 'paused' }, auth);
    const channel = gw.gateway.store.keys('pub').channel;
    const got: TickWire[] = [];
    const raw: Buffer[] = [];
    sub.on('messageBuffer', (_ch: Buffer, data: Buffer) => {
      raw.push(data);
      got.push(unpack(data) as TickWire);
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
    // what an instance reads: the same message, checked, with descriptive names
    const decoded = decodeTick(raw.at(-1)!);
    expect(decoded).toMatchObject({ eventId: last.e, redisTimeMs: last.t, state: last.s, inLine: last.q, lastExitSeq: last.xs });
    expect(decoded.exits).toEqual(last.o.map(([exitSeq, lineSeq, reason]) => ({ exitSeq, lineSeq, reason })));
  });

  it('a message that does not decode (another version, not msgpack, a wrong field) is counted and dropped; ticks after it still apply', async () => {
    await call(gw.url, 'PUT', '/api/v1/admin/events/odd', { rate: 1000, burst: 1, state: 'paused' }, auth);
    const channel = gw.gateway.store.keys('odd').channel;
    const tokens: string[] = [];
    for (let i = 0; i < 2; i++) tokens.push((await call(gw.url, 'POST', '/api/v1/queue/join', { event_id: 'odd' })).body.waiting_token as string);
    const c = await connect(gw.url, tokens[1]!);
    await c.next((m) => m.type === 'welcome');
    const rejected = async (): Promise<number> => Number(/^tick_messages_rejected_total (\d+)/m.exec((await call(gw.url, 'GET', '/metrics')).text)?.[1] ?? 0);
    const before = await rejected();
    const pub = redisClient(redis.address);
    await pub.publish(channel, pack({ v: 2, e: 'odd' }));
    await pub.publish(channel, Buffer.from([0xc1])); // never valid msgpack
    await pub.publish(channel, pack({ v: 1, e: 'odd', t: 1, s: 'nope', q: 0, r: 0, p: [], o: [], xs: 0, g: 3, eta: {} }));
    pub.disconnect();
    await waitFor('three messages rejected', async () => (await rejected()) >= before + 3);
    // the line still moves for the socket: the first user leaves, the second is told it is next
    await call(gw.url, 'DELETE', `/api/v1/queue/leave?token=${tokens[0]!}`);
    await call(gw.url, 'PUT', '/api/v1/admin/events/odd', { state: 'open' }, auth);
    expect((await c.next((m) => m.type === 'ready')).type).toBe('ready');
    c.ws.terminate();
  });
});
