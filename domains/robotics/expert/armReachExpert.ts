/**
 * Scripted expert for arm-reach: plan in joint space, smooth, time-parameterise, track.
 *
 * 1. Pick a detour side ('left' / 'right' of the central obstacle as seen from the base) with a
 *    fair coin, and block the other side with a virtual wall (a segment from the obstacle
 *    surface outward past the arm's reach) that only the planner sees.
 * 2. Goal configurations: inverse kinematics of the target over a sweep of last-link angles and
 *    both elbow signs; keep the collision-free ones, try them nearest-first.
 * 3. RRT-Connect in joint space; collision checks use exact link-segment vs circle distances
 *    with a safety margin, then randomised shortcut smoothing.
 * 4. Trapezoidal time-parameterisation at the control rate under a joint-speed limit, giving
 *    joint waypoints and velocity (or position) actions.
 * If the chosen side is infeasible (e.g. a novel obstacle blocks it) the other side, then no
 * wall, is tried. The reported mode is measured geometrically from the end-effector path: the
 * signed angle it sweeps around the central obstacle (clockwise = passing on the left).
 */
import type { ArmReachEnv } from '../env/armReach.js';
import {
  JOINT_LIMITS,
  LINK_RADIUS,
  forwardKinematics,
  inverseKinematics,
  pointsClearance,
  segmentSegmentDistance,
  withinJointLimits,
  type Obstacle,
  type Vec2,
} from '../env/armReachKinematics.js';
import { OBS_LAYOUT, obstaclesFromObservation } from '../env/armReachSpec.js';
import { EnvRng } from '../env/rng.js';
import { rrtConnect, shortcutPath, type PlanningProblem } from './jointPlanner.js';
import { timeParameterise } from './timeParameterise.js';

export type DetourSide = 'left' | 'right';
export type DetourMode = DetourSide | 'none';

export interface ArmReachExpertOptions {
  /** Randomness for side choice and planning. */
  readonly rng: EnvRng;
  /** Control period (s). Default 0.1. */
  readonly dt?: number;
  /** Joint speed used by the expert (rad/s); keep below the env limit to leave room for feedback. Default 1.5. */
  readonly maxSpeed?: number;
  /** Path acceleration (rad/s^2). Default 4. */
  readonly maxAccel?: number;
  /** Extra clearance (m) beyond touching that the planner keeps from obstacles. Default 0.02. */
  readonly safetyMargin?: number;
  /** Force a detour side instead of a fair coin flip. */
  readonly side?: DetourSide;
  /** 'velocity' (default) or 'position' actions. */
  readonly actionMode?: 'velocity' | 'position';
}

export interface ArmReachPlan {
  /** Joint configurations at each control tick; waypoints[0] is the start, the last is the goal. */
  readonly waypoints: Float64Array[];
  /** Open-loop actions: velocity (w[k+1] - w[k]) / dt or position w[k + 1]; length waypoints.length - 1. */
  readonly actions: Float64Array[];
  /** Side that was requested from the planner. */
  readonly requestedSide: DetourSide;
  /** Side measured from the planned end-effector path. */
  readonly mode: DetourMode;
  /** Signed angle (rad) the planned end-effector path sweeps around the central obstacle. */
  readonly sweptAngle: number;
}

const PHI_SAMPLES = 72;
const GOAL_TRIES = 4;
const WALL_LENGTH = 1.3;
/**
 * Clearance (m) links must keep from a virtual wall. Generous on purpose: configurations are only
 * checked every 0.02 rad, and a thin wall could otherwise be tunnelled through between checks.
 */
const WALL_CLEARANCE = 0.05;

/** Plan from an arm-reach observation. Returns null when no collision-free plan is found. */
export function planArmReach(observation: ArrayLike<number>, options: ArmReachExpertOptions): ArmReachPlan | null {
  if (observation === null || typeof observation !== 'object' || observation.length !== OBS_LAYOUT.size) {
    throw new TypeError(`planArmReach: observation must have ${OBS_LAYOUT.size} entries, got ${observation?.length}`);
  }
  for (let i = 0; i < OBS_LAYOUT.size; i++) {
    if (!Number.isFinite(observation[i])) throw new RangeError(`planArmReach: observation[${i}] must be finite`);
  }
  if (!(options?.rng instanceof EnvRng)) throw new TypeError('planArmReach: options.rng must be a EnvRng');
  const dt = positive(options.dt ?? 0.1, 'options.dt');
  const maxSpeed = positive(options.maxSpeed ?? 1.5, 'options.maxSpeed');
  const maxAccel = positive(options.maxAccel ?? 4, 'options.maxAccel');
  const margin = options.safetyMargin ?? 0.02;
  if (!(margin >= 0)) throw new RangeError(`planArmReach: options.safetyMargin must be >= 0, got ${margin}`);
  const actionMode = options.actionMode ?? 'velocity';
  if (actionMode !== 'velocity' && actionMode !== 'position') {
    throw new RangeError(`planArmReach: options.actionMode must be 'velocity' or 'position', got ${String(actionMode)}`);
  }
  if (options.side !== undefined && options.side !== 'left' && options.side !== 'right') {
    throw new RangeError(`planArmReach: options.side must be 'left' or 'right', got ${String(options.side)}`);
  }
  const rng = options.rng;
  const start = [observation[OBS_LAYOUT.q]!, observation[OBS_LAYOUT.q + 1]!, observation[OBS_LAYOUT.q + 2]!];
  const target: Vec2 = [observation[OBS_LAYOUT.target]!, observation[OBS_LAYOUT.target + 1]!];
  const obstacles = obstaclesFromObservation(observation);
  const central = centralObstacle(observation);
  const requestedSide: DetourSide = options.side ?? (rng.uniform() < 0.5 ? 'left' : 'right');
  const other: DetourSide = requestedSide === 'left' ? 'right' : 'left';

  const attempts: (DetourSide | null)[] = central ? [requestedSide, other, null] : [null];
  for (const side of attempts) {
    const walls = central && side ? [wallBlocking(side === 'left' ? 'right' : 'left', central)] : [];
    const problem = armProblem(obstacles, walls, margin);
    if (!problem.isValid(start)) continue;
    const goals = goalConfigurations(target, problem, start);
    for (const goal of goals.slice(0, GOAL_TRIES)) {
      const raw = rrtConnect(problem, start, goal, { rng, stepSize: 0.2, maxIterations: 3000 });
      if (raw === null) continue;
      const smooth = shortcutPath(problem, raw, rng, 150);
      const waypoints = timeParameterise(smooth, { dt, maxSpeed, maxAccel }).map((q) => Float64Array.from(q));
      const actions: Float64Array[] = [];
      for (let k = 0; k + 1 < waypoints.length; k++) {
        const next = waypoints[k + 1]!;
        actions.push(actionMode === 'position' ? Float64Array.from(next) : next.map((q, j) => (q - waypoints[k]![j]!) / dt));
      }
      const eePath = waypoints.map((q) => forwardKinematics(q)[3]);
      const sweptAngle = central ? sweptAngleAround(eePath, [central.x, central.y]) : 0;
      return { waypoints, actions, requestedSide, mode: modeFromSweep(sweptAngle, central !== undefined), sweptAngle };
    }
  }
  return null;
}

/**
 * Signed angle (rad) swept by the vector (p - centre) along a path. Negative (clockwise) means
 * the path passed the obstacle on the left as seen from the arm base; positive on the right.
 */
export function sweptAngleAround(path: readonly Vec2[], centre: Vec2): number {
  if (!Array.isArray(path)) throw new TypeError('sweptAngleAround: path must be an array of [x, y]');
  if (!Array.isArray(centre) || !Number.isFinite(centre[0]) || !Number.isFinite(centre[1])) {
    throw new TypeError('sweptAngleAround: centre must be a finite [x, y]');
  }
  let total = 0;
  for (let i = 1; i < path.length; i++) {
    const a0 = Math.atan2(path[i - 1]![1] - centre[1], path[i - 1]![0] - centre[0]);
    const a1 = Math.atan2(path[i]![1] - centre[1], path[i]![0] - centre[0]);
    let d = a1 - a0;
    if (d > Math.PI) d -= 2 * Math.PI;
    if (d < -Math.PI) d += 2 * Math.PI;
    total += d;
  }
  return total;
}

/** Detour mode of an end-effector path around the central obstacle ('none' if it did not go around). */
export function detourMode(path: readonly Vec2[], centre: Vec2): DetourMode {
  return modeFromSweep(sweptAngleAround(path, centre), true);
}

function modeFromSweep(swept: number, hasCentral: boolean): DetourMode {
  if (!hasCentral || Math.abs(swept) < Math.PI / 4) return 'none';
  return swept < 0 ? 'left' : 'right';
}

function centralObstacle(observation: ArrayLike<number>): Obstacle | undefined {
  const k = OBS_LAYOUT.obstacles;
  const radius = observation[k + 2]!;
  return radius > 0 ? { x: observation[k]!, y: observation[k + 1]!, radius } : undefined;
}

/** Virtual wall from the obstacle surface outward on `blocked` side (left = +90 deg from base->obstacle). */
function wallBlocking(blocked: DetourSide, o: Obstacle): [Vec2, Vec2] {
  const norm = Math.hypot(o.x, o.y) || 1;
  const sign = blocked === 'left' ? 1 : -1;
  const nx = (-o.y / norm) * sign;
  const ny = (o.x / norm) * sign;
  return [
    [o.x + nx * o.radius, o.y + ny * o.radius],
    [o.x + nx * (o.radius + WALL_LENGTH), o.y + ny * (o.radius + WALL_LENGTH)],
  ];
}

function armProblem(obstacles: readonly Obstacle[], walls: readonly [Vec2, Vec2][], margin: number): PlanningProblem {
  const jointMargin = 0.02;
  return {
    lower: JOINT_LIMITS.map((l) => l[0] + jointMargin),
    upper: JOINT_LIMITS.map((l) => l[1] - jointMargin),
    resolution: 0.02,
    isValid(q: readonly number[]): boolean {
      if (!withinJointLimits(q, jointMargin)) return false;
      const points = forwardKinematics(q);
      if (pointsClearance(points, obstacles) < margin) return false;
      for (const [a, b] of walls) {
        for (let i = 0; i < 3; i++) {
          if (segmentSegmentDistance(points[i]!, points[i + 1]!, a, b) < LINK_RADIUS + WALL_CLEARANCE) return false;
        }
      }
      return true;
    },
  };
}

/** Valid IK solutions for the target, nearest (joint-space) to `start` first. */
function goalConfigurations(target: Vec2, problem: PlanningProblem, start: readonly number[]): number[][] {
  const goals: { q: number[]; d: number }[] = [];
  for (let i = 0; i < PHI_SAMPLES; i++) {
    const phi = -Math.PI + (2 * Math.PI * i) / PHI_SAMPLES;
    for (const elbow of [1, -1] as const) {
      const q = inverseKinematics(target, phi, elbow);
      if (q === null || !problem.isValid(q)) continue;
      goals.push({ q, d: Math.hypot(q[0] - start[0]!, q[1] - start[1]!, q[2] - start[2]!) });
    }
  }
  return goals.sort((a, b) => a.d - b.d).map((g) => g.q);
}

function positive(v: number, name: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
    throw new RangeError(`planArmReach: ${name} must be a positive finite number, got ${String(v)}`);
  }
  return v;
}

// ---------------------------------------------------------------------------------------------
// Demonstration collection
// ---------------------------------------------------------------------------------------------

export interface ArmReachDemo {
  /** Observations o_0 .. o_T (one more than actions; the last is the final observation). */
  readonly observations: Float64Array[];
  /** Actions a_0 .. a_{T-1} actually sent to the environment. */
  readonly actions: Float64Array[];
  readonly rewards: number[];
  /** Detour side measured from the executed end-effector path ('none' if planning failed). */
  readonly mode: DetourMode;
  /** Reached the target without ever touching an obstacle. */
  readonly success: boolean;
  /** Reset seed of the episode. */
  readonly seed: number;
}

export interface CollectDemosOptions {
  readonly episodes: number;
  readonly seed: number;
  /** Clearance (m) the planner keeps from obstacles beyond touching (default 0.02, see planArmReach). */
  readonly safetyMargin?: number;
  /**
   * Perturb the executed actions (DART, Laskey et al. 2017): the environment receives the
   * expert's action plus noise, the recorded action is the expert's own, so the demonstrations
   * show how the expert recovers from states slightly off its path. Default: no noise.
   */
  readonly actionNoise?: ActionNoise;
}

/** Gaussian noise on executed actions, AR(1)-correlated over the steps of an episode. */
export interface ActionNoise {
  /** Standard deviation per action entry, in action units (rad/s for velocity actions, rad for position). */
  readonly std: number;
  /** Step-to-step correlation in [0, 1) (0: independent draws). Default 0. */
  readonly correlation?: number;
}

function checkActionNoise(noise: ActionNoise | undefined, where: string): void {
  if (noise === undefined) return;
  if (noise === null || typeof noise !== 'object') throw new TypeError(`${where}: actionNoise must be { std, correlation? }`);
  if (!(typeof noise.std === 'number' && Number.isFinite(noise.std) && noise.std >= 0)) {
    throw new RangeError(`${where}: actionNoise.std must be a finite number >= 0, got ${String(noise.std)}`);
  }
  const c = noise.correlation ?? 0;
  if (!(typeof c === 'number' && c >= 0 && c < 1)) throw new RangeError(`${where}: actionNoise.correlation must be in [0, 1), got ${String(noise.correlation)}`);
}

/**
 * Roll out the expert in `env` (closed loop: each action steers towards the next planned waypoint
 * from the measured joint angles). Episode i resets with a seed derived from `seed`.
 */
export function collectDemos(env: ArmReachEnv, options: CollectDemosOptions): ArmReachDemo[] {
  if (env === null || typeof env !== 'object' || env.name !== 'arm-reach') {
    throw new TypeError('collectDemos: env must be an ArmReachEnv');
  }
  if (!Number.isInteger(options?.episodes) || options.episodes <= 0) {
    throw new RangeError(`collectDemos: options.episodes must be a positive integer, got ${String(options?.episodes)}`);
  }
  if (!Number.isInteger(options.seed)) throw new TypeError(`collectDemos: options.seed must be an integer, got ${String(options.seed)}`);
  const margin = options.safetyMargin;
  if (margin !== undefined && !(typeof margin === 'number' && margin >= 0 && margin <= 0.2)) {
    throw new RangeError(`collectDemos: options.safetyMargin must be a number in [0, 0.2] m, got ${String(margin)}`);
  }
  checkActionNoise(options.actionNoise, 'collectDemos');
  const noisy = options.actionNoise !== undefined && options.actionNoise.std > 0;
  const master = new EnvRng(options.seed);
  const demos: ArmReachDemo[] = [];
  for (let e = 0; e < options.episodes; e++) {
    const seed = master.int(0, 0x7fffffff);
    const rng = new EnvRng(master.int(0, 0x7fffffff));
    // Noise draws come from their own stream (drawn only when noise is on, so noiseless
    // collections are unchanged by the option's existence).
    const noise = noisy ? { ...options.actionNoise!, rng: new EnvRng(master.int(0, 0x7fffffff)) } : undefined;
    const obs = env.reset({ seed });
    const plan = planArmReach(obs, { rng, dt: env.dt, maxSpeed: 0.75 * env.maxJointSpeed, actionMode: env.actionMode, safetyMargin: margin });
    demos.push({ ...trackPlan(env, obs, plan, noise), seed });
  }
  return demos;
}

/**
 * Execute a plan closed loop from the env's current state (`obs` is its observation): each
 * action steers towards the next planned waypoint from the measured joint angles. A null plan
 * gives an empty, unsuccessful episode. With `noise`, the environment receives the action plus
 * AR(1) Gaussian noise (clipped to the joint speed limit for velocity actions) while the
 * returned actions are the expert's own.
 */
export function trackPlan(env: ArmReachEnv, obs: Float64Array, plan: ArmReachPlan | null, noise?: ActionNoise & { readonly rng: EnvRng }): Omit<ArmReachDemo, 'seed'> {
  checkActionNoise(noise, 'trackPlan');
  if (noise !== undefined && !(noise.rng instanceof EnvRng)) throw new TypeError('trackPlan: noise.rng must be an EnvRng');
  const observations = [obs];
  const actions: Float64Array[] = [];
  const rewards: number[] = [];
  if (plan === null) return { observations, actions, rewards, mode: 'none', success: false };

  const goal = plan.waypoints[plan.waypoints.length - 1]!;
  const limit = env.maxJointSpeed;
  let success = false;
  let collided = false;
  const rho = noise?.correlation ?? 0;
  const innovation = noise === undefined ? 0 : noise.std * Math.sqrt(1 - rho * rho);
  const drift = new Float64Array(3);
  for (let k = 0; k < env.maxSteps; k++) {
    const next = plan.waypoints[Math.min(k + 1, plan.waypoints.length - 1)] ?? goal;
    const q = obs.subarray(OBS_LAYOUT.q, OBS_LAYOUT.q + 3);
    const action = env.actionMode === 'position'
      ? Float64Array.from(next)
      : next.map((w, j) => Math.max(-limit, Math.min(limit, (w - q[j]!) / env.dt)));
    let executed = action;
    if (noise !== undefined && noise.std > 0) {
      // Stationary from the first step: the first draw has the full standard deviation.
      for (let j = 0; j < 3; j++) drift[j] = k === 0 ? noise.std * noise.rng.normal() : rho * drift[j]! + innovation * noise.rng.normal();
      executed = action.map((a, j) => a + drift[j]!);
      if (env.actionMode === 'velocity') executed = executed.map((a) => Math.max(-limit, Math.min(limit, a)));
    }
    const result = env.step(executed);
    actions.push(action);
    rewards.push(result.reward);
    observations.push(result.observation);
    obs = result.observation;
    collided ||= result.info.collision === true;
    if (result.terminated) {
      success = !collided;
      break;
    }
    if (result.truncated) break;
  }
  const eePath: Vec2[] = observations.map((o) => [o[OBS_LAYOUT.ee]!, o[OBS_LAYOUT.ee + 1]!]);
  const k = OBS_LAYOUT.obstacles;
  const mode = detourMode(eePath, [observations[0]![k]!, observations[0]![k + 1]!]);
  return { observations, actions, rewards, mode, success };
}
