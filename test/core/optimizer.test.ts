/**
 * AdamOptimizer (src/train/optimizer.ts): the fused in-place update equals Adam/AdamW written
 * out with tensor ops; in-place writes reach the kernels that cache packed weights (WASM
 * XNNPACK matMul); parameters sharing storage with another tensor are not written through;
 * the WebAssembly SIMD kernel and the JavaScript loop give the same bits.
 */
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { ParamStore } from '../../src/nn/params.js';
import { Rng } from '../../src/rng/rng.js';
import { markWritten, writableHostView } from '../../src/train/hostMemory.js';
import { AdamOptimizer } from '../../src/train/optimizer.js';

function reference(p: tf.Tensor, grads: tf.Tensor[], opts: { lr: number; b1: number; b2: number; eps: number; wd: number; kind: 'adam' | 'adamw'; clip?: number }): Float32Array {
  return tf.tidy(() => {
    let x = p;
    let m = tf.zerosLike(p);
    let v = tf.zerosLike(p);
    grads.forEach((g0, i) => {
      const step = i + 1;
      const norm = tf.norm(g0).dataSync()[0];
      let g = opts.clip && norm > opts.clip ? tf.mul(g0, opts.clip / (norm + 1e-12)) : g0;
      if (opts.kind === 'adam') g = tf.add(g, tf.mul(x, opts.wd));
      m = tf.add(tf.mul(m, opts.b1), tf.mul(g, 1 - opts.b1));
      v = tf.add(tf.mul(v, opts.b2), tf.mul(tf.square(g), 1 - opts.b2));
      const mh = tf.div(m, 1 - opts.b1 ** step);
      const vh = tf.div(v, 1 - opts.b2 ** step);
      let next = tf.sub(x, tf.mul(opts.lr, tf.div(mh, tf.add(tf.sqrt(vh), opts.eps))));
      if (opts.kind === 'adamw') next = tf.sub(next, tf.mul(x, opts.lr * opts.wd));
      x = next;
    });
    return x.dataSync() as Float32Array;
  });
}

describe('AdamOptimizer', () => {
  for (const [kind, precision] of [['adam', 'float32'], ['adamw', 'float32'], ['adam', 'float64'], ['adamw', 'float64']] as const) {
    it(`${kind} (${precision}): five fused steps equal the textbook update (with clipping and decay)`, () => {
      const store = new ParamStore(new Rng(1));
      const w = store.param('w', [7, 5], 'glorot');
      const start = w.clone();
      const rng = new Rng(2);
      const grads = Array.from({ length: 5 }, () => tf.mul(rng.normal([7, 5]), 3));
      const opt = new AdamOptimizer(store, { kind, weightDecay: 0.01, precision });
      for (const g of grads) opt.apply({ w: g }, 0.05, 1);
      const ref = reference(start, grads, { lr: 0.05, b1: 0.9, b2: 0.999, eps: 1e-8, wd: 0.01, kind, clip: 1 });
      const got = store.get('w').dataSync();
      for (let i = 0; i < ref.length; i++) expect(got[i]).toBeCloseTo(ref[i], 5);
      tf.dispose([start, ...grads]);
      opt.dispose();
      store.dispose();
    });
  }

  it('markWritten: conv2d sees values written in place (WASM caches XNNPACK operators with packed weights by tensor id)', () => {
    const w = tf.tidy(() => tf.variable(tf.ones([1, 3, 4, 4])));
    const x = tf.ones([2, 1, 8, 4]) as tf.Tensor4D;
    const conv = (): number => tf.tidy(() => tf.conv2d(x, w as unknown as tf.Tensor4D, 1, 'same').dataSync()[8]);
    expect(conv()).toBe(12);
    const view = writableHostView(w);
    expect(view).toBeDefined();
    view!.fill(2);
    markWritten(w);
    expect(conv()).toBe(24);
    tf.dispose([w, x]);
  });

  it('an updated weight is seen by matMul and EMA follows the parameters', () => {
    const store = new ParamStore(new Rng(3));
    const w = store.param('w', [16, 8], 'glorot');
    const x = tf.ones([32, 16]);
    const before = tf.matMul(x, w).dataSync().slice();
    const opt = new AdamOptimizer(store, { kind: 'adam', weightDecay: 0 });
    const ema = { values: opt.flatParams(), decay: 0.5 };
    const emaBefore = ema.values.slice();
    const g = tf.ones([16, 8]);
    opt.apply({ w: g }, 0.1, undefined, ema);
    const after = tf.matMul(x, store.get('w')).dataSync();
    // Adam's first step moves every entry by lr * sign(g) = 0.1; each output sums 16 entries.
    for (let i = 0; i < after.length; i++) expect(after[i]).toBeCloseTo(before[i] - 1.6, 4);
    const now = store.get('w').dataSync();
    for (let i = 0; i < now.length; i++) expect(ema.values[i]).toBeCloseTo(0.5 * emaBefore[i] + 0.5 * now[i], 6);
    tf.dispose([x, g]);
    opt.dispose();
    store.dispose();
  });

  it('does not write through storage shared with another tensor', () => {
    const store = new ParamStore(new Rng(4));
    const w = store.param('w', [3, 3], 'glorot');
    const alias = tf.reshape(w, [9]); // shares w's storage
    const snapshot = alias.dataSync().slice();
    const opt = new AdamOptimizer(store, { kind: 'adam', weightDecay: 0 });
    const g = tf.ones([3, 3]);
    opt.apply({ w: g }, 0.1);
    expect(Array.from(alias.dataSync())).toEqual(Array.from(snapshot));
    const moved = store.get('w').dataSync();
    for (let i = 0; i < 9; i++) expect(moved[i]).toBeCloseTo(snapshot[i] - 0.1, 5);
    tf.dispose([alias, g]);
    opt.dispose();
    store.dispose();
  });

  for (const [kind, precision] of [['adam', 'float32'], ['adamw', 'float32'], ['adam', 'float64'], ['adamw', 'float64']] as const) {
    it(`${kind} (${precision}): the SIMD kernel and the JavaScript loop give bit-identical parameters, moments and EMA`, () => {
      const run = (simd: boolean): { params: Float32Array[]; m: Float32Array[]; v: Float32Array[]; ema: Float32Array; norms: number[] } => {
        const store = new ParamStore(new Rng(6));
        // Odd sizes: every loop of the kernels runs (pairs, eight and four at a time, single tails).
        const shapes: Record<string, number[]> = { a: [7, 5], b: [3], c: [4, 4, 3], d: [13] };
        for (const [n, sh] of Object.entries(shapes)) store.param(n, sh, 'glorot');
        const opt = new AdamOptimizer(store, { kind, weightDecay: 0.02, precision }, undefined, { simd });
        expect(opt.simd).toBe(simd);
        const ema = { values: opt.flatParams(), decay: 0.9 };
        const rng = new Rng(7);
        const norms: number[] = [];
        for (let step = 0; step < 6; step++) {
          const grads: Record<string, tf.Tensor> = {};
          for (const [n, sh] of Object.entries(shapes)) grads[n] = tf.mul(rng.normal(sh), step % 2 ? 0.3 : 5);
          // Clipping on the large steps only, so both branches of the scale are taken.
          norms.push(step === 3 ? opt.applyFlat(opt.flatParams().map((x) => x * 0.1), 0.01, 2, ema).gradNorm : opt.apply(grads, 0.01, 2, ema).gradNorm);
          tf.dispose(Object.values(grads));
        }
        opt.syncState();
        const out = { params: opt.names.map((n) => store.get(n).dataSync().slice() as Float32Array), m: opt.names.map((n) => opt.m.get(n).dataSync().slice() as Float32Array), v: opt.names.map((n) => opt.v.get(n).dataSync().slice() as Float32Array), ema: ema.values.slice(), norms };
        opt.dispose();
        store.dispose();
        return out;
      };
      const js = run(false);
      const simd = run(true);
      const bits = (xs: Float32Array[]): number[] => xs.flatMap((x) => Array.from(new Uint32Array(x.buffer, x.byteOffset, x.length)));
      expect(simd.norms).toEqual(js.norms);
      expect(js.norms.some((n) => n > 2) && js.norms.some((n) => n < 2)).toBe(true);
      expect(bits(simd.params)).toEqual(bits(js.params));
      expect(bits(simd.m)).toEqual(bits(js.m));
      expect(bits(simd.v)).toEqual(bits(js.v));
      expect(bits([simd.ema])).toEqual(bits([js.ema]));
    });
  }

  it('on WASM the SIMD update lives in the backend heap, updates parameters in place and survives the heap growing', () => {
    const run = (simd: boolean): { w: Float32Array; m: Float32Array; offsets: number[] } => {
      const store = new ParamStore(new Rng(10));
      store.param('w', [31, 7], 'glorot');
      const opt = new AdamOptimizer(store, { kind: 'adam', weightDecay: 0 }, undefined, { simd });
      if (simd) expect(opt.inBackendHeap).toBe(true);
      const rng = new Rng(11);
      const offsets: number[] = [];
      const big: tf.Tensor[] = [];
      for (let step = 0; step < 4; step++) {
        const g = rng.normal([31, 7]);
        opt.apply({ w: g }, 1e-2);
        g.dispose();
        offsets.push(writableHostView(store.get('w'))!.byteOffset);
        // Grow the heap by 64 MB: every earlier view of it is detached.
        big.push(tf.zeros([16 * 1024 * 1024]));
      }
      opt.syncState();
      const out = { w: store.get('w').dataSync().slice() as Float32Array, m: opt.m.get('w').dataSync().slice() as Float32Array, offsets };
      tf.dispose(big);
      opt.dispose();
      store.dispose();
      return out;
    };
    const simd = run(true);
    const js = run(false);
    expect(new Set(simd.offsets).size).toBe(1);
    expect(Array.from(simd.w)).toEqual(Array.from(js.w));
    expect(Array.from(simd.m)).toEqual(Array.from(js.m));
  });

  it('float32 and float64 arithmetic give the same parameters to float32 rounding, and differ in some bits', () => {
    const run = (precision: 'float32' | 'float64'): Float32Array => {
      const store = new ParamStore(new Rng(8));
      store.param('w', [33, 9], 'glorot');
      const opt = new AdamOptimizer(store, { kind: 'adamw', weightDecay: 0.01, precision });
      const rng = new Rng(9);
      for (let step = 0; step < 20; step++) {
        const g = rng.normal([33, 9]);
        opt.apply({ w: g }, 1e-3, 1);
        g.dispose();
      }
      const out = store.get('w').dataSync().slice() as Float32Array;
      opt.dispose();
      store.dispose();
      return out;
    };
    const a = run('float32');
    const b = run('float64');
    let differ = 0;
    for (let i = 0; i < a.length; i++) {
      expect(Math.abs(a[i] - b[i])).toBeLessThan(1e-6 * Math.max(1, Math.abs(b[i])) + 1e-7);
      if (a[i] !== b[i]) differ++;
    }
    expect(differ).toBeGreaterThan(0);
  });

  it('rejects an unknown arithmetic', () => {
    const store = new ParamStore(new Rng(5));
    store.param('w', [2, 2], 'glorot');
    expect(() => new AdamOptimizer(store, { kind: 'adam', precision: 'float16' as 'float32' })).toThrow(/optimizer.precision/);
    store.dispose();
  });

  it('rejects missing, mis-sized and non-finite gradients with the parameter named', () => {
    const store = new ParamStore(new Rng(5));
    store.param('w', [2, 2], 'glorot');
    const opt = new AdamOptimizer(store, { kind: 'adam' });
    expect(() => opt.apply({}, 0.1)).toThrow(/no gradient for parameter 'w'/);
    const bad = tf.ones([3]);
    expect(() => opt.apply({ w: bad }, 0.1)).toThrow(/gradient of 'w' has 3 values/);
    const nan = tf.tensor2d([[NaN, 1], [1, 1]]);
    expect(() => opt.apply({ w: nan }, 0.1)).toThrow(/NaN or Inf/);
    tf.dispose([bad, nan]);
    opt.dispose();
    store.dispose();
  });
});
