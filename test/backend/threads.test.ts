import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { MAX_WASM_THREADS, prepareWasmThreads, wasmSimdSupported, wasmThreadInfo } from '../../src/backend/threads.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);

describe('wasmThreadInfo', () => {
  it('reports SIMD, threads and build of the test process backend', () => {
    expect(wasmSimdSupported()).toBe(true); // V8 in Node 20 validates WebAssembly SIMD
    const info = wasmThreadInfo();
    expect(info.simd).toBe(true);
    if (tf.engine().registry['wasm'] === undefined) {
      // SCOREFLOW_BACKEND=cpu: the wasm backend never started.
      expect(info).toMatchObject({ threads: 0, threadedBuild: false });
      return;
    }
    // setup.ts starts WASM with SCOREFLOW_WASM_THREADS threads (default 1).
    const wanted = Number(process.env.SCOREFLOW_WASM_THREADS || 1);
    expect(info.threads).toBe(wanted);
    expect(info.threadedBuild).toBe(wanted > 1);
    expect(info.note).toMatch(wanted > 1 ? /threaded SIMD build/ : /single-threaded/);
  });

  it('rejects bad thread counts before touching anything', () => {
    expect(() => prepareWasmThreads(0)).toThrow(/threads must be an integer/);
    expect(() => prepareWasmThreads(MAX_WASM_THREADS + 1)).toThrow(/threads must be an integer/);
    expect(() => prepareWasmThreads(1.5)).toThrow(/threads must be an integer/);
    expect(URL.createObjectURL.name).toBe('createObjectURL');
  });
});

describe('threaded WASM build under Node', () => {
  it('starts with 2 threads, computes correctly and lets the process exit', () => {
    const tsx = require.resolve('tsx');
    const child = spawnSync(process.execPath, ['--import', tsx, path.join(here, 'fixtures', 'threadedChild.ts')], {
      encoding: 'utf8',
      timeout: 90_000,
      env: { ...process.env, SCOREFLOW_WASM_THREADS: '' },
    });
    // A timeout here (status null) would mean the pthread workers kept the process alive.
    expect(child.error).toBeUndefined();
    expect(child.status).toBe(0);
    const line = child.stdout.trim().split('\n').pop() ?? '';
    const out = JSON.parse(line) as {
      choice: { backend: string; threads: number };
      info: { threads: number; simd: boolean; threadedBuild: boolean };
      product: number[];
      grad: number[];
      heapIdentical: boolean;
      stats: { simdTransposes: number; simdSums: number };
    };
    expect(out.choice.backend).toBe('wasm');
    expect(out.choice.threads).toBe(2);
    expect(out.info).toMatchObject({ threads: 2, simd: true, threadedBuild: true });
    // [[1,2,3],[4,5,6]] x [[1,0,2],[1,0,3]]^T
    expect(out.product).toEqual([7, 10, 16, 22]);
    // d/da sum(a b^T) = ones(2,2) b = column sums of b, per row
    expect(out.grad).toEqual([2, 0, 5, 2, 0, 5]);
    // The heap kernels (wasmHeap.ts) import the threaded build's shared memory too.
    expect(out.stats.simdTransposes).toBeGreaterThan(0);
    expect(out.stats.simdSums).toBeGreaterThan(0);
    expect(out.heapIdentical).toBe(true);
  });
});
