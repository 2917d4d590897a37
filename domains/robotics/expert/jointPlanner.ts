/**
 * Sampling-based path planning in a box-bounded joint space: RRT-Connect (Kuffner & LaValle,
 * 2000) plus randomised shortcut smoothing. Problem-agnostic: collision checking is a callback.
 * All randomness comes from the caller's EnvRng, so plans are reproducible.
 */
import type { EnvRng } from '../env/rng.js';

export type JointPath = number[][];

export interface PlanningProblem {
  /** Per-joint lower bounds of the sampling box. */
  readonly lower: readonly number[];
  /** Per-joint upper bounds of the sampling box. */
  readonly upper: readonly number[];
  /** True when configuration q is collision free. */
  isValid(q: readonly number[]): boolean;
  /** Largest per-joint step (max-norm, rad) between collision checks along an edge. */
  readonly resolution: number;
}

export interface RrtConnectOptions {
  readonly rng: EnvRng;
  /** Tree extension step (Euclidean, rad). Default 0.2. */
  readonly stepSize?: number;
  /** Iteration budget. Default 4000. */
  readonly maxIterations?: number;
}

interface Node {
  readonly q: number[];
  readonly parent: number;
}

type ExtendResult = 'trapped' | 'advanced' | 'reached';

/** True when the straight joint-space segment a -> b is valid at the problem's resolution. */
export function edgeValid(problem: PlanningProblem, a: readonly number[], b: readonly number[]): boolean {
  let span = 0;
  for (let i = 0; i < a.length; i++) span = Math.max(span, Math.abs(b[i]! - a[i]!));
  const n = Math.max(1, Math.ceil(span / problem.resolution));
  for (let k = 1; k <= n; k++) {
    if (!problem.isValid(lerp(a, b, k / n))) return false;
  }
  return true;
}

/** RRT-Connect from start to goal. Returns the joint-space polyline, or null if the budget runs out. */
export function rrtConnect(
  problem: PlanningProblem,
  start: readonly number[],
  goal: readonly number[],
  options: RrtConnectOptions,
): JointPath | null {
  checkProblem(problem, 'rrtConnect');
  checkConfig(problem, start, 'rrtConnect: start');
  checkConfig(problem, goal, 'rrtConnect: goal');
  const stepSize = options.stepSize ?? 0.2;
  const maxIterations = options.maxIterations ?? 4000;
  if (!(stepSize > 0)) throw new RangeError(`rrtConnect: options.stepSize must be > 0, got ${stepSize}`);
  if (!Number.isInteger(maxIterations) || maxIterations <= 0) {
    throw new RangeError(`rrtConnect: options.maxIterations must be a positive integer, got ${maxIterations}`);
  }
  if (!problem.isValid(start) || !problem.isValid(goal)) return null;
  if (edgeValid(problem, start, goal)) return [[...start], [...goal]];

  const startTree: Node[] = [{ q: [...start], parent: -1 }];
  const goalTree: Node[] = [{ q: [...goal], parent: -1 }];
  let treeA = startTree;
  let treeB = goalTree;
  for (let it = 0; it < maxIterations; it++) {
    const sample = problem.lower.map((lo, i) => options.rng.range(lo, problem.upper[i]!));
    if (extend(problem, treeA, sample, stepSize) !== 'trapped') {
      const qNew = treeA[treeA.length - 1]!.q;
      let result: ExtendResult = 'advanced';
      while (result === 'advanced') result = extend(problem, treeB, qNew, stepSize);
      if (result === 'reached') {
        const pathA = tracePath(treeA, treeA.length - 1);
        const pathB = tracePath(treeB, treeB.length - 1);
        const fromStart = treeA === startTree ? pathA : pathB;
        const toGoal = treeA === startTree ? pathB : pathA;
        return [...fromStart, ...toGoal.reverse().slice(1)];
      }
    }
    [treeA, treeB] = [treeB, treeA];
  }
  return null;
}

/**
 * Randomised shortcutting: repeatedly pick two points along the path (anywhere on its segments)
 * and replace the stretch between them by a straight edge when that edge is valid.
 */
export function shortcutPath(problem: PlanningProblem, path: JointPath, rng: EnvRng, iterations = 100): JointPath {
  checkProblem(problem, 'shortcutPath');
  if (!Array.isArray(path) || path.length < 2) throw new TypeError('shortcutPath: path must have at least 2 configurations');
  if (!Number.isInteger(iterations) || iterations < 0) {
    throw new RangeError(`shortcutPath: iterations must be a non-negative integer, got ${iterations}`);
  }
  let current = path.map((q) => [...q]);
  for (let it = 0; it < iterations && current.length > 2; it++) {
    const lengths = cumulativeLengths(current);
    const total = lengths[lengths.length - 1]!;
    if (!(total > 0)) break;
    let s1 = rng.range(0, total);
    let s2 = rng.range(0, total);
    if (s1 > s2) [s1, s2] = [s2, s1];
    const [i1, p1] = pointAt(current, lengths, s1);
    const [i2, p2] = pointAt(current, lengths, s2);
    if (i2 <= i1) continue; // same segment: nothing to gain
    if (!edgeValid(problem, p1, p2)) continue;
    current = [...current.slice(0, i1 + 1), p1, p2, ...current.slice(i2 + 1)];
    current = dropDuplicates(current);
  }
  return current;
}

function extend(problem: PlanningProblem, tree: Node[], target: readonly number[], stepSize: number): ExtendResult {
  let nearest = 0;
  let best = Infinity;
  for (let i = 0; i < tree.length; i++) {
    const d = distance(tree[i]!.q, target);
    if (d < best) {
      best = d;
      nearest = i;
    }
  }
  const from = tree[nearest]!.q;
  const reached = best <= stepSize;
  const qNew = reached ? [...target] : lerp(from, target, stepSize / best);
  if (!edgeValid(problem, from, qNew)) return 'trapped';
  tree.push({ q: qNew, parent: nearest });
  return reached ? 'reached' : 'advanced';
}

function tracePath(tree: readonly Node[], index: number): JointPath {
  const out: JointPath = [];
  for (let i = index; i >= 0; i = tree[i]!.parent) out.push(tree[i]!.q);
  return out.reverse();
}

function cumulativeLengths(path: JointPath): number[] {
  const out = [0];
  for (let i = 1; i < path.length; i++) out.push(out[i - 1]! + distance(path[i - 1]!, path[i]!));
  return out;
}

/** Segment index i and the point at arc length s on segment (path[i], path[i + 1]). */
function pointAt(path: JointPath, lengths: readonly number[], s: number): [number, number[]] {
  let i = 0;
  while (i < path.length - 2 && lengths[i + 1]! < s) i++;
  const segment = lengths[i + 1]! - lengths[i]!;
  const t = segment > 0 ? Math.min(1, Math.max(0, (s - lengths[i]!) / segment)) : 0;
  return [i, lerp(path[i]!, path[i + 1]!, t)];
}

function dropDuplicates(path: JointPath): JointPath {
  const out: JointPath = [path[0]!];
  for (let i = 1; i < path.length; i++) {
    if (distance(out[out.length - 1]!, path[i]!) > 1e-9 || i === path.length - 1) out.push(path[i]!);
  }
  return out;
}

function lerp(a: readonly number[], b: readonly number[], t: number): number[] {
  return a.map((v, i) => v + (b[i]! - v) * t);
}

function distance(a: readonly number[], b: readonly number[]): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i]! - b[i]!) ** 2;
  return Math.sqrt(s);
}

function checkProblem(problem: PlanningProblem, fn: string): void {
  if (problem === null || typeof problem !== 'object' || typeof problem.isValid !== 'function') {
    throw new TypeError(`${fn}: problem must provide isValid(q)`);
  }
  if (problem.lower.length === 0 || problem.lower.length !== problem.upper.length) {
    throw new RangeError(`${fn}: problem.lower and problem.upper must be non-empty and equally long`);
  }
  if (!(problem.resolution > 0)) throw new RangeError(`${fn}: problem.resolution must be > 0, got ${problem.resolution}`);
}

function checkConfig(problem: PlanningProblem, q: readonly number[], where: string): void {
  if (!Array.isArray(q) || q.length !== problem.lower.length || !q.every((v) => Number.isFinite(v))) {
    throw new TypeError(`${where} must be ${problem.lower.length} finite numbers`);
  }
}
