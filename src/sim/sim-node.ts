/**
 * One simulated server: a RaftNode over a MemoryStorage that stands for its disk, plus the key-value
 * state machine. Ready batches are handled as a real host would, except that the disk write takes
 * simulated time: messages that may leave early go at once, the write completes later, and a crash in
 * between loses the write (or, if the disk tore it, keeps only a prefix of its entries).
 */
import {
  type ConfState,
  type Entry,
  type Message,
  type NodeId,
  type RaftConfig,
  type Ready,
  EntryType,
  MemoryStorage,
  ProposalDroppedError,
  RaftNode,
  decodeConfChange,
} from "../raft/index.js";
import type { Rng } from "../util/rng.js";
import { type CommandResult, KvStateMachine, decodeCommand } from "./state-machine.js";

export interface NodeHost {
  now(): number;
  send(from: NodeId, msgs: Message[]): void;
  /** Calls back after delayMs unless the node crashed meanwhile. */
  after(node: SimNode, delayMs: number, fn: () => void): void;
  onApplied(node: SimNode, entry: Entry, isSnapshot: boolean): void;
}

export interface SimNodeOptions {
  raftConfig: Omit<RaftConfig, "id" | "storage" | "random" | "applied">;
  /** Disk write latency range. */
  diskLatencyMs: [number, number];
  /** Take a snapshot and compact once this many entries were applied since the last one. */
  snapshotEveryEntries: number;
  /** Entries kept in the log behind a snapshot (for slow followers). */
  keepEntriesAfterSnapshot: number;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

type ReadWaiter = { index: number | null; key: string; done: (value: string | null) => void };

export class SimNode {
  readonly id: NodeId;
  /** The disk: survives crashes. */
  readonly disk = new MemoryStorage();
  raft: RaftNode | null = null;
  sm = new KvStateMachine();
  /** Configuration as of the applied index (what a snapshot must carry). */
  confState: ConfState | null = null;
  appliedIndex = 0;
  incarnation = 0;
  private writing: Ready | null = null;
  private readonly requestWaiters = new Map<number, (r: CommandResult | null, index: number) => void>();
  private readonly readWaiters = new Map<string, ReadWaiter>();
  private readonly host: NodeHost;
  private readonly rng: Rng;
  private readonly opts: SimNodeOptions;
  /** Set once removed from the configuration for good. */
  removed = false;

  constructor(id: NodeId, host: NodeHost, rng: Rng, opts: SimNodeOptions) {
    this.id = id;
    this.host = host;
    this.rng = rng;
    this.opts = opts;
  }

  get up(): boolean {
    return this.raft !== null;
  }

  start(): void {
    this.incarnation++;
    const snap = this.disk.snapshot();
    this.sm = KvStateMachine.restore(snap.data);
    this.appliedIndex = snap.meta.index;
    this.confState = snap.meta.index > 0 ? snap.meta.confState : null;
    this.raft = new RaftNode({
      ...this.opts.raftConfig,
      id: this.id,
      storage: this.disk,
      random: this.rng.asRandomFn(),
      applied: this.appliedIndex,
    });
    this.writing = null;
  }

  crash(): void {
    const rd = this.writing;
    if (rd !== null && rd.snapshot === null && rd.entries.length > 1 && this.rng.chance(0.5)) {
      // A torn write: a prefix of the entries reached the disk, the hard state did not.
      this.disk.append(rd.entries.slice(0, this.rng.range(1, rd.entries.length - 1)));
    }
    this.raft = null;
    this.writing = null;
    for (const done of this.requestWaiters.values()) done(null, 0);
    this.requestWaiters.clear();
    for (const w of this.readWaiters.values()) w.done(null);
    this.readWaiters.clear();
  }

  /** Proposes a command; returns false if it was refused at once (it will never apply). */
  propose(req: number, data: Uint8Array, done: (r: CommandResult | null, index: number) => void): boolean {
    if (this.raft === null) return false;
    try {
      this.raft.propose(data);
    } catch (e) {
      if (e instanceof ProposalDroppedError) return false;
      throw e;
    }
    this.requestWaiters.set(req, done);
    this.pump();
    return true;
  }

  /** Abandons a waiting request (client timeout). */
  forget(req: number): void {
    this.requestWaiters.delete(req);
  }

  readIndex(ctx: string, key: string, done: (value: string | null) => void): void {
    if (this.raft === null) {
      done(null);
      return;
    }
    this.readWaiters.set(ctx, { index: null, key, done });
    this.raft.readIndex(encoder.encode(ctx));
    this.pump();
  }

  forgetRead(ctx: string): void {
    this.readWaiters.delete(ctx);
  }

  step(m: Message): void {
    if (this.raft === null) return;
    this.raft.step(m);
    this.pump();
  }

  tick(): void {
    if (this.raft === null) return;
    this.raft.tick();
    this.pump();
  }

  /** Starts handling a Ready if one is available and no write is in progress. */
  pump(): void {
    const raft = this.raft;
    if (raft === null || this.writing !== null || !raft.hasReady()) return;
    const rd = raft.ready();
    this.writing = rd;
    this.host.send(this.id, rd.messages);
    const [lo, hi] = this.opts.diskLatencyMs;
    const needsDisk = rd.entries.length > 0 || rd.hardState !== null || rd.snapshot !== null;
    const delay = needsDisk ? this.rng.range(lo, hi) : 0;
    const incarnation = this.incarnation;
    this.host.after(this, delay, () => {
      if (this.incarnation !== incarnation || this.writing !== rd) return;
      this.finishReady(rd);
    });
  }

  private finishReady(rd: Ready): void {
    const raft = this.raft!;
    if (rd.snapshot !== null) {
      this.disk.applySnapshot(rd.snapshot);
      this.sm = KvStateMachine.restore(rd.snapshot.data);
      this.appliedIndex = rd.snapshot.meta.index;
      this.confState = rd.snapshot.meta.confState;
      this.host.onApplied(this, {
        index: rd.snapshot.meta.index, term: rd.snapshot.meta.term, type: EntryType.Normal, data: new Uint8Array(0),
      }, true);
    }
    this.disk.append(rd.entries);
    if (rd.hardState !== null) this.disk.setHardState(rd.hardState);
    this.host.send(this.id, rd.messagesAfterPersist);
    for (const e of rd.committedEntries) this.apply(e);
    for (const rs of rd.readStates) {
      const ctx = decoder.decode(rs.context);
      const w = this.readWaiters.get(ctx);
      if (w !== undefined) w.index = rs.index;
    }
    raft.advance();
    this.writing = null;
    this.serveReads();
    this.maybeSnapshot();
    this.pump();
  }

  private apply(e: Entry): void {
    if (e.index <= this.appliedIndex) return; // covered by a snapshot installed in this Ready
    this.appliedIndex = e.index;
    if (e.type === EntryType.ConfChange) {
      this.confState = this.raft!.applyConfChange(decodeConfChange(e.data));
    } else if (e.data.byteLength > 0) {
      const cmd = decodeCommand(e.data);
      const result = this.sm.apply(cmd);
      const done = this.requestWaiters.get(cmd.req);
      if (done !== undefined) {
        this.requestWaiters.delete(cmd.req);
        done(result, e.index);
      }
    }
    this.host.onApplied(this, e, false);
  }

  private serveReads(): void {
    for (const [ctx, w] of this.readWaiters) {
      if (w.index !== null && w.index <= this.appliedIndex) {
        this.readWaiters.delete(ctx);
        w.done(this.sm.read(w.key));
      }
    }
  }

  private maybeSnapshot(): void {
    const snapIndex = this.disk.snapshot().meta.index;
    if (this.appliedIndex - snapIndex < this.opts.snapshotEveryEntries || this.confState === null) return;
    // Never snapshot past what is durable: the applied entries may be ahead of the disk's log only
    // when a snapshot was just installed, which the check above excludes.
    if (this.appliedIndex > this.disk.lastIndex()) return;
    this.disk.createSnapshot(this.appliedIndex, this.confState, this.sm.snapshot());
    this.disk.compact(Math.max(snapIndex, this.appliedIndex - this.opts.keepEntriesAfterSnapshot));
  }
}
