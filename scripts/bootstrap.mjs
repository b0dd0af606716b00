// Runs before `npm start` and `npm test`: makes a fresh clone runnable.
//  - checks the Node.js version (the native uWebSockets.js binary needs Node 20),
//  - installs npm dependencies when node_modules is missing or older than the lockfile,
//  - builds (Lua bundle, build info, TypeScript),
//  - installs redis-server through apt-get when it is missing and we may (root
//    with apt-get): `npm test` always needs it, `npm start` when no
//    REDIS_ADDRESS is given (it starts a throwaway one); otherwise it says
//    what to install;
//  - with --test: chromium and prometheus too; with --bench: wrk.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const forTest = process.argv.includes('--test');
const say = (m) => process.stderr.write(`[bootstrap] ${m}\n`);

const major = Number(process.versions.node.split('.')[0]);
if (major !== 20) {
  say(`Node.js ${process.version} found; this gateway needs Node.js 20 (the native uWebSockets.js build it uses ships for Node 20).`);
  process.exit(1);
}

const has = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
const run = (cmd, args) => {
  say(`${cmd} ${args.join(' ')}`);
  execFileSync(cmd, args, { cwd: root, stdio: 'inherit' });
};

const lock = join(root, 'package-lock.json');
const installed = join(root, 'node_modules', '.package-lock.json');
if (!existsSync(installed) || (existsSync(lock) && statSync(lock).mtimeMs > statSync(installed).mtimeMs + 1000)) {
    // not `npm ci`: see .ci/run (npm/cli#4828 leaves optional platform packages out of the lock)
  run('npm', ['install', '--no-audit', '--no-fund']);
}

if (!process.env.REDIS_ADDRESS || forTest) {
  const bin = process.env.REDIS_SERVER_BIN || 'redis-server';
  if (!has(bin)) {
    const root_ = typeof process.getuid === 'function' && process.getuid() === 0;
    if (bin === 'redis-server' && root_ && has('apt-get')) {
      say('redis-server not found: installing it with apt-get (set REDIS_ADDRESS to use a Redis of your own instead)');
      run('apt-get', ['update', '-qq']);
      run('apt-get', ['install', '-y', '-qq', 'redis-server']);
    } else {
      say(
        forTest
          ? 'redis-server is required by the tests (they start their own on free ports). Install it: sudo apt-get install -y redis-server'
          : bin !== 'redis-server'
            ? `REDIS_SERVER_BIN=${bin} not found. Point it at a redis-server binary, or set REDIS_ADDRESS=host:port of a Redis 7.`
            : 'redis-server not found and this user cannot install it. Install it (sudo apt-get install -y redis-server, or brew install redis) or set REDIS_ADDRESS=host:port of a Redis 7.',
      );
      process.exit(1);
    }
  }
}

// the benchmarks drive the gateway with wrk (C) as well as autocannon
if (process.argv.includes('--bench') && !has('wrk')) {
  const root_ = typeof process.getuid === 'function' && process.getuid() === 0;
  if (root_ && has('apt-get')) {
    run('apt-get', ['update', '-qq']);
    run('apt-get', ['install', '-y', '-qq', 'wrk']);
  } else {
    say('wrk is required by npm run bench. Install it: sudo apt-get install -y wrk');
    process.exit(1);
  }
}

// the browser tests need Debian's Chromium (playwright-core drives it; no browser download)
if (forTest && !has('chromium') && !process.env.CHROMIUM_PATH) {
  const root_ = typeof process.getuid === 'function' && process.getuid() === 0;
  if (root_ && has('apt-get')) {
    run('apt-get', ['update', '-qq']);
    run('apt-get', ['install', '-y', '-qq', 'chromium']);
  } else {
    say('chromium is required by the browser tests. Install it: sudo apt-get install -y chromium (or set CHROMIUM_PATH)');
    process.exit(1);
  }
}

// test/observability.test.ts runs its own Prometheus and promtool (Debian's prometheus package has both)
if (forTest && !(has('prometheus') && has('promtool'))) {
  const root_ = typeof process.getuid === 'function' && process.getuid() === 0;
  if (root_ && has('apt-get')) {
    run('apt-get', ['update', '-qq']);
    run('apt-get', ['install', '-y', '-qq', 'prometheus']);
  } else {
    say('prometheus and promtool are required by test/observability.test.ts. Install them: sudo apt-get install -y prometheus');
    process.exit(1);
  }
}

run('npm', ['run', '--silent', 'build']);
