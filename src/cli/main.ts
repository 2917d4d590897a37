/**
 * The `scoreflow` command line: a registry of commands. The core registers `doctor`, `toy` and
 * `tour`; domain modules register their own (e.g. `robot`) from `domains/cli.ts`, which is the
 * program's entry point, so the core never imports a domain.
 */
import { isUserError, UsageError } from './errors.js';

export interface Command {
  readonly name: string;
  readonly summary: string;
  run(argv: string[]): Promise<number>;
}

const commands = new Map<string, Command>();

export function registerCommand(cmd: Command): void {
  commands.set(cmd.name, cmd);
}

registerCommand({ name: 'tour', summary: 'run the main job on embedded defaults', run: async (a) => (await import('./commands.js')).runTour(a) });
registerCommand({ name: 'doctor', summary: 'backend, versions, threads, SIMD [--json]', run: async (a) => (await import('./commands.js')).runDoctor(a) });
registerCommand({ name: 'toy', summary: 'toy 2D model: toy train | toy sample', run: async (a) => (await import('./commands.js')).runToy(a) });

function usage(): string {
  const lines = [...commands.values()].map((c) => `  ${c.name.padEnd(8)} ${c.summary}`);
  return `usage: scoreflow <command> [options]\n\ncommands:\n${lines.join('\n')}\n\nrun 'scoreflow <command> --help' for the options of a command.`;
}

export async function runCli(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    process.stdout.write(usage() + '\n');
    return cmd === undefined ? 2 : 0;
  }
  const c = commands.get(cmd);
  if (!c) throw new UsageError(`unknown command '${cmd}'\n${usage()}`);
  return c.run(rest);
}

/** Run the CLI and set the exit code: user errors print one line (exit 2), bugs print a stack (exit 1). */
export function main(argv: string[] = process.argv.slice(2)): void {
  runCli(argv).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      if (isUserError(err)) {
        process.stderr.write(`scoreflow: ${err.message}\n`);
        process.exitCode = 2;
      } else {
        process.stderr.write(`scoreflow: internal error: ${(err as Error)?.stack ?? String(err)}\n`);
        process.exitCode = 1;
      }
    },
  );
}
