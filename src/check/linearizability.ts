/**
 * Linearizability checking by the Wing–Gong / Lowe search with a cache of (linearized set, state), in
 * the manner of Porcupine: walk the history's call/return entries; at a call, try to linearize the
 * operation now (if the model allows it and the (set, state) pair is new); at a return whose operation
 * is not yet linearized, backtrack. Each partition (key) is checked independently, and the check stops
 * at the first partition that is not linearizable.
 */
import type { Operation } from "./history.js";
import type { Model } from "./models.js";

export type Verdict = "linearizable" | "not-linearizable" | "unknown";

export interface PartitionFailure {
  /** Key of the partition that is not linearizable. */
  key: string;
  /** The longest sequence of operations the search could linearize, in order. */
  longestPrefix: Operation[];
  /** Operations that could not be placed after that prefix (the blocking return and its rivals). */
  stuck: Operation[];
}

export interface CheckResult {
  verdict: Verdict;
  partitions: number;
  /** Search steps taken (a measure of work). */
  steps: number;
  failure: PartitionFailure | null;
}

export interface CheckOptions {
  /** Polled every few thousand steps; returning true stops the search with "unknown". */
  shouldStop?: () => boolean;
}

const STOP_POLL_STEPS = 65536;

/** Steps one partition's search takes before the others get a turn. */
const SLICE_STEPS = 2048;

export function checkOperations<S>(model: Model<S>, ops: Operation[], opts: CheckOptions = {}): CheckResult {
  const parts = model.partition(ops);
  // The partitions are searched in round-robin slices, as if in parallel: one bad key that is quick
  // to refute ends the check even when another key needs a long exhaustive search.
  let active = parts.map((part) => new PartitionSearch(model, part));
  let steps = 0;
  let sinceStopPoll = 0;
  while (active.length > 0) {
    const still: PartitionSearch<S>[] = [];
    for (const search of active) {
      const verdict = search.run(SLICE_STEPS);
      steps += search.lastSliceSteps;
      sinceStopPoll += search.lastSliceSteps;
      if (verdict === "not-linearizable") {
        return { verdict, partitions: parts.length, steps, failure: search.failure };
      }
      if (verdict === null) still.push(search);
    }
    active = still;
    if (sinceStopPoll >= STOP_POLL_STEPS && active.length > 0) {
      sinceStopPoll = 0;
      if (opts.shouldStop?.() === true) return { verdict: "unknown", partitions: parts.length, steps, failure: null };
    }
  }
  return { verdict: "linearizable", partitions: parts.length, steps, failure: null };
}

/** Deterministic per-operation hash words (Zobrist hashing of the linearized set). */
function zobrist(n: number): Uint32Array {
  const out = new Uint32Array(n * 2);
  let x = 0x9e3779b9;
  for (let i = 0; i < out.length; i++) {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    out[i] = x;
  }
  return out;
}

interface CacheEntry<S> {
  bits: Uint32Array;
  state: S;
}

class PartitionSearch<S> {
  private readonly model: Model<S>;
  private readonly ops: Operation[];
  private readonly n: number;
  private readonly next: Int32Array;
  private readonly prev: Int32Array;
  private readonly head: number;
  private readonly bits: Uint32Array;
  private readonly z: Uint32Array;
  private h1 = 0;
  private h2 = 0;
  /** Keyed by the Zobrist hash of the linearized set, then by the state's hash; entries compared exactly. */
  private readonly cache = new Map<number, Map<string, CacheEntry<S>[]>>();
  private readonly calls: { op: number; state: S }[] = [];
  private state: S;
  private entry: number;
  private best: number[] = [];
  private bestStuck = -1;
  failure: PartitionFailure | null = null;
  lastSliceSteps = 0;

  constructor(model: Model<S>, ops: Operation[]) {
    this.model = model;
    this.ops = ops;
    const n = (this.n = ops.length);
    // Entries 0..n-1 are calls of ops[i]; n..2n-1 are their returns. Node 2n is the list head.
    const times: { t: number; kind: number; e: number }[] = [];
    for (let i = 0; i < n; i++) {
      times.push({ t: ops[i]!.call, kind: 0, e: i });
      times.push({ t: ops[i]!.ret, kind: 1, e: n + i });
    }
    // Calls sort before returns at equal times: touching operations count as concurrent.
    // (Compare explicitly: Infinity - Infinity is NaN, which would scramble the order.)
    times.sort((a, b) => (a.t < b.t ? -1 : a.t > b.t ? 1 : a.kind - b.kind || a.e - b.e));
    this.head = 2 * n;
    this.next = new Int32Array(2 * n + 1).fill(-1);
    this.prev = new Int32Array(2 * n + 1).fill(-1);
    let last = this.head;
    for (const { e } of times) {
      this.next[last] = e;
      this.prev[e] = last;
      last = e;
    }
    this.bits = new Uint32Array(Math.max(1, Math.ceil(n / 32)));
    this.z = zobrist(n);
    this.state = model.init();
    this.entry = this.next[this.head]!;
  }

  private lift(call: number): void {
    const { next, prev } = this;
    const ret = call + this.n;
    next[prev[call]!] = next[call]!;
    if (next[call]! >= 0) prev[next[call]!] = prev[call]!;
    next[prev[ret]!] = next[ret]!;
    if (next[ret]! >= 0) prev[next[ret]!] = prev[ret]!;
  }

  private unlift(call: number): void {
    const { next, prev } = this;
    const ret = call + this.n;
    next[prev[ret]!] = ret;
    if (next[ret]! >= 0) prev[next[ret]!] = ret;
    next[prev[call]!] = call;
    if (next[call]! >= 0) prev[next[call]!] = call;
  }

  /** Adds (bits, state) to the cache; false if it was already there. */
  private cacheAdd(state: S, c1: number, c2: number): boolean {
    const key = c1 * 4294967296 + c2;
    let byState = this.cache.get(key);
    if (byState === undefined) this.cache.set(key, (byState = new Map()));
    const stateHash = this.model.hash(state);
    let list = byState.get(stateHash);
    if (list === undefined) byState.set(stateHash, (list = []));
    for (const c of list) {
      let same = true;
      for (let i = 0; i < c.bits.length; i++) if (c.bits[i] !== this.bits[i]) { same = false; break; }
      if (same) return false;
    }
    list.push({ bits: this.bits.slice(), state });
    return true;
  }

  /** Runs up to maxSteps; returns the verdict, or null if not finished. */
  run(maxSteps: number): Verdict | null {
    const { n, next, bits, z, ops, head } = this;
    let steps = 0;
    try {
      while (next[head]! >= 0) {
        if (steps >= maxSteps) return null;
        steps++;
        const entry = this.entry;
        if (entry < n) {
          const op = entry;
          const nextState = this.model.step(this.state, ops[op]!);
          if (nextState !== undefined) {
            const w = op >>> 5;
            const bit = 1 << (op & 31);
            bits[w]! |= bit;
            const n1 = (this.h1 ^ z[2 * op]!) >>> 0;
            const n2 = (this.h2 ^ z[2 * op + 1]!) >>> 0;
            if (this.cacheAdd(nextState, n1, n2)) {
              this.calls.push({ op, state: this.state });
              this.state = nextState;
              this.h1 = n1;
              this.h2 = n2;
              this.lift(op);
              this.entry = next[head]!;
              continue;
            }
            bits[w]! &= ~bit;
          }
          this.entry = next[entry]!;
          continue;
        }
        // A return entry of an operation not linearized yet: this branch is dead.
        if (this.calls.length > this.best.length || this.bestStuck < 0) {
          this.best = this.calls.map((c) => c.op);
          this.bestStuck = entry - n;
        }
        const top = this.calls.pop();
        if (top === undefined) {
          this.failure = this.describeFailure();
          return "not-linearizable";
        }
        const op = top.op;
        this.state = top.state;
        bits[op >>> 5]! &= ~(1 << (op & 31));
        this.h1 = (this.h1 ^ z[2 * op]!) >>> 0;
        this.h2 = (this.h2 ^ z[2 * op + 1]!) >>> 0;
        this.unlift(op);
        this.entry = next[op]!;
      }
      return "linearizable";
    } finally {
      this.lastSliceSteps = steps;
    }
  }

  private describeFailure(): PartitionFailure {
    const ops = this.ops;
    const stuckOp = ops[this.bestStuck]!;
    const inPrefix = new Set(this.best);
    // The blocked operation and its rivals: operations outside the prefix that overlap it.
    const stuck = ops.filter((o, i) => !inPrefix.has(i) && o.call <= stuckOp.ret && o.ret >= stuckOp.call).slice(0, 20);
    return { key: stuckOp.key, longestPrefix: this.best.map((i) => ops[i]!), stuck };
  }
}
