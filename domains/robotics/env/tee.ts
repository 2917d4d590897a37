/**
 * The Push-T "T" block: vertex layout, mass properties and coverage score, as in Diffusion
 * Policy's `pusht_env.py` (`add_tee` with scale 30, length 4).
 *
 * Body frame (pymunk's, y axis pointing down on screen): the bar is the 120 x 30 rectangle
 * x in [-60, 60], y in [0, 30]; the stem is the 30 x 90 rectangle x in [-15, 15], y in [30, 120].
 * The body position (the pose's x, y, and the dataset's block x, y) is the origin of this frame,
 * i.e. the middle of the bar's outer edge, not the centre of mass. The dataset's keypoints are
 * fixed points in this frame, which confirms the convention.
 */
import { intersectionArea, polygonArea, transformPolygon, type Point, type Polygon, type Pose } from './geometry.js';

export const TEE_SCALE = 30;
const LENGTH = 4;
const HALF_BAR = (LENGTH * TEE_SCALE) / 2;
const HALF_STEM = TEE_SCALE / 2;

/** Bar then stem, body-frame vertices (the two pieces share only the edge y = 30). */
export const TEE_PIECES: readonly Polygon[] = [
  [
    [-HALF_BAR, TEE_SCALE],
    [HALF_BAR, TEE_SCALE],
    [HALF_BAR, 0],
    [-HALF_BAR, 0],
  ],
  [
    [-HALF_STEM, TEE_SCALE],
    [-HALF_STEM, LENGTH * TEE_SCALE],
    [HALF_STEM, LENGTH * TEE_SCALE],
    [HALF_STEM, TEE_SCALE],
  ],
];

/** Area of the T: 120 * 30 + 30 * 90 = 6300. */
export const TEE_AREA = TEE_PIECES.reduce((s, p) => s + polygonArea(p), 0);

export const TEE_MASS = 1;

/**
 * Centre of gravity in the body frame. The original sets it to the plain average of the two
 * pieces' centroids ((0, 15) and (0, 75)), not the area-weighted centroid (0, 40.71).
 */
export const TEE_CENTER_OF_GRAVITY: Point = [0, 45];

/**
 * Moment of inertia about the centre of gravity. The original adds pymunk's
 * `moment_for_poly(1, bar)` twice (it passes the bar's vertices for the stem too); that moment is
 * taken about the body origin: (120^2 + 30^2) / 12 + 15^2 = 1500, so the body gets 3000.
 */
export const TEE_MOMENT = 2 * ((HALF_BAR * 2) ** 2 / 12 + TEE_SCALE ** 2 / 12 + (TEE_SCALE / 2) ** 2) * TEE_MASS;

/** The goal pose of the task. */
export const PUSHT_GOAL: Pose = { x: 256, y: 256, angle: Math.PI / 4 };

/** World-frame polygons of a T at the given pose. */
export function teePolygons(pose: Pose): Point[][] {
  return TEE_PIECES.map((p) => transformPolygon(p, pose));
}

/** Fraction of the goal T's area covered by the block T, in [0, 1]. */
export function teeCoverage(block: Pose, goal: Pose = PUSHT_GOAL): number {
  const inter = intersectionArea(teePolygons(goal), teePolygons(block));
  return Math.min(1, Math.max(0, inter / TEE_AREA));
}
