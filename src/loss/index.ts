export * from './weighting.js';
export * from './timeSampling.js';
export * from './denoising.js';
export * from './ot.js';
export * from './coupling.js';
export * from './flowMatching.js';
export * from './consistencyParam.js';
export * from './consistencyLoss.js';
