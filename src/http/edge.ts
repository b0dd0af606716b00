import { STATUS_CODES } from 'node:http';
import { createHash, timingSafeEqual } from 'node:crypto';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import fastJson from 'fast-json-stringify';
import type { TSchema } from '@sinclair/typebox';
import { loadUws, type UWS } from '../uws.js';
import { AppError, errorBody, type ErrorCode } from '../errors.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { Identity, UserAuth } from '../auth/user-auth.js';
import { beginRequest, endRequest, requestIds, withRequest, type RequestTrace } from '../observability/tracing.js';
import { rateLimitLine, type TokenBuckets } from '../net/rate-limit.js';
import { clientAddress } from '../net/client-address.js';
import type { Idempotency } from './idempotency.js';
import type { FastCounterChild, FastHistogramChild } from '../observability/fast-metrics.js';
import type { AnyRoute, HttpRequest, Method, Reply } from './route.js';

// The HTTP edge over uWebSockets.js. Each route of the table (route.ts) is
// compiled once: the headers it reads, validators for its params, query and
// body (ajv), serialisers for its responses (fast-json-stringify), its fixed
// response headers as one pre-joined block, its metric children and its
// span name. Per request the edge then does only what the route declares:
// read what it needs synchronously (uWS invalidates the request after the
// handler returns; onAborted first), the client rate limit, validation,
// authentication (admin token, user JWT), the per-user limit, idempotency,
// the handler, serialisation, and one corked write. An answer known at once
// (a status poll from memory) is written inside uWS's own callback: no
// promise, no microtask, no separate cork. Unsampled requests carry trace
// ids but no span objects (observability/tracing.ts).

export interface EdgeOptions {
  maxBodyBytes: number;
  log: Logger;
  metrics: Metrics;
  /** per-client token buckets (undefined = no limit) */
  limiter?: TokenBuckets | undefined;
  /** per-user token buckets, applied once a user is verified */
  userLimiter?: TokenBuckets | undefined;
  trustProxy?: boolean;
  /** allowed CORS origins; ["*"] = any origin, never with credentials */
  corsOrigins?: readonly string[];
  auth?: UserAuth;
  /** routes with auth 'admin' exist only when this is set */
  adminToken?: string | undefined;
  /** routes with auth 'origin' exist only when there are keys */
  originKeys?: readonly string[];
  idempotency?: Idempotency;
}

/** Per header the gateway reads; uWebSockets.js itself resets connections whose whole header block overflows its buffer. */
const MAX_HEADER_CHARS = 8192 + 16;
const REQUEST_ID_RE = /^[A-Za-z0-9._:-]{1,128}$/;
const IDEMPOTENCY_KEY_RE = /^[A-Za-z0-9_-]{8,128}$/;

const statusLines = new Map<number, string>();
const statusLine = (s: number): string => {
  let l = statusLines.get(s);
  if (!l) {
    l = `${s} ${STATUS_CODES[s] ?? ''}`.trim();
    statusLines.set(s, l);
  }
  return l;
};

/** Headers every response carries. */
const SECURITY_HEADERS: ReadonlyArray<[string, string]> = [
  ['X-Content-Type-Options', 'nosniff'],
  ['X-Frame-Options', 'DENY'],
  ['Referrer-Policy', 'no-referrer'],
  ['Content-Security-Policy', "default-src 'none'; frame-ancestors 'none'"],
  ['Strict-Transport-Security', 'max-age=31536000'],
  ['Cross-Origin-Resource-Policy', 'same-site'],
];
const FIXED_HEADERS: ReadonlyArray<[string, string]> = [['Cache-Control', 'no-store'], ...SECURITY_HEADERS];
const FIXED_NAMES = new Set(FIXED_HEADERS.map(([k]) => k.toLowerCase()));
const CORS_EXPOSE = 'X-Request-ID, X-Trace-ID, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset, Retry-After, X-Idempotency-Cached';

/**
 * The fixed headers (and a route's own, which win) as one block for a single
 * writeHeader call: uWS writes `key: value\r\n` verbatim and each call crosses
 * into C++, so a response's constant headers go out in one crossing. Only
 * constants go in here, never caller input.
 */
function fixedBlock(overrides: Readonly<Record<string, string>>): string {
  const lower = new Map(Object.entries(overrides).map(([k, v]) => [k.toLowerCase(), [k, v] as const]));
  const lines: string[] = [];
  for (const [k, v] of FIXED_HEADERS) lines.push(`${k}: ${lower.get(k.toLowerCase())?.[1] ?? v}`);
  for (const [lk, [k, v]] of lower) if (!FIXED_NAMES.has(lk)) lines.push(`${k}: ${v}`);
  return lines.join('\r\n');
}

const digest = (s: string): Buffer => createHash('sha256').update(s).digest();

interface RouteMetrics {
  readonly counter: FastCounterChild;
  readonly histogram: FastHistogramChild;
}

/** A route ready to serve: everything that does not depend on the request, worked out once. */
interface Compiled {
  readonly r: AnyRoute;
  readonly pattern: string;
  readonly method: Method;
  readonly spanName: string;
  readonly headerNames: readonly string[];
  readonly paramNames: readonly string[];
  readonly queryNames: readonly string[];
  readonly params: ValidateFunction | undefined;
  readonly query: ValidateFunction | undefined;
  readonly body: ValidateFunction | undefined;
  readonly serializers: ReadonlyMap<number, (v: unknown) => string>;
  /** the fixed header block with the route's own headers */
  readonly block: string;
  readonly routeHeaders: Readonly<Record<string, string>>;
  readonly metrics: Map<number, RouteMetrics>;
}

/** One request in flight. A class, not closures: one object per request. */
class Exchange {
  /** inside uWS's own callback: writes are corked already */
  sync = true;
  aborted = false;
  written = false;
  settled = false;
  limitLine = '';
  cors: Record<string, string> | undefined;
  user: Identity | undefined;
  constructor(
    readonly res: UWS.HttpResponse,
    readonly c: Compiled,
    readonly req: HttpRequest,
    readonly trace: RequestTrace,
    readonly started: number,
  ) {}
}

/** What a request handler needs from the uWS request, read before the handler returns to uWS. */
interface RequestParts {
  headers: Record<string, string>;
  /** the first header over MAX_HEADER_CHARS (left out of headers) */
  oversized: string | undefined;
  params: Record<string, string> | undefined;
  /** a path parameter with a malformed percent-escape (kept raw) */
  badParam: boolean;
  query: Record<string, string> | undefined;
  rawQuery: string;
  path: string;
  remote: string;
}

/** Only the headers, parameters and query fields the route declares are read (c.headerNames, ...). */
function readRequest(res: UWS.HttpResponse, uReq: UWS.HttpRequest, c: Compiled): RequestParts {
  const headers: Record<string, string> = {};
  let oversized: string | undefined;
  for (const h of c.headerNames) {
    const v = uReq.getHeader(h);
    if (v) {
      if (v.length > MAX_HEADER_CHARS) oversized = h;
      else headers[h] = v;
    }
  }
  let badParam = false;
  let params: Record<string, string> | undefined;
  if (c.paramNames.length) {
    params = {};
    for (let i = 0; i < c.paramNames.length; i++) {
      const raw = uReq.getParameter(i) ?? '';
      try {
        params[c.paramNames[i]!] = decodeURIComponent(raw);
      } catch {
        // a malformed percent-escape must be a 400, never an exception inside a uWS callback
        badParam = true;
        params[c.paramNames[i]!] = raw;
      }
    }
  }
  let query: Record<string, string> | undefined;
  if (c.queryNames.length) {
    query = {};
    for (const q of c.queryNames) {
      const v = uReq.getQuery(q);
      if (v !== undefined && v !== '') query[q] = v;
    }
  }
  let remote = '';
  try {
    remote = Buffer.from(res.getRemoteAddressAsText()).toString();
  } catch {
    remote = ''; // the client is gone already: the address only matters for limits
  }
  return { headers, oversized, params, badParam, query, rawQuery: uReq.getQuery() ?? '', path: uReq.getUrl(), remote };
}

export class HttpEdge {
  readonly app: UWS.TemplatedApp = loadUws().App();
  private readonly compiled: Compiled[] = [];
  // date-time is checked as RFC 3339 (the schedule's times), not ignored
  private readonly ajv = addFormats.default(new Ajv({ allErrors: false, strict: false, coerceTypes: false, useDefaults: false, verbose: true }), ['date-time']);
  private readonly adminDigest: Buffer | undefined;
  private readonly originDigests: readonly Buffer[];
  private listenSockets: UWS.us_listen_socket[] = [];
  private inFlight = 0;
  private idleWaiters: (() => void)[] = [];
  port = 0;

  constructor(private readonly o: EdgeOptions) {
    this.adminDigest = o.adminToken ? digest(o.adminToken) : undefined;
    this.originDigests = (o.originKeys ?? []).map(digest);
  }

  /** The route table as registered (the OpenAPI document is generated from it). */
  table(): readonly AnyRoute[] {
    return this.compiled.map((c) => c.r);
  }

  /** Copies of the registered (method, pattern) pairs, in registration order. */
  listRoutes(): { method: string; pattern: string }[] {
    return this.compiled.map((c) => ({ method: c.method, pattern: c.pattern }));
  }

  add(routes: readonly AnyRoute[]): void {
    for (const r of routes) this.register(r);
  }

  private register(r: AnyRoute): void {
    // the admin API does not exist without ADMIN_TOKEN: a plain 404, never an unauthenticated door
    if (r.auth === 'admin' && !this.adminDigest) return;
    if (r.auth === 'origin' && this.originDigests.length === 0) return;
    const reads = new Set(['x-request-id', 'traceparent', 'origin']);
    if (this.o.trustProxy) reads.add('x-forwarded-for');
    if ((r.auth && r.auth !== 'none') || r.idempotency) reads.add('authorization');
    if (r.idempotency) reads.add('idempotency-key');
    if (r.body) {
      reads.add('content-type');
      reads.add('content-length');
    }
    for (const h of r.reads ?? []) reads.add(h.toLowerCase());
    const serializers = new Map<number, (v: unknown) => string>();
    for (const [status, spec] of Object.entries(r.responses)) {
      if (spec.schema && (spec.contentType ?? 'application/json').startsWith('application/json')) serializers.set(Number(status), fastJson(spec.schema as unknown as Parameters<typeof fastJson>[0]));
    }
    const routeHeaders = r.headers ?? {};
    const c: Compiled = {
      r,
      pattern: r.path,
      method: r.method,
      spanName: `${r.method} ${r.path}`,
      headerNames: [...reads],
      paramNames: [...r.path.matchAll(/:([A-Za-z_][A-Za-z0-9_]*)/g)].map((m) => m[1]!),
      queryNames: r.query ? Object.keys((r.query as { properties?: Record<string, unknown> }).properties ?? {}) : [],
      params: r.params ? this.ajv.compile(r.params) : undefined,
      query: r.query ? this.ajv.compile(r.query) : undefined,
      body: r.body ? this.ajv.compile(r.body) : undefined,
      serializers,
      block: fixedBlock(routeHeaders),
      routeHeaders,
      metrics: new Map(),
    };
    this.compiled.push(c);
    const register = { GET: 'get', POST: 'post', PUT: 'put', DELETE: 'del' } as const;
    this.app[register[r.method]](r.path, (res, req) => {
      try {
        this.handle(res, req, c);
      } catch (err) {
        // a bug must cost one request (500), never the process or a hung client
        this.o.log.error({ err, route: r.path }, 'request handler threw synchronously');
        try {
          res.cork(() => res.writeStatus('500 Internal Server Error').writeHeader('Content-Type', 'application/json').end(errorBody('INTERNAL', 'internal error', '')));
        } catch {
          // the response was already answered or aborted
        }
      }
    });
  }

  /** Unknown paths get 404, known paths with another method 405 (with Allow), and CORS preflights; all with the contract body. */
  finish(): void {
    const matchers = this.compiled.map((c) => ({ method: c.method, re: new RegExp(`^${c.pattern.replace(/:[A-Za-z_][A-Za-z0-9_]*/g, '[^/]+')}/?$`) }));
    const methodsFor = (path: string): string[] => [...new Set(matchers.filter((m) => m.re.test(path)).map((m) => m.method))];
    this.app.options('/*', (res, req) => {
      res.onAborted(() => undefined);
      const path = req.getUrl();
      const origin = req.getHeader('origin');
      const ids = this.ids(req.getHeader('x-request-id'), req.getHeader('traceparent'));
      const methods = methodsFor(path);
      if (!methods.length) {
        this.writeOnce(res, 404, errorBody('NOT_FOUND', `no route for ${path}`, ids.traceId), 'application/json', ids.requestId, ids.traceId, FIXED_BLOCK, undefined, false);
        return;
      }
      const headers: Record<string, string> = { Allow: [...methods, 'OPTIONS'].join(', ') };
      const cors = this.corsHeaders(origin);
      if (cors) {
        Object.assign(headers, cors, {
          'Access-Control-Allow-Methods': methods.join(', '),
          'Access-Control-Allow-Headers': 'Content-Type, Authorization, Idempotency-Key, X-Request-ID, traceparent',
          'Access-Control-Max-Age': '600',
        });
      }
      this.writeOnce(res, 204, '', 'text/plain', ids.requestId, ids.traceId, FIXED_BLOCK, headers, false);
    });
    this.app.any('/*', (res, req) => {
      res.onAborted(() => undefined);
      const path = req.getUrl();
      const method = req.getCaseSensitiveMethod();
      const ids = this.ids(req.getHeader('x-request-id'), req.getHeader('traceparent'));
      const allowed = methodsFor(path);
      const status = allowed.length ? 405 : 404;
      const code: ErrorCode = allowed.length ? 'METHOD_NOT_ALLOWED' : 'NOT_FOUND';
      const headers: Record<string, string> | undefined = allowed.length ? { Allow: allowed.join(', ') } : undefined;
      const body = errorBody(code, allowed.length ? `method not allowed; use ${allowed.join(', ')}` : `no route for ${path}`, ids.traceId);
      this.writeOnce(res, status, body, 'application/json', ids.requestId, ids.traceId, FIXED_BLOCK, headers, method === 'HEAD');
      this.o.metrics.httpRequests.inc({ method, route: 'unmatched', status_code: status });
    });
  }

  /**
   * Listen on host:port with `sockets` listening sockets sharing the port
   * (uSockets sets SO_REUSEPORT on a fixed port; the kernel spreads new
   * connections over them). Each has uWS's fixed accept queue of 512, so
   * several absorb a burst of reconnects that one would drop. Port 0 (any
   * free port) gets one: the kernel does not share an automatically chosen port.
   */
  listen(host: string, port: number, sockets = 1): Promise<number> {
    const uws = loadUws();
    return new Promise((resolve, reject) => {
      this.app.listen(host, port, (sock) => {
        if (!sock) return reject(new Error(`cannot listen on ${host}:${port} (port in use?)`));
        this.listenSockets.push(sock);
        this.port = uws.us_socket_local_port(sock);
        for (let i = 1; i < sockets && port !== 0; i++) {
          this.app.listen(host, port, (more) => {
            if (more) this.listenSockets.push(more);
          });
        }
        if (port !== 0 && this.listenSockets.length < sockets) {
          this.o.log.warn({ port, listening: this.listenSockets.length, wanted: sockets }, 'fewer listening sockets than SERVER_LISTEN_SOCKETS (SO_REUSEPORT refused)');
        }
        this.o.log.debug({ port: this.port, listening: this.listenSockets.length }, 'listening');
        resolve(this.port);
      });
    });
  }

  /** Stop accepting connections, then wait (bounded) for requests in flight. */
  async close(timeoutMs = 10_000): Promise<void> {
    for (const sock of this.listenSockets) loadUws().us_listen_socket_close(sock);
    this.listenSockets = [];
    if (this.inFlight > 0) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, timeoutMs);
        this.idleWaiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** CORS response headers for an Origin, or none when it is not allowed. */
  corsHeaders(origin: string | undefined): Record<string, string> | undefined {
    const allowed = this.o.corsOrigins ?? [];
    if (!origin || allowed.length === 0) return undefined;
    if (allowed.includes('*')) return { 'Access-Control-Allow-Origin': '*', 'Access-Control-Expose-Headers': CORS_EXPOSE };
    if (!allowed.includes(origin)) return undefined;
    return { 'Access-Control-Allow-Origin': origin, 'Access-Control-Expose-Headers': CORS_EXPOSE, Vary: 'Origin' };
  }

  // ---------------------------------------------------------------- per request

  /** The request id (the client's, if sane) and a trace id; one random value serves both when the client sent neither. */
  private ids(incoming: string, traceparent: string): { requestId: string; traceId: string } {
    const t = requestIds(traceparent || undefined);
    return { requestId: incoming && REQUEST_ID_RE.test(incoming) ? incoming : t.requestId, traceId: t.traceId };
  }

  private handle(res: UWS.HttpResponse, uReq: UWS.HttpRequest, c: Compiled): void {
    const x = this.begin(res, uReq, c);
    // from here on a write comes from a callback of our own (a promise, a body chunk): it must cork
    if (x) x.sync = false;
  }

  private begin(res: UWS.HttpResponse, uReq: UWS.HttpRequest, c: Compiled): Exchange | undefined {
    this.inFlight++;
    // everything off the uWS request first, synchronously: it is invalid once this function returns
    const parts = readRequest(res, uReq, c);
    const { headers } = parts;
    const t = beginRequest(c.spanName, headers.traceparent, c.pattern);
    const incoming = headers['x-request-id'];
    const req: HttpRequest = {
      method: c.method,
      path: parts.path,
      route: c.pattern,
      rawQuery: parts.rawQuery,
      headers,
      clientIp: clientAddress(parts.remote, headers['x-forwarded-for'], this.o.trustProxy ?? false),
      requestId: incoming && REQUEST_ID_RE.test(incoming) ? incoming : t.requestId,
      traceId: t.traceId,
      traceparent: t.traceparent,
      body: undefined,
    };
    const x = new Exchange(res, c, req, t, performance.now());
    res.onAborted(() => this.abort(x));
    if (headers.origin) x.cors = this.corsHeaders(headers.origin);
    if (!this.admit(x, parts)) return x;
    if (!c.r.body) this.run(x, undefined, parts.params, parts.query);
    else this.readBody(x, res, parts);
    return x;
  }

  /** The checks before any work: header sizes, the path's escapes, the client's rate. False: answered already. */
  private admit(x: Exchange, parts: RequestParts): boolean {
    if (parts.oversized) {
      this.fail(x, new AppError('HEADER_TOO_LARGE', `header ${parts.oversized} is larger than ${MAX_HEADER_CHARS} bytes`));
      return false;
    }
    if (parts.badParam) {
      this.fail(x, new AppError('INVALID_REQUEST', 'malformed percent-encoding in the path'));
      return false;
    }
    if (this.o.limiter && x.c.r.rateLimit !== false) {
      const v = this.o.limiter.take(x.req.clientIp);
      x.limitLine = rateLimitLine(v);
      if (!v.ok) {
        this.o.metrics.rateLimitDropped.inc({ scope: 'client' });
        this.fail(x, new AppError('RATE_LIMITED', 'too many requests from this client; slow down', { retry_after_sec: v.retryAfterSec }, { 'Retry-After': String(v.retryAfterSec) }));
        return false;
      }
    }
    return true;
  }

  /** The body, chunk by chunk as uWS hands it over, up to HTTP_MAX_BODY_BYTES; then the handler. */
  private readBody(x: Exchange, res: UWS.HttpResponse, parts: RequestParts): void {
    const limit = this.o.maxBodyBytes;
    if (Number(parts.headers['content-length'] ?? '0') > limit) {
      this.fail(x, new AppError('PAYLOAD_TOO_LARGE', `body larger than ${limit} bytes`));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    res.onData((chunk, isLast) => {
      if (over) return;
      size += chunk.byteLength;
      if (size > limit) {
        over = true;
        this.fail(x, new AppError('PAYLOAD_TOO_LARGE', `body larger than ${limit} bytes`));
        return;
      }
      // uWS reuses the chunk's memory after this callback returns: copy it
      chunks.push(Buffer.from(new Uint8Array(chunk).slice()));
      if (isLast) this.run(x, chunks.length === 1 ? chunks[0] : Buffer.concat(chunks), parts.params, parts.query);
    });
  }

  /**
   * In order: the Idempotency-Key's presence and form, authentication (admin
   * token, user JWT) and the per-user limit, validation, then the handler
   * (under idempotency when declared). An answer known at once is written at
   * once: with nothing to verify asynchronously, this all runs inside uWS's
   * callback.
   */
  private run(x: Exchange, raw: Buffer | undefined, params: Record<string, string> | undefined, query: Record<string, string> | undefined): void {
    const r = x.c.r;
    if (raw !== undefined) (x.req as { body: Buffer | undefined }).body = raw;
    const bearer = x.req.headers.authorization;
    try {
      if (r.idempotency) {
        const key = x.req.headers['idempotency-key'];
        if (!key && r.idempotency === 'required') throw new AppError('IDEMPOTENCY_KEY_REQUIRED');
        if (key && !IDEMPOTENCY_KEY_RE.test(key)) throw new AppError('INVALID_REQUEST', 'Idempotency-Key must be 8-128 characters of A-Z a-z 0-9 _ -');
      }
      if (r.auth === 'admin') this.bearerKey(bearer, [this.adminDigest!], 'admin');
      if (r.auth === 'origin') this.bearerKey(bearer, this.originDigests, 'origin');
    } catch (err) {
      return this.fail(x, err);
    }
    const userRule = r.auth === 'user-optional' || r.auth === 'user-if-configured' || r.auth === 'user' ? r.auth : undefined;
    if (!userRule || (userRule === 'user-optional' && !bearer) || (userRule === 'user-if-configured' && !bearer && !this.o.auth?.configured)) {
      // nothing to verify: validation and the handler run now (a synchronous answer is written inside this uWS callback)
      return this.validated(x, raw, params, query);
    }
    const verify = userRule === 'user' || (userRule === 'user-if-configured' && this.o.auth?.configured) ? this.o.auth!.require(bearer) : this.o.auth!.identify(bearer);
    verify
      .then(
        (id) => {
          if (id && this.o.userLimiter) {
            const v = this.o.userLimiter.take(`u:${id.sub}`);
            if (!v.ok) {
              this.o.metrics.rateLimitDropped.inc({ scope: 'user' });
              throw new AppError('RATE_LIMITED', 'too many requests for this user; slow down', { retry_after_sec: v.retryAfterSec }, { 'Retry-After': String(v.retryAfterSec) });
            }
          }
          x.user = id;
          this.validated(x, raw, params, query);
        },
        (err: unknown) => {
          if (err instanceof AppError) this.o.metrics.authFailures.inc({ reason: String(err.details?.reason ?? err.code) });
          throw err;
        },
      )
      .catch((err: unknown) => this.fail(x, err));
  }

  /** Params, query and body against the route's schemas, then the handler. */
  private validated(x: Exchange, raw: Buffer | undefined, params: Record<string, string> | undefined, query: Record<string, string> | undefined): void {
    const c = x.c;
    const r = c.r;
    let body: unknown;
    try {
      if (c.params && !c.params(params)) throw this.invalid(c.params, r, 'path');
      if (c.query && !c.query(query ?? {})) throw this.invalid(c.query, r, 'query');
      if (c.body) {
        body = r.form ? this.parseForm(x.req, raw) : this.parseBody(x.req, raw, r.bodyOptional ?? false);
        if (r.missing && body && typeof body === 'object') {
          // the contract's MISSING_* codes cover null and '' too
          for (const k in r.missing) {
            const v = (body as Record<string, unknown>)[k];
            if (v === null || v === '') delete (body as Record<string, unknown>)[k];
          }
        }
        if (!c.body(body)) throw this.invalid(c.body, r, 'body');
      }
    } catch (err) {
      return this.fail(x, err);
    }
    this.invoke(x, body, query, params);
  }

  private invoke(x: Exchange, body: unknown, query: unknown, params: unknown): void {
    const r = x.c.r;
    const ctx = { req: x.req, body, query: query ?? {}, params: params ?? {}, user: x.user };
    let out: Reply | Promise<Reply>;
    try {
      out = withRequest(x.trace, () =>
        r.idempotency && this.o.idempotency
          ? this.o.idempotency.run(x.req, x.user?.sub, r.idempotency === 'required', () => Promise.resolve(r.handler(ctx as Parameters<typeof r.handler>[0])), (status, b) =>
              this.serialize(x.c, status, b),
            )
          : r.handler(ctx as Parameters<typeof r.handler>[0]),
      );
    } catch (err) {
      return this.fail(x, err);
    }
    if (out instanceof Promise) {
      out.then(
        (reply) => this.reply(x, reply),
        (err: unknown) => this.fail(x, err),
      );
    } else this.reply(x, out);
  }

  private parseBody(req: HttpRequest, raw: Buffer | undefined, optional: boolean): unknown {
    if (!raw || raw.length === 0) {
      if (optional) return {};
      throw new AppError('INVALID_REQUEST', 'a JSON body is required');
    }
    const ct = req.headers['content-type'];
    if (ct && !/^application\/(.+\+)?json\b/i.test(ct)) throw new AppError('UNSUPPORTED_MEDIA_TYPE', 'send application/json');
    let v: unknown;
    try {
      v = JSON.parse(raw.toString('utf8'));
    } catch {
      throw new AppError('INVALID_JSON', 'body is not valid JSON');
    }
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new AppError('INVALID_REQUEST', 'body must be a JSON object');
    return v;
  }

  /** An HTML form post (the no-JavaScript page): fields as strings, the last of a repeated name wins. */
  private parseForm(req: HttpRequest, raw: Buffer | undefined): Record<string, string> {
    const ct = req.headers['content-type'];
    if (ct && !/^application\/x-www-form-urlencoded\b/i.test(ct)) throw new AppError('UNSUPPORTED_MEDIA_TYPE', 'send application/x-www-form-urlencoded');
    return Object.fromEntries(new URLSearchParams(raw ? raw.toString('utf8') : ''));
  }

  /** The first schema violation as the contract's error: a property the route names gets its own code. */
  private invalid(v: ValidateFunction, r: AnyRoute, where: string): AppError {
    const e: ErrorObject | undefined = v.errors?.[0];
    if (!e) return new AppError('INVALID_REQUEST', `invalid ${where}`);
    const field = e.instancePath ? e.instancePath.slice(1).replace(/\//g, '.') : '';
    if (e.keyword === 'required') {
      const prop = String((e.params as { missingProperty?: string }).missingProperty ?? '');
      const code = r.missing?.[prop];
      if (code) return new AppError(code, `${prop} is required`);
      return new AppError('INVALID_REQUEST', `${field ? `${field}.` : ''}${prop} is required`);
    }
    if (e.keyword === 'additionalProperties') {
      return new AppError('INVALID_REQUEST', `unknown field ${String((e.params as { additionalProperty?: string }).additionalProperty ?? '')}${field ? ` in ${field}` : ''}`);
    }
    const top = field.split('.')[0] ?? '';
    const code = r.invalid?.[top];
    const what = (e.parentSchema as { description?: string } | undefined)?.description;
    return new AppError(code ?? 'INVALID_REQUEST', `${field || where} ${e.message ?? 'is invalid'}${what ? ` (${what})` : ''}`);
  }

  /** A bearer key (the admin token, an origin API key), compared as digests: the same time whatever the length. */
  private bearerKey(h: string | undefined, allowed: readonly Buffer[], realm: string): void {
    const m = /^Bearer ([\x21-\x7e]{1,512})$/.exec(h ?? '');
    const headers = { 'WWW-Authenticate': `Bearer realm="${realm}"` };
    if (!m) throw new AppError('UNAUTHORIZED', `${realm} bearer token required`, undefined, headers);
    const d = digest(m[1]!);
    let ok = false;
    for (const a of allowed) ok = timingSafeEqual(d, a) || ok;
    if (!ok) throw new AppError('UNAUTHORIZED', `invalid ${realm} token`, undefined, headers);
  }

  private serialize(c: Compiled, status: number, b: unknown): string {
    const ser = c.serializers.get(status);
    return ser ? ser(b) : JSON.stringify(b);
  }

  private reply(x: Exchange, reply: Reply): void {
    const b = reply.body;
    const text = b === undefined ? '' : typeof b === 'string' ? b : this.serialize(x.c, reply.status, b);
    this.done(x, reply.status, text, reply.contentType ?? 'application/json', reply.headers, undefined);
  }

  private fail(x: Exchange, err: unknown): void {
    const req = x.req;
    if (err instanceof AppError) {
      // one line per error: 5xx are the operator's problem (warn), 4xx the caller's (debug: floods must not flood the logs)
      const line = { request_id: req.requestId, trace_id: req.traceId, route: req.route, status: err.status, code: err.code };
      if (err.status >= 500) this.o.log.warn(line, err.message);
      else if (this.o.log.isLevelEnabled('debug')) this.o.log.debug(line, err.message);
      this.done(x, err.status, errorBody(err.code, err.message, req.traceId, err.details), 'application/json', err.headers, undefined);
    } else {
      this.o.log.error({ request_id: req.requestId, trace_id: req.traceId, route: req.route, err }, 'unhandled error');
      this.done(x, 500, errorBody('INTERNAL', 'internal error', req.traceId), 'application/json', undefined, err);
    }
  }

  private done(x: Exchange, status: number, body: string, contentType: string, headers: Readonly<Record<string, string>> | undefined, err: unknown): void {
    if (x.written) return;
    x.written = true;
    if (!x.aborted) {
      const extra = x.cors ? (headers ? { ...x.cors, ...headers } : x.cors) : headers;
      this.writeOnce(x.res, status, body, contentType, x.req.requestId, x.req.traceId, x.c.block, extra, false, x.limitLine, x.c.routeHeaders, x.sync);
    }
    const seconds = (performance.now() - x.started) / 1000;
    const m = this.metricsFor(x.c, status);
    m.counter.inc();
    m.histogram.observe(seconds);
    endRequest(x.trace, status, err);
    if (this.o.log.isLevelEnabled('debug')) {
      this.o.log.debug({ request_id: x.req.requestId, trace_id: x.req.traceId, method: x.c.method, route: x.c.pattern, status, ms: Math.round(seconds * 10000) / 10, client: x.req.clientIp }, 'request');
    }
    this.settle(x);
  }

  private abort(x: Exchange): void {
    x.aborted = true;
    // the client went away before an answer: this request no longer holds up a drain
    this.settle(x);
  }

  private settle(x: Exchange): void {
    if (x.settled) return;
    x.settled = true;
    if (--this.inFlight === 0 && this.idleWaiters.length) for (const w of this.idleWaiters.splice(0)) w();
  }

  private metricsFor(c: Compiled, status: number): RouteMetrics {
    let m = c.metrics.get(status);
    if (!m) {
      // one child per (route, status), made once: counting is then a few array writes
      const labels = { method: c.method, route: c.pattern, status_code: status };
      m = { counter: this.o.metrics.httpRequests.labels(labels), histogram: this.o.metrics.httpDuration.labels(labels) };
      c.metrics.set(status, m);
    }
    return m;
  }

  /**
   * Writes one response: status, then one header block (content type, ids,
   * the fixed and route headers, the rate-limit line), then dynamic headers
   * one by one: a dynamic header that names a fixed one replaces it (the
   * block is then written header by header). Corked (a write after an await
   * must be; inside uWS's own callback it already is, and corking again is
   * harmless).
   */
  private writeOnce(
    res: UWS.HttpResponse,
    status: number,
    body: string,
    contentType: string,
    requestId: string,
    traceId: string,
    block: string,
    extra: Readonly<Record<string, string>> | undefined,
    noBody: boolean,
    limitLine = '',
    routeHeaders: Readonly<Record<string, string>> = {},
    /** inside uWS's own callback (already corked): no closure, no cork call */
    corked = false,
  ): void {
    let overrides = false;
    if (extra) for (const k in extra) if (FIXED_NAMES.has(k.toLowerCase())) overrides = true;
    const write = (): void => {
      res.writeStatus(statusLine(status));
      const head = `${contentType}\r\nX-Request-ID: ${requestId}\r\nX-Trace-ID: ${traceId}${limitLine}`;
      if (!overrides) res.writeHeader('Content-Type', `${head}\r\n${block}`);
      else {
        res.writeHeader('Content-Type', head);
        const lower = new Set(Object.keys(extra!).map((k) => k.toLowerCase()));
        for (const [k, v] of FIXED_HEADERS) if (!lower.has(k.toLowerCase())) res.writeHeader(k, routeHeaders[k] ?? v);
        for (const k in routeHeaders) if (!FIXED_NAMES.has(k.toLowerCase()) && !lower.has(k.toLowerCase())) res.writeHeader(k, routeHeaders[k]!);
      }
      if (extra) for (const k in extra) res.writeHeader(k, extra[k]!);
      // endWithoutBody does not finish the response in this uWS build: an empty body frames correctly for HEAD, 204 and 304
      if (noBody || status === 204 || status === 304) res.end();
      else res.end(body);
    };
    if (corked) write();
    else res.cork(write);
  }
}

const FIXED_BLOCK = fixedBlock({});
