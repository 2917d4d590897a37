/**
 * Observation, action and state layouts of the arm-reach environment (plain data, no MuJoCo).
 *
 * Observation (16 entries):
 *   [0..2]   q1, q2, q3            joint angles (rad)
 *   [3..4]   ee_x, ee_y            end-effector position (m)
 *   [5..6]   target_x, target_y    target position (m)
 *   [7..15]  obs{i}_x, obs{i}_y, obs{i}_r for i = 0..2; slot 0 is the central obstacle,
 *            absent slots are encoded as (ABSENT_OBSTACLE.x, ABSENT_OBSTACLE.y, 0).
 * State (Float64Array, 22 entries): see STATE_LAYOUT.
 */
import { JOINT_LIMITS, MAX_OBSTACLE_RADIUS, type Obstacle } from './armReachKinematics.js';
import type { BoxSpec } from './types.js';

/** Number of obstacle slots in the MuJoCo model (mocap bodies obs0..obs2). */
export const MAX_OBSTACLES = 3;

/** Encoding of an unused obstacle slot: a fixed far point with radius 0. */
export const ABSENT_OBSTACLE: Obstacle = { x: 2, y: 2, radius: 0 };

export const OBS_LAYOUT = { q: 0, ee: 3, target: 5, obstacles: 7, size: 7 + 3 * MAX_OBSTACLES } as const;

/** Offsets into the Float64Array returned by ArmReachEnv.getState(). */
export const STATE_LAYOUT = {
  qpos: 0,
  qvel: 3,
  /** Internal servo reference (rad); part of the state so that restores are exact. */
  qref: 6,
  target: 9,
  /** MAX_OBSTACLES x (x, y, radius), absent slots as ABSENT_OBSTACLE. */
  obstacles: 11,
  /** Number of steps taken in the episode. */
  steps: 11 + 3 * MAX_OBSTACLES,
  /** 1 if the arm touched an obstacle earlier in the episode, else 0. */
  collided: 12 + 3 * MAX_OBSTACLES,
  size: 13 + 3 * MAX_OBSTACLES,
} as const;

export function observationSpec(): BoxSpec {
  const names = ['q1', 'q2', 'q3', 'ee_x', 'ee_y', 'target_x', 'target_y'];
  const low = [JOINT_LIMITS[0]![0], JOINT_LIMITS[1]![0], JOINT_LIMITS[2]![0], -1, -1, -1, -1];
  const high = [JOINT_LIMITS[0]![1], JOINT_LIMITS[1]![1], JOINT_LIMITS[2]![1], 1, 1, 1, 1];
  for (let i = 0; i < MAX_OBSTACLES; i++) {
    names.push(`obs${i}_x`, `obs${i}_y`, `obs${i}_r`);
    low.push(-2, -2, 0);
    high.push(2, 2, MAX_OBSTACLE_RADIUS);
  }
  return { size: names.length, low, high, names };
}

export function actionSpec(mode: 'velocity' | 'position', maxJointSpeed: number): BoxSpec {
  if (mode === 'velocity') {
    return {
      size: 3,
      low: [-maxJointSpeed, -maxJointSpeed, -maxJointSpeed],
      high: [maxJointSpeed, maxJointSpeed, maxJointSpeed],
      names: ['qd1', 'qd2', 'qd3'],
    };
  }
  return {
    size: 3,
    low: JOINT_LIMITS.map((l) => l[0]),
    high: JOINT_LIMITS.map((l) => l[1]),
    names: ['q1_target', 'q2_target', 'q3_target'],
  };
}

/** Validate a user-supplied obstacle; `where` names the argument in error messages. */
export function checkObstacle(o: unknown, where: string): Obstacle {
  if (o === null || typeof o !== 'object') throw new TypeError(`${where} must be an object {x, y, radius}`);
  const { x, y, radius } = o as Record<string, unknown>;
  if (typeof x !== 'number' || !Number.isFinite(x) || Math.abs(x) > 1.5) {
    throw new RangeError(`${where}.x must be a finite number in [-1.5, 1.5], got ${String(x)}`);
  }
  if (typeof y !== 'number' || !Number.isFinite(y) || Math.abs(y) > 1.5) {
    throw new RangeError(`${where}.y must be a finite number in [-1.5, 1.5], got ${String(y)}`);
  }
  if (typeof radius !== 'number' || !(radius > 0) || radius > MAX_OBSTACLE_RADIUS) {
    throw new RangeError(`${where}.radius must be in (0, ${MAX_OBSTACLE_RADIUS}], got ${String(radius)}`);
  }
  return { x, y, radius };
}

/** Decode the obstacle slots of an observation (absent slots, radius 0, are skipped). */
export function obstaclesFromObservation(observation: ArrayLike<number>): Obstacle[] {
  if (observation === null || typeof observation !== 'object' || observation.length !== OBS_LAYOUT.size) {
    throw new TypeError(`obstaclesFromObservation: observation must have ${OBS_LAYOUT.size} entries, got ${observation?.length}`);
  }
  const out: Obstacle[] = [];
  for (let i = 0; i < MAX_OBSTACLES; i++) {
    const k = OBS_LAYOUT.obstacles + 3 * i;
    const radius = observation[k + 2]!;
    if (radius > 0) out.push({ x: observation[k]!, y: observation[k + 1]!, radius });
  }
  return out;
}
