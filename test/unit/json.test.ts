// Strict JSON for job files (src/jobs/json.ts over jsonc-parser): it accepts exactly what
// V8's JSON.parse accepts and returns the same value (less duplicate keys, which it refuses),
// and every refusal names a line:column inside the text. Then one example for each message
// that jsonc-parser's own error would have left vaguer.
import { isDeepStrictEqual } from 'node:util';

import { describe, expect, it } from 'vitest';

import { JSON_DEPTH_MAX, JsonDuplicateKeyError, JsonSyntaxError, parseStrictJson } from '../../src/jobs/json';
import { JobFileError, parseJobFile } from '../../src/jobs/jobfile';
import { random } from '../helpers/random';

// isDeepStrictEqual, not toStrictEqual: vitest compares `.constructor`, which a key named
// "constructor" (generated on purpose) makes a value of the document.
const SEED = Number(process.env.JSON_TEST_SEED ?? Date.now() % 1_000_000);

/** Random JSON text with distinct keys per object and random whitespace between tokens. */
function randomJson(next: () => number, depth = 0): string {
  const pick = <T>(list: readonly T[]): T => list[Math.floor(next() * list.length)];
  const ws = (): string => pick(['', '', ' ', '\n  ', '\t', '\r\n']);
  const chars = ['a', 'Z', ' ', 'é', '€', '😀', '"', '\\', '/', '\n', '\t', '\u0001', '\u2028', '\ufeff', "'"];
  // JSON.stringify escapes '"', '\\', controls; the other spellings of the same text are JSON too.
  const string = (): string =>
    JSON.stringify(Array.from({ length: Math.floor(next() * 6) }, () => pick(chars)).join(''))
      .replace(/é/g, () => pick(['é', '\\u00e9', '\\u00E9']))
      .replace(/\//g, () => pick(['/', '\\/']));
  const kind = depth >= 6 ? pick(['string', 'number', 'literal']) : pick(['object', 'array', 'string', 'number', 'literal']);
  if (kind === 'string') return string();
  if (kind === 'number') return pick(['0', '-0', '7', '-12.5', '1e3', '2E-2', '0.000', '-0.5e+10', String(Math.floor(next() * 1e6)), String(next() * 1e-300)]);
  if (kind === 'literal') return pick(['true', 'false', 'null']);
  const n = Math.floor(next() * 4);
  if (kind === 'array') return `[${ws()}${Array.from({ length: n }, () => randomJson(next, depth + 1)).join(`${ws()},${ws()}`)}${ws()}]`;
  const keys = new Set(Array.from({ length: n }, () => pick(['version', 'pairs', 'a', '', '__proto__', 'constructor', 'é', 'a b'])));
  const members = [...keys].map((k) => `${JSON.stringify(k)}${ws()}:${ws()}${randomJson(next, depth + 1)}`);
  return `{${ws()}${members.join(`${ws()},${ws()}`)}${ws()}}`;
}

/** The text with one character deleted, inserted or replaced, `count` times. */
function mutate(text: string, next: () => number, count: number): string {
  const pieces = ['{', '}', '[', ']', ',', ':', '"', "'", '/', '*', '\\', '0', '1', '-', '.', 'e', '+', 't', 'n', 'u', 'x', ' ', '\n', '\r', '\t', '\v', '\u0000', '\u00a0', '\ufeff', '//', '/*c*/', 'true', 'NaN', '01'];
  let out = text;
  for (let i = 0; i < count; i++) {
    const at = Math.floor(next() * (out.length + 1));
    const piece = pieces[Math.floor(next() * pieces.length)];
    const op = next();
    if (op < 1 / 3) out = out.slice(0, at) + out.slice(at + 1);
    else if (op < 2 / 3) out = out.slice(0, at) + piece + out.slice(at);
    else out = out.slice(0, at) + piece + out.slice(at + 1);
  }
  return out;
}

function outcome(parse: (text: string) => unknown, text: string): { value: unknown } | { error: unknown } {
  try {
    return { value: parse(text) };
  } catch (error) {
    return { error };
  }
}

function syntaxErrorOf(text: string): JsonSyntaxError {
  const result = outcome(parseStrictJson, text);
  if (!('error' in result) || !(result.error instanceof JsonSyntaxError)) throw new Error(`no JsonSyntaxError for ${JSON.stringify(text)}`);
  return result.error;
}

describe(`strict JSON against JSON.parse (seed ${SEED}; replay with JSON_TEST_SEED=${SEED})`, () => {
  it('reads 2000 random documents as JSON.parse does, __proto__ keys included', () => {
    const next = random(SEED);
    for (let i = 0; i < 2000; i++) {
      const text = randomJson(next);
      expect(isDeepStrictEqual(parseStrictJson(text), JSON.parse(text)), text).toBe(true);
    }
  });

  it('20000 mutated documents: refused exactly when JSON.parse refuses them (or for a duplicate key), at a position inside the text', () => {
    const next = random(SEED + 1);
    let refused = 0;
    for (let i = 0; i < 20000; i++) {
      const text = mutate(randomJson(next), next, 1 + Math.floor(next() * 3));
      const strict = outcome(parseStrictJson, text);
      // One deliberate difference: a leading byte-order mark (editors on Windows write one) is skipped.
      const reference = outcome(JSON.parse, text.replace(/^\ufeff/, ''));
      const what = `${JSON.stringify(text)}: ${'error' in strict ? String(strict.error) : 'accepted'}`;
      if ('value' in reference) {
        if ('value' in strict) expect(isDeepStrictEqual(strict.value, reference.value), what).toBe(true);
        else expect(strict.error, what).toBeInstanceOf(JsonDuplicateKeyError);
        continue;
      }
      refused++;
      // Reading order: a duplicate key before the syntax error is refused first.
      const error = 'error' in strict ? strict.error : undefined;
      expect(error instanceof JsonSyntaxError || error instanceof JsonDuplicateKeyError, what).toBe(true);
      const { line, column } = error as JsonSyntaxError;
      expect(String(error), what).not.toMatch(/[\n\r]/);
      const lines = text.replace(/^\ufeff/, '').split(/\r\n|\r|\n/);
      expect(line, what).toBeGreaterThanOrEqual(1);
      expect(line, what).toBeLessThanOrEqual(lines.length);
      expect(column, what).toBeGreaterThanOrEqual(1);
      expect(column, what).toBeLessThanOrEqual(lines[line - 1].length + 1);
    }
    // Most mutations break the document; the comparison above must have been exercised.
    expect(refused).toBeGreaterThan(10000);
  });
});

describe('what jsonc-parser reports, made precise', () => {
  // [what, text, line, column, reason]
  const cases: Array<[string, string, number, number, string | RegExp]> = [
    ['a control character is named where it is, not at the string start', '{"a": "x\ty"}', 1, 9, 'control character U+0009 in a string; write it as an escape such as \\n'],
    ['a line break inside a string', '{"a": "x\ny"}', 1, 9, /^control character U\+000a in a string/],
    ['a bad escape, at its backslash', '{"a": "ok\\q"}', 1, 10, "invalid escape sequence '\\q' in a string"],
    ['a backslash before a line break', '["a\\\r\n"]', 1, 4, "invalid escape sequence: '\\' before control character U+000d in a string"],
    ['a short \\u escape', '{"a": "\\u12"}', 1, 8, "invalid escape sequence '\\u' in a string"],
    ['a string running to the end names its first bad escape', '{"a": "ok\\q', 1, 10, "invalid escape sequence '\\q' in a string"],
    ['a string running to the end', '{"a": "ok', 1, 7, 'unterminated string'],
    ['a string where none may come is out of place, whatever is inside it', '{"a": 1 "b\\q"}', 1, 9, `unexpected '"': expected ',' or '}' after a property value`],
    ['a number cut short', '{"a": 1.}', 1, 7, "invalid number '1.'"],
    ['an exponent without digits', '[1e+]', 1, 2, "invalid number '1e+'"],
    ['a lone minus', '[-]', 1, 2, "invalid number '-'"],
    ['leading zeros', '{"a": -01}', 1, 7, 'numbers must not have leading zeros'],
    ['an unknown word is named whole', '{"a": NaN}', 1, 7, "unexpected 'NaN': expected a value (an object, array, string, number, true, false or null)"],
    ['an unquoted key', '{version: 1}', 1, 2, "unexpected 'version': expected a property name in double quotes"],
    ['a literal followed by a stray character', '[null\u00a0]', 1, 6, "unexpected '\u00a0': expected ',' or ']' after an array element"],
    ['the end of the file inside an object', '{"a": 1', 1, 8, "unexpected end of the file: expected ',' or '}' after a property value"],
    ['the end of the file inside an array', '[1,', 1, 4, 'unexpected end of the file: a value is missing'],
    ['a key with an escaped line break is quoted as JSON', '{"a\\nb" 1}', 1, 9, `unexpected '1': expected ':' after the property name "a\\nb"`],
    ['a byte-order mark is not a column', '\ufeff{"a" 1}', 1, 6, `unexpected '1': expected ':' after the property name "a"`],
    ['a lone carriage return ends a line, as in editors', '{\r"a" 1}', 2, 5, `unexpected '1': expected ':' after the property name "a"`],
    ['a block comment', '[1, /* two */ 2]', 1, 5, /^unexpected '\/' \(JSON has no comments\): expected a value/],
    ['a comment after the value', '{} // done', 1, 4, "unexpected '/' (JSON has no comments) after the end of the JSON value"],
    ['a second value', '{} {}', 1, 4, "unexpected '{' after the end of the JSON value"],
    ['a vertical tab is not whitespace', '[1,\v2]', 1, 4, /^unexpected control character U\+000b: expected a value/],
  ];

  it.each(cases)('%s', (_what, text, line, column, reason) => {
    const error = syntaxErrorOf(text);
    expect({ line: error.line, column: error.column }).toStrictEqual({ line, column });
    if (typeof reason === 'string') expect(error.reason).toBe(reason);
    else expect(error.reason).toMatch(reason);
  });

  it(`refuses more than ${JSON_DEPTH_MAX} levels of nesting at the first level too many, however deep the file goes`, () => {
    const depth = (n: number): string => `${'['.repeat(n)}${']'.repeat(n)}`;
    expect(parseStrictJson(depth(JSON_DEPTH_MAX + 1))).toHaveLength(1);
    const error = syntaxErrorOf(depth(JSON_DEPTH_MAX + 2));
    expect(error).toMatchObject({ line: 1, column: JSON_DEPTH_MAX + 2, reason: /^nested too deeply/ });
    // jsonc-parser recurses per level: the limit must stop it long before the stack ends.
    expect(syntaxErrorOf('['.repeat(1_000_000)).reason).toMatch(/^nested too deeply/);
  });

  it('a duplicate key: the path to its object, the key, and where it is given the second time', () => {
    const result = outcome(parseStrictJson, '{"pairs": [{"a": 1,\n  "a": 2}]}');
    expect('error' in result && result.error).toBeInstanceOf(JsonDuplicateKeyError);
    expect((result as { error: JsonDuplicateKeyError }).error).toMatchObject({ path: ['pairs', 0], key: 'a', line: 2, column: 3 });
    // In a job file: the field, and the line.
    expect(() => parseJobFile('{"version": 1,\n"pairs": [{"source": "a",\n "target": "b", "source": "c"}]}', 'job.json')).toThrow(
      new JobFileError({ fileName: 'job.json', field: 'pairs[0].source', reason: 'given twice in one object (the second time at line 3)' }),
    );
  });

  it('a __proto__ key is data, not the prototype', () => {
    const value = parseStrictJson('{"__proto__": {"polluted": true}}') as Record<string, unknown>;
    expect(Object.getPrototypeOf(value)).toBe(Object.prototype);
    expect(Object.keys(value)).toStrictEqual(['__proto__']);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});
