import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:http';
import { randomUUID } from 'node:crypto';
import { SignJWT, exportJWK, generateKeyPair, type JWK, type KeyLike } from 'jose';
import type { EmbeddedRedis } from '../src/redis/embedded.js';
import { loadConfig, ConfigError } from '../src/config.js';
import { PAGE_CSP } from '../src/http/static.js';
import { call, sleep, spawnGateway, startInProcessGateway, startRedis, waitFor, type InProcessGateway, type Reply } from './helpers/harness.js';
import { connect } from './helpers/ws-client.js';

// Attacks and mistakes, each with its exact status and error code: forged,
// expired and misaddressed JWTs; forged, expired, reused and cross-event
// reservation tokens; idempotency replay/conflict/concurrency; rate limits
// held to the limit; bad frames and floods; production refusing dev
// conveniences. (Admin API without/with a wrong token and oversized/malformed
// bodies: test/http-api.test.ts.)

const SECRET = 'test-secret-0123456789-0123456789-abcdef';
const ISSUER = 'https://idp.test';
const AUDIENCE = 'waiting-room';
const ADMIN = 'test-admin-token-0123456789';
const admin = { authorization: `Bearer ${ADMIN}` };
const secret = new TextEncoder().encode(SECRET);

let redis: EmbeddedRedis;
let gw: InProcessGateway;
let admissionKey: KeyLike;
let admissionJwk: JWK;

async function userJwt(sub: string, o: { exp?: string | number | null; nbf?: string; iss?: string; aud?: string; key?: Uint8Array } = {}): Promise<string> {
  let j = new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject(sub).setIssuedAt().setIssuer(o.iss ?? ISSUER).setAudience(o.aud ?? AUDIENCE);
  if (o.exp !== null) j = j.setExpirationTime(o.exp ?? '5m');
  if (o.nbf) j = j.setNotBefore(o.nbf);
  return j.sign(o.key ?? secret);
}
const bearer = (t: string) => ({ authorization: `Bearer ${t}` });

function expectError(r: Reply, status: number, code: string, reason?: string): void {
  const e = (r.body as { error?: { code?: string; reason?: string; trace_id?: string } }).error;
  expect({ status: r.status, code: e?.code, ...(reason ? { reason: e?.reason } : {}) }).toEqual({ status, code, ...(reason ? { reason } : {}) });
  expect(e?.trace_id).toBe(r.headers.get('x-trace-id'));
}

beforeAll(async () => {
  redis = await startRedis();
  const pair = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
  admissionKey = pair.privateKey;
  admissionJwk = { ...(await exportJWK(pair.privateKey)), kid: 'adm-1', alg: 'EdDSA' };
  gw = await startInProcessGateway(redis.address, {
    NODE_ENV: 'test',
    JWT_SECRET: SECRET,
    JWT_ISSUER: ISSUER,
    JWT_AUDIENCE: AUDIENCE,
    ADMIN_TOKEN: ADMIN,
    ADMISSION_SIGNING_JWK: JSON.stringify(admissionJwk),
    QUEUE_AUTO_CREATE_EVENTS: 'true',
    QUEUE_DEFAULT_RATE: '100',
    QUEUE_DEFAULT_BURST: '100',
    QUEUE_TICK_MS: '50',
    QUEUE_LEASE_MS: '1000',
    CORS_ALLOW_ORIGINS: 'https://tickets.example',
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

/** join as `sub`, wait for ready, enter: the reservation token */
async function admitted(event: string, sub: string): Promise<{ waiting: string; reservation: string }> {
  const jwt = await userJwt(sub);
  const j = await call(gw.url, 'POST', '/api/v1/queue/join', { event_id: event }, bearer(jwt));
  expect(j.status).toBe(202);
  const waiting = j.body.waiting_token as string;
  await waitFor('ready', async () => (await call(gw.url, 'GET', `/api/v1/queue/status?token=${waiting}`)).body.ready_for_entry === true);
  const e = await call(gw.url, 'POST', '/api/v1/queue/enter', { waiting_token: waiting }, bearer(jwt));
  expect(e.status).toBe(200);
  return { waiting, reservation: e.body.reservation_token as string };
}

const reserve = async (event: string, sub: string, token: string, seat: string, key = randomUUID()) =>
  call(gw.url, 'POST', '/api/v1/reservations', { event_id: event, seat_ids: [seat], quantity: 1, reservation_token: token }, { ...bearer(await userJwt(sub)), 'idempotency-key': key });

describe('user JWTs', () => {
  const enterWith = async (headers: Record<string, string>) => call(gw.url, 'POST', '/api/v1/queue/enter', { waiting_token: 'jwt.AAAAAAAAAAAAAAAAAAAAAA' }, headers);

  it('a valid token passes authentication (then the unknown waiting token is 404)', async () => {
    expectError(await enterWith(bearer(await userJwt('alice'))), 404, 'TOKEN_NOT_FOUND');
  });

  it('alg none, wrong key, wrong issuer/audience, expired, not-yet-valid, missing exp, malformed: 401 with a reason', async () => {
    const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const now = Math.floor(Date.now() / 1000);
    const none = `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ sub: 'alice', iss: ISSUER, aud: AUDIENCE, exp: now + 300 })}.`;
    expectError(await enterWith(bearer(none)), 401, 'UNAUTHORIZED', 'algorithm');
    expectError(await enterWith(bearer(await userJwt('alice', { key: new TextEncoder().encode('another-secret-0123456789-0123456789') }))), 401, 'UNAUTHORIZED', 'signature');
    expectError(await enterWith(bearer(await userJwt('alice', { iss: 'https://evil.test' }))), 401, 'UNAUTHORIZED', 'issuer');
    expectError(await enterWith(bearer(await userJwt('alice', { aud: 'someone-else' }))), 401, 'UNAUTHORIZED', 'audience');
    expectError(await enterWith(bearer(await userJwt('alice', { exp: now - 60 }))), 401, 'UNAUTHORIZED', 'expired');
    expectError(await enterWith(bearer(await userJwt('alice', { nbf: '10m' }))), 401, 'UNAUTHORIZED', 'not_yet_valid');
    expectError(await enterWith(bearer(await userJwt('alice', { exp: null }))), 401, 'UNAUTHORIZED', 'claim');
    // an RS256/ES256 token where only HS256 is allowed
    const es = await generateKeyPair('ES256');
    const esJwt = await new SignJWT({}).setProtectedHeader({ alg: 'ES256' }).setSubject('alice').setIssuer(ISSUER).setAudience(AUDIENCE).setExpirationTime('5m').sign(es.privateKey);
    expectError(await enterWith(bearer(esJwt)), 401, 'UNAUTHORIZED', 'algorithm');
    expectError(await enterWith({ authorization: `Bearer ${'a'.repeat(9000)}.b.c` }), 431, 'HEADER_TOO_LARGE');
    for (const bad of ['Bearer', 'Bearer abc', 'Basic dXNlcjpwYXNz', `Bearer ${'a'.repeat(8100)}.b.c`, 'bearer x.y.z', 'Bearer a.b.c']) {
      const r = await enterWith({ authorization: bad });
      expect(r.status).toBe(401);
      expect((r.body.error as { code: string }).code).toBe('UNAUTHORIZED');
    }
  });

  it("the seed's static bypass tokens are rejected like any forged token", async () => {
    for (const t of ['dev-super-key-local-testing', 'load-test-bypass-token']) {
      expectError(await enterWith(bearer(t)), 401, 'UNAUTHORIZED', 'malformed');
      expectError(await call(gw.url, 'POST', '/api/v1/queue/join', { event_id: 'bypass' }, bearer(t)), 401, 'UNAUTHORIZED', 'malformed');
    }
  });

  it('enter needs a JWT when auth is configured; a place bound to a user is only theirs; a body user_id needs a token', async () => {
    // an event with access "user" (the default): a real place is entered by a verified user only
    const anon = (await call(gw.url, 'POST', '/api/v1/queue/join', { event_id: 'bind' })).body.waiting_token as string;
    await waitFor('ready', async () => (await call(gw.url, 'GET', `/api/v1/queue/status?token=${anon}`)).body.ready_for_entry === true);
    expectError(await call(gw.url, 'POST', '/api/v1/queue/enter', { waiting_token: anon }), 401, 'UNAUTHORIZED', 'missing');
    await call(gw.url, 'DELETE', `/api/v1/queue/leave?token=${anon}`);
    expectError(await call(gw.url, 'POST', '/api/v1/queue/join', { event_id: 'bind', user_id: 'victim' }), 401, 'UNAUTHORIZED', 'missing');
    const aliceJwt = await userJwt('alice');
    expectError(await call(gw.url, 'POST', '/api/v1/queue/join', { event_id: 'bind', user_id: 'bob' }, bearer(aliceJwt)), 403, 'FORBIDDEN');
    const j = await call(gw.url, 'POST', '/api/v1/queue/join', { event_id: 'bind' }, bearer(aliceJwt));
    const wt = j.body.waiting_token as string;
    await waitFor('ready', async () => (await call(gw.url, 'GET', `/api/v1/queue/status?token=${wt}`)).body.ready_for_entry === true);
    expectError(await call(gw.url, 'POST', '/api/v1/queue/enter', { waiting_token: wt }, bearer(await userJwt('mallory'))), 403, 'FORBIDDEN');
    // a duplicate join by the same authenticated user returns their own place
    const dup = await call(gw.url, 'POST', '/api/v1/queue/join', { event_id: 'bind' }, bearer(aliceJwt));
    expectError(dup, 409, 'DUPLICATE_REQUEST');
    expect((dup.body.error as { waiting_token: string }).waiting_token).toBe(wt);
    expect((await call(gw.url, 'POST', '/api/v1/queue/enter', { waiting_token: wt }, bearer(aliceJwt))).status).toBe(200);
  });

  it("a join Idempotency-Key is scoped to its caller: another caller with the same key does not get the place", async () => {
    const key = 'shared-key-0000000001';
    const mine = await call(gw.url, 'POST', '/api/v1/queue/join', { event_id: 'idem-scope' }, { ...bearer(await userJwt('owner')), 'idempotency-key': key });
    expect(mine.status).toBe(202);
    const again = await call(gw.url, 'POST', '/api/v1/queue/join', { event_id: 'idem-scope' }, { ...bearer(await userJwt('owner')), 'idempotency-key': key });
    expectError(again, 409, 'DUPLICATE_REQUEST');
    expect((again.body.error as { waiting_token: string }).waiting_token).toBe(mine.body.waiting_token);
    const thief = await call(gw.url, 'POST', '/api/v1/queue/join', { event_id: 'idem-scope' }, { ...bearer(await userJwt('thief')), 'idempotency-key': key });
    expect(thief.status).toBe(202); // a place of their own, not the owner's
    expect(thief.body.waiting_token).not.toBe(mine.body.waiting_token);
    const anon = await call(gw.url, 'POST', '/api/v1/queue/join', { event_id: 'idem-scope' }, { 'idempotency-key': key });
    expect(anon.status).toBe(202);
    expect(anon.body.waiting_token).not.toBe(mine.body.waiting_token);
  });

  it('entering anonymous places binds them to the user: one user cannot be admitted twice in one event', async () => {
    const a = (await call(gw.url, 'POST', '/api/v1/queue/join', { event_id: 'anon2' })).body.waiting_token as string;
    const b = (await call(gw.url, 'POST', '/api/v1/queue/join', { event_id: 'anon2' })).body.waiting_token as string;
    for (const t of [a, b]) await waitFor('ready', async () => (await call(gw.url, 'GET', `/api/v1/queue/status?token=${t}`)).body.ready_for_entry === true);
    const jwt = await userJwt('collector');
    expect((await call(gw.url, 'POST', '/api/v1/queue/enter', { waiting_token: a }, bearer(jwt))).status).toBe(200);
    const second = await call(gw.url, 'POST', '/api/v1/queue/enter', { waiting_token: b }, bearer(jwt));
    expectError(second, 409, 'DUPLICATE_REQUEST');
    expect((second.body.error as { waiting_token: string }).waiting_token).toBe(a);
    // someone else may take that second place
    expect((await call(gw.url, 'POST', '/api/v1/queue/enter', { waiting_token: b }, bearer(await userJwt('other-user')))).status).toBe(200);
  });

  it('per-user rate limit: one user spread over many addresses is still held to the user limit', async () => {
    const g = await startInProcessGateway(redis.address, { NODE_ENV: 'test', JWT_SECRET: SECRET, JWT_ISSUER: ISSUER, JWT_AUDIENCE: AUDIENCE, RATE_LIMIT_USER_RPS: '1', RATE_LIMIT_USER_BURST: '3', TRUST_PROXY: 'true', QUEUE_AUTO_CREATE_EVENTS: 'true' });
    try {
      const jwt = await userJwt('spreader');
      const statuses: number[] = [];
      for (let i = 0; i < 6; i++) {
        const r = await call(g.url, 'POST', '/api/v1/queue/enter', { waiting_token: 'u.AAAAAAAAAAAAAAAAAAAAAA' }, { ...bearer(jwt), 'x-forwarded-for': `9.9.9.${i}` });
        statuses.push(r.status);
        if (r.status === 429) {
          expectError(r, 429, 'RATE_LIMITED');
          expect(r.headers.get('retry-after')).toBeTruthy();
        }
      }
      expect(statuses.slice(0, 3)).toEqual([404, 404, 404]);
      expect(statuses.slice(3)).toEqual([429, 429, 429]);
      expect(/ratelimit_dropped_total\{scope="user"\} 3/.test((await call(g.url, 'GET', '/metrics')).text)).toBe(true);
    } finally {
      await g.stop();
    }
  });

  it('enter over the WebSocket needs a JWT too when auth is configured', async () => {
    const t = (await call(gw.url, 'POST', '/api/v1/queue/join', { event_id: 'ws-auth' })).body.waiting_token as string;
    await waitFor('ready', async () => (await call(gw.url, 'GET', `/api/v1/queue/status?token=${t}`)).body.ready_for_entry === true);
    const c = await connect(gw.url, t);
    await c.next((m) => m.type === 'welcome');
    c.send({ type: 'enter' });
    expect(await c.next((m) => m.type === 'error')).toMatchObject({ code: 'UNAUTHORIZED' });
    c.send({ type: 'enter', access_token: 'forged.jwt.token' });
    expect(await c.next((m) => m.type === 'error' && m.code === 'UNAUTHORIZED', 5000, 2)).toBeTruthy();
    c.send({ type: 'enter', access_token: await userJwt('wsuser') });
    const adm = await c.next((m) => m.type === 'admitted');
    const claims = JSON.parse(Buffer.from((adm.reservation_token as string).split('.')[1]!, 'base64url').toString()) as { sub: string };
    expect(claims.sub).toBe('wsuser');
    expect((await c.closed).code).toBe(4000);
  });

  it('JWKS: keys cached, refetched on an unknown kid at most once per cooldown', async () => {
    const k1 = await generateKeyPair('ES256');
    const k2 = await generateKeyPair('ES256');
    const keys: JWK[] = [{ ...(await exportJWK(k1.publicKey)), kid: 'k1', alg: 'ES256' }];
    let fetches = 0;
    const srv: Server = createServer((_req, res) => {
      fetches++;
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys }));
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as { port: number }).port;
    const g = await startInProcessGateway(redis.address, { NODE_ENV: 'test', JWT_JWKS_ENDPOINT: `http://127.0.0.1:${port}/jwks.json`, JWT_JWKS_COOLDOWN_SEC: '2', QUEUE_AUTO_CREATE_EVENTS: 'true' });
    try {
      const sign = (key: KeyLike, kid: string) => new SignJWT({}).setProtectedHeader({ alg: 'ES256', kid }).setSubject('carol').setExpirationTime('5m').sign(key);
      const enter = async (t: string) => call(g.url, 'POST', '/api/v1/queue/enter', { waiting_token: 'x.AAAAAAAAAAAAAAAAAAAAAA' }, bearer(t));
      expectError(await enter(await sign(k1.privateKey, 'k1')), 404, 'TOKEN_NOT_FOUND');
      expectError(await enter(await sign(k1.privateKey, 'k1')), 404, 'TOKEN_NOT_FOUND');
      expect(fetches).toBe(1); // cached
      // a flood of unknown kids: at most one refetch per cooldown
      for (let i = 0; i < 20; i++) expectError(await enter(await sign(k2.privateKey, `unknown-${i}`)), 401, 'UNAUTHORIZED', 'signature');
      expect(fetches).toBeLessThanOrEqual(2);
      // the identity provider rotates to k2: after the cooldown the new kid is fetched and accepted
      keys.push({ ...(await exportJWK(k2.publicKey)), kid: 'k2', alg: 'ES256' });
      await sleep(2100);
      expectError(await enter(await sign(k2.privateKey, 'k2')), 404, 'TOKEN_NOT_FOUND');
      expect(fetches).toBeLessThanOrEqual(3);
    } finally {
      await g.stop();
      srv.close();
    }
  });
});

describe('reservation (admission) tokens', () => {
  it('published in /.well-known/jwks.json; accepted once, for its event and user, before expiry', async () => {
    const jwks = await call(gw.url, 'GET', '/.well-known/jwks.json');
    expect(jwks.status).toBe(200);
    const published = (jwks.body.keys as JWK[])[0]!;
    expect(published).toMatchObject({ kid: 'adm-1', alg: 'EdDSA', kty: 'OKP', crv: 'Ed25519' });
    expect(published.d).toBeUndefined(); // never the private part

    const a = await admitted('rsv', 'alice');
    const first = await reserve('rsv', 'alice', a.reservation, 'A-1');
    expect(first.status).toBe(201);
    expect(first.body).toMatchObject({ status: 'HOLD', event_id: 'rsv', seat_ids: ['A-1'], quantity: 1, user_id: 'alice' });
    expectError(await reserve('rsv', 'alice', a.reservation, 'A-2'), 403, 'FORBIDDEN', 'used');

    const b = await admitted('rsv', 'bob');
    expectError(await reserve('rsv-other', 'bob', b.reservation, 'A-3'), 403, 'FORBIDDEN', 'wrong_event');
    expectError(await reserve('rsv', 'mallory', b.reservation, 'A-3'), 403, 'FORBIDDEN', 'wrong_user');
    // the refusals did not spend it
    expect((await reserve('rsv', 'bob', b.reservation, 'A-3')).status).toBe(201);
  });

  it('forged, tampered and expired tokens are 403', async () => {
    const forger = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
    const claims = { evt: 'rsv', wt: 'rsv.AAAAAAAAAAAAAAAAAAAAAA' };
    const forged = await new SignJWT(claims).setProtectedHeader({ alg: 'EdDSA', kid: 'adm-1' }).setIssuer('waiting-room-gateway').setAudience('reservation').setSubject('eve').setJti('j1').setExpirationTime('5m').sign(forger.privateKey);
    expectError(await reserve('rsv', 'eve', forged, 'B-1'), 403, 'FORBIDDEN', 'invalid');
    const expired = await new SignJWT(claims).setProtectedHeader({ alg: 'EdDSA', kid: 'adm-1' }).setIssuer('waiting-room-gateway').setAudience('reservation').setSubject('eve').setJti('j2').setExpirationTime(Math.floor(Date.now() / 1000) - 10).sign(admissionKey);
    expectError(await reserve('rsv', 'eve', expired, 'B-1'), 403, 'FORBIDDEN', 'expired');
    const c = await admitted('rsv', 'carol');
    const [h, p, s] = c.reservation.split('.');
    const payload = JSON.parse(Buffer.from(p!, 'base64url').toString()) as Record<string, unknown>;
    const tampered = `${h}.${Buffer.from(JSON.stringify({ ...payload, evt: 'other' })).toString('base64url')}.${s}`;
    expectError(await reserve('other', 'carol', tampered, 'B-2'), 403, 'FORBIDDEN', 'invalid');
    expectError(await reserve('rsv', 'carol', 'not-a-jwt', 'B-2'), 403, 'FORBIDDEN', 'malformed');
  });
});

describe('idempotency', () => {
  it('replay, conflict, and concurrent duplicates executed exactly once', async () => {
    const a = await admitted('idem', 'dora');
    const key = randomUUID();
    const first = await reserve('idem', 'dora', a.reservation, 'C-1', key);
    expect(first.status, first.text).toBe(201);
    const again = await reserve('idem', 'dora', a.reservation, 'C-1', key);
    expect(again.status, again.text).toBe(201);
    expect(again.headers.get('x-idempotency-cached')).toBe('true');
    expect(again.body).toEqual(first.body);
    expectError(await reserve('idem', 'dora', a.reservation, 'C-9', key), 409, 'IDEMPOTENCY_CONFLICT');
    expectError(await call(gw.url, 'POST', '/api/v1/reservations', { event_id: 'idem', seat_ids: ['C-2'], quantity: 1, reservation_token: a.reservation }, bearer(await userJwt('dora'))), 400, 'IDEMPOTENCY_KEY_REQUIRED');

    const b = await admitted('idem', 'erin');
    const k2 = randomUUID();
    const jwt = await userJwt('erin');
    const body = { event_id: 'idem', seat_ids: ['C-3'], quantity: 1, reservation_token: b.reservation };
    const all = await Promise.all(Array.from({ length: 12 }, () => call(gw.url, 'POST', '/api/v1/reservations', body, { ...bearer(jwt), 'idempotency-key': k2 })));
    const created = all.filter((r) => r.status === 201);
    const others = all.filter((r) => r.status !== 201);
    expect(created.length).toBeGreaterThanOrEqual(1);
    for (const r of others) expectError(r, 409, 'IDEMPOTENCY_CONFLICT', 'in_flight');
    // one execution: every 201 is the same reservation (the others were replays)
    expect(new Set(created.map((r) => r.body.reservation_id)).size).toBe(1);
    expect(created.filter((r) => r.headers.get('x-idempotency-cached') !== 'true')).toHaveLength(1);
  });

  it('a key is scoped by the verified subject: a refreshed token replays; another user or a forged token never gets the stored response', async () => {
    const a = await admitted('idem-scope', 'gwen');
    const key = randomUUID();
    const body = { event_id: 'idem-scope', seat_ids: ['D-1'], quantity: 1, reservation_token: a.reservation };
    const post = async (jwt: string) => call(gw.url, 'POST', '/api/v1/reservations', body, { ...bearer(jwt), 'idempotency-key': key });
    const first = await post(await userJwt('gwen', { exp: '10m' }));
    expect(first.status, first.text).toBe(201);
    // a different JWT string for the same user (as after a token refresh): the stored answer, not a second execution
    const refreshed = await post(await userJwt('gwen', { exp: '20m' }));
    expect(refreshed.status, refreshed.text).toBe(201);
    expect(refreshed.headers.get('x-idempotency-cached')).toBe('true');
    expect(refreshed.body).toEqual(first.body);
    // another user with the same key and body runs on their own (and is refused: the admission token is gwen's)
    const other = await post(await userJwt('hank'));
    expectError(other, 403, 'FORBIDDEN', 'wrong_user');
    expect(other.headers.get('x-idempotency-cached')).toBeNull();
    // a token for gwen that does not verify is 401 before any stored response is looked up
    expectError(await post(await userJwt('gwen', { key: new TextEncoder().encode('another-secret-of-at-least-32-bytes!!') })), 401, 'UNAUTHORIZED');
  });

  it('enter honours Idempotency-Key: a retry gets the same reservation token; without the key the same admission again', async () => {
    const jwt = await userJwt('fred');
    const j = await call(gw.url, 'POST', '/api/v1/queue/join', { event_id: 'idem-enter' }, bearer(jwt));
    const wt = j.body.waiting_token as string;
    await waitFor('ready', async () => (await call(gw.url, 'GET', `/api/v1/queue/status?token=${wt}`)).body.ready_for_entry === true);
    const key = randomUUID();
    const e1 = await call(gw.url, 'POST', '/api/v1/queue/enter', { waiting_token: wt }, { ...bearer(jwt), 'idempotency-key': key });
    const e2 = await call(gw.url, 'POST', '/api/v1/queue/enter', { waiting_token: wt }, { ...bearer(jwt), 'idempotency-key': key });
    expect(e1.status).toBe(200);
    expect(e2.status).toBe(200);
    expect(e2.body.reservation_token).toBe(e1.body.reservation_token);
    expect(e2.headers.get('x-idempotency-cached')).toBe('true');
    // without the key: the same admission again (same jti), not a second one
    const e3 = await call(gw.url, 'POST', '/api/v1/queue/enter', { waiting_token: wt }, bearer(jwt));
    expect(e3.status).toBe(200);
    const jti = (t: unknown): string => (JSON.parse(Buffer.from(String(t).split('.')[1]!, 'base64url').toString()) as { jti: string }).jti;
    expect(jti(e3.body.reservation_token)).toBe(jti(e1.body.reservation_token));
  });
});

describe('rate limiting', () => {
  it('holds a client slightly over the limit to the limit (not starved), with 429 + Retry-After + X-RateLimit-*', async () => {
    const g = await startInProcessGateway(redis.address, { NODE_ENV: 'test', RATE_LIMIT_RPS: '20', RATE_LIMIT_BURST: '5' });
    try {
      const seconds = 5;
      const sendRate = 24; // 1.2 x the limit
      let ok = 0;
      let limited: Reply | undefined;
      let limitedCount = 0;
      const started = Date.now();
      for (let i = 0; i < seconds * sendRate; i++) {
        const due = started + (i * 1000) / sendRate;
        const wait = due - Date.now();
        if (wait > 0) await sleep(wait);
        const r = await call(g.url, 'GET', '/api/v1/queue/status?token=x.AAAAAAAAAAAAAAAAAAAAAA');
        if (r.status === 429) {
          limitedCount++;
          limited ??= r;
        } else {
          ok++;
          expect(r.headers.get('x-ratelimit-limit')).toBe('5');
        }
      }
      const elapsed = (Date.now() - started) / 1000;
      const allowed = 5 + 20 * elapsed;
      expect(ok).toBeLessThanOrEqual(Math.ceil(allowed));
      expect(ok).toBeGreaterThanOrEqual(Math.floor(0.9 * 20 * elapsed)); // held to the limit, not starved
      expect(limitedCount).toBeGreaterThan(0);
      expectError(limited!, 429, 'RATE_LIMITED');
      expect(Number(limited!.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      expect(limited!.headers.get('x-ratelimit-remaining')).toBe('0');
      expect(limited!.headers.get('x-ratelimit-reset')).toMatch(/^\d+$/);
      const m = await call(g.url, 'GET', '/metrics');
      expect(Number(/ratelimit_dropped_total\{scope="client"\} (\d+)/.exec(m.text)?.[1])).toBe(limitedCount);
      // probes are never limited
      expect((await call(g.url, 'GET', '/readyz')).status).toBe(200);
    } finally {
      await g.stop();
    }
  }, 20_000);

  it('X-Forwarded-For is ignored unless TRUST_PROXY, then its first hop is the client', async () => {
    const plain = await startInProcessGateway(redis.address, { NODE_ENV: 'test', RATE_LIMIT_RPS: '0.1', RATE_LIMIT_BURST: '2' });
    const proxied = await startInProcessGateway(redis.address, { NODE_ENV: 'test', RATE_LIMIT_RPS: '0.1', RATE_LIMIT_BURST: '2', TRUST_PROXY: 'true' });
    try {
      const hit = (g: InProcessGateway, xff: string) => call(g.url, 'GET', '/version', undefined, { 'x-forwarded-for': xff });
      for (const xff of ['1.1.1.1', '2.2.2.2', '3.3.3.3']) await hit(plain, xff);
      expect((await hit(plain, '4.4.4.4')).status).toBe(429); // one client (the socket) whatever the header says
      for (let i = 0; i < 2; i++) expect((await hit(proxied, `5.5.5.5, 10.0.0.1`)).status).toBe(200);
      expect((await hit(proxied, '5.5.5.5, 10.0.0.1')).status).toBe(429);
      expect((await hit(proxied, '6.6.6.6')).status).toBe(200); // another client
    } finally {
      await plain.stop();
      await proxied.stop();
    }
  });
});

describe('WebSocket limits', () => {
  it('bad frames close 4400, floods close 4429, too many sockets per address and connection floods get 4104', async () => {
    const g = await startInProcessGateway(redis.address, {
      NODE_ENV: 'test',
      QUEUE_AUTO_CREATE_EVENTS: 'true',
      WS_MAX_PER_IP: '3',
      WS_CONNECT_RPS: '1',
      WS_CONNECT_BURST: '6',
      WS_MESSAGE_RPS: '1',
      WS_MESSAGE_BURST: '3',
      WS_MAX_MESSAGE_BYTES: '256',
    });
    try {
      const join = async () => (await call(g.url, 'POST', '/api/v1/queue/join', { event_id: 'wslim' })).body.waiting_token as string;
      const t = await join();
      const a = await connect(g.url, t);
      await a.next((m) => m.type === 'welcome');
      for (let i = 0; i < 10; i++) a.ws.send('{"type":"ping"}');
      expect((await a.closed).code).toBe(4429);
      expect(a.messages.some((m) => m.type === 'error' && m.code === 'RATE_LIMITED')).toBe(true);
      const big = await connect(g.url, t);
      await big.next((m) => m.type === 'welcome');
      big.ws.send(JSON.stringify({ type: 'ping', pad: 'x'.repeat(1000) }));
      expect([1006, 1009]).toContain((await big.closed).code);
      const bad = await connect(g.url, t);
      await bad.next((m) => m.type === 'welcome');
      bad.ws.send('not json');
      expect((await bad.closed).code).toBe(4400);
      // three open sockets per address at most
      const held = [await connect(g.url, t), await connect(g.url, t), await connect(g.url, t)];
      for (const h of held) await h.next((m) => m.type === 'welcome');
      const fourth = await connect(g.url, t);
      expect((await fourth.closed)).toMatchObject({ code: 4104 });
      for (const h of held) await h.close();
      // connection attempts beyond the connect rate
      const codes: number[] = [];
      for (let i = 0; i < 8; i++) {
        const c = await connect(g.url, t);
        const r = await Promise.race([c.closed, c.next((m) => m.type === 'welcome').then(() => ({ code: 0, reason: '' }))]);
        codes.push(r.code);
        await c.close();
      }
      expect(codes).toContain(4104);
      // the place survived all of it
      expect((await call(g.url, 'GET', `/api/v1/queue/status?token=${t}`)).status).toBe(200);
    } finally {
      await g.stop();
    }
  }, 30_000);
});

describe('logs', () => {
  it('never contain waiting tokens, JWTs, reservation tokens or the admin token, even at debug level', async () => {
    const g = await spawnGateway({
      NODE_ENV: 'test',
      REDIS_ADDRESS: redis.address,
      LOG_LEVEL: 'debug',
      JWT_SECRET: SECRET,
      JWT_ISSUER: ISSUER,
      JWT_AUDIENCE: AUDIENCE,
      ADMIN_TOKEN: ADMIN,
      QUEUE_AUTO_CREATE_EVENTS: 'true',
      QUEUE_DEFAULT_RATE: '100',
      QUEUE_TICK_MS: '50',
    });
    try {
      const jwt = await userJwt('logan');
      const j = await call(g.url, 'POST', '/api/v1/queue/join', { event_id: 'logs' }, bearer(jwt));
      const wt = j.body.waiting_token as string;
      await waitFor('ready', async () => (await call(g.url, 'GET', `/api/v1/queue/status?token=${wt}`)).body.ready_for_entry === true);
      const e = await call(g.url, 'POST', '/api/v1/queue/enter', { waiting_token: wt }, bearer(jwt));
      const rt = e.body.reservation_token as string;
      await call(g.url, 'POST', '/api/v1/reservations', { event_id: 'logs', seat_ids: ['L-1'], quantity: 1, reservation_token: rt }, { ...bearer(jwt), 'idempotency-key': randomUUID() });
      await call(g.url, 'GET', '/api/v1/admin/events/logs/stats', undefined, admin);
      await call(g.url, 'POST', '/api/v1/queue/enter', { waiting_token: wt }, bearer('forged.jwt.value'));
      await sleep(300);
      const logs = g.logs.join('\n');
      expect(logs).toContain('admitted'); // the flow was logged
      for (const secretValue of [wt.split('.')[1]!, jwt.split('.')[2]!, rt.split('.')[2]!, ADMIN, SECRET]) expect(logs).not.toContain(secretValue);
    } finally {
      await g.stop();
    }
  });
});

describe('CORS and headers', () => {
  it('allowed origins get CORS headers (never * with credentials), others none; security headers everywhere', async () => {
    const ok = await call(gw.url, 'GET', '/version', undefined, { origin: 'https://tickets.example' });
    expect(ok.headers.get('access-control-allow-origin')).toBe('https://tickets.example');
    expect(ok.headers.get('access-control-allow-credentials')).toBeNull();
    expect(ok.headers.get('vary')).toBe('Origin');
    const evil = await call(gw.url, 'GET', '/version', undefined, { origin: 'https://evil.example' });
    expect(evil.headers.get('access-control-allow-origin')).toBeNull();
    const pre = await fetch(`${gw.url}/api/v1/queue/join`, { method: 'OPTIONS', headers: { origin: 'https://tickets.example', 'access-control-request-method': 'POST' } });
    expect(pre.status).toBe(204);
    expect(pre.headers.get('access-control-allow-methods')).toContain('POST');
    expect(pre.headers.get('access-control-allow-headers')).toContain('Idempotency-Key');
    for (const h of ['x-content-type-options', 'x-frame-options', 'referrer-policy', 'content-security-policy']) expect(ok.headers.get(h)).toBeTruthy();
    // exact values, each once (fetch joins a repeated header with ", "); a route's own policy replaces the default
    expect(ok.headers.get('cache-control')).toBe('no-store');
    expect(ok.headers.get('x-frame-options')).toBe('DENY');
    expect(ok.headers.get('strict-transport-security')).toBe('max-age=31536000');
    const jwks = await call(gw.url, 'GET', '/.well-known/jwks.json');
    expect(jwks.headers.get('cache-control')).toBe('public, max-age=300');
    const page = await fetch(`${gw.url}/`);
    expect(page.headers.get('content-security-policy')).toBe(PAGE_CSP);
    expect(page.headers.get('x-content-type-options')).toBe('nosniff');
    expect(() => loadConfig({ CORS_ALLOW_ORIGINS: '*,https://a.example' })).toThrow(/CORS_ALLOW_ORIGINS/);
    const huge = await call(gw.url, 'GET', '/version', undefined, { 'x-request-id': 'a'.repeat(9000) });
    expectError(huge, 431, 'HEADER_TOO_LARGE');
  });
});

describe('production mode', () => {
  const prod = {
    NODE_ENV: 'production',
    REDIS_ADDRESS: '127.0.0.1:1',
    JWT_SECRET: SECRET,
    ADMIN_TOKEN: 'a-long-admin-token-0123456789-0123456789',
    ADMISSION_SIGNING_JWK: '{}',
    BACKEND_RESERVATION_API_GRPC_ADDRESS: 'reservation:8011',
    BACKEND_PAYMENT_API_GRPC_ADDRESS: 'payment:8030',
  };
  it('refuses dev conveniences and weak settings, naming the variable', () => {
    expect(() => loadConfig(prod)).not.toThrow();
    const refuse = (env: Record<string, string | undefined>, name: string) => {
      const err = (() => {
        try {
          loadConfig(env as NodeJS.ProcessEnv);
        } catch (e) {
          return e;
        }
        return undefined;
      })();
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as Error).message).toContain(name);
    };
    refuse({ ...prod, DEV_TOKENS_ENABLED: 'true' }, 'DEV_TOKENS_ENABLED');
    refuse({ ...prod, REDIS_ADDRESS: undefined }, 'REDIS_ADDRESS');
    refuse({ ...prod, ADMIN_TOKEN: 'short-but-16-chars' }, 'ADMIN_TOKEN');
    refuse({ ...prod, JWT_SECRET: 'too-short' }, 'JWT_SECRET');
    refuse({ ...prod, JWT_SECRET: undefined }, 'JWT_SECRET');
    refuse({ ...prod, ADMISSION_SIGNING_JWK: undefined }, 'ADMISSION_SIGNING_JWK');
    refuse({ ...prod, JWT_ALGORITHMS: 'none' }, 'JWT_ALGORITHMS');
    refuse({ ...prod, JWT_ALGORITHMS: 'HS256,RS256' }, 'JWT_ALGORITHMS');
    refuse({ ...prod, JWT_SECRET: undefined, JWT_JWKS_ENDPOINT: 'http://idp.example/jwks' }, 'JWT_JWKS_ENDPOINT');
    refuse({ ...prod, BACKEND_PAYMENT_API_GRPC_ADDRESS: undefined }, 'BACKEND_PAYMENT_API_GRPC_ADDRESS');
  });

  it('the process itself exits at start-up with the reason', async () => {
    await expect(spawnGateway({ ...prod, DEV_TOKENS_ENABLED: 'true' })).rejects.toThrow(/DEV_TOKENS_ENABLED/);
  });

  it('the dev token endpoint exists only when enabled (development)', async () => {
    expectError(await call(gw.url, 'POST', '/api/v1/dev/token', {}), 404, 'NOT_FOUND');
    const dev = await startInProcessGateway(redis.address, { NODE_ENV: 'development', DEV_TOKENS_ENABLED: 'true', QUEUE_AUTO_CREATE_EVENTS: 'true' });
    try {
      const t = await call(dev.url, 'POST', '/api/v1/dev/token', { sub: 'pat' });
      expect(t.status).toBe(200);
      expect(t.body).toMatchObject({ token_type: 'Bearer', sub: 'pat', expires_in: 900 });
      // a real JWT: it verifies (an unknown place is then simply not found); a bad one does not
      expectError(await call(dev.url, 'POST', '/api/v1/queue/enter', { waiting_token: 'x.AAAAAAAAAAAAAAAAAAAAAA' }, bearer('not.a.jwt')), 401, 'UNAUTHORIZED');
      expectError(await call(dev.url, 'POST', '/api/v1/queue/enter', { waiting_token: 'x.AAAAAAAAAAAAAAAAAAAAAA' }, bearer(t.body.access_token as string)), 404, 'TOKEN_NOT_FOUND');
    } finally {
      await dev.stop();
    }
  });
});
