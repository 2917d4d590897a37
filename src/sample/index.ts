export * from './types.js';
export * from './loop.js';
export { ddim, ddpm } from './ancestral.js';
export { dpmSolverPlusPlus2M } from './dpmSolver.js';
export { eulerEdm, heunEdm, churn } from './karras.js';
export { eulerMaruyama } from './sde.js';
export { flowEuler, flowMidpoint, flowRk4 } from './flowOde.js';
export { consistencyMultistep, consistencyOneStep } from './consistency.js';
export * from './registry.js';
