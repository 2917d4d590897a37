/**
 * Exact planar geometry of the arm-reach robot: forward / inverse kinematics and
 * link-vs-obstacle distances. Pure functions, no MuJoCo; shared by the environment
 * (clearance diagnostics, scene sampling) and the scripted expert (collision checks).
 * Constants must match domains/robotics/assets/arm_reach.xml.
 */

export type Vec2 = readonly [number, number];

/** Circular obstacle (a vertical cylinder in the MuJoCo model). */
export interface Obstacle {
  readonly x: number;
  readonly y: number;
  readonly radius: number;
}

export const LINK_LENGTHS: readonly [number, number, number] = [0.4, 0.3, 0.2];
/** Radius of the link capsules. */
export const LINK_RADIUS = 0.02;
export const REACH = LINK_LENGTHS[0] + LINK_LENGTHS[1] + LINK_LENGTHS[2];
/** Joint limits [low, high] in radians, per joint. */
export const JOINT_LIMITS: readonly (readonly [number, number])[] = [
  [-Math.PI, Math.PI],
  [-2.6, 2.6],
  [-2.6, 2.6],
];
/** Largest obstacle radius the MuJoCo model supports (compiled cylinder size). */
export const MAX_OBSTACLE_RADIUS = 0.25;

/** Joint positions: [base, elbow1, elbow2, end effector]. */
export function forwardKinematics(q: ArrayLike<number>): [Vec2, Vec2, Vec2, Vec2] {
  checkJointVector(q, 'forwardKinematics', 'q');
  let x = 0;
  let y = 0;
  let angle = 0;
  const points: Vec2[] = [[0, 0]];
  for (let i = 0; i < 3; i++) {
    angle += q[i]!;
    x += LINK_LENGTHS[i]! * Math.cos(angle);
    y += LINK_LENGTHS[i]! * Math.sin(angle);
    points.push([x, y]);
  }
  return points as [Vec2, Vec2, Vec2, Vec2];
}

/** End-effector position. */
export function endEffector(q: ArrayLike<number>): Vec2 {
  return forwardKinematics(q)[3];
}

/**
 * Inverse kinematics for a target point with a given absolute angle `phi` of the last link and
 * elbow sign (+1 / -1 selects the sign of joint 2). Returns null when unreachable. Angles are
 * wrapped to (-pi, pi]; joint limits are NOT checked here.
 */
export function inverseKinematics(target: Vec2, phi: number, elbow: 1 | -1): [number, number, number] | null {
  if (!isFiniteVec2(target)) throw new TypeError('inverseKinematics: target must be a finite [x, y]');
  if (!Number.isFinite(phi)) throw new TypeError(`inverseKinematics: phi must be finite, got ${phi}`);
  if (elbow !== 1 && elbow !== -1) throw new TypeError(`inverseKinematics: elbow must be 1 or -1, got ${String(elbow)}`);
  const [l1, l2, l3] = LINK_LENGTHS;
  const wx = target[0] - l3 * Math.cos(phi);
  const wy = target[1] - l3 * Math.sin(phi);
  const d2 = wx * wx + wy * wy;
  const c2 = (d2 - l1 * l1 - l2 * l2) / (2 * l1 * l2);
  if (c2 < -1 || c2 > 1) return null;
  const q2 = elbow * Math.acos(c2);
  const q1 = Math.atan2(wy, wx) - Math.atan2(l2 * Math.sin(q2), l1 + l2 * Math.cos(q2));
  const q3 = phi - q1 - q2;
  return [wrapAngle(q1), wrapAngle(q2), wrapAngle(q3)];
}

/** Wrap an angle to (-pi, pi]. */
export function wrapAngle(a: number): number {
  let r = a % (2 * Math.PI);
  if (r <= -Math.PI) r += 2 * Math.PI;
  if (r > Math.PI) r -= 2 * Math.PI;
  return r;
}

/** True when every joint is within its limits (optionally shrunk by `margin` radians). */
export function withinJointLimits(q: ArrayLike<number>, margin = 0): boolean {
  checkJointVector(q, 'withinJointLimits', 'q');
  for (let i = 0; i < 3; i++) {
    const [lo, hi] = JOINT_LIMITS[i]!;
    if (q[i]! < lo + margin || q[i]! > hi - margin) return false;
  }
  return true;
}

/** Distance from point p to segment ab. */
export function pointSegmentDistance(p: Vec2, a: Vec2, b: Vec2): number {
  const dx = b[0] - a[0];
  const dy = b[1] - a[1];
  const len2 = dx * dx + dy * dy;
  let t = len2 > 0 ? ((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / len2 : 0;
  t = Math.max(0, Math.min(1, t));
  return Math.hypot(p[0] - a[0] - t * dx, p[1] - a[1] - t * dy);
}

/** Distance between segments ab and cd (0 when they cross). */
export function segmentSegmentDistance(a: Vec2, b: Vec2, c: Vec2, d: Vec2): number {
  const cross = (o: Vec2, p: Vec2, q: Vec2): number => (p[0] - o[0]) * (q[1] - o[1]) - (p[1] - o[1]) * (q[0] - o[0]);
  const d1 = cross(a, b, c);
  const d2 = cross(a, b, d);
  const d3 = cross(c, d, a);
  const d4 = cross(c, d, b);
  if (((d1 > 0 && d2 < 0) || (d1 < 0 && d2 > 0)) && ((d3 > 0 && d4 < 0) || (d3 < 0 && d4 > 0))) return 0;
  return Math.min(
    pointSegmentDistance(a, c, d),
    pointSegmentDistance(b, c, d),
    pointSegmentDistance(c, a, b),
    pointSegmentDistance(d, a, b),
  );
}

/**
 * Signed clearance between the arm (link capsules) at configuration q and the obstacles:
 * min over links and obstacles of (centre-to-segment distance - obstacle radius - link radius).
 * Negative means penetration. Obstacles with radius <= 0 are ignored; Infinity if none remain.
 */
export function armClearance(q: ArrayLike<number>, obstacles: readonly Obstacle[]): number {
  return pointsClearance(forwardKinematics(q), obstacles);
}

/** Same as armClearance but from precomputed joint positions (see forwardKinematics). */
export function pointsClearance(points: readonly Vec2[], obstacles: readonly Obstacle[]): number {
  let best = Infinity;
  for (const o of obstacles) {
    if (!(o.radius > 0)) continue;
    const c: Vec2 = [o.x, o.y];
    for (let i = 0; i + 1 < points.length; i++) {
      const dist = pointSegmentDistance(c, points[i]!, points[i + 1]!) - o.radius - LINK_RADIUS;
      if (dist < best) best = dist;
    }
  }
  return best;
}

function isFiniteVec2(v: unknown): v is Vec2 {
  return Array.isArray(v) && v.length === 2 && Number.isFinite(v[0]) && Number.isFinite(v[1]);
}

function checkJointVector(q: ArrayLike<number>, fn: string, arg: string): void {
  if (q === null || typeof q !== 'object' || q.length !== 3) {
    throw new TypeError(`${fn}: ${arg} must have 3 joint angles, got length ${q?.length}`);
  }
  for (let i = 0; i < 3; i++) {
    if (!Number.isFinite(q[i])) throw new TypeError(`${fn}: ${arg}[${i}] must be finite, got ${q[i]}`);
  }
}
