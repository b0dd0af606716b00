import { errorStatus, type ErrorCode } from '../errors.js';
import { buildInfo } from '../generated/build-info.js';

// The OpenAPI 3.1 description of the gateway's HTTP API, built from one table
// of operations. Every operation lists the error codes its implementation can
// answer with (src/http/routes-*.ts, the router in server.ts, idempotency.ts,
// the auth modules and the backend error mapping); the HTTP status of each
// code comes from src/errors.ts, so a status can never drift from the code.
// test/openapi.test.ts checks that every registered route is documented and
// every documented route is registered.

type Json = Record<string, unknown>;
type Method = 'get' | 'post' | 'put' | 'delete';
type ErrorList = ReadonlyArray<readonly [ErrorCode, string]>;

const schema = (name: string): Json => ({ $ref: `#/components/schemas/${name}` });
const param = (name: string): Json => ({ $ref: `#/components/parameters/${name}` });
const header = (name: string): Json => ({ $ref: `#/components/headers/${name}` });
const json = (s: Json, extra: Json = {}): Json => ({ 'application/json': { schema: s, ...extra } });
const str = (description: string, extra: Json = {}): Json => ({ type: 'string', description, ...extra });
const int = (description: string, extra: Json = {}): Json => ({ type: 'integer', description, ...extra });
const num = (description: string, extra: Json = {}): Json => ({ type: 'number', description, ...extra });
const bool = (description: string): Json => ({ type: 'boolean', description });
const obj = (properties: Record<string, Json>, required: readonly string[], extra: Json = {}): Json => ({
  type: 'object',
  properties,
  required: [...required],
  ...extra,
});

// ---------------------------------------------------------------------------
// Errors shared by groups of operations

/** The router: every route. */
const ROUTER: ErrorList = [
  ['HEADER_TOO_LARGE', 'a header the gateway reads (Authorization, Idempotency-Key, X-Request-ID, traceparent, …) is longer than 8 KiB'],
  ['INTERNAL', 'an unexpected failure (also a Redis command that failed without a typed error)'],
];
/** The per-client token bucket (routes registered with the default rate limit). */
const CLIENT_LIMIT: ErrorList = [['RATE_LIMITED', 'this client (address) exceeded RATE_LIMIT_RPS / RATE_LIMIT_BURST; wait Retry-After seconds']];
/** Routes that read a body. */
const BODY_LIMIT: ErrorList = [['PAYLOAD_TOO_LARGE', 'the body is larger than HTTP_MAX_BODY_BYTES']];
/** jsonBody(): the body must be one JSON object. */
const JSON_BODY: ErrorList = [
  ['UNSUPPORTED_MEDIA_TYPE', 'Content-Type is set and is not application/json (or application/*+json)'],
  ['INVALID_JSON', 'the body is not valid JSON'],
  ['INVALID_REQUEST', 'the body is empty or not a JSON object'],
];
/** Idempotency.wrap(): a stored response is replayed (X-Idempotency-Cached: true) for the same key and request. */
const IDEMPOTENCY: ErrorList = [
  ['INVALID_REQUEST', 'Idempotency-Key is not 8-128 characters of A-Z a-z 0-9 _ -'],
  ['IDEMPOTENCY_CONFLICT', 'the Idempotency-Key was used for a different request (reason different_request) or a request with it is still running (reason in_flight)'],
  ['REDIS_UNAVAILABLE', 'the idempotency store (Redis) is unavailable; retry after Retry-After'],
  ['SERVICE_UNAVAILABLE', 'the outcome could not be recorded under the key (reason outcome_not_recorded); retry with the same key after Retry-After: the retry never runs the request a second time'],
];
const IDEMPOTENCY_REQUIRED: ErrorList = [['IDEMPOTENCY_KEY_REQUIRED', 'no Idempotency-Key header'], ...IDEMPOTENCY];
/** A bearer JWT was sent (or is required) and is checked. */
const USER_JWT: ErrorList = [
  ['UNAUTHORIZED', 'the bearer JWT is missing (when required) or does not verify; `reason` is one of missing, not_configured, malformed, expired, not_yet_valid, issuer, audience, claim, algorithm, signature'],
  ['SERVICE_UNAVAILABLE', 'the identity provider keys (JWT_JWKS_ENDPOINT) cannot be fetched (reason jwks); retry after Retry-After'],
];
const USER_LIMIT: ErrorList = [['RATE_LIMITED', 'this user (JWT sub) exceeded the per-user limit; wait Retry-After seconds']];
const REDIS: ErrorList = [['REDIS_UNAVAILABLE', 'the queue store (Redis) is unavailable or did not answer within REDIS_COMMAND_TIMEOUT_MS; retry after Retry-After']];
const ADMIN_AUTH: ErrorList = [
  ['UNAUTHORIZED', 'no `Authorization: Bearer <ADMIN_TOKEN>` or a wrong token'],
  ['NOT_FOUND', 'the admin API is disabled (ADMIN_TOKEN unset): the route does not exist'],
];
const EVENT_ID_PARAM: ErrorList = [['INVALID_REQUEST', 'the event id in the path is not 1-64 characters of A-Z a-z 0-9 _ -']];
/**
 * A gRPC backend call (src/backends/grpc-backend.ts): transport failures, and
 * in-band `error` codes mapped by code (common.v1.ErrorCode -> gateway code).
 * These error bodies add `upstream_code` and, when the backend names fields, `fields`.
 */
const BACKEND: ErrorList = [
  ['UNAUTHORIZED', 'backend in-band UNAUTHENTICATED'],
  ['FORBIDDEN', 'backend in-band FORBIDDEN or UNAUTHORIZED (e.g. not the caller\'s reservation)'],
  ['INVALID_REQUEST', 'backend in-band INVALID_ARGUMENT'],
  ['NOT_FOUND', 'backend in-band NOT_FOUND'],
  ['ALREADY_EXISTS', 'backend in-band ALREADY_EXISTS'],
  ['PRECONDITION_FAILED', 'backend in-band FAILED_PRECONDITION'],
  ['RATE_LIMITED', 'backend in-band RATE_LIMITED'],
  ['QUOTA_EXCEEDED', 'backend in-band QUOTA_EXCEEDED'],
  ['IDEMPOTENCY_KEY_REQUIRED', 'backend in-band IDEMPOTENCY_REQUIRED'],
  ['IDEMPOTENCY_CONFLICT', 'backend in-band IDEMPOTENCY_CONFLICT'],
  ['RESERVATION_EXPIRED', 'backend in-band RESERVATION_EXPIRED'],
  ['PAYMENT_NOT_APPROVED', 'backend in-band PAYMENT_NOT_APPROVED'],
  ['INVENTORY_CONFLICT', 'backend in-band INVENTORY_CONFLICT (a seat is already held or sold)'],
  ['INSUFFICIENT_INVENTORY', 'backend in-band INSUFFICIENT_INVENTORY'],
  ['CONCURRENT_MODIFICATION', 'backend in-band CONCURRENT_MODIFICATION'],
  ['UPSTREAM_ERROR', 'the backend failed (gRPC INTERNAL/UNKNOWN/…, or in-band INTERNAL, UPSTREAM_ERROR, DATA_CORRUPTION)'],
  ['UPSTREAM_UNAVAILABLE', 'the backend is unreachable (reason unavailable) or its circuit breaker is open (reason circuit_open); retry after Retry-After'],
  ['UPSTREAM_TIMEOUT', 'the backend did not answer within its deadline (BACKEND_*_TIMEOUT)'],
];
const without = (list: ErrorList, ...codes: ErrorCode[]): ErrorList => list.filter(([c]) => !codes.includes(c));

// ---------------------------------------------------------------------------
// Operations

interface Operation {
  method: Method;
  /** OpenAPI path template ({param}) */
  path: string;
  operationId: string;
  summary: string;
  description?: string;
  tags: string[];
  security?: Json[];
  parameters?: Json[];
  requestBody?: Json;
  /** success (and other non-error) responses */
  responses: Record<string, Json>;
  /** errors specific to the operation (the shared groups are added from the flags below) */
  errors?: ErrorList;
  /** per-client rate limit (default true; false for probes, metrics and pages) */
  rateLimited?: boolean;
  /** reads a body (PAYLOAD_TOO_LARGE) */
  body?: boolean;
  /** wrapped by Idempotency (replay with X-Idempotency-Cached) */
  idempotency?: 'optional' | 'required';
  extensions?: Json;
  externalDocs?: Json;
  /** not part of the error table (e.g. WebSocket upgrades are not HTTP routes of the router) */
  raw?: boolean;
}

const USER_SECURITY_REQUIRED = [{ bearerAuth: [] }];
/** a JWT is accepted, and required only when user authentication is configured */
const USER_SECURITY_WHEN_CONFIGURED = [{ bearerAuth: [] }, {}];
const ADMIN_SECURITY = [{ adminToken: [] }];

const ok = (description: string, s: Json | undefined, headers: Record<string, Json> = {}, contentType = 'application/json'): Json => ({
  description,
  headers,
  ...(s ? { content: { [contentType]: { schema: s } } } : {}),
});

/** A plain GET (no upgrade headers) on a WebSocket path finds no HTTP route. */
const NOT_AN_UPGRADE: Json = {
  description: '`NOT_FOUND`: a request without the WebSocket upgrade headers (the path is not an HTTP route); also every request when the endpoint is disabled',
  content: json({ allOf: [schema('Error'), { type: 'object', properties: { error: { type: 'object', properties: { code: { enum: ['NOT_FOUND'] } } } } }] }),
  'x-error-codes': ['NOT_FOUND'],
};

const OPERATIONS: Operation[] = [
  // ----- queue
  {
    method: 'post',
    path: '/api/v1/queue/join',
    operationId: 'joinQueue',
    summary: 'Join the line of an event',
    description:
      'Takes the next place in the event\'s line (exact arrival order at Redis). A valid bearer JWT binds the place to its `sub`; ' +
      'with user authentication configured a `user_id` in the body needs one. An `Idempotency-Key` (scoped by caller) makes a repeated join answer ' +
      '409 DUPLICATE_REQUEST with the existing `waiting_token` instead of a second place; the same happens when the same user is already in line. ' +
      'Unknown events are created on first join only when QUEUE_AUTO_CREATE_EVENTS is on.',
    tags: ['queue'],
    security: [{}, { bearerAuth: [] }],
    parameters: [param('IdempotencyKey')],
    requestBody: { required: true, content: json(schema('JoinRequest')) },
    responses: { '202': ok('In line.', schema('JoinResponse')) },
    body: true,
    errors: [
      ...JSON_BODY,
      ['MISSING_EVENT_ID', 'event_id is missing, null or empty'],
      ['INVALID_REQUEST', 'event_id is not 1-64 characters of A-Z a-z 0-9 _ -, user_id is not 1-128 printable ASCII characters, or the Idempotency-Key is malformed'],
      ...USER_JWT,
      ['UNAUTHORIZED', 'a user_id was sent without a bearer token while user authentication is configured (reason missing)'],
      ['FORBIDDEN', 'user_id differs from the authenticated user'],
      ...USER_LIMIT,
      ['EVENT_CLOSED', 'the event is closed to new arrivals'],
      ['EVENT_NOT_FOUND', 'no such event (and auto-create is off)'],
      ['DUPLICATE_REQUEST', 'same Idempotency-Key, or the same user already holds a place: carries the existing `waiting_token`, its `position` and `status`'],
      ...REDIS,
    ],
  },
  {
    method: 'get',
    path: '/api/v1/queue/status',
    operationId: 'queueStatus',
    summary: 'Place in line, ETA and readiness',
    description:
      'Polling also keeps the place alive (QUEUE_POLL_TIMEOUT_SEC): poll every `poll_after_ms`. A user attached to this instance is answered from memory.',
    tags: ['queue'],
    parameters: [param('WaitingTokenQuery')],
    responses: { '200': ok('The place in line.', schema('QueueStatus')) },
    errors: [
      ['MISSING_TOKEN', 'no `token` query parameter'],
      ['TOKEN_NOT_FOUND', 'malformed or unknown waiting token'],
      ['TOKEN_EXPIRED', 'the place is gone; `reason` is liveness, ready_timeout or left'],
      ...REDIS,
    ],
  },
  {
    method: 'post',
    path: '/api/v1/queue/enter',
    operationId: 'enterQueue',
    summary: 'Leave the line through the front door: get a reservation token',
    description:
      'Only a `ready` user, only once. The `reservation_token` is a JWT signed by the gateway (verify with /.well-known/jwks.json). ' +
      'A bearer JWT is required when user authentication is configured. `Idempotency-Key` is honoured (replayed with X-Idempotency-Cached: true).',
    tags: ['queue'],
    security: USER_SECURITY_WHEN_CONFIGURED,
    parameters: [param('IdempotencyKey')],
    requestBody: { required: true, content: json(schema('EnterRequest')) },
    responses: { '200': ok('Admitted.', schema('EnterResponse'), { 'X-Idempotency-Cached': header('X-Idempotency-Cached') }) },
    body: true,
    idempotency: 'optional',
    errors: [
      ...JSON_BODY,
      ['MISSING_TOKEN', 'waiting_token is missing or empty'],
      ...USER_JWT,
      ...USER_LIMIT,
      ['TOKEN_NOT_FOUND', 'malformed or unknown waiting token'],
      ['NOT_READY', 'not this user\'s turn yet (carries `position`): keep waiting and retry'],
      ['FORBIDDEN', 'the place belongs to another user'],
      ['TOKEN_EXPIRED', 'the place expired or was given up (`reason`)'],
      ['ALREADY_ADMITTED', 'this waiting token was already admitted'],
      ['DUPLICATE_REQUEST', 'this user already holds another place in this event (carries that `waiting_token`)'],
      ...REDIS,
    ],
  },
  {
    method: 'delete',
    path: '/api/v1/queue/leave',
    operationId: 'leaveQueue',
    summary: 'Give up a place in line',
    description: 'Everyone behind moves up by one. Repeating it answers 409 NOT_IN_LINE.',
    tags: ['queue'],
    parameters: [param('WaitingTokenQuery')],
    responses: { '200': ok('Left the line.', schema('LeaveResponse')) },
    errors: [
      ['MISSING_TOKEN', 'no `token` query parameter'],
      ['TOKEN_NOT_FOUND', 'malformed or unknown waiting token'],
      ['NOT_IN_LINE', 'the token is no longer in line (carries its `status`)'],
      ...REDIS,
    ],
  },
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
    raw: true,
  },
  // ----- admin
  {
    method: 'get',
    path: '/api/v1/admin/events',
    operationId: 'listEvents',
    summary: 'List events with their line sizes',
    description: 'At most 1000 events, sorted by id. Exists only when ADMIN_TOKEN is set.',
    tags: ['admin'],
    security: ADMIN_SECURITY,
    responses: { '200': ok('The events.', schema('EventList')) },
    errors: [...ADMIN_AUTH, ...REDIS],
  },
  {
    method: 'put',
    path: '/api/v1/admin/events/{id}',
    operationId: 'putEvent',
    summary: 'Create or update an event',
    description:
      'Any subset of the fields; a new event takes the configured defaults for the others (state `open`). A rate change restarts the ETA history. ' +
      'Exists only when ADMIN_TOKEN is set.',
    tags: ['admin'],
    security: ADMIN_SECURITY,
    parameters: [param('EventIdPath')],
    requestBody: { required: true, content: json(schema('EventPatch')) },
    responses: { '200': ok('Updated.', schema('Event')), '201': ok('Created.', schema('Event')) },
    body: true,
    errors: [...ADMIN_AUTH, ...EVENT_ID_PARAM, ...JSON_BODY, ['INVALID_REQUEST', 'an unknown field, or a field out of range (see EventPatch)'], ...REDIS],
  },
  {
    method: 'get',
    path: '/api/v1/admin/events/{id}',
    operationId: 'getEvent',
    summary: 'An event\'s configuration',
    description: 'Exists only when ADMIN_TOKEN is set.',
    tags: ['admin'],
    security: ADMIN_SECURITY,
    parameters: [param('EventIdPath')],
    responses: { '200': ok('The event.', schema('Event')) },
    errors: [...ADMIN_AUTH, ...EVENT_ID_PARAM, ['EVENT_NOT_FOUND', 'no such event'], ...REDIS],
  },
  {
    method: 'get',
    path: '/api/v1/admin/events/{id}/stats',
    operationId: 'getEventStats',
    summary: 'An event\'s line, totals, bucket, measured rates and ticker',
    description: 'Exists only when ADMIN_TOKEN is set.',
    tags: ['admin'],
    security: ADMIN_SECURITY,
    parameters: [param('EventIdPath')],
    responses: { '200': ok('The statistics.', schema('EventStats')) },
    errors: [...ADMIN_AUTH, ...EVENT_ID_PARAM, ['EVENT_NOT_FOUND', 'no such event'], ...REDIS],
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
    raw: true,
  },
  // ----- reservations and payments (gRPC backends)
  {
    method: 'post',
    path: '/api/v1/reservations',
    operationId: 'createReservation',
    summary: 'Hold seats with a reservation token',
    description:
      'Spends the `reservation_token` from enter: it must verify, be for this event and this user, be unexpired, and buys exactly one reservation. ' +
      'A backend refusal (e.g. a seat taken) frees it for another try; after a timeout only the same request (same seats) may be retried, and gets the hold the first call may have made; ' +
      'once reserved, the same request replays the reservation under any Idempotency-Key. A bearer JWT is required when user authentication is configured; `Idempotency-Key` is required.',
    tags: ['reservations'],
    security: USER_SECURITY_WHEN_CONFIGURED,
    parameters: [param('IdempotencyKeyRequired')],
    requestBody: { required: true, content: json(schema('CreateReservationRequest')) },
    responses: { '201': ok('Held.', schema('Reservation'), { 'X-Idempotency-Cached': header('X-Idempotency-Cached') }) },
    body: true,
    idempotency: 'required',
    errors: [
      ...USER_JWT,
      ...USER_LIMIT,
      ...JSON_BODY,
      ['INVALID_REQUEST', 'event_id, seat_ids (1-20 distinct ids), quantity (= number of seat_ids) or reservation_token missing or invalid'],
      ['FORBIDDEN', 'the reservation_token is unusable; `reason` is malformed, invalid, expired, used (spent, or its outcome is unknown and this is another request), wrong_event or wrong_user'],
      ['IDEMPOTENCY_CONFLICT', 'a reservation with this reservation_token is in progress (reason in_flight); retry after Retry-After'],
      ['SERVICE_UNAVAILABLE', 'the reservation was made but could not be recorded (reason outcome_not_recorded); retry the same request'],
      ...REDIS,
      ...BACKEND,
    ],
  },
  {
    method: 'get',
    path: '/api/v1/reservations/{id}',
    operationId: 'getReservation',
    summary: 'A reservation of the caller',
    tags: ['reservations'],
    security: USER_SECURITY_REQUIRED,
    parameters: [param('ReservationIdPath')],
    responses: { '200': ok('The reservation.', schema('Reservation')) },
    errors: [...USER_JWT, ...USER_LIMIT, ['NOT_FOUND', 'the id is not 1-64 characters of A-Z a-z 0-9 _ -'], ...BACKEND],
  },
  {
    method: 'post',
    path: '/api/v1/reservations/{id}/confirm',
    operationId: 'confirmReservation',
    summary: 'Confirm a held reservation (after payment)',
    tags: ['reservations'],
    security: USER_SECURITY_REQUIRED,
    parameters: [param('ReservationIdPath'), param('IdempotencyKeyRequired')],
    requestBody: { required: false, content: json(schema('ConfirmReservationRequest')) },
    responses: { '200': ok('Confirmed.', schema('ConfirmReservationResponse'), { 'X-Idempotency-Cached': header('X-Idempotency-Cached') }) },
    body: true,
    idempotency: 'required',
    errors: [
      ...USER_JWT,
      ...USER_LIMIT,
      ...JSON_BODY.filter(([c]) => c !== 'INVALID_REQUEST'),
      ['INVALID_REQUEST', 'a non-empty body that is not a JSON object, or a payment_intent_id that is not an id'],
      ['NOT_FOUND', 'the id is not 1-64 characters of A-Z a-z 0-9 _ -'],
      ...BACKEND,
    ],
  },
  {
    method: 'post',
    path: '/api/v1/reservations/{id}/cancel',
    operationId: 'cancelReservation',
    summary: 'Cancel a reservation (releases the seats)',
    description: 'No body is needed (any body is ignored).',
    tags: ['reservations'],
    security: USER_SECURITY_REQUIRED,
    parameters: [param('ReservationIdPath'), param('IdempotencyKeyRequired')],
    responses: { '200': ok('Cancelled.', schema('CancelReservationResponse'), { 'X-Idempotency-Cached': header('X-Idempotency-Cached') }) },
    body: true,
    idempotency: 'required',
    errors: [...USER_JWT, ...USER_LIMIT, ['NOT_FOUND', 'the id is not 1-64 characters of A-Z a-z 0-9 _ -'], ...BACKEND],
  },
  {
    method: 'post',
    path: '/api/v1/payment/intent',
    operationId: 'createPaymentIntent',
    summary: 'Create a payment intent for a reservation',
    tags: ['payments'],
    security: USER_SECURITY_REQUIRED,
    parameters: [param('IdempotencyKeyRequired')],
    requestBody: { required: true, content: json(schema('PaymentIntentRequest')) },
    responses: { '200': ok('The intent.', schema('PaymentIntent'), { 'X-Idempotency-Cached': header('X-Idempotency-Cached') }) },
    body: true,
    idempotency: 'required',
    errors: [
      ...USER_JWT,
      ...USER_LIMIT,
      ...JSON_BODY,
      ['INVALID_REQUEST', 'reservation_id missing or not an id, currency not an ISO 4217 code, or an unknown scenario'],
      ['INVALID_AMOUNT', 'amount is not a positive integer (minor units)'],
      ...BACKEND,
    ],
  },
  {
    method: 'get',
    path: '/api/v1/payment/{id}/status',
    operationId: 'getPaymentStatus',
    summary: 'A payment intent\'s status',
    tags: ['payments'],
    security: USER_SECURITY_REQUIRED,
    parameters: [param('PaymentIntentIdPath')],
    responses: { '200': ok('The payment.', schema('PaymentStatus')) },
    errors: [...USER_JWT, ...USER_LIMIT, ['NOT_FOUND', 'the id is not 1-64 characters of A-Z a-z 0-9 _ -'], ...BACKEND],
  },
  {
    method: 'post',
    path: '/api/v1/payment/process',
    operationId: 'processPayment',
    summary: 'Process (approve or fail) a payment intent',
    description: 'A declined payment is an outcome, not an error: 200 with `"status":"FAILED"` and a `failure_reason`.',
    tags: ['payments'],
    security: USER_SECURITY_REQUIRED,
    parameters: [param('IdempotencyKeyRequired')],
    requestBody: { required: true, content: json(schema('ProcessPaymentRequest')) },
    responses: { '200': ok('Processed (COMPLETED or FAILED).', schema('ProcessPaymentResponse'), { 'X-Idempotency-Cached': header('X-Idempotency-Cached') }) },
    body: true,
    idempotency: 'required',
    errors: [
      ...USER_JWT,
      ...USER_LIMIT,
      ...JSON_BODY,
      ['INVALID_REQUEST', 'payment_intent_id missing or not an id, or action is not approve or fail'],
      // PAYMENT_NOT_APPROVED is tolerated here: it is the 200 FAILED outcome
      ...without(BACKEND, 'PAYMENT_NOT_APPROVED'),
    ],
  },
  // ----- auth
  {
    method: 'get',
    path: '/.well-known/jwks.json',
    operationId: 'jwks',
    summary: 'Public keys of reservation tokens',
    description: 'Downstream services verify `reservation_token`s with these keys (EdDSA or ES256, `kid` in the token header; during a rotation the previous key too).',
    tags: ['auth'],
    responses: { '200': ok('A JWK Set.', schema('Jwks'), { 'Cache-Control': header('Cache-Control') }) },
  },
  {
    method: 'post',
    path: '/api/v1/dev/token',
    operationId: 'devToken',
    summary: 'Development only: mint a short-lived user JWT',
    description:
      'Exists only when development tokens are enabled (DEV_TOKENS_ENABLED, on by default with the throwaway Redis; refused at start-up with NODE_ENV=production). ' +
      'Otherwise 404 NOT_FOUND. The body is optional.',
    tags: ['auth'],
    requestBody: { required: false, content: json(schema('DevTokenRequest')) },
    responses: { '200': ok('A JWT for `sub`.', schema('DevTokenResponse')) },
    body: true,
    errors: [
      ...JSON_BODY.filter(([c]) => c !== 'INVALID_REQUEST'),
      ['INVALID_REQUEST', 'a non-empty body that is not a JSON object, or sub is not 1-64 characters of A-Z a-z 0-9 _ . @ -'],
      ['NOT_FOUND', 'development tokens are disabled: the route does not exist'],
    ],
  },
  // ----- operations
  {
    method: 'get',
    path: '/healthz',
    operationId: 'healthz',
    summary: 'Liveness: the process is up',
    tags: ['operations'],
    rateLimited: false,
    responses: { '200': ok('Alive.', schema('Health')) },
  },
  {
    method: 'get',
    path: '/readyz',
    operationId: 'readyz',
    summary: 'Readiness: Redis answers and the instance is not draining',
    tags: ['operations'],
    rateLimited: false,
    responses: {
      '200': ok('Ready.', schema('Ready')),
      '503': ok('Not ready (draining, or Redis not connected).', schema('NotReady'), { 'Retry-After': header('Retry-After') }),
    },
  },
  {
    method: 'get',
    path: '/version',
    operationId: 'version',
    summary: 'Version, commit and instance',
    tags: ['operations'],
    responses: { '200': ok('The build.', schema('Version')) },
  },
  {
    method: 'get',
    path: '/metrics',
    operationId: 'metrics',
    summary: 'Prometheus metrics',
    tags: ['operations'],
    rateLimited: false,
    responses: { '200': ok('Prometheus text exposition format.', { type: 'string' }, {}, 'text/plain; version=0.0.4; charset=utf-8') },
  },
  // ----- pages and documentation
  {
    method: 'get',
    path: '/page-config.json',
    operationId: 'pageConfig',
    summary: 'Configuration of the waiting-room page',
    tags: ['pages'],
    rateLimited: false,
    responses: { '200': ok('Where the page sends admitted users, and whether it may mint development tokens.', schema('PageConfig')) },
  },
  {
    method: 'get',
    path: '/',
    operationId: 'waitingRoomPage',
    summary: 'The waiting-room page',
    tags: ['pages'],
    rateLimited: false,
    parameters: [param('IfNoneMatch')],
    responses: pageResponses('The page (same-origin scripts only, see Content-Security-Policy).'),
  },
  {
    method: 'get',
    path: '/admin',
    operationId: 'operatorPage',
    summary: 'The operator page',
    tags: ['pages'],
    rateLimited: false,
    parameters: [param('IfNoneMatch')],
    responses: pageResponses('The page (it asks the operator for the ADMIN_TOKEN; same-origin scripts only).'),
  },
  {
    method: 'get',
    path: '/openapi.json',
    operationId: 'openApiDocument',
    summary: 'This document',
    tags: ['docs'],
    rateLimited: false,
    responses: { '200': ok('OpenAPI 3.1.', { type: 'object' }) },
  },
  {
    method: 'get',
    path: '/docs',
    operationId: 'apiDocsPage',
    summary: 'Browsable API documentation (Swagger UI, served locally)',
    tags: ['docs'],
    rateLimited: false,
    responses: { '200': ok('HTML; every asset is same-origin.', { type: 'string' }, { 'Content-Security-Policy': header('Content-Security-Policy') }, 'text/html') },
  },
];

function pageResponses(description: string): Record<string, Json> {
  const headers = { ETag: header('ETag'), 'Content-Security-Policy': header('Content-Security-Policy') };
  return {
    '200': ok(description, { type: 'string' }, headers, 'text/html; charset=utf-8'),
    '304': { description: 'Not modified (If-None-Match matched the ETag).', headers },
    '404': { ...ok('The page is missing from this build (web/ not built). The body is the error shape with an empty trace_id.', schema('Error')), 'x-error-codes': ['NOT_FOUND'] },
  };
}

// ---------------------------------------------------------------------------
// Assembly

/** Error codes and why, per status, for one operation. */
function errorsOf(op: Operation): Map<number, Map<ErrorCode, string[]>> {
  const all: (readonly [ErrorCode, string])[] = [...ROUTER];
  if (op.rateLimited !== false) all.push(...CLIENT_LIMIT);
  if (op.body) all.push(...BODY_LIMIT);
  if (op.idempotency === 'required') all.push(...IDEMPOTENCY_REQUIRED);
  else if (op.idempotency === 'optional') all.push(...IDEMPOTENCY);
  all.push(...(op.errors ?? []));
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

function errorResponse(status: number, codes: Map<ErrorCode, string[]>, op: Operation): Json {
  const names = [...codes.keys()];
  const headers: Record<string, Json> = { ...TRACE_HEADERS };
  if (op.rateLimited !== false || status === 429) Object.assign(headers, RATE_HEADERS);
  if (status === 429 || status === 503) headers['Retry-After'] = header('Retry-After');
  if (status === 401) headers['WWW-Authenticate'] = header('WWW-Authenticate');
  if (op.idempotency && status < 500) headers['X-Idempotency-Cached'] = header('X-Idempotency-Cached');
  return {
    description: [...codes].map(([code, whys]) => `\`${code}\`: ${whys.join('; ')}`).join('\n\n'),
    headers,
    content: json({ allOf: [schema('Error'), { type: 'object', properties: { error: { type: 'object', properties: { code: { enum: names } } } } }] }),
    'x-error-codes': names,
  };
}

function operationObject(op: Operation): Json {
  const responses: Record<string, Json> = {};
  for (const [status, r] of Object.entries(op.responses)) {
    const headers = { ...TRACE_HEADERS, ...(op.rateLimited !== false && !op.raw ? RATE_HEADERS : {}), ...((r.headers as Json | undefined) ?? {}) };
    responses[status] = op.raw ? r : { ...r, headers };
  }
  if (!op.raw) {
    const errs = [...errorsOf(op)].sort(([a], [b]) => a - b);
    for (const [status, codes] of errs) {
      const key = String(status);
      const existing = responses[key];
      const built = errorResponse(status, codes, op);
      // a documented non-error response under the same status (e.g. the page's 404) keeps its body; the codes are added
      responses[key] = existing ? { ...existing, description: `${String(existing.description)}\n\n${String(built.description)}`, 'x-error-codes': built['x-error-codes'] } : built;
    }
  }
  const o: Json = {
    operationId: op.operationId,
    summary: op.summary,
    ...(op.description ? { description: op.description } : {}),
    tags: op.tags,
    security: op.security ?? [],
    parameters: [param('XRequestId'), param('Traceparent'), ...(op.parameters ?? [])],
    ...(op.requestBody ? { requestBody: op.requestBody } : {}),
    responses,
    ...(op.externalDocs ? { externalDocs: op.externalDocs } : {}),
    ...(op.extensions ?? {}),
  };
  return o;
}

const SCHEMAS: Record<string, Json> = {
  Error: obj(
    {
      error: obj(
        {
          code: { type: 'string', enum: Object.keys(errorStatus), description: 'stable machine-readable code (UPPER_SNAKE); the HTTP status follows from it' },
          message: str('human-readable text; never parse it'),
          trace_id: str('the W3C trace id of the request (continues an incoming traceparent), also in X-Trace-ID'),
          reason: str('a finer reason for some codes (UNAUTHORIZED, FORBIDDEN, TOKEN_EXPIRED, IDEMPOTENCY_CONFLICT, UPSTREAM_UNAVAILABLE, SERVICE_UNAVAILABLE)'),
          waiting_token: str('DUPLICATE_REQUEST: the place the caller already holds'),
          position: int('DUPLICATE_REQUEST / NOT_READY: the current position'),
          status: str('DUPLICATE_REQUEST / NOT_IN_LINE: the state of the place'),
          retry_after_sec: int('RATE_LIMITED: seconds until a request is accepted again'),
          upstream_code: str('errors reported by a backend: its common.v1.ErrorCode without the ERROR_CODE_ prefix'),
          fields: { type: 'array', description: 'errors reported by a backend: the fields it named', items: obj({ field: { type: 'string' }, reason: { type: 'string' } }, []) },
        },
        ['code', 'message', 'trace_id'],
        { additionalProperties: true },
      ),
    },
    ['error'],
    { examples: [{ error: { code: 'TOKEN_NOT_FOUND', message: 'unknown waiting token', trace_id: '4bf92f3577b34da6a3ce929d0e0e4736' } }] },
  ),
  JoinRequest: obj(
    {
      event_id: str('the event', { pattern: '^[A-Za-z0-9_-]{1,64}$' }),
      user_id: str('optional; with user authentication configured it needs a bearer JWT and must equal its sub', { pattern: '^[\\x21-\\x7e]{1,128}$' }),
    },
    ['event_id'],
    { examples: [{ event_id: 'concert-2026' }] },
  ),
  JoinResponse: obj(
    {
      waiting_token: str('bearer credential of the place: `<event_id>.<22 base64url characters>`', { pattern: '^[A-Za-z0-9_-]{1,64}\\.[A-Za-z0-9_-]{22}$' }),
      position_hint: int('position at join time', { minimum: 1 }),
      status: { type: 'string', const: 'waiting' },
    },
    ['waiting_token', 'position_hint', 'status'],
  ),
  QueueStatus: obj(
    {
      status: { type: 'string', enum: ['waiting', 'ready', 'admitted'] },
      event_id: str('the event'),
      event_state: { type: 'string', enum: ['open', 'paused', 'closed'] },
      waiting_time: int('seconds since join', { minimum: 0 }),
      position: int('1 + people ahead (0 once admitted)', { minimum: 0 }),
      people_ahead: int('people ahead in line, ready users included', { minimum: 0 }),
      eta_sec: num('estimated seconds until ready', { minimum: 0 }),
      eta_low: num('lower end of the ETA interval', { minimum: 0 }),
      eta_high: num('upper end of the ETA interval', { minimum: 0 }),
      confidence: num('confidence of the ETA', { minimum: 0, maximum: 1 }),
      ready_for_entry: bool('true while the user may enter'),
      ready_deadline: str('ready only: enter before this instant', { format: 'date-time' }),
      ready_expires_in_sec: int('ready only: seconds left to enter', { minimum: 0 }),
      poll_after_ms: int('when to poll next (polling keeps the place alive)', { minimum: 0 }),
    },
    ['status', 'event_id', 'event_state', 'waiting_time', 'position', 'people_ahead', 'eta_sec', 'eta_low', 'eta_high', 'confidence', 'ready_for_entry', 'poll_after_ms'],
  ),
  EnterRequest: obj({ waiting_token: str('the place to enter with') }, ['waiting_token']),
  EnterResponse: obj(
    {
      admission: { type: 'string', const: 'granted' },
      reservation_token: str('JWT signed by the gateway (claims evt, wt, sub, jti, exp, aud "reservation"); single use at POST /api/v1/reservations'),
      ttl_sec: int('lifetime of the reservation token', { minimum: 1 }),
    },
    ['admission', 'reservation_token', 'ttl_sec'],
  ),
  LeaveResponse: obj({ status: { type: 'string', const: 'left' } }, ['status']),
  EventPatch: obj(
    {
      rate: num('admissions per second (fractions allowed)', { minimum: 0.001, maximum: 100000 }),
      burst: int('token bucket capacity', { minimum: 1, maximum: 1000000 }),
      ready_window_sec: int('time a ready user has to enter', { minimum: 5, maximum: 86400 }),
      reconnect_grace_sec: int('time a user whose last socket closed has to reconnect', { minimum: 1, maximum: 3600 }),
      state: { type: 'string', enum: ['open', 'paused', 'closed'], description: 'open admits; paused accepts joins, promotes nobody; closed refuses joins (403) and promotes nobody' },
    },
    [],
    { additionalProperties: false, examples: [{ rate: 50, burst: 100, state: 'open' }] },
  ),
  Event: obj(
    {
      event_id: str('the event'),
      rate: num('admissions per second'),
      burst: int('token bucket capacity'),
      ready_window_sec: int('time a ready user has to enter'),
      reconnect_grace_sec: int('reconnect grace of sockets'),
      state: { type: 'string', enum: ['open', 'paused', 'closed'] },
      created_at: str('creation time', { format: 'date-time' }),
      updated_at: str('last change', { format: 'date-time' }),
    },
    ['event_id', 'rate', 'burst', 'ready_window_sec', 'reconnect_grace_sec', 'state', 'created_at', 'updated_at'],
  ),
  EventStats: {
    allOf: [
      schema('Event'),
      obj(
        {
          in_line: int('waiting + ready'),
          waiting: int('waiting users'),
          ready: int('ready users'),
          joined_total: int('joins'),
          promoted_total: int('promotions to ready'),
          admitted_total: int('admissions (enter)'),
          left_total: int('users who left'),
          expired_total: int('expired (ready window + liveness)'),
          expired_ready_window_total: int('expired: ready window passed'),
          expired_liveness_total: int('expired: liveness lapsed'),
          bucket_tokens: num('tokens in the bucket'),
          admission_rate: obj(
            {
              configured: num('configured rate'),
              weighted: num('weighted measured rate'),
              '1m': { type: ['number', 'null'] },
              '5m': { type: ['number', 'null'] },
              '15m': { type: ['number', 'null'] },
            },
            ['configured', 'weighted', '1m', '5m', '15m'],
          ),
          promote_share: num('share of joiners (last 15 minutes) who take their slot rather than give up while waiting'),
          eta_confidence: num('ETA confidence', { minimum: 0, maximum: 1 }),
          ticker_instance: { type: ['string', 'null'], description: 'instance holding the ticker lease' },
        },
        [
          'in_line', 'waiting', 'ready', 'joined_total', 'promoted_total', 'admitted_total', 'left_total', 'expired_total',
          'expired_ready_window_total', 'expired_liveness_total', 'bucket_tokens', 'admission_rate', 'promote_share', 'eta_confidence', 'ticker_instance',
        ],
      ),
    ],
  },
  EventSummary: obj(
    {
      event_id: str('the event'),
      state: { type: 'string', enum: ['open', 'paused', 'closed'] },
      rate: num('admissions per second'),
      burst: int('token bucket capacity'),
      in_line: int('waiting + ready'),
      waiting: int('waiting users'),
      ready: int('ready users'),
    },
    ['event_id', 'state', 'rate', 'burst', 'in_line', 'waiting', 'ready'],
  ),
  EventList: obj({ events: { type: 'array', items: schema('EventSummary'), maxItems: 1000 } }, ['events']),
  CreateReservationRequest: obj(
    {
      event_id: str('the event the reservation token is for', { pattern: '^[A-Za-z0-9_-]{1,64}$' }),
      seat_ids: { type: 'array', minItems: 1, maxItems: 20, uniqueItems: true, items: { type: 'string', pattern: '^[A-Za-z0-9_.:-]{1,64}$' } },
      quantity: int('must equal the number of seat_ids (defaults to it)', { minimum: 1, maximum: 20 }),
      reservation_token: str('from POST /api/v1/queue/enter'),
    },
    ['event_id', 'seat_ids', 'reservation_token'],
  ),
  Reservation: obj(
    {
      reservation_id: str('the reservation'),
      status: str('HOLD, CONFIRMED, CANCELLED, EXPIRED, …', { examples: ['HOLD'] }),
      event_id: str('the event'),
      seat_ids: { type: 'array', items: { type: 'string' } },
      quantity: int('seats'),
      user_id: str('the owner'),
      hold_expires_at: { type: ['string', 'null'], format: 'date-time' },
      payment_intent_id: str('present once paid'),
      order_id: str('present once confirmed'),
    },
    ['reservation_id', 'status', 'event_id', 'seat_ids', 'quantity', 'user_id', 'hold_expires_at'],
  ),
  ConfirmReservationRequest: obj({ payment_intent_id: str('the paid intent', { pattern: '^[A-Za-z0-9_-]{1,64}$' }) }, []),
  ConfirmReservationResponse: obj(
    { order_id: str('the order'), status: str('CONFIRMED', { examples: ['CONFIRMED'] }), confirmed_at: { type: ['string', 'null'], format: 'date-time' } },
    ['order_id', 'status', 'confirmed_at'],
  ),
  CancelReservationResponse: obj(
    { status: str('CANCELLED', { examples: ['CANCELLED'] }), cancelled_at: { type: ['string', 'null'], format: 'date-time' } },
    ['status', 'cancelled_at'],
  ),
  PaymentIntentRequest: obj(
    {
      reservation_id: str('the reservation to pay', { pattern: '^[A-Za-z0-9_-]{1,64}$' }),
      amount: int('minor units', { minimum: 1 }),
      currency: str('ISO 4217 (default KRW)', { pattern: '^[A-Z]{3}$', default: 'KRW' }),
      scenario: { type: 'string', enum: ['approve', 'fail', 'delay', 'random', 'timeout'], default: 'approve', description: 'simulator behaviour' },
    },
    ['reservation_id', 'amount'],
  ),
  PaymentIntent: obj(
    {
      payment_intent_id: str('the intent'),
      status: str('PENDING, …'),
      amount: int('minor units'),
      currency: str('ISO 4217'),
      reservation_id: str('the reservation'),
      client_secret: str('client secret of the intent'),
      expires_at: { type: ['string', 'null'], format: 'date-time' },
    },
    ['payment_intent_id', 'status', 'amount', 'currency', 'reservation_id', 'client_secret', 'expires_at'],
  ),
  PaymentStatus: obj(
    { payment_intent_id: str('the intent'), status: str('PENDING, PROCESSING, COMPLETED, FAILED, …'), amount: int('minor units'), currency: str('ISO 4217'), reservation_id: str('the reservation') },
    ['payment_intent_id', 'status', 'amount', 'currency', 'reservation_id'],
  ),
  ProcessPaymentRequest: obj(
    { payment_intent_id: str('the intent', { pattern: '^[A-Za-z0-9_-]{1,64}$' }), action: { type: 'string', enum: ['approve', 'fail'] } },
    ['payment_intent_id', 'action'],
  ),
  ProcessPaymentResponse: obj(
    {
      payment_intent_id: str('the intent'),
      payment_id: str('the payment'),
      status: { type: 'string', description: 'COMPLETED or FAILED (a string, not an enum number)', examples: ['COMPLETED', 'FAILED'] },
      transaction_id: str('the transaction'),
      processed_at: { type: ['string', 'null'], format: 'date-time' },
      failure_reason: str('present when declined'),
    },
    ['payment_intent_id', 'payment_id', 'status', 'transaction_id', 'processed_at'],
  ),
  Jwks: obj({ keys: { type: 'array', items: obj({ kty: { type: 'string' }, kid: { type: 'string' }, alg: { type: 'string' }, use: { type: 'string' } }, ['kty'], { additionalProperties: true }) } }, ['keys']),
  DevTokenRequest: obj({ sub: str('subject (default: a random dev-… id)', { pattern: '^[A-Za-z0-9_.@-]{1,64}$' }) }, []),
  DevTokenResponse: obj(
    { access_token: str('HS256 JWT'), token_type: { type: 'string', const: 'Bearer' }, expires_in: int('seconds', { examples: [900] }), sub: str('the subject') },
    ['access_token', 'token_type', 'expires_in', 'sub'],
  ),
  Health: obj({ status: { type: 'string', const: 'ok' } }, ['status']),
  Ready: obj({ status: { type: 'string', const: 'ready' } }, ['status']),
  NotReady: obj({ status: { type: 'string', const: 'unavailable' }, reasons: { type: 'array', items: { type: 'string' }, examples: [['draining', 'redis reconnecting']] } }, ['status', 'reasons']),
  Version: obj({ version: str('package version'), commit: str('git commit'), built_at: str('build time', { format: 'date-time' }), node: str('Node.js version'), instance: str('INSTANCE_ID') }, [
    'version',
    'commit',
    'built_at',
    'node',
    'instance',
  ]),
  PageConfig: obj({ target_url: str('where admitted users are sent ("" = stay on the page)'), dev_tokens: bool('the page may mint development tokens at /api/v1/dev/token') }, ['target_url', 'dev_tokens']),
};

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

/** The OpenAPI 3.1 document of the gateway's HTTP API (a fresh object on every call). */
export function openApiDocument(): Record<string, unknown> {
  const paths: Record<string, Json> = {};
  for (const op of OPERATIONS) {
    const item = (paths[op.path] ??= {});
    item[op.method] = operationObject(op);
  }
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
      { name: 'operations', description: 'Probes, version and metrics' },
      { name: 'pages', description: 'The browser pages and their configuration' },
      { name: 'docs', description: 'This documentation' },
    ],
    paths,
    components: {
      schemas: SCHEMAS,
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
        adminTokenQuery: { type: 'apiKey', in: 'query', name: 'token', description: 'The ADMIN_TOKEN in the query string (the admin WebSocket only: browsers cannot set headers on a WebSocket).' },
      },
    },
  };
}
