/**
 * Exact 2D polygon geometry for coverage scores: shoelace area, rigid transforms and the
 * intersection of two convex polygons (Sutherland-Hodgman clipping, which is exact when the
 * clip polygon is convex).
 */
import { fail } from '../../../src/util/validate.js';

export type Point = readonly [number, number];
export type Polygon = readonly Point[];

/** A rigid 2D pose: translation (x, y) then rotation by `angle` radians (counter-clockwise in x-right, y-up axes). */
export interface Pose {
  readonly x: number;
  readonly y: number;
  readonly angle: number;
}

function checkPolygon(name: string, poly: Polygon): void {
  if (!Array.isArray(poly)) fail(`${name}: expected an array of [x, y] points, received ${typeof poly}`);
  for (let i = 0; i < poly.length; i++) {
    const p = poly[i];
    if (!Array.isArray(p) || p.length !== 2 || !Number.isFinite(p[0]) || !Number.isFinite(p[1])) {
      fail(`${name}: vertex ${i} must be a pair of finite numbers, received ${JSON.stringify(p)}`);
    }
  }
}

function checkPose(name: string, pose: Pose): void {
  if (!pose || !Number.isFinite(pose.x) || !Number.isFinite(pose.y) || !Number.isFinite(pose.angle)) {
    fail(`${name}: expected finite {x, y, angle}, received ${JSON.stringify(pose)}`);
  }
}

/** Signed area (positive for counter-clockwise vertex order in x-right, y-up axes). */
export function signedArea(poly: Polygon): number {
  checkPolygon('signedArea(poly)', poly);
  let s = 0;
  for (let i = 0, j = poly.length - 1; i < poly.length; j = i++) {
    s += poly[j][0] * poly[i][1] - poly[i][0] * poly[j][1];
  }
  return s / 2;
}

/** Unsigned area of a simple polygon. */
export function polygonArea(poly: Polygon): number {
  return Math.abs(signedArea(poly));
}

/** Map body-frame vertices to the world: world = (x, y) + R(angle) * local. */
export function transformPolygon(poly: Polygon, pose: Pose): Point[] {
  checkPolygon('transformPolygon(poly)', poly);
  checkPose('transformPolygon(pose)', pose);
  const c = Math.cos(pose.angle);
  const s = Math.sin(pose.angle);
  return poly.map(([px, py]) => [pose.x + c * px - s * py, pose.y + s * px + c * py] as const);
}

/**
 * Intersection of two convex polygons (either vertex order). Returns the intersection polygon
 * in counter-clockwise order, or [] when the interiors do not overlap.
 */
export function intersectConvex(subject: Polygon, clip: Polygon): Point[] {
  checkPolygon('intersectConvex(subject)', subject);
  checkPolygon('intersectConvex(clip)', clip);
  if (subject.length < 3 || clip.length < 3) return [];
  const ccw = (p: Polygon): Polygon => (signedArea(p) < 0 ? [...p].reverse() : p);
  const c = ccw(clip);
  let out: Point[] = [...ccw(subject)];
  for (let i = 0; i < c.length && out.length > 0; i++) {
    const a = c[i];
    const b = c[(i + 1) % c.length];
    // Inside the half-plane left of the directed edge a -> b.
    const side = (p: Point): number => (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0]);
    const input = out;
    out = [];
    for (let k = 0; k < input.length; k++) {
      const cur = input[k];
      const prev = input[(k + input.length - 1) % input.length];
      const sCur = side(cur);
      const sPrev = side(prev);
      if (sCur >= 0) {
        if (sPrev < 0) out.push(edgeCrossing(prev, cur, sPrev, sCur));
        out.push(cur);
      } else if (sPrev >= 0) {
        out.push(edgeCrossing(prev, cur, sPrev, sCur));
      }
    }
  }
  return out.length >= 3 ? out : [];
}

/** Point where segment p -> q crosses the clip line, given the signed sides of p and q. */
function edgeCrossing(p: Point, q: Point, sp: number, sq: number): Point {
  const t = sp / (sp - sq);
  return [p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])];
}

/**
 * Area of the intersection of two shapes, each the union of convex pieces whose interiors are
 * pairwise disjoint. Then the pairwise intersections are disjoint too, so their areas add up exactly.
 */
export function intersectionArea(a: readonly Polygon[], b: readonly Polygon[]): number {
  let area = 0;
  for (const pa of a) for (const pb of b) area += polygonArea(intersectConvex(pa, pb));
  return area;
}
