import { AppError } from '../errors.js';
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
});

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
      description: `Any subset of the fields; a new event takes the configured defaults for the others (state \`open\`). A rate change restarts the ETA history. ${ONLY_WITH_TOKEN}`,
      tags: ['admin'],
      auth: 'admin',
      params: S.EventIdParams,
      body: S.EventPatch,
      responses: { 200: { description: 'Updated.', schema: S.Event }, 201: { description: 'Created.', schema: S.Event } },
      errors: [...BAD_ID, ['INVALID_REQUEST', 'an unknown field, a field out of range (see EventPatch), or a target_url that is not an http(s) URL on one of PAGE_TARGET_ORIGINS'], ...REDIS],
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
        const patch: EventPatch = {
          ...(body.rate !== undefined ? { rate: body.rate } : {}),
          ...(body.burst !== undefined ? { burst: body.burst } : {}),
          ...(body.ready_window_sec !== undefined ? { readyWindowSec: body.ready_window_sec } : {}),
          ...(body.reconnect_grace_sec !== undefined ? { reconnectGraceSec: body.reconnect_grace_sec } : {}),
          ...(body.state !== undefined ? { state: body.state } : {}),
          ...(body.access !== undefined ? { access: body.access } : {}),
          ...(body.target_url !== undefined ? { targetUrl: body.target_url } : {}),
          ...(body.message !== undefined ? { notice: body.message as Notice | null } : {}),
        };
        const existing = await d.store.getEvent(id);
        const full: EventPatch = existing
          ? patch
          : {
              rate: patch.rate ?? q.defaultRate,
              burst: patch.burst ?? q.defaultBurst,
              readyWindowSec: patch.readyWindowSec ?? q.readyWindowSec,
              reconnectGraceSec: patch.reconnectGraceSec ?? q.reconnectGraceSec,
              state: patch.state ?? 'open',
              access: patch.access ?? q.defaultAccess,
              ...(patch.targetUrl !== undefined ? { targetUrl: patch.targetUrl } : {}),
              ...(patch.notice ? { notice: patch.notice } : {}),
            };
        await d.registry.register(id);
        const r = await d.store.putEvent(id, full);
        // the message's text is the operator's to publish; the log says only that it changed
        const { notice, ...logged } = patch;
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
          },
        };
      },
    }),
  ];
}
