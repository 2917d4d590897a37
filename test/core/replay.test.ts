/**
 * Kernel replay (src/nn/replay.ts): inference through buildNetwork replays recorded kernels.
 * Outputs must equal the normal run bit for bit, parameter updates must be seen, nothing may
 * leak, and gradients must still flow (the tape path never replays).
 */
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import '../../domains/robotics/model/temporalUnet.js';
import { ParamStore } from '../../src/nn/params.js';
import { buildNetwork, type ModelSpec } from '../../src/nn/registry.js';
import { replayable, replayStats } from '../../src/nn/replay.js';
import { Rng } from '../../src/rng/rng.js';

const SPECS: { name: string; spec: ModelSpec; x: number[]; cond?: number[] }[] = [
  { name: 'mlp', spec: { kind: 'mlp', config: { dim: 3, width: 32, depth: 2, condDim: 4 } }, x: [5, 3], cond: [5, 4] },
  { name: 'temporal-unet', spec: { kind: 'temporal-unet', config: { actionDim: 2, horizon: 16, condDim: 6, channels: [16, 32], embedDim: 32 } }, x: [3, 16, 2], cond: [3, 6] },
  { name: 'field-conv', spec: { kind: 'field-conv', config: { channels: 1, condChannels: 1, width: 8, blocks: 2 } }, x: [2, 8, 8, 1], cond: [2, 8, 8, 1] },
];

function withReplay<T>(on: boolean, fn: () => T): T {
  const prev = process.env.SCOREFLOW_REPLAY;
  process.env.SCOREFLOW_REPLAY = on ? '1' : '0';
  try {
    return fn();
  } finally {
    if (prev === undefined) delete process.env.SCOREFLOW_REPLAY;
    else process.env.SCOREFLOW_REPLAY = prev;
  }
}

const numDataIds = (): number => (tf.backend() as unknown as { numDataIds(): number }).numDataIds();

describe('kernel replay', () => {
  for (const c of SPECS) {
    it(`${c.name}: replayed outputs equal the normal run, see parameter updates and leak nothing`, () => {
      const rng = new Rng(1);
      const store = new ParamStore(rng);
      let net;
      try {
        net = buildNetwork(c.spec, store);
      } catch (e) {
        throw new Error(`${c.name}: ${(e as Error).message}`);
      }
      const x = rng.normal(c.x);
      const t = tf.tensor1d(Array.from({ length: c.x[0] }, (_, i) => 0.1 + 0.2 * i));
      const cond = c.cond ? rng.normal(c.cond) : undefined;
      const run = (): Float32Array => tf.tidy(() => net(x, t, cond).dataSync() as Float32Array);
      // Parameters exist after the first call; perturb them so zero-initialised layers matter.
      withReplay(false, run);
      tf.tidy(() => store.names().forEach((n) => store.get(n).assign(tf.add(store.get(n), tf.mul(rng.normal(store.get(n).shape), 0.1)))));
      const normal = withReplay(false, run);
      const before = { ...replayStats };
      const first = withReplay(true, run); // records
      expect(replayStats.recorded).toBe(before.recorded + 1);
      const tensors = tf.memory().numTensors;
      const ids = numDataIds();
      const replayed = withReplay(true, run);
      for (let i = 0; i < 20; i++) withReplay(true, run);
      expect(replayStats.replayed).toBe(before.replayed + 21);
      expect(replayStats.notReplayable).toBe(before.notReplayable);
      expect(Array.from(first)).toEqual(Array.from(normal));
      expect(Array.from(replayed)).toEqual(Array.from(normal));
      expect(tf.memory().numTensors).toBe(tensors);
      expect(numDataIds()).toBe(ids);
      // A parameter update (new data for a variable) is seen by the next replay.
      const name = store.names()[0];
      tf.tidy(() => store.get(name).assign(tf.add(store.get(name), 0.5)));
      const updatedNormal = withReplay(false, run);
      const updatedReplay = withReplay(true, run);
      expect(Array.from(updatedReplay)).toEqual(Array.from(updatedNormal));
      expect(Array.from(updatedReplay)).not.toEqual(Array.from(normal));
      tf.dispose([x, t, ...(cond ? [cond] : [])]);
      store.dispose();
    });
  }

  it('a new input shape records a new trace; gradients flow through the normal path', () => {
    const rng = new Rng(2);
    const store = new ParamStore(rng);
    const net = buildNetwork({ kind: 'mlp', config: { dim: 2, width: 16, depth: 1 } }, store);
    const t = (b: number): tf.Tensor => tf.fill([b], 0.3);
    for (const b of [1, 4, 1, 4]) {
      const x = rng.normal([b, 2]);
      const tb = t(b);
      const a = withReplay(true, () => tf.tidy(() => net(x, tb).dataSync()));
      const n = withReplay(false, () => tf.tidy(() => net(x, tb).dataSync()));
      expect(Array.from(a)).toEqual(Array.from(n));
      tf.dispose([x, tb]);
    }
    const x = rng.normal([4, 2]);
    const tb = t(4);
    const g = withReplay(true, () => tf.grad((xi: tf.Tensor) => tf.sum(net(xi, tb)))(x));
    const gn = withReplay(false, () => tf.grad((xi: tf.Tensor) => tf.sum(net(xi, tb)))(x));
    expect(Array.from(g.dataSync())).toEqual(Array.from(gn.dataSync()));
    expect(tf.norm(g).dataSync()[0]).toBeGreaterThan(0);
    tf.dispose([x, tb, g, gn]);
    store.dispose();
  });

  it('constants made during the call are held; input values are read at every call', () => {
    const net = replayable((x) => tf.add(x, 1));
    const a = tf.tensor2d([[1, 2]]);
    const b = tf.tensor2d([[5, 6]]);
    const ra = tf.tidy(() => net(a, tf.scalar(0)).dataSync());
    const rb = tf.tidy(() => net(b, tf.scalar(0)).dataSync());
    expect(Array.from(ra)).toEqual([2, 3]);
    expect(Array.from(rb)).toEqual([6, 7]);
    const ids = numDataIds();
    net.dispose(); // releases the held scalar
    expect(numDataIds()).toBe(ids - 1);
    tf.dispose([a, b]);
  });
});
