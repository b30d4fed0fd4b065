export * from "./types.js";
export * from "./storage.js";
export * from "./config.js";
export * from "./confchange.js";
export { RaftNode, type Ready, type Status, type SoftState, type PeerStatus } from "./raft-node.js";
export { ProposalDroppedError, type LeaderTransferResult, type Raft } from "./raft.js";
export { AssertionError } from "../util/assert.js";
export { ProgressState } from "./progress.js";
export { confChangeRefusal } from "./raft-leader.js";
