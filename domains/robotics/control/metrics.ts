/**
 * Health report of a control loop, shaped like the protobuf message
 * `scoreflow.v1.ControlLoopMetrics` (proto/robot.proto) with camelCase names and plain numbers,
 * plus a few loop-only counters.
 */
import type { ControlLoopMetricsProtoInit } from '../../../src/proto/index.js';

export interface ControlLoopMetrics {
  /** Loop-clock time at the end of the window, ms. */
  readonly timestampMs: number;
  /** Window length, s. */
  readonly windowS: number;
  readonly targetRateHz: number;
  /** Ticks emitted in the window / windowS. */
  readonly achievedRateHz: number;
  /**
   * Tick lateness (emittedMs - scheduled timeMs) over the window (the newest 4096 ticks for the
   * percentiles, every tick for the max), ms. Can be slightly negative with the system clock,
   * whose timers have 1 ms resolution. NaN for an empty window.
   */
  readonly jitterP50Ms: number;
  readonly jitterP99Ms: number;
  readonly jitterMaxMs: number;
  /** Ticks that emitted 'hold', 'extrapolate' or 'stop' (no chunk row covered them); cumulative. */
  readonly deadlineMisses: number;
  /** Ticks that emitted the safe action ('stop'); cumulative. */
  readonly safeStops: number;
  /**
   * Round-trip inference latency (requestChunk call to settled promise, on the loop clock) of
   * the chunks received in the window, ms. NaN when no chunk arrived in the window.
   */
  readonly inferenceP50Ms: number;
  readonly inferenceP99Ms: number;
  /**
   * Largest L2 distance, at hand-over, between the old chunk's action and the new chunk's action
   * in the window (hand-overs from a chunk or a crossfade only, not from hold/stop); 0 if none.
   */
  readonly overlapErrorMax: number;
  /** Cumulative. */
  readonly chunksRequested: number;
  /** Chunks whose promise resolved (valid or not, in time or not); cumulative. */
  readonly chunksReceived: number;
  /**
   * Observations never used (not passed to `requestChunk` nor to `observe`): superseded, stale,
   * out of order or invalid; cumulative.
   */
  readonly observationsDropped: number;
  /** The invalid part of observationsDropped (wrong length, non-finite values, bad seq/time); cumulative. */
  readonly observationsInvalid: number;
  /** Rejected requests plus resolved chunks that failed validation; cumulative. */
  readonly inferenceErrors: number;
  /** Ticks emitted; cumulative. */
  readonly ticks: number;
  /** Ticks skipped because the timer woke more than one period late; cumulative. */
  readonly ticksSkipped: number;
  /** Lead time currently used to trigger the next request, ms. */
  readonly requestLeadMs: number;
}

/** The init object for `encode('scoreflow.v1.ControlLoopMetrics', ...)`. Loop-only counters are left out. */
export function toControlLoopMetricsProto(m: ControlLoopMetrics): ControlLoopMetricsProtoInit {
  const u64 = (v: number): bigint => BigInt(Math.max(0, Math.round(v)));
  return {
    timestampNs: u64(m.timestampMs * 1e6),
    windowS: m.windowS,
    targetRateHz: m.targetRateHz,
    achievedRateHz: m.achievedRateHz,
    jitterP50Ms: m.jitterP50Ms,
    jitterP99Ms: m.jitterP99Ms,
    jitterMaxMs: m.jitterMaxMs,
    deadlineMisses: u64(m.deadlineMisses),
    safeStops: u64(m.safeStops),
    inferenceP50Ms: m.inferenceP50Ms,
    inferenceP99Ms: m.inferenceP99Ms,
    overlapErrorMax: m.overlapErrorMax,
    chunksRequested: u64(m.chunksRequested),
    chunksReceived: u64(m.chunksReceived),
    observationsDropped: u64(m.observationsDropped),
  };
}
