import pLimit, { type LimitFunction } from 'p-limit';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { Broker, Tick } from '../queue/broker.js';
import type { LivenessClaim, QueueStore, StatusSnapshot } from '../queue/store.js';
import { tokenEvent } from '../queue/token.js';
import { AppError } from '../errors.js';
import { storeError } from '../redis/connect.js';
import { EventRoom, type LocalUser, type SocketSink } from './event-room.js';
import type { Estimate } from '../queue/eta.js';
import { Close, type ServerMessage } from '../protocol/wire.js';

// This instance's view of the users attached to it, by event. Rooms are
// created on first attach (subscribing to the event's tick channel before the
// first read, so no tick can slip between), fed by tick messages, and dropped
// when empty.
//
// Liveness (docs/PROTOCOL.md, section 6): this instance holds a claim on the
// place of every user with a socket open here, renewed in one script call per
// event at an interval that follows the event's reconnect grace; when its
// last socket for a user closes, its claim becomes close time + grace. Polls
// it answers from memory are claimed as polls in the same batches. A place
// goes only when no claim of any holder is left, so a close here never cuts
// short what another instance's socket, or a poll, holds. An instance that
// cannot renew its claims for a third of the grace closes its sockets with
// 4103 so clients move to an instance that can, inside their grace.

export interface RealtimeOptions {
  /** this instance's id: its liveness claims are recorded under it */
  instanceId: string;
  tickMs: number;
  pollTimeoutMs: number;
  /** default reconnect grace until the event's own is known */
  reconnectGraceMs: number;
  nearFront: number;
  /** attach reads in flight at once (REALTIME_ATTACH_CONCURRENCY) */
  attachConcurrency: number;
}

export type AttachResult =
  | { ok: true; room: EventRoom; user: LocalUser }
  | { ok: false; state: 'unknown' | 'admitted' | 'expired' | 'left' | 'ended'; reason: string };

/**
 * Claims in one liveness write (one Lua call). Redis runs a script to the
 * end before anything else: 5,000 claims held it for tens of milliseconds
 * (over half a second in a reconnect storm, SLOWLOG), and the ticks,
 * publishes and attach reads of the moment waited behind them.
 */
const CLAIMS_PER_WRITE = 1000;

/** how often the liveness loop looks at the rooms; each room renews at its own interval */
const LOOP_MS = 250;

/** This instance's liveness bookkeeping for one event. */
interface RoomLiveness {
  /** local ms of the last renewal sent (the interval follows the event's grace, which may change) */
  sentAt: number;
  /** local ms a renewal that succeeded was sent: claims are good for a hold window from then */
  okAt: number;
  /** a renewal failed after the last one that succeeded */
  failing: boolean;
  inFlight: boolean;
}

export class Realtime {
  private readonly rooms = new Map<string, EventRoom>();
  private readonly pendingRooms = new Map<string, Promise<EventRoom>>();
  private readonly attaching = new Map<string, Promise<AttachResult>>();
  private readonly liveness = new Map<string, RoomLiveness>();
  /** claims waiting for the next flush (sockets that just opened or closed), by event */
  private readonly pending = new Map<string, LivenessClaim[]>();
  private loopTimer: NodeJS.Timeout | undefined;
  private claimFlush: NodeJS.Immediate | undefined;
  private resyncing = new Set<string>();
  private storeUp = true;
  /** the attach reads: a bounded number in flight, the rest in order (p-limit) */
  private readonly reads: LimitFunction;

  constructor(
    private readonly store: QueueStore,
    private readonly broker: Broker,
    readonly sink: SocketSink,
    private readonly o: RealtimeOptions,
    private readonly log: Logger,
    private readonly metrics: Metrics,
  ) {
    this.reads = pLimit(o.attachConcurrency);
  }

  start(): void {
    this.loopTimer = setInterval(() => this.loop(), LOOP_MS);
  }

  /**
   * How often this instance renews its claims in one event: well inside the
   * event's grace (and the poll timeout), so a user behind an instance that
   * dies between two renewals still has at least the full grace to reconnect.
   */
  private refreshMsFor(room: EventRoom): number {
    return Math.max(LOOP_MS, Math.min(5000, Math.floor(room.reconnectGraceMs / 3), Math.floor(this.o.pollTimeoutMs / 3)));
  }

  /** The claim of an open socket: good until the next renewal plus the full grace (and a second of slack). */
  private holdMsFor(room: EventRoom): number {
    return room.reconnectGraceMs + this.refreshMsFor(room) + 1000;
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
        room.onDetached = (u) => this.detached(room, u);
        room.onNoticeChanged = (ms) => void this.fetchNotice(room, ms);
        room.onEnded = () => void this.ended(room);
        await this.broker.subscribe(this.store.keys(eventId).channel, (t: Tick) => room.applyTick(t));
        this.rooms.set(eventId, room);
        const now = Date.now();
        this.liveness.set(eventId, { sentAt: now, okAt: now, failing: false, inFlight: false });
        return room;
      })().finally(() => this.pendingRooms.delete(eventId));
      this.pendingRooms.set(eventId, p);
    }
    return p;
  }

  /** The operator's message changed (a tick said so): one read, then every socket here is told. */
  private async fetchNotice(room: EventRoom, ms: number): Promise<void> {
    try {
      const notice = await this.store.getNotice(room.eventId);
      if (room.noticeMs !== ms) return; // a newer change is being fetched
      room.setNotice(notice);
      this.log.info({ event_id: room.eventId, languages: notice ? Object.keys(notice) : [] }, 'operator message pushed');
    } catch (err) {
      // the next tick asks again
      if (room.noticeMs === ms) room.noticeMs = -1;
      this.log.warn({ event_id: room.eventId, err }, 'operator message not read: retrying at the next tick');
    }
  }

  /** The event ended (a tick said so): one read for why, then everyone waiting here is told and let go. */
  private async ended(room: EventRoom): Promise<void> {
    for (let attempt = 0; !room.ended && this.rooms.get(room.eventId) === room; attempt++) {
      try {
        const info = await this.store.endInfo(room.eventId);
        const n = room.end(info.reason, info.endedMs, info.notice);
        this.metrics.endedUsers.inc({ event_id: room.eventId }, n);
        this.log.info({ event_id: room.eventId, reason: info.reason, users: n }, 'event ended: users here told and let go');
        return;
      } catch (err) {
        this.log.warn({ event_id: room.eventId, err, attempt }, 'event ended: reading why failed; retrying');
        await new Promise((r) => setTimeout(r, Math.min(5000, 250 * 2 ** attempt)));
      }
    }
  }

  /**
   * Attaches a user to this instance: one status read, then tick messages
   * keep them current. For a socket (`forSocket`) the read also records this
   * instance's claim; a poll has claimed already. Concurrent attaches of one
   * token share the read (a socket that shares a poll's read claims when it
   * opens).
   */
  attach(token: string, forSocket: boolean): Promise<AttachResult> {
    const eventId = tokenEvent(token);
    if (!eventId) return Promise.resolve({ ok: false, state: 'unknown', reason: 'unknown token' });
    const known = this.rooms.get(eventId)?.users.get(token);
    // A user held here (another socket open, its claim renewed) is welcomed from memory. One that is not
    // (back within the grace, or known from polls) has its claim recorded first: a welcome must never
    // promise a place this instance could not claim (Redis unreachable from here).
    if (known && (!forSocket || known.holding)) return Promise.resolve({ ok: true, room: this.rooms.get(eventId)!, user: known });
    let p = this.attaching.get(token);
    if (!p) {
      p = (async (): Promise<AttachResult> => {
        const room = await this.room(eventId);
        const s = await this.read(() => (forSocket ? this.store.status(token, this.holdMsFor(room), this.o.instanceId) : this.store.status(token, 0)));
        if (!s) return { ok: false, state: 'unknown', reason: 'unknown token' };
        if (s.state === 'expired' && s.reason === 'ended') return { ok: false, state: 'ended', reason: s.endReason };
        if (s.state !== 'waiting' && s.state !== 'ready' && s.state !== 'prequeue') return { ok: false, state: s.state, reason: s.reason };
        const user = room.add(s, []);
        if (forSocket) room.holdClaimed(user);
        return { ok: true, room, user };
      })().finally(() => this.attaching.delete(token));
      this.attaching.set(token, p);
    }
    return p;
  }

  /**
   * After a poll answered from Redis (which claimed liveness as a poll):
   * adopt the read if the event's channel was already subscribed when it
   * started (rooms are never created by the read itself), else attach with a
   * fresh read.
   */
  async adoptOrAttach(s: StatusSnapshot, roomBefore: EventRoom | undefined): Promise<void> {
    // the read that answered the poll claimed it in Redis already
    if (roomBefore && this.rooms.get(s.eventId) === roomBefore) {
      roomBefore.polled(roomBefore.add(s, []), Date.now(), true);
      return;
    }
    const r = await this.attach(s.token, false);
    if (r.ok) r.room.polled(r.user, Date.now(), true);
  }

  /** One attach read, in its turn (reads past the bound wait; realtime_attach_waiting counts them). */
  private read<T>(fn: () => Promise<T>): Promise<T> {
    const waiting = this.reads.activeCount >= this.reads.concurrency;
    if (waiting) this.metrics.attachWaiting.inc();
    return this.reads(() => {
      if (waiting) this.metrics.attachWaiting.dec();
      // Redis stopped answering while this read waited: fail it now, not after its own
      // REDIS_COMMAND_TIMEOUT_MS (15,000 queued reads, 64 at a time, would take minutes to fail)
      if (!this.storeUp) return Promise.reject(storeError(new Error('redis not answering (health check)')));
      return fn();
    });
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
    room.socketAdded(u, socketId);
    room.drive(u, { type: 'SOCKET_OPENED' });
    if (!u.holding) {
      // back within the grace, or attached by a poll before: this instance holds the place from now
      room.holdClaimed(u);
      this.queueClaim(room.eventId, [u.token, 'hold', this.holdMsFor(room)]);
    }
  }

  private queueClaim(eventId: string, claim: LivenessClaim): void {
    let list = this.pending.get(eventId);
    if (!list) this.pending.set(eventId, (list = []));
    list.push(claim);
    this.claimFlush ??= setImmediate(() => void this.flushPending());
  }

  /** A socket that closed before its attach finished: the same as a socket closing now, unless another one holds the user. */
  closedWhileAttaching(room: EventRoom, u: LocalUser): void {
    if (u.sockets.length === 0 && room.users.get(u.token) === u) this.lastSocketClosed(room, u);
  }

  /**
   * This instance's last socket for the user closed: its claim becomes
   * exactly now + the grace (batched with other closes of this moment), and
   * a poll it answered but has not recorded yet is recorded with it.
   */
  private lastSocketClosed(room: EventRoom, u: LocalUser): void {
    const now = Date.now();
    room.lastSocketClosed(u, now);
    this.queueClaim(room.eventId, [u.token, 'hold', room.reconnectGraceMs]);
    const poll = this.pollClaim(room, u, now);
    if (poll) this.queueClaim(room.eventId, poll);
  }

  /** The claim of a poll answered from memory and not recorded yet, if it still counts. */
  private pollClaim(room: EventRoom, u: LocalUser, now: number): LivenessClaim | undefined {
    if (u.lastPollAt <= u.pollClaimedAt) return undefined;
    const left = this.o.pollTimeoutMs - (now - u.lastPollAt);
    if (left <= 0) return undefined;
    room.pollClaimRecorded(u);
    return [u.token, 'poll', left];
  }

  socketClosed(eventId: string, token: string, socketId: number): void {
    const room = this.rooms.get(eventId);
    const u = room?.users.get(token);
    if (!room || !u) return;
    if (!room.socketRemoved(u, socketId)) return;
    room.drive(u, { type: 'SOCKET_CLOSED' });
    if (u.sockets.length === 0) this.lastSocketClosed(room, u);
  }

  private async flushPending(): Promise<void> {
    this.claimFlush = undefined;
    const work: Promise<unknown>[] = [];
    for (const [eventId, all] of this.pending) {
      for (let i = 0; i < all.length; i += CLAIMS_PER_WRITE) {
        const claims = all.slice(i, i + CLAIMS_PER_WRITE);
        work.push(
          this.store.touch(eventId, this.o.instanceId, claims).catch((err: unknown) => {
            this.metrics.livenessWrites.inc({ kind: 'change', result: 'error' });
            this.log.warn({ event_id: eventId, claims: claims.length, err }, 'liveness claim write failed');
          }),
        );
      }
    }
    this.pending.clear();
    await Promise.all(work);
  }

  /** A status poll answered from memory, or undefined when this instance does not hold the user. */
  statusFromMemory(token: string): { room: EventRoom; user: LocalUser; estimate: Estimate } | undefined {
    const eventId = tokenEvent(token);
    if (!eventId) return undefined;
    const room = this.rooms.get(eventId);
    const user = room?.users.get(token);
    if (!room || !user || this.resyncing.has(eventId) || room.ranksStale) return undefined;
    // Stale view (no tick message for a while: ticker failover, Redis trouble): ask Redis instead.
    if (room.lastTickAt === 0 || Date.now() - room.lastTickAt > Math.max(2000, this.o.tickMs * 8)) return undefined;
    room.polled(user, Date.now(), false);
    return { room, user, estimate: room.estimateFor(user) };
  }

  /** Every LOOP_MS: renew the claims of rooms that are due, close sockets that lost the store, let go of idle pollers and empty rooms. */
  private loop(): void {
    const now = Date.now();
    for (const room of [...this.rooms.values()]) {
      const lv = this.liveness.get(room.eventId)!;
      if (now - lv.sentAt >= this.refreshMsFor(room) && !lv.inFlight) {
        lv.sentAt = now;
        void this.renew(room, lv, now);
      }
      this.watchStore(room, lv, now);
      if (room.users.size === 0 && now - room.emptySince > 30_000 && !this.attachingFor(room.eventId)) {
        this.rooms.delete(room.eventId);
        this.liveness.delete(room.eventId);
        this.broker.unsubscribe(this.store.keys(room.eventId).channel).catch((err: unknown) => this.log.warn({ event_id: room.eventId, err }, 'unsubscribe failed'));
      }
    }
  }

  /** This instance's claims in one event, in one call per CLAIMS_PER_WRITE users: open sockets hold, polls answered from memory. */
  private async renew(room: EventRoom, lv: RoomLiveness, now: number): Promise<void> {
    const claims: LivenessClaim[] = [];
    const hold = this.holdMsFor(room);
    for (const u of room.users.values()) {
      if (u.sockets.length > 0) {
        claims.push([u.token, 'hold', hold]);
        room.holdClaimed(u);
      }
      const poll = this.pollClaim(room, u, now);
      if (poll) claims.push(poll);
      else if (u.sockets.length === 0 && u.lastPollAt > u.closedAt && now - u.lastPollAt >= this.o.pollTimeoutMs) {
        // a poller that stopped polling (its socket, if any, closed longer than the grace ago): let go here
        if (u.closedAt === 0 || now - u.closedAt >= room.reconnectGraceMs) room.remove(u);
      }
    }
    lv.inFlight = true;
    try {
      for (let i = 0; i < claims.length; i += CLAIMS_PER_WRITE) await this.store.touch(room.eventId, this.o.instanceId, claims.slice(i, i + CLAIMS_PER_WRITE));
      lv.okAt = now;
      lv.failing = false;
      if (claims.length) this.metrics.livenessWrites.inc({ kind: 'renew', result: 'ok' });
    } catch (err) {
      lv.failing = true;
      this.metrics.livenessWrites.inc({ kind: 'renew', result: 'error' });
      this.log.warn({ event_id: room.eventId, claims: claims.length, since_ok_ms: Date.now() - lv.okAt, err }, 'liveness renewal failed');
    } finally {
      lv.inFlight = false;
    }
  }

  /**
   * This instance cannot renew its claims (Redis unreachable from here while
   * the ticker elsewhere may be sweeping): past a third of the grace, close
   * this event's sockets with 4103 so their clients reconnect to an
   * instance that can, well before the claims renewed last run out.
   */
  private watchStore(room: EventRoom, lv: RoomLiveness, now: number): void {
    if (!(lv.failing || !this.storeUp)) return;
    const silentMs = now - lv.okAt;
    if (silentMs <= this.refreshMsFor(room) + room.reconnectGraceMs / 3) return;
    let closed = 0;
    for (const u of [...room.users.values()]) {
      for (const id of u.sockets) {
        this.sink.close(id, Close.STORE_UNAVAILABLE, 'store unreachable from this instance: reconnect elsewhere');
        closed++;
      }
    }
    if (closed > 0) {
      this.metrics.storeLostCloses.inc(closed);
      this.log.warn({ event_id: room.eventId, sockets: closed, silent_ms: silentMs }, 'cannot renew liveness claims: closed sockets so clients reconnect elsewhere');
    }
  }

  private attachingFor(eventId: string): boolean {
    for (const t of this.attaching.keys()) if (t.startsWith(`${eventId}.`)) return true;
    return false;
  }

  /** After a lost tick message: exact ranks for everyone attached in this event, one call per 1000 users. */
  private async resync(room: EventRoom): Promise<void> {
    if (this.resyncing.has(room.eventId)) return;
    this.resyncing.add(room.eventId);
    const started = Date.now();
    let ok = false;
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
      ok = true;
    } catch (err) {
      this.log.warn({ event_id: room.eventId, err }, 'resync failed');
    } finally {
      this.resyncing.delete(room.eventId);
    }
    if (!room.ranksStale) return;
    if (ok) {
      // after the draw: everyone here learns their place now
      room.ranksStale = false;
      for (const u of room.users.values()) room.pushPosition(u, true);
      this.log.info({ event_id: room.eventId, users: room.users.size, ms: Date.now() - started }, 'draw: places pushed');
    } else if (this.rooms.get(room.eventId) === room) {
      setTimeout(() => void this.resync(room), 500).unref();
    }
  }

  /**
   * Redis went away or came back: attached users keep their sockets and are
   * told the line is paused (nothing can move without the store), then
   * resumed with a fresh position.
   */
  storeAvailability(up: boolean): void {
    this.storeUp = up;
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

  /** false while Redis does not answer this instance (the health check) */
  get storeAvailable(): boolean {
    return this.storeUp;
  }

  async stop(): Promise<void> {
    clearInterval(this.loopTimer);
    if (this.claimFlush) {
      clearImmediate(this.claimFlush);
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
