// README's quick start runs `npm run demo`: it must really copy and verify.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { describe, expect, it } from 'vitest';

import { loopIsAttached } from '../helpers/devices';

describe('the demo (README quick start)', () => {
  it('npm run demo runs the CLI demo: copies, verifies by SHA-256 and cleans up', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    expect(pkg.scripts.demo).toBe('bin/devmove demo');
    const run = spawnSync(path.join(__dirname, '..', '..', 'bin', 'devmove'), ['demo'], { encoding: 'utf8' });
    const out = run.stdout + run.stderr;
    expect(run.status, out).toBe(0);
    expect(out).toMatch(/devmove demo: \$ devmove if=\S+ of=\S+/);
    expect(out).toMatch(/devmove demo: verified: source and target have the same sha256 [0-9a-f]{16}/);
    for (const loop of out.match(/\/dev\/loop\d+/g) ?? []) expect(loopIsAttached(loop)).toBe(false);
  });
});
