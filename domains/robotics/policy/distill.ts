/**
 * Consistency distillation of a trained Diffusion Policy (Consistency Policy, Prasad et al.
 * 2024; consistency models, Song et al. 2023): a student U-Net, initialised from the teacher,
 * learns to map any noisy chunk straight to the teacher's ODE solution, so one network
 * evaluation gives an action chunk. Uses the core's consistency loss and Trainer.
 */
import * as tf from '@tensorflow/tfjs-core';
import { makeGrid } from '../../../src/grid/grid.js';
import { consistencyDistillationLoss } from '../../../src/loss/consistencyLoss.js';
import { flowMatchingLoss } from '../../../src/loss/flowMatching.js';
import { Rng } from '../../../src/rng/rng.js';
import { getSampler } from '../../../src/sample/registry.js';
import { consistencyGrid, consistencyParam } from '../../../src/loss/consistencyParam.js';
import { Trainer, type Objective } from '../../../src/train/trainer.js';
import { checkNumber, fail } from '../../../src/util/validate.js';
import type { DiffusionPolicyConfig } from './config.js';
import { DiffusionPolicy } from './policy.js';
import { buildWindows, type Demo } from './windows.js';

/**
 * Default sigma_data of the student's boundary scalings. The student keeps its teacher's
 * parameterisation, f = c_skip x / alpha + (1 - c_skip) D; with EDM's 0.5, c_skip mixes up to a
 * third of the noisy input into f at middle noise levels, so the initial student is far from
 * consistent there and distillation drifts away from the teacher (`benchmarks/distill.ts`).
 * 0.02 keeps c_skip near 0 away from the boundary, so the student starts as the teacher's x0
 * estimate at every noise level.
 */
export const DEFAULT_DISTILL_SIGMA_DATA = 0.02;

export interface DistillOptions {
  readonly steps: number;
  readonly batchSize?: number;
  readonly lr?: number;
  readonly seed?: number;
  /** Discretisation points N of the teacher ODE (default 20). */
  readonly gridPoints?: number;
  /**
   * sigma_data of the boundary scalings: c_skip = s^2 / ((sig - sig_min)^2 + s^2) weights the
   * noisy input in the student's output (default DEFAULT_DISTILL_SIGMA_DATA).
   */
  readonly sigmaData?: number;
  /** Distance between online and target chunks (default 'pseudo-huber'). */
  readonly metric?: 'l2' | 'pseudo-huber';
}

export function policyDistiller(teacher: DiffusionPolicy, demos: readonly Demo[], opts: DistillOptions): StudentTraining {
  const steps = checkNumber('steps', opts.steps, { integer: true, min: 1 });
  const cfg = teacher.config;
  const w = buildWindows(demos, cfg, teacher.features);
  const F = teacher.features.outputDim;
  const x = tf.tensor3d(teacher.actionNormalizer.normalize(w.actions), [w.count, cfg.predHorizon, cfg.actionDim]);
  const cond = tf.tensor2d(teacher.obsNormalizer.normalize(w.obs), [w.count, cfg.obsHorizon * F]);
  // The student keeps the teacher's parameterisation ('denoiser' form), so starting from the
  // teacher's weights it starts as the teacher's x0 estimate (see DEFAULT_DISTILL_SIGMA_DATA).
  // A flow-matching teacher (rectified flow, alpha(tMax) = 0) is distilled in the path's own
  // coordinates (src/loss/consistencyParam.ts); its fresh student is one flow-Euler step.
  const cparam = consistencyParam({ path: teacher.path, sigmaData: checkNumber('sigmaData', opts.sigmaData ?? DEFAULT_DISTILL_SIGMA_DATA, { min: Number.MIN_VALUE }), inner: teacher.param });
  const loss = consistencyDistillationLoss({
    cparam,
    teacher: { net: teacher.network, param: teacher.param },
    solver: 'heun',
    grid: consistencyGrid(cparam, opts.gridPoints ?? 20),
    metric: opts.metric ?? 'pseudo-huber',
    checkFinite: false,
  });
  const studentConfig: DiffusionPolicyConfig = { ...cfg, sampler: 'consistency-1step', samplingSteps: 1, consistency: { sigmaData: cparam.sigmaData, sigmaMin: cparam.sigmaMin, form: 'denoiser' } };
  return studentTraining(teacher, studentConfig, { steps, batchSize: opts.batchSize ?? 64, lr: opts.lr ?? 2e-4, seed: opts.seed ?? 0, emaDecay: 0.95 }, ({ net, emaNet, rng }, b) => loss(net, emaNet, b.x, rng, b.cond), { x, cond });
}

/** A student network initialised from the teacher, trained on (x, cond) with its own objective. */
interface StudentTraining {
  trainer: Trainer;
  student: () => DiffusionPolicy;
  dispose: () => void;
}

function studentTraining(
  teacher: DiffusionPolicy,
  studentConfig: DiffusionPolicyConfig,
  o: { steps: number; batchSize: number; lr: number; seed: number; emaDecay: number },
  objective: Objective,
  data: { x: tf.Tensor; cond: tf.Tensor },
): StudentTraining {
  const trainer = new Trainer(
    {
      model: DiffusionPolicy.modelSpec(teacher.config, teacher.features.outputDim),
      steps: o.steps,
      batchSize: o.batchSize,
      seed: o.seed,
      optimizer: { kind: 'adamw', weightDecay: 0, precision: 'float64' },
      schedule: { kind: 'constant', lr: o.lr, warmup: 50 },
      clipNorm: 1,
      emaDecay: o.emaDecay,
      logEvery: Math.max(1, Math.min(50, Math.floor(o.steps / 100))),
    },
    objective,
    data,
    // The student starts from the teacher's weights.
    { params: teacher.store.clone(true), step: 0 },
  );
  return {
    trainer,
    student: () => {
      trainer.syncEma();
      return new DiffusionPolicy(studentConfig, (trainer.ema ?? trainer.params).clone(false), teacher.obsNormalizer, teacher.actionNormalizer);
    },
    dispose: () => {
      trainer.dispose();
      data.x.dispose();
      data.cond.dispose();
    },
  };
}

export interface ReflowOptions {
  readonly steps: number;
  readonly batchSize?: number;
  readonly lr?: number;
  readonly seed?: number;
  /** Noise draws paired with each demonstration window (default 1). */
  readonly pairsPerWindow?: number;
  /** Sampling steps of the student (default 1). */
  readonly studentSteps?: number;
  /** Called after each batch of teacher rollouts with (windows done, windows in all). */
  readonly onPairs?: (done: number, total: number) => void;
}

/**
 * Reflow (rectified flow, Liu et al. 2023; one-step use as in InstaFlow, Liu et al. 2024): the
 * teacher's deterministic sampler maps noise to chunks, and a student, initialised from the
 * teacher, is trained with the core's flow-matching loss on those (noise, chunk) pairs instead
 * of independent ones. Independent pairs make the learned velocity at pure noise an average
 * over the modes the noise could lead to, so one Euler step lands between modes; the paired
 * paths do not cross, so they straighten and one or two steps follow them. The teacher samples
 * at its stored temperature from T x noise, and the student is paired with the unscaled noise,
 * so it samples at temperature 1.
 */
export function policyReflow(
  teacher: DiffusionPolicy,
  demos: readonly Demo[],
  opts: ReflowOptions,
): StudentTraining & { pairs: number; data: { readonly x: tf.Tensor; readonly cond: tf.Tensor } } {
  const steps = checkNumber('steps', opts.steps, { integer: true, min: 1 });
  const perWindow = checkNumber('pairsPerWindow', opts.pairsPerWindow ?? 1, { integer: true, min: 1, max: 64 });
  const studentSteps = checkNumber('studentSteps', opts.studentSteps ?? 1, { integer: true, min: 1, max: 100 });
  const cfg = teacher.config;
  if (cfg.consistency) fail('reflow: the teacher is a consistency student; reflow a diffusion or flow-matching policy');
  if (!cfg.sampler.startsWith('flow-') && cfg.sampler !== 'ddim') fail(`reflow: the teacher's sampler '${cfg.sampler}' is not a deterministic ODE sampler (flow-euler, flow-midpoint, flow-rk4 or ddim)`);
  const w = buildWindows(demos, cfg, teacher.features);
  const F = teacher.features.outputDim;
  const Tp = cfg.predHorizon;
  const A = cfg.actionDim;
  const N = w.count * perWindow;
  const obsFlat = teacher.obsNormalizer.normalize(w.obs);
  const condAll = new Float32Array(N * cfg.obsHorizon * F);
  for (let r = 0; r < perWindow; r++) condAll.set(obsFlat, r * obsFlat.length);
  // Pairs: x[:, 0] the teacher's chunk, x[:, 1] the noise it came from.
  const pairs = new Float32Array(N * 2 * Tp * A);
  const rng = new Rng(opts.seed ?? 0);
  const sampler = getSampler(cfg.sampler);
  const grid = makeGrid(teacher.path, { kind: 'uniform', steps: cfg.samplingSteps });
  const temperature = cfg.temperature ?? 1;
  const B = 256;
  for (let i = 0; i < N; i += B) {
    const n = Math.min(B, N - i);
    tf.tidy(() => {
      const cond = tf.tensor2d(condAll.subarray(i * cfg.obsHorizon * F, (i + n) * cfg.obsHorizon * F), [n, cfg.obsHorizon * F]);
      const z = rng.normal([n, Tp, A]);
      const xT = tf.mul(z, teacher.path.sigma(grid[0]!) * temperature);
      const x0 = sampler(teacher.baseDenoiser(cond), xT, grid, teacher.path, {});
      const both = tf.stack([x0, z], 1).dataSync() as Float32Array;
      pairs.set(both, i * 2 * Tp * A);
    });
    opts.onPairs?.(Math.min(N, i + n), N);
  }
  const x = tf.tensor4d(pairs, [N, 2, Tp, A]);
  const cond = tf.tensor2d(condAll, [N, cfg.obsHorizon * F]);
  const loss = flowMatchingLoss({ param: teacher.param, checkFinite: false });
  const studentConfig: DiffusionPolicyConfig = { ...cfg, samplingSteps: studentSteps, temperature: 1 };
  const objective: Objective = ({ net, rng: r }, b) =>
    tf.tidy(() => {
      const [chunk, noise] = tf.unstack(b.x, 1) as [tf.Tensor, tf.Tensor];
      return loss(net, chunk, r, b.cond, undefined, noise);
    });
  const t = studentTraining(teacher, studentConfig, { steps, batchSize: opts.batchSize ?? 128, lr: opts.lr ?? 1e-4, seed: opts.seed ?? 0, emaDecay: 0.995 }, objective, { x, cond });
  // data: [N, 2, Tp, A]: x[:, 0] the teacher's normalised chunk, x[:, 1] its noise; cond [N, To * F].
  return { ...t, pairs: N, data: { x, cond } };
}
