/**
 * arm-reach: a planar 3-link arm (MuJoCo) must bring its end effector to a target that sits
 * behind a central circular obstacle, going around it on the left or on the right.
 *
 * Control: 10 Hz by default. Each step runs `dt / timestep` MuJoCo substeps (0.002 s each).
 * Each joint is driven by a PD servo (position + velocity actuators in the MJCF) whose
 * reference q_ref is advanced every substep:
 *   - actionMode 'velocity' (default): action = joint velocities (rad/s); q_ref moves at that
 *     speed, with velocity feed-forward.
 *   - actionMode 'position': action = absolute joint targets (rad); q_ref moves towards them at
 *     most `maxJointSpeed` rad/s.
 * The reference is clamped to the joint limits (and MuJoCo enforces the limits as constraints)
 * and kept within MAX_REFERENCE_LAG of the measured angles (anti wind-up when blocked).
 * Finite out-of-range actions are clipped to `actionSpec`; wrong sizes and non-finite entries
 * throw without changing the state.
 *
 * Success: end effector within `successRadius` (0.03 m) of the target -> terminated.
 * Collision: any MuJoCo contact (the model only allows link-vs-obstacle contacts) during the
 * step -> info.collision; info.clearance is the exact link-capsule vs circle clearance.
 * Reward: -distance - 1 (if collision this step) + 1 (on success).
 */
import { readFileSync } from 'node:fs';
import {
  JOINT_LIMITS,
  forwardKinematics,
  pointsClearance,
  type Obstacle,
  type Vec2,
} from './armReachKinematics.js';
import { sampleArmReachLayout } from './armReachLayout.js';
import {
  ABSENT_OBSTACLE,
  MAX_OBSTACLES,
  OBS_LAYOUT,
  STATE_LAYOUT,
  actionSpec,
  checkObstacle,
  observationSpec,
} from './armReachSpec.js';
import { compileMjcf, loadMujoco, type MjData, type MjModel, type MujocoModule } from './mujoco.js';
import { EnvRng } from './rng.js';
import type { BoxSpec, Env, Scene, SceneShape, StepResult } from './types.js';
import { fail } from '../../../src/util/validate.js';

export type ArmReachActionMode = 'velocity' | 'position';

export interface ArmReachOptions {
  /** 'velocity' (joint velocities, rad/s) or 'position' (absolute joint targets, rad). Default 'velocity'. */
  readonly actionMode?: ArmReachActionMode;
  /** Episode step limit. Default 100. */
  readonly maxSteps?: number;
  /** Joint speed bound (rad/s) for velocity actions and position-mode slewing. Default 2. */
  readonly maxJointSpeed?: number;
  /** Success distance (m) between end effector and target. Default 0.03. */
  readonly successRadius?: number;
  /** Control rate (Hz); must divide the 500 Hz physics rate. Default 10. */
  readonly controlHz?: number;
  /** Random distractor obstacles placed behind the base each episode (0..2). Default 0. */
  readonly distractors?: number;
  /** Obstacles added to every seeded episode (e.g. novel obstacles for evaluation). Default none. */
  readonly extraObstacles?: readonly Obstacle[];
  /** Seed of the stream used by reset() calls without an explicit seed. Default 0. */
  readonly seed?: number;
}

export interface ArmReachResetInit {
  readonly seed?: number;
  readonly state?: Float64Array;
  /** Overrides the constructor's extraObstacles for this (seeded) episode. */
  readonly extraObstacles?: readonly Obstacle[];
}

/** Maximum distance (rad) the servo reference may run ahead of the measured joint angle. */
const MAX_REFERENCE_LAG = 0.1;
const ASSET_URL = new URL('../assets/arm_reach.xml', import.meta.url);
let assetXml: string | undefined;

function armReachXml(): string {
  if (assetXml === undefined) {
    try {
      assetXml = readFileSync(ASSET_URL, 'utf8');
    } catch (err) {
      throw new Error(`ArmReachEnv: cannot read MJCF asset ${ASSET_URL.href}: ${(err as Error).message}`);
    }
  }
  return assetXml;
}

export class ArmReachEnv implements Env<Float64Array> {
  readonly name = 'arm-reach';
  readonly observationSpec: BoxSpec;
  readonly actionSpec: BoxSpec;
  readonly dt: number;
  readonly maxSteps: number;
  readonly actionMode: ArmReachActionMode;
  readonly maxJointSpeed: number;
  readonly successRadius: number;
  readonly distractors: number;
  readonly maxObstacles = MAX_OBSTACLES;

  private readonly mujoco: MujocoModule;
  private model: MjModel | undefined;
  private data: MjData | undefined;
  private readonly substeps: number;
  private readonly mocapIds: number[] = [];
  private readonly obstacleGeomIds: number[] = [];
  private readonly extraObstacles: readonly Obstacle[];
  private readonly seedStream: EnvRng;

  private initialised = false;
  private readonly qref = new Float64Array(3);
  private target: Vec2 = [0, 0];
  private obstacles: Obstacle[] = [];
  private steps = 0;
  private collided = false;

  /** Load MuJoCo (cached) and build an environment. */
  static async create(options: ArmReachOptions = {}): Promise<ArmReachEnv> {
    return new ArmReachEnv(await loadMujoco(), options);
  }

  /** Build from an already loaded MuJoCo module (see loadMujoco). Prefer ArmReachEnv.create. */
  constructor(mujoco: MujocoModule, options: ArmReachOptions = {}) {
    if (mujoco === null || typeof mujoco !== 'object' || typeof mujoco.mj_step !== 'function') {
      throw new TypeError('ArmReachEnv: mujoco must be the module returned by loadMujoco()');
    }
    if (options === null || typeof options !== 'object') throw new TypeError('ArmReachEnv: options must be an object');
    this.actionMode = options.actionMode ?? 'velocity';
    if (this.actionMode !== 'velocity' && this.actionMode !== 'position') {
      throw new RangeError(`ArmReachEnv: options.actionMode must be 'velocity' or 'position', got ${String(this.actionMode)}`);
    }
    this.maxSteps = positiveInt(options.maxSteps ?? 100, 'options.maxSteps');
    this.maxJointSpeed = positiveNumber(options.maxJointSpeed ?? 2, 'options.maxJointSpeed');
    this.successRadius = positiveNumber(options.successRadius ?? 0.03, 'options.successRadius');
    const controlHz = positiveNumber(options.controlHz ?? 10, 'options.controlHz');
    this.distractors = options.distractors ?? 0;
    if (!Number.isInteger(this.distractors) || this.distractors < 0 || this.distractors > MAX_OBSTACLES - 1) {
      throw new RangeError(`ArmReachEnv: options.distractors must be an integer in [0, ${MAX_OBSTACLES - 1}], got ${String(options.distractors)}`);
    }
    this.extraObstacles = checkObstacleList(options.extraObstacles ?? [], 'options.extraObstacles', this.distractors);
    const seed = options.seed ?? 0;
    if (!Number.isInteger(seed)) throw new TypeError(`ArmReachEnv: options.seed must be an integer, got ${String(seed)}`);
    this.seedStream = new EnvRng(seed);

    this.mujoco = mujoco;
    const model = compileMjcf(mujoco, armReachXml(), 'arm_reach.xml');
    this.model = model;
    this.data = new mujoco.MjData(model);
    const timestep = model.opt.timestep;
    this.substeps = Math.round(1 / controlHz / timestep);
    if (this.substeps < 1 || Math.abs(this.substeps * timestep * controlHz - 1) > 1e-9) {
      this.close();
      throw new RangeError(`ArmReachEnv: options.controlHz=${controlHz} must divide the physics rate ${1 / timestep} Hz`);
    }
    this.dt = this.substeps * timestep;
    const geomType = mujoco.mjtObj.mjOBJ_GEOM.value;
    const bodyType = mujoco.mjtObj.mjOBJ_BODY.value;
    for (let i = 0; i < MAX_OBSTACLES; i++) {
      const body = mujoco.mj_name2id(model, bodyType, `obs${i}`);
      const geom = mujoco.mj_name2id(model, geomType, `obs${i}_geom`);
      const mocap = body >= 0 ? (model.body_mocapid[body] as number) : -1;
      if (geom < 0 || mocap < 0) {
        this.close();
        throw new Error(`ArmReachEnv: MJCF asset lacks mocap obstacle body 'obs${i}' with geom 'obs${i}_geom'`);
      }
      this.mocapIds.push(mocap);
      this.obstacleGeomIds.push(geom);
    }
    if (model.nq !== 3 || model.nu !== 6) {
      this.close();
      throw new Error(`ArmReachEnv: MJCF asset must have 3 joints and 6 actuators, got nq=${model.nq}, nu=${model.nu}`);
    }
    this.observationSpec = observationSpec();
    this.actionSpec = actionSpec(this.actionMode, this.maxJointSpeed);
  }

  reset(init: ArmReachResetInit = {}): Float64Array {
    this.requireOpen('reset');
    if (init === null || typeof init !== 'object') throw new TypeError('ArmReachEnv.reset: init must be an object');
    if (init.state !== undefined) {
      if (init.seed !== undefined || init.extraObstacles !== undefined) {
        throw new TypeError('ArmReachEnv.reset: pass either init.state or init.seed/init.extraObstacles, not both');
      }
      this.restore(init.state);
      return this.observe();
    }
    const seed = init.seed ?? this.seedStream.int(0, 0x7fffffff);
    if (!Number.isInteger(seed)) throw new TypeError(`ArmReachEnv.reset: init.seed must be an integer, got ${String(seed)}`);
    const extra = init.extraObstacles === undefined
      ? this.extraObstacles
      : checkObstacleList(init.extraObstacles, 'ArmReachEnv.reset: init.extraObstacles', this.distractors);
    const layout = sampleArmReachLayout(new EnvRng(seed), { distractors: this.distractors, extraObstacles: extra });
    this.apply(layout.qpos, [0, 0, 0], layout.qpos, layout.target, layout.obstacles, 0, false);
    return this.observe();
  }

  step(action: ArrayLike<number>): StepResult {
    this.requireOpen('step');
    if (!this.initialised) fail('ArmReachEnv.step: call reset() before step()');
    const command = this.checkAction(action);
    const { model, data, mujoco } = this.sim();
    const h = model.opt.timestep;
    const qpos = data.qpos as Float64Array;
    for (let j = 0; j < 3; j++) {
      this.qref[j] = clamp(this.qref[j]!, qpos[j]! - MAX_REFERENCE_LAG, qpos[j]! + MAX_REFERENCE_LAG);
    }
    let collision = false;
    for (let s = 0; s < this.substeps; s++) {
      const ctrl = data.ctrl as Float64Array;
      for (let j = 0; j < 3; j++) {
        const [lo, hi] = JOINT_LIMITS[j]!;
        const old = this.qref[j]!;
        const delta = this.actionMode === 'velocity'
          ? command[j]! * h
          : clamp(command[j]! - old, -this.maxJointSpeed * h, this.maxJointSpeed * h);
        const next = clamp(old + delta, lo, hi);
        this.qref[j] = next;
        ctrl[j] = next;
        ctrl[3 + j] = (next - old) / h;
      }
      mujoco.mj_step(model, data);
      if (data.ncon > 0) collision = true;
    }
    this.steps += 1;
    this.collided ||= collision;
    const observation = this.observe();
    const points = forwardKinematics(observation.subarray(OBS_LAYOUT.q, OBS_LAYOUT.q + 3));
    const ee = points[3];
    const distance = Math.hypot(ee[0] - this.target[0], ee[1] - this.target[1]);
    const success = distance <= this.successRadius;
    const reward = -distance - (collision ? 1 : 0) + (success ? 1 : 0);
    return {
      observation,
      reward,
      terminated: success,
      truncated: !success && this.steps >= this.maxSteps,
      info: {
        distance,
        success,
        collision,
        collided: this.collided,
        clearance: pointsClearance(points, this.obstacles),
        contacts: data.ncon,
        steps: this.steps,
      },
    };
  }

  getState(): Float64Array {
    this.requireOpen('getState');
    if (!this.initialised) fail('ArmReachEnv.getState: call reset() first');
    const { data } = this.sim();
    const s = new Float64Array(STATE_LAYOUT.size);
    s.set((data.qpos as Float64Array).subarray(0, 3), STATE_LAYOUT.qpos);
    s.set((data.qvel as Float64Array).subarray(0, 3), STATE_LAYOUT.qvel);
    s.set(this.qref, STATE_LAYOUT.qref);
    s[STATE_LAYOUT.target] = this.target[0];
    s[STATE_LAYOUT.target + 1] = this.target[1];
    for (let i = 0; i < MAX_OBSTACLES; i++) {
      const o = this.obstacles[i] ?? ABSENT_OBSTACLE;
      s.set([o.x, o.y, o.radius], STATE_LAYOUT.obstacles + 3 * i);
    }
    s[STATE_LAYOUT.steps] = this.steps;
    s[STATE_LAYOUT.collided] = this.collided ? 1 : 0;
    return s;
  }

  /** Obstacles of the current episode (slot order; slot 0 is the central obstacle). */
  getObstacles(): Obstacle[] {
    return this.obstacles.map((o) => ({ ...o }));
  }

  render(): Scene {
    this.requireOpen('render');
    if (!this.initialised) fail('ArmReachEnv.render: call reset() first');
    const q = (this.sim().data.qpos as Float64Array).subarray(0, 3);
    const points = forwardKinematics(q);
    const shapes: SceneShape[] = [
      { kind: 'circle', label: 'workspace', center: [0, 0], radius: 0.9, color: '#eeeeee' },
    ];
    this.obstacles.forEach((o, i) => {
      shapes.push({ kind: 'circle', label: `obstacle${i}`, center: [o.x, o.y], radius: o.radius, color: '#cc4444' });
    });
    shapes.push({ kind: 'circle', label: 'target', center: this.target, radius: this.successRadius, color: '#44aa44' });
    for (let i = 0; i < 3; i++) {
      shapes.push({ kind: 'segment', label: `link${i + 1}`, points: [points[i]!, points[i + 1]!], color: '#3366cc' });
    }
    shapes.push({ kind: 'circle', label: 'base', center: [0, 0], radius: 0.03, color: '#333333' });
    shapes.push({ kind: 'circle', label: 'end_effector', center: points[3], radius: 0.015, color: '#222266' });
    // World coordinates in metres, origin at the arm base; the scene spans [-1, 1] x [-1, 1].
    return { width: 2, height: 2, shapes };
  }

  close(): void {
    this.data?.delete();
    this.model?.delete();
    this.data = undefined;
    this.model = undefined;
  }

  private checkAction(action: ArrayLike<number>): Float64Array {
    if (action === null || typeof action !== 'object' || typeof action.length !== 'number') {
      throw new TypeError('ArmReachEnv.step: action must be an array-like of 3 numbers');
    }
    if (action.length !== 3) {
      throw new RangeError(`ArmReachEnv.step: action must have length 3, got ${action.length}`);
    }
    const out = new Float64Array(3);
    for (let i = 0; i < 3; i++) {
      const v = action[i];
      if (typeof v !== 'number' || !Number.isFinite(v)) {
        throw new RangeError(`ArmReachEnv.step: action[${i}] must be a finite number, got ${String(v)}`);
      }
      out[i] = clamp(v, this.actionSpec.low[i]!, this.actionSpec.high[i]!);
    }
    return out;
  }

  private restore(state: Float64Array): void {
    if (!(state instanceof Float64Array) || state.length !== STATE_LAYOUT.size) {
      throw new TypeError(`ArmReachEnv.reset: init.state must be a Float64Array of length ${STATE_LAYOUT.size} (from getState())`);
    }
    for (let i = 0; i < state.length; i++) {
      if (!Number.isFinite(state[i])) throw new RangeError(`ArmReachEnv.reset: init.state[${i}] is not finite`);
    }
    const qpos = Array.from(state.subarray(STATE_LAYOUT.qpos, STATE_LAYOUT.qpos + 3));
    qpos.forEach((q, j) => {
      const [lo, hi] = JOINT_LIMITS[j]!;
      if (q < lo - 0.05 || q > hi + 0.05) {
        throw new RangeError(`ArmReachEnv.reset: init.state qpos[${j}]=${q} is outside the joint limits [${lo}, ${hi}]`);
      }
    });
    const obstacles: Obstacle[] = [];
    for (let i = 0; i < MAX_OBSTACLES; i++) {
      const k = STATE_LAYOUT.obstacles + 3 * i;
      if (state[k + 2] === 0) continue;
      obstacles.push(checkObstacle({ x: state[k], y: state[k + 1], radius: state[k + 2] }, `ArmReachEnv.reset: init.state obstacle ${i}`));
    }
    const steps = state[STATE_LAYOUT.steps]!;
    if (!Number.isInteger(steps) || steps < 0) {
      throw new RangeError(`ArmReachEnv.reset: init.state steps must be a non-negative integer, got ${steps}`);
    }
    this.apply(
      qpos,
      Array.from(state.subarray(STATE_LAYOUT.qvel, STATE_LAYOUT.qvel + 3)),
      Array.from(state.subarray(STATE_LAYOUT.qref, STATE_LAYOUT.qref + 3)),
      [state[STATE_LAYOUT.target]!, state[STATE_LAYOUT.target + 1]!],
      obstacles,
      steps,
      state[STATE_LAYOUT.collided] !== 0,
    );
  }

  private apply(
    qpos: readonly number[],
    qvel: readonly number[],
    qref: readonly number[],
    target: Vec2,
    obstacles: readonly Obstacle[],
    steps: number,
    collided: boolean,
  ): void {
    if (obstacles.length > MAX_OBSTACLES) {
      throw new RangeError(`ArmReachEnv: at most ${MAX_OBSTACLES} obstacles are supported, got ${obstacles.length}`);
    }
    const { model, data, mujoco } = this.sim();
    mujoco.mj_resetData(model, data);
    const mocapPos = data.mocap_pos as Float64Array;
    const geomSize = model.geom_size as Float64Array;
    for (let i = 0; i < MAX_OBSTACLES; i++) {
      const o = obstacles[i];
      const m = this.mocapIds[i]!;
      const g = this.obstacleGeomIds[i]!;
      mocapPos[3 * m] = o ? o.x : ABSENT_OBSTACLE.x;
      mocapPos[3 * m + 1] = o ? o.y : ABSENT_OBSTACLE.y;
      mocapPos[3 * m + 2] = 0;
      // Radius only shrinks below the compiled size, so compiled bounding volumes stay valid.
      geomSize[3 * g] = o ? o.radius : 0.01;
    }
    const qposView = data.qpos as Float64Array;
    const qvelView = data.qvel as Float64Array;
    for (let j = 0; j < 3; j++) {
      qposView[j] = qpos[j]!;
      qvelView[j] = qvel[j]!;
      this.qref[j] = qref[j]!;
    }
    mujoco.mj_forward(model, data);
    this.target = [target[0], target[1]];
    this.obstacles = obstacles.map((o) => ({ x: o.x, y: o.y, radius: o.radius }));
    this.steps = steps;
    this.collided = collided;
    this.initialised = true;
  }

  private observe(): Float64Array {
    const q = (this.sim().data.qpos as Float64Array).subarray(0, 3);
    const obs = new Float64Array(OBS_LAYOUT.size);
    obs.set(q, OBS_LAYOUT.q);
    const ee = forwardKinematics(q)[3];
    obs[OBS_LAYOUT.ee] = ee[0];
    obs[OBS_LAYOUT.ee + 1] = ee[1];
    obs[OBS_LAYOUT.target] = this.target[0];
    obs[OBS_LAYOUT.target + 1] = this.target[1];
    for (let i = 0; i < MAX_OBSTACLES; i++) {
      const o = this.obstacles[i] ?? ABSENT_OBSTACLE;
      obs.set([o.x, o.y, o.radius], OBS_LAYOUT.obstacles + 3 * i);
    }
    return obs;
  }

  private sim(): { model: MjModel; data: MjData; mujoco: MujocoModule } {
    if (this.model === undefined || this.data === undefined) fail('ArmReachEnv: environment is closed');
    return { model: this.model, data: this.data, mujoco: this.mujoco };
  }

  private requireOpen(method: string): void {
    if (this.model === undefined) fail(`ArmReachEnv.${method}: environment is closed`);
  }
}

function checkObstacleList(list: readonly Obstacle[], where: string, distractors: number): Obstacle[] {
  if (!Array.isArray(list)) throw new TypeError(`${where} must be an array of {x, y, radius}`);
  const free = MAX_OBSTACLES - 1 - distractors;
  if (list.length > free) {
    throw new RangeError(`${where}: at most ${free} extra obstacles fit (${MAX_OBSTACLES} slots, 1 central, ${distractors} distractors), got ${list.length}`);
  }
  return list.map((o, i) => checkObstacle(o, `${where}[${i}]`));
}

function clamp(v: number, lo: number, hi: number): number {
  return v < lo ? lo : v > hi ? hi : v;
}

function positiveInt(v: number, name: string): number {
  if (!Number.isInteger(v) || v <= 0) throw new RangeError(`ArmReachEnv: ${name} must be a positive integer, got ${String(v)}`);
  return v;
}

function positiveNumber(v: number, name: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
    throw new RangeError(`ArmReachEnv: ${name} must be a positive finite number, got ${String(v)}`);
  }
  return v;
}
