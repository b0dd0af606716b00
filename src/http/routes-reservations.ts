import { AppError } from '../errors.js';
import { EVENT_ID_RE } from '../queue/keys.js';
import { createHash } from 'node:crypto';
import { AdmissionTokenLedger, type AdmissionTokenIssuer } from '../auth/admission-token.js';
import { isRefusal } from '../backends/grpc-backend.js';
import type { UserAuth } from '../auth/user-auth.js';
import type { Reservations, Payments, Reservation, Scenario } from '../backends/reservations.js';
import type { Metrics } from '../metrics.js';
import type { Logger } from '../log.js';
import type { TokenBuckets } from './rate-limit.js';
import type { Idempotency } from './idempotency.js';
import { identify, limitUser } from './routes-queue.js';
import { jsonBody, type HttpServer } from './server.js';

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
  auth: UserAuth;
  reservations: Reservations;
  payments: Payments;
  userLimiter: TokenBuckets;
  idempotency: Idempotency;
  metrics: Metrics;
  log: Logger;
}

const SEAT_RE = /^[A-Za-z0-9_.:-]{1,64}$/;
const ID_RE = /^[A-Za-z0-9_-]{1,64}$/;

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
const SCENARIOS: readonly Scenario[] = ['approve', 'fail', 'delay', 'random', 'timeout'];

export function registerReservationRoutes(http: HttpServer, d: ReservationRouteDeps): void {
  http.route(
    'POST',
    '/api/v1/reservations',
    d.idempotency.wrap(
      async (req) => {
        const id = await identify(d.auth, d.metrics, req.headers.authorization, d.auth.configured);
        if (id) limitUser(d.userLimiter, d.metrics, id);
        const b = jsonBody(req);
        if (typeof b.event_id !== 'string' || !EVENT_ID_RE.test(b.event_id)) throw new AppError('INVALID_REQUEST', 'event_id is required (1-64 characters of A-Z a-z 0-9 _ -)');
        if (!Array.isArray(b.seat_ids) || b.seat_ids.length === 0 || b.seat_ids.length > 20 || !b.seat_ids.every((x) => typeof x === 'string' && SEAT_RE.test(x))) {
          throw new AppError('INVALID_REQUEST', 'seat_ids must be 1-20 seat ids');
        }
        const seats = b.seat_ids as string[];
        if (new Set(seats).size !== seats.length) throw new AppError('INVALID_REQUEST', 'seat_ids must not repeat');
        const quantity = b.quantity ?? seats.length;
        if (typeof quantity !== 'number' || !Number.isInteger(quantity) || quantity !== seats.length) throw new AppError('INVALID_REQUEST', 'quantity must equal the number of seat_ids');
        if (typeof b.reservation_token !== 'string' || b.reservation_token === '') throw new AppError('INVALID_REQUEST', 'reservation_token is required');
        // open mode (no user authentication): the token's own subject is the user
        const claims = await d.admission.verify(b.reservation_token, { eventId: b.event_id, userId: id?.sub ?? peekSub(b.reservation_token) });
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
            { requestId: req.requestId, idempotencyKey: AdmissionTokenLedger.backendKey(claims, turn.attempt) },
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
        d.metrics.reservationAttempts.inc({ outcome: turn.resumed ? 'resumed' : 'created' });
        d.log.info({ event_id: r.eventId, reservation_id: r.reservationId, seats: seats.length, resumed: turn.resumed }, 'reservation created');
        return { status: 201, body };
      },
      { required: true },
    ),
    { body: true },
  );

  /** JWT subject for routes that act for a user: required when auth is configured; in open mode the caller names no one and gets 401. */
  const who = async (authorization: string | undefined): Promise<string> => {
    const id = await identify(d.auth, d.metrics, authorization, true);
    limitUser(d.userLimiter, d.metrics, id!);
    return id!.sub;
  };
  const param = (v: string | undefined, what: string): string => {
    if (!v || !ID_RE.test(v)) throw new AppError('NOT_FOUND', `no such ${what}`);
    return v;
  };

  http.route('GET', '/api/v1/reservations/:id', async (req) => {
    const sub = await who(req.headers.authorization);
    const r = await d.reservations.get(param(req.params[0], 'reservation'), sub, { requestId: req.requestId });
    return { status: 200, body: reservationJson(r) };
  });

  http.route(
    'POST',
    '/api/v1/reservations/:id/confirm',
    d.idempotency.wrap(
      async (req) => {
        const sub = await who(req.headers.authorization);
        const b = req.body && req.body.length ? jsonBody(req) : {};
        const pi = b.payment_intent_id ?? '';
        if (typeof pi !== 'string' || (pi !== '' && !ID_RE.test(pi))) throw new AppError('INVALID_REQUEST', 'payment_intent_id must be an id');
        const r = await d.reservations.confirm(param(req.params[0], 'reservation'), pi, sub, { requestId: req.requestId, idempotencyKey: req.headers['idempotency-key'] });
        d.log.info({ reservation_id: req.params[0], order_id: r.orderId }, 'reservation confirmed');
        return { status: 200, body: { order_id: r.orderId, status: r.status, confirmed_at: r.confirmedAt } };
      },
      { required: true },
    ),
    { body: true },
  );

  http.route(
    'POST',
    '/api/v1/reservations/:id/cancel',
    d.idempotency.wrap(
      async (req) => {
        const sub = await who(req.headers.authorization);
        const r = await d.reservations.cancel(param(req.params[0], 'reservation'), sub, 'user', { requestId: req.requestId, idempotencyKey: req.headers['idempotency-key'] });
        return { status: 200, body: { status: r.status, cancelled_at: r.cancelledAt } };
      },
      { required: true },
    ),
    { body: true },
  );

  http.route(
    'POST',
    '/api/v1/payment/intent',
    d.idempotency.wrap(
      async (req) => {
        const sub = await who(req.headers.authorization);
        const b = jsonBody(req);
        if (typeof b.reservation_id !== 'string' || !ID_RE.test(b.reservation_id)) throw new AppError('INVALID_REQUEST', 'reservation_id is required');
        if (typeof b.amount !== 'number' || !Number.isSafeInteger(b.amount) || b.amount <= 0) throw new AppError('INVALID_AMOUNT', 'amount must be a positive integer (minor units)');
        const currency = b.currency ?? 'KRW';
        if (typeof currency !== 'string' || !/^[A-Z]{3}$/.test(currency)) throw new AppError('INVALID_REQUEST', 'currency must be an ISO 4217 code');
        const scenario = b.scenario ?? 'approve';
        if (typeof scenario !== 'string' || !SCENARIOS.includes(scenario as Scenario)) throw new AppError('INVALID_REQUEST', `scenario must be one of ${SCENARIOS.join(', ')}`);
        const r = await d.payments.createIntent(
          { reservationId: b.reservation_id, amount: b.amount, currency, userId: sub, scenario: scenario as Scenario },
          { requestId: req.requestId, idempotencyKey: req.headers['idempotency-key'] },
        );
        return { status: 200, body: { payment_intent_id: r.paymentIntentId, status: r.status, amount: b.amount, currency, reservation_id: b.reservation_id, client_secret: r.clientSecret, expires_at: r.expiresAt } };
      },
      { required: true },
    ),
    { body: true },
  );

  http.route('GET', '/api/v1/payment/:id/status', async (req) => {
    const sub = await who(req.headers.authorization);
    const p = await d.payments.status(param(req.params[0], 'payment'), sub, { requestId: req.requestId });
    return { status: 200, body: { payment_intent_id: p.paymentIntentId, status: p.status, amount: p.amount, currency: p.currency, reservation_id: p.reservationId } };
  });

  http.route(
    'POST',
    '/api/v1/payment/process',
    d.idempotency.wrap(
      async (req) => {
        await who(req.headers.authorization);
        const b = jsonBody(req);
        if (typeof b.payment_intent_id !== 'string' || !ID_RE.test(b.payment_intent_id)) throw new AppError('INVALID_REQUEST', 'payment_intent_id is required');
        if (b.action !== 'approve' && b.action !== 'fail') throw new AppError('INVALID_REQUEST', 'action must be approve or fail');
        const r = await d.payments.process(b.payment_intent_id, b.action, { requestId: req.requestId, idempotencyKey: req.headers['idempotency-key'] });
        return {
          status: 200,
          body: { payment_intent_id: b.payment_intent_id, payment_id: r.paymentId, status: r.status, transaction_id: r.transactionId, processed_at: r.processedAt, ...(r.failureReason ? { failure_reason: r.failureReason } : {}) },
        };
      },
      { required: true },
    ),
    { body: true },
  );
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
