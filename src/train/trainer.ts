/**
 * The training loop shared by every domain: seeded data order, Adam/AdamW, warmup + cosine
 * learning rate, gradient clipping, EMA of the weights, progress as an RxJS Observable, and
 * checkpoints that resume exactly.
 */
import * as tf from '@tensorflow/tfjs-core';
import '../backend/registerGradients.js';
import { Observable } from 'rxjs';
import type { Network } from '../denoiser/denoiser.js';
import { ParamStore } from '../nn/params.js';
import { buildNetwork, releaseNetwork, type ModelSpec } from '../nn/registry.js';
import { Rng } from '../rng/rng.js';
import { checkFiniteTensor, checkNumber, fail } from '../util/validate.js';
import { loadCheckpoint, saveCheckpoint, type CheckpointMeta } from './checkpoint.js';
import { GradientReplicas, type ReplicaSpec } from './dataParallel.js';
import { readValues } from './hostMemory.js';
import { AdamOptimizer, type OptimizerConfig } from './optimizer.js';
import { learningRate, type LrSchedule } from './schedule.js';
import { requireBackend } from '../backend/backend.js';

export interface Batch {
  readonly x: tf.Tensor;
  readonly cond?: tf.Tensor;
}

export interface ObjectiveContext {
  readonly net: Network;
  /** The EMA network (targets for consistency losses); equals `net` when EMA is off. */
  readonly emaNet: Network;
  readonly rng: Rng;
  readonly step: number;
}

/** A scalar loss of one batch; must be differentiable w.r.t. the network's parameters. */
export type Objective = (ctx: ObjectiveContext, batch: Batch) => tf.Scalar | tf.Tensor;

export interface TrainerConfig {
  readonly model: ModelSpec;
  readonly steps: number;
  readonly batchSize: number;
  readonly seed: number;
  readonly optimizer?: OptimizerConfig;
  readonly schedule?: LrSchedule;
  readonly clipNorm?: number;
  /** EMA decay (e.g. 0.999); omit to disable. */
  readonly emaDecay?: number;
  /** Emit a progress event every N steps (default 10). */
  readonly logEvery?: number;
}

export interface TrainProgress {
  readonly step: number;
  readonly steps: number;
  readonly loss: number;
  readonly lr: number;
  readonly gradNorm: number;
  readonly samplesPerSec: number;
}

export interface Dataset {
  /** Training examples, first axis = example. */
  readonly x: tf.Tensor;
  /** Optional per-example conditioning, first axis = example. */
  readonly cond?: tf.Tensor;
}

function validateConfig(c: TrainerConfig): void {
  if (!c || typeof c !== 'object') fail('trainer config: expected an object');
  checkNumber('steps', c.steps, { integer: true, min: 0 });
  checkNumber('batchSize', c.batchSize, { integer: true, min: 1 });
  checkNumber('seed', c.seed, { integer: true });
  if (c.clipNorm !== undefined) checkNumber('clipNorm', c.clipNorm, { min: 0 });
  if (c.emaDecay !== undefined) checkNumber('emaDecay', c.emaDecay, { min: 0, max: 1 });
}

function validateData(d: Dataset): void {
  if (!d || !(d.x instanceof tf.Tensor)) fail('data.x: expected a tensor of training examples');
  if (d.x.shape[0] === 0) fail('data.x: the dataset is empty');
  checkFiniteTensor('data.x', d.x);
  if (d.cond) {
    if (d.cond.shape[0] !== d.x.shape[0]) fail(`data.cond: expected ${d.x.shape[0]} rows (one per example), received ${d.cond.shape[0]}`);
    checkFiniteTensor('data.cond', d.cond);
  }
}

export class Trainer {
  readonly params: ParamStore;
  readonly ema?: ParamStore;
  readonly net: Network;
  readonly emaNet: Network;
  private readonly opt: AdamOptimizer;
  private emaFlat?: Float32Array;
  private innerEmaNet?: Network;
  private emaDirty = false;
  private readonly rng: Rng;
  private order: Int32Array = new Int32Array(0);
  private cursor = 0;
  private replicas?: GradientReplicas;
  private flatGrad?: Float32Array;
  /** Completed optimisation steps. */
  step = 0;
  lastLoss = NaN;

  constructor(readonly config: TrainerConfig, private readonly objective: Objective, private readonly data: Dataset, resume?: { params: ParamStore; ema?: ParamStore; optimizer?: { m: ParamStore; v: ParamStore; step: number }; step: number }) {
    requireBackend('Trainer');
    validateConfig(config);
    validateData(data);
    if (typeof objective !== 'function') fail('objective: expected a function (ctx, batch) => scalar loss');
    this.rng = new Rng(config.seed);
    const initRng = this.rng.split(1)[0];
    this.params = resume?.params ?? new ParamStore(initRng);
    this.net = buildNetwork(config.model, this.params);
    if (!resume) this.initialiseParams();
    if (config.emaDecay !== undefined) {
      this.ema = resume?.ema ?? this.params.clone(false);
    }
    const names = this.params.trainableNames();
    this.opt = new AdamOptimizer(this.params, config.optimizer ?? { kind: 'adam' }, names);
    if (resume?.optimizer) {
      this.opt.loadState(resume.optimizer.m, resume.optimizer.v, resume.optimizer.step);
      resume.optimizer.m.dispose();
      resume.optimizer.v.dispose();
    }
    if (this.ema) {
      this.emaFlat = this.opt.flatParams(this.ema);
      const inner = buildNetwork(config.model, this.ema);
      this.innerEmaNet = inner;
      // The EMA lives in one flat vector; the named EMA weights are refreshed only when used.
      this.emaNet = (x, t, c) => {
        this.syncEma();
        return inner(x, t, c);
      };
    } else {
      this.emaNet = this.net;
    }
    if (resume) {
      // Replay the data order consumed so far (per-step randomness is derived from the step index), so resuming is exact.
      const steps = resume.step;
      for (let s = 0; s < steps; s++) this.nextIndices();
      this.step = steps;
    }
  }

  /** Run one forward pass so every parameter exists before the optimiser snapshots them. */
  private initialiseParams(): void {
    tf.tidy(() => {
      const n = Math.min(2, this.data.x.shape[0]);
      const x = tf.slice(this.data.x, 0, n);
      const c = this.data.cond ? tf.slice(this.data.cond, 0, n) : undefined;
      this.net(x, tf.fill([n], 0.5), c);
    });
  }

  private nextIndices(): Int32Array {
    const n = this.data.x.shape[0];
    const b = Math.min(this.config.batchSize, n);
    const idx = new Int32Array(b);
    for (let i = 0; i < b; i++) {
      if (this.cursor >= this.order.length) {
        this.order = this.rng.permutation(n);
        this.cursor = 0;
      }
      idx[i] = this.order[this.cursor++];
    }
    return idx;
  }

  /** A per-step generator derived from the seed and the step index (independent of call history). */
  private stepRng(step: number): Rng {
    return new Rng((this.config.seed * 1000003 + step * 7919) | 0);
  }

  get learningRate(): number {
    return learningRate(this.config.schedule ?? { kind: 'constant', lr: 1e-3 }, this.step, this.config.steps);
  }

  /**
   * Split every following step's batch between this thread and `spec.workers` worker threads
   * (data parallelism, see dataParallel.ts). The replicas build the network from `spec.module`;
   * the optimiser, EMA and checkpoints stay here. Gradients are averaged over the whole batch,
   * so a step is the same update as without replicas up to the random draws (each part has its
   * own seeded generator) and float rounding; runs are deterministic for a given worker count.
   */
  async startReplicas(spec: ReplicaSpec): Promise<void> {
    if (this.replicas) fail('startReplicas: replicas are already running (stopReplicas first)');
    const names = this.opt.names;
    const sizes = names.map((n) => this.params.get(n).size);
    const b = Math.min(this.config.batchSize, this.data.x.shape[0]);
    if (spec && Number.isInteger(spec.workers) && spec.workers + 1 > b) fail(`startReplicas: ${spec.workers} workers plus this thread need a batch of at least ${spec.workers + 1} examples, the batch has ${b}`);
    const x = { values: Float32Array.from(this.data.x.dataSync() as Float32Array), shape: [...this.data.x.shape] };
    const cond = this.data.cond ? { values: Float32Array.from(this.data.cond.dataSync() as Float32Array), shape: [...this.data.cond.shape] } : undefined;
    this.replicas = await GradientReplicas.start(spec, { model: this.config.model, names, sizes, maxBatch: Math.ceil(b / (spec.workers + 1)) }, { x, cond });
    this.flatGrad = new Float32Array(this.opt.size);
  }

  /** Worker threads computing gradients beside this one (0 without replicas). */
  get replicaWorkers(): number {
    return this.replicas?.workers ?? 0;
  }

  /** Stop the replica workers; later steps run on this thread alone. */
  async stopReplicas(): Promise<void> {
    const r = this.replicas;
    this.replicas = undefined;
    this.flatGrad = undefined;
    await r?.close();
  }

  /** One optimisation step; returns the loss. */
  trainStep(): { loss: number; gradNorm: number; lr: number } {
    if (this.replicas) return this.parallelStep(this.replicas);
    const idx = this.nextIndices();
    const rng = this.stepRng(this.step);
    const lr = this.learningRate;
    const names = this.params.trainableNames();
    const vars = names.map((n) => this.params.get(n));
    const byVarName = new Map(vars.map((v, i) => [v.name, names[i]]));
    let loss = NaN;
    let gradNorm = NaN;
    tf.tidy(() => {
      const { value, grads } = this.lossAndGrads(idx, rng, vars);
      loss = value.dataSync()[0];
      if (!Number.isFinite(loss)) fail(`training diverged: loss is ${loss} at step ${this.step} (lower the learning rate or check the data)`);
      const named: Record<string, tf.Tensor> = {};
      for (const [vn, g] of Object.entries(grads)) named[byVarName.get(vn) as string] = g;
      gradNorm = this.opt.apply(named, lr, this.config.clipNorm, this.emaUpdate()).gradNorm;
    });
    this.step += 1;
    this.lastLoss = loss;
    return { loss, gradNorm, lr };
  }

  /** The EMA argument of an optimiser update (decay warmed up as in Diffusion Policy's EMA), if EMA is on. */
  private emaUpdate(): { values: Float32Array; decay: number } | undefined {
    if (!this.emaFlat || this.config.emaDecay === undefined) return undefined;
    // Warm-up of the EMA decay: short runs are not dominated by the initial weights.
    this.emaDirty = true;
    return { values: this.emaFlat, decay: Math.min(this.config.emaDecay, (1 + this.step) / (10 + this.step)) };
  }

  /** Loss of the examples `idx` and its gradients w.r.t. `vars` (call inside tf.tidy). */
  private lossAndGrads(idx: Int32Array, rng: Rng, vars: tf.Variable[]): { value: tf.Scalar; grads: tf.NamedTensorMap } {
    const it = tf.tensor1d(idx, 'int32');
    const batch: Batch = { x: tf.gather(this.data.x, it), cond: this.data.cond ? tf.gather(this.data.cond, it) : undefined };
    return tf.variableGrads(() => {
      const l = this.objective({ net: this.net, emaNet: this.emaNet, rng, step: this.step }, batch);
      if (l.size !== 1) fail(`objective: must return a scalar loss, returned shape [${l.shape.join(', ')}]`);
      return tf.reshape(l, []) as tf.Scalar;
    }, vars);
  }

  /** Seed of part `r` (>= 1) of a step split across replicas. */
  private partSeed(step: number, r: number): number {
    return (this.config.seed * 1000003 + step * 7919 + r * 15485863) | 0;
  }

  /** A step whose batch is split between this thread (part 0) and the replicas (parts 1..W). */
  private parallelStep(replicas: GradientReplicas): { loss: number; gradNorm: number; lr: number } {
    const idx = this.nextIndices();
    const b = idx.length;
    const parts = replicas.workers + 1;
    const bounds = Array.from({ length: parts + 1 }, (_, r) => Math.floor((r * b) / parts));
    const lr = this.learningRate;
    this.opt.writeFlatParams(replicas.params);
    replicas.dispatch(
      Array.from({ length: replicas.workers }, (_, w) => idx.subarray(bounds[w + 1], bounds[w + 2])),
      this.step,
      Array.from({ length: replicas.workers }, (_, w) => this.partSeed(this.step, w + 1)),
    );
    const flat = this.flatGrad as Float32Array;
    const names = this.opt.names;
    const vars = names.map((n) => this.params.get(n));
    const n0 = bounds[1];
    let lossSum = 0;
    tf.tidy(() => {
      const { value, grads } = this.lossAndGrads(idx.subarray(0, n0), this.stepRng(this.step), vars);
      lossSum = n0 * value.dataSync()[0];
      const w0 = n0 / b;
      vars.forEach((v, i) => {
        const g = readValues(grads[v.name]);
        const off = this.opt.offsetOf(i);
        for (let k = 0; k < g.length; k++) flat[off + k] = w0 * g[k];
      });
    });
    for (let w = 0; w < replicas.workers; w++) {
      const nw = bounds[w + 2] - bounds[w + 1];
      const r = replicas.collect(w);
      lossSum += nw * r.loss;
      const ww = nw / b;
      const g = r.grads;
      for (let k = 0; k < flat.length; k++) flat[k] += ww * g[k];
    }
    const loss = lossSum / b;
    if (!Number.isFinite(loss)) fail(`training diverged: loss is ${loss} at step ${this.step} (lower the learning rate or check the data)`);
    const gradNorm = this.opt.applyFlat(flat, lr, this.config.clipNorm, this.emaUpdate()).gradNorm;
    this.step += 1;
    this.lastLoss = loss;
    return { loss, gradNorm, lr };
  }

  /**
   * Train until `config.steps`, emitting progress. Unsubscribing stops after the current step.
   * The loop yields to the event loop between steps so timers and I/O keep running.
   */
  fit(): Observable<TrainProgress> {
    return new Observable<TrainProgress>((sub) => {
      let stopped = false;
      const logEvery = this.config.logEvery ?? 10;
      const run = async (): Promise<void> => {
        let t0 = performance.now();
        let samples = 0;
        let lossAcc = 0;
        let count = 0;
        while (!stopped && this.step < this.config.steps) {
          const r = this.trainStep();
          samples += Math.min(this.config.batchSize, this.data.x.shape[0]);
          lossAcc += r.loss;
          count++;
          if (this.step % logEvery === 0 || this.step === this.config.steps) {
            const dt = (performance.now() - t0) / 1000;
            sub.next({ step: this.step, steps: this.config.steps, loss: lossAcc / count, lr: r.lr, gradNorm: r.gradNorm, samplesPerSec: samples / Math.max(dt, 1e-9) });
            t0 = performance.now();
            samples = 0;
            lossAcc = 0;
            count = 0;
            await new Promise((r2) => setImmediate(r2));
          }
        }
        sub.complete();
      };
      run().catch((err) => sub.error(err));
      return () => {
        stopped = true;
      };
    });
  }

  /** Copy the flat EMA vector into the named EMA weights. */
  syncEma(): void {
    if (!this.emaDirty || !this.emaFlat || !this.ema) return;
    const flat = this.emaFlat;
    const ema = this.ema;
    let offset = 0;
    tf.tidy(() =>
      this.opt.names.forEach((n) => {
        const target = ema.get(n);
        ema.set(n, tf.tensor(flat.subarray(offset, offset + target.size), target.shape, 'float32'));
        offset += target.size;
      }),
    );
    this.emaDirty = false;
  }

  /** Save weights, EMA, optimiser state and metadata. */
  async save(dir: string, meta: Omit<CheckpointMeta, 'model' | 'training'> & { training?: Record<string, unknown> }): Promise<void> {
    this.syncEma();
    this.opt.syncState();
    await saveCheckpoint(dir, {
      meta: { ...meta, model: this.config.model, training: { ...(meta.training ?? {}), step: this.step, config: this.config } },
      params: this.params,
      ema: this.ema,
      optimizer: { m: this.opt.m, v: this.opt.v, step: this.opt.step },
    });
  }

  /** Resume from a checkpoint written by `save` (same objective and data). */
  static resume(dir: string, objective: Objective, data: Dataset, opts: { expectTask?: string; steps?: number } = {}): { trainer: Trainer; meta: CheckpointMeta } {
    const ck = loadCheckpoint(dir, { expectTask: opts.expectTask });
    const saved = (ck.meta.training as { config?: TrainerConfig } | undefined)?.config;
    if (!saved) fail(`checkpoint '${dir}': has no training state to resume from`);
    const config: TrainerConfig = { ...saved, steps: opts.steps ?? saved.steps };
    const trainer = new Trainer(config, objective, data, { params: ck.params, ema: ck.ema, optimizer: ck.optimizer, step: ck.meta.training?.step ?? 0 });
    return { trainer, meta: ck.meta };
  }

  dispose(): void {
    void this.stopReplicas();
    releaseNetwork(this.net);
    if (this.innerEmaNet) releaseNetwork(this.innerEmaNet);
    this.opt.dispose();
    this.ema?.dispose();
    this.params.dispose();
  }
}
