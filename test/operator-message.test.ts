import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EmbeddedRedis } from '../src/redis/embedded.js';
import { call, startInProcessGateway, startRedis, uniquePrefix, waitFor, type InProcessGateway } from './helpers/harness.js';
import { connect } from './helpers/ws-client.js';

// The operator's message to everyone waiting: set through the admin API of
// one instance, pushed within a second to sockets held by another instance
// (the tick carries its version; each instance reads it once), carried by
// status polls and welcome, removed with null; the admin API refuses what
// the schema does not allow.

const ADMIN = 'test-admin-token-0123456789';
const admin = { authorization: `Bearer ${ADMIN}` };

let redis: EmbeddedRedis;
let a: InProcessGateway;
let b: InProcessGateway;

beforeAll(async () => {
  redis = await startRedis();
  const env = { ADMIN_TOKEN: ADMIN, REDIS_KEY_PREFIX: uniquePrefix(), QUEUE_TICK_MS: '250', QUEUE_LEASE_MS: '1000' };
  a = await startInProcessGateway(redis.address, env);
  b = await startInProcessGateway(redis.address, env);
});
afterAll(async () => {
  await a?.stop();
  await b?.stop();
  await redis?.stop();
});

const putEvent = (gw: InProcessGateway, event: string, body: Record<string, unknown>) => call(gw.url, 'PUT', `/api/v1/admin/events/${event}`, body, admin);
const join = async (gw: InProcessGateway, event: string): Promise<string> => {
  const r = await call(gw.url, 'POST', '/api/v1/queue/join', { event_id: event });
  expect(r.status).toBe(202);
  return r.body.waiting_token as string;
};

describe('operator message', () => {
  it('set on one instance reaches sockets on another within a second; polls carry it; null removes it everywhere', async () => {
    expect((await putEvent(a, 'msg', { rate: 0.01, burst: 1, state: 'paused' })).status).toBe(201);
    const t1 = await join(b, 'msg');
    const t2 = await join(b, 'msg');
    const s1 = await connect(b.url, t1);
    const s2 = await connect(b.url, t2, 'msgpack');
    const welcome = await s1.next((m) => m.type === 'welcome');
    await s2.next((m) => m.type === 'welcome');
    // nothing set yet: once the instance knows, it says "none" rather than nothing
    expect(welcome.message === undefined || welcome.message === null).toBe(true);

    const message = { en: 'Sales open at 10:00. Keep this page open.', ko: '10시에 판매가 시작돼요. 이 페이지를 열어 두세요.' };
    const set = await putEvent(a, 'msg', { message });
    expect(set.status).toBe(200);
    expect(set.body.message).toEqual(message);
    const sentAt = Date.now();
    const n1 = await s1.next((m) => m.type === 'notice', 1000);
    const n2 = await s2.next((m) => m.type === 'notice', 1000);
    expect(Date.now() - sentAt).toBeLessThan(1000);
    expect(n1.message).toEqual(message);
    expect(n2.message).toEqual(message);

    // a poll answered by either instance carries it
    await waitFor('poll on a carries it', async () => {
      const r = await call(a.url, 'GET', `/api/v1/queue/status?token=${encodeURIComponent(t1)}`);
      return r.status === 200 && JSON.stringify(r.body.message) === JSON.stringify(message);
    });
    const polled = await call(b.url, 'GET', `/api/v1/queue/status?token=${encodeURIComponent(t2)}`);
    expect(polled.body.message).toEqual(message);
    // a socket opened later gets it in welcome
    const s3 = await connect(a.url, t2);
    expect((await s3.next((m) => m.type === 'welcome')).message).toEqual(message);
    // the public event and the admin view
    expect((await call(a.url, 'GET', '/api/v1/events/msg')).body.message).toEqual(message);
    expect((await call(b.url, 'GET', '/api/v1/admin/events/msg', undefined, admin)).body.message).toEqual(message);

    // removed: every socket hears null
    expect((await putEvent(b, 'msg', { message: null })).body.message).toBeNull();
    for (const s of [s1, s2, s3]) expect((await s.next((m) => m.type === 'notice' && m.message === null, 1000)).message).toBeNull();
    const after = await call(b.url, 'GET', `/api/v1/queue/status?token=${encodeURIComponent(t1)}`);
    expect(after.body.message).toBeNull();
    // other fields leave the message alone
    await putEvent(a, 'msg', { message: { en: 'again' } });
    await s1.next((m) => m.type === 'notice' && (m.message as Record<string, string> | null)?.en === 'again', 1000);
    await putEvent(a, 'msg', { rate: 0.02 });
    expect((await call(a.url, 'GET', '/api/v1/admin/events/msg', undefined, admin)).body.message).toEqual({ en: 'again' });
    for (const s of [s1, s2, s3]) await s.close();
  });

  it('the admin API refuses a message the schema does not allow, with the contract error body', async () => {
    await putEvent(a, 'msg-bad', { rate: 1 });
    for (const message of [{}, { english: 'x' }, { en: '' }, { en: 'x'.repeat(501) }, { en: 5 }, 'text', ['en']]) {
      const r = await putEvent(a, 'msg-bad', { message });
      expect(r.status, JSON.stringify(message)).toBe(400);
      expect((r.body.error as Record<string, unknown>).code).toBe('INVALID_REQUEST');
      expect(typeof (r.body.error as Record<string, unknown>).trace_id).toBe('string');
    }
    expect((await call(a.url, 'GET', '/api/v1/admin/events/msg-bad', undefined, admin)).body.message).toBeNull();
  });
});
