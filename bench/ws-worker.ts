import { LeanSocket, spread } from './lean-ws.js';

// One load-generator process: holds a share of the sockets from its own
// loopback source address and reports, per measurement round, when each
// socket saw its position drop. Sockets are LeanSocket (bench/lean-ws.ts):
// the generator's own cost stays small beside the gateway's.

interface Start {
  kind: 'start';
  url: string;
  tokens: string[];
  localAddress: string;
}
interface Round {
  kind: 'round';
  round: number;
}
type In = Start | Round | { kind: 'stop' };

const sockets: LeanSocket[] = [];
const lastPos: number[] = [];
let round = -1;
let roundTimes: number[] = [];
let roundBase: number[] = [];

function send(m: unknown): void {
  process.send?.(m);
}

process.on('message', (m: In) => {
  if (m.kind === 'start') {
    // at most INFLIGHT handshakes at a time: 15k simultaneous SYNs overflow the
    // listen backlog and stall in kernel SYN retries for minutes
    let welcomed = 0;
    let failed = 0;
    let next = 0;
    let inflight = 0;
    const INFLIGHT = 256;
    const settle = (): void => {
      inflight--;
      if (welcomed + failed === m.tokens.length) send({ kind: 'ready', welcomed, failed });
      else pump();
    };
    const url = new URL(m.url);
    const openOne = (i: number): void => {
      const token = m.tokens[i]!;
      let done = false;
      const fail = (): void => {
        if (done) return;
        done = true;
        failed++;
        settle();
      };
      sockets[i] = new LeanSocket(
        { host: url.hostname, port: Number(url.port), path: `/api/v1/queue/ws?token=${encodeURIComponent(token)}`, protocol: 'waiting-room.v1.json', localAddress: spread(m.localAddress, i), handshakeTimeoutMs: 15_000 },
        {
          error: fail,
          close: fail,
          message: (text) => {
            const msg = JSON.parse(text) as { type: string; position?: number };
            if (msg.type === 'welcome') {
              lastPos[i] = msg.position ?? -1;
              if (!done) {
                done = true;
                welcomed++;
                settle();
              }
            } else if (msg.type === 'position' && typeof msg.position === 'number') {
              if (round >= 0 && roundTimes[i] === 0 && msg.position < roundBase[i]!) roundTimes[i] = Date.now();
              lastPos[i] = msg.position;
            }
          },
        },
      );
    };
    const pump = (): void => {
      while (inflight < INFLIGHT && next < m.tokens.length) {
        inflight++;
        openOne(next++);
      }
    };
    for (let i = 0; i < m.tokens.length; i++) lastPos.push(-1);
    pump();
  } else if (m.kind === 'round') {
    round = m.round;
    roundTimes = new Array<number>(sockets.length).fill(0);
    roundBase = [...lastPos];
    const started = Date.now();
    const poll = setInterval(() => {
      const done = roundTimes.every((t) => t > 0);
      if (done || Date.now() - started > 10_000) {
        clearInterval(poll);
        send({ kind: 'round', round: m.round, times: roundTimes });
      }
    }, 20);
  } else {
    for (const ws of sockets) ws.terminate();
    process.exit(0);
  }
});
