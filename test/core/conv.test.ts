/**
 * conv1d / conv2d (src/nn/blocks.ts): forward and gradients against tfjs's native convolutions
 * on the cpu backend (which has every conv gradient kernel), against finite differences, on
 * both the cpu and the wasm backend; no tensor leaks.
 *
 * Padding: 'same', (k-1)/2 on each side for odd k; a stride s keeps positions 0, s, 2s, ... of
 * the stride-1 result. For odd k that is tf.conv1d/conv2d with pad 'same' at stride 1 and with
 * the numeric pad (k-1)/2 at any stride.
 */
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setBackend, type BackendName } from '../../src/backend/backend.js';
import { conv1d, conv2d } from '../../src/nn/blocks.js';
import { ParamStore } from '../../src/nn/params.js';
import { Rng } from '../../src/rng/rng.js';

const BACKENDS = ['cpu', 'wasm'] as const;
// The backend test/setup.ts selected (wasm unless SCOREFLOW_BACKEND=cpu); restored after each switch.
let initialBackend: BackendName = 'wasm';
beforeAll(() => {
  initialBackend = tf.getBackend() as BackendName;
});
afterAll(async () => {
  await setBackend(initialBackend);
});

function pseudoRandom(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 2 ** 32 - 0.5) * 2;
  }
  return out;
}

interface Case {
  dims: 1 | 2;
  /** Input shape: [B, L, C] or [B, H, W, C]. */
  x: number[];
  outC: number;
  kernel: number;
  stride: number;
}

interface Data {
  x: Float32Array;
  w: Float32Array;
  b: Float32Array;
  /** Weights of the loss sum(r * y). */
  r: Float32Array;
  wShape: number[];
  yShape: number[];
}

const size = (shape: number[]): number => shape.reduce((p, q) => p * q, 1);

function makeData(c: Case, seed = 1): Data {
  const inC = c.x[c.x.length - 1];
  const wShape = c.dims === 1 ? [c.kernel, inC, c.outC] : [c.kernel, c.kernel, inC, c.outC];
  const spatial = c.x.slice(1, -1).map((n) => Math.ceil(n / c.stride));
  const yShape = [c.x[0], ...spatial, c.outC];
  return { x: pseudoRandom(size(c.x), seed), w: pseudoRandom(size(wShape), seed + 1), b: pseudoRandom(c.outC, seed + 2), r: pseudoRandom(size(yShape), seed + 3), wShape, yShape };
}

/** A store that hands conv1d/conv2d the given tensors as its weight and bias. */
function fixedStore(w: tf.Tensor, b: tf.Tensor): ParamStore {
  return { param: (name: string) => (name.endsWith('/w') ? w : b) } as unknown as ParamStore;
}

type ConvFn = (x: tf.Tensor, w: tf.Tensor, b: tf.Tensor) => tf.Tensor;

const ours = (c: Case): ConvFn => (x, w, b) => (c.dims === 1 ? conv1d : conv2d)(fixedStore(w, b), 'c', x, c.outC, c.kernel, { stride: c.stride });

/**
 * tfjs's own convolution (differentiable on cpu only): pad 'same' at stride 1, (k-1)/2 on each
 * side otherwise. tf.conv1d applies a numeric pad to its internal dummy height axis too (wrong
 * shapes), so strided 1D goes through tf.conv2d on [B, 1, L, C] with explicit padding.
 */
const native = (c: Case): ConvFn => (x, w, b) => {
  const p = (c.kernel - 1) / 2;
  let y: tf.Tensor;
  if (c.dims === 2) y = tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, c.stride, c.stride === 1 ? 'same' : p);
  else if (c.stride === 1) y = tf.conv1d(x as tf.Tensor3D, w as tf.Tensor3D, 1, 'same');
  else {
    const [B, L, C] = x.shape;
    const y4 = tf.conv2d(tf.reshape(x, [B, 1, L, C]) as tf.Tensor4D, tf.expandDims(w, 0) as tf.Tensor4D, [1, c.stride], [[0, 0], [0, 0], [p, p], [0, 0]]);
    y = tf.squeeze(y4, [1]);
  }
  return tf.add(y, b);
};

/** Output and gradients (x, W, b) of sum(r * f(x, W, b)), as plain arrays. */
function run(f: ConvFn, c: Case, d: Data): { y: Float32Array; yShape: number[]; dx: Float32Array; dw: Float32Array; db: Float32Array } {
  return tf.tidy(() => {
    const x = tf.tensor(d.x, c.x);
    const w = tf.tensor(d.w, d.wShape);
    const b = tf.tensor(d.b, [c.outC]);
    const y = f(x, w, b);
    const r = tf.tensor(d.r, y.shape);
    const [dx, dw, db] = tf.grads((x: tf.Tensor, w: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(f(x, w, b), r)))([x, w, b]);
    expect(dx.shape).toEqual(c.x);
    expect(dw.shape).toEqual(d.wShape);
    return { y: y.dataSync() as Float32Array, yShape: y.shape, dx: dx.dataSync() as Float32Array, dw: dw.dataSync() as Float32Array, db: db.dataSync() as Float32Array };
  });
}

/** max |a - b| / max |b| (b non-zero). */
function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let d = 0;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    m = Math.max(m, Math.abs(b[i]));
  }
  return d / m;
}

/** Run fn on a backend (through setBackend, which also starts wasm when the suite runs on cpu). */
async function onBackend<T>(name: BackendName, fn: () => T): Promise<T> {
  await setBackend(name);
  try {
    return fn();
  } finally {
    await setBackend(initialBackend);
  }
}

const cases: Case[] = [];
for (const kernel of [1, 3, 5]) {
  for (const stride of [1, 2]) {
    cases.push({ dims: 1, x: [3, 8, 4], outC: 5, kernel, stride });
    cases.push({ dims: 1, x: [2, 7, 3], outC: 2, kernel, stride });
    cases.push({ dims: 2, x: [2, 6, 6, 3], outC: 4, kernel, stride });
    cases.push({ dims: 2, x: [2, 5, 7, 2], outC: 3, kernel, stride });
  }
}
const label = (c: Case): string => `${c.dims}d x=[${c.x.join(',')}] -> ${c.outC}, k=${c.kernel}, stride ${c.stride}`;

describe.each(BACKENDS)('on %s: matches tfjs native convolutions on cpu', (backend) => {
  it.each(cases.map((c) => [label(c), c] as const))('%s', async (_, c) => {
    const d = makeData(c);
    const ref = await onBackend('cpu', () => run(native(c), c, d));
    const got = await onBackend(backend, () => run(ours(c), c, d));
    expect(got.yShape).toEqual(d.yShape);
    expect(ref.yShape).toEqual(d.yShape);
    expect(relErr(got.y, ref.y)).toBeLessThan(1e-5);
    expect(relErr(got.dx, ref.dx)).toBeLessThan(1e-5);
    expect(relErr(got.dw, ref.dw)).toBeLessThan(1e-5);
    expect(relErr(got.db, ref.db)).toBeLessThan(1e-5);
  });
});

describe('semantics', () => {
  it.each([
    [1, 3, 2],
    [1, 5, 2],
    [2, 3, 2],
    [1, 3, 3],
  ] as const)('%dd, k=%d: stride %d keeps positions 0, s, 2s, ... of the stride-1 output', (dims, kernel, stride) => {
    const c: Case = dims === 1 ? { dims, x: [2, 9, 3], outC: 2, kernel, stride } : { dims, x: [2, 9, 9, 3], outC: 2, kernel, stride };
    const d = makeData(c);
    tf.tidy(() => {
      const [x, w, b] = [tf.tensor(d.x, c.x), tf.tensor(d.w, d.wShape), tf.tensor(d.b, [c.outC])];
      const full = ours({ ...c, stride: 1 })(x, w, b);
      const strided = ours(c)(x, w, b);
      const steps = full.shape.map((_, i) => (i === 0 || i === full.rank - 1 ? 1 : stride));
      const picked = tf.stridedSlice(full, full.shape.map(() => 0), full.shape, steps);
      expect(strided.shape).toEqual(picked.shape);
      expect(relErr(strided.dataSync(), picked.dataSync())).toBeLessThan(1e-6);
    });
  });

  it('even kernels pad (k-2)/2 before and k/2 after, like tf "same" at stride 1', async () => {
    for (const dims of [1, 2] as const) {
      const c: Case = dims === 1 ? { dims, x: [2, 8, 3], outC: 2, kernel: 4, stride: 1 } : { dims, x: [2, 6, 6, 3], outC: 2, kernel: 2, stride: 1 };
      const d = makeData(c);
      const ref = await onBackend('cpu', () => run(native(c), c, d));
      const got = run(ours(c), c, d);
      expect(relErr(got.y, ref.y)).toBeLessThan(1e-5);
      expect(relErr(got.dx, ref.dx)).toBeLessThan(1e-5);
      expect(relErr(got.dw, ref.dw)).toBeLessThan(1e-5);
    }
  });
});

describe('gradients match finite differences', () => {
  // The loss sum(r * conv(x, W) + b) is linear in x and in W separately, so central differences
  // are exact up to float32 rounding even with a large step.
  const fdCases: Case[] = [
    { dims: 1, x: [2, 8, 3], outC: 2, kernel: 3, stride: 2 },
    { dims: 1, x: [2, 7, 3], outC: 3, kernel: 5, stride: 1 },
    { dims: 2, x: [1, 5, 6, 2], outC: 2, kernel: 3, stride: 2 },
  ];
  it.each(fdCases.map((c) => [label(c), c] as const))('%s', (_, c) => {
    const d = makeData(c, 7);
    const got = run(ours(c), c, d);
    const loss = (x: Float32Array, w: Float32Array): number =>
      tf.tidy(() => tf.sum(tf.mul(ours(c)(tf.tensor(x, c.x), tf.tensor(w, d.wShape), tf.tensor(d.b, [c.outC])), tf.tensor(d.r, d.yShape))).dataSync()[0]);
    const h = 0.5;
    const check = (which: 'x' | 'w', analytic: Float32Array): void => {
      const base = which === 'x' ? d.x : d.w;
      const scale = Math.max(...Array.from(analytic, Math.abs));
      for (let i = 0; i < base.length; i += Math.max(1, Math.floor(base.length / 12))) {
        const plus = base.slice();
        const minus = base.slice();
        plus[i] += h;
        minus[i] -= h;
        const fd = which === 'x' ? (loss(plus, d.w) - loss(minus, d.w)) / (2 * h) : (loss(d.x, plus) - loss(d.x, minus)) / (2 * h);
        expect(Math.abs(fd - analytic[i]) / scale).toBeLessThan(1e-4);
      }
    };
    check('x', got.dx);
    check('w', got.dw);
  });
});

describe('parameters and memory', () => {
  it('keeps weight names and shapes, and trains through a ParamStore', () => {
    const store = new ParamStore(new Rng(3));
    const loss = (): tf.Scalar =>
      tf.tidy(() => {
        const h = conv1d(store, 'a', tf.ones([2, 8, 3]), 4, 5, { stride: 2 });
        expect(h.shape).toEqual([2, 4, 4]);
        const y = conv2d(store, 'b', tf.reshape(h, [2, 4, 4, 1]), 2, 3);
        expect(y.shape).toEqual([2, 4, 4, 2]);
        return tf.sum(tf.square(y));
      });
    tf.dispose(loss());
    expect(store.names().sort()).toEqual(['a/b', 'a/w', 'b/b', 'b/w']);
    expect(store.get('a/w').shape).toEqual([5, 3, 4]);
    expect(store.get('a/b').shape).toEqual([4]);
    expect(store.get('b/w').shape).toEqual([3, 3, 1, 2]);
    const { value, grads } = tf.variableGrads(loss, store.variables());
    for (const name of store.names()) {
      const g = grads[store.get(name).name];
      expect(g.shape).toEqual(store.get(name).shape);
      expect(tf.sum(tf.abs(g)).dataSync()[0]).toBeGreaterThan(0);
    }
    tf.dispose([value, ...Object.values(grads)]);
    store.dispose();
  });

  it.each(BACKENDS)('leaves no tensors behind on %s (forward, and forward + backward)', async (backend) => {
    await onBackend(backend, () => {
      for (const c of [cases[0], { dims: 1, x: [2, 7, 3], outC: 2, kernel: 3, stride: 2 } as Case, cases[cases.length - 1]]) {
        const d = makeData(c);
        const [x, w, b, r] = [tf.tensor(d.x, c.x), tf.tensor(d.w, d.wShape), tf.tensor(d.b, [c.outC]), tf.tensor(d.r, d.yShape)];
        const before = tf.memory().numTensors;
        const y = tf.tidy(() => ours(c)(x, w, b));
        expect(tf.memory().numTensors).toBe(before + 1);
        y.dispose();
        const grads = tf.grads((x: tf.Tensor, w: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(ours(c)(x, w, b), r)))([x, w, b]);
        expect(tf.memory().numTensors).toBe(before + 3);
        tf.dispose(grads);
        expect(tf.memory().numTensors).toBe(before);
        tf.dispose([x, w, b, r]);
      }
    });
  });
});
