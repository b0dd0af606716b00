// Heap per attached user in one EventRoom, and what it is made of:
//   node --expose-gc dist/bench/room-memory.js [users]
// Measures the heap after adding N users (one socket id each) to a room,
// against the same N with the parts taken away one at a time: the XState
// actor, the room's indexes, the user record. No Redis, no sockets: this is
// the gateway's own cost per user (a socket adds uWS's native buffers and
// the Connection object; bench/ws-scale.ts measures RSS with real sockets).
import { EventRoom, type SocketSink } from '../src/realtime/event-room.js';
import type { StatusSnapshot } from '../src/queue/store.js';
import { createMetrics } from '../src/metrics.js';
import { createLogger } from '../src/log.js';
import { startUserActor } from '../machines/user-lifecycle.js';

const N = Number(process.argv[2] ?? 20_000);
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) {
  console.error('run with node --expose-gc');
  process.exit(2);
}
const sink: SocketSink = { send: () => true, close: () => undefined };

const snap = (seq: number): StatusSnapshot => ({
  token: `ev.${String(seq).padStart(22, 'A')}`,
  eventId: 'ev',
  state: 'waiting',
  rank: seq - 1,
  readyCount: 0,
  joinedMs: Date.now(),
  readyDeadlineMs: 0,
  finishedMs: 0,
  reason: '',
  eventState: 'open',
  nowMs: Date.now(),
  eta: { rate: 10, rw: 10, share: 1, conf: 0, spread: 0.6, tokens: 0 },
  seq,
  xseq: 0,
  reconnectGraceSec: 30,
  startsMs: 0,
  endReason: '',
});

function heap(): number {
  gc!();
  gc!();
  return process.memoryUsage().heapUsed;
}

function measure(label: string, build: () => unknown): number {
  const before = heap();
  const keep = build();
  const after = heap();
  const per = (after - before) / N;
  console.log(`${label.padEnd(46)} ${per.toFixed(0).padStart(6)} bytes per user`);
  void keep;
  return per;
}

const snaps = Array.from({ length: N }, (_, i) => snap(i + 1));
const room = (): EventRoom =>
  new EventRoom({ eventId: 'ev', tickMs: 100, pollTimeoutMs: 60_000, sink, log: createLogger('silent'), metrics: createMetrics(), nearFront: 1000 });

console.log(`${N} users, node ${process.version}`);
const whole = measure('attached user (room.add: record + actor + indexes)', () => {
  const r = room();
  for (const s of snaps) r.add(s, [s.seq]);
  return r;
});
const actor = measure('  of which the XState actor alone', () =>
  snaps.map(() => startUserActor({ state: 'waiting', readyDeadlineMs: 0, reconnectGraceMs: 30_000, clockOffsetMs: 0, sockets: 1, token: 't', onDetached: () => undefined })),
);
console.log(`${'  the rest (record, socket list, two map entries)'.padEnd(46)} ${(whole - actor).toFixed(0).padStart(6)} bytes per user`);
