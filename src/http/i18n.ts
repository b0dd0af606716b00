import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

// The page's catalogues (web/i18n/<lang>.json, one per language: the hosted
// page fetches them, the no-JavaScript page renders with them), read once at
// start-up. A key missing from a language falls back to English, and English
// must hold every key the server uses (SERVER_KEYS), or the gateway does not start.

export type Catalogue = Readonly<Record<string, string>>;

/** The keys the server-rendered page uses: English must have them all (checked at start-up: a page never shows a bare key). */
export const SERVER_KEYS = [
  'wait.title', 'wait.position', 'wait.eta', 'wait.refresh', 'wait.ready', 'wait.enter', 'wait.expired', 'wait.join_again', 'wait.admitted',
  'wait.continue', 'wait.language', 'wait.pick_title', 'wait.event_label', 'wait.next', 'wait.join_title', 'wait.join', 'wait.in_line',
  'wait.eta_soon', 'wait.paused', 'wait.leave', 'wait.left', 'wait.token_label', 'wait.sign_in', 'wait.closed', 'wait.not_found',
  'wait.unavailable', 'wait.error', 'notice.label', 'ahead.calling.one', 'ahead.calling.other',
  // scheduled sales, the pre-queue and the end (issue 16)
  'wait.not_open', 'wait.prequeue_intro', 'wait.join_prequeue', 'wait.prequeue', 'wait.prequeue_draw', 'wait.prequeue_in', 'wait.receipt',
  'wait.check_draw', 'wait.ended', 'ended.at', 'end_reason.sold_out', 'end_reason.cancelled', 'end_reason.ends_at', 'end_reason.other',
] as const;

export class Catalogues {
  private constructor(private readonly byLang: ReadonlyMap<string, Catalogue>) {}

  static load(dir: string): Catalogues {
    const m = new Map<string, Catalogue>();
    if (existsSync(dir)) {
      for (const f of readdirSync(dir)) {
        const lang = /^([a-z]{2,3}(?:-[A-Za-z0-9]{2,8})?)\.json$/.exec(f)?.[1];
        if (!lang) continue;
        const v = JSON.parse(readFileSync(join(dir, f), 'utf8')) as unknown;
        if (v && typeof v === 'object' && !Array.isArray(v)) m.set(lang, Object.fromEntries(Object.entries(v).filter(([, t]) => typeof t === 'string')) as Catalogue);
      }
    }
    const missing = SERVER_KEYS.filter((k) => m.get('en')?.[k] === undefined);
    if (missing.length) throw new Error(`${join(dir, 'en.json')} lacks ${missing.join(', ')}`);
    return new Catalogues(m);
  }

  get languages(): string[] {
    return [...new Set(['en', ...this.byLang.keys()])];
  }

  /** The language to answer in: an explicit choice, else the first of Accept-Language we have, else English. */
  pick(acceptLanguage: string | undefined, choice?: string): string {
    const have = this.languages;
    if (choice && have.includes(choice)) return choice;
    const wanted = (acceptLanguage ?? '')
      .split(',')
      .map((part) => {
        const [tag = '', ...params] = part.trim().split(';');
        const q = params.map((p) => /^\s*q=([0-9.]+)/.exec(p)?.[1]).find(Boolean);
        return { tag: tag.toLowerCase(), q: q === undefined ? 1 : Number(q) };
      })
      .filter((w) => w.tag && w.q > 0)
      .sort((a, b) => b.q - a.q);
    for (const w of wanted) {
      const exact = have.find((l) => l.toLowerCase() === w.tag);
      if (exact) return exact;
      const base = have.find((l) => l.toLowerCase() === w.tag.split('-')[0]);
      if (base) return base;
    }
    return 'en';
  }

  /** The text of `key` in `lang` with {name} placeholders filled. */
  t(lang: string, key: string, params: Readonly<Record<string, string | number>> = {}): string {
    const text = this.byLang.get(lang)?.[key] ?? this.byLang.get('en')?.[key] ?? key;
    return text.replace(/\{(\w+)\}/g, (m, name: string) => (params[name] !== undefined ? String(params[name]) : m));
  }

  /** A plural text: `key.<category>` by Intl.PluralRules for the language (web/i18n/README.md), `key.other` otherwise; {count} formatted. */
  plural(lang: string, key: string, count: number, params: Readonly<Record<string, string | number>> = {}): string {
    const category = new Intl.PluralRules(lang).select(count);
    const k = this.has(lang, `${key}.${category}`) || this.has('en', `${key}.${category}`) ? `${key}.${category}` : `${key}.other`;
    return this.t(lang, k, { ...params, count: new Intl.NumberFormat(lang).format(count) });
  }

  has(lang: string, key: string): boolean {
    return this.byLang.get(lang)?.[key] !== undefined;
  }
}
