// The replay script: every action the tester takes (world set-up, world changes,
// devmove invocations and the signals sent to them) as a shell line, so a failing
// seed can be rerun by hand without the harness. Lines are recorded with the real
// paths and rendered with variables ($W, $V, $F, $L1, …) for the paths that
// differ from run to run.
import path from 'node:path';

/** Quotes a word for sh when it needs it. */
export function sh(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

export class Script {
  private readonly lines: Array<{ text: string; raw: boolean }> = [];
  /** Literal → variable, longest literal first when rendering. */
  private readonly vars: Array<[literal: string, variable: string]> = [];

  /** From now on `literal` (a path) is written as $variable. */
  variable(literal: string, variable: string): void {
    this.vars.push([literal, variable]);
    this.vars.sort((a, b) => b[0].length - a[0].length);
  }

  line(text: string): void {
    this.lines.push({ text, raw: false });
  }

  /** A line written as is (it defines a variable's value). */
  raw(text: string): void {
    this.lines.push({ text, raw: true });
  }

  comment(text: string): void {
    this.lines.push({ text: `# ${text}`, raw: false });
  }

  get length(): number {
    return this.lines.length;
  }

  /** The lines recorded so far, paths replaced by their variables. */
  render(from = 0): string[] {
    return this.lines.slice(from).map((l) => (l.raw ? l.text : this.substitute(l.text)));
  }

  substitute(text: string): string {
    let out = text;
    for (const [literal, variable] of this.vars) {
      // /dev/loop1 must not match inside /dev/loop12.
      const escaped = literal.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      out = out.replace(new RegExp(`${escaped}(?![0-9A-Za-z_])`, 'g'), `\${${variable}}`);
    }
    return out;
  }
}

/** The devmove checkout under test: this one, or MODEL_DEVMOVE_REPO (another build, e.g. a branch's worktree). */
export const REPO = process.env.MODEL_DEVMOVE_REPO ?? path.join(__dirname, '..', '..');
/** The CLI's entry point in this checkout. */
export const CLI = path.join(REPO, 'dist', 'cli', 'main.js');
/**
 * The command users run (package.json "bin"): a launcher that starts Node so
 * that SIGUSR1 cannot open the inspector during start-up. Used when present.
 */
export const LAUNCHER = path.join(REPO, 'bin', 'devmove');
