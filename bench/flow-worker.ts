// One load-generator process for the launch-burst scenario: users arrive
// evenly over a window and follow the k6 flow of ../shared/CONTRACT.md:
// join (202) -> poll status every 2-4 s until ready_for_entry -> enter (200).
// Reports per-operation latencies, status codes and errors to the parent.
import { Client } from './lib.js';

interface Start {
  kind: 'start';
  url: string;
  users: number;
  arrivalSec: number;
  eventId: string;
  localAddress: string;
  /** give up on users still in line after this many ms from the start */
  limitMs: number;
}

const lat: Record<'join' | 'status' | 'enter', number[]> = { join: [], status: [], enter: [] };
const codes: Record<string, number> = {};
let errors = 0;
let completed = 0;
let notReady = 0;
const waits: number[] = [];
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function timed(c: Client, op: 'join' | 'status' | 'enter', method: string, path: string, body?: string): Promise<{ status: number; body: string } | undefined> {
  const t = performance.now();
  try {
    const r = await c.req(method, path, body);
    lat[op].push(performance.now() - t);
    codes[`${op} ${r.status}`] = (codes[`${op} ${r.status}`] ?? 0) + 1;
    return r;
  } catch {
    errors++;
    codes[`${op} error`] = (codes[`${op} error`] ?? 0) + 1;
    return undefined;
  }
}

async function user(c: Client, m: Start, stopAt: number): Promise<void> {
  const joinedAt = Date.now();
  const j = await timed(c, 'join', 'POST', '/api/v1/queue/join', JSON.stringify({ event_id: m.eventId }));
  if (!j || j.status !== 202) return;
  const token = (JSON.parse(j.body) as { waiting_token: string }).waiting_token;
  const q = `/api/v1/queue/status?token=${encodeURIComponent(token)}`;
  for (;;) {
    const s = await timed(c, 'status', 'GET', q);
    if (!s || s.status !== 200) return;
    if ((JSON.parse(s.body) as { ready_for_entry: boolean }).ready_for_entry) break;
    if (Date.now() > stopAt) return;
    await sleep(2000 + Math.random() * 2000);
  }
  for (;;) {
    const e = await timed(c, 'enter', 'POST', '/api/v1/queue/enter', JSON.stringify({ waiting_token: token }));
    if (!e) return;
    if (e.status === 200) {
      completed++;
      waits.push(Date.now() - joinedAt);
      return;
    }
    if (e.status !== 403 || Date.now() > stopAt) return;
    notReady++;
    await sleep(1000);
  }
}

process.on('message', (m: Start | { kind: 'stop' }) => {
  if (m.kind === 'stop') process.exit(0);
  const c = new Client(m.url, 256, m.localAddress);
  const t0 = Date.now();
  const stopAt = t0 + m.limitMs;
  const all: Promise<void>[] = [];
  const gap = (m.arrivalSec * 1000) / m.users;
  let started = 0;
  const tick = setInterval(() => {
    const due = Math.min(m.users, Math.floor((Date.now() - t0) / gap) + 1);
    while (started < due) {
      started++;
      all.push(user(c, m, stopAt));
    }
    if (started >= m.users) clearInterval(tick);
  }, 5);
  const finish = async (): Promise<void> => {
    while (started < m.users) await sleep(50);
    await Promise.race([Promise.all(all), sleep(Math.max(0, stopAt - Date.now()) + 12_000)]);
    process.send?.({ kind: 'done', lat, codes, errors, completed, notReady, waits, users: m.users, elapsedMs: Date.now() - t0 });
    c.close();
  };
  void finish();
});
