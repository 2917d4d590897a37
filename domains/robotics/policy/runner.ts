/**
 * Receding-horizon execution (Diffusion Policy): keep the last To observations, predict a
 * chunk, execute Ta of its actions, replan. Works with any `Env` and any chunk predictor.
 */
import type { Env } from '../env/types.js';
import type { DiffusionPolicy, PredictOptions } from './policy.js';

export interface EpisodeResult {
  readonly seed: number;
  readonly steps: number;
  readonly success: boolean;
  readonly totalReward: number;
  /** Highest step reward of the episode (Diffusion Policy's Push-T score). */
  readonly maxReward: number;
  readonly finalInfo: Readonly<Record<string, number | boolean | string>>;
  readonly chunkLatenciesMs: number[];
  /** Chunks cut short by `replanWhen` (0 without it). */
  readonly earlyReplans: number;
  /** Executed actions, one per step. */
  readonly actions: Float64Array[];
  readonly observations: Float64Array[];
}

export interface RunOptions extends PredictOptions {
  readonly seed: number;
  readonly maxSteps?: number;
  /** Reset from an explicit state instead of the seed. */
  readonly state?: Float64Array;
  /** Pin this many already-executed actions at the chunk start (continuity); 0 = off. */
  readonly pinExecuted?: number;
  /** What the policy sees of each observation (default: all of it). */
  readonly observe?: (obs: Float64Array) => Float64Array;
  /** Actions executed per chunk before replanning (default: the policy's trained Ta). */
  readonly actionHorizon?: number;
  /**
   * Early replanning: called before each action of a chunk after its first, with the latest
   * observation, the chunk's actions still to run (the next one first) and the observation
   * one step before the latest; true stops the
   * chunk there and samples the next one from the current observations. Receding horizon
   * with Ta as the most actions a chunk runs, fewer where the check (e.g. a predicted
   * collision, `armReachReplanCheck`) says the rest of the chunk is no longer safe to run
   * open loop.
   */
  readonly replanWhen?: (observation: Float64Array, upcoming: readonly Float64Array[], previous?: Float64Array) => boolean;
  /** Called with every chunk before it is executed (diagnostics: e.g. the chunk's guidance cost). */
  readonly onChunk?: (c: { readonly index: number; readonly step: number; readonly chunk: Float32Array; readonly window: readonly Float64Array[] }) => void;
  /** Called after every environment step with its 1-based number. */
  readonly onStep?: (step: number, r: { readonly observation: Float64Array; readonly info: Readonly<Record<string, number | boolean | string>> }) => void;
}

export function runEpisode(env: Env, policy: DiffusionPolicy, opts: RunOptions): EpisodeResult {
  const { obs: To } = policy.horizon;
  let obs = opts.state ? env.reset({ state: opts.state }) : env.reset({ seed: opts.seed });
  const see = opts.observe ?? ((o: Float64Array): Float64Array => o);
  const history: Float64Array[] = Array.from({ length: To }, () => see(obs));
  const maxSteps = Math.min(opts.maxSteps ?? env.maxSteps, env.maxSteps);
  const latencies: number[] = [];
  const actions: Float64Array[] = [];
  const observations: Float64Array[] = [obs];
  let total = 0;
  let maxReward = 0;
  let success = false;
  let info: Readonly<Record<string, number | boolean | string>> = {};
  let steps = 0;
  let chunkIndex = 0;
  let earlyReplans = 0;
  while (steps < maxSteps && !success) {
    // Chunk step k is the action at time t-To+1+k, so the To-1 most recent executed actions
    // occupy the chunk's first positions; pinning them keeps consecutive chunks continuous.
    const pin = (opts.pinExecuted ?? 0) > 0 && To > 1 && actions.length >= To - 1;
    const pinned = pin ? actions.slice(actions.length - (To - 1)) : undefined;
    const window = history.slice(-To);
    const { chunks, latencyMs } = policy.predictChunks([window], { ...opts, seed: opts.seed * 100003 + chunkIndex, pinned });
    latencies.push(latencyMs);
    opts.onChunk?.({ index: chunkIndex, step: steps, chunk: chunks[0], window });
    chunkIndex++;
    const run = policy.executable(chunks[0], opts.actionHorizon);
    for (let k = 0; k < run.length; k++) {
      if (k > 0 && opts.replanWhen && opts.replanWhen(obs, run.slice(k), observations[observations.length - 2])) {
        earlyReplans++;
        break;
      }
      const a = run[k];
      const r = env.step(a);
      steps++;
      actions.push(a);
      obs = r.observation;
      observations.push(obs);
      history.push(see(obs));
      if (history.length > To) history.shift();
      total += r.reward;
      maxReward = Math.max(maxReward, r.reward);
      info = r.info;
      opts.onStep?.(steps, r);
      if (r.terminated) {
        success = true;
        break;
      }
      if (r.truncated || steps >= maxSteps) break;
    }
  }
  return { seed: opts.seed, steps, success, totalReward: total, maxReward, finalInfo: info, chunkLatenciesMs: latencies, earlyReplans, actions, observations };
}

export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}
