import { Type, type TSchema } from '@sinclair/typebox';
import { ERRORS } from '../errors.js';

// The schemas of every request and response body, once (TypeBox: JSON Schema
// with static types). The edge compiles validators (ajv) and serialisers
// (fast-json-stringify) from them; the OpenAPI document names them under
// components.schemas (NAMED below) and refers to them by $ref.

const str = (description: string, o: Record<string, unknown> = {}) => Type.String({ description, ...o });
const int = (description: string, o: Record<string, unknown> = {}) => Type.Integer({ description, ...o });
const num = (description: string, o: Record<string, unknown> = {}) => Type.Number({ description, ...o });
const nullable = (s: TSchema, description?: string) => Type.Union([s, Type.Null()], description ? { description } : {});
const dateTime = (description: string) => nullable(Type.String({ format: 'date-time' }), description);

export const EVENT_ID_PATTERN = '^[A-Za-z0-9_-]{1,64}$';
const ID_PATTERN = '^[A-Za-z0-9_-]{1,64}$';
const EventState = Type.Union(
  [Type.Literal('scheduled'), Type.Literal('prequeue'), Type.Literal('open'), Type.Literal('paused'), Type.Literal('closed'), Type.Literal('ended')],
  {
    description:
      'scheduled: joins refused until the pre-queue opens; prequeue: joins accepted, nobody admitted, no positions until the draw at starts_at; ' +
      'open: admitting; paused: joins accepted, nobody admitted; closed: no new arrivals; ended: everyone waiting was let go (ready users keep their window)',
  },
);
const EventAccess = Type.Union([Type.Literal('user'), Type.Literal('anonymous')], {
  description: 'user: a verified user enters and the place becomes theirs (a bearer JWT, e.g. handed over by the ticket site); anonymous: the waiting token is the credential and the admission token names the place',
});

/** The operator's message to everyone waiting: text by language ("en", "ko", "pt-BR"); the page shows the reader's language, else English, else any. */
export const OperatorMessage = Type.Record(Type.String({ pattern: '^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$' }), Type.String({ minLength: 1, maxLength: 500 }), {
  additionalProperties: false,
  minProperties: 1,
  maxProperties: 16,
  description: "the operator's message to everyone waiting, by language code (BCP 47: en, ko, pt-BR; at most 500 characters each)",
  examples: [{ en: 'Sales open at 10:00. Keep this page open.', ko: '10시에 판매가 시작돼요. 이 페이지를 열어 두세요.' }],
});

export const ErrorBody = Type.Object(
  {
    error: Type.Object(
      {
        code: Type.String({ enum: Object.keys(ERRORS), description: 'stable machine-readable code (UPPER_SNAKE); the HTTP status follows from it' }),
        message: str('human-readable text; never parse it'),
        trace_id: str('the W3C trace id of the request (continues an incoming traceparent), also in X-Trace-ID'),
        reason: Type.Optional(str('a finer reason for some codes (UNAUTHORIZED, FORBIDDEN, TOKEN_EXPIRED, IDEMPOTENCY_CONFLICT, UPSTREAM_UNAVAILABLE, SERVICE_UNAVAILABLE)')),
        waiting_token: Type.Optional(str('DUPLICATE_REQUEST: the place the caller already holds')),
        position: Type.Optional(int('DUPLICATE_REQUEST / NOT_READY: the current position')),
        status: Type.Optional(str('DUPLICATE_REQUEST / NOT_IN_LINE: the state of the place')),
        retry_after_sec: Type.Optional(int('RATE_LIMITED: seconds until a request is accepted again')),
        opens_at: Type.Optional(dateTime('EVENT_NOT_OPEN: when the pre-queue opens (joins are accepted from then)')),
        starts_at: Type.Optional(dateTime('EVENT_NOT_OPEN: when the draw places everyone in the pre-queue')),
        ended_at: Type.Optional(dateTime('EVENT_ENDED: when the event ended')),
        state: Type.Optional(str("EVENT_STATE_CONFLICT: the event's state")),
        upstream_code: Type.Optional(str('errors reported by a backend: its common.v1.ErrorCode without the ERROR_CODE_ prefix')),
        fields: Type.Optional(Type.Array(Type.Object({ field: Type.String(), reason: Type.String() }), { description: 'errors reported by a backend: the fields it named' })),
      },
      { additionalProperties: true },
    ),
  },
  { examples: [{ error: { code: 'TOKEN_NOT_FOUND', message: 'unknown waiting token', trace_id: '4bf92f3577b34da6a3ce929d0e0e4736' } }] },
);

// ---- queue
export const JoinRequest = Type.Object(
  {
    event_id: str('the event', { pattern: EVENT_ID_PATTERN }),
    user_id: Type.Optional(str('optional; with user authentication configured it needs a bearer JWT and must equal its sub', { pattern: '^[\\x21-\\x7e]{1,128}$' })),
    proof: Type.Optional(
      Type.Object(
        {
          challenge: Type.Optional(str('proof of work: the challenge from GET /api/v1/queue/challenge, as handed out', { maxLength: 200 })),
          solution: Type.Optional(str('proof of work: the decimal string s with SHA-256(challenge ":" s) starting with `difficulty` zero bits', { pattern: '^[0-9]{1,20}$' })),
          token: Type.Optional(str("external challenge: the verifier's token", { maxLength: 4096 })),
        },
        { additionalProperties: false, description: "the solved challenge, for an event that asks for one (its `challenge`); each is accepted once" },
      ),
    ),
  },
  { examples: [{ event_id: 'concert-2026' }] },
);
export const JoinResponse = Type.Object({
  waiting_token: str('bearer credential of the place: `<event_id>.<22 base64url characters>`', { pattern: '^[A-Za-z0-9_-]{1,64}\\.[A-Za-z0-9_-]{22}$' }),
  position_hint: int('position at join time (0 in the pre-queue: places are drawn at starts_at)', { minimum: 0 }),
  status: Type.Union([Type.Literal('waiting'), Type.Literal('prequeue')], { description: 'prequeue: in the pre-queue; everyone in it gets a random place at starts_at' }),
  receipt: Type.Optional(str('pre-queue only: the entry receipt, this place\'s line in the draw\'s entrant list (GET /api/v1/events/{id}/draw)')),
});
export const ChallengeQuery = Type.Object({ event: str('the event', { pattern: EVENT_ID_PATTERN }) });
export const Challenge = Type.Object({
  event_id: str('the event'),
  kind: Type.Union([Type.Literal('none'), Type.Literal('pow'), Type.Literal('external')], { description: 'none: join without a proof' }),
  algorithm: Type.Optional(Type.Literal('sha256-leading-zero-bits', { description: 'find a decimal string s such that SHA-256(challenge ":" s) starts with `difficulty` zero bits' })),
  challenge: Type.Optional(str('the puzzle, bound to the event; send it back with the solution as `proof` on join')),
  difficulty: Type.Optional(int('leading zero bits', { minimum: 1, maximum: 32 })),
  expires_at: Type.Optional(str('solve and join before this', { format: 'date-time' })),
});
export const WaitingTokenQuery = Type.Object({ token: str('the waiting_token from join (URL-encoded)', { examples: ['concert-2026.q1w2e3r4t5y6u7i8o9p0aS'] }) });
export const QueueStatus = Type.Object({
  status: Type.Union([Type.Literal('prequeue'), Type.Literal('waiting'), Type.Literal('ready'), Type.Literal('admitted')], {
    description: 'prequeue: before the draw (position 0; eta_sec counts down to starts_at)',
  }),
  event_id: str('the event'),
  event_state: EventState,
  waiting_time: int('seconds since join', { minimum: 0 }),
  position: int('1 + the people still waiting ahead (1 once ready, 0 once admitted); those already called (being let in) do not count', { minimum: 0 }),
  people_ahead: int('people still waiting ahead', { minimum: 0 }),
  being_let_in: int('people ahead who were called and are being let in now (ready, not entered yet)', { minimum: 0 }),
  eta_sec: num('estimated seconds until ready', { minimum: 0 }),
  eta_low: num('lower end of the ETA interval', { minimum: 0 }),
  eta_high: num('upper end of the ETA interval', { minimum: 0 }),
  confidence: num('confidence of the ETA', { minimum: 0, maximum: 1 }),
  ready_for_entry: Type.Boolean({ description: 'true while the user may enter' }),
  ready_deadline: Type.Optional(str('ready only: enter before this instant', { format: 'date-time' })),
  ready_expires_in_sec: Type.Optional(int('ready only: seconds left to enter', { minimum: 0 })),
  poll_after_ms: int('when to poll next (polling keeps the place alive)', { minimum: 0 }),
  message: Type.Optional(nullable(OperatorMessage, "the operator's message (null = none); absent when the answering instance does not know it yet: keep the last one")),
  starts_at: Type.Optional(str('pre-queue only: when the draw places everyone', { format: 'date-time' })),
  receipt: Type.Optional(str("pre-queue and after: the entry receipt (this place's line in the draw's entrant list)")),
});
export const EnterRequest = Type.Object({ waiting_token: str('the place to enter with', { minLength: 1 }) });
export const EnterResponse = Type.Object({
  admission: Type.Literal('granted'),
  reservation_token: str('JWT signed by the gateway (claims evt, wt, sub, jti, exp, aud "reservation"); single use at POST /api/v1/reservations'),
  ttl_sec: int('seconds the reservation token stays valid', { minimum: 0 }),
});
export const LeaveResponse = Type.Object({ status: Type.Literal('left') });

// ---- admin
export const EventIdParams = Type.Object({ id: str('event id', { pattern: EVENT_ID_PATTERN }) });
export const AdaptivePolicy = Type.Object(
  {
    floor: num('the lowest rate the controller sets (admissions/s)', { minimum: 0.001, maximum: 100000 }),
    ceiling: num('the highest rate: never exceeded', { minimum: 0.001, maximum: 100000 }),
    p95_ms: int('objective: reservation calls p95 at most this (ms), over all instances', { minimum: 1, maximum: 60000 }),
    error_share: num('objective: at most this share of reservation calls fail (0..1)', { minimum: 0, maximum: 1 }),
  },
  { additionalProperties: false, examples: [{ floor: 5, ceiling: 200, p95_ms: 300, error_share: 0.01 }] },
);
export const ChallengePolicy = Type.Union([
  Type.Object({ kind: Type.Literal('pow'), difficulty: Type.Optional(int('leading zero bits (default CHALLENGE_DEFAULT_DIFFICULTY)', { minimum: 1, maximum: 32 })) }, { additionalProperties: false }),
  Type.Object({ kind: Type.Literal('external') }, { additionalProperties: false, description: 'a token the verifier at CHALLENGE_VERIFY_URL accepts' }),
]);
export const EventPatch = Type.Object(
  {
    rate: Type.Optional(num('admissions per second (fractions allowed)', { minimum: 0.001, maximum: 100000 })),
    burst: Type.Optional(int('token bucket capacity', { minimum: 1, maximum: 1000000 })),
    ready_window_sec: Type.Optional(int('time a ready user has to enter', { minimum: 5, maximum: 86400 })),
    reconnect_grace_sec: Type.Optional(int('time a user whose last socket closed has to reconnect', { minimum: 1, maximum: 3600 })),
    state: Type.Optional(Type.Union([Type.Literal('open'), Type.Literal('paused'), Type.Literal('closed')], { description: 'open admits; paused accepts joins, promotes nobody; closed refuses joins (403) and promotes nobody' })),
    access: Type.Optional(EventAccess),
    target_url: Type.Optional(
      str('where the page sends admitted users, with ?admission_token=; its origin must be one of PAGE_TARGET_ORIGINS ("" removes it)', { maxLength: 2048 }),
    ),
    message: Type.Optional(nullable(OperatorMessage, "the operator's message to everyone waiting, pushed live to every open page (null removes it)")),
    prequeue_opens_at: Type.Optional(
      str('when joins start to be accepted into the pre-queue (RFC 3339); defaults to starts_at (no pre-queue). Only before the start', { format: 'date-time' }),
    ),
    starts_at: Type.Optional(
      str('when the pre-queue is drawn and the event opens (RFC 3339). Setting it first makes a new event `scheduled` and commits to the draw\'s seed; only before the start', {
        format: 'date-time',
      }),
    ),
    ends_at: Type.Optional(nullable(Type.String({ format: 'date-time' }), 'when the event ends by itself (reason ends_at); null removes it')),
    adaptive: Type.Optional(nullable(AdaptivePolicy, 'adaptive outflow: the rate follows the backends\' health between floor and ceiling (docs/OPERATIONS.md); null turns it off')),
    max_active_sessions: Type.Optional(nullable(int('admit by active sessions: at most this many ready and admitted users whose admission has not expired or been used', { minimum: 1, maximum: 1_000_000 }), 'null turns it off')),
    challenge: Type.Optional(nullable(ChallengePolicy, 'a join must carry a solved challenge; null turns it off')),
  },
  { additionalProperties: false, examples: [{ rate: 50, burst: 100, state: 'open' }, { prequeue_opens_at: '2026-12-24T09:30:00Z', starts_at: '2026-12-24T10:00:00Z', rate: 50 }] },
);
export const Event = Type.Object({
  event_id: str('the event'),
  rate: num('admissions per second'),
  burst: int('token bucket capacity'),
  ready_window_sec: int('time a ready user has to enter'),
  reconnect_grace_sec: int('reconnect grace of sockets'),
  state: EventState,
  access: EventAccess,
  target_url: str('where the page sends admitted users ("" = none: the page shows the admission)'),
  message: nullable(OperatorMessage, "the operator's message to everyone waiting (null = none)"),
  created_at: str('creation time', { format: 'date-time' }),
  updated_at: str('last change', { format: 'date-time' }),
  prequeue_opens_at: dateTime('when the pre-queue opens (null = no schedule)'),
  starts_at: dateTime('when the pre-queue is drawn and the event opens (null = no schedule)'),
  ends_at: dateTime('when the event ends by itself (null = never)'),
  draw_commitment: nullable(Type.String(), "SHA-256 of the draw's seed, hex (null = no draw)"),
  drawn_at: dateTime('when the draw happened (null = not yet)'),
  end_reason: nullable(Type.String(), 'why the event ended (null = it has not)'),
  ended_at: dateTime('when the event ended'),
  adaptive: nullable(AdaptivePolicy, 'adaptive outflow (null = off: the rate is the operator\'s)'),
  adaptive_reason: nullable(Type.String(), "the adaptive controller's last change: why"),
  adaptive_at: dateTime("the adaptive controller's last change: when"),
  max_active_sessions: nullable(Type.Integer(), 'admit by active sessions (null = by rate alone)'),
  challenge: nullable(ChallengePolicy, 'the join challenge (null = none)'),
});
// present only for an event with a schedule, an end time, or that ended
const Schedule = {
  prequeue_opens_at: Type.Optional(dateTime('when the pre-queue opens')),
  starts_at: Type.Optional(dateTime('when the pre-queue is drawn and the event opens')),
  ends_at: Type.Optional(dateTime('when the event ends by itself')),
  end_reason: Type.Optional(Type.String({ description: 'why the event ended: sold_out, cancelled, ends_at, ...' })),
  ended_at: Type.Optional(dateTime('when the event ended')),
  challenge: Type.Optional(Type.Object({ kind: Type.Union([Type.Literal('pow'), Type.Literal('external')]) }, { description: 'joins need a solved challenge (GET /api/v1/queue/challenge)' })),
};
export const PublicEvent = Type.Object({
  event_id: str('the event'),
  state: EventState,
  access: EventAccess,
  target_url: str('where the page sends admitted users, with ?admission_token= ("" = none: the page shows the admission)'),
  message: nullable(OperatorMessage, "the operator's message to everyone waiting (null = none)"),
  ...Schedule,
});
export const EndEventRequest = Type.Object(
  {
    reason: str('why: sold_out, cancelled, ... (lower case, digits, _)', { pattern: '^[a-z0-9_]{1,32}$' }),
    message: Type.Optional(OperatorMessage),
  },
  { additionalProperties: false, examples: [{ reason: 'sold_out', message: { en: 'All tickets are sold. Thank you for waiting.' } }] },
);
export const AdaptiveLog = Type.Object({
  event_id: str('the event'),
  adaptive: nullable(AdaptivePolicy, 'the policy in force (null = off)'),
  decisions: Type.Array(
    Type.Object({
      at: str('when', { format: 'date-time' }),
      rate: num('the rate after the decision'),
      reason: str('healthy, at_ceiling, latency, errors, no_data, cooling_down or at_floor'),
      p95_ms: num('reservation p95 over the window, all instances (bucket upper bound)'),
      error_share: num('share of failed reservation calls over the window'),
      calls: int('reservation calls in the window'),
    }),
    { description: 'oldest first, at most 600 (every ADAPTIVE_INTERVAL_MS)' },
  ),
});
export const DeleteEventQuery = Type.Object({ force: Type.Optional(Type.Union([Type.Literal('true'), Type.Literal('false')], { description: 'delete even while ready users hold a window' })) });
export const DeleteEventResponse = Type.Object({ event_id: str('the event'), deleted_keys: int('Redis keys removed', { minimum: 0 }) });
export const DrawInfo = Type.Object({
  event_id: str('the event'),
  algorithm: Type.Literal('wr-draw-v1', { description: 'docs/FAIRNESS.md: key = first 13 hex digits of SHA-1(seed ":" receipt) as an integer; places in ascending key order' }),
  status: Type.Union([Type.Literal('committed'), Type.Literal('drawn')]),
  commitment: str('SHA-256 of the seed (the seed as its 64 hex characters), hex: published before the pre-queue opens, never changed'),
  committed_at: str('when the commitment was made', { format: 'date-time' }),
  prequeue_opens_at: dateTime('when the pre-queue opens'),
  starts_at: dateTime('when the draw happens'),
  seed: nullable(Type.String(), 'the seed, 64 hex characters: revealed at the draw (null before)'),
  drawn_at: dateTime('when the draw happened'),
  entrants: int('entrants so far (before the draw), or drawn (after)', { minimum: 0 }),
  entrants_digest: nullable(Type.String(), 'after the draw: SHA-256 (hex) of the receipts sorted in byte order, one per line ("\\n" after each)'),
  entrants_url: str('the entrant list in draw order (after the draw), paged'),
});
export const DrawEntrants = Type.Object({
  event_id: str('the event'),
  total: int('entrants drawn', { minimum: 0 }),
  offset: int('index of the first entry', { minimum: 0 }),
  entrants: Type.Array(
    Type.Object({
      position: int('place given at the draw', { minimum: 1 }),
      receipt: str('the entry receipt'),
      key: int('the draw key (docs/FAIRNESS.md)', { minimum: 0 }),
    }),
  ),
});
export const DrawEntrantsQuery = Type.Object({
  offset: Type.Optional(Type.String({ pattern: '^[0-9]{1,7}$', description: 'first entry (default 0)' })),
  limit: Type.Optional(Type.String({ pattern: '^[0-9]{1,5}$', description: 'entries per page (default and at most 10000)' })),
});
export const EventStats = Type.Intersect([
  Event,
  Type.Object({
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
    admission_rate: Type.Object({
      configured: num('configured rate'),
      weighted: num('weighted measured rate'),
      '1m': nullable(Type.Number()),
      '5m': nullable(Type.Number()),
      '15m': nullable(Type.Number()),
    }),
    promote_share: num('share of joiners (last 15 minutes) who take their slot rather than give up while waiting'),
    eta_confidence: num('ETA confidence', { minimum: 0, maximum: 1 }),
    ticker_instance: nullable(Type.String(), 'instance holding the ticker lease'),
    ended_total: int('places let go because the event ended'),
  }),
]);
export const EventSummary = Type.Object({
  event_id: str('the event'),
  state: EventState,
  rate: num('admissions per second'),
  burst: int('token bucket capacity'),
  in_line: int('waiting + ready'),
  waiting: int('waiting users'),
  ready: int('ready users'),
});
export const EventList = Type.Object({ events: Type.Array(EventSummary, { maxItems: 1000 }) });

// ---- reservations and payments
export const IdParams = (what: string) => Type.Object({ id: str(`${what} id`, { pattern: ID_PATTERN }) });
export const CreateReservationRequest = Type.Object({
  event_id: str('the event the reservation token is for', { pattern: EVENT_ID_PATTERN }),
  seat_ids: Type.Array(Type.String({ pattern: '^[A-Za-z0-9_.:-]{1,64}$' }), { minItems: 1, maxItems: 20, uniqueItems: true, description: '1-20 distinct seat ids' }),
  quantity: Type.Optional(int('must equal the number of seat_ids (defaults to it)', { minimum: 1, maximum: 20 })),
  reservation_token: str('from POST /api/v1/queue/enter', { minLength: 1 }),
});
export const Reservation = Type.Object({
  reservation_id: str('the reservation'),
  status: str('HOLD, CONFIRMED, CANCELLED, EXPIRED, …', { examples: ['HOLD'] }),
  event_id: str('the event'),
  seat_ids: Type.Array(Type.String()),
  quantity: int('seats'),
  user_id: str('the owner'),
  hold_expires_at: dateTime('until when the seats are held'),
  payment_intent_id: Type.Optional(str('present once paid')),
  order_id: Type.Optional(str('present once confirmed')),
});
export const ConfirmReservationRequest = Type.Object({ payment_intent_id: Type.Optional(str('the paid intent', { pattern: ID_PATTERN })) });
export const ConfirmReservationResponse = Type.Object({ order_id: str('the order'), status: str('CONFIRMED', { examples: ['CONFIRMED'] }), confirmed_at: dateTime('when') });
export const CancelReservationResponse = Type.Object({ status: str('CANCELLED', { examples: ['CANCELLED'] }), cancelled_at: dateTime('when') });
export const PaymentIntentRequest = Type.Object({
  reservation_id: str('the reservation to pay', { pattern: ID_PATTERN }),
  amount: Type.Unknown({ description: 'minor units: a positive integer (a violation is INVALID_AMOUNT)' }),
  currency: Type.Optional(str('ISO 4217 (default KRW)', { pattern: '^[A-Z]{3}$', default: 'KRW' })),
  scenario: Type.Optional(
    Type.Union([Type.Literal('approve'), Type.Literal('fail'), Type.Literal('delay'), Type.Literal('random'), Type.Literal('timeout')], { default: 'approve', description: 'simulator behaviour' }),
  ),
});
export const PaymentIntent = Type.Object({
  payment_intent_id: str('the intent'),
  status: str('PENDING, …'),
  amount: int('minor units'),
  currency: str('ISO 4217'),
  reservation_id: str('the reservation'),
  client_secret: str('client secret of the intent'),
  expires_at: dateTime('when the intent lapses'),
});
export const PaymentStatus = Type.Object({
  payment_intent_id: str('the intent'),
  status: str('PENDING, PROCESSING, COMPLETED, FAILED, …'),
  amount: int('minor units'),
  currency: str('ISO 4217'),
  reservation_id: str('the reservation'),
});
export const ProcessPaymentRequest = Type.Object({ payment_intent_id: str('the intent', { pattern: ID_PATTERN }), action: Type.Union([Type.Literal('approve'), Type.Literal('fail')]) });
export const ProcessPaymentResponse = Type.Object({
  payment_intent_id: str('the intent'),
  payment_id: str('the payment'),
  status: str('COMPLETED or FAILED (a string, not an enum number)', { examples: ['COMPLETED', 'FAILED'] }),
  transaction_id: str('the transaction'),
  processed_at: dateTime('when'),
  failure_reason: Type.Optional(str('present when declined')),
});

// ---- the origin (ticket site) side
export const RedeemRequest = Type.Object({
  admission_token: str('the admission token the page handed the origin (?admission_token=)', { minLength: 1, maxLength: 4096 }),
  event_id: Type.Optional(str('when given, the token must be for this event', { pattern: EVENT_ID_PATTERN })),
});
export const Redeemed = Type.Object({
  event_id: str('the event the admission is for'),
  subject: str('who was admitted: the user (access user) or the place (access anonymous)'),
  jti: str('the admission id (single use)'),
  admitted_at: str('when the user was admitted', { format: 'date-time' }),
  expires_at: str('when the admission token expires', { format: 'date-time' }),
});

// ---- auth, operations, pages
export const Jwks = Type.Object({ keys: Type.Array(Type.Object({ kty: Type.String(), kid: Type.Optional(Type.String()), alg: Type.Optional(Type.String()), use: Type.Optional(Type.String()) }, { additionalProperties: true })) });
export const DevTokenRequest = Type.Object({ sub: Type.Optional(str('subject (default: a random dev-… id)', { pattern: '^[A-Za-z0-9_.@-]{1,64}$' })) });
export const DevTokenResponse = Type.Object({ access_token: str('HS256 JWT'), token_type: Type.Literal('Bearer'), expires_in: int('seconds', { examples: [900] }), sub: str('the subject') });
export const Health = Type.Object({ status: Type.Literal('ok') });
export const Ready = Type.Object({ status: Type.Literal('ready') });
export const NotReady = Type.Object({ status: Type.Literal('unavailable'), reasons: Type.Array(Type.String(), { examples: [['draining', 'redis reconnecting']] }) });
export const Version = Type.Object({ version: str('package version'), commit: str('git commit'), built_at: str('build time', { format: 'date-time' }), node: str('Node.js version'), instance: str('INSTANCE_ID') });
export const PageConfig = Type.Object({ target_url: str('where admitted users are sent ("" = stay on the page)'), dev_tokens: Type.Boolean({ description: 'the page may mint development tokens at /api/v1/dev/token' }) });

/** components.schemas of the OpenAPI document: every schema above that has a name there. */
export const NAMED: Readonly<Record<string, TSchema>> = {
  Error: ErrorBody,
  OperatorMessage,
  JoinRequest,
  JoinResponse,
  QueueStatus,
  EnterRequest,
  EnterResponse,
  LeaveResponse,
  EventPatch,
  Event,
  EventStats,
  EventSummary,
  EventList,
  PublicEvent,
  EndEventRequest,
  DeleteEventResponse,
  AdaptivePolicy,
  AdaptiveLog,
  ChallengePolicy,
  Challenge,
  DrawInfo,
  DrawEntrants,
  RedeemRequest,
  Redeemed,
  CreateReservationRequest,
  Reservation,
  ConfirmReservationRequest,
  ConfirmReservationResponse,
  CancelReservationResponse,
  PaymentIntentRequest,
  PaymentIntent,
  PaymentStatus,
  ProcessPaymentRequest,
  ProcessPaymentResponse,
  Jwks,
  DevTokenRequest,
  DevTokenResponse,
  Health,
  Ready,
  NotReady,
  Version,
  PageConfig,
};
