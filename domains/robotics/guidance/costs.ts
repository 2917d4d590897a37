/**
 * Differentiable action-chunk costs for Diffuser-style guidance of a Diffusion Policy
 * (see ChunkCost / CostTerm in ../policy/policy.ts): each factory returns a function of raw
 * action chunks [B, Tp, A] and the observation windows, giving one cost per chunk [B]
 * (lower is better). Everything on the actions path is a tfjs op, so the policy can
 * differentiate the cost through the denoiser; the observations are plain numbers and only
 * shape constants. Each cost runs inside its own tf.tidy, so it returns exactly one new tensor
 * whether or not the caller tidies.
 *
 * Time convention (Diffusion Policy): with To observation frames in a row of ctx.obs, chunk step
 * k is the action at time t - To + 1 + k, where t is the latest observation's time. Steps
 * k < To - 1 lie in the past and are never executed, so the state costs (forbidden regions,
 * obstacles, joint and workspace limits) only look at the steps k >= To - 1; smoothness spans
 * the whole chunk (continuity with the already executed actions).
 *
 * arm-reach kinematics along the chunk (velocity actions, rad/s, held for dt each, clamped to the
 * environment's joint speed bound as the environment clamps them):
 *   q_k = q_t + dt * sum_{j = To-1}^{k} clamp(a_j)   for k >= To - 1,   q_k = q_t before;
 * position actions (joint targets) are taken as the joint positions themselves.
 */
import * as tf from '@tensorflow/tfjs-core';
import { checkNumber, checkOneOf, fail } from '../../../src/util/validate.js';
import { JOINT_LIMITS, LINK_LENGTHS, LINK_RADIUS, type Obstacle } from '../env/armReachKinematics.js';
import { MAX_OBSTACLES, OBS_LAYOUT } from '../env/armReachSpec.js';
import { PUSHT_AGENT_RADIUS, PUSHT_PD, PUSHT_SIZE } from '../env/pusht.js';
import { GUIDE_MODES, type ChunkCost, type CostTerm, type GuideMode } from '../policy/policy.js';

/** A circle in the environment's units: Push-T pixels, arm-reach metres. */
export interface Circle {
  readonly x: number;
  readonly y: number;
  readonly r: number;
}

/** Either circle spelling: {x, y, r} (evaluation constraints) or {x, y, radius} (arm-reach Obstacle). */
export type CircleLike = Circle | Obstacle;

/** Control period of arm-reach (s): each velocity action is held for this long. */
export const ARM_DT = 0.1;

export type ArmActionMode = 'velocity' | 'position';

/** How arm-reach actions map to joint positions along the chunk. */
export interface ArmKinematicsOptions {
  /** Control period (s) for velocity actions. Default ARM_DT = 0.1. */
  readonly dt?: number;
  /** 'velocity' (joint speeds, the default) or 'position' (absolute joint targets). */
  readonly actionMode?: ArmActionMode;
  /**
   * Velocity actions: the environment clamps each joint speed to +-maxJointSpeed (rad/s), so the
   * trajectory model does too (no gradient flows through a clamped entry). Default
   * ARM_MAX_JOINT_SPEED = 2, the environment's default.
   */
  readonly maxJointSpeed?: number;
}

/** arm-reach's default joint speed bound (rad/s), see ArmReachOptions.maxJointSpeed. */
export const ARM_MAX_JOINT_SPEED = 2;

/** Squared-distance regulariser of the smooth distance sqrt(d^2 + eps), per unit system. */
const PUSHT_EPS = 1e-6; // px^2
const ARM_EPS = 1e-10; // m^2

interface ChunkInfo {
  readonly B: number;
  readonly Tp: number;
  readonly A: number;
  /** Observation frames per batch row (To_b). */
  readonly to: readonly number[];
  readonly obs: readonly (readonly ArrayLike<number>[])[];
}

/** Validates the actions tensor and the observation windows (shapes only; no tensor data is read). */
function chunkInfo(name: string, actions: tf.Tensor, ctx: { readonly obs: readonly ArrayLike<number>[][] }, actionDim?: number): ChunkInfo {
  if (!(actions instanceof tf.Tensor)) fail(`${name}: actions must be a tensor [B, Tp, A], received ${typeof actions}`);
  if (actions.rank !== 3) fail(`${name}: actions must have shape [B, Tp, A], received [${actions.shape.join(', ')}]`);
  const [B, Tp, A] = actions.shape as [number, number, number];
  if (actionDim !== undefined && A !== actionDim) fail(`${name}: expected ${actionDim} numbers per action, received actions of shape [${actions.shape.join(', ')}]`);
  if (!ctx || typeof ctx !== 'object' || !Array.isArray(ctx.obs)) fail(`${name}: ctx.obs must be an array of observation windows (one per batch row)`);
  if (ctx.obs.length !== B) fail(`${name}: ctx.obs has ${ctx.obs.length} observation windows, the actions have batch size ${B}`);
  const to = ctx.obs.map((w, b) => {
    if (!Array.isArray(w) || w.length === 0) fail(`${name}: ctx.obs[${b}] must be a non-empty array of observation frames (oldest first)`);
    if (w.length > Tp) fail(`${name}: ctx.obs[${b}] has ${w.length} frames, more than the chunk length Tp = ${Tp}`);
    return w.length;
  });
  return { B, Tp, A, to, obs: ctx.obs };
}

/** [B, Tp]: 1 at the steps k >= To_b - 1 (present and future), 0 at past steps. */
function futureMask(info: ChunkInfo): tf.Tensor2D {
  const m = new Float32Array(info.B * info.Tp);
  info.to.forEach((to, b) => m.fill(1, b * info.Tp + to - 1, (b + 1) * info.Tp));
  return tf.tensor2d(m, [info.B, info.Tp]);
}

/** A tensor equal to zero per row that stays connected to `actions` (so gradients exist and are 0). */
function zeroCost(actions: tf.Tensor): tf.Tensor1D {
  return tf.add(tf.mul(tf.sum(actions, [1, 2]), 0), 0) as tf.Tensor1D; // + 0 turns -0 into 0
}

function lastFrame(name: string, info: ChunkInfo, b: number, size: number): ArrayLike<number> {
  const w = info.obs[b]!;
  const f = w[w.length - 1];
  if (!f || typeof f !== 'object' || f.length !== size) fail(`${name}: the last frame of ctx.obs[${b}] must have ${size} entries, received ${f?.length}`);
  for (let i = 0; i < size; i++) if (!Number.isFinite(f[i])) fail(`${name}: ctx.obs[${b}] last frame entry ${i} is not finite (${f[i]})`);
  return f;
}

function checkCircle(c: unknown, where: string, allowZero = false): Circle {
  if (c === null || typeof c !== 'object') fail(`${where}: expected a circle {x, y, r}, received ${String(c)}`);
  const o = c as Record<string, unknown>;
  const r = 'r' in o ? o.r : o.radius;
  if (typeof o.x !== 'number' || !Number.isFinite(o.x)) fail(`${where}.x: expected a finite number, received ${String(o.x)}`);
  if (typeof o.y !== 'number' || !Number.isFinite(o.y)) fail(`${where}.y: expected a finite number, received ${String(o.y)}`);
  if (typeof r !== 'number' || !Number.isFinite(r) || r < 0 || (!allowZero && r === 0)) {
    fail(`${where}.r: expected a finite radius ${allowZero ? '>= 0' : '> 0'}, received ${String(r)}`);
  }
  return { x: o.x, y: o.y, r };
}

function checkCircles(list: unknown, where: string): Circle[] {
  if (!Array.isArray(list)) fail(`${where}: expected an array of circles {x, y, r}, received ${typeof list}`);
  return list.map((c, i) => checkCircle(c, `${where}[${i}]`));
}

interface ArmKinematics {
  readonly dt: number;
  readonly mode: ArmActionMode;
  readonly maxSpeed: number;
}

function checkArmKinematics(name: string, opts: ArmKinematicsOptions): ArmKinematics {
  const dt = checkNumber(`${name}: dt`, opts.dt ?? ARM_DT);
  if (!(dt > 0)) fail(`${name}: dt must be > 0 seconds, received ${dt}`);
  const mode = checkOneOf(`${name}: actionMode`, opts.actionMode ?? 'velocity', ['velocity', 'position'] as const);
  const maxSpeed = checkNumber(`${name}: maxJointSpeed`, opts.maxJointSpeed ?? ARM_MAX_JOINT_SPEED);
  if (!(maxSpeed > 0)) fail(`${name}: maxJointSpeed must be > 0 rad/s, received ${maxSpeed}`);
  return { dt, mode, maxSpeed };
}

// ---------------------------------------------------------------------------------------------
// Push-T

export interface PushtForbiddenRegionOptions {
  /** Forbidden discs (pixels). An empty list gives a zero cost. */
  readonly circles: readonly Circle[];
  /**
   * Extra clearance (pixels) between agent targets and each circle; the agent disc has radius
   * PUSHT_AGENT_RADIUS = 15, so margin >= 15 keeps the disc itself out when the agent tracks
   * its target.
   */
  readonly margin: number;
  /**
   * What must stay out of the circles: 'targets' (default), the commanded targets a_k
   * themselves; 'path', the agent's own path under the environment's PD controller (kp = 100,
   * kv = 20, 100 Hz), simulated from the current agent position and velocity through the chunk's
   * targets, at every 1/100 s substep. The agent lags its targets (after one 0.1 s control step it
   * has covered about a quarter of a step change), so targets that go round a circle can still
   * pull the agent across it; 'path' sees that. The agent is kinematic in the environment, so
   * the path is exact up to the velocity estimate (the last two observed positions over 0.1 s).
   */
  readonly model?: 'targets' | 'path';
}

/** Push-T PD controller and rates (the environment's). */
const { kp: PUSHT_KP, kv: PUSHT_KV, substeps: PUSHT_SUBSTEPS, controlDt: PUSHT_CONTROL_DT } = PUSHT_PD;

/**
 * Linear response of the PD-driven agent (one axis) over the chunk's rows from `start` on, at
 * every substep: position_n = cp[n] p0 + cv[n] v0 + sum_k g[n, k] u_k, n over Tp * SUBSTEPS
 * substeps (substep n ends at time (n + 1) / 100 s after row 0's start). Before row `start` the
 * agent stays at p0 (those substeps are masked out of the cost).
 */
function pushtPdResponse(Tp: number, start: number): { cp: Float64Array; cv: Float64Array; g: Float64Array } {
  const N = Tp * PUSHT_SUBSTEPS;
  const h = PUSHT_CONTROL_DT / PUSHT_SUBSTEPS;
  const run = (p0: number, v0: number, u: (k: number) => number): Float64Array => {
    const out = new Float64Array(N);
    let p = p0;
    let v = v0;
    for (let n = 0; n < N; n++) {
      const k = Math.floor(n / PUSHT_SUBSTEPS);
      if (k >= start) {
        v += (PUSHT_KP * (u(k) - p) - PUSHT_KV * v) * h;
        p += v * h;
      }
      out[n] = p;
    }
    return out;
  };
  const cp = run(1, 0, () => 0);
  const cv = run(0, 1, () => 0).map((x, n) => (Math.floor(n / PUSHT_SUBSTEPS) >= start ? x : 0));
  const g = new Float64Array(N * Tp);
  for (let k = start; k < Tp; k++) {
    const col = run(0, 0, (j) => (j === k ? 1 : 0));
    for (let n = 0; n < N; n++) g[n * Tp + k] = col[n]!;
  }
  return { cp, cv, g };
}

const pdCache = new Map<string, ReturnType<typeof pushtPdResponse>>();
function pushtPd(Tp: number, start: number): ReturnType<typeof pushtPdResponse> {
  const key = `${Tp}/${start}`;
  let r = pdCache.get(key);
  if (!r) pdCache.set(key, (r = pushtPdResponse(Tp, start)));
  return r;
}

/**
 * The agent's path [B, Tp * 10, 2] under the PD controller through the targets `actions`
 * [B, Tp, 2], from each window's last observed position (velocity from the last two frames), and
 * the mask [B, Tp * 10] of substeps at or after the present row (To - 1). Differentiable in the
 * actions (the path is linear in them).
 */
export function pushtAgentPath(actions: tf.Tensor, ctx: { readonly obs: readonly ArrayLike<number>[][] }): { path: tf.Tensor3D; mask: tf.Tensor2D } {
  const name = 'pushtAgentPath';
  const info = chunkInfo(name, actions, ctx, 2);
  const { B, Tp } = info;
  const N = Tp * PUSHT_SUBSTEPS;
  const G = new Float32Array(B * N * Tp);
  const free = new Float32Array(B * N * 2);
  const mask = new Float32Array(B * N);
  for (let b = 0; b < B; b++) {
    const to = info.to[b]!;
    const now = lastFrame(name, info, b, info.obs[b]![to - 1]!.length);
    const prev = to >= 2 ? info.obs[b]![to - 2]! : now;
    if (now.length < 2 || prev.length < 2 || !Number.isFinite(prev[0]) || !Number.isFinite(prev[1])) fail(`${name}: ctx.obs[${b}] frames must start with a finite agent x, y`);
    const { cp, cv, g } = pushtPd(Tp, to - 1);
    G.set(g, b * N * Tp);
    for (let d = 0; d < 2; d++) {
      const p0 = now[d]!;
      const v0 = to >= 2 ? (now[d]! - prev[d]!) / PUSHT_CONTROL_DT : 0;
      for (let n = 0; n < N; n++) free[(b * N + n) * 2 + d] = cp[n]! * p0 + cv[n]! * v0;
    }
    mask.fill(1, b * N + (to - 1) * PUSHT_SUBSTEPS, (b + 1) * N);
  }
  return tf.tidy(() => {
    const path = tf.add(tf.matMul(tf.tensor3d(G, [B, N, Tp]), actions as tf.Tensor3D), tf.tensor3d(free, [B, N, 2])) as tf.Tensor3D;
    return { path, mask: tf.tensor2d(mask, [B, N]) };
  });
}

/**
 * Push-T: sum over the present/future chunk steps (or, with model 'path', the agent's simulated
 * path) and circles of relu(r + margin - |x - c|)^2, with the smooth distance
 * sqrt(|x - c|^2 + eps). Actions are absolute agent targets [B, Tp, 2].
 */
export function pushtForbiddenRegion(opts: PushtForbiddenRegionOptions): ChunkCost {
  const name = 'pushtForbiddenRegion';
  if (!opts || typeof opts !== 'object') fail(`${name}: expected options { circles, margin }`);
  const circles = checkCircles(opts.circles, `${name}: circles`);
  const margin = checkNumber(`${name}: margin`, opts.margin, { min: 0 });
  const centers = new Float32Array(circles.flatMap((c) => [c.x, c.y]));
  const reach = new Float32Array(circles.map((c) => c.r + margin));
  const model = checkOneOf(`${name}: model`, opts.model ?? 'targets', ['targets', 'path'] as const);
  return (actions, ctx) => {
    const info = chunkInfo(name, actions, ctx, 2);
    return tf.tidy(() => {
      if (circles.length === 0) return zeroCost(actions);
      const N = circles.length;
      const { points, mask } = model === 'path' ? (({ path, mask }) => ({ points: path, mask }))(pushtAgentPath(actions, ctx)) : { points: actions, mask: futureMask(info) };
      const c = tf.tensor4d(centers, [1, 1, N, 2]);
      const diff = tf.sub(tf.expandDims(points, 2), c); // [B, S, N, 2]
      const dist = tf.sqrt(tf.add(tf.sum(tf.square(diff), -1), PUSHT_EPS)); // [B, S, N]
      const viol = tf.relu(tf.sub(tf.tensor3d(reach, [1, 1, N]), dist));
      const perStep = tf.sum(tf.square(viol), -1); // [B, S]
      return tf.sum(tf.mul(perStep, mask), 1);
    });
  };
}

/**
 * Evaluation: number of steps at which the real agent disc (radius `agentRadius`, default 15 px)
 * intersects one of the circles. `agentPositions` holds one [x, y, ...] per step (raw Push-T
 * observations work: their first two entries are the agent position).
 */
export function pushtRegionViolations(agentPositions: readonly ArrayLike<number>[], circles: readonly Circle[], agentRadius: number = PUSHT_AGENT_RADIUS): number {
  const name = 'pushtRegionViolations';
  if (!Array.isArray(agentPositions)) fail(`${name}: agentPositions must be an array of [x, y] positions`);
  const cs = checkCircles(circles, `${name}: circles`);
  const rad = checkNumber(`${name}: agentRadius`, agentRadius, { min: 0 });
  let n = 0;
  agentPositions.forEach((p, i) => {
    if (!p || typeof p !== 'object' || p.length < 2 || !Number.isFinite(p[0]) || !Number.isFinite(p[1])) {
      fail(`${name}: agentPositions[${i}] must start with a finite [x, y], received ${p === null || typeof p !== 'object' ? String(p) : `length ${p.length}`}`);
    }
    if (cs.some((c) => Math.hypot(p[0]! - c.x, p[1]! - c.y) < c.r + rad)) n++;
  });
  return n;
}

// ---------------------------------------------------------------------------------------------
// Generic

/** Sum over the chunk of squared first differences |a_{k+1} - a_k|^2 (any environment). */
export function smoothness(): ChunkCost {
  return (actions, ctx) => {
    const info = chunkInfo('smoothness', actions, ctx);
    return tf.tidy(() => {
      if (info.Tp < 2) return zeroCost(actions);
      const d = tf.sub(tf.slice(actions, [0, 1, 0], [-1, -1, -1]), tf.slice(actions, [0, 0, 0], [-1, info.Tp - 1, -1]));
      return tf.sum(tf.square(d), [1, 2]);
    });
  };
}

export interface WorkspaceLimitsOptions {
  /** Per action dimension lower bounds. */
  readonly low: readonly number[];
  /** Per action dimension upper bounds (> low). */
  readonly high: readonly number[];
}

/**
 * Box limits for absolute-position actions (e.g. Push-T targets in [0, 512]^2): sum over the
 * present/future steps of relu(low - a)^2 + relu(a - high)^2.
 */
export function workspaceLimits(opts: WorkspaceLimitsOptions): ChunkCost {
  const name = 'workspaceLimits';
  if (!opts || typeof opts !== 'object') fail(`${name}: expected options { low, high }`);
  const { low, high } = opts;
  if (!Array.isArray(low) || low.length === 0) fail(`${name}: low must be a non-empty array of numbers`);
  if (!Array.isArray(high) || high.length !== low.length) fail(`${name}: high must be an array of ${low.length} numbers (like low), received ${Array.isArray(high) ? high.length : typeof high}`);
  low.forEach((l, i) => {
    checkNumber(`${name}: low[${i}]`, l);
    checkNumber(`${name}: high[${i}]`, high[i]);
    if (!(high[i]! > l)) fail(`${name}: high[${i}] = ${high[i]} must be greater than low[${i}] = ${l}`);
  });
  const A = low.length;
  const lo = Float32Array.from(low);
  const hi = Float32Array.from(high);
  return (actions, ctx) => {
    const info = chunkInfo(name, actions, ctx, A);
    return tf.tidy(() => {
      const below = tf.relu(tf.sub(tf.tensor1d(lo), actions));
      const above = tf.relu(tf.sub(actions, tf.tensor1d(hi)));
      const perStep = tf.sum(tf.add(tf.square(below), tf.square(above)), -1); // [B, Tp]
      return tf.sum(tf.mul(perStep, futureMask(info)), 1);
    });
  };
}

// ---------------------------------------------------------------------------------------------
// arm-reach

/**
 * Differentiable planar forward kinematics: joint angles [..., 3] -> joint positions [..., 4, 2]
 * (base, elbow 1, elbow 2, end effector), matching armReachKinematics.forwardKinematics.
 */
export function armForwardKinematics(q: tf.Tensor): tf.Tensor {
  if (!(q instanceof tf.Tensor) || q.rank < 1 || q.shape[q.rank - 1] !== 3) {
    fail(`armForwardKinematics: q must be a tensor [..., 3], received ${q instanceof tf.Tensor ? `[${q.shape.join(', ')}]` : typeof q}`);
  }
  return tf.tidy(() => armLinks(q).points);
}

/** Absolute link angles, unit link directions [..., 3, 2] and joint positions [..., 4, 2]. */
function armLinks(q: tf.Tensor): { dirs: tf.Tensor; points: tf.Tensor } {
  const [q1, q2, q3] = tf.split(q, 3, -1); // each [..., 1]
  const t1 = q1!;
  const t2 = tf.add(t1, q2!);
  const t3 = tf.add(t2, q3!);
  const theta = tf.concat([t1, t2, t3], -1); // [..., 3]
  const c = tf.cos(theta);
  const s = tf.sin(theta);
  const dirs = tf.stack([c, s], -1); // [..., 3, 2]
  const lengths = tf.tensor1d(LINK_LENGTHS as unknown as number[]);
  const lx = tf.mul(c, lengths);
  const ly = tf.mul(s, lengths);
  const cum = (v: tf.Tensor): tf.Tensor => {
    const [v1, v2, v3] = tf.split(v, 3, -1);
    const p1 = v1!;
    const p2 = tf.add(p1, v2!);
    const p3 = tf.add(p2, v3!);
    return tf.concat([tf.zerosLike(p1), p1, p2, p3], -1); // [..., 4]
  };
  const points = tf.stack([cum(lx), cum(ly)], -1); // [..., 4, 2]
  return { dirs, points };
}

/** Predicted joint positions q_k [B, Tp, 3] along the chunk (see the module comment). */
export function armJointTrajectory(actions: tf.Tensor, ctx: { readonly obs: readonly ArrayLike<number>[][] }, opts: ArmKinematicsOptions = {}): tf.Tensor {
  const name = 'armJointTrajectory';
  const kin = checkArmKinematics(name, opts);
  const info = chunkInfo(name, actions, ctx, 3);
  const plan = planTrajectory(name, info, kin);
  return tf.tidy(() => jointTrajectory(actions, info, plan));
}

/**
 * Plain-number constants of the joint trajectory (validated here, before any tensor work), at
 * R = Tp * S rows: with S substeps per control period, row (k, s), s = 1..S, is the pose a
 * fraction s / S of the way through executing chunk step k, so the costs see the swept path
 * and not only the poses at the control instants (S = 1: row k is q_k).
 *   q = w0 * q_t + M @ a
 */
interface TrajectoryPlan {
  readonly rows: number;
  /** Velocity actions are clamped to +-clamp before integration (Infinity: no clamp). */
  readonly clamp: number;
  /** [B, R, Tp]. Velocity actions: dt for To_b - 1 <= j < k and dt * s / S at j = k. Position actions: linear interpolation between consecutive targets. */
  readonly m: Float32Array;
  /** [B, R]: weight of q_t (1 for velocity actions; 1 - s / S at k = To_b - 1 for position actions). */
  readonly w0: Float32Array;
  /** [B, 3]: q_t from each row's last observation frame. */
  readonly q0: Float32Array;
  /** [B, R]: 1 / S at the rows of steps k >= To_b - 1 (present and future), 0 at past steps. */
  readonly mask: Float32Array;
}

function planTrajectory(name: string, info: ChunkInfo, kin: ArmKinematics, substeps = 1): TrajectoryPlan {
  const { B, Tp } = info;
  const S = substeps;
  const R = Tp * S;
  const m = new Float32Array(B * R * Tp);
  const w0 = new Float32Array(B * R);
  const q0 = new Float32Array(B * 3);
  const mask = new Float32Array(B * R);
  info.to.forEach((to, b) => {
    const f = lastFrame(name, info, b, OBS_LAYOUT.size);
    for (let j = 0; j < 3; j++) q0[b * 3 + j] = f[OBS_LAYOUT.q + j]!;
    for (let k = 0; k < Tp; k++) {
      for (let s = 1; s <= S; s++) {
        const r = b * R + k * S + s - 1;
        const frac = s / S;
        const row = r * Tp;
        if (kin.mode === 'velocity') {
          w0[r] = 1;
          if (k >= to - 1) {
            m.fill(kin.dt, row + to - 1, row + k);
            m[row + k] = kin.dt * frac;
          }
        } else {
          // Position actions are the joint targets themselves; between two control instants the
          // pose moves from the previous target (q_t before the first executed one) to this one.
          m[row + k] = frac;
          if (frac < 1) {
            if (k > to - 1) m[row + k - 1] = 1 - frac;
            else if (k === to - 1) w0[r] = 1 - frac;
            else m[row + k] = 1; // past steps: masked out anyway
          }
        }
        if (k >= to - 1) mask[r] = 1 / S;
      }
    }
  });
  return { rows: R, m, w0, q0, mask, clamp: kin.mode === 'velocity' ? kin.maxSpeed : Infinity };
}

function jointTrajectory(actions: tf.Tensor, info: ChunkInfo, plan: TrajectoryPlan): tf.Tensor {
  const { B, Tp } = info;
  const base = tf.mul(tf.tensor3d(plan.w0, [B, plan.rows, 1]), tf.tensor3d(plan.q0, [B, 1, 3]));
  const a = Number.isFinite(plan.clamp) ? tf.clipByValue(actions, -plan.clamp, plan.clamp) : actions;
  return tf.add(base, tf.matMul(tf.tensor3d(plan.m, [B, plan.rows, Tp]), a));
}

function planMask(info: ChunkInfo, plan: TrajectoryPlan): tf.Tensor2D {
  return tf.tensor2d(plan.mask, [info.B, plan.rows]);
}

export interface ArmObstacleClearanceOptions extends ArmKinematicsOptions {
  /** Required clearance (m) between the link capsules and each obstacle. */
  readonly margin: number;
  /**
   * Obstacles not in the observations (m), e.g. novel constraints known to the planner. Entries
   * equal to an obstacle already in a row's last observation frame are not counted twice.
   */
  readonly extraObstacles?: readonly CircleLike[];
  /**
   * Poses checked per control period (default 1: only the poses at the control instants). A
   * velocity-driven arm can sweep a link through a small obstacle between two instants (at
   * 2 rad/s a joint turns 0.2 rad per 0.1 s step, 18 cm at full reach), so 4 is safer.
   */
  readonly substeps?: number;
}

/**
 * arm-reach obstacle avoidance: with FK of the predicted joint trajectory, sum over the
 * present/future steps, links and obstacles of relu(r + LINK_RADIUS + margin - dist)^2, where
 * dist is the exact (smoothed) distance from the obstacle centre to the link segment. Obstacles
 * are those present in each row's LAST observation frame (slots with r = 0 are skipped) plus
 * `extraObstacles`.
 */
export function armObstacleClearance(opts: ArmObstacleClearanceOptions): ChunkCost {
  const name = 'armObstacleClearance';
  if (!opts || typeof opts !== 'object') fail(`${name}: expected options { margin, extraObstacles? }`);
  const margin = checkNumber(`${name}: margin`, opts.margin, { min: 0 });
  const extra = checkCircles(opts.extraObstacles ?? [], `${name}: extraObstacles`);
  const kin = checkArmKinematics(name, opts);
  const substeps = checkNumber(`${name}: substeps`, opts.substeps ?? 1, { integer: true, min: 1, max: 32 });
  return (actions, ctx) => {
    const info = chunkInfo(name, actions, ctx, 3);
    const plan = planTrajectory(name, info, kin, substeps);
    const perRow: Circle[][] = [];
    for (let b = 0; b < info.B; b++) {
      const f = lastFrame(name, info, b, OBS_LAYOUT.size);
      const list: Circle[] = [];
      for (let i = 0; i < MAX_OBSTACLES; i++) {
        const k = OBS_LAYOUT.obstacles + 3 * i;
        const r = f[k + 2]!;
        if (r > 0) list.push({ x: f[k]!, y: f[k + 1]!, r });
      }
      const same = (a: Circle, c: Circle): boolean => Math.abs(a.x - c.x) < 1e-6 && Math.abs(a.y - c.y) < 1e-6 && Math.abs(a.r - c.r) < 1e-6;
      const observed = list.length;
      for (const e of extra) if (!list.slice(0, observed).some((o) => same(o, e))) list.push(e);
      perRow.push(list);
    }
    const M = Math.max(0, ...perRow.map((l) => l.length));
    if (M === 0) return tf.tidy(() => zeroCost(actions));
    const reachOf = perRow.map((list) => list.map((o) => o.r + LINK_RADIUS + margin));
    const { B, Tp } = info;
    // The cost and its exact gradient in plain float64 loops, wrapped as one differentiable op:
    // the same computation as a graph of ~40 small tensor ops (x2 for the backward pass) spends
    // nearly all its time in per-op overhead on the WASM backend, and guidance evaluates it at
    // every sampler step for every candidate.
    const op = tf.customGrad(((a: tf.Tensor) => {
      const { cost, grad } = armObstacleCostAndGrad(a.dataSync() as Float32Array, B, Tp, plan, perRow, reachOf);
      return {
        value: tf.tensor1d(cost),
        gradFunc: (dy: tf.Tensor) => tf.mul(tf.reshape(dy, [B, 1, 1]), tf.tensor3d(grad, [B, Tp, 3])),
      };
    }) as unknown as Parameters<typeof tf.customGrad>[0]);
    return op(actions) as tf.Tensor1D;
  };
}

/**
 * Obstacle penalty of armObstacleClearance and its gradient with respect to the actions, row by
 * row. For link i (start p, unit direction u, length l) and obstacle centre c, the closest point
 * is x = p + s u with s = clamp((c - p) . u, 0, l) and d = sqrt(|c - x|^2 + eps); the penalty
 * relu(reach - d)^2 has d pen / d x = 2 v (c - x) / d with v = reach - d. s minimises the
 * distance (or sits at a bound), so x moves with the joint angles as if s were fixed:
 * d x / d theta_m = l_m u_perp(theta_m) for the links m before i and s u_perp(theta_i) for link i,
 * with absolute angles theta_m = q_1 + ... + q_m, and q = w0 q_t + M a gives d / d a = M^T d / d q.
 */
function armObstacleCostAndGrad(a: Float32Array, B: number, Tp: number, plan: TrajectoryPlan, obstacles: readonly (readonly Circle[])[], reach: readonly (readonly number[])[]): { cost: Float32Array; grad: Float32Array } {
  const R = plan.rows;
  const lim = plan.clamp;
  const cost = new Float32Array(B);
  const grad = new Float32Array(B * Tp * 3);
  const L = LINK_LENGTHS;
  const q = [0, 0, 0];
  const th = [0, 0, 0];
  const cs = [0, 0, 0];
  const sn = [0, 0, 0];
  const gth = [0, 0, 0];
  for (let b = 0; b < B; b++) {
    const list = obstacles[b]!;
    if (list.length === 0) continue;
    const rch = reach[b]!;
    let total = 0;
    for (let r = 0; r < R; r++) {
      const w = plan.mask[b * R + r]!;
      if (w === 0) continue;
      const row = (b * R + r) * Tp;
      const w0 = plan.w0[b * R + r]!;
      for (let j = 0; j < 3; j++) {
        let v = w0 * plan.q0[b * 3 + j]!;
        for (let k = 0; k < Tp; k++) {
          const m = plan.m[row + k]!;
          if (m !== 0) v += m * Math.min(Math.max(a[(b * Tp + k) * 3 + j]!, -lim), lim);
        }
        q[j] = v;
      }
      th[0] = q[0]!;
      th[1] = th[0] + q[1]!;
      th[2] = th[1] + q[2]!;
      for (let i = 0; i < 3; i++) {
        cs[i] = Math.cos(th[i]!);
        sn[i] = Math.sin(th[i]!);
      }
      gth[0] = gth[1] = gth[2] = 0;
      let px = 0;
      let py = 0;
      for (let i = 0; i < 3; i++) {
        const ux = cs[i]!;
        const uy = sn[i]!;
        for (let o = 0; o < list.length; o++) {
          const c = list[o]!;
          const wx = c.x - px;
          const wy = c.y - py;
          const s = Math.min(Math.max(wx * ux + wy * uy, 0), L[i]!);
          const ex = wx - s * ux; // c - x
          const ey = wy - s * uy;
          const d = Math.sqrt(ex * ex + ey * ey + ARM_EPS);
          const v = rch[o]! - d;
          if (v <= 0) continue;
          total += w * v * v;
          const gx = (2 * w * v * ex) / d; // d pen / d x
          const gy = (2 * w * v * ey) / d;
          for (let m = 0; m < i; m++) gth[m] += L[m]! * (-sn[m]! * gx + cs[m]! * gy);
          gth[i] += s * (-uy * gx + ux * gy);
        }
        px += L[i]! * ux;
        py += L[i]! * uy;
      }
      if (gth[0] === 0 && gth[1] === 0 && gth[2] === 0) continue;
      const gq = [gth[0]! + gth[1]! + gth[2]!, gth[1]! + gth[2]!, gth[2]!];
      for (let k = 0; k < Tp; k++) {
        const m = plan.m[row + k]!;
        if (m === 0) continue;
        for (let j = 0; j < 3; j++) {
          const x = a[(b * Tp + k) * 3 + j]!;
          if (x > -lim && x < lim) grad[(b * Tp + k) * 3 + j] += m * gq[j]!; // clamped entries do not move the arm
        }
      }
    }
    cost[b] = total;
  }
  return { cost, grad };
}

/** arm-reach: squared distance between the end effector at the last chunk step and the observed target. */
export function armGoalDistance(opts: ArmKinematicsOptions = {}): ChunkCost {
  const name = 'armGoalDistance';
  const kin = checkArmKinematics(name, opts ?? {});
  return (actions, ctx) => {
    const info = chunkInfo(name, actions, ctx, 3);
    const plan = planTrajectory(name, info, kin);
    const target = new Float32Array(info.B * 2);
    for (let b = 0; b < info.B; b++) {
      const f = lastFrame(name, info, b, OBS_LAYOUT.size);
      target[2 * b] = f[OBS_LAYOUT.target]!;
      target[2 * b + 1] = f[OBS_LAYOUT.target + 1]!;
    }
    return tf.tidy(() => {
      const q = jointTrajectory(actions, info, plan);
      const qLast = tf.slice(q, [0, info.Tp - 1, 0], [-1, 1, -1]); // [B, 1, 3]
      const ee = tf.reshape(tf.slice(armLinks(qLast).points, [0, 0, 3, 0], [-1, 1, 1, -1]), [info.B, 2]);
      return tf.sum(tf.square(tf.sub(ee, tf.tensor2d(target, [info.B, 2]))), 1);
    });
  };
}

export interface ArmJointLimitsOptions extends ArmKinematicsOptions {
  /** Distance (rad) to keep from each joint limit; below the smallest half range. */
  readonly margin: number;
}

/** arm-reach: sum over the present/future steps and joints of relu(|q_k - mid| - halfRange + margin)^2. */
export function armJointLimits(opts: ArmJointLimitsOptions): ChunkCost {
  const name = 'armJointLimits';
  if (!opts || typeof opts !== 'object') fail(`${name}: expected options { margin }`);
  const halves = JOINT_LIMITS.map(([lo, hi]) => (hi - lo) / 2);
  const minHalf = Math.min(...halves);
  const margin = checkNumber(`${name}: margin`, opts.margin, { min: 0 });
  if (margin >= minHalf) fail(`${name}: margin must be smaller than the smallest joint half range ${minHalf}, received ${margin}`);
  const kin = checkArmKinematics(name, opts);
  const mid = Float32Array.from(JOINT_LIMITS.map(([lo, hi]) => (lo + hi) / 2));
  const slack = Float32Array.from(halves.map((h) => h - margin));
  return (actions, ctx) => {
    const info = chunkInfo(name, actions, ctx, 3);
    const plan = planTrajectory(name, info, kin);
    return tf.tidy(() => {
      const q = jointTrajectory(actions, info, plan);
      const excess = tf.relu(tf.sub(tf.abs(tf.sub(q, tf.tensor1d(mid))), tf.tensor1d(slack)));
      const perStep = tf.sum(tf.square(excess), -1); // [B, Tp]
      return tf.sum(tf.mul(perStep, planMask(info, plan)), 1);
    });
  };
}

// ---------------------------------------------------------------------------------------------
// CLI specs

export const GUIDE_TERM_NAMES = ['obstacle', 'goal', 'smooth', 'limits', 'region'] as const;
export type GuideTermName = (typeof GUIDE_TERM_NAMES)[number];

/** Terms available per environment; any other environment gets 'smooth' only. */
const TERMS_BY_ENV: Record<string, readonly GuideTermName[]> = {
  pusht: ['region', 'smooth', 'limits'],
  'arm-reach': ['obstacle', 'goal', 'smooth', 'limits'],
};

/** Terms that are zero when their constraint holds (the ones projection mode applies to). */
export const CONSTRAINT_TERMS: readonly GuideTermName[] = ['obstacle', 'region', 'limits'];

export const DEFAULT_REGION_MARGIN = PUSHT_AGENT_RADIUS + 5;
export const DEFAULT_OBSTACLE_MARGIN = 0.03;
export const DEFAULT_JOINT_LIMIT_MARGIN = 0.1;

export interface GuideSpecOptions extends ArmKinematicsOptions {
  /**
   * Novel constraints of the episode: Push-T forbidden circles for 'region' (required by it);
   * arm-reach obstacles for 'obstacle' beyond the observed ones (optional).
   */
  readonly constraints?: readonly CircleLike[];
  /** pusht 'region' margin (px). Default DEFAULT_REGION_MARGIN = 20 (agent radius + 5). */
  readonly regionMargin?: number;
  /** pusht 'region': keep the targets ('targets', default) or the agent's PD path ('path') out (see PushtForbiddenRegionOptions.model). */
  readonly regionModel?: 'targets' | 'path';
  /** arm-reach 'obstacle' margin (m). Default DEFAULT_OBSTACLE_MARGIN = 0.03. */
  readonly obstacleMargin?: number;
  /** arm-reach 'limits' margin (rad). Default DEFAULT_JOINT_LIMIT_MARGIN = 0.1. */
  readonly limitsMargin?: number;
  /** How every term steers sampling: 'gradient' (default) or 'projection' (see CostTerm.mode). */
  readonly mode?: GuideMode;
  /** Polyak steps per sampler step in 'projection' mode (default 3). */
  readonly iterations?: number;
  /** Cap on each Polyak step's norm in 'projection' mode (normalised action units; default none). */
  readonly maxStep?: number;
  /** arm-reach 'obstacle': poses checked per control period (default 1; see ArmObstacleClearanceOptions). */
  readonly substeps?: number;
}

const SCALE_RE = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

/**
 * Parses a guidance spec such as 'obstacle:2.0,smooth:0.1,goal:1,limits:1' into cost terms for
 * `env`. Entries are `name:scale` (or a bare `name`, scale 1), names among GUIDE_TERM_NAMES and
 * available for the environment (pusht: region, smooth, limits; arm-reach: obstacle, goal,
 * smooth, limits; others: smooth), scales finite and >= 0, each name at most once.
 * pusht 'limits' keeps targets in [0, 512]^2; 'region' needs opts.constraints.
 * With opts.mode 'projection', the constraint terms (CONSTRAINT_TERMS) project the denoised chunk
 * towards zero cost (scale = Polyak step multiplier in (0, 4], opts.iterations steps per sampler
 * step); 'goal' and 'smooth' keep the gradient step.
 */
export function parseGuideSpec(spec: string, env: string, opts: GuideSpecOptions = {}): CostTerm[] {
  const where = 'guide spec';
  if (typeof spec !== 'string' || spec.trim() === '') fail(`${where}: expected comma-separated name:scale entries such as 'obstacle:2,smooth:0.1', received ${JSON.stringify(spec)}`);
  if (typeof env !== 'string' || env === '') fail(`${where}: env must be a non-empty string, received ${String(env)}`);
  const available: readonly GuideTermName[] = TERMS_BY_ENV[env] ?? ['smooth'];
  const mode = checkOneOf(`${where}: mode`, opts.mode ?? 'gradient', GUIDE_MODES);
  const iterations = opts.iterations === undefined ? undefined : checkNumber(`${where}: iterations`, opts.iterations, { integer: true, min: 1, max: 100 });
  const maxStep = opts.maxStep === undefined ? undefined : checkNumber(`${where}: maxStep`, opts.maxStep);
  if (maxStep !== undefined && !(maxStep > 0)) fail(`${where}: maxStep must be > 0, received ${maxStep}`);
  if (maxStep !== undefined && mode !== 'projection') fail(`${where}: maxStep only applies to mode 'projection', received mode '${mode}'`);
  if (iterations !== undefined && mode !== 'projection') fail(`${where}: iterations only apply to mode 'projection', received mode '${mode}'`);
  const seen = new Set<string>();
  const terms: CostTerm[] = [];
  for (const raw of spec.split(',')) {
    const entry = raw.trim();
    if (entry === '') fail(`${where} '${spec}': empty entry (expected name:scale separated by commas)`);
    const parts = entry.split(':');
    if (parts.length > 2) fail(`${where} '${spec}': entry '${entry}' has more than one ':' (expected name:scale)`);
    const nameRaw = parts[0]!.trim();
    if (!(GUIDE_TERM_NAMES as readonly string[]).includes(nameRaw)) {
      fail(`${where} '${spec}': unknown guidance term '${nameRaw}' (expected one of ${GUIDE_TERM_NAMES.join(', ')})`);
    }
    const name = nameRaw as GuideTermName;
    if (!available.includes(name)) fail(`${where} '${spec}': '${name}' guidance is not available for env '${env}' (available: ${available.join(', ')})`);
    if (seen.has(name)) fail(`${where} '${spec}': '${name}' appears more than once`);
    seen.add(name);
    let scale = 1;
    if (parts.length === 2) {
      const s = parts[1]!.trim();
      scale = Number(s);
      if (!SCALE_RE.test(s) || !Number.isFinite(scale)) fail(`${where} '${spec}': scale of '${name}' must be a finite number, received '${parts[1]}'`);
      if (scale < 0) fail(`${where} '${spec}': scale of '${name}' must be >= 0 (costs are minimised), received ${scale}`);
    }
    // Projection drives a cost to zero, so it only fits the constraint terms (zero when
    // satisfied); 'goal' and 'smooth' are objectives and keep the gradient step.
    const termMode: GuideMode = mode === 'projection' && CONSTRAINT_TERMS.includes(name) ? 'projection' : 'gradient';
    if (termMode === 'projection' && !(scale > 0 && scale <= 4)) fail(`${where} '${spec}': in projection mode the scale of '${name}' is a Polyak step multiplier in (0, 4], received ${scale}`);
    terms.push({ name, scale, cost: makeTerm(name, env, opts), mode: termMode, ...(termMode === 'projection' && iterations !== undefined ? { iterations } : {}), ...(termMode === 'projection' && maxStep !== undefined ? { maxStep } : {}) });
  }
  return terms;
}

function makeTerm(name: GuideTermName, env: string, opts: GuideSpecOptions): ChunkCost {
  const kin: ArmKinematicsOptions = { dt: opts.dt, actionMode: opts.actionMode, maxJointSpeed: opts.maxJointSpeed };
  switch (name) {
    case 'smooth':
      return smoothness();
    case 'region': {
      const circles = checkCircles(opts.constraints ?? [], 'guide spec: constraints');
      if (circles.length === 0) fail("guide spec: 'region' guidance needs forbidden circles (options.constraints; on the CLI, --novel-obstacles K > 0)");
      return pushtForbiddenRegion({ circles, margin: opts.regionMargin ?? DEFAULT_REGION_MARGIN, model: opts.regionModel });
    }
    case 'obstacle':
      return armObstacleClearance({ margin: opts.obstacleMargin ?? DEFAULT_OBSTACLE_MARGIN, extraObstacles: opts.constraints ?? [], substeps: opts.substeps, ...kin });
    case 'goal':
      return armGoalDistance(kin);
    case 'limits':
      if (env === 'pusht') return workspaceLimits({ low: [0, 0], high: [PUSHT_SIZE, PUSHT_SIZE] });
      return armJointLimits({ margin: opts.limitsMargin ?? DEFAULT_JOINT_LIMIT_MARGIN, ...kin });
  }
}
