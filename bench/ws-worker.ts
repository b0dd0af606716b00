import WebSocket from 'ws';

// One load-generator process: holds a share of the sockets from its own
// loopback source address and reports, per measurement round, when each
// socket saw its position drop.

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

const sockets: WebSocket[] = [];
const lastPos: number[] = [];
let round = -1;
let roundTimes: number[] = [];
let roundBase: number[] = [];

function send(m: unknown): void {
  process.send?.(m);
}

process.on('message', (m: In) => {
  if (m.kind === 'start') {
    let opened = 0;
    let welcomed = 0;
    let failed = 0;
    m.tokens.forEach((token, i) => {
      lastPos.push(-1);
      const ws = new WebSocket(`${m.url}/api/v1/queue/ws?token=${encodeURIComponent(token)}`, ['waiting-room.v1.json'], { localAddress: m.localAddress, perMessageDeflate: false });
      sockets.push(ws);
      ws.on('open', () => opened++);
      ws.on('error', () => failed++);
      ws.on('message', (data: Buffer) => {
        const msg = JSON.parse(data.toString()) as { type: string; position?: number };
        if (msg.type === 'welcome') {
          lastPos[i] = msg.position ?? -1;
          if (++welcomed + failed === m.tokens.length) send({ kind: 'ready', welcomed, failed });
        } else if (msg.type === 'position' && typeof msg.position === 'number') {
          if (round >= 0 && roundTimes[i] === 0 && msg.position < roundBase[i]!) roundTimes[i] = Date.now();
          lastPos[i] = msg.position;
        }
      });
    });
    const check = setInterval(() => {
      if (welcomed + failed === m.tokens.length) clearInterval(check);
    }, 1000);
    void opened;
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
