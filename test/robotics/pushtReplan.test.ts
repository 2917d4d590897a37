import { describe, expect, it } from 'vitest';
import { pushtReplanCheck } from '../../domains/robotics/env/pushtReplan.js';
import { PushTEnv } from '../../domains/robotics/env/pusht.js';

const at = (x: number, y: number): Float64Array => Float64Array.from([x, y, 300, 300, 0]);
const target = (x: number, y: number): Float64Array => Float64Array.from([x, y]);

describe('pushtReplanCheck', () => {
  const circles = [{ x: 150, y: 100, r: 20 }];

  it('asks for a new chunk when the agent is about to come within the margin of a forbidden circle', () => {
    const check = pushtReplanCheck(circles, { margin: 20 });
    // From rest at (100, 100) towards (160, 100): after one 0.1 s control step the critically
    // damped PD has covered ~26% of the way (x ~ 116), past x = 110 where the margin starts.
    expect(check(at(100, 100), [target(160, 100)], at(100, 100))).toBe(true);
    // Away from the circle, or holding still: no.
    expect(check(at(100, 100), [target(40, 100)], at(100, 100))).toBe(false);
    expect(check(at(100, 100), [target(100, 100), target(100, 100)], at(100, 100))).toBe(false);
    // No circles: never.
    expect(pushtReplanCheck([], { margin: 20 })(at(100, 100), [target(150, 100)])).toBe(false);
    // A non-finite target cannot be predicted: replan.
    expect(check(at(100, 100), [target(NaN, 100)], at(100, 100))).toBe(true);
  });

  it('carries the velocity of the last control step into the prediction', () => {
    const check = pushtReplanCheck(circles, { margin: 30 });
    // Holding at (100, 100) while moving at 100 px/s towards the circle (previous frame at x = 90):
    // the agent overshoots by ~3.7 px, inside r + 30 = 50 of the centre; from rest it stays out.
    expect(check(at(100, 100), [target(100, 100), target(100, 100)], at(90, 100))).toBe(true);
    expect(check(at(100, 100), [target(100, 100), target(100, 100)], at(100, 100))).toBe(false);
    expect(check(at(100, 100), [target(100, 100), target(100, 100)])).toBe(false);
  });

  it('predicts where the environment moves the agent', () => {
    const env = new PushTEnv();
    try {
      for (const seed of [3, 4, 5]) {
        const obs = env.reset({ seed });
        // A target 60 px away, sideways from the block so the agent touches nothing.
        const [ax, ay] = [obs[0], obs[1]];
        const away = Math.sign(ax - obs[2]) || 1;
        const goal = target(ax + 60 * away, ay);
        const after = env.step(goal).observation;
        // A 3 px circle where the agent really ended up is flagged; the same circle 12 px to the
        // side of it is not: the PD model lands within a few pixels of the simulator.
        const hit = pushtReplanCheck([{ x: after[0], y: after[1], r: 3 }], { margin: 0, lookahead: 1 });
        const miss = pushtReplanCheck([{ x: after[0], y: after[1] + 12, r: 3 }], { margin: 0, lookahead: 1 });
        expect(hit(obs, [goal], obs)).toBe(true);
        expect(miss(obs, [goal], obs)).toBe(false);
      }
    } finally {
      env.close();
    }
  });

  it('rejects bad settings and inputs with a message naming them', () => {
    expect(() => pushtReplanCheck(circles, { margin: -1 })).toThrow(/margin/);
    expect(() => pushtReplanCheck(circles, { margin: 20, lookahead: 0 })).toThrow(/lookahead/);
    expect(() => pushtReplanCheck([{ x: 1, y: NaN, r: 2 }], { margin: 20 })).toThrow(/circles\[0\]\.y/);
    expect(() => pushtReplanCheck('x' as never, { margin: 20 })).toThrow(/circles must be an array/);
    const check = pushtReplanCheck(circles, { margin: 20 });
    expect(() => check(Float64Array.from([NaN, 1, 0, 0, 0]), [target(1, 1)])).toThrow(/finite agent x, y/);
    expect(() => check(at(100, 100), [Float64Array.from([1, 2, 3])])).toThrow(/upcoming\[0\]: expected an action of 2 numbers/);
  });
});
