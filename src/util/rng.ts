/** A seeded pseudo-random source (mulberry32). The simulator's only randomness: same seed, same run. */
export class Rng {
  private a: number;

  constructor(seed: number) {
    this.a = seed >>> 0;
  }

  /** Uniform in [0, 1). */
  float(): number {
    this.a = (this.a + 0x6d2b79f5) >>> 0;
    let t = this.a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.float() * n);
  }

  /** Uniform integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  chance(p: number): boolean {
    return this.float() < p;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error("pick from an empty list");
    return items[this.int(items.length)]!;
  }

  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [items[i], items[j]] = [items[j]!, items[i]!];
    }
    return items;
  }

  /** A child source with its own stream (so adding draws in one place does not shift another). */
  fork(): Rng {
    return new Rng(this.int(0x7fffffff) ^ 0x5bd1e995);
  }

  /** The source as the `random(n)` function the Raft core takes. */
  asRandomFn(): (n: number) => number {
    return (n) => this.int(n);
  }
}

/** Randomness as an input: the seeded Rng in the simulator, the process's own in production. */
export interface Random {
  /** Uniform in [0, 1). */
  float(): number;
  /** Uniform integer in [0, n). */
  int(n: number): number;
}

/** Math.random, for production. */
export const systemRandom: Random = {
  float: () => Math.random(),
  int: (n) => Math.floor(Math.random() * n),
};
