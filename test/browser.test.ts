import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { call, sleep, waitFor } from './helpers/harness.js';
import { SCREENSHOTS } from './helpers/browser.js';
import { startProductionSite, type ProductionSite } from './helpers/production-site.js';

// The waiting-room page in headless Chromium against a real gateway and
// Redis, configured as an operator deploys it: NODE_ENV=production, user JWTs
// checked against JWT_SECRET, no development tokens, real gRPC backends. The
// ticket site hands its logged-in user over with /?event=<id>#access_token=<JWT>;
// the page takes the token out of the address bar and uses it to join and
// enter, and sends the admitted browser to the event's target_url with
// ?admission_token=, where the site (an Express origin using src/connector)
// lets it in once. An event with access "anonymous" needs no token at all.
// The whole journey over WebSocket and, with WebSockets blocked, over
// polling; a network drop keeps the place; two tabs share one place.
// Screenshots of every state go to test-output/screenshots (not committed).

let site: ProductionSite;
beforeAll(async () => {
  site = await startProductionSite({ saleEvent: 'page-ws' });
}, 60_000);
afterAll(async () => {
  await site?.stop();
});
const userJwt = (sub: string) => site.userJwt(sub);

/** The link the ticket site gives its logged-in user. */
const handoff = async (event: string, sub: string): Promise<string> => `${site.gw.url}/?event=${event}#access_token=${await userJwt(sub)}`;

const text = async (page: Page, id: string): Promise<string> => ((await page.getByTestId(id).first().textContent()) ?? '').trim();
const shot = (page: Page, name: string) => page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true });
const putEvent = (id: string, body: Record<string, unknown>) => site.putEvent(id, body);
const stats = async (id: string) => (await call(site.gw.url, 'GET', `/api/v1/admin/events/${id}/stats`, undefined, site.admin)).body;
const position = async (page: Page): Promise<number> => Number((await text(page, 'position')).replace(/[^0-9]/g, ''));

async function waitText(page: Page, id: string, pred: (t: string) => boolean, what: string, timeoutMs = 20_000): Promise<string> {
  return waitFor(what, async () => {
    const t = await text(page, id);
    return pred(t) ? t : undefined;
  }, timeoutMs, 100);
}

/** people ahead (each a logged-in user of its own) who enter as soon as they are ready, so the page's position falls */
async function crowdAhead(event: string, n: number): Promise<{ done: Promise<void> }> {
  const crowd: [string, string][] = [];
  for (let i = 0; i < n; i++) {
    const jwt = await userJwt(`crowd-${event}-${i}`);
    crowd.push([(await call(site.gw.url, 'POST', '/api/v1/queue/join', { event_id: event }, { authorization: `Bearer ${jwt}` })).body.waiting_token as string, jwt]);
  }
  const done = (async () => {
    for (const [t, jwt] of crowd) {
      await waitFor('crowd ready', async () => (await call(site.gw.url, 'GET', `/api/v1/queue/status?token=${t}`)).body.ready_for_entry === true, 30_000, 100);
      await call(site.gw.url, 'POST', '/api/v1/queue/enter', { waiting_token: t }, { authorization: `Bearer ${jwt}` });
    }
  })();
  return { done };
}

async function journey(ctx: BrowserContext, event: string, label: string, expectConnection: string, target?: string): Promise<Page> {
  await putEvent(event, { rate: 1, burst: 1, ready_window_sec: 120, state: 'paused', ...(target ? { target_url: target } : {}) });
  const crowd = await crowdAhead(event, 4);
  const page = await ctx.newPage();
  await page.goto(await handoff(event, `buyer-${event}`));
  // the hand-over token is out of the address bar at once
  expect(page.url()).not.toContain('access_token');
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
  if (target) return page; // the caller follows the browser to the ticket site
  await waitText(page, 'status', (t) => t === 'admitted', 'admitted');
  await shot(page, `${label}-admitted`);
  expect((await stats(event)).admitted_total).toBe(5);
  await page.close();
  return page;
}

describe('waiting-room page', () => {
  it('a logged-in user handed over by the ticket site: joins, watches the position fall, enters, and is let into the sale (WebSocket)', async () => {
    const ctx = await site.browser.newContext();
    try {
      const page = await journey(ctx, 'page-ws', 'ws', 'live', `${site.originUrl}/sale`);
      // admitted, then sent to the ticket site with the admission token, which lets the user in once
      await page.waitForURL((u) => u.toString().startsWith(`${site.originUrl}/sale`), { timeout: 20_000 });
      expect(await page.getByTestId('sale').textContent()).toBe('Welcome to the sale, buyer-page-ws');
      expect(new URL(page.url()).searchParams.get('admission_token')).toMatch(/^ey/);
      await shot(page, 'ws-sale');
      expect(site.redeemed).toEqual(['buyer-page-ws']);
      expect((await stats('page-ws')).admitted_total).toBe(5);
      // the same link again is refused by the site: one admission, one use
      const replay = await fetch(page.url());
      expect(replay.status).toBe(403);
    } finally {
      await ctx.close();
    }
  }, 90_000);

  it('completes the same journey over polling when WebSockets are blocked', async () => {
    const ctx = await site.browser.newContext();
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
    for (let i = 0; i < 3; i++) await call(site.gw.url, 'POST', '/api/v1/queue/join', { event_id: 'page-drop' }, { authorization: `Bearer ${await userJwt(`drop-${i}`)}` });
    const ctx = await site.browser.newContext();
    try {
      const page = await ctx.newPage();
      await page.goto(await handoff('page-drop', 'dropper'));
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
    await call(site.gw.url, 'POST', '/api/v1/queue/join', { event_id: 'page-tabs' }, { authorization: `Bearer ${await userJwt('tabs-ahead')}` });
    const ctx = await site.browser.newContext();
    try {
      const [a, b] = [await ctx.newPage(), await ctx.newPage()];
      const link = await handoff('page-tabs', 'two-tabs');
      await Promise.all([a.goto(link), b.goto(link)]);
      for (const p of [a, b]) await waitText(p, 'connection', (t) => t.toLowerCase().startsWith('live'), 'live');
      await sleep(500);
      expect(await position(a)).toBe(2);
      expect(await position(b)).toBe(2);
      expect((await stats('page-tabs')).in_line).toBe(2); // the one ahead + this browser
      const third = await ctx.newPage(); // a reload-like third tab later on
      await third.goto(link);
      await waitText(third, 'connection', (t) => t.toLowerCase().startsWith('live'), 'live');
      expect((await stats('page-tabs')).in_line).toBe(2);
      await shot(a, 'tabs-shared');
    } finally {
      await ctx.close();
    }
  }, 60_000);

  it('shows expired with what to do next, and fits a phone', async () => {
    await putEvent('page-exp', { rate: 5, burst: 1, ready_window_sec: 5 });
    const ctx = await site.browser.newContext({ viewport: { width: 375, height: 740 }, isMobile: true });
    try {
      const page = await ctx.newPage();
      await page.goto(await handoff('page-exp', 'phone'));
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
    const ctx = await site.browser.newContext();
    const external: string[] = [];
    ctx.on('request', (r) => {
      if (!r.url().startsWith(site.gw.url) && !r.url().startsWith(site.gw.url.replace('http', 'ws')) && !r.url().startsWith('data:')) external.push(r.url());
    });
    try {
      await putEvent('page-ext', { rate: 1, burst: 1, state: 'paused' });
      const page = await ctx.newPage();
      await page.goto(await handoff('page-ext', 'no-external'));
      await waitText(page, 'connection', (t) => t.toLowerCase().startsWith('live'), 'live');
      await page.goto(`${site.gw.url}/admin`);
      await sleep(500);
      expect(external).toEqual([]);
    } finally {
      await ctx.close();
    }
  }, 60_000);
});

describe('access per event, in the page', () => {
  it('anonymous: anyone enters with the waiting token alone (no hand-over), in production', async () => {
    await putEvent('page-anon', { rate: 5, burst: 1, ready_window_sec: 60, access: 'anonymous' });
    const ctx = await site.browser.newContext();
    try {
      const page = await ctx.newPage();
      await page.goto(`${site.gw.url}/?event=page-anon`);
      await waitText(page, 'status', (t) => t === 'ready', 'ready');
      await page.getByTestId('enter').click();
      await waitText(page, 'status', (t) => t === 'admitted', 'admitted');
      await shot(page, 'anonymous-admitted');
    } finally {
      await ctx.close();
    }
  }, 60_000);

  it('user: without a hand-over the page says where to sign in, and queues nobody', async () => {
    await putEvent('page-signin', { rate: 5, burst: 1, access: 'user' });
    const ctx = await site.browser.newContext();
    try {
      const page = await ctx.newPage();
      await page.goto(`${site.gw.url}/?event=page-signin`);
      await waitText(page, 'status', (t) => t === 'error', 'error');
      expect(await page.locator('#error-text').textContent()).toContain('sign in');
      await shot(page, 'user-sign-in');
      expect((await stats('page-signin')).in_line).toBe(0);
    } finally {
      await ctx.close();
    }
  }, 60_000);
});
