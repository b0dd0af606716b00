import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import { AppError } from '../errors.js';
import { enterLine, type EntryDeps } from '../queue/entry.js';
import type { QueueStore } from '../queue/store.js';
import type { UserAuth } from '../auth/user-auth.js';
import { Close, type ClientMessage, type CloseCode, type Format, type ServerMessage } from '../protocol/wire.js';
import { OUTCOMES } from '../../machines/user-lifecycle.js';
import type { EventRoom, LocalUser } from './event-room.js';
import type { Realtime } from './realtime.js';
import type { Sockets, WS, WsOptions } from './sockets.js';
import { parseClientMessage } from './codec.js';

// One WebSocket, from upgrade to close (as Centrifugo's Client): what it is
// attached to, its message budget, the frames that came before its welcome,
// and what it answers. uWS hands this object back on every event of the
// socket (ws.getUserData()); it holds ids, never the socket handle, once open.

/** What every connection shares: the instance's dependencies, limits and the per-address count. */
export interface ConnectionHub extends EntryDeps {
  store: QueueStore;
  realtime: Realtime;
  sockets: Sockets;
  log: Logger;
  metrics: Metrics;
  auth: UserAuth;
  options: WsOptions;
  /** open sockets per client address (WS_MAX_PER_IP) */
  perIp: Map<string, number>;
}

export class Connection {
  private room: EventRoom | undefined;
  private user: LocalUser | undefined;
  /** per-socket message bucket */
  private msgTokens: number;
  private msgAt = performance.now();
  private violations = 0;
  /** frames that arrived before the attach finished, answered after `welcome` (welcome is always the first message) */
  private early: [ArrayBuffer, boolean][] | undefined = [];

  constructor(
    private readonly hub: ConnectionHub,
    readonly id: number,
    readonly ip: string,
    /** the waiting token from the upgrade, until the attach starts (then the user's own copy is the one kept: a socket holds about 90 bytes less) */
    private token: string | undefined,
    readonly format: Format,
    /** set at upgrade when the socket cannot stay: it is closed with this as soon as it opens */
    private readonly closeWith: [CloseCode, string] | undefined,
  ) {
    this.msgTokens = hub.options.messageBurst;
  }

  /** uWS `open`: count it, then attach the token (one Redis read) unless it was refused at upgrade. */
  opened(ws: WS): void {
    const { sockets, metrics, realtime, log } = this.hub;
    sockets.open.set(this.id, ws);
    this.hub.perIp.set(this.ip, (this.hub.perIp.get(this.ip) ?? 0) + 1);
    metrics.wsOpened.inc();
    metrics.wsConnections.inc();
    if (this.closeWith) {
      sockets.close(this.id, ...this.closeWith);
      return;
    }
    const id = this.id;
    const token = this.token ?? '';
    this.token = undefined;
    realtime.attach(token, true).then(
      (r) => {
        if (!sockets.open.has(id)) {
          // the client went away during the read: it counts as a socket that closed now
          if (r.ok) realtime.closedWhileAttaching(r.room, r.user);
          return;
        }
        if (!r.ok) {
          // not in line: its outcome's close, no message before it (the status tells more)
          sockets.close(id, OUTCOMES[r.state].close, OUTCOMES[r.state].closeReason);
          return;
        }
        this.welcome(r.room, r.user);
      },
      (err: unknown) => {
        // Redis down, slow, or the subscription failed: nothing is lost, come back shortly
        if (!(err instanceof AppError)) log.warn({ err }, 'websocket attach failed');
        sockets.close(id, Close.STORE_UNAVAILABLE, 'store unavailable: reconnect later');
      },
    );
  }

  /** The attach finished with the socket still open: from here on ticks reach it. */
  private welcome(room: EventRoom, user: LocalUser): void {
    const { sockets, realtime } = this.hub;
    if (room.users.get(user.token) !== user) {
      // finished meanwhile: the reconnect will get the final answer
      sockets.close(this.id, Close.STORE_UNAVAILABLE, 'state changed: reconnect');
      return;
    }
    this.room = room;
    this.user = user;
    realtime.socketOpened(room, user, this.id);
    for (const m of room.welcomeMessages(user)) sockets.send(this.id, m, true);
    const early = this.early ?? [];
    this.early = undefined;
    for (const [frame, isBinary] of early) if (sockets.open.has(this.id)) this.handle(frame, isBinary);
  }

  /** uWS `message`. */
  received(message: ArrayBuffer, isBinary: boolean): void {
    if (this.early) {
      // still attaching: keep the frame (uWS reuses its memory) for after welcome; a client that floods meanwhile is closed
      if (this.early.length >= this.hub.options.messageBurst) this.hub.sockets.close(this.id, Close.FLOOD, 'message flood');
      else this.early.push([message.slice(0), isBinary]);
      return;
    }
    this.handle(message, isBinary);
  }

  /** uWS `drain`: a skipped position update is resent once the socket has room again. */
  drained(): void {
    if (this.room && this.user) this.room.pushPosition(this.user, true);
  }

  /** uWS `close`. */
  closed(code: number): void {
    const { sockets, metrics, realtime, perIp } = this.hub;
    sockets.open.delete(this.id);
    const n = (perIp.get(this.ip) ?? 1) - 1;
    if (n <= 0) perIp.delete(this.ip);
    else perIp.set(this.ip, n);
    metrics.wsConnections.dec();
    metrics.wsClosed.inc({ code: String(code) });
    if (this.room && this.user) realtime.socketClosed(this.room.eventId, this.user.token, this.id);
  }

  private send(m: ServerMessage): void {
    this.hub.sockets.send(this.id, m, true);
  }

  private handle(message: ArrayBuffer, isBinary: boolean): void {
    const { metrics, sockets, options: o } = this.hub;
    // per-socket message rate: over the limit a message is refused; a flood closes the socket
    const now = performance.now();
    this.msgTokens = Math.min(o.messageBurst, this.msgTokens + ((now - this.msgAt) / 1000) * o.messageRps);
    this.msgAt = now;
    if (this.msgTokens < 1) {
      metrics.rateLimitDropped.inc({ scope: 'ws_message' });
      if (++this.violations > o.messageBurst) sockets.close(this.id, Close.FLOOD, 'message flood');
      else this.send({ type: 'error', code: 'RATE_LIMITED', message: 'too many messages; slow down' });
      return;
    }
    this.msgTokens -= 1;
    const m = parseClientMessage(message, isBinary);
    if (!m) {
      metrics.wsMessagesIn.inc({ type: 'invalid' });
      this.send({ type: 'error', code: 'BAD_MESSAGE', message: 'expected {"type":"enter"|"leave"|"ping"}' });
      sockets.close(this.id, Close.BAD_MESSAGE, 'bad message');
      return;
    }
    metrics.wsMessagesIn.inc({ type: m.type });
    if (m.type === 'ping') {
      this.send({ type: 'pong' });
      return;
    }
    const { room, user } = this;
    if (!room || !user) return;
    if (m.type === 'enter') this.enter(room, user, m);
    else this.leave(room, user);
  }

  private enter(room: EventRoom, user: LocalUser, m: Extract<ClientMessage, { type: 'enter' }>): void {
    const { sockets, auth } = this.hub;
    const id = this.id;
    room.enterStarted(user);
    // a JWT, when sent, in the frame (browsers cannot set headers on a WebSocket); whether the event needs one is its access's call (lua/enter-8.lua)
    const who = m.access_token ? auth.identify(`Bearer ${m.access_token}`) : Promise.resolve(undefined);
    who.then((identity) => enterLine(this.hub, user.token, identity?.sub ?? '', 'ws')).then(
      (entry) => {
        const admitted: ServerMessage = { type: 'admitted', reservation_token: entry.reservationToken, ttl_sec: entry.ttlSec };
        if (room.users.get(user.token) === user) room.finish(user, 'entered', admitted);
        else {
          sockets.send(id, admitted, true);
          sockets.close(id, OUTCOMES.admitted.close, OUTCOMES.admitted.closeReason);
        }
      },
      (err: unknown) => {
        room.enterFailed(user);
        if (err instanceof AppError && err.code === 'TOKEN_EXPIRED') {
          if (room.users.get(user.token) === user) room.finish(user, String(err.details?.reason ?? 'ready_timeout'));
          return;
        }
        const e = err instanceof AppError ? err : new AppError('INTERNAL', 'internal error');
        sockets.send(id, { type: 'error', code: e.code, message: e.message, ...(typeof e.details?.position === 'number' ? { position: e.details.position } : {}) }, true);
      },
    );
  }

  private leave(room: EventRoom, user: LocalUser): void {
    const { sockets, store } = this.hub;
    const id = this.id;
    store.leave(user.token).then(
      () => {
        if (room.users.get(user.token) === user) room.finish(user, 'left');
      },
      (err: unknown) => {
        const e = err instanceof AppError ? err : new AppError('INTERNAL', 'internal error');
        sockets.send(id, { type: 'error', code: e.code, message: e.message }, true);
      },
    );
  }
}
