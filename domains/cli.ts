/** Entry point of the `scoreflow` program: the core's commands plus every domain's. */
import { main, registerCommand } from '../src/cli/main.js';

registerCommand({ name: 'robot', summary: 'robotics: import | collect | train | eval', run: async (a) => (await import('./robotics/cli.js')).runRobot(a) });

main();
