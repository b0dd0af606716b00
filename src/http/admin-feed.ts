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

interface AdminSocket {
  id: number;
  ok: boolean;
}

export function summary(s: EventStats, accuracyP50: number | null): Record<string, unknown> {
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
    t: Date.now(),
  };
}

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
    for (const id of events.slice(0, 200)) {
      try {
        const s = await store.stats(id);
        if (s) msgs.push(JSON.stringify(summary(s, median(realtime.roomFor(id)?.accuracy ?? []))));
      } catch {
        // Redis away: the page keeps its last values
      }
    }
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
