import { AppError } from '../errors.js';
import { EVENT_ID_RE } from '../queue/keys.js';
import type { AdmissionTokenIssuer, AdmissionTokenLedger } from '../auth/admission-token.js';
import type { UserAuth } from '../auth/user-auth.js';
import type { ReservationBackend, Reservation } from '../backends/reservations.js';
import type { Metrics } from '../metrics.js';
import type { Logger } from '../log.js';
import type { TokenBuckets } from './rate-limit.js';
import type { Idempotency } from './idempotency.js';
import { identify, limitUser } from './routes-queue.js';
import { jsonBody, type HttpServer } from './server.js';

// POST /api/v1/reservations: the first place a reservation_token is spent.
// JWT (when authentication is configured) + Idempotency-Key required; the
// token must verify, be for this event and this user, be unexpired, and is
// accepted once (its jti is consumed; released again only if the backend
// failed in a way that is not the caller's).

export interface ReservationRouteDeps {
  admission: AdmissionTokenIssuer;
  ledger: AdmissionTokenLedger;
  auth: UserAuth;
  backend: ReservationBackend;
  userLimiter: TokenBuckets;
  idempotency: Idempotency;
  metrics: Metrics;
  log: Logger;
}

const SEAT_RE = /^[A-Za-z0-9_.:-]{1,64}$/;
const ID_RE = /^[A-Za-z0-9-]{1,64}$/;

const reservationJson = (r: Reservation) => ({
  reservation_id: r.reservationId,
  status: r.status,
  event_id: r.eventId,
  seat_ids: r.seatIds,
  quantity: r.quantity,
  user_id: r.userId,
  hold_expires_at: r.holdExpiresAt.toISOString(),
});

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
        await d.ledger.consume(claims);
        let r: Reservation;
        try {
          r = await d.backend.create({
            eventId: b.event_id,
            seatIds: seats,
            quantity,
            userId: claims.sub,
            reservationToken: b.reservation_token,
            idempotencyKey: req.headers['idempotency-key']!,
          });
        } catch (err) {
          // the caller did nothing wrong: let them retry with the same token
          if (!(err instanceof AppError) || err.status >= 500) await d.ledger.release(claims);
          throw err;
        }
        d.log.info({ event_id: r.eventId, reservation_id: r.reservationId, seats: seats.length }, 'reservation created');
        return { status: 201, body: reservationJson(r) };
      },
      { required: true },
    ),
    { body: true },
  );

  http.route('GET', '/api/v1/reservations/:id', async (req) => {
    const id = await identify(d.auth, d.metrics, req.headers.authorization, true);
    const rid = req.params[0] ?? '';
    if (!ID_RE.test(rid)) throw new AppError('NOT_FOUND', 'no such reservation');
    const r = await d.backend.get(rid, id!.sub);
    if (!r) throw new AppError('NOT_FOUND', 'no such reservation');
    return { status: 200, body: reservationJson(r) };
  });
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
