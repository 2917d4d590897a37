/**
 * Robot episodes (rollouts or demonstrations) stored as MCAP files of scoreflow.v1.Episode
 * messages (proto/robot.proto), viewable in Foxglove and readable from any language.
 *
 * Layout: one Episode message per episode on '/episode'; optionally one Observation per step on
 * '/observation' for timeline plots. Episodes are laid end to end on one timeline: the k-th step
 * of the file (counting across episodes) is at k * dt, which is also its Observation/Action
 * timestamp_ns and its Observation.seq; an Episode message is logged at its first step's time
 * (an empty episode takes one step slot, so log times stay distinct).
 * An MCAP metadata record 'scoreflow.episodes' holds env (when given), dt and the episode count.
 */
import { rename, rm } from 'node:fs/promises';
import { McapReader, McapRecorder } from '../../../src/io/mcap.js';
import type { EpisodeProto, EpisodeProtoInit } from '../../../src/proto/messages.js';

export const EPISODE_TOPIC = '/episode';
export const OBSERVATION_TOPIC = '/observation';
export const EPISODE_TYPE = 'scoreflow.v1.Episode';
export const OBSERVATION_TYPE = 'scoreflow.v1.Observation';
export const EPISODES_METADATA = 'scoreflow.episodes';

/** One episode. Step t pairs observations[t] with actions[t] and rewards[t]. */
export interface EpisodeRecord {
  env: string;
  /** Index of the episode in its dataset, an integer in [0, 2^32). */
  index: number;
  /** State vectors, all the same length; actions.length or actions.length + 1 of them. */
  observations: Float64Array[];
  /** Action vectors, all the same length. */
  actions: Float64Array[];
  /** One finite reward per action. */
  rewards: number[];
  success?: boolean;
  metadata?: Record<string, string>;
}

export interface WriteEpisodesOptions {
  /** When set, every episode's env must equal it; it is also stored in the file metadata. */
  env?: string;
  /** Seconds per step used for timestamps (default 0.1). */
  dt?: number;
  /** Also write one Observation per step on '/observation' (default false). */
  observationMessages?: boolean;
}

/** Invalid episode data (writing) or an episode file that breaks the layout (reading). */
export class EpisodeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EpisodeError';
  }
}

function fail(message: string): never {
  throw new EpisodeError(message);
}

function isStringRecord(v: unknown): v is Record<string, string> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && Object.values(v).every((x) => typeof x === 'string');
}

function checkVectors(where: string, name: string, list: unknown): Float64Array[] {
  if (!Array.isArray(list)) fail(`${where}: ${name} must be an array of Float64Array, received ${typeof list}`);
  let dim = -1;
  list.forEach((v: unknown, i) => {
    if (!(v instanceof Float64Array)) fail(`${where}: ${name}[${i}] must be a Float64Array, received ${v === null ? 'null' : typeof v === 'object' ? v.constructor.name : typeof v}`);
    if (dim === -1) dim = v.length;
    else if (v.length !== dim) fail(`${where}: ${name}[${i}] has length ${v.length}, ${name}[0] has ${dim} (all must match)`);
  });
  return list as Float64Array[];
}

/** Throws EpisodeError when `ep` breaks the EpisodeRecord contract; `where` prefixes messages. */
export function validateEpisode(ep: EpisodeRecord, where = 'episode'): void {
  if (typeof ep !== 'object' || ep === null) fail(`${where}: expected an EpisodeRecord object`);
  if (typeof ep.env !== 'string' || ep.env.length === 0) fail(`${where}: env must be a non-empty string`);
  if (!Number.isInteger(ep.index) || ep.index < 0 || ep.index > 2 ** 32 - 1) fail(`${where}: index must be an integer in [0, 2^32), received ${ep.index}`);
  const obs = checkVectors(where, 'observations', ep.observations);
  const acts = checkVectors(where, 'actions', ep.actions);
  if (!Array.isArray(ep.rewards)) fail(`${where}: rewards must be an array of numbers`);
  ep.rewards.forEach((r, i) => {
    if (typeof r !== 'number' || !Number.isFinite(r)) fail(`${where}: rewards[${i}] must be a finite number, received ${String(r)}`);
  });
  if (ep.rewards.length !== acts.length) fail(`${where}: ${ep.rewards.length} rewards for ${acts.length} actions (need one per action)`);
  if (obs.length !== acts.length && obs.length !== acts.length + 1) {
    fail(`${where}: ${obs.length} observations for ${acts.length} actions (need ${acts.length} or ${acts.length + 1})`);
  }
  if (ep.success !== undefined && typeof ep.success !== 'boolean') fail(`${where}: success must be a boolean when set`);
  if (ep.metadata !== undefined && !isStringRecord(ep.metadata)) fail(`${where}: metadata must map strings to strings`);
}

/** The Episode message for `ep`, its k-th step stamped (firstStep + k) * dtNs. */
export function episodeToProto(ep: EpisodeRecord, firstStep: bigint, dtNs: bigint): EpisodeProtoInit {
  const msg: EpisodeProtoInit = {
    env: ep.env,
    index: ep.index,
    observations: ep.observations.map((state, t) => ({ timestampNs: (firstStep + BigInt(t)) * dtNs, seq: firstStep + BigInt(t), state })),
    actions: ep.actions.map((values, t) => ({ timestampNs: (firstStep + BigInt(t)) * dtNs, values })),
    rewards: ep.rewards,
    metadata: ep.metadata ?? {},
  };
  if (ep.success !== undefined) msg.success = ep.success;
  return msg;
}

/** The EpisodeRecord of a decoded Episode message (validated). */
export function episodeFromProto(msg: EpisodeProto, where = 'episode'): EpisodeRecord {
  const ep: EpisodeRecord = {
    env: msg.env,
    index: msg.index,
    observations: msg.observations.map((o) => Float64Array.from(o.state)),
    actions: msg.actions.map((a) => Float64Array.from(a.values)),
    rewards: msg.rewards,
  };
  if (msg.success !== undefined) ep.success = msg.success;
  if (Object.keys(msg.metadata).length > 0) ep.metadata = { ...msg.metadata };
  validateEpisode(ep, where);
  return ep;
}

/**
 * Write `episodes` to an MCAP file at `path`, replacing it only once the new file is complete.
 * Every episode is validated first; (env, index) pairs must be unique.
 */
export async function writeEpisodesMcap(path: string, episodes: readonly EpisodeRecord[], opts: WriteEpisodesOptions = {}): Promise<void> {
  const dt = opts.dt ?? 0.1;
  if (typeof dt !== 'number' || !Number.isFinite(dt) || dt <= 0) fail(`writeEpisodesMcap: dt must be a positive number of seconds, received ${dt}`);
  const dtNs = BigInt(Math.round(dt * 1e9));
  if (dtNs === 0n) fail(`writeEpisodesMcap: dt ${dt} s rounds to 0 ns`);
  if (opts.env !== undefined && (typeof opts.env !== 'string' || opts.env.length === 0)) fail('writeEpisodesMcap: env must be a non-empty string');
  if (!Array.isArray(episodes)) fail('writeEpisodesMcap: episodes must be an array');
  const seen = new Set<string>();
  episodes.forEach((ep, i) => {
    const where = `writeEpisodesMcap: episodes[${i}]`;
    validateEpisode(ep, where);
    if (opts.env !== undefined && ep.env !== opts.env) fail(`${where}: env '${ep.env}' differs from the file's env '${opts.env}'`);
    const key = `${ep.env}\u0000${ep.index}`;
    if (seen.has(key)) fail(`${where}: duplicate episode (env '${ep.env}', index ${ep.index})`);
    seen.add(key);
  });

  // Write next to the target and rename when complete, so a failure never leaves a partial
  // file at `path` (nor clobbers an existing one).
  const tmp = `${path}.${process.pid}.${Date.now()}.partial`;
  const rec = new McapRecorder();
  let done = false;
  try {
    await rec.open(tmp);
    const info: Record<string, string> = { dt: String(dt), episodes: String(episodes.length), format: '1' };
    if (opts.env !== undefined) info['env'] = opts.env;
    await rec.metadata(EPISODES_METADATA, info);
    await rec.channel(EPISODE_TOPIC, EPISODE_TYPE);
    if (opts.observationMessages) await rec.channel(OBSERVATION_TOPIC, OBSERVATION_TYPE);
    let step = 0n;
    for (const ep of episodes) {
      const msg = episodeToProto(ep, step, dtNs);
      await rec.write(EPISODE_TOPIC, EPISODE_TYPE, msg, step * dtNs);
      if (opts.observationMessages) {
        for (let t = 0; t < ep.observations.length; t++) {
          const at = step + BigInt(t);
          await rec.write(OBSERVATION_TOPIC, OBSERVATION_TYPE, { timestampNs: at * dtNs, seq: at, state: ep.observations[t]! }, at * dtNs);
        }
      }
      step += BigInt(Math.max(ep.observations.length, ep.actions.length, 1));
    }
    await rec.close();
    await rename(tmp, path);
    done = true;
  } finally {
    if (!done) {
      await rec.close().catch(() => undefined);
      await rm(tmp, { force: true });
    }
  }
}

/** Episodes of an MCAP file written by writeEpisodesMcap (or any file with Episode messages on '/episode'), in file order. */
export async function readEpisodesMcap(path: string): Promise<EpisodeRecord[]> {
  const reader = await McapReader.open(path);
  try {
    const channel = reader.channels.find((c) => c.topic === EPISODE_TOPIC);
    if (!channel) fail(`readEpisodesMcap: ${path} has no '${EPISODE_TOPIC}' topic (topics: ${reader.channels.map((c) => c.topic).join(', ') || 'none'})`);
    if (channel.schemaName !== EPISODE_TYPE) fail(`readEpisodesMcap: ${path}: topic '${EPISODE_TOPIC}' carries ${channel.schemaName}, expected ${EPISODE_TYPE}`);
    const out: EpisodeRecord[] = [];
    for await (const m of reader.messages<EpisodeProto>({ topics: [EPISODE_TOPIC] })) {
      out.push(episodeFromProto(m.message, `readEpisodesMcap: ${path}: episode message ${out.length}`));
    }
    return out;
  } finally {
    await reader.close();
  }
}
