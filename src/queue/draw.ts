import { createHash } from 'node:crypto';

// The pre-queue draw, `wr-draw-v1` (docs/FAIRNESS.md), as the gateway and the
// verifier compute it; the Lua side is lua/includes/draw.lua. Both must
// agree byte for byte: test/draw.test.ts checks them against each other.

export const DRAW_ALGORITHM = 'wr-draw-v1';

/** A place's entry receipt: public, derived from the secret waiting token, so an entrant can find their line in the entrant list. */
export function receiptOf(waitingToken: string): string {
  return createHash('sha1').update(`receipt:${waitingToken}`).digest('hex').slice(0, 20);
}

/** The draw key of one entrant: places are given in ascending key order. An integer below 2^52 (exact as a double). */
export function drawKey(seed: string, receipt: string): number {
  return parseInt(createHash('sha1').update(`${seed}:${receipt}`).digest('hex').slice(0, 13), 16);
}

/** The commitment published before the pre-queue opens: SHA-256 of the seed (its hex text), hex. */
export function commitmentOf(seed: string): string {
  return createHash('sha256').update(seed).digest('hex');
}

/** The entrant list's digest: SHA-256 of the receipts sorted in byte order, each followed by "\n". */
export function entrantsDigest(receipts: Iterable<string>): string {
  const sorted = [...receipts].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const h = createHash('sha256');
  for (const r of sorted) h.update(`${r}\n`);
  return h.digest('hex');
}

/** The order the draw gives a set of receipts: ascending key; entrants with equal keys (about 1 in 10^5 draws of 300,000) are tied. */
export function drawOrder(seed: string, receipts: readonly string[]): Array<{ receipt: string; key: number }> {
  return receipts.map((receipt) => ({ receipt, key: drawKey(seed, receipt) })).sort((a, b) => a.key - b.key || (a.receipt < b.receipt ? -1 : a.receipt > b.receipt ? 1 : 0));
}
