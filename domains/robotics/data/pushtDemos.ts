/** Push-T demonstrations from Diffusion Policy's replay buffer as policy training episodes. */
import { readReplayBuffer } from './zarrReplay.js';
import type { Demo } from '../policy/windows.js';

export const DEFAULT_PUSHT_ZARR = '../shared/data/pusht/pusht_cchi_v7_replay.zarr';

export async function loadPushtDemos(zarrPath: string = DEFAULT_PUSHT_ZARR, opts: { episodes?: number } = {}): Promise<Demo[]> {
  const rb = await readReplayBuffer(zarrPath, { keys: ['state', 'action'] });
  const state = rb.arrays.state;
  const action = rb.arrays.action;
  const n = Math.min(opts.episodes ?? rb.numEpisodes, rb.numEpisodes);
  const demos: Demo[] = [];
  for (let e = 0; e < n; e++) {
    const { start, end } = rb.episode(e);
    const observations: Float64Array[] = [];
    const actions: Float64Array[] = [];
    for (let i = start; i < end; i++) {
      observations.push(Float64Array.from(state.data.subarray(i * 5, i * 5 + 5)));
      actions.push(Float64Array.from(action.data.subarray(i * 2, i * 2 + 2)));
    }
    demos.push({ observations, actions });
  }
  return demos;
}
