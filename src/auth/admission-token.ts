import { SignJWT, exportJWK, generateKeyPair, importJWK, jwtVerify, createLocalJWKSet, errors, type JWK, type KeyLike, type JWTPayload } from 'jose';
import { createHash, randomBytes } from 'node:crypto';
import { AppError } from '../errors.js';
import type { Config } from '../config.js';
import { callStore, type RedisClient } from '../redis/connect.js';
import { num, statusOf, str, unexpected } from '../redis/replies.js';
import { eventKeys } from '../redis/keys.js';

// The reservation_token returned by enter: a short-lived JWT signed by the
// gateway (EdDSA or ES256, with a kid) that downstream services verify with
// /.well-known/jwks.json. Rotation by configuration: ADMISSION_SIGNING_JWK is
// the current key; ADMISSION_PREVIOUS_JWKS stay published (and accepted here)
// so tokens signed before a rotation stay valid until they expire.
// POST /reservations accepts a token once (its jti is consumed in Redis),
// only for its event and user, only before expiry.

export interface AdmissionClaims {
  eventId: string;
  waitingToken: string;
  userId: string;
  /** when the place was admitted (Redis ms): the token's iat, exp and jti follow from it */
  admittedMs: number;
}

export interface VerifiedAdmission extends JWTPayload {
  evt: string;
  wt: string;
  sub: string;
  jti: string;
  exp: number;
}

const AUDIENCE = 'reservation';
const SIGNING_ALGS = ['EdDSA', 'ES256'];

const forbidden = (reason: string, message: string): AppError => new AppError('FORBIDDEN', message, { reason });

function publicPart(jwk: JWK): JWK {
  const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, k: _k, ...pub } = jwk;
  return pub;
}

export class AdmissionTokenIssuer {
  private readonly jwksBody: string;
  private readonly verifySet: ReturnType<typeof createLocalJWKSet>;

  private constructor(
    private readonly key: KeyLike | Uint8Array,
    private readonly alg: string,
    readonly kid: string,
    published: JWK[],
    readonly ttlSec: number,
    private readonly issuer: string,
  ) {
    this.jwksBody = JSON.stringify({ keys: published });
    this.verifySet = createLocalJWKSet({ keys: published });
  }

  /** From configuration; without ADMISSION_SIGNING_JWK an ephemeral Ed25519 key (one process only: development and tests). */
  static async create(cfg: Config['admission'], ttlSec: number): Promise<AdmissionTokenIssuer> {
    const published: JWK[] = [];
    let key: KeyLike | Uint8Array;
    let alg: string;
    let kid: string;
    if (cfg.signingJwk) {
      let jwk: JWK;
      try {
        jwk = JSON.parse(cfg.signingJwk) as JWK;
      } catch {
        throw new Error('ADMISSION_SIGNING_JWK: not valid JSON');
      }
      alg = jwk.alg ?? (jwk.crv === 'Ed25519' ? 'EdDSA' : jwk.crv === 'P-256' ? 'ES256' : '');
      if (!SIGNING_ALGS.includes(alg)) throw new Error('ADMISSION_SIGNING_JWK: must be an EdDSA (Ed25519) or ES256 (P-256) private key');
      if (!jwk.kid) throw new Error('ADMISSION_SIGNING_JWK: needs a kid');
      if (!jwk.d) throw new Error('ADMISSION_SIGNING_JWK: must be a private key (with d)');
      kid = jwk.kid;
      key = await importJWK(jwk, alg);
      published.push({ ...publicPart(jwk), alg, use: 'sig', kid });
    } else {
      alg = 'EdDSA';
      const pair = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
      key = pair.privateKey;
      kid = `ephemeral-${randomBytes(6).toString('hex')}`;
      published.push({ ...(await exportJWK(pair.publicKey)), alg, use: 'sig', kid });
    }
    if (cfg.previousJwks) {
      let prev: JWK[];
      try {
        prev = JSON.parse(cfg.previousJwks) as JWK[];
      } catch {
        throw new Error('ADMISSION_PREVIOUS_JWKS: not valid JSON');
      }
      if (!Array.isArray(prev)) throw new Error('ADMISSION_PREVIOUS_JWKS: must be a JSON array of JWKs');
      for (const p of prev) {
        if (!p.kid || p.kid === kid) throw new Error('ADMISSION_PREVIOUS_JWKS: every key needs a kid different from the current one');
        published.push({ ...publicPart(p), alg: p.alg ?? (p.crv === 'Ed25519' ? 'EdDSA' : 'ES256'), use: 'sig' });
      }
    }
    return new AdmissionTokenIssuer(key, alg, kid, published, ttlSec, cfg.issuer);
  }

  /** The body of GET /.well-known/jwks.json (public keys only). */
  jwks(): string {
    return this.jwksBody;
  }

  /**
   * One admission, one token identity: jti, iat and exp follow from the place
   * and the instant it was admitted, so signing again (a retried enter whose
   * answer was lost) yields the same admission, never a second one, and the
   * single-use ledger (keyed by jti) sees them as one.
   */
  sign(c: AdmissionClaims): Promise<string> {
    const iat = Math.floor(c.admittedMs / 1000);
    return new SignJWT({ evt: c.eventId, wt: c.waitingToken })
      .setProtectedHeader({ alg: this.alg, kid: this.kid, typ: 'JWT' })
      .setIssuer(this.issuer)
      .setAudience(AUDIENCE)
      .setSubject(c.userId || c.waitingToken)
      .setJti(createHash('sha256').update(`admission\n${c.waitingToken}\n${c.admittedMs}`).digest('base64url').slice(0, 22))
      .setIssuedAt(iat)
      .setExpirationTime(iat + this.ttlSec)
      .sign(this.key);
  }

  /** Seconds an admission admitted at `admittedMs` stays valid from now (<= 0: expired). */
  remainingSec(admittedMs: number, nowMs = Date.now()): number {
    return Math.floor(admittedMs / 1000) + this.ttlSec - Math.floor(nowMs / 1000);
  }

  /** Signature, issuer, audience, expiry; then event and user. Throws 403 FORBIDDEN with a reason. */
  /** expect: the event and user it must be for (an omitted one is not checked) */
  async verify(token: string, expect: { eventId?: string; userId?: string }): Promise<VerifiedAdmission> {
    if (typeof token !== 'string' || token.length > 4096 || !/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(token)) {
      throw forbidden('malformed', 'reservation_token malformed');
    }
    let p: JWTPayload;
    try {
      p = (await jwtVerify(token, this.verifySet, { issuer: this.issuer, audience: AUDIENCE, algorithms: SIGNING_ALGS, requiredClaims: ['exp', 'jti', 'sub'] })).payload;
    } catch (err) {
      if (err instanceof errors.JWTExpired) throw forbidden('expired', 'reservation_token expired');
      throw forbidden('invalid', 'reservation_token invalid');
    }
    const v = p as VerifiedAdmission;
    if (typeof v.evt !== 'string' || typeof v.wt !== 'string') throw forbidden('invalid', 'reservation_token invalid');
    if (expect.eventId !== undefined && v.evt !== expect.eventId) throw forbidden('wrong_event', 'reservation_token is for another event');
    if (expect.userId !== undefined && v.sub !== expect.userId) throw forbidden('wrong_user', 'reservation_token belongs to another user');
    return v;
  }
}

/** How one reservation request may proceed with its admission token (AdmissionTokenLedger.begin). */
export type LedgerTurn =
  | { readonly kind: 'run'; readonly owner: string; readonly attempt: number; readonly resumed: boolean }
  | { readonly kind: 'replay'; readonly body: string };

/**
 * Single use of admission tokens, exactly once: the token's jti holds its one
 * reservation (lua/admission-begin-1.lua). The first request claims it; the
 * backend is called with a key derived from the jti and the attempt number,
 * so a request retried after an unknown outcome (a timeout) gets the hold the
 * first call made instead of a second one; a backend refusal frees the token
 * for another try; once reserved, the same request replays the reservation
 * and any other request is 403.
 */
export class AdmissionTokenLedger {
  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
    /** how long an attempt may run before another call may resume it (the backend deadline plus slack) */
    private readonly leaseMs: number,
  ) {}

  private key(v: VerifiedAdmission): string {
    return `${eventKeys(this.prefix, v.evt).base}rt:${v.jti}`;
  }

  /** Throws 403 (used for another request) or 409 IDEMPOTENCY_CONFLICT (an attempt in flight). */
  async begin(v: VerifiedAdmission, fingerprint: string): Promise<LedgerTurn> {
    const ttlMs = Math.max(1000, v.exp * 1000 - Date.now() + 60_000);
    const owner = randomBytes(12).toString('base64url');
    const r = await this.call('admissionBegin', v, [fingerprint, owner, this.leaseMs, ttlMs]);
    // {status, attempt | body} (lua/admission-begin-1.lua)
    const status = statusOf('admissionBegin', r);
    const field = (r as unknown[])[1];
    switch (status) {
      case 'CLAIMED':
      case 'RESUMED':
        return { kind: 'run', owner, attempt: num(field), resumed: status === 'RESUMED' };
      case 'DONE':
        return { kind: 'replay', body: str(field) };
      case 'IN_FLIGHT':
        throw new AppError('IDEMPOTENCY_CONFLICT', 'a reservation with this reservation_token is in progress; retry shortly', { reason: 'in_flight' }, { 'Retry-After': '1' });
      case 'CONFLICT':
        throw forbidden('used', 'reservation_token was already used');
      default:
        throw unexpected('admissionBegin', status);
    }
  }

  /**
   * The origin redeems the admission (once): the token's single use, shared
   * with reservations through the gateway. Throws 409 ALREADY_REDEEMED.
   */
  async redeem(v: VerifiedAdmission): Promise<void> {
    const ttlMs = Math.max(1000, v.exp * 1000 - Date.now() + 60_000);
    const r = await callStore(this.redis, 'admissionRedeem', [this.key(v)], [eventKeys(this.prefix, v.evt).base, '', ttlMs]);
    // {status, redeemedAtMs | state} (lua/admission-redeem-1.lua)
    const status = statusOf('admissionRedeem', r);
    switch (status) {
      case 'REDEEMED':
        return;
      case 'ALREADY_REDEEMED':
        throw new AppError('ALREADY_REDEEMED', 'this admission token was already redeemed', { reason: 'redeemed', redeemed_at: new Date(num((r as unknown[])[1])).toISOString() });
      case 'SPENT':
        throw new AppError('ALREADY_REDEEMED', 'this admission token was already spent on a reservation', { reason: 'reserved' });
      default:
        throw unexpected('admissionRedeem', status);
    }
  }

  /** Records how the attempt ended; false when the claim was no longer the caller's. */
  async end(v: VerifiedAdmission, owner: string, outcome: 'done' | 'unknown' | 'free', body = ''): Promise<boolean> {
    return Number(await this.call('admissionEnd', v, [owner, outcome, body])) === 1;
  }

  /** The backend idempotency key of an attempt: a UUID from the token's jti and the attempt number. */
  static backendKey(v: VerifiedAdmission, attempt: number): string {
    const h = createHash('sha256').update(`reservation\n${v.jti}\n${attempt}`).digest('hex');
    // RFC 9562 version 8 (custom) layout: version nibble 8, variant 10xx
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-8${h.slice(13, 16)}-${((parseInt(h[16]!, 16) & 0x3) | 0x8).toString(16)}${h.slice(17, 20)}-${h.slice(20, 32)}`;
  }

  private call(script: 'admissionBegin' | 'admissionEnd', v: VerifiedAdmission, args: (string | number)[]): Promise<unknown> {
    return callStore(this.redis, script, [this.key(v)], [eventKeys(this.prefix, v.evt).base, '', ...args]);
  }
}
