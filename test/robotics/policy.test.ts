import * as tf from '@tensorflow/tfjs-core';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEFAULT_POLICY, validatePolicyConfig, type DiffusionPolicyConfig } from '../../domains/robotics/policy/config.js';
import { DiffusionPolicy } from '../../domains/robotics/policy/policy.js';
import { policyTrainer } from '../../domains/robotics/policy/train.js';
import { buildWindows, type Demo } from '../../domains/robotics/policy/windows.js';
import { pushtFeatures, identityFeatures } from '../../domains/robotics/policy/features.js';
import { Normalizer } from '../../src/data/normalizer.js';
import { Rng } from '../../src/rng/rng.js';

/**
 * A trivial 1D reaching task: the observation is the position p, the expert action is the
 * target 1.0 (absolute). A policy that learned anything puts its actions near 1; a random
 * policy in the action range [-1, 1] is on average 1 away.
 */
function reachDemos(n: number, seed: number): Demo[] {
  const rng = new Rng(seed);
  const demos: Demo[] = [];
  for (let e = 0; e < n; e++) {
    let p = -1 + 0.5 * rng.uniform();
    const observations: Float64Array[] = [];
    const actions: Float64Array[] = [];
    for (let t = 0; t < 12; t++) {
      observations.push(Float64Array.of(p));
      const a = Math.min(1, p + 0.3);
      actions.push(Float64Array.of(a));
      p = a;
    }
    demos.push({ observations, actions });
  }
  return demos;
}

const tinyConfig = (over: Partial<DiffusionPolicyConfig> = {}): DiffusionPolicyConfig => ({
  ...DEFAULT_POLICY,
  env: 'reach-1d',
  obsDim: 1,
  actionDim: 1,
  predHorizon: 8,
  actionHorizon: 4,
  channels: [16, 32],
  embedDim: 32,
  samplingSteps: 8,
  // x0 prediction learns this task in a few hundred steps; eps needs many more (measured).
  prediction: 'x0',
  ...over,
});

describe('policy config', () => {
  it('enforces Ta <= Tp - To + 1', () => {
    expect(() => validatePolicyConfig(tinyConfig({ actionHorizon: 8 }))).toThrow(/actionHorizon: Ta = 8 must be <= Tp - To \+ 1 = 7/);
    expect(() => validatePolicyConfig(tinyConfig({ sampler: 'nope' as never }))).toThrow(/policy.sampler/);
    expect(() => validatePolicyConfig(tinyConfig({ temperature: -0.5 }))).toThrow(/^policy.temperature: expected >= 0/);
    expect(validatePolicyConfig(tinyConfig({ temperature: 0.8 })).temperature).toBe(0.8);
    // Early replanning is an arm-reach setting (metres to its obstacles).
    expect(() => validatePolicyConfig(tinyConfig({ replanClearance: 0.02 }))).toThrow(/^policy.replanClearance: only arm-reach policies replan on a clearance \(this policy is for 'reach-1d'\)/);
    expect(() => validatePolicyConfig(tinyConfig({ env: 'arm-reach', replanClearance: 0.5 }))).toThrow(/^policy.replanClearance: expected <= 0.2/);
    expect(validatePolicyConfig(tinyConfig({ env: 'arm-reach', replanClearance: 0.02 })).replanClearance).toBe(0.02);
  });
});

describe('windows and features', () => {
  it('builds edge-padded windows with Diffusion Policy indexing', () => {
    const demo: Demo = { observations: [0, 1, 2].map((v) => Float64Array.of(v)), actions: [10, 11, 12].map((v) => Float64Array.of(v)) };
    const w = buildWindows([demo], tinyConfig({ predHorizon: 4, actionHorizon: 2 }), identityFeatures(1));
    expect(w.count).toBe(3);
    // t = 0: obs frames (-1 -> 0, 0), actions t-1..t+2 clamped -> 10,10,11,12
    expect(Array.from(w.obs.subarray(0, 2))).toEqual([0, 0]);
    expect(Array.from(w.actions.subarray(0, 4))).toEqual([10, 10, 11, 12]);
    // t = 2: obs (1, 2), actions 11, 12, 12, 12
    expect(Array.from(w.obs.subarray(4, 6))).toEqual([1, 2]);
    expect(Array.from(w.actions.subarray(8, 12))).toEqual([11, 12, 12, 12]);
  });

  it('maps the Push-T angle to a continuous (sin, cos) feature and rejects NaN', () => {
    const f = pushtFeatures();
    const a = f([1, 2, 3, 4, Math.PI - 1e-6]);
    const b = f([1, 2, 3, 4, -Math.PI + 1e-6]);
    expect(Math.abs(a[4] - b[4]) + Math.abs(a[5] - b[5])).toBeLessThan(1e-5);
    expect(() => f([1, 2, NaN, 4, 0])).toThrow(/observation: contains a non-finite value/);
    expect(() => f([1, 2, 3])).toThrow(/expected 5 numbers/);
  });

  it('normaliser round-trips', () => {
    const data = Float32Array.from([0, 10, 5, 20, 10, 30]);
    const n = Normalizer.fit('minmax', data, 2);
    const back = n.unnormalize(n.normalize(data));
    back.forEach((v, i) => expect(v).toBeCloseTo(data[i], 4));
    expect(Array.from(n.normalize([0, 10]))).toEqual([-1, -1]);
  });
});

describe('policy', () => {
  it('a tiny policy trained for a few seconds beats random on 1D reaching, with correct shapes, pinning and guidance', async () => {
    const demos = reachDemos(40, 1);
    const cfg = tinyConfig();
    const run = policyTrainer(demos, cfg, { steps: 200, batchSize: 64, lr: 3e-3, seed: 0, emaDecay: 0.99 });
    for (let i = 0; i < 200; i++) {
      run.trainer.trainStep();
      // Let the worker's event loop answer vitest's RPC on a slow machine (it gives up after 60 s).
      if (i % 25 === 24) await new Promise((resolve) => setImmediate(resolve));
    }
    const dir = mkdtempSync(path.join(os.tmpdir(), 'sf-policy-'));
    await run.save(dir);
    run.dispose();

    const policy = DiffusionPolicy.load(dir, { env: 'reach-1d' });
    const before = tf.memory().numTensors;
    const windows = [[Float64Array.of(-0.8), Float64Array.of(-0.5)], [Float64Array.of(0.1), Float64Array.of(0.4)]];
    const { chunks } = policy.predictChunks(windows, { seed: 3 });
    expect(chunks).toHaveLength(2);
    expect(chunks[0]).toHaveLength(cfg.predHorizon * cfg.actionDim);
    // Expert from p = -0.5: -0.2, 0.1, 0.4, ... (executed part starts at index To-1 = 1).
    const exec = policy.executable(chunks[0]);
    expect(exec).toHaveLength(cfg.actionHorizon);
    const expert = [-0.2, 0.1, 0.4, 0.7];
    const err = exec.reduce((s, a, k) => s + Math.abs(a[0] - expert[k]), 0) / exec.length;
    // A random action in [-1, 1] is on average ~0.8 from these targets; require far better.
    expect(err).toBeLessThan(0.25);
    // Replanning more often executes a prefix of the same actions; Ta is bounded by Tp - To + 1.
    const short = policy.executable(chunks[0], 2);
    expect(short.map((a) => a[0])).toEqual(exec.slice(0, 2).map((a) => a[0]));
    expect(policy.executable(chunks[0], 7)).toHaveLength(7);
    expect(() => policy.executable(chunks[0], 8)).toThrow(/^actionHorizon: expected <= 7/);
    expect(() => policy.executable(chunks[0], 0)).toThrow(/^actionHorizon: expected >= 1/);
    expect(() => policy.executable(chunks[0].subarray(0, 3))).toThrow(/^chunk: expected a Float32Array of 8 numbers/);

    // Pinned actions are exact.
    const pinned = policy.predictChunks([windows[0]], { seed: 4, pinned: [Float64Array.of(0.33)] });
    expect(pinned.chunks[0][0]).toBeCloseTo(0.33, 4);

    // Reward guidance lowers the guided cost on the sampled chunk: a ceiling at 0.5 on the actions.
    const ceiling = (a: tf.Tensor): tf.Tensor => tf.sum(tf.square(tf.relu(tf.sub(tf.reshape(a, [a.shape[0], -1]), 0.5))), 1);
    const costOf = (c: Float32Array): number => c.reduce((s, v) => s + Math.max(0, v - 0.5) ** 2, 0);
    let unguided = 0;
    let guided = 0;
    for (let s = 0; s < 4; s++) {
      unguided += costOf(policy.predictChunks([windows[1]], { seed: 10 + s }).chunks[0]);
      guided += costOf(policy.predictChunks([windows[1]], { seed: 10 + s, guidance: [{ name: 'ceiling', cost: ceiling, scale: 1 }] }).chunks[0]);
    }
    // Projection mode (Polyak steps towards zero cost) with no tuned step size: the final chunk
    // keeps at most (1/2)^3 of the violation its last denoising step brought.
    let projected = 0;
    for (let s = 0; s < 4; s++) {
      projected += costOf(policy.predictChunks([windows[1]], { seed: 10 + s, guidance: [{ name: 'ceiling', cost: ceiling, scale: 1, mode: 'projection', iterations: 3 }] }).chunks[0]);
    }
    console.log(`ceiling cost: unguided ${unguided.toFixed(4)}, guided ${guided.toFixed(4)}, projected ${projected.toFixed(6)}`);
    expect(unguided).toBeGreaterThan(0.5);
    expect(guided).toBeLessThan(0.5 * unguided);
    expect(projected).toBeLessThan(0.02 * unguided);
    expect(() => policy.predictChunks([windows[1]], { guidance: [{ name: 'ceiling', cost: ceiling, scale: 1, mode: 'push' as 'projection' }] })).toThrow(/guidance 'ceiling' mode: unknown value 'push'/);
    expect(tf.memory().numTensors).toBe(before);

    // A stored sampling temperature is the default for every chunk and is saved with the policy;
    // an explicit temperature still overrides it.
    const cold = DiffusionPolicy.load(dir, { env: 'reach-1d', sampling: { temperature: 0 } });
    expect(cold.config.temperature).toBe(0);
    const w0 = [windows[0]];
    const coldChunk = cold.predictChunks(w0, { seed: 5 }).chunks[0];
    expect(Array.from(coldChunk)).toEqual(Array.from(policy.predictChunks(w0, { seed: 5, temperature: 0 }).chunks[0]));
    expect(Array.from(coldChunk)).not.toEqual(Array.from(policy.predictChunks(w0, { seed: 5 }).chunks[0]));
    expect(Array.from(cold.predictChunks(w0, { seed: 5, temperature: 1 }).chunks[0])).toEqual(Array.from(policy.predictChunks(w0, { seed: 5 }).chunks[0]));
    const coldDir = mkdtempSync(path.join(os.tmpdir(), 'sf-policy-cold-'));
    await cold.save(coldDir);
    cold.dispose();
    const reloaded = DiffusionPolicy.load(coldDir, { env: 'reach-1d' });
    expect(reloaded.config.temperature).toBe(0);
    expect(Array.from(reloaded.predictChunks(w0, { seed: 5 }).chunks[0])).toEqual(Array.from(coldChunk));
    reloaded.dispose();
    expect(() => DiffusionPolicy.load(dir, { env: 'reach-1d', sampling: { temperature: Number.NaN } })).toThrow(/^policy.temperature/);

    // A checkpoint of another environment is refused.
    expect(() => DiffusionPolicy.load(dir, { env: 'pusht' })).toThrow(/holds a 'robot-policy\/reach-1d' model, expected 'robot-policy\/pusht'/);
    expect(() => policy.predictChunks([[Float64Array.of(NaN), Float64Array.of(0)]])).toThrow(/non-finite/);
    expect(() => policy.predictChunks([[Float64Array.of(0)]])).toThrow(/expected 2 observation frames/);
    policy.dispose();
  });
});
