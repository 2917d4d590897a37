/**
 * Start a `worker_threads` Worker from an ES module given by URL, whether it is compiled
 * JavaScript (the installed package) or TypeScript source (a checkout run through tsx or
 * vitest). For `.ts` modules the worker first registers tsx's loader, then imports the module;
 * Node's `execArgv: ['--import', 'tsx']` does not register it in time for the worker's entry.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as nodePath from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker, type WorkerOptions } from 'node:worker_threads';
import { fail } from './validate.js';

export function startModuleWorker(moduleUrl: URL, opts: Omit<WorkerOptions, 'eval'> = {}): Worker {
  if (!(moduleUrl instanceof URL) || moduleUrl.protocol !== 'file:') fail(`startModuleWorker: expected a file: URL, received ${String(moduleUrl)}`);
  if (!moduleUrl.pathname.endsWith('.ts')) return new Worker(moduleUrl, opts);
  let tsxApi: string;
  try {
    tsxApi = tsxEsmApi();
  } catch (err) {
    fail(`startModuleWorker: ${moduleUrl.pathname} is TypeScript and needs the 'tsx' package to run in a worker (${(err as Error).message})`);
  }
  const code =
    `import(${JSON.stringify(tsxApi)})` +
    `.then((m) => { m.register(); return import(${JSON.stringify(moduleUrl.href)}); })` +
    `.catch((err) => { setImmediate(() => { throw err; }); });`;
  return new Worker(code, { ...opts, eval: true });
}

/** URL of tsx's ESM register API, read from its package.json exports map (the import condition). */
function tsxEsmApi(): string {
  const pkgJson = createRequire(import.meta.url).resolve('tsx/package.json');
  const pkg = JSON.parse(readFileSync(pkgJson, 'utf8')) as { exports?: Record<string, unknown> };
  const entry = pkg.exports?.['./esm/api'] as { import?: { default?: string } | string } | undefined;
  const rel = typeof entry?.import === 'string' ? entry.import : entry?.import?.default;
  if (!rel) throw new Error("tsx's package.json has no './esm/api' import export");
  return pathToFileURL(nodePath.join(nodePath.dirname(pkgJson), rel)).href;
}
