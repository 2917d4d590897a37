/**
 * Seeded episode layout for arm-reach.
 *
 * Everything is sampled in a local frame whose +x axis points from the arm base (origin) to
 * the central obstacle; the frame is rotated by a random `axisAngle` in [-pi/2, pi/2]:
 *   - central obstacle (slot 0) on the axis at distance 0.55..0.60 m, radius 0.05..0.07 m
 *     (its near edge stays >= 0.48 m from the base so link 1, 0.4 m long, can swing past it);
 *   - target behind it on the axis at distance 0.76..0.80 m (lateral jitter +-0.015 m);
 *   - start configuration: random joint angles whose end effector lies in front of the obstacle
 *     (between base and obstacle) with the whole arm in front of it and clear of all obstacles.
 * The layout distribution is mirror-symmetric about the axis, so going around the obstacle on
 * the left (+y local) or on the right (-y local) is equally feasible and on average equally long.
 * These ranges keep >= 0.05 m of best-case link clearance at the goal for BOTH detours (checked
 * by an IK sweep over the range corners); a target much closer to full reach would leave
 * only one side (or neither) comfortably feasible.
 * Optional distractor obstacles are placed behind the base (away from both detours).
 */
import {
  JOINT_LIMITS,
  forwardKinematics,
  pointsClearance,
  withinJointLimits,
  type Obstacle,
  type Vec2,
} from './armReachKinematics.js';
import type { EnvRng } from './rng.js';

export interface ArmReachLayout {
  readonly qpos: [number, number, number];
  readonly target: Vec2;
  /** Central obstacle first, then distractors, then extra (caller-provided) obstacles. */
  readonly obstacles: Obstacle[];
}

export interface LayoutOptions {
  /** Number of random distractor obstacles behind the base. */
  readonly distractors: number;
  /** Caller-provided obstacles appended after the sampled ones (start pose avoids them). */
  readonly extraObstacles: readonly Obstacle[];
}

const START_CLEARANCE = 0.04;
const MAX_START_TRIES = 5000;

export function sampleArmReachLayout(rng: EnvRng, options: LayoutOptions): ArmReachLayout {
  if (!Number.isInteger(options.distractors) || options.distractors < 0) {
    throw new RangeError(`sampleArmReachLayout: options.distractors must be a non-negative integer, got ${options.distractors}`);
  }
  const axisAngle = rng.range(-Math.PI / 2, Math.PI / 2);
  const cos = Math.cos(axisAngle);
  const sin = Math.sin(axisAngle);
  const toWorld = (lx: number, ly: number): Vec2 => [lx * cos - ly * sin, lx * sin + ly * cos];
  const toLocal = (p: Vec2): Vec2 => [p[0] * cos + p[1] * sin, -p[0] * sin + p[1] * cos];

  const obstacleDistance = rng.range(0.55, 0.6);
  const obstacleRadius = rng.range(0.05, 0.07);
  const [ox, oy] = toWorld(obstacleDistance, 0);
  const central: Obstacle = { x: ox, y: oy, radius: obstacleRadius };
  const target = toWorld(rng.range(0.76, 0.8), rng.range(-0.015, 0.015));

  const obstacles: Obstacle[] = [central];
  for (let i = 0; i < options.distractors; i++) {
    const angle = axisAngle + Math.PI + rng.range(-1, 1);
    const dist = rng.range(0.45, 0.8);
    obstacles.push({ x: dist * Math.cos(angle), y: dist * Math.sin(angle), radius: rng.range(0.04, 0.07) });
  }
  obstacles.push(...options.extraObstacles);

  const frontLimit = obstacleDistance - obstacleRadius - 0.05;
  for (let attempt = 0; attempt < MAX_START_TRIES; attempt++) {
    const q: [number, number, number] = [
      axisAngle + rng.range(-0.6, 0.6),
      rng.range(JOINT_LIMITS[1]![0] + 0.2, JOINT_LIMITS[1]![1] - 0.2),
      rng.range(JOINT_LIMITS[2]![0] + 0.2, JOINT_LIMITS[2]![1] - 0.2),
    ];
    if (!withinJointLimits(q, 0.1)) continue;
    const points = forwardKinematics(q);
    const ee = toLocal(points[3]);
    if (ee[0] < 0.1 || ee[0] > frontLimit || Math.abs(ee[1]) > 0.25) continue;
    if (toLocal(points[1])[0] > frontLimit || toLocal(points[2])[0] > frontLimit) continue;
    if (pointsClearance(points, obstacles) < START_CLEARANCE) continue;
    return { qpos: q, target, obstacles };
  }
  throw new Error(
    `sampleArmReachLayout: no collision-free start configuration found in ${MAX_START_TRIES} tries; ` +
      'the extra obstacles probably block the area in front of the central obstacle',
  );
}
