/**
 * Guided serving in real time: the shipped arm-reach policy served from a worker thread (as
 * `robot serve` does), driving the MuJoCo arm through the RxJS control loop on the wall clock,
 * once unguided and once with `--guide` (the obstacles come from each observation). Reports
 * finished episodes, successes, collision episodes, chunk round trips and deadline misses.
 *   npx tsx benchmarks/guidedServe.ts [--seconds 120] [--seed 1000] [--rate-hz 50]
 *     [--guide obstacle:1 --guide-mode projection --guide-max-step 0.3 --guide-substeps 4]
 *     [--candidates N] [--temperature T] [--out FILE]
 * Without --guide it uses the setting in the line above, one candidate at the policy's stored
 * temperature (16 candidates at temperature 1, the novel-obstacle setting of `robot eval`, switch
 * detour sides from chunk to chunk when replanning every ~2 rows, and collide more).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { intOpt, numOpt, parse } from '../src/cli/args.js';
import { driveEnv, type DriveResult } from '../domains/robotics/control/drive.js';
import { envForPolicy } from '../domains/robotics/envs.js';
import { GUIDE_ARG_OPTIONS, guidanceFromArgs } from '../domains/robotics/guidance/args.js';
import { checkGuidanceConfig, type GuidanceConfig } from '../domains/robotics/guidance/config.js';
import { DiffusionPolicy } from '../domains/robotics/policy/policy.js';
import { shippedPolicyDir } from '../domains/robotics/serve/cli.js';
import { WorkerEngine, type SamplingOverride } from '../domains/robotics/serve/engine.js';
import { PolicyHost } from '../domains/robotics/serve/host.js';
import { LocalPolicy } from '../domains/robotics/serve/localPolicy.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const USAGE = 'usage: npx tsx benchmarks/guidedServe.ts [--seconds S] [--seed N] [--rate-hz R] [--guide SPEC ...] [--candidates N] [--temperature T] [--out FILE]';
const o = parse(
  process.argv.slice(2),
  { seconds: { type: 'string' }, seed: { type: 'string' }, 'rate-hz': { type: 'string' }, candidates: { type: 'string' }, temperature: { type: 'string' }, out: { type: 'string' }, ...GUIDE_ARG_OPTIONS },
  USAGE,
);
const seconds = numOpt(o.seconds, 'seconds', 120);
const seed = intOpt(o.seed, 'seed', 1000, 0);
const rateHz = numOpt(o['rate-hz'], 'rate-hz', 50);
if (!(seconds > 0) || !(rateHz > 0)) throw new Error('--seconds and --rate-hz must be > 0');
const checkpoint = shippedPolicyDir('arm-reach');
const config = DiffusionPolicy.readConfig(checkpoint, { env: 'arm-reach' });
const fromArgs = guidanceFromArgs(o, { candidates: o.candidates === undefined ? undefined : intOpt(o.candidates, 'candidates', 1, 1) });
const guidance: GuidanceConfig = checkGuidanceConfig(fromArgs ?? { spec: 'obstacle:1', mode: 'projection', maxStep: 0.3, substeps: 4 }, config);
const guidedTemperature = o.temperature === undefined ? undefined : numOpt(o.temperature, 'temperature', 1);

async function drive(sampling: SamplingOverride): Promise<DriveResult & { guidance: string; temperature: number }> {
  const engine = await WorkerEngine.start({ checkpoint, env: 'arm-reach', ...sampling });
  const host = new PolicyHost(engine);
  const policy = new LocalPolicy(host);
  const env = await envForPolicy(config);
  try {
    const r = await driveEnv(env, policy, { rateHz, seconds, seed, stopAfterMs: 500 });
    return { guidance: engine.info.guidance, temperature: engine.info.temperature, ...r };
  } finally {
    await policy.close();
    host.close();
    env.close();
    await engine.close();
  }
}

const result: Record<string, unknown> = { checkpoint: path.relative(process.cwd(), checkpoint), seconds, seed, rateHz };
process.stderr.write(`unguided, ${seconds} s...\n`);
result.unguided = await drive({});
process.stderr.write(`  ${JSON.stringify(result.unguided)}\nguided, ${seconds} s...\n`);
result.guided = await drive({ guidance, temperature: guidedTemperature });
process.stderr.write(`  ${JSON.stringify(result.guided)}\n`);
const out = typeof o.out === 'string' ? o.out : path.join(here, 'results', 'guided-serve.json');
mkdirSync(path.dirname(out), { recursive: true });
writeFileSync(out, JSON.stringify(result, null, 2) + '\n');
process.stdout.write(JSON.stringify(result) + '\n');
