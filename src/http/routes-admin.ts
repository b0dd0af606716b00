import { timingSafeEqual, createHash } from 'node:crypto';
import { AppError } from '../errors.js';
import { EVENT_ID_RE } from '../queue/keys.js';
import type { EventPatch, EventState, QueueStore } from '../queue/store.js';
import type { EventRegistry } from '../queue/registry.js';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import { jsonBody, type HttpRequest, type HttpServer } from './server.js';

// Operator API. Registered only when ADMIN_TOKEN is configured; otherwise
// every /api/v1/admin path is a plain 404 (the original shipped an
// unauthenticated admin flush endpoint; this one cannot exist by accident).

export interface AdminRouteDeps {
  store: QueueStore;
  registry: EventRegistry;
  config: Config;
  log: Logger;
}

const digest = (s: string): Buffer => createHash('sha256').update(s).digest();

function authorize(req: HttpRequest, expected: Buffer): void {
  const h = req.headers.authorization ?? '';
  const m = /^Bearer ([\x21-\x7e]{1,512})$/.exec(h);
  const headers = { 'WWW-Authenticate': 'Bearer realm="admin"' };
  if (!m) throw new AppError('UNAUTHORIZED', 'admin bearer token required', undefined, headers);
  // Compare digests so the comparison takes the same time whatever the length.
  if (!timingSafeEqual(digest(m[1]!), expected)) throw new AppError('UNAUTHORIZED', 'invalid admin token', undefined, headers);
}

function eventIdParam(req: HttpRequest): string {
  const id = req.params[0] ?? '';
  if (!EVENT_ID_RE.test(id)) throw new AppError('INVALID_REQUEST', 'event id must be 1-64 characters of A-Z a-z 0-9 _ -');
  return id;
}

const STATES: readonly EventState[] = ['open', 'paused', 'closed'];
const FIELDS = new Set(['rate', 'burst', 'ready_window_sec', 'reconnect_grace_sec', 'state']);

function parsePatch(body: Record<string, unknown>): EventPatch {
  for (const k of Object.keys(body)) if (!FIELDS.has(k)) throw new AppError('INVALID_REQUEST', `unknown field ${k}`);
  const p: EventPatch = {};
  const numField = (name: string, min: number, max: number, integer: boolean): number | undefined => {
    const v = body[name];
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max || (integer && !Number.isInteger(v))) {
      throw new AppError('INVALID_REQUEST', `${name} must be ${integer ? 'an integer' : 'a number'} between ${min} and ${max}`);
    }
    return v;
  };
  const rate = numField('rate', 0.001, 100000, false);
  const burst = numField('burst', 1, 1000000, true);
  const rw = numField('ready_window_sec', 5, 86400, true);
  const grace = numField('reconnect_grace_sec', 1, 3600, true);
  if (rate !== undefined) p.rate = rate;
  if (burst !== undefined) p.burst = burst;
  if (rw !== undefined) p.readyWindowSec = rw;
  if (grace !== undefined) p.reconnectGraceSec = grace;
  if (body.state !== undefined) {
    if (typeof body.state !== 'string' || !STATES.includes(body.state as EventState)) {
      throw new AppError('INVALID_REQUEST', 'state must be one of open, paused, closed');
    }
    p.state = body.state as EventState;
  }
  return p;
}

const eventJson = (c: { id: string; rate: number; burst: number; readyWindowSec: number; reconnectGraceSec: number; state: string; createdMs: number; updatedMs: number }) => ({
  event_id: c.id,
  rate: c.rate,
  burst: c.burst,
  ready_window_sec: c.readyWindowSec,
  reconnect_grace_sec: c.reconnectGraceSec,
  state: c.state,
  created_at: new Date(c.createdMs).toISOString(),
  updated_at: new Date(c.updatedMs).toISOString(),
});

export function registerAdminRoutes(http: HttpServer, d: AdminRouteDeps): void {
  if (!d.config.adminToken) return;
  const expected = digest(d.config.adminToken);
  const q = d.config.queue;

  http.route(
    'PUT',
    '/api/v1/admin/events/:id',
    async (req) => {
      authorize(req, expected);
      const id = eventIdParam(req);
      const patch = parsePatch(jsonBody(req));
      const existing = await d.store.getEvent(id);
      const full: EventPatch = existing
        ? patch
        : {
            rate: patch.rate ?? q.defaultRate,
            burst: patch.burst ?? q.defaultBurst,
            readyWindowSec: patch.readyWindowSec ?? q.readyWindowSec,
            reconnectGraceSec: patch.reconnectGraceSec ?? q.reconnectGraceSec,
            state: patch.state ?? 'open',
          };
      await d.registry.register(id);
      const r = await d.store.putEvent(id, full);
      d.log.info({ event_id: id, created: r.created, change: patch }, 'admin: event configured');
      return { status: r.created ? 201 : 200, body: eventJson(r) };
    },
    { body: true },
  );

  http.route('GET', '/api/v1/admin/events', async (req) => {
    authorize(req, expected);
    const ids = (await d.registry.list()).sort().slice(0, 1000);
    const events = [];
    for (const id of ids) {
      const s = await d.store.stats(id);
      if (s) events.push({ event_id: id, state: s.config.state, rate: s.config.rate, burst: s.config.burst, in_line: s.inLine, waiting: s.waiting, ready: s.ready });
    }
    return { status: 200, body: { events } };
  });

  http.route('GET', '/api/v1/admin/events/:id', async (req) => {
    authorize(req, expected);
    const id = eventIdParam(req);
    const c = await d.store.getEvent(id);
    if (!c) throw new AppError('EVENT_NOT_FOUND', 'no such event');
    return { status: 200, body: eventJson(c) };
  });

  http.route('GET', '/api/v1/admin/events/:id/stats', async (req) => {
    authorize(req, expected);
    const id = eventIdParam(req);
    const s = await d.store.stats(id);
    if (!s) throw new AppError('EVENT_NOT_FOUND', 'no such event');
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
  });
}
