/**
 * Deliberate bugs, for proving that the node-world simulator (sim/world/) catches what it claims to:
 * each is off in production and switched on only by `shoal sim --world node --mutation <name>`. A
 * mutation the simulator does not flag within a bounded number of seeds means a check is missing.
 */
export const NODE_MUTATIONS = ["split-restarts-versions", "gateway-skips-epoch", "ack-before-apply", "merge-drops-last-batch"] as const;

export type NodeMutation = (typeof NODE_MUTATIONS)[number];

/**
 * - split-restarts-versions: a split child restarts its version space (node/shard-apply.ts).
 * - gateway-skips-epoch: a gateway routes with its shard map but the shard does not check the record is
 *   still in its range at the map's epoch (node/gateway.ts, node/multi-raft*).
 * - ack-before-apply: a write is acknowledged before it is applied (node/multi-raft*).
 * - merge-drops-last-batch: a merge loses the source's last batch of records (node/shard-apply.ts).
 */
export type NodeMutations = ReadonlySet<NodeMutation>;

export const NO_MUTATIONS: NodeMutations = new Set();

/**
 * The mark a write carries under the `gateway-skips-epoch` mutation: the shard that applies it does not
 * check that the record's id is still in its range (shard-apply.ts), so a write routed with a stale
 * shard map lands in a shard that no longer owns the id. Never set in production.
 */
export const RANGE_UNCHECKED = "rangeUnchecked";
