import { AppError } from '../errors.js';
import { EVENT_ID_RE } from '../queue/keys.js';
import { newWaitingToken, tokenEvent } from '../queue/token.js';
import { estimate } from '../queue/eta.js';
import type { QueueStore, StatusSnapshot } from '../queue/store.js';
import type { EventRegistry } from '../queue/registry.js';
import type { AdmissionTokenIssuer } from '../auth/admission-token.js';
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
}

function requireToken(req: HttpRequest): string {
  const token = req.query('token');
  if (!token) throw new AppError('MISSING_TOKEN', 'query parameter token is required');
  if (!tokenEvent(token)) throw new AppError('TOKEN_NOT_FOUND', 'unknown waiting token');
  return token;
}

export function statusBody(s: StatusSnapshot, tickMs: number, pollTimeoutMs: number): Record<string, unknown> {
  const waitingSec = Math.max(0, Math.floor((s.nowMs - s.joinedMs) / 1000));
  const base = { event_id: s.eventId, event_state: s.eventState, status: s.state, waiting_time: waitingSec };
  if (s.state === 'waiting' || s.state === 'ready') {
    const e = estimate(s.rank, s.readyCount, s.state === 'waiting', s.eta, tickMs, pollTimeoutMs);
    const ready = s.state === 'ready';
    return {
      ...base,
      position: e.position,
      people_ahead: e.peopleAhead,
      eta_sec: e.etaSec,
      eta_low: e.etaLowSec,
      eta_high: e.etaHighSec,
      confidence: e.confidence,
      ready_for_entry: ready,
      ...(ready ? { ready_deadline: new Date(s.readyDeadlineMs).toISOString(), ready_expires_in_sec: Math.max(0, Math.floor((s.readyDeadlineMs - s.nowMs) / 1000)) } : {}),
      poll_after_ms: e.pollAfterMs,
    };
  }
  // admitted: the user is through; position and ETA are final.
  return { ...base, position: 0, people_ahead: 0, eta_sec: 0, eta_low: 0, eta_high: 0, confidence: 1, ready_for_entry: false, poll_after_ms: 0 };
}

export function registerQueueRoutes(http: HttpServer, d: QueueRouteDeps): void {
  const q = d.config.queue;
  const livenessMs = q.pollTimeoutSec * 1000;
  const op = (operation: string, status: string): void => d.metrics.queueOps.inc({ operation, status });

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
      const userId = body.user_id ?? '';
      if (typeof userId !== 'string' || (userId !== '' && !USER_ID_RE.test(userId))) {
        throw new AppError('INVALID_REQUEST', 'user_id must be 1-128 printable ASCII characters');
      }
      const idem = req.headers['idempotency-key'] ?? '';
      if (idem && !IDEMPOTENCY_KEY_RE.test(idem)) throw new AppError('INVALID_REQUEST', 'Idempotency-Key must be 8-128 characters of A-Z a-z 0-9 _ -');
      if (q.autoCreateEvents) await d.registry.register(eventId);
      try {
        const r = await d.store.join(eventId, newWaitingToken(eventId), userId, idem, {
          autoCreate: q.autoCreateEvents,
          rate: q.defaultRate,
          burst: q.defaultBurst,
          readyWindowSec: q.readyWindowSec,
          reconnectGraceSec: q.reconnectGraceSec,
          livenessMs,
          idempotencyTtlSec: q.idempotencyTtlSec,
        });
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

  http.route('GET', '/api/v1/queue/status', async (req) => {
    const token = requireToken(req);
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
    op('status', 'ok');
    return { status: 200, body: statusBody(s, q.tickMs, livenessMs) };
  });

  http.route(
    'POST',
    '/api/v1/queue/enter',
    async (req) => {
      const body = jsonBody(req);
      const token = body.waiting_token;
      if (typeof token !== 'string' || token === '') throw new AppError('MISSING_TOKEN', 'waiting_token is required');
      try {
        const r = await d.store.enter(token);
        const reservationToken = await d.admission.sign({ eventId: r.eventId, waitingToken: token, userId: '' });
        op('enter', 'ok');
        d.metrics.queueWait.observe(Math.max(0, (r.admittedMs - r.joinedMs) / 1000));
        d.log.info({ event_id: r.eventId, waited_ms: r.admittedMs - r.joinedMs }, 'admitted');
        return { status: 200, body: { admission: 'granted', reservation_token: reservationToken, ttl_sec: d.admission.ttlSec } };
      } catch (err) {
        op('enter', err instanceof AppError ? err.code.toLowerCase() : 'error');
        throw err;
      }
    },
    { body: true },
  );

  http.route('DELETE', '/api/v1/queue/leave', async (req) => {
    const token = requireToken(req);
    await d.store.leave(token);
    op('leave', 'ok');
    return { status: 200, body: { status: 'left' } };
  });
}
