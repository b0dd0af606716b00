import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import { SignJWT } from 'jose';
import type { EmbeddedRedis } from '../src/redis/embedded.js';
import { startReservationSim, type RunningSim } from '../src/sim/reservation-sim.js';
import { call, sleep, startInProcessGateway, startRedis, waitFor, type InProcessGateway } from './helpers/harness.js';

// The idempotency record's store step fails (Redis stops answering while the
// backend call runs): the client is told 503, never a success the gateway
// could not record, and a retry under the same key gets the first outcome
// back instead of running the request a second time.

const SECRET = 'idem-store-test-secret-0123456789-0123456789';
const secret = new TextEncoder().encode(SECRET);
const jwt = (sub: string) => new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject(sub).setExpirationTime('5m').sign(secret);

let redis: EmbeddedRedis;
let rsim: RunningSim;
let gw: InProcessGateway;

beforeAll(async () => {
  redis = await startRedis();
  rsim = await startReservationSim({ host: '127.0.0.1', port: 0 });
  gw = await startInProcessGateway(redis.address, {
    NODE_ENV: 'test',
    JWT_SECRET: SECRET,
    QUEUE_AUTO_CREATE_EVENTS: 'true',
    QUEUE_DEFAULT_RATE: '100',
    QUEUE_DEFAULT_BURST: '100',
    QUEUE_TICK_MS: '50',
    REDIS_COMMAND_TIMEOUT_MS: '300',
    IDEMPOTENCY_INFLIGHT_TTL_SEC: '5',
    BACKEND_RESERVATION_API_GRPC_ADDRESS: rsim.address,
    BACKEND_RESERVATION_API_TIMEOUT: '3s',
  });
});
afterAll(async () => {
  process.kill(redis.pid, 'SIGCONT');
  await gw?.stop();
  await rsim?.stop();
  await redis?.stop();
});

async function admitted(event: string, sub: string): Promise<string> {
  const auth = { authorization: `Bearer ${await jwt(sub)}` };
  const j = await call(gw.url, 'POST', '/api/v1/queue/join', { event_id: event }, auth);
  const wt = j.body.waiting_token as string;
  await waitFor('ready', async () => (await call(gw.url, 'GET', `/api/v1/queue/status?token=${wt}`)).body.ready_for_entry === true);
  const e = await call(gw.url, 'POST', '/api/v1/queue/enter', { waiting_token: wt }, auth);
  expect(e.status).toBe(200);
  return e.body.reservation_token as string;
}

describe('idempotency store failure', () => {
  it('the outcome cannot be recorded: 503 with Retry-After, and a retry under the same key replays it without a second execution', async () => {
    const token = await admitted('store', 'ivy');
    const key = randomUUID();
    const headers = { authorization: `Bearer ${await jwt('ivy')}`, 'idempotency-key': key };
    const body = { event_id: 'store', seat_ids: ['Z-1'], quantity: 1, reservation_token: token };
    rsim.setMode('late', { lateMs: 1000 });
    const first = call(gw.url, 'POST', '/api/v1/reservations', body, headers);
    // Redis stops answering while the backend works on it
    await waitFor('the backend call', async () => rsim.received.some((c) => c.method === 'CreateReservation' && (c.request as { reservation_token?: string }).reservation_token === token), 5000, 10);
    process.kill(redis.pid, 'SIGSTOP');
    let r;
    try {
      r = await first;
    } finally {
      process.kill(redis.pid, 'SIGCONT');
      rsim.setMode('normal');
    }
    expect(r.status, r.text).toBe(503);
    expect(r.headers.get('retry-after')).toBeTruthy();
    const m = (await call(gw.url, 'GET', '/metrics')).text;
    expect(m).toMatch(/idempotency_store_failures_total\{[^}]*\} [1-9]/);
    // the retry (same key, same body) is answered with what the first call did: one hold, replayed
    await sleep(500);
    const retry = await waitFor(
      'a final answer',
      async () => {
        const x = await call(gw.url, 'POST', '/api/v1/reservations', body, headers);
        return x.status === 409 && (x.body.error as { reason?: string }).reason === 'in_flight' ? undefined : x;
      },
      15_000,
      250,
    );
    expect(retry.status, retry.text).toBe(201);
    const creates = rsim.received.filter((c) => c.method === 'CreateReservation' && (c.request as { reservation_token?: string }).reservation_token === token);
    // at most a replay at the backend under the same backend key: one hold
    expect(new Set(creates.map((c) => (c.request as { idempotency_key: string }).idempotency_key)).size).toBe(1);
    const again = await call(gw.url, 'POST', '/api/v1/reservations', body, headers);
    expect(again.status).toBe(201);
    expect(again.body.reservation_id).toBe(retry.body.reservation_id);
    expect(again.headers.get('x-idempotency-cached')).toBe('true');
  }, 40_000);
});
