/**
 * Serving benchmarks with the shipped Push-T policy (10-step DDIM, WASM, inference in a worker
 * thread):
 *   1. loopback gRPC round trip observation -> chunk (p50, p99), next to the server-side
 *      inference time;
 *   2. the RxJS control loop at 50 Hz for 60 s driving the Push-T simulator in closed loop:
 *      achieved rate, tick jitter, deadline misses, inference latency;
 *   3. server throughput with 1, 4 and 16 concurrent closed-loop clients, with cross-session
 *      batching (max batch 16) and without it (max batch 1).
 *   npx tsx benchmarks/serve.ts [--loop-seconds 60] [--throughput-seconds 10] [--out FILE]
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { driveEnv, type DriveResult } from '../domains/robotics/control/drive.js';
import { PushTEnv } from '../domains/robotics/env/pusht.js';
import { percentile } from '../domains/robotics/policy/runner.js';
import { shippedPolicyDir } from '../domains/robotics/serve/cli.js';
import { WorkerEngine } from '../domains/robotics/serve/engine.js';
import { PolicyClient } from '../domains/robotics/serve/grpcClient.js';
import { PolicyServer, policyServiceDefinition } from '../domains/robotics/serve/grpcServer.js';
import { PolicyHost } from '../domains/robotics/serve/host.js';
import { LocalPolicy } from '../domains/robotics/serve/localPolicy.js';
import { decode, encode } from '../src/proto/registry.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const { values: args } = parseArgs({
  options: {
    'loop-seconds': { type: 'string', default: '60' },
    'throughput-seconds': { type: 'string', default: '10' },
    'round-trips': { type: 'string', default: '300' },
    out: { type: 'string', default: path.join(here, 'results', 'serve.json') },
  },
});
const loopSeconds = Number(args['loop-seconds']);
const tpSeconds = Number(args['throughput-seconds']);
const nRoundTrips = Number(args['round-trips']);
for (const [k, v] of [['loop-seconds', loopSeconds], ['throughput-seconds', tpSeconds], ['round-trips', nRoundTrips]] as const) {
  if (!(v > 0)) throw new Error(`--${k}: expected a positive number`);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const r2 = (x: number): number => Math.round(x * 100) / 100;

/** States from a Push-T reset, so the policy sees realistic inputs. */
function pushtStates(n: number): Float64Array[] {
  const env = new PushTEnv({ seed: 0 });
  const out: Float64Array[] = [];
  for (let i = 0; i < n; i++) out.push(env.reset({ seed: i }));
  env.close();
  return out;
}

async function roundTrip(address: string): Promise<Record<string, number>> {
  const client = new PolicyClient(address);
  const policy = await client.policy({ requestTimeoutMs: 10_000 });
  const states = pushtStates(50);
  const rt: number[] = [];
  const inf: number[] = [];
  const t0 = performance.now();
  for (let i = 0; i < nRoundTrips + 10; i++) {
    const s = performance.now();
    const c = await policy.requestChunk({ timeMs: performance.now(), seq: i, state: states[i % states.length]! });
    if (i >= 10) {
      rt.push(performance.now() - s);
      inf.push(c.latencyMs);
    }
  }
  const wall = performance.now() - t0;
  await policy.close();
  client.close();
  return {
    n: rt.length,
    roundTripP50Ms: r2(percentile(rt, 50)),
    roundTripP99Ms: r2(percentile(rt, 99)),
    roundTripMaxMs: r2(Math.max(...rt)),
    inferenceP50Ms: r2(percentile(inf, 50)),
    inferenceP99Ms: r2(percentile(inf, 99)),
    overheadP50Ms: r2(percentile(rt, 50) - percentile(inf, 50)),
    wallS: r2(wall / 1000),
  };
}

async function loop50Hz(host: PolicyHost): Promise<DriveResult> {
  const policy = new LocalPolicy(host);
  const env = new PushTEnv({ seed: 0 });
  const r = await driveEnv(env, policy, { rateHz: 50, seconds: loopSeconds, seed: 1000, stopAfterMs: 500 });
  await policy.close();
  env.close();
  return r;
}

async function throughput(address: string, clients: number, host: PolicyHost): Promise<Record<string, number>> {
  const states = pushtStates(64);
  const before = host.stats();
  const grpcClient = new grpc.Client(address, grpc.credentials.createInsecure(), { 'grpc.enable_channelz': 0 });
  const def = policyServiceDefinition.Act;
  let stop = false;
  const lat: number[] = [];
  let chunks = 0;
  const runClient = (c: number): Promise<void> =>
    new Promise((resolve) => {
      const call = grpcClient.makeBidiStreamRequest(def.path, def.requestSerialize, def.responseDeserialize);
      let seq = 0;
      let sentAt = 0;
      const send = (): void => {
        sentAt = performance.now();
        call.write(encode('scoreflow.v1.Observation', { seq: ++seq, timestampNs: BigInt(seq), state: states[(c * 7 + seq) % states.length]! }));
      };
      call.on('data', (b: Uint8Array) => {
        decode('scoreflow.v1.ActionChunk', b);
        lat.push(performance.now() - sentAt);
        chunks++;
        if (stop) call.end();
        else send();
      });
      call.on('error', () => undefined);
      call.on('status', () => resolve());
      send();
    });
  const t0 = performance.now();
  const done = Promise.all(Array.from({ length: clients }, (_, c) => runClient(c)));
  await sleep(tpSeconds * 1000);
  stop = true;
  const elapsed = (performance.now() - t0) / 1000;
  await done;
  grpcClient.close();
  const after = host.stats();
  const batches = after.batches - before.batches;
  return {
    clients,
    maxBatch: host.maxBatch,
    chunksPerS: r2(chunks / elapsed),
    meanBatch: r2((after.batchedRequests - before.batchedRequests) / Math.max(1, batches)),
    latencyP50Ms: r2(percentile(lat, 50)),
    latencyP99Ms: r2(percentile(lat, 99)),
  };
}

const checkpoint = shippedPolicyDir('pusht');
const engine = await WorkerEngine.start({ checkpoint, env: 'pusht' });
const result: Record<string, unknown> = { checkpoint: path.relative(process.cwd(), checkpoint), modelVersion: engine.info.modelVersion, sampler: `${engine.info.sampler}@${engine.info.samplingSteps}`, backend: 'wasm (worker thread)' };
{
  const host = new PolicyHost(engine, { maxBatch: 16 });
  const server = await PolicyServer.start(host, { port: 0 });
  process.stderr.write('round trip...\n');
  result.roundTrip = await roundTrip(server.address);
  process.stderr.write(`  ${JSON.stringify(result.roundTrip)}\ncontrol loop at 50 Hz for ${loopSeconds} s...\n`);
  result.controlLoop = await loop50Hz(host);
  process.stderr.write(`  ${JSON.stringify(result.controlLoop)}\nthroughput...\n`);
  const tp: Record<string, number>[] = [];
  for (const n of [1, 4, 16]) {
    tp.push(await throughput(server.address, n, host));
    process.stderr.write(`  ${JSON.stringify(tp.at(-1))}\n`);
  }
  await server.close();
  const host1 = new PolicyHost(engine, { maxBatch: 1 });
  const server1 = await PolicyServer.start(host1, { port: 0 });
  for (const n of [4, 16]) {
    tp.push(await throughput(server1.address, n, host1));
    process.stderr.write(`  ${JSON.stringify(tp.at(-1))}\n`);
  }
  await server1.close();
  result.throughput = tp;
}
await engine.close();
mkdirSync(path.dirname(args.out!), { recursive: true });
writeFileSync(args.out!, JSON.stringify(result, null, 2) + '\n');
process.stdout.write(JSON.stringify(result) + '\n');
