/** The `scoreflow` command. */
import { isUserError, UsageError } from './errors.js';

const USAGE = `usage: scoreflow <command> [options]

commands:
  tour                     run the main job on embedded defaults (train + sample the toy model, report metrics)
  doctor [--json]          backend, versions, threads, SIMD
  toy train [options]      train a toy 2D model (8 Gaussians); writes a checkpoint
  toy sample [options]     sample a toy checkpoint and report metrics

run 'scoreflow <command> --help' for the options of a command.`;

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case undefined:
    case '--help':
    case '-h':
    case 'help':
      process.stdout.write(USAGE + '\n');
      return cmd === undefined ? 2 : 0;
    case 'doctor': {
      const { runDoctor } = await import('./commands.js');
      return runDoctor(rest);
    }
    case 'toy': {
      const { runToy } = await import('./commands.js');
      return runToy(rest);
    }
    case 'tour': {
      const { runTour } = await import('./commands.js');
      return runTour(rest);
    }
    default:
      throw new UsageError(`unknown command '${cmd}'\n${USAGE}`);
  }
}

main(process.argv.slice(2)).then(
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
