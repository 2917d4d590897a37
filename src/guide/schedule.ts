/**
 * When a guidance term is active and how strongly: one helper shared by every term.
 *
 * A schedule is either a function t -> multiplier (finite; 0 switches the term off) or a
 * window { tStart, tEnd }: the term is active (multiplier 1) for t in [tEnd, tStart] and off
 * elsewhere. Sampling runs from large t to 0, so tStart is when guidance starts and tEnd
 * when it stops (diffusers' guidance start/stop, in scoreflow's time).
 */
import { checkNumber, fail } from '../util/validate.js';

export interface GuidanceWindow {
  readonly tStart: number;
  readonly tEnd: number;
}

export type GuidanceSchedule = ((t: number) => number) | GuidanceWindow;

/** Validates a schedule (undefined means "always on"); `name` prefixes the messages. */
export function checkSchedule(name: string, schedule: unknown): GuidanceSchedule | undefined {
  if (schedule === undefined) return undefined;
  if (typeof schedule === 'function') return schedule as (t: number) => number;
  if (schedule === null || typeof schedule !== 'object') {
    fail(`${name}: expected a function t -> multiplier or a window { tStart, tEnd }, received ${String(schedule)}`);
  }
  const w = schedule as Partial<GuidanceWindow>;
  const tStart = checkNumber(`${name}.tStart`, w.tStart, { min: 0 });
  const tEnd = checkNumber(`${name}.tEnd`, w.tEnd, { min: 0 });
  if (tEnd > tStart) fail(`${name}.tEnd: expected <= tStart (${tStart}), received ${tEnd}`);
  return { tStart, tEnd };
}

/** The multiplier of a (validated) schedule at time t: 1 without a schedule. */
export function scheduleWeight(schedule: GuidanceSchedule | undefined, t: number, name = 'schedule'): number {
  if (schedule === undefined) return 1;
  if (typeof schedule === 'function') {
    const m = schedule(t);
    if (typeof m !== 'number' || !Number.isFinite(m)) fail(`${name}: returned a non-finite multiplier (${String(m)}) at t=${t}`);
    return m;
  }
  return t <= schedule.tStart && t >= schedule.tEnd ? 1 : 0;
}
