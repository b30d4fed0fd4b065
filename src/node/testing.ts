/** Helpers for tests that run several MultiRaftNodes in one process on loopback. */
import { Role } from "../raft/index.js";
import { MultiRaftNode, type NodeConfig } from "./multi-raft.js";

export async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

import { tempDir } from "../util/temp-dir.js";

export { tempDir };

export interface TestCluster {
  nodes: Map<number, MultiRaftNode>;
  dirs: Map<number, string>;
  ports: Map<number, number>;
  shards: number;
  options: Partial<NodeConfig>;
}

export async function openNode(c: TestCluster, id: number): Promise<MultiRaftNode> {
  const peers = new Map([...c.dirs.keys()].filter((p) => p !== id).map((p) => [p, { host: "127.0.0.1", port: c.ports.get(p) ?? 0 }]));
  const node = await MultiRaftNode.open({
    id, dataDir: c.dirs.get(id)!, listen: { host: "127.0.0.1", port: c.ports.get(id) ?? 0 }, peers, shards: c.shards,
    tickMs: 20, ...c.options,
  });
  c.ports.set(id, await node.start());
  c.nodes.set(id, node);
  return node;
}

/** Clusters not stopped yet: a test that fails midway leaves its nodes to `stopLeftovers`. */
const live = new Set<TestCluster>();

/** Stops every cluster a failed test left running (register with node:test's `after`). */
export async function stopLeftovers(): Promise<void> {
  for (const c of live) await stopAll(c);
}

/** Starts n nodes, then tells each the others' (ephemeral) ports. */
export async function startCluster(n: number, shards: number, options: Partial<NodeConfig> = {}): Promise<TestCluster> {
  const c: TestCluster = { nodes: new Map(), dirs: new Map(), ports: new Map(), shards, options };
  live.add(c);
  for (let id = 1; id <= n; id++) c.dirs.set(id, tempDir(`shoal-node${id}-`));
  for (let id = 1; id <= n; id++) await openNode(c, id);
  for (const [id, node] of c.nodes) {
    for (const [peer, port] of c.ports) if (peer !== id) node.transport.setPeer(peer, { host: "127.0.0.1", port });
  }
  return c;
}

export function leaderOf(c: TestCluster, group: number): MultiRaftNode | null {
  for (const node of c.nodes.values()) {
    const st = node.status().groups[group - 1]!;
    if (st.role === Role.Leader) return node;
  }
  return null;
}

export async function waitForLeaders(c: TestCluster): Promise<void> {
  await waitFor("a leader for every shard", () => {
    for (let g = 1; g <= c.shards; g++) if (leaderOf(c, g) === null) return false;
    return true;
  });
}

/** Puts through the shard's current leader, retrying while leadership moves. */
export async function put(c: TestCluster, key: string, payload: unknown): Promise<number> {
  const anyNode = [...c.nodes.values()][0]!;
  const group = anyNode.shardOf(key);
  const deadline = Date.now() + 10_000;
  for (;;) {
    const leader = leaderOf(c, group);
    if (leader !== null) {
      try {
        const r = await leader.propose(group, { op: "put", key, payload });
        if (r.ok) return r.version;
        throw new Error(`put ${key} failed: ${r.code}`);
      } catch (e) {
        if (Date.now() > deadline) throw e;
      }
    }
    if (Date.now() > deadline) throw new Error(`no leader for shard ${group}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export async function stopAll(c: TestCluster): Promise<void> {
  for (const node of c.nodes.values()) await node.stop();
  c.nodes.clear();
  live.delete(c);
}

/** A state store's waits that a test can hold back (they run beside a node's loop, or on open and stop). */
export type StoreWait = "committed" | "durable" | "flushed";

/**
 * Holds back the named waits of each node's state store until `release()`; each then goes on as the
 * store's own. `asked()` counts the calls made meanwhile; `restore()` puts the store's methods back.
 */
export function holdStoreWaits(nodes: Iterable<MultiRaftNode>, waits: readonly StoreWait[]): { release(): void; restore(): void; asked(): number } {
  let release!: () => void;
  const held = new Promise<void>((resolve) => { release = resolve; });
  let asked = 0;
  const stores = [...nodes].map((n) => (n as unknown as { store: Record<StoreWait, () => Promise<void>> }).store);
  for (const store of stores) {
    for (const wait of waits) {
      const own = store[wait].bind(store);
      store[wait] = async () => {
        asked++;
        await held;
        await own();
      };
    }
  }
  return {
    release,
    asked: () => asked,
    // The store's own methods live on its prototype: removing the instance's puts them back.
    restore: () => { for (const store of stores) for (const wait of waits) delete (store as Partial<Record<StoreWait, unknown>>)[wait]; },
  };
}
