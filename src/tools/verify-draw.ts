// npm run verify-draw -- <base-url> <event> [--positions <file.json>] [--commitment <hex>]
//
// Recomputes a pre-queue draw from what the gateway published (docs/FAIRNESS.md)
// and checks it: the seed matches the commitment made before the pre-queue
// opened, the entrant list matches its digest, every entrant's key is
// SHA-1(seed ":" receipt) and the list is in key order, and (with
// --positions, a JSON object receipt -> position as clients saw it at the
// start, or an array of {receipt, position}) that everyone was given the
// place the draw says. --commitment checks the commitment against one
// recorded before the start. Exit status 0 when everything holds, 1 if not,
// 2 for a usage or network error.
import { readFileSync } from 'node:fs';
import { commitmentOf, DRAW_ALGORITHM, drawKey, entrantsDigest } from '../queue/draw.js';

export interface DrawPublished {
  event_id: string;
  algorithm: string;
  status: 'committed' | 'drawn';
  commitment: string;
  seed: string | null;
  entrants: number;
  entrants_digest: string | null;
}

export interface Entrant {
  position: number;
  receipt: string;
  key: number;
}

export interface Verdict {
  ok: boolean;
  entrants: number;
  /** groups of entrants with equal keys: their order among themselves is the gateway's (by waiting token) */
  ties: number;
  problems: string[];
}

/** The checks, on data already fetched (the tests call this directly). */
export function verifyDraw(draw: DrawPublished, list: readonly Entrant[], observed?: ReadonlyMap<string, number>, recordedCommitment?: string): Verdict {
  const problems: string[] = [];
  const fail = (p: string): void => {
    if (problems.length < 50) problems.push(p);
  };
  if (draw.algorithm !== DRAW_ALGORITHM) fail(`algorithm ${draw.algorithm}: this verifier knows ${DRAW_ALGORITHM}`);
  if (draw.status !== 'drawn' || !draw.seed) return { ok: false, entrants: 0, ties: 0, problems: ['not drawn yet: the seed is published at the start'] };
  if (!/^[0-9a-f]{64}$/.test(draw.seed)) fail('the seed is not 64 hex characters');
  if (commitmentOf(draw.seed) !== draw.commitment) fail(`SHA-256(seed) = ${commitmentOf(draw.seed)}, but the commitment is ${draw.commitment}`);
  if (recordedCommitment && recordedCommitment !== draw.commitment) fail(`the commitment changed: recorded ${recordedCommitment}, published ${draw.commitment}`);
  if (list.length !== draw.entrants) fail(`the list has ${list.length} entrants, the draw says ${draw.entrants}`);
  const digest = entrantsDigest(list.map((e) => e.receipt));
  if (draw.entrants_digest !== digest) fail(`the entrant list's digest is ${digest}, published ${draw.entrants_digest}`);
  const seen = new Set<string>();
  let ties = 0;
  // position of each receipt, and the range of positions its key's tie group spans
  const group = new Map<string, [number, number]>();
  let groupStart = 0;
  list.forEach((e, i) => {
    if (e.position !== i + 1) fail(`entry ${i} has position ${e.position}, expected ${i + 1}`);
    if (seen.has(e.receipt)) fail(`receipt ${e.receipt} appears twice`);
    seen.add(e.receipt);
    const key = drawKey(draw.seed!, e.receipt);
    if (key !== e.key) fail(`receipt ${e.receipt}: key ${e.key} published, SHA-1(seed:receipt) gives ${key}`);
    if (i > 0) {
      const prev = list[i - 1]!;
      if (prev.key > e.key) fail(`positions ${i} and ${i + 1} are out of key order`);
      if (prev.key === e.key) {
        if (groupStart === i - 1) ties++;
      } else groupStart = i;
    }
    group.set(e.receipt, [groupStart + 1, i + 1]);
  });
  // widen each tie group's range to its end
  for (let i = list.length - 1, end = list.length; i >= 0; i--) {
    const e = list[i]!;
    if (i < list.length - 1 && list[i + 1]!.key !== e.key) end = i + 1;
    const g = group.get(e.receipt)!;
    group.set(e.receipt, [g[0], end]);
  }
  if (observed) {
    for (const [receipt, pos] of observed) {
      const g = group.get(receipt);
      if (!g) fail(`receipt ${receipt} (observed at position ${pos}) is not in the entrant list`);
      else if (pos < g[0] || pos > g[1]) fail(`receipt ${receipt} was given position ${pos}; the draw places it at ${g[0] === g[1] ? g[0] : `${g[0]}-${g[1]} (tied)`}`);
    }
  }
  return { ok: problems.length === 0, entrants: list.length, ties, problems };
}

/** Everything the gateway publishes about one draw. */
export async function fetchDraw(baseUrl: string, eventId: string): Promise<{ draw: DrawPublished; list: Entrant[] }> {
  const base = baseUrl.replace(/\/+$/, '');
  const get = async <T>(path: string): Promise<T> => {
    const r = await fetch(`${base}${path}`);
    if (!r.ok) throw new Error(`GET ${path}: ${r.status} ${await r.text()}`);
    return (await r.json()) as T;
  };
  const id = encodeURIComponent(eventId);
  const draw = await get<DrawPublished>(`/api/v1/events/${id}/draw`);
  const list: Entrant[] = [];
  if (draw.status === 'drawn') {
    while (list.length < draw.entrants) {
      const page = await get<{ entrants: Entrant[] }>(`/api/v1/events/${id}/draw/entrants?offset=${list.length}&limit=10000`);
      if (page.entrants.length === 0) break;
      list.push(...page.entrants);
    }
  }
  return { draw, list };
}

function readObserved(file: string): Map<string, number> {
  const v = JSON.parse(readFileSync(file, 'utf8')) as unknown;
  const out = new Map<string, number>();
  if (Array.isArray(v)) for (const x of v as Array<{ receipt: string; position: number }>) out.set(x.receipt, x.position);
  else for (const [k, p] of Object.entries(v as Record<string, number>)) out.set(k, p);
  return out;
}

async function main(argv: string[]): Promise<number> {
  const args = [...argv];
  const opt = (name: string): string | undefined => {
    const i = args.indexOf(name);
    if (i < 0) return undefined;
    const v = args[i + 1];
    args.splice(i, 2);
    return v;
  };
  const positions = opt('--positions');
  const commitment = opt('--commitment');
  const [base, eventId] = args;
  if (!base || !eventId) {
    console.error('usage: npm run verify-draw -- <base-url> <event> [--positions <file.json>] [--commitment <hex>]');
    return 2;
  }
  let fetched: Awaited<ReturnType<typeof fetchDraw>>;
  try {
    fetched = await fetchDraw(base, eventId);
  } catch (err) {
    console.error(`verify-draw: ${(err as Error).message}`);
    return 2;
  }
  const v = verifyDraw(fetched.draw, fetched.list, positions ? readObserved(positions) : undefined, commitment);
  console.log(`event ${eventId}: ${v.entrants} entrants, commitment ${fetched.draw.commitment}`);
  if (v.ties) console.log(`${v.ties} group(s) of entrants with equal keys: their order among themselves is not checked`);
  for (const p of v.problems) console.log(`FAIL ${p}`);
  console.log(v.ok ? 'OK: the order is the one the committed seed gives' : 'the draw does NOT verify');
  return v.ok ? 0 : 1;
}

if (process.argv[1] && /verify-draw\.js$/.test(process.argv[1])) {
  main(process.argv.slice(2)).then((code) => process.exit(code));
}
