/**
 * The k nearest of a stream of candidates (smallest distance first), in O(log k) per candidate: a
 * bounded max-heap on distance. Ties go to the smaller id, so that every replica orders alike.
 */
import { assert } from "../util/assert.js";

export interface Hit {
  id: string;
  /** In the index's terms: smaller is nearer (1 - cosine, 1 - dot, or the squared L2 distance). */
  distance: number;
}

/** Whether a is farther than b (the heap keeps the farthest on top). */
function farther(a: Hit, b: Hit): boolean {
  return a.distance > b.distance || (a.distance === b.distance && a.id > b.id);
}

export class TopK {
  /** Invariant: heap.length <= k, and each parent is not nearer than its children. */
  private readonly heap: Hit[] = [];

  constructor(readonly k: number) {
    assert(Number.isInteger(k) && k >= 1, "k is a positive integer");
  }

  get size(): number {
    return this.heap.length;
  }

  /** The distance a candidate must beat to enter (Infinity until k are held). */
  get bound(): number {
    return this.heap.length < this.k ? Infinity : this.heap[0]!.distance;
  }

  offer(id: string, distance: number): void {
    const h = this.heap;
    const hit = { id, distance };
    if (h.length < this.k) {
      h.push(hit);
      let i = h.length - 1;
      while (i > 0) {
        const p = (i - 1) >> 1;
        if (!farther(h[i]!, h[p]!)) break;
        [h[i], h[p]] = [h[p]!, h[i]!];
        i = p;
      }
      return;
    }
    if (!farther(h[0]!, hit)) return;
    h[0] = hit;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let top = i;
      if (l < h.length && farther(h[l]!, h[top]!)) top = l;
      if (r < h.length && farther(h[r]!, h[top]!)) top = r;
      if (top === i) break;
      [h[i], h[top]] = [h[top]!, h[i]!];
      i = top;
    }
  }

  /** The hits held, nearest first. */
  sorted(): Hit[] {
    return [...this.heap].sort((a, b) => (farther(a, b) ? 1 : farther(b, a) ? -1 : 0));
  }
}
