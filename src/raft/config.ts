/** Configuration of one Raft replica. Every duration is in ticks: the host decides how long a tick is. */
import { assert } from "../util/assert.js";
import type { Storage } from "./storage.js";
import type { NodeId } from "./types.js";
import { type Logger } from "../util/logger.js";

export enum ReadOnlyOption {
  /** ReadIndex confirmed by a heartbeat round (always safe). */
  Safe = "safe",
  /** Served from a leader lease when valid (needs check-quorum and a bounded clock drift), else Safe. */
  Lease = "lease",
}

/**
 * Deliberate bugs for proving that the simulator finds them. Only ever set by tests; each one is
 * named after the Raft rule it breaks.
 */
export interface Mutations {
  /** Commit an entry of a previous term by counting replicas (breaks Raft §5.4.2, figure 8). */
  commitPreviousTermByCount?: boolean;
  /** A follower acknowledges an Append before the entries are durable. */
  ackBeforePersist?: boolean;
  /** Grant a vote even when already voted for another candidate in this term. */
  grantTwoVotesInTerm?: boolean;
  /** Answer ReadIndex at once without confirming leadership with a quorum. */
  readIndexWithoutQuorum?: boolean;
}

export interface RaftConfig {
  id: NodeId;
  storage: Storage;
  /** Ticks without hearing from a leader before campaigning (randomized in [e, 2e)). */
  electionTicks: number;
  heartbeatTicks: number;
  /** Random integer in [0, n): the only source of randomness. */
  random: (n: number) => number;
  /** Last applied index when restarting (entries up to it are not handed out again). */
  applied?: number;
  checkQuorum?: boolean;
  preVote?: boolean;
  readOnlyOption?: ReadOnlyOption;
  /** Ticks subtracted from the lease for clock drift between nodes. Required for Lease. */
  leaseClockDriftTicks?: number;
  maxSizePerMsgBytes?: number;
  maxInflightMsgs?: number;
  maxInflightBytes?: number;
  maxUncommittedEntriesSizeBytes?: number;
  maxCommittedSizePerReadyBytes?: number;
  maxSnapshotChunkBytes?: number;
  /** Snapshot bytes sent and not yet acknowledged, per follower. */
  maxSnapshotInflightBytes?: number;
  maxPendingReadIndex?: number;
  disableProposalForwarding?: boolean;
  /** Log sink for notable events (elections, config changes); defaults to none. */
  logger?: Logger;
  mutations?: Mutations;
}

export type ResolvedConfig = Required<Omit<RaftConfig, "logger" | "mutations" | "applied">> &
  Pick<RaftConfig, "logger" | "applied"> & { mutations: Mutations };

export function resolveConfig(c: RaftConfig): ResolvedConfig {
  const r: ResolvedConfig = {
    checkQuorum: true,
    preVote: true,
    readOnlyOption: ReadOnlyOption.Safe,
    leaseClockDriftTicks: 0,
    maxSizePerMsgBytes: 1 << 20,
    maxInflightMsgs: 256,
    maxInflightBytes: 32 << 20,
    maxUncommittedEntriesSizeBytes: 64 << 20,
    maxCommittedSizePerReadyBytes: 16 << 20,
    maxSnapshotChunkBytes: 1 << 20,
    maxSnapshotInflightBytes: 4 << 20,
    maxPendingReadIndex: 4096,
    disableProposalForwarding: false,
    ...c,
    mutations: c.mutations ?? {},
  };
  assert(r.id !== 0, "id must not be 0");
  assert(r.heartbeatTicks > 0, "heartbeatTicks must be > 0");
  assert(r.electionTicks > r.heartbeatTicks, "electionTicks must exceed heartbeatTicks");
  assert(r.maxInflightMsgs > 0, "maxInflightMsgs must be > 0");
  assert(r.maxSnapshotChunkBytes > 0, "maxSnapshotChunkBytes must be > 0");
  if (r.readOnlyOption === ReadOnlyOption.Lease) {
    assert(r.checkQuorum, "lease reads need checkQuorum");
    assert(r.leaseClockDriftTicks > 0 && r.leaseClockDriftTicks < r.electionTicks,
      "lease reads need 0 < leaseClockDriftTicks < electionTicks");
  }
  return r;
}
