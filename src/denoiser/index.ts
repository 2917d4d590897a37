export * from './denoiser.js';
export * from './gaussian.js';
