import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { SpanStatusCode } from '@opentelemetry/api';
import { startClientSpan } from '../observability/tracing.js';

// The join challenge (bot defence): a proof-of-work puzzle the page solves in
// a Web Worker, or a token an external verifier (Turnstile-like) vouches for.
// Both behind one interface: `check` says whether a join's proof holds and
// names a one-time id for it; the join script accepts each id once.
//
// Proof of work, `sha256-leading-zero-bits`: the gateway hands out
//   v1.<event>.<expires ms>.<difficulty>.<nonce>.<mac>
// (mac: HMAC-SHA256 of everything before it under CHALLENGE_SECRET, so any
// instance can check a challenge another issued, and nobody can make one);
// a solution is a decimal string s such that SHA-256(challenge ":" s) starts
// with `difficulty` zero bits. Checking costs one HMAC and one SHA-256.

export type ChallengeKind = 'pow' | 'external';

export type ProofFailure = 'missing' | 'invalid' | 'expired' | 'wrong_event' | 'insufficient' | 'rejected';

export interface Proof {
  /** pow: the challenge as handed out and the solution; external: the verifier's token */
  readonly challenge?: string;
  readonly solution?: string;
  readonly token?: string;
}

export type ProofResult = { ok: true; id: string } | { ok: false; reason: ProofFailure };

export interface IssuedChallenge {
  readonly challenge: string;
  readonly difficulty: number;
  readonly expiresMs: number;
}

/** The external verifier, when configured: POST {token, event_id, remote_ip} -> {success: boolean}. */
export interface ExternalVerifier {
  verify(token: string, eventId: string, remoteIp: string): Promise<boolean>;
}

const b64 = (b: Buffer): string => b.toString('base64url');

/** Leading zero bits of a digest. */
export function leadingZeroBits(d: Buffer): number {
  let n = 0;
  for (const byte of d) {
    if (byte === 0) {
      n += 8;
      continue;
    }
    return n + Math.clz32(byte) - 24;
  }
  return n;
}

export class ChallengeIssuer {
  private readonly key: Buffer;

  constructor(
    secret: string,
    private readonly ttlMs: number,
    private readonly external: ExternalVerifier | undefined,
  ) {
    this.key = createHash('sha256').update(`join-challenge\n${secret}`).digest();
  }

  get externalConfigured(): boolean {
    return this.external !== undefined;
  }

  issue(eventId: string, difficulty: number, nowMs = Date.now()): IssuedChallenge {
    const expiresMs = nowMs + this.ttlMs;
    const body = `v1.${eventId}.${expiresMs}.${difficulty}.${b64(randomBytes(12))}`;
    return { challenge: `${body}.${this.mac(body)}`, difficulty, expiresMs };
  }

  private mac(body: string): string {
    return b64(createHmac('sha256', this.key).update(body).digest()).slice(0, 22);
  }

  /**
   * A proof-of-work answer for `eventId` at the event's current difficulty
   * (a challenge issued at a higher one counts; a lower one does not). The id
   * is the challenge's nonce: the join script takes it once.
   */
  checkPow(p: Proof, eventId: string, difficulty: number, nowMs = Date.now()): ProofResult {
    if (!p.challenge || !p.solution) return { ok: false, reason: 'missing' };
    if (p.challenge.length > 200 || !/^[0-9]{1,20}$/.test(p.solution)) return { ok: false, reason: 'invalid' };
    const parts = p.challenge.split('.');
    if (parts.length !== 6 || parts[0] !== 'v1') return { ok: false, reason: 'invalid' };
    const [, ev, exp, diff, nonce, mac] = parts as [string, string, string, string, string, string];
    const want = Buffer.from(this.mac(parts.slice(0, 5).join('.')));
    const got = Buffer.from(mac);
    if (got.length !== want.length || !timingSafeEqual(got, want)) return { ok: false, reason: 'invalid' };
    if (ev !== eventId) return { ok: false, reason: 'wrong_event' };
    if (Number(exp) < nowMs) return { ok: false, reason: 'expired' };
    const d = Number(diff);
    if (d < difficulty) return { ok: false, reason: 'insufficient' };
    if (leadingZeroBits(createHash('sha256').update(`${p.challenge}:${p.solution}`).digest()) < d) return { ok: false, reason: 'insufficient' };
    return { ok: true, id: `p${nonce}` };
  }

  /** A token for the external verifier; its id (a digest of it) is taken once as well. */
  async checkExternal(p: Proof, eventId: string, remoteIp: string): Promise<ProofResult> {
    if (!p.token) return { ok: false, reason: 'missing' };
    if (!this.external || p.token.length > 4096) return { ok: false, reason: 'invalid' };
    const ok = await this.external.verify(p.token, eventId, remoteIp);
    return ok ? { ok: true, id: `x${createHash('sha256').update(p.token).digest('base64url').slice(0, 22)}` } : { ok: false, reason: 'rejected' };
  }

  /** How long a proof's id must be remembered: as long as its challenge is valid. */
  get rememberMs(): number {
    return this.ttlMs;
  }
}

/** The Turnstile-like verifier: a URL the gateway calls with the client's token. */
export class HttpVerifier implements ExternalVerifier {
  constructor(
    private readonly url: string,
    private readonly timeoutMs: number,
  ) {}

  async verify(token: string, eventId: string, remoteIp: string): Promise<boolean> {
    // a span when the join is sampled (the call crosses into another service)
    const span = startClientSpan('challenge verify', { 'http.request.method': 'POST', 'server.address': new URL(this.url).host });
    try {
      const res = await fetch(this.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ token, event_id: eventId, remote_ip: remoteIp }),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
      span?.setAttribute('http.response.status_code', res.status);
      if (res.status >= 500) throw new Error(`verifier answered ${res.status}`);
      const body = (await res.json().catch(() => ({}))) as { success?: unknown };
      return res.ok && body.success === true;
    } catch (err) {
      span?.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message });
      throw err;
    } finally {
      span?.end();
    }
  }
}
