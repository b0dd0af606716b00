import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { Exit, Tick } from '../queue/broker.js';
import type { EtaParams, EventState, Notice, StatusSnapshot } from '../queue/store.js';
import { estimate, prequeueEstimate, type Estimate } from '../queue/eta.js';
import { receiptOf } from '../queue/draw.js';
import { startUserActor, stopUserActor, lifecycleOf, OUTCOMES, type UserActor, type UserEvent } from '../../machines/user-lifecycle.js';
import { PROTOCOL_VERSION, type CloseCode, type EndedMessage, type ServerMessage } from '../protocol/wire.js';

// The users of one event attached to this instance, and the fan-out after
// each tick. Ranks are kept exact without asking Redis per user: each user's
// rank is read once (with the exit sequence number it is exact at), then
// every exit published in a tick message moves everyone behind it up by one.
// One sorted pass per tick covers all users (O(U + E log E)); no per-actor
// event for position updates.

export interface SocketSink {
  /** essential messages (ready/terminal) bypass the slow-consumer skip; returns false when the socket cannot take it now */
  send(socketId: number, msg: ServerMessage, essential: boolean): boolean;
  close(socketId: number, code: CloseCode, reason: string): void;
}

export interface RoomOptions {
  eventId: string;
  tickMs: number;
  pollTimeoutMs: number;
  sink: SocketSink;
  log: Logger;
  metrics: Metrics;
  /** users at or before this position get every change; behind it updates are coalesced */
  nearFront: number;
}

/** The room's own record of a user; outside the room it is read-only (LocalUser) and changed through the room's methods. */
interface RoomUser {
  readonly token: string;
  readonly seq: number;
  readonly joinedMs: number;
  /** 0-based rank in line (ready prefix included), exact as of exit sequence x0 */
  rank: number;
  x0: number;
  /**
   * The actor's lifecycle state and ready deadline, as read back after each
   * event the room sends it (EventRoom.drive): the actor is the one source,
   * these fields its projection for the hot paths (fan-out, polls), which
   * read them for every user on every tick. Never written anywhere else.
   */
  readonly state: 'prequeue' | 'waiting' | 'ready';
  readonly readyDeadlineMs: number;
  /** ids of this user's open sockets here; replaced, never edited in place, so a send loop over it is never disturbed by a close */
  sockets: number[];
  /** local ms of the last HTTP poll answered for this user (0 = never) */
  lastPollAt: number;
  /** lastPollAt as of the last poll claim recorded in Redis (polls from memory are claimed in batches) */
  pollClaimedAt: number;
  /** local ms this instance's last socket for the user closed (its claim became then + grace); 0 while one is open */
  closedAt: number;
  /** this instance's claim for open sockets is recorded (Realtime: set on attach/renewal, cleared on the last close) */
  holding: boolean;
  actor: UserActor;
  pushedPos: number;
  pushedEta: number;
  pushedAt: number;
  /** an enter through this instance's socket is in flight: its completion (with the signed token) finishes the user, not the tick */
  entering: boolean;
  /** the ETA first shown (seconds) and when (Redis ms), for gateway_eta_accuracy_seconds */
  firstEta: number;
  firstEtaAt: number;
}

/** A user attached to this instance, as the rest of the gateway sees it: read-only; the room changes it. */
export type LocalUser = Readonly<RoomUser>;

const RECENT_EXITS_MAX = 100_000;

/** The room's own view of a user: the projected fields are writable here only. */
type Projected = RoomUser & { state: RoomUser['state']; readyDeadlineMs: number };

/** Read the actor's state back into the user's projected fields. */
function project(u: Projected): void {
  const snap = u.actor.getSnapshot();
  const l = lifecycleOf(snap);
  // final states are not projected: finish() removes the user right after
  if (l === 'waiting' || l === 'ready' || l === 'prequeue') u.state = l;
  u.readyDeadlineMs = snap.context.readyDeadlineMs;
}

export class EventRoom {
  private readonly members = new Map<string, RoomUser>();
  /** the users attached here, by waiting token */
  get users(): ReadonlyMap<string, LocalUser> {
    return this.members;
  }
  private readonly bySeq = new Map<number, RoomUser>();
  private sorted: RoomUser[] = [];
  private sortedDirty = false;
  /** exits seen in tick messages, for users whose first read predates them */
  private recent: [number, number][] = [];
  /** exit sequence number of the last exit applied; -1 until the first message */
  private lastXs = -1;
  readyCount = 0;
  qlen = 0;
  eventState: EventState = 'open';
  eta: EtaParams = { rate: 1, rw: 1, share: 1, conf: 0, spread: 0.6, tokens: 0 };
  reconnectGraceMs = 30_000;
  /** Redis time minus local time, from the last tick message */
  clockOffsetMs = 0;
  /** the largest clockOffsetMs seen lately: the least delayed tick message (for realtime_tick_to_push_seconds) */
  private bestOffsetMs = -Infinity;
  private bestOffsetAt = 0;
  lastTickAt = 0;
  emptySince = Date.now();
  /** |ETA first shown - actual wait| of recent promotions of users attached here (seconds), for the operator page */
  readonly accuracy: number[] = [];
  /** a user's reconnect grace ran out (its actor reached `detached`): the owner lets go of it */
  onDetached: ((u: LocalUser) => void) | undefined;
  /** what every user's actor calls when it detaches: one function for the room (a closure per user cost about 100 bytes each) */
  private readonly detach = (token: string): void => {
    const u = this.members.get(token);
    if (u) this.onDetached?.(u);
  };
  /** set when a gap in exit sequence numbers shows a lost message */
  onResyncNeeded: (() => void) | undefined;
  /** the operator's message as pushed here, and its version (notice_ms; -1 = not known yet) */
  notice: Notice | null = null;
  noticeMs = -1;
  /** a tick carried a message version this room has not shown: fetch it (once) and call setNotice */
  onNoticeChanged: ((ms: number) => void) | undefined;
  /** the event's scheduled start (Redis ms, 0 = none) */
  startsMs = 0;
  /** the event ended: fetch why (once) and call end() */
  onEnded: (() => void) | undefined;
  /** end() ran: everyone waiting here was told */
  ended = false;
  /**
   * The pre-queue just drew: the ranks of users who were in it are not known
   * here (entrants joined anywhere in the line, not only at its end, and only
   * exits are followed), so nothing is pushed or answered from memory until a
   * read of their exact ranks (Realtime.resync) clears this.
   */
  ranksStale = false;

  constructor(private readonly o: RoomOptions) {}

  get eventId(): string {
    return this.o.eventId;
  }

  /** A user read from Redis (status script) joins this instance's view. */
  add(s: StatusSnapshot, sockets: number[]): LocalUser {
    const existing = this.members.get(s.token);
    if (existing) return existing;
    if (this.lastTickAt === 0) {
      this.readyCount = s.readyCount;
      this.eventState = s.eventState;
      this.eta = s.eta;
      this.reconnectGraceMs = s.reconnectGraceSec * 1000;
      this.clockOffsetMs = s.nowMs - Date.now();
      this.startsMs = s.startsMs;
    }
    let rank = s.rank;
    // exits already applied to everyone else but not yet reflected in this read
    for (let i = this.firstExitAfter(s.xseq); i < this.recent.length; i++) if (this.recent[i]![1] < s.seq) rank--;
    const ready = s.state === 'ready';
    const state = ready ? 'ready' : s.state === 'prequeue' ? 'prequeue' : 'waiting';
    const user: Projected = {
      token: s.token,
      seq: s.seq,
      joinedMs: s.joinedMs,
      rank,
      x0: Math.max(s.xseq, this.lastXs),
      state,
      readyDeadlineMs: s.readyDeadlineMs,
      sockets: [...sockets],
      lastPollAt: 0,
      pollClaimedAt: 0,
      closedAt: 0,
      holding: false,
      entering: false,
      actor: undefined as unknown as UserActor,
      pushedPos: -1,
      pushedEta: -1,
      pushedAt: 0,
      firstEta: -1,
      firstEtaAt: 0,
    };
    user.actor = startUserActor({
      state,
      readyDeadlineMs: s.readyDeadlineMs,
      reconnectGraceMs: this.reconnectGraceMs,
      clockOffsetMs: this.clockOffsetMs,
      sockets: sockets.length,
      token: s.token,
      onDetached: this.detach,
    });
    project(user);
    this.members.set(user.token, user);
    this.bySeq.set(user.seq, user);
    this.sortedDirty = true;
    this.o.metrics.attachedUsers.inc();
    return user;
  }

  /**
   * Index of the first remembered exit with a sequence number above xs.
   * `recent` is in exit order, and a fresh read is usually only a few exits
   * behind: a binary search instead of a scan of up to RECENT_EXITS_MAX
   * entries per attach (the scan showed up in the launch-flow profile).
   */
  private firstExitAfter(xs: number): number {
    let lo = 0;
    let hi = this.recent.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.recent[mid]![0] > xs) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }

  remove(u: RoomUser): void {
    if (this.members.get(u.token) !== u) return;
    this.members.delete(u.token);
    this.bySeq.delete(u.seq);
    this.sortedDirty = true;
    stopUserActor(u.actor);
    this.o.metrics.attachedUsers.dec();
    if (this.members.size === 0) this.emptySince = Date.now();
  }

  estimateFor(u: RoomUser): Estimate {
    if (u.state === 'prequeue') return prequeueEstimate(this.startsMs, this.redisNow(), this.o.pollTimeoutMs);
    const e = estimate(u.rank, this.readyCount, u.state === 'waiting', this.eta, this.o.tickMs, this.o.pollTimeoutMs);
    this.noteFirstEta(u, e);
    return e;
  }

  redisNow(): number {
    return Date.now() + this.clockOffsetMs;
  }

  positionMessage(u: RoomUser, e: Estimate): ServerMessage & { type: 'position' } {
    return {
      type: 'position',
      status: u.state,
      position: e.position,
      people_ahead: e.peopleAhead,
      being_let_in: e.beingLetIn,
      eta_sec: e.etaSec,
      eta_low: e.etaLowSec,
      eta_high: e.etaHighSec,
      confidence: e.confidence,
      event_state: this.eventState,
      ...(u.state === 'prequeue' && this.startsMs > 0 ? { starts_at: new Date(this.startsMs).toISOString() } : {}),
      ...(u.state === 'prequeue' ? { receipt: receiptOf(u.token) } : {}),
    };
  }

  readyMessage(u: RoomUser): ServerMessage {
    return {
      type: 'ready',
      position: 1,
      ready_deadline: new Date(u.readyDeadlineMs).toISOString(),
      expires_in_sec: Math.max(0, Math.floor((u.readyDeadlineMs - this.redisNow()) / 1000)),
    };
  }

  /** Sends the current position to one user (first message after a socket opens, or a coalesced update). */
  pushPosition(u: RoomUser, force: boolean): void {
    // in the pre-queue nothing moves until the draw (the page counts down to starts_at itself)
    if (u.sockets.length === 0 || (u.state === 'prequeue' && !force)) return;
    const e = this.estimateFor(u);
    if (!force) {
      const posChanged = e.position !== u.pushedPos;
      const etaChanged = Math.abs(e.etaSec - u.pushedEta) > Math.max(2, u.pushedEta * 0.1);
      if (!posChanged && !etaChanged) return;
      // far back: coalesce small moves; always at least every 5 s when something changed
      if (e.position > this.o.nearFront && !etaChanged && Math.abs(e.position - u.pushedPos) < u.pushedPos * 0.01 && Date.now() - u.pushedAt < 5000) return;
    }
    const msg = this.positionMessage(u, e);
    let sent = false;
    for (const id of u.sockets) sent = this.o.sink.send(id, msg, false) || sent;
    if (sent) {
      u.pushedPos = e.position;
      u.pushedEta = e.etaSec;
      u.pushedAt = Date.now();
    }
  }

  private noteFirstEta(u: RoomUser, e: Estimate): void {
    if (u.firstEta < 0 && u.state === 'waiting') {
      u.firstEta = e.etaSec;
      u.firstEtaAt = this.redisNow();
    }
  }

  private ensureSorted(): RoomUser[] {
    if (this.sortedDirty) {
      this.sorted = [...this.members.values()].sort((a, b) => a.seq - b.seq);
      this.sortedDirty = false;
    }
    return this.sorted;
  }

  applyTick(t: Tick): void {
    const started = process.hrtime.bigint();
    this.clockOffsetMs = t.redisTimeMs - Date.now();
    // the largest apparent offset is the one with the least delivery delay (re-learnt every 10 minutes)
    if (this.clockOffsetMs > this.bestOffsetMs || Date.now() - this.bestOffsetAt > 600_000) {
      this.bestOffsetMs = this.clockOffsetMs;
      this.bestOffsetAt = Date.now();
    }
    this.lastTickAt = Date.now();
    this.reconnectGraceMs = t.reconnectGraceSec * 1000;
    if (t.startsMs !== undefined) this.startsMs = t.startsMs;
    if (t.noticeVersion !== undefined && t.noticeVersion !== this.noticeMs) {
      this.noticeMs = t.noticeVersion;
      if (t.noticeVersion === 0) this.notice = null; // never set: nothing to fetch
      else this.onNoticeChanged?.(t.noticeVersion);
    }
    const exits = this.lastXs >= 0 ? t.exits.filter((x) => x.exitSeq > this.lastXs) : t.exits;
    const gap = this.lastXs >= 0 && (exits.length > 0 ? exits[0]!.exitSeq !== this.lastXs + 1 : t.lastExitSeq > this.lastXs && t.exits.length === 0);
    if (exits.length > 0) {
      this.applyExits(exits);
      this.lastXs = exits[exits.length - 1]!.exitSeq;
    } else if (this.lastXs < 0) {
      this.lastXs = t.lastExitSeq;
    }
    if ((this.eventState === 'prequeue' || this.eventState === 'scheduled') && t.state !== 'prequeue' && t.state !== 'scheduled' && t.state !== 'ended') {
      // the draw: everyone here who was in the pre-queue has a place now. Their ranks are read
      // from Redis first (ranksStale): nobody is shown a place before it is exact. Before the
      // promotions: the first of them may be called in this very tick.
      this.drawn();
    }
    for (const { seq, readyDeadlineMs } of t.promoted) {
      const u = this.bySeq.get(seq);
      if (!u || u.state !== 'waiting') continue;
      this.drive(u, { type: 'PROMOTED', deadlineMs: readyDeadlineMs });
      if (u.firstEta >= 0) {
        const actual = (t.redisTimeMs - u.joinedMs) / 1000;
        const predicted = u.firstEta + (u.firstEtaAt - u.joinedMs) / 1000;
        this.o.metrics.etaAccuracy.observe({ event_id: this.o.eventId }, Math.abs(actual - predicted));
        this.accuracy.push(Math.abs(actual - predicted));
        if (this.accuracy.length > 500) this.accuracy.splice(0, 250);
      }
      const msg = this.readyMessage(u);
      for (const id of u.sockets) this.o.sink.send(id, msg, true);
    }
    let stateChanged = false;
    if (t.state !== this.eventState) {
      const prev = this.eventState;
      this.eventState = t.state;
      stateChanged = true;
      // paused and closed both stop admissions: tell everyone; back to open: resumed
      const stopped = (x: string): boolean => x === 'paused' || x === 'closed';
      const note: ServerMessage | undefined = stopped(t.state)
        ? { type: 'paused', event_state: t.state }
        : t.state === 'open' && stopped(prev)
          ? { type: 'resumed', event_state: t.state }
          : undefined;
      if (note) for (const u of this.members.values()) for (const id of u.sockets) this.o.sink.send(id, note, true);
      if (t.state === 'ended' && !this.ended) this.onEnded?.();
    }
    this.readyCount = t.readyCount;
    this.qlen = t.inLine;
    const e = t.eta;
    this.eta = { rate: e.rate, rw: e.rw, share: e.share, conf: e.conf, spread: e.spread, tokens: e.tokens };
    if (!this.ranksStale) for (const u of this.members.values()) this.pushPosition(u, stateChanged);
    this.o.metrics.fanoutDuration.observe(Number(process.hrtime.bigint() - started) / 1e9);
    this.o.metrics.tickToPush.observe(Math.max(0, Date.now() + this.bestOffsetMs - t.redisTimeMs) / 1000);
    if (gap) {
      this.o.log.warn({ event_id: this.o.eventId, last: this.lastXs, got: exits[0]?.exitSeq ?? t.lastExitSeq }, 'tick message gap: resynchronising ranks');
      this.lastXs = -1;
      this.onResyncNeeded?.();
    }
  }

  private drawn(): void {
    let n = 0;
    for (const u of this.members.values()) {
      if (u.state !== 'prequeue') continue;
      this.drive(u, { type: 'DRAWN' });
      n++;
    }
    if (n > 0) {
      this.ranksStale = true;
      this.o.log.info({ event_id: this.o.eventId, users: n }, 'draw: reading the places of the pre-queue users here');
      this.onResyncNeeded?.();
    }
  }

  /**
   * The event ended: everyone here still waiting or in the pre-queue is told
   * why (`ended`, then close 4020) and let go; ready users keep their window.
   */
  end(reason: string, endedMs: number, notice: Notice | null): number {
    this.ended = true;
    const msg: EndedMessage = { type: 'ended', reason, message: notice, ended_at: new Date(endedMs || this.redisNow()).toISOString() };
    let n = 0;
    for (const u of [...this.members.values()]) {
      if (u.state === 'ready') continue;
      this.finish(u, 'ended', msg);
      n++;
    }
    return n;
  }

  /** The operator's message changed (null: removed): every socket here is told at once. */
  setNotice(notice: Notice | null): void {
    this.notice = notice;
    const msg: ServerMessage = { type: 'notice', message: notice };
    for (const u of this.members.values()) for (const id of u.sockets) this.o.sink.send(id, msg, true);
  }

  private applyExits(exits: readonly Exit[]): void {
    for (const x of exits) this.recent.push([x.exitSeq, x.lineSeq]);
    if (this.recent.length > RECENT_EXITS_MAX) this.recent.splice(0, this.recent.length - RECENT_EXITS_MAX / 2);
    const firstXs = exits[0]!.exitSeq;
    const lastXs = exits[exits.length - 1]!.exitSeq;
    const seqs = exits.map((x) => x.lineSeq).sort((a, b) => a - b);
    let j = 0;
    for (const u of this.ensureSorted()) {
      while (j < seqs.length && seqs[j]! < u.seq) j++;
      if (u.x0 < firstXs) {
        u.rank -= j;
      } else {
        // attached while these exits were in flight: count only the ones after its read
        for (const x of exits) if (x.exitSeq > u.x0 && x.lineSeq < u.seq) u.rank--;
      }
      if (u.x0 < lastXs) u.x0 = lastXs;
    }
    for (const { lineSeq, reason } of exits) {
      const u = this.bySeq.get(lineSeq);
      // an enter through this instance's socket finishes the user itself, with the signed token
      if (u && !(u.entering && reason === 'entered')) this.finish(u, reason);
    }
  }

  /**
   * What a socket is told first: `welcome` (the whole snapshot), then `ready`
   * if the user is ready and `paused` if the event is not open. Records it as
   * pushed, so the next tick sends only what changed.
   */
  welcomeMessages(u: RoomUser): ServerMessage[] {
    // (a socket that attaches to an ended event is refused before this: its status reads expired/ended)
    const e = this.estimateFor(u);
    const { type: _position, ...fields } = this.positionMessage(u, e);
    const out: ServerMessage[] = [
      {
        ...fields,
        type: 'welcome',
        v: PROTOCOL_VERSION,
        event_id: this.eventId,
        ...(u.state === 'ready' ? { ready_deadline: new Date(u.readyDeadlineMs).toISOString() } : {}),
        // the operator's message when this instance knows it (else a notice follows the room's next tick)
        ...(this.noticeMs >= 0 ? { message: this.notice } : {}),
      },
    ];
    u.pushedPos = e.position;
    u.pushedEta = e.etaSec;
    u.pushedAt = Date.now();
    if (u.state === 'ready') out.push(this.readyMessage(u));
    if (this.eventState === 'paused' || this.eventState === 'closed') out.push({ type: 'paused', event_state: this.eventState });
    return out;
  }

  /** An enter through this instance's socket is in flight: its completion (with the signed token) finishes the user, not the tick. */
  enterStarted(u: RoomUser): void {
    u.entering = true;
  }

  enterFailed(u: RoomUser): void {
    u.entering = false;
  }

  // ---- liveness bookkeeping: Realtime owns the policy (docs/PROTOCOL.md,
  // section 6) and tells the room; the room alone writes the fields

  /** A socket of the user opened here. A new array, never an edit in place: a send loop over the old one may be running (pushPosition). */
  socketAdded(u: LocalUser, socketId: number): void {
    const w = u as RoomUser;
    w.sockets = [...w.sockets, socketId];
    w.closedAt = 0;
  }

  /** A socket of the user closed; false when it was not one of theirs. */
  socketRemoved(u: LocalUser, socketId: number): boolean {
    if (!u.sockets.includes(socketId)) return false;
    (u as RoomUser).sockets = u.sockets.filter((id) => id !== socketId);
    return true;
  }

  /** This instance's last socket for the user closed at `now`: its hold claim is no longer renewed. */
  lastSocketClosed(u: LocalUser, now: number): void {
    const w = u as RoomUser;
    w.closedAt = now;
    w.holding = false;
  }

  /** This instance's hold claim for the user's sockets is recorded (or queued) in Redis. */
  holdClaimed(u: LocalUser): void {
    (u as RoomUser).holding = true;
  }

  /** A status poll for the user was answered here at `now`; `recorded`: its claim is in Redis already (answered from Redis). */
  polled(u: LocalUser, now: number, recorded: boolean): void {
    const w = u as RoomUser;
    w.lastPollAt = now;
    if (recorded) w.pollClaimedAt = now;
  }

  /** The claim of the last poll answered here is recorded now. */
  pollClaimRecorded(u: LocalUser): void {
    (u as RoomUser).pollClaimedAt = u.lastPollAt;
  }

  /** Every lifecycle event goes to the user's actor through here, and its state is read back. */
  drive(u: RoomUser, e: UserEvent): void {
    u.actor.send(e);
    project(u as Projected);
  }

  /** The user left the line for good (seen in a tick, or done through this instance). */
  finish(u: RoomUser, reason: string, finalMsg?: ServerMessage): void {
    this.drive(u, { type: 'EXITED', reason });
    const final = lifecycleOf(u.actor.getSnapshot());
    const outcome = OUTCOMES[final === 'waiting' || final === 'ready' || final === 'prequeue' ? 'expired' : final];
    // the caller's own message for the outcome it knows more about (the signed admission, the end's reason)
    const msg = (final === 'admitted' || final === 'ended' ? finalMsg : undefined) ?? outcome.message(reason);
    // Detach the list first: closing a socket runs its close handler
    // synchronously, which would edit the list under this loop.
    const ids = u.sockets;
    u.sockets = [];
    for (const id of ids) {
      if (msg) this.o.sink.send(id, msg, true);
      this.o.sink.close(id, outcome.close, outcome.closeReason);
    }
    this.remove(u);
  }

  /** Rebuild ranks after a lost message: one call for everyone (see Realtime.resync). */
  applyRanks(tokens: readonly string[], xseq: number, ranks: readonly number[]): LocalUser[] {
    const gone: RoomUser[] = [];
    // Exits with a later sequence number than the read were applied here while
    // the read was in flight: the read does not reflect them, so take them off
    // (as add() does); exits still in flight are applied later since x0 covers
    // only what the read and this room have seen.
    const later = this.recent.slice(this.firstExitAfter(xseq));
    tokens.forEach((t, i) => {
      const u = this.members.get(t);
      if (!u) return;
      const r = ranks[i]!;
      if (r < 0) gone.push(u);
      else {
        let rank = r;
        for (const [, seq] of later) if (seq < u.seq) rank--;
        u.rank = rank;
        u.x0 = Math.max(xseq, this.lastXs);
      }
    });
    return gone;
  }
}
