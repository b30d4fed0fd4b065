/** What tests of every room share. */
import assert from "node:assert/strict";

/** An error that says which part of an input was wrong, and with which machine-readable code. */
interface PathError extends Error {
  readonly code: string;
  readonly path: string;
}

/**
 * Asserts that `run` refuses its input with a `type` error of `code` naming `path`, whose message
 * matches `words`; `input` shows in the failure's message.
 */
export function assertRefused(run: () => unknown, type: abstract new (...args: never[]) => PathError, code: string, path: string, words: RegExp, input: unknown): void {
  assert.throws(run, (e: unknown) => {
    assert.ok(e instanceof type, `a ${type.name} for ${JSON.stringify(input)}`);
    assert.equal(e.code, code);
    assert.equal(e.path, path, `the path for ${JSON.stringify(input)}`);
    assert.match(e.message, words);
    return true;
  });
}
