// Scenario 6, ETA accuracy: a time-compressed simulated sale against a real
// gateway and Redis. Users join in a burst; each reads its status right
// after joining (the "ETA at join") and again at 25/50/75 % of that ETA;
// a share abandons (DELETE /leave at a random point of its wait); the rest
// enter when promoted, some of them slowly; the operator halves the rate
// midway. The moment each user became ready is taken from the event's tick
// channel (promotions by line sequence), so nobody has to poll to be timed.
// For every admitted user we compare each ETA shown with the wait it
// actually had from that moment on.
import { Redis } from 'ioredis';
import { unpack } from 'msgpackr';
import { eventKeys } from '../src/redis/keys.js';
import { decodeTick } from '../src/queue/broker.js';
import { Client, PREFIX, pct, pool, putEvent, round, sleep, startGateway } from './lib.js';

export interface EtaOptions {
  redisAddress: string;
  users: number;
  joinSec: number;
  rate: number;
  /** rate after the change, set when `changeAt` of the users have been promoted */
  rateAfter: number;
  changeAt: number;
  abandon: number;
  slowEnter: number;
  tickMs: number;
  limitSec: number;
}

interface Obs {
  at: number;
  eta: number;
  low: number;
  high: number;
}

interface SimUser {
  token: string;
  seq: number;
  obs: Obs[];
  abandons: boolean;
  left: boolean;
  promotedAt: number;
  entered: boolean;
}

interface StatusBody {
  eta_sec: number;
  eta_low: number;
  eta_high: number;
  ready_for_entry: boolean;
}

function summarize(pairs: Array<{ o: Obs; actualSec: number }>): Record<string, number> {
  const rel = pairs.filter((p) => p.actualSec >= 1).map((p) => Math.abs(p.o.eta - p.actualSec) / p.actualSec);
  const abs = pairs.map((p) => Math.abs(p.o.eta - p.actualSec));
  const inside = pairs.filter((p) => p.actualSec >= p.o.low && p.actualSec <= p.o.high).length;
  const signed = pairs.map((p) => p.o.eta - p.actualSec);
  return {
    n: pairs.length,
    median_abs_err_sec: round(pct(abs, 50)),
    p90_abs_err_sec: round(pct(abs, 90)),
    median_rel_err: round(pct(rel, 50), 3),
    p90_rel_err: round(pct(rel, 90), 3),
    median_signed_err_sec: round(pct(signed, 50)),
    inside_range_share: round(pairs.length ? inside / pairs.length : NaN, 3),
    median_actual_wait_sec: round(pct(pairs.map((p) => p.actualSec), 50)),
  };
}

export async function runEta(o: EtaOptions): Promise<Record<string, unknown>> {
  const EVENT = `eta${Date.now() % 100000}`;
  const gw = await startGateway(o.redisAddress, {
    QUEUE_TICK_MS: String(o.tickMs),
    QUEUE_LEASE_MS: String(Math.max(500, o.tickMs * 4)),
    QUEUE_MAX_PROMOTIONS_PER_TICK: '100000',
  });
  const [host, port] = o.redisAddress.split(':');
  const redis = new Redis({ host, port: Number(port), enableAutoPipelining: true });
  const sub = new Redis({ host, port: Number(port) });
  const keys = eventKeys(PREFIX, EVENT);
  const client = new Client(gw.url, 128);
  const bySeq = new Map<number, SimUser>();
  // promotions can be published before the join's ZSCORE came back: keep them by sequence number
  const promotedSeq = new Map<number, number>();
  const users: SimUser[] = [];
  let promoted = 0;
  let changedAt = 0;
  let rateChanged = false;
  const counts = { join_fail: 0, status_fail: 0, enter_ok: 0, enter_fail: 0, leave_ok: 0, leave_fail: 0, expired_seen: 0 };
  const t0 = Date.now();
  try {
    const burst = Math.max(10, Math.ceil((o.rate * o.tickMs) / 1000) * 2);
    await putEvent(gw.url, EVENT, { rate: o.rate, burst, ready_window_sec: 120, reconnect_grace_sec: 60, state: 'open' });

    const enter = async (u: SimUser): Promise<void> => {
      if (u.abandons) return;
      await sleep(Math.random() < o.slowEnter ? 5000 + Math.random() * 10_000 : 200 + Math.random() * 1300);
      const r = await client.req('POST', '/api/v1/queue/enter', JSON.stringify({ waiting_token: u.token })).catch(() => undefined);
      if (r?.status === 200) {
        u.entered = true;
        counts.enter_ok++;
      } else counts.enter_fail++;
    };
    sub.on('messageBuffer', (_c: Buffer, data: Buffer) => {
      const m = decodeTick(data);
      for (const { seq } of m.promoted) {
        promotedSeq.set(seq, m.redisTimeMs);
        promoted++;
        const u = bySeq.get(seq);
        if (!u || u.promotedAt) continue;
        u.promotedAt = m.redisTimeMs;
        void enter(u);
      }
      if (!rateChanged && promoted >= o.changeAt * o.users) {
        rateChanged = true;
        changedAt = Date.now();
        const burstAfter = Math.max(10, Math.ceil((o.rateAfter * o.tickMs) / 1000) * 2);
        void putEvent(gw.url, EVENT, { rate: o.rateAfter, burst: burstAfter });
      }
    });
    await sub.subscribe(keys.channel);

    const poll = async (u: SimUser): Promise<void> => {
      const r = await client.req('GET', `/api/v1/queue/status?token=${encodeURIComponent(u.token)}`).catch(() => undefined);
      if (!r || r.status !== 200) {
        if (r?.status === 404) counts.expired_seen++;
        else counts.status_fail++;
        return;
      }
      const b = JSON.parse(r.body) as StatusBody;
      if (b.ready_for_entry) return; // already promoted: the tick message times it
      u.obs.push({ at: Date.now(), eta: b.eta_sec, low: b.eta_low, high: b.eta_high });
    };
    const later = (u: SimUser, f: number): void => {
      const first = u.obs[0];
      if (!first) return;
      setTimeout(() => {
        if (!u.promotedAt && !u.left) void poll(u);
      }, f * first.eta * 1000);
    };

    // joins, paced evenly over joinSec
    const gap = (o.joinSec * 1000) / o.users;
    await pool(
      Array.from({ length: o.users }, (_, i) => i),
      128,
      async (i) => {
        const due = t0 + i * gap;
        if (due > Date.now()) await sleep(due - Date.now());
        const r = await client.req('POST', '/api/v1/queue/join', `{"event_id":"${EVENT}"}`).catch(() => undefined);
        if (!r || r.status !== 202) {
          counts.join_fail++;
          return;
        }
        const token = (JSON.parse(r.body) as { waiting_token: string }).waiting_token;
        const score = await redis.zscore(keys.q, token);
        const u: SimUser = { token, seq: Number(score), obs: [], abandons: Math.random() < o.abandon, left: false, promotedAt: 0, entered: false };
        users.push(u);
        bySeq.set(u.seq, u);
        const early = promotedSeq.get(u.seq);
        if (early !== undefined) {
          u.promotedAt = early;
          void enter(u);
        }
        await poll(u);
        for (const f of [0.25, 0.5, 0.75]) later(u, f);
        if (u.abandons) {
          const first = u.obs[0];
          const after = first ? (0.1 + Math.random() * 0.8) * first.eta * 1000 : 0;
          setTimeout(() => {
            u.left = true;
            void client
              .req('DELETE', `/api/v1/queue/leave?token=${encodeURIComponent(u.token)}`)
              .then((x) => (x.status === 200 ? counts.leave_ok++ : counts.leave_fail++))
              .catch(() => counts.leave_fail++);
          }, after);
        }
      },
    );
    const joinedMs = Date.now() - t0;

    // wait until every user who stays has been promoted and entered (or the limit)
    const stayers = users.filter((u) => !u.abandons);
    const limit = t0 + o.limitSec * 1000;
    while (Date.now() < limit) {
      if (stayers.every((u) => u.promotedAt > 0) && counts.enter_ok + counts.enter_fail >= stayers.filter((u) => u.promotedAt > 0).length) break;
      await sleep(250);
    }
    const admitted = stayers.filter((u) => u.promotedAt > 0 && u.entered);
    const atJoin: Array<{ o: Obs; actualSec: number }> = [];
    const inLine: Array<{ o: Obs; actualSec: number }> = [];
    const joinBeforeChange: Array<{ o: Obs; actualSec: number }> = [];
    const joinAfterChange: Array<{ o: Obs; actualSec: number }> = [];
    const inLineAfterChange: Array<{ o: Obs; actualSec: number }> = [];
    const inLineSpanning: Array<{ o: Obs; actualSec: number }> = [];
    const inLineOther: Array<{ o: Obs; actualSec: number }> = [];
    for (const u of admitted) {
      u.obs.forEach((ob, k) => {
        const pair = { o: ob, actualSec: Math.max(0, (u.promotedAt - ob.at) / 1000) };
        if (k === 0) {
          atJoin.push(pair);
          // did the rate change happen during this user's wait?
          (changedAt && u.promotedAt > changedAt && ob.at < changedAt ? joinBeforeChange : joinAfterChange).push(pair);
        } else {
          inLine.push(pair);
          (changedAt && ob.at >= changedAt ? inLineAfterChange : changedAt && u.promotedAt > changedAt ? inLineSpanning : inLineOther).push(pair);
        }
      });
    }
    const totalSec = (Date.now() - t0) / 1000;
    return {
      users: o.users,
      join_window_sec: o.joinSec,
      joins_done_after_sec: round(joinedMs / 1000),
      rate: o.rate,
      rate_after: o.rateAfter,
      rate_changed_after_sec: changedAt ? round((changedAt - t0) / 1000) : null,
      abandon_share: o.abandon,
      slow_enter_share: o.slowEnter,
      tick_ms: o.tickMs,
      promoted: promoted,
      admitted: admitted.length,
      stayers_not_promoted: stayers.filter((u) => !u.promotedAt).length,
      counts,
      sale_sec: round(totalSec),
      eta_at_join: summarize(atJoin),
      eta_at_join_wait_spanned_rate_change: summarize(joinBeforeChange),
      eta_at_join_wait_not_spanning_change: summarize(joinAfterChange),
      eta_in_line_25_50_75: summarize(inLine),
      eta_in_line_shown_after_rate_change: summarize(inLineAfterChange),
      eta_in_line_wait_spanned_rate_change: summarize(inLineSpanning),
      eta_in_line_wait_not_spanning_change: summarize(inLineOther),
    };
  } finally {
    sub.disconnect();
    redis.disconnect();
    client.close();
    await gw.stop();
  }
}
