/**
 * Early replanning for arm-reach: a check for `RunOptions.replanWhen` that predicts where the
 * rest of the current chunk takes the arm and asks for a fresh chunk when a link would come
 * closer to an obstacle than a clearance.
 *
 * A chunk sampled from the observations at its start runs open loop; far from obstacles that
 * is harmless, and Ta actions run. Near one, a small drift over several open-loop steps is
 * enough for a link to graze it, which fails the episode. The check replays the next
 * `lookahead` actions on the joint angles of the latest observation, the way the environment's
 * servo reference moves (velocity actions: q += a dt; position actions: q moves towards a by
 * at most maxJointSpeed dt; both clamped to the joint limits), and measures the arm's clearance
 * to the obstacles in that observation with the same capsule model the environment reports
 * (`armClearance`). The servo lags its reference, so this is a prediction, not the simulator.
 */
import { checkNumber, fail } from '../../../src/util/validate.js';
import { JOINT_LIMITS, armClearance } from './armReachKinematics.js';
import { OBS_LAYOUT, obstaclesFromObservation } from './armReachSpec.js';

export interface ArmReachReplanOptions {
  /** Replan when a predicted configuration's clearance (m) is below this; in [0, 0.2]. */
  readonly clearance: number;
  /** How many of the chunk's next actions to replay (default 2). */
  readonly lookahead?: number;
}

/** What the check needs to know about the environment the actions drive. */
export interface ArmReachDrive {
  readonly dt: number;
  readonly actionMode: 'velocity' | 'position';
  readonly maxJointSpeed: number;
}

/**
 * `RunOptions.replanWhen`: the latest observation, the chunk's actions still to run (next one
 * first) and the observation one control step before the latest; true: sample a new chunk now.
 */
export type ReplanCheck = (observation: Float64Array, upcoming: readonly Float64Array[], previous?: Float64Array) => boolean;

export function armReachReplanCheck(drive: ArmReachDrive, opts: ArmReachReplanOptions): ReplanCheck {
  if (!drive || typeof drive !== 'object') fail('armReachReplanCheck: expected the environment (dt, actionMode, maxJointSpeed) as first argument');
  const dt = checkNumber('dt', drive.dt, { min: 1e-6 });
  const speed = checkNumber('maxJointSpeed', drive.maxJointSpeed, { min: 0 });
  if (drive.actionMode !== 'velocity' && drive.actionMode !== 'position') fail(`actionMode: expected 'velocity' or 'position', received ${String(drive.actionMode)}`);
  if (!opts || typeof opts !== 'object') fail('armReachReplanCheck: expected options { clearance, lookahead? }');
  const clearance = checkNumber('clearance', opts.clearance, { min: 0, max: 0.2 });
  const lookahead = checkNumber('lookahead', opts.lookahead ?? 2, { integer: true, min: 1, max: 64 });
  const velocity = drive.actionMode === 'velocity';
  return (observation, upcoming) => {
    const obstacles = obstaclesFromObservation(observation);
    if (obstacles.length === 0) return false;
    const q = [0, 1, 2].map((j) => observation[OBS_LAYOUT.q + j]);
    if (!q.every(Number.isFinite)) fail('observation: joint angles must be finite');
    const n = Math.min(lookahead, upcoming.length);
    for (let s = 0; s < n; s++) {
      const a = upcoming[s];
      if (!a || a.length !== 3) fail(`upcoming[${s}]: expected an action of 3 numbers, received ${a?.length ?? typeof a}`);
      // A non-finite action cannot be predicted (and the environment rejects it): replan.
      if (![0, 1, 2].every((j) => Number.isFinite(a[j]))) return true;
      for (let j = 0; j < 3; j++) {
        const [lo, hi] = JOINT_LIMITS[j];
        const move = velocity ? a[j] * dt : Math.max(-speed * dt, Math.min(speed * dt, a[j] - q[j]));
        q[j] = Math.max(lo, Math.min(hi, q[j] + move));
      }
      if (armClearance(q, obstacles) < clearance) return true;
    }
    return false;
  };
}
