import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { call, waitFor } from './helpers/harness.js';
import { SCREENSHOTS } from './helpers/browser.js';
import { startProductionSite, type ProductionSite } from './helpers/production-site.js';

// Real Chromium against a gateway configured as an operator deploys it
// (NODE_ENV=production, JWT_SECRET, no development tokens):
//  - with JavaScript disabled, the page's <noscript> leads to /wait, which
//    joins, shows the place and the ETA, refreshes itself, offers Enter when
//    ready, and lands on the ticket site (verified and redeemed once by the
//    connector); a signed-in user's JWT reaches it through a plain HTML form;
//  - the operator's message appears on an open page (JavaScript on) within a
//    second, in the page's language, and goes away when removed.

let site: ProductionSite;

beforeAll(async () => {
  site = await startProductionSite({
    saleEvent: 'nojs-anon',
    // the ticket site's no-JavaScript hand-over: a form that posts the user's JWT to the room
    routes: (app, s) =>
      app.get('/to-room', async (_req, res) => {
        const jwt = await s().userJwt('nojs-buyer');
        res
          .type('html')
          .send(
            `<!doctype html><title>Tickets</title><form method="post" action="${s().gw.url}/wait/join"><input type="hidden" name="event" value="nojs-user"><input type="hidden" name="access_token" value="${jwt}"><button type="submit" data-testid="to-room">Go to the waiting room</button></form>`,
          );
      }),
  });
}, 60_000);
afterAll(async () => {
  await site?.stop();
});

const putEvent = (id: string, body: Record<string, unknown>) => site.putEvent(id, body);
const shot = (page: Page, name: string) => page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true });
const state = async (page: Page): Promise<string> => (await page.getByTestId('wait-state').first().getAttribute('data-state').catch(() => null)) ?? '';

/** waits through the page's own reloads (meta refresh) for a state */
const waitState = (page: Page, want: string, timeoutMs = 30_000) =>
  waitFor(`wait page ${want}`, async () => ((await state(page)) === want ? want : undefined), timeoutMs, 200);

describe('without JavaScript', () => {
  it('the noscript link leads to /wait: join, place and ETA, refreshes itself, Enter when ready, lands on the ticket site', async () => {
    await putEvent('nojs-anon', { access: 'anonymous', rate: 1, burst: 1, ready_window_sec: 120, state: 'paused', target_url: `${site.originUrl}/sale` });
    // three people ahead, so the page has a place to show
    for (let i = 0; i < 3; i++) await call(site.gw.url, 'POST', '/api/v1/queue/join', { event_id: 'nojs-anon' });
    const ctx = await site.browser.newContext({ javaScriptEnabled: false, locale: 'en-US' });
    const page = await ctx.newPage();
    await page.goto(`${site.gw.url}/?event=nojs-anon`);
    await page.locator('noscript a[href^="/wait"]').first().click();
    expect(new URL(page.url()).pathname).toBe('/wait');
    // the page without an event asks for it
    await page.fill('#event-id', 'nojs-anon');
    await page.locator('form[action="/wait"] button').click();
    await page.getByTestId('wait-join').click();
    await waitState(page, 'waiting');
    const pos = await page.getByTestId('wait-position').getAttribute('data-position');
    expect(Number(pos)).toBe(4);
    expect(await page.getByTestId('wait-eta').textContent()).toMatch(/Estimated wait/);
    expect(await page.locator('meta[http-equiv="refresh"]').getAttribute('content')).toMatch(/^\d+$/);
    // the waiting token is in an HttpOnly cookie, never in the address
    expect(page.url()).not.toMatch(/token/);
    const cookie = (await ctx.cookies()).find((c) => c.name === 'wr_wait');
    expect(cookie?.httpOnly).toBe(true);
    await shot(page, 'nojs-waiting');
    // the line moves: the people ahead are let in and enter; the page reloads itself to ready
    await putEvent('nojs-anon', { state: 'open' });
    await waitState(page, 'ready', 40_000);
    await shot(page, 'nojs-ready');
    await page.getByTestId('wait-enter').click();
    await page.waitForURL(/\/sale\?admission_token=/, { timeout: 15_000 });
    expect(await page.getByTestId('sale').textContent()).toContain('Welcome to the sale');
    expect(site.redeemed.length).toBe(1);
    await ctx.close();
  }, 90_000);

  it('a signed-in user handed over by an HTML form (no script anywhere) joins an event with access "user"; without it the page says to sign in', async () => {
    await putEvent('nojs-user', { access: 'user', rate: 5, burst: 5, ready_window_sec: 120 });
    const ctx = await site.browser.newContext({ javaScriptEnabled: false, locale: 'en-US' });
    const page = await ctx.newPage();
    await page.goto(`${site.gw.url}/wait?event=nojs-user`);
    expect(await state(page)).toBe('sign-in');
    await page.goto(`${site.originUrl}/to-room`);
    await page.getByTestId('to-room').click();
    await waitState(page, 'ready', 20_000);
    await page.getByTestId('wait-enter').click();
    await waitState(page, 'admitted', 10_000);
    // the admission names the signed-in user
    const token = await page.locator('#admission-token').inputValue();
    const claims = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as { sub: string; evt: string };
    expect(claims).toMatchObject({ sub: 'nojs-buyer', evt: 'nojs-user' });
    await ctx.close();
  }, 60_000);

  it('a Korean browser gets the page in Korean', async () => {
    await putEvent('nojs-ko', { access: 'anonymous', rate: 0.01, burst: 1, state: 'paused' });
    const ctx = await site.browser.newContext({ javaScriptEnabled: false, locale: 'ko-KR' });
    const page = await ctx.newPage();
    await page.goto(`${site.gw.url}/wait?event=nojs-ko`);
    expect(await page.locator('html').getAttribute('lang')).toBe('ko');
    await page.getByTestId('wait-join').click();
    await waitState(page, 'waiting');
    expect(await page.getByTestId('wait-position').textContent()).toMatch(/[가-힣]/);
    await ctx.close();
  }, 30_000);
});

describe('operator message', () => {
  it('appears on an open page within a second, in the page language, and goes away when removed', async () => {
    await putEvent('msg-page', { access: 'anonymous', rate: 0.01, burst: 1, state: 'paused' });
    const ctx = await site.browser.newContext({ locale: 'ko-KR' });
    const page = await ctx.newPage();
    await page.goto(`${site.gw.url}/?event=msg-page`);
    await waitFor('in line', async () => ['paused', 'waiting'].includes(((await page.getByTestId('status').textContent()) ?? '').trim()), 20_000, 100);
    const notice = page.getByTestId('notice');
    expect(await notice.isVisible()).toBe(false);
    const sent = Date.now();
    await putEvent('msg-page', { message: { en: 'Sales open at 10:00.', ko: '10시에 판매가 시작돼요.' } });
    await notice.filter({ hasText: '10시에 판매가 시작돼요.' }).waitFor({ state: 'visible', timeout: 1000 });
    expect(Date.now() - sent).toBeLessThan(1000);
    await shot(page, 'operator-message-ko');
    await putEvent('msg-page', { message: null });
    await notice.waitFor({ state: 'hidden', timeout: 1000 });
    await ctx.close();
  }, 40_000);
});
