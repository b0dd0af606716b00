import { createRequire } from 'node:module';
import type * as UWS from 'uWebSockets.js';

// uWebSockets.js is installed from npm as @trufflesuite/uws-js-unofficial,
// whose entry point silently falls back to a slow pure-JS server when the
// native binary does not load. We load the native binary directly and refuse
// to start without it: a waiting room on the fallback would fall over on
// launch day while looking healthy in every test.

export type { UWS };

export class NativeUwsUnavailable extends Error {}

function load(): typeof UWS {
  if (process.env.UWS_USE_FALLBACK) {
    throw new NativeUwsUnavailable(
      'UWS_USE_FALLBACK is set: this gateway never runs on the pure-JS uWebSockets.js fallback. Unset UWS_USE_FALLBACK.',
    );
  }
  const require = createRequire(import.meta.url);
  let pkgDir: string;
  try {
    pkgDir = require.resolve('uWebSockets.js/package.json').replace(/package\.json$/, '');
  } catch {
    throw new NativeUwsUnavailable('uWebSockets.js is not installed. Run `npm ci` in the project folder.');
  }
  const binary = `${pkgDir}binaries/uws_${process.platform}_${process.arch}_${process.versions.modules}.node`;
  try {
    return require(binary) as typeof UWS;
  } catch (err) {
    throw new NativeUwsUnavailable(
      `the native uWebSockets.js binary did not load (${binary}): ${(err as Error).message.split('\n')[0]}. ` +
        `This build ships binaries for Node.js 16, 18 and 20 (ABI 93/108/115) on glibc; you run Node ${process.version} ` +
        `(ABI ${process.versions.modules}). Use Node.js 20 (see "engines" in package.json), or on Node 20-25 with glibc >= 2.38 ` +
        `replace the dependency with @btc-vision/uwebsockets.js. The pure-JS fallback is refused on purpose.`,
    );
  }
}

let loaded: typeof UWS | undefined;

/** The native module, loaded on first use so a refusal surfaces as a clean start-up error. */
export function loadUws(): typeof UWS {
  return (loaded ??= load());
}
