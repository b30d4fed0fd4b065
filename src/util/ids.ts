/**
 * Identifiers every layer shares. A node id is a positive integer assigned by the metadata group (or
 * given to a founding member); 0 means "none" (no leader known, no vote cast).
 */
export type NodeId = number;

/** No node: no leader known, no vote cast. */
export const NONE: NodeId = 0;
