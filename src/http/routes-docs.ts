import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fileRoute } from './static.js';
import { route, type AnyRoute } from './route.js';

// GET /openapi.json: the OpenAPI 3.1 document (built once).
// GET /docs: Swagger UI from the swagger-ui-dist npm package, served from this
// process (read once at start-up, ETag per file): the page makes no request
// to any other origin. Its initializer is a separate same-origin script, so
// the page keeps the strict page policy (PAGE_CSP: 'self' scripts and styles
// only, no inline code). GET /docs/PROTOCOL.md: the WebSocket protocol the
// document links to.

interface Asset {
  body: string;
  type: string;
  etag: string;
}

const etag = (s: string): string => `"${createHash('sha1').update(s).digest('base64url')}"`;
const asset = (body: string, type: string): Asset => ({ body, type, etag: etag(body) });

const INIT_JS = `'use strict';
// Swagger UI initializer for /docs (a file, not inline: the page's CSP allows 'self' scripts only).
window.addEventListener('load', function () {
  window.ui = SwaggerUIBundle({
    url: '/openapi.json',
    dom_id: '#swagger-ui',
    deepLinking: true,
    // no badge from the public validator: the page talks to this origin only
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: 'BaseLayout',
    displayOperationId: false,
    defaultModelsExpandDepth: 0,
  });
});
`;

const page = (withUi: boolean): string => `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Waiting-room gateway API</title>
<link rel="icon" href="data:,">
${withUi ? '<link rel="stylesheet" href="/docs/assets/index.css">\n<link rel="stylesheet" href="/docs/assets/swagger-ui.css">\n' : ''}</head>
<body>
<noscript><p>The API description is the OpenAPI document at <a href="/openapi.json">/openapi.json</a>.</p></noscript>
${
  withUi
    ? '<div id="swagger-ui"></div>\n<script src="/docs/assets/swagger-ui-bundle.js"></script>\n<script src="/docs/assets/docs-init.js"></script>'
    : '<p>The documentation viewer (npm package swagger-ui-dist) is not installed; run <code>npm install</code>. The API description is at <a href="/openapi.json">/openapi.json</a>.</p>'
}
</body>
</html>
`;

/** The swagger-ui-dist directory, or undefined when the package is not installed. */
function swaggerUiDir(): string | undefined {
  try {
    return dirname(createRequire(import.meta.url).resolve('swagger-ui-dist/package.json'));
  } catch {
    return undefined;
  }
}

/** docs/PROTOCOL.md of this checkout (src/http or dist/src/http), if present. */
function protocolDoc(): string | undefined {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const f = join(dir, 'docs', 'PROTOCOL.md');
    if (existsSync(join(dir, 'package.json')) && existsSync(f)) return readFileSync(f, 'utf8');
    dir = dirname(dir);
  }
  return undefined;
}

/** /openapi.json (generated from the route table on first request: the table includes these routes too), /docs and its assets. */
export function docsRoutes(document: () => string): AnyRoute[] {
  const assets = new Map<string, Asset>();
  const ui = swaggerUiDir();
  if (ui) {
    // source maps are not served: drop the comments that would make devtools ask for them
    const read = (f: string): string => readFileSync(join(ui, f), 'utf8').replace(/\n?\/[*/]# sourceMappingURL=\S+?(\s*\*\/)?\s*$/, '\n');
    assets.set('/docs/assets/swagger-ui.css', asset(read('swagger-ui.css'), 'text/css; charset=utf-8'));
    assets.set('/docs/assets/index.css', asset(read('index.css'), 'text/css; charset=utf-8'));
    assets.set('/docs/assets/swagger-ui-bundle.js', asset(read('swagger-ui-bundle.js'), 'text/javascript; charset=utf-8'));
    assets.set('/docs/assets/docs-init.js', asset(INIT_JS, 'text/javascript; charset=utf-8'));
  }
  const protocol = protocolDoc();
  if (protocol !== undefined) assets.set('/docs/PROTOCOL.md', asset(protocol, 'text/plain; charset=utf-8'));
  const html = asset(page(ui !== undefined), 'text/html; charset=utf-8');
  return [
    route({
      method: 'GET',
      path: '/openapi.json',
      operationId: 'openApiDocument',
      summary: 'This document',
      tags: ['docs'],
      rateLimit: false,
      responses: { 200: { description: 'OpenAPI 3.1.' } },
      handler: () => ({ status: 200, body: document() }),
    }),
    fileRoute('/docs', html, 'no-cache', { operationId: 'apiDocsPage', summary: 'Browsable API documentation (Swagger UI, served locally; every asset is same-origin)', tags: ['docs'] }),
    ...[...assets].map(([path, a]) => fileRoute(path, a, 'public, max-age=300')),
  ];
}
