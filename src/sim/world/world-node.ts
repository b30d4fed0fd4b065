/**
 * One node of the node world: the production composition (multi-raft host, gateway, membership, shard
 * agent, placement driver; node/shoal-node.ts) opened on a simulated host. Its disk outlives it: a crash
 * abandons the node's objects without stop() (their clock is dead, their transport silenced, the disk
 * loses what was not synced), and a restart opens new objects on the same disk, as a process would.
 */
import { Gateway } from "../../node/gateway.js";
import type { NodeHost } from "../../node/host.js";
import { MultiRaftNode } from "../../node/multi-raft.js";
import type { NodeMutations } from "../../node/mutations.js";
import { ShoalNode, buildNodeComponents, raftComponent } from "../../node/shoal-node.js";
import type { PeerAddress } from "../../transport/transport.js";
import { assert } from "../../util/assert.js";
import { silentLogger } from "../../util/logger.js";
import { Rng } from "../../util/rng.js";
import { SimDisk } from "./disk.js";
import { type SimNetwork, nodeOwner } from "./network.js";
import type { SimScheduler } from "./scheduler.js";

/** Applied entries after which a simulated node compacts a group's log. */
const SIM_COMPACT_AFTER_ENTRIES = 50;
/** Keys a split's fill walks a turn in a simulated node: few, so that fills span many turns (and, not eager, simulated time). */
const SIM_SPLIT_FILL_KEYS_PER_TURN = 1;

/** A node's address in the world: the network routes by node id, the port only names it. */
export function simAddress(id: number): PeerAddress {
  return { host: "sim", port: 7000 + id };
}

export interface WorldNodeOptions {
  id: number;
  /** The founding members; empty for a node that joined a running cluster. */
  founders: number[];
  /** A node that joined: the members the cluster named (as `shoal start --join` keeps them). */
  joinedVia?: number[];
  shards: number;
  mutations: NodeMutations;
  scheduler: SimScheduler;
  network: SimNetwork;
  /** The node's own stream of randomness (its disk faults and its Raft timeouts). */
  rng: Rng;
}

export class WorldNode {
  readonly id: number;
  readonly disk: SimDisk;
  /** Incarnations started so far (a restart is a new one). */
  incarnation = 0;
  node: MultiRaftNode | null = null;
  gateway: Gateway | null = null;
  private shoal: ShoalNode | null = null;
  /** Set while a start is under way or the node runs; cleared by a crash. */
  up = false;
  /** Removed from the cluster (drained, then removed): stopped for good, outside every check. */
  removed = false;

  constructor(private readonly opts: WorldNodeOptions) {
    this.id = opts.id;
    this.disk = new SimDisk(opts.rng.fork());
  }

  private owner(): string {
    return nodeOwner(this.id);
  }

  /** Opens the node on its disk and starts its components (as `shoal start` does, minus HTTP and the lock). */
  async start(): Promise<void> {
    assert(!this.up, () => `node ${this.id} is running already`);
    this.up = true;
    this.incarnation++;
    const incarnation = this.incarnation;
    const o = this.opts;
    const host: NodeHost = {
      clock: o.scheduler.clockFor(this.owner()),
      random: o.rng.fork(),
      logger: silentLogger,
      openWal: (dir, logger) => this.disk.openWal(dir, logger),
      openStateStore: (path) => this.disk.openStateStore(path),
      createTransport: (t) => o.network.transportFor(this.id, t),
    };
    const joined = o.joinedVia !== undefined;
    const peers = new Map((o.joinedVia ?? o.founders).filter((p) => p !== this.id).map((p) => [p, simAddress(p)] as const));
    const node = await MultiRaftNode.open({
      id: this.id, dataDir: `/sim/node${this.id}`, listen: simAddress(this.id), peers, shards: o.shards, mutations: o.mutations,
      // Logs compact often (production: every 10,000 entries), so that runs of seconds send snapshots to
      // lagging replicas and delete WAL segments.
      compactAfterEntries: SIM_COMPACT_AFTER_ENTRIES, splitFillKeysPerTurn: SIM_SPLIT_FILL_KEYS_PER_TURN, splitFillTurnsEager: false,
      ...(joined ? { join: true } : {}),
    }, host);
    if (this.incarnation !== incarnation || !this.up) return; // crashed while opening
    const gateway = new Gateway(node);
    const agents = buildNodeComponents(node, gateway, {
      peer: simAddress(this.id), http: { host: "sim", port: 8000 + this.id }, founders: o.founders, shards: o.shards,
    });
    const shoal = new ShoalNode([raftComponent(node), ...agents.components]);
    this.node = node;
    this.gateway = gateway;
    this.shoal = shoal;
    await shoal.start();
  }

  /** The process dies: nothing is stopped, timers never fire again, unsynced writes are lost. */
  crash(): void {
    assert(this.up, () => `node ${this.id} is not running`);
    this.up = false;
    this.opts.scheduler.cancelOwner(this.owner());
    this.opts.network.nodeDown(this.id);
    this.disk.crash();
    this.node = null;
    this.gateway = null;
    this.shoal = null;
  }

  /** A graceful stop (the end of a run), components in reverse order. */
  async stop(): Promise<void> {
    if (!this.up || this.shoal === null) return;
    const shoal = this.shoal;
    this.up = false;
    await shoal.stop();
  }

  /** Whether the node runs and serves (started, not failed, not removed). */
  serving(): boolean {
    return this.up && !this.removed && this.node !== null && this.node.failure === null;
  }

  /** The node was removed from the cluster: it stops for good (as its operator would shut it down). */
  retire(): void {
    this.removed = true;
    if (this.up) this.crash();
  }
}
