/**
 * Pending ReadIndex requests on the leader. A request records the commit index at arrival and is
 * released once a quorum has answered a heartbeat carrying its context (or a later one): at that point
 * the leader knows it was still the leader when the request arrived.
 *
 * Invariant: queue and pending hold the same keys; queue.length <= capacity.
 */
import type { Message, NodeId } from "./types.js";

export interface ReadIndexStatus {
  request: Message;
  index: number;
  acks: Set<NodeId>;
}

export function contextKey(ctx: Uint8Array): string {
  let s = "";
  for (let i = 0; i < ctx.length; i++) s += String.fromCharCode(ctx[i]!);
  return s;
}

export class ReadOnlyQueue {
  private readonly pending = new Map<string, ReadIndexStatus>();
  private queue: string[] = [];
  readonly capacity: number;

  constructor(capacity: number) {
    this.capacity = capacity;
  }

  size(): number {
    return this.queue.length;
  }

  /** Returns false when the request was not queued (duplicate context or queue full). */
  addRequest(index: number, m: Message): boolean {
    const key = contextKey(m.context!);
    if (this.pending.has(key)) return false;
    if (this.queue.length >= this.capacity) return false;
    this.pending.set(key, { request: m, index, acks: new Set() });
    this.queue.push(key);
    return true;
  }

  /** Records a heartbeat acknowledgement; returns the set of acks for the context, if pending. */
  recvAck(id: NodeId, ctx: Uint8Array): Set<NodeId> | undefined {
    const rs = this.pending.get(contextKey(ctx));
    if (rs === undefined) return undefined;
    rs.acks.add(id);
    return rs.acks;
  }

  /** Dequeues every request up to and including ctx: they are all confirmed by the same round. */
  advance(ctx: Uint8Array): ReadIndexStatus[] {
    const key = contextKey(ctx);
    const at = this.queue.indexOf(key);
    if (at < 0) return [];
    const released: ReadIndexStatus[] = [];
    for (let i = 0; i <= at; i++) {
      const k = this.queue[i]!;
      released.push(this.pending.get(k)!);
      this.pending.delete(k);
    }
    this.queue = this.queue.slice(at + 1);
    return released;
  }

  lastPendingContext(): Uint8Array | null {
    if (this.queue.length === 0) return null;
    return this.pending.get(this.queue[this.queue.length - 1]!)!.request.context;
  }
}
