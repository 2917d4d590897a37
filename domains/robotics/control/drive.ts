/**
 * Drive a simulated robot in real time with a control loop: the environment steps at its own
 * control rate (1 / env.dt), applying the loop's latest action over each period (zero-order
 * hold) and reporting the state at every period start; the loop ticks at `rateHz` and requests
 * chunks from `policy`. Each episode gets its own loop and a reset policy history. This is the shape of
 * a real deployment (robot and policy on separate clocks), used by the tour, the serving
 * benchmark and tests.
 */
import { Subject } from 'rxjs';
import { checkNumber, fail } from '../../../src/util/validate.js';
import type { Env } from '../env/types.js';
import { percentile } from '../policy/runner.js';
import { controlLoop, type ControlLoopOptions } from './controlLoop.js';
import type { ChunkPolicy, TimedObservation } from './types.js';

export interface DriveOptions extends Partial<Omit<ControlLoopOptions, 'policy' | 'observations$' | 'clock'>> {
  readonly rateHz: number;
  /** Wall-clock duration, seconds. */
  readonly seconds: number;
  /** Seed of the first episode; episode k uses seed + k. */
  readonly seed?: number;
}

export interface DriveResult {
  readonly seconds: number;
  readonly envSteps: number;
  readonly episodesFinished: number;
  /** Episodes that reached the goal without a collision (an environment's `info.collided`). */
  readonly successes: number;
  /** Finished episodes whose final info reports `collided` (arm-reach); 0 where there is none. */
  readonly episodesWithCollisions: number;
  readonly maxReward: number;
  readonly ticks: number;
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
}

export async function driveEnv(env: Env, policy: ChunkPolicy, opts: DriveOptions): Promise<DriveResult> {
  if (!env || typeof env.step !== 'function') fail('driveEnv: env must be an Env');
  const seconds = checkNumber('seconds', opts.seconds, { min: 0.1, max: 86400 });
  const seed = opts.seed ?? 0;
  const { rateHz: _r, seconds: _s, seed: _seed, ...loopOpts } = opts;
  void _r;
  void _s;
  void _seed;
  const jitter: number[] = [];
  const latency: number[] = [];
  let seq = 0;
  let steps = 0;
  let episodes = 0;
  let successes = 0;
  let collisions = 0;
  let maxReward = 0;
  const totals = { ticks: 0, deadlineMisses: 0, safeStops: 0, ticksSkipped: 0, chunksReceived: 0, inferenceErrors: 0, overlapErrorMax: 0 };
  const deadline = performance.now() + seconds * 1000;

  // One control loop per episode, as a robot is re-homed between episodes: a new episode starts
  // from a fresh observation history and never executes the previous episode's chunk.
  const runEpisode = async (episodeSeed: number): Promise<void> => {
    let state = env.reset({ seed: episodeSeed });
    await policy.reset();
    const obs$ = new Subject<TimedObservation>();
    const loop = controlLoop({ ...loopOpts, policy, observations$: obs$, rateHz: opts.rateHz });
    let latest: Float64Array | undefined;
    loop.actions$.subscribe((a) => {
      jitter.push(a.emittedMs - a.timeMs);
      if (a.source !== 'idle') latest = a.action;
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
    const period = (): void => {
      if (done) return;
      if (next) state = next;
      next = undefined;
      obs$.next({ timeMs: performance.now(), seq: seq++, state });
      if (performance.now() >= deadline) {
        done = true;
        finish();
        return;
      }
      if (!latest) return;
      const r = env.step(latest);
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
    period();
    const robot = setInterval(period, env.dt * 1000);
    const cap = setTimeout(() => {
      done = true;
      finish();
    }, Math.max(0, deadline - performance.now()));
    await ended;
    clearInterval(robot);
    clearTimeout(cap);
    await loop.stop();
    obs$.complete();
    const snap = loop.snapshot();
    totals.ticks += snap.ticks;
    totals.deadlineMisses += snap.deadlineMisses;
    totals.safeStops += snap.safeStops;
    totals.ticksSkipped += snap.ticksSkipped;
    totals.chunksReceived += snap.chunksReceived;
    totals.inferenceErrors += snap.inferenceErrors;
    totals.overlapErrorMax = Math.max(totals.overlapErrorMax, snap.overlapErrorMax);
  };
  for (let k = 0; performance.now() < deadline; k++) await runEpisode(seed + k);
  const r2 = (x: number): number => Math.round(x * 100) / 100;
  return {
    seconds,
    envSteps: steps,
    episodesFinished: episodes,
    successes,
    episodesWithCollisions: collisions,
    maxReward: r2(maxReward),
    ticks: totals.ticks,
    achievedRateHz: r2(totals.ticks / seconds),
    jitterP50Ms: r2(percentile(jitter, 50)),
    jitterP99Ms: r2(percentile(jitter, 99)),
    jitterMaxMs: r2(jitter.reduce((m, x) => Math.max(m, x), -Infinity)),
    deadlineMisses: totals.deadlineMisses,
    safeStops: totals.safeStops,
    ticksSkipped: totals.ticksSkipped,
    chunksReceived: totals.chunksReceived,
    inferenceErrors: totals.inferenceErrors,
    inferenceP50Ms: r2(percentile(latency, 50)),
    inferenceP99Ms: r2(percentile(latency, 99)),
    overlapErrorMax: r2(totals.overlapErrorMax),
  };
}
