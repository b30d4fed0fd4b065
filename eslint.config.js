// Lint rules: the recommended sets of ESLint and typescript-eslint, plus a ban on the ambient
// clock and randomness inside the pure layers (raft, placement, check), which must take them as inputs.
import js from "@eslint/js";
import tseslint from "typescript-eslint";

const impure = [
  { name: "Date", message: "pure layers take time as an input" },
  { name: "setTimeout", message: "pure layers have no timers" },
  { name: "setInterval", message: "pure layers have no timers" },
];

export default tseslint.config(
  { ignores: ["dist/**", "node_modules/**"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@typescript-eslint/no-non-null-assertion": "off",
    },
  },
  {
    files: ["src/raft/**/*.ts", "src/check/**/*.ts", "src/placement/**/*.ts", "src/meta/**/*.ts"],
    ignores: ["**/*.test.ts"],
    rules: {
      "no-restricted-globals": ["error", ...impure],
      "no-restricted-properties": ["error", { object: "Math", property: "random", message: "pure layers take randomness as an input" }],
      "no-restricted-imports": ["error", { patterns: ["node:fs", "node:net", "node:http", "fs", "net", "http"] }],
    },
  },
);
