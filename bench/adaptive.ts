// The backend degrades during a sale: adaptive outflow on and off.
//   node dist/bench/adaptive.js [--seconds=180] [--out=docs/adaptive-outflow.svg]
//
// One gateway process (development configuration, real gRPC simulators, its
// own redis-server), one event per run, users arriving faster than the
// ceiling so the line never runs dry. Every user joins, polls until ready
// (as the server's poll_after_ms says), enters and makes one reservation
// through POST /api/v1/reservations: the backend sees the admission rate.
// The reservation simulator serves 8 calls at a time at ~40 ms (about 200
// calls/s). Timeline (share of the run): healthy; then degraded (x4: 160 ms
// a call, ~50 calls/s, so latency x4 and queueing on top); then failing 5 % of
// calls as well; then recovered. The same timeline runs once with adaptive
// outflow (floor 5, ceiling 100 admissions/s, objective p95 300 ms and 1 %
// errors) and once with the fixed rate 100/s. Reported per 5 s: admissions/s
// (the event's promotions), reservation p95 (ms, as the clients saw it) and
// reservation errors (5xx). A table to stdout, an SVG chart to --out.
// Loopback only, bounded, self-stopping.
import { writeFileSync } from 'node:fs';
import { startEmbeddedRedis } from '../src/redis/embedded.js';
import { startReservationSim } from '../src/sim/reservation-sim.js';
import { startPaymentSim } from '../src/sim/payment-sim.js';
import { ADMIN, Client, installCleanup, pct, putEvent, sleep, startGateway } from './lib.js';

const arg = (name: string, dflt: string): string => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? dflt;
const SECONDS = Number(arg('seconds', '180'));
const OUT = arg('out', '');
const ARRIVALS_PER_SEC = 120;
const BUCKET_SEC = 5;
const HEALTHY = { slots: 8, serviceMs: 40, failShare: 0 };
const DEGRADED = { slots: 8, serviceMs: 160, failShare: 0 };
const FAILING = { slots: 8, serviceMs: 160, failShare: 0.05 };
const PHASES = [
  { from: 0, load: HEALTHY, name: 'healthy' },
  { from: 0.2, load: DEGRADED, name: 'latency x4' },
  { from: 0.5, load: FAILING, name: '+5 % errors' },
  { from: 0.65, load: HEALTHY, name: 'recovered' },
];

interface Bucket {
  admitted: number;
  reservations: number[];
  errors: number;
  rate: number;
}

async function run(adaptive: boolean): Promise<{ buckets: Bucket[]; admittedTotal: number }> {
  const redis = await startEmbeddedRedis();
  const rsim = await startReservationSim({ host: '127.0.0.1', port: 0, holdMs: 600_000 });
  const psim = await startPaymentSim({ host: '127.0.0.1', port: 0 });
  rsim.setLoad(HEALTHY);
  const gw = await startGateway(redis.address, {
    BACKEND_RESERVATION_API_GRPC_ADDRESS: rsim.address,
    BACKEND_PAYMENT_API_GRPC_ADDRESS: psim.address,
    QUEUE_TICK_MS: '100',
    QUEUE_DEFAULT_ACCESS: 'anonymous',
    BACKEND_RESERVATION_API_TIMEOUT: '3s',
    // the breaker would hide the backend from the clients; this run is about the outflow
    BACKEND_BREAKER_ERROR_PERCENT: '100',
    BACKEND_BREAKER_VOLUME: '10000',
  });
  const ev = adaptive ? 'adaptive-on' : 'adaptive-off';
  await putEvent(gw.url, ev, {
    rate: 100,
    burst: 20,
    access: 'anonymous',
    ready_window_sec: 60,
    ...(adaptive ? { adaptive: { floor: 5, ceiling: 100, p95_ms: 300, error_share: 0.01 } } : {}),
  });
  // polls and reservations on separate connection pools: a reservation never waits behind polls at the client
  const client = new Client(gw.url, 256);
  const buyer = new Client(gw.url, 256);
  const n = Math.ceil(SECONDS / BUCKET_SEC);
  const buckets: Bucket[] = Array.from({ length: n }, () => ({ admitted: 0, reservations: [], errors: 0, rate: 0 }));
  const t0 = Date.now();
  const bucketOf = (): Bucket | undefined => buckets[Math.floor((Date.now() - t0) / 1000 / BUCKET_SEC)];
  const stopAt = t0 + SECONDS * 1000;
  let seq = 0;
  const users = new Set<Promise<void>>();

  const user = async (i: number): Promise<void> => {
    const j = await client.req('POST', '/api/v1/queue/join', JSON.stringify({ event_id: ev }));
    if (j.status !== 202) return;
    const token = (JSON.parse(j.body) as { waiting_token: string }).waiting_token;
    for (;;) {
      if (Date.now() > stopAt) return;
      const s = await client.req('GET', `/api/v1/queue/status?token=${encodeURIComponent(token)}`);
      if (s.status !== 200) return;
      const b = JSON.parse(s.body) as { ready_for_entry: boolean; poll_after_ms: number };
      if (b.ready_for_entry) break;
      await sleep(Math.max(250, b.poll_after_ms));
    }
    const e = await client.req('POST', '/api/v1/queue/enter', JSON.stringify({ waiting_token: token }));
    if (e.status !== 200) return;
    const bucket = bucketOf();
    if (bucket) bucket.admitted++;
    const rt = (JSON.parse(e.body) as { reservation_token: string }).reservation_token;
    const t = performance.now();
    const r = await buyer.req('POST', '/api/v1/reservations', JSON.stringify({ event_id: ev, seat_ids: [`s${i}`], reservation_token: rt }), { 'idempotency-key': `bench-${ev}-${i}` });
    const done = bucketOf();
    if (!done) return;
    if (r.status === 201) done.reservations.push(performance.now() - t);
    else if (r.status >= 500) done.errors++;
  };

  // the timeline
  const phaseTimers = PHASES.slice(1).map((p) => setTimeout(() => rsim.setLoad(p.load), p.from * SECONDS * 1000));
  const rateTimer = setInterval(() => {
    void fetch(`${gw.url}/api/v1/admin/events/${ev}`, { headers: { authorization: `Bearer ${ADMIN}` } })
      .then((r) => r.json() as Promise<{ rate: number }>)
      .then((c) => {
        const b = bucketOf();
        if (b) b.rate = Math.max(b.rate, c.rate);
      })
      .catch(() => undefined);
  }, 1000);
  while (Date.now() < stopAt) {
    const due = Math.floor(((Date.now() - t0) / 1000) * ARRIVALS_PER_SEC);
    while (seq < due) {
      const p = user(seq++).catch(() => undefined);
      users.add(p);
      void p.finally(() => users.delete(p));
    }
    await sleep(20);
  }
  for (const t of phaseTimers) clearTimeout(t);
  clearInterval(rateTimer);
  await Promise.race([Promise.all(users), sleep(15_000)]);
  client.close();
  buyer.close();
  await gw.stop();
  await rsim.stop();
  await psim.stop();
  await redis.stop();
  return { buckets, admittedTotal: buckets.reduce((a, b) => a + b.admitted, 0) };
}

function chart(on: Bucket[], off: Bucket[]): string {
  const W = 900;
  const H = 620;
  const left = 60;
  const plotW = W - left - 20;
  const panels = [
    { title: 'admissions per second', get: (b: Bucket) => b.admitted / BUCKET_SEC, max: 120 },
    // no successful reservation in a bucket: no point (the line breaks) rather than a p95 of 0
    { title: 'reservation p95 (ms), successful calls; a gap: none succeeded', get: (b: Bucket) => (b.reservations.length ? pct(b.reservations, 95) : NaN), max: 3000 },
    { title: 'reservation errors per second (5xx)', get: (b: Bucket) => b.errors / BUCKET_SEC, max: 120 },
  ];
  // bucket i covers [i, i + 1) x BUCKET_SEC; its point sits at its middle, on the same axis as the phase lines
  const x = (i: number): number => left + (((i + 0.5) * BUCKET_SEC) / SECONDS) * plotW;
  const parts: string[] = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`, `<rect width="${W}" height="${H}" fill="white"/>`];
  parts.push(`<text x="${left}" y="18" font-size="14">Backend degrades mid-sale: adaptive outflow on (blue) and off (red), ${SECONDS} s, ${BUCKET_SEC} s buckets</text>`);
  panels.forEach((p, k) => {
    const top = 40 + k * 190;
    const h = 150;
    const y = (v: number): number => top + h - (Math.min(v, p.max) / p.max) * h;
    parts.push(`<text x="${left}" y="${top - 6}">${p.title}</text>`);
    parts.push(`<rect x="${left}" y="${top}" width="${plotW}" height="${h}" fill="none" stroke="#ccc"/>`);
    for (const ph of PHASES) {
      const px = left + ph.from * plotW;
      parts.push(`<line x1="${px}" y1="${top}" x2="${px}" y2="${top + h}" stroke="#999" stroke-dasharray="3,3"/>`);
      if (k === 0) parts.push(`<text x="${px + 3}" y="${top + 12}" fill="#666">${ph.name}</text>`);
    }
    parts.push(`<text x="${left - 6}" y="${top + 4}" text-anchor="end">${p.max}</text><text x="${left - 6}" y="${top + h}" text-anchor="end">0</text>`);
    if (k === 1) parts.push(`<line x1="${left}" y1="${y(300)}" x2="${left + plotW}" y2="${y(300)}" stroke="#2a2" stroke-dasharray="6,3"/><text x="${left + plotW - 4}" y="${y(300) - 4}" text-anchor="end" fill="#2a2">objective 300 ms</text>`);
    for (const [data, color] of [
      [off, '#d33'],
      [on, '#236'],
    ] as const) {
      // one polyline per run of points with data
      let run: string[] = [];
      const flush = (): void => {
        if (run.length) parts.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${run.join(' ')}"/>`);
        run = [];
      };
      data.forEach((b, i) => {
        const v = p.get(b);
        if (Number.isNaN(v)) flush();
        else run.push(`${x(i).toFixed(1)},${y(v).toFixed(1)}`);
      });
      flush();
    }
  });
  parts.push(`<text x="${left}" y="${H - 8}" fill="#666">seconds: 0 to ${SECONDS}</text></svg>`);
  return parts.join('\n');
}

async function main(): Promise<void> {
  installCleanup();
  const on = await run(true);
  const off = await run(false);
  console.log(`| t (s) | phase | adaptive: rate set | adaptive: admitted/s | adaptive: p95 ms | adaptive: errors/s | fixed: admitted/s | fixed: p95 ms | fixed: errors/s |`);
  console.log('|---:|---|---:|---:|---:|---:|---:|---:|---:|');
  on.buckets.forEach((b, i) => {
    const f = off.buckets[i]!;
    const t = i * BUCKET_SEC;
    const phase = [...PHASES].reverse().find((p) => t >= p.from * SECONDS)!.name;
    const p95 = (x: Bucket): string => (x.reservations.length ? pct(x.reservations, 95).toFixed(0) : '-');
    console.log(
      `| ${t} | ${phase} | ${b.rate} | ${(b.admitted / BUCKET_SEC).toFixed(1)} | ${p95(b)} | ${(b.errors / BUCKET_SEC).toFixed(1)} | ${(f.admitted / BUCKET_SEC).toFixed(1)} | ${p95(f)} | ${(f.errors / BUCKET_SEC).toFixed(1)} |`,
    );
  });
  const sum = (r: { buckets: Bucket[] }, from: number, to: number) => {
    const bs = r.buckets.filter((_, i) => i * BUCKET_SEC >= from * SECONDS && i * BUCKET_SEC < to * SECONDS);
    const lat = bs.flatMap((b) => b.reservations);
    return { admitted: bs.reduce((a, b) => a + b.admitted, 0), p95: lat.length ? pct(lat, 95) : 0, errors: bs.reduce((a, b) => a + b.errors, 0), ok: lat.length };
  };
  console.log('\n| phase | adaptive: admitted | adaptive: reservations ok | adaptive: p95 ms | adaptive: errors | fixed: admitted | fixed: reservations ok | fixed: p95 ms | fixed: errors |');
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
  PHASES.forEach((p, k) => {
    const to = PHASES[k + 1]?.from ?? 1;
    const a = sum(on, p.from, to);
    const f = sum(off, p.from, to);
    console.log(`| ${p.name} | ${a.admitted} | ${a.ok} | ${a.p95.toFixed(0)} | ${a.errors} | ${f.admitted} | ${f.ok} | ${f.p95.toFixed(0)} | ${f.errors} |`);
  });
  if (OUT) {
    writeFileSync(OUT, chart(on.buckets, off.buckets));
    console.log(`\nchart: ${OUT}`);
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
