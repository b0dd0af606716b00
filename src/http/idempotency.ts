import { createHash, randomBytes } from 'node:crypto';
import { AppError, errorBody } from '../errors.js';
import type { RedisClient } from '../redis/connect.js';
import { callStore } from '../redis/connect.js';
import { num, statusOf, str, unexpected } from '../redis/replies.js';
import type { Metrics } from '../metrics.js';
import type { Logger } from '../log.js';
import type { HttpRequest, Reply } from './route.js';

// Idempotency-Key per the contract: the same key with the same request
// replays the stored response (X-Idempotency-Cached: true); the same key with
// a different request is 409 IDEMPOTENCY_CONFLICT; while the first request is
// still running, 409 too, never a second execution (atomic claim in Lua).
// Keys are scoped by route and caller: the verified JWT subject (so a retry
// with a refreshed token still replays), or the client address when
// anonymous. Two users cannot collide or read each other's responses, and a
// token that does not verify never reaches a stored response. 5xx outcomes
// are not stored: a retry runs again.
//
// The claim is kept alive while the request runs (a slow backend call never
// lets it lapse into a second execution), and an outcome that cannot be
// recorded is never answered as if it were: the client gets 503 and its retry
// under the same key is answered once the record settles (a replay, or for
// reservations the admission ledger's own replay), never a second run.

const KEY_RE = /^[A-Za-z0-9_-]{8,128}$/;
const sha = (s: string | Buffer): string => createHash('sha256').update(s).digest('base64url');

export class Idempotency {
  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
    private readonly ttlMs: number,
    private readonly inflightMs: number,
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {}

  /**
   * Runs `exec` at most once per (route, caller, Idempotency-Key): a repeat
   * replays the stored answer. `subject`: the verified user (the edge has
   * authenticated the request), else the client address scopes the key.
   */
  async run(
    req: HttpRequest,
    subject: string | undefined,
    required: boolean,
    exec: () => Promise<Reply>,
    /** the route's serialiser (the edge's compiled one): a stored answer is what the route writes */
    serialize: (status: number, body: unknown) => string,
  ): Promise<Reply> {
    const key = req.headers['idempotency-key'];
    if (!key) {
      if (required) throw new AppError('IDEMPOTENCY_KEY_REQUIRED');
      return exec();
    }
    if (!KEY_RE.test(key)) throw new AppError('INVALID_REQUEST', 'Idempotency-Key must be 8-128 characters of A-Z a-z 0-9 _ -');
    const scope = sha(`${req.route}\n${subject !== undefined ? `u:${subject}` : `ip:${req.clientIp}`}`);
    const recordKey = `${this.prefix}idem:${scope}:${sha(key)}`;
    const fp = sha(`${req.method}\n${req.path}\n${req.rawQuery}\n${req.body?.toString('utf8') ?? ''}`);
    const owner = randomBytes(12).toString('base64url');
    const r = await this.call('idemBegin', recordKey, [fp, owner, this.inflightMs]);
    // {status} or {DONE, httpStatus, body, headersJson} (lua/idem-begin-1.lua)
    const begun = statusOf('idemBegin', r);
    if (begun === 'CONFLICT') throw new AppError('IDEMPOTENCY_CONFLICT', 'this Idempotency-Key was used for a different request', { reason: 'different_request' });
    if (begun === 'IN_FLIGHT') throw new AppError('IDEMPOTENCY_CONFLICT', 'a request with this Idempotency-Key is still in progress', { reason: 'in_flight' });
    if (begun === 'DONE') {
      const [, httpStatus, body, headersJson] = r as unknown[];
      this.metrics.idempotencyHits.inc();
      const headers = JSON.parse(str(headersJson) || '{}') as Record<string, string>;
      return { status: num(httpStatus), body: str(body), headers: { ...headers, 'X-Idempotency-Cached': 'true' } };
    }
    if (begun !== 'CLAIMED') throw unexpected('idemBegin', begun);
    let reply: Reply;
    const keepAlive = setInterval(() => {
      this.call('idemExtend', recordKey, [owner, this.inflightMs]).catch((err: unknown) => this.log.warn({ route: req.route, err }, 'idempotency: could not extend a claim in flight'));
    }, Math.max(500, Math.floor(this.inflightMs / 3)));
    try {
      reply = await exec();
    } catch (err) {
      clearInterval(keepAlive);
      if (err instanceof AppError && err.status < 500) {
        await this.finish(req, recordKey, owner, err.status, errorBody(err.code, err.message, req.traceId, err.details), err.headers ?? {});
      } else {
        await this.release(req, recordKey, owner);
      }
      throw err;
    }
    clearInterval(keepAlive);
    if (reply.status >= 500) {
      await this.release(req, recordKey, owner);
      return reply;
    }
    // stored as the serialised JSON the route's schema would write, so a replay is byte for byte the answer
    const body = reply.body === undefined ? '' : typeof reply.body === 'string' ? reply.body : serialize(reply.status, reply.body);
    await this.finish(req, recordKey, owner, reply.status, body, reply.headers ?? {});
    return { ...reply, body };
  }

  /**
   * Store the outcome under the key. When that fails, or the claim was lost,
   * the caller is answered 503 instead: an answer the record does not hold
   * would let a retry run the request again.
   */
  private async finish(req: HttpRequest, key: string, owner: string, status: number, body: string, headers: Readonly<Record<string, string>>): Promise<void> {
    let stored: boolean;
    try {
      stored = Number(await this.call('idemEnd', key, [owner, 'store', status, body, JSON.stringify(headers), this.ttlMs])) === 1;
    } catch (err) {
      this.unrecorded(req, status, 'store_failed', err);
    }
    if (!stored) this.unrecorded(req, status, 'claim_lost');
  }

  private unrecorded(req: HttpRequest, status: number, reason: string, err?: unknown): never {
    this.metrics.idempotencyStoreFailures.inc({ store: 'idempotency', reason });
    this.log.error({ route: req.route, request_id: req.requestId, status, reason, err }, 'idempotency: outcome not recorded; answered 503');
    throw new AppError('SERVICE_UNAVAILABLE', 'the outcome of this request could not be recorded; retry with the same Idempotency-Key', { reason: 'outcome_not_recorded' }, { 'Retry-After': '2' });
  }

  /** A 5xx frees the key for a retry. If that fails the claim simply lapses (inflight TTL): retries wait, nothing runs twice. */
  private async release(req: HttpRequest, key: string, owner: string): Promise<void> {
    await this.call('idemEnd', key, [owner, 'release', 0, '', '{}', 0]).catch((err: unknown) => {
      this.metrics.idempotencyStoreFailures.inc({ store: 'idempotency', reason: 'release_failed' });
      this.log.warn({ route: req.route, request_id: req.requestId, err }, 'idempotency: could not release a claim after a 5xx; it lapses by itself');
    });
  }

  private call(script: 'idemBegin' | 'idemEnd' | 'idemExtend', key: string, args: (string | number)[]): Promise<unknown> {
    return callStore(this.redis, script, [key], args);
  }
}
