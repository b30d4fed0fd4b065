/**
 * Assertions that stay on in production (TigerBeetle style): a broken invariant in consensus code means
 * the node's state can no longer be trusted, so we stop instead of carrying on with corrupted state.
 */
export class AssertionError extends Error {
  override name = "AssertionError";
}

export function assert(condition: boolean, message: string | (() => string)): asserts condition {
  if (!condition) {
    throw new AssertionError(typeof message === "string" ? message : message());
  }
}

export function unreachable(what: never): never {
  throw new AssertionError(`unreachable: ${String(what)}`);
}
