import { timingSafeEqual, createHash } from 'node:crypto';
import type { UWS } from '../uws.js';
import { loadUws } from '../uws.js';
import type { QueueStore, EventStats } from '../queue/store.js';
import type { EventRegistry } from '../queue/registry.js';
import type { Realtime } from '../realtime/realtime.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';

// The operator page's live feed: /api/v1/admin/ws?token=<ADMIN_TOKEN> on the
// same uWebSockets.js app. While at least one operator is connected, every
// second each event's stats (one pipelined read per event, events are few)
// are pushed to every operator socket. Nothing runs when nobody watches.
//
// Each second's batch starts with an `events` message naming every event
// that exists (only when every read answered), so a page drops the card of an
// event deleted elsewhere; each `event` message carries the schedule, the
// draw's commitment and the end with the figures, so the page follows
// scheduled -> prequeue -> open and ended without asking, and the admission
// controls (adaptive outflow with the controller's last change, the active
// session cap with the sessions holding a slot now, the join challenge), so
// a change made elsewhere, or by the controller, shows at once.

interface AdminSocket {
  id: number;
  ok: boolean;
}

export function summary(s: EventStats, accuracyP50: number | null, activeSessions: number | null = null): Record<string, unknown> {
  const a = s.config.adaptive;
  return {
    type: 'event',
    event_id: s.config.id,
    state: s.config.state,
    in_line: s.inLine,
    waiting: s.waiting,
    ready: s.ready,
    rate: { configured: s.config.rate, weighted: s.eta.rw ?? s.config.rate, '1m': s.eta.r1 ?? null },
    eta_confidence: s.eta.conf ?? 0,
    eta_accuracy_p50_sec: accuracyP50,
    access: s.config.access,
    burst: s.config.burst,
    ready_window_sec: s.config.readyWindowSec,
    prequeue_opens_at: iso(s.config.prequeueOpensMs),
    starts_at: iso(s.config.startsMs),
    ends_at: iso(s.config.endsMs),
    draw_commitment: s.config.drawCommitment || null,
    drawn_at: iso(s.config.drawnMs),
    end_reason: s.config.endReason || null,
    ended_at: iso(s.config.endedMs),
    ended_total: s.counters.ended ?? 0,
    adaptive: a ? { floor: a.floor, ceiling: a.ceiling, p95_ms: a.p95Ms, error_share: a.errorShare } : null,
    adaptive_reason: s.config.adaptiveReason || null,
    adaptive_at: iso(s.config.adaptiveMs),
    max_active_sessions: s.config.maxActiveSessions || null,
    // only with a cap (one ZCOUNT more per event and second)
    active_sessions: activeSessions,
    challenge: s.config.challenge,
    t: Date.now(),
  };
}

const iso = (ms: number): string | null => (ms > 0 ? new Date(ms).toISOString() : null);

export function median(xs: readonly number[]): number | null {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  return Math.round(s[Math.floor(s.length / 2)]! * 10) / 10;
}

export function registerAdminFeed(app: UWS.TemplatedApp, adminToken: string | undefined, store: QueueStore, registry: EventRegistry, realtime: Realtime, log: Logger, metrics: Metrics): { stop(): void } {
  if (!adminToken) return { stop: () => undefined };
  const expected = createHash('sha256').update(adminToken).digest();
  const sockets = new Map<number, UWS.WebSocket<AdminSocket>>();
  let nextId = 1;
  let timer: NodeJS.Timeout | undefined;

  const tick = async (): Promise<void> => {
    if (sockets.size === 0) return;
    let events: string[];
    try {
      events = await registry.list();
    } catch {
      return;
    }
    const msgs: string[] = [];
    const present: string[] = [];
    let complete = events.length <= 200;
    for (const id of events.sort().slice(0, 200)) {
      try {
        const s = await store.stats(id);
        if (s) {
          present.push(id);
          const active = s.config.maxActiveSessions ? await store.activeSessions(id) : null;
          msgs.push(JSON.stringify(summary(s, median(realtime.roomFor(id)?.accuracy ?? []), active)));
        }
      } catch {
        // Redis away: the page keeps its last values (and its cards: no `events` list this second)
        complete = false;
      }
    }
    if (complete) msgs.unshift(JSON.stringify({ type: 'events', event_ids: present, t: Date.now() }));
    for (const ws of sockets.values()) {
      ws.cork(() => {
        for (const m of msgs) ws.send(m, false);
      });
    }
  };

  app.ws<AdminSocket>('/api/v1/admin/ws', {
    compression: loadUws().DISABLED,
    maxPayloadLength: 1024,
    idleTimeout: 32,
    maxBackpressure: 1024 * 1024,
    upgrade: (res, req, context) => {
      const token = new URLSearchParams(req.getQuery() ?? '').get('token') ?? '';
      const ok = timingSafeEqual(createHash('sha256').update(token).digest(), expected);
      res.upgrade<AdminSocket>({ id: nextId++, ok }, req.getHeader('sec-websocket-key'), req.getHeader('sec-websocket-protocol'), req.getHeader('sec-websocket-extensions'), context);
    },
    open: (ws) => {
      const d = ws.getUserData();
      if (!d.ok) {
        ws.end(4401, 'invalid admin token');
        return;
      }
      sockets.set(d.id, ws);
      metrics.wsOpened.inc();
      log.info({ operators: sockets.size }, 'admin feed: operator connected');
      timer ??= setInterval(() => void tick(), 1000);
      void tick();
    },
    close: (ws) => {
      sockets.delete(ws.getUserData().id);
      if (sockets.size === 0 && timer) {
        clearInterval(timer);
        timer = undefined;
      }
    },
  });
  return {
    stop: () => {
      clearInterval(timer);
      for (const ws of [...sockets.values()]) ws.end(4100, 'draining: reconnect');
      sockets.clear();
    },
  };
}
