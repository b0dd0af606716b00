import { describe, expect, it } from 'vitest';
import { EventRoom, type SocketSink } from '../src/realtime/event-room.js';
import type { Tick } from '../src/queue/broker.js';
import type { StatusSnapshot } from '../src/queue/store.js';
import { createMetrics } from '../src/metrics.js';
import { createLogger } from '../src/log.js';
import type { ServerMessage } from '../src/protocol/wire.js';

// The room's rank bookkeeping on its own (no Redis involved: the inputs are
// what the status/ranks scripts and tick messages carry). The orderings here
// are the races a real deployment produces: a read that predates exits the
// room already applied, and exits still in flight when a read lands.

const sent: { id: number; msg: ServerMessage }[] = [];
const sink: SocketSink = {
  send: (id, msg) => {
    sent.push({ id, msg });
    return true;
  },
  close: () => undefined,
};

function room(): EventRoom {
  return new EventRoom({ eventId: 'ev', tickMs: 100, pollTimeoutMs: 60_000, sink, log: createLogger('silent'), metrics: createMetrics(), nearFront: 1000 });
}

const snap = (seq: number, rank: number, xseq: number): StatusSnapshot => ({
  token: `ev.t${seq}`,
  eventId: 'ev',
  state: 'waiting',
  rank,
  readyCount: 0,
  joinedMs: 0,
  readyDeadlineMs: 0,
  finishedMs: 0,
  reason: '',
  eventState: 'paused',
  nowMs: Date.now(),
  eta: { rate: 1, rw: 1, share: 1, conf: 0, spread: 0.6, tokens: 0 },
  seq,
  xseq,
  reconnectGraceSec: 30,
  startsMs: 0,
  endReason: '',
});

const tick = (xs: number, exits: [number, number, string][]): Tick => ({
  eventId: 'ev',
  redisTimeMs: Date.now(),
  state: 'paused',
  inLine: 0,
  readyCount: 0,
  promoted: [],
  exits: exits.map(([exitSeq, lineSeq, reason]) => ({ exitSeq, lineSeq, reason })),
  lastExitSeq: xs,
  reconnectGraceSec: 30,
  noticeVersion: undefined,
  eta: { rate: 1, rw: 1, r1: 1, r5: 1, r15: 1, share: 1, conf: 0, spread: 0.6, tokens: 0 },
});

const ranks = (r: EventRoom): Record<number, number> => Object.fromEntries([...r.users.values()].map((u) => [u.seq, u.rank]));

describe('event room ranks', () => {
  it('exits in tick messages move everyone behind them up, and a late read is corrected by exits it missed', () => {
    const r = room();
    for (let seq = 1; seq <= 5; seq++) r.add(snap(seq, seq - 1, 0), []);
    r.applyTick(tick(1, [[1, 2, 'left']]));
    expect(ranks(r)).toEqual({ 1: 0, 3: 1, 4: 2, 5: 3 });
    // user 6 was read at exit 0 (before seq 2 left): rank 5 in that read, 4 now
    r.add(snap(6, 5, 0), []);
    expect(ranks(r)[6]).toBe(4);
  });

  it('a resync read that predates exits applied while it was in flight does not undo them', () => {
    const r = room();
    for (let seq = 1; seq <= 5; seq++) r.add(snap(seq, seq - 1, 0), []);
    r.applyTick(tick(1, [[1, 1, 'left']]));
    // a gap: exit 2 was lost, exit 3 (seq 3) arrives; the room asks Redis for exact ranks
    r.applyTick(tick(3, [[3, 3, 'left']]));
    // the read happened at exit 2 (seq 2 gone, seq 3 not yet)... meanwhile exit 4 (seq 4) was applied
    r.applyTick(tick(4, [[4, 4, 'left']]));
    const tokens = ['ev.t5'];
    r.applyRanks(tokens, 2, [2]); // at exit 2, seq 5 had seq 3 and 4 ahead: rank 2
    // exits 3 and 4 happened after the read: seq 5 is at the head now
    expect(ranks(r)[5]).toBe(0);
    // and an exit still in flight that the read already reflects is not applied twice
    const late = room();
    for (let seq = 1; seq <= 3; seq++) late.add(snap(seq, seq - 1, 0), []);
    late.applyRanks(['ev.t3'], 1, [1]); // read at exit 1 (seq 1 left)
    late.applyTick(tick(1, [[1, 1, 'left']]));
    expect(ranks(late)[3]).toBe(1);
  });
});

describe('user actors', () => {
  it('share actor systems in groups, and removing users stops their actors and cancels their timers', () => {
    const r = room();
    const users = Array.from({ length: 600 }, (_, i) => r.add(snap(i + 1, i, 0), [i + 1]));
    // the last socket closed: each actor runs its reconnect-grace timer
    for (const u of users) r.drive(u, { type: 'SOCKET_CLOSED' });
    const systems = new Set(users.map((u) => u.actor.system));
    expect(systems.size).toBeGreaterThan(1); // groups, not one system per room
    expect(systems.size).toBeLessThan(users.length / 100); // and not one per user
    const scheduled = (): number =>
      [...systems].reduce((n, s) => n + Object.keys((s as unknown as { _snapshot: { _scheduledEvents: object } })._snapshot._scheduledEvents).length, 0);
    expect(scheduled()).toBe(600);
    for (const u of users) r.remove(u);
    expect(users.every((u) => u.actor.getSnapshot().status === 'stopped')).toBe(true);
    expect(scheduled()).toBe(0);
  });
});

describe('user actor creation', () => {
  it('a user created straight into its state behaves as one started through boot', async () => {
    const { createActor } = await import('xstate');
    const { userLifecycle, startUserActor, stopUserActor } = await import('../machines/user-lifecycle.js');
    for (const sockets of [0, 1, 2]) {
      const input = { state: 'waiting' as const, readyDeadlineMs: 0, reconnectGraceMs: 20, clockOffsetMs: 0, sockets, token: 't', onDetached: () => undefined };
      const direct = startUserActor(input);
      const booted = createActor(userLifecycle, { input }).start();
      expect(direct.getSnapshot().value).toEqual(booted.getSnapshot().value);
      expect(direct.getSnapshot().context).toEqual(booted.getSnapshot().context);
      // the same events lead to the same states, timers included (the reconnect grace)
      const deadline = Date.now() + 60_000;
      for (const e of [{ type: 'SOCKET_OPENED' }, { type: 'SOCKET_CLOSED' }, { type: 'SOCKET_CLOSED' }, { type: 'PROMOTED', deadlineMs: deadline }] as const) {
        direct.send(e);
        booted.send(e);
        expect(direct.getSnapshot().value).toEqual(booted.getSnapshot().value);
      }
      await new Promise((r) => setTimeout(r, 60));
      expect(direct.getSnapshot().value).toEqual(booted.getSnapshot().value);
      stopUserActor(direct);
      booted.stop();
    }
  });

  it('a started actor lets go of its creation options (initial snapshot, input) and behaves as one that keeps them, timers included', async () => {
    const { createActor } = await import('xstate');
    const { userLifecycle, startUserActor, stopUserActor } = await import('../machines/user-lifecycle.js');
    for (const state of ['waiting', 'prequeue', 'ready'] as const) {
      const input = { state, readyDeadlineMs: Date.now() + 40, reconnectGraceMs: 20, clockOffsetMs: 0, sockets: 1, token: 't', onDetached: () => undefined };
      const lean = startUserActor(input);
      const kept = createActor(userLifecycle, { input }).start();
      expect(Object.keys((lean as unknown as { options: object }).options)).toEqual(['devTools']);
      expect(kept.options.input).toBe(input);
      for (const e of [{ type: 'SOCKET_OPENED' }, { type: 'DRAWN' }, { type: 'SOCKET_CLOSED' }, { type: 'SOCKET_CLOSED' }] as const) {
        lean.send(e);
        kept.send(e);
        expect(lean.getSnapshot().value).toEqual(kept.getSnapshot().value);
        expect(lean.getSnapshot().context).toEqual(kept.getSnapshot().context);
      }
      // the ready window and the reconnect grace both run out in the lean actor as in the other
      await new Promise((r) => setTimeout(r, 80));
      expect(lean.getSnapshot().value).toEqual(kept.getSnapshot().value);
      expect(lean.getSnapshot().status).toBe(kept.getSnapshot().status);
      stopUserActor(lean);
      kept.stop();
    }
  });
});
