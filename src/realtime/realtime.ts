import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { Broker, TickMessage } from '../queue/broker.js';
import type { QueueStore, StatusSnapshot } from '../queue/store.js';
import { tokenEvent } from '../queue/token.js';
import { AppError } from '../errors.js';
import { EventRoom, type LocalUser, type SocketSink } from './event-room.js';
import type { Estimate } from '../queue/eta.js';
import type { ServerMessage } from './protocol.js';

// This instance's view of the users attached to it, by event. Rooms are
// created on first attach (subscribing to the event's tick channel before the
// first read, so no tick can slip between), fed by tick messages, and dropped
// when empty. Liveness of attached users is refreshed in one script call per
// event per interval.

export interface RealtimeOptions {
  tickMs: number;
  pollTimeoutMs: number;
  /** default reconnect grace until the event's own is known */
  reconnectGraceMs: number;
  nearFront: number;
}

export type AttachResult =
  | { ok: true; room: EventRoom; user: LocalUser }
  | { ok: false; state: 'unknown' | 'admitted' | 'expired' | 'left'; reason: string };

export class Realtime {
  private readonly rooms = new Map<string, EventRoom>();
  private readonly pendingRooms = new Map<string, Promise<EventRoom>>();
  private readonly attaching = new Map<string, Promise<AttachResult>>();
  /** liveness writes waiting for the next flush: 'set' for sockets that just closed, 'extend' for reconnects */
  private readonly pending = { set: new Map<string, [string, number][]>(), extend: new Map<string, [string, number][]>() };
  private refreshTimer: NodeJS.Timeout | undefined;
  private closeFlush: NodeJS.Immediate | undefined;
  private readonly refreshMs: number;
  private resyncing = new Set<string>();

  constructor(
    private readonly store: QueueStore,
    private readonly broker: Broker,
    readonly sink: SocketSink,
    private readonly o: RealtimeOptions,
    private readonly log: Logger,
    private readonly metrics: Metrics,
  ) {
    // Refresh well inside the grace so a user behind an instance that dies
    // between two refreshes still has at least the full grace to reconnect.
    this.refreshMs = Math.max(250, Math.min(5000, Math.floor(o.reconnectGraceMs / 3), Math.floor(o.pollTimeoutMs / 3)));
  }

  start(): void {
    this.refreshTimer = setInterval(() => void this.refresh(), this.refreshMs);
  }

  roomFor(eventId: string): EventRoom | undefined {
    return this.rooms.get(eventId);
  }

  private room(eventId: string): Promise<EventRoom> {
    const existing = this.rooms.get(eventId);
    if (existing) return Promise.resolve(existing);
    let p = this.pendingRooms.get(eventId);
    if (!p) {
      p = (async () => {
        const room = new EventRoom({
          eventId,
          tickMs: this.o.tickMs,
          pollTimeoutMs: this.o.pollTimeoutMs,
          sink: this.sink,
          log: this.log,
          metrics: this.metrics,
          nearFront: this.o.nearFront,
        });
        room.reconnectGraceMs = this.o.reconnectGraceMs;
        room.onResyncNeeded = () => void this.resync(room);
        await this.broker.subscribe(this.store.keys(eventId).channel, (m: TickMessage) => room.applyTick(m));
        this.rooms.set(eventId, room);
        return room;
      })().finally(() => this.pendingRooms.delete(eventId));
      this.pendingRooms.set(eventId, p);
    }
    return p;
  }

  /**
   * Attaches a user (by socket or poll) to this instance: one status read,
   * then tick messages keep them current. Concurrent attaches of one token
   * share the read.
   */
  attach(token: string, livenessMs: number): Promise<AttachResult> {
    const eventId = tokenEvent(token);
    if (!eventId) return Promise.resolve({ ok: false, state: 'unknown', reason: 'unknown token' });
    const known = this.rooms.get(eventId)?.users.get(token);
    if (known) return Promise.resolve({ ok: true, room: this.rooms.get(eventId)!, user: known });
    let p = this.attaching.get(token);
    if (!p) {
      p = (async (): Promise<AttachResult> => {
        const room = await this.room(eventId);
        const s = await this.store.status(token, livenessMs);
        if (!s) return { ok: false, state: 'unknown', reason: 'unknown token' };
        if (s.state !== 'waiting' && s.state !== 'ready') return { ok: false, state: s.state, reason: s.reason };
        const user = room.add(s, [], (u) => this.detached(room, u));
        return { ok: true, room, user };
      })().finally(() => this.attaching.delete(token));
      this.attaching.set(token, p);
    }
    return p;
  }

  /**
   * After a status read from Redis: adopt it if the event's channel was
   * already subscribed when the read started (rooms are never created by the
   * read itself), else attach with a fresh read.
   */
  async adoptOrAttach(s: StatusSnapshot, livenessMs: number, roomBefore: EventRoom | undefined): Promise<void> {
    if (roomBefore && this.rooms.get(s.eventId) === roomBefore) {
      const u = roomBefore.add(s, [], (x) => this.detached(roomBefore, x));
      u.lastPollAt = Date.now();
      return;
    }
    const r = await this.attach(s.token, livenessMs);
    if (r.ok) r.user.lastPollAt = Date.now();
  }

  /** The user entered or left through this instance: tell their sockets now. */
  finishLocal(token: string, reason: string, msg?: ServerMessage): void {
    const eventId = tokenEvent(token);
    const room = eventId ? this.rooms.get(eventId) : undefined;
    const u = room?.users.get(token);
    if (room && u) room.finish(u, reason, msg);
  }

  /** The reconnect grace ran out with no socket back; a user who polls meanwhile stays attached as a poller. */
  private detached(room: EventRoom, u: LocalUser): void {
    if (u.sockets.length === 0 && !(u.lastPollAt > u.closedAt && Date.now() - u.lastPollAt < this.o.pollTimeoutMs)) room.remove(u);
  }

  socketOpened(room: EventRoom, u: LocalUser, socketId: number): void {
    u.sockets.push(socketId);
    u.actor.send({ type: 'SOCKET_OPENED' });
    if (u.closedAt > 0) {
      // back within the grace on this instance: its deadline was set to close + grace; extend it now
      u.closedAt = 0;
      this.queueTouch('extend', room.eventId, u.token, room.reconnectGraceMs + this.refreshMs + 1000);
    }
  }

  private queueTouch(mode: 'set' | 'extend', eventId: string, token: string, windowMs: number): void {
    const byEvent = this.pending[mode];
    let list = byEvent.get(eventId);
    if (!list) byEvent.set(eventId, (list = []));
    list.push([token, windowMs]);
    this.closeFlush ??= setImmediate(() => void this.flushPending());
  }

  /** A socket that closed before its attach finished: the same as a socket closing now, unless another one holds the user. */
  closedWhileAttaching(room: EventRoom, u: LocalUser): void {
    if (u.sockets.length === 0 && room.users.get(u.token) === u) this.lastSocketClosed(room, u);
  }

  /**
   * The place is kept for exactly the grace from now: set the deadline now
   * (batched with other closes of this moment), instead of letting the last
   * periodic refresh (grace + refresh interval) decide.
   */
  private lastSocketClosed(room: EventRoom, u: LocalUser): void {
    u.closedAt = Date.now();
    this.queueTouch('set', room.eventId, u.token, room.reconnectGraceMs);
  }

  socketClosed(eventId: string, token: string, socketId: number): void {
    const room = this.rooms.get(eventId);
    const u = room?.users.get(token);
    if (!room || !u) return;
    const i = u.sockets.indexOf(socketId);
    if (i < 0) return;
    u.sockets.splice(i, 1);
    u.actor.send({ type: 'SOCKET_CLOSED' });
    if (u.sockets.length === 0) this.lastSocketClosed(room, u);
  }

  private async flushPending(): Promise<void> {
    this.closeFlush = undefined;
    const work: Promise<unknown>[] = [];
    for (const mode of ['set', 'extend'] as const) {
      for (const [eventId, windows] of this.pending[mode]) {
        work.push(this.store.touch(eventId, windows, mode).catch((err: Error) => this.log.warn({ event_id: eventId, err: err.message }, 'liveness update failed')));
      }
      this.pending[mode].clear();
    }
    await Promise.all(work);
  }

  /** A status poll answered from memory, or undefined when this instance does not hold the user. */
  statusFromMemory(token: string): { room: EventRoom; user: LocalUser; estimate: Estimate } | undefined {
    const eventId = tokenEvent(token);
    if (!eventId) return undefined;
    const room = this.rooms.get(eventId);
    const user = room?.users.get(token);
    if (!room || !user || this.resyncing.has(eventId)) return undefined;
    // Stale view (no tick message for a while: ticker failover, Redis trouble): ask Redis instead.
    if (room.lastTickAt === 0 || Date.now() - room.lastTickAt > Math.max(2000, this.o.tickMs * 8)) return undefined;
    user.lastPollAt = Date.now();
    return { room, user, estimate: room.estimateFor(user) };
  }

  /** Periodic: liveness of everyone attached here in one call per event; let go of idle pollers and empty rooms. */
  private async refresh(): Promise<void> {
    const now = Date.now();
    const work: Promise<unknown>[] = [];
    for (const room of this.rooms.values()) {
      const windows: [string, number][] = [];
      for (const u of room.users.values()) {
        if (u.sockets.length > 0) {
          windows.push([u.token, room.reconnectGraceMs + this.refreshMs + 1000]);
        } else if (u.lastPollAt > u.closedAt) {
          // polling (also after its socket closed: a poll is a heartbeat too)
          const idle = now - u.lastPollAt;
          if (idle >= this.o.pollTimeoutMs) {
            if (u.closedAt === 0 || now - u.closedAt >= room.reconnectGraceMs) room.remove(u);
          } else windows.push([u.token, this.o.pollTimeoutMs - idle]);
        }
      }
      for (let i = 0; i < windows.length; i += 5000) {
        const chunk = windows.slice(i, i + 5000);
        work.push(this.store.touch(room.eventId, chunk, 'extend').catch((err: Error) => this.log.warn({ event_id: room.eventId, err: err.message }, 'liveness refresh failed')));
      }
      if (room.users.size === 0 && now - room.emptySince > 30_000 && !this.attachingFor(room.eventId)) {
        this.rooms.delete(room.eventId);
        work.push(this.broker.unsubscribe(this.store.keys(room.eventId).channel).catch(() => undefined));
      }
    }
    await Promise.all(work);
  }

  private attachingFor(eventId: string): boolean {
    for (const t of this.attaching.keys()) if (t.startsWith(`${eventId}.`)) return true;
    return false;
  }

  /** After a lost tick message: exact ranks for everyone attached in this event, one call per 1000 users. */
  private async resync(room: EventRoom): Promise<void> {
    if (this.resyncing.has(room.eventId)) return;
    this.resyncing.add(room.eventId);
    try {
      const tokens = [...room.users.keys()];
      for (let i = 0; i < tokens.length; i += 1000) {
        const chunk = tokens.slice(i, i + 1000);
        const r = await this.store.ranks(room.eventId, chunk);
        for (const u of room.applyRanks(chunk, r.xseq, r.ranks)) {
          const s = await this.store.status(u.token, 0);
          room.finish(u, s?.reason || (s?.state === 'admitted' ? 'entered' : 'liveness'));
        }
      }
    } catch (err) {
      this.log.warn({ event_id: room.eventId, err: (err as Error).message }, 'resync failed');
    } finally {
      this.resyncing.delete(room.eventId);
    }
  }

  /**
   * Redis went away or came back: attached users keep their sockets and are
   * told the line is paused (nothing can move without the store), then
   * resumed with a fresh position.
   */
  storeAvailability(up: boolean): void {
    for (const room of this.rooms.values()) {
      const note: ServerMessage = up ? { type: 'resumed', event_state: room.eventState } : { type: 'paused', event_state: 'unavailable' };
      for (const u of room.users.values()) {
        for (const id of u.sockets) this.sink.send(id, note, true);
        if (up) room.pushPosition(u, true);
      }
    }
  }

  /** For /readyz and metrics. */
  counts(): { rooms: number; users: number } {
    let users = 0;
    for (const r of this.rooms.values()) users += r.users.size;
    return { rooms: this.rooms.size, users };
  }

  async stop(): Promise<void> {
    clearInterval(this.refreshTimer);
    if (this.closeFlush) {
      clearImmediate(this.closeFlush);
      await this.flushPending();
    }
    for (const room of this.rooms.values()) for (const u of [...room.users.values()]) room.remove(u);
  }
}

export function attachError(r: Extract<AttachResult, { ok: false }>): AppError {
  if (r.state === 'unknown') return new AppError('TOKEN_NOT_FOUND', 'unknown waiting token');
  return new AppError('TOKEN_EXPIRED', r.state === 'left' ? 'this place was given up (left the line)' : `this place in line has expired (${r.reason})`, {
    reason: r.state === 'left' ? 'left' : r.reason,
  });
}

export type { StatusSnapshot };
