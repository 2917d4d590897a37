/**
 * The WebAssembly SIMD kernels against what they replace, one call each, round-robin:
 * - the optimiser's update (src/train/wasmAdam.ts) against the JavaScript loop, for the
 *   parameter counts of the 3-layer 512-wide MLP (788k) and the core MLP denoiser (1.3M);
 * - the heap transpose and column sums (src/backend/wasmHeap.ts) against the backend's
 *   Transpose kernel and its transpose-then-sum;
 * - the no-packing product kernel against XNNPACK (which packs the right operand first) on
 *   the gradient products of a 512-wide dense layer (batch 256);
 * - all heap kernels against none inside a training step of the shipped policies' temporal
 *   U-Nets (batch 128, random data of their sizes).
 *
 *   npx tsx benchmarks/heapKernels.ts [--out FILE]
 */
import { installWasmShare, uninstallWasmShare } from '../src/backend/wasmShare.js';
import * as tf from '@tensorflow/tfjs-core';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { setBackend } from '../src/backend/backend.js';
import { installWasmMatMulFix, setWasmMatMulOptions } from '../src/backend/wasmMatMul.js';
import { ParamStore } from '../src/nn/params.js';
import { AdamOptimizer } from '../src/train/optimizer.js';
import { markWritten } from '../src/train/hostMemory.js';
import { pseudoRandom, timeBlocks, timeInterleaved } from './timing.js';
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
const row = (what: string, before: () => void, after: () => void, reps: number, blocks = false): void => {
  // Round-robin, or alternating blocks of 3 where a call should follow a call of its own kind
  // (training steps: caches and packed weights as a training loop leaves them).
  const [b, a] = blocks ? timeBlocks([before, after], Math.max(2, Math.round(reps / 3)), 3) : timeInterleaved([before, after], reps);
  rows.push({ what, beforeMs: b.cpuMs, afterMs: a.cpuMs, speedup: b.cpuMs / a.cpuMs });
};

for (const size of [788_992, 1_300_000]) {
  const store = new ParamStore();
  const p = tf.tensor(pseudoRandom(size, 1, 0.1));
  store.set('p', p);
  const g = tf.tensor(pseudoRandom(size, 2, 0.01));
  for (const precision of ['float64', 'float32'] as const) {
    const js = new AdamOptimizer(store, { kind: 'adamw', precision }, undefined, { simd: false });
    const simd = new AdamOptimizer(store, { kind: 'adamw', precision }, undefined, { simd: true });
    const emaJs = { values: js.flatParams(), decay: 0.999 };
    const emaSimd = { values: simd.flatParams(), decay: 0.999 };
    row(`AdamW + EMA update (${precision}), ${size} parameters (JS loop -> SIMD kernel)`, () => void js.apply({ p: g }, 1e-9, 1, emaJs), () => void simd.apply({ p: g }, 1e-9, 1, emaSimd), 30);
    js.dispose();
    simd.dispose();
  }
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
{
  const dy = tf.tensor2d(pseudoRandom(256 * 512, 4, 1), [256, 512]);
  const w = tf.tensor2d(pseudoRandom(512 * 512, 5, 0.05), [512, 512]);
  const x = tf.tensor2d(pseudoRandom(256 * 512, 6, 1), [256, 512]);
  const product = (on: boolean, f: () => tf.Tensor) => (): void => {
    setWasmMatMulOptions({ ownGemm: on });
    tf.tidy(() => void f().dataSync());
  };
  const dX = (): tf.Tensor => tf.matMul(dy, w, false, true);
  const dW = (): tf.Tensor => tf.matMul(x, dy, true, false);
  row('input gradient dY Wt, 256 x 512 x 512 (XNNPACK, packing its operand -> no-packing kernel)', product(false, dX), product(true, dX), 30);
  row('weight gradient Xt dY, 512 x 256 x 512 (XNNPACK, packing its operand -> no-packing kernel)', product(false, dW), product(true, dW), 30);
  const panels = (on: boolean) => (): void => {
    setWasmMatMulOptions({ transposedPanels: on });
    tf.tidy(() => void dX().dataSync());
  };
  row('input gradient dY Wt in the no-packing kernel (Wt materialised -> panels transposed in the kernel)', panels(false), panels(true), 30);
  setWasmMatMulOptions({ transposedPanels: true });
  // Against XNNPACK at its best: weights packed once and reused (sampling). The kernel is
  // forced by marking the weights rewritten before each of its calls.
  const wv = tf.variable(w);
  for (const rows of [256, 64, 16, 1]) {
    const xs = tf.tensor2d(pseudoRandom(rows * 512, 7, 1), [rows, 512]);
    const forward = (on: boolean) => (): void => {
      setWasmMatMulOptions({ ownGemm: on });
      if (on) markWritten(wv);
      tf.tidy(() => void tf.matMul(xs, wv).dataSync());
    };
    row(`product X W, ${rows} x 512 x 512 (XNNPACK with W packed once -> no-packing kernel)`, forward(false), forward(true), 30, true);
    xs.dispose();
  }
  setWasmMatMulOptions({ ownGemm: true });
  tf.dispose([dy, w, x, wv]);
}
for (const env of ['pusht', 'arm-reach'] as const) {
  const { cfg, demos } = shippedConfigAndRandomDemos(env);
  const runs = [false, true].map(() => policyTrainer(demos, cfg, { steps: 1000, batchSize: 128, seed: 0 }));
  const step = (i: number) => (): void => {
    setWasmMatMulOptions({ simdKernels: i === 1 });
    runs[i].trainer.trainStep();
  };
  row(`${env} U-Net training step, batch 128 (backend's transposes, sums and XNNPACK's packing -> heap kernels)`, step(0), step(1), 20);
  const gemmStep = (i: number) => (): void => {
    setWasmMatMulOptions({ simdKernels: true, ownGemm: i === 1 });
    runs[i].trainer.trainStep();
  };
  row(`${env} U-Net training step, batch 128, alternating blocks (other heap kernels on; XNNPACK -> no-packing kernel)`, gemmStep(0), gemmStep(1), 15, true);
  setWasmMatMulOptions({ ownGemm: true });
  const shareStep = (i: number) => (): void => {
    if (i === 1) installWasmShare();
    else uninstallWasmShare();
    runs[i].trainer.trainStep();
  };
  row(`${env} U-Net training step, batch 128, alternating blocks (saved tensors copied -> shared, src/backend/wasmShare.ts)`, shareStep(0), shareStep(1), 15, true);
  installWasmShare();
  for (const r of runs) r.dispose();
}
setWasmMatMulOptions({ simdKernels: true });

for (const r of rows) console.log(`${r.what}: ${r.beforeMs.toFixed(2)} -> ${r.afterMs.toFixed(2)} ms CPU (${r.speedup.toFixed(1)}x)`);
const out = values.out ?? path.join(path.dirname(fileURLToPath(import.meta.url)), 'results', 'heap-kernels.json');
mkdirSync(path.dirname(out), { recursive: true });
writeFileSync(out, JSON.stringify({ benchmark: 'heap-kernels', date: new Date().toISOString(), node: process.version, rows }, null, 2) + '\n');
