/**
 * Tensor backend selection.
 *
 * `auto` prefers the native TensorFlow bindings (GPU build, then CPU build) when they are
 * installed, then the WASM backend shipped with the package (the embedded default), then
 * the plain JS CPU backend. Native bindings are optional peer dependencies: their install
 * downloads libtensorflow from outside the npm registry, so they are only ever loaded if
 * the user installed them.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { createRequire } from 'node:module';
import path from 'node:path';
import { prepareWasmThreads, type WasmThreadsPreparation } from './threads.js';
import { installWasmMatMulFix } from './wasmMatMul.js';
import { installWasmShare } from './wasmShare.js';
import './registerGradients.js';
import { fail } from '../util/validate.js';

export type BackendName = 'auto' | 'wasm' | 'cpu' | 'tensorflow';

export interface BackendChoice {
  /** Backend actually active in tfjs (`wasm`, `cpu`, `tensorflow`). */
  readonly backend: string;
  /** Which package provides it. */
  readonly provider: string;
  /** Why it was chosen (and why the better ones were not). */
  readonly reason: string;
  /** WASM only: threads in XNNPACK's pool. */
  readonly threads?: number;
}

export interface SetBackendOptions {
  /**
   * Threads for the WASM backend (XNNPACK's pool; the threaded SIMD build is started with
   * scoreflow's Node shims, see threads.ts). Default: env SCOREFLOW_WASM_THREADS, else 1.
   * Fixed when the WASM backend first initialises in a process.
   */
  readonly threads?: number;
}

/**
 * Gradient functions. tfjs-core's Node (CommonJS) bundle registers none; its ESM file does,
 * but only resolves under bundlers/vitest (its directory imports fail in plain Node ESM),
 * where the union package's Node bundle registers them instead.
 */
async function ensureGradients(): Promise<void> {
  if (tf.getGradient('Sum') !== undefined) return;
  try {
    await import('@tensorflow/tfjs-core/dist/register_all_gradients.js');
  } catch {
    await import('@tensorflow/tfjs');
  }
}

function requestedWasmThreads(opts: SetBackendOptions): number {
  const raw = opts.threads ?? (process.env.SCOREFLOW_WASM_THREADS ? Number(process.env.SCOREFLOW_WASM_THREADS) : 1);
  if (!Number.isInteger(raw) || raw < 1) {
    const source = opts.threads !== undefined ? 'setBackend: threads' : 'SCOREFLOW_WASM_THREADS';
    fail(`${source} must be a positive integer, got ${String(opts.threads ?? process.env.SCOREFLOW_WASM_THREADS)}`);
  }
  return raw;
}

const require = createRequire(import.meta.url);
let current: BackendChoice | undefined;

const NATIVE_PACKAGES = ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'] as const;

/** Directory holding the .wasm binaries of the installed tfjs-backend-wasm package. */
export function wasmBinaryDir(): string {
  const pkg = require.resolve('@tensorflow/tfjs-backend-wasm/package.json');
  return path.join(path.dirname(pkg), 'dist') + path.sep;
}

async function tryNative(): Promise<{ ok: true; pkg: string } | { ok: false; why: string }> {
  const reasons: string[] = [];
  for (const pkg of NATIVE_PACKAGES) {
    try {
      require.resolve(pkg);
    } catch {
      reasons.push(`${pkg} not installed`);
      continue;
    }
    try {
      await import(pkg);
      if (await tf.setBackend('tensorflow')) return { ok: true, pkg };
      reasons.push(`${pkg} loaded but its backend did not initialise`);
    } catch (err) {
      reasons.push(`${pkg} failed to load: ${(err as Error).message.split('\n')[0]}`);
    }
  }
  return { ok: false, why: reasons.join('; ') };
}

async function tryWasm(threads: number): Promise<{ ok: true; threads: number; note: string } | { ok: false; why: string }> {
  let prep: WasmThreadsPreparation | undefined;
  let note = '';
  try {
    const wasm = await import('@tensorflow/tfjs-backend-wasm');
    if (!wasmPathsSet) {
      wasm.setWasmPaths(wasmBinaryDir());
      wasmPathsSet = true;
    }
    const initialised = tf.engine().registry['wasm'] !== undefined;
    if (threads > 1 && !initialised) {
      try {
        prep = prepareWasmThreads(threads);
      } catch (err) {
        note = `; ${threads} threads unavailable (${(err as Error).message}), single-threaded`;
      }
    }
    if (!(await tf.setBackend('wasm'))) return { ok: false, why: 'wasm backend did not initialise' };
    await tf.ready();
    installWasmMatMulFix();
    installWasmShare();
    const running = wasm.getThreadsCount();
    if (initialised && running !== threads) note = `; ${running} thread(s): fixed when the backend first started`;
    return { ok: true, threads: running, note };
  } catch (err) {
    return { ok: false, why: `wasm backend failed: ${(err as Error).message.split('\n')[0]}` };
  } finally {
    prep?.restore();
  }
}
let wasmPathsSet = false;

/**
 * Select the tensor backend. Idempotent: calling it again with the same name is cheap.
 * Throws for an unknown name, or when an explicitly requested backend cannot start.
 */
export async function setBackend(name: BackendName = 'auto', opts: SetBackendOptions = {}): Promise<BackendChoice> {
  const valid: BackendName[] = ['auto', 'wasm', 'cpu', 'tensorflow'];
  if (!valid.includes(name)) {
    fail(`setBackend: unknown backend '${String(name)}' (expected one of ${valid.join(', ')})`);
  }
  const threads = requestedWasmThreads(opts);
  await ensureGradients();
  if (current && (name === 'auto' || current.backend === name) && tf.getBackend() === current.backend) {
    return current;
  }
  let choice: BackendChoice;
  if (name === 'tensorflow') {
    const r = await tryNative();
    if (!r.ok) {
      fail(
        `setBackend: 'tensorflow' requested but unavailable (${r.why}). On a machine with internet access ` +
          `install @tensorflow/tfjs-node-gpu (CUDA) or @tensorflow/tfjs-node.`,
      );
    }
    choice = { backend: 'tensorflow', provider: r.pkg, reason: `requested; ${r.pkg} loaded` };
  } else if (name === 'wasm') {
    const r = await tryWasm(threads);
    if (!r.ok) throw new Error(`setBackend: ${r.why}`);
    choice = { backend: 'wasm', provider: '@tensorflow/tfjs-backend-wasm', reason: `requested${r.note}`, threads: r.threads };
  } else if (name === 'cpu') {
    await tf.setBackend('cpu');
    await tf.ready();
    choice = { backend: 'cpu', provider: '@tensorflow/tfjs-backend-cpu', reason: 'requested' };
  } else {
    const native = await tryNative();
    if (native.ok) {
      choice = { backend: 'tensorflow', provider: native.pkg, reason: `auto: ${native.pkg} is installed` };
    } else {
      const w = await tryWasm(threads);
      if (w.ok) {
        choice = {
          backend: 'wasm',
          provider: '@tensorflow/tfjs-backend-wasm',
          reason: `auto: native bindings unavailable (${native.why}); using WASM (XNNPACK/SIMD)${w.note}`,
          threads: w.threads,
        };
      } else {
        await tf.setBackend('cpu');
        await tf.ready();
        choice = {
          backend: 'cpu',
          provider: '@tensorflow/tfjs-backend-cpu',
          reason: `auto: native unavailable (${native.why}); ${w.why}; falling back to the JS CPU backend`,
        };
      }
    }
  }
  current = choice;
  return choice;
}

/**
 * Fails with a message that says what to do when no tensor backend is active: neither
 * `setBackend` nor the user's own `tf.setBackend` (or a first tensor op) has started one. Without
 * this, tfjs says only "No backend found in registry.", or quietly starts its slow JavaScript CPU
 * backend. `where` names the caller in the message.
 */
export function requireBackend(where: string): void {
  if (current !== undefined || tf.engine().backendName != null) return;
  fail(`${where}: no tensor backend is active. Call \`await setBackend('auto')\` (from 'scoreflow') once before using the library`);
}

/** The current choice, or undefined before `setBackend` was called. */
export function currentBackend(): BackendChoice | undefined {
  return current;
}
