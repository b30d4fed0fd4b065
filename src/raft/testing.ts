/**
 * A synchronous in-process cluster for scenario tests and the core benchmark: every replica has a
 * MemoryStorage, messages are delivered instantly (unless dropped by a filter), and every Ready is
 * handled exactly as the host contract in raft-node.ts says. Deterministic for a given seed.
 */
import { assert } from "../util/assert.js";
import { ConfChangeTransition, type ConfChangeType, decodeConfChange } from "./confchange.js";
import type { RaftConfig } from "./config.js";
import { RaftNode, type Ready } from "./raft-node.js";
import { MemoryStorage, bootstrapStorage } from "./storage.js";
import { Rng } from "../util/rng.js";
import { type Entry, type Message, type NodeId, type ReadState, EntryType, MessageType } from "./types.js";

/** Deterministic randomness for tests: random(n) in [0, n). */
export function seededRandom(seed: number): (n: number) => number {
  return new Rng(seed).asRandomFn();
}

export type MessageFilter = (m: Message) => boolean;

export interface Replica {
  id: NodeId;
  node: RaftNode;
  storage: MemoryStorage;
  applied: Entry[];
  readStates: ReadState[];
}

export interface TestClusterOptions {
  voters: NodeId[];
  learners?: NodeId[];
  seed?: number;
  config?: Partial<RaftConfig>;
}

export class TestCluster {
  readonly replicas = new Map<NodeId, Replica>();
  /** Messages in flight (delivered in FIFO order by deliver()). */
  queue: Message[] = [];
  /** Filters that return true drop the message. */
  filters: MessageFilter[] = [];
  private readonly random: (n: number) => number;
  private readonly baseConfig: Partial<RaftConfig>;
  delivered = 0;
  /** Leader transfer outcomes reported in Readies, as "replica:transferee:outcome". */
  leaderTransfers: string[] = [];

  constructor(opts: TestClusterOptions) {
    this.random = seededRandom(opts.seed ?? 1);
    this.baseConfig = opts.config ?? {};
    for (const id of [...opts.voters, ...(opts.learners ?? [])]) {
      const storage = new MemoryStorage();
      bootstrapStorage(storage, RaftNode.bootstrapConfState(opts.voters, opts.learners ?? []));
      this.addReplica(id, storage);
    }
  }

  /** Adds a member with empty storage (it learns the configuration from the leader). */
  addEmptyReplica(id: NodeId): Replica {
    return this.addReplica(id, new MemoryStorage());
  }

  /** Creates (or recreates, after a crash) a replica on the given storage. */
  addReplica(id: NodeId, storage: MemoryStorage, applied?: number): Replica {
    const node = new RaftNode({
      id,
      storage,
      electionTicks: 10,
      heartbeatTicks: 1,
      random: this.random,
      ...this.baseConfig,
      ...(applied !== undefined ? { applied } : {}),
    });
    const r: Replica = { id, node, storage, applied: [], readStates: [] };
    this.replicas.set(id, r);
    return r;
  }

  get(id: NodeId): Replica {
    const r = this.replicas.get(id);
    assert(r !== undefined, () => `no replica ${id}`);
    return r;
  }

  node(id: NodeId): RaftNode {
    return this.get(id).node;
  }

  /** Drops every message to or from the given nodes. */
  isolate(...ids: NodeId[]): void {
    const set = new Set(ids);
    this.filters.push((m) => set.has(m.from) !== set.has(m.to));
  }

  /** Drops messages between the two groups. */
  partition(a: NodeId[], b: NodeId[]): void {
    const sa = new Set(a);
    const sb = new Set(b);
    this.filters.push((m) => (sa.has(m.from) && sb.has(m.to)) || (sb.has(m.from) && sa.has(m.to)));
  }

  heal(): void {
    this.filters = [];
  }

  /** Handles one Ready of one replica: persist, send, apply, advance. */
  handleReady(r: Replica, rd: Ready = r.node.ready()): void {
    this.send(rd.messages);
    if (rd.snapshot !== null) {
      r.storage.applySnapshot(rd.snapshot);
      r.applied.push({ term: rd.snapshot.meta.term, index: rd.snapshot.meta.index, type: EntryType.Normal, data: rd.snapshot.data });
    }
    r.storage.append(rd.entries);
    if (rd.hardState !== null) r.storage.setHardState(rd.hardState);
    this.send(rd.messagesAfterPersist);
    for (const e of rd.committedEntries) {
      if (e.type === EntryType.ConfChange) r.node.applyConfChange(decodeConfChange(e.data));
      r.applied.push(e);
    }
    for (const rs of rd.readStates) r.readStates.push(rs);
    for (const t of rd.leaderTransfers) this.leaderTransfers.push(`${r.id}:${t.transferee}:${t.outcome}`);
    r.node.advance();
  }

  send(msgs: Message[]): void {
    for (const m of msgs) {
      if (this.filters.some((f) => f(m))) continue;
      this.queue.push(m);
    }
  }

  /** Processes readies and delivers messages until nothing moves (bounded to catch livelock). */
  stabilize(maxRounds = 10_000): void {
    for (let round = 0; round < maxRounds; round++) {
      let moved = false;
      for (const r of this.replicas.values()) {
        if (r.node.hasReady()) {
          this.handleReady(r);
          moved = true;
        }
      }
      if (this.queue.length > 0) {
        const batch = this.queue;
        this.queue = [];
        for (const m of batch) this.deliver(m);
        moved = true;
      }
      if (!moved) return;
    }
    throw new Error(`cluster did not stabilize within ${maxRounds} rounds`);
  }

  deliver(m: Message): void {
    const r = this.replicas.get(m.to);
    if (r === undefined) return;
    this.delivered++;
    r.node.step(m);
  }

  /** Ticks one replica n times, stabilizing after each tick. */
  tick(id: NodeId, n = 1): void {
    for (let i = 0; i < n; i++) {
      this.node(id).tick();
      this.stabilize();
    }
  }

  tickAll(n = 1): void {
    for (let i = 0; i < n; i++) {
      for (const r of this.replicas.values()) r.node.tick();
      this.stabilize();
    }
  }

  /** Makes `id` campaign and settles the election. */
  elect(id: NodeId): void {
    this.node(id).campaign();
    this.stabilize();
  }

  /** Ticks every replica until one leads (bounded); returns it. */
  tickUntilLeader(maxTicks = 200): NodeId {
    for (let i = 0; i < maxTicks; i++) {
      const l = this.leader();
      if (l !== null) return l;
      this.tickAll(1);
    }
    throw new Error(`no leader within ${maxTicks} ticks`);
  }

  leader(): NodeId | null {
    for (const r of this.replicas.values()) if (r.node.raft.role === "leader") return r.id;
    return null;
  }

  appliedData(id: NodeId): string[] {
    return this.get(id).applied.filter((e) => e.data.byteLength > 0 && e.type === EntryType.Normal)
      .map((e) => new TextDecoder().decode(e.data));
  }

  propose(id: NodeId, text: string): void {
    this.node(id).propose(enc(text));
    this.stabilize();
  }

  /** Proposes a configuration change at `id` and settles it. */
  changeConf(id: NodeId, ...changes: { type: ConfChangeType; nodeId: NodeId }[]): void {
    this.node(id).proposeConfChange({ transition: ConfChangeTransition.Auto, changes });
    this.stabilize();
  }

  config(id: NodeId) {
    return this.node(id).status().config;
  }

  /** Pending messages of a given type (for tests that intercept them). */
  take(pred: (m: Message) => boolean): Message[] {
    const taken = this.queue.filter(pred);
    this.queue = this.queue.filter((m) => !pred(m));
    return taken;
  }
}

export const enc = (s: string): Uint8Array => new TextEncoder().encode(s);

/**
 * A storage holding a given log: the bootstrap snapshot at index 1 (term 1), then one entry per term
 * in `terms` from index 2 on (the Raft paper's figures index logs the same way).
 */
export function storageWithLog(voters: NodeId[], terms: number[], hardTerm: number): MemoryStorage {
  const storage = new MemoryStorage();
  bootstrapStorage(storage, RaftNode.bootstrapConfState(voters));
  storage.append(terms.map((term, i) => ({ term, index: i + 2, type: EntryType.Normal, data: enc(`t${term}i${i + 2}`) })));
  storage.setHardState({ term: hardTerm, vote: 0, commit: 1 });
  return storage;
}

/** The terms of a replica's log from index 2 on. */
export function logTerms(r: Replica): number[] {
  const log = r.node.raft.raftLog;
  const out: number[] = [];
  for (let i = Math.max(2, log.firstIndex()); i <= log.lastIndex(); i++) out.push(log.term(i));
  return out;
}
export { MessageType };
