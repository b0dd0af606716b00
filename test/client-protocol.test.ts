import { describe, expect, it } from 'vitest';
import { WaitingRoomClient } from '../src/client/waiting-room.js';
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
  welcome(v = PROTOCOL_VERSION): void {
    const snapshot = { status: 'waiting', position: 3, people_ahead: 2, being_let_in: 0, eta_sec: 10, eta_low: 5, eta_high: 20, confidence: 0.5, event_state: 'open' };
    this.onmessage?.({ data: JSON.stringify({ type: 'welcome', v, event_id: 'ev', ...snapshot }) });
  }
  serverClose(code: number): void {
    this.readyState = 3;
    this.onclose?.({ code });
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function scripted(statusAnswer: () => { status: number; body: unknown }) {
  ScriptedSocket.opened = [];
  const calls: string[] = [];
  const fetchFn = async (url: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const u = new URL(String(url));
    calls.push(`${init?.method ?? 'GET'} ${u.pathname}`);
    if (u.pathname === '/api/v1/queue/join') return new Response(JSON.stringify({ waiting_token: 'ev.AAAAAAAAAAAAAAAAAAAAAA', position_hint: 3, status: 'waiting' }), { status: 202 });
    const a = statusAnswer();
    return new Response(JSON.stringify(a.body), { status: a.status, headers: { 'content-type': 'application/json' } });
  };
  const room = new WaitingRoomClient({
    eventId: 'ev',
    baseUrl: 'http://gateway.test',
    storage: new MemoryStorage(),
    fetch: fetchFn as typeof fetch,
    WebSocket: ScriptedSocket as unknown as typeof WebSocket,
    minBackoffMs: 10,
    maxBackoffMs: 20,
  });
  return { room, calls };
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
