import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { ArmReachEnv } from '../../domains/robotics/env/armReach.js';
import { OBS_LAYOUT } from '../../domains/robotics/env/armReachSpec.js';
import { collectCorrections } from '../../domains/robotics/expert/corrections.js';
import { collectCorrectionsParallel, episodeRanges } from '../../domains/robotics/expert/parallelCorrections.js';
import { collectDemos } from '../../domains/robotics/expert/armReachExpert.js';
import { DiffusionPolicy } from '../../domains/robotics/policy/policy.js';
import { policyTrainer } from '../../domains/robotics/policy/train.js';
import { timeFeature } from '../../src/denoiser/denoiser.js';
import { envForPolicy } from '../../domains/robotics/envs.js';
import { validatePolicyConfig } from '../../domains/robotics/policy/config.js';
import { shippedPolicyDir } from '../../domains/robotics/serve/cli.js';

/** The shipped arm-reach policy and two expert demonstrations (windows need observation/action pairs). */
async function shippedPolicyAndDemos(): Promise<{ policy: DiffusionPolicy; demos: { observations: Float64Array[]; actions: Float64Array[] }[] }> {
  const policy = DiffusionPolicy.load(shippedPolicyDir('arm-reach'), { env: 'arm-reach' });
  const env = await ArmReachEnv.create();
  const demos = collectDemos(env, { episodes: 2, seed: 5 }).filter((d) => d.success).map((d) => ({ observations: d.observations.slice(0, d.actions.length), actions: d.actions }));
  env.close();
  return { policy, demos };
}

describe('expert corrections at policy-visited states (DAgger)', () => {
  it('labels the states the policy reaches with successful expert rollouts led by its previous step', async () => {
    const policy = DiffusionPolicy.load(shippedPolicyDir('arm-reach'), { env: 'arm-reach' });
    const env = await ArmReachEnv.create();
    const expertEnv = await ArmReachEnv.create();
    try {
      const r = collectCorrections(env, expertEnv, policy, { episodes: 4, seed: 3, safetyMargin: 0.05 });
      expect(r.rollouts).toBe(4);
      expect(r.queried).toBeGreaterThan(0);
      expect(r.demos.length + r.failed).toBe(r.queried);
      expect(r.demos.length).toBeGreaterThan(0);
      for (const d of r.demos) {
        expect(d.success).toBe(true);
        expect(d.observations).toHaveLength(d.actions.length + 1);
        // The leading step is the policy's: its observation precedes the queried state, whose
        // expert rollout then ends at the target.
        const last = d.observations[d.observations.length - 1];
        const dist = Math.hypot(last[OBS_LAYOUT.ee] - last[OBS_LAYOUT.target], last[OBS_LAYOUT.ee + 1] - last[OBS_LAYOUT.target + 1]);
        expect(dist).toBeLessThanOrEqual(env.successRadius);
        // Same scene throughout: target and obstacles do not change within a correction.
        expect(Array.from(d.observations[0].subarray(OBS_LAYOUT.target))).toEqual(Array.from(last.subarray(OBS_LAYOUT.target)));
        // Consecutive policy and expert states are one control step apart (bounded joint motion).
        const dq = Math.max(...[0, 1, 2].map((j) => Math.abs(d.observations[1][j] - d.observations[0][j])));
        expect(dq).toBeLessThanOrEqual(env.maxJointSpeed * env.dt + 0.05);
      }
      // Seeded: the same call gives the same corrections.
      const again = collectCorrections(env, expertEnv, policy, { episodes: 4, seed: 3, safetyMargin: 0.05 });
      expect(again.demos.map((d) => d.actions.length)).toEqual(r.demos.map((d) => d.actions.length));

      expect(() => collectCorrections(env, env, policy, { episodes: 1, seed: 0 })).toThrow(/two environments/);
      expect(() => collectCorrections(env, expertEnv, policy, { episodes: 0, seed: 0 })).toThrow(/episodes must be a positive integer/);
      expect(() => collectCorrections(env, expertEnv, policy, { episodes: 1, seed: 0, every: 0 })).toThrow(/every must be a positive integer/);
      expect(() => collectCorrections(env, expertEnv, policy, { episodes: 1, seed: 0, safetyMargin: -1 })).toThrow(/safetyMargin/);
      const pusht = DiffusionPolicy.load(shippedPolicyDir('pusht'), { env: 'pusht' });
      expect(() => collectCorrections(env, expertEnv, pusht, { episodes: 1, seed: 0 })).toThrow(/trained for 'pusht'/);
      pusht.dispose();
    } finally {
      env.close();
      expertEnv.close();
      policy.dispose();
    }
  }, 120_000);

  it('collects the same corrections on two threads as on one (episode ranges concatenated in order)', async () => {
    const dir = shippedPolicyDir('arm-reach');
    const policy = DiffusionPolicy.load(dir, { env: 'arm-reach' });
    const env = (await envForPolicy(policy.config)) as ArmReachEnv;
    const expertEnv = (await envForPolicy(policy.config)) as ArmReachEnv;
    try {
      const opts = { episodes: 5, seed: 11, safetyMargin: 0.05 };
      const one = collectCorrections(env, expertEnv, policy, opts);
      const two = await collectCorrectionsParallel(dir, env, expertEnv, policy, opts, 2);
      expect(two.rollouts).toBe(5);
      expect([two.rolloutSuccesses, two.queried, two.failed]).toEqual([one.rolloutSuccesses, one.queried, one.failed]);
      expect(two.demos.length).toBe(one.demos.length);
      two.demos.forEach((d, i) => {
        expect(d.seed).toBe(one.demos[i].seed);
        expect(d.actions.map((a) => Array.from(a))).toEqual(one.demos[i].actions.map((a) => Array.from(a)));
      });
      // A range on its own is the matching slice of the whole run.
      const tail = collectCorrections(env, expertEnv, policy, { ...opts, range: { from: 3, to: 5 } });
      expect(tail.demos.length).toBeGreaterThan(0);
      const last = one.demos.slice(one.demos.length - tail.demos.length);
      expect(tail.demos.map((d) => d.seed)).toEqual(last.map((d) => d.seed));
      expect(tail.demos.map((d) => d.actions.length)).toEqual(last.map((d) => d.actions.length));
      expect(one.demos[one.demos.length - tail.demos.length - 1].seed).not.toBe(tail.demos[0].seed);
      expect(tail.rollouts).toBe(2);
      expect(episodeRanges(5, 2)).toEqual([{ from: 0, to: 2 }, { from: 2, to: 5 }]);
      expect(episodeRanges(2, 4)).toEqual([{ from: 0, to: 1 }, { from: 1, to: 2 }]);
      expect(() => collectCorrections(env, expertEnv, policy, { ...opts, range: { from: 4, to: 4 } })).toThrow(/options.range/);
      await expect(collectCorrectionsParallel(dir, env, expertEnv, policy, opts, 0)).rejects.toThrow(/workers must be an integer/);
      // A worker that cannot load the policy reports why.
      await expect(collectCorrectionsParallel('/nonexistent/policy', env, expertEnv, policy, opts, 2)).rejects.toThrow(/nonexistent/);
    } finally {
      env.close();
      expertEnv.close();
      policy.dispose();
    }
  }, 180_000);

  it('trains a policy with the batch split across two threads (robot train --workers 2)', async () => {
    const { policy, demos } = await shippedPolicyAndDemos();
    const run = policyTrainer(demos, policy.config, { steps: 3, batchSize: 8, lr: 1e-4, initFrom: policy });
    try {
      await run.startWorkers(1);
      expect(run.trainer.replicaWorkers).toBe(1);
      const before = tf.memory().numTensors;
      const losses = [0, 1, 2].map(() => run.trainer.trainStep().loss);
      expect(losses.every((l) => Number.isFinite(l) && l > 0)).toBe(true);
      expect(tf.memory().numTensors).toBe(before);
    } finally {
      await run.trainer.stopReplicas();
      run.dispose();
      policy.dispose();
    }
  }, 120_000);

  it('fine-tuning (initFrom) starts from the policy: same weights, same normalisers, matching network required', async () => {
    const { policy, demos } = await shippedPolicyAndDemos();
    const run = policyTrainer(demos, policy.config, { steps: 2, batchSize: 8, lr: 1e-4, initFrom: policy });
    try {
      expect(run.trainer.params.size()).toBe(policy.store.size());
      const cond = tf.tidy(() => tf.randomUniform([3, policy.config.obsHorizon * policy.features.outputDim], -1, 1, 'float32', 1));
      const x = tf.tidy(() => tf.randomNormal([3, policy.config.predHorizon, policy.config.actionDim], 0, 1, 'float32', 2));
      const t = tf.fill([3], timeFeature(policy.path, 0.5));
      const a = run.trainer.net(x, t, cond);
      const b = policy.network(x, t, cond);
      expect(tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]).toBe(0);
      const step = run.trainer.trainStep();
      expect(Number.isFinite(step.loss)).toBe(true);
      tf.dispose([cond, x, t, a, b]);
    } finally {
      run.dispose();
    }
    expect(() => policyTrainer(demos, { ...policy.config, channels: [16, 32] }, { steps: 1, initFrom: policy })).toThrow(/initFrom: the policy has channels/);
    expect(() => policyTrainer(demos, { ...policy.config, prediction: 'eps' }, { steps: 1, initFrom: policy })).toThrow(/initFrom: the policy has prediction = x0/);
    expect(() => policyTrainer(demos, policy.config, { steps: 1, initFrom: policy, resumeFrom: 'somewhere' })).toThrow(/pass one/);
    policy.dispose();
  }, 120_000);

  it('policies keep the action mode of their demonstrations (envOptions) and act in an environment built with it', async () => {
    const env = await envForPolicy({ env: 'arm-reach', envOptions: { actionMode: 'position' } });
    expect((env as ArmReachEnv).actionMode).toBe('position');
    env.close();
    const dflt = await envForPolicy({ env: 'arm-reach' });
    expect((dflt as ArmReachEnv).actionMode).toBe('velocity');
    dflt.close();
    await expect(envForPolicy({ env: 'arm-reach', envOptions: { actionMode: 'torque' } })).rejects.toThrow(/envOptions.actionMode: expected 'velocity' or 'position'/);
    await expect(envForPolicy({ env: 'arm-reach', envOptions: { gravity: 1 } })).rejects.toThrow(/envOptions.gravity: not an arm-reach option/);
    await expect(envForPolicy({ env: 'pusht', envOptions: { actionMode: 'position' } })).rejects.toThrow(/pusht takes no options/);
    const policy = DiffusionPolicy.load(shippedPolicyDir('arm-reach'), { env: 'arm-reach' });
    expect(() => validatePolicyConfig({ ...policy.config, envOptions: { actionMode: ['position'] } as never })).toThrow(/policy.envOptions.actionMode: expected a string, number or boolean/);
    // A velocity policy cannot collect corrections in a position environment.
    const pos = await ArmReachEnv.create({ actionMode: 'position' });
    const pos2 = await ArmReachEnv.create({ actionMode: 'position' });
    expect(() => collectCorrections(pos, pos2, policy, { episodes: 1, seed: 0 })).toThrow(/acts with velocity actions, env takes position actions/);
    pos.close();
    pos2.close();
    policy.dispose();
  }, 60_000);
});
