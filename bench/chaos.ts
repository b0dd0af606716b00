// The chaos drill (`npm run chaos`): several gateway processes (production
// configuration: JWT auth, a shared admission key, real gRPC backends) on one
// Redis or on a local 3+3 Redis Cluster; a population of simulated users who
// hold sockets (one or two tabs), drop and reconnect inside their grace,
// poll, hold a socket and poll and then fall back to polling, leave or
// abandon, get admitted, enter and reserve (sometimes twice, or other seats
// after a timeout, to try a double spend); and random faults: gateway
// SIGKILL, SIGSTOP+SIGCONT, SIGTERM, a gateway cut off from Redis (one
// server: each gateway reaches it through its own TCP proxy), a Redis stall
// (one server) or a primary failover (cluster), a backend answering after its
// deadline. A model of what every client did is
// then checked against Redis, what was pushed and what the backend made:
//
//  - nobody who kept a socket open (or reconnected inside the grace) or
//    polled inside the poll timeout lost their place (expired for liveness);
//  - everyone still in line is in arrival order, and the position last
//    pushed to each open socket equals a recount in Redis;
//  - nobody was admitted twice (per user, per waiting token);
//  - promotions stayed within the token bucket over every window of ticks;
//  - no admission token bought two reservations.
//
// Loopback only, bounded in users and time, every child stopped at the end.
// Usage: node dist/bench/chaos.js [--minutes=5] [--users=2000] [--runs=1]
//        [--cluster] [--seed=N] [--grace=6]
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis, type Cluster } from 'ioredis';
import { SignJWT } from 'jose';
import { unpack } from 'msgpackr';
import WebSocket from 'ws';
import { freePort, startEmbeddedRedis, type EmbeddedRedis } from '../src/redis/embedded.js';
import { startCluster, type LocalCluster, type LocalNode } from '../src/redis/local-cluster.js';
import { startReservationSim, type RunningReservationSim } from '../src/sim/reservation-sim.js';
import { startPaymentSim } from '../src/sim/payment-sim.js';
import type { RunningSim } from '../src/sim/common.js';
import { eventKeys, userKey } from '../src/redis/keys.js';
import { installCleanup, loadavg, root, sleep, stopChild, track } from './lib.js';
import { startTcpProxy, type TcpProxy } from './tcp-proxy.js';

export interface ChaosOptions {
  durationMs: number;
  users: number;
  cluster: boolean;
  seed: number;
  graceSec: number;
  pollTimeoutSec: number;
  gateways: number;
  /** admissions per second and burst of the drill's event */
  rate: number;
  burst: number;
  /** mean time between faults */
  faultEveryMs: number;
  /** only these fault kinds (default: all) */
  faults?: string[];
  /** only these user kinds, in equal shares (default: the usual mix) */
  kinds?: Kind[];
  log: (line: string) => void;
}

export interface ChaosReport {
  options: Omit<ChaosOptions, 'log'>;
  startedAt: string;
  loadavg: [string, string];
  users: Record<string, number>;
  joined: number;
  faults: Record<string, number>;
  /** users whose every gap was inside the grace / poll timeout and who did not leave or abandon */
  entitled: number;
  /** users who could not be held by the rules (a gap longer than the grace, made by faults), with why */
  excused: Record<string, number>;
  inLineAtEnd: number;
  admitted: number;
  reservations: number;
  doubleSpendAttempts: number;
  placesLost: number;
  outOfOrder: number;
  stalePushes: number;
  admittedTwice: number;
  tokensSpentTwice: number;
  bucketViolations: number;
  readyWindowsMissed: number;
  /** cluster only: operations acknowledged in the replication window before a primary was killed */
  inReplicationWindow: number;
  violations: string[];
  http: Record<string, number>;
  closeCodes: Record<string, number>;
}

const EVENT = 'chaos';
const PREFIX = 'chaos:';
const ADMIN = `chaos-admin-${randomBytes(16).toString('hex')}`;
const JWT_SECRET = randomBytes(48).toString('base64url');
const secretKey = new TextEncoder().encode(JWT_SECRET);

// ---------------------------------------------------------------- seeded random

function rng(seed: number): () => number {
  let a = seed >>> 0 || 1;
  return () => {
    // mulberry32
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// ---------------------------------------------------------------- gateways

type SlotState = 'up' | 'stopped' | 'draining' | 'cut' | 'down';

class GatewaySlot {
  proc: ChildProcess | undefined;
  url = '';
  state: SlotState = 'down';
  incarnation = 0;
  instanceId = '';
  private exited: Promise<void> = Promise.resolve();

  constructor(
    readonly id: number,
    private readonly env: Record<string, string>,
    /** this gateway's own way to Redis (one server only), to cut it off alone */
    readonly proxy: TcpProxy | undefined,
  ) {}

  async start(): Promise<void> {
    this.incarnation++;
    this.instanceId = `gw${this.id}-${this.incarnation}`;
    const port = await freePort();
    const child = track(
      // CHAOS_GATEWAY_ENTRY: another build of the gateway (e.g. an older commit's dist/src/main.js) to drill instead
      spawn(process.execPath, [process.env.CHAOS_GATEWAY_ENTRY || join(root, 'dist', 'src', 'main.js')], {
        env: { ...this.env, ...(this.proxy ? { REDIS_ADDRESS: this.proxy.address } : {}), SERVER_PORT: String(port), INSTANCE_ID: this.instanceId },
        stdio: ['ignore', 'ignore', 'pipe'],
        detached: true,
      }),
    );
    let err = '';
    child.stderr?.on('data', (b: Buffer) => {
      if (err.length < 4000) err += b.toString();
    });
    this.exited = new Promise((r) => child.once('exit', () => r()));
    this.proc = child;
    this.url = `http://127.0.0.1:${port}`;
    for (let i = 0; ; i++) {
      if (child.exitCode !== null) throw new Error(`gateway ${this.instanceId} exited ${child.exitCode}: ${err}`);
      if (await fetch(`${this.url}/readyz`).then((r) => r.ok, () => false)) break;
      if (i > 300) throw new Error(`gateway ${this.instanceId} not ready after 30 s: ${err}`);
      await sleep(100);
    }
    this.state = 'up';
  }

  signal(sig: NodeJS.Signals): void {
    if (this.proc?.pid) process.kill(this.proc.pid, sig);
  }

  async kill(): Promise<void> {
    this.state = 'down';
    this.signal('SIGKILL');
    await this.exited;
  }

  async term(): Promise<void> {
    this.state = 'draining'; // readiness 503 at once: the load balancer stops sending here
    this.signal('SIGTERM');
    await Promise.race([this.exited, sleep(20_000)]);
    if (this.proc && this.proc.exitCode === null && this.proc.signalCode === null) await this.kill();
    this.state = 'down';
  }

  async stop(): Promise<void> {
    if (this.proc) await stopChild(this.proc);
    this.state = 'down';
  }
}

// ---------------------------------------------------------------- simulated users

export type Kind = 'socket' | 'tabs' | 'dropper' | 'poller' | 'hybrid' | 'leaver' | 'abandoner';
const KINDS: [Kind, number][] = [
  ['socket', 0.3],
  ['tabs', 0.15],
  ['dropper', 0.15],
  ['poller', 0.15],
  // a socket and polls at once (a second tab in polling mode), then the socket goes for good and polls go on
  ['hybrid', 0.15],
  ['leaver', 0.05],
  ['abandoner', 0.05],
];

interface Shared {
  o: ChaosOptions;
  rand: () => number;
  /** a gateway url, as the load balancer would choose it (`avoid`: another one if possible) */
  pick: (avoid?: string) => string;
  stopped: boolean;
  http: Record<string, number>;
  closeCodes: Record<string, number>;
  anomalies: string[];
}

const isTerminal = (code: number): boolean => code >= 4000 && code <= 4999 && !(code >= 4100 && code <= 4199);

/** The drill stops by itself: a setup step that does not answer fails the run instead of hanging it. */
function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
    }),
  ]);
}

async function send(sh: Shared, method: string, url: string, body: unknown, headers: Record<string, string>): Promise<{ status: number; json: Record<string, unknown> }> {
  try {
    const r = await fetch(url, {
      method,
      headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
      body: body !== undefined ? JSON.stringify(body) : undefined,
      signal: AbortSignal.timeout(8000),
    });
    const text = await r.text();
    sh.http[String(r.status)] = (sh.http[String(r.status)] ?? 0) + 1;
    let json: Record<string, unknown> = {};
    try {
      json = text ? (JSON.parse(text) as Record<string, unknown>) : {};
    } catch {
      json = {};
    }
    return { status: r.status, json };
  } catch {
    sh.http.network = (sh.http.network ?? 0) + 1;
    return { status: 0, json: {} };
  }
}

const jtiOf = (jwt: string): string => {
  try {
    return String((JSON.parse(Buffer.from(jwt.split('.')[1] ?? '', 'base64url').toString()) as { jti?: string }).jti);
  } catch {
    return jwt;
  }
};
const errCode = (j: Record<string, unknown>): string => String((j.error as { code?: string } | undefined)?.code ?? '');
const errReason = (j: Record<string, unknown>): string => String((j.error as { reason?: string } | undefined)?.reason ?? '');

class Tab {
  ws: WebSocket | undefined;
  /** the instance this tab is (or was last) connected to */
  url = '';
  welcomed = false;
  lastPos = -1;
  private attempt = 0;
  closedForGood = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly u: SimUser,
    private readonly pickUrl: () => string,
  ) {}

  connect(): void {
    if (this.closedForGood || this.u.sh.stopped && this.u.finished) return;
    this.url = this.pickUrl();
    this.u.note(`connect ${this.url.slice(-5)}`);
    const base = this.url.replace(/^http/, 'ws');
    const ws = new WebSocket(`${base}/api/v1/queue/ws?token=${encodeURIComponent(this.u.token)}`, ['waiting-room.v1.json'], { handshakeTimeout: 5000 });
    this.ws = ws;
    ws.on('message', (data: Buffer) => {
      let m: Record<string, unknown>;
      try {
        m = JSON.parse(data.toString()) as Record<string, unknown>;
      } catch {
        return;
      }
      if (m.type === 'welcome') {
        this.u.note(`welcome ${this.url.slice(-5)} pos ${String(m.position)}`);
        this.attempt = 0;
        this.welcomed = true;
        this.lastPos = m.position as number;
        this.u.held(+1);
        if (m.status === 'ready') this.u.onReady();
      } else if (m.type === 'position') this.lastPos = m.position as number;
      else if (m.type === 'ready') this.u.onReady();
    });
    ws.on('error', () => undefined);
    ws.on('close', (code: number, reason: Buffer) => {
      this.u.note(`close ${code} ${reason.toString().slice(0, 40)} ${this.url.slice(-5)}${this.ws !== ws ? ' (dropped)' : ''}`);
      const sh = this.u.sh;
      sh.closeCodes[String(code)] = (sh.closeCodes[String(code)] ?? 0) + 1;
      if (this.welcomed) this.u.held(-1);
      this.welcomed = false;
      if (this.ws !== ws) return;
      this.ws = undefined;
      if (isTerminal(code)) {
        this.u.onTerminal(code);
        return;
      }
      if (this.closedForGood) return;
      // the real client's backoff (src/client/waiting-room.ts)
      const delay = code === 4100 ? this.u.sh.rand() * 1000 : this.u.sh.rand() * Math.min(8000, 500 * 2 ** this.attempt++);
      this.timer = setTimeout(() => this.connect(), delay);
    });
  }

  /** abrupt drop (network gone): the server sees the connection die; reconnect after `afterMs` */
  drop(afterMs: number): void {
    const ws = this.ws;
    if (!ws) return;
    this.u.note(`drop, back in ${Math.round(afterMs)} ms`);
    this.ws = undefined;
    if (this.welcomed) this.u.held(-1);
    this.welcomed = false;
    ws.terminate();
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), afterMs);
  }

  /** the tab is closed: a clean close, no reconnect */
  close(): void {
    this.closedForGood = true;
    clearTimeout(this.timer);
    const ws = this.ws;
    this.ws = undefined;
    if (ws) {
      if (this.welcomed) this.u.held(-1);
      this.welcomed = false;
      ws.close(1000);
    }
  }

  get open(): boolean {
    return this.welcomed && this.ws?.readyState === WebSocket.OPEN;
  }
}

class SimUser {
  token = '';
  jwt = '';
  joinSentAt = 0;
  joinAckAt = 0;
  tabs: Tab[] = [];
  heldCount = 0;
  /** when the user last stopped being held by a socket (0 while held) */
  gapStart = 0;
  maxGap = 0;
  firstHeldAt = 0;
  lastPollOk = 0;
  maxPollGap = 0;
  /** the user meant to give up the place (left, or abandoned it) */
  gaveUp: 'left' | 'abandoned' | undefined;
  leftAcked = false;
  terminalCode = 0;
  entering = false;
  enterKey = randomUUID();
  reservationToken = '';
  /** distinct admissions (token jti) received from enter */
  readonly admissions = new Set<string>();
  readonly reservationIds = new Set<string>();
  finished = false;
  readySeen = false;
  /** what happened to this user (the last 30 things), for explaining a violation */
  readonly events: string[] = [];
  private pollTimer: NodeJS.Timeout | undefined;

  note(what: string): void {
    this.events.push(`${new Date().toISOString().slice(11, 23)} ${what}`);
    if (this.events.length > 30) this.events.shift();
  }

  constructor(
    readonly i: number,
    readonly kind: Kind,
    readonly sh: Shared,
  ) {}

  get sub(): string {
    return `user-${this.i}`;
  }

  held(d: number): void {
    if (this.finished) return; // admitted, left or gone: what happens to its sockets after that is not a gap
    const now = Date.now();
    const before = this.heldCount;
    this.heldCount += d;
    if (before === 0 && this.heldCount > 0) {
      if (this.firstHeldAt === 0) this.firstHeldAt = now;
      else if (this.gapStart > 0) this.maxGap = Math.max(this.maxGap, now - this.gapStart);
      this.gapStart = 0;
    } else if (before > 0 && this.heldCount === 0) this.gapStart = now;
  }

  async join(): Promise<void> {
    const sh = this.sh;
    this.jwt = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject(this.sub).setExpirationTime('2h').sign(secretKey);
    this.joinSentAt = Date.now();
    for (let attempt = 0; !sh.stopped; attempt++) {
      const r = await send(sh, 'POST', `${sh.pick()}/api/v1/queue/join`, { event_id: EVENT }, { authorization: `Bearer ${this.jwt}` });
      const existing = (r.json.error as { waiting_token?: string } | undefined)?.waiting_token;
      if (r.status === 202 || (r.status === 409 && existing)) {
        this.token = r.status === 202 ? String(r.json.waiting_token) : String(existing);
        this.joinAckAt = Date.now();
        break;
      }
      await sleep(200 + sh.rand() * Math.min(2000, 200 * 2 ** attempt));
    }
    if (!this.token) return;
    this.begin();
  }

  private begin(): void {
    const sh = this.sh;
    const d = sh.o.durationMs;
    if (this.kind === 'poller' || this.kind === 'hybrid') {
      void this.poll();
      if (this.kind === 'poller') return;
    }
    const tabs = this.kind === 'tabs' ? 2 : 1;
    for (let t = 0; t < tabs; t++) {
      // the second tab goes through the load balancer too: to another instance when there is one
      const tab = new Tab(this, t === 0 ? () => sh.pick() : () => sh.pick(this.tabs[0]?.url));
      this.tabs.push(tab);
      tab.connect();
    }
    const at = (ms: number, fn: () => void): void => void setTimeout(() => !sh.stopped && fn(), ms);
    if (this.kind === 'tabs') at(2000 + sh.rand() * d * 0.6, () => this.tabs[0]!.close());
    if (this.kind === 'dropper') {
      const dropLater = (): void =>
        at(10_000 + sh.rand() * 30_000, () => {
          // back inside the grace: 0.2 s to half of it
          this.tabs[0]!.drop(200 + sh.rand() * (sh.o.graceSec * 500 - 200));
          dropLater();
        });
      dropLater();
    }
    if (this.kind === 'hybrid') at(2000 + sh.rand() * d * 0.5, () => this.tabs[0]!.close());
    if (this.kind === 'leaver') at(3000 + sh.rand() * d * 0.6, () => void this.leave());
    if (this.kind === 'abandoner') at(3000 + sh.rand() * d * 0.6, () => this.abandon());
  }

  private async poll(): Promise<void> {
    const sh = this.sh;
    if (sh.stopped || this.finished) return;
    const r = await send(sh, 'GET', `${sh.pick()}/api/v1/queue/status?token=${encodeURIComponent(this.token)}`, undefined, {});
    let next = 500;
    if (r.status === 200) {
      const now = Date.now();
      if (this.lastPollOk > 0) this.maxPollGap = Math.max(this.maxPollGap, now - this.lastPollOk);
      else this.maxPollGap = Math.max(this.maxPollGap, now - this.joinAckAt);
      this.lastPollOk = now;
      if (r.json.ready_for_entry === true) this.onReady();
      // poll_after_ms, at most a third of the timeout (what the server suggests), plus jitter
      next = Math.min(Number(r.json.poll_after_ms) || 2000, (sh.o.pollTimeoutSec * 1000) / 3) * (0.8 + sh.rand() * 0.2);
    } else if (r.status === 404) {
      this.onTerminal(4010);
      return;
    }
    this.pollTimer = setTimeout(() => void this.poll(), next);
  }

  onReady(): void {
    if (this.readySeen || this.gaveUp) return;
    this.readySeen = true;
    this.note('ready seen');
    void this.enter();
  }

  /** Over HTTP with one Idempotency-Key for every attempt: a retry after a lost answer gets the same admission back. */
  private async enter(): Promise<void> {
    const sh = this.sh;
    if (this.entering) return;
    this.entering = true;
    for (let attempt = 0; attempt < 40 && !this.reservationToken; attempt++) {
      const r = await send(sh, 'POST', `${sh.pick()}/api/v1/queue/enter`, { waiting_token: this.token }, { authorization: `Bearer ${this.jwt}`, 'idempotency-key': this.enterKey });
      if (r.status === 200) {
        this.reservationToken = String(r.json.reservation_token);
        this.admissions.add(jtiOf(this.reservationToken));
        break;
      }
      const code = errCode(r.json);
      this.note(`enter ${r.status} ${code}`);
      if (code === 'TOKEN_EXPIRED' || code === 'TOKEN_NOT_FOUND') break;
      if (code === 'ALREADY_ADMITTED') {
        sh.anomalies.push(`user ${this.i}: admitted, but its admission expired before the user got it`);
        break;
      }
      await sleep(300 + sh.rand() * 700);
    }
    this.entering = false;
    if (this.reservationToken) {
      this.finish();
      await this.reserve();
    }
  }

  /** One reservation per admission token, tried the ways a user (or a bot) would: retries, a duplicate, other seats. */
  private async reserve(): Promise<void> {
    const sh = this.sh;
    const body = { event_id: EVENT, seat_ids: [`S-${this.i}`], quantity: 1, reservation_token: this.reservationToken };
    const auth = { authorization: `Bearer ${this.jwt}` };
    const once = async (b: typeof body, key: string): Promise<{ status: number; json: Record<string, unknown> }> => {
      for (let attempt = 0; attempt < 30; attempt++) {
        const r = await send(sh, 'POST', `${sh.pick()}/api/v1/reservations`, b, { ...auth, 'idempotency-key': key });
        if (r.status === 201) {
          this.reservationIds.add(String(r.json.reservation_id));
          return r;
        }
        if (r.status === 403 || r.status === 400 || r.status === 409 && errCode(r.json) !== 'IDEMPOTENCY_CONFLICT') return r;
        if (r.status === 504 && sh.rand() < 0.3) {
          // "that seat timed out, I'll take another": the first hold may exist, so this must not buy a second one
          sh.http.double_spend_attempts = (sh.http.double_spend_attempts ?? 0) + 1;
          b = { ...b, seat_ids: [`${b.seat_ids[0]!}-after-timeout`] };
        }
        // 409 in flight, 503, 504, network: again (half the time under a new key)
        if (sh.rand() < 0.5) key = randomUUID();
        await sleep(300 + sh.rand() * 700);
      }
      return { status: 0, json: {} };
    };
    const dup = sh.rand() < 0.15;
    const runs = [once(body, randomUUID())];
    if (dup) {
      sh.http.double_spend_attempts = (sh.http.double_spend_attempts ?? 0) + 1;
      runs.push(once(body, randomUUID()));
    }
    await Promise.all(runs);
    if (sh.rand() < 0.1) {
      sh.http.double_spend_attempts = (sh.http.double_spend_attempts ?? 0) + 1;
      const other = await once({ ...body, seat_ids: [`S-${this.i}-other`] }, randomUUID());
      if (other.status === 403 && errReason(other.json) !== 'used') sh.anomalies.push(`user ${this.i}: other seats refused with ${errReason(other.json)}`);
    }
  }

  private async leave(): Promise<void> {
    if (this.reservationToken || this.finished) return;
    this.gaveUp = 'left';
    for (let attempt = 0; attempt < 20; attempt++) {
      const r = await send(this.sh, 'DELETE', `${this.sh.pick()}/api/v1/queue/leave?token=${encodeURIComponent(this.token)}`, undefined, {});
      if (r.status === 200 || r.status === 409 || r.status === 404) {
        this.leftAcked = r.status === 200;
        break;
      }
      await sleep(300);
    }
    this.finish();
  }

  private abandon(): void {
    if (this.reservationToken) return;
    this.gaveUp = 'abandoned';
    this.finish();
  }

  onTerminal(code: number): void {
    if (!this.terminalCode) {
      this.terminalCode = code;
      // the gap still open when the place was declared gone counts too (it may be what lost it)
      const now = Date.now();
      if (!this.finished && this.heldCount === 0 && this.gapStart > 0) this.maxGap = Math.max(this.maxGap, now - this.gapStart);
      if (!this.finished && this.lastPollOk > 0) this.maxPollGap = Math.max(this.maxPollGap, now - this.lastPollOk);
    }
    if (code !== 4000) this.finish();
  }

  finish(): void {
    this.finished = true;
    clearTimeout(this.pollTimer);
    for (const t of this.tabs) t.close();
  }

  stop(): void {
    clearTimeout(this.pollTimer);
    for (const t of this.tabs) t.close();
  }
}

// ---------------------------------------------------------------- the drill

interface Redises {
  address: string;
  client: Redis | Cluster;
  subscriber: Redis | Cluster;
  single?: EmbeddedRedis;
  cluster?: LocalCluster;
  stop(): Promise<void>;
}

async function startRedises(cluster: boolean): Promise<Redises> {
  if (!cluster) {
    const single = await startEmbeddedRedis();
    const client = new Redis({ host: single.host, port: single.port, maxRetriesPerRequest: 5 });
    const subscriber = client.duplicate();
    return {
      address: single.address,
      client,
      subscriber,
      single,
      stop: async () => {
        client.disconnect();
        subscriber.disconnect();
        await single.stop();
      },
    };
  }
  const cl = await startCluster();
  const client = cl.client();
  // SSUBSCRIBE must reach the shard that owns the channel: ioredis routes it only with shardedSubscribers
  // (without, it went to whichever node the connection picked, and a run hung there waiting)
  const subscriber = cl.client({ shardedSubscribers: true });
  return {
    address: cl.seeds,
    client,
    subscriber,
    cluster: cl,
    stop: async () => {
      client.disconnect();
      subscriber.disconnect();
      await cl.stop();
    },
  };
}

export async function runChaos(o: ChaosOptions): Promise<ChaosReport> {
  installCleanup();
  const startedAt = new Date().toISOString();
  const load0 = loadavg();
  const rand = rng(o.seed);
  const redis = await startRedises(o.cluster);
  const rsim: RunningReservationSim = await startReservationSim({ host: '127.0.0.1', port: 0, holdMs: 30 * 60_000 });
  const psim: RunningSim = await startPaymentSim({ host: '127.0.0.1', port: 0 });
  const { privateKey } = generateKeyPairSync('ed25519');
  const jwk = { ...privateKey.export({ format: 'jwk' }), alg: 'EdDSA', kid: `chaos-${randomBytes(4).toString('hex')}` };
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '',
    NODE_ENV: 'production',
    SERVER_HOST: '127.0.0.1',
    REDIS_ADDRESS: redis.address,
    ...(o.cluster ? { REDIS_CLUSTER_MODE: 'true' } : {}),
    REDIS_KEY_PREFIX: PREFIX,
    REDIS_COMMAND_TIMEOUT_MS: '1000',
    ADMIN_TOKEN: ADMIN,
    JWT_SECRET,
    ADMISSION_SIGNING_JWK: JSON.stringify(jwk),
    BACKEND_RESERVATION_API_GRPC_ADDRESS: rsim.address,
    BACKEND_PAYMENT_API_GRPC_ADDRESS: psim.address,
    BACKEND_RESERVATION_API_TIMEOUT: '1s',
    IDEMPOTENCY_INFLIGHT_TTL_SEC: '5',
    QUEUE_TICK_MS: '100',
    QUEUE_LEASE_MS: '1500',
    // the instance default stays at its default (30 s): the event's own grace (admin API) is what counts, as operators run it
    QUEUE_POLL_TIMEOUT_SEC: String(o.pollTimeoutSec),
    QUEUE_READY_WINDOW_SEC: '120',
    LOG_LEVEL: 'warn',
    // one loopback address plays every user: limits far above what the drill sends
    RATE_LIMIT_RPS: '1000000',
    RATE_LIMIT_BURST: '1000000',
    RATE_LIMIT_USER_RPS: '1000',
    RATE_LIMIT_USER_BURST: '1000',
    WS_MAX_PER_IP: '1000000',
    WS_CONNECT_RPS: '100000',
    WS_CONNECT_BURST: '100000',
  };
  const proxies = o.cluster ? [] : await Promise.all(Array.from({ length: o.gateways }, () => startTcpProxy(redis.address)));
  const slots = Array.from({ length: o.gateways }, (_, i) => new GatewaySlot(i, env, proxies[i]));
  const sh: Shared = {
    o,
    rand,
    stopped: false,
    http: {},
    closeCodes: {},
    anomalies: [],
    // the load balancer: any instance whose readiness it still believes (a frozen one looks alive to it)
    pick: (avoid?: string) => {
      const routable = slots.filter((s) => s.state === 'up' || s.state === 'stopped');
      let from = routable.length ? routable : slots.filter((s) => s.url);
      if (avoid && from.some((s) => s.url !== avoid)) from = from.filter((s) => s.url !== avoid);
      return from[Math.floor(rand() * from.length)]!.url;
    },
  };
  const users: SimUser[] = [];
  const faults: Record<string, number> = {};
  const ticks: { t: number; n: number }[] = [];
  let clusterKillAt = 0;
  const violations: string[] = [];
  try {
    for (const s of slots) await s.start();
    const admin = { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' };
    const put = await fetch(`${slots[0]!.url}/api/v1/admin/events/${EVENT}`, {
      method: 'PUT',
      headers: admin,
      body: JSON.stringify({ rate: o.rate, burst: o.burst, reconnect_grace_sec: o.graceSec, ready_window_sec: 120, state: 'open' }),
    });
    if (put.status !== 200 && put.status !== 201) throw new Error(`PUT event: ${put.status} ${await put.text()}`);
    // every tick's promotions, for the bucket bound over every window
    const k = eventKeys(PREFIX, EVENT);
    const onTick = (_ch: unknown, msg: Buffer): void => {
      try {
        const m = unpack(msg) as { t: number; p: unknown[] };
        ticks.push({ t: m.t, n: m.p.length });
      } catch {
        /* not a tick */
      }
    };
    if (o.cluster) {
      await withTimeout((redis.subscriber as Cluster).ssubscribe(k.channel), 15_000, 'SSUBSCRIBE to the tick channel');
      (redis.subscriber as Cluster).on('smessageBuffer', onTick);
    } else {
      await withTimeout((redis.subscriber as Redis).subscribe(k.channel), 15_000, 'SUBSCRIBE to the tick channel');
      (redis.subscriber as Redis).on('messageBuffer', onTick);
    }

    // users arrive over the first 30 % of the run
    const began = Date.now();
    const arrivals = (async () => {
      const spread = o.durationMs * 0.3;
      const joins: Promise<void>[] = [];
      for (let i = 0; i < o.users && !sh.stopped; i++) {
        let x = rand();
        let kind: Kind = 'socket';
        for (const [name, share] of o.kinds ? o.kinds.map((k) => [k, 1 / o.kinds!.length] as const) : KINDS) {
          if (x < share) {
            kind = name;
            break;
          }
          x -= share;
        }
        const u = new SimUser(i, kind, sh);
        users.push(u);
        joins.push(u.join());
        const due = began + ((i + 1) / o.users) * spread;
        if (due > Date.now()) await sleep(due - Date.now());
      }
      await Promise.all(joins);
    })();

    // faults until the end of the run
    const faultLoop = (async () => {
      await sleep(5000);
      // Every kind once, in a random order, before any repeats; the first round is always finished, even
      // past the window (the quiesce waits for it): how long faults take (a restart under load, the cut-off's
      // grace) must not decide whether a short run sees them all
      const bag: string[] = [];
      let owed = -1; // kinds of the first round not yet injected (-1: round not drawn yet)
      const windowOpen = (): boolean => Date.now() - began < o.durationMs - 10_000;
      while (owed !== 0 || windowOpen()) {
        await sleep(o.faultEveryMs * (0.5 + rand()));
        if (owed === 0 && !windowOpen()) break;
        if (bag.length === 0) {
          bag.push(
            ...['gateway_sigkill', 'gateway_sigstop', 'gateway_sigterm', o.cluster ? 'redis_failover' : 'redis_stall', 'backend_late', ...(o.cluster ? [] : ['gateway_cut_off'])].filter(
              (k) => !o.faults || o.faults.includes(k),
            ),
          );
          for (let x = bag.length - 1; x > 0; x--) {
            const y = Math.floor(rand() * (x + 1));
            [bag[x], bag[y]] = [bag[y]!, bag[x]!];
          }
        }
        if (owed < 0) owed = bag.length;
        let kind = bag.pop()!;
        if (owed > 0) owed--;
        if (kind === 'redis_failover' && clusterKillAt > 0) kind = 'backend_late'; // one failover per run: a shard has one replica
        faults[kind] = (faults[kind] ?? 0) + 1;
        const up = slots.filter((s) => s.state === 'up');
        const victim = up[Math.floor(rand() * up.length)];
        o.log(`[chaos] ${((Date.now() - began) / 1000).toFixed(1)} s (${new Date().toISOString().slice(11, 23)}): ${kind}${victim && kind.startsWith('gateway') ? ` ${victim.instanceId} ${victim.url.slice(-5)}` : ''}`);
        if (kind === 'gateway_sigkill' && victim) {
          await victim.kill();
          await sleep(1000 + rand() * 2000);
          await victim.start();
        } else if (kind === 'gateway_sigstop' && victim) {
          victim.state = 'stopped';
          victim.signal('SIGSTOP');
          // well under the grace: a frozen process keeps its sockets open and cannot tell anyone
          await sleep(500 + rand() * Math.min(1500, o.graceSec * 250));
          victim.signal('SIGCONT');
          victim.state = 'up';
        } else if (kind === 'gateway_sigterm' && victim) {
          await victim.term();
          await sleep(500 + rand() * 1500);
          await victim.start();
        } else if (kind === 'gateway_cut_off' && victim?.proxy) {
          // this gateway alone loses Redis for longer than the grace; the load balancer sees its readiness fail within a second
          victim.proxy.blackhole();
          setTimeout(() => victim.state === 'up' && (victim.state = 'cut'), 1000);
          await sleep(o.graceSec * 1000 + 2000 + rand() * 2000);
          victim.proxy.restore();
          await sleep(1500); // readiness back
          if (victim.state === 'cut') victim.state = 'up';
        } else if (kind === 'redis_stall' && redis.single) {
          process.kill(redis.single.pid, 'SIGSTOP');
          await sleep(300 + rand() * 1200);
          process.kill(redis.single.pid, 'SIGCONT');
        } else if (kind === 'redis_failover' && redis.cluster) {
          const primary: LocalNode = await redis.cluster.primaryFor(k.q);
          clusterKillAt = Date.now();
          await redis.cluster.kill(primary);
        } else {
          rsim.setMode('late', { lateMs: 1500 });
          await sleep(2000 + rand() * 2000);
          rsim.setMode('normal');
        }
      }
    })();

    await Promise.all([arrivals, faultLoop]);
    const remaining = o.durationMs - (Date.now() - began);
    if (remaining > 0) await sleep(remaining);

    // ---- quiesce: every instance up, nothing injected, everyone back, the line paused so positions hold still
    rsim.setMode('normal');
    for (const s of slots) if (s.state === 'down') await s.start();
    await sleep(o.graceSec * 1000 + 4000);
    await fetch(`${slots[0]!.url}/api/v1/admin/events/${EVENT}`, { method: 'PUT', headers: admin, body: JSON.stringify({ state: 'paused' }) });
    // enters and reservations under way finish; ticks settle; a user far back (past REALTIME_NEAR_FRONT) gets a
    // small move at most 5 s late (docs/PROTOCOL.md, section 7): wait that out before comparing pushes
    for (let i = 0; i < 40 && users.some((u) => u.entering); i++) await sleep(250);
    // Paused stops promotions, not exits: a dropped user's grace can still run out and the sweep
    // removes them, moving everyone behind. So wait for 6.5 s without any exit (the line's
    // length unchanged), not 6.5 s after the pause: a run saw a user far back shown one place
    // behind because an exit came 2 s after the pause and the check 6.5 s after it.
    {
      let len = await redis.client.zcard(k.q);
      let quietSince = Date.now();
      const deadline = Date.now() + 30_000;
      while (Date.now() - quietSince < 6500 && Date.now() < deadline) {
        await sleep(250);
        const now = await redis.client.zcard(k.q);
        if (now !== len) {
          len = now;
          quietSince = Date.now();
        }
      }
    }
    sh.stopped = true;

    // ---- the model, against Redis, what was pushed, and what the backend made
    const c = redis.client;
    const joinedUsers = users.filter((u) => u.token);
    const pipe = c.pipeline();
    for (const u of joinedUsers) pipe.hgetall(userKey(k, u.token));
    const recs = ((await pipe.exec()) ?? []).map(([err, v]) => {
      if (err) throw err;
      return v as Record<string, string>;
    });
    const q = (await c.zrange(k.q, 0, -1)) as string[];
    const rank = new Map(q.map((t, i) => [t, i]));
    const readyCount = Number(await c.zcard(k.ready));
    const stats = (await c.hgetall(k.stats)) as Record<string, string>;
    const { graceSec, pollTimeoutSec } = o;
    const excused: Record<string, number> = {};
    const excuse = (why: string): void => void (excused[why] = (excused[why] ?? 0) + 1);
    let entitled = 0;
    let placesLost = 0;
    let readyWindowsMissed = 0;
    let inReplicationWindow = 0;
    const end = Date.now();
    joinedUsers.forEach((u, i) => {
      const rec = recs[i]!;
      const state = rec.s ?? '';
      if (u.gaveUp) return;
      // held by the rules? sockets: every gap (close -> next welcome) shorter than the grace, and the first welcome
      // inside the poll timeout after the join; polls: every gap shorter than the poll timeout
      const slack = 300;
      let why = '';
      if (u.kind === 'poller' || u.kind === 'hybrid') {
        const gap = Math.max(u.maxPollGap, u.lastPollOk || u.finished ? 0 : end - u.joinAckAt);
        if (gap >= pollTimeoutSec * 1000 - slack) why = 'a poll gap longer than the poll timeout';
      } else {
        const openGap = !u.finished && u.heldCount === 0 && u.gapStart > 0 ? end - u.gapStart : 0;
        if (u.firstHeldAt === 0 || u.firstHeldAt - u.joinAckAt >= pollTimeoutSec * 1000 - slack) why = 'first socket later than the poll timeout';
        else if (Math.max(u.maxGap, openGap) >= graceSec * 1000 - slack) why = 'a socket gap longer than the grace';
      }
      if (o.cluster && clusterKillAt > 0 && u.joinAckAt > clusterKillAt - 1500 && u.joinAckAt <= clusterKillAt + 100) {
        inReplicationWindow++;
        why ||= 'joined in the replication window of the killed primary';
      }
      if (why) {
        excuse(why);
        return;
      }
      entitled++;
      if (state === 'x') {
        if (rec.why === 'ready_timeout') {
          // not a lost place (the user did not enter in time), but say why: it should be the client's doing
          readyWindowsMissed++;
          sh.anomalies.push(`user ${u.i} (${u.kind}) missed its ready window; ready seen ${u.readySeen}; events ${u.events.join(' | ')}`);
        }
        else {
          placesLost++;
          violations.push(
            `place lost: user ${u.i} (${u.kind}) expired for ${rec.why} at ${new Date(Number(rec.f)).toISOString().slice(11, 23)}; max gap ${u.maxGap} ms, poll gap ${u.maxPollGap} ms, terminal ${u.terminalCode}; ` +
              `claims ${JSON.stringify(Object.fromEntries(Object.entries(rec).filter(([k]) => k.startsWith('lc:') || k === 'lp').map(([k, v]) => [k, new Date(Number(v)).toISOString().slice(11, 23)])))}; ` +
              `events ${u.events.join(' | ')}`,
          );
        }
      } else if (state === 'l') {
        placesLost++;
        violations.push(`place lost: user ${u.i} (${u.kind}) shows left without leaving`);
      } else if (state === '') {
        placesLost++;
        violations.push(`place lost: user ${u.i} (${u.kind}) has no record`);
      } else if ((state === 'w' || state === 'r') && !rank.has(u.token)) {
        placesLost++;
        violations.push(`place lost: user ${u.i} (${u.kind}) is ${state} but not in line`);
      }
    });

    // arrival order: whoever's join was acknowledged before another's was sent is ahead of it
    const inLine = joinedUsers.filter((u) => rank.has(u.token)).sort((a, b) => rank.get(a.token)! - rank.get(b.token)!);
    let outOfOrder = 0;
    for (let x = 0; x < inLine.length; x++) {
      for (let y = x + 1; y < inLine.length; y++) {
        if (inLine[y]!.joinAckAt < inLine[x]!.joinSentAt) {
          outOfOrder++;
          if (outOfOrder <= 5) violations.push(`order: user ${inLine[y]!.i} (acknowledged first) is behind user ${inLine[x]!.i}`);
        }
      }
    }

    // what was pushed: every open, welcomed socket shows the recount (1 + the people still waiting ahead; 1 once ready)
    let stalePushes = 0;
    for (const u of inLine) {
      for (const t of u.tabs) {
        if (!t.open) continue;
        const r = rank.get(u.token)!;
        const want = r < readyCount ? 1 : r - readyCount + 1;
        if (t.lastPos !== want) {
          stalePushes++;
          if (stalePushes <= 5) violations.push(`push: user ${u.i} socket shows ${t.lastPos}, Redis has ${want}`);
        }
      }
    }

    // admitted twice: per user and per waiting token
    let admittedTwice = 0;
    const admittedBySub = new Map<string, number>();
    joinedUsers.forEach((u, i) => {
      if (recs[i]!.s === 'a') admittedBySub.set(u.sub, (admittedBySub.get(u.sub) ?? 0) + 1);
      if (u.admissions.size > 1) {
        admittedTwice++;
        violations.push(`admitted twice: user ${u.i} received ${u.admissions.size} different admissions (jti)`);
      }
    });
    for (const [sub, n] of admittedBySub) {
      if (n > 1) {
        admittedTwice++;
        violations.push(`admitted twice: ${sub} holds ${n} admitted places`);
      }
    }
    const admitted = joinedUsers.filter((_, i) => recs[i]!.s === 'a').length;
    if (Number(stats.entered ?? 0) !== admitted) violations.push(`entered counter ${stats.entered} != admitted records ${admitted}`);

    // tokens spent twice: the backend's own record, and the answers users got
    let tokensSpentTwice = 0;
    for (const [tok, ids] of rsim.createdByToken()) {
      if (new Set(ids).size > 1) {
        tokensSpentTwice++;
        violations.push(`token spent twice: ${ids.length} reservations for one admission token (${createHash('sha256').update(tok).digest('hex').slice(0, 8)})`);
      }
    }
    for (const u of joinedUsers) {
      if (u.reservationIds.size > 1) {
        tokensSpentTwice++;
        violations.push(`token spent twice: user ${u.i} was answered with ${u.reservationIds.size} reservation ids`);
      }
    }
    const reservations = [...rsim.createdByToken().values()].reduce((n, ids) => n + ids.length, 0);

    // the bucket, over every window between ticks seen (a lost message only weakens this check)
    ticks.sort((a, b) => a.t - b.t);
    let bucketViolations = 0;
    for (let a = 0; a < ticks.length; a++) {
      let sum = 0;
      for (let b = a; b < ticks.length; b++) {
        sum += ticks[b]!.n;
        const allowance = o.burst + (o.rate * (ticks[b]!.t - ticks[a]!.t)) / 1000;
        if (sum > allowance + 1e-6) {
          bucketViolations++;
          if (bucketViolations <= 3) violations.push(`bucket: ${sum} promotions in ${ticks[b]!.t - ticks[a]!.t} ms > ${allowance.toFixed(2)}`);
          break;
        }
      }
    }
    const promoted = Number(stats.promoted ?? 0);
    if (ticks.length > 1) {
      const allowance = o.burst + (o.rate * (ticks[ticks.length - 1]!.t - ticks[0]!.t)) / 1000 + o.rate * 2;
      if (promoted > allowance) {
        bucketViolations++;
        violations.push(`bucket: ${promoted} promoted in all > ${allowance.toFixed(1)}`);
      }
    }

    const byKind: Record<string, number> = {};
    for (const u of users) byKind[u.kind] = (byKind[u.kind] ?? 0) + 1;
    return {
      options: { durationMs: o.durationMs, users: o.users, cluster: o.cluster, seed: o.seed, graceSec: o.graceSec, pollTimeoutSec: o.pollTimeoutSec, gateways: o.gateways, rate: o.rate, burst: o.burst, faultEveryMs: o.faultEveryMs },
      startedAt,
      loadavg: [load0, loadavg()],
      users: byKind,
      joined: joinedUsers.length,
      faults,
      entitled,
      excused,
      inLineAtEnd: q.length,
      admitted,
      reservations,
      doubleSpendAttempts: sh.http.double_spend_attempts ?? 0,
      placesLost,
      outOfOrder,
      stalePushes,
      admittedTwice,
      tokensSpentTwice,
      bucketViolations,
      readyWindowsMissed,
      inReplicationWindow,
      violations: [...violations, ...sh.anomalies.slice(0, 20).map((a) => `anomaly (not counted): ${a}`)],
      http: Object.fromEntries(Object.entries(sh.http).filter(([s]) => s !== 'double_spend_attempts')),
      closeCodes: sh.closeCodes,
    };
  } finally {
    sh.stopped = true;
    for (const u of users) u.stop();
    await Promise.all(slots.map((s) => s.stop()));
    await Promise.all(proxies.map((p) => p.stop()));
    await rsim.stop();
    await psim.stop();
    await redis.stop();
  }
}

// ---------------------------------------------------------------- CLI

function arg(name: string, fallback: string): string {
  const a = process.argv.find((x) => x.startsWith(`--${name}=`));
  return a ? a.slice(name.length + 3) : process.argv.includes(`--${name}`) ? 'true' : fallback;
}

export function summarize(r: ChaosReport): string {
  const f = Object.entries(r.faults)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
  return [
    `${r.options.cluster ? 'cluster 3+3' : 'one Redis'}, ${r.options.gateways} gateways, ${r.joined} users joined (${Object.entries(r.users).map(([k, v]) => `${k} ${v}`).join(', ')}), ${(r.options.durationMs / 60000).toFixed(1)} min, grace ${r.options.graceSec} s, seed ${r.options.seed}`,
    `  faults: ${f || 'none'}`,
    `  entitled ${r.entitled}, excused ${JSON.stringify(r.excused)}, in line at the end ${r.inLineAtEnd}, admitted ${r.admitted}, reservations ${r.reservations}, double-spend attempts ${r.doubleSpendAttempts}`,
    `  places lost ${r.placesLost}, out of order ${r.outOfOrder}, stale pushes ${r.stalePushes}, admitted twice ${r.admittedTwice}, tokens spent twice ${r.tokensSpentTwice}, bucket violations ${r.bucketViolations}, ready windows missed ${r.readyWindowsMissed}`,
    `  http ${JSON.stringify(r.http)} closes ${JSON.stringify(r.closeCodes)} load ${r.loadavg.join(' -> ')}`,
    ...r.violations.slice(0, 20).map((v) => `  ! ${v}`),
  ].join('\n');
}

async function main(): Promise<void> {
  const runs = Number(arg('runs', '1'));
  const base: ChaosOptions = {
    durationMs: Number(arg('minutes', '5')) * 60_000,
    users: Number(arg('users', '2000')),
    cluster: arg('cluster', 'false') === 'true',
    seed: Number(arg('seed', String(Date.now() % 1_000_000))),
    graceSec: Number(arg('grace', '3')),
    pollTimeoutSec: Number(arg('poll-timeout', '10')),
    gateways: Number(arg('gateways', '3')),
    rate: Number(arg('rate', '3')),
    burst: Number(arg('burst', '5')),
    faultEveryMs: Number(arg("fault-every", "12")) * 1000,
    ...(arg('faults', '') ? { faults: arg('faults', '').split(',') } : {}),
    ...(arg('kinds', '') ? { kinds: arg('kinds', '').split(',') as Kind[] } : {}),
    log: (l) => process.stderr.write(`${l}\n`),
  };
  const reports: ChaosReport[] = [];
  for (let i = 0; i < runs; i++) {
    const r = await runChaos({ ...base, seed: base.seed + i });
    reports.push(r);
    process.stdout.write(`run ${i + 1}/${runs}: ${summarize(r)}\n`);
  }
  const dir = join(root, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `chaos-${new Date().toISOString().replace(/[:.]/g, '-')}${base.cluster ? '-cluster' : ''}.json`);
  writeFileSync(file, JSON.stringify(reports, null, 2));
  const total = (f: (r: ChaosReport) => number): number => reports.reduce((n, r) => n + f(r), 0);
  const faults: Record<string, number> = {};
  for (const r of reports) for (const [k, v] of Object.entries(r.faults)) faults[k] = (faults[k] ?? 0) + v;
  process.stdout.write(
    `\n${runs} runs, ${total((r) => r.joined)} users, faults ${JSON.stringify(faults)}\n` +
      `places lost ${total((r) => r.placesLost)}, admissions duplicated ${total((r) => r.admittedTwice)}, tokens spent twice ${total((r) => r.tokensSpentTwice)}, ` +
      `out of order ${total((r) => r.outOfOrder)}, stale pushes ${total((r) => r.stalePushes)}, bucket violations ${total((r) => r.bucketViolations)}\n` +
      `results: ${file}\n`,
  );
  const bad = reports.some((r) => r.placesLost + r.admittedTwice + r.tokensSpentTwice + r.outOfOrder + r.stalePushes + r.bucketViolations > 0);
  process.exit(bad ? 1 : 0);
}

if (process.argv[1] && /chaos\.js$/.test(process.argv[1])) {
  main().catch((err: unknown) => {
    process.stderr.write(`${String((err as Error).stack ?? err)}\n`);
    process.exit(2);
  });
}
