import { createHash } from 'node:crypto';
import { AppError } from '../errors.js';
import { newWaitingToken, tokenEvent } from '../queue/token.js';
import { estimate } from '../queue/eta.js';
import type { JoinDefaults, Notice, QueueStore, StatusSnapshot } from '../queue/store.js';
import type { EventRegistry } from '../queue/registry.js';
import type { AdmissionTokenIssuer } from '../auth/admission-token.js';
import type { Realtime } from '../realtime/realtime.js';
import { enterLine } from '../queue/entry.js';
import type { Estimate } from '../queue/eta.js';
import type { EventRoom, LocalUser } from '../realtime/event-room.js';
import type { UserAuth } from '../auth/user-auth.js';
import type { Config } from '../config.js';
import type { Metrics } from '../metrics.js';
import type { Logger } from '../log.js';
import { route, type AnyRoute, type Reply } from './route.js';
import * as S from './schemas.js';
import type { Static } from '@sinclair/typebox';

// Public queue API per the contract: join, status, enter, leave.

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
}

type QueueStatus = Static<typeof S.QueueStatus>;

/**
 * The status body of a user in line (waiting or ready), from Redis or from
 * this instance's memory; serialised by the route's compiled serialiser
 * (fast-json-stringify from S.QueueStatus).
 */
/** `message`: the operator's message as this instance knows it (undefined: it does not know yet, the field is left out) */
function place(
  eventId: string,
  eventState: QueueStatus['event_state'],
  status: 'waiting' | 'ready',
  waitingTime: number,
  e: Estimate,
  readyDeadlineMs: number,
  nowMs: number,
  message: Notice | null | undefined,
): QueueStatus {
  const ready = status === 'ready';
  // one object literal of one shape per answer (a status poll is the hot path: no spread copies)
  return {
    event_id: eventId,
    event_state: eventState,
    status,
    waiting_time: waitingTime,
    position: e.position,
    people_ahead: e.peopleAhead,
    being_let_in: e.beingLetIn,
    eta_sec: e.etaSec,
    eta_low: e.etaLowSec,
    eta_high: e.etaHighSec,
    confidence: e.confidence,
    ready_for_entry: ready,
    ...(ready ? { ready_deadline: new Date(readyDeadlineMs).toISOString(), ready_expires_in_sec: Math.max(0, Math.floor((readyDeadlineMs - nowMs) / 1000)) } : {}),
    poll_after_ms: e.pollAfterMs,
    message,
  };
}

export function statusBody(s: StatusSnapshot, tickMs: number, pollTimeoutMs: number, message?: Notice | null): QueueStatus {
  const waitingTime = Math.max(0, Math.floor((s.nowMs - s.joinedMs) / 1000));
  if (s.state === 'waiting' || s.state === 'ready') {
    return place(s.eventId, s.eventState, s.state, waitingTime, estimate(s.rank, s.readyCount, s.state === 'waiting', s.eta, tickMs, pollTimeoutMs), s.readyDeadlineMs, s.nowMs, message);
  }
  // admitted: the user is through; position and ETA are final.
  return {
    event_id: s.eventId,
    event_state: s.eventState,
    status: 'admitted',
    waiting_time: waitingTime,
    position: 0,
    people_ahead: 0,
    being_let_in: 0,
    eta_sec: 0,
    eta_low: 0,
    eta_high: 0,
    confidence: 1,
    ready_for_entry: false,
    poll_after_ms: 0,
  };
}

/** The same body, from this instance's memory (exact as of the last tick message). */
function memoryBody(room: EventRoom, u: LocalUser, e: Estimate): QueueStatus {
  const now = room.redisNow();
  return place(room.eventId, room.eventState, u.state, Math.max(0, Math.floor((now - u.joinedMs) / 1000)), e, u.readyDeadlineMs, now, room.noticeMs >= 0 ? room.notice : undefined);
}

export function queueRoutes(d: QueueRouteDeps): AnyRoute[] {
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
    access: q.defaultAccess,
  };
  const entryDeps = { ...d, authConfigured: d.auth.configured };
  const fromMemory = d.metrics.statusFromMemory.labels({ source: 'memory' });
  const statusOk = d.metrics.queueOps.labels({ operation: 'status', status: 'ok' });

  const statusFromRedis = async (token: string): Promise<Reply> => {
    d.metrics.statusFromMemory.inc({ source: 'redis' });
    const roomBefore = d.realtime.roomFor(tokenEvent(token)!);
    const s = await d.store.status(token, livenessMs);
    if (!s) {
      op('status', 'not_found');
      throw new AppError('TOKEN_NOT_FOUND');
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
      // The answer does not depend on it: a failed attach only means the next poll reads Redis again.
      void d.realtime.adoptOrAttach(s, roomBefore).catch((err: unknown) => d.log.debug({ event_id: s.eventId, err }, 'status: attaching the poller here failed; the next poll reads Redis'));
    }
    op('status', 'ok');
    // the operator's message as this instance last pushed it (a poller not yet attached here gets it from the next poll)
    return { status: 200, body: statusBody(s, q.tickMs, livenessMs, roomBefore && roomBefore.noticeMs >= 0 ? roomBefore.notice : undefined) };
  };

  return [
    route({
      method: 'GET',
      path: '/api/v1/events/:id',
      operationId: 'getPublicEvent',
      summary: "What a page needs to know about an event: its state, access and where admitted users go",
      tags: ['queue'],
      params: S.EventIdParams,
      responses: { 200: { description: 'The event.', schema: S.PublicEvent } },
      errors: [
        ['EVENT_NOT_FOUND', 'no such event'],
        ['REDIS_UNAVAILABLE', 'the queue store (Redis) is unavailable or did not answer within REDIS_COMMAND_TIMEOUT_MS; retry after Retry-After'],
      ],
      handler: async ({ params }) => {
        const c = await d.store.getEvent(params.id);
        if (!c) throw new AppError('EVENT_NOT_FOUND');
        return { status: 200, body: { event_id: c.id, state: c.state, access: c.access, target_url: c.targetUrl || d.config.pageTargetUrl, message: c.notice } };
      },
    }),
    route({
      method: 'POST',
      path: '/api/v1/queue/join',
      operationId: 'joinQueue',
      summary: 'Join the line of an event',
      description:
        "Takes the next place in the event's line (exact arrival order at Redis). A valid bearer JWT binds the place to its `sub`; " +
        'with user authentication configured a `user_id` in the body needs one. An `Idempotency-Key` (scoped by caller) makes a repeated join answer ' +
        '409 DUPLICATE_REQUEST with the existing `waiting_token` instead of a second place; the same happens when the same user is already in line. ' +
        'Unknown events are created on first join only when QUEUE_AUTO_CREATE_EVENTS is on.',
      tags: ['queue'],
      auth: 'user-optional',
      body: S.JoinRequest,
      missing: { event_id: 'MISSING_EVENT_ID' },
      reads: ['idempotency-key'],
      responses: { 202: { description: 'In line.', schema: S.JoinResponse } },
      errors: [
        ['INVALID_REQUEST', 'event_id is not 1-64 characters of A-Z a-z 0-9 _ -, user_id is not 1-128 printable ASCII characters, or the Idempotency-Key is malformed'],
        ['UNAUTHORIZED', 'a user_id was sent without a bearer token while user authentication is configured (reason missing)'],
        ['FORBIDDEN', 'user_id differs from the authenticated user'],
        ['EVENT_CLOSED', 'the event is closed to new arrivals'],
        ['EVENT_NOT_FOUND', 'no such event (and auto-create is off)'],
        ['DUPLICATE_REQUEST', 'same Idempotency-Key, or the same user already holds a place: carries the existing `waiting_token`, its `position` and `status`'],
        ['REDIS_UNAVAILABLE', 'the queue store (Redis) is unavailable or did not answer within REDIS_COMMAND_TIMEOUT_MS; retry after Retry-After'],
      ],
      handler: async ({ req, body, user }) => {
        // A valid JWT binds the place to its subject. With authentication
        // configured, a user id is never taken from the body: anyone could claim
        // someone else's id (and be handed their waiting token as a duplicate).
        const claimed = body.user_id ?? '';
        let userId = claimed;
        if (user) {
          if (claimed !== '' && claimed !== user.sub) throw new AppError('FORBIDDEN', 'user_id differs from the authenticated user');
          userId = user.sub;
        } else if (claimed !== '' && d.auth.configured) {
          throw new AppError('UNAUTHORIZED', 'user_id requires a bearer token', { reason: 'missing' }, { 'WWW-Authenticate': 'Bearer' });
        }
        const idem = req.headers['idempotency-key'] ?? '';
        if (idem && !IDEMPOTENCY_KEY_RE.test(idem)) throw new AppError('INVALID_REQUEST', 'Idempotency-Key must be 8-128 characters of A-Z a-z 0-9 _ -');
        // The join script remembers the key per event; scope it by caller so
        // someone who learns another user's key cannot be handed their place.
        const scopedIdem = idem ? createHash('sha256').update(`${idem}\n${userId ? `u:${userId}` : `ip:${req.clientIp}`}`).digest('base64url') : '';
        const eventId = body.event_id;
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
    }),
    route({
      method: 'GET',
      path: '/api/v1/queue/status',
      operationId: 'queueStatus',
      summary: 'Place in line, ETA and readiness',
      description: 'Polling also keeps the place alive (QUEUE_POLL_TIMEOUT_SEC): poll every `poll_after_ms`. A user attached to this instance is answered from memory.',
      tags: ['queue'],
      query: S.WaitingTokenQuery,
      missing: { token: 'MISSING_TOKEN' },
      responses: { 200: { description: 'The place in line.', schema: S.QueueStatus } },
      errors: [
        ['TOKEN_NOT_FOUND', 'malformed or unknown waiting token'],
        ['TOKEN_EXPIRED', 'the place is gone; `reason` is liveness, ready_timeout or left'],
        ['REDIS_UNAVAILABLE', 'the queue store (Redis) is unavailable or did not answer within REDIS_COMMAND_TIMEOUT_MS; retry after Retry-After'],
      ],
      handler: ({ query }) => {
        const token = query.token;
        if (!tokenEvent(token)) throw new AppError('TOKEN_NOT_FOUND');
        // A user this instance holds is answered from memory, synchronously: no
        // Redis round trip, no promise (the poll still counts as a heartbeat:
        // its claim is recorded in the next batch).
        const mem = d.realtime.statusFromMemory(token);
        if (mem) {
          fromMemory.inc();
          statusOk.inc();
          return { status: 200, body: memoryBody(mem.room, mem.user, mem.estimate) };
        }
        return statusFromRedis(token);
      },
    }),
    route({
      method: 'POST',
      path: '/api/v1/queue/enter',
      operationId: 'enterQueue',
      summary: 'Leave the line through the front door: get a reservation token',
      description:
        'Only a `ready` user. The `reservation_token` is a JWT signed by the gateway (verify with /.well-known/jwks.json). Entering again while the admission is valid ' +
        "answers the same admission (same jti), never a second one. An event with access `user` is entered by a verified user (a bearer JWT, when user authentication is configured: the place becomes theirs); " +
        'one with access `anonymous` with the waiting token alone (its admission token names the place). `Idempotency-Key` is honoured (replayed with X-Idempotency-Cached: true).',
      tags: ['queue'],
      auth: 'user-optional',
      idempotency: 'optional',
      body: S.EnterRequest,
      missing: { waiting_token: 'MISSING_TOKEN' },
      invalid: { waiting_token: 'MISSING_TOKEN' },
      responses: { 200: { description: 'Admitted.', schema: S.EnterResponse, headers: ['X-Idempotency-Cached'] } },
      errors: [
        ['TOKEN_NOT_FOUND', 'malformed or unknown waiting token'],
        ['UNAUTHORIZED', 'the event has access `user` and no bearer JWT was sent (reason missing)'],
        ['NOT_READY', "not this user's turn yet (carries `position`): keep waiting and retry"],
        ['FORBIDDEN', 'the place belongs to another user'],
        ['TOKEN_EXPIRED', 'the place expired or was given up (`reason`)'],
        ['ALREADY_ADMITTED', 'this place was admitted and its admission has expired'],
        ['DUPLICATE_REQUEST', 'this user already holds another place in this event (carries that `waiting_token`)'],
        ['REDIS_UNAVAILABLE', 'the queue store (Redis) is unavailable or did not answer within REDIS_COMMAND_TIMEOUT_MS; retry after Retry-After'],
      ],
      handler: async ({ body, user }) => {
        const token = body.waiting_token;
        const entry = await enterLine(entryDeps, token, user?.sub ?? '', 'http');
        // a socket of this user on this instance hears it at once, not at the next tick
        d.realtime.finishLocal(token, 'entered', { type: 'admitted', reservation_token: entry.reservationToken, ttl_sec: entry.ttlSec });
        return { status: 200, body: { admission: 'granted', reservation_token: entry.reservationToken, ttl_sec: entry.ttlSec } };
      },
    }),
    route({
      method: 'DELETE',
      path: '/api/v1/queue/leave',
      operationId: 'leaveQueue',
      summary: 'Give up a place in line',
      description: 'Everyone behind moves up by one. Repeating it answers 409 NOT_IN_LINE.',
      tags: ['queue'],
      query: S.WaitingTokenQuery,
      missing: { token: 'MISSING_TOKEN' },
      responses: { 200: { description: 'Left the line.', schema: S.LeaveResponse } },
      errors: [
        ['TOKEN_NOT_FOUND', 'malformed or unknown waiting token'],
        ['NOT_IN_LINE', 'the token is no longer in line (carries its `status`)'],
        ['REDIS_UNAVAILABLE', 'the queue store (Redis) is unavailable or did not answer within REDIS_COMMAND_TIMEOUT_MS; retry after Retry-After'],
      ],
      handler: async ({ query }) => {
        const token = query.token;
        if (!tokenEvent(token)) throw new AppError('TOKEN_NOT_FOUND');
        await d.store.leave(token);
        d.realtime.finishLocal(token, 'left');
        op('leave', 'ok');
        return { status: 200, body: { status: 'left' } };
      },
    }),
  ];
}
