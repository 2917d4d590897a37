/**
 * Trainable convolutions on the tfjs WASM backend: forward and forward+backward of the
 * candidate formulations, timed interleaved in one process.
 *
 *   npx tsx benchmarks/conv.ts            # full run, writes benchmarks/results/conv.json
 *   npx tsx benchmarks/conv.ts --quick    # fewer repetitions
 *
 * The WASM backend has no Conv2DBackpropFilter kernel, so `tf.conv1d` / `tf.conv2d` cannot
 * be differentiated there. Variants (all 'same' padding, symmetric for odd kernels):
 *
 * - `im2col`   k shifted slices concatenated on the channel axis, one matMul (tfjs autodiff);
 *              strided: every s-th position of the stride-1 result. The previous blocks.ts.
 * - `taps`     sum over kernel taps of slice_i(x_pad) @ W_i (k matMuls, no concat/split).
 * - `custom-bpi-mm`  tf.customGrad: forward native conv2d (XNNPACK; 1D as H = 1); dx with
 *              tf.conv2dTranspose (Conv2DBackpropInput kernel); dW = im2colᵀ @ dy, the im2col
 *              built already transposed ([k·C, B·L]) so the product needs no transpose flag.
 * - `custom-flip-mm` as above, but dx as a forward conv2d of (zero-upsampled) dy with the
 *              flipped, in/out-transposed filter.
 * - `blocks`   src/nn/blocks.ts (chosen): as `custom-flip-mm`, with dW as a forward conv2d too,
 *              batch and channel axes swapped (x as [C, H, W, B], dy as the filter
 *              [Ho, Wo, B, O], dilated by the stride): every product goes through XNNPACK.
 * - `conv3d`   tf.conv3d with a singleton depth (Conv3D/Conv3DBackprop*V2 kernels): trains, but
 *              3-25x slower than im2col (forward 10-50x), and on WASM its strided gradients
 *              disagree with the cpu backend (see gradRelDiff of the stride-2 case).
 * - `native`   tf.conv2d forward only (reference: no gradient on WASM).
 */
import * as tf from '@tensorflow/tfjs-core';
// Under plain Node, tfjs-core's CJS bundle registers no gradient functions; the union
// package's bundle does (importing it adds no backend we use: we select wasm explicitly).
import '@tensorflow/tfjs';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { setBackend } from '../src/backend/backend.js';
import { conv1d, conv2d } from '../src/nn/blocks.js';
import type { ParamStore } from '../src/nn/params.js';
import { median, pseudoRandom } from './timing.js';

type Conv = (x: tf.Tensor4D, w: tf.Tensor4D, b: tf.Tensor1D, stride: [number, number]) => tf.Tensor4D;

const lo = (k: number): number => Math.floor((k - 1) / 2);
const hi = (k: number): number => k - 1 - lo(k);
const outSize = (n: number, s: number): number => Math.floor((n - 1) / s) + 1;
function explicitPad(w: tf.Tensor4D): [[number, number], [number, number], [number, number], [number, number]] {
  const [kh, kw] = w.shape;
  return [[0, 0], [lo(kh), hi(kh)], [lo(kw), hi(kw)], [0, 0]];
}

/** Keep every s-th position of the stride-1 result (the previous blocks.ts). */
function subsample(y: tf.Tensor4D, [sh, sw]: [number, number]): tf.Tensor4D {
  if (sh === 1 && sw === 1) return y;
  const [B, H, W, C] = y.shape;
  if (sh === 1) {
    const r = tf.reshape(y, [B * H, W / sw, sw, C]);
    return tf.reshape(tf.slice(r, [0, 0, 0, 0], [-1, -1, 1, -1]), [B, H, W / sw, C]);
  }
  const r = tf.reshape(y, [B, H / sh, sh, W / sw, sw, C]);
  return tf.reshape(tf.slice(r, [0, 0, 0, 0, 0, 0], [-1, -1, 1, -1, 1, -1]), [B, H / sh, W / sw, C]);
}

const im2col: Conv = (x, w, b, stride) => {
  const [kh, kw, C, O] = w.shape;
  const [B, H, W] = x.shape;
  let p: tf.Tensor4D = x;
  if (kh * kw > 1) {
    const xp = tf.pad(x, explicitPad(w));
    const parts: tf.Tensor4D[] = [];
    for (let i = 0; i < kh; i++) for (let j = 0; j < kw; j++) parts.push(tf.slice(xp, [0, i, j, 0], [-1, H, W, -1]));
    p = tf.concat(parts, 3);
  }
  const y = tf.matMul(tf.reshape(p, [B * H * W, kh * kw * C]), tf.reshape(w, [kh * kw * C, O]));
  return subsample(tf.add(tf.reshape(y, [B, H, W, O]), b), stride);
};

const taps: Conv = (x, w, b, stride) => {
  const [kh, kw, C, O] = w.shape;
  const [B, H, W] = x.shape;
  const xp = kh * kw > 1 ? tf.pad(x, explicitPad(w)) : x;
  let acc: tf.Tensor | undefined;
  for (let i = 0; i < kh; i++) {
    for (let j = 0; j < kw; j++) {
      const s = tf.reshape(tf.slice(xp, [0, i, j, 0], [-1, H, W, -1]), [B * H * W, C]);
      const t = tf.matMul(s, tf.reshape(tf.slice(w, [i, j, 0, 0], [1, 1, C, O]), [C, O]));
      acc = acc === undefined ? t : tf.add(acc, t);
    }
  }
  return subsample(tf.add(tf.reshape(acc as tf.Tensor, [B, H, W, O]), b), stride);
};

/** im2colᵀ: [kh·kw·C, B·Ho·Wo], rows ordered like the reshaped filter [kh, kw, C]. */
function patchesT(x: tf.Tensor4D, kh: number, kw: number, [sh, sw]: [number, number]): tf.Tensor2D {
  const [B, H, W, C] = x.shape;
  const Ho = outSize(H, sh);
  const Wo = outSize(W, sw);
  const xt = tf.transpose(tf.pad(x, [[0, 0], [lo(kh), hi(kh)], [lo(kw), hi(kw)], [0, 0]]), [3, 0, 1, 2]);
  const parts: tf.Tensor[] = [];
  for (let i = 0; i < kh; i++) {
    for (let j = 0; j < kw; j++) {
      parts.push(tf.stridedSlice(xt, [0, 0, i, j], [C, B, i + (Ho - 1) * sh + 1, j + (Wo - 1) * sw + 1], [1, 1, sh, sw]));
    }
  }
  return tf.reshape(parts.length === 1 ? parts[0] : tf.stack(parts), [kh * kw * C, B * Ho * Wo]);
}

/** conv2d forward (+ bias) with the given gradient for (x, W); db = sum(dy). */
function withGrad(
  dxFn: (dy: tf.Tensor4D, w: tf.Tensor4D, xShape: number[], stride: [number, number]) => tf.Tensor4D,
  dwFn: (x: tf.Tensor4D, dy: tf.Tensor4D, w: tf.Tensor4D, stride: [number, number]) => tf.Tensor4D,
): Conv {
  return (x, w, b, stride) => {
    const f = tf.customGrad<tf.Tensor4D>((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
      const [x4, w4, b1, save] = args as [tf.Tensor4D, tf.Tensor4D, tf.Tensor1D, tf.GradSaveFunc];
      save([x4, w4]);
      return {
        value: tf.add(tf.conv2d(x4, w4, stride, explicitPad(w4)), b1),
        gradFunc: (dy: tf.Tensor4D, saved: tf.Tensor[]) => {
          const [xs, ws] = saved as [tf.Tensor4D, tf.Tensor4D];
          return [dxFn(dy, ws, xs.shape, stride), dwFn(xs, dy, ws, stride), tf.sum(dy, [0, 1, 2])];
        },
      };
    });
    return f(x, w, b);
  };
}

/** dL/dx with tf.conv2dTranspose (the Conv2DBackpropInput kernel). */
const inputGradBackprop = (dy: tf.Tensor4D, w: tf.Tensor4D, xShape: number[], stride: [number, number]): tf.Tensor4D =>
  tf.conv2dTranspose(dy, w, xShape as [number, number, number, number], stride, explicitPad(w));

/** dL/dW = im2colᵀ @ dy. */
function filterGradMatMul(x: tf.Tensor4D, dy: tf.Tensor4D, w: tf.Tensor4D, stride: [number, number]): tf.Tensor4D {
  const [kh, kw, C, O] = w.shape;
  return tf.reshape(tf.matMul(patchesT(x, kh, kw, stride), tf.reshape(dy, [-1, O])), [kh, kw, C, O]);
}

/** dy with s-1 zeros after every entry along H and W: [B, Ho·sh, Wo·sw, O]. */
function upsampleZeros(dy: tf.Tensor4D, [sh, sw]: [number, number]): tf.Tensor4D {
  if (sh === 1 && sw === 1) return dy;
  const [B, Ho, Wo, O] = dy.shape;
  const r = tf.pad(tf.reshape(dy, [B, Ho, 1, Wo, 1, O]), [[0, 0], [0, 0], [0, sh - 1], [0, 0], [0, sw - 1], [0, 0]]);
  return tf.reshape(r, [B, Ho * sh, Wo * sw, O]);
}

/**
 * w with both spatial axes reversed. tf.reverse (and gather) are slow per-element loops on
 * WASM (~3 ms for 5x128x128); a product with the exchange matrix is exact and ~10x faster.
 */
function flipTaps(w: tf.Tensor4D): tf.Tensor4D {
  const [kh, kw, C, O] = w.shape;
  const n = kh * kw;
  if (n === 1) return w;
  const J = tf.tensor2d(Array.from({ length: n * n }, (_, i) => (Math.floor(i / n) + (i % n) === n - 1 ? 1 : 0)), [n, n]);
  return tf.reshape(tf.matMul(J, tf.reshape(w, [n, C * O])), w.shape);
}

/** dL/dx of the 'same' strided conv as a stride-1 conv of upsampled dy with the flipped filter. */
function inputGradFlip(dy: tf.Tensor4D, w: tf.Tensor4D, xShape: number[], stride: [number, number]): tf.Tensor4D {
  const [kh, kw] = w.shape;
  const [, H, W] = xShape;
  let u = upsampleZeros(dy, stride);
  // Bottom/right padding H + lo - Ho·s may be negative: the cropped entries are zeros.
  const bottom = H + lo(kh) - u.shape[1];
  const right = W + lo(kw) - u.shape[2];
  if (bottom < 0 || right < 0) u = tf.slice(u, [0, 0, 0, 0], [-1, u.shape[1] + Math.min(bottom, 0), u.shape[2] + Math.min(right, 0), -1]);
  const wf = tf.transpose(flipTaps(w), [0, 1, 3, 2]);
  return tf.conv2d(u, wf, 1, [[0, 0], [hi(kh), Math.max(bottom, 0)], [hi(kw), Math.max(right, 0)], [0, 0]]);
}

const conv3dVariant: Conv = (x, w, b, stride) => {
  const [B, H, W, C] = x.shape;
  const [kh, kw, , O] = w.shape;
  const xp = tf.reshape(tf.pad(x, explicitPad(w)), [B, 1, H + kh - 1, W + kw - 1, C]) as tf.Tensor5D;
  const y = tf.conv3d(xp, tf.reshape(w, [1, kh, kw, C, O]) as tf.Tensor5D, [1, stride[0], stride[1]], 'valid');
  return tf.add(tf.reshape(y, [B, y.shape[2], y.shape[3], O]), b);
};

const native: Conv = (x, w, b, stride) => tf.add(tf.conv2d(x, w, stride, explicitPad(w)), b);

/** The implementation in src/nn/blocks.ts, fed the given weight and bias. */
function blocksVariant(dims: 1 | 2): Conv {
  return (x, w, b, stride) => {
    const store = { param: (name: string) => (name.endsWith('/w') ? (dims === 1 ? tf.reshape(w, w.shape.slice(1)) : w) : b) } as unknown as ParamStore;
    const [kh, kw, , O] = w.shape;
    if (dims === 1) {
      const [B, , L, C] = x.shape;
      const y = conv1d(store, 'c', tf.reshape(x, [B, L, C]), O, kw, { stride: stride[1] });
      return tf.reshape(y, [B, 1, y.shape[1] as number, O]);
    }
    return conv2d(store, 'c', x, O, kh, { stride: stride[0] }) as tf.Tensor4D;
  };
}

export const VARIANTS = ['im2col', 'taps', 'custom-bpi-mm', 'custom-flip-mm', 'conv3d', 'blocks', 'native'] as const;
export type VariantName = (typeof VARIANTS)[number];

function variant(name: VariantName, dims: 1 | 2): Conv {
  switch (name) {
    case 'im2col':
      return im2col;
    case 'taps':
      return taps;
    case 'custom-bpi-mm':
      return withGrad(inputGradBackprop, filterGradMatMul);
    case 'custom-flip-mm':
      return withGrad(inputGradFlip, filterGradMatMul);
    case 'conv3d':
      return conv3dVariant;
    case 'blocks':
      return blocksVariant(dims);
    case 'native':
      return native;
  }
}

export interface ConvCase {
  name: string;
  dims: 1 | 2;
  /** x as [B, H, W, C] (1D: H = 1). */
  x: [number, number, number, number];
  outC: number;
  kernel: number;
  stride: number;
}

export const CASES: ConvCase[] = [
  { name: '1d [128,16,32]->32 k5', dims: 1, x: [128, 1, 16, 32], outC: 32, kernel: 5, stride: 1 },
  { name: '1d [128,8,64]->64 k5', dims: 1, x: [128, 1, 8, 64], outC: 64, kernel: 5, stride: 1 },
  { name: '1d [128,4,128]->128 k5', dims: 1, x: [128, 1, 4, 128], outC: 128, kernel: 5, stride: 1 },
  { name: '1d [64,4,256]->256 k5', dims: 1, x: [64, 1, 4, 256], outC: 256, kernel: 5, stride: 1 },
  { name: '1d [128,16,32]->32 k3 s2', dims: 1, x: [128, 1, 16, 32], outC: 32, kernel: 3, stride: 2 },
  { name: '1d [128,16,64]->32 k1', dims: 1, x: [128, 1, 16, 64], outC: 32, kernel: 1, stride: 1 },
  { name: '2d [16,32,32,16]->16 k3', dims: 2, x: [16, 32, 32, 16], outC: 16, kernel: 3, stride: 1 },
];

export interface VariantTiming {
  /**
   * Median CPU time (user + system) of this process per call, milliseconds. The wasm build
   * runs single-threaded, so on a shared, loaded machine this is the figure least disturbed
   * by other processes; wall times are kept alongside.
   */
  forwardMs: number;
  /** Forward + gradients w.r.t. x, W and b (tf.grads), median CPU ms. */
  trainMs: number | null;
  forwardWallMs: number;
  trainWallMs: number | null;
  /** Why the training measurement is missing (no gradient on this backend). */
  trainError?: string;
  /**
   * Largest |difference| from `im2col` relative to the largest |value|, for the forward output
   * and for the gradients (x, W, b).
   */
  forwardRelDiff: number;
  gradRelDiff: number | null;
}

export interface ConvBenchResult {
  benchmark: 'conv';
  date: string;
  node: string;
  backend: string;
  threads: number;
  reps: number;
  cases: { case: ConvCase; variants: Partial<Record<VariantName, VariantTiming>>; trainSpeedupVsIm2col: Partial<Record<VariantName, number>> }[];
}



export interface ConvBenchOptions {
  reps?: number;
  variants?: readonly VariantName[];
  cases?: readonly ConvCase[];
  /** Where to write the JSON (default benchmarks/results/conv.json; null: do not write). */
  out?: string | null;
}

export async function runConvBench(opts: ConvBenchOptions = {}): Promise<ConvBenchResult> {
  const reps = opts.reps ?? 15;
  const names = opts.variants ?? VARIANTS;
  const choice = await setBackend('wasm');
  const result: ConvBenchResult = {
    benchmark: 'conv',
    date: new Date().toISOString(),
    node: process.version,
    backend: choice.backend,
    threads: choice.threads ?? 1,
    reps,
    cases: [],
  };
  for (const c of opts.cases ?? CASES) {
    const [B, H, W, C] = c.x;
    const kh = c.dims === 1 ? 1 : c.kernel;
    const stride: [number, number] = c.dims === 1 ? [1, c.stride] : [c.stride, c.stride];
    const x = tf.tensor4d(pseudoRandom(B * H * W * C, 1, 1), c.x);
    const w = tf.tensor4d(pseudoRandom(kh * c.kernel * C * c.outC, 2, Math.sqrt(3 / (kh * c.kernel * C))), [kh, c.kernel, C, c.outC]);
    const b = tf.tensor1d(pseudoRandom(c.outC, 3, 0.1));
    const yShape = [B, outSize(H, stride[0]), outSize(W, stride[1]), c.outC];
    const r = tf.tensor(pseudoRandom(yShape.reduce((p, q) => p * q, 1), 4, 1), yShape);
    const fwd = (f: Conv) => (w: tf.Tensor4D): tf.Tensor[] => [f(x, w, b, stride)];
    const train = (f: Conv) => (w: tf.Tensor4D): tf.Tensor[] =>
      tf.grads((x: tf.Tensor, w: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(f(x as tf.Tensor4D, w as tf.Tensor4D, b as tf.Tensor1D, stride), r)))([x, w, b]);

    // Reference outputs and a check that the variant trains here at all.
    const ref = tf.tidy(() => [...fwd(im2col)(w), ...train(im2col)(w)].map((t) => t.dataSync().slice()));
    const rows: Partial<Record<VariantName, VariantTiming>> = {};
    const trainable = new Map<VariantName, boolean>();
    for (const n of names) {
      const f = variant(n, c.dims);
      const rel: number[] = [];
      let trainError: string | undefined;
      tf.tidy(() => {
        let outs = fwd(f)(w);
        try {
          outs = [...outs, ...train(f)(w)];
        } catch (err) {
          trainError = (err as Error).message.split('\n')[0];
        }
        outs.forEach((t, i) => {
          const a = t.dataSync();
          let d = 0;
          let m = 0;
          for (let j = 0; j < a.length; j++) {
            d = Math.max(d, Math.abs(a[j] - ref[i][j]));
            m = Math.max(m, Math.abs(ref[i][j]));
          }
          rel.push(d / m);
        });
      });
      trainable.set(n, trainError === undefined);
      const gradRelDiff = rel.length > 1 ? Math.max(...rel.slice(1)) : null;
      rows[n] = { forwardMs: NaN, trainMs: null, forwardWallMs: NaN, trainWallMs: null, forwardRelDiff: rel[0], gradRelDiff, ...(trainError ? { trainError } : {}) };
    }

    const times = new Map<string, number[]>();
    const once = (key: string, run: (w: tf.Tensor4D) => tf.Tensor[]): void => {
      // A fresh copy of the weights, as after an optimiser step: XNNPACK caches packed
      // filters/right operands by tensor, and in training that cache never hits for weights.
      const fresh = tf.add(w, 0) as tf.Tensor4D;
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      tf.tidy(() => run(fresh).forEach((t) => t.dataSync()));
      const wall = performance.now() - t0;
      const c = process.cpuUsage(c0);
      fresh.dispose();
      times.set(`${key}/cpu`, [...(times.get(`${key}/cpu`) ?? []), (c.user + c.system) / 1000]);
      times.set(`${key}/wall`, [...(times.get(`${key}/wall`) ?? []), wall]);
    };
    // Warm-up, then interleave: every repetition runs every variant once, starting from a
    // different one each time (garbage left by a heavy variant is not always billed to the same
    // successor).
    for (let rep = -2; rep < reps; rep++) {
      const start = (rep + 2) % names.length;
      for (const n of [...names.slice(start), ...names.slice(0, start)]) {
        const f = variant(n, c.dims);
        once(`${n}/fwd`, fwd(f));
        if (trainable.get(n)) once(`${n}/train`, train(f));
      }
    }
    const med = (key: string): number => median((times.get(key) as number[]).slice(2));
    for (const n of names) {
      const row = rows[n] as VariantTiming;
      row.forwardMs = med(`${n}/fwd/cpu`);
      row.forwardWallMs = med(`${n}/fwd/wall`);
      if (trainable.get(n)) {
        row.trainMs = med(`${n}/train/cpu`);
        row.trainWallMs = med(`${n}/train/wall`);
      }
    }
    const base = rows.im2col?.trainMs;
    const speedup: Partial<Record<VariantName, number>> = {};
    for (const n of names) {
      const t = rows[n]?.trainMs;
      if (base && t) speedup[n] = base / t;
    }
    result.cases.push({ case: c, variants: rows, trainSpeedupVsIm2col: speedup });
    tf.dispose([x, w, b, r]);
  }
  const out = opts.out === undefined ? path.join(path.dirname(fileURLToPath(import.meta.url)), 'results', 'conv.json') : opts.out;
  if (out !== null) {
    mkdirSync(path.dirname(out), { recursive: true });
    writeFileSync(out, JSON.stringify(result, null, 2) + '\n');
  }
  return result;
}

export function printConvBench(r: ConvBenchResult): void {
  console.log(`conv bench — ${r.backend}, ${r.node}, threads=${r.threads}, median of ${r.reps} interleaved reps, CPU ms (wall ms)`);
  for (const { case: c, variants, trainSpeedupVsIm2col } of r.cases) {
    console.log(`\n${c.name}`);
    console.log('  variant             forward             fwd+bwd   fwd+bwd vs im2col   rel. diff fwd / grads');
    for (const [n, v] of Object.entries(variants) as [VariantName, VariantTiming][]) {
      const fw = `${v.forwardMs.toFixed(2)} (${v.forwardWallMs.toFixed(1)})`.padStart(16);
      const train = (v.trainMs === null || v.trainWallMs === null ? '—' : `${v.trainMs.toFixed(2)} (${v.trainWallMs.toFixed(1)})`).padStart(18);
      const sp = trainSpeedupVsIm2col[n];
      const note = v.trainError ? `  (no gradient: ${v.trainError.slice(0, 60)})` : '';
      console.log(
        `  ${n.padEnd(15)} ${fw} ${train} ${(sp ? sp.toFixed(2) + 'x' : '').padStart(12)}        ${v.forwardRelDiff.toExponential(1)} / ${v.gradRelDiff === null ? '—' : v.gradRelDiff.toExponential(1)}${note}`,
      );
    }
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const quick = process.argv.includes('--quick');
  runConvBench(quick ? { reps: 5 } : {})
    .then(printConvBench)
    .catch((err: unknown) => {
      console.error(err);
      process.exit(1);
    });
}
