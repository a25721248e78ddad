// Preloaded by `npm run bench -- --only cold` (node -r bench/cold-hook.js dist/cli/main.js ...): times
// where a devmove process spends its start-up, in ms since Node's time origin, and prints one line
// `DEVMOVE_COLD_HOOK {json}` on stderr at exit. It only observes: module loads are timed by
// wrapping Module._load, the native CopyJob and checkCopySafety by wrapping them.
'use strict';

const Module = require('node:module');
const { basename } = require('node:path');
const { writeSync } = require('node:fs');

const now = () => performance.now();
const marks = { preload: now() };
// CPU time as well as wall time: on a shared machine the wall clock of a few milliseconds mostly
// measures the neighbours, the CPU this process used much less so.
const cpuMs = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };
marks.preloadCpuMs = cpuMs();
const ours = {}; // exclusive load time per module of ours (ms)
let ourLoadMs = 0; // the modules cli/main.js requires, not cli/main.js itself
let mainMs = 0;
let addonMs = 0;
let safetyMs = 0;
const stack = [];
const load = Module._load;

Module._load = function (request, parent, isMain) {
  const start = now();
  stack.push(0);
  let exported;
  try {
    exported = load.apply(this, arguments);
  } finally {
    const inclusive = now() - start;
    const own = inclusive - stack.pop();
    if (stack.length) stack[stack.length - 1] += inclusive;
    const name = basename(request);
    if (request.endsWith('.node')) addonMs += own;
    else if (isMain) mainMs += own; // cli/main.js: its compilation, and main() up to its first await
    else if (request.startsWith('.') || request.startsWith('/')) {
      ours[name] = (ours[name] ?? 0) + own;
      ourLoadMs += own;
    }
  }
  if (request.endsWith('.node') && typeof exported?.CopyJob === 'function' && !exported.CopyJob.coldHook) {
    const NativeCopyJob = exported.CopyJob;
    function CopyJob(plan, onEvent) {
      marks.jobCreated = now();
      marks.jobCreatedCpuMs = cpuMs();
      return new NativeCopyJob(plan, (event) => {
        if (event.type === 'done') {
          marks.jobDone = now();
          marks.engineMs = event.report.seconds * 1000;
        }
        return onEvent(event);
      });
    }
    CopyJob.coldHook = true;
    exported = Object.create(exported, { CopyJob: { value: CopyJob } });
  }
  if (basename(request) === 'safety' && typeof exported?.checkCopySafety === 'function' && !exported.checkCopySafety.coldHook) {
    const check = exported.checkCopySafety;
    const timed = function () {
      const start = now();
      try {
        return check.apply(this, arguments);
      } finally {
        safetyMs += now() - start;
      }
    };
    timed.coldHook = true;
    exported.checkCopySafety = timed;
  }
  return exported;
};

process.on('exit', () => {
  const t = performance.nodeTiming;
  const out = {
    timeOrigin: performance.timeOrigin,
    v8Start: t.v8Start,
    bootstrapComplete: t.bootstrapComplete,
    ...marks,
    ourModuleLoadMs: ourLoadMs,
    mainModuleMs: mainMs,
    ourModules: ours,
    addonLoadMs: addonMs,
    safetyChecksMs: safetyMs,
    exitEvent: now(),
  };
  writeSync(2, `DEVMOVE_COLD_HOOK ${JSON.stringify(out)}\n`);
});
