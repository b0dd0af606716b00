import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, extname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { route, type AnyRoute } from './route.js';
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

export function projectRoot(): string {
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

/** A file served from memory: its route carries the page policy and cache rule; the ETag makes a 304 cheap. */
export function fileRoute(path: string, a: { body: string | Buffer; type: string; etag: string }, cache: string, doc?: { operationId: string; summary: string; tags: string[] }): AnyRoute {
  const body = typeof a.body === 'string' ? a.body : a.body.toString('utf8');
  return route({
    method: 'GET',
    path,
    operationId: doc?.operationId ?? `file ${path}`,
    summary: doc?.summary ?? path,
    tags: doc?.tags ?? ['pages'],
    hidden: !doc,
    rateLimit: false,
    reads: ['if-none-match'],
    headers: { 'Content-Security-Policy': PAGE_CSP, 'Cache-Control': cache },
    responses: {
      200: { description: doc?.summary ?? 'the file', contentType: a.type, headers: ['ETag', 'Content-Security-Policy', 'Cache-Control'] },
      304: { description: 'Not modified (If-None-Match matched the ETag).', headers: ['ETag'] },
    },
    handler: ({ req }) =>
      req.headers['if-none-match'] === a.etag ? { status: 304, body: '', contentType: a.type, headers: { ETag: a.etag } } : { status: 200, body, contentType: a.type, headers: { ETag: a.etag } },
  });
}

export function staticRoutes(): AnyRoute[] {
  const root = projectRoot();
  const assets = new Map<string, Asset>();
  load(join(root, 'web'), '', assets);
  // the browser client library, compiled from src/client by the build
  load(join(root, 'dist', 'src', 'client'), '/client', assets);
  // the wire protocol it imports (../protocol/wire.js from /client/)
  load(join(root, 'dist', 'src', 'protocol'), '/protocol', assets);
  const routes: AnyRoute[] = [];
  const pages: [string, string, string, string][] = [
    ['/', '/index.html', 'waitingRoomPage', 'The waiting-room page (same-origin scripts only, see Content-Security-Policy).'],
    ['/admin', '/admin.html', 'operatorPage', 'The operator page (it asks the operator for the ADMIN_TOKEN; same-origin scripts only).'],
  ];
  for (const [path, file, operationId, summary] of pages) {
    const a = assets.get(file);
    if (a) routes.push(fileRoute(path, a, 'no-cache', { operationId, summary, tags: ['pages'] }));
    else {
      routes.push(
        route({
          method: 'GET',
          path,
          operationId,
          summary,
          tags: ['pages'],
          rateLimit: false,
          responses: {},
          errors: [['NOT_FOUND', 'the page is missing from this build (web/ not built)']],
          handler: () => {
            throw new AppError('NOT_FOUND', 'page missing from this build');
          },
        }),
      );
    }
  }
  for (const [path, a] of assets) {
    if (path === '/index.html' || path === '/admin.html') continue;
    routes.push(fileRoute(path, a, path.endsWith('.html') ? 'no-cache' : 'public, max-age=300'));
  }
  return routes;
}
