/**
 * Early replanning for Push-T with forbidden regions: a check for `RunOptions.replanWhen` that
 * moves the agent through the chunk's next targets the way the environment's PD controller
 * does (kp = 100, kv = 20, 100 Hz; velocity from the last two observed positions, contacts
 * with the block ignored) and asks for a fresh chunk when the agent would come within
 * `margin` pixels of a forbidden circle's edge. Guidance then sees the agent where it is now,
 * instead of the rest of a chunk sampled up to 0.7 s earlier running open loop.
 */
import { checkNumber, fail } from '../../../src/util/validate.js';
import { PUSHT_PD } from './pusht.js';
import type { ReplanCheck } from './armReachReplan.js';

export interface ForbiddenCircle {
  readonly x: number;
  readonly y: number;
  readonly r: number;
}

export interface PushtReplanOptions {
  /** Replan when the agent's centre would come closer than r + margin (px) to a circle's centre. */
  readonly margin: number;
  /** How many of the chunk's next actions to simulate (default 2). */
  readonly lookahead?: number;
}

export function pushtReplanCheck(circles: readonly ForbiddenCircle[], opts: PushtReplanOptions): ReplanCheck {
  if (!Array.isArray(circles)) fail('pushtReplanCheck: circles must be an array of { x, y, r }');
  const cs = circles.map((c, i) => {
    if (!c || typeof c !== 'object') fail(`circles[${i}]: expected { x, y, r }`);
    return { x: checkNumber(`circles[${i}].x`, c.x), y: checkNumber(`circles[${i}].y`, c.y), r: checkNumber(`circles[${i}].r`, c.r, { min: 0 }) };
  });
  if (!opts || typeof opts !== 'object') fail('pushtReplanCheck: expected options { margin, lookahead? }');
  const margin = checkNumber('margin', opts.margin, { min: 0, max: 512 });
  const lookahead = checkNumber('lookahead', opts.lookahead ?? 2, { integer: true, min: 1, max: 64 });
  const { kp, kv, substeps, controlDt } = PUSHT_PD;
  const h = controlDt / substeps;
  const inside = (px: number, py: number): boolean => cs.some((c) => Math.hypot(px - c.x, py - c.y) < c.r + margin);
  return (observation, upcoming, previous) => {
    if (cs.length === 0) return false;
    if (!observation || observation.length < 2 || !Number.isFinite(observation[0]) || !Number.isFinite(observation[1])) {
      fail('observation: expected a Push-T observation starting with a finite agent x, y');
    }
    const p = [observation[0], observation[1]];
    const ok = previous !== undefined && previous.length >= 2 && Number.isFinite(previous[0]) && Number.isFinite(previous[1]);
    const v = ok ? [(p[0] - previous[0]) / controlDt, (p[1] - previous[1]) / controlDt] : [0, 0];
    const n = Math.min(lookahead, upcoming.length);
    for (let s = 0; s < n; s++) {
      const a = upcoming[s];
      if (!a || a.length !== 2) fail(`upcoming[${s}]: expected an action of 2 numbers, received ${a?.length ?? typeof a}`);
      if (!Number.isFinite(a[0]) || !Number.isFinite(a[1])) return true;
      for (let k = 0; k < substeps; k++) {
        for (let d = 0; d < 2; d++) {
          v[d] += (kp * (a[d] - p[d]) - kv * v[d]) * h;
          p[d] += v[d] * h;
        }
        if (inside(p[0], p[1])) return true;
      }
    }
    return false;
  };
}
