// Token buckets with partial refill, in this instance's memory. A client
// slightly over the limit is held to the limit (fractions of a token
// accumulate), not starved. Memory is bounded: least recently seen keys are
// evicted first (a Map keeps insertion order; a hit moves the key to the end).
//
// Limits apply per instance: behind a load balancer that spreads one client
// over n instances the effective limit is up to n times higher. Hot paths
// never wait on Redis for this.

export interface Verdict {
  readonly ok: boolean;
  readonly limit: number;
  readonly remaining: number;
  /** seconds until the bucket is full again */
  readonly resetSec: number;
  /** seconds until one token is available (when refused) */
  readonly retryAfterSec: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

export class TokenBuckets {
  private readonly buckets = new Map<string, Bucket>();

  constructor(
    readonly rate: number,
    readonly burst: number,
    private readonly maxKeys: number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  take(key: string, cost = 1): Verdict {
    const t = this.now();
    let b = this.buckets.get(key);
    if (b) {
      this.buckets.delete(key);
      b.tokens = Math.min(this.burst, b.tokens + ((t - b.at) / 1000) * this.rate);
      b.at = t;
    } else {
      b = { tokens: this.burst, at: t };
      if (this.buckets.size >= this.maxKeys) {
        const oldest = this.buckets.keys().next().value;
        if (oldest !== undefined) this.buckets.delete(oldest);
      }
    }
    this.buckets.set(key, b);
    const ok = b.tokens >= cost;
    if (ok) b.tokens -= cost;
    const remaining = Math.max(0, Math.floor(b.tokens));
    return {
      ok,
      limit: this.burst,
      remaining,
      resetSec: Math.ceil((this.burst - b.tokens) / this.rate),
      retryAfterSec: ok ? 0 : Math.max(1, Math.ceil((cost - b.tokens) / this.rate)),
    };
  }

  get size(): number {
    return this.buckets.size;
  }
}

export function rateLimitHeaders(v: Verdict): Record<string, string> {
  const h: Record<string, string> = {
    'X-RateLimit-Limit': String(v.limit),
    'X-RateLimit-Remaining': String(v.remaining),
    'X-RateLimit-Reset': String(v.resetSec),
  };
  if (!v.ok) h['Retry-After'] = String(v.retryAfterSec);
  return h;
}

/** The same as one pre-joined header block (leading CRLF): the edge writes a response's headers in one call. */
export function rateLimitLine(v: Verdict): string {
  return `\r\nX-RateLimit-Limit: ${v.limit}\r\nX-RateLimit-Remaining: ${v.remaining}\r\nX-RateLimit-Reset: ${v.resetSec}`;
}
