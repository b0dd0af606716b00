import { randomBytes } from 'node:crypto';
import type { AdmissionTokenIssuer } from '../auth/admission-token.js';
import type { UserAuth } from '../auth/user-auth.js';
import type { Logger } from '../log.js';
import { route, type AnyRoute } from './route.js';
import * as S from './schemas.js';

// GET /.well-known/jwks.json: the public keys of admission tokens, for
// downstream services. POST /api/v1/dev/token: development only (refused at
// start-up with NODE_ENV=production), mints a real short-lived JWT so the
// local page can walk the whole flow; it does not exist otherwise (404).
// GET /page-config.json: what the page needs to know about this deployment.

export function authRoutes(admission: AdmissionTokenIssuer, auth: UserAuth, log: Logger, pageTargetUrl: string): AnyRoute[] {
  const jwks = admission.jwks();
  const routes: AnyRoute[] = [
    route({
      method: 'GET',
      path: '/.well-known/jwks.json',
      operationId: 'jwks',
      summary: 'Public keys of reservation tokens',
      description: 'Downstream services verify `reservation_token`s with these keys (EdDSA or ES256, `kid` in the token header; during a rotation the previous key too).',
      tags: ['auth'],
      headers: { 'Cache-Control': 'public, max-age=300' },
      responses: { 200: { description: 'A JWK Set.', schema: S.Jwks, headers: ['Cache-Control'] } },
      handler: () => ({ status: 200, body: jwks }),
    }),
    route({
      method: 'GET',
      path: '/page-config.json',
      operationId: 'pageConfig',
      summary: 'Configuration of the waiting-room page',
      tags: ['pages'],
      rateLimit: false,
      responses: { 200: { description: 'Where the page sends admitted users, and whether it may mint development tokens.', schema: S.PageConfig } },
      handler: () => ({ status: 200, body: { target_url: pageTargetUrl, dev_tokens: auth.devTokens } }),
    }),
  ];
  if (!auth.devTokens) return routes;
  log.warn('development token endpoint enabled: POST /api/v1/dev/token mints JWTs for anyone (never in production)');
  routes.push(
    route({
      method: 'POST',
      path: '/api/v1/dev/token',
      operationId: 'devToken',
      summary: 'Development only: mint a short-lived user JWT',
      description:
        'Exists only when development tokens are enabled (DEV_TOKENS_ENABLED, on by default with the throwaway Redis; refused at start-up with NODE_ENV=production). ' +
        'Otherwise 404 NOT_FOUND. The body is optional.',
      tags: ['auth'],
      body: S.DevTokenRequest,
      bodyOptional: true,
      responses: { 200: { description: 'A JWT for `sub`.', schema: S.DevTokenResponse } },
      errors: [
        ['INVALID_REQUEST', 'a non-empty body that is not a JSON object, or sub is not 1-64 characters of A-Z a-z 0-9 _ . @ -'],
        ['NOT_FOUND', 'development tokens are disabled: the route does not exist'],
      ],
      handler: async ({ body }) => {
        const sub = body.sub ?? `dev-${randomBytes(6).toString('hex')}`;
        const ttl = 900;
        return { status: 200, body: { access_token: await auth.mintDev(sub, ttl), token_type: 'Bearer', expires_in: ttl, sub } };
      },
    }),
  );
  return routes;
}
