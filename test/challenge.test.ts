import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { EmbeddedRedis } from '../src/redis/embedded.js';
import { ChallengeIssuer, leadingZeroBits } from '../src/auth/challenge.js';
import { call, startInProcessGateway, startRedis, type InProcessGateway } from './helpers/harness.js';

// The join challenge over HTTP: a join without a solved challenge, with a
// reused solution, a solution for another event, an expired, forged or too
// easy one, or a token the external verifier refuses, gets a clear 4xx and
// never a place; a good proof gets exactly one place. The external verifier
// is a real HTTP server here; when it does not answer, joins get 503.

const ADMIN = 'challenge-admin-token-0123456789';
const admin = { authorization: `Bearer ${ADMIN}` };
const SECRET = 'challenge-secret-for-tests-0123456789abcdef';

let redis: EmbeddedRedis;
let gw: InProcessGateway;
let verifier: Server;
let verifierUp = true;
const verified: string[] = [];

beforeAll(async () => {
  redis = await startRedis();
  verifier = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      if (!verifierUp) {
        res.writeHead(503).end();
        return;
      }
      const { token, event_id } = JSON.parse(body) as { token: string; event_id: string };
      verified.push(`${event_id}:${token}`);
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ success: token.startsWith('good') }));
    });
  });
  await new Promise<void>((r) => verifier.listen(0, '127.0.0.1', r));
  gw = await startInProcessGateway(redis.address, {
    ADMIN_TOKEN: ADMIN,
    CHALLENGE_SECRET: SECRET,
    CHALLENGE_VERIFY_URL: `http://127.0.0.1:${(verifier.address() as AddressInfo).port}/verify`,
    QUEUE_TICK_MS: '100',
  });
  for (const [id, challenge] of [
    ['pow-a', { kind: 'pow', difficulty: 10 }],
    ['pow-b', { kind: 'pow', difficulty: 10 }],
    ['ext', { kind: 'external' }],
  ] as const) {
    const r = await call(gw.url, 'PUT', `/api/v1/admin/events/${id}`, { rate: 1, access: 'anonymous', challenge }, admin);
    expect(r.status, r.text).toBe(201);
    expect(r.body.challenge).toEqual(challenge);
  }
});
afterAll(async () => {
  try {
    await gw?.stop();
  } finally {
    verifier?.close();
    await redis?.stop();
  }
});

function solve(challenge: string, difficulty: number): string {
  for (let i = 0; ; i++) {
    if (leadingZeroBits(createHash('sha256').update(`${challenge}:${i}`).digest()) >= difficulty) return String(i);
  }
}

const getChallenge = async (ev: string) => {
  const r = await call<{ kind: string; challenge: string; difficulty: number; expires_at: string; algorithm: string }>(gw.url, 'GET', `/api/v1/queue/challenge?event=${ev}`);
  expect(r.status).toBe(200);
  return r.body;
};
const join = (ev: string, proof?: unknown) => call(gw.url, 'POST', '/api/v1/queue/join', { event_id: ev, ...(proof ? { proof } : {}) });

describe('join challenge: proof of work', () => {
  it('no proof: 428 CHALLENGE_REQUIRED; a solved one: one place; the same again: 403 used', async () => {
    const none = await join('pow-a');
    expect(none.status).toBe(428);
    expect(none.body).toMatchObject({ error: { code: 'CHALLENGE_REQUIRED', kind: 'pow' } });
    const c = await getChallenge('pow-a');
    expect(c).toMatchObject({ kind: 'pow', difficulty: 10, algorithm: 'sha256-leading-zero-bits' });
    const solution = solve(c.challenge, c.difficulty);
    const ok = await join('pow-a', { challenge: c.challenge, solution });
    expect(ok.status, ok.text).toBe(202);
    const again = await join('pow-a', { challenge: c.challenge, solution });
    expect(again.status).toBe(403);
    expect(again.body).toMatchObject({ error: { code: 'CHALLENGE_FAILED', reason: 'used' } });
    const stats = await call(gw.url, 'GET', '/api/v1/admin/events/pow-a/stats', undefined, admin);
    expect(stats.body.joined_total).toBe(1);
  });

  it('a solution for another event, a wrong or unsolved one, a forged or expired challenge: 403 with the reason, never a place', async () => {
    const b = await getChallenge('pow-b');
    const forB = solve(b.challenge, b.difficulty);
    expect((await join('pow-a', { challenge: b.challenge, solution: forB })).body).toMatchObject({ error: { code: 'CHALLENGE_FAILED', reason: 'wrong_event' } });
    const a = await getChallenge('pow-a');
    // a solution that does not reach the difficulty
    let wrong = 0;
    while (leadingZeroBits(createHash('sha256').update(`${a.challenge}:${wrong}`).digest()) >= a.difficulty) wrong++;
    expect((await join('pow-a', { challenge: a.challenge, solution: String(wrong) })).body).toMatchObject({ error: { reason: 'insufficient' } });
    // forged: another difficulty in the text, the MAC no longer matches
    const forged = a.challenge.replace('.10.', '.1.');
    expect((await join('pow-a', { challenge: forged, solution: '0' })).body).toMatchObject({ error: { reason: 'invalid' } });
    expect((await join('pow-a', { challenge: 'v1.pow-a.x', solution: '0' })).body).toMatchObject({ error: { reason: 'invalid' } });
    // expired: issued with the gateway's key, a validity already over
    const old = new ChallengeIssuer(SECRET, 1000, undefined).issue('pow-a', 10, Date.now() - 5000);
    expect((await join('pow-a', { challenge: old.challenge, solution: solve(old.challenge, 10) })).body).toMatchObject({ error: { reason: 'expired' } });
    // a challenge issued under an easier difficulty than the event's now
    const easy = new ChallengeIssuer(SECRET, 60_000, undefined).issue('pow-a', 2);
    expect((await join('pow-a', { challenge: easy.challenge, solution: solve(easy.challenge, 2) })).body).toMatchObject({ error: { reason: 'insufficient' } });
    // the proof must be well formed
    expect((await join('pow-a', { challenge: a.challenge, solution: 'x1' })).status).toBe(400);
    const stats = await call(gw.url, 'GET', '/api/v1/admin/events/pow-b/stats', undefined, admin);
    expect(stats.body.joined_total).toBe(0);
    const metrics = await fetch(`${gw.url}/metrics`).then((r) => r.text());
    for (const reason of ['wrong_event', 'insufficient', 'invalid', 'expired', 'used', 'missing', 'accepted', 'issued']) expect(metrics).toMatch(new RegExp(`queue_challenges_total\\{result="${reason}"\\} [1-9]`));
  });
});

describe('join challenge: external verifier', () => {
  it('a token the verifier accepts: one place, once; one it refuses: 403 rejected; no token: 428; verifier down: 503 with Retry-After', async () => {
    expect((await join('ext')).status).toBe(428);
    const ok = await join('ext', { token: 'good-1' });
    expect(ok.status, ok.text).toBe(202);
    expect(verified).toContain('ext:good-1');
    expect((await join('ext', { token: 'good-1' })).body).toMatchObject({ error: { code: 'CHALLENGE_FAILED', reason: 'used' } });
    expect((await join('ext', { token: 'bad-1' })).body).toMatchObject({ error: { code: 'CHALLENGE_FAILED', reason: 'rejected' } });
    verifierUp = false;
    const down = await join('ext', { token: 'good-2' });
    expect(down.status).toBe(503);
    expect(down.body).toMatchObject({ error: { code: 'SERVICE_UNAVAILABLE', reason: 'verifier_unavailable' } });
    expect(down.headers.get('retry-after')).toBe('2');
    verifierUp = true;
  });

  it('the admin API refuses an external challenge without CHALLENGE_VERIFY_URL, and a bad policy', async () => {
    const bad = await call(gw.url, 'PUT', '/api/v1/admin/events/x1', { challenge: { kind: 'pow', difficulty: 99 } }, admin);
    expect(bad.status).toBe(400);
    const none = await call(gw.url, 'GET', '/api/v1/queue/challenge?event=nope');
    expect(none.status).toBe(404);
    await call(gw.url, 'PUT', '/api/v1/admin/events/plain', { rate: 1, access: 'anonymous' }, admin);
    expect((await call(gw.url, 'GET', '/api/v1/queue/challenge?event=plain')).body).toEqual({ event_id: 'plain', kind: 'none' });
  });
});
