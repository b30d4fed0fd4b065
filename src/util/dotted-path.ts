/**
 * Dotted paths into a JSON payload (`address.city`): how filters name the fields they test and how a
 * collection names the fields it indexes. Pure.
 */

/** Characters of a dotted path. */
export const DOTTED_PATH_LENGTH_MAX = 256;

const SEGMENT = /^[^.]+$/;

/** What is wrong with `key` as a dotted path into a payload, or null when nothing is. */
export function dottedPathProblem(key: unknown): string | null {
  if (typeof key !== "string" || key.length === 0) return "a key is a non-empty dotted path, e.g. `address.city`";
  if (key.length > DOTTED_PATH_LENGTH_MAX) return `a key has at most ${DOTTED_PATH_LENGTH_MAX} characters`;
  for (const segment of key.split(".")) {
    if (!SEGMENT.test(segment)) return `\`${key}\`: every part of a dotted path is non-empty`;
    if (segment === "__proto__") return "`__proto__` is not a field name";
  }
  return null;
}
