import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { setBackend } from '../../src/backend/backend.js';
import {
  GEMM_MIN_ROWS,
  installWasmMatMulFix,
  MIN_SPLIT_MACS,
  setWasmMatMulOptions,
  wasmMatMulFixInstalled,
  wasmMatMulStats,
} from '../../src/backend/wasmMatMul.js';
import { markWritten } from '../../src/train/hostMemory.js';

/** Deterministic, non-symmetric test data (no RNG: identical on both backends). */
function data(shape: number[], seed: number): Float32Array {
  const n = shape.reduce((p, d) => p * d, 1);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.sin(0.37 * i + seed) + 0.25 * Math.cos(1.3 * i * seed + 0.1);
  return out;
}

interface Result {
  shape: number[];
  values: Float32Array;
}

async function onBackend(name: 'cpu' | 'wasm', f: () => tf.Tensor | tf.Tensor[]): Promise<Result[]> {
  await tf.setBackend(name);
  const out = tf.tidy(f);
  const list = Array.isArray(out) ? out : [out];
  const res = list.map((t) => ({ shape: t.shape, values: t.dataSync() as Float32Array }));
  tf.dispose(list);
  return res;
}

/** Run `f` on cpu (reference) and wasm; compare shapes and values. */
async function expectSameAsCpu(f: () => tf.Tensor | tf.Tensor[], tol = 2e-4): Promise<void> {
  const ref = await onBackend('cpu', f);
  const got = await onBackend('wasm', f);
  expect(got.length).toBe(ref.length);
  for (let i = 0; i < ref.length; i++) {
    expect(got[i].shape).toEqual(ref[i].shape);
    let maxAbs = 0;
    let maxDiff = 0;
    for (let j = 0; j < ref[i].values.length; j++) {
      maxAbs = Math.max(maxAbs, Math.abs(ref[i].values[j]));
      maxDiff = Math.max(maxDiff, Math.abs(ref[i].values[j] - got[i].values[j]));
    }
    expect(maxDiff).toBeLessThanOrEqual(tol * Math.max(1, maxAbs));
  }
}

/** Operand shapes for C = op(A) op(B) with op(A): [..., m, k], op(B): [..., k, n]. */
function operandShapes(
  batchA: number[],
  batchB: number[],
  m: number,
  k: number,
  n: number,
  tA: boolean,
  tB: boolean,
): [number[], number[]] {
  return [
    [...batchA, ...(tA ? [k, m] : [m, k])],
    [...batchB, ...(tB ? [n, k] : [k, n])],
  ];
}

const COMBOS: [boolean, boolean][] = [
  [false, false],
  [true, false],
  [false, true],
  [true, true],
];

// [name, batchA, batchB, m, k, n]
const CASES: [string, number[], number[], number, number, number][] = [
  ['2D', [], [], 37, 53, 29],
  ['2D row vector', [], [], 1, 64, 48],
  ['3D batched, split path', [3], [3], 17, 33, 21],
  ['3D batched, small (stock loop)', [4], [4], 5, 6, 7],
  ['3D x 2D (folded)', [5], [], 20, 30, 40],
  ['2D x 3D (left operand broadcast)', [], [4], 20, 30, 25],
  ['4D broadcast batch dims', [2, 1], [1, 3], 9, 31, 40],
  ['3D with batch 1', [1], [1], 24, 16, 12],
];

describe('installWasmMatMulFix', () => {
  beforeAll(async () => {
    await setBackend('wasm');
  });
  afterAll(async () => {
    await tf.setBackend('wasm');
    tf.env().set('IS_TEST', false);
  });

  it('replaces the wasm kernels once (idempotent)', () => {
    expect(installWasmMatMulFix()).toBe(true);
    expect(wasmMatMulFixInstalled()).toBe(true);
    const k1 = tf.getKernel('BatchMatMul', 'wasm')?.kernelFunc;
    const f1 = tf.getKernel('_FusedMatMul', 'wasm')?.kernelFunc;
    expect(installWasmMatMulFix()).toBe(true);
    expect(tf.getKernel('BatchMatMul', 'wasm')?.kernelFunc).toBe(k1);
    expect(tf.getKernel('_FusedMatMul', 'wasm')?.kernelFunc).toBe(f1);
    // The stock setupFunc is kept so a re-initialised backend still binds its C++ entry.
    expect(tf.getKernel('BatchMatMul', 'wasm')?.setupFunc).toBeTypeOf('function');
  });

  it('split threshold sits between the sizes the cases use', () => {
    expect(5 * 6 * 7).toBeLessThan(MIN_SPLIT_MACS);
    expect(17 * 33 * 21).toBeGreaterThanOrEqual(MIN_SPLIT_MACS);
  });

  for (const [name, bA, bB, m, k, n] of CASES) {
    for (const [tA, tB] of COMBOS) {
      it(`matMul ${name}, transposeA=${tA} transposeB=${tB} matches cpu`, async () => {
        const [sa, sb] = operandShapes(bA, bB, m, k, n, tA, tB);
        await expectSameAsCpu(() => tf.matMul(tf.tensor(data(sa, 1), sa), tf.tensor(data(sb, 2), sb), tA, tB));
      });
    }
  }

  for (const [tA, tB] of COMBOS) {
    for (const batched of [false, true]) {
      it(`fused matMul + bias + relu, ${batched ? '3D' : '2D'}, transposeA=${tA} transposeB=${tB} matches cpu`, async () => {
        const batch = batched ? [3] : [];
        const [sa, sb] = operandShapes(batch, batch, 19, 27, 23, tA, tB);
        await expectSameAsCpu(() =>
          tf.fused.matMul({
            a: tf.tensor(data(sa, 3), sa),
            b: tf.tensor(data(sb, 4), sb),
            transposeA: tA,
            transposeB: tB,
            bias: tf.tensor1d(data([23], 5)),
            activation: 'relu',
          }),
        );
      });
    }
  }

  it('fused matMul: 3D x 2D with bias, prelu and leakyrelu match cpu', async () => {
    const a = [4, 10, 16];
    const b = [12, 16];
    for (const activation of ['linear', 'prelu', 'leakyrelu', 'sigmoid'] as const) {
      await expectSameAsCpu(() =>
        tf.fused.matMul({
          a: tf.tensor(data(a, 6), a),
          b: tf.tensor(data(b, 7), b),
          transposeB: true,
          bias: tf.tensor1d(data([12], 8)),
          activation,
          preluActivationWeights: activation === 'prelu' ? tf.tensor1d(data([12], 9)) : undefined,
          leakyreluAlpha: 0.1,
        }),
      );
    }
  });

  for (const [tA, tB] of COMBOS) {
    for (const batch of [[], [2]] as number[][]) {
      it(`gradients of matMul (${batch.length ? '3D' : '2D'}, transposeA=${tA} transposeB=${tB}) match cpu`, async () => {
        const [sa, sb] = operandShapes(batch, batch, 24, 40, 36, tA, tB);
        const w = [...batch, 24, 36];
        await expectSameAsCpu(() => {
          const a = tf.tensor(data(sa, 10), sa);
          const b = tf.tensor(data(sb, 11), sb);
          const weights = tf.tensor(data(w, 12), w);
          const g = tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.mul(tf.matMul(x, y, tA, tB), weights)));
          return g([a, b]);
        });
      });
    }
  }

  it('gradients of a fused dense layer (bias + relu) match cpu', async () => {
    await expectSameAsCpu(() => {
      const x = tf.tensor(data([32, 48], 13), [32, 48]);
      const w = tf.tensor(data([48, 40], 14), [48, 40]);
      const b = tf.tensor1d(data([40], 15));
      const g = tf.grads((xx: tf.Tensor, ww: tf.Tensor, bb: tf.Tensor) =>
        tf.sum(tf.square(tf.fused.matMul({ a: xx as tf.Tensor2D, b: ww as tf.Tensor2D, bias: bb, activation: 'relu' }))),
      );
      return g([x, w, b]);
    });
  });

  it('leaks neither engine tensors nor backend buffers', async () => {
    await tf.setBackend('wasm');
    // IS_TEST makes the engine check every kernel's data-id balance (throws on a leak).
    tf.env().set('IS_TEST', true);
    const backend = tf.backend();
    const a = tf.tensor(data([3, 40, 30], 1), [3, 40, 30]);
    const b = tf.tensor(data([3, 50, 30], 2), [3, 50, 30]);
    const bias = tf.tensor1d(data([50], 3));
    const tensorsBefore = tf.memory().numTensors;
    const idsBefore = backend.numDataIds();
    for (const [tA, tB] of COMBOS) {
      tf.tidy(() => {
        const x = tA ? tf.transpose(a, [0, 2, 1]) : a;
        const y = tB ? b : tf.transpose(b, [0, 2, 1]);
        tf.matMul(x, y, tA, tB).dataSync();
        tf.fused.matMul({ a: x, b: y, transposeA: tA, transposeB: tB, bias, activation: 'relu' }).dataSync();
        const g = tf.grads((p: tf.Tensor, q: tf.Tensor) => tf.sum(tf.matMul(p, q, tA, tB)));
        g([x, y]).forEach((t) => t.dataSync());
      });
    }
    expect(tf.memory().numTensors).toBe(tensorsBefore);
    expect(backend.numDataIds()).toBe(idsBefore);
    tf.dispose([a, b, bias]);
    tf.env().set('IS_TEST', false);
  });

  it('the SIMD transpose (sides multiples of 4) gives the same products and gradients as the backend kernel', async () => {
    await tf.setBackend('wasm');
    // 132 x 200: three full 64-column bands and a partial one; batched operands too.
    const cases: [number[], number[], boolean, boolean][] = [
      [[132, 200], [96, 200], false, true],
      [[200, 132], [200, 44], true, false],
      [[3, 68, 20], [3, 68, 36], true, false],
      [[2, 36, 68], [2, 52, 68], false, true],
    ];
    for (const [sa, sb, tA, tB] of cases) {
      const run = (simd: boolean): Float32Array[] => {
        setWasmMatMulOptions({ simdKernels: simd });
        return tf.tidy(() => {
          const a = tf.tensor(data(sa, 1), sa);
          const b = tf.tensor(data(sb, 2), sb);
          const g = tf.grads((p: tf.Tensor, q: tf.Tensor) => tf.sum(tf.square(tf.matMul(p, q, tA, tB))));
          return [tf.matMul(a, b, tA, tB), ...g([a, b])].map((t) => t.dataSync() as Float32Array);
        });
      };
      const before = wasmMatMulStats().simdTransposes;
      const fast = run(true);
      expect(wasmMatMulStats().simdTransposes).toBeGreaterThan(before);
      const mid = wasmMatMulStats().simdTransposes;
      const stock = run(false);
      expect(wasmMatMulStats().simdTransposes).toBe(mid);
      // A transpose moves values without arithmetic, so the products are bit-identical.
      fast.forEach((v, i) => expect(Array.from(v)).toEqual(Array.from(stock[i])));
    }
    setWasmMatMulOptions({ simdKernels: true });
  });

  it('a transposed product computed as the transpose of the swapped product is bit-identical and taken only when it packs less', async () => {
    await tf.setBackend('wasm');
    // XNNPACK's route (the no-packing kernel, tested below, takes these products by default).
    setWasmMatMulOptions({ simdKernels: true, ownGemm: false });
    // [a shape, b shape, transposeA, transposeB, swap expected]: the input gradient of a dense
    // layer with batch < width (dY Wᵀ) swaps; a weight gradient (Xᵀ dY, batch < width) does not.
    const cases: [number[], number[], boolean, boolean, boolean][] = [
      [[64, 128], [128, 128], false, true, true],
      [[64, 128], [64, 128], true, false, false],
      [[128, 64], [96, 128], true, true, true],
      [[128, 32], [128, 32], false, true, false],
      [[20, 36], [40, 36], false, true, true],
    ];
    for (const [sa, sb, tA, tB, swap] of cases) {
      const run = (on: boolean): { bits: number[]; swapped: number } => {
        setWasmMatMulOptions({ operandSwap: on });
        const before = wasmMatMulStats().swappedProducts;
        const bits = tf.tidy(() => {
          const r = tf.matMul(tf.tensor2d(data(sa, 1), [sa[0], sa[1]]), tf.tensor2d(data(sb, 2), [sb[0], sb[1]]), tA, tB);
          return Array.from(new Uint32Array((r.dataSync() as Float32Array).slice().buffer));
        });
        return { bits, swapped: wasmMatMulStats().swappedProducts - before };
      };
      const tensorsBefore = tf.memory().numTensors;
      const on = run(true);
      const off = run(false);
      expect(tf.memory().numTensors).toBe(tensorsBefore);
      expect(on.swapped).toBe(swap ? 1 : 0);
      expect(off.swapped).toBe(0);
      expect(on.bits).toEqual(off.bits);
    }
    setWasmMatMulOptions({ operandSwap: true, ownGemm: true });
    expect(() => setWasmMatMulOptions({ operandSwap: 'yes' as unknown as boolean })).toThrow(/operandSwap must be a boolean/);
  });

  it('the no-packing product kernel takes transposed products and freshly rewritten weights, bit-identical to XNNPACK', async () => {
    await tf.setBackend('wasm');
    setWasmMatMulOptions({ simdKernels: true, ownGemm: true });
    // [m, k, n]: blocks of 4 rows and a tail of single rows (37, 13), odd inner sizes, and
    // n not a multiple of 8 (20: only the swapped form, m = 16, fits the kernel; 12 x 20: neither).
    // With k a multiple of 4 (96, 48) a transposed B is read in place, its panels transposed by
    // the kernel (37 x 48: in both the 4-row blocks and the row tail).
    const shapes: [number, number, number][] = [[64, 96, 128], [37, 48, 24], [37, 53, 24], [13, 7, 16], [16, 24, 20], [12, 24, 20]];
    for (const [m, k, n] of shapes) {
      for (const [tA, tB] of [[false, false], [false, true], [true, false], [true, true]] as const) {
        const a = tf.tensor2d(data([m * k], 1), tA ? [k, m] : [m, k]);
        const w = tf.variable(tf.tensor2d(data([k * n], 2), tB ? [n, k] : [k, n]));
        const product = (): number[] => tf.tidy(() => Array.from(new Uint32Array((tf.matMul(a, w as unknown as tf.Tensor2D, tA, tB).dataSync() as Float32Array).slice().buffer)));
        setWasmMatMulOptions({ ownGemm: false });
        const reference = product();
        setWasmMatMulOptions({ ownGemm: true });
        const tensorsBefore = tf.memory().numTensors;
        markWritten(w);
        const g0 = wasmMatMulStats().gemmCalls;
        const p0 = wasmMatMulStats().transposedPanels;
        const fresh = product();
        const g1 = wasmMatMulStats().gemmCalls;
        expect(wasmMatMulStats().transposedPanels - p0).toBe(tB && k % 4 === 0 && n % 8 === 0 ? 1 : 0);
        const again = product();
        const g2 = wasmMatMulStats().gemmCalls;
        expect(tf.memory().numTensors).toBe(tensorsBefore);
        const fits = n % 8 === 0 || m % 8 === 0;
        expect(g1 - g0).toBe(fits ? 1 : 0);
        // A plain product with weights it has seen since their rewrite goes back to XNNPACK,
        // which packs them once and keeps them, unless it has GEMM_MIN_ROWS rows or more;
        // transposed products stay in the kernel.
        expect(g2 - g1).toBe(fits && (tA || tB || m >= GEMM_MIN_ROWS) ? 1 : 0);
        expect(fresh).toEqual(reference);
        expect(again).toEqual(reference);
        tf.dispose([a, w]);
      }
    }
    expect(() => setWasmMatMulOptions({ ownGemm: 1 as unknown as boolean })).toThrow(/ownGemm must be a boolean/);
  });

  it('fused products (bias per column, linear or ReLU) in the no-packing kernel are bit-identical to XNNPACK', async () => {
    await tf.setBackend('wasm');
    setWasmMatMulOptions({ simdKernels: true, ownGemm: true });
    for (const [m, k, n] of [[37, 53, 24], [64, 32, 16]] as [number, number, number][]) {
      for (const [tA, tB] of [[false, false], [false, true], [true, false]] as const) {
        for (const activation of ['linear', 'relu'] as const) {
          for (const withBias of [true, false]) {
            const a = tf.tensor2d(data([m * k], 3), tA ? [k, m] : [m, k]);
            const w = tf.variable(tf.tensor2d(data([k * n], 4), tB ? [n, k] : [k, n]));
            const bias = tf.tensor1d(data([n], 5));
            const product = (): number[] =>
              tf.tidy(() => {
                const r = tf.fused.matMul({ a, b: w as unknown as tf.Tensor2D, transposeA: tA, transposeB: tB, bias: withBias ? bias : undefined, activation });
                return Array.from(new Uint32Array((r.dataSync() as Float32Array).slice().buffer));
              });
            setWasmMatMulOptions({ ownGemm: false });
            const reference = product();
            setWasmMatMulOptions({ ownGemm: true });
            markWritten(w);
            const g0 = wasmMatMulStats().gemmCalls;
            const got = product();
            expect(wasmMatMulStats().gemmCalls - g0).toBe(1);
            expect(got).toEqual(reference);
            if (activation === 'relu') expect(got.some((bits) => bits === 0)).toBe(true);
            tf.dispose([a, w, bias]);
          }
        }
      }
    }
  });

  it('sums over leading axes (bias gradients) are column sums, bit-identical to the stock kernel', async () => {
    await tf.setBackend('wasm');
    // [shape, axis, keepDims]: leading axes in several spellings, odd and multiple-of-4 widths.
    const cases: [number[], number | number[], boolean][] = [
      [[256, 512], 0, false],
      [[37, 53], 0, true],
      [[3, 5, 7], [0, 1], false],
      [[3, 5, 7], [0, 1], true],
      [[4, 6, 10], [-3], false],
    ];
    for (const [shape, axis, keepDims] of cases) {
      const run = (simd: boolean): { shape: number[]; bits: number[] } => {
        setWasmMatMulOptions({ simdKernels: simd });
        return tf.tidy(() => {
          const x = tf.tensor(data(shape, 3).map((v, i) => v * (1 + (i % 7) * 1e3)), shape);
          const s = tf.sum(x, axis, keepDims);
          return { shape: s.shape, bits: Array.from(new Uint32Array((s.dataSync() as Float32Array).slice().buffer)) };
        });
      };
      const before = wasmMatMulStats().simdSums;
      const fast = run(true);
      expect(wasmMatMulStats().simdSums).toBe(before + 1);
      const stock = run(false);
      expect(wasmMatMulStats().simdSums).toBe(before + 1);
      expect(fast.shape).toEqual(stock.shape);
      expect(fast.bits).toEqual(stock.bits);
    }
    // Innermost and whole-tensor sums stay with the stock kernel.
    setWasmMatMulOptions({ simdKernels: true });
    const before = wasmMatMulStats().simdSums;
    tf.tidy(() => {
      const x = tf.tensor(data([6, 8], 1), [6, 8]);
      tf.sum(x, 1).dataSync();
      tf.sum(x).dataSync();
      // Leading axes listed out of order: the stock kernel sums in that order, so it keeps them.
      tf.sum(tf.reshape(x, [2, 3, 8]), [1, 0]).dataSync();
    });
    expect(wasmMatMulStats().simdSums).toBe(before);
  });

  it('routes transposed and batched products to the fast (XNNPACK) form', async () => {
    // Not a timing assertion (timings are in benchmarks/matmul.ts): the fast form is the one
    // the stock kernel hands to XNNPACK, the slow form the one that runs its naive loop.
    await tf.setBackend('wasm');
    setWasmMatMulOptions({ ownGemm: false });
    const before = wasmMatMulStats();
    tf.tidy(() => {
      const a = tf.tensor(data([64, 96], 1), [64, 96]);
      const b = tf.tensor(data([80, 96], 2), [80, 96]);
      const c = tf.tensor(data([64, 50], 3), [64, 50]);
      // a b^T (64 x 96 x 80): swapped, (b a^T)^T: a^T and the result transposed, one fast call
      tf.matMul(a, b, false, true).dataSync();
      tf.matMul(a, c, true, false).dataSync(); // a^T c: one transpose, one fast call
    });
    const mid = wasmMatMulStats();
    expect(mid.slowCalls).toBe(before.slowCalls);
    expect(mid.fastCalls - before.fastCalls).toBe(2);
    expect(mid.swappedProducts - before.swappedProducts).toBe(1);
    expect(mid.transposes - before.transposes).toBe(3);
    tf.tidy(() => {
      const a = tf.tensor(data([4, 32, 48], 1), [4, 32, 48]);
      const b = tf.tensor(data([4, 48, 40], 2), [4, 48, 40]);
      tf.matMul(a, b).dataSync(); // split into 4 fast calls
    });
    const after = wasmMatMulStats();
    expect(after.slowCalls).toBe(mid.slowCalls);
    expect(after.fastCalls - mid.fastCalls).toBe(4);
    setWasmMatMulOptions({ ownGemm: true });
  });
});
