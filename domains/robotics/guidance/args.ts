/** The `--guide*` command-line options shared by `robot eval`, `robot serve` and `robot bridge`. */
import { intOpt, numOpt, choiceOpt, type OptionSpec } from '../../../src/cli/args.js';
import { UsageError } from '../../../src/cli/errors.js';
import { GUIDE_MODES } from '../policy/policy.js';
import type { Circle } from './costs.js';
import type { GuidanceConfig } from './config.js';

export const GUIDE_ARG_OPTIONS: OptionSpec = {
  guide: { type: 'string' },
  'guide-mode': { type: 'string' },
  'guide-iterations': { type: 'string' },
  'guide-max-step': { type: 'string' },
  'guide-substeps': { type: 'string' },
  'guide-margin': { type: 'string' },
  'guide-region-model': { type: 'string' },
};

export const GUIDE_ARG_USAGE = `[--guide-mode gradient|projection] [--guide-iterations K] [--guide-max-step X] [--guide-substeps S]
          [--guide-margin M (clearance kept by 'region' in px, default 20, or 'obstacle' in m, default 0.03)]
          [--guide-region-model targets|path (Push-T 'region': keep the targets or the agent's PD path out)]`;

type Args = Record<string, string | boolean | undefined>;

/**
 * The guidance setting the `--guide*` options describe (undefined without `--guide`); the
 * spec itself is checked against a policy later (checkGuidanceConfig). Options that need
 * `--guide` fail without it.
 */
export function guidanceFromArgs(o: Args, extra: { candidates?: number; constraints?: readonly Circle[] } = {}): GuidanceConfig | undefined {
  const spec = typeof o.guide === 'string' ? o.guide : undefined;
  if (o.guide === true) throw new UsageError('--guide: expected a spec such as obstacle:1');
  const mode = o['guide-mode'] === undefined ? undefined : choiceOpt(o['guide-mode'], 'guide-mode', GUIDE_MODES, 'gradient');
  const iterations = o['guide-iterations'] === undefined ? undefined : intOpt(o['guide-iterations'], 'guide-iterations', 3, 1);
  const maxStep = o['guide-max-step'] === undefined ? undefined : numOpt(o['guide-max-step'], 'guide-max-step', 1);
  if (maxStep !== undefined && !(maxStep > 0)) throw new UsageError(`--guide-max-step: expected a number > 0, received '${String(o['guide-max-step'])}'`);
  const substeps = o['guide-substeps'] === undefined ? undefined : intOpt(o['guide-substeps'], 'guide-substeps', 1, 1);
  const margin = o['guide-margin'] === undefined ? undefined : numOpt(o['guide-margin'], 'guide-margin', 0);
  if (margin !== undefined && !(margin >= 0)) throw new UsageError(`--guide-margin: expected a number >= 0, received '${String(o['guide-margin'])}'`);
  const regionModel = o['guide-region-model'] === undefined ? undefined : choiceOpt(o['guide-region-model'], 'guide-region-model', ['targets', 'path'] as const, 'targets');
  if (!spec) {
    if ((mode ?? iterations ?? maxStep ?? substeps ?? margin ?? regionModel) !== undefined) throw new UsageError('--guide-mode, --guide-iterations, --guide-max-step, --guide-substeps, --guide-margin and --guide-region-model need --guide');
    return undefined;
  }
  const defined = Object.entries({ mode, iterations, maxStep, substeps, margin, regionModel, ...extra }).filter(([, v]) => v !== undefined);
  return { spec, ...Object.fromEntries(defined) } as GuidanceConfig;
}

/** `--guide-regions 'x,y,r;x,y,r'`: circles in the environment's units (Push-T px, arm-reach m). */
export function circlesArg(v: string | boolean | undefined, name: string): Circle[] | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v.trim() === '') throw new UsageError(`--${name}: expected circles as 'x,y,r;x,y,r', received '${String(v)}'`);
  return v.split(';').map((part, i) => {
    const nums = part.split(',').map((s) => Number(s.trim()));
    if (nums.length !== 3 || nums.some((n, k) => !Number.isFinite(n) || part.split(',')[k]!.trim() === '')) {
      throw new UsageError(`--${name}: circle ${i + 1} '${part}' must be three numbers x,y,r`);
    }
    if (!(nums[2]! > 0)) throw new UsageError(`--${name}: circle ${i + 1} '${part}' needs a radius > 0`);
    return { x: nums[0]!, y: nums[1]!, r: nums[2]! };
  });
}
