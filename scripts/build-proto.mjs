// Generates TypeScript types for proto/**/*.proto into src/generated/proto
// with @grpc/proto-loader's generator. The runtime loads the same .proto
// files with proto-loader; never edit the output.
import { execFileSync } from 'node:child_process';
import { readdirSync, statSync, rmSync, readFileSync, writeFileSync } from 'node:fs';
import { join, dirname, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const protoDir = join(root, 'proto');
const out = join(root, 'src', 'generated', 'proto');
const files = [];
(function walk(d) {
  for (const f of readdirSync(d)) {
    const p = join(d, f);
    if (statSync(p).isDirectory()) walk(p);
    else if (f.endsWith('.proto')) files.push(relative(protoDir, p));
  }
})(protoDir);
rmSync(out, { recursive: true, force: true });
const bin = join(root, 'node_modules', '.bin', 'proto-loader-gen-types');
// file names first: --includeDirs is an array option and would swallow them
execFileSync(bin, [...files, '--keepCase', '--longs=String', '--enums=String', '--defaults', '--oneofs', '--grpcLib=@grpc/grpc-js', `--outDir=${out}`, `--includeDirs=${protoDir}`], { cwd: root, stdio: 'inherit' });
// The generator writes extensionless relative imports; this project is ESM
// (NodeNext), where they need ".js".
let patched = 0;
(function fix(d) {
  for (const f of readdirSync(d)) {
    const p = join(d, f);
    if (statSync(p).isDirectory()) fix(p);
    else if (f.endsWith('.ts')) {
      const src = readFileSync(p, 'utf8');
      const next = src.replace(/(from '\.{1,2}\/[^']+?)(?<!\.js)';/g, "$1.js';");
      if (next !== src) {
        writeFileSync(p, next);
        patched++;
      }
    }
  }
})(out);
console.log(`build-proto: ${files.length} files -> src/generated/proto (${patched} generated files patched for ESM)`);
