/** Guidance: composable `Denoiser -> Denoiser` terms and projection hooks. */
export * from './types.js';
export * from './schedule.js';
export { classifierFree, dropCondition, type ClassifierFreeOptions } from './classifierFree.js';
export {
  gradientGuidance,
  clipPerSample,
  GUIDANCE_TARGETS,
  type GradientGuidanceOptions,
  type GuidanceObjective,
  type GuidanceTarget,
} from './gradient.js';
export { inpaint, type InpaintOptions, type Inpainting, type ReconstructionOptions } from './inpaint.js';
export { guide, composeProjections } from './compose.js';
export { projectionGuidance, type ProjectionGuidanceOptions } from './projection.js';
