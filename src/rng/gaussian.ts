/**
 * Standard normal draw from a uniform source (Box-Muller), free of the tensor backend so that
 * backend-free code (environment physics, experts) can share it with the tensor-backed `Rng`.
 */
export function standardNormal(uniform: () => number): number {
  let u = uniform();
  while (u <= 1e-12) u = uniform(); // keeps log(u) finite
  const v = uniform();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}
