/**
 * Time-parameterisation of a joint-space polyline for a fixed-rate controller.
 *
 * The path is traversed with a trapezoidal speed profile in the max-norm arc length
 * s = sum_i max_j |dq_j| (so |dq_j/dt| <= ds/dt for every joint): acceleration `maxAccel`,
 * cruise speed `maxSpeed`, deceleration to rest at the end. The result is sampled every `dt`
 * seconds; consecutive samples differ by at most maxSpeed * dt in every joint, so the
 * finite-difference velocities (w[k+1] - w[k]) / dt respect the joint speed limit.
 */

export interface TimeParameterisationOptions {
  /** Sampling period (s). */
  readonly dt: number;
  /** Joint speed limit (rad/s), applied per joint. */
  readonly maxSpeed: number;
  /** Path acceleration limit (rad/s^2). */
  readonly maxAccel: number;
}

/** Waypoints at t = 0, dt, 2 dt, ...; the first is path[0], the last is the path's end. */
export function timeParameterise(path: readonly (readonly number[])[], options: TimeParameterisationOptions): number[][] {
  if (!Array.isArray(path as unknown) || path.length === 0) throw new TypeError('timeParameterise: path must be a non-empty array of configurations');
  const dim = path[0]!.length;
  path.forEach((q, i) => {
    if (q.length !== dim || !q.every((v) => Number.isFinite(v))) {
      throw new TypeError(`timeParameterise: path[${i}] must have ${dim} finite entries`);
    }
  });
  for (const key of ['dt', 'maxSpeed', 'maxAccel'] as const) {
    const v = options?.[key];
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
      throw new RangeError(`timeParameterise: options.${key} must be a positive finite number, got ${String(v)}`);
    }
  }
  const { dt, maxSpeed: v, maxAccel: a } = options;
  const lengths = [0];
  for (let i = 1; i < path.length; i++) {
    let span = 0;
    for (let j = 0; j < dim; j++) span = Math.max(span, Math.abs(path[i]![j]! - path[i - 1]![j]!));
    lengths.push(lengths[i - 1]! + span);
  }
  const total = lengths[lengths.length - 1]!;
  if (total === 0) return [[...path[0]!]];

  // Trapezoid (or triangle when the path is too short to reach cruise speed).
  const peak = Math.min(v, Math.sqrt(total * a));
  const tAccel = peak / a;
  const sAccel = 0.5 * a * tAccel * tAccel;
  const tCruise = (total - 2 * sAccel) / peak;
  const duration = 2 * tAccel + tCruise;
  const arcAt = (t: number): number => {
    if (t <= tAccel) return 0.5 * a * t * t;
    if (t <= tAccel + tCruise) return sAccel + peak * (t - tAccel);
    const r = Math.max(0, duration - t);
    return total - 0.5 * a * r * r;
  };

  const steps = Math.ceil(duration / dt - 1e-9);
  const out: number[][] = [];
  let segment = 0;
  for (let k = 0; k <= steps; k++) {
    const s = k === steps ? total : Math.min(total, arcAt(k * dt));
    while (segment < path.length - 2 && lengths[segment + 1]! < s) segment++;
    const len = lengths[segment + 1]! - lengths[segment]!;
    const t = len > 0 ? Math.min(1, Math.max(0, (s - lengths[segment]!) / len)) : 1;
    out.push(path[segment]!.map((q0, j) => q0 + (path[segment + 1]![j]! - q0) * t));
  }
  return out;
}
