import { randomBytes } from 'node:crypto';
import { AppError } from '../errors.js';
import type { AdmissionTokenIssuer } from '../auth/admission-token.js';
import type { UserAuth } from '../auth/user-auth.js';
import type { Logger } from '../log.js';
import { jsonBody, type HttpServer } from './server.js';

// GET /.well-known/jwks.json: the public keys of admission tokens, for
// downstream services. POST /api/v1/dev/token: development only (refused at
// start-up with NODE_ENV=production), mints a real short-lived JWT so the
// local page can walk the whole flow; it does not exist otherwise (404).

const SUB_RE = /^[A-Za-z0-9_.@-]{1,64}$/;

export function registerAuthRoutes(http: HttpServer, admission: AdmissionTokenIssuer, auth: UserAuth, log: Logger): void {
  const jwks = admission.jwks();
  http.route('GET', '/.well-known/jwks.json', () => ({ status: 200, body: jwks, headers: { 'Cache-Control': 'public, max-age=300' } }));

  if (!auth.devTokens) return;
  log.warn('development token endpoint enabled: POST /api/v1/dev/token mints JWTs for anyone (never in production)');
  http.route(
    'POST',
    '/api/v1/dev/token',
    async (req) => {
      const body = req.body && req.body.length ? jsonBody(req) : {};
      const sub = body.sub ?? `dev-${randomBytes(6).toString('hex')}`;
      if (typeof sub !== 'string' || !SUB_RE.test(sub)) throw new AppError('INVALID_REQUEST', 'sub must be 1-64 characters of A-Z a-z 0-9 _ . @ -');
      const ttl = 900;
      return { status: 200, body: { access_token: await auth.mintDev(sub, ttl), token_type: 'Bearer', expires_in: ttl, sub } };
    },
    { body: true },
  );
}
