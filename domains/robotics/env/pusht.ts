/**
 * Push-T (Diffusion Policy's `PushTEnv`, low-dimensional state version) on the planck.js port of
 * Box2D.
 *
 * Facts reproduced from the original (pymunk) environment:
 * - 512 x 512 workspace, no gravity, four static walls (segments of radius 2 from (5, 5) to
 *   (506, 506)); a T block of mass 1 (see tee.ts); a circular agent of radius 15.
 * - The agent is kinematic and follows a PD controller towards the absolute target `action`:
 *   every 1/100 s substep, v += (100 (target - p) - 20 v) dt, then p += v dt; 10 substeps per
 *   control step (10 Hz).
 * - pymunk's `space.damping = 0` removes all block velocity at every substep: the block only
 *   moves by the contact impulses of the current substep (quasi-static pushing).
 * - Shapes have no friction and no restitution: the original sets `friction` on bodies, which
 *   pymunk ignores, so every shape keeps pymunk's default friction 0.
 * - Coverage = area(goal T ∩ block T) / area(goal T), goal pose (256, 256, pi/4);
 *   reward = clip(coverage / 0.95, 0, 1); terminated when coverage > 0.95; 300 steps at most.
 *
 * Units: observations, actions and states are in pixels; planck works in `pixelsPerUnit` units
 * (default 1, see PushTPhysicsOptions). planck's speed limit of 2 units per step is raised to
 * MAX_SPEED for the duration of each step.
 *
 * Axes are pymunk's: x right, y down when drawn like the original (angles increase from x to y).
 */
import { Box, Circle, Polygon as PlanckPolygon, Settings, Vec2, World, type Body } from 'planck';
import { EnvRng } from './rng.js';
import { PUSHT_GOAL, TEE_CENTER_OF_GRAVITY, TEE_MASS, TEE_MOMENT, TEE_PIECES, teeCoverage, teePolygons } from './tee.js';
import type { BoxSpec, Env, Scene, SceneShape, StepResult } from './types.js';
import { fail } from '../../../src/util/validate.js';

export const PUSHT_SIZE = 512;
export const PUSHT_AGENT_RADIUS = 15;
export const PUSHT_SUCCESS_COVERAGE = 0.95;
const SIM_HZ = 100;
const CONTROL_HZ = 10;
const KP = 100;
const KV = 20;
/** The agent's PD controller and rates, for models of its motion (guidance costs, replanning). */
export const PUSHT_PD = { kp: KP, kv: KV, substeps: SIM_HZ / CONTROL_HZ, controlDt: 1 / CONTROL_HZ } as const;
const WALL_RADIUS = 2;
/** Speed limit of bodies in planck (px/s); planck's default (2 units per step) would be far lower. */
const MAX_SPEED = 20000;
const WALLS: readonly (readonly [readonly [number, number], readonly [number, number]])[] = [
  [[5, 506], [5, 5]],
  [[5, 5], [506, 5]],
  [[506, 5], [506, 506]],
  [[5, 506], [506, 506]],
];

/**
 * Physics knobs. The defaults were tuned against the recorded demonstrations (see
 * test/robotics/pushtFidelity.test.ts, which also lists what the alternatives measured).
 */
export interface PushTPhysicsOptions {
  /**
   * Pixels per planck length unit (default 1). planck keeps a contact gap of about
   * `linearSlop` = 0.005 units between touching shapes, so smaller is more faithful: 20 px/unit
   * doubles the error against the data, 100 px/unit quadruples it.
   */
  readonly pixelsPerUnit?: number;
  readonly velocityIterations?: number;
  readonly positionIterations?: number;
  /** Contact friction (pymunk's effective value is 0). */
  readonly friction?: number;
  readonly restitution?: number;
}

export interface PushTOptions {
  /** Seed of the reset stream used by `reset()` without arguments (default 0). */
  readonly seed?: number;
  readonly maxSteps?: number;
  readonly physics?: PushTPhysicsOptions;
}

type ResolvedPhysics = Required<PushTPhysicsOptions>;

const DEFAULT_PHYSICS: ResolvedPhysics = {
  pixelsPerUnit: 1,
  velocityIterations: 10,
  positionIterations: 3,
  friction: 0,
  restitution: 0,
};

function resolvePhysics(p: PushTPhysicsOptions = {}): ResolvedPhysics {
  const r = { ...DEFAULT_PHYSICS, ...p };
  const positive = (name: string, v: number, integer: boolean): void => {
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0 || (integer && !Number.isInteger(v))) {
      fail(`PushTEnv: physics.${name} must be a positive ${integer ? 'integer' : 'number'}, received ${v}`);
    }
  };
  positive('pixelsPerUnit', r.pixelsPerUnit, false);
  positive('velocityIterations', r.velocityIterations, true);
  positive('positionIterations', r.positionIterations, true);
  for (const k of ['friction', 'restitution'] as const) {
    if (!Number.isFinite(r[k]) || r[k] < 0) fail(`PushTEnv: physics.${k} must be >= 0, received ${r[k]}`);
  }
  return r;
}

/**
 * Length of a full state vector: agent x, y, block x, y, block angle, agent vx, vy (px/s),
 * then the block's centre-of-mass velocity vx, vy (px/s) and angular velocity (rad/s) from the
 * last contact solve, which pymunk applies at the next substep.
 */
export const PUSHT_STATE_SIZE = 10;

function checkVector(name: string, v: ArrayLike<number>, sizes: readonly number[]): void {
  if (v === null || typeof v !== 'object' || typeof v.length !== 'number') {
    fail(`${name}: expected an array of numbers, received ${String(v)}`);
  }
  if (!sizes.includes(v.length)) {
    fail(`${name}: expected ${sizes.join(' or ')} numbers, received ${v.length}`);
  }
  for (let i = 0; i < v.length; i++) {
    if (typeof v[i] !== 'number' || !Number.isFinite(v[i])) {
      fail(`${name}: entry ${i} must be a finite number, received ${String(v[i])}`);
    }
  }
}

export class PushTEnv implements Env {
  readonly name = 'pusht';
  readonly observationSpec: BoxSpec = {
    size: 5,
    low: [0, 0, 0, 0, 0],
    high: [PUSHT_SIZE, PUSHT_SIZE, PUSHT_SIZE, PUSHT_SIZE, 2 * Math.PI],
    names: ['agent_x', 'agent_y', 'block_x', 'block_y', 'block_angle'],
  };
  readonly actionSpec: BoxSpec = {
    size: 2,
    low: [0, 0],
    high: [PUSHT_SIZE, PUSHT_SIZE],
    names: ['target_x', 'target_y'],
  };
  readonly dt = 1 / CONTROL_HZ;
  readonly maxSteps: number;

  private readonly physics: ResolvedPhysics;
  private rng: EnvRng;
  private world: World | null = null;
  private agent: Body | null = null;
  private block: Body | null = null;
  /** Agent position and velocity in pixels, integrated exactly like pymunk's kinematic body. */
  private agentPos: [number, number] = [0, 0];
  private agentVel: [number, number] = [0, 0];
  /** Block centre-of-mass velocity from the last contact solve (planck units/s, rad/s). */
  private blockVel: [number, number, number] = [0, 0, 0];
  private steps = 0;
  private maxReward = 0;
  private lastAction: [number, number] | null = null;
  private closed = false;

  constructor(opts: PushTOptions = {}) {
    const seed = opts.seed ?? 0;
    if (!Number.isInteger(seed)) fail(`PushTEnv: seed must be an integer, received ${seed}`);
    const maxSteps = opts.maxSteps ?? 300;
    if (!Number.isInteger(maxSteps) || maxSteps <= 0) {
      fail(`PushTEnv: maxSteps must be a positive integer, received ${maxSteps}`);
    }
    this.maxSteps = maxSteps;
    this.physics = resolvePhysics(opts.physics);
    this.rng = new EnvRng(seed);
  }

  /**
   * Reset from a seed (agent uniform integer in [50, 450)^2, block in [100, 400)^2, angle uniform
   * in [-pi, pi)) or from a state: the dataset's 5 numbers [agent x, agent y, block x, block y,
   * block angle] (bodies at rest), or the 10 numbers of `getState()` (adds the velocities).
   * Like the original, a seeded or 5-number reset runs one physics substep with the bodies at
   * rest after placing them (it only matters when they overlap); a 10-number state is restored
   * as is (only planck's contact cache is lost).
   */
  reset(init: { seed?: number; state?: ArrayLike<number> } = {}): Float64Array {
    this.assertOpen('reset');
    if (init === null || typeof init !== 'object') {
      fail(`PushTEnv.reset: expected an object { seed } or { state }, received ${String(init)}`);
    }
    if (init.seed !== undefined && init.state !== undefined) {
      fail('PushTEnv.reset: pass either seed or state, not both');
    }
    let state: number[];
    if (init.state !== undefined) {
      checkVector('PushTEnv.reset state', init.state, [5, PUSHT_STATE_SIZE]);
      state = Array.from(init.state);
    } else {
      if (init.seed !== undefined) {
        if (!Number.isInteger(init.seed)) {
          fail(`PushTEnv.reset: seed must be an integer, received ${init.seed}`);
        }
        this.rng = new EnvRng(init.seed);
      }
      const r = this.rng;
      state = [r.int(50, 450), r.int(50, 450), r.int(100, 400), r.int(100, 400), r.range(-Math.PI, Math.PI)];
    }
    this.buildWorld(state);
    if (state.length === PUSHT_STATE_SIZE) {
      const px = this.physics.pixelsPerUnit;
      this.agentVel = [state[5], state[6]];
      this.blockVel = [state[7] / px, state[8] / px, state[9]];
    } else {
      this.substep(null);
    }
    this.steps = 0;
    this.lastAction = null;
    this.maxReward = 0;
    return this.observation();
  }

  step(action: ArrayLike<number>): StepResult {
    this.assertOpen('step');
    this.assertReset('step');
    checkVector('PushTEnv.step action', action, [2]);
    const target: [number, number] = [action[0], action[1]];
    this.lastAction = target;
    let contacts = 0;
    for (let i = 0; i < SIM_HZ / CONTROL_HZ; i++) contacts += this.substep(target);
    this.steps++;
    const coverage = this.coverage();
    const reward = this.rewardOf(coverage);
    this.maxReward = Math.max(this.maxReward, reward);
    const terminated = coverage > PUSHT_SUCCESS_COVERAGE;
    return {
      observation: this.observation(),
      reward,
      terminated,
      truncated: !terminated && this.steps >= this.maxSteps,
      // maxReward: the highest step reward of the episode so far (Diffusion Policy's episode score).
      info: { coverage, maxReward: this.maxReward, nContacts: contacts, steps: this.steps },
    };
  }

  /** The full state (see PUSHT_STATE_SIZE); its first 5 numbers are the observation. */
  getState(): Float64Array {
    this.assertOpen('getState');
    this.assertReset('getState');
    const px = this.physics.pixelsPerUnit;
    const [bu, bv, bw] = this.blockVel;
    return Float64Array.from([...this.observation(), ...this.agentVel, bu * px, bv * px, bw]);
  }

  /** Coverage of the goal by the block in the current state. */
  coverage(): number {
    this.assertReset('coverage');
    return teeCoverage(this.blockPose());
  }

  /** Scene in pixels: walls, goal T, block T, agent, and the last action target. */
  render(): Scene {
    this.assertOpen('render');
    this.assertReset('render');
    const shapes: SceneShape[] = WALLS.map(([a, b], i) => ({
      kind: 'segment',
      label: `wall${i}`,
      points: [a, b],
      color: 'LightGray',
    }));
    for (const points of teePolygons(PUSHT_GOAL)) {
      shapes.push({ kind: 'polygon', label: 'goal', points, color: 'LightGreen' });
    }
    for (const points of teePolygons(this.blockPose())) {
      shapes.push({ kind: 'polygon', label: 'block', points, color: 'LightSlateGray' });
    }
    const [ax, ay] = this.agentPos;
    shapes.push({ kind: 'circle', label: 'agent', center: [ax, ay], radius: PUSHT_AGENT_RADIUS, color: 'RoyalBlue' });
    if (this.lastAction) {
      shapes.push({ kind: 'circle', label: 'action', center: this.lastAction, radius: 3, color: 'Red' });
    }
    return { width: PUSHT_SIZE, height: PUSHT_SIZE, shapes };
  }

  close(): void {
    this.world = null;
    this.agent = null;
    this.block = null;
    this.closed = true;
  }

  // ---- internals -------------------------------------------------------------------------

  private assertOpen(method: string): void {
    if (this.closed) fail(`PushTEnv.${method}: environment is closed`);
  }

  private assertReset(method: string): void {
    if (!this.world) fail(`PushTEnv.${method}: call reset() first`);
  }

  private rewardOf(coverage: number): number {
    return Math.min(1, Math.max(0, coverage / PUSHT_SUCCESS_COVERAGE));
  }

  private blockPose(): { x: number; y: number; angle: number } {
    const b = this.block!;
    const p = b.getPosition();
    const s = this.physics.pixelsPerUnit;
    return { x: p.x * s, y: p.y * s, angle: b.getAngle() };
  }

  private observation(): Float64Array {
    const pose = this.blockPose();
    const twoPi = 2 * Math.PI;
    const angle = ((pose.angle % twoPi) + twoPi) % twoPi;
    return Float64Array.from([this.agentPos[0], this.agentPos[1], pose.x, pose.y, angle]);
  }

  private buildWorld(state: number[]): void {
    const { pixelsPerUnit: s, friction, restitution } = this.physics;
    const u = (px: number): number => px / s;
    const world = new World({ gravity: Vec2(0, 0), allowSleep: false, continuousPhysics: false });
    const fixture = { friction, restitution, density: 0 };

    const walls = world.createBody({ type: 'static' });
    for (const [[ax, ay], [bx, by]] of WALLS) {
      // A capsule of radius 2 around the segment, approximated by a box (the corners overlap).
      const cx = (ax + bx) / 2;
      const cy = (ay + by) / 2;
      const hx = Math.abs(bx - ax) / 2 + WALL_RADIUS;
      const hy = Math.abs(by - ay) / 2 + WALL_RADIUS;
      walls.createFixture(new Box(u(hx), u(hy), Vec2(u(cx), u(cy)), 0), fixture);
    }

    const block = world.createBody({ type: 'dynamic', position: Vec2(u(state[2]), u(state[3])), angle: state[4] });
    for (const piece of TEE_PIECES) {
      block.createFixture(new PlanckPolygon(piece.map(([x, y]) => Vec2(u(x), u(y)))), fixture);
    }
    const [cx, cy] = TEE_CENTER_OF_GRAVITY;
    // planck's MassData.I is about the body origin: shift the moment about the centre of gravity.
    block.setMassData({
      mass: TEE_MASS,
      center: Vec2(u(cx), u(cy)),
      I: (TEE_MOMENT + TEE_MASS * (cx * cx + cy * cy)) / (s * s),
    });

    const agent = world.createBody({ type: 'kinematic', position: Vec2(u(state[0]), u(state[1])) });
    agent.createFixture(new Circle(u(PUSHT_AGENT_RADIUS)), fixture);

    this.world = world;
    this.block = block;
    this.agent = agent;
    this.agentPos = [state[0], state[1]];
    this.agentVel = [0, 0];
    this.blockVel = [0, 0, 0];
  }

  /**
   * One 1/100 s physics substep in pymunk's order: integrate positions (the block with the
   * velocity of the previous contact solve), detect contacts, then solve them with the block at
   * rest (damping 0). planck's own order is detect, solve, integrate; we let it solve and undo its
   * integration of the block's new velocity, which we apply at the next substep instead (its
   * correction of overlaps is kept). `target` null skips the PD update (used right after reset).
   * Returns the number of contact points touching after the substep.
   */
  private substep(target: [number, number] | null): number {
    const world = this.world!;
    const block = this.block!;
    const agent = this.agent!;
    const { pixelsPerUnit: s, velocityIterations, positionIterations } = this.physics;
    const h = 1 / SIM_HZ;
    const p = this.agentPos;
    const v = this.agentVel;
    if (target) {
      v[0] += (KP * (target[0] - p[0]) - KV * v[0]) * h;
      v[1] += (KP * (target[1] - p[1]) - KV * v[1]) * h;
    }
    p[0] += v[0] * h;
    p[1] += v[1] * h;
    const [bu, bv, bw] = this.blockVel;
    if (bu !== 0 || bv !== 0 || bw !== 0) {
      const c = block.getWorldCenter();
      setCenterPose(block, c.x + bu * h, c.y + bv * h, block.getAngle() + bw * h);
    }
    agent.setTransform(Vec2(p[0] / s, p[1] / s), 0);
    agent.setLinearVelocity(Vec2(v[0] / s, v[1] / s));
    block.setLinearVelocity(Vec2(0, 0));
    block.setAngularVelocity(0);

    stepWorld(world, h, velocityIterations, positionIterations, (MAX_SPEED * h) / s);

    const lv = block.getLinearVelocity();
    const w = block.getAngularVelocity();
    this.blockVel = [lv.x, lv.y, w];
    const c = block.getWorldCenter();
    setCenterPose(block, c.x - lv.x * h, c.y - lv.y * h, block.getAngle() - w * h);
    // The agent is kinematic: keep it exactly on the PD trajectory (no planck clamping/rounding).
    agent.setTransform(Vec2(p[0] / s, p[1] / s), 0);

    let points = 0;
    for (let ct = world.getContactList(); ct; ct = ct.getNext()) {
      if (ct.isTouching()) points += ct.getManifold().pointCount;
    }
    return points;
  }
}

/** The agent's PD trajectory along one axis over one control step (pymunk's kinematic update). */
function pdControlStep(p: number, v: number, target: number): [number, number] {
  const h = 1 / SIM_HZ;
  for (let i = 0; i < SIM_HZ / CONTROL_HZ; i++) {
    v += (KP * (target - p) - KV * v) * h;
    p += v * h;
  }
  return [p, v];
}

/**
 * The agent velocity (px/s) at the end of a recorded control step, which the 5-number dataset
 * state leaves out. The PD update is affine in the start velocity, so the two recorded positions
 * and the action between them determine it exactly (up to float32 rounding of the record).
 * Pass it as entries 5-6 of a 10-number state to `reset` (block velocities 0).
 */
export function agentVelocityFromRecord(
  prevPos: ArrayLike<number>,
  pos: ArrayLike<number>,
  prevAction: ArrayLike<number>,
): [number, number] {
  checkVector('agentVelocityFromRecord prevPos', prevPos, [2]);
  checkVector('agentVelocityFromRecord pos', pos, [2]);
  checkVector('agentVelocityFromRecord prevAction', prevAction, [2]);
  const out: [number, number] = [0, 0];
  for (let d = 0; d < 2; d++) {
    const [p0] = pdControlStep(prevPos[d], 0, prevAction[d]);
    const [p1] = pdControlStep(prevPos[d], 1, prevAction[d]);
    const v0 = (pos[d] - p0) / (p1 - p0);
    out[d] = pdControlStep(prevPos[d], v0, prevAction[d])[1];
  }
  return out;
}

/**
 * planck's speed limit is a process-wide setting (`Settings.maxTranslation`, units per step):
 * raise it for this step only and restore it, so other planck worlds are unaffected.
 */
function stepWorld(world: World, h: number, velIters: number, posIters: number, maxTranslation: number): void {
  const saved = Settings.maxTranslation;
  Settings.maxTranslation = maxTranslation;
  try {
    world.step(h, velIters, posIters);
  } finally {
    Settings.maxTranslation = saved;
  }
}

/** Place a body so that its centre of mass is at (cx, cy) with the given angle. */
function setCenterPose(body: Body, cx: number, cy: number, angle: number): void {
  const lc = body.getLocalCenter();
  const cos = Math.cos(angle);
  const sin = Math.sin(angle);
  body.setTransform(Vec2(cx - (cos * lc.x - sin * lc.y), cy - (sin * lc.x + cos * lc.y)), angle);
}
