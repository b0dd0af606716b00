import { createHash } from 'node:crypto';
import { AppError } from '../errors.js';
import { newWaitingToken, tokenEvent } from '../queue/token.js';
import { estimate, prequeueEstimate } from '../queue/eta.js';
import { receiptOf } from '../queue/draw.js';
import type { JoinDefaults, Notice, QueueStore, StatusSnapshot } from '../queue/store.js';
import type { EventRegistry } from '../queue/registry.js';
import type { AdmissionTokenIssuer } from '../auth/admission-token.js';
import type { Realtime } from '../realtime/realtime.js';
import { enterLine } from '../queue/entry.js';
import type { Estimate } from '../queue/eta.js';
import type { EventRoom, LocalUser } from '../realtime/event-room.js';
import type { UserAuth } from '../auth/user-auth.js';
import type { ChallengeIssuer, ProofResult } from '../auth/challenge.js';
import type { ChallengePolicy } from '../queue/store.js';
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
  challenges: ChallengeIssuer;
}

/**
 * Each event's join challenge, as this instance last read it (at most a
 * second old): a join of an event without one costs a map lookup, not a read.
 */
class ChallengePolicies {
  private readonly cache = new Map<string, { policy: ChallengePolicy | null; at: number }>();
  private readonly reads = new Map<string, Promise<ChallengePolicy | null>>();
  constructor(private readonly store: QueueStore) {}

  get(eventId: string): ChallengePolicy | null | Promise<ChallengePolicy | null> {
    const c = this.cache.get(eventId);
    if (c && Date.now() - c.at < 1000) return c.policy;
    let p = this.reads.get(eventId);
    if (!p) {
      p = this.store
        .getEvent(eventId)
        .then((e) => {
          const policy = e?.challenge ?? null;
          if (this.cache.size > 10_000) this.cache.clear();
          this.cache.set(eventId, { policy, at: Date.now() });
          return policy;
        })
        .finally(() => this.reads.delete(eventId));
      this.reads.set(eventId, p);
    }
    return p;
  }
}

type QueueStatus = Static<typeof S.QueueStatus>;

const isoOrNull = (ms: number): string | null => (ms > 0 ? new Date(ms).toISOString() : null);

/**
 * The status body of a user in line (waiting or ready), from Redis or from
 * this instance's memory; serialised by the route's compiled serialiser
 * (fast-json-stringify from S.QueueStatus).
 */
/** `message`: the operator's message as this instance knows it (undefined: it does not know yet, the field is left out) */
function place(
  eventId: string,
  eventState: QueueStatus['event_state'],
  status: 'prequeue' | 'waiting' | 'ready',
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

/** In the pre-queue: the place body plus when the draw happens and the entry receipt. */
function prequeuePlace(token: string, eventId: string, eventState: QueueStatus['event_state'], waitingTime: number, startsMs: number, nowMs: number, pollTimeoutMs: number, message: Notice | null | undefined): QueueStatus {
  return {
    ...place(eventId, eventState, 'prequeue', waitingTime, prequeueEstimate(startsMs, nowMs, pollTimeoutMs), 0, nowMs, message),
    ...(startsMs > 0 ? { starts_at: new Date(startsMs).toISOString() } : {}),
    receipt: receiptOf(token),
  };
}

export function statusBody(s: StatusSnapshot, tickMs: number, pollTimeoutMs: number, message?: Notice | null): QueueStatus {
  const waitingTime = Math.max(0, Math.floor((s.nowMs - s.joinedMs) / 1000));
  if (s.state === 'prequeue') return prequeuePlace(s.token, s.eventId, s.eventState, waitingTime, s.startsMs, s.nowMs, pollTimeoutMs, message);
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
function memoryBody(room: EventRoom, u: LocalUser, e: Estimate, pollTimeoutMs: number): QueueStatus {
  const now = room.redisNow();
  if (u.state === 'prequeue') {
    return prequeuePlace(u.token, room.eventId, room.eventState, Math.max(0, Math.floor((now - u.joinedMs) / 1000)), room.startsMs, now, pollTimeoutMs, room.noticeMs >= 0 ? room.notice : undefined);
  }
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
    proofTtlMs: d.config.challenge.ttlSec * 1000,
  };
  const entryDeps = { ...d, authConfigured: d.auth.configured };
  const fromMemory = d.metrics.statusFromMemory.labels({ source: 'memory' });
  const policies = new ChallengePolicies(d.store);
  /** The join's proof for an event that asks for one: its one-time id, or the refusal. */
  const checkProof = async (eventId: string, proof: { challenge?: string; solution?: string; token?: string } | undefined, clientIp: string): Promise<string> => {
    const policy = await policies.get(eventId);
    if (!policy) return '';
    let r: ProofResult;
    if (policy.kind === 'pow') r = d.challenges.checkPow(proof ?? {}, eventId, policy.difficulty);
    else {
      try {
        r = await d.challenges.checkExternal(proof ?? {}, eventId, clientIp);
      } catch (err) {
        d.metrics.challenges.inc({ result: 'verifier_error' });
        d.log.warn({ event_id: eventId, err }, 'challenge: the external verifier did not answer');
        throw new AppError('SERVICE_UNAVAILABLE', 'the challenge verifier did not answer; retry shortly', { reason: 'verifier_unavailable' }, { 'Retry-After': '2' });
      }
    }
    if (r.ok) return r.id;
    d.metrics.challenges.inc({ result: r.reason });
    if (r.reason === 'missing') throw new AppError('CHALLENGE_REQUIRED', `this event needs a solved challenge: GET /api/v1/queue/challenge?event=${eventId}`, { kind: policy.kind });
    throw new AppError('CHALLENGE_FAILED', `the challenge proof was not accepted (${r.reason})`, { reason: r.reason });
  };
  const joinPosition = (eventId: string) => d.metrics.joinPosition.labels({ event_id: eventId });
  const statusOk = d.metrics.queueOps.labels({ operation: 'status', status: 'ok' });

  const statusFromRedis = async (token: string): Promise<Reply> => {
    d.metrics.statusFromMemory.inc({ source: 'redis' });
    const roomBefore = d.realtime.roomFor(tokenEvent(token)!);
    const s = await d.store.status(token, livenessMs);
    if (!s) {
      op('status', 'not_found');
      throw new AppError('TOKEN_NOT_FOUND');
    }
    if (s.state === 'expired' && s.reason === 'ended') {
      op('status', 'ended');
      // everyone still waiting when the event ended: why, and the operator's message
      const message = await d.store.getNotice(s.eventId);
      throw new AppError('EVENT_ENDED', 'this event has ended', { reason: s.endReason, message, ended_at: s.finishedMs > 0 ? new Date(s.finishedMs).toISOString() : null });
    }
    if (s.state === 'expired' || s.state === 'left') {
      op('status', s.state);
      throw new AppError('TOKEN_EXPIRED', s.state === 'left' ? 'this place was given up (left the line)' : `this place in line has expired (${s.reason})`, {
        reason: s.state === 'left' ? 'left' : s.reason,
      });
    }
    if (s.state === 'waiting' || s.state === 'ready' || s.state === 'prequeue') {
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
        return {
          status: 200,
          body: {
            event_id: c.id,
            state: c.state,
            access: c.access,
            target_url: c.targetUrl || d.config.pageTargetUrl,
            message: c.notice,
            // the schedule and the end only where there is one (the body is unchanged for events without)
            ...(c.startsMs ? { prequeue_opens_at: isoOrNull(c.prequeueOpensMs), starts_at: isoOrNull(c.startsMs) } : {}),
            ...(c.endsMs ? { ends_at: isoOrNull(c.endsMs) } : {}),
            ...(c.endedMs ? { end_reason: c.endReason, ended_at: isoOrNull(c.endedMs) } : {}),
            // a page can solve the challenge before it joins (else the join answers 428 first)
            ...(c.challenge ? { challenge: { kind: c.challenge.kind } } : {}),
          },
        };
      },
    }),
    route({
      method: 'GET',
      path: '/api/v1/queue/challenge',
      operationId: 'getChallenge',
      summary: "A challenge to solve before joining, for an event that asks for one",
      description:
        'Proof of work (`pow`): a puzzle bound to the event that expires after CHALLENGE_TTL_SEC; find a decimal string s such that SHA-256(challenge ":" s) starts with `difficulty` zero bits ' +
        '(the page does it in a Web Worker) and join with `proof: {challenge, solution}`. External: join with `proof: {token}` from the verifier. Each proof is accepted once.',
      tags: ['queue'],
      query: S.ChallengeQuery,
      missing: { event: 'MISSING_EVENT_ID' },
      responses: { 200: { description: 'The challenge (kind none: join without one).', schema: S.Challenge } },
      errors: [
        ['EVENT_NOT_FOUND', 'no such event'],
        ['REDIS_UNAVAILABLE', 'the queue store (Redis) is unavailable or did not answer within REDIS_COMMAND_TIMEOUT_MS; retry after Retry-After'],
      ],
      handler: async ({ query }) => {
        const e = await d.store.getEvent(query.event);
        if (!e) throw new AppError('EVENT_NOT_FOUND');
        const c = e.challenge;
        if (!c) return { status: 200, body: { event_id: e.id, kind: 'none' } };
        if (c.kind === 'external') return { status: 200, body: { event_id: e.id, kind: 'external' } };
        const issued = d.challenges.issue(e.id, c.difficulty);
        d.metrics.challenges.inc({ result: 'issued' });
        return {
          status: 200,
          body: { event_id: e.id, kind: 'pow', algorithm: 'sha256-leading-zero-bits', challenge: issued.challenge, difficulty: issued.difficulty, expires_at: new Date(issued.expiresMs).toISOString() },
        };
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
        ['EVENT_NOT_OPEN', 'the event is scheduled and its pre-queue has not opened: carries `opens_at` and `starts_at`, and Retry-After'],
        ['EVENT_NOT_FOUND', 'no such event (and auto-create is off)'],
        ['EVENT_ENDED', 'the event has ended: carries its `reason` and `ended_at`'],
        ['CHALLENGE_REQUIRED', 'the event asks for a solved challenge and the join carries no `proof` (carries `kind`)'],
        ['CHALLENGE_FAILED', 'the proof is not accepted: `reason` invalid, expired, wrong_event (solved for another event), insufficient (too easy or wrong), rejected (by the external verifier) or used (accepted once already)'],
        ['SERVICE_UNAVAILABLE', 'the external challenge verifier did not answer (reason verifier_unavailable); retry after Retry-After'],
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
          const proofId = await checkProof(eventId, body.proof, req.clientIp);
          const r = await d.store.join(eventId, newWaitingToken(eventId), userId, scopedIdem, joinDefaults, proofId);
          op('join', 'ok');
          if (proofId) d.metrics.challenges.inc({ result: 'accepted' });
          if (r.position > 0) joinPosition(eventId).observe(r.position);
          if (r.created) d.log.info({ event_id: eventId }, 'event auto-created on first join');
          if (r.receipt) return { status: 202, body: { waiting_token: r.token, position_hint: 0, status: 'prequeue', receipt: r.receipt } };
          return { status: 202, body: { waiting_token: r.token, position_hint: r.position, status: 'waiting' } };
        } catch (err) {
          op('join', err instanceof AppError ? err.code.toLowerCase() : 'error');
          // a proof the join script had seen before (the other refusals are counted where they are found)
          if (err instanceof AppError && err.code === 'CHALLENGE_FAILED' && err.details?.reason === 'used') d.metrics.challenges.inc({ result: 'used' });
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
        ['EVENT_ENDED', "the event ended while this place was waiting: carries the end's `reason`, the operator's `message` and `ended_at`"],
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
          return { status: 200, body: memoryBody(mem.room, mem.user, mem.estimate, livenessMs) };
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
