import { randomBytes } from 'node:crypto';
import { AppError } from '../errors.js';
import { commitmentOf } from '../queue/draw.js';
import type { EventConfig, EventPatch, Notice, QueueStore } from '../queue/store.js';
import type { EventRegistry } from '../queue/registry.js';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import { route, type AnyRoute, type ErrorList } from './route.js';
import * as S from './schemas.js';

// Operator API. Its routes declare auth 'admin': the edge registers them only
// when ADMIN_TOKEN is configured, otherwise every /api/v1/admin path is a
// plain 404 (the original shipped an unauthenticated admin flush endpoint;
// this one cannot exist by accident).

export interface AdminRouteDeps {
  store: QueueStore;
  registry: EventRegistry;
  config: Config;
  log: Logger;
}

const eventJson = (c: EventConfig) => ({
  event_id: c.id,
  rate: c.rate,
  burst: c.burst,
  ready_window_sec: c.readyWindowSec,
  reconnect_grace_sec: c.reconnectGraceSec,
  state: c.state,
  access: c.access,
  target_url: c.targetUrl,
  message: c.notice,
  created_at: new Date(c.createdMs).toISOString(),
  updated_at: new Date(c.updatedMs).toISOString(),
  prequeue_opens_at: iso(c.prequeueOpensMs),
  starts_at: iso(c.startsMs),
  ends_at: iso(c.endsMs),
  draw_commitment: c.drawCommitment || null,
  drawn_at: iso(c.drawnMs),
  end_reason: c.endReason || null,
  ended_at: iso(c.endedMs),
  adaptive: c.adaptive ? { floor: c.adaptive.floor, ceiling: c.adaptive.ceiling, p95_ms: c.adaptive.p95Ms, error_share: c.adaptive.errorShare } : null,
  adaptive_reason: c.adaptiveReason || null,
  adaptive_at: iso(c.adaptiveMs),
  max_active_sessions: c.maxActiveSessions || null,
  challenge: c.challenge,
});

const iso = (ms: number): string | null => (ms > 0 ? new Date(ms).toISOString() : null);

/**
 * The schedule in a PUT, checked for order against itself and the event's
 * current schedule (Redis checks the state: lua/event-put-3.lua). Times in the
 * past are allowed: the next tick acts on them at once.
 */
function schedulePatch(body: { prequeue_opens_at?: string; starts_at?: string; ends_at?: unknown }, existing: EventConfig | null): Pick<EventPatch, 'prequeueOpensMs' | 'startsMs' | 'endsMs'> {
  const ms = (v: string, field: string): number => {
    // the schema's date-time format (ajv-formats) has required RFC 3339 with an offset already
    const t = Date.parse(v);
    if (!Number.isFinite(t)) throw new AppError('INVALID_REQUEST', `${field} is not an RFC 3339 time with an offset (e.g. 2026-12-24T10:00:00+09:00 or ...Z)`, { reason: field });
    return t;
  };
  const out: Pick<EventPatch, 'prequeueOpensMs' | 'startsMs' | 'endsMs'> = {};
  if (body.starts_at !== undefined) out.startsMs = ms(body.starts_at, 'starts_at');
  if (body.prequeue_opens_at !== undefined) out.prequeueOpensMs = ms(body.prequeue_opens_at, 'prequeue_opens_at');
  // validated as a date-time string or null (S.EventPatch)
  if (body.ends_at !== undefined) out.endsMs = body.ends_at === null ? null : ms(String(body.ends_at), 'ends_at');
  const starts = out.startsMs ?? (existing?.startsMs || undefined);
  if (out.prequeueOpensMs !== undefined && starts === undefined) throw new AppError('INVALID_REQUEST', 'prequeue_opens_at needs starts_at', { reason: 'prequeue_opens_at' });
  // no pre-queue time given with a first start: the pre-queue opens at the start (no early entry)
  if (out.startsMs !== undefined && out.prequeueOpensMs === undefined && !existing?.prequeueOpensMs) out.prequeueOpensMs = out.startsMs;
  const opens = out.prequeueOpensMs ?? (existing?.prequeueOpensMs || undefined);
  if (opens !== undefined && starts !== undefined && opens > starts) throw new AppError('INVALID_REQUEST', 'prequeue_opens_at must not be after starts_at', { reason: 'prequeue_opens_at' });
  const ends = out.endsMs === null ? undefined : (out.endsMs ?? (existing?.endsMs || undefined));
  if (ends !== undefined && starts !== undefined && ends <= starts) throw new AppError('INVALID_REQUEST', 'ends_at must be after starts_at', { reason: 'ends_at' });
  return out;
}

const REDIS: ErrorList = [['REDIS_UNAVAILABLE', 'the queue store (Redis) is unavailable or did not answer within REDIS_COMMAND_TIMEOUT_MS; retry after Retry-After']];
const BAD_ID: ErrorList = [['INVALID_REQUEST', 'the event id in the path is not 1-64 characters of A-Z a-z 0-9 _ -']];
const ONLY_WITH_TOKEN = 'Exists only when ADMIN_TOKEN is set.';

/** The operator API: every route declares auth 'admin', so none exists without ADMIN_TOKEN (a plain 404). */
export function adminRoutes(d: AdminRouteDeps): AnyRoute[] {
  const q = d.config.queue;
  return [
    route({
      method: 'PUT',
      path: '/api/v1/admin/events/:id',
      operationId: 'putEvent',
      summary: 'Create or update an event',
      description: `Any subset of the fields; a new event takes the configured defaults for the others (state \`open\`, or \`scheduled\` with a \`starts_at\`: then the draw's seed is committed to, GET /api/v1/events/{id}/draw). A rate change restarts the ETA history. ${ONLY_WITH_TOKEN}`,
      tags: ['admin'],
      auth: 'admin',
      params: S.EventIdParams,
      body: S.EventPatch,
      responses: { 200: { description: 'Updated.', schema: S.Event }, 201: { description: 'Created.', schema: S.Event } },
      errors: [
        ...BAD_ID,
        [
          'INVALID_REQUEST',
          'an unknown field, a field out of range (see EventPatch), a target_url that is not an http(s) URL on one of PAGE_TARGET_ORIGINS, or a schedule out of order (prequeue_opens_at <= starts_at < ends_at; `reason` names the field)',
        ],
        ['EVENT_STATE_CONFLICT', "the change is not allowed in the event's state (carries `state`): the state of a scheduled, pre-queue or ended event, or the schedule of an event that started"],
        ...REDIS,
      ],
      handler: async ({ params, body }) => {
        const id = params.id;
        if (body.target_url) {
          // no open redirect: the page sends admitted users only to origins the operator listed
          let origin = '';
          try {
            const u = new URL(body.target_url);
            origin = /^https?:$/.test(u.protocol) ? u.origin : '';
          } catch {
            origin = '';
          }
          if (!origin || !d.config.pageTargetOrigins.includes(origin)) {
            throw new AppError('INVALID_REQUEST', `target_url must be an http(s) URL on one of PAGE_TARGET_ORIGINS (${d.config.pageTargetOrigins.join(', ') || 'none configured'})`, { reason: 'target_origin' });
          }
        }
        const existing = await d.store.getEvent(id);
        const existingRate = existing?.rate;
        const patch: EventPatch = {
          ...(body.rate !== undefined ? { rate: body.rate } : {}),
          ...(body.burst !== undefined ? { burst: body.burst } : {}),
          ...(body.ready_window_sec !== undefined ? { readyWindowSec: body.ready_window_sec } : {}),
          ...(body.reconnect_grace_sec !== undefined ? { reconnectGraceSec: body.reconnect_grace_sec } : {}),
          ...(body.state !== undefined ? { state: body.state } : {}),
          ...(body.access !== undefined ? { access: body.access } : {}),
          ...(body.target_url !== undefined ? { targetUrl: body.target_url } : {}),
          ...(body.message !== undefined ? { notice: body.message as Notice | null } : {}),
          ...(body.max_active_sessions !== undefined ? { maxActiveSessions: body.max_active_sessions as number | null } : {}),
        };
        if (body.adaptive !== undefined) {
          const a = body.adaptive as { floor: number; ceiling: number; p95_ms: number; error_share: number } | null;
          if (a && a.floor > a.ceiling) throw new AppError('INVALID_REQUEST', 'adaptive.floor must not be above adaptive.ceiling', { reason: 'adaptive' });
          patch.adaptive = a && { floor: a.floor, ceiling: a.ceiling, p95Ms: a.p95_ms, errorShare: a.error_share };
          // the controller starts at the operator's rate, inside the bounds
          if (a) patch.rate = Math.min(a.ceiling, Math.max(a.floor, patch.rate ?? existingRate ?? a.ceiling));
        } else if (existing?.adaptive && patch.rate !== undefined) {
          // the controller owns the rate inside its bounds: a rate set by hand starts it there
          patch.rate = Math.min(existing.adaptive.ceiling, Math.max(existing.adaptive.floor, patch.rate));
        }
        if (body.challenge !== undefined) {
          const c = body.challenge as { kind: 'pow'; difficulty?: number } | { kind: 'external' } | null;
          if (c?.kind === 'external' && !d.config.challenge.verifyUrl) throw new AppError('INVALID_REQUEST', 'challenge kind external needs CHALLENGE_VERIFY_URL configured', { reason: 'challenge' });
          patch.challenge = c === null ? null : c.kind === 'pow' ? { kind: 'pow', difficulty: c.difficulty ?? d.config.challenge.defaultDifficulty } : { kind: 'external' };
        }
        const schedule = schedulePatch(body, existing);
        Object.assign(patch, schedule);
        if (schedule.startsMs !== undefined && !existing?.drawCommitment) {
          // the draw's seed, committed to now (kept only if the event has none: the commitment never changes)
          const seed = randomBytes(32).toString('hex');
          patch.draw = { seed, commitment: commitmentOf(seed) };
        }
        const full: EventPatch = existing
          ? patch
          : {
              ...schedule,
              ...(patch.draw ? { draw: patch.draw } : {}),
              rate: patch.rate ?? q.defaultRate,
              burst: patch.burst ?? q.defaultBurst,
              readyWindowSec: patch.readyWindowSec ?? q.readyWindowSec,
              reconnectGraceSec: patch.reconnectGraceSec ?? q.reconnectGraceSec,
              // a scheduled event's state is the schedule's (lua/event-put-3.lua)
              ...(schedule.startsMs === undefined ? { state: patch.state ?? 'open' } : patch.state ? { state: patch.state } : {}),
              access: patch.access ?? q.defaultAccess,
              ...(patch.targetUrl !== undefined ? { targetUrl: patch.targetUrl } : {}),
              ...(patch.notice ? { notice: patch.notice } : {}),
              ...(patch.adaptive ? { adaptive: patch.adaptive } : {}),
              ...(patch.maxActiveSessions ? { maxActiveSessions: patch.maxActiveSessions } : {}),
              ...(patch.challenge ? { challenge: patch.challenge } : {}),
            };
        await d.registry.registerNow(id);
        const r = await d.store.putEvent(id, full);
        // the message's text is the operator's to publish, the seed secret until the draw: the log says neither
        const { notice, draw: _draw, ...logged } = patch;
        d.log.info({ event_id: id, created: r.created, change: notice === undefined ? logged : { ...logged, message: notice ? Object.keys(notice) : null } }, 'admin: event configured');
        return { status: r.created ? 201 : 200, body: eventJson(r) };
      },
    }),
    route({
      method: 'GET',
      path: '/api/v1/admin/events',
      operationId: 'listEvents',
      summary: 'List events with their line sizes',
      description: `At most 1000 events, sorted by id. ${ONLY_WITH_TOKEN}`,
      tags: ['admin'],
      auth: 'admin',
      responses: { 200: { description: 'The events.', schema: S.EventList } },
      errors: REDIS,
      handler: async () => {
        const ids = (await d.registry.list()).sort().slice(0, 1000);
        const events = [];
        for (const id of ids) {
          const s = await d.store.stats(id);
          if (s) events.push({ event_id: id, state: s.config.state, rate: s.config.rate, burst: s.config.burst, in_line: s.inLine, waiting: s.waiting, ready: s.ready });
        }
        return { status: 200, body: { events } };
      },
    }),
    route({
      method: 'GET',
      path: '/api/v1/admin/events/:id',
      operationId: 'getEvent',
      summary: "An event's configuration",
      description: ONLY_WITH_TOKEN,
      tags: ['admin'],
      auth: 'admin',
      params: S.EventIdParams,
      responses: { 200: { description: 'The event.', schema: S.Event } },
      errors: [...BAD_ID, ['EVENT_NOT_FOUND', 'no such event'], ...REDIS],
      handler: async ({ params }) => {
        const c = await d.store.getEvent(params.id);
        if (!c) throw new AppError('EVENT_NOT_FOUND');
        return { status: 200, body: eventJson(c) };
      },
    }),
    route({
      method: 'GET',
      path: '/api/v1/admin/events/:id/stats',
      operationId: 'getEventStats',
      summary: "An event's line, totals, bucket, measured rates and ticker",
      description: ONLY_WITH_TOKEN,
      tags: ['admin'],
      auth: 'admin',
      params: S.EventIdParams,
      responses: { 200: { description: 'The statistics.', schema: S.EventStats } },
      errors: [...BAD_ID, ['EVENT_NOT_FOUND', 'no such event'], ...REDIS],
      handler: async ({ params }) => {
        const s = await d.store.stats(params.id);
        if (!s) throw new AppError('EVENT_NOT_FOUND');
        const c = s.counters;
        return {
          status: 200,
          body: {
            ...eventJson(s.config),
            in_line: s.inLine,
            waiting: s.waiting,
            ready: s.ready,
            joined_total: c.joined ?? 0,
            promoted_total: c.promoted ?? 0,
            admitted_total: c.entered ?? 0,
            left_total: c.left ?? 0,
            expired_total: (c.ready_timeout ?? 0) + (c.liveness ?? 0),
            expired_ready_window_total: c.ready_timeout ?? 0,
            expired_liveness_total: c.liveness ?? 0,
            bucket_tokens: s.bucketTokens,
            admission_rate: { configured: s.config.rate, weighted: s.eta.rw ?? s.config.rate, '1m': s.eta.r1 ?? null, '5m': s.eta.r5 ?? null, '15m': s.eta.r15 ?? null },
            promote_share: s.eta.share ?? 1,
            eta_confidence: s.eta.conf ?? 0,
            ticker_instance: s.tickerHolder,
            ended_total: c.ended ?? 0,
          },
        };
      },
    }),
    route({
      method: 'GET',
      path: '/api/v1/admin/events/:id/adaptive',
      operationId: 'getAdaptiveLog',
      summary: "The adaptive controller's recent decisions: rate, reason, and what it measured",
      description: `For the operator page's chart. ${ONLY_WITH_TOKEN}`,
      tags: ['admin'],
      auth: 'admin',
      params: S.EventIdParams,
      responses: { 200: { description: 'The decisions.', schema: S.AdaptiveLog } },
      errors: [...BAD_ID, ['EVENT_NOT_FOUND', 'no such event'], ...REDIS],
      handler: async ({ params }) => {
        const c = await d.store.getEvent(params.id);
        if (!c) throw new AppError('EVENT_NOT_FOUND');
        const rows = await d.store.adaptiveLog(params.id);
        return {
          status: 200,
          body: {
            event_id: params.id,
            adaptive: eventJson(c).adaptive,
            decisions: rows.map((r) => ({ at: new Date(r.atMs).toISOString(), rate: r.rate, reason: r.reason, p95_ms: r.p95Ms, error_share: r.errorShare, calls: r.calls })),
          },
        };
      },
    }),
    route({
      method: 'POST',
      path: '/api/v1/admin/events/:id/end',
      operationId: 'endEvent',
      summary: 'End an event now: everyone waiting is told why and let go',
      description:
        "Nobody joins any more (410 EVENT_ENDED); every waiting and pre-queue user is told at once over their socket (an `ended` message, close 4020) or at their next poll (410 EVENT_ENDED with the reason and the message); " +
        `ready users keep their window. The message, when given, becomes the event's message. Ending again answers the first end. ${ONLY_WITH_TOKEN}`,
      tags: ['admin'],
      auth: 'admin',
      params: S.EventIdParams,
      body: S.EndEventRequest,
      responses: { 200: { description: 'Ended (now or before).', schema: S.Event } },
      errors: [...BAD_ID, ['INVALID_REQUEST', 'a reason that is not 1-32 characters of a-z 0-9 _, or a bad message'], ['EVENT_NOT_FOUND', 'no such event'], ...REDIS],
      handler: async ({ params, body }) => {
        const r = await d.store.endEvent(params.id, body.reason, body.message as Notice | undefined);
        if (!r.already) d.log.info({ event_id: params.id, reason: r.reason, message: body.message ? Object.keys(body.message) : null }, 'admin: event ended');
        const c = await d.store.getEvent(params.id);
        if (!c) throw new AppError('EVENT_NOT_FOUND');
        return { status: 200, body: eventJson(c) };
      },
    }),
    route({
      method: 'DELETE',
      path: '/api/v1/admin/events/:id',
      operationId: 'deleteEvent',
      summary: 'Delete an ended event and every key it has',
      description: `Only once ended, and (unless ?force=true) once no ready user holds a window any more: their admission would go with the keys. ${ONLY_WITH_TOKEN}`,
      tags: ['admin'],
      auth: 'admin',
      params: S.EventIdParams,
      query: S.DeleteEventQuery,
      responses: { 200: { description: 'Deleted.', schema: S.DeleteEventResponse } },
      errors: [...BAD_ID, ['EVENT_NOT_FOUND', 'no such event'], ['EVENT_STATE_CONFLICT', 'the event has not ended, or ready users still hold a window (carries `state`; add ?force=true to delete anyway)'], ...REDIS],
      handler: async ({ params, query }) => {
        const s = await d.store.stats(params.id);
        if (!s) throw new AppError('EVENT_NOT_FOUND');
        if (s.config.state !== 'ended') throw new AppError('EVENT_STATE_CONFLICT', 'end the event first (POST .../end)', { state: s.config.state, reason: 'not_ended' });
        if (s.ready > 0 && query.force !== 'true') {
          throw new AppError('EVENT_STATE_CONFLICT', `${s.ready} ready users still hold a window; wait for it to pass or add ?force=true`, { state: s.config.state, reason: 'ready_users', ready: s.ready });
        }
        // out of the registry first: no ticker recreates anything while the keys go
        await d.registry.remove(params.id);
        const n = await d.store.deleteEventKeys(params.id);
        d.log.info({ event_id: params.id, keys: n, ready_dropped: s.ready }, 'admin: event deleted');
        return { status: 200, body: { event_id: params.id, deleted_keys: n } };
      },
    }),
  ];
}
