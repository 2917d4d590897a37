import * as tf from '@tensorflow/tfjs-core';
import { afterEach, describe, expect, it } from 'vitest';
import { GROUP_NORM_KERNEL, fusedGroupNormAvailable, setFusedGroupNorm } from '../../src/backend/fusedGroupNorm.js';
import { groupNorm } from '../../src/nn/layers.js';
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

describe('fused group norm', () => {
  afterEach(() => setFusedGroupNorm(true));

  const shapes = [[1, 16, 32], [1, 8, 64], [3, 4, 64], [2, 5, 24], [1, 16, 2], [2, 6, 7, 16]];
  const groups = [8, 8, 8, 8, 2, 4];

  it('gives the bits of the unfused ops on the WASM backend', () => {
    expect(tf.getBackend()).toBe('wasm');
    expectSameBits(shapes, groups, 1);
  });

  it('is not used on the CPU backend, whose ops round differently', async () => {
    await tf.setBackend('cpu');
    try {
      expect(fusedGroupNormAvailable()).toBe(false);
    } finally {
      await tf.setBackend('wasm');
    }
  });

  it('is what groupNorm runs for inference, and switches off', async () => {
    const store = new ParamStore();
    const x = tf.randomNormal([2, 16, 32], 0, 1, 'float32', 3);
    groupNorm(store, 'gn', x, 8).dispose(); // creates the gain and bias
    const kernels = async (): Promise<string[]> => (await tf.profile(() => groupNorm(store, 'gn', x, 8))).kernels.map((k) => k.name);
    expect(fusedGroupNormAvailable()).toBe(true);
    expect(await kernels()).toEqual([GROUP_NORM_KERNEL]);
    setFusedGroupNorm(false);
    expect(fusedGroupNormAvailable()).toBe(false);
    expect((await kernels()).length).toBeGreaterThanOrEqual(8);
    x.dispose();
    store.dispose();
  });

  it('leaves the shipped Push-T policy\'s chunks bit for bit as they were', async () => {
    const policy = DiffusionPolicy.load(shippedPolicyDir('pusht'), { env: 'pusht' });
    const env = await envForPolicy(policy.config);
    try {
      const windows = [0, 1, 2].map((i) => {
        const o0 = env.reset({ seed: 500 + i });
        return [o0, env.step(Float64Array.from([200 + 20 * i, 300])).observation];
      });
      const run = (): Float32Array[] => windows.map((w, i) => policy.predictChunks([w], { seed: i }).chunks[0]);
      const fused = run();
      setFusedGroupNorm(false);
      const plain = run();
      fused.forEach((c, i) => expect(new Uint32Array(c.buffer.slice(0))).toEqual(new Uint32Array(plain[i].buffer.slice(0))));
    } finally {
      env.close();
      policy.dispose();
    }
  });
});
