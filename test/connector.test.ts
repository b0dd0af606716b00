import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import express from 'express';
import Fastify, { type FastifyInstance } from 'fastify';
import { SignJWT, importJWK, type JWK } from 'jose';
import type { EmbeddedRedis } from '../src/redis/embedded.js';
import { startReservationSim } from '../src/sim/reservation-sim.js';
import { startPaymentSim } from '../src/sim/payment-sim.js';
import type { RunningSim } from '../src/sim/common.js';
import { expressAdmission, fastifyAdmission, verifyAdmission, AdmissionError } from '../src/connector/index.js';
import { call, startInProcessGateway, startRedis, waitFor, type InProcessGateway } from './helpers/harness.js';

// The whole hand-back, as a ticket site deploys it: the gateway in its
// production shape (JWT auth, no development tokens, a signing key of its
// own), an origin that sells one event (Express, and Fastify) protected by the
// connector (src/connector), which verifies the admission token against the
// gateway's published keys and redeems it once. The origin serves its sale
// page only for a valid, unredeemed admission for its event.

const SECRET = 'connector-test-secret-0123456789-0123456789';
const secret = new TextEncoder().encode(SECRET);
const ADMIN = 'connector-admin-token-0123456789-0123456789';
const ORIGIN_KEY = `origin-key-${randomBytes(24).toString('hex')}`;
const userJwt = (sub: string) => new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject(sub).setExpirationTime('10m').sign(secret);
const ed25519Jwk = (kid: string): JWK => ({ ...(generateKeyPairSync('ed25519').privateKey.export({ format: 'jwk' }) as JWK), alg: 'EdDSA', kid });

const signing = ed25519Jwk('gw-key-1');
let redis: EmbeddedRedis;
let rsim: RunningSim;
let psim: RunningSim;
let gw: InProcessGateway;
let origin: Server;
let originUrl: string;
let fastify: FastifyInstance;
let fastifyUrl: string;

beforeAll(async () => {
  redis = await startRedis();
  rsim = await startReservationSim({ host: '127.0.0.1', port: 0 });
  psim = await startPaymentSim({ host: '127.0.0.1', port: 0 });
  // the origins listen first (the gateway only redirects to origins it is told about); their guard learns the gateway's address below
  const guard = { jwksUrl: '', eventId: 'sale', gatewayUrl: '', apiKey: ORIGIN_KEY };
  const app = express();
  app.get('/sale', expressAdmission(guard), (req, res) => {
    res.type('text/plain').send(`sale page for ${(req as unknown as { admission: { subject: string } }).admission.subject}`);
  });
  origin = await new Promise<Server>((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  originUrl = `http://127.0.0.1:${(origin.address() as AddressInfo).port}`;
  fastify = Fastify();
  fastify.get('/sale', { preHandler: fastifyAdmission(guard) }, async (request) => `sale page for ${(request as unknown as { admission: { subject: string } }).admission.subject}`);
  fastifyUrl = await fastify.listen({ port: 0, host: '127.0.0.1' });
  gw = await startInProcessGateway(redis.address, {
    NODE_ENV: 'test',
    JWT_SECRET: SECRET,
    ADMIN_TOKEN: ADMIN,
    ADMISSION_SIGNING_JWK: JSON.stringify(signing),
    ORIGIN_API_KEYS: ORIGIN_KEY,
    PAGE_TARGET_ORIGINS: `${originUrl},${fastifyUrl}`,
    QUEUE_TICK_MS: '50',
    BACKEND_RESERVATION_API_GRPC_ADDRESS: rsim.address,
    BACKEND_PAYMENT_API_GRPC_ADDRESS: psim.address,
  });
  guard.jwksUrl = `${gw.url}/.well-known/jwks.json`;
  guard.gatewayUrl = gw.url;
  const admin = { authorization: `Bearer ${ADMIN}` };
  for (const [id, body] of [
    ['sale', { rate: 100, burst: 100, access: 'user', target_url: `${originUrl}/sale?from=queue` }],
    ['other', { rate: 100, burst: 100, access: 'user' }],
    ['anon', { rate: 100, burst: 100, access: 'anonymous' }],
  ] as const) {
    expect((await call(gw.url, 'PUT', `/api/v1/admin/events/${id}`, body, admin)).status).toBe(201);
  }
});
afterAll(async () => {
  origin?.close();
  await fastify?.close();
  await gw?.stop();
  await rsim?.stop();
  await psim?.stop();
  await redis?.stop();
});

/** join -> ready -> enter, as the page does for a logged-in user; returns the admission token */
async function admit(event: string, sub: string | undefined): Promise<string> {
  const auth: Record<string, string> = sub ? { authorization: `Bearer ${await userJwt(sub)}` } : {};
  const j = await call(gw.url, 'POST', '/api/v1/queue/join', { event_id: event }, auth);
  expect(j.status, j.text).toBe(202);
  const wt = j.body.waiting_token as string;
  await waitFor('ready', async () => (await call(gw.url, 'GET', `/api/v1/queue/status?token=${wt}`)).body.ready_for_entry === true);
  const e = await call(gw.url, 'POST', '/api/v1/queue/enter', { waiting_token: wt }, auth);
  expect(e.status, e.text).toBe(200);
  return e.body.reservation_token as string;
}

describe('the origin takes admitted users back', () => {
  it('the event tells the page where to send admitted users; the admin API refuses any other origin (no open redirect)', async () => {
    const ev = await call(gw.url, 'GET', '/api/v1/events/sale');
    expect(ev.body).toEqual({ event_id: 'sale', state: 'open', access: 'user', message: null, target_url: `${originUrl}/sale?from=queue` });
    const bad = await call(gw.url, 'PUT', '/api/v1/admin/events/sale', { target_url: 'https://evil.example/steal' }, { authorization: `Bearer ${ADMIN}` });
    expect(bad.status).toBe(400);
    expect((bad.body.error as { reason?: string }).reason).toBe('target_origin');
    expect((await call(gw.url, 'GET', '/api/v1/events/sale')).body.target_url).toBe(`${originUrl}/sale?from=queue`);
  });

  it('Express: the sale page for a valid, unredeemed admission for its event; refused when forged, expired, replayed or for another event', async () => {
    const token = await admit('sale', 'ana');
    const first = await fetch(`${originUrl}/sale?admission_token=${token}`);
    expect(first.status).toBe(200);
    expect(await first.text()).toBe('sale page for ana');
    // the same link again (shared, replayed): single use
    const replay = await fetch(`${originUrl}/sale?admission_token=${token}`);
    expect(replay.status).toBe(403);
    expect(((await replay.json()) as { error: { reason: string } }).error.reason).toBe('already_redeemed');
    // forged: signed by a key the gateway never published
    const forger = await importJWK(ed25519Jwk('gw-key-1'), 'EdDSA');
    const forged = await new SignJWT({ evt: 'sale', wt: 'sale.x' })
      .setProtectedHeader({ alg: 'EdDSA', kid: 'gw-key-1' })
      .setIssuer('waiting-room-gateway')
      .setAudience('reservation')
      .setSubject('mallory')
      .setJti('forged-1')
      .setIssuedAt()
      .setExpirationTime('5m')
      .sign(forger);
    const f = await fetch(`${originUrl}/sale?admission_token=${forged}`);
    expect(f.status).toBe(403);
    expect(((await f.json()) as { error: { reason: string } }).error.reason).toBe('invalid');
    // expired: signed with the gateway's own key, but past its expiry
    const real = await importJWK(signing, 'EdDSA');
    const expired = await new SignJWT({ evt: 'sale', wt: 'sale.y' })
      .setProtectedHeader({ alg: 'EdDSA', kid: 'gw-key-1' })
      .setIssuer('waiting-room-gateway')
      .setAudience('reservation')
      .setSubject('bob')
      .setJti('expired-1')
      .setIssuedAt(Math.floor(Date.now() / 1000) - 600)
      .setExpirationTime(Math.floor(Date.now() / 1000) - 300)
      .sign(real);
    const x = await fetch(`${originUrl}/sale?admission_token=${expired}`);
    expect(x.status).toBe(403);
    expect(((await x.json()) as { error: { reason: string } }).error.reason).toBe('expired');
    // another event's admission
    const otherEvent = await admit('other', 'cid');
    const o = await fetch(`${originUrl}/sale?admission_token=${otherEvent}`);
    expect(o.status).toBe(403);
    expect(((await o.json()) as { error: { reason: string } }).error.reason).toBe('wrong_event');
    // no token at all
    expect((await fetch(`${originUrl}/sale`)).status).toBe(403);
  });

  it('Fastify: the same, and an admission redeemed at the origin cannot also buy a reservation through the gateway', async () => {
    const token = await admit('sale', 'dan');
    const r = await fetch(`${fastifyUrl}/sale?admission_token=${token}`);
    expect(r.status).toBe(200);
    expect(await r.text()).toBe('sale page for dan');
    expect((await fetch(`${fastifyUrl}/sale?admission_token=${token}`)).status).toBe(403);
    const reserve = await call(
      gw.url,
      'POST',
      '/api/v1/reservations',
      { event_id: 'sale', seat_ids: ['A-1'], quantity: 1, reservation_token: token },
      { authorization: `Bearer ${await userJwt('dan')}`, 'idempotency-key': randomBytes(12).toString('hex') },
    );
    expect(reserve.status).toBe(403);
    expect((reserve.body.error as { reason?: string }).reason).toBe('used');
  });

  it('the redeem endpoint needs an origin key; verifyAdmission works offline against the published keys', async () => {
    const token = await admit('sale', 'eve');
    expect((await call(gw.url, 'POST', '/api/v1/admissions/redeem', { admission_token: token })).status).toBe(401);
    expect((await call(gw.url, 'POST', '/api/v1/admissions/redeem', { admission_token: token }, { authorization: 'Bearer not-the-key-0123456789-0123456789' })).status).toBe(401);
    const claims = await verifyAdmission(token, { jwksUrl: `${gw.url}/.well-known/jwks.json`, eventId: 'sale' });
    expect(claims).toMatchObject({ eventId: 'sale', subject: 'eve' });
    await expect(verifyAdmission(token, { jwksUrl: `${gw.url}/.well-known/jwks.json`, eventId: 'other' })).rejects.toBeInstanceOf(AdmissionError);
    const ok = await call(gw.url, 'POST', '/api/v1/admissions/redeem', { admission_token: token, event_id: 'sale' }, { authorization: `Bearer ${ORIGIN_KEY}` });
    expect(ok.status).toBe(200);
    expect(ok.body).toMatchObject({ event_id: 'sale', subject: 'eve', jti: claims.jti });
    const again = await call(gw.url, 'POST', '/api/v1/admissions/redeem', { admission_token: token, event_id: 'sale' }, { authorization: `Bearer ${ORIGIN_KEY}` });
    expect(again.status).toBe(409);
    expect((again.body.error as { code: string }).code).toBe('ALREADY_REDEEMED');
  });
});

describe('access per event', () => {
  it('anonymous: the waiting token alone enters (no JWT, with user authentication configured) and the admission names the place', async () => {
    const j = await call(gw.url, 'POST', '/api/v1/queue/join', { event_id: 'anon' });
    const wt = j.body.waiting_token as string;
    await waitFor('ready', async () => (await call(gw.url, 'GET', `/api/v1/queue/status?token=${wt}`)).body.ready_for_entry === true);
    const e = await call(gw.url, 'POST', '/api/v1/queue/enter', { waiting_token: wt });
    expect(e.status, e.text).toBe(200);
    const claims = JSON.parse(Buffer.from((e.body.reservation_token as string).split('.')[1]!, 'base64url').toString()) as { sub: string; evt: string };
    expect(claims).toMatchObject({ sub: wt, evt: 'anon' });
  });

  it('user: entering needs a verified user (401 without a JWT), and the place becomes theirs', async () => {
    const j = await call(gw.url, 'POST', '/api/v1/queue/join', { event_id: 'other' });
    const wt = j.body.waiting_token as string;
    await waitFor('ready', async () => (await call(gw.url, 'GET', `/api/v1/queue/status?token=${wt}`)).body.ready_for_entry === true);
    const noJwt = await call(gw.url, 'POST', '/api/v1/queue/enter', { waiting_token: wt });
    expect(noJwt.status).toBe(401);
    expect((noJwt.body.error as { reason?: string }).reason).toBe('missing');
    const e = await call(gw.url, 'POST', '/api/v1/queue/enter', { waiting_token: wt }, { authorization: `Bearer ${await userJwt('fay')}` });
    expect(e.status).toBe(200);
    expect(JSON.parse(Buffer.from((e.body.reservation_token as string).split('.')[1]!, 'base64url').toString()).sub).toBe('fay');
  });
});
