/**
 * Stages that domain modules add to `scoreflow tour` (registered from domains/cli.ts, so the core
 * never imports a domain). Kept free of heavy imports: registering happens at program start.
 */

export interface TourStage {
  readonly name: string;
  run(opts: { json: boolean }): Promise<void>;
}

const stages: TourStage[] = [];

/** Add a stage to `scoreflow tour`, run after the core's toy model, in registration order. */
export function registerTourStage(stage: TourStage): void {
  if (!stage || typeof stage.name !== 'string' || typeof stage.run !== 'function') throw new Error('registerTourStage: expected { name, run }');
  if (stages.some((s) => s.name === stage.name)) throw new Error(`registerTourStage: stage '${stage.name}' is already registered`);
  stages.push(stage);
}

export function tourStages(): readonly TourStage[] {
  return stages;
}
