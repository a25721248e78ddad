// devmove's long options (--queue-depth=N, --force, …), read from the option
// table (api/options.ts): how each is spelled, what value it takes, and its
// line in --help. dd's own operands (if= bs= conv= …) are dd-args.ts.
import { CLI_ALIASES, CLI_ONLY_ROWS, HELP_GROUPS, OPTION_ROWS, type CliSpelling, type HelpGroup, type OptionKey } from '../api/options';
import { explain, type ValueKind } from '../api/values';

/** Where a long option's value goes: a copy() option (engine switches as 'engine.x') or a CLI-only field. */
export type LongTarget = { key: OptionKey } | { cliKey: (typeof CLI_ONLY_ROWS)[number]['cliKey'] };

export interface LongOption {
  spelling: string;
  target: LongTarget;
  kind: ValueKind<unknown>;
  /** Flags set this value; options with a value take one (--name=VALUE or --name VALUE). */
  flagValue?: unknown;
  takesValue: boolean;
}

function spellings(cli: CliSpelling, target: LongTarget, kind: ValueKind<unknown>): LongOption[] {
  if ('option' in cli) return [{ spelling: cli.option, target, kind, takesValue: true }];
  return cli.flags.map((f) => ({ spelling: f.flag, target, kind, flagValue: f.value, takesValue: false }));
}

const INDEX = new Map<string, LongOption>();
for (const row of OPTION_ROWS) if (row.cli) for (const o of spellings(row.cli, { key: row.key }, row.kind)) INDEX.set(o.spelling, o);
for (const a of CLI_ALIASES) INDEX.set(a.flag, { spelling: a.flag, target: { key: a.key }, kind: OPTION_ROWS[0].kind, flagValue: a.value, takesValue: false });
for (const row of CLI_ONLY_ROWS) for (const o of spellings(row.cli, { cliKey: row.cliKey }, row.kind)) INDEX.set(o.spelling, o);

export function longOption(spelling: string): LongOption | undefined {
  return INDEX.get(spelling);
}

/** A value option's word, checked by its kind; a rejection as the one-line reason after the option. */
export function readLongValue(option: LongOption, text: string): { ok: true; value: unknown } | { ok: false; reason: string } {
  const read = option.kind.fromText;
  if (read === undefined) return { ok: true, value: text };
  const c = read(text);
  return c.ok ? c : { ok: false, reason: explain(c.rejection, text, false) };
}

// ---- --help -----------------------------------------------------------------------

const HELP_WIDTH = 80;
const HELP_INDENT = 21;

function wrap(left: string, text: string): string[] {
  const lines: string[] = [];
  let line = left.length + 2 <= HELP_INDENT ? left.padEnd(HELP_INDENT) : `${left}  `;
  for (const word of text.split(' ')) {
    const sep = line.endsWith(' ') ? '' : ' ';
    if (line.length + sep.length + word.length > HELP_WIDTH && line.trim() !== '') {
      lines.push(line.trimEnd());
      line = ' '.repeat(HELP_INDENT) + word;
    } else {
      line += sep + word;
    }
  }
  lines.push(line.trimEnd());
  return lines;
}

function spelled(cli: CliSpelling, kind: ValueKind<unknown>): string[] {
  if ('option' in cli) return [`${cli.option}=${cli.value ?? kind.placeholder}`];
  return cli.flags.map((f) => f.flag);
}

/** The options part of `devmove --help`: one section per group, in the table's order. */
export function longOptionsHelp(): string {
  const out: string[] = [];
  for (const group of Object.keys(HELP_GROUPS) as HelpGroup[]) {
    out.push(HELP_GROUPS[group]);
    const entries: Array<[string, string]> = [];
    for (const row of OPTION_ROWS) {
      if (row.group === group && row.cli && row.help) entries.push([spelled(row.cli, row.kind).join(', '), row.help]);
    }
    for (const a of CLI_ALIASES) if (a.group === group) entries.push([a.flag, a.help]);
    for (const row of CLI_ONLY_ROWS) if (row.group === group) entries.push([spelled(row.cli, row.kind).reverse().join(', '), row.help]);
    for (const [left, help] of entries) out.push(...wrap(`  ${left}`, help));
  }
  return `${out.join('\n')}\n`;
}
