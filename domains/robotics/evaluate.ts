/**
 * Policy evaluation on seeded episodes: success, coverage / goal distance, reward, behaviour
 * modes, constraint violations and chunk latency, with optional guidance and novel obstacles.
 */
import { Rng } from '../../src/rng/rng.js';
import { ArmReachEnv } from './env/armReach.js';
import { ABSENT_OBSTACLE, MAX_OBSTACLES, OBS_LAYOUT } from './env/armReachSpec.js';
import { PUSHT_AGENT_RADIUS } from './env/pusht.js';
import type { Env } from './env/types.js';
import { detourMode } from './expert/armReachExpert.js';
import type { CostTerm, DiffusionPolicy } from './policy/policy.js';
import { percentile, runEpisode, type EpisodeResult, type RunOptions } from './policy/runner.js';

export interface Circle {
  readonly x: number;
  readonly y: number;
  readonly r: number;
}

export interface EvalOptions {
  readonly episodes: number;
  readonly seed: number;
  readonly guidance?: readonly CostTerm[];
  /** arm-reach: novel obstacles per episode placed on a detour; pusht: forbidden circles. */
  readonly novel?: number;
  readonly sampler?: import('../../src/sample/registry.js').SamplerName;
  readonly steps?: number;
  readonly candidates?: number;
  readonly pinExecuted?: number;
  /** Starting-noise scale of the sampler (default 1). */
  readonly temperature?: number;
  /** Actions executed per chunk (default: the policy's Ta). */
  readonly actionHorizon?: number;
  /** Early replanning check (RunOptions.replanWhen), e.g. armReachReplanCheck. */
  readonly replanWhen?: RunOptions['replanWhen'];
  /** The same per episode, from its novel constraints (e.g. pushtReplanCheck); replaces replanWhen. */
  readonly replanFor?: (constraints: readonly Circle[]) => RunOptions['replanWhen'];
  readonly onEpisode?: (i: number, r: EpisodeSummary) => void;
  /** Diagnostics: called before episode i runs, with its novel constraints and guidance terms. */
  readonly onEpisodeStart?: (i: number, e: { readonly seed: number; readonly constraints: readonly Circle[]; readonly guidance?: readonly CostTerm[] }) => void;
  /** Diagnostics: called with every chunk and after every step of episode i (see RunOptions). */
  readonly onChunk?: (i: number, c: Parameters<NonNullable<RunOptions['onChunk']>>[0]) => void;
  readonly onStep?: (i: number, step: number, r: Parameters<NonNullable<RunOptions['onStep']>>[1]) => void;
  /** Called per episode with the novel constraints, so guidance terms can see them. */
  readonly guidanceFor?: (constraints: readonly Circle[]) => readonly CostTerm[];
}

export interface EpisodeSummary {
  readonly seed: number;
  readonly success: boolean;
  readonly steps: number;
  readonly finalCoverage?: number;
  readonly maxReward: number;
  readonly finalDistance?: number;
  readonly mode?: string;
  readonly violations: number;
}

export interface EvalReport {
  readonly env: string;
  readonly episodes: number;
  readonly successRate: number;
  /**
   * Episodes that succeeded without a single constraint violation. On arm-reach a collision
   * already fails the episode, so this equals successRate; on Push-T with forbidden regions it
   * counts only the pushes that never entered one.
   */
  readonly successWithoutViolationsRate: number;
  readonly meanFinalCoverage?: number;
  readonly meanMaxReward: number;
  readonly meanFinalDistance?: number;
  readonly modes?: Record<string, number>;
  /** Episodes with at least one constraint violation (collision / forbidden-region entry). */
  readonly episodesWithViolations: number;
  readonly meanViolationSteps: number;
  /** Executed actions per sampled chunk (Ta without early replanning, fewer with it). */
  readonly meanActionsPerChunk: number;
  /** Chunks cut short by the early-replanning check. */
  readonly earlyReplans: number;
  readonly latencyMs: { readonly p50: number; readonly p99: number; readonly mean: number; readonly chunks: number };
  readonly perEpisode: EpisodeSummary[];
}

/** Radius of Push-T's forbidden circles (px). */
export const PUSHT_FORBIDDEN_RADIUS = 30;
/** Gap (px) between the agent's disc at its start and a forbidden circle. */
export const PUSHT_FORBIDDEN_START_GAP = 5;

/**
 * Forbidden circles for Push-T: on the segment from the agent's start towards the block, 35-65% of
 * the way, where pushing would pass; but never over the agent's start. A circle that would
 * overlap the agent's disc there (agent and block start close together) moves along the same
 * line until PUSHT_FORBIDDEN_START_GAP px separate them, so every episode begins outside every
 * circle and staying out is possible.
 */
export function pushtForbidden(obs: Float64Array, k: number, rng: Rng): Circle[] {
  const dx = obs[2] - obs[0];
  const dy = obs[3] - obs[1];
  const d = Math.hypot(dx, dy);
  const [ux, uy] = d > 0 ? [dx / d, dy / d] : [1, 0];
  const nearest = PUSHT_FORBIDDEN_RADIUS + PUSHT_AGENT_RADIUS + PUSHT_FORBIDDEN_START_GAP;
  const out: Circle[] = [];
  for (let i = 0; i < k; i++) {
    const along = Math.max((0.35 + 0.3 * rng.uniform()) * d, nearest);
    out.push({ x: obs[0] + along * ux, y: obs[1] + along * uy, r: PUSHT_FORBIDDEN_RADIUS });
  }
  return out;
}

/** Novel arm-reach obstacles: beside the central obstacle on a random side, where one detour passes. */
export function armNovel(obs: Float64Array, k: number, rng: Rng): Circle[] {
  const o = OBS_LAYOUT.obstacles;
  const cx = obs[o];
  const cy = obs[o + 1];
  const cr = obs[o + 2];
  const d = Math.hypot(cx, cy);
  const ux = cx / d;
  const uy = cy / d;
  const out: Circle[] = [];
  for (let i = 0; i < k; i++) {
    const side = rng.uniform() < 0.5 ? -1 : 1;
    const off = cr + 0.09 + 0.02 * i;
    out.push({ x: cx - side * uy * off, y: cy + side * ux * off, r: 0.045 });
  }
  return out;
}

/** The observation with every obstacle slot after the first (the central obstacle) marked absent. */
export function hideExtraObstacles(obs: Float64Array): Float64Array {
  const out = Float64Array.from(obs);
  for (let k = 1; k < MAX_OBSTACLES; k++) {
    const o = OBS_LAYOUT.obstacles + 3 * k;
    out[o] = ABSENT_OBSTACLE.x;
    out[o + 1] = ABSENT_OBSTACLE.y;
    out[o + 2] = ABSENT_OBSTACLE.radius;
  }
  return out;
}

function pushtViolations(observations: Float64Array[], circles: readonly Circle[]): number {
  let n = 0;
  for (const o of observations) if (circles.some((c) => Math.hypot(o[0] - c.x, o[1] - c.y) < c.r + PUSHT_AGENT_RADIUS)) n++;
  return n;
}

export function evaluatePolicy(env: Env, policy: DiffusionPolicy, opts: EvalOptions): EvalReport {
  const per: EpisodeSummary[] = [];
  const lat: number[] = [];
  const master = new Rng(opts.seed);
  let totalSteps = 0;
  let earlyReplans = 0;
  for (let i = 0; i < opts.episodes; i++) {
    const seed = opts.seed * 1000 + i;
    const rng = master.split(1)[0];
    let constraints: Circle[] = [];
    let state: Float64Array | undefined;
    if (opts.novel && opts.novel > 0) {
      const obs0 = env.reset({ seed });
      if (env.name === 'arm-reach') {
        constraints = armNovel(obs0, opts.novel, rng);
        (env as ArmReachEnv).reset({ seed, extraObstacles: constraints.map((c) => ({ x: c.x, y: c.y, radius: c.r })) });
        state = env.getState() as Float64Array;
      } else {
        constraints = pushtForbidden(obs0, opts.novel, rng);
      }
    }
    const guidance = opts.guidanceFor ? opts.guidanceFor(constraints) : opts.guidance;
    opts.onEpisodeStart?.(i, { seed, constraints, guidance });
    // Novel obstacles are physics and guidance only: the policy's observation shows the
    // obstacle slots as it saw them in training (absent), so it meets them only through guidance.
    const observe = env.name === 'arm-reach' && constraints.length > 0 ? hideExtraObstacles : undefined;
    const r: EpisodeResult = runEpisode(env, policy, { seed, state, guidance, sampler: opts.sampler, steps: opts.steps, candidates: opts.candidates, pinExecuted: opts.pinExecuted, observe, temperature: opts.temperature, actionHorizon: opts.actionHorizon, replanWhen: opts.replanFor ? opts.replanFor(constraints) : opts.replanWhen,
      onChunk: opts.onChunk ? (c) => opts.onChunk!(i, c) : undefined, onStep: opts.onStep ? (n, r) => opts.onStep!(i, n, r) : undefined });
    lat.push(...r.chunkLatenciesMs);
    totalSteps += r.steps;
    earlyReplans += r.earlyReplans;
    let s: EpisodeSummary;
    if (env.name === 'pusht') {
      s = { seed, success: r.success, steps: r.steps, finalCoverage: Number(r.finalInfo.coverage ?? 0), maxReward: r.maxReward, violations: pushtViolations(r.observations, constraints) };
    } else {
      const o = OBS_LAYOUT.obstacles;
      const first = r.observations[0];
      const ee = r.observations.map((ob) => [ob[OBS_LAYOUT.ee], ob[OBS_LAYOUT.ee + 1]] as const);
      const success = Boolean(r.finalInfo.success) && !r.finalInfo.collided;
      s = {
        seed,
        success,
        steps: r.steps,
        maxReward: r.maxReward,
        finalDistance: Number(r.finalInfo.distance ?? NaN),
        mode: detourMode(ee, [first[o], first[o + 1]]),
        violations: r.finalInfo.collided ? 1 : 0,
      };
    }
    per.push(s);
    opts.onEpisode?.(i, s);
  }
  const mean = (xs: number[]): number => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);
  const modes: Record<string, number> = {};
  for (const p of per) if (p.mode) modes[p.mode] = (modes[p.mode] ?? 0) + 1 / per.length;
  return {
    env: env.name,
    episodes: per.length,
    successRate: mean(per.map((p) => (p.success ? 1 : 0))),
    successWithoutViolationsRate: mean(per.map((p) => (p.success && p.violations === 0 ? 1 : 0))),
    meanFinalCoverage: env.name === 'pusht' ? mean(per.map((p) => p.finalCoverage ?? 0)) : undefined,
    meanMaxReward: mean(per.map((p) => p.maxReward)),
    meanFinalDistance: env.name === 'arm-reach' ? mean(per.map((p) => p.finalDistance ?? NaN)) : undefined,
    modes: env.name === 'arm-reach' ? modes : undefined,
    episodesWithViolations: per.filter((p) => p.violations > 0).length,
    meanViolationSteps: mean(per.map((p) => p.violations)),
    meanActionsPerChunk: lat.length > 0 ? totalSteps / lat.length : NaN,
    earlyReplans,
    latencyMs: { p50: percentile(lat, 50), p99: percentile(lat, 99), mean: mean(lat), chunks: lat.length },
    perEpisode: per,
  };
}
