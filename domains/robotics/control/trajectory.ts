/**
 * Time-indexed action sources the control loop samples at tick times: one chunk (linear
 * interpolation between its rows), a crossfade between an old source and a new chunk, and the
 * continuation of an exhausted source (hold its last value, or extrapolate its last slope).
 */
import type { TimedChunk } from './types.js';

export type HoldMode = 'hold' | 'extrapolate';

export interface ActionTrajectory {
  /** Last time (ms) backed by chunk rows; after it the source is exhausted (`Infinity` = never). */
  readonly endMs: number;
  /** Write the action for time `tMs` into `out` (times outside the rows are clamped to them). */
  valueAt(tMs: number, out: Float64Array): void;
  /** d action / dt (per ms) at `endMs`, for extrapolation. */
  slopeAtEnd(out: Float64Array): void;
}

/** One chunk: row k is meant for `startMs + k * dtMs`; between rows, linear interpolation. */
export class ChunkTrajectory implements ActionTrajectory {
  readonly startMs: number;
  readonly dtMs: number;
  readonly rowCount: number;
  readonly endMs: number;
  /**
   * End of the executable part: the end of the period of row `currentRow + actionHorizon - 1`,
   * i.e. the time of the first row after it (clamped to the last row). A row is held for one
   * period like a robot command, so Ta executable rows span Ta periods, not Ta - 1.
   */
  readonly execEndMs: number;
  /** Seq of the observation the chunk was computed from. */
  readonly obsSeq: number;
  private readonly rows: Float64Array;

  constructor(
    chunk: TimedChunk,
    readonly dim: number,
    lastExecRow: number,
    /** The loop's sequence number of this chunk (0, 1, 2, ... in arrival order). */
    readonly seq: number,
  ) {
    this.startMs = chunk.startTimeMs;
    this.obsSeq = chunk.obsSeq;
    this.dtMs = chunk.dtMs;
    this.rowCount = chunk.actions.length;
    this.rows = new Float64Array(this.rowCount * dim);
    chunk.actions.forEach((row, k) => this.rows.set(row, k * dim));
    this.endMs = this.startMs + (this.rowCount - 1) * this.dtMs;
    this.execEndMs = this.startMs + Math.min(this.rowCount - 1, lastExecRow + 1) * this.dtMs;
  }

  /**
   * Copies of the rows meant for times at or after `tMs` (to within a microsecond), up to row
   * `lastRow` (clamped to the last row): what the chunk still has to run, next row first.
   */
  rowsBetween(tMs: number, lastRow: number): Float64Array[] {
    const first = Math.max(0, Math.ceil((tMs - this.startMs) / this.dtMs - 1e-6));
    const last = Math.min(this.rowCount - 1, lastRow);
    const out: Float64Array[] = [];
    for (let k = first; k <= last; k++) out.push(this.rows.slice(k * this.dim, (k + 1) * this.dim));
    return out;
  }

  valueAt(tMs: number, out: Float64Array): void {
    const d = this.dim;
    const u = (tMs - this.startMs) / this.dtMs;
    if (!(u > 0)) {
      for (let i = 0; i < d; i++) out[i] = this.rows[i]!;
      return;
    }
    const last = this.rowCount - 1;
    if (u >= last) {
      for (let i = 0; i < d; i++) out[i] = this.rows[last * d + i]!;
      return;
    }
    const k = Math.floor(u);
    const f = u - k;
    const a = k * d;
    const b = a + d;
    for (let i = 0; i < d; i++) out[i] = this.rows[a + i]! * (1 - f) + this.rows[b + i]! * f;
  }

  slopeAtEnd(out: Float64Array): void {
    const d = this.dim;
    const n = this.rowCount;
    if (n < 2) {
      out.fill(0);
      return;
    }
    for (let i = 0; i < d; i++) out[i] = (this.rows[(n - 1) * d + i]! - this.rows[(n - 2) * d + i]!) / this.dtMs;
  }
}

/** A fixed action, forever (the fallback start of a crossfade when nesting gets too deep). */
export class ConstantTrajectory implements ActionTrajectory {
  readonly endMs = Infinity;
  constructor(private readonly value: Float64Array) {}
  valueAt(_tMs: number, out: Float64Array): void {
    out.set(this.value);
  }
  slopeAtEnd(out: Float64Array): void {
    out.fill(0);
  }
}

/** `base` until its end, then its last value held, or continued along its last slope. */
export class MissTrajectory implements ActionTrajectory {
  readonly endMs = Infinity;
  private readonly slope: Float64Array;
  constructor(
    public base: ActionTrajectory,
    readonly mode: HoldMode,
    dim: number,
  ) {
    this.slope = new Float64Array(dim);
  }
  valueAt(tMs: number, out: Float64Array): void {
    const end = this.base.endMs;
    if (tMs <= end) {
      this.base.valueAt(tMs, out);
      return;
    }
    this.base.valueAt(end, out);
    if (this.mode === 'extrapolate') {
      this.base.slopeAtEnd(this.slope);
      const dt = tMs - end;
      for (let i = 0; i < out.length; i++) out[i] = out[i]! + this.slope[i]! * dt;
    }
  }
  slopeAtEnd(out: Float64Array): void {
    out.fill(0);
  }
}

/**
 * Crossfade from `prev` to `next`: (1 - w) prev(t) + w next(t), with w rising linearly from 0 at
 * `t0Ms` to 1 at `t0Ms + durationMs`. After that it is `next`.
 */
export class BlendTrajectory implements ActionTrajectory {
  private readonly scratch: Float64Array;
  constructor(
    public prev: ActionTrajectory,
    readonly next: ChunkTrajectory,
    readonly t0Ms: number,
    readonly durationMs: number,
  ) {
    this.scratch = new Float64Array(next.dim);
  }
  get endMs(): number {
    return this.next.endMs;
  }
  get endOfBlendMs(): number {
    return this.t0Ms + this.durationMs;
  }
  weight(tMs: number): number {
    if (this.durationMs <= 0) return 1;
    return Math.min(1, Math.max(0, (tMs - this.t0Ms) / this.durationMs));
  }
  valueAt(tMs: number, out: Float64Array): void {
    const w = this.weight(tMs);
    this.next.valueAt(tMs, out);
    if (w >= 1) return;
    this.prev.valueAt(tMs, this.scratch);
    for (let i = 0; i < out.length; i++) out[i] = (1 - w) * this.scratch[i]! + w * out[i]!;
  }
  slopeAtEnd(out: Float64Array): void {
    this.next.slopeAtEnd(out);
  }
}

/** Drop finished crossfades (at any depth) as of time `tMs`. */
export function simplifyTrajectory(traj: ActionTrajectory, tMs: number): ActionTrajectory {
  if (traj instanceof BlendTrajectory) {
    if (tMs >= traj.endOfBlendMs) return traj.next;
    traj.prev = simplifyTrajectory(traj.prev, tMs);
    return traj;
  }
  if (traj instanceof MissTrajectory) {
    traj.base = simplifyTrajectory(traj.base, tMs);
    return traj;
  }
  return traj;
}

/** Number of sources nested in crossfades (1 for a plain chunk). */
export function trajectoryDepth(traj: ActionTrajectory): number {
  if (traj instanceof BlendTrajectory) return 1 + trajectoryDepth(traj.prev);
  if (traj instanceof MissTrajectory) return trajectoryDepth(traj.base);
  return 1;
}
