import { AppError } from '../errors.js';
import { createHash } from 'node:crypto';
import { AdmissionTokenLedger, type AdmissionTokenIssuer } from '../auth/admission-token.js';
import { isRefusal } from '../backends/grpc-backend.js';
import type { Reservations, Payments, Reservation, Scenario } from '../backends/reservations.js';
import type { Metrics } from '../metrics.js';
import type { Logger } from '../log.js';
import { route, type AnyRoute, type ErrorList, type HttpRequest } from './route.js';
import * as S from './schemas.js';

// POST /api/v1/reservations: the first place a reservation_token is spent.
// JWT (when authentication is configured) + Idempotency-Key required; the
// token must verify, be for this event and this user, be unexpired, and buys
// exactly one reservation (AdmissionTokenLedger): two concurrent uses cannot
// both run; a backend refusal (nothing reserved) frees it for another try; an
// unknown outcome (a timeout: the backend may have made the hold) can only be
// resumed by the same request, whose backend idempotency key (from the jti)
// makes the backend answer with the hold it made; once reserved, the same
// request replays the reservation under any Idempotency-Key and any other
// request is 403.

export interface ReservationRouteDeps {
  admission: AdmissionTokenIssuer;
  ledger: AdmissionTokenLedger;
  reservations: Reservations;
  payments: Payments;
  metrics: Metrics;
  log: Logger;
  /** an admission was redeemed or spent: its session slot (max_active_sessions) is free for the next user */
  sessionEnded: (eventId: string, waitingToken: string) => Promise<unknown>;
}

const reservationJson = (r: Reservation) => ({
  reservation_id: r.reservationId,
  status: r.status,
  event_id: r.eventId,
  seat_ids: r.seatIds,
  quantity: r.quantity,
  user_id: r.userId,
  hold_expires_at: r.holdExpiresAt,
  ...(r.paymentIntentId ? { payment_intent_id: r.paymentIntentId } : {}),
  ...(r.orderId ? { order_id: r.orderId } : {}),
});

/** A gRPC backend call: transport failures, and in-band `error` codes mapped by code (common.v1.ErrorCode -> gateway code). */
export const BACKEND_ERRORS: ErrorList = [
  ['UNAUTHORIZED', 'backend in-band UNAUTHENTICATED'],
  ['FORBIDDEN', "backend in-band FORBIDDEN or UNAUTHORIZED (e.g. not the caller's reservation)"],
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
const BAD_ID: ErrorList = [['NOT_FOUND', 'the id is not 1-64 characters of A-Z a-z 0-9 _ -']];
const meta = (req: HttpRequest, idempotencyKey?: string) => ({ requestId: req.requestId, traceparent: req.traceparent, ...(idempotencyKey ? { idempotencyKey } : {}) });

export function reservationRoutes(d: ReservationRouteDeps): AnyRoute[] {
  // not awaited: the answer does not depend on it, and a slot not freed here frees itself when the admission expires
  const endSession = (eventId: string, waitingToken: string): void =>
    void d.sessionEnded(eventId, waitingToken).catch((err: unknown) => d.log.warn({ event_id: eventId, err }, 'session end not recorded: the slot frees itself when the admission expires'));
  return [
    route({
      method: 'POST',
      path: '/api/v1/admissions/redeem',
      operationId: 'redeemAdmission',
      summary: "The ticket site's server redeems an admission token, once",
      description:
        'For origins that take admitted users themselves (the page sends the browser to the event\'s target_url with ?admission_token=). ' +
        'The token must verify (signature, issuer, audience, expiry) and, when event_id is given, be for that event. The first redemption answers its claims; ' +
        'a later one, or one after the token bought a reservation through the gateway, answers 409 ALREADY_REDEEMED (one admission, one use). ' +
        'Authenticated by an origin API key (ORIGIN_API_KEYS); the route exists only when keys are configured. `src/connector` is the client for it.',
      tags: ['origin'],
      auth: 'origin',
      body: S.RedeemRequest,
      responses: { 200: { description: 'Redeemed now: the admission.', schema: S.Redeemed } },
      errors: [
        ['FORBIDDEN', 'the admission token is unusable; `reason` is malformed, invalid, expired or wrong_event'],
        ['ALREADY_REDEEMED', 'the token was redeemed before (reason redeemed, with redeemed_at) or bought a reservation (reason reserved)'],
        ['REDIS_UNAVAILABLE', 'the queue store (Redis) is unavailable or did not answer within REDIS_COMMAND_TIMEOUT_MS; retry after Retry-After'],
      ],
      handler: async ({ body }) => {
        const v = await d.admission.verify(body.admission_token, { ...(body.event_id !== undefined ? { eventId: body.event_id } : {}) });
        await d.ledger.redeem(v);
        endSession(v.evt, v.wt);
        d.metrics.admissionsRedeemed.inc();
        d.log.info({ event_id: v.evt }, 'admission redeemed by the origin');
        return {
          status: 200,
          body: { event_id: v.evt, subject: v.sub, jti: v.jti, admitted_at: new Date((v.iat ?? 0) * 1000).toISOString(), expires_at: new Date(v.exp * 1000).toISOString() },
        };
      },
    }),
    route({
      method: 'POST',
      path: '/api/v1/reservations',
      operationId: 'createReservation',
      summary: 'Hold seats with a reservation token',
      description:
        'Spends the `reservation_token` from enter: it must verify, be for this event and this user, be unexpired, and buys exactly one reservation. ' +
        'A backend refusal (e.g. a seat taken) frees it for another try; after a timeout only the same request (same seats) may be retried, and gets the hold the first call may have made; ' +
        'once reserved, the same request replays the reservation under any Idempotency-Key. A bearer JWT is required when user authentication is configured; `Idempotency-Key` is required.',
      tags: ['reservations'],
      auth: 'user-if-configured',
      idempotency: 'required',
      body: S.CreateReservationRequest,
      responses: { 201: { description: 'Held.', schema: S.Reservation, headers: ['X-Idempotency-Cached'] } },
      errors: [
        ['INVALID_REQUEST', 'event_id, seat_ids (1-20 distinct ids), quantity (= number of seat_ids) or reservation_token missing or invalid'],
        ['FORBIDDEN', 'the reservation_token is unusable; `reason` is malformed, invalid, expired, used (spent, or its outcome is unknown and this is another request), wrong_event or wrong_user'],
        ['IDEMPOTENCY_CONFLICT', 'a reservation with this reservation_token is in progress (reason in_flight); retry after Retry-After'],
        ['SERVICE_UNAVAILABLE', 'the reservation was made but could not be recorded (reason outcome_not_recorded); retry the same request'],
        ['REDIS_UNAVAILABLE', 'the queue store (Redis) is unavailable or did not answer within REDIS_COMMAND_TIMEOUT_MS; retry after Retry-After'],
        ...BACKEND_ERRORS,
      ],
      handler: async ({ req, body: b, user }) => {
        const seats = b.seat_ids;
        const quantity = b.quantity ?? seats.length;
        if (quantity !== seats.length) throw new AppError('INVALID_REQUEST', 'quantity must equal the number of seat_ids');
        // open mode (no user authentication): the token's own subject is the user
        const claims = await d.admission.verify(b.reservation_token, { eventId: b.event_id, userId: user?.sub ?? peekSub(b.reservation_token) });
        const fingerprint = createHash('sha256').update(JSON.stringify([b.event_id, seats, quantity, claims.sub])).digest('base64url');
        const turn = await d.ledger.begin(claims, fingerprint);
        if (turn.kind === 'replay') {
          d.metrics.reservationAttempts.inc({ outcome: 'replayed' });
          return { status: 201, body: turn.body };
        }
        let r: Reservation;
        try {
          r = await d.reservations.create(
            { eventId: b.event_id, seatIds: seats, quantity, userId: claims.sub, reservationToken: b.reservation_token, clientIp: req.clientIp },
            meta(req, AdmissionTokenLedger.backendKey(claims, turn.attempt)),
          );
        } catch (err) {
          // Refused in-band: nothing was reserved, the token may be used again
          // (other seats). Anything else (a timeout, a lost connection): the
          // hold may exist, so only this same request may resume the attempt.
          const outcome = isRefusal(err) ? 'free' : 'unknown';
          d.metrics.reservationAttempts.inc({ outcome: outcome === 'free' ? 'refused' : 'unknown' });
          await d.ledger.end(claims, turn.owner, outcome).catch((e: unknown) => {
            // unrecorded: the attempt counts as unknown once its lease passes (the safe reading)
            d.metrics.idempotencyStoreFailures.inc({ store: 'admission', reason: 'store_failed' });
            d.log.warn({ event_id: b.event_id, outcome, err: e }, 'admission ledger: could not record a failed attempt');
          });
          throw err;
        }
        const body = JSON.stringify(reservationJson(r));
        let recorded = false;
        try {
          recorded = await d.ledger.end(claims, turn.owner, 'done', body);
        } catch (err) {
          d.log.error({ event_id: b.event_id, reservation_id: r.reservationId, err }, 'admission ledger: reservation made but not recorded; answered 503');
        }
        if (!recorded) {
          // The retry of this request resumes the attempt and the backend replays this hold.
          d.metrics.idempotencyStoreFailures.inc({ store: 'admission', reason: 'not_recorded' });
          throw new AppError('SERVICE_UNAVAILABLE', 'the reservation could not be recorded; retry the same request', { reason: 'outcome_not_recorded' }, { 'Retry-After': '2' });
        }
        endSession(claims.evt, claims.wt);
        d.metrics.reservationAttempts.inc({ outcome: turn.resumed ? 'resumed' : 'created' });
        d.log.info({ event_id: r.eventId, reservation_id: r.reservationId, seats: seats.length, resumed: turn.resumed }, 'reservation created');
        return { status: 201, body };
      },
    }),
    route({
      method: 'GET',
      path: '/api/v1/reservations/:id',
      operationId: 'getReservation',
      summary: 'A reservation of the caller',
      tags: ['reservations'],
      auth: 'user',
      params: S.IdParams('reservation'),
      invalid: { id: 'NOT_FOUND' },
      responses: { 200: { description: 'The reservation.', schema: S.Reservation } },
      errors: [...BAD_ID, ...BACKEND_ERRORS],
      handler: async ({ req, params, user }) => ({ status: 200, body: reservationJson(await d.reservations.get(params.id, user!.sub, meta(req))) }),
    }),
    route({
      method: 'POST',
      path: '/api/v1/reservations/:id/confirm',
      operationId: 'confirmReservation',
      summary: 'Confirm a held reservation (after payment)',
      tags: ['reservations'],
      auth: 'user',
      idempotency: 'required',
      params: S.IdParams('reservation'),
      invalid: { id: 'NOT_FOUND' },
      body: S.ConfirmReservationRequest,
      bodyOptional: true,
      responses: { 200: { description: 'Confirmed.', schema: S.ConfirmReservationResponse, headers: ['X-Idempotency-Cached'] } },
      errors: [['INVALID_REQUEST', 'a non-empty body that is not a JSON object, or a payment_intent_id that is not an id'], ...BAD_ID, ...BACKEND_ERRORS],
      handler: async ({ req, params, body, user }) => {
        const r = await d.reservations.confirm(params.id, body.payment_intent_id ?? '', user!.sub, meta(req, req.headers['idempotency-key']));
        d.log.info({ reservation_id: params.id, order_id: r.orderId }, 'reservation confirmed');
        return { status: 200, body: { order_id: r.orderId, status: r.status, confirmed_at: r.confirmedAt } };
      },
    }),
    route({
      method: 'POST',
      path: '/api/v1/reservations/:id/cancel',
      operationId: 'cancelReservation',
      summary: 'Cancel a reservation (releases the seats)',
      description: 'No body is needed (any body is ignored).',
      tags: ['reservations'],
      auth: 'user',
      idempotency: 'required',
      params: S.IdParams('reservation'),
      invalid: { id: 'NOT_FOUND' },
      responses: { 200: { description: 'Cancelled.', schema: S.CancelReservationResponse, headers: ['X-Idempotency-Cached'] } },
      errors: [...BAD_ID, ...BACKEND_ERRORS],
      handler: async ({ req, params, user }) => {
        const r = await d.reservations.cancel(params.id, user!.sub, 'user', meta(req, req.headers['idempotency-key']));
        return { status: 200, body: { status: r.status, cancelled_at: r.cancelledAt } };
      },
    }),
    route({
      method: 'POST',
      path: '/api/v1/payment/intent',
      operationId: 'createPaymentIntent',
      summary: 'Create a payment intent for a reservation',
      tags: ['payments'],
      auth: 'user',
      idempotency: 'required',
      body: S.PaymentIntentRequest,
      missing: { amount: 'INVALID_AMOUNT' },
      responses: { 200: { description: 'The intent.', schema: S.PaymentIntent, headers: ['X-Idempotency-Cached'] } },
      errors: [
        ['INVALID_REQUEST', 'reservation_id missing or not an id, currency not an ISO 4217 code, or an unknown scenario'],
        ['INVALID_AMOUNT', 'amount is not a positive integer (minor units)'],
        ...BACKEND_ERRORS,
      ],
      handler: async ({ req, body: b, user }) => {
        if (typeof b.amount !== 'number' || !Number.isSafeInteger(b.amount) || b.amount <= 0) throw new AppError('INVALID_AMOUNT');
        const currency = b.currency ?? 'KRW';
        const scenario: Scenario = b.scenario ?? 'approve';
        const r = await d.payments.createIntent({ reservationId: b.reservation_id, amount: b.amount, currency, userId: user!.sub, scenario }, meta(req, req.headers['idempotency-key']));
        return { status: 200, body: { payment_intent_id: r.paymentIntentId, status: r.status, amount: b.amount, currency, reservation_id: b.reservation_id, client_secret: r.clientSecret, expires_at: r.expiresAt } };
      },
    }),
    route({
      method: 'GET',
      path: '/api/v1/payment/:id/status',
      operationId: 'getPaymentStatus',
      summary: "A payment intent's status",
      tags: ['payments'],
      auth: 'user',
      params: S.IdParams('payment intent'),
      invalid: { id: 'NOT_FOUND' },
      responses: { 200: { description: 'The payment.', schema: S.PaymentStatus } },
      errors: [...BAD_ID, ...BACKEND_ERRORS],
      handler: async ({ req, params, user }) => {
        const p = await d.payments.status(params.id, user!.sub, meta(req));
        return { status: 200, body: { payment_intent_id: p.paymentIntentId, status: p.status, amount: p.amount, currency: p.currency, reservation_id: p.reservationId } };
      },
    }),
    route({
      method: 'POST',
      path: '/api/v1/payment/process',
      operationId: 'processPayment',
      summary: 'Process (approve or fail) a payment intent',
      description: 'A declined payment is an outcome, not an error: 200 with `"status":"FAILED"` and a `failure_reason`.',
      tags: ['payments'],
      auth: 'user',
      idempotency: 'required',
      body: S.ProcessPaymentRequest,
      responses: { 200: { description: 'Processed (COMPLETED or FAILED).', schema: S.ProcessPaymentResponse, headers: ['X-Idempotency-Cached'] } },
      errors: [
        ['INVALID_REQUEST', 'payment_intent_id missing or not an id, or action is not approve or fail'],
        // PAYMENT_NOT_APPROVED is tolerated here: it is the 200 FAILED outcome
        ...BACKEND_ERRORS.filter(([c]) => c !== 'PAYMENT_NOT_APPROVED'),
      ],
      handler: async ({ req, body: b }) => {
        const r = await d.payments.process(b.payment_intent_id, b.action, meta(req, req.headers['idempotency-key']));
        return {
          status: 200,
          body: { payment_intent_id: b.payment_intent_id, payment_id: r.paymentId, status: r.status, transaction_id: r.transactionId, processed_at: r.processedAt, ...(r.failureReason ? { failure_reason: r.failureReason } : {}) },
        };
      },
    }),
  ];
}

/** The subject of a token before verification; verify() then checks the signature over it. */
function peekSub(token: string): string {
  try {
    const p = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as { sub?: unknown };
    return typeof p.sub === 'string' ? p.sub : '';
  } catch {
    return '';
  }
}
