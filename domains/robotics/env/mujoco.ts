/**
 * Loader for the official MuJoCo WebAssembly build (`mujoco-js`).
 *
 * The module is instantiated once per process (cached promise); instantiation takes ~0.1 s.
 * Models are compiled from MJCF strings through the module's in-memory Emscripten file system:
 * the XML is written to `/working/<name>`, compiled with `MjModel.loadFromXML`, and the file is
 * removed again. Callers own the returned MjModel / MjData and must `delete()` them.
 */
import type { MainModule, MjData, MjModel } from 'mujoco-js';

export type MujocoModule = MainModule;
export type { MjData, MjModel };

const WORK_DIR = '/working';

let cached: Promise<MujocoModule> | undefined;

/** Load (once) and return the MuJoCo wasm module. Rejects with a descriptive error if it cannot load. */
export function loadMujoco(): Promise<MujocoModule> {
  if (cached === undefined) {
    cached = instantiate();
    // Do not cache failures: a later call may succeed (e.g. after fixing the install).
    cached.catch(() => {
      cached = undefined;
    });
  }
  return cached;
}

async function instantiate(): Promise<MujocoModule> {
  let factory: (options?: unknown) => Promise<MujocoModule>;
  try {
    const mod = (await import('mujoco-js')) as { default: (options?: unknown) => Promise<MujocoModule> };
    factory = mod.default;
  } catch (err) {
    throw new Error(
      `loadMujoco: cannot import the 'mujoco-js' package (is it installed?): ${describe(err)}`,
    );
  }
  let mujoco: MujocoModule;
  try {
    mujoco = await factory();
  } catch (err) {
    throw new Error(`loadMujoco: the MuJoCo WebAssembly module failed to instantiate: ${describe(err)}`);
  }
  if (typeof mujoco.mj_step !== 'function' || mujoco.MjModel === undefined || mujoco.FS === undefined) {
    throw new Error('loadMujoco: mujoco-js loaded but does not expose mj_step / MjModel / FS; unsupported version');
  }
  if (!mujoco.FS.analyzePath(WORK_DIR, false).exists) {
    mujoco.FS.mkdir(WORK_DIR);
  }
  return mujoco;
}

let fileCounter = 0;

/**
 * Compile an MJCF string into an MjModel. `name` is only used for the temporary file name and
 * error messages. Throws with the MuJoCo error class (e.g. mjXError) if compilation fails.
 */
export function compileMjcf(mujoco: MujocoModule, xml: string, name: string): MjModel {
  if (typeof xml !== 'string' || xml.trim().length === 0) {
    throw new TypeError('compileMjcf: xml must be a non-empty MJCF string');
  }
  if (typeof name !== 'string' || !/^[A-Za-z0-9_.-]+$/.test(name)) {
    throw new TypeError(`compileMjcf: name must be a simple file name ([A-Za-z0-9_.-]+), got ${JSON.stringify(name)}`);
  }
  const path = `${WORK_DIR}/${fileCounter++}_${name}`;
  mujoco.FS.writeFile(path, xml);
  try {
    return mujoco.MjModel.loadFromXML(path);
  } catch (err) {
    throw new Error(`compileMjcf: MuJoCo failed to compile '${name}': ${describe(err)}`);
  } finally {
    mujoco.FS.unlink(path);
  }
}

function describe(err: unknown): string {
  if (err instanceof Error) {
    return err.message !== undefined && err.message !== '' ? `${err.name}: ${err.message}` : err.name;
  }
  return String(err);
}
