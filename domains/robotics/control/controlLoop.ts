/**
 * The real-time control loop: turns a chunked policy (Diffusion Policy style: every inference
 * returns a time-stamped chunk of future actions) and a stream of observations into a steady
 * stream of actions at `rateHz`.
 *
 * ```ts
 * const loop = controlLoop({ policy, observations$, rateHz: 50, safeAction: zeroVelocity });
 * loop.actions$.subscribe((a) => robot.command(a.action));
 * loop.metrics$.subscribe((m) => log(m));
 * ...
 * await loop.stop();
 * ```
 *
 * Design (and why):
 *
 * - **Starting.** The loop starts when `controlLoop()` returns: it subscribes to `observations$`
 *   at once and its first tick is scheduled for "now" (timer delay 0, so a subscriber attached in
 *   the same synchronous block sees tick 0). `actions$`, `metrics$` and `events$` are hot
 *   Subjects: nothing is replayed to late subscribers and subscribing has no side effect.
 *   `stop()` cancels the timer, unsubscribes from the observations, completes `actions$`, emits
 *   a final (partial-window) metrics report, waits for the request in flight to settle (its
 *   chunk is ignored) for at most `stopTimeoutMs` on the loop clock (a dead policy server must
 *   not hang shutdown), then completes `metrics$` and `events$`. It never resets or closes the
 *   policy: the caller owns it.
 *
 * - **Ticks.** Tick k is scheduled at the absolute time `startMs + k * 1000 / rateHz` (never
 *   "previous + period", so timer lateness does not accumulate into drift). `tick` in each
 *   action is that schedule index. A timer that fires a whole period or more late emits only
 *   the newest due tick and skips the ones in between (counted in `ticksSkipped`, reported as a
 *   'ticks-skipped' event), so a stalled event loop never produces a burst of stale actions.
 *   The action of a tick is computed for its *scheduled* time `timeMs`, not the emission time,
 *   which keeps consecutive actions evenly spaced in time; `emittedMs - timeMs` is the jitter.
 *
 * - **Actions from chunks.** Row k of a chunk is meant for `startTimeMs + k * dtMs`; the action at
 *   time t interpolates linearly between the two rows around t (the loop typically runs faster
 *   than the policy's rows). A chunk covers `[startTimeMs, startTimeMs + (rows - 1) * dtMs]`
 *   (before its first row it gives row 0). Latency compensation falls out of time indexing:
 *   a chunk that arrives late is sampled at the current time, so its rows already in the past are
 *   never executed; a chunk whose last row is before the next tick is discarded ('chunk-expired')
 *   and a new one requested.
 *
 * - **When to request.** At most one request is in flight. The next chunk is requested, with the
 *   freshest observation, as soon as the time left until the end of the active chunk's
 *   executable part (the period of row `currentRow + actionHorizon - 1`, which ends at the time of
 *   the row after it) is below `requestLeadMs`, or when
 *   there is no usable chunk. The check runs at every tick, when an observation arrives and when
 *   a chunk or error arrives. Default lead: 1.5 x the p90 of the last 32 round-trip latencies
 *   plus one policy row (before the first measurement the latency is assumed to be one row),
 *   so requests adapt to the policy's speed. The rows after the executable part are kept as a
 *   reserve: they are executed (not a deadline miss) when the next chunk is late.
 *
 * - **Observations (backpressure).** The loop keeps one pending observation, never a queue. The
 *   policy sees every observation it is given once and in order: the one a request is made with
 *   goes to `requestChunk`, and an observation that is superseded before being used goes to
 *   `policy.observe()` only if it is the one nearest to `observeIntervalMs` (default: one policy
 *   row, the spacing of Diffusion Policy's observation history) after the last observation the
 *   policy received: at least that interval after it, or short of it by no more than its
 *   successor overshoots it (and at least half of it), so timer jitter never drops a row;
 *   otherwise it is dropped. A pending observation older than `maxObservationAgeMs`
 *   when a request is due is dropped as stale ('observation-stale') and the loop waits for a
 *   fresher one. Observations with a wrong state length, non-finite values, a non-increasing seq
 *   or a decreasing time are dropped ('observation-invalid'); none of this stops the loop.
 *   `observationsDropped` counts every observation the policy never saw.
 *
 * - **Blending.** When a chunk arrives while the loop is executing a chunk (or a crossfade, or
 *   holding / extrapolating after a miss), the output crossfades from the old source to the new
 *   chunk: `(1 - w) old(t) + w new(t)` with w rising linearly from 0 at the last emitted tick to 1
 *   `blendMs` later (default 0: no crossfade, the new chunk takes over at once; a crossfade
 *   averages two chunks, and two chunks of a multimodal policy may come from different modes:
 *   on arm-reach, run in virtual time with 30 ms latency, a one-row crossfade took success over
 *   100 episodes from 95 to 88). If the old chunk runs out
 *   during the crossfade it is held (or extrapolated) at its end, so the output stays
 *   continuous. Crossfades nest when chunks arrive faster than `blendMs`; nesting deeper than 4
 *   starts the crossfade from the last emitted action instead. The hand-over error
 *   `|new(t) - old(t)|` (L2, at the next tick time) is reported when the old source was a chunk
 *   or a crossfade. After a safe stop (or before the first chunk) the new chunk is used at once:
 *   a jump from the safe action is expected there.
 *
 * - **Pinning (`pinLatency`, opt-in).** A chunk computed from the observation at time t arrives
 *   about one round trip later; until then the loop keeps executing its current chunk, so the
 *   new chunk's rows for those times describe actions that never happen, and the new chunk may
 *   continue from a different state than the one the robot reaches (with a multimodal policy,
 *   from another mode). With `pinLatency` every request carries the rows the loop executes
 *   from its current source at the times t + j * dtMs (j from -(obsHorizon - 1), the rows
 *   already executed inside the observation window) up to the expected arrival (now + p90 of
 *   the recent round trips, one row before the first measurement), and a policy that supports
 *   it (the served policy, SimulatedLatencyPolicy) inpaints them, so the new chunk continues
 *   what actually happens. Nothing is pinned when the loop is not executing a chunk or
 *   crossfade, and at least one row of each chunk stays free.
 *
 * - **Deadlines.** A tick after the active chunk's last row is a deadline miss: for
 *   `stopAfterMs` (default two policy rows) the loop holds the last row (`holdMode: 'hold'`) or
 *   continues along the slope of the last two rows (`'extrapolate'`); after that it emits the
 *   safe action (source 'stop') until a chunk arrives. The safe action is `safeAction` (a fixed
 *   vector, or a function of the last emitted action, called once per stop); by default the
 *   last action held. Before the first chunk the loop emits `idleAction` with source 'idle'
 *   (default: `safeAction` when it is a vector, else zeros) — drivers should ignore 'idle' ticks
 *   unless they configured an idle action.
 *
 * - **Errors.** A rejected request, a synchronous throw from `requestChunk` or a chunk that fails
 *   validation (wrong obsSeq, row length, non-finite values, dtMs <= 0) counts as an inference
 *   error, is reported on `events$`, and the next request waits `errorBackoffMs` (default one
 *   policy row). Errors thrown by `policy.observe` or by a `safeAction` function are reported and
 *   survived.
 *
 * - **Metrics.** Every `metricsIntervalMs` (checked at ticks) `metrics$` emits a
 *   `ControlLoopMetrics` for the window that just ended (see metrics.ts; it mirrors the protobuf
 *   message). Every buffer is bounded (jitter: newest 4096 ticks; latency: newest 1024 chunks).
 *
 * - **Clock.** `clock` (default `systemClock()`: performance.now + setTimeout) is injectable;
 *   tests use `VirtualClock`. Observation and chunk times must be on this clock.
 */
import { isObservable, Subject, type Observable, type Subscription } from 'rxjs';
import { checkNumber, checkOneOf, fail } from '../../../src/util/validate.js';
import { systemClock, type LoopClock } from './clock.js';
import { type ControlLoopMetrics } from './metrics.js';
import { SampleWindow } from './sampleWindow.js';
import {
  BlendTrajectory,
  ChunkTrajectory,
  ConstantTrajectory,
  MissTrajectory,
  simplifyTrajectory,
  trajectoryDepth,
  type ActionTrajectory,
  type HoldMode,
} from './trajectory.js';
import type { ChunkPolicy, ChunkPolicyInfo, PinnedRows, TimedChunk, TimedObservation } from './types.js';

export { systemClock, VirtualClock, type LoopClock, type SystemClockOptions } from './clock.js';
export { toControlLoopMetricsProto, type ControlLoopMetrics } from './metrics.js';
export type { HoldMode } from './trajectory.js';

export type ActionSource = 'chunk' | 'blend' | 'hold' | 'extrapolate' | 'stop' | 'idle';

/** One tick's action. */
export interface ControlAction {
  /** Schedule index: tick k is scheduled at `startMs + k * 1000 / rateHz` (skipped ticks leave gaps). */
  readonly tick: number;
  /** Scheduled time of the tick (the time the action is computed for), ms on the loop clock. */
  readonly timeMs: number;
  /** When the tick actually ran, ms on the loop clock. */
  readonly emittedMs: number;
  /** Action vector (a fresh array per tick: keep it if you like). */
  readonly action: Float64Array;
  readonly source: ActionSource;
  /** Loop's sequence number (0, 1, ... in arrival order) of the newest chunk behind the action. */
  readonly chunkSeq?: number;
  /** Seq of the observation that chunk was computed from. */
  readonly obsSeq?: number;
  /** Weight of the new chunk during a crossfade (source 'blend'). */
  readonly blendWeight?: number;
}

export interface ControlLoopOptions {
  readonly policy: ChunkPolicy;
  readonly observations$: Observable<TimedObservation>;
  /** Action rate, Hz, in (0, 1000]. */
  readonly rateHz: number;
  /** Fixed request lead, ms (see header). Default: adaptive, 1.5 x p90 latency + one row. */
  readonly requestLeadMs?: number;
  /**
   * Crossfade duration, ms. Default 0: a new chunk takes over at once. A crossfade averages two
   * chunks, and consecutive chunks of a multimodal policy can come from different modes (see the
   * header); set it (e.g. one row, info.dtMs) for hardware that needs continuous commands.
   */
  readonly blendMs?: number;
  /** Pin the rows executed until a requested chunk arrives (see header). Default false. */
  readonly pinLatency?: boolean;
  /** What to emit while no chunk row covers the tick, before the safe stop. Default 'hold'. */
  readonly holdMode?: HoldMode;
  /** How long to hold / extrapolate after the last chunk row before the safe stop, ms. Default 2 rows. */
  readonly stopAfterMs?: number;
  /** Action emitted on a safe stop: a vector, or a function of the last emitted action. Default: hold the last action. */
  readonly safeAction?: Float64Array | ((last: Float64Array) => Float64Array);
  /** Action emitted before the first chunk (source 'idle'). Default: safeAction if a vector, else zeros. */
  readonly idleAction?: Float64Array;
  /** Observations older than this when a request is due are not used, ms (may be Infinity). Default 2 rows. */
  readonly maxObservationAgeMs?: number;
  /** Minimum spacing of the superseded observations forwarded to `policy.observe`, ms. Default one row; 0 forwards all. */
  readonly observeIntervalMs?: number;
  /** Wait after a failed request before the next one, ms. Default one row. */
  readonly errorBackoffMs?: number;
  /** Metrics window, ms. Default 1000. */
  readonly metricsIntervalMs?: number;
  /** How long `stop()` waits for the request in flight, ms (loop clock). Default 2000. */
  readonly stopTimeoutMs?: number;
  /** Default `systemClock()`. */
  readonly clock?: LoopClock;
  /**
   * Early replanning (opt-in): called with every valid observation while a chunk is active and
   * no request is in flight, with the chunk's rows from the observation's time to the end of its
   * executable part (next row first) and the previous valid observation's state. True requests
   * the next chunk now instead of `requestLeadMs` before the executable part ends ('replan'
   * event, `earlyReplans` counter); e.g. `armReachReplanCheck`. A throwing check is reported
   * ('callback-error') and counts as false.
   */
  readonly replanWhen?: (observation: Float64Array, upcoming: readonly Float64Array[], previous?: Float64Array) => boolean;
}

interface EventBase {
  /** Loop-clock time of the event, ms. */
  readonly timeMs: number;
}

/** Everything noteworthy that happens in the loop (all survivable). */
export type ControlLoopEvent = EventBase &
  (
    | { readonly kind: 'observation-invalid'; readonly seq?: number; readonly reason: string }
    | { readonly kind: 'observation-stale'; readonly seq: number; readonly ageMs: number }
    | { readonly kind: 'observations-error'; readonly error: unknown }
    | { readonly kind: 'observations-complete' }
    | { readonly kind: 'request'; readonly obsSeq: number; readonly remainingMs: number; readonly leadMs: number; readonly pinnedRows?: number }
    | {
        readonly kind: 'chunk';
        readonly chunkSeq: number;
        readonly obsSeq: number;
        readonly latencyMs: number;
        /** How the output moves to it. */
        readonly handover: 'first' | 'crossfade' | 'switch' | 'resume';
        /** Hand-over error, when the old source was a chunk or crossfade. */
        readonly overlapError?: number;
      }
    | { readonly kind: 'chunk-expired'; readonly obsSeq: number; readonly endMs: number; readonly latencyMs: number }
    | { readonly kind: 'inference-error'; readonly obsSeq: number; readonly message: string; readonly error: unknown }
    | { readonly kind: 'deadline-miss'; readonly tickTimeMs: number; readonly chunkSeq: number }
    | { readonly kind: 'safe-stop'; readonly tickTimeMs: number }
    | { readonly kind: 'recovered'; readonly from: 'hold' | 'extrapolate' | 'stop'; readonly chunkSeq: number }
    | { readonly kind: 'ticks-skipped'; readonly count: number; readonly lateMs: number }
    | { readonly kind: 'replan'; readonly obsSeq: number; readonly chunkSeq: number; readonly rowsLeft: number }
    | { readonly kind: 'callback-error'; readonly where: 'policy.observe' | 'safeAction' | 'replanWhen'; readonly message: string; readonly error: unknown }
  );

/** Cumulative counters and state, readable at any time. */
export interface ControlLoopSnapshot {
  readonly running: boolean;
  readonly startMs: number;
  readonly ticks: number;
  readonly ticksSkipped: number;
  readonly deadlineMisses: number;
  readonly safeStops: number;
  readonly chunksRequested: number;
  readonly chunksReceived: number;
  readonly chunksExpired: number;
  readonly inferenceErrors: number;
  readonly observationsReceived: number;
  readonly observationsForwarded: number;
  readonly observationsDropped: number;
  readonly observationsInvalid: number;
  readonly requestInFlight: boolean;
  /** Observations held by the loop (0 or 1: there is no queue). */
  readonly pendingObservations: number;
  readonly requestLeadMs: number;
  readonly overlapErrorMax: number;
  readonly lastSource: ActionSource | null;
  /** Requests made early because `replanWhen` said so. */
  readonly earlyReplans: number;
}

export interface ControlLoop {
  readonly actions$: Observable<ControlAction>;
  readonly metrics$: Observable<ControlLoopMetrics>;
  readonly events$: Observable<ControlLoopEvent>;
  /** Loop-clock time of tick 0, ms. */
  readonly startMs: number;
  snapshot(): ControlLoopSnapshot;
  /**
   * Stop ticking, wait for the request in flight (at most `stopTimeoutMs`), complete the streams.
   * Idempotent. Does not close the policy.
   */
  stop(): Promise<void>;
}

/** Start a control loop (see the header of this file). Throws a ValidationError naming the bad option. */
export function controlLoop(opts: ControlLoopOptions): ControlLoop {
  const loop = new Loop(resolveOptions(opts));
  return {
    actions$: loop.actions$.asObservable(),
    metrics$: loop.metrics$.asObservable(),
    events$: loop.events$.asObservable(),
    startMs: loop.startMs,
    snapshot: () => loop.snapshot(),
    stop: () => loop.stop(),
  };
}

interface ResolvedOptions {
  readonly policy: ChunkPolicy;
  readonly info: ChunkPolicyInfo;
  readonly observations$: Observable<TimedObservation>;
  readonly rateHz: number;
  readonly requestLeadMs: number | undefined;
  readonly blendMs: number;
  readonly pinLatency: boolean;
  readonly holdMode: HoldMode;
  readonly stopAfterMs: number;
  readonly safeAction: Float64Array | ((last: Float64Array) => Float64Array) | undefined;
  readonly idleAction: Float64Array;
  readonly maxObservationAgeMs: number;
  readonly observeIntervalMs: number;
  readonly errorBackoffMs: number;
  readonly metricsIntervalMs: number;
  readonly stopTimeoutMs: number;
  readonly clock: LoopClock;
  readonly replanWhen: ControlLoopOptions['replanWhen'];
}

function checkVector(name: string, v: unknown, dim: number): Float64Array {
  if (!(v instanceof Float64Array)) fail(`${name}: expected a Float64Array of length ${dim}, received ${describe(v)}`);
  if (v.length !== dim) fail(`${name}: expected length ${dim} (policy.info.actionDim), received length ${v.length}`);
  for (let i = 0; i < v.length; i++) if (!Number.isFinite(v[i])) fail(`${name}: contains a non-finite value (${v[i]}) at index ${i}`);
  return v;
}

function checkBoolean(name: string, v: unknown): boolean {
  if (typeof v !== 'boolean') fail(`${name}: expected true or false, received ${describe(v)}`);
  return v;
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return `an array of length ${v.length}`;
  if (typeof v === 'object') return (v as object).constructor?.name ?? 'object';
  return `${typeof v} ${String(v)}`;
}

function checkPolicyInfo(info: unknown): ChunkPolicyInfo {
  if (info === null || typeof info !== 'object') fail(`policy.info: expected an object, received ${describe(info)}`);
  const i = info as Record<string, unknown>;
  const int = (k: string, min: number): number => checkNumber(`policy.info.${k}`, i[k], { integer: true, min });
  const actionDim = int('actionDim', 1);
  const observationDim = int('observationDim', 1);
  const predHorizon = int('predHorizon', 1);
  const actionHorizon = int('actionHorizon', 1);
  const currentRow = int('currentRow', 0);
  const obsHorizon = int('obsHorizon', 1);
  const dtMs = checkNumber('policy.info.dtMs', i['dtMs'], { min: Number.MIN_VALUE });
  if (currentRow + actionHorizon > predHorizon) {
    fail(`policy.info: currentRow + actionHorizon = ${currentRow + actionHorizon} must be <= predHorizon = ${predHorizon}`);
  }
  return { actionDim, observationDim, predHorizon, actionHorizon, currentRow, dtMs, obsHorizon };
}

function resolveOptions(opts: ControlLoopOptions): ResolvedOptions {
  if (opts === null || typeof opts !== 'object') fail(`controlLoop: expected an options object, received ${describe(opts)}`);
  const policy = opts.policy;
  if (policy === null || typeof policy !== 'object') fail(`policy: expected a ChunkPolicy, received ${describe(policy)}`);
  for (const m of ['observe', 'requestChunk'] as const) {
    if (typeof policy[m] !== 'function') fail(`policy.${m}: expected a function, received ${describe(policy[m])}`);
  }
  const info = checkPolicyInfo(policy.info);
  if (!isObservable(opts.observations$)) fail(`observations$: expected an Observable, received ${describe(opts.observations$)}`);
  const rateHz = checkNumber('rateHz', opts.rateHz, { max: 1000 });
  if (!(rateHz > 0)) fail(`rateHz: expected > 0, received ${rateHz}`);
  const nonNeg = (name: string, v: number | undefined, dflt: number): number => (v === undefined ? dflt : checkNumber(name, v, { min: 0 }));
  const requestLeadMs = opts.requestLeadMs === undefined ? undefined : checkNumber('requestLeadMs', opts.requestLeadMs, { min: 0 });
  const blendMs = nonNeg('blendMs', opts.blendMs, 0);
  const holdMode = opts.holdMode === undefined ? 'hold' : checkOneOf('holdMode', opts.holdMode, ['hold', 'extrapolate'] as const);
  const stopAfterMs = nonNeg('stopAfterMs', opts.stopAfterMs, 2 * info.dtMs);
  let maxObservationAgeMs = 2 * info.dtMs;
  if (opts.maxObservationAgeMs !== undefined) {
    const v = opts.maxObservationAgeMs;
    if (typeof v !== 'number' || !(v > 0)) fail(`maxObservationAgeMs: expected a number > 0 (Infinity allowed), received ${String(v)}`);
    maxObservationAgeMs = v;
  }
  const observeIntervalMs = nonNeg('observeIntervalMs', opts.observeIntervalMs, info.dtMs);
  const errorBackoffMs = nonNeg('errorBackoffMs', opts.errorBackoffMs, info.dtMs);
  const metricsIntervalMs = opts.metricsIntervalMs === undefined ? 1000 : checkNumber('metricsIntervalMs', opts.metricsIntervalMs, { min: 1 });
  const stopTimeoutMs = nonNeg('stopTimeoutMs', opts.stopTimeoutMs, 2000);
  let safeAction: ResolvedOptions['safeAction'];
  if (typeof opts.safeAction === 'function') safeAction = opts.safeAction;
  else if (opts.safeAction !== undefined) safeAction = checkVector('safeAction', opts.safeAction, info.actionDim).slice();
  const idleAction =
    opts.idleAction !== undefined
      ? checkVector('idleAction', opts.idleAction, info.actionDim).slice()
      : safeAction instanceof Float64Array
        ? safeAction.slice()
        : new Float64Array(info.actionDim);
  const clock = opts.clock ?? systemClock();
  if (clock === null || typeof clock !== 'object' || typeof clock.now !== 'function' || typeof clock.setTimer !== 'function') {
    fail(`clock: expected { now(): number; setTimer(fn, delayMs): cancel }, received ${describe(clock)}`);
  }
  if (opts.replanWhen !== undefined && typeof opts.replanWhen !== 'function') fail(`replanWhen: expected a function (observation, upcoming, previous) => boolean, received ${describe(opts.replanWhen)}`);
  return {
    replanWhen: opts.replanWhen,
    policy,
    info,
    observations$: opts.observations$,
    rateHz,
    requestLeadMs,
    blendMs,
    pinLatency: opts.pinLatency === undefined ? false : checkBoolean('pinLatency', opts.pinLatency),
    holdMode,
    stopAfterMs,
    safeAction,
    idleAction,
    maxObservationAgeMs,
    observeIntervalMs,
    errorBackoffMs,
    metricsIntervalMs,
    stopTimeoutMs,
    clock,
  };
}

/** Crossfades nested deeper than this start from the last emitted action instead. */
const MAX_BLEND_DEPTH = 4;
const JITTER_WINDOW = 4096;
const LATENCY_WINDOW = 1024;
const LEAD_LATENCY_HISTORY = 32;

function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

class Loop {
  readonly actions$ = new Subject<ControlAction>();
  readonly metrics$ = new Subject<ControlLoopMetrics>();
  readonly events$ = new Subject<ControlLoopEvent>();
  readonly startMs: number;

  private readonly o: ResolvedOptions;
  private readonly clock: LoopClock;
  private readonly dim: number;
  private readonly periodMs: number;
  private readonly lastExecRow: number;

  private nextTick = 0;
  private cancelTimer: (() => void) | null = null;
  private stopped = false;
  private stopPromise: Promise<void> | null = null;
  private obsSub: Subscription | null = null;

  // Observations: one pending, never a queue.
  private pending: TimedObservation | null = null;
  private lastSeq = -Infinity;
  private lastObsTimeMs = -Infinity;
  private lastForwardedMs = -Infinity;

  // Inference.
  private inFlight: Promise<void> | null = null;
  private backoffUntilMs = -Infinity;
  private readonly latencyHistory = new SampleWindow(LEAD_LATENCY_HISTORY);
  private leadMsValue: number;

  // What is being executed.
  private current: ActionTrajectory | null = null;
  private activeChunk: ChunkTrajectory | null = null;
  private chunkCount = 0;
  private lastSource: ActionSource | null = null;
  private lastAction: Float64Array | null = null;
  private lastTickTimeMs = -Infinity;
  private stopAction: Float64Array | null = null;
  private readonly scratch: Float64Array;

  // Cumulative counters.
  private ticks = 0;
  private ticksSkipped = 0;
  private deadlineMisses = 0;
  private safeStops = 0;
  private chunksRequested = 0;
  private chunksReceived = 0;
  private chunksExpired = 0;
  private inferenceErrors = 0;
  private observationsReceived = 0;
  private observationsForwarded = 0;
  private observationsDropped = 0;
  private observationsInvalid = 0;
  private overlapErrorMax = 0;
  private earlyReplans = 0;
  /** Seq of the active chunk that `replanWhen` asked to replace (-1: none). */
  private replanChunkSeq = -1;
  private previousState: Float64Array | undefined = undefined;

  // Current metrics window.
  private winStartMs: number;
  private winTicks = 0;
  private winOverlapMax = 0;
  private readonly jitterWin = new SampleWindow(JITTER_WINDOW);
  private readonly latencyWin = new SampleWindow(LATENCY_WINDOW);

  constructor(o: ResolvedOptions) {
    this.o = o;
    this.clock = o.clock;
    this.dim = o.info.actionDim;
    this.periodMs = 1000 / o.rateHz;
    this.lastExecRow = o.info.currentRow + o.info.actionHorizon - 1;
    this.scratch = new Float64Array(this.dim);
    this.leadMsValue = o.requestLeadMs ?? 2.5 * o.info.dtMs;
    this.startMs = this.clock.now();
    this.winStartMs = this.startMs;
    this.cancelTimer = this.clock.setTimer(this.onTimer, 0);
    this.obsSub = o.observations$.subscribe({
      next: (obs) => this.onObservation(obs),
      error: (error: unknown) => this.emit({ kind: 'observations-error', error, timeMs: this.clock.now() }),
      complete: () => this.emit({ kind: 'observations-complete', timeMs: this.clock.now() }),
    });
    if (this.stopped) {
      // stop() was called from inside a synchronous emission during subscribe.
      this.obsSub.unsubscribe();
      this.obsSub = null;
    }
  }

  // ---------------------------------------------------------------- ticks

  private tickTime(k: number): number {
    return this.startMs + k * this.periodMs;
  }

  private readonly onTimer = (): void => {
    this.cancelTimer = null;
    if (this.stopped) return;
    const now = this.clock.now();
    let k = this.nextTick;
    let t = this.tickTime(k);
    if (now - t >= this.periodMs) {
      const newest = Math.max(k, Math.floor((now - this.startMs) / this.periodMs));
      if (newest > k) {
        this.ticksSkipped += newest - k;
        this.emit({ kind: 'ticks-skipped', count: newest - k, lateMs: now - t, timeMs: now });
        k = newest;
        t = this.tickTime(k);
      }
    }
    const action = this.computeAction(k, t, now);
    this.actions$.next(action);
    if (this.stopped) return; // a subscriber called stop()
    this.nextTick = k + 1;
    this.cancelTimer = this.clock.setTimer(this.onTimer, this.tickTime(this.nextTick) - this.clock.now());
    // The window that ends now excludes this tick, so a 1 s window at 50 Hz holds 50 ticks.
    if (now - this.winStartMs >= this.o.metricsIntervalMs) this.emitMetrics(now);
    this.ticks++;
    this.winTicks++;
    this.jitterWin.push(now - t);
    this.maybeRequest(this.clock.now());
  };

  private computeAction(k: number, t: number, now: number): ControlAction {
    const out = new Float64Array(this.dim);
    let source: ActionSource;
    let blendWeight: number | undefined;
    if (this.current !== null) this.current = simplifyTrajectory(this.current, t);
    const cur = this.current;
    const chunk = this.activeChunk;
    if (cur === null || chunk === null) {
      out.set(this.o.idleAction);
      source = 'idle';
    } else if (t <= cur.endMs) {
      cur.valueAt(t, out);
      if (cur instanceof BlendTrajectory) {
        source = 'blend';
        blendWeight = cur.weight(t);
      } else {
        source = 'chunk';
      }
      this.stopAction = null;
    } else {
      this.deadlineMisses++;
      const missMs = t - cur.endMs;
      if (this.lastSource !== 'hold' && this.lastSource !== 'extrapolate' && this.lastSource !== 'stop') {
        this.emit({ kind: 'deadline-miss', tickTimeMs: t, chunkSeq: chunk.seq, timeMs: now });
      }
      if (missMs < this.o.stopAfterMs) {
        cur.valueAt(cur.endMs, out);
        if (this.o.holdMode === 'extrapolate') {
          cur.slopeAtEnd(this.scratch);
          for (let i = 0; i < this.dim; i++) out[i] = out[i]! + this.scratch[i]! * missMs;
        }
        source = this.o.holdMode;
      } else {
        if (this.stopAction === null) {
          this.stopAction = this.safeActionFrom(this.lastAction ?? this.heldValue(cur));
          this.emit({ kind: 'safe-stop', tickTimeMs: t, timeMs: now });
        }
        out.set(this.stopAction);
        source = 'stop';
        this.safeStops++;
      }
    }
    this.lastSource = source;
    this.lastAction = out;
    this.lastTickTimeMs = t;
    const base = { tick: k, timeMs: t, emittedMs: now, action: out, source };
    if (chunk === null) return base;
    return blendWeight === undefined
      ? { ...base, chunkSeq: chunk.seq, obsSeq: chunk.obsSeq }
      : { ...base, chunkSeq: chunk.seq, obsSeq: chunk.obsSeq, blendWeight };
  }

  private heldValue(traj: ActionTrajectory): Float64Array {
    const v = new Float64Array(this.dim);
    traj.valueAt(traj.endMs, v);
    return v;
  }

  private safeActionFrom(last: Float64Array): Float64Array {
    const s = this.o.safeAction;
    if (s === undefined) return last.slice();
    if (s instanceof Float64Array) return s;
    try {
      return checkVector('safeAction(last)', s(last.slice()), this.dim).slice();
    } catch (error) {
      this.emit({ kind: 'callback-error', where: 'safeAction', message: errorMessage(error), error, timeMs: this.clock.now() });
      return last.slice();
    }
  }

  // ---------------------------------------------------------------- observations

  private onObservation(obs: TimedObservation): void {
    if (this.stopped) return;
    this.observationsReceived++;
    const problem = this.observationProblem(obs);
    if (problem !== null) {
      this.observationsDropped++;
      this.observationsInvalid++;
      const seq = obs !== null && typeof obs === 'object' && typeof obs.seq === 'number' ? obs.seq : undefined;
      this.emit(
        seq === undefined
          ? { kind: 'observation-invalid', reason: problem, timeMs: this.clock.now() }
          : { kind: 'observation-invalid', seq, reason: problem, timeMs: this.clock.now() },
      );
      return;
    }
    this.lastSeq = obs.seq;
    this.lastObsTimeMs = obs.timeMs;
    const superseded = this.pending;
    if (superseded !== null) {
      // Forward the observation nearest to one interval after the last one the policy saw: at
      // least the interval, or short of it by no more than the new one overshoots it (so an
      // observation 99.9 ms after the last one, with the next 100 ms later, still counts as one
      // row; dropping it would give the policy a history two rows apart).
      const target = this.o.observeIntervalMs;
      const gap = superseded.timeMs - this.lastForwardedMs;
      const nextGap = obs.timeMs - this.lastForwardedMs;
      if (gap >= target || (gap >= target / 2 && target - gap <= nextGap - target)) this.forward(superseded);
      else this.observationsDropped++;
    }
    this.pending = obs;
    this.checkReplan(obs);
    this.previousState = obs.state;
    this.maybeRequest(this.clock.now());
  }

  /** Early replanning: ask `replanWhen` whether the rest of the active chunk is still safe. */
  private checkReplan(obs: TimedObservation): void {
    const check = this.o.replanWhen;
    const chunk = this.activeChunk;
    if (!check || chunk === null || this.inFlight !== null || this.replanChunkSeq === chunk.seq) return;
    const upcoming = chunk.rowsBetween(obs.timeMs, this.lastExecRow);
    if (upcoming.length === 0) return;
    let replan = false;
    try {
      replan = check(obs.state, upcoming, this.previousState) === true;
    } catch (error) {
      this.emit({ kind: 'callback-error', where: 'replanWhen', message: errorMessage(error), error, timeMs: this.clock.now() });
      return;
    }
    if (!replan) return;
    this.replanChunkSeq = chunk.seq;
    this.earlyReplans++;
    this.emit({ kind: 'replan', obsSeq: obs.seq, chunkSeq: chunk.seq, rowsLeft: upcoming.length, timeMs: this.clock.now() });
  }

  private observationProblem(obs: TimedObservation): string | null {
    if (obs === null || typeof obs !== 'object') return `expected a TimedObservation, received ${describe(obs)}`;
    if (typeof obs.seq !== 'number' || !Number.isFinite(obs.seq)) return `seq: expected a finite number, received ${String(obs.seq)}`;
    if (!(obs.seq > this.lastSeq)) return `seq: expected > ${this.lastSeq} (strictly increasing), received ${obs.seq}`;
    if (typeof obs.timeMs !== 'number' || !Number.isFinite(obs.timeMs)) return `timeMs: expected a finite number, received ${String(obs.timeMs)}`;
    if (obs.timeMs < this.lastObsTimeMs) return `timeMs: expected >= ${this.lastObsTimeMs} (non-decreasing), received ${obs.timeMs}`;
    const state: unknown = obs.state;
    if (!(state instanceof Float64Array)) return `state: expected a Float64Array, received ${describe(state)}`;
    const dim = this.o.info.observationDim;
    if (state.length !== dim) return `state: expected length ${dim} (policy.info.observationDim), received length ${state.length}`;
    for (let i = 0; i < state.length; i++) {
      if (!Number.isFinite(state[i])) return `state: contains a non-finite value (${state[i]}) at index ${i}`;
    }
    return null;
  }

  private forward(obs: TimedObservation): void {
    this.lastForwardedMs = obs.timeMs;
    this.observationsForwarded++;
    try {
      this.o.policy.observe(obs);
    } catch (error) {
      this.emit({ kind: 'callback-error', where: 'policy.observe', message: errorMessage(error), error, timeMs: this.clock.now() });
    }
  }

  // ---------------------------------------------------------------- inference

  private needsChunk(now: number): boolean {
    const chunk = this.activeChunk;
    if (chunk === null || this.replanChunkSeq === chunk.seq) return true;
    return chunk.execEndMs - now < this.leadMsValue;
  }

  private maybeRequest(now: number): void {
    if (this.stopped || this.inFlight !== null || now < this.backoffUntilMs) return;
    if (this.pending === null || !this.needsChunk(now)) return;
    const obs = this.pending;
    this.pending = null;
    const ageMs = now - obs.timeMs;
    if (ageMs > this.o.maxObservationAgeMs) {
      this.observationsDropped++;
      this.emit({ kind: 'observation-stale', seq: obs.seq, ageMs, timeMs: now });
      return;
    }
    this.lastForwardedMs = obs.timeMs;
    this.observationsForwarded++;
    this.chunksRequested++;
    const remainingMs = this.activeChunk === null ? 0 : this.activeChunk.execEndMs - now;
    const pinned = this.o.pinLatency ? this.pinsFor(obs, now) : undefined;
    this.emit(
      pinned
        ? { kind: 'request', obsSeq: obs.seq, remainingMs, leadMs: this.leadMsValue, pinnedRows: pinned.rows.length, timeMs: now }
        : { kind: 'request', obsSeq: obs.seq, remainingMs, leadMs: this.leadMsValue, timeMs: now },
    );
    let p: Promise<TimedChunk>;
    try {
      p = Promise.resolve(pinned ? this.o.policy.requestChunk(obs, { pinned }) : this.o.policy.requestChunk(obs));
    } catch (error) {
      p = Promise.reject(error);
    }
    this.inFlight = p
      .then(
        (chunk) => this.onChunk(chunk, obs, now),
        (error: unknown) => this.onError(error, obs),
      )
      .catch((error: unknown) => {
        // A bug in the handlers must not leave the loop thinking a request is in flight.
        this.inFlight = null;
        this.emit({ kind: 'inference-error', obsSeq: obs.seq, message: `internal: ${errorMessage(error)}`, error, timeMs: this.clock.now() });
      });
  }

  /** The rows the loop executes from its current source between the observation window and the expected arrival. */
  private pinsFor(obs: TimedObservation, now: number): PinnedRows | undefined {
    const src = this.current;
    const chunk = this.activeChunk;
    if (src === null || chunk === null || (this.lastSource !== 'chunk' && this.lastSource !== 'blend')) return undefined;
    const { dtMs, obsHorizon, predHorizon, currentRow } = this.o.info;
    const expectedMs = this.latencyHistory.count > 0 ? this.latencyHistory.percentiles([0.9])[0]! : dtMs;
    const arrival = now + expectedMs;
    const eps = 1e-6 * dtMs;
    const rows: Float64Array[] = [];
    let firstRow: number | undefined;
    // Row j of the new chunk (relative to its observation's row) is chunk row currentRow + j; its
    // last row always stays free.
    for (let j = -(obsHorizon - 1); currentRow + j < predHorizon - 1; j++) {
      const t = obs.timeMs + j * dtMs;
      if (t >= arrival - eps) break;
      if (t < chunk.startMs - eps || t > chunk.endMs + eps) {
        if (firstRow === undefined) continue;
        break;
      }
      firstRow ??= j;
      const v = new Float64Array(this.dim);
      src.valueAt(t, v);
      rows.push(v);
    }
    return firstRow === undefined ? undefined : { firstRow, rows };
  }

  private onError(error: unknown, obs: TimedObservation): void {
    this.inFlight = null;
    this.inferenceErrors++;
    if (this.stopped) return;
    const now = this.clock.now();
    this.backoffUntilMs = now + this.o.errorBackoffMs;
    this.emit({ kind: 'inference-error', obsSeq: obs.seq, message: errorMessage(error), error, timeMs: now });
  }

  private chunkProblem(chunk: TimedChunk, obs: TimedObservation): string | null {
    if (chunk === null || typeof chunk !== 'object') return `chunk: expected a TimedChunk, received ${describe(chunk)}`;
    if (chunk.obsSeq !== obs.seq) return `chunk.obsSeq: expected ${obs.seq} (the requested observation), received ${String(chunk.obsSeq)}`;
    if (typeof chunk.startTimeMs !== 'number' || !Number.isFinite(chunk.startTimeMs)) return `chunk.startTimeMs: expected a finite number, received ${String(chunk.startTimeMs)}`;
    if (typeof chunk.dtMs !== 'number' || !(chunk.dtMs > 0) || !Number.isFinite(chunk.dtMs)) return `chunk.dtMs: expected a finite number > 0, received ${String(chunk.dtMs)}`;
    const rows: unknown = chunk.actions;
    if (!Array.isArray(rows) || rows.length === 0) return `chunk.actions: expected a non-empty array of rows, received ${describe(rows)}`;
    for (let k = 0; k < rows.length; k++) {
      const row: unknown = rows[k];
      if (!(row instanceof Float64Array) || row.length !== this.dim) {
        return `chunk.actions[${k}]: expected a Float64Array of length ${this.dim} (policy.info.actionDim), received ${describe(row)}${row instanceof Float64Array ? ` of length ${row.length}` : ''}`;
      }
      for (let i = 0; i < row.length; i++) {
        if (!Number.isFinite(row[i])) return `chunk.actions[${k}]: contains a non-finite value (${row[i]}) at index ${i}`;
      }
    }
    return null;
  }

  private onChunk(chunk: TimedChunk, obs: TimedObservation, requestedMs: number): void {
    this.inFlight = null;
    this.chunksReceived++;
    if (this.stopped) return;
    const now = this.clock.now();
    const latencyMs = now - requestedMs;
    const problem = this.chunkProblem(chunk, obs);
    if (problem !== null) {
      this.inferenceErrors++;
      this.backoffUntilMs = now + this.o.errorBackoffMs;
      this.emit({ kind: 'inference-error', obsSeq: obs.seq, message: problem, error: new Error(problem), timeMs: now });
      return;
    }
    this.latencyWin.push(latencyMs);
    this.latencyHistory.push(latencyMs);
    if (this.o.requestLeadMs === undefined) {
      this.leadMsValue = 1.5 * this.latencyHistory.percentiles([0.9])[0]! + this.o.info.dtMs;
    }
    const tNext = this.tickTime(this.nextTick);
    const traj = new ChunkTrajectory(chunk, this.dim, this.lastExecRow, this.chunkCount);
    if (traj.endMs < tNext) {
      this.chunksExpired++;
      this.emit({ kind: 'chunk-expired', obsSeq: obs.seq, endMs: traj.endMs, latencyMs, timeMs: now });
      this.maybeRequest(now);
      return;
    }
    this.chunkCount++;
    const cur = this.current;
    const from = this.lastSource;
    let handover: 'first' | 'crossfade' | 'switch' | 'resume' = 'first';
    let overlapError: number | undefined;
    if (cur !== null && (from === 'chunk' || from === 'blend')) {
      const old = new MissTrajectory(cur, this.o.holdMode, this.dim);
      old.valueAt(tNext, this.scratch);
      const fresh = new Float64Array(this.dim);
      traj.valueAt(tNext, fresh);
      let s = 0;
      for (let i = 0; i < this.dim; i++) s += (fresh[i]! - this.scratch[i]!) ** 2;
      overlapError = Math.sqrt(s);
      this.winOverlapMax = Math.max(this.winOverlapMax, overlapError);
      this.overlapErrorMax = Math.max(this.overlapErrorMax, overlapError);
    }
    if (cur !== null && this.o.blendMs > 0 && (from === 'chunk' || from === 'blend' || from === 'hold' || from === 'extrapolate')) {
      let prev: ActionTrajectory = new MissTrajectory(simplifyTrajectory(cur, this.lastTickTimeMs), this.o.holdMode, this.dim);
      if (trajectoryDepth(prev) >= MAX_BLEND_DEPTH && this.lastAction !== null) prev = new ConstantTrajectory(this.lastAction.slice());
      this.current = new BlendTrajectory(prev, traj, this.lastTickTimeMs, this.o.blendMs);
      handover = 'crossfade';
    } else {
      this.current = traj;
      if (cur !== null) handover = from === 'stop' ? 'resume' : 'switch';
    }
    this.activeChunk = traj;
    this.emit(
      overlapError === undefined
        ? { kind: 'chunk', chunkSeq: traj.seq, obsSeq: obs.seq, latencyMs, handover, timeMs: now }
        : { kind: 'chunk', chunkSeq: traj.seq, obsSeq: obs.seq, latencyMs, handover, overlapError, timeMs: now },
    );
    if (from === 'hold' || from === 'extrapolate' || from === 'stop') this.emit({ kind: 'recovered', from, chunkSeq: traj.seq, timeMs: now });
    this.maybeRequest(now);
  }

  // ---------------------------------------------------------------- metrics, events, stop

  private emit(e: ControlLoopEvent): void {
    this.events$.next(e);
  }

  private emitMetrics(now: number): void {
    const windowMs = now - this.winStartMs;
    if (!(windowMs > 0)) return;
    const [jitterP50Ms, jitterP99Ms] = this.jitterWin.percentiles([0.5, 0.99]) as [number, number];
    const [inferenceP50Ms, inferenceP99Ms] = this.latencyWin.percentiles([0.5, 0.99]) as [number, number];
    const m: ControlLoopMetrics = {
      timestampMs: now,
      windowS: windowMs / 1000,
      targetRateHz: this.o.rateHz,
      achievedRateHz: this.winTicks / (windowMs / 1000),
      jitterP50Ms,
      jitterP99Ms,
      jitterMaxMs: this.jitterWin.max(),
      deadlineMisses: this.deadlineMisses,
      safeStops: this.safeStops,
      inferenceP50Ms,
      inferenceP99Ms,
      overlapErrorMax: this.winOverlapMax,
      chunksRequested: this.chunksRequested,
      chunksReceived: this.chunksReceived,
      observationsDropped: this.observationsDropped,
      observationsInvalid: this.observationsInvalid,
      inferenceErrors: this.inferenceErrors,
      ticks: this.ticks,
      ticksSkipped: this.ticksSkipped,
      requestLeadMs: this.leadMsValue,
    };
    this.winStartMs = now;
    this.winTicks = 0;
    this.winOverlapMax = 0;
    this.jitterWin.clear();
    this.latencyWin.clear();
    this.metrics$.next(m);
  }

  snapshot(): ControlLoopSnapshot {
    return {
      running: !this.stopped,
      startMs: this.startMs,
      ticks: this.ticks,
      ticksSkipped: this.ticksSkipped,
      deadlineMisses: this.deadlineMisses,
      safeStops: this.safeStops,
      chunksRequested: this.chunksRequested,
      chunksReceived: this.chunksReceived,
      chunksExpired: this.chunksExpired,
      inferenceErrors: this.inferenceErrors,
      observationsReceived: this.observationsReceived,
      observationsForwarded: this.observationsForwarded,
      observationsDropped: this.observationsDropped,
      observationsInvalid: this.observationsInvalid,
      requestInFlight: this.inFlight !== null,
      pendingObservations: this.pending === null ? 0 : 1,
      requestLeadMs: this.leadMsValue,
      overlapErrorMax: this.overlapErrorMax,
      earlyReplans: this.earlyReplans,
      lastSource: this.lastSource,
    };
  }

  stop(): Promise<void> {
    if (this.stopPromise !== null) return this.stopPromise;
    this.stopped = true;
    this.cancelTimer?.();
    this.cancelTimer = null;
    this.obsSub?.unsubscribe();
    this.obsSub = null;
    this.actions$.complete();
    // The final window ends where the next tick would have been, so it holds whole periods like
    // the others (ending it at 'now' right after a tick would overstate the rate).
    if (this.winTicks > 0) this.emitMetrics(Math.max(this.clock.now(), this.tickTime(this.nextTick)));
    const inFlight = this.inFlight;
    const finish = (): void => {
      this.metrics$.complete();
      this.events$.complete();
    };
    if (inFlight === null) {
      finish();
      this.stopPromise = Promise.resolve();
    } else {
      this.stopPromise = new Promise<void>((resolve) => {
        const cancel = this.clock.setTimer(resolve, this.o.stopTimeoutMs);
        void inFlight.then(() => {
          cancel();
          resolve();
        });
      }).then(finish);
    }
    return this.stopPromise;
  }
}
