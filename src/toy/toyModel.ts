/**
 * The toy task end to end through the public API: train an MLP denoiser on the 8-Gaussian
 * mixture with any path / prediction / loss, save a checkpoint, sample it with any sampler and
 * score the samples (sliced Wasserstein to held-out data, mode coverage).
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Observable } from 'rxjs';
import { wrapNetwork, type Parameterization, type Precond } from '../denoiser/denoiser.js';
import { denoisingLoss } from '../loss/denoising.js';
import type { Weighting } from '../loss/weighting.js';
import { flowMatchingLoss } from '../loss/flowMatching.js';
import { otCoupling } from '../loss/coupling.js';
import { slicedWasserstein } from '../metrics/slicedWasserstein.js';
import { ParamStore } from '../nn/params.js';
import { buildNetwork } from '../nn/registry.js';
import { PATH_KINDS, pathFromSpec, type PathKind } from '../path/index.js';
import { PREDICTIONS, type Prediction } from '../predict/convert.js';
import { Rng } from '../rng/rng.js';
import { sample, SAMPLER_NAMES, type SamplerName } from '../sample/registry.js';
import { GRID_KINDS, type GridKind } from '../grid/grid.js';
import { loadCheckpoint } from '../train/checkpoint.js';
import { Trainer, type TrainProgress } from '../train/trainer.js';
import { checkNumber, checkOneOf, fail } from '../util/validate.js';
import { EIGHT_GAUSSIANS, nearestMode, sampleMixture } from './mixture.js';

export const TOY_TASK = 'toy/8gaussians';
export type ToyLoss = 'denoising' | 'flow-matching' | 'ot-cfm';
export const TOY_LOSSES: readonly ToyLoss[] = ['denoising', 'flow-matching', 'ot-cfm'];

export interface ToyTrainOptions {
  readonly path: PathKind;
  readonly prediction: Prediction;
  readonly precond?: Precond;
  readonly loss: ToyLoss;
  readonly weighting?: Weighting;
  readonly steps: number;
  readonly batchSize?: number;
  readonly width?: number;
  readonly depth?: number;
  readonly lr?: number;
  readonly seed?: number;
  /** Number of training points drawn from the mixture. */
  readonly dataSize?: number;
}

export const TOY_DEFAULTS = { path: 'rectified-flow', prediction: 'velocity', loss: 'flow-matching', steps: 1500, batchSize: 256, width: 64, depth: 2, lr: 3e-3, seed: 0, dataSize: 8192 } as const;

export interface ToyRun {
  readonly trainer: Trainer;
  readonly param: Parameterization;
  /** Progress stream; completes when training is done. */
  readonly progress: Observable<TrainProgress>;
  /** Save the trained model (weights + EMA + optimiser state + config). */
  save(dir: string): Promise<void>;
  dispose(): void;
}

export function validateToyOptions(o: ToyTrainOptions): Required<Omit<ToyTrainOptions, 'weighting' | 'precond'>> & Pick<ToyTrainOptions, 'weighting' | 'precond'> {
  if (!o || typeof o !== 'object') fail('toy options: expected an object');
  const r = {
    path: checkOneOf('path', o.path, PATH_KINDS),
    prediction: checkOneOf('prediction', o.prediction, PREDICTIONS),
    precond: o.precond,
    loss: checkOneOf('loss', o.loss, TOY_LOSSES),
    weighting: o.weighting,
    steps: checkNumber('steps', o.steps, { integer: true, min: 1 }),
    batchSize: checkNumber('batchSize', o.batchSize ?? TOY_DEFAULTS.batchSize, { integer: true, min: 1 }),
    width: checkNumber('width', o.width ?? TOY_DEFAULTS.width, { integer: true, min: 1 }),
    depth: checkNumber('depth', o.depth ?? TOY_DEFAULTS.depth, { integer: true, min: 0 }),
    lr: checkNumber('lr', o.lr ?? TOY_DEFAULTS.lr, { min: 0 }),
    seed: checkNumber('seed', o.seed ?? TOY_DEFAULTS.seed, { integer: true }),
    dataSize: checkNumber('dataSize', o.dataSize ?? TOY_DEFAULTS.dataSize, { integer: true, min: 2 }),
  };
  if (r.loss !== 'denoising' && r.prediction === 'score') fail("prediction: 'score' is not trainable with flow matching; use 'velocity', 'eps', 'x0' or 'v'");
  return r;
}

/** Build a trainer for the toy task. Subscribe to `progress` to run it. */
export function toyTrainer(opts: ToyTrainOptions): ToyRun {
  const o = validateToyOptions(opts);
  const path = pathFromSpec(o.path);
  const param: Parameterization = { path, prediction: o.prediction, precond: o.precond };
  const loss =
    o.loss === 'denoising'
      ? denoisingLoss({ param, weighting: o.weighting ?? 'none' })
      : flowMatchingLoss({ param, coupling: o.loss === 'ot-cfm' ? otCoupling({ method: 'auto' }) : undefined });
  const { data } = sampleMixture(o.dataSize, o.seed + 1);
  const x = tf.tensor2d(data, [o.dataSize, 2]);
  const trainer = new Trainer(
    {
      model: { kind: 'mlp', config: { dim: 2, width: o.width, depth: o.depth } },
      steps: o.steps,
      batchSize: o.batchSize,
      seed: o.seed,
      optimizer: { kind: 'adamw', weightDecay: 0, precision: 'float64' },
      schedule: { kind: 'cosine', lr: o.lr, warmup: Math.min(100, Math.floor(o.steps / 10)), minLr: o.lr * 0.05 },
      clipNorm: 1,
      emaDecay: 0.995,
      logEvery: Math.max(1, Math.floor(o.steps / 100)),
    },
    ({ net, rng }, batch) => loss(net, batch.x, rng),
    { x },
  );
  return {
    trainer,
    param,
    progress: trainer.fit(),
    save: (dir) =>
      trainer.save(dir, {
        task: TOY_TASK,
        parameterization: { path: path.spec, prediction: o.prediction, precond: o.precond },
        extra: { loss: o.loss, weighting: o.weighting ?? 'none', mixture: EIGHT_GAUSSIANS, dataSeed: o.seed + 1 },
      }),
    dispose: () => {
      trainer.dispose();
      x.dispose();
    },
  };
}

export interface ToySampleOptions {
  readonly sampler: SamplerName;
  readonly steps: number;
  readonly grid?: GridKind;
  readonly n?: number;
  readonly seed?: number;
  /** Use the EMA weights (default true when present). */
  readonly ema?: boolean;
}

export interface ToyMetrics {
  readonly sampler: string;
  readonly steps: number;
  readonly n: number;
  /** Sliced Wasserstein-1 to 4096 held-out points of the mixture. */
  readonly slicedWasserstein: number;
  /** The same distance between two independent draws of the true mixture of this size (the noise floor). */
  readonly slicedWassersteinFloor: number;
  /** Fraction of the 8 modes receiving at least 5% / 8 of the samples. */
  readonly modeCoverage: number;
  /** Fraction of samples farther than 4 std from every mode centre. */
  readonly offModeFraction: number;
  readonly ms: number;
  readonly samples: Float32Array;
}

/** Sample a toy checkpoint and score it against held-out data. */
export function sampleToy(checkpointDir: string, opts: ToySampleOptions): ToyMetrics {
  const sampler = checkOneOf('sampler', opts.sampler, SAMPLER_NAMES);
  const steps = checkNumber('steps', opts.steps, { integer: true, min: 1 });
  const gridKind = checkOneOf('grid', opts.grid ?? 'uniform', GRID_KINDS);
  const n = checkNumber('n', opts.n ?? 4096, { integer: true, min: 1 });
  const ck = loadCheckpoint(checkpointDir, { expectTask: TOY_TASK });
  const store: ParamStore = opts.ema !== false && ck.ema ? ck.ema : ck.params;
  try {
    const path = pathFromSpec(ck.meta.parameterization.path);
    const net = buildNetwork(ck.meta.model, store);
    const den = wrapNetwork(net, { path, prediction: ck.meta.parameterization.prediction, precond: ck.meta.parameterization.precond });
    const t0 = performance.now();
    const x = sample({ denoiser: den, path, shape: [n, 2], sampler, grid: { kind: gridKind, steps } as never, rng: new Rng(opts.seed ?? 123) });
    const samples = x.dataSync() as Float32Array;
    const ms = performance.now() - t0;
    x.dispose();
    return { sampler, steps, n, ms, samples, ...scoreToySamples(samples) };
  } finally {
    ck.params.dispose();
    ck.ema?.dispose();
    ck.optimizer?.m.dispose();
    ck.optimizer?.v.dispose();
  }
}

export function scoreToySamples(samples: Float32Array): Pick<ToyMetrics, 'slicedWasserstein' | 'slicedWassersteinFloor' | 'modeCoverage' | 'offModeFraction'> {
  const n = samples.length / 2;
  const held = sampleMixture(4096, 987654).data;
  const ref = sampleMixture(n, 55555).data;
  const modes = nearestMode(samples);
  const counts = new Array(EIGHT_GAUSSIANS.modes).fill(0);
  let off = 0;
  for (let i = 0; i < n; i++) {
    counts[modes[i]]++;
    const a = (2 * Math.PI * modes[i]) / EIGHT_GAUSSIANS.modes;
    const d = Math.hypot(samples[2 * i] - EIGHT_GAUSSIANS.radius * Math.cos(a), samples[2 * i + 1] - EIGHT_GAUSSIANS.radius * Math.sin(a));
    if (!(d <= 4 * EIGHT_GAUSSIANS.std)) off++;
  }
  return {
    slicedWasserstein: slicedWasserstein(samples, held, 2),
    slicedWassersteinFloor: slicedWasserstein(ref, held, 2),
    modeCoverage: counts.filter((c) => c >= (0.05 * n) / EIGHT_GAUSSIANS.modes).length / EIGHT_GAUSSIANS.modes,
    offModeFraction: off / n,
  };
}
