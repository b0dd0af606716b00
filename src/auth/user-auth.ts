import { createRemoteJWKSet, jwtVerify, SignJWT, errors, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { randomBytes } from 'node:crypto';
import { AppError } from '../errors.js';
import type { Config } from '../config.js';

// User authentication: bearer JWTs verified against a JWKS endpoint (keys
// cached, refetched on an unknown kid at most once per cooldown) or a shared
// HS256 secret, with an algorithm allow-list, `exp` required, `nbf` honoured,
// and the issuer/audience enforced when configured. There is no bypass token
// of any kind: anything that does not verify is rejected the same way.

export interface Identity {
  readonly sub: string;
}

const BEARER_RE = /^Bearer ([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*)$/;
const SUB_RE = /^[\x21-\x7e]{1,128}$/;
const MAX_TOKEN_CHARS = 8192;

const unauthorized = (reason: string, message: string): AppError =>
  new AppError('UNAUTHORIZED', message, { reason }, { 'WWW-Authenticate': `Bearer error="invalid_token"` });

export class UserAuth {
  private constructor(
    private readonly key: Uint8Array | JWTVerifyGetKey | undefined,
    private readonly cfg: Config['auth'],
    /** the HS256 key dev tokens are minted with (development only) */
    private readonly devKey: Uint8Array | undefined,
  ) {}

  static create(cfg: Config['auth']): UserAuth {
    if (cfg.mode === 'jwks') {
      const jwks = createRemoteJWKSet(new URL(cfg.jwksEndpoint!), { cooldownDuration: cfg.jwksCooldownSec * 1000, cacheMaxAge: 10 * 60 * 1000, timeoutDuration: 3000 });
      return new UserAuth(jwks, cfg, undefined);
    }
    if (cfg.mode === 'secret') {
      const key = new TextEncoder().encode(cfg.secret);
      return new UserAuth(key, cfg, cfg.devTokens ? key : undefined);
    }
    if (cfg.devTokens) {
      // development without a configured secret: an ephemeral one, valid for this process only
      const key = new Uint8Array(randomBytes(32));
      return new UserAuth(key, { ...cfg, mode: 'secret', algorithms: ['HS256'] }, key);
    }
    return new UserAuth(undefined, cfg, undefined);
  }

  /** Is user authentication configured? When not (open mode), enter needs no JWT. */
  get configured(): boolean {
    return this.key !== undefined;
  }

  get devTokens(): boolean {
    return this.devKey !== undefined;
  }

  /** undefined when no Authorization header was sent; throws 401 when one was sent and does not verify. */
  async identify(authorization: string | undefined): Promise<Identity | undefined> {
    if (authorization === undefined || authorization === '') return undefined;
    if (!this.key) throw unauthorized('not_configured', 'bearer tokens are not accepted: user authentication is not configured');
    if (authorization.length > MAX_TOKEN_CHARS + 7) throw unauthorized('malformed', 'bearer token too long');
    const m = BEARER_RE.exec(authorization);
    if (!m) throw unauthorized('malformed', 'expected "Authorization: Bearer <JWT>"');
    let payload: JWTPayload;
    try {
      const r = await jwtVerify(m[1]!, this.key as Uint8Array, {
        algorithms: [...this.cfg.algorithms],
        issuer: this.cfg.issuer,
        audience: this.cfg.audience,
        clockTolerance: this.cfg.clockToleranceSec,
        requiredClaims: ['exp', 'sub'],
      });
      payload = r.payload;
    } catch (err) {
      throw mapJoseError(err);
    }
    if (typeof payload.sub !== 'string' || !SUB_RE.test(payload.sub)) throw unauthorized('claim', 'sub must be 1-128 printable characters');
    return { sub: payload.sub };
  }

  async require(authorization: string | undefined): Promise<Identity> {
    const id = await this.identify(authorization);
    if (!id) throw new AppError('UNAUTHORIZED', 'a bearer token is required', { reason: 'missing' }, { 'WWW-Authenticate': 'Bearer' });
    return id;
  }

  /** Development only: a real, short-lived JWT for the local page. */
  async mintDev(sub: string, ttlSec = 900): Promise<string> {
    if (!this.devKey) throw new AppError('NOT_FOUND', 'no route');
    let jwt = new SignJWT({}).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).setSubject(sub).setIssuedAt().setExpirationTime(`${ttlSec}s`);
    if (this.cfg.issuer) jwt = jwt.setIssuer(this.cfg.issuer);
    if (this.cfg.audience) jwt = jwt.setAudience(this.cfg.audience);
    return jwt.sign(this.devKey);
  }
}

function mapJoseError(err: unknown): AppError {
  if (err instanceof errors.JWTExpired) return unauthorized('expired', 'token expired');
  if (err instanceof errors.JWTClaimValidationFailed) {
    if (err.claim === 'nbf') return unauthorized('not_yet_valid', 'token not yet valid');
    if (err.claim === 'iss') return unauthorized('issuer', 'token issuer not accepted');
    if (err.claim === 'aud') return unauthorized('audience', 'token audience not accepted');
    return unauthorized('claim', `token claim ${err.claim} invalid`);
  }
  if (err instanceof errors.JOSEAlgNotAllowed) return unauthorized('algorithm', 'token algorithm not allowed');
  if (err instanceof errors.JWSSignatureVerificationFailed) return unauthorized('signature', 'token signature invalid');
  if (err instanceof errors.JWKSNoMatchingKey) return unauthorized('signature', 'token signed with an unknown key');
  if (err instanceof errors.JWKSTimeout || err instanceof errors.JWKSInvalid) {
    return new AppError('SERVICE_UNAVAILABLE', 'the identity provider keys are unavailable, retry shortly', { reason: 'jwks' }, { 'Retry-After': '5' });
  }
  if (err instanceof errors.JOSEError) return unauthorized('malformed', 'token malformed');
  if (err instanceof TypeError || (err as { code?: string })?.code === 'ECONNREFUSED') {
    return new AppError('SERVICE_UNAVAILABLE', 'the identity provider keys are unavailable, retry shortly', { reason: 'jwks' }, { 'Retry-After': '5' });
  }
  return unauthorized('malformed', 'token malformed');
}
