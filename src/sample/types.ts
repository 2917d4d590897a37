import type * as tf from '@tensorflow/tfjs-core';
import type { Denoiser } from '../denoiser/denoiser.js';
import type { NoisePath } from '../path/types.js';
import type { Rng } from '../rng/rng.js';

/**
 * A projection hook applied to the initial noise, to every intermediate state and to the
 * result: zero centre of mass for molecules, node masks for padded sets, inpainting of known
 * entries at the current noise level. Must return a new tensor (the sampler disposes the input).
 */
export type Projection = (x: tf.Tensor, t: number) => tf.Tensor;

export interface StepInfo {
  /** Step index, 0-based. */
  readonly step: number;
  readonly steps: number;
  readonly t: number;
  readonly tNext: number;
  /** State after the step (valid only during the callback). */
  readonly x: tf.Tensor;
  /** Denoised estimate used by the step (valid only during the callback). */
  readonly x0: tf.Tensor;
}

export interface SampleOptions {
  /** Noise source for stochastic samplers (required by them, ignored by deterministic ones). */
  readonly rng?: Rng;
  readonly onStep?: (info: StepInfo) => void;
  readonly project?: Projection;
  /** DDIM stochasticity: 0 deterministic, 1 DDPM-equivalent. */
  readonly eta?: number;
  /** EDM stochastic churn (Karras et al. Alg. 2): total churn S_churn, window [sTmin, sTmax] in scaled sigma, and S_noise. */
  readonly churn?: { readonly amount: number; readonly sTmin?: number; readonly sTmax?: number; readonly sNoise?: number };
}

/** Every sampler has this one signature: denoiser, starting state at grid[0], grid, path, options. */
export type Sampler = (den: Denoiser, x: tf.Tensor, grid: readonly number[], path: NoisePath, opts?: SampleOptions) => tf.Tensor;
