export * from './convert.js';
export * from './coefs.js';
