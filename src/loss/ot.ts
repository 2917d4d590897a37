/**
 * Discrete optimal transport between two equally weighted point sets, for minibatch OT
 * couplings (Tong et al. 2023; Pooladian et al. 2023):
 *   - `hungarian`: the exact assignment (Kuhn-Munkres with potentials, O(n^2 m)).
 *   - `sinkhorn`: entropic OT in the log domain, plan P = exp((f_i + g_j - C_ij) / epsilon)
 *     with marginals 1/n and 1/m; `planToPairing` rounds a plan to a one-to-one pairing.
 * Plain number arrays in and out: the callers read tensors once and stay in float64.
 */
import type { Rng } from '../rng/rng.js';
import { checkNumber, checkOneOf, fail } from '../util/validate.js';

export type CostMatrix = readonly ArrayLike<number>[];

function checkCost(name: string, cost: CostMatrix, square: 'rows<=cols' | 'any'): { n: number; m: number } {
  if (!Array.isArray(cost)) fail(`${name}: expected an array of rows, received ${typeof cost}`);
  const n = cost.length;
  const m = n === 0 ? 0 : cost[0]?.length ?? 0;
  for (let i = 0; i < n; i++) {
    const row = cost[i];
    if (!row || row.length !== m) fail(`${name}: row ${i} has ${row?.length} entries, expected ${m} (rows must have equal length)`);
    for (let j = 0; j < m; j++) {
      if (!Number.isFinite(row[j])) fail(`${name}: entry [${i}][${j}] is not finite (${row[j]})`);
    }
  }
  if (square === 'rows<=cols' && n > m) fail(`${name}: expected no more rows than columns, received ${n} x ${m}`);
  return { n, m };
}

/**
 * Minimum-cost assignment: returns `assign` with row i matched to column assign[i], all
 * columns distinct, minimising sum_i cost[i][assign[i]]. Requires rows <= columns.
 * Shortest augmenting paths with dual potentials u, v (reduced costs c_ij - u_i - v_j >= 0).
 */
export function hungarian(cost: CostMatrix): number[] {
  const { n, m } = checkCost('cost', cost, 'rows<=cols');
  if (n === 0) return [];
  // 1-based arrays; column 0 is a virtual column holding the row being inserted.
  const u = new Float64Array(n + 1);
  const v = new Float64Array(m + 1);
  const p = new Int32Array(m + 1); // p[j]: row matched to column j (0: free)
  const way = new Int32Array(m + 1); // previous column on the augmenting path
  const minv = new Float64Array(m + 1);
  const used = new Uint8Array(m + 1);
  for (let i = 1; i <= n; i++) {
    p[0] = i;
    let j0 = 0;
    minv.fill(Infinity);
    used.fill(0);
    do {
      used[j0] = 1;
      const i0 = p[j0];
      const row = cost[i0 - 1];
      const ui = u[i0];
      let delta = Infinity;
      let j1 = -1;
      for (let j = 1; j <= m; j++) {
        if (used[j]) continue;
        const cur = row[j - 1] - ui - v[j];
        if (cur < minv[j]) {
          minv[j] = cur;
          way[j] = j0;
        }
        if (minv[j] < delta) {
          delta = minv[j];
          j1 = j;
        }
      }
      if (j1 < 0) fail('hungarian: no augmenting path (internal error)');
      for (let j = 0; j <= m; j++) {
        if (used[j]) {
          u[p[j]] += delta;
          v[j] -= delta;
        } else {
          minv[j] -= delta;
        }
      }
      j0 = j1;
    } while (p[j0] !== 0);
    do {
      const j1 = way[j0];
      p[j0] = p[j1];
      j0 = j1;
    } while (j0 !== 0);
  }
  const assign = new Array<number>(n);
  for (let j = 1; j <= m; j++) if (p[j] !== 0) assign[p[j] - 1] = j - 1;
  return assign;
}

/** Total cost sum_i cost[i][assign[i]] of a pairing. */
export function assignmentCost(cost: CostMatrix, assign: readonly number[]): number {
  let s = 0;
  for (let i = 0; i < assign.length; i++) s += cost[i][assign[i]];
  return s;
}

export interface SinkhornOptions {
  /** Stop when the relative row-marginal error is below this (default 1e-6, checked every 10 iterations). */
  readonly tol?: number;
  /**
   * Epsilon scaling: start at this (larger) epsilon and multiply it by `epsilonDecay` each
   * iteration until it reaches `epsilon`, warm-starting the potentials (default: no scaling).
   */
  readonly epsilonStart?: number;
  /** Default 0.8. */
  readonly epsilonDecay?: number;
}

export interface SinkhornResult {
  /** Transport plan, rows sum to 1/n and columns to 1/m (up to `marginalError`). */
  readonly plan: Float64Array[];
  /** Dual potentials. */
  readonly f: Float64Array;
  readonly g: Float64Array;
  /** Iterations run (fewer than asked when `tol` was reached). */
  readonly iterations: number;
  /** Max over rows of |sum_j P_ij - 1/n| * n (relative row-marginal error; columns are exact). */
  readonly marginalError: number;
  /** Epsilon of the returned plan (larger than asked only if epsilon scaling ran out of iterations). */
  readonly epsilon: number;
}

/**
 * Entropic OT (Cuturi 2013) by log-domain Sinkhorn iterations, stable for small epsilon:
 *   f_i = -eps log(n) - eps LSE_j((g_j - C_ij) / eps),  g_j = -eps log(m) - eps LSE_i((f_i - C_ij) / eps)
 * `epsilon` is absolute (in cost units). Stops early when the relative row-marginal error
 * falls below `opts.tol`; `opts.epsilonStart` anneals epsilon down to its final value
 * (epsilon scaling), which converges far faster for small epsilon.
 */
export function sinkhorn(cost: CostMatrix, epsilon: number, iters: number, opts: SinkhornOptions = {}): SinkhornResult {
  const { n, m } = checkCost('cost', cost, 'any');
  checkNumber('epsilon', epsilon, { min: Number.MIN_VALUE });
  checkNumber('iters', iters, { integer: true, min: 1 });
  const tol = checkNumber('tol', opts.tol ?? 1e-6, { min: 0 });
  const eps0 = checkNumber('epsilonStart', opts.epsilonStart ?? epsilon, { min: epsilon });
  const decay = checkNumber('epsilonDecay', opts.epsilonDecay ?? 0.8, { min: 1e-6, max: 1 - 1e-6 });
  if (n === 0 || m === 0) fail(`cost: expected a non-empty matrix, received ${n} x ${m}`);
  const C = new Float64Array(n * m);
  for (let i = 0; i < n; i++) for (let j = 0; j < m; j++) C[i * m + j] = cost[i][j];
  const f = new Float64Array(n);
  const g = new Float64Array(m);
  const la = -Math.log(n);
  const lb = -Math.log(m);
  let eps = eps0;
  let inv = 1 / eps;
  const colBuf = new Float64Array(m);

  const updateF = (): void => {
    for (let i = 0; i < n; i++) {
      const o = i * m;
      let mx = -Infinity;
      for (let j = 0; j < m; j++) {
        const z = (g[j] - C[o + j]) * inv;
        colBuf[j] = z;
        if (z > mx) mx = z;
      }
      let s = 0;
      for (let j = 0; j < m; j++) s += Math.exp(colBuf[j] - mx);
      f[i] = eps * (la - mx - Math.log(s));
    }
  };
  const mxCol = new Float64Array(m);
  const sCol = new Float64Array(m);
  const updateG = (): void => {
    // Column log-sum-exp, swept row by row for memory locality: two passes (max, then sum).
    mxCol.fill(-Infinity);
    for (let i = 0; i < n; i++) {
      const o = i * m;
      const fi = f[i];
      for (let j = 0; j < m; j++) {
        const z = (fi - C[o + j]) * inv;
        if (z > mxCol[j]) mxCol[j] = z;
      }
    }
    sCol.fill(0);
    for (let i = 0; i < n; i++) {
      const o = i * m;
      const fi = f[i];
      for (let j = 0; j < m; j++) sCol[j] += Math.exp((fi - C[o + j]) * inv - mxCol[j]);
    }
    for (let j = 0; j < m; j++) g[j] = eps * (lb - mxCol[j] - Math.log(sCol[j]));
  };
  const rowError = (): number => {
    let worst = 0;
    for (let i = 0; i < n; i++) {
      const o = i * m;
      let s = 0;
      for (let j = 0; j < m; j++) s += Math.exp((f[i] + g[j] - C[o + j]) * inv);
      worst = Math.max(worst, Math.abs(s * n - 1));
    }
    return worst;
  };

  let it = 0;
  while (it < iters) {
    updateF();
    updateG();
    it++;
    if (it === iters) break;
    if (eps > epsilon) {
      eps = Math.max(epsilon, eps * decay);
      inv = 1 / eps;
      continue;
    }
    if (it % 10 === 0 && rowError() <= tol) break;
  }
  const err = rowError(); // at the epsilon of the last update, like the plan
  const plan: Float64Array[] = [];
  for (let i = 0; i < n; i++) {
    const row = new Float64Array(m);
    for (let j = 0; j < m; j++) row[j] = Math.exp((f[i] + g[j] - C[i * m + j]) * inv);
    plan.push(row);
  }
  return { plan, f, g, iterations: it, marginalError: err, epsilon: eps };
}

export type PairingRule = 'argmax' | 'sample';

/**
 * Rounds a transport plan (n <= m) to a one-to-one pairing row -> column.
 *   'argmax': greedy on the plan's entries, largest first (deterministic);
 *   'sample': rows in random order, each draws a still-free column with probability
 *             proportional to its plan entry (needs `rng`).
 */
export function planToPairing(plan: CostMatrix, rule: PairingRule = 'argmax', rng?: Rng): number[] {
  const { n, m } = checkCost('plan', plan, 'rows<=cols');
  checkOneOf('pairing', rule, ['argmax', 'sample']);
  const assign = new Array<number>(n).fill(-1);
  const taken = new Uint8Array(m);
  if (rule === 'argmax') {
    const order = new Uint32Array(n * m);
    const vals = new Float64Array(n * m);
    for (let i = 0; i < n; i++) for (let j = 0; j < m; j++) vals[i * m + j] = plan[i][j];
    for (let k = 0; k < order.length; k++) order[k] = k;
    order.sort((x, y) => vals[y] - vals[x] || x - y);
    let left = n;
    for (let k = 0; k < order.length && left > 0; k++) {
      const i = Math.floor(order[k] / m);
      const j = order[k] - i * m;
      if (assign[i] >= 0 || taken[j]) continue;
      assign[i] = j;
      taken[j] = 1;
      left--;
    }
    return assign;
  }
  if (!rng) fail("planToPairing: rule 'sample' needs an rng");
  const rows = rng.permutation(n);
  for (const i of rows) {
    const row = plan[i];
    let total = 0;
    for (let j = 0; j < m; j++) if (!taken[j]) total += Math.max(0, row[j]);
    let pick = -1;
    if (total > 0) {
      let r = rng.uniform() * total;
      for (let j = 0; j < m; j++) {
        if (taken[j]) continue;
        const w = Math.max(0, row[j]);
        if (w <= 0) continue;
        pick = j;
        r -= w;
        if (r < 0) break;
      }
    }
    if (pick < 0) {
      // All remaining mass underflowed: take the free column with the largest entry.
      let best = -Infinity;
      for (let j = 0; j < m; j++) if (!taken[j] && row[j] > best) { best = row[j]; pick = j; }
    }
    assign[i] = pick;
    taken[pick] = 1;
  }
  return assign;
}

/**
 * Improves a pairing by pairwise exchanges: while some swap of the partners of rows i and k
 * lowers the total cost, make it (2-opt). Each pass is O(n^2); stops after `passes` passes
 * or when no swap helps. Returns a new array.
 */
export function refinePairing(cost: CostMatrix, assign: readonly number[], passes = 3): number[] {
  checkNumber('passes', passes, { integer: true, min: 0 });
  const a = assign.slice();
  const n = a.length;
  for (let p = 0; p < passes; p++) {
    let changed = false;
    for (let i = 0; i < n; i++) {
      const ci = cost[i];
      for (let k = i + 1; k < n; k++) {
        const ck = cost[k];
        if (ci[a[k]] + ck[a[i]] < ci[a[i]] + ck[a[k]] - 1e-12) {
          const tmp = a[i];
          a[i] = a[k];
          a[k] = tmp;
          changed = true;
        }
      }
    }
    if (!changed) break;
  }
  return a;
}

/** Squared Euclidean distances between the rows of a [n, d] and b [m, d] (row-major), in float64. */
export function squaredDistances(a: ArrayLike<number>, n: number, b: ArrayLike<number>, m: number, d: number): Float64Array[] {
  const out: Float64Array[] = [];
  for (let i = 0; i < n; i++) {
    const row = new Float64Array(m);
    const oi = i * d;
    for (let j = 0; j < m; j++) {
      const oj = j * d;
      let s = 0;
      for (let k = 0; k < d; k++) {
        const diff = a[oi + k] - b[oj + k];
        s += diff * diff;
      }
      row[j] = s;
    }
    out.push(row);
  }
  return out;
}
