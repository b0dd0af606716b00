// One table of every error the gateway answers with: code -> HTTP status.
// Handlers throw AppError(code); the HTTP layer renders the contract's body
// {"error":{"code","message","trace_id"}} with this status.

export const errorStatus = {
  INVALID_REQUEST: 400,
  INVALID_JSON: 400,
  MISSING_EVENT_ID: 400,
  MISSING_TOKEN: 400,
  INVALID_TOKEN: 400,
  IDEMPOTENCY_KEY_REQUIRED: 400,
  HEADER_TOO_LARGE: 431,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  EVENT_CLOSED: 403,
  NOT_READY: 403,
  NOT_FOUND: 404,
  EVENT_NOT_FOUND: 404,
  TOKEN_NOT_FOUND: 404,
  TOKEN_EXPIRED: 404,
  METHOD_NOT_ALLOWED: 405,
  DUPLICATE_REQUEST: 409,
  ALREADY_ADMITTED: 409,
  NOT_IN_LINE: 409,
  INVENTORY_CONFLICT: 409,
  INSUFFICIENT_INVENTORY: 409,
  ALREADY_EXISTS: 409,
  CONCURRENT_MODIFICATION: 409,
  RESERVATION_EXPIRED: 409,
  PRECONDITION_FAILED: 412,
  PAYMENT_NOT_APPROVED: 412,
  INVALID_AMOUNT: 400,
  QUOTA_EXCEEDED: 429,
  UPSTREAM_ERROR: 502,
  IDEMPOTENCY_CONFLICT: 409,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  RATE_LIMITED: 429,
  INTERNAL: 500,
  SERVICE_UNAVAILABLE: 503,
  REDIS_UNAVAILABLE: 503,
  UPSTREAM_UNAVAILABLE: 503,
  UPSTREAM_TIMEOUT: 504,
} as const;

export type ErrorCode = keyof typeof errorStatus;

export class AppError extends Error {
  readonly status: number;
  constructor(
    readonly code: ErrorCode,
    message: string,
    /** Extra fields merged into the error object (e.g. the existing waiting_token on a duplicate). */
    readonly details?: Readonly<Record<string, unknown>>,
    readonly headers?: Readonly<Record<string, string>>,
  ) {
    super(message);
    this.status = errorStatus[code];
  }
}

export function errorBody(code: ErrorCode, message: string, traceId: string, details?: Readonly<Record<string, unknown>>): string {
  return JSON.stringify({ error: { code, message, trace_id: traceId, ...details } });
}
