/**
 * Multithreaded tfjs WASM backend under Node.
 *
 * tfjs-backend-wasm ships a threaded SIMD build (`tfjs-backend-wasm-threaded-simd.wasm`:
 * XNNPACK with a pthreadpool on emscripten pthreads = worker_threads), but under Node it
 * never starts it, for three reasons this module works around:
 *
 * 1. the feature flag `WASM_HAS_MULTITHREAD_SUPPORT` is hard-wired to false when
 *    `IS_NODE` (tfjs issue #3830). We set the flag to true;
 * 2. the pthread worker script is handed to emscripten as a `blob:` URL
 *    (`URL.createObjectURL(new Blob([...]))`), which Node's `Worker` cannot load, and the
 *    worker in turn loads the main glue script from another blob. While the backend
 *    initialises we let `URL.createObjectURL` turn the worker blob into a real file: the
 *    package's own worker script, prefixed with two lines that point the worker's
 *    `createObjectURL` at the package's glue file (`wasm-out/...threaded-simd.js`);
 * 3. the C++ side caps the thread count at `emscripten_num_logical_cores() / 2`, i.e.
 *    `os.cpus().length / 2` under Node (it assumes two hyper-threads per core), so on a
 *    2-CPU machine it always gives 1 thread. While the module instantiates we report
 *    `2 * threads` CPUs so the cap becomes the requested count.
 *
 * Both shims are in place only between `prepareWasmThreads()` and the `restore()` it
 * returns (the caller brackets the backend's initialisation with them).
 */
import { createRequire } from 'node:module';
import { createHash } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';

const require = createRequire(import.meta.url);

/** What `doctor` prints about the WASM backend's parallelism. */
export interface WasmThreadInfo {
  /** Threads in XNNPACK's pool (1 = single-threaded; 0 = wasm backend not initialised). */
  threads: number;
  /** The engine validates WebAssembly SIMD (fixed-width 128-bit). */
  simd: boolean;
  /** The threaded SIMD binary is the one running (shared wasm memory). */
  threadedBuild: boolean;
  note: string;
}

/** A handle to undo the temporary shims once the backend has initialised. */
export interface WasmThreadsPreparation {
  /** Threads requested. */
  readonly threads: number;
  /**
   * Put `URL.createObjectURL` and `os.cpus` back, and let the process exit while the pool's
   * worker threads are alive. Call once the backend has initialised (or failed). Idempotent.
   */
  restore(): void;
}

/** Highest thread count the threaded build supports (it pre-spawns 8 pthread workers). */
export const MAX_WASM_THREADS = 8;

/**
 * A minimal module whose single function returns a `v128.const`: it validates only on
 * engines with WebAssembly SIMD. (type () -> v128; one function; body: v128.const 0, end)
 */
const SIMD_PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version 1
  0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, // type section: [func () -> v128]
  0x03, 0x02, 0x01, 0x00, // function section: [type 0]
  0x0a, 0x16, 0x01, 0x14, 0x00, // code section: 1 body of 20 bytes, no locals
  0xfd, 0x0c, ...new Array<number>(16).fill(0), // v128.const 0
  0x0b, // end
]);

/** Does this engine support WebAssembly SIMD? */
export function wasmSimdSupported(): boolean {
  // `WebAssembly` is a Node global but not in the ES2022 lib this project compiles against.
  const wa = (globalThis as { WebAssembly?: { validate(bytes: Uint8Array): boolean } }).WebAssembly;
  try {
    return wa !== undefined && wa.validate(SIMD_PROBE);
  } catch {
    return false;
  }
}

type WasmPackage = typeof import('@tensorflow/tfjs-backend-wasm');

/** The wasm package, loaded synchronously (same instance as `import()`: it is CommonJS). */
function wasmPackage(): WasmPackage {
  return require('@tensorflow/tfjs-backend-wasm') as WasmPackage;
}

/** `os` as a mutable object (the threaded glue reads `require('os').cpus()`). */
const nodeOs = os as { cpus: typeof os.cpus };

function wasmPackageDir(): string {
  return path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json'));
}

interface NodeWorkerLike {
  unref?(): void;
}

/** The emscripten module behind an initialised wasm backend (never triggers initialisation). */
function wasmModule(): { HEAPU8?: Uint8Array; PThread?: { runningWorkers?: NodeWorkerLike[]; unusedWorkers?: NodeWorkerLike[] } } | undefined {
  const backend = tf.engine().registry['wasm'] as unknown as { wasm?: ReturnType<typeof wasmModule> } | undefined;
  return backend?.wasm;
}

/** Is the running wasm backend the threaded build (its heap is shared memory)? */
function runningThreadedBuild(): boolean {
  const heap = wasmModule()?.HEAPU8;
  return heap !== undefined && typeof SharedArrayBuffer !== 'undefined' && heap.buffer instanceof SharedArrayBuffer;
}

/**
 * emscripten keeps a Node process alive while a pthread runs, and XNNPACK's pool threads
 * run forever: without this the process would never exit on its own. Unref'd workers
 * still run; they just do not hold the event loop open.
 */
function unrefPthreadWorkers(): void {
  const pthread = wasmModule()?.PThread;
  for (const w of [...(pthread?.runningWorkers ?? []), ...(pthread?.unusedWorkers ?? [])]) w.unref?.();
}

/**
 * Write (once) the pthread worker script Node can load: tfjs-backend-wasm's own worker
 * code, preceded by a shim that makes the worker load the glue script from the package
 * directory instead of from a blob URL. Content-addressed in the OS temp directory.
 */
function pthreadWorkerFile(): string {
  const dir = wasmPackageDir();
  const glue = path.join(dir, 'wasm-out', 'tfjs-backend-wasm-threaded-simd.js');
  const workerModule = path.join(dir, 'wasm-out', 'tfjs-backend-wasm-threaded-simd.worker.js');
  if (!existsSync(glue) || !existsSync(workerModule)) {
    throw new Error(`tfjs-backend-wasm at ${dir} has no threaded build (wasm-out/ files missing)`);
  }
  const contents = (require(workerModule) as { wasmWorkerContents?: unknown }).wasmWorkerContents;
  if (typeof contents !== 'string') {
    throw new Error(`unexpected format of ${workerModule} (no wasmWorkerContents string)`);
  }
  // The exported template literal holds real newlines where the script has "\n" escapes
  // inside string literals; tfjs applies the same replacement before making its blob.
  const strict = '"use strict";';
  const body = contents.startsWith(strict) ? contents.slice(strict.length) : contents;
  const script =
    `${strict}\n` +
    `URL.createObjectURL = function () { return ${JSON.stringify(glue)}; };\n` +
    `URL.revokeObjectURL = function () {};\n` +
    body.replace(/\n/g, '\\n');
  const hash = createHash('sha256').update(script).digest('hex').slice(0, 16);
  const file = path.join(os.tmpdir(), `scoreflow-tfjs-wasm-pthread-${hash}.cjs`);
  if (!existsSync(file)) writeFileSync(file, script, { mode: 0o644 });
  return file;
}

/**
 * Arrange for the next initialisation of the tfjs WASM backend to use the threaded build
 * with `threads` threads. Must run before the backend initialises (before
 * `tf.setBackend('wasm')`); call `restore()` right after it. Throws when threads cannot be
 * used here (no SharedArrayBuffer, no SIMD, threaded files missing).
 */
export function prepareWasmThreads(threads: number): WasmThreadsPreparation {
  if (!Number.isInteger(threads) || threads < 1 || threads > MAX_WASM_THREADS) {
    throw new Error(`prepareWasmThreads: threads must be an integer in [1, ${MAX_WASM_THREADS}], got ${threads}`);
  }
  if (typeof SharedArrayBuffer === 'undefined') throw new Error('prepareWasmThreads: SharedArrayBuffer unavailable');
  if (!wasmSimdSupported()) throw new Error('prepareWasmThreads: the threaded build needs WebAssembly SIMD');
  const workerFile = pthreadWorkerFile();
  const wasm = wasmPackage();

  tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', true);
  wasm.setThreadsCount(threads);

  const originalCreateObjectURL = URL.createObjectURL;
  const originalCpus = nodeOs.cpus;
  URL.createObjectURL = function createObjectURL(obj: Parameters<typeof URL.createObjectURL>[0]): string {
    // tfjs makes exactly one kind of javascript blob during init: the pthread worker.
    if (obj instanceof Blob && obj.type === 'application/javascript') return workerFile;
    return originalCreateObjectURL.call(URL, obj);
  };
  nodeOs.cpus = function cpus(): os.CpuInfo[] {
    const real = originalCpus.call(os);
    const model = real[0];
    return Array.from({ length: 2 * threads }, (_, i) => real[i % real.length] ?? model);
  };
  let restored = false;
  return {
    threads,
    restore(): void {
      if (restored) return;
      restored = true;
      URL.createObjectURL = originalCreateObjectURL;
      nodeOs.cpus = originalCpus;
      unrefPthreadWorkers();
    },
  };
}

/** Threads, SIMD and build of the running WASM backend (for `doctor`). */
export function wasmThreadInfo(): WasmThreadInfo {
  const simd = wasmSimdSupported();
  let threads = 0;
  try {
    threads = wasmPackage().getThreadsCount();
  } catch {
    threads = 0; // package missing, or backend not initialised (getThreadsCount throws)
  }
  const threadedBuild = threads > 0 && runningThreadedBuild();
  let note: string;
  if (threads === 0) {
    note = 'wasm backend not initialised';
  } else if (threadedBuild) {
    note = `threaded SIMD build, ${threads} thread(s) (started through scoreflow's Node shims for worker_threads)`;
  } else {
    note =
      `single-threaded ${simd ? 'SIMD ' : ''}build: tfjs does not start its threaded build under Node by itself; ` +
      `setBackend('wasm', { threads: 2 }) or SCOREFLOW_WASM_THREADS=2 starts it`;
  }
  return { threads, simd, threadedBuild, note };
}
