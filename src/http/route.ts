import type { Static, TObject, TSchema } from '@sinclair/typebox';
import type { ErrorCode } from '../errors.js';
import type { Identity } from '../auth/user-auth.js';

// A route is data, as in Fastify: method, path, the schemas of its params,
// query, body and of each response, the errors it can answer with, and the
// properties the edge applies for it (authentication, idempotency, rate
// limit). The edge (src/http/edge.ts) compiles validators and serialisers
// from it at start-up, and the OpenAPI document (src/http/openapi.ts) is
// generated from the same table: the contract is stated once.

export type Method = 'GET' | 'POST' | 'PUT' | 'DELETE';

/**
 * none: no user; user-optional: a bearer JWT is verified when sent (join);
 * user-if-configured: required when user authentication is configured, else
 * verified when sent; user: always required; admin: ADMIN_TOKEN (the route
 * exists only when it is set); origin: one of ORIGIN_API_KEYS, the ticket
 * site's server (the route exists only when they are set).
 */
export type AuthRule = 'none' | 'user-optional' | 'user-if-configured' | 'user' | 'admin' | 'origin';

/** [code, when it is answered] */
export type ErrorList = ReadonlyArray<readonly [ErrorCode, string]>;

export interface ResponseSpec {
  readonly description: string;
  /** JSON responses: the answer is serialised by a serialiser compiled from this schema */
  readonly schema?: TSchema;
  /** default application/json */
  readonly contentType?: string;
  /** names of documented response headers (components.headers) this answer carries */
  readonly headers?: readonly string[];
}

/** What a handler sees of the request: read synchronously off uWebSockets.js before anything else. */
export interface HttpRequest {
  readonly method: Method;
  readonly path: string;
  /** route template, e.g. /api/v1/admin/events/:id (bounded metric label) */
  readonly route: string;
  readonly rawQuery: string;
  /** the headers the route declared it reads (lower-case names) */
  readonly headers: Readonly<Record<string, string>>;
  /** the socket address, or the first X-Forwarded-For hop when TRUST_PROXY is on */
  readonly clientIp: string;
  readonly requestId: string;
  /** the W3C trace id of this request (continues an incoming traceparent) */
  readonly traceId: string;
  /** traceparent for calls this request makes to other processes */
  readonly traceparent: string;
  readonly body: Buffer | undefined;
}

export interface Ctx<B, Q, P> {
  readonly req: HttpRequest;
  /** validated against the route's schemas */
  readonly body: B;
  readonly query: Q;
  readonly params: P;
  /** the verified user (auth user*), when there is one */
  readonly user: Identity | undefined;
}

export interface Reply {
  readonly status: number;
  /** an object is serialised by the response schema of the status; a string is sent as is */
  readonly body?: unknown;
  readonly contentType?: string;
  readonly headers?: Readonly<Record<string, string>>;
}

export interface Route<B extends TSchema = TSchema, Q extends TObject = TObject, P extends TObject = TObject> {
  readonly method: Method;
  /** uWebSockets.js pattern, :name for a parameter */
  readonly path: string;
  readonly operationId: string;
  readonly summary: string;
  readonly description?: string;
  readonly tags: readonly string[];
  readonly auth?: AuthRule;
  /** the per-client rate limit (default on; off for probes, metrics and pages) */
  readonly rateLimit?: boolean;
  readonly idempotency?: 'optional' | 'required';
  readonly params?: P;
  readonly query?: Q;
  readonly body?: B;
  /** the body may be absent or empty (then `{}`) */
  readonly bodyOptional?: boolean;
  /** the body is an HTML form (application/x-www-form-urlencoded), read as an object of strings, then validated by `body` */
  readonly form?: boolean;
  /** a required property that is absent, null or '' answers this code instead of INVALID_REQUEST (the contract's MISSING_*) */
  readonly missing?: Readonly<Record<string, ErrorCode>>;
  /** a property whose value violates its schema answers this code instead of INVALID_REQUEST (e.g. INVALID_AMOUNT) */
  readonly invalid?: Readonly<Record<string, ErrorCode>>;
  /** headers the handler reads beyond those the edge reads for the route's properties */
  readonly reads?: readonly string[];
  readonly responses: Readonly<Record<number, ResponseSpec>>;
  /** errors specific to this route; the edge's own (validation, auth, limits, idempotency) are added from the properties */
  readonly errors?: ErrorList;
  /** not part of the API document (static files) */
  readonly hidden?: boolean;
  /** response headers every answer of this route carries (constants: e.g. Cache-Control, a page's CSP) */
  readonly headers?: Readonly<Record<string, string>>;
  /** OpenAPI additions (x-* extensions, externalDocs) */
  readonly openapi?: Readonly<Record<string, unknown>>;
  handler(c: Ctx<Static<B>, Static<Q>, Static<P>>): Reply | Promise<Reply>;
}

export type AnyRoute = Route<TSchema, TObject, TObject>;

/** Identity with inference: the handler's ctx is typed from the schemas. */
export function route<B extends TSchema = TSchema, Q extends TObject = TObject, P extends TObject = TObject>(r: Route<B, Q, P>): AnyRoute {
  return r as unknown as AnyRoute;
}
