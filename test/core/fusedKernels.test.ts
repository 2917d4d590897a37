import * as tf from '@tensorflow/tfjs-core';
import { afterEach, describe, expect, it } from 'vitest';
import { FILM_KERNEL, GROUP_NORM_KERNEL, fusedKernelsAvailable, setFusedKernels } from '../../src/backend/fusedKernels.js';
import { film, groupNorm } from '../../src/nn/layers.js';
import { ParamStore } from '../../src/nn/params.js';
import { Rng } from '../../src/rng/rng.js';
import { envForPolicy } from '../../domains/robotics/envs.js';
import { DiffusionPolicy } from '../../domains/robotics/policy/policy.js';
import { shippedPolicyDir } from '../../domains/robotics/serve/cli.js';

/** The unfused group norm, op by op (what layers.ts runs where the kernel is missing). */
function reference(x: tf.Tensor, gain: tf.Tensor, bias: tf.Tensor, groups: number, eps: number): tf.Tensor {
  return tf.tidy(() => {
    const c = x.shape[x.rank - 1];
    const spatial = x.shape.slice(1, -1).reduce((p, q) => p * q, 1);
    const r = tf.reshape(x, [x.shape[0], spatial, groups, c / groups]);
    const d = tf.sub(r, tf.mean(r, [1, 3], true));
    const y = tf.reshape(tf.mul(d, tf.rsqrt(tf.add(tf.mean(tf.square(d), [1, 3], true), eps))), x.shape);
    return tf.add(tf.mul(y, gain), bias);
  });
}

const bits = (t: tf.Tensor): Uint32Array => new Uint32Array(Float32Array.from(t.dataSync() as Float32Array).buffer);

function expectSameBits(shapes: number[][], groups: number[], seed: number): void {
  const u = new Rng(seed);
  const rng = { normal: (): number => Math.sqrt(-2 * Math.log(1 - u.uniform())) * Math.cos(2 * Math.PI * u.uniform()) };
  shapes.forEach((shape, k) => {
    const c = shape[shape.length - 1];
    const n = shape.reduce((p, q) => p * q, 1);
    // Offsets and scales that make float32 rounding matter.
    const x = tf.tensor(Float32Array.from({ length: n }, () => 3 + 10 * rng.normal()), shape);
    const gain = tf.tensor1d(Float32Array.from({ length: c }, () => rng.normal()));
    const bias = tf.tensor1d(Float32Array.from({ length: c }, () => rng.normal()));
    const fused = tf.engine().runKernel(GROUP_NORM_KERNEL, { x, gain, bias }, { groups: groups[k], eps: 1e-5 }) as tf.Tensor;
    const ref = reference(x, gain, bias, groups[k], 1e-5);
    expect(fused.shape).toEqual(shape);
    expect(bits(fused)).toEqual(bits(ref));
    tf.dispose([x, gain, bias, fused, ref]);
  });
}

describe('fused inference kernels', () => {
  afterEach(() => setFusedKernels(true));

  const shapes = [[1, 16, 32], [1, 8, 64], [3, 4, 64], [2, 5, 24], [1, 16, 2], [2, 6, 7, 16]];
  const groups = [8, 8, 8, 8, 2, 4];

  it('group norm gives the bits of the unfused ops on the WASM backend', () => {
    expect(tf.getBackend()).toBe('wasm');
    expectSameBits(shapes, groups, 1);
  });

  it('FiLM gives the bits of the unfused ops on the WASM backend', () => {
    const u = new Rng(4);
    const normal = (n: number): Float32Array => Float32Array.from({ length: n }, () => 2 * Math.sqrt(-2 * Math.log(1 - u.uniform())) * Math.cos(2 * Math.PI * u.uniform()));
    for (const shape of [[1, 16, 32], [3, 8, 64], [2, 5, 6, 16]]) {
      const c = shape[shape.length - 1];
      const h = tf.tensor(normal(shape.reduce((p, q) => p * q, 1)), shape);
      const ss = tf.tensor2d(normal(shape[0] * 2 * c), [shape[0], 2 * c]);
      const fused = tf.engine().runKernel(FILM_KERNEL, { h, ss }) as tf.Tensor;
      const ref = tf.tidy(() => {
        const ones = Array(h.rank - 2).fill(1);
        const ss4 = tf.reshape(ss, [shape[0], ...ones, 2 * c]);
        const scale = tf.slice(ss4, [0, ...ones.map(() => 0), 0], [-1, ...ones, c]);
        const shift = tf.slice(ss4, [0, ...ones.map(() => 0), c], [-1, ...ones, c]);
        return tf.add(tf.mul(h, tf.add(scale, 1)), shift);
      });
      expect(fused.shape).toEqual(shape);
      expect(bits(fused)).toEqual(bits(ref));
      tf.dispose([h, ss, fused, ref]);
    }
    expect(() => tf.engine().runKernel(FILM_KERNEL, { h: tf.zeros([2, 4, 8]), ss: tf.zeros([2, 8]) })).toThrow(/ss must have shape \[2, 16\]/);
  });

  it('is not used on the CPU backend, whose ops round differently', async () => {
    await tf.setBackend('cpu');
    try {
      expect(fusedKernelsAvailable()).toBe(false);
    } finally {
      await tf.setBackend('wasm');
    }
  });

  it('is what groupNorm runs for inference, and switches off', async () => {
    const store = new ParamStore();
    const x = tf.randomNormal([2, 16, 32], 0, 1, 'float32', 3);
    groupNorm(store, 'gn', x, 8).dispose(); // creates the gain and bias
    const kernels = async (): Promise<string[]> => (await tf.profile(() => groupNorm(store, 'gn', x, 8))).kernels.map((k) => k.name);
    expect(fusedKernelsAvailable()).toBe(true);
    expect(await kernels()).toEqual([GROUP_NORM_KERNEL]);
    const emb = tf.randomNormal([2, 8], 0, 1, 'float32', 4);
    film(store, 'film', x, emb).dispose(); // creates the dense layer
    expect((await tf.profile(() => film(store, 'film', x, emb))).kernels.map((k) => k.name).slice(-1)).toEqual([FILM_KERNEL]);
    setFusedKernels(false);
    expect(fusedKernelsAvailable()).toBe(false);
    expect((await kernels()).length).toBeGreaterThanOrEqual(8);
    expect((await tf.profile(() => film(store, 'film', x, emb))).kernels.map((k) => k.name)).not.toContain(FILM_KERNEL);
    tf.dispose([x, emb]);
    store.dispose();
  });

  it('leaves the shipped policies\' chunks bit for bit as they were', async () => {
    for (const name of ['pusht', 'arm-reach'] as const) {
      setFusedKernels(true);
      const policy = DiffusionPolicy.load(shippedPolicyDir(name), { env: name });
      const env = await envForPolicy(policy.config);
      try {
        const windows = [0, 1, 2].map((i) => {
          const o0 = env.reset({ seed: 500 + i });
          const a = Float64Array.from(env.actionSpec.low, (lo, j) => lo + ((0.3 + 0.2 * i) * (env.actionSpec.high[j] - lo)));
          return [o0, env.step(a).observation];
        });
        const run = (): Uint32Array[] => windows.map((w, i) => new Uint32Array(Float32Array.from(policy.predictChunks([w], { seed: i }).chunks[0]).buffer));
        const fused = run();
        setFusedKernels(false);
        const plain = run();
        expect(fused).toEqual(plain);
      } finally {
        env.close();
        policy.dispose();
      }
    }
  });
});
