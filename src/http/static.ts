import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, extname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { HttpServer } from './server.js';
import { AppError } from '../errors.js';

// The waiting-room page, the operator page and the browser client library,
// served from memory (read once at start-up): no disk access per request, an
// ETag per file, and a content security policy that allows only this origin
// (no external network requests from the page).

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.map': 'application/json',
  '.ts': 'text/plain; charset=utf-8',
};

export const PAGE_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self' ws: wss:; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

interface Asset {
  body: Buffer;
  type: string;
  etag: string;
}

function projectRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'lua'))) return dir;
    dir = dirname(dir);
  }
  throw new Error('the project folder (package.json, lua/) was not found above the gateway');
}

function load(dir: string, prefix: string, into: Map<string, Asset>): void {
  if (!existsSync(dir)) return;
  (function walk(d: string) {
    for (const f of readdirSync(d)) {
      const p = join(d, f);
      if (statSync(p).isDirectory()) walk(p);
      else {
        const body = readFileSync(p);
        const rel = relative(dir, p).split('\\').join('/');
        into.set(`${prefix}/${rel}`, { body, type: TYPES[extname(f)] ?? 'application/octet-stream', etag: `"${createHash('sha1').update(body).digest('base64url')}"` });
      }
    }
  })(dir);
}

export function registerStaticRoutes(http: HttpServer): void {
  const root = projectRoot();
  const assets = new Map<string, Asset>();
  load(join(root, 'web'), '', assets);
  // the browser client library, compiled from src/client by the build
  load(join(root, 'dist', 'src', 'client'), '/client', assets);
  const serve = (path: string, ifNoneMatch: string | undefined) => {
    const a = assets.get(path);
    if (!a) return undefined;
    const headers = { 'Content-Security-Policy': PAGE_CSP, 'Cache-Control': path.endsWith('.html') ? 'no-cache' : 'public, max-age=300', ETag: a.etag };
    if (ifNoneMatch === a.etag) return { status: 304, body: '', contentType: a.type, headers };
    return { status: 200, body: a.body.toString('utf8'), contentType: a.type, headers };
  };
  const page = (file: string) => (req: Parameters<Parameters<HttpServer['route']>[2]>[0]) => {
    const r = serve(file, req.headers['if-none-match']);
    if (!r) throw new AppError('NOT_FOUND', 'page missing from this build');
    return r;
  };
  const probe = { rateLimit: false };
  http.route('GET', '/', page('/index.html'), probe);
  http.route('GET', '/admin', page('/admin.html'), probe);
  for (const path of assets.keys()) {
    if (path === '/index.html' || path === '/admin.html') continue;
    http.route('GET', path, page(path), probe);
  }
}
