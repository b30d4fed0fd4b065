/** Errors and small enums shared by the Raft modules. */

/** A proposal was refused: no leader, a transfer under way, or the uncommitted budget is full. */
export class ProposalDroppedError extends Error {
  override name = "ProposalDroppedError";
}

/** Why a replica starts an election. */
export enum CampaignType {
  PreElection = "pre-election",
  Election = "election",
  Transfer = "transfer",
}

