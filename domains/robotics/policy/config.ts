/** Diffusion Policy configuration, validated (Chi et al. 2023: To = 2, Tp = 16, Ta = 8). */
import { PATH_KINDS, type PathKind } from '../../../src/path/index.js';
import type { Prediction } from '../../../src/predict/convert.js';
import { SAMPLER_NAMES, type SamplerName } from '../../../src/sample/registry.js';
import { checkNumber, checkOneOf, fail } from '../../../src/util/validate.js';

export interface DiffusionPolicyConfig {
  /** Environment the policy acts in ('pusht', 'arm-reach', or a user's own name). */
  readonly env: string;
  /** Observation feature size per frame (after the environment's feature map). */
  readonly obsDim: number;
  readonly actionDim: number;
  /** Observation history To. */
  readonly obsHorizon: number;
  /** Predicted chunk length Tp. */
  readonly predHorizon: number;
  /** Executed actions per replanning Ta; must satisfy Ta <= Tp - To + 1. */
  readonly actionHorizon: number;
  /** U-Net channels per resolution. */
  readonly channels: readonly number[];
  readonly embedDim: number;
  readonly path: PathKind;
  readonly prediction: Prediction;
  readonly objective: 'denoising' | 'flow-matching';
  readonly sampler: SamplerName;
  readonly samplingSteps: number;
  /**
   * Default scale of the starting noise when sampling a chunk (absent: 1). Below 1 the chunks
   * move toward the modes of the learned action distribution; `robot export --temperature`
   * stores it, `robot eval --temperature` and `predictChunks({ temperature })` override it.
   */
  readonly temperature?: number;
  /**
   * arm-reach only: early replanning (absent: off). Before each action of a chunk after its
   * first, the runner replays the chunk's next 2 actions on the latest joint angles and samples
   * a new chunk if a link would come within this many metres of an obstacle
   * (`armReachReplanCheck`); Ta is then the most actions a chunk runs. `robot export
   * --replan-clearance` stores it; `eval`, `drive` and `collect --policy` use it.
   */
  readonly replanClearance?: number;
  /**
   * Set on consistency-distilled policies: the network is a consistency function (Song et al.
   * 2023) with these boundary scalings, sampled in one or a few steps. `form: 'denoiser'` (set
   * by `robot distill`) means the network keeps the teacher's parameterisation (path and
   * prediction) and the consistency function mixes its x0 estimate with the input; absent, the
   * network is preconditioned as in Song et al. (see src/loss/consistencyParam.ts).
   */
  readonly consistency?: { readonly sigmaData: number; readonly sigmaMin: number; readonly form?: 'preconditioned' | 'denoiser' };
  /**
   * Options of the environment the demonstrations were recorded in and the policy must act in,
   * e.g. arm-reach's `{ actionMode: 'position' }` (absent: the environment's defaults).
   */
  readonly envOptions?: Readonly<Record<string, string | number | boolean>>;
}

export const DEFAULT_POLICY: Omit<DiffusionPolicyConfig, 'env' | 'obsDim' | 'actionDim'> = {
  obsHorizon: 2,
  predHorizon: 16,
  actionHorizon: 8,
  channels: [32, 64],
  embedDim: 64,
  path: 'vp-cosine',
  prediction: 'x0',
  objective: 'denoising',
  sampler: 'ddim',
  samplingSteps: 10,
};

export function validatePolicyConfig(c: DiffusionPolicyConfig): DiffusionPolicyConfig {
  if (!c || typeof c !== 'object') fail('policy config: expected an object');
  if (typeof c.env !== 'string' || c.env.length === 0) fail('policy.env: expected a non-empty string');
  checkNumber('policy.obsDim', c.obsDim, { integer: true, min: 1 });
  checkNumber('policy.actionDim', c.actionDim, { integer: true, min: 1 });
  checkNumber('policy.obsHorizon', c.obsHorizon, { integer: true, min: 1 });
  checkNumber('policy.predHorizon', c.predHorizon, { integer: true, min: 1 });
  checkNumber('policy.actionHorizon', c.actionHorizon, { integer: true, min: 1 });
  if (c.actionHorizon > c.predHorizon - c.obsHorizon + 1) {
    fail(`policy.actionHorizon: Ta = ${c.actionHorizon} must be <= Tp - To + 1 = ${c.predHorizon - c.obsHorizon + 1}`);
  }
  checkOneOf('policy.path', c.path, PATH_KINDS);
  checkOneOf('policy.objective', c.objective, ['denoising', 'flow-matching']);
  checkOneOf('policy.sampler', c.sampler, SAMPLER_NAMES);
  checkNumber('policy.samplingSteps', c.samplingSteps, { integer: true, min: 1 });
  if (c.temperature !== undefined) checkNumber('policy.temperature', c.temperature, { min: 0 });
  if (c.replanClearance !== undefined) {
    checkNumber('policy.replanClearance', c.replanClearance, { min: 0, max: 0.2 });
    if (c.env !== 'arm-reach') fail(`policy.replanClearance: only arm-reach policies replan on a clearance (this policy is for '${c.env}')`);
  }
  if (c.consistency !== undefined) {
    if (!c.consistency || typeof c.consistency !== 'object') fail('policy.consistency: expected { sigmaData, sigmaMin, form? }');
    checkNumber('policy.consistency.sigmaData', c.consistency.sigmaData, { min: Number.MIN_VALUE });
    checkNumber('policy.consistency.sigmaMin', c.consistency.sigmaMin, { min: Number.MIN_VALUE });
    checkOneOf('policy.consistency.form', c.consistency.form ?? 'preconditioned', ['preconditioned', 'denoiser']);
  }
  if (c.envOptions !== undefined) {
    if (!c.envOptions || typeof c.envOptions !== 'object' || Array.isArray(c.envOptions)) fail('policy.envOptions: expected an object of environment options');
    for (const [k, v] of Object.entries(c.envOptions)) {
      if (!['string', 'number', 'boolean'].includes(typeof v)) fail(`policy.envOptions.${k}: expected a string, number or boolean, received ${typeof v}`);
    }
  }
  return c;
}
