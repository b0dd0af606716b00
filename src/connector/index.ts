import { createRemoteJWKSet, errors, jwtVerify, type JWTPayload } from 'jose';

// The origin's side of the hand-back (docs/INTEGRATION.md): the ticket site
// receives admitted users at its target_url with ?admission_token=<JWT> and
// lets them in only with a valid, unredeemed admission for its event.
//
//   import { verifyAdmission, redeemAdmission, expressAdmission, fastifyAdmission } from 'waiting-room-gateway/connector';
//
// verifyAdmission checks the token offline against the gateway's published
// keys (JWKS fetched once and cached by jose; a token signed by a key it has
// not seen refetches them, at most once per cooldown, so key rotation needs
// no restart). redeemAdmission spends the admission at the gateway, once: the
// second redemption of the same token (a replayed link) is refused. The
// middleware does both and puts the claims on the request.
//
// No dependency on Express or Fastify: the adapters take the request and
// reply objects structurally.

export interface AdmissionClaims {
  /** the event the admission is for */
  readonly eventId: string;
  /** who was admitted: the user (access "user") or the place (access "anonymous") */
  readonly subject: string;
  /** the admission id: single use */
  readonly jti: string;
  readonly admittedAt: Date;
  readonly expiresAt: Date;
}

export type AdmissionFailure = 'missing' | 'malformed' | 'invalid' | 'expired' | 'wrong_event' | 'already_redeemed' | 'gateway_unavailable';

export class AdmissionError extends Error {
  constructor(
    readonly reason: AdmissionFailure,
    message: string,
  ) {
    super(message);
    this.name = 'AdmissionError';
  }
}

export interface VerifyOptions {
  /** the gateway's /.well-known/jwks.json */
  jwksUrl: string;
  /** the gateway's ADMISSION_ISSUER (default waiting-room-gateway) */
  issuer?: string;
  /** the event this origin sells: a token for another event is refused */
  eventId?: string;
  /** seconds of clock skew tolerated on exp/iat (default 5) */
  clockToleranceSec?: number;
}

const jwksCache = new Map<string, ReturnType<typeof createRemoteJWKSet>>();
function jwks(url: string): ReturnType<typeof createRemoteJWKSet> {
  let set = jwksCache.get(url);
  if (!set) jwksCache.set(url, (set = createRemoteJWKSet(new URL(url), { cooldownDuration: 30_000, cacheMaxAge: 10 * 60_000 })));
  return set;
}

const TOKEN_RE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

/** Signature (the gateway's published keys), issuer, audience, expiry, and the event. Throws AdmissionError. */
export async function verifyAdmission(token: string | undefined, o: VerifyOptions): Promise<AdmissionClaims> {
  if (!token) throw new AdmissionError('missing', 'no admission token');
  if (token.length > 4096 || !TOKEN_RE.test(token)) throw new AdmissionError('malformed', 'admission token malformed');
  let p: JWTPayload;
  try {
    p = (
      await jwtVerify(token, jwks(o.jwksUrl), {
        issuer: o.issuer ?? 'waiting-room-gateway',
        audience: 'reservation',
        algorithms: ['EdDSA', 'ES256'],
        requiredClaims: ['exp', 'jti', 'sub'],
        clockTolerance: o.clockToleranceSec ?? 5,
      })
    ).payload;
  } catch (err) {
    if (err instanceof errors.JWTExpired) throw new AdmissionError('expired', 'admission token expired');
    if (err instanceof errors.JWKSTimeout || (err instanceof Error && /fetch|ECONNREFUSED|network/i.test(err.message))) {
      throw new AdmissionError('gateway_unavailable', "the gateway's keys cannot be fetched");
    }
    throw new AdmissionError('invalid', 'admission token invalid');
  }
  const evt = (p as { evt?: unknown }).evt;
  if (typeof evt !== 'string') throw new AdmissionError('invalid', 'admission token invalid');
  if (o.eventId !== undefined && evt !== o.eventId) throw new AdmissionError('wrong_event', 'admission token is for another event');
  return { eventId: evt, subject: String(p.sub), jti: String(p.jti), admittedAt: new Date((p.iat ?? 0) * 1000), expiresAt: new Date((p.exp ?? 0) * 1000) };
}

export interface RedeemOptions {
  /** the gateway's base URL, e.g. https://queue.example.com */
  gatewayUrl: string;
  /** one of the gateway's ORIGIN_API_KEYS */
  apiKey: string;
  eventId?: string;
  /** default 3000 */
  timeoutMs?: number;
}

/** Spends the admission at the gateway: the first call answers the claims, a replay throws already_redeemed. */
export async function redeemAdmission(token: string, o: RedeemOptions): Promise<AdmissionClaims> {
  let r: Response;
  try {
    r = await fetch(new URL('/api/v1/admissions/redeem', o.gatewayUrl), {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${o.apiKey}` },
      body: JSON.stringify({ admission_token: token, ...(o.eventId !== undefined ? { event_id: o.eventId } : {}) }),
      signal: AbortSignal.timeout(o.timeoutMs ?? 3000),
    });
  } catch {
    throw new AdmissionError('gateway_unavailable', 'the gateway could not be reached');
  }
  const body = (await r.json().catch(() => ({}))) as { event_id?: string; subject?: string; jti?: string; admitted_at?: string; expires_at?: string; error?: { code?: string; reason?: string } };
  if (r.status === 200) {
    return { eventId: String(body.event_id), subject: String(body.subject), jti: String(body.jti), admittedAt: new Date(String(body.admitted_at)), expiresAt: new Date(String(body.expires_at)) };
  }
  if (r.status === 409) throw new AdmissionError('already_redeemed', 'this admission was already used');
  if (r.status === 403) {
    const reason = body.error?.reason;
    throw new AdmissionError(reason === 'expired' ? 'expired' : reason === 'wrong_event' ? 'wrong_event' : reason === 'malformed' ? 'malformed' : 'invalid', 'admission token refused by the gateway');
  }
  throw new AdmissionError('gateway_unavailable', `the gateway answered ${r.status}`);
}

export interface GuardOptions extends VerifyOptions {
  /** redeem at the gateway too (single use): give both, or neither (verify only) */
  gatewayUrl?: string;
  apiKey?: string;
  /** where the token is: default the admission_token query parameter, else an `Authorization: Admission <token>` header */
  tokenFrom?: (url: string, headers: Readonly<Record<string, string | string[] | undefined>>) => string | undefined;
}

function defaultToken(url: string, headers: Readonly<Record<string, string | string[] | undefined>>): string | undefined {
  const q = new URL(url, 'http://origin.invalid').searchParams.get('admission_token');
  if (q) return q;
  const h = headers.authorization;
  const v = Array.isArray(h) ? h[0] : h;
  return v?.startsWith('Admission ') ? v.slice(10) : undefined;
}

/** The framework-free core of the middleware: the token from a request, verified, and redeemed when configured. */
export function admissionGuard(o: GuardOptions): (url: string, headers: Readonly<Record<string, string | string[] | undefined>>) => Promise<AdmissionClaims> {
  const from = o.tokenFrom ?? defaultToken;
  return async (url, headers) => {
    const token = from(url, headers);
    const claims = await verifyAdmission(token, o);
    if (o.gatewayUrl && o.apiKey) await redeemAdmission(token!, { gatewayUrl: o.gatewayUrl, apiKey: o.apiKey, eventId: claims.eventId });
    return claims;
  };
}

/** What a refusal answers: 403, except 503 when the gateway cannot be asked. */
export const refusalStatus = (e: AdmissionError): number => (e.reason === 'gateway_unavailable' ? 503 : 403);

interface ExpressLikeRequest {
  originalUrl?: string;
  url?: string;
  headers: Readonly<Record<string, string | string[] | undefined>>;
  admission?: AdmissionClaims;
}
interface ExpressLikeResponse {
  status(code: number): { json(body: unknown): unknown };
}

/** Express middleware: req.admission holds the claims; a refused token answers 403 (503 when the gateway is away). */
export function expressAdmission(o: GuardOptions): (req: ExpressLikeRequest, res: ExpressLikeResponse, next: (err?: unknown) => void) => void {
  const guard = admissionGuard(o);
  return (req, res, next) => {
    guard(req.originalUrl ?? req.url ?? '/', req.headers).then(
      (claims) => {
        req.admission = claims;
        next();
      },
      (err: unknown) => {
        if (err instanceof AdmissionError) res.status(refusalStatus(err)).json({ error: { code: 'ADMISSION_REFUSED', reason: err.reason, message: err.message } });
        else next(err);
      },
    );
  };
}

interface FastifyLikeRequest {
  url: string;
  headers: Readonly<Record<string, string | string[] | undefined>>;
  admission?: AdmissionClaims;
}
interface FastifyLikeReply {
  code(status: number): { send(body: unknown): unknown };
}

/** Fastify preHandler hook (route option `preHandler`, or `addHook('preHandler', …)`): request.admission holds the claims. */
export function fastifyAdmission(o: GuardOptions): (request: FastifyLikeRequest, reply: FastifyLikeReply) => Promise<void> {
  const guard = admissionGuard(o);
  return async (request, reply) => {
    try {
      request.admission = await guard(request.url, request.headers);
    } catch (err) {
      if (!(err instanceof AdmissionError)) throw err;
      await reply.code(refusalStatus(err)).send({ error: { code: 'ADMISSION_REFUSED', reason: err.reason, message: err.message } });
    }
  };
}
