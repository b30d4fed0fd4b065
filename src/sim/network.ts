/**
 * The simulated network: per-message delay (so messages reorder), loss, duplication, and blocked
 * directed links for partitions of every shape. Delivery goes through the simulator's event queue.
 */
import type { Message, NodeId } from "../raft/index.js";
import type { Rng } from "../util/rng.js";

export interface LinkFaults {
  dropRate: number;
  duplicateRate: number;
  delayMs: [number, number];
}

export const CALM: LinkFaults = { dropRate: 0, duplicateRate: 0, delayMs: [1, 3] };

export class SimNetwork {
  faults: LinkFaults = { ...CALM };
  /** Directed links that drop everything: "from>to". */
  private readonly blocked = new Set<string>();
  sent = 0;
  dropped = 0;

  constructor(private readonly rng: Rng) {}

  block(from: NodeId, to: NodeId): void {
    this.blocked.add(`${from}>${to}`);
  }

  blockBoth(a: NodeId, b: NodeId): void {
    this.block(a, b);
    this.block(b, a);
  }

  /** Cuts every link between the two groups, both ways. */
  partition(a: NodeId[], b: NodeId[]): void {
    for (const x of a) for (const y of b) this.blockBoth(x, y);
  }

  /** Cuts a node off from everyone (clogging). */
  clog(id: NodeId, all: NodeId[]): void {
    for (const other of all) if (other !== id) this.blockBoth(id, other);
  }

  unclog(id: NodeId, all: NodeId[]): void {
    for (const other of all) {
      this.blocked.delete(`${id}>${other}`);
      this.blocked.delete(`${other}>${id}`);
    }
  }

  heal(): void {
    this.blocked.clear();
    this.faults = { ...CALM };
  }

  isBlocked(from: NodeId, to: NodeId): boolean {
    return this.blocked.has(`${from}>${to}`);
  }

  describe(): string {
    return this.blocked.size === 0 ? "connected" : [...this.blocked].sort().join(" ");
  }

  /** The delivery delays for one message: none if lost, two if duplicated. */
  plan(m: Message): number[] {
    this.sent++;
    if (this.isBlocked(m.from, m.to) || this.rng.chance(this.faults.dropRate)) {
      this.dropped++;
      return [];
    }
    const [lo, hi] = this.faults.delayMs;
    const delays = [this.rng.range(lo, hi)];
    if (this.rng.chance(this.faults.duplicateRate)) delays.push(this.rng.range(lo, hi * 2));
    return delays;
  }
}
