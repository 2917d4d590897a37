/**
 * Expert corrections at the states a policy visits (DAgger, Ross, Gordon & Bagnell 2011).
 *
 * A policy trained only on expert demonstrations meets states the expert never visited: its
 * small imitation errors compound, and on arm-reach they end as a link grazing an obstacle. Here
 * the policy drives the arm; at chunk boundaries the planner expert is asked what it would do
 * from the state the policy reached, and its closed-loop rollout from there (in a second
 * environment restored to that state) becomes a new demonstration. Trained on the union, the
 * policy learns to recover from its own mistakes.
 */
import type { ArmReachEnv } from '../env/armReach.js';
import { STATE_LAYOUT } from '../env/armReachSpec.js';
import { EnvRng } from '../env/rng.js';
import { armActionMode } from '../envs.js';
import type { DiffusionPolicy } from '../policy/policy.js';
import { armReachReplanCheck } from '../env/armReachReplan.js';
import { planArmReach, trackPlan, type ArmReachDemo, type ArmReachPlan } from './armReachExpert.js';

export interface CorrectionOptions {
  /** Policy rollouts (episodes). */
  readonly episodes: number;
  readonly seed: number;
  /** Clearance (m) the expert keeps from obstacles (default 0.02, see planArmReach). */
  readonly safetyMargin?: number;
  /** Ask the expert at every `every`-th chunk boundary after the first (default 1: all of them). */
  readonly every?: number;
  /**
   * Run only episodes [from, to) of the `episodes` seeded ones (default: all). Episode k has the
   * same scene and draws whichever range it is run in, so ranges run apart (e.g. in parallel
   * workers) and concatenated in order give exactly the result of one run.
   */
  readonly range?: { readonly from: number; readonly to: number };
}

export interface CorrectionReport {
  /** Successful expert rollouts from policy-visited states, each led by the policy's previous step. */
  readonly demos: ArmReachDemo[];
  /** Policy rollouts and how many of them succeeded without touching an obstacle. */
  readonly rollouts: number;
  readonly rolloutSuccesses: number;
  /** States at which the expert was asked, and how many gave no successful correction. */
  readonly queried: number;
  readonly failed: number;
}

/** Clearances (m) tried in turn when the state the policy reached is closer to an obstacle than the requested one. */
function marginsToTry(margin: number): number[] {
  return [...new Set([margin, Math.min(margin, 0.02), Math.min(margin, 0.005)])];
}

/** The shorter (fewer control ticks) of the expert's plans around either side. */
function nearestPlan(obs: Float64Array, env: ArmReachEnv, rng: EnvRng, margin: number): ArmReachPlan | null {
  for (const m of marginsToTry(margin)) {
    const opts = { rng, dt: env.dt, maxSpeed: 0.75 * env.maxJointSpeed, actionMode: env.actionMode, safetyMargin: m };
    const plans = [planArmReach(obs, { ...opts, side: 'left' }), planArmReach(obs, { ...opts, side: 'right' })].filter((p): p is ArmReachPlan => p !== null);
    if (plans.length > 0) return plans.reduce((a, b) => (b.waypoints.length < a.waypoints.length ? b : a));
  }
  return null;
}

/**
 * Roll out `policy` in `env` for `episodes` seeded episodes (receding horizon, the policy's own
 * sampler) and collect expert corrections from the states it reaches, using `expertEnv` (a
 * second ArmReachEnv) to execute them. Each correction episode starts with the policy's last
 * executed step (observation, action), so its first training window shows the observation
 * history the policy had.
 */
export function collectCorrections(env: ArmReachEnv, expertEnv: ArmReachEnv, policy: DiffusionPolicy, options: CorrectionOptions): CorrectionReport {
  for (const [name, e] of [['env', env], ['expertEnv', expertEnv]] as const) {
    if (e === null || typeof e !== 'object' || e.name !== 'arm-reach') throw new TypeError(`collectCorrections: ${name} must be an ArmReachEnv`);
  }
  if (env === expertEnv) throw new TypeError('collectCorrections: env and expertEnv must be two environments (the expert runs beside the policy)');
  if (policy === null || typeof policy !== 'object' || typeof policy.predictChunks !== 'function') throw new TypeError('collectCorrections: policy must be a DiffusionPolicy');
  if (policy.config.env !== 'arm-reach') throw new TypeError(`collectCorrections: policy was trained for '${policy.config.env}', not 'arm-reach'`);
  const mode = armActionMode(policy.config);
  for (const [name, e] of [['env', env], ['expertEnv', expertEnv]] as const) {
    if (e.actionMode !== mode) throw new TypeError(`collectCorrections: the policy acts with ${mode} actions, ${name} takes ${e.actionMode} actions`);
  }
  if (!Number.isInteger(options?.episodes) || options.episodes <= 0) {
    throw new RangeError(`collectCorrections: options.episodes must be a positive integer, got ${String(options?.episodes)}`);
  }
  if (!Number.isInteger(options.seed)) throw new TypeError(`collectCorrections: options.seed must be an integer, got ${String(options.seed)}`);
  const margin = options.safetyMargin ?? 0.02;
  if (!(typeof margin === 'number' && margin >= 0 && margin <= 0.2)) {
    throw new RangeError(`collectCorrections: options.safetyMargin must be a number in [0, 0.2] m, got ${String(options.safetyMargin)}`);
  }
  const every = options.every ?? 1;
  if (!Number.isInteger(every) || every < 1) throw new RangeError(`collectCorrections: options.every must be a positive integer, got ${String(options.every)}`);

  const from = options.range?.from ?? 0;
  const to = options.range?.to ?? options.episodes;
  if (!Number.isInteger(from) || !Number.isInteger(to) || from < 0 || to > options.episodes || from >= to) {
    throw new RangeError(`collectCorrections: options.range must be integers with 0 <= from < to <= episodes (${options.episodes}), got [${String(options.range?.from)}, ${String(options.range?.to)})`);
  }

  const master = new EnvRng(options.seed);
  const To = policy.horizon.obs;
  // The policy's stored early replanning, as eval and drive run it.
  const replan = policy.config.replanClearance === undefined ? undefined : armReachReplanCheck(env, { clearance: policy.config.replanClearance });
  const demos: ArmReachDemo[] = [];
  let successes = 0;
  let queried = 0;
  let failed = 0;
  for (let e = 0; e < to; e++) {
    const seed = master.int(0, 0x7fffffff);
    const rng = new EnvRng(master.int(0, 0x7fffffff));
    if (e < from) continue;
    let obs = env.reset({ seed });
    const history: Float64Array[] = Array.from({ length: To }, () => obs);
    let prev: { obs: Float64Array; action: Float64Array } | undefined;
    let done = false;
    let success = false;
    for (let chunk = 0; !done; chunk++) {
      if (chunk > 0 && chunk % every === 0 && prev) {
        const state = env.getState();
        if (state[STATE_LAYOUT.collided] === 0) {
          queried++;
          // The expert gets a fresh step budget from the reached state.
          state[STATE_LAYOUT.steps] = 0;
          const start = expertEnv.reset({ state });
          const fix = trackPlan(expertEnv, start, nearestPlan(start, expertEnv, rng, margin));
          if (fix.success) {
            demos.push({
              observations: [prev.obs, ...fix.observations],
              actions: [prev.action, ...fix.actions],
              rewards: [0, ...fix.rewards],
              mode: fix.mode,
              success: true,
              seed,
            });
          } else {
            failed++;
          }
        }
      }
      const { chunks } = policy.predictChunks([history.slice(-To)], { seed: seed * 100003 + chunk });
      const run = policy.executable(chunks[0]);
      for (let k = 0; k < run.length; k++) {
        if (k > 0 && replan && prev && replan(obs, run.slice(k), prev.obs)) break;
        const a = run[k];
        const before = obs;
        const r = env.step(a);
        prev = { obs: before, action: a };
        obs = r.observation;
        history.push(obs);
        if (history.length > To) history.shift();
        if (r.terminated || r.truncated) {
          done = true;
          success = r.terminated && !r.info.collided;
          break;
        }
      }
    }
    if (success) successes++;
  }
  return { demos, rollouts: to - from, rolloutSuccesses: successes, queried, failed };
}
