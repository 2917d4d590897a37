/**
 * A `ChunkPolicy` that runs a Diffusion Policy in this thread and delivers each chunk a fixed
 * time later on a (usually virtual) loop clock: the control loop then behaves exactly as if
 * inference took `latencyMs`, while the whole run goes as fast as the sampling itself. With a
 * `VirtualClock`, `driveEnv` becomes a deterministic, faster-than-real-time test of everything
 * the real-time path adds to a policy (latency, replanning cadence, crossfades, interpolation
 * between rows, pinned rows), separate from machine load. Pinned rows (`requestChunk(obs,
 * { pinned })`, as the control loop's `pinLatency` sends them) are inpainted like the served
 * policy does.
 */
import { checkNumber, fail } from '../../../src/util/validate.js';
import type { DiffusionPolicy, PredictOptions } from '../policy/policy.js';
import type { LoopClock } from './clock.js';
import { checkPinnedRows } from './pins.js';
import type { ChunkPolicy, ChunkPolicyInfo, ChunkRequestOptions, TimedChunk, TimedObservation } from './types.js';

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
}

export class SimulatedLatencyPolicy implements ChunkPolicy {
  readonly info: ChunkPolicyInfo;
  private history: Float64Array[] = [];
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

  requestChunk(obs: TimedObservation, opts?: ChunkRequestOptions): Promise<TimedChunk> {
    if (this.closed) return Promise.reject(new Error('requestChunk: policy is closed'));
    try {
      this.push(obs);
      // Too short a history (an episode's start) repeats its oldest frame, as `robot eval` does.
      const To = this.info.obsHorizon;
      const window = Array.from({ length: To }, (_, k) => this.history[Math.max(0, this.history.length - To + k)]!);
      const pins = opts?.pinned;
      if (pins !== undefined) checkPinnedRows({ obsHorizon: To, rows: this.info.predHorizon, actionDim: this.info.actionDim }, pins, 'requestChunk: pinned');
      const windowPins = pins && pins.rows.length > 0 ? [{ fromRow: To - 1 + pins.firstRow, rows: pins.rows }] : undefined;
      const r = this.policy.predictChunks([window], { ...this.opts.predict, seed: this.nextSeed++, ...(windowPins ? { windowPins } : {}) });
      const A = this.info.actionDim;
      const skip = To - 1;
      const full = r.chunks[0]!;
      const actions = Array.from({ length: this.info.predHorizon }, (_, k) => Float64Array.from(full.subarray((skip + k) * A, (skip + k + 1) * A)));
      const chunk: TimedChunk = { obsSeq: obs.seq, startTimeMs: obs.timeMs, dtMs: this.dtMs, actions, latencyMs: this.latencyMs };
      return new Promise((resolve) => this.opts.clock.setTimer(() => resolve(chunk), this.latencyMs));
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  async reset(): Promise<void> {
    this.history = [];
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}
