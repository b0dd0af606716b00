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
// polling; a network drop keeps the place; two tabs share one place. A
// scheduled sale: the page waits for the line to open, joins the pre-queue
// by itself, shows the draw and its receipt, then the drawn place, and says
// "Sold out" when the operator ends the sale. A sale with a join challenge:
// the page checks the browser (a proof of work in a Web Worker) with a
// progress bar, then joins, once.
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

/** A proxy that refuses WebSocket upgrades: every socket of the context's pages fails to open. */
async function blockWebSockets(ctx: BrowserContext): Promise<void> {
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
    await blockWebSockets(ctx);
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

describe('a scheduled sale, in the page', () => {
  /** whitespace as people read it (ICU puts narrow no-break spaces before AM/PM) */
  const plain = (s: string): string => s.replace(/\s+/g, ' ').trim();
  const byId = async (page: Page, id: string): Promise<string> => plain((await page.locator(`#${id}`).textContent()) ?? '');
  const end = (event: string, body: Record<string, unknown>) => call(site.gw.url, 'POST', `/api/v1/admin/events/${event}/end`, body, site.admin);
  /**
   * A moment as the reader should see it: in their time zone and language, the
   * time alone on the same day, else date and time. Formatted by the browser's
   * own Intl (this Node may lack the Korean locale data).
   */
  const localTime = async (page: Page, iso: string, timeZone: string): Promise<string> =>
    plain(
      await page.evaluate(
        ([at, tz]) => {
          const d = new Date(at!);
          const lang = navigator.language;
          const day = (x: Date) => new Intl.DateTimeFormat('en-CA', { timeZone: tz, dateStyle: 'short' }).format(x);
          const opts: Intl.DateTimeFormatOptions = day(d) === day(new Date()) ? { hour: 'numeric', minute: '2-digit', timeZone: tz } : { dateStyle: 'medium', timeStyle: 'short', timeZone: tz };
          return new Intl.DateTimeFormat(lang, opts).format(d);
        },
        [iso, timeZone],
      ),
    );
  /** the text of several elements (by id) in one round trip, as people read it */
  const texts = async (page: Page, ids: string[]): Promise<Record<string, string>> => {
    const raw = await page.evaluate((list) => Object.fromEntries(list.map((id) => [id, document.getElementById(id)?.textContent ?? ''])), ids);
    return Object.fromEntries(Object.entries(raw).map(([k, v]) => [k, plain(v)]));
  };
  /** requests of a page to the queue API, by kind */
  const traffic = (page: Page) => {
    const seen = { join: 0, status: 0, ws: 0 };
    page.on('request', (r) => {
      const u = new URL(r.url());
      if (u.pathname === '/api/v1/queue/join') seen.join++;
      if (u.pathname === '/api/v1/queue/status') seen.status++;
    });
    page.on('websocket', () => seen.ws++);
    return seen;
  };

  it('before the line opens the page says when, joins the pre-queue by itself, shows the draw and its receipt, then the drawn place, and "Sold out" at the end', async () => {
    const zone = 'Asia/Seoul'; // the reader's time zone, not the server's (UTC)
    // two readers, in English and in Korean
    const readers = [
      { lang: 'en', ctx: await site.browser.newContext({ locale: 'en-US', timezoneId: zone }) },
      { lang: 'ko', ctx: await site.browser.newContext({ locale: 'ko-KR', timezoneId: zone }) },
    ];
    /**
     * A sale scheduled `lead` ms ahead, its pre-queue 1.5 × lead long. The
     * page must see the line closed, then the pre-queue before the draw:
     * seconds that are the sale's, not the machine's. On a machine too busy to
     * load a page within them (the page's first join already accepted, or the
     * draw before the page showed the pre-queue) the same sale is scheduled
     * again further ahead, rather than failing on the machine's speed.
     */
    const scheduleSale = async (attempt: number, lead: number) => {
      const event = `page-sched-${attempt}`;
      const pages = await Promise.all(readers.map((r) => r.ctx.newPage()));
      await Promise.all(pages.map((p) => p.goto(`${site.gw.url}/`))); // loaded before the schedule starts counting
      const seen = pages.map(traffic);
      const now = Date.now();
      const opensAt = new Date(now + lead).toISOString();
      const startsAt = new Date(now + lead * 2.5).toISOString();
      const put = await putEvent(event, { rate: 0.001, burst: 1, ready_window_sec: 120, access: 'anonymous', prequeue_opens_at: opensAt, starts_at: startsAt });
      expect(put.status, put.text).toBe(201);
      expect(put.body.state).toBe('scheduled');
      await Promise.all(pages.map((p) => p.goto(`${site.gw.url}/?event=${event}`)));
      for (const p of pages) await waitText(p, 'status', (t) => t !== 'idle', 'a first answer', 30_000);
      // what the scheduled view shows, read at once (before the opening changes it)
      const views = await Promise.all(pages.map((p) => texts(p, ['status', 'scheduled-h', 'opens-at', 'opens-countdown', 'scheduled-draw'])));
      const connHidden = await pages[0]!.getByTestId('connection').isHidden();
      return { event, pages, seen, opensAt, startsAt, views, connHidden, tooSlow: views.some((v) => v.status !== 'scheduled') };
    };
    try {
      let sale: Awaited<ReturnType<typeof scheduleSale>> | undefined;
      let pre: Record<string, string>[] = [];
      for (const [attempt, lead] of [3000, 6000, 12_000].entries()) {
        const last = attempt === 2;
        const s = await scheduleSale(attempt, lead);
        if (s.tooSlow && !last) {
          console.warn(`scheduled sale: the page saw no closed line within ${lead} ms; scheduling again further ahead`);
          for (const p of s.pages) await p.close();
          continue;
        }
        const [en, ko] = s.pages as [Page, Page];

        // scheduled: when the line opens, in the reader's time, and a countdown
        const [sched, schedKo] = s.views as [Record<string, string>, Record<string, string>];
        for (const v of s.views) expect(v.status).toBe('scheduled');
        expect(sched['scheduled-h']).toBe("The line isn't open yet");
        expect(sched['opens-at']).toBe(`The line opens at ${await localTime(en, s.opensAt, zone)}.`);
        expect(sched['opens-countdown']).toMatch(/^(\d+:)?\d+:\d\d$|^Opening…$/);
        expect(sched['scheduled-draw']).toContain(`At ${await localTime(en, s.startsAt, zone)} everyone in it gets a random place in line`);
        expect(schedKo['opens-at']).toBe(`대기열은 ${await localTime(ko, s.opensAt, zone)}에 열려요.`);
        // the reader's zone (UTC+9), not the server's
        expect(await localTime(en, s.opensAt, zone)).not.toBe(await localTime(en, s.opensAt, 'UTC'));
        expect(s.connHidden).toBe(true); // no place, no connection to show
        await shot(en, 'scheduled-before-open');

        // the pre-queue opens: each page joins by itself, without a tight loop
        await waitFor('pre-queue open', async () => (await call(site.gw.url, 'GET', `/api/v1/events/${s.event}`)).body.state === 'prequeue', lead + 10_000, 50);
        // two more entrants, so the draw is among four
        for (let i = 0; i < 2; i++) expect((await call(site.gw.url, 'POST', '/api/v1/queue/join', { event_id: s.event })).body.status).toBe('prequeue');
        for (const p of s.pages) await waitText(p, 'status', (t) => t === 'prequeue' || t === 'waiting' || t === 'ready', 'pre-queue', 30_000);
        // everything the pre-queue view shows, read at once (before the draw changes it)
        pre = await Promise.all(s.pages.map((p) => texts(p, ['status', 'prequeue-h', 'draw-rule', 'draw-countdown', 'receipt', 'receipt-code'])));
        if (pre.some((t) => t.status !== 'prequeue') && !last) {
          console.warn(`scheduled sale: the page saw no pre-queue within ${lead * 1.5} ms; scheduling again further ahead`);
          for (const p of s.pages) await p.close();
          continue;
        }
        sale = s;
        break;
      }
      const { event, pages, seen, startsAt } = sale!;
      const [en, ko] = pages as [Page, Page];
      const preState = await Promise.all(pages.map((p) => p.evaluate(() => ({ line: document.getElementById('view-line')!.hidden, receipt: document.getElementById('receipt')!.hidden, link: document.getElementById('receipt-link')!.getAttribute('href') }))));
      for (const s of seen) {
        expect(s.join).toBeGreaterThanOrEqual(2); // refused, then accepted
        expect(s.join).toBeLessThanOrEqual(4); // Retry-After: at least a second apart
      }
      const [preEn, preKo] = pre as [Record<string, string>, Record<string, string>];
      for (const t of pre) expect(t.status).toBe('prequeue');
      expect(preEn['prequeue-h']).toBe("You're in the pre-queue");
      expect(preEn['draw-rule']).toBe(`At ${await localTime(en, startsAt, zone)} everyone here gets a random place in line. Arriving earlier or refreshing does not help.`);
      expect(preKo['draw-rule']).toBe(`${await localTime(ko, startsAt, zone)}에 이곳의 모든 분께 무작위로 대기 순서가 배정돼요. 일찍 오거나 새로고침해도 유리하지 않아요.`);
      expect(preEn['draw-countdown']).toMatch(/^(\d+:)?\d+:\d\d$|^Drawing places…$/);
      const receipts = pre.map((t) => t['receipt-code']!);
      for (const [i, st] of preState.entries()) {
        if ((await text(pages[i]!, 'status')) === 'prequeue') expect(st.line).toBe(true); // no position before the draw
        expect(st.receipt).toBe(false);
        expect(st.link).toBe(`/api/v1/events/${event}/draw`);
        expect(receipts[i]).toMatch(/^[0-9a-f]{20}$/);
      }
      expect(preEn.receipt).toBe(`Your entry receipt: ${receipts[0]} Check the draw`);
      expect(receipts[0]).not.toBe(receipts[1]);
      await shot(en, 'prequeue-en');
      await shot(ko, 'prequeue-ko');
      // the socket holds the entry
      for (const p of pages) await waitText(p, 'connection', (t) => t.startsWith('live'), 'live in the pre-queue', 10_000);

      // the draw: each page shows its place (one place is called at once: the bucket's one token)
      for (const p of pages) await waitText(p, 'status', (t) => t === 'waiting' || t === 'ready', 'drawn', 40_000);
      const draw = await call(site.gw.url, 'GET', `/api/v1/events/${event}/draw`);
      expect(draw.body).toMatchObject({ status: 'drawn', entrants: 4 });
      const list = (await call<{ entrants: { position: number; receipt: string }[] }>(site.gw.url, 'GET', `/api/v1/events/${event}/draw/entrants`)).body.entrants;
      const drawnAt = receipts.map((r) => list.find((e) => e.receipt === r)?.position ?? 0);
      // each page's receipt is in the published list, at a place of its own
      expect(new Set(drawnAt).size).toBe(2);
      for (const pos of drawnAt) expect(pos >= 1 && pos <= 4, `drawn at ${pos}`).toBe(true);
      const waitingPages: number[] = [];
      for (const [i, p] of pages.entries()) {
        if (drawnAt[i] === 1) {
          // drawn first: called at once
          await waitText(p, 'status', (t) => t === 'ready', 'ready', 15_000);
          continue;
        }
        waitingPages.push(i);
        // its drawn place: the one the gateway gives this place (its status answer), shown as soon as it is drawn
        const token = await p.evaluate((e) => localStorage.getItem(`wr:${e}`), event);
        expect(token).toBeTruthy();
        let shown = 0;
        let told = '';
        await waitFor(`page ${i} at the gateway's place for it`, async () => {
          const st = await call(site.gw.url, 'GET', `/api/v1/queue/status?token=${encodeURIComponent(token!)}`);
          shown = await position(p);
          told = st.text;
          return st.body.status === 'waiting' && shown >= 1 && shown === st.body.position;
        }, 15_000, 100).catch((err: unknown) => {
          throw new Error(`${String(err)}: the page shows ${shown}, the gateway says ${told}`);
        });
        const line = await texts(p, ['status', 'drawn-note', 'receipt-code']);
        expect(line.status).toBe('waiting');
        expect(line['drawn-note']).toBe(readers[i]!.lang === 'en' ? 'Places were drawn at random when the sale started.' : '판매가 시작될 때 순서가 무작위로 추첨되었어요.');
        expect(await p.getByTestId('drawn-note').isVisible()).toBe(true);
        // the receipt stays, small
        expect(await p.getByTestId('receipt').isVisible()).toBe(true);
        expect(line['receipt-code']).toBe(receipts[i]);
        expect(await p.locator('#receipt').getAttribute('class')).toContain('receipt-small');
      }
      expect(waitingPages.length).toBeGreaterThanOrEqual(1); // at most one of the four is called
      await shot(pages[waitingPages[0]!]!, 'drawn-line');

      // the end: every waiting page says why, with the operator's message in its reader's language, and stops
      const message = { en: 'All tickets are sold. Thank you for waiting.', ko: '모든 티켓이 판매되었어요. 기다려 주셔서 감사해요.' };
      const ended = await end(event, { reason: 'sold_out', message });
      expect(ended.status, ended.text).toBe(200);
      for (const i of waitingPages) {
        const p = pages[i]!;
        // at once over the socket (a page that fell back to polling hears it at its next poll)
        await waitText(p, 'status', (t) => t === 'ended', 'ended', 25_000);
        const lang = readers[i]!.lang as 'en' | 'ko';
        expect(await byId(p, 'ended-h')).toBe(lang === 'en' ? 'Sold out' : '매진');
        await waitFor('the message', async () => (await p.getByTestId('notice').isVisible()) && (await byId(p, 'notice-text')) === message[lang], 5_000, 50);
        expect(await p.getByTestId('connection').isHidden()).toBe(true);
        expect(await p.getByTestId('receipt').isHidden()).toBe(true);
        // the place is forgotten: a reload would not find it
        expect(await p.evaluate((e) => localStorage.getItem(`wr:${e}`), event)).toBeNull();
      }
      await shot(pages[waitingPages[0]!]!, 'ended-sold-out');
      // a page that was called keeps its turn (ready users keep their window)
      for (const [i, p] of pages.entries()) if (!waitingPages.includes(i)) expect(await text(p, 'status')).toBe('ready');
      // and nothing reconnects or polls any more
      const before = seen.map((s) => ({ ...s }));
      await sleep(2000);
      for (const i of waitingPages) expect(seen[i]).toEqual(before[i]);
    } finally {
      for (const r of readers) await r.ctx.close();
    }
  }, 180_000);

  it('polling: the end reaches the page at its next poll, the polls stop, and a page opened afterwards says so in its reader\'s language', async () => {
    const event = 'page-end-poll';
    await putEvent(event, { rate: 1, burst: 1, ready_window_sec: 120, state: 'paused', access: 'anonymous' });
    const ctx = await site.browser.newContext({ locale: 'en-US' });
    await blockWebSockets(ctx);
    const late = await site.browser.newContext({ locale: 'ko-KR' });
    try {
      const page = await ctx.newPage();
      const seen = traffic(page);
      await page.goto(`${site.gw.url}/?event=${event}`);
      await waitText(page, 'status', (t) => t === 'paused', 'in line');
      await waitText(page, 'connection', (t) => t.startsWith('polling'), 'polling');
      expect(await position(page)).toBe(1);
      const message = { en: 'The show is cancelled. Refunds follow by email.', ko: '공연이 취소되었어요. 환불 안내는 이메일로 보내 드려요.' };
      const ended = await end(event, { reason: 'cancelled', message });
      expect(ended.status, ended.text).toBe(200);
      await waitText(page, 'status', (t) => t === 'ended', 'ended', 30_000);
      expect(await byId(page, 'ended-h')).toBe('Cancelled');
      expect(await byId(page, 'notice-text')).toBe(message.en);
      expect(await page.getByTestId('notice').isVisible()).toBe(true);
      expect(await byId(page, 'ended-at')).toMatch(/^Ended at /);
      await shot(page, 'ended-cancelled-poll');
      const polls = seen.status;
      await sleep(2500); // longer than the poll interval (1 s here)
      expect(seen.status).toBe(polls);

      // a reader arriving after the end: the join is refused (410) and the page says why, in Korean
      const again = await late.newPage();
      const lateSeen = traffic(again);
      await again.goto(`${site.gw.url}/?event=${event}`);
      await waitText(again, 'status', (t) => t === 'ended', 'ended', 10_000);
      expect(await byId(again, 'ended-h')).toBe('취소됨');
      await waitFor('the Korean message', async () => (await byId(again, 'notice-text')) === message.ko, 5_000, 50);
      expect(lateSeen.join).toBe(1);
      expect(lateSeen.ws).toBe(0);
      expect(lateSeen.status).toBe(0);
      await shot(again, 'ended-cancelled-late-ko');
    } finally {
      await ctx.close();
      await late.close();
    }
  }, 60_000);
});

describe('a sale with a join challenge, in the page', () => {
  it('proof of work: the page says it is checking the browser, with a progress bar, then joins once and shows its place', async () => {
    const event = 'page-pow';
    const put = await putEvent(event, { rate: 5, burst: 1, ready_window_sec: 60, state: 'paused', access: 'anonymous', challenge: { kind: 'pow', difficulty: 14 } });
    expect(put.status, put.text).toBe(201);
    expect((await call(site.gw.url, 'GET', `/api/v1/admin/events/${event}`, undefined, site.admin)).body.challenge).toEqual({ kind: 'pow', difficulty: 14 });
    const ctx = await site.browser.newContext({ locale: 'en-US' });
    try {
      // The solver's script is held until the checking view has been read (at
      // difficulty 14 the solve itself takes milliseconds), and it reports its
      // progress every 16 tries instead of every 65,536 (2^14 tries would
      // otherwise finish before the first report); the puzzle is the same.
      let release!: () => void;
      const held = new Promise<void>((r) => (release = r));
      let workerRequests = 0;
      await ctx.route('**/pow-worker.js', async (route) => {
        workerRequests++;
        await held;
        const res = await route.fetch();
        const src = await res.text();
        const every16 = src.replace('(n & 0xffff) === 0xffff', '(n & 0xf) === 0xf');
        expect(every16).not.toBe(src);
        await route.fulfill({ response: res, body: every16 });
      });
      const page = await ctx.newPage();
      const seen = { join: [] as number[], challenge: 0, proof: undefined as { challenge: string; solution: string } | undefined };
      page.on('request', (r) => {
        if (new URL(r.url()).pathname === '/api/v1/queue/join') seen.proof ??= (r.postDataJSON() as { proof?: { challenge: string; solution: string } }).proof;
      });
      page.on('response', (r) => {
        const u = new URL(r.url());
        if (u.pathname === '/api/v1/queue/join') seen.join.push(r.status());
        if (u.pathname === '/api/v1/queue/challenge') seen.challenge++;
      });
      await page.goto(`${site.gw.url}/?event=${event}`);
      await waitText(page, 'status', (t) => t === 'checking', 'checking the browser');
      await waitFor('the solver asked for', async () => workerRequests === 1, 10_000, 50);
      expect(await page.getByTestId('checking').isVisible()).toBe(true);
      const view = await page.evaluate(() => ({
        heading: document.getElementById('checking-h')!.textContent,
        time: document.getElementById('checking-time')!.textContent,
        chip: document.getElementById('status')!.dataset.label,
        now: document.getElementById('checking-progress')!.getAttribute('aria-valuenow'),
        text: document.getElementById('checking-progress')!.getAttribute('aria-valuetext'),
        barShown: !document.getElementById('checking-progress')!.parentElement!.hidden,
        line: document.getElementById('view-line')!.hidden,
        connection: document.getElementById('connection')!.hidden,
      }));
      expect(view).toEqual({
        heading: 'Checking your browser before you join…',
        time: '(this takes a second or two)',
        chip: 'Checking',
        now: '0',
        text: '0% checked',
        barShown: true,
        line: true,
        connection: true,
      });
      expect(seen.join).toEqual([428]); // the first join, without a proof
      await shot(page, 'challenge-checking');
      // every value the bar takes from here on
      await page.evaluate(() => {
        const bar = document.getElementById('checking-progress')!;
        const w = window as unknown as { __bar: number[] };
        w.__bar = [];
        new MutationObserver(() => w.__bar.push(Number(bar.getAttribute('aria-valuenow')))).observe(bar, { attributes: true, attributeFilter: ['aria-valuenow'] });
      });
      release();
      await waitText(page, 'status', (t) => t === 'paused', 'in line');
      expect(await position(page)).toBe(1);
      const bar = await page.evaluate(() => (window as unknown as { __bar: number[] }).__bar);
      // tries over 2^14, never above 95 % until solved, then 100 %: the last report was at the last multiple of 16 below the solution's tries
      const tries = Number(seen.proof!.solution) + 1;
      const lastReport = Math.floor((tries - 1) / 16) * 16;
      expect(bar.at(-1)).toBe(100);
      const before = bar.slice(0, -1);
      for (let i = 1; i < bar.length; i++) expect(bar[i]!).toBeGreaterThanOrEqual(bar[i - 1]!);
      if (lastReport > 0) expect(before.at(-1), `tries ${tries}`).toBe(Math.round(Math.min(0.95, lastReport / 2 ** 14) * 100));
      else expect(before).toEqual([]); // solved before the first report
      for (const v of before) expect(v).toBeLessThanOrEqual(95);
      expect(await page.getByTestId('checking').isHidden()).toBe(true);
      expect(seen.join).toEqual([428, 202]);
      expect(seen.challenge).toBe(1);
      await shot(page, 'challenge-joined');
      // then as usual: called, entered, through
      await putEvent(event, { state: 'open' });
      await waitText(page, 'status', (t) => t === 'ready', 'ready');
      await page.getByTestId('enter').click();
      await waitText(page, 'status', (t) => t === 'admitted', 'admitted');
      const st = await stats(event);
      expect(st.joined_total).toBe(1);
      expect(st.admitted_total).toBe(1);
      expect(seen.join).toEqual([428, 202]);
      expect(workerRequests).toBe(1);
    } finally {
      await ctx.close();
    }
  }, 60_000);

  it('a browser that cannot run the check (the solver does not load): the page says so in words, and nobody joins', async () => {
    const event = 'page-pow-broken';
    const put = await putEvent(event, { rate: 5, burst: 1, access: 'anonymous', challenge: { kind: 'pow', difficulty: 14 } });
    expect(put.status, put.text).toBe(201);
    const ctx = await site.browser.newContext({ locale: 'en-US' });
    try {
      await ctx.route('**/pow-worker.js', (route) => route.fulfill({ status: 404, body: 'blocked' }));
      const page = await ctx.newPage();
      const joins: number[] = [];
      page.on('response', (r) => {
        if (new URL(r.url()).pathname === '/api/v1/queue/join') joins.push(r.status());
      });
      await page.goto(`${site.gw.url}/?event=${event}`);
      await waitText(page, 'status', (t) => t === 'error', 'error');
      expect(((await page.locator('#error-text').textContent()) ?? '').trim()).toBe(
        "This browser couldn't run the automatic check this sale needs before you join. Use an up-to-date browser with JavaScript turned on (or turn off extensions that block scripts) and try again.",
      );
      expect(await page.locator('#retry').isVisible()).toBe(true);
      await shot(page, 'challenge-unsupported');
      expect(joins).toEqual([428]);
      expect((await stats(event)).joined_total).toBe(0);
    } finally {
      await ctx.close();
    }
  }, 60_000);

  it('without JavaScript (/wait): the join is refused (428) and the page says this sale needs JavaScript, with a link to the page that has it; nobody joins', async () => {
    const event = 'page-pow-nojs';
    const put = await putEvent(event, { rate: 5, burst: 1, access: 'anonymous', challenge: { kind: 'pow', difficulty: 14 } });
    expect(put.status, put.text).toBe(201);
    for (const [locale, title, expected] of [
      ['en-US', 'This sale needs JavaScript', 'This sale checks your browser before you join, and that needs JavaScript: your browser solves a short puzzle (a proof of work) that keeps bots out of the line. Turn JavaScript on and use the regular waiting page.'],
      ['ko-KR', '이 판매는 JavaScript가 필요해요', '이 판매는 대기열에 들어가기 전에 브라우저를 확인하며, 여기에는 JavaScript가 필요해요. 봇을 막기 위해 브라우저가 짧은 퍼즐(작업 증명)을 풀어요. JavaScript를 켜고 일반 대기 페이지를 이용해 주세요.'],
    ] as const) {
      const ctx = await site.browser.newContext({ javaScriptEnabled: false, locale });
      try {
        const page = await ctx.newPage();
        await page.goto(`${site.gw.url}/wait?event=${event}`);
        const answer = page.waitForResponse((r) => new URL(r.url()).pathname === '/wait/join');
        await page.getByTestId('wait-join').click();
        expect((await answer).status()).toBe(428);
        const state = page.getByTestId('wait-state');
        await state.waitFor();
        expect(await state.getAttribute('data-state')).toBe('needs-js');
        expect(await state.getAttribute('data-kind')).toBe('pow');
        expect(((await state.textContent()) ?? '').trim()).toBe(title);
        expect(((await page.getByTestId('wait-needs-js').textContent()) ?? '').trim()).toBe(expected);
        expect(await page.getByTestId('wait-open-page').getAttribute('href')).toBe(`/?event=${event}`);
        await shot(page, `challenge-nojs-${locale}`);
      } finally {
        await ctx.close();
      }
    }
    expect((await stats(event)).joined_total).toBe(0);
  }, 60_000);
});
