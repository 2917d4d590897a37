/**
 * A `ChunkPolicy` that runs a Diffusion Policy in this thread and delivers each chunk a fixed
 * time later on a (usually virtual) loop clock: the control loop then behaves exactly as if
 * inference took `latencyMs`, while the whole run goes as fast as the sampling itself. With a
 * `VirtualClock`, `driveEnv` becomes a deterministic, faster-than-real-time test of everything
 * the real-time path adds to a policy (latency, replanning cadence, crossfades, interpolation
 * between rows), separate from machine load.
 */
import { checkNumber, fail } from '../../../src/util/validate.js';
import type { DiffusionPolicy, PredictOptions } from '../policy/policy.js';
import type { LoopClock } from './clock.js';
import type { ChunkPolicy, ChunkPolicyInfo, TimedChunk, TimedObservation } from './types.js';

export interface SimulatedLatencyOptions {
  readonly clock: LoopClock;
  /** Time from a request to its chunk, ms on `clock`. */
  readonly latencyMs: number;
  /** Control period of the policy's environment, ms (one chunk row). */
  readonly dtMs: number;
  /** Sampling options for every chunk (sampler, steps, temperature, guidance, ...). */
  readonly predict?: Omit<PredictOptions, 'seed'>;
  /** Seed of the first chunk; chunk k uses seed + k. Default 0. */
  readonly seed?: number;
  /**
   * Inpaint each new chunk's rows up to the time it will arrive (observation time + latency)
   * with the previous chunk's rows for the same times: those rows are executed from the previous
   * chunk anyway, so the new one continues what actually happens. Default false.
   */
  readonly pinLatency?: boolean;
}

export class SimulatedLatencyPolicy implements ChunkPolicy {
  readonly info: ChunkPolicyInfo;
  private history: Float64Array[] = [];
  private last: TimedChunk | undefined;
  private nextSeed: number;
  private closed = false;
  private readonly latencyMs: number;
  private readonly dtMs: number;

  constructor(
    private readonly policy: DiffusionPolicy,
    private readonly opts: SimulatedLatencyOptions,
  ) {
    if (!opts || typeof opts !== 'object' || !opts.clock || typeof opts.clock.setTimer !== 'function') fail('SimulatedLatencyPolicy: options.clock must be a LoopClock');
    this.latencyMs = checkNumber('SimulatedLatencyPolicy: latencyMs', opts.latencyMs, { min: 0, max: 60_000 });
    this.dtMs = checkNumber('SimulatedLatencyPolicy: dtMs', opts.dtMs, { min: 0.001 });
    this.nextSeed = checkNumber('SimulatedLatencyPolicy: seed', opts.seed ?? 0, { integer: true, min: 0 });
    const c = policy.config;
    this.info = {
      actionDim: c.actionDim,
      observationDim: c.obsDim,
      predHorizon: c.predHorizon - (c.obsHorizon - 1),
      actionHorizon: c.actionHorizon,
      currentRow: 0,
      dtMs: this.dtMs,
      obsHorizon: c.obsHorizon,
    };
  }

  private push(obs: TimedObservation): void {
    if (!obs || !(obs.state instanceof Float64Array) || obs.state.length !== this.info.observationDim) {
      fail(`SimulatedLatencyPolicy: observation state must be a Float64Array of ${this.info.observationDim} values`);
    }
    this.history.push(obs.state);
    if (this.history.length > this.info.obsHorizon) this.history.shift();
  }

  observe(obs: TimedObservation): void {
    if (this.closed) return;
    this.push(obs);
  }

  requestChunk(obs: TimedObservation): Promise<TimedChunk> {
    if (this.closed) return Promise.reject(new Error('requestChunk: policy is closed'));
    try {
      this.push(obs);
      // Too short a history (an episode's start) repeats its oldest frame, as `robot eval` does.
      const To = this.info.obsHorizon;
      const window = Array.from({ length: To }, (_, k) => this.history[Math.max(0, this.history.length - To + k)]!);
      const pinned = this.opts.pinLatency ? this.pinnedRows(obs.timeMs) : [];
      const r = this.policy.predictChunks([window], { ...this.opts.predict, seed: this.nextSeed++, ...(pinned.length ? { pinned } : {}) });
      const A = this.info.actionDim;
      const skip = To - 1;
      const full = r.chunks[0]!;
      const actions = Array.from({ length: this.info.predHorizon }, (_, k) => Float64Array.from(full.subarray((skip + k) * A, (skip + k + 1) * A)));
      const chunk: TimedChunk = { obsSeq: obs.seq, startTimeMs: obs.timeMs, dtMs: this.dtMs, actions, latencyMs: this.latencyMs };
      this.last = chunk;
      return new Promise((resolve) => this.opts.clock.setTimer(() => resolve(chunk), this.latencyMs));
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  /** Full-chunk rows 0.. (past rows included) taken from the previous chunk, up to the arrival time. */
  private pinnedRows(obsTimeMs: number): Float64Array[] {
    const p = this.last;
    if (!p) return [];
    const To = this.info.obsHorizon;
    const out: Float64Array[] = [];
    for (let j = 0; ; j++) {
      const t = obsTimeMs + (j - (To - 1)) * this.dtMs;
      if (t >= obsTimeMs + this.latencyMs) break;
      const u = (t - p.startTimeMs) / p.dtMs;
      const k = Math.round(u);
      if (Math.abs(u - k) > 1e-6 || k < 0 || k >= p.actions.length) break;
      out.push(p.actions[k]!);
    }
    return out;
  }

  async reset(): Promise<void> {
    this.history = [];
    this.last = undefined;
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}
