// `devmove map FILE [--svg OUT]`: draws a GNU ddrescue mapfile (devmove's or ddrescue's) as a block
// grid with a legend and totals, on the terminal and, with --svg, as an SVG picture for a report.
import fs from 'node:fs';

import { MapfileError, RescueMap } from '../resume/mapfile';
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE, type CliIo } from './output';
import { layOut, mapSvg, mapText } from './map-view';

export function mapHelpText(): string {
  return `Usage: devmove map MAPFILE [--svg OUT] [--columns N] [--rows N] [--color | --no-color]
Draw a GNU ddrescue mapfile (written by devmove --mapfile or by ddrescue) the
way ddrescueview does: the rescue domain as a grid of cells in reading order,
each cell showing the worst status of the bytes it stands for (bad, then
non-scraped, non-trimmed, non-tried, finished), with a legend and totals.
  --svg OUT      also write the picture as an SVG file
  --columns N    cells per row (default 64, fewer on a narrow terminal)
  --rows N       at most N rows (default 16)
  --color        ANSI colours (default on a terminal, unless NO_COLOR is set)
  --no-color     status characters: + finished ? non-tried * non-trimmed
                 / non-scraped - bad
`;
}

interface MapArgs {
  file?: string;
  svg?: string;
  columns?: number;
  rows: number;
  color?: boolean;
  help: boolean;
}

class MapUsageError extends Error {}

function count(option: string, value: string | undefined, max: number): number {
  const n = Number(value);
  if (value === undefined || !Number.isInteger(n) || n < 1 || n > max) throw new MapUsageError(`map: ${option} takes a whole number from 1 to ${max} (got '${value ?? ''}')`);
  return n;
}

function parseMapArgs(args: readonly string[]): MapArgs {
  const parsed: MapArgs = { rows: 16, help: false };
  for (let i = 0; i < args.length; i++) {
    const [arg, inline] = args[i].startsWith('--') && args[i].includes('=') ? [args[i].slice(0, args[i].indexOf('=')), args[i].slice(args[i].indexOf('=') + 1)] : [args[i], undefined];
    const value = (): string | undefined => inline ?? args[++i];
    if (arg === '--help' || arg === '-h') parsed.help = true;
    else if (arg === '--svg') parsed.svg = value() ?? '';
    else if (arg === '--columns') parsed.columns = count('--columns', value(), 512);
    else if (arg === '--rows') parsed.rows = count('--rows', value(), 512);
    else if (arg === '--color') parsed.color = true;
    else if (arg === '--no-color') parsed.color = false;
    else if (arg.startsWith('-') && arg !== '-') throw new MapUsageError(`map: unknown option '${args[i]}'`);
    else if (parsed.file !== undefined) throw new MapUsageError(`map takes one MAPFILE, not also '${arg}'`);
    else parsed.file = arg;
  }
  if (parsed.svg === '') throw new MapUsageError('map: --svg needs an output file name');
  if (!parsed.help && parsed.file === undefined) throw new MapUsageError('map needs a MAPFILE (usage: devmove map MAPFILE [--svg OUT])');
  return parsed;
}

/** `devmove map ARGS…`; resolves to the exit status. */
export async function runMapCommand(args: readonly string[], io: CliIo): Promise<number> {
  let parsed: MapArgs;
  try {
    parsed = parseMapArgs(args);
  } catch (error) {
    if (!(error instanceof MapUsageError)) throw error;
    io.stderr.write(`devmove: ${error.message}\nTry 'devmove map --help' for more information.\n`);
    return EXIT_USAGE;
  }
  if (parsed.help) {
    io.stdout.write(mapHelpText());
    return EXIT_OK;
  }
  const file = parsed.file as string;
  let map: RescueMap;
  try {
    map = RescueMap.parse(fs.readFileSync(file, 'utf8'), file);
  } catch (error) {
    const reason = error instanceof MapfileError ? error.message : `${file}: ${(error as Error).message}`;
    io.stderr.write(`devmove: map: ${reason}\n`);
    return EXIT_FAILURE;
  }
  const terminalColumns = (io.stdout as { columns?: number }).columns;
  const columns = parsed.columns ?? Math.max(8, Math.min(64, (terminalColumns ?? 80) - 24));
  const picture = layOut(map.list(), columns, parsed.rows);
  const color = parsed.color ?? (io.stdout.isTTY === true && !process.env.NO_COLOR);
  io.stdout.write(mapText(file, picture, color));
  if (parsed.svg !== undefined) {
    try {
      fs.writeFileSync(parsed.svg, mapSvg(file, picture));
    } catch (error) {
      io.stderr.write(`devmove: map: cannot write ${parsed.svg}: ${(error as Error).message}\n`);
      return EXIT_FAILURE;
    }
  }
  return EXIT_OK;
}
