import { generateKeyPairSync, randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import express, { type Express } from 'express';
import { SignJWT } from 'jose';
import type { Browser } from 'playwright-core';
import type { EmbeddedRedis } from '../../src/redis/embedded.js';
import { startReservationSim } from '../../src/sim/reservation-sim.js';
import { startPaymentSim } from '../../src/sim/payment-sim.js';
import type { RunningSim } from '../../src/sim/common.js';
import { expressAdmission } from '../../src/connector/index.js';
import { call, startInProcessGateway, startRedis, type InProcessGateway, type Reply } from './harness.js';
import { launchChromium } from './browser.js';

// A ticket site in front of a gateway configured as an operator deploys it,
// for the browser tests: NODE_ENV=production, user JWTs checked against
// JWT_SECRET, no development tokens, an Ed25519 admission key, an admin
// token, real gRPC backends (the simulators on their own ports), and an
// Express origin whose /sale page lets in a valid, unredeemed admission for
// its event once (src/connector), recording who came in. Each test file
// starts its own.

export interface ProductionSite {
  redis: EmbeddedRedis;
  gw: InProcessGateway;
  browser: Browser;
  /** the ticket site: http://127.0.0.1:<port> */
  originUrl: string;
  /** subjects the sale page let in, in order */
  redeemed: string[];
  admin: { authorization: string };
  /** the ticket site's login: a user JWT as it would mint one */
  userJwt(sub: string): Promise<string>;
  putEvent(id: string, body: Record<string, unknown>): Promise<Reply>;
  stop(): Promise<void>;
}

export interface SiteOptions {
  /** the event whose admissions the sale page accepts */
  saleEvent: string;
  /** more pages of the ticket site (its gateway URL is known by the time they are requested) */
  routes?: (app: Express, site: () => ProductionSite) => void;
  /** extra gateway settings */
  env?: Record<string, string>;
}

export async function startProductionSite(o: SiteOptions): Promise<ProductionSite> {
  const admin = `site-admin-${randomBytes(16).toString('hex')}`;
  const secretText = `site-secret-${randomBytes(16).toString('hex')}`;
  const secret = new TextEncoder().encode(secretText);
  const originKey = `site-origin-${randomBytes(24).toString('hex')}`;
  const redis = await startRedis();
  const rsim: RunningSim = await startReservationSim({ host: '127.0.0.1', port: 0 });
  const psim: RunningSim = await startPaymentSim({ host: '127.0.0.1', port: 0 });
  const redeemed: string[] = [];
  const guard = { jwksUrl: '', eventId: o.saleEvent, gatewayUrl: '', apiKey: originKey };
  let site: ProductionSite | undefined;
  const app = express();
  app.get('/sale', expressAdmission(guard), (req, res) => {
    const who = (req as unknown as { admission: { subject: string } }).admission.subject;
    redeemed.push(who);
    res.type('html').send(`<!doctype html><title>Sale</title><h1 data-testid="sale">Welcome to the sale, ${who}</h1>`);
  });
  o.routes?.(app, () => site!);
  const origin = await new Promise<Server>((resolve) => {
    const srv = app.listen(0, '127.0.0.1', () => resolve(srv));
  });
  const originUrl = `http://127.0.0.1:${(origin.address() as AddressInfo).port}`;
  const { privateKey } = generateKeyPairSync('ed25519');
  const gw = await startInProcessGateway(redis.address, {
    NODE_ENV: 'production',
    JWT_SECRET: secretText,
    ADMISSION_SIGNING_JWK: JSON.stringify({ ...privateKey.export({ format: 'jwk' }), alg: 'EdDSA', kid: 'site-1' }),
    ADMIN_TOKEN: admin,
    ORIGIN_API_KEYS: originKey,
    PAGE_TARGET_ORIGINS: originUrl,
    BACKEND_RESERVATION_API_GRPC_ADDRESS: rsim.address,
    BACKEND_PAYMENT_API_GRPC_ADDRESS: psim.address,
    QUEUE_TICK_MS: '100',
    QUEUE_RECONNECT_GRACE_SEC: '30',
    ...o.env,
  });
  guard.jwksUrl = `${gw.url}/.well-known/jwks.json`;
  guard.gatewayUrl = gw.url;
  let browser: Awaited<ReturnType<typeof launchChromium>>;
  try {
    browser = await launchChromium();
  } catch (err) {
    // nothing may outlive a failed start (a missing Chromium once left three redis-servers behind)
    origin.close();
    await gw.stop().catch(() => undefined);
    await Promise.allSettled([rsim.stop(), psim.stop()]);
    await redis.stop();
    throw err;
  }
  const adminHeaders = { authorization: `Bearer ${admin}` };
  site = {
    redis,
    gw,
    browser,
    originUrl,
    redeemed,
    admin: adminHeaders,
    userJwt: (sub) => new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject(sub).setExpirationTime('30m').sign(secret),
    putEvent: (id, body) => call(gw.url, 'PUT', `/api/v1/admin/events/${id}`, body, adminHeaders),
    stop: async () => {
      await browser.close();
      origin.close();
      await gw.stop();
      await rsim.stop();
      await psim.stop();
      await redis.stop();
    },
  };
  return site;
}
