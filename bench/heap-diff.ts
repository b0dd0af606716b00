// What grew between two V8 heap snapshots, by kind of object: self size and
// count per constructor (or per node type for strings, arrays, closures...).
// Evidence for the per-user memory figures in docs/BENCHMARKS.md.
//
//   node dist/bench/heap-diff.js <before.heapsnapshot> <after.heapsnapshot> [per=15000] [top=30]
import { readFileSync } from 'node:fs';

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[]] } };
  nodes: number[];
  strings: string[];
}

function summarise(file: string): Map<string, { size: number; count: number }> {
  const s = JSON.parse(readFileSync(file, 'utf8')) as Snapshot;
  const fields = s.snapshot.meta.node_fields;
  const width = fields.length;
  const typeAt = fields.indexOf('type');
  const nameAt = fields.indexOf('name');
  const sizeAt = fields.indexOf('self_size');
  const types = s.snapshot.meta.node_types[0];
  const out = new Map<string, { size: number; count: number }>();
  for (let i = 0; i < s.nodes.length; i += width) {
    const type = types[s.nodes[i + typeAt]!]!;
    // objects and closures by name; everything else (strings, arrays, code, hidden) by type
    const key = type === 'object' || type === 'closure' || type === 'native' ? `${type}:${s.strings[s.nodes[i + nameAt]!]}` : type;
    const e = out.get(key) ?? { size: 0, count: 0 };
    e.size += s.nodes[i + sizeAt]!;
    e.count++;
    out.set(key, e);
  }
  return out;
}

const [beforeFile, afterFile] = process.argv.slice(2);
if (!beforeFile || !afterFile) {
  console.error('usage: heap-diff <before.heapsnapshot> <after.heapsnapshot> [per=15000] [top=30]');
  process.exit(2);
}
const per = Number(process.argv[4] ?? 15_000);
const top = Number(process.argv[5] ?? 30);
const before = summarise(beforeFile);
const after = summarise(afterFile);
const rows = [...after].map(([k, a]) => {
  const b = before.get(k) ?? { size: 0, count: 0 };
  return { k, size: a.size - b.size, count: a.count - b.count };
});
rows.sort((x, y) => y.size - x.size);
const total = rows.reduce((t, r) => t + r.size, 0);
console.log(`grew by ${(total / per).toFixed(0)} bytes per user (${per} users)`);
console.log(`${'kind'.padEnd(60)} ${'bytes/user'.padStart(10)} ${'objects/user'.padStart(12)}`);
for (const r of rows.slice(0, top)) console.log(`${r.k.slice(0, 60).padEnd(60)} ${(r.size / per).toFixed(0).padStart(10)} ${(r.count / per).toFixed(2).padStart(12)}`);
