import type { UWS } from '../uws.js';
import { loadUws } from '../uws.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import { AppError } from '../errors.js';
import { enterLine, type EntryDeps } from '../queue/entry.js';
import type { QueueStore } from '../queue/store.js';
import type { EventRoom, LocalUser, SocketSink } from './event-room.js';
import type { Realtime } from './realtime.js';
import type { UserAuth } from '../auth/user-auth.js';
import { TokenBuckets } from '../net/rate-limit.js';
import { clientAddress } from '../net/client-address.js';
import { Close, PROTOCOL_VERSION, chooseSubprotocol, type CloseCode, type Format, type ServerMessage } from '../protocol/wire.js';
import { encode, parseClientMessage } from './codec.js';

// GET /api/v1/queue/ws?token=<waiting_token> on the same uWebSockets.js app.
// The upgrade is answered synchronously, inside uWS's own handler: upgrading
// later through res.cork() can tear the new socket down right after `open`
// (uNetworking/uWebSockets#1928, fixed upstream by #1929, not in this build;
// seen here as 1006 closes under load). The attach (one Redis read) runs once
// the socket is open; the welcome follows it. Timers and tick handlers hold
// socket ids, never socket handles: a closed socket is simply not found.

export interface SocketData {
  id: number;
  ip: string;
  /** per-socket message bucket */
  msgTokens: number;
  msgAt: number;
  violations: number;
  token: string;
  eventId: string;
  format: Format;
  closeWith: [CloseCode, string] | undefined;
  room: EventRoom | undefined;
  user: LocalUser | undefined;
  /** frames that arrived before the attach finished, answered after `welcome` (welcome is always the first message) */
  early: [ArrayBuffer, boolean][] | undefined;
}

type WS = UWS.WebSocket<SocketData>;

export interface WsOptions {
  maxPerIp: number;
  connectRps: number;
  connectBurst: number;
  messageRps: number;
  messageBurst: number;
  maxClients: number;
  maxConnections: number;
  /** a socket with more than this queued is skipped for position updates until it drains */
  softBackpressureBytes: number;
  maxBackpressureBytes: number;
  maxMessageBytes: number;
  idleTimeoutSec: number;
}

/** The socket registry the rooms send through. */
export class Sockets implements SocketSink {
  readonly open = new Map<number, WS>();
  private nextId = 1;
  constructor(
    private readonly o: WsOptions,
    private readonly metrics: Metrics,
  ) {}

  newId(): number {
    return this.nextId++;
  }

  send(id: number, msg: ServerMessage, essential: boolean): boolean {
    const ws = this.open.get(id);
    if (!ws) return false;
    if (!essential && ws.getBufferedAmount() > this.o.softBackpressureBytes) {
      this.metrics.wsDropped.inc({ action: 'skipped' });
      return false;
    }
    const data = encode(msg, ws.getUserData().format);
    let r = 1;
    ws.cork(() => {
      r = ws.send(data, typeof data !== 'string');
    });
    if (r === 2) {
      // past maxBackpressure: drop the consumer (it reconnects) instead of buffering without bound
      this.metrics.wsDropped.inc({ action: 'closed' });
      this.close(id, Close.SLOW_CONSUMER, 'slow consumer');
      return false;
    }
    this.metrics.wsMessagesOut.inc({ type: msg.type });
    return true;
  }

  close(id: number, code: CloseCode, reason: string): void {
    const ws = this.open.get(id);
    if (!ws) return;
    this.open.delete(id);
    ws.cork(() => ws.end(code, reason));
  }

  closeAll(code: CloseCode, reason: string): number {
    const ids = [...this.open.keys()];
    for (const id of ids) this.close(id, code, reason);
    return ids.length;
  }
}

export interface WsRouteDeps extends EntryDeps {
  store: QueueStore;
  realtime: Realtime;
  sockets: Sockets;
  log: Logger;
  metrics: Metrics;
  isDraining: () => boolean;
  auth: UserAuth;
  trustProxy: boolean;
}

const closeFor = (state: string): [CloseCode, string] =>
  state === 'admitted' ? [Close.ADMITTED, 'admitted'] : state === 'left' ? [Close.LEFT, 'left'] : state === 'unknown' ? [Close.UNKNOWN_TOKEN, 'unknown token'] : [Close.EXPIRED, 'expired'];

export function registerWsRoute(app: UWS.TemplatedApp, d: WsRouteDeps, o: WsOptions): void {
  const { sockets, realtime, metrics, log } = d;
  const connectLimiter = new TokenBuckets(o.connectRps, o.connectBurst, o.maxClients);
  const perIp = new Map<string, number>();

  /** The attach finished with the socket still open: from here on ticks reach it. */
  function welcome(id: number, data: SocketData, room: EventRoom, user: LocalUser): void {
    if (room.users.get(user.token) !== user) {
      // finished meanwhile: the reconnect will get the final answer
      sockets.close(id, Close.STORE_UNAVAILABLE, 'state changed: reconnect');
      return;
    }
    data.eventId = room.eventId;
    data.room = room;
    data.user = user;
    realtime.socketOpened(room, user, id);
    const e = room.estimateFor(user);
    const { type: _position, ...fields } = room.positionMessage(user, e);
    const hello: ServerMessage = {
      ...fields,
      type: 'welcome',
      v: PROTOCOL_VERSION,
      event_id: room.eventId,
      ...(user.state === 'ready' ? { ready_deadline: new Date(user.readyDeadlineMs).toISOString() } : {}),
      // the operator's message when this instance knows it (else a notice follows the room's next tick)
      ...(room.noticeMs >= 0 ? { message: room.notice } : {}),
    };
    sockets.send(id, hello, true);
    user.pushedPos = e.position;
    user.pushedEta = e.etaSec;
    user.pushedAt = Date.now();
    if (user.state === 'ready') sockets.send(id, room.readyMessage(user), true);
    if (room.eventState !== 'open') sockets.send(id, { type: 'paused', event_state: room.eventState }, true);
    const early = data.early ?? [];
    data.early = undefined;
    for (const [frame, isBinary] of early) if (sockets.open.has(id)) onMessage(data, frame, isBinary);
  }

  function onMessage(data: SocketData, message: ArrayBuffer, isBinary: boolean): void {
    // per-socket message rate: over the limit a message is refused; a flood closes the socket
    const now = performance.now();
    data.msgTokens = Math.min(o.messageBurst, data.msgTokens + ((now - data.msgAt) / 1000) * o.messageRps);
    data.msgAt = now;
    if (data.msgTokens < 1) {
      metrics.rateLimitDropped.inc({ scope: 'ws_message' });
      if (++data.violations > o.messageBurst) sockets.close(data.id, Close.FLOOD, 'message flood');
      else sockets.send(data.id, { type: 'error', code: 'RATE_LIMITED', message: 'too many messages; slow down' }, true);
      return;
    }
    data.msgTokens -= 1;
    const m = parseClientMessage(message, isBinary);
    if (!m) {
      metrics.wsMessagesIn.inc({ type: 'invalid' });
      sockets.send(data.id, { type: 'error', code: 'BAD_MESSAGE', message: 'expected {"type":"enter"|"leave"|"ping"}' }, true);
      sockets.close(data.id, Close.BAD_MESSAGE, 'bad message');
      return;
    }
    metrics.wsMessagesIn.inc({ type: m.type });
    const id = data.id;
    const { room, user } = data;
    if (m.type === 'ping') {
      sockets.send(id, { type: 'pong' }, true);
      return;
    }
    if (!room || !user) return;
    if (m.type === 'enter') {
      user.entering = true;
      // a JWT, when sent, in the frame (browsers cannot set headers on a WebSocket); whether the event needs one is its access's call (lua/enter-8.lua)
      const who = m.access_token ? d.auth.identify(`Bearer ${m.access_token}`) : Promise.resolve(undefined);
      who.then((id) => enterLine(d, user.token, id?.sub ?? '', 'ws')).then(
        (entry) => {
          const admitted: ServerMessage = { type: 'admitted', reservation_token: entry.reservationToken, ttl_sec: entry.ttlSec };
          if (room.users.get(user.token) === user) room.finish(user, 'entered', admitted);
          else {
            sockets.send(id, admitted, true);
            sockets.close(id, Close.ADMITTED, 'admitted');
          }
        },
        (err: unknown) => {
          user.entering = false;
          if (err instanceof AppError && err.code === 'TOKEN_EXPIRED') {
            if (room.users.get(user.token) === user) room.finish(user, String(err.details?.reason ?? 'ready_timeout'));
            return;
          }
          const e = err instanceof AppError ? err : new AppError('INTERNAL', 'internal error');
          sockets.send(id, { type: 'error', code: e.code, message: e.message, ...(typeof e.details?.position === 'number' ? { position: e.details.position } : {}) }, true);
        },
      );
      return;
    }
    // leave
    d.store.leave(user.token).then(
      () => {
        if (room.users.get(user.token) === user) room.finish(user, 'left');
      },
      (err: unknown) => {
        const e = err instanceof AppError ? err : new AppError('INTERNAL', 'internal error');
        sockets.send(id, { type: 'error', code: e.code, message: e.message }, true);
      },
    );
  }

  app.ws<SocketData>('/api/v1/queue/ws', {
    compression: loadUws().DISABLED,
    maxPayloadLength: o.maxMessageBytes,
    maxBackpressure: o.maxBackpressureBytes,
    closeOnBackpressureLimit: 0,
    idleTimeout: o.idleTimeoutSec,
    sendPingsAutomatically: true,

    upgrade: (res, req, context) => {
      const query = req.getQuery() ?? '';
      const key = req.getHeader('sec-websocket-key');
      const offered = req.getHeader('sec-websocket-protocol');
      const extensions = req.getHeader('sec-websocket-extensions');
      const forwarded = req.getHeader('x-forwarded-for');
      let remote = '';
      try {
        remote = Buffer.from(res.getRemoteAddressAsText()).toString();
      } catch {
        remote = '';
      }
      const ip = clientAddress(remote, forwarded, d.trustProxy);
      const token = new URLSearchParams(query).get('token') ?? '';
      const { protocol, format } = chooseSubprotocol(offered);
      const data: SocketData = {
        id: sockets.newId(),
        ip,
        msgTokens: o.messageBurst,
        msgAt: performance.now(),
        violations: 0,
        token,
        eventId: '',
        format,
        closeWith: undefined,
        room: undefined,
        user: undefined,
        early: [],
      };
      const upgrade = (): void => res.upgrade(data, key, protocol, extensions, context);
      if (d.isDraining()) {
        data.closeWith = [Close.DRAINING, 'draining: reconnect'];
        return upgrade();
      }
      if (!realtime.storeAvailable) {
        // this instance cannot record the socket's claim: send the client elsewhere at once
        data.closeWith = [Close.STORE_UNAVAILABLE, 'store unavailable: reconnect later'];
        return upgrade();
      }
      if (sockets.open.size >= o.maxConnections) {
        data.closeWith = [Close.OVERLOADED, 'instance full: reconnect later'];
        return upgrade();
      }
      if (!connectLimiter.take(ip).ok) {
        metrics.rateLimitDropped.inc({ scope: 'ws_connect' });
        data.closeWith = [Close.RATE_LIMITED, 'too many connection attempts: reconnect later'];
        return upgrade();
      }
      if ((perIp.get(ip) ?? 0) >= o.maxPerIp) {
        metrics.rateLimitDropped.inc({ scope: 'ws_per_ip' });
        data.closeWith = [Close.RATE_LIMITED, 'too many connections from this address'];
        return upgrade();
      }
      upgrade();
    },

    open: (ws) => {
      const data = ws.getUserData();
      sockets.open.set(data.id, ws);
      perIp.set(data.ip, (perIp.get(data.ip) ?? 0) + 1);
      metrics.wsOpened.inc();
      metrics.wsConnections.inc();
      if (data.closeWith) {
        sockets.close(data.id, data.closeWith[0], data.closeWith[1]);
        return;
      }
      const id = data.id;
      realtime.attach(data.token, true).then(
        (r) => {
          if (!sockets.open.has(id)) {
            // the client went away during the read: it counts as a socket that closed now
            if (r.ok) realtime.closedWhileAttaching(r.room, r.user);
            return;
          }
          if (!r.ok) {
            sockets.close(id, ...closeFor(r.state));
            return;
          }
          welcome(id, data, r.room, r.user);
        },
        (err: unknown) => {
          // Redis down, slow, or the subscription failed: nothing is lost, come back shortly
          if (!(err instanceof AppError)) log.warn({ err: (err as Error).message }, 'websocket attach failed');
          sockets.close(id, Close.STORE_UNAVAILABLE, 'store unavailable: reconnect later');
        },
      );
    },

    message: (ws, message, isBinary) => {
      const data = ws.getUserData();
      if (data.early) {
        // still attaching: keep the frame (uWS reuses its memory) for after welcome; a client that floods meanwhile is closed
        if (data.early.length >= o.messageBurst) sockets.close(data.id, Close.FLOOD, 'message flood');
        else data.early.push([message.slice(0), isBinary]);
        return;
      }
      onMessage(data, message, isBinary);
    },

    drain: (ws) => {
      // a skipped position update is resent once the socket has room again
      const { room, user } = ws.getUserData();
      if (room && user) room.pushPosition(user, true);
    },

    close: (ws, code) => {
      const data = ws.getUserData();
      sockets.open.delete(data.id);
      const n = (perIp.get(data.ip) ?? 1) - 1;
      if (n <= 0) perIp.delete(data.ip);
      else perIp.set(data.ip, n);
      metrics.wsConnections.dec();
      metrics.wsClosed.inc({ code: String(code) });
      if (data.user) realtime.socketClosed(data.eventId, data.token, data.id);
    },
  });
}
