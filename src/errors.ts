// The one table of every error the gateway answers with: code -> HTTP status
// and the default message. Handlers throw AppError(code) (a message only when
// the context adds something); the edge renders the contract's body
// {"error":{"code","message","trace_id",...details}} with the status, and the
// OpenAPI document takes its error enum and statuses from here.

export const ERRORS = {
  INVALID_REQUEST: { status: 400, message: 'the request is not valid' },
  INVALID_JSON: { status: 400, message: 'body is not valid JSON' },
  MISSING_EVENT_ID: { status: 400, message: 'event_id is required' },
  MISSING_TOKEN: { status: 400, message: 'a waiting token is required' },
  INVALID_TOKEN: { status: 400, message: 'the token is not valid' },
  IDEMPOTENCY_KEY_REQUIRED: { status: 400, message: 'this request needs an Idempotency-Key header (a UUID)' },
  INVALID_AMOUNT: { status: 400, message: 'amount must be a positive integer (minor units)' },
  UNAUTHORIZED: { status: 401, message: 'a valid bearer token is required' },
  FORBIDDEN: { status: 403, message: 'not allowed' },
  EVENT_CLOSED: { status: 403, message: 'this event is closed to new arrivals' },
  EVENT_NOT_OPEN: { status: 403, message: 'this event is not open yet' },
  CHALLENGE_FAILED: { status: 403, message: 'the challenge proof was not accepted' },
  NOT_READY: { status: 403, message: 'not your turn yet: keep waiting' },
  NOT_FOUND: { status: 404, message: 'not found' },
  EVENT_NOT_FOUND: { status: 404, message: 'no such event' },
  TOKEN_NOT_FOUND: { status: 404, message: 'unknown waiting token' },
  TOKEN_EXPIRED: { status: 404, message: 'this place in line has expired' },
  METHOD_NOT_ALLOWED: { status: 405, message: 'method not allowed' },
  DUPLICATE_REQUEST: { status: 409, message: 'already in line for this event' },
  ALREADY_ADMITTED: { status: 409, message: 'this place was admitted and its admission has expired' },
  ALREADY_REDEEMED: { status: 409, message: 'this admission token was already used' },
  NOT_IN_LINE: { status: 409, message: 'this waiting token is no longer in line' },
  INVENTORY_CONFLICT: { status: 409, message: 'a seat is not available' },
  INSUFFICIENT_INVENTORY: { status: 409, message: 'not enough seats' },
  ALREADY_EXISTS: { status: 409, message: 'it exists already' },
  EVENT_STATE_CONFLICT: { status: 409, message: "not allowed in the event's current state" },
  CONCURRENT_MODIFICATION: { status: 409, message: 'changed concurrently; retry' },
  RESERVATION_EXPIRED: { status: 409, message: 'the reservation expired' },
  IDEMPOTENCY_CONFLICT: { status: 409, message: 'this Idempotency-Key was used for a different request' },
  EVENT_ENDED: { status: 410, message: 'this event has ended' },
  PRECONDITION_FAILED: { status: 412, message: 'a precondition failed' },
  PAYMENT_NOT_APPROVED: { status: 412, message: 'the payment was not approved' },
  CHALLENGE_REQUIRED: { status: 428, message: 'this event needs a solved challenge: GET /api/v1/queue/challenge?event=<id>' },
  PAYLOAD_TOO_LARGE: { status: 413, message: 'the body is too large' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, message: 'send application/json' },
  QUOTA_EXCEEDED: { status: 429, message: 'quota exceeded' },
  RATE_LIMITED: { status: 429, message: 'too many requests; slow down' },
  HEADER_TOO_LARGE: { status: 431, message: 'a header is too large' },
  INTERNAL: { status: 500, message: 'internal error' },
  UPSTREAM_ERROR: { status: 502, message: 'a backend failed' },
  SERVICE_UNAVAILABLE: { status: 503, message: 'temporarily unavailable; retry shortly' },
  REDIS_UNAVAILABLE: { status: 503, message: 'the queue store is unavailable, retry shortly' },
  UPSTREAM_UNAVAILABLE: { status: 503, message: 'a backend is unavailable, retry shortly' },
  UPSTREAM_TIMEOUT: { status: 504, message: 'a backend did not answer in time' },
} as const satisfies Record<string, { status: number; message: string }>;

export type ErrorCode = keyof typeof ERRORS;

/** code -> HTTP status */
export const errorStatus = Object.fromEntries(Object.entries(ERRORS).map(([k, v]) => [k, v.status])) as { readonly [K in ErrorCode]: (typeof ERRORS)[K]['status'] };

export class AppError extends Error {
  readonly status: number;
  constructor(
    readonly code: ErrorCode,
    /** omitted: the table's message */
    message?: string,
    /** Extra fields merged into the error object (e.g. the existing waiting_token on a duplicate). */
    readonly details?: Readonly<Record<string, unknown>>,
    readonly headers?: Readonly<Record<string, string>>,
  ) {
    super(message ?? ERRORS[code].message);
    this.status = ERRORS[code].status;
  }
}

export function errorBody(code: ErrorCode, message: string, traceId: string, details?: Readonly<Record<string, unknown>>): string {
  return JSON.stringify({ error: { code, message, trace_id: traceId, ...details } });
}
