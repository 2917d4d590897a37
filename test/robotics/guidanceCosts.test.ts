/** Guidance costs on action chunks: zero / positive cases, exact geometry, gradients, shapes, validation, leaks. */
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import {
  LINK_LENGTHS,
  LINK_RADIUS,
  armClearance,
  endEffector,
  forwardKinematics,
  pointSegmentDistance,
  type Vec2,
} from '../../domains/robotics/env/armReachKinematics.js';
import { ABSENT_OBSTACLE, OBS_LAYOUT } from '../../domains/robotics/env/armReachSpec.js';
import {
  armForwardKinematics,
  armGoalDistance,
  armJointLimits,
  armJointTrajectory,
  armObstacleClearance,
  parseGuideSpec,
  pushtAgentPath,
  pushtForbiddenRegion,
  pushtRegionViolations,
  smoothness,
  workspaceLimits,
  type Circle,
} from '../../domains/robotics/guidance/index.js';
import type { ChunkCost } from '../../domains/robotics/policy/policy.js';
import { PushTEnv } from '../../domains/robotics/env/pusht.js';

type Chunk = number[][]; // [Tp][A]
type Window = ArrayLike<number>[];

const DT = 0.1;

function evalCost(cost: ChunkCost, chunks: Chunk[], obs: Window[]): number[] {
  return tf.tidy(() => Array.from(cost(tf.tensor3d(chunks), { obs }).dataSync()));
}

function gradient(cost: ChunkCost, chunks: Chunk[], obs: Window[]): Float32Array {
  return tf.tidy(() => {
    const a = tf.tensor3d(chunks);
    return tf.grad((x: tf.Tensor) => tf.sum(cost(x, { obs })))(a).dataSync() as Float32Array;
  });
}

/** Cost before and after one gradient step of length `step` (Euclidean, over the whole chunk). */
function descend(cost: ChunkCost, chunk: Chunk, obs: Window, step: number): { before: number; after: number; grad: Float32Array } {
  const grad = gradient(cost, [chunk], [obs]);
  const norm = Math.hypot(...grad);
  expect(norm).toBeGreaterThan(0);
  const A = chunk[0]!.length;
  const moved = chunk.map((a, k) => a.map((v, j) => v - (step * grad[k * A + j]!) / norm));
  return { before: evalCost(cost, [chunk], [obs])[0]!, after: evalCost(cost, [moved], [obs])[0]!, grad };
}

function line(from: Vec2, to: Vec2, n: number): Chunk {
  return Array.from({ length: n }, (_, k) => [from[0] + ((to[0] - from[0]) * k) / (n - 1), from[1] + ((to[1] - from[1]) * k) / (n - 1)]);
}

function pushtObs(agent: Vec2): number[] {
  return [agent[0], agent[1], 300, 300, 0.5];
}

/** arm-reach observation with the arm at q, the given target and obstacles (absent slots as ABSENT_OBSTACLE). */
function armObs(q: number[], target: Vec2, obstacles: Circle[] = []): Float64Array {
  const o = new Float64Array(OBS_LAYOUT.size);
  o.set(q, OBS_LAYOUT.q);
  o.set(endEffector(q), OBS_LAYOUT.ee);
  o.set(target, OBS_LAYOUT.target);
  for (let i = 0; i < 3; i++) {
    const c = obstacles[i] ?? { x: ABSENT_OBSTACLE.x, y: ABSENT_OBSTACLE.y, r: 0 };
    o.set([c.x, c.y, c.r], OBS_LAYOUT.obstacles + 3 * i);
  }
  return o;
}

/** Joint positions along a velocity chunk (float64 reference): q_k = q_t + dt * sum_{j=To-1}^{k} a_j. */
function trajectory(q0: number[], chunk: Chunk, To: number): number[][] {
  const q = [...q0];
  return chunk.map((a, k) => {
    if (k >= To - 1) for (let j = 0; j < 3; j++) q[j]! += DT * a[j]!;
    return [...q];
  });
}

function constant(a: number[], n: number): Chunk {
  return Array.from({ length: n }, () => [...a]);
}

const TP = 8;
const TO = 2;

describe('pushtAgentPath (the PD-driven agent through a chunk of targets)', () => {
  it('tracks the simulator\'s agent within ~1 px over a chunk, from a moving start', () => {
    const env = new PushTEnv({ seed: 0 });
    const errs: number[] = [];
    const before = tf.memory().numTensors;
    for (let ep = 0; ep < 6; ep++) {
      let o = env.reset({ seed: ep });
      let prev = o;
      for (let i = 0; i < 5; i++) {
        prev = o;
        o = env.step([o[0]! + 40 * Math.cos(i + ep), o[1]! + 40 * Math.sin(i + ep)]).observation;
      }
      const chunk: Chunk = [[0, 0]];
      for (let k = 1; k < TP; k++) chunk.push([Math.min(500, Math.max(10, o[0]! + 60 * Math.cos(0.4 * k + ep))), Math.min(500, Math.max(10, o[1]! + 60 * Math.sin(0.3 * k)))]);
      const path = tf.tidy(() => {
        const { path: p, mask } = pushtAgentPath(tf.tensor3d([chunk]), { obs: [[prev, o]] });
        // Substeps before the present row are masked out.
        expect(Array.from(mask.dataSync().slice(0, 10)).every((m) => m === 0)).toBe(true);
        expect(Array.from(mask.dataSync().slice(10)).every((m) => m === 1)).toBe(true);
        return p.arraySync()[0]!;
      });
      // Row k (k >= To - 1 = 1) is held from the present: the state after it is path substep 10 k + 9.
      for (let k = 1; k < TP; k++) {
        const r = env.step(chunk[k]!).observation;
        errs.push(Math.hypot(r[0]! - path[10 * k + 9]![0]!, r[1]! - path[10 * k + 9]![1]!));
      }
    }
    env.close();
    expect(tf.memory().numTensors).toBe(before);
    errs.sort((a, b) => a - b);
    // The only approximation is the start velocity (last two frames over 0.1 s), whose error
    // decays along the chunk; measured: median 0.22 px, max 1.16 px over 6 x 7 steps.
    console.log(`agent path vs simulator over ${errs.length} steps: median ${errs[errs.length >> 1]!.toFixed(3)} px, max ${errs.at(-1)!.toFixed(3)} px`);
    expect(errs[errs.length >> 1]!).toBeLessThan(0.5);
    expect(errs.at(-1)!).toBeLessThan(2);
  });

  it("model 'path' sees an agent that cuts across the circle while its targets stay outside", () => {
    const circle: Circle = { x: 256, y: 256, r: 30 };
    const win = [pushtObs([256, 190]), pushtObs([256, 190])];
    // The agent sits just above the circle; the targets jump to the far side round the circle's
    // edge (all 55+ px from the centre), so the lagging agent is pulled straight through.
    const chunk: Chunk = constant([256, 190], TP).map((a, k) => (k >= 1 ? [256 + (k % 2 === 0 ? 60 : -60), 330] : a));
    const targets = pushtForbiddenRegion({ circles: [circle], margin: 20 });
    const path = pushtForbiddenRegion({ circles: [circle], margin: 20, model: 'path' });
    expect(evalCost(targets, [chunk], [win])[0]).toBe(0);
    expect(evalCost(path, [chunk], [win])[0]).toBeGreaterThan(100);
    const { before, after, grad } = descend(path, chunk, win, 1);
    expect(grad.every(Number.isFinite)).toBe(true);
    expect(after).toBeLessThan(before);
    expect(() => pushtForbiddenRegion({ circles: [circle], margin: 20, model: 'pd' as 'path' })).toThrow(/model/);
  });
});

describe('pushtForbiddenRegion', () => {
  const circle: Circle = { x: 256, y: 256, r: 30 };
  const cost = pushtForbiddenRegion({ circles: [circle], margin: 20 });
  const win = [pushtObs([100, 256]), pushtObs([100, 256])];

  it('is zero around the circle and positive through it, with the reference value', () => {
    const through = line([100, 256], [400, 256], TP);
    const around = line([100, 150], [400, 150], TP);
    const [cThrough, cAround] = evalCost(cost, [through, around], [win, win]);
    expect(cAround).toBe(0);
    let ref = 0;
    through.forEach((a, k) => {
      if (k >= TO - 1) ref += Math.max(0, 50 - Math.hypot(a[0]! - 256, a[1]! - 256)) ** 2;
    });
    expect(ref).toBeGreaterThan(0);
    expect(cThrough).toBeCloseTo(ref, 2);
  });

  it('ignores past chunk steps (k < To - 1)', () => {
    const chunk = constant([400, 400], TP);
    chunk[0] = [256, 256];
    expect(evalCost(cost, [chunk], [win])[0]).toBe(0);
    expect(evalCost(cost, [chunk], [[pushtObs([0, 0])]])[0]).toBeGreaterThan(0); // To = 1: step 0 is the present
  });

  it('gradient is finite, zero outside and pushes targets out of the circle', () => {
    const { before, after, grad } = descend(cost, line([100, 250], [400, 250], TP), win, 1);
    expect(grad.every(Number.isFinite)).toBe(true);
    expect(after).toBeLessThan(before);
    const at = constant([256, 256], TP); // exactly at the centre: smooth distance keeps the gradient finite
    expect(gradient(cost, [at], [win]).every(Number.isFinite)).toBe(true);
    expect(gradient(cost, [line([100, 100], [400, 100], TP)], [win]).every((g) => g === 0)).toBe(true);
  });

  it('empty circle list gives zero cost and zero gradient', () => {
    const c = pushtForbiddenRegion({ circles: [], margin: 5 });
    expect(evalCost(c, [constant([256, 256], TP)], [win])).toEqual([0]);
    expect(gradient(c, [constant([256, 256], TP)], [win]).every((g) => g === 0)).toBe(true);
  });

  it('validates its parameters', () => {
    expect(() => pushtForbiddenRegion({ circles: [{ x: 1, y: 2, r: -1 }], margin: 1 })).toThrow(/circles\[0\]\.r/);
    expect(() => pushtForbiddenRegion({ circles: [{ x: NaN, y: 2, r: 1 }], margin: 1 })).toThrow(/circles\[0\]\.x/);
    expect(() => pushtForbiddenRegion({ circles: [circle], margin: -2 })).toThrow(/margin/);
    expect(() => pushtForbiddenRegion({ circles: 'x' as unknown as Circle[], margin: 1 })).toThrow(/circles/);
    const a3 = tf.zeros([1, TP, 3]);
    expect(() => cost(a3, { obs: [win] })).toThrow(/2 numbers per action/);
    a3.dispose();
    const a2 = tf.zeros([2, TP, 2]);
    expect(() => cost(a2, { obs: [win] })).toThrow(/1 observation windows.*batch size 2/);
    a2.dispose();
  });
});

describe('pushtRegionViolations', () => {
  it('counts steps where the agent disc (radius 15) intersects a circle', () => {
    const circles: Circle[] = [{ x: 100, y: 100, r: 20 }, { x: 300, y: 300, r: 10 }];
    const positions = [
      [100, 140], // 40 < 35? no
      [100, 134], // 34 < 35: yes
      [300, 324], // 24 < 25: yes
      [300, 326], // no
      pushtObs([90, 90]), // raw observation: agent inside the first circle
    ];
    expect(pushtRegionViolations(positions, circles)).toBe(3);
    expect(pushtRegionViolations(positions, [])).toBe(0);
    expect(pushtRegionViolations(positions, circles, 0)).toBe(1);
    expect(() => pushtRegionViolations([[1]], circles)).toThrow(/agentPositions\[0\]/);
  });
});

describe('smoothness', () => {
  const cost = smoothness();
  const win = [pushtObs([0, 0]), pushtObs([0, 0])];

  it('is zero for a constant chunk and sum |a_{k+1} - a_k|^2 otherwise', () => {
    const ramp = line([0, 0], [70, 0], TP); // steps of 10 px
    const [c0, c1] = evalCost(cost, [constant([3, 4], TP), ramp], [win, win]);
    expect(c0).toBe(0);
    expect(c1).toBeCloseTo(7 * 100, 3);
    const zig = constant([0, 0, 0], 4);
    zig[2] = [1, 2, 2];
    expect(evalCost(cost, [zig], [[armObs([0, 0, 0], [0.5, 0.5])]])[0]).toBeCloseTo(18, 5);
  });

  it('a gradient step lowers it', () => {
    const zig = line([0, 0], [70, 0], TP).map((a, k) => [a[0]!, k % 2 ? 5 : -5]);
    const { before, after, grad } = descend(cost, zig, win, 0.5);
    expect(grad.every(Number.isFinite)).toBe(true);
    expect(after).toBeLessThan(before);
  });
});

describe('workspaceLimits', () => {
  const cost = workspaceLimits({ low: [0, 0], high: [512, 512] });
  const win = [pushtObs([0, 0]), pushtObs([0, 0])];

  it('is zero inside the box and the squared excess outside (future steps only)', () => {
    const inside = line([0, 0], [512, 512], TP);
    const outside = constant([100, 100], TP);
    outside[0] = [-1000, -1000]; // past step: ignored
    outside[3] = [-10, 600];
    const [ci, co] = evalCost(cost, [inside, outside], [win, win]);
    expect(ci).toBe(0);
    expect(co).toBeCloseTo(100 + 88 * 88, 2);
  });

  it('a gradient step lowers it', () => {
    const chunk = constant([100, 100], TP);
    chunk[5] = [530, -20];
    const { before, after } = descend(cost, chunk, win, 1);
    expect(after).toBeLessThan(before);
  });

  it('validates its parameters', () => {
    expect(() => workspaceLimits({ low: [0, 0], high: [512] })).toThrow(/high/);
    expect(() => workspaceLimits({ low: [0, 10], high: [512, 5] })).toThrow(/high\[1\]/);
    expect(() => workspaceLimits({ low: [], high: [] })).toThrow(/low/);
  });
});

describe('arm-reach kinematics in tf', () => {
  it('armForwardKinematics matches forwardKinematics to 1e-5', () => {
    let seed = 7;
    const rand = (): number => ((seed = (seed * 16807) % 2147483647) / 2147483647) * 6 - 3;
    const qs = Array.from({ length: 4 }, () => Array.from({ length: 5 }, () => [rand(), rand(), rand()]));
    const pts = tf.tidy(() => armForwardKinematics(tf.tensor3d(qs)).arraySync()) as number[][][][];
    qs.forEach((row, i) =>
      row.forEach((q, j) => {
        const ref = forwardKinematics(q);
        for (let p = 0; p < 4; p++) for (let d = 0; d < 2; d++) expect(Math.abs(pts[i]![j]![p]![d]! - ref[p]![d]!)).toBeLessThan(1e-5);
      }),
    );
  });

  it('armJointTrajectory integrates velocities from the latest observation, past steps stay at q_t', () => {
    const q0 = [0.3, -0.5, 0.8];
    const chunk = Array.from({ length: TP }, (_, k) => [k * 0.1, -0.2, Math.sin(k)]);
    const obs = [armObs([9, 9, 9], [0, 0]), armObs(q0, [0.5, 0.5])]; // oldest first: only the last frame counts
    const q = tf.tidy(() => armJointTrajectory(tf.tensor3d([chunk]), { obs: [obs] }).arraySync()) as number[][][];
    const ref = trajectory(q0, chunk, TO);
    expect(ref[0]).toEqual(q0);
    ref.forEach((r, k) => r.forEach((v, j) => expect(q[0]![k]![j]).toBeCloseTo(v, 5)));
    const qp = tf.tidy(() => armJointTrajectory(tf.tensor3d([chunk]), { obs: [obs] }, { actionMode: 'position' }).arraySync()) as number[][][];
    expect(qp[0]![3]![2]).toBeCloseTo(chunk[3]![2]!, 6);
  });
});

describe('armObstacleClearance', () => {
  const q0 = [0, 0, 0]; // arm straight along +x
  const obstacle: Circle = { x: 0.5, y: 0.25, r: 0.08 };
  const margin = 0.03;
  const cost = armObstacleClearance({ margin });
  const win = (obstacles: Circle[] = [obstacle]): Window => [armObs(q0, [0.2, 0.6], obstacles), armObs(q0, [0.2, 0.6], obstacles)];
  const towards = constant([1, 0, 0], TP); // base rotates up into the obstacle
  const away = constant([-1, 0, 0], TP);
  const fold = constant([0, 1.9, 1.9], TP); // elbows fold up and back, over the obstacle (within the 2 rad/s bound)

  /** Reference: exact capsule-circle distances on the float64 trajectory. */
  function reference(chunk: Chunk, obstacles: Circle[], m: number): { cost: number; minClearance: number } {
    let c = 0;
    let minClearance = Infinity;
    trajectory(q0, chunk, TO).forEach((q, k) => {
      if (k < TO - 1) return;
      const p = forwardKinematics(q);
      minClearance = Math.min(minClearance, armClearance(q, obstacles.map((o) => ({ x: o.x, y: o.y, radius: o.r }))));
      for (const o of obstacles) for (let i = 0; i < 3; i++) c += Math.max(0, o.r + LINK_RADIUS + m - pointSegmentDistance([o.x, o.y], p[i]!, p[i + 1]!)) ** 2;
    });
    return { cost: c, minClearance };
  }

  it('is zero moving away and positive folding into the obstacle, matching the exact geometry', () => {
    const [cTowards, cAway, cFold] = evalCost(cost, [towards, away, fold], [win(), win(), win()]);
    const rT = reference(towards, [obstacle], margin);
    const rA = reference(away, [obstacle], margin);
    const rF = reference(fold, [obstacle], margin);
    expect(rT.minClearance).toBeLessThan(0); // the exact geometry collides
    expect(rF.minClearance).toBeLessThan(margin);
    expect(rA.minClearance).toBeGreaterThan(margin);
    expect(cAway).toBe(0);
    expect(cTowards).toBeGreaterThan(0);
    expect(cFold).toBeGreaterThan(0);
    expect(cTowards).toBeCloseTo(rT.cost, 4);
    expect(cFold).toBeCloseTo(rF.cost, 4);
  });

  it('matches the exact capsule distance for every link (large margin)', () => {
    const big = armObstacleClearance({ margin: 2 });
    const chunk = Array.from({ length: TP }, (_, k) => [0.7 * Math.cos(k), -1.2, 0.9 * Math.sin(2 * k)]);
    const obs2: Circle[] = [obstacle, { x: -0.3, y: 0.4, r: 0.12 }];
    const got = evalCost(big, [chunk], [win(obs2)])[0]!;
    const ref = reference(chunk, obs2, 2).cost;
    expect(Math.abs(got - ref) / ref).toBeLessThan(1e-5);
  });

  it('skips absent slots (r = 0), uses only the last frame, adds extraObstacles once', () => {
    const ghost: Circle = { x: 0.5, y: 0.0, r: 0 }; // on the arm, but absent
    expect(evalCost(cost, [away], [win([ghost])])).toEqual([0]);
    const oldHasObstacle: Window = [armObs(q0, [0.2, 0.6], [obstacle]), armObs(q0, [0.2, 0.6], [])];
    expect(evalCost(cost, [towards], [oldHasObstacle])).toEqual([0]);
    const extra = armObstacleClearance({ margin, extraObstacles: [{ x: obstacle.x, y: obstacle.y, radius: obstacle.r }] });
    expect(evalCost(extra, [towards], [oldHasObstacle])[0]).toBeCloseTo(evalCost(cost, [towards], [win()])[0]!, 5);
    expect(evalCost(extra, [towards], [win()])[0]).toBeCloseTo(evalCost(cost, [towards], [win()])[0]!, 5); // deduplicated
    expect(evalCost(cost, [towards], [[armObs(q0, [0.2, 0.6], [])]])).toEqual([0]);
  });

  it('gradient is finite and one step moves the arm out of the obstacle', () => {
    for (const chunk of [towards, fold]) {
      const { before, after, grad } = descend(cost, chunk, win(), 0.05);
      expect(grad.every(Number.isFinite)).toBe(true);
      expect(after).toBeLessThan(before);
    }
    // Past step k = 0 has no influence on the future trajectory.
    const g = gradient(cost, [towards], [win()]);
    expect([g[0], g[1], g[2]].every((v) => v === 0)).toBe(true);
  });

  it('returns [B] with per-row obstacles and observation horizons', () => {
    const half = constant([0.5, 0, 0], TP);
    const rows = [half, away, half];
    const wins: Window[] = [win(), win(), [armObs(q0, [0.2, 0.6], [obstacle])]]; // row 2: To = 1
    const out = tf.tidy(() => {
      const c = cost(tf.tensor3d(rows), { obs: wins });
      return { shape: c.shape, v: Array.from(c.dataSync()) };
    });
    expect(out.shape).toEqual([3]);
    rows.forEach((r, b) => expect(out.v[b]).toBeCloseTo(evalCost(cost, [r], [wins[b]!])[0]!, 5));
    expect(out.v[0]).toBeGreaterThan(0);
    expect(out.v[2]).toBeGreaterThan(out.v[0]!); // To = 1: one more step (k = 0) is in the future
  });

  it('its gradient matches central finite differences (velocity and position actions, substeps, several obstacles)', () => {
    const obs2: Circle[] = [obstacle, { x: 0.2, y: 0.45, r: 0.1 }, { x: 0.75, y: -0.1, r: 0.06 }];
    const chunk = Array.from({ length: TP }, (_, k) => [0.9 + 0.3 * Math.sin(k), -0.8 + 0.2 * k, 0.5 * Math.cos(3 * k)]);
    for (const c of [armObstacleClearance({ margin: 0.1, substeps: 3 }), armObstacleClearance({ margin: 0.1, actionMode: 'position', substeps: 2 })]) {
      const g = gradient(c, [chunk], [win(obs2)]);
      expect(evalCost(c, [chunk], [win(obs2)])[0]).toBeGreaterThan(0);
      let checked = 0;
      for (let k = 0; k < TP; k++) {
        for (let j = 0; j < 3; j++) {
          const h = 1e-3;
          const plus = chunk.map((a) => [...a]);
          const minus = chunk.map((a) => [...a]);
          plus[k]![j]! += h;
          minus[k]![j]! -= h;
          const fd = (evalCost(c, [plus], [win(obs2)])[0]! - evalCost(c, [minus], [win(obs2)])[0]!) / (2 * h);
          expect(Math.abs(g[k * 3 + j]! - fd)).toBeLessThan(2e-3 * Math.max(1, Math.abs(fd)));
          if (Math.abs(fd) > 1e-3) checked++;
        }
      }
      expect(checked).toBeGreaterThan(10);
    }
  });

  it('clamps velocity actions to the joint speed bound as the environment does; clamped entries get no gradient', () => {
    const c = armObstacleClearance({ margin }); // default bound 2 rad/s
    const over = constant([5, 0, 0], TP);
    const at2 = constant([2, 0, 0], TP);
    expect(evalCost(c, [over], [win()])[0]).toBeGreaterThan(0);
    expect(evalCost(c, [over], [win()])[0]).toBeCloseTo(evalCost(c, [at2], [win()])[0]!, 6);
    const g = gradient(c, [over], [win()]);
    for (let k = 0; k < TP; k++) expect(g[k * 3]).toBe(0);
    expect(gradient(c, [constant([1.5, 0, 0], TP)], [win()]).some((v) => v !== 0)).toBe(true);
    // The tensor-op trajectory (goal, limits) clamps the same way.
    const traj = tf.tidy(() => armJointTrajectory(tf.tensor3d([over]), { obs: [win()] }).arraySync()) as number[][][];
    expect(traj[0]![TP - 1]![0]).toBeCloseTo(0.2 * (TP - TO + 1), 5);
  });

  it('with substeps, sees a link swept through a small obstacle between two control instants', () => {
    // Base turns 0.5 rad per control step (5 rad/s): link 1 jumps over a thin obstacle at 0.25 rad.
    const small: Circle = { x: 0.3 * Math.cos(0.25), y: 0.3 * Math.sin(0.25), r: 0.01 };
    const fast = constant([5, 0, 0], TP);
    const w = win([small]);
    const at = (S: number, m = 0): number => evalCost(armObstacleClearance({ margin: m, substeps: S, maxJointSpeed: 10 }), [fast], [w])[0]!;
    expect(at(1)).toBe(0); // the poses at the control instants (0.5, 1.0, ... rad) all clear it
    expect(at(4)).toBeGreaterThan(0); // the pose at 0.25 rad is inside it
    // Substeps average per control period: a chunk standing still costs the same at any S.
    const still = constant([0, 0, 0], TP);
    const near = win([{ x: 0.5, y: 0.03, r: 0.02 }]);
    const c1 = evalCost(armObstacleClearance({ margin, substeps: 1 }), [still], [near])[0]!;
    expect(c1).toBeGreaterThan(0);
    expect(evalCost(armObstacleClearance({ margin, substeps: 5 }), [still], [near])[0]).toBeCloseTo(c1, 6);
    // Position actions interpolate from q_t to the first target, then between targets.
    const pos = Array.from({ length: TP }, () => [0.5, 0, 0]);
    const pw = win([small]);
    const posCost = (S: number): number => evalCost(armObstacleClearance({ margin: 0, substeps: S, actionMode: 'position' }), [pos], [pw])[0]!;
    expect(posCost(1)).toBe(0);
    expect(posCost(2)).toBeGreaterThan(0); // halfway from q_t = 0 to 0.5 rad: 0.25 rad
    expect(() => armObstacleClearance({ margin, substeps: 0 })).toThrow(/substeps: expected >= 1/);
    expect(() => armObstacleClearance({ margin, maxJointSpeed: 0 })).toThrow(/maxJointSpeed must be > 0/);
    expect(() => armObstacleClearance({ margin, substeps: 1.5 })).toThrow(/substeps: expected an integer/);
  });

  it('validates its parameters and observations', () => {
    expect(() => armObstacleClearance({ margin: -0.1 })).toThrow(/margin/);
    expect(() => armObstacleClearance({ margin: 0.1, extraObstacles: [{ x: 0, y: 0, r: 0 }] })).toThrow(/extraObstacles\[0\]\.r/);
    expect(() => armObstacleClearance({ margin: 0.1, dt: 0 })).toThrow(/dt/);
    expect(() => armObstacleClearance({ margin: 0.1, actionMode: 'torque' as 'velocity' })).toThrow(/actionMode/);
    const a = tf.zeros([1, TP, 3]);
    expect(() => cost(a, { obs: [[[1, 2, 3]]] })).toThrow(/16 entries/);
    expect(() => cost(a, { obs: [Array.from({ length: TP + 1 }, () => armObs(q0, [0, 0]))] })).toThrow(/more than the chunk length/);
    a.dispose();
  });
});

describe('armGoalDistance', () => {
  const q0 = [0.2, 0.4, -0.3];
  const chunk = Array.from({ length: TP }, (_, k) => [0.5, -0.3 + 0.05 * k, 0.2]);
  const qEnd = trajectory(q0, chunk, TO)[TP - 1]!;
  const cost = armGoalDistance();

  it('is zero when the last step reaches the target, the squared distance otherwise', () => {
    const reached = endEffector(qEnd);
    const other: Vec2 = [-0.4, 0.5];
    const [c0, c1] = evalCost(cost, [chunk, chunk], [[armObs(q0, reached), armObs(q0, reached)], [armObs(q0, reached), armObs(q0, other)]]);
    expect(c0).toBeLessThan(1e-9);
    expect(c1).toBeCloseTo((reached[0] - other[0]) ** 2 + (reached[1] - other[1]) ** 2, 5);
  });

  it('a gradient step brings the end effector closer', () => {
    const { before, after, grad } = descend(cost, chunk, [armObs(q0, [0, 0]), armObs(q0, [-0.4, 0.5])], 0.05);
    expect(grad.every(Number.isFinite)).toBe(true);
    expect(after).toBeLessThan(before);
  });
});

describe('armJointLimits', () => {
  const cost = armJointLimits({ margin: 0.1 });
  const q0 = [0, 2.3, 0];

  it('is zero within limits - margin and positive beyond, with the reference value', () => {
    const out = constant([0, 1, 0], TP); // q2 reaches 3.0 > 2.5
    const back = constant([0, -1, 0], TP);
    const w = [armObs(q0, [0, 0]), armObs(q0, [0, 0])];
    const [cOut, cBack] = evalCost(cost, [out, back], [w, w]);
    expect(cBack).toBe(0);
    let ref = 0;
    trajectory(q0, out, TO).forEach((q, k) => {
      if (k >= TO - 1) ref += Math.max(0, Math.abs(q[1]!) - 2.6 + 0.1) ** 2;
    });
    expect(cOut).toBeCloseTo(ref, 5);
    const { before, after } = descend(cost, out, w, 0.1);
    expect(after).toBeLessThan(before);
  });

  it('validates its margin', () => {
    expect(() => armJointLimits({ margin: 3 })).toThrow(/half range/);
    expect(() => armJointLimits({ margin: Number.NaN })).toThrow(/margin/);
  });
});

describe('parseGuideSpec', () => {
  it('parses arm-reach and pusht specs into scaled terms that evaluate to [B]', () => {
    const arm = parseGuideSpec('obstacle:2.0, smooth:0.1,goal:1,limits:1', 'arm-reach');
    expect(arm.map((t) => [t.name, t.scale])).toEqual([['obstacle', 2], ['smooth', 0.1], ['goal', 1], ['limits', 1]]);
    const w = [armObs([0, 0, 0], [0.5, 0.2], [{ x: 0.5, y: 0.08, r: 0.05 }]), armObs([0, 0, 0], [0.5, 0.2], [{ x: 0.5, y: 0.08, r: 0.05 }])];
    for (const t of arm) expect(evalCost(t.cost, [constant([0.5, 0, 0], TP), constant([0, 0, 0], TP)], [w, w])).toHaveLength(2);
    expect(evalCost(arm[0]!.cost, [constant([0, 0, 0], TP)], [w])[0]).toBeGreaterThan(0);

    const push = parseGuideSpec('region:3,smooth:1e-3,limits', 'pusht', { constraints: [{ x: 256, y: 256, r: 30 }] });
    expect(push.map((t) => [t.name, t.scale])).toEqual([['region', 3], ['smooth', 0.001], ['limits', 1]]);
    const pw = [pushtObs([0, 0]), pushtObs([0, 0])];
    expect(evalCost(push[0]!.cost, [constant([256, 270], TP)], [pw])[0]).toBeGreaterThan(0);
    expect(evalCost(push[2]!.cost, [constant([600, 10], TP)], [pw])[0]).toBeCloseTo(7 * 88 * 88, 1);

    // arm-reach constraints become extra obstacles
    const withExtra = parseGuideSpec('obstacle:1', 'arm-reach', { constraints: [{ x: 0.6, y: 0, r: 0.05 }] });
    const free = [armObs([0, 0, 0], [0.5, 0.2]), armObs([0, 0, 0], [0.5, 0.2])];
    expect(evalCost(withExtra[0]!.cost, [constant([0, 0, 0], TP)], [free])[0]).toBeGreaterThan(0);
    expect(parseGuideSpec('smooth:0.5', 'my-env')).toHaveLength(1);
  });

  it('rejects bad specs with clear errors', () => {
    expect(() => parseGuideSpec('obstacle:2,speed:1', 'arm-reach')).toThrow(/unknown guidance term 'speed'.*obstacle, goal, smooth, limits, region/);
    expect(() => parseGuideSpec('goal:abc', 'arm-reach')).toThrow(/scale of 'goal' must be a finite number/);
    expect(() => parseGuideSpec('goal:', 'arm-reach')).toThrow(/scale of 'goal'/);
    expect(() => parseGuideSpec('goal:1x', 'arm-reach')).toThrow(/scale of 'goal'/);
    expect(() => parseGuideSpec('goal:Infinity', 'arm-reach')).toThrow(/scale of 'goal'/);
    expect(() => parseGuideSpec('goal:-1', 'arm-reach')).toThrow(/>= 0/);
    expect(() => parseGuideSpec('goal:1:2', 'arm-reach')).toThrow(/more than one ':'/);
    expect(() => parseGuideSpec('goal:1,,smooth:1', 'arm-reach')).toThrow(/empty entry/);
    expect(() => parseGuideSpec('goal:1,goal:2', 'arm-reach')).toThrow(/more than once/);
    expect(() => parseGuideSpec('', 'arm-reach')).toThrow(/name:scale/);
    expect(() => parseGuideSpec('region:1', 'arm-reach')).toThrow(/not available for env 'arm-reach'/);
    expect(() => parseGuideSpec('obstacle:1', 'pusht')).toThrow(/not available for env 'pusht'.*region/);
    expect(() => parseGuideSpec('region:1', 'pusht')).toThrow(/needs forbidden circles/);
    expect(() => parseGuideSpec('smooth:1', '')).toThrow(/env/);
  });

  it('projection mode applies to the constraint terms only and validates its options', () => {
    const terms = parseGuideSpec('obstacle:1,goal:0.5,smooth:0.1,limits:2', 'arm-reach', { mode: 'projection', iterations: 4, maxStep: 0.3 });
    expect(terms.map((t) => [t.name, t.mode, t.iterations, t.maxStep])).toEqual([
      ['obstacle', 'projection', 4, 0.3],
      ['goal', 'gradient', undefined, undefined],
      ['smooth', 'gradient', undefined, undefined],
      ['limits', 'projection', 4, 0.3],
    ]);
    expect(parseGuideSpec('obstacle:1', 'arm-reach').map((t) => t.mode)).toEqual(['gradient']);
    expect(() => parseGuideSpec('obstacle:5', 'arm-reach', { mode: 'projection' })).toThrow(/Polyak step multiplier in \(0, 4\], received 5/);
    expect(() => parseGuideSpec('obstacle:0', 'arm-reach', { mode: 'projection' })).toThrow(/Polyak/);
    expect(() => parseGuideSpec('obstacle:1', 'arm-reach', { mode: 'hard' as 'projection' })).toThrow(/mode: unknown value 'hard'/);
    expect(() => parseGuideSpec('obstacle:1', 'arm-reach', { iterations: 3 })).toThrow(/iterations only apply to mode 'projection'/);
    expect(() => parseGuideSpec('obstacle:1', 'arm-reach', { mode: 'projection', iterations: 0 })).toThrow(/iterations: expected >= 1/);
    expect(() => parseGuideSpec('obstacle:1', 'arm-reach', { maxStep: 0.3 })).toThrow(/maxStep only applies/);
    expect(() => parseGuideSpec('obstacle:1', 'arm-reach', { mode: 'projection', maxStep: 0 })).toThrow(/maxStep must be > 0/);
    expect(() => parseGuideSpec('obstacle:1', 'arm-reach', { substeps: 0 })).toThrow(/substeps: expected >= 1/);
  });
});

describe('tensor hygiene', () => {
  it('costs and their gradients leak no tensors inside tf.tidy; outside, only the result is new', () => {
    const armWin = [armObs([0, 0, 0], [0.3, 0.5], [{ x: 0.5, y: 0.25, r: 0.08 }]), armObs([0, 0, 0], [0.3, 0.5], [{ x: 0.5, y: 0.25, r: 0.08 }])];
    const pushWin = [pushtObs([0, 0]), pushtObs([0, 0])];
    const cases: [ChunkCost, Chunk, Window][] = [
      [pushtForbiddenRegion({ circles: [{ x: 256, y: 256, r: 30 }], margin: 20 }), line([100, 256], [400, 256], TP), pushWin],
      [pushtForbiddenRegion({ circles: [], margin: 20 }), line([100, 256], [400, 256], TP), pushWin],
      [workspaceLimits({ low: [0, 0], high: [512, 512] }), line([-10, 256], [600, 256], TP), pushWin],
      [smoothness(), line([100, 256], [400, 256], TP), pushWin],
      [armObstacleClearance({ margin: 0.03, extraObstacles: [{ x: 0.2, y: 0.1, r: 0.05 }] }), constant([1, 0, 0], TP), armWin],
      [armGoalDistance(), constant([1, 0, 0], TP), armWin],
      [armJointLimits({ margin: 0.1 }), constant([0, 5, 0], TP), armWin],
    ];
    const start = tf.memory().numTensors;
    tf.tidy(() => {
      for (const [cost, chunk, win] of cases) {
        const a = tf.tensor3d([chunk, chunk]);
        const c = cost(a, { obs: [win, win] });
        expect(c.shape).toEqual([2]);
        const g = tf.grad((x: tf.Tensor) => tf.sum(cost(x, { obs: [win, win] })))(a);
        expect(g.shape).toEqual([2, TP, chunk[0]!.length]);
      }
    });
    expect(tf.memory().numTensors).toBe(start);
    const a = tf.tensor3d([constant([1, 0, 0], TP)]);
    const before = tf.memory().numTensors;
    for (const [cost, , win] of cases.slice(4)) {
      const c = cost(a, { obs: [win] });
      expect(tf.memory().numTensors).toBe(before + 1);
      c.dispose();
    }
    a.dispose();
    expect(tf.memory().numTensors).toBe(start);
  });
});
