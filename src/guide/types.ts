import type { Denoiser } from '../denoiser/denoiser.js';

/** A guidance term: wraps a denoiser into a guided one. Terms compose (see `guide`). */
export type DenoiserWrapper = (den: Denoiser) => Denoiser;
