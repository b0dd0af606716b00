import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import { SignJWT } from 'jose';
import type { EmbeddedRedis } from '../src/redis/embedded.js';
import { startReservationSim, type RunningSim } from '../src/sim/reservation-sim.js';
import { startPaymentSim } from '../src/sim/payment-sim.js';
import { call, sleep, startInProcessGateway, startRedis, waitFor, type InProcessGateway, type Reply } from './helpers/harness.js';

// The gateway as the REST/JSON front of real gRPC servers (the simulators):
// the whole purchase path, deadlines, the circuit breaker, in-band errors, and
// W3C trace context reaching the backend.

const SECRET = 'backend-test-secret-0123456789-0123456789';
const secret = new TextEncoder().encode(SECRET);
const jwt = (sub: string) => new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject(sub).setExpirationTime('5m').sign(secret);

let redis: EmbeddedRedis;
let rsim: RunningSim;
let psim: RunningSim;
let gw: InProcessGateway;

beforeAll(async () => {
  redis = await startRedis();
  rsim = await startReservationSim({ host: '127.0.0.1', port: 0, holdMs: 60_000 });
  psim = await startPaymentSim({ host: '127.0.0.1', port: 0, delayMs: 200 });
  gw = await startInProcessGateway(redis.address, {
    NODE_ENV: 'test',
    JWT_SECRET: SECRET,
    QUEUE_AUTO_CREATE_EVENTS: 'true',
    QUEUE_DEFAULT_RATE: '100',
    QUEUE_DEFAULT_BURST: '100',
    QUEUE_TICK_MS: '50',
    BACKEND_RESERVATION_API_GRPC_ADDRESS: rsim.address,
    BACKEND_PAYMENT_API_GRPC_ADDRESS: psim.address,
    BACKEND_RESERVATION_API_TIMEOUT: '400ms',
    BACKEND_PAYMENT_API_TIMEOUT: '1s',
    BACKEND_BREAKER_VOLUME: '4',
    BACKEND_BREAKER_ERROR_PERCENT: '50',
    BACKEND_BREAKER_RESET_MS: '1000',
  });
});
afterAll(async () => {
  await gw?.stop();
  await rsim?.stop();
  await psim?.stop();
  await redis?.stop();
});

function expectError(r: Reply, status: number, code: string): void {
  expect({ status: r.status, code: (r.body.error as { code?: string } | undefined)?.code }).toEqual({ status, code });
}
const post = async (sub: string, path: string, body: unknown, extra: Record<string, string> = {}) =>
  call(gw.url, 'POST', path, body, { authorization: `Bearer ${await jwt(sub)}`, 'idempotency-key': randomUUID(), ...extra });

async function admitted(event: string, sub: string): Promise<string> {
  const auth = { authorization: `Bearer ${await jwt(sub)}` };
  const j = await call(gw.url, 'POST', '/api/v1/queue/join', { event_id: event }, auth);
  const wt = j.body.waiting_token as string;
  await waitFor('ready', async () => (await call(gw.url, 'GET', `/api/v1/queue/status?token=${wt}`)).body.ready_for_entry === true);
  const e = await call(gw.url, 'POST', '/api/v1/queue/enter', { waiting_token: wt }, auth);
  expect(e.status).toBe(200);
  return e.body.reservation_token as string;
}

describe('the whole path over gRPC', () => {
  it('join -> enter -> reservation -> payment intent -> process -> confirm', async () => {
    const token = await admitted('path', 'ana');
    const r = await post('ana', '/api/v1/reservations', { event_id: 'path', seat_ids: ['S-1', 'S-2'], quantity: 2, reservation_token: token });
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({ status: 'HOLD', event_id: 'path', seat_ids: ['S-1', 'S-2'], quantity: 2, user_id: 'ana' });
    const rid = r.body.reservation_id as string;
    const hold = new Date(r.body.hold_expires_at as string).getTime() - Date.now();
    expect(hold).toBeGreaterThan(55_000);
    expect(hold).toBeLessThanOrEqual(60_000);
    const got = await call(gw.url, 'GET', `/api/v1/reservations/${rid}`, undefined, { authorization: `Bearer ${await jwt('ana')}` });
    expect(got.body).toMatchObject({ reservation_id: rid, status: 'HOLD' });
    const intent = await post('ana', '/api/v1/payment/intent', { reservation_id: rid, amount: 200000, currency: 'KRW', scenario: 'approve' });
    expect(intent.status).toBe(200);
    expect(intent.body).toMatchObject({ status: 'PENDING', amount: 200000, currency: 'KRW', reservation_id: rid });
    const pi = intent.body.payment_intent_id as string;
    const processed = await post('ana', '/api/v1/payment/process', { payment_intent_id: pi, action: 'approve' });
    expect(processed.status).toBe(200);
    expect(processed.body.status).toBe('COMPLETED'); // a string, not an enum number
    const st = await call(gw.url, 'GET', `/api/v1/payment/${pi}/status`, undefined, { authorization: `Bearer ${await jwt('ana')}` });
    expect(st.body).toMatchObject({ payment_intent_id: pi, status: 'COMPLETED' });
    const confirmed = await post('ana', `/api/v1/reservations/${rid}/confirm`, { payment_intent_id: pi });
    expect(confirmed.status).toBe(200);
    expect(confirmed.body.status).toBe('CONFIRMED');
    expect(typeof confirmed.body.order_id).toBe('string');
    // the idempotency key reached the backend
    const create = rsim.received.find((c) => c.method === 'CreateReservation');
    expect(create?.metadata['idempotency-key']).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('a declined payment is 200 FAILED; in-band errors map by code', async () => {
    const token = await admitted('inband', 'ben');
    const r = await post('ben', '/api/v1/reservations', { event_id: 'inband', seat_ids: ['X-1'], quantity: 1, reservation_token: token });
    const rid = r.body.reservation_id as string;
    // another user's reservation: ERROR_CODE_FORBIDDEN -> 403
    expectError(await call(gw.url, 'GET', `/api/v1/reservations/${rid}`, undefined, { authorization: `Bearer ${await jwt('eve')}` }), 403, 'FORBIDDEN');
    // unknown: ERROR_CODE_NOT_FOUND -> 404
    expectError(await call(gw.url, 'GET', '/api/v1/reservations/nope-0000', undefined, { authorization: `Bearer ${await jwt('ben')}` }), 404, 'NOT_FOUND');
    // the same seat for someone else: ERROR_CODE_INVENTORY_CONFLICT -> 409
    const t2 = await admitted('inband', 'cid');
    expectError(await post('cid', '/api/v1/reservations', { event_id: 'inband', seat_ids: ['X-1'], quantity: 1, reservation_token: t2 }), 409, 'INVENTORY_CONFLICT');
    // the refusal did not spend cid's token
    expect((await post('cid', '/api/v1/reservations', { event_id: 'inband', seat_ids: ['X-2'], quantity: 1, reservation_token: t2 })).status).toBe(201);
    const intent = await post('ben', '/api/v1/payment/intent', { reservation_id: rid, amount: 1000, scenario: 'fail' });
    const failed = await post('ben', '/api/v1/payment/process', { payment_intent_id: intent.body.payment_intent_id, action: 'fail' });
    expect(failed.status).toBe(200);
    expect(failed.body.status).toBe('FAILED');
    expectError(await post('ben', '/api/v1/payment/intent', { reservation_id: rid, amount: -5 }), 400, 'INVALID_AMOUNT');
    // cancel, then confirm: ERROR_CODE_FAILED_PRECONDITION -> 412
    expect((await post('ben', `/api/v1/reservations/${rid}/cancel`, {})).body.status).toBe('CANCELLED');
    expectError(await post('ben', `/api/v1/reservations/${rid}/confirm`, {}), 412, 'PRECONDITION_FAILED');
  });
});

describe('failure behaviour', () => {
  it('a backend that hangs: 504 UPSTREAM_TIMEOUT within its deadline', async () => {
    const token = await admitted('hang', 'dan');
    rsim.setMode('hang');
    try {
      const started = Date.now();
      const r = await post('dan', '/api/v1/reservations', { event_id: 'hang', seat_ids: ['H-1'], quantity: 1, reservation_token: token });
      const took = Date.now() - started;
      expectError(r, 504, 'UPSTREAM_TIMEOUT');
      expect(took).toBeGreaterThanOrEqual(380);
      // bounded by the 400 ms deadline, not by a hang (slack for a loaded machine: this is not a latency benchmark)
      expect(took).toBeLessThan(400 + 1500);
    } finally {
      rsim.setMode('normal');
    }
    // the token was released (not the caller's fault): it works now
    expect((await post('dan', '/api/v1/reservations', { event_id: 'hang', seat_ids: ['H-1'], quantity: 1, reservation_token: token })).status).toBe(201);
  });

  it('a backend that is down: 503 at once while the breaker is open, and recovery when it returns', async () => {
    const sub = 'eli';
    const auth = { authorization: `Bearer ${await jwt(sub)}` };
    psim.setMode('unavailable');
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 6; i++) statuses.push((await call(gw.url, 'GET', `/api/v1/payment/pi_${i}/status`, undefined, auth)).status);
      expect(statuses.every((s) => s === 503)).toBe(true);
      const started = performance.now();
      const open = await call(gw.url, 'GET', '/api/v1/payment/pi_x/status', undefined, auth);
      const fastMs = performance.now() - started;
      expectError(open, 503, 'UPSTREAM_UNAVAILABLE');
      expect((open.body.error as { reason?: string }).reason).toBe('circuit_open');
      expect(open.headers.get('retry-after')).toBe('1');
      expect(fastMs).toBeLessThan(50);
      const m = (await call(gw.url, 'GET', '/metrics')).text;
      expect(m).toMatch(/backend_circuit_open\{service="payment"\} 1/);
      expect(m).toMatch(/backend_call_duration_seconds_count\{service="payment",method="GetPaymentStatus",status_code="CIRCUIT_OPEN"\} [1-9]/);
    } finally {
      psim.setMode('normal');
    }
    await sleep(1100); // half-open after the reset timeout
    const back = await call(gw.url, 'GET', '/api/v1/payment/pi_unknown/status', undefined, auth);
    expectError(back, 404, 'NOT_FOUND'); // answered by the backend again
    await waitFor('breaker closed', async () => /backend_circuit_open\{service="payment"\} 0/.test((await call(gw.url, 'GET', '/metrics')).text), 3000);
  });
});

describe('tracing', () => {
  it('the traceparent sent to the gateway arrives in the backend metadata with the same trace id', async () => {
    const token = await admitted('trace', 'fay');
    const traceId = '0af7651916cd43dd8448eb211c80319c';
    const r = await post('fay', '/api/v1/reservations', { event_id: 'trace', seat_ids: ['T-1'], quantity: 1, reservation_token: token }, { traceparent: `00-${traceId}-b7ad6b7169203331-01` });
    expect(r.status).toBe(201);
    expect(r.headers.get('x-trace-id')).toBe(traceId);
    const seen = rsim.received.filter((c) => c.method === 'CreateReservation').map((c) => c.metadata.traceparent ?? '');
    const match = seen.find((tp) => tp.split('-')[1] === traceId);
    expect(match).toBeDefined();
    // a new span of ours (not the caller's span id), sampled as the caller asked
    expect(match!.split('-')[2]).not.toBe('b7ad6b7169203331');
    expect(match!.split('-')[3]).toBe('01');
    // and the request id
    expect(rsim.received.some((c) => c.metadata['x-request-id'] === r.headers.get('x-request-id'))).toBe(true);
  });
});

describe('reservations exactly once', () => {
  it('a backend that created the hold but answered after the deadline: no second reservation with that admission token', async () => {
    const token = await admitted('late', 'gus');
    const body = (seat: string) => ({ event_id: 'late', seat_ids: [seat], quantity: 1, reservation_token: token });
    rsim.setMode('late', { lateMs: 900 }); // the hold is made, the answer comes after the 400 ms deadline
    try {
      expectError(await post('gus', '/api/v1/reservations', body('L-1')), 504, 'UPSTREAM_TIMEOUT');
    } finally {
      rsim.setMode('normal');
    }
    await sleep(700); // the late answer arrives and is dropped
    // another request with the same admission token (another Idempotency-Key, other seats) is refused: its first use may have succeeded
    const other = await post('gus', '/api/v1/reservations', body('L-2'));
    expectError(other, 403, 'FORBIDDEN');
    expect((other.body.error as { reason?: string }).reason).toBe('used');
    // the same request again (a retry under a new Idempotency-Key) gets the hold the first call made, not a second one
    const again = await post('gus', '/api/v1/reservations', body('L-1'));
    expect(again.status).toBe(201);
    const rid = again.body.reservation_id as string;
    const keys = rsim.received.filter((c) => c.method === 'CreateReservation' && (c.request as { reservation_token?: string }).reservation_token === token).map((c) => (c.request as { idempotency_key: string }).idempotency_key);
    expect(keys.length).toBe(2);
    expect(new Set(keys).size).toBe(1); // both calls carried one key: the backend made one hold
    const replay = await post('gus', '/api/v1/reservations', body('L-1'));
    expect(replay.body.reservation_id).toBe(rid);
    // L-2 was never held: someone else can take it
    const t2 = await admitted('late', 'hal');
    expect((await post('hal', '/api/v1/reservations', { event_id: 'late', seat_ids: ['L-2'], quantity: 1, reservation_token: t2 })).status).toBe(201);
  });
});
