/**
 * Diffusion Policy: a conditional temporal U-Net that denoises an action chunk [Tp, A] given
 * the last To observation frames. Min-max normalisation of observations and actions lives
 * outside the network and is stored in the checkpoint. Inference uses the core's samplers,
 * guidance and inpainting only.
 */
import * as tf from '@tensorflow/tfjs-core';
import { Normalizer, type NormalizerState } from '../../../src/data/normalizer.js';
import { wrapNetwork, type Denoiser, type Network, type Parameterization } from '../../../src/denoiser/denoiser.js';
import { gradientGuidance, guide, inpaint, projectionGuidance } from '../../../src/guide/index.js';
import type { GuidanceSchedule } from '../../../src/guide/schedule.js';
import { ParamStore } from '../../../src/nn/params.js';
import { buildNetwork, releaseNetwork, type ModelSpec } from '../../../src/nn/registry.js';
import { pathFromSpec, type NoisePath } from '../../../src/path/index.js';
import { Rng } from '../../../src/rng/rng.js';
import { sample, type SamplerName } from '../../../src/sample/registry.js';
import { loadCheckpoint, readCheckpointMeta, saveCheckpoint } from '../../../src/train/checkpoint.js';
import { consistencyDenoiser, consistencyParam, type ConsistencyParam } from '../../../src/loss/consistencyParam.js';
import { checkNumber, checkOneOf, fail } from '../../../src/util/validate.js';
import '../model/temporalUnet.js';
import { validatePolicyConfig, type DiffusionPolicyConfig } from './config.js';
import { featuresFor, type FeatureMap } from './features.js';
import { requireBackend } from '../../../src/backend/backend.js';

export const POLICY_TASK_PREFIX = 'robot-policy/';

/** A differentiable cost of raw (unnormalised) action chunks [B, Tp, A] -> [B]; lower is better. */
export type ChunkCost = (actions: tf.Tensor, ctx: { readonly obs: readonly ArrayLike<number>[][] }) => tf.Tensor;

/** How a cost term steers sampling. */
export type GuideMode = 'gradient' | 'projection';
export const GUIDE_MODES: readonly GuideMode[] = ['gradient', 'projection'];

export interface CostTerm {
  readonly name: string;
  readonly cost: ChunkCost;
  /** 'gradient': step size of the gradient step; 'projection': Polyak step multiplier in (0, 4]. */
  readonly scale: number;
  readonly schedule?: GuidanceSchedule;
  readonly clipNorm?: number;
  /**
   * 'gradient' (default): one fixed gradient step on the denoised chunk per sampler step
   * (Diffuser-style). 'projection': `iterations` Polyak steps of the denoised chunk towards
   * zero cost (the core's projectionGuidance); for costs that are zero when satisfied.
   */
  readonly mode?: GuideMode;
  /** Polyak steps per sampler step in 'projection' mode (default 3). */
  readonly iterations?: number;
  /** 'projection' mode: cap on each Polyak step's norm, in normalised action units over the chunk (default none). */
  readonly maxStep?: number;
}

export interface PredictOptions {
  readonly seed?: number;
  readonly sampler?: SamplerName;
  readonly steps?: number;
  /** Cost terms whose gradients steer sampling (Diffuser-style reward guidance). */
  readonly guidance?: readonly CostTerm[];
  /**
   * Actions pinned at the start of the chunk (raw units), e.g. the ones already executed or
   * queued, for continuity between chunks: pinned[k] fixes chunk step k.
   */
  readonly pinned?: readonly ArrayLike<number>[];
  /**
   * Per-window pinned actions (one entry per window, `undefined` for a free window), e.g. for
   * batches of sessions that each pin their own rows: entry.rows[k] fixes chunk step
   * entry.fromRow + k. Not combined with `pinned`.
   */
  readonly windowPins?: readonly (WindowPins | undefined)[];
  /** Several candidate chunks per window; the one with the lowest total guidance cost is returned. */
  readonly candidates?: number;
  /** Scale of the starting noise (default 1); below 1 the chunk moves toward the policy's modes. */
  readonly temperature?: number;
}

/** Actions one window pins: rows[k] (raw units) fixes chunk step fromRow + k. */
export interface WindowPins {
  readonly fromRow: number;
  readonly rows: readonly ArrayLike<number>[];
}

export interface ChunkResult {
  /** Per window: Tp actions of size A (raw units). */
  readonly chunks: Float32Array[];
  readonly latencyMs: number;
}

export class DiffusionPolicy {
  readonly features: FeatureMap;
  readonly path: NoisePath;
  readonly param: Parameterization;
  private readonly net: Network;
  /** Consistency parameterisation of a distilled policy, built once. */
  private readonly cparam: ConsistencyParam | undefined;
  private callCount = 0;

  constructor(
    readonly config: DiffusionPolicyConfig,
    readonly store: ParamStore,
    readonly obsNormalizer: Normalizer,
    readonly actionNormalizer: Normalizer,
  ) {
    requireBackend('DiffusionPolicy');
    validatePolicyConfig(config);
    this.features = featuresFor(config.env, config.obsDim);
    if (obsNormalizer.dim !== this.features.outputDim) fail(`obs normaliser has ${obsNormalizer.dim} features, the ${config.env} feature map gives ${this.features.outputDim}`);
    if (actionNormalizer.dim !== config.actionDim) fail(`action normaliser has ${actionNormalizer.dim} features, config.actionDim is ${config.actionDim}`);
    this.path = pathFromSpec(config.path);
    this.param = { path: this.path, prediction: config.prediction };
    this.net = buildNetwork(DiffusionPolicy.modelSpec(config, this.features.outputDim), store);
    const c = config.consistency;
    this.cparam = c ? consistencyParam({ path: this.path, sigmaData: c.sigmaData, sigmaMin: c.sigmaMin, inner: c.form === 'denoiser' ? this.param : undefined }) : undefined;
  }

  static modelSpec(c: DiffusionPolicyConfig, featureDim: number): ModelSpec {
    return {
      kind: 'temporal-unet',
      config: { actionDim: c.actionDim, horizon: c.predHorizon, condDim: c.obsHorizon * featureDim, channels: [...c.channels], embedDim: c.embedDim },
    };
  }

  /**
   * Load a policy checkpoint (EMA weights when present). `env` guards against another
   * environment's checkpoint; `sampling` replaces the stored sampling defaults (e.g. the
   * temperature `robot export --temperature` writes, the action horizon of `--action-horizon`,
   * the early-replanning clearance of `--replan-clearance`, null to remove it);
   * the result is validated like the rest.
   */
  static load(dir: string, opts: { env?: string; ema?: boolean; sampling?: Pick<Partial<DiffusionPolicyConfig>, 'temperature' | 'actionHorizon'> & { readonly replanClearance?: number | null } } = {}): DiffusionPolicy {
    const ck = loadCheckpoint(dir, { expectTask: opts.env ? POLICY_TASK_PREFIX + opts.env : POLICY_TASK_PREFIX });
    const extra = ck.meta.extra as { policy?: DiffusionPolicyConfig } | undefined;
    if (!extra?.policy) fail(`checkpoint '${dir}': no policy config`);
    const norm = ck.meta.normalizer as Record<string, NormalizerState> | undefined;
    if (!norm?.obs || !norm.action) fail(`checkpoint '${dir}': missing obs/action normalisers`);
    const useEma = opts.ema !== false && ck.ema !== undefined;
    const store = useEma ? (ck.ema as ParamStore) : ck.params;
    if (useEma) ck.params.dispose();
    else ck.ema?.dispose();
    ck.optimizer?.m.dispose();
    ck.optimizer?.v.dispose();
    const config: DiffusionPolicyConfig = {
      ...extra.policy,
      ...(opts.sampling?.temperature === undefined ? {} : { temperature: opts.sampling.temperature }),
      ...(opts.sampling?.actionHorizon === undefined ? {} : { actionHorizon: opts.sampling.actionHorizon }),
      ...(opts.sampling?.replanClearance === undefined ? {} : { replanClearance: opts.sampling.replanClearance ?? undefined }),
    };
    // `replanClearance: null` removes a stored setting.
    if (config.replanClearance === undefined) delete (config as { replanClearance?: number }).replanClearance;
    try {
      return new DiffusionPolicy(config, store, new Normalizer(norm.obs), new Normalizer(norm.action));
    } catch (err) {
      // A rejected config (e.g. an override out of range) must not leak the loaded weights.
      store.dispose();
      throw err;
    }
  }

  /**
   * A policy checkpoint's config without loading its weights (e.g. to check options against it
   * before starting a worker). `env` guards against another environment's checkpoint.
   */
  static readConfig(dir: string, opts: { env?: string } = {}): DiffusionPolicyConfig {
    const meta = readCheckpointMeta(dir);
    const want = opts.env ? POLICY_TASK_PREFIX + opts.env : POLICY_TASK_PREFIX;
    if (opts.env ? meta.task !== want : !meta.task.startsWith(want)) fail(`checkpoint '${dir}': task is '${meta.task}', expected '${want}${opts.env ? '' : '<env>'}'`);
    const extra = meta.extra as { policy?: DiffusionPolicyConfig } | undefined;
    if (!extra?.policy) fail(`checkpoint '${dir}': no policy config`);
    validatePolicyConfig(extra.policy);
    return extra.policy;
  }

  get horizon(): { obs: number; pred: number; action: number } {
    return { obs: this.config.obsHorizon, pred: this.config.predHorizon, action: this.config.actionHorizon };
  }

  /** Conditioning tensor [B, To * F] from raw observation windows. */
  private condition(windows: readonly (readonly ArrayLike<number>[])[]): tf.Tensor2D {
    const To = this.config.obsHorizon;
    const F = this.features.outputDim;
    const flat = new Float32Array(windows.length * To * F);
    windows.forEach((w, b) => {
      if (!Array.isArray(w) || w.length !== To) fail(`windows[${b}]: expected ${To} observation frames (oldest first), received ${Array.isArray(w) ? w.length : typeof w}`);
      w.forEach((o, k) => {
        flat.set(this.obsNormalizer.normalize(this.features(o)), (b * To + k) * F);
      });
    });
    return tf.tensor2d(flat, [windows.length, To * F]);
  }

  /** Normalised -> raw actions, differentiable. */
  unnormalizeTensor(x: tf.Tensor): tf.Tensor {
    const { offset, scale } = this.actionNormalizer.state;
    return tf.add(tf.mul(x, tf.tensor1d(scale)), tf.tensor1d(offset));
  }

  /** Denoiser for a batch of windows, with optional guidance and pinned-action inpainting. */
  private denoiserFor(cond: tf.Tensor, windows: readonly (readonly ArrayLike<number>[])[], opts: PredictOptions, batch: number, rng: Rng): { den: Denoiser; project?: (x: tf.Tensor, t: number) => tf.Tensor; dispose: () => void } {
    let den = this.baseDenoiser(cond);
    const owned: tf.Tensor[] = [];
    const wrappers = (opts.guidance ?? []).map((term) => {
      const mode = checkOneOf(`guidance '${term.name}' mode`, term.mode ?? 'gradient', GUIDE_MODES);
      const scale = checkNumber(`guidance '${term.name}' scale`, term.scale, { min: 0 });
      const chunkCost = (x0: tf.Tensor): tf.Tensor => term.cost(this.unnormalizeTensor(x0), { obs: windows as ArrayLike<number>[][] });
      if (mode === 'projection') {
        return projectionGuidance({ fn: chunkCost, scale, iterations: term.iterations, maxStep: term.maxStep, schedule: term.schedule });
      }
      return gradientGuidance({
        path: this.path,
        // A gradient step on the denoised chunk: the policy's denoiser is strongly conditioned on
        // the observation, so the DPS gradient through it nearly vanishes (measured on the tests).
        on: 'x0-direct',
        scale,
        schedule: term.schedule,
        clipNorm: term.clipNorm,
        fn: (x0) => tf.neg(chunkCost(x0)),
      });
    });
    if (wrappers.length) den = guide(den, ...wrappers);
    let project: ((x: tf.Tensor, t: number) => tf.Tensor) | undefined;
    const Tp = this.config.predHorizon;
    const A = this.config.actionDim;
    let known: Float32Array | undefined;
    let mask: Float32Array | undefined;
    const pinRows = (rows: readonly ArrayLike<number>[], from: number, b: number, what: string): void => {
      known ??= new Float32Array(batch * Tp * A);
      mask ??= new Float32Array(batch * Tp * A);
      if (rows.length + from > Tp) fail(`${what}: at most ${Tp - from} actions from row ${from}, received ${rows.length}`);
      rows.forEach((a, k) => {
        if (!a || a.length !== A) fail(`${what}[${k}]: expected ${A} numbers, received ${a?.length}`);
        for (let i = 0; i < A; i++) if (!Number.isFinite(a[i])) fail(`${what}[${k}][${i}] is ${a[i]}; pinned actions must be finite`);
        const off = (b * Tp + from + k) * A;
        known!.set(this.actionNormalizer.normalize(a), off);
        mask!.fill(1, off, off + A);
      });
    };
    if (opts.pinned && opts.pinned.length > 0) {
      if (opts.windowPins) fail('pinned and windowPins: give one or the other');
      for (let b = 0; b < batch; b++) pinRows(opts.pinned, 0, b, 'pinned');
    } else if (opts.windowPins) {
      // predictChunks checked one entry per window and repeated each for the window's candidates.
      opts.windowPins.forEach((p, w) => {
        if (p === undefined || p.rows.length === 0) return;
        const from = checkNumber(`windowPins[${w}].fromRow`, p.fromRow, { integer: true, min: 0, max: Tp - 1 });
        if (!Array.isArray(p.rows)) fail(`windowPins[${w}].rows: expected an array of actions`);
        pinRows(p.rows, from, w, `windowPins[${w}].rows`);
      });
    }
    if (known && mask) {
      const knownB = tf.tensor3d(known, [batch, Tp, A]);
      const maskB = tf.tensor3d(mask, [batch, Tp, A]);
      owned.push(knownB, maskB);
      const ip = inpaint({ path: this.path, known: knownB, mask: maskB, rng });
      den = ip.denoiser(den);
      project = ip.project;
    }
    return { den, project, dispose: () => owned.forEach((t) => t.dispose()) };
  }

  /** The consistency parameterisation of a distilled policy (undefined for a diffusion policy). */
  consistencyParam(): ConsistencyParam | undefined {
    return this.cparam;
  }

  /** The denoiser of the network alone: diffusion parameterisation, or consistency function when distilled. */
  baseDenoiser(cond: tf.Tensor): Denoiser {
    if (this.cparam) return consistencyDenoiser(this.net, this.cparam, cond);
    return wrapNetwork(this.net, this.param, cond);
  }

  /** The raw network (for distillation teachers). */
  get network(): Network {
    return this.net;
  }

  /** Write an inference checkpoint (weights only, no optimiser state). */
  async save(dir: string, extra: Record<string, unknown> = {}): Promise<void> {
    await saveCheckpoint(dir, {
      meta: {
        task: POLICY_TASK_PREFIX + this.config.env,
        model: DiffusionPolicy.modelSpec(this.config, this.features.outputDim),
        parameterization: { path: this.path.spec, prediction: this.config.prediction },
        normalizer: { obs: this.obsNormalizer.state, action: this.actionNormalizer.state },
        extra: { policy: this.config, ...extra },
      },
      params: this.store,
    });
  }

  /** Predict one chunk per observation window (batched). */
  predictChunks(windows: readonly (readonly ArrayLike<number>[])[], opts: PredictOptions = {}): ChunkResult {
    if (!Array.isArray(windows) || windows.length === 0) fail('windows: expected at least one observation window');
    const t0 = performance.now();
    const cands = checkNumber('candidates', opts.candidates ?? 1, { integer: true, min: 1 });
    const rng = new Rng(opts.seed ?? this.callCount++);
    const expanded = cands === 1 ? windows : windows.flatMap((w) => Array.from({ length: cands }, () => w));
    const B = expanded.length;
    const Tp = this.config.predHorizon;
    const A = this.config.actionDim;
    const cond = this.condition(expanded);
    let dispose: (() => void) | undefined;
    let raw: Float32Array;
    let costs: Float32Array | undefined;
    try {
      // Inside the try: a rejected guidance term must not leak the conditioning tensor.
      const pins = opts.windowPins;
      if (pins !== undefined && (!Array.isArray(pins) || pins.length !== windows.length)) fail(`windowPins: expected one entry per window (${windows.length}), received ${Array.isArray(pins) ? pins.length : typeof pins}`);
      // Candidates of a window share its pins.
      const windowPins = pins === undefined || cands === 1 ? pins : pins.flatMap((p) => Array.from({ length: cands }, () => p));
      const built = this.denoiserFor(cond, expanded, { ...opts, windowPins }, B, rng);
      dispose = built.dispose;
      const { den, project } = built;
      const x = sample({
        denoiser: den,
        path: this.path,
        shape: [B, Tp, A],
        sampler: opts.sampler ?? this.config.sampler,
        grid: { kind: 'uniform', steps: opts.steps ?? this.config.samplingSteps },
        rng,
        project,
        temperature: opts.temperature ?? this.config.temperature,
      });
      const actions = tf.tidy(() => this.unnormalizeTensor(x));
      x.dispose();
      raw = actions.dataSync() as Float32Array;
      if (cands > 1 && opts.guidance?.length) {
        costs = tf.tidy(() => tf.addN(opts.guidance!.map((g) => tf.mul(g.cost(actions, { obs: expanded as ArrayLike<number>[][] }), g.scale))).dataSync() as Float32Array);
      }
      actions.dispose();
    } finally {
      cond.dispose();
      dispose?.();
    }
    const chunks: Float32Array[] = [];
    for (let w = 0; w < windows.length; w++) {
      let best = w * cands;
      if (costs) for (let c = 1; c < cands; c++) if (costs[w * cands + c] < costs[best]) best = w * cands + c;
      chunks.push(raw.slice(best * Tp * A, (best + 1) * Tp * A));
    }
    return { chunks, latencyMs: performance.now() - t0 };
  }

  /**
   * The actions to execute from a chunk: steps [To-1, To-1+Ta) (Diffusion Policy's convention).
   * `actionHorizon` overrides the trained Ta (1 .. Tp - To + 1), e.g. to replan more often.
   */
  executable(chunk: Float32Array, actionHorizon: number = this.config.actionHorizon): Float64Array[] {
    const A = this.config.actionDim;
    const To = this.config.obsHorizon;
    const Ta = checkNumber('actionHorizon', actionHorizon, { integer: true, min: 1, max: this.config.predHorizon - To + 1 });
    if (!(chunk instanceof Float32Array) || chunk.length !== this.config.predHorizon * A) fail(`chunk: expected a Float32Array of ${this.config.predHorizon * A} numbers`);
    const out: Float64Array[] = [];
    for (let k = To - 1; k < To - 1 + Ta; k++) {
      out.push(Float64Array.from(chunk.subarray(k * A, (k + 1) * A)));
    }
    return out;
  }

  dispose(): void {
    releaseNetwork(this.net);
    this.store.dispose();
  }
}
