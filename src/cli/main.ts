#!/usr/bin/env node
// The devmove command (package.json "bin"). Kept tiny: everything else is in ./cli, which
// `npm run build` bundles into one file (scripts/bundle-cli.js), so that Node reads and compiles
// one file, and on Node >= 22.1 takes its compiled code from the module compile cache.
// The first statement of this file is reserved for process-level guards that must run before
// anything else.
{
  // Node >= 22.1: V8's code for the modules required from here on is cached on disk
  // (os.tmpdir()/node-compile-cache, or NODE_COMPILE_CACHE; NODE_DISABLE_COMPILE_CACHE=1 turns it
  // off), which halves loading the CLI (README, Start-up). Node 20 has no such cache.
  const nodeModule = require('node:module') as { enableCompileCache?: () => unknown };
  nodeModule.enableCompileCache?.();
  (require('./cli') as typeof import('./cli')).run(process.argv.slice(2));
}
