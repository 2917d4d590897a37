/**
 * A guidance setting as plain data: what `robot eval` and `robot serve` take on their command
 * lines, what a serving worker receives (structured-clone safe) and what `PolicyInfo.guidance`
 * reports to clients. `guidancePredictOptions` turns it into the cost terms and sampling options
 * `DiffusionPolicy.predictChunks` takes, for one policy.
 */
import { checkNumber, checkOneOf, fail } from '../../../src/util/validate.js';
import { armActionMode, armMaxJointSpeed } from '../envs.js';
import type { DiffusionPolicyConfig } from '../policy/config.js';
import { GUIDE_MODES, type CostTerm, type GuideMode, type PredictOptions } from '../policy/policy.js';
import { parseGuideSpec, type CircleLike, type GuideSpecOptions } from './costs.js';

export interface GuidanceConfig {
  /** Cost terms with scales, e.g. 'obstacle:1,smooth:0.1' (see parseGuideSpec). */
  readonly spec: string;
  /** 'gradient' (default) or 'projection' for the constraint terms. */
  readonly mode?: GuideMode;
  /** Polyak steps per sampler step ('projection' only). */
  readonly iterations?: number;
  /** Cap on each Polyak step's norm in normalised action units ('projection' only). */
  readonly maxStep?: number;
  /** arm-reach 'obstacle': poses checked per control period. */
  readonly substeps?: number;
  /** Clearance kept by 'region' (px, Push-T) or 'obstacle' (m, arm-reach). */
  readonly margin?: number;
  /** Push-T 'region': keep the commanded targets ('targets', default) or the agent's PD path ('path') out. */
  readonly regionModel?: 'targets' | 'path';
  /** Push-T forbidden circles (needed by 'region'); arm-reach obstacles beyond the observed ones. */
  readonly constraints?: readonly CircleLike[];
  /**
   * Candidate chunks per window; the one with the lowest total guidance cost is kept. Candidates
   * need diversity: sample them at temperature 1, not a policy's lowered stored temperature.
   */
  readonly candidates?: number;
}

/** Spec options (everything but the constraints) for a policy's environment. */
function specOptions(cfg: GuidanceConfig, policy: Pick<DiffusionPolicyConfig, 'env' | 'envOptions'>): GuideSpecOptions {
  const margin = cfg.margin === undefined ? {} : policy.env === 'pusht' ? { regionMargin: cfg.margin } : { obstacleMargin: cfg.margin };
  const kin = policy.env === 'arm-reach' ? { actionMode: armActionMode(policy), maxJointSpeed: armMaxJointSpeed(policy) } : {};
  return { mode: cfg.mode, iterations: cfg.iterations, maxStep: cfg.maxStep, substeps: cfg.substeps, regionModel: cfg.regionModel, ...margin, ...kin };
}

/**
 * Check a guidance setting for a policy: field types and ranges, and that its spec parses for
 * the policy's environment with these options (a 'region' term needs constraints unless
 * `constraintsLater`, as in `robot eval`, whose forbidden circles are drawn per episode).
 * Returns a frozen copy.
 */
export function checkGuidanceConfig(cfg: unknown, policy: Pick<DiffusionPolicyConfig, 'env' | 'envOptions'>, opts: { constraintsLater?: boolean } = {}): GuidanceConfig {
  const where = 'guidance';
  if (cfg === null || typeof cfg !== 'object' || Array.isArray(cfg)) fail(`${where}: expected an object with a 'spec' such as 'obstacle:1', received ${cfg === null ? 'null' : typeof cfg}`);
  const c = cfg as Record<string, unknown>;
  const known = new Set(['spec', 'mode', 'iterations', 'maxStep', 'substeps', 'margin', 'regionModel', 'constraints', 'candidates']);
  for (const k of Object.keys(c)) if (!known.has(k)) fail(`${where}: unknown field '${k}' (expected ${[...known].join(', ')})`);
  if (typeof c.spec !== 'string' || c.spec.trim() === '') fail(`${where}: spec must be a non-empty string such as 'obstacle:1,smooth:0.1', received ${JSON.stringify(c.spec)}`);
  const opt = <T>(k: string, check: (v: unknown) => T): T | undefined => (c[k] === undefined ? undefined : check(c[k]));
  const out: GuidanceConfig = {
    spec: c.spec,
    mode: opt('mode', (v) => checkOneOf(`${where}: mode`, v as string, GUIDE_MODES)),
    iterations: opt('iterations', (v) => checkNumber(`${where}: iterations`, v as number, { integer: true, min: 1, max: 100 })),
    maxStep: opt('maxStep', (v) => {
      const x = checkNumber(`${where}: maxStep`, v as number);
      if (!(x > 0)) fail(`${where}: maxStep must be > 0, received ${x}`);
      return x;
    }),
    substeps: opt('substeps', (v) => checkNumber(`${where}: substeps`, v as number, { integer: true, min: 1, max: 64 })),
    margin: opt('margin', (v) => checkNumber(`${where}: margin`, v as number, { min: 0 })),
    regionModel: opt('regionModel', (v) => {
      const m = checkOneOf(`${where}: regionModel`, v as string, ['targets', 'path'] as const);
      if (policy.env !== 'pusht') fail(`${where}: regionModel only applies to env 'pusht', received env '${policy.env}'`);
      return m;
    }),
    constraints: opt('constraints', (v) => {
      if (!Array.isArray(v)) fail(`${where}: constraints must be an array of circles {x, y, r}, received ${typeof v}`);
      return v.map((x) => ({ ...(x as CircleLike) }));
    }),
    candidates: opt('candidates', (v) => checkNumber(`${where}: candidates`, v as number, { integer: true, min: 1, max: 256 })),
  };
  // Parsing builds every term, which checks the spec, the options and the constraints.
  const placeholder = opts.constraintsLater && policy.env === 'pusht' && !out.constraints?.length ? [{ x: 0, y: 0, r: 1 }] : undefined;
  parseGuideSpec(out.spec, policy.env, { constraints: placeholder ?? out.constraints ?? [], ...specOptions(out, policy) });
  return Object.freeze(out);
}

/**
 * Cost terms and sampling options for `predictChunks`. `constraints` replaces the setting's own
 * (e.g. an episode's forbidden circles).
 */
export function guidancePredictOptions(cfg: GuidanceConfig, policy: Pick<DiffusionPolicyConfig, 'env' | 'envOptions'>, constraints?: readonly CircleLike[]): Pick<PredictOptions, 'guidance' | 'candidates'> {
  const terms: CostTerm[] = parseGuideSpec(cfg.spec, policy.env, { constraints: constraints ?? cfg.constraints ?? [], ...specOptions(cfg, policy) });
  return {
    guidance: terms,
    ...(cfg.candidates === undefined ? {} : { candidates: cfg.candidates }),
  };
}

/** One line for logs and `PolicyInfo.guidance`: the setting as JSON, '' when unguided. */
export function describeGuidance(cfg: GuidanceConfig | undefined): string {
  return cfg ? JSON.stringify(cfg) : '';
}
