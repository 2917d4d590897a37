/** Push-T environment: seeding, physics sanity, exact coverage, validation, reward and termination. */
import { describe, expect, it } from 'vitest';
import { ValidationError } from '../../src/util/validate.js';
import { intersectConvex, polygonArea, signedArea } from '../../domains/robotics/env/geometry.js';
import { PushTEnv, PUSHT_STATE_SIZE } from '../../domains/robotics/env/pusht.js';
import { PUSHT_GOAL, TEE_AREA, teeCoverage } from '../../domains/robotics/env/tee.js';

const GOAL = PUSHT_GOAL;
/** Pose of a T moved by (dx, dy) in the goal T's own frame. */
function shiftedGoal(dx: number, dy: number, dAngle = 0): { x: number; y: number; angle: number } {
  const c = Math.cos(GOAL.angle);
  const s = Math.sin(GOAL.angle);
  return { x: GOAL.x + c * dx - s * dy, y: GOAL.y + s * dx + c * dy, angle: GOAL.angle + dAngle };
}

describe('PushTEnv seeding', () => {
  it('is deterministic under a seed', () => {
    const a = new PushTEnv();
    const b = new PushTEnv();
    expect(Array.from(a.reset({ seed: 7 }))).toEqual(Array.from(b.reset({ seed: 7 })));
    for (let t = 0; t < 15; t++) {
      const action = [200 + 10 * t, 150 + 7 * t];
      expect(Array.from(a.step(action).observation)).toEqual(Array.from(b.step(action).observation));
    }
    expect(Array.from(a.getState())).toEqual(Array.from(b.getState()));
    expect(Array.from(a.reset({ seed: 8 }))).not.toEqual(Array.from(b.reset({ seed: 7 })));
  });

  it('reset() without a seed continues the constructor seed stream', () => {
    const a = new PushTEnv({ seed: 3 });
    const b = new PushTEnv({ seed: 3 });
    const first = Array.from(a.reset());
    expect(Array.from(a.reset())).not.toEqual(first);
    expect(Array.from(b.reset())).toEqual(first);
  });

  it('samples resets in the documented ranges', () => {
    const env = new PushTEnv();
    let integerBlocks = 0;
    for (let seed = 0; seed < 100; seed++) {
      const [ax, ay, bx, by, angle] = env.reset({ seed });
      for (const v of [ax, ay]) {
        expect(Number.isInteger(v) && v >= 50 && v < 450).toBe(true);
      }
      // The settling substep only moves the block (beyond float rounding) when it spawned
      // overlapping the agent or a wall (the stem reaches 120 px from the block position): 15 of
      // these 100 seeds.
      if ([bx, by].every((v) => Math.abs(v - Math.round(v)) < 1e-9)) integerBlocks++;
      for (const v of [bx, by]) expect(v >= 90 && v < 410).toBe(true);
      expect(angle >= 0 && angle < 2 * Math.PI).toBe(true);
    }
    expect(integerBlocks).toBeGreaterThanOrEqual(80);
  });
});

describe('PushTEnv physics', () => {
  it('leaves the block alone when the agent does not touch it', () => {
    const env = new PushTEnv();
    env.reset({ state: [80, 80, 300, 300, 0.5] });
    const before = env.getState();
    for (let t = 0; t < 20; t++) {
      const target = t % 2 === 0 ? [60, 120] : [120, 60];
      env.step(target);
    }
    const after = env.getState();
    expect(after.slice(2, 5)).toEqual(before.slice(2, 5));
    expect(after[0]).not.toBe(before[0]);
  });

  it('pushes the bar straight through its centre of gravity without turning it', () => {
    // Bar spans x in [240, 360], y in [300, 330]; the centre of gravity is (300, 345).
    const env = new PushTEnv();
    env.reset({ state: [300, 250, 300, 300, 0] });
    for (let t = 0; t < 10; t++) env.step([300, 330]);
    const [, ay, bx, by, angle] = env.getState();
    expect(by).toBeGreaterThan(305);
    // Frictionless contact: the block keeps one agent radius (15) below the agent centre.
    expect(by - ay).toBeGreaterThan(14.9);
    expect(by - ay).toBeLessThan(15.1);
    expect(bx).toBeCloseTo(300, 6);
    expect(Math.min(angle, 2 * Math.PI - angle)).toBeLessThan(1e-6);
  });

  it('an off-centre push turns the block', () => {
    const env = new PushTEnv();
    env.reset({ state: [350, 250, 300, 300, 0] });
    for (let t = 0; t < 10; t++) env.step([350, 330]);
    const angle = env.getState()[4];
    // Pushing +y right of the centre of gravity turns the T from +x towards +y (angle grows).
    expect(angle).toBeGreaterThan(0.05);
    expect(angle).toBeLessThan(Math.PI);
  });

  it('a full getState() snapshot restores the simulation', () => {
    const a = new PushTEnv();
    a.reset({ state: [300, 250, 300, 300, 0.2] });
    for (let t = 0; t < 5; t++) a.step([310, 330]);
    const snapshot = a.getState();
    expect(snapshot.length).toBe(PUSHT_STATE_SIZE);
    const b = new PushTEnv();
    b.reset({ state: snapshot });
    expect(Array.from(b.getState())).toEqual(Array.from(snapshot));
    for (let t = 0; t < 5; t++) {
      a.step([320, 350]);
      b.step([320, 350]);
    }
    const sa = a.getState();
    const sb = b.getState();
    for (let i = 0; i < PUSHT_STATE_SIZE; i++) expect(Math.abs(sa[i] - sb[i])).toBeLessThan(1e-9);
  });
});

describe('coverage', () => {
  it('convex clipping is exact and orientation independent', () => {
    const sq = (x0: number, y0: number, s: number): [number, number][] => [
      [x0, y0],
      [x0 + s, y0],
      [x0 + s, y0 + s],
      [x0, y0 + s],
    ];
    expect(polygonArea(intersectConvex(sq(0, 0, 2), sq(1, 1, 2)))).toBeCloseTo(1, 12);
    expect(polygonArea(intersectConvex(sq(0, 0, 2), [...sq(1, 1, 2)].reverse()))).toBeCloseTo(1, 12);
    expect(intersectConvex(sq(0, 0, 1), sq(5, 5, 1))).toEqual([]);
    // A diamond inside a square of side 2: area 2.
    const diamond: [number, number][] = [[1, 0], [2, 1], [1, 2], [0, 1]];
    expect(polygonArea(intersectConvex(sq(0, 0, 2), diamond))).toBeCloseTo(2, 12);
    expect(signedArea(sq(0, 0, 2))).toBe(4);
    expect(() => polygonArea([[0, 0], [1, Number.NaN], [1, 1]])).toThrow(/vertex 1/);
  });

  it('matches hand-computed cases', () => {
    expect(TEE_AREA).toBe(6300);
    expect(teeCoverage(GOAL)).toBeCloseTo(1, 12);
    expect(teeCoverage({ x: 60, y: 60, angle: 0 })).toBe(0);
    // Shift by half the bar height (15) along the stem: bar∩bar 120x15, block bar∩goal stem 30x15,
    // stem∩stem 30x75 -> 4500 / 6300.
    expect(teeCoverage(shiftedGoal(0, 15))).toBeCloseTo(4500 / 6300, 10);
    // Shift by half the bar length (60) sideways: only bar∩bar 60x30 -> 1800 / 6300.
    expect(teeCoverage(shiftedGoal(60, 0))).toBeCloseTo(1800 / 6300, 10);
    // Flipped about the body origin: the two Ts only share the bar's outer edge.
    expect(teeCoverage(shiftedGoal(0, 0, Math.PI))).toBeCloseTo(0, 10);
    // Same relations with an axis-aligned goal.
    expect(teeCoverage({ x: 100, y: 100, angle: 0 }, { x: 100, y: 85, angle: 0 })).toBeCloseTo(4500 / 6300, 10);
  });
});

describe('PushTEnv reward and termination', () => {
  it('succeeds at the goal pose', () => {
    const env = new PushTEnv();
    env.reset({ state: [60, 450, GOAL.x, GOAL.y, GOAL.angle] });
    const r = env.step([60, 450]);
    expect(r.info.coverage).toBeCloseTo(1, 9);
    expect(r.reward).toBe(1);
    expect(r.terminated).toBe(true);
    expect(r.truncated).toBe(false);
  });

  it('rewards partial coverage as coverage / 0.95 and truncates at maxSteps', () => {
    const env = new PushTEnv({ maxSteps: 3 });
    const p = shiftedGoal(0, 15);
    env.reset({ state: [60, 450, p.x, p.y, p.angle] });
    const results = [env.step([60, 450]), env.step([60, 450]), env.step([60, 450])];
    expect(results[0].reward).toBeCloseTo(4500 / 6300 / 0.95, 9);
    expect(results.map((r) => r.terminated)).toEqual([false, false, false]);
    expect(results.map((r) => r.truncated)).toEqual([false, false, true]);
    expect(results[2].info.maxReward).toBeCloseTo(4500 / 6300 / 0.95, 9);
    expect(env.maxSteps).toBe(3);
    expect(new PushTEnv().maxSteps).toBe(300);
  });
});

describe('PushTEnv validation', () => {
  it('rejects bad actions without changing the state', () => {
    const env = new PushTEnv();
    env.reset({ seed: 1 });
    env.step([200, 200]);
    const before = Array.from(env.getState());
    expect(() => env.step([1])).toThrow(/PushTEnv.step action: expected 2 numbers, received 1/);
    expect(() => env.step([1, 2, 3])).toThrow(/expected 2 numbers, received 3/);
    expect(() => env.step([Number.NaN, 2])).toThrow(/PushTEnv.step action: entry 0 must be a finite number, received NaN/);
    expect(() => env.step([2, Number.POSITIVE_INFINITY])).toThrow(/entry 1 must be a finite number/);
    expect(() => env.step(null as unknown as number[])).toThrow(/expected an array of numbers/);
    // Bad arguments are ValidationErrors: the command line prints them as one line, servers reject them.
    expect(() => env.step([Number.NaN, 2])).toThrow(ValidationError);
    expect(() => env.reset(7 as unknown as { seed: number })).toThrow(/expected an object \{ seed \} or \{ state \}, received 7/);
    expect(Array.from(env.getState())).toEqual(before);
  });

  it('rejects bad resets, options and use before reset or after close', () => {
    const env = new PushTEnv();
    expect(() => env.step([1, 2])).toThrow(/call reset\(\) first/);
    expect(() => env.reset({ state: [1, 2, 3] })).toThrow(/expected 5 or 10 numbers, received 3/);
    expect(() => env.reset({ state: [1, 2, 3, 4, Number.NaN] })).toThrow(/entry 4 must be a finite number/);
    expect(() => env.reset({ seed: 1.5 })).toThrow(/seed must be an integer/);
    expect(() => env.reset({ seed: 1, state: [1, 2, 3, 4, 5] })).toThrow(/either seed or state/);
    expect(() => new PushTEnv({ maxSteps: 0 })).toThrow(/maxSteps must be a positive integer/);
    expect(() => new PushTEnv({ physics: { velocityIterations: 0 } })).toThrow(/physics.velocityIterations/);
    env.reset({ seed: 2 });
    env.close();
    env.close();
    expect(() => env.step([1, 2])).toThrow(/closed/);
  });
});

describe('PushTEnv render', () => {
  it('describes walls, goal, block and agent', () => {
    const env = new PushTEnv();
    env.reset({ state: [100, 120, GOAL.x, GOAL.y, GOAL.angle] });
    const scene = env.render();
    expect(scene.width).toBe(512);
    const count = (label: string): number => scene.shapes.filter((s) => s.label === label).length;
    expect(count('goal')).toBe(2);
    expect(count('block')).toBe(2);
    expect(count('agent')).toBe(1);
    expect(scene.shapes.filter((s) => s.kind === 'segment').length).toBe(4);
    const agent = scene.shapes.find((s) => s.label === 'agent')!;
    expect(agent.center).toEqual([100, 120]);
    expect(agent.radius).toBe(15);
    const block = scene.shapes.filter((s) => s.label === 'block');
    const goal = scene.shapes.filter((s) => s.label === 'goal');
    block.forEach((b, i) => b.points!.forEach((p, j) => {
      expect(p[0]).toBeCloseTo(goal[i].points![j][0], 6);
      expect(p[1]).toBeCloseTo(goal[i].points![j][1], 6);
    }));
  });
});
