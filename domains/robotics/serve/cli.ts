/** `scoreflow robot serve` and `scoreflow robot bridge --stdio`. */
import { existsSync } from 'node:fs';
import * as nodePath from 'node:path';
import { fileURLToPath } from 'node:url';
import { choiceOpt, intOpt, numOpt, parse, type OptionSpec } from '../../../src/cli/args.js';
import { UsageError } from '../../../src/cli/errors.js';
import { SAMPLER_NAMES, type SamplerName } from '../../../src/sample/registry.js';
import { LiveView } from '../../../src/stream/liveView.js';
import { VirtualClock } from '../control/clock.js';
import { driveEnv, type DriveResult } from '../control/drive.js';
import { SimulatedLatencyPolicy } from '../control/simulatedPolicy.js';
import { setBackend } from '../../../src/backend/backend.js';
import { ENV_NAMES, envForPolicy } from '../envs.js';
import { circlesArg, GUIDE_ARG_OPTIONS, GUIDE_ARG_USAGE, guidanceFromArgs } from '../guidance/args.js';
import { checkGuidanceConfig, describeGuidance } from '../guidance/config.js';
import { DiffusionPolicy } from '../policy/policy.js';
import type { ChunkPolicy } from '../control/types.js';
import { ArmReachEnv } from '../env/armReach.js';
import { armReachReplanCheck, type ReplanCheck } from '../env/armReachReplan.js';
import type { Env } from '../env/types.js';
import { BridgeServer, serveBridgeStream } from './bridge.js';
import { enginePredictOptions, WorkerEngine, type SamplingOverride } from './engine.js';
import { PolicyServer } from './grpcServer.js';
import { PolicyHost } from './host.js';
import { LocalPolicy } from './localPolicy.js';

export const SERVE_USAGE = `usage: scoreflow robot serve [--checkpoint DIR | --env E] [--port P] [--host H] [--tcp-port P]
          [--live-view-port P] [--max-sessions N] [--max-batch N] [--max-message-bytes N]
          [--sampler S] [--steps N] [--temperature X] [--json]
          [--guide SPEC [--candidates N] [--guide-regions 'x,y,r;...'] ${GUIDE_ARG_USAGE}]
       serve PolicyService over gRPC (and optionally the TCP bridge and a Foxglove live view);
       --guide steers every chunk with the same costs as 'robot eval --guide' (arm-reach obstacles
       come from each observation; Push-T 'region' needs --guide-regions, circles in pixels)
       scoreflow robot bridge --stdio [--checkpoint DIR | --env E] [...]
       one policy session over stdin/stdout with length-delimited frames
       scoreflow robot drive [--checkpoint DIR | --env E] [--seconds S] [--episodes N] [--seed N] [--rate-hz R]
          [--blend-ms MS] [--pin-latency] [--virtual-latency MS] [--step-on ticks|timer] [--action-horizon Ta]
          [--replan-clearance M|off [--replan-lookahead N]] [sampling and --guide options as for serve] [--json]
       run the environment in real time through the same served policy (worker thread) and the
       RxJS control loop, one loop per episode; prints episodes, successes, collisions, latency.
       --virtual-latency runs the same loop on a virtual clock with the policy answering MS after
       each request (deterministic, faster than real time; --seconds is then virtual time);
       --step-on: the robot's periods start on loop ticks (default) or on its own timer;
       --pin-latency: each request pins the rows the loop executes until the chunk arrives
       (Observation.pinned_actions), so the new chunk continues what actually happens;
       --action-horizon: rows of each chunk the loop executes before its next request is due
       (default: the policy's stored Ta); --replan-clearance (arm-reach): request the next chunk at
       once when the current one's next N rows (default 2) would bring a link within M metres of an
       obstacle in the latest observation (default: the policy's stored clearance; 'off': none)`;

/** The committed model for an environment: models/<env>-policy at the package root. */
export function shippedPolicyDir(env: string): string {
  let dir = nodePath.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const candidate = nodePath.join(dir, 'models', `${env}-policy`);
    if (existsSync(nodePath.join(candidate, 'model.json'))) return candidate;
    dir = nodePath.dirname(dir);
  }
  throw new UsageError(`no shipped policy for '${env}' (models/${env}-policy); pass --checkpoint DIR`);
}

const OPTIONS: OptionSpec = {
  checkpoint: { type: 'string' },
  env: { type: 'string' },
  port: { type: 'string' },
  host: { type: 'string' },
  'tcp-port': { type: 'string' },
  'live-view-port': { type: 'string' },
  'max-sessions': { type: 'string' },
  'max-batch': { type: 'string' },
  'max-message-bytes': { type: 'string' },
  sampler: { type: 'string' },
  steps: { type: 'string' },
  temperature: { type: 'string' },
  candidates: { type: 'string' },
  'guide-regions': { type: 'string' },
  ...GUIDE_ARG_OPTIONS,
  stdio: { type: 'boolean' },
  json: { type: 'boolean' },
};

const DRIVE_OPTIONS: OptionSpec = {
  ...OPTIONS,
  seconds: { type: 'string' },
  seed: { type: 'string' },
  'rate-hz': { type: 'string' },
  'blend-ms': { type: 'string' },
  episodes: { type: 'string' },
  'virtual-latency': { type: 'string' },
  'step-on': { type: 'string' },
  'pin-latency': { type: 'boolean' },
  'action-horizon': { type: 'string' },
  'replan-clearance': { type: 'string' },
  'replan-lookahead': { type: 'string' },
};

/**
 * `--replan-clearance M|off`: undefined when absent, null for 'off', else M checked for the
 * environment (metres for arm-reach, pixels of the forbidden circles for Push-T).
 */
export function replanClearanceOpt(v: string | boolean | undefined, envName: string): number | null | undefined {
  if (v === undefined) return undefined;
  if (v === 'off') return null;
  const m = numOpt(v, 'replan-clearance', 0);
  const [max, unit] = envName === 'arm-reach' ? [0.2, 'metres'] : [512, 'pixels'];
  if (!(m >= 0 && m <= max)) throw new UsageError(`--replan-clearance: expected ${unit} in [0, ${max}] for ${envName}, or 'off', received ${m}`);
  return m;
}

/** The same policy with another executable part per chunk (what the control loop runs before its next request). */
function withActionHorizon(p: ChunkPolicy, actionHorizon: number): ChunkPolicy {
  const max = p.info.predHorizon - p.info.currentRow;
  if (!(actionHorizon >= 1 && actionHorizon <= max)) throw new UsageError(`--action-horizon: expected an integer in [1, ${max}] for this policy, received ${actionHorizon}`);
  return {
    info: { ...p.info, actionHorizon },
    observe: (o) => p.observe(o),
    requestChunk: (o, opts) => p.requestChunk(o, opts),
    reset: () => p.reset(),
    close: () => p.close(),
  };
}

/** Checkpoint, environment and sampling override (with guidance, checked against the policy) from the options. */
function samplingFromArgs(o: Record<string, string | boolean | undefined>): { checkpoint: string; env: string | undefined; sampling: SamplingOverride } {
  const env = o.env === undefined ? undefined : choiceOpt(o.env, 'env', ENV_NAMES, 'pusht');
  const checkpoint = typeof o.checkpoint === 'string' ? o.checkpoint : shippedPolicyDir(env ?? 'pusht');
  const sampler = o.sampler === undefined ? undefined : (choiceOpt(o.sampler, 'sampler', SAMPLER_NAMES, 'ddim') as SamplerName);
  const steps = o.steps === undefined ? undefined : intOpt(o.steps, 'steps', 10, 1);
  const temperature = o.temperature === undefined ? undefined : numOpt(o.temperature, 'temperature', 1);
  if (temperature !== undefined && !(temperature >= 0 && temperature <= 10)) throw new UsageError(`--temperature: expected a number in [0, 10], received '${String(o.temperature)}'`);
  const candidates = o.candidates === undefined ? undefined : intOpt(o.candidates, 'candidates', 1, 1);
  const regions = circlesArg(o['guide-regions'], 'guide-regions');
  const guideArgs = guidanceFromArgs(o, { candidates, constraints: regions });
  if (!guideArgs && (candidates !== undefined || regions !== undefined)) throw new UsageError('--candidates and --guide-regions need --guide');
  // Check the guidance against the policy here, so a bad setting is one clear line, not a worker failure.
  const guidance = guideArgs ? checkGuidanceConfig(guideArgs, DiffusionPolicy.readConfig(checkpoint, { env })) : undefined;
  return { checkpoint, env, sampling: { sampler, steps, temperature, guidance } };
}

async function startHost(o: Record<string, string | boolean | undefined>, parsed = samplingFromArgs(o)): Promise<PolicyHost> {
  const { checkpoint, env, sampling } = parsed;
  const engine = await WorkerEngine.start({ checkpoint, env, ...sampling });
  return new PolicyHost(engine, {
    maxSessions: intOpt(o['max-sessions'], 'max-sessions', 64, 1),
    maxBatch: intOpt(o['max-batch'], 'max-batch', 16, 1),
    maxMessageBytes: intOpt(o['max-message-bytes'], 'max-message-bytes', 1 << 20, 64),
  });
}

function waitForSignal(): Promise<string> {
  return new Promise((resolve) => {
    const on = (sig: string): void => resolve(sig);
    process.once('SIGINT', on);
    process.once('SIGTERM', on);
  });
}

export async function robotServe(argv: string[]): Promise<number> {
  const o = parse(argv, OPTIONS, SERVE_USAGE);
  const json = Boolean(o.json);
  // Every option is checked before anything starts: a bad one must not leave a worker running.
  const grpcPort = intOpt(o.port, 'port', 50051, 0);
  const tcpPort = o['tcp-port'] !== undefined ? intOpt(o['tcp-port'], 'tcp-port', 50052, 0) : undefined;
  const livePort = o['live-view-port'] !== undefined ? intOpt(o['live-view-port'], 'live-view-port', 8765, 0) : undefined;
  for (const [name, port] of [['port', grpcPort], ['tcp-port', tcpPort], ['live-view-port', livePort]] as const) {
    if (port !== undefined && port > 65535) throw new UsageError(`--${name}: expected a port number in [0, 65535], received ${port}`);
  }
  const host = await startHost(o);
  const bindHost = typeof o.host === 'string' ? o.host : '127.0.0.1';
  let live: LiveView | undefined;
  let server: PolicyServer | undefined;
  let bridge: BridgeServer | undefined;
  try {
    if (livePort !== undefined) {
      live = await LiveView.start({ port: livePort, host: bindHost, name: `scoreflow ${host.info.policyId}` });
      live.advertise('/policy/observation', 'scoreflow.v1.Observation');
      live.advertise('/policy/action_chunk', 'scoreflow.v1.ActionChunk');
    }
    server = await PolicyServer.start(host, {
      port: grpcPort,
      host: bindHost,
      onTraffic: live ? (e) => live!.publish(e.kind === 'chunk' ? '/policy/action_chunk' : '/policy/observation', e.bytes) : undefined,
    });
    bridge = tcpPort !== undefined ? await BridgeServer.start(host, { port: tcpPort, host: bindHost }) : undefined;
  } catch (err) {
    // A port in use or a bad host: close what did start, so the command exits with the error.
    await bridge?.close().catch(() => undefined);
    await server?.close().catch(() => undefined);
    await live?.close().catch(() => undefined);
    await host.engine.close().catch(() => undefined);
    throw err;
  }
  const ready = {
    event: 'serving',
    grpc: server.address,
    tcp: bridge ? `${bindHost}:${bridge.port}` : null,
    liveView: live?.url ?? null,
    policyId: host.info.policyId,
    modelVersion: host.info.modelVersion,
    env: host.info.env,
    guidance: host.info.guidance || null,
  };
  process.stdout.write(
    json
      ? JSON.stringify(ready) + '\n'
      : `serving ${host.info.env} policy ${host.info.modelVersion} on grpc ${server.address}` +
          (bridge ? `, tcp ${bindHost}:${bridge.port}` : '') +
          (live ? `, live view ${live.url}` : '') +
          (host.info.guidance ? `, guided by ${host.info.guidance}` : '') +
          ' (Ctrl-C to stop)\n',
  );
  const sig = await waitForSignal();
  await bridge?.close();
  await server.close();
  await live?.close();
  await host.engine.close();
  const stats = host.stats();
  process.stdout.write(json ? JSON.stringify({ event: 'stopped', signal: sig, ...stats }) + '\n' : `stopped (${sig}): ${stats.chunks} chunks to ${stats.sessionsOpened} sessions\n`);
  return 0;
}

export async function robotDrive(argv: string[]): Promise<number> {
  const o = parse(argv, DRIVE_OPTIONS, SERVE_USAGE);
  for (const k of ['port', 'host', 'tcp-port', 'live-view-port', 'stdio']) if (o[k] !== undefined) throw new UsageError(`--${k}: drive serves in-process only`);
  // With --episodes, the run ends with its episodes unless --seconds says otherwise.
  const seconds = numOpt(o.seconds, 'seconds', o.episodes === undefined ? 60 : 86400);
  if (!(seconds >= 1 && seconds <= 86400)) throw new UsageError(`--seconds: expected a number in [1, 86400], received '${String(o.seconds)}'`);
  const seed = intOpt(o.seed, 'seed', 0, 0);
  const rateHz = numOpt(o['rate-hz'], 'rate-hz', 50);
  if (!(rateHz > 0 && rateHz <= 1000)) throw new UsageError(`--rate-hz: expected a number in (0, 1000], received '${String(o['rate-hz'])}'`);
  const blendMs = o['blend-ms'] === undefined ? undefined : numOpt(o['blend-ms'], 'blend-ms', 0);
  if (blendMs !== undefined && !(blendMs >= 0)) throw new UsageError(`--blend-ms: expected a number >= 0, received '${String(o['blend-ms'])}'`);
  const episodes = o.episodes === undefined ? undefined : intOpt(o.episodes, 'episodes', 50, 1);
  const virtualLatency = o['virtual-latency'] === undefined ? undefined : numOpt(o['virtual-latency'], 'virtual-latency', 30);
  if (virtualLatency !== undefined && !(virtualLatency >= 0 && virtualLatency <= 10_000)) throw new UsageError(`--virtual-latency: expected a number of ms in [0, 10000], received '${String(o['virtual-latency'])}'`);
  const stepOn = o['step-on'] === undefined ? undefined : choiceOpt(o['step-on'], 'step-on', ['ticks', 'timer'] as const, 'ticks');
  const actionHorizon = o['action-horizon'] === undefined ? undefined : intOpt(o['action-horizon'], 'action-horizon', 8, 1);
  const replanArg = replanClearanceOpt(o['replan-clearance'], 'arm-reach');
  const replanLookahead = intOpt(o['replan-lookahead'], 'replan-lookahead', 2, 1);
  let replanClearance: number | undefined;
  /** Early replanning in the loop: --replan-clearance, else the policy's stored one (arm-reach). */
  const replanFor = (env: Env, stored: number | undefined): { replanWhen?: ReplanCheck } => {
    replanClearance = replanArg === null ? undefined : (replanArg ?? stored);
    if (o['replan-lookahead'] !== undefined && replanClearance === undefined) throw new UsageError('--replan-lookahead: only with --replan-clearance');
    if (replanClearance === undefined) return {};
    if (!(env instanceof ArmReachEnv)) throw new UsageError(`--replan-clearance: only arm-reach has obstacles to keep clear of (this policy is for ${env.name})`);
    return { replanWhen: armReachReplanCheck(env, { clearance: replanClearance, lookahead: replanLookahead }) };
  };
  const horizon = (p: ChunkPolicy): ChunkPolicy => (actionHorizon === undefined ? p : withActionHorizon(p, actionHorizon));
  const driveOpts = { rateHz, seconds, seed, ...(stepOn === undefined ? {} : { stepOn }), ...(episodes === undefined ? {} : { maxEpisodes: episodes }), ...(blendMs === undefined ? {} : { blendMs }), ...(o['pin-latency'] ? { pinLatency: true } : {}) };
  const report = (r: DriveResult, head: Record<string, unknown>): void => {
    const out = { event: 'drive', ...head, seed, rateHz, ...r };
    process.stdout.write(
      o.json
        ? JSON.stringify(out) + '\n'
        : `${r.episodesFinished} episodes in ${r.elapsedSeconds} s${virtualLatency === undefined ? '' : ' (virtual time)'}: ${r.successes} succeeded, ${r.episodesWithCollisions} with collisions; ` +
            `${r.achievedRateHz} Hz, ${r.deadlineMisses} deadline misses, ${r.safeStops} safe stops; chunk round trip p50 ${r.inferenceP50Ms} / p99 ${r.inferenceP99Ms} ms\n`,
    );
  };
  if (virtualLatency !== undefined) {
    // The same loop and driver on a virtual clock, the policy in this thread answering after a
    // fixed latency: deterministic, and as fast as sampling allows.
    const { checkpoint, env: envName, sampling } = samplingFromArgs(o);
    await setBackend('auto');
    const dp = DiffusionPolicy.load(checkpoint, { env: envName });
    const env = await envForPolicy(dp.config);
    try {
      const clock = new VirtualClock(0);
      const policy = new SimulatedLatencyPolicy(dp, { clock, latencyMs: virtualLatency, dtMs: env.dt * 1000, predict: enginePredictOptions(dp, sampling), seed });
      const r = await driveEnv(env, horizon(policy), { ...driveOpts, ...replanFor(env, dp.config.replanClearance), clock });
      report(r, { env: dp.config.env, actionHorizon: actionHorizon ?? dp.config.actionHorizon, ...(replanClearance === undefined ? {} : { replanClearance, replanLookahead }), virtualLatencyMs: virtualLatency, pinLatency: Boolean(o['pin-latency']), sampler: `${sampling.sampler ?? dp.config.sampler}@${sampling.steps ?? dp.config.samplingSteps}`, temperature: sampling.temperature ?? dp.config.temperature ?? 1, guidance: describeGuidance(sampling.guidance) || null });
    } finally {
      env.close();
      dp.dispose();
    }
    return 0;
  }
  const parsed = samplingFromArgs(o);
  const host = await startHost(o, parsed);
  const policy = new LocalPolicy(host);
  const config = DiffusionPolicy.readConfig(parsed.checkpoint, { env: host.info.env });
  const env = await envForPolicy(config);
  try {
    const r = await driveEnv(env, horizon(policy), { ...driveOpts, ...replanFor(env, config.replanClearance) });
    report(r, { env: host.info.env, actionHorizon: actionHorizon ?? policy.info.actionHorizon, ...(replanClearance === undefined ? {} : { replanClearance, replanLookahead }), modelVersion: host.info.modelVersion, pinLatency: Boolean(o['pin-latency']), sampler: `${host.info.sampler}@${host.info.samplingSteps}`, temperature: host.info.temperature, guidance: host.info.guidance || null });
  } finally {
    await policy.close();
    host.close();
    env.close();
    await host.engine.close();
  }
  return 0;
}

export async function robotBridge(argv: string[]): Promise<number> {
  const o = parse(argv, OPTIONS, SERVE_USAGE);
  if (!o.stdio) throw new UsageError(`bridge needs --stdio (for TCP use 'robot serve --tcp-port P')\n${SERVE_USAGE}`);
  const host = await startHost(o);
  await serveBridgeStream(host, process.stdin, process.stdout);
  host.close();
  await host.engine.close();
  return 0;
}
