/**
 * An in-process cluster with the HTTP API on every node, for tests: n founding nodes on loopback, each
 * with its gateway, membership (so the metadata records the nodes and the shard map), a placement
 * driver that takes manual operators (its loop is not started: nothing splits, merges or moves by
 * itself) and, optionally, a shard agent (which records splits and carries merges out).
 */
import type { FastifyInstance } from "fastify";
import { pino } from "pino";
import { Gateway } from "../node/gateway.js";
import { Membership } from "../node/membership.js";
import type { NodeConfig } from "../node/multi-raft.js";
import { PlacementDriver } from "../node/placement-driver.js";
import { ShardAgent } from "../node/shard-agent.js";
import { type TestCluster, startCluster, stopAll, waitFor } from "../node/testing.js";
import { buildApi } from "./server.js";
import { join } from "node:path";
import { IndexService } from "../data/index-service.js";
import { ExpirySweeper } from "../data/expiry.js";

export interface ApiCluster {
  c: TestCluster;
  gateways: Map<number, Gateway>;
  apps: Map<number, FastifyInstance>;
  agents: Map<number, ShardAgent>;
  /** Each node's payload and vector indexes (data/index-service.ts). */
  indexes: Map<number, IndexService>;
  /** Each node's expiry sweeper (data/expiry.ts). */
  sweepers: Map<number, ExpirySweeper>;
  /** Starts membership on every node (the metadata then records the nodes and the shard map). */
  startMembership(): void;
  /** Waits until node 1's metadata shows every node ready and the default collection recorded (collections can be created then). */
  registered(): Promise<void>;
  stop(): Promise<void>;
}

export interface ApiClusterOptions {
  /** Runs a shard agent on every node (records splits, drives merges); default true. */
  agents?: boolean;
  /** Starts membership at once; default true. */
  membership?: boolean;
  /** Runs the placement driver's cycle (operators asked by hand, repair, balance); default false. */
  placement?: boolean;
  node?: Partial<NodeConfig>;
}

export async function startApiCluster(n: number, shards: number, opts: ApiClusterOptions = {}): Promise<ApiCluster> {
  const c = await startCluster(n, shards, { testFaults: true, ...opts.node });
  const gateways = new Map<number, Gateway>();
  const apps = new Map<number, FastifyInstance>();
  const agents = new Map<number, ShardAgent>();
  const indexes = new Map<number, IndexService>();
  const sweepers = new Map<number, ExpirySweeper>();
  const memberships: Membership[] = [];
  const drivers: PlacementDriver[] = [];
  const founders = [...c.nodes.keys()];
  for (const [id, node] of c.nodes) {
    const gateway = new Gateway(node);
    gateways.set(id, gateway);
    memberships.push(new Membership(node, gateway, {
      peer: { host: "127.0.0.1", port: c.ports.get(id)! }, http: { host: "127.0.0.1", port: 1 }, founders, shards, intervalMs: 20,
    }));
    const driver = new PlacementDriver(node, gateway);
    if (opts.placement === true) driver.start();
    drivers.push(driver);
    if (opts.agents !== false) {
      const agent = new ShardAgent(node, gateway);
      agent.start();
      agents.set(id, agent);
    }
    const index = new IndexService(node, gateway, { dir: join(c.dirs.get(id)!, "indexes") });
    index.start();
    indexes.set(id, index);
    const sweeper = new ExpirySweeper(node, gateway);
    sweeper.start();
    sweepers.set(id, sweeper);
    apps.set(id, await buildApi({ node, gateway, logger: pino({ level: "silent" }), testMode: true, indexes: index, placement: driver, dataDir: c.dirs.get(id)! }));
  }
  let membershipStarted = false;
  const startMembership = () => {
    if (membershipStarted) return;
    membershipStarted = true;
    for (const m of memberships) m.start();
  };
  if (opts.membership !== false) startMembership();
  return {
    c, gateways, apps, agents, indexes, sweepers, startMembership,
    async registered() {
      const meta = () => c.nodes.get(1)!.metaState();
      await waitFor("the founders registered and the default collection recorded", () =>
        meta().collections.has("default") && [...meta().nodes.values()].filter((m) => m.worker === "ready").length === n, 20_000);
    },
    async stop() {
      for (const m of memberships) m.stop();
      for (const d of drivers) d.stop();
      for (const a of agents.values()) a.stop();
      for (const app of apps.values()) await app.close();
      for (const sweeper of sweepers.values()) sweeper.stop();
      for (const index of indexes.values()) await index.stop();
      await stopAll(c);
    },
  };
}
