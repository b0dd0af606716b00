import { Type } from '@sinclair/typebox';
import { route, type AnyRoute, type HttpRequest, type Reply } from './route.js';
import { AppError } from '../errors.js';
import type { Catalogues } from './i18n.js';
import type { UserAuth, Identity } from '../auth/user-auth.js';
import type { Notice } from '../queue/store.js';
import { tokenEvent } from '../queue/token.js';
import { EVENT_ID_PATTERN } from './schemas.js';
import type { Logger } from '../log.js';

// The waiting room without JavaScript: /wait, a server-rendered page that
// joins, shows the place and the ETA, reloads itself at poll_after_ms (each
// reload is a status poll, so it keeps the place alive like any poller) and
// offers Enter when ready. A scheduled sale: before its line opens the page
// says when (and reloads itself, offering the join once it is open); in the
// pre-queue it shows when places are drawn, that arriving early does not
// help, and the entry receipt; when the sale ended it says why, with the
// operator's message. A sale that asks for a join challenge (its join
// answers 428 CHALLENGE_REQUIRED) cannot be joined without script: the page
// says so and links to the page with JavaScript, which solves it. It is a thin HTML view over the queue routes'
// own handlers (join, status, enter, leave, the public event), called
// directly, so it has no rules of its own.
//
// The place is kept in an HttpOnly cookie (never in the address: a waiting
// token is a bearer credential), SameSite=Lax so another site cannot post
// forms with it. A ticket site whose users sign in hands the user's JWT over
// with a form field `access_token` posted to /wait/join (a plain HTML form
// works without JavaScript); it is kept the same way, for Enter.

const PLACE_COOKIE = 'wr_wait';
const USER_COOKIE = 'wr_user';
/** the page's policy: no script at all, styles and forms of this origin */
const WAIT_CSP = "default-src 'none'; style-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

export interface WaitPageDeps {
  /** the queue route table (routes-queue.ts): the page calls its handlers */
  queueRoutes: readonly AnyRoute[];
  auth: UserAuth;
  catalogues: Catalogues;
  log: Logger;
}

interface PublicEvent {
  event_id: string;
  state: string;
  access: 'user' | 'anonymous';
  target_url: string;
  message: Notice | null;
  prequeue_opens_at?: string | null;
  starts_at?: string | null;
  end_reason?: string;
  ended_at?: string | null;
}

interface Status {
  status: 'prequeue' | 'waiting' | 'ready' | 'admitted';
  event_state: string;
  position: number;
  being_let_in: number;
  eta_sec: number;
  eta_low: number;
  eta_high: number;
  ready_deadline?: string;
  ready_expires_in_sec?: number;
  poll_after_ms: number;
  message?: Notice | null;
  /** pre-queue: when places are drawn */
  starts_at?: string;
  receipt?: string;
}

/** What the page knows of an ended event (the 410 EVENT_ENDED answers, or the public event). */
interface Ending {
  reason: string;
  message: Notice | null | undefined;
  ended_at?: string | null;
}

const END_REASONS = ['sold_out', 'cancelled', 'ends_at'];

/** seconds from now to an RFC 3339 time (0 when past or unreadable) */
const secondsTo = (iso: string | null | undefined): number => {
  const t = iso ? Date.parse(iso) : NaN;
  return Number.isFinite(t) ? Math.max(0, Math.ceil((t - Date.now()) / 1000)) : 0;
};

const esc = (s: string): string => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function cookies(header: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of (header ?? '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0) out[part.slice(0, i).trim()] = decodeURIComponent(part.slice(i + 1).trim());
  }
  return out;
}

/** Secure unless the page is served to this machine (http://127.0.0.1 in development and tests). */
function cookie(req: HttpRequest, name: string, value: string, maxAgeSec: number): string {
  const host = req.headers.host ?? '';
  const local = /^(localhost|127\.[0-9.]+|\[::1\])(:\d+)?$/.test(host);
  return `${name}=${encodeURIComponent(value)}; Path=/wait; Max-Age=${maxAgeSec}; HttpOnly; SameSite=Lax${local ? '' : '; Secure'}`;
}

/**
 * Several Set-Cookie headers in one value: the edge writes a header's value
 * as is, so the line break starts the next header line (the values are ours:
 * names, encodeURIComponent'd values and fixed attributes, no line breaks).
 */
const setCookie = (all: readonly string[]): string => all.join('\r\nSet-Cookie: ');

export function waitRoutes(d: WaitPageDeps): AnyRoute[] {
  const handler = (operationId: string): AnyRoute['handler'] => {
    const r = d.queueRoutes.find((x) => x.operationId === operationId);
    if (!r) throw new Error(`the wait page needs the queue route ${operationId}`);
    return r.handler;
  };
  const getEvent = handler('getPublicEvent');
  const join = handler('joinQueue');
  const status = handler('queueStatus');
  const enter = handler('enterQueue');
  const leave = handler('leaveQueue');
  const call = async <T>(h: AnyRoute['handler'], req: HttpRequest, a: { body?: unknown; query?: unknown; params?: unknown; user?: Identity }): Promise<T> => {
    const r: Reply = await h({ req, body: a.body ?? {}, query: (a.query ?? {}) as Record<string, unknown>, params: (a.params ?? {}) as Record<string, unknown>, user: a.user });
    return r.body as T;
  };
  const cat = d.catalogues;

  /** the user a ticket site handed over, if any (verified like a bearer token) */
  const userOf = async (jwt: string | undefined): Promise<Identity | undefined> => {
    if (!jwt) return undefined;
    try {
      return await d.auth.identify(`Bearer ${jwt}`);
    } catch {
      return undefined;
    }
  };

  interface View {
    lang: string;
    eventId?: string;
    body: string;
    refreshSec?: number;
    /** a meta refresh to another address (the ticket site, after admission) */
    goTo?: string;
    notice?: Notice | null;
    status?: number;
    setCookies?: string[];
  }

  const page = (v: View): Reply => {
    const t = (k: string, p?: Record<string, string | number>) => cat.t(v.lang, k, p);
    const notice = v.notice ? (v.notice[v.lang] ?? v.notice.en ?? Object.values(v.notice)[0]) : undefined;
    const q = (lang: string) => `/wait?${v.eventId ? `event=${encodeURIComponent(v.eventId)}&` : ''}lang=${lang}`;
    const names: Record<string, string> = { en: 'English', ko: '한국어' };
    const switcher = cat.languages
      .map((l) => (l === v.lang ? `<strong lang="${l}">${esc(names[l] ?? l)}</strong>` : `<a href="${esc(q(l))}" lang="${l}" hreflang="${l}">${esc(names[l] ?? l)}</a>`))
      .join(' · ');
    const refresh = v.goTo ? `<meta http-equiv="refresh" content="0;url=${esc(v.goTo)}">` : v.refreshSec ? `<meta http-equiv="refresh" content="${v.refreshSec}">` : '';
    const html = `<!doctype html>
<html lang="${esc(v.lang)}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
${refresh}
<title>${esc(t('wait.title'))}</title>
<link rel="stylesheet" href="/styles.css">
</head>
<body>
<header class="top"><p class="brand">${esc(t('wait.title'))}</p>${v.eventId ? `<p class="event-name">${esc(v.eventId)}</p>` : ''}<nav class="lang-links" aria-label="${esc(t('wait.language'))}">${switcher}</nav></header>
<main class="page" id="main">
${notice ? `<p class="notice notice-operator" role="status" data-testid="notice"><strong>${esc(t('notice.label'))}:</strong> <span lang="${esc(v.notice?.[v.lang] ? v.lang : v.notice?.en ? 'en' : Object.keys(v.notice ?? {})[0] ?? v.lang)}">${esc(notice)}</span></p>` : ''}
${v.body}
</main>
</body>
</html>`;
    return {
      status: v.status ?? 200,
      body: html,
      contentType: 'text/html; charset=utf-8',
      headers: v.setCookies?.length ? { 'Set-Cookie': setCookie(v.setCookies) } : undefined,
    };
  };

  const duration = (lang: string, sec: number): string => {
    if (sec < 60) return cat.t(lang, 'wait.eta_soon');
    const min = Math.ceil(sec / 60);
    if (min < 90) return new Intl.NumberFormat(lang, { style: 'unit', unit: 'minute', unitDisplay: 'long' }).format(min);
    return new Intl.NumberFormat(lang, { style: 'unit', unit: 'hour', unitDisplay: 'long', maximumFractionDigits: 1 }).format(Math.round((min / 60) * 2) / 2);
  };

  /** A moment for a page without script (it cannot know the reader's time zone): date and time in UTC, saying so. */
  const utc = (lang: string, iso: string | null | undefined): string => {
    const d = iso ? new Date(iso) : undefined;
    if (!d || Number.isNaN(d.getTime())) return '–';
    return new Intl.DateTimeFormat(lang, { month: 'short', day: 'numeric', hour: 'numeric', minute: '2-digit', timeZone: 'UTC', timeZoneName: 'short' }).format(d);
  };

  /** The sale ended: why, in words, with the operator's message; nothing to refresh or join any more. */
  const endedPage = (req: HttpRequest, lang: string, eventId: string, e: Ending): Reply => {
    const t = (k: string, p?: Record<string, string | number>) => cat.t(lang, k, p);
    const reason = t(`end_reason.${END_REASONS.includes(e.reason) ? e.reason : 'other'}`);
    return page({
      lang,
      eventId,
      notice: e.message ?? null,
      status: 410,
      body: `<section class="view"><h1 data-testid="wait-state" data-state="ended" data-reason="${esc(e.reason)}">${esc(reason)}</h1><p>${esc(t('wait.ended'))}</p>${
        e.ended_at ? `<p class="help">${esc(t('ended.at', { time: utc(lang, e.ended_at) }))}</p>` : ''
      }<p><a href="/wait">${esc(t('wait.pick_title'))}</a></p></section>`,
      setCookies: [cookie(req, PLACE_COOKIE, '', 0)],
    });
  };
  const endingOf = (err: AppError, message?: Notice | null): Ending => {
    const x = (err.details ?? {}) as { reason?: unknown; message?: unknown; ended_at?: unknown };
    return {
      reason: typeof x.reason === 'string' ? x.reason : '',
      message: x.message && typeof x.message === 'object' ? (x.message as Notice) : message,
      ended_at: typeof x.ended_at === 'string' ? x.ended_at : null,
    };
  };

  /**
   * The line is not open yet: when it opens (and, with a pre-queue, what
   * happens at the start). Reloads itself, often enough to offer the join
   * soon after it opens, at most every minute while it is far off.
   */
  const notOpenPage = (lang: string, eventId: string, opensAt: string | null | undefined, startsAt: string | null | undefined, notice: Notice | null | undefined): Reply => {
    const t = (k: string, p?: Record<string, string | number>) => cat.t(lang, k, p);
    const toOpen = secondsTo(opensAt);
    const refreshSec = Math.max(3, Math.min(60, toOpen + 1));
    const prequeue = !!startsAt && !!opensAt && Date.parse(startsAt) > Date.parse(opensAt);
    return page({
      lang,
      eventId,
      notice,
      refreshSec,
      body: `<section class="view"><h1 data-testid="wait-state" data-state="scheduled">${esc(t('wait.not_open', { time: utc(lang, opensAt), duration: duration(lang, toOpen) }))}</h1>${
        prequeue ? `<p>${esc(t('wait.prequeue_intro', { time: utc(lang, startsAt) }))}</p>` : ''
      }<p class="help">${esc(t('wait.refresh', { seconds: refreshSec }))}</p></section>`,
    });
  };

  /**
   * The sale asks for a join challenge (a proof of work, or an external
   * verifier's check), which a page without script cannot meet: say so in
   * words, and where the page with JavaScript is (for proof of work it solves
   * the puzzle by itself; an external check comes from the ticket site).
   */
  const needsScriptPage = (lang: string, eventId: string, kind: string, notice: Notice | null | undefined): Reply => {
    const t = (k: string) => cat.t(lang, k);
    const external = kind === 'external';
    return page({
      lang,
      eventId,
      notice,
      status: 428,
      body: `<section class="view"><h1 data-testid="wait-state" data-state="needs-js" data-kind="${external ? 'external' : 'pow'}">${esc(t('wait.needs_js_title'))}</h1><p data-testid="wait-needs-js">${esc(
        t(external ? 'wait.needs_js_external' : 'wait.needs_js'),
      )}</p>${
        external ? '' : `<p><a class="button primary big" href="/?event=${encodeURIComponent(eventId)}" data-testid="wait-open-page">${esc(t('wait.open_page'))}</a></p>`
      }</section>`,
    });
  };

  const joinForm = (lang: string, eventId: string, label: string): string =>
    `<form method="post" action="/wait/join"><input type="hidden" name="event" value="${esc(eventId)}"><input type="hidden" name="lang" value="${esc(lang)}"><button type="submit" class="primary big" data-testid="wait-join">${esc(label)}</button></form>`;

  /** the answer for a place that is gone or unknown: say so and offer to join again */
  const gone = (lang: string, eventId: string, text: string, req: HttpRequest): Reply =>
    page({
      lang,
      eventId,
      body: `<section class="view"><h1 data-testid="wait-state" data-state="expired">${esc(text)}</h1>${joinForm(lang, eventId, cat.t(lang, 'wait.join_again'))}</section>`,
      setCookies: [cookie(req, PLACE_COOKIE, '', 0)],
    });

  const unavailable = (lang: string, eventId: string | undefined): Reply =>
    page({ lang, eventId, refreshSec: 5, status: 503, body: `<section class="view"><h1>${esc(cat.t(lang, 'wait.unavailable', { seconds: 5 }))}</h1></section>` });

  const errorPage = (lang: string, eventId: string | undefined, err: unknown, req?: HttpRequest, notice?: Notice | null): Reply => {
    if (err instanceof AppError && (err.code === 'REDIS_UNAVAILABLE' || err.status === 503)) return unavailable(lang, eventId);
    if (err instanceof AppError && eventId && err.code === 'EVENT_NOT_OPEN') {
      const x = (err.details ?? {}) as { opens_at?: string | null; starts_at?: string | null };
      return notOpenPage(lang, eventId, x.opens_at, x.starts_at, notice);
    }
    if (err instanceof AppError && eventId && req && err.code === 'EVENT_ENDED') return endedPage(req, lang, eventId, endingOf(err, notice));
    if (err instanceof AppError && eventId && err.code === 'CHALLENGE_REQUIRED') return needsScriptPage(lang, eventId, String((err.details as { kind?: unknown } | undefined)?.kind ?? 'pow'), notice);
    const text =
      err instanceof AppError
        ? err.code === 'EVENT_NOT_FOUND'
          ? cat.t(lang, 'wait.not_found', { event: eventId ?? '' })
          : err.code === 'EVENT_CLOSED'
            ? cat.t(lang, 'wait.closed')
            : err.code === 'UNAUTHORIZED' || err.code === 'FORBIDDEN'
              ? cat.t(lang, 'wait.sign_in')
              : cat.t(lang, 'wait.error', { message: err.message })
        : cat.t(lang, 'wait.error', { message: 'internal error' });
    if (!(err instanceof AppError)) d.log.error({ err }, 'wait page failed');
    return page({ lang, eventId, status: err instanceof AppError ? err.status : 500, body: `<section class="view"><h1 data-testid="wait-state" data-state="error">${esc(text)}</h1><p><a href="/wait">${esc(cat.t(lang, 'wait.pick_title'))}</a></p></section>` });
  };

  /** The page for a held place: waiting (refreshing), ready (Enter), or admitted. */
  const placePage = async (req: HttpRequest, lang: string, eventId: string, token: string): Promise<Reply> => {
    let s: Status;
    try {
      s = await call<Status>(status, req, { query: { token } });
    } catch (err) {
      // the sale ended while this place waited: why, and the operator's message
      if (err instanceof AppError && err.code === 'EVENT_ENDED') return endedPage(req, lang, eventId, endingOf(err, (await eventOf(req, eventId))?.message));
      if (err instanceof AppError && (err.code === 'TOKEN_EXPIRED' || err.code === 'TOKEN_NOT_FOUND' || err.code === 'ALREADY_ADMITTED')) {
        return gone(lang, eventId, cat.t(lang, err.code === 'TOKEN_EXPIRED' && (err.details as { reason?: string } | undefined)?.reason === 'left' ? 'wait.left' : 'wait.expired'), req);
      }
      throw err;
    }
    const t = (k: string, p?: Record<string, string | number>) => cat.t(lang, k, p);
    const notice = s.message === undefined ? (await eventOf(req, eventId))?.message : s.message;
    if (s.status === 'prequeue') {
      // no place before the draw: when it happens, that arriving early does not help, and the receipt
      const refreshSec = Math.max(3, Math.round(s.poll_after_ms / 1000));
      const receipt = s.receipt
        ? `<p class="receipt" data-testid="wait-receipt">${esc(t('wait.receipt', { receipt: s.receipt }))} <a href="/api/v1/events/${encodeURIComponent(eventId)}/draw">${esc(t('wait.check_draw'))}</a></p>`
        : '';
      return page({
        lang,
        eventId,
        notice,
        refreshSec,
        body: `<section class="view"><h1 data-testid="wait-state" data-state="prequeue">${esc(t('wait.prequeue'))}</h1>
<div class="card countdown-card"><p class="draw-rule" data-testid="wait-draw">${esc(t('wait.prequeue_draw', { time: utc(lang, s.starts_at) }))}</p><p>${esc(t('wait.prequeue_in', { duration: duration(lang, s.eta_sec) }))}</p></div>
${receipt}
<p class="help">${esc(t('wait.refresh', { seconds: refreshSec }))}</p>
<form method="post" action="/wait/leave"><input type="hidden" name="lang" value="${esc(lang)}"><button type="submit" class="quiet">${esc(t('wait.leave'))}</button></form></section>`,
      });
    }
    if (s.status === 'ready') {
      const left = s.ready_expires_in_sec ?? 0;
      const time = s.ready_deadline
        ? new Intl.DateTimeFormat(lang, { hour: 'numeric', minute: '2-digit', second: '2-digit', timeZone: 'UTC', timeZoneName: 'short' }).format(new Date(s.ready_deadline))
        : '';
      return page({
        lang,
        eventId,
        notice,
        // keep the place alive and the countdown honest while the user decides
        refreshSec: Math.max(5, Math.min(30, Math.floor(left / 4))),
        body: `<section class="view"><h1 data-testid="wait-state" data-state="ready">${esc(t('wait.ready', { time }))}</h1>
<form method="post" action="/wait/enter"><input type="hidden" name="lang" value="${esc(lang)}"><button type="submit" class="primary big" data-testid="wait-enter">${esc(t('wait.enter'))}</button></form></section>`,
      });
    }
    if (s.status === 'admitted') {
      return page({ lang, eventId, notice, body: `<section class="view"><h1 data-testid="wait-state" data-state="admitted">${esc(t('wait.admitted'))}</h1></section>` });
    }
    // at least 3 s: a page that reloads every second flickers, and the ready window is minutes
    const refreshSec = Math.max(3, Math.round(s.poll_after_ms / 1000));
    const ahead = s.being_let_in > 0 ? `<p class="ahead">${esc(cat.plural(lang, 'ahead.calling', s.being_let_in))}</p>` : '';
    const paused = s.event_state === 'paused' || s.event_state === 'closed' ? `<p class="notice notice-paused">${esc(t('wait.paused'))}</p>` : '';
    return page({
      lang,
      eventId,
      notice,
      refreshSec,
      body: `<section class="view"><h1 data-testid="wait-state" data-state="waiting">${esc(t('wait.in_line'))}</h1>${paused}
<div class="card position-card"><p class="position" data-testid="wait-position" data-position="${s.position}">${esc(t('wait.position', { position: new Intl.NumberFormat(lang).format(s.position) }))}</p>${ahead}</div>
<div class="card eta-card"><p class="eta" data-testid="wait-eta">${esc(t('wait.eta', { eta: duration(lang, s.eta_sec) }))}</p></div>
<p class="help">${esc(t('wait.refresh', { seconds: refreshSec }))}</p>
<form method="post" action="/wait/leave"><input type="hidden" name="lang" value="${esc(lang)}"><button type="submit" class="quiet">${esc(t('wait.leave'))}</button></form></section>`,
    });
  };

  const eventOf = async (req: HttpRequest, eventId: string): Promise<PublicEvent | undefined> => {
    try {
      return await call<PublicEvent>(getEvent, req, { params: { id: eventId } });
    } catch (err) {
      if (err instanceof AppError && err.code === 'EVENT_NOT_FOUND') return undefined;
      throw err;
    }
  };

  const LangQuery = Type.Object({
    event: Type.Optional(Type.String({ maxLength: 64 })),
    lang: Type.Optional(Type.String({ maxLength: 16 })),
  });
  const Form = Type.Object({
    event: Type.Optional(Type.String({ maxLength: 64 })),
    lang: Type.Optional(Type.String({ maxLength: 16 })),
    access_token: Type.Optional(Type.String({ maxLength: 8192 })),
  });
  const html = { 200: { description: 'The page.', contentType: 'text/html; charset=utf-8' } };
  const common = { tags: ['pages'], reads: ['cookie', 'accept-language', 'host'], headers: { 'Content-Security-Policy': WAIT_CSP, 'Cache-Control': 'no-store' } };
  const placeOf = (req: HttpRequest): string | undefined => {
    const t = cookies(req.headers.cookie)[PLACE_COOKIE];
    return t && tokenEvent(t) ? t : undefined;
  };
  const after = (lang: string, eventId: string): Reply => ({ status: 303, body: '', contentType: 'text/plain', headers: { Location: `/wait?event=${encodeURIComponent(eventId)}&lang=${encodeURIComponent(lang)}` } });
  const eventRe = new RegExp(EVENT_ID_PATTERN);
  /** A form that acts on the place this browser holds (its cookie); without one, back to /wait. */
  const placeForm = (o: { path: string; operationId: string; summary: string; act: (req: HttpRequest, lang: string, token: string, eventId: string) => Promise<Reply> }): AnyRoute =>
    route({
      method: 'POST',
      path: o.path,
      operationId: o.operationId,
      summary: o.summary,
      ...common,
      form: true,
      body: Form,
      responses: { ...html, 303: { description: 'No place held here: back to /wait.', contentType: 'text/plain' } },
      handler: ({ req, body }) => {
        const lang = cat.pick(req.headers['accept-language'], body.lang);
        const token = placeOf(req);
        const eventId = token ? tokenEvent(token) : undefined;
        return token && eventId ? o.act(req, lang, token, eventId) : after(lang, '');
      },
    });

  return [
    route({
      method: 'GET',
      path: '/wait',
      operationId: 'waitPage',
      summary: 'The waiting room without JavaScript (server-rendered, refreshes itself)',
      description: 'Joins with a button, shows the place and the ETA, reloads at poll_after_ms (each reload keeps the place alive) and offers Enter when ready. The place is kept in an HttpOnly cookie.',
      ...common,
      query: LangQuery,
      responses: html,
      handler: async ({ req, query }) => {
        const lang = cat.pick(req.headers['accept-language'], query.lang);
        const eventId = query.event && eventRe.test(query.event) ? query.event : undefined;
        try {
          if (!eventId) {
            return page({
              lang,
              body: `<section class="view"><h1>${esc(cat.t(lang, 'wait.pick_title'))}</h1><form method="get" action="/wait" class="stack"><label for="event-id">${esc(cat.t(lang, 'wait.event_label'))}</label>
<input id="event-id" name="event" type="text" required maxlength="64" pattern="[A-Za-z0-9_\\-]{1,64}" autocomplete="off"><input type="hidden" name="lang" value="${esc(lang)}"><button type="submit" class="primary">${esc(cat.t(lang, 'wait.next'))}</button></form></section>`,
            });
          }
          const held = placeOf(req);
          if (held && tokenEvent(held) === eventId) return await placePage(req, lang, eventId, held);
          const ev = await eventOf(req, eventId);
          if (!ev) throw new AppError('EVENT_NOT_FOUND');
          if (ev.state === 'ended') return endedPage(req, lang, eventId, { reason: ev.end_reason ?? '', message: ev.message, ended_at: ev.ended_at });
          if (ev.state === 'scheduled') return notOpenPage(lang, eventId, ev.prequeue_opens_at ?? ev.starts_at, ev.starts_at, ev.message);
          const signIn = ev.access === 'user' && d.auth.configured && !(await userOf(cookies(req.headers.cookie)[USER_COOKIE]));
          // in the pre-queue the join comes with what happens at the start
          const prequeue = ev.state === 'prequeue' ? `<p data-testid="wait-prequeue-intro">${esc(cat.t(lang, 'wait.prequeue_intro', { time: utc(lang, ev.starts_at) }))}</p>` : '';
          return page({
            lang,
            eventId,
            notice: ev.message,
            body: signIn
              ? `<section class="view"><h1 data-testid="wait-state" data-state="sign-in">${esc(cat.t(lang, 'wait.sign_in'))}</h1></section>`
              : `<section class="view"><h1>${esc(cat.t(lang, 'wait.join_title'))}</h1>${prequeue}${joinForm(lang, eventId, cat.t(lang, prequeue ? 'wait.join_prequeue' : 'wait.join'))}</section>`,
          });
        } catch (err) {
          return errorPage(lang, eventId, err);
        }
      },
    }),
    route({
      method: 'POST',
      path: '/wait/join',
      operationId: 'waitJoin',
      summary: 'The no-JavaScript page joins (an HTML form; a ticket site may post the user JWT as access_token)',
      ...common,
      form: true,
      body: Form,
      responses: { ...html, 303: { description: 'In line: back to /wait (the place in an HttpOnly cookie).', contentType: 'text/plain' } },
      handler: async ({ req, body }) => {
        const lang = cat.pick(req.headers['accept-language'], body.lang);
        const eventId = body.event && eventRe.test(body.event) ? body.event : undefined;
        if (!eventId) return after(lang, '');
        const jwt = body.access_token || cookies(req.headers.cookie)[USER_COOKIE];
        const user = await userOf(jwt);
        const setCookies: string[] = [];
        if (body.access_token && user) setCookies.push(cookie(req, USER_COOKIE, body.access_token, 3600));
        try {
          const held = placeOf(req);
          if (held && tokenEvent(held) === eventId) return after(lang, eventId);
          const ev = await eventOf(req, eventId);
          if (!ev) throw new AppError('EVENT_NOT_FOUND');
          if (ev.access === 'user' && d.auth.configured && !user) throw new AppError('UNAUTHORIZED');
          let token: string;
          try {
            token = (await call<{ waiting_token: string }>(join, req, { body: { event_id: eventId }, user })).waiting_token;
          } catch (err) {
            // the same user already holds a place: that one is theirs
            const existing = err instanceof AppError && err.code === 'DUPLICATE_REQUEST' ? (err.details as { waiting_token?: string } | undefined)?.waiting_token : undefined;
            if (!existing) throw err;
            token = existing;
          }
          setCookies.push(cookie(req, PLACE_COOKIE, token, 24 * 3600));
          d.log.info({ event_id: eventId }, 'wait page: joined without JavaScript');
          const r = after(lang, eventId);
          return { ...r, headers: { ...r.headers, 'Set-Cookie': setCookie(setCookies) } };
        } catch (err) {
          // not open yet, ended, or a challenge this page cannot solve: say when, why or what to do (with the operator's message)
          const notice =
            err instanceof AppError && (err.code === 'EVENT_NOT_OPEN' || err.code === 'EVENT_ENDED' || err.code === 'CHALLENGE_REQUIRED') ? (await eventOf(req, eventId).catch(() => undefined))?.message : undefined;
          return errorPage(lang, eventId, err, req, notice);
        }
      },
    }),
    placeForm({
      path: '/wait/enter',
      operationId: 'waitEnter',
      summary: 'The no-JavaScript page enters (then goes on to the event target_url, or shows the admission)',
      act: async (req, lang, token, eventId) => {
        try {
          const user = await userOf(cookies(req.headers.cookie)[USER_COOKIE]);
          const ev = await eventOf(req, eventId);
          const r = await call<{ reservation_token: string; ttl_sec: number }>(enter, req, { body: { waiting_token: token }, user });
          const t = (k: string) => cat.t(lang, k);
          if (ev?.target_url) {
            const u = new URL(ev.target_url);
            u.searchParams.set('admission_token', r.reservation_token);
            // a meta refresh, not a 303: the page's form-action policy allows only this origin
            return page({
              lang,
              eventId,
              goTo: u.toString(),
              body: `<section class="view"><h1 data-testid="wait-state" data-state="admitted">${esc(t('wait.admitted'))}</h1><p><a class="button primary big" href="${esc(u.toString())}" data-testid="wait-continue">${esc(t('wait.continue'))}</a></p></section>`,
              setCookies: [cookie(req, PLACE_COOKIE, '', 0)],
            });
          }
          return page({
            lang,
            eventId,
            body: `<section class="view"><h1 data-testid="wait-state" data-state="admitted">${esc(t('wait.admitted'))}</h1><label for="admission-token">${esc(t('wait.token_label'))}</label><textarea id="admission-token" readonly rows="4">${esc(r.reservation_token)}</textarea></section>`,
          });
        } catch (err) {
          if (err instanceof AppError && err.code === 'NOT_READY') return after(lang, eventId);
          if (err instanceof AppError && (err.code === 'TOKEN_EXPIRED' || err.code === 'TOKEN_NOT_FOUND' || err.code === 'ALREADY_ADMITTED')) return gone(lang, eventId, cat.t(lang, 'wait.expired'), req);
          return errorPage(lang, eventId, err);
        }
      },
    }),
    placeForm({
      path: '/wait/leave',
      operationId: 'waitLeave',
      summary: 'The no-JavaScript page leaves the line',
      act: async (req, lang, token, eventId) => {
        try {
          await call(leave, req, { query: { token } });
        } catch (err) {
          if (!(err instanceof AppError && (err.code === 'NOT_IN_LINE' || err.code === 'TOKEN_NOT_FOUND'))) return errorPage(lang, eventId, err);
        }
        return gone(lang, eventId, cat.t(lang, 'wait.left'), req);
      },
    }),
  ];
}
