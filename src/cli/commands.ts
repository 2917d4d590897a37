/** Command implementations of `scoreflow doctor | toy | tour`. */
import { tourStages } from './tour.js';
import { lastValueFrom, tap } from 'rxjs';
import { setBackend, type BackendName } from '../backend/backend.js';
import { GRID_KINDS } from '../grid/grid.js';
import { PATH_KINDS } from '../path/index.js';
import { PREDICTIONS } from '../predict/convert.js';
import { SAMPLER_NAMES } from '../sample/registry.js';
import { WEIGHTINGS } from '../loss/weighting.js';
import { sampleToy, TOY_DEFAULTS, TOY_LOSSES, toyTrainer, type ToyMetrics } from '../toy/toyModel.js';
import { choiceOpt, intOpt, numOpt, parse } from './args.js';
import { doctor } from './doctor.js';
import { progressSink } from './progress.js';
import { prepareOutputDir } from '../util/output.js';

const BACKENDS: readonly BackendName[] = ['auto', 'wasm', 'cpu', 'tensorflow'];

function out(json: boolean, obj: Record<string, unknown>, text: string): void {
  process.stdout.write(json ? JSON.stringify(obj) + '\n' : text + '\n');
}

export async function runDoctor(argv: string[]): Promise<number> {
  const usage = 'usage: scoreflow doctor [--json] [--backend auto|wasm|cpu|tensorflow]';
  const o = parse(argv, { json: { type: 'boolean' }, backend: { type: 'string' }, help: { type: 'boolean' } }, usage);
  if (o.help) return (process.stdout.write(usage + '\n'), 0);
  const info = await doctor({ json: Boolean(o.json), backend: choiceOpt(o.backend, 'backend', BACKENDS, 'auto') });
  if (o.json) process.stdout.write(JSON.stringify(info) + '\n');
  else for (const [k, v] of Object.entries(info)) process.stdout.write(`${k.padEnd(11)} ${typeof v === 'object' ? JSON.stringify(v) : String(v)}\n`);
  return 0;
}

const TOY_TRAIN_USAGE = `usage: scoreflow toy train [options]
  --path ${PATH_KINDS.join('|')}   (default ${TOY_DEFAULTS.path})
  --prediction ${PREDICTIONS.join('|')}          (default ${TOY_DEFAULTS.prediction})
  --precond none|edm                               (default none)
  --loss ${TOY_LOSSES.join('|')}            (default ${TOY_DEFAULTS.loss})
  --weighting ${WEIGHTINGS.join('|')}              (denoising loss only; default none)
  --steps N --batch N --width N --depth N --lr X --seed N
  --out DIR        checkpoint directory (default runs/toy)
  --json           JSON lines instead of a progress bar`;

const TOY_SAMPLE_USAGE = `usage: scoreflow toy sample --checkpoint DIR [options]
  --sampler ${SAMPLER_NAMES.join('|')}
  --steps N  --grid ${GRID_KINDS.join('|')}  --n N  --seed N  --json`;

export async function runToy(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === 'train') return toyTrain(rest);
  if (sub === 'sample') return toySample(rest);
  process.stdout.write(`${TOY_TRAIN_USAGE}\n\n${TOY_SAMPLE_USAGE}\n`);
  return sub === '--help' || sub === 'help' ? 0 : 2;
}

async function toyTrain(argv: string[]): Promise<number> {
  const o = parse(
    argv,
    {
      path: { type: 'string' }, prediction: { type: 'string' }, precond: { type: 'string' }, loss: { type: 'string' }, weighting: { type: 'string' },
      steps: { type: 'string' }, batch: { type: 'string' }, width: { type: 'string' }, depth: { type: 'string' }, lr: { type: 'string' },
      seed: { type: 'string' }, out: { type: 'string' }, json: { type: 'boolean' }, backend: { type: 'string' }, help: { type: 'boolean' },
    },
    TOY_TRAIN_USAGE,
  );
  if (o.help) return (process.stdout.write(TOY_TRAIN_USAGE + '\n'), 0);
  const json = Boolean(o.json);
  await setBackend(choiceOpt(o.backend, 'backend', BACKENDS, 'auto'));
  const run = toyTrainer({
    path: choiceOpt(o.path, 'path', PATH_KINDS, TOY_DEFAULTS.path),
    prediction: choiceOpt(o.prediction, 'prediction', PREDICTIONS, TOY_DEFAULTS.prediction),
    precond: choiceOpt(o.precond, 'precond', ['none', 'edm'] as const, 'none'),
    loss: choiceOpt(o.loss, 'loss', TOY_LOSSES, TOY_DEFAULTS.loss),
    weighting: choiceOpt(o.weighting, 'weighting', WEIGHTINGS, 'none'),
    steps: intOpt(o.steps, 'steps', TOY_DEFAULTS.steps, 1),
    batchSize: intOpt(o.batch, 'batch', TOY_DEFAULTS.batchSize, 1),
    width: intOpt(o.width, 'width', TOY_DEFAULTS.width, 1),
    depth: intOpt(o.depth, 'depth', TOY_DEFAULTS.depth, 0),
    lr: numOpt(o.lr, 'lr', TOY_DEFAULTS.lr),
    seed: intOpt(o.seed, 'seed', TOY_DEFAULTS.seed),
  });
  const dir = prepareOutputDir(typeof o.out === 'string' ? o.out : 'runs/toy', '--out');
  const bar = progressSink({ json, label: 'toy train' });
  const t0 = performance.now();
  try {
    await lastValueFrom(run.progress.pipe(tap((p) => bar.update({ step: p.step, loss: p.loss, lr: p.lr, 'samples/s': p.samplesPerSec }, p.step / p.steps))), { defaultValue: undefined });
    bar.done();
    await run.save(dir);
    const seconds = (performance.now() - t0) / 1000;
    out(json, { event: 'done', checkpoint: dir, steps: run.trainer.step, loss: run.trainer.lastLoss, seconds }, `trained ${run.trainer.step} steps in ${seconds.toFixed(1)} s, final loss ${run.trainer.lastLoss.toFixed(4)}; checkpoint written to ${dir}`);
  } finally {
    run.dispose();
  }
  return 0;
}

function formatMetrics(m: ToyMetrics): string {
  return `${m.sampler.padEnd(17)} steps=${String(m.steps).padStart(3)}  SW=${m.slicedWasserstein.toFixed(4)} (floor ${m.slicedWassersteinFloor.toFixed(4)})  modes=${(m.modeCoverage * 8).toFixed(0)}/8  off-mode=${(m.offModeFraction * 100).toFixed(1)}%  ${m.ms.toFixed(0)} ms`;
}

async function toySample(argv: string[]): Promise<number> {
  const o = parse(
    argv,
    { checkpoint: { type: 'string' }, sampler: { type: 'string' }, steps: { type: 'string' }, grid: { type: 'string' }, n: { type: 'string' }, seed: { type: 'string' }, json: { type: 'boolean' }, backend: { type: 'string' }, help: { type: 'boolean' } },
    TOY_SAMPLE_USAGE,
  );
  if (o.help) return (process.stdout.write(TOY_SAMPLE_USAGE + '\n'), 0);
  if (typeof o.checkpoint !== 'string') {
    process.stderr.write(`scoreflow: --checkpoint is required\n${TOY_SAMPLE_USAGE}\n`);
    return 2;
  }
  await setBackend(choiceOpt(o.backend, 'backend', BACKENDS, 'auto'));
  const m = sampleToy(o.checkpoint, {
    sampler: choiceOpt(o.sampler, 'sampler', SAMPLER_NAMES, 'dpmpp-2m'),
    steps: intOpt(o.steps, 'steps', 20, 1),
    grid: choiceOpt(o.grid, 'grid', GRID_KINDS, 'uniform'),
    n: intOpt(o.n, 'n', 4096, 1),
    seed: intOpt(o.seed, 'seed', 123),
  });
  const { samples: _s, ...rest } = m;
  void _s;
  out(Boolean(o.json), { event: 'metrics', ...rest }, formatMetrics(m));
  return 0;
}

/** The main job on embedded defaults: environment check, toy training, sampling with several samplers. */
export async function runTour(argv: string[]): Promise<number> {
  const usage = 'usage: scoreflow tour [--json] [--steps N] [--out DIR]';
  const o = parse(argv, { json: { type: 'boolean' }, steps: { type: 'string' }, out: { type: 'string' }, help: { type: 'boolean' } }, usage);
  if (o.help) return (process.stdout.write(usage + '\n'), 0);
  const json = Boolean(o.json);
  const info = await doctor({ json, backend: 'auto' });
  out(json, { event: 'backend', backend: info.backend, reason: info.reason }, `backend: ${String(info.backend)} (${String(info.reason)})`);
  const dir = typeof o.out === 'string' ? o.out : 'runs/tour-toy';
  await toyTrain(['--steps', String(intOpt(o.steps, 'steps', TOY_DEFAULTS.steps, 1)), '--out', dir, ...(json ? ['--json'] : [])]);
  for (const [sampler, steps] of [['flow-euler', 20], ['flow-rk4', 5], ['dpmpp-2m', 10], ['heun', 10], ['ddim', 20], ['euler-maruyama', 100]] as const) {
    const m = sampleToy(dir, { sampler, steps, n: 4096, grid: sampler === 'heun' ? 'karras' : 'uniform' });
    const { samples: _s, ...rest } = m;
    void _s;
    out(json, { event: 'metrics', ...rest }, formatMetrics(m));
  }
  for (const stage of tourStages()) {
    out(json, { event: 'stage', name: stage.name }, `\n== ${stage.name}`);
    await stage.run({ json });
  }
  return 0;
}
