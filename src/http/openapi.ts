import type { TSchema } from '@sinclair/typebox';
import { errorStatus, type ErrorCode } from '../errors.js';
import { buildInfo } from '../generated/build-info.js';
import type { AnyRoute, ErrorList } from './route.js';
import { NAMED } from './schemas.js';

// The OpenAPI 3.1 document of the gateway's HTTP API, generated from the
// route table (route.ts): paths, parameters, request and response schemas,
// security, and per status the error codes an operation can answer with,
// from the route's own list plus those its declared properties bring (the
// edge's validation, rate limits, authentication, idempotency). Statuses
// come from src/errors.ts. The only operations written here by hand are the
// two WebSocket upgrades, which are not routes of the edge.

type Json = Record<string, unknown>;
type Method = 'get' | 'post' | 'put' | 'delete';

const schemaRef = (name: string): Json => ({ $ref: `#/components/schemas/${name}` });
const param = (name: string): Json => ({ $ref: `#/components/parameters/${name}` });
const header = (name: string): Json => ({ $ref: `#/components/headers/${name}` });
const json = (s: Json, extra: Json = {}): Json => ({ 'application/json': { schema: s, ...extra } });

const NAME_OF = new Map<unknown, string>(Object.entries(NAMED).map(([k, v]) => [v, k]));

/** A schema as JSON (TypeBox's symbol keys dropped), named schemas by $ref except at the root of their own definition. */
function doc(s: unknown, root = true): unknown {
  if (Array.isArray(s)) return s.map((x) => doc(x, false));
  if (s === null || typeof s !== 'object') return s;
  const name = NAME_OF.get(s);
  if (name && !root) return schemaRef(name);
  const out: Json = {};
  for (const k of Object.keys(s)) out[k] = doc((s as Json)[k], false);
  return out;
}
const ref = (s: TSchema): Json => (NAME_OF.has(s) ? schemaRef(NAME_OF.get(s)!) : (doc(s) as Json));

// ---------------------------------------------------------------------------
// Errors each declared property brings

/** The edge itself: every route. */
const ROUTER: ErrorList = [
  ['HEADER_TOO_LARGE', 'a header the gateway reads (Authorization, Idempotency-Key, X-Request-ID, traceparent, …) is longer than 8 KiB'],
  ['INTERNAL', 'an unexpected failure (also a Redis command that failed without a typed error)'],
];
const CLIENT_LIMIT: ErrorList = [['RATE_LIMITED', 'this client (address) exceeded RATE_LIMIT_RPS / RATE_LIMIT_BURST; wait Retry-After seconds']];
const BODY: ErrorList = [
  ['PAYLOAD_TOO_LARGE', 'the body is larger than HTTP_MAX_BODY_BYTES'],
  ['UNSUPPORTED_MEDIA_TYPE', 'Content-Type is set and is not application/json (or application/*+json)'],
  ['INVALID_JSON', 'the body is not valid JSON'],
];
const VALIDATION: ErrorList = [['INVALID_REQUEST', 'the request does not match the operation\'s schemas (the message names the field); also a malformed percent-escape in the path']];
const IDEMPOTENCY: ErrorList = [
  ['INVALID_REQUEST', 'Idempotency-Key is not 8-128 characters of A-Z a-z 0-9 _ -'],
  ['IDEMPOTENCY_CONFLICT', 'the Idempotency-Key was used for a different request (reason different_request) or a request with it is still running (reason in_flight)'],
  ['REDIS_UNAVAILABLE', 'the idempotency store (Redis) is unavailable; retry after Retry-After'],
  ['SERVICE_UNAVAILABLE', 'the outcome could not be recorded under the key (reason outcome_not_recorded); retry with the same key after Retry-After: the retry never runs the request a second time'],
];
const USER_JWT: ErrorList = [
  ['UNAUTHORIZED', 'the bearer JWT is missing (when required) or does not verify; `reason` is one of missing, not_configured, malformed, expired, not_yet_valid, issuer, audience, claim, algorithm, signature'],
  ['SERVICE_UNAVAILABLE', 'the identity provider keys (JWT_JWKS_ENDPOINT) cannot be fetched (reason jwks); retry after Retry-After'],
  ['RATE_LIMITED', 'this user (JWT sub) exceeded the per-user limit; wait Retry-After seconds'],
];
const ORIGIN_AUTH: ErrorList = [
  ['UNAUTHORIZED', 'no `Authorization: Bearer <origin API key>` or a wrong key'],
  ['NOT_FOUND', 'no ORIGIN_API_KEYS are configured: the route does not exist'],
];
const ADMIN_AUTH: ErrorList = [
  ['UNAUTHORIZED', 'no `Authorization: Bearer <ADMIN_TOKEN>` or a wrong token'],
  ['NOT_FOUND', 'the admin API is disabled (ADMIN_TOKEN unset): the route does not exist'],
];

function errorsOf(r: AnyRoute): Map<number, Map<ErrorCode, string[]>> {
  const all: (readonly [ErrorCode, string])[] = [...ROUTER];
  if (r.rateLimit !== false) all.push(...CLIENT_LIMIT);
  if (r.body) all.push(...BODY);
  if (r.body || r.query || r.params) all.push(...VALIDATION);
  for (const [field, code] of Object.entries(r.missing ?? {})) all.push([code, `${field} is missing${r.body ? ', null or empty' : ''}`]);
  for (const [field, code] of Object.entries(r.invalid ?? {})) all.push([code, `${field} is not valid`]);
  if (r.auth === 'admin') all.push(...ADMIN_AUTH);
  else if (r.auth === 'origin') all.push(...ORIGIN_AUTH);
  else if (r.auth && r.auth !== 'none') all.push(...USER_JWT);
  if (r.idempotency === 'required') all.push(['IDEMPOTENCY_KEY_REQUIRED', 'no Idempotency-Key header'], ...IDEMPOTENCY);
  else if (r.idempotency === 'optional') all.push(...IDEMPOTENCY);
  all.push(...(r.errors ?? []));
  const byStatus = new Map<number, Map<ErrorCode, string[]>>();
  for (const [code, why] of all) {
    const status = errorStatus[code];
    let codes = byStatus.get(status);
    if (!codes) byStatus.set(status, (codes = new Map()));
    const whys = codes.get(code) ?? [];
    if (!whys.includes(why)) whys.push(why);
    codes.set(code, whys);
  }
  return byStatus;
}

const TRACE_HEADERS = { 'X-Request-ID': header('X-Request-ID'), 'X-Trace-ID': header('X-Trace-ID') };
const RATE_HEADERS = {
  'X-RateLimit-Limit': header('X-RateLimit-Limit'),
  'X-RateLimit-Remaining': header('X-RateLimit-Remaining'),
  'X-RateLimit-Reset': header('X-RateLimit-Reset'),
};

function errorResponse(status: number, codes: Map<ErrorCode, string[]>, r: AnyRoute): Json {
  const names = [...codes.keys()];
  const headers: Record<string, Json> = { ...TRACE_HEADERS };
  if (r.rateLimit !== false || status === 429) Object.assign(headers, RATE_HEADERS);
  if (status === 429 || status === 503) headers['Retry-After'] = header('Retry-After');
  if (status === 401) headers['WWW-Authenticate'] = header('WWW-Authenticate');
  if (r.idempotency && status < 500) headers['X-Idempotency-Cached'] = header('X-Idempotency-Cached');
  return {
    description: [...codes].map(([code, whys]) => `\`${code}\`: ${whys.join('; ')}`).join('\n\n'),
    headers,
    content: json({ allOf: [schemaRef('Error'), { type: 'object', properties: { error: { type: 'object', properties: { code: { enum: names } } } } }] }),
    'x-error-codes': names,
  };
}

const SECURITY: Record<string, Json[]> = {
  user: [{ bearerAuth: [] }],
  'user-if-configured': [{ bearerAuth: [] }, {}],
  'user-optional': [{}, { bearerAuth: [] }],
  admin: [{ adminToken: [] }],
  origin: [{ originKey: [] }],
};

function operationObject(r: AnyRoute): Json {
  const parameters: Json[] = [param('XRequestId'), param('Traceparent')];
  for (const [name, s] of Object.entries((r.params as { properties?: Record<string, TSchema> } | undefined)?.properties ?? {})) {
    parameters.push({ name, in: 'path', required: true, description: (s as { description?: string }).description ?? name, schema: doc(s) });
  }
  const query = r.query as { properties?: Record<string, TSchema>; required?: string[] } | undefined;
  for (const [name, s] of Object.entries(query?.properties ?? {})) {
    parameters.push({ name, in: 'query', required: query?.required?.includes(name) ?? false, description: (s as { description?: string }).description ?? name, schema: doc(s) });
  }
  if (r.idempotency === 'required') parameters.push(param('IdempotencyKeyRequired'));
  else if (r.idempotency === 'optional' || r.reads?.includes('idempotency-key')) parameters.push(param('IdempotencyKey'));
  if (r.reads?.includes('if-none-match')) parameters.push(param('IfNoneMatch'));
  const responses: Record<string, Json> = {};
  for (const [status, spec] of Object.entries(r.responses)) {
    const h: Record<string, Json> = { ...TRACE_HEADERS, ...(r.rateLimit !== false ? RATE_HEADERS : {}) };
    for (const name of spec.headers ?? []) h[name] = header(name);
    const ct = spec.contentType ?? 'application/json';
    const content = Number(status) === 304 ? undefined : spec.schema ? { [ct]: { schema: ref(spec.schema) } } : ct.startsWith('application/json') ? { [ct]: { schema: { type: 'object' } } } : { [ct]: { schema: { type: 'string' } } };
    responses[status] = { description: spec.description, headers: h, ...(content ? { content } : {}) };
  }
  for (const [status, codes] of [...errorsOf(r)].sort(([a], [b]) => a - b)) {
    const key = String(status);
    const built = errorResponse(status, codes, r);
    const existing = responses[key];
    // a documented non-error answer under the same status keeps its body; the codes are added
    responses[key] = existing ? { ...existing, description: `${String(existing.description)}\n\n${String(built.description)}`, 'x-error-codes': built['x-error-codes'] } : built;
  }
  return {
    operationId: r.operationId,
    summary: r.summary,
    ...(r.description ? { description: r.description } : {}),
    tags: [...r.tags],
    security: SECURITY[r.auth ?? 'none'] ?? [],
    parameters,
    ...(r.body ? { requestBody: { required: !r.bodyOptional, content: r.form ? { 'application/x-www-form-urlencoded': { schema: ref(r.body) } } : json(ref(r.body)) } } : {}),
    responses,
    ...(r.openapi ?? {}),
  };
}

/** A plain GET (no upgrade headers) on a WebSocket path finds no HTTP route. */
const NOT_AN_UPGRADE: Json = {
  description: '`NOT_FOUND`: a request without the WebSocket upgrade headers (the path is not an HTTP route); also every request when the endpoint is disabled',
  content: json({ allOf: [schemaRef('Error'), { type: 'object', properties: { error: { type: 'object', properties: { code: { enum: ['NOT_FOUND'] } } } } }] }),
  'x-error-codes': ['NOT_FOUND'],
};


/** The WebSocket upgrades: not routes of the edge (uWS handles them), documented here. */
const WEBSOCKETS: (Json & { method: Method; path: string })[] = [
  {
    method: 'get',
    path: '/api/v1/queue/ws',
    operationId: 'queueWebSocket',
    summary: 'WebSocket: pushed position, ETA and readiness',
    description:
      'A WebSocket upgrade (RFC 6455) on the same host and port. Subprotocols `waiting-room.v1.json` (default, text frames) and ' +
      '`waiting-room.v1.msgpack` (binary frames). The server pushes `welcome`, `position`, `ready`, `admitted`, `expired`, `left`, `paused`, `resumed`, ' +
      '`pong`, `error`; the client sends `enter`, `leave`, `ping`. The handshake always succeeds: an unknown or finished token, a full or draining ' +
      'instance, a rate limit or an unavailable store close the socket at once with a 4xxx code (4000-4099 terminal, 4100-4199 reconnect, ' +
      '4400-4499 protocol violation). The full protocol is in docs/PROTOCOL.md (served at /docs/PROTOCOL.md).',
    tags: ['realtime'],
    parameters: [
      param('WaitingTokenQuery'),
      param('SecWebSocketProtocol'),
      { name: 'Upgrade', in: 'header', required: true, schema: { type: 'string', const: 'websocket' } },
      { name: 'Connection', in: 'header', required: true, schema: { type: 'string', examples: ['Upgrade'] } },
      { name: 'Sec-WebSocket-Key', in: 'header', required: true, schema: { type: 'string' } },
      { name: 'Sec-WebSocket-Version', in: 'header', required: true, schema: { type: 'string', const: '13' } },
    ],
    responses: {
      '101': {
        description: 'Switching Protocols: the socket is open. Wait for `welcome` before assuming a place in line (see the close codes).',
        headers: {
          'Sec-WebSocket-Accept': { schema: { type: 'string' } },
          'Sec-WebSocket-Protocol': { description: 'the chosen subprotocol (absent when none was offered)', schema: { type: 'string', enum: ['waiting-room.v1.json', 'waiting-room.v1.msgpack'] } },
        },
      },
      '404': NOT_AN_UPGRADE,
    },
    externalDocs: { description: 'WebSocket protocol v1 (docs/PROTOCOL.md)', url: '/docs/PROTOCOL.md' },
    extensions: {
      'x-websocket': true,
      'x-close-codes': {
        '4000': 'admitted (terminal)',
        '4001': 'left (terminal)',
        '4004': 'unknown or malformed token (terminal)',
        '4010': 'expired (terminal)',
        '4100': 'instance draining: reconnect elsewhere',
        '4101': 'slow consumer: reconnect',
        '4102': 'instance full: reconnect later',
        '4103': 'store unavailable: reconnect later',
        '4104': 'connection rate or per-address cap exceeded: reconnect later',
        '4400': 'bad message (terminal)',
        '4429': 'message flood (terminal)',
      },
    },
  },
  {
    method: 'get',
    path: '/api/v1/admin/ws',
    operationId: 'adminFeedWebSocket',
    summary: 'WebSocket: live per-event statistics for the operator page',
    description:
      'A WebSocket upgrade; the ADMIN_TOKEN goes in the `token` query parameter. While connected, one JSON `event` message per event is pushed every second. ' +
      'A wrong token is closed at once with 4401; a draining instance closes with 4100. Exists only when ADMIN_TOKEN is set.',
    tags: ['admin'],
    security: [{ adminTokenQuery: [] }],
    parameters: [
      { name: 'Upgrade', in: 'header', required: true, schema: { type: 'string', const: 'websocket' } },
      { name: 'Sec-WebSocket-Key', in: 'header', required: true, schema: { type: 'string' } },
      { name: 'Sec-WebSocket-Version', in: 'header', required: true, schema: { type: 'string', const: '13' } },
    ],
    responses: {
      '101': {
        description: 'Switching Protocols. Messages: `{"type":"event","event_id","state","in_line","waiting","ready","rate":{…},"eta_confidence","eta_accuracy_p50_sec","t"}`.',
        headers: { 'Sec-WebSocket-Accept': { schema: { type: 'string' } } },
      },
      '404': NOT_AN_UPGRADE,
    },
    extensions: { 'x-websocket': true, 'x-close-codes': { '4100': 'instance draining: reconnect', '4401': 'invalid admin token' } },
  },
];

const PARAMETERS: Record<string, Json> = {
  XRequestId: {
    name: 'X-Request-ID',
    in: 'header',
    required: false,
    description: 'echoed in the response when it is 1-128 characters of A-Z a-z 0-9 . _ : - (otherwise a new id is made)',
    schema: { type: 'string', pattern: '^[A-Za-z0-9._:-]{1,128}$' },
  },
  Traceparent: {
    name: 'traceparent',
    in: 'header',
    required: false,
    description: 'W3C trace context: the request\'s server span continues it, its trace id becomes the error `trace_id` and X-Trace-ID, and it travels on to the gRPC backends',
    schema: { type: 'string', pattern: '^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$', examples: ['00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'] },
  },
  IdempotencyKey: {
    name: 'Idempotency-Key',
    in: 'header',
    required: false,
    description: 'optional; a UUID. The same key with the same request is answered once (see the operation).',
    schema: { type: 'string', pattern: '^[A-Za-z0-9_-]{8,128}$', examples: ['0f8fad5b-d9cb-469f-a165-70867728950e'] },
  },
  IdempotencyKeyRequired: {
    name: 'Idempotency-Key',
    in: 'header',
    required: true,
    description: 'required; a UUID. Same key + same request = the stored response replayed with X-Idempotency-Cached: true; same key + different request, or while the first is running = 409 IDEMPOTENCY_CONFLICT.',
    schema: { type: 'string', pattern: '^[A-Za-z0-9_-]{8,128}$', examples: ['0f8fad5b-d9cb-469f-a165-70867728950e'] },
  },
  WaitingTokenQuery: {
    name: 'token',
    in: 'query',
    required: true,
    description: 'the waiting_token from join (URL-encoded)',
    schema: { type: 'string', examples: ['concert-2026.q1w2e3r4t5y6u7i8o9p0aS'] },
  },
  EventIdPath: { name: 'id', in: 'path', required: true, description: 'event id', schema: { type: 'string', pattern: '^[A-Za-z0-9_-]{1,64}$' } },
  ReservationIdPath: { name: 'id', in: 'path', required: true, description: 'reservation id', schema: { type: 'string', pattern: '^[A-Za-z0-9_-]{1,64}$' } },
  PaymentIntentIdPath: { name: 'id', in: 'path', required: true, description: 'payment intent id', schema: { type: 'string', pattern: '^[A-Za-z0-9_-]{1,64}$' } },
  SecWebSocketProtocol: {
    name: 'Sec-WebSocket-Protocol',
    in: 'header',
    required: false,
    description: 'offer `waiting-room.v1.msgpack` for binary MessagePack frames; otherwise JSON text frames',
    schema: { type: 'string', enum: ['waiting-room.v1.json', 'waiting-room.v1.msgpack'] },
  },
  IfNoneMatch: { name: 'If-None-Match', in: 'header', required: false, description: 'the ETag of a cached copy', schema: { type: 'string' } },
};

const HEADERS: Record<string, Json> = {
  'X-Request-ID': { description: 'the request id (the incoming one when sane)', schema: { type: 'string' } },
  'X-Trace-ID': { description: 'the W3C trace id of the request (same as the error body\'s trace_id)', schema: { type: 'string', pattern: '^[0-9a-f]{32}$' } },
  'X-RateLimit-Limit': { description: 'bucket capacity of this client (or user, on a per-user 429)', schema: { type: 'integer' } },
  'X-RateLimit-Remaining': { description: 'whole tokens left', schema: { type: 'integer' } },
  'X-RateLimit-Reset': { description: 'seconds until the bucket is full again', schema: { type: 'integer' } },
  'Retry-After': { description: 'seconds to wait before retrying', schema: { type: 'integer' } },
  'X-Idempotency-Cached': { description: '`true` when this is the stored response of an earlier request with the same Idempotency-Key', schema: { type: 'string', const: 'true' } },
  'WWW-Authenticate': { description: 'Bearer challenge', schema: { type: 'string' } },
  'Cache-Control': { schema: { type: 'string' } },
  ETag: { schema: { type: 'string' } },
  'Content-Security-Policy': { description: 'pages allow only same-origin scripts, styles, images and connections', schema: { type: 'string' } },
};

const DESCRIPTION = `A virtual waiting room: one fair line per event (exact arrival order, Redis-authoritative), exact positions and an honest ETA, and admission at a rate the reservation and payment backends survive.

Flow: \`POST /api/v1/queue/join\` → poll \`GET /api/v1/queue/status\` (or hold the WebSocket \`/api/v1/queue/ws\`) until \`ready_for_entry\` → \`POST /api/v1/queue/enter\` → \`POST /api/v1/reservations\` with the \`reservation_token\` → payment → confirm.

**Errors.** Every error body is \`{"error":{"code","message","trace_id", …}}\`; some codes add fields (\`reason\`, \`waiting_token\`, \`retry_after_sec\`, \`upstream_code\`, …). Each operation lists the exact codes it can answer with; \`x-error-codes\` lists them per status. Unknown paths answer 404 \`NOT_FOUND\`, known paths with another method 405 \`METHOD_NOT_ALLOWED\` with \`Allow\`. \`OPTIONS\` on any known path answers the CORS preflight (204).

**Headers.** Every response has \`X-Request-ID\` (a sane incoming one is echoed) and \`X-Trace-ID\`; an incoming W3C \`traceparent\` is continued. Rate-limited routes carry \`X-RateLimit-Limit\`, \`X-RateLimit-Remaining\`, \`X-RateLimit-Reset\`; a 429 \`RATE_LIMITED\` adds \`Retry-After\`. POSTs honour \`Idempotency-Key\` where marked.

**Authentication.** Users: a bearer JWT (\`bearerAuth\`) verified against JWT_JWKS_ENDPOINT or JWT_SECRET. Operators: \`Authorization: Bearer <ADMIN_TOKEN>\` (\`adminToken\`); the admin API exists only when ADMIN_TOKEN is set.`;

/** The OpenAPI 3.1 document of the gateway's HTTP API, generated from its route table (a fresh object on every call). */
export function openApiDocument(routes: readonly AnyRoute[]): Record<string, unknown> {
  const paths: Record<string, Json> = {};
  for (const r of routes) {
    if (r.hidden) continue;
    const p = r.path.replace(/:([A-Za-z_][A-Za-z0-9_]*)/g, '{$1}');
    const item = (paths[p] ??= {});
    item[r.method.toLowerCase()] = operationObject(r);
  }
  for (const { method, path, extensions, ...op } of WEBSOCKETS) {
    // the admin feed exists only with the admin API
    if (path.startsWith('/api/v1/admin/') && !routes.some((r) => r.auth === 'admin')) continue;
    (paths[path] ??= {})[method] = { ...op, ...(extensions as Json | undefined), parameters: [param('XRequestId'), param('Traceparent'), ...((op.parameters as Json[] | undefined) ?? [])] };
  }
  const schemas: Record<string, unknown> = {};
  for (const [name, s] of Object.entries(NAMED)) schemas[name] = doc(s);
  return {
    openapi: '3.1.0',
    info: {
      title: 'Waiting-room gateway',
      version: buildInfo.version,
      description: DESCRIPTION,
      license: { name: 'Apache-2.0', identifier: 'Apache-2.0' },
    },
    servers: [{ url: '/', description: 'this gateway' }],
    tags: [
      { name: 'queue', description: 'The line: join, status, enter, leave' },
      { name: 'realtime', description: 'WebSocket push (protocol v1)', externalDocs: { url: '/docs/PROTOCOL.md' } },
      { name: 'admin', description: 'Operator API (bearer ADMIN_TOKEN; absent when ADMIN_TOKEN is unset)' },
      { name: 'reservations', description: 'Seat holds through the reservation backend (gRPC)' },
      { name: 'payments', description: 'Payments through the payment backend (gRPC)' },
      { name: 'auth', description: 'Keys of reservation tokens; development tokens' },
      { name: 'origin', description: "The ticket site's server: redeem an admission (docs/INTEGRATION.md)" },
      { name: 'operations', description: 'Probes, version and metrics' },
      { name: 'pages', description: 'The browser pages and their configuration' },
      { name: 'docs', description: 'This documentation' },
    ],
    paths,
    components: {
      schemas,
      parameters: PARAMETERS,
      headers: HEADERS,
      securitySchemes: {
        bearerAuth: {
          type: 'http',
          scheme: 'bearer',
          bearerFormat: 'JWT',
          description: 'A user JWT (exp and sub required; issuer and audience checked when configured). Without user authentication configured, routes that act for a user answer 401.',
        },
        adminToken: { type: 'http', scheme: 'bearer', description: 'The operator token: `Authorization: Bearer <ADMIN_TOKEN>`.' },
        originKey: { type: 'http', scheme: 'bearer', description: "An origin (ticket site) server's API key, one of ORIGIN_API_KEYS: `Authorization: Bearer <key>`." },
        adminTokenQuery: { type: 'apiKey', in: 'query', name: 'token', description: 'The ADMIN_TOKEN in the query string (the admin WebSocket only: browsers cannot set headers on a WebSocket).' },
      },
    },
  };
}
