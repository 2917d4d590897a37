/** Guided serving: `robot serve --guide` steers every chunk a session receives with the eval's cost terms. */
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { envForPolicy } from '../../domains/robotics/envs.js';
import type { Env } from '../../domains/robotics/env/types.js';
import { checkGuidanceConfig, guidancePredictOptions, type GuidanceConfig } from '../../domains/robotics/guidance/config.js';
import { DiffusionPolicy } from '../../domains/robotics/policy/policy.js';
import { shippedPolicyDir } from '../../domains/robotics/serve/cli.js';
import { InlineEngine, WorkerEngine } from '../../domains/robotics/serve/engine.js';
import { PolicyHost } from '../../domains/robotics/serve/host.js';
import { decode, encode } from '../../src/proto/registry.js';

let policy: DiffusionPolicy;
let env: Env;
let windows: Float64Array[][];

// A clearance far above what the policy keeps (5 cm demonstrations), so unguided chunks pay.
const GUIDANCE: GuidanceConfig = { spec: 'obstacle:1', mode: 'projection', maxStep: 0.3, substeps: 2, margin: 0.15 };

beforeAll(async () => {
  policy = DiffusionPolicy.load(shippedPolicyDir('arm-reach'), { env: 'arm-reach' });
  env = await envForPolicy(policy.config);
  windows = [0, 1, 2, 3, 4, 5].map((seed) => {
    const o = env.reset({ seed });
    return [o, o];
  });
});

afterAll(() => {
  env?.close();
  policy?.dispose();
});

/** Total guidance cost of full chunks [Tp x A] under the setting's terms. */
function totalCost(chunks: Float32Array[], cfg: GuidanceConfig): number {
  const { guidance } = guidancePredictOptions(cfg, policy.config);
  const Tp = policy.config.predHorizon;
  const A = policy.config.actionDim;
  return tf.tidy(() => {
    const x = tf.tensor3d(Float32Array.from(chunks.flatMap((c) => Array.from(c))), [chunks.length, Tp, A]);
    return tf.addN(guidance!.map((g) => tf.sum(g.cost(x, { obs: windows })))).dataSync()[0]!;
  });
}

describe('guided serving engines', () => {
  it('InlineEngine predicts with the guidance terms and reports the setting', async () => {
    const engine = new InlineEngine(policy, env.observationSpec, env.dt, { guidance: GUIDANCE });
    expect(JSON.parse(engine.info.guidance)).toEqual(GUIDANCE);
    expect(engine.info.temperature).toBe(policy.config.temperature);
    const before = tf.memory().numTensors;
    const served = await engine.predict(windows, 3);
    expect(tf.memory().numTensors).toBe(before);

    const guided = policy.predictChunks(windows, { ...guidancePredictOptions(GUIDANCE, policy.config), seed: 3 }).chunks;
    const unguided = policy.predictChunks(windows, { seed: 3 }).chunks;
    const skip = (policy.config.obsHorizon - 1) * policy.config.actionDim;
    // The served chunk is the guided chunk from the observation's row on.
    served.chunks.forEach((c, i) => expect(Array.from(c)).toEqual(Array.from(guided[i]!.subarray(skip))));
    const costUnguided = totalCost(unguided, GUIDANCE);
    const costGuided = totalCost(guided, GUIDANCE);
    console.log(`obstacle cost at 15 cm clearance over ${windows.length} windows: unguided ${costUnguided.toFixed(4)}, guided ${costGuided.toFixed(4)}`);
    expect(costUnguided).toBeGreaterThan(0.01);
    expect(costGuided).toBeLessThan(0.5 * costUnguided);
  });

  it('the wire PolicyInfo carries the guidance, the sampling temperature and the stored replanning clearance', () => {
    const engine = new InlineEngine(policy, env.observationSpec, env.dt, { guidance: { spec: 'obstacle:1', candidates: 4 }, temperature: 1 });
    const host = new PolicyHost(engine);
    const info = decode('scoreflow.v1.PolicyInfo', encode('scoreflow.v1.PolicyInfo', host.policyInfo()));
    expect(JSON.parse(info.guidance)).toEqual({ spec: 'obstacle:1', candidates: 4 });
    expect(info.samplingTemperature).toBe(1);
    // The shipped arm-reach policy stores Ta = 8 with early replanning at 2 cm.
    expect(info.actionHorizon).toBe(policy.config.actionHorizon);
    expect(info.replanClearance).toBe(policy.config.replanClearance ?? 0);
    expect(info.replanClearance).toBeCloseTo(0.02, 12);
    host.close();
    const plain = new PolicyHost(new InlineEngine(policy, env.observationSpec, env.dt));
    expect(decode('scoreflow.v1.PolicyInfo', encode('scoreflow.v1.PolicyInfo', plain.policyInfo())).guidance).toBe('');
    plain.close();
  });

  it('rejects bad guidance settings with a message naming what was wrong', () => {
    const make = (guidance: unknown, extra: object = {}) => () => new InlineEngine(policy, env.observationSpec, env.dt, { guidance: guidance as GuidanceConfig, ...extra });
    expect(make({ spec: 'region:1' })).toThrow(/'region' guidance is not available for env 'arm-reach'/);
    expect(make({ spec: 'obstacle:1', scale: 2 })).toThrow(/guidance: unknown field 'scale'/);
    expect(make({ spec: '' })).toThrow(/guidance: spec must be a non-empty string/);
    expect(make({ spec: 'obstacle:1', mode: 'project' })).toThrow(/guidance: mode/);
    expect(make({ spec: 'obstacle:1', candidates: 0 })).toThrow(/guidance: candidates/);
    expect(make({ spec: 'obstacle:1', constraints: [{ x: 0, y: 0.4, r: -1 }] })).toThrow(/extraObstacles\[0\]\.r: expected a finite radius > 0/);
    expect(make('obstacle:1')).toThrow(/guidance: expected an object/);
    expect(make({ spec: 'obstacle:1', regionModel: 'path' })).toThrow(/regionModel only applies to env 'pusht'/);
    expect(make(undefined, { temperature: -1 })).toThrow(/temperature/);
    // Push-T's forbidden regions are data of the setting.
    expect(() => checkGuidanceConfig({ spec: 'region:1' }, { env: 'pusht' })).toThrow(/'region' guidance needs forbidden circles/);
    expect(checkGuidanceConfig({ spec: 'region:1', constraints: [{ x: 200, y: 200, r: 30 }] }, { env: 'pusht' }).constraints).toEqual([{ x: 200, y: 200, r: 30 }]);
  });

  it('WorkerEngine applies the same guidance in its worker thread', async () => {
    const engine = await WorkerEngine.start({ checkpoint: shippedPolicyDir('arm-reach'), env: 'arm-reach', guidance: GUIDANCE });
    try {
      expect(JSON.parse(engine.info.guidance)).toEqual(GUIDANCE);
      const inline = new InlineEngine(policy, env.observationSpec, env.dt, { guidance: GUIDANCE });
      const [a, b] = await Promise.all([engine.predict(windows, 7), inline.predict(windows, 7)]);
      a.chunks.forEach((c, i) => {
        const d = Math.max(...Array.from(c, (v, k) => Math.abs(v - b.chunks[i]![k]!)));
        expect(d).toBeLessThan(1e-4);
      });
    } finally {
      await engine.close();
    }
    await expect(WorkerEngine.start({ checkpoint: shippedPolicyDir('arm-reach'), env: 'arm-reach', guidance: { spec: 'region:1' } })).rejects.toThrow(/inference worker failed to start: .*'region' guidance is not available/);
  }, 60_000);
});
