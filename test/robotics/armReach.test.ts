/** arm-reach (MuJoCo) environment and its scripted expert: seeding, limits, validation, obstacles, collisions, demos. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ArmReachEnv } from '../../domains/robotics/env/armReach.js';
import { JOINT_LIMITS, armClearance, endEffector } from '../../domains/robotics/env/armReachKinematics.js';
import { ABSENT_OBSTACLE, OBS_LAYOUT, STATE_LAYOUT } from '../../domains/robotics/env/armReachSpec.js';
import { loadMujoco } from '../../domains/robotics/env/mujoco.js';
import { EnvRng } from '../../domains/robotics/env/rng.js';
import { collectDemos, planArmReach } from '../../domains/robotics/expert/armReachExpert.js';

let env: ArmReachEnv;

beforeAll(async () => {
  env = await ArmReachEnv.create();
});

afterAll(() => {
  env.close();
});

/** A state with the arm at q, at rest, the target at (0.7, 0.3) and the given obstacles. */
function handState(q: [number, number, number], obstacles: { x: number; y: number; radius: number }[]): Float64Array {
  const s = new Float64Array(STATE_LAYOUT.size);
  s.set(q, STATE_LAYOUT.qpos);
  s.set(q, STATE_LAYOUT.qref);
  s.set([0.7, 0.3], STATE_LAYOUT.target);
  for (let i = 0; i < 3; i++) {
    const o = obstacles[i] ?? ABSENT_OBSTACLE;
    s.set([o.x, o.y, o.radius], STATE_LAYOUT.obstacles + 3 * i);
  }
  return s;
}

describe('mujoco loader', () => {
  it('loads the wasm module once', async () => {
    const a = await loadMujoco();
    const b = await loadMujoco();
    expect(a).toBe(b);
    expect(a.mj_version()).toBeGreaterThan(300);
  });
});

describe('ArmReachEnv seeding and state', () => {
  it('is deterministic under a seed', async () => {
    const a = await ArmReachEnv.create();
    const b = await ArmReachEnv.create();
    try {
      expect(Array.from(a.reset({ seed: 11 }))).toEqual(Array.from(b.reset({ seed: 11 })));
      for (let t = 0; t < 10; t++) {
        const action = [Math.sin(t), Math.cos(t), -0.5];
        expect(Array.from(a.step(action).observation)).toEqual(Array.from(b.step(action).observation));
      }
      expect(Array.from(a.getState())).toEqual(Array.from(b.getState()));
      expect(Array.from(a.reset({ seed: 12 }))).not.toEqual(Array.from(b.reset({ seed: 11 })));
    } finally {
      a.close();
      b.close();
    }
  });

  it('reset() without a seed continues the constructor seed stream', async () => {
    const a = await ArmReachEnv.create({ seed: 5 });
    const b = await ArmReachEnv.create({ seed: 5 });
    try {
      const first = Array.from(a.reset());
      expect(Array.from(a.reset())).not.toEqual(first);
      expect(Array.from(b.reset())).toEqual(first);
    } finally {
      a.close();
      b.close();
    }
  });

  it('restores a full state exactly with reset({ state })', () => {
    env.reset({ seed: 3 });
    env.step([0.5, -0.5, 0.2]);
    const saved = env.getState();
    const first = [env.step([1, 0.3, -1]), env.step([-0.2, 0.8, 0.4])].map((r) => Array.from(r.observation));
    env.reset({ seed: 99 });
    const obs = env.reset({ state: saved });
    expect(Array.from(env.getState())).toEqual(Array.from(saved));
    expect(obs[OBS_LAYOUT.q]).toBe(saved[STATE_LAYOUT.qpos]);
    const again = [env.step([1, 0.3, -1]), env.step([-0.2, 0.8, 0.4])].map((r) => Array.from(r.observation));
    expect(again).toEqual(first);
    expect(() => env.reset({ state: new Float64Array(3) })).toThrow(/init\.state must be a Float64Array of length/);
    expect(() => env.reset({ state: saved, seed: 1 })).toThrow(/either init\.state or init\.seed/);
  });

  it('samples layouts with the target behind a central obstacle and a clear start', () => {
    for (let seed = 0; seed < 30; seed++) {
      const obs = env.reset({ seed });
      const [ox, oy, r] = [obs[OBS_LAYOUT.obstacles]!, obs[OBS_LAYOUT.obstacles + 1]!, obs[OBS_LAYOUT.obstacles + 2]!];
      const [tx, ty] = [obs[OBS_LAYOUT.target]!, obs[OBS_LAYOUT.target + 1]!];
      const axis = Math.hypot(ox, oy);
      // Target is further out than the obstacle, along the same direction.
      expect(Math.hypot(tx, ty)).toBeGreaterThan(axis + r);
      expect((tx * ox + ty * oy) / (Math.hypot(tx, ty) * axis)).toBeGreaterThan(0.99);
      const q = Array.from(obs.subarray(0, 3));
      expect(armClearance(q, [{ x: ox, y: oy, radius: r }])).toBeGreaterThan(0.03);
      const [ex, ey] = endEffector(q);
      expect(obs[OBS_LAYOUT.ee]).toBeCloseTo(ex, 12);
      expect(obs[OBS_LAYOUT.ee + 1]).toBeCloseTo(ey, 12);
      // The end effector starts in front of the obstacle (closer to the base along the axis).
      expect((ex * ox + ey * oy) / axis).toBeLessThan(axis - r);
    }
  });
});

describe('ArmReachEnv actions and joint limits', () => {
  it('keeps joints inside their limits under saturating commands', async () => {
    let worst = 0;
    for (const sign of [1, -1]) {
      // No obstacles, so nothing but the joint limits can stop the arm.
      env.reset({ state: handState([0, 0, 0], []) });
      for (let t = 0; t < 40; t++) {
        const r = env.step([sign * 10, sign * 10, sign * 10]); // clipped to +-maxJointSpeed
        for (let j = 0; j < 3; j++) {
          const q = r.observation[j]!;
          const [lo, hi] = JOINT_LIMITS[j]!;
          worst = Math.max(worst, lo - q, q - hi);
        }
      }
      const q = env.getState().subarray(0, 3);
      // Every joint ends up pressed against its limit.
      for (let j = 0; j < 3; j++) expect(Math.abs(q[j]! - JOINT_LIMITS[j]![sign > 0 ? 1 : 0]!)).toBeLessThan(0.01);
    }
    console.log(`[arm-reach] worst joint-limit violation under saturating velocity commands: ${worst.toExponential(2)} rad`);
    expect(worst).toBeLessThan(0.005);

    const pos = await ArmReachEnv.create({ actionMode: 'position' });
    try {
      pos.reset({ state: handState([0, 0, 0], []) });
      for (let t = 0; t < 40; t++) pos.step([9, -9, 9]); // clipped to the joint limits
      const q = pos.getState().subarray(0, 3);
      expect(q[0]).toBeLessThanOrEqual(Math.PI + 0.005);
      expect(q[1]).toBeGreaterThanOrEqual(-2.6 - 0.005);
      expect(q[2]).toBeLessThanOrEqual(2.6 + 0.005);
      expect(q[2]).toBeGreaterThan(2.55);
    } finally {
      pos.close();
    }
  });

  it('integrates velocity commands over one control period', () => {
    env.reset({ seed: 8 });
    const before = env.getState().slice(0, 3);
    for (let t = 0; t < 5; t++) env.step([0.4, -0.3, 0.2]);
    const after = env.getState().subarray(0, 3);
    // 5 steps x 0.1 s: the PD servo tracks the integrated reference to within a few mrad.
    expect(after[0]! - before[0]!).toBeCloseTo(0.2, 2);
    expect(after[1]! - before[1]!).toBeCloseTo(-0.15, 2);
    expect(after[2]! - before[2]!).toBeCloseTo(0.1, 2);
  });

  it('rejects malformed actions without changing the state', () => {
    env.reset({ seed: 2 });
    env.step([0.1, 0.1, 0.1]);
    const before = Array.from(env.getState());
    expect(() => env.step([0.1, 0.2])).toThrow(/action must have length 3, got 2/);
    expect(() => env.step([0.1, 0.2, 0.3, 0.4])).toThrow(/length 3, got 4/);
    expect(() => env.step([0.1, Number.NaN, 0.3])).toThrow(/action\[1\] must be a finite number/);
    expect(() => env.step([Infinity, 0, 0])).toThrow(/action\[0\] must be a finite number/);
    expect(() => env.step(['1', 0, 0] as unknown as number[])).toThrow(/action\[0\]/);
    expect(() => env.step(null as unknown as number[])).toThrow(/array-like of 3 numbers/);
    expect(Array.from(env.getState())).toEqual(before);
  });

  it('validates constructor options with clear messages', async () => {
    const mujoco = await loadMujoco();
    expect(() => new ArmReachEnv(mujoco, { actionMode: 'torque' as 'velocity' })).toThrow(/options\.actionMode/);
    expect(() => new ArmReachEnv(mujoco, { maxSteps: 0 })).toThrow(/options\.maxSteps/);
    expect(() => new ArmReachEnv(mujoco, { controlHz: 7 })).toThrow(/options\.controlHz/);
    expect(() => new ArmReachEnv(mujoco, { distractors: 3 })).toThrow(/options\.distractors/);
    expect(() => new ArmReachEnv(mujoco, { extraObstacles: [{ x: 0, y: 0.5, radius: 0 }] })).toThrow(/extraObstacles\[0\]\.radius/);
    expect(() => new ArmReachEnv(null as never)).toThrow(/mujoco must be the module/);
  });
});

describe('ArmReachEnv obstacles', () => {
  it('encodes obstacles in the observation, absent slots as a far point with radius 0', async () => {
    const obs = env.reset({ seed: 21 });
    const names = env.observationSpec.names;
    expect(env.observationSpec.size).toBe(16);
    expect(names.slice(0, 7)).toEqual(['q1', 'q2', 'q3', 'ee_x', 'ee_y', 'target_x', 'target_y']);
    expect(names[OBS_LAYOUT.obstacles + 2]).toBe('obs0_r');
    const [central] = env.getObstacles();
    expect(Array.from(obs.subarray(7, 10))).toEqual([central!.x, central!.y, central!.radius]);
    expect(central!.radius).toBeGreaterThan(0);
    expect(Array.from(obs.subarray(10, 16))).toEqual([2, 2, 0, 2, 2, 0]);

    const withDistractors = await ArmReachEnv.create({ distractors: 2 });
    try {
      const o = withDistractors.reset({ seed: 21 });
      expect(o[OBS_LAYOUT.obstacles + 5]).toBeGreaterThan(0);
      expect(o[OBS_LAYOUT.obstacles + 8]).toBeGreaterThan(0);
      expect(withDistractors.getObstacles()).toHaveLength(3);
    } finally {
      withDistractors.close();
    }
  });

  it('adds novel obstacles from the constructor option or per reset', async () => {
    const novel = { x: -0.3, y: -0.6, radius: 0.1 };
    const withNovel = await ArmReachEnv.create({ extraObstacles: [novel] });
    try {
      const o = withNovel.reset({ seed: 5 });
      expect(Array.from(o.subarray(10, 13))).toEqual([novel.x, novel.y, novel.radius]);
      const override = { x: 0.1, y: -0.7, radius: 0.05 };
      const o2 = withNovel.reset({ seed: 5, extraObstacles: [override, novel] });
      expect(Array.from(o2.subarray(10, 16))).toEqual([0.1, -0.7, 0.05, -0.3, -0.6, 0.1]);
      expect(() => withNovel.reset({ seed: 5, extraObstacles: [novel, novel, novel] })).toThrow(/at most 2 extra obstacles/);
      // The novel obstacle is physical: the MuJoCo model collides with it.
      withNovel.reset({ state: handState([0, 0, 0], [{ x: 0.8, y: 0.6, radius: 0.05 }, { x: 0.5, y: 0.01, radius: 0.05 }]) });
      const r = withNovel.step([0, 0, 0]);
      expect(r.info.collision).toBe(true);
    } finally {
      withNovel.close();
    }
  });
});

describe('ArmReachEnv collisions and rendering', () => {
  it('detects collisions with MuJoCo contacts and exact clearance', () => {
    // Arm stretched along +x; links are capsules of radius 0.02 around the x axis from 0 to 0.9.
    const far = env.reset({ state: handState([0, 0, 0], [{ x: 0.5, y: 0.3, radius: 0.05 }]) });
    expect(far[OBS_LAYOUT.ee]).toBeCloseTo(0.9, 12);
    let r = env.step([0, 0, 0]);
    expect(r.info.collision).toBe(false);
    expect(r.info.clearance as number).toBeCloseTo(0.3 - 0.05 - 0.02, 3);

    // Just clear: 0.075 from the link axis, 0.005 gap.
    env.reset({ state: handState([0, 0, 0], [{ x: 0.5, y: 0.075, radius: 0.05 }]) });
    r = env.step([0, 0, 0]);
    expect(r.info.collision).toBe(false);
    expect(r.info.clearance as number).toBeCloseTo(0.005, 3);

    // Overlapping by 0.01: MuJoCo reports a contact and the exact clearance is negative.
    env.reset({ state: handState([0, 0, 0], [{ x: 0.5, y: 0.06, radius: 0.05 }]) });
    r = env.step([0, 0, 0]);
    expect(r.info.collision).toBe(true);
    expect(r.info.collided).toBe(true);
    expect(r.info.clearance as number).toBeLessThan(0.01);
    expect(r.reward).toBeLessThan(-1);

    // Sweeping link 3 into an obstacle placed beside it.
    env.reset({ state: handState([0, 0, 0], [{ x: 0.8, y: 0.12, radius: 0.05 }]) });
    let hit = false;
    for (let t = 0; t < 10 && !hit; t++) hit = env.step([0, 0, 1.5]).info.collision === true;
    expect(hit).toBe(true);
  });

  it('renders links, obstacles and target', () => {
    env.reset({ seed: 1 });
    const scene = env.render();
    const labels = scene.shapes.map((s) => s.label);
    expect(labels).toEqual(expect.arrayContaining(['link1', 'link2', 'link3', 'obstacle0', 'target']));
    expect(scene.shapes.filter((s) => s.kind === 'segment')).toHaveLength(3);
    const link3 = scene.shapes.find((s) => s.label === 'link3')!;
    const obs = env.reset({ seed: 1 });
    expect(link3.points![1]![0]).toBeCloseTo(obs[OBS_LAYOUT.ee]!, 12);
  });

  it('close() is idempotent and later calls throw', async () => {
    const tmp = await ArmReachEnv.create();
    tmp.reset({ seed: 0 });
    tmp.close();
    tmp.close();
    expect(() => tmp.step([0, 0, 0])).toThrow(/closed/);
    expect(() => tmp.reset({ seed: 0 })).toThrow(/closed/);
  });
});

describe('arm-reach expert', () => {
  it('solves >= 95% of seeded episodes and takes both detours', () => {
    const episodes = 40;
    const demos = collectDemos(env, { episodes, seed: 2024 });
    const success = demos.filter((d) => d.success).length / episodes;
    const left = demos.filter((d) => d.mode === 'left').length / episodes;
    const right = demos.filter((d) => d.mode === 'right').length / episodes;
    const meanSteps = demos.reduce((s, d) => s + d.actions.length, 0) / episodes;
    console.log(
      `[arm-reach expert] ${episodes} episodes: success ${(100 * success).toFixed(1)}%, ` +
        `left ${(100 * left).toFixed(1)}%, right ${(100 * right).toFixed(1)}%, mean length ${meanSteps.toFixed(1)} steps`,
    );
    expect(success).toBeGreaterThanOrEqual(0.95);
    expect(left).toBeGreaterThanOrEqual(0.2);
    expect(right).toBeGreaterThanOrEqual(0.2);
    for (const d of demos) {
      expect(d.observations).toHaveLength(d.actions.length + 1);
      expect(d.rewards).toHaveLength(d.actions.length);
      for (const a of d.actions) for (const v of a) expect(Math.abs(v)).toBeLessThanOrEqual(env.maxJointSpeed);
    }
  });

  it('also drives the position action mode', async () => {
    const pos = await ArmReachEnv.create({ actionMode: 'position' });
    try {
      const demos = collectDemos(pos, { episodes: 6, seed: 77 });
      expect(demos.filter((d) => d.success).length).toBeGreaterThanOrEqual(5);
      // Position actions are absolute joint targets inside the joint limits.
      for (const a of demos[0]!.actions) for (let j = 0; j < 3; j++) expect(Math.abs(a[j]!)).toBeLessThanOrEqual(JOINT_LIMITS[j]![1]);
    } finally {
      pos.close();
    }
  });

  it('keeps the requested safety margin from obstacles and validates it', () => {
    const clearances = (margin: number): number[] =>
      collectDemos(env, { episodes: 6, seed: 5, safetyMargin: margin }).filter((d) => d.success).map((d) => {
        env.reset({ seed: d.seed });
        const obstacles = env.getObstacles();
        return Math.min(...d.observations.map((o) => armClearance(Array.from(o.subarray(0, 3)), obstacles)));
      });
    const tight = clearances(0.02);
    const wide = clearances(0.06);
    console.log(`[arm-reach expert] min clearance per episode, margin 0.02: ${tight.map((c) => c.toFixed(3)).join(' ')}; margin 0.06: ${wide.map((c) => c.toFixed(3)).join(' ')}`);
    expect(wide.length).toBeGreaterThanOrEqual(5);
    // Executed paths track the planned waypoints to within about a centimetre.
    for (const c of wide) expect(c).toBeGreaterThan(0.045);
    expect(Math.min(...wide)).toBeGreaterThan(Math.min(...tight));
    expect(() => collectDemos(env, { episodes: 1, seed: 1, safetyMargin: -0.1 })).toThrow(/safetyMargin must be a number in \[0, 0.2\]/);
    expect(() => collectDemos(env, { episodes: 1, seed: 1, safetyMargin: Number.NaN })).toThrow(/safetyMargin/);
  });

  it('perturbs executed actions with --action-noise (DART) and records the expert\'s own actions', () => {
    // Residual between the joint velocity the arm actually had over a step and the recorded
    // action: without noise the env tracks velocity actions closely, with noise the residual is
    // the injected noise (its standard deviation and its step-to-step correlation).
    const residuals = (actionNoise?: { std: number; correlation?: number }) => {
      const demos = collectDemos(env, { episodes: 6, seed: 5, actionNoise });
      let sq = 0;
      let n = 0;
      let lag = 0;
      let lagN = 0;
      for (const d of demos) {
        let prev: number[] | undefined;
        for (let k = 0; k + 1 < d.actions.length; k++) {
          const r = [0, 1, 2].map((j) => (d.observations[k + 1]![j]! - d.observations[k]![j]!) / env.dt - d.actions[k]![j]!);
          for (const v of r) sq += v * v;
          n += 3;
          if (prev) for (let j = 0; j < 3; j++) lag += prev[j]! * r[j]!;
          if (prev) lagN += 3;
          prev = r;
        }
        for (const a of d.actions) for (const v of a) expect(Math.abs(v)).toBeLessThanOrEqual(env.maxJointSpeed);
      }
      return { rms: Math.sqrt(sq / n), lag1: lag / lagN / (sq / n), successes: demos.filter((d) => d.success).length, demos };
    };
    const clean = residuals();
    const white = residuals({ std: 0.3 });
    const red = residuals({ std: 0.3, correlation: 0.8 });
    console.log(`[arm-reach expert] executed - recorded velocity rms: clean ${clean.rms.toFixed(4)}, noise 0.3 ${white.rms.toFixed(4)} (lag-1 corr ${white.lag1.toFixed(3)}), noise 0.3 / 0.8 ${red.rms.toFixed(4)} (lag-1 corr ${red.lag1.toFixed(3)})`);
    expect(clean.rms).toBeLessThan(0.05);
    expect(white.rms).toBeGreaterThan(0.2);
    expect(white.rms).toBeLessThan(0.4);
    expect(Math.abs(white.lag1)).toBeLessThan(0.3);
    expect(red.lag1).toBeGreaterThan(0.6);
    // The expert corrects the perturbations: the noisy demonstrations still succeed.
    expect(white.successes).toBeGreaterThanOrEqual(5);
    // std 0 is the noiseless collection, draw for draw.
    const zero = residuals({ std: 0 });
    expect(zero.demos.map((d) => d.observations.length)).toEqual(clean.demos.map((d) => d.observations.length));
    expect(Array.from(zero.demos[0]!.observations.at(-1)!)).toEqual(Array.from(clean.demos[0]!.observations.at(-1)!));
    expect(() => collectDemos(env, { episodes: 1, seed: 1, actionNoise: { std: -1 } })).toThrow(/actionNoise.std must be a finite number >= 0/);
    expect(() => collectDemos(env, { episodes: 1, seed: 1, actionNoise: { std: Number.NaN } })).toThrow(/actionNoise.std/);
    expect(() => collectDemos(env, { episodes: 1, seed: 1, actionNoise: { std: 0.1, correlation: 1 } })).toThrow(/actionNoise.correlation must be in \[0, 1\)/);
  });

  it('plans around a novel obstacle by switching to the free side', () => {
    const obs = env.reset({ seed: 31 });
    const free = planArmReach(obs, { rng: new EnvRng(1), side: 'left' });
    expect(free?.mode).toBe('left');
    // Block the left corridor (local +y of the base->obstacle axis) with a novel obstacle.
    const [ox, oy] = [obs[OBS_LAYOUT.obstacles]!, obs[OBS_LAYOUT.obstacles + 1]!];
    const n = Math.hypot(ox, oy);
    const blocker = { x: ox - (oy / n) * 0.25, y: oy + (ox / n) * 0.25, radius: 0.14 };
    const blocked = env.reset({ seed: 31, extraObstacles: [blocker] });
    const plan = planArmReach(blocked, { rng: new EnvRng(1), side: 'left' });
    expect(plan).not.toBeNull();
    expect(plan!.requestedSide).toBe('left');
    expect(plan!.mode).toBe('right');
    const obstacles = env.getObstacles();
    for (const q of plan!.waypoints) expect(armClearance(Array.from(q), obstacles)).toBeGreaterThan(0);
    expect(() => planArmReach(new Float64Array(3), { rng: new EnvRng(1) })).toThrow(/observation must have 16 entries/);
  });
});
