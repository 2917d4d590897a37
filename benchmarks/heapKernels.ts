/**
 * The WebAssembly SIMD kernels against what they replace, one call each, round-robin:
 * - the optimiser's update (src/train/wasmAdam.ts) against the JavaScript loop, for the
 *   parameter counts of the 3-layer 512-wide MLP (788k) and the core MLP denoiser (1.3M);
 * - the heap transpose and column sums (src/backend/wasmHeap.ts) against the backend's
 *   Transpose kernel and its transpose-then-sum, alone and inside a training step of the
 *   shipped policies' temporal U-Nets (batch 128, random data of their sizes).
 *
 *   npx tsx benchmarks/heapKernels.ts [--out FILE]
 */
import * as tf from '@tensorflow/tfjs-core';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { setBackend } from '../src/backend/backend.js';
import { installWasmMatMulFix, setWasmMatMulOptions } from '../src/backend/wasmMatMul.js';
import { ParamStore } from '../src/nn/params.js';
import { AdamOptimizer } from '../src/train/optimizer.js';
import { pseudoRandom, timeInterleaved } from './timing.js';
import { policyTrainer } from '../domains/robotics/policy/train.js';
import { shippedConfigAndRandomDemos } from './policyData.js';

const { values } = parseArgs({ options: { out: { type: 'string' } } });
await setBackend('wasm', { threads: 1 });
installWasmMatMulFix();

interface Row {
  readonly what: string;
  readonly beforeMs: number;
  readonly afterMs: number;
  readonly speedup: number;
}
const rows: Row[] = [];
const row = (what: string, before: () => void, after: () => void, reps: number): void => {
  const [b, a] = timeInterleaved([before, after], reps);
  rows.push({ what, beforeMs: b.cpuMs, afterMs: a.cpuMs, speedup: b.cpuMs / a.cpuMs });
};

for (const size of [788_992, 1_300_000]) {
  const store = new ParamStore();
  const p = tf.tensor(pseudoRandom(size, 1, 0.1));
  store.set('p', p);
  const g = tf.tensor(pseudoRandom(size, 2, 0.01));
  const js = new AdamOptimizer(store, { kind: 'adamw' }, undefined, { simd: false });
  const simd = new AdamOptimizer(store, { kind: 'adamw' }, undefined, { simd: true });
  const emaJs = { values: js.flatParams(), decay: 0.999 };
  const emaSimd = { values: simd.flatParams(), decay: 0.999 };
  row(`AdamW + EMA update, ${size} parameters (JS loop -> SIMD kernel)`, () => void js.apply({ p: g }, 1e-9, 1, emaJs), () => void simd.apply({ p: g }, 1e-9, 1, emaSimd), 30);
  tf.dispose([p, g]);
  store.dispose();
}
for (const shape of [[512, 512], [256, 512]]) {
  const x = tf.tensor(pseudoRandom(shape[0] * shape[1], 3, 1), shape);
  const ones = tf.ones([shape[0], 4]);
  // A product whose left operand must be transposed: the transpose is the difference.
  const product = (on: boolean) => (): void => {
    setWasmMatMulOptions({ simdKernels: on });
    tf.tidy(() => void tf.matMul(x, ones, true, false).dataSync());
  };
  row(`transpose ${shape.join(' x ')} inside a transposeA product with 4 columns (backend kernel -> SIMD)`, product(false), product(true), 60);
  const sum = (on: boolean) => (): void => {
    setWasmMatMulOptions({ simdKernels: on });
    tf.tidy(() => void tf.sum(x, 0).dataSync());
  };
  row(`sum over the leading axis of ${shape.join(' x ')} (transpose + sum -> SIMD column sums)`, sum(false), sum(true), 60);
  tf.dispose([x, ones]);
}
for (const env of ['pusht', 'arm-reach'] as const) {
  const { cfg, demos } = shippedConfigAndRandomDemos(env);
  const runs = [false, true].map(() => policyTrainer(demos, cfg, { steps: 1000, batchSize: 128, seed: 0 }));
  const step = (i: number) => (): void => {
    setWasmMatMulOptions({ simdKernels: i === 1 });
    runs[i].trainer.trainStep();
  };
  row(`${env} U-Net training step, batch 128 (backend's transposes and sums -> SIMD)`, step(0), step(1), 20);
  for (const r of runs) r.dispose();
}
setWasmMatMulOptions({ simdKernels: true });

for (const r of rows) console.log(`${r.what}: ${r.beforeMs.toFixed(2)} -> ${r.afterMs.toFixed(2)} ms CPU (${r.speedup.toFixed(1)}x)`);
const out = values.out ?? path.join(path.dirname(fileURLToPath(import.meta.url)), 'results', 'heap-kernels.json');
mkdirSync(path.dirname(out), { recursive: true });
writeFileSync(out, JSON.stringify({ benchmark: 'heap-kernels', date: new Date().toISOString(), node: process.version, rows }, null, 2) + '\n');
