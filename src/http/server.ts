import { STATUS_CODES } from 'node:http';
import { randomUUID } from 'node:crypto';
import { loadUws, type UWS } from '../uws.js';
import { AppError, errorBody, type ErrorCode } from '../errors.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import { rateLimitHeaders, type TokenBuckets } from './rate-limit.js';
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, context, defaultTextMapGetter, isSpanContextValid, propagation, trace, type Span } from '@opentelemetry/api';

const tracer = trace.getTracer('waiting-room-gateway');

/** A server span continuing the caller's traceparent; its trace id names the request in errors and logs. */
function serverSpan(method: string, route: string, traceparent: string | undefined, requestId: string): { span: Span; ctx: ReturnType<typeof trace.setSpan>; traceId: string } {
  const parent = traceparent ? propagation.extract(ROOT_CONTEXT, { traceparent }, defaultTextMapGetter) : ROOT_CONTEXT;
  const span = tracer.startSpan(`${method} ${route}`, { kind: SpanKind.SERVER, attributes: { 'http.request.method': method, 'http.route': route, 'request.id': requestId } }, parent);
  const sc = span.spanContext();
  return { span, ctx: trace.setSpan(parent, span), traceId: isSpanContextValid(sc) ? sc.traceId : requestId };
}

// A small router over uWebSockets.js. Rules it keeps for every route:
// everything is read from the request synchronously before any await,
// onAborted is registered first, every deferred write is corked, and a
// response is never touched after the client went away.

export type Method = 'GET' | 'POST' | 'PUT' | 'DELETE';

export interface HttpRequest {
  readonly method: Method;
  readonly path: string;
  /** route template, e.g. /api/v1/admin/events/:id (bounded metric label) */
  readonly route: string;
  readonly params: readonly string[];
  readonly rawQuery: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly remoteAddress: string;
  /** the socket address, or the first X-Forwarded-For hop when TRUST_PROXY is on */
  readonly clientIp: string;
  readonly requestId: string;
  /** the W3C trace id of this request (continues an incoming traceparent) */
  readonly traceId: string;
  readonly body: Buffer | undefined;
  query(name: string): string | undefined;
}

export interface HttpReply {
  readonly status: number;
  /** an object is JSON-serialised; a string is sent as is (pre-serialised JSON by default) */
  readonly body?: unknown;
  readonly contentType?: string;
  readonly headers?: Readonly<Record<string, string>>;
}

export type Handler = (req: HttpRequest) => Promise<HttpReply> | HttpReply;

export interface RouteOptions {
  /** read and limit the body (POST/PUT) */
  body?: boolean;
  /** per-client rate limit (default on; off for probes and metrics) */
  rateLimit?: boolean;
}

/** Headers handlers may read; only these are copied off the uWS request. */
const HEADERS = ['x-request-id', 'authorization', 'idempotency-key', 'content-type', 'content-length', 'traceparent', 'x-forwarded-for', 'origin', 'if-none-match'];

const REQUEST_ID_RE = /^[A-Za-z0-9._:-]{1,128}$/;
/** Per header the gateway reads; uWebSockets.js itself resets connections whose whole header block overflows its buffer. */
const MAX_HEADER_CHARS = 8192 + 16;

const statusLines = new Map<number, string>();
const statusLine = (s: number): string => {
  let l = statusLines.get(s);
  if (!l) {
    l = `${s} ${STATUS_CODES[s] ?? ''}`.trim();
    statusLines.set(s, l);
  }
  return l;
};

interface RouteDef {
  method: Method;
  pattern: string;
  matcher: RegExp;
}

export interface HttpServerOptions {
  maxBodyBytes: number;
  log: Logger;
  metrics: Metrics;
  /** per-client token buckets (undefined = no limit) */
  limiter?: TokenBuckets | undefined;
  trustProxy?: boolean;
  /** allowed CORS origins; ["*"] = any origin, never with credentials */
  corsOrigins?: readonly string[];
}

/** Headers every response carries. */
const SECURITY_HEADERS: ReadonlyArray<[string, string]> = [
  ['X-Content-Type-Options', 'nosniff'],
  ['X-Frame-Options', 'DENY'],
  ['Referrer-Policy', 'no-referrer'],
  ['Content-Security-Policy', "default-src 'none'; frame-ancestors 'none'"],
  ['Strict-Transport-Security', 'max-age=31536000'],
  ['Cross-Origin-Resource-Policy', 'same-site'],
];
// uWS crosses into C++ once per writeHeader; most responses carry the same
// nine fixed headers, so they go out as one pre-joined block (uWS writes
// `key: value\r\n` verbatim; the block is a constant, never caller input).
const FIXED_HEADERS: ReadonlyArray<[string, string]> = [['Cache-Control', 'no-store'], ...SECURITY_HEADERS];
const FIXED_BLOCK = FIXED_HEADERS.slice(1)
  .map(([k, v]) => `${k}: ${v}`)
  .reduce((acc, line) => `${acc}\r\n${line}`, FIXED_HEADERS[0]![1]);
const FIXED_NAMES = new Set(FIXED_HEADERS.map(([k]) => k));
const overridesFixed = (h: Readonly<Record<string, string>> | undefined): boolean => {
  if (!h) return false;
  for (const k in h) if (FIXED_NAMES.has(k)) return true;
  return false;
};
const CORS_EXPOSE = 'X-Request-ID, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset, Retry-After, X-Idempotency-Cached';
const IP_RE = /^[0-9A-Fa-f:.]{2,45}$/;

/** The client's address: the socket peer, or (TRUST_PROXY) the first hop of X-Forwarded-For. */
export function clientAddress(remote: string, forwardedFor: string | undefined, trustProxy: boolean): string {
  if (trustProxy && forwardedFor) {
    const first = forwardedFor.split(',')[0]!.trim();
    if (IP_RE.test(first)) return first;
  }
  return remote;
}

interface RouteMetrics {
  inc(): void;
  observe(seconds: number): void;
}

export class HttpServer {
  readonly app: UWS.TemplatedApp = loadUws().App();
  /** prom-client label lookups hash the label set on every call; keep one child per (method, route, status) */
  private readonly routeMetrics = new Map<string, RouteMetrics>();
  private readonly routes: RouteDef[] = [];
  private listenSocket: UWS.us_listen_socket | undefined;
  private inFlight = 0;
  private idleWaiters: (() => void)[] = [];
  port = 0;

  constructor(private readonly opts: HttpServerOptions) {}

  route(method: Method, pattern: string, handler: Handler, ro: RouteOptions = {}): void {
    const paramCount = (pattern.match(/:[a-z_]+/g) ?? []).length;
    this.routes.push({ method, pattern, matcher: new RegExp(`^${pattern.replace(/:[a-z_]+/g, '[^/]+')}/?$`) });
    const register = { GET: 'get', POST: 'post', PUT: 'put', DELETE: 'del' } as const;
    this.app[register[method]](pattern, (res, req) => {
      try {
        this.handle(res, req, method, pattern, paramCount, handler, ro);
      } catch (err) {
        // a bug must cost one request (500), never the process or a hung client
        this.opts.log.error({ err, route: pattern }, 'request handler threw synchronously');
        try {
          res.cork(() => res.writeStatus('500 Internal Server Error').writeHeader('Content-Type', 'application/json').end(errorBody('INTERNAL', 'internal error', '')));
        } catch {
          // the response was already answered or aborted
        }
      }
    });
  }

  /** Copies of the registered (method, pattern) pairs, in registration order. */
  listRoutes(): { method: string; pattern: string }[] {
    return this.routes.map((r) => ({ method: r.method, pattern: r.pattern }));
  }

  /** Unknown paths get 404, known paths with another method 405 (with Allow); both with the contract body. */
  finish(): void {
    // CORS preflight for every known route
    this.app.options('/*', (res, req) => {
      res.onAborted(() => undefined);
      const path = req.getUrl();
      const origin = req.getHeader('origin');
      const requestId = this.requestId(req.getHeader('x-request-id'));
      const methods = [...new Set(this.routes.filter((r) => r.matcher.test(path)).map((r) => r.method))];
      const cors = this.corsHeaders(origin);
      if (!methods.length) {
        const { span, traceId } = serverSpan('OPTIONS', 'unmatched', req.getHeader('traceparent') || undefined, requestId);
        this.write(res, { aborted: false }, 404, errorBody('NOT_FOUND', `no route for ${path}`, traceId), 'application/json', requestId, traceId, []);
        span.end();
        return;
      }
      const headers: Record<string, string> = { Allow: [...methods, 'OPTIONS'].join(', ') };
      if (cors) {
        Object.assign(headers, cors, {
          'Access-Control-Allow-Methods': methods.join(', '),
          'Access-Control-Allow-Headers': 'Content-Type, Authorization, Idempotency-Key, X-Request-ID, traceparent',
          'Access-Control-Max-Age': '600',
        });
      }
      this.write(res, { aborted: false }, 204, '', 'text/plain', requestId, undefined, [headers]);
    });
    this.app.any('/*', (res, req) => {
      res.onAborted(() => undefined);
      const path = req.getUrl();
      const requestId = this.requestId(req.getHeader('x-request-id'));
      const { span, traceId } = serverSpan(req.getCaseSensitiveMethod(), 'unmatched', req.getHeader('traceparent') || undefined, requestId);
      const allowed = this.routes.filter((r) => r.matcher.test(path)).map((r) => r.method);
      const status = allowed.length ? 405 : 404;
      const code: ErrorCode = allowed.length ? 'METHOD_NOT_ALLOWED' : 'NOT_FOUND';
      const headers: Record<string, string> = allowed.length ? { Allow: [...new Set(allowed)].join(', ') } : {};
      const body = errorBody(code, allowed.length ? `method not allowed; use ${headers.Allow}` : `no route for ${path}`, traceId);
      this.write(res, { aborted: false }, status, body, 'application/json', requestId, traceId, [headers], req.getCaseSensitiveMethod() === 'HEAD');
      span.setAttribute('http.response.status_code', status);
      span.end();
      this.opts.metrics.httpRequests.inc({ method: req.getCaseSensitiveMethod(), route: 'unmatched', status_code: status });
    });
  }

  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.app.listen(host, port, (sock) => {
        if (!sock) return reject(new Error(`cannot listen on ${host}:${port} (port in use?)`));
        this.listenSocket = sock;
        this.port = loadUws().us_socket_local_port(sock);
        resolve(this.port);
      });
    });
  }

  /** Stop accepting connections, then wait (bounded) for requests in flight. */
  async close(timeoutMs = 10_000): Promise<void> {
    if (this.listenSocket) {
      loadUws().us_listen_socket_close(this.listenSocket);
      this.listenSocket = undefined;
    }
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
    const allowed = this.opts.corsOrigins ?? [];
    if (!origin || allowed.length === 0) return undefined;
    if (allowed.includes('*')) return { 'Access-Control-Allow-Origin': '*', 'Access-Control-Expose-Headers': CORS_EXPOSE };
    if (!allowed.includes(origin)) return undefined;
    return { 'Access-Control-Allow-Origin': origin, 'Access-Control-Expose-Headers': CORS_EXPOSE, Vary: 'Origin' };
  }

  private settle(): void {
    if (--this.inFlight === 0 && this.idleWaiters.length) {
      for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  private metricsFor(method: string, route: string, status: number): RouteMetrics {
    const key = `${method} ${status} ${route}`;
    let m = this.routeMetrics.get(key);
    if (!m) {
      const labels = { method, route, status_code: status };
      const counter = this.opts.metrics.httpRequests.labels(labels);
      const histogram = this.opts.metrics.httpDuration.labels(labels);
      m = { inc: () => counter.inc(), observe: (s) => histogram.observe(s) };
      this.routeMetrics.set(key, m);
    }
    return m;
  }

  private requestId(incoming: string): string {
    return incoming && REQUEST_ID_RE.test(incoming) ? incoming : randomUUID();
  }

  private handle(res: UWS.HttpResponse, req: UWS.HttpRequest, method: Method, route: string, paramCount: number, handler: Handler, ro: RouteOptions): void {
    const state = { aborted: false };
    let settled = false;
    // counted before anything can fail, settled exactly once (answer or abort)
    this.inFlight++;
    res.onAborted(() => {
      state.aborted = true;
      // the client went away before an answer: this request no longer holds up a drain
      if (!settled) {
        settled = true;
        this.settle();
      }
    });
    const started = process.hrtime.bigint();
    const headers: Record<string, string> = {};
    let oversized: string | undefined;
    for (const h of HEADERS) {
      const v = req.getHeader(h);
      if (v) {
        if (v.length > MAX_HEADER_CHARS) oversized = h;
        else headers[h] = v;
      }
    }
    const params: string[] = [];
    let badParam = false;
    for (let i = 0; i < paramCount; i++) {
      const raw = req.getParameter(i) ?? '';
      try {
        params.push(decodeURIComponent(raw));
      } catch {
        // a malformed percent-escape must be a 400, never an exception inside a uWS callback
        badParam = true;
        params.push(raw);
      }
    }
    const rawQuery = req.getQuery() ?? '';
    const path = req.getUrl();
    const requestId = this.requestId(headers['x-request-id'] ?? '');
    let remote = '';
    try {
      remote = Buffer.from(res.getRemoteAddressAsText()).toString();
    } catch {
      remote = '';
    }
    const clientIp = clientAddress(remote, headers['x-forwarded-for'], this.opts.trustProxy ?? false);
    const { span, ctx, traceId } = serverSpan(method, route, headers.traceparent, requestId);
    const cors = this.corsHeaders(headers.origin);
    let parsedQuery: URLSearchParams | undefined;
    const request = (body: Buffer | undefined): HttpRequest => ({
      method,
      path,
      route,
      params,
      rawQuery,
      headers,
      remoteAddress: remote,
      clientIp,
      requestId,
      traceId,
      body,
      query(name: string) {
        parsedQuery ??= new URLSearchParams(rawQuery);
        return parsedQuery.get(name) ?? undefined;
      },
    });

    let limitHeaders: Record<string, string> | undefined;
    const done = (status: number, body: string, contentType: string, extra?: Readonly<Record<string, string>>): void => {
      this.write(res, state, status, body, contentType, requestId, traceId, [limitHeaders, cors, extra]);
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const rm = this.metricsFor(method, route, status);
      rm.inc();
      rm.observe(seconds);
      span.setAttribute('http.response.status_code', status);
      if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
      span.end();
      if (this.opts.log.isLevelEnabled('debug')) {
        this.opts.log.debug({ request_id: requestId, trace_id: traceId, method, route, status, ms: Math.round(seconds * 10000) / 10, client: clientIp }, 'request');
      }
      if (!settled) {
        settled = true;
        this.settle();
      }
    };
    const fail = (err: unknown): void => {
      if (err instanceof AppError) {
        // one line per error: 5xx are the operator's problem (warn), 4xx the caller's (debug: floods must not flood the logs)
        const line = { request_id: requestId, trace_id: traceId, route, status: err.status, code: err.code };
        if (err.status >= 500) this.opts.log.warn(line, err.message);
        else this.opts.log.debug(line, err.message);
        done(err.status, errorBody(err.code, err.message, traceId, err.details), 'application/json', err.headers);
      } else {
        this.opts.log.error({ request_id: requestId, trace_id: traceId, route, err }, 'unhandled error');
        span.recordException(err as Error);
        done(500, errorBody('INTERNAL', 'internal error', traceId), 'application/json');
      }
    };
    const run = (body: Buffer | undefined): void => {
      let out: Promise<HttpReply> | HttpReply;
      try {
        out = context.with(ctx, () => handler(request(body)));
      } catch (err) {
        fail(err);
        return;
      }
      const reply = (r: HttpReply): void => {
        const b = r.body;
        const text = b === undefined ? '' : typeof b === 'string' ? b : JSON.stringify(b);
        done(r.status, text, r.contentType ?? 'application/json', r.headers);
      };
      // an answer known now (a status poll from memory) is written inside this
      // uWS callback: no promise, no microtask, no separate cork
      if (out instanceof Promise) out.then(reply, fail);
      else reply(out);
    };

    if (oversized) {
      fail(new AppError('HEADER_TOO_LARGE', `header ${oversized} is larger than ${MAX_HEADER_CHARS} bytes`));
      return;
    }
    if (badParam) {
      fail(new AppError('INVALID_REQUEST', 'malformed percent-encoding in the path'));
      return;
    }
    if (this.opts.limiter && ro.rateLimit !== false) {
      const v = this.opts.limiter.take(clientIp);
      limitHeaders = rateLimitHeaders(v);
      if (!v.ok) {
        this.opts.metrics.rateLimitDropped.inc({ scope: 'client' });
        fail(new AppError('RATE_LIMITED', 'too many requests from this client; slow down', { retry_after_sec: v.retryAfterSec }));
        return;
      }
    }
    if (!ro.body) {
      run(undefined);
      return;
    }
    const limit = this.opts.maxBodyBytes;
    const declared = Number(headers['content-length'] ?? '0');
    if (declared > limit) {
      fail(new AppError('PAYLOAD_TOO_LARGE', `body larger than ${limit} bytes`));
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
        fail(new AppError('PAYLOAD_TOO_LARGE', `body larger than ${limit} bytes`));
        return;
      }
      // uWS reuses the chunk's memory after this callback returns: copy it.
      chunks.push(Buffer.from(new Uint8Array(chunk).slice()));
      if (isLast) run(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks));
    });
  }

  /**
   * Writes one response. Header groups are written in order, a later group's
   * value winning over an earlier one's (as an object spread would); the
   * fixed headers go out as one block unless a group overrides one of them
   * (the page sets its own Content-Security-Policy).
   */
  private write(
    res: UWS.HttpResponse,
    state: { aborted: boolean },
    status: number,
    body: string,
    contentType: string,
    requestId: string,
    /** X-Trace-ID, when the request has one */
    traceId: string | undefined,
    groups: ReadonlyArray<Readonly<Record<string, string>> | undefined>,
    /** HEAD (and 204/304): headers only, never a body (a body would mis-frame the next response on the connection) */
    noBody = false,
  ): void {
    if (state.aborted) return;
    state.aborted = true; // a response is written once
    const laterHas = (i: number, k: string): boolean => {
      for (let j = i + 1; j < groups.length; j++) if (groups[j] && k in groups[j]!) return true;
      return false;
    };
    res.cork(() => {
      res.writeStatus(statusLine(status));
      res.writeHeader('Content-Type', contentType);
      res.writeHeader('X-Request-ID', requestId);
      if (traceId) res.writeHeader('X-Trace-ID', traceId);
      if (!groups.some(overridesFixed)) res.writeHeader('Cache-Control', FIXED_BLOCK);
      else for (const [k, v] of FIXED_HEADERS) if (!laterHas(-1, k)) res.writeHeader(k, v);
      groups.forEach((g, i) => {
        if (g) for (const k in g) if (!laterHas(i, k)) res.writeHeader(k, g[k]!);
      });
      // endWithoutBody does not finish the response in this uWS build (it stays open and
      // the connection stalls): an empty body frames correctly for HEAD, 204 and 304
      if (noBody || status === 204 || status === 304) res.end();
      else res.end(body);
    });
  }
}

/** Parses a JSON object body, or throws the contract's 400/415. */
export function jsonBody(req: HttpRequest): Record<string, unknown> {
  const ct = req.headers['content-type'];
  if (ct && !/^application\/(.+\+)?json\b/i.test(ct)) throw new AppError('UNSUPPORTED_MEDIA_TYPE', 'send application/json');
  if (!req.body || req.body.length === 0) throw new AppError('INVALID_REQUEST', 'a JSON body is required');
  let v: unknown;
  try {
    v = JSON.parse(req.body.toString('utf8'));
  } catch {
    throw new AppError('INVALID_JSON', 'body is not valid JSON');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new AppError('INVALID_REQUEST', 'body must be a JSON object');
  return v as Record<string, unknown>;
}
