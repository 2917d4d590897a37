/** No sampler or guidance term leaves tensors behind: tf.memory().numTensors is unchanged after a run. */
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { gaussianDenoiser, type Denoiser } from '../../src/denoiser/index.js';
import { classifierFree, composeProjections, dropCondition, gradientGuidance, guide, inpaint } from '../../src/guide/index.js';
import { pathFromSpec } from '../../src/path/index.js';
import { Rng } from '../../src/rng/rng.js';
import { sample, SAMPLER_NAMES, type SamplerName, type StepInfo } from '../../src/sample/index.js';

const SPEC = { mean: [1, -0.5], cov: [[1, 0.6], [0.6, 0.8]] };
const STEPS = 100;

function tensorsAfterRun(run: () => tf.Tensor): { before: number; after: number } {
  const before = tf.memory().numTensors;
  const out = run();
  out.dataSync();
  out.dispose();
  return { before, after: tf.memory().numTensors };
}

describe.each(['vp-linear'] as const)('no leaks on %s', (kind) => {
  const path = pathFromSpec(kind);
  const den = gaussianDenoiser(SPEC, path);

  it.each(SAMPLER_NAMES)(`%s: ${STEPS} steps with a projection and a step callback`, (name: SamplerName) => {
    let steps = 0;
    const { before, after } = tensorsAfterRun(() =>
      sample({
        denoiser: den,
        path,
        shape: [16, 2],
        sampler: name,
        grid: { kind: 'uniform', steps: STEPS },
        rng: new Rng(1),
        churn: name === 'heun' || name === 'euler' ? { amount: 5 } : undefined,
        eta: name === 'ddim' ? 0.5 : undefined,
        project: (x) => tf.clipByValue(x, -100, 100),
        onStep: (info: StepInfo) => {
          steps++;
          expect(info.x.isDisposed).toBe(false);
        },
      }),
    );
    expect(steps).toBe(name === 'consistency-1step' ? 1 : STEPS);
    expect(after).toBe(before);
  });
});

describe('no leaks with guidance', () => {
  const path = pathFromSpec('vp-linear');
  const den = gaussianDenoiser(SPEC, path);
  const c = tf.tensor1d([2, 1]);
  const reward = (x: tf.Tensor): tf.Tensor => tf.neg(tf.sum(tf.square(tf.sub(x, c)), 1));
  const known = tf.tensor1d([2, 0]);
  const mask = tf.tensor1d([1, 0]);

  const terms: Record<string, () => { den: Denoiser; project?: (x: tf.Tensor, t: number) => tf.Tensor }> = {
    'classifier-free': () => ({ den: classifierFree({ cond: den, uncond: gaussianDenoiser({ mean: [0, 0], cov: [[1, 0], [0, 1]] }, path), scale: 3, schedule: { tStart: 0.9, tEnd: 0.1 } }) }),
    "gradient on 'x0' with clipping": () => ({ den: guide(den, gradientGuidance({ path, fn: reward, on: 'x0', scale: 1, clipNorm: 0.5 })) }),
    "gradient on 'xt' with a schedule function": () => ({ den: guide(den, gradientGuidance({ path, fn: reward, on: 'xt', scale: 0.5, schedule: (t) => 1 - t })) }),
    'inpainting with reconstruction, composed projections, two gradient terms': () => {
      const ip = inpaint({ path, known, mask, rng: new Rng(3), reconstruction: {} });
      return {
        den: guide(den, ip.denoiser, gradientGuidance({ path, fn: reward, on: 'x0', scale: 0.3 }), gradientGuidance({ path, fn: reward, on: 'xt', scale: 0.3 })),
        project: composeProjections(ip.project, (x) => tf.clipByValue(x, -100, 100)),
      };
    },
  };

  it.each(Object.keys(terms))('%s', (label) => {
    for (const sampler of ['dpmpp-2m', 'ddpm'] as SamplerName[]) {
      const { den: guided, project } = terms[label]();
      const { before, after } = tensorsAfterRun(() =>
        sample({ denoiser: guided, path, shape: [16, 2], sampler, grid: { kind: 'uniform', steps: STEPS }, rng: new Rng(2), project }),
      );
      expect(after, `${label} with ${sampler}`).toBe(before);
    }
  });

  it('dropCondition returns exactly one new tensor', () => {
    const cond = tf.ones([8, 3]);
    const before = tf.memory().numTensors;
    const out = dropCondition(cond, 0.5, new Rng(1), tf.scalar(0));
    // The scalar null value above is the caller's, plus the result.
    expect(tf.memory().numTensors).toBe(before + 2);
    tf.dispose([cond, out]);
  });
});
