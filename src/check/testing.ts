/** Test helpers for the checker (not imported by production code). */
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

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
