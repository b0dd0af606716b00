import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EmbeddedRedis } from '../src/redis/embedded.js';
import WebSocket from 'ws';
import { call, startInProcessGateway, startRedis, waitFor, type InProcessGateway, type Reply } from './helpers/harness.js';

// The REST API per the contract, every error path with its exact status and
// code, against a real gateway (uWebSockets.js) on a real redis-server.

const ADMIN = 'test-admin-token-0123456789';
const auth = { authorization: `Bearer ${ADMIN}` };

let redis: EmbeddedRedis;
let gw: InProcessGateway; // auto-create on, admin API on
let strict: InProcessGateway; // auto-create off, admin API off

beforeAll(async () => {
  redis = await startRedis();
  gw = await startInProcessGateway(redis.address, {
    ADMIN_TOKEN: ADMIN,
    QUEUE_AUTO_CREATE_EVENTS: 'true',
    QUEUE_DEFAULT_RATE: '5',
    QUEUE_DEFAULT_BURST: '1',
    QUEUE_TICK_MS: '50',
    QUEUE_LEASE_MS: '1000',
    HTTP_MAX_BODY_BYTES: '1024',
  });
  strict = await startInProcessGateway(redis.address, { QUEUE_AUTO_CREATE_EVENTS: 'false' });
});
afterAll(async () => {
  await gw?.stop();
  await strict?.stop();
  await redis?.stop();
});

function expectError(r: Reply, status: number, code: string): void {
  expect({ status: r.status, code: (r.body as { error?: { code?: string } }).error?.code }).toEqual({ status, code });
  const e = (r.body as { error: { message: string; trace_id: string } }).error;
  expect(typeof e.message).toBe('string');
  expect(e.message.length).toBeGreaterThan(0);
  expect(e.trace_id).toMatch(/^[0-9a-f]{32}$/); // the real W3C trace id
  expect(e.trace_id).toBe(r.headers.get('x-trace-id'));
}

const join = (g: InProcessGateway, body: unknown, headers: Record<string, string> = {}) => call(g.url, 'POST', '/api/v1/queue/join', body, headers);
const status = (g: InProcessGateway, token: string) => call(g.url, 'GET', `/api/v1/queue/status?token=${encodeURIComponent(token)}`);
const enter = (g: InProcessGateway, token: string) => call(g.url, 'POST', '/api/v1/queue/enter', { waiting_token: token });

describe('happy path', () => {
  it('join 202 -> status with exact position and ETA fields -> ready -> enter 200 with a signed reservation token', async () => {
    await call(gw.url, 'PUT', '/api/v1/admin/events/happy', { rate: 5, burst: 1, ready_window_sec: 60 }, auth);
    const a = await join(gw, { event_id: 'happy', user_id: 'alice' });
    expect(a.status).toBe(202);
    expect(a.body).toMatchObject({ status: 'waiting', position_hint: 1 });
    const b = await join(gw, { event_id: 'happy' });
    expect(b.body).toMatchObject({ position_hint: 2 });
    const tokenB = b.body.waiting_token as string;
    const s = await status(gw, tokenB);
    expect(s.status).toBe(200);
    for (const field of ['status', 'position', 'eta_sec', 'waiting_time', 'ready_for_entry', 'eta_low', 'eta_high', 'confidence', 'poll_after_ms']) {
      expect(s.body).toHaveProperty(field);
    }
    expect(s.body.eta_low as number).toBeLessThanOrEqual(s.body.eta_sec as number);
    expect(s.body.eta_high as number).toBeGreaterThanOrEqual(s.body.eta_sec as number);
    expect(s.body.confidence as number).toBeGreaterThanOrEqual(0);
    expect(s.body.confidence as number).toBeLessThanOrEqual(1);
    const ready = await waitFor('B ready', async () => {
      const r = await status(gw, tokenB);
      return r.body.ready_for_entry === true ? r : undefined;
    });
    expect(ready.body).toMatchObject({ status: 'ready', ready_for_entry: true });
    expect(typeof ready.body.ready_deadline).toBe('string');
    const e = await enter(gw, tokenB);
    expect(e.status).toBe(200);
    expect(e.body).toMatchObject({ admission: 'granted', ttl_sec: 300 });
    const jwt = (e.body.reservation_token as string).split('.');
    expect(jwt).toHaveLength(3);
    const header = JSON.parse(Buffer.from(jwt[0]!, 'base64url').toString()) as { alg: string; kid: string };
    const claims = JSON.parse(Buffer.from(jwt[1]!, 'base64url').toString()) as { evt: string; wt: string; exp: number };
    expect(header.alg).toBe('EdDSA');
    expect(claims).toMatchObject({ evt: 'happy', wt: tokenB });
    const after = await status(gw, tokenB);
    expect(after.body).toMatchObject({ status: 'admitted', ready_for_entry: false });
    const left = await call(gw.url, 'DELETE', `/api/v1/queue/leave?token=${a.body.waiting_token as string}`);
    expect(left.status).toBe(200);
    expect(left.body).toEqual({ status: 'left' });
  });

  it('concurrent HTTP joins from many clients get positions exactly 1..N, matching their status', async () => {
    await call(gw.url, 'PUT', '/api/v1/admin/events/fifo-http', { rate: 0.001, burst: 1, state: 'paused' }, auth);
    const N = 400;
    const replies = await Promise.all(Array.from({ length: N }, () => join(gw, { event_id: 'fifo-http' })));
    expect(replies.every((r) => r.status === 202)).toBe(true);
    const positions = replies.map((r) => r.body.position_hint as number).sort((x, y) => x - y);
    expect(positions).toEqual(Array.from({ length: N }, (_, i) => i + 1));
    for (const r of replies.filter((_, i) => i % 40 === 0)) {
      const s = await status(gw, r.body.waiting_token as string);
      expect(s.body.position).toBe(r.body.position_hint);
    }
  });
});

describe('contract error paths', () => {
  it('join: malformed, missing and invalid input', async () => {
    expectError(await join(gw, '{"event_id": '), 400, 'INVALID_JSON');
    expectError(await join(gw, '[1,2]'), 400, 'INVALID_REQUEST');
    expectError(await join(gw, {}), 400, 'MISSING_EVENT_ID');
    expectError(await join(gw, { event_id: '' }), 400, 'MISSING_EVENT_ID');
    expectError(await join(gw, { event_id: 42 }), 400, 'INVALID_REQUEST');
    expectError(await join(gw, { event_id: 'has space' }), 400, 'INVALID_REQUEST');
    expectError(await join(gw, { event_id: 'x'.repeat(65) }), 400, 'INVALID_REQUEST');
    expectError(await join(gw, { event_id: 'ok', user_id: 7 }), 400, 'INVALID_REQUEST');
    expectError(await join(gw, { event_id: 'ok' }, { 'idempotency-key': 'bad key!' }), 400, 'INVALID_REQUEST');
    expectError(await call(gw.url, 'POST', '/api/v1/queue/join', 'event_id=x', { 'content-type': 'application/x-www-form-urlencoded' }), 415, 'UNSUPPORTED_MEDIA_TYPE');
    expectError(await call(gw.url, 'POST', '/api/v1/queue/join', undefined), 400, 'INVALID_REQUEST');
  });

  it('413 for a body over the limit, whether declared or streamed', async () => {
    expectError(await join(gw, { event_id: 'big', pad: 'x'.repeat(2000) }), 413, 'PAYLOAD_TOO_LARGE');
    // chunked upload without Content-Length
    const stream = new ReadableStream({
      start(c) {
        for (let i = 0; i < 10; i++) c.enqueue(new TextEncoder().encode('x'.repeat(200)));
        c.close();
      },
    });
    const res = await fetch(`${gw.url}/api/v1/queue/join`, {
      method: 'POST',
      body: stream,
      headers: { 'content-type': 'application/json' },
      duplex: 'half',
    } as RequestInit);
    expect(res.status).toBe(413);
    // the gateway is still fine
    expect((await join(gw, { event_id: 'big' })).status).toBe(202);
  });

  it('join: unknown event 404 EVENT_NOT_FOUND without auto-create; closed event 403 EVENT_CLOSED', async () => {
    expectError(await join(strict, { event_id: 'never-made' }), 404, 'EVENT_NOT_FOUND');
    await call(gw.url, 'PUT', '/api/v1/admin/events/shut', { state: 'closed' }, auth);
    expectError(await join(gw, { event_id: 'shut' }), 403, 'EVENT_CLOSED');
  });

  it('join: 409 DUPLICATE_REQUEST carries the existing waiting_token (same Idempotency-Key or same user)', async () => {
    const first = await join(gw, { event_id: 'dups', user_id: 'dave' }, { 'idempotency-key': 'idem-000000000001' });
    expect(first.status).toBe(202);
    // a retry of the same request (same body, same key)
    const again = await join(gw, { event_id: 'dups', user_id: 'dave' }, { 'idempotency-key': 'idem-000000000001' });
    expectError(again, 409, 'DUPLICATE_REQUEST');
    expect((again.body.error as Record<string, unknown>).waiting_token).toBe(first.body.waiting_token);
    const sameUser = await join(gw, { event_id: 'dups', user_id: 'dave' });
    expectError(sameUser, 409, 'DUPLICATE_REQUEST');
    expect((sameUser.body.error as Record<string, unknown>).waiting_token).toBe(first.body.waiting_token);
  });

  it('status / leave: missing, malformed, unknown, expired tokens', async () => {
    expectError(await call(gw.url, 'GET', '/api/v1/queue/status'), 400, 'MISSING_TOKEN');
    expectError(await call(gw.url, 'GET', '/api/v1/queue/status?token='), 400, 'MISSING_TOKEN');
    expectError(await status(gw, 'not-a-token'), 404, 'TOKEN_NOT_FOUND');
    expectError(await status(gw, 'happy.AAAAAAAAAAAAAAAAAAAAAA'), 404, 'TOKEN_NOT_FOUND');
    expectError(await call(gw.url, 'DELETE', '/api/v1/queue/leave'), 400, 'MISSING_TOKEN');
    expectError(await call(gw.url, 'DELETE', '/api/v1/queue/leave?token=happy.AAAAAAAAAAAAAAAAAAAAAA'), 404, 'TOKEN_NOT_FOUND');
    const j = await join(gw, { event_id: 'gone' });
    const tok = j.body.waiting_token as string;
    expect((await call(gw.url, 'DELETE', `/api/v1/queue/leave?token=${tok}`)).status).toBe(200);
    expect((await call(gw.url, 'DELETE', `/api/v1/queue/leave?token=${tok}`)).status).toBe(200); // idempotent
    const s = await status(gw, tok);
    expectError(s, 404, 'TOKEN_EXPIRED');
    expect((s.body.error as Record<string, unknown>).reason).toBe('left');
  });

  it('enter: missing token 400, unknown 404, not ready 403, twice the same admission, expired 404', async () => {
    await call(gw.url, 'PUT', '/api/v1/admin/events/gate', { rate: 50, burst: 1, ready_window_sec: 5, state: 'paused' }, auth);
    expectError(await call(gw.url, 'POST', '/api/v1/queue/enter', {}), 400, 'MISSING_TOKEN');
    expectError(await call(gw.url, 'POST', '/api/v1/queue/enter', '{bad'), 400, 'INVALID_JSON');
    expectError(await enter(gw, 'gate.AAAAAAAAAAAAAAAAAAAAAA'), 404, 'TOKEN_NOT_FOUND');
    const a = (await join(gw, { event_id: 'gate' })).body.waiting_token as string;
    const b = (await join(gw, { event_id: 'gate' })).body.waiting_token as string;
    const nr = await enter(gw, a);
    expectError(nr, 403, 'NOT_READY');
    await call(gw.url, 'PUT', '/api/v1/admin/events/gate', { state: 'open' }, auth);
    await waitFor('a ready', async () => (await status(gw, a)).body.ready_for_entry === true);
    const first = await enter(gw, a);
    expect(first.status).toBe(200);
    // entering again (an answer lost on the way) gives the same admission, never a second one
    const again = await enter(gw, a);
    expect(again.status).toBe(200);
    const jti = (t: unknown): string => (JSON.parse(Buffer.from(String(t).split('.')[1]!, 'base64url').toString()) as { jti: string }).jti;
    expect(jti(again.body.reservation_token)).toBe(jti(first.body.reservation_token));
    expectError(await call(gw.url, 'DELETE', `/api/v1/queue/leave?token=${a}`), 409, 'NOT_IN_LINE');
    await waitFor('b ready', async () => (await status(gw, b)).body.ready_for_entry === true);
    // let b's 5 s ready window pass
    const expired = await waitFor('b expired', async () => {
      const r = await status(gw, b);
      return r.status === 404 ? r : undefined;
    }, 10_000, 250);
    expectError(expired, 404, 'TOKEN_EXPIRED');
    expectError(await enter(gw, b), 404, 'TOKEN_EXPIRED');
  });

  it('unknown route 404 and wrong method 405 (with Allow), in the contract body', async () => {
    expectError(await call(gw.url, 'GET', '/api/v1/nothing-here'), 404, 'NOT_FOUND');
    const r = await call(gw.url, 'GET', '/api/v1/queue/join');
    expectError(r, 405, 'METHOD_NOT_ALLOWED');
    expect(r.headers.get('allow')).toBe('POST');
    expectError(await call(gw.url, 'PUT', '/api/v1/queue/status'), 405, 'METHOD_NOT_ALLOWED');
  });

  it('every response carries X-Request-ID; a sane incoming one is echoed, an unsafe one replaced', async () => {
    const r1 = await call(gw.url, 'GET', '/healthz', undefined, { 'x-request-id': 'req-123.abc' });
    expect(r1.headers.get('x-request-id')).toBe('req-123.abc');
    const r2 = await call(gw.url, 'GET', '/api/v1/queue/status', undefined, { 'x-request-id': 'bad id <script>' });
    expect(r2.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
    expect((r2.body.error as { trace_id: string }).trace_id).toBe(r2.headers.get('x-trace-id'));
    // an incoming traceparent is continued: the error names its trace
    const tp = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const r3 = await call(gw.url, 'GET', '/api/v1/queue/status', undefined, { traceparent: tp });
    expect((r3.body.error as { trace_id: string }).trace_id).toBe('4bf92f3577b34da6a3ce929d0e0e4736');
    for (const path of ['/healthz', '/readyz', '/version', '/metrics', '/nope']) {
      expect((await call(gw.url, 'GET', path)).headers.get('x-request-id')).toBeTruthy();
    }
  });
});

describe('admin API', () => {
  it('is a plain 404 when ADMIN_TOKEN is not configured', async () => {
    expectError(await call(strict.url, 'GET', '/api/v1/admin/events/x', undefined, auth), 404, 'NOT_FOUND');
    expectError(await call(strict.url, 'PUT', '/api/v1/admin/events/x', { rate: 1 }, auth), 404, 'NOT_FOUND');
  });

  it('401 without or with a wrong bearer token', async () => {
    expectError(await call(gw.url, 'GET', '/api/v1/admin/events/x'), 401, 'UNAUTHORIZED');
    expectError(await call(gw.url, 'GET', '/api/v1/admin/events/x', undefined, { authorization: 'Bearer wrong-token-0123456789' }), 401, 'UNAUTHORIZED');
    expectError(await call(gw.url, 'GET', '/api/v1/admin/events/x', undefined, { authorization: ADMIN }), 401, 'UNAUTHORIZED');
    const r = await call(gw.url, 'PUT', '/api/v1/admin/events/x', { rate: 1 }, { authorization: 'Bearer nope-nope-nope-nope' });
    expectError(r, 401, 'UNAUTHORIZED');
    expect(r.headers.get('www-authenticate')).toContain('Bearer');
  });

  it('creates (201), updates (200), reads, validates, and reports stats', async () => {
    const c = await call(gw.url, 'PUT', '/api/v1/admin/events/adm', { rate: 2.5, burst: 3, ready_window_sec: 30, reconnect_grace_sec: 10 }, auth);
    expect(c.status).toBe(201);
    expect(c.body).toMatchObject({ event_id: 'adm', rate: 2.5, burst: 3, ready_window_sec: 30, reconnect_grace_sec: 10, state: 'open' });
    const u = await call(gw.url, 'PUT', '/api/v1/admin/events/adm', { state: 'paused' }, auth);
    expect(u.status).toBe(200);
    expect(u.body).toMatchObject({ rate: 2.5, state: 'paused' });
    expect((await call(gw.url, 'GET', '/api/v1/admin/events/adm', undefined, auth)).body).toMatchObject({ state: 'paused', burst: 3 });
    expectError(await call(gw.url, 'GET', '/api/v1/admin/events/none', undefined, auth), 404, 'EVENT_NOT_FOUND');
    expectError(await call(gw.url, 'GET', '/api/v1/admin/events/none/stats', undefined, auth), 404, 'EVENT_NOT_FOUND');
    expectError(await call(gw.url, 'PUT', '/api/v1/admin/events/adm', { rate: -1 }, auth), 400, 'INVALID_REQUEST');
    expectError(await call(gw.url, 'PUT', '/api/v1/admin/events/adm', { burst: 1.5 }, auth), 400, 'INVALID_REQUEST');
    expectError(await call(gw.url, 'PUT', '/api/v1/admin/events/adm', { state: 'frozen' }, auth), 400, 'INVALID_REQUEST');
    expectError(await call(gw.url, 'PUT', '/api/v1/admin/events/adm', { colour: 'red' }, auth), 400, 'INVALID_REQUEST');
    expectError(await call(gw.url, 'PUT', '/api/v1/admin/events/bad%20id', { rate: 1 }, auth), 400, 'INVALID_REQUEST');
    await join(gw, { event_id: 'adm' });
    await join(gw, { event_id: 'adm' });
    const s = await call(gw.url, 'GET', '/api/v1/admin/events/adm/stats', undefined, auth);
    expect(s.status).toBe(200);
    expect(s.body).toMatchObject({ event_id: 'adm', state: 'paused', in_line: 2, waiting: 2, ready: 0, joined_total: 2, admitted_total: 0 });
    expect(s.body.admission_rate).toMatchObject({ configured: 2.5 });
  });
});

describe('operator feed', () => {
  it('lists events, and /api/v1/admin/ws pushes per-event summaries to the right token only', async () => {
    await call(gw.url, 'PUT', '/api/v1/admin/events/feed', { rate: 3, burst: 1, state: 'paused' }, auth);
    await join(gw, { event_id: 'feed' });
    const list = await call(gw.url, 'GET', '/api/v1/admin/events', undefined, auth);
    expect(list.status).toBe(200);
    expect((list.body.events as { event_id: string }[]).find((e) => e.event_id === 'feed')).toMatchObject({ state: 'paused', rate: 3, in_line: 1 });
    expectError(await call(gw.url, 'GET', '/api/v1/admin/events'), 401, 'UNAUTHORIZED');
    const wsUrl = gw.url.replace('http', 'ws');
    const bad = new WebSocket(`${wsUrl}/api/v1/admin/ws?token=wrong-token-0123456789`);
    expect(await new Promise<number>((r) => bad.on('close', (code) => r(code)))).toBe(4401);
    const good = new WebSocket(`${wsUrl}/api/v1/admin/ws?token=${ADMIN}`);
    const msg = await new Promise<Record<string, unknown>>((resolve) =>
      good.on('message', (d: Buffer) => {
        const m = JSON.parse(d.toString()) as Record<string, unknown>;
        if (m.event_id === 'feed') resolve(m);
      }),
    );
    expect(msg).toMatchObject({ type: 'event', event_id: 'feed', state: 'paused', in_line: 1, waiting: 1, ready: 0 });
    expect(msg.rate).toMatchObject({ configured: 3 });
    good.close();
  });
});

describe('health', () => {
  it('healthz, readyz, version and metrics answer', async () => {
    expect((await call(gw.url, 'GET', '/healthz')).body).toEqual({ status: 'ok' });
    expect((await call(gw.url, 'GET', '/readyz')).status).toBe(200);
    const v = await call(gw.url, 'GET', '/version');
    expect(v.body).toMatchObject({ version: '0.1.0' });
    expect(typeof v.body.commit).toBe('string');
    const m = await call(gw.url, 'GET', '/metrics');
    expect(m.text).toContain('http_server_requests_total');
    expect(m.text).toMatch(/queue_operations_total\{operation="join",status="ok"\} \d+/);
  });
});
