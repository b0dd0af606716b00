import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { WaitingRoomClient, type ChallengeDetail, type EndedDetail, type ScheduledDetail } from '../src/client/waiting-room.js';
import { PROTOCOL_VERSION, closeKind } from '../src/protocol/wire.js';

// The browser client decides by close-code range and checks the protocol
// version (src/protocol/wire.ts), so a server of a later version with codes
// this client has never seen still gets the right behaviour. A scripted
// server: the test plays the socket and answers the HTTP calls.

class MemoryStorage implements Storage {
  private m = new Map<string, string>();
  get length(): number {
    return this.m.size;
  }
  clear(): void {
    this.m.clear();
  }
  getItem(k: string): string | null {
    return this.m.get(k) ?? null;
  }
  key(i: number): string | null {
    return [...this.m.keys()][i] ?? null;
  }
  removeItem(k: string): void {
    this.m.delete(k);
  }
  setItem(k: string, v: string): void {
    this.m.set(k, v);
  }
}

class ScriptedSocket {
  static opened: ScriptedSocket[] = [];
  onmessage: ((ev: { data: string }) => void) | null = null;
  onclose: ((ev: { code: number }) => void) | null = null;
  onerror: (() => void) | null = null;
  onopen: (() => void) | null = null;
  readyState = 1;
  sent: string[] = [];
  constructor(readonly url: string) {
    ScriptedSocket.opened.push(this);
  }
  send(d: string): void {
    this.sent.push(d);
  }
  close(): void {
    this.readyState = 3;
  }
  welcome(v = PROTOCOL_VERSION, extra: Record<string, unknown> = {}): void {
    const snapshot = { status: 'waiting', position: 3, people_ahead: 2, being_let_in: 0, eta_sec: 10, eta_low: 5, eta_high: 20, confidence: 0.5, event_state: 'open' };
    this.onmessage?.({ data: JSON.stringify({ type: 'welcome', v, event_id: 'ev', ...snapshot, ...extra }) });
  }
  push(m: Record<string, unknown>): void {
    this.onmessage?.({ data: JSON.stringify(m) });
  }
  serverClose(code: number): void {
    this.readyState = 3;
    this.onclose?.({ code });
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

type Answer = { status: number; body: unknown; headers?: Record<string, string> };

interface ScriptOptions {
  join?: (body: Record<string, unknown>) => Answer;
  event?: () => Answer;
  /** GET /api/v1/queue/challenge */
  challenge?: () => Answer;
  transport?: 'auto' | 'poll';
  storage?: Storage;
  Worker?: typeof Worker | null;
  getChallengeToken?: (eventId: string) => Promise<string>;
}

function scripted(statusAnswer: () => Answer, o: ScriptOptions = {}) {
  ScriptedSocket.opened = [];
  const calls: string[] = [];
  /** every join: its body and Idempotency-Key */
  const joins: { body: Record<string, unknown>; key: string | null }[] = [];
  const fetchFn = async (url: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const u = new URL(String(url));
    calls.push(`${init?.method ?? 'GET'} ${u.pathname}`);
    const reply = (a: Answer) => new Response(JSON.stringify(a.body), { status: a.status, headers: { 'content-type': 'application/json', ...a.headers } });
    if (u.pathname === '/api/v1/queue/join') {
      const body = JSON.parse(String(init?.body ?? '{}')) as Record<string, unknown>;
      joins.push({ body, key: new Headers(init?.headers).get('Idempotency-Key') });
      if (o.join) return reply(o.join(body));
      return new Response(JSON.stringify({ waiting_token: 'ev.AAAAAAAAAAAAAAAAAAAAAA', position_hint: 3, status: 'waiting' }), { status: 202 });
    }
    if (u.pathname === '/api/v1/events/ev' && o.event) return reply(o.event());
    if (u.pathname === '/api/v1/queue/challenge' && o.challenge) return reply(o.challenge());
    const a = statusAnswer();
    return new Response(JSON.stringify(a.body), { status: a.status, headers: { 'content-type': 'application/json' } });
  };
  const room = new WaitingRoomClient({
    eventId: 'ev',
    baseUrl: 'http://gateway.test',
    storage: o.storage ?? new MemoryStorage(),
    fetch: fetchFn as typeof fetch,
    WebSocket: ScriptedSocket as unknown as typeof WebSocket,
    minBackoffMs: 10,
    maxBackoffMs: 20,
    ...(o.transport ? { transport: o.transport } : {}),
    ...(o.Worker !== undefined ? { Worker: (o.Worker ?? undefined) as typeof Worker } : {}),
    ...(o.getChallengeToken ? { getChallengeToken: o.getChallengeToken } : {}),
  });
  return { room, calls, joins };
}

const waiting = { status: 200, body: { status: 'waiting', event_id: 'ev', position: 3, people_ahead: 2, being_let_in: 0, eta_sec: 10, eta_low: 5, eta_high: 20, confidence: 0.5, event_state: 'open', waiting_time: 1, ready_for_entry: false, poll_after_ms: 60_000 } };
const gone = { status: 410, body: { error: { code: 'TOKEN_EXPIRED', message: 'expired', trace_id: '0', reason: 'liveness' } } };

async function started(statusAnswer: () => { status: number; body: unknown }) {
  const s = scripted(statusAnswer);
  await s.room.start();
  await sleep(5);
  expect(ScriptedSocket.opened).toHaveLength(1);
  ScriptedSocket.opened[0]!.welcome();
  expect(s.room.connection).toBe('live');
  return s;
}

describe('close codes by range', () => {
  it('the ranges of the protocol', () => {
    expect([4000, 4010, 4099].map(closeKind)).toEqual(['terminal', 'terminal', 'terminal']);
    expect([4100, 4103, 4199].map(closeKind)).toEqual(['reconnect', 'reconnect', 'reconnect']);
    expect([4400, 4429, 4499].map(closeKind)).toEqual(['protocol_error', 'protocol_error', 'protocol_error']);
    expect([1000, 1006, 4200, 3000].map(closeKind)).toEqual(['transport', 'transport', 'transport', 'transport']);
  });

  it('a reconnect code this client does not know (4150): reconnects with the same token, no status call', async () => {
    const { room, calls } = await started(() => waiting);
    ScriptedSocket.opened[0]!.serverClose(4150);
    await sleep(100);
    expect(ScriptedSocket.opened.length).toBe(2);
    expect(ScriptedSocket.opened[1]!.url).toBe(ScriptedSocket.opened[0]!.url);
    expect(calls.filter((c) => c.includes('/status'))).toEqual([]);
    room.stop();
  });

  it('a terminal code this client does not know (4050): asks the status; a place still there is kept by polling', async () => {
    const { room, calls } = await started(() => waiting);
    ScriptedSocket.opened[0]!.serverClose(4050);
    await sleep(100);
    expect(calls.filter((c) => c.includes('/status')).length).toBeGreaterThanOrEqual(1);
    expect(room.state).toBe('waiting');
    expect(room.connection).toBe('polling');
    expect(ScriptedSocket.opened.length).toBe(1); // never a reconnect loop on a terminal code
    room.stop();
  });

  it('a terminal code this client does not know (4050) for a place that ended: expired', async () => {
    const { room } = await started(() => gone);
    ScriptedSocket.opened[0]!.serverClose(4050);
    await sleep(100);
    expect(room.state).toBe('expired');
    room.stop();
  });

  it('a protocol-error code this client does not know (4450): keeps the place by polling, no reconnect', async () => {
    const { room, calls } = await started(() => waiting);
    ScriptedSocket.opened[0]!.serverClose(4450);
    await sleep(100);
    expect(ScriptedSocket.opened.length).toBe(1);
    expect(room.connection).toBe('polling');
    expect(calls.some((c) => c.includes('/status'))).toBe(true);
    expect(room.state).toBe('waiting');
    room.stop();
  });
});

describe('protocol version', () => {
  it('a welcome of another version: the client leaves the socket and polls (HTTP is versioned by path)', async () => {
    const s = scripted(() => waiting);
    const errors: string[] = [];
    s.room.addEventListener('error', (e) => errors.push(e.detail.code));
    await s.room.start();
    await sleep(5);
    ScriptedSocket.opened[0]!.welcome(PROTOCOL_VERSION + 1);
    await sleep(50);
    expect(ScriptedSocket.opened[0]!.readyState).toBe(3);
    expect(s.room.connection).toBe('polling');
    expect(errors).toContain('PROTOCOL_ERROR');
    expect(s.room.state).toBe('waiting');
    s.room.stop();
  });
});

// A scheduled sale (docs/PROTOCOL.md, "Scheduled sales"): the client waits for
// the line to open by the server's Retry-After, joins by itself, holds its
// pre-queue entry without a position, takes the drawn position, and stops
// for good when the event ends, however it hears of it.
const RECEIPT = '0123456789abcdef0123';
const prequeueJoin: Answer = { status: 202, body: { waiting_token: 'ev.BBBBBBBBBBBBBBBBBBBBBB', position_hint: 0, status: 'prequeue', receipt: RECEIPT } };
const notOpen = (retryAfter: string): Answer => ({
  status: 403,
  body: { error: { code: 'EVENT_NOT_OPEN', message: 'this event is not open yet', trace_id: '0', opens_at: '2030-01-01T10:00:00.000Z', starts_at: '2030-01-01T10:30:00.000Z' } },
  headers: { 'Retry-After': retryAfter },
});
const prequeueSnapshot = { status: 'prequeue', position: 0, people_ahead: 0, being_let_in: 0, eta_sec: 42, eta_low: 42, eta_high: 42, confidence: 1, event_state: 'prequeue', starts_at: '2030-01-01T10:30:00.000Z', receipt: RECEIPT };
const endedPoll: Answer = {
  status: 410,
  body: { error: { code: 'EVENT_ENDED', trace_id: '0', reason: 'sold_out', message: { en: 'All sold. Thank you.', ko: '매진되었어요.' }, ended_at: '2030-01-01T11:00:00.000Z' } },
};

describe('a scheduled sale', () => {
  it('before the line opens: scheduled (when, from the server), one retry after Retry-After, then the pre-queue by itself', async () => {
    let joins = 0;
    const s = scripted(() => waiting, { join: () => (++joins === 1 ? notOpen('1') : prequeueJoin) });
    const seen: ScheduledDetail[] = [];
    s.room.addEventListener('scheduled', (e) => seen.push(e.detail));
    await s.room.start();
    expect(s.room.state).toBe('scheduled');
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({ opens_at: '2030-01-01T10:00:00.000Z', starts_at: '2030-01-01T10:30:00.000Z', opens_in_sec: 1 });
    expect(seen[0]!.retry_in_ms).toBeGreaterThanOrEqual(1000); // the server's Retry-After, never a tight loop
    expect(s.room.schedule).toEqual(seen[0]);
    await s.room.start(); // a second start() while waiting does not ask again
    await sleep(500);
    expect(joins).toBe(1);
    expect(ScriptedSocket.opened).toHaveLength(0);
    await waitUntil(() => joins === 2, 3000);
    await waitUntil(() => ScriptedSocket.opened.length === 1, 1000);
    expect(s.room.state).toBe('prequeue');
    expect(s.room.token).toBe('ev.BBBBBBBBBBBBBBBBBBBBBB');
    expect(s.room.receipt).toBe(RECEIPT);
    expect(s.room.schedule).toBeUndefined();
    s.room.stop();
  });

  it('far ahead it asks again halfway, not every second', async () => {
    let joins = 0;
    const s = scripted(() => waiting, { join: () => (joins++, notOpen('600')) });
    const seen: ScheduledDetail[] = [];
    s.room.addEventListener('scheduled', (e) => seen.push(e.detail));
    await s.room.start();
    expect(seen[0]!.opens_in_sec).toBe(600);
    expect(seen[0]!.retry_in_ms).toBeGreaterThanOrEqual(300_000);
    expect(seen[0]!.retry_in_ms).toBeLessThanOrEqual(301_000);
    await sleep(200);
    expect(joins).toBe(1);
    s.room.stop(); // and stop() cancels the retry
  });

  it('the pre-queue: no position, the receipt; at the draw `drawn` and the position, the receipt kept', async () => {
    const s = scripted(() => waiting, { join: () => prequeueJoin });
    const positions: { status: string; position: number; receipt?: string }[] = [];
    const drawn: number[] = [];
    const paused: string[] = [];
    s.room.addEventListener('position', (e) => positions.push(e.detail));
    s.room.addEventListener('drawn', (e) => drawn.push(e.detail.position));
    s.room.addEventListener('paused', (e) => paused.push(e.detail.event_state));
    await s.room.start();
    expect(s.room.state).toBe('prequeue');
    await sleep(5);
    const ws = ScriptedSocket.opened[0]!;
    ws.welcome(PROTOCOL_VERSION, prequeueSnapshot);
    expect(s.room.state).toBe('prequeue');
    expect(s.room.last).toMatchObject({ status: 'prequeue', position: 0, eta_sec: 42, starts_at: '2030-01-01T10:30:00.000Z', receipt: RECEIPT, event_state: 'prequeue' });
    expect(paused).toEqual([]); // the pre-queue is not a pause
    ws.push({ type: 'position', status: 'waiting', position: 7, people_ahead: 6, being_let_in: 0, eta_sec: 30, eta_low: 20, eta_high: 40, confidence: 0, event_state: 'open' });
    expect(s.room.state).toBe('waiting');
    expect(drawn).toEqual([7]);
    expect(positions.at(-1)).toMatchObject({ status: 'waiting', position: 7, receipt: RECEIPT });
    expect(s.room.receipt).toBe(RECEIPT);
    ws.push({ type: 'position', status: 'waiting', position: 6, people_ahead: 5, being_let_in: 0, eta_sec: 25, eta_low: 20, eta_high: 40, confidence: 0, event_state: 'open' });
    expect(drawn).toEqual([7]); // once
    expect(s.room.connection).toBe('live');
    s.room.stop();
  });

  it('a reload in the pre-queue resumes it (status prequeue), and after the draw a poll brings the position', async () => {
    let phase: 'pre' | 'drawn' = 'pre';
    const storage = new MemoryStorage();
    const statusBody = () =>
      phase === 'pre'
        ? { status: 200, body: { ...prequeueSnapshot, event_id: 'ev', waiting_time: 3, ready_for_entry: false, poll_after_ms: 1000 } }
        : { status: 200, body: { ...waiting.body, position: 4, people_ahead: 3 } };
    // a place this browser joined earlier (another page load)
    storage.setItem('wr:ev', 'ev.BBBBBBBBBBBBBBBBBBBBBB');
    const s = scripted(statusBody, { join: () => prequeueJoin, transport: 'poll', storage });
    const room = s.room;
    const drawn: number[] = [];
    room.addEventListener('drawn', (e) => drawn.push(e.detail.position));
    await room.start();
    expect(room.state).toBe('prequeue');
    expect(room.receipt).toBe(RECEIPT);
    expect(s.calls.filter((c) => c.includes('/join'))).toEqual([]);
    phase = 'drawn';
    await waitUntil(() => room.state === 'waiting', 3000);
    expect(drawn).toEqual([4]);
    expect(room.last).toMatchObject({ position: 4, receipt: RECEIPT });
    room.stop();
  });
});

describe('the event ended', () => {
  it('an `ended` message: state ended with the reason and message, no reconnect, no poll, the place forgotten', async () => {
    const { room, calls } = await started(() => waiting);
    const ended: EndedDetail[] = [];
    room.addEventListener('ended', (e) => ended.push(e.detail));
    const ws = ScriptedSocket.opened[0]!;
    ws.push({ type: 'ended', reason: 'sold_out', message: { en: 'All sold.' }, ended_at: '2030-01-01T11:00:00.000Z' });
    ws.serverClose(4020);
    await sleep(100);
    expect(room.state).toBe('ended');
    expect(ended).toEqual([{ reason: 'sold_out', message: { en: 'All sold.' }, ended_at: '2030-01-01T11:00:00.000Z' }]);
    expect(room.ending).toEqual(ended[0]);
    expect(room.notice).toEqual({ en: 'All sold.' });
    expect(room.connection).toBe('offline');
    expect(ScriptedSocket.opened).toHaveLength(1);
    expect(calls.filter((c) => c.includes('/status'))).toEqual([]);
    await expect(room.enter()).rejects.toMatchObject({ code: 'EVENT_ENDED' });
    room.stop();
  });

  it('close 4020 without a message (a socket opened to an ended event): the status answer (410) says why', async () => {
    const { room, calls } = await started(() => endedPoll);
    ScriptedSocket.opened[0]!.serverClose(4020);
    await waitUntil(() => room.state === 'ended', 1000);
    expect(room.ending).toEqual({ reason: 'sold_out', message: { en: 'All sold. Thank you.', ko: '매진되었어요.' }, ended_at: '2030-01-01T11:00:00.000Z' });
    expect(calls.filter((c) => c.includes('/status'))).toHaveLength(1);
    expect(ScriptedSocket.opened).toHaveLength(1);
    room.stop();
  });

  it('polling: a 410 EVENT_ENDED ends it, and the polls stop', async () => {
    let ended = false;
    const s = scripted(() => (ended ? endedPoll : { ...waiting, body: { ...waiting.body, poll_after_ms: 1000 } }), { transport: 'poll' });
    await s.room.start();
    await waitUntil(() => s.room.connection === 'polling', 1000);
    ended = true;
    await waitUntil(() => s.room.state === 'ended', 3000);
    expect(s.room.ending?.reason).toBe('sold_out');
    const polls = s.calls.filter((c) => c.includes('/status')).length;
    await sleep(1500);
    expect(s.calls.filter((c) => c.includes('/status')).length).toBe(polls);
    s.room.stop();
  });

  it('a join refused with 410: ended, with the message the public event carries; start() resolves', async () => {
    const s = scripted(() => waiting, {
      join: () => ({ status: 410, body: { error: { code: 'EVENT_ENDED', message: 'this event has ended', trace_id: '0', reason: 'cancelled', ended_at: '2030-01-01T11:00:00.000Z' } } }),
      event: () => ({ status: 200, body: { event_id: 'ev', state: 'ended', access: 'anonymous', target_url: '', message: { en: 'Cancelled, refunds follow.' }, end_reason: 'cancelled' } }),
    });
    await s.room.start();
    expect(s.room.state).toBe('ended');
    expect(s.room.ending).toEqual({ reason: 'cancelled', message: { en: 'Cancelled, refunds follow.' }, ended_at: '2030-01-01T11:00:00.000Z' });
    expect(s.room.token).toBeUndefined();
    expect(ScriptedSocket.opened).toHaveLength(0);
    s.room.stop();
  });
});

// A join challenge (docs/PROTOCOL.md, "Join challenges"): a join answered 428
// CHALLENGE_REQUIRED is made again with a proof under the same
// Idempotency-Key. Proof of work is solved in a worker (here a stand-in with
// the real algorithm, at a small difficulty, reporting every 64 tries rather
// than 65,536); an external challenge's token comes from the site's hook. A
// proof refused as expired or used is replaced once, never more.
const zeroBits = (d: Buffer): number => {
  let n = 0;
  for (const b of d) {
    if (b === 0) {
      n += 8;
      continue;
    }
    return n + Math.clz32(b) - 24;
  }
  return n;
};
const solves = (challenge: string, solution: string, difficulty: number): boolean => zeroBits(createHash('sha256').update(`${challenge}:${solution}`).digest()) >= difficulty;

class FakePowWorker {
  static made: FakePowWorker[] = [];
  static fail: 'load' | 'silent' | undefined;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onerror: ((ev: { message: string; preventDefault(): void }) => void) | null = null;
  terminated = false;
  constructor(readonly url: string) {
    FakePowWorker.made.push(this);
  }
  postMessage(m: { challenge: string; difficulty: number }): void {
    setTimeout(() => {
      if (this.terminated) return;
      if (FakePowWorker.fail === 'load') return this.onerror?.({ message: '', preventDefault() {} });
      if (FakePowWorker.fail === 'silent') return;
      for (let n = 0; ; n++) {
        if (solves(m.challenge, String(n), m.difficulty)) return this.onmessage?.({ data: { type: 'solved', solution: String(n), tried: n + 1, ms: 1 } });
        if ((n & 63) === 63) this.onmessage?.({ data: { type: 'progress', tried: n + 1 } });
      }
    }, 5);
  }
  terminate(): void {
    this.terminated = true;
  }
}

describe('a join challenge', () => {
  const DIFFICULTY = 9;
  let issued = 0;
  const pow = (): Answer => ({
    status: 200,
    body: { event_id: 'ev', kind: 'pow', algorithm: 'sha256-leading-zero-bits', challenge: `v1.ev.${Date.now() + 120_000}.${DIFFICULTY}.n${++issued}.mac`, difficulty: DIFFICULTY, expires_at: new Date(Date.now() + 120_000).toISOString() },
  });
  const required = (kind: 'pow' | 'external'): Answer => ({ status: 428, body: { error: { code: 'CHALLENGE_REQUIRED', message: 'this event needs a solved challenge', trace_id: '0', kind } } });
  const failed = (reason: string): Answer => ({ status: 403, body: { error: { code: 'CHALLENGE_FAILED', message: `the challenge proof was not accepted (${reason})`, trace_id: '0', reason } } });
  const accepted: Answer = { status: 202, body: { waiting_token: 'ev.CCCCCCCCCCCCCCCCCCCCCC', position_hint: 1, status: 'waiting' } };
  /** a gateway that checks the proof for real (pow) and answers the scripted refusals in turn */
  const gateway = (refusals: Answer[]) => (body: Record<string, unknown>): Answer => {
    const p = body.proof as { challenge?: string; solution?: string; token?: string } | undefined;
    if (!p) return required('pow');
    if (p.challenge && !solves(p.challenge, p.solution ?? '', DIFFICULTY)) return failed('insufficient');
    return refusals.shift() ?? accepted;
  };
  const fresh = () => {
    FakePowWorker.made = [];
    FakePowWorker.fail = undefined;
  };

  it('proof of work: 428, a challenge solved in the worker, the join again with the proof and the same Idempotency-Key; progress events; expired, then used: one fresh challenge each time, never more', async () => {
    // expired: a fresh challenge; then a join refused as used: a fresh one again
    for (const refusal of ['expired', 'used']) {
      fresh();
      const s = scripted(() => waiting, { join: gateway([failed(refusal)]), challenge: pow, Worker: FakePowWorker as unknown as typeof Worker });
      const seen: ChallengeDetail[] = [];
      s.room.addEventListener('challenge', (e) => seen.push(e.detail));
      await s.room.start();
      expect(s.room.state).toBe('waiting');
      expect(s.room.token).toBe('ev.CCCCCCCCCCCCCCCCCCCCCC');
      expect(s.room.challenge).toBeUndefined(); // over once joined
      expect(s.calls.filter((c) => c.includes('/join') || c.includes('/challenge'))).toEqual([
        'POST /api/v1/queue/join', // 428
        'GET /api/v1/queue/challenge',
        'POST /api/v1/queue/join', // refused: expired / used
        'GET /api/v1/queue/challenge',
        'POST /api/v1/queue/join', // 202
      ]);
      // one Idempotency-Key for the whole join
      expect(new Set(s.joins.map((j) => j.key)).size).toBe(1);
      expect(s.joins[0]!.key).toMatch(/^[A-Za-z0-9_-]{8,}$/);
      expect(s.joins[0]!.body).toEqual({ event_id: 'ev' });
      const [p1, p2] = [s.joins[1]!.body.proof, s.joins[2]!.body.proof] as { challenge: string; solution: string }[];
      expect(p1!.challenge).not.toBe(p2!.challenge); // a fresh challenge, solved anew
      for (const p of [p1!, p2!]) expect(solves(p.challenge, p.solution, DIFFICULTY)).toBe(true);
      // the worker: the gateway's /pow-worker.js, one per challenge, each let go
      expect(FakePowWorker.made.map((w) => w.url)).toEqual(['http://gateway.test/pow-worker.js', 'http://gateway.test/pow-worker.js']);
      expect(FakePowWorker.made.every((w) => w.terminated)).toBe(true);
      // progress: fetching, solving from 0 with expected 2^difficulty, then joining with the proof, for round 1 and round 2
      for (const round of [1, 2]) {
        const r = seen.filter((d) => d.round === round);
        expect(r[0]).toMatchObject({ kind: 'pow', phase: 'fetching', tried: 0 });
        expect(r[1]).toMatchObject({ kind: 'pow', phase: 'solving', tried: 0, expected: 2 ** DIFFICULTY, difficulty: DIFFICULTY });
        expect(r.at(-1)).toMatchObject({ kind: 'pow', phase: 'joining', expected: 2 ** DIFFICULTY });
        const tried = r.filter((d) => d.phase === 'solving').map((d) => d.tried);
        for (let i = 1; i < tried.length; i++) expect(tried[i]).toBeGreaterThan(tried[i - 1]!);
        for (let i = 1; i < r.length; i++) expect(r[i]!.elapsed_ms).toBeGreaterThanOrEqual(r[i - 1]!.elapsed_ms);
      }
      s.room.stop();
    }
  });

  it('proof of work: expired or used a second time, or any other refusal: a clear error, no more tries', async () => {
    for (const [refusals, reason, joins] of [
      [[failed('expired'), failed('expired')], 'expired', 3],
      [[failed('used'), failed('expired')], 'expired', 3],
      [[failed('wrong_event')], 'wrong_event', 2],
    ] as const) {
      fresh();
      const s = scripted(() => waiting, { join: gateway([...refusals]), challenge: pow, Worker: FakePowWorker as unknown as typeof Worker });
      const err = await s.room.start().catch((e: unknown) => e);
      expect(err).toMatchObject({ name: 'WaitingRoomError', code: 'CHALLENGE_FAILED', status: 403, details: { reason } });
      expect(s.joins).toHaveLength(joins);
      expect(s.calls.filter((c) => c.includes('/challenge'))).toHaveLength(joins - 1);
      expect(s.room.state).toBe('idle');
      expect(s.room.challenge).toBeUndefined();
      expect(s.room.token).toBeUndefined();
      await sleep(100);
      expect(s.joins).toHaveLength(joins); // and nothing more
      s.room.stop();
    }
  });

  it('proof of work where no worker can run: CHALLENGE_UNSUPPORTED (no Worker, or the script does not load)', async () => {
    fresh();
    const none = scripted(() => waiting, { join: gateway([]), challenge: pow, Worker: null });
    await expect(none.room.start()).rejects.toMatchObject({ code: 'CHALLENGE_UNSUPPORTED', details: { kind: 'pow' } });
    expect(none.joins).toHaveLength(1);
    FakePowWorker.fail = 'load';
    const broken = scripted(() => waiting, { join: gateway([]), challenge: pow, Worker: FakePowWorker as unknown as typeof Worker });
    await expect(broken.room.start()).rejects.toMatchObject({ code: 'CHALLENGE_UNSUPPORTED', message: expect.stringContaining('/pow-worker.js') as unknown });
    expect(broken.joins).toHaveLength(1);
    expect(FakePowWorker.made[0]!.terminated).toBe(true);
  });

  it('stop() while solving lets the worker go and joins nothing', async () => {
    fresh();
    FakePowWorker.fail = 'silent';
    const s = scripted(() => waiting, { join: gateway([]), challenge: pow, Worker: FakePowWorker as unknown as typeof Worker });
    const started = s.room.start();
    await waitUntil(() => s.room.challenge?.phase === 'solving', 1000);
    s.room.stop();
    await started;
    expect(FakePowWorker.made[0]!.terminated).toBe(true);
    expect(s.joins).toHaveLength(1);
  });

  it('a scheduled sale: the proof a join carried before the line opened is carried again, not solved anew', async () => {
    fresh();
    let opened = false;
    const join = gateway([]);
    const s = scripted(() => waiting, { join: (b) => (b.proof && !opened ? ((opened = true), notOpen('1')) : join(b)), challenge: pow, Worker: FakePowWorker as unknown as typeof Worker });
    await s.room.start();
    expect(s.room.state).toBe('scheduled');
    await waitUntil(() => s.room.state === 'waiting', 3000);
    expect(s.joins.map((j) => !!j.body.proof)).toEqual([false, true, true]);
    expect(s.joins[2]!.body.proof).toEqual(s.joins[1]!.body.proof);
    expect(s.calls.filter((c) => c.includes('/challenge'))).toHaveLength(1);
    s.room.stop();
  });

  it("external: the site's getChallengeToken gives the token, the join carries {token}; refused as used: one fresh token", async () => {
    const asked: string[] = [];
    let n = 0;
    const tokens: string[] = [];
    const s = scripted(() => waiting, {
      join: (b) => {
        const p = b.proof as { token?: string } | undefined;
        if (!p) return required('external');
        tokens.push(p.token ?? '');
        return tokens.length === 1 ? failed('used') : accepted;
      },
      getChallengeToken: async (eventId) => {
        asked.push(eventId);
        await sleep(5);
        return `site-token-${++n}`;
      },
    });
    const seen: ChallengeDetail[] = [];
    s.room.addEventListener('challenge', (e) => seen.push(e.detail));
    await s.room.start();
    expect(s.room.state).toBe('waiting');
    expect(asked).toEqual(['ev', 'ev']);
    expect(tokens).toEqual(['site-token-1', 'site-token-2']);
    expect(s.joins.map((j) => j.body.proof)).toEqual([undefined, { token: 'site-token-1' }, { token: 'site-token-2' }]);
    expect(new Set(s.joins.map((j) => j.key)).size).toBe(1);
    expect(s.calls.filter((c) => c.includes('/challenge'))).toEqual([]); // nothing to fetch for an external challenge
    expect(seen.map((d) => `${d.round}:${d.kind}:${d.phase}`)).toEqual(['1:external:verifying', '1:external:joining', '2:external:verifying', '2:external:joining']);
    s.room.stop();
  });

  it('external without a hook: CHALLENGE_REQUIRED (kind external), nothing more; a hook that fails: CHALLENGE_NOT_SOLVED; a token rejected by the verifier: CHALLENGE_FAILED', async () => {
    const bare = scripted(() => waiting, { join: () => required('external') });
    await expect(bare.room.start()).rejects.toMatchObject({ code: 'CHALLENGE_REQUIRED', status: 428, details: { kind: 'external' }, message: expect.stringContaining('getChallengeToken') as unknown });
    expect(bare.joins).toHaveLength(1);
    expect(bare.room.state).toBe('idle');

    const failing = scripted(() => waiting, { join: () => required('external'), getChallengeToken: () => Promise.reject(new Error('widget closed')) });
    await expect(failing.room.start()).rejects.toMatchObject({ code: 'CHALLENGE_NOT_SOLVED', message: expect.stringContaining('widget closed') as unknown });
    expect(failing.joins).toHaveLength(1);

    let calls = 0;
    const rejected = scripted(() => waiting, { join: (b) => (b.proof ? failed('rejected') : required('external')), getChallengeToken: async () => `t${++calls}` });
    await expect(rejected.room.start()).rejects.toMatchObject({ code: 'CHALLENGE_FAILED', details: { reason: 'rejected' } });
    expect(rejected.joins).toHaveLength(2);
    expect(calls).toBe(1);
  });
});

async function waitUntil(pred: () => boolean, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > until) throw new Error('timed out');
    await sleep(10);
  }
}
