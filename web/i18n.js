// The page's languages: one flat JSON catalogue per language in /i18n/<lang>.json
// (web/i18n/README.md: key naming, placeholders, adding a language), the
// language chosen from the browser's languages unless the reader picked one
// with the switcher (kept in localStorage), and number, date and duration
// formatting with Intl in that language.
//
//   await initI18n();                      // picks, loads, translates [data-i18n]
//   t('ahead', { count: 3 })               // plural keys: ahead.one / ahead.other
//   formatDuration(5, 'minute')            // "5 min", "5분"
//   onLanguageChange(() => render());      // after the switcher changed it
//
// Static HTML carries data-i18n="key" (the element's text) and
// data-i18n-attr="aria-label:key title:other.key" (attributes); a child with
// data-i18n-slot="name" stands where the text says {name} and is kept as it is.

/** Languages with a catalogue in web/i18n/, in the switcher's order. */
export const SUPPORTED = ['en', 'ko'];
export const DEFAULT_LANG = 'en';
export const STORAGE_KEY = 'wr:lang';

const catalogues = new Map(); // lang -> Promise<object>
const loaded = new Map(); // lang -> object
const listeners = new Set();
let current = DEFAULT_LANG;
let currentLocale = DEFAULT_LANG;

const baseOf = (tag) => String(tag ?? '').toLowerCase().split(/[-_]/)[0] ?? '';

function browserLanguages() {
  const n = globalThis.navigator;
  if (!n) return [];
  return n.languages?.length ? [...n.languages] : n.language ? [n.language] : [];
}

/** The first of the browser's languages that we have (by its primary subtag), else English. */
export function detectLanguage(languages = browserLanguages()) {
  for (const tag of languages) {
    const base = baseOf(tag);
    if (SUPPORTED.includes(base)) return base;
  }
  return DEFAULT_LANG;
}

/** The switcher's choice, when the reader made one. */
export function storedLanguage() {
  try {
    const v = localStorage.getItem(STORAGE_KEY);
    return v && SUPPORTED.includes(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

/** The page's language ("en", "ko"). */
export function language() {
  return current;
}

/**
 * The locale for Intl: the browser's own tag when it is of the page's language
 * (en-GB keeps its 24-hour clock), else the language itself.
 */
export function locale() {
  return currentLocale;
}

function use(lang) {
  current = lang;
  currentLocale = browserLanguages().find((tag) => baseOf(tag) === lang && isValidLocale(tag)) ?? lang;
  document.documentElement.lang = lang;
}

function isValidLocale(tag) {
  try {
    return Intl.getCanonicalLocales(tag).length === 1;
  } catch {
    return false;
  }
}

function loadCatalogue(lang) {
  let p = catalogues.get(lang);
  if (!p) {
    p = fetch(`/i18n/${lang}.json`, { cache: 'no-cache' })
      .then((res) => {
        if (!res.ok) throw new Error(`catalogue ${lang}: HTTP ${res.status}`);
        return res.json();
      })
      .then((c) => {
        loaded.set(lang, c);
        return c;
      })
      .catch((err) => {
        catalogues.delete(lang); // try again next time
        throw err;
      });
    catalogues.set(lang, p);
  }
  return p;
}

// ---------------------------------------------------------------------------
// messages

function lookup(key) {
  const own = loaded.get(current);
  if (own && typeof own[key] === 'string') return own[key];
  const en = loaded.get(DEFAULT_LANG);
  if (en && typeof en[key] === 'string') return en[key];
  return undefined;
}

/** Whether a catalogue (or the English one) has this key. */
export function has(key) {
  return lookup(key) !== undefined;
}

const pluralRules = memo((loc) => new Intl.PluralRules(loc));

/** The catalogue's string for this key: with a numeric `count` and no plain key, `key.one` / `key.other` / ... by Intl.PluralRules. */
function resolve(key, params) {
  const plain = lookup(key);
  if (plain !== undefined || typeof params?.count !== 'number') return plain;
  const cat = pluralRules(locale()).select(params.count);
  return lookup(`${key}.${cat}`) ?? lookup(`${key}.other`);
}

function paramText(v) {
  if (typeof v === 'number') return formatNumber(v);
  if (v instanceof Date) return formatTime(v);
  return String(v);
}

/**
 * The text for `key` in the page's language (else English, else the key), with
 * `{name}` placeholders filled from `params` (numbers formatted for the locale).
 */
export function t(key, params) {
  const s = resolve(key, params);
  if (s === undefined) return key;
  return params ? s.replace(/\{([A-Za-z0-9_]+)\}/g, (m, name) => (name in params ? paramText(params[name]) : m)) : s;
}

// ---------------------------------------------------------------------------
// formatting

function memo(make) {
  const cache = new Map();
  return (...args) => {
    const k = JSON.stringify(args);
    let v = cache.get(k);
    if (!v) cache.set(k, (v = make(...args)));
    return v;
  };
}

const numberFormat = memo((loc, opts) => new Intl.NumberFormat(loc, opts));
const dateFormat = memo((loc, opts) => new Intl.DateTimeFormat(loc, opts));
const relativeFormat = memo((loc, opts) => new Intl.RelativeTimeFormat(loc, opts));

export function formatNumber(n, opts = {}) {
  return numberFormat(locale(), opts).format(n);
}

/** 0.4 -> "40%" */
export function formatPercent(fraction) {
  return numberFormat(locale(), { style: 'percent', maximumFractionDigits: 0 }).format(fraction);
}

/**
 * A duration in one unit: formatDuration(5, 'minute') -> "5 min" / "5분";
 * display 'long' for speech ("5 minutes").
 */
export function formatDuration(value, unit, display = 'short') {
  return numberFormat(locale(), { style: 'unit', unit, unitDisplay: display, maximumFractionDigits: 1 }).format(value);
}

/** A range in one unit: (4, 6, 'minute') -> "4–6 min" / "4~6분". */
export function formatDurationRange(lo, hi, unit, display = 'short') {
  const f = numberFormat(locale(), { style: 'unit', unit, unitDisplay: display, maximumFractionDigits: 1 });
  if (typeof f.formatRange === 'function') return f.formatRange(lo, hi);
  return `${f.format(lo)} – ${f.format(hi)}`;
}

/** A clock time: "3:05 PM", "오후 3:05", "15:05". */
export function formatTime(date, opts = { hour: 'numeric', minute: '2-digit' }) {
  return dateFormat(locale(), opts).format(date);
}

/** A date and time: "3 Dec 2026, 15:05", "2026. 12. 3. 오후 3:05". */
export function formatDateTime(date, opts = { dateStyle: 'medium', timeStyle: 'short' }) {
  return dateFormat(locale(), opts).format(date);
}

/** Relative to now: (5, 'minute') -> "in 5 minutes" / "5분 후"; (-1, 'minute') -> "1 minute ago". */
export function formatRelative(value, unit, opts = { numeric: 'auto' }) {
  return relativeFormat(locale(), opts).format(value, unit);
}

/**
 * Text by language code ({ en: '…', ko: '…', 'pt-BR': '…' }) in the page's
 * language, else English, else any. Returns { text, lang } or undefined.
 */
export function pickText(byLang) {
  if (typeof byLang === 'string') return byLang.trim() ? { text: byLang, lang: '' } : undefined;
  if (!byLang || typeof byLang !== 'object') return undefined;
  const entries = Object.entries(byLang).filter(([, v]) => typeof v === 'string' && v.trim() !== '');
  if (!entries.length) return undefined;
  const exact = (l) => entries.find(([k]) => k.toLowerCase() === l);
  const base = (l) => entries.find(([k]) => baseOf(k) === l);
  const hit = exact(locale().toLowerCase()) ?? exact(current) ?? base(current) ?? exact(DEFAULT_LANG) ?? base(DEFAULT_LANG) ?? entries[0];
  return { text: hit[1], lang: hit[0] };
}

// ---------------------------------------------------------------------------
// the document

function fill(el, text) {
  const slots = el.querySelectorAll('[data-i18n-slot]');
  if (!slots.length) {
    el.textContent = text;
    return;
  }
  const byName = new Map([...slots].map((s) => [s.dataset.i18nSlot, s]));
  const nodes = [];
  let last = 0;
  for (const m of text.matchAll(/\{([A-Za-z0-9_]+)\}/g)) {
    const slot = byName.get(m[1]);
    if (!slot) continue;
    if (m.index > last) nodes.push(document.createTextNode(text.slice(last, m.index)));
    nodes.push(slot);
    last = m.index + m[0].length;
  }
  if (last < text.length) nodes.push(document.createTextNode(text.slice(last)));
  el.replaceChildren(...nodes);
}

function paramsOf(el) {
  const raw = el.dataset.i18nParams;
  if (!raw) return undefined;
  try {
    return JSON.parse(raw);
  } catch {
    return undefined;
  }
}

/** Translate [data-i18n] and [data-i18n-attr] in `root` (keys the catalogues lack keep their text). */
export function translate(root = document) {
  const all = [...(root.querySelectorAll?.('[data-i18n], [data-i18n-attr]') ?? [])];
  if (root instanceof Element && (root.hasAttribute('data-i18n') || root.hasAttribute('data-i18n-attr'))) all.unshift(root);
  for (const el of all) {
    const params = paramsOf(el);
    const key = el.dataset.i18n;
    if (key && has(key)) fill(el, t(key, params));
    for (const pair of (el.dataset.i18nAttr ?? '').split(/[\s;]+/)) {
      const i = pair.indexOf(':');
      if (i <= 0) continue;
      const k = pair.slice(i + 1);
      if (has(k)) el.setAttribute(pair.slice(0, i), t(k, params));
    }
  }
}

/**
 * Give an element a catalogue text and remember the key (and params), so a
 * language switch translates it again: setText(el, 'ready.enter').
 */
export function setText(el, key, params) {
  el.dataset.i18n = key;
  if (params) el.dataset.i18nParams = JSON.stringify(params);
  else delete el.dataset.i18nParams;
  el.textContent = t(key, params);
}

/** Set a text that is composed in code (re-rendered on a switch): forgets any catalogue key the element had. */
export function setPlainText(el, text) {
  delete el.dataset.i18n;
  delete el.dataset.i18nParams;
  el.textContent = text;
}

/** Called with the new language after every switch (the static text is already translated). */
export function onLanguageChange(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

function syncSwitchers() {
  for (const s of document.querySelectorAll('[data-i18n-switcher]')) {
    if (s instanceof HTMLSelectElement) s.value = current;
    else if (s.dataset.lang) s.setAttribute('aria-pressed', String(s.dataset.lang === current));
  }
}

/**
 * Switch the page to `lang`: load its catalogue, set <html lang>, translate,
 * tell the listeners. persist: keep it as the reader's choice.
 */
export async function setLanguage(lang, { persist = true } = {}) {
  if (!SUPPORTED.includes(lang)) return current;
  if (persist) {
    try {
      localStorage.setItem(STORAGE_KEY, lang);
    } catch {
      // no storage: the choice lasts for this page load
    }
  }
  try {
    await Promise.all([loadCatalogue(DEFAULT_LANG), loadCatalogue(lang)]);
  } catch {
    if (!loaded.has(lang)) {
      syncSwitchers();
      return current; // stay in the language we have
    }
  }
  const changed = lang !== current;
  use(lang);
  translate(document);
  syncSwitchers();
  if (changed) for (const fn of listeners) fn(lang);
  return current;
}

/** Wire the switchers: a <select data-i18n-switcher>, or buttons with data-i18n-switcher data-lang="ko". */
function bindSwitchers() {
  for (const s of document.querySelectorAll('[data-i18n-switcher]')) {
    if (s instanceof HTMLSelectElement) s.addEventListener('change', () => void setLanguage(s.value));
    else s.addEventListener('click', () => void setLanguage(s.dataset.lang ?? DEFAULT_LANG));
  }
  // a choice made in another tab of this browser applies here too
  globalThis.addEventListener?.('storage', (e) => {
    if (e.key === STORAGE_KEY && e.newValue && SUPPORTED.includes(e.newValue) && e.newValue !== current) void setLanguage(e.newValue, { persist: false });
  });
}

/** Choose the language (the reader's choice, else the browser's), load it and translate the page. */
export async function initI18n() {
  bindSwitchers();
  const lang = storedLanguage() ?? detectLanguage();
  try {
    await Promise.all([loadCatalogue(DEFAULT_LANG), lang === DEFAULT_LANG ? undefined : loadCatalogue(lang)]);
  } catch {
    // a catalogue did not load: the page keeps what it has (the static HTML is English)
  }
  use(loaded.has(lang) ? lang : DEFAULT_LANG);
  translate(document);
  syncSwitchers();
  return current;
}
