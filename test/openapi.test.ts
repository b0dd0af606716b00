import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { EmbeddedRedis } from '../src/redis/embedded.js';
import { errorStatus } from '../src/errors.js';
import { PAGE_CSP } from '../src/http/static.js';
import { call, startInProcessGateway, startRedis, type InProcessGateway, type Reply } from './helpers/harness.js';

// The OpenAPI document served at /openapi.json against a real gateway: it
// describes exactly the routes the gateway registered (no more, no fewer),
// its $refs resolve, its error tables agree with src/errors.ts and with what
// the gateway answers, and /docs is a page that loads only same-origin assets.

type Json = Record<string, unknown>;
const ADMIN = 'openapi-test-admin-token-0123456789';
const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'options', 'head', 'trace'] as const;

let redis: EmbeddedRedis;
let gw: InProcessGateway;
let doc: Json;
let docReply: Response;

beforeAll(async () => {
  redis = await startRedis();
  // every optional route on: the admin API (ADMIN_TOKEN) and development tokens
  gw = await startInProcessGateway(redis.address, { ADMIN_TOKEN: ADMIN, DEV_TOKENS_ENABLED: 'true', QUEUE_AUTO_CREATE_EVENTS: 'true' });
  docReply = await fetch(`${gw.url}/openapi.json`);
  const text = await docReply.text();
  // a missing document (404 before the docs routes are wired) fails every test below
  doc = docReply.status === 200 ? (JSON.parse(text) as Json) : {};
});
afterAll(async () => {
  // a gateway that fails to stop must not leave its redis-server behind
  try {
    await gw?.stop();
  } finally {
    await redis?.stop();
  }
});

const paths = (): Record<string, Json> => (doc.paths ?? {}) as Record<string, Json>;

/** Every operation of the document: [METHOD, path, operation]. */
function operations(): [string, string, Json][] {
  const out: [string, string, Json][] = [];
  for (const [p, item] of Object.entries(paths())) {
    for (const m of METHODS) if (item[m]) out.push([m.toUpperCase(), p, item[m] as Json]);
  }
  return out;
}

function resolvePointer(ref: string): unknown {
  if (!ref.startsWith('#/')) return undefined;
  let node: unknown = doc;
  for (const raw of ref.slice(2).split('/')) {
    const key = decodeURIComponent(raw).replace(/~1/g, '/').replace(/~0/g, '~');
    if (node === null || typeof node !== 'object' || !(key in (node as Json))) return undefined;
    node = (node as Json)[key];
  }
  return node;
}

const deref = (s: unknown): Json => {
  let n = s as Json;
  for (let i = 0; i < 10 && n && typeof n.$ref === 'string'; i++) n = resolvePointer(n.$ref) as Json;
  return n;
};

/** The required property names of a (possibly $ref'd, allOf'd) object schema. */
function requiredOf(s: unknown): string[] {
  const n = deref(s);
  const own = Array.isArray(n.required) ? (n.required as string[]) : [];
  const all = Array.isArray(n.allOf) ? (n.allOf as unknown[]).flatMap(requiredOf) : [];
  return [...own, ...all];
}

/** Static assets and pages' files are not API: web/ files, the client library, the docs UI's assets. */
const API_FILES = new Set(['/openapi.json', '/page-config.json', '/.well-known/jwks.json']);
const isStaticAsset = (p: string): boolean =>
  /^\/(assets|client|docs\/assets)(\/|$)/.test(p) || (/\/[^/]*\.[A-Za-z0-9]+$/.test(p) && !API_FILES.has(p));
const toTemplate = (pattern: string): string => pattern.replace(/:([A-Za-z_][A-Za-z0-9_]*)/g, '{$1}');

function op(method: string, path: string): Json {
  const o = paths()[path]?.[method.toLowerCase()] as Json | undefined;
  if (!o) throw new Error(`${method} ${path} is not documented`);
  return o;
}

/** The error codes the document lists for an operation and status. */
function documentedCodes(method: string, path: string, status: number): string[] {
  const r = (op(method, path).responses as Record<string, Json>)[String(status)];
  return (r?.['x-error-codes'] as string[] | undefined) ?? [];
}

/** The status and code the gateway answered are among those documented for the operation. */
function expectDocumentedError(r: Reply, method: string, path: string, status: number, code: string): void {
  expect({ status: r.status, code: (r.body as { error?: { code?: string } }).error?.code }).toEqual({ status, code });
  expect(documentedCodes(method, path, status), `${method} ${path} ${status}`).toContain(code);
}

describe('the document', () => {
  it('is served as JSON at /openapi.json', () => {
    expect(docReply.status).toBe(200);
    expect(docReply.headers.get('content-type')).toMatch(/^application\/json/);
  });

  it('has the basic OpenAPI 3.1 structure', () => {
    expect(doc.openapi).toMatch(/^3\.1\.\d+$/);
    const info = doc.info as Json;
    expect(typeof info?.title).toBe('string');
    expect(typeof info?.version).toBe('string');
    expect(Object.keys(paths()).length).toBeGreaterThan(10);
    for (const p of Object.keys(paths())) {
      expect(p.startsWith('/'), p).toBe(true);
      expect(p, 'OpenAPI templates use {param}, not :param').not.toMatch(/:/);
    }
    const components = doc.components as Json;
    expect(components).toBeTypeOf('object');
    const schemes = components.securitySchemes as Record<string, Json>;
    expect(schemes.bearerAuth).toMatchObject({ type: 'http', scheme: 'bearer', bearerFormat: 'JWT' });
    expect(schemes.adminToken).toMatchObject({ type: 'http', scheme: 'bearer' });
    // the shared error shape, with every code of src/errors.ts
    const error = deref((components.schemas as Json).Error);
    expect(requiredOf(error)).toEqual(['error']);
    const inner = (error.properties as Record<string, Json>).error!;
    expect(inner.required).toEqual(expect.arrayContaining(['code', 'message', 'trace_id']));
    expect(((inner.properties as Record<string, Json>).code!.enum as string[]).sort()).toEqual(Object.keys(errorStatus).sort());
    // the request-id, trace-context and idempotency headers
    const params = components.parameters as Record<string, Json>;
    const names = Object.values(params).map((p) => `${String(p.in)}:${String(p.name).toLowerCase()}`);
    expect(names).toEqual(expect.arrayContaining(['header:x-request-id', 'header:traceparent', 'header:idempotency-key']));
  });

  it('resolves every $ref', () => {
    const refs: string[] = [];
    (function walk(n: unknown): void {
      if (Array.isArray(n)) n.forEach(walk);
      else if (n && typeof n === 'object') {
        for (const [k, v] of Object.entries(n)) {
          if (k === '$ref' && typeof v === 'string') refs.push(v);
          else walk(v);
        }
      }
    })(doc);
    expect(refs.length).toBeGreaterThan(50);
    const broken = [...new Set(refs)].filter((r) => resolvePointer(r) === undefined);
    expect(broken).toEqual([]);
  });

  it('has unique operationIds, a success response per operation, and declares every path parameter', () => {
    expect(operations().length).toBeGreaterThan(20);
    const ids = operations().map(([, , o]) => o.operationId);
    expect(new Set(ids).size).toBe(ids.length);
    for (const [m, p, o] of operations()) {
      const statuses = Object.keys(o.responses as Json);
      expect(statuses.some((s) => /^[123]\d\d$/.test(s)), `${m} ${p} has no success response`).toBe(true);
      const declared = ((o.parameters ?? []) as unknown[]).map(deref).filter((x) => x.in === 'path').map((x) => x.name);
      const inTemplate = [...p.matchAll(/\{([^}]+)\}/g)].map((x) => x[1]);
      expect(declared.sort(), `${m} ${p}`).toEqual(inTemplate.sort());
    }
  });

  it('gives every error code the status src/errors.ts gives it, with the Error body', () => {
    expect(operations().length).toBeGreaterThan(20);
    for (const [m, p, o] of operations()) {
      for (const [status, r] of Object.entries(o.responses as Record<string, Json>)) {
        const codes = (r['x-error-codes'] as string[] | undefined) ?? [];
        for (const c of codes) expect(errorStatus[c as keyof typeof errorStatus], `${m} ${p} ${status} ${c}`).toBe(Number(status));
        if (codes.length && Number(status) >= 400) {
          const s = ((r.content as Json)['application/json'] as Json).schema as Json;
          expect(JSON.stringify(s), `${m} ${p} ${status}`).toContain('#/components/schemas/Error');
        }
      }
    }
  });

  it('documents the rate-limit headers on every 429 and Retry-After on 503', () => {
    let seen429 = 0;
    for (const [m, p, o] of operations()) {
      for (const [status, r] of Object.entries(o.responses as Record<string, Json>)) {
        const headers = Object.keys((r.headers ?? {}) as Json);
        if (status === '429') {
          seen429++;
          expect(headers, `${m} ${p}`).toEqual(expect.arrayContaining(['X-RateLimit-Limit', 'X-RateLimit-Remaining', 'X-RateLimit-Reset', 'Retry-After']));
        }
        if (status === '503' && (r['x-error-codes'] as string[] | undefined)?.length) expect(headers, `${m} ${p}`).toContain('Retry-After');
      }
    }
    expect(seen429).toBeGreaterThan(10);
  });

  it('requires Idempotency-Key exactly where the gateway does', () => {
    const required = operations()
      .filter(([, , o]) => ((o.parameters ?? []) as unknown[]).map(deref).some((x) => x.name === 'Idempotency-Key' && x.required === true))
      .map(([m, p]) => `${m} ${p}`)
      .sort();
    expect(required).toEqual(
      [
        'POST /api/v1/payment/intent',
        'POST /api/v1/payment/process',
        'POST /api/v1/reservations',
        'POST /api/v1/reservations/{id}/cancel',
        'POST /api/v1/reservations/{id}/confirm',
      ].sort(),
    );
  });
});

describe('the document and the routes stay in sync', () => {
  it('documents every registered route, and registers every documented one', () => {
    const registered = gw.gateway.routes();
    expect(registered.length).toBeGreaterThan(10);
    const api = [...new Set(registered.filter((r) => !isStaticAsset(r.pattern)).map((r) => `${r.method.toUpperCase()} ${toTemplate(r.pattern)}`))].sort();
    // WebSocket upgrades are not routes of the HTTP router; they are checked by connecting below
    const documented = operations()
      .filter(([, , o]) => o['x-websocket'] !== true)
      .map(([m, p]) => `${m} ${p}`)
      .sort();
    expect(api).toContain('POST /api/v1/queue/join');
    expect(api).toContain('GET /openapi.json');
    expect(documented).toEqual(api);
  });

  it('documents WebSocket endpoints that really upgrade', async () => {
    const ws = operations().filter(([, , o]) => o['x-websocket'] === true);
    expect(ws.map(([m, p]) => `${m} ${p}`)).toContain('GET /api/v1/queue/ws');
    for (const [m, p, o] of ws) {
      expect(m).toBe('GET');
      expect(Object.keys(o.responses as Json)).toContain('101');
      // without the upgrade headers the path is no HTTP route, as documented
      const plain = await call(gw.url, 'GET', p);
      expectDocumentedError(plain, m, p, 404, 'NOT_FOUND');
      // an unknown token is accepted by the handshake and closed at once with a 4xxx code
      const sock = new WebSocket(`${gw.url.replace(/^http/, 'ws')}${p}?token=not-a-token`);
      const outcome = await new Promise<{ opened: boolean; code: number }>((resolve) => {
        let opened = false;
        sock.once('open', () => (opened = true));
        sock.once('close', (code) => resolve({ opened, code }));
        sock.once('error', () => resolve({ opened, code: -1 }));
      });
      expect(outcome.opened, p).toBe(true);
      expect(outcome.code, p).toBeGreaterThanOrEqual(4000);
      expect(Object.keys((o['x-close-codes'] ?? {}) as Json), p).toContain(String(outcome.code));
    }
    const queueWs = op('GET', '/api/v1/queue/ws');
    expect(JSON.stringify(queueWs)).toContain('PROTOCOL.md');
  });
});

describe('the document tells what the gateway answers', () => {
  const admin = { authorization: `Bearer ${ADMIN}` };

  /** The body has every property the documented success schema requires. */
  function expectDocumentedBody(r: Reply, method: string, path: string): void {
    const resp = (op(method, path).responses as Record<string, Json>)[String(r.status)];
    expect(resp, `${method} ${path} answered ${r.status}: ${r.text}`).toBeDefined();
    const schemaOf = ((resp!.content as Json)['application/json'] as Json).schema;
    for (const k of requiredOf(schemaOf)) expect(r.body, `${method} ${path} ${r.status}`).toHaveProperty(k);
  }

  it('error paths', async () => {
    const u = gw.url;
    expectDocumentedError(await call(u, 'POST', '/api/v1/queue/join', {}), 'POST', '/api/v1/queue/join', 400, 'MISSING_EVENT_ID');
    expectDocumentedError(await call(u, 'POST', '/api/v1/queue/join', 'x', { 'content-type': 'text/plain' }), 'POST', '/api/v1/queue/join', 415, 'UNSUPPORTED_MEDIA_TYPE');
    expectDocumentedError(await call(u, 'POST', '/api/v1/queue/join', '{', {}), 'POST', '/api/v1/queue/join', 400, 'INVALID_JSON');
    expectDocumentedError(await call(u, 'GET', '/api/v1/queue/status'), 'GET', '/api/v1/queue/status', 400, 'MISSING_TOKEN');
    expectDocumentedError(await call(u, 'GET', '/api/v1/queue/status?token=nope'), 'GET', '/api/v1/queue/status', 404, 'TOKEN_NOT_FOUND');
    expectDocumentedError(await call(u, 'POST', '/api/v1/queue/enter', {}), 'POST', '/api/v1/queue/enter', 400, 'MISSING_TOKEN');
    expectDocumentedError(await call(u, 'DELETE', '/api/v1/queue/leave'), 'DELETE', '/api/v1/queue/leave', 400, 'MISSING_TOKEN');
    expectDocumentedError(await call(u, 'GET', '/api/v1/admin/events'), 'GET', '/api/v1/admin/events', 401, 'UNAUTHORIZED');
    expectDocumentedError(await call(u, 'GET', '/api/v1/admin/events/no-such-event', undefined, admin), 'GET', '/api/v1/admin/events/{id}', 404, 'EVENT_NOT_FOUND');
    expectDocumentedError(await call(u, 'GET', '/api/v1/admin/events/no-such-event/stats', undefined, admin), 'GET', '/api/v1/admin/events/{id}/stats', 404, 'EVENT_NOT_FOUND');
    expectDocumentedError(await call(u, 'PUT', '/api/v1/admin/events/e1', { bogus: 1 }, admin), 'PUT', '/api/v1/admin/events/{id}', 400, 'INVALID_REQUEST');
    expectDocumentedError(await call(u, 'POST', '/api/v1/reservations', {}), 'POST', '/api/v1/reservations', 400, 'IDEMPOTENCY_KEY_REQUIRED');
    expectDocumentedError(await call(u, 'GET', '/api/v1/reservations/r1'), 'GET', '/api/v1/reservations/{id}', 401, 'UNAUTHORIZED');
    expectDocumentedError(await call(u, 'GET', '/api/v1/payment/p1/status'), 'GET', '/api/v1/payment/{id}/status', 401, 'UNAUTHORIZED');
    const key = { 'idempotency-key': 'openapi-test-key-1' };
    expectDocumentedError(await call(u, 'POST', '/api/v1/payment/intent', {}, key), 'POST', '/api/v1/payment/intent', 401, 'UNAUTHORIZED');
    expectDocumentedError(await call(u, 'POST', '/api/v1/payment/process', {}, key), 'POST', '/api/v1/payment/process', 401, 'UNAUTHORIZED');
    expectDocumentedError(await call(u, 'POST', '/api/v1/reservations/r1/confirm', {}, key), 'POST', '/api/v1/reservations/{id}/confirm', 401, 'UNAUTHORIZED');
    expectDocumentedError(await call(u, 'POST', '/api/v1/reservations/r1/cancel', {}, key), 'POST', '/api/v1/reservations/{id}/cancel', 401, 'UNAUTHORIZED');
    expectDocumentedError(await call(u, 'POST', '/api/v1/dev/token', { sub: 'no spaces allowed' }), 'POST', '/api/v1/dev/token', 400, 'INVALID_REQUEST');
    // with a user JWT the request reaches the backend simulator, whose in-band NOT_FOUND maps to 404
    const jwt = (await call(u, 'POST', '/api/v1/dev/token', { sub: 'openapi-user' })).body.access_token as string;
    const bearer = { authorization: `Bearer ${jwt}` };
    expectDocumentedError(await call(u, 'GET', '/api/v1/reservations/no-such-reservation', undefined, bearer), 'GET', '/api/v1/reservations/{id}', 404, 'NOT_FOUND');
    expectDocumentedError(await call(u, 'POST', '/api/v1/payment/intent', { reservation_id: 'r1', amount: 0 }, { ...bearer, 'idempotency-key': 'openapi-test-key-2' }), 'POST', '/api/v1/payment/intent', 400, 'INVALID_AMOUNT');
  });

  it('success bodies carry every documented required field', async () => {
    const u = gw.url;
    const put = await call(u, 'PUT', '/api/v1/admin/events/openapi-ev', { rate: 100, burst: 10 }, admin);
    expect(put.status).toBe(201);
    expectDocumentedBody(put, 'PUT', '/api/v1/admin/events/{id}');
    expectDocumentedBody(await call(u, 'PUT', '/api/v1/admin/events/openapi-ev', { rate: 100 }, admin), 'PUT', '/api/v1/admin/events/{id}');
    expectDocumentedBody(await call(u, 'GET', '/api/v1/admin/events/openapi-ev', undefined, admin), 'GET', '/api/v1/admin/events/{id}');
    const joined = await call(u, 'POST', '/api/v1/queue/join', { event_id: 'openapi-ev' });
    expectDocumentedBody(joined, 'POST', '/api/v1/queue/join');
    const token = joined.body.waiting_token as string;
    expectDocumentedBody(await call(u, 'GET', `/api/v1/queue/status?token=${encodeURIComponent(token)}`), 'GET', '/api/v1/queue/status');
    expectDocumentedBody(await call(u, 'GET', '/api/v1/admin/events/openapi-ev/stats', undefined, admin), 'GET', '/api/v1/admin/events/{id}/stats');
    const list = await call(u, 'GET', '/api/v1/admin/events', undefined, admin);
    expectDocumentedBody(list, 'GET', '/api/v1/admin/events');
    const summary = (list.body.events as Json[]).find((e) => e.event_id === 'openapi-ev');
    for (const k of requiredOf((doc.components as Json & { schemas: Json }).schemas.EventSummary)) expect(summary).toHaveProperty(k);
    expectDocumentedBody(await call(u, 'DELETE', `/api/v1/queue/leave?token=${encodeURIComponent(token)}`), 'DELETE', '/api/v1/queue/leave');
    expectDocumentedBody(await call(u, 'POST', '/api/v1/dev/token', {}), 'POST', '/api/v1/dev/token');
    expectDocumentedBody(await call(u, 'GET', '/.well-known/jwks.json'), 'GET', '/.well-known/jwks.json');
    expectDocumentedBody(await call(u, 'GET', '/page-config.json'), 'GET', '/page-config.json');
    expectDocumentedBody(await call(u, 'GET', '/healthz'), 'GET', '/healthz');
    expectDocumentedBody(await call(u, 'GET', '/readyz'), 'GET', '/readyz');
    expectDocumentedBody(await call(u, 'GET', '/version'), 'GET', '/version');
  });
});

describe('/docs', () => {
  it('is an HTML page that loads only same-origin assets, under the page CSP, with no inline code', async () => {
    const r = await fetch(`${gw.url}/docs`);
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toMatch(/^text\/html/);
    expect(r.headers.get('content-security-policy')).toBe(PAGE_CSP);
    const html = await r.text();
    const refs = [...html.matchAll(/\b(?:src|href)\s*=\s*["']([^"']*)["']/gi)].map((m) => m[1]!);
    expect(refs.length).toBeGreaterThan(2);
    for (const ref of refs) {
      // same origin: an absolute path or a relative reference (never //host or scheme:), or an empty data: URL (no request at all)
      expect(ref === 'data:,' || (!/^[a-z][a-z0-9+.-]*:/i.test(ref) && !ref.startsWith('//')), ref).toBe(true);
    }
    // no inline scripts or styles (the CSP would refuse them anyway)
    for (const m of html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/gi)) {
      expect(m[1], 'every script is a file').toMatch(/\bsrc=/);
      expect(m[2]!.trim()).toBe('');
    }
    expect(html).not.toMatch(/<style\b|\sstyle=|\son[a-z]+=/i);
    // every asset loads from this gateway, under the same policy
    const assets = refs.filter((x) => !x.startsWith('data:') && x !== '/openapi.json');
    expect(assets.some((a) => a.endsWith('.js'))).toBe(true);
    expect(assets.some((a) => a.endsWith('.css'))).toBe(true);
    for (const a of assets) {
      const ar = await fetch(new URL(a, `${gw.url}/docs`));
      expect(ar.status, a).toBe(200);
      expect(ar.headers.get('content-type'), a).toMatch(a.endsWith('.js') ? /^text\/javascript/ : /^text\/css/);
      expect(ar.headers.get('content-security-policy'), a).toBe(PAGE_CSP);
      const body = await ar.text();
      expect(body.length, a).toBeGreaterThan(100);
      if (a.endsWith('docs-init.js')) {
        expect(body).toContain('/openapi.json');
        expect(body).not.toMatch(/[a-z]+:\/\//i);
      }
    }
  });

  it('links the WebSocket protocol the document points to', async () => {
    const r = await fetch(`${gw.url}/docs/PROTOCOL.md`);
    expect(r.status).toBe(200);
    expect(await r.text()).toContain('WebSocket protocol');
  });
});
