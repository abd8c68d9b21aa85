// Minifies the package's ES modules in place (scripts/build-wasm.sh): the wasm-bindgen glue,
// the entry and the JS facade. Oxc's minifier from the `rolldown` devDependency; module
// syntax, export names and function/class `name`s are kept. About 40% of the JS gzipped.
//
// Usage: node scripts/minify-js.mjs FILE.js...
import fs from "node:fs";
import { minifySync } from "rolldown/utils";

const keepNames = { function: true, class: true };
for (const file of process.argv.slice(2)) {
  const source = fs.readFileSync(file, "utf8");
  const out = minifySync(file, source, {
    module: true,
    compress: { keepNames },
    mangle: { toplevel: true, keepNames },
  });
  if (out.errors?.length) {
    console.error(`minify-js: ${file}: ${out.errors.map((e) => e.message).join("; ")}`);
    process.exit(1);
  }
  fs.writeFileSync(file, out.code);
}
