export * from './params.js';
export * from './layers.js';
export * from './embedding.js';
export * from './blocks.js';
export * from './mlp.js';
