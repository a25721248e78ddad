// Bundles the command line (dist/cli/cli.js and every module of dist/ it requires) into that one
// file, in place, after tsc. The CLI then reads and compiles one file
// instead of ~20 at every start (README, Start-up). The library (dist/index.js) stays unbundled.
// Run by `npm run build` and `prepare` (so by `npm ci` and `npm pack`); after a bare `tsc`, the
// unbundled dist/cli/cli.js runs the same code from separate files.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const esbuild = require('esbuild');

const CLI = path.join(__dirname, '..', 'dist', 'cli', 'cli.js');
const BANNER = '// devmove CLI bundle (scripts/bundle-cli.js): do not edit; built from src/ by `npm run build`';

if (fs.readFileSync(CLI, 'utf8').startsWith(BANNER)) {
  throw new Error(`${CLI} is already a bundle: run tsc first (npm run build does both)`);
}
esbuild.build({
  entryPoints: [CLI],
  outfile: CLI,
  allowOverwrite: true,
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  // devmove's own modules only: dependencies (node-gyp-build, jsonc-parser) stay packages, loaded
  // from node_modules when needed (the JSON parser only by `devmove run`).
  packages: 'external',
  // Smaller source for V8 to pre-parse; identifiers are kept, so stack traces stay readable.
  minifyWhitespace: true,
  minifySyntax: true,
  // tsc's maps are read, so the bundle's map points at src/*.ts.
  sourcemap: 'linked',
  banner: { js: BANNER },
  // The SIGUSR1 guard stays its own module: main.js loads it first, before this bundle, and the
  // copy's statistics reporter must register with that same instance.
  plugins: [
    {
      name: 'signal-guard-external',
      setup(build) {
        build.onResolve({ filter: /^\.\/signal-guard$/ }, (args) => ({ path: args.path, external: true }));
      },
    },
  ],
  logLevel: 'warning',
}).catch(() => process.exit(1));
