/** `scoreflow robot import | collect | train | eval`. */
import { lastValueFrom, tap } from 'rxjs';
import { currentBackend, setBackend } from '../../src/backend/backend.js';
import { choiceOpt, intOpt, numOpt, parse } from '../../src/cli/args.js';
import { UsageError } from '../../src/cli/errors.js';
import { progressSink } from '../../src/cli/progress.js';
import { PATH_KINDS } from '../../src/path/index.js';
import { SAMPLER_NAMES } from '../../src/sample/registry.js';
import { ArmReachEnv } from './env/armReach.js';
import { armReachReplanCheck } from './env/armReachReplan.js';
import { pushtReplanCheck } from './env/pushtReplan.js';
import { collectDemos } from './expert/armReachExpert.js';
import { collectCorrectionsParallel } from './expert/parallelCorrections.js';
import { readEpisodesMcap, writeEpisodesMcap, type EpisodeRecord } from './data/episodes.js';
import { DEFAULT_PUSHT_ZARR, loadPushtDemos } from './data/pushtDemos.js';
import { ENV_NAMES, armActionMode, envForPolicy } from './envs.js';
import { evaluatePolicy, type Circle } from './evaluate.js';
import { DEFAULT_POLICY, type DiffusionPolicyConfig } from './policy/config.js';
import { DiffusionPolicy, type CostTerm } from './policy/policy.js';
import { policyTrainer } from './policy/train.js';
import type { Trainer } from '../../src/train/trainer.js';
import { DEFAULT_DISTILL_SIGMA_DATA, policyDistiller, policyReflow } from './policy/distill.js';
import type { Demo } from './policy/windows.js';
import { GUIDE_ARG_OPTIONS, GUIDE_ARG_USAGE, guidanceFromArgs } from './guidance/args.js';
import { checkGuidanceConfig, guidancePredictOptions } from './guidance/config.js';
import { replanClearanceOpt, robotBridge, robotDrive, robotServe, shippedPolicyDir } from './serve/cli.js';
import { prepareOutputDir, prepareOutputFile } from '../../src/util/output.js';

const USAGE = `usage: scoreflow robot <subcommand> [options]
  import  --zarr PATH [--out FILE.mcap]            Diffusion Policy replay buffer -> episode MCAP
  collect --env arm-reach --episodes N [--seed S] [--margin M] [--action-mode velocity|position]
          [--action-noise STD [--noise-correlation RHO]] [--out FILE.mcap]
          expert demonstrations (--margin: clearance in m the planner keeps from obstacles, default
          0.02; --action-mode: joint velocities (default) or absolute joint targets, kept by the policy;
          --action-noise: Gaussian noise in action units added to the executed actions, the expert's
          own actions recorded (DART), AR(1) step-to-step correlation RHO in [0, 1), default 0)
  collect --env arm-reach --policy DIR --episodes N [--seed S] [--margin M] [--every K] [--workers N] [--out FILE.mcap]
          expert corrections at the states the policy visits (DAgger); train on both files with
          'train --data demos.mcap,corrections.mcap --init DIR'
  train   --env E [--data FILE.mcap[,FILE.mcap...] | --zarr PATH] [--steps N] [--batch N] [--lr X] [--channels 64,128,256]
          [--objective denoising|flow-matching] [--prediction eps|x0|v] [--path P] [--seed S] [--out DIR] [--resume DIR | --init DIR]
          [--workers N] [--json]
          (--workers 2 splits every batch between two threads, each with a one-thread WASM backend:
          data parallelism, faster than SCOREFLOW_WASM_THREADS=2 on two cores)
          (--init fine-tunes a trained policy: it keeps that policy's network, normalisers and stored
          sampling settings, e.g. an exported --temperature / --action-horizon, with a fresh optimiser)
  distill --env E --teacher DIR [--data FILE.mcap | --zarr PATH] [--steps N] [--batch N] [--lr X] [--out DIR] [--json]
          [--method consistency [--sigma-data S] | --method reflow [--pairs K] [--student-steps S]]
          distil a trained policy into a one- or few-step policy: consistency distillation, or
          reflow (train on the teacher's own (noise, chunk) pairs, so 1-2 flow steps follow them)
  export  --env E --checkpoint DIR --out DIR [--temperature X] [--action-horizon Ta] [--replan-clearance M|off]
          inference-only copy (EMA weights, no optimiser state); --temperature stores the
          policy's default sampling temperature (scale of the starting noise, default 1),
          --action-horizon the actions executed per chunk (1 .. Tp - To + 1; default: the trained Ta),
          --replan-clearance (arm-reach) the early-replanning clearance in metres that eval, drive and
          collect --policy then use (see eval; 'off' removes a stored one)
  eval    --env E [--checkpoint DIR (default: the shipped models/E-policy)] [--episodes N] [--seed S] [--guide obstacle:2,smooth:0.1]
          [--novel-obstacles K] [--sampler S] [--steps N] [--candidates N] [--temperature X (default: the policy's)]
          [--action-horizon Ta] [--pin-executed] [--replan-clearance M|off [--replan-lookahead N]] [--per-episode] [--json]
          ${GUIDE_ARG_USAGE}
          (--candidates N keeps the lowest-cost of N samples and needs diverse ones: pass --temperature 1 with it;
          --guide-mode projection moves each denoised chunk K Polyak steps towards zero constraint cost
          (obstacle / region / limits; each step at most X in normalised units), --guide-substeps S
          checks arm-reach obstacles at S poses per control period;
          --replan-clearance cuts a chunk short and samples the next one when its next N actions (default 2)
          would bring a link within M metres of an obstacle (arm-reach) or the agent within M pixels of a
          forbidden circle (Push-T, with --novel-obstacles); default: the policy's stored clearance, 'off': none)
  serve   [--checkpoint DIR | --env E] [--port P] [--tcp-port P] [--live-view-port P] [--json]
          PolicyService over gRPC (see 'robot serve --help')
  bridge  --stdio [--checkpoint DIR | --env E]    one policy session over stdin/stdout frames
  drive   [--checkpoint DIR | --env E] [--seconds S] [--seed N] [--guide ...] [--json]
          the environment in real time through the served policy and the control loop`;

export async function runRobot(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  switch (sub) {
    case 'import':
      return robotImport(rest);
    case 'collect':
      return robotCollect(rest);
    case 'train':
      return robotTrain(rest);
    case 'eval':
      return robotEval(rest);
    case 'distill':
      return robotDistill(rest);
    case 'export':
      return robotExport(rest);
    case 'serve':
      return robotServe(rest);
    case 'bridge':
      return robotBridge(rest);
    case 'drive':
      return robotDrive(rest);
    case undefined:
    case '--help':
    case 'help':
      process.stdout.write(USAGE + '\n');
      return sub === undefined ? 2 : 0;
    default:
      throw new UsageError(`unknown robot subcommand '${sub}'\n${USAGE}`);
  }
}

function emit(json: boolean, obj: Record<string, unknown>, text: string): void {
  process.stdout.write(json ? JSON.stringify(obj) + '\n' : text + '\n');
}

async function robotImport(argv: string[]): Promise<number> {
  const o = parse(argv, { zarr: { type: 'string' }, out: { type: 'string' }, json: { type: 'boolean' } }, USAGE);
  const zarrPath = typeof o.zarr === 'string' ? o.zarr : DEFAULT_PUSHT_ZARR;
  const out = prepareOutputFile(typeof o.out === 'string' ? o.out : 'runs/pusht_demos.mcap', '--out');
  const demos = await loadPushtDemos(zarrPath);
  const eps: EpisodeRecord[] = demos.map((d, e) => ({ env: 'pusht', index: e, observations: [...d.observations] as Float64Array[], actions: [...d.actions] as Float64Array[], rewards: d.actions.map(() => 0), metadata: { source: zarrPath } }));
  const steps = eps.reduce((n, e) => n + e.actions.length, 0);
  await writeEpisodesMcap(out, eps, { env: 'pusht', dt: 0.1, observationMessages: true });
  emit(Boolean(o.json), { event: 'import', episodes: eps.length, steps, out }, `imported ${eps.length} episodes (${steps} steps) from ${zarrPath} into ${out}`);
  return 0;
}

async function robotCollect(argv: string[]): Promise<number> {
  const o = parse(
    argv,
    { env: { type: 'string' }, episodes: { type: 'string' }, seed: { type: 'string' }, margin: { type: 'string' }, out: { type: 'string' }, json: { type: 'boolean' }, policy: { type: 'string' }, every: { type: 'string' }, workers: { type: 'string' }, 'action-mode': { type: 'string' }, 'action-noise': { type: 'string' }, 'noise-correlation': { type: 'string' } },
    USAGE,
  );
  const env = choiceOpt(o.env, 'env', ['arm-reach'] as const, 'arm-reach');
  const safetyMargin = o.margin === undefined ? undefined : numOpt(o.margin, 'margin', 0.02);
  if (safetyMargin !== undefined && !(safetyMargin >= 0 && safetyMargin <= 0.2)) throw new UsageError(`--margin: expected a clearance in [0, 0.2] m, received '${String(o.margin)}'`);
  const n = intOpt(o.episodes, 'episodes', 200, 1);
  const seed = intOpt(o.seed, 'seed', 0);
  if (o.every !== undefined && typeof o.policy !== 'string') throw new UsageError('--every: only with --policy (expert corrections)');
  if (o.workers !== undefined && typeof o.policy !== 'string') throw new UsageError('--workers: only with --policy (expert corrections; expert demonstrations take seconds)');
  const workers = intOpt(o.workers, 'workers', 1, 1);
  if (workers > 16) throw new UsageError(`--workers: expected 1..16 threads, received ${workers}`);
  if (typeof o.policy === 'string' && o['action-mode'] !== undefined) throw new UsageError('--action-mode: corrections use the action mode of the --policy checkpoint');
  const actionMode = choiceOpt(o['action-mode'], 'action-mode', ['velocity', 'position'] as const, 'velocity');
  if (typeof o.policy === 'string' && (o['action-noise'] !== undefined || o['noise-correlation'] !== undefined)) {
    throw new UsageError('--action-noise: only for expert demonstrations (without --policy)');
  }
  if (o['noise-correlation'] !== undefined && o['action-noise'] === undefined) throw new UsageError('--noise-correlation: only with --action-noise');
  const noiseStd = o['action-noise'] === undefined ? undefined : numOpt(o['action-noise'], 'action-noise', 0);
  if (noiseStd !== undefined && !(noiseStd >= 0)) throw new UsageError(`--action-noise: expected a standard deviation >= 0, received '${String(o['action-noise'])}'`);
  const noiseCorrelation = o['noise-correlation'] === undefined ? undefined : numOpt(o['noise-correlation'], 'noise-correlation', 0);
  if (noiseCorrelation !== undefined && !(noiseCorrelation >= 0 && noiseCorrelation < 1)) {
    throw new UsageError(`--noise-correlation: expected a number in [0, 1), received '${String(o['noise-correlation'])}'`);
  }
  const actionNoise = noiseStd === undefined ? undefined : { std: noiseStd, correlation: noiseCorrelation };
  if (typeof o.policy === 'string') return robotCollectCorrections(o.policy, n, seed, safetyMargin, intOpt(o.every, 'every', 1, 1), workers, prepareOutputFile(typeof o.out === 'string' ? o.out : `runs/${env}_corrections.mcap`, '--out'), Boolean(o.json));
  const out = prepareOutputFile(typeof o.out === 'string' ? o.out : `runs/${env}_demos.mcap`, '--out');
  const e = await ArmReachEnv.create({ seed, actionMode });
  const t0 = performance.now();
  const demos = collectDemos(e, { episodes: n, seed, safetyMargin, actionNoise });
  e.close();
  const ok = demos.filter((d) => d.success);
  const modes: Record<string, number> = {};
  for (const d of demos) modes[d.mode] = (modes[d.mode] ?? 0) + 1 / demos.length;
  await writeEpisodesMcap(
    out,
    ok.map((d, i) => ({ env, index: i, observations: d.observations, actions: d.actions, rewards: d.rewards, success: d.success, metadata: { mode: d.mode, seed: String(d.seed), actionMode, ...(actionNoise ? { actionNoise: JSON.stringify(actionNoise) } : {}) } })),
    { env, dt: 0.1 },
  );
  emit(Boolean(o.json), { event: 'collect', env, episodes: n, successRate: ok.length / n, modes, out, seconds: (performance.now() - t0) / 1000 },
    `expert: ${ok.length}/${n} successful (${((100 * ok.length) / n).toFixed(1)}%), modes ${JSON.stringify(modes)}; wrote ${ok.length} episodes to ${out}`);
  return 0;
}

/** `robot collect --policy DIR`: expert corrections at the states the policy visits (DAgger). */
async function robotCollectCorrections(checkpoint: string, episodes: number, seed: number, safetyMargin: number | undefined, every: number, workers: number, out: string, json: boolean): Promise<number> {
  await setBackend('auto');
  const policy = DiffusionPolicy.load(checkpoint, { env: 'arm-reach' });
  const actionMode = armActionMode(policy.config);
  // Both environments are built from the policy's own options, like eval and serve do.
  const e = (await envForPolicy(policy.config, { seed })) as ArmReachEnv;
  const expertEnv = (await envForPolicy(policy.config, { seed })) as ArmReachEnv;
  const t0 = performance.now();
  try {
    const r = await collectCorrectionsParallel(checkpoint, e, expertEnv, policy, { episodes, seed, safetyMargin, every }, workers);
    await writeEpisodesMcap(
      out,
      r.demos.map((d, i) => ({ env: 'arm-reach', index: i, observations: d.observations, actions: d.actions, rewards: d.rewards, success: d.success, metadata: { mode: d.mode, seed: String(d.seed), source: 'correction', policy: checkpoint, actionMode } })),
      { env: 'arm-reach', dt: 0.1 },
    );
    const steps = r.demos.reduce((s, d) => s + d.actions.length, 0);
    const seconds = (performance.now() - t0) / 1000;
    emit(json, { event: 'collect', env: 'arm-reach', policy: checkpoint, rollouts: r.rollouts, policySuccessRate: r.rolloutSuccesses / r.rollouts, queried: r.queried, failed: r.failed, corrections: r.demos.length, steps, out, seconds },
      `policy ${checkpoint}: ${r.rolloutSuccesses}/${r.rollouts} rollouts succeeded; expert asked at ${r.queried} states, ${r.demos.length} corrections (${steps} steps, ${r.failed} states without one); wrote ${out} in ${seconds.toFixed(0)} s`);
  } finally {
    e.close();
    expertEnv.close();
    policy.dispose();
  }
  return 0;
}

async function loadDemos(env: string, data: string | undefined, zarr: string | undefined): Promise<Demo[]> {
  return (await loadDemosWithOptions(env, data, zarr)).demos;
}

/**
 * Demonstrations and the environment options they were recorded under (arm-reach episodes
 * carry their action mode in their metadata; every file must agree).
 */
async function loadDemosWithOptions(env: string, data: string | undefined, zarr: string | undefined): Promise<{ demos: Demo[]; envOptions?: Record<string, string> }> {
  if (data) {
    const files = data.split(',').filter((f) => f.length > 0);
    if (files.length === 0) throw new UsageError('--data: expected one or more comma-separated MCAP files');
    const demos: Demo[] = [];
    let actionMode: string | undefined;
    for (const file of files) {
      const eps = await readEpisodesMcap(file);
      const mismatched = eps.find((e) => e.env !== env);
      if (mismatched) throw new UsageError(`--data: ${file} holds '${mismatched.env}' episodes, not '${env}'`);
      for (const e of eps) {
        // Episodes recorded before action modes were stored are velocity episodes.
        const mode = env === 'arm-reach' ? (e.metadata?.actionMode ?? 'velocity') : undefined;
        if (actionMode !== undefined && mode !== actionMode) throw new UsageError(`--data: ${file} mixes ${mode} and ${actionMode} action episodes; train on one action mode`);
        actionMode = mode;
        // Episodes may carry a final observation without an action; windows need pairs.
        demos.push({ observations: e.observations.slice(0, e.actions.length), actions: e.actions });
      }
    }
    return { demos, envOptions: actionMode === 'position' ? { actionMode } : undefined };
  }
  if (env !== 'pusht') throw new UsageError(`--data FILE.mcap is required for ${env} (create it with 'scoreflow robot collect')`);
  return { demos: await loadPushtDemos(zarr ?? DEFAULT_PUSHT_ZARR) };
}

async function robotTrain(argv: string[]): Promise<number> {
  const o = parse(
    argv,
    {
      env: { type: 'string' }, data: { type: 'string' }, zarr: { type: 'string' }, steps: { type: 'string' }, batch: { type: 'string' }, lr: { type: 'string' },
      channels: { type: 'string' }, objective: { type: 'string' }, path: { type: 'string' }, seed: { type: 'string' }, out: { type: 'string' }, json: { type: 'boolean' },
      'sampling-steps': { type: 'string' }, resume: { type: 'string' }, init: { type: 'string' }, prediction: { type: 'string' }, workers: { type: 'string' },
    },
    USAGE,
  );
  const env = choiceOpt(o.env, 'env', ENV_NAMES, 'pusht');
  if (typeof o.init === 'string' && typeof o.resume === 'string') throw new UsageError('--init and --resume: pass one (--resume continues a run on its data, --init fine-tunes trained weights on any data)');
  if (typeof o.init === 'string') {
    for (const k of ['channels', 'objective', 'path', 'prediction'] as const) {
      if (o[k] !== undefined) throw new UsageError(`--${k}: a fine-tuned policy keeps the network of its --init checkpoint`);
    }
  }
  const json = Boolean(o.json);
  await setBackend('auto');
  const { demos, envOptions } = await loadDemosWithOptions(env, typeof o.data === 'string' ? o.data : undefined, typeof o.zarr === 'string' ? o.zarr : undefined);
  const channels = typeof o.channels === 'string' ? o.channels.split(',').map((c) => intOpt(c, 'channels', 0, 1)) : [...DEFAULT_POLICY.channels];
  const objective = choiceOpt(o.objective, 'objective', ['denoising', 'flow-matching'] as const, 'denoising');
  if (objective === 'flow-matching' && o.prediction !== undefined) throw new UsageError('--prediction: flow matching always predicts the velocity');
  const prediction = objective === 'flow-matching' ? 'velocity' : choiceOpt(o.prediction, 'prediction', ['eps', 'x0', 'v'] as const, DEFAULT_POLICY.prediction as 'x0');
  const cfg: DiffusionPolicyConfig = {
    ...DEFAULT_POLICY,
    env,
    obsDim: demos[0].observations[0].length,
    actionDim: demos[0].actions[0].length,
    channels,
    objective,
    path: choiceOpt(o.path, 'path', PATH_KINDS, objective === 'flow-matching' ? 'rectified-flow' : DEFAULT_POLICY.path),
    prediction,
    sampler: objective === 'flow-matching' ? 'flow-euler' : DEFAULT_POLICY.sampler,
    samplingSteps: intOpt(o['sampling-steps'], 'sampling-steps', DEFAULT_POLICY.samplingSteps, 1),
    ...(envOptions ? { envOptions } : {}),
  };
  const steps = intOpt(o.steps, 'steps', 20000, 1);
  const initFrom = typeof o.init === 'string' ? DiffusionPolicy.load(o.init, { env }) : undefined;
  const trainCfg: DiffusionPolicyConfig = initFrom ? { ...initFrom.config, sampler: cfg.sampler, samplingSteps: cfg.samplingSteps } : cfg;
  if (initFrom && env === 'arm-reach' && armActionMode(initFrom.config) !== armActionMode({ envOptions })) {
    throw new UsageError(`--init: ${String(o.init)} acts with ${armActionMode(initFrom.config)} actions, the data has ${armActionMode({ envOptions })} actions`);
  }
  if (initFrom && (trainCfg.obsDim !== cfg.obsDim || trainCfg.actionDim !== cfg.actionDim)) {
    throw new UsageError(`--init: ${String(o.init)} expects observations of ${trainCfg.obsDim} and actions of ${trainCfg.actionDim} numbers; the data has ${cfg.obsDim} and ${cfg.actionDim}`);
  }
  const workers = intOpt(o.workers, 'workers', 1, 1);
  if (workers > 16) throw new UsageError(`--workers: expected 1..16 threads, received ${workers}`);
  if (workers > 1 && (currentBackend()?.threads ?? 1) > 1) {
    throw new UsageError(`--workers ${workers}: each worker runs a one-thread WASM backend; unset SCOREFLOW_WASM_THREADS (the main thread has ${currentBackend()?.threads} threads)`);
  }
  const run = policyTrainer(demos, trainCfg, { steps, batchSize: intOpt(o.batch, 'batch', 256, 1), lr: numOpt(o.lr, 'lr', 1e-3), seed: intOpt(o.seed, 'seed', 0), resumeFrom: typeof o.resume === 'string' ? o.resume : undefined, initFrom });
  const out = prepareOutputDir(typeof o.out === 'string' ? o.out : `runs/policy-${env}`, '--out');
  const t0 = performance.now();
  let lastSave = performance.now();
  try {
    if (workers > 1) await run.startWorkers(workers - 1);
    emit(json, { event: 'start', env, episodes: demos.length, windows: run.windows, params: run.trainer.params.size(), steps, workers }, `training ${env} policy on ${demos.length} episodes (${run.windows} windows), ${run.trainer.params.size()} parameters, ${steps} steps${workers > 1 ? `, batch split across ${workers} threads` : ''}`);
    const bar = progressSink({ json, label: `train ${env}` });
    await lastValueFrom(
      run.trainer.fit().pipe(
        tap((p) => {
          bar.update({ step: p.step, loss: p.loss, lr: p.lr, 'samples/s': p.samplesPerSec }, p.step / p.steps);
          if (performance.now() - lastSave > 120_000) {
            lastSave = performance.now();
            void run.save(out, { trainSeconds: (performance.now() - t0) / 1000 });
          }
        }),
      ),
      { defaultValue: undefined },
    );
    bar.done();
    const seconds = (performance.now() - t0) / 1000;
    await run.save(out, { trainSeconds: seconds, command: `scoreflow robot ${argv.join(' ')}` });
    emit(json, { event: 'done', checkpoint: out, seconds, loss: run.trainer.lastLoss }, `trained in ${seconds.toFixed(0)} s, final loss ${run.trainer.lastLoss.toFixed(4)}; checkpoint ${out}`);
  } finally {
    await run.trainer.stopReplicas();
    run.dispose();
  }
  return 0;
}

async function robotEval(argv: string[]): Promise<number> {
  const o = parse(
    argv,
    {
      env: { type: 'string' }, checkpoint: { type: 'string' }, episodes: { type: 'string' }, seed: { type: 'string' },
      'novel-obstacles': { type: 'string' }, sampler: { type: 'string' }, steps: { type: 'string' }, candidates: { type: 'string' }, json: { type: 'boolean' },
      'pin-executed': { type: 'boolean' }, 'per-episode': { type: 'boolean' }, temperature: { type: 'string' }, 'action-horizon': { type: 'string' },
      'replan-clearance': { type: 'string' }, 'replan-lookahead': { type: 'string' },
      ...GUIDE_ARG_OPTIONS,
    },
    USAGE,
  );
  const envName = choiceOpt(o.env, 'env', ENV_NAMES, 'pusht');
  if (o.checkpoint !== undefined && typeof o.checkpoint !== 'string') throw new UsageError('--checkpoint: expected a directory');
  // Without --checkpoint: the policy shipped for the environment (models/<env>-policy).
  const checkpoint = typeof o.checkpoint === 'string' ? o.checkpoint : shippedPolicyDir(envName);
  const json = Boolean(o.json);
  const replanArg = replanClearanceOpt(o['replan-clearance'], envName);
  await setBackend('auto');
  const policy = DiffusionPolicy.load(checkpoint, { env: envName });
  const env = await envForPolicy(policy.config);
  // The policy's stored early replanning (arm-reach) unless --replan-clearance says otherwise.
  const replanClearance = replanArg === null ? undefined : (replanArg ?? policy.config.replanClearance);
  if (o['replan-lookahead'] !== undefined && replanClearance === undefined) throw new UsageError('--replan-lookahead: only with --replan-clearance');
  const replanLookahead = intOpt(o['replan-lookahead'], 'replan-lookahead', 2, 1);
  const novel = intOpt(o['novel-obstacles'], 'novel-obstacles', 0, 0);
  const guideArgs = guidanceFromArgs(o);
  // Bad options fail before the first episode; the forbidden circles are drawn per episode.
  const guidance = guideArgs ? checkGuidanceConfig(guideArgs, policy.config, { constraintsLater: true }) : undefined;
  const guidanceFor = guidance ? (constraints: readonly Circle[]): readonly CostTerm[] => guidancePredictOptions(guidance, policy.config, constraints).guidance! : undefined;
  const episodes = intOpt(o.episodes, 'episodes', 50, 1);
  const temperature = temperatureOpt(o.temperature) ?? policy.config.temperature ?? 1;
  const maxTa = policy.config.predHorizon - policy.config.obsHorizon + 1;
  const actionHorizon = o['action-horizon'] === undefined ? undefined : intOpt(o['action-horizon'], 'action-horizon', policy.config.actionHorizon, 1);
  if (actionHorizon !== undefined && actionHorizon > maxTa) throw new UsageError(`--action-horizon: at most Tp - To + 1 = ${maxTa} for this policy, received ${actionHorizon}`);
  const bar = progressSink({ json: false, label: `eval ${envName}` });
  try {
    const report = evaluatePolicy(env, policy, {
      episodes,
      seed: intOpt(o.seed, 'seed', 0),
      novel,
      guidanceFor,
      sampler: o.sampler === undefined ? undefined : choiceOpt(o.sampler, 'sampler', SAMPLER_NAMES, 'ddim'),
      steps: o.steps === undefined ? undefined : intOpt(o.steps, 'steps', 10, 1),
      candidates: intOpt(o.candidates, 'candidates', 1, 1),
      pinExecuted: o['pin-executed'] ? 1 : 0,
      temperature,
      actionHorizon,
      replanWhen: replanClearance === undefined || envName !== 'arm-reach' ? undefined : armReachReplanCheck(env as ArmReachEnv, { clearance: replanClearance, lookahead: replanLookahead }),
      replanFor: replanClearance === undefined || envName !== 'pusht' ? undefined : (circles) => pushtReplanCheck(circles, { margin: replanClearance, lookahead: replanLookahead }),
      onEpisode: (i, s) => bar.update({ success: s.success ? 1 : 0 }, (i + 1) / episodes),
    });
    bar.done();
    const { perEpisode, ...summary } = report;
    const full = { event: 'eval', checkpoint, guide: guidance?.spec ?? null, ...(guidance ? { guideMode: guidance.mode ?? 'gradient', guideIterations: guidance.iterations, guideMaxStep: guidance.maxStep, guideSubsteps: guidance.substeps, guideMargin: guidance.margin, guideRegionModel: guidance.regionModel } : {}), novel, temperature, actionHorizon: actionHorizon ?? policy.config.actionHorizon, ...(replanClearance !== undefined ? { replanClearance, replanLookahead } : {}), ...summary, ...(o['per-episode'] ? { perEpisode } : {}) };
    emit(json, full, JSON.stringify(full, null, 2));
  } finally {
    env.close();
    policy.dispose();
  }
  return 0;
}

async function robotDistill(argv: string[]): Promise<number> {
  const o = parse(
    argv,
    { env: { type: 'string' }, teacher: { type: 'string' }, data: { type: 'string' }, zarr: { type: 'string' }, steps: { type: 'string' }, batch: { type: 'string' }, lr: { type: 'string' }, seed: { type: 'string' }, 'sigma-data': { type: 'string' }, method: { type: 'string' }, 'student-steps': { type: 'string' }, pairs: { type: 'string' }, out: { type: 'string' }, json: { type: 'boolean' } },
    USAGE,
  );
  const method = choiceOpt(o.method, 'method', ['consistency', 'reflow'] as const, 'consistency');
  if (method === 'reflow' && o['sigma-data'] !== undefined) throw new UsageError('--sigma-data applies to --method consistency only');
  if (method === 'consistency' && (o['student-steps'] !== undefined || o.pairs !== undefined)) throw new UsageError('--student-steps and --pairs apply to --method reflow only');
  const env = choiceOpt(o.env, 'env', ENV_NAMES, 'pusht');
  const sigmaData = numOpt(o['sigma-data'], 'sigma-data', DEFAULT_DISTILL_SIGMA_DATA);
  if (!(sigmaData > 0)) throw new UsageError(`--sigma-data: expected a positive number, received '${String(o['sigma-data'])}'`);
  if (typeof o.teacher !== 'string') throw new UsageError('--teacher DIR (a trained policy checkpoint) is required');
  const json = Boolean(o.json);
  await setBackend('auto');
  const teacher = DiffusionPolicy.load(o.teacher, { env });
  const demos = await loadDemos(env, typeof o.data === 'string' ? o.data : undefined, typeof o.zarr === 'string' ? o.zarr : undefined);
  const steps = intOpt(o.steps, 'steps', 2000, 1);
  const seed = intOpt(o.seed, 'seed', 0);
  let d: { trainer: Trainer; student: () => DiffusionPolicy; dispose: () => void };
  if (method === 'reflow') {
    const pairs = intOpt(o.pairs, 'pairs', 1, 1);
    const studentSteps = intOpt(o['student-steps'], 'student-steps', 1, 1);
    const pbar = progressSink({ json, label: `reflow pairs ${env}` });
    const t = performance.now();
    const r = policyReflow(teacher, demos, { steps, batchSize: intOpt(o.batch, 'batch', 128, 1), lr: numOpt(o.lr, 'lr', 1e-4), seed, pairsPerWindow: pairs, studentSteps, onPairs: (done, total) => pbar.update({ windows: done }, done / total) });
    pbar.done();
    emit(json, { event: 'pairs', pairs: r.pairs, seconds: (performance.now() - t) / 1000 }, `${r.pairs} (noise, chunk) pairs from the teacher in ${((performance.now() - t) / 1000).toFixed(0)} s`);
    d = r;
  } else {
    d = policyDistiller(teacher, demos, { steps, batchSize: intOpt(o.batch, 'batch', 64, 1), lr: numOpt(o.lr, 'lr', 2e-4), seed, sigmaData });
  }
  const out = prepareOutputDir(typeof o.out === 'string' ? o.out : `runs/policy-${env}-${method === 'reflow' ? 'reflow' : 'cd'}`, '--out');
  const bar = progressSink({ json, label: `distill ${env}` });
  const t0 = performance.now();
  let lastSave = performance.now();
  const saveStudent = async (extra: Record<string, unknown>): Promise<void> => {
    const student = d.student();
    await student.save(out, { teacher: o.teacher, ...extra });
    student.dispose();
  };
  try {
    await lastValueFrom(
      d.trainer.fit().pipe(
        tap((p) => {
          bar.update({ step: p.step, loss: p.loss, 'samples/s': p.samplesPerSec }, p.step / p.steps);
          if (performance.now() - lastSave > 120_000) {
            lastSave = performance.now();
            void saveStudent({ distillSteps: p.step });
          }
        }),
      ),
      { defaultValue: undefined },
    );
    bar.done();
    const seconds = (performance.now() - t0) / 1000;
    await saveStudent({ distillSteps: steps, distillSeconds: seconds, command: `scoreflow robot distill ${argv.join(' ')}` });
    emit(json, { event: 'done', method, checkpoint: out, seconds, loss: d.trainer.lastLoss }, `distilled (${method}) in ${seconds.toFixed(0)} s, final loss ${d.trainer.lastLoss.toFixed(5)}; few-step policy ${out}`);
  } finally {
    d.dispose();
    teacher.dispose();
  }
  return 0;
}

/** `--temperature X` (scale of the starting noise, >= 0), or undefined when not given. */
function temperatureOpt(v: string | boolean | undefined): number | undefined {
  if (v === undefined) return undefined;
  const t = numOpt(v, 'temperature', 1);
  if (t < 0) throw new UsageError(`--temperature: expected a number >= 0, received '${String(v)}'`);
  return t;
}

async function robotExport(argv: string[]): Promise<number> {
  const o = parse(
    argv,
    { env: { type: 'string' }, checkpoint: { type: 'string' }, out: { type: 'string' }, temperature: { type: 'string' }, 'action-horizon': { type: 'string' }, 'replan-clearance': { type: 'string' }, json: { type: 'boolean' } },
    USAGE,
  );
  const env = choiceOpt(o.env, 'env', ENV_NAMES, 'pusht');
  if (typeof o.checkpoint !== 'string' || typeof o.out !== 'string') throw new UsageError('--checkpoint DIR and --out DIR are required');
  const temperature = temperatureOpt(o.temperature);
  const actionHorizon = o['action-horizon'] === undefined ? undefined : intOpt(o['action-horizon'], 'action-horizon', 8, 1);
  const replanClearance = replanClearanceOpt(o['replan-clearance'], env);
  if (replanClearance !== undefined && replanClearance !== null && env !== 'arm-reach') throw new UsageError(`--replan-clearance: only arm-reach policies store one (Push-T's forbidden circles are given per run: 'robot eval --replan-clearance')`);
  await setBackend('auto');
  let policy: DiffusionPolicy;
  try {
    policy = DiffusionPolicy.load(o.checkpoint, { env, sampling: { temperature, actionHorizon, replanClearance } });
  } catch (err) {
    // The loaded config is validated: a Ta beyond Tp - To + 1 is named there.
    if (actionHorizon !== undefined && err instanceof Error && err.message.includes('policy.actionHorizon')) throw new UsageError(`--action-horizon: ${err.message}`);
    throw err;
  }
  await policy.save(o.out, { exportedFrom: o.checkpoint });
  policy.dispose();
  emit(Boolean(o.json), { event: 'export', from: o.checkpoint, out: o.out }, `exported ${o.checkpoint} (EMA weights) to ${o.out}`);
  return 0;
}
