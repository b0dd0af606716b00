import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import { createHmac } from 'node:crypto';
import WebSocket from 'ws';
import { pack, unpack } from 'msgpackr';
import type { Redis } from 'ioredis';
import type { EmbeddedRedis } from '../src/redis/embedded.js';
import { eventKeys, registryKey } from '../src/redis/keys.js';
import { errorStatus } from '../src/errors.js';
import { Close } from '../src/protocol/wire.js';
import { redisClient, sleep, startInProcessGateway, startRedis, type InProcessGateway } from './helpers/harness.js';

// Fuzzing the whole gateway from the outside, against a real gateway
// (uWebSockets.js, in-process) on a real redis-server:
//   1. thousands of random and mutated HTTP requests (fetch), mixed with valid
//      traffic that moves the line (joins, polls, enters of ready users, leaves,
//      admin changes, reservations); every response checked against the contract;
//      atomic snapshots of the queue's invariants in Redis while it runs;
//   2. a few hundred raw HTTP/1.1 exchanges (malformed framing, pipelining, HEAD);
//   3. thousands of random and mutated WebSocket frames on /api/v1/queue/ws;
//   4. afterwards: the gateway still serves, and the line's invariants hold in
//      Redis for every event the storm touched.
// Everything is bounded by count and time, loopback only, and stops by itself.
//
// Reproducible: every request/session is generated from its own PRNG seeded by
// (FUZZ_SEED, index). FUZZ_SEED=<n> replays a run's inputs (the interleaving of
// concurrent requests differs); every failure message carries the seed and the
// literal request (curl form) that triggered it.

const SEED = (() => {
  const s = process.env.FUZZ_SEED;
  if (s !== undefined && s !== '') return Number(s) >>> 0;
  return (Date.now() ^ (process.pid << 16)) >>> 0;
})();
const HTTP_MAX_REQUESTS = Number(process.env.FUZZ_HTTP_REQUESTS ?? 5000);
const HTTP_BUDGET_MS = 18_000;
const HTTP_WORKERS = 24;
/** longer than REDIS_COMMAND_TIMEOUT_MS (2 s): a slow Redis answers 503 before this; no answer by then is a hang */
const REQ_TIMEOUT_MS = 5_000;
const RAW_REQUESTS = 240;
const WS_MAX_SESSIONS = Number(process.env.FUZZ_WS_SESSIONS ?? 1600);
const WS_BUDGET_MS = 12_000;
const WS_WORKERS = 24;

const ADMIN = 'fuzz-admin-token-0123456789abcdef';
const SECRET = 'fuzz-jwt-secret-0123456789abcdef-0123456789';
const MAX_BODY = 2048;
const MAIN_EVENTS = ['fz-a', 'fz-b', 'fz-c'] as const;
const WS_EVENT = 'fz-ws';
/** event ids the fuzzer may create, change, close (never the main ones: valid traffic keeps expectations there) */
const FUZZ_EVENTS = ['fz-x', 'fz-y', 'fz-z', 'fz-closed', 'ev_1', 'A-b_C'];
const ORIGIN_OK = 'https://shop.example';

// ---------------------------------------------------------------------------
// seeded PRNG

class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  next(): number {
    // mulberry32
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  range(a: number, b: number): number {
    return a + this.int(b - a + 1);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(a: readonly T[]): T {
    return a[this.int(a.length)]!;
  }
  weighted<T>(items: ReadonlyArray<readonly [number, T]>): T {
    let total = 0;
    for (const [w] of items) total += w;
    let x = this.next() * total;
    for (const [w, v] of items) if ((x -= w) < 0) return v;
    return items[items.length - 1]![1];
  }
  bytes(n: number): Buffer {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
  str(n: number, alphabet: string): string {
    let s = '';
    for (let i = 0; i < n; i++) s += alphabet[this.int(alphabet.length)];
    return s;
  }
}

const mix = (seed: number, i: number): number => {
  let h = (seed ^ Math.imul(i + 1, 0x9e3779b1)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0;
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
};

const TOKEN_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-';
const PRINTABLE = ' !"#$%&\'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~';
const UNICODE = ['é', 'ß', '中文', '🎟️', '\u202e', '\u200b', '\ufeff', 'Ω', 'e\u0301', '\ud800', '\u0000', 'ﬀ', '𝔘'];
const MALFORMED_PERCENT = ['%', '%Z', '%ZZ', '%E0%A4', '%C0%AF', '%%', 'a%2', '%ED%A0%80', '%FF'];

// ---------------------------------------------------------------------------
// JWTs (HS256 with the configured secret, plus every way to get one wrong)

const b64u = (s: string | Buffer): string => Buffer.from(s).toString('base64url');
function signJwt(header: string, payload: string, secret = SECRET, hash = 'sha256'): string {
  const h = b64u(header);
  const p = b64u(payload);
  return `${h}.${p}.${createHmac(hash, secret).update(`${h}.${p}`).digest('base64url')}`;
}
const nowSec = (): number => Math.floor(Date.now() / 1000);
const HS256 = '{"alg":"HS256","typ":"JWT"}';
const SUBS: string[] = [...Array.from({ length: 44 }, (_, i) => `user-${i}`), 'a{b}', 'user:1', '*', 'x'.repeat(128), '~!@#$%^&*()', 'u-ws'];
const jwtCache = new Map<string, string>();
const subOfJwt = new Map<string, string>();
function jwtOf(sub: string): string {
  let t = jwtCache.get(sub);
  if (!t) {
    t = signJwt(HS256, JSON.stringify({ sub, iat: nowSec(), exp: nowSec() + 3600 }));
    jwtCache.set(sub, t);
    subOfJwt.set(t, sub);
  }
  return t;
}

/**
 * Who a request that succeeded was authenticated as: anonymous (no header), one
 * of our users (exactly one of our JWTs), or unknown (some other token the
 * gateway accepted, e.g. a valid signature over odd claims). fetch trims header values.
 */
function whoSent(headers: Record<string, string>): { sub: string | undefined; known: boolean } {
  const h = (headers.authorization ?? '').trim();
  if (h === '') return { sub: undefined, known: true };
  const m = /^Bearer (.*)$/.exec(h);
  const sub = m ? subOfJwt.get(m[1]!) : undefined;
  return sub ? { sub, known: true } : { sub: undefined, known: false };
}

function badJwt(r: Rng): string {
  const sub = r.pick(SUBS);
  const exp = nowSec() + 600;
  const good = jwtOf(sub);
  switch (r.int(22)) {
    case 0:
      return `${b64u('{"alg":"none","typ":"JWT"}')}.${b64u(JSON.stringify({ sub, exp }))}.`;
    case 1:
      return `${b64u('{"alg":"none"}')}.${b64u(JSON.stringify({ sub, exp }))}.${good.split('.')[2]}`;
    case 2:
      return signJwt('{"alg":"HS512","typ":"JWT"}', JSON.stringify({ sub, exp }), SECRET, 'sha512');
    case 3:
      return signJwt('{"alg":"RS256","typ":"JWT"}', JSON.stringify({ sub, exp }));
    case 4:
      return signJwt(HS256, JSON.stringify({ sub, exp }), 'not-the-secret-not-the-secret-00000');
    case 5:
      return signJwt(HS256, JSON.stringify({ sub, exp: nowSec() - 3600 }));
    case 6:
      return signJwt(HS256, JSON.stringify({ sub, exp, nbf: nowSec() + 3600 }));
    case 7:
      return signJwt(HS256, JSON.stringify({ sub }));
    case 8:
      return signJwt(HS256, JSON.stringify({ exp }));
    case 9:
      return signJwt(HS256, JSON.stringify({ sub: r.pick([123, '', 'a b', 'x'.repeat(129), 'é', null, ['u'], { a: 1 }]), exp }));
    case 10:
      // valid signature over odd JSON: huge/odd numbers, duplicated keys, non-object payloads
      return signJwt(HS256, r.pick([`{"sub":"${sub}","exp":1e309}`, `{"sub":"${sub}","exp":"tomorrow"}`, `{"sub":"user-1","sub":"user-2","exp":${exp}}`, '[]', 'null', '"x"', `{"sub":"${sub}","exp":${exp},"__proto__":{"sub":"admin"}}`, '{bad json']));
    case 11:
      return signJwt(r.pick(['{"alg":"HS256","crit":["exp"],"exp":1}', '{"alg":"HS256","b64":false,"crit":["b64"]}', 'not json', '[]', '{"alg":["HS256"]}', '{"alg":"HS256","kid":{"x":1}}', '{"alg":"HS256","jku":"http://127.0.0.1:1/"}']), JSON.stringify({ sub, exp }));
    case 12: {
      // one character changed anywhere
      const i = r.int(good.length);
      return good.slice(0, i) + r.pick([...TOKEN_CHARS]) + good.slice(i + 1);
    }
    case 13:
      return good.slice(0, r.int(good.length));
    case 14:
      return `${good}.${r.str(r.range(0, 10), TOKEN_CHARS)}`;
    case 15:
      return good.split('.').slice(0, 2).join('.');
    case 16:
      return r.pick(['..', '.', 'a.b.c', 'a.b.', '...', '=.=.=', 'a+b/c.d.e', `${good}==`]);
    case 17:
      return `${good.split('.')[0]}.${r.str(r.range(9000, 9500), TOKEN_CHARS)}.${good.split('.')[2]}`;
    case 18:
      return r.str(r.range(1, 300), PRINTABLE);
    case 19:
      return `${good.split('.')[0]}.${b64u(r.bytes(r.range(1, 64)))}.${good.split('.')[2]}`;
    case 20:
      return ADMIN;
    default:
      return good.replace(/\./g, r.pick(['', '..', ' ', '%2E']));
  }
}

function authHeader(r: Rng): string {
  return r.weighted<() => string>([
    [4, () => `Bearer ${jwtOf(r.pick(SUBS))}`],
    [8, () => `Bearer ${badJwt(r)}`],
    [2, () => `Bearer ${ADMIN}`],
    [2, () => `Bearer ${ADMIN.slice(0, r.int(ADMIN.length))}${r.str(r.range(0, 3), TOKEN_CHARS)}`],
    [1, () => `bearer ${jwtOf(r.pick(SUBS))}`],
    [1, () => `Bearer  ${jwtOf(r.pick(SUBS))}`],
    [1, () => `Bearer ${jwtOf(r.pick(SUBS))} `],
    [1, () => `Basic ${b64u('admin:admin')}`],
    [1, () => r.pick(['Bearer', 'Bearer ', '', ' ', 'Token abc', jwtOf('user-1')])],
    [1, () => `Bearer ${r.str(r.range(500, 600), '\x21\x7e' + TOKEN_CHARS)}`],
    [1, () => `Bearer ${'A'.repeat(r.range(8000, 12000))}`],
  ])();
}

/** The payload of a JWT we were given (no verification: the gateway signed it; this is bookkeeping). */
function jwtPayload(t: string): Record<string, unknown> | undefined {
  try {
    return JSON.parse(Buffer.from(t.split('.')[1] ?? '', 'base64url').toString('utf8')) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------
// violations: grouped by category, first few examples each, all carrying the seed

class Violations {
  readonly byKind = new Map<string, { count: number; examples: string[] }>();
  add(kind: string, detail: string): void {
    let v = this.byKind.get(kind);
    if (!v) this.byKind.set(kind, (v = { count: 0, examples: [] }));
    v.count++;
    if (v.examples.length < 4) v.examples.push(detail.length > 1500 ? `${detail.slice(0, 1500)}…` : detail);
  }
  get total(): number {
    let n = 0;
    for (const v of this.byKind.values()) n += v.count;
    return n;
  }
  report(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [k, v] of this.byKind) out[k] = `${v.count}x (seed ${SEED}); e.g.\n  ${v.examples.join('\n  ')}`;
    return out;
  }
}

const inc = (m: Map<string, number>, k: string | number, n = 1): void => {
  m.set(String(k), (m.get(String(k)) ?? 0) + n);
};
const sorted = (m: Map<string, number>): Record<string, number> => Object.fromEntries([...m].sort(([a], [b]) => a.localeCompare(b)));
const clip = (s: string, n: number): string => (s.length > n ? `${s.slice(0, n)}…(${s.length} chars)` : s);

// ---------------------------------------------------------------------------
// shared state

let redis: EmbeddedRedis;
let gw: InProcessGateway;
let rc: Redis;
let prefix = '';
let currentPhase: Violations = new Violations();
const uncaught: unknown[] = [];
const onUncaught = (err: unknown): void => {
  uncaught.push(err);
  currentPhase.add('uncaught exception in the gateway process', (err as Error)?.stack?.split('\n').slice(0, 4).join(' | ') ?? String(err));
};

const httpCounts = new Map<string, number>();
const rawCounts = new Map<string, number>();
const wsCloseCounts = new Map<string, number>();
const wsClientErrors = new Map<string, number>();
const wsFrameKinds = new Map<string, number>();
const wsServerTypes = new Map<string, number>();
const summary: Record<string, unknown> = { seed: SEED };

interface Place {
  token: string;
  event: string;
  /** the JWT subject the place is bound to; undefined = anonymous or unknown */
  sub: string | undefined;
  subKnown: boolean;
  state: 'waiting' | 'ready' | 'admitted' | 'gone';
}
const places: Place[] = [];
const byToken = new Map<string, Place>();
const readyTokens = new Set<string>();
const reservationTokens: { rt: string; event: string; sub: string }[] = [];
const usedIdemKeys: string[] = [];
/** waiting token -> distinct admission jti seen (HTTP enter 200s and WebSocket admitted messages) */
const admissions = new Map<string, Set<string>>();
/** reservation_token jti -> number of (non-replayed) 201s */
const reservationsByJti = new Map<string, number>();

function remember(token: string, sub: string | undefined, subKnown: boolean): Place | undefined {
  if (typeof token !== 'string' || !/^[A-Za-z0-9_-]{1,64}\.[A-Za-z0-9_-]{22}$/.test(token)) return undefined;
  let p = byToken.get(token);
  if (!p) {
    p = { token, event: token.split('.')[0]!, sub, subKnown, state: 'waiting' };
    byToken.set(token, p);
    places.push(p);
  }
  return p;
}

function recordAdmission(v: Violations, rt: unknown, where: string): void {
  if (typeof rt !== 'string') return;
  const p = jwtPayload(rt);
  if (!p || typeof p.wt !== 'string' || typeof p.jti !== 'string') {
    v.add('admission token without wt/jti', `${where}: ${clip(rt, 200)}`);
    return;
  }
  let s = admissions.get(p.wt);
  if (!s) admissions.set(p.wt, (s = new Set()));
  s.add(p.jti);
  if (s.size > 1) v.add('one waiting token admitted twice (two distinct reservation tokens)', `${where}: wt=${p.wt} jtis=${[...s].join(',')}`);
  const place = byToken.get(p.wt);
  if (place) {
    place.state = 'admitted';
    // entering binds an anonymous place to the user who entered it
    if (typeof p.sub === 'string' && p.sub !== p.wt) {
      place.sub = p.sub;
      place.subKnown = true;
    }
  }
  readyTokens.delete(p.wt);
}

// ---------------------------------------------------------------------------
// HTTP request generation

interface FuzzReq {
  n: number;
  kind: 'valid' | 'mutated' | 'random';
  op: string;
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: Buffer;
  /** subject of the valid user JWT attached, if any */
  sub?: string;
  /** semantic expectation for an unmutated valid request */
  strict?: 'join-anon' | 'join-jwt' | 'status' | 'enter' | 'leave' | 'health';
  place?: Place;
  /** what the model knew about the place's owner when the request was generated (concurrent requests may bind it meanwhile) */
  placeOwner?: 'bound' | 'anonymous' | 'unknown';
}

const METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD'];
const ROUTES = [
  '/api/v1/queue/join',
  '/api/v1/queue/status',
  '/api/v1/queue/enter',
  '/api/v1/queue/leave',
  '/api/v1/queue/ws',
  '/api/v1/admin/events/:id',
  '/api/v1/admin/events/:id/stats',
  '/api/v1/reservations',
  '/api/v1/reservations/:id',
  '/api/v1/dev/token',
  '/.well-known/jwks.json',
  '/healthz',
  '/readyz',
  '/version',
  '/metrics',
  '/',
  '/api',
  '/api/v1',
  '/api/v1/queue',
  '/api/v1/admin/events',
  '/admin',
  '/page-config.json',
];
const CONTENT_TYPES = [
  'application/json',
  'application/json; charset=utf-8',
  'application/problem+json',
  'APPLICATION/JSON',
  'application/jsonx',
  'application/json-seq',
  'text/plain',
  'text/json',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=xyz',
  'application/octet-stream',
  'application/msgpack',
  '*/*',
  ';',
  'application/',
  'application/json, text/plain',
];

const json = (v: unknown): Buffer => Buffer.from(JSON.stringify(v));

function newIdemKey(r: Rng): string {
  const k = r.str(r.range(8, 40), TOKEN_CHARS);
  usedIdemKeys.push(k);
  if (usedIdemKeys.length > 200) usedIdemKeys.shift();
  return k;
}

function seg(r: Rng): string {
  return r.weighted<() => string>([
    [6, () => r.pick(FUZZ_EVENTS)],
    [3, () => r.str(r.range(1, 64), TOKEN_CHARS)],
    [2, () => r.str(r.range(65, 300), TOKEN_CHARS)],
    [2, () => encodeURIComponent(r.pick(UNICODE.filter((u) => u !== '\ud800')) + r.str(r.range(0, 5), TOKEN_CHARS))],
    [2, () => r.pick(UNICODE) + r.str(r.range(0, 5), TOKEN_CHARS)],
    [1, () => r.pick(MALFORMED_PERCENT) + r.str(r.range(0, 4), TOKEN_CHARS)],
    [2, () => r.pick(['', '.', '..', '...', '%2F', '%2e%2e', '%00', '%20', '+', ':id', '*', '~', 'null', 'undefined', '__proto__', 'constructor'])],
    [1, () => 'z'.repeat(r.range(2000, 9000))],
    [2, () => r.str(r.range(1, 30), PRINTABLE.replace(/[?#]/g, ''))],
    [2, () => `${r.str(r.range(1, 20), TOKEN_CHARS)}-${r.int(1000)}`],
  ])();
}

function mutatePath(r: Rng, p: string): string {
  return r.weighted<() => string>([
    [3, () => `${p}/`],
    [2, () => `/${p}`],
    [2, () => p.replace('/', '//')],
    [2, () => p.toUpperCase()],
    [2, () => {
      const i = r.int(p.length);
      return `${p.slice(0, i)}%${p.charCodeAt(i).toString(16).padStart(2, '0')}${p.slice(i + 1)}`;
    }],
    [1, () => `${p}${r.pick(MALFORMED_PERCENT)}`],
    [2, () => {
      const i = r.int(p.length);
      return p.slice(0, i) + r.pick(UNICODE) + p.slice(i);
    }],
    [2, () => p.slice(0, r.int(p.length + 1))],
    [2, () => `${p}/${seg(r)}`],
    [2, () => {
      const parts = p.split('/');
      parts[r.int(parts.length)] = seg(r);
      return parts.join('/');
    }],
    [1, () => `${p}/${'long'.repeat(r.range(500, 2500))}`],
    [1, () => `${p}/../${r.pick(ROUTES).slice(1)}`],
    [1, () => `${p};jsessionid=1`],
  ])();
}

function tokenVariant(r: Rng): string {
  const p = places.length ? r.pick(places) : undefined;
  const t = p?.token ?? `${r.pick(MAIN_EVENTS)}.${r.str(22, TOKEN_CHARS)}`;
  return r.weighted<() => string>([
    [4, () => t],
    [2, () => t.slice(0, r.int(t.length))],
    [3, () => {
      const i = r.int(t.length);
      return t.slice(0, i) + r.pick([...TOKEN_CHARS, '.', '%', ' ', 'é']) + t.slice(i + 1);
    }],
    [2, () => `${r.pick([...MAIN_EVENTS, ...FUZZ_EVENTS])}.${r.str(22, TOKEN_CHARS)}`],
    [1, () => `${r.pick(MAIN_EVENTS)}.${t.split('.')[1] ?? ''}`],
    [1, () => `${t}${t}`],
    [1, () => `${r.str(r.range(65, 80), TOKEN_CHARS)}.${r.str(22, TOKEN_CHARS)}`],
    [1, () => 'A'.repeat(r.range(3000, 12000))],
    [1, () => r.pick(UNICODE) + t],
    [1, () => r.pick(['', ' ', '.', '..', 'null', 'undefined', '[object Object]', '%00', '\u0000'])],
  ])();
}

function encodeQueryValue(r: Rng, v: string): string {
  return r.weighted<() => string>([
    [6, () => encodeURIComponent(v.replace(/[\ud800-\udfff]/g, 'x'))],
    [2, () => v],
    [1, () => `${encodeURIComponent(v.replace(/[\ud800-\udfff]/g, 'x'))}${r.pick(MALFORMED_PERCENT)}`],
  ])();
}

function query(r: Rng): string {
  return r.weighted<() => string>([
    [6, () => `token=${encodeQueryValue(r, tokenVariant(r))}`],
    [1, () => `token=${encodeQueryValue(r, tokenVariant(r))}&token=${encodeQueryValue(r, tokenVariant(r))}`],
    [1, () => `TOKEN=${encodeQueryValue(r, tokenVariant(r))}`],
    [1, () => 'token'],
    [1, () => 'token='],
    [1, () => r.pick(['%', '%%%', '=&=&', '&&&', 'token=%E0%A4%A', 'token[]=a', 'token=a&token', '?', '#frag', 'a=1;token=x'])],
    [1, () => `${r.str(r.range(1, 10), TOKEN_CHARS)}=${r.str(r.range(0, 50), PRINTABLE.replace(/[#]/g, ''))}`],
    [1, () => `token=${'q'.repeat(r.range(5000, 15000))}`],
  ])();
}

function weirdValue(r: Rng): unknown {
  return r.pick<unknown>([
    null,
    true,
    false,
    0,
    -1,
    1.5,
    0.001,
    0.0009,
    5,
    4,
    1e308,
    -1e308,
    Number.MAX_SAFE_INTEGER + 2,
    100000,
    100000.5,
    86400,
    86401,
    3600,
    3601,
    '',
    ' ',
    'NaN',
    'Infinity',
    '5',
    'open',
    'closed',
    'paused',
    'OPEN',
    'x'.repeat(65),
    'x'.repeat(1500),
    r.pick(UNICODE),
    [],
    {},
    [1, 2, 3],
    { $gt: '' },
    'fz-a',
    'fz-a.AAAAAAAAAAAAAAAAAAAAAA',
    '../../etc/passwd',
    '<script>alert(1)</script>',
    "' OR 1=1 --",
    '%s%n%x',
    '{{7*7}}',
    'u:1',
    '{ev:fz-a}',
  ]);
}

const NUMBER_LITERALS = ['1e309', '-1e309', '1e-400', '-0', '123456789012345678901234567890', '0.1e1', 'NaN', 'Infinity', '-Infinity', '0x1F', '01', '.5', '1.', '+1', '1e', '9007199254740993'];

function mutateJson(r: Rng, obj: Record<string, unknown>): Buffer {
  const keys = Object.keys(obj);
  const key = keys.length ? r.pick(keys) : 'event_id';
  const rest = JSON.stringify(obj).slice(1, -1);
  const withRest = (s: string): string => (rest ? `{${rest},${s}}` : `{${s}}`);
  let text: string;
  switch (r.int(15)) {
    case 0:
      text = JSON.stringify({ ...obj, [key]: weirdValue(r) });
      break;
    case 1: {
      const d = r.range(10, 1100);
      text = r.chance(0.5) ? `{"${key}":${'['.repeat(d)}1${']'.repeat(d)}}` : `${'{"a":'.repeat(d)}1${'}'.repeat(d)}`;
      break;
    }
    case 2:
      text = `{"${key}":[${Array.from({ length: r.range(100, 1100) }, () => r.int(10)).join(',')}]}`;
      break;
    case 3: {
      const o: Record<string, unknown> = { ...obj, [key]: '__NUM__' };
      text = JSON.stringify(o).replace('"__NUM__"', r.pick(NUMBER_LITERALS));
      break;
    }
    case 4:
      text = withRest(`"${key}":${JSON.stringify(weirdValue(r)) ?? 'null'}`);
      break;
    case 5:
      text = JSON.stringify(Object.fromEntries(keys.map((k) => [k, null])));
      break;
    case 6:
      text = withRest(r.pick(['"__proto__":{"event_id":"fz-a","state":"closed","admin":true}', '"constructor":{"prototype":{"x":1}}', '"extra":1', '"":""', '"event_id ":"fz-a"']));
      break;
    case 7: {
      const b = Buffer.from(JSON.stringify(obj));
      for (let i = r.range(1, 4); i > 0 && b.length; i--) {
        const j = r.int(b.length);
        b[j] = b[j]! ^ (1 << r.int(8));
      }
      return b;
    }
    case 8: {
      const t = JSON.stringify(obj);
      text = t.slice(0, r.int(t.length));
      break;
    }
    case 9: {
      const t = JSON.stringify(obj);
      text = r.pick([`\ufeff${t}`, `${t}garbage`, `${t}\n`, `  \t${t}`, t.replace(':', ' : '), `/*c*/${t}`, `${t}${t}`, `${t},`, t.replace(/"/g, "'")]);
      break;
    }
    case 10:
      text = withRest(`"${key}":"${r.pick(['\\ud800', '\\u0000', '\\udfff\\ud800', '\\x41', '\\', '\\u12'])}"`);
      break;
    case 11:
      text = r.pick(['[]', '"x"', '1', 'null', 'true', '[{"event_id":"fz-a"}]', '', '{}', '{"":null}', ' ']);
      break;
    case 12:
      text = JSON.stringify({ ...obj, pad: 'x'.repeat(MAX_BODY + r.int(4000)) });
      break;
    case 13:
      text = JSON.stringify(Object.fromEntries(keys.map((k) => [k, weirdValue(r)])));
      break;
    default:
      text = JSON.stringify({ ...obj, [key]: 'x'.repeat(r.range(MAX_BODY - 40, MAX_BODY + 10)) });
  }
  return Buffer.from(text);
}

function randomBody(r: Rng): Buffer | undefined {
  return r.weighted<() => Buffer | undefined>([
    [2, () => undefined],
    [5, () => mutateJson(r, r.pick<Record<string, unknown>>([{ event_id: r.pick([...MAIN_EVENTS, ...FUZZ_EVENTS]) }, { waiting_token: tokenVariant(r) }, { rate: 5, burst: 5, state: 'open' }, { event_id: 'fz-x', seat_ids: ['A1'], quantity: 1, reservation_token: badJwt(r) }, { sub: r.pick(SUBS) }, { type: 'enter' }]))],
    [2, () => Buffer.from(r.str(r.range(1, 500), PRINTABLE))],
    [2, () => r.bytes(r.range(1, 3000))],
    [1, () => Buffer.from(`event_id=${r.pick(MAIN_EVENTS)}&user_id=x`)],
    [1, () => Buffer.from('<?xml version="1.0"?><join><event_id>fz-a</event_id></join>')],
    [1, () => pack({ event_id: r.pick(MAIN_EVENTS) })],
    [1, () => Buffer.alloc(r.range(MAX_BODY + 1, 9000), 0x7b)],
    [1, () => Buffer.from(JSON.stringify({ event_id: 'fz-x', pad: 'y'.repeat(MAX_BODY - 30 + r.int(20)) }))],
    [1, () => Buffer.alloc(0)],
  ])();
}

function randomHeader(r: Rng, h: Record<string, string>): void {
  r.weighted<() => void>([
    [5, () => (h.authorization = authHeader(r))],
    [4, () => (h['content-type'] = r.pick(CONTENT_TYPES))],
    [3, () => (h['idempotency-key'] = r.weighted<() => string>([
      [3, () => newIdemKey(r)],
      [3, () => (usedIdemKeys.length ? r.pick(usedIdemKeys) : 'reused-key-0001')],
      [2, () => r.pick(['short', 'x'.repeat(129), 'has space!', 'é-key-00000', '', '--------', '________'])],
      [1, () => r.str(r.range(1, 300), PRINTABLE)],
    ])())],
    [2, () => (h['x-forwarded-for'] = r.pick(['1.2.3.4', '::1', 'garbage', '1.2.3.4, 5.6.7.8', '', '999.999.999.999', 'x'.repeat(3000), '127.0.0.1\t', r.str(40, PRINTABLE)]))],
    [3, () => (h['x-request-id'] = r.pick([r.str(r.range(1, 128), 'abcXYZ019._:-'), r.str(r.range(129, 400), 'abc'), 'bad id <script>', '', ' ', r.str(r.range(1, 60), PRINTABLE), 'é', '../../x']))],
    [2, () => (h.origin = r.pick([ORIGIN_OK, 'https://evil.example', 'null', '*', '', r.str(30, PRINTABLE)]))],
    [1, () => (h.traceparent = r.pick(['00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', 'garbage', 'x'.repeat(600)]))],
    [1, () => (h[`x-${r.str(r.range(1, 20), 'abcdefghij-')}`] = r.str(r.range(1, 8000), PRINTABLE))],
    [1, () => (h.accept = r.pick(['*/*', 'application/msgpack', 'text/html', '', 'application/json;q=0']))],
    [1, () => (h.cookie = `session=${r.str(r.range(1, 4000), TOKEN_CHARS)}`)],
    [1, () => {
      const ks = Object.keys(h);
      if (ks.length) delete h[r.pick(ks)];
    }],
  ])();
}

function pickPlace(r: Rng, prefer?: 'ready' | 'active'): Place | undefined {
  if (prefer === 'ready' && readyTokens.size && r.chance(0.8)) {
    const t = r.pick([...readyTokens]);
    const p = byToken.get(t);
    if (p) return p;
  }
  const active = places.filter((p) => p.state === 'waiting' || p.state === 'ready');
  if (prefer && active.length && r.chance(0.85)) return r.pick(active);
  return places.length ? r.pick(places) : undefined;
}

function validOp(r: Rng, n: number): FuzzReq {
  const op = r.weighted<string>([
    [30, 'join'],
    [26, 'status'],
    [14, 'enter'],
    [5, 'leave'],
    [6, 'admin'],
    [5, 'reserve'],
    [6, 'health'],
    [3, 'options'],
    [2, 'devtoken'],
  ]);
  const base = { n, kind: 'valid' as const, op };
  const jsonCt = { 'content-type': 'application/json' };
  switch (op) {
    case 'status': {
      const p = pickPlace(r, 'active');
      if (!p) break;
      return { ...base, method: 'GET', path: `/api/v1/queue/status?token=${encodeURIComponent(p.token)}`, headers: {}, strict: 'status', place: p };
    }
    case 'enter': {
      const p = pickPlace(r, 'ready');
      if (!p) break;
      const sub = p.sub ?? r.pick(SUBS);
      const headers: Record<string, string> = { ...jsonCt, authorization: `Bearer ${jwtOf(sub)}` };
      if (r.chance(0.1)) headers['idempotency-key'] = newIdemKey(r);
      const placeOwner = !p.subKnown ? 'unknown' : p.sub === undefined ? 'anonymous' : 'bound';
      return { ...base, method: 'POST', path: '/api/v1/queue/enter', headers, body: json({ waiting_token: p.token }), sub, strict: 'enter', place: p, placeOwner };
    }
    case 'leave': {
      const p = pickPlace(r, 'active');
      if (!p) break;
      return { ...base, method: 'DELETE', path: `/api/v1/queue/leave?token=${encodeURIComponent(p.token)}`, headers: {}, strict: 'leave', place: p };
    }
    case 'admin': {
      const ev = r.pick(MAIN_EVENTS);
      const auth = { authorization: `Bearer ${ADMIN}` };
      return r.weighted<() => FuzzReq>([
        [3, () => ({ ...base, op: 'admin-stats', method: 'GET', path: `/api/v1/admin/events/${ev}/stats`, headers: auth })],
        [1, () => ({ ...base, op: 'admin-get', method: 'GET', path: `/api/v1/admin/events/${ev}`, headers: auth })],
        [2, () => ({ ...base, op: 'admin-put-main', method: 'PUT', path: `/api/v1/admin/events/${ev}`, headers: { ...auth, ...jsonCt }, body: json({ rate: r.pick([5, 10, 20, 40]), burst: r.pick([3, 10, 20]), state: 'open' }) })],
        [2, () => ({ ...base, op: 'admin-put-fuzz', method: 'PUT', path: `/api/v1/admin/events/${r.pick(FUZZ_EVENTS)}`, headers: { ...auth, ...jsonCt }, body: json({ rate: r.pick([0.5, 5, 50]), burst: r.pick([1, 5]), ready_window_sec: r.pick([5, 60]), reconnect_grace_sec: r.pick([1, 30]), state: r.pick(['open', 'paused', 'closed']) }) })],
      ])();
    }
    case 'reserve': {
      if (!reservationTokens.length) break;
      const t = r.pick(reservationTokens);
      const seats = Array.from({ length: r.range(1, 3) }, () => `S${r.int(400)}`);
      const body: Record<string, unknown> = { event_id: t.event, seat_ids: [...new Set(seats)], reservation_token: t.rt };
      if (r.chance(0.5)) body.quantity = (body.seat_ids as string[]).length;
      return { ...base, method: 'POST', path: '/api/v1/reservations', headers: { ...jsonCt, authorization: `Bearer ${jwtOf(t.sub)}`, 'idempotency-key': newIdemKey(r) }, body: json(body), sub: t.sub };
    }
    case 'health':
      return { ...base, method: 'GET', path: r.pick(['/healthz', '/readyz', '/version', '/metrics', '/.well-known/jwks.json']), headers: {}, strict: 'health' };
    case 'options':
      return { ...base, method: 'OPTIONS', path: r.pick(ROUTES).replace(':id', 'fz-a'), headers: { origin: r.pick([ORIGIN_OK, 'https://evil.example']), 'access-control-request-method': 'POST' } };
    case 'devtoken':
      return { ...base, method: 'POST', path: '/api/v1/dev/token', headers: jsonCt, body: json({ sub: r.pick(SUBS.slice(0, 44)) }) };
    default:
      break;
  }
  // join (also the fallback while there is nothing to poll yet)
  const headers: Record<string, string> = { ...jsonCt };
  let sub: string | undefined;
  if (r.chance(0.6)) {
    sub = r.pick(SUBS);
    headers.authorization = `Bearer ${jwtOf(sub)}`;
  }
  if (r.chance(0.2)) headers['idempotency-key'] = newIdemKey(r);
  const event = r.weighted<string>([
    [5, 'fz-a'],
    [3, 'fz-b'],
    [2, 'fz-c'],
  ]);
  return { ...base, op: 'join', method: 'POST', path: '/api/v1/queue/join', headers, body: json({ event_id: event }), ...(sub ? { sub } : {}), strict: sub ? 'join-jwt' : 'join-anon' };
}

function mutate(r: Rng, req: FuzzReq): FuzzReq {
  const m: FuzzReq = { ...req, kind: 'mutated', headers: { ...req.headers } };
  delete m.strict;
  // operator changes under fuzz only ever hit fuzz events: the main ones keep their expectations
  if (m.op === 'admin-put-main') m.path = `/api/v1/admin/events/${r.pick(FUZZ_EVENTS)}`;
  for (let k = r.range(1, 3); k > 0; k--) {
    r.weighted<() => void>([
      [2, () => (m.method = r.pick(METHODS))],
      [3, () => {
        const [p, q] = m.path.split('?');
        m.path = mutatePath(r, p!) + (q !== undefined ? `?${q}` : '');
      }],
      [3, () => {
        const [p] = m.path.split('?');
        m.path = `${p!}?${query(r)}`;
      }],
      [4, () => randomHeader(r, m.headers)],
      [5, () => {
        let obj: unknown;
        try {
          obj = m.body ? JSON.parse(m.body.toString('utf8')) : undefined;
        } catch {
          obj = undefined;
        }
        m.body = obj && typeof obj === 'object' && !Array.isArray(obj) ? mutateJson(r, obj as Record<string, unknown>) : randomBody(r);
      }],
    ])();
  }
  return m;
}

function randomReq(r: Rng, n: number): FuzzReq {
  const method = r.chance(0.03) ? r.pick(['PURGE', 'get', 'FOO', 'M-SEARCH']) : r.pick(METHODS);
  let path = r.weighted<() => string>([
    [6, () => r.pick(ROUTES).replace(':id', seg(r))],
    [2, () => mutatePath(r, r.pick(ROUTES).replace(':id', seg(r)))],
    [1, () => `/${Array.from({ length: r.range(1, 6) }, () => seg(r)).join('/')}`],
    [1, () => `/api/v1/${seg(r)}`],
    [1, () => r.pick(['/', '//', '/%', '/.', '/api/v1/queue/join/..', `/${r.pick(UNICODE)}`, '/*', '/api/v1/queue/join%00', '/API/V1/QUEUE/JOIN', '/api/v1/queue/join?'])],
  ])();
  if (r.chance(0.5)) path += `?${query(r)}`;
  const headers: Record<string, string> = {};
  for (let k = r.range(0, 4); k > 0; k--) randomHeader(r, headers);
  const body = randomBody(r);
  return { n, kind: 'random', op: 'random', method, path, headers, ...(body ? { body } : {}) };
}

function generate(n: number): FuzzReq {
  const r = new Rng(mix(SEED, n));
  return r.weighted<() => FuzzReq>([
    [38, () => validOp(r, n)],
    [32, () => mutate(r, validOp(r, n))],
    [30, () => randomReq(r, n)],
  ])();
}

function curl(req: FuzzReq): string {
  const h = Object.entries(req.headers)
    .map(([k, v]) => ` -H ${JSON.stringify(`${k}: ${clip(v, 160)}`)}`)
    .join('');
  let body = '';
  if (req.body) {
    const text = req.body.toString('utf8');
    const printable = Buffer.from(text).equals(req.body) && !/[\x00-\x08\x0e-\x1f]/.test(text);
    body = printable ? ` --data-binary ${JSON.stringify(clip(text, 300))}` : ` --data-binary @<(echo ${clip(req.body.toString('base64'), 300)} | base64 -d)`;
  }
  return `#${req.n} [${req.kind}/${req.op}] curl -X ${req.method} '${gw.url}${clip(req.path, 300)}'${h}${body}`;
}

// ---------------------------------------------------------------------------
// HTTP response checks

const REQUEST_ID_RE = /^[A-Za-z0-9._:-]{1,128}$/;
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const CODE_RE = /^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*$/;
const DELIBERATE_503 = new Set(['SERVICE_UNAVAILABLE', 'REDIS_UNAVAILABLE', 'UPSTREAM_UNAVAILABLE']);

interface Outcome {
  status: number | 'hang' | 'client-rejected' | 'transport';
  headers?: Headers;
  text?: string;
  body?: unknown;
  error?: string;
}

async function send(req: FuzzReq): Promise<Outcome> {
  let url: URL;
  try {
    url = new URL(gw.url + req.path);
  } catch (err) {
    return { status: 'client-rejected', error: (err as Error).message };
  }
  const withBody = req.body !== undefined && req.method !== 'GET' && req.method !== 'HEAD' && req.method !== 'get';
  try {
    const res = await fetch(url, {
      method: req.method,
      headers: req.headers,
      ...(withBody ? { body: new Uint8Array(req.body!) } : {}),
      redirect: 'manual',
      signal: AbortSignal.timeout(REQ_TIMEOUT_MS),
    });
    const text = Buffer.from(await res.arrayBuffer()).toString('utf8');
    let body: unknown;
    try {
      body = text ? JSON.parse(text) : undefined;
    } catch {
      body = undefined;
    }
    return { status: res.status, headers: res.headers, text, body };
  } catch (err) {
    const e = err as Error & { cause?: { code?: string; message?: string } };
    if (e.name === 'TimeoutError' || e.name === 'AbortError') return { status: 'hang', error: e.message };
    const cause = e.cause?.code ?? '';
    if (cause === 'UND_ERR_INVALID_ARG' || cause === 'UND_ERR_NOT_SUPPORTED' || (e instanceof TypeError && e.message !== 'fetch failed')) {
      return { status: 'client-rejected', error: `${e.message} ${e.cause?.message ?? ''}` };
    }
    return { status: 'transport', error: `${e.message}: ${cause} ${e.cause?.message ?? ''}` };
  }
}

function checkResponse(v: Violations, req: FuzzReq, o: Outcome): void {
  const where = (): string => `${curl(req)}\n    -> ${String(o.status)} ${clip(o.text ?? o.error ?? '', 400)}`;
  if (o.status === 'hang') {
    v.add(`no response within ${REQ_TIMEOUT_MS} ms (hang)`, where());
    return;
  }
  if (o.status === 'transport') {
    // uWebSockets.js closes the connection on methods its parser does not know (no answer at all); anything else is ours
    if (!METHODS.includes(req.method)) inc(httpCounts, 'transport: non-standard method dropped');
    else v.add('connection dropped without a response', where());
    return;
  }
  if (o.status === 'client-rejected') return;
  const status = o.status;
  const h = o.headers!;
  const rid = h.get('x-request-id');
  if (!rid) v.add('response without X-Request-ID', where());
  // a field value's surrounding whitespace is not part of it (RFC 9110 5.5): the server sees it trimmed
  const sentRid = req.headers['x-request-id']?.trim();
  if (rid) {
    if (sentRid && REQUEST_ID_RE.test(sentRid)) {
      if (rid !== sentRid) v.add('sane X-Request-ID not echoed', `${where()} (sent ${sentRid}, got ${rid})`);
    } else if (!UUID_RE.test(rid)) v.add('generated X-Request-ID is not a UUID', `${where()} (got ${rid})`);
  }
  const isHead = req.method === 'HEAD';
  if (status >= 500) {
    if (status === 503 && req.path.split('?')[0] === '/readyz' && !isHead) {
      const b = o.body as { status?: unknown; reasons?: unknown } | undefined;
      if (b?.status !== 'unavailable' || !Array.isArray(b.reasons)) v.add('readyz 503 without its documented body', where());
      else v.add('readiness went 503 during the storm (Redis is up)', where());
      return;
    }
    const code = (o.body as { error?: { code?: unknown } } | undefined)?.error?.code;
    if (status !== 503 || (!isHead && !DELIBERATE_503.has(String(code)))) v.add(`5xx that is not a deliberate 503 (${status})`, where());
  }
  if (status >= 400 && !isHead) {
    const e = (o.body as { error?: Record<string, unknown> } | undefined)?.error;
    if (!e || typeof e !== 'object') {
      v.add('error response without the contract body {"error":{…}}', where());
    } else {
      if (typeof e.code !== 'string' || !CODE_RE.test(e.code)) v.add('error code not UPPER_SNAKE', where());
      if (typeof e.message !== 'string' || e.message.length === 0) v.add('error without a message', where());
      // trace_id names the request: its X-Request-ID, or its W3C trace id (X-Trace-ID) where tracing is on
      const names = [rid, h.get('x-trace-id')].filter((x): x is string => Boolean(x));
      if (typeof e.trace_id !== 'string' || e.trace_id === '' || !names.includes(e.trace_id)) v.add('error trace_id is neither the X-Request-ID nor the X-Trace-ID', `${where()} (X-Request-ID ${rid}, X-Trace-ID ${h.get('x-trace-id')})`);
      const table = errorStatus as Record<string, number>;
      if (typeof e.code === 'string' && table[e.code] !== undefined && table[e.code] !== status) {
        v.add('error code answered with another status than its table entry', `${where()} (table: ${table[e.code]})`);
      }
      if (typeof e.code === 'string' && table[e.code] === undefined) v.add('error code not in the errors table', where());
    }
    if (!/^application\/json/.test(h.get('content-type') ?? '')) v.add('error response not application/json', where());
  }
  if (status >= 200 && status < 300 && !isHead && status !== 204 && /^application\/json/.test(h.get('content-type') ?? '') && o.body === undefined) {
    v.add('2xx JSON response that does not parse', where());
  }
  if (![200, 201, 202, 204, 400, 401, 403, 404, 405, 409, 413, 415, 429, 431, 503].includes(status)) v.add(`unexpected status ${status}`, where());

  // semantic expectations of unmutated valid requests
  const code = (o.body as { error?: { code?: string } } | undefined)?.error?.code;
  const sc = `${status}${code ? ` ${code}` : ''}`;
  const expectOneOf = (allowed: string[]): void => {
    if (status === 503 && DELIBERATE_503.has(String(code))) return;
    if (!allowed.includes(sc)) v.add(`valid ${req.strict} request answered ${sc}`, `${where()} (expected one of ${allowed.join(' | ')})`);
  };
  switch (req.strict) {
    case 'join-anon':
      expectOneOf(['202']);
      break;
    case 'join-jwt':
      expectOneOf(['202', '409 DUPLICATE_REQUEST']);
      break;
    case 'status':
      expectOneOf(['200', '404 TOKEN_EXPIRED']);
      break;
    case 'enter':
      // an anonymous place is bound to whoever enters it, unless that user already holds another place (409 DUPLICATE_REQUEST)
      // (a concurrent enter by someone else may bind an anonymous place first: then 403 FORBIDDEN)
      expectOneOf(['200', '403 NOT_READY', '404 TOKEN_EXPIRED', '409 ALREADY_ADMITTED', ...(req.placeOwner !== 'bound' ? ['403 FORBIDDEN', '409 DUPLICATE_REQUEST'] : [])]);
      break;
    case 'leave':
      expectOneOf(['200', '409 NOT_IN_LINE']);
      break;
    case 'health':
      expectOneOf(['200']);
      break;
    default:
      break;
  }
}

/** Learn from responses: tokens handed out, states seen, admissions granted (and check exactly-once). */
function learn(v: Violations, req: FuzzReq, o: Outcome): void {
  if (typeof o.status !== 'number') return;
  const path = req.path.split('?')[0];
  const b = o.body as Record<string, unknown> | undefined;
  const cached = o.headers?.get('x-idempotency-cached') === 'true';
  if (req.method === 'POST' && path === '/api/v1/queue/join') {
    if (o.status === 202 && typeof b?.waiting_token === 'string') {
      const who = whoSent(req.headers);
      remember(b.waiting_token, who.sub, who.known);
    }
    const e = b?.error as Record<string, unknown> | undefined;
    if (o.status === 409 && typeof e?.waiting_token === 'string') {
      // a duplicate by user id is that user's place; by Idempotency-Key it may be anyone's
      const who = whoSent(req.headers);
      const byUser = !req.headers['idempotency-key'] && who.known;
      const p = remember(e.waiting_token, byUser ? who.sub : undefined, byUser);
      if (p && e.status === 'ready') readyTokens.add(p.token);
    }
  }
  if (req.method === 'GET' && path === '/api/v1/queue/status' && req.place) {
    if (o.status === 200 && b) {
      const st = b.status;
      if (st === 'ready') {
        req.place.state = 'ready';
        readyTokens.add(req.place.token);
      } else if (st === 'waiting') req.place.state = 'waiting';
      else if (st === 'admitted') {
        req.place.state = 'admitted';
        readyTokens.delete(req.place.token);
      }
    } else if (o.status === 404) {
      req.place.state = 'gone';
      readyTokens.delete(req.place.token);
    }
  }
  if (req.method === 'POST' && path === '/api/v1/queue/enter') {
    if (o.status === 200 && b && typeof b.reservation_token === 'string') {
      recordAdmission(v, b.reservation_token, curl(req));
      const p = jwtPayload(b.reservation_token);
      if (!cached && p && typeof p.evt === 'string' && typeof p.sub === 'string') reservationTokens.push({ rt: b.reservation_token, event: p.evt, sub: p.sub });
    } else if (req.place && (o.status === 404 || (o.status === 409 && (b?.error as { code?: string })?.code === 'ALREADY_ADMITTED'))) {
      req.place.state = o.status === 404 ? 'gone' : 'admitted';
      readyTokens.delete(req.place.token);
    }
  }
  if (req.method === 'DELETE' && path === '/api/v1/queue/leave' && req.place && o.status === 200) {
    req.place.state = 'gone';
    readyTokens.delete(req.place.token);
  }
  if (req.method === 'POST' && path === '/api/v1/reservations' && o.status === 201 && !cached && req.body) {
    try {
      const rt = (JSON.parse(req.body.toString('utf8')) as { reservation_token?: string }).reservation_token;
      const jti = typeof rt === 'string' ? jwtPayload(rt)?.jti : undefined;
      if (typeof jti === 'string') {
        const n = (reservationsByJti.get(jti) ?? 0) + 1;
        reservationsByJti.set(jti, n);
        if (n > 1) v.add('a reservation_token was accepted twice (single use broken)', curl(req));
      }
    } catch {
      /* the server accepted it, so it parsed there; nothing to learn here */
    }
  }
}

// ---------------------------------------------------------------------------
// invariants in Redis (one atomic Lua snapshot per event)

const SNAPSHOT_LUA = `
local base = ARGV[1]
local function zr(k) return redis.call('ZRANGE', k, 0, -1, 'WITHSCORES') end
local users = {}
for _, k in ipairs(redis.call('KEYS', base .. 'u:*')) do
  local r = redis.call('HMGET', k, 's', 'u', 'q')
  users[#users + 1] = string.sub(k, #base + 3)
  users[#users + 1] = r[1] or ''
  users[#users + 1] = r[2] or ''
  users[#users + 1] = r[3] or ''
end
local binds = {}
for _, k in ipairs(redis.call('KEYS', base .. 'uid:*')) do
  binds[#binds + 1] = string.sub(k, #base + 5)
  binds[#binds + 1] = redis.call('GET', k) or ''
end
return {zr(KEYS[1]), zr(KEYS[2]), zr(KEYS[3]), zr(KEYS[4]), redis.call('HGETALL', KEYS[5]), redis.call('GET', KEYS[6]) or '0', users, binds}
`;

interface Snapshot {
  q: [string, number][];
  ready: [string, number][];
  live: [string, number][];
  fin: [string, number][];
  stats: Record<string, number>;
  seq: number;
  users: Map<string, { s: string; u: string; q: string }>;
  binds: Map<string, string>;
}

async function snapshot(eventId: string): Promise<Snapshot> {
  const k = eventKeys(prefix, eventId);
  const r = (await rc.eval(SNAPSHOT_LUA, 6, k.q, k.ready, k.live, k.fin, k.stats, k.seq, k.base)) as unknown[];
  const z = (a: unknown): [string, number][] => {
    const arr = a as string[];
    const out: [string, number][] = [];
    for (let i = 0; i + 1 < arr.length; i += 2) out.push([arr[i]!, Number(arr[i + 1])]);
    return out;
  };
  const statsArr = r[4] as string[];
  const stats: Record<string, number> = {};
  for (let i = 0; i + 1 < statsArr.length; i += 2) stats[statsArr[i]!] = Number(statsArr[i + 1]);
  const ua = r[6] as string[];
  const users = new Map<string, { s: string; u: string; q: string }>();
  for (let i = 0; i + 3 < ua.length; i += 4) users.set(ua[i]!, { s: ua[i + 1]!, u: ua[i + 2]!, q: ua[i + 3]! });
  const ba = r[7] as string[];
  const binds = new Map<string, string>();
  for (let i = 0; i + 1 < ba.length; i += 2) binds.set(ba[i]!, ba[i + 1]!);
  return { q: z(r[0]), ready: z(r[1]), live: z(r[2]), fin: z(r[3]), stats, seq: Number(r[5]), users, binds };
}

/** Every structural invariant of one event's line, on one atomic snapshot. Returns the number of users in line. */
async function checkEvent(v: Violations, eventId: string, when: string): Promise<number> {
  const s = await snapshot(eventId);
  const bad = (what: string, detail: string): void => v.add(`invariant: ${what}`, `[${when}] event ${eventId}: ${detail}`);
  const inQ = new Map(s.q);
  // q: scores strictly increasing (one arrival sequence number per place), never beyond seq
  for (let i = 1; i < s.q.length; i++) {
    if (!(s.q[i]![1] > s.q[i - 1]![1])) bad('q scores strictly increasing', `${s.q[i - 1]![0]}=${s.q[i - 1]![1]} then ${s.q[i]![0]}=${s.q[i]![1]}`);
  }
  for (const [t, score] of s.q) {
    if (!Number.isInteger(score) || score < 1 || score > s.seq) bad('q score is an issued sequence number', `${t}=${score} (seq ${s.seq})`);
  }
  // ready is exactly a prefix of q
  const readySet = new Set(s.ready.map(([t]) => t));
  const head = new Set(s.q.slice(0, s.ready.length).map(([t]) => t));
  const notPrefix = [...readySet].filter((t) => !head.has(t));
  if (notPrefix.length) bad('ready set is a prefix of q', `${notPrefix.length} ready not in the head of q, e.g. ${notPrefix.slice(0, 3).join(',')} (q=${s.q.length}, ready=${s.ready.length})`);
  // live has exactly q's members
  const liveSet = new Set(s.live.map(([t]) => t));
  const qNotLive = s.q.filter(([t]) => !liveSet.has(t)).map(([t]) => t);
  const liveNotQ = [...liveSet].filter((t) => !inQ.has(t));
  if (qNotLive.length || liveNotQ.length) bad('live has exactly the members of q', `in q not live: ${qNotLive.slice(0, 3).join(',')} (${qNotLive.length}); live not in q: ${liveNotQ.slice(0, 3).join(',')} (${liveNotQ.length})`);
  // user records agree with the line
  for (const [t, score] of s.q) {
    const u = s.users.get(t);
    if (!u) bad('every q member has a user record', t);
    else {
      if (u.s !== 'w' && u.s !== 'r') bad('every q member has state w or r', `${t} s=${u.s}`);
      if (Number(u.q) !== score) bad("a q member's recorded sequence equals its score", `${t} q=${u.q} score=${score}`);
      if (u.s === 'r' && !readySet.has(t)) bad('a user in state r is in the ready set', t);
      if (u.s === 'w' && readySet.has(t)) bad('a user in the ready set has state r', `${t} s=w`);
    }
  }
  for (const t of readySet) if (s.users.get(t)?.s !== 'r') bad('every ready member has state r', `${t} s=${s.users.get(t)?.s}`);
  const finSet = new Set(s.fin.map(([t]) => t));
  for (const [t, u] of s.users) {
    const inLine = inQ.has(t) || readySet.has(t) || liveSet.has(t);
    if ((u.s === 'w' || u.s === 'r') && !inQ.has(t)) bad('a waiting/ready user is in q (lost place)', `${t} s=${u.s}`);
    if ((u.s === 'a' || u.s === 'x' || u.s === 'l') && inLine) bad('no finished user (a/x/l) in q/ready/live', `${t} s=${u.s}`);
    if ((u.s === 'a' || u.s === 'x' || u.s === 'l') && !finSet.has(t)) bad('every finished user is in fin', `${t} s=${u.s}`);
    if (!['w', 'r', 'a', 'x', 'l'].includes(u.s)) bad('user state is one of w r a x l', `${t} s=${JSON.stringify(u.s)}`);
  }
  for (const t of finSet) {
    const u = s.users.get(t);
    if (u && !['a', 'x', 'l'].includes(u.s)) bad('fin holds only finished users', `${t} s=${u.s}`);
  }
  // no duplicate places: one user id holds at most one place (waiting, ready, or admitted) per event
  const holder = new Map<string, string>();
  for (const [t, u] of s.users) {
    if (!u.u || !['w', 'r', 'a'].includes(u.s)) continue;
    const other = holder.get(u.u);
    if (other) bad('one user id holds at most one place per event', `user ${u.u}: ${other} (${s.users.get(other)?.s}) and ${t} (${u.s})`);
    holder.set(u.u, t);
    if (u.s !== 'a' && s.binds.get(u.u) !== t) bad("an active bound place is its user's binding", `user ${u.u} place ${t} s=${u.s} binding=${s.binds.get(u.u)}`);
  }
  for (const [uid, t] of s.binds) {
    const u = s.users.get(t);
    if (!u || u.u !== uid || !['w', 'r', 'a'].includes(u.s)) bad('a user binding points to that user\'s active or admitted place', `uid:${uid} -> ${t} (${u ? `s=${u.s} u=${u.u}` : 'no record'})`);
  }
  // conservation: everyone who joined is in line or left it exactly once, with a reason
  const st = s.stats;
  const exits = (st.entered ?? 0) + (st.left ?? 0) + (st.ready_timeout ?? 0) + (st.liveness ?? 0);
  if ((st.joined ?? 0) !== s.seq) bad('joined counter equals the sequence', `joined=${st.joined ?? 0} seq=${s.seq}`);
  if ((st.joined ?? 0) !== s.q.length + exits) bad('joined = in line + exits (no place lost or duplicated)', `joined=${st.joined ?? 0} in line=${s.q.length} exits=${exits} ${JSON.stringify(st)}`);
  if ((st.xseq ?? 0) !== exits) bad('exit sequence counts every exit once', `xseq=${st.xseq ?? 0} exits=${exits}`);
  return s.q.length;
}

async function registeredEvents(): Promise<string[]> {
  return (await rc.smembers(registryKey(prefix))).sort();
}

async function checkAllEvents(v: Violations, when: string): Promise<{ events: number; inLine: number }> {
  const events = await registeredEvents();
  let inLine = 0;
  for (const e of events) inLine += await checkEvent(v, e, when);
  return { events: events.length, inLine };
}

// ---------------------------------------------------------------------------

beforeAll(async () => {
  process.on('uncaughtException', onUncaught);
  redis = await startRedis();
  gw = await startInProcessGateway(redis.address, {
    ADMIN_TOKEN: ADMIN,
    JWT_SECRET: SECRET,
    DEV_TOKENS_ENABLED: 'true',
    QUEUE_AUTO_CREATE_EVENTS: 'true',
    QUEUE_TICK_MS: '50',
    QUEUE_LEASE_MS: '1000',
    QUEUE_DEFAULT_RATE: '20',
    QUEUE_DEFAULT_BURST: '10',
    QUEUE_READY_WINDOW_SEC: '6',
    QUEUE_POLL_TIMEOUT_SEC: '8',
    QUEUE_RECONNECT_GRACE_SEC: '4',
    HTTP_MAX_BODY_BYTES: String(MAX_BODY),
    CORS_ALLOW_ORIGINS: ORIGIN_OK,
  });
  prefix = gw.gateway.config.redis.keyPrefix;
  rc = redisClient(redis.address);
  const put = (id: string, patch: unknown): Promise<Response> =>
    fetch(`${gw.url}/api/v1/admin/events/${id}`, { method: 'PUT', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: JSON.stringify(patch) });
  for (const [id, patch] of [
    ['fz-a', { rate: 20, burst: 10, ready_window_sec: 6, state: 'open' }],
    ['fz-b', { rate: 5, burst: 3, ready_window_sec: 30, state: 'open' }],
    ['fz-c', { rate: 40, burst: 20, ready_window_sec: 5, reconnect_grace_sec: 2, state: 'open' }],
    [WS_EVENT, { rate: 15, burst: 10, ready_window_sec: 8, reconnect_grace_sec: 3, state: 'open' }],
  ] as const) {
    expect((await put(id, patch)).status).toBe(201);
  }
  console.log(`fuzz seed ${SEED} (replay the inputs with FUZZ_SEED=${SEED})`);
});

afterAll(async () => {
  summary.http_by_status = sorted(httpCounts);
  summary.raw_by_status = sorted(rawCounts);
  summary.ws_close_codes = sorted(wsCloseCounts);
  summary.ws_client_side_errors = sorted(wsClientErrors);
  summary.ws_frames_by_kind = sorted(wsFrameKinds);
  summary.ws_server_messages = sorted(wsServerTypes);
  summary.uncaught_exceptions = uncaught.length;
  console.log(`fuzz summary ${JSON.stringify(summary, null, 1)}`);
  await gw?.stop();
  await rc?.quit().catch(() => undefined);
  await redis?.stop();
  process.off('uncaughtException', onUncaught);
});

describe(`fuzz (seed ${SEED})`, () => {
  it('HTTP: thousands of random and mutated requests get contract answers, never an unplanned 5xx or a hang; the line stays consistent while it runs', async () => {
    const v = (currentPhase = new Violations());
    const started = Date.now();
    // a first batch of places so polls, enters and leaves have material from the start
    const seedPlaces = await Promise.all(
      Array.from({ length: 40 }, (_, i) => {
        const sub = i % 2 ? SUBS[i]! : undefined;
        return fetch(`${gw.url}/api/v1/queue/join`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...(sub ? { authorization: `Bearer ${jwtOf(sub)}` } : {}) },
          body: JSON.stringify({ event_id: MAIN_EVENTS[i % 3] }),
        }).then(async (r) => ({ status: r.status, body: (await r.json()) as { waiting_token?: string }, sub }));
      }),
    );
    for (const p of seedPlaces) {
      expect(p.status).toBe(202);
      remember(p.body.waiting_token!, p.sub, true);
    }

    let next = 0;
    let done = 0;
    const deadline = started + HTTP_BUDGET_MS;
    let running = true;
    // atomic invariant snapshots of the main events while the storm runs
    let midChecks = 0;
    const checker = (async () => {
      while (running) {
        await sleep(1200);
        if (!running) break;
        for (const e of [...MAIN_EVENTS, ...FUZZ_EVENTS]) await checkEvent(v, e, `during the HTTP storm, after ~${done} requests`);
        midChecks++;
      }
    })();
    const worker = async (): Promise<void> => {
      while (next < HTTP_MAX_REQUESTS && Date.now() < deadline) {
        const req = generate(next++);
        const o = await send(req);
        done++;
        inc(httpCounts, o.status);
        checkResponse(v, req, o);
        learn(v, req, o);
      }
    };
    await Promise.all(Array.from({ length: HTTP_WORKERS }, worker));
    running = false;
    await checker;
    const after = await checkAllEvents(v, 'right after the HTTP storm');
    summary.http = {
      requests: done,
      seconds: (Date.now() - started) / 1000,
      mid_storm_invariant_checks: midChecks,
      places_known: places.length,
      admissions: admissions.size,
      reservations: reservationsByJti.size,
      events_registered: after.events,
      in_line_after: after.inLine,
      violations: v.total,
    };
    // the storm really ran (the count depends on the machine's load inside the time budget; the summary prints it)
    expect(done).toBeGreaterThan(300);
    // the valid traffic really moved the line
    expect(admissions.size, `seed ${SEED}: no enter succeeded during the storm`).toBeGreaterThan(0);
    expect(v.report(), `seed ${SEED}: HTTP storm violations`).toEqual({});
  }, 60_000);

  it('raw HTTP/1.1: malformed framing, pipelining and HEAD never get an unplanned 5xx, and responses keep the framing', async () => {
    const v = (currentPhase = new Violations());
    const started = Date.now();
    const port = gw.gateway.port;

    /** the server's bytes; `closedByServer` when it closed the connection before our timeout */
    let closedByServer = false;
    const exchange = (payload: Buffer, overallMs = 400): Promise<Buffer> =>
      new Promise((resolve) => {
        const chunks: Buffer[] = [];
        const c = net.connect(port, '127.0.0.1');
        let idle: NodeJS.Timeout | undefined;
        let timedOut = false;
        const finish = (): void => {
          clearTimeout(overall);
          clearTimeout(idle);
          closedByServer = !timedOut;
          c.destroy();
          resolve(Buffer.concat(chunks));
        };
        const overall = setTimeout(() => {
          timedOut = true;
          finish();
        }, overallMs);
        c.on('data', (d: Buffer) => {
          chunks.push(d);
          clearTimeout(idle);
          idle = setTimeout(finish, 150);
        });
        c.on('error', finish);
        c.on('close', finish);
        c.write(payload);
      });

    interface RawResponse {
      status: number;
      headers: Map<string, string>;
      body: Buffer;
      /** bytes after this response's declared body (the next response, or stray content) */
      rest: Buffer;
    }
    const parse = (buf: Buffer, headRequest: boolean): RawResponse | undefined => {
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return undefined;
      const lines = buf.subarray(0, end).toString('latin1').split('\r\n');
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '');
      if (!m) return undefined;
      const headers = new Map<string, string>();
      for (const l of lines.slice(1)) {
        const i = l.indexOf(':');
        if (i > 0) headers.set(l.slice(0, i).trim().toLowerCase(), l.slice(i + 1).trim());
      }
      const len = headRequest ? 0 : Number(headers.get('content-length') ?? '0');
      const body = buf.subarray(end + 4, end + 4 + len);
      return { status: Number(m[1]), headers, body, rest: buf.subarray(end + 4 + len) };
    };

    const host = 'Host: 127.0.0.1\r\n';
    // deterministic: a HEAD response carries no content (RFC 9110 9.3.2), so the
    // next pipelined response starts right after its header block
    for (const path of ['/healthz', '/api/v1/queue/join', '/nope']) {
      const out = await exchange(Buffer.from(`HEAD ${path} HTTP/1.1\r\n${host}\r\nGET /version HTTP/1.1\r\n${host}\r\n`));
      const first = parse(out, true);
      inc(rawCounts, first ? `HEAD ${first.status}` : 'HEAD no response');
      if (!first) v.add('no response to HEAD', `HEAD ${path}`);
      else if (first.rest.length && !first.rest.subarray(0, 9).toString('latin1').startsWith('HTTP/1.1 ')) {
        v.add('HEAD response carries a body (breaks keep-alive framing)', `printf 'HEAD ${path} HTTP/1.1\\r\\nHost: x\\r\\n\\r\\nGET /version HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n' | nc 127.0.0.1 <port>  -> after the HEAD headers: ${JSON.stringify(first.rest.subarray(0, 120).toString('latin1'))}`);
      }
    }

    const raw = async (i: number): Promise<void> => {
      const r = new Rng(mix(SEED ^ 0xa5a5a5a5, i));
      // a well-formed request first, then 0-2 ways of breaking its framing
      let method = r.pick(['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD']);
      let target = r.pick(ROUTES).replace(':id', seg(r)) + (r.chance(0.4) ? `?${query(r)}` : '');
      try {
        const u = new URL(target, 'http://127.0.0.1');
        target = u.pathname + u.search; // a valid request-target: spaces and unicode percent-encoded, '%' left alone
      } catch {
        /* keep it raw */
      }
      let rawPath: Buffer = Buffer.from(target);
      let version = 'HTTP/1.1';
      let hostLine = host;
      let body: Buffer = ['POST', 'PUT', 'PATCH', 'DELETE'].includes(method) && r.chance(0.8) ? (randomBody(r) ?? Buffer.alloc(0)) : Buffer.alloc(0);
      let framing = body.length ? `Content-Length: ${body.length}\r\n` : '';
      const extra: string[] = [];
      for (let k = r.range(0, 3); k > 0; k--) {
        extra.push(
          r.pick([
            `Content-Type: ${r.pick(CONTENT_TYPES)}`,
            `Authorization: ${authHeader(r).slice(0, 9000)}`,
            `X-Request-ID: ${r.str(r.range(1, 200), PRINTABLE)}`,
            `Idempotency-Key: ${r.str(r.range(1, 40), TOKEN_CHARS)}`,
            `X-Forwarded-For: ${r.str(r.range(1, 40), PRINTABLE)}`,
            `Origin: ${ORIGIN_OK}`,
            'Connection: close',
            `traceparent: ${r.pick(['00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', 'ff-zz', '00-00000000000000000000000000000000-0000000000000000-00'])}`,
          ]),
        );
      }
      const breaks = r.weighted<number>([
        [4, 0],
        [4, 1],
        [2, 2],
      ]);
      for (let k = 0; k < breaks; k++) {
        r.weighted<() => void>([
          [2, () => (method = r.pick(['get', 'FOO', 'CONNECT', 'TRACE', 'G ET', '', 'PRI', 'GET\x00']))],
          [2, () => (rawPath = r.weighted<() => Buffer>([
            [2, () => Buffer.concat([Buffer.from('/api/v1/admin/events/'), r.bytes(r.range(1, 12))])],
            [2, () => Buffer.from(r.pick(['*', 'http://127.0.0.1/healthz', '/healthz#frag', '/ healthz', '/\x01', '/%', '', '//'.repeat(50), '/é', '/api/v1/reservations/%ZZ', '/api/v1/queue/status?token=%']))],
            [1, () => Buffer.from(`/${'p'.repeat(r.range(1000, 20000))}`)],
          ])())],
          [1, () => (version = r.pick(['HTTP/1.0', 'HTTP/2.0', 'HTTP/1.1 extra', '', 'HTTP/1.10', 'http/1.1']))],
          [1, () => (hostLine = r.pick(['', 'Host: \r\n', `${host}${host}`, 'Host: a b\r\n']))],
          [2, () => (framing = `Content-Length: ${r.pick(['-1', 'abc', '99999999999999999999', '1, 2', ' 5', '0x10', String(body.length + r.range(1, 50)), String(Math.max(0, body.length - 1))])}\r\n`)],
          [1, () => (framing = `Content-Length: ${body.length}\r\nContent-Length: ${body.length + 1}\r\n`)],
          [2, () => {
            const size = r.chance(0.6) ? body.length.toString(16) : r.pick(['zz', '-1', 'fffffffffffffffff', '', '1;ext=1']);
            framing = r.pick(['Transfer-Encoding: chunked\r\n', 'Transfer-Encoding: gzip, chunked\r\n', `Transfer-Encoding: chunked\r\nContent-Length: ${body.length}\r\n`]);
            body = Buffer.concat([Buffer.from(`${size}\r\n`), body, Buffer.from(r.chance(0.7) ? '\r\n0\r\n\r\n' : '\r\n')]);
          }],
          [2, () => extra.push(r.pick(['NoColonHeader', ' folded: continuation', `X-Big: ${'b'.repeat(r.range(1000, 20000))}`, 'Expect: 100-continue', 'Upgrade: websocket', `${r.str(r.range(1, 10), 'abc')}:${r.str(r.range(0, 20), PRINTABLE)}`, ': empty-name', 'Bad Header: x']))],
          [1, () => extra.push(...Array.from({ length: r.range(30, 80) }, (_, j) => `X-H${j}: v`))],
        ])();
      }
      const pipelined = r.chance(0.2);
      const payload = Buffer.concat([
        Buffer.from(`${method} `),
        rawPath,
        Buffer.from(` ${version}\r\n${hostLine}${framing}${extra.map((x) => `${x}\r\n`).join('')}\r\n`),
        body,
        Buffer.from(pipelined ? `GET /healthz HTTP/1.1\r\n${host}\r\n` : ''),
      ]);
      // well-formed requests are answered, within the store's command timeout at worst
      const out = await exchange(payload, breaks === 0 ? 5000 : 400);
      const head = method === 'HEAD';
      let res = parse(out, head);
      if (!res) {
        inc(rawCounts, out.length ? 'unparsable' : breaks === 0 ? 'no response (well-formed)' : 'no response (malformed)');
        // uWebSockets.js does not support pipelining behind a response answered
        // later (uNetworking/uWebSockets.js#277, wontfix): it closes that
        // connection at once. Browsers never pipeline; only this client's own
        // connection is affected. A close is accepted there, a hang never.
        const pipelinedClose = pipelined && closedByServer;
        if (pipelinedClose) inc(rawCounts, 'closed: pipelined behind an async answer (uWS)');
        if (breaks === 0 && !out.length && !pipelinedClose) v.add('raw: a well-formed request got no answer (hang)', `#${i} ${JSON.stringify(clip(payload.toString('latin1'), 400))}`);
        if (out.length && !out.subarray(0, 5).toString('latin1').startsWith('HTTP/')) v.add('raw: bytes that are not an HTTP response', `#${i} ${JSON.stringify(payload.subarray(0, 200).toString('latin1'))} -> ${JSON.stringify(out.subarray(0, 200).toString('latin1'))}`);
        return;
      }
      let n = 0;
      while (res && n++ < 4) {
        inc(rawCounts, res.status);
        if (res.status < 200) {
          // 100 Continue and friends: informational, the real answer follows
          res = res.rest.length ? parse(res.rest, head) : undefined;
          continue;
        }
        if (head && n === 1 && res.rest.length && !res.rest.subarray(0, 5).toString('latin1').startsWith('HTTP/')) {
          v.add('HEAD response carries a body (breaks keep-alive framing)', `#${i} ${JSON.stringify(clip(payload.toString('latin1'), 300))} -> after the headers: ${JSON.stringify(res.rest.subarray(0, 100).toString('latin1'))}`);
        }
        const where = `#${i} ${JSON.stringify(clip(payload.toString('latin1'), 400))} -> ${res.status} ${JSON.stringify(clip(res.body.toString('latin1'), 200))}`;
        if (res.status >= 500 && res.status !== 503) v.add(`raw: 5xx that is not a deliberate 503 (${res.status})`, where);
        if (!res.headers.has('x-request-id')) v.add('raw: response without X-Request-ID', where);
        if (res.status >= 400 && !head && n === 1) {
          try {
            const e = (JSON.parse(res.body.toString('utf8')) as { error?: { code?: string } }).error;
            if (!e || !CODE_RE.test(String(e.code))) v.add('raw: error response without the contract body', where);
          } catch {
            v.add('raw: error response without the contract body', where);
          }
        }
        res = res.rest.length ? parse(res.rest, false) : undefined;
      }
    };
    let nextRaw = 0;
    await Promise.all(
      Array.from({ length: 24 }, async () => {
        while (nextRaw < RAW_REQUESTS) await raw(nextRaw++);
      }),
    );
    // still serving after all that
    expect((await fetch(`${gw.url}/healthz`)).status).toBe(200);
    summary.raw = { exchanges: RAW_REQUESTS + 3, seconds: (Date.now() - started) / 1000, violations: v.total };
    expect(v.report(), `seed ${SEED}: raw HTTP violations`).toEqual({});
  }, 60_000);

  it('WebSocket: thousands of random and mutated frames get only documented close codes and well-formed messages, never a crash', async () => {
    const v = (currentPhase = new Violations());
    const started = Date.now();
    const wsBase = `${gw.url.replace(/^http/, 'ws')}/api/v1/queue/ws`;
    const ALLOWED_CLOSE = new Set<number>([...Object.values(Close), 1000, 1005, 1006, 1009]);
    const SERVER_TYPES = new Set(['welcome', 'position', 'ready', 'admitted', 'expired', 'left', 'paused', 'resumed', 'pong', 'error']);
    // PROTOCOL.md section 3 lists NOT_READY ALREADY_ADMITTED NOT_IN_LINE TOKEN_NOT_FOUND REDIS_UNAVAILABLE INTERNAL BAD_MESSAGE;
    // the enter/message paths also answer RATE_LIMITED, UNAUTHORIZED, FORBIDDEN and DUPLICATE_REQUEST (one place per user).
    // INTERNAL is an unexpected server error: a finding, like a 500.
    const WS_ERROR_CODES = new Set(['NOT_READY', 'ALREADY_ADMITTED', 'NOT_IN_LINE', 'TOKEN_NOT_FOUND', 'REDIS_UNAVAILABLE', 'BAD_MESSAGE', 'RATE_LIMITED', 'UNAUTHORIZED', 'FORBIDDEN', 'DUPLICATE_REQUEST']);
    const TERMINAL: Record<string, number> = { admitted: Close.ADMITTED, left: Close.LEFT, expired: Close.EXPIRED };
    const maxMsg = gw.gateway.config.ws.maxMessageBytes;
    const joinWs = async (sub: string | undefined): Promise<{ status: number; body: { waiting_token?: string }; sub: string | undefined }> => {
      const res = await fetch(`${gw.url}/api/v1/queue/join`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(sub ? { authorization: `Bearer ${jwtOf(sub)}` } : {}) },
        body: JSON.stringify({ event_id: WS_EVENT }),
      });
      return { status: res.status, body: (await res.json()) as { waiting_token?: string }, sub };
    };

    // places for the sockets: half bound to a user (JWT), half anonymous
    const wsPlaces: Place[] = [];
    const joined = await Promise.all(Array.from({ length: 140 }, (_, i) => joinWs(i % 2 ? `ws-user-${i}` : undefined)));
    for (const j of joined) {
      expect(j.status).toBe(202);
      wsPlaces.push(remember(j.body.waiting_token!, j.sub, true)!);
    }
    const httpActive = places.filter((p) => p.event !== WS_EVENT && (p.state === 'waiting' || p.state === 'ready'));

    let frames = 0;
    let sessions = 0;
    let sockets = 0;

    const tokenFor = (r: Rng): { token: string; place?: Place } => {
      const p = r.chance(0.8) || !httpActive.length ? r.pick(wsPlaces) : r.pick(httpActive);
      return r.weighted<() => { token: string; place?: Place }>([
        [60, () => ({ token: p.token, place: p })],
        [5, () => {
          const gone = places.filter((x) => x.state === 'gone' || x.state === 'admitted');
          return gone.length ? { token: r.pick(gone).token } : { token: p.token, place: p };
        }],
        [8, () => ({ token: tokenVariant(r).slice(0, 3000) })],
        [5, () => ({ token: `${r.pick([WS_EVENT, ...FUZZ_EVENTS])}.${r.str(22, TOKEN_CHARS)}` })],
        [4, () => ({ token: r.pick(['', ' ', '.', 'null', '%', p.token.toUpperCase(), `${p.token}x`]) })],
        [3, () => ({ token: r.str(r.range(1, 200), PRINTABLE) })],
      ])();
    };

    const frame = (r: Rng, place: Place | undefined): { data: Buffer | string; binary: boolean; kind: string } => {
      const enterToken = (): Record<string, unknown> => {
        if (r.chance(0.2)) return { type: 'enter' };
        const good = place?.sub ? jwtOf(place.sub) : jwtOf(r.pick(SUBS));
        return { type: 'enter', access_token: r.weighted<() => unknown>([
          [5, () => good],
          [3, () => badJwt(r)],
          [1, () => r.pick([12345, null, true, [], {}, ''])],
          [1, () => 'x'.repeat(r.range(900, 9000))],
        ])() };
      };
      return r.weighted<() => { data: Buffer | string; binary: boolean; kind: string }>([
        [14, () => ({ data: '{"type":"ping"}', binary: false, kind: 'ping-json' })],
        [5, () => ({ data: pack({ type: 'ping' }), binary: true, kind: 'ping-msgpack' })],
        [10, () => ({ data: JSON.stringify(enterToken()), binary: false, kind: 'enter-json' })],
        [3, () => ({ data: pack(enterToken()), binary: true, kind: 'enter-msgpack' })],
        [2, () => (r.chance(0.5) ? { data: '{"type":"leave"}', binary: false, kind: 'leave' } : { data: pack({ type: 'leave' }), binary: true, kind: 'leave' })],
        [14, () => ({ data: mutateJson(r, r.pick<Record<string, unknown>>([{ type: 'ping' }, { type: 'enter' }, { type: 'leave' }, enterToken()])), binary: false, kind: 'mutated-json' })],
        [3, () => ({ data: mutateJson(r, { type: 'ping' }), binary: true, kind: 'mutated-json-as-binary' })],
        [4, () => ({ data: r.str(r.range(1, 600), PRINTABLE), binary: false, kind: 'random-text' })],
        [4, () => ({ data: r.bytes(r.range(1, 600)), binary: false, kind: 'random-bytes-as-text' })],
        [5, () => ({ data: r.bytes(r.range(1, 600)), binary: true, kind: 'random-binary' })],
        [6, () => ({ data: pack(r.pick<unknown>([weirdValue(r), { type: weirdValue(r) }, { type: 'ping', extra: weirdValue(r) }, [{ type: 'ping' }], { TYPE: 'ping' }, new Map([['type', 'ping']]), { type: 'enter', access_token: r.bytes(8) }, 2n ** 63n, -(2n ** 63n), new Date(0), { type: 'ping', n: 1.5e300 }])), binary: true, kind: 'msgpack-value' })],
        [3, () => {
          const b = pack({ type: 'enter', access_token: badJwt(r).slice(0, 300) });
          return { data: b.subarray(0, r.int(b.length)), binary: true, kind: 'msgpack-truncated' };
        }],
        [4, () => ({ data: Buffer.from(r.pick([[0xc1], [0xd4, 0x01, 0x00], [0xd6, 0xff, 0, 0, 0, 1], [0xdd, 0xff, 0xff, 0xff, 0xff], [0xdf, 0, 0, 0, 1, 0xa4, 0x74, 0x79, 0x70, 0x65], [0xc7, 0xff, 0x72], [0x81, 0xa4, 0x74, 0x79, 0x70, 0x65, 0xa4, 0x70, 0x69, 0x6e, 0x67, 0x00], [0xd5, 0x72, 0x00, 0x00], [0x92, 0x90, 0x80], [0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]])), binary: true, kind: 'msgpack-garbage' })],
        [3, () => ({ data: r.chance(0.5) ? 'x'.repeat(r.range(maxMsg + 1, maxMsg + 5000)) : r.bytes(r.range(maxMsg + 1, maxMsg + 5000)), binary: r.chance(0.5), kind: 'oversized' })],
        [1, () => ({ data: JSON.stringify({ type: 'ping', pad: 'p'.repeat(Math.max(0, maxMsg - 30)) }), binary: false, kind: 'just-under-the-limit' })],
        [2, () => ({ data: r.chance(0.5) ? '' : Buffer.alloc(0), binary: r.chance(0.5), kind: 'empty' })],
        [4, () => ({ data: r.pick(['[]', '"ping"', '1', 'null', 'true', '{"type":null}', '{"type":["ping"]}', '{"type":"PING"}', '{"type":"ping"}garbage', ' {"type":"ping"} ', '{"type":"ping","type":"enter"}', '{"__proto__":{"type":"ping"}}', '{"type":"welcome"}', '{"type":"admitted","reservation_token":"x"}']), binary: false, kind: 'json-odd' })],
      ])();
    };

    /** One socket: open, send frames, close in one of several ways; every message and the close checked. */
    const socket = (r: Rng, i: string, token: string, place: Place | undefined, behaviour: 'normal' | 'quick' | 'instant'): Promise<void> =>
      new Promise((resolve) => {
        const protocols = r.weighted<string[] | undefined>([
          [4, undefined],
          [4, ['waiting-room.v1.json']],
          [3, ['waiting-room.v1.msgpack']],
          [1, ['waiting-room.v1.json', 'waiting-room.v1.msgpack']],
          [1, ['junk-protocol']],
          [1, ['junk-protocol', 'waiting-room.v1.json']],
        ]);
        const q = r.chance(0.95) ? `?token=${encodeQueryValue(r, token)}` : r.chance(0.5) ? '' : `?${query(r)}`;
        let ws: WebSocket;
        try {
          ws = new WebSocket(wsBase + q, protocols, { handshakeTimeout: 4000, maxPayload: 1 << 20 });
        } catch (err) {
          inc(wsCloseCounts, 'client-rejected');
          resolve();
          return;
        }
        sockets++;
        const junkOnly = protocols?.length === 1 && protocols[0] === 'junk-protocol';
        let sentToken = '';
        try {
          sentToken = new URLSearchParams(q.slice(1)).get('token') ?? '';
        } catch {
          sentToken = '';
        }
        const where = `socket ${i} token=${JSON.stringify(clip(token, 80))} protocols=${JSON.stringify(protocols)}`;
        const msgs: { type?: unknown }[] = [];
        let clientClosed = false;
        let expectClose: number | undefined;
        let terminalAt = -1;
        let settled = false;
        const log: string[] = [];
        const guard = setTimeout(() => {
          if (!settled) {
            v.add('websocket not closed within 6 s of opening', `${where} sent ${log.join(' ')}`);
            clientClosed = true;
            ws.terminate();
          }
        }, 6000);
        const clientClose = (how: () => void): void => {
          if (settled) return;
          clientClosed = true;
          how();
          // the server must answer a close frame promptly
          setTimeout(() => {
            if (!settled) {
              v.add('server did not answer the close handshake within 2 s', where);
              ws.terminate();
            }
          }, 2000);
        };
        ws.on('error', (err) => {
          const msg = err.message;
          if (/handshake has timed out/i.test(msg)) v.add('websocket handshake timed out (hang)', where);
          else if (/Unexpected server response/i.test(msg)) v.add('websocket handshake refused (the handshake always succeeds)', `${where}: ${msg}`);
          else if (/no subprotocol/i.test(msg) && !junkOnly) v.add('server chose no subprotocol although a known one was offered', where);
          inc(wsClientErrors, msg.replace(/\d+/g, 'N').slice(0, 60));
        });
        ws.on('message', (data: Buffer, isBinary: boolean) => {
          let m: { type?: unknown; [k: string]: unknown };
          try {
            m = (isBinary ? unpack(data) : JSON.parse(data.toString('utf8'))) as typeof m;
          } catch {
            v.add('undecodable server message', `${where}: ${clip(data.toString('latin1'), 200)}`);
            return;
          }
          const msgpack = ws.protocol === 'waiting-room.v1.msgpack';
          if (isBinary !== msgpack) v.add('server message in the wrong format for the negotiated subprotocol', `${where} negotiated=${ws.protocol} binary=${isBinary}`);
          msgs.push(m);
          inc(wsServerTypes, String(m?.type));
          if (!m || typeof m !== 'object' || typeof m.type !== 'string' || !SERVER_TYPES.has(m.type)) {
            v.add('server message of an undocumented type', `${where}: ${clip(JSON.stringify(m), 200)}`);
            return;
          }
          if (msgs.length === 1 && m.type !== 'welcome') v.add('first server message is not welcome', `${where}: ${clip(JSON.stringify(m), 200)}`);
          if (m.type === 'welcome') {
            if (m.v !== 1) v.add('welcome without v:1', where);
            if (m.event_id !== sentToken.split('.')[0]) v.add("welcome for another event than the token's", `${where}: ${m.event_id}`);
            if (typeof m.position !== 'number' || m.position < 1) v.add('welcome without a position >= 1', `${where}: ${clip(JSON.stringify(m), 200)}`);
          }
          if (terminalAt >= 0) v.add('server message after a terminal message', `${where}: ${clip(JSON.stringify(m), 200)} after ${JSON.stringify(msgs[terminalAt])}`);
          if (m.type === 'error') {
            if (!WS_ERROR_CODES.has(String(m.code))) v.add(`websocket error with code ${String(m.code)}`, `${where}: ${clip(JSON.stringify(m), 300)} after ${log.join(' ')}`);
            if (m.code === 'BAD_MESSAGE' && terminalAt < 0) {
              terminalAt = msgs.length - 1;
              expectClose ??= Close.BAD_MESSAGE;
            }
          }
          if (m.type in TERMINAL && terminalAt < 0) {
            terminalAt = msgs.length - 1;
            expectClose ??= TERMINAL[m.type];
          }
          if (m.type === 'admitted' && m.reservation_token !== undefined) recordAdmission(v, m.reservation_token, where);
        });
        ws.on('close', (code: number) => {
          settled = true;
          clearTimeout(guard);
          inc(wsCloseCounts, clientClosed ? `${code} (after client close)` : code);
          if (!clientClosed) {
            if (!ALLOWED_CLOSE.has(code)) v.add(`undocumented close code ${code}`, `${where} sent ${log.join(' ')}`);
            if (expectClose !== undefined && code !== expectClose) v.add(`close code ${code} after a message announcing ${expectClose}`, `${where} sent ${log.join(' ')}; got ${clip(JSON.stringify(msgs.slice(-3)), 400)}`);
          }
          if (place && msgs.some((m) => m.type === 'left')) place.state = 'gone';
          resolve();
        });
        if (behaviour === 'instant') {
          clientClose(() => (r.chance(0.5) ? ws.terminate() : ws.close()));
          return;
        }
        ws.on('open', async () => {
          const n = behaviour === 'quick' ? r.int(2) : r.int(17);
          for (let k = 0; k < n; k++) {
            if (ws.readyState !== WebSocket.OPEN || clientClosed) break;
            let f: { data: Buffer | string; binary: boolean; kind: string };
            try {
              f = frame(r, place);
            } catch (err) {
              inc(wsFrameKinds, `not generated: ${(err as Error).message.slice(0, 40)}`);
              continue;
            }
            log.push(f.kind);
            inc(wsFrameKinds, f.kind);
            frames++;
            ws.send(f.data, { binary: f.binary }, () => undefined);
            if (r.chance(0.5)) await sleep(r.int(30));
          }
          if (ws.readyState !== WebSocket.OPEN) return;
          const end = r.weighted<string>([
            [4, 'wait-then-close'],
            [2, 'close'],
            [1, 'close-code'],
            [1, 'terminate'],
            [2, 'short-wait-then-close'],
          ]);
          if (behaviour === 'quick' || end === 'terminate') return clientClose(() => ws.terminate());
          if (end === 'close') return clientClose(() => ws.close(r.chance(0.5) ? 1000 : undefined));
          if (end === 'close-code') return clientClose(() => ws.close(r.range(3000, 4999), r.str(r.range(0, 100), PRINTABLE)));
          await sleep(end === 'wait-then-close' ? 600 : 150);
          if (ws.readyState === WebSocket.OPEN) clientClose(() => ws.close(1000));
        });
      });

    const session = async (i: number): Promise<void> => {
      const r = new Rng(mix(SEED ^ 0x5f5f5f5f, i));
      const mode = r.weighted<string>([
        [70, 'single'],
        [10, 'tabs'],
        [10, 'flap'],
        [10, 'instant'],
      ]);
      let { token, place } = tokenFor(r);
      if (r.chance(0.2)) {
        // a fresh place now and then: the storm admits, expires and removes the earlier ones
        const j = await joinWs(r.chance(0.5) ? `ws-fresh-${i}` : undefined);
        if (j.status !== 202 || !j.body.waiting_token) v.add('join for a socket refused', `${j.status} ${JSON.stringify(j.body)}`);
        else {
          place = remember(j.body.waiting_token, j.sub, true);
          token = j.body.waiting_token;
          if (place) wsPlaces.push(place);
        }
      }
      if (mode === 'tabs') {
        await Promise.all(Array.from({ length: r.range(2, 3) }, (_, k) => socket(r, `${i}.${k}`, token, place, 'normal')));
      } else if (mode === 'flap') {
        for (let k = r.range(3, 6); k > 0; k--) await socket(r, `${i}.${k}`, token, place, r.chance(0.5) ? 'instant' : 'quick');
      } else await socket(r, String(i), token, place, mode === 'instant' ? 'instant' : 'normal');
      sessions++;
    };

    let nextSession = 0;
    const deadline = started + WS_BUDGET_MS;
    await Promise.all(
      Array.from({ length: WS_WORKERS }, async () => {
        while (nextSession < WS_MAX_SESSIONS && Date.now() < deadline) await session(nextSession++);
      }),
    );
    // every socket the storm opened is gone from the server too
    const until = Date.now() + 5000;
    while (gw.gateway.sockets.open.size > 0 && Date.now() < until) await sleep(50);
    if (gw.gateway.sockets.open.size > 0) v.add('server still holds sockets after every client closed', `${gw.gateway.sockets.open.size} open`);
    const after = await checkAllEvents(v, 'right after the WebSocket storm');
    summary.ws = { sessions, sockets, frames, seconds: (Date.now() - started) / 1000, events_registered: after.events, in_line_after: after.inLine, violations: v.total };
    expect(frames).toBeGreaterThan(300); // the storm really ran (load-dependent count, printed in the summary)
    expect(v.report(), `seed ${SEED}: WebSocket storm violations`).toEqual({});
  }, 60_000);

  it('after the storm: the gateway still serves, and every event the storm touched keeps its invariants in Redis', async () => {
    const v = (currentPhase = new Violations());
    const started = Date.now();
    expect((await fetch(`${gw.url}/healthz`)).status).toBe(200);
    expect((await fetch(`${gw.url}/readyz`)).status).toBe(200);
    const j = await fetch(`${gw.url}/api/v1/queue/join`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${jwtOf('fresh-after-storm')}` },
      body: JSON.stringify({ event_id: 'fz-a' }),
    });
    expect(j.status).toBe(202);
    const fresh = ((await j.json()) as { waiting_token: string }).waiting_token;
    const s = await fetch(`${gw.url}/api/v1/queue/status?token=${encodeURIComponent(fresh)}`);
    expect(s.status).toBe(200);
    expect(['waiting', 'ready']).toContain(((await s.json()) as { status: string }).status);
    // and a socket still gets its welcome
    const welcome = await new Promise<{ type?: string; position?: number }>((resolve, reject) => {
      const ws = new WebSocket(`${gw.url.replace(/^http/, 'ws')}/api/v1/queue/ws?token=${encodeURIComponent(fresh)}`, ['waiting-room.v1.json']);
      const t = setTimeout(() => reject(new Error('no welcome within 3 s')), 3000);
      ws.on('message', (d: Buffer) => {
        clearTimeout(t);
        resolve(JSON.parse(d.toString()) as { type?: string });
        ws.close(1000);
      });
      ws.on('error', reject);
    });
    expect(welcome.type).toBe('welcome');

    // structural invariants of every registered event, on atomic snapshots
    const all = await checkAllEvents(v, 'after the storm');
    expect(all.events).toBeGreaterThanOrEqual(MAIN_EVENTS.length + 1);

    // positions: store.status (what polls answer) equals ZRANK + 1, read while no exit happened in between
    const store = gw.gateway.store;
    let compared = 0;
    let unstable = 0;
    for (const e of await registeredEvents()) {
      const k = eventKeys(prefix, e);
      const members = await rc.zrange(k.q, 0, -1);
      const r = new Rng(mix(SEED, 0xbeef));
      const sample = members.length <= 25 ? members : Array.from({ length: 25 }, () => r.pick(members));
      for (const tok of sample) {
        for (let attempt = 0; attempt < 6; attempt++) {
          const before = (await rc.multi().hget(k.stats, 'xseq').zrank(k.q, tok).exec())!;
          const snap = await store.status(tok, 0);
          const afterRead = (await rc.multi().hget(k.stats, 'xseq').exec())!;
          const x1 = String(before[0]![1] ?? '0');
          const x2 = String(afterRead[0]![1] ?? '0');
          const zrank = before[1]![1] as number | null;
          if (x1 !== x2 || !snap || String(snap.xseq) !== x1) {
            if (attempt === 5) unstable++;
            continue;
          }
          if (zrank === null) {
            if (snap.state === 'waiting' || snap.state === 'ready') v.add('invariant: status says in line but ZRANK has no rank', `${e} ${tok} ${snap.state}`);
          } else {
            compared++;
            if (snap.rank + 1 !== zrank + 1) v.add('invariant: position from status equals ZRANK + 1', `${e} ${tok}: status position ${snap.rank + 1}, ZRANK+1 ${zrank + 1}`);
            if (snap.state !== 'waiting' && snap.state !== 'ready') v.add('invariant: a user with a rank is waiting or ready', `${e} ${tok} ${snap.state}`);
          }
          break;
        }
      }
    }

    // polls answered from this instance's memory (kept exact from tick messages
    // through all of the above) equal the recount (1 + the people still waiting
    // ahead: ZRANK - ZCARD(ready) + 1, or 1 once ready) once the last exit ahead
    // has reached it: compare only users whose ZRANK and the ready count did not
    // change over a window of several ticks around the poll (ranks only ever
    // fall, so an unchanged rank means nobody ahead left meanwhile). A mismatch
    // must repeat to count.
    let memoryCompared = 0;
    const pollPosition = async (tok: string): Promise<number | undefined> => {
      const res = await fetch(`${gw.url}/api/v1/queue/status?token=${encodeURIComponent(tok)}`);
      return res.status === 200 ? ((await res.json()) as { position: number }).position : undefined;
    };
    /** [rank or null per token, ready count], read at one instant */
    const ranksOf = async (k: ReturnType<typeof eventKeys>, toks: string[]): Promise<[(number | null)[], number]> => {
      let m = rc.multi().zcard(k.ready);
      for (const t of toks) m = m.zrank(k.q, t);
      const out = (await m.exec())!.map(([, x]) => x as number | null);
      return [out.slice(1), out[0] ?? 0];
    };
    const recount = (rank: number, ready: number): number => (rank < ready ? 1 : rank - ready + 1);
    for (const e of [...MAIN_EVENTS, WS_EVENT]) {
      const k = eventKeys(prefix, e);
      let pending = await rc.zrange(k.q, 0, 19);
      if (!pending.length) continue;
      await Promise.all(pending.map(pollPosition)); // attaches them to this instance if they were not already
      const mismatched = new Map<string, string>();
      for (let attempt = 0; attempt < 5 && pending.length; attempt++) {
        const [r0, ready0] = await ranksOf(k, pending);
        await sleep(250);
        const polled = await Promise.all(pending.map(pollPosition));
        await sleep(100);
        const [r1, ready1] = await ranksOf(k, pending);
        const again: string[] = [];
        pending.forEach((tok, i) => {
          const pos = polled[i];
          const rank = r1[i];
          if (rank === null || rank === undefined || pos === undefined) return; // gone from the line: nothing to compare
          if (r0[i] !== rank || ready0 !== ready1) {
            again.push(tok); // someone ahead left or was called during the window: try again
            return;
          }
          const want = recount(rank, ready1);
          if (pos === want) {
            memoryCompared++;
            return;
          }
          const was = mismatched.get(tok);
          if (was) v.add('invariant: a polled position equals the recount (rank and ready count unchanged for several ticks)', `${e} ${tok}: poll says ${pos}, recount is ${want} (before: ${was})`);
          else {
            mismatched.set(tok, `${pos} vs ${want}`);
            again.push(tok);
          }
        });
        pending = again;
      }
    }

    // admin stats: in_line equals ZCARD q (read while nobody joined or left in between)
    let statsCompared = 0;
    for (const e of await registeredEvents()) {
      const k = eventKeys(prefix, e);
      for (let attempt = 0; attempt < 10; attempt++) {
        const a = (await rc.multi().get(k.seq).hget(k.stats, 'xseq').zcard(k.q).exec())!;
        const res = await fetch(`${gw.url}/api/v1/admin/events/${e}/stats`, { headers: { authorization: `Bearer ${ADMIN}` } });
        const b = (await rc.multi().get(k.seq).hget(k.stats, 'xseq').exec())!;
        if (res.status !== 200) {
          v.add('admin stats of a registered event not 200', `${e}: ${res.status} ${await res.text()}`);
          break;
        }
        const body = (await res.json()) as { in_line: number; waiting: number; ready: number; joined_total: number };
        if (a[0]![1] !== b[0]![1] || a[1]![1] !== b[1]![1]) continue;
        statsCompared++;
        if (body.in_line !== a[2]![1]) v.add('invariant: admin stats in_line equals ZCARD q', `${e}: in_line ${body.in_line}, ZCARD ${String(a[2]![1])}`);
        if (body.waiting + body.ready !== body.in_line) v.add('invariant: admin stats waiting + ready = in_line', `${e}: ${JSON.stringify(body)}`);
        if (body.joined_total !== Number(a[0]![1] ?? 0)) v.add('invariant: admin stats joined_total equals the sequence', `${e}: ${body.joined_total} vs ${String(a[0]![1])}`);
        break;
      }
    }

    summary.after = { events: all.events, in_line: all.inLine, positions_compared: compared, memory_positions_compared: memoryCompared, positions_unstable_skipped: unstable, stats_compared: statsCompared, seconds: (Date.now() - started) / 1000, violations: v.total };
    summary.uncaught_exceptions = uncaught.length;
    expect(compared, 'no position could be compared: the check would prove nothing').toBeGreaterThan(0);
    expect(statsCompared).toBeGreaterThan(0);
    expect(v.report(), `seed ${SEED}: invariant violations after the storm`).toEqual({});
    expect(uncaught.map((e) => (e as Error)?.stack?.split('\n').slice(0, 3).join(' | ') ?? String(e)), `seed ${SEED}: uncaught exceptions in the gateway during the whole run`).toEqual([]);
  }, 60_000);
});
