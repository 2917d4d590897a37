import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { validateReplicaSpec } from '../../src/train/dataParallel.js';
import { Trainer, type TrainerConfig } from '../../src/train/trainer.js';
import { mseObjective } from './fixtures/mseReplica.js';

const REPLICA = new URL('./fixtures/mseReplica.ts', import.meta.url).href;
const config = (steps: number, batchSize = 32): TrainerConfig => ({
  model: { kind: 'mlp', config: { dim: 2, width: 32, depth: 2 } },
  steps,
  batchSize,
  seed: 3,
  optimizer: { kind: 'adamw', weightDecay: 1e-3 },
  schedule: { kind: 'cosine', lr: 1e-2, warmup: 2 },
  clipNorm: 1,
  emaDecay: 0.9,
});
const data = (): tf.Tensor => tf.tensor2d(Array.from({ length: 100 }, (_, i) => [Math.cos(i), Math.sin(i * 0.7)]));

function flatWeights(t: Trainer): Float32Array {
  const names = t.params.trainableNames();
  const parts = names.map((n) => t.params.get(n).dataSync() as Float32Array);
  const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

describe('data-parallel training (Trainer.startReplicas)', () => {
  it('splits the batch across a worker thread and makes the same updates as one thread', async () => {
    const x = data();
    const single = new Trainer(config(6), mseObjective(), { x });
    const split = new Trainer(config(6), mseObjective(), { x });
    await split.startReplicas({ workers: 1, module: REPLICA, init: {} });
    expect(split.replicaWorkers).toBe(1);
    const before = tf.memory().numTensors;
    for (let s = 0; s < 6; s++) {
      const a = single.trainStep();
      const b = split.trainStep();
      expect(b.loss).toBeCloseTo(a.loss, 5);
      expect(b.gradNorm).toBeCloseTo(a.gradNorm, 4);
    }
    expect(tf.memory().numTensors).toBe(before);
    const wa = flatWeights(single);
    const wb = flatWeights(split);
    let maxDiff = 0;
    for (let k = 0; k < wa.length; k++) maxDiff = Math.max(maxDiff, Math.abs(wa[k] - wb[k]));
    expect(maxDiff).toBeLessThan(1e-5);
    // The replica really computed half of the batch: a replica whose loss differs changes the update.
    const other = new Trainer(config(6), mseObjective(), { x });
    await other.startReplicas({ workers: 1, module: REPLICA, init: { offset: 1 } });
    const r = other.trainStep();
    expect(Math.abs(r.loss - single.lastLoss)).toBeGreaterThan(0.1);
    await other.stopReplicas();
    await split.stopReplicas();
    expect(split.replicaWorkers).toBe(0);
    split.trainStep(); // back on this thread alone
    single.dispose();
    split.dispose();
    other.dispose();
    x.dispose();
  }, 60_000);

  it('reports a replica error at the step that failed and keeps the trainer usable', async () => {
    const x = data();
    const t = new Trainer(config(10), mseObjective(), { x });
    await t.startReplicas({ workers: 1, module: REPLICA, init: { failFromStep: 2 } });
    t.trainStep();
    t.trainStep();
    expect(() => t.trainStep()).toThrow(/replica 1: replica objective refused step 2/);
    expect(t.step).toBe(2);
    await t.stopReplicas();
    expect(Number.isFinite(t.trainStep().loss)).toBe(true);
    t.dispose();
    x.dispose();
  }, 60_000);

  it('rejects bad replica settings with a message naming the setting', async () => {
    const x = data();
    const t = new Trainer(config(2, 4), mseObjective(), { x });
    await expect(t.startReplicas({ workers: 1, module: new URL('./fixtures/noReplica.ts', import.meta.url).href, init: {} })).rejects.toThrow(/does not export createReplica/);
    await expect(t.startReplicas({ workers: 4, module: REPLICA, init: {} })).rejects.toThrow(/batch of at least 5 examples/);
    expect(() => validateReplicaSpec({ workers: 0, module: REPLICA, init: {} })).toThrow(/replicas.workers/);
    expect(() => validateReplicaSpec({ workers: 1, module: '/tmp/x.js', init: {} })).toThrow(/replicas.module: expected a file: URL/);
    expect(() => validateReplicaSpec({ workers: 1, module: REPLICA, init: {}, backend: 'tensorflow' as 'wasm' })).toThrow(/replicas.backend/);
    // A failed start leaves the trainer on one thread.
    expect(t.replicaWorkers).toBe(0);
    expect(Number.isFinite(t.trainStep().loss)).toBe(true);
    t.dispose();
    x.dispose();
  }, 60_000);
});
