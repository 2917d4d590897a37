/**
 * Drive a simulated robot in real time with a control loop: the environment steps at its own
 * control rate (1 / env.dt), applying the loop's latest action over each period (zero-order
 * hold) and reporting the state at every period start; the loop ticks at `rateHz` and requests
 * chunks from `policy`. Each episode gets its own loop and a reset policy history. This is the shape of
 * a real deployment (robot and policy on separate clocks), used by the tour, the serving
 * benchmark and tests.
 */
import { Subject } from 'rxjs';
import { checkNumber, checkOneOf, fail } from '../../../src/util/validate.js';
import type { Env } from '../env/types.js';
import { percentile } from '../policy/runner.js';
import { systemClock, VirtualClock, type LoopClock } from './clock.js';
import { controlLoop, type ControlLoopOptions } from './controlLoop.js';
import type { ChunkPolicy, TimedObservation } from './types.js';

export interface DriveOptions extends Partial<Omit<ControlLoopOptions, 'policy' | 'observations$' | 'clock'>> {
  readonly rateHz: number;
  /** Wall-clock duration, seconds. */
  readonly seconds: number;
  /** Seed of the first episode; episode k uses seed + k. */
  readonly seed?: number;
  /** Stop after this many finished episodes (default: run for `seconds`). */
  readonly maxEpisodes?: number;
  /**
   * Clock of the loop and the simulated robot (default the system clock, real time). With a
   * `VirtualClock` the driver advances it itself, one control period at a time, so the run takes
   * only as long as its computation (pair it with a policy that answers on the same clock, e.g.
   * SimulatedLatencyPolicy); `seconds` is then virtual time.
   */
  readonly clock?: LoopClock;
  /**
   * When the simulated robot starts a control period: 'ticks' (default when rateHz * env.dt is
   * a whole number), on every (rateHz * dt)-th loop tick with that tick's action, which is the
   * loop's action for exactly the period's start; 'timer', on the robot's own timer with the
   * latest emitted action, which lags the period start by up to one tick (with linear
   * interpolation between rows, part of the previous row).
   */
  readonly stepOn?: 'ticks' | 'timer';
}

export interface DriveResult {
  readonly seconds: number;
  /** Time the run took on its clock (virtual time with a VirtualClock), s. */
  readonly elapsedSeconds: number;
  readonly envSteps: number;
  readonly episodesFinished: number;
  /** Episodes that reached the goal without a collision (an environment's `info.collided`). */
  readonly successes: number;
  /** Finished episodes whose final info reports `collided` (arm-reach); 0 where there is none. */
  readonly episodesWithCollisions: number;
  readonly maxReward: number;
  readonly ticks: number;
  /** Loop ticks per second while the loops ran (episode start to end; the waits between episodes excluded). */
  readonly achievedRateHz: number;
  readonly jitterP50Ms: number;
  readonly jitterP99Ms: number;
  readonly jitterMaxMs: number;
  readonly deadlineMisses: number;
  readonly safeStops: number;
  readonly ticksSkipped: number;
  readonly chunksReceived: number;
  readonly inferenceErrors: number;
  /** Round trip of chunk requests as the loop measured them, ms. */
  readonly inferenceP50Ms: number;
  readonly inferenceP99Ms: number;
  readonly overlapErrorMax: number;
  /** Chunks requested early because the loop's `replanWhen` said so. */
  readonly earlyReplans: number;
}

export async function driveEnv(env: Env, policy: ChunkPolicy, opts: DriveOptions): Promise<DriveResult> {
  if (!env || typeof env.step !== 'function') fail('driveEnv: env must be an Env');
  const seconds = checkNumber('seconds', opts.seconds, { min: 0.1, max: 86400 });
  const seed = opts.seed ?? 0;
  const maxEpisodes = opts.maxEpisodes === undefined ? Infinity : checkNumber('maxEpisodes', opts.maxEpisodes, { integer: true, min: 1 });
  const { rateHz: _r, seconds: _s, seed: _seed, maxEpisodes: _m, clock: _c, stepOn: _o, ...loopOpts } = opts;
  void _o;
  void _r;
  void _s;
  void _seed;
  void _m;
  void _c;
  const clock: LoopClock = opts.clock ?? systemClock();
  const virtual = clock instanceof VirtualClock ? clock : undefined;
  const dtMs = env.dt * 1000;
  // 'ticks': the robot's periods start on loop ticks (needs rateHz * dt to be a whole number);
  // 'timer': on its own timer, at an arbitrary phase to the ticks (a robot with its own clock).
  const perPeriod = opts.rateHz * env.dt;
  const stepOn = checkOneOf('stepOn', opts.stepOn ?? (Math.abs(perPeriod - Math.round(perPeriod)) < 1e-9 ? 'ticks' : 'timer'), ['ticks', 'timer'] as const);
  if (stepOn === 'ticks' && Math.abs(perPeriod - Math.round(perPeriod)) >= 1e-9) fail(`stepOn 'ticks': rateHz * env.dt must be a whole number of ticks per period, received ${opts.rateHz} * ${env.dt}`);
  const ticksPerPeriod = stepOn === 'ticks' ? Math.round(perPeriod) : 0;
  const jitter: number[] = [];
  const latency: number[] = [];
  let seq = 0;
  let steps = 0;
  let episodes = 0;
  let successes = 0;
  let collisions = 0;
  let maxReward = 0;
  // Time the loops ran (episode starts to ends), the base of achievedRateHz: between episodes the
  // driver waits for the last request to settle with no loop ticking.
  let loopMs = 0;
  const totals = { ticks: 0, earlyReplans: 0, deadlineMisses: 0, safeStops: 0, ticksSkipped: 0, chunksReceived: 0, inferenceErrors: 0, overlapErrorMax: 0 };
  const t0 = clock.now();
  const deadline = t0 + seconds * 1000;

  // One control loop per episode, as a robot is re-homed between episodes: a new episode starts
  // from a fresh observation history and never executes the previous episode's chunk.
  const runEpisode = async (episodeSeed: number): Promise<void> => {
    let state = env.reset({ seed: episodeSeed });
    await policy.reset();
    const obs$ = new Subject<TimedObservation>();
    const loop = controlLoop({ ...loopOpts, policy, observations$: obs$, rateHz: opts.rateHz, clock });
    const loopStart = clock.now();
    let latest: Float64Array | undefined;
    loop.actions$.subscribe((a) => {
      jitter.push(a.emittedMs - a.timeMs);
      if (a.source !== 'idle') latest = a.action;
      // Tick-synchronous robot: a period starts on every ticksPerPeriod-th tick, with that tick's
      // action (the loop's action for exactly the period's start). Deferred so the loop finishes
      // its tick before it hears of the new observation.
      if (ticksPerPeriod > 0 && a.tick % ticksPerPeriod === 0 && !done) {
        const act = a.source !== 'idle' ? a.action : undefined;
        clock.setTimer(() => period(act, a.timeMs), 0);
      }
    });
    loop.events$.subscribe((e) => {
      if (e.kind === 'chunk') latency.push(e.latencyMs);
    });
    let finish!: () => void;
    const ended = new Promise<void>((resolve) => (finish = resolve));
    // Zero-order hold, as a robot applies commands: at each period start T the driver reports
    // the state of time T, then applies the loop's current action (the one for time ~T) over
    // [T, T + dt]. The resulting state belongs to T + dt and is reported at the next period
    // start, not at once: reporting it at T would label it one period early, and every chunk row
    // would then run one period ahead of the state it was planned for.
    let next: Float64Array | undefined;
    let done = false;
    const period = (action: Float64Array | undefined, timeMs: number): void => {
      if (done) return;
      if (next) state = next;
      next = undefined;
      obs$.next({ timeMs, seq: seq++, state });
      if (clock.now() >= deadline) {
        done = true;
        finish();
        return;
      }
      if (!action) return;
      const r = env.step(action);
      steps++;
      next = r.observation;
      maxReward = Math.max(maxReward, r.reward);
      if (r.terminated || r.truncated) {
        episodes++;
        // As in evaluatePolicy: a collision fails the episode even if the goal is reached.
        if (r.info.collided) collisions++;
        else if (r.terminated) successes++;
        done = true;
        finish();
      }
    };
    // Periods on an absolute schedule (start + n dt), so timer lateness does not accumulate.
    const start = clock.now();
    let n = 0;
    let cancelPeriod = (): void => {};
    const schedule = (): void => {
      n++;
      cancelPeriod = clock.setTimer(() => {
        period(latest, clock.now());
        if (!done) schedule();
      }, start + n * dtMs - clock.now());
    };
    if (ticksPerPeriod === 0) {
      period(latest, clock.now());
      if (!done) schedule();
    }
    const cancelCap = clock.setTimer(() => {
      done = true;
      finish();
    }, Math.max(0, deadline - clock.now()));
    if (virtual) while (!done) await virtual.advance(dtMs);
    await ended;
    loopMs += clock.now() - loopStart;
    cancelPeriod();
    cancelCap();
    const stopping = loop.stop();
    if (virtual) {
      // The request in flight settles only as the virtual clock moves.
      let stopped = false;
      void stopping.then(() => (stopped = true));
      await virtual.advance(0);
      while (!stopped) await virtual.advance(dtMs);
    }
    await stopping;
    obs$.complete();
    const snap = loop.snapshot();
    totals.ticks += snap.ticks;
    totals.deadlineMisses += snap.deadlineMisses;
    totals.earlyReplans += snap.earlyReplans;
    totals.safeStops += snap.safeStops;
    totals.ticksSkipped += snap.ticksSkipped;
    totals.chunksReceived += snap.chunksReceived;
    totals.inferenceErrors += snap.inferenceErrors;
    totals.overlapErrorMax = Math.max(totals.overlapErrorMax, snap.overlapErrorMax);
  };
  for (let k = 0; clock.now() < deadline && episodes < maxEpisodes; k++) await runEpisode(seed + k);
  const r2 = (x: number): number => Math.round(x * 100) / 100;
  const elapsedS = (clock.now() - t0) / 1000;
  return {
    seconds,
    elapsedSeconds: r2(elapsedS),
    envSteps: steps,
    episodesFinished: episodes,
    successes,
    episodesWithCollisions: collisions,
    maxReward: r2(maxReward),
    ticks: totals.ticks,
    achievedRateHz: r2(loopMs > 0 ? totals.ticks / (loopMs / 1000) : 0),
    jitterP50Ms: r2(percentile(jitter, 50)),
    jitterP99Ms: r2(percentile(jitter, 99)),
    jitterMaxMs: r2(jitter.reduce((m, x) => Math.max(m, x), -Infinity)),
    deadlineMisses: totals.deadlineMisses,
    earlyReplans: totals.earlyReplans,
    safeStops: totals.safeStops,
    ticksSkipped: totals.ticksSkipped,
    chunksReceived: totals.chunksReceived,
    inferenceErrors: totals.inferenceErrors,
    inferenceP50Ms: r2(percentile(latency, 50)),
    inferenceP99Ms: r2(percentile(latency, 99)),
    overlapErrorMax: r2(totals.overlapErrorMax),
  };
}
