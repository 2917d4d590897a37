/**
 * Drive a robot in closed loop through the policy server, the way you would connect your own:
 * the Push-T simulator stands in for the robot, the policy runs behind `PolicyService` (gRPC),
 * and an RxJS `controlLoop` in between turns the policy's action chunks into one action every
 * 100 ms (10 Hz), whatever the inference latency.
 *
 * The robot side is three lines of glue: a `Subject` of observations feeds the loop, and every
 * action tick steps the robot and pushes the state it reads back. Ticks before the first chunk
 * (source 'idle') are not executed; the robot only keeps reporting its state.
 *
 *   npx tsx examples/pusht-over-grpc.ts                     # in-process server, shipped policy
 *   npx tsx examples/pusht-over-grpc.ts --episodes 3 --seed 10 --json
 *   npx scoreflow robot serve --port 50051 &                # or a server of your own ...
 *   npx tsx examples/pusht-over-grpc.ts --address 127.0.0.1:50051
 *
 * Without `--address` the example starts the server itself (a `WorkerEngine` with
 * models/pusht-policy, a `PolicyHost` and a `PolicyServer` on a free port) and stops it at the
 * end. An episode ends at success (coverage > 95%), or after `--steps` robot steps (default 300,
 * Push-T's episode length: 30 s of real time). Per episode it prints the steps, the best coverage
 * and reward, success, and the loop's health: achieved rate, tick jitter, deadline misses, safe
 * stops and the round-trip inference latency; `--json` prints one JSON line per episode and a
 * summary line.
 */
import { performance } from 'node:perf_hooks';
import { Subject, type Subscription } from 'rxjs';
import { parse } from '../src/cli/args.js';
import { UsageError, isUserError } from '../src/cli/errors.js';
import { controlLoop, type ControlLoopMetrics } from '../domains/robotics/control/controlLoop.js';
import type { TimedObservation } from '../domains/robotics/control/types.js';
import { PushTEnv } from '../domains/robotics/env/pusht.js';
import { shippedPolicyDir } from '../domains/robotics/serve/cli.js';
import { WorkerEngine } from '../domains/robotics/serve/engine.js';
import { PolicyClient, type RemotePolicy } from '../domains/robotics/serve/grpcClient.js';
import { PolicyServer } from '../domains/robotics/serve/grpcServer.js';
import { PolicyHost } from '../domains/robotics/serve/host.js';
import { publishControlLoop } from '../domains/robotics/control/recorder.js';
import { LiveView } from '../src/stream/liveView.js';

const USAGE = `usage: npx tsx examples/pusht-over-grpc.ts [--address HOST:PORT] [--episodes K] [--seed S]
          [--steps N] [--rate HZ] [--live-view-port P] [--json] [--verbose]
  --address HOST:PORT  a running 'scoreflow robot serve' (default: start one in this process)
  --episodes K         episodes to run, 1..1000 (default 1)
  --seed S             Push-T seed of the first episode; episode k uses S + k (default 0)
  --steps N            robot steps per episode at most, 1..100000 (default 300 = 30 s)
  --rate HZ            control rate, 1..100 (default 10, the simulator's own rate)
  --live-view-port P   publish observations, chunks, actions and loop metrics for Foxglove
                       (Open connection -> Foxglove WebSocket -> ws://127.0.0.1:P)
  --json               one JSON line per episode, then a summary line
  --verbose            also print the loop's metrics every second`;

// ---------------------------------------------------------------------------- arguments

/** A failure the user can act on (server unreachable or silent): one line, exit code 1. */
class RunError extends Error {
  override readonly name = 'RunError';
}

interface Args {
  readonly address: string | undefined;
  readonly episodes: number;
  readonly seed: number;
  readonly steps: number;
  readonly rateHz: number;
  readonly json: boolean;
  readonly verbose: boolean;
  readonly liveViewPort: number | undefined;
}

function intArg(v: string | boolean | undefined, name: string, fallback: number, min: number, max: number): number {
  if (v === undefined) return fallback;
  const n = typeof v === 'string' && /^[+-]?\d+$/.test(v.trim()) ? Number(v) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new UsageError(`--${name}: expected an integer in [${min}, ${max}], received '${String(v)}'`);
  return n;
}

function parseArgs(argv: string[]): Args | 'help' {
  const o = parse(
    argv,
    {
      address: { type: 'string' },
      episodes: { type: 'string' },
      seed: { type: 'string' },
      steps: { type: 'string' },
      rate: { type: 'string' },
      json: { type: 'boolean' },
      verbose: { type: 'boolean' },
      'live-view-port': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    USAGE,
  );
  if (o.help) return 'help';
  let address: string | undefined;
  if (o.address !== undefined) {
    const a = String(o.address).trim();
    const m = /^(\[[0-9a-fA-F:.]+\]|[^\s:/[\]]+):(\d{1,5})$/.exec(a);
    if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) {
      throw new UsageError(`--address: expected HOST:PORT with a port in [1, 65535] (e.g. 127.0.0.1:50051), received '${a}'`);
    }
    address = a;
  }
  let rateHz = 10;
  if (o.rate !== undefined) {
    rateHz = typeof o.rate === 'string' && o.rate.trim() !== '' ? Number(o.rate) : NaN;
    if (!Number.isFinite(rateHz) || rateHz < 1 || rateHz > 100) throw new UsageError(`--rate: expected a number of Hz in [1, 100], received '${String(o.rate)}'`);
  }
  return {
    address,
    episodes: intArg(o.episodes, 'episodes', 1, 1, 1000),
    seed: intArg(o.seed, 'seed', 0, 0, 2 ** 31 - 1),
    steps: intArg(o.steps, 'steps', 300, 1, 100_000),
    rateHz,
    json: Boolean(o.json),
    verbose: Boolean(o.verbose),
    liveViewPort: o['live-view-port'] === undefined ? undefined : intArg(o['live-view-port'], 'live-view-port', 8765, 0, 65535),
  };
}

// ---------------------------------------------------------------------------- statistics

/** Nearest-rank percentile (as the loop's own metrics); NaN for no samples. */
function percentile(values: readonly number[], q: number): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
}

/** Rounded for printing; NaN (no samples) becomes null in JSON. */
function round(v: number, digits = 2): number | null {
  if (!Number.isFinite(v)) return null;
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

function fmt(v: number, digits = 1): string {
  return Number.isFinite(v) ? v.toFixed(digits) : '-';
}

interface LoopSummary {
  /** Ticks emitted / time between the first and the last tick. */
  readonly achievedRateHz: number;
  readonly jitterP50Ms: number;
  readonly jitterP99Ms: number;
  readonly deadlineMisses: number;
  readonly safeStops: number;
  /** Round trip, request to chunk, on the loop clock. */
  readonly inferenceP50Ms: number;
  readonly inferenceP99Ms: number;
  readonly chunks: number;
  readonly inferenceErrors: number;
  readonly ticksSkipped: number;
}

interface EpisodeResult {
  readonly episode: number;
  readonly seed: number;
  readonly steps: number;
  /** Success, the step limit (--steps), or Ctrl-C. */
  readonly end: 'success' | 'truncated' | 'interrupted';
  readonly success: boolean;
  readonly maxCoverage: number;
  /** Push-T's score: max over steps of clip(coverage / 0.95, 0, 1). */
  readonly maxReward: number;
  readonly finalCoverage: number;
  readonly durationS: number;
  readonly loop: LoopSummary;
  /** Raw samples, for the summary over all episodes. */
  readonly jitters: number[];
  readonly latencies: number[];
}

function summarise(ticks: number, firstTickMs: number, lastTickMs: number, jitters: number[], latencies: number[], counters: Omit<LoopSummary, 'achievedRateHz' | 'jitterP50Ms' | 'jitterP99Ms' | 'inferenceP50Ms' | 'inferenceP99Ms'>): LoopSummary {
  return {
    achievedRateHz: ticks > 1 && lastTickMs > firstTickMs ? ((ticks - 1) * 1000) / (lastTickMs - firstTickMs) : NaN,
    jitterP50Ms: percentile(jitters, 0.5),
    jitterP99Ms: percentile(jitters, 0.99),
    inferenceP50Ms: percentile(latencies, 0.5),
    inferenceP99Ms: percentile(latencies, 0.99),
    ...counters,
  };
}

function loopJson(l: LoopSummary): Record<string, number | null> {
  return {
    achievedRateHz: round(l.achievedRateHz),
    jitterP50Ms: round(l.jitterP50Ms),
    jitterP99Ms: round(l.jitterP99Ms),
    deadlineMisses: l.deadlineMisses,
    safeStops: l.safeStops,
    inferenceP50Ms: round(l.inferenceP50Ms),
    inferenceP99Ms: round(l.inferenceP99Ms),
    chunks: l.chunks,
    inferenceErrors: l.inferenceErrors,
    ticksSkipped: l.ticksSkipped,
  };
}

function loopText(l: LoopSummary): string {
  return (
    `rate ${fmt(l.achievedRateHz, 2)} Hz, jitter p99 ${fmt(l.jitterP99Ms)} ms, ` +
    `${l.deadlineMisses} deadline misses, ${l.safeStops} safe stops, ` +
    `inference p50 ${fmt(l.inferenceP50Ms)} ms / p99 ${fmt(l.inferenceP99Ms)} ms (${l.chunks} chunks` +
    (l.inferenceErrors ? `, ${l.inferenceErrors} errors` : '') +
    (l.ticksSkipped ? `, ${l.ticksSkipped} ticks skipped` : '') +
    ')'
  );
}

/** The loop summary over several episodes: pooled samples, summed counters, mean rate. */
function poolLoops(results: readonly EpisodeResult[]): LoopSummary {
  const sum = (f: (l: LoopSummary) => number): number => results.reduce((n, r) => n + f(r.loop), 0);
  const rates = results.map((r) => r.loop.achievedRateHz).filter(Number.isFinite);
  const jitters = results.flatMap((r) => r.jitters);
  const latencies = results.flatMap((r) => r.latencies);
  return {
    achievedRateHz: rates.length ? rates.reduce((a, b) => a + b, 0) / rates.length : NaN,
    jitterP50Ms: percentile(jitters, 0.5),
    jitterP99Ms: percentile(jitters, 0.99),
    inferenceP50Ms: percentile(latencies, 0.5),
    inferenceP99Ms: percentile(latencies, 0.99),
    deadlineMisses: sum((l) => l.deadlineMisses),
    safeStops: sum((l) => l.safeStops),
    chunks: sum((l) => l.chunks),
    inferenceErrors: sum((l) => l.inferenceErrors),
    ticksSkipped: sum((l) => l.ticksSkipped),
  };
}

// ---------------------------------------------------------------------------- one episode

/** Observation seq numbers keep increasing across episodes: the server's session outlives a reset. */
let nextSeq = 0;

/** No chunk for this long (ticks with source 'idle') ends the run: the server is not answering. */
const FIRST_CHUNK_TIMEOUT_MS = 15_000;

async function runEpisode(
  policy: RemotePolicy,
  robot: PushTEnv,
  episode: number,
  seed: number,
  args: Args,
  interrupted: () => boolean,
  log: (line: string) => void,
  view?: LiveView,
): Promise<EpisodeResult> {
  // A new episode: the robot is put back, the policy forgets its observation history.
  let state = robot.reset({ seed });
  await policy.reset();

  const observations$ = new Subject<TimedObservation>();
  const report = (s: Float64Array): void => observations$.next({ timeMs: performance.now(), seq: nextSeq++, state: s });

  const loop = controlLoop({ policy, observations$, rateHz: args.rateHz });
  const unpublish = view ? publishControlLoop(loop, view) : undefined;
  const jitters: number[] = [];
  const latencies: number[] = [];
  let lastError: string | undefined;
  let ticks = 0;
  let firstTickMs = NaN;
  let lastTickMs = NaN;
  let steps = 0;
  let maxCoverage = 0;
  let maxReward = 0;
  let finalCoverage = robot.coverage();
  const subs: Subscription[] = [];

  subs.push(
    loop.events$.subscribe((e) => {
      // Round-trip latency of every chunk received, as the loop's inferenceP50/P99 count it.
      if (e.kind === 'chunk' || e.kind === 'chunk-expired') latencies.push(e.latencyMs);
      else if (e.kind === 'inference-error') lastError = e.message;
    }),
  );
  if (args.verbose) {
    subs.push(
      loop.metrics$.subscribe((m: ControlLoopMetrics) =>
        log(
          args.json
            ? JSON.stringify({ event: 'metrics', episode, steps, coverage: round(finalCoverage, 4), achievedRateHz: round(m.achievedRateHz), jitterP99Ms: round(m.jitterP99Ms), inferenceP50Ms: round(m.inferenceP50Ms), deadlineMisses: m.deadlineMisses, safeStops: m.safeStops })
            : `  t=${fmt((m.timestampMs - loop.startMs) / 1000)} s  step ${steps}  coverage ${fmt(finalCoverage, 3)}  rate ${fmt(m.achievedRateHz, 2)} Hz  jitter p99 ${fmt(m.jitterP99Ms)} ms  inference p50 ${fmt(m.inferenceP50Ms)} ms  misses ${m.deadlineMisses}`,
        ),
      ),
    );
  }

  const end = await new Promise<EpisodeResult['end']>((resolve, reject) => {
    let done = false;
    const finish = (why: EpisodeResult['end'] | Error): void => {
      if (done) return;
      done = true;
      // Stop from inside the tick: no further tick, no request for an episode that is over.
      void loop.stop();
      if (why instanceof Error) reject(why);
      else resolve(why);
    };
    subs.push(
      loop.actions$.subscribe((a) => {
        if (done) return;
        ticks++;
        if (Number.isNaN(firstTickMs)) firstTickMs = a.emittedMs;
        lastTickMs = a.emittedMs;
        jitters.push(a.emittedMs - a.timeMs);
        if (interrupted()) return finish('interrupted');
        if (a.source === 'idle') {
          // No chunk yet: do not move, keep reporting the state (a fresh observation lets the
          // loop retry if a request failed).
          if (a.timeMs - loop.startMs > FIRST_CHUNK_TIMEOUT_MS) {
            return finish(new RunError(`no action chunk from the policy server within ${FIRST_CHUNK_TIMEOUT_MS / 1000} s${lastError ? ` (last error: ${lastError})` : ''}`));
          }
          report(state);
          return;
        }
        // The robot: execute the action for one control period, read back its state.
        const r = robot.step(a.action);
        steps++;
        state = r.observation;
        finalCoverage = Number(r.info.coverage);
        maxCoverage = Math.max(maxCoverage, finalCoverage);
        maxReward = Math.max(maxReward, r.reward);
        if (r.terminated) return finish('success');
        // The environment was built with maxSteps = --steps, so truncation is the step limit.
        if (r.truncated) return finish('truncated');
        report(state);
      }),
    );
    // The state at reset is the first observation: the loop requests its first chunk with it.
    report(state);
  }).finally(() => loop.stop()); // idempotent: waits for the request in flight, if any

  for (const s of subs) s.unsubscribe();
  unpublish?.();
  observations$.complete();
  const snap = loop.snapshot();
  return {
    episode,
    seed,
    steps,
    end,
    success: end === 'success',
    maxCoverage,
    maxReward,
    finalCoverage,
    durationS: (lastTickMs - loop.startMs) / 1000,
    loop: summarise(ticks, firstTickMs, lastTickMs, jitters, latencies, {
      deadlineMisses: snap.deadlineMisses,
      safeStops: snap.safeStops,
      chunks: latencies.length,
      inferenceErrors: snap.inferenceErrors,
      ticksSkipped: snap.ticksSkipped,
    }),
    jitters,
    latencies,
  };
}

// ---------------------------------------------------------------------------- main

async function main(argv: string[]): Promise<number> {
  const parsed = parseArgs(argv);
  if (parsed === 'help') {
    process.stdout.write(USAGE + '\n');
    return 0;
  }
  const args = parsed;
  const log = (line: string): void => void process.stdout.write(line + '\n');

  let interrupted = false;
  const onSignal = (): void => {
    interrupted = true;
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  let engine: WorkerEngine | undefined;
  let server: PolicyServer | undefined;
  let client: PolicyClient | undefined;
  let policy: RemotePolicy | undefined;
  let view: LiveView | undefined;
  const robot = new PushTEnv({ maxSteps: args.steps });
  try {
    let address = args.address;
    if (args.liveViewPort !== undefined) {
      view = await LiveView.start({ port: args.liveViewPort, name: 'scoreflow pusht-over-grpc' });
      view.advertise('/policy/observation', 'scoreflow.v1.Observation');
      view.advertise('/policy/action_chunk', 'scoreflow.v1.ActionChunk');
      if (!args.json) log(`live view: ${view.url} (Foxglove: Open connection -> Foxglove WebSocket)`);
    }
    if (address === undefined) {
      // What `scoreflow robot serve` does: inference in a worker thread, sessions on a host,
      // gRPC in front. Port 0 picks a free port.
      engine = await WorkerEngine.start({ checkpoint: shippedPolicyDir('pusht'), env: 'pusht' });
      const v = view;
      server = await PolicyServer.start(new PolicyHost(engine), {
        port: 0,
        onTraffic: v ? (e) => v.publish(e.kind === 'chunk' ? '/policy/action_chunk' : '/policy/observation', e.bytes) : undefined,
      });
      address = server.address;
    }

    client = new PolicyClient(address);
    try {
      policy = await client.policy();
    } catch (err) {
      throw new RunError(`cannot reach the policy server at ${address}: ${(err as Error).message}`);
    }
    const info = policy.remoteInfo;
    if (info.env !== 'pusht' || policy.info.observationDim !== robot.observationSpec.size || policy.info.actionDim !== robot.actionSpec.size) {
      throw new UsageError(
        `the server at ${address} serves a '${info.env}' policy (${policy.info.observationDim} observations, ${policy.info.actionDim} actions); ` +
          `this example drives Push-T (${robot.observationSpec.size} observations, ${robot.actionSpec.size} actions): start it with 'scoreflow robot serve --env pusht'`,
      );
    }
    const simHz = 1 / robot.dt;
    if (!args.json) {
      log(`policy ${info.policyId} ${info.modelVersion} (${info.sampler}, ${info.samplingSteps} steps) on ${address}${server ? ' (in-process server)' : ''}`);
      if (Math.abs(args.rateHz - simHz) > 1e-9) log(`note: the simulator advances ${robot.dt * 1000} ms per step, so at ${args.rateHz} Hz it runs ${fmt(args.rateHz / simHz, 2)}x real time`);
    }

    const results: EpisodeResult[] = [];
    for (let k = 0; k < args.episodes && !interrupted; k++) {
      const seed = args.seed + k;
      if (!args.json) log(`episode ${k + 1}/${args.episodes} (seed ${seed}): running up to ${args.steps} steps at ${args.rateHz} Hz ...`);
      const r = await runEpisode(policy, robot, k, seed, args, () => interrupted, log, view);
      results.push(r);
      if (args.json) {
        log(
          JSON.stringify({
            event: 'episode',
            episode: r.episode,
            seed: r.seed,
            steps: r.steps,
            end: r.end,
            success: r.success,
            maxCoverage: round(r.maxCoverage, 4),
            maxReward: round(r.maxReward, 4),
            finalCoverage: round(r.finalCoverage, 4),
            durationS: round(r.durationS),
            ...loopJson(r.loop),
          }),
        );
      } else {
        log(
          `  ${r.success ? 'success' : r.end === 'interrupted' ? 'interrupted' : 'no success'} after ${r.steps} steps (${fmt(r.durationS)} s): ` +
            `max coverage ${fmt(r.maxCoverage, 3)}, reward ${fmt(r.maxReward, 3)}`,
        );
        log(`  loop: ${loopText(r.loop)}`);
      }
    }

    const all = poolLoops(results);
    const successes = results.filter((r) => r.success).length;
    const mean = (f: (r: EpisodeResult) => number): number => (results.length ? results.reduce((a, r) => a + f(r), 0) / results.length : NaN);
    if (args.json) {
      log(
        JSON.stringify({
          event: 'summary',
          episodes: results.length,
          successes,
          successRate: round(results.length ? successes / results.length : NaN, 4),
          meanMaxCoverage: round(mean((r) => r.maxCoverage), 4),
          meanMaxReward: round(mean((r) => r.maxReward), 4),
          steps: results.reduce((n, r) => n + r.steps, 0),
          interrupted,
          ...loopJson(all),
          policyId: info.policyId,
          modelVersion: info.modelVersion,
          address,
          inProcessServer: server !== undefined,
        }),
      );
    } else if (results.length > 1 || interrupted) {
      log(
        `${results.length} episode${results.length === 1 ? '' : 's'}: ${successes} success${successes === 1 ? '' : 'es'}, mean max coverage ${fmt(mean((r) => r.maxCoverage), 3)}, mean reward ${fmt(mean((r) => r.maxReward), 3)}` +
          (interrupted ? ' (interrupted)' : ''),
      );
      log(`  loop: ${loopText(all)}`);
    }
    return interrupted ? 130 : 0;
  } finally {
    // Everything this program opened, in reverse order; the process then exits by itself.
    await policy?.close();
    client?.close();
    await server?.close();
    await engine?.close();
    await view?.close();
    robot.close();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    // Usage and validation errors are one line (exit 2); a RunError is one line, anything else
    // keeps its stack (exit 1).
    const user = isUserError(err);
    const text = user || err instanceof RunError ? err.message : err instanceof Error ? (err.stack ?? err.message) : String(err);
    process.stderr.write(`pusht-over-grpc: ${text}\n`);
    process.exitCode = user ? 2 : 1;
  },
);
