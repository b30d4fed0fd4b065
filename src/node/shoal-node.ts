/**
 * The composition of one node: its long-lived components (the multi-raft host, whatever serves clients,
 * membership, the shard agent, the placement driver) started in order and stopped in reverse order, so
 * nothing runs against a part that is already gone: the agents stop proposing before the server stops
 * taking requests, and both before the node closes its log and store.
 *
 * The same construction runs in production (cli/start.ts adds the data-dir lock and the HTTP API, which
 * node/ must not import) and in the node-world simulator (a simulated host, no lock, no HTTP).
 */
import type { Address, NodeRole } from "../meta/state.js";
import type { Labels, NodeId } from "../placement/types.js";
import { assert } from "../util/assert.js";
import type { Clock } from "../util/clock.js";
import { type Logger, silentLogger } from "../util/logger.js";
import type { Gateway } from "./gateway.js";
import { Membership } from "./membership.js";
import type { MultiRaftNode } from "./multi-raft.js";
import { PlacementDriver } from "./placement-driver.js";
import { ShardAgent } from "./shard-agent.js";

/** A part of a node with a lifetime: started once, stopped once (stop after a failed start included). */
export interface Component {
  readonly name: string;
  start(): void | Promise<void>;
  stop(): void | Promise<void>;
}

/** The multi-raft host as a component; `port()` is the peer port it listens on once started. */
export function raftComponent(node: MultiRaftNode): Component & { port(): number } {
  let port: number | null = null;
  return {
    name: "multi-raft",
    start: async () => {
      port = await node.start();
    },
    stop: () => node.stop(),
    port: () => {
      assert(port !== null, "the node's peer port is known once it has started");
      return port;
    },
  };
}

export interface AgentOptions {
  /** This node's peer address as others reach it (read when the node registers, after it started listening). */
  peer: Address | (() => Address);
  http: Address;
  labels?: Labels;
  role?: NodeRole;
  /** The founding members (none for a node that joined a running cluster). */
  founders: NodeId[];
  /** The default collection's shard count. */
  shards: number;
  logger?: Logger;
  /** By default the gateway's (the node's host) clock. */
  clock?: Clock;
  /** Membership's reconcile interval (its default otherwise). */
  membershipIntervalMs?: number;
}

/** The background agents every node runs, built but not started. */
export interface NodeAgents {
  readonly membership: Membership;
  readonly shardAgent: ShardAgent;
  readonly placement: PlacementDriver;
  /** In start order: membership (so the node is registered), then the shard agent, then the placement driver. */
  readonly components: readonly Component[];
}

/**
 * Builds a node's agents on its gateway. Constructing them hooks them into the gateway (joins, steps,
 * reports, placement requests), so a gateway serves one set of agents.
 */
export function buildNodeComponents(node: MultiRaftNode, gateway: Gateway, opts: AgentOptions): NodeAgents {
  const logger = opts.logger ?? silentLogger;
  const clock = opts.clock ?? gateway.clock;
  const membership = new Membership(node, gateway, {
    peer: opts.peer, http: opts.http, founders: opts.founders, shards: opts.shards, clock, logger: logger.child({ component: "membership" }),
    ...(opts.labels !== undefined ? { labels: opts.labels } : {}),
    ...(opts.role !== undefined ? { role: opts.role } : {}),
    ...(opts.membershipIntervalMs !== undefined ? { intervalMs: opts.membershipIntervalMs } : {}),
  });
  const shardAgent = new ShardAgent(node, gateway, { clock, logger: logger.child({ component: "shard-agent" }) });
  const placement = new PlacementDriver(node, gateway, { clock, logger: logger.child({ component: "placement" }) });
  return {
    membership, shardAgent, placement,
    components: [
      { name: "membership", start: () => membership.start(), stop: () => membership.stop() },
      { name: "shard-agent", start: () => shardAgent.start(), stop: () => shardAgent.stop() },
      { name: "placement", start: () => placement.start(), stop: () => placement.stop() },
    ],
  };
}

/**
 * A node's components with one lifetime: start() starts them in order (a failure stops what started, in
 * reverse, and rethrows), stop() stops what started in reverse order; each runs at most once.
 */
export class ShoalNode {
  private readonly started: Component[] = [];
  private state: "new" | "starting" | "running" | "stopping" | "stopped" = "new";

  constructor(private readonly components: readonly Component[], private readonly logger: Logger = silentLogger) {
    const names = new Set(components.map((c) => c.name));
    assert(names.size === components.length, "component names are unique");
  }

  /** The components in start order. */
  get parts(): readonly Component[] {
    return this.components;
  }

  async start(): Promise<void> {
    assert(this.state === "new", `a node starts once (it is ${this.state})`);
    this.state = "starting";
    for (const c of this.components) {
      try {
        await c.start();
      } catch (e) {
        this.logger.error({ err: e, component: c.name }, `starting ${c.name} failed: stopping what started`);
        await this.stop();
        throw e;
      }
      this.started.push(c);
    }
    this.state = "running";
  }

  /** Stops what started, newest first; a component whose stop fails is logged and the rest still stop. */
  async stop(): Promise<void> {
    if (this.state === "stopping" || this.state === "stopped") return;
    this.state = "stopping";
    let first: unknown = null;
    for (let c = this.started.pop(); c !== undefined; c = this.started.pop()) {
      try {
        await c.stop();
      } catch (e) {
        this.logger.error({ err: e, component: c.name }, `stopping ${c.name} failed`);
        first ??= e;
      }
    }
    this.state = "stopped";
    if (first !== null) throw first;
  }
}
