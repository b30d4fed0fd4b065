/**
 * The host: everything a node does to the outside world comes in through it — clock and timers,
 * randomness, the WAL and the state store, the transport, the logger. Production wires the real ones
 * (realHost); the simulator's node world (sim/world/) wires simulated ones: a disk that loses what was
 * not synced when the node crashes and can fail or corrupt a write, a network that delays, drops,
 * duplicates, reorders and partitions, and a virtual clock driven by a seeded scheduler. The node's code
 * is the same in both; only the host differs (FoundationDB's simulation, TigerBeetle's VOPR).
 *
 * A crash is the host dropping a node without stop(); a restart is opening a node again on the same
 * host disk (see sim/world/).
 */
import type { Clock } from "../util/clock.js";
import { systemClock } from "../util/clock.js";
import type { Logger } from "../util/logger.js";
import { silentLogger } from "../util/logger.js";
import { type Random, systemRandom } from "../util/rng.js";
import { StateStore } from "../storage/state-store.js";
import { type GroupLog, Wal } from "../storage/wal.js";
import { Transport, type TransportOptions } from "../transport/transport.js";

/** What the multi-raft host needs of a write-ahead log (storage/wal.ts). */
export type NodeWal = Pick<Wal, "append" | "holdingBack" | "close">;

/** What the multi-raft host needs of a state store (storage/state-store.ts). */
export type NodeStateStore = Pick<StateStore,
  "apply" | "commitIfDue" | "committed" | "durable" | "flushed" | "get" | "scan" | "packed" | "packedPart" | "applied" | "confState" | "shardState" | "unlogged" | "fillingFrom" | "installed" | "groups" |
  "snapshot" | "installSnapshot" | "dropGroup" | "close" | "commits">;

/** What a node needs of its transport (transport/transport.ts). */
export type NodeTransport = Pick<Transport, "start" | "stop" | "send" | "flush" | "setPeer" | "setFaults" | "stats" | "breakerState">;

export interface NodeHost {
  readonly clock: Clock;
  readonly random: Random;
  readonly logger: Logger;
  /** Opens (recovering) the WAL in `dir`: the log and the groups' logs as recovered. */
  openWal(dir: string, logger: Logger): Promise<{ wal: NodeWal; groups: Map<number, GroupLog> }>;
  /** Opens the state store at `path`. */
  openStateStore(path: string): NodeStateStore;
  /** A transport for this node (not started). */
  createTransport(opts: TransportOptions): NodeTransport;
}

/** The real host: files in the data directory, TCP, the process's clock and randomness. */
export function realHost(opts: { logger?: Logger } = {}): NodeHost {
  return {
    clock: systemClock,
    random: systemRandom,
    logger: opts.logger ?? silentLogger,
    openWal: async (dir, logger) => Wal.open({ dir, logger }),
    openStateStore: (path) => StateStore.open({ path }),
    createTransport: (o) => new Transport(o),
  };
}
