/**
 * Drive a simulated robot in real time with a control loop: the environment steps at its own
 * control rate (1 / env.dt) with the loop's latest action and reports every new state as an
 * observation; the loop ticks at `rateHz` and requests chunks from `policy`. This is the shape of
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
  readonly successes: number;
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
  let state = env.reset({ seed });
  await policy.reset();
  const obs$ = new Subject<TimedObservation>();
  const loop = controlLoop({ ...loopOpts, policy, observations$: obs$, rateHz: opts.rateHz });
  const jitter: number[] = [];
  const latency: number[] = [];
  let latest: Float64Array | undefined;
  loop.actions$.subscribe((a) => {
    jitter.push(a.emittedMs - a.timeMs);
    if (a.source !== 'idle') latest = a.action;
  });
  loop.events$.subscribe((e) => {
    if (e.kind === 'chunk') latency.push(e.latencyMs);
  });
  let seq = 0;
  let steps = 0;
  let episodes = 0;
  let successes = 0;
  let maxReward = 0;
  obs$.next({ timeMs: performance.now(), seq: seq++, state });
  const robot = setInterval(() => {
    if (latest) {
      const r = env.step(latest);
      steps++;
      state = r.observation;
      maxReward = Math.max(maxReward, r.reward);
      if (r.terminated || r.truncated) {
        episodes++;
        if (r.terminated) successes++;
        state = env.reset({ seed: seed + episodes });
      }
    }
    obs$.next({ timeMs: performance.now(), seq: seq++, state });
  }, env.dt * 1000);
  await new Promise((r) => setTimeout(r, seconds * 1000));
  clearInterval(robot);
  await loop.stop();
  obs$.complete();
  const snap = loop.snapshot();
  const r2 = (x: number): number => Math.round(x * 100) / 100;
  return {
    seconds,
    envSteps: steps,
    episodesFinished: episodes,
    successes,
    maxReward: r2(maxReward),
    ticks: snap.ticks,
    achievedRateHz: r2(snap.ticks / seconds),
    jitterP50Ms: r2(percentile(jitter, 50)),
    jitterP99Ms: r2(percentile(jitter, 99)),
    jitterMaxMs: r2(Math.max(...jitter)),
    deadlineMisses: snap.deadlineMisses,
    safeStops: snap.safeStops,
    ticksSkipped: snap.ticksSkipped,
    chunksReceived: snap.chunksReceived,
    inferenceErrors: snap.inferenceErrors,
    inferenceP50Ms: r2(percentile(latency, 50)),
    inferenceP99Ms: r2(percentile(latency, 99)),
    overlapErrorMax: r2(snap.overlapErrorMax),
  };
}
