#!/usr/bin/env node
// The devmove command (bin/devmove starts Node on this file). Kept tiny: the command line itself is
// ./cli, which `npm run build` bundles into one file (scripts/bundle-cli.js), so that Node reads and
// compiles one file, and on Node >= 22.1 takes its compiled code from the module compile cache.
//
// The first statement installs the SIGUSR1 guard (signal-guard.ts): keep it first.
require('./signal-guard');
{
  // Node >= 22.1: V8's code for the modules required from here on is cached on disk
  // (os.tmpdir()/node-compile-cache, or NODE_COMPILE_CACHE; NODE_DISABLE_COMPILE_CACHE=1 turns it
  // off). Node 20 has no such cache. README, Performance: start-up.
  const nodeModule = require('node:module') as { enableCompileCache?: () => unknown };
  nodeModule.enableCompileCache?.();
  (require('./cli') as typeof import('./cli')).run(process.argv.slice(2));
}
