import { afterEach, beforeAll } from 'vitest';
import { setBackend } from '../src/backend/backend.js';

// Every suite runs on the embedded default backend (WASM), as users do.
beforeAll(async () => {
  await setBackend(process.env.SCOREFLOW_BACKEND === 'cpu' ? 'cpu' : 'wasm');
});

// Let the worker's event loop reach its poll phase after every test. Vitest awaits between
// tests only through promises, so a file of synchronous tests (samplers, training, policy
// rollouts) never reads the runner's replies to its progress messages until the file ends; once
// that takes over 60 s (two workers on two busy cores) the reply's fixed 60 s RPC timeout fires
// first and the run exits 1 with every test passed ("[vitest-worker]: Timeout calling
// onTaskUpdate"). setImmediate runs after the poll phase, so the replies are read here.
afterEach(async () => {
  await new Promise<void>((resolve) => setImmediate(resolve));
});
