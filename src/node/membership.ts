/**
 * Keeps this node's entry in the metadata group true (MEM-1, MEM-5), for a cluster started from a
 * static peer list: the node registers itself (with its own id, addresses, labels and role), then
 * reports itself ready; it is a voter of the metadata group from the start. The metadata leader also
 * records the `default` collection's shard map once every founding member is registered.
 *
 * Joining a running cluster (`--join`), promotion of learners and the placement driver's loop build on
 * this and are not built yet.
 *
 * Lifecycle: start() runs a reconcile pass every `intervalMs`; stop() ends it. A pass proposes at most
 * one command per kind of fix, so a slow metadata group is never flooded; failures are retried on the
 * next pass.
 */
import type { Address, MetaCommand, NodeRole } from "../meta/state.js";
import type { Labels, NodeId } from "../placement/types.js";
import type { Gateway } from "./gateway.js";
import { META_GROUP, type MultiRaftNode } from "./multi-raft.js";

export interface MembershipOptions {
  peer: Address;
  http: Address;
  labels?: Labels;
  role?: NodeRole;
  /** The founding members (this node included) and the default collection's shard count. */
  founders: NodeId[];
  shards: number;
  intervalMs?: number;
  logger?: (line: string) => void;
}

export class Membership {
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  /** Passes made (for tests and metrics). */
  passes = 0;

  constructor(private readonly node: MultiRaftNode, private readonly gateway: Gateway, private readonly opts: MembershipOptions) {}

  start(): void {
    if (this.timer !== null) return;
    this.timer = setInterval(() => void this.pass(), this.opts.intervalMs ?? 500);
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /** One reconcile pass (no-op while the previous one is still waiting on the metadata group). */
  async pass(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      for (const cmd of this.fixes()) {
        const r = await this.gateway.proposeMeta(cmd);
        if (!r.ok) this.opts.logger?.(`membership: ${cmd.kind} refused: ${r.code}: ${r.message}`);
      }
    } catch (e) {
      this.opts.logger?.(`membership: ${(e as Error).message}; retrying`);
    } finally {
      this.passes++;
      this.running = false;
    }
  }

  /** What differs between the metadata and this node's reality, as commands that fix it. */
  private fixes(): MetaCommand[] {
    if (this.node.leaderOf(META_GROUP) === 0) return [];
    const meta = this.node.metaState();
    const self = meta.nodes.get(this.node.id);
    const atMs = Date.now();
    const out: MetaCommand[] = [];
    if (self === undefined) {
      out.push({
        kind: "register-node", id: this.node.id, peer: this.opts.peer, http: this.opts.http, labels: this.opts.labels ?? {},
        role: this.opts.role ?? "standard", atMs,
      });
      return out;
    }
    // A founding member holds its replicas and votes in the metadata group from the start.
    if (self.worker === "joining") out.push({ kind: "set-worker-state", node: self.id, state: "ready", atMs });
    if (self.lifecycle !== "voter") out.push({ kind: "set-lifecycle", node: self.id, lifecycle: "voter", atMs });
    const founders = [...this.opts.founders].sort((a, b) => a - b);
    if (this.node.leaderOf(META_GROUP) === this.node.id && !meta.collections.has("default") && founders.every((id) => meta.nodes.has(id))) {
      // Static membership: every founder holds a voter replica of every shard.
      out.push({ kind: "create-collection", name: "default", replicationFactor: founders.length, placements: Array.from({ length: this.opts.shards }, () => founders), atMs });
    }
    return out;
  }
}
