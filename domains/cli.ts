/** Entry point of the `scoreflow` program: the core's commands plus every domain's. */
import { main, registerCommand } from '../src/cli/main.js';
import { registerTourStage } from '../src/cli/tour.js';

registerCommand({ name: 'robot', summary: 'robotics: import | collect | train | eval | distill | export | serve | bridge | drive', run: async (a) => (await import('./robotics/cli.js')).runRobot(a) });

registerTourStage({ name: 'robotics: a served policy in a real-time control loop', run: async (o) => (await import('./robotics/tour.js')).robotTourStage(o) });

main();
