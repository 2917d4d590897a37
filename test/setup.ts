import { beforeAll } from 'vitest';
import { setBackend } from '../src/backend/backend.js';

// Every suite runs on the embedded default backend (WASM), as users do.
beforeAll(async () => {
  await setBackend(process.env.SCOREFLOW_BACKEND === 'cpu' ? 'cpu' : 'wasm');
});
