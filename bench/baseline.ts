// The bare uWebSockets.js reference: the same native binary as the gateway,
// no Redis, no routing layer, returning bodies of the gateway's shape and
// size. Every HTTP figure is given as a ratio to this, measured with the same
// load generator in the same run (the machine is shared and noisy).
//
// For the launch-flow scenario it also simulates a perfect line: the token
// carries the time its holder becomes ready (join order / rate), so the same
// client flow (join, poll every 2-4 s, enter) runs against it unchanged.
//
//   node dist/bench/baseline.js <port>
import { randomBytes } from 'node:crypto';
import { loadUws } from '../src/uws.js';

const uws = loadUws();
const port = Number(process.argv[2] ?? 0);
let seq = 0;
let flowRate = 1000; // users per second the simulated line admits (set by /bench/flow)
let flowStart = 0;
let flowCount = 0;

const statusBody = (ready: boolean, position: number): string =>
  JSON.stringify({
    event_id: 'baseline',
    event_state: 'open',
    status: ready ? 'ready' : 'waiting',
    waiting_time: 3,
    position,
    people_ahead: Math.max(0, position - 1),
    eta_sec: ready ? 0 : 12,
    eta_low: ready ? 0 : 9,
    eta_high: ready ? 0 : 16,
    confidence: 0.812,
    ready_for_entry: ready,
    ...(ready ? { ready_deadline: new Date(Date.now() + 120_000).toISOString(), ready_expires_in_sec: 119 } : {}),
    poll_after_ms: 1200,
  });

const reqId = (): string => randomBytes(8).toString('hex');

function readBody(res: import('uWebSockets.js').HttpResponse, done: (body: Buffer) => void): void {
  let buf: Buffer | undefined;
  res.onAborted(() => {
    res.aborted = true;
  });
  res.onData((chunk, last) => {
    const c = Buffer.from(chunk);
    buf = buf ? Buffer.concat([buf, c]) : Buffer.from(c);
    if (last) done(buf);
  });
}

function reply(res: import('uWebSockets.js').HttpResponse, status: string, body: string): void {
  if (res.aborted) return;
  res.cork(() => {
    res.writeStatus(status).writeHeader('content-type', 'application/json').writeHeader('x-request-id', reqId()).end(body);
  });
}

uws
  .App()
  .get('/healthz', (res) => {
    res.end('ok');
  })
  .post('/bench/flow', (res, req) => {
    flowRate = Number(req.getQuery('rate') ?? 1000);
    flowStart = 0;
    flowCount = 0;
    res.end('ok');
  })
  .post('/api/v1/queue/join', (res) => {
    readBody(res, (b) => {
      let ok = true;
      try {
        ok = typeof (JSON.parse(b.toString()) as { event_id?: unknown }).event_id === 'string';
      } catch {
        ok = false;
      }
      if (!ok) return reply(res, '400 Bad Request', '{"error":{"code":"INVALID_JSON","message":"bad","trace_id":"x"}}');
      const now = Date.now();
      if (flowStart === 0) flowStart = now;
      const readyAt = Math.round(flowStart + (flowCount++ / flowRate) * 1000);
      const token = `baseline.${readyAt}.${randomBytes(16).toString('base64url')}`;
      reply(res, '202 Accepted', JSON.stringify({ waiting_token: token, position_hint: ++seq, status: 'waiting' }));
    });
  })
  .get('/api/v1/queue/status', (res, req) => {
    const token = req.getQuery('token') ?? '';
    const readyAt = Number(token.split('.')[1] ?? 0);
    res.onAborted(() => {
      res.aborted = true;
    });
    reply(res, '200 OK', statusBody(Date.now() >= readyAt, 1 + (seq % 5000)));
  })
  .post('/api/v1/queue/enter', (res) => {
    readBody(res, (b) => {
      let token = '';
      try {
        token = String((JSON.parse(b.toString()) as { waiting_token?: unknown }).waiting_token ?? '');
      } catch {
        /* empty */
      }
      const readyAt = Number(token.split('.')[1] ?? 0);
      if (!token || Date.now() < readyAt) return reply(res, '403 Forbidden', '{"error":{"code":"NOT_READY","message":"not your turn yet","trace_id":"x"}}');
      reply(res, '200 OK', JSON.stringify({ admission: 'granted', reservation_token: `eyJ${randomBytes(180).toString('base64url')}`, ttl_sec: 300 }));
    });
  })
  .listen('127.0.0.1', port, (sock) => {
    if (!sock) {
      process.stderr.write(`baseline: cannot listen on ${port}\n`);
      process.exit(1);
    }
  });

process.on('disconnect', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
