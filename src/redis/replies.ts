import { ScriptStatus, type ScriptStatusName } from '../generated/lua.js';
import { AppError } from '../errors.js';

// Reading script replies. Every script that can answer in more than one way
// returns a status code first (lua/status-codes.json, one meaning per number
// across all scripts); the decoders next to each caller turn a reply into
// named fields with these helpers, so no caller reads r[7].

const names = new Map<number, ScriptStatusName>(Object.entries(ScriptStatus).map(([name, n]) => [n, name as ScriptStatusName]));

/** The name of a status code; a code no table has is a bug in a script (500), never guessed at. */
export function statusName(script: string, code: unknown): ScriptStatusName {
  const name = names.get(Number(code));
  if (!name) throw new AppError('INTERNAL', `script ${script} answered with status ${String(code)}, which lua/status-codes.json does not define`);
  return name;
}

/** The status name of a reply's first field. */
export function statusOf(script: string, reply: unknown): ScriptStatusName {
  return statusName(script, Array.isArray(reply) ? reply[0] : undefined);
}

/** A reply the caller did not expect from this script (a status it never returns here). */
export function unexpected(script: string, status: ScriptStatusName): AppError {
  return new AppError('INTERNAL', `script ${script} answered ${status}, which its caller does not expect`);
}

/** A number field (Lua numbers and numeric strings); `d` when absent or not a number. */
export const num = (v: unknown, d = 0): number => {
  const n = typeof v === 'number' ? v : Number(v);
  return Number.isFinite(n) ? n : d;
};

/** A string field; '' when absent. */
export const str = (v: unknown): string => (v === undefined || v === null || v === false ? '' : String(v));

/** A flat Lua list read as records of `size` fields. */
export function records<T>(flat: unknown, size: number, map: (chunk: unknown[]) => T): T[] {
  const list = Array.isArray(flat) ? (flat as unknown[]) : [];
  const out: T[] = [];
  for (let i = 0; i + size <= list.length; i += size) out.push(map(list.slice(i, i + size)));
  return out;
}
