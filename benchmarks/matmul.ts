/**
 * Before/after benchmark of the WASM matMul fix (src/backend/wasmMatMul.ts).
 *
 *   npx tsx benchmarks/matmul.ts            # full run, writes benchmarks/results/matmul.json
 *   npx tsx benchmarks/matmul.ts --quick    # fewer repetitions
 *
 * Measures, with the stock tfjs-backend-wasm kernels ("before") and with the fix ("after"):
 * - single products 256x512 @ 512x512 for the four transpose combinations;
 * - a 3-layer 512-wide ReLU MLP (input 512, batch 256): forward pass vs one training step
 *   (forward + backward via tf.variableGrads + Adam update); the figure of merit is the
 *   ratio step/forward (the backward pass does two products per forward product, except the
 *   first layer's input gradient, so 8/3 of the forward's products is the floor). "before" and
 *   "after" use tfjs's own Adam (`tf.train.adam`) and the backend's Transpose and Sum kernels;
 *   "after + SIMD" adds the heap kernels (src/backend/wasmHeap.ts: transposes, bias-gradient
 *   sums, and the no-packing product kernel for the gradient products and for the first
 *   product with weights the update just rewrote), the copy-free Identity of
 *   src/backend/wasmShare.ts and the core's AdamOptimizer (the WebAssembly SIMD update every
 *   Trainer uses) with its default float32 arithmetic; "Adam float64" is the same with the
 *   float64 arithmetic the shipped training recipes pin. The
 *   two "after" variants and the forward pass are timed in alternating blocks in one loop;
 * - what XNNPACK's packing of a right operand costs against a SIMD transpose (PACK_COST);
 * - batched products [B, s, s] @ [B, s, s] stock vs split, the data behind MIN_SPLIT_MACS.
 */
import * as tf from '@tensorflow/tfjs-core';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { setBackend } from '../src/backend/backend.js';
import { pairedRatio, pseudoRandom, timeBlocks, timeCalls } from './timing.js';
import { ParamStore } from '../src/nn/params.js';
import { AdamOptimizer } from '../src/train/optimizer.js';
import { markWritten } from '../src/train/hostMemory.js';
import { installWasmShare, uninstallWasmShare } from '../src/backend/wasmShare.js';
import {
  installWasmMatMulFix,
  MIN_SPLIT_MACS,
  setWasmMatMulOptions,
  uninstallWasmMatMulFix,
} from '../src/backend/wasmMatMul.js';

export interface MatMulBenchOptions {
  /** MLP batch size (default 256). */
  batch?: number;
  /** MLP width = input dim (default 512). */
  width?: number;
  /** Number of dense layers (default 3). */
  layers?: number;
  /** Timed repetitions per measurement (default 10; the stock training step is slow). */
  reps?: number;
  /** Skip the batched-threshold sweep (default false). */
  skipBatched?: boolean;
  /** Where to write the JSON (default benchmarks/results/matmul.json; null: do not write). */
  out?: string | null;
}

export interface Timing {
  /** Median wall time over the repetitions, milliseconds. */
  medianMs: number;
  /** Fastest repetition (least disturbed by other processes on a shared machine). */
  minMs: number;
  /**
   * Median CPU time (user + system) of this process per repetition, milliseconds. With the
   * single-threaded wasm build this is the figure least affected by other load.
   */
  cpuMs: number;
  reps: number;
}

export interface MlpResult {
  /** Forward pass in a loop of forward passes (sampling): weights packed once by XNNPACK. */
  forward: Timing;
  /** Forward + backward only (tf.variableGrads, gradients discarded). */
  gradients: Timing;
  trainStep: Timing;
  /** gradients / forward, from CPU times (the part the matMul fix addresses). */
  gradientsOverForwardCpu: number;
  /** trainStep / forward, from median wall times. */
  stepOverForward: number;
  /** trainStep / forward, from fastest repetitions. */
  stepOverForwardMin: number;
  /** trainStep / forward, from CPU times. */
  stepOverForwardCpu: number;
  /**
   * trainStep / forward, the median over rounds of the ratio of the two blocks' median CPU
   * times in that round (steadier than the ratio of overall medians when the machine's speed
   * drifts); the figure of merit.
   */
  stepOverForwardPaired: number;
  /** Useful throughput of the forward and of the step (2·M·K·N per product). */
  forwardGflops: number;
  trainStepGflops: number;
  /** Loss after the timed steps (sanity: both variants train the same model). */
  finalLoss: number;
}

export interface MatMulBenchResult {
  benchmark: 'wasm-matmul-fix';
  date: string;
  node: string;
  backend: string;
  threads: number;
  config: { batch: number; width: number; layers: number; reps: number };
  /** 256x512 @ 512x512 (operands laid out so each combination computes the same shapes). */
  products: Record<'NN' | 'TN' | 'NT' | 'TT', { beforeMs: number; afterMs: number; speedup: number }>;
  /** stepSpeedup: before / after training-step CPU time. */
  /**
   * afterCoreAdam: every kernel of the library and the core's Adam with its default float32
   * arithmetic; afterCoreAdam64: the same with the float64 arithmetic the shipped recipes pin.
   */
  mlp: { before: MlpResult; after: MlpResult; afterCoreAdam: MlpResult; afterCoreAdam64: MlpResult; stepSpeedup: number };
  /**
   * What XNNPACK's packing of a right operand costs (a [8, k] @ [k, n] product with the
   * operand packed once vs packed again every call) against the SIMD transpose of the same
   * number of elements: the data behind PACK_COST (src/backend/wasmMatMul.ts).
   */
  packing: { k: number; n: number; packNsPerElement: number; transposeNsPerElement: number; ratio: number };
  /** Batched [B, s, s] @ [B, s, s]: stock loop vs per-entry split (threshold data). */
  batched: { B: number; s: number; macsPerEntry: number; stockMs: number; splitMs: number; speedup: number }[];
  minSplitMacs: number;
  verdict: string;
}



interface Mlp {
  weights: tf.Variable[];
  biases: tf.Variable[];
  store: ParamStore;
}

function makeMlp(width: number, layers: number): Mlp {
  const store = new ParamStore();
  for (let l = 0; l < layers; l++) {
    const w = tf.tensor2d(pseudoRandom(width * width, 17 + l, Math.sqrt(6 / (2 * width))), [width, width]);
    const b = tf.zeros([width]);
    store.set(`w${l}`, w);
    store.set(`b${l}`, b);
    tf.dispose([w, b]);
  }
  const weights = Array.from({ length: layers }, (_, l) => store.get(`w${l}`));
  const biases = Array.from({ length: layers }, (_, l) => store.get(`b${l}`));
  return { weights, biases, store };
}

function mlpForward(m: Mlp, x: tf.Tensor2D): tf.Tensor2D {
  let h = x;
  for (let l = 0; l < m.weights.length; l++) {
    const last = l === m.weights.length - 1;
    h = tf.fused.matMul({
      a: h,
      b: m.weights[l] as tf.Tensor2D,
      bias: m.biases[l],
      activation: last ? 'linear' : 'relu',
    }) as tf.Tensor2D;
  }
  return h;
}

interface MlpVariant {
  /** tfjs's `tf.train.adam` or the core's AdamOptimizer (WebAssembly SIMD update). */
  optimizer: 'tfjs' | 'core';
  /** The SIMD transpose and column-sum kernels of src/backend/wasmHeap.ts (with the fix). */
  simdKernels: boolean;
  /** Transposed products as transposes of the swapped product where that packs less. */
  operandSwap: boolean;
  /** The no-packing product kernel for gradient products and freshly updated weights. */
  ownGemm: boolean;
  /** Identity and same-dtype Cast share storage instead of copying (src/backend/wasmShare.ts). */
  share: boolean;
  /** Arithmetic of the core's Adam (ignored for tfjs's). */
  precision: 'float32' | 'float64';
}

function configure(v: MlpVariant): void {
  setWasmMatMulOptions({ simdKernels: v.simdKernels, operandSwap: v.operandSwap, ownGemm: v.ownGemm });
  if (v.share) installWasmShare();
  else uninstallWasmShare();
}

/**
 * Forward pass, gradients and training step of each variant, timed in alternating blocks in
 * one loop (the forward pass shared), so the variants and the forward pass they are divided by
 * see the same stretches of a noisy machine.
 */
function benchMlp(batch: number, width: number, layers: number, reps: number, variants: MlpVariant[]): MlpResult[] {
  const x = tf.tensor2d(pseudoRandom(batch * width, 1, 1), [batch, width]);
  const y = tf.tensor2d(pseudoRandom(batch * width, 2, 1), [batch, width]);
  const finalLoss = variants.map(() => NaN);
  const setups = variants.map((v, i) => {
    const m = makeMlp(width, layers);
    const tfOpt = tf.train.adam(1e-3);
    const coreOpt = new AdamOptimizer(m.store, { kind: 'adam', weightDecay: 0, precision: v.precision });
    const vars = [...m.weights, ...m.biases];
    const names = m.store.trainableNames();
    const loss = (): tf.Scalar => tf.losses.meanSquaredError(y, mlpForward(m, x)) as tf.Scalar;
    const gradients = (): void => {
      configure(v);
      tf.tidy(() => {
        const { value } = tf.variableGrads(loss, vars);
        value.dataSync();
      });
    };
    const step = (): void => {
      configure(v);
      tf.tidy(() => {
        if (v.optimizer === 'tfjs') {
          // minimize = tf.variableGrads (forward + backward) + Adam's applyGradients.
          const value = tfOpt.minimize(loss, true, vars);
          finalLoss[i] = value === null ? NaN : value.dataSync()[0];
        } else {
          const { value, grads } = tf.variableGrads(loss, vars);
          finalLoss[i] = value.dataSync()[0];
          const named: Record<string, tf.Tensor> = {};
          for (const n of names) named[n] = grads[m.store.get(n).name];
          coreOpt.apply(named, 1e-3);
        }
      });
    };
    const dispose = (): void => {
      tfOpt.dispose();
      coreOpt.dispose();
      m.store.dispose();
    };
    return { m, gradients, step, dispose };
  });
  const forward = (): void => {
    // (A block, not an expression: tidy would walk a returned typed array element by element.)
    tf.tidy(() => {
      mlpForward(setups[0].m, x).dataSync();
    });
  };
  // Alternating blocks (timing.ts, timeBlocks): within its block each step follows its own
  // previous step, as in training (it repacks the weights the update changed), and each
  // forward pass follows a forward pass, as in sampling (weights packed, caches warm).
  const fns = [...setups.flatMap((s) => [s.step, s.gradients]), forward];
  const t = timeBlocks(fns, Math.max(2, Math.round(reps / 3)), 3);
  const fwdT = t[t.length - 1];
  setWasmMatMulOptions({ simdKernels: true, operandSwap: true, ownGemm: true });
  installWasmShare();
  for (const s of setups) s.dispose();
  tf.dispose([x, y]);
  const macs = layers * batch * width * width;
  return setups.map((_, i) => {
    const trainStep = t[2 * i];
    const gradT = t[2 * i + 1];
    return {
      forward: fwdT,
      gradients: gradT,
      trainStep,
      gradientsOverForwardCpu: gradT.cpuMs / fwdT.cpuMs,
      stepOverForward: trainStep.medianMs / fwdT.medianMs,
      stepOverForwardMin: trainStep.minMs / fwdT.minMs,
      stepOverForwardCpu: trainStep.cpuMs / fwdT.cpuMs,
      stepOverForwardPaired: pairedRatio(trainStep, fwdT),
      forwardGflops: (2 * macs) / (fwdT.medianMs * 1e6),
      trainStepGflops: (3 * 2 * macs) / (trainStep.medianMs * 1e6),
      finalLoss: finalLoss[i],
    };
  });
}

function benchProducts(reps: number): Record<'NN' | 'TN' | 'NT' | 'TT', number> {
  const M = 256;
  const K = 512;
  const N = 512;
  const out = {} as Record<'NN' | 'TN' | 'NT' | 'TT', number>;
  const a = tf.tensor2d(pseudoRandom(M * K, 3, 1), [M, K]);
  const b = tf.tensor2d(pseudoRandom(K * N, 4, 1), [K, N]);
  const aT = tf.transpose(a);
  const bT = tf.transpose(b);
  const combos: ['NN' | 'TN' | 'NT' | 'TT', tf.Tensor2D, tf.Tensor2D, boolean, boolean][] = [
    ['NN', a, b, false, false],
    ['TN', aT, b, true, false],
    ['NT', a, bT, false, true],
    ['TT', aT, bT, true, true],
  ];
  for (const [name, x, w, tA, tB] of combos) {
    out[name] = timeCalls(() => {
      const r = tf.matMul(x, w, tA, tB);
      r.dataSync();
      r.dispose();
    }, reps).medianMs;
  }
  tf.dispose([a, b, aT, bT]);
  return out;
}

function benchPacking(reps: number): MatMulBenchResult['packing'] {
  const k = 512;
  const n = 512;
  const a = tf.tensor2d(pseudoRandom(8 * k, 8, 1), [8, k]);
  const w = tf.variable(tf.tensor2d(pseudoRandom(k * n, 9, 1), [k, n]));
  const ones = tf.ones([k, 8]);
  const wT = tf.transpose(w);
  // XNNPACK's own route: with the no-packing kernel on, a rewritten right operand skips it.
  setWasmMatMulOptions({ ownGemm: false });
  const product = (fresh: boolean) => (): void => {
    if (fresh) markWritten(w);
    tf.tidy(() => void tf.matMul(a, w).dataSync());
  };
  // A transposeA product with 8 columns: the SIMD transpose of w is nearly all of it.
  const transposed = (): void => tf.tidy(() => void tf.matMul(w, ones, true, false).dataSync());
  const plain = (): void => tf.tidy(() => void tf.matMul(wT, ones).dataSync());
  const [cached, packed, withTranspose, without] = timeBlocks([product(false), product(true), transposed, plain], Math.max(3, reps), 3);
  setWasmMatMulOptions({ ownGemm: true });
  tf.dispose([a, w, ones, wT]);
  const packNs = ((packed.cpuMs - cached.cpuMs) * 1e6) / (k * n);
  const transposeNs = (Math.max(0, withTranspose.cpuMs - without.cpuMs) * 1e6) / (k * n);
  return { k, n, packNsPerElement: packNs, transposeNsPerElement: transposeNs, ratio: packNs / transposeNs };
}

function benchBatched(reps: number): MatMulBenchResult['batched'] {
  const rows: MatMulBenchResult['batched'] = [];
  for (const B of [16, 128]) {
    for (const s of [8, 16, 20, 24, 32, 64]) {
      const a = tf.tensor3d(pseudoRandom(B * s * s, 5, 1), [B, s, s]);
      const b = tf.tensor3d(pseudoRandom(B * s * s, 6, 1), [B, s, s]);
      const run = (): void => {
        const r = tf.matMul(a, b);
        r.dataSync();
        r.dispose();
      };
      uninstallWasmMatMulFix();
      const stockMs = timeCalls(run, reps).medianMs;
      installWasmMatMulFix();
      setWasmMatMulOptions({ minSplitMacs: 0 });
      const splitMs = timeCalls(run, reps).medianMs;
      setWasmMatMulOptions({ minSplitMacs: MIN_SPLIT_MACS });
      rows.push({ B, s, macsPerEntry: s * s * s, stockMs, splitMs, speedup: stockMs / splitMs });
      tf.dispose([a, b]);
    }
  }
  return rows;
}

export async function runMatMulBench(opts: MatMulBenchOptions = {}): Promise<MatMulBenchResult> {
  const batch = opts.batch ?? 256;
  const width = opts.width ?? 512;
  const layers = opts.layers ?? 3;
  const reps = opts.reps ?? 10;
  const choice = await setBackend('wasm');
  const wasm = await import('@tensorflow/tfjs-backend-wasm');
  const threads = wasm.getThreadsCount();

  uninstallWasmMatMulFix();
  const productsBefore = benchProducts(reps);
  const stock = { simdKernels: false, operandSwap: false, ownGemm: false, share: false, precision: 'float32' } as const;
  const [before] = benchMlp(batch, width, layers, reps, [{ optimizer: 'tfjs', ...stock }]);
  installWasmMatMulFix();
  const productsAfter = benchProducts(reps);
  // The fixed step is ~10x cheaper than the stock one: more rounds for steadier medians.
  const full = { simdKernels: true, operandSwap: true, ownGemm: true, share: true } as const;
  const [after, afterCoreAdam, afterCoreAdam64] = benchMlp(batch, width, layers, 6 * reps, [
    { optimizer: 'tfjs', ...stock },
    { optimizer: 'core', ...full, precision: 'float32' },
    { optimizer: 'core', ...full, precision: 'float64' },
  ]);
  const packing = benchPacking(reps);
  const batched = opts.skipBatched ? [] : benchBatched(Math.max(5, reps));

  const products = {} as MatMulBenchResult['products'];
  for (const k of ['NN', 'TN', 'NT', 'TT'] as const) {
    products[k] = { beforeMs: productsBefore[k], afterMs: productsAfter[k], speedup: productsBefore[k] / productsAfter[k] };
  }
  const verdict =
    `forward+backward / forward (cpu time): before ${before.gradientsOverForwardCpu.toFixed(1)}x, after ${after.gradientsOverForwardCpu.toFixed(1)}x; ` +
    `training step / forward (median wall; fastest rep; cpu time): ` +
    `before ${before.stepOverForward.toFixed(1)}x; ${before.stepOverForwardMin.toFixed(1)}x; ${before.stepOverForwardCpu.toFixed(1)}x, ` +
    `after ${after.stepOverForward.toFixed(1)}x; ${after.stepOverForwardMin.toFixed(1)}x; ${after.stepOverForwardCpu.toFixed(1)}x ` +
    `after + SIMD kernels and the core's Adam ${afterCoreAdam.stepOverForward.toFixed(1)}x; ${afterCoreAdam.stepOverForwardMin.toFixed(1)}x; ${afterCoreAdam.stepOverForwardCpu.toFixed(1)}x ` +
    `; paired per-round cpu ratio after + SIMD ${afterCoreAdam.stepOverForwardPaired.toFixed(2)}x ` +
    `(target <= 3x: ${afterCoreAdam.stepOverForwardPaired <= 3 && afterCoreAdam.stepOverForwardCpu <= 3 ? 'met on both cpu ratios' : afterCoreAdam.stepOverForwardPaired <= 3 ? 'met on the paired ratio only' : 'NOT met'}; ` +
    `with the float64 Adam the recipes pin ${afterCoreAdam64.stepOverForwardPaired.toFixed(2)}x paired, ${afterCoreAdam64.stepOverForwardCpu.toFixed(2)}x overall); ` +
    `step ${(before.trainStep.cpuMs / after.trainStep.cpuMs).toFixed(1)}x less cpu time`;
  const result: MatMulBenchResult = {
    benchmark: 'wasm-matmul-fix',
    date: new Date().toISOString(),
    node: process.version,
    backend: choice.backend,
    threads,
    config: { batch, width, layers, reps },
    products,
    mlp: { before, after, afterCoreAdam, afterCoreAdam64, stepSpeedup: before.trainStep.cpuMs / after.trainStep.cpuMs },
    packing,
    batched,
    minSplitMacs: MIN_SPLIT_MACS,
    verdict,
  };
  const out = opts.out === undefined ? defaultOut() : opts.out;
  if (out !== null) {
    mkdirSync(path.dirname(out), { recursive: true });
    writeFileSync(out, JSON.stringify(result, null, 2) + '\n');
  }
  return result;
}

function defaultOut(): string {
  return path.join(path.dirname(fileURLToPath(import.meta.url)), 'results', 'matmul.json');
}

function printSummary(r: MatMulBenchResult): void {
  const f = (x: number): string => x.toFixed(2);
  console.log(`wasm matMul fix — ${r.node}, threads=${r.threads}`);
  console.log('product 256x512 @ 512x512   before ms   after ms   speedup');
  for (const [k, v] of Object.entries(r.products)) {
    console.log(`  ${k}                        ${f(v.beforeMs).padStart(9)}  ${f(v.afterMs).padStart(9)}  ${f(v.speedup).padStart(7)}x`);
  }
  const c = r.config;
  console.log(
    `packing a ${r.packing.k}x${r.packing.n} right operand: ${f(r.packing.packNsPerElement)} ns/element; SIMD transpose ${f(r.packing.transposeNsPerElement)} ns/element (${f(r.packing.ratio)}x)`,
  );
  console.log(`MLP ${c.layers}x${c.width} relu, batch ${c.batch}: ms wall (cpu)`);
  console.log('                     forward           fwd+bwd           step (fwd+bwd+Adam)   fwd+bwd/fwd  step/fwd (cpu; paired)');
  for (const [k, v] of [['before', r.mlp.before], ['after', r.mlp.after], ['after + SIMD', r.mlp.afterCoreAdam], ['  Adam float64', r.mlp.afterCoreAdam64]] as const) {
    console.log(
      `  ${k.padEnd(16)} ${f(v.forward.medianMs).padStart(7)} (${f(v.forward.cpuMs).padStart(7)})` +
        ` ${f(v.gradients.medianMs).padStart(8)} (${f(v.gradients.cpuMs).padStart(7)})` +
        ` ${f(v.trainStep.medianMs).padStart(8)} (${f(v.trainStep.cpuMs).padStart(7)})` +
        `   ${f(v.gradientsOverForwardCpu).padStart(8)}x  ${f(v.stepOverForwardCpu).padStart(8)}x; ${f(v.stepOverForwardPaired)}x` +
        `   (${f(v.forwardGflops)} / ${f(v.trainStepGflops)} GFLOP/s, loss ${v.finalLoss.toPrecision(4)})`,
    );
  }
  if (r.batched.length) {
    console.log('batched [B,s,s]@[B,s,s]     stock ms   split ms   speedup');
    for (const b of r.batched) {
      console.log(`  B=${String(b.B).padEnd(4)} s=${String(b.s).padEnd(14)} ${f(b.stockMs).padStart(8)}  ${f(b.splitMs).padStart(9)}  ${f(b.speedup).padStart(7)}x`);
    }
  }
  console.log(r.verdict);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const quick = process.argv.includes('--quick');
  runMatMulBench(quick ? { reps: 4 } : {})
    .then(printSummary)
    .catch((err: unknown) => {
      console.error(err);
      process.exit(1);
    });
}
