/** Training a Diffusion Policy on demonstrations with the core's Trainer and losses. */
import * as tf from '@tensorflow/tfjs-core';
import { Normalizer } from '../../../src/data/normalizer.js';
import { pathFromSpec } from '../../../src/path/index.js';
import { denoisingLoss } from '../../../src/loss/denoising.js';
import { flowMatchingLoss } from '../../../src/loss/flowMatching.js';
import { Trainer, type Batch, type Objective, type ObjectiveContext } from '../../../src/train/trainer.js';
import { checkNumber, fail } from '../../../src/util/validate.js';
import '../model/temporalUnet.js';
import { validatePolicyConfig, type DiffusionPolicyConfig } from './config.js';
import { featuresFor } from './features.js';
import { DiffusionPolicy, POLICY_TASK_PREFIX } from './policy.js';
import { buildWindows, type Demo } from './windows.js';

export interface PolicyTrainOptions {
  readonly steps: number;
  readonly batchSize?: number;
  readonly lr?: number;
  readonly seed?: number;
  readonly emaDecay?: number;
  /** Continue a run from its checkpoint (same data); `steps` is the new total. */
  readonly resumeFrom?: string;
  /**
   * Fine-tune: start from this trained policy's weights and normalisers (fresh optimiser and
   * schedule, any data, e.g. the original demonstrations plus expert corrections). Its network
   * configuration must match `config`.
   */
  readonly initFrom?: DiffusionPolicy;
}

export interface PolicyTraining {
  readonly trainer: Trainer;
  readonly windows: number;
  /**
   * Split each step's batch with `workers` worker threads (data parallelism; one single-threaded
   * WASM backend each, so run the main thread with one WASM thread too).
   */
  startWorkers(workers: number): Promise<void>;
  save(dir: string, extraMeta?: Record<string, unknown>): Promise<void>;
  dispose(): void;
}

/** The training loss of a policy configuration (the core's denoising or flow-matching loss on action chunks). */
export function policyObjective(config: DiffusionPolicyConfig): Objective {
  const cfg = validatePolicyConfig(config);
  const param = { path: pathFromSpec(cfg.path), prediction: cfg.prediction };
  const loss = cfg.objective === 'denoising' ? denoisingLoss({ param, checkFinite: false }) : flowMatchingLoss({ param, checkFinite: false });
  return ({ net, rng }: ObjectiveContext, b: Batch): tf.Tensor => loss(net, b.x, rng, b.cond);
}

/** Replica module for data-parallel training (`policyTrainer`'s `workers` option). */
export const POLICY_REPLICA_MODULE = new URL(`./trainReplica${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url).href;

export function policyTrainer(demos: readonly Demo[], config: DiffusionPolicyConfig, opts: PolicyTrainOptions): PolicyTraining {
  const cfg = validatePolicyConfig(config);
  const steps = checkNumber('steps', opts.steps, { integer: true, min: 1 });
  const features = featuresFor(cfg.env, cfg.obsDim);
  const w = buildWindows(demos, cfg, features);
  const F = features.outputDim;
  const init = opts.initFrom;
  if (init !== undefined) {
    if (opts.resumeFrom) fail('initFrom and resumeFrom: pass one (resume continues a run, initFrom starts a new one from trained weights)');
    if (!(init instanceof DiffusionPolicy)) fail('initFrom: expected a DiffusionPolicy');
    if (init.config.consistency) fail('initFrom: a consistency-distilled policy cannot be fine-tuned with the denoising objective');
    const keys = ['env', 'obsDim', 'actionDim', 'obsHorizon', 'predHorizon', 'embedDim', 'path', 'prediction', 'objective'] as const;
    for (const k of keys) {
      if (init.config[k] !== cfg[k]) fail(`initFrom: the policy has ${k} = ${String(init.config[k])}, the new configuration ${String(cfg[k])}`);
    }
    if (init.config.channels.join(',') !== cfg.channels.join(',')) fail(`initFrom: the policy has channels ${init.config.channels.join(',')}, the new configuration ${cfg.channels.join(',')}`);
  }
  // Fine-tuning keeps the initial policy's normalisers: its weights only make sense in them.
  const obsNorm = init ? init.obsNormalizer : Normalizer.fit('minmax', w.obs, F);
  const actNorm = init ? init.actionNormalizer : Normalizer.fit('minmax', w.actions, cfg.actionDim);
  const x = tf.tensor3d(actNorm.normalize(w.actions), [w.count, cfg.predHorizon, cfg.actionDim]);
  const cond = tf.tensor2d(obsNorm.normalize(w.obs), [w.count, cfg.obsHorizon * F]);
  const path = pathFromSpec(cfg.path);
  const lr = opts.lr ?? 1e-3;
  const objective = policyObjective(cfg);
  const trainer = opts.resumeFrom
    ? Trainer.resume(opts.resumeFrom, objective, { x, cond }, { expectTask: POLICY_TASK_PREFIX + cfg.env, steps }).trainer
    : new Trainer(
    {
      model: DiffusionPolicy.modelSpec(cfg, F),
      steps,
      batchSize: opts.batchSize ?? 256,
      seed: opts.seed ?? 0,
      optimizer: { kind: 'adamw', weightDecay: 1e-6, precision: 'float64' },
      schedule: { kind: 'cosine', lr, warmup: Math.min(500, Math.floor(steps / 20)), minLr: lr * 0.02 },
      clipNorm: 1,
      emaDecay: opts.emaDecay ?? 0.999,
      logEvery: Math.max(1, Math.min(100, Math.floor(steps / 100))),
    },
    objective,
    { x, cond },
    init ? { params: init.store.clone(true), step: 0 } : undefined,
  );
  return {
    trainer,
    windows: w.count,
    startWorkers: (workers) => trainer.startReplicas({ workers, module: POLICY_REPLICA_MODULE, init: { policy: cfg } }),
    save: (dir, extraMeta = {}) =>
      trainer.save(dir, {
        task: POLICY_TASK_PREFIX + cfg.env,
        parameterization: { path: path.spec, prediction: cfg.prediction },
        normalizer: { obs: obsNorm.state, action: actNorm.state },
        extra: { policy: cfg, episodes: demos.length, windows: w.count, ...extraMeta },
      }),
    dispose: () => {
      trainer.dispose();
      x.dispose();
      cond.dispose();
    },
  };
}
