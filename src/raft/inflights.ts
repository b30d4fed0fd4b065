/**
 * The bounded window of Append messages sent to a follower and not yet acknowledged.
 * Invariant: count <= capacity and bytes <= maxBytes (except one message may exceed maxBytes alone);
 * entries are stored in increasing index order.
 */
import { assert } from "../util/assert.js";

export class Inflights {
  private readonly capacity: number;
  private readonly maxBytes: number;
  private readonly indexes: number[] = [];
  private readonly sizes: number[] = [];
  private bytes = 0;

  constructor(capacity: number, maxBytes: number) {
    assert(capacity > 0, "inflight capacity must be positive");
    this.capacity = capacity;
    this.maxBytes = maxBytes;
  }

  /** Records a message whose last entry is `index` with `sizeBytes` of entries. */
  add(index: number, sizeBytes: number): void {
    assert(!this.full(), "cannot add to a full inflight window");
    const n = this.indexes.length;
    assert(n === 0 || this.indexes[n - 1]! < index, () => `inflight index ${index} not increasing`);
    this.indexes.push(index);
    this.sizes.push(sizeBytes);
    this.bytes += sizeBytes;
  }

  /** Frees every message whose last index is <= to. */
  freeLE(to: number): void {
    let i = 0;
    while (i < this.indexes.length && this.indexes[i]! <= to) {
      this.bytes -= this.sizes[i]!;
      i++;
    }
    if (i > 0) {
      this.indexes.splice(0, i);
      this.sizes.splice(0, i);
    }
  }

  /** Frees the oldest message: used when acknowledgements may have been lost. */
  freeFirstOne(): void {
    if (this.indexes.length === 0) return;
    this.bytes -= this.sizes[0]!;
    this.indexes.shift();
    this.sizes.shift();
  }

  full(): boolean {
    return this.indexes.length >= this.capacity || (this.maxBytes > 0 && this.bytes >= this.maxBytes);
  }

  count(): number {
    return this.indexes.length;
  }

  reset(): void {
    this.indexes.length = 0;
    this.sizes.length = 0;
    this.bytes = 0;
  }
}
