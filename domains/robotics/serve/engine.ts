/**
 * Inference engines: where a served policy's chunks are computed.
 *
 * - `WorkerEngine` runs the policy in a `worker_threads` worker, so the thread that serves
 *   sockets and ticks control loops never blocks on a denoising pass (a 10-step DDIM chunk takes
 *   tens of milliseconds). If the worker dies, the requests it held fail and a new worker starts.
 * - `InlineEngine` runs an already-loaded policy on the calling thread (tests, tiny models).
 *
 * Both return chunks trimmed to start at the row of the observation they were computed from
 * (Diffusion Policy's row To-1): rows before it describe the past and are never executed, so a
 * client's row 0 is "now". `EngineInfo.rows` is the trimmed horizon.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as nodePath from 'node:path';
import type { Worker } from 'node:worker_threads';
import type { BackendName } from '../../../src/backend/backend.js';
import { startModuleWorker } from '../../../src/util/moduleWorker.js';
import { checkNumber, fail } from '../../../src/util/validate.js';
import type { BoxSpec } from '../env/types.js';
import type { PinnedRows } from '../control/types.js';
import { checkPinnedRows } from '../control/pins.js';
import type { DiffusionPolicy, PredictOptions } from '../policy/policy.js';
import { checkGuidanceConfig, describeGuidance, guidancePredictOptions, type GuidanceConfig } from '../guidance/config.js';
import type { SamplerName } from '../../../src/sample/registry.js';

export interface EngineInfo {
  readonly policyId: string;
  /** Digest of the checkpoint's files (or 'in-memory'). */
  readonly modelVersion: string;
  readonly env: string;
  readonly obsDim: number;
  readonly obsLow: readonly number[];
  readonly obsHigh: readonly number[];
  readonly obsNames: readonly string[];
  readonly actionDim: number;
  /** Action range seen in training (min-max normaliser). */
  readonly actionLow: readonly number[];
  readonly actionHigh: readonly number[];
  readonly obsHorizon: number;
  /** Rows per returned chunk: predHorizon - (obsHorizon - 1). Row 0 is the observation's time. */
  readonly rows: number;
  readonly actionHorizon: number;
  readonly controlRateHz: number;
  readonly sampler: string;
  readonly samplingSteps: number;
  /** Starting-noise scale of the sampler. */
  readonly temperature: number;
  /** The policy's stored early-replanning clearance (arm-reach, metres); 0: none. */
  readonly replanClearance: number;
  /** The guidance setting as JSON (describeGuidance); '' when unguided. */
  readonly guidance: string;
}

export interface EngineResult {
  /** One chunk per window: rows x actionDim, row-major. */
  readonly chunks: Float32Array[];
  /** Time spent computing the batch, ms. */
  readonly latencyMs: number;
}

/** Actions a client pins in the chunk it asks for (see `PinnedRows`). */
export type ChunkPins = PinnedRows;

export interface InferenceEngine {
  readonly info: EngineInfo;
  /**
   * One chunk per window; every window holds exactly obsHorizon observations, oldest first.
   * `pins`, when given, has one entry per window (undefined: nothing pinned).
   */
  predict(windows: readonly (readonly Float64Array[])[], seed: number, pins?: readonly (ChunkPins | undefined)[]): Promise<EngineResult>;
  close(): Promise<void>;
}

export interface SamplingOverride {
  readonly sampler?: SamplerName;
  readonly steps?: number;
  /** Starting-noise scale (default: the policy's stored temperature). */
  readonly temperature?: number;
  /** Reward / constraint guidance on every chunk (checked against the policy when the engine starts). */
  readonly guidance?: GuidanceConfig;
}

/**
 * The options every chunk of an engine is predicted with: its sampling override and, when
 * guided, the cost terms built once from the setting (the terms read each window's own
 * observation, e.g. arm-reach's obstacles).
 */
export function enginePredictOptions(policy: DiffusionPolicy, sampling: SamplingOverride): Omit<PredictOptions, 'seed'> {
  if (sampling.steps !== undefined) checkNumber('steps', sampling.steps, { integer: true, min: 1, max: 1000 });
  if (sampling.temperature !== undefined) checkNumber('temperature', sampling.temperature, { min: 0, max: 10 });
  const guidance = sampling.guidance === undefined ? undefined : checkGuidanceConfig(sampling.guidance, policy.config);
  return {
    sampler: sampling.sampler,
    steps: sampling.steps,
    temperature: sampling.temperature,
    ...(guidance ? guidancePredictOptions(guidance, policy.config) : {}),
  };
}

/** Facts a client needs, from a loaded policy and its environment's observation spec. */
export function engineInfo(policy: DiffusionPolicy, spec: BoxSpec, dt: number, ids: { policyId: string; modelVersion: string }, sampling: SamplingOverride = {}): EngineInfo {
  const c = policy.config;
  const { offset, scale } = policy.actionNormalizer.state;
  return {
    policyId: ids.policyId,
    modelVersion: ids.modelVersion,
    env: c.env,
    obsDim: c.obsDim,
    obsLow: [...spec.low],
    obsHigh: [...spec.high],
    obsNames: [...spec.names],
    actionDim: c.actionDim,
    actionLow: Array.from(offset, (o, i) => o - Math.abs(scale[i]!)),
    actionHigh: Array.from(offset, (o, i) => o + Math.abs(scale[i]!)),
    obsHorizon: c.obsHorizon,
    rows: c.predHorizon - (c.obsHorizon - 1),
    actionHorizon: c.actionHorizon,
    controlRateHz: 1 / dt,
    sampler: sampling.sampler ?? c.sampler,
    samplingSteps: sampling.steps ?? c.samplingSteps,
    temperature: sampling.temperature ?? c.temperature ?? 1,
    replanClearance: c.replanClearance ?? 0,
    guidance: describeGuidance(sampling.guidance),
  };
}

/** A short digest of a checkpoint directory's files, as its model version. */
export function checkpointDigest(dir: string): string {
  const h = createHash('sha256');
  for (const f of ['model.json', 'weights.bin']) {
    try {
      h.update(readFileSync(nodePath.join(dir, f)));
    } catch (err) {
      fail(`checkpoint '${dir}': cannot read ${f} (${(err as Error).message})`);
    }
  }
  return h.digest('hex').slice(0, 16);
}

/** Cut the rows before the observation's row out of full predicted chunks. */
export function trimChunk(chunk: Float32Array, obsHorizon: number, actionDim: number): Float32Array {
  return chunk.slice((obsHorizon - 1) * actionDim);
}

function checkWindows(info: EngineInfo, windows: readonly (readonly Float64Array[])[]): void {
  if (!Array.isArray(windows) || windows.length === 0) fail('predict: expected at least one observation window');
  windows.forEach((w, b) => {
    if (!Array.isArray(w) || w.length !== info.obsHorizon) fail(`predict: windows[${b}] must hold ${info.obsHorizon} observations, received ${Array.isArray(w) ? w.length : typeof w}`);
    w.forEach((o, k) => {
      if (!(o instanceof Float64Array) || o.length !== info.obsDim) fail(`predict: windows[${b}][${k}] must be a Float64Array of ${info.obsDim} values`);
    });
  });
}

function checkPinsList(info: EngineInfo, windows: number, pins: readonly (ChunkPins | undefined)[] | undefined): void {
  if (pins === undefined) return;
  if (!Array.isArray(pins) || pins.length !== windows) fail(`predict: pins must have one entry per window (${windows}), received ${Array.isArray(pins) ? pins.length : typeof pins}`);
  pins.forEach((p, b) => p !== undefined && checkPinnedRows({ obsHorizon: info.obsHorizon, rows: info.rows, actionDim: info.actionDim }, p, `predict: pins[${b}]`));
}

/** Engine pins (rows relative to the observation) as the policy's full-chunk window pins. */
export function windowPinsFor(obsHorizon: number, pins: readonly (ChunkPins | undefined)[] | undefined): PredictOptions['windowPins'] {
  if (!pins || pins.every((p) => p === undefined || p.rows.length === 0)) return undefined;
  return pins.map((p) => (p === undefined || p.rows.length === 0 ? undefined : { fromRow: obsHorizon - 1 + p.firstRow, rows: p.rows }));
}

/** Runs a loaded policy on the calling thread. */
export class InlineEngine implements InferenceEngine {
  readonly info: EngineInfo;
  private readonly predictOpts: Omit<PredictOptions, 'seed'>;
  constructor(
    private readonly policy: DiffusionPolicy,
    spec: BoxSpec,
    dt: number,
    sampling: SamplingOverride = {},
    ids: { policyId?: string; modelVersion?: string } = {},
  ) {
    this.predictOpts = enginePredictOptions(policy, sampling);
    this.info = engineInfo(policy, spec, dt, { policyId: ids.policyId ?? policy.config.env, modelVersion: ids.modelVersion ?? 'in-memory' }, sampling);
  }

  async predict(windows: readonly (readonly Float64Array[])[], seed: number, pins?: readonly (ChunkPins | undefined)[]): Promise<EngineResult> {
    checkWindows(this.info, windows);
    checkPinsList(this.info, windows.length, pins);
    const windowPins = windowPinsFor(this.info.obsHorizon, pins);
    const r = this.policy.predictChunks(windows, { ...this.predictOpts, seed, ...(windowPins ? { windowPins } : {}) });
    return { chunks: r.chunks.map((c) => trimChunk(c, this.info.obsHorizon, this.info.actionDim)), latencyMs: r.latencyMs };
  }

  async close(): Promise<void> {}
}

export interface WorkerEngineOptions extends SamplingOverride {
  /** Policy checkpoint directory. */
  readonly checkpoint: string;
  /** Refuse a checkpoint trained for another environment. */
  readonly env?: string;
  readonly policyId?: string;
  /** Backend inside the worker (default 'wasm', the embedded default). */
  readonly backend?: BackendName;
}

/** Messages between WorkerEngine and inferenceWorker.ts. */
export type WorkerRequest = { type: 'predict'; id: number; windows: Float64Array[][]; seed: number; pins?: (ChunkPins | undefined)[] };
export type WorkerReply =
  | { type: 'ready'; info: EngineInfo }
  | { type: 'result'; id: number; chunks: Float32Array[]; latencyMs: number }
  | { type: 'error'; id: number; message: string }
  | { type: 'fatal'; message: string };

interface Pending {
  resolve: (r: EngineResult) => void;
  reject: (e: Error) => void;
}

/** Runs the policy in a worker thread; restarts the worker if it dies. */
export class WorkerEngine implements InferenceEngine {
  private worker!: Worker;
  private ready!: Promise<void>;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private closing = false;
  /** Workers started so far (1 + restarts). */
  starts = 0;

  private constructor(
    private readonly opts: WorkerEngineOptions,
    public info: EngineInfo,
  ) {}

  static async start(opts: WorkerEngineOptions): Promise<WorkerEngine> {
    if (!opts || typeof opts.checkpoint !== 'string' || opts.checkpoint.length === 0) fail('WorkerEngine.start: checkpoint must be a directory path');
    if (opts.steps !== undefined) checkNumber('steps', opts.steps, { integer: true, min: 1, max: 1000 });
    if (opts.temperature !== undefined) checkNumber('temperature', opts.temperature, { min: 0, max: 10 });
    const modelVersion = checkpointDigest(opts.checkpoint);
    const engine = new WorkerEngine(opts, undefined as unknown as EngineInfo);
    await engine.spawn(modelVersion);
    return engine;
  }

  private spawn(modelVersion: string): Promise<void> {
    this.starts++;
    const worker = startModuleWorker(new URL(`./inferenceWorker${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url), {
      workerData: { ...this.opts, modelVersion },
    });
    this.worker = worker;
    this.ready = new Promise<void>((resolve, reject) => {
      let started = false;
      worker.on('message', (m: WorkerReply) => {
        if (m.type === 'ready') {
          this.info = m.info;
          started = true;
          resolve();
        } else if (m.type === 'fatal') {
          if (!started) reject(new Error(`inference worker failed to start: ${m.message}`));
        } else {
          const p = this.pending.get(m.id);
          if (!p) return;
          this.pending.delete(m.id);
          if (m.type === 'result') p.resolve({ chunks: m.chunks, latencyMs: m.latencyMs });
          else p.reject(new Error(m.message));
        }
      });
      worker.on('error', (err) => {
        if (!started) reject(new Error(`inference worker failed to start: ${err.message}`));
      });
      worker.on('exit', (code) => {
        const err = new Error(`inference worker exited (code ${code})${this.closing ? '' : '; a new one is starting'}`);
        for (const p of this.pending.values()) p.reject(err);
        this.pending.clear();
        if (!started) reject(err);
        else if (!this.closing && this.worker === worker) {
          // Restart; failures to restart surface on the next predict.
          this.spawn(modelVersion).catch(() => undefined);
        }
      });
    });
    return this.ready;
  }

  async predict(windows: readonly (readonly Float64Array[])[], seed: number, pins?: readonly (ChunkPins | undefined)[]): Promise<EngineResult> {
    if (this.closing) fail('predict: engine is closed');
    checkWindows(this.info, windows);
    checkPinsList(this.info, windows.length, pins);
    await this.ready;
    const id = this.nextId++;
    return new Promise<EngineResult>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      const msg: WorkerRequest = {
        type: 'predict',
        id,
        windows: windows.map((w) => w.map((o) => Float64Array.from(o))),
        seed,
        ...(pins ? { pins: pins.map((p) => (p === undefined ? undefined : { firstRow: p.firstRow, rows: p.rows.map((r) => Float64Array.from(r)) })) } : {}),
      };
      this.worker.postMessage(msg);
    });
  }

  /** Terminate the worker (for tests of crash recovery); a new one starts. */
  async crashForTest(): Promise<void> {
    await this.worker.terminate();
  }

  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    await this.worker.terminate();
  }
}
