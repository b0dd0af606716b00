import { AppError } from '../errors.js';
import type { QueueStore } from '../queue/store.js';
import { DRAW_ALGORITHM, entrantsDigest } from '../queue/draw.js';
import type { Logger } from '../log.js';
import { route, type AnyRoute, type ErrorList } from './route.js';
import * as S from './schemas.js';

// The pre-queue draw, published (docs/FAIRNESS.md): the commitment from the
// moment the schedule is set, the seed and the entrant list once drawn.
// Anyone can recompute the order (npm run verify-draw).

export interface DrawRouteDeps {
  store: QueueStore;
  log: Logger;
}

const PAGE_MAX = 10_000;
const REDIS: ErrorList = [['REDIS_UNAVAILABLE', 'the queue store (Redis) is unavailable or did not answer within REDIS_COMMAND_TIMEOUT_MS; retry after Retry-After']];
const NO_DRAW: ErrorList = [['EVENT_NOT_FOUND', 'no such event, or the event has no schedule (no draw)']];
const iso = (ms: number): string | null => (ms > 0 ? new Date(ms).toISOString() : null);

export function drawRoutes(d: DrawRouteDeps): AnyRoute[] {
  // one digest computation per event at a time on this instance (the first readers after the draw)
  const digests = new Map<string, Promise<string>>();
  const digestOf = (eventId: string, total: number): Promise<string> => {
    let p = digests.get(eventId);
    if (!p) {
      p = (async () => {
        const receipts: string[] = [];
        for (let off = 0; off < total; off += PAGE_MAX) for (const [r] of await d.store.entrants(eventId, off, PAGE_MAX)) receipts.push(r);
        const digest = await d.store.saveDrawDigest(eventId, entrantsDigest(receipts));
        d.log.info({ event_id: eventId, entrants: receipts.length, digest }, 'draw: entrant list digest recorded');
        return digest;
      })().finally(() => digests.delete(eventId));
      digests.set(eventId, p);
    }
    return p;
  };

  return [
    route({
      method: 'GET',
      path: '/api/v1/events/:id/draw',
      operationId: 'getDraw',
      summary: "The pre-queue draw: its commitment, and once drawn its seed and the entrant list's digest",
      description:
        'From the moment the event is scheduled: the algorithm and the commitment (SHA-256 of the seed), which never change. From the start: the seed, the number of entrants and ' +
        'the digest of their receipts. docs/FAIRNESS.md says how to recompute the order; `npm run verify-draw -- <base-url> <event>` does it.',
      tags: ['queue'],
      params: S.EventIdParams,
      responses: { 200: { description: 'The draw.', schema: S.DrawInfo } },
      errors: [...NO_DRAW, ...REDIS],
      handler: async ({ params }) => {
        const info = await d.store.drawInfo(params.id);
        if (!info) throw new AppError('EVENT_NOT_FOUND', 'no such event, or it has no draw');
        const drawn = info.drawnMs > 0;
        const digest = drawn ? info.digest || (await digestOf(params.id, info.entrants)) : null;
        return {
          status: 200,
          body: {
            event_id: params.id,
            algorithm: DRAW_ALGORITHM,
            status: drawn ? 'drawn' : 'committed',
            commitment: info.commitment,
            committed_at: new Date(info.committedMs).toISOString(),
            prequeue_opens_at: iso(info.prequeueOpensMs),
            starts_at: iso(info.startsMs),
            seed: drawn ? info.seed : null,
            drawn_at: iso(info.drawnMs),
            entrants: info.entrants,
            entrants_digest: digest,
            entrants_url: `/api/v1/events/${params.id}/draw/entrants`,
          },
        };
      },
    }),
    route({
      method: 'GET',
      path: '/api/v1/events/:id/draw/entrants',
      operationId: 'getDrawEntrants',
      summary: 'The drawn entrant list, in draw order (paged)',
      description: `After the draw only (before it, the order would tell people whether to leave and join again). At most ${PAGE_MAX} per page.`,
      tags: ['queue'],
      params: S.EventIdParams,
      query: S.DrawEntrantsQuery,
      responses: { 200: { description: 'One page of the list.', schema: S.DrawEntrants } },
      errors: [...NO_DRAW, ['EVENT_STATE_CONFLICT', 'not drawn yet (carries `state`)'], ...REDIS],
      handler: async ({ params, query }) => {
        const info = await d.store.drawInfo(params.id);
        if (!info) throw new AppError('EVENT_NOT_FOUND', 'no such event, or it has no draw');
        if (info.drawnMs === 0) throw new AppError('EVENT_STATE_CONFLICT', 'the entrant list is published at the draw', { state: info.state });
        const offset = Math.min(Number(query.offset ?? 0), info.entrants);
        const limit = Math.max(1, Math.min(PAGE_MAX, Number(query.limit ?? PAGE_MAX)));
        const page = await d.store.entrants(params.id, offset, limit);
        return {
          status: 200,
          body: { event_id: params.id, total: info.entrants, offset, entrants: page.map(([receipt, key], i) => ({ position: offset + i + 1, receipt, key })) },
        };
      },
    }),
  ];
}
