import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import type { EmbeddedRedis } from '../src/redis/embedded.js';
import { call, sleep, startInProcessGateway, startRedis, waitFor, type InProcessGateway } from './helpers/harness.js';
import { launchChromium, SCREENSHOTS } from './helpers/browser.js';

// The waiting-room page in headless Chromium against a real gateway and
// Redis: the whole journey over WebSocket and, with WebSockets blocked, over
// polling; a network drop keeps the place; two tabs share one place.
// Screenshots of every state go to test-output/screenshots (not committed).

const ADMIN = 'browser-admin-token-0123456789';
const admin = { authorization: `Bearer ${ADMIN}` };

let redis: EmbeddedRedis;
let gw: InProcessGateway;
let browser: Browser;

beforeAll(async () => {
  redis = await startRedis();
  gw = await startInProcessGateway(redis.address, {
    NODE_ENV: 'development',
    DEV_TOKENS_ENABLED: 'true',
    ADMIN_TOKEN: ADMIN,
    QUEUE_AUTO_CREATE_EVENTS: 'true',
    QUEUE_TICK_MS: '100',
    QUEUE_RECONNECT_GRACE_SEC: '30',
  });
  browser = await launchChromium();
}, 60_000);
afterAll(async () => {
  await browser?.close();
  await gw?.stop();
  await redis?.stop();
});

const text = async (page: Page, id: string): Promise<string> => ((await page.getByTestId(id).first().textContent()) ?? '').trim();
const shot = (page: Page, name: string) => page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true });
const putEvent = (id: string, body: Record<string, unknown>) => call(gw.url, 'PUT', `/api/v1/admin/events/${id}`, body, admin);
const stats = async (id: string) => (await call(gw.url, 'GET', `/api/v1/admin/events/${id}/stats`, undefined, admin)).body;
const position = async (page: Page): Promise<number> => Number((await text(page, 'position')).replace(/[^0-9]/g, ''));

async function waitText(page: Page, id: string, pred: (t: string) => boolean, what: string, timeoutMs = 20_000): Promise<string> {
  return waitFor(what, async () => {
    const t = await text(page, id);
    return pred(t) ? t : undefined;
  }, timeoutMs, 100);
}

/** people ahead who enter as soon as they are ready, so the page's position falls */
async function crowdAhead(event: string, n: number): Promise<{ done: Promise<void> }> {
  const tokens: string[] = [];
  for (let i = 0; i < n; i++) tokens.push((await call(gw.url, 'POST', '/api/v1/queue/join', { event_id: event })).body.waiting_token as string);
  const dev = (await call(gw.url, 'POST', '/api/v1/dev/token', { sub: `crowd-${event}` })).body.access_token as string;
  const done = (async () => {
    let i = 0;
    for (const t of tokens) {
      await waitFor('crowd ready', async () => (await call(gw.url, 'GET', `/api/v1/queue/status?token=${t}`)).body.ready_for_entry === true, 30_000, 100);
      // each crowd member is its own user (one admission per user)
      const sub = (await call(gw.url, 'POST', '/api/v1/dev/token', { sub: `crowd-${event}-${i++}` })).body.access_token as string;
      await call(gw.url, 'POST', '/api/v1/queue/enter', { waiting_token: t }, { authorization: `Bearer ${sub || dev}` });
    }
  })();
  return { done };
}

async function journey(ctx: BrowserContext, event: string, label: string, expectConnection: string): Promise<void> {
  await putEvent(event, { rate: 1, burst: 1, ready_window_sec: 120, state: 'paused' });
  const crowd = await crowdAhead(event, 4);
  const page = await ctx.newPage();
  await page.goto(`${gw.url}/?event=${event}`);
  await waitText(page, 'status', (t) => t === 'paused' || t === 'waiting', 'in line');
  await waitText(page, 'connection', (t) => t.toLowerCase().startsWith(expectConnection), `connection ${expectConnection}`);
  expect(await position(page)).toBe(5);
  expect(await text(page, 'eta')).not.toBe('');
  await shot(page, `${label}-paused`);
  await putEvent(event, { state: 'open' });
  await waitText(page, 'status', (t) => t === 'waiting', 'waiting');
  await shot(page, `${label}-waiting`);
  // watch the position fall to the front
  const seen: number[] = [];
  await waitFor('ready', async () => {
    const p = await position(page);
    if (p > 0 && seen.at(-1) !== p) seen.push(p);
    return (await text(page, 'status')) === 'ready';
  }, 40_000, 100);
  await crowd.done;
  // 5 was read while paused (above); after reopening the first sample may already be lower
  expect(seen[0]).toBeLessThanOrEqual(5);
  expect(seen.at(-1)).toBe(1);
  expect(seen.length).toBeGreaterThan(1);
  for (let i = 1; i < seen.length; i++) expect(seen[i]!).toBeLessThan(seen[i - 1]!);
  const enter = page.getByTestId('enter');
  expect(await enter.isVisible()).toBe(true);
  expect(await page.evaluate(() => document.activeElement?.getAttribute('data-testid'))).toBe('enter'); // focus moves to Enter
  await shot(page, `${label}-ready`);
  await enter.click();
  await waitText(page, 'status', (t) => t === 'admitted', 'admitted');
  await shot(page, `${label}-admitted`);
  expect((await stats(event)).admitted_total).toBe(5);
  await page.close();
}

describe('waiting-room page', () => {
  it('joins, watches the position fall, gets ready, clicks Enter and lands admitted (WebSocket)', async () => {
    const ctx = await browser.newContext();
    try {
      await journey(ctx, 'page-ws', 'ws', 'live');
    } finally {
      await ctx.close();
    }
  }, 90_000);

  it('completes the same journey over polling when WebSockets are blocked', async () => {
    const ctx = await browser.newContext();
    // a proxy that refuses WebSocket upgrades: every socket fails to open
    await ctx.addInitScript(() => {
      class Blocked extends EventTarget {
        static CONNECTING = 0;
        static OPEN = 1;
        static CLOSING = 2;
        static CLOSED = 3;
        readyState = 0;
        onopen: ((e: Event) => void) | null = null;
        onmessage: ((e: MessageEvent) => void) | null = null;
        onerror: ((e: Event) => void) | null = null;
        onclose: ((e: CloseEvent) => void) | null = null;
        binaryType = 'blob';
        protocol = '';
        constructor(public url: string) {
          super();
          setTimeout(() => {
            this.readyState = 3;
            const err = new Event('error');
            this.onerror?.(err);
            this.dispatchEvent(err);
            const close = new CloseEvent('close', { code: 1006, reason: '' });
            this.onclose?.(close);
            this.dispatchEvent(close);
          }, 30);
        }
        send(): void {}
        close(): void {}
      }
      (window as unknown as { WebSocket: unknown }).WebSocket = Blocked;
    });
    try {
      await journey(ctx, 'page-poll', 'poll', 'polling');
    } finally {
      await ctx.close();
    }
  }, 90_000);

  it('after a network drop the page reconnects and keeps its position', async () => {
    await putEvent('page-drop', { rate: 1, burst: 1, state: 'paused' });
    for (let i = 0; i < 3; i++) await call(gw.url, 'POST', '/api/v1/queue/join', { event_id: 'page-drop' });
    const ctx = await browser.newContext();
    try {
      const page = await ctx.newPage();
      await page.goto(`${gw.url}/?event=page-drop`);
      await waitText(page, 'connection', (t) => t.toLowerCase().startsWith('live'), 'live');
      expect(await position(page)).toBe(4);
      const before = (await stats('page-drop')).in_line;
      await ctx.setOffline(true);
      await waitText(page, 'connection', (t) => !t.toLowerCase().startsWith('live'), 'not live', 15_000);
      await shot(page, 'drop-offline');
      await sleep(3000);
      await ctx.setOffline(false);
      await waitText(page, 'connection', (t) => t.toLowerCase().startsWith('live'), 'live again', 30_000);
      expect(await position(page)).toBe(4);
      expect((await stats('page-drop')).in_line).toBe(before);
      await shot(page, 'drop-reconnected');
    } finally {
      await ctx.close();
    }
  }, 90_000);

  it('two tabs of the same browser take one place', async () => {
    await putEvent('page-tabs', { rate: 1, burst: 1, state: 'paused' });
    await call(gw.url, 'POST', '/api/v1/queue/join', { event_id: 'page-tabs' });
    const ctx = await browser.newContext();
    try {
      const [a, b] = [await ctx.newPage(), await ctx.newPage()];
      await Promise.all([a.goto(`${gw.url}/?event=page-tabs`), b.goto(`${gw.url}/?event=page-tabs`)]);
      for (const p of [a, b]) await waitText(p, 'connection', (t) => t.toLowerCase().startsWith('live'), 'live');
      await sleep(500);
      expect(await position(a)).toBe(2);
      expect(await position(b)).toBe(2);
      expect((await stats('page-tabs')).in_line).toBe(2); // the one ahead + this browser
      const third = await ctx.newPage(); // a reload-like third tab later on
      await third.goto(`${gw.url}/?event=page-tabs`);
      await waitText(third, 'connection', (t) => t.toLowerCase().startsWith('live'), 'live');
      expect((await stats('page-tabs')).in_line).toBe(2);
      await shot(a, 'tabs-shared');
    } finally {
      await ctx.close();
    }
  }, 60_000);

  it('shows expired with what to do next, and fits a phone', async () => {
    await putEvent('page-exp', { rate: 5, burst: 1, ready_window_sec: 5 });
    const ctx = await browser.newContext({ viewport: { width: 375, height: 740 }, isMobile: true });
    try {
      const page = await ctx.newPage();
      await page.goto(`${gw.url}/?event=page-exp`);
      await waitText(page, 'status', (t) => t === 'ready', 'ready');
      await shot(page, 'mobile-ready');
      await waitText(page, 'status', (t) => t === 'expired', 'expired', 20_000);
      await shot(page, 'mobile-expired');
      const width = await page.evaluate(() => document.documentElement.scrollWidth);
      expect(width).toBeLessThanOrEqual(375); // no horizontal scrolling
    } finally {
      await ctx.close();
    }
  }, 60_000);

  it('makes no external network requests', async () => {
    const ctx = await browser.newContext();
    const external: string[] = [];
    ctx.on('request', (r) => {
      if (!r.url().startsWith(gw.url) && !r.url().startsWith(gw.url.replace('http', 'ws')) && !r.url().startsWith('data:')) external.push(r.url());
    });
    try {
      const page = await ctx.newPage();
      await page.goto(`${gw.url}/?event=page-ext`);
      await waitText(page, 'connection', (t) => t.toLowerCase().startsWith('live'), 'live');
      await page.goto(`${gw.url}/admin`);
      await sleep(500);
      expect(external).toEqual([]);
    } finally {
      await ctx.close();
    }
  }, 60_000);
});
