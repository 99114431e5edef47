// Lint rules: typescript-eslint's recommended set; formatting is Prettier's job.
import js from "@eslint/js";
import globals from "globals";
import tseslint from "typescript-eslint";

export default tseslint.config(
    { ignores: ["node_modules/", "dist/"] },
    js.configs.recommended,
    ...tseslint.configs.recommended,
    { languageOptions: { globals: globals.node } },
    {
        // `const { dropped, ...kept } = value` is how a field is left out of a copy.
        rules: { "@typescript-eslint/no-unused-vars": ["error", { ignoreRestSiblings: true }] },
    },
    {
        // A function does one job and reads on one screen (tests' describe blocks excepted).
        files: ["*.ts", "core/**", "host/**", "tools/**", "bench/**", "harness/**"],
        rules: { "max-lines-per-function": ["error", { max: 80 }] },
    },
    {
        // The harness and tests handle provider inputs as the engine passes them: untyped data.
        files: ["harness/**", "tests/**"],
        rules: { "@typescript-eslint/no-explicit-any": "off" },
    },
    {
        // CommonJS: the talosctl stand-in is run by node as it is.
        files: ["**/*.js"],
        rules: { "@typescript-eslint/no-require-imports": "off" },
    },
);
