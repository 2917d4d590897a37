import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DiffusionPolicy } from '../../domains/robotics/policy/policy.js';
import { replanClearanceOpt, shippedPolicyDir } from '../../domains/robotics/serve/cli.js';
import { armReachReplanCheck } from '../../domains/robotics/env/armReachReplan.js';
import { armClearance, forwardKinematics } from '../../domains/robotics/env/armReachKinematics.js';
import { OBS_LAYOUT } from '../../domains/robotics/env/armReachSpec.js';

const drive = { dt: 0.1, actionMode: 'velocity' as const, maxJointSpeed: 2 };

/** An observation with the arm at q and the given obstacles (x, y, r) in its slots. */
function observation(q: number[], obstacles: [number, number, number][]): Float64Array {
  const o = new Float64Array(OBS_LAYOUT.size);
  o.set(q, OBS_LAYOUT.q);
  const ee = forwardKinematics(q)[3];
  o.set(ee, OBS_LAYOUT.ee);
  o.set([0.5, 0.5], OBS_LAYOUT.target);
  obstacles.forEach((ob, i) => o.set(ob, OBS_LAYOUT.obstacles + 3 * i));
  return o;
}

describe('armReachReplanCheck', () => {
  // Arm stretched along +x; an obstacle just above the end of the last link, 5 cm clear of it.
  const q0 = [0, 0, 0];
  const obs = observation(q0, [[0.85, 0.12, 0.05]]);
  const up = (w: number): Float64Array => Float64Array.from([w, 0, 0]);

  it('asks for a new chunk when the next actions bring a link within the clearance, not otherwise', () => {
    expect(armClearance(q0, [{ x: 0.85, y: 0.12, radius: 0.05 }])).toBeCloseTo(0.05, 6);
    const check = armReachReplanCheck(drive, { clearance: 0.02 });
    // Turning towards the obstacle (+z rotation lifts the arm) at 0.4 rad/s for 0.1 s moves the
    // tip ~3.6 cm up: clearance falls below 2 cm.
    expect(check(obs, [up(0.4), up(0.4)])).toBe(true);
    // Turning away, or standing still: clearance grows or stays at 5 cm.
    expect(check(obs, [up(-0.4), up(-0.4)])).toBe(false);
    expect(check(obs, [up(0), up(0)])).toBe(false);
    // Lookahead: a slow turn crosses the line only on the second action.
    const slow = [up(0.15), up(0.15), up(0.15)];
    expect(armReachReplanCheck(drive, { clearance: 0.02, lookahead: 1 })(obs, slow)).toBe(false);
    expect(armReachReplanCheck(drive, { clearance: 0.02, lookahead: 3 })(obs, slow)).toBe(true);
    // No obstacle in the observation: never.
    expect(check(observation(q0, []), [up(5)])).toBe(false);
    // A non-finite action cannot be predicted: replan.
    expect(check(obs, [Float64Array.from([NaN, 0, 0])])).toBe(true);
  });

  it('predicts position actions through the rate limit', () => {
    const check = armReachReplanCheck({ ...drive, actionMode: 'position', maxJointSpeed: 0.1 }, { clearance: 0.02 });
    // Target far up, but at most 0.1 rad/s * 0.1 s = 0.01 rad per step: the tip moves < 1 cm.
    expect(check(obs, [up(1), up(1)])).toBe(false);
    const fast = armReachReplanCheck({ ...drive, actionMode: 'position', maxJointSpeed: 2 }, { clearance: 0.02 });
    expect(fast(obs, [up(1), up(1)])).toBe(true);
  });

  it('rejects bad settings and inputs with a message naming them', () => {
    expect(() => armReachReplanCheck(drive, { clearance: -1 })).toThrow(/clearance/);
    expect(() => armReachReplanCheck(drive, { clearance: NaN })).toThrow(/clearance/);
    expect(() => armReachReplanCheck(drive, { clearance: 0.02, lookahead: 0 })).toThrow(/lookahead/);
    expect(() => armReachReplanCheck({ ...drive, dt: 0 }, { clearance: 0.02 })).toThrow(/dt/);
    expect(() => armReachReplanCheck({ ...drive, actionMode: 'torque' as never }, { clearance: 0.02 })).toThrow(/actionMode/);
    const check = armReachReplanCheck(drive, { clearance: 0.02 });
    expect(() => check(new Float64Array(3), [up(0)])).toThrow(/observation must have 16 entries/);
    expect(() => check(obs, [new Float64Array(2)])).toThrow(/upcoming\[0\]: expected an action of 3 numbers/);
    const bad = Float64Array.from(obs);
    bad[OBS_LAYOUT.q] = NaN;
    expect(() => check(bad, [up(0)])).toThrow(/joint angles must be finite/);
  });
});

describe('stored early replanning', () => {
  it('is saved with an exported arm-reach policy and can be removed again', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'sf-replan-'));
    try {
      const p = DiffusionPolicy.load(shippedPolicyDir('arm-reach'), { env: 'arm-reach', sampling: { actionHorizon: 8, replanClearance: 0.03 } });
      expect(p.config.replanClearance).toBe(0.03);
      await p.save(dir);
      p.dispose();
      const back = DiffusionPolicy.load(dir, { env: 'arm-reach' });
      expect(back.config.replanClearance).toBe(0.03);
      expect(back.config.actionHorizon).toBe(8);
      back.dispose();
      const off = DiffusionPolicy.load(dir, { env: 'arm-reach', sampling: { replanClearance: null } });
      expect('replanClearance' in off.config).toBe(false);
      off.dispose();
      expect(() => DiffusionPolicy.load(dir, { env: 'arm-reach', sampling: { replanClearance: -1 } })).toThrow(/^policy.replanClearance: expected >= 0/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('--replan-clearance takes metres on arm-reach, pixels on Push-T, or off', () => {
    expect(replanClearanceOpt(undefined, 'arm-reach')).toBeUndefined();
    expect(replanClearanceOpt('off', 'arm-reach')).toBeNull();
    expect(replanClearanceOpt('0.02', 'arm-reach')).toBe(0.02);
    expect(replanClearanceOpt('20', 'pusht')).toBe(20);
    expect(() => replanClearanceOpt('20', 'arm-reach')).toThrow(/--replan-clearance: expected metres in \[0, 0.2\] for arm-reach, or 'off', received 20/);
    expect(() => replanClearanceOpt('x', 'pusht')).toThrow(/--replan-clearance: expected a number/);
  });
});
