import { performance } from 'node:perf_hooks';
import { Subject } from 'rxjs';
import { describe, expect, it, vi } from 'vitest';
import {
  controlLoop,
  toControlLoopMetricsProto,
  VirtualClock,
  type ControlAction,
  type ControlLoop,
  type ControlLoopEvent,
  type ControlLoopMetrics,
  type ControlLoopOptions,
  type LoopClock,
} from '../../domains/robotics/control/controlLoop.js';
import type { ChunkPolicy, ChunkPolicyInfo, ChunkRequestOptions, TimedChunk, TimedObservation } from '../../domains/robotics/control/types.js';
import { decode, encode } from '../../src/proto/index.js';

// Everything below runs on a virtual clock except the last test (~1 s); a hang must fail fast.
vi.setConfig({ testTimeout: 20_000 });

const INFO: ChunkPolicyInfo = { actionDim: 2, observationDim: 3, predHorizon: 16, actionHorizon: 8, currentRow: 1, dtMs: 100, obsHorizon: 2 };

type Behaviour = 'ok' | 'reject' | 'throw' | 'nan' | 'wrong-seq';

interface FakePolicyOptions {
  /** Virtual clock, or 'real' for setTimeout. */
  readonly clock: VirtualClock | 'real';
  readonly latencyMs: number;
  /** Row value at row time t for the chunk with this index; default [t / 1000, chunkIndex]. */
  readonly rowValue?: (tRowMs: number, chunkIndex: number) => number[];
  /** What request number n (0-based) does; default 'ok'. */
  readonly behaviour?: (n: number) => Behaviour;
}

/**
 * A chunked policy whose chunks encode time: row k is for t_k = obs.timeMs + (k - currentRow) * dt
 * and holds [t_k / 1000, chunkIndex], so the action the loop should emit at time t is known in
 * closed form (t / 1000 while a chunk covers t). It answers after `latencyMs` on the clock.
 */
class FakePolicy implements ChunkPolicy {
  readonly info = INFO;
  readonly requests: { timeMs: number; obs: TimedObservation; opts?: ChunkRequestOptions }[] = [];
  observeCalls = 0;
  outstanding = 0;
  maxOutstanding = 0;
  /** Observations seen (observe + requestChunk), checked to be valid and in seq order. */
  seen = 0;
  lastSeenSeq = -Infinity;
  invalidSeen = 0;
  private chunkIndex = 0;
  private paused = false;
  private parked: (() => void)[] = [];

  constructor(private readonly o: FakePolicyOptions) {}

  private now(): number {
    return this.o.clock === 'real' ? performance.now() : this.o.clock.now();
  }

  private later(fn: () => void): void {
    if (this.o.clock === 'real') setTimeout(fn, this.o.latencyMs);
    else this.o.clock.setTimer(fn, this.o.latencyMs);
  }

  private check(obs: TimedObservation): void {
    this.seen++;
    const ok = obs.state instanceof Float64Array && obs.state.length === INFO.observationDim && obs.state.every(Number.isFinite) && obs.seq > this.lastSeenSeq;
    if (!ok) this.invalidSeen++;
    this.lastSeenSeq = obs.seq;
  }

  observe(obs: TimedObservation): void {
    this.check(obs);
    this.observeCalls++;
  }

  requestChunk(obs: TimedObservation, opts?: ChunkRequestOptions): Promise<TimedChunk> {
    this.check(obs);
    const n = this.requests.length;
    this.requests.push({ timeMs: this.now(), obs, ...(opts ? { opts } : {}) });
    const behaviour = this.o.behaviour?.(n) ?? 'ok';
    if (behaviour === 'throw') throw new Error(`sync failure ${n}`);
    this.outstanding++;
    this.maxOutstanding = Math.max(this.maxOutstanding, this.outstanding);
    return new Promise<TimedChunk>((resolve, reject) => {
      const answer = (): void =>
        this.later(() => {
          this.outstanding--;
          if (behaviour === 'reject') {
            reject(new Error(`inference failed ${n}`));
            return;
          }
          const idx = this.chunkIndex++;
          const start = obs.timeMs - INFO.currentRow * INFO.dtMs;
          const rowValue = this.o.rowValue ?? ((t: number, i: number) => [t / 1000, i]);
          const actions = Array.from({ length: INFO.predHorizon }, (_, k) => Float64Array.from(rowValue(start + k * INFO.dtMs, idx)));
          if (behaviour === 'nan') actions[3]![0] = NaN;
          resolve({ obsSeq: behaviour === 'wrong-seq' ? obs.seq + 1000 : obs.seq, startTimeMs: start, dtMs: INFO.dtMs, actions, latencyMs: this.o.latencyMs });
        });
      if (this.paused) this.parked.push(answer);
      else answer();
    });
  }

  /** Stop answering: requests hang until resume(). */
  pause(): void {
    this.paused = true;
  }

  /** Answer the parked requests (after the usual latency) and the following ones. */
  resume(): void {
    this.paused = false;
    for (const answer of this.parked.splice(0)) answer();
  }

  reset(): Promise<void> {
    return Promise.resolve();
  }
  closed = false;
  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }
}

/** Observations every `periodMs` on the virtual clock, state = [t / 1000, 0, 0]. */
function feedObservations(clock: VirtualClock, subject: Subject<TimedObservation>, periodMs: number): () => void {
  let seq = 0;
  let cancel: () => void = () => {};
  const emit = (): void => {
    subject.next({ timeMs: clock.now(), seq: seq++, state: Float64Array.of(clock.now() / 1000, 0, 0) });
    cancel = clock.setTimer(emit, periodMs);
  };
  cancel = clock.setTimer(emit, 0);
  return () => cancel();
}

interface Harness {
  loop: ControlLoop;
  clock: VirtualClock;
  policy: FakePolicy;
  obs$: Subject<TimedObservation>;
  actions: ControlAction[];
  events: ControlLoopEvent[];
  metrics: ControlLoopMetrics[];
  stopFeed: () => void;
}

function harness(
  policyOpts: Omit<FakePolicyOptions, 'clock'>,
  loopOpts: Partial<ControlLoopOptions> = {},
  feed: { periodMs: number } | null = { periodMs: 20 },
): Harness {
  const clock = new VirtualClock(1000);
  const policy = new FakePolicy({ clock, ...policyOpts });
  const obs$ = new Subject<TimedObservation>();
  const loop = controlLoop({ policy, observations$: obs$, rateHz: 50, clock, ...loopOpts });
  const actions: ControlAction[] = [];
  const events: ControlLoopEvent[] = [];
  const metrics: ControlLoopMetrics[] = [];
  loop.actions$.subscribe((a) => actions.push(a));
  loop.events$.subscribe((e) => events.push(e));
  loop.metrics$.subscribe((m) => metrics.push(m));
  const stopFeed = feed === null ? () => {} : feedObservations(clock, obs$, feed.periodMs);
  return { loop, clock, policy, obs$, actions, events, metrics, stopFeed };
}

/** Stop the loop; the virtual clock must move for the request in flight to settle. */
async function finish(h: Harness): Promise<void> {
  const stopped = h.loop.stop();
  await h.clock.advance(3000);
  await stopped;
  h.stopFeed();
}

function maxStep(actions: readonly ControlAction[], dim = 0): number {
  let m = 0;
  for (let i = 1; i < actions.length; i++) m = Math.max(m, Math.abs(actions[i]!.action[dim]! - actions[i - 1]!.action[dim]!));
  return m;
}

const ofKind = <K extends ControlLoopEvent['kind']>(events: readonly ControlLoopEvent[], kind: K): Extract<ControlLoopEvent, { kind: K }>[] =>
  events.filter((e): e is Extract<ControlLoopEvent, { kind: K }> => e.kind === kind);

describe('controlLoop: ticking', () => {
  it('ticks at rateHz on absolute times (no drift), idle before any chunk', async () => {
    const h = harness({ latencyMs: 80 }, { rateHz: 50, idleAction: Float64Array.of(7, 8) }, null);
    await h.clock.advance(1000);
    expect(h.actions.map((a) => a.tick)).toEqual(Array.from({ length: 51 }, (_, k) => k));
    h.actions.forEach((a, k) => {
      expect(a.timeMs).toBe(1000 + 20 * k);
      expect(a.emittedMs).toBe(a.timeMs);
      expect(a.source).toBe('idle');
      expect(Array.from(a.action)).toEqual([7, 8]);
    });
    expect(h.policy.requests).toHaveLength(0); // no observation, no request
    await finish(h);

    // 30 Hz: the period 33.33... ms is not representable; absolute scheduling keeps tick 300 at exactly +10 s.
    const g = harness({ latencyMs: 80 }, { rateHz: 30 }, null);
    await g.clock.advance(10_000);
    expect(g.actions).toHaveLength(301);
    expect(g.actions[300]!.timeMs).toBeCloseTo(1000 + 10_000, 9);
    expect(g.loop.snapshot().ticksSkipped).toBe(0);
    await finish(g);
  });

  it('skips the ticks a stalled event loop missed, counts them and reports the jitter', async () => {
    const h = harness({ latencyMs: 80 }, { metricsIntervalMs: 1000 }, null);
    await h.clock.advance(100); // ticks 0..5 at 1000..1100
    h.clock.stall(70); // now 1170: ticks 6 (1120) and 7 (1140) are missed, tick 8 (1160) runs 10 ms late
    await h.clock.advance(0);
    await h.clock.advance(100);
    const ticks = h.actions.map((a) => a.tick);
    expect(ticks.slice(0, 9)).toEqual([0, 1, 2, 3, 4, 5, 8, 9, 10]);
    const late = h.actions[6]!;
    expect(late.timeMs).toBe(1160);
    expect(late.emittedMs).toBe(1170);
    expect(h.actions[7]!.emittedMs).toBe(1180); // back on the grid
    expect(h.loop.snapshot().ticksSkipped).toBe(2);
    expect(ofKind(h.events, 'ticks-skipped')).toEqual([{ kind: 'ticks-skipped', count: 2, lateMs: 50, timeMs: 1170 }]);
    await h.clock.advance(1000);
    expect(h.metrics[0]!.jitterMaxMs).toBe(10);
    expect(h.metrics[0]!.jitterP50Ms).toBe(0);
    expect(h.metrics[0]!.ticksSkipped).toBe(2);
    expect(h.metrics[0]!.achievedRateHz).toBe(48); // 48 of the 50 scheduled ticks of the first second
    await finish(h);
  });
});

describe('controlLoop: chunks', () => {
  it('requests the next chunk before the current one runs out: no deadline misses when latency < lead', async () => {
    const h = harness({ latencyMs: 80 });
    await h.clock.advance(20_000);
    const snap = h.loop.snapshot();
    expect(snap.deadlineMisses).toBe(0);
    expect(snap.safeStops).toBe(0);
    expect(h.policy.maxOutstanding).toBe(1);
    // Adaptive lead: 1.5 x p90 latency (80) + one row (100).
    expect(snap.requestLeadMs).toBeCloseTo(220, 9);
    // After the first chunk every tick comes from a chunk (or a crossfade between two).
    const first = h.actions.findIndex((a) => a.source !== 'idle');
    expect(h.actions[first]!.timeMs).toBe(1000 + 80); // first observation at 1000, answer at 1080
    expect(h.actions.slice(first).every((a) => a.source === 'chunk' || a.source === 'blend')).toBe(true);
    // Every request after the first was made with time left on the executable part, below the lead,
    // and with the freshest observation (observations arrive every 20 ms).
    const requests = ofKind(h.events, 'request');
    expect(requests.length).toBeGreaterThan(30);
    for (const r of requests.slice(2)) {
      expect(r.remainingMs).toBeGreaterThan(0);
      expect(r.remainingMs).toBeLessThanOrEqual(r.leadMs);
    }
    for (const r of h.policy.requests) expect(r.timeMs - r.obs.timeMs).toBeLessThanOrEqual(20);
    // Chunks come every (exec horizon 800 ms: 8 rows held 100 ms each - lead 220 ms) = 580 ms in steady state.
    expect(snap.chunksReceived).toBeGreaterThanOrEqual(Math.floor(20_000 / 580) - 1);
    expect(snap.chunksReceived).toBeLessThanOrEqual(Math.ceil(20_000 / 580) + 1);
    expect(snap.chunksRequested - snap.chunksReceived).toBeLessThanOrEqual(1);
    await finish(h);
  });

  it('replanWhen: a chunk the check calls unsafe is replaced early; a throwing check is reported and ignored', async () => {
    const calls: { rows: number; t: number; prevT: number | undefined; firstRowT: number }[] = [];
    const h = harness(
      { latencyMs: 80 },
      {
        replanWhen: (obs, upcoming, previous) => {
          calls.push({ rows: upcoming.length, t: obs[0]!, prevT: previous?.[0], firstRowT: upcoming[0]![0]! });
          return upcoming.length <= 4;
        },
      },
    );
    await h.clock.advance(20_000);
    const snap = h.loop.snapshot();
    const replans = ofKind(h.events, 'replan');
    expect(replans.length).toBeGreaterThan(20);
    expect(snap.earlyReplans).toBe(replans.length);
    expect(snap.deadlineMisses).toBe(0);
    for (const r of replans) expect(r.rowsLeft).toBeLessThanOrEqual(4);
    // Each replan is followed at once by a request (same time), made with time left on the chunk.
    for (const r of replans) {
      const req = h.events.find((e) => e.kind === 'request' && e.timeMs === r.timeMs);
      expect(req).toBeDefined();
      expect((req as Extract<ControlLoopEvent, { kind: 'request' }>).remainingMs).toBeGreaterThan(220);
    }
    // The check sees the rows from the observation's time on (next row first), never past the
    // executable part (8 rows), and the previous observation (20 ms earlier).
    for (const c of calls) {
      expect(c.rows).toBeGreaterThan(0);
      expect(c.rows).toBeLessThanOrEqual(8);
      expect(c.firstRowT).toBeGreaterThanOrEqual(c.t - 1e-9);
      expect(c.firstRowT - c.t).toBeLessThan(0.1 + 1e-9);
      if (c.prevT !== undefined) expect(c.t - c.prevT).toBeCloseTo(0.02, 9);
    }
    // Chunks now come about every 800 - 400 - 80 ms instead of every 580 ms.
    expect(snap.chunksReceived).toBeGreaterThan(Math.ceil(20_000 / 580) + 5);
    await finish(h);

    const g = harness({ latencyMs: 80 }, { replanWhen: () => { throw new Error('check broke'); } });
    await g.clock.advance(5_000);
    const errors = ofKind(g.events, 'callback-error');
    expect(errors.length).toBeGreaterThan(0);
    expect(errors.every((e) => e.where === 'replanWhen' && e.message === 'check broke')).toBe(true);
    expect(g.loop.snapshot().earlyReplans).toBe(0);
    expect(g.loop.snapshot().deadlineMisses).toBe(0);
    expect(g.loop.snapshot().chunksReceived).toBeGreaterThan(5);
    await finish(g);
    expect(() => controlLoop({ policy: new FakePolicy({ clock: new VirtualClock(0), latencyMs: 1 }), observations$: new Subject<TimedObservation>(), rateHz: 50, replanWhen: 3 as never })).toThrow(/^replanWhen: expected a function/);
  });

  it('pinLatency: each request pins the rows the loop executes until the expected arrival', async () => {
    const h = harness({ latencyMs: 150 }, { pinLatency: true });
    await h.clock.advance(10_000);
    const reqs = h.policy.requests;
    expect(reqs.length).toBeGreaterThan(10);
    expect(reqs[0]!.opts).toBeUndefined(); // nothing executes before the first chunk
    const events = ofKind(h.events, 'request');
    for (const [n, r] of reqs.entries()) {
      if (n === 0) continue;
      const p = r.opts?.pinned;
      expect(p).toBeDefined();
      // From the row before the observation (obsHorizon 2) to the last row starting before now + 150 ms.
      expect(p!.firstRow).toBe(-1);
      const expected = Math.ceil((r.timeMs + 150 - r.obs.timeMs) / INFO.dtMs) + 1;
      expect(p!.rows.length).toBe(expected);
      // Rows are what the loop executes at those times: t / 1000 (FakePolicy's chunks encode time).
      p!.rows.forEach((row, k) => expect(row[0]).toBeCloseTo((r.obs.timeMs + (p!.firstRow + k) * INFO.dtMs) / 1000, 9));
      expect(events[n]!.pinnedRows).toBe(expected);
    }
    expect(h.loop.snapshot().deadlineMisses).toBe(0);
    await finish(h);
    // Off by default; a non-boolean is refused.
    const off = harness({ latencyMs: 150 });
    await off.clock.advance(3000);
    expect(off.policy.requests.every((r) => r.opts === undefined)).toBe(true);
    await finish(off);
    expect(() => harness({ latencyMs: 10 }, { pinLatency: 'yes' as unknown as boolean }, null)).toThrow(/pinLatency: expected true or false/);
  });

  it('emits the chunk interpolated at each tick time; rows already in the past are skipped', async () => {
    // 250 ms latency: the rows for obs time, +100 and +200 ms are stale when the chunk arrives.
    const h = harness({ latencyMs: 250 });
    await h.clock.advance(5000);
    const first = h.actions.find((a) => a.source !== 'idle')!;
    const obs0 = h.policy.requests[0]!.obs;
    expect(first.timeMs).toBe(obs0.timeMs + 260); // first tick after the answer at +250
    expect(first.action[0]).toBeCloseTo(first.timeMs / 1000, 12); // not row currentRow (obs time)
    expect(first.action[0]).not.toBeCloseTo(obs0.timeMs / 1000, 3);
    expect(first.chunkSeq).toBe(0);
    expect(first.obsSeq).toBe(obs0.seq);
    const used = h.actions.filter((a) => a.source === 'chunk' || a.source === 'blend');
    expect(used.length).toBe(h.actions.length - h.actions.indexOf(first));
    // Rows hold t/1000 at their times; the loop's 20 ms ticks fall between the 100 ms rows, so this
    // checks the linear interpolation, and that every chunk is read at the tick's own time.
    for (const a of used) expect(a.action[0]).toBeCloseTo(a.timeMs / 1000, 12);
    // Second column: the chunk index, exactly, outside crossfades.
    for (const a of used.filter((x) => x.source === 'chunk')) expect(a.action[1]).toBe(a.chunkSeq);
    expect(h.loop.snapshot().deadlineMisses).toBe(0);
    await finish(h);
  });

  it('crossfades between disagreeing chunks so consecutive actions stay continuous', async () => {
    // Consecutive chunks disagree by 0.5 in the first column.
    const rowValue = (t: number, i: number): number[] => [t / 1000 + 0.5 * (i % 2), 0];
    const blended = harness({ latencyMs: 80, rowValue }, { blendMs: 100 });
    await blended.clock.advance(10_000);
    const used = blended.actions.filter((a) => a.source !== 'idle');
    // The time ramp alone moves 0.02 per tick; a 100 ms crossfade at 50 Hz spreads the 0.5 offset
    // over 5 ticks (w = 0.2, 0.4, 0.6, 0.8, then 1).
    expect(maxStep(used)).toBeLessThanOrEqual(0.02 + 0.5 / 5 + 1e-9);
    const weights = used.filter((a) => a.source === 'blend').map((a) => a.blendWeight);
    expect(weights.slice(0, 4).map((w) => Number(w!.toFixed(9)))).toEqual([0.2, 0.4, 0.6, 0.8]);
    const snap = blended.loop.snapshot();
    expect(snap.overlapErrorMax).toBeCloseTo(0.5, 9);
    expect(snap.deadlineMisses).toBe(0);
    for (const e of ofKind(blended.events, 'chunk').slice(1)) {
      expect(e.handover).toBe('crossfade');
      expect(e.overlapError).toBeCloseTo(0.5, 9);
    }
    await finish(blended);

    // Same chunks without crossfading: the offset lands in one step.
    const switched = harness({ latencyMs: 80, rowValue }, { blendMs: 0 });
    await switched.clock.advance(10_000);
    const usedSwitched = switched.actions.filter((a) => a.source !== 'idle');
    expect(maxStep(usedSwitched)).toBeCloseTo(0.5 + 0.02, 9);
    expect(usedSwitched.some((a) => a.source === 'blend')).toBe(false);
    await finish(switched);
  });
  it('stays continuous when chunks arrive faster than the crossfade (nested crossfades are bounded)', async () => {
    // A 5 ms policy asked for a chunk at every observation (lead > executable horizon), with a
    // 200 ms crossfade: ~10 crossfades overlap at any time; nesting is capped at depth 4.
    const rowValue = (t: number, i: number): number[] => [t / 1000 + 0.5 * (i % 2), 0];
    const h = harness({ latencyMs: 5, rowValue }, { requestLeadMs: 10_000, blendMs: 200 });
    await h.clock.advance(5000);
    const used = h.actions.filter((a) => a.source !== 'idle');
    expect(h.loop.snapshot().chunksReceived).toBeGreaterThan(240); // one per 20 ms observation
    expect(used[0]!.source).toBe('chunk'); // the first chunk is used at once
    expect(used.slice(1).every((a) => a.source === 'blend')).toBe(true);
    // Without crossfading the output would jump by 0.5 every tick. With overlapping crossfades
    // every active one advances its weight by 20/200 per tick, so a step is the 0.02 time ramp plus
    // a small share of the offset (measured: 0.088).
    expect(maxStep(used.slice(1))).toBeLessThan(0.1);
    for (const a of used.slice(20)) {
      expect(a.action[0]! - a.timeMs / 1000).toBeGreaterThan(0.1);
      expect(a.action[0]! - a.timeMs / 1000).toBeLessThan(0.4);
    }
    expect(h.loop.snapshot().deadlineMisses).toBe(0);
    await finish(h);
  });
});

describe('controlLoop: deadlines', () => {
  it('holds, then emits the safe action after stopAfterMs, then recovers when inference returns', async () => {
    const safe = Float64Array.of(-1, -1);
    const h = harness({ latencyMs: 80 }, { stopAfterMs: 200, safeAction: safe });
    await h.clock.advance(3000);
    h.policy.pause();
    await h.clock.advance(3000);
    const lastChunk = [...h.actions].reverse().find((a) => a.source === 'chunk' || a.source === 'blend')!;
    const holds = h.actions.filter((a) => a.source === 'hold');
    const stops = h.actions.filter((a) => a.source === 'stop');
    // The last chunk's final row is at obs time + 14 rows: ticks in the next 200 ms hold it (9 ticks),
    // from 200 ms after it the safe action is emitted.
    expect(holds).toHaveLength(9);
    expect(holds[0]!.timeMs).toBe(lastChunk.timeMs + 20);
    for (const a of holds) expect(a.action[0]).toBeCloseTo(lastChunk.timeMs / 1000, 12);
    expect(stops.length).toBeGreaterThan(50);
    expect(stops[0]!.timeMs).toBe(lastChunk.timeMs + 200);
    for (const a of stops) expect(Array.from(a.action)).toEqual([-1, -1]);
    let snap = h.loop.snapshot();
    expect(snap.deadlineMisses).toBe(holds.length + stops.length);
    expect(snap.safeStops).toBe(stops.length);
    expect(snap.requestInFlight).toBe(true); // the parked request: still only one
    expect(ofKind(h.events, 'deadline-miss')).toHaveLength(1);
    expect(ofKind(h.events, 'safe-stop')).toHaveLength(1);

    // The policy answers again: the parked chunk (from an observation ~2.5 s old) has expired, so the
    // loop requests with a fresh observation and resumes from that chunk (a jump from the safe action).
    const resumeAt = h.clock.now();
    h.policy.resume();
    await h.clock.advance(1000);
    expect(ofKind(h.events, 'chunk-expired')).toHaveLength(1);
    const resumed = h.actions.find((a) => a.timeMs > resumeAt && a.source !== 'stop')!;
    expect(resumed.source).toBe('chunk');
    expect(resumed.timeMs).toBe(resumeAt + 80 + 80); // expired answer at +80, fresh request, answer at +160
    expect(resumed.action[0]).toBeCloseTo(resumed.timeMs / 1000, 12);
    expect(ofKind(h.events, 'recovered')).toEqual([expect.objectContaining({ kind: 'recovered', from: 'stop' })]);
    expect(ofKind(h.events, 'chunk').find((e) => e.timeMs > resumeAt)!.handover).toBe('resume');
    const after = h.actions.filter((a) => a.timeMs >= resumed.timeMs);
    expect(after.every((a) => a.source === 'chunk' || a.source === 'blend')).toBe(true);
    snap = h.loop.snapshot();
    expect(snap.safeStops).toBe(stops.length + h.actions.filter((a) => a.timeMs > resumeAt && a.source === 'stop').length);
    await finish(h);
  });

  it('crossfades from the held action when the chunk arrives during the hold', async () => {
    const h = harness({ latencyMs: 80 }, { stopAfterMs: 500, blendMs: 100 });
    await h.clock.advance(3000);
    h.policy.pause();
    while (!h.actions.some((a) => a.source === 'hold')) await h.clock.advance(20);
    await h.clock.advance(100); // 6 hold ticks so far
    h.policy.resume(); // the parked chunk is still valid: it is used, blended in from the held value
    await h.clock.advance(2000);
    const sources = h.actions.filter((a) => a.source !== 'idle').map((a) => a.source);
    const firstHold = sources.indexOf('hold');
    // 6 hold ticks before resume() and 3 more until the answer, 80 ms later; then the crossfade.
    expect(sources.slice(firstHold, firstHold + 10)).toEqual([...Array<string>(9).fill('hold'), 'blend']);
    expect(sources.includes('stop')).toBe(false);
    // Held value = last row; the new chunk is 0.18+ ahead (time ramp): without the crossfade this is a jump.
    const held = h.actions.filter((a) => a.source === 'hold').at(-1)!;
    const newAtFirstBlend = h.actions.find((a) => a.source === 'blend' && a.timeMs > held.timeMs)!;
    expect(newAtFirstBlend.timeMs / 1000 - held.action[0]!).toBeGreaterThan(0.15);
    expect(maxStep(h.actions.filter((a) => a.source !== 'idle'))).toBeLessThan(0.08);
    expect(ofKind(h.events, 'recovered')).toEqual([expect.objectContaining({ from: 'hold' })]);
    await finish(h);
  });

  it("holdMode 'extrapolate' continues along the last rows' slope", async () => {
    const h = harness({ latencyMs: 80 }, { holdMode: 'extrapolate', stopAfterMs: 300 });
    await h.clock.advance(3000);
    h.policy.pause();
    await h.clock.advance(2500);
    const extrap = h.actions.filter((a) => a.source === 'extrapolate');
    expect(extrap).toHaveLength(14); // misses of 20..280 ms
    // The rows are t/1000, so their slope continued gives t/1000 again.
    for (const a of extrap) expect(a.action[0]).toBeCloseTo(a.timeMs / 1000, 12);
    // Default safe action: the last action held.
    const stops = h.actions.filter((a) => a.source === 'stop');
    expect(stops.length).toBeGreaterThan(0);
    for (const a of stops) expect(Array.from(a.action)).toEqual(Array.from(extrap.at(-1)!.action));
    await finish(h);
  });
});

describe('controlLoop: robustness', () => {
  it('survives rejections, synchronous throws and invalid chunks, backing off after each', async () => {
    const plan: Behaviour[] = ['reject', 'reject', 'throw', 'nan', 'wrong-seq'];
    const h = harness({ latencyMs: 80, behaviour: (n) => plan[n] ?? 'ok' }, { errorBackoffMs: 100 });
    await h.clock.advance(5000);
    const errors = ofKind(h.events, 'inference-error');
    expect(errors.map((e) => e.message)).toEqual([
      'inference failed 0',
      'inference failed 1',
      'sync failure 2',
      expect.stringMatching(/chunk\.actions\[3\]: contains a non-finite value \(NaN\)/),
      expect.stringMatching(/chunk\.obsSeq: expected \d+/),
    ]);
    const snap = h.loop.snapshot();
    expect(snap.inferenceErrors).toBe(5);
    expect(snap.ticks).toBe(251); // never stopped ticking
    // Each retry waits for the backoff after the failure was known.
    const t = h.policy.requests.map((r) => r.timeMs);
    expect(t[1]! - t[0]!).toBeGreaterThanOrEqual(80 + 100);
    expect(t[3]! - t[2]!).toBeGreaterThanOrEqual(100); // synchronous throw: failure known at once
    // Then chunks flow and are executed exactly.
    const used = h.actions.filter((a) => a.source === 'chunk' || a.source === 'blend');
    expect(used.length).toBeGreaterThan(150);
    for (const a of used) expect(a.action[0]).toBeCloseTo(a.timeMs / 1000, 12);
    expect(snap.deadlineMisses).toBe(0);
    await finish(h);
  });

  it('floods of observations: one pending observation, at most one request in flight, drops counted', async () => {
    const h = harness({ latencyMs: 80 }, {}, null);
    let seq = 0;
    const cancel: { fn: () => void } = { fn: () => {} };
    // 1000 observations at once, every 20 ms, for 2 s: 100,000 observations.
    const flood = (): void => {
      for (let i = 0; i < 1000; i++) h.obs$.next({ timeMs: h.clock.now(), seq: seq++, state: Float64Array.of(h.clock.now() / 1000, i, 0) });
      expect(h.loop.snapshot().pendingObservations).toBeLessThanOrEqual(1);
      cancel.fn = h.clock.setTimer(flood, 20);
    };
    cancel.fn = h.clock.setTimer(flood, 5);
    await h.clock.advance(2000);
    cancel.fn();
    const snap = h.loop.snapshot();
    expect(snap.observationsReceived).toBe(100_000);
    expect(h.policy.maxOutstanding).toBe(1);
    // Requests only when the chunk runs low (~every 480 ms), not per observation.
    expect(snap.chunksRequested).toBeLessThanOrEqual(6);
    // The policy's history gets at most one observation per row (100 ms) besides the requested ones.
    expect(h.policy.observeCalls).toBeLessThanOrEqual(2000 / 100 + 1);
    expect(snap.observationsForwarded).toBe(h.policy.observeCalls + snap.chunksRequested);
    expect(snap.observationsDropped).toBe(snap.observationsReceived - snap.observationsForwarded - snap.pendingObservations);
    expect(snap.observationsDropped).toBeGreaterThan(99_000);
    expect(h.policy.invalidSeen).toBe(0); // in seq order
    expect(snap.deadlineMisses).toBe(0);
    await finish(h);
  });

  it('observations one row apart with timer jitter all reach the policy; a faster sensor still gives one per row', async () => {
    // A robot reporting at the policy's own 10 Hz, each report 0-0.5 ms early or late.
    const h = harness({ latencyMs: 30 }, {}, null);
    let seq = 0;
    const jitter = [0.3, -0.4, 0.1, -0.2, 0.5, -0.5];
    const cancel: { fn: () => void } = { fn: () => {} };
    const send = (): void => {
      h.obs$.next({ timeMs: h.clock.now(), seq: seq++, state: Float64Array.of(h.clock.now() / 1000, 0, 0) });
      cancel.fn = h.clock.setTimer(send, 100 + jitter[seq % jitter.length]!);
    };
    cancel.fn = h.clock.setTimer(send, 0);
    await h.clock.advance(5000);
    cancel.fn();
    const snap = h.loop.snapshot();
    expect(snap.observationsReceived).toBeGreaterThan(45);
    // Every observation but the pending one went to the policy (observe or a request), in order.
    expect(snap.observationsDropped).toBe(0);
    expect(snap.observationsForwarded).toBe(snap.observationsReceived - snap.pendingObservations);
    await finish(h);

    // A 50 Hz sensor (20 ms, slightly early): the policy's history still gets one observation per
    // ~100 ms row, the one nearest to a row after the last.
    const f = harness({ latencyMs: 30 }, {}, null);
    const seen: number[] = [];
    const observe = f.policy.observe.bind(f.policy);
    f.policy.observe = (o: TimedObservation): void => {
      seen.push(o.timeMs);
      observe(o);
    };
    const request = f.policy.requestChunk.bind(f.policy);
    f.policy.requestChunk = (o: TimedObservation) => {
      seen.push(o.timeMs);
      return request(o);
    };
    let s2 = 0;
    const fast = (): void => {
      f.obs$.next({ timeMs: f.clock.now(), seq: s2++, state: Float64Array.of(f.clock.now() / 1000, 0, 0) });
      cancel.fn = f.clock.setTimer(fast, 19.9);
    };
    cancel.fn = f.clock.setTimer(fast, 0);
    await f.clock.advance(5000);
    cancel.fn();
    const gaps = seen.slice(1).map((t, i) => t - seen[i]!);
    // Requests may use an observation between rows; the forwarded history itself is ~one row apart.
    expect(gaps.filter((g) => g >= 79 && g <= 121).length).toBeGreaterThan(0.8 * gaps.length);
    expect(Math.min(...gaps)).toBeGreaterThanOrEqual(19.8);
    await finish(f);
  });

  it('drops and reports invalid observations without stopping', async () => {
    const h = harness({ latencyMs: 80 }, {}, null);
    const good = (seq: number, t: number): TimedObservation => ({ seq, timeMs: t, state: Float64Array.of(t / 1000, 0, 0) });
    const bad: unknown[] = [
      { seq: 1, timeMs: 1000, state: Float64Array.of(NaN, 0, 0) },
      { seq: 2, timeMs: 1000, state: Float64Array.of(1, 0) },
      { seq: 3, timeMs: 1000, state: [1, 0, 0] },
      { seq: 0, timeMs: 1000, state: Float64Array.of(1, 0, 0) }, // seq not increasing
      { seq: 4, timeMs: 900, state: Float64Array.of(1, 0, 0) }, // time going back
      { seq: 5, timeMs: Infinity, state: Float64Array.of(1, 0, 0) },
      null,
    ];
    await h.clock.advance(0);
    h.obs$.next(good(0, 1000));
    for (const b of bad) h.obs$.next(b as TimedObservation);
    let seq = 10;
    const feed = (): void => {
      h.obs$.next(good(seq++, h.clock.now()));
      h.clock.setTimer(feed, 20);
    };
    h.clock.setTimer(feed, 20);
    await h.clock.advance(3000);
    const reasons = ofKind(h.events, 'observation-invalid').map((e) => e.reason);
    expect(reasons).toEqual([
      expect.stringMatching(/^state: contains a non-finite value \(NaN\) at index 0/),
      'state: expected length 3 (policy.info.observationDim), received length 2',
      'state: expected a Float64Array, received an array of length 3',
      'seq: expected > 0 (strictly increasing), received 0',
      'timeMs: expected >= 1000 (non-decreasing), received 900',
      'timeMs: expected a finite number, received Infinity',
      'expected a TimedObservation, received null',
    ]);
    const snap = h.loop.snapshot();
    expect(snap.observationsInvalid).toBe(7);
    expect(snap.observationsDropped).toBeGreaterThanOrEqual(7);
    expect(h.policy.invalidSeen).toBe(0); // nothing bad reached the policy
    expect(snap.chunksReceived).toBeGreaterThan(3);
    expect(h.actions.at(-1)!.source).toMatch(/chunk|blend/);
    await finish(h);
  });

  it('drops observations too old to condition on', async () => {
    const h = harness({ latencyMs: 80 }, { maxObservationAgeMs: 50 }, null);
    await h.clock.advance(0);
    h.obs$.next({ seq: 0, timeMs: 1000 - 60, state: Float64Array.of(0, 0, 0) }); // 60 ms old
    await h.clock.advance(100);
    expect(h.policy.requests).toHaveLength(0);
    expect(ofKind(h.events, 'observation-stale')).toEqual([expect.objectContaining({ seq: 0, ageMs: 60 })]);
    h.obs$.next({ seq: 1, timeMs: h.clock.now() - 10, state: Float64Array.of(0, 0, 0) });
    expect(h.policy.requests.map((r) => r.obs.seq)).toEqual([1]);
    expect(h.loop.snapshot().observationsDropped).toBe(1);
    await h.clock.advance(100);
    await finish(h);
  });

  it('rejects invalid options, naming the option', () => {
    const clock = new VirtualClock();
    const policy = new FakePolicy({ clock, latencyMs: 10 });
    const base: ControlLoopOptions = { policy, observations$: new Subject<TimedObservation>(), rateHz: 50, clock };
    const cases: [Partial<Record<keyof ControlLoopOptions, unknown>>, RegExp][] = [
      [{ rateHz: 0 }, /^rateHz: expected > 0, received 0/],
      [{ rateHz: 2000 }, /^rateHz: expected <= 1000, received 2000/],
      [{ rateHz: NaN }, /^rateHz: expected a finite number/],
      [{ requestLeadMs: -1 }, /^requestLeadMs: expected >= 0/],
      [{ blendMs: -5 }, /^blendMs: expected >= 0/],
      [{ holdMode: 'coast' }, /^holdMode: unknown value 'coast'/],
      [{ stopAfterMs: Infinity }, /^stopAfterMs: expected a finite number/],
      [{ safeAction: Float64Array.of(0) }, /^safeAction: expected length 2 \(policy.info.actionDim\), received length 1/],
      [{ safeAction: [0, 0] }, /^safeAction: expected a Float64Array of length 2/],
      [{ idleAction: Float64Array.of(0, NaN) }, /^idleAction: contains a non-finite value/],
      [{ maxObservationAgeMs: 0 }, /^maxObservationAgeMs: expected a number > 0/],
      [{ observeIntervalMs: -1 }, /^observeIntervalMs: expected >= 0/],
      [{ errorBackoffMs: NaN }, /^errorBackoffMs: expected a finite number/],
      [{ metricsIntervalMs: 0 }, /^metricsIntervalMs: expected >= 1/],
      [{ observations$: [1, 2] }, /^observations\$: expected an Observable/],
      [{ clock: { now: () => 0 } }, /^clock: expected/],
      [{ policy: { info: INFO, observe() {}, requestChunk: undefined } }, /^policy\.requestChunk: expected a function/],
      [{ policy: { info: { ...INFO, actionHorizon: 16 }, observe() {}, requestChunk: policy.requestChunk } }, /^policy\.info: currentRow \+ actionHorizon = 17 must be <= predHorizon = 16/],
      [{ policy: { info: { ...INFO, dtMs: 0 }, observe() {}, requestChunk: policy.requestChunk } }, /^policy\.info\.dtMs: expected >= /],
    ];
    for (const [over, msg] of cases) {
      expect(() => controlLoop({ ...base, ...over } as unknown as ControlLoopOptions), JSON.stringify(Object.keys(over))).toThrow(msg);
    }
    expect(clock.pendingTimers).toBe(0); // nothing was started
  });

  it('reports a throwing safeAction function and falls back to holding', async () => {
    const h = harness(
      { latencyMs: 80 },
      {
        stopAfterMs: 0,
        safeAction: () => {
          throw new Error('no brakes');
        },
      },
    );
    await h.clock.advance(2000);
    h.policy.pause();
    await h.clock.advance(2000);
    const stops = h.actions.filter((a) => a.source === 'stop');
    expect(stops.length).toBeGreaterThan(0);
    const lastChunk = h.actions[h.actions.indexOf(stops[0]!) - 1]!;
    for (const a of stops) expect(Array.from(a.action)).toEqual(Array.from(lastChunk.action));
    expect(ofKind(h.events, 'callback-error')).toEqual([expect.objectContaining({ where: 'safeAction', message: 'no brakes' })]);
    await finish(h);
  });
});

describe('controlLoop: metrics and lifecycle', () => {
  it('reports exact rate, zero jitter and latency under the virtual clock; encodes as protobuf', async () => {
    const h = harness({ latencyMs: 80 }, { metricsIntervalMs: 1000 });
    await h.clock.advance(5000);
    expect(h.metrics).toHaveLength(5);
    h.metrics.forEach((m, i) => {
      expect(m.timestampMs).toBe(1000 + 1000 * (i + 1));
      expect(m.windowS).toBe(1);
      expect(m.targetRateHz).toBe(50);
      expect(m.achievedRateHz).toBe(50);
      expect([m.jitterP50Ms, m.jitterP99Ms, m.jitterMaxMs]).toEqual([0, 0, 0]);
      expect(m.ticks).toBe(50 * (i + 1));
      expect(m.deadlineMisses).toBe(0);
      expect(m.safeStops).toBe(0);
      expect(m.inferenceErrors).toBe(0);
      if (i > 0) expect(m.chunksRequested).toBeGreaterThanOrEqual(h.metrics[i - 1]!.chunksRequested);
      // Chunks arrive every 480 ms, so each window holds 2 or 3, each 80 ms round trip.
      expect([m.inferenceP50Ms, m.inferenceP99Ms]).toEqual([80, 80]);
      // Every window has a hand-over; chunks agree on column 0 (t / 1000) and differ by 1 in column 1 (the index).
      expect(m.overlapErrorMax).toBeCloseTo(1, 9);
    });
    const last = h.metrics.at(-1)!;
    const decoded = decode('scoreflow.v1.ControlLoopMetrics', encode('scoreflow.v1.ControlLoopMetrics', toControlLoopMetricsProto(last)));
    expect(decoded.timestampNs).toBe(6_000_000_000n);
    expect(decoded.achievedRateHz).toBe(50);
    expect(decoded.chunksRequested).toBe(BigInt(last.chunksRequested));
    expect(decoded.chunksReceived).toBe(BigInt(last.chunksReceived));
    expect(decoded.observationsDropped).toBe(BigInt(last.observationsDropped));
    expect(decoded.inferenceP99Ms).toBe(80);
    await finish(h);
  });

  it('stop() completes the streams after the request in flight settles and leaves the policy open', async () => {
    const h = harness({ latencyMs: 80 });
    await h.clock.advance(500);
    // Force a request in flight, then stop.
    while (!h.loop.snapshot().requestInFlight) await h.clock.advance(20);
    const done = { actions: false, metrics: false, events: false };
    h.loop.actions$.subscribe({ complete: () => (done.actions = true) });
    h.loop.metrics$.subscribe({ complete: () => (done.metrics = true) });
    h.loop.events$.subscribe({ complete: () => (done.events = true) });
    const nActions = h.actions.length;
    const stopped = h.loop.stop();
    expect(h.loop.stop()).toBe(stopped); // idempotent
    expect(done.actions).toBe(true);
    expect(h.metrics).toHaveLength(1); // the final partial window
    expect(done.metrics).toBe(false); // still waiting for the request
    await h.clock.advance(200);
    await stopped;
    expect(done).toEqual({ actions: true, metrics: true, events: true });
    expect(h.actions).toHaveLength(nActions);
    expect(h.policy.closed).toBe(false);
    expect(h.loop.snapshot().running).toBe(false);
    h.stopFeed();
    expect(h.clock.pendingTimers).toBe(0);
  });
});

describe('controlLoop: stop timeout', () => {
  it('stop() gives up waiting for a request that never settles after stopTimeoutMs', async () => {
    const h = harness({ latencyMs: 80 }, { stopTimeoutMs: 500 });
    await h.clock.advance(1000);
    h.policy.pause();
    await h.clock.advance(1000); // the request made meanwhile is parked forever
    expect(h.loop.snapshot().requestInFlight).toBe(true);
    let done = false;
    const stopped = h.loop.stop().then(() => (done = true));
    await h.clock.advance(499);
    expect(done).toBe(false);
    await h.clock.advance(1);
    await stopped;
    expect(done).toBe(true);
    h.stopFeed();
  });
});

describe('controlLoop: real time', () => {
  it('runs ~1 s at 50 Hz on the system clock with a 60 ms policy: rate within 10%, no deadline misses', async () => {
    const policy = new FakePolicy({ clock: 'real', latencyMs: 60 });
    const obs$ = new Subject<TimedObservation>();
    const loop = controlLoop({ policy, observations$: obs$, rateHz: 50, metricsIntervalMs: 1000 });
    const metrics: ControlLoopMetrics[] = [];
    const actions: ControlAction[] = [];
    loop.metrics$.subscribe((m) => metrics.push(m));
    loop.actions$.subscribe((a) => actions.push(a));
    let seq = 0;
    const feed = setInterval(() => obs$.next({ timeMs: performance.now(), seq: seq++, state: Float64Array.of(0, 0, 0) }), 20);
    await new Promise((r) => setTimeout(r, 1100));
    clearInterval(feed);
    await loop.stop();
    const m = metrics[0]!;
    expect(m.windowS).toBeGreaterThanOrEqual(1);
    expect(m.achievedRateHz).toBeGreaterThan(45);
    expect(m.achievedRateHz).toBeLessThan(55);
    expect(m.jitterP99Ms).toBeLessThan(20);
    expect(m.deadlineMisses).toBe(0);
    expect(m.chunksReceived).toBeGreaterThanOrEqual(1);
    expect(m.inferenceP50Ms).toBeGreaterThanOrEqual(55); // setTimeout(60) can wake ~1 ms early
    expect(loop.snapshot().deadlineMisses).toBe(0);
    // Chunk actions are the chunk interpolated at the tick time (rows hold t/1000).
    const used = actions.filter((a) => a.source === 'chunk' || a.source === 'blend');
    expect(used.length).toBeGreaterThan(35);
    for (const a of used) expect(a.action[0]).toBeCloseTo(a.timeMs / 1000, 9);
  });
});

// Type-level check: a LoopClock is all a custom clock needs.
const _clockShape: LoopClock = new VirtualClock();
void _clockShape;
