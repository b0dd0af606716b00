import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import type { BrowserContext, Locator, Page } from 'playwright-core';
import { call, waitFor } from './helpers/harness.js';
import { SCREENSHOTS } from './helpers/browser.js';
import { startProductionSite, type ProductionSite } from './helpers/production-site.js';

// The operator page (/admin) in headless Chromium against a real gateway and
// Redis configured as an operator deploys it (NODE_ENV=production, user JWTs
// checked against JWT_SECRET, no development tokens, an ADMIN_TOKEN): the
// operator signs in with the token, creates a scheduled sale with the form in
// their own time zone (Asia/Seoul here, so the conversion to RFC 3339 is
// visible), watches it go scheduled -> prequeue -> open with the draw's
// commitment and then its seed, entrants and digest, ends it (sold_out) and
// deletes it, the page explaining the 409 about a ready user and offering
// force; and sets up admission control from the form (adaptive outflow, a cap
// on active sessions, a proof-of-work challenge), watches the controller's
// decisions charted and changes the controls on the card. Every wait is on
// page content or the API, never a fixed sleep.
// Screenshots go to test-output/screenshots (not committed).

const TZ = 'Asia/Seoul'; // UTC+9 all year (no clock changes)
const TZ_OFFSET_MS = 9 * 3600_000;

let site: ProductionSite;
let adminToken: string;
beforeAll(async () => {
  // the adaptive controller looks every half second (the default 3 s would only slow the test)
  site = await startProductionSite({ saleEvent: 'admin-page-unused', env: { ADAPTIVE_INTERVAL_MS: '500' } });
  adminToken = site.admin.authorization.replace(/^Bearer /, '');
}, 60_000);
afterAll(async () => {
  await site?.stop();
});

const shot = (page: Page, name: string) => page.screenshot({ path: join(SCREENSHOTS, `admin-${name}.png`), fullPage: true });
const card = (page: Page, id: string): Locator => page.locator(`li.event[data-event-id="${id}"]`);
const inCard = (page: Page, id: string, testid: string): Locator => card(page, id).getByTestId(testid);
const textOf = async (l: Locator): Promise<string> => ((await l.first().textContent()) ?? '').trim();

async function waitText(l: Locator, pred: (t: string) => boolean, what: string, timeoutMs = 15_000): Promise<string> {
  return waitFor(
    what,
    async () => {
      if ((await l.count()) === 0) return undefined;
      const t = await textOf(l);
      return pred(t) ? t : undefined;
    },
    timeoutMs,
    50,
  );
}

/** A datetime-local value for the instant `ms` in Asia/Seoul (whole seconds; ":00" seconds left out, as the input normalises them). */
function seoulInput(ms: number): string {
  const s = new Date(ms + TZ_OFFSET_MS).toISOString().slice(0, 19);
  return s.endsWith(':00') ? s.slice(0, 16) : s;
}

async function openPage(): Promise<{ ctx: BrowserContext; page: Page }> {
  const ctx = await site.browser.newContext({ timezoneId: TZ, locale: 'en-US' });
  const page = await ctx.newPage();
  const problems: string[] = [];
  page.on('pageerror', (e) => problems.push(String(e)));
  page.on('console', (m) => {
    if (m.type() === 'error' && !/the server responded with a status of 4\d\d/.test(m.text())) problems.push(m.text());
  });
  await page.goto(`${site.gw.url}/admin`);
  await page.locator('#admin-token').fill(adminToken);
  await page.locator('#login-form button[type="submit"]').click();
  await page.locator('#dash').waitFor({ state: 'visible' });
  await waitText(page.getByTestId('feed'), (t) => t.startsWith('live'), 'feed live');
  Object.assign(page, { problems });
  return { ctx, page };
}

const problemsOf = (page: Page): string[] => (page as unknown as { problems: string[] }).problems;
const adminGet = (id: string) => call(site.gw.url, 'GET', `/api/v1/admin/events/${id}`, undefined, site.admin);

describe('operator page', () => {
  it('creates a scheduled sale from the form, follows scheduled -> prequeue -> open and the draw, ends it (sold_out) and deletes it', async () => {
    const { ctx, page } = await openPage();
    try {
      const id = 'adm-sale';
      // whole seconds (the inputs take seconds): the pre-queue opens ~2 s from now, the sale starts 2 s later
      const opens = Math.ceil(Date.now() / 1000) * 1000 + 2000;
      const starts = opens + 2000;
      await page.locator('#new-id').fill(id);
      await page.locator('#new-rate').fill('5');
      await page.locator('#new-burst').fill('5');
      await page.locator('#new-access').selectOption('user');
      await page.locator('#new-prequeue').fill(seoulInput(opens));
      await page.locator('#new-starts').fill(seoulInput(starts));
      // read back in the operator's zone, with the offset that will be sent
      expect(await textOf(page.locator('#new-starts-out'))).toContain('+09:00');
      expect(await textOf(page.locator('#new-starts-out'))).toMatch(/GMT\+9/);
      expect(await page.locator('#new-state').isDisabled()).toBe(true); // the schedule sets the state
      await page.locator('#new-submit').click();

      // scheduled at once (the PUT's answer), with the commitment published
      await waitText(inCard(page, id, 'state'), (t) => t === 'scheduled', 'scheduled');
      expect(await textOf(page.getByTestId('new-event-ok'))).toContain('scheduled');
      const put = await adminGet(id);
      expect(put.status).toBe(200);
      // the local times became the right instants
      expect(put.body).toMatchObject({ state: 'scheduled', access: 'user', rate: 5, burst: 5, prequeue_opens_at: new Date(opens).toISOString(), starts_at: new Date(starts).toISOString(), ends_at: null });
      const d0 = await call(site.gw.url, 'GET', `/api/v1/events/${id}/draw`);
      expect(d0.body).toMatchObject({ status: 'committed', seed: null });
      expect(await textOf(inCard(page, id, 'commitment'))).toBe(d0.body.commitment);
      expect(d0.body.commitment).toBe(put.body.draw_commitment);
      expect(await card(page, id).locator('.f-starts').textContent()).toMatch(/GMT\+9/);
      expect(await textOf(inCard(page, id, 'access'))).toBe('user · 5');
      await waitText(inCard(page, id, 'next'), (t) => /^Pre-queue opens (in \d+ s|: due now)/.test(t), 'countdown to the pre-queue');
      await shot(page, 'scheduled');

      // a buyer joins the pre-queue as soon as it opens (a signed-in user: access "user", production JWT)
      await waitFor('pre-queue open', async () => (await call(site.gw.url, 'GET', `/api/v1/events/${id}`)).body.state === 'prequeue', 10_000, 50);
      const jwt = await site.userJwt('early-bird');
      const join = await call(site.gw.url, 'POST', '/api/v1/queue/join', { event_id: id }, { authorization: `Bearer ${jwt}` });
      expect(join.status, join.text).toBe(202);
      expect(join.body).toMatchObject({ status: 'prequeue' });

      await waitText(inCard(page, id, 'state'), (t) => t === 'prequeue', 'prequeue on the page', 10_000);
      expect(await textOf(inCard(page, id, 'next'))).toMatch(/^The draw and admissions start/);
      await shot(page, 'prequeue');

      await waitText(inCard(page, id, 'state'), (t) => t === 'open', 'open on the page', 15_000);
      expect(await textOf(inCard(page, id, 'history'))).toMatch(/scheduled .*→ prequeue .*→ open /);

      // after the draw: the seed, the entrants, the digest, the record's link and the verifier's command line
      const seed = await waitText(inCard(page, id, 'seed'), (t) => /^[0-9a-f]{64}$/.test(t), 'seed shown');
      const d1 = await call(site.gw.url, 'GET', `/api/v1/events/${id}/draw`);
      expect(d1.body).toMatchObject({ status: 'drawn', commitment: d0.body.commitment, seed, entrants: 1 });
      await waitText(inCard(page, id, 'digest'), (t) => t === d1.body.entrants_digest, 'digest shown');
      expect(await textOf(inCard(page, id, 'entrants'))).toBe('1 drawn');
      expect(await textOf(inCard(page, id, 'commitment'))).toBe(d0.body.commitment);
      expect(await inCard(page, id, 'draw-link').getAttribute('href')).toBe(`/api/v1/events/${id}/draw`);
      expect(await textOf(inCard(page, id, 'verify'))).toBe(`npm run verify-draw -- ${site.gw.url} ${id}`);

      // the buyer is called (rate 5): a ready user, who keeps the window when the sale ends
      await waitFor('buyer ready', async () => (await call(site.gw.url, 'GET', `/api/v1/queue/status?token=${encodeURIComponent(join.body.waiting_token as string)}`)).body.ready_for_entry === true, 10_000, 50);
      await waitText(inCard(page, id, 'ready'), (t) => t === '1', 'ready 1 on the page');
      await shot(page, 'open-drawn');

      // end the sale: reason sold_out, a confirmation step
      await card(page, id).locator('.end-panel > summary').click();
      await inCard(page, id, 'end-reason').selectOption('sold_out');
      await card(page, id).locator('.end-en').fill('Sold out. Thank you for waiting.');
      await inCard(page, id, 'end-ask').click();
      await card(page, id).locator('.end-confirm').waitFor({ state: 'visible' });
      expect(await textOf(card(page, id).locator('.end-confirm .confirm-text'))).toContain('sold_out');
      expect((await adminGet(id)).body.state).toBe('open'); // nothing happens before the confirmation
      await shot(page, 'end-confirm');
      await inCard(page, id, 'end-confirm').click();
      await waitText(inCard(page, id, 'state'), (t) => t === 'ended', 'ended on the page');
      const endedLine = await waitText(inCard(page, id, 'ended'), (t) => t.includes('sold_out'), 'the reason shown');
      expect(endedLine).toMatch(/^Ended .*GMT\+9.* · reason: sold_out/);
      const ended = await adminGet(id);
      expect(ended.body).toMatchObject({ state: 'ended', end_reason: 'sold_out', message: { en: 'Sold out. Thank you for waiting.' } });
      expect(await card(page, id).locator('.end-panel').isHidden()).toBe(true);
      expect(await card(page, id).locator('.sched-panel').isHidden()).toBe(true);
      await shot(page, 'ended');

      // delete: confirmed, then refused while the buyer still holds a window (409), then forced
      await inCard(page, id, 'delete-ask').click();
      await inCard(page, id, 'delete-confirm').click();
      const conflict = await waitText(inCard(page, id, 'delete-conflict'), (t) => t.length > 0, 'the 409 explained');
      expect(conflict).toMatch(/ready users still hold a window/);
      expect(conflict).toMatch(/delete anyway/i);
      expect((await adminGet(id)).status).toBe(200); // still there
      await shot(page, 'delete-conflict');
      await inCard(page, id, 'delete-force').click();
      await waitFor('card gone', async () => (await card(page, id).count()) === 0, 10_000, 50);
      expect(await textOf(page.getByTestId('dash-msg'))).toMatch(new RegExp(`^Deleted ${id} \\(\\d+ keys\\)`));
      expect((await call(site.gw.url, 'GET', `/api/v1/events/${id}`)).status).toBe(404);
      expect((await call(site.gw.url, 'GET', `/api/v1/events/${id}/draw`)).status).toBe(404);
      expect((await adminGet(id)).status).toBe(404);
      // and it stays gone once the feed has listed the events again
      const after = Date.now();
      await waitFor('a feed list after the deletion', async () => Number(await page.getByTestId('feed').getAttribute('data-listed-at')) > after + 100, 10_000, 50);
      expect(await card(page, id).count()).toBe(0);
      await shot(page, 'deleted');
      expect(problemsOf(page)).toEqual([]);
    } finally {
      await ctx.close();
    }
  }, 90_000);

  it('shows the contract error next to the form, refuses an existing id, and edits the end time of an open event', async () => {
    const { ctx, page } = await openPage();
    try {
      // the start before the pre-queue: the API's 400 names the field, the page shows it and marks the input
      const t0 = Math.ceil(Date.now() / 1000) * 1000 + 3600_000;
      await page.locator('#new-id').fill('adm-bad');
      await page.locator('#new-prequeue').fill(seoulInput(t0 + 60_000));
      await page.locator('#new-starts').fill(seoulInput(t0));
      await page.locator('#new-submit').click();
      const err = await waitText(page.getByTestId('new-event-error'), (t) => t.length > 0, 'the error');
      expect(err).toMatch(/^Not created: INVALID_REQUEST: prequeue_opens_at must not be after starts_at \(field\/reason: prequeue_opens_at/);
      expect(await page.locator('#new-prequeue').getAttribute('aria-invalid')).toBe('true');
      expect((await adminGet('adm-bad')).status).toBe(404);
      await shot(page, 'form-error');

      // an id that exists already: the "new" form does not overwrite it
      await site.putEvent('adm-exists', { rate: 2, state: 'paused' });
      await page.locator('#new-id').fill('adm-exists');
      await page.locator('#new-prequeue').fill('');
      await page.locator('#new-starts').fill('');
      await page.locator('#new-rate').fill('50');
      await page.locator('#new-submit').click();
      await waitText(page.getByTestId('new-event-error'), (t) => t.includes('exists already'), 'exists');
      expect((await adminGet('adm-exists')).body).toMatchObject({ rate: 2, state: 'paused' });

      // an event without a schedule, with an end time: no pre-queue/start editing, the end time can change
      const ends = Math.ceil(Date.now() / 1000) * 1000 + 2 * 3600_000;
      await page.locator('#new-id').fill('adm-open');
      await page.locator('#new-rate').fill('');
      await page.locator('#new-state').selectOption('paused');
      await page.locator('#new-ends').fill(seoulInput(ends));
      await page.locator('#new-submit').click();
      await waitText(inCard(page, 'adm-open', 'state'), (t) => t === 'paused', 'paused');
      expect((await adminGet('adm-open')).body).toMatchObject({ state: 'paused', ends_at: new Date(ends).toISOString(), starts_at: null, draw_commitment: null });
      await waitText(inCard(page, 'adm-open', 'next'), (t) => /^Ends by itself in 1 h 59 min|^Ends by itself in 2 h 00 min/.test(t), 'countdown to the end');
      expect(await inCard(page, 'adm-open', 'draw').isHidden()).toBe(true);
      await card(page, 'adm-open').locator('.sched-panel > summary').click();
      expect(await card(page, 'adm-open').locator('.s-starts').isHidden()).toBe(true);
      const later = ends + 3600_000;
      await card(page, 'adm-open').locator('.s-ends').fill(seoulInput(later));
      await card(page, 'adm-open').locator('.s-save').click();
      await waitText(inCard(page, 'adm-open', 'event-msg'), (t) => t === 'Schedule saved.', 'saved');
      expect((await adminGet('adm-open')).body).toMatchObject({ ends_at: new Date(later).toISOString(), state: 'paused' });
      await card(page, 'adm-open').locator('.s-clear-end').click();
      await waitText(inCard(page, 'adm-open', 'next'), (t) => t.includes('No end time set'), 'no end time');
      expect((await adminGet('adm-open')).body).toMatchObject({ ends_at: null });
      await shot(page, 'open-event');

      // end with a reason of the operator's own; a bad one is refused on the page
      await card(page, 'adm-open').locator('.end-panel > summary').click();
      await inCard(page, 'adm-open', 'end-reason').selectOption('other');
      await card(page, 'adm-open').locator('.end-other').fill('Not Valid!');
      await inCard(page, 'adm-open', 'end-ask').click();
      await waitText(card(page, 'adm-open').locator('.end-error'), (t) => t.includes('1–32 characters'), 'reason refused');
      expect(await card(page, 'adm-open').locator('.end-confirm').isHidden()).toBe(true);
      await card(page, 'adm-open').locator('.end-other').fill('postponed');
      await inCard(page, 'adm-open', 'end-ask').click();
      await inCard(page, 'adm-open', 'end-confirm').click();
      await waitText(inCard(page, 'adm-open', 'ended'), (t) => t.includes('reason: postponed'), 'ended postponed');
      // nobody ready: deleted at the first confirmation
      await inCard(page, 'adm-open', 'delete-ask').click();
      await inCard(page, 'adm-open', 'delete-confirm').click();
      await waitFor('card gone', async () => (await card(page, 'adm-open').count()) === 0, 10_000, 50);
      expect((await adminGet('adm-open')).status).toBe(404);
      expect(problemsOf(page)).toEqual([]);
    } finally {
      await ctx.close();
    }
  }, 60_000);

  it('sets adaptive outflow, a session cap and a proof-of-work challenge from the form, charts the decisions and changes them on the card', async () => {
    const { ctx, page } = await openPage();
    // nothing but the gateway: no chart library, no font, no request anywhere else
    const elsewhere: string[] = [];
    page.on('request', (r) => {
      if (!r.url().startsWith(`${site.gw.url}/`) && !r.url().startsWith('data:')) elsewhere.push(r.url());
    });
    const form = page.locator('#new-form');
    try {
      const id = 'adm-adaptive';
      await page.locator('#new-id').fill(id);
      await page.locator('#new-rate').fill('20');
      await page.locator('#new-access').selectOption('anonymous');
      expect(await form.locator('.a-floor').isHidden()).toBe(true); // shown once switched on
      await form.locator('.a-on').check();
      await form.locator('.a-floor').fill('50');
      await form.locator('.a-ceiling').fill('10');
      // the floor above the ceiling: said while typing, refused on the page (nothing sent)
      await waitText(form.locator('.a-out'), (t) => t.includes('is above the ceiling'), 'floor > ceiling shown');
      expect(await form.locator('.a-ceiling').getAttribute('aria-invalid')).toBe('true');
      await page.locator('#new-submit').click();
      const refusedText = await waitText(page.getByTestId('new-event-error'), (t) => t.length > 0, 'floor > ceiling refused');
      expect(refusedText).toMatch(/floor \(50\) must not be above the ceiling \(10\)/);
      expect(await form.locator('.a-floor').getAttribute('aria-invalid')).toBe('true');
      expect((await adminGet(id)).status).toBe(404);

      await form.locator('.a-floor').fill('2');
      await form.locator('.a-ceiling').fill('40');
      await form.locator('.a-p95').fill('250');
      await form.locator('.a-errors').fill('2.5');
      await waitText(form.locator('.a-out'), (t) => t.startsWith('The rate moves between 2 and 40 per second'), 'the policy read back');
      expect(await textOf(form.locator('.a-out'))).toContain('over 250 ms or more than 2.5 % of the calls fail');
      expect(await form.locator('.m-n').isHidden()).toBe(true);
      await form.locator('.m-on').check();
      await form.locator('.m-n').fill('150');
      expect(await form.locator('.c-diff').isHidden()).toBe(true);
      await form.locator('.c-kind').selectOption('pow');
      await form.locator('.c-diff').fill('12');
      await page.locator('#new-submit').click();
      await waitText(page.getByTestId('new-event-ok'), (t) => t.startsWith(`Created ${id}`), 'created');
      expect(await page.getByTestId('new-event-error').isHidden()).toBe(true);

      // exactly what the form said, and the form is back to its defaults
      const got = await adminGet(id);
      expect(got.status).toBe(200);
      expect(got.body.adaptive).toEqual({ floor: 2, ceiling: 40, p95_ms: 250, error_share: 0.025 });
      expect(got.body.max_active_sessions).toBe(150);
      expect(got.body.challenge).toEqual({ kind: 'pow', difficulty: 12 });
      expect(got.body).toMatchObject({ rate: 20, access: 'anonymous', state: 'open' });
      expect(await form.locator('.a-on').isChecked()).toBe(false);
      expect(await form.locator('.a-fields').isHidden()).toBe(true);
      expect(await form.locator('.c-kind').inputValue()).toBe('none');

      // the card: the cap with the sessions holding a slot (from the feed), the challenge
      await waitText(inCard(page, id, 'sessions'), (t) => t === '0 of 150', 'sessions on the card');
      expect(await textOf(inCard(page, id, 'challenge'))).toBe('proof of work · difficulty 12');
      const section = inCard(page, id, 'adaptive');
      await section.waitFor({ state: 'visible' });
      expect(await textOf(section.locator('.a-policy'))).toBe('2–40 per second · p95 ≤ 250 ms · errors ≤ 2.5 %');

      // the controller has run: its decision in words, a point on the chart, the ceiling and the floor drawn
      const reason = await waitText(inCard(page, id, 'adaptive-reason'), (t) => t.startsWith('Last decision: '), 'a decision shown');
      // nobody reserves anything in this test: no calls to judge, the rate holds
      expect(reason).toBe('Last decision: not enough calls to judge');
      expect(await textOf(inCard(page, id, 'adaptive-detail'))).toMatch(/rate 20 per second · no reservation calls in the window/);
      const chart = inCard(page, id, 'adaptive-chart');
      const points = await waitFor('a decision point on the chart', async () => {
        const n = Number(await chart.getAttribute('data-points'));
        return n >= 1 ? n : undefined;
      }, 10_000, 50);
      expect(await chart.locator('circle.pt').count()).toBe(1);
      expect(await chart.locator('path.series').count()).toBe(1);
      expect(await chart.locator('line.ref').count()).toBe(2);
      expect(await chart.locator('text.ref-label').allTextContents()).toEqual(['ceiling 40', 'floor 2']);
      expect(await chart.getAttribute('aria-label')).toMatch(/now 20 per second, between the floor 2 and the ceiling 40/);
      expect(await card(page, id).locator('[data-chart="adaptive-p95"] text.ref-label').allTextContents()).toEqual(['objective 250 ms']);
      expect(await card(page, id).locator('[data-chart="adaptive-errors"] text.ref-label').allTextContents()).toEqual(['objective 2.5 %']);
      const log = await call(site.gw.url, 'GET', `/api/v1/admin/events/${id}/adaptive`, undefined, site.admin);
      expect(log.status).toBe(200);
      const decisions = log.body.decisions as { rate: number; reason: string; calls: number }[];
      expect(decisions.length).toBeGreaterThanOrEqual(points);
      expect(decisions.every((d) => d.reason === 'no_data' && d.rate === 20 && d.calls === 0)).toBe(true);
      // polled: more decisions appear without a reload
      await waitFor('the chart follows the log', async () => (Number(await chart.getAttribute('data-points')) > points ? true : undefined), 10_000, 50);
      await shot(page, 'adaptive');

      // the card's controls hold the stored settings
      await card(page, id).locator('.ac-panel > summary').click();
      const ac = card(page, id).locator('.ac-form');
      expect(await ac.locator('.a-on').isChecked()).toBe(true);
      expect(await ac.locator('.a-ceiling').inputValue()).toBe('40');
      expect(await ac.locator('.a-errors').inputValue()).toBe('2.5');
      expect(await ac.locator('.m-n').inputValue()).toBe('150');
      expect(await ac.locator('.c-diff').inputValue()).toBe('12');

      // an external challenge needs a verifier this gateway does not have: the API's 400, shown and pointed at
      await ac.locator('.c-kind').selectOption('external');
      await ac.locator('.ac-save').click();
      const acErr = await waitText(inCard(page, id, 'ac-error'), (t) => t.length > 0, 'external refused');
      expect(acErr).toMatch(/^Not saved: INVALID_REQUEST: challenge kind external needs CHALLENGE_VERIFY_URL configured \(field\/reason: challenge/);
      expect(await ac.locator('.c-kind').getAttribute('aria-invalid')).toBe('true');
      expect((await adminGet(id)).body.challenge).toEqual({ kind: 'pow', difficulty: 12 });

      // proof of work at the gateway's default difficulty, no session cap, a higher ceiling
      await ac.locator('.c-kind').selectOption('pow');
      await ac.locator('.c-diff').fill('');
      await ac.locator('.m-on').uncheck();
      await ac.locator('.a-ceiling').fill('60');
      await ac.locator('.ac-save').click();
      await waitText(inCard(page, id, 'event-msg'), (t) => t.startsWith('Saved:'), 'saved');
      expect(await textOf(inCard(page, id, 'event-msg'))).toBe('Saved: adaptive outflow 2–60 per second; no cap on active sessions; join challenge: proof of work · difficulty 21.');
      const changed = await adminGet(id);
      expect(changed.body.adaptive).toEqual({ floor: 2, ceiling: 60, p95_ms: 250, error_share: 0.025 });
      expect(changed.body.max_active_sessions).toBeNull();
      expect(changed.body.challenge).toEqual({ kind: 'pow', difficulty: 21 }); // CHALLENGE_DEFAULT_DIFFICULTY
      await waitText(inCard(page, id, 'sessions'), (t) => t === 'no cap', 'no cap on the card');
      expect(await textOf(inCard(page, id, 'challenge'))).toBe('proof of work · difficulty 21');
      await waitFor('the new ceiling on the chart', async () => ((await chart.locator('text.ref-label').allTextContents()).includes('ceiling 60') ? true : undefined), 10_000, 50);
      await waitText(inCard(page, id, 'adaptive-reason'), (t) => t.startsWith('Last decision: '), 'decisions under the new policy');

      // saving again unchanged sends nothing
      await ac.locator('.ac-save').click();
      await waitText(inCard(page, id, 'ac-error'), (t) => t === 'Nothing changed.', 'nothing changed');

      // adaptive outflow off: the section goes, the rate stays where it was
      await ac.locator('.a-on').uncheck();
      await ac.locator('.ac-save').click();
      await waitText(inCard(page, id, 'event-msg'), (t) => t === 'Saved: adaptive outflow off.', 'adaptive off');
      expect((await adminGet(id)).body).toMatchObject({ adaptive: null, rate: 20, challenge: { kind: 'pow', difficulty: 21 } });
      await section.waitFor({ state: 'hidden' });
      expect(problemsOf(page)).toEqual([]);
      expect(elsewhere).toEqual([]);
    } finally {
      await ctx.close();
    }
  }, 60_000);
});
