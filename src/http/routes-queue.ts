import { createHash } from 'node:crypto';
import { AppError } from '../errors.js';
import { EVENT_ID_RE } from '../queue/keys.js';
import { newWaitingToken, tokenEvent } from '../queue/token.js';
import { estimate } from '../queue/eta.js';
import type { JoinDefaults, QueueStore, StatusSnapshot } from '../queue/store.js';
import type { EventRegistry } from '../queue/registry.js';
import type { AdmissionTokenIssuer } from '../auth/admission-token.js';
import type { Realtime } from '../realtime/realtime.js';
import { enterLine } from '../queue/entry.js';
import type { Estimate } from '../queue/eta.js';
import type { EventRoom, LocalUser } from '../realtime/event-room.js';
import type { UserAuth, Identity } from '../auth/user-auth.js';
import { rateLimitHeaders, type TokenBuckets } from './rate-limit.js';
import type { Idempotency } from './idempotency.js';
import type { Config } from '../config.js';
import type { Metrics } from '../metrics.js';
import type { Logger } from '../log.js';
import { jsonBody, type HttpReply, type HttpRequest, type HttpServer } from './server.js';

// Public queue API per the contract: join, status, enter, leave.

const USER_ID_RE = /^[\x21-\x7e]{1,128}$/;
const IDEMPOTENCY_KEY_RE = /^[A-Za-z0-9_-]{8,128}$/;

export interface QueueRouteDeps {
  store: QueueStore;
  registry: EventRegistry;
  admission: AdmissionTokenIssuer;
  config: Config;
  metrics: Metrics;
  log: Logger;
  realtime: Realtime;
  auth: UserAuth;
  userLimiter: TokenBuckets;
  idempotency: Idempotency;
}

/** Per-user rate limit, on top of the per-client one. */
export function limitUser(limiter: TokenBuckets, metrics: Metrics, id: Identity): void {
  const v = limiter.take(`u:${id.sub}`);
  if (!v.ok) {
    metrics.rateLimitDropped.inc({ scope: 'user' });
    throw new AppError('RATE_LIMITED', 'too many requests for this user; slow down', { retry_after_sec: v.retryAfterSec }, rateLimitHeaders(v));
  }
}

/** Verifies a bearer token, counting failures by reason. */
export async function identify(auth: UserAuth, metrics: Metrics, header: string | undefined, required: boolean): Promise<Identity | undefined> {
  try {
    return required ? await auth.require(header) : await auth.identify(header);
  } catch (err) {
    if (err instanceof AppError) metrics.authFailures.inc({ reason: String(err.details?.reason ?? err.code) });
    throw err;
  }
}

function requireToken(req: HttpRequest): string {
  const token = req.query('token');
  if (!token) throw new AppError('MISSING_TOKEN', 'query parameter token is required');
  if (!tokenEvent(token)) throw new AppError('TOKEN_NOT_FOUND', 'unknown waiting token');
  return token;
}

// JSON numbers: a non-finite value would be invalid JSON (JSON.stringify writes null)
const num = (n: number): string => (Number.isFinite(n) ? String(n) : 'null');

/**
 * The status body of a user in line (waiting or ready), from Redis or from
 * this instance's memory. Written as a string: this is the hottest answer the
 * gateway gives, and building an object to stringify it cost more than the
 * rest of the poll (profile in docs/BENCHMARKS.md). Every string field is
 * from a closed set or matches EVENT_ID_RE, so nothing needs escaping.
 */
function placeJson(eventId: string, eventState: string, status: string, waitingTime: number, e: Estimate, readyDeadlineMs: number, nowMs: number): string {
  const ready = status === 'ready';
  const readyPart = ready
    ? `,"ready_deadline":"${new Date(readyDeadlineMs).toISOString()}","ready_expires_in_sec":${Math.max(0, Math.floor((readyDeadlineMs - nowMs) / 1000))}`
    : '';
  return (
    `{"event_id":"${eventId}","event_state":"${eventState}","status":"${status}","waiting_time":${num(waitingTime)},` +
    `"position":${num(e.position)},"people_ahead":${num(e.peopleAhead)},"eta_sec":${num(e.etaSec)},"eta_low":${num(e.etaLowSec)},"eta_high":${num(e.etaHighSec)},` +
    `"confidence":${num(e.confidence)},"ready_for_entry":${ready}${readyPart},"poll_after_ms":${num(e.pollAfterMs)}}`
  );
}

export function statusBody(s: StatusSnapshot, tickMs: number, pollTimeoutMs: number): string {
  const waitingTime = Math.max(0, Math.floor((s.nowMs - s.joinedMs) / 1000));
  if (s.state === 'waiting' || s.state === 'ready') {
    return placeJson(s.eventId, s.eventState, s.state, waitingTime, estimate(s.rank, s.readyCount, s.state === 'waiting', s.eta, tickMs, pollTimeoutMs), s.readyDeadlineMs, s.nowMs);
  }
  // admitted: the user is through; position and ETA are final.
  return JSON.stringify({
    event_id: s.eventId,
    event_state: s.eventState,
    status: s.state,
    waiting_time: waitingTime,
    position: 0,
    people_ahead: 0,
    eta_sec: 0,
    eta_low: 0,
    eta_high: 0,
    confidence: 1,
    ready_for_entry: false,
    poll_after_ms: 0,
  });
}

/** The same body, from this instance's memory (exact as of the last tick message). */
function memoryBody(room: EventRoom, u: LocalUser, e: Estimate): string {
  const now = room.redisNow();
  return placeJson(room.eventId, room.eventState, u.state, Math.max(0, Math.floor((now - u.joinedMs) / 1000)), e, u.readyDeadlineMs, now);
}

export function registerQueueRoutes(http: HttpServer, d: QueueRouteDeps): void {
  const q = d.config.queue;
  const livenessMs = q.pollTimeoutSec * 1000;
  const op = (operation: string, status: string): void => d.metrics.queueOps.inc({ operation, status });
  // one object for every join: the store batches joins that share it
  const joinDefaults: JoinDefaults = {
    autoCreate: q.autoCreateEvents,
    rate: q.defaultRate,
    burst: q.defaultBurst,
    readyWindowSec: q.readyWindowSec,
    reconnectGraceSec: q.reconnectGraceSec,
    livenessMs,
    idempotencyTtlSec: q.idempotencyTtlSec,
  };

  http.route(
    'POST',
    '/api/v1/queue/join',
    async (req): Promise<HttpReply> => {
      const body = jsonBody(req);
      const eventId = body.event_id;
      if (eventId === undefined || eventId === null || eventId === '') throw new AppError('MISSING_EVENT_ID', 'event_id is required');
      if (typeof eventId !== 'string' || !EVENT_ID_RE.test(eventId)) {
        throw new AppError('INVALID_REQUEST', 'event_id must be 1-64 characters of A-Z a-z 0-9 _ -');
      }
      const claimed = body.user_id ?? '';
      if (typeof claimed !== 'string' || (claimed !== '' && !USER_ID_RE.test(claimed))) {
        throw new AppError('INVALID_REQUEST', 'user_id must be 1-128 printable ASCII characters');
      }
      // A valid JWT binds the place to its subject. With authentication
      // configured, a user id is never taken from the body: anyone could claim
      // someone else's id (and be handed their waiting token as a duplicate).
      const id = await identify(d.auth, d.metrics, req.headers.authorization, false);
      let userId = claimed;
      if (id) {
        if (claimed !== '' && claimed !== id.sub) throw new AppError('FORBIDDEN', 'user_id differs from the authenticated user');
        userId = id.sub;
        limitUser(d.userLimiter, d.metrics, id);
      } else if (claimed !== '' && d.auth.configured) {
        throw new AppError('UNAUTHORIZED', 'user_id requires a bearer token', { reason: 'missing' }, { 'WWW-Authenticate': 'Bearer' });
      }
      const idem = req.headers['idempotency-key'] ?? '';
      if (idem && !IDEMPOTENCY_KEY_RE.test(idem)) throw new AppError('INVALID_REQUEST', 'Idempotency-Key must be 8-128 characters of A-Z a-z 0-9 _ -');
      // The join script remembers the key per event; scope it by caller so
      // someone who learns another user's key cannot be handed their place.
      const scopedIdem = idem ? createHash('sha256').update(`${idem}\n${userId ? `u:${userId}` : `ip:${req.clientIp}`}`).digest('base64url') : '';
      if (q.autoCreateEvents) await d.registry.register(eventId);
      try {
        const r = await d.store.join(eventId, newWaitingToken(eventId), userId, scopedIdem, joinDefaults);
        op('join', 'ok');
        if (r.created) d.log.info({ event_id: eventId }, 'event auto-created on first join');
        return { status: 202, body: { waiting_token: r.token, position_hint: r.position, status: 'waiting' } };
      } catch (err) {
        op('join', err instanceof AppError ? err.code.toLowerCase() : 'error');
        throw err;
      }
    },
    { body: true },
  );

  const fromMemory = d.metrics.statusFromMemory.labels({ source: 'memory' });
  const statusOk = d.metrics.queueOps.labels({ operation: 'status', status: 'ok' });
  http.route('GET', '/api/v1/queue/status', (req) => {
    const token = requireToken(req);
    // A user this instance holds is answered from memory, synchronously: no
    // Redis round trip, no promise (the poll still counts as a heartbeat:
    // liveness is refreshed in the next batch).
    const mem = d.realtime.statusFromMemory(token);
    if (mem) {
      fromMemory.inc();
      statusOk.inc();
      return { status: 200, body: memoryBody(mem.room, mem.user, mem.estimate) };
    }
    return statusFromRedis(token);
  });

  const statusFromRedis = async (token: string): Promise<HttpReply> => {
    d.metrics.statusFromMemory.inc({ source: 'redis' });
    const roomBefore = d.realtime.roomFor(tokenEvent(token)!);
    const s = await d.store.status(token, livenessMs);
    if (!s) {
      op('status', 'not_found');
      throw new AppError('TOKEN_NOT_FOUND', 'unknown waiting token');
    }
    if (s.state === 'expired' || s.state === 'left') {
      op('status', s.state);
      throw new AppError('TOKEN_EXPIRED', s.state === 'left' ? 'this place was given up (left the line)' : `this place in line has expired (${s.reason})`, {
        reason: s.state === 'left' ? 'left' : s.reason,
      });
    }
    if (s.state === 'waiting' || s.state === 'ready') {
      // Attach lazily so the next poll is answered from memory. Only adopt this
      // read if the event's tick channel was subscribed before it; otherwise
      // attach in the background with its own read (no tick can slip between).
      void d.realtime.adoptOrAttach(s, roomBefore).catch(() => undefined);
    }
    op('status', 'ok');
    return { status: 200, body: statusBody(s, q.tickMs, livenessMs) };
  };

  http.route(
    'POST',
    '/api/v1/queue/enter',
    d.idempotency.wrap(
      async (req) => {
      const body = jsonBody(req);
      const token = body.waiting_token;
      if (typeof token !== 'string' || token === '') throw new AppError('MISSING_TOKEN', 'waiting_token is required');
      // enter needs a valid JWT whenever user authentication is configured
      const id = await identify(d.auth, d.metrics, req.headers.authorization, d.auth.configured);
      if (id) limitUser(d.userLimiter, d.metrics, id);
      const entry = await enterLine(d, token, id?.sub ?? '', 'http');
      // a socket of this user on this instance hears it at once, not at the next tick
      d.realtime.finishLocal(token, 'entered', { type: 'admitted', reservation_token: entry.reservationToken, ttl_sec: entry.ttlSec });
      return { status: 200, body: { admission: 'granted', reservation_token: entry.reservationToken, ttl_sec: entry.ttlSec } };
      },
      { required: false },
    ),
    { body: true },
  );

  http.route('DELETE', '/api/v1/queue/leave', async (req) => {
    const token = requireToken(req);
    await d.store.leave(token);
    d.realtime.finishLocal(token, 'left');
    op('leave', 'ok');
    return { status: 200, body: { status: 'left' } };
  });
}
