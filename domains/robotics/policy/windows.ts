/**
 * Training windows from episodes, as Diffusion Policy's sequence sampler builds them: for every
 * step t, the observation frames t-To+1..t and the actions t-To+1..t-To+Tp, with indices
 * outside the episode clamped to its first/last step (edge padding).
 */
import { fail } from '../../../src/util/validate.js';
import type { DiffusionPolicyConfig } from './config.js';
import type { FeatureMap } from './features.js';

export interface Demo {
  readonly observations: readonly ArrayLike<number>[];
  readonly actions: readonly ArrayLike<number>[];
}

export interface Windows {
  readonly count: number;
  /** [count, To * F] features (raw, not normalised). */
  readonly obs: Float32Array;
  /** [count, Tp, A] actions (raw). */
  readonly actions: Float32Array;
}

export function buildWindows(demos: readonly Demo[], cfg: DiffusionPolicyConfig, features: FeatureMap): Windows {
  if (!Array.isArray(demos) || demos.length === 0) fail('demos: expected at least one episode');
  const To = cfg.obsHorizon;
  const Tp = cfg.predHorizon;
  const F = features.outputDim;
  const A = cfg.actionDim;
  let count = 0;
  demos.forEach((d, i) => {
    if (!d || d.observations.length === 0) fail(`demos[${i}]: episode has no steps`);
    if (d.observations.length !== d.actions.length) fail(`demos[${i}]: ${d.observations.length} observations but ${d.actions.length} actions`);
    count += d.observations.length;
  });
  const obs = new Float32Array(count * To * F);
  const actions = new Float32Array(count * Tp * A);
  let w = 0;
  for (let i = 0; i < demos.length; i++) {
    const d = demos[i];
    const n = d.observations.length;
    const feats = d.observations.map((o: ArrayLike<number>) => features(o));
    d.actions.forEach((a: ArrayLike<number>, k: number) => {
      if (a.length !== A) fail(`demos[${i}].actions[${k}]: expected ${A} numbers, received ${a.length}`);
    });
    for (let t = 0; t < n; t++, w++) {
      for (let k = 0; k < To; k++) {
        const src = Math.min(n - 1, Math.max(0, t - To + 1 + k));
        obs.set(feats[src], (w * To + k) * F);
      }
      for (let k = 0; k < Tp; k++) {
        const src = Math.min(n - 1, Math.max(0, t - To + 1 + k));
        const a = d.actions[src];
        for (let j = 0; j < A; j++) actions[(w * Tp + k) * A + j] = a[j];
      }
    }
  }
  return { count, obs, actions };
}
