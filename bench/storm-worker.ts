// One load-generator process for the multi-instance / reconnect-storm
// scenario: holds a share of the sockets from its own loopback source address;
// on 'round' reports when each socket saw its position drop; on 'storm' drops
// every socket at once and reconnects it at once, reporting when each one was
// welcomed again and with which position.
import { LeanSocket, spread } from './lean-ws.js';
import { monitorEventLoopDelay } from 'node:perf_hooks';
const lag = monitorEventLoopDelay({ resolution: 20 });
lag.enable();

interface Start {
  kind: 'start';
  url: string;
  tokens: string[];
  localAddress: string;
}
type In = Start | { kind: 'round'; round: number } | { kind: 'storm' } | { kind: 'stop' };

let cfg: Start | undefined;
let sockets: LeanSocket[] = [];
let pos: number[] = [];
let round = -1;
let roundTimes: number[] = [];
let roundBase: number[] = [];
let storming = false;
let welcomeAt: number[] = [];
let welcomePos: number[] = [];
let closes = 0;
let retries = 0;
/** why connection attempts failed during the storm: "close <code>", "error <code>" */
let reasons: Record<string, number> = {};
const noteReason = (r: string): void => {
  if (storming) reasons[r] = (reasons[r] ?? 0) + 1;
};

const send = (m: unknown): void => void process.send?.(m);

function open(i: number, onWelcome: () => void, onFail: () => void): void {
  const url = new URL(cfg!.url);
  let welcomed = false;
  let failedOnce = false;
  const fail = (): void => {
    if (welcomed || failedOnce) return;
    failedOnce = true;
    onFail();
  };
  // the shipped client's limits: 10 s from connect to the welcome (WELCOME_TIMEOUT_MS)
  const welcomeTimer = setTimeout(() => {
    if (welcomed || failedOnce) return;
    noteReason('welcome timeout');
    ws.terminate();
    fail();
  }, 10_000);
  const ws = new LeanSocket(
    { host: url.hostname, port: Number(url.port), path: `/api/v1/queue/ws?token=${encodeURIComponent(cfg!.tokens[i]!)}`, protocol: 'waiting-room.v1.json', localAddress: spread(cfg!.localAddress, i), handshakeTimeoutMs: 10_000 },
    {
      error: (reason) => {
        clearTimeout(welcomeTimer);
        if (!welcomed && !failedOnce) noteReason(`error ${reason}`);
        fail();
      },
      close: (code, reason) => {
        clearTimeout(welcomeTimer);
        closes++;
        if (!welcomed && !failedOnce) noteReason(`close ${code} ${reason}`);
        fail();
      },
      message: (text) => {
        const msg = JSON.parse(text) as { type: string; position?: number };
        if (msg.type === 'welcome') {
          clearTimeout(welcomeTimer);
          welcomed = true;
          pos[i] = msg.position ?? -1;
          if (storming) {
            welcomeAt[i] = Date.now();
            welcomePos[i] = pos[i]!;
          }
          onWelcome();
        } else if (msg.type === 'position' && typeof msg.position === 'number') {
          if (round >= 0 && roundTimes[i] === 0 && msg.position < roundBase[i]!) roundTimes[i] = Date.now();
          pos[i] = msg.position;
        }
      },
    },
  );
  sockets[i] = ws;
}

function connectAll(paced: boolean, done: (welcomed: number, failed: number) => void): void {
  const n = cfg!.tokens.length;
  let welcomed = 0;
  let failed = 0;
  const check = (): void => {
    if (welcomed + failed === n) done(welcomed, failed);
  };
  // a refused or broken connection is retried like a browser would: 0.2-1 s later, up to 20 times
  const attempt = (i: number, tries: number): void =>
    open(
      i,
      () => {
        welcomed++;
        pumpHook();
        check();
      },
      () => {
        retries++;
        if (tries < 20) setTimeout(() => attempt(i, tries + 1), 200 + Math.random() * 800);
        else {
          failed++;
          pumpHook();
          check();
        }
      },
    );
  if (paced) {
    let next = 0;
    let inflight = 0;
    const pump = (): void => {
      while (inflight < 256 && next < n) {
        inflight++;
        attempt(next++, 0);
      }
    };
    pumpHook = () => {
      inflight--;
      pump();
    };
    pump();
  } else {
    pumpHook = () => undefined;
    for (let i = 0; i < n; i++) attempt(i, 0);
  }
}
let pumpHook: () => void = () => undefined;

process.on('message', (m: In) => {
  if (m.kind === 'start') {
    cfg = m;
    sockets = new Array<LeanSocket>(m.tokens.length);
    pos = new Array<number>(m.tokens.length).fill(-1);
    connectAll(true, (welcomed, failed) => send({ kind: 'ready', welcomed, failed, retries, positions: pos }));
  } else if (m.kind === 'round') {
    round = m.round;
    roundTimes = new Array<number>(sockets.length).fill(0);
    roundBase = [...pos];
    const started = Date.now();
    const poll = setInterval(() => {
      if (roundTimes.every((t) => t > 0) || Date.now() - started > 10_000) {
        clearInterval(poll);
        round = -1;
        send({ kind: 'round', round: m.round, times: roundTimes });
      }
    }, 20);
  } else if (m.kind === 'storm') {
    storming = true;
    retries = 0;
    reasons = {};
    welcomeAt = new Array<number>(sockets.length).fill(0);
    welcomePos = new Array<number>(sockets.length).fill(-1);
    const before = [...pos];
    const t0 = Date.now();
    lag.reset();
    for (const ws of sockets) ws.terminate();
    let finished = false;
    const finish = (welcomed: number, failed: number): void => {
      if (finished) return;
      finished = true;
      storming = false;
      send({ kind: 'storm', t0, welcomed, failed, retries, reasons, welcomeAt, welcomePos, before, lagMaxMs: lag.max / 1e6 });
      console.error(`storm worker ${cfg!.localAddress}: ${cfg!.tokens.length} sockets, event-loop lag max ${(lag.max / 1e6).toFixed(0)} ms`);
    };
    connectAll(false, finish);
    setTimeout(() => finish(welcomeAt.filter((t) => t > 0).length, -1), 60_000);
  } else {
    for (const ws of sockets) ws.terminate();
    process.exit(0);
  }
});
