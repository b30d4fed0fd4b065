import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { checkOperations, detectFormat, kvModel, operationsFromEvents, parseHistory, registerModel } from "./index.js";

/** The corpus of histories with known verdicts, in ../shared beside the repository (or $SHOAL_CORPUS). */
export function corpusDir(): string {
  if (process.env.SHOAL_CORPUS) return process.env.SHOAL_CORPUS;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 8; i++) {
    const candidate = join(dir, "shared", "corpus", "linearizability", "porcupine");
    if (existsSync(candidate)) return candidate;
    dir = resolve(dir, "..");
  }
  throw new Error("linearizability corpus not found: set SHOAL_CORPUS or place shared/ beside the repository");
}

test("reproduces every verdict of the external linearizability corpus", () => {
  const dir = corpusDir();
  const expected = JSON.parse(readFileSync(join(dir, "expected.json"), "utf8")) as Record<string, string>;
  const files = Object.keys(expected);
  assert.equal(files.length, 108, "the corpus lists 108 histories");
  const wrong: string[] = [];
  for (const file of files) {
    const text = readFileSync(join(dir, file), "utf8");
    const format = detectFormat(text);
    const model = format === "edn" ? kvModel : registerModel;
    const result = checkOperations(model as typeof registerModel, operationsFromEvents(parseHistory(text, format)));
    if (result.verdict !== expected[file]) wrong.push(`${file}: expected ${expected[file]}, got ${result.verdict}`);
  }
  assert.deepEqual(wrong, []);
});
