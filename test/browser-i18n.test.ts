import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { call, ROOT, waitFor } from './helpers/harness.js';
import { SCREENSHOTS } from './helpers/browser.js';
import { startProductionSite, type ProductionSite } from './helpers/production-site.js';

// The waiting-room page in English and Korean: the language comes from the
// browser's languages (a Chromium context with locale ko-KR or en-US), a
// switcher in the header changes it live without losing the place, and every
// text comes from one catalogue per language (web/i18n/<lang>.json), which
// the unit checks below keep complete. Headless Chromium against a real
// gateway and Redis in production configuration (NODE_ENV=production, user
// JWTs against JWT_SECRET, no development tokens, real gRPC backends), with
// events of access "anonymous" made through the admin API.

const I18N = join(ROOT, 'web', 'i18n');
type Catalogue = Record<string, string>;
const catalogue = (lang: string): Catalogue => JSON.parse(readFileSync(join(I18N, `${lang}.json`), 'utf8')) as Catalogue;
const placeholders = (s: string): string[] => [...s.matchAll(/\{([A-Za-z0-9_]+)\}/g)].map((m) => m[1]!).sort();
const PLURAL = /\.(zero|one|two|few|many|other)$/;
const HANGUL = /[\uAC00-\uD7A3]/;

describe('catalogues', () => {
  const en = catalogue('en');
  const ko = catalogue('ko');
  const langs = readdirSync(I18N)
    .filter((f) => f.endsWith('.json'))
    .map((f) => f.slice(0, -5));

  it('Korean has exactly the keys of English, and no empty text', () => {
    expect(Object.keys(ko).sort()).toEqual(Object.keys(en).sort());
    for (const [k, v] of Object.entries(ko)) expect(v.trim(), `ko ${k}`).not.toBe('');
    for (const [k, v] of Object.entries(en)) expect(v.trim(), `en ${k}`).not.toBe('');
  });

  it('every catalogue is flat, with the keys of English (plus plural categories) and the same placeholders', () => {
    expect(langs).toEqual(expect.arrayContaining(['en', 'ko']));
    const pluralBases = new Set(Object.keys(en).filter((k) => PLURAL.test(k)).map((k) => k.replace(PLURAL, '')));
    for (const lang of langs) {
      const c = catalogue(lang);
      for (const [k, v] of Object.entries(c)) {
        expect(typeof v, `${lang} ${k}`).toBe('string');
        expect(k, `${lang} ${k}`).toMatch(/^[a-z][a-z0-9_]*(\.[A-Za-z0-9_]+)+$/);
        if (k in en) expect(placeholders(v), `${lang} ${k}`).toEqual(placeholders(en[k]!));
        else expect(pluralBases.has(k.replace(PLURAL, '')), `${lang} has ${k}, which English lacks`).toBe(true);
        expect(v.trim(), `${lang} ${k}`).not.toBe('');
      }
      for (const k of Object.keys(en)) expect(Object.hasOwn(c, k), `${lang} lacks ${k}`).toBe(true);
    }
  });

  it("holds the server's /wait page keys, and the English texts the page's tests read", () => {
    expect(en).toMatchObject({
      'wait.title': 'Waiting room',
      'wait.position': 'Your place in line: {position}',
      'ahead.calling.other': '{count} more people ahead of you are being let in now',
      'wait.eta': 'Estimated wait: {eta}',
      'wait.refresh': 'This page refreshes itself every {seconds} seconds. Keep it open.',
      'wait.ready': "It's your turn. Enter before {time}.",
      'wait.enter': 'Enter',
      'wait.expired': 'Your place has expired.',
      'wait.join_again': 'Join again',
      'wait.admitted': "You're through.",
      'wait.continue': 'Continue to the sale',
      'wait.noscript': 'Without JavaScript? Use the simple waiting page',
      'notice.label': 'Message from the organiser',
    });
    for (const k of Object.keys(en).filter((k) => k.startsWith('wait.') || k === 'notice.label')) expect(ko[k], k).toMatch(HANGUL);
    expect(en['error.SIGN_IN_REQUIRED']).toContain('sign in'); // test/browser.test.ts
  });

  it('every key the page names is in the catalogue', () => {
    const html = readFileSync(join(ROOT, 'web', 'index.html'), 'utf8');
    const js = readFileSync(join(ROOT, 'web', 'app.js'), 'utf8');
    const known = (k: string): boolean => k in en || `${k}.other` in en;
    const parts = new Set(Object.keys(en).map((k) => k.split('.')[0]!));
    const named = [
      ...[...html.matchAll(/data-i18n="([^"]+)"/g)].map((m) => m[1]!),
      ...[...html.matchAll(/data-i18n-attr="([^"]+)"/g)].flatMap((m) => m[1]!.split(/[\s;]+/).map((p) => p.split(':')[1]!)),
      // every quoted 'part.key' in app.js (t(), setText(), ternaries choosing a key)
      ...[...js.matchAll(/'([a-z]+(?:\.[A-Za-z0-9_]+)+)'/g)].map((m) => m[1]!).filter((k) => parts.has(k.split('.')[0]!)),
      'ahead', // t('ahead', { count }): ahead.one / ahead.other
    ];
    expect(named.length).toBeGreaterThan(60);
    expect(named.filter((k) => !known(k))).toEqual([]);
    // keys made from a code: every state, reason and error code the page knows
    for (const s of ['idle', 'waiting', 'paused', 'ready', 'admitted', 'expired', 'left', 'error']) expect(en).toHaveProperty([`status.${s}`]);
    for (const r of ['ready_timeout', 'liveness', 'unknown_token', 'other']) expect(en).toHaveProperty([`reason.${r}`]);
    for (const c of ['EVENT_CLOSED', 'EVENT_NOT_FOUND', 'SIGN_IN_REQUIRED', 'UNAUTHORIZED', 'FORBIDDEN', 'INVALID_REQUEST']) expect(en).toHaveProperty([`error.${c}`]);
  });
});

let site: ProductionSite;
beforeAll(async () => {
  site = await startProductionSite({ saleEvent: 'i18n-ready' });
}, 60_000);
afterAll(async () => {
  await site?.stop();
});

const text = async (page: Page, id: string): Promise<string> => ((await page.getByTestId(id).first().textContent()) ?? '').trim();
const byId = async (page: Page, id: string): Promise<string> => ((await page.locator(`#${id}`).textContent()) ?? '').trim();
const shot = (page: Page, name: string) => page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true });
const putEvent = (id: string, body: Record<string, unknown>) => site.putEvent(id, body);
const stats = async (id: string) => (await call(site.gw.url, 'GET', `/api/v1/admin/events/${id}/stats`, undefined, site.admin)).body;
const position = async (page: Page): Promise<number> => Number((await text(page, 'position')).replace(/[^0-9]/g, ''));
const htmlLang = (page: Page): Promise<string> => page.evaluate(() => document.documentElement.lang);
/** what people see in the state chip (its text is the state name for tooling) */
const chipLabel = (page: Page): Promise<string | undefined> => page.getByTestId('status').evaluate((el) => (el as HTMLElement).dataset.label);
/** the visible text of a view, as people read it */
const viewText = (page: Page, view: string): Promise<string> => page.locator(`#view-${view}`).evaluate((el) => (el as HTMLElement).innerText);

async function waitText(page: Page, id: string, pred: (t: string) => boolean, what: string, timeoutMs = 20_000): Promise<string> {
  return waitFor(what, async () => {
    const t = await text(page, id);
    return pred(t) ? t : undefined;
  }, timeoutMs, 100);
}

async function waitId(page: Page, id: string, pred: (t: string) => boolean, what: string, timeoutMs = 10_000): Promise<string> {
  return waitFor(what, async () => {
    const t = await byId(page, id);
    return pred(t) ? t : undefined;
  }, timeoutMs, 100);
}

/** people ahead in the line (anonymous places that never move on their own) */
async function crowdAhead(event: string, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const r = await call(site.gw.url, 'POST', '/api/v1/queue/join', { event_id: event });
    expect(r.status, r.text).toBe(202);
  }
}

/** An open line that hardly moves: one place is called at once (the bucket's one token), the next in 1000 s. */
const slowLine = { rate: 0.001, burst: 1, ready_window_sec: 120, state: 'open', access: 'anonymous' };

async function inLine(ctx: BrowserContext, event: string): Promise<Page> {
  const page = await ctx.newPage();
  await page.goto(`${site.gw.url}/?event=${event}`);
  await waitText(page, 'status', (t) => t === 'waiting' || t === 'paused', 'in line');
  await waitText(page, 'connection', (t) => t.toLowerCase().startsWith('live'), 'live');
  await waitFor('a position', async () => (await position(page)) > 0, 10_000, 100);
  return page;
}

describe('the page in English and Korean', () => {
  it('a browser in Korean (ko-KR) gets the page in Korean, and it fits a phone', async () => {
    await putEvent('i18n-ko', slowLine);
    await crowdAhead('i18n-ko', 3);
    const ctx = await site.browser.newContext({ locale: 'ko-KR', viewport: { width: 375, height: 740 }, isMobile: true });
    try {
      const page = await inLine(ctx, 'i18n-ko');
      expect(await htmlLang(page)).toBe('ko');
      expect(await page.locator('#lang').inputValue()).toBe('ko');
      expect(await text(page, 'status')).toBe('waiting'); // the state name stays for tooling
      expect(await chipLabel(page)).toBe('대기 중');
      expect(await byId(page, 'line-h')).toBe('대기열에 있어요');
      expect(await byId(page, 'position-label')).toBe('내 순서');
      const pos = await position(page);
      expect(pos).toBeGreaterThanOrEqual(3);
      expect(await byId(page, 'ahead')).toMatch(new RegExp(`^앞에 ${pos - 1}명이 기다리고 있어요`));
      const eta = await text(page, 'eta');
      expect(eta).toMatch(HANGUL);
      expect(eta).not.toMatch(/[A-Za-z]/);
      expect(await byId(page, 'eta-note')).toMatch(HANGUL);
      expect(await byId(page, 'conn-text')).toBe('실시간 연결됨');
      expect(await page.title()).toContain('대기실');
      // nothing of the line view is left in English
      const visible = await viewText(page, 'line');
      expect(visible).toMatch(HANGUL);
      expect(visible).not.toMatch(/[A-Za-z]{2,}/);
      expect(await page.getByTestId('notice').isHidden()).toBe(true);
      expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(375); // no horizontal scrolling
      await shot(page, 'i18n-ko-line');
    } finally {
      await ctx.close();
    }
  }, 60_000);

  it('a browser in English (en-US) gets the page in English', async () => {
    await putEvent('i18n-en', slowLine);
    await crowdAhead('i18n-en', 3);
    const ctx = await site.browser.newContext({ locale: 'en-US' });
    try {
      const page = await inLine(ctx, 'i18n-en');
      expect(await htmlLang(page)).toBe('en');
      expect(await page.locator('#lang').inputValue()).toBe('en');
      expect(await chipLabel(page)).toBe('Waiting');
      expect(await byId(page, 'line-h')).toBe("You're in line");
      const pos = await position(page);
      expect(await byId(page, 'ahead')).toMatch(new RegExp(`^${pos - 1} people waiting ahead of you`));
      expect(await text(page, 'eta')).toMatch(/^(about|under|less than) /);
      expect(await byId(page, 'conn-text')).toBe('Live');
      expect(await viewText(page, 'line')).not.toMatch(HANGUL);
      await shot(page, 'i18n-en-line');
    } finally {
      await ctx.close();
    }
  }, 60_000);

  it('the switcher changes the language live, keeps the place, and the choice outlasts a reload', async () => {
    await putEvent('i18n-switch', { ...slowLine, state: 'paused' });
    await crowdAhead('i18n-switch', 2);
    const ctx = await site.browser.newContext({ locale: 'en-US' });
    try {
      const page = await inLine(ctx, 'i18n-switch');
      expect(await byId(page, 'line-h')).toBe('The sale is paused');
      const pos = await position(page);
      expect(pos).toBe(3);
      const place = await page.evaluate(() => localStorage.getItem('wr:i18n-switch'));
      expect(place).toBeTruthy();
      const before = (await stats('i18n-switch')).in_line;

      await page.locator('#lang').selectOption('ko');
      await waitFor('Korean', async () => (await htmlLang(page)) === 'ko', 5_000, 50);
      await waitId(page, 'line-h', (t) => t === '판매가 일시 중지되었어요', 'Korean heading');
      expect(await byId(page, 'ahead')).toBe('앞에 2명이 기다리고 있어요');
      expect(await text(page, 'eta')).toMatch(/^판매 재개 후 /);
      expect(await byId(page, 'paused-note')).toMatch(HANGUL);
      expect(await byId(page, 'conn-text')).toBe('실시간 연결됨');
      expect(await chipLabel(page)).toBe('일시 중지');
      expect(await viewText(page, 'line')).not.toMatch(/[A-Za-z]{2,}/);
      expect(await page.evaluate(() => localStorage.getItem('wr:lang'))).toBe('ko');
      // the same place: same position, same token, nobody new in line
      expect(await position(page)).toBe(pos);
      expect(await text(page, 'connection')).toMatch(/^live/);
      expect(await page.evaluate(() => localStorage.getItem('wr:i18n-switch'))).toBe(place);
      expect((await stats('i18n-switch')).in_line).toBe(before);
      await shot(page, 'i18n-switched-ko');

      // the reader's choice wins over the browser's language, after a reload too
      await page.reload();
      await waitText(page, 'connection', (t) => t.toLowerCase().startsWith('live'), 'live after reload');
      await waitId(page, 'line-h', (t) => t === '판매가 일시 중지되었어요', 'Korean after reload');
      expect(await htmlLang(page)).toBe('ko');
      expect(await position(page)).toBe(pos);
      expect((await stats('i18n-switch')).in_line).toBe(before);

      await page.locator('#lang').selectOption('en');
      await waitId(page, 'line-h', (t) => t === 'The sale is paused', 'English again');
      expect(await htmlLang(page)).toBe('en');
      expect(await byId(page, 'ahead')).toBe('2 people waiting ahead of you');
      expect(await position(page)).toBe(pos);
    } finally {
      await ctx.close();
    }
  }, 60_000);

  it('the ready view: the countdown keeps running inside the translated sentence, and Enter works in Korean', async () => {
    await putEvent('i18n-ready', { rate: 5, burst: 1, ready_window_sec: 60, state: 'open', access: 'anonymous' });
    const ctx = await site.browser.newContext({ locale: 'en-GB' });
    try {
      const page = await ctx.newPage();
      await page.goto(`${site.gw.url}/?event=i18n-ready`);
      await waitText(page, 'status', (t) => t === 'ready', 'ready');
      expect(await byId(page, 'countdown-line')).toMatch(/^You have \d:\d\d to enter\.$/);
      await page.locator('#lang').selectOption('ko');
      await waitId(page, 'ready-h', (t) => t === '내 차례예요', 'Korean ready view');
      expect(await byId(page, 'countdown-line')).toMatch(/^입장까지 \d:\d\d 남았어요\.$/);
      const first = await byId(page, 'countdown');
      await waitId(page, 'countdown', (t) => t !== first, 'the countdown ticks', 5_000);
      expect(await text(page, 'enter')).toBe('입장하기');
      await shot(page, 'i18n-ko-ready');
      await page.getByTestId('enter').click();
      await waitText(page, 'status', (t) => t === 'admitted', 'admitted');
      expect(await byId(page, 'admitted-h')).toBe('대기열을 통과했어요');
      expect(await byId(page, 'admitted-text')).toMatch(HANGUL);
      expect(await byId(page, 'admitted-expiry')).toMatch(/까지 유효해요/);
      expect(await chipLabel(page)).toBe('입장 완료');
      await shot(page, 'i18n-ko-admitted');
    } finally {
      await ctx.close();
    }
  }, 60_000);

  it('the pick form and its error are in Korean too', async () => {
    const ctx = await site.browser.newContext({ locale: 'ko-KR' });
    try {
      const page = await ctx.newPage();
      await page.goto(`${site.gw.url}/?event=${encodeURIComponent('not valid!')}`);
      await waitId(page, 'pick-h', (t) => t === '대기열에 참여하기', 'Korean pick view');
      expect(await byId(page, 'pick-error')).toMatch(/^올바르지 않은 이벤트 ID예요/);
      expect(await page.locator('#pick-form button').textContent()).toBe('줄 서기');
      await page.locator('#lang').selectOption('en');
      await waitId(page, 'pick-error', (t) => t.startsWith('That event id is not valid'), 'English error');
      expect(await byId(page, 'pick-h')).toBe('Join a waiting room');
    } finally {
      await ctx.close();
    }
  }, 30_000);

  it("shows the operator's message in the page's language, and hides it when removed", async () => {
    await putEvent('i18n-notice', { ...slowLine, state: 'paused' });
    const set = await putEvent('i18n-notice', { message: { en: 'Sales open at 10:00.', ko: '10시에 판매가 시작돼요.' } });
    expect(set.status).toBe(200);
    const ctx = await site.browser.newContext({ locale: 'ko-KR' });
    try {
      const page = await inLine(ctx, 'i18n-notice');
      const notice = page.getByTestId('notice');
      await waitFor('the message', async () => (await notice.isVisible()) && (await byId(page, 'notice-text')) === '10시에 판매가 시작돼요.', 10_000, 100);
      expect(await byId(page, 'notice-label')).toBe('주최 측 안내');
      expect(await page.locator('#notice-text').getAttribute('lang')).toBe('ko');
      await page.locator('#lang').selectOption('en');
      await waitId(page, 'notice-text', (s) => s === 'Sales open at 10:00.', 'the English message');
      expect(await byId(page, 'notice-label')).toBe('Message from the organiser');
      // only English: shown to every reader
      await putEvent('i18n-notice', { message: { en: 'Doors at 11:00.' } });
      await page.locator('#lang').selectOption('ko');
      await waitId(page, 'notice-text', (s) => s === 'Doors at 11:00.', 'the English fallback');
      await putEvent('i18n-notice', { message: null });
      await waitFor('no message', async () => await notice.isHidden(), 10_000, 100);
    } finally {
      await ctx.close();
    }
  }, 60_000);
});
